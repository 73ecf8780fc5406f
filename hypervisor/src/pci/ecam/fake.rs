//! A model of a PCI segment for host tests: functions with real register
//! semantics (writable masks, read-only type bits, RW1C status), bridges that
//! route configuration cycles by their bus-number registers, and checks of the
//! rules software must follow (no BAR write while decoding is enabled).

use super::regs::*;
use super::{access_ok, ConfigAccess};
use crate::pci::types::Bdf;

/// One function's configuration space.
#[derive(Clone)]
pub struct FakeFn {
    /// Device number on its bus.
    pub device: u8,
    /// Function number.
    pub function: u8,
    /// Register contents.
    pub cfg: Vec<u8>,
    /// Bits software can write.
    pub wmask: Vec<u8>,
    /// Bits that clear when written with one.
    pub w1c: Vec<u8>,
    /// The last capability added (its next pointer is patched by the next one).
    last_cap: Option<u16>,
}

impl FakeFn {
    fn blank(device: u8, function: u8, vendor: u16, dev_id: u16, class_rev: u32) -> Self {
        let mut f = Self {
            device,
            function,
            cfg: vec![0; 4096],
            wmask: vec![0; 4096],
            w1c: vec![0; 4096],
            last_cap: None,
        };
        f.set16(VENDOR_ID, vendor);
        f.set16(DEVICE_ID, dev_id);
        f.set32(CLASS_REV, class_rev);
        f.mask16(COMMAND, 0x0547);
        f.w1c[usize::from(STATUS) + 1] = 0xf9;
        f
    }

    /// A type-0 function (device `device`, function 0).
    pub fn endpoint(device: u8, function: u8, vendor: u16, dev_id: u16, class_rev: u32) -> Self {
        Self::blank(device, function, vendor, dev_id, class_rev)
    }

    /// A PCI-to-PCI bridge with a 64-bit prefetchable window (QEMU's
    /// pcie-root-port).
    pub fn bridge(device: u8, function: u8, vendor: u16, dev_id: u16) -> Self {
        let mut f = Self::blank(device, function, vendor, dev_id, 0x0604_0000);
        f.cfg[usize::from(HEADER_TYPE)] = HEADER_TYPE_BRIDGE;
        f.mask32(PRIMARY_BUS, 0x00ff_ffff);
        f.mask16(0x1c, 0x00f0 | 0xf000);
        f.set16(0x1c, 0x00f0);
        f.w1c[0x1f] = 0xf9;
        f.mask16(MEMORY_BASE, 0xfff0);
        f.mask16(MEMORY_LIMIT, 0xfff0);
        f.set16(MEMORY_BASE, 0xfff0);
        f.mask16(PREF_BASE, 0xfff0);
        f.mask16(PREF_LIMIT, 0xfff0);
        f.set16(PREF_BASE, 0xfff1);
        f.set16(PREF_LIMIT, 0x0001);
        f.mask32(PREF_BASE_UPPER, u32::MAX);
        f.mask32(PREF_LIMIT_UPPER, u32::MAX);
        f.mask16(0x3e, 0x0fff);
        f
    }

    /// Removes the prefetchable window (an optional bridge feature).
    pub fn without_pref_window(mut self) -> Self {
        for off in PREF_BASE..PREF_BASE + 12 {
            self.cfg[usize::from(off)] = 0;
            self.wmask[usize::from(off)] = 0;
        }
        self
    }

    /// Makes the prefetchable window 32-bit only.
    pub fn pref_window_32(mut self) -> Self {
        self.set16(PREF_BASE, 0xfff0);
        self.set16(PREF_LIMIT, 0);
        self.mask32(PREF_BASE_UPPER, 0);
        self.mask32(PREF_LIMIT_UPPER, 0);
        self
    }

    /// Sets the multi-function bit in the header type.
    pub fn multifunction(mut self) -> Self {
        self.cfg[usize::from(HEADER_TYPE)] |= HEADER_MULTI_FUNCTION;
        self
    }

    /// A 32-bit memory BAR of `size` bytes in register `i`.
    pub fn bar32(mut self, i: u16, size: u32, prefetchable: bool) -> Self {
        let off = BAR0 + 4 * i;
        self.set32(off, if prefetchable { 8 } else { 0 });
        self.mask32(off, !(size - 1) & !0xf);
        self
    }

    /// A 64-bit memory BAR of `size` bytes in registers `i` and `i + 1`.
    pub fn bar64(mut self, i: u16, size: u64, prefetchable: bool) -> Self {
        let off = BAR0 + 4 * i;
        self.set32(off, 0b100 | if prefetchable { 8 } else { 0 });
        let mask = !(size - 1);
        self.mask32(off, mask as u32 & !0xf);
        self.mask32(off + 4, (mask >> 32) as u32);
        self
    }

