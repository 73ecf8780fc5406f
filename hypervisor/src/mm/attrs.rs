//! Stage-2 memory attributes by intent, and the model of how stage 1 and stage 2 combine.
//!
//! Two halves:
//!
//! * The policy: which stage-2 `MemAttr` each kind of guest memory gets
//!   ([`stage2_policy`], [`stage2_memattr`]), exactly as the table in
//!   `docs/memory-attributes.md` ("The policy this project implements") says.
//! * A pure model of the architecture's combining rules ([`combine`]), so
//!   tests can check the promises the policy makes to guests. What QEMU
//!   reports instead, where it departs from the manual, belongs to the
//!   attribute check that runs on it (`attrcheck::qemu`).
//!
//! References (Arm ARM, DDI 0487 L.a numbering):
//! * D8.6.3 "Stage 2 memory type and Cacheability attributes" (allocation hints).
//! * D8.6.5 "... when FWB is disabled", Table D8-96 (MemAttr encoding),
//!   D8.6.5.1 Table D8-97 (memory type combining), D8.6.5.2 Table D8-98
//!   (Cacheability combining), I_MCQKW (MemAttr 0b1111 passes stage 1 through).
//! * D8.6.6 "... when FWB is enabled", Tables D8-100 and D8-101, R_GSDKZ
//!   (stage-2 Device types combine with stage 1), R_THYXB / R_TBQKG (hints).
//! * D8.6.7 "Stage 2 Shareability attributes", R_YHCTP.
//!
//! # Where the project reference and the manual differ
//!
//! `docs/memory-attributes.md` describes FWB MemAttr 0b0000-0b0011 as
//! "Device, of the subtype given at stage 2". The manual (R_GSDKZ) says the
//! stage-2 Device type is *combined* with stage 1: the more restrictive Device
//! type wins, so stage 1 Device-nGnRnE over FWB stage 2 Device-nGnRE is
//! Device-nGnRnE. The reference's wording matches QEMU (which ignores stage 1
//! there), not the manual. [`combine`] follows the manual; the attribute
//! check's model of QEMU follows QEMU. Everything else in the reference's tables agrees with the
//! manual.

use core::fmt;

/// The stage-2 `MemAttr[3:0]` field of a block or page descriptor (bits [5:2]).
///
/// Its meaning depends on HCR_EL2.FWB: see [`describe`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemAttr(u8);

impl MemAttr {
    /// FWB = 0: Device-nGnRnE.
    pub const DEVICE_NGNRNE: Self = Self(0b0000);
    /// FWB = 0 or 1: Device-nGnRE.
    pub const DEVICE_NGNRE: Self = Self(0b0001);
    /// FWB = 0 or 1: Device-nGRE.
    pub const DEVICE_NGRE: Self = Self(0b0010);
    /// FWB = 0 or 1: Device-GRE.
    pub const DEVICE_GRE: Self = Self(0b0011);
    /// FWB = 0: Normal, Inner and Outer Non-cacheable. FWB = 1: Normal
    /// Non-cacheable unless stage 1 is Device, then stage 1's Device type.
    pub const NORMAL_NC: Self = Self(0b0101);
    /// FWB = 1: Normal Write-Back, forced whatever stage 1 says.
    pub const FWB_FORCE_WB: Self = Self(0b0110);
    /// FWB = 1: the stage-1 attributes, unchanged.
    pub const FWB_AS_STAGE1: Self = Self(0b0111);
    /// FWB = 0: Normal, Inner and Outer Write-Back (stage 1 passes through).
    pub const NORMAL_WB: Self = Self(0b1111);

    /// Wraps a 4-bit field value, or `None` if `bits > 0xf`.
    pub const fn new(bits: u8) -> Option<Self> {
        if bits <= 0xf {
            Some(Self(bits))
        } else {
            None
        }
    }

    /// The 4-bit field value.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Every value the field can hold.
    pub fn all() -> impl Iterator<Item = Self> {
        (0u8..16).map(Self)
    }
}

impl fmt::Debug for MemAttr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemAttr({:#06b})", self.0)
    }
}

