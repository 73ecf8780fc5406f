//! The guest's device tree, built from a description of the VM.
//!
//! The layout follows QEMU's `virt` machine, which guests already boot on:
//! a `linux,dummy-virt` root with two-cell addresses, `/memory`, `/cpus` with
//! PSCI enable methods, `/psci`, the architected `/timer`, the GIC, a PL011
//! with its fixed APB clock, a generic ECAM host bridge and `/chosen`. Nothing
//! depends on the order of the description's fields or on the host: the same
//! description always gives the same bytes.

use alloc::format;
use alloc::vec::Vec;

use super::fdt_writer::{FdtError, FdtWriter};
use crate::mm::addr::{Ipa, IpaRange};

/// `compatible` of `/hypervisor`, by which a guest can tell it runs under this project.
pub const HYPERVISOR_COMPATIBLE: &str = "passthrough-hv,el2";

/// Frequency of the PL011's clock, QEMU `virt`'s `apb-pclk`.
pub const APB_PCLK_HZ: u32 = 24_000_000;

/// The MPIDR_EL1 affinity fields Aff3 and Aff2..Aff0, which a cpu node's `reg`
/// holds (Linux's `MPIDR_HWID_BITMASK`; DT binding `arm/cpus.yaml`).
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// First cell of a GIC interrupt specifier (binding `arm,gic.yaml`).
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
/// Third cell, trigger type: level-sensitive, active high.
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;
/// Highest SPI number: SPIs are INTIDs 32..=1019.
const MAX_SPI: u32 = 1019 - 32;
/// Size of one bus's ECAM space: 32 devices x 8 functions x 4 KiB.
const ECAM_BUS_SIZE: u64 = 1 << 20;

/// The guest's PL011 UART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestUart {
    /// Base of its register frame.
    pub base: Ipa,
    /// Size of its register frame.
    pub size: u64,
    /// SPI number (INTID - 32), as the interrupt specifier holds it.
    pub spi: u32,
}

/// The guest's interrupt controller and its register frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestGic {
    /// GICv2: distributor and CPU interface.
    V2 {
        /// GICD.
        dist: IpaRange,
        /// GICC.
        cpu: IpaRange,
    },
    /// GICv3: distributor and one contiguous redistributor region.
    V3 {
        /// GICD.
        dist: IpaRange,
        /// GICR frames of all vcpus.
        redist: IpaRange,
    },
}

impl GuestGic {
    fn dist(&self) -> IpaRange {
        match *self {
            Self::V2 { dist, .. } | Self::V3 { dist, .. } => dist,
        }
    }
}

/// The address space of a PCI window: the `ss` field of `phys.hi` (PCI Bus
/// Binding to Open Firmware, §2.2.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciSpace {
    /// I/O space.
    Io,
    /// 32-bit memory space.
    Mem32,
    /// 64-bit memory space.
    Mem64,
}

impl PciSpace {
    /// `phys.hi` with only the space code set.
    pub const fn phys_hi(self) -> u32 {
        match self {
            Self::Io => 0x0100_0000,
            Self::Mem32 => 0x0200_0000,
            Self::Mem64 => 0x0300_0000,
        }
    }
}

/// `phys.hi`'s prefetchable bit (`p`).
pub const PCI_PHYS_HI_PREFETCHABLE: u32 = 0x4000_0000;

/// One window of the host bridge: PCI addresses `pci_addr..+size` seen by the
/// guest CPU at `cpu_addr..+size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestPciWindow {
    /// Address space of the window.
    pub kind: PciSpace,
    /// Whether the window is prefetchable (memory only).
    pub prefetchable: bool,
    /// First PCI bus address.
    pub pci_addr: u64,
    /// Where the guest CPU sees `pci_addr`.
    pub cpu_addr: Ipa,
    /// Size in bytes.
    pub size: u64,
}

