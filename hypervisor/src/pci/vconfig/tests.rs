//! Host tests of the virtual config space; item numbers are those of the
//! hostile-guest list.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;
use crate::devices::mmio::{BusAccess, DispatchResult, Effects, MmioBus, VcpuId};
use crate::pci::types::Bar;
use crate::vm::layout;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use spin::Mutex;

/// The guest windows of the VM layout.
const WINDOWS: GuestWindows = GuestWindows {
    mmio32: layout::PCI_MMIO32,
    mmio64: layout::PCI_MMIO64,
};

fn window_for(kind: BarKind) -> IpaRange {
    WINDOWS.for_kind(kind)
}

const SUBSYSTEM: u32 = 0x1100_1AF4;
/// Physical status: Capabilities List and Received Master Abort.
const PHYS_STATUS: u32 = 0x2010;
const PHYS_ROM: u32 = 0xFE00_0001;

struct FakeState {
    regs: [u32; 1024],
    writes: Vec<(u16, u8, u32)>,
}

/// A physical function: a register file that takes any write, and a log of
/// the writes.
#[derive(Clone)]
struct Fake(Arc<Mutex<FakeState>>);

impl Fake {
    fn new(dev: &PassthroughDevice) -> Self {
        let mut regs = [0u32; 1024];
        regs[0] = u32::from(dev.vendor_id) | u32::from(dev.device_id) << 16;
        regs[1] = PHYS_STATUS << 16 | 0x0007;
        regs[2] = dev.class_rev;
        regs[3] = u32::from(dev.header_type) << 16;
        for (bar, _) in dev.bars.iter().flatten() {
            let i = 4 + usize::from(bar.index);
            let ty = match bar.kind {
                BarKind::Mem32 => 0,
                BarKind::Mem64 => 0b100,
                BarKind::Io => 1,
            } | if bar.prefetchable { 0b1000 } else { 0 };
            regs[i] = bar.pci_addr as u32 | ty;
            if bar.kind == BarKind::Mem64 {
                regs[i + 1] = (bar.pci_addr >> 32) as u32;
            }
        }
        regs[0x2C / 4] = SUBSYSTEM;
        regs[0x30 / 4] = PHYS_ROM;
        regs[0x34 / 4] = 0x40;
        regs[0x3C / 4] = 0x0000_0120;
        // An MSI capability, then a PCIe one, then junk; an extended
        // capability at 0x100.
        regs[0x40 / 4] = 0x0080_5005;
        regs[0x50 / 4] = 0x0002_0010;
        for r in regs.iter_mut().skip(0x60 / 4) {
            *r = 0xA5A5_5A5A;
        }
        regs[0x100 / 4] = 0x1401_0001;
        Self(Arc::new(Mutex::new(FakeState {
            regs,
            writes: Vec::new(),
        })))
    }

    fn reg(&self, offset: u16) -> u32 {
        self.0.lock().regs[usize::from(offset / 4)]
    }

    fn writes(&self) -> Vec<(u16, u8, u32)> {
        self.0.lock().writes.clone()
    }

    fn clear_writes(&self) {
        self.0.lock().writes.clear();
    }
}

impl PhysicalConfig for Fake {
    fn read32(&mut self, offset: u16) -> u32 {
        self.0
            .lock()
            .regs
            .get(usize::from(offset / 4))
            .copied()
            .unwrap_or(u32::MAX)
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        let mut s = self.0.lock();
        s.writes.push((offset, size, value));
        let shift = u32::from(offset & 3) * 8;
        let mask = (truncate(u64::MAX, size) << shift) as u32;
        let r = &mut s.regs[usize::from(offset / 4)];
        *r = (*r & !mask) | ((value << shift) & mask);
    }
}

fn bar(index: u8, kind: BarKind, prefetchable: bool, size: u64, host: u64) -> (Bar, BarPolicy) {
    let policy = if prefetchable {
        BarPolicy::GuestChoice
    } else {
        BarPolicy::Device
    };
    (
        Bar {
            index,
            kind,
            prefetchable,
            size,
            host_addr: PhysAddr::new(host),
            pci_addr: host,
        },
        policy,
    )
}

fn device(bus: u8, bars: &[(Bar, BarPolicy)], bus_master_allowed: bool) -> PassthroughDevice {
    let mut slots = [None; 6];
    for (i, b) in bars.iter().enumerate() {
        slots[i] = Some(*b);
    }
    PassthroughDevice {
        host_bdf: Bdf::new(bus, 0, 0).unwrap(),
        vendor_id: 0x1AF4,
        device_id: 0x1040 + u16::from(bus),
        class_rev: 0x0200_0001,
        header_type: 0,
        bars: slots,
        dma_coherent: true,
        bus_master_allowed,
    }
}

const K: u64 = 1 << 10;
const M: u64 = 1 << 20;
const G: u64 = 1 << 30;

/// Three devices:
/// - guest 00:00.0 = host 01:00.0: BAR0 32-bit 16 KiB, BAR2 64-bit
///   prefetchable 1 MiB, BAR4 32-bit prefetchable 1 MiB; no bus mastering.
/// - guest 00:01.0 = host 02:00.0: BAR0 64-bit prefetchable 8 GiB, BAR2
///   32-bit 256 bytes; bus mastering allowed.
/// - guest 00:02.0 = host 03:00.0: BAR0 64-bit 64 KiB, BAR5 32-bit 4 KiB.
fn devices() -> Vec<PassthroughDevice> {
    vec![
        device(
            1,
            &[
                bar(0, BarKind::Mem32, false, 16 * K, 0x1000_0000),
                bar(2, BarKind::Mem64, true, M, 0x80_0000_0000),
                bar(4, BarKind::Mem32, true, M, 0x1010_0000),
            ],
            false,
        ),
        device(
            2,
            &[
                bar(0, BarKind::Mem64, true, 8 * G, 0x100_0000_0000),
                bar(2, BarKind::Mem32, false, 256, 0x1020_0000),
            ],
            true,
        ),
        device(
            3,
            &[
                bar(0, BarKind::Mem64, false, 64 * K, 0x80_0010_0000),
                bar(5, BarKind::Mem32, false, 4 * K, 0x1020_1000),
            ],
            false,
        ),
    ]
}

fn build(devs: &[PassthroughDevice]) -> (VirtualPciBus, Vec<Fake>) {
    let fakes: Vec<Fake> = devs.iter().map(Fake::new).collect();
    let phys: Vec<Box<dyn PhysicalConfig + Send>> = fakes
        .iter()
        .map(|f| Box::new(f.clone()) as Box<dyn PhysicalConfig + Send>)
        .collect();
    let bus = VirtualPciBus::new(devs, phys, WINDOWS).unwrap();
    for f in &fakes {
        f.clear_writes();
    }
    (bus, fakes)
}

