//! cargo-fuzz entry point; the target is `hypervisor_fuzz::pci_vconfig::fuzz`, which
//! `cargo test` also runs over the committed corpus (`seeds/pci_vconfig/`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hypervisor_fuzz::pci_vconfig::fuzz(data));
