//! The guest's PCIe host bridge: a virtual ECAM showing only the
//! passed-through devices.
//!
//! [`VirtualPciBus`] is an [`MmioDevice`] over the guest's `PCI_ECAM` window.
//! The guest sees its devices on bus 0 as devices 0, 1, 2... function 0, in
//! the order they were given to [`VirtualPciBus::new`];
//! [`VirtualPciBus::guest_bdf`] and [`VirtualPciBus::host_bdf`] translate between the two numberings. Each device shows a
//! virtual type-0 header; the physical device is reached only through the
//! small [`PhysicalConfig`] trait, and only for the few registers below.
//!
//! | offset | register | guest view | reaches the device |
//! |---|---|---|---|
//! | 0x00 | vendor / device ID | from [`PassthroughDevice`], read-only | no |
//! | 0x04 | command | virtual, filtered (below) | the filtered value is written |
//! | 0x06 | status | physical, with CAP_LIST cleared; writes ignored | read only |
//! | 0x08 | revision / class | from [`PassthroughDevice`], read-only | no |
//! | 0x0C | cache line size | scratch | no |
//! | 0x0D-0x0F | latency timer, header type, BIST | 0 (type 0, single function), read-only | no |
//! | 0x10-0x24 | BARs | shadow BARs (below) | never |
//! | 0x28 | CardBus CIS | 0 | no |
//! | 0x2C | subsystem vendor / ID | read from the device once, read-only | read once |
//! | 0x30 | expansion ROM BAR | 0, writes ignored (item 29) | no |
//! | 0x34 | capability pointer | 0: no capabilities | no |
//! | 0x3C | interrupt line | scratch | no |
//! | 0x3D | interrupt pin | 0: no INTx routed | no |
//! | 0x3E-0xFFF | the rest, device-specific and extended space | 0, writes ignored | no |
//!
//! Item numbers are those of the project's hostile-guest list.
//!
//! # Command register
//!
//! The guest may set Memory Space Enable, INTx Disable and, only when the
//! device's `bus_master_allowed` is set, Bus Master Enable (item 35: a refused
//! BME is logged once per device). I/O Space Enable stays 0 (no I/O BAR is
//! passed), and so do SERR# Enable and Parity Error Response, so a guest
//! cannot make the device signal errors to the host. Every write goes to the
//! physical command register as the filtered value with INTx Disable forced
//! on: no INTx is routed to the guest, so the device must not assert one on
//! the host. [`VirtualPciBus::new`] writes that same "all off" state to each
//! device so the physical register starts in the state the virtual one shows.
//!
//! # Status register
//!
//! Read from the device (error bits, interrupt status) with Capabilities List
//! cleared. Writes are ignored, RW1C error bits included: a guest cannot clear
//! an error bit once set. That costs a guest only the ability to acknowledge
//! errors it has no way to handle anyway (AER lives in the hidden PCIe
//! capability), and it means no status write ever reaches the device.
//!
//! # Capabilities and the space above 0x40
//!
//! Everything from 0x40 to 0xFFF reads 0 and ignores writes, and the
//! capability pointer reads 0: every capability is hidden, MSI and MSI-X
//! until interrupts are emulated, and also power management and the PCI
//! Express capability. Reading 0 at 0x100 ends the extended capability list
//! at once. What a guest loses: MSI/MSI-X (its driver falls back to polling or
//! fails to probe if it insists on interrupts), power-state changes (the
//! device stays in D0), the PCIe link and device control registers (Max
//! Payload/Read Request size stay as the host set them, which is also what
//! keeps the guest from changing them for other devices' sake), AER, ATS,
//! SR-IOV and every vendor-specific capability. The alternative, passing
//! reads through except the hidden capabilities, shows the guest more but
//! needs a bounded capability walk (item 36) and a per-capability allow-list
//! of writes; this simplest safe choice leaks nothing and can be widened one
//! capability at a time once interrupts exist.
//!
//! # Shadow BARs
//!
//! The physical BARs are never written (item 27): what the host assigned
//! stays. Each passed BAR gets a guest address, first assigned by
//! [`VirtualPciBus::new`] (naturally aligned, disjoint, 64-bit BARs in
//! `PCI_MMIO64` and 32-bit ones in `PCI_MMIO32`), and the guest sees and may
//! move that address. Guest PCI bus addresses are taken to equal IPAs: the
//! guest device tree's `ranges` map the windows one to one.
//!
//! A BAR smaller than a page is shown as one page (the sizing mask says
//! 4 KiB): stage 2 maps whole pages, and host enumeration gives such a BAR a
//! page of its own (item 37), page aligned, which `new` checks.
//!
//! - Sizing (item 28): writing all ones to the address bits of a BAR register
//!   (or of either half of a 64-bit one) makes it read the size mask with the
//!   read-only type bits intact, as hardware does, until the next write. No
//!   mapping changes.
//! - While Memory Space Enable is on, BAR writes are ignored and logged
//!   once per device (item 26).
//! - A new address takes effect only if it is naturally aligned (the guest
//!   wrote no bits below the size), lies wholly inside the window matching
//!   the BAR kind (a 64-bit BAR placed below 4 GiB is refused, so the guest
//!   device tree should offer the 64-bit window), and overlaps no other BAR
//!   of any passed device. Otherwise the write is refused: the BAR keeps its
//!   old value, and the refusal is logged once per device (item 27). Guest
//!   RAM, the ECAM, and everything else outside the two windows are refused
//!   by the window test.
//! - A 32-bit BAR's address takes effect at the write. A 64-bit BAR is
//!   written in two halves: the lower half is held (and read back as
//!   written) until the upper half is written, which checks and commits the
//!   whole address at once. That is the order Linux, FreeBSD and U-Boot use
//!   (low, then high), and it means a half-updated address is never checked,
//!   let alone mapped. A lower half written alone, or a BAR left in its sizing
//!   state, is resolved when Memory Space Enable is next set: committed if
//!   legal, else put back to the old address.
//! - Because a move that overlaps another BAR is refused even if the guest is
//!   about to move that one too, a guest that reassigns every BAR in an order
//!   with transient overlaps ends up with some BARs not where it believes
//!   (Linux then logs "error updating" for that BAR). Guests should keep the
//!   assignment made here, as they would firmware's: Linux does so when the
//!   device tree's `/chosen` has `linux,pci-probe-only`.
//!
//! # Stage 2
//!
//! The bus does not touch stage 2. A BAR is mapped exactly while its
//! device's Memory Space Enable is set (every BAR then holds a committed,
//! legal address); the bus queues [`BarEvent`]s for the run loop to apply
//! after each access ([`VirtualPciBus::take_events`]): Memory Space Enable
//! 0→1 maps every BAR of the device, 1→0 unmaps them (item 30), and a
//! relocation, which can only happen while it is off, emits nothing.
//! [`VirtualPciBus::mapped`] gives the current set. An `Unmap` queued while
//! its `Map` is still queued cancels both, so the queue holds at most two
//! events per BAR even if it is not drained.
//!
//! # Malformed and foreign accesses
//!
//! Accesses must be 1, 2 or 4 bytes, naturally aligned (so inside one
//! dword); anything else (8 or 3 bytes, unaligned, crossing a dword) is
//! [`MmioError::BadAccess`], which the MMIO bus turns into an all-ones read
//! or a dropped write (item 31). An ECAM offset cannot pass the 4 KiB of its
//! function: the next byte is the next function's space. An access to any
//! function the guest does not own (another bus, a device number past the
//! last passed device, a function other than 0) reads all ones and drops
//! writes, as an empty slot on a real bus does (item 33): vendor ID 0xFFFF
//! means "no device".

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(test)]
mod tests;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use crate::devices::mmio::{
    is_aligned, truncate, Effect, Effects, MmioDevice, MmioError, MmioResult, VcpuId,
};
use crate::mm::addr::{Ipa, IpaRange, PhysAddr, PAGE_SIZE};
use crate::mm::attrs::BarPolicy;
use crate::pci::types::{BarKind, Bdf, PassthroughDevice};