fn setup() -> (VirtualPciBus, Vec<Fake>) {
    build(&devices())
}

/// ECAM offset of a register of bus/device/function.
fn at(bus: u64, dev: u64, func: u64, reg: u64) -> u64 {
    bus << 20 | dev << 15 | func << 12 | reg
}

fn rd(bus: &mut VirtualPciBus, dev: u64, reg: u64, size: u8) -> u64 {
    bus.read(at(0, dev, 0, reg), size).unwrap()
}

fn wr(bus: &mut VirtualPciBus, dev: u64, reg: u64, size: u8, value: u64) {
    bus.write(at(0, dev, 0, reg), size, value).unwrap();
}

fn events(bus: &mut VirtualPciBus) -> Vec<BarEvent> {
    bus.take_events().collect()
}

fn range(start: u64, size: u64) -> IpaRange {
    IpaRange::new(Ipa::new(start), size).unwrap()
}

/// The physical BAR and ROM registers of every fake.
fn phys_bars(fakes: &[Fake]) -> Vec<[u32; 7]> {
    fakes
        .iter()
        .map(|f| {
            let mut r = [0; 7];
            for (i, v) in r.iter_mut().take(6).enumerate() {
                *v = f.reg(0x10 + 4 * i as u16);
            }
            r[6] = f.reg(0x30);
            r
        })
        .collect()
}

#[test]
fn guest_sees_its_devices_renumbered_on_bus_0() {
    let (mut bus, _) = setup();
    for (i, host) in [1u8, 2, 3].into_iter().enumerate() {
        let g = Bdf::new(0, i as u8, 0).unwrap();
        let h = Bdf::new(host, 0, 0).unwrap();
        assert_eq!(bus.guest_bdf(h), Some(g));
        assert_eq!(bus.host_bdf(g), Some(h));
        assert_eq!(
            rd(&mut bus, i as u64, 0, 4),
            0x1040_1AF4 + (u64::from(host) << 16)
        );
    }
    assert_eq!(bus.guest_bdf(Bdf::new(4, 0, 0).unwrap()), None);
    assert_eq!(bus.host_bdf(Bdf::new(0, 3, 0).unwrap()), None);
    assert_eq!(bus.host_bdf(Bdf::new(0, 0, 1).unwrap()), None);
    assert_eq!(bus.host_bdf(Bdf::new(1, 0, 0).unwrap()), None);
    assert_eq!(bus.name(), "pci-ecam");
}

#[test]
fn initial_bars_are_aligned_disjoint_and_in_their_windows() {
    let (mut bus, _) = setup();
    let bar = |bus: &mut VirtualPciBus, d, slot: u64| rd(bus, d, 0x10 + 4 * slot, 4);
    // 32-bit window, largest first.
    assert_eq!(bar(&mut bus, 0, 4), 0x1000_0008);
    assert_eq!(bar(&mut bus, 0, 0), 0x1010_0000);
    assert_eq!(bar(&mut bus, 1, 2), 0x1010_4000);
    assert_eq!(bar(&mut bus, 2, 5), 0x1010_5000);
    // 64-bit window.
    assert_eq!(bar(&mut bus, 1, 0), 0x0000_000C);
    assert_eq!(bar(&mut bus, 1, 1), 0x80);
    assert_eq!(bar(&mut bus, 0, 2), 0x0000_000C);
    assert_eq!(bar(&mut bus, 0, 3), 0x82);
    assert_eq!(bar(&mut bus, 2, 0), 0x0010_0004);
    assert_eq!(bar(&mut bus, 2, 1), 0x82);
    // Unused slots.
    assert_eq!(bar(&mut bus, 1, 3), 0);
    assert_eq!(bar(&mut bus, 2, 2), 0);
    assert_eq!(bus.mapped().count(), 0, "nothing is mapped before MSE");
}

#[test]
fn ids_header_and_pointers_are_virtual_and_read_only() {
    // Item 32.
    let (mut bus, fakes) = setup();
    let regs = [0x00, 0x08, 0x0C, 0x2C, 0x30, 0x34, 0x3C];
    let before: Vec<u64> = regs.iter().map(|&r| rd(&mut bus, 0, r, 4)).collect();
    assert_eq!(before[0], 0x1041_1AF4);
    assert_eq!(before[1], 0x0200_0001);
    assert_eq!(before[2], 0, "header type 0, single function");
    assert_eq!(before[3], u64::from(SUBSYSTEM));
    assert_eq!(rd(&mut bus, 0, 0x0E, 1), 0);
    assert_eq!(rd(&mut bus, 0, 0x3D, 1), 0, "interrupt pin: no INTx");
    for &r in &[0x00, 0x02, 0x08, 0x0A, 0x0E, 0x2C, 0x2E, 0x34, 0x3D] {
        wr(&mut bus, 0, r, if r & 1 == 0 { 2 } else { 1 }, 0xFFFF);
        wr(&mut bus, 0, r & !3, 4, 0x1234_5678);
    }
    wr(&mut bus, 0, 0x0E, 1, 0x80);
    assert_eq!(rd(&mut bus, 0, 0x00, 4), before[0]);
    assert_eq!(rd(&mut bus, 0, 0x08, 4), before[1]);
    assert_eq!(rd(&mut bus, 0, 0x0E, 1), 0);
    assert_eq!(rd(&mut bus, 0, 0x2C, 4), before[3]);
    assert_eq!(rd(&mut bus, 0, 0x34, 4), 0);
    assert_eq!(rd(&mut bus, 0, 0x3D, 1), 0);
    assert!(fakes[0].writes().is_empty(), "nothing reached the device");
}

#[test]
fn cache_line_and_interrupt_line_are_scratch() {
    let (mut bus, fakes) = setup();
    wr(&mut bus, 0, 0x0C, 1, 0x10);
    wr(&mut bus, 0, 0x3C, 1, 0x2A);
    assert_eq!(rd(&mut bus, 0, 0x0C, 4), 0x10);
    assert_eq!(rd(&mut bus, 0, 0x3C, 4), 0x2A);
    wr(&mut bus, 0, 0x3C, 4, 0xFFFF_FF07);
    assert_eq!(
        rd(&mut bus, 0, 0x3C, 4),
        0x07,
        "pin, min_gnt, max_lat stay 0"
    );
    assert_eq!(rd(&mut bus, 1, 0x3C, 1), 0, "per device");
    assert!(fakes[0].writes().is_empty());
}

