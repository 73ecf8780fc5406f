//! cargo-fuzz entry point; the target is `hypervisor_fuzz::smccc::fuzz`, which
//! `cargo test` also runs over the committed corpus (`seeds/smccc/`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::smccc::fuzz(data));