/// Shareability field (SH[1:0], descriptor bits [9:8]) of stage 1 or stage 2.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Shareability {
    /// 0b00.
    NonShareable,
    /// 0b01: reserved, CONSTRAINED UNPREDICTABLE. Never produced by the
    /// policy; present so that decoding any descriptor is lossless.
    Reserved,
    /// 0b10.
    Outer,
    /// 0b11.
    Inner,
}

impl Shareability {
    /// The 2-bit field value.
    pub const fn bits(self) -> u64 {
        match self {
            Self::NonShareable => 0b00,
            Self::Reserved => 0b01,
            Self::Outer => 0b10,
            Self::Inner => 0b11,
        }
    }

    /// Decodes the low two bits of `bits`.
    pub const fn from_bits(bits: u64) -> Self {
        match bits & 0b11 {
            0b00 => Self::NonShareable,
            0b01 => Self::Reserved,
            0b10 => Self::Outer,
            _ => Self::Inner,
        }
    }
}

/// How a passthrough PCIe BAR is mapped at stage 2.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BarPolicy {
    /// Device-nGnRE whatever the guest maps (default for non-prefetchable BARs).
    Device,
    /// The guest picks among Device types and Normal Non-cacheable (write-combine);
    /// default for prefetchable BARs.
    GuestChoice,
    /// Stage 1 decides, cacheable allowed. Needs FEAT_S2FWB and CTR_EL0.DIC.
    Cacheable,
}

/// What a range of guest IPA space is for; the stage-2 attributes follow from it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum MemoryIntent {
    /// Guest RAM: read/write/execute, Write-Back.
    GuestRam,
    /// A passed-through PCIe BAR: never executable.
    PassthroughBar(BarPolicy),
    /// Platform MMIO the guest may touch directly: Device-nGnRE, never executable.
    PlatformMmio,
}

/// CPU features the policy depends on, decoded by the caller from the ID registers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Features {
    /// FEAT_S2FWB (ID_AA64MMFR2_EL1.FWB), and the hypervisor sets HCR_EL2.FWB.
    pub fwb: bool,
    /// CTR_EL0.DIC: instruction cache invalidation to PoU not required for coherence.
    pub dic: bool,
    /// CTR_EL0.IDC: data cache clean to PoU not required for instruction coherence.
    pub idc: bool,
}

/// Why a memory intent cannot be honoured on this CPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AttrError {
    /// [`BarPolicy::Cacheable`] needs features the CPU lacks.
    CacheableNeeds {
        /// `"FEAT_S2FWB"`, `"CTR_EL0.DIC"` or `"FEAT_S2FWB and CTR_EL0.DIC"`.
        missing: &'static str,
    },
}

impl fmt::Display for AttrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CacheableNeeds { missing } => write!(
                f,
                "BAR policy `cacheable` needs {missing}, which this CPU does not have; \
                 use `guest-choice` or `device`"
            ),
        }
    }
}

/// Everything the stage-2 descriptor needs to know about one intent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stage2Policy {
    /// The MemAttr field, interpreted under the HCR_EL2.FWB the features imply.
    pub memattr: MemAttr,
    /// SH: inner for memory that can end up Normal cacheable; outer where the
    /// architecture treats it as outer shareable anyway (Device, Normal-NC, R_YHCTP).
    pub shareability: Shareability,
    /// Whether the guest may execute from it.
    pub executable: bool,
    /// The hypervisor must clean and invalidate to PoC every page of it that it
    /// wrote before the guest first runs: the guest starts with its MMU and
    /// caches off and, without FWB, would read stale memory past dirty lines.
    pub needs_clean_to_poc: bool,
}

