use super::*;
use crate::pci::ecam::fake::{FakeEcam, FakeFn};
use crate::pci::types::BarKind;
use crate::platform::PciWindow;

const MIB: u64 = 1 << 20;

fn win(space: PciSpace, prefetchable: bool, pci: u64, cpu: u64, size: u64) -> PciWindow {
    PciWindow {
        space,
        prefetchable,
        pci_addr: pci,
        cpu: PhysRange::new(PhysAddr::new(cpu), size).unwrap(),
    }
}

/// QEMU virt's host bridge (hw/arm/virt.c, highmem): I/O, 32-bit and 64-bit
/// non-prefetchable windows, ECAM for buses 0-255.
fn virt_bridge() -> PciHostBridge<'static> {
    let mut b = PciHostBridge {
        node: "pcie@10000000",
        ecam: PhysRange::new(PhysAddr::new(0x40_1000_0000), 256 * MIB).unwrap(),
        bus_start: 0,
        bus_end: 255,
        dma_coherent: true,
        ..Default::default()
    };
    b.windows
        .push(win(PciSpace::Io, false, 0, 0x3eff_0000, 0x1_0000))
        .unwrap();
    b.windows
        .push(win(
            PciSpace::Mem32,
            false,
            0x1000_0000,
            0x1000_0000,
            0x2eff_0000,
        ))
        .unwrap();
    b.windows
        .push(win(
            PciSpace::Mem64,
            false,
            0x80_0000_0000,
            0x80_0000_0000,
            0x80_0000_0000,
        ))
        .unwrap();
    b
}

fn ram_1g() -> RegionList {
    RegionList::from_ranges(&[PhysRange::new(PhysAddr::new(0x4000_0000), 1 << 30).unwrap()])
        .unwrap()
}

/// The devices of
/// `-device ivshmem-plain -device bochs-display -device pcie-root-port,id=rp0
/// -device pci-testdev,bus=rp0 -nic none` as QEMU 10.0.2 presents them
/// (read through its ECAM with the qtest interface): IDs, classes, BAR kinds
/// and sizes, and capability lists.
fn qemu_virt_devices() -> FakeEcam {
    let mut e = FakeEcam::new(0);
    e.add(None, FakeFn::endpoint(0, 0, 0x1b36, 0x0008, 0x0600_0000));
    e.add(
        None,
        FakeFn::endpoint(1, 0, 0x1af4, 0x1110, 0x0500_0001)
            .bar32(0, 256, false)
            .bar64(2, 64 * MIB, true),
    );
    e.add(
        None,
        FakeFn::endpoint(2, 0, 0x1234, 0x1111, 0x0380_0002)
            .bar32(0, 16 << 20, true)
            .bar32(2, 4096, false)
            .rom(32 << 10)
            .cap(0x10, 0x80),
    );
    let rp = e.add(
        None,
        FakeFn::bridge(3, 0, 0x1b36, 0x000c)
            .bar32(0, 4096, false)
            .cap(0x10, 0x54)
            .cap(0x11, 0x48)
            .cap(0x0d, 0x40),
    );
    e.add(
        Some(rp),
        FakeFn::endpoint(0, 0, 0x1b36, 0x0005, 0x00ff_0000)
            .bar32(0, 4096, false)
            .io_bar(1, 256),
    );
    e
}

fn bdf(b: u8, d: u8, f: u8) -> Bdf {
    Bdf::new(b, d, f).unwrap()
}

fn bar(f: &HostFunction, i: usize) -> HostBar {
    f.bars[i].unwrap()
}

