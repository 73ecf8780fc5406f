//! Finding the functions below a host bridge: bus numbering, BAR and ROM
//! sizing, bridge windows as firmware left them.

#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::*;
use crate::pci::ecam::{regs, ConfigAccess};
use crate::pci::types::{Bar, BarKind, Bdf};

pub(super) struct Enumerator<'c, C> {
    pub(super) cfg: &'c mut C,
    pub(super) out: Vec<HostFunction>,
    pub(super) next_bus: u16,
    pub(super) bus_end: u8,
}

impl<C: ConfigAccess> Enumerator<'_, C> {
    pub(super) fn scan_bus(&mut self, bus: u8, parent: Option<usize>) {
        for device in 0..32 {
            let Some(f0) = Bdf::new(bus, device, 0) else {
                continue;
            };
            if !present(self.cfg.read16(f0, regs::VENDOR_ID)) {
                continue;
            }
            let multi = self.cfg.read8(f0, regs::HEADER_TYPE) & regs::HEADER_MULTI_FUNCTION != 0;
            for function in 0..if multi { 8 } else { 1 } {
                let Some(bdf) = Bdf::new(bus, device, function) else {
                    continue;
                };
                if !present(self.cfg.read16(bdf, regs::VENDOR_ID)) {
                    continue;
                }
                let idx = self.probe_function(bdf, parent);
                if self.out.get(idx).is_some_and(|f| f.is_bridge) {
                    self.scan_bridge(idx, bus);
                }
            }
        }
    }

    pub(super) fn scan_bridge(&mut self, idx: usize, bus: u8) {
        let Some(bdf) = self.out.get(idx).map(|f| f.bdf) else {
            return;
        };
        let cfg = &mut *self.cfg;
        cfg.write8(bdf, regs::PRIMARY_BUS, bus);
        if self.next_bus > u16::from(self.bus_end) {
            // No bus number left: route nothing.
            cfg.write8(bdf, regs::SUBORDINATE_BUS, 0);
            cfg.write8(bdf, regs::SECONDARY_BUS, 0);
            return;
        }
        let secondary = self.next_bus as u8;
        self.next_bus += 1;
        cfg.write8(bdf, regs::SECONDARY_BUS, secondary);
        // Everything up to the last bus routes through while scanning below.
        cfg.write8(bdf, regs::SUBORDINATE_BUS, self.bus_end);
        self.scan_bus(secondary, Some(idx));
        let subordinate = (self.next_bus - 1) as u8;
        self.cfg.write8(bdf, regs::SUBORDINATE_BUS, subordinate);
        if let Some(b) = self.out.get_mut(idx).and_then(|f| f.bridge.as_mut()) {
            b.secondary = secondary;
            b.subordinate = subordinate;
        }
    }

    pub(super) fn probe_function(&mut self, bdf: Bdf, parent: Option<usize>) -> usize {
        let cfg = &mut *self.cfg;
        let vendor_id = cfg.read16(bdf, regs::VENDOR_ID);
        let device_id = cfg.read16(bdf, regs::DEVICE_ID);
        let class_rev = cfg.read32(bdf, regs::CLASS_REV);
        let header = cfg.read8(bdf, regs::HEADER_TYPE);
        let header_type = header & 0x7f;
        let is_bridge = header_type == regs::HEADER_TYPE_BRIDGE;
        let caps = walk_caps(cfg, bdf);
        let command = cfg.read16(bdf, regs::COMMAND);
        cfg.write16(
            bdf,
            regs::COMMAND,
            command & !(regs::CMD_MEMORY | regs::CMD_IO),
        );
        let mut refusal = None;
        let nbars = match header_type {
            regs::HEADER_TYPE_ENDPOINT => 6,
            regs::HEADER_TYPE_BRIDGE => 2,
            _ => {
                refusal = Some(format!("unknown header type {header_type:#x}"));
                0
            }
        };
        let (bars, malformed) = size_bars(cfg, bdf, nbars);
        if let Some(why) = malformed {
            refusal = Some(why);
        }
        let rom_size = match header_type {
            regs::HEADER_TYPE_ENDPOINT => size_rom(cfg, bdf, regs::ROM_BAR),
            regs::HEADER_TYPE_BRIDGE => size_rom(cfg, bdf, regs::BRIDGE_ROM_BAR),
            _ => 0,
        };
        let bridge = is_bridge.then(|| bridge_info(cfg, bdf));
        cfg.write16(bdf, regs::COMMAND, command);
        self.out.push(HostFunction {
            bdf,
            vendor_id,
            device_id,
            class_rev,
            header_type,
            multi_function: header & regs::HEADER_MULTI_FUNCTION != 0,
            is_bridge,
            parent,
            bars,
            rom_size,
            caps,
            command,
            bridge,
            refusal,
        });
        self.out.len() - 1
    }
}

pub(super) fn present(vendor: u16) -> bool {
    vendor != 0xffff && vendor != 0
}

/// Writes all ones to the dword at `off`, reads the mask back, restores it.
pub(super) fn size_reg(cfg: &mut impl ConfigAccess, bdf: Bdf, off: u16) -> (u32, u32) {
    let orig = cfg.read32(bdf, off);
    cfg.write32(bdf, off, u32::MAX);
    let mask = cfg.read32(bdf, off);
    cfg.write32(bdf, off, orig);
    (orig, mask)
}

