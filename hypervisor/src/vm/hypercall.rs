//! The hypervisor's own calls for guests, in the SMCCC vendor-specific
//! hypervisor service range (owning entity 6, Arm DEN 0028), made with HVC #0.
//!
//! [`super::psci::handle`] hands every fast call in 0x86000000-0x8600FFFF and
//! 0xC6000000-0xC600FFFF to this module; [`decode`] turns the registers into
//! a [`Hypercall`], the vcpu loop gathers the answer, and the `encode_*`
//! helpers lay it out in x0..x3. Registers x4-x17 are never written.
//!
//! | function ID  | name               | arguments | results |
//! |--------------|--------------------|-----------|---------|
//! | `0x8600FF00` | `HV_CALL_COUNT`    | -         | x0 = 7, the number of function IDs this service answers |
//! | `0x8600FF01` | `HV_CALL_UID`      | -         | x0..x3 = the service UUID (below) |
//! | `0x8600FF03` | `HV_REVISION`      | -         | x0 = 1 (major), x1 = 0 (minor) |
//! | `0xC6000001` | `HV_EFFECTIVE_ATTRS` | x1 = guest VA, x2 = 0 read / 1 write | x0 = status, x1 = PAR_EL1 after AT S12E1R / S12E1W, its address bits cleared |
//! | `0xC6000002` | `HV_STAGE2_INFO`   | x1 = IPA  | x0 = status, x1 = stage-2 MemAttr (4 bits), x2 = kind, x3 = feature flags |
//! | `0xC6000003` | `HV_EXIT_STATS`    | x1 = counter index | x0 = status, x1 = counter value |
//! | `0xC6000004` | `HV_PHYS_BAR_CHECK` | x1 = BAR selector | x0 = status, x1 = physical BAR address now, x2 = at boot, x3 = 1 if unchanged else 0 |
//!
//! Status (x0): 0 success, -1 not supported (an ID in the range that is not
//! listed, or a BAR the guest does not own), -2 invalid parameters. Unused
//! result registers are 0. `HV_CALL_COUNT`, `HV_CALL_UID` and `HV_REVISION`
//! are the SMCCC general service queries (SMC32, no status word).
//!
//! UUID: the ASCII bytes of `pthv-hypervisor1`, four bytes per register with
//! the first byte in bits 7:0, as SMCCC returns a UID ([`SERVICE_UID`]):
//! x0 = `0x76687470` (`pthv`), x1 = `0x7079682d` (`-hyp`),
//! x2 = `0x69767265` (`ervi`), x3 = `0x31726f73` (`sor1`).
//!
//! `HV_STAGE2_INFO` kind (x2): 0 unmapped, 1 guest RAM, 2 passthrough BAR
//! mapped with the policy's device type, 3 BAR with the guest's choice of
//! type (stage 2 does not restrict it), 4 BAR mapped cacheable, 5 platform
//! MMIO passed through, 6 emulated MMIO (trapped). Feature flags (x3):
//! bit 0 FEAT_S2FWB in use, bit 1 CTR_EL0.DIC, bit 2 CTR_EL0.IDC, bit 3 the
//! mapping is execute-never at stage 2.
//!
//! `HV_EXIT_STATS` counter index (x1): 0 total exits, 1 HVC, 2 SMC, 3 data
//! aborts, 4 MMIO accesses emulated, 5 aborts injected, 6 system register
//! traps, 7 WFI/WFE. Counters wrap at 2^64.
//!
//! `HV_PHYS_BAR_CHECK` selector (x1): bits 15:0 the guest's routing ID
//! (bus << 8 | device << 3 | function), bits 19:16 the BAR number 0-5, all
//! other bits 0. A guest learns whether a BAR it moved in its virtual config
//! space moved the physical BAR (it never should).

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::mm::addr::Ipa;

