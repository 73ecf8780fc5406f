//! PCI enumeration through ECAM: find every function, size its memory BARs
//! and, when nobody else did, assign them (PCI Local Bus Specification 3.0,
//! 6.1 and 6.2.5; PCI-to-PCI Bridge Architecture 1.2, 3.2; PCI Express Base
//! Specification, 7.2.2 "PCI Express Enhanced Configuration Access
//! Mechanism").
//!
//! Configuration space is reached only through [`ConfigAccess`], so the
//! whole walk runs in host tests against a fake; `arch::wc` supplies the
//! ECAM one.

use core::fmt;

use crate::platform::{PciSpace, PciWindow, PcieHost};

/// A bus/device/function triple.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bdf {
    /// Bus number.
    pub bus: u8,
    /// Device number, 0..32.
    pub dev: u8,
    /// Function number, 0..8.
    pub func: u8,
}

impl Bdf {
    /// A BDF from its parts.
    pub const fn new(bus: u8, dev: u8, func: u8) -> Self {
        Bdf { bus, dev, func }
    }
}

impl fmt::Display for Bdf {
    /// `bb:dd.f`, as `lspci` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{:x}", self.bus, self.dev, self.func)
    }
}

/// The offset of register `reg` of `bdf` in an ECAM window whose first bus
/// is `bus_start`: 1 MiB per bus, 32 KiB per device, 4 KiB per function.
pub fn ecam_offset(bus_start: u8, bdf: Bdf, reg: u16) -> u64 {
    (u64::from(bdf.bus.wrapping_sub(bus_start)) << 20)
        | (u64::from(bdf.dev & 0x1f) << 15)
        | (u64::from(bdf.func & 7) << 12)
        | u64::from(reg & 0xffc)
}

/// 32-bit configuration reads and writes.
pub trait ConfigAccess {
    /// Reads the aligned dword at `reg`.
    fn read32(&mut self, bdf: Bdf, reg: u16) -> u32;
    /// Writes the aligned dword at `reg`.
    fn write32(&mut self, bdf: Bdf, reg: u16, value: u32);
}

/// Configuration registers used here.
pub mod reg {
    /// Vendor ID (15:0), device ID (31:16).
    pub const ID: u16 = 0x00;
    /// Command (15:0), status (31:16).
    pub const COMMAND: u16 = 0x04;
    /// Revision (7:0), class code (31:8).
    pub const CLASS: u16 = 0x08;
    /// Header type in bits 23:16.
    pub const HEADER: u16 = 0x0c;
    /// The first BAR.
    pub const BAR0: u16 = 0x10;
    /// Type 1: primary (7:0), secondary (15:8), subordinate (23:16) bus.
    pub const BUS_NUMBERS: u16 = 0x18;
    /// Type 1: memory base (15:0) and limit (31:16), address bits 31:20.
    pub const MEMORY_WINDOW: u16 = 0x20;
    /// Type 1: prefetchable base and limit, like [`MEMORY_WINDOW`].
    pub const PREF_WINDOW: u16 = 0x24;
    /// Type 1: prefetchable base, bits 63:32.
    pub const PREF_BASE_UPPER: u16 = 0x28;
    /// Type 1: prefetchable limit, bits 63:32.
    pub const PREF_LIMIT_UPPER: u16 = 0x2c;
}

/// Command register: I/O space enable.
pub const CMD_IO: u32 = 1 << 0;
/// Command register: memory space enable.
pub const CMD_MEMORY: u32 = 1 << 1;
/// Command register: bus master enable.
pub const CMD_MASTER: u32 = 1 << 2;

/// Bridge windows are 1 MiB granular.
const BRIDGE_ALIGN: u64 = 1 << 20;
/// The most functions recorded.
pub const MAX_FUNCTIONS: usize = 32;
/// How deep bridges may nest.
const MAX_DEPTH: usize = 8;

/// The size a BAR decodes, from what it reads back after all ones were
/// written: the low dword's address bits (31:4) and, for a 64-bit BAR, the
/// high dword. 0 for a BAR that decodes nothing.
pub fn bar_size(mask_lo: u32, mask_hi: Option<u32>) -> u64 {
    let hi = match mask_hi {
        Some(hi) => u64::from(hi),
        None if mask_lo & !0xf == 0 => return 0,
        None => 0xffff_ffff,
    };
    let mask = (hi << 32) | u64::from(mask_lo & !0xf);
    if mask == 0 {
        return 0;
    }
    (!mask).wrapping_add(1)
}

