//! Devices at guest-chosen ranges, then a sequence of accesses: no panic, an
//! access reaches only the device whose range holds all of it, and the
//! emulated PL011 keeps its flag register fixed.

use std::sync::{Arc, Mutex};

use hypervisor::devices::mmio::{
    truncate, BusAccess, DispatchResult, Effects, MmioBus, MmioDevice, MmioError, MmioResult,
    VcpuId,
};
use hypervisor::devices::vpl011::VPl011;
use hypervisor::mm::addr::{Ipa, IpaRange};
use libfuzzer_sys::arbitrary::{Result, Unstructured};

const UART: u64 = 0x0900_0000;

/// Every access a device saw: (device, offset, size, written value).
type Log = Arc<Mutex<Vec<(usize, u64, u8, Option<u64>)>>>;

struct Recorder {
    id: usize,
    refuse: bool,
    log: Log,
}

impl MmioDevice for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn read(&mut self, _vcpu: VcpuId, offset: u64, size: u8, _fx: &mut Effects) -> MmioResult<u64> {
        self.log.lock().unwrap().push((self.id, offset, size, None));
        if self.refuse {
            Err(MmioError::Refused)
        } else {
            Ok(offset.wrapping_mul(0x0101_0101_0101_0101))
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
        self.log
            .lock()
            .unwrap()
            .push((self.id, offset, size, Some(value)));
        if self.refuse {
            Err(MmioError::BadAccess)
        } else {
            Ok(())
        }
    }
}

fn address(u: &mut Unstructured) -> Result<u64> {
    Ok(match u.int_in_range(0..=3)? {
        0 => UART + u.int_in_range(0..=0x1010)? - 8,
        1 => u.int_in_range(0..=0x10_0000)?,
        2 => u64::MAX - u.int_in_range(0..=0x100)?,
        _ => u.arbitrary()?,
    })
}

fn run(u: &mut Unstructured) -> Result<()> {
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let mut bus = MmioBus::new();
    let mut ranges: Vec<(usize, IpaRange)> = Vec::new();
    if let Some(uart) = IpaRange::new(Ipa::new(UART), 0x1000) {
        bus.register(uart, Box::new(VPl011::new(|_: u8| {})))
            .expect("an empty bus takes the UART");
    }
    for id in 0..u.int_in_range(0..=20)? {
        let start = address(u)?;
        let size = u.int_in_range(0..=0x2000)?;
        let Some(range) = IpaRange::new(Ipa::new(start), size) else {
            continue;
        };
        let device = Recorder {
            id,
            refuse: u.arbitrary()?,
            log: log.clone(),
        };
        if bus.register(range, Box::new(device)).is_ok() {
            assert!(!range.is_empty());
            assert!(range.start().raw() >= UART + 0x1000 || range.end().raw() <= UART);
            assert!(ranges.iter().all(|(_, r)| !r.overlaps(&range)));
            ranges.push((id, range));
        }
    }
    while !u.is_empty() {
        let ipa = address(u)?;
        let access = BusAccess {
            size: if u.ratio(7, 8)? {
                *u.choose(&[1u8, 2, 4, 8])?
            } else {
                u.arbitrary()?
            },
            write: u.arbitrary()?,
            value: u.arbitrary()?,
            sign_extend: u.arbitrary()?,
            sixty_four: u.arbitrary()?,
        };
        let seen_before = log.lock().unwrap().len();
        let result = bus.dispatch(VcpuId(0), Ipa::new(ipa), access, &mut Effects::new());
        let seen: Vec<_> = log.lock().unwrap()[seen_before..].to_vec();
        let owner = ranges.iter().find(|(_, r)| r.contains(Ipa::new(ipa)));
        let fits = matches!(access.size, 1 | 2 | 4 | 8)
            && owner
                .is_some_and(|(_, r)| ipa - r.start().raw() + u64::from(access.size) <= r.size());
        if !fits {
            assert!(seen.is_empty(), "{seen:?} for {ipa:#x} {access:?}");
        } else if let Some(&(id, range)) = owner {
            assert_eq!(seen.len(), 1);
            let (sid, offset, size, value) = seen[0];
            assert_eq!(
                (sid, offset, size),
                (id, ipa - range.start().raw(), access.size)
            );
            if access.write {
                assert_eq!(value, Some(truncate(access.value, access.size)));
            }
        }
        let in_uart = (UART..UART + 0x1000).contains(&ipa);
        if owner.is_none() && !in_uart && matches!(access.size, 1 | 2 | 4 | 8) {
            assert_eq!(result, DispatchResult::Unmapped);
        }
        if in_uart && !access.write && access.size == 4 && ipa == UART + 0x18 {
            assert_eq!(result, DispatchResult::Read(0x90), "FR changed");
        }
    }
    Ok(())
}

/// What the fuzz target runs for one input, and the corpus replay test too.
pub fn fuzz(data: &[u8]) {
    let _ = run(&mut Unstructured::new(data));
}
