//! `check=attributes`: proves on the running CPU that the stage-2 attributes
//! combine with each stage-1 memory type as the model in `mm::attrs` says,
//! using `AT S12E1R` and `AT S12E1W` at EL2.
//!
//! For every stage-2 policy ([`Policy`]) one page of ordinary RAM is mapped
//! at stage 2 with that intent, and seven guest virtual pages map it at
//! stage 1, one per [`S1Type`] (AttrIndx `i` selects `S1Type::ALL[i]` in
//! MAIR_EL1). Each page is translated for a read and for a write; PAR_EL1
//! must report no fault, the ATTR the model predicts and the combined
//! Shareability.
//!
//! The expectation is the Arm ARM's ([`combine`]); where QEMU's TCG is known
//! to report something else ([`qemu_differences`]) the check expects QEMU's
//! value and says so on the line, with the manual's value next to it.
//!
//! This file holds the pure part (layout, encodings, expectations, the
//! report lines), tested on the host; `attrcheck/hw.rs` drives the hardware.

use alloc::string::String;
use core::fmt::Write;

use self::qemu::qemu_differences;
use crate::mm::attrs::{
    combine, combined_shareability, BarPolicy, MemAttr, MemoryIntent, S1Type, Shareability,
};

#[cfg(target_os = "none")]
mod hw;
pub mod qemu;

#[cfg(target_os = "none")]
pub use hw::run;

/// The stage-2 policies the check covers, in report order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Policy {
    /// Guest RAM.
    Ram,
    /// Passthrough BAR, policy `device`.
    Device,
    /// Passthrough BAR, policy `guest-choice`.
    GuestChoice,
    /// Passthrough BAR, policy `cacheable`.
    Cacheable,
    /// Platform MMIO the guest touches directly.
    Mmio,
}

impl Policy {
    /// Every policy, in report order.
    pub const ALL: [Self; 5] = [
        Self::Ram,
        Self::Device,
        Self::GuestChoice,
        Self::Cacheable,
        Self::Mmio,
    ];

    /// The name in the report.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ram => "ram",
            Self::Device => "device",
            Self::GuestChoice => "guest-choice",
            Self::Cacheable => "cacheable",
            Self::Mmio => "mmio",
        }
    }

    /// The memory intent the stage-2 mapping is made with.
    pub const fn intent(self) -> MemoryIntent {
        match self {
            Self::Ram => MemoryIntent::GuestRam,
            Self::Device => MemoryIntent::PassthroughBar(BarPolicy::Device),
            Self::GuestChoice => MemoryIntent::PassthroughBar(BarPolicy::GuestChoice),
            Self::Cacheable => MemoryIntent::PassthroughBar(BarPolicy::Cacheable),
            Self::Mmio => MemoryIntent::PlatformMmio,
        }
    }
}

/// The name of a stage-1 type in the report.
pub const fn s1_name(s1: S1Type) -> &'static str {
    match s1 {
        S1Type::DeviceNGnRnE => "device-ngnrne",
        S1Type::DeviceNGnRE => "device-ngnre",
        S1Type::DeviceNGRE => "device-ngre",
        S1Type::DeviceGRE => "device-gre",
        S1Type::NormalNC => "normal-nc",
        S1Type::NormalWT => "normal-wt",
        S1Type::NormalWB => "normal-wb",
    }
}

/// The CPU model for the report, from `CpuFeatures::core_name`: the quoted
/// CPU name if there is one (`QEMU 'max'` gives `max`), else the name
/// lowercased without spaces (`Cortex-A72` gives `cortex-a72`).
pub fn cpu_model(core_name: &str) -> String {
    let name = match core_name.split('\'').nth(1) {
        Some(quoted) if !quoted.is_empty() => quoted,
        _ => core_name,
    };
    name.chars()
        .filter(|c| !c.is_whitespace() && *c != '\'' && *c != '"')
        .flat_map(char::to_lowercase)
        .collect()
}

// ---------------------------------------------------------------------------
// The guest's stage 1.
// ---------------------------------------------------------------------------

/// TCR_EL1.T0SZ: 39-bit guest VAs, so the walk starts at level 1.
pub const T0SZ: u64 = 25;
/// First guest VA the check maps (level-1 index 4, level-2 index 0).
pub const VA_BASE: u64 = 0x1_0000_0000;
/// Stage-1 descriptor AF.
const S1_AF: u64 = 1 << 10;
/// Stage-1 descriptor SH = Inner Shareable.
const S1_SH_INNER: u64 = 0b11 << 8;
/// Stage-1 descriptor PXN and UXN: nothing here is executed.
const S1_XN: u64 = (1 << 53) | (1 << 54);

