//! cargo-fuzz entry point; the target is `hypervisor_fuzz::device_tree::fuzz`, which
//! `cargo test` also runs over the committed corpus (`seeds/device_tree/`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::device_tree::fuzz(data));
