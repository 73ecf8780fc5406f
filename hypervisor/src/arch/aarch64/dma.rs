//! Barriers and cache maintenance for memory shared with a DMA master that
//! the hypervisor drives (the SMMU's stream table and queues).

use core::arch::asm;

use super::tlb::{dcache_range, CacheOp};

/// `DSB ST`: the CPU's earlier stores to memory are visible to other
/// observers before any later store (the register write that tells a device
/// to look).
pub fn write_barrier() {
    // SAFETY: a barrier only orders memory accesses.
    unsafe { asm!("dsb st", options(nostack, preserves_flags)) };
}

/// `DSB LD`: a device's writes, announced by an earlier register read, are
/// seen by later loads.
pub fn read_barrier() {
    // SAFETY: a barrier only orders memory accesses.
    unsafe { asm!("dsb ld", options(nostack, preserves_flags)) };
}

/// Cleans (and invalidates) `[pa, pa + len)` to the point of coherency, for
/// a master that does not snoop the caches.
///
/// # Safety
///
/// The range must be mapped Normal in the EL2 map.
pub unsafe fn clean_to_poc(pa: u64, len: u64, line: u64) {
    // SAFETY: per the caller; cleaning writes back dirty lines and loses nothing.
    unsafe { dcache_range(CacheOp::CleanInvalidate, pa, len, line) };
}

/// Invalidates `[pa, pa + len)` so the CPU reads what a non-snooping master
/// wrote.
///
/// # Safety
///
/// The range must be mapped Normal in the EL2 map and hold no CPU writes
/// that matter (dirty lines are discarded).
pub unsafe fn invalidate(pa: u64, len: u64, line: u64) {
    // SAFETY: per the caller.
    unsafe { dcache_range(CacheOp::Invalidate, pa, len, line) };
}