/// Everything assigned obeys the rules, and the hardware holds it.
fn check_invariants(host: &HostPci, bridge: &PciHostBridge, e: &mut FakeEcam) {
    let wins = host_windows(bridge);
    let mut all: Vec<(u64, u64, Bdf)> = Vec::new();
    for f in &host.devices {
        for hb in f.assigned_bars() {
            let b = hb.bar;
            assert!(b.kind != BarKind::Io);
            assert_eq!(
                b.pci_addr % b.size,
                0,
                "{} BAR{} misaligned",
                f.bdf,
                b.index
            );
            let end = b.pci_addr + b.size;
            if b.kind == BarKind::Mem32 {
                assert!(end <= FOUR_GIB, "{} BAR{} above 4 GiB", f.bdf, b.index);
            }
            let w = wins
                .iter()
                .find(|w| b.pci_addr >= w.pci_start && end <= w.pci_end)
                .unwrap_or_else(|| panic!("{} BAR{} outside windows", f.bdf, b.index));
            assert!(
                b.prefetchable || !w.prefetchable,
                "non-prefetchable in prefetchable"
            );
            assert_eq!(b.host_addr.raw(), w.cpu_start + (b.pci_addr - w.pci_start));
            // Behind every bridge above, inside the matching window.
            let mut up = f.parent;
            while let Some(p) = up {
                let br = host.devices[p].bridge.unwrap();
                let inside =
                    |r: Option<(u64, u64)>| r.is_some_and(|(s, e)| b.pci_addr >= s && end <= e);
                assert!(
                    inside(br.mem) || (b.prefetchable && inside(br.pref)),
                    "{} BAR{} not inside bridge {}",
                    f.bdf,
                    b.index,
                    host.devices[p].bdf
                );
                up = host.devices[p].parent;
            }
            // The register holds it.
            let lo = e.read32(f.bdf, regs::BAR0 + 4 * u16::from(b.index));
            let mut addr = u64::from(lo & !0xf);
            if b.kind == BarKind::Mem64 {
                addr |= u64::from(e.read32(f.bdf, regs::BAR0 + 4 * u16::from(b.index) + 4)) << 32;
            }
            assert_eq!(addr, b.pci_addr);
            all.push((b.pci_addr, end, f.bdf));
        }
        if let Some(br) = f.bridge {
            for (s, e2) in br.mem.into_iter() {
                assert_eq!(s % MIB, 0);
                assert_eq!(e2 % MIB, 0);
                assert!(e2 <= FOUR_GIB);
            }
            for (s, e2) in br.pref.into_iter() {
                assert_eq!(s % MIB, 0);
                assert_eq!(e2 % MIB, 0);
            }
        }
    }
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert!(a.1 <= b.0 || b.1 <= a.0, "{a:x?} overlaps {b:x?}");
        }
    }
    assert!(e.decode_violations.is_empty(), "{:?}", e.decode_violations);
}

