//! System register access. Reads are safe; writes that can break the machine
//! (translation, traps, vectors) are `unsafe fn`s, and this module and the
//! boot assembly are the only writers of HCR/VTCR/VTTBR/SCTLR/VBAR_EL2.

use core::arch::asm;

use super::cpu::IdRegisters;

macro_rules! read_sysreg {
    ($name:literal) => {{
        let value: u64;
        // SAFETY: reading this system register has no side effects and is
        // permitted at EL2.
        unsafe { asm!(concat!("mrs {}, ", $name), out(reg) value, options(nomem, nostack, preserves_flags)) };
        value
    }};
}

/// The current exception level (0 to 3).
pub fn current_el() -> u8 {
    ((read_sysreg!("CurrentEL") >> 2) & 3) as u8
}

/// The ID registers the hypervisor's decisions depend on.
pub fn id_registers() -> IdRegisters {
    IdRegisters {
        midr: read_sysreg!("midr_el1"),
        mmfr0: read_sysreg!("id_aa64mmfr0_el1"),
        mmfr1: read_sysreg!("id_aa64mmfr1_el1"),
        mmfr2: read_sysreg!("id_aa64mmfr2_el1"),
        ctr: read_sysreg!("ctr_el0"),
    }
}

/// The physical counter and its frequency: (CNTPCT_EL0, CNTFRQ_EL0).
pub fn counter() -> (u64, u64) {
    // SAFETY: an ISB orders the counter read after earlier instructions; it
    // has no other effect.
    unsafe { asm!("isb", options(nomem, nostack, preserves_flags)) };
    (read_sysreg!("cntpct_el0"), read_sysreg!("cntfrq_el0"))
}

/// SCTLR_EL2.
pub fn sctlr_el2() -> u64 {
    read_sysreg!("sctlr_el2")
}

/// Configures and enables the EL2 stage-1 MMU and caches.
///
/// # Safety
///
/// `ttbr0` must be the root of a valid EL2 translation table, built for the
/// given `tcr` and `mair`, that maps the currently executing code, the stacks
/// and all memory in use at the same addresses as now (an identity map of
/// everything live). The tables must be visible to the walker (written with
/// caches off, or cleaned to the point of coherency).
pub unsafe fn enable_el2_mmu(mair: u64, tcr: u64, ttbr0: u64, sctlr: u64) {
    // SAFETY: the caller guarantees the tables identity-map everything live,
    // so turning translation on does not move the code or the stacks. The TLB
    // is invalidated first so no entry from a previous owner of EL2 is used.
    unsafe {
        asm!(
            "msr mair_el2, {mair}",
            "msr tcr_el2, {tcr}",
            "msr ttbr0_el2, {ttbr0}",
            "dsb ish",
            "tlbi alle2",
            "dsb ish",
            "isb",
            "msr sctlr_el2, {sctlr}",
            "isb",
            mair = in(reg) mair,
            tcr = in(reg) tcr,
            ttbr0 = in(reg) ttbr0,
            sctlr = in(reg) sctlr,
            options(nostack, preserves_flags),
        )
    };
}