#[test]
fn command_is_filtered_and_propagated() {
    let (mut bus, fakes) = setup();
    // Device 0 may not master: BME stays 0 (item 35), I/O stays 0.
    wr(&mut bus, 0, 0x04, 2, 0xFFFF);
    assert_eq!(rd(&mut bus, 0, 0x04, 2), 0x0402);
    assert_eq!(fakes[0].writes(), [(0x04, 2, 0x0402)]);
    assert_eq!(fakes[0].reg(0x04) & 0xFFFF, 0x0402);
    wr(&mut bus, 0, 0x04, 2, u64::from(CMD_BUS_MASTER));
    assert_eq!(rd(&mut bus, 0, 0x04, 2), 0);
    assert_eq!(
        fakes[0].reg(0x04) & 0xFFFF,
        0x0400,
        "INTx stays disabled on the host"
    );
    // Device 1 may.
    wr(&mut bus, 1, 0x04, 2, 0xFFFF);
    assert_eq!(rd(&mut bus, 1, 0x04, 2), 0x0406);
    assert_eq!(fakes[1].reg(0x04) & 0xFFFF, 0x0406);
    wr(&mut bus, 1, 0x04, 2, u64::from(CMD_MEMORY | CMD_BUS_MASTER));
    assert_eq!(rd(&mut bus, 1, 0x04, 2), 0x0006);
    assert_eq!(fakes[1].reg(0x04) & 0xFFFF, 0x0406);
    // Byte writes merge into the command register.
    wr(&mut bus, 2, 0x05, 1, 0x04);
    assert_eq!(rd(&mut bus, 2, 0x04, 2), 0x0400);
    wr(&mut bus, 2, 0x04, 1, 0x03);
    assert_eq!(rd(&mut bus, 2, 0x04, 2), 0x0402);
    assert_eq!(fakes[2].writes(), [(0x04, 2, 0x0400), (0x04, 2, 0x0402)]);
}

#[test]
fn new_puts_the_physical_command_register_in_the_virtual_state() {
    let devs = devices();
    let fakes: Vec<Fake> = devs.iter().map(Fake::new).collect();
    let phys = fakes
        .iter()
        .map(|f| Box::new(f.clone()) as Box<dyn PhysicalConfig + Send>)
        .collect();
    let mut bus = VirtualPciBus::new(&devs, phys, WINDOWS).unwrap();
    for (i, f) in fakes.iter().enumerate() {
        assert_eq!(f.writes(), [(0x04, 2, 0x0400)]);
        assert_eq!(rd(&mut bus, i as u64, 0x04, 2), 0);
    }
}

#[test]
fn status_hides_the_capability_list_and_ignores_writes() {
    let (mut bus, fakes) = setup();
    assert_eq!(rd(&mut bus, 0, 0x06, 2), u64::from(PHYS_STATUS) & !0x10);
    assert_eq!(rd(&mut bus, 0, 0x04, 4) >> 16, 0x2000);
    wr(&mut bus, 0, 0x06, 2, 0xFFFF);
    wr(&mut bus, 0, 0x07, 1, 0xFF);
    assert!(fakes[0].writes().is_empty());
    // A dword write reaches only the command half.
    wr(&mut bus, 0, 0x04, 4, 0xFFFF_0002);
    assert_eq!(fakes[0].writes(), [(0x04, 2, 0x0402)]);
    assert_eq!(rd(&mut bus, 0, 0x06, 2), 0x2000);
}

#[test]
fn capabilities_and_everything_above_0x40_are_hidden() {
    let (mut bus, fakes) = setup();
    assert_eq!(rd(&mut bus, 0, 0x34, 1), 0);
    for reg in (0x40..0x1000).step_by(4) {
        assert_eq!(rd(&mut bus, 0, reg, 4), 0, "{reg:#x}");
        wr(&mut bus, 0, reg, 4, 0xFFFF_FFFF);
        wr(&mut bus, 0, reg, 1, 0xFF);
    }
    assert_eq!(rd(&mut bus, 0, 0xFFF, 1), 0);
    assert!(fakes[0].writes().is_empty());
    assert_eq!(fakes[0].reg(0x40), 0x0080_5005);
}

#[test]
fn bar_sizing_returns_the_mask_with_type_bits() {
    // Item 28.
    let (mut bus, fakes) = setup();
    let phys = phys_bars(&fakes);
    let cases: [(u64, u64, u64); 10] = [
        // device, register, mask after all ones
        (0, 0x10, 0xFFFF_C000), // 32-bit 16 KiB
        (0, 0x18, 0xFFF0_000C), // 64-bit prefetchable 1 MiB, low
        (0, 0x1C, 0xFFFF_FFFF), // ... high
        (0, 0x20, 0xFFF0_0008), // 32-bit prefetchable 1 MiB
        (1, 0x10, 0x0000_000C), // 64-bit prefetchable 8 GiB, low
        (1, 0x14, 0xFFFF_FFFE), // ... high
        (1, 0x18, 0xFFFF_F000), // 256 bytes, shown as a page
        (2, 0x10, 0xFFFF_0004), // 64-bit 64 KiB, low
        (2, 0x14, 0xFFFF_FFFF), // ... high
        (2, 0x24, 0xFFFF_F000), // 32-bit 4 KiB in slot 5
    ];
    for (d, reg, mask) in cases {
        let old = rd(&mut bus, d, reg, 4);
        wr(&mut bus, d, reg, 4, 0xFFFF_FFFF);
        assert_eq!(rd(&mut bus, d, reg, 4), mask, "device {d} reg {reg:#x}");
        wr(&mut bus, d, reg, 4, old);
        assert_eq!(rd(&mut bus, d, reg, 4), old);
    }
    // Both halves of a 64-bit BAR at once, as Linux sizes them.
    let (lo, hi) = (rd(&mut bus, 1, 0x10, 4), rd(&mut bus, 1, 0x14, 4));
    wr(&mut bus, 1, 0x10, 4, 0xFFFF_FFFF);
    wr(&mut bus, 1, 0x14, 4, 0xFFFF_FFFF);
    assert_eq!(rd(&mut bus, 1, 0x10, 4), 0xC);
    assert_eq!(rd(&mut bus, 1, 0x14, 4), 0xFFFF_FFFE);
    wr(&mut bus, 1, 0x10, 4, lo);
    wr(&mut bus, 1, 0x14, 4, hi);
    assert_eq!(
        (rd(&mut bus, 1, 0x10, 4), rd(&mut bus, 1, 0x14, 4)),
        (lo, hi)
    );
    // Probing with the type bits clear is a probe too.
    wr(&mut bus, 0, 0x10, 4, 0xFFFF_FFF0);
    assert_eq!(rd(&mut bus, 0, 0x10, 4), 0xFFFF_C000);
    wr(&mut bus, 0, 0x10, 4, 0x1010_0000);
    assert_eq!(phys_bars(&fakes), phys, "the physical BARs never change");
    assert!(fakes.iter().all(|f| f.writes().is_empty()));
    assert!(events(&mut bus).is_empty());
}

