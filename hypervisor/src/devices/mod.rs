//! Devices emulated for guests.

pub mod vpl011;