#[test]
fn qemu_virt_ivshmem_bochs_root_port_testdev() {
    let mut e = qemu_virt_devices();
    let bridge = virt_bridge();
    let host = probe(&mut e, &bridge, &ram_1g());
    check_invariants(&host, &bridge, &mut e);
    let ids: Vec<_> = host
        .devices
        .iter()
        .map(|f| (f.bdf, f.vendor_id, f.device_id))
        .collect();
    assert_eq!(
        ids,
        [
            (bdf(0, 0, 0), 0x1b36, 0x0008),
            (bdf(0, 1, 0), 0x1af4, 0x1110),
            (bdf(0, 2, 0), 0x1234, 0x1111),
            (bdf(0, 3, 0), 0x1b36, 0x000c),
            (bdf(1, 0, 0), 0x1b36, 0x0005),
        ]
    );
    let ivshmem = &host.devices[1];
    assert_eq!(ivshmem.class_rev, 0x0500_0001);
    let b0 = bar(ivshmem, 0);
    assert_eq!(
        (b0.bar.kind, b0.bar.size, b0.bar.prefetchable),
        (BarKind::Mem32, 256, false)
    );
    let b2 = bar(ivshmem, 2);
    assert_eq!(
        (b2.bar.kind, b2.bar.size, b2.bar.prefetchable),
        (BarKind::Mem64, 64 * MIB, true)
    );
    // 64-bit prefetchable goes high, into the 64-bit window.
    assert_eq!(b2.bar.host_addr.raw(), 0x80_0000_0000);
    assert!(ivshmem.bars[3].is_none());
    let bochs = &host.devices[2];
    assert_eq!(bar(bochs, 0).bar.size, 16 * MIB);
    assert!(bar(bochs, 0).bar.prefetchable);
    assert!(bar(bochs, 0).bar.host_addr.raw() < FOUR_GIB);
    assert_eq!(bar(bochs, 2).bar.size, 4096);
    assert_eq!(bochs.rom_size, 32 << 10);
    assert_eq!(bochs.caps, [(0x10, 0x80)]);
    let rp = &host.devices[3];
    assert!(rp.is_bridge);
    assert_eq!(rp.caps, [(0x10, 0x54), (0x11, 0x48), (0x0d, 0x40)]);
    let br = rp.bridge.unwrap();
    assert_eq!((br.secondary, br.subordinate), (1, 1));
    assert!(br.has_pref && br.pref64);
    assert_eq!(br.mem.map(|(s, e)| e - s), Some(MIB));
    assert_eq!(br.pref, None);
    let testdev = &host.devices[4];
    assert_eq!(testdev.parent, Some(3));
    assert_eq!(bar(testdev, 1).bar.kind, BarKind::Io);
    assert_eq!(bar(testdev, 1).bar.size, 256);
    assert!(!bar(testdev, 1).assigned);
    for f in &host.devices {
        assert_eq!(f.refusal, None, "{}", f.bdf);
    }
    // Bridge routes and decodes; its registers hold the window.
    assert_eq!(e.read8(bdf(0, 3, 0), regs::SECONDARY_BUS), 1);
    assert_eq!(e.read8(bdf(0, 3, 0), regs::SUBORDINATE_BUS), 1);
    let cmd = e.read16(bdf(0, 3, 0), regs::COMMAND);
    assert_eq!(cmd & 6, 6);
}

#[test]
fn bar_sizing_every_kind_restores_registers() {
    let mut e = FakeEcam::new(0);
    e.add(
        None,
        FakeFn::endpoint(0, 0, 0x1111, 0x2222, 0)
            .bar32(0, 4096, false)
            .bar32(1, 1 << 20, true)
            .bar64(2, 8 << 30, true)
            .io_bar(4, 32)
            .bar64(5, 4096, false) // 64-bit as the last BAR: malformed
            .rom(64 << 10)
            .command(regs::CMD_MEMORY | regs::CMD_IO),
    );
    let bridge = virt_bridge();
    let host = probe(&mut e, &bridge, &RegionList::new());
    let f = &host.devices[0];
    assert_eq!(bar(f, 0).bar.size, 4096);
    assert_eq!(bar(f, 1).bar.size, 1 << 20);
    assert!(bar(f, 1).bar.prefetchable);
    assert_eq!(bar(f, 2).bar.kind, BarKind::Mem64);
    assert_eq!(bar(f, 2).bar.size, 8 << 30);
    assert!(f.bars[3].is_none());
    assert_eq!(bar(f, 4).bar.kind, BarKind::Io);
    assert_eq!(bar(f, 4).bar.size, 32);
    assert!(f.bars[5].is_none());
    assert_eq!(f.rom_size, 64 << 10);
    assert!(f.refusal.as_deref().unwrap().contains("BAR5"));
    assert!(e.decode_violations.is_empty());
    assert_eq!(
        e.read16(bdf(0, 0, 0), regs::COMMAND),
        regs::CMD_MEMORY | regs::CMD_IO
    );
    assert_eq!(e.read32(bdf(0, 0, 0), regs::ROM_BAR), 0);
}

