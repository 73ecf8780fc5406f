//! The MMIO bus: emulated devices behind stage-2 data aborts.
//!
//! The vcpu loop decodes a data abort with a valid syndrome into a
//! [`BusAccess`] and calls [`MmioBus::dispatch`] with the fault IPA and the
//! calling vCPU. The bus finds the device, hands it the vCPU, an offset and a
//! size, and turns the answer into
//! what goes into the transfer register: the loaded bytes sign- or
//! zero-extended as the load instruction asks (ISS.SSE and ISS.SF; Arm ARM,
//! ESR_EL2, "ISS encoding for an exception from a Data Abort").
//!
//! Policy for accesses a device refuses as malformed (hostile-guest item 10:
//! wrong width, unaligned, a byte lane a register does not have): a device
//! answers [`MmioError::BadAccess`] and the bus makes that read as all ones
//! and drops the write, so a guest probing a register with the wrong width
//! sees the "nothing there" value a real bus gives and keeps running. The
//! rule lives here, once, instead of in every device. A device that wants
//! the guest to take an abort answers [`MmioError::Refused`] instead, and an
//! access to no device, or one that runs past the end of a device's region,
//! is [`DispatchResult::Unmapped`]: the caller injects a data abort.
//!
//! Devices know nothing of the VM. What an access changes beyond the device's
//! own registers (a BAR appearing in stage 2, an interrupt line) is pushed as
//! an [`Effect`]; the VM applies the effects before the vCPU resumes.
//!
//! The bus is shared by every vCPU of its VM. The device list is fixed once
//! the VM is built; each device sits behind its own lock, held only for the
//! one access (never across guest entry), so vCPUs touching different devices
//! never wait for each other.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use alloc::boxed::Box;
use alloc::vec::Vec;

use spin::Mutex;

use crate::mm::addr::{Ipa, IpaRange, PhysAddr};
use crate::mm::attrs::BarPolicy;

/// Which vCPU of its VM made an access: its index, 0 for the boot vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VcpuId(pub usize);

/// What an access asks of the VM beyond the device's own state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Map guest `ipa` to host `pa` in stage 2 with a BAR's policy.
    MapBar {
        /// Where the guest placed the BAR.
        ipa: IpaRange,
        /// The BAR's physical address.
        pa: PhysAddr,
        /// Its memory-attribute policy.
        policy: BarPolicy,
    },
    /// Remove a BAR's mapping from stage 2.
    UnmapBar {
        /// The range that was mapped.
        ipa: IpaRange,
    },
    /// An interrupt line the device drives changed level.
    Line {
        /// The interrupt's ID in the guest's interrupt controller.
        intid: u32,
        /// Asserted.
        level: bool,
    },
}

/// The effects of one or more accesses, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects(Vec<Effect>);

impl Effects {
    /// None yet. Allocates nothing until the first push.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Appends one effect.
    pub fn push(&mut self, effect: Effect) {
        self.0.push(effect);
    }

    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The effects so far, in order.
    pub fn as_slice(&self) -> &[Effect] {
        &self.0
    }

    /// Takes every effect out, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = Effect> + '_ {
        self.0.drain(..)
    }
}

/// Why a device did not complete an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// Wrong width or alignment for the register: reads all ones, writes ignored.
    BadAccess,
    /// The device refuses the access: the guest takes an abort.
    Refused,
}

/// What a device access returns.
pub type MmioResult<T> = Result<T, MmioError>;

/// A device emulated behind trapped MMIO. `offset` is from the start of the
/// device's region and `offset + size` never passes its end; `size` is 1, 2,
/// 4 or 8. Written values are masked to `size` bytes, and a read result's
/// bytes beyond `size` are ignored. `vcpu` is the vCPU making the access;
/// whatever the access changes outside the device goes into `fx`.
pub trait MmioDevice {
    /// Name, for logs.
    fn name(&self) -> &'static str;
    /// A load of `size` bytes at `offset`.
    fn read(&mut self, vcpu: VcpuId, offset: u64, size: u8, fx: &mut Effects) -> MmioResult<u64>;
    /// A store of the low `size` bytes of `value` at `offset`.
    fn write(
        &mut self,
        vcpu: VcpuId,
        offset: u64,
        size: u8,
        value: u64,
        fx: &mut Effects,
    ) -> MmioResult<()>;
}

