//! Translation-table engine shared by the EL2 stage-1 map and guests stage 2.