#[test]
fn capability_walks_are_bounded() {
    let mut e = FakeEcam::new(0);
    e.add(
        None,
        FakeFn::endpoint(0, 0, 1, 1, 0)
            .cap(0x01, 0x40)
            .cap(0x05, 0x50)
            .cap_next(0x50, 0x40),
    );
    e.add(None, FakeFn::endpoint(1, 0, 1, 1, 0).cap_ptr(0xff));
    e.add(
        None,
        FakeFn::endpoint(2, 0, 1, 1, 0)
            .cap(0x01, 0x40)
            .cap_next(0x40, 0x20),
    );
    e.add(
        None,
        FakeFn::endpoint(3, 0, 1, 1, 0)
            .cap(0x01, 0x40)
            .cap_next(0x40, 0x4e),
    );
    let mut long = FakeFn::endpoint(4, 0, 1, 1, 0);
    for off in (0x40..0x100).step_by(4) {
        long = long.cap(0x09, off);
    }
    let long = long.cap_next(0xfc, 0x40);
    e.add(None, long);
    assert_eq!(walk_caps(&mut e, bdf(0, 0, 0)), [(1, 0x40), (5, 0x50)]);
    assert_eq!(walk_caps(&mut e, bdf(0, 1, 0)), []);
    assert_eq!(walk_caps(&mut e, bdf(0, 2, 0)), [(1, 0x40)]);
    assert_eq!(walk_caps(&mut e, bdf(0, 3, 0)), [(1, 0x40)]);
    assert_eq!(walk_caps(&mut e, bdf(0, 4, 0)).len(), MAX_CAPS);
    // An absent function reads all ones: no list.
    assert_eq!(walk_caps(&mut e, bdf(0, 9, 0)), []);
}

#[test]
fn multifunction_bit_decides_function_scan() {
    let mut e = FakeEcam::new(0);
    e.add(None, FakeFn::endpoint(0, 0, 1, 1, 0).multifunction());
    e.add(None, FakeFn::endpoint(0, 5, 1, 2, 0));
    e.add(None, FakeFn::endpoint(1, 0, 1, 3, 0));
    e.add(None, FakeFn::endpoint(1, 1, 1, 4, 0)); // ghost: fn0 not multi-function
    let host = probe(&mut e, &virt_bridge(), &RegionList::new());
    let found: Vec<_> = host.devices.iter().map(|f| f.bdf).collect();
    assert_eq!(found, [bdf(0, 0, 0), bdf(0, 0, 5), bdf(0, 1, 0)]);
}

#[test]
fn firmware_assignment_kept_when_valid() {
    let mut e = FakeEcam::new(0);
    e.add(
        None,
        FakeFn::endpoint(0, 0, 1, 1, 0)
            .bar32(0, 1 << 16, false)
            .at(0, 0x2000_0000),
    );
    e.add(
        None,
        FakeFn::endpoint(1, 0, 1, 1, 0)
            .bar64(0, 1 << 20, true)
            .at(0, 0x80_1000_0000),
    );
    let bridge = virt_bridge();
    let host = probe(&mut e, &bridge, &RegionList::new());
    check_invariants(&host, &bridge, &mut e);
    assert_eq!(bar(&host.devices[0], 0).bar.pci_addr, 0x2000_0000);
    assert!(bar(&host.devices[0], 0).firmware_kept);
    assert_eq!(bar(&host.devices[1], 0).bar.pci_addr, 0x80_1000_0000);
    assert!(bar(&host.devices[1], 0).firmware_kept);
}

