//! The MMIO bus over arbitrary devices and access sequences: no panic, and a
//! device sees only accesses that fall inside its own range.

use crate::devices::mmio::{
    extend, truncate, BusAccess, DispatchResult, MmioBus, MmioDevice, MmioError, MmioResult,
};
use crate::devices::mmio::{Effects, VcpuId};
use crate::mm::addr::{Ipa, IpaRange};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use proptest::prelude::*;
use spin::Mutex;

/// One access as a device saw it: which device, offset, size, written value.
type Seen = (usize, u64, u8, Option<u64>);

/// Records every access and answers from a per-device rule.
struct Recorder {
    id: usize,
    answer: u64,
    refuse: bool,
    log: Arc<Mutex<Vec<Seen>>>,
}

impl MmioDevice for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn read(&mut self, _vcpu: VcpuId, offset: u64, size: u8, _fx: &mut Effects) -> MmioResult<u64> {
        self.log.lock().push((self.id, offset, size, None));
        match (self.refuse, offset % 3) {
            (true, _) => Err(MmioError::Refused),
            (false, 0) => Err(MmioError::BadAccess),
            _ => Ok(self.answer),
        }
    }
    fn write(
        &mut self,
        _vcpu: VcpuId,
        offset: u64,
        size: u8,
        value: u64,
        _fx: &mut Effects,
    ) -> MmioResult<()> {
        self.log.lock().push((self.id, offset, size, Some(value)));
        if self.refuse {
            Err(MmioError::Refused)
        } else {
            Ok(())
        }
    }
}

fn address() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..0x10_0000,
        (0u64..64).prop_map(|b| 1u64 << b),
        any::<u64>(),
        (0u64..0x100).prop_map(|o| u64::MAX - o),
    ]
}

prop_compose! {
    fn access()(
        ipa in address(),
        size in prop_oneof![Just(1u8), Just(2), Just(4), Just(8), any::<u8>()],
        write: bool,
        value: u64,
        sign_extend: bool,
        sixty_four: bool,
    ) -> (u64, BusAccess) {
        (ipa, BusAccess { size, write, value, sign_extend, sixty_four })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn accesses_reach_only_the_device_that_owns_the_address(
        devices in proptest::collection::vec((address(), address(), any::<u64>(), any::<bool>()), 0..20),
        accesses in proptest::collection::vec(access(), 1..64),
    ) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut bus = MmioBus::new();
        let mut ranges: Vec<(usize, IpaRange, u64, bool)> = Vec::new();
        for (id, &(start, size, answer, refuse)) in devices.iter().enumerate() {
            let Some(range) = IpaRange::new(Ipa::new(start), size % 0x1_0000) else {
                continue;
            };
            let device = Recorder { id, answer, refuse, log: log.clone() };
            let overlaps = ranges.iter().any(|(_, r, _, _)| r.overlaps(&range));
            match bus.register(range, Box::new(device)) {
                Ok(()) => {
                    prop_assert!(!range.is_empty() && !overlaps);
                    ranges.push((id, range, answer, refuse));
                }
                Err(_) => prop_assert!(range.is_empty() || overlaps || ranges.len() == 16),
            }
        }
        for (ipa, access) in accesses {
            let before = log.lock().len();
            let result = bus.dispatch(VcpuId(0), Ipa::new(ipa), access, &mut Effects::new());
            let seen: Vec<Seen> = log.lock().get(before..).map(<[Seen]>::to_vec).unwrap_or_default();
            let owner = ranges.iter().find(|(_, r, _, _)| r.contains(Ipa::new(ipa)));
            prop_assert_eq!(bus.device_at(Ipa::new(ipa)).map(|(r, _)| r), owner.map(|o| o.1));
            let Some(&(id, range, answer, refuse)) = owner else {
                // Unmapped: nobody hears of it.
                prop_assert!(seen.is_empty());
                let expected = if matches!(access.size, 1 | 2 | 4 | 8) {
                    DispatchResult::Unmapped
                } else {
                    DispatchResult::DeviceError
                };
                prop_assert_eq!(result, expected);
                continue;
            };
            let offset = ipa - range.start().raw();
            let fits = matches!(access.size, 1 | 2 | 4 | 8)
                && offset + u64::from(access.size) <= range.size();
            if !fits {
                prop_assert!(seen.is_empty(), "{:?}", seen);
                prop_assert!(matches!(result, DispatchResult::Unmapped | DispatchResult::DeviceError));
                continue;
            }
            prop_assert_eq!(seen.len(), 1);
            let (sid, soffset, ssize, svalue) = seen[0];
            prop_assert_eq!((sid, soffset, ssize), (id, offset, access.size));
            if access.write {
                prop_assert_eq!(svalue, Some(truncate(access.value, access.size)));
                let expected = if refuse { DispatchResult::DeviceError } else { DispatchResult::WriteDone };
                prop_assert_eq!(result, expected);
            } else {
                prop_assert_eq!(svalue, None);
                let expected = match (refuse, offset % 3) {
                    (true, _) => DispatchResult::DeviceError,
                    (false, 0) => DispatchResult::Read(extend(u64::MAX, access.size, access.sign_extend, access.sixty_four)),
                    _ => DispatchResult::Read(extend(answer, access.size, access.sign_extend, access.sixty_four)),
                };
                prop_assert_eq!(result, expected);
            }
        }
    }
}
