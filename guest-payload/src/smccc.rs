//! SMC Calling Convention (Arm DEN 0028), PSCI (Arm DEN 0022) and the
//! hypervisor's own calls: function IDs, return codes, and the checks the
//! `psci` test makes.

use core::fmt;

/// SMCCC and PSCI return codes (PSCI "Return error codes").
pub mod ret {
    /// SUCCESS.
    pub const SUCCESS: i64 = 0;
    /// NOT_SUPPORTED (also the SMCCC "unknown function" answer).
    pub const NOT_SUPPORTED: i64 = -1;
    /// INVALID_PARAMETERS.
    pub const INVALID_PARAMETERS: i64 = -2;
    /// DENIED.
    pub const DENIED: i64 = -3;
    /// ALREADY_ON.
    pub const ALREADY_ON: i64 = -4;
}

/// Function IDs.
pub mod func {
    /// SMCCC_VERSION.
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    /// SMCCC_ARCH_FEATURES.
    pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
    /// SMCCC_ARCH_WORKAROUND_1 (Spectre variant 2 mitigation).
    pub const SMCCC_ARCH_WORKAROUND_1: u32 = 0x8000_8000;
    /// PSCI_VERSION.
    pub const PSCI_VERSION: u32 = 0x8400_0000;
    /// CPU_SUSPEND, SMC64.
    pub const CPU_SUSPEND: u32 = 0xc400_0001;
    /// CPU_OFF.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// CPU_ON, SMC64.
    pub const CPU_ON: u32 = 0xc400_0003;
    /// AFFINITY_INFO, SMC64.
    pub const AFFINITY_INFO: u32 = 0xc400_0004;
    /// MIGRATE_INFO_TYPE.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    /// SYSTEM_OFF.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// SYSTEM_RESET.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// PSCI_FEATURES.
    pub const PSCI_FEATURES: u32 = 0x8400_000a;
    /// Vendor-specific hypervisor service: call UID (SMCCC "Hypervisor
    /// Service Calls", owner 6).
    pub const HYP_CALL_UID: u32 = 0x8600_ff01;
    /// This project's hypercall: the effective (stage 1 + stage 2) attributes
    /// of a guest virtual address. x1 = VA, x2 = 0 read / 1 write; returns
    /// x0 = status, x1 = PAR_EL1 of `AT S12E1R/W`.
    pub const HV_EFFECTIVE_ATTRS: u32 = 0xc600_0001;
    /// This project's hypercall: what stage 2 holds for an IPA. x1 = IPA;
    /// returns x0 = status, x1 = MemAttr, x2 = kind, x3 = flags.
    pub const HV_STAGE2_INFO: u32 = 0xc600_0002;
}

/// The UID the project's hypervisor answers to [`func::HYP_CALL_UID`]:
/// x0..x3, each a 32-bit word holding four ASCII bytes, first byte in bits
/// 7:0: "pthv-hypervisor1". It must equal the hypervisor's
/// `vm::hypercall::SERVICE_UID`.
pub const HV_UID: [u32; 4] = [
    u32::from_le_bytes(*b"pthv"),
    u32::from_le_bytes(*b"-hyp"),
    u32::from_le_bytes(*b"ervi"),
    u32::from_le_bytes(*b"sor1"),
];

/// What answered the hypervisor UID query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypervisor {
    /// No hypervisor: the call trapped or returned NOT_SUPPORTED.
    Absent,
    /// This project's hypervisor.
    Ours,
    /// Some other hypervisor, with its UID.
    Other([u32; 4]),
}

impl Hypervisor {
    /// Classifies the answer to the UID query (`None`: the call trapped).
    pub fn from_uid_answer(regs: Option<[u64; 4]>) -> Self {
        let Some(regs) = regs else {
            return Hypervisor::Absent;
        };
        if regs[0] as u32 == ret::NOT_SUPPORTED as u32 {
            return Hypervisor::Absent;
        }
        let words = regs.map(|r| r as u32);
        if words == HV_UID {
            Hypervisor::Ours
        } else {
            Hypervisor::Other(words)
        }
    }

    /// Whether any hypervisor answered.
    pub fn is_present(self) -> bool {
        self != Hypervisor::Absent
    }
}

impl fmt::Display for Hypervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hypervisor::Absent => f.write_str("absent"),
            Hypervisor::Ours => f.write_str("present"),
            Hypervisor::Other(w) => write!(
                f,
                "other(uid {:08x}-{:08x}-{:08x}-{:08x})",
                w[0], w[1], w[2], w[3]
            ),
        }
    }
}

