//! AArch64: entry, vectors, system registers, TLB and cache maintenance, and
//! the decoders for what the hardware reports.
//!
//! `context`, `cpu`, `esr` and `trap` are pure and build everywhere; the rest executes
//! privileged instructions and builds only for the bare-metal target.

pub mod context;
pub mod cpu;
pub mod esr;
pub mod trap;

#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
pub mod firmware;
#[cfg(target_os = "none")]
pub mod guest;
#[cfg(target_os = "none")]
pub mod smp;
#[cfg(target_os = "none")]
pub mod sysreg;
#[cfg(target_os = "none")]
pub mod tlb;