/// The guest's PCI memory windows: where the virtual bus may place BARs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestWindows {
    /// For 32-bit BARs.
    pub mmio32: IpaRange,
    /// For 64-bit BARs.
    pub mmio64: IpaRange,
}

impl GuestWindows {
    /// The window a BAR of `kind` lives in.
    pub fn for_kind(&self, kind: BarKind) -> IpaRange {
        if kind == BarKind::Mem64 {
            self.mmio64
        } else {
            self.mmio32
        }
    }
}

impl From<BarEvent> for Effect {
    fn from(e: BarEvent) -> Self {
        match e {
            BarEvent::Map {
                guest,
                host,
                policy,
            } => Effect::MapBar {
                ipa: guest,
                pa: host,
                policy,
            },
            BarEvent::Unmap { guest } => Effect::UnmapBar { ipa: guest },
        }
    }
}

/// The configuration space of one physical device, as the virtual bus needs
/// it. Adapted from host ECAM access by whoever builds the bus.
pub trait PhysicalConfig {
    /// The dword at `offset` (a multiple of 4, below 0x1000).
    fn read32(&mut self, offset: u16) -> u32;
    /// Writes the low `size` (1, 2 or 4) bytes of `value` at `offset`,
    /// naturally aligned.
    fn write(&mut self, offset: u16, size: u8, value: u32);
}

