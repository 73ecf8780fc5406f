//! Configuration space access: the [`ConfigAccess`] trait, the memory-mapped
//! ECAM implementation ([`Ecam`]), and register offsets.
//!
//! Reads may be done at any width through a 32-bit read (a read has no side
//! effect on the registers this project reads), but writes must have their real
//! width: a read-modify-write of the dword holding the Command register would
//! write back the Status register's RW1C bits and clear them, and the same goes
//! for a bridge's Secondary Status. Hence [`ConfigAccess::write16`] and
//! [`ConfigAccess::write8`] have no default built on `write32`.
//!
//! Offsets are within a function's 4 KiB configuration space. An access at or
//! beyond 4 KiB, or not naturally aligned for its width, reads all ones and is
//! not performed for writes.

#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use super::types::Bdf;

/// Size of one function's configuration space in an ECAM window.
pub const CONFIG_SPACE_SIZE: u16 = 4096;

/// Register offsets and bits (PCI Local Bus 3.0 / PCIe Base 6.0, chapter 7).
pub mod regs {
    /// Vendor ID (16 bits); 0xFFFF when no function answers.
    pub const VENDOR_ID: u16 = 0x00;
    /// Device ID (16 bits).
    pub const DEVICE_ID: u16 = 0x02;
    /// Command (16 bits).
    pub const COMMAND: u16 = 0x04;
    /// Status (16 bits, mostly RW1C).
    pub const STATUS: u16 = 0x06;
    /// Revision ID (bits 7:0) and class code (bits 31:8).
    pub const CLASS_REV: u16 = 0x08;
    /// Header type (8 bits): layout in bits 6:0, multi-function in bit 7.
    pub const HEADER_TYPE: u16 = 0x0e;
    /// First base address register.
    pub const BAR0: u16 = 0x10;
    /// Capabilities pointer (8 bits), valid when `STATUS_CAP_LIST` is set.
    pub const CAP_PTR: u16 = 0x34;
    /// Expansion ROM BAR of a type-0 header.
    pub const ROM_BAR: u16 = 0x30;
    /// Expansion ROM BAR of a type-1 header.
    pub const BRIDGE_ROM_BAR: u16 = 0x38;

    /// Type 1: primary bus number (8 bits).
    pub const PRIMARY_BUS: u16 = 0x18;
    /// Type 1: secondary bus number (8 bits).
    pub const SECONDARY_BUS: u16 = 0x19;
    /// Type 1: subordinate bus number (8 bits).
    pub const SUBORDINATE_BUS: u16 = 0x1a;
    /// Type 1: memory base (16 bits; address bits 31:20 in bits 15:4).
    pub const MEMORY_BASE: u16 = 0x20;
    /// Type 1: memory limit (16 bits).
    pub const MEMORY_LIMIT: u16 = 0x22;
    /// Type 1: prefetchable memory base (16 bits; bits 3:0 = 1 for 64-bit).
    pub const PREF_BASE: u16 = 0x24;
    /// Type 1: prefetchable memory limit (16 bits).
    pub const PREF_LIMIT: u16 = 0x26;
    /// Type 1: prefetchable base, address bits 63:32.
    pub const PREF_BASE_UPPER: u16 = 0x28;
    /// Type 1: prefetchable limit, address bits 63:32.
    pub const PREF_LIMIT_UPPER: u16 = 0x2c;

    /// Command: I/O space enable.
    pub const CMD_IO: u16 = 1 << 0;
    /// Command: memory space enable.
    pub const CMD_MEMORY: u16 = 1 << 1;
    /// Command: bus master enable.
    pub const CMD_BUS_MASTER: u16 = 1 << 2;
    /// Status: a capability list is present.
    pub const STATUS_CAP_LIST: u16 = 1 << 4;
    /// Header type: multi-function device.
    pub const HEADER_MULTI_FUNCTION: u8 = 0x80;
    /// Header type layout: endpoint.
    pub const HEADER_TYPE_ENDPOINT: u8 = 0;
    /// Header type layout: PCI-to-PCI bridge.
    pub const HEADER_TYPE_BRIDGE: u8 = 1;
}

/// Whether an access of `width` bytes at `offset` stays inside one naturally
/// aligned unit of configuration space.
pub const fn access_ok(offset: u16, width: u16) -> bool {
    offset < CONFIG_SPACE_SIZE && offset.is_multiple_of(width)
}

