//! The host device tree read once into a validated `Platform`.
//!
//! The loader passes the DT's address in x0. Boot borrows its header, asks
//! [`fdt_total_size`] how long it is, borrows the whole blob and calls
//! [`Platform::from_fdt`]; nothing later reads the DT again. Everything is
//! held in fixed-capacity arrays because this runs before the heap exists,
//! and strings (bootargs, compatible names) borrow the blob, which stays in
//! memory as a carve-out.
//!
//! Validation follows board items 38 and 39: a malformed or truncated blob, a
//! missing memory node or GIC, memory ranges that overlap each other, device
//! registers that overlap memory, and zero-size or wrapping regions are errors
//! naming the node and property. Nothing here panics on any input.
//!
//! Every `reg` (and every PCIe window) is translated to a CPU physical
//! address through its ancestors' `ranges` ([`translate`]), so devices under
//! a bus with its own address space, like the Raspberry Pi 4's `/soc`, are
//! found where the CPU sees them; a device behind a bus without `ranges` is
//! refused by name.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

pub mod fdt;
pub mod fixed;
pub mod modules;
#[cfg(test)]
mod tests;
pub mod translate;

use core::fmt;

use self::fdt::{Fdt, FdtError, Node};
use self::fixed::FixedVec;
use self::translate::Untranslatable;
use crate::mm::addr::{PhysAddr, PhysRange, PAGE_SIZE};
use crate::mm::regions::{usable_memory, RegionError, RegionList};

/// Most CPUs recorded.
pub const MAX_CPUS: usize = 64;
/// Most PCIe host bridges recorded.
pub const MAX_PCIE: usize = 4;
/// Most address windows per host bridge.
pub const MAX_PCI_WINDOWS: usize = 8;
/// Most GICv3 redistributor regions.
pub const MAX_REDIST_REGIONS: usize = 8;
/// Most `/reserved-memory` ranges.
pub const MAX_RESERVED: usize = 32;
/// Most memory reservation block entries.
pub const MAX_MEMRESERVE: usize = 16;
/// Most PCIe host bridges of kinds the hypervisor does not drive.
pub const MAX_UNSUPPORTED_PCIE: usize = 4;

/// Why the host DT was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformError<'a> {
    /// The blob's structure is broken.
    Fdt(FdtError),
    /// A node the hypervisor cannot run without.
    Missing(&'static str),
    /// A property with a value that cannot be used.
    BadProperty {
        /// The node's name.
        node: &'a str,
        /// The property.
        property: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A region of zero bytes.
    ZeroSize {
        /// The node's name.
        node: &'a str,
        /// The property.
        property: &'static str,
        /// Which entry of the property.
        index: usize,
    },
    /// A region that runs past the top of the physical address space.
    Wraps {
        /// The node's name.
        node: &'a str,
        /// The property.
        property: &'static str,
        /// Which entry of the property.
        index: usize,
        /// Its start.
        start: u64,
        /// Its size.
        size: u64,
    },
    /// Two regions that must be disjoint share bytes.
    Overlap {
        /// What the first region is.
        what: &'a str,
        /// The first region.
        range: PhysRange,
        /// What the second region is.
        other: &'a str,
        /// The second region.
        other_range: PhysRange,
    },
    /// More of something than the fixed tables hold.
    TooMany {
        /// What.
        what: &'static str,
        /// How many fit.
        max: usize,
    },
    /// `/chosen/stdout-path` names no node.
    StdoutNotFound(&'a str),
    /// A region whose bus address has no CPU address: a bus between the
    /// node and the root has no `ranges`, or no window of it covers the
    /// region.
    NotTranslatable {
        /// The node's name.
        node: &'a str,
        /// The property.
        property: &'static str,
        /// Why, and at which bus.
        why: Untranslatable<'a>,
    },
}

impl From<FdtError> for PlatformError<'_> {
    fn from(e: FdtError) -> Self {
        Self::Fdt(e)
    }
}

impl fmt::Display for PlatformError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host device tree: ")?;
        match self {
            Self::Fdt(e) => write!(f, "malformed blob: {e}"),
            Self::Missing(what) => write!(f, "no {what}"),
            Self::BadProperty {
                node,
                property,
                why,
            } => write!(f, "{node}: {property}: {why}"),
            Self::ZeroSize {
                node,
                property,
                index,
            } => write!(f, "{node}: {property} entry {index} has zero size"),
            Self::Wraps {
                node,
                property,
                index,
                start,
                size,
            } => write!(
                f,
                "{node}: {property} entry {index} ({start:#x} + {size:#x}) runs past the top of the address space"
            ),
            Self::Overlap {
                what,
                range,
                other,
                other_range,
            } => write!(f, "{what} {range:?} overlaps {other} {other_range:?}"),
            Self::TooMany { what, max } => write!(f, "more than {max} {what}"),
            Self::StdoutNotFound(path) => {
                write!(f, "/chosen: stdout-path \"{path}\" names no node")
            }
            Self::NotTranslatable {
                node,
                property,
                why,
            } => write!(f, "{node}: {property}: {why}"),
        }
    }
}