/// A change to the guest's stage 2 the run loop applies after an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarEvent {
    /// Map `guest` to `host..host + guest.size()` with `policy`.
    Map {
        /// Guest range, page aligned, a whole number of pages.
        guest: IpaRange,
        /// Host physical address of its start.
        host: PhysAddr,
        /// Stage-2 attributes.
        policy: BarPolicy,
    },
    /// Remove the mapping of `guest`, queued earlier by a `Map`.
    Unmap {
        /// Guest range, as in that `Map`.
        guest: IpaRange,
    },
}

/// Why the virtual bus cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VconfigError {
    /// `devices` and `phys` differ in length.
    PhysCount {
        /// Devices given.
        devices: usize,
        /// Physical config accessors given.
        phys: usize,
    },
    /// More devices than bus 0 has device numbers.
    TooManyDevices(usize),
    /// The same host device twice.
    Duplicate(Bdf),
    /// Not a type-0 (endpoint) header.
    NotEndpoint {
        /// The device.
        bdf: Bdf,
        /// Its header type.
        header_type: u8,
    },
    /// A BAR the virtual bus cannot show.
    BadBar {
        /// The device.
        bdf: Bdf,
        /// BAR index.
        index: u8,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The guest window for the BAR's kind has no room left for it.
    WindowFull {
        /// The device.
        bdf: Bdf,
        /// BAR index.
        index: u8,
        /// `"32-bit"` or `"64-bit"`.
        window: &'static str,
    },
}

impl fmt::Display for VconfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PhysCount { devices, phys } => write!(
                f,
                "{devices} passthrough devices but {phys} config space accessors"
            ),
            Self::TooManyDevices(n) => {
                write!(f, "{n} passthrough devices; guest bus 0 holds at most 32")
            }
            Self::Duplicate(bdf) => write!(f, "PCI device {bdf} passed through twice"),
            Self::NotEndpoint { bdf, header_type } => write!(
                f,
                "PCI device {bdf} has header type {header_type:#x}; only endpoints (type 0) can be passed through"
            ),
            Self::BadBar { bdf, index, reason } => {
                write!(f, "PCI device {bdf} BAR {index}: {reason}")
            }
            Self::WindowFull { bdf, index, window } => write!(
                f,
                "PCI device {bdf} BAR {index} does not fit in the guest's {window} PCI window"
            ),
        }
    }
}

/// Command register: I/O Space Enable.
pub const CMD_IO: u16 = 1 << 0;
/// Command register: Memory Space Enable.
pub const CMD_MEMORY: u16 = 1 << 1;
/// Command register: Bus Master Enable.
pub const CMD_BUS_MASTER: u16 = 1 << 2;
/// Command register: INTx Disable.
pub const CMD_INTX_DISABLE: u16 = 1 << 10;
/// Status register: Capabilities List.
pub const STATUS_CAP_LIST: u16 = 1 << 4;

/// Offset of the command register.
const REG_COMMAND: u16 = 0x04;
/// Offset of BAR 0.
const REG_BAR0: u16 = 0x10;
/// Device numbers on one bus.
const MAX_DEVICES: usize = 32;

/// Where a BAR register half's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Half {
    /// The committed address.
    Committed,
    /// What the guest wrote (bits 31:4), not yet checked: a sizing probe, or
    /// the lower half of a 64-bit address waiting for its upper half.
    Held(u32),
}

#[derive(Clone, Copy, Debug)]
struct VBar {
    kind: BarKind,
    prefetchable: bool,
    /// Size the guest sees: a power of two, at least a page.
    size: u64,
    host: PhysAddr,
    policy: BarPolicy,
    /// The guest window it must stay in.
    window: IpaRange,
    /// Committed guest address: always legal, and disjoint from every other
    /// BAR's.
    addr: u64,
    low: Half,
    high: Half,
}