#[test]
fn firmware_assignment_replaced_when_invalid() {
    let mut e = FakeEcam::new(0);
    // Outside every window.
    e.add(
        None,
        FakeFn::endpoint(0, 0, 1, 1, 0)
            .bar32(0, 1 << 16, false)
            .at(0, 0x0800_0000),
    );
    // Misaligned (a 64 KiB BAR at a 32 KiB boundary cannot even be written:
    // use a 64-bit BAR whose upper half puts it outside the windows).
    e.add(
        None,
        FakeFn::endpoint(1, 0, 1, 1, 0)
            .bar64(0, 1 << 20, false)
            .at(0, 0x1_0010_0000),
    );
    // Overlapping the first valid one.
    e.add(
        None,
        FakeFn::endpoint(2, 0, 1, 1, 0)
            .bar32(0, 1 << 16, false)
            .at(0, 0x2000_0000),
    );
    e.add(
        None,
        FakeFn::endpoint(3, 0, 1, 1, 0)
            .bar32(0, 1 << 20, false)
            .at(0, 0x2000_0000),
    );
    let bridge = virt_bridge();
    let host = probe(&mut e, &bridge, &RegionList::new());
    check_invariants(&host, &bridge, &mut e);
    assert!(!bar(&host.devices[0], 0).firmware_kept);
    assert!(!bar(&host.devices[1], 0).firmware_kept);
    assert!(bar(&host.devices[2], 0).firmware_kept);
    assert!(!bar(&host.devices[3], 0).firmware_kept);
    assert_ne!(bar(&host.devices[3], 0).bar.pci_addr, 0x2000_0000);
    for f in &host.devices {
        assert_eq!(f.refusal, None);
    }
}

#[test]
fn non_prefetchable_never_in_prefetchable_window_and_32_bit_below_4g() {
    let mut b = virt_bridge();
    // Replace the windows: a prefetchable 64-bit window high, a small
    // non-prefetchable one low.
    b.windows = Default::default();
    b.windows
        .push(win(
            PciSpace::Mem32,
            false,
            0x1000_0000,
            0x1000_0000,
            16 * MIB,
        ))
        .unwrap();
    b.windows
        .push(win(
            PciSpace::Mem64,
            true,
            0x100_0000_0000,
            0x100_0000_0000,
            1 << 36,
        ))
        .unwrap();
    let mut e = FakeEcam::new(0);
    e.add(
        None,
        FakeFn::endpoint(0, 0, 1, 1, 0).bar64(0, 4 * MIB, false),
    );
    e.add(
        None,
        FakeFn::endpoint(1, 0, 1, 1, 0).bar64(0, 1 << 30, true),
    );
    e.add(
        None,
        FakeFn::endpoint(2, 0, 1, 1, 0).bar32(0, 1 << 20, true),
    );
    e.add(
        None,
        FakeFn::endpoint(3, 0, 1, 1, 0).bar64(0, 64 * MIB, false),
    ); // fits nowhere
    let host = probe(&mut e, &b, &RegionList::new());
    check_invariants(&host, &b, &mut e);
    assert!(bar(&host.devices[0], 0).bar.pci_addr < FOUR_GIB);
    assert!(bar(&host.devices[1], 0).bar.pci_addr >= 0x100_0000_0000);
    assert!(bar(&host.devices[2], 0).bar.pci_addr < FOUR_GIB);
    assert!(!bar(&host.devices[3], 0).assigned);
    assert!(host.devices[3]
        .refusal
        .as_deref()
        .unwrap()
        .contains("fits in no"));
    assert_eq!(e.read16(bdf(0, 3, 0), regs::COMMAND) & regs::CMD_MEMORY, 0);
}

