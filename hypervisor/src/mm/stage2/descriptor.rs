//! Stage-2 block and page descriptors (VMSAv8-64, 4 KiB granule, 48-bit OA).
//!
//! Fields per Arm ARM DDI 0487 "Stage 2 Block and Page descriptor" formats and
//! `docs/memory-attributes.md`: MemAttr [5:2], S2AP [7:6], SH [9:8], AF [10],
//! output address [47:12], XN [54:53].
//!
//! XN: without FEAT_XNX only bit 54 exists (bit 53 is RES0); with FEAT_XNX,
//! XN[1:0] = 0b10 means "not executable at EL1 or EL0". Writing 0b10 therefore
//! means the same on every CPU, and it is the only non-zero value used here.

use tock_registers::{register_bitfields, LocalRegisterCopy};

use crate::mm::addr::Ipa;
use crate::mm::attrs::{MemAttr, Shareability, Stage2Policy};
use crate::mm::pgtable::Regime;

register_bitfields! {u64,
    /// Stage-2 block/page descriptor attribute fields.
    pub S2_LEAF [
        /// Memory type and Cacheability; meaning depends on HCR_EL2.FWB.
        MEMATTR OFFSET(2) NUMBITS(4) [],
        /// Stage-2 access permissions.
        S2AP OFFSET(6) NUMBITS(2) [
            None = 0b00,
            ReadOnly = 0b01,
            WriteOnly = 0b10,
            ReadWrite = 0b11
        ],
        /// Shareability.
        SH OFFSET(8) NUMBITS(2) [],
        /// Access flag.
        AF OFFSET(10) NUMBITS(1) [],
        /// Execute-never, XN[1:0] (bit 53 only with FEAT_XNX).
        XN OFFSET(53) NUMBITS(2) [
            Executable = 0b00,
            NeverEl1El0 = 0b10
        ]
    ]
}

/// Stage-2 access permissions (S2AP).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum S2Ap {
    /// 0b00: no access.
    None,
    /// 0b01: read-only.
    ReadOnly,
    /// 0b10: write-only.
    WriteOnly,
    /// 0b11: read/write.
    ReadWrite,
}

impl S2Ap {
    const fn bits(self) -> u64 {
        match self {
            Self::None => 0b00,
            Self::ReadOnly => 0b01,
            Self::WriteOnly => 0b10,
            Self::ReadWrite => 0b11,
        }
    }

    const fn from_bits(b: u64) -> Self {
        match b & 0b11 {
            0b00 => Self::None,
            0b01 => Self::ReadOnly,
            0b10 => Self::WriteOnly,
            _ => Self::ReadWrite,
        }
    }
}

/// Attributes of a stage-2 leaf. AF is always set by the encoder.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct S2Attrs {
    /// MemAttr[3:0].
    pub memattr: MemAttr,
    /// Access permissions.
    pub s2ap: S2Ap,
    /// Shareability.
    pub sh: Shareability,
    /// Execute-never at EL1 and EL0 (XN[1:0] = 0b10).
    pub xn: bool,
}

impl S2Attrs {
    /// Read/write attributes carrying out a [`Stage2Policy`].
    pub fn from_policy(p: &Stage2Policy) -> Self {
        Self {
            memattr: p.memattr,
            s2ap: S2Ap::ReadWrite,
            sh: p.shareability,
            xn: !p.executable,
        }
    }
}

/// Marker for the stage-2 regime.
#[derive(Clone, Copy, Debug)]
pub enum Stage2Regime {}

impl Regime for Stage2Regime {
    type Input = Ipa;
    type Attrs = S2Attrs;

    fn encode_attrs(a: &S2Attrs) -> u64 {
        let mut d = LocalRegisterCopy::<u64, S2_LEAF::Register>::new(0);
        d.modify(
            S2_LEAF::MEMATTR.val(u64::from(a.memattr.bits()))
                + S2_LEAF::S2AP.val(a.s2ap.bits())
                + S2_LEAF::SH.val(a.sh.bits())
                + S2_LEAF::AF::SET
                + if a.xn {
                    S2_LEAF::XN::NeverEl1El0
                } else {
                    S2_LEAF::XN::Executable
                },
        );
        d.get()
    }

    fn decode_attrs(desc: u64) -> S2Attrs {
        let d = LocalRegisterCopy::<u64, S2_LEAF::Register>::new(desc);
        S2Attrs {
            memattr: MemAttr::new(d.read(S2_LEAF::MEMATTR) as u8).unwrap_or(MemAttr::DEVICE_NGNRNE),
            s2ap: S2Ap::from_bits(d.read(S2_LEAF::S2AP)),
            sh: Shareability::from_bits(d.read(S2_LEAF::SH)),
            // Bit 54 alone decides on a CPU without FEAT_XNX.
            xn: d.read(S2_LEAF::XN) & 0b10 != 0,
        }
    }

    /// Memory type and Shareability changes need break-before-make; permission
    /// changes do not (R_WHZWS).
    fn change_needs_break(old: &S2Attrs, new: &S2Attrs) -> bool {
        old.memattr != new.memattr || old.sh != new.sh
    }
}
