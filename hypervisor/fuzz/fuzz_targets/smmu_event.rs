//! SMMUv3 event records: any 32 bytes decode and format without a panic.
#![no_main]

use hypervisor::drivers::smmuv3::event::{Event, EVENT_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut record = [0u8; EVENT_BYTES];
    let n = data.len().min(EVENT_BYTES);
    record[..n].copy_from_slice(&data[..n]);
    let event = Event::from_bytes(&record);
    let _ = format!("{event}");
});
