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
        pfr0: read_sysreg!("id_aa64pfr0_el1"),
    }
}

/// The physical counter and its frequency: (CNTPCT_EL0, CNTFRQ_EL0).
pub fn counter() -> (u64, u64) {
    // SAFETY: an ISB orders the counter read after earlier instructions; it
    // has no other effect.
    unsafe { asm!("isb", options(nomem, nostack, preserves_flags)) };
    (read_sysreg!("cntpct_el0"), read_sysreg!("cntfrq_el0"))
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

/// HCR_EL2.VM: stage-2 translation for the EL1&0 regime.
pub const HCR_VM: u64 = 1 << 0;
/// HCR_EL2.RW: EL1 runs in AArch64.
pub const HCR_RW: u64 = 1 << 31;
/// HCR_EL2.FWB: stage 2 overrides stage-1 attributes (FEAT_S2FWB).
pub const HCR_FWB: u64 = 1 << 46;

/// HCR_EL2.
pub fn hcr_el2() -> u64 {
    read_sysreg!("hcr_el2")
}

/// Writes HCR_EL2 and synchronises the context.
///
/// # Safety
///
/// The value changes what traps to EL2 and how the EL1&0 regime translates:
/// the caller must make sure nothing runs at EL1 or EL0 that the new value
/// would let reach memory it does not own, and that the stage-2 tables
/// (VTTBR_EL2) are valid when `VM` is set.
pub unsafe fn set_hcr_el2(value: u64) {
    // SAFETY: the caller vouches for the configuration; the ISB makes the
    // new value apply to the following instructions.
    unsafe { asm!("msr hcr_el2, {}", "isb", in(reg) value, options(nostack, preserves_flags)) };
}

/// The registers that define the EL1&0 translation regime (both stages),
/// as EL2 sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct El1Regime {
    /// HCR_EL2 (VM, FWB and the traps).
    pub hcr_el2: u64,
    /// VTCR_EL2.
    pub vtcr_el2: u64,
    /// VTTBR_EL2.
    pub vttbr_el2: u64,
    /// TTBR0_EL1.
    pub ttbr0_el1: u64,
    /// TCR_EL1.
    pub tcr_el1: u64,
    /// MAIR_EL1.
    pub mair_el1: u64,
    /// SCTLR_EL1.
    pub sctlr_el1: u64,
}

impl El1Regime {
    /// The current values.
    pub fn read() -> Self {
        Self {
            hcr_el2: read_sysreg!("hcr_el2"),
            vtcr_el2: read_sysreg!("vtcr_el2"),
            vttbr_el2: read_sysreg!("vttbr_el2"),
            ttbr0_el1: read_sysreg!("ttbr0_el1"),
            tcr_el1: read_sysreg!("tcr_el1"),
            mair_el1: read_sysreg!("mair_el1"),
            sctlr_el1: read_sysreg!("sctlr_el1"),
        }
    }

    /// Writes every register, then synchronises the context.
    ///
    /// # Safety
    ///
    /// No code may run at EL1 or EL0 while the caller depends on these
    /// values, unless the tables they point at map only memory the guest
    /// owns. With HCR_EL2.VM set, VTTBR_EL2 must point at valid stage-2
    /// tables for VTCR_EL2; with SCTLR_EL1.M set, TTBR0_EL1 at valid stage-1
    /// tables for TCR_EL1. The caller invalidates TLB entries for the VMID
    /// when it reuses one with different tables.
    pub unsafe fn load(&self) {
        // SAFETY: the caller vouches for the tables; the EL2 regime, which
        // this code runs in, does not depend on any of these registers.
        // HCR_EL2 goes first so that stage 2 is off (VM = 0 in a restored
        // value) or fully described by the ISB at the end.
        unsafe {
            asm!(
                "msr hcr_el2, {hcr}",
                "msr vtcr_el2, {vtcr}",
                "msr vttbr_el2, {vttbr}",
                "msr mair_el1, {mair}",
                "msr tcr_el1, {tcr}",
                "msr ttbr0_el1, {ttbr0}",
                "msr sctlr_el1, {sctlr}",
                "isb",
                hcr = in(reg) self.hcr_el2,
                vtcr = in(reg) self.vtcr_el2,
                vttbr = in(reg) self.vttbr_el2,
                mair = in(reg) self.mair_el1,
                tcr = in(reg) self.tcr_el1,
                ttbr0 = in(reg) self.ttbr0_el1,
                sctlr = in(reg) self.sctlr_el1,
                options(nostack, preserves_flags),
            )
        };
    }
}

/// PAR_EL1.
pub fn par_el1() -> u64 {
    read_sysreg!("par_el1")
}

/// Writes PAR_EL1 (to restore it after address translations).
pub fn set_par_el1(value: u64) {
    // SAFETY: PAR_EL1 only holds the result of the last AT instruction;
    // writing it has no other effect.
    unsafe { asm!("msr par_el1, {}", in(reg) value, options(nomem, nostack, preserves_flags)) };
}

/// Translates `va` through both stages of the EL1&0 regime, as `AT S12E1W`
/// if `write` else `AT S12E1R`, and returns PAR_EL1.
///
/// # Safety
///
/// The EL1&0 regime must be set up ([`El1Regime::load`]) so that its table
/// walks read only RAM: a walk touching a device or a missing address can
/// take a synchronous external abort at EL2 instead of a fault in PAR_EL1.
pub unsafe fn at_s12e1(va: u64, write: bool) -> u64 {
    // SAFETY: the caller guarantees the walk reads only RAM; the DSB makes
    // earlier table writes visible to it, the ISB makes PAR_EL1 readable.
    unsafe {
        if write {
            asm!("dsb ishst", "at s12e1w, {}", "isb", in(reg) va, options(nostack, preserves_flags));
        } else {
            asm!("dsb ishst", "at s12e1r, {}", "isb", in(reg) va, options(nostack, preserves_flags));
        }
    }
    par_el1()
}
