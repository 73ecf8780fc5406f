//! Host tests fed by the DT fixtures in `qemu/fixtures/` (see `qemu/fixtures/regen`).

extern crate std;

use std::format;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::string::String;
use std::vec::Vec;

use super::*;

static VIRT_GICV3: &[u8] = include_bytes!("../../../qemu/fixtures/virt-gicv3.dtb");
static VIRT_GICV2: &[u8] = include_bytes!("../../../qemu/fixtures/virt-gicv2.dtb");
static VIRT_GICV3_EL1: &[u8] = include_bytes!("../../../qemu/fixtures/virt-gicv3-el1.dtb");
static RESERVED: &[u8] = include_bytes!("../../../qemu/fixtures/reserved.dtb");
static OVERLAP_MEMORY: &[u8] = include_bytes!("../../../qemu/fixtures/overlap-memory.dtb");
static NO_GIC: &[u8] = include_bytes!("../../../qemu/fixtures/no-gic.dtb");

fn r(start: u64, size: u64) -> PhysRange {
    PhysRange::new(PhysAddr::new(start), size).unwrap()
}

#[test]
fn total_size_from_header() {
    assert_eq!(fdt_total_size(&VIRT_GICV3[..40]), Ok(VIRT_GICV3.len()));
    assert!(matches!(
        fdt_total_size(&VIRT_GICV3[..39]),
        Err(PlatformError::Fdt(FdtError::TooShort { len: 39 }))
    ));
    let mut bad = VIRT_GICV3[..40].to_vec();
    bad[0] = 0;
    assert!(matches!(
        fdt_total_size(&bad),
        Err(PlatformError::Fdt(FdtError::BadMagic(_)))
    ));
}

#[test]
fn qemu_virt_gicv3() {
    let p = Platform::from_fdt(VIRT_GICV3).unwrap();
    assert_eq!(p.memory.as_slice(), [r(0x4000_0000, 1 << 30)]);
    assert_eq!(
        p.uart,
        Some(Uart {
            node: "pl011@9000000",
            regs: r(0x900_0000, 0x1000),
            kind: UartKind::Pl011
        })
    );
    assert_eq!(p.gic.version, GicVersion::V3);
    assert_eq!(p.gic.distributor, r(0x800_0000, 0x1_0000));
    assert_eq!(*p.gic.redistributors, [r(0x80a_0000, 0xf6_0000)]);
    assert_eq!(p.gic.cpu_interface, None);
    assert_eq!(p.gic.maintenance_intid, Some(25));
    assert_eq!(
        p.timer,
        Some(Timer {
            secure_phys: 29,
            phys: 30,
            virt: 27,
            hyp_phys: 26,
            hyp_virt: None
        })
    );
    assert_eq!(p.pcie.len(), 1);
    let b = &p.pcie[0];
    assert_eq!(b.ecam, r(0x40_1000_0000, 0x1000_0000));
    assert_eq!((b.bus_start, b.bus_end), (0, 255));
    assert!(b.dma_coherent);
    let windows: Vec<_> = b
        .windows
        .iter()
        .map(|w| (w.space, w.prefetchable, w.pci_addr, w.cpu))
        .collect();
    assert_eq!(
        windows,
        [
            (PciSpace::Io, false, 0, r(0x3eff_0000, 0x1_0000)),
            (
                PciSpace::Mem32,
                false,
                0x1000_0000,
                r(0x1000_0000, 0x2eff_0000)
            ),
            (
                PciSpace::Mem64,
                false,
                0x80_0000_0000,
                r(0x80_0000_0000, 0x80_0000_0000)
            ),
        ]
    );
    assert_eq!(p.psci, Some(PsciMethod::Smc));
    assert_eq!(p.chosen.bootargs, Some("log=debug foo=bar"));
    assert_eq!(p.chosen.stdout_path, Some("/pl011@9000000"));
    assert_eq!(p.chosen.initrd, Some(r(0x4800_0000, 0x2000)));
    assert!(p.reserved.is_empty());
    assert!(p.memreserve.is_empty());
    assert_eq!(*p.cpus, [0, 1]);
    assert_eq!(p.dtb_size, VIRT_GICV3.len() as u64);
}