/// The blob's total size from its first 40 bytes, so the caller can borrow
/// the header before the whole blob.
pub fn fdt_total_size(header: &[u8]) -> Result<usize, PlatformError<'static>> {
    Ok(fdt::total_size(header)?)
}

/// The kind of console UART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartKind<'a> {
    /// Arm PrimeCell UART (PL011), `arm,pl011`.
    Pl011,
    /// Anything else, by its first `compatible` string.
    Other(&'a str),
}

/// The console UART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uart<'a> {
    /// The node's name.
    pub node: &'a str,
    /// Its register block.
    pub regs: PhysRange,
    /// What it is.
    pub kind: UartKind<'a>,
}

/// GIC architecture version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2 (`arm,cortex-a15-gic`, `arm,gic-400`, `arm,cortex-a7-gic`).
    V2,
    /// GICv3 (`arm,gic-v3`).
    V3,
}

/// The interrupt controller, per the Linux bindings `arm,gic.yaml` and
/// `arm,gic-v3.yaml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gic {
    /// Version.
    pub version: GicVersion,
    /// Distributor (GICD).
    pub distributor: PhysRange,
    /// GICv3 redistributor regions (GICR); empty on GICv2.
    pub redistributors: FixedVec<PhysRange, MAX_REDIST_REGIONS>,
    /// CPU interface (GICC): always on GICv2; on GICv3 only if the legacy
    /// interface is described.
    pub cpu_interface: Option<PhysRange>,
    /// Virtual interface control (GICH), if virtualization is described.
    pub hyp_interface: Option<PhysRange>,
    /// Virtual CPU interface (GICV), if virtualization is described.
    pub vcpu_interface: Option<PhysRange>,
    /// The maintenance interrupt's INTID, if described.
    pub maintenance_intid: Option<u32>,
    /// `#interrupt-cells`: the length of interrupt specifiers.
    pub interrupt_cells: u32,
}

/// The architected timer's PPIs as INTIDs (binding `arm,arch_timer.yaml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    /// Secure EL1 physical timer.
    pub secure_phys: u32,
    /// Non-secure EL1 physical timer.
    pub phys: u32,
    /// EL1 virtual timer.
    pub virt: u32,
    /// EL2 physical timer.
    pub hyp_phys: u32,
    /// EL2 virtual timer (FEAT_VHE), if described.
    pub hyp_virt: Option<u32>,
}

/// A PCI address space, from bits 24-25 of a `ranges` entry's phys.hi cell
/// (IEEE 1275 PCI bus binding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PciSpace {
    /// I/O space.
    #[default]
    Io,
    /// 32-bit memory space.
    Mem32,
    /// 64-bit memory space.
    Mem64,
}

/// One window of a host bridge: CPU addresses that reach PCI addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PciWindow {
    /// Address space.
    pub space: PciSpace,
    /// The prefetchable bit (phys.hi bit 30).
    pub prefetchable: bool,
    /// Address on the PCI side.
    pub pci_addr: u64,
    /// Addresses on the CPU side.
    pub cpu: PhysRange,
}

/// A generic ECAM host bridge (`pci-host-ecam-generic`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PciHostBridge<'a> {
    /// The node's name.
    pub node: &'a str,
    /// The configuration space (ECAM) window.
    pub ecam: PhysRange,
    /// First bus number.
    pub bus_start: u8,
    /// Last bus number.
    pub bus_end: u8,
    /// The `ranges` windows.
    pub windows: FixedVec<PciWindow, MAX_PCI_WINDOWS>,
    /// Whether device DMA is cache-coherent (`dma-coherent` on the bridge or an ancestor).
    pub dma_coherent: bool,
}

/// A PCIe host bridge the hypervisor cannot drive: anything but generic ECAM
/// (`device_type = "pci"` directly under a non-PCI bus). Its devices stay
/// with the host; nothing is passed through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UnsupportedPcie<'a> {
    /// The node's name.
    pub node: &'a str,
    /// Its first `compatible` string ("" if it has none).
    pub compatible: &'a str,
}

/// How PSCI calls reach firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciMethod {
    /// HVC: firmware is at EL2, so under this hypervisor nothing answers.
    Hvc,
    /// SMC: firmware at EL3.
    Smc,
}

/// What `/chosen` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Chosen<'a> {
    /// The kernel command line, if not empty.
    pub bootargs: Option<&'a str>,
    /// `stdout-path` as written, options included.
    pub stdout_path: Option<&'a str>,
    /// The initrd the loader placed; an empty one counts as none.
    pub initrd: Option<PhysRange>,
    /// Boot modules (`multiboot,module` children).
    pub modules: modules::BootModules<'a>,
}

/// A `/reserved-memory` range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Reserved<'a> {
    /// The child node's name.
    pub node: &'a str,
    /// The range.
    pub range: PhysRange,
    /// Whether the region must never be mapped (`no-map`).
    pub no_map: bool,
}

