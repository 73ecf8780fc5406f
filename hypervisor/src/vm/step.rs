//! Completing a trapped instruction for the guest: the PC moves past it by
//! the length ESR_EL2.IL gives (2 bytes for a 16-bit T32 instruction), an
//! AArch32 PC wraps at 32 bits, and in a T32 IT block ITSTATE advances as the
//! hardware would have advanced it (Arm ARM G1.9.3, "ITSTATE", the
//! `AArch32.ITAdvance()` pseudocode). A trapped AArch32 instruction whose
//! condition fails is skipped without being emulated (ESR_EL2 ISS CV/COND,
//! "ISS encoding for an exception from a WF* instruction" and the coprocessor
//! trap encodings; KVM's `kvm_condition_valid32`).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::arch::aarch64::esr::Esr;

/// SPSR.M\[4\] (nRW): the interrupted code ran in AArch32.
pub const SPSR_NRW: u64 = 1 << 4;
/// SPSR.T (AArch32): the interrupted code ran in T32.
pub const SPSR_T: u64 = 1 << 5;
/// ITSTATE\[1:0\] at SPSR\[26:25\], ITSTATE\[7:2\] at SPSR\[15:10\].
const IT_LOW_SHIFT: u64 = 25;
const IT_HIGH_SHIFT: u64 = 10;
const IT_MASK: u64 = (0b11 << IT_LOW_SHIFT) | (0b11_1111 << IT_HIGH_SHIFT);

/// The AArch32 ITSTATE held in an SPSR.
pub const fn itstate(spsr: u64) -> u8 {
    (((spsr >> IT_LOW_SHIFT) & 0b11) | (((spsr >> IT_HIGH_SHIFT) & 0b11_1111) << 2)) as u8
}

/// `spsr` with its ITSTATE replaced by `it`.
pub const fn with_itstate(spsr: u64, it: u8) -> u64 {
    let it = it as u64;
    (spsr & !IT_MASK) | ((it & 0b11) << IT_LOW_SHIFT) | ((it >> 2) << IT_HIGH_SHIFT)
}

/// `AArch32.ITAdvance()`: the ITSTATE after one instruction of an IT block.
pub const fn it_advance(it: u8) -> u8 {
    if it & 0b111 == 0 {
        0
    } else {
        (it & 0b1110_0000) | ((it << 1) & 0b1_1111)
    }
}

/// The PC and PSTATE after the trapped instruction described by `esr`,
/// which ran at `pc` with `spsr`.
pub const fn next(pc: u64, spsr: u64, esr: u64) -> (u64, u64) {
    let len = Esr::new(esr).instruction_len();
    if spsr & SPSR_NRW == 0 {
        return (pc.wrapping_add(len), spsr);
    }
    let pc = pc.wrapping_add(len) & 0xffff_ffff;
    if spsr & SPSR_T == 0 {
        return (pc, spsr);
    }
    (pc, with_itstate(spsr, it_advance(itstate(spsr))))
}

/// Whether condition `cond` (A32 encoding, 0-15) passes with the NZCV flags
/// of `spsr` (Arm ARM F1.3, "Conditional execution", `ConditionHolds()`).
pub const fn condition_holds(cond: u8, spsr: u64) -> bool {
    let n = spsr & (1 << 31) != 0;
    let z = spsr & (1 << 30) != 0;
    let c = spsr & (1 << 29) != 0;
    let v = spsr & (1 << 28) != 0;
    let result = match (cond >> 1) & 0b111 {
        0b000 => z,
        0b001 => c,
        0b010 => n,
        0b011 => v,
        0b100 => c && !z,
        0b101 => n == v,
        0b110 => n == v && !z,
        _ => true,
    };
    // Odd conditions invert, except 0b1111, which is "always" like 0b1110.
    if cond & 1 == 1 && cond != 0b1111 {
        !result
    } else {
        result
    }
}

