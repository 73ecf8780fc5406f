//! ESR_EL2 decoding is total, its report always formats, and the MMIO access
//! it describes extends and truncates values as the architecture does.

use crate::arch::aarch64::esr::{
    decode, DataAbortIss, Decoded, Esr, ExceptionClass, FaultStatus, MmioAccess,
};
use crate::devices::mmio;
use alloc::format;
use proptest::prelude::*;

/// What a load of `size` bytes leaves in the register, written out from the
/// Arm ARM pseudocode (LDR/LDRS*: `X[t] = SignExtend/ZeroExtend(data, regsize)`)
/// rather than with the shifts the decoder uses.
fn reference_load(raw: u64, size: u8, sign_extend: bool, sixty_four: bool) -> u64 {
    let bits = u32::from(size) * 8;
    let data = if bits == 64 {
        raw
    } else {
        raw & ((1u64 << bits) - 1)
    };
    let negative = bits < 64 && data & (1u64 << (bits - 1)) != 0;
    let extended = if sign_extend && negative {
        data | !((1u64 << bits) - 1)
    } else {
        data
    };
    if sixty_four {
        extended
    } else {
        extended & 0xffff_ffff
    }
}

fn esr_with(ec: u8, il: bool, iss: u32) -> u64 {
    (u64::from(ec) << 26) | (u64::from(il) << 25) | u64::from(iss & 0x01ff_ffff)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any 64-bit value decodes, its class matches EC, and every report
    /// (the full ESR, the decoded syndrome, Debug) formats without panicking.
    #[test]
    fn decode_is_total_and_display_never_panics(raw in any::<u64>()) {
        let esr = Esr::new(raw);
        let decoded = decode(raw);
        prop_assert_eq!(decoded, esr.decode());
        prop_assert_eq!(decoded.class(), esr.ec());
        prop_assert_eq!(decoded.class().raw(), esr.ec_raw());
        let report = format!("{esr}");
        prop_assert!(report.starts_with("EC=0x"), "{}", report);
        let _ = format!("{decoded} {decoded:?} {esr:?}");
        if let Decoded::DataAbort { iss, .. } = decoded {
            prop_assert_eq!(iss.raw(), esr.iss());
        }
    }

    /// EC and IL survive the trip through a raw value, and the ISS is the
    /// low 25 bits whatever lies above bit 31 (ISS2, RES0).
    #[test]
    fn ec_round_trip(ec in 0u8..64, il: bool, iss: u32, high in any::<u32>()) {
        let raw = esr_with(ec, il, iss) | (u64::from(high) << 32);
        let esr = Esr::new(raw);
        prop_assert_eq!(esr.ec_raw(), ec);
        prop_assert_eq!(esr.ec().raw(), ec);
        prop_assert_eq!(ExceptionClass::from_raw(ec).raw(), ec);
        prop_assert_eq!(esr.il(), il);
        prop_assert_eq!(esr.instruction_len(), if il { 4 } else { 2 });
        prop_assert_eq!(esr.iss(), iss & 0x01ff_ffff);
        prop_assert_eq!(esr.iss2(), high & 0x00ff_ffff);
        // Bits above EC's six are ignored, never a different class.
        prop_assert_eq!(ExceptionClass::from_raw(ec | 0xc0), ExceptionClass::from_raw(ec));
    }

    /// Fault status codes decode totally, with levels the manual numbers.
    #[test]
    fn fault_status_is_total(fsc: u8) {
        let status = FaultStatus::from_raw(fsc);
        prop_assert_eq!(status, FaultStatus::from_raw(fsc & 0x3f));
        if let Some(level) = status.level() {
            prop_assert!((-2..=3).contains(&level), "{:?}", status);
        }
        let _ = format!("{status}");
    }

    /// The MMIO access a data abort describes: present exactly when ISV is
    /// set, with each field from its ISS bits, and values extended and
    /// truncated as the reference model and the bus's own `extend` say.
    #[test]
    fn mmio_access_matches_the_reference_model(iss: u32, raw: u64, reg_value: u64) {
        let da = DataAbortIss::new(iss);
        let access = MmioAccess::from_data_abort(da);
        prop_assert_eq!(access.is_some(), iss & (1 << 24) != 0);
        let Some(access) = access else { return Ok(()) };
        let sas = (iss >> 22) & 3;
        prop_assert_eq!(u32::from(access.size), 1 << sas);
        prop_assert_eq!(access.write, iss & (1 << 6) != 0);
        prop_assert_eq!(u32::from(access.reg), (iss >> 16) & 0x1f);
        prop_assert_eq!(access.sign_extend, iss & (1 << 21) != 0);
        prop_assert_eq!(access.sixty_four, iss & (1 << 15) != 0);
        prop_assert_eq!(access.acquire_release, iss & (1 << 14) != 0);

        let loaded = access.load_value(raw);
        prop_assert_eq!(
            loaded,
            reference_load(raw, access.size, access.sign_extend, access.sixty_four)
        );
        prop_assert_eq!(
            loaded,
            mmio::extend(raw, access.size, access.sign_extend, access.sixty_four)
        );
        if !access.sixty_four {
            prop_assert_eq!(loaded >> 32, 0, "a W register write clears bits 63:32");
        }
        let stored = access.store_value(reg_value);
        prop_assert_eq!(stored, mmio::truncate(reg_value, access.size));
        if access.size < 8 {
            prop_assert_eq!(stored >> (u32::from(access.size) * 8), 0);
        }
    }

    /// A hand-built access with an impossible size still computes something.
    #[test]
    fn hand_built_access_never_panics(
        size: u8, sign_extend: bool, sixty_four: bool, raw: u64
    ) {
        let access = MmioAccess {
            size,
            write: false,
            reg: 0,
            sign_extend,
            sixty_four,
            acquire_release: false,
        };
        let _ = access.load_value(raw);
        let _ = access.store_value(raw);
    }
}
