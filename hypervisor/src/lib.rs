//! An EL2 hypervisor for arm64 focused on PCIe device passthrough.
//!
//! The library holds everything that is pure logic, compiled and tested on the
//! host; code that touches system registers or uses assembly lives in `arch`
//! and is built only for the bare-metal target.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

pub mod arch;
pub mod attrcheck;
pub mod backtrace;
pub mod cmdline;
pub mod console;
pub mod devices;
pub mod drivers;
#[cfg(target_os = "none")]
pub mod fatal;
pub mod layout;
pub mod mm;
pub mod pci;
pub mod platform;
#[cfg(test)]
mod proptests;
#[cfg(target_os = "none")]
pub mod selftest;
pub mod vm;