/// Whether a trapped instruction from AArch32 would have executed: false
/// when its condition fails, so it is to be skipped, not emulated. Always
/// true for AArch64 and for exception classes with no condition field
/// (EC bits \[31:30\] non-zero: aborts, HVC, SVC, ...). When CV is 0 the
/// condition comes from ITSTATE, which for an instruction outside an IT
/// block means "always".
pub const fn condition_passes(esr: u64, spsr: u64) -> bool {
    if spsr & SPSR_NRW == 0 || (esr >> 30) & 0b11 != 0 {
        return true;
    }
    let cv = esr & (1 << 24) != 0;
    let cond = if cv {
        ((esr >> 20) & 0xf) as u8
    } else {
        let it = itstate(spsr);
        if it == 0 {
            return true;
        }
        it >> 4
    };
    condition_holds(cond, spsr)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    /// ESR of a trapped WFI: EC 0x01, IL as given.
    fn wfi(il: bool) -> u64 {
        (0x01 << 26) | (u64::from(il) << 25)
    }

    /// AArch32 User mode in T32.
    const USR_T32: u64 = 0b1_0000 | SPSR_T;

    #[test]
    fn aarch64_steps_by_four_and_keeps_pstate() {
        assert_eq!(next(0x4010_0000, 0x3c5, wfi(true)), (0x4010_0004, 0x3c5));
        // IL is RES1 for AArch64 traps, but the length follows IL either way.
        assert_eq!(next(0x1000, 0x3c5, wfi(false)).0, 0x1002);
    }

    #[test]
    fn a_16_bit_t32_instruction_steps_by_two() {
        assert_eq!(next(0x8000, USR_T32, wfi(false)), (0x8002, USR_T32));
        assert_eq!(next(0x8000, USR_T32, wfi(true)), (0x8004, USR_T32));
        // A32 (T clear) with IL set.
        assert_eq!(next(0x8000, 0b1_0000, wfi(true)), (0x8004, 0b1_0000));
    }

    #[test]
    fn aarch32_pc_wraps_at_32_bits() {
        assert_eq!(next(0xffff_fffe, USR_T32, wfi(false)).0, 0);
        assert_eq!(next(0xffff_fffc, 0b1_0000, wfi(true)).0, 0);
    }

    #[test]
    fn itstate_round_trips_through_the_spsr() {
        for it in 0..=255u8 {
            let spsr = with_itstate(USR_T32 | (0xf << 28), it);
            assert_eq!(itstate(spsr), it);
            assert_eq!(spsr & !IT_MASK, USR_T32 | (0xf << 28));
        }
    }

    #[test]
    fn itstate_advances_inside_a_t32_it_block() {
        // ITE EQ: firstcond 0000, mask 1100 -> ITSTATE 0b0000_1100.
        let ite_eq = 0b0000_1100;
        let spsr = with_itstate(USR_T32, ite_eq);
        let (_, after) = next(0x8000, spsr, wfi(false));
        // The second slot: condition NE (0001), last instruction of the block.
        assert_eq!(itstate(after), 0b0001_1000);
        let (_, done) = next(0x8002, after, wfi(false));
        assert_eq!(itstate(done), 0, "the block ends after its last slot");
        // A32 has no ITSTATE to advance.
        let a32 = with_itstate(0b1_0000, ite_eq);
        assert_eq!(next(0x8000, a32, wfi(true)).1, a32);
    }

    #[test]
    fn conditions_follow_the_flags() {
        let z = 1 << 30;
        let n = 1 << 31;
        let c = 1 << 29;
        let v = 1 << 28;
        let cases: [(u8, u64, bool); 16] = [
            (0x0, z, true),
            (0x1, z, false),
            (0x2, c, true),
            (0x3, c, false),
            (0x4, n, true),
            (0x5, 0, true),
            (0x6, v, true),
            (0x7, v, false),
            (0x8, c, true),
            (0x9, c | z, true),
            (0xa, n | v, true),
            (0xb, n, true),
            (0xc, n | v, true),
            (0xd, z, true),
            (0xe, 0, true),
            (0xf, 0, true),
        ];
        for (cond, flags, expect) in cases {
            assert_eq!(condition_holds(cond, flags), expect, "cond {cond:#x}");
        }
        assert!(!condition_holds(0x8, c | z), "HI needs Z clear");
        assert!(!condition_holds(0xc, z), "GT needs Z clear");
    }

    #[test]
    fn a_failed_condition_is_seen_from_cv_cond_or_itstate() {
        // WFINE with Z set: CV 1, COND 0001.
        let esr = wfi(false) | (1 << 24) | (0x1 << 20);
        assert!(!condition_passes(esr, USR_T32 | (1 << 30)));
        assert!(condition_passes(esr, USR_T32));
        // CV 0 inside an IT block: the condition is ITSTATE[7:4].
        let in_block = with_itstate(USR_T32 | (1 << 30), 0b0001_1000);
        assert!(!condition_passes(wfi(false), in_block));
        assert!(condition_passes(wfi(false), USR_T32 | (1 << 30)));
        // AArch64, and classes without a condition field, always pass.
        assert!(condition_passes(esr, 0x3c5 | (1 << 30)));
        let dabt = (0x24 << 26) | (1 << 24) | (0x1 << 20);
        assert!(condition_passes(dabt, USR_T32 | (1 << 30)));
    }
}
