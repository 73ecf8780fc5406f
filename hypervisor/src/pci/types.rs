//! Types shared by host enumeration and the guest's virtual config space.

use core::fmt;

use crate::mm::addr::PhysAddr;
use crate::mm::attrs::BarPolicy;

/// Bus, device and function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bdf {
    /// Bus number.
    pub bus: u8,
    /// Device number (0-31).
    pub device: u8,
    /// Function number (0-7).
    pub function: u8,
}

impl Bdf {
    /// A BDF, or `None` if device or function is out of range.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Self> {
        if device < 32 && function < 8 {
            Some(Self {
                bus,
                device,
                function,
            })
        } else {
            None
        }
    }

    /// Byte offset of this function's 4 KiB config space in an ECAM window
    /// whose first bus is `bus_start` (PCIe Base Specification, 7.2.2).
    pub const fn ecam_offset(self, bus_start: u8) -> u64 {
        ((self.bus.wrapping_sub(bus_start) as u64) << 20)
            | ((self.device as u64) << 15)
            | ((self.function as u64) << 12)
    }

    /// The 16-bit routing ID: bus << 8 | device << 3 | function.
    pub const fn routing_id(self) -> u16 {
        ((self.bus as u16) << 8) | ((self.device as u16) << 3) | self.function as u16
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory.
    Mem32,
    /// 64-bit memory (occupies this BAR and the next).
    Mem64,
    /// I/O space.
    Io,
}

/// One base address register of a host device, as assigned on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Register index 0-5 (the lower one of a 64-bit pair).
    pub index: u8,
    /// What it decodes.
    pub kind: BarKind,
    /// The prefetchable bit.
    pub prefetchable: bool,
    /// Size in bytes (a power of two).
    pub size: u64,
    /// Where it sits in the host's physical address space (CPU side).
    pub host_addr: PhysAddr,
    /// The value written into the BAR (the PCI bus address).
    pub pci_addr: u64,
}

/// A passed-through device as host enumeration leaves it, and the policy the
/// command line gives each BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassthroughDevice {
    /// Where it is on the host.
    pub host_bdf: Bdf,
    /// Vendor ID.
    pub vendor_id: u16,
    /// Device ID.
    pub device_id: u16,
    /// Revision ID (bits 7:0) and class code (bits 31:8).
    pub class_rev: u32,
    /// Header type (bits 6:0; 0 for an endpoint).
    pub header_type: u8,
    /// Memory BARs the guest gets, with their stage-2 policies.
    pub bars: [Option<(Bar, BarPolicy)>; 6],
    /// Whether the host bridge says the device's DMA is cache-coherent.
    pub dma_coherent: bool,
    /// Whether bus mastering is allowed (`pci.dma=deny` keeps it off).
    pub bus_master_allowed: bool,
}
