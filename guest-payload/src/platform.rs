//! What the guest learns from the device tree it is given: RAM, console,
//! PCIe host bridge, PSCI conduit and command line. Read once at boot into a
//! [`Platform`]; nothing later goes back to the device tree.

use core::fmt;

use fdt::node::FdtNode;
use fdt::Fdt;

/// A physical address range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub base: u64,
    /// Size in bytes.
    pub size: u64,
}

impl Region {
    /// A region from base and size.
    pub const fn new(base: u64, size: u64) -> Self {
        Region { base, size }
    }

    /// One past the last address.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// Whether `addr` lies inside.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &Region) -> bool {
        self.base < other.end() && other.base < self.end()
    }

    /// The smallest page-aligned region covering this one.
    pub fn page_aligned(&self) -> Region {
        let base = self.base & !0xfff;
        let end = (self.end() + 0xfff) & !0xfff;
        Region::new(base, end - base)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.base, self.end())
    }
}

/// A short list of regions with a fixed capacity (no allocator in the guest).
/// Regions pushed beyond the capacity are dropped and remembered as lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionList<const N: usize = 16> {
    items: [Region; N],
    len: usize,
    lost: bool,
}

impl<const N: usize> Default for RegionList<N> {
    fn default() -> Self {
        RegionList {
            items: [Region::default(); N],
            len: 0,
            lost: false,
        }
    }
}

impl<const N: usize> RegionList<N> {
    /// How many regions fit.
    pub const CAPACITY: usize = N;

    /// Appends a region; returns false (and marks the list incomplete) when full.
    pub fn push(&mut self, region: Region) -> bool {
        if self.len == N {
            self.lost = true;
            return false;
        }
        self.items[self.len] = region;
        self.len += 1;
        true
    }

    /// Whether regions were dropped because the list was full.
    pub fn is_incomplete(&self) -> bool {
        self.lost
    }

    /// The regions.
    pub fn as_slice(&self) -> &[Region] {
        &self.items[..self.len]
    }

    /// Whether any region contains `addr`.
    pub fn contains(&self, addr: u64) -> bool {
        self.as_slice().iter().any(|r| r.contains(addr))
    }

    /// Whether any region overlaps `other`.
    pub fn overlaps(&self, other: &Region) -> bool {
        self.as_slice().iter().any(|r| r.overlaps(other))
    }
}

/// The CPUs the device tree lists under `/cpus`, by MPIDR affinity (their
/// `reg`), in device-tree order. CPUs beyond the capacity are dropped and
/// remembered as lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuList {
    mpidrs: [u64; CpuList::CAPACITY],
    len: usize,
    lost: bool,
}

impl Default for CpuList {
    fn default() -> Self {
        CpuList {
            mpidrs: [0; CpuList::CAPACITY],
            len: 0,
            lost: false,
        }
    }
}

impl CpuList {
    /// How many CPUs are kept.
    pub const CAPACITY: usize = 8;

    /// A list from MPIDR affinities; those beyond the capacity are lost.
    pub fn from_mpidrs(mpidrs: &[u64]) -> Self {
        let mut list = CpuList::default();
        for &mpidr in mpidrs {
            list.push(mpidr);
        }
        list
    }

    fn push(&mut self, mpidr: u64) {
        if self.len == Self::CAPACITY {
            self.lost = true;
        } else {
            self.mpidrs[self.len] = mpidr;
            self.len += 1;
        }
    }

    /// The MPIDR affinities, in device-tree order.
    pub fn as_slice(&self) -> &[u64] {
        &self.mpidrs[..self.len]
    }

    /// Whether CPUs were dropped because the list was full.
    pub fn is_incomplete(&self) -> bool {
        self.lost
    }

    /// The position of the CPU with affinity `mpidr`.
    pub fn index_of(&self, mpidr: u64) -> Option<usize> {
        self.as_slice().iter().position(|&m| m == mpidr)
    }
}

/// The `reg` of every `device_type = "cpu"` node under `/cpus`.
fn find_cpus(fdt: &Fdt<'_>) -> CpuList {
    let mut list = CpuList::default();
    let Some(cpus) = fdt.find_node("/cpus") else {
        return list;
    };
    let cells = cpus.cell_sizes().address_cells;
    for node in cpus.children() {
        if prop_str(node, "device_type") != Some("cpu") {
            continue;
        }
        let Some(reg) = node.property("reg") else {
            continue;
        };
        let mut bytes = reg.value;
        if let Some(mpidr) = read_cells(&mut bytes, cells) {
            list.push(mpidr);
        }
    }
    list
}

