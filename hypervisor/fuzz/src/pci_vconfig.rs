//! The guest's virtual PCIe config space, driven by arbitrary config reads
//! and writes of any size and offset through the MMIO bus, with the bus's
//! BAR events replayed as the run loop does. After every access: no panic;
//! the physical BAR and ROM registers never change (hostile-guest item 27);
//! every mapped guest range lies in its window, naturally aligned, and the
//! ranges are disjoint; and the replayed events equal what the bus says is
//! mapped (item 30).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hypervisor::devices::mmio::{BusAccess, Effects, MmioBus, MmioDevice, MmioResult, VcpuId};
use hypervisor::mm::addr::{Ipa, IpaRange, PhysAddr};
use hypervisor::mm::attrs::BarPolicy;
use hypervisor::pci::types::{Bar, BarKind, Bdf, PassthroughDevice};
use hypervisor::pci::vconfig::{BarEvent, GuestWindows, PhysicalConfig, VirtualPciBus};
use hypervisor::vm::layout::{PCI_ECAM, PCI_MMIO32, PCI_MMIO64};
use libfuzzer_sys::arbitrary::{Result, Unstructured};

/// A physical function: registers that take any write, shared with the checks.
#[derive(Clone)]
struct Fake(Arc<Mutex<[u32; 1024]>>);

impl PhysicalConfig for Fake {
    fn read32(&mut self, offset: u16) -> u32 {
        self.0.lock().unwrap()[usize::from(offset / 4) % 1024]
    }
    fn write(&mut self, offset: u16, size: u8, value: u32) {
        let mut regs = self.0.lock().unwrap();
        let i = usize::from(offset / 4) % 1024;
        let shift = u32::from(offset % 4) * 8;
        let mask = match size {
            1 => 0xffu32,
            2 => 0xffff,
            _ => u32::MAX,
        } << shift;
        regs[i] = (regs[i] & !mask) | ((value << shift) & mask);
    }
}

/// The bus as the VM registers it: shared with the replay of its events.
struct Shared(Arc<Mutex<VirtualPciBus>>);

impl MmioDevice for Shared {
    fn name(&self) -> &'static str {
        "pci-ecam"
    }
    fn read(&mut self, _vcpu: VcpuId, offset: u64, size: u8, _fx: &mut Effects) -> MmioResult<u64> {
        self.0.lock().unwrap().read(offset, size)
    }
    fn write(
        &mut self,
        _vcpu: VcpuId,
        offset: u64,
        size: u8,
        value: u64,
        _fx: &mut Effects,
    ) -> MmioResult<()> {
        self.0.lock().unwrap().write(offset, size, value)
    }
}

fn bar(index: u8, kind: BarKind, prefetchable: bool, size: u64, addr: u64) -> Bar {
    Bar {
        index,
        kind,
        prefetchable,
        size,
        host_addr: PhysAddr::new(addr),
        pci_addr: addr,
    }
}

fn device(n: u8, bars: [Option<(Bar, BarPolicy)>; 6]) -> PassthroughDevice {
    PassthroughDevice {
        host_bdf: Bdf::new(0, 2 + n, 0).unwrap(),
        vendor_id: 0x1af4,
        device_id: 0x1110 + u16::from(n),
        class_rev: 0x0500_0001,
        header_type: 0,
        bars,
        dma_coherent: true,
        bus_master_allowed: n == 0,
    }
}

fn fake_for(dev: &PassthroughDevice) -> Fake {
    let mut regs = [0u32; 1024];
    regs[0] = u32::from(dev.vendor_id) | u32::from(dev.device_id) << 16;
    regs[2] = dev.class_rev;
    for (b, _) in dev.bars.iter().flatten() {
        let i = 4 + usize::from(b.index);
        let ty = match b.kind {
            BarKind::Mem64 => 0b100,
            _ => 0,
        } | if b.prefetchable { 0b1000 } else { 0 };
        regs[i] = b.pci_addr as u32 | ty;
        if b.kind == BarKind::Mem64 {
            regs[i + 1] = (b.pci_addr >> 32) as u32;
        }
    }
    regs[0x30 / 4] = 0xfe00_0001;
    Fake(Arc::new(Mutex::new(regs)))
}