/// A PSCI or SMCCC status as a signed number: the callee returns an int32
/// in w0, so the upper half of x0 is ignored.
pub fn status(x0: u64) -> i64 {
    i64::from(x0 as u32 as i32)
}

/// The name of a PSCI/SMCCC return code, if it is one.
pub fn status_name(value: i64) -> Option<&'static str> {
    Some(match value {
        ret::SUCCESS => "SUCCESS",
        ret::NOT_SUPPORTED => "NOT_SUPPORTED",
        ret::INVALID_PARAMETERS => "INVALID_PARAMETERS",
        ret::DENIED => "DENIED",
        ret::ALREADY_ON => "ALREADY_ON",
        -5 => "ON_PENDING",
        -6 => "INTERNAL_FAILURE",
        -7 => "NOT_PRESENT",
        -8 => "DISABLED",
        -9 => "INVALID_ADDRESS",
        _ => return None,
    })
}

/// Formats a returned value: small numbers in decimal (status codes, with
/// their name when negative), larger ones in hex (versions, feature words).
pub struct Value(pub i64);

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, status_name(self.0)) {
            (v, Some(name)) if v < 0 => write!(f, "{v}({name})"),
            (v @ -16..=16, _) => write!(f, "{v}"),
            (v, _) => write!(f, "{v:#x}"),
        }
    }
}

/// What a check accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this value.
    Eq(i64),
    /// At least this value (versions).
    AtLeast(i64),
    /// Any non-negative value: the function is implemented.
    Supported,
    /// Either of two values (optional features).
    Either(i64, i64),
}

impl Expect {
    /// Whether `value` is accepted.
    pub fn accepts(self, value: i64) -> bool {
        match self {
            Expect::Eq(v) => value == v,
            Expect::AtLeast(v) => value >= v,
            Expect::Supported => value >= 0,
            Expect::Either(a, b) => value == a || value == b,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Expect::Eq(v) => write!(f, "{}", Value(v)),
            Expect::AtLeast(v) => write!(f, ">={}", Value(v)),
            Expect::Supported => f.write_str(">=0"),
            Expect::Either(a, b) => write!(f, "{}|{}", Value(a), Value(b)),
        }
    }
}

/// How a check's call is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// Through the PSCI conduit with immediate 0.
    Standard,
    /// `hvc #1`: SMCCC requires immediate 0, so a hypervisor must refuse it.
    HvcImmediate1,
}

/// Arguments that stand for the running CPU's own MPIDR affinity.
pub const OWN_MPIDR: u64 = u64::MAX;

/// One call the `psci` test makes and what it expects back under this
/// project's hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    /// Name printed in the report.
    pub name: &'static str,
    /// How the call is made.
    pub kind: CallKind,
    /// x0.
    pub function: u32,
    /// x1, or [`OWN_MPIDR`].
    pub arg1: u64,
    /// x2.
    pub arg2: u64,
    /// What the hypervisor must answer.
    pub expect: Expect,
}

const fn check(name: &'static str, function: u32, arg1: u64, arg2: u64, expect: Expect) -> Check {
    Check {
        name,
        kind: CallKind::Standard,
        function,
        arg1,
        arg2,
        expect,
    }
}

const fn feature(name: &'static str, function: u32, expect: Expect) -> Check {
    check(name, func::PSCI_FEATURES, function as u64, 0, expect)
}