/// `HV_CALL_COUNT`: number of calls in the service.
pub const HV_CALL_COUNT: u32 = 0x8600_FF00;
/// `HV_CALL_UID`: the service UUID.
pub const HV_CALL_UID: u32 = 0x8600_FF01;
/// `HV_REVISION`: the ABI revision.
pub const HV_REVISION: u32 = 0x8600_FF03;
/// `HV_EFFECTIVE_ATTRS`: translate a guest VA through both stages.
pub const HV_EFFECTIVE_ATTRS: u32 = 0xC600_0001;
/// `HV_STAGE2_INFO`: how stage 2 maps an IPA.
pub const HV_STAGE2_INFO: u32 = 0xC600_0002;
/// `HV_EXIT_STATS`: one exit counter.
pub const HV_EXIT_STATS: u32 = 0xC600_0003;
/// `HV_PHYS_BAR_CHECK`: whether a physical BAR is where firmware put it.
pub const HV_PHYS_BAR_CHECK: u32 = 0xC600_0004;

/// Function IDs this service answers: the three queries and four calls.
pub const CALL_COUNT: u64 = 7;
/// ABI revision, major.
pub const REVISION_MAJOR: u64 = 1;
/// ABI revision, minor.
pub const REVISION_MINOR: u64 = 0;

/// The service UUID: the ASCII of `pthv-hypervisor1`, first byte in bits 7:0 of x0.
pub const SERVICE_UID: [u32; 4] = [
    u32::from_le_bytes(*b"pthv"),
    u32::from_le_bytes(*b"-hyp"),
    u32::from_le_bytes(*b"ervi"),
    u32::from_le_bytes(*b"sor1"),
];

/// Status: success.
pub const STATUS_OK: i64 = 0;
/// Status: not supported.
pub const STATUS_NOT_SUPPORTED: i64 = -1;
/// Status: invalid parameters.
pub const STATUS_INVALID_PARAMETERS: i64 = -2;

/// Highest BAR number of a type-0 header.
pub const MAX_BAR: u8 = 5;

/// A decoded hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypercall {
    /// `HV_CALL_COUNT`.
    CallCount,
    /// `HV_CALL_UID`.
    CallUid,
    /// `HV_REVISION`.
    Revision,
    /// `HV_EFFECTIVE_ATTRS`: translate `va` for a write or a read.
    EffectiveAttrs {
        /// Guest virtual address.
        va: u64,
        /// AT S12E1W rather than AT S12E1R.
        write: bool,
    },
    /// `HV_STAGE2_INFO` for one IPA.
    Stage2Info {
        /// The IPA asked about.
        ipa: Ipa,
    },
    /// `HV_EXIT_STATS` for one counter.
    ExitStats {
        /// Which counter.
        index: ExitCounter,
    },
    /// `HV_PHYS_BAR_CHECK` for one BAR of one function.
    BarCheck {
        /// bus << 8 | device << 3 | function.
        bdf: u16,
        /// BAR number, 0-5.
        bar: u8,
    },
}

/// Why a hypercall is refused; [`HypercallError::status`] is its x0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypercallError {
    /// No such function in the service, or the object asked about is not the guest's.
    NotSupported,
    /// An argument is out of range.
    InvalidParameters,
}

impl HypercallError {
    /// The status word for x0.
    pub const fn status(self) -> i64 {
        match self {
            Self::NotSupported => STATUS_NOT_SUPPORTED,
            Self::InvalidParameters => STATUS_INVALID_PARAMETERS,
        }
    }
}

/// The exit counters `HV_EXIT_STATS` reports, by index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCounter {
    /// Every exit from the guest.
    Total = 0,
    /// HVC.
    Hvc = 1,
    /// SMC.
    Smc = 2,
    /// Data aborts from the guest.
    DataAbort = 3,
    /// MMIO accesses emulated.
    MmioEmulated = 4,
    /// Aborts injected into the guest.
    AbortInjected = 5,
    /// Trapped system register accesses.
    SysregTrap = 6,
    /// WFI and WFE.
    Wfx = 7,
}

impl ExitCounter {
    /// Number of counters.
    pub const COUNT: usize = 8;

    /// The counter with this index, if there is one.
    pub const fn from_index(index: u64) -> Option<Self> {
        Some(match index {
            0 => Self::Total,
            1 => Self::Hvc,
            2 => Self::Smc,
            3 => Self::DataAbort,
            4 => Self::MmioEmulated,
            5 => Self::AbortInjected,
            6 => Self::SysregTrap,
            7 => Self::Wfx,
            _ => return None,
        })
    }
}

