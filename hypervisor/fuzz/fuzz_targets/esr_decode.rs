//! cargo-fuzz entry point; the target is `hypervisor_fuzz::esr_decode::fuzz`, which
//! `cargo test` also runs over the committed corpus (`seeds/esr_decode/`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::esr_decode::fuzz(data));