/// The stage-2 attributes for `intent` on a CPU with `features`, per the policy
/// table in `docs/memory-attributes.md`.
pub fn stage2_policy(intent: MemoryIntent, features: Features) -> Result<Stage2Policy, AttrError> {
    let device = Stage2Policy {
        memattr: MemAttr::DEVICE_NGNRE,
        shareability: Shareability::Outer,
        executable: false,
        needs_clean_to_poc: false,
    };
    Ok(match intent {
        MemoryIntent::GuestRam => Stage2Policy {
            memattr: if features.fwb {
                MemAttr::FWB_FORCE_WB
            } else {
                MemAttr::NORMAL_WB
            },
            shareability: Shareability::Inner,
            executable: true,
            needs_clean_to_poc: !features.fwb,
        },
        MemoryIntent::PlatformMmio | MemoryIntent::PassthroughBar(BarPolicy::Device) => device,
        MemoryIntent::PassthroughBar(BarPolicy::GuestChoice) => Stage2Policy {
            memattr: MemAttr::NORMAL_NC,
            ..device
        },
        MemoryIntent::PassthroughBar(BarPolicy::Cacheable) => {
            let missing = match (features.fwb, features.dic) {
                (true, true) => None,
                (false, true) => Some("FEAT_S2FWB"),
                (true, false) => Some("CTR_EL0.DIC"),
                (false, false) => Some("FEAT_S2FWB and CTR_EL0.DIC"),
            };
            if let Some(missing) = missing {
                return Err(AttrError::CacheableNeeds { missing });
            }
            Stage2Policy {
                memattr: MemAttr::FWB_AS_STAGE1,
                shareability: Shareability::Inner,
                ..device
            }
        }
    })
}

/// The stage-2 MemAttr for `intent`: [`stage2_policy`]'s `memattr`.
pub fn stage2_memattr(intent: MemoryIntent, features: Features) -> Result<MemAttr, AttrError> {
    stage2_policy(intent, features).map(|p| p.memattr)
}

/// Names a MemAttr value as the architecture reads it with HCR_EL2.FWB = `fwb`
/// (Tables D8-96 and D8-101), for logs and the debugger.
pub fn describe(memattr: MemAttr, fwb: bool) -> &'static str {
    if fwb {
        match memattr.bits() {
            0b0000 => "Device-nGnRnE (combined with stage 1 Device)",
            0b0001 => "Device-nGnRE (combined with stage 1 Device)",
            0b0010 => "Device-nGRE (combined with stage 1 Device)",
            0b0011 => "Device-GRE (combined with stage 1 Device)",
            0b0101 => "Normal-NC, or stage 1's Device type",
            0b0110 => "Normal Write-Back, forced",
            0b0111 => "as stage 1",
            _ => "reserved (FWB)",
        }
    } else {
        match memattr.bits() {
            0b0000 => "Device-nGnRnE",
            0b0001 => "Device-nGnRE",
            0b0010 => "Device-nGRE",
            0b0011 => "Device-GRE",
            0b0101 => "Normal outer NC, inner NC",
            0b0110 => "Normal outer NC, inner WT",
            0b0111 => "Normal outer NC, inner WB",
            0b1001 => "Normal outer WT, inner NC",
            0b1010 => "Normal outer WT, inner WT",
            0b1011 => "Normal outer WT, inner WB",
            0b1101 => "Normal outer WB, inner NC",
            0b1110 => "Normal outer WB, inner WT",
            0b1111 => "Normal outer WB, inner WB",
            _ => "reserved",
        }
    }
}

// ---------------------------------------------------------------------------
// The combining model.
// ---------------------------------------------------------------------------

/// Device memory types, strictest first (Table D8-97's precedence order).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum DeviceType {
    /// Non-Gathering, non-Reordering, no Early write acknowledgement.
    NGnRnE,
    /// Non-Gathering, non-Reordering, Early write acknowledgement.
    NGnRE,
    /// Non-Gathering, Reordering, Early write acknowledgement.
    NGRE,
    /// Gathering, Reordering, Early write acknowledgement.
    GRE,
}

impl DeviceType {
    /// MAIR encoding (Attr<n> = 0b0000_dd00).
    pub const fn mair(self) -> u8 {
        match self {
            Self::NGnRnE => 0x00,
            Self::NGnRE => 0x04,
            Self::NGRE => 0x08,
            Self::GRE => 0x0c,
        }
    }

    /// The more restrictive of two Device types.
    pub fn strictest(self, other: Self) -> Self {
        self.min(other)
    }
}

/// Cacheability of one level (inner or outer) of Normal memory, most restrictive first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Cacheability {
    /// Non-cacheable.
    NonCacheable,
    /// Write-Through cacheable.
    WriteThrough,
    /// Write-Back cacheable.
    WriteBack,
}

