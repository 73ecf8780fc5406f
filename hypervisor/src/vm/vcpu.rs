//! A vcpu's saved state and the trap configuration it runs under.
//!
//! The guest's EL1 system registers stay live in the hardware while it is
//! the only thing running on this CPU: the hypervisor never uses EL1
//! registers itself, so an exit saves and restores only what the exception
//! entry changes (general registers, SP_EL0, ELR/SPSR) plus the syndrome.

use crate::arch::aarch64::cpu::CpuFeatures;

/// General registers and exit syndrome, laid out for the entry/exit assembly.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRegs {
    /// x0 to x30.
    pub x: [u64; 31],
    /// SP_EL0 (the guest's EL0 stack).
    pub sp_el0: u64,
    /// The guest PC: ELR_EL2 at exit, restored on entry.
    pub pc: u64,
    /// The guest PSTATE: SPSR_EL2 at exit, restored on entry.
    pub pstate: u64,
    /// ESR_EL2 at the last exit.
    pub esr: u64,
    /// FAR_EL2 at the last exit.
    pub far: u64,
    /// HPFAR_EL2 at the last exit.
    pub hpfar: u64,
    /// Which EL2 vector the last exit came through (8 to 15).
    pub vector: u64,
}

/// The host's callee-saved registers across a guest run (AAPCS64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HostRegs {
    /// x19 to x30.
    pub x19_x30: [u64; 12],
    /// The host's main stack pointer (SP_EL0).
    pub sp: u64,
}

/// What the entry/exit assembly works on; TPIDR_EL2 points at it while the guest runs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VcpuContext {
    /// Guest registers.
    pub guest: GuestRegs,
    /// Host registers.
    pub host: HostRegs,
}

/// Offsets the assembly uses; checked against the struct layout below.
pub mod offsets {
    /// `guest.x[0]`.
    pub const X0: usize = 0;
    /// `guest.sp_el0`.
    pub const SP_EL0: usize = 248;
    /// `guest.pc` (followed by `pstate`).
    pub const PC: usize = 256;
    /// `guest.esr` (followed by `far`).
    pub const ESR: usize = 272;
    /// `guest.hpfar` (followed by `vector`).
    pub const HPFAR: usize = 288;
    /// `host.x19_x30`.
    pub const HOST: usize = 304;
    /// `host.sp`.
    pub const HOST_SP: usize = 400;
}

const _: () = {
    assert!(core::mem::offset_of!(VcpuContext, guest) == offsets::X0);
    assert!(core::mem::offset_of!(GuestRegs, sp_el0) == offsets::SP_EL0);
    assert!(core::mem::offset_of!(GuestRegs, pc) == offsets::PC);
    assert!(core::mem::offset_of!(GuestRegs, pstate) == offsets::PC + 8);
    assert!(core::mem::offset_of!(GuestRegs, esr) == offsets::ESR);
    assert!(core::mem::offset_of!(GuestRegs, far) == offsets::ESR + 8);
    assert!(core::mem::offset_of!(GuestRegs, hpfar) == offsets::HPFAR);
    assert!(core::mem::offset_of!(GuestRegs, vector) == offsets::HPFAR + 8);
    assert!(core::mem::offset_of!(VcpuContext, host) == offsets::HOST);
    assert!(core::mem::offset_of!(HostRegs, sp) == offsets::HOST_SP - offsets::HOST);
};

/// HCR_EL2 bits (Arm ARM D23.2, "HCR_EL2").
pub mod hcr {
    /// Stage 2 on.
    pub const VM: u64 = 1 << 0;
    /// Set/way invalidation becomes clean and invalidate.
    pub const SWIO: u64 = 1 << 1;
    /// Stage-1 walks that land in Device memory at stage 2 fault.
    pub const PTW: u64 = 1 << 2;
    /// Barrier shareability upgraded to inner shareable.
    pub const BSU_INNER: u64 = 1 << 10;
    /// Broadcast TLB and cache maintenance to the inner shareable domain.
    pub const FB: u64 = 1 << 9;
    /// Trap WFI.
    pub const TWI: u64 = 1 << 13;
    /// Trap WFE.
    pub const TWE: u64 = 1 << 14;
    /// Trap reads of the ID group 3 registers (ID_AA64*_EL1, ID_*_EL1).
    pub const TID3: u64 = 1 << 18;
    /// Trap SMC.
    pub const TSC: u64 = 1 << 19;
    /// Trap implementation-defined system registers.
    pub const TIDCP: u64 = 1 << 20;
    /// Trap auxiliary control registers.
    pub const TACR: u64 = 1 << 21;
    /// Trap set/way cache maintenance.
    pub const TSW: u64 = 1 << 22;
    /// EL1 is AArch64.
    pub const RW: u64 = 1 << 31;
    /// Trap LORegion registers.
    pub const TLOR: u64 = 1 << 35;
    /// Pointer authentication key registers not trapped.
    pub const APK: u64 = 1 << 40;
    /// Pointer authentication instructions not trapped.
    pub const API: u64 = 1 << 41;
    /// Stage 2 forces the memory type (FEAT_S2FWB).
    pub const FWB: u64 = 1 << 46;
}