impl VBar {
    fn range(&self) -> Option<IpaRange> {
        IpaRange::new(Ipa::new(self.addr), self.size)
    }

    /// Read-only type bits of the lower register.
    fn type_bits(&self) -> u32 {
        let width = if self.kind == BarKind::Mem64 {
            0b100
        } else {
            0
        };
        width | if self.prefetchable { 0b1000 } else { 0 }
    }

    fn read_low(&self) -> u32 {
        let mask = !(self.size - 1) as u32;
        let bits = match self.low {
            Half::Committed => self.addr as u32,
            Half::Held(v) => v,
        };
        (bits & mask & !0xF) | self.type_bits()
    }

    fn read_high(&self) -> u32 {
        let mask = (!(self.size - 1) >> 32) as u32;
        match self.high {
            Half::Committed => (self.addr >> 32) as u32,
            Half::Held(v) => v & mask,
        }
    }

    /// Whether `value` written to the lower register is a sizing probe: all
    /// its address bits ones.
    fn is_low_probe(&self, value: u32) -> bool {
        value | ((self.size - 1) as u32) | 0xF == u32::MAX
    }

    fn is_high_probe(&self, value: u32) -> bool {
        value | (((self.size - 1) >> 32) as u32) == u32::MAX
    }

    fn window(&self) -> IpaRange {
        self.window
    }
}

/// Log-once flags, per device.
#[derive(Clone, Copy, Debug, Default)]
struct Warned {
    bus_master: bool,
    bar_while_enabled: bool,
    bar_refused: bool,
}

struct VDevice {
    host_bdf: Bdf,
    ids: u32,
    class_rev: u32,
    subsystem: u32,
    bus_master_allowed: bool,
    command: u16,
    cache_line: u8,
    interrupt_line: u8,
    /// Indexed by register slot; a 64-bit BAR sits at its lower slot and the
    /// next slot is `None`.
    bars: [Option<VBar>; 6],
    phys: Box<dyn PhysicalConfig + Send>,
    warned: Warned,
}

impl VDevice {
    fn memory_enabled(&self) -> bool {
        self.command & CMD_MEMORY != 0
    }
}

/// Which register a BAR dword offset is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BarReg {
    /// The lower (or only) register of the BAR at this slot.
    Low(usize),
    /// The upper register of the 64-bit BAR at this slot.
    High(usize),
    /// Nothing passed there.
    Unused,
}

/// The guest's PCIe configuration space: see the module documentation.
pub struct VirtualPciBus {
    devices: Vec<VDevice>,
    events: Vec<BarEvent>,
}

impl fmt::Debug for VirtualPciBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualPciBus")
            .field("devices", &self.devices.len())
            .field("events", &self.events)
            .finish()
    }
}

impl VirtualPciBus {
    /// Builds the bus for `devices`, each reached through the matching entry
    /// of `phys`, assigns every BAR a guest address and writes each device's
    /// command register to its starting state (decoding and bus mastering
    /// off, INTx disabled). Fails if a device or BAR cannot be shown, or the
    /// guest windows cannot hold the BARs.
    pub fn new(
        devices: &[PassthroughDevice],
        phys: Vec<Box<dyn PhysicalConfig + Send>>,
        windows: GuestWindows,
    ) -> Result<Self, VconfigError> {
        if devices.len() != phys.len() {
            return Err(VconfigError::PhysCount {
                devices: devices.len(),
                phys: phys.len(),
            });
        }
        if devices.len() > MAX_DEVICES {
            return Err(VconfigError::TooManyDevices(devices.len()));
        }
        for (i, d) in devices.iter().enumerate() {
            if devices.iter().skip(i + 1).any(|o| o.host_bdf == d.host_bdf) {
                return Err(VconfigError::Duplicate(d.host_bdf));
            }
        }
        let mut out = Vec::with_capacity(devices.len());
        for (dev, mut phys) in devices.iter().zip(phys) {
            if dev.header_type & 0x7F != 0 {
                return Err(VconfigError::NotEndpoint {
                    bdf: dev.host_bdf,
                    header_type: dev.header_type,
                });
            }
            let bars = shadow_bars(dev, &windows)?;
            let subsystem = phys.read32(0x2C);
            phys.write(REG_COMMAND, 2, u32::from(CMD_INTX_DISABLE));
            out.push(VDevice {
                host_bdf: dev.host_bdf,
                ids: u32::from(dev.vendor_id) | u32::from(dev.device_id) << 16,
                class_rev: dev.class_rev,
                subsystem,
                bus_master_allowed: dev.bus_master_allowed,
                command: 0,
                cache_line: 0,
                interrupt_line: 0,
                bars,
                phys,
                warned: Warned::default(),
            });
        }
        assign(&mut out, &windows)?;
        Ok(Self {
            devices: out,
            events: Vec::new(),
        })
    }

