//! What the VM will be, derived once from the platform, the command line and
//! the CPU: the data every later step builds from.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::arch::aarch64::cpu::CpuFeatures;
use crate::cmdline::Options;
use crate::mm::addr::{IpaRange, PhysRange, SIZE_2M};
use crate::mm::attrs::Features;
use crate::platform::{GicVersion, Platform, PsciMethod};
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
    /// The physical CPU (MPIDR affinity) of each vCPU, by vCPU index: the
    /// boot CPU first, then the others in device-tree order. Each vCPU owns
    /// its CPU (static partitioning); vCPU `i` reads MPIDR affinity `i`.
    pub cpus: Vec<u64>,
}

/// Most vCPUs a VM may have: the hypervisor has stacks for 16 CPUs.
pub const MAX_VCPUS: usize = 16;

/// The physical CPUs for `requested` vCPUs (default: every CPU of `host`,
/// at most [`MAX_VCPUS`]): the boot CPU `boot` first, then the rest of
/// `host` in order. Without firmware that can start CPUs (`psci` false: no
/// PSCI through SMC) only the boot CPU is available. Fails when the boot CPU
/// is not in `host` or more vCPUs are asked for than there are CPUs.
pub fn vcpu_cpus(
    host: &[u64],
    boot: u64,
    requested: Option<usize>,
    psci: bool,
) -> Result<Vec<u64>, ConfigError> {
    if !host.contains(&boot) {
        return Err(ConfigError::BootCpuNotListed(boot));
    }
    let available = if psci { host.len().min(MAX_VCPUS) } else { 1 };
    let n = requested.unwrap_or(available);
    if n == 0 || n > available {
        return Err(ConfigError::TooManyVcpus {
            requested: n,
            available,
        });
    }
    let mut cpus = Vec::with_capacity(n);
    cpus.push(boot);
    cpus.extend(host.iter().copied().filter(|&m| m != boot).take(n - 1));
    Ok(cpus)
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
    /// `guest.cpus` asks for more vCPUs than there are physical CPUs.
    TooManyVcpus {
        /// Asked for.
        requested: usize,
        /// Physical CPUs the VM can have.
        available: usize,
    },
    /// The CPU the hypervisor boots on is not under the device tree's /cpus.
    BootCpuNotListed(u64),
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
            Self::TooManyVcpus {
                requested,
                available,
            } => write!(
                f,
                "guest.cpus={requested}, but {available} physical CPUs can run vCPUs (one each; CPUs other than the boot CPU need PSCI through SMC to start)"
            ),
            Self::BootCpuNotListed(mpidr) => write!(
                f,
                "the boot CPU (MPIDR {mpidr:#x}) is not listed under /cpus in the device tree"
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
        boot_mpidr: u64,
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
            cpus: vcpu_cpus(
                platform.cpus.as_slice(),
                boot_mpidr,
                options.guest_cpus,
                platform.psci == Some(PsciMethod::Smc),
            )?,
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
        let c = VmConfig::derive(&p, &o, &cpu(5, true), 0).unwrap().unwrap();
        assert_eq!(c.ram.size(), 512 << 20);
        assert_eq!(c.ram.start(), layout::RAM_BASE);
        assert_eq!(c.bootargs, "test=psci quiet");
        assert_eq!(c.gic, GicVersion::V3);
        assert!(c.features.fwb);
        assert!(c.pcie_dma_coherent);
        assert_eq!(Some(c.image), p.chosen.initrd);
        assert_eq!(
            c.cpus,
            [0, 1],
            "the fixture has two CPUs, the boot CPU first"
        );
    }

    #[test]
    fn vcpus_take_the_boot_cpu_first_then_the_rest_in_order() {
        let host = [0x0, 0x1, 0x100, 0x101];
        assert_eq!(
            vcpu_cpus(&host, 0x100, None, true).unwrap(),
            [0x100, 0x0, 0x1, 0x101]
        );
        assert_eq!(vcpu_cpus(&host, 0x1, Some(2), true).unwrap(), [0x1, 0x0]);
        assert_eq!(vcpu_cpus(&host, 0x0, Some(1), true).unwrap(), [0x0]);
        // No PSCI to start the others: the boot CPU alone.
        assert_eq!(vcpu_cpus(&host, 0x101, None, false).unwrap(), [0x101]);
        assert_eq!(
            vcpu_cpus(&host, 0x0, Some(2), false),
            Err(ConfigError::TooManyVcpus {
                requested: 2,
                available: 1
            })
        );
        assert_eq!(
            vcpu_cpus(&host, 0x0, Some(5), true),
            Err(ConfigError::TooManyVcpus {
                requested: 5,
                available: 4
            })
        );
        assert_eq!(
            vcpu_cpus(&host, 0x2, None, true),
            Err(ConfigError::BootCpuNotListed(0x2))
        );
        let many: Vec<u64> = (0..40).collect();
        assert_eq!(vcpu_cpus(&many, 7, None, true).unwrap().len(), MAX_VCPUS);
        assert_eq!(vcpu_cpus(&many, 7, None, true).unwrap()[..3], [7, 0, 1]);
    }

    #[test]
    fn refuses_bad_sizes_and_small_pa() {
        let p = Platform::from_fdt(VIRT).unwrap();
        for bad in ["guest.mem=1M", "guest.mem=300G", "guest.mem=3000K"] {
            let o = Options::parse(bad);
            assert!(matches!(
                VmConfig::derive(&p, &o, &cpu(5, false), 0),
                Err(ConfigError::RamSize { .. })
            ));
        }
        let o = Options::parse("");
        let e = VmConfig::derive(&p, &o, &cpu(1, false), 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the CPU has 36-bit physical addresses; the guest layout needs 40-bit IPAs"
        );
    }
}