/// Everything the hypervisor needs from the host DT, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Platform<'a> {
    /// RAM, from every `device_type = "memory"` node; disjoint and sorted.
    pub memory: RegionList,
    /// The console UART, if any.
    pub uart: Option<Uart<'a>>,
    /// The interrupt controller.
    pub gic: Gic,
    /// The architected timer, if described.
    pub timer: Option<Timer>,
    /// Generic ECAM PCIe host bridges: the ones passthrough can use.
    pub pcie: FixedVec<PciHostBridge<'a>, MAX_PCIE>,
    /// Other PCIe host bridges (`brcm,bcm2711-pcie`, ...), for the report.
    pub unsupported_pcie: FixedVec<UnsupportedPcie<'a>, MAX_UNSUPPORTED_PCIE>,
    /// The PSCI conduit, if firmware implements PSCI.
    pub psci: Option<PsciMethod>,
    /// `/chosen`.
    pub chosen: Chosen<'a>,
    /// `/reserved-memory` ranges with a static `reg`.
    pub reserved: FixedVec<Reserved<'a>, MAX_RESERVED>,
    /// The memory reservation block's entries (`/memreserve/`).
    pub memreserve: FixedVec<PhysRange, MAX_MEMRESERVE>,
    /// Each CPU's `reg`: its MPIDR affinity fields.
    pub cpus: FixedVec<u64, MAX_CPUS>,
    /// The blob's size from its header.
    pub dtb_size: u64,
    /// Where the blob lies, once the caller says (see [`Platform::locate_dtb`]).
    pub dtb: Option<PhysRange>,
}

fn cells_value(bytes: &[u8]) -> Option<u64> {
    match bytes.len() {
        4 => Some(u64::from(u32::from_be_bytes(bytes.try_into().ok()?))),
        8 => Some(u64::from_be_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

fn checked_range<'a>(
    node: &'a str,
    property: &'static str,
    index: usize,
    start: u64,
    size: u64,
) -> Result<PhysRange, PlatformError<'a>> {
    if size == 0 {
        return Err(PlatformError::ZeroSize {
            node,
            property,
            index,
        });
    }
    PhysRange::new(PhysAddr::new(start), size).ok_or(PlatformError::Wraps {
        node,
        property,
        index,
        start,
        size,
    })
}

/// `[start, start + size)` of `node`'s `property` entry `index`, given in
/// the address space of `node`'s parent, as a CPU physical range.
fn cpu_range<'a>(
    node: &Node<'a>,
    property: &'static str,
    index: usize,
    start: u64,
    size: u64,
) -> Result<PhysRange, PlatformError<'a>> {
    let name = node.name();
    // Size and wrap first, in the bus's own terms.
    checked_range(name, property, index, start, size)?;
    let cpu =
        translate::to_cpu(node, start, size).map_err(|why| PlatformError::NotTranslatable {
            node: name,
            property,
            why,
        })?;
    checked_range(name, property, index, cpu, size)
}

/// The `reg` entries of `node`, read with its parent's cell sizes and
/// translated to CPU physical addresses.
fn reg<'a>(
    node: &Node<'a>,
) -> Result<impl Iterator<Item = Result<PhysRange, PlatformError<'a>>> + 'a, PlatformError<'a>> {
    let name = node.name();
    let bad = |why| PlatformError::BadProperty {
        node: name,
        property: "reg",
        why,
    };
    let prop = node.property("reg").ok_or(bad("missing"))?;
    let cells = node.inherited().cells;
    if !(1..=2).contains(&cells.address) || !(1..=2).contains(&cells.size) {
        return Err(bad("parent #address-cells or #size-cells is not 1 or 2"));
    }
    let addr_len = cells.address as usize * 4;
    let stride = addr_len + cells.size as usize * 4;
    if prop.value.is_empty() || prop.value.len() % stride != 0 {
        return Err(bad(
            "length is not a whole number of (address, size) entries",
        ));
    }
    let node = *node;
    Ok(prop
        .value
        .chunks_exact(stride)
        .enumerate()
        .map(move |(i, entry)| {
            let (a, s) = entry.split_at(addr_len);
            let start = cells_value(a).ok_or(bad("bad cell"))?;
            let size = cells_value(s).ok_or(bad("bad cell"))?;
            cpu_range(&node, "reg", i, start, size)
        }))
}

/// Decodes one GIC interrupt specifier (type, number, flags) to an INTID.
fn intid<'a>(node: &'a str, spec: &[u32]) -> Result<u32, PlatformError<'a>> {
    let bad = |why| PlatformError::BadProperty {
        node,
        property: "interrupts",
        why,
    };
    match spec {
        [0, n, ..] if *n < 988 => Ok(n + 32),
        [1, n, ..] if *n < 16 => Ok(n + 16),
        [0 | 1, ..] => Err(bad("interrupt number out of range")),
        _ => Err(bad("not an SPI or PPI specifier")),
    }
}