impl GuestPciWindow {
    /// The `phys.hi` cell of this window's `ranges` entry.
    pub const fn phys_hi(&self) -> u32 {
        let p = if self.prefetchable {
            PCI_PHYS_HI_PREFETCHABLE
        } else {
            0
        };
        self.kind.phys_hi() | p
    }
}

/// The guest's PCIe host bridge: generic ECAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestPcie<'a> {
    /// Configuration space of buses `bus_start..=bus_end`.
    pub ecam: IpaRange,
    /// First bus number.
    pub bus_start: u8,
    /// Last bus number.
    pub bus_end: u8,
    /// Address windows, in `ranges` order.
    pub windows: &'a [GuestPciWindow],
    /// Whether devices behind the bridge are DMA-coherent with the CPU caches;
    /// for passthrough, what the host's host-bridge node says.
    pub dma_coherent: bool,
}

/// Everything the guest's device tree describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestDtConfig<'a> {
    /// Guest RAM.
    pub ram: IpaRange,
    /// MPIDR_EL1 of each vcpu; only the affinity fields are used. One cpu node each.
    pub cpu_mpidrs: &'a [u64],
    /// The emulated UART, if any.
    pub uart: Option<GuestUart>,
    /// The interrupt controller.
    pub gic: GuestGic,
    /// PPI numbers (INTID - 16) of the secure physical, non-secure physical,
    /// virtual and hypervisor physical timers, the `arm,armv8-timer` order.
    pub timer_ppis: [u32; 4],
    /// PSCI conduit: `"hvc"` or `"smc"`.
    pub psci_method: &'a str,
    /// `/chosen/bootargs`; left out when empty.
    pub bootargs: &'a str,
    /// Whether `/chosen/stdout-path` names the UART (which must then exist).
    pub stdout_path: bool,
    /// Initial ramdisk, for `/chosen/linux,initrd-start` and `-end`.
    pub initrd: Option<IpaRange>,
    /// The PCIe host bridge, if any.
    pub pcie: Option<GuestPcie<'a>>,
    /// Whether to add `/hypervisor` with [`HYPERVISOR_COMPATIBLE`].
    pub hypervisor_node: bool,
}

/// Cells of the root's `#address-cells` and `#size-cells`.
const ROOT_CELLS: u32 = 2;

