//! What guests see emulated, and the MMIO bus that carries their accesses.
//!
//! Nothing here knows of the VM: a device gets an access with the vCPU that
//! made it and hands back [`mmio::Effect`]s for the VM to apply.

pub mod mmio;
pub mod vpl011;