/// How SMCCC calls (PSCI, hypercalls) leave the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// `hvc #0`.
    Hvc,
    /// `smc #0`.
    Smc,
}

impl Conduit {
    /// The name used in the device tree's `method` property.
    pub fn name(self) -> &'static str {
        match self {
            Conduit::Hvc => "hvc",
            Conduit::Smc => "smc",
        }
    }
}

/// The address space of a PCI host-bridge window (PCI Bus Binding to
/// IEEE 1275, `phys.hi` bits 25:24).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciSpace {
    /// Configuration space (not a window in practice).
    Config,
    /// I/O space.
    Io,
    /// 32-bit memory space.
    Mem32,
    /// 64-bit memory space.
    Mem64,
}

/// One entry of a PCI host bridge's `ranges`: CPU addresses that reach PCI
/// bus addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciWindow {
    /// Address space.
    pub space: PciSpace,
    /// `phys.hi` bit 30: prefetchable memory.
    pub prefetchable: bool,
    /// Address on the PCI bus.
    pub pci_addr: u64,
    /// Address the CPU uses.
    pub cpu_addr: u64,
    /// Size in bytes.
    pub size: u64,
}

impl PciWindow {
    /// Decodes the three-cell PCI address's `phys.hi` and the rest.
    pub fn from_cells(phys_hi: u32, pci_addr: u64, cpu_addr: u64, size: u64) -> Self {
        let space = match (phys_hi >> 24) & 3 {
            0 => PciSpace::Config,
            1 => PciSpace::Io,
            2 => PciSpace::Mem32,
            _ => PciSpace::Mem64,
        };
        PciWindow {
            space,
            prefetchable: phys_hi & (1 << 30) != 0,
            pci_addr,
            cpu_addr,
            size,
        }
    }

    /// The CPU address range.
    pub fn cpu_region(&self) -> Region {
        Region::new(self.cpu_addr, self.size)
    }
}

/// A generic ECAM PCIe host bridge (`pci-host-ecam-generic`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcieHost {
    /// The ECAM configuration window.
    pub ecam: Region,
    /// First bus number behind the bridge.
    pub bus_start: u8,
    /// Last bus number.
    pub bus_end: u8,
    windows: [Option<PciWindow>; PcieHost::MAX_WINDOWS],
}

impl PcieHost {
    /// Windows kept from `ranges`.
    pub const MAX_WINDOWS: usize = 6;

    /// A host bridge from its parts; windows beyond [`Self::MAX_WINDOWS`]
    /// are dropped.
    pub fn new(ecam: Region, bus_start: u8, bus_end: u8, list: &[PciWindow]) -> Self {
        let mut windows = [None; PcieHost::MAX_WINDOWS];
        for (slot, w) in windows.iter_mut().zip(list) {
            *slot = Some(*w);
        }
        PcieHost {
            ecam,
            bus_start,
            bus_end,
            windows,
        }
    }

    /// The windows in `ranges` order.
    pub fn windows(&self) -> impl Iterator<Item = &PciWindow> {
        self.windows.iter().flatten()
    }
}

/// Everything the guest reads from its device tree.
#[derive(Clone, Copy, Debug)]
pub struct Platform<'a> {
    /// RAM regions (`device_type = "memory"` nodes).
    pub ram: RegionList,
    /// The PL011 named by `/chosen/stdout-path`, or the first PL011.
    pub uart: Option<Region>,
    /// The PCIe host bridge, if any.
    pub pcie: Option<PcieHost>,
    /// The PSCI conduit, from `/psci/method`.
    pub psci: Option<Conduit>,
    /// The CPUs, from `/cpus`.
    pub cpus: CpuList,
    /// `/chosen/bootargs`, empty if absent.
    pub bootargs: &'a str,
    /// The initramfs the loader placed: `/chosen/linux,initrd-start` to
    /// `linux,initrd-end`, when both are there and the range is not empty.
    pub initrd: Option<Region>,
    /// Address ranges the device tree assigns to something: `reg` of the
    /// root's children and bus `ranges`. Used to pick an address that is
    /// certainly not assigned.
    pub assigned: RegionList<128>,
}

/// Why the device tree could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformError {
    /// No RAM described.
    NoMemory,
}

