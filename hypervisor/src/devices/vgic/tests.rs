#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::lr::{count_from_vtr, ListRegisters, Lr, LrManager, LrState, HCR_NPIE, HCR_UIE};
use super::*;

/// List registers in memory, with a guest model on top: acknowledge the
/// highest-priority pending one, complete (EOI) an active one.
struct FakeLrs(Vec<u64>, Version);

impl ListRegisters for FakeLrs {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn read(&mut self, index: usize) -> u64 {
        self.0[index]
    }
    fn write(&mut self, index: usize, value: u64) {
        self.0[index] = value;
    }
}

impl FakeLrs {
    fn new(version: Version, count: usize) -> Self {
        Self(vec![0; count], version)
    }
    fn decoded(&self) -> Vec<Lr> {
        self.0
            .iter()
            .map(|&v| match self.1 {
                Version::V3 => Lr::decode_v3(v),
                Version::V2 => Lr::decode_v2(v),
            })
            .filter(|lr| lr.state != LrState::Invalid)
            .collect()
    }
    fn encode(&self, lr: &Lr) -> u64 {
        match self.1 {
            Version::V3 => lr.encode_v3(),
            Version::V2 => lr.encode_v2(),
        }
    }
    /// The guest reads IAR: the pending LR of highest priority goes active.
    fn acknowledge(&mut self) -> u32 {
        let mut best: Option<(usize, Lr)> = None;
        for i in 0..self.0.len() {
            let lr = match self.1 {
                Version::V3 => Lr::decode_v3(self.0[i]),
                Version::V2 => Lr::decode_v2(self.0[i]),
            };
            if lr.state == LrState::Pending && best.is_none_or(|(_, b)| lr.priority < b.priority) {
                best = Some((i, lr));
            }
        }
        let Some((i, mut lr)) = best else {
            return SPURIOUS_INTID;
        };
        lr.state = LrState::Active;
        self.0[i] = self.encode(&lr);
        lr.vintid
    }
    /// The guest writes EOIR (EOImode 0): the interrupt's LR loses active.
    fn complete(&mut self, intid: u32) {
        for i in 0..self.0.len() {
            let mut lr = match self.1 {
                Version::V3 => Lr::decode_v3(self.0[i]),
                Version::V2 => Lr::decode_v2(self.0[i]),
            };
            if lr.vintid == intid && lr.state.active() {
                lr.state = if lr.state.pending() {
                    LrState::Pending
                } else {
                    LrState::Invalid
                };
                self.0[i] = self.encode(&lr);
            }
        }
    }
}

fn v3(vcpus: usize) -> Vgic {
    Vgic::new(&VgicConfig::new(Version::V3, vcpus, 64)).unwrap()
}

fn v2(vcpus: usize) -> Vgic {
    Vgic::new(&VgicConfig::new(Version::V2, vcpus, 64)).unwrap()
}

fn dw(g: &mut Vgic, vcpu: usize, off: u64, size: u8, value: u64) -> Effects {
    let mut fx = Effects::new();
    match g.version() {
        Version::V3 => g.gicd_v3_write(vcpu, off, size, value, &mut fx).unwrap(),
        Version::V2 => g.gicd_v2_write(vcpu, off, size, value, &mut fx).unwrap(),
    }
    fx
}

fn dr(g: &mut Vgic, vcpu: usize, off: u64, size: u8) -> u64 {
    match g.version() {
        Version::V3 => g.gicd_v3_read(vcpu, off, size).unwrap(),
        Version::V2 => g.gicd_v2_read(vcpu, off, size).unwrap(),
    }
}

fn rw(g: &mut Vgic, vcpu: usize, off: u64, size: u8, value: u64) -> Effects {
    let mut fx = Effects::new();
    g.gicr_write(vcpu, off, size, value, &mut fx).unwrap();
    fx
}

fn rr(g: &mut Vgic, vcpu: usize, off: u64, size: u8) -> u64 {
    g.gicr_read(vcpu, off, size).unwrap()
}

/// SGI_base of vCPU `v`'s redistributor.
fn sgi_base(v: usize) -> u64 {
    v as u64 * GICR_STRIDE + 0x1_0000
}

/// Enables group 1 and SPI `intid` as group 1, with `priority`.
fn enable_spi(g: &mut Vgic, intid: u32, priority: u8) {
    dw(g, 0, reg::CTLR, 4, 3);
    let word = u64::from(intid / 32) * 4;
    let old = dr(g, 0, reg::IGROUPR + word, 4);
    dw(g, 0, reg::IGROUPR + word, 4, old | 1 << (intid % 32));
    dw(
        g,
        0,
        reg::IPRIORITYR + u64::from(intid),
        1,
        u64::from(priority),
    );
    dw(g, 0, reg::ISENABLER + word, 4, 1 << (intid % 32));
}

#[test]
fn config_is_checked() {
    assert_eq!(
        Vgic::new(&VgicConfig::new(Version::V2, 9, 32)).err(),
        Some(ConfigError::VcpuCount(9))
    );
    assert_eq!(
        Vgic::new(&VgicConfig::new(Version::V3, 0, 32)).err(),
        Some(ConfigError::VcpuCount(0))
    );
    let dup = VgicConfig {
        version: Version::V3,
        affinities: vec![1, 1],
        spis: 32,
    };
    assert_eq!(
        Vgic::new(&dup).err(),
        Some(ConfigError::DuplicateAffinity(1))
    );
    assert_eq!(
        Vgic::new(&VgicConfig::new(Version::V3, 1, 5000))
            .unwrap()
            .spis(),
        MAX_SPIS
    );
    assert_eq!(
        Vgic::new(&VgicConfig::new(Version::V3, 1, 33))
            .unwrap()
            .spis(),
        64
    );
}

