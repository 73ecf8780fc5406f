//! The GICv3 distributor (IHI 0069H 12.9) and redistributors (12.10, 12.11).
//!
//! With affinity routing on, the distributor's registers for INTIDs 0-31
//! (IGROUPR0, ISENABLER0, ..., IPRIORITYR0-7, ICFGR0-1) are RAZ/WI and the
//! redistributor of each vCPU holds them; ITARGETSR, GICD_SGIR and the SGI
//! pending registers are RAZ/WI (12.9.4, "GICD_CTLR.ARE").

use super::{
    bitmap_register, ctlr, fits, id_register, reg, route_affinity, BadAccess, Effect, Effects,
    Version, Vgic, GICR_STRIDE, IIDR_VALUE, PRIVATE_COUNT,
};

/// GICD_TYPER.IDbits: 10 INTID bits (IHI 0069H 12.9.38), encoded as bits - 1.
const TYPER_IDBITS: u32 = 9 << 19;
/// GICD_TYPER.No1N: 1-of-N SPI routing is not supported.
const TYPER_NO1N: u32 = 1 << 25;
/// The IROUTER bits kept: Aff3 and Aff2-Aff0 (IRM is RAZ/WI with No1N).
const IROUTER_MASK: u64 = 0xff_00ff_ffff;
/// The redistributor's SGI_base frame, 64 KiB after RD_base.
const SGI_BASE: u64 = 0x1_0000;
/// GICR_WAKER.ProcessorSleep.
const WAKER_SLEEP: u32 = 1 << 1;
/// GICR_WAKER.ChildrenAsleep.
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// GICR_TYPER.Last: the last redistributor of the region.
const GICR_TYPER_LAST: u64 = 1 << 4;

/// Reads a 64-bit register whole or one 32-bit half.
fn half(value: u64, offset: u64, size: u8) -> u64 {
    if size == 8 {
        value
    } else {
        (value >> (8 * (offset & 4))) & 0xffff_ffff
    }
}

/// Writes a 64-bit register whole or one 32-bit half.
fn merge(old: u64, offset: u64, size: u8, value: u64) -> u64 {
    if size == 8 {
        value
    } else {
        let shift = 8 * (offset & 4);
        (old & !(0xffff_ffff << shift)) | ((value & 0xffff_ffff) << shift)
    }
}

/// The widths a distributor register takes.
fn gicd_widths(offset: u64) -> &'static [u8] {
    match offset {
        0x0400..0x0c00 => &[1, 4],
        0x6000..0x8000 => &[4, 8],
        _ => &[4],
    }
}

impl Vgic {
    /// A read of the GICv3 distributor by `vcpu`.
    pub fn gicd_v3_read(&mut self, vcpu: usize, offset: u64, size: u8) -> Result<u64, BadAccess> {
        if self.version != Version::V3
            || vcpu >= self.vcpus()
            || !fits(offset, size, gicd_widths(offset))
        {
            return Err(BadAccess);
        }
        let limit = self.intid_limit();
        let value = match offset {
            reg::CTLR => u64::from(self.ctlr | ctlr::ARE | ctlr::DS),
            reg::TYPER => {
                let lines = limit / 32 - 1;
                let cpus = (self.vcpus().min(8) as u32 - 1) << 5;
                u64::from(lines | cpus | TYPER_IDBITS | TYPER_NO1N)
            }
            reg::IIDR => u64::from(IIDR_VALUE),
            0x0080..0x0400 => match bitmap_register(offset) {
                Some((_, 0)) | None => 0,
                Some((base, first)) => u64::from(self.read_bitmap(vcpu, base, first)),
            },
            reg::IPRIORITYR..reg::ITARGETSR => {
                let first = (offset - reg::IPRIORITYR) as u32;
                if first < PRIVATE_COUNT {
                    0
                } else {
                    u64::from(self.read_priority(vcpu, first, size))
                }
            }
            reg::ICFGR..0x0d00 => {
                let first = ((offset - reg::ICFGR) / 4 * 16) as u32;
                if first < PRIVATE_COUNT {
                    0
                } else {
                    u64::from(self.read_config(vcpu, first))
                }
            }
            0x6000..0x8000 => {
                let n = ((offset - reg::IROUTER) / 8) as usize;
                let value = n
                    .checked_sub(PRIVATE_COUNT as usize)
                    .and_then(|i| self.irouter.get(i))
                    .copied()
                    .unwrap_or(0);
                half(value, offset, size)
            }
            0xffd0..=0xffff => u64::from(id_register(offset & 0xfff, 3)),
            // ITARGETSR, IGRPMODR, NSACR, SGIR, the SGI pending registers,
            // the message-based SPI registers and reserved space.
            _ => 0,
        };
        Ok(value)
    }