/// A trapped access, as the data abort syndrome describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusAccess {
    /// Bytes: 1, 2, 4 or 8 (ISS.SAS).
    pub size: u8,
    /// A store (ISS.WnR).
    pub write: bool,
    /// For a store, the transfer register's value.
    pub value: u64,
    /// A load that sign-extends (ISS.SSE).
    pub sign_extend: bool,
    /// The transfer register is an X register (ISS.SF); else a W register.
    pub sixty_four: bool,
}

/// The outcome of one access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DispatchResult {
    /// A load: the value for the transfer register, already extended to its width.
    Read(u64),
    /// A store completed (or was dropped by the bad-access policy).
    WriteDone,
    /// No device there, or the access crosses the end of one: inject an abort.
    Unmapped,
    /// The device refused it, or the access itself is malformed: inject an abort.
    DeviceError,
}

/// Why a device could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError {
    /// The bus already has [`MAX_DEVICES`] devices.
    Full,
    /// The range has no bytes.
    Empty,
    /// The range overlaps a registered device's.
    Overlap,
}

/// Most devices one bus holds.
pub const MAX_DEVICES: usize = 16;

struct Region {
    range: IpaRange,
    name: &'static str,
    device: Mutex<Box<dyn MmioDevice + Send>>,
}

/// A VM's emulated devices, each owning a range of IPAs.
pub struct MmioBus {
    regions: [Option<Region>; MAX_DEVICES],
}

impl Default for MmioBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MmioBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self {
            regions: core::array::from_fn(|_| None),
        }
    }

    /// Puts `device` at `range`. A range that wraps cannot exist ([`IpaRange::new`]
    /// refuses it); empty and overlapping ranges are refused here.
    pub fn register(
        &mut self,
        range: IpaRange,
        device: Box<dyn MmioDevice + Send>,
    ) -> Result<(), BusError> {
        if range.is_empty() {
            return Err(BusError::Empty);
        }
        if self
            .regions
            .iter()
            .flatten()
            .any(|r| r.range.overlaps(&range))
        {
            return Err(BusError::Overlap);
        }
        let slot = self
            .regions
            .iter_mut()
            .find(|r| r.is_none())
            .ok_or(BusError::Full)?;
        *slot = Some(Region {
            range,
            name: device.name(),
            device: Mutex::new(device),
        });
        Ok(())
    }

    /// The range and name of the device at `ipa`, if any.
    pub fn device_at(&self, ipa: Ipa) -> Option<(IpaRange, &'static str)> {
        self.regions
            .iter()
            .flatten()
            .find(|r| r.range.contains(ipa))
            .map(|r| (r.range, r.name))
    }

    /// Performs one trapped access at `ipa` by `vcpu`, pushing what it changes
    /// outside the device onto `fx`. Never panics. Never inlined: the
    /// debugger's breakpoint for every emulated access (`hv-break-mmio`).
    #[inline(never)]
    pub fn dispatch(
        &self,
        vcpu: VcpuId,
        ipa: Ipa,
        access: BusAccess,
        fx: &mut Effects,
    ) -> DispatchResult {
        if !matches!(access.size, 1 | 2 | 4 | 8) {
            return DispatchResult::DeviceError;
        }
        let Some(region) = self
            .regions
            .iter()
            .flatten()
            .find(|r| r.range.contains(ipa))
        else {
            return DispatchResult::Unmapped;
        };
        let Some(offset) = ipa.offset_from(region.range.start()) else {
            return DispatchResult::Unmapped;
        };
        match offset.checked_add(u64::from(access.size)) {
            Some(end) if end <= region.range.size() => {}
            _ => return DispatchResult::Unmapped,
        }
        let size = access.size;
        let mut device = region.device.lock();
        if access.write {
            match device.write(vcpu, offset, size, truncate(access.value, size), fx) {
                Ok(()) | Err(MmioError::BadAccess) => DispatchResult::WriteDone,
                Err(MmioError::Refused) => DispatchResult::DeviceError,
            }
        } else {
            match device.read(vcpu, offset, size, fx) {
                Ok(v) => {
                    DispatchResult::Read(extend(v, size, access.sign_extend, access.sixty_four))
                }
                Err(MmioError::BadAccess) => DispatchResult::Read(extend(
                    u64::MAX,
                    size,
                    access.sign_extend,
                    access.sixty_four,
                )),
                Err(MmioError::Refused) => DispatchResult::DeviceError,
            }
        }
    }
}

/// The low `size` bytes of `value`.
pub const fn truncate(value: u64, size: u8) -> u64 {
    match size {
        1 => value & 0xFF,
        2 => value & 0xFFFF,
        4 => value & 0xFFFF_FFFF,
        _ => value,
    }
}

