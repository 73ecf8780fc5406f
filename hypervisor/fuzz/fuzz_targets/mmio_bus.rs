//! cargo-fuzz entry point; the target is `hypervisor_fuzz::mmio_bus::fuzz`, which
//! `cargo test` also runs over the committed corpus (`seeds/mmio_bus/`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::mmio_bus::fuzz(data));