#[test]
fn bridges_cover_children_nested() {
    let mut e = FakeEcam::new(0);
    let top = e.add(None, FakeFn::bridge(1, 0, 0x1b36, 0xc));
    e.add(
        Some(top),
        FakeFn::endpoint(0, 0, 1, 1, 0)
            .bar32(0, 2 << 20, false)
            .bar64(2, 256 * MIB, true),
    );
    let mid = e.add(
        Some(top),
        FakeFn::bridge(1, 0, 0x1b36, 0xc).pref_window_32(),
    );
    e.add(
        Some(mid),
        FakeFn::endpoint(0, 0, 1, 2, 0)
            .bar32(0, 4096, true)
            .bar32(1, 4096, false),
    );
    let low = e.add(
        Some(mid),
        FakeFn::bridge(2, 0, 0x1b36, 0xc).without_pref_window(),
    );
    e.add(
        Some(low),
        FakeFn::endpoint(0, 0, 1, 3, 0).bar64(0, 8 * MIB, true),
    );
    e.add(None, FakeFn::endpoint(2, 0, 1, 4, 0).bar32(0, 4096, false));
    let bridge = virt_bridge();
    let host = probe(&mut e, &bridge, &RegionList::new());
    check_invariants(&host, &bridge, &mut e);
    let buses: Vec<_> = host.devices.iter().map(|f| f.bdf).collect();
    assert_eq!(
        buses,
        [
            bdf(0, 1, 0),
            bdf(1, 0, 0),
            bdf(1, 1, 0),
            bdf(2, 0, 0),
            bdf(2, 2, 0),
            bdf(3, 0, 0),
            bdf(0, 2, 0)
        ]
    );
    let b = |i: usize| host.devices[i].bridge.unwrap();
    assert_eq!((b(0).secondary, b(0).subordinate), (1, 3));
    assert_eq!((b(2).secondary, b(2).subordinate), (2, 3));
    assert_eq!((b(4).secondary, b(4).subordinate), (3, 3));
    assert!(b(2).pref.unwrap().1 <= FOUR_GIB);
    for f in &host.devices {
        assert_eq!(f.refusal, None, "{}", f.bdf);
    }
}

#[test]
fn bus_numbers_run_out() {
    let mut e = FakeEcam::new(0);
    let a = e.add(None, FakeFn::bridge(1, 0, 0x1b36, 0xc));
    let b = e.add(Some(a), FakeFn::bridge(0, 0, 0x1b36, 0xc));
    e.add(
        Some(b),
        FakeFn::endpoint(0, 0, 1, 1, 0).bar32(0, 4096, false),
    );
    let mut bridge = virt_bridge();
    bridge.bus_end = 1;
    let host = probe(&mut e, &bridge, &RegionList::new());
    assert_eq!(host.devices.len(), 2);
    assert_eq!(host.devices[1].bridge.unwrap().secondary, 0);
}

#[test]
fn ram_overlap_and_page_sharing_refused() {
    let mut e = FakeEcam::new(0);
    // Firmware packed two devices' small BARs into one page.
    e.add(
        None,
        FakeFn::endpoint(0, 0, 1, 1, 0)
            .bar32(0, 256, false)
            .at(0, 0x1000_0000),
    );
    e.add(
        None,
        FakeFn::endpoint(1, 0, 1, 1, 0)
            .bar32(0, 256, false)
            .at(0, 0x1000_0100),
    );
    e.add(None, FakeFn::endpoint(2, 0, 1, 1, 0).bar32(0, 256, false));
    e.add(
        None,
        FakeFn::endpoint(3, 0, 1, 1, 0)
            .bar64(0, 1 << 20, false)
            .at(0, 0x80_0000_0000),
    );
    let bridge = virt_bridge();
    // RAM (wrongly) at the start of the 64-bit window.
    let ram =
        RegionList::from_ranges(&[PhysRange::new(PhysAddr::new(0x80_0000_0000), MIB).unwrap()])
            .unwrap();
    let host = probe(&mut e, &bridge, &ram);
    check_invariants(&host, &bridge, &mut e);
    assert!(host.devices[0]
        .refusal
        .as_deref()
        .unwrap()
        .contains("shares a 4 KiB page with BAR0 of 00:01.0"));
    assert!(host.devices[1]
        .refusal
        .as_deref()
        .unwrap()
        .contains("00:00.0"));
    // Fresh placements never share a page.
    assert_eq!(host.devices[2].refusal, None);
    assert!(host.devices[3]
        .refusal
        .as_deref()
        .unwrap()
        .contains("overlaps host RAM"));
}