#[test]
fn identification_registers_read_their_values_and_ignore_writes() {
    // Hostile-guest item 21.
    let mut g = v3(2);
    let typer = dr(&mut g, 0, reg::TYPER, 4);
    assert_eq!(typer & 0x1f, 2, "ITLinesNumber for 96 INTIDs");
    assert_eq!((typer >> 5) & 7, 1, "CPUNumber");
    assert_eq!((typer >> 19) & 0x1f, 9, "IDbits");
    assert_ne!(typer & 1 << 25, 0, "No1N");
    assert_eq!(dr(&mut g, 0, reg::CTLR, 4), u64::from(ctlr::ARE | ctlr::DS));
    assert_eq!((dr(&mut g, 0, 0xffe8, 4) >> 4) & 0xf, 3);
    assert_eq!((rr(&mut g, 0, 0xffe8, 4) >> 4) & 0xf, 3);
    let gicr_typer = rr(&mut g, 1, GICR_STRIDE + 8, 8);
    for (off, size) in [(reg::TYPER, 4), (reg::IIDR, 4), (0xffe8, 4), (0xfff0, 4)] {
        let before = dr(&mut g, 0, off, size);
        dw(&mut g, 0, off, size, !0);
        assert_eq!(dr(&mut g, 0, off, size), before, "GICD {off:#x}");
    }
    for off in [0x4, 0x8, 0xc, 0xffe8] {
        let before = rr(&mut g, 0, off, 4);
        rw(&mut g, 0, off, 4, 0xdead_beef);
        assert_eq!(rr(&mut g, 0, off, 4), before, "GICR {off:#x}");
    }
    rw(&mut g, 0, GICR_STRIDE + 8, 8, 0);
    assert_eq!(rr(&mut g, 1, GICR_STRIDE + 8, 8), gicr_typer);
    // ARE and DS stay set whatever the guest writes.
    dw(&mut g, 0, reg::CTLR, 4, 0);
    assert_eq!(dr(&mut g, 0, reg::CTLR, 4), u64::from(ctlr::ARE | ctlr::DS));

    let mut g = v2(4);
    assert_eq!(dr(&mut g, 0, reg::TYPER, 4), 2 | 3 << 5);
    assert_eq!((dr(&mut g, 0, 0xfe8, 4) >> 4) & 0xf, 2);
    dw(&mut g, 0, reg::TYPER, 4, 0);
    dw(&mut g, 0, 0xfe8, 4, 0);
    assert_eq!(dr(&mut g, 0, reg::TYPER, 4), 2 | 3 << 5);
    assert_eq!((dr(&mut g, 0, 0xfe8, 4) >> 4) & 0xf, 2);
}

#[test]
fn redistributor_typer_names_each_vcpu_and_the_last_frame() {
    let cfg = VgicConfig {
        version: Version::V3,
        affinities: vec![0x0000_0000, 0x0000_0001, 0x0102_0300],
        spis: 32,
    };
    let mut g = Vgic::new(&cfg).unwrap();
    for (v, aff) in cfg.affinities.iter().enumerate() {
        let typer = rr(&mut g, 0, v as u64 * GICR_STRIDE + 8, 8);
        assert_eq!(typer >> 32, u64::from(*aff));
        assert_eq!((typer >> 8) & 0xffff, v as u64, "ProcessorNumber");
        assert_eq!(typer & 1 << 4 != 0, v == 2, "Last");
        let lo = rr(&mut g, 0, v as u64 * GICR_STRIDE + 8, 4);
        let hi = rr(&mut g, 0, v as u64 * GICR_STRIDE + 12, 4);
        assert_eq!(hi << 32 | lo, typer);
    }
    // Beyond the last frame: nothing there.
    assert_eq!(rr(&mut g, 0, 3 * GICR_STRIDE + 8, 8), 0);
}

#[test]
fn waker_reports_children_asleep_with_processor_sleep() {
    let mut g = v3(2);
    assert_eq!(rr(&mut g, 0, 0x14, 4), 0b110);
    rw(&mut g, 0, 0x14, 4, 0);
    assert_eq!(rr(&mut g, 0, 0x14, 4), 0);
    assert_eq!(
        rr(&mut g, 1, GICR_STRIDE + 0x14, 4),
        0b110,
        "vCPU 1 still asleep"
    );
    rw(&mut g, 0, 0x14, 4, 0b100);
    assert_eq!(rr(&mut g, 0, 0x14, 4), 0, "ChildrenAsleep is read-only");
}

