//! The guest image parser and placement on any file and any guest RAM: no
//! panic, and an accepted placement never wraps and lies inside RAM below
//! the reserved tail.

use hypervisor::mm::addr::{Ipa, IpaRange, SIZE_2M};
use hypervisor::vm::image::{parse, placement, ImageKind};

/// What the fuzz target runs for one input (decoded as `(u64, u64, u64, u64, Vec<u8>)`, as
/// `fuzz_target!` does), and the corpus replay test too.
pub fn fuzz(data: &[u8]) {
    use libfuzzer_sys::arbitrary::{Arbitrary, Unstructured};
    let Ok(input) = <(u64, u64, u64, u64, Vec<u8>)>::arbitrary_take_rest(Unstructured::new(data))
    else {
        return;
    };
    let (ram_start, ram_size, file_len, reserved_tail, file) = input;
    let Ok(img) = parse(&file) else {
        return;
    };
    let _ = format!("{img:?}");
    let Some(ram) = IpaRange::new(Ipa::new(ram_start), ram_size) else {
        return;
    };
    for file_len in [file.len() as u64, file_len] {
        let Ok(placed) = placement(&img, ram, file_len, reserved_tail) else {
            continue;
        };
        assert!(placed.start().raw().checked_add(placed.size()).is_some());
        assert!(ram.contains_range(&placed), "{placed:?} outside {ram:?}");
        assert!(placed.end().raw() <= ram.end().raw() - reserved_tail);
        assert!(placed.size() >= img.memory_size.max(file_len));
        if img.kind == ImageKind::Image {
            assert_eq!((placed.start().raw() - img.load_offset) % SIZE_2M, 0);
        }
        assert_eq!(img.entry(&placed), Some(placed.start()));
    }
}