/// Tiny xorshift so the randomized test needs no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_endpoint(r: &mut Rng, dev: u8) -> FakeFn {
    let mut f = FakeFn::endpoint(dev, 0, 0x1234, r.below(0x10000) as u16, 0);
    let mut i = 0u16;
    while i < 6 {
        match r.below(5) {
            0 => i += 1,
            1 => {
                f = f.bar32(i, 1 << (4 + r.below(20)), r.below(2) == 0);
                if r.below(3) == 0 {
                    f = f.at(i, r.below(1 << 32) & !0xfff);
                }
                i += 1;
            }
            2 if i < 5 => {
                f = f.bar64(i, 1 << (4 + r.below(30)), r.below(2) == 0);
                if r.below(3) == 0 {
                    f = f.at(i, r.next() & 0xff_ffff_f000);
                }
                i += 2;
            }
            3 => {
                f = f.io_bar(i, 1 << (2 + r.below(6)));
                i += 1;
            }
            _ => i += 1,
        }
    }
    f.command(if r.below(2) == 0 { regs::CMD_MEMORY } else { 0 })
}

fn add_random_bus(e: &mut FakeEcam, r: &mut Rng, parent: Option<usize>, depth: u32) {
    let n = 1 + r.below(4);
    for d in 0..n as u8 {
        if depth < 3 && r.below(4) == 0 {
            let mut br = FakeFn::bridge(d, 0, 0x1b36, 0xc);
            match r.below(3) {
                0 => br = br.without_pref_window(),
                1 => br = br.pref_window_32(),
                _ => {}
            }
            let idx = e.add(parent, br);
            add_random_bus(e, r, Some(idx), depth + 1);
        } else {
            e.add(parent, random_endpoint(r, d));
        }
    }
}

#[test]
fn randomized_device_sets_keep_invariants() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..300 {
        let mut e = FakeEcam::new(0);
        add_random_bus(&mut e, &mut r, None, 0);
        let mut b = virt_bridge();
        b.windows = Default::default();
        let low = 0x1000_0000 + (r.below(16) << 24);
        b.windows
            .push(win(
                PciSpace::Mem32,
                false,
                low,
                low,
                (1 + r.below(512)) << 20,
            ))
            .unwrap();
        if r.below(2) == 0 {
            b.windows
                .push(win(
                    PciSpace::Mem32,
                    true,
                    0xc000_0000,
                    0xc000_0000,
                    256 * MIB,
                ))
                .unwrap();
        }
        if r.below(4) != 0 {
            b.windows
                .push(win(
                    PciSpace::Mem64,
                    r.below(2) == 0,
                    0x80_0000_0000,
                    0x80_0000_0000,
                    1 << (30 + r.below(10)),
                ))
                .unwrap();
        }
        let host = probe(&mut e, &b, &ram_1g());
        check_invariants(&host, &b, &mut e);
        for f in &host.devices {
            for hb in f.bars.iter().flatten() {
                if hb.bar.kind != BarKind::Io && !hb.assigned {
                    assert!(f.refusal.is_some(), "round {round}: {}", f.bdf);
                }
            }
        }
    }
}

#[test]
fn qemu_virt_boot_report() {
    use crate::mm::attrs::Features;
    use crate::pci::select::{select, DmaPolicy, Report, Selection};
    let mut e = qemu_virt_devices();
    let host = probe(&mut e, &virt_bridge(), &ram_1g());
    let sel = Selection::parse(Some("1af4:1110,01:00.0"), None).unwrap();
    let (devs, decisions) = select(&host, &sel, Features::default(), DmaPolicy::Allow, true);
    let report = Report(&decisions).to_string();
    assert_eq!(devs.len(), 2, "{report}");
    assert!(report.contains("00:01.0 1af4:1110 class 050000 -> passthrough\n  BAR0 32-bit 0x"));
    assert!(report
        .contains("  BAR2 64-bit prefetchable 0x8000000000 size 64 MiB policy guest-choice\n"));
    assert!(report.contains("01:00.0 1b36:0005 class 00ff00 -> passthrough\n"));
    assert!(report.contains("  BAR1 I/O size 256 B not passed through\n"));
    assert!(report.contains("00:03.0 1b36:000c class 060400 -> host only\n"));
    assert_eq!(report.matches("WARNING:").count(), 2);
}
