//! Devices emulated for guests.