/// HCR_EL2 for running a guest on this CPU.
///
/// Traps: SMC (never forwarded to firmware), WFI/WFE (handled by the
/// hypervisor), set/way maintenance (hostile-guest item 7),
/// implementation-defined and auxiliary control registers and LORegions
/// (UNDEF, item 12), and the ID registers, which the guest reads sanitized
/// (`vm::sysreg`). PTW makes a guest's table walk into MMIO fault (item 5).
pub fn hcr_for(features: &CpuFeatures, pauth: bool) -> u64 {
    let mut v = hcr::VM
        | hcr::SWIO
        | hcr::PTW
        | hcr::FB
        | hcr::BSU_INNER
        | hcr::TWI
        | hcr::TWE
        | hcr::TID3
        | hcr::TSC
        | hcr::TIDCP
        | hcr::TACR
        | hcr::TSW
        | hcr::RW
        | hcr::TLOR;
    if pauth {
        v |= hcr::APK | hcr::API;
    }
    if features.fwb {
        v |= hcr::FWB;
    }
    v
}

/// MDCR_EL2: trap the performance monitors (hidden from guests: UNDEF) and
/// the debug registers (RAZ/WI, `vm::sysreg`); hostile-guest item 12.
pub fn mdcr() -> u64 {
    const TPMCR: u64 = 1 << 5;
    const TPM: u64 = 1 << 6;
    const TDA: u64 = 1 << 9;
    const TDOSA: u64 = 1 << 10;
    const TDRA: u64 = 1 << 11;
    TPMCR | TPM | TDA | TDOSA | TDRA
}

/// CNTHCTL_EL2 (non-VHE): EL1 may read the physical counter; the EL1 physical
/// timer traps (guests use the virtual timer).
pub fn cnthctl() -> u64 {
    const EL1PCTEN: u64 = 1 << 0;
    EL1PCTEN
}

/// CPTR_EL2 (non-VHE, Arm ARM D23.2 "CPTR_EL2"): FP/SIMD not trapped (the
/// hypervisor is built soft-float and never touches those registers, so the
/// guest's state needs no switching). Trapped, so the guest gets UNDEF
/// (hostile-guest item 12): SVE (TZ) and SME (TSM; RES1 without SME), whose
/// vector-length registers the hypervisor does not manage yet, trace (TTA)
/// and the activity monitors (TAM).
pub fn cptr() -> u64 {
    const RES1: u64 = (1 << 13) | (1 << 9) | 0xff;
    const TSM: u64 = 1 << 12;
    const TZ: u64 = 1 << 8;
    const TTA: u64 = 1 << 20;
    const TAM: u64 = 1 << 30;
    RES1 | TSM | TZ | TTA | TAM
}

/// PSTATE a vcpu starts in: EL1h with D, A, I and F masked (arm64 boot protocol).
pub const INITIAL_PSTATE: u64 = 0b0101 | (0b1111 << 6);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::aarch64::cpu::IdRegisters;

    #[test]
    fn hcr_sets_fwb_only_when_the_cpu_has_it() {
        let mut regs = IdRegisters::default();
        let without = CpuFeatures::decode(&regs);
        regs.mmfr2 = 1 << 40;
        let with = CpuFeatures::decode(&regs);
        assert_eq!(hcr_for(&without, false) & hcr::FWB, 0);
        assert_ne!(hcr_for(&with, false) & hcr::FWB, 0);
        for h in [hcr_for(&without, true), hcr_for(&with, false)] {
            for bit in [
                hcr::VM,
                hcr::RW,
                hcr::TSC,
                hcr::TSW,
                hcr::TWI,
                hcr::PTW,
                hcr::TID3,
            ] {
                assert_ne!(h & bit, 0);
            }
            // Never VHE, never TGE: the guest owns EL1.
            assert_eq!(h & (1 << 34), 0);
            assert_eq!(h & (1 << 27), 0);
        }
        assert_ne!(hcr_for(&without, true) & hcr::API, 0);
    }

    #[test]
    fn initial_pstate_is_el1h_masked() {
        assert_eq!(INITIAL_PSTATE, 0x3c5);
    }
}
