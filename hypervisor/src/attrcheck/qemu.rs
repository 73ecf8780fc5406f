//! What QEMU 10.0's TCG reports in PAR_EL1.ATTR where it departs from the
//! Arm ARM, so that the attribute check (`check=attributes`) can run on QEMU
//! and still tell a departure it knows from a real mismatch. The manual's
//! model is `mm::attrs::combine`; `qemu/QUIRKS.md` describes each departure.

use crate::mm::attrs::{combine, MemAttr, S1Type};

/// What QEMU's TCG (target/arm/ptw.c: `combined_attrs_nofwb`,
/// `combined_attrs_fwb`) reports in PAR_EL1.ATTR for the same inputs, or
/// `None` where the manual calls the encoding reserved (QEMU reports 0x00
/// there; nothing in this project uses those values).
///
/// QEMU works on MAIR-format bytes. Its Device path compares the *low nibbles*
/// of both stages against Device encodings even when one stage is Normal, so a
/// Normal stage whose inner nibble is 0x4 (Non-cacheable) reads as
/// "non-Reordering" and demotes a Device-nGRE/GRE on the other stage to
/// Device-nGnRE. With FWB, MemAttr 0b00xx returns stage 2's Device type
/// without looking at stage 1.
///
/// Checked against QEMU 10.0.2 with `check=attributes` (max, neoverse-v1,
/// cortex-a72; qemu/scenarios/attributes-*.sh): for every MemAttr the policy
/// uses, PAR_EL1.ATTR matched this model, including each of the departures
/// [`qemu_differences`] lists, and PAR_EL1.SH matched
/// [`combined_shareability`].
pub fn combine_qemu(s1: S1Type, s2_memattr: MemAttr, fwb: bool) -> Option<u8> {
    // Reserved encodings are out of scope; both models agree on which they are.
    combine(s1, s2_memattr, fwb)?;
    let s1a = s1.mair();
    let b = s2_memattr.bits();
    if fwb {
        return Some(match b {
            0b0000..=0b0011 => b << 2,
            0b0101 if s1a & 0xf0 == 0 => s1a,
            0b0101 => 0x44,
            0b0110 => {
                if s1a & 0xf0 == 0 {
                    0xff
                } else {
                    let force = |n: u8| if n == 0 || n == 4 { 0xf } else { n | 4 };
                    (force(s1a >> 4) << 4) | force(s1a & 0xf)
                }
            }
            _ => s1a,
        });
    }
    // Stage 2 to MAIR format: Normal nibbles get RA/WA hints when cacheable.
    let (hi, lo) = (b >> 2, b & 0b11);
    let s2a = if hi == 0 {
        lo << 2
    } else {
        let hint = |a: u8| if a == 1 { 0 } else { 3 };
        (hi << 6) | (hint(hi) << 4) | (lo << 2) | hint(lo)
    };
    let (s1hi, s1lo, s2hi, s2lo) = (s1a >> 4, s1a & 0xf, s2a >> 4, s2a & 0xf);
    Some(if s1hi == 0 || s2hi == 0 {
        if s1lo == 0 || s2lo == 0 {
            0x00
        } else if s1lo == 4 || s2lo == 4 {
            0x04
        } else if s1lo == 8 || s2lo == 8 {
            0x08
        } else {
            0x0c
        }
    } else {
        let nibble = |a: u8, b: u8| {
            if a == 4 || b == 4 {
                4
            } else if (a >> 2) & 3 == 0 || (a >> 2) & 3 == 2 {
                a
            } else if (b >> 2) & 3 == 2 {
                0b1000 | (a & 3)
            } else {
                a
            }
        };
        (nibble(s1hi, s2hi) << 4) | nibble(s1lo, s2lo)
    })
}

/// One input for which QEMU reports a different PAR_EL1.ATTR than the manual gives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QemuDifference {
    /// Stage-1 type.
    pub s1: S1Type,
    /// Stage-2 MemAttr.
    pub s2: MemAttr,
    /// HCR_EL2.FWB.
    pub fwb: bool,
    /// PAR_EL1.ATTR per the manual ([`combine`]).
    pub manual: u8,
    /// PAR_EL1.ATTR as QEMU reports it ([`combine_qemu`]).
    pub qemu: u8,
}

/// Every (stage 1, non-reserved MemAttr, FWB) combination where QEMU and the
/// manual disagree, for a test harness that checks attributes on QEMU.
///
/// For the MemAttr values the policy uses, that is:
/// * FWB = 0, MemAttr 0b0101 (`guest-choice` BARs): stage 1 Device-nGRE or
///   Device-GRE gives 0x04 on QEMU (manual: 0x08 / 0x0C).
/// * FWB = 1, MemAttr 0b0001 (`device` BARs, platform MMIO): stage 1
///   Device-nGnRnE gives 0x04 on QEMU (manual: 0x00).
pub fn qemu_differences() -> impl Iterator<Item = QemuDifference> {
    [false, true].into_iter().flat_map(|fwb| {
        MemAttr::all().flat_map(move |s2| {
            S1Type::ALL.into_iter().filter_map(move |s1| {
                let manual = combine(s1, s2, fwb)?.par_attr;
                let qemu = combine_qemu(s1, s2, fwb)?;
                (manual != qemu).then_some(QemuDifference {
                    s1,
                    s2,
                    fwb,
                    manual,
                    qemu,
                })
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// The recorded list of QEMU departures for the values the policy uses.
    #[test]
    fn qemu_differences_for_policy_values() {
        let policy_values = [
            MemAttr::DEVICE_NGNRE,
            MemAttr::NORMAL_NC,
            MemAttr::NORMAL_WB,
            MemAttr::FWB_FORCE_WB,
            MemAttr::FWB_AS_STAGE1,
        ];
        let got: Vec<QemuDifference> = qemu_differences()
            .filter(|d| policy_values.contains(&d.s2))
            .filter(|d| d.fwb || d.s2 != MemAttr::FWB_FORCE_WB && d.s2 != MemAttr::FWB_AS_STAGE1)
            .collect();
        let want = [
            (S1Type::DeviceNGRE, MemAttr::NORMAL_NC, false, 0x08, 0x04),
            (S1Type::DeviceGRE, MemAttr::NORMAL_NC, false, 0x0c, 0x04),
            (
                S1Type::DeviceNGnRnE,
                MemAttr::DEVICE_NGNRE,
                true,
                0x00,
                0x04,
            ),
        ];
        let want: Vec<QemuDifference> = want
            .iter()
            .map(|&(s1, s2, fwb, manual, qemu)| QemuDifference {
                s1,
                s2,
                fwb,
                manual,
                qemu,
            })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn qemu_agrees_on_forced_write_back_hints() {
        // S1 0xFF over FWB 0b0110: both give 0xFF (hints kept from stage 1).
        for s1 in S1Type::ALL {
            assert_eq!(combine_qemu(s1, MemAttr::FWB_FORCE_WB, true), Some(0xff));
        }
    }
}