/// The guest VA whose stage-1 page has type `s1` and maps the page of `policy`.
pub fn va_for(policy: Policy, s1: S1Type) -> u64 {
    let p = Policy::ALL.iter().position(|&x| x == policy).unwrap_or(0) as u64;
    VA_BASE + ((p * 8 + attr_index(s1)) << 12)
}

/// The MAIR_EL1 index that selects `s1`.
pub fn attr_index(s1: S1Type) -> u64 {
    S1Type::ALL.iter().position(|&x| x == s1).unwrap_or(0) as u64
}

/// MAIR_EL1 with Attr<i> = `S1Type::ALL[i]` (Attr7 unused, Device-nGnRnE).
pub fn mair_el1() -> u64 {
    S1Type::ALL
        .iter()
        .enumerate()
        .fold(0, |m, (i, t)| m | (u64::from(t.mair()) << (8 * i)))
}

/// TCR_EL1 for the guest's stage 1: TTBR0 only (EPD1), 4 KiB granule,
/// 39-bit VAs, table walks Inner Shareable Write-Back, IPS = `ips` (the
/// PARange encoding of the IPA size).
pub fn tcr_el1(ips: u8) -> u64 {
    let irgn0_wb = 0b01 << 8;
    let orgn0_wb = 0b01 << 10;
    let sh0_inner = 0b11 << 12;
    let epd1 = 1 << 23;
    T0SZ | irgn0_wb | orgn0_wb | sh0_inner | epd1 | (u64::from(ips & 7) << 32)
}

/// SCTLR_EL1 with the stage-1 MMU and both caches on, alignment checks off,
/// and the bits that are RES1 without later extensions set (29, 28, 23, 22,
/// 20, 11). The C bit matters: with C = 0 every Normal data access would be
/// Non-cacheable whatever the tables say.
pub const SCTLR_EL1: u64 = (1 << 29)
    | (1 << 28)
    | (1 << 23)
    | (1 << 22)
    | (1 << 20)
    | (1 << 11)
    | (1 << 12) // I
    | (1 << 2) // C
    | 1; // M

/// A stage-1 table descriptor pointing at the table at IPA `next`.
pub const fn s1_table(next: u64) -> u64 {
    (next & 0x0000_ffff_ffff_f000) | 0b11
}

/// A stage-1 level-3 page descriptor for IPA `ipa` with memory type `s1`:
/// EL1 read/write, Inner Shareable, accessed, never executable.
pub fn s1_page(ipa: u64, s1: S1Type) -> u64 {
    (ipa & 0x0000_ffff_ffff_f000) | S1_XN | S1_AF | S1_SH_INNER | (attr_index(s1) << 2) | 0b11
}

/// Index into the level-`level` table (1 to 3) for `va`.
pub const fn table_index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (3 - level))) & 0x1ff) as usize
}

// ---------------------------------------------------------------------------
// Expectations and results.
// ---------------------------------------------------------------------------

/// What one translation should report.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Expectation {
    /// PAR_EL1.ATTR per the Arm ARM: what the line prints as `expect=`.
    pub manual: u8,
    /// What QEMU's TCG reports instead, where it is known to differ. The
    /// check accepts it (marked `qemu-differs`) so it can run on QEMU, and
    /// still accepts the manual's value, so it is right on hardware.
    pub qemu: Option<u8>,
    /// PAR_EL1.SH per the Arm ARM (the same on QEMU).
    pub sh: Shareability,
}

/// The expectation for stage 1 `s1` (Inner Shareable) over stage-2 `memattr`
/// with Shareability `s2_sh`, or `None` for a reserved encoding.
pub fn expectation(
    s1: S1Type,
    memattr: MemAttr,
    s2_sh: Shareability,
    fwb: bool,
) -> Option<Expectation> {
    let eff = combine(s1, memattr, fwb)?;
    let qemu = qemu_differences()
        .find(|d| d.s1 == s1 && d.s2 == memattr && d.fwb == fwb)
        .map(|d| d.qemu);
    Some(Expectation {
        manual: eff.par_attr,
        qemu,
        sh: combined_shareability(Shareability::Inner, s2_sh, eff.mem_type),
    })
}

