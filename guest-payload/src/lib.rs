//! The EL1 test guest: a small bare-metal payload that runs under the
//! hypervisor (or directly on QEMU) and checks what the hypervisor promises:
//! injected aborts, PSCI answers, and the memory types of passed-through BARs.
//!
//! Pure logic (command line, device tree, page tables, SMCCC bookkeeping,
//! reports) builds everywhere and is tested on the host; `arch` holds the
//! entry code, vectors, MMU and firmware calls and builds only for the
//! bare-metal target.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod bench;
pub mod chaos;
pub mod cmdline;
pub mod esr;
pub mod hostile;
pub mod mmu;
pub mod pci;
pub mod platform;
pub mod smccc;
pub mod smp;
pub mod trap;
pub mod wc;

#[cfg(target_os = "none")]
pub mod arch;