#[test]
fn a_bar_left_probing_is_restored_when_decoding_starts() {
    let (mut bus, _) = setup();
    wr(&mut bus, 0, 0x10, 4, 0xFFFF_FFFF);
    wr(&mut bus, 0, 0x1C, 4, 0xFFFF_FFFF);
    wr(&mut bus, 0, 0x04, 2, u64::from(CMD_MEMORY));
    assert_eq!(rd(&mut bus, 0, 0x10, 4), 0x1010_0000);
    assert_eq!(rd(&mut bus, 0, 0x1C, 4), 0x82);
    let maps: Vec<IpaRange> = bus.mapped().map(|m| m.0).collect();
    assert!(maps.contains(&range(0x1010_0000, 16 * K)));
    assert!(maps.contains(&range(0x82_0000_0000, M)));
}

#[test]
fn unused_bar_slots_read_zero_and_ignore_writes() {
    let (mut bus, fakes) = setup();
    for (d, reg) in [
        (1, 0x1C),
        (1, 0x20),
        (1, 0x24),
        (2, 0x18),
        (2, 0x1C),
        (2, 0x20),
    ] {
        wr(&mut bus, d, reg, 4, 0xFFFF_FFFF);
        assert_eq!(rd(&mut bus, d, reg, 4), 0);
        wr(&mut bus, d, reg, 4, 0x1800_0000);
        assert_eq!(rd(&mut bus, d, reg, 4), 0);
    }
    assert!(fakes.iter().all(|f| f.writes().is_empty()));
}

#[test]
fn bar_writes_while_memory_decoding_is_on_are_ignored() {
    // Item 26.
    let (mut bus, fakes) = setup();
    let phys = phys_bars(&fakes);
    wr(&mut bus, 0, 0x04, 2, u64::from(CMD_MEMORY));
    let maps = events(&mut bus);
    let before: Vec<u64> = (0..6).map(|i| rd(&mut bus, 0, 0x10 + 4 * i, 4)).collect();
    for i in 0..6 {
        wr(&mut bus, 0, 0x10 + 4 * i, 4, 0xFFFF_FFFF);
        wr(&mut bus, 0, 0x10 + 4 * i, 4, 0x2000_0000);
        wr(&mut bus, 0, 0x10 + 4 * i, 1, 0);
    }
    let after: Vec<u64> = (0..6).map(|i| rd(&mut bus, 0, 0x10 + 4 * i, 4)).collect();
    assert_eq!(before, after);
    assert!(events(&mut bus).is_empty());
    assert_eq!(maps.len(), 3);
    assert_eq!(phys_bars(&fakes), phys);
}

#[test]
fn relocations_inside_the_window_are_accepted() {
    let (mut bus, fakes) = setup();
    let phys = phys_bars(&fakes);
    // 32-bit BAR within the 32-bit window.
    wr(&mut bus, 0, 0x10, 4, 0x2000_4000);
    assert_eq!(rd(&mut bus, 0, 0x10, 4), 0x2000_4000);
    // To the very end of the window.
    let end = layout::PCI_MMIO32.end().raw();
    wr(&mut bus, 2, 0x24, 4, end - 4 * K);
    assert_eq!(rd(&mut bus, 2, 0x24, 4), end - 4 * K);
    // 64-bit BAR, low then high.
    wr(&mut bus, 0, 0x18, 4, 0x1230_0000);
    assert_eq!(
        rd(&mut bus, 0, 0x18, 4),
        0x1230_000C,
        "held low half reads back"
    );
    assert_eq!(rd(&mut bus, 0, 0x1C, 4), 0x82);
    wr(&mut bus, 0, 0x1C, 4, 0xA5);
    assert_eq!(rd(&mut bus, 0, 0x18, 4), 0x1230_000C);
    assert_eq!(rd(&mut bus, 0, 0x1C, 4), 0xA5);
    // 8 GiB BAR to the top of the 64-bit window.
    let top = layout::PCI_MMIO64.end().raw() - 8 * G;
    wr(&mut bus, 1, 0x10, 4, top & 0xFFFF_FFFF);
    wr(&mut bus, 1, 0x14, 4, top >> 32);
    assert_eq!(rd(&mut bus, 1, 0x14, 4), top >> 32);
    // Relocation with decoding off maps nothing.
    assert!(events(&mut bus).is_empty());
    assert_eq!(bus.mapped().count(), 0);
    wr(&mut bus, 0, 0x04, 2, u64::from(CMD_MEMORY));
    wr(&mut bus, 1, 0x04, 2, u64::from(CMD_MEMORY));
    let mut got: Vec<(u64, u64)> = bus
        .mapped()
        .map(|(r, h, _)| (r.start().raw(), h.raw()))
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        [
            (0x1000_0000, 0x1010_0000),
            (0x1010_4000, 0x1020_0000),
            (0x2000_4000, 0x1000_0000),
            (0xA5_1230_0000, 0x80_0000_0000),
            (top, 0x100_0000_0000),
        ]
    );
    assert_eq!(phys_bars(&fakes), phys);
}

#[test]
fn illegal_relocations_are_refused() {
    // Item 27.
    let (mut bus, fakes) = setup();
    let phys = phys_bars(&fakes);
    let ram = layout::RAM_BASE.raw();
    let refused32: [(u64, &str); 8] = [
        (ram, "guest RAM"),
        (0x0900_0000, "the UART"),
        (0x0800_0000, "below the window"),
        (
            layout::PCI_MMIO32.end().raw() - 8 * K,
            "past the window end",
        ),
        (0x2000_2000, "misaligned for 16 KiB"),
        (0x2000_0800, "misaligned below a page"),
        (0x1000_0000, "onto another device's BAR"),
        (0x1010_4000, "partly onto another device's BAR"),
    ];
    for (addr, what) in refused32 {
        wr(&mut bus, 0, 0x10, 4, addr);
        assert_eq!(rd(&mut bus, 0, 0x10, 4), 0x1010_0000, "{what}");
    }
    // Onto the same device's other BAR.
    wr(&mut bus, 0, 0x20, 4, 0x1010_0000);
    assert_eq!(rd(&mut bus, 0, 0x20, 4), 0x1000_0008);
    // 64-bit BAR: below 4 GiB (the 32-bit window), RAM, ECAM, past the
    // 40-bit IPA space, onto another BAR, misaligned.
    let refused64: [(u64, &str); 7] = [
        (0x2000_0000, "into the 32-bit window"),
        (ram, "guest RAM"),
        (layout::PCI_ECAM.start().raw(), "the ECAM"),
        (layout::PCI_MMIO64.end().raw(), "past the window"),
        (0x80_0000_0000, "onto the 8 GiB BAR"),
        (0x82_0010_0000, "onto device 2's BAR"),
        (0x90_0008_0000, "misaligned for 1 MiB"),
    ];
    for (addr, what) in refused64 {
        wr(&mut bus, 0, 0x18, 4, addr & 0xFFFF_FFFF);
        wr(&mut bus, 0, 0x1C, 4, addr >> 32);
        assert_eq!(rd(&mut bus, 0, 0x18, 4), 0xC, "{what}");
        assert_eq!(rd(&mut bus, 0, 0x1C, 4), 0x82, "{what}");
    }
    // 8 GiB BAR not 8 GiB aligned.
    wr(&mut bus, 1, 0x10, 4, 0);
    wr(&mut bus, 1, 0x14, 4, 0x81);
    assert_eq!(rd(&mut bus, 1, 0x14, 4), 0x80);
    assert!(events(&mut bus).is_empty());
    assert_eq!(phys_bars(&fakes), phys, "the physical BARs never change");
    assert!(fakes.iter().all(|f| f.writes().is_empty()));
    // What decoding maps is the initial assignment.
    wr(&mut bus, 0, 0x04, 2, u64::from(CMD_MEMORY));
    let mut got: Vec<u64> = bus.mapped().map(|m| m.0.start().raw()).collect();
    got.sort_unstable();
    assert_eq!(got, [0x1000_0000, 0x1010_0000, 0x82_0000_0000]);
}

