//! Commands (IHI 0070, 4 "Commands"): 16 bytes each, opcode in bits [7:0].

/// A command's two double words.
pub type CmdWords = [u64; 2];

/// Bytes in a command.
pub const CMD_BYTES: usize = 16;

const OP_CFGI_STE: u64 = 0x03;
const OP_CFGI_ALL: u64 = 0x04;
const OP_TLBI_NSNH_ALL: u64 = 0x30;
const OP_TLBI_S12_VMALL: u64 = 0x28;
const OP_TLBI_S2_IPA: u64 = 0x2a;
const OP_CMD_SYNC: u64 = 0x46;

/// The commands this driver issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// CMD_CFGI_STE: the SMMU drops what it cached of one stream's STE
    /// (4.3.1); `leaf` keeps level-1 descriptors cached.
    CfgiSte {
        /// The StreamID.
        sid: u32,
        /// Leaf.
        leaf: bool,
    },
    /// CMD_CFGI_ALL: every cached STE and descriptor (4.3.3, Range = 31).
    CfgiAll,
    /// CMD_TLBI_S12_VMALL: every TLB entry of a VMID (4.4.6).
    TlbiS12Vmall {
        /// The VMID.
        vmid: u16,
    },
    /// CMD_TLBI_S2_IPA: stage-2 entries for one IPA page of a VMID (4.4.7).
    TlbiS2Ipa {
        /// The VMID.
        vmid: u16,
        /// The IPA (page-aligned; bits [51:12] are sent).
        ipa: u64,
        /// Only last-level entries.
        leaf: bool,
    },
    /// CMD_TLBI_NSNH_ALL: every non-secure non-hypervisor entry (4.4.9).
    TlbiNsnhAll,
    /// CMD_SYNC with no completion signal (CS = SIG_NONE, 4.7.3): done when
    /// the SMMU's CMDQ_CONS passes it.
    Sync,
}

impl Command {
    /// The command's 16 bytes.
    pub fn encode(&self) -> CmdWords {
        match *self {
            Self::CfgiSte { sid, leaf } => [OP_CFGI_STE | (u64::from(sid) << 32), u64::from(leaf)],
            Self::CfgiAll => [OP_CFGI_ALL, 31],
            Self::TlbiS12Vmall { vmid } => [OP_TLBI_S12_VMALL | (u64::from(vmid) << 32), 0],
            Self::TlbiS2Ipa { vmid, ipa, leaf } => [
                OP_TLBI_S2_IPA | (u64::from(vmid) << 32),
                (ipa & 0x000f_ffff_ffff_f000) | u64::from(leaf),
            ],
            Self::TlbiNsnhAll => [OP_TLBI_NSNH_ALL, 0],
            Self::Sync => [OP_CMD_SYNC, 0],
        }
    }

    /// Decodes what [`Command::encode`] produces; `None` for anything else
    /// (what a fake SMMU answers with CERROR_ILL).
    pub fn decode(w: &CmdWords) -> Option<Self> {
        let [d0, d1] = *w;
        let vmid = ((d0 >> 32) & 0xffff) as u16;
        let zero_hi_d0 = d0 >> 48 == 0;
        match d0 & 0xff {
            OP_CFGI_STE if d1 & !1 == 0 && d0 & 0xffff_ff00 == 0 => Some(Self::CfgiSte {
                sid: (d0 >> 32) as u32,
                leaf: d1 & 1 != 0,
            }),
            OP_CFGI_ALL if d0 == OP_CFGI_ALL && d1 & 0x1f == 31 => Some(Self::CfgiAll),
            OP_TLBI_S12_VMALL if zero_hi_d0 && d0 & 0xffff_ff00 == 0 && d1 == 0 => {
                Some(Self::TlbiS12Vmall { vmid })
            }
            OP_TLBI_S2_IPA if zero_hi_d0 && d0 & 0xffff_ff00 == 0 => Some(Self::TlbiS2Ipa {
                vmid,
                ipa: d1 & 0x000f_ffff_ffff_f000,
                leaf: d1 & 1 != 0,
            }),
            OP_TLBI_NSNH_ALL if d0 == OP_TLBI_NSNH_ALL && d1 == 0 => Some(Self::TlbiNsnhAll),
            // CS (bits 13:12) = 0: no interrupt, no MSI.
            OP_CMD_SYNC if d0 & 0x3000 == 0 => Some(Self::Sync),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_round_trips() {
        let all = [
            Command::CfgiSte {
                sid: 0x10,
                leaf: true,
            },
            Command::CfgiSte {
                sid: 0xffff_ffff,
                leaf: false,
            },
            Command::CfgiAll,
            Command::TlbiS12Vmall { vmid: 0xbeef },
            Command::TlbiS2Ipa {
                vmid: 3,
                ipa: 0x80_0000_3000,
                leaf: true,
            },
            Command::TlbiNsnhAll,
            Command::Sync,
        ];
        for c in all {
            assert_eq!(Command::decode(&c.encode()), Some(c), "{c:?}");
        }
    }

    #[test]
    fn opcodes_and_fields_sit_where_the_specification_puts_them() {
        assert_eq!(
            Command::CfgiSte {
                sid: 0x10,
                leaf: true
            }
            .encode(),
            [0x10_0000_0003, 1]
        );
        assert_eq!(
            Command::TlbiS12Vmall { vmid: 1 }.encode(),
            [0x1_0000_0028, 0]
        );
        assert_eq!(Command::Sync.encode(), [0x46, 0]);
        assert_eq!(Command::CfgiAll.encode(), [0x04, 31]);
        // The IPA's page offset is not sent.
        assert_eq!(
            Command::TlbiS2Ipa {
                vmid: 2,
                ipa: 0x4000_0fff,
                leaf: false
            }
            .encode(),
            [0x2_0000_002a, 0x4000_0000]
        );
    }

    #[test]
    fn unknown_opcodes_and_reserved_bits_do_not_decode() {
        assert_eq!(Command::decode(&[0x01, 0]), None); // CMD_PREFETCH_CONFIG
        assert_eq!(Command::decode(&[0x46 | (1 << 12), 0]), None); // SYNC with CS=IRQ
        assert_eq!(Command::decode(&[0x28 | (1 << 8), 0]), None);
        assert_eq!(Command::decode(&[0x03, 2]), None);
    }
}