#[test]
fn beyond_the_implemented_interrupts_is_raz_wi() {
    // Hostile-guest item 22: 64 SPIs, so INTIDs 96-1019 do not exist.
    let mut g = v3(1);
    for base in [reg::IGROUPR, reg::ISENABLER, reg::ISPENDR, reg::ISACTIVER] {
        for word in 3..32 {
            dw(&mut g, 0, base + word * 4, 4, !0);
            assert_eq!(
                dr(&mut g, 0, base + word * 4, 4),
                0,
                "{base:#x} word {word}"
            );
        }
    }
    for intid in 96..1020u64 {
        dw(&mut g, 0, reg::IPRIORITYR + intid, 1, 0xff);
        assert_eq!(dr(&mut g, 0, reg::IPRIORITYR + intid, 1), 0);
        dw(&mut g, 0, reg::IROUTER + intid * 8, 8, 0xff);
        assert_eq!(dr(&mut g, 0, reg::IROUTER + intid * 8, 8), 0);
    }
    dw(&mut g, 0, reg::ICFGR + 6 * 4, 4, !0);
    assert_eq!(dr(&mut g, 0, reg::ICFGR + 6 * 4, 4), 0);
    // Half the INTIDs of word 2 (64-95) exist: all of them take the write.
    dw(&mut g, 0, reg::ISENABLER + 8, 4, !0);
    assert_eq!(dr(&mut g, 0, reg::ISENABLER + 8, 4), 0xffff_ffff);
    assert!(g.irq(0, 96).is_none());
    // The distributor's copies of INTIDs 0-31 are RAZ/WI under affinity routing.
    dw(&mut g, 0, reg::ISENABLER, 4, !0);
    dw(&mut g, 0, reg::IPRIORITYR, 4, !0);
    assert_eq!(dr(&mut g, 0, reg::ISENABLER, 4), 0);
    assert_eq!(rr(&mut g, 0, sgi_base(0) + reg::ISENABLER, 4), 0);
    assert_eq!(rr(&mut g, 0, sgi_base(0) + reg::IPRIORITYR, 4), 0);
    // Only bank 0 exists in SGI_base.
    rw(&mut g, 0, sgi_base(0) + reg::ISENABLER + 4, 4, !0);
    assert_eq!(rr(&mut g, 0, sgi_base(0) + reg::ISENABLER + 4, 4), 0);
}

#[test]
fn priority_and_targets_take_bytes_and_words() {
    // Hostile-guest item 23.
    let mut g = v3(1);
    dw(&mut g, 0, reg::IPRIORITYR + 33, 1, 0xa7);
    assert_eq!(g.irq(0, 33).unwrap().priority, 0xa0, "5 priority bits");
    assert_eq!(dr(&mut g, 0, reg::IPRIORITYR + 32, 4), 0xa000);
    dw(&mut g, 0, reg::IPRIORITYR + 36, 4, 0x4030_2010);
    assert_eq!(dr(&mut g, 0, reg::IPRIORITYR + 38, 1), 0x30);
    assert_eq!(g.irq(0, 39).unwrap().priority, 0x40);
    rw(&mut g, 0, sgi_base(0) + reg::IPRIORITYR + 27, 1, 0x80);
    assert_eq!(g.irq(0, 27).unwrap().priority, 0x80);
    assert_eq!(
        rr(&mut g, 0, sgi_base(0) + reg::IPRIORITYR + 24, 4),
        0x8000_0000
    );

    let mut g = v2(3);
    dw(&mut g, 0, reg::ITARGETSR + 34, 1, 0x04);
    assert_eq!(g.spi_target(34), Some(2));
    dw(&mut g, 0, reg::ITARGETSR + 32, 4, 0xff02_0001);
    assert_eq!(
        dr(&mut g, 0, reg::ITARGETSR + 32, 4),
        0x0702_0001,
        "no CPU 3-7"
    );
    assert_eq!(g.spi_target(33), None);
    assert_eq!(g.spi_target(35), Some(0), "lowest of 0-2");
    // SGI/PPI bytes read the reader's own bit and ignore writes.
    assert_eq!(dr(&mut g, 1, reg::ITARGETSR, 4), 0x0202_0202);
    assert_eq!(dr(&mut g, 2, reg::ITARGETSR + 27, 1), 0x04);
    dw(&mut g, 0, reg::ITARGETSR + 4, 4, 0);
    assert_eq!(dr(&mut g, 0, reg::ITARGETSR + 4, 4), 0x0101_0101);
    dw(&mut g, 0, reg::IPRIORITYR + 5, 1, 0x58);
    assert_eq!(g.irq(0, 5).unwrap().priority, 0x58);
    assert_eq!(g.irq(1, 5).unwrap().priority, 0, "banked per CPU");
}

#[test]
fn malformed_accesses_are_bad_and_change_nothing() {
    // Hostile-guest items 10 and 25b: wrong widths and alignment.
    let mut g = v3(2);
    let mut fx = Effects::new();
    let bad = [
        (reg::ISENABLER + 4, 1u8),
        (reg::ISENABLER + 4, 2),
        (reg::ISENABLER + 4, 8),
        (reg::ISENABLER + 5, 4),
        (reg::IPRIORITYR + 33, 2),
        (reg::IPRIORITYR + 34, 4),
        (reg::IROUTER + 33 * 8 + 2, 4),
        (reg::IROUTER + 33 * 8 + 4, 8),
        (reg::CTLR, 8),
        (reg::CTLR, 3),
    ];
    for (off, size) in bad {
        assert_eq!(
            g.gicd_v3_write(0, off, size, !0, &mut fx),
            Err(BadAccess),
            "{off:#x}/{size}"
        );
        assert_eq!(
            g.gicd_v3_read(0, off, size),
            Err(BadAccess),
            "{off:#x}/{size}"
        );
    }
    for (off, size) in [
        (0x14u64, 8u8),
        (0x8, 2),
        (sgi_base(1) + 0x100, 8),
        (sgi_base(1) + 0x401, 2),
    ] {
        assert_eq!(g.gicr_write(0, off, size, !0, &mut fx), Err(BadAccess));
        assert_eq!(g.gicr_read(0, off, size), Err(BadAccess));
    }
    // A vCPU index the VM does not have.
    assert_eq!(g.gicd_v3_read(2, reg::CTLR, 4), Err(BadAccess));
    assert_eq!(g.gicr_write(7, 0x14, 4, 0, &mut fx), Err(BadAccess));
    // The wrong version's frame.
    assert_eq!(g.gicd_v2_read(0, reg::CTLR, 4), Err(BadAccess));
    assert!(fx.is_empty());
    for intid in 0..g.intid_limit() {
        assert!(!g.irq(0, intid).unwrap().enabled);
        assert_eq!(g.irq(1, intid).unwrap().priority, 0);
    }
    assert_eq!(dr(&mut g, 0, reg::IROUTER + 33 * 8, 8), 0);
}