/// A memory BAR of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemBar {
    /// BAR number (the low one for a 64-bit BAR).
    pub index: u8,
    /// A 64-bit BAR (it uses the next BAR register too).
    pub is_64: bool,
    /// Prefetchable.
    pub prefetchable: bool,
    /// Bytes decoded.
    pub size: u64,
    /// The address programmed, on the PCI bus.
    pub pci_addr: u64,
    /// Where the CPU reaches it, through a host-bridge window; `None` when
    /// the BAR is unassigned or outside every window.
    pub cpu_addr: Option<u64>,
}

/// A function found on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Its address.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code: base class (23:16), subclass (15:8), programming
    /// interface (7:0).
    pub class: u32,
    /// A PCI-to-PCI bridge (header type 1).
    pub is_bridge: bool,
    /// Its memory BARs, by BAR number.
    pub bars: [Option<MemBar>; 6],
    /// Why the function was left with memory decode off, if it was.
    pub problem: Option<&'static str>,
}

impl Function {
    /// The memory BARs, in BAR order.
    pub fn mem_bars(&self) -> impl Iterator<Item = &MemBar> {
        self.bars.iter().flatten()
    }
}

/// What the walk found.
#[derive(Clone, Copy, Debug)]
pub struct Enumeration {
    functions: [Option<Function>; MAX_FUNCTIONS],
    len: usize,
    /// Functions beyond [`MAX_FUNCTIONS`] were skipped.
    pub truncated: bool,
    /// Buses scanned.
    pub buses: usize,
}

impl Enumeration {
    /// The functions, in scan order (depth first through bridges).
    pub fn functions(&self) -> impl Iterator<Item = &Function> {
        self.functions[..self.len].iter().flatten()
    }

    fn push(&mut self, function: Function) {
        if self.len == MAX_FUNCTIONS {
            self.truncated = true;
            return;
        }
        self.functions[self.len] = Some(function);
        self.len += 1;
    }
}

/// Whether the walk programs BARs and bridges or takes them as it finds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Someone (firmware, the hypervisor's virtual config space) assigned
    /// the BARs and bus numbers: read them, only enable memory decode.
    AsFound,
    /// Nobody did: assign bus numbers, BARs and bridge windows.
    Assign,
}

/// Rounds `value` up to a multiple of the power of two `align`.
pub fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// Hands out naturally aligned bus addresses from the host bridge's memory
/// windows, lowest first in each.
#[derive(Clone, Copy, Debug)]
pub struct Allocator {
    windows: [Option<(PciWindow, u64)>; PcieHost::MAX_WINDOWS],
}

impl Allocator {
    /// An allocator over the memory windows of `host`.
    pub fn new(host: &PcieHost) -> Self {
        let mut windows = [None; PcieHost::MAX_WINDOWS];
        for (slot, w) in windows.iter_mut().zip(
            host.windows()
                .filter(|w| matches!(w.space, PciSpace::Mem32 | PciSpace::Mem64)),
        ) {
            *slot = Some((*w, w.pci_addr));
        }
        Allocator { windows }
    }

    /// The order in which window kinds are tried for a BAR: a 64-bit
    /// prefetchable BAR goes to the 64-bit window (to the 32-bit one if
    /// there is none); other BARs go to the 32-bit window, where a bridge's
    /// non-prefetchable window can forward them, and a 64-bit one falls back
    /// to the 64-bit window.
    fn preference(is_64: bool, prefetchable: bool) -> [Option<PciSpace>; 2] {
        match (is_64, prefetchable) {
            (true, true) => [Some(PciSpace::Mem64), Some(PciSpace::Mem32)],
            (true, false) => [Some(PciSpace::Mem32), Some(PciSpace::Mem64)],
            (false, _) => [Some(PciSpace::Mem32), None],
        }
    }

    /// A bus address for a BAR of `size` bytes (a power of two), aligned to
    /// its size, or `None` if no suitable window has room. A 32-bit BAR only
    /// gets addresses below 4 GiB.
    pub fn alloc(&mut self, size: u64, is_64: bool, prefetchable: bool) -> Option<u64> {
        if !size.is_power_of_two() {
            return None;
        }
        for space in Self::preference(is_64, prefetchable).into_iter().flatten() {
            for (window, next) in self.windows.iter_mut().flatten() {
                if window.space != space {
                    continue;
                }
                let Some(addr) = align_up(*next, size) else {
                    continue;
                };
                let end = addr.checked_add(size)?;
                let fits =
                    end <= window.pci_addr.saturating_add(window.size) && (is_64 || end <= 1 << 32);
                if fits {
                    *next = end;
                    return Some(addr);
                }
            }
        }
        None
    }

    /// Moves every window's next address up to `align`, so what comes next
    /// starts a fresh bridge window.
    pub fn align_all(&mut self, align: u64) {
        for (window, next) in self.windows.iter_mut().flatten() {
            let end = window.pci_addr.saturating_add(window.size);
            *next = align_up(*next, align).unwrap_or(end).min(end);
        }
    }