/// Reads `count` interrupt specifiers of `cells` cells each from `interrupts`.
fn interrupts<'a, const N: usize>(
    node: &Node<'a>,
    cells: u32,
) -> Result<FixedVec<u32, N>, PlatformError<'a>> {
    let name = node.name();
    let mut out = FixedVec::new();
    let Some(prop) = node.property("interrupts") else {
        return Ok(out);
    };
    let stride = cells as usize * 4;
    if prop.value.len() % stride != 0 {
        return Err(PlatformError::BadProperty {
            node: name,
            property: "interrupts",
            why: "length is not a whole number of specifiers",
        });
    }
    for spec in prop.value.chunks_exact(stride) {
        let mut words = [0u32; 3];
        for (w, c) in words.iter_mut().zip(spec.chunks_exact(4)) {
            *w = u32::from_be_bytes(c.try_into().unwrap_or_default());
        }
        out.push(intid(name, &words)?)
            .map_err(|_| PlatformError::TooMany {
                what: "interrupts on one node",
                max: N,
            })?;
    }
    Ok(out)
}

const GIC_V2: [&str; 4] = [
    "arm,cortex-a15-gic",
    "arm,gic-400",
    "arm,cortex-a7-gic",
    "arm,cortex-a9-gic",
];

fn gic_version(node: &Node<'_>) -> Option<GicVersion> {
    if node.is_compatible("arm,gic-v3") {
        Some(GicVersion::V3)
    } else if GIC_V2.iter().any(|c| node.is_compatible(c)) {
        Some(GicVersion::V2)
    } else {
        None
    }
}

fn read_gic<'a>(node: &Node<'a>, version: GicVersion) -> Result<Gic, PlatformError<'a>> {
    let name = node.name();
    let bad = |property, why| PlatformError::BadProperty {
        node: name,
        property,
        why,
    };
    let interrupt_cells = node
        .property("#interrupt-cells")
        .and_then(|p| p.u32())
        .filter(|&c| c >= 3)
        .ok_or(bad("#interrupt-cells", "missing or less than 3"))?;
    let mut regs: FixedVec<PhysRange, 16> = FixedVec::new();
    for r in reg(node)? {
        regs.push(r?)
            .map_err(|_| bad("reg", "more than 16 entries"))?;
    }
    let mut regs = regs.iter().copied();
    let distributor = regs.next().ok_or(bad("reg", "no distributor"))?;
    let mut redistributors = FixedVec::new();
    if version == GicVersion::V3 {
        let count = match node.property("#redistributor-regions") {
            Some(p) => p
                .u32()
                .ok_or(bad("#redistributor-regions", "not one cell"))?,
            None => 1,
        };
        if count == 0 || count as usize > MAX_REDIST_REGIONS {
            return Err(bad("#redistributor-regions", "zero or too many"));
        }
        for _ in 0..count {
            let r = regs
                .next()
                .ok_or(bad("reg", "fewer entries than #redistributor-regions"))?;
            redistributors
                .push(r)
                .map_err(|_| bad("reg", "too many redistributor regions"))?;
        }
    }
    let cpu_interface = regs.next();
    if version == GicVersion::V2 && cpu_interface.is_none() {
        return Err(bad("reg", "no CPU interface"));
    }
    let maintenance: FixedVec<u32, 4> = interrupts(node, interrupt_cells)?;
    Ok(Gic {
        version,
        distributor,
        redistributors,
        cpu_interface,
        hyp_interface: regs.next(),
        vcpu_interface: regs.next(),
        maintenance_intid: maintenance.first().copied(),
        interrupt_cells,
    })
}

fn read_timer<'a>(node: &Node<'a>, gic: &Gic) -> Result<Timer, PlatformError<'a>> {
    let ids: FixedVec<u32, 8> = interrupts(node, gic.interrupt_cells)?;
    match *ids {
        [secure_phys, phys, virt, hyp_phys, ref rest @ ..] => Ok(Timer {
            secure_phys,
            phys,
            virt,
            hyp_phys,
            hyp_virt: rest.first().copied(),
        }),
        _ => Err(PlatformError::BadProperty {
            node: node.name(),
            property: "interrupts",
            why: "fewer than 4 timer interrupts",
        }),
    }
}