/// Configuration reads and writes of one PCI segment.
pub trait ConfigAccess {
    /// Reads the dword at `offset` (a multiple of 4). All ones if no function
    /// answers or the access is malformed.
    fn read32(&mut self, bdf: Bdf, offset: u16) -> u32;

    /// Writes the dword at `offset` (a multiple of 4); ignored if malformed.
    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32);

    /// Writes the halfword at `offset` (a multiple of 2) with a real 16-bit
    /// access, so the other half of the dword is untouched.
    fn write16(&mut self, bdf: Bdf, offset: u16, value: u16);

    /// Writes the byte at `offset` with a real 8-bit access.
    fn write8(&mut self, bdf: Bdf, offset: u16, value: u8);

    /// Reads the halfword at `offset` (a multiple of 2).
    fn read16(&mut self, bdf: Bdf, offset: u16) -> u16 {
        if !access_ok(offset, 2) {
            return 0xffff;
        }
        (self.read32(bdf, offset & !3) >> ((offset & 2) * 8)) as u16
    }

    /// Reads the byte at `offset`.
    fn read8(&mut self, bdf: Bdf, offset: u16) -> u8 {
        if !access_ok(offset, 1) {
            return 0xff;
        }
        (self.read32(bdf, offset & !3) >> ((offset & 3) * 8)) as u8
    }
}

/// A memory-mapped ECAM window (PCIe Base Specification, 7.2.2) covering
/// buses `bus_start..=bus_end`.
#[derive(Debug)]
pub struct Ecam {
    base: *mut u8,
    bus_start: u8,
    bus_end: u8,
}

impl Ecam {
    /// An accessor for the ECAM window at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the virtual address of the whole ECAM window for buses
    /// `bus_start..=bus_end` (1 MiB per bus), mapped as Device memory for the
    /// lifetime of the value, and nothing else may access it concurrently.
    pub unsafe fn new(base: *mut u8, bus_start: u8, bus_end: u8) -> Self {
        Self {
            base,
            bus_start,
            bus_end,
        }
    }

    /// Byte offset into the window, or `None` when the bus is outside the
    /// window or the access malformed.
    fn offset(&self, bdf: Bdf, offset: u16, width: u16) -> Option<usize> {
        if bdf.bus < self.bus_start || bdf.bus > self.bus_end || !access_ok(offset, width) {
            return None;
        }
        usize::try_from(bdf.ecam_offset(self.bus_start) + u64::from(offset)).ok()
    }

    /// The register's address, for an offset [`Ecam::offset`] accepted.
    fn ptr(&self, at: usize) -> *mut u8 {
        self.base.wrapping_add(at)
    }
}

impl ConfigAccess for Ecam {
    fn read32(&mut self, bdf: Bdf, offset: u16) -> u32 {
        match self.offset(bdf, offset, 4) {
            // SAFETY: `new`'s contract maps the window for every bus in range;
            // `offset` checked the bus, the bound and the alignment.
            Some(at) => unsafe { self.ptr(at).cast::<u32>().read_volatile() },
            None => u32::MAX,
        }
    }

    fn read16(&mut self, bdf: Bdf, offset: u16) -> u16 {
        match self.offset(bdf, offset, 2) {
            // SAFETY: as in `read32`.
            Some(at) => unsafe { self.ptr(at).cast::<u16>().read_volatile() },
            None => u16::MAX,
        }
    }

    fn read8(&mut self, bdf: Bdf, offset: u16) -> u8 {
        match self.offset(bdf, offset, 1) {
            // SAFETY: as in `read32`.
            Some(at) => unsafe { self.ptr(at).read_volatile() },
            None => u8::MAX,
        }
    }

    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) {
        if let Some(at) = self.offset(bdf, offset, 4) {
            // SAFETY: as in `read32`.
            unsafe { self.ptr(at).cast::<u32>().write_volatile(value) }
        }
    }

    fn write16(&mut self, bdf: Bdf, offset: u16, value: u16) {
        if let Some(at) = self.offset(bdf, offset, 2) {
            // SAFETY: as in `read32`.
            unsafe { self.ptr(at).cast::<u16>().write_volatile(value) }
        }
    }

    fn write8(&mut self, bdf: Bdf, offset: u16, value: u8) {
        if let Some(at) = self.offset(bdf, offset, 1) {
            // SAFETY: as in `read32`.
            unsafe { self.ptr(at).write_volatile(value) }
        }
    }
}

