//! The GICv2 distributor (IHI 0048B.b 4.3), without the Security
//! Extensions. The registers for INTIDs 0-31 are banked: each vCPU reaches
//! its own SGIs and PPIs at the same offsets. The CPU interface is the
//! hardware's GICV frame, mapped at the guest's GICC address; nothing here
//! emulates it.

use super::{
    bitmap_register, ctlr, fits, id_register, reg, BadAccess, Effect, Effects, VcpuSet, Version,
    Vgic, IIDR_VALUE, PRIVATE_COUNT, SGI_COUNT,
};

/// The widths a GICv2 distributor register takes.
fn widths(offset: u64) -> &'static [u8] {
    match offset {
        0x0400..0x0c00 | 0x0f10..0x0f30 => &[1, 4],
        _ => &[4],
    }
}

impl Vgic {
    /// The CPU-target bits of vCPUs this VM has.
    fn cpu_mask(&self) -> u8 {
        (((1u16 << self.vcpus()) - 1) & 0xff) as u8
    }

    /// A read of the GICv2 distributor by `vcpu`.
    pub fn gicd_v2_read(&mut self, vcpu: usize, offset: u64, size: u8) -> Result<u64, BadAccess> {
        if self.version != Version::V2
            || vcpu >= self.vcpus()
            || !fits(offset, size, widths(offset))
        {
            return Err(BadAccess);
        }
        let value = match offset {
            reg::CTLR => self.ctlr,
            reg::TYPER => (self.intid_limit() / 32 - 1) | (self.vcpus() as u32 - 1) << 5,
            reg::IIDR => IIDR_VALUE,
            0x0080..0x0400 => match bitmap_register(offset) {
                Some((base, first)) => self.read_bitmap(vcpu, base, first),
                None => 0,
            },
            reg::IPRIORITYR..reg::ITARGETSR => {
                self.read_priority(vcpu, (offset - reg::IPRIORITYR) as u32, size)
            }
            reg::ITARGETSR..reg::ICFGR => {
                let first = (offset - reg::ITARGETSR) as u32;
                (0..u32::from(size)).fold(0, |acc, i| {
                    acc | u32::from(self.read_target(vcpu, first + i)) << (8 * i)
                })
            }
            reg::ICFGR..0x0d00 => self.read_config(vcpu, ((offset - reg::ICFGR) / 4 * 16) as u32),
            reg::CPENDSGIR..0x0f30 => {
                // Byte n of the 16 is SGI n.
                let first = (offset & 0xf) as u32;
                (0..u32::from(size)).fold(0, |acc, i| {
                    let sources = self
                        .irq(vcpu, first + i)
                        .filter(|_| first + i < SGI_COUNT)
                        .map_or(0, |irq| irq.sources);
                    acc | u32::from(sources) << (8 * i)
                })
            }
            0x0fd0..=0x0fff => id_register(offset, 2),
            // SGIR is write-only; PPISR/SPISR, NSACR and reserved space.
            _ => 0,
        };
        Ok(u64::from(value))
    }

    /// ITARGETSR byte for `intid` as `vcpu` reads it: for SGIs and PPIs the
    /// reading CPU's own bit (IHI 0048B 4.3.12).
    fn read_target(&self, vcpu: usize, intid: u32) -> u8 {
        if intid >= self.intid_limit() {
            0
        } else if intid < PRIVATE_COUNT {
            1 << (vcpu & 7)
        } else {
            self.targets
                .get((intid - PRIVATE_COUNT) as usize)
                .copied()
                .unwrap_or(0)
        }
    }

