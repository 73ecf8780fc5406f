//! The pure part of building a VM: from its configuration and the guest
//! image, what goes where in guest RAM (the image, the device tree), the
//! device tree itself, the PSCI table of its vCPUs, what its IPA space holds,
//! and its stage 2. No hardware is touched here, so all of it is tested on
//! the host; `machine.rs` allocates the memory, copies the bytes in and
//! starts the CPUs.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use alloc::vec::Vec;
use core::fmt;

use crate::mm::addr::{Ipa, IpaRange, PhysAddr, PhysRange, SIZE_2M};
use crate::mm::frame::FrameError;
use crate::mm::pgtable::pool::PoolError;
use crate::mm::pgtable::PhysToVirt;
use crate::mm::stage2::{Stage2, Stage2Error, Stage2TlbMaint, VtcrError};
use crate::pci::vconfig::VconfigError;
use crate::platform::GicVersion;
use crate::vm::config::{VmConfig, MAX_VCPUS};
use crate::vm::fdt_writer::FdtError;
use crate::vm::guest_dt::{
    self, GuestDtConfig, GuestGic, GuestPciWindow, GuestPcie, GuestUart, PciSpace,
};
use crate::vm::hypercall::MappingKind;
use crate::vm::image::{self, ImageError, ImageKind};
use crate::vm::layout;
use crate::vm::psci::PsciState;

/// Room kept at the top of guest RAM for the guest's device tree.
pub const DT_RESERVE: u64 = SIZE_2M;

/// MPIDR_EL1 that vCPU `index` reads: affinity Aff0 = index, bit 31 RES1,
/// U (bit 30) clear since the VM is a multiprocessor one.
pub const fn vcpu_mpidr(index: usize) -> u64 {
    (1 << 31) | index as u64
}

/// Why a VM could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// Not enough physical memory.
    Frames(FrameError),
    /// Stage-2 configuration.
    Vtcr(VtcrError),
    /// Stage-2 table pool.
    Pool(PoolError),
    /// Stage-2 mapping.
    Stage2(Stage2Error),
    /// The guest image.
    Image(ImageError),
    /// The guest device tree.
    DeviceTree(FdtError),
    /// An emulated device could not be placed.
    Bus,
    /// The passed-through devices cannot be shown to the guest.
    Pci(VconfigError),
    /// The VM cannot have this many vCPUs.
    Vcpus(usize),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frames(e) => write!(f, "guest memory: {e}"),
            Self::Vtcr(e) => write!(f, "stage 2: {e:?}"),
            Self::Pool(e) => write!(f, "stage-2 tables: {e}"),
            Self::Stage2(e) => write!(f, "stage 2: {e:?}"),
            Self::Image(e) => write!(f, "guest image: {e}"),
            Self::DeviceTree(e) => write!(f, "guest device tree: {e}"),
            Self::Bus => write!(f, "emulated devices overlap"),
            Self::Pci(e) => write!(f, "passthrough: {e}"),
            Self::Vcpus(n) => write!(
                f,
                "{n} vCPUs do not fit the layout (1 to {MAX_VCPUS}, one GIC redistributor each)"
            ),
        }
    }
}

/// The guest's virtual PCIe host bridge, when devices are passed through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciePlan {
    /// Whether the guest DT says `dma-coherent` on it.
    pub dma_coherent: bool,
}

/// Everything about a VM that follows from its configuration and image.
#[derive(Debug)]
pub struct VmPlan {
    /// How many vCPUs.
    pub vcpus: usize,
    /// What the image is.
    pub image_kind: ImageKind,
    /// Where the image goes, in IPA space.
    pub image_at: IpaRange,
    /// vCPU 0's first instruction.
    pub entry: Ipa,
    /// The guest's device tree.
    pub dt: Vec<u8>,
    /// Where it goes: vCPU 0's x0.
    pub dt_at: Ipa,
    /// The PSCI table: vCPU 0 on, the others off; CPU_ON entries must be RAM.
    pub psci: PsciState,
    /// What each part of the IPA space is, for the stage-2 hypercalls.
    pub regions: Vec<(IpaRange, MappingKind)>,
    /// The RAM blocks the hypervisor writes before the guest runs (the
    /// image's and the device tree's): populated at build; the rest on
    /// first touch.
    pub eager_blocks: Vec<usize>,
}

