//! Placing memory BARs and bridge windows inside the host bridge's
//! windows (the rules are in the parent module's documentation).

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
use alloc::vec::Vec;

use super::*;
use crate::pci::types::BarKind;

/// A memory window of the host bridge, in PCI addresses, and where the CPU
/// sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct HostWindow {
    pub(super) pci_start: u64,
    pub(super) pci_end: u64,
    pub(super) cpu_start: u64,
    pub(super) prefetchable: bool,
}

pub(super) fn host_windows(bridge: &PciHostBridge) -> Vec<HostWindow> {
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

/// What asks for address space at one bus level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    /// Function, BAR index.
    Bar(usize, usize),
    /// A bridge's non-prefetchable window.
    Mem(usize),
    /// A bridge's prefetchable window.
    Pref(usize),
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Req {
    pub(super) owner: Owner,
    pub(super) size: u64,
    pub(super) align: u64,
    pub(super) prefetchable: bool,
    above_4g: bool,
    /// Firmware's placement worth trying to keep: start and length.
    pub(super) firmware: Option<(u64, u64)>,
}

/// A window being filled: free ranges, and the exact ranges kept from
/// firmware (which may share pages with each other, never with fresh ones).
#[derive(Clone, Debug)]
pub(super) struct Win {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) prefetchable: bool,
    pub(super) free: Vec<(u64, u64)>,
    pub(super) kept: Vec<(u64, u64)>,
    pub(super) fresh: Vec<(u64, u64)>,
}

impl Win {
    pub(super) fn new(start: u64, end: u64, prefetchable: bool) -> Self {
        Self {
            start,
            end,
            prefetchable,
            free: alloc::vec![(start, end)],
            kept: Vec::new(),
            fresh: Vec::new(),
        }
    }

    pub(super) fn accepts(&self, r: &Req) -> bool {
        r.prefetchable || !self.prefetchable
    }

    pub(super) fn take(&mut self, start: u64, end: u64) {
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
    pub(super) fn keep(&mut self, start: u64, len: u64) -> bool {
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
    pub(super) fn alloc(&mut self, size: u64, align: u64, limit: u64) -> Option<u64> {
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
pub(super) struct Need {
    pub(super) size: u64,
    pub(super) align: u64,
    above_4g: bool,
}

pub(super) struct Placer<'a> {
    pub(super) funcs: &'a mut [HostFunction],
    pub(super) mem_need: Vec<Need>,
    pub(super) pref_need: Vec<Need>,
}

impl Placer<'_> {
    pub(super) fn children(&self, parent: Option<usize>) -> Vec<usize> {
        (0..self.funcs.len())
            .filter(|&i| self.funcs.get(i).is_some_and(|f| f.parent == parent))
            .collect()
    }

    /// What the functions on the bus below `parent` (the root bus for
    /// `None`) ask for, in a fixed order.
    pub(super) fn reqs(&self, parent: Option<usize>) -> Vec<Req> {
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
    pub(super) fn compute_needs(&mut self) {
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
    pub(super) fn place(
        &mut self,
        parent: Option<usize>,
        wins: &mut [Win],
        keep_firmware: bool,
    ) -> bool {
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
pub(super) fn bridge_wins(
    br: &BridgeInfo,
    mem: Option<(u64, u64)>,
    pref: Option<(u64, u64)>,
) -> Vec<Win> {
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
pub(super) fn order(reqs: &[Req]) -> Vec<Req> {
    let mut v = reqs.to_vec();
    v.sort_by(|a, b| b.align.cmp(&a.align).then(b.size.cmp(&a.size)));
    v
}

/// Puts `r` in the first window that takes it, in order of preference:
/// prefetchable windows first for prefetchable requests, then windows
/// reaching above 4 GiB first for 64-bit ones.
pub(super) fn alloc_in(wins: &mut [Win], r: Req) -> Option<(usize, u64)> {
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

pub(super) fn clear_assignments(funcs: &mut [HostFunction]) {
    for f in funcs.iter_mut() {
        for hb in f.bars.iter_mut().flatten() {
            hb.assigned = false;
            hb.firmware_kept = false;
            hb.bar.pci_addr = 0;
        }
    }
}

/// Places every memory BAR and bridge window below the host bridge.
pub(super) fn assign(funcs: &mut [HostFunction], windows: &[HostWindow]) {
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

pub(super) fn set_host_addrs(funcs: &mut [HostFunction], windows: &[HostWindow]) {
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