    /// The guest's BDF for host device `host`, if it is passed through.
    pub fn guest_bdf(&self, host: Bdf) -> Option<Bdf> {
        let i = self.devices.iter().position(|d| d.host_bdf == host)?;
        Bdf::new(0, u8::try_from(i).ok()?, 0)
    }

    /// The host device behind guest BDF `guest`, if the guest has one there.
    pub fn host_bdf(&self, guest: Bdf) -> Option<Bdf> {
        if guest.bus != 0 || guest.function != 0 {
            return None;
        }
        self.devices
            .get(usize::from(guest.device))
            .map(|d| d.host_bdf)
    }

    /// The stage-2 changes queued since the last call, in order.
    pub fn take_events(&mut self) -> impl Iterator<Item = BarEvent> {
        core::mem::take(&mut self.events).into_iter()
    }

    /// Every BAR mapped now: guest range, host address, policy. The ranges
    /// are page aligned, naturally aligned to their size, inside the window
    /// of their kind, and pairwise disjoint.
    pub fn mapped(&self) -> impl Iterator<Item = (IpaRange, PhysAddr, BarPolicy)> + '_ {
        self.devices
            .iter()
            .filter(|d| d.memory_enabled())
            .flat_map(|d| d.bars.iter().flatten())
            .filter_map(|b| Some((b.range()?, b.host, b.policy)))
    }

    /// The device index an ECAM offset addresses, if the guest owns it.
    fn target(&self, offset: u64) -> Option<usize> {
        let bus = offset >> 20;
        let device = (offset >> 15) & 0x1F;
        let function = (offset >> 12) & 0x7;
        if bus != 0 || function != 0 {
            return None;
        }
        let i = usize::try_from(device).ok()?;
        (i < self.devices.len()).then_some(i)
    }

    fn read_dword(&mut self, d: usize, reg: u16) -> u32 {
        let Some(dev) = self.devices.get_mut(d) else {
            return u32::MAX;
        };
        match reg {
            0x00 => dev.ids,
            0x04 => {
                let status = (dev.phys.read32(REG_COMMAND) >> 16) as u16 & !STATUS_CAP_LIST;
                u32::from(dev.command) | u32::from(status) << 16
            }
            0x08 => dev.class_rev,
            0x0C => u32::from(dev.cache_line),
            0x10..=0x24 => match bar_reg(&dev.bars, reg) {
                BarReg::Low(i) => dev
                    .bars
                    .get(i)
                    .copied()
                    .flatten()
                    .map_or(0, |b| b.read_low()),
                BarReg::High(i) => dev
                    .bars
                    .get(i)
                    .copied()
                    .flatten()
                    .map_or(0, |b| b.read_high()),
                BarReg::Unused => 0,
            },
            0x2C => dev.subsystem,
            0x3C => u32::from(dev.interrupt_line),
            _ => 0,
        }
    }

    /// A write of the bytes of `value` selected by `mask` to dword `reg`.
    fn write_dword(&mut self, d: usize, reg: u16, value: u32, mask: u32) {
        match reg {
            0x04 if mask & 0xFFFF != 0 => {
                let Some(dev) = self.devices.get(d) else {
                    return;
                };
                let merged = (u32::from(dev.command) & !mask) | (value & mask);
                self.write_command(d, merged as u16);
            }
            0x0C if mask & 0xFF != 0 => {
                if let Some(dev) = self.devices.get_mut(d) {
                    dev.cache_line = value as u8;
                }
            }
            0x10..=0x24 => {
                let current = self.read_dword(d, reg);
                self.write_bar(d, reg, (current & !mask) | (value & mask));
            }
            0x3C if mask & 0xFF != 0 => {
                if let Some(dev) = self.devices.get_mut(d) {
                    dev.interrupt_line = value as u8;
                }
            }
            // IDs, status, class, header type, subsystem, ROM, capability
            // pointer, interrupt pin and everything above 0x40: read-only.
            _ => {}
        }
    }

    fn write_command(&mut self, d: usize, requested: u16) {
        let Some(dev) = self.devices.get_mut(d) else {
            return;
        };
        let mut allowed = CMD_MEMORY | CMD_INTX_DISABLE;
        if dev.bus_master_allowed {
            allowed |= CMD_BUS_MASTER;
        } else if requested & CMD_BUS_MASTER != 0 && !dev.warned.bus_master {
            dev.warned.bus_master = true;
            log::warn!(
                "pci {}: guest set Bus Master Enable, refused: DMA is not allowed for this device",
                dev.host_bdf
            );
        }
        let new = requested & allowed;
        let was_enabled = dev.memory_enabled();
        dev.command = new;
        dev.phys
            .write(REG_COMMAND, 2, u32::from(new | CMD_INTX_DISABLE));
        let now_enabled = new & CMD_MEMORY != 0;
        if !was_enabled && now_enabled {
            self.resolve_held(d);
            self.queue_device(d, true);
        } else if was_enabled && !now_enabled {
            self.queue_device(d, false);
        }
    }

    /// Queues a `Map` (or `Unmap`) for every BAR of device `d`.
    fn queue_device(&mut self, d: usize, map: bool) {
        let Some(dev) = self.devices.get(d) else {
            return;
        };
        let bars: Vec<VBar> = dev.bars.iter().flatten().copied().collect();
        for bar in bars {
            let Some(guest) = bar.range() else {
                continue;
            };
            if map {
                self.events.push(BarEvent::Map {
                    guest,
                    host: bar.host,
                    policy: bar.policy,
                });
            } else {
                self.queue_unmap(guest);
            }
        }
    }

    /// Queues an `Unmap`, or cancels a still-queued `Map` of the same range.
    fn queue_unmap(&mut self, guest: IpaRange) {
        let last = self.events.iter().rposition(|e| match e {
            BarEvent::Map { guest: g, .. } | BarEvent::Unmap { guest: g } => *g == guest,
        });
        if let Some(pos) = last {
            if matches!(self.events.get(pos), Some(BarEvent::Map { .. })) {
                self.events.remove(pos);
                return;
            }
        }
        self.events.push(BarEvent::Unmap { guest });
    }

    /// Commits or drops what the guest left held in device `d`'s BARs:
    /// decoding is about to start, so every BAR must hold its real address.
    fn resolve_held(&mut self, d: usize) {
        for slot in 0..6 {
            let Some(bar) = self.bar(d, slot) else {
                continue;
            };
            if bar.low == Half::Committed && bar.high == Half::Committed {
                continue;
            }
            let low = match bar.low {
                Half::Held(v) => u64::from(v & !0xF),
                Half::Committed => bar.addr & 0xFFFF_FFFF,
            };
            let high = match bar.high {
                // An upper half left probing was never given a value.
                Half::Held(_) => bar.addr >> 32,
                Half::Committed if bar.kind == BarKind::Mem64 => bar.addr >> 32,
                Half::Committed => 0,
            };
            self.commit(d, slot, high << 32 | low);
        }
    }

    fn bar(&self, d: usize, slot: usize) -> Option<VBar> {
        self.devices.get(d)?.bars.get(slot).copied().flatten()
    }

    fn bar_mut(&mut self, d: usize, slot: usize) -> Option<&mut VBar> {
        self.devices.get_mut(d)?.bars.get_mut(slot)?.as_mut()
    }

    fn write_bar(&mut self, d: usize, reg: u16, value: u32) {
        let Some(dev) = self.devices.get_mut(d) else {
            return;
        };
        let which = bar_reg(&dev.bars, reg);
        if which == BarReg::Unused {
            return;
        }
        if dev.memory_enabled() {
            if !dev.warned.bar_while_enabled {
                dev.warned.bar_while_enabled = true;
                log::warn!(
                    "pci {}: guest wrote a BAR with memory decoding on; ignored",
                    dev.host_bdf
                );
            }
            return;
        }
        match which {
            BarReg::Low(slot) => {
                let Some(bar) = self.bar_mut(d, slot) else {
                    return;
                };
                if bar.kind == BarKind::Mem64 || bar.is_low_probe(value) {
                    bar.low = Half::Held(value & !0xF);
                } else {
                    self.commit(d, slot, u64::from(value & !0xF));
                }
            }
            BarReg::High(slot) => {
                let Some(bar) = self.bar_mut(d, slot) else {
                    return;
                };
                if bar.is_high_probe(value) {
                    bar.high = Half::Held(value);
                } else {
                    let low = match bar.low {
                        Half::Held(v) => u64::from(v),
                        Half::Committed => bar.addr & 0xFFFF_FFFF,
                    };
                    self.commit(d, slot, u64::from(value) << 32 | low);
                }
            }
            BarReg::Unused => {}
        }
    }

    /// Moves BAR `slot` of device `d` to `addr` if that is legal, else keeps
    /// it where it was; either way both halves then read the committed
    /// address.
    fn commit(&mut self, d: usize, slot: usize, addr: u64) {
        let legal = self.is_legal(d, slot, addr);
        let Some(dev) = self.devices.get_mut(d) else {
            return;
        };
        let Some(bar) = dev.bars.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        bar.low = Half::Committed;
        bar.high = Half::Committed;
        if legal {
            bar.addr = addr;
        } else if !dev.warned.bar_refused {
            dev.warned.bar_refused = true;
            log::warn!(
                "pci {}: guest moved BAR {slot} to {addr:#x}, outside the {:#x}-byte aligned \
                 places of its window {} or onto another BAR; refused (further refusals not logged)",
                dev.host_bdf,
                bar.size,
                bar.window()
            );
        }
    }

    /// Whether BAR `slot` of device `d` may live at `addr`.
    fn is_legal(&self, d: usize, slot: usize, addr: u64) -> bool {
        let Some(bar) = self.bar(d, slot) else {
            return false;
        };
        if addr & (bar.size - 1) != 0 {
            return false;
        }
        let Some(range) = IpaRange::new(Ipa::new(addr), bar.size) else {
            return false;
        };
        if !bar.window().contains_range(&range) {
            return false;
        }
        !self.devices.iter().enumerate().any(|(od, dev)| {
            dev.bars.iter().enumerate().any(|(os, other)| {
                (od, os) != (d, slot)
                    && other
                        .and_then(|o| o.range())
                        .is_some_and(|r| r.overlaps(&range))
            })
        })
    }
}