    /// A write to the GICv2 distributor by `vcpu`.
    pub fn gicd_v2_write(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u64,
        fx: &mut Effects,
    ) -> Result<(), BadAccess> {
        if self.version != Version::V2
            || vcpu >= self.vcpus()
            || !fits(offset, size, widths(offset))
        {
            return Err(BadAccess);
        }
        let word = value as u32;
        match offset {
            reg::CTLR => {
                let before = self.ctlr;
                self.ctlr = word & (ctlr::GRP0 | ctlr::GRP1);
                if self.ctlr & !before != 0 {
                    self.notify_all(fx);
                }
            }
            0x0080..0x0400 => {
                if let Some((base, first)) = bitmap_register(offset) {
                    self.write_bitmap(vcpu, base, first, word, fx);
                }
            }
            reg::IPRIORITYR..reg::ITARGETSR => {
                self.write_priority(vcpu, (offset - reg::IPRIORITYR) as u32, size, word)
            }
            reg::ITARGETSR..reg::ICFGR => {
                let first = (offset - reg::ITARGETSR) as u32;
                for i in 0..u32::from(size) {
                    self.write_target(first + i, (word >> (8 * i)) as u8, fx);
                }
            }
            reg::ICFGR..0x0d00 => self.write_config(((offset - reg::ICFGR) / 4 * 16) as u32, word),
            reg::SGIR => self.write_sgir(vcpu, word, fx),
            reg::CPENDSGIR..0x0f30 => {
                let set = offset >= reg::SPENDSGIR;
                let first = (offset & 0xf) as u32;
                for i in 0..u32::from(size) {
                    let bits = (word >> (8 * i)) as u8 & self.cpu_mask();
                    self.write_sgi_pending(vcpu, first + i, bits, set, fx);
                }
            }
            // TYPER, IIDR, ID registers (read-only), PPISR/SPISR, NSACR,
            // reserved space.
            _ => {}
        }
        Ok(())
    }

    /// ITARGETSR for an SPI: the bits of CPUs that do not exist are dropped;
    /// SGI and PPI bytes are read-only.
    fn write_target(&mut self, intid: u32, bits: u8, fx: &mut Effects) {
        let Some(n) = intid.checked_sub(PRIVATE_COUNT) else {
            return;
        };
        let mask = self.cpu_mask();
        let Some(slot) = self.targets.get_mut(n as usize) else {
            return;
        };
        let old = *slot;
        *slot = bits & mask;
        if old == *slot {
            return;
        }
        let target = self.spi_target(intid);
        let hw = self.irq(0, intid).and_then(|i| i.hw);
        if let (Some(pintid), Some(vcpu)) = (hw, target) {
            fx.push(Effect::PhysRoute { pintid, vcpu });
        }
        if let Some(t) = target {
            self.notify(intid, t, fx);
        }
    }

    /// GICD_SGIR (IHI 0048B 4.3.15). The reserved filter 0b11 sends nothing.
    fn write_sgir(&mut self, vcpu: usize, word: u32, fx: &mut Effects) {
        let intid = word & 0xf;
        let list = ((word >> 16) & 0xff) as u8 & self.cpu_mask();
        let mut targets = VcpuSet::default();
        match (word >> 24) & 3 {
            0 => targets.0 = u64::from(list),
            1 => {
                for v in (0..self.vcpus()).filter(|&v| v != vcpu) {
                    targets.insert(v);
                }
            }
            2 => targets.insert(vcpu),
            _ => return,
        }
        self.raise_sgi(vcpu, intid, targets, None, fx);
    }

    /// SPENDSGIR / CPENDSGIR byte for SGI `intid` of `vcpu`: one bit per
    /// source CPU.
    fn write_sgi_pending(
        &mut self,
        vcpu: usize,
        intid: u32,
        bits: u8,
        set: bool,
        fx: &mut Effects,
    ) {
        if intid >= SGI_COUNT || bits == 0 {
            return;
        }
        let Some(irq) = self.irq_mut(vcpu, intid) else {
            return;
        };
        if set {
            irq.sources |= bits;
        } else {
            irq.sources &= !bits;
        }
        irq.latch = irq.sources != 0;
        if set {
            self.notify(intid, vcpu, fx);
        }
    }
}