#[test]
fn qemu_virt_gicv2_with_virtualization() {
    let p = Platform::from_fdt(VIRT_GICV2).unwrap();
    assert_eq!(p.gic.version, GicVersion::V2);
    assert_eq!(p.gic.distributor, r(0x800_0000, 0x1_0000));
    assert_eq!(p.gic.cpu_interface, Some(r(0x801_0000, 0x1_0000)));
    assert_eq!(p.gic.hyp_interface, Some(r(0x803_0000, 0x1_0000)));
    assert_eq!(p.gic.vcpu_interface, Some(r(0x804_0000, 0x1_0000)));
    assert!(p.gic.redistributors.is_empty());
    assert_eq!(p.gic.maintenance_intid, Some(25));
    // GICv2 flags carry a CPU mask (0xf04); the INTIDs are unaffected.
    assert_eq!(
        p.timer.map(|t| (t.phys, t.virt, t.hyp_phys)),
        Some((30, 27, 26))
    );
    assert_eq!(*p.cpus, [0, 1, 2, 3]);
    assert_eq!(p.memory.total_size(), 512 << 20);
    assert_eq!(p.chosen.bootargs, None);
    assert_eq!(p.chosen.initrd, None);
    assert_eq!(p.psci, Some(PsciMethod::Smc));
}

#[test]
fn qemu_virt_gicv3_without_virtualization() {
    let p = Platform::from_fdt(VIRT_GICV3_EL1).unwrap();
    assert_eq!(p.psci, Some(PsciMethod::Hvc));
    assert_eq!(p.gic.maintenance_intid, None);
    assert_eq!(*p.cpus, [0]);
}

#[test]
fn hand_written_reservations() {
    let p = Platform::from_fdt(RESERVED).unwrap();
    assert_eq!(
        p.memory.as_slice(),
        [
            r(0x4000_0000, 0x4000_0000),
            r(0x8_8000_0000, 0x8000_0000),
            r(0x9_0000_0000, 0x4000_0000)
        ]
    );
    let reserved: Vec<_> = p
        .reserved
        .iter()
        .map(|x| (x.node, x.range, x.no_map))
        .collect();
    assert_eq!(
        reserved,
        [
            ("optee@4e000000", r(0x4e00_0000, 0x20_0000), true),
            ("fw@7ff00000", r(0x7ff0_0000, 0x10_0000), false),
            ("fw@7ff00000", r(0x7fe0_0000, 0x1000), false),
        ]
    );
    assert_eq!(*p.memreserve, [r(0x4800_0000, 0x1_0000)]);
    assert_eq!(p.chosen.stdout_path, Some("serial0:115200n8"));
    assert_eq!(
        p.uart.map(|u| (u.node, u.regs)),
        Some(("soc-uart@1c090000", r(0x1c09_0000, 0x1000)))
    );
    assert_eq!(p.chosen.initrd, Some(r(0x4810_0000, 0x8_0000)));
    assert_eq!(*p.cpus, [0, 0x100, 0x1_0000]);
    assert_eq!(p.psci, Some(PsciMethod::Hvc));
    let g = &p.gic;
    assert_eq!(
        *g.redistributors,
        [r(0x2f10_0000, 0x10_0000), r(0x2f30_0000, 0x10_0000)]
    );
    assert_eq!(g.cpu_interface, Some(r(0x2c00_0000, 0x2000)));
    assert_eq!(g.hyp_interface, Some(r(0x2c01_0000, 0x2000)));
    assert_eq!(g.vcpu_interface, Some(r(0x2c02_f000, 0x2000)));
    let b = &p.pcie[0];
    assert!(!b.dma_coherent);
    assert_eq!((b.bus_start, b.bus_end), (0, 15));
    let w = b.windows[2];
    assert_eq!((w.space, w.prefetchable), (PciSpace::Mem64, true));
    assert_eq!(w.cpu, r(0x40_0000_0000, 0x1_0000_0000));
}