/// Which BAR register dword `reg` (0x10-0x24) is.
fn bar_reg(bars: &[Option<VBar>; 6], reg: u16) -> BarReg {
    let slot = usize::from(reg.wrapping_sub(REG_BAR0) / 4);
    if let Some(Some(_)) = bars.get(slot) {
        return BarReg::Low(slot);
    }
    if let Some(lower) = slot.checked_sub(1) {
        if let Some(Some(b)) = bars.get(lower) {
            if b.kind == BarKind::Mem64 {
                return BarReg::High(lower);
            }
        }
    }
    BarReg::Unused
}

/// The shadow BARs of `dev`, not yet placed.
fn shadow_bars(
    dev: &PassthroughDevice,
    windows: &GuestWindows,
) -> Result<[Option<VBar>; 6], VconfigError> {
    let mut bars: [Option<VBar>; 6] = [None; 6];
    let mut used = [false; 6];
    for (bar, policy) in dev.bars.iter().flatten() {
        let bad = |reason| VconfigError::BadBar {
            bdf: dev.host_bdf,
            index: bar.index,
            reason,
        };
        let slot = usize::from(bar.index);
        let slots = match bar.kind {
            BarKind::Io => return Err(bad("I/O BARs cannot be passed through")),
            BarKind::Mem32 => 1,
            BarKind::Mem64 => 2,
        };
        if slot + slots > 6 {
            return Err(bad("index out of range"));
        }
        for s in slot..slot + slots {
            match used.get_mut(s) {
                Some(u) if !*u => *u = true,
                _ => return Err(bad("shares a register with another BAR")),
            }
        }
        if !bar.size.is_power_of_two() {
            return Err(bad("size is not a power of two"));
        }
        if bar.kind == BarKind::Mem32 && bar.size > 1 << 31 {
            return Err(bad("32-bit BAR larger than 2 GiB"));
        }
        if !bar.host_addr.is_aligned(PAGE_SIZE) {
            return Err(bad("host address not page aligned"));
        }
        let size = bar.size.max(PAGE_SIZE);
        if bar.host_addr.checked_add(size).is_none() {
            return Err(bad("host range wraps"));
        }
        if let Some(entry) = bars.get_mut(slot) {
            *entry = Some(VBar {
                window: windows.for_kind(bar.kind),
                kind: bar.kind,
                prefetchable: bar.prefetchable,
                size,
                host: bar.host_addr,
                policy: *policy,
                addr: 0,
                low: Half::Committed,
                high: Half::Committed,
            });
        }
    }
    Ok(bars)
}