#[cfg(test)]
pub mod fake;

#[cfg(test)]
mod tests {
    use super::fake::{FakeEcam, FakeFn};
    use super::*;

    fn bdf(b: u8, d: u8, f: u8) -> Bdf {
        Bdf::new(b, d, f).unwrap()
    }

    #[test]
    fn ecam_reads_and_writes_the_right_bytes() {
        // Two buses (2 MiB) of fake ECAM in ordinary memory.
        let mut mem = vec![0u32; (2 << 20) / 4];
        let at = bdf(5, 3, 2).ecam_offset(4) as usize / 4;
        mem[at] = 0x1110_1af4;
        mem[at + 1] = 0x0010_0000;
        // SAFETY: `mem` outlives `ecam` and covers buses 4 and 5.
        let mut ecam = unsafe { Ecam::new(mem.as_mut_ptr().cast(), 4, 5) };
        assert_eq!(ecam.read32(bdf(5, 3, 2), 0), 0x1110_1af4);
        assert_eq!(ecam.read16(bdf(5, 3, 2), 2), 0x1110);
        assert_eq!(ecam.read8(bdf(5, 3, 2), 1), 0x1a);
        ecam.write16(bdf(5, 3, 2), regs::COMMAND, 0x0006);
        ecam.write8(bdf(5, 3, 2), 7, 0xab);
        assert_eq!(ecam.read32(bdf(5, 3, 2), 4), 0xab10_0006);
        // Out of the bus range, unaligned or past 4 KiB: all ones, no write.
        assert_eq!(ecam.read32(bdf(6, 0, 0), 0), u32::MAX);
        assert_eq!(ecam.read32(bdf(3, 0, 0), 0), u32::MAX);
        assert_eq!(ecam.read32(bdf(5, 3, 2), 2), u32::MAX);
        assert_eq!(ecam.read16(bdf(5, 3, 2), 4095), u16::MAX);
        assert_eq!(ecam.read8(bdf(5, 3, 2), 4096), u8::MAX);
        ecam.write32(bdf(5, 3, 2), 4096, 0);
        ecam.write32(bdf(6, 3, 2), 0, 0);
        ecam.write16(bdf(5, 3, 2), 1, 0);
        assert_eq!(mem[at], 0x1110_1af4);
        assert_eq!(mem[at + 1], 0xab10_0006);
        assert!(mem.iter().filter(|&&w| w != 0).count() == 2);
    }

    #[test]
    fn sub_dword_writes_leave_rw1c_status_alone() {
        let mut e = FakeEcam::new(0);
        let dev = e.add(None, FakeFn::endpoint(0, 0, 0x1234, 0x5678, 0));
        e.set_status(dev, 0x4000); // Received Master Abort... set by hardware
        let b = bdf(0, 0, 0);
        e.write16(b, regs::COMMAND, regs::CMD_MEMORY);
        assert_eq!(e.read16(b, regs::STATUS), 0x4000);
        // A 32-bit read-modify-write of the command register clears it.
        let v = e.read32(b, regs::COMMAND);
        e.write32(b, regs::COMMAND, v);
        assert_eq!(e.read16(b, regs::STATUS), 0);
        assert_eq!(e.read16(b, regs::COMMAND), regs::CMD_MEMORY);
    }

    #[test]
    fn default_narrow_reads() {
        let mut e = FakeEcam::new(0);
        e.add(None, FakeFn::endpoint(1, 0, 0x1af4, 0x1110, 0x0500_0001));
        let b = bdf(0, 1, 0);
        assert_eq!(e.read16(b, regs::VENDOR_ID), 0x1af4);
        assert_eq!(e.read16(b, regs::DEVICE_ID), 0x1110);
        assert_eq!(e.read8(b, regs::CLASS_REV), 0x01);
        assert_eq!(e.read8(b, 0x0b), 0x05);
        assert_eq!(e.read16(b, 3), 0xffff);
        assert_eq!(e.read16(bdf(0, 2, 0), regs::VENDOR_ID), 0xffff);
    }
}