/// The exit counters of one VM. `repr(C)`: the debugger reads them as eight
/// u64s in [`ExitCounter`] order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ExitCounters {
    counts: [u64; ExitCounter::COUNT],
}

impl ExitCounters {
    /// Adds one to a counter (wrapping).
    pub fn bump(&mut self, counter: ExitCounter) {
        if let Some(c) = self.counts.get_mut(counter as usize) {
            *c = c.wrapping_add(1);
        }
    }

    /// A counter's value.
    pub fn get(&self, counter: ExitCounter) -> u64 {
        self.counts.get(counter as usize).copied().unwrap_or(0)
    }
}

/// Decodes a call that [`super::psci::handle`] returned as
/// [`super::psci::Action::Hypercall`]. Never panics.
pub fn decode(function_id: u32, args: &[u64; 7]) -> Result<Hypercall, HypercallError> {
    let [a1, a2, ..] = *args;
    match function_id {
        HV_CALL_COUNT => Ok(Hypercall::CallCount),
        HV_CALL_UID => Ok(Hypercall::CallUid),
        HV_REVISION => Ok(Hypercall::Revision),
        HV_EFFECTIVE_ATTRS => match a2 {
            0 => Ok(Hypercall::EffectiveAttrs {
                va: a1,
                write: false,
            }),
            1 => Ok(Hypercall::EffectiveAttrs {
                va: a1,
                write: true,
            }),
            _ => Err(HypercallError::InvalidParameters),
        },
        HV_STAGE2_INFO => Ok(Hypercall::Stage2Info { ipa: Ipa::new(a1) }),
        HV_EXIT_STATS => ExitCounter::from_index(a1)
            .map(|index| Hypercall::ExitStats { index })
            .ok_or(HypercallError::InvalidParameters),
        HV_PHYS_BAR_CHECK => {
            let bar = (a1 >> 16) & 0xF;
            if a1 >> 20 != 0 || bar > u64::from(MAX_BAR) {
                return Err(HypercallError::InvalidParameters);
            }
            Ok(Hypercall::BarCheck {
                bdf: (a1 & 0xFFFF) as u16,
                bar: bar as u8,
            })
        }
        _ => Err(HypercallError::NotSupported),
    }
}

/// The x1 selector `HV_PHYS_BAR_CHECK` expects (the guest side of [`decode`]).
pub const fn bar_selector(bus: u8, device: u8, function: u8, bar: u8) -> u64 {
    let bdf = (bus as u64) << 8 | ((device as u64) & 0x1F) << 3 | (function as u64) & 0x7;
    ((bar as u64) & 0xF) << 16 | bdf
}

/// x0..x3 for a refused call.
pub const fn encode_error(error: HypercallError) -> [u64; 4] {
    [error.status() as u64, 0, 0, 0]
}

/// x0..x3 for a call that succeeded with `x1..x3` results.
const fn ok(x1: u64, x2: u64, x3: u64) -> [u64; 4] {
    [STATUS_OK as u64, x1, x2, x3]
}

/// x0..x3 for `HV_CALL_COUNT`.
pub const fn encode_call_count() -> [u64; 4] {
    [CALL_COUNT, 0, 0, 0]
}

/// x0..x3 for `HV_CALL_UID`.
pub const fn encode_uid() -> [u64; 4] {
    let [a, b, c, d] = SERVICE_UID;
    [a as u64, b as u64, c as u64, d as u64]
}

/// x0..x3 for `HV_REVISION`.
pub const fn encode_revision() -> [u64; 4] {
    [REVISION_MAJOR, REVISION_MINOR, 0, 0]
}

/// The answers that need nothing from the machine: the three queries.
/// `None` for the calls the vcpu loop must gather data for.
pub const fn answer_query(call: &Hypercall) -> Option<[u64; 4]> {
    match call {
        Hypercall::CallCount => Some(encode_call_count()),
        Hypercall::CallUid => Some(encode_uid()),
        Hypercall::Revision => Some(encode_revision()),
        _ => None,
    }
}