/// Gives every BAR a guest address: per window, largest first, each at the
/// next naturally aligned free address, so nothing is wasted between BARs of
/// decreasing size.
fn assign(devices: &mut [VDevice], windows: &GuestWindows) -> Result<(), VconfigError> {
    for kind in [BarKind::Mem32, BarKind::Mem64] {
        let window = windows.for_kind(kind);
        let mut order: Vec<(u64, usize, usize)> = Vec::new();
        for (d, dev) in devices.iter().enumerate() {
            for (s, bar) in dev.bars.iter().enumerate() {
                if let Some(b) = bar.filter(|b| b.kind == kind) {
                    order.push((b.size, d, s));
                }
            }
        }
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut next = window.start();
        for (size, d, s) in order {
            let Some(dev) = devices.get_mut(d) else {
                continue;
            };
            let full = VconfigError::WindowFull {
                bdf: dev.host_bdf,
                index: s as u8,
                window: if kind == BarKind::Mem64 {
                    "64-bit"
                } else {
                    "32-bit"
                },
            };
            let start = next.checked_align_up(size).ok_or(full)?;
            let range = IpaRange::new(start, size).ok_or(full)?;
            if !window.contains_range(&range) {
                return Err(full);
            }
            if let Some(Some(bar)) = dev.bars.get_mut(s) {
                bar.addr = start.raw();
            }
            next = range.end();
        }
    }
    Ok(())
}