#[test]
fn a_held_low_half_is_checked_when_decoding_starts() {
    let (mut bus, _) = setup();
    // Legal with the current upper half: committed at MSE.
    wr(&mut bus, 0, 0x18, 4, 0x0040_0000);
    wr(&mut bus, 0, 0x04, 2, u64::from(CMD_MEMORY));
    assert_eq!(rd(&mut bus, 0, 0x18, 4), 0x0040_000C);
    assert!(bus.mapped().any(|m| m.0 == range(0x82_0040_0000, M)));
    // Illegal (onto device 2's BAR): put back.
    wr(&mut bus, 0, 0x04, 2, 0);
    wr(&mut bus, 0, 0x18, 4, 0x0010_0000);
    wr(&mut bus, 0, 0x04, 2, u64::from(CMD_MEMORY));
    assert_eq!(rd(&mut bus, 0, 0x18, 4), 0x0040_000C);
    assert!(bus.mapped().any(|m| m.0 == range(0x82_0040_0000, M)));
}

#[test]
fn byte_writes_to_a_bar_merge() {
    let (mut bus, _) = setup();
    // 0x1010_0000 -> 0x2010_0000 one byte at a time.
    wr(&mut bus, 0, 0x13, 1, 0x20);
    assert_eq!(rd(&mut bus, 0, 0x10, 4), 0x2010_0000);
    wr(&mut bus, 0, 0x12, 2, 0x2030);
    assert_eq!(rd(&mut bus, 0, 0x10, 4), 0x2030_0000);
}

#[test]
fn memory_space_enable_maps_and_unmaps() {
    // Item 30.
    let (mut bus, _) = setup();
    wr(&mut bus, 1, 0x04, 2, u64::from(CMD_MEMORY));
    assert_eq!(
        events(&mut bus),
        [
            BarEvent::Map {
                guest: range(0x80_0000_0000, 8 * G),
                host: PhysAddr::new(0x100_0000_0000),
                policy: BarPolicy::GuestChoice,
            },
            BarEvent::Map {
                guest: range(0x1010_4000, 4 * K),
                host: PhysAddr::new(0x1020_0000),
                policy: BarPolicy::Device,
            },
        ]
    );
    assert_eq!(bus.mapped().count(), 2);
    // Setting it again, or other bits, changes nothing.
    wr(
        &mut bus,
        1,
        0x04,
        2,
        u64::from(CMD_MEMORY | CMD_INTX_DISABLE),
    );
    assert!(events(&mut bus).is_empty());
    wr(&mut bus, 1, 0x04, 2, 0);
    assert_eq!(
        events(&mut bus),
        [
            BarEvent::Unmap {
                guest: range(0x80_0000_0000, 8 * G)
            },
            BarEvent::Unmap {
                guest: range(0x1010_4000, 4 * K)
            },
        ]
    );
    assert_eq!(
        bus.mapped().count(),
        0,
        "the BAR is unmapped: accesses abort"
    );
    wr(&mut bus, 1, 0x04, 2, 0);
    assert!(events(&mut bus).is_empty());
    // Relocated while off: mapped at the new place when turned on.
    wr(&mut bus, 1, 0x18, 4, 0x3000_0000);
    assert!(events(&mut bus).is_empty());
    wr(&mut bus, 1, 0x04, 1, u64::from(CMD_MEMORY));
    let ev = events(&mut bus);
    assert!(ev.contains(&BarEvent::Map {
        guest: range(0x3000_0000, 4 * K),
        host: PhysAddr::new(0x1020_0000),
        policy: BarPolicy::Device,
    }));
    assert_eq!(ev.len(), 2);
}

#[test]
fn an_unmap_cancels_a_queued_map() {
    let (mut bus, _) = setup();
    for _ in 0..1000 {
        wr(&mut bus, 0, 0x04, 2, u64::from(CMD_MEMORY));
        wr(&mut bus, 0, 0x04, 2, 0);
    }
    assert!(bus.events.is_empty());
    wr(&mut bus, 0, 0x04, 2, u64::from(CMD_MEMORY));
    let applied = events(&mut bus);
    assert_eq!(applied.len(), 3);
    for _ in 0..1000 {
        wr(&mut bus, 0, 0x04, 2, 0);
        wr(&mut bus, 0, 0x04, 2, u64::from(CMD_MEMORY));
    }
    assert_eq!(bus.events.len(), 6, "an unmap and a map per BAR");
    wr(&mut bus, 0, 0x04, 2, 0);
    let ev = events(&mut bus);
    assert_eq!(ev.len(), 3);
    assert!(ev.iter().all(|e| matches!(e, BarEvent::Unmap { .. })));
}

#[test]
fn bus_master_enable_is_refused_without_permission() {
    // Item 35.
    let (mut bus, fakes) = setup();
    for _ in 0..3 {
        wr(&mut bus, 0, 0x04, 2, u64::from(CMD_BUS_MASTER | CMD_MEMORY));
        assert_eq!(rd(&mut bus, 0, 0x04, 2), u64::from(CMD_MEMORY));
        wr(&mut bus, 2, 0x04, 1, u64::from(CMD_BUS_MASTER));
        assert_eq!(rd(&mut bus, 2, 0x04, 2), 0);
    }
    assert!(fakes[0].writes().iter().all(|w| w.2 & 4 == 0));
    assert!(fakes[2].writes().iter().all(|w| w.2 & 4 == 0));
    assert!(bus.devices[0].warned.bus_master && bus.devices[2].warned.bus_master);
    assert!(!bus.devices[1].warned.bus_master);
}