/// The fields of PAR_EL1 the check reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Par {
    /// The raw value.
    pub raw: u64,
    /// F: the translation faulted.
    pub fault: bool,
    /// ATTR, bits [63:56] (valid when `!fault`).
    pub attr: u8,
    /// SH, bits [8:7] (valid when `!fault`).
    pub sh: Shareability,
}

impl Par {
    /// Decodes a PAR_EL1 value.
    pub const fn decode(raw: u64) -> Self {
        Self {
            raw,
            fault: raw & 1 != 0,
            attr: (raw >> 56) as u8,
            sh: Shareability::from_bits(raw >> 7),
        }
    }
}

/// One translation's outcome.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Outcome {
    /// The policy.
    pub policy: Policy,
    /// The stage-1 type.
    pub s1: S1Type,
    /// `AT S12E1W` rather than `AT S12E1R`.
    pub write: bool,
    /// What PAR_EL1 said.
    pub par: Par,
    /// What it should have said.
    pub expect: Expectation,
}

impl Outcome {
    /// No fault, the expected SH, and the manual's ATTR (or QEMU's known
    /// deviation from it).
    pub fn ok(&self) -> bool {
        !self.par.fault
            && self.par.sh == self.expect.sh
            && (self.matches_manual() || self.qemu_differs())
    }

    fn matches_manual(&self) -> bool {
        self.par.attr == self.expect.manual
    }

    /// The translation reported QEMU's documented deviation, not the manual's value.
    pub fn qemu_differs(&self) -> bool {
        !self.par.fault && !self.matches_manual() && self.expect.qemu == Some(self.par.attr)
    }

    /// The report line: `ATTR-CHECK cpu=.. fwb=.. s2=.. s1=.. at=r|w
    /// par=0x<ATTR> expect=0x<ATTR> ok|FAIL`, `expect` being the Arm ARM's
    /// value; then the reason of a failure, or ` qemu-differs` where the
    /// CPU reported QEMU's known deviation from the manual.
    pub fn line(&self, cpu: &str, fwb: bool) -> String {
        let mut s = String::new();
        let shown = if self.par.fault {
            self.par.raw
        } else {
            u64::from(self.par.attr)
        };
        let _ = write!(
            s,
            "ATTR-CHECK cpu={cpu} fwb={} s2={} s1={} at={} par={shown:#04x} expect={:#04x} {}",
            u8::from(fwb),
            self.policy.name(),
            s1_name(self.s1),
            if self.write { "w" } else { "r" },
            self.expect.manual,
            if self.ok() { "ok" } else { "FAIL" },
        );
        if self.par.fault {
            let _ = write!(s, " fault fst={:#04x}", (self.par.raw >> 1) & 0x3f);
        } else if self.par.sh != self.expect.sh {
            let _ = write!(
                s,
                " sh={:#04b} expect-sh={:#04b}",
                self.par.sh.bits(),
                self.expect.sh.bits()
            );
        }
        if self.qemu_differs() {
            let _ = write!(
                s,
                " qemu-differs (QEMU's TCG reports {shown:#04x}; the Arm ARM says {:#04x})",
                self.expect.manual
            );
        }
        s
    }
}

/// Counts for the summary line.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Tally {
    /// Translations that reported what was expected.
    pub ok: u32,
    /// Translations that did not.
    pub failed: u32,
    /// Policies the CPU cannot honour, refused as the policy says it must.
    pub refused: u32,
}

impl Tally {
    /// `ATTR-CHECK summary: <n> ok, <m> failed, <k> refused-as-expected`.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "ATTR-CHECK summary: {} ok, {} failed, {} refused-as-expected",
            self.ok, self.failed, self.refused
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::attrs::{stage2_policy, Features};

    #[test]
    fn cpu_model_names() {
        assert_eq!(cpu_model("QEMU 'max'"), "max");
        assert_eq!(cpu_model("Cortex-A72"), "cortex-a72");
        assert_eq!(cpu_model("Neoverse-V1"), "neoverse-v1");
        assert_eq!(cpu_model("unknown core"), "unknowncore");
    }

    #[test]
    fn mair_holds_every_type_at_its_index() {
        let m = mair_el1();
        for s1 in S1Type::ALL {
            assert_eq!((m >> (8 * attr_index(s1))) as u8, s1.mair());
        }
        assert_eq!(m, 0x00ff_bb44_0c08_0400);
    }

