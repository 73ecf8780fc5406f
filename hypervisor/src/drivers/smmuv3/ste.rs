//! Stream table entries and level-1 stream table descriptors
//! (IHI 0070, 5.1 "Level 1 Stream Table Descriptor", 5.2 "Stream Table Entry").
//!
//! Only the two kinds of entry this hypervisor writes exist here: abort
//! (a stream it does not know: no translation, no bypass) and stage-2
//! translation into a VM's IPA space (stage 1 bypassed).

/// An STE: 64 bytes, eight little-endian double words.
pub type SteWords = [u64; 8];

/// Bytes in an STE.
pub const STE_BYTES: usize = 64;

const V: u64 = 1 << 0;
const CONFIG_SHIFT: u32 = 1;
/// STE.Config: abort every transaction, record nothing.
const CONFIG_ABORT: u64 = 0b000;
/// STE.Config: stage 1 bypass, stage 2 translate.
const CONFIG_S2_ONLY: u64 = 0b110;

// Double word 1.
const S2FWB: u64 = 1 << 25;
// Double word 2: S2VMID [15:0], the VTCR-shaped fields [50:32], flags.
const VTCR_SHIFT: u32 = 32;
const VTCR_MASK: u64 = 0x7_ffff;
const S2AA64: u64 = 1 << 51;
const S2ENDI: u64 = 1 << 52;
const S2AFFD: u64 = 1 << 53;
const S2PTW: u64 = 1 << 54;
const S2S: u64 = 1 << 57;
const S2R: u64 = 1 << 58;
// Double word 3.
const S2TTB_MASK: u64 = 0x000f_ffff_ffff_fff0;

/// Stage-2 translation for one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2Ste {
    /// The VM's VMID (STE.S2VMID), tagging the SMMU's TLB entries.
    pub vmid: u16,
    /// T0SZ, SL0, IRGN0, ORGN0, SH0, TG0 and PS, laid out as in VTCR_EL2
    /// bits [18:0] (STE bits [178:160] use the same layout).
    pub vtcr: u64,
    /// The stage-2 root table (STE.S2TTB), aligned to its concatenated size.
    pub ttb: u64,
    /// STE.S2FWB: the tables use the FEAT_S2FWB MemAttr encodings. Only
    /// legal when SMMU_IDR3.FWB is set.
    pub fwb: bool,
    /// STE.S2PTW: a stage-2 walk that lands on Device memory faults.
    pub ptw: bool,
}

/// A decoded STE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ste {
    /// V = 0: any transaction is a C_BAD_STE event.
    Invalid,
    /// Config = abort: every transaction aborts, silently.
    Abort,
    /// Stage-2 translation.
    Stage2(Stage2Ste),
    /// Any other configuration (this driver never writes one).
    Other,
}

impl Ste {
    /// The 64 bytes of this entry. [`Ste::Other`] encodes as invalid.
    pub fn encode(&self) -> SteWords {
        let mut w = [0u64; 8];
        match *self {
            Self::Invalid | Self::Other => {}
            Self::Abort => w[0] = V | (CONFIG_ABORT << CONFIG_SHIFT),
            Self::Stage2(s) => {
                w[0] = V | (CONFIG_S2_ONLY << CONFIG_SHIFT);
                if s.fwb {
                    w[1] = S2FWB;
                }
                w[2] = u64::from(s.vmid)
                    | ((s.vtcr & VTCR_MASK) << VTCR_SHIFT)
                    | S2AA64
                    | S2R
                    | if s.ptw { S2PTW } else { 0 };
                w[3] = s.ttb & S2TTB_MASK;
            }
        }
        w
    }

    /// Reads an entry back (the inverse of [`Ste::encode`] for what it writes).
    pub fn decode(w: &SteWords) -> Self {
        if w[0] & V == 0 {
            return Self::Invalid;
        }
        match (w[0] >> CONFIG_SHIFT) & 0b111 {
            CONFIG_ABORT => Self::Abort,
            CONFIG_S2_ONLY
                if w[2] & S2AA64 != 0 && w[2] & (S2ENDI | S2AFFD | S2S) == 0 && w[2] & S2R != 0 =>
            {
                Self::Stage2(Stage2Ste {
                    vmid: (w[2] & 0xffff) as u16,
                    vtcr: (w[2] >> VTCR_SHIFT) & VTCR_MASK,
                    ttb: w[3] & S2TTB_MASK,
                    fwb: w[1] & S2FWB != 0,
                    ptw: w[2] & S2PTW != 0,
                })
            }
            _ => Self::Other,
        }
    }
}