#[test]
fn usable_memory_leaves_out_every_carve_out() {
    let mut p = Platform::from_fdt(RESERVED).unwrap();
    p.locate_dtb(PhysAddr::new(0x4400_0000)).unwrap();
    let image = r(0x4008_0000, 0x20_0000);
    let free = p.usable_memory(image).unwrap();
    for (what, carve) in [
        ("image", image),
        ("dtb", p.dtb.unwrap()),
        ("initrd", p.chosen.initrd.unwrap()),
        ("optee", p.reserved[0].range),
        ("memreserve", p.memreserve[0]),
    ] {
        assert!(
            free.first_overlap(&carve).is_none(),
            "{what} left in {free:?}"
        );
    }
    assert!(free.iter().all(|f| p.memory.contains_range(f)));

    // The hypervisor loaded over a firmware reservation is refused, naming both.
    let err = p.usable_memory(r(0x4e10_0000, 0x20_0000)).unwrap_err();
    assert_eq!(
        format!("{err}"),
        "firmware reservation [0x4e000000..0x4e200000) overlaps hypervisor image [0x4e100000..0x4e300000)"
    );
}

#[test]
fn loader_memreserve_for_its_own_blobs_is_not_a_conflict() {
    // U-Boot pads the DT it placed, sets totalsize to match and adds a
    // /memreserve/ entry for it; the fixture's entry stands in for that one.
    let mut p = Platform::from_fdt(RESERVED).unwrap();
    p.dtb_size = 0x1_0000;
    p.locate_dtb(PhysAddr::new(0x4800_0000)).unwrap();
    let free = p.usable_memory(r(0x4008_0000, 0x20_0000)).unwrap();
    assert!(free.first_overlap(&r(0x4800_0000, 0x1_0000)).is_none());
}

#[test]
fn overlapping_memory_is_rejected() {
    let err = Platform::from_fdt(OVERLAP_MEMORY).unwrap_err();
    assert_eq!(
        format!("{err}"),
        "host device tree: memory@4ff00000 [0x4ff00000..0x5ff00000) overlaps memory [0x40000000..0x50000000)"
    );
}

#[test]
fn missing_gic_is_rejected() {
    let err = Platform::from_fdt(NO_GIC).unwrap_err();
    assert!(matches!(err, PlatformError::Missing(_)));
    assert!(format!("{err}").starts_with("host device tree: no interrupt controller"));
}

#[test]
fn dtb_location_must_not_wrap() {
    let mut p = Platform::from_fdt(VIRT_GICV3).unwrap();
    assert!(matches!(
        p.locate_dtb(PhysAddr::new(u64::MAX - 100)),
        Err(PlatformError::Wraps { .. })
    ));
}

#[test]
fn summary_names_everything() {
    let p = Platform::from_fdt(VIRT_GICV3).unwrap();
    let s = format!("{p}");
    for want in [
        "memory: 1024 MiB",
        "uart: pl011 at [0x9000000..0x9001000) (pl011@9000000)",
        "gic: GICv3 GICD [0x8000000..0x8010000) GICR [0x80a0000..0x9000000) maintenance INTID 25",
        "timer: INTIDs sec-phys 29 phys 30 virt 27 hyp-phys 26",
        "PCIe: pcie@10000000 ECAM [0x4010000000..0x4020000000) buses 0-255 dma-coherent",
        "  mem64 [0x8000000000..0x10000000000) -> pci 0x8000000000",
        "psci: smc",
        "initrd: [0x48000000..0x48002000)",
        "bootargs: \"log=debug foo=bar\"",
        "cpus: 2 (MPIDR 0x0 0x1)",
    ] {
        assert!(s.contains(want), "{want:?} missing from:\n{s}");
    }
    let s = format!("{}", Platform::from_fdt(RESERVED).unwrap());
    assert!(s.contains("mem64 prefetchable"), "{s}");
    assert!(
        s.contains("reserved: [0x4e000000..0x4e200000) optee@4e000000 no-map"),
        "{s}"
    );
    assert!(s.contains("memreserve: [0x48000000..0x48010000)"), "{s}");
}