/// Whether an access of `size` bytes at `offset` is one the config space
/// answers: 1, 2 or 4 bytes, naturally aligned, so inside one dword.
fn access_ok(offset: u64, size: u8) -> bool {
    matches!(size, 1 | 2 | 4) && is_aligned(offset, size)
}

/// Dword offset, and the shift and mask of the accessed bytes within it.
fn lanes(offset: u64, size: u8) -> (u16, u32, u32) {
    let reg = (offset & 0xFFC) as u16;
    let shift = ((offset & 3) * 8) as u32;
    let mask = (truncate(u64::MAX, size) << shift) as u32;
    (reg, shift, mask)
}

impl VirtualPciBus {
    /// A config-space load of `size` bytes at ECAM `offset`.
    pub fn read(&mut self, offset: u64, size: u8) -> MmioResult<u64> {
        if !access_ok(offset, size) {
            return Err(MmioError::BadAccess);
        }
        let Some(d) = self.target(offset) else {
            return Ok(truncate(u64::MAX, size));
        };
        let (reg, shift, _) = lanes(offset, size);
        let dword = self.read_dword(d, reg);
        Ok(truncate(u64::from(dword >> shift), size))
    }

    /// A config-space store; the stage-2 changes it causes are queued for
    /// [`Self::take_events`].
    pub fn write(&mut self, offset: u64, size: u8, value: u64) -> MmioResult<()> {
        if !access_ok(offset, size) {
            return Err(MmioError::BadAccess);
        }
        let Some(d) = self.target(offset) else {
            return Ok(());
        };
        let (reg, shift, mask) = lanes(offset, size);
        let value = (truncate(value, size) << shift) as u32;
        self.write_dword(d, reg, value, mask);
        Ok(())
    }
}

/// On the MMIO bus, the stage-2 changes a write causes leave as effects.
/// Config space is the same for every vCPU.
impl MmioDevice for VirtualPciBus {
    fn name(&self) -> &'static str {
        "pci-ecam"
    }

    fn read(&mut self, _: VcpuId, offset: u64, size: u8, _: &mut Effects) -> MmioResult<u64> {
        VirtualPciBus::read(self, offset, size)
    }

    fn write(
        &mut self,
        _: VcpuId,
        offset: u64,
        size: u8,
        value: u64,
        fx: &mut Effects,
    ) -> MmioResult<()> {
        let r = VirtualPciBus::write(self, offset, size, value);
        for event in self.take_events() {
            fx.push(event.into());
        }
        r
    }
}
