//! The MMIO bus: emulated devices behind stage-2 data aborts.
//!
//! The vcpu loop decodes a data abort with a valid syndrome into a
//! [`BusAccess`] and calls [`MmioBus::dispatch`] with the fault IPA. The bus
//! finds the device, hands it an offset and a size, and turns the answer into
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

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use alloc::boxed::Box;

use crate::mm::addr::{Ipa, IpaRange};

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
/// bytes beyond `size` are ignored.
pub trait MmioDevice {
    /// Name, for logs.
    fn name(&self) -> &'static str;
    /// A load of `size` bytes at `offset`.
    fn read(&mut self, offset: u64, size: u8) -> MmioResult<u64>;
    /// A store of the low `size` bytes of `value` at `offset`.
    fn write(&mut self, offset: u64, size: u8, value: u64) -> MmioResult<()>;
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
    device: Box<dyn MmioDevice + Send>,
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
        *slot = Some(Region { range, device });
        Ok(())
    }

    /// The range and name of the device at `ipa`, if any.
    pub fn device_at(&self, ipa: Ipa) -> Option<(IpaRange, &'static str)> {
        self.regions
            .iter()
            .flatten()
            .find(|r| r.range.contains(ipa))
            .map(|r| (r.range, r.device.name()))
    }

    /// Performs one trapped access at `ipa`. Never panics. Never inlined:
    /// the debugger's breakpoint for every emulated access (`hv-break-mmio`).
    #[inline(never)]
    pub fn dispatch(&mut self, ipa: Ipa, access: BusAccess) -> DispatchResult {
        if !matches!(access.size, 1 | 2 | 4 | 8) {
            return DispatchResult::DeviceError;
        }
        let Some(region) = self
            .regions
            .iter_mut()
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
        if access.write {
            match region
                .device
                .write(offset, size, truncate(access.value, size))
            {
                Ok(()) | Err(MmioError::BadAccess) => DispatchResult::WriteDone,
                Err(MmioError::Refused) => DispatchResult::DeviceError,
            }
        } else {
            match region.device.read(offset, size) {
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

        fn read(&mut self, offset: u64, size: u8) -> MmioResult<u64> {
            if offset == 0x10 {
                return Err(MmioError::Refused);
            }
            if size != 4 || !is_aligned(offset, size) {
                return Err(MmioError::BadAccess);
            }
            Ok(self.pattern)
        }

        fn write(&mut self, offset: u64, size: u8, value: u64) -> MmioResult<()> {
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
        fn read(&mut self, _: u64, _: u8) -> MmioResult<u64> {
            Ok(self.0)
        }
        fn write(&mut self, _: u64, _: u8, _: u64) -> MmioResult<()> {
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
            top.dispatch(Ipa::new(u64::MAX - 4), load(4, false, true)),
            DispatchResult::Read(7)
        );
        assert_eq!(
            top.dispatch(Ipa::new(u64::MAX - 1), load(4, false, true)),
            DispatchResult::Unmapped
        );
        assert_eq!(
            top.dispatch(Ipa::new(u64::MAX), load(8, false, true)),
            DispatchResult::Unmapped
        );
    }

    #[test]
    fn dispatch_finds_the_device_and_its_offset() {
        let (mut bus, log) = bus_with_regs();
        assert_eq!(
            bus.dispatch(Ipa::new(0x900_0004), load(4, false, false)),
            DispatchResult::Read(0x1234_5678)
        );
        assert_eq!(
            bus.dispatch(Ipa::new(0x900_0008), store(4, 0xFFFF_FFFF_AABB_CCDD)),
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
        let (mut bus, log) = bus_with_regs();
        assert_eq!(
            bus.dispatch(Ipa::new(0x8FF_FFFC), load(4, false, false)),
            DispatchResult::Unmapped
        );
        assert_eq!(
            bus.dispatch(Ipa::new(0x900_1000), store(4, 0)),
            DispatchResult::Unmapped
        );
        assert_eq!(
            bus.dispatch(Ipa::new(0x900_0FFE), load(4, false, false)),
            DispatchResult::Unmapped
        );
        assert_eq!(
            bus.dispatch(Ipa::new(0x900_0FFC), store(8, 0)),
            DispatchResult::Unmapped
        );
        assert_eq!(
            bus.dispatch(Ipa::new(u64::MAX), load(8, false, true)),
            DispatchResult::Unmapped
        );
        assert!(log.lock().is_empty());
    }

    #[test]
    fn bad_width_or_alignment_reads_all_ones_and_drops_writes() {
        let (mut bus, log) = bus_with_regs();
        let at = Ipa::new(0x900_0004);
        assert_eq!(
            bus.dispatch(at, load(1, false, false)),
            DispatchResult::Read(0xFF)
        );
        assert_eq!(
            bus.dispatch(at, load(2, false, true)),
            DispatchResult::Read(0xFFFF)
        );
        assert_eq!(
            bus.dispatch(at, load(8, false, true)),
            DispatchResult::Read(u64::MAX)
        );
        assert_eq!(
            bus.dispatch(Ipa::new(0x900_0006), load(4, false, true)),
            DispatchResult::Read(0xFFFF_FFFF)
        );
        // All ones through LDRSB/LDRSH: the register is all ones at its width.
        assert_eq!(
            bus.dispatch(at, load(1, true, true)),
            DispatchResult::Read(u64::MAX)
        );
        assert_eq!(
            bus.dispatch(at, load(2, true, false)),
            DispatchResult::Read(0xFFFF_FFFF)
        );
        assert_eq!(bus.dispatch(at, store(1, 0x55)), DispatchResult::WriteDone);
        assert_eq!(bus.dispatch(at, store(8, 0x55)), DispatchResult::WriteDone);
        assert_eq!(
            bus.dispatch(Ipa::new(0x900_0002), store(4, 0x55)),
            DispatchResult::WriteDone
        );
        assert!(
            log.lock().is_empty(),
            "a malformed write reaches no register"
        );
    }

    #[test]
    fn refused_accesses_and_impossible_sizes_are_device_errors() {
        let (mut bus, _) = bus_with_regs();
        assert_eq!(
            bus.dispatch(Ipa::new(0x900_0010), load(4, false, false)),
            DispatchResult::DeviceError
        );
        assert_eq!(
            bus.dispatch(Ipa::new(0x900_0010), store(4, 0)),
            DispatchResult::DeviceError
        );
        for size in [0, 3, 5, 16, 255] {
            assert_eq!(
                bus.dispatch(Ipa::new(0x900_0000), load(size, false, true)),
                DispatchResult::DeviceError
            );
        }
    }

    fn read_with(pattern: u64, size: u8, sign_extend: bool, sixty_four: bool) -> u64 {
        let mut bus = MmioBus::new();
        bus.register(range(0x1000, 0x1000), Box::new(Raw(pattern)))
            .unwrap();
        match bus.dispatch(Ipa::new(0x1000), load(size, sign_extend, sixty_four)) {
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
            if let DispatchResult::Read(v) = bus.dispatch(Ipa::new(ipa), access) {
                if !access.sixty_four {
                    assert_eq!(v >> 32, 0, "a W register never holds more than 32 bits");
                }
            }
        }
    }
}