    /// An I/O BAR of `size` bytes in register `i`.
    pub fn io_bar(mut self, i: u16, size: u32) -> Self {
        let off = BAR0 + 4 * i;
        self.set32(off, 1);
        self.mask32(off, !(size - 1) & !0x3);
        self
    }

    /// An expansion ROM BAR of `size` bytes.
    pub fn rom(mut self, size: u32) -> Self {
        let off = if self.is_bridge() {
            BRIDGE_ROM_BAR
        } else {
            ROM_BAR
        };
        self.mask32(off, (!(size - 1) & 0xffff_f800) | 1);
        self
    }

    /// What firmware left in BAR register `i` (both halves for 64-bit BARs;
    /// bits the BAR does not implement are dropped as hardware would).
    pub fn at(mut self, i: u16, addr: u64) -> Self {
        let off = BAR0 + 4 * i;
        let lo = self.get32(off);
        let is64 = lo & 0b110 == 0b100 && lo & 1 == 0;
        let keep = lo & if lo & 1 == 1 { 0x3 } else { 0xf };
        let m = self.get_mask32(off);
        self.set32(off, keep | (addr as u32 & m));
        if is64 {
            let mh = self.get_mask32(off + 4);
            self.set32(off + 4, (addr >> 32) as u32 & mh);
        }
        self
    }

    /// Appends a capability with ID `id` at `off` to the list.
    pub fn cap(mut self, id: u8, off: u16) -> Self {
        self.cfg[usize::from(STATUS)] |= STATUS_CAP_LIST as u8;
        self.cfg[usize::from(off)] = id;
        self.cfg[usize::from(off) + 1] = 0;
        match self.last_cap {
            None => self.cfg[usize::from(CAP_PTR)] = off as u8,
            Some(prev) => self.cfg[usize::from(prev) + 1] = off as u8,
        }
        self.last_cap = Some(off);
        self
    }

    /// Overwrites the next pointer of the capability at `at` (to make loops
    /// and garbage).
    pub fn cap_next(mut self, at: u16, next: u8) -> Self {
        self.cfg[usize::from(at) + 1] = next;
        self
    }

    /// Sets the capabilities pointer itself.
    pub fn cap_ptr(mut self, ptr: u8) -> Self {
        self.cfg[usize::from(STATUS)] |= STATUS_CAP_LIST as u8;
        self.cfg[usize::from(CAP_PTR)] = ptr;
        self
    }

    /// Sets a bridge's window registers as firmware left them.
    pub fn windows(mut self, mem: Option<(u32, u32)>, pref: Option<(u64, u64)>) -> Self {
        if let Some((base, limit)) = mem {
            self.set16(MEMORY_BASE, (base >> 16) as u16 & 0xfff0);
            self.set16(MEMORY_LIMIT, (limit >> 16) as u16 & 0xfff0);
        }
        if let Some((base, limit)) = pref {
            let low = self.get16(PREF_BASE) & 0xf;
            self.set16(PREF_BASE, (base >> 16) as u16 & 0xfff0 | low);
            self.set16(PREF_LIMIT, (limit >> 16) as u16 & 0xfff0 | low);
            if low == 1 {
                self.set32(PREF_BASE_UPPER, (base >> 32) as u32);
                self.set32(PREF_LIMIT_UPPER, (limit >> 32) as u32);
            }
        }
        self
    }

    /// Sets the command register as firmware left it.
    pub fn command(mut self, cmd: u16) -> Self {
        self.set16(COMMAND, cmd);
        self
    }

    fn is_bridge(&self) -> bool {
        self.cfg[usize::from(HEADER_TYPE)] & 0x7f == HEADER_TYPE_BRIDGE
    }

    fn set16(&mut self, off: u16, v: u16) {
        let o = usize::from(off);
        self.cfg[o..o + 2].copy_from_slice(&v.to_le_bytes());
    }