#[test]
fn another_vcpus_frame_changes_only_that_vcpu() {
    // Hostile-guest item 25b.
    let mut g = v3(3);
    let fx = rw(&mut g, 0, sgi_base(1) + reg::ISENABLER, 4, 1 << 27);
    rw(&mut g, 0, sgi_base(1) + reg::IPRIORITYR + 27, 1, 0x40);
    rw(&mut g, 2, sgi_base(1) + reg::ISPENDR, 4, 1 << 27);
    assert!(fx.is_empty(), "nothing pending yet");
    assert!(g.irq(1, 27).unwrap().enabled);
    assert!(g.irq(1, 27).unwrap().pending());
    assert_eq!(g.irq(1, 27).unwrap().priority, 0x40);
    for v in [0, 2] {
        assert_eq!(
            *g.irq(v, 27).unwrap(),
            *v3(3).irq(v, 27).unwrap(),
            "vCPU {v}"
        );
    }
    assert_eq!(rr(&mut g, 0, sgi_base(0) + reg::ISENABLER, 4), 0);
    assert_eq!(rr(&mut g, 2, sgi_base(1) + reg::ISENABLER, 4), 1 << 27);
}

#[test]
fn sgi_register_decodes_targets_and_ignores_what_does_not_exist() {
    // Hostile-guest items 24 and 25a.
    let mut g = v3(4);
    let mut fx = Effects::new();
    for v in 0..4 {
        rw(&mut g, v, sgi_base(v) + reg::IGROUPR, 4, 0xffff);
    }
    // Target list: Aff0 1 and 3, plus 5-15 which do not exist.
    g.write_sgir_sysreg(0, 3 << 24 | 0xffea, true, &mut fx);
    assert_eq!(
        fx.as_slice(),
        [Effect::Sgi {
            intid: 3,
            targets: VcpuSet(0b1010)
        }]
    );
    assert!(g.irq(1, 3).unwrap().pending() && g.irq(3, 3).unwrap().pending());
    assert!(!g.irq(0, 3).unwrap().pending() && !g.irq(2, 3).unwrap().pending());
    // IRM: everyone but the sender.
    let mut fx = Effects::new();
    g.write_sgir_sysreg(2, 1 << 40 | 9 << 24, true, &mut fx);
    assert_eq!(
        fx.as_slice(),
        [Effect::Sgi {
            intid: 9,
            targets: VcpuSet(0b1011)
        }]
    );
    // Affinity levels or a range selector no vCPU has: nothing.
    let mut fx = Effects::new();
    g.write_sgir_sysreg(0, 1 << 16 | 0xffff, true, &mut fx);
    g.write_sgir_sysreg(0, 1 << 44 | 0xffff, true, &mut fx);
    g.write_sgir_sysreg(0, 0xff << 48 | 0xffff, true, &mut fx);
    // A Group 0 request to Group 1 SGIs: nothing.
    g.write_sgir_sysreg(0, 0xffff, false, &mut fx);
    // A sender that does not exist: nothing.
    g.write_sgir_sysreg(9, 0xffff, true, &mut fx);
    assert!(fx.is_empty(), "{fx:?}");

    let mut g = v2(2);
    let mut fx = Effects::new();
    dw(&mut g, 0, reg::SGIR, 4, 3 << 24 | 0xff << 16 | 1);
    assert!(
        fx.is_empty() && !g.irq(0, 1).unwrap().pending(),
        "reserved filter"
    );
    fx = dw(&mut g, 1, reg::SGIR, 4, 0xff << 16 | 2);
    assert_eq!(
        fx.as_slice(),
        [Effect::Sgi {
            intid: 2,
            targets: VcpuSet(0b11)
        }],
        "CPUs 2-7 dropped"
    );
    assert_eq!(g.irq(0, 2).unwrap().sources, 0b10, "from CPU 1");
    fx = dw(&mut g, 1, reg::SGIR, 4, 2 << 24 | 4);
    assert_eq!(
        fx.as_slice(),
        [Effect::Sgi {
            intid: 4,
            targets: VcpuSet(0b10)
        }]
    );
    fx = dw(&mut g, 1, reg::SGIR, 4, 1 << 24 | 5);
    assert_eq!(
        fx.as_slice(),
        [Effect::Sgi {
            intid: 5,
            targets: VcpuSet(0b01)
        }]
    );
}

#[test]
fn sgi_storms_stay_bounded() {
    // Hostile-guest item 25a: a million SGIs leave one pending bit per
    // target and one effect per write.
    let mut g = v3(2);
    for _ in 0..1_000_000 {
        let mut fx = Effects::new();
        g.write_sgir_sysreg(0, 1 << 40 | 7 << 24, false, &mut fx);
        assert!(fx.as_slice().len() <= 1);
    }
    assert!(g.irq(1, 7).unwrap().pending());
    rw(&mut g, 1, sgi_base(1) + reg::ICPENDR, 4, 1 << 7);
    assert!(!g.irq(1, 7).unwrap().pending());
}