/// PAR_EL1.F: the translation failed.
const PAR_F: u64 = 1 << 0;
/// PAR_EL1 with F = 0: ATTR \[63:56\], NS \[9\], SH \[8:7\], F \[0\] and
/// the RES1 bit 11. Bits \[55:12\] are the output address: after
/// `AT S12E1*` a host physical address, which says where the guest's memory
/// lies in the host's and is not the guest's to know.
const PAR_OK_KEPT: u64 = (0xff << 56) | (1 << 11) | (1 << 9) | (0b11 << 7) | PAR_F;
/// PAR_EL1 with F = 1: FST \[6:1\], PTW \[8\], S \[9\] and bit 11; bits
/// \[63:56\] are IMPLEMENTATION DEFINED and bits \[55:12\] RES0, so they
/// are not handed on either.
const PAR_FAULT_KEPT: u64 = (1 << 11) | (1 << 9) | (1 << 8) | (0x3f << 1) | PAR_F;

/// PAR_EL1 as the guest may see it (Arm ARM D19.2, "PAR_EL1"): the memory
/// attributes, shareability and fault report, never an address.
pub const fn guest_visible_par(par_el1: u64) -> u64 {
    if par_el1 & PAR_F == 0 {
        par_el1 & PAR_OK_KEPT
    } else {
        par_el1 & PAR_FAULT_KEPT
    }
}

/// x0..x3 for `HV_EFFECTIVE_ATTRS`: PAR_EL1 as the AT instruction left it,
/// without its address bits ([`guest_visible_par`]); PAR_EL1.F reports a
/// translation fault, the call itself succeeded.
pub const fn encode_effective_attrs(par_el1: u64) -> [u64; 4] {
    ok(guest_visible_par(par_el1), 0, 0)
}

/// What stage 2 has at an IPA, `HV_STAGE2_INFO` kind codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MappingKind {
    /// Nothing mapped.
    Unmapped = 0,
    /// Guest RAM.
    GuestRam = 1,
    /// A passthrough BAR with the policy's device memory type.
    BarPolicyDevice = 2,
    /// A passthrough BAR where stage 2 leaves the type to the guest.
    BarGuestChoice = 3,
    /// A passthrough BAR mapped cacheable.
    BarCacheable = 4,
    /// Platform MMIO passed through.
    PlatformMmio = 5,
    /// Emulated MMIO (trapped, not mapped).
    EmulatedMmio = 6,
}

/// `HV_STAGE2_INFO` feature flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stage2Features {
    /// FEAT_S2FWB in use (HCR_EL2.FWB).
    pub fwb: bool,
    /// CTR_EL0.DIC.
    pub dic: bool,
    /// CTR_EL0.IDC.
    pub idc: bool,
    /// The mapping is execute-never at stage 2.
    pub xn: bool,
}

impl Stage2Features {
    /// The x3 bits: FWB 0, DIC 1, IDC 2, XN 3.
    pub const fn bits(self) -> u64 {
        (self.fwb as u64) | (self.dic as u64) << 1 | (self.idc as u64) << 2 | (self.xn as u64) << 3
    }
}

/// The `HV_STAGE2_INFO` answer for one IPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2Info {
    /// The stage-2 descriptor's MemAttr\[3:0\] (0 when unmapped).
    pub mem_attr: u8,
    /// What is mapped there.
    pub kind: MappingKind,
    /// Feature flags.
    pub features: Stage2Features,
}

/// x0..x3 for `HV_STAGE2_INFO`.
pub const fn encode_stage2_info(info: Stage2Info) -> [u64; 4] {
    ok(
        (info.mem_attr & 0xF) as u64,
        info.kind as u64,
        info.features.bits(),
    )
}

/// x0..x3 for `HV_EXIT_STATS`.
pub const fn encode_exit_stat(value: u64) -> [u64; 4] {
    ok(value, 0, 0)
}

