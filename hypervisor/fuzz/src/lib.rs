//! The fuzz targets' bodies, one module each: `fuzz_targets/<name>.rs` hands
//! libFuzzer's input to `<name>::fuzz`, and the test below feeds it every
//! file of the committed seed corpus `seeds/<name>/` (beside cargo-fuzz's own, uncommitted `corpus/`), on the stable
//! toolchain (`scripts/test unit`), so an input that once found a bug keeps
//! being run. A crash found by `scripts/fuzz` is added there once fixed.

pub mod device_tree;
pub mod esr_decode;
pub mod exit_handler;
pub mod image_header;
pub mod mmio_bus;
pub mod pci_vconfig;
pub mod smccc;

#[cfg(test)]
mod tests {
    use std::path::Path;

    type Target = fn(&[u8]);

    const TARGETS: [(&str, Target); 7] = [
        ("device_tree", super::device_tree::fuzz),
        ("esr_decode", super::esr_decode::fuzz),
        ("exit_handler", super::exit_handler::fuzz),
        ("image_header", super::image_header::fuzz),
        ("mmio_bus", super::mmio_bus::fuzz),
        ("pci_vconfig", super::pci_vconfig::fuzz),
        ("smccc", super::smccc::fuzz),
    ];

    #[test]
    fn every_corpus_file_replays_without_a_failure() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
        for (name, fuzz) in TARGETS {
            let dir = root.join(name);
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|entry| entry.unwrap().path())
                .collect();
            files.sort();
            assert!(files.len() >= 3, "{name}: a corpus of at least 3 seeds");
            for file in files {
                let data = std::fs::read(&file).unwrap();
                let outcome = std::panic::catch_unwind(|| fuzz(&data));
                assert!(outcome.is_ok(), "{name}: {} fails", file.display());
            }
        }
    }

    #[test]
    fn every_target_has_a_corpus_and_an_entry_point() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (name, _) in TARGETS {
            assert!(root.join("seeds").join(name).is_dir(), "{name}");
            let entry =
                std::fs::read_to_string(root.join("fuzz_targets").join(format!("{name}.rs")))
                    .unwrap();
            assert!(
                entry.contains(&format!("hypervisor_fuzz::{name}::fuzz(data)")),
                "{name}"
            );
        }
    }
}
