//! PCI Express: ECAM access, host enumeration and BAR assignment, and the
//! virtual configuration space guests see for passed-through devices.

pub mod ecam;
pub mod host;
pub mod passthrough;
pub mod select;
pub mod types;
pub mod vconfig;
