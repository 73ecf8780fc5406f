//! The emulated PL011 over arbitrary access sequences: no panic, and the
//! register model's invariants hold after every access (PL011 TRM, DDI 0183G,
//! section 3).

use crate::devices::mmio::MmioError;
use crate::devices::vpl011::{reg, ByteSink, VPl011, ID_BYTES, INT_TX};
use alloc::vec::Vec;
use proptest::prelude::*;

struct Out(Vec<u8>);

impl ByteSink for Out {
    fn put(&mut self, byte: u8) {
        self.0.push(byte);
    }
}

/// Read/write registers and the bits each implements.
const RW: [(u64, u32); 7] = [
    (reg::IBRD, 0xFFFF),
    (reg::FBRD, 0x3F),
    (reg::LCR_H, 0xFF),
    (reg::CR, 0xFF87),
    (reg::IFLS, 0x3F),
    (reg::IMSC, 0x7FF),
    (reg::DMACR, 0x7),
];

/// Every register with state, and a reserved word, as 32-bit reads.
const WATCHED: [u64; 13] = [
    reg::DR,
    reg::RSR_ECR,
    reg::FR,
    reg::ILPR,
    reg::IBRD,
    reg::FBRD,
    reg::LCR_H,
    reg::CR,
    reg::IFLS,
    reg::IMSC,
    reg::RIS,
    reg::MIS,
    reg::DMACR,
];

fn read32(u: &mut VPl011<Out>, word: u64) -> u32 {
    u.read(word, 4).map_or(u32::MAX, |v| v as u32)
}

fn snapshot(u: &mut VPl011<Out>) -> Vec<u32> {
    WATCHED.iter().map(|&w| read32(u, w)).collect()
}

fn lane_mask(size: u8) -> u32 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => 0xFFFF_FFFF,
    }
}

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => prop::sample::select(WATCHED.to_vec()).prop_flat_map(|w| (0u64..4).prop_map(move |b| w + b)),
        1 => (0u64..8).prop_map(|i| reg::PERIPH_ID0 + 4 * i),
        1 => Just(reg::ICR),
        1 => 0u64..0x1000,
        1 => any::<u64>(),
    ]
}

prop_compose! {
    fn op()(
        offset in offset(),
        size in prop_oneof![Just(1u8), Just(2), Just(4), Just(8), any::<u8>()],
        write: bool,
        value: u64,
    ) -> (u64, u8, bool, u64) {
        (offset, size, write, value)
    }
}

fn check_invariants(u: &mut VPl011<Out>) -> Result<(), TestCaseError> {
    prop_assert_eq!(read32(u, reg::FR), 0x90, "TXFE and RXFE, nothing else");
    prop_assert_eq!(read32(u, reg::DR), 0);
    prop_assert_eq!(read32(u, reg::RSR_ECR), 0);
    prop_assert_eq!(read32(u, reg::ILPR), 0);
    prop_assert_eq!(read32(u, reg::ICR), 0, "write-only");
    for (i, byte) in ID_BYTES.iter().enumerate() {
        prop_assert_eq!(read32(u, reg::PERIPH_ID0 + 4 * i as u64), u32::from(*byte));
    }
    for (r, mask) in RW {
        let v = read32(u, r);
        prop_assert_eq!(v & !mask, 0, "register {:#x} = {:#x}", r, v);
    }
    let ris = read32(u, reg::RIS);
    let imsc = read32(u, reg::IMSC);
    prop_assert_eq!(
        ris & !u32::from(INT_TX),
        0,
        "only the transmit interrupt is raised"
    );
    prop_assert_eq!(read32(u, reg::MIS), ris & imsc);
    prop_assert_eq!(u.interrupt_pending(), ris & imsc != 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn register_model_invariants(ops in proptest::collection::vec(op(), 1..48)) {
        let mut u = VPl011::new(Out(Vec::new()));
        check_invariants(&mut u)?;
        for (offset, size, write, value) in ops {
            let before = snapshot(&mut u);
            let sent = u.sink().0.len();
            let valid = matches!(size, 1 | 2 | 4)
                && offset % u64::from(size) == 0
                && offset < 0x1000;
            let word = offset & !3;
            let shift = ((offset & 3) * 8) as u32;
            let lanes = lane_mask(size).checked_shl(shift).unwrap_or(0);
            if !write {
                let result = u.read(offset, size);
                if valid {
                    let whole = read32(&mut u, word);
                    prop_assert_eq!(result, Ok(u64::from((whole & lanes) >> shift)));
                } else {
                    prop_assert_eq!(result, Err(MmioError::BadAccess));
                }
                prop_assert_eq!(snapshot(&mut u), before, "reads have no side effects");
                prop_assert_eq!(u.sink().0.len(), sent);
                continue;
            }
            let result = u.write(offset, size, value);
            let after = snapshot(&mut u);
            if !valid {
                prop_assert_eq!(result, Err(MmioError::BadAccess));
                prop_assert_eq!(after, before);
                prop_assert_eq!(u.sink().0.len(), sent);
                continue;
            }
            prop_assert_eq!(result, Ok(()));
            let written = (value as u32).checked_shl(shift).unwrap_or(0) & lanes;
            // Exactly one byte leaves per write that covers DR's data lane.
            let transmits = word == reg::DR && lanes & 0xFF != 0;
            prop_assert_eq!(u.sink().0.len(), sent + usize::from(transmits));
            if transmits {
                prop_assert_eq!(u.sink().0.last().copied(), Some(value as u8));
            }
            if let Some(&(_, mask)) = RW.iter().find(|(r, _)| *r == word) {
                // The written lanes read back masked; the others are kept.
                let old = before[WATCHED.iter().position(|w| *w == word).unwrap_or(0)];
                prop_assert_eq!(read32(&mut u, word), ((old & !lanes) | written) & mask);
            }
            if word == reg::ICR {
                let ris = before[10];
                prop_assert_eq!(after[10], ris & !written, "ICR clears what it names");
            }
            if !transmits && word != reg::ICR && !RW.iter().any(|(r, _)| *r == word) {
                prop_assert_eq!(&after, &before, "read-only or reserved {:#x}", word);
            }
            check_invariants(&mut u)?;
        }
    }
}