#[test]
fn v2_sgi_pending_is_per_source() {
    let mut g = v2(3);
    dw(&mut g, 0, reg::SPENDSGIR + 6, 1, 0b1111_0101);
    assert_eq!(g.irq(0, 6).unwrap().sources, 0b101, "CPUs 3-7 dropped");
    assert_eq!(dr(&mut g, 0, reg::SPENDSGIR + 4, 4), 0b101 << 16);
    assert_eq!(dr(&mut g, 1, reg::SPENDSGIR + 4, 4), 0, "banked");
    dw(&mut g, 0, reg::CPENDSGIR + 4, 4, 0b001 << 16);
    assert_eq!(g.irq(0, 6).unwrap().sources, 0b100);
    assert!(g.irq(0, 6).unwrap().pending());
    // ISPENDR/ICPENDR do not reach SGIs on GICv2.
    dw(&mut g, 0, reg::ICPENDR, 4, !0);
    dw(&mut g, 0, reg::ISPENDR, 4, 1 << 1);
    assert!(g.irq(0, 6).unwrap().pending());
    assert!(!g.irq(0, 1).unwrap().pending());
    dw(&mut g, 0, reg::CPENDSGIR + 6, 1, 0xff);
    assert!(!g.irq(0, 6).unwrap().pending());
}

#[test]
fn physical_effects_only_for_owned_interrupts() {
    // Hostile-guest item 25a.
    let mut g = v3(2);
    g.assign_hw(40, 77).unwrap();
    assert_eq!(g.assign_hw(41, 77), Err(AssignError::Taken(77)));
    assert_eq!(g.assign_hw(40, 78), Err(AssignError::Taken(40)));
    assert_eq!(g.assign_hw(20, 78), Err(AssignError::NoSuchSpi(20)));
    assert_eq!(g.assign_hw(96, 78), Err(AssignError::NoSuchSpi(96)));
    let mut all = Effects::new();
    // Everything on every SPI: enable, pend, activate, route, configure.
    for word in 1..3u64 {
        for base in [
            reg::ISENABLER,
            reg::ISPENDR,
            reg::ISACTIVER,
            reg::ICACTIVER,
            reg::ICENABLER,
        ] {
            all.0.extend(dw(&mut g, 0, base + word * 4, 4, !0).0);
        }
    }
    for intid in 32..96u64 {
        all.0
            .extend(dw(&mut g, 0, reg::IROUTER + intid * 8, 8, 1).0);
        all.0
            .extend(dw(&mut g, 0, reg::IROUTER + intid * 8, 8, 7).0);
    }
    let phys: Vec<_> = all
        .0
        .iter()
        .filter(|e| matches!(e, Effect::PhysEnable { .. } | Effect::PhysRoute { .. }))
        .copied()
        .collect();
    assert_eq!(
        phys,
        [
            Effect::PhysEnable {
                pintid: 77,
                enable: true
            },
            Effect::PhysEnable {
                pintid: 77,
                enable: false
            },
            Effect::PhysRoute {
                pintid: 77,
                vcpu: 1
            },
        ],
        "routing to Aff0 7 (no such vCPU) has no physical effect"
    );
    assert_eq!(g.spi_target(40), None);
    assert!(g.inject_hw(0, 77, &mut Effects::new()));
    assert!(!g.inject_hw(0, 78, &mut Effects::new()));
    assert!(g.irq(0, 40).unwrap().pending());
}

#[test]
fn interrupts_routed_nowhere_are_never_delivered() {
    let mut g = v3(2);
    enable_spi(&mut g, 50, 0x80);
    dw(&mut g, 0, reg::IROUTER + 50 * 8, 8, 0x0100_0000_0000 | 5);
    let fx = dw(&mut g, 0, reg::ISPENDR + 4, 4, 1 << 18);
    assert!(fx.is_empty());
    assert!(!g.has_deliverable(0) && !g.has_deliverable(1));
    // Routed back to vCPU 1 it is delivered there.
    let fx = dw(&mut g, 0, reg::IROUTER + 50 * 8, 8, 1);
    assert_eq!(fx.as_slice(), [Effect::Pending { vcpu: 1, intid: 50 }]);
    assert!(g.has_deliverable(1) && !g.has_deliverable(0));
    // IROUTER halves.
    assert_eq!(dr(&mut g, 0, reg::IROUTER + 50 * 8, 4), 1);
    dw(&mut g, 0, reg::IROUTER + 50 * 8 + 4, 4, 0xffff_ffff);
    assert_eq!(
        dr(&mut g, 0, reg::IROUTER + 50 * 8, 8),
        0xff_0000_0001,
        "Aff3 kept, RES0 not"
    );
}

