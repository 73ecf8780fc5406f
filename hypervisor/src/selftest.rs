//! Deliberate faults (`selftest=` on the command line) that check the crash
//! reports work: each one must end in a report and a failure status.

use crate::cmdline::SelfTest;

/// Runs one self-test. None of them returns.
pub fn run(test: SelfTest) -> ! {
    log::warn!("selftest: {test:?}: a deliberate fault follows");
    match test {
        SelfTest::Panic => selftest_panic(),
        SelfTest::Undef => selftest_undef(),
        SelfTest::DataAbort => selftest_data_abort(),
        SelfTest::StackOverflow => {
            let depth = selftest_recurse(core::hint::black_box(0));
            panic!("recursion of depth {depth} returned without overflowing the stack");
        }
    }
}

#[inline(never)]
fn selftest_panic() -> ! {
    panic!("selftest: deliberate panic");
}

#[inline(never)]
fn selftest_undef() -> ! {
    // SAFETY: UDF is permanently undefined; the EL2 vectors report it and
    // stop the machine.
    unsafe { core::arch::asm!("udf #0x5e1f", options(nomem, nostack)) };
    panic!("execution continued past UDF");
}

#[inline(never)]
fn selftest_data_abort() -> ! {
    // An address below the lowest RAM and device ranges of any supported
    // board and outside the EL2 map.
    let addr = 0x10usize as *const u64;
    // SAFETY: the load faults (the address is unmapped); the EL2 vectors
    // report it and stop the machine.
    let v = unsafe { core::ptr::read_volatile(addr) };
    panic!("load from an unmapped address returned {v:#x}");
}

/// Recurses 1 KiB a level until `limit` (far more than any stack holds).
#[inline(never)]
fn selftest_recurse(depth: u64) -> u64 {
    let mut buf = [0u8; 1024];
    core::hint::black_box(&mut buf);
    buf[0] = depth as u8;
    if depth >= core::hint::black_box(1 << 40) {
        return depth;
    }
    selftest_recurse(depth + 1) + u64::from(core::hint::black_box(buf)[0])
}
