//! Calls out of the hypervisor: PSCI to firmware, semihosting to a debugger or
//! emulator, and the clean stop built on them.
//!
//! Stop convention (the test scripts rely on it): success is PSCI SYSTEM_OFF,
//! which makes QEMU exit with status 0; failure is semihosting SYS_EXIT with
//! a non-zero code, which QEMU (with `-semihosting`) turns into its exit
//! status. Without semihosting the failure path parks the CPU after printing.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// How PSCI calls reach firmware, from the device tree's `/psci` method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciConduit {
    /// `smc #0`.
    Smc,
    /// `hvc #0`: only usable from below EL2.
    Hvc,
    /// No PSCI.
    None,
}

const CONDUIT_NONE: u8 = 0;
const CONDUIT_SMC: u8 = 1;
const CONDUIT_HVC: u8 = 2;

static CONDUIT: AtomicU8 = AtomicU8::new(CONDUIT_NONE);

/// Set while a semihosting call is in flight, so the EL2 vectors can step over
/// the HLT when semihosting is off instead of treating it as a crash.
pub static SEMIHOSTING_PROBE: AtomicBool = AtomicBool::new(false);

/// `hlt #0xf000`, the A64 semihosting trap.
pub const SEMIHOSTING_HLT: u32 = 0xd45e_0000;

/// PSCI function IDs (Arm DEN 0022, "PSCI function IDs").
pub mod psci_fn {
    /// SYSTEM_OFF.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// SYSTEM_RESET.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
}

const SYS_WRITE0: u64 = 0x04;
const SYS_EXIT: u64 = 0x18;
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

/// Records the PSCI conduit for later calls.
pub fn set_psci_conduit(conduit: PsciConduit) {
    let raw = match conduit {
        PsciConduit::Smc => CONDUIT_SMC,
        PsciConduit::Hvc => CONDUIT_HVC,
        PsciConduit::None => CONDUIT_NONE,
    };
    CONDUIT.store(raw, Ordering::Relaxed);
}

/// Calls PSCI function `id` through the recorded conduit. Returns `None` when
/// there is no usable conduit.
pub fn psci_call(id: u32, a1: u64, a2: u64, a3: u64) -> Option<i64> {
    let mut x0 = u64::from(id);
    match CONDUIT.load(Ordering::Relaxed) {
        CONDUIT_SMC => {
            // SAFETY: an SMCCC call to firmware; SMCCC 1.1 lets the callee
            // clobber x0-x17, which are declared clobbered.
            unsafe {
                asm!("smc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _,
                    inout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                    out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
                    out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
                    options(nostack))
            };
        }
        CONDUIT_HVC if super::sysreg::current_el() < 2 => {
            // SAFETY: as above, through the hypervisor call conduit (only
            // valid below EL2, checked above).
            unsafe {
                asm!("hvc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _,
                    inout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                    out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
                    out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
                    options(nostack))
            };
        }
        _ => return None,
    }
    Some(x0 as i64)
}

/// Makes a semihosting call. Returns `None` if semihosting is not available
/// (the HLT trapped and was stepped over).
fn semihosting_call(op: u64, param: u64) -> Option<u64> {
    SEMIHOSTING_PROBE.store(true, Ordering::SeqCst);
    let mut x0 = op;
    // SAFETY: the semihosting trap reads the parameter block at `param`,
    // which the callers keep alive across the call. If semihosting is off,
    // the vectors step over the HLT and set x0 to u64::MAX; the probe vectors
    // used below EL2 clobber x15-x17, declared here.
    unsafe {
        asm!("hlt #0xf000", inout("x0") x0, in("x1") param, out("x15") _, out("x16") _,
            out("x17") _, options(nostack))
    };
    SEMIHOSTING_PROBE.store(false, Ordering::SeqCst);
    if x0 == u64::MAX || (x0 == op && op == SYS_EXIT) {
        None
    } else {
        Some(x0)
    }
}

/// Writes a NUL-terminated string through semihosting, for when there is no UART.
pub fn semihosting_write0(message: &[u8]) -> bool {
    let Some(last) = message.last() else {
        return false;
    };
    if *last != 0 {
        return false;
    }
    semihosting_call(SYS_WRITE0, message.as_ptr() as u64).is_some()
}

/// Exits the emulator or debugger session with `code`, if semihosting is on.
pub fn semihosting_exit(code: u32) {
    let block: [u64; 2] = [ADP_STOPPED_APPLICATION_EXIT, u64::from(code)];
    let _ = semihosting_call(SYS_EXIT, block.as_ptr() as u64);
}

/// Parks this CPU for good.
pub fn park() -> ! {
    loop {
        // SAFETY: WFE only waits for an event.
        unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
    }
}

/// Stops the machine: `Ok` powers off through PSCI (status 0 under QEMU);
/// `Err(code)` exits through semihosting with that code. Falls back to the
/// other mechanism, then to parking the CPU.
pub fn stop(result: Result<(), u32>) -> ! {
    match result {
        Ok(()) => {
            let _ = psci_call(psci_fn::SYSTEM_OFF, 0, 0, 0);
            semihosting_exit(0);
        }
        Err(code) => semihosting_exit(code.max(1)),
    }
    park()
}
