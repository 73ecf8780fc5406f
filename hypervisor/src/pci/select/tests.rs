use super::*;
use crate::mm::addr::PhysAddr;
use crate::pci::types::Bar;

fn bdf(b: u8, d: u8, f: u8) -> Bdf {
    Bdf::new(b, d, f).unwrap()
}

fn hb(index: u8, kind: BarKind, prefetchable: bool, size: u64, addr: u64) -> Option<HostBar> {
    Some(HostBar {
        bar: Bar {
            index,
            kind,
            prefetchable,
            size,
            host_addr: PhysAddr::new(addr),
            pci_addr: addr,
        },
        assigned: kind != BarKind::Io,
        firmware_kept: false,
        firmware_addr: 0,
    })
}

fn func(b: Bdf, vendor: u16, device: u16, bars: [Option<HostBar>; 6]) -> HostFunction {
    HostFunction {
        bdf: b,
        vendor_id: vendor,
        device_id: device,
        class_rev: 0x0500_0001,
        header_type: 0,
        multi_function: false,
        is_bridge: false,
        parent: None,
        bars,
        rom_size: 0,
        caps: Vec::new(),
        command: 0,
        bridge: None,
        refusal: None,
    }
}

fn host() -> HostPci {
    let ivshmem = [
        hb(0, BarKind::Mem32, false, 256, 0x1000_0000),
        None,
        hb(2, BarKind::Mem64, true, 64 << 20, 0x80_0000_0000),
        None,
        None,
        None,
    ];
    let testdev = [
        hb(0, BarKind::Mem32, false, 4096, 0x1100_0000),
        hb(1, BarKind::Io, false, 256, 0),
        None,
        None,
        None,
        None,
    ];
    let mut refused = func(bdf(0, 4, 0), 0x1af4, 0x1110, testdev);
    refused.refusal = Some("BAR0 shares a 4 KiB page with BAR0 of 00:05.0".into());
    let mut bridge = func(bdf(0, 3, 0), 0x1b36, 0x000c, [None; 6]);
    bridge.is_bridge = true;
    HostPci {
        devices: vec![
            func(bdf(0, 2, 0), 0x1af4, 0x1110, ivshmem),
            bridge,
            refused,
            func(bdf(1, 0, 0), 0x1b36, 0x0005, testdev),
        ],
    }
}

const FWB_DIC: Features = Features {
    fwb: true,
    dic: true,
    idc: true,
};

#[test]
fn parses_passthrough() {
    assert_eq!(
        parse_passthrough("00:02.0,1af4:1110,0000:1f:1f.7").unwrap(),
        [
            DeviceSpec::Bdf(bdf(0, 2, 0)),
            DeviceSpec::Ids {
                vendor: 0x1af4,
                device: 0x1110
            },
            DeviceSpec::Bdf(bdf(0x1f, 0x1f, 7)),
        ]
    );
}

#[test]
fn passthrough_errors_name_the_token() {
    for (s, token, reason) in [
        ("00:02.0,,", "", "empty entry"),
        ("zz:02.0", "zz:02.0", "bus is not 1-2 hex digits"),
        ("00:20.0", "00:20.0", "device must be at most 1f"),
        ("00:02.8", "00:02.8", "function must be at most 7"),
        ("00:02.10", "00:02.10", "function is not one digit"),
        (
            "0001:00:02.0",
            "0001:00:02.0",
            "only PCI domain 0000 exists here",
        ),
        (
            "1af4:111",
            "1af4:111",
            "expected vvvv:dddd with four hex digits each",
        ),
        ("1af4", "1af4", "expected bb:dd.f or vvvv:dddd"),
    ] {
        let e = parse_passthrough(s).unwrap_err();
        assert_eq!((e.token.as_str(), e.reason), (token, reason), "{s}");
        assert_eq!(e.key, "pci.passthrough");
    }
    let e = parse_passthrough("00:02.0,xx").unwrap_err();
    assert_eq!(
        e.to_string(),
        "pci.passthrough: bad entry `xx`: expected bb:dd.f or vvvv:dddd"
    );
}

#[test]
fn parses_attr_and_dma() {
    assert_eq!(
        parse_attr("00:02.0:device,01:00.0:cacheable,00:03.1:guest-choice").unwrap(),
        [
            (bdf(0, 2, 0), BarPolicy::Device),
            (bdf(1, 0, 0), BarPolicy::Cacheable),
            (bdf(0, 3, 1), BarPolicy::GuestChoice),
        ]
    );
    let e = parse_attr("00:02.0:fast").unwrap_err();
    assert_eq!(e.token, "00:02.0:fast");
    assert!(e.reason.contains("device, guest-choice or cacheable"));
    assert!(parse_attr("00:02.0").is_err());
    assert!(parse_attr("00:02.0:device,00:02.0:cacheable")
        .unwrap_err()
        .reason
        .contains("second"));
    assert_eq!(parse_dma("deny"), Ok(DmaPolicy::Deny));
    assert_eq!(parse_dma("allow"), Ok(DmaPolicy::Allow));
    assert_eq!(parse_dma("maybe").unwrap_err().token, "maybe");
    assert_eq!(Selection::parse(None, None).unwrap(), Selection::default());
}