fn run(u: &mut Unstructured) -> Result<()> {
    let devices = [
        device(
            0,
            [
                Some((
                    bar(0, BarKind::Mem32, false, 0x100, 0x1100_0000),
                    BarPolicy::Device,
                )),
                None,
                Some((
                    bar(2, BarKind::Mem64, true, 64 << 20, 0x80_0000_0000),
                    BarPolicy::GuestChoice,
                )),
                None,
                None,
                None,
            ],
        ),
        device(
            1,
            [
                Some((
                    bar(0, BarKind::Mem32, true, 16 << 20, 0x1000_0000),
                    BarPolicy::GuestChoice,
                )),
                None,
                Some((
                    bar(2, BarKind::Mem32, false, 0x1000, 0x1100_1000),
                    BarPolicy::Device,
                )),
                None,
                None,
                None,
            ],
        ),
    ];
    let fakes: Vec<Fake> = devices.iter().map(fake_for).collect();
    let boot: Vec<[u32; 1024]> = fakes.iter().map(|f| *f.0.lock().unwrap()).collect();
    let phys = fakes
        .iter()
        .map(|f| Box::new(f.clone()) as Box<dyn PhysicalConfig + Send>)
        .collect();
    let Ok(vbus) = VirtualPciBus::new(
        &devices,
        phys,
        GuestWindows {
            mmio32: PCI_MMIO32,
            mmio64: PCI_MMIO64,
        },
    ) else {
        panic!("two ordinary devices must be accepted");
    };
    let shared = Arc::new(Mutex::new(vbus));
    let mut bus = MmioBus::new();
    bus.register(PCI_ECAM, Box::new(Shared(shared.clone())))
        .unwrap();
    let mut replayed: BTreeMap<u64, (IpaRange, PhysAddr, BarPolicy)> = BTreeMap::new();

    for _ in 0..u.int_in_range(1..=256)? {
        // Mostly the guest's own functions' headers; sometimes anywhere.
        let device = u64::from(u.int_in_range(0u8..=3)?);
        let function = u64::from(u.int_in_range(0u8..=1)?) * u64::from(u.ratio(1, 8)?);
        let register: u64 = if u.ratio(7, 8)? {
            u.int_in_range(0..=0x3f)?
        } else {
            u.int_in_range(0..=0xfff)?
        };
        let offset = (device << 15) | (function << 12) | register;
        let size = *u.choose(&[1u8, 2, 4, 4, 4, 8, 3])?;
        let value: u64 = match u.int_in_range(0..=3)? {
            0 => u64::MAX,
            1 => 0x0000_0007,
            2 => u.int_in_range(0x1000_0000..=0x3eff_0000)? & !0xfff,
            _ => u.arbitrary()?,
        };
        let write = u.arbitrary()?;
        let _ = bus.dispatch(
            VcpuId(0),
            Ipa::new(PCI_ECAM.start().raw() + offset),
            BusAccess {
                size,
                write,
                value,
                sign_extend: false,
                sixty_four: true,
            },
            &mut Effects::new(),
        );
        let events: Vec<BarEvent> = shared.lock().unwrap().take_events().collect();
        for e in events {
            match e {
                BarEvent::Map {
                    guest,
                    host,
                    policy,
                } => {
                    replayed.insert(guest.start().raw(), (guest, host, policy));
                }
                BarEvent::Unmap { guest } => {
                    replayed.remove(&guest.start().raw());
                }
            }
        }
        // The physical BARs and ROM BAR never change.
        for (fake, at_boot) in fakes.iter().zip(&boot) {
            let now = fake.0.lock().unwrap();
            assert_eq!(now[4..10], at_boot[4..10], "a physical BAR changed");
            assert_eq!(
                now[0x30 / 4],
                at_boot[0x30 / 4],
                "the physical ROM BAR changed"
            );
        }
        // What is mapped lies in its window, aligned, disjoint, as replayed.
        let mapped: Vec<(IpaRange, PhysAddr, BarPolicy)> =
            shared.lock().unwrap().mapped().collect();
        let mut as_map: Vec<_> = mapped.clone();
        as_map.sort_by_key(|(r, _, _)| r.start());
        let replay: Vec<_> = replayed.values().copied().collect();
        assert_eq!(as_map, replay, "replayed events differ from the mapped set");
        for (i, (r, _, _)) in mapped.iter().enumerate() {
            assert!(
                PCI_MMIO32.contains_range(r) || PCI_MMIO64.contains_range(r),
                "{r:?} outside the guest's windows"
            );
            assert!(
                r.start().is_aligned(r.size().next_power_of_two()),
                "{r:?} misaligned"
            );
            for (other, _, _) in &mapped[i + 1..] {
                assert!(!r.overlaps(other), "{r:?} overlaps {other:?}");
            }
        }
    }
    Ok(())
}

/// What the fuzz target runs for one input, and the corpus replay test too.
pub fn fuzz(data: &[u8]) {
    let _ = run(&mut Unstructured::new(data));
}