/// Builds the guest's device tree blob.
pub fn build(cfg: &GuestDtConfig) -> Result<Vec<u8>, FdtError> {
    validate(cfg)?;
    let mut w = FdtWriter::new();
    let gic_phandle = w.alloc_phandle()?;
    let uart_path = cfg.uart.map(|u| format!("/pl011@{:x}", u.base.raw()));

    w.begin_node("")?;
    w.property_u32("#address-cells", ROOT_CELLS)?;
    w.property_u32("#size-cells", ROOT_CELLS)?;
    w.property_string("compatible", "linux,dummy-virt")?;
    w.property_u32("interrupt-parent", gic_phandle)?;

    w.begin_node("chosen")?;
    if !cfg.bootargs.is_empty() {
        w.property_string("bootargs", cfg.bootargs)?;
    }
    if cfg.stdout_path {
        let path = uart_path
            .as_deref()
            .ok_or(FdtError::BadDescription("stdout-path without a UART"))?;
        w.property_string("stdout-path", path)?;
    }
    if let Some(initrd) = cfg.initrd {
        w.property_u64("linux,initrd-start", initrd.start().raw())?;
        w.property_u64("linux,initrd-end", initrd.end().raw())?;
    }
    if cfg.pcie.is_some() {
        // The virtual config space has placed every BAR already: a guest
        // that reassigned them could be refused mid-way (a temporary overlap
        // is refused) and end up with BARs where its drivers do not look.
        w.property_u32("linux,pci-probe-only", 1)?;
    }
    w.end_node()?;

    w.begin_node(&format!("memory@{:x}", cfg.ram.start().raw()))?;
    w.property_string("device_type", "memory")?;
    reg(&mut w, &[cfg.ram])?;
    w.end_node()?;

    write_cpus(&mut w, cfg.cpu_mpidrs)?;

    w.begin_node("psci")?;
    w.property_string_list("compatible", &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])?;
    w.property_string("method", cfg.psci_method)?;
    w.end_node()?;

    write_timer(&mut w, cfg)?;
    write_gic(&mut w, &cfg.gic, gic_phandle)?;

    if let Some(uart) = cfg.uart {
        let clk = w.alloc_phandle()?;
        w.begin_node("apb-pclk")?;
        w.property_string("compatible", "fixed-clock")?;
        w.property_u32("#clock-cells", 0)?;
        w.property_u32("clock-frequency", APB_PCLK_HZ)?;
        w.property_string("clock-output-names", "clk24mhz")?;
        w.property_phandle(clk)?;
        w.end_node()?;

        w.begin_node(&format!("pl011@{:x}", uart.base.raw()))?;
        w.property_string_list("compatible", &["arm,pl011", "arm,primecell"])?;
        w.property_reg(&[(uart.base.raw(), uart.size)], ROOT_CELLS, ROOT_CELLS)?;
        w.property_cells("interrupts", &[GIC_SPI, uart.spi, IRQ_TYPE_LEVEL_HIGH])?;
        w.property_cells("clocks", &[clk, clk])?;
        w.property_string_list("clock-names", &["uartclk", "apb_pclk"])?;
        w.end_node()?;
    }

    if let Some(pcie) = &cfg.pcie {
        write_pcie(&mut w, pcie)?;
    }

    if cfg.hypervisor_node {
        w.begin_node("hypervisor")?;
        w.property_string("compatible", HYPERVISOR_COMPATIBLE)?;
        w.end_node()?;
    }

    w.end_node()?;
    w.finish()
}

fn validate(cfg: &GuestDtConfig) -> Result<(), FdtError> {
    let bad = |why| Err(FdtError::BadDescription(why));
    if cfg.ram.is_empty() {
        return bad("empty RAM");
    }
    if cfg.cpu_mpidrs.is_empty() {
        return bad("no vcpus");
    }
    if !matches!(cfg.psci_method, "hvc" | "smc") {
        return bad("PSCI method is neither hvc nor smc");
    }
    if cfg.timer_ppis.iter().any(|&p| p > 15) {
        return bad("timer PPI above 15");
    }
    let gic_frames = match cfg.gic {
        GuestGic::V2 { dist, cpu } => [dist, cpu],
        GuestGic::V3 { dist, redist } => [dist, redist],
    };
    if gic_frames.iter().any(IpaRange::is_empty) {
        return bad("empty GIC register frame");
    }
    if let Some(uart) = cfg.uart {
        if uart.size == 0 || uart.base.checked_add(uart.size).is_none() {
            return bad("UART frame empty or wrapping");
        }
        if uart.spi > MAX_SPI {
            return bad("UART SPI out of range");
        }
    }
    if let Some(pcie) = &cfg.pcie {
        if pcie.bus_start > pcie.bus_end {
            return bad("PCIe bus range reversed");
        }
        let buses = u64::from(pcie.bus_end - pcie.bus_start) + 1;
        if pcie.ecam.size() < buses * ECAM_BUS_SIZE {
            return bad("ECAM smaller than its bus range");
        }
        for win in pcie.windows {
            if win.size == 0 || win.cpu_addr.checked_add(win.size).is_none() {
                return bad("PCI window empty or wrapping");
            }
            let pci_end = win.pci_addr.checked_add(win.size);
            match win.kind {
                PciSpace::Io if win.prefetchable => return bad("prefetchable I/O window"),
                PciSpace::Mem32 if pci_end.is_none_or(|e| e > 1 << 32) => {
                    return bad("32-bit window above 4 GiB")
                }
                _ if pci_end.is_none() => return bad("PCI window wraps"),
                _ => {}
            }
        }
    }
    Ok(())
}