#[test]
fn default_policies_and_report() {
    let sel = Selection::parse(Some("1af4:1110,00:03.0,09:00.0"), None).unwrap();
    let (devs, decisions) = select(&host(), &sel, Features::default(), DmaPolicy::Allow, true);
    assert_eq!(devs.len(), 1);
    let d = &devs[0];
    assert_eq!(d.host_bdf, bdf(0, 2, 0));
    assert_eq!(d.bars[0].unwrap().1, BarPolicy::Device);
    assert_eq!(d.bars[2].unwrap().1, BarPolicy::GuestChoice);
    assert!(d.bars[1].is_none());
    assert!(d.dma_coherent && d.bus_master_allowed);
    let report = Report(&decisions).to_string();
    let expected = "\
00:02.0 1af4:1110 class 050000 -> passthrough
  BAR0 32-bit 0x10000000 size 256 B policy device
  BAR2 64-bit prefetchable 0x8000000000 size 64 MiB policy guest-choice
WARNING: 00:02.0 may master the bus and no IOMMU isolates it: its DMA can reach all memory, the hypervisor's included (pci.dma=deny keeps it off)
00:03.0 1b36:000c class 050000 -> refused: bridges are not passed through
00:04.0 1af4:1110 class 050000 -> refused: BAR0 shares a 4 KiB page with BAR0 of 00:05.0
  BAR0 32-bit 0x11000000 size 4 KiB
  BAR1 I/O size 256 B not passed through
01:00.0 1b36:0005 class 050000 -> host only
  BAR0 32-bit 0x11000000 size 4 KiB
  BAR1 I/O size 256 B not passed through
pci.passthrough: 09:00.0 matches no function
";
    assert_eq!(report, expected);
}

#[test]
fn dma_deny_keeps_bus_mastering_off() {
    let sel = Selection::parse(Some("00:02.0"), None).unwrap();
    let (devs, decisions) = select(&host(), &sel, Features::default(), DmaPolicy::Deny, false);
    assert!(!devs[0].bus_master_allowed);
    assert!(!devs[0].dma_coherent);
    let report = Report(&decisions).to_string();
    assert!(!report.contains("WARNING"));
    assert!(report.contains("bus mastering: off (pci.dma=deny)"));
}

#[test]
fn overrides_apply_to_every_bar() {
    let sel = Selection::parse(Some("00:02.0"), Some("00:02.0:device")).unwrap();
    let (devs, _) = select(&host(), &sel, Features::default(), DmaPolicy::Allow, true);
    assert_eq!(devs[0].bars[2].unwrap().1, BarPolicy::Device);
    let sel = Selection::parse(Some("00:02.0"), Some("00:02.0:cacheable")).unwrap();
    let (devs, decisions) = select(&host(), &sel, FWB_DIC, DmaPolicy::Allow, true);
    assert_eq!(devs[0].bars[0].unwrap().1, BarPolicy::Cacheable);
    assert_eq!(devs[0].bars[2].unwrap().1, BarPolicy::Cacheable);
    assert!(Report(&decisions).to_string().contains("policy cacheable"));
}

#[test]
fn cacheable_refused_without_fwb_or_dic_names_the_feature() {
    let sel = Selection::parse(Some("00:02.0"), Some("00:02.0:cacheable")).unwrap();
    for (features, missing) in [
        (Features::default(), "FEAT_S2FWB and CTR_EL0.DIC"),
        (
            Features {
                fwb: true,
                ..Default::default()
            },
            "CTR_EL0.DIC",
        ),
        (
            Features {
                dic: true,
                ..Default::default()
            },
            "FEAT_S2FWB",
        ),
    ] {
        let (devs, decisions) = select(&host(), &sel, features, DmaPolicy::Allow, true);
        // Passed through anyway, with the defaults.
        assert_eq!(devs[0].bars[0].unwrap().1, BarPolicy::Device);
        assert_eq!(devs[0].bars[2].unwrap().1, BarPolicy::GuestChoice);
        let report = Report(&decisions).to_string();
        assert!(
            report.contains("note: pci.attr 00:02.0:cacheable refused"),
            "{report}"
        );
        assert!(report.contains(&format!("needs {missing},")), "{report}");
    }
}

#[test]
fn unused_override_reported() {
    let sel = Selection::parse(None, Some("01:00.0:device")).unwrap();
    let (devs, decisions) = select(&host(), &sel, Features::default(), DmaPolicy::Allow, true);
    assert!(devs.is_empty());
    assert!(Report(&decisions)
        .to_string()
        .contains("pci.attr: 01:00.0:device ignored: 01:00.0 is not passed through"));
}