fn read_pcie<'a>(node: &Node<'a>) -> Result<PciHostBridge<'a>, PlatformError<'a>> {
    let name = node.name();
    let bad = |property, why| PlatformError::BadProperty {
        node: name,
        property,
        why,
    };
    let ecam = reg(node)?.next().ok_or(bad("reg", "no ECAM window"))??;
    let (bus_start, bus_end) = match node.property("bus-range") {
        None => (0, 255),
        Some(p) => {
            let mut c = p.cells();
            match (c.next(), c.next(), c.next()) {
                (Some(s), Some(e), None) if s <= e && e <= 255 => (s as u8, e as u8),
                _ => return Err(bad("bus-range", "not two cells with start <= end <= 255")),
            }
        }
    };
    // ECAM gives each bus 1 MiB (PCI Express Base Specification, 7.2.2).
    let buses = u64::from(bus_end - bus_start) + 1;
    if ecam.size() < buses << 20 {
        return Err(bad("reg", "ECAM window smaller than bus-range needs"));
    }
    let own = node.cells();
    let parent = node.inherited().cells;
    if own.address != 3 || !(1..=2).contains(&own.size) || !(1..=2).contains(&parent.address) {
        return Err(bad(
            "ranges",
            "needs #address-cells = 3, #size-cells 1 or 2, parent #address-cells 1 or 2",
        ));
    }
    let mut windows = FixedVec::new();
    if let Some(prop) = node.property("ranges") {
        let cpu_len = parent.address as usize * 4;
        let stride = 12 + cpu_len + own.size as usize * 4;
        if prop.value.len() % stride != 0 {
            return Err(bad("ranges", "length is not a whole number of entries"));
        }
        for (i, entry) in prop.value.chunks_exact(stride).enumerate() {
            let (pci, rest) = entry.split_at(12);
            let (cpu, size) = rest.split_at(cpu_len);
            let (hi, pci) = pci.split_at(4);
            let hi = cells_value(hi).unwrap_or_default();
            let space = match (hi >> 24) & 3 {
                1 => PciSpace::Io,
                2 => PciSpace::Mem32,
                3 => PciSpace::Mem64,
                _ => return Err(bad("ranges", "a window maps configuration space")),
            };
            let (Some(pci_addr), Some(cpu), Some(size)) =
                (cells_value(pci), cells_value(cpu), cells_value(size))
            else {
                return Err(bad("ranges", "bad cell"));
            };
            let window = PciWindow {
                space,
                prefetchable: hi & (1 << 30) != 0,
                pci_addr,
                cpu: cpu_range(node, "ranges", i, cpu, size)?,
            };
            windows.push(window).map_err(|_| PlatformError::TooMany {
                what: "windows on one PCIe host bridge",
                max: MAX_PCI_WINDOWS,
            })?;
        }
    }
    Ok(PciHostBridge {
        node: name,
        ecam,
        bus_start,
        bus_end,
        windows,
        dma_coherent: node.has("dma-coherent") || node.inherited().dma_coherent,
    })
}

/// A PCI host bridge: `device_type = "pci"` on a node whose parent is not
/// itself a PCI bus (PCI buses give their children three address cells).
fn is_host_bridge(node: &Node<'_>) -> bool {
    node.property("device_type").and_then(|p| p.str()) == Some("pci")
        && node.inherited().cells.address != 3
}

fn read_uart<'a>(node: &Node<'a>) -> Result<Uart<'a>, PlatformError<'a>> {
    let regs = reg(node)?.next().ok_or(PlatformError::BadProperty {
        node: node.name(),
        property: "reg",
        why: "empty",
    })??;
    let kind = if node.is_compatible("arm,pl011") {
        UartKind::Pl011
    } else {
        UartKind::Other(
            node.property("compatible")
                .and_then(|p| p.strings().next())
                .unwrap_or(""),
        )
    };
    Ok(Uart {
        node: node.name(),
        regs,
        kind,
    })
}

/// The node `stdout-path` names: a path or an alias, without `:options`.
fn resolve_stdout<'a>(fdt: &Fdt<'a>, spec: &'a str) -> Result<Node<'a>, PlatformError<'a>> {
    let target = spec.split(':').next().unwrap_or(spec);
    let path = if target.starts_with('/') {
        Some(target)
    } else {
        fdt.find("/aliases")
            .and_then(|a| a.property(target))
            .and_then(|p| p.str())
    };
    path.and_then(|p| fdt.find(p))
        .ok_or(PlatformError::StdoutNotFound(spec))
}

fn read_chosen<'a>(node: &Node<'a>) -> Result<Chosen<'a>, PlatformError<'a>> {
    let name = node.name();
    let bad = |property, why| PlatformError::BadProperty {
        node: name,
        property,
        why,
    };
    let string = |property| match node.property(property) {
        None => Ok(None),
        Some(p) => p
            .str()
            .map(|s| Some(s).filter(|s| !s.is_empty()))
            .ok_or(bad(property, "not a string")),
    };
    let bootargs = string("bootargs")?;
    let stdout_path = match string("stdout-path")? {
        Some(s) => Some(s),
        None => string("linux,stdout-path")?,
    };
    let addr = |property| {
        node.property(property)
            .map(|p| p.u32_or_u64().ok_or(bad(property, "not one or two cells")))
            .transpose()
    };
    let initrd = match (addr("linux,initrd-start")?, addr("linux,initrd-end")?) {
        (None, None) => None,
        (Some(start), Some(end)) => {
            let r = PhysRange::from_bounds(PhysAddr::new(start), PhysAddr::new(end))
                .ok_or(bad("linux,initrd-end", "below linux,initrd-start"))?;
            Some(r).filter(|r| !r.is_empty())
        }
        _ => {
            return Err(bad(
                "linux,initrd-start",
                "linux,initrd-start and linux,initrd-end must come together",
            ))
        }
    };
    Ok(Chosen {
        bootargs,
        stdout_path,
        initrd,
        modules: modules::BootModules::default(),
    })
}