/// A `reg` of IPA ranges in the root's cells.
fn reg(w: &mut FdtWriter, ranges: &[IpaRange]) -> Result<(), FdtError> {
    let pairs: Vec<(u64, u64)> = ranges.iter().map(|r| (r.start().raw(), r.size())).collect();
    w.property_reg(&pairs, ROOT_CELLS, ROOT_CELLS)
}

fn write_cpus(w: &mut FdtWriter, mpidrs: &[u64]) -> Result<(), FdtError> {
    let ids = mpidrs.iter().map(|m| m & MPIDR_AFFINITY_MASK);
    // Aff3 needs a second cell; without it one cell is what Linux expects.
    let cells = if ids.clone().any(|id| id > u64::from(u32::MAX)) {
        2
    } else {
        1
    };
    w.begin_node("cpus")?;
    w.property_u32("#address-cells", cells)?;
    w.property_u32("#size-cells", 0)?;
    for id in ids {
        // Two vcpus with the same affinity give the same node name: refused
        // by the writer as a duplicate node.
        w.begin_node(&format!("cpu@{id:x}"))?;
        w.property_string("device_type", "cpu")?;
        w.property_string("compatible", "arm,armv8")?;
        w.property_reg(&[(id, 0)], cells, 0)?;
        w.property_string("enable-method", "psci")?;
        w.end_node()?;
    }
    w.end_node()
}

fn write_timer(w: &mut FdtWriter, cfg: &GuestDtConfig) -> Result<(), FdtError> {
    // GICv2 PPI specifiers carry a mask of the CPUs the interrupt goes to in
    // bits [15:8] (binding `arm,gic.yaml`), as QEMU `virt` writes it; GICv3 has none.
    let flags = match cfg.gic {
        GuestGic::V2 { .. } => {
            let ncpus = cfg.cpu_mpidrs.len().min(8);
            (((1u32 << ncpus) - 1) << 8) | IRQ_TYPE_LEVEL_HIGH
        }
        GuestGic::V3 { .. } => IRQ_TYPE_LEVEL_HIGH,
    };
    let cells: Vec<u32> = cfg
        .timer_ppis
        .iter()
        .flat_map(|&ppi| [GIC_PPI, ppi, flags])
        .collect();
    w.begin_node("timer")?;
    w.property_string("compatible", "arm,armv8-timer")?;
    w.property_cells("interrupts", &cells)?;
    w.property_empty("always-on")?;
    w.end_node()
}

fn write_gic(w: &mut FdtWriter, gic: &GuestGic, phandle: u32) -> Result<(), FdtError> {
    w.begin_node(&format!("intc@{:x}", gic.dist().start().raw()))?;
    match *gic {
        GuestGic::V2 { dist, cpu } => {
            w.property_string("compatible", "arm,cortex-a15-gic")?;
            reg(w, &[dist, cpu])?;
        }
        GuestGic::V3 { dist, redist } => {
            w.property_string("compatible", "arm,gic-v3")?;
            reg(w, &[dist, redist])?;
            w.property_u32("#redistributor-regions", 1)?;
        }
    }
    w.property_u32("#interrupt-cells", 3)?;
    // No child frames (ITS, v2m): an interrupt-map through this controller
    // carries no parent unit address, which dtc's checks want said.
    w.property_u32("#address-cells", 0)?;
    w.property_empty("interrupt-controller")?;
    w.property_phandle(phandle)?;
    w.end_node()
}

