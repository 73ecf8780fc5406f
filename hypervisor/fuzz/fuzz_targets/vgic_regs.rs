//! The emulated GIC (GICv3 or GICv2, 1-4 vCPUs, one SPI backed by a
//! physical interrupt) driven by arbitrary register accesses of any width and
//! offset from any vCPU index, trapped SGI register writes, line changes,
//! physical injections, and list-register flushes and folds with a guest
//! acknowledging and completing what it finds. After every step: no panic;
//! physical effects name only the owned interrupt and existing vCPUs; no
//! effect names a vCPU or INTID that does not exist; a list register never
//! holds an INTID the vGIC does not have or a HW bit it did not assign, and
//! no SPI sits in two vCPUs' list registers.
#![no_main]

use hypervisor::devices::vgic::lr::{ListRegisters, Lr, LrManager, LrState};
use hypervisor::devices::vgic::{Effect, Effects, Version, Vgic, VgicConfig, PRIVATE_COUNT};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const OWNED_SPI: u32 = 40;
const OWNED_PINTID: u32 = 300;

struct Lrs(Vec<u64>, Version);

impl ListRegisters for Lrs {
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

impl Lrs {
    fn decode(&self, v: u64) -> Lr {
        match self.1 {
            Version::V3 => Lr::decode_v3(v),
            Version::V2 => Lr::decode_v2(v),
        }
    }
    fn encode(&self, lr: &Lr) -> u64 {
        match self.1 {
            Version::V3 => lr.encode_v3(),
            Version::V2 => lr.encode_v2(),
        }
    }
    /// The guest moves register `i` one step: pending -> active -> done.
    fn step(&mut self, i: usize) {
        let Some(&raw) = self.0.get(i) else { return };
        let mut lr = self.decode(raw);
        lr.state = match lr.state {
            LrState::Pending => LrState::Active,
            LrState::PendingActive => LrState::Pending,
            _ => LrState::Invalid,
        };
        self.0[i] = self.encode(&lr);
    }
}

fn run(u: &mut Unstructured) -> Result<()> {
    let version = if u.arbitrary()? {
        Version::V3
    } else {
        Version::V2
    };
    let vcpus = u.int_in_range(1..=4)?;
    let spis = u.int_in_range(0..=96)?;
    let Ok(mut g) = Vgic::new(&VgicConfig::new(version, vcpus, spis)) else {
        return Ok(());
    };
    let owned = g.assign_hw(OWNED_SPI, OWNED_PINTID).is_ok();
    let lr_count = u.int_in_range(1..=16)?;
    let mut lrs: Vec<Lrs> = (0..vcpus)
        .map(|_| Lrs(vec![0; lr_count], version))
        .collect();
    let mut mgr: Vec<LrManager> = (0..vcpus)
        .map(|v| LrManager::new(version, v, lr_count))
        .collect();
    while !u.is_empty() {
        let vcpu = u.int_in_range(0..=vcpus)?;
        let size = if u.ratio(7, 8)? {
            *u.choose(&[1u8, 2, 4, 8])?
        } else {
            u.arbitrary()?
        };
        let offset: u64 = if u.arbitrary()? {
            u.int_in_range(0..=0x1000)?
        } else {
            u.arbitrary::<u32>()?.into()
        };
        let value: u64 = u.arbitrary()?;
        let mut fx = Effects::new();
        match u.int_in_range(0..=7)? {
            0 => match version {
                Version::V3 => drop(g.gicd_v3_read(vcpu, offset, size).ok()),
                Version::V2 => drop(g.gicd_v2_read(vcpu, offset, size).ok()),
            },
            1 => match version {
                Version::V3 => drop(g.gicd_v3_write(vcpu, offset, size, value, &mut fx).ok()),
                Version::V2 => drop(g.gicd_v2_write(vcpu, offset, size, value, &mut fx).ok()),
            },
            2 => drop(g.gicr_read(vcpu, offset, size).ok()),
            3 => drop(g.gicr_write(vcpu, offset, size, value, &mut fx).ok()),
            4 => g.write_sgir_sysreg(vcpu, value, u.arbitrary()?, &mut fx),
            5 => g.set_line(vcpu, value as u32 % 1100, u.arbitrary()?, &mut fx),
            6 => drop(g.inject_hw(vcpu % vcpus, value as u32 % 400, &mut fx)),
            _ => {
                let v = vcpu % vcpus;
                if u.arbitrary()? {
                    mgr[v].fold(&mut g, &mut lrs[v]);
                    mgr[v].flush(&mut g, &mut lrs[v]);
                } else {
                    let i = u.int_in_range(0..=lr_count)?;
                    lrs[v].step(i);
                }
            }
        }
        for e in fx.as_slice() {
            match *e {
                Effect::PhysEnable { pintid, .. } => assert!(owned && pintid == OWNED_PINTID),
                Effect::PhysRoute { pintid, vcpu } => {
                    assert!(owned && pintid == OWNED_PINTID && vcpu < vcpus)
                }
                Effect::Pending { vcpu, intid } => {
                    assert!(vcpu < vcpus && intid < g.intid_limit())
                }
                Effect::Sgi { intid, targets } => {
                    assert!(intid < 16 && !targets.is_empty() && targets.0 >> vcpus == 0)
                }
            }
        }
        let mut spis_loaded = Vec::new();
        for (v, l) in lrs.iter().enumerate() {
            for lr in l.0.iter().map(|&raw| l.decode(raw)) {
                if lr.state == LrState::Invalid {
                    continue;
                }
                let irq = g.irq(v, lr.vintid).expect("loaded INTIDs exist");
                assert_eq!(lr.pintid, irq.hw);
                if lr.vintid >= PRIVATE_COUNT {
                    spis_loaded.push(lr.vintid);
                }
            }
        }
        let n = spis_loaded.len();
        spis_loaded.sort_unstable();
        spis_loaded.dedup();
        assert_eq!(n, spis_loaded.len(), "an SPI in two vCPUs' list registers");
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
