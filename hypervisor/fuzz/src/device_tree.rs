//! The host device tree reader on any bytes: no panic, and any platform it
//! accepts has memory ranges that neither wrap nor overlap.

use hypervisor::mm::addr::{PhysAddr, PhysRange};
use hypervisor::platform::{fdt_total_size, Platform};

/// What the fuzz target runs for one input, and the corpus replay test too.
pub fn fuzz(data: &[u8]) {
    let _ = fdt_total_size(data);
    let mut platform = match Platform::from_fdt(data) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = platform.to_string();
    let memory: Vec<PhysRange> = platform.memory.iter().copied().collect();
    for (i, a) in memory.iter().enumerate() {
        assert!(!a.is_empty());
        assert!(
            a.start().raw().checked_add(a.size()).is_some(),
            "{a:?} wraps"
        );
        for b in &memory[i + 1..] {
            assert!(!a.overlaps(b), "{a:?} overlaps {b:?}");
        }
    }
    for (_, r) in platform.device_ranges() {
        assert!(r.start().raw().checked_add(r.size()).is_some());
    }
    let _ = platform.firmware_reservations();
    if let Some(image) = PhysRange::new(PhysAddr::new(0x4008_0000), 0x20_0000) {
        if let Ok(usable) = platform.usable_memory(image) {
            for r in usable.iter() {
                assert!(!r.overlaps(&image));
            }
        }
    }
    let _ = platform.locate_dtb(PhysAddr::new(u64::MAX - 0xfff));
}
