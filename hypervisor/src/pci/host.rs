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
use super::types::{Bar, BarKind, Bdf};
use crate::mm::addr::{PhysAddr, PhysRange, PAGE_SIZE};
use crate::mm::regions::RegionList;
use crate::platform::{PciHostBridge, PciSpace};

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

/// A memory window of the host bridge, in PCI addresses, and where the CPU
/// sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HostWindow {
    pci_start: u64,
    pci_end: u64,
    cpu_start: u64,
    prefetchable: bool,
}

fn host_windows(bridge: &PciHostBridge) -> Vec<HostWindow> {
    bridge
        .windows
        .iter()
        .filter(|w| w.space != PciSpace::Io && w.cpu.size() != 0)
        .filter_map(|w| {
            Some(HostWindow {
                pci_start: w.pci_addr,
                pci_end: w.pci_addr.checked_add(w.cpu.size())?,
                cpu_start: w.cpu.start().raw(),
                prefetchable: w.prefetchable,
            })
        })
        .collect()
}

struct Enumerator<'c, C> {
    cfg: &'c mut C,
    out: Vec<HostFunction>,
    next_bus: u16,
    bus_end: u8,
}

impl<C: ConfigAccess> Enumerator<'_, C> {
    fn scan_bus(&mut self, bus: u8, parent: Option<usize>) {
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

    fn scan_bridge(&mut self, idx: usize, bus: u8) {
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

    fn probe_function(&mut self, bdf: Bdf, parent: Option<usize>) -> usize {
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

fn present(vendor: u16) -> bool {
    vendor != 0xffff && vendor != 0
}

/// Writes all ones to the dword at `off`, reads the mask back, restores it.
fn size_reg(cfg: &mut impl ConfigAccess, bdf: Bdf, off: u16) -> (u32, u32) {
    let orig = cfg.read32(bdf, off);
    cfg.write32(bdf, off, u32::MAX);
    let mask = cfg.read32(bdf, off);
    cfg.write32(bdf, off, orig);
    (orig, mask)
}

/// Sizes BARs 0..`n`; decoding must be off. Returns them and, for a BAR
/// that cannot be right, why.
fn size_bars(
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
fn size_rom(cfg: &mut impl ConfigAccess, bdf: Bdf, off: u16) -> u64 {
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
fn bridge_info(cfg: &mut impl ConfigAccess, bdf: Bdf) -> BridgeInfo {
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

/// What asks for address space at one bus level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// Function, BAR index.
    Bar(usize, usize),
    /// A bridge's non-prefetchable window.
    Mem(usize),
    /// A bridge's prefetchable window.
    Pref(usize),
}

#[derive(Clone, Copy, Debug)]
struct Req {
    owner: Owner,
    size: u64,
    align: u64,
    prefetchable: bool,
    above_4g: bool,
    /// Firmware's placement worth trying to keep: start and length.
    firmware: Option<(u64, u64)>,
}

/// A window being filled: free ranges, and the exact ranges kept from
/// firmware (which may share pages with each other, never with fresh ones).
#[derive(Clone, Debug)]
struct Win {
    start: u64,
    end: u64,
    prefetchable: bool,
    free: Vec<(u64, u64)>,
    kept: Vec<(u64, u64)>,
    fresh: Vec<(u64, u64)>,
}

impl Win {
    fn new(start: u64, end: u64, prefetchable: bool) -> Self {
        Self {
            start,
            end,
            prefetchable,
            free: alloc::vec![(start, end)],
            kept: Vec::new(),
            fresh: Vec::new(),
        }
    }

    fn accepts(&self, r: &Req) -> bool {
        r.prefetchable || !self.prefetchable
    }

    fn take(&mut self, start: u64, end: u64) {
        let mut next = Vec::with_capacity(self.free.len() + 1);
        for &(a, b) in &self.free {
            if b <= start || a >= end {
                next.push((a, b));
                continue;
            }
            if a < start {
                next.push((a, start));
            }
            if b > end {
                next.push((end, b));
            }
        }
        self.free = next;
    }

    /// Keeps `[start, start + len)` if it lies inside and overlaps nothing
    /// placed; fresh placements then avoid the pages it touches.
    fn keep(&mut self, start: u64, len: u64) -> bool {
        let Some(end) = start.checked_add(len) else {
            return false;
        };
        if start < self.start || end > self.end {
            return false;
        }
        if self
            .kept
            .iter()
            .chain(self.fresh.iter())
            .any(|&(a, b)| start < b && a < end)
        {
            return false;
        }
        self.kept.push((start, end));
        let page_start = start & !(PAGE_SIZE - 1);
        let page_end = end.checked_next_multiple_of(PAGE_SIZE).unwrap_or(u64::MAX);
        self.take(page_start, page_end);
        true
    }

    /// First fit of `size` bytes at a multiple of `align`, ending at or
    /// below `limit`.
    fn alloc(&mut self, size: u64, align: u64, limit: u64) -> Option<u64> {
        let found = self.free.iter().find_map(|&(a, b)| {
            let at = a.checked_next_multiple_of(align)?;
            let end = at.checked_add(size)?;
            (end <= b && end <= limit).then_some(at)
        })?;
        self.take(found, found + size);
        self.fresh.push((found, found + size));
        Some(found)
    }
}

/// Space needed behind a bridge for one of its windows.
#[derive(Clone, Copy, Debug, Default)]
struct Need {
    size: u64,
    align: u64,
    above_4g: bool,
}

struct Placer<'a> {
    funcs: &'a mut [HostFunction],
    mem_need: Vec<Need>,
    pref_need: Vec<Need>,
}

impl Placer<'_> {
    fn children(&self, parent: Option<usize>) -> Vec<usize> {
        (0..self.funcs.len())
            .filter(|&i| self.funcs.get(i).is_some_and(|f| f.parent == parent))
            .collect()
    }

    /// What the functions on the bus below `parent` (the root bus for
    /// `None`) ask for, in a fixed order.
    fn reqs(&self, parent: Option<usize>) -> Vec<Req> {
        let mut reqs = Vec::new();
        for i in self.children(parent) {
            let Some(f) = self.funcs.get(i) else { continue };
            for (b, hb) in f.bars.iter().enumerate() {
                let Some(hb) = hb else { continue };
                if hb.bar.kind == BarKind::Io {
                    continue;
                }
                let size = hb.bar.size.max(PAGE_SIZE);
                let fw = hb.firmware_addr;
                let firmware =
                    (fw != 0 && fw.is_multiple_of(hb.bar.size)).then_some((fw, hb.bar.size));
                reqs.push(Req {
                    owner: Owner::Bar(i, b),
                    size,
                    align: size,
                    prefetchable: hb.bar.prefetchable,
                    above_4g: hb.bar.kind == BarKind::Mem64,
                    firmware,
                });
            }
            let Some(br) = f.bridge else { continue };
            for (need, pref) in [
                (self.mem_need.get(i).copied(), false),
                (self.pref_need.get(i).copied(), true),
            ] {
                let Some(need) = need.filter(|n| n.size != 0) else {
                    continue;
                };
                let fw = if pref { br.pref } else { br.mem };
                let firmware = fw
                    .filter(|&(a, b)| a != 0 && a.is_multiple_of(need.align) && b - a >= need.size)
                    .map(|(a, b)| (a, b - a));
                reqs.push(Req {
                    owner: if pref { Owner::Pref(i) } else { Owner::Mem(i) },
                    size: need.size,
                    align: need.align,
                    prefetchable: pref,
                    above_4g: pref && need.above_4g,
                    firmware,
                });
            }
        }
        reqs
    }

    /// Bottom-up: what each bridge's windows must hold, laid out exactly as
    /// [`Placer::place`] will lay it out.
    fn compute_needs(&mut self) {
        self.mem_need = alloc::vec![Need::default(); self.funcs.len()];
        self.pref_need = alloc::vec![Need::default(); self.funcs.len()];
        for b in (0..self.funcs.len()).rev() {
            let Some(br) = self.funcs.get(b).and_then(|f| f.bridge) else {
                continue;
            };
            let mut wins = bridge_wins(&br, Some((0, 1 << 62)), Some((0, 1 << 62)));
            let reqs = self.reqs(Some(b));
            let mut above = br.pref64;
            let mut aligns = [BRIDGE_WINDOW_GRANULE; 2];
            for r in order(&reqs) {
                if let Some((w, _)) = alloc_in(&mut wins, r) {
                    if let Some(win) = wins.get(w) {
                        let k = usize::from(win.prefetchable);
                        if let Some(a) = aligns.get_mut(k) {
                            *a = (*a).max(r.align);
                        }
                        if win.prefetchable && !r.above_4g {
                            above = false;
                        }
                    }
                }
            }
            for win in &wins {
                let used = win
                    .free
                    .last()
                    .filter(|&&(_, e)| e == win.end)
                    .map_or(win.end, |&(s, _)| s);
                let size = used
                    .checked_next_multiple_of(BRIDGE_WINDOW_GRANULE)
                    .unwrap_or(0);
                let need = Need {
                    size,
                    align: aligns
                        .get(usize::from(win.prefetchable))
                        .copied()
                        .unwrap_or(BRIDGE_WINDOW_GRANULE),
                    above_4g: win.prefetchable && above,
                };
                let slot = if win.prefetchable {
                    self.pref_need.get_mut(b)
                } else {
                    self.mem_need.get_mut(b)
                };
                if let Some(slot) = slot {
                    *slot = need;
                }
            }
        }
    }

    /// Places everything on the bus below `parent` inside `wins`, then
    /// recurses into bridges. Returns whether everything found a place.
    fn place(&mut self, parent: Option<usize>, wins: &mut [Win], keep_firmware: bool) -> bool {
        let reqs = self.reqs(parent);
        let mut placed: Vec<Option<(u64, u64, bool)>> = alloc::vec![None; reqs.len()];
        if keep_firmware {
            for (r, slot) in reqs.iter().zip(placed.iter_mut()) {
                let Some((start, len)) = r.firmware else {
                    continue;
                };
                let fits_4g = r.above_4g || start.checked_add(len).is_some_and(|e| e <= FOUR_GIB);
                if !fits_4g {
                    continue;
                }
                for w in wins.iter_mut().filter(|w| w.accepts(r)) {
                    if w.keep(start, len) {
                        *slot = Some((start, len, true));
                        break;
                    }
                }
            }
        }
        let pending: Vec<Req> = reqs
            .iter()
            .zip(placed.iter())
            .filter(|(_, p)| p.is_none())
            .map(|(r, _)| *r)
            .collect();
        for r in order(&pending) {
            if let Some((_, at)) = alloc_in(wins, r) {
                if let Some(k) = reqs.iter().position(|q| q.owner == r.owner) {
                    if let Some(slot) = placed.get_mut(k) {
                        *slot = Some((at, r.size, false));
                    }
                }
            }
        }
        let mut all = true;
        for (r, p) in reqs.iter().zip(placed.iter()) {
            match (r.owner, p) {
                (_, None) => all = false,
                (Owner::Bar(f, b), Some((at, _, kept))) => {
                    if let Some(Some(hb)) = self.funcs.get_mut(f).and_then(|f| f.bars.get_mut(b)) {
                        hb.assigned = true;
                        hb.firmware_kept = *kept;
                        hb.bar.pci_addr = *at;
                    }
                }
                (Owner::Mem(f), Some((at, len, _))) => {
                    if let Some(br) = self.funcs.get_mut(f).and_then(|f| f.bridge.as_mut()) {
                        br.mem = Some((*at, at + len));
                    }
                }
                (Owner::Pref(f), Some((at, len, _))) => {
                    if let Some(br) = self.funcs.get_mut(f).and_then(|f| f.bridge.as_mut()) {
                        br.pref = Some((*at, at + len));
                    }
                }
            }
        }
        // Windows of bridges whose requests were not placed, or that need
        // none, are closed.
        for i in self.children(parent) {
            let mem_placed = reqs
                .iter()
                .zip(placed.iter())
                .any(|(r, p)| r.owner == Owner::Mem(i) && p.is_some());
            let pref_placed = reqs
                .iter()
                .zip(placed.iter())
                .any(|(r, p)| r.owner == Owner::Pref(i) && p.is_some());
            if let Some(br) = self.funcs.get_mut(i).and_then(|f| f.bridge.as_mut()) {
                if !mem_placed {
                    br.mem = None;
                }
                if !pref_placed {
                    br.pref = None;
                }
            }
        }
        for i in self.children(parent) {
            let Some(br) = self.funcs.get(i).and_then(|f| f.bridge) else {
                continue;
            };
            let mut bw = bridge_wins(&br, br.mem, br.pref);
            all &= self.place(Some(i), &mut bw, keep_firmware);
        }
        all
    }
}

/// A bridge's windows as [`Win`]s.
fn bridge_wins(br: &BridgeInfo, mem: Option<(u64, u64)>, pref: Option<(u64, u64)>) -> Vec<Win> {
    let mut v = Vec::new();
    if let Some((a, b)) = mem {
        v.push(Win::new(a, b, false));
    }
    if br.has_pref {
        if let Some((a, b)) = pref {
            v.push(Win::new(a, b, true));
        }
    }
    v
}

/// Placement order: largest alignment first, then largest size; stable.
fn order(reqs: &[Req]) -> Vec<Req> {
    let mut v = reqs.to_vec();
    v.sort_by(|a, b| b.align.cmp(&a.align).then(b.size.cmp(&a.size)));
    v
}

/// Puts `r` in the first window that takes it, in order of preference:
/// prefetchable windows first for prefetchable requests, then windows
/// reaching above 4 GiB first for 64-bit ones.
fn alloc_in(wins: &mut [Win], r: Req) -> Option<(usize, u64)> {
    let mut idx: Vec<usize> = (0..wins.len())
        .filter(|&i| wins.get(i).is_some_and(|w| w.accepts(&r)))
        .collect();
    idx.sort_by_key(|&i| {
        let w = wins.get(i);
        let pref_rank = u8::from(!(r.prefetchable && w.is_some_and(|w| w.prefetchable)));
        let high_rank = u8::from(!(r.above_4g && w.is_some_and(|w| w.end > FOUR_GIB)));
        (pref_rank, high_rank)
    });
    let limit = if r.above_4g { u64::MAX } else { FOUR_GIB };
    for i in idx {
        if let Some(at) = wins
            .get_mut(i)
            .and_then(|w| w.alloc(r.size, r.align, limit))
        {
            return Some((i, at));
        }
    }
    None
}

fn clear_assignments(funcs: &mut [HostFunction]) {
    for f in funcs.iter_mut() {
        for hb in f.bars.iter_mut().flatten() {
            hb.assigned = false;
            hb.firmware_kept = false;
            hb.bar.pci_addr = 0;
        }
    }
}

/// Places every memory BAR and bridge window below the host bridge.
fn assign(funcs: &mut [HostFunction], windows: &[HostWindow]) {
    let root = || -> Vec<Win> {
        windows
            .iter()
            .map(|w| Win::new(w.pci_start, w.pci_end, w.prefetchable))
            .collect()
    };
    let mut p = Placer {
        funcs,
        mem_need: Vec::new(),
        pref_need: Vec::new(),
    };
    p.compute_needs();
    if !p.place(None, &mut root(), true) {
        clear_assignments(p.funcs);
        p.place(None, &mut root(), false);
    }
    for f in p.funcs.iter_mut() {
        let unplaced = f
            .bars
            .iter()
            .flatten()
            .find(|hb| hb.bar.kind != BarKind::Io && !hb.assigned)
            .map(|hb| {
                format!(
                    "BAR{} ({}) fits in no host bridge window",
                    hb.bar.index,
                    Size(hb.bar.size)
                )
            });
        if let Some(why) = unplaced {
            f.refuse(why);
        }
    }
}

/// Writes the placements into the hardware.
fn program(cfg: &mut impl ConfigAccess, funcs: &mut [HostFunction]) {
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

fn set_host_addrs(funcs: &mut [HostFunction], windows: &[HostWindow]) {
    for f in funcs.iter_mut() {
        let mut lost = None;
        for hb in f.bars.iter_mut().flatten().filter(|b| b.assigned) {
            let pci = hb.bar.pci_addr;
            let end = pci.saturating_add(hb.bar.size);
            match windows
                .iter()
                .find(|w| pci >= w.pci_start && end <= w.pci_end)
            {
                Some(w) => hb.bar.host_addr = PhysAddr::new(w.cpu_start + (pci - w.pci_start)),
                None => {
                    hb.assigned = false;
                    lost = Some(hb.bar.index);
                }
            }
        }
        if let Some(i) = lost {
            f.refuse(format!("BAR{i} lies outside every host bridge window"));
        }
    }
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