#[test]
fn rom_bar_reads_zero_and_ignores_writes() {
    // Item 29.
    let (mut bus, fakes) = setup();
    for v in [0xFFFF_FFFF, 0xFFFF_F801, 0x1, 0x2000_0001] {
        wr(&mut bus, 0, 0x30, 4, v);
        assert_eq!(rd(&mut bus, 0, 0x30, 4), 0);
    }
    wr(&mut bus, 0, 0x30, 1, 1);
    assert_eq!(rd(&mut bus, 0, 0x30, 4), 0);
    assert_eq!(fakes[0].reg(0x30), PHYS_ROM);
    assert!(fakes[0].writes().is_empty());
}

#[test]
fn malformed_accesses_are_bad_accesses() {
    // Item 31.
    let (mut bus, fakes) = setup();
    let cases: [(u64, u8); 9] = [
        (0x00, 8),
        (0x10, 8),
        (0x00, 3),
        (0x01, 2),
        (0x03, 2),
        (0x02, 4),
        (0x11, 4),
        (0xFFE, 4),
        (0x04, 0),
    ];
    for (reg, size) in cases {
        assert_eq!(bus.read(at(0, 0, 0, reg), size), Err(MmioError::BadAccess));
        assert_eq!(
            bus.write(at(0, 0, 0, reg), size, u64::MAX),
            Err(MmioError::BadAccess)
        );
    }
    assert!(fakes[0].writes().is_empty());
    assert_eq!(rd(&mut bus, 0, 0x04, 2), 0);
    assert_eq!(rd(&mut bus, 0, 0x10, 4), 0x1010_0000);
    // Through the MMIO bus: all ones, writes dropped.
    let mut mmio = MmioBus::new();
    mmio.register(layout::PCI_ECAM, Box::new(bus)).unwrap();
    let base = layout::PCI_ECAM.start().raw();
    let load = |size| BusAccess {
        size,
        write: false,
        value: 0,
        sign_extend: false,
        sixty_four: true,
    };
    assert_eq!(
        mmio.dispatch(VcpuId(0), Ipa::new(base), load(8), &mut Effects::new()),
        DispatchResult::Read(u64::MAX)
    );
    assert_eq!(
        mmio.dispatch(
            VcpuId(0),
            Ipa::new(base + 0x12),
            load(4),
            &mut Effects::new()
        ),
        DispatchResult::Read(0xFFFF_FFFF)
    );
    assert_eq!(
        mmio.dispatch(VcpuId(0), Ipa::new(base), load(4), &mut Effects::new()),
        DispatchResult::Read(0x1041_1AF4)
    );
    let store = BusAccess {
        size: 8,
        write: true,
        value: u64::MAX,
        sign_extend: false,
        sixty_four: true,
    };
    assert_eq!(
        mmio.dispatch(VcpuId(0), Ipa::new(base + 0x04), store, &mut Effects::new()),
        DispatchResult::WriteDone
    );
    assert!(fakes[0].writes().is_empty());
    // The last byte of the ECAM is a function the guest does not own.
    let last = layout::PCI_ECAM.end().raw() - 4;
    assert_eq!(
        mmio.dispatch(VcpuId(0), Ipa::new(last), load(4), &mut Effects::new()),
        DispatchResult::Read(0xFFFF_FFFF)
    );
}

#[test]
fn functions_the_guest_does_not_own_read_all_ones() {
    // Item 33.
    let (mut bus, fakes) = setup();
    let foreign = [
        at(0, 3, 0, 0),
        at(0, 31, 0, 0),
        at(0, 0, 1, 0),
        at(0, 1, 7, 0x10),
        at(1, 0, 0, 0),
        at(2, 0, 0, 0x04),
        at(255, 31, 7, 0xFFC),
    ];
    for off in foreign {
        assert_eq!(bus.read(off, 2), Ok(0xFFFF), "{off:#x}");
        assert_eq!(bus.read(off, 1), Ok(0xFF));
        assert_eq!(bus.read(off, 4), Ok(0xFFFF_FFFF));
        for reg in [0x04, 0x10, 0x14, 0x30] {
            assert_eq!(bus.write((off & !0xFFF) | reg, 4, 0xFFFF_FFFF), Ok(()));
        }
    }
    assert!(fakes.iter().all(|f| f.writes().is_empty()));
    assert!(events(&mut bus).is_empty());
    assert_eq!(bus.mapped().count(), 0);
}

fn one(bars: &[(Bar, BarPolicy)]) -> Vec<PassthroughDevice> {
    vec![device(1, bars, false)]
}

fn try_new(devs: &[PassthroughDevice]) -> Result<VirtualPciBus, VconfigError> {
    let phys = devs
        .iter()
        .map(|d| Box::new(Fake::new(d)) as Box<dyn PhysicalConfig + Send>)
        .collect();
    VirtualPciBus::new(devs, phys, WINDOWS)
}

