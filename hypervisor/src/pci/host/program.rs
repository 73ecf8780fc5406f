//! Writing the placements into the functions' and bridges' registers.

#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use super::*;
use crate::pci::ecam::{regs, ConfigAccess};
use crate::pci::types::BarKind;

/// Writes the placements into the hardware.
pub(super) fn program(cfg: &mut impl ConfigAccess, funcs: &mut [HostFunction]) {
    for f in funcs.iter_mut() {
        let bdf = f.bdf;
        let cmd = cfg.read16(bdf, regs::COMMAND);
        cfg.write16(bdf, regs::COMMAND, cmd & !(regs::CMD_MEMORY | regs::CMD_IO));
        let mut unplaced = false;
        for hb in f.bars.iter().flatten() {
            let off = regs::BAR0 + 4 * u16::from(hb.bar.index);
            match (hb.bar.kind, hb.assigned) {
                (BarKind::Io, _) => {}
                (_, false) => unplaced = true,
                (BarKind::Mem32, true) => cfg.write32(bdf, off, hb.bar.pci_addr as u32),
                (BarKind::Mem64, true) => {
                    cfg.write32(bdf, off, hb.bar.pci_addr as u32);
                    cfg.write32(bdf, off + 4, (hb.bar.pci_addr >> 32) as u32);
                }
            }
        }
        let mut new_cmd = f.command;
        if unplaced {
            new_cmd &= !regs::CMD_MEMORY;
        }
        if let Some(br) = f.bridge {
            let (mb, ml) = match br.mem {
                Some((a, b)) => (
                    ((a >> 16) as u16) & 0xfff0,
                    (((b - 1) >> 16) as u16) & 0xfff0,
                ),
                None => (0xfff0, 0),
            };
            cfg.write16(bdf, regs::MEMORY_BASE, mb);
            cfg.write16(bdf, regs::MEMORY_LIMIT, ml);
            if br.has_pref {
                let (pb, pl) = br.pref.map_or((0xfff0_0000, 0), |(a, b)| (a, b - 1));
                cfg.write16(bdf, regs::PREF_BASE, ((pb >> 16) as u16) & 0xfff0);
                cfg.write16(bdf, regs::PREF_LIMIT, ((pl >> 16) as u16) & 0xfff0);
                if br.pref64 {
                    cfg.write32(bdf, regs::PREF_BASE_UPPER, (pb >> 32) as u32);
                    cfg.write32(bdf, regs::PREF_LIMIT_UPPER, (pl >> 32) as u32);
                }
            }
            if br.mem.is_some() || br.pref.is_some() {
                new_cmd |= regs::CMD_MEMORY | regs::CMD_BUS_MASTER;
            }
        }
        cfg.write16(bdf, regs::COMMAND, new_cmd);
        f.command = new_cmd;
    }
}