fn read_reserved<'a>(
    fdt: &Fdt<'a>,
    out: &mut FixedVec<Reserved<'a>, MAX_RESERVED>,
) -> Result<(), PlatformError<'a>> {
    let Some(parent) = fdt.find("/reserved-memory") else {
        return Ok(());
    };
    // Children with only `size` ask the OS to allocate; nothing is reserved yet.
    // Disabled children are templates firmware may fill in (the Raspberry
    // Pi's nvram@0 has reg size 0 until then).
    for child in parent.children().filter(|c| c.has("reg") && c.is_enabled()) {
        for range in reg(&child)? {
            let r = Reserved {
                node: child.name(),
                range: range?,
                no_map: child.has("no-map"),
            };
            out.push(r).map_err(|_| PlatformError::TooMany {
                what: "/reserved-memory ranges",
                max: MAX_RESERVED,
            })?;
        }
    }
    Ok(())
}

fn read_cpus<'a>(
    fdt: &Fdt<'a>,
    out: &mut FixedVec<u64, MAX_CPUS>,
) -> Result<(), PlatformError<'a>> {
    let cpus = fdt
        .find("/cpus")
        .ok_or(PlatformError::Missing("/cpus node"))?;
    let cells = cpus.cells();
    for cpu in cpus.children() {
        let is_cpu = match cpu.property("device_type") {
            Some(p) => p.str() == Some("cpu"),
            None => cpu.base_name() == "cpu",
        };
        if !is_cpu || !cpu.is_enabled() {
            continue;
        }
        let bad = |why| PlatformError::BadProperty {
            node: cpu.name(),
            property: "reg",
            why,
        };
        if !(1..=2).contains(&cells.address) {
            return Err(bad("/cpus #address-cells is not 1 or 2"));
        }
        let mpidr = cpu
            .property("reg")
            .and_then(|p| {
                p.value
                    .get(..cells.address as usize * 4)
                    .and_then(cells_value)
            })
            .ok_or(bad("missing or shorter than /cpus #address-cells"))?;
        if out.contains(&mpidr) {
            return Err(bad("same MPIDR as another CPU"));
        }
        out.push(mpidr).map_err(|_| PlatformError::TooMany {
            what: "CPUs",
            max: MAX_CPUS,
        })?;
    }
    if out.is_empty() {
        return Err(PlatformError::Missing("CPU node under /cpus"));
    }
    Ok(())
}