impl VmPlan {
    /// Plans the VM for `config` with guest image `file`.
    pub fn new(config: &VmConfig, file: &[u8], pcie: Option<PciePlan>) -> Result<Self, BuildError> {
        let vcpus = config.cpus.len();
        if vcpus == 0 || vcpus > MAX_VCPUS {
            return Err(BuildError::Vcpus(vcpus));
        }
        let parsed = image::parse(file).map_err(BuildError::Image)?;
        let image_at = image::placement(&parsed, config.ram, file.len() as u64, DT_RESERVE)
            .map_err(BuildError::Image)?;
        let entry = parsed
            .entry(&image_at)
            .ok_or(BuildError::Image(ImageError::Empty))?;

        let gic = match config.gic {
            GicVersion::V2 => GuestGic::V2 {
                dist: layout::GIC_DIST,
                cpu: layout::GIC_CPU,
            },
            GicVersion::V3 => GuestGic::V3 {
                dist: layout::GIC_DIST,
                // One redistributor (an RD and an SGI frame) per vCPU.
                redist: IpaRange::new(layout::GIC_REDIST.start(), 0x2_0000 * vcpus as u64)
                    .filter(|r| layout::GIC_REDIST.contains_range(r))
                    .ok_or(BuildError::Vcpus(vcpus))?,
            },
        };
        let pci_windows = [
            GuestPciWindow {
                kind: PciSpace::Mem32,
                prefetchable: false,
                pci_addr: layout::PCI_MMIO32.start().raw(),
                cpu_addr: layout::PCI_MMIO32.start(),
                size: layout::PCI_MMIO32.size(),
            },
            GuestPciWindow {
                kind: PciSpace::Mem64,
                prefetchable: false,
                pci_addr: layout::PCI_MMIO64.start().raw(),
                cpu_addr: layout::PCI_MMIO64.start(),
                size: layout::PCI_MMIO64.size(),
            },
        ];
        let guest_pcie = pcie.map(|p| GuestPcie {
            ecam: layout::PCI_ECAM,
            bus_start: 0,
            bus_end: 255,
            windows: &pci_windows,
            dma_coherent: p.dma_coherent,
        });
        let cpu_mpidrs: Vec<u64> = (0..vcpus as u64).collect();
        let dt = guest_dt::build(&GuestDtConfig {
            ram: config.ram,
            cpu_mpidrs: &cpu_mpidrs,
            uart: Some(GuestUart {
                base: layout::UART.start(),
                size: layout::UART.size(),
                spi: layout::UART_SPI,
            }),
            gic,
            timer_ppis: [13, 14, 11, 10],
            psci_method: "hvc",
            bootargs: &config.bootargs,
            stdout_path: true,
            initrd: None,
            pcie: guest_pcie,
            hypervisor_node: true,
        })
        .map_err(BuildError::DeviceTree)?;
        if dt.len() as u64 > DT_RESERVE {
            return Err(BuildError::DeviceTree(FdtError::TooLarge));
        }
        let dt_at = Ipa::new(config.ram.end().raw() - DT_RESERVE);

        let mut psci = PsciState::new(vcpu_mpidr(0));
        for i in 1..vcpus {
            psci.add_vcpu(i as u64)
                .map_err(|_| BuildError::Vcpus(vcpus))?;
        }
        psci.set_entry_range(config.ram);

        let mut regions = alloc::vec![
            (config.ram, MappingKind::GuestRam),
            (layout::UART, MappingKind::EmulatedMmio),
        ];
        if pcie.is_some() {
            regions.push((layout::PCI_ECAM, MappingKind::EmulatedMmio));
        }
        let blocks = RamBlocks::new(config.ram);
        let mut eager_blocks: Vec<usize> = Vec::new();
        for (start, len) in [
            (image_at.start(), file.len() as u64),
            (dt_at, dt.len() as u64),
        ] {
            let last = Ipa::new(start.raw() + len.max(1) - 1);
            let index = |ipa| blocks.block(ipa).map(|(i, _)| i);
            let (Some(first), Some(last)) = (index(start), index(last)) else {
                return Err(BuildError::Image(ImageError::Empty));
            };
            eager_blocks.extend(first..=last);
        }
        eager_blocks.sort_unstable();
        eager_blocks.dedup();
        Ok(Self {
            vcpus,
            image_kind: parsed.kind,
            image_at,
            entry,
            dt,
            dt_at,
            psci,
            regions,
            eager_blocks,
        })
    }