/// Parses `blob` and formats whatever comes out; `Err` with the panic message
/// if anything panicked.
fn parse_without_panic(blob: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| {
        match Platform::from_fdt(blob) {
            Ok(p) => {
                let _ = format!("{p}");
                let _ = p.usable_memory(r(0x4008_0000, 0x20_0000));
            }
            Err(e) => {
                let _ = format!("{e}");
            }
        }
        let fdt = fdt::Fdt::new(blob);
        if let Ok(fdt) = fdt {
            for n in fdt.nodes() {
                let _ = n.properties().count() + n.children().count();
            }
        }
    }))
    .map_err(|e| {
        e.downcast_ref::<&str>()
            .map(|s| String::from(*s))
            .or_else(|| e.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    })
}

fn fixtures() -> [(&'static str, &'static [u8]); 6] {
    [
        ("virt-gicv3", VIRT_GICV3),
        ("virt-gicv2", VIRT_GICV2),
        ("virt-gicv3-el1", VIRT_GICV3_EL1),
        ("reserved", RESERVED),
        ("overlap-memory", OVERLAP_MEMORY),
        ("no-gic", NO_GIC),
    ]
}

#[test]
fn truncated_blobs_are_errors_not_panics() {
    let mut panics = Vec::new();
    for (name, blob) in fixtures() {
        for len in 0..blob.len() {
            let cut = &blob[..len];
            if let Err(msg) = parse_without_panic(cut) {
                panics.push(format!("{name} cut at {len}: {msg}"));
            }
            assert!(
                Platform::from_fdt(cut).is_err(),
                "{name} cut at {len} parsed"
            );
            // The same cut with a header claiming it is whole reaches the
            // structure walk instead of stopping at totalsize.
            if len >= 40 && len % 3 == 0 {
                let mut lying = cut.to_vec();
                lying[4..8].copy_from_slice(&(len as u32).to_be_bytes());
                if let Err(msg) = parse_without_panic(&lying) {
                    panics.push(format!("{name} cut at {len}, totalsize patched: {msg}"));
                }
            }
        }
    }
    assert!(
        panics.is_empty(),
        "{} panics, first: {:?}",
        panics.len(),
        panics.first()
    );
}

#[test]
fn flipped_bytes_are_errors_not_panics() {
    let mut panics = Vec::new();
    // Every byte of the small hand-written fixture, which holds every kind of
    // node and property the parser reads, and a sample of a QEMU one: each
    // parse walks the whole tree, and this runs in a debug build.
    for (name, blob, every) in [("reserved", RESERVED, 1), ("virt-gicv3", VIRT_GICV3, 7)] {
        let structs_end = {
            let be = |i: usize| u32::from_be_bytes(blob[i..i + 4].try_into().unwrap()) as usize;
            be(8) + be(36)
        };
        let mut copy = blob.to_vec();
        // Every byte of the header, reservation map and structure block, with
        // several patterns; the strings block is covered by name offsets.
        for offset in (0..structs_end.min(blob.len())).filter(|o| o < &0x48 || o % every == 0) {
            for pattern in [0xff, 0x01] {
                copy[offset] ^= pattern;
                if let Err(msg) = parse_without_panic(&copy) {
                    panics.push(format!("{name} byte {offset:#x} ^ {pattern:#x}: {msg}"));
                }
                copy[offset] ^= pattern;
            }
        }
        // Whole-word replacements hit lengths and offsets with extreme values.
        for offset in (0..structs_end.min(blob.len()).saturating_sub(4))
            .step_by(4)
            .filter(|o| o < &0x48 || (o / 4) % every == 0)
        {
            for word in [0u32, 3, 9, 0xffff_fff0, 0xffff_ffff] {
                let saved: [u8; 4] = copy[offset..offset + 4].try_into().unwrap();
                copy[offset..offset + 4].copy_from_slice(&word.to_be_bytes());
                if let Err(msg) = parse_without_panic(&copy) {
                    panics.push(format!("{name} word {offset:#x} = {word:#x}: {msg}"));
                }
                copy[offset..offset + 4].copy_from_slice(&saved);
            }
        }
    }
    assert!(
        panics.is_empty(),
        "{} panics, first: {:?}",
        panics.len(),
        panics.first()
    );
}