#[test]
fn new_refuses_what_it_cannot_show() {
    let bdf = Bdf::new(1, 0, 0).unwrap();
    let bad = |index, reason| VconfigError::BadBar { bdf, index, reason };
    // The 32-bit window is 752 MiB: a 1 GiB 32-bit BAR cannot fit, nor can
    // two 512 MiB ones.
    assert_eq!(
        try_new(&one(&[bar(0, BarKind::Mem32, false, G, 0x4000_0000)])).err(),
        Some(VconfigError::WindowFull {
            bdf,
            index: 0,
            window: "32-bit"
        })
    );
    assert!(matches!(
        try_new(&one(&[
            bar(0, BarKind::Mem32, false, 512 * M, 0x4000_0000),
            bar(1, BarKind::Mem32, false, 512 * M, 0x6000_0000),
        ])),
        Err(VconfigError::WindowFull { .. })
    ));
    // The 64-bit window is 512 GiB.
    assert!(matches!(
        try_new(&one(&[bar(
            0,
            BarKind::Mem64,
            true,
            1 << 40,
            0x100_0000_0000
        )])),
        Err(VconfigError::WindowFull {
            window: "64-bit",
            ..
        })
    ));
    assert!(try_new(&one(&[bar(
        0,
        BarKind::Mem64,
        true,
        512 * G,
        0x100_0000_0000
    )]))
    .is_ok());
    assert_eq!(
        try_new(&one(&[bar(0, BarKind::Io, false, 256, 0x1000)])).err(),
        Some(bad(0, "I/O BARs cannot be passed through"))
    );
    assert_eq!(
        try_new(&one(&[bar(5, BarKind::Mem64, false, 4 * K, 0x1000)])).err(),
        Some(bad(5, "index out of range"))
    );
    assert_eq!(
        try_new(&one(&[bar(6, BarKind::Mem32, false, 4 * K, 0x1000)])).err(),
        Some(bad(6, "index out of range"))
    );
    assert_eq!(
        try_new(&one(&[
            bar(0, BarKind::Mem64, false, 4 * K, 0x1000),
            bar(1, BarKind::Mem32, false, 4 * K, 0x2000),
        ]))
        .err(),
        Some(bad(1, "shares a register with another BAR"))
    );
    assert_eq!(
        try_new(&one(&[bar(0, BarKind::Mem32, false, 3 * K, 0x1000)])).err(),
        Some(bad(0, "size is not a power of two"))
    );
    assert_eq!(
        try_new(&one(&[bar(0, BarKind::Mem32, false, 0, 0x1000)])).err(),
        Some(bad(0, "size is not a power of two"))
    );
    assert_eq!(
        try_new(&one(&[bar(0, BarKind::Mem32, false, 256, 0x1100)])).err(),
        Some(bad(0, "host address not page aligned"))
    );
    assert_eq!(
        try_new(&one(&[bar(
            0,
            BarKind::Mem64,
            false,
            8 * K,
            u64::MAX - 0xFFF
        )]))
        .err(),
        Some(bad(0, "host range wraps"))
    );
    let mut bridge = one(&[]);
    bridge[0].header_type = 0x81;
    assert_eq!(
        try_new(&bridge).err(),
        Some(VconfigError::NotEndpoint {
            bdf,
            header_type: 0x81
        })
    );
    let twice = [device(1, &[], false), device(1, &[], false)];
    assert_eq!(try_new(&twice).err(), Some(VconfigError::Duplicate(bdf)));
    let many: Vec<PassthroughDevice> = (0..33).map(|b| device(b, &[], false)).collect();
    assert_eq!(try_new(&many).err(), Some(VconfigError::TooManyDevices(33)));
    assert!(try_new(&many[..32]).is_ok());
    let devs = devices();
    assert_eq!(
        VirtualPciBus::new(&devs, Vec::new(), WINDOWS).err(),
        Some(VconfigError::PhysCount {
            devices: 3,
            phys: 0
        })
    );
    // Every error says what is wrong.
    let msg = alloc::format!("{}", bad(2, "size is not a power of two"));
    assert_eq!(msg, "PCI device 01:00.0 BAR 2: size is not a power of two");
}

