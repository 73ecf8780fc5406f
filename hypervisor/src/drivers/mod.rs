//! Drivers for hardware the hypervisor owns.

pub mod pl011;
pub mod smmuv3;
