//! cargo-fuzz entry point; the target is `hypervisor_fuzz::image_header::fuzz`, which
//! `cargo test` also runs over the committed corpus (`seeds/image_header/`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::image_header::fuzz(data));