#[test]
fn an_empty_bus_has_no_devices() {
    let mut bus = VirtualPciBus::new(&[], Vec::new(), WINDOWS).unwrap();
    assert_eq!(bus.read(0, 2), Ok(0xFFFF));
    assert_eq!(bus.write(0x04, 2, 0xFFFF), Ok(()));
    assert_eq!(bus.mapped().count(), 0);
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut s = self.0;
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        self.0 = s;
        s
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The size and kind of the BAR whose host address is `host`.
fn bar_at_host(devs: &[PassthroughDevice], host: PhysAddr) -> (BarKind, u64) {
    devs.iter()
        .flat_map(|d| d.bars.iter().flatten())
        .find(|(b, _)| b.host_addr == host)
        .map(|(b, _)| (b.kind, b.size.max(PAGE_SIZE)))
        .expect("a mapping of a host range no BAR has")
}

type Mappings = BTreeMap<u64, (IpaRange, PhysAddr, BarPolicy)>;

fn check_invariants(
    bus: &mut VirtualPciBus,
    devs: &[PassthroughDevice],
    fakes: &[Fake],
    phys: &[[u32; 7]],
    replayed: Option<&Mappings>,
) {
    assert_eq!(phys_bars(fakes), phys, "a physical BAR changed");
    for (f, d) in fakes.iter().zip(devs) {
        for (off, size, value) in core::mem::take(&mut f.0.lock().writes) {
            assert_eq!(
                (off, size),
                (0x04, 2),
                "only the command register is written"
            );
            assert_ne!(value & u32::from(CMD_INTX_DISABLE), 0);
            assert_eq!(value & u32::from(CMD_IO), 0);
            if !d.bus_master_allowed {
                assert_eq!(value & u32::from(CMD_BUS_MASTER), 0);
            }
        }
    }
    let mapped: Vec<(IpaRange, PhysAddr, BarPolicy)> = bus.mapped().collect();
    for (i, (r, host, policy)) in mapped.iter().enumerate() {
        let (kind, size) = bar_at_host(devs, *host);
        assert_eq!(r.size(), size);
        assert!(r.start().is_aligned(size), "{r:?} misaligned");
        assert!(
            window_for(kind).contains_range(r),
            "{r:?} outside its window"
        );
        let want = devs
            .iter()
            .flat_map(|d| d.bars.iter().flatten())
            .find(|(b, _)| b.host_addr == *host)
            .map(|(_, p)| *p);
        assert_eq!(Some(*policy), want);
        for (other, _, _) in &mapped[i + 1..] {
            assert!(!r.overlaps(other), "{r:?} overlaps {other:?}");
        }
    }
    // What the guest reads in the BARs of a decoding device is what is mapped.
    let mut expected = 0;
    for (d, dev) in devs.iter().enumerate() {
        let cmd = bus.read(at(0, d as u64, 0, 0x04), 2).unwrap() as u16;
        if cmd & CMD_MEMORY == 0 {
            continue;
        }
        for (b, _) in dev.bars.iter().flatten() {
            expected += 1;
            let reg = 0x10 + 4 * u64::from(b.index);
            let mut addr = bus.read(at(0, d as u64, 0, reg), 4).unwrap() & !0xF;
            if b.kind == BarKind::Mem64 {
                addr |= bus.read(at(0, d as u64, 0, reg + 4), 4).unwrap() << 32;
            }
            assert!(
                mapped
                    .iter()
                    .any(|(r, h, _)| r.start().raw() == addr && *h == b.host_addr),
                "BAR {} of device {d} reads {addr:#x}, not where it is mapped",
                b.index
            );
        }
    }
    assert_eq!(mapped.len(), expected);
    if let Some(replayed) = replayed {
        let now: Mappings = mapped.iter().map(|m| (m.0.start().raw(), *m)).collect();
        assert_eq!(&now, replayed, "the events replayed differ from mapped()");
    }
}

/// Replays the queued events into `set`; returns how many maps there were.
fn replay(bus: &mut VirtualPciBus, set: &mut Mappings) -> usize {
    let mut maps = 0;
    for e in bus.take_events() {
        match e {
            BarEvent::Map {
                guest,
                host,
                policy,
            } => {
                assert!(
                    set.values().all(|(r, _, _)| !r.overlaps(&guest)),
                    "map of {guest:?} over a live mapping"
                );
                set.insert(guest.start().raw(), (guest, host, policy));
                maps += 1;
            }
            BarEvent::Unmap { guest } => {
                let old = set.remove(&guest.start().raw());
                assert_eq!(old.map(|o| o.0), Some(guest), "unmap of what is not mapped");
            }
        }
    }
    maps
}

/// A random address for a BAR register of `kind`: somewhere in a window
/// (often the right one), aligned to a random power of two.
fn random_addr(rng: &mut Rng) -> u64 {
    let window = match rng.below(8) {
        0..=3 => layout::PCI_MMIO64,
        4..=6 => layout::PCI_MMIO32,
        _ => IpaRange::new(Ipa::new(0), 1 << 41).unwrap(),
    };
    let align = 1u64 << (8 + rng.below(27));
    let addr = window.start().raw() + rng.below(window.size());
    addr & !(align - 1)
}

#[test]
fn random_accesses_keep_the_invariants() {
    let devs = devices();
    let (mut bus, fakes) = build(&devs);
    let phys = phys_bars(&fakes);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut set = Mappings::new();
    let sizes = [1u8, 2, 4, 4, 4, 8, 3];
    let (mut maps, mut moved) = (0, 0);
    let mut placed: Vec<u64> = bus.mapped().map(|m| m.0.start().raw()).collect();
    for step in 0..100_000 {
        let value = rng.next();
        match rng.below(10) {
            0..=2 => {
                // Anywhere in the ECAM, any size.
                let bus_no = [0, 0, 0, 1, 255][rng.below(5) as usize];
                let dev = rng.below(5);
                let func = [0, 0, 0, 1, 7][rng.below(5) as usize];
                let reg = rng.below(0x1000);
                let off = at(bus_no, dev, func, reg);
                let size = sizes[rng.below(sizes.len() as u64) as usize];
                if rng.next() & 1 == 0 {
                    let _ = bus.read(off, size);
                } else {
                    let _ = bus.write(off, size, value);
                }
            }
            3..=5 => {
                // A BAR register of one of the devices.
                let dev = rng.below(3);
                let reg = 0x10 + 4 * rng.below(6);
                let addr = random_addr(&mut rng);
                let v = match rng.below(5) {
                    0 => 0xFFFF_FFFF,
                    1 => addr & 0xFFFF_FFFF,
                    2 => addr >> 32,
                    3 => bus.read(at(0, dev, 0, reg), 4).unwrap(),
                    _ => value,
                };
                if rng.below(4) == 0 {
                    // A whole 64-bit address, low then high, checked between.
                    wr(&mut bus, dev, reg, 4, addr & 0xFFFF_FFFF);
                    check_invariants(&mut bus, &devs, &fakes, &phys, None);
                    let _ = bus.write(at(0, dev, 0, reg + 4), 4, addr >> 32);
                } else {
                    let size = [1u8, 2, 4, 4][rng.below(4) as usize];
                    let off = reg + (rng.below(4) & !(u64::from(size) - 1));
                    wr(&mut bus, dev, off, size, v >> (8 * (off & 3)));
                }
            }
            6..=8 => {
                let dev = rng.below(3);
                let v = match rng.below(5) {
                    0 => 0,
                    1 => u64::from(CMD_MEMORY),
                    2 => u64::from(CMD_MEMORY | CMD_BUS_MASTER),
                    3 => u64::from(CMD_MEMORY | CMD_INTX_DISABLE),
                    _ => value,
                };
                let size = [1u8, 2, 4][rng.below(3) as usize];
                wr(&mut bus, dev, 0x04, size, v);
            }
            _ => {
                let dev = rng.below(4);
                let _ = bus.read(at(0, dev, 0, 0x10 + 4 * rng.below(6)), 4);
            }
        }
        assert!(
            bus.events.len() <= 2 * 7,
            "the queue is bounded at step {step}"
        );
        for (r, _, _) in bus.mapped() {
            if !placed.contains(&r.start().raw()) {
                placed.push(r.start().raw());
                moved += 1;
            }
        }
        if rng.below(10) != 0 {
            maps += replay(&mut bus, &mut set);
            check_invariants(&mut bus, &devs, &fakes, &phys, Some(&set));
        } else {
            check_invariants(&mut bus, &devs, &fakes, &phys, None);
        }
    }
    replay(&mut bus, &mut set);
    check_invariants(&mut bus, &devs, &fakes, &phys, Some(&set));
    // The sequence did exercise mapping and relocation.
    assert!(maps > 1000, "{maps} maps");
    assert!(moved > 50, "{moved} BARs mapped at new places");
}

#[test]
fn a_64_bit_bar_written_high_half_first_still_lands() {
    let (mut bus, _) = setup();
    // High first: (0x90, old low) is legal and committed; the low half is
    // then held and committed when decoding starts.
    wr(&mut bus, 2, 0x14, 4, 0x90);
    assert_eq!(rd(&mut bus, 2, 0x14, 4), 0x90);
    wr(&mut bus, 2, 0x10, 4, 0x0004_0000);
    wr(&mut bus, 2, 0x04, 2, u64::from(CMD_MEMORY));
    assert_eq!(
        events(&mut bus),
        [
            BarEvent::Map {
                guest: range(0x90_0004_0000, 64 * K),
                host: PhysAddr::new(0x80_0010_0000),
                policy: BarPolicy::Device,
            },
            BarEvent::Map {
                guest: range(0x1010_5000, 4 * K),
                host: PhysAddr::new(0x1020_1000),
                policy: BarPolicy::Device,
            },
        ]
    );
    // Half-word writes to the upper half merge like any other.
    wr(&mut bus, 2, 0x04, 2, 0);
    wr(&mut bus, 2, 0x16, 2, 0x0001);
    assert_eq!(
        rd(&mut bus, 2, 0x14, 4),
        0x90,
        "0x1_0000_0090 is past the window"
    );
    wr(&mut bus, 2, 0x14, 2, 0x00A0);
    assert_eq!(rd(&mut bus, 2, 0x14, 4), 0xA0);
}

#[test]
fn refusals_are_logged_once_per_device() {
    let (mut bus, _) = setup();
    wr(&mut bus, 0, 0x10, 4, 0x4000_0000);
    wr(&mut bus, 0, 0x10, 4, 0x4000_0000);
    assert!(bus.devices[0].warned.bar_refused);
    assert!(!bus.devices[1].warned.bar_refused);
    wr(&mut bus, 1, 0x04, 2, u64::from(CMD_MEMORY));
    wr(&mut bus, 1, 0x18, 4, 0x3000_0000);
    assert!(bus.devices[1].warned.bar_while_enabled);
    assert!(!bus.devices[0].warned.bar_while_enabled);
}
