//! CPU identification: the features the hypervisor's choices depend on,
//! decoded once from the ID registers (Arm ARM D23.2, "ID_AA64MMFR0_EL1",
//! "ID_AA64MMFR2_EL1", "CTR_EL0", "MIDR_EL1").

use core::fmt;

/// Raw ID register values, read once at boot by the arch layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdRegisters {
    /// MIDR_EL1.
    pub midr: u64,
    /// ID_AA64MMFR0_EL1.
    pub mmfr0: u64,
    /// ID_AA64MMFR1_EL1.
    pub mmfr1: u64,
    /// ID_AA64MMFR2_EL1.
    pub mmfr2: u64,
    /// CTR_EL0.
    pub ctr: u64,
    /// ID_AA64PFR0_EL1.
    pub pfr0: u64,
}

/// What the CPU offers, decoded from [`IdRegisters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuFeatures {
    /// ID_AA64MMFR0_EL1.PARange, the raw field.
    pub parange: u8,
    /// Physical address size in bits that PARange encodes.
    pub pa_bits: u8,
    /// FEAT_S2FWB: ID_AA64MMFR2_EL1.FWB == 1.
    pub fwb: bool,
    /// CTR_EL0.DIC: instruction cache invalidation to PoU not required for coherence.
    pub dic: bool,
    /// CTR_EL0.IDC: data cache clean to PoU not required for instruction coherence.
    pub idc: bool,
    /// 16-bit VMIDs: ID_AA64MMFR1_EL1.VMIDBits == 2.
    pub vmid16: bool,
    /// FEAT_XNX: ID_AA64MMFR1_EL1.XNX == 1.
    pub xnx: bool,
    /// CTR_EL0.DminLine: log2 of the smallest data cache line in bytes.
    pub dcache_line_log2: u8,
    /// FEAT_RAS: ID_AA64PFR0_EL1.RAS != 0 (HCR_EL2.TERR and TEA exist).
    pub ras: bool,
    /// MIDR_EL1.
    pub midr: u64,
}

/// Physical address bits for each PARange encoding (Arm ARM, ID_AA64MMFR0_EL1.PARange).
pub const fn parange_bits(parange: u8) -> Option<u8> {
    match parange {
        0 => Some(32),
        1 => Some(36),
        2 => Some(40),
        3 => Some(42),
        4 => Some(44),
        5 => Some(48),
        6 => Some(52),
        7 => Some(56),
        _ => None,
    }
}

fn field(value: u64, shift: u32, width: u32) -> u64 {
    (value >> shift) & ((1 << width) - 1)
}

impl CpuFeatures {
    /// Decodes the features from raw register values. An unknown PARange
    /// encoding is treated as the largest size the hypervisor supports (48
    /// bits), since larger values only add address space.
    pub fn decode(regs: &IdRegisters) -> Self {
        let parange = field(regs.mmfr0, 0, 4) as u8;
        // Sizes beyond 48 bits need 52-bit descriptors, which are not used.
        let pa_bits = parange_bits(parange).unwrap_or(48).min(48);
        Self {
            parange,
            pa_bits,
            fwb: field(regs.mmfr2, 40, 4) == 1,
            dic: field(regs.ctr, 29, 1) == 1,
            idc: field(regs.ctr, 28, 1) == 1,
            vmid16: field(regs.mmfr1, 4, 4) == 2,
            xnx: field(regs.mmfr1, 28, 4) == 1,
            dcache_line_log2: field(regs.ctr, 16, 4) as u8 + 2,
            ras: field(regs.pfr0, 28, 4) != 0,
            midr: regs.midr,
        }
    }

    /// The PARange field value to program into TCR_EL2.PS and VTCR_EL2.PS:
    /// the CPU's own, capped at 48 bits.
    pub fn ps_field(&self) -> u8 {
        self.parange.min(5)
    }

    /// Smallest data cache line, in bytes.
    pub fn dcache_line(&self) -> u64 {
        1 << self.dcache_line_log2
    }

    /// A name for the core from MIDR_EL1, when it is one we know.
    pub fn core_name(&self) -> &'static str {
        let implementer = field(self.midr, 24, 8);
        let part = field(self.midr, 4, 12);
        match (implementer, part) {
            (0x41, 0xd03) => "Cortex-A53",
            (0x41, 0xd07) => "Cortex-A57",
            (0x41, 0xd08) => "Cortex-A72",
            (0x41, 0xd0b) => "Cortex-A76",
            (0x41, 0xd0c) => "Neoverse-N1",
            (0x41, 0xd40) => "Neoverse-V1",
            (0x41, 0xd49) => "Neoverse-N2",
            (0x41, 0xd4f) => "Neoverse-V2",
            (0x41, 0xd46) => "Cortex-A510",
            (0x41, 0xd47) => "Cortex-A710",
            (0x41, 0xd4d) => "Cortex-A715",
            (0x41, 0xd80) => "Cortex-A520",
            (0x41, 0xd81) => "Cortex-A720",
            (0x41, 0xd85) => "Cortex-X925",
            (0, 0x51) => "QEMU 'max'",
            _ => "unknown core",
        }
    }
}

impl fmt::Display for CpuFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "{} (MIDR {:#010x}), PARange {} ({}-bit PA), FWB {}, DIC {}, IDC {}, VMID {}-bit, XNX {}, D-line {} B",
            self.core_name(),
            self.midr,
            self.parange,
            self.pa_bits,
            yes(self.fwb),
            yes(self.dic),
            yes(self.idc),
            if self.vmid16 { 16 } else { 8 },
            yes(self.xnx),
            self.dcache_line()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_cortex_a72_without_fwb() {
        // QEMU's cortex-a72: PARange 44 bits, no FWB, CTR without DIC/IDC.
        let regs = IdRegisters {
            midr: 0x410f_d083,
            mmfr0: 0x0000_0000_0000_1124,
            mmfr1: 0,
            mmfr2: 0,
            ctr: 0x8444_c004,
            pfr0: 0x0000_0000_0100_0022,
        };
        let f = CpuFeatures::decode(&regs);
        assert_eq!(f.parange, 4);
        assert_eq!(f.pa_bits, 44);
        assert!(!f.fwb && !f.dic && !f.idc && !f.ras);
        assert_eq!(f.core_name(), "Cortex-A72");
        assert_eq!(f.dcache_line(), 64);
    }

    #[test]
    fn decodes_fwb_dic_idc_and_caps_large_pa() {
        let regs = IdRegisters {
            midr: 0x000f_0510,
            mmfr0: 6,
            mmfr1: (2 << 4) | (1 << 28),
            mmfr2: 1 << 40,
            ctr: (1 << 29) | (1 << 28) | (4 << 16),
            pfr0: 2 << 28,
        };
        let f = CpuFeatures::decode(&regs);
        assert!(f.fwb && f.dic && f.idc && f.vmid16 && f.xnx && f.ras);
        assert_eq!(f.parange, 6);
        assert_eq!(f.pa_bits, 48);
        assert_eq!(f.ps_field(), 5);
    }

    #[test]
    fn fwb_field_values_other_than_one_are_not_fwb() {
        for v in [0u64, 2, 0xf] {
            let regs = IdRegisters {
                mmfr2: v << 40,
                ..Default::default()
            };
            assert!(!CpuFeatures::decode(&regs).fwb);
        }
    }
}
