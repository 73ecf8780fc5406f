//! Property tests of everything that reads input the hypervisor does not
//! control: exit syndromes and guest registers, MMIO accesses, firmware
//! calls, the host device tree, the guest image header, and the device trees
//! the hypervisor writes for its guests (`../shared/docs/hostile-guest.md`).
//!
//! Case counts are chosen so the whole set runs in a few seconds of a debug
//! `cargo test`; the fuzz targets in `hypervisor/fuzz/` search the same code
//! for much longer.
//!
//! Each file holds one area; the unit tests next to the code pin exact
//! values, these state what must hold for every input.

mod esr;
mod exit;
mod fdt_writer;
mod image;
mod mmio;
mod platform;
mod psci;
mod vpl011;

// The virtual PCI config space has its randomized invariant test beside it
// (`pci::vconfig::tests::random_accesses_keep_the_invariants`) and a fuzz
// target (`hypervisor/fuzz/fuzz_targets/pci_vconfig.rs`).
