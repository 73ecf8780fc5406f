//! The parts of the guest that execute privileged instructions: entry and
//! vectors, fault probes, console, stage-1 MMU and firmware calls.

pub mod bench;
pub mod chaos;
pub mod console;
mod entry;
pub mod exits;
pub mod firmware;
pub mod hostile;
pub mod mmu;
pub mod probe;
pub mod sysregs;
pub mod wc;

use core::arch::asm;

/// MPIDR_EL1 of the running CPU.
pub fn mpidr() -> u64 {
    let value: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// This CPU's slot (its position in the device tree's `/cpus` list), which
/// the entry code keeps in TPIDR_EL1: 0 for the boot CPU, the CPU_ON context
/// ID's low byte for the others. Indexes per-CPU state (fault probes,
/// stacks).
pub fn cpu_index() -> usize {
    let value: u64;
    // SAFETY: reading TPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, tpidr_el1", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value as usize
}

/// The current exception level.
pub fn current_el() -> u64 {
    let value: u64;
    // SAFETY: reading CurrentEL has no side effects.
    unsafe { asm!("mrs {}, CurrentEL", out(reg) value, options(nomem, nostack, preserves_flags)) };
    (value >> 2) & 3
}

/// The virtual counter and its frequency: (CNTVCT_EL0, CNTFRQ_EL0).
pub fn counter() -> (u64, u64) {
    let (count, freq): (u64, u64);
    // SAFETY: an ISB orders the read after earlier instructions; the reads
    // have no side effects.
    unsafe {
        asm!("isb", "mrs {c}, cntvct_el0", "mrs {f}, cntfrq_el0", c = out(reg) count,
            f = out(reg) freq, options(nomem, nostack, preserves_flags))
    };
    (count, freq)
}