    /// The next address of each window, in window order (0 for none).
    fn marks(&self) -> [u64; PcieHost::MAX_WINDOWS] {
        self.windows.map(|w| w.map_or(0, |(_, next)| next))
    }

    /// The bus address span handed out in windows of `space` since `marks`
    /// was taken, if any.
    fn span_since(
        &self,
        marks: &[u64; PcieHost::MAX_WINDOWS],
        space: PciSpace,
    ) -> Option<(u64, u64)> {
        let mut span: Option<(u64, u64)> = None;
        for (slot, mark) in self.windows.iter().zip(marks) {
            let Some((window, next)) = slot else { continue };
            if window.space != space || next == mark {
                continue;
            }
            span = Some(match span {
                None => (*mark, *next),
                Some((lo, hi)) => (lo.min(*mark), hi.max(*next)),
            });
        }
        span
    }
}

/// The CPU address of the bus range `[pci_addr, pci_addr + size)`, through
/// the host-bridge memory window that holds it entirely.
pub fn cpu_address(host: &PcieHost, pci_addr: u64, size: u64) -> Option<u64> {
    host.windows()
        .filter(|w| matches!(w.space, PciSpace::Mem32 | PciSpace::Mem64))
        .find(|w| {
            pci_addr >= w.pci_addr
                && pci_addr
                    .checked_add(size)
                    .is_some_and(|end| end <= w.pci_addr.saturating_add(w.size))
        })
        .map(|w| w.cpu_addr + (pci_addr - w.pci_addr))
}

/// The base/limit register pair of a bridge window covering `[lo, hi)`
/// (1 MiB aligned), or a closed window (base above limit) for `None`.
pub fn bridge_window(span: Option<(u64, u64)>) -> (u32, u32, u32) {
    match span {
        Some((lo, hi)) if hi > lo => {
            let last = hi - 1;
            let base = ((lo >> 16) & 0xfff0) as u32;
            let limit = ((last >> 16) & 0xfff0) as u32;
            (base | (limit << 16), (lo >> 32) as u32, (last >> 32) as u32)
        }
        _ => (0x0000_fff0, 0, 0),
    }
}

/// Walks the buses behind `host`, depth first through bridges, sizing every
/// memory BAR; in [`Mode::Assign`] it numbers the buses behind bridges,
/// places each BAR in a host-bridge window and opens the bridge windows.
/// Every function with a usable memory BAR gets memory decode enabled.
pub fn enumerate(cfg: &mut impl ConfigAccess, host: &PcieHost, mode: Mode) -> Enumeration {
    let mut walk = Walk {
        cfg,
        host,
        mode,
        alloc: Allocator::new(host),
        last_bus: host.bus_start,
        out: Enumeration {
            functions: [None; MAX_FUNCTIONS],
            len: 0,
            truncated: false,
            buses: 0,
        },
    };
    walk.scan_bus(host.bus_start, 0);
    walk.out
}

struct Walk<'a, C: ConfigAccess> {
    cfg: &'a mut C,
    host: &'a PcieHost,
    mode: Mode,
    alloc: Allocator,
    /// The highest bus number handed out so far.
    last_bus: u8,
    out: Enumeration,
}