#[test]
fn pending_disabled_interrupts_never_reach_the_list_registers() {
    // Hostile-guest item 25.
    let mut g = v3(1);
    let mut lrs = FakeLrs::new(Version::V3, 4);
    let mut m = LrManager::new(Version::V3, 0, 4);
    dw(&mut g, 0, reg::CTLR, 4, 3);
    dw(&mut g, 0, reg::IGROUPR + 4, 4, !0);
    let mut fx = Effects::new();
    g.set_line(0, 40, true, &mut fx);
    assert!(fx.is_empty());
    dw(&mut g, 0, reg::ISPENDR + 4, 4, 0xff);
    assert_eq!(m.flush(&mut g, &mut lrs), Default::default());
    assert!(lrs.0.iter().all(|&v| v == 0));
    // Enabled while pending: delivered.
    let fx = dw(&mut g, 0, reg::ISENABLER + 4, 4, 1 << 8);
    assert_eq!(fx.as_slice(), [Effect::Pending { vcpu: 0, intid: 40 }]);
    assert_eq!(m.flush(&mut g, &mut lrs).loaded, 1);
    assert_eq!(lrs.decoded()[0].vintid, 40);
    // Disabled while in a list register: folded back, not reloaded, still
    // pending in the distributor.
    m.fold(&mut g, &mut lrs);
    dw(&mut g, 0, reg::ICENABLER + 4, 4, 1 << 8);
    assert_eq!(m.flush(&mut g, &mut lrs).loaded, 0);
    assert!(lrs.0.iter().all(|&v| v == 0));
    assert!(g.irq(0, 40).unwrap().pending());
    // Group disabled: nothing either.
    dw(&mut g, 0, reg::ISENABLER + 4, 4, 1 << 8);
    dw(&mut g, 0, reg::CTLR, 4, 0);
    assert_eq!(m.flush(&mut g, &mut lrs).loaded, 0);
}

#[test]
fn list_registers_fill_in_priority_order_and_refill_on_maintenance() {
    let mut g = v3(1);
    let mut lrs = FakeLrs::new(Version::V3, 4);
    let mut m = LrManager::new(Version::V3, 0, count_from_vtr(Version::V3, 3));
    assert_eq!(m.count(), 4);
    let prios = [0x80, 0x10, 0xf0, 0x40, 0x40, 0x20, 0xa0];
    for (i, p) in prios.iter().enumerate() {
        enable_spi(&mut g, 40 + i as u32, *p);
        dw(&mut g, 0, reg::ISPENDR + 4, 4, 1 << (8 + i));
    }
    let f = m.flush(&mut g, &mut lrs);
    assert_eq!(f.loaded, 4);
    assert_eq!(f.overflow, 3);
    assert_eq!(f.maintenance(), HCR_UIE | HCR_NPIE);
    let loaded: Vec<_> = lrs
        .decoded()
        .iter()
        .map(|lr| (lr.vintid, lr.priority))
        .collect();
    assert_eq!(loaded, [(41, 0x10), (45, 0x20), (43, 0x40), (44, 0x40)]);
    // The guest takes and completes everything it has; the maintenance exit
    // folds and refills with the rest.
    let mut taken = Vec::new();
    loop {
        let intid = lrs.acknowledge();
        if intid == SPURIOUS_INTID {
            m.fold(&mut g, &mut lrs);
            let f = m.flush(&mut g, &mut lrs);
            if f.loaded == 0 {
                break;
            }
            continue;
        }
        taken.push(intid);
        lrs.complete(intid);
    }
    assert_eq!(taken, [41, 45, 43, 44, 40, 46, 42]);
    assert!(!g.has_deliverable(0));
    assert!(!m.in_use());
}

#[test]
fn active_interrupts_keep_their_list_register() {
    let mut g = v3(1);
    let mut lrs = FakeLrs::new(Version::V3, 2);
    let mut m = LrManager::new(Version::V3, 0, 2);
    for (intid, p) in [(40, 0x80), (41, 0x40), (42, 0x20)] {
        enable_spi(&mut g, intid, p);
    }
    dw(&mut g, 0, reg::ISPENDR + 4, 4, 1 << 8);
    m.flush(&mut g, &mut lrs);
    assert_eq!(lrs.acknowledge(), 40);
    m.fold(&mut g, &mut lrs);
    assert!(g.irq(0, 40).unwrap().active && !g.irq(0, 40).unwrap().pending());
    // Two more, both of higher priority than the active one: the active one
    // stays loaded so the guest can complete it.
    dw(&mut g, 0, reg::ISPENDR + 4, 4, 0b110 << 8);
    let f = m.flush(&mut g, &mut lrs);
    assert_eq!((f.loaded, f.overflow), (2, 1));
    let lr = lrs.decoded();
    assert_eq!((lr[0].vintid, lr[0].state), (40, LrState::Active));
    assert_eq!((lr[1].vintid, lr[1].state), (42, LrState::Pending));
    lrs.complete(40);
    m.fold(&mut g, &mut lrs);
    assert!(!g.irq(0, 40).unwrap().active);
    assert!(g.irq(0, 42).unwrap().pending(), "folded back pending");
}

#[test]
fn hardware_interrupts_carry_the_hw_bit_and_one_state() {
    let mut g = v3(1);
    let mut lrs = FakeLrs::new(Version::V3, 4);
    let mut m = LrManager::new(Version::V3, 0, 4);
    g.assign_hw(48, 0x1234).unwrap();
    enable_spi(&mut g, 48, 0x80);
    assert!(g.inject_hw(0, 0x1234, &mut Effects::new()));
    m.flush(&mut g, &mut lrs);
    let lr = lrs.decoded()[0];
    assert_eq!(lr.pintid, Some(0x1234));
    assert_eq!(lr.state, LrState::Pending);
    assert!(!lr.eoi);
    assert_eq!(lrs.acknowledge(), 48);
    m.fold(&mut g, &mut lrs);
    // Taken again at EL2 while the guest still has it active: never
    // pending-and-active in one HW list register.
    assert!(g.inject_hw(0, 0x1234, &mut Effects::new()));
    m.flush(&mut g, &mut lrs);
    assert_eq!(lrs.decoded()[0].state, LrState::Active);
    lrs.complete(48);
    m.fold(&mut g, &mut lrs);
    m.flush(&mut g, &mut lrs);
    assert_eq!(lrs.decoded()[0].state, LrState::Pending);
}

