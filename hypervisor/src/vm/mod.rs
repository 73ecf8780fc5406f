//! Virtual machines: layout, guest image, guest device tree, vcpu exits, firmware calls.

pub mod config;
pub mod exit;
pub mod fdt_writer;
pub mod guest_dt;
pub mod hypercall;
pub mod image;
pub mod initramfs;
pub mod inject;
pub mod layout;
pub mod lockup;
#[cfg(target_os = "none")]
pub mod machine;
pub mod mmio;
pub mod psci;
pub mod sysreg;
pub mod vcpu;
