//! Calls out of the guest: SMCCC (PSCI, the hypervisor's calls) through the
//! device tree's conduit, semihosting, and the verdict built on them.
//!
//! Every call is made under a fault probe: where no one answers (an HVC on
//! a machine without EL2, semihosting off), the guest sees an UNDEFINED
//! instruction, which the probe turns into an error.
//!
//! Verdict convention: success is PSCI SYSTEM_OFF. Failure is SYSTEM_RESET
//! under a hypervisor (which reports it); without one, semihosting SYS_EXIT
//! with code 1 so QEMU exits with status 1, then SYSTEM_RESET as a fallback.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::probe::probe;
use crate::esr::Fault;
use crate::platform::Conduit;
use crate::smccc::{func, ret, status, Hypervisor, Stage2Info};

static CONDUIT: AtomicU8 = AtomicU8::new(0);
static HYPERVISOR_PRESENT: AtomicBool = AtomicBool::new(false);

/// Why an SMCCC call gave no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The device tree names no conduit.
    NoConduit,
    /// The call instruction raised an exception in the guest.
    Trapped(Fault),
}

/// Records the PSCI conduit from the device tree.
pub fn set_conduit(conduit: Option<Conduit>) {
    let raw = match conduit {
        None => 0,
        Some(Conduit::Hvc) => 1,
        Some(Conduit::Smc) => 2,
    };
    CONDUIT.store(raw, Ordering::SeqCst);
}

/// The recorded conduit.
pub fn conduit() -> Option<Conduit> {
    match CONDUIT.load(Ordering::SeqCst) {
        1 => Some(Conduit::Hvc),
        2 => Some(Conduit::Smc),
        _ => None,
    }
}

/// Makes an SMCCC call with `x0 = function` and x1..x3, returning x0..x3.
pub fn smccc(function: u32, args: [u64; 3]) -> Result<[u64; 4], CallError> {
    let conduit = conduit().ok_or(CallError::NoConduit)?;
    let mut regs = [u64::from(function), args[0], args[1], args[2]];
    probe(|| match conduit {
        // SAFETY: an SMCCC call; SMCCC 1.1 lets the callee clobber x0-x17,
        // which are declared. If it traps, the probe skips the instruction.
        Conduit::Hvc => unsafe {
            asm!("hvc #0", inout("x0") regs[0], inout("x1") regs[1], inout("x2") regs[2],
                inout("x3") regs[3], out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
                out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
                options(nostack))
        },
        // SAFETY: as above, through the secure monitor conduit.
        Conduit::Smc => unsafe {
            asm!("smc #0", inout("x0") regs[0], inout("x1") regs[1], inout("x2") regs[2],
                inout("x3") regs[3], out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
                out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
                options(nostack))
        },
    })
    .map_err(CallError::Trapped)?;
    Ok(regs)
}

/// `hvc #1` with `x0 = function`: SMCCC reserves non-zero immediates, so a
/// conforming hypervisor answers NOT_SUPPORTED whatever x0 says.
pub fn hvc_immediate_1(function: u32) -> Result<u64, CallError> {
    let mut x0 = u64::from(function);
    probe(|| {
        // SAFETY: as for `smccc`.
        unsafe {
            asm!("hvc #1", inout("x0") x0, out("x1") _, out("x2") _, out("x3") _, out("x4") _,
                out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _, out("x10") _,
                out("x11") _, out("x12") _, out("x13") _, out("x14") _, out("x15") _,
                out("x16") _, out("x17") _, options(nostack))
        }
    })
    .map_err(CallError::Trapped)?;
    Ok(x0)
}

/// A PSCI call: the status in w0, sign-extended.
pub fn psci(function: u32, a1: u64, a2: u64, a3: u64) -> Result<i64, CallError> {
    smccc(function, [a1, a2, a3]).map(|r| status(r[0]))
}

/// Asks who is below: the vendor hypervisor service UID. Remembers whether
/// a hypervisor answered, for the verdict.
pub fn detect_hypervisor() -> Hypervisor {
    let answer = smccc(func::HYP_CALL_UID, [0; 3]).ok();
    let hv = Hypervisor::from_uid_answer(answer);
    HYPERVISOR_PRESENT.store(hv.is_present(), Ordering::SeqCst);
    hv
}

/// Whether `detect_hypervisor` found one.
pub fn hypervisor_present() -> bool {
    HYPERVISOR_PRESENT.load(Ordering::SeqCst)
}

fn hv_status(x0: u64) -> Result<(), i64> {
    match status(x0) {
        ret::SUCCESS => Ok(()),
        error => Err(error),
    }
}

/// The hypervisor's view of `va`: PAR_EL1 after `AT S12E1R` (`write` false)
/// or `AT S12E1W`, i.e. the combined stage-1 and stage-2 attributes. `Err`
/// holds the status (NOT_SUPPORTED also when nobody answered).
pub fn effective_attrs(va: u64, write: bool) -> Result<u64, i64> {
    let regs = smccc(func::HV_EFFECTIVE_ATTRS, [va, u64::from(write), 0])
        .map_err(|_| ret::NOT_SUPPORTED)?;
    hv_status(regs[0]).map(|()| regs[1])
}

/// What stage 2 holds for `ipa`.
pub fn stage2_info(ipa: u64) -> Result<Stage2Info, i64> {
    let regs = smccc(func::HV_STAGE2_INFO, [ipa, 0, 0]).map_err(|_| ret::NOT_SUPPORTED)?;
    hv_status(regs[0]).map(|()| Stage2Info {
        memattr: regs[1],
        kind: regs[2],
        flags: regs[3],
    })
}

const SYS_EXIT: u64 = 0x18;
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

/// Semihosting SYS_EXIT with `code` (AArch64 form: a parameter block with
/// the reason and the code). Returns only if semihosting is off.
pub fn semihosting_exit(code: u64) {
    let block = [ADP_STOPPED_APPLICATION_EXIT, code];
    let _ = probe(|| {
        // SAFETY: the semihosting trap reads the two-word block, alive for
        // the whole call; if semihosting is off the HLT is UNDEFINED and
        // the probe skips it.
        unsafe {
            asm!("hlt #0xf000", inout("x0") SYS_EXIT => _, in("x1") block.as_ptr(),
                options(nostack, readonly))
        };
    });
}

/// Parks the CPU for good.
pub fn park() -> ! {
    loop {
        // SAFETY: WFE only waits for an event.
        unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
    }
}

/// Ends the run with success: PSCI SYSTEM_OFF.
pub fn pass() -> ! {
    let _ = psci(func::SYSTEM_OFF, 0, 0, 0);
    crate::println!("GUEST SYSTEM_OFF returned; parking");
    park()
}

/// Ends the run with failure (see the module comment).
pub fn fail() -> ! {
    if !hypervisor_present() {
        semihosting_exit(1);
    }
    let _ = psci(func::SYSTEM_RESET, 0, 0, 0);
    crate::println!("GUEST SYSTEM_RESET returned; parking");
    park()
}