#[test]
fn level_interrupts_follow_their_line_and_ask_for_eoi() {
    let mut g = v3(1);
    let mut lrs = FakeLrs::new(Version::V3, 4);
    let mut m = LrManager::new(Version::V3, 0, 4);
    enable_spi(&mut g, 36, 0x80);
    let mut fx = Effects::new();
    g.set_line(0, 36, true, &mut fx);
    assert_eq!(fx.as_slice(), [Effect::Pending { vcpu: 0, intid: 36 }]);
    m.flush(&mut g, &mut lrs);
    let lr = lrs.decoded()[0];
    assert!(lr.eoi && lr.pintid.is_none());
    assert_eq!(lrs.acknowledge(), 36);
    // The guest's handler clears the device (the line drops), then EOIs.
    m.fold(&mut g, &mut lrs);
    g.set_line(0, 36, false, &mut Effects::new());
    m.flush(&mut g, &mut lrs);
    assert_eq!(lrs.decoded()[0].state, LrState::Active, "not pending again");
    lrs.complete(36);
    m.fold(&mut g, &mut lrs);
    assert_eq!(m.flush(&mut g, &mut lrs).loaded, 0);
    // A line still high after EOI makes it pending again.
    g.set_line(0, 36, true, &mut Effects::new());
    m.flush(&mut g, &mut lrs);
    lrs.acknowledge();
    lrs.complete(36);
    m.fold(&mut g, &mut lrs);
    assert_eq!(m.flush(&mut g, &mut lrs).loaded, 1);
    // Edge-triggered: one latch per rising edge.
    let mut g = v3(1);
    enable_spi(&mut g, 37, 0x80);
    dw(&mut g, 0, reg::ICFGR + 8, 4, 2 << 10);
    assert_eq!(dr(&mut g, 0, reg::ICFGR + 8, 4), 2 << 10);
    g.set_line(0, 37, true, &mut Effects::new());
    g.set_line(0, 37, false, &mut Effects::new());
    assert!(g.irq(0, 37).unwrap().pending());
}

#[test]
fn sgi_and_ppi_configuration_is_fixed() {
    let mut g = v3(1);
    assert_eq!(rr(&mut g, 0, sgi_base(0) + reg::ICFGR, 4), 0xaaaa_aaaa);
    assert_eq!(rr(&mut g, 0, sgi_base(0) + reg::ICFGR + 4, 4), 0);
    rw(&mut g, 0, sgi_base(0) + reg::ICFGR, 4, 0);
    rw(&mut g, 0, sgi_base(0) + reg::ICFGR + 4, 4, !0);
    assert_eq!(rr(&mut g, 0, sgi_base(0) + reg::ICFGR, 4), 0xaaaa_aaaa);
    assert_eq!(rr(&mut g, 0, sgi_base(0) + reg::ICFGR + 4, 4), 0);
}

#[test]
fn v2_sgis_are_delivered_once_per_source() {
    let mut g = v2(3);
    let mut lrs = FakeLrs::new(Version::V2, 4);
    let mut m = LrManager::new(Version::V2, 0, 4);
    dw(&mut g, 0, reg::CTLR, 4, 1);
    dw(&mut g, 0, reg::ISENABLER, 4, 0xffff);
    dw(&mut g, 1, reg::SGIR, 4, 1 << 16 | 3);
    dw(&mut g, 2, reg::SGIR, 4, 1 << 16 | 3);
    assert_eq!(g.irq(0, 3).unwrap().sources, 0b110);
    let mut sources = Vec::new();
    for _ in 0..4 {
        m.flush(&mut g, &mut lrs);
        if let Some(lr) = lrs.decoded().first().copied() {
            assert_eq!(lrs.acknowledge(), 3);
            lrs.complete(3);
            sources.push(lr.source);
        }
        m.fold(&mut g, &mut lrs);
    }
    assert_eq!(sources, [1, 2]);
    assert!(!g.irq(0, 3).unwrap().pending());
}

#[test]
fn list_register_encodings_round_trip() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let states = [
        LrState::Invalid,
        LrState::Pending,
        LrState::Active,
        LrState::PendingActive,
    ];
    for _ in 0..10_000 {
        let r = next();
        let hw = r & 1 != 0;
        let lr3 = Lr {
            vintid: (r >> 8) as u32 % 1020,
            pintid: hw.then_some((r >> 20) as u32 % 1020),
            priority: (r >> 40) as u8,
            group1: r & 2 != 0,
            state: states[(r >> 2) as usize % 4],
            eoi: !hw && r & 4 != 0,
            source: 0,
        };
        assert_eq!(Lr::decode_v3(lr3.encode_v3()), lr3);
        let lr2 = Lr {
            priority: lr3.priority & 0xf8,
            source: if hw { 0 } else { (r >> 50) as u8 & 7 },
            ..lr3
        };
        assert_eq!(Lr::decode_v2(lr2.encode_v2()), lr2);
    }
    // Field positions, IHI 0069H 12.4.7 and IHI 0048B 5.3.11.
    let lr = Lr {
        vintid: 27,
        pintid: Some(27),
        priority: 0xa0,
        group1: true,
        state: LrState::Pending,
        eoi: false,
        source: 0,
    };
    assert_eq!(
        lr.encode_v3(),
        1 << 62 | 1 << 61 | 1 << 60 | 0xa0 << 48 | 27 << 32 | 27
    );
    assert_eq!(
        lr.encode_v2(),
        1 << 31 | 1 << 30 | 1 << 28 | 0x14 << 23 | 27 << 10 | 27
    );
    assert_eq!(count_from_vtr(Version::V2, 0x3f), 16);
    assert_eq!(count_from_vtr(Version::V3, 0x9000_0003), 4);
}