/// Cuts `stdout-path` down to a node path or alias: drops the `:options`
/// suffix (Devicetree Specification, "/chosen Node").
pub fn stdout_path_target(stdout_path: &str) -> &str {
    let path = stdout_path.trim_end_matches('\0');
    path.split(':').next().unwrap_or(path)
}

/// A property's value as a string, without its NUL terminator.
fn prop_str<'a>(node: FdtNode<'_, 'a>, name: &str) -> Option<&'a str> {
    let value = node.property(name)?.value;
    let text = core::str::from_utf8(value).ok()?;
    Some(text.trim_end_matches('\0'))
}

/// Reads `cells` big-endian 32-bit cells as one number, advancing `bytes`.
pub fn read_cells(bytes: &mut &[u8], cells: usize) -> Option<u64> {
    if cells > 2 || bytes.len() < cells * 4 {
        return None;
    }
    let mut value = 0u64;
    for chunk in bytes[..cells * 4].chunks_exact(4) {
        value = (value << 32) | u64::from(u32::from_be_bytes(chunk.try_into().ok()?));
    }
    *bytes = &bytes[cells * 4..];
    Some(value)
}

fn first_reg(node: FdtNode<'_, '_>) -> Option<Region> {
    let reg = node.reg()?.next()?;
    Some(Region::new(
        reg.starting_address as u64,
        reg.size.unwrap_or(0) as u64,
    ))
}

fn is_compatible(node: FdtNode<'_, '_>, with: &str) -> bool {
    node.compatible()
        .is_some_and(|c| c.all().any(|s| s == with))
}

fn find_uart<'b, 'a>(fdt: &'b Fdt<'a>) -> Option<Region> {
    let chosen = fdt.find_node("/chosen")?;
    let by_path = prop_str(chosen, "stdout-path").and_then(|path| {
        let target = stdout_path_target(path);
        if target.starts_with('/') {
            fdt.find_node(target)
        } else {
            fdt.find_node(fdt.aliases()?.resolve(target)?)
        }
    });
    let node = match by_path {
        Some(node) if is_compatible(node, "arm,pl011") => node,
        _ => fdt.find_compatible(&["arm,pl011"])?,
    };
    first_reg(node)
}

fn parse_pcie(fdt: &Fdt<'_>, node: FdtNode<'_, '_>) -> Option<PcieHost> {
    let ecam = first_reg(node)?;
    let (mut bus_start, mut bus_end) = (0u8, 255u8);
    if let Some(prop) = node.property("bus-range") {
        let mut bytes = prop.value;
        bus_start = read_cells(&mut bytes, 1)?.min(255) as u8;
        bus_end = read_cells(&mut bytes, 1)?.min(255) as u8;
    }
    let mut windows = [None; PcieHost::MAX_WINDOWS];
    if let Some(prop) = node.property("ranges") {
        let parent_cells = fdt.root().cell_sizes().address_cells;
        let size_cells = node.cell_sizes().size_cells;
        let mut bytes = prop.value;
        let mut slot = 0;
        while !bytes.is_empty() && slot < windows.len() {
            let phys_hi = read_cells(&mut bytes, 1)? as u32;
            let pci_addr = read_cells(&mut bytes, 2)?;
            let cpu_addr = read_cells(&mut bytes, parent_cells)?;
            let size = read_cells(&mut bytes, size_cells)?;
            windows[slot] = Some(PciWindow::from_cells(phys_hi, pci_addr, cpu_addr, size));
            slot += 1;
        }
    }
    Some(PcieHost {
        ecam,
        bus_start,
        bus_end,
        windows,
    })
}

/// Address ranges the root's children claim: their `reg`, and the parent
/// side of their `ranges` (buses such as QEMU's platform bus or PCIe).
fn assigned_ranges(fdt: &Fdt<'_>) -> RegionList<128> {
    let mut list = RegionList::default();
    let root = fdt.find_node("/");
    let parent_cells = fdt.root().cell_sizes().address_cells;
    for node in root.into_iter().flat_map(|r| r.children()) {
        if let Some(regs) = node.reg() {
            for reg in regs {
                let size = reg.size.unwrap_or(0) as u64;
                if size > 0 {
                    list.push(Region::new(reg.starting_address as u64, size));
                }
            }
        }
        let Some(ranges) = node.property("ranges") else {
            continue;
        };
        let child = node.cell_sizes();
        let mut bytes = ranges.value;
        while !bytes.is_empty() {
            // Child addresses of PCI buses have three cells; skip the first.
            let skip = child.address_cells.saturating_sub(2);
            if bytes.len() < skip * 4 {
                break;
            }
            bytes = &bytes[skip * 4..];
            let parsed = read_cells(&mut bytes, child.address_cells - skip)
                .and_then(|_| read_cells(&mut bytes, parent_cells))
                .zip(read_cells(&mut bytes, child.size_cells));
            let Some((cpu, size)) = parsed else {
                break;
            };
            list.push(Region::new(cpu, size));
        }
    }
    list
}

