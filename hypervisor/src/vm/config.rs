//! What the VM will be, derived once from the platform, the command line and
//! the CPU: the data every later step builds from.

use alloc::string::String;
use core::fmt;

use crate::arch::aarch64::cpu::CpuFeatures;
use crate::cmdline::Options;
use crate::mm::addr::{IpaRange, PhysRange, SIZE_2M};
use crate::mm::attrs::Features;
use crate::platform::{GicVersion, Platform};
use crate::vm::layout;

/// Guest RAM when `guest.mem` is not given.
pub const DEFAULT_RAM: u64 = 256 << 20;
/// Smallest guest RAM accepted: room for an image and its device tree.
pub const MIN_RAM: u64 = 16 << 20;

/// The VM's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// Guest RAM, in IPA space.
    pub ram: IpaRange,
    /// IPA size of stage 2.
    pub ipa_bits: u32,
    /// The guest image, where the loader put it (the initrd).
    pub image: PhysRange,
    /// The guest's `/chosen/bootargs`.
    pub bootargs: String,
    /// The interrupt controller the guest's device tree describes.
    pub gic: GicVersion,
    /// What stage 2 may use.
    pub features: Features,
    /// Whether the host's PCIe is cache-coherent for DMA (`dma-coherent`).
    pub pcie_dma_coherent: bool,
}

/// Why no VM can be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `guest.mem` is outside what the layout holds.
    RamSize {
        /// Asked for.
        requested: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// The CPU's physical address size is below the layout's IPA size.
    PaTooSmall {
        /// The CPU's.
        pa_bits: u8,
        /// The layout's.
        ipa_bits: u32,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RamSize {
                requested,
                min,
                max,
            } => write!(
                f,
                "guest.mem={} MiB is outside {} MiB..{} MiB (2 MiB multiples)",
                requested >> 20,
                min >> 20,
                max >> 20
            ),
            Self::PaTooSmall { pa_bits, ipa_bits } => write!(
                f,
                "the CPU has {pa_bits}-bit physical addresses; the guest layout needs {ipa_bits}-bit IPAs"
            ),
        }
    }
}

impl VmConfig {
    /// Derives the VM's configuration. `Ok(None)` when the loader gave no
    /// guest image (no initrd): there is nothing to run.
    pub fn derive(
        platform: &Platform<'_>,
        options: &Options<'_>,
        cpu: &CpuFeatures,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(image) = platform.chosen.initrd else {
            return Ok(None);
        };
        let requested = options.guest_mem.unwrap_or(DEFAULT_RAM);
        if !(MIN_RAM..=layout::MAX_RAM).contains(&requested) || !requested.is_multiple_of(SIZE_2M) {
            return Err(ConfigError::RamSize {
                requested,
                min: MIN_RAM,
                max: layout::MAX_RAM,
            });
        }
        if u32::from(cpu.pa_bits) < layout::IPA_BITS {
            return Err(ConfigError::PaTooSmall {
                pa_bits: cpu.pa_bits,
                ipa_bits: layout::IPA_BITS,
            });
        }
        let ram = IpaRange::new(layout::RAM_BASE, requested).ok_or(ConfigError::RamSize {
            requested,
            min: MIN_RAM,
            max: layout::MAX_RAM,
        })?;
        let mut bootargs = String::from(options.guest_bootargs);
        if !options.guest_bootargs_tail.is_empty() {
            if !bootargs.is_empty() {
                bootargs.push(' ');
            }
            bootargs.push_str(options.guest_bootargs_tail);
        }
        Ok(Some(Self {
            ram,
            ipa_bits: layout::IPA_BITS,
            image,
            bootargs,
            gic: platform.gic.version,
            features: Features {
                fwb: cpu.fwb,
                dic: cpu.dic,
                idc: cpu.idc,
            },
            pcie_dma_coherent: platform.pcie.iter().any(|b| b.dma_coherent),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::aarch64::cpu::IdRegisters;

    const VIRT: &[u8] = include_bytes!("../../../qemu/fixtures/virt-gicv3.dtb");

    fn cpu(parange: u64, fwb: bool) -> CpuFeatures {
        CpuFeatures::decode(&IdRegisters {
            mmfr0: parange,
            mmfr2: u64::from(fwb) << 40,
            ..Default::default()
        })
    }

    #[test]
    fn derives_from_the_qemu_fixture_and_the_command_line() {
        let p = Platform::from_fdt(VIRT).unwrap();
        let o = Options::parse("guest.mem=512M guest.bootargs=test=psci -- quiet");
        let c = VmConfig::derive(&p, &o, &cpu(5, true)).unwrap().unwrap();
        assert_eq!(c.ram.size(), 512 << 20);
        assert_eq!(c.ram.start(), layout::RAM_BASE);
        assert_eq!(c.bootargs, "test=psci quiet");
        assert_eq!(c.gic, GicVersion::V3);
        assert!(c.features.fwb);
        assert!(c.pcie_dma_coherent);
        assert_eq!(Some(c.image), p.chosen.initrd);
    }

    #[test]
    fn refuses_bad_sizes_and_small_pa() {
        let p = Platform::from_fdt(VIRT).unwrap();
        for bad in ["guest.mem=1M", "guest.mem=300G", "guest.mem=3000K"] {
            let o = Options::parse(bad);
            assert!(matches!(
                VmConfig::derive(&p, &o, &cpu(5, false)),
                Err(ConfigError::RamSize { .. })
            ));
        }
        let o = Options::parse("");
        let e = VmConfig::derive(&p, &o, &cpu(1, false)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the CPU has 36-bit physical addresses; the guest layout needs 40-bit IPAs"
        );
    }
}
