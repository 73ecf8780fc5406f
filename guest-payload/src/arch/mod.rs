//! The parts of the guest that execute privileged instructions: entry and
//! vectors, fault probes, console, stage-1 MMU and firmware calls.
