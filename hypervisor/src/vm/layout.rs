//! The guest's IPA layout, modelled on QEMU's `virt` machine so guests
//! written for it run unchanged (QEMU hw/arm/virt.c, `base_memmap` and
//! `extended_memmap`).

use crate::mm::addr::{Ipa, IpaRange};

const fn range(start: u64, size: u64) -> IpaRange {
    match IpaRange::new(Ipa::new(start), size) {
        Some(r) => r,
        None => panic!("layout range wraps"),
    }
}

/// GIC distributor.
pub const GIC_DIST: IpaRange = range(0x0800_0000, 0x1_0000);
/// GICv2 CPU interface.
pub const GIC_CPU: IpaRange = range(0x0801_0000, 0x1_0000);
/// GICv3 redistributors (room for 123 vcpus, as on QEMU virt).
pub const GIC_REDIST: IpaRange = range(0x080a_0000, 0xf6_0000);
/// The emulated PL011.
pub const UART: IpaRange = range(0x0900_0000, 0x1000);
/// The emulated PL011's SPI number (INTID 33).
pub const UART_SPI: u32 = 1;
/// 32-bit PCI memory window for passed-through BARs.
pub const PCI_MMIO32: IpaRange = range(0x1000_0000, 0x2eff_0000);
/// Guest RAM starts here.
pub const RAM_BASE: Ipa = Ipa::new(0x4000_0000);
/// PCIe ECAM for 256 buses, above 4 GiB as on QEMU virt with highmem.
pub const PCI_ECAM: IpaRange = range(0x40_1000_0000, 0x1000_0000);
/// 64-bit PCI memory window for passed-through BARs.
pub const PCI_MMIO64: IpaRange = range(0x80_0000_0000, 0x80_0000_0000);
/// IPA size the layout needs: the 64-bit window ends at 1 TiB.
pub const IPA_BITS: u32 = 40;
/// Largest guest RAM that fits below the ECAM window.
pub const MAX_RAM: u64 = PCI_ECAM.start().raw() - RAM_BASE.raw();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_disjoint_and_inside_the_ipa_size() {
        let ram = IpaRange::new(RAM_BASE, MAX_RAM).unwrap();
        let all = [
            GIC_DIST, GIC_CPU, GIC_REDIST, UART, PCI_MMIO32, ram, PCI_ECAM, PCI_MMIO64,
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(a.end().raw() <= 1 << IPA_BITS, "{a:?}");
            for b in &all[i + 1..] {
                assert!(!a.overlaps(b), "{a:?} overlaps {b:?}");
            }
        }
    }
}
