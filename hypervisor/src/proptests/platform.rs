//! The host device-tree reader over arbitrary and mutated blobs: never a
//! panic, and whatever it accepts describes memory that does not overlap or
//! wrap (hostile-guest items 38-39).

use crate::mm::addr::{PhysAddr, PhysRange};
use crate::platform::{fdt_total_size, Platform};
use alloc::format;
use alloc::vec::Vec;
use proptest::prelude::*;

static FIXTURES: [&[u8]; 6] = [
    include_bytes!("../../../qemu/fixtures/virt-gicv3.dtb"),
    include_bytes!("../../../qemu/fixtures/virt-gicv2.dtb"),
    include_bytes!("../../../qemu/fixtures/virt-gicv3-el1.dtb"),
    include_bytes!("../../../qemu/fixtures/reserved.dtb"),
    include_bytes!("../../../qemu/fixtures/overlap-memory.dtb"),
    include_bytes!("../../../qemu/fixtures/no-gic.dtb"),
];

/// One change to a blob.
#[derive(Clone, Debug)]
enum Mutation {
    /// Overwrite a byte.
    Byte(usize, u8),
    /// Overwrite an aligned big-endian word (lengths, offsets, tokens, cells).
    Word(usize, u32),
    /// Cut the blob short.
    Truncate(usize),
    /// Insert bytes.
    Insert(usize, Vec<u8>),
    /// Remove a range.
    Remove(usize, usize),
}

fn interesting_word() -> impl Strategy<Value = u32> {
    prop_oneof![
        // FDT tokens, small cell counts and lengths.
        0u32..12,
        Just(0xffff_ffff),
        Just(0x8000_0000),
        Just(0xffff_fff0),
        any::<u32>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Byte(i, b)),
        (any::<usize>(), interesting_word()).prop_map(|(i, w)| Mutation::Word(i, w)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn apply(blob: &mut Vec<u8>, m: &Mutation) {
    let len = blob.len().max(1);
    match m {
        Mutation::Byte(i, b) => {
            if let Some(x) = blob.get_mut(i % len) {
                *x = *b;
            }
        }
        Mutation::Word(i, w) => {
            let at = (i % len) & !3;
            if let Some(x) = blob.get_mut(at..at + 4) {
                x.copy_from_slice(&w.to_be_bytes());
            }
        }
        Mutation::Truncate(i) => blob.truncate(i % len),
        Mutation::Insert(i, v) => {
            let at = i % len;
            if at <= blob.len() {
                blob.splice(at..at, v.iter().copied());
            }
        }
        Mutation::Remove(i, n) => {
            let at = i % len;
            let end = (at + n).min(blob.len());
            if at < end {
                blob.drain(at..end);
            }
        }
    }
}

/// Parses `blob` and, if it is accepted, checks what must hold of any
/// platform, exercising everything else a boot does with it.
fn check(blob: &[u8]) -> Result<(), TestCaseError> {
    let _ = fdt_total_size(blob);
    let mut platform = match Platform::from_fdt(blob) {
        Ok(p) => p,
        Err(e) => {
            let _ = format!("{e}");
            return Ok(());
        }
    };
    let _ = format!("{platform}");
    let memory: Vec<PhysRange> = platform.memory.iter().copied().collect();
    for (i, a) in memory.iter().enumerate() {
        prop_assert!(
            a.start().raw().checked_add(a.size()).is_some(),
            "{:?} wraps",
            a
        );
        prop_assert!(!a.is_empty(), "empty memory range {:?}", a);
        for b in memory.iter().skip(i + 1) {
            prop_assert!(!a.overlaps(b), "{:?} overlaps {:?}", a, b);
        }
    }
    for r in platform.reserved.iter() {
        prop_assert!(r.range.start().raw().checked_add(r.range.size()).is_some());
    }
    for (_, r) in platform.device_ranges() {
        prop_assert!(r.start().raw().checked_add(r.size()).is_some());
    }
    let _ = platform.firmware_reservations();
    if let Some(image) = PhysRange::new(PhysAddr::new(0x4008_0000), 0x20_0000) {
        if let Ok(usable) = platform.usable_memory(image) {
            for r in usable.iter() {
                prop_assert!(!r.overlaps(&image));
                prop_assert!(
                    memory.iter().any(|m| m.contains_range(r)),
                    "{:?} is not memory",
                    r
                );
            }
        }
    }
    let _ = platform.locate_dtb(PhysAddr::new(0x4000_0000));
    let _ = platform.locate_dtb(PhysAddr::new(u64::MAX - 0x100));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Random bytes, some behind a plausible header.
    #[test]
    fn arbitrary_blobs_never_panic(
        mut blob in proptest::collection::vec(any::<u8>(), 0..512),
        header: bool,
    ) {
        if header && blob.len() >= 40 {
            let len = blob.len() as u32;
            blob[0..4].copy_from_slice(&0xd00d_feedu32.to_be_bytes());
            blob[4..8].copy_from_slice(&len.to_be_bytes());
            blob[20..24].copy_from_slice(&17u32.to_be_bytes());
        }
        check(&blob)?;
    }

    /// QEMU's and the hand-written fixtures with a few changes each.
    #[test]
    fn mutated_fixtures_never_panic(
        which in 0..FIXTURES.len(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let mut blob = FIXTURES[which].to_vec();
        for m in &mutations {
            apply(&mut blob, m);
        }
        check(&blob)?;
    }
}

/// The fixtures themselves pass the same checks.
#[test]
fn fixtures_satisfy_the_platform_invariants() {
    for blob in FIXTURES {
        assert!(check(blob).is_ok());
    }
}
