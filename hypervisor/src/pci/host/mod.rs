//! Host enumeration: finds every function below a host bridge, numbers the
//! buses behind bridges, sizes and places the memory BARs inside the host
//! bridge's windows, programs the bridges' windows, and decides which
//! functions may not be passed through (hostile-guest items 36 and 37).
//!
//! # Rules followed
//!
//! * Buses: depth-first from the host bridge's first bus; every bridge gets
//!   the next free secondary bus number and a subordinate bus number covering
//!   what is below it (firmware's numbering is not kept). A bridge met when
//!   the bus numbers run out gets none, and nothing behind it is seen.
//! * BAR sizing: memory and I/O decoding are off in the Command register
//!   while a BAR holds all ones, then the Command register is restored.
//! * Placement: every memory BAR is naturally aligned. Non-prefetchable BARs
//!   go only into non-prefetchable windows; prefetchable ones prefer a
//!   prefetchable window and fall back to a non-prefetchable one; 32-bit BARs
//!   stay below 4 GiB; 64-bit BARs try windows reaching above 4 GiB first.
//!   A bridge's non-prefetchable window is 32-bit (the register is); its
//!   prefetchable window is 64-bit when the bridge implements that.
//!   Bridge windows have 1 MiB granularity and cover everything behind them.
//! * Firmware's placement is kept where valid: inside a window of a matching
//!   kind, naturally aligned (bridge windows: big and aligned enough for what
//!   is behind them), and not overlapping anything kept before. If keeping
//!   firmware's choices leaves something that cannot be placed, everything is
//!   placed afresh.
//! * Placements this code makes give every BAR at least a 4 KiB page of its
//!   own, so stage 2 can map each device's BARs alone. Firmware placements
//!   that share a page with another function's BAR are kept (the host may
//!   rely on them) but make both functions ineligible for passthrough.
//! * I/O BARs are sized and reported but neither placed nor passed through:
//!   arm64 hosts reach I/O space only through a memory window, and guests of
//!   this hypervisor get memory BARs only. Their registers, and the bridges'
//!   I/O windows, are left as firmware set them.
//! * Expansion ROMs are sized and reported, not placed: guests read them as 0.
//! * A memory BAR that fits nowhere leaves its function with memory decoding
//!   off, and the function is refused for passthrough.
//! * Bridges get memory decoding and bus mastering enabled when they have a
//!   window, so that the devices behind them work; whether an endpoint may
//!   master the bus is decided per device (`pci.dma`).

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

use super::ecam::{regs, ConfigAccess};
use super::types::{Bar, Bdf};
use crate::mm::addr::{PhysAddr, PhysRange, PAGE_SIZE};
use crate::mm::regions::RegionList;
use crate::platform::{PciHostBridge, PciSpace};

mod enumerate;
mod place;
mod program;

use enumerate::*;
use place::*;
use program::*;

/// Most capabilities a walk returns: one per dword of the 192 bytes after the
/// header, so a list that never repeats an offset cannot be longer.
pub const MAX_CAPS: usize = 48;

/// Bridge windows are programmed in units of 1 MiB.
pub const BRIDGE_WINDOW_GRANULE: u64 = 1 << 20;

const FOUR_GIB: u64 = 1 << 32;

/// One base address register of a host function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostBar {
    /// What it decodes and where; `pci_addr` and `host_addr` mean something
    /// only when `assigned`.
    pub bar: Bar,
    /// Whether the BAR has a place in a host window (never for I/O BARs).
    pub assigned: bool,
    /// Whether the place is the one firmware chose.
    pub firmware_kept: bool,
    /// The PCI address firmware left in the register.
    pub firmware_addr: u64,
}

/// What a PCI-to-PCI bridge routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BridgeInfo {
    /// Secondary bus (0 if bus numbers ran out).
    pub secondary: u8,
    /// Highest bus behind it.
    pub subordinate: u8,
    /// The non-prefetchable window, PCI addresses `[start, end)`.
    pub mem: Option<(u64, u64)>,
    /// The prefetchable window, PCI addresses `[start, end)`.
    pub pref: Option<(u64, u64)>,
    /// Whether the bridge implements a prefetchable window.
    pub has_pref: bool,
    /// Whether that window takes 64-bit addresses.
    pub pref64: bool,
}

/// One function found on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFunction {
    /// Where it is.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor_id: u16,
    /// Device ID.
    pub device_id: u16,
    /// Revision ID (bits 7:0) and class code (bits 31:8).
    pub class_rev: u32,
    /// Header layout (bits 6:0 of the header type).
    pub header_type: u8,
    /// The multi-function bit of the header type.
    pub multi_function: bool,
    /// A PCI-to-PCI bridge (header type 1).
    pub is_bridge: bool,
    /// Index in [`HostPci::devices`] of the bridge this function is behind.
    pub parent: Option<usize>,
    /// BARs by register index; the upper half of a 64-bit pair is `None`.
    pub bars: [Option<HostBar>; 6],
    /// Expansion ROM size, 0 if none.
    pub rom_size: u64,
    /// Capabilities: ID and offset, in list order (bounded walk).
    pub caps: Vec<(u8, u16)>,
    /// The Command register as found (restored after probing).
    pub command: u16,
    /// Bridges: bus numbers and windows.
    pub bridge: Option<BridgeInfo>,
    /// Why the function must not be passed through, if it must not.
    pub refusal: Option<String>,
}