    #[test]
    fn every_page_has_its_own_va_in_one_level3_table() {
        let mut seen = alloc::vec::Vec::new();
        for p in Policy::ALL {
            for s1 in S1Type::ALL {
                let va = va_for(p, s1);
                assert!(va < 1 << (64 - T0SZ));
                assert_eq!(table_index(va, 1), table_index(VA_BASE, 1));
                assert_eq!(table_index(va, 2), table_index(VA_BASE, 2));
                assert!(!seen.contains(&va));
                seen.push(va);
            }
        }
    }

    #[test]
    fn descriptors() {
        let d = s1_page(0x4010_0000, S1Type::NormalWT);
        assert_eq!(d & 0x3, 0b11);
        assert_eq!((d >> 2) & 7, 5);
        assert_eq!((d >> 8) & 3, 0b11);
        assert_ne!(d & (1 << 10), 0);
        assert_eq!(d & 0x0000_ffff_ffff_f000, 0x4010_0000);
        assert_eq!(s1_table(0x4000_1000), 0x4000_1003);
        let t = tcr_el1(2);
        assert_eq!(t & 0x3f, 25);
        assert_eq!((t >> 14) & 3, 0, "4 KiB granule");
        assert_eq!((t >> 32) & 7, 2);
        assert_ne!(t & (1 << 23), 0);
    }

    #[test]
    fn par_decoding() {
        let p = Par::decode(0xff00_0000_4010_0f80);
        assert!(!p.fault);
        assert_eq!(p.attr, 0xff);
        assert_eq!(p.sh, Shareability::Inner);
        assert!(Par::decode(0x813).fault);
    }

    #[test]
    fn expectation_follows_the_manual_unless_qemu_is_known_to_differ() {
        for fwb in [false, true] {
            let f = Features {
                fwb,
                dic: true,
                idc: true,
            };
            for policy in Policy::ALL {
                let Ok(p) = stage2_policy(policy.intent(), f) else {
                    continue;
                };
                for s1 in S1Type::ALL {
                    let e = expectation(s1, p.memattr, p.shareability, fwb).unwrap();
                    let manual = combine(s1, p.memattr, fwb).unwrap().par_attr;
                    assert_eq!(e.manual, manual);
                    let listed =
                        qemu_differences().any(|d| d.s1 == s1 && d.s2 == p.memattr && d.fwb == fwb);
                    assert_eq!(e.qemu.is_some(), listed);
                    if e.manual & 0xf0 == 0 || e.manual == 0x44 {
                        assert_eq!(e.sh, Shareability::Outer);
                    } else {
                        assert_eq!(e.sh, Shareability::Inner, "{policy:?} {s1:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn report_lines() {
        let expect = Expectation {
            manual: 0x08,
            qemu: Some(0x04),
            sh: Shareability::Outer,
        };
        let o = Outcome {
            policy: Policy::GuestChoice,
            s1: S1Type::DeviceNGRE,
            write: true,
            par: Par::decode(0x0400_0000_0000_0100),
            expect,
        };
        assert_eq!(
            o.line("cortex-a72", false),
            "ATTR-CHECK cpu=cortex-a72 fwb=0 s2=guest-choice s1=device-ngre at=w \
             par=0x04 expect=0x08 ok qemu-differs (QEMU's TCG reports 0x04; the Arm ARM says 0x08)"
        );
        // Hardware that follows the manual passes too, unmarked.
        let manual = Outcome {
            par: Par::decode(0x0800_0000_0000_0100),
            ..o
        };
        assert!(manual.ok() && !manual.qemu_differs());
        // Anything else fails, as does the right value with the wrong SH.
        let bad = Outcome {
            par: Par::decode(0x0c00_0000_0000_0100),
            write: false,
            ..o
        };
        assert!(!bad.ok());
        assert!(bad
            .line("max", true)
            .starts_with("ATTR-CHECK cpu=max fwb=1 s2=guest-choice s1=device-ngre at=r par=0x0c expect=0x08 FAIL"));
        let wrong_sh = Outcome {
            par: Par::decode(0x0800_0000_0000_0180),
            ..o
        };
        assert!(!wrong_sh.ok());
        let t = Tally {
            ok: 56,
            failed: 0,
            refused: 1,
        };
        assert_eq!(
            t.summary(),
            "ATTR-CHECK summary: 56 ok, 0 failed, 1 refused-as-expected"
        );
    }
}
