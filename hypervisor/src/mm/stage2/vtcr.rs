//! VTCR_EL2 and VTTBR_EL2 values for a VM's stage 2.
//!
//! 4 KiB granule, no FEAT_LPA2 (VTCR_EL2.DS = 0). Rules, Arm ARM DDI 0487:
//!
//! * VTCR_EL2.SL0 with TG0 = 4KB: 0b00 start at level 2, 0b01 level 1,
//!   0b10 level 0 (VTCR_EL2 register description).
//! * The start level must be consistent with T0SZ (pseudocode
//!   `AArch64.S2InconsistentSL`): with `levels = 3 - start_level`, the IPA
//!   size must lie in `[levels * 9 + 12 + 1, that + 8 + 4]` (one more stride
//!   and up to 16 concatenated tables), except that level 0 has no
//!   concatenation without FEAT_LPA2: level 2 takes 22..=34 bits, level 1
//!   31..=43, level 0 40..=48.
//! * Level 0 start needs PAMax >= 44 (`AArch64.S2InvalidSL`).
//! * Up to 16 tables can be concatenated at the initial lookup, aligned to
//!   their total size, VTTBR_EL2 pointing at the first (D8.2.2, R_JKZFY,
//!   I_YXFPJ).
//!
//! The chosen start level is the one with the fewest lookup levels; among
//! equals, the one with the fewest concatenated tables.

use crate::arch::aarch64::cpu::parange_bits;
use core::fmt;

use tock_registers::{register_bitfields, LocalRegisterCopy};

use crate::mm::addr::PhysAddr;
use crate::mm::pgtable::{level_shift, TableConfig};

register_bitfields! {u64,
    /// VTCR_EL2 fields this hypervisor programs.
    pub VTCR [
        T0SZ OFFSET(0) NUMBITS(6) [],
        SL0 OFFSET(6) NUMBITS(2) [],
        IRGN0 OFFSET(8) NUMBITS(2) [ WriteBackRaWa = 0b01 ],
        ORGN0 OFFSET(10) NUMBITS(2) [ WriteBackRaWa = 0b01 ],
        SH0 OFFSET(12) NUMBITS(2) [ Inner = 0b11 ],
        TG0 OFFSET(14) NUMBITS(2) [ Granule4K = 0b00 ],
        PS OFFSET(16) NUMBITS(3) [],
        /// 0: 8-bit VMID.
        VS OFFSET(19) NUMBITS(1) [],
        /// Bit 31 is RES1.
        RES1_31 OFFSET(31) NUMBITS(1) []
    ]
}

/// Smallest IPA size a VM may ask for.
pub const MIN_IPA_BITS: u32 = 32;
/// Largest IPA size with a 4 KiB granule and no FEAT_LPA2.
pub const MAX_IPA_BITS: u32 = 48;

/// Why a stage-2 configuration cannot be built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VtcrError {
    /// PARange value this code does not know.
    UnknownPaRange(u8),
    /// IPA size outside `MIN_IPA_BITS..=MAX_IPA_BITS`.
    UnsupportedIpaBits(u32),
    /// The VM asked for more IPA bits than the CPU has PA bits.
    IpaExceedsPa { ipa_bits: u32, pa_bits: u32 },
}

impl fmt::Display for VtcrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnknownPaRange(p) => write!(f, "unknown ID_AA64MMFR0_EL1.PARange {p:#x}"),
            Self::UnsupportedIpaBits(b) => write!(
                f,
                "IPA size of {b} bits is outside {MIN_IPA_BITS}..={MAX_IPA_BITS}"
            ),
            Self::IpaExceedsPa { ipa_bits, pa_bits } => write!(
                f,
                "IPA size of {ipa_bits} bits exceeds the CPU's {pa_bits}-bit physical address size"
            ),
        }
    }
}

/// A VM's stage-2 geometry, and the VTCR_EL2 value that describes it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stage2Config {
    ipa_bits: u32,
    pa_bits: u32,
    ps: u8,
    start_level: usize,
    root_tables: usize,
}