impl Cacheability {
    /// MAIR nibble with the hints this model always carries: non-transient,
    /// read- and write-allocate (R_THYXB: hints come from stage 1, and every
    /// cacheable [`S1Type`] has these; R_TBQKG: RA/WA non-transient otherwise).
    pub const fn mair_nibble(self) -> u8 {
        match self {
            Self::NonCacheable => 0x4,
            Self::WriteThrough => 0xb,
            Self::WriteBack => 0xf,
        }
    }
}

/// A memory type after translation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum MemType {
    /// Device memory.
    Device(DeviceType),
    /// Normal memory with separate outer and inner Cacheability.
    Normal {
        /// Outer Cacheability.
        outer: Cacheability,
        /// Inner Cacheability.
        inner: Cacheability,
    },
}

impl MemType {
    /// The MAIR-format byte PAR_EL1.ATTR reports for this type (see [`Cacheability::mair_nibble`]).
    pub const fn mair(self) -> u8 {
        match self {
            Self::Device(d) => d.mair(),
            Self::Normal { outer, inner } => (outer.mair_nibble() << 4) | inner.mair_nibble(),
        }
    }

    const fn normal(c: Cacheability) -> Self {
        Self::Normal { outer: c, inner: c }
    }
}

/// The stage-1 memory types a guest can pick through MAIR_EL1.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum S1Type {
    /// MAIR 0x00.
    DeviceNGnRnE,
    /// MAIR 0x04.
    DeviceNGnRE,
    /// MAIR 0x08.
    DeviceNGRE,
    /// MAIR 0x0C.
    DeviceGRE,
    /// MAIR 0x44: Normal, inner and outer Non-cacheable.
    NormalNC,
    /// MAIR 0xBB: Normal, inner and outer Write-Through non-transient, RA/WA.
    NormalWT,
    /// MAIR 0xFF: Normal, inner and outer Write-Back non-transient, RA/WA.
    NormalWB,
}

impl S1Type {
    /// Every stage-1 type, for exhaustive tests.
    pub const ALL: [Self; 7] = [
        Self::DeviceNGnRnE,
        Self::DeviceNGnRE,
        Self::DeviceNGRE,
        Self::DeviceGRE,
        Self::NormalNC,
        Self::NormalWT,
        Self::NormalWB,
    ];

    /// The MAIR_ELx.Attr<n> encoding.
    pub const fn mair(self) -> u8 {
        self.mem_type().mair()
    }

    /// The memory type this MAIR encoding selects.
    pub const fn mem_type(self) -> MemType {
        match self {
            Self::DeviceNGnRnE => MemType::Device(DeviceType::NGnRnE),
            Self::DeviceNGnRE => MemType::Device(DeviceType::NGnRE),
            Self::DeviceNGRE => MemType::Device(DeviceType::NGRE),
            Self::DeviceGRE => MemType::Device(DeviceType::GRE),
            Self::NormalNC => MemType::normal(Cacheability::NonCacheable),
            Self::NormalWT => MemType::normal(Cacheability::WriteThrough),
            Self::NormalWB => MemType::normal(Cacheability::WriteBack),
        }
    }
}

/// The result of combining stage 1 and stage 2.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Effective {
    /// The resultant memory type.
    pub mem_type: MemType,
    /// What `AT S12E1R` reports in PAR_EL1.ATTR (MAIR format).
    pub par_attr: u8,
}

impl Effective {
    fn of(mem_type: MemType) -> Self {
        Self {
            mem_type,
            par_attr: mem_type.mair(),
        }
    }

    /// Whether the result is Device memory.
    pub fn is_device(&self) -> bool {
        matches!(self.mem_type, MemType::Device(_))
    }
}

fn cacheability_field(bits: u8) -> Option<Cacheability> {
    match bits & 0b11 {
        0b01 => Some(Cacheability::NonCacheable),
        0b10 => Some(Cacheability::WriteThrough),
        0b11 => Some(Cacheability::WriteBack),
        _ => None,
    }
}