    /// Copies the image and the device tree into guest RAM, `ram` being its
    /// bytes from the start of `config.ram` (zeroed by the caller).
    pub fn load(&self, config: &VmConfig, ram: &mut [u8], file: &[u8]) -> Result<(), BuildError> {
        let offset = |at: Ipa| {
            at.offset_from(config.ram.start())
                .and_then(|o| usize::try_from(o).ok())
        };
        let image = offset(self.image_at.start()).ok_or(BuildError::Image(ImageError::Empty))?;
        ram.get_mut(image..image + file.len())
            .ok_or(BuildError::Image(ImageError::Empty))?
            .copy_from_slice(file);
        let dt = offset(self.dt_at).ok_or(BuildError::DeviceTree(FdtError::TooLarge))?;
        ram.get_mut(dt..dt + self.dt.len())
            .ok_or(BuildError::DeviceTree(FdtError::TooLarge))?
            .copy_from_slice(&self.dt);
        Ok(())
    }
}

/// Maps the VM's RAM (`config.ram`, backed by host memory at `ram_pa`) in
/// its stage 2. Emulated devices stay unmapped, so that they trap; BARs are
/// mapped later, when the guest enables them.
pub fn map_stage2<M: PhysToVirt>(
    config: &VmConfig,
    stage2: &mut Stage2<M>,
    ram_pa: PhysAddr,
    tlb: &mut impl Stage2TlbMaint,
) -> Result<(), BuildError> {
    stage2
        .map_ram(config.ram, ram_pa, tlb)
        .map_err(BuildError::Stage2)
}

/// Guest RAM is handed to stage 2 in 2 MiB blocks, each zeroed (and, without
/// FWB, cleaned to the point of coherency) just before it is first mapped:
/// at build for the blocks the hypervisor writes, on the guest's first
/// touch (a stage-2 translation fault) for the rest. So booting costs no
/// more for more RAM, and no block ever shows the guest what its frames
/// held before. This is which blocks are in stage 2 so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamBlocks {
    ram: IpaRange,
    present: Vec<u64>,
}

impl RamBlocks {
    /// None of `ram` (a whole number of 2 MiB blocks) present yet.
    pub fn new(ram: IpaRange) -> Self {
        let blocks = ram.size().div_ceil(SIZE_2M) as usize;
        Self {
            ram,
            present: alloc::vec![0; blocks.div_ceil(64)],
        }
    }

    /// Blocks in all.
    pub fn len(&self) -> usize {
        self.ram.size().div_ceil(SIZE_2M) as usize
    }

    /// Whether the RAM has no block.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The block holding `ipa`, if it is guest RAM: its index and range.
    pub fn block(&self, ipa: Ipa) -> Option<(usize, IpaRange)> {
        let offset = ipa.offset_from(self.ram.start())?;
        if offset >= self.ram.size() {
            return None;
        }
        let i = (offset / SIZE_2M) as usize;
        Some((i, self.range(i)?))
    }

    /// The IPA range of block `i`.
    pub fn range(&self, i: usize) -> Option<IpaRange> {
        let start = (i as u64).checked_mul(SIZE_2M)?;
        let size = self.ram.size().checked_sub(start)?.min(SIZE_2M);
        if size == 0 {
            return None;
        }
        IpaRange::new(Ipa::new(self.ram.start().raw() + start), size)
    }

