//! Stage-2 memory attributes by intent, and the model of how stage 1 and stage 2 combine.
