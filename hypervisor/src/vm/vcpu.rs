//! A vcpu's saved state and the trap configuration it runs under.
//!
//! The guest's EL1 system registers stay live in the hardware while it is
//! the only thing running on this CPU: the hypervisor never uses EL1
//! registers itself, so an exit saves and restores only what the exception
//! entry changes (general registers, SP_EL0, ELR/SPSR) plus the syndrome.

use crate::arch::aarch64::cpu::CpuFeatures;

pub use crate::arch::aarch64::context::{offsets, GuestRegs, HostRegs, VcpuContext};

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
    /// Trap the RAS error record registers (FEAT_RAS).
    pub const TERR: u64 = 1 << 36;
    /// Route synchronous external aborts to EL2 (FEAT_RAS).
    pub const TEA: u64 = 1 << 37;
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
/// (UNDEF, item 12). PTW makes a guest's table walk into MMIO fault (item 5).
/// With FEAT_RAS, TERR keeps the host's error records from the guest (they
/// read as zero) and TEA brings a device's synchronous external abort to
/// the hypervisor first, which hands it back (item 9); without it both bits
/// are RES0.
pub fn hcr_for(features: &CpuFeatures, pauth: bool) -> u64 {
    let mut v = hcr::VM
        | hcr::SWIO
        | hcr::PTW
        | hcr::FB
        | hcr::BSU_INNER
        | hcr::TWI
        | hcr::TWE
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
    if features.ras {
        v |= hcr::TERR | hcr::TEA;
    }
    v
}

/// MDCR_EL2: trap the performance monitors and debug registers, which are not
/// exposed to guests (hostile-guest item 12).
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
#[allow(clippy::unwrap_used)]
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
            for bit in [hcr::VM, hcr::RW, hcr::TSC, hcr::TSW, hcr::TWI, hcr::PTW] {
                assert_ne!(h & bit, 0);
            }
            // Never VHE, never TGE: the guest owns EL1.
            assert_eq!(h & (1 << 34), 0);
            assert_eq!(h & (1 << 27), 0);
        }
        assert_ne!(hcr_for(&without, true) & hcr::API, 0);
    }

    #[test]
    fn ras_traps_only_where_the_cpu_has_ras() {
        let mut regs = IdRegisters::default();
        let without = hcr_for(&CpuFeatures::decode(&regs), false);
        assert_eq!(without & (hcr::TERR | hcr::TEA), 0, "RES0 without FEAT_RAS");
        regs.pfr0 = 1 << 28;
        let with = hcr_for(&CpuFeatures::decode(&regs), false);
        assert_eq!(with & (hcr::TERR | hcr::TEA), hcr::TERR | hcr::TEA);
    }

    #[test]
    fn initial_pstate_is_el1h_with_daif_masked() {
        use crate::vm::inject::{inject, GuestState, Injection};
        // An exception taken from it goes to "current EL with SP_ELx" at
        // VBAR_EL1 + 0x200, which only EL1h in AArch64 selects.
        let g = GuestState {
            spsr: INITIAL_PSTATE,
            pc: 0,
            vbar: 0x1000,
            sctlr: 1 << 23,
        };
        let s = inject(&g, Injection::Undefined).unwrap();
        assert_eq!(s.elr_el2, 0x1200);
        // D, A, I and F (bits 9:6) masked, and nothing else but the mode.
        assert_eq!(INITIAL_PSTATE >> 6 & 0xf, 0xf);
        assert_eq!(INITIAL_PSTATE & !(0xf << 6) & !0x1f, 0);
    }
}