    /// Whether block `i` is in stage 2.
    pub fn is_present(&self, i: usize) -> bool {
        self.present
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Records block `i` as in stage 2.
    pub fn set_present(&mut self, i: usize) {
        if i < self.len() {
            if let Some(w) = self.present.get_mut(i / 64) {
                *w |= 1 << (i % 64);
            }
        }
    }

    /// How many blocks are in stage 2.
    pub fn present_count(&self) -> usize {
        self.present.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Puts block `i` into stage 2 if it is not there yet: `prepare` gets
    /// its host range to zero (and clean) first, then it is mapped. Returns
    /// whether it was absent. `ram_pa` backs the start of guest RAM.
    pub fn populate<M: PhysToVirt>(
        &mut self,
        i: usize,
        ram_pa: PhysAddr,
        stage2: &mut Stage2<M>,
        tlb: &mut impl Stage2TlbMaint,
        prepare: impl FnOnce(PhysRange),
    ) -> Result<bool, BuildError> {
        if self.is_present(i) {
            return Ok(false);
        }
        let range = self.range(i).ok_or(BuildError::Vcpus(0))?;
        let offset = range.start().offset_from(self.ram.start()).unwrap_or(0);
        let pa = PhysAddr::new(ram_pa.raw() + offset);
        let host = PhysRange::new(pa, range.size()).ok_or(BuildError::Vcpus(0))?;
        prepare(host);
        stage2.map_ram(range, pa, tlb).map_err(BuildError::Stage2)?;
        self.set_present(i);
        Ok(true)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::mm::addr::PhysRange;
    use crate::mm::attrs::Features;
    use crate::mm::pgtable::testing::{arena_pool, FakeTlb};
    use crate::mm::stage2::{Stage2Config, Vmid};
    use crate::vm::psci::{self, fid, Action, Conduit, SmcccCall};
    use alloc::string::String;

    /// A minimal arm64 Image: the header and a little code.
    fn arm64_image(text_offset: u64) -> Vec<u8> {
        let mut v = alloc::vec![0u8; 0x1000];
        v[8..16].copy_from_slice(&text_offset.to_le_bytes());
        v[16..24].copy_from_slice(&0x1000u64.to_le_bytes());
        v[24..32].copy_from_slice(&0b1010u64.to_le_bytes());
        v[56..60].copy_from_slice(b"ARM\x64");
        v
    }

    fn config(cpus: usize, gic: GicVersion) -> VmConfig {
        VmConfig {
            ram: IpaRange::new(layout::RAM_BASE, 256 << 20).unwrap(),
            ipa_bits: layout::IPA_BITS,
            image: PhysRange::new(PhysAddr::new(0x4800_0000), 0x1000).unwrap(),
            bootargs: String::from("test=smp"),
            gic,
            features: Features {
                fwb: true,
                dic: true,
                idc: true,
            },
            pcie_dma_coherent: true,
            cpus: (0..cpus as u64).collect(),
        }
    }

    fn cpu_on(target: u64, entry: u64) -> SmcccCall {
        SmcccCall {
            function_id: fid::CPU_ON_64,
            args: [target, entry, 7, 0, 0, 0, 0],
            conduit: Conduit::Hvc,
            imm16: 0,
        }
    }

    #[test]
    fn the_device_tree_lists_exactly_the_vcpus() {
        for n in [1usize, 2, 4, 16] {
            let plan = VmPlan::new(&config(n, GicVersion::V3), &arm64_image(0), None).unwrap();
            let fdt = fdt::Fdt::new(&plan.dt).unwrap();
            let regs: Vec<usize> = fdt.cpus().map(|c| c.ids().first()).collect();
            assert_eq!(regs, (0..n).collect::<Vec<_>>(), "{n} vCPUs");
            for cpu in fdt.find_all_nodes("/cpus/cpu") {
                assert_eq!(
                    cpu.property("enable-method").and_then(|p| p.as_str()),
                    Some("psci")
                );
            }
            // One GICv3 redistributor (128 KiB) per vCPU.
            let gic = fdt.find_compatible(&["arm,gic-v3"]).unwrap();
            let mut reg = gic.reg().unwrap();
            reg.next();
            assert_eq!(reg.next().unwrap().size, Some(0x2_0000 * n));
            assert_eq!(plan.vcpus, n);
            assert_eq!(plan.psci.vcpus().len(), n);
        }
    }

    #[test]
    fn vcpu_counts_outside_the_layout_are_refused() {
        for n in [0usize, 17] {
            let e = VmPlan::new(&config(n, GicVersion::V3), &arm64_image(0), None).unwrap_err();
            assert!(matches!(e, BuildError::Vcpus(m) if m == n), "{e}");
        }
    }

    #[test]
    fn secondaries_start_off_and_cpu_on_takes_ram_entries_only() {
        let mut plan = VmPlan::new(&config(4, GicVersion::V2), &arm64_image(0), None).unwrap();
        let t = &mut plan.psci;
        assert_eq!(t.current_mpidr(), 0);
        assert_eq!(t.power(0), Some(true));
        for i in 1..4 {
            assert_eq!(t.power(i), Some(false), "vCPU {i} starts off");
        }
        assert_eq!(t.power(4), None);
        let ok = cpu_on(3, 0x4008_0000);
        assert!(matches!(
            psci::handle(&ok, t).action,
            Action::CpuOn {
                target_mpidr: 3,
                ..
            }
        ));
        let outside = cpu_on(2, 0x3000_0000);
        assert_eq!(
            psci::handle(&outside, t).regs.unwrap()[0],
            psci::ret::INVALID_ADDRESS as i64 as u64
        );
        assert_eq!(vcpu_mpidr(3), 0x8000_0003);
    }

    #[test]
    fn image_and_dt_land_where_the_plan_says() {
        let c = config(2, GicVersion::V3);
        let file = arm64_image(0x8_0000);
        let plan = VmPlan::new(&c, &file, Some(PciePlan { dma_coherent: true })).unwrap();
        assert_eq!(plan.image_kind, ImageKind::Image);
        assert_eq!(plan.image_at.start().raw(), 0x4008_0000);
        assert_eq!(plan.entry.raw(), 0x4008_0000);
        assert_eq!(plan.dt_at.raw(), c.ram.end().raw() - DT_RESERVE);
        assert!(plan
            .regions
            .iter()
            .any(|(r, k)| *r == layout::PCI_ECAM && *k == MappingKind::EmulatedMmio));
        let mut ram = alloc::vec![0u8; c.ram.size() as usize];
        plan.load(&c, &mut ram, &file).unwrap();
        assert_eq!(&ram[0x8_0000 + 56..0x8_0000 + 60], b"ARM\x64");
        let dt_off = (plan.dt_at.raw() - c.ram.start().raw()) as usize;
        let fdt = fdt::Fdt::new(&ram[dt_off..]).unwrap();
        assert_eq!(fdt.chosen().bootargs(), Some("test=smp"));
        assert!(fdt.find_compatible(&["pci-host-ecam-generic"]).is_some());
        // Without passthrough there is no host bridge and no ECAM region.
        let plain = VmPlan::new(&c, &file, None).unwrap();
        assert!(fdt::Fdt::new(&plain.dt)
            .unwrap()
            .find_compatible(&["pci-host-ecam-generic"])
            .is_none());
        assert!(!plain.regions.iter().any(|(r, _)| *r == layout::PCI_ECAM));
        // RAM too small for the image is an error, never a short copy.
        let mut tiny = alloc::vec![0u8; 0x1000];
        assert!(plan.load(&c, &mut tiny, &file).is_err());
    }

    #[test]
    fn ram_blocks_cover_ram_exactly() {
        let ram = IpaRange::new(layout::RAM_BASE, 130 << 21).unwrap();
        let mut b = RamBlocks::new(ram);
        assert_eq!(b.len(), 130);
        assert_eq!(b.block(Ipa::new(layout::RAM_BASE.raw() - 1)), None);
        assert_eq!(b.block(ram.end()), None);
        let (i, r) = b.block(Ipa::new(ram.end().raw() - 1)).unwrap();
        assert_eq!(i, 129);
        assert_eq!(r.end(), ram.end());
        assert_eq!(
            b.block(Ipa::new(layout::RAM_BASE.raw() + SIZE_2M))
                .unwrap()
                .0,
            1
        );
        for i in [0, 63, 64, 129] {
            assert!(!b.is_present(i));
            b.set_present(i);
            assert!(b.is_present(i));
        }
        b.set_present(130);
        b.set_present(usize::MAX);
        assert_eq!(b.present_count(), 4);
        assert!(b.range(130).is_none());
    }

    #[test]
    fn populating_zeroes_then_maps_one_block_once() {
        let c = config(1, GicVersion::V3);
        let s2c = Stage2Config::new(5, c.ipa_bits).unwrap();
        let mut s2 = Stage2::new(s2c, Vmid(1), c.features, arena_pool(0x1000_0000, 16)).unwrap();
        let mut tlb = FakeTlb::default();
        let mut blocks = RamBlocks::new(c.ram);
        let ram_pa = PhysAddr::new(0x8000_0000);
        let mut prepared = Vec::new();
        let ipa = Ipa::new(c.ram.start().raw() + 5 * SIZE_2M + 0x123);
        let (i, _) = blocks.block(ipa).unwrap();
        assert!(s2.translate(ipa).is_none());
        assert!(blocks
            .populate(i, ram_pa, &mut s2, &mut tlb, |r| prepared.push(r))
            .unwrap());
        assert_eq!(
            prepared,
            [PhysRange::new(PhysAddr::new(0x8000_0000 + 5 * SIZE_2M), SIZE_2M).unwrap()]
        );
        let t = s2.translate(ipa).unwrap();
        assert_eq!(t.pa.raw(), 0x8000_0000 + 5 * SIZE_2M + 0x123);
        assert_eq!(t.level, 2);
        // Neighbours stay out until touched.
        assert!(s2
            .translate(Ipa::new(c.ram.start().raw() + 4 * SIZE_2M))
            .is_none());
        assert!(s2
            .translate(Ipa::new(c.ram.start().raw() + 6 * SIZE_2M))
            .is_none());
        // A second fault on it (another vCPU's, raced) changes nothing.
        assert!(!blocks
            .populate(i, ram_pa, &mut s2, &mut tlb, |r| prepared.push(r))
            .unwrap());
        assert_eq!(prepared.len(), 1);
    }

    #[test]
    fn the_blocks_written_at_build_are_the_image_and_dt_ones() {
        let c = config(1, GicVersion::V3);
        // An image of just over 2 MiB at text_offset 0: blocks 0 and 1.
        let mut file = arm64_image(0);
        file.resize((SIZE_2M + 0x1000) as usize, 0);
        let size = file.len() as u64;
        file[16..24].copy_from_slice(&size.to_le_bytes());
        let plan = VmPlan::new(&c, &file, None).unwrap();
        let last = (c.ram.size() / SIZE_2M) as usize - 1;
        assert_eq!(plan.eager_blocks, [0, 1, last]);
    }

    #[test]
    fn stage2_maps_all_of_ram_in_blocks_and_nothing_else() {
        let c = config(2, GicVersion::V3);
        let s2c = Stage2Config::new(5, c.ipa_bits).unwrap();
        let mut s2 = Stage2::new(s2c, Vmid(1), c.features, arena_pool(0x1000_0000, 16)).unwrap();
        let mut tlb = FakeTlb::default();
        map_stage2(&c, &mut s2, PhysAddr::new(0x8000_0000), &mut tlb).unwrap();
        for off in [0u64, 0x1234, c.ram.size() - 8] {
            let t = s2.translate(Ipa::new(c.ram.start().raw() + off)).unwrap();
            assert_eq!(t.pa.raw(), 0x8000_0000 + off);
            assert_eq!(t.level, 2, "2 MiB blocks");
        }
        for hole in [layout::UART.start(), layout::PCI_ECAM.start(), c.ram.end()] {
            assert!(s2.translate(hole).is_none(), "{hole}");
        }
        // 256 MiB of 2 MiB blocks: the root pair plus one level-2 table.
        assert_eq!(s2.table().table_pages(), 3);
    }
}