/// The `psci` test: the functions PSCI 1.0 makes mandatory must be there,
/// SMCCC must be at least 1.1, and bad requests must get the PSCI error
/// codes, never a trap.
pub const PSCI_CHECKS: &[Check] = &[
    check(
        "PSCI_VERSION",
        func::PSCI_VERSION,
        0,
        0,
        Expect::AtLeast(0x1_0000),
    ),
    feature(
        "FEATURES(PSCI_VERSION)",
        func::PSCI_VERSION,
        Expect::Supported,
    ),
    feature(
        "FEATURES(CPU_SUSPEND)",
        func::CPU_SUSPEND,
        Expect::Supported,
    ),
    feature("FEATURES(CPU_OFF)", func::CPU_OFF, Expect::Supported),
    feature("FEATURES(CPU_ON)", func::CPU_ON, Expect::Supported),
    feature(
        "FEATURES(AFFINITY_INFO)",
        func::AFFINITY_INFO,
        Expect::Supported,
    ),
    feature(
        "FEATURES(MIGRATE_INFO_TYPE)",
        func::MIGRATE_INFO_TYPE,
        Expect::Supported,
    ),
    feature("FEATURES(SYSTEM_OFF)", func::SYSTEM_OFF, Expect::Supported),
    feature(
        "FEATURES(SYSTEM_RESET)",
        func::SYSTEM_RESET,
        Expect::Supported,
    ),
    feature(
        "FEATURES(PSCI_FEATURES)",
        func::PSCI_FEATURES,
        Expect::Supported,
    ),
    feature(
        "FEATURES(SMCCC_VERSION)",
        func::SMCCC_VERSION,
        Expect::Supported,
    ),
    feature(
        "FEATURES(unknown 1337)",
        1337,
        Expect::Eq(ret::NOT_SUPPORTED),
    ),
    check(
        "SMCCC_VERSION",
        func::SMCCC_VERSION,
        0,
        0,
        Expect::AtLeast(0x1_0001),
    ),
    check(
        "SMCCC_ARCH_FEATURES(WORKAROUND_1)",
        func::SMCCC_ARCH_FEATURES,
        func::SMCCC_ARCH_WORKAROUND_1 as u64,
        0,
        Expect::Either(ret::SUCCESS, ret::NOT_SUPPORTED),
    ),
    check(
        "AFFINITY_INFO(self)",
        func::AFFINITY_INFO,
        OWN_MPIDR,
        0,
        Expect::Eq(0),
    ),
    check(
        "CPU_ON(self)",
        func::CPU_ON,
        OWN_MPIDR,
        0,
        Expect::Eq(ret::ALREADY_ON),
    ),
    check(
        "CPU_ON(0xff)",
        func::CPU_ON,
        0xff,
        0,
        Expect::Eq(ret::INVALID_PARAMETERS),
    ),
    check(
        "unknown function 1337",
        1337,
        0,
        0,
        Expect::Eq(ret::NOT_SUPPORTED),
    ),
    Check {
        name: "hvc #1 PSCI_VERSION",
        kind: CallKind::HvcImmediate1,
        function: func::PSCI_VERSION,
        arg1: 0,
        arg2: 0,
        expect: Expect::Eq(ret::NOT_SUPPORTED),
    },
];

/// The affinity fields of MPIDR_EL1 (Aff3 and Aff2..Aff0), as PSCI takes
/// a target CPU.
pub fn mpidr_affinity(mpidr: u64) -> u64 {
    mpidr & 0xff_00ff_ffff
}

/// How a check came out: a value, or a trap (no one answered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// x0 as a status.
    Value(i64),
    /// The call raised an exception in the guest, with this ESR_EL1.
    Trapped(u64),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Value(v) => write!(f, "{}", Value(*v)),
            Outcome::Trapped(esr) => write!(f, "trap(ESR_EL1={esr:#x})"),
        }
    }
}

/// One report line of the `psci` test and whether it passed:
/// `GUEST psci <name> -> <value> expect <value> ok|FAIL`.
pub struct CheckLine<'a> {
    /// The check.
    pub check: &'a Check,
    /// What came back.
    pub outcome: Outcome,
}

impl CheckLine<'_> {
    /// Whether the outcome meets the expectation.
    pub fn ok(&self) -> bool {
        match self.outcome {
            Outcome::Value(v) => self.check.expect.accepts(v),
            Outcome::Trapped(_) => false,
        }
    }
}

impl fmt::Display for CheckLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GUEST psci {} -> {} expect {} {}",
            self.check.name,
            self.outcome,
            self.check.expect,
            if self.ok() { "ok" } else { "FAIL" }
        )
    }
}

/// PAR_EL1 after an address translation instruction (Arm ARM D19.2.113).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Par {
    /// The translation succeeded.
    Ok {
        /// Output address of the page (bits 47:12).
        pa: u64,
        /// ATTR, MAIR encoding of the resulting memory type.
        attr: u8,
        /// SH, shareability.
        sh: u8,
    },
    /// The translation faulted.
    Fault {
        /// FST, the fault status code.
        fst: u8,
        /// S: the fault was at stage 2.
        stage2: bool,
    },
}

impl Par {
    /// Decodes a PAR_EL1 value.
    pub fn decode(par: u64) -> Par {
        if par & 1 == 0 {
            Par::Ok {
                pa: par & 0x0000_ffff_ffff_f000,
                attr: (par >> 56) as u8,
                sh: ((par >> 7) & 3) as u8,
            }
        } else {
            Par::Fault {
                fst: ((par >> 1) & 0x3f) as u8,
                stage2: par & (1 << 9) != 0,
            }
        }
    }
}