/// Sizes BARs 0..`n`; decoding must be off. Returns them and, for a BAR
/// that cannot be right, why.
pub(super) fn size_bars(
    cfg: &mut impl ConfigAccess,
    bdf: Bdf,
    n: u8,
) -> ([Option<HostBar>; 6], Option<String>) {
    let mut bars = [None; 6];
    let mut malformed = None;
    let mut i = 0u8;
    while i < n {
        let off = regs::BAR0 + 4 * u16::from(i);
        let (orig, mask) = size_reg(cfg, bdf, off);
        let index = i;
        i += 1;
        if mask == 0 || mask == u32::MAX {
            continue; // not implemented, or the function went away
        }
        let (kind, prefetchable, size, addr) = if orig & 1 == 1 {
            let m = mask & !0x3;
            if m == 0 {
                continue;
            }
            (
                BarKind::Io,
                false,
                1u64 << m.trailing_zeros(),
                u64::from(orig & !0x3),
            )
        } else {
            let prefetchable = orig & 0x8 != 0;
            match (orig >> 1) & 0x3 {
                0b10 => {
                    if i >= n {
                        malformed = Some(format!("BAR{index} is 64-bit but is the last BAR"));
                        continue;
                    }
                    let (orig_hi, mask_hi) = size_reg(cfg, bdf, off + 4);
                    i += 1;
                    let m = (u64::from(mask_hi) << 32) | u64::from(mask & !0xf);
                    if m == 0 {
                        continue;
                    }
                    let addr = (u64::from(orig_hi) << 32) | u64::from(orig & !0xf);
                    (
                        BarKind::Mem64,
                        prefetchable,
                        1u64 << m.trailing_zeros(),
                        addr,
                    )
                }
                0b00 | 0b01 => {
                    let m = mask & !0xf;
                    if m == 0 {
                        continue;
                    }
                    let addr = u64::from(orig & !0xf);
                    (
                        BarKind::Mem32,
                        prefetchable,
                        1u64 << m.trailing_zeros(),
                        addr,
                    )
                }
                _ => {
                    malformed = Some(format!("BAR{index} has the reserved memory type 0b11"));
                    continue;
                }
            }
        };
        if let Some(slot) = bars.get_mut(usize::from(index)) {
            *slot = Some(HostBar {
                bar: Bar {
                    index,
                    kind,
                    prefetchable,
                    size,
                    host_addr: PhysAddr::new(0),
                    pci_addr: 0,
                },
                assigned: false,
                firmware_kept: false,
                firmware_addr: addr,
            });
        }
    }
    (bars, malformed)
}

/// Sizes an expansion ROM BAR (enable bit clear while sized); 0 if none.
pub(super) fn size_rom(cfg: &mut impl ConfigAccess, bdf: Bdf, off: u16) -> u64 {
    let orig = cfg.read32(bdf, off);
    cfg.write32(bdf, off, 0xffff_f800);
    let mask = cfg.read32(bdf, off) & 0xffff_f800;
    cfg.write32(bdf, off, orig);
    if mask == 0 || cfg.read16(bdf, regs::VENDOR_ID) == 0xffff {
        0
    } else {
        1u64 << mask.trailing_zeros()
    }
}

/// A bridge's window capabilities and firmware's windows.
pub(super) fn bridge_info(cfg: &mut impl ConfigAccess, bdf: Bdf) -> BridgeInfo {
    let mem_base = u64::from(cfg.read16(bdf, regs::MEMORY_BASE) & 0xfff0) << 16;
    let mem_limit = (u64::from(cfg.read16(bdf, regs::MEMORY_LIMIT) & 0xfff0) << 16) | 0xf_ffff;
    let mem = (mem_base <= mem_limit).then_some((mem_base, mem_limit + 1));

    let pref_base_reg = cfg.read16(bdf, regs::PREF_BASE);
    let has_pref = if pref_base_reg != 0 {
        true
    } else {
        // Optional: an unimplemented window reads 0 and ignores writes.
        cfg.write16(bdf, regs::PREF_BASE, 0xfff0);
        let probe = cfg.read16(bdf, regs::PREF_BASE);
        cfg.write16(bdf, regs::PREF_BASE, pref_base_reg);
        probe != 0
    };
    let pref64 = has_pref && pref_base_reg & 0xf == 1;
    let mut pref = None;
    if has_pref {
        let mut base = u64::from(pref_base_reg & 0xfff0) << 16;
        let mut limit = (u64::from(cfg.read16(bdf, regs::PREF_LIMIT) & 0xfff0) << 16) | 0xf_ffff;
        if pref64 {
            base |= u64::from(cfg.read32(bdf, regs::PREF_BASE_UPPER)) << 32;
            limit |= u64::from(cfg.read32(bdf, regs::PREF_LIMIT_UPPER)) << 32;
        }
        if base <= limit {
            pref = limit.checked_add(1).map(|end| (base, end));
        }
    }
    BridgeInfo {
        secondary: 0,
        subordinate: 0,
        mem,
        pref,
        has_pref,
        pref64,
    }
}

// ---------------------------------------------------------------------------
// Placement.