    /// A write to the GICv3 distributor by `vcpu`.
    pub fn gicd_v3_write(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u64,
        fx: &mut Effects,
    ) -> Result<(), BadAccess> {
        if self.version != Version::V3
            || vcpu >= self.vcpus()
            || !fits(offset, size, gicd_widths(offset))
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
                    if first >= PRIVATE_COUNT {
                        self.write_bitmap(vcpu, base, first, word, fx);
                    }
                }
            }
            reg::IPRIORITYR..reg::ITARGETSR => {
                let first = (offset - reg::IPRIORITYR) as u32;
                if first >= PRIVATE_COUNT {
                    self.write_priority(vcpu, first, size, word);
                }
            }
            reg::ICFGR..0x0d00 => {
                let first = ((offset - reg::ICFGR) / 4 * 16) as u32;
                self.write_config(first, word);
            }
            0x6000..0x8000 => {
                let n = ((offset - reg::IROUTER) / 8) as u32;
                self.write_irouter(n, offset, size, value, fx);
            }
            // Read-only (TYPER, IIDR, ID registers), RAZ/WI with affinity
            // routing (ITARGETSR, SGIR, SGI pending), and reserved space.
            _ => {}
        }
        Ok(())
    }

    fn write_irouter(&mut self, intid: u32, offset: u64, size: u8, value: u64, fx: &mut Effects) {
        let Some(n) = intid.checked_sub(PRIVATE_COUNT) else {
            return;
        };
        let Some(slot) = self.irouter.get_mut(n as usize) else {
            return;
        };
        let old = *slot;
        let new = merge(old, offset, size, value) & IROUTER_MASK;
        *slot = new;
        if route_affinity(old) == route_affinity(new) {
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

    /// Which redistributor frame an offset into the redistributor region
    /// falls in, and the offset inside it.
    fn gicr_frame(&self, offset: u64) -> Option<(usize, u64)> {
        let frame = usize::try_from(offset / GICR_STRIDE).ok()?;
        (frame < self.vcpus()).then_some((frame, offset % GICR_STRIDE))
    }

    /// A read of the redistributor region (one 128 KiB frame pair per vCPU,
    /// frame n for vCPU n) by `vcpu`. Any vCPU may read any frame; it sees
    /// that frame's vCPU's state.
    pub fn gicr_read(&mut self, vcpu: usize, offset: u64, size: u8) -> Result<u64, BadAccess> {
        if self.version != Version::V3 || vcpu >= self.vcpus() {
            return Err(BadAccess);
        }
        let Some((frame, off)) = self.gicr_frame(offset) else {
            return if fits(offset, size, &[4, 8]) {
                Ok(0)
            } else {
                Err(BadAccess)
            };
        };
        if !fits(off, size, gicr_widths(off)) {
            return Err(BadAccess);
        }
        let value = match off {
            // GICR_CTLR: no LPIs, writes complete at once (RWP, UWP 0).
            0x0000 => 0,
            0x0004 => u64::from(IIDR_VALUE),
            0x0008..0x0010 => {
                let aff = self.affinities.get(frame).copied().unwrap_or(0);
                let last = if frame + 1 == self.vcpus() {
                    GICR_TYPER_LAST
                } else {
                    0
                };
                let typer = u64::from(aff) << 32 | (frame as u64) << 8 | last;
                half(typer, off, size)
            }
            0x0014 => u64::from(if self.asleep.get(frame).copied().unwrap_or(true) {
                WAKER_SLEEP | WAKER_CHILDREN_ASLEEP
            } else {
                0
            }),
            0xffd0..=0xffff => u64::from(id_register(off & 0xfff, 3)),
            o if o >= SGI_BASE => u64::from(self.sgi_base_read(frame, o - SGI_BASE, size)),
            // STATUSR, PROPBASER, PENDBASER (no LPIs), reserved space.
            _ => 0,
        };
        Ok(value)
    }

    /// A write to the redistributor region by `vcpu` (see [`Vgic::gicr_read`]).
    pub fn gicr_write(
        &mut self,
        vcpu: usize,
        offset: u64,
        size: u8,
        value: u64,
        fx: &mut Effects,
    ) -> Result<(), BadAccess> {
        if self.version != Version::V3 || vcpu >= self.vcpus() {
            return Err(BadAccess);
        }
        let Some((frame, off)) = self.gicr_frame(offset) else {
            return if fits(offset, size, &[4, 8]) {
                Ok(())
            } else {
                Err(BadAccess)
            };
        };
        if !fits(off, size, gicr_widths(off)) {
            return Err(BadAccess);
        }
        match off {
            0x0014 => {
                if let Some(asleep) = self.asleep.get_mut(frame) {
                    *asleep = value as u32 & WAKER_SLEEP != 0;
                }
            }
            o if o >= SGI_BASE => self.sgi_base_write(frame, o - SGI_BASE, size, value as u32, fx),
            // CTLR (EnableLPIs RAZ/WI), IIDR, TYPER, ID registers (read-only),
            // STATUSR, PROPBASER, PENDBASER, reserved space.
            _ => {}
        }
        Ok(())
    }

    /// The SGI_base frame of vCPU `frame`'s redistributor (IHI 0069H 12.11).
    fn sgi_base_read(&self, frame: usize, off: u64, size: u8) -> u32 {
        match off {
            0x0080..0x0400 => match bitmap_register(off) {
                Some((base, 0)) => self.read_bitmap(frame, base, 0),
                _ => 0,
            },
            0x0400..0x0420 => self.read_priority(frame, (off - 0x0400) as u32, size),
            0x0c00 => self.read_config(frame, 0),
            0x0c04 => self.read_config(frame, 16),
            _ => 0,
        }
    }

    fn sgi_base_write(&mut self, frame: usize, off: u64, size: u8, value: u32, fx: &mut Effects) {
        match off {
            0x0080..0x0400 => {
                if let Some((base, 0)) = bitmap_register(off) {
                    self.write_bitmap(frame, base, 0, value, fx);
                }
            }
            0x0400..0x0420 => self.write_priority(frame, (off - 0x0400) as u32, size, value),
            // ICFGR0 (SGIs, always edge) and ICFGR1 (PPIs, fixed level)
            // are read-only; IGRPMODR0 and NSACR are RAZ/WI.
            _ => {}
        }
    }
}

/// The widths a redistributor register takes.
fn gicr_widths(off: u64) -> &'static [u8] {
    match off {
        0x0008..0x0010 | 0x0070..0x0080 => &[4, 8],
        o if (SGI_BASE + 0x0400..SGI_BASE + 0x0420).contains(&o) => &[1, 4],
        _ => &[4],
    }
}