/// x0..x3 for `HV_PHYS_BAR_CHECK`.
pub const fn encode_bar_check(now: u64, at_boot: u64) -> [u64; 4] {
    ok(now, at_boot, (now == at_boot) as u64)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use crate::vm::psci::is_vendor_hyp;

    fn args(a1: u64, a2: u64) -> [u64; 7] {
        [a1, a2, 0, 0, 0, 0, 0]
    }

    #[test]
    fn every_function_id_is_in_the_vendor_hypervisor_range() {
        for f in [
            HV_CALL_COUNT,
            HV_CALL_UID,
            HV_REVISION,
            HV_EFFECTIVE_ATTRS,
            HV_STAGE2_INFO,
            HV_EXIT_STATS,
            HV_PHYS_BAR_CHECK,
        ] {
            assert!(is_vendor_hyp(f), "{f:#x}");
            assert!(decode(f, &args(0, 0)).is_ok(), "{f:#x}");
        }
    }

    #[test]
    fn queries() {
        assert_eq!(
            answer_query(&decode(HV_CALL_COUNT, &args(9, 9)).unwrap()),
            Some([7, 0, 0, 0])
        );
        assert_eq!(
            answer_query(&decode(HV_REVISION, &args(0, 0)).unwrap()),
            Some([1, 0, 0, 0])
        );
        let uid = answer_query(&decode(HV_CALL_UID, &args(0, 0)).unwrap()).unwrap();
        assert_eq!(uid, [0x7668_7470, 0x7079_682d, 0x6976_7265, 0x3172_6f73]);
        // SMCCC: a UID whose first word is all ones means "unknown".
        assert_ne!(uid[0], 0xFFFF_FFFF);
        let mut bytes = [0u8; 16];
        for (chunk, w) in bytes.chunks_mut(4).zip(uid) {
            chunk.copy_from_slice(&(w as u32).to_le_bytes());
        }
        assert_eq!(&bytes, b"pthv-hypervisor1");
        assert_eq!(
            answer_query(&Hypercall::Stage2Info { ipa: Ipa::new(0) }),
            None
        );
    }

    #[test]
    fn effective_attrs() {
        assert_eq!(
            decode(HV_EFFECTIVE_ATTRS, &args(0xFFFF_0000_1234_5000, 0)),
            Ok(Hypercall::EffectiveAttrs {
                va: 0xFFFF_0000_1234_5000,
                write: false
            })
        );
        assert_eq!(
            decode(HV_EFFECTIVE_ATTRS, &args(0x1000, 1)),
            Ok(Hypercall::EffectiveAttrs {
                va: 0x1000,
                write: true
            })
        );
        for bad in [2, u64::MAX, 1 << 32] {
            assert_eq!(
                decode(HV_EFFECTIVE_ATTRS, &args(0, bad)),
                Err(HypercallError::InvalidParameters)
            );
        }
        // The host PA 0x5123_4000 of a Normal-WB page: only ATTR, SH, NS
        // and bit 11 are handed on.
        assert_eq!(
            encode_effective_attrs(0xFF00_0000_5123_4F80 | (1 << 9)),
            [0, 0xFF00_0000_0000_0B80 | (1 << 9), 0, 0]
        );
        assert_eq!(guest_visible_par(0x0000_00ff_ffff_f000), 0);
        // A fault keeps FST, PTW, S and F; IMPLEMENTATION DEFINED bits go.
        let fault = 0xAB00_0012_3456_7000 | (1 << 11) | (1 << 9) | (1 << 8) | (0x25 << 1) | 1;
        assert_eq!(
            guest_visible_par(fault),
            (1 << 11) | (1 << 9) | (1 << 8) | (0x25 << 1) | 1
        );
    }

    #[test]
    fn stage2_info() {
        assert_eq!(
            decode(HV_STAGE2_INFO, &args(u64::MAX, 7)),
            Ok(Hypercall::Stage2Info {
                ipa: Ipa::new(u64::MAX)
            })
        );
        let info = Stage2Info {
            mem_attr: 0xF,
            kind: MappingKind::GuestRam,
            features: Stage2Features {
                fwb: true,
                dic: false,
                idc: true,
                xn: false,
            },
        };
        assert_eq!(encode_stage2_info(info), [0, 0xF, 1, 0b101]);
        let bar = Stage2Info {
            mem_attr: 0x31, // only 4 bits are reported
            kind: MappingKind::BarGuestChoice,
            features: Stage2Features {
                fwb: false,
                dic: true,
                idc: false,
                xn: true,
            },
        };
        assert_eq!(encode_stage2_info(bar), [0, 0x1, 3, 0b1010]);
        let kinds = [
            MappingKind::Unmapped,
            MappingKind::GuestRam,
            MappingKind::BarPolicyDevice,
            MappingKind::BarGuestChoice,
            MappingKind::BarCacheable,
            MappingKind::PlatformMmio,
            MappingKind::EmulatedMmio,
        ];
        for (code, kind) in kinds.into_iter().enumerate() {
            assert_eq!(kind as usize, code);
        }
    }

    #[test]
    fn exit_stats() {
        for i in 0..8 {
            let Ok(Hypercall::ExitStats { index }) = decode(HV_EXIT_STATS, &args(i, 0)) else {
                panic!("index {i}");
            };
            assert_eq!(index as u64, i);
        }
        for bad in [8, 255, u64::MAX] {
            assert_eq!(
                decode(HV_EXIT_STATS, &args(bad, 0)),
                Err(HypercallError::InvalidParameters)
            );
        }
        let mut c = ExitCounters::default();
        c.bump(ExitCounter::Hvc);
        c.bump(ExitCounter::Hvc);
        c.bump(ExitCounter::Wfx);
        assert_eq!(c.get(ExitCounter::Hvc), 2);
        assert_eq!(c.get(ExitCounter::Wfx), 1);
        assert_eq!(c.get(ExitCounter::Total), 0);
        assert_eq!(encode_exit_stat(42), [0, 42, 0, 0]);
    }

    #[test]
    fn bar_check() {
        let sel = bar_selector(1, 0x1F, 7, 5);
        assert_eq!(sel, 0x5_01FF);
        assert_eq!(
            decode(HV_PHYS_BAR_CHECK, &args(sel, 0)),
            Ok(Hypercall::BarCheck {
                bdf: 0x01FF,
                bar: 5
            })
        );
        assert_eq!(
            decode(HV_PHYS_BAR_CHECK, &args(bar_selector(0, 1, 0, 0), 0)),
            Ok(Hypercall::BarCheck { bdf: 0x08, bar: 0 })
        );
        for bad in [6 << 16, 0xF << 16, 1 << 20, u64::MAX] {
            assert_eq!(
                decode(HV_PHYS_BAR_CHECK, &args(bad, 0)),
                Err(HypercallError::InvalidParameters)
            );
        }
        assert_eq!(
            encode_bar_check(0x1000_0000, 0x1000_0000),
            [0, 0x1000_0000, 0x1000_0000, 1]
        );
        assert_eq!(
            encode_bar_check(0x2000_0000, 0x1000_0000),
            [0, 0x2000_0000, 0x1000_0000, 0]
        );
    }

    #[test]
    fn unknown_ids_and_errors() {
        for f in [
            0x8600_0000,
            0x8600_FF02,
            0xC600_0000,
            0xC600_0005,
            0xC600_FFFF,
            0x8600_0001,
            0,
        ] {
            assert_eq!(
                decode(f, &args(0, 0)),
                Err(HypercallError::NotSupported),
                "{f:#x}"
            );
        }
        assert_eq!(
            encode_error(HypercallError::NotSupported),
            [u64::MAX, 0, 0, 0]
        );
        assert_eq!(
            encode_error(HypercallError::InvalidParameters),
            [(-2i64) as u64, 0, 0, 0]
        );
    }

    #[test]
    fn random_inputs_never_panic() {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..100_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let f = if s & 1 == 0 {
                0xC600_0000 | (s >> 8) as u32 & 0x7
            } else {
                (s >> 32) as u32
            };
            let _ = decode(f, &[s, s.rotate_left(17), s >> 3, 0, 0, 0, s]);
        }
    }
}