impl HostFunction {
    /// Memory BARs that have a place.
    pub fn assigned_bars(&self) -> impl Iterator<Item = &HostBar> {
        self.bars.iter().flatten().filter(|b| b.assigned)
    }

    fn refuse(&mut self, why: String) {
        if self.refusal.is_none() {
            self.refusal = Some(why);
        }
    }
}

/// Everything found below one host bridge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostPci {
    /// Functions in depth-first order: a bridge comes before what is behind it.
    pub devices: Vec<HostFunction>,
}

impl HostPci {
    /// The function at `bdf`.
    pub fn get(&self, bdf: Bdf) -> Option<&HostFunction> {
        self.devices.iter().find(|f| f.bdf == bdf)
    }
}

/// Enumerates, places and checks everything below `bridge`; see the module
/// documentation for the rules. `ram` is the host's RAM.
pub fn probe(ecam: &mut impl ConfigAccess, bridge: &PciHostBridge, ram: &RegionList) -> HostPci {
    let windows = host_windows(bridge);
    let mut e = Enumerator {
        cfg: ecam,
        out: Vec::new(),
        next_bus: u16::from(bridge.bus_start) + 1,
        bus_end: bridge.bus_end,
    };
    e.scan_bus(bridge.bus_start, None);
    let Enumerator { cfg, mut out, .. } = e;
    assign(&mut out, &windows);
    program(cfg, &mut out);
    set_host_addrs(&mut out, &windows);
    check_refusals(&mut out, ram);
    HostPci { devices: out }
}

/// Capabilities of `bdf`, walked with a bound: stops at a null pointer, a
/// pointer into the header (< 0x40) or not dword aligned (0xFF is both), an
/// offset seen before (a loop), an ID of 0xFF (the function went away), or
/// after [`MAX_CAPS`] entries.
pub fn walk_caps(cfg: &mut impl ConfigAccess, bdf: Bdf) -> Vec<(u8, u16)> {
    let mut caps = Vec::new();
    if cfg.read16(bdf, regs::STATUS) & regs::STATUS_CAP_LIST == 0 {
        return caps;
    }
    let mut seen = 0u64;
    let mut ptr = u16::from(cfg.read8(bdf, regs::CAP_PTR));
    while caps.len() < MAX_CAPS {
        if ptr < 0x40 || !ptr.is_multiple_of(4) || ptr > 0xfc {
            break;
        }
        let bit = 1u64 << ((ptr - 0x40) / 4);
        if seen & bit != 0 {
            break;
        }
        seen |= bit;
        let header = cfg.read16(bdf, ptr);
        let id = header as u8;
        if id == 0xff {
            break;
        }
        caps.push((id, ptr));
        ptr = header >> 8;
    }
    caps
}

/// Hostile-guest item 37: RAM under a BAR, or a page shared with another
/// function's BAR, rules the function out.
fn check_refusals(funcs: &mut [HostFunction], ram: &RegionList) {
    let mut reasons: Vec<(usize, String)> = Vec::new();
    let pages = |hb: &HostBar| {
        let a = hb.bar.host_addr.raw();
        let start = a & !(PAGE_SIZE - 1);
        let end = a
            .saturating_add(hb.bar.size)
            .checked_next_multiple_of(PAGE_SIZE)
            .unwrap_or(u64::MAX);
        (start, end)
    };
    for (i, f) in funcs.iter().enumerate() {
        for hb in f.assigned_bars() {
            let Some(r) = PhysRange::new(hb.bar.host_addr, hb.bar.size) else {
                continue;
            };
            if let Some(ram_r) = ram.first_overlap(&r) {
                reasons.push((
                    i,
                    format!("BAR{} at {r} overlaps host RAM {ram_r}", hb.bar.index),
                ));
            }
            let (s, e) = pages(hb);
            for (j, g) in funcs.iter().enumerate() {
                if j == i {
                    continue;
                }
                for other in g.assigned_bars() {
                    let (os, oe) = pages(other);
                    if s < oe && os < e {
                        reasons.push((
                            i,
                            format!(
                                "BAR{} shares a 4 KiB page with BAR{} of {}",
                                hb.bar.index, other.bar.index, g.bdf
                            ),
                        ));
                    }
                }
            }
        }
    }
    for (i, why) in reasons {
        if let Some(f) = funcs.get_mut(i) {
            f.refuse(why);
        }
    }
}

/// A byte count in the largest binary unit that divides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl core::fmt::Display for Size {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (unit, name) in UNITS {
            if self.0 >= unit && self.0.is_multiple_of(unit) {
                return write!(f, "{} {name}", self.0 / unit);
            }
        }
        write!(f, "{} B", self.0)
    }
}

#[cfg(test)]
mod tests;