    /// Sets a dword of register contents.
    pub fn set32(&mut self, off: u16, v: u32) {
        let o = usize::from(off);
        self.cfg[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn get16(&self, off: u16) -> u16 {
        let o = usize::from(off);
        u16::from_le_bytes([self.cfg[o], self.cfg[o + 1]])
    }

    /// A dword of register contents.
    pub fn get32(&self, off: u16) -> u32 {
        let o = usize::from(off);
        u32::from_le_bytes(self.cfg[o..o + 4].try_into().unwrap())
    }

    fn get_mask32(&self, off: u16) -> u32 {
        let o = usize::from(off);
        u32::from_le_bytes(self.wmask[o..o + 4].try_into().unwrap())
    }

    fn mask16(&mut self, off: u16, m: u16) {
        let o = usize::from(off);
        self.wmask[o..o + 2].copy_from_slice(&m.to_le_bytes());
    }

    fn mask32(&mut self, off: u16, m: u32) {
        let o = usize::from(off);
        self.wmask[o..o + 4].copy_from_slice(&m.to_le_bytes());
    }

    fn write(&mut self, off: u16, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            let o = usize::from(off) + i;
            let mut v = (self.cfg[o] & !self.wmask[o]) | (b & self.wmask[o]);
            v &= !(b & self.w1c[o]);
            self.cfg[o] = v;
        }
    }
}

/// A PCI segment: functions on the root bus and behind bridges.
pub struct FakeEcam {
    root_bus: u8,
    /// The functions, and the index of the bridge each sits behind.
    pub fns: Vec<(FakeFn, Option<usize>)>,
    /// BAR or ROM writes seen while the function decoded memory or I/O.
    pub decode_violations: Vec<(Bdf, u16)>,
    /// Every write: function index, offset, width.
    pub writes: Vec<(usize, u16, u8)>,
}

impl FakeEcam {
    /// An empty segment whose root bus is `root_bus`.
    pub fn new(root_bus: u8) -> Self {
        Self {
            root_bus,
            fns: Vec::new(),
            decode_violations: Vec::new(),
            writes: Vec::new(),
        }
    }

    /// Adds `f` on the root bus (`behind == None`) or on the secondary bus of
    /// bridge `behind`; returns its index.
    pub fn add(&mut self, behind: Option<usize>, f: FakeFn) -> usize {
        self.fns.push((f, behind));
        self.fns.len() - 1
    }

    /// Function `i`.
    pub fn func(&self, i: usize) -> &FakeFn {
        &self.fns[i].0
    }

    /// Sets hardware status bits of function `i`.
    pub fn set_status(&mut self, i: usize, v: u16) {
        self.fns[i].0.set16(STATUS, v);
    }

    /// The bus function `i` answers on, following the bridges' bus numbers
    /// (`None` when a bridge above does not route to it).
    pub fn bus_of(&self, i: usize) -> Option<u8> {
        let parent = self.fns[i].1;
        let Some(p) = parent else {
            return Some(self.root_bus);
        };
        let pf = &self.fns[p].0;
        let sec = pf.cfg[usize::from(SECONDARY_BUS)];
        let pbus = self.bus_of(p)?;
        (sec > pbus).then_some(sec)
    }

    /// Whether a type-1 cycle for bus `bus` reaches behind every bridge
    /// above function `i`.
    fn routed(&self, i: usize, bus: u8) -> bool {
        let mut at = self.fns[i].1;
        while let Some(p) = at {
            let f = &self.fns[p].0;
            let sec = f.cfg[usize::from(SECONDARY_BUS)];
            let sub = f.cfg[usize::from(SUBORDINATE_BUS)];
            if bus < sec || bus > sub {
                return false;
            }
            at = self.fns[p].1;
        }
        true
    }

    fn find(&self, bdf: Bdf) -> Option<usize> {
        (0..self.fns.len()).find(|&i| {
            let f = &self.fns[i].0;
            f.device == bdf.device
                && f.function == bdf.function
                && self.bus_of(i) == Some(bdf.bus)
                && self.routed(i, bdf.bus)
        })
    }

    fn write(&mut self, bdf: Bdf, offset: u16, bytes: &[u8]) {
        let width = bytes.len() as u16;
        if !access_ok(offset, width) {
            return;
        }
        let Some(i) = self.find(bdf) else { return };
        let f = &mut self.fns[i].0;
        let bar_end = if f.is_bridge() { 0x18 } else { 0x28 };
        let rom = if f.is_bridge() {
            BRIDGE_ROM_BAR
        } else {
            ROM_BAR
        };
        let in_bars = (BAR0..bar_end).contains(&offset) || (rom..rom + 4).contains(&offset);
        if in_bars && f.get16(COMMAND) & (CMD_MEMORY | CMD_IO) != 0 {
            self.decode_violations.push((bdf, offset));
        }
        f.write(offset, bytes);
        self.writes.push((i, offset, width as u8));
    }
}

impl ConfigAccess for FakeEcam {
    fn read32(&mut self, bdf: Bdf, offset: u16) -> u32 {
        if !access_ok(offset, 4) {
            return u32::MAX;
        }
        match self.find(bdf) {
            Some(i) => self.fns[i].0.get32(offset),
            None => u32::MAX,
        }
    }

    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) {
        self.write(bdf, offset, &value.to_le_bytes());
    }

    fn write16(&mut self, bdf: Bdf, offset: u16, value: u16) {
        self.write(bdf, offset, &value.to_le_bytes());
    }

    fn write8(&mut self, bdf: Bdf, offset: u16, value: u8) {
        self.write(bdf, offset, &[value]);
    }
}
