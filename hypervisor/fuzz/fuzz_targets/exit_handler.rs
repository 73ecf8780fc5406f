//! cargo-fuzz entry point; the target is `hypervisor_fuzz::exit_handler::fuzz`, which
//! `cargo test` also runs over the committed corpus (`seeds/exit_handler/`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::exit_handler::fuzz(data));