#[test]
fn structural_errors_name_the_problem() {
    let mut blob = VIRT_GICV3.to_vec();
    blob[3] = 0;
    assert_eq!(
        format!("{}", Platform::from_fdt(&blob).unwrap_err()),
        "host device tree: malformed blob: bad magic 0xd00dfe00 (expected 0xd00dfeed)"
    );
    assert!(matches!(
        Platform::from_fdt(&VIRT_GICV3[..100]),
        Err(PlatformError::Fdt(FdtError::BadTotalSize { .. }))
    ));
}

static RPI4: &[u8] = include_bytes!("../../../qemu/fixtures/rpi4.dtb");
static TRANSLATE: &[u8] = include_bytes!("../../../qemu/fixtures/translate.dtb");

#[test]
fn raspberry_pi_4_devices_under_soc_are_translated() {
    let p = Platform::from_fdt(RPI4).unwrap();
    assert_eq!(p.memory.as_slice(), [r(0, 0x3c00_0000)]);
    assert_eq!(
        p.uart,
        Some(Uart {
            node: "serial@7e201000",
            regs: r(0xfe20_1000, 0x200),
            kind: UartKind::Pl011
        })
    );
    let g = &p.gic;
    assert_eq!(g.version, GicVersion::V2);
    assert_eq!(g.distributor, r(0xff84_1000, 0x1000));
    assert_eq!(g.cpu_interface, Some(r(0xff84_2000, 0x2000)));
    assert_eq!(g.hyp_interface, Some(r(0xff84_4000, 0x2000)));
    assert_eq!(g.vcpu_interface, Some(r(0xff84_6000, 0x2000)));
    assert_eq!(g.maintenance_intid, Some(25));
    assert!(p.pcie.is_empty());
    assert_eq!(
        *p.unsupported_pcie,
        [UnsupportedPcie {
            node: "pcie@7d500000",
            compatible: "brcm,bcm2711-pcie"
        }]
    );
    assert_eq!(p.psci, None);
    // The disabled nvram@0 (size 0, for firmware to fill) is not a reservation.
    assert!(p.reserved.is_empty());
    assert_eq!(*p.memreserve, [r(0, 0x1000)]);
    assert_eq!(*p.cpus, [0, 1]);

    let report = format!("{p}");
    assert!(report.contains("uart: pl011 at [0xfe201000..0xfe201200) (serial@7e201000)"));
    assert!(report.contains("gic: GICv2 GICD [0xff841000..0xff842000)"));
    assert!(report
        .contains("PCIe: pcie@7d500000 (brcm,bcm2711-pcie) is not generic ECAM: passthrough off"));
    assert!(report.contains("psci: none"));
}