/// A level-1 stream table descriptor: 8 bytes, L2Ptr [51:6] and Span [4:0]
/// (a level-2 table of `2^(Span - 1)` STEs; Span 0 means none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L1Desc {
    /// The level-2 table, 64-byte aligned (aligned to its size in practice).
    pub l2ptr: u64,
    /// Span.
    pub span: u8,
}

const L2PTR_MASK: u64 = 0x000f_ffff_ffff_ffc0;

impl L1Desc {
    /// Encodes the descriptor.
    pub fn encode(&self) -> u64 {
        (self.l2ptr & L2PTR_MASK) | u64::from(self.span & 0x1f)
    }

    /// Decodes a descriptor.
    pub fn decode(v: u64) -> Self {
        Self {
            l2ptr: v & L2PTR_MASK,
            span: (v & 0x1f) as u8,
        }
    }

    /// STEs in the level-2 table it points at (0 when invalid).
    pub fn entries(&self) -> u32 {
        match self.span {
            0 => 0,
            s @ 1..=12 => 1 << (s - 1),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage2_round_trips_and_sets_the_fields_qemu_and_linux_read() {
        let s = Stage2Ste {
            vmid: 0x1234,
            vtcr: 0x53558 & VTCR_MASK,
            ttb: 0x4_8000_2000,
            fwb: true,
            ptw: true,
        };
        let w = Ste::Stage2(s).encode();
        assert_eq!(Ste::decode(&w), Ste::Stage2(s));
        // V = 1, Config = 0b110 (stage 1 bypass, stage 2 translate).
        assert_eq!(w[0], 0b1101);
        assert_eq!(w[1], 1 << 25);
        // S2VMID, then S2T0SZ = 24 (40-bit IPA) at bit 32, S2SL0 = 1 at 38.
        assert_eq!(w[2] & 0xffff, 0x1234);
        assert_eq!((w[2] >> 32) & 0x3f, 24);
        assert_eq!((w[2] >> 38) & 3, 1);
        // S2PS (bits 50:48) = 0b101 from VTCR PS, S2AA64 and S2R set.
        assert_eq!((w[2] >> 48) & 7, 0b101);
        assert_ne!(w[2] & S2AA64, 0);
        assert_ne!(w[2] & S2R, 0);
        assert_eq!(w[3], 0x4_8000_2000);
        assert!(w[4..].iter().all(|&x| x == 0));
    }

    #[test]
    fn fwb_clear_leaves_dword1_zero() {
        let s = Stage2Ste {
            vmid: 1,
            vtcr: 0x3558,
            ttb: 0x1000,
            fwb: false,
            ptw: false,
        };
        let w = Ste::Stage2(s).encode();
        assert_eq!(w[1], 0);
        assert_eq!(Ste::decode(&w), Ste::Stage2(s));
    }

    #[test]
    fn abort_invalid_and_foreign_configs() {
        assert_eq!(Ste::Abort.encode()[0], 1);
        assert_eq!(Ste::decode(&Ste::Abort.encode()), Ste::Abort);
        assert_eq!(Ste::decode(&[0; 8]), Ste::Invalid);
        // Bypass (Config 0b100) is never produced and never mistaken for S2.
        assert_eq!(
            Ste::decode(&[1 | (0b100 << 1), 0, 0, 0, 0, 0, 0, 0]),
            Ste::Other
        );
        // Stage 2 with big-endian tables is not ours either.
        let mut w = Ste::Stage2(Stage2Ste {
            vmid: 1,
            vtcr: 0,
            ttb: 0,
            fwb: false,
            ptw: false,
        })
        .encode();
        w[2] |= S2ENDI;
        assert_eq!(Ste::decode(&w), Ste::Other);
        // A misaligned root loses its low bits: S2TTB is [51:4].
        let w = Ste::Stage2(Stage2Ste {
            vmid: 1,
            vtcr: 0,
            ttb: 0xfff0_0000_0000_100f,
            fwb: false,
            ptw: false,
        })
        .encode();
        assert_eq!(w[3], 0x0000_0000_0000_1000);
    }

    #[test]
    fn l1_descriptor_round_trip() {
        let d = L1Desc {
            l2ptr: 0x4123_4000,
            span: 9,
        };
        assert_eq!(L1Desc::decode(d.encode()), d);
        assert_eq!(d.entries(), 256);
        assert_eq!(L1Desc::decode(0).entries(), 0);
        assert_eq!(L1Desc::decode(0x1f).entries(), 0);
    }
}