impl<'a> Platform<'a> {
    /// Reads the platform description from a parsed device tree.
    pub fn from_fdt(fdt: &Fdt<'a>) -> Result<Self, PlatformError> {
        let mut ram = RegionList::default();
        let root = fdt.find_node("/");
        for node in root.into_iter().flat_map(|r| r.children()) {
            if prop_str(node, "device_type") != Some("memory") {
                continue;
            }
            for reg in node.reg().into_iter().flatten() {
                let size = reg.size.unwrap_or(0) as u64;
                if size > 0 {
                    ram.push(Region::new(reg.starting_address as u64, size));
                }
            }
        }
        if ram.as_slice().is_empty() {
            return Err(PlatformError::NoMemory);
        }
        let psci = fdt
            .find_node("/psci")
            .and_then(|n| prop_str(n, "method"))
            .and_then(|m| match m {
                "hvc" => Some(Conduit::Hvc),
                "smc" => Some(Conduit::Smc),
                _ => None,
            });
        let bootargs = fdt
            .find_node("/chosen")
            .and_then(|n| prop_str(n, "bootargs"))
            .unwrap_or("");
        let initrd = fdt.find_node("/chosen").and_then(|n| {
            let addr = |name| {
                let mut v = n.property(name)?.value;
                let cells = v.len() / 4;
                read_cells(&mut v, cells)
            };
            let (start, end) = (addr("linux,initrd-start")?, addr("linux,initrd-end")?);
            (end > start).then(|| Region::new(start, end - start))
        });
        let pcie = fdt
            .find_compatible(&["pci-host-ecam-generic"])
            .and_then(|n| parse_pcie(fdt, n));
        Ok(Platform {
            ram,
            uart: find_uart(fdt),
            pcie,
            psci,
            cpus: find_cpus(fdt),
            bootargs,
            initrd,
            assigned: assigned_ranges(fdt),
        })
    }