impl fmt::Display for Par {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Par::Ok { pa, attr, .. } => write!(
                f,
                "PA={pa:#x} ATTR={attr:#04x} {}",
                crate::mmu::attr_name(attr)
            ),
            Par::Fault { fst, stage2 } => write!(
                f,
                "fault FST={fst:#x} at stage {}",
                if stage2 { 2 } else { 1 }
            ),
        }
    }
}

/// The answer to [`func::HV_STAGE2_INFO`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2Info {
    /// Stage-2 MemAttr[3:0] of the IPA.
    pub memattr: u64,
    /// What the IPA is to the hypervisor (its own numbering).
    pub kind: u64,
    /// Further bits, hypervisor-defined.
    pub flags: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_classification() {
        assert_eq!(Hypervisor::from_uid_answer(None), Hypervisor::Absent);
        assert_eq!(
            Hypervisor::from_uid_answer(Some([u64::MAX, 0, 0, 0])),
            Hypervisor::Absent
        );
        assert_eq!(
            Hypervisor::from_uid_answer(Some([0xffff_ffff, 0, 0, 0])),
            Hypervisor::Absent
        );
        assert_eq!(
            Hypervisor::from_uid_answer(Some(HV_UID.map(u64::from))),
            Hypervisor::Ours
        );
        let other = Hypervisor::from_uid_answer(Some([1, 2, 3, 4]));
        assert_eq!(other, Hypervisor::Other([1, 2, 3, 4]));
        assert!(other.is_present());
        assert_eq!(
            format!("{other}"),
            "other(uid 00000001-00000002-00000003-00000004)"
        );
        assert_eq!(format!("{}", Hypervisor::Ours), "present");
    }

    #[test]
    fn hv_uid_spells_the_name() {
        let bytes: Vec<u8> = HV_UID.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(&bytes, b"pthv-hypervisor1");
    }

    #[test]
    fn status_is_a_32_bit_int() {
        assert_eq!(status(0xffff_ffff), -1);
        assert_eq!(status(u64::MAX - 3), -4);
        assert_eq!(status(0x1_0001), 0x1_0001);
    }

    #[test]
    fn values_and_expectations_format() {
        assert_eq!(format!("{}", Value(-4)), "-4(ALREADY_ON)");
        assert_eq!(format!("{}", Value(0)), "0");
        assert_eq!(format!("{}", Value(0x1_0001)), "0x10001");
        assert_eq!(format!("{}", Expect::AtLeast(0x1_0000)), ">=0x10000");
        assert_eq!(format!("{}", Expect::Either(0, -1)), "0|-1(NOT_SUPPORTED)");
        assert!(Expect::Supported.accepts(0));
        assert!(!Expect::Supported.accepts(-1));
        assert!(Expect::Either(0, -1).accepts(-1));
        assert!(!Expect::Eq(-2).accepts(-1));
    }

    #[test]
    fn check_lines() {
        let check = PSCI_CHECKS
            .iter()
            .find(|c| c.name == "CPU_ON(self)")
            .unwrap();
        let line = CheckLine {
            check,
            outcome: Outcome::Value(-4),
        };
        assert!(line.ok());
        assert_eq!(
            format!("{line}"),
            "GUEST psci CPU_ON(self) -> -4(ALREADY_ON) expect -4(ALREADY_ON) ok"
        );
        let trapped = CheckLine {
            check,
            outcome: Outcome::Trapped(0x200_0000),
        };
        assert!(!trapped.ok());
        assert!(
            format!("{trapped}").ends_with("trap(ESR_EL1=0x2000000) expect -4(ALREADY_ON) FAIL")
        );
    }

    #[test]
    fn checks_have_unique_names() {
        for (i, a) in PSCI_CHECKS.iter().enumerate() {
            assert!(PSCI_CHECKS[i + 1..].iter().all(|b| b.name != a.name));
        }
    }

    #[test]
    fn affinity_mask() {
        assert_eq!(mpidr_affinity(0x8000_0000), 0);
        assert_eq!(mpidr_affinity(0x12_8100_0203), 0x12_0000_0203);
    }

    #[test]
    fn par_decoding() {
        assert_eq!(
            Par::decode(0xff00_0000_4000_1f80 | (3 << 7)),
            Par::Ok {
                pa: 0x4000_1000,
                attr: 0xff,
                sh: 3
            }
        );
        let text = format!("{}", Par::decode(0x4400_0000_1000_0000));
        assert_eq!(text, "PA=0x10000000 ATTR=0x44 Normal-NC");
        assert_eq!(
            Par::decode(0x200 | (0x10 << 1) | 1),
            Par::Fault {
                fst: 0x10,
                stage2: true
            }
        );
    }
}