impl<'a> Platform<'a> {
    /// Reads and checks the host DT. `blob` must hold at least the header's
    /// `totalsize` bytes (see [`fdt_total_size`]).
    pub fn from_fdt(blob: &'a [u8]) -> Result<Self, PlatformError<'a>> {
        let fdt = Fdt::new(blob)?;

        let mut memory = RegionList::new();
        let mut gic_node = None;
        let mut timer_node = None;
        let mut first_pl011 = None;
        let mut psci_node = None;
        let mut pcie = FixedVec::new();
        let mut unsupported_pcie = FixedVec::new();
        for node in fdt.nodes().filter(Node::is_enabled) {
            let device_type = node.property("device_type").and_then(|p| p.str());
            if device_type == Some("memory") {
                for range in reg(&node)? {
                    let range = range?;
                    memory.insert(range).map_err(|e| match e {
                        RegionError::Overlap { existing, .. } => PlatformError::Overlap {
                            what: node.name(),
                            range,
                            other: "memory",
                            other_range: existing,
                        },
                        _ => PlatformError::TooMany {
                            what: "memory ranges",
                            max: memory.capacity(),
                        },
                    })?;
                }
            } else if let Some(v) = gic_version(&node) {
                gic_node = gic_node.or(Some((node, v)));
            } else if node.is_compatible("arm,armv8-timer") {
                timer_node = timer_node.or(Some(node));
            } else if node.is_compatible("pci-host-ecam-generic") {
                pcie.push(read_pcie(&node)?)
                    .map_err(|_| PlatformError::TooMany {
                        what: "PCIe host bridges",
                        max: MAX_PCIE,
                    })?;
            } else if is_host_bridge(&node) {
                let bridge = UnsupportedPcie {
                    node: node.name(),
                    compatible: node
                        .property("compatible")
                        .and_then(|p| p.strings().next())
                        .unwrap_or(""),
                };
                unsupported_pcie
                    .push(bridge)
                    .map_err(|_| PlatformError::TooMany {
                        what: "PCIe host bridges of unsupported kinds",
                        max: MAX_UNSUPPORTED_PCIE,
                    })?;
            } else if node.is_compatible("arm,pl011") {
                first_pl011 = first_pl011.or(Some(node));
            } else if node
                .property("compatible")
                .is_some_and(|p| p.strings().any(|c| c.starts_with("arm,psci")))
            {
                psci_node = psci_node.or(Some(node));
            }
        }
        if memory.is_empty() {
            return Err(PlatformError::Missing(
                "memory node (device_type = \"memory\")",
            ));
        }
        let (gic_node, version) = gic_node.ok_or(PlatformError::Missing(
            "interrupt controller (arm,gic-v3, arm,gic-400, arm,cortex-a15-gic or arm,cortex-a7-gic)",
        ))?;
        let gic = read_gic(&gic_node, version)?;
        let timer = timer_node.map(|t| read_timer(&t, &gic)).transpose()?;

        let chosen = match fdt.find("/chosen") {
            Some(node) => Chosen {
                modules: modules::read(&fdt, &node)?,
                ..read_chosen(&node)?
            },
            None => Chosen::default(),
        };
        modules::check_in_memory(&chosen.modules, &memory)?;
        let uart_node = match chosen.stdout_path {
            Some(spec) => Some(resolve_stdout(&fdt, spec)?),
            None => first_pl011,
        };
        let uart = uart_node.map(|n| read_uart(&n)).transpose()?;

        let psci = match psci_node {
            None => None,
            Some(node) => Some(match node.property("method").and_then(|p| p.str()) {
                Some("hvc") => PsciMethod::Hvc,
                Some("smc") => PsciMethod::Smc,
                _ => {
                    return Err(PlatformError::BadProperty {
                        node: node.name(),
                        property: "method",
                        why: "neither \"hvc\" nor \"smc\"",
                    })
                }
            }),
        };

        let mut reserved = FixedVec::new();
        read_reserved(&fdt, &mut reserved)?;
        let mut memreserve = FixedVec::new();
        for (i, (start, size)) in fdt.reservations().enumerate() {
            let r = checked_range("/memreserve/", "entry", i, start, size)?;
            memreserve.push(r).map_err(|_| PlatformError::TooMany {
                what: "/memreserve/ entries",
                max: MAX_MEMRESERVE,
            })?;
        }
        let mut cpus = FixedVec::new();
        read_cpus(&fdt, &mut cpus)?;

        let platform = Self {
            memory,
            uart,
            gic,
            timer,
            pcie,
            unsupported_pcie,
            psci,
            chosen,
            reserved,
            memreserve,
            cpus,
            dtb_size: fdt.total_size() as u64,
            dtb: None,
        };
        platform.check_devices_outside_memory()?;
        Ok(platform)
    }

    /// Device registers and windows, each with the node it came from.
    pub fn device_ranges(&self) -> impl Iterator<Item = (&'a str, PhysRange)> + '_ {
        let uart = self.uart.map(|u| ("UART", u.regs));
        let g = &self.gic;
        let gic = [
            Some(g.distributor),
            g.cpu_interface,
            g.hyp_interface,
            g.vcpu_interface,
        ]
        .into_iter()
        .flatten()
        .chain(g.redistributors.iter().copied())
        .map(|r| ("GIC", r));
        let pcie = self.pcie.iter().flat_map(|b| {
            core::iter::once((b.node, b.ecam)).chain(b.windows.iter().map(move |w| (b.node, w.cpu)))
        });
        uart.into_iter().chain(gic).chain(pcie)
    }

    fn check_devices_outside_memory(&self) -> Result<(), PlatformError<'a>> {
        for (what, range) in self.device_ranges() {
            if let Some(m) = self.memory.first_overlap(&range) {
                return Err(PlatformError::Overlap {
                    what,
                    range,
                    other: "memory",
                    other_range: m,
                });
            }
        }
        Ok(())
    }

    /// Records that the blob lies at `base`.
    pub fn locate_dtb(&mut self, base: PhysAddr) -> Result<PhysRange, PlatformError<'a>> {
        let r = checked_range("device tree", "location", 0, base.raw(), self.dtb_size)?;
        self.dtb = Some(r);
        Ok(r)
    }

    /// Firmware reservations (`/reserved-memory` and `/memreserve/`), merged.
    ///
    /// Loaders such as U-Boot add `/memreserve/` entries for the DT and the
    /// initrd they placed; an entry lying within those (rounded out to pages)
    /// is left out, since they are carve-outs of their own.
    pub fn firmware_reservations(&self) -> Result<RegionList, RegionError> {
        let page_out = |r: PhysRange| {
            let start = r.start().align_down(PAGE_SIZE);
            let end = r
                .end()
                .checked_align_up(PAGE_SIZE)
                .unwrap_or(PhysAddr::new(u64::MAX));
            PhysRange::from_bounds(start, end).unwrap_or(r)
        };
        let loaded = [self.dtb, self.chosen.initrd].map(|r| r.map(page_out));
        let mut list = RegionList::new();
        let all = self
            .reserved
            .iter()
            .map(|r| r.range)
            .chain(self.memreserve.iter().copied());
        for r in all {
            if !loaded.iter().flatten().any(|l| l.contains_range(&r)) {
                list.insert_merge(r)?;
            }
        }
        Ok(list)
    }