#[test]
fn raspberry_pi_4_mini_uart_console() {
    // The kernel's own DT names the mini UART (serial1) as the console.
    let mut blob = RPI4.to_vec();
    let at = blob.windows(8).position(|w| w == b"serial0:").unwrap();
    blob[at + 6] = b'1';
    let p = Platform::from_fdt(&blob).unwrap();
    assert_eq!(
        p.uart,
        Some(Uart {
            node: "serial@7e215040",
            regs: r(0xfe21_5040, 0x40),
            kind: UartKind::Other("brcm,bcm2835-aux-uart")
        })
    );
}

fn node<'a>(fdt: &Fdt<'a>, path: &str) -> Node<'a> {
    fdt.find(path).unwrap()
}

#[test]
fn parents_are_nearest_first() {
    let fdt = Fdt::new(TRANSLATE).unwrap();
    let n = node(&fdt, "/bus/inner/dev@10002000");
    let names: Vec<&str> = n.parents().map(|p| p.name()).collect();
    assert_eq!(names, ["inner", "bus", "/"]);
    assert_eq!(fdt.root().parents().count(), 0);
}

#[test]
fn translation_through_ranges() {
    use super::translate::{to_cpu, Untranslatable};
    let fdt = Fdt::new(TRANSLATE).unwrap();
    let at = |path: &str, addr: u64, size: u64| to_cpu(&node(&fdt, path), addr, size);

    // Root children: CPU addresses already.
    assert_eq!(at("/memory@80000000", 0x8000_0000, 0x1000), Ok(0x8000_0000));
    // One window.
    assert_eq!(
        at("/bus/inside@10001000", 0x1000_1000, 0x100),
        Ok(0x4_0000_1000)
    );
    // Empty ranges, then the window.
    assert_eq!(
        at("/bus/inner/dev@10002000", 0x1000_2000, 0x10),
        Ok(0x4_0000_2000)
    );
    // Two windows with offsets.
    assert_eq!(at("/bus/shifted/dev@10", 0x10, 0x10), Ok(0x4_0008_0010));
    // The last byte of the window is fine; one more is not.
    assert_eq!(
        at("/bus/inside@10001000", 0x100f_f000, 0x1000),
        Ok(0x4_000f_f000)
    );
    assert_eq!(
        at("/bus/cross@100ff000", 0x100f_f000, 0x2000),
        Err(Untranslatable {
            bus: "bus",
            address: 0x100f_f000,
            why: "the region crosses the end of a ranges window"
        })
    );
    assert_eq!(
        at("/bus/outside@20000000", 0x2000_0000, 0x100),
        Err(Untranslatable {
            bus: "bus",
            address: 0x2000_0000,
            why: "no ranges window covers it"
        })
    );
    assert_eq!(
        at("/nobus/serial@1000", 0x1000, 0x1000),
        Err(Untranslatable {
            bus: "nobus",
            address: 0x1000,
            why: "the bus has no ranges property"
        })
    );
    assert!(at("/pci/dev@0", 0, 0x10).is_err());
    // A window past the top of the address space is refused, not wrapped.
    assert!(at("/bus/inside@10001000", u64::MAX - 4, 0x10).is_err());
}

#[test]
fn console_behind_a_bus_without_ranges_is_refused() {
    let e = Platform::from_fdt(TRANSLATE).unwrap_err();
    assert_eq!(
        e,
        PlatformError::NotTranslatable {
            node: "serial@1000",
            property: "reg",
            why: super::translate::Untranslatable {
                bus: "nobus",
                address: 0x1000,
                why: "the bus has no ranges property"
            }
        }
    );
    assert_eq!(
        format!("{e}"),
        "host device tree: serial@1000: reg: address 0x1000 does not reach the CPU through nobus: the bus has no ranges property"
    );
}

#[test]
fn qemu_virt_is_unchanged_by_translation() {
    // Devices at the root: translation is the identity, nothing unsupported.
    let p = Platform::from_fdt(VIRT_GICV3).unwrap();
    assert!(p.unsupported_pcie.is_empty());
    assert_eq!(p.pcie.len(), 1);
}

