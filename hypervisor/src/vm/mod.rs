//! Virtual machines: layout, guest image, guest device tree, vcpu exits, firmware calls.

pub mod builder;
pub mod config;
pub mod exit;
pub mod fdt_writer;
pub mod guest_dt;
pub mod hypercall;
pub mod image;
pub mod inject;
pub mod layout;
#[cfg(target_os = "none")]
pub mod machine;
pub mod psci;
#[cfg(test)]
mod smp_tests;
pub mod step;
pub mod vcpu;