impl<C: ConfigAccess> Walk<'_, C> {
    fn scan_bus(&mut self, bus: u8, depth: usize) {
        if bus < self.host.bus_start || bus > self.host.bus_end {
            return;
        }
        self.out.buses += 1;
        for dev in 0..32 {
            let first = Bdf::new(bus, dev, 0);
            if self.cfg.read32(first, reg::ID) & 0xffff == 0xffff {
                continue;
            }
            let multi = (self.cfg.read32(first, reg::HEADER) >> 16) & 0x80 != 0;
            for func in 0..if multi { 8 } else { 1 } {
                let bdf = Bdf::new(bus, dev, func);
                let id = self.cfg.read32(bdf, reg::ID);
                if id & 0xffff == 0xffff {
                    continue;
                }
                self.function(bdf, id, depth);
            }
        }
    }

    fn function(&mut self, bdf: Bdf, id: u32, depth: usize) {
        let header = (self.cfg.read32(bdf, reg::HEADER) >> 16) & 0x7f;
        let is_bridge = header == 1;
        let mut function = Function {
            bdf,
            vendor: id as u16,
            device: (id >> 16) as u16,
            class: self.cfg.read32(bdf, reg::CLASS) >> 8,
            is_bridge,
            bars: [None; 6],
            problem: None,
        };
        let bar_count = match header {
            0 => 6,
            1 => 2,
            _ => 0,
        };
        let command = self.cfg.read32(bdf, reg::COMMAND) & 0xffff;
        // Decode off while the BARs hold all ones.
        self.cfg
            .write32(bdf, reg::COMMAND, command & !(CMD_IO | CMD_MEMORY));
        let mut index = 0;
        while index < bar_count {
            let (bar, used) = self.bar(bdf, index);
            if let Some(mut bar) = bar {
                if self.mode == Mode::Assign && bar.size > 0 {
                    match self.alloc.alloc(bar.size, bar.is_64, bar.prefetchable) {
                        Some(addr) => {
                            self.write_bar(bdf, index, bar.is_64, addr);
                            bar.pci_addr = addr;
                        }
                        None => function.problem = Some("no room for a BAR in the windows"),
                    }
                }
                if bar.size > 0 {
                    bar.cpu_addr = if bar.pci_addr == 0 {
                        None
                    } else {
                        cpu_address(self.host, bar.pci_addr, bar.size)
                    };
                    if bar.cpu_addr.is_none() && function.problem.is_none() {
                        function.problem = Some("a BAR is unassigned or outside the windows");
                    }
                    function.bars[usize::from(index)] = Some(bar);
                }
            }
            index += used;
        }
        let has_bars = function.mem_bars().next().is_some();
        let mut enabled = command & !CMD_MEMORY;
        if is_bridge {
            // A bridge forwards memory only with decode and mastering on.
            enabled |= CMD_MEMORY | CMD_MASTER;
        } else if has_bars && function.problem.is_none() {
            enabled |= CMD_MEMORY;
        } else if self.mode == Mode::AsFound {
            enabled |= command & CMD_MEMORY;
        }
        // Recorded before the functions behind a bridge, so the list reads
        // in bus order.
        self.out.push(function);
        if is_bridge {
            self.bridge(bdf, depth);
        }
        self.cfg.write32(bdf, reg::COMMAND, enabled);
    }

    /// Sizes BAR `index`: the BAR (`None` for I/O or unimplemented) and the
    /// number of BAR registers it uses.
    fn bar(&mut self, bdf: Bdf, index: u8) -> (Option<MemBar>, u8) {
        let at = reg::BAR0 + 4 * u16::from(index);
        let lo = self.cfg.read32(bdf, at);
        if lo & 1 != 0 {
            return (None, 1);
        }
        let is_64 = (lo >> 1) & 3 == 2 && index < 5;
        self.cfg.write32(bdf, at, 0xffff_ffff);
        let mask_lo = self.cfg.read32(bdf, at);
        self.cfg.write32(bdf, at, lo);
        let (hi, mask_hi) = if is_64 {
            let hi = self.cfg.read32(bdf, at + 4);
            self.cfg.write32(bdf, at + 4, 0xffff_ffff);
            let mask_hi = self.cfg.read32(bdf, at + 4);
            self.cfg.write32(bdf, at + 4, hi);
            (hi, Some(mask_hi))
        } else {
            (0, None)
        };
        let size = bar_size(mask_lo, mask_hi);
        let bar = MemBar {
            index,
            is_64,
            prefetchable: lo & (1 << 3) != 0,
            size,
            pci_addr: (u64::from(hi) << 32) | u64::from(lo & !0xf),
            cpu_addr: None,
        };
        (Some(bar), if is_64 { 2 } else { 1 })
    }

    fn write_bar(&mut self, bdf: Bdf, index: u8, is_64: bool, addr: u64) {
        let at = reg::BAR0 + 4 * u16::from(index);
        let flags = self.cfg.read32(bdf, at) & 0xf;
        self.cfg.write32(bdf, at, (addr as u32 & !0xf) | flags);
        if is_64 {
            self.cfg.write32(bdf, at + 4, (addr >> 32) as u32);
        }
    }

    fn bridge(&mut self, bdf: Bdf, depth: usize) {
        if depth >= MAX_DEPTH {
            return;
        }
        let buses = self.cfg.read32(bdf, reg::BUS_NUMBERS);
        match self.mode {
            Mode::AsFound => {
                let secondary = (buses >> 8) as u8;
                if secondary > bdf.bus {
                    self.scan_bus(secondary, depth + 1);
                }
            }
            Mode::Assign => {
                if self.last_bus >= self.host.bus_end {
                    return;
                }
                self.last_bus += 1;
                let secondary = self.last_bus;
                let numbers = |sub: u8| {
                    (buses & 0xff00_0000)
                        | u32::from(bdf.bus)
                        | (u32::from(secondary) << 8)
                        | (u32::from(sub) << 16)
                };
                // Open up to the last bus while the children are numbered.
                self.cfg
                    .write32(bdf, reg::BUS_NUMBERS, numbers(self.host.bus_end));
                self.alloc.align_all(BRIDGE_ALIGN);
                let marks = self.alloc.marks();
                self.scan_bus(secondary, depth + 1);
                self.alloc.align_all(BRIDGE_ALIGN);
                self.cfg
                    .write32(bdf, reg::BUS_NUMBERS, numbers(self.last_bus));
                let (mem, _, _) = bridge_window(self.alloc.span_since(&marks, PciSpace::Mem32));
                self.cfg.write32(bdf, reg::MEMORY_WINDOW, mem);
                let (pref, base_hi, limit_hi) =
                    bridge_window(self.alloc.span_since(&marks, PciSpace::Mem64));
                // Bits 3:0 of the prefetchable base and limit say 64-bit.
                self.cfg.write32(bdf, reg::PREF_WINDOW, pref | 0x0001_0001);
                self.cfg.write32(bdf, reg::PREF_BASE_UPPER, base_hi);
                self.cfg.write32(bdf, reg::PREF_LIMIT_UPPER, limit_hi);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Region;
    use std::collections::BTreeMap;

    /// One function's configuration space: plain registers, except that
    /// BARs keep only their writable bits and the header-type byte.
    #[derive(Clone)]
    struct FakeFunction {
        regs: [u32; 64],
        /// Writable bits of each BAR register (0: read-only zero).
        masks: [u32; 6],
        writes: usize,
    }

    impl FakeFunction {
        fn new(vendor: u16, device: u16, class: u32, header: u32) -> Self {
            let mut regs = [0; 64];
            regs[0] = u32::from(vendor) | (u32::from(device) << 16);
            regs[2] = class << 8;
            regs[3] = header << 16;
            FakeFunction {
                regs,
                masks: [0; 6],
                writes: 0,
            }
        }

        /// A 32-bit memory BAR of `size` bytes at register `i`.
        fn bar32(mut self, i: usize, size: u32, prefetchable: bool) -> Self {
            self.masks[i] = !(size - 1);
            self.regs[4 + i] = if prefetchable { 1 << 3 } else { 0 };
            self
        }

        /// A 64-bit memory BAR of `size` bytes at registers `i`, `i + 1`.
        fn bar64(mut self, i: usize, size: u64, prefetchable: bool) -> Self {
            let mask = !(size - 1);
            self.masks[i] = mask as u32;
            self.masks[i + 1] = (mask >> 32) as u32;
            self.regs[4 + i] = 0b100 | if prefetchable { 1 << 3 } else { 0 };
            self
        }

        fn io_bar(mut self, i: usize) -> Self {
            self.masks[i] = !0xff;
            self.regs[4 + i] = 1;
            self
        }

        fn with_bar_value(mut self, i: usize, value: u32) -> Self {
            self.regs[4 + i] = (self.regs[4 + i] & 0xf) | (value & !0xf);
            self
        }

        fn reg(&self, r: u16) -> u32 {
            self.regs[usize::from(r / 4)]
        }
    }

    #[derive(Default)]
    struct FakeConfig {
        functions: BTreeMap<(u8, u8, u8), FakeFunction>,
        /// Writes to functions while their memory decode was on and a BAR
        /// held all ones (must never happen).
        sized_with_decode_on: usize,
    }

    impl FakeConfig {
        fn add(&mut self, bus: u8, dev: u8, func: u8, f: FakeFunction) {
            self.functions.insert((bus, dev, func), f);
        }
        fn get(&self, bus: u8, dev: u8, func: u8) -> &FakeFunction {
            &self.functions[&(bus, dev, func)]
        }
    }

    impl ConfigAccess for FakeConfig {
        fn read32(&mut self, bdf: Bdf, reg: u16) -> u32 {
            match self.functions.get(&(bdf.bus, bdf.dev, bdf.func)) {
                Some(f) => f.reg(reg),
                None => 0xffff_ffff,
            }
        }

        fn write32(&mut self, bdf: Bdf, reg: u16, value: u32) {
            let Some(f) = self.functions.get_mut(&(bdf.bus, bdf.dev, bdf.func)) else {
                return;
            };
            f.writes += 1;
            let i = usize::from(reg / 4);
            let is_bar = (4..10).contains(&i) && f.regs[3] >> 16 & 0x7f == 0
                || (4..6).contains(&i) && f.regs[3] >> 16 & 0x7f == 1;
            match i {
                0 | 2 | 3 => {}
                _ if is_bar => {
                    let mask = f.masks[i - 4];
                    let low_flags = if f.regs[i] & 1 != 0 { 0x3 } else { 0xf };
                    // The upper half of a 64-bit BAR has no flag bits.
                    let upper = i > 4 && f.regs[i - 1] & 0b111 == 0b100;
                    let keep = if upper { 0 } else { low_flags };
                    if value == 0xffff_ffff && f.regs[1] & CMD_MEMORY != 0 {
                        self.sized_with_decode_on += 1;
                    }
                    f.regs[i] = (f.regs[i] & keep) | (value & mask & !keep);
                }
                _ => f.regs[i] = value,
            }
        }
    }

    fn host() -> PcieHost {
        PcieHost::new(
            Region::new(0x40_1000_0000, 0x1000_0000),
            0,
            255,
            &[
                PciWindow::from_cells(0x0100_0000, 0, 0x3eff_0000, 0x1_0000),
                PciWindow::from_cells(0x0200_0000, 0x1000_0000, 0x1000_0000, 0x2eff_0000),
                PciWindow::from_cells(0x0300_0000, 0x80_0000_0000, 0x80_0000_0000, 0x80_0000_0000),
            ],
        )
    }

    /// ivshmem-plain and bochs-display on bus 0, as QEMU virt has them
    /// after a -kernel boot: nothing assigned.
    fn virt_like() -> FakeConfig {
        let mut cfg = FakeConfig::default();
        cfg.add(0, 0, 0, FakeFunction::new(0x1b36, 0x0008, 0x06_0000, 0));
        cfg.add(
            0,
            1,
            0,
            FakeFunction::new(0x1af4, 0x1110, 0x05_0000, 0)
                .bar32(0, 0x100, false)
                .bar64(2, 64 << 20, true),
        );
        cfg.add(
            0,
            2,
            0,
            FakeFunction::new(0x1234, 0x1111, 0x03_8000, 0)
                .bar32(0, 16 << 20, true)
                .bar32(2, 0x1000, false),
        );
        cfg
    }

    fn bars(e: &Enumeration) -> Vec<(String, u8, u64, u64, Option<u64>)> {
        e.functions()
            .flat_map(|f| {
                f.mem_bars()
                    .map(|b| (f.bdf.to_string(), b.index, b.size, b.pci_addr, b.cpu_addr))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn ecam_offsets() {
        assert_eq!(ecam_offset(0, Bdf::new(0, 0, 0), 0x10), 0x10);
        assert_eq!(ecam_offset(0, Bdf::new(1, 2, 3), 0x4), 0x0011_3004);
        assert_eq!(ecam_offset(0x10, Bdf::new(0x11, 31, 7), 0xffe), 0x1f_fffc);
        assert_eq!(Bdf::new(0, 0x1f, 7).to_string(), "00:1f.7");
    }

    #[test]
    fn sizes_from_masks() {
        assert_eq!(bar_size(0xffff_ff00, None), 0x100);
        assert_eq!(bar_size(0xff00_0008, None), 16 << 20);
        assert_eq!(bar_size(0xfc00_000c, Some(0xffff_ffff)), 64 << 20);
        assert_eq!(bar_size(0x0000_000c, Some(0xffff_fff0)), 1 << 36);
        assert_eq!(bar_size(0, None), 0);
        assert_eq!(bar_size(0, Some(0)), 0);
    }

    #[test]
    fn allocator_places_naturally_aligned_in_matching_window() {
        let mut a = Allocator::new(&host());
        assert_eq!(a.alloc(0x1000, false, false), Some(0x1000_0000));
        // 16 MiB aligned, after the 4 KiB one.
        assert_eq!(a.alloc(16 << 20, false, true), Some(0x1100_0000));
        assert_eq!(a.alloc(0x100, false, false), Some(0x1200_0000));
        // 64-bit prefetchable goes high; 64-bit non-prefetchable stays low.
        assert_eq!(a.alloc(64 << 20, true, true), Some(0x80_0000_0000));
        assert_eq!(a.alloc(64 << 20, true, true), Some(0x80_0400_0000));
        assert_eq!(a.alloc(0x4000, true, false), Some(0x1200_4000));
        // Too big for the 32-bit window: a 32-bit BAR gets nothing, a
        // 64-bit one falls back to the high window.
        assert_eq!(a.alloc(1 << 30, false, false), None);
        assert_eq!(a.alloc(1 << 30, true, false), Some(0x80_4000_0000));
        assert_eq!(a.alloc(3, false, false), None);
    }

    #[test]
    fn allocator_without_a_64_bit_window() {
        let h = PcieHost::new(
            Region::new(0, 0x1000_0000),
            0,
            15,
            &[PciWindow::from_cells(
                0x0200_0000,
                0x1000_0000,
                0x4_1000_0000,
                0x100_0000,
            )],
        );
        let mut a = Allocator::new(&h);
        assert_eq!(a.alloc(0x10_0000, true, true), Some(0x1000_0000));
        assert_eq!(cpu_address(&h, 0x1000_0000, 0x10_0000), Some(0x4_1000_0000));
        assert_eq!(cpu_address(&h, 0x10ff_f000, 0x2000), None);
        assert_eq!(a.alloc(0x100_0000, false, false), None);
    }

    #[test]
    fn assigns_bars_natively() {
        let mut cfg = virt_like();
        let e = enumerate(&mut cfg, &host(), Mode::Assign);
        assert_eq!(e.functions().count(), 3);
        assert_eq!(e.buses, 1);
        assert!(!e.truncated);
        assert_eq!(
            bars(&e),
            vec![
                ("00:01.0".into(), 0, 0x100, 0x1000_0000, Some(0x1000_0000)),
                (
                    "00:01.0".into(),
                    2,
                    64 << 20,
                    0x80_0000_0000,
                    Some(0x80_0000_0000)
                ),
                (
                    "00:02.0".into(),
                    0,
                    16 << 20,
                    0x1100_0000,
                    Some(0x1100_0000)
                ),
                ("00:02.0".into(), 2, 0x1000, 0x1200_0000, Some(0x1200_0000)),
            ]
        );
        // Written to the device, flags kept, decode on.
        let ivshmem = cfg.get(0, 1, 0);
        assert_eq!(ivshmem.reg(0x18), 0x0000_000c);
        assert_eq!(ivshmem.reg(0x1c), 0x80);
        assert_eq!(ivshmem.reg(reg::COMMAND) & CMD_MEMORY, CMD_MEMORY);
        assert_eq!(cfg.get(0, 2, 0).reg(0x10), 0x1100_0008);
        // The host bridge has no BARs and stays off.
        assert_eq!(cfg.get(0, 0, 0).reg(reg::COMMAND), 0);
        assert_eq!(cfg.sized_with_decode_on, 0);
        let bochs = e.functions().nth(2).unwrap();
        assert_eq!(
            (bochs.vendor, bochs.device, bochs.class),
            (0x1234, 0x1111, 0x03_8000)
        );
        assert!(bochs.problem.is_none());
    }

    #[test]
    fn reads_assigned_bars_and_enables_decode() {
        let mut cfg = virt_like();
        // As a hypervisor's virtual config space presents them.
        let f = cfg.functions.remove(&(0, 1, 0)).unwrap();
        let mut f = f.with_bar_value(2, 0x0000_0000);
        f.regs[6] |= 0; // low dword of BAR2 stays 0
        f.regs[7] = 0x80;
        cfg.add(0, 1, 0, f);
        let f = cfg.functions.remove(&(0, 2, 0)).unwrap();
        cfg.add(
            0,
            2,
            0,
            f.with_bar_value(0, 0x1100_0000)
                .with_bar_value(2, 0x1000_1000),
        );
        let e = enumerate(&mut cfg, &host(), Mode::AsFound);
        let found = bars(&e);
        assert_eq!(found[1].3, 0x80_0000_0000);
        assert_eq!(found[1].4, Some(0x80_0000_0000));
        assert_eq!(found[2].3, 0x1100_0000);
        // BAR0 of 00:01.0 was never assigned: no CPU address, decode off.
        assert_eq!(found[0].3, 0);
        assert_eq!(found[0].4, None);
        let ivshmem = e.functions().nth(1).unwrap();
        assert!(ivshmem.problem.is_some());
        assert_eq!(cfg.get(0, 1, 0).reg(reg::COMMAND) & CMD_MEMORY, 0);
        assert_eq!(cfg.get(0, 2, 0).reg(reg::COMMAND) & CMD_MEMORY, CMD_MEMORY);
        // BAR values survive sizing.
        assert_eq!(cfg.get(0, 2, 0).reg(0x18), 0x1000_1000);
        assert_eq!(cfg.get(0, 1, 0).reg(0x1c), 0x80);
    }

    #[test]
    fn skips_io_bars_and_walks_functions() {
        let mut cfg = FakeConfig::default();
        cfg.add(
            0,
            4,
            0,
            FakeFunction::new(0x8086, 1, 0x02_0000, 0x80)
                .io_bar(0)
                .bar32(1, 0x2_0000, false),
        );
        cfg.add(
            0,
            4,
            3,
            FakeFunction::new(0x8086, 2, 0x02_0000, 0).bar64(4, 0x4000, true),
        );
        // Function 1 exists but function 0 says single-function: not seen.
        cfg.add(0, 5, 0, FakeFunction::new(0x8086, 3, 0x02_0000, 0));
        cfg.add(
            0,
            5,
            1,
            FakeFunction::new(0x8086, 4, 0x02_0000, 0).bar32(0, 0x1000, false),
        );
        let e = enumerate(&mut cfg, &host(), Mode::Assign);
        let bdfs: Vec<_> = e.functions().map(|f| f.bdf.to_string()).collect();
        assert_eq!(bdfs, ["00:04.0", "00:04.3", "00:05.0"]);
        let found = bars(&e);
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].1, found[0].2), (1, 0x2_0000));
        assert_eq!(
            (found[1].1, found[1].2, found[1].3),
            (4, 0x4000, 0x80_0000_0000)
        );
        assert_eq!(cfg.get(0, 4, 0).reg(0x10), 1, "the I/O BAR is left alone");
    }

    #[test]
    fn numbers_buses_and_opens_bridge_windows() {
        let mut cfg = virt_like();
        cfg.add(0, 3, 0, FakeFunction::new(0x1b36, 0x000c, 0x06_0400, 1));
        cfg.add(
            1,
            0,
            0,
            FakeFunction::new(0x1af4, 0x1110, 0x05_0000, 0)
                .bar32(0, 0x1000, false)
                .bar64(2, 1 << 20, true),
        );
        let e = enumerate(&mut cfg, &host(), Mode::Assign);
        let bdfs: Vec<_> = e.functions().map(|f| f.bdf.to_string()).collect();
        assert_eq!(
            bdfs,
            ["00:00.0", "00:01.0", "00:02.0", "00:03.0", "01:00.0"]
        );
        assert!(e.functions().nth(3).unwrap().is_bridge);
        assert_eq!(e.buses, 2);
        let bridge = cfg.get(0, 3, 0);
        assert_eq!(bridge.reg(reg::BUS_NUMBERS), 0x0001_0100);
        // Behind the bridge: 32-bit BAR at the next 1 MiB boundary after
        // the bus-0 BARs (which end at 0x1200_1000), 64-bit after 64 MiB.
        let found = bars(&e);
        assert_eq!(
            found[4],
            ("01:00.0".into(), 0, 0x1000, 0x1210_0000, Some(0x1210_0000))
        );
        assert_eq!(found[5].3, 0x80_0400_0000);
        assert_eq!(bridge.reg(reg::MEMORY_WINDOW), 0x1210_1210);
        assert_eq!(bridge.reg(reg::PREF_WINDOW), 0x0401_0401);
        assert_eq!(bridge.reg(reg::PREF_BASE_UPPER), 0x80);
        assert_eq!(bridge.reg(reg::PREF_LIMIT_UPPER), 0x80);
        assert_eq!(
            bridge.reg(reg::COMMAND) & (CMD_MEMORY | CMD_MASTER),
            CMD_MEMORY | CMD_MASTER
        );
    }

    #[test]
    fn follows_bridges_as_found() {
        let mut cfg = FakeConfig::default();
        let mut bridge = FakeFunction::new(0x1b36, 0x000c, 0x06_0400, 1);
        bridge.regs[6] = 0x0002_0200; // secondary 2, subordinate 2
        cfg.add(0, 1, 0, bridge);
        cfg.add(
            2,
            0,
            0,
            FakeFunction::new(0x10de, 1, 0x03_0000, 0)
                .bar64(0, 16 << 20, true)
                .with_bar_value(0, 0),
        );
        cfg.functions.get_mut(&(2, 0, 0)).unwrap().regs[5] = 0x81;
        let e = enumerate(&mut cfg, &host(), Mode::AsFound);
        let found = bars(&e);
        assert_eq!(
            found,
            vec![(
                "02:00.0".into(),
                0,
                16 << 20,
                0x81_0000_0000,
                Some(0x81_0000_0000)
            )]
        );
        // Nothing renumbered.
        assert_eq!(cfg.get(0, 1, 0).reg(reg::BUS_NUMBERS), 0x0002_0200);
    }

    #[test]
    fn bridge_window_encoding() {
        assert_eq!(bridge_window(None), (0xfff0, 0, 0));
        assert_eq!(bridge_window(Some((5, 5))), (0xfff0, 0, 0));
        assert_eq!(
            bridge_window(Some((0x80_1000_0000, 0x80_3000_0000))),
            (0x2ff0_1000, 0x80, 0x80)
        );
    }

    #[test]
    fn stops_at_capacity() {
        let mut cfg = FakeConfig::default();
        for dev in 0..32 {
            for func in 0..2 {
                cfg.add(0, dev, func, FakeFunction::new(1, 1, 0, 0x80));
            }
        }
        let e = enumerate(&mut cfg, &host(), Mode::AsFound);
        assert_eq!(e.functions().count(), MAX_FUNCTIONS);
        assert!(e.truncated);
    }
}