impl Stage2Config {
    /// The configuration for a VM with `ipa_bits` of IPA space on a CPU whose
    /// ID_AA64MMFR0_EL1.PARange is `parange`.
    pub fn new(parange: u8, ipa_bits: u32) -> Result<Self, VtcrError> {
        let pa_bits = parange_bits(parange)
            .map(u32::from)
            .ok_or(VtcrError::UnknownPaRange(parange))?;
        if !(MIN_IPA_BITS..=MAX_IPA_BITS).contains(&ipa_bits) {
            return Err(VtcrError::UnsupportedIpaBits(ipa_bits));
        }
        if ipa_bits > pa_bits {
            return Err(VtcrError::IpaExceedsPa { ipa_bits, pa_bits });
        }
        let start_level = match ipa_bits {
            ..=34 => 2,
            35..=43 => 1,
            _ => 0,
        };
        let root_bits = ipa_bits - level_shift(start_level);
        let root_tables = if root_bits > 9 {
            1 << (root_bits - 9)
        } else {
            1
        };
        Ok(Self {
            ipa_bits,
            // Descriptors hold 48 output bits without FEAT_LPA2 (VTCR_EL2.DS = 0):
            // a 52-bit CPU is programmed as 48-bit (PS = 0b101).
            pa_bits: pa_bits.min(48),
            ps: parange.min(5),
            start_level,
            root_tables,
        })
    }

    /// IPA bits.
    pub fn ipa_bits(&self) -> u32 {
        self.ipa_bits
    }

    /// Output (PA) bits the tables can describe.
    pub fn pa_bits(&self) -> u32 {
        self.pa_bits
    }

    /// Initial lookup level.
    pub fn start_level(&self) -> usize {
        self.start_level
    }

    /// Concatenated tables at the initial lookup (1 to 16).
    pub fn root_tables(&self) -> usize {
        self.root_tables
    }

    /// VTCR_EL2.T0SZ.
    pub fn t0sz(&self) -> u64 {
        64 - u64::from(self.ipa_bits)
    }

    /// VTCR_EL2.SL0 for the start level.
    pub fn sl0(&self) -> u64 {
        match self.start_level {
            2 => 0b00,
            1 => 0b01,
            _ => 0b10,
        }
    }

    /// VTCR_EL2.PS.
    pub fn ps(&self) -> u64 {
        u64::from(self.ps)
    }

    /// The VTCR_EL2 value: T0SZ, SL0, table walks Inner/Outer Write-Back
    /// RA/WA Inner Shareable, 4 KiB granule, PS, 8-bit VMID, RES1 bit 31.
    pub fn vtcr(&self) -> u64 {
        let mut v = LocalRegisterCopy::<u64, VTCR::Register>::new(0);
        v.modify(
            VTCR::T0SZ.val(self.t0sz())
                + VTCR::SL0.val(self.sl0())
                + VTCR::IRGN0::WriteBackRaWa
                + VTCR::ORGN0::WriteBackRaWa
                + VTCR::SH0::Inner
                + VTCR::TG0::Granule4K
                + VTCR::PS.val(self.ps())
                + VTCR::VS::CLEAR
                + VTCR::RES1_31::SET,
        );
        v.get()
    }

    /// The table geometry for the engine.
    pub fn table_config(&self) -> TableConfig {
        TableConfig::new(
            self.ipa_bits,
            self.pa_bits,
            self.start_level,
            self.root_tables,
        )
        .expect("Stage2Config only builds consistent geometries")
    }
}

/// An 8-bit VMID (VTCR_EL2.VS = 0).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Vmid(pub u8);

/// VTTBR_EL2: BADDR (the root, aligned to the concatenated root's size) and VMID in [55:48].
pub fn vttbr(root: PhysAddr, vmid: Vmid) -> u64 {
    (root.raw() & 0x0000_ffff_ffff_fffe) | (u64::from(vmid.0) << 48)
}