static GUEST_LOADER: &[u8] = include_bytes!("../../../qemu/fixtures/virt-guest-loader.dtb");
static MODULES: &[u8] = include_bytes!("../../../qemu/fixtures/modules.dtb");
static MODULES_OVERLAP: &[u8] = include_bytes!("../../../qemu/fixtures/modules-overlap.dtb");

#[test]
fn qemu_guest_loader_modules() {
    // QEMU 10.0's guest-loader writes no #address-cells in /chosen: reg uses
    // the root's two and two.
    let p = Platform::from_fdt(GUEST_LOADER).unwrap();
    let k = p.chosen.modules.kernel.unwrap();
    assert_eq!(k.range, r(0x6000_0000, 4096));
    assert_eq!(k.bootargs, Some("console=ttyAMA0 earlycon"));
    assert_eq!(k.node, "module@0x60000000");
    let d = p.chosen.modules.ramdisk.unwrap();
    assert_eq!(d.range, r(0x6200_0000, 8192));
    assert_eq!(d.bootargs, None);
    assert_eq!(p.chosen.bootargs, Some("log=debug"));
    let text = format!("{p}");
    assert!(
        text.contains("module: guest kernel [0x60000000..0x60001000) (module@0x60000000) bootargs \"console=ttyAMA0 earlycon\""),
        "{text}"
    );
    assert!(
        text.contains("module: guest initramfs [0x62000000..0x62002000) (module@0x62000000)"),
        "{text}"
    );
    // Both are carved out of usable memory.
    let free = p.usable_memory(r(0x4020_0000, 0x20_0000)).unwrap();
    assert!(free.first_overlap(&k.range).is_none());
    assert!(free.first_overlap(&d.range).is_none());
}

#[test]
fn uboot_style_modules_with_their_own_cells_in_order() {
    let p = Platform::from_fdt(MODULES).unwrap();
    let m = p.chosen.modules;
    assert_eq!(m.kernel.unwrap().range, r(0x4800_0000, 0x1a0_0000));
    assert_eq!(m.kernel.unwrap().bootargs, Some("console=ttyAMA0 earlycon"));
    assert_eq!(m.ramdisk.unwrap().range, r(0x4a00_0000, 0x27_0000));
    assert_eq!(p.chosen.initrd, Some(r(0x4400_0000, 0x1_0000)));
}

#[test]
fn overlapping_modules_are_refused_by_name() {
    let err = Platform::from_fdt(MODULES_OVERLAP).unwrap_err();
    assert_eq!(
        format!("{err}"),
        format!(
            "{}",
            PlatformError::Overlap {
                what: "module@48000000",
                range: r(0x4800_0000, 0x10_0000),
                other: "module@480f0000",
                other_range: r(0x480f_0000, 0x10_0000),
            }
        )
    );
    assert!(matches!(err, PlatformError::Overlap { .. }));
}

#[test]
fn modules_over_the_hypervisor_or_outside_ram_are_refused() {
    let p = Platform::from_fdt(MODULES).unwrap();
    // The hypervisor loaded where the kernel module is.
    let err = p.usable_memory(r(0x4900_0000, 0x20_0000)).unwrap_err();
    let text = format!("{err}");
    assert!(text.contains("guest kernel"), "{text}");
    assert!(text.contains("hypervisor image"), "{text}");

    // A module beyond RAM: the same tree with the ramdisk moved to 0x70000000.
    let mut blob = MODULES.to_vec();
    let at = blob
        .windows(8)
        .position(|w| w == [0x4a, 0, 0, 0, 0, 0x27, 0, 0])
        .unwrap();
    blob[at] = 0x70;
    let err = Platform::from_fdt(&blob).unwrap_err();
    assert_eq!(
        err,
        PlatformError::BadProperty {
            node: "module@4a000000",
            property: "reg",
            why: "the module is not inside RAM",
        }
    );
}