    /// The first of `candidates` whose page nothing in the device tree
    /// claims: not RAM, not a device, not inside a bus window. None if the
    /// device tree had more ranges than the guest could record.
    pub fn pick_unassigned(&self, candidates: &[u64]) -> Option<u64> {
        if self.assigned.is_incomplete() || self.ram.is_incomplete() {
            return None;
        }
        candidates.iter().copied().find(|&addr| {
            let page = Region::new(addr & !0xfff, 0x1000);
            !self.ram.overlaps(&page)
                && !self.assigned.overlaps(&page)
                && !self.pcie.is_some_and(|p| {
                    p.ecam.overlaps(&page) || p.windows().any(|w| w.cpu_region().overlaps(&page))
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIRT_EL1: &[u8] = include_bytes!("../../qemu/fixtures/virt-gicv3-el1.dtb");
    const VIRT_EL2: &[u8] = include_bytes!("../../qemu/fixtures/virt-gicv3.dtb");
    const VIRT_V2: &[u8] = include_bytes!("../../qemu/fixtures/virt-gicv2.dtb");

    #[test]
    fn stdout_path_options_are_dropped() {
        assert_eq!(stdout_path_target("/pl011@9000000"), "/pl011@9000000");
        assert_eq!(stdout_path_target("serial0:115200n8"), "serial0");
        assert_eq!(stdout_path_target("/uart@1:9600\0"), "/uart@1");
        assert_eq!(stdout_path_target(""), "");
    }

    #[test]
    fn cells() {
        let data = [0u8, 0, 0, 1, 0, 0, 0, 2, 0xff];
        let mut bytes = &data[..];
        assert_eq!(read_cells(&mut bytes, 2), Some(0x1_0000_0002));
        assert_eq!(read_cells(&mut bytes, 1), None);
        assert_eq!(read_cells(&mut bytes, 3), None);
    }

    #[test]
    fn qemu_virt_el1() {
        let fdt = Fdt::new(VIRT_EL1).unwrap();
        let p = Platform::from_fdt(&fdt).unwrap();
        assert_eq!(p.ram.as_slice(), &[Region::new(0x4000_0000, 0x1000_0000)]);
        assert_eq!(p.uart, Some(Region::new(0x0900_0000, 0x1000)));
        assert_eq!(p.psci, Some(Conduit::Hvc));
        assert_eq!(p.bootargs, "");
        assert_eq!(p.cpus.as_slice().len(), 1);
        let pcie = p.pcie.unwrap();
        assert_eq!(pcie.ecam, Region::new(0x40_1000_0000, 0x1000_0000));
        assert_eq!((pcie.bus_start, pcie.bus_end), (0, 255));
        let windows: Vec<_> = pcie.windows().copied().collect();
        assert_eq!(windows.len(), 3);
        assert_eq!(windows[0].space, PciSpace::Io);
        assert_eq!(windows[0].cpu_addr, 0x3eff_0000);
        assert_eq!(windows[1].space, PciSpace::Mem32);
        assert_eq!(
            windows[1].cpu_region(),
            Region::new(0x1000_0000, 0x2eff_0000)
        );
        assert!(!windows[1].prefetchable);
        assert_eq!(windows[2].space, PciSpace::Mem64);
        assert_eq!(windows[2].cpu_addr, 0x80_0000_0000);
        assert_eq!(windows[2].pci_addr, 0x80_0000_0000);
    }

    #[test]
    fn qemu_virt_with_el2_uses_smc() {
        let fdt = Fdt::new(VIRT_EL2).unwrap();
        let p = Platform::from_fdt(&fdt).unwrap();
        assert_eq!(p.psci, Some(Conduit::Smc));
        assert_eq!(p.cpus.as_slice(), &[0, 1]);
        let fdt = Fdt::new(VIRT_V2).unwrap();
        let p = Platform::from_fdt(&fdt).unwrap();
        assert!(p.uart.is_some());
        assert_eq!(p.cpus.as_slice().len(), 4);
    }

    #[test]
    fn cpus_are_listed_by_mpidr_in_tree_order() {
        let fdt = Fdt::new(VIRT_V2).unwrap();
        let cpus = Platform::from_fdt(&fdt).unwrap().cpus;
        assert_eq!(cpus.as_slice(), &[0, 1, 2, 3]);
        assert_eq!(cpus.index_of(2), Some(2));
        assert_eq!(cpus.index_of(4), None);
        assert!(!cpus.is_incomplete());
        let many = CpuList::from_mpidrs(&[0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(many.as_slice().len(), CpuList::CAPACITY);
        assert!(many.is_incomplete());
    }

    #[test]
    fn assigned_ranges_cover_devices_and_buses() {
        let fdt = Fdt::new(VIRT_EL1).unwrap();
        let p = Platform::from_fdt(&fdt).unwrap();
        // UART, flash, virtio-mmio and the platform bus are claimed.
        assert!(p.assigned.contains(0x0900_0000));
        assert!(p.assigned.contains(0x0000_0000));
        assert!(p.assigned.contains(0x0a00_0200));
        assert!(p.assigned.contains(0x0c00_1000));
        // The hole between virtio-mmio and the platform bus is free.
        assert!(!p.assigned.contains(0x0b00_0000));
        assert_eq!(
            p.pick_unassigned(&[0x0, 0x4000_0000, 0x40_1000_0000, 0x0b00_0000]),
            Some(0x0b00_0000)
        );
        assert_eq!(p.pick_unassigned(&[0x0900_0000, 0x80_0000_1000]), None);
    }

    #[test]
    fn region_helpers() {
        let r = Region::new(0x1001, 0x10);
        assert_eq!(r.page_aligned(), Region::new(0x1000, 0x1000));
        assert!(r.overlaps(&Region::new(0x1010, 1)));
        assert!(!r.overlaps(&Region::new(0x1011, 1)));
        assert_eq!(format!("{}", Region::new(0x10, 0x10)), "[0x10, 0x20)");
        let mut list = RegionList::<4>::default();
        for i in 0..4 {
            assert!(list.push(Region::new(i, 1)));
        }
        assert!(!list.is_incomplete());
        assert!(!list.push(Region::new(99, 1)));
        assert!(list.is_incomplete());
    }
}
