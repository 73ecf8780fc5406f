//! The guest image header parser and placement: arbitrary headers never
//! panic, and an accepted placement never wraps and lies inside guest RAM.

use crate::mm::addr::{Ipa, IpaRange, SIZE_2M};
use crate::vm::image::{parse, placement, ImageKind, ARM64_MAGIC, HEADER_SIZE};
use alloc::vec::Vec;
use proptest::prelude::*;

fn field() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(0x8_0000),
        0u64..0x1000_0000,
        (0u64..64).prop_map(|b| 1u64 << b),
        (0u64..0x1000).prop_map(|o| u64::MAX - o),
        any::<u64>(),
    ]
}

prop_compose! {
    /// A file that starts with an arm64 Image header (most of the time) with
    /// arbitrary text_offset, image_size and flags.
    fn image_file()(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..256),
        magic in prop_oneof![4 => Just(true), 1 => Just(false)],
        text_offset in field(),
        image_size in field(),
        flags in prop_oneof![0u64..16, any::<u64>()],
    ) -> Vec<u8> {
        if bytes.len() >= HEADER_SIZE {
            bytes[8..16].copy_from_slice(&text_offset.to_le_bytes());
            bytes[16..24].copy_from_slice(&image_size.to_le_bytes());
            bytes[24..32].copy_from_slice(&flags.to_le_bytes());
            if magic {
                bytes[0x38..0x3c].copy_from_slice(&ARM64_MAGIC.to_le_bytes());
            }
        }
        bytes
    }
}

fn ram() -> impl Strategy<Value = IpaRange> {
    (field(), field()).prop_filter_map("wrapping RAM", |(start, size)| {
        IpaRange::new(Ipa::new(start), size)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn placement_never_wraps_and_lies_inside_ram(
        file in image_file(),
        ram in ram(),
        file_len in prop_oneof![Just(None), field().prop_map(Some)],
        reserved_tail in prop_oneof![Just(0u64), Just(SIZE_2M), field()],
    ) {
        let Ok(img) = parse(&file) else { return Ok(()) };
        prop_assert!(img.memory_size >= file.len() as u64);
        if img.kind == ImageKind::Flat {
            prop_assert_eq!((img.load_offset, img.entry_offset), (0, 0));
        }
        let file_len = file_len.unwrap_or(file.len() as u64);
        let Ok(placed) = placement(&img, ram, file_len, reserved_tail) else {
            return Ok(());
        };
        let start = placed.start().raw();
        prop_assert!(start.checked_add(placed.size()).is_some());
        prop_assert!(ram.contains_range(&placed), "{:?} outside {:?}", placed, ram);
        prop_assert!(placed.size() >= img.memory_size.max(file_len));
        prop_assert!(placed.end().raw() <= ram.end().raw() - reserved_tail);
        match img.kind {
            ImageKind::Image => {
                let base = start - img.load_offset;
                prop_assert_eq!(base % SIZE_2M, 0);
                prop_assert!(base >= ram.start().raw());
            }
            ImageKind::Flat => prop_assert_eq!(start, ram.start().raw()),
        }
        let entry = img.entry(&placed);
        prop_assert_eq!(entry, Some(placed.start()));
    }
}