fn device_field(bits: u8) -> DeviceType {
    match bits & 0b11 {
        0b00 => DeviceType::NGnRnE,
        0b01 => DeviceType::NGnRE,
        0b10 => DeviceType::NGRE,
        _ => DeviceType::GRE,
    }
}

/// The stage-2 memory type encoded by MemAttr with FWB = 0 (Table D8-96), or
/// `None` for a reserved encoding (FEAT_MTE_PERM not modelled).
pub fn stage2_type_nofwb(memattr: MemAttr) -> Option<MemType> {
    let b = memattr.bits();
    if b >> 2 == 0 {
        return Some(MemType::Device(device_field(b)));
    }
    Some(MemType::Normal {
        outer: cacheability_field(b >> 2)?,
        inner: cacheability_field(b)?,
    })
}

/// Combines stage 1 and stage 2 as the Arm ARM specifies, or `None` if
/// `s2_memattr` is a reserved encoding for this FWB setting.
///
/// * FWB = 0: Device beats Normal, the stricter Device type wins (Table D8-97);
///   inner and outer Cacheability combine separately, NC over WT over WB
///   (Table D8-98).
/// * FWB = 1 (Table D8-101): 0b00xx is Device combined with stage 1's Device
///   type (R_GSDKZ); 0b0101 gives stage 1's Device type or Normal-NC; 0b0110
///   forces Normal Write-Back; 0b0111 is stage 1 unchanged; the rest is reserved.
pub fn combine(s1: S1Type, s2_memattr: MemAttr, fwb: bool) -> Option<Effective> {
    let s1t = s1.mem_type();
    let b = s2_memattr.bits();
    let result = if fwb {
        match b {
            0b0000..=0b0011 => {
                let s2d = device_field(b);
                match s1t {
                    MemType::Device(d) => MemType::Device(d.strictest(s2d)),
                    MemType::Normal { .. } => MemType::Device(s2d),
                }
            }
            0b0101 => match s1t {
                MemType::Device(_) => s1t,
                MemType::Normal { .. } => MemType::normal(Cacheability::NonCacheable),
            },
            0b0110 => MemType::normal(Cacheability::WriteBack),
            0b0111 => s1t,
            _ => return None,
        }
    } else {
        let s2t = stage2_type_nofwb(s2_memattr)?;
        match (s1t, s2t) {
            (MemType::Device(a), MemType::Device(b)) => MemType::Device(a.strictest(b)),
            (MemType::Device(d), _) | (_, MemType::Device(d)) => MemType::Device(d),
            (
                MemType::Normal {
                    outer: o1,
                    inner: i1,
                },
                MemType::Normal {
                    outer: o2,
                    inner: i2,
                },
            ) => MemType::Normal {
                outer: o1.min(o2),
                inner: i1.min(i2),
            },
        }
    };
    Some(Effective::of(result))
}