/// A tiny deterministic generator for the random-access tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_register_traffic_keeps_the_invariants() {
    // Hostile-guest items 21-25b at once: random offsets, widths and values
    // on every frame, interleaved with flushes and folds, never panic, never
    // give a physical effect for an interrupt the VM does not own, never
    // target a vCPU that does not exist, and never load a list register with
    // a disabled pending interrupt.
    for version in [Version::V3, Version::V2] {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let vcpus = 3;
        let mut g = Vgic::new(&VgicConfig::new(version, vcpus, 64)).unwrap();
        g.assign_hw(60, 200).unwrap();
        let mut lrs: Vec<_> = (0..vcpus).map(|_| FakeLrs::new(version, 4)).collect();
        let mut mgr: Vec<_> = (0..vcpus).map(|v| LrManager::new(version, v, 4)).collect();
        for step in 0..200_000 {
            let r = rng.next();
            let vcpu = (r % 4) as usize; // one index beyond the VM
            let size = [1u8, 2, 4, 8][(r >> 2) as usize % 4];
            let value = rng.next();
            let mut fx = Effects::new();
            let interesting = [
                0, 4, 8, 0x80, 0x100, 0x180, 0x200, 0x280, 0x300, 0x380, 0x400, 0x800, 0xc00,
                0xf00, 0xf10, 0xf20,
            ];
            let off = if r & (1 << 10) != 0 {
                interesting[(r >> 11) as usize % interesting.len()] + ((r >> 20) & 0x7f)
            } else {
                (r >> 11) & 0x7_ffff
            };
            match ((r >> 32) % 6, version) {
                (0, Version::V3) => {
                    let _ = g.gicd_v3_read(vcpu, off & 0xffff, size);
                }
                (1, Version::V3) => {
                    let _ = g.gicd_v3_write(vcpu, off & 0xffff, size, value, &mut fx);
                }
                (2, Version::V3) => {
                    let _ = g.gicr_read(vcpu, off, size);
                }
                (3, Version::V3) => {
                    let _ = g.gicr_write(
                        vcpu,
                        off | (0x1_0000 * ((r >> 40) & 1)),
                        size,
                        value,
                        &mut fx,
                    );
                }
                (0 | 2, Version::V2) => {
                    let _ = g.gicd_v2_read(vcpu, off & 0xfff, size);
                }
                (1 | 3, Version::V2) => {
                    let _ = g.gicd_v2_write(vcpu, off & 0xfff, size, value, &mut fx);
                }
                (4, _) => g.write_sgir_sysreg(vcpu, value, r & 1 << 50 != 0, &mut fx),
                _ => {
                    let v = vcpu % vcpus;
                    if r & (1 << 45) != 0 {
                        mgr[v].fold(&mut g, &mut lrs[v]);
                        mgr[v].flush(&mut g, &mut lrs[v]);
                        for lr in lrs[v].decoded() {
                            let irq = g.irq(v, lr.vintid).unwrap();
                            assert!(lr.state.active() || irq.enabled, "step {step}: {lr:?}");
                            assert_eq!(lr.pintid, irq.hw);
                        }
                    } else if lrs[v].acknowledge() != SPURIOUS_INTID && r & (1 << 46) != 0 {
                        let intid = lrs[v]
                            .decoded()
                            .iter()
                            .find(|l| l.state.active())
                            .map(|l| l.vintid);
                        if let Some(i) = intid {
                            lrs[v].complete(i);
                        }
                    }
                }
            }
            for e in fx.as_slice() {
                match *e {
                    Effect::PhysEnable { pintid, .. } => assert_eq!(pintid, 200),
                    Effect::PhysRoute { pintid, vcpu } => {
                        assert_eq!(pintid, 200);
                        assert!(vcpu < vcpus);
                    }
                    Effect::Pending { vcpu, intid } => {
                        assert!(vcpu < vcpus && intid < g.intid_limit())
                    }
                    Effect::Sgi { intid, targets } => {
                        assert!(intid < SGI_COUNT && targets.0 >> vcpus == 0)
                    }
                }
            }
        }
        // No interrupt is queued on two vCPUs at once, and at most one list
        // register of a vCPU holds an INTID.
        let mut spis = Vec::new();
        for l in &lrs {
            let mut seen: Vec<u32> = l.decoded().iter().map(|l| l.vintid).collect();
            spis.extend(seen.iter().copied().filter(|&i| i >= PRIVATE_COUNT));
            seen.sort_unstable();
            let n = seen.len();
            seen.dedup();
            assert_eq!(seen.len(), n);
        }
        let n = spis.len();
        spis.sort_unstable();
        spis.dedup();
        assert_eq!(spis.len(), n, "an SPI in two vCPUs' list registers");
    }
}
