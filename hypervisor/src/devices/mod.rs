//! Devices emulated for guests.

pub mod vgic;
pub mod vpl011;