/// The Shareability of a location after both stages (D8.6.7, R_YHCTP):
/// Outer Shareable if either stage says so, else Inner Shareable if either
/// says so, else Non-shareable; and a result that is Device or Normal Inner
/// and Outer Non-cacheable is always Outer Shareable. PAR_EL1.SH reports this
/// value (0b10 for Device and Normal Non-cacheable).
pub fn combined_shareability(s1: Shareability, s2: Shareability, result: MemType) -> Shareability {
    let non_cacheable = MemType::normal(Cacheability::NonCacheable);
    if matches!(result, MemType::Device(_)) || result == non_cacheable {
        return Shareability::Outer;
    }
    match (s1, s2) {
        (Shareability::Outer, _) | (_, Shareability::Outer) => Shareability::Outer,
        (Shareability::Inner, _) | (_, Shareability::Inner) => Shareability::Inner,
        _ => Shareability::NonShareable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn all_features() -> impl Iterator<Item = Features> {
        (0..8).map(|i| Features {
            fwb: i & 1 != 0,
            dic: i & 2 != 0,
            idc: i & 4 != 0,
        })
    }

    fn all_intents() -> [MemoryIntent; 5] {
        [
            MemoryIntent::GuestRam,
            MemoryIntent::PassthroughBar(BarPolicy::Device),
            MemoryIntent::PassthroughBar(BarPolicy::GuestChoice),
            MemoryIntent::PassthroughBar(BarPolicy::Cacheable),
            MemoryIntent::PlatformMmio,
        ]
    }

    #[test]
    fn s1_mair_encodings() {
        let got: Vec<u8> = S1Type::ALL.iter().map(|t| t.mair()).collect();
        assert_eq!(got, [0x00, 0x04, 0x08, 0x0c, 0x44, 0xbb, 0xff]);
    }

    #[test]
    fn policy_table() {
        let fwb = Features {
            fwb: true,
            dic: false,
            idc: false,
        };
        let nofwb = Features::default();
        let m = |i, f| stage2_memattr(i, f).map(|m| m.bits());
        assert_eq!(m(MemoryIntent::GuestRam, fwb), Ok(0b0110));
        assert_eq!(m(MemoryIntent::GuestRam, nofwb), Ok(0b1111));
        for f in [fwb, nofwb] {
            assert_eq!(
                m(MemoryIntent::PassthroughBar(BarPolicy::Device), f),
                Ok(0b0001)
            );
            assert_eq!(
                m(MemoryIntent::PassthroughBar(BarPolicy::GuestChoice), f),
                Ok(0b0101)
            );
            assert_eq!(m(MemoryIntent::PlatformMmio, f), Ok(0b0001));
        }
        let both = Features {
            fwb: true,
            dic: true,
            idc: false,
        };
        assert_eq!(
            m(MemoryIntent::PassthroughBar(BarPolicy::Cacheable), both),
            Ok(0b0111)
        );
        assert!(
            stage2_policy(MemoryIntent::GuestRam, nofwb)
                .unwrap()
                .needs_clean_to_poc
        );
        assert!(
            !stage2_policy(MemoryIntent::GuestRam, fwb)
                .unwrap()
                .needs_clean_to_poc
        );
        assert_eq!(
            stage2_policy(MemoryIntent::GuestRam, fwb)
                .unwrap()
                .shareability,
            Shareability::Inner
        );
    }

    #[test]
    fn cacheable_refusal_names_missing_features() {
        let bar = MemoryIntent::PassthroughBar(BarPolicy::Cacheable);
        let cases = [
            (false, false, "FEAT_S2FWB and CTR_EL0.DIC"),
            (false, true, "FEAT_S2FWB"),
            (true, false, "CTR_EL0.DIC"),
        ];
        for (fwb, dic, missing) in cases {
            let f = Features {
                fwb,
                dic,
                idc: true,
            };
            let err = stage2_memattr(bar, f).unwrap_err();
            assert_eq!(err, AttrError::CacheableNeeds { missing });
            let text = alloc::format!("{err}");
            assert!(text.contains(missing), "{text}");
        }
    }

    #[test]
    fn bars_and_mmio_never_executable() {
        for f in all_features() {
            for i in all_intents() {
                if let Ok(p) = stage2_policy(i, f) {
                    assert_eq!(p.executable, i == MemoryIntent::GuestRam, "{i:?}");
                }
            }
        }
    }

    /// Every S1Type x every intent x every feature set: the promises the policy makes.
    #[test]
    fn combine_exhaustive_policy_promises() {
        for f in all_features() {
            for intent in all_intents() {
                let Ok(memattr) = stage2_memattr(intent, f) else {
                    assert_eq!(intent, MemoryIntent::PassthroughBar(BarPolicy::Cacheable));
                    assert!(!(f.fwb && f.dic));
                    continue;
                };
                for s1 in S1Type::ALL {
                    let eff = combine(s1, memattr, f.fwb).expect("policy uses defined encodings");
                    assert_eq!(eff.par_attr, eff.mem_type.mair());
                    match intent {
                        MemoryIntent::PassthroughBar(BarPolicy::Device)
                        | MemoryIntent::PlatformMmio => match eff.mem_type {
                            MemType::Device(d) => assert!(d <= DeviceType::NGnRE, "{s1:?} {f:?}"),
                            _ => panic!("{s1:?} {f:?} gave {eff:?}"),
                        },
                        MemoryIntent::PassthroughBar(BarPolicy::GuestChoice) => match s1.mem_type()
                        {
                            MemType::Device(_) => assert_eq!(eff.mem_type, s1.mem_type()),
                            MemType::Normal { .. } => assert_eq!(eff.par_attr, 0x44, "{s1:?}"),
                        },
                        MemoryIntent::PassthroughBar(BarPolicy::Cacheable) => {
                            assert_eq!(eff.mem_type, s1.mem_type());
                            if s1 == S1Type::NormalWB {
                                assert_eq!(eff.par_attr, 0xff);
                            }
                        }
                        MemoryIntent::GuestRam => {
                            if f.fwb {
                                assert_eq!(eff.par_attr, 0xff, "{s1:?}");
                            } else {
                                // Without FWB stage 1 passes through (I_MCQKW).
                                assert_eq!(eff.mem_type, s1.mem_type());
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn combine_nofwb_rules() {
        let c = |s1, m| {
            combine(s1, MemAttr::new(m).unwrap(), false)
                .unwrap()
                .par_attr
        };
        assert_eq!(c(S1Type::NormalWB, 0b1010), 0xbb);
        assert_eq!(c(S1Type::NormalWT, 0b1111), 0xbb);
        assert_eq!(c(S1Type::NormalWB, 0b0111), 0x4f);
        assert_eq!(c(S1Type::NormalWT, 0b1101), 0xb4);
        assert_eq!(c(S1Type::NormalNC, 0b1111), 0x44);
        assert_eq!(c(S1Type::DeviceGRE, 0b0001), 0x04);
        assert_eq!(c(S1Type::NormalWB, 0b0011), 0x0c);
        assert_eq!(c(S1Type::DeviceNGnRnE, 0b0011), 0x00);
        for reserved in [0b0100, 0b1000, 0b1100] {
            assert!(combine(S1Type::NormalWB, MemAttr::new(reserved).unwrap(), false).is_none());
        }
    }

    #[test]
    fn combine_fwb_rules() {
        let c = |s1, m| {
            combine(s1, MemAttr::new(m).unwrap(), true)
                .unwrap()
                .par_attr
        };
        for s1 in S1Type::ALL {
            assert_eq!(c(s1, 0b0110), 0xff);
            assert_eq!(c(s1, 0b0111), s1.mair());
        }
        assert_eq!(c(S1Type::DeviceNGnRnE, 0b0001), 0x00);
        assert_eq!(c(S1Type::DeviceGRE, 0b0001), 0x04);
        assert_eq!(c(S1Type::NormalWB, 0b0010), 0x08);
        for m in [0b0100, 0b1000, 0b1111] {
            assert!(combine(S1Type::NormalWB, MemAttr::new(m).unwrap(), true).is_none());
        }
    }

    #[test]
    fn shareability_combines_outer_first_and_device_or_nc_is_outer() {
        use Shareability::{Inner, NonShareable, Outer};
        let wb = MemType::normal(Cacheability::WriteBack);
        assert_eq!(combined_shareability(Inner, Inner, wb), Inner);
        assert_eq!(combined_shareability(Inner, Outer, wb), Outer);
        assert_eq!(combined_shareability(NonShareable, Inner, wb), Inner);
        assert_eq!(
            combined_shareability(NonShareable, NonShareable, wb),
            NonShareable
        );
        let nc = MemType::normal(Cacheability::NonCacheable);
        let dev = MemType::Device(DeviceType::GRE);
        for r in [nc, dev] {
            assert_eq!(combined_shareability(NonShareable, Inner, r), Outer);
        }
    }

    #[test]
    fn describe_names_every_value() {
        assert_eq!(
            describe(MemAttr::FWB_FORCE_WB, true),
            "Normal Write-Back, forced"
        );
        assert_eq!(
            describe(MemAttr::NORMAL_WB, false),
            "Normal outer WB, inner WB"
        );
        assert_eq!(describe(MemAttr::DEVICE_NGNRE, false), "Device-nGnRE");
        for fwb in [false, true] {
            for m in MemAttr::all() {
                let reserved = combine(S1Type::NormalWB, m, fwb).is_none();
                assert_eq!(
                    describe(m, fwb).starts_with("reserved"),
                    reserved,
                    "{m:?} {fwb}"
                );
            }
        }
    }
}