fn write_pcie(w: &mut FdtWriter, pcie: &GuestPcie) -> Result<(), FdtError> {
    w.begin_node(&format!("pcie@{:x}", pcie.ecam.start().raw()))?;
    w.property_string("compatible", "pci-host-ecam-generic")?;
    w.property_string("device_type", "pci")?;
    w.property_u32("#address-cells", 3)?;
    w.property_u32("#size-cells", 2)?;
    // No interrupt-map: the guest's drivers poll passthrough devices, so INTx
    // is not routed. `#interrupt-cells` is there for when it is.
    w.property_u32("#interrupt-cells", 1)?;
    w.property_cells(
        "bus-range",
        &[u32::from(pcie.bus_start), u32::from(pcie.bus_end)],
    )?;
    reg(w, &[pcie.ecam])?;
    let mut ranges = Vec::with_capacity(pcie.windows.len() * 7);
    for win in pcie.windows {
        ranges.extend_from_slice(&[
            win.phys_hi(),
            (win.pci_addr >> 32) as u32,
            win.pci_addr as u32,
            (win.cpu_addr.raw() >> 32) as u32,
            win.cpu_addr.raw() as u32,
            (win.size >> 32) as u32,
            win.size as u32,
        ]);
    }
    w.property_cells("ranges", &ranges)?;
    w.property_u32("linux,pci-domain", 0)?;
    // Exactly when the devices snoop the CPU caches: the guest then maps DMA
    // buffers cacheable. Wrong either way loses data (memory-attributes.md).
    if pcie.dma_coherent {
        w.property_empty("dma-coherent")?;
    }
    w.end_node()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn range(start: u64, size: u64) -> IpaRange {
        IpaRange::new(Ipa::new(start), size).unwrap()
    }

    const GICV3: GuestGic = GuestGic::V3 {
        dist: IpaRange::new(Ipa::new(0x800_0000), 0x1_0000).unwrap(),
        redist: IpaRange::new(Ipa::new(0x80a_0000), 0xf6_0000).unwrap(),
    };
    const GICV2: GuestGic = GuestGic::V2 {
        dist: IpaRange::new(Ipa::new(0x800_0000), 0x1_0000).unwrap(),
        cpu: IpaRange::new(Ipa::new(0x801_0000), 0x1_0000).unwrap(),
    };
    const WINDOWS: [GuestPciWindow; 3] = [
        GuestPciWindow {
            kind: PciSpace::Io,
            prefetchable: false,
            pci_addr: 0,
            cpu_addr: Ipa::new(0x3eff_0000),
            size: 0x1_0000,
        },
        GuestPciWindow {
            kind: PciSpace::Mem32,
            prefetchable: false,
            pci_addr: 0x1000_0000,
            cpu_addr: Ipa::new(0x1000_0000),
            size: 0x2eff_0000,
        },
        GuestPciWindow {
            kind: PciSpace::Mem64,
            prefetchable: true,
            pci_addr: 0x80_0000_0000,
            cpu_addr: Ipa::new(0x80_0000_0000),
            size: 0x80_0000_0000,
        },
    ];

    fn pcie(dma_coherent: bool) -> GuestPcie<'static> {
        GuestPcie {
            ecam: range(0x40_1000_0000, 0x1000_0000),
            bus_start: 0,
            bus_end: 0xff,
            windows: &WINDOWS,
            dma_coherent,
        }
    }

    fn config(gic: GuestGic, pcie: Option<GuestPcie<'static>>) -> GuestDtConfig<'static> {
        GuestDtConfig {
            ram: range(0x4000_0000, 0x4000_0000),
            cpu_mpidrs: &[0x8000_0000, 0x8000_0001],
            uart: Some(GuestUart {
                base: Ipa::new(0x900_0000),
                size: 0x1000,
                spi: 1,
            }),
            gic,
            timer_ppis: [13, 14, 11, 10],
            psci_method: "hvc",
            bootargs: "console=ttyAMA0 earlycon",
            stdout_path: true,
            initrd: Some(range(0x4800_0000, 0x20_0000)),
            pcie,
            hypervisor_node: true,
        }
    }

    fn cells(value: &[u8]) -> Vec<u32> {
        value
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn u64_prop(node: fdt::node::FdtNode, name: &str) -> u64 {
        let v = node.property(name).unwrap().value;
        u64::from_be_bytes(v.try_into().unwrap())
    }

    fn regs(node: fdt::node::FdtNode) -> Vec<(u64, u64)> {
        node.reg()
            .unwrap()
            .map(|r| (r.starting_address as u64, r.size.unwrap() as u64))
            .collect()
    }

    /// What every configuration must give, whatever the GIC and the bridge.
    fn check_common(cfg: &GuestDtConfig, blob: &[u8]) {
        let fdt = fdt::Fdt::new(blob).unwrap();
        let root = fdt.root();
        assert_eq!(root.cell_sizes().address_cells, 2);
        assert_eq!(root.cell_sizes().size_cells, 2);
        assert_eq!(root.compatible().first(), "linux,dummy-virt");

        let mem = fdt.memory().regions().next().unwrap();
        assert_eq!(mem.starting_address as u64, cfg.ram.start().raw());
        assert_eq!(mem.size, Some(cfg.ram.size() as usize));

        assert_eq!(fdt.cpus().count(), cfg.cpu_mpidrs.len());
        for (cpu, mpidr) in fdt.cpus().zip(cfg.cpu_mpidrs) {
            assert_eq!(cpu.ids().first() as u64, mpidr & MPIDR_AFFINITY_MASK);
            let enable = cpu.property("enable-method").unwrap().as_str();
            assert_eq!(enable, Some("psci"));
        }

        let psci = fdt.find_node("/psci").unwrap();
        assert_eq!(psci.property("method").unwrap().as_str(), Some("hvc"));
        assert_eq!(psci.compatible().unwrap().first(), "arm,psci-1.0");

        let chosen = fdt.chosen();
        assert_eq!(chosen.bootargs(), Some(cfg.bootargs));
        let uart = chosen.stdout().unwrap();
        assert_eq!(uart.name, "pl011@9000000");
        assert_eq!(uart.compatible().unwrap().first(), "arm,pl011");
        assert_eq!(regs(uart), vec![(0x900_0000, 0x1000)]);
        assert_eq!(
            cells(uart.property("interrupts").unwrap().value),
            vec![0, 1, 4]
        );
        let clocks = cells(uart.property("clocks").unwrap().value);
        let clk = fdt.find_phandle(clocks[0]).unwrap();
        assert_eq!(clk.name, "apb-pclk");
        assert_eq!(
            clk.property("clock-frequency").unwrap().as_usize(),
            Some(24_000_000)
        );

        let chosen_node = fdt.find_node("/chosen").unwrap();
        let initrd = cfg.initrd.unwrap();
        assert_eq!(
            u64_prop(chosen_node, "linux,initrd-start"),
            initrd.start().raw()
        );
        assert_eq!(
            u64_prop(chosen_node, "linux,initrd-end"),
            initrd.end().raw()
        );

        let hv = fdt.find_node("/hypervisor").unwrap();
        assert_eq!(hv.compatible().unwrap().first(), HYPERVISOR_COMPATIBLE);

        // Every node hangs off the GIC, which is found through the root's phandle.
        let intc = fdt.find_node("/intc@8000000").unwrap();
        let parent = root
            .property("interrupt-parent")
            .unwrap()
            .as_usize()
            .unwrap();
        assert_eq!(intc.property("phandle").unwrap().as_usize(), Some(parent));
        assert_eq!(intc.interrupt_cells(), Some(3));
        assert!(intc.property("interrupt-controller").is_some());
        let timer = fdt.find_node("/timer").unwrap();
        assert!(timer.property("always-on").is_some());
    }

    fn check_pcie(cfg: &GuestDtConfig, blob: &[u8]) {
        let fdt = fdt::Fdt::new(blob).unwrap();
        let node = fdt.find_compatible(&["pci-host-ecam-generic"]);
        let Some(want) = &cfg.pcie else {
            assert!(node.is_none());
            return;
        };
        let node = node.unwrap();
        assert_eq!(node.name, "pcie@4010000000");
        assert_eq!(node.property("device_type").unwrap().as_str(), Some("pci"));
        assert_eq!(
            regs(node),
            vec![(want.ecam.start().raw(), want.ecam.size())]
        );
        let bus_range = cells(node.property("bus-range").unwrap().value);
        assert_eq!(bus_range, vec![0, 0xff]);
        let ranges = cells(node.property("ranges").unwrap().value);
        let decoded: Vec<GuestPciWindow> = ranges
            .chunks_exact(7)
            .map(|e| {
                let u64_at = |i: usize| (u64::from(e[i]) << 32) | u64::from(e[i + 1]);
                let kind = match e[0] & 0x0300_0000 {
                    0x0100_0000 => PciSpace::Io,
                    0x0200_0000 => PciSpace::Mem32,
                    0x0300_0000 => PciSpace::Mem64,
                    other => panic!("space code {other:#x}"),
                };
                GuestPciWindow {
                    kind,
                    prefetchable: e[0] & PCI_PHYS_HI_PREFETCHABLE != 0,
                    pci_addr: u64_at(1),
                    cpu_addr: Ipa::new(u64_at(3)),
                    size: u64_at(5),
                }
            })
            .collect();
        assert_eq!(decoded, want.windows);
        assert_eq!(
            node.property("dma-coherent").is_some(),
            want.dma_coherent,
            "dma-coherent must be present exactly when requested"
        );
    }

    #[test]
    fn gicv3_with_coherent_pcie() {
        let cfg = config(GICV3, Some(pcie(true)));
        let blob = build(&cfg).unwrap();
        check_common(&cfg, &blob);
        check_pcie(&cfg, &blob);
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let intc = fdt.find_node("/intc@8000000").unwrap();
        assert_eq!(intc.compatible().unwrap().first(), "arm,gic-v3");
        assert_eq!(
            regs(intc),
            vec![(0x800_0000, 0x1_0000), (0x80a_0000, 0xf6_0000)]
        );
        assert_eq!(
            intc.property("#redistributor-regions").unwrap().as_usize(),
            Some(1)
        );
        let timer = fdt.find_node("/timer").unwrap();
        assert_eq!(
            cells(timer.property("interrupts").unwrap().value),
            vec![1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]
        );
    }

    #[test]
    fn gicv2_with_non_coherent_pcie() {
        let cfg = config(GICV2, Some(pcie(false)));
        let blob = build(&cfg).unwrap();
        check_common(&cfg, &blob);
        check_pcie(&cfg, &blob);
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let intc = fdt.find_node("/intc@8000000").unwrap();
        assert_eq!(intc.compatible().unwrap().first(), "arm,cortex-a15-gic");
        assert_eq!(
            regs(intc),
            vec![(0x800_0000, 0x1_0000), (0x801_0000, 0x1_0000)]
        );
        assert!(intc.property("#redistributor-regions").is_none());
        // Two vcpus: CPU mask 0b11 in bits [15:8].
        let timer = fdt.find_node("/timer").unwrap();
        assert_eq!(
            cells(timer.property("interrupts").unwrap().value),
            vec![1, 13, 0x304, 1, 14, 0x304, 1, 11, 0x304, 1, 10, 0x304]
        );
    }

    #[test]
    fn without_pcie() {
        for gic in [GICV2, GICV3] {
            let cfg = config(gic, None);
            let blob = build(&cfg).unwrap();
            check_common(&cfg, &blob);
            check_pcie(&cfg, &blob);
        }
    }

    #[test]
    fn dma_coherent_only_when_requested() {
        for coherent in [false, true] {
            let cfg = config(GICV3, Some(pcie(coherent)));
            let blob = build(&cfg).unwrap();
            let fdt = fdt::Fdt::new(&blob).unwrap();
            let with: Vec<_> = fdt
                .all_nodes()
                .filter(|n| n.property("dma-coherent").is_some())
                .map(|n| n.name)
                .collect();
            let want: &[&str] = if coherent { &["pcie@4010000000"] } else { &[] };
            assert_eq!(with, want);
        }
    }

    #[test]
    fn pci_probe_only_exactly_with_pcie() {
        for with_pcie in [false, true] {
            let cfg = config(GICV3, with_pcie.then(|| pcie(true)));
            let blob = build(&cfg).unwrap();
            let fdt = fdt::Fdt::new(&blob).unwrap();
            let chosen = fdt.find_node("/chosen").unwrap();
            let probe_only = chosen
                .property("linux,pci-probe-only")
                .and_then(|p| p.as_usize());
            assert_eq!(probe_only, with_pcie.then_some(1));
        }
    }

    #[test]
    fn minimal_config() {
        let cfg = GuestDtConfig {
            uart: None,
            stdout_path: false,
            initrd: None,
            bootargs: "",
            hypervisor_node: false,
            ..config(GICV3, None)
        };
        let blob = build(&cfg).unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        assert!(fdt.chosen().bootargs().is_none());
        assert!(fdt.chosen().stdout().is_none());
        assert!(fdt.find_node("/apb-pclk").is_none());
        assert!(fdt.find_node("/hypervisor").is_none());
        assert!(fdt
            .find_node("/chosen")
            .unwrap()
            .property("linux,initrd-start")
            .is_none());
    }

    #[test]
    fn wide_mpidrs_use_two_cells() {
        let mpidrs = [0x1_0000_0000, 0x1_0000_0001];
        let cfg = GuestDtConfig {
            cpu_mpidrs: &mpidrs,
            ..config(GICV3, None)
        };
        let blob = build(&cfg).unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let cpus = fdt.find_node("/cpus").unwrap();
        assert_eq!(cpus.cell_sizes().address_cells, 2);
        let ids: Vec<u64> = fdt.cpus().map(|c| c.ids().first() as u64).collect();
        assert_eq!(ids, mpidrs);
        assert!(fdt.find_node("/cpus/cpu@100000001").is_some());
    }

    #[test]
    fn deterministic_and_small() {
        let cfg = config(GICV3, Some(pcie(true)));
        let a = build(&cfg).unwrap();
        let b = build(&cfg).unwrap();
        assert_eq!(a, b);
        assert!(a.len() < 2048, "guest DT grew to {} bytes", a.len());
    }

    #[test]
    fn refuses_inconsistent_descriptions() {
        let base = config(GICV3, Some(pcie(true)));
        let bad = |cfg: GuestDtConfig| {
            assert!(
                matches!(build(&cfg), Err(FdtError::BadDescription(_))),
                "{cfg:?} accepted"
            );
        };
        bad(GuestDtConfig { uart: None, ..base });
        bad(GuestDtConfig {
            cpu_mpidrs: &[],
            ..base
        });
        bad(GuestDtConfig {
            psci_method: "svc",
            ..base
        });
        bad(GuestDtConfig {
            timer_ppis: [13, 14, 11, 16],
            ..base
        });
        bad(GuestDtConfig {
            ram: range(0x4000_0000, 0),
            ..base
        });
        let io_prefetch = [GuestPciWindow {
            prefetchable: true,
            ..WINDOWS[0]
        }];
        let mem32_high = [GuestPciWindow {
            pci_addr: 0xf000_0000,
            size: 0x2000_0000,
            ..WINDOWS[1]
        }];
        for windows in [&io_prefetch[..], &mem32_high[..]] {
            bad(GuestDtConfig {
                pcie: Some(GuestPcie {
                    windows,
                    ..pcie(true)
                }),
                ..base
            });
        }
        bad(GuestDtConfig {
            pcie: Some(GuestPcie {
                ecam: range(0x40_1000_0000, 0x10_0000),
                ..pcie(true)
            }),
            ..base
        });
        // Two vcpus with one affinity would give two cpu nodes of one name.
        assert_eq!(
            build(&GuestDtConfig {
                cpu_mpidrs: &[0x8000_0001, 0x1],
                ..base
            }),
            Err(FdtError::DuplicateNode)
        );
    }
}