/// The value a load of `size` bytes puts in its transfer register: the bytes
/// sign-extended (LDRSB, LDRSH, LDRSW) or zero-extended, to 64 bits for an X
/// register or to 32 bits for a W register, whose write clears bits 63:32.
pub const fn extend(raw: u64, size: u8, sign_extend: bool, sixty_four: bool) -> u64 {
    let value = truncate(raw, size);
    let bits = match size {
        1 => 8,
        2 => 16,
        4 => 32,
        _ => 64,
    };
    let value = if sign_extend && bits < 64 {
        let shift = 64 - bits;
        (((value << shift) as i64) >> shift) as u64
    } else {
        value
    };
    if sixty_four {
        value
    } else {
        value & 0xFFFF_FFFF
    }
}

/// Whether an access of `size` bytes at `offset` is naturally aligned; a helper
/// for devices applying the bad-access policy.
pub const fn is_aligned(offset: u64, size: u8) -> bool {
    size != 0 && size.is_power_of_two() && offset & (size as u64 - 1) == 0
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use spin::Mutex;

    type Log = Arc<Mutex<Vec<(u64, u8, u64)>>>;

    /// 32-bit registers that answer only aligned 4-byte accesses; the
    /// register at 0x10 refuses everything; reads return `pattern`.
    struct Regs {
        pattern: u64,
        writes: Log,
    }

    impl MmioDevice for Regs {
        fn name(&self) -> &'static str {
            "regs"
        }

        fn read(
            &mut self,
            _vcpu: VcpuId,
            offset: u64,
            size: u8,
            _fx: &mut Effects,
        ) -> MmioResult<u64> {
            if offset == 0x10 {
                return Err(MmioError::Refused);
            }
            if size != 4 || !is_aligned(offset, size) {
                return Err(MmioError::BadAccess);
            }
            Ok(self.pattern)
        }

        fn write(
            &mut self,
            _vcpu: VcpuId,
            offset: u64,
            size: u8,
            value: u64,
            _fx: &mut Effects,
        ) -> MmioResult<()> {
            if offset == 0x10 {
                return Err(MmioError::Refused);
            }
            if size != 4 || !is_aligned(offset, size) {
                return Err(MmioError::BadAccess);
            }
            self.writes.lock().push((offset, size, value));
            Ok(())
        }
    }

    /// Answers any access with `pattern`, for extension tests.
    struct Raw(u64);

    impl MmioDevice for Raw {
        fn name(&self) -> &'static str {
            "raw"
        }
        fn read(&mut self, _vcpu: VcpuId, _: u64, _: u8, _fx: &mut Effects) -> MmioResult<u64> {
            Ok(self.0)
        }
        fn write(
            &mut self,
            _vcpu: VcpuId,
            _: u64,
            _: u8,
            _: u64,
            _fx: &mut Effects,
        ) -> MmioResult<()> {
            Ok(())
        }
    }

    fn range(start: u64, size: u64) -> IpaRange {
        IpaRange::new(Ipa::new(start), size).unwrap()
    }

    fn load(size: u8, sign_extend: bool, sixty_four: bool) -> BusAccess {
        BusAccess {
            size,
            write: false,
            value: 0,
            sign_extend,
            sixty_four,
        }
    }

    fn store(size: u8, value: u64) -> BusAccess {
        BusAccess {
            size,
            write: true,
            value,
            sign_extend: false,
            sixty_four: true,
        }
    }

    fn bus_with_regs() -> (MmioBus, Log) {
        let log = Log::default();
        let mut bus = MmioBus::new();
        bus.register(
            range(0x900_0000, 0x1000),
            Box::new(Regs {
                pattern: 0x1234_5678,
                writes: log.clone(),
            }),
        )
        .unwrap();
        (bus, log)
    }

    #[test]
    fn register_refuses_empty_overlap_and_overflow() {
        let mut bus = MmioBus::new();
        assert_eq!(
            bus.register(range(0x1000, 0), Box::new(Raw(0))),
            Err(BusError::Empty)
        );
        bus.register(range(0x1000, 0x1000), Box::new(Raw(0)))
            .unwrap();
        assert_eq!(
            bus.register(range(0x1FFF, 1), Box::new(Raw(0))),
            Err(BusError::Overlap)
        );
        assert_eq!(
            bus.register(range(0, 0x1001), Box::new(Raw(0))),
            Err(BusError::Overlap)
        );
        bus.register(range(0x2000, 0x1000), Box::new(Raw(0)))
            .unwrap();
        bus.register(range(0, 0x1000), Box::new(Raw(0))).unwrap();
        for i in 3..MAX_DEVICES as u64 {
            bus.register(range(i * 0x1000, 0x1000), Box::new(Raw(0)))
                .unwrap();
        }
        assert_eq!(
            bus.register(range(0x10_0000, 0x1000), Box::new(Raw(0))),
            Err(BusError::Full)
        );
        // The top of the address space is a legal place for a device.
        let mut top = MmioBus::new();
        top.register(range(u64::MAX - 0xFFF, 0xFFF), Box::new(Raw(7)))
            .unwrap();
        assert_eq!(
            top.dispatch(
                VcpuId(0),
                Ipa::new(u64::MAX - 4),
                load(4, false, true),
                &mut Effects::new()
            ),
            DispatchResult::Read(7)
        );
        assert_eq!(
            top.dispatch(
                VcpuId(0),
                Ipa::new(u64::MAX - 1),
                load(4, false, true),
                &mut Effects::new()
            ),
            DispatchResult::Unmapped
        );
        assert_eq!(
            top.dispatch(
                VcpuId(0),
                Ipa::new(u64::MAX),
                load(8, false, true),
                &mut Effects::new()
            ),
            DispatchResult::Unmapped
        );
    }

    #[test]
    fn dispatch_finds_the_device_and_its_offset() {
        let (bus, log) = bus_with_regs();
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(0x900_0004),
                load(4, false, false),
                &mut Effects::new()
            ),
            DispatchResult::Read(0x1234_5678)
        );
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(0x900_0008),
                store(4, 0xFFFF_FFFF_AABB_CCDD),
                &mut Effects::new()
            ),
            DispatchResult::WriteDone
        );
        assert_eq!(*log.lock(), [(8, 4, 0xAABB_CCDD)]);
        assert_eq!(
            bus.device_at(Ipa::new(0x900_0FFF)),
            Some((range(0x900_0000, 0x1000), "regs"))
        );
        assert_eq!(bus.device_at(Ipa::new(0x900_1000)), None);
    }

    #[test]
    fn no_device_or_crossing_the_end_is_unmapped() {
        let (bus, log) = bus_with_regs();
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(0x8FF_FFFC),
                load(4, false, false),
                &mut Effects::new()
            ),
            DispatchResult::Unmapped
        );
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(0x900_1000),
                store(4, 0),
                &mut Effects::new()
            ),
            DispatchResult::Unmapped
        );
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(0x900_0FFE),
                load(4, false, false),
                &mut Effects::new()
            ),
            DispatchResult::Unmapped
        );
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(0x900_0FFC),
                store(8, 0),
                &mut Effects::new()
            ),
            DispatchResult::Unmapped
        );
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(u64::MAX),
                load(8, false, true),
                &mut Effects::new()
            ),
            DispatchResult::Unmapped
        );
        assert!(log.lock().is_empty());
    }

    #[test]
    fn bad_width_or_alignment_reads_all_ones_and_drops_writes() {
        let (bus, log) = bus_with_regs();
        let at = Ipa::new(0x900_0004);
        assert_eq!(
            bus.dispatch(VcpuId(0), at, load(1, false, false), &mut Effects::new()),
            DispatchResult::Read(0xFF)
        );
        assert_eq!(
            bus.dispatch(VcpuId(0), at, load(2, false, true), &mut Effects::new()),
            DispatchResult::Read(0xFFFF)
        );
        assert_eq!(
            bus.dispatch(VcpuId(0), at, load(8, false, true), &mut Effects::new()),
            DispatchResult::Read(u64::MAX)
        );
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(0x900_0006),
                load(4, false, true),
                &mut Effects::new()
            ),
            DispatchResult::Read(0xFFFF_FFFF)
        );
        // All ones through LDRSB/LDRSH: the register is all ones at its width.
        assert_eq!(
            bus.dispatch(VcpuId(0), at, load(1, true, true), &mut Effects::new()),
            DispatchResult::Read(u64::MAX)
        );
        assert_eq!(
            bus.dispatch(VcpuId(0), at, load(2, true, false), &mut Effects::new()),
            DispatchResult::Read(0xFFFF_FFFF)
        );
        assert_eq!(
            bus.dispatch(VcpuId(0), at, store(1, 0x55), &mut Effects::new()),
            DispatchResult::WriteDone
        );
        assert_eq!(
            bus.dispatch(VcpuId(0), at, store(8, 0x55), &mut Effects::new()),
            DispatchResult::WriteDone
        );
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(0x900_0002),
                store(4, 0x55),
                &mut Effects::new()
            ),
            DispatchResult::WriteDone
        );
        assert!(
            log.lock().is_empty(),
            "a malformed write reaches no register"
        );
    }

    #[test]
    fn refused_accesses_and_impossible_sizes_are_device_errors() {
        let (bus, _) = bus_with_regs();
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(0x900_0010),
                load(4, false, false),
                &mut Effects::new()
            ),
            DispatchResult::DeviceError
        );
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(0x900_0010),
                store(4, 0),
                &mut Effects::new()
            ),
            DispatchResult::DeviceError
        );
        for size in [0, 3, 5, 16, 255] {
            assert_eq!(
                bus.dispatch(
                    VcpuId(0),
                    Ipa::new(0x900_0000),
                    load(size, false, true),
                    &mut Effects::new()
                ),
                DispatchResult::DeviceError
            );
        }
    }

    fn read_with(pattern: u64, size: u8, sign_extend: bool, sixty_four: bool) -> u64 {
        let mut bus = MmioBus::new();
        bus.register(range(0x1000, 0x1000), Box::new(Raw(pattern)))
            .unwrap();
        match bus.dispatch(
            VcpuId(0),
            Ipa::new(0x1000),
            load(size, sign_extend, sixty_four),
            &mut Effects::new(),
        ) {
            DispatchResult::Read(v) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn loads_extend_as_the_instruction_asks() {
        // Device bytes beyond the access size never leak into the register.
        let junk = 0xDEAD_BEEF_0000_0000;
        // LDRB / LDRH / LDR W: zero extension.
        assert_eq!(read_with(junk | 0x80, 1, false, false), 0x80);
        assert_eq!(read_with(junk | 0x8000, 2, false, false), 0x8000);
        assert_eq!(read_with(junk | 0x8000_0000, 4, false, false), 0x8000_0000);
        // LDRSB to W and to X.
        assert_eq!(read_with(junk | 0x80, 1, true, false), 0xFFFF_FF80);
        assert_eq!(read_with(junk | 0x80, 1, true, true), 0xFFFF_FFFF_FFFF_FF80);
        assert_eq!(read_with(junk | 0x7F, 1, true, true), 0x7F);
        // LDRSH to W and to X.
        assert_eq!(read_with(junk | 0x8001, 2, true, false), 0xFFFF_8001);
        assert_eq!(
            read_with(junk | 0x8001, 2, true, true),
            0xFFFF_FFFF_FFFF_8001
        );
        assert_eq!(read_with(junk | 0x7FFF, 2, true, true), 0x7FFF);
        // LDRSW (always to X).
        assert_eq!(
            read_with(junk | 0x8000_0000, 4, true, true),
            0xFFFF_FFFF_8000_0000
        );
        assert_eq!(read_with(junk | 0x7FFF_FFFF, 4, true, true), 0x7FFF_FFFF);
        // LDR X.
        assert_eq!(
            read_with(0x8000_0000_0000_0001, 8, false, true),
            0x8000_0000_0000_0001
        );
        assert_eq!(
            read_with(0x8000_0000_0000_0001, 8, true, true),
            0x8000_0000_0000_0001
        );
    }

    #[test]
    fn random_accesses_never_panic() {
        let (mut bus, _) = bus_with_regs();
        bus.register(range(0, 0x10), Box::new(Raw(u64::MAX)))
            .unwrap();
        let mut s = 0x0123_4567_89AB_CDEFu64;
        for _ in 0..100_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let ipa = if s & 1 == 0 {
                0x900_0000 + (s >> 40) % 0x1010
            } else {
                s.rotate_left(7)
            };
            let access = BusAccess {
                size: [1, 2, 4, 8, 3, 0][(s >> 8) as usize % 6],
                write: s & 2 != 0,
                value: s,
                sign_extend: s & 4 != 0,
                sixty_four: s & 8 != 0,
            };
            if let DispatchResult::Read(v) =
                bus.dispatch(VcpuId(0), Ipa::new(ipa), access, &mut Effects::new())
            {
                if !access.sixty_four {
                    assert_eq!(v >> 32, 0, "a W register never holds more than 32 bits");
                }
            }
        }
    }
}
