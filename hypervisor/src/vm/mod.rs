//! Virtual machines: layout, guest image, guest device tree, vcpu exits, firmware calls.

pub mod hypercall;
pub mod image;
pub mod mmio;
pub mod psci;