    /// Memory free for the frame allocator: RAM minus the hypervisor `image`,
    /// the DT (once located), the initrd and firmware reservations. Any two
    /// of those overlapping is refused, naming both.
    pub fn usable_memory(&self, image: PhysRange) -> Result<RegionList, RegionError> {
        let mut carve: FixedVec<(&'static str, PhysRange), 72> = FixedVec::new();
        let full = RegionError::Full { capacity: 72 };
        carve.push(("hypervisor image", image)).map_err(|_| full)?;
        if let Some(d) = self.dtb {
            carve.push(("device tree", d)).map_err(|_| full)?;
        }
        if let Some(i) = self.chosen.initrd {
            carve.push(("initrd", i)).map_err(|_| full)?;
        }
        for (what, m) in self.chosen.modules.iter() {
            carve.push((what, m.range)).map_err(|_| full)?;
        }
        for r in &self.firmware_reservations()? {
            carve.push(("firmware reservation", *r)).map_err(|_| full)?;
        }
        usable_memory(&self.memory, &carve)
    }
}

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

impl fmt::Display for Platform<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "memory: {} MiB", mib(self.memory.total_size()))?;
        for m in &self.memory {
            writeln!(f, "  {m:?}")?;
        }
        match &self.uart {
            Some(u) => {
                let kind = match u.kind {
                    UartKind::Pl011 => "pl011",
                    UartKind::Other(c) => c,
                };
                writeln!(f, "uart: {kind} at {:?} ({})", u.regs, u.node)?
            }
            None => writeln!(f, "uart: none")?,
        }
        let g = &self.gic;
        let v = match g.version {
            GicVersion::V2 => 2,
            GicVersion::V3 => 3,
        };
        write!(f, "gic: GICv{v} GICD {:?}", g.distributor)?;
        for r in g.redistributors.iter() {
            write!(f, " GICR {r:?}")?;
        }
        for (name, r) in [
            ("GICC", g.cpu_interface),
            ("GICH", g.hyp_interface),
            ("GICV", g.vcpu_interface),
        ] {
            if let Some(r) = r {
                write!(f, " {name} {r:?}")?;
            }
        }
        match g.maintenance_intid {
            Some(i) => writeln!(f, " maintenance INTID {i}")?,
            None => writeln!(f, " no maintenance interrupt")?,
        }
        match &self.timer {
            Some(t) => {
                write!(
                    f,
                    "timer: INTIDs sec-phys {} phys {} virt {} hyp-phys {}",
                    t.secure_phys, t.phys, t.virt, t.hyp_phys
                )?;
                match t.hyp_virt {
                    Some(i) => writeln!(f, " hyp-virt {i}")?,
                    None => writeln!(f)?,
                }
            }
            None => writeln!(f, "timer: not described")?,
        }
        for b in self.pcie.iter() {
            writeln!(
                f,
                "PCIe: {} ECAM {:?} buses {}-{}{}",
                b.node,
                b.ecam,
                b.bus_start,
                b.bus_end,
                if b.dma_coherent { " dma-coherent" } else { "" }
            )?;
            for w in b.windows.iter() {
                let space = match w.space {
                    PciSpace::Io => "io",
                    PciSpace::Mem32 => "mem32",
                    PciSpace::Mem64 => "mem64",
                };
                writeln!(
                    f,
                    "  {space}{} {:?} -> pci {:#x}",
                    if w.prefetchable { " prefetchable" } else { "" },
                    w.cpu,
                    w.pci_addr
                )?;
            }
        }
        for b in self.unsupported_pcie.iter() {
            let compatible = if b.compatible.is_empty() {
                "no compatible"
            } else {
                b.compatible
            };
            writeln!(
                f,
                "PCIe: {} ({compatible}) is not generic ECAM: passthrough off",
                b.node
            )?;
        }
        match self.psci {
            Some(PsciMethod::Hvc) => writeln!(f, "psci: hvc")?,
            Some(PsciMethod::Smc) => writeln!(f, "psci: smc")?,
            None => writeln!(f, "psci: none")?,
        }
        match self.chosen.initrd {
            Some(r) => writeln!(f, "initrd: {r:?}")?,
            None => writeln!(f, "initrd: none")?,
        }
        if let Some(b) = self.chosen.bootargs {
            writeln!(f, "bootargs: \"{b}\"")?;
        }
        for (what, m) in self.chosen.modules.iter() {
            write!(f, "module: {what} {:?} ({})", m.range, m.node)?;
            match m.bootargs {
                Some(b) => writeln!(f, " bootargs \"{b}\"")?,
                None => writeln!(f)?,
            }
        }
        if let Some(d) = self.dtb {
            writeln!(f, "dtb: {d:?}")?;
        }
        for r in self.reserved.iter() {
            writeln!(
                f,
                "reserved: {:?} {}{}",
                r.range,
                r.node,
                if r.no_map { " no-map" } else { "" }
            )?;
        }
        for r in self.memreserve.iter() {
            writeln!(f, "memreserve: {r:?}")?;
        }
        write!(f, "cpus: {} (MPIDR", self.cpus.len())?;
        for m in self.cpus.iter() {
            write!(f, " {m:#x}")?;
        }
        write!(f, ")")
    }
}
