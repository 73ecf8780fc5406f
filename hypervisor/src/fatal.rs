//! What the hypervisor prints when it cannot go on: an unexpected exception
//! at EL2 (decoded syndrome, registers, backtrace) or a panic (message,
//! location, backtrace). Both then stop the machine with a failure status.
//!
//! Exit statuses (QEMU passes them on through semihosting):
//! 1 wrong exception level or other boot failure, 2 panic, 3 unexpected
//! exception at EL2, 4 unusable device tree or memory map, 5 the guest
//! reported failure, 6 a built-in check (`check=`) failed.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::arch::aarch64::esr::Esr;
use crate::arch::aarch64::firmware::{self, SEMIHOSTING_HLT, SEMIHOSTING_PROBE};
use crate::arch::aarch64::trap::{fixup_for, TrapFrame, VectorKind, VectorSource};
use crate::backtrace;
use crate::console::emergency_print;
use crate::layout;

/// Exit status: boot failure (including the wrong exception level).
pub const EXIT_BOOT: u32 = 1;
/// Exit status: panic.
pub const EXIT_PANIC: u32 = 2;
/// Exit status: unexpected exception at EL2.
pub const EXIT_EXCEPTION: u32 = 3;
/// Exit status: the device tree or memory map cannot be used.
pub const EXIT_PLATFORM: u32 = 4;
/// Exit status: the guest reported failure.
pub const EXIT_GUEST_FAILED: u32 = 5;
/// Exit status: a built-in check (`check=`) found a failure.
pub const EXIT_CHECK_FAILED: u32 = 6;

static LOAD_ADDRESS: AtomicU64 = AtomicU64::new(0);
static EARLY_UART: AtomicU64 = AtomicU64::new(0);
static CONSOLE_READY: AtomicBool = AtomicBool::new(false);

/// Records the console UART's base before the console is set up, so a panic
/// or exception during early boot can still be reported.
pub fn set_early_uart(base: u64) {
    EARLY_UART.store(base, Ordering::Relaxed);
}

/// Says the global console is set up: reports go through it from now on.
pub fn set_console_ready() {
    CONSOLE_READY.store(true, Ordering::Relaxed);
}

/// Prints a report line by whatever path exists: the console, or before it
/// is set up, the UART directly (no locks: the MMU may be off), or
/// semihosting.
fn report_print(args: core::fmt::Arguments<'_>) {
    use core::fmt::Write;
    if CONSOLE_READY.load(Ordering::Relaxed) {
        // SAFETY: only called on the way to stopping the machine; breaking
        // a held console lock cannot hurt a program that will not resume.
        unsafe { emergency_print(args) };
        return;
    }
    let base = EARLY_UART.load(Ordering::Relaxed);
    if base != 0 {
        // SAFETY: the DT named a PL011 at `base`; the machine is stopping,
        // so no other user of it will run again.
        let mut uart = unsafe { crate::drivers::pl011::Pl011::new(base as *mut u8) };
        let _ = uart.write_fmt(args);
        return;
    }
    let mut line = alloc_free_line::Line::default();
    let _ = line.write_fmt(args);
    firmware::semihosting_write0(line.as_nul_terminated());
}

mod alloc_free_line {
    /// A bounded, NUL-terminated line for semihosting output.
    pub struct Line {
        buf: [u8; 256],
        len: usize,
    }

    impl Default for Line {
        fn default() -> Self {
            Self {
                buf: [0; 256],
                len: 0,
            }
        }
    }

    impl Line {
        pub fn as_nul_terminated(&mut self) -> &[u8] {
            let end = self.len.min(self.buf.len() - 1);
            self.buf[end] = 0;
            &self.buf[..=end]
        }
    }

    impl core::fmt::Write for Line {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for &b in s.as_bytes() {
                if self.len + 1 < self.buf.len() {
                    self.buf[self.len] = b;
                    self.len += 1;
                }
            }
            Ok(())
        }
    }
}

/// Records where the image runs from, so backtraces print image offsets.
pub fn set_load_address(addr: u64) {
    LOAD_ADDRESS.store(addr, Ordering::Relaxed);
}

/// Where the image runs from.
pub fn load_address() -> u64 {
    LOAD_ADDRESS.load(Ordering::Relaxed)
}

macro_rules! eprint {
    ($($arg:tt)*) => {
        report_print(format_args!($($arg)*))
    };
}

/// Prints the frame-record chain from `fp`, bounded to the stack holding it.
pub fn print_backtrace(fp: u64) {
    let l = layout::image_layout();
    let base = load_address();
    let at = crate::mm::addr::PhysAddr::new(fp);
    let Some(stack) = (0..=layout::SECONDARY_CPUS)
        .filter_map(|cpu| l.cpu_stacks(cpu))
        .flat_map(|s| [s.main, s.exception])
        .find(|s| s.contains(at))
    else {
        eprint!("  (no backtrace: frame pointer {fp:#x} is not on a hypervisor stack)\n");
        return;
    };
    let mut n = 0;
    backtrace::walk(
        fp,
        stack.start().raw(),
        stack.end().raw(),
        // SAFETY: `walk` only reads 8-byte aligned addresses inside the live
        // stack range, which is mapped.
        |a| unsafe { core::ptr::read_volatile(a as *const u64) },
        |frame| {
            // The return address follows the call: name the call itself.
            let call = frame.pc.wrapping_sub(4);
            eprint!(
                "  bt #{n} pc={call:#x} off={:#x}\n",
                call.wrapping_sub(base)
            );
            n += 1;
        },
    );
}

/// The EL2 exception handler the vectors call for hypervisor-side exceptions.
/// Returns only after stepping over a semihosting call that trapped.
#[no_mangle]
extern "C" fn el2_trap(frame: &mut TrapFrame, vector: u64) {
    let kind = VectorKind::from_index(vector);
    let esr = Esr::new(frame.esr);
    if kind.source == VectorSource::CurrentSp0
        && SEMIHOSTING_PROBE.load(Ordering::SeqCst)
        && esr.ec_raw() == 0
        // SAFETY: ELR points at the instruction that trapped, in mapped text.
        && unsafe { core::ptr::read_volatile(frame.elr as *const u32) } == SEMIHOSTING_HLT
    {
        frame.elr += 4;
        frame.x[0] = u64::MAX;
        return;
    }
    let fixups = crate::arch::aarch64::guest::at_fixups();
    if let Some(action) = fixup_for(&fixups, kind, frame.elr, frame.esr) {
        // An AT on a guest's behalf met an external abort: the guest gets a
        // failed translation, the hypervisor carries on.
        log::warn!(
            "external abort on an AT for the guest (ESR {:#x}): reported as a failed translation",
            frame.esr
        );
        frame.elr = action.elr;
        if let Some(x0) = frame.x.first_mut() {
            *x0 = action.x0;
        }
        return;
    }
    report_exception(frame, kind);
    firmware::stop(Err(EXIT_EXCEPTION));
}

fn report_exception(frame: &TrapFrame, kind: VectorKind) {
    let base = load_address();
    let esr = Esr::new(frame.esr);
    eprint!("\nFATAL: unexpected {kind}\n");
    eprint!("  ESR_EL2={:#010x}: {esr}\n", frame.esr);
    eprint!(
        "  ELR_EL2={:#x} (image offset {:#x})  FAR_EL2={:#x}  SPSR_EL2={:#x}\n",
        frame.elr,
        frame.elr.wrapping_sub(base),
        frame.far,
        frame.spsr
    );
    let l = layout::image_layout();
    let far = crate::mm::addr::PhysAddr::new(frame.far);
    for cpu in 0..=layout::SECONDARY_CPUS {
        let Some(s) = l.cpu_stacks(cpu) else { break };
        if s.main_guard.contains(far) {
            eprint!("  stack overflow: CPU {cpu}'s main stack ran into its guard page\n");
        } else if s.exception_guard.contains(far) {
            eprint!("  stack overflow: CPU {cpu}'s exception stack ran into its guard page\n");
        }
    }
    for row in 0..8 {
        let mut line = [0u64; 4];
        for (i, slot) in line.iter_mut().enumerate() {
            *slot = frame.x.get(row * 4 + i).copied().unwrap_or(frame.sp_el0);
        }
        let r = row * 4;
        if row == 7 {
            eprint!(
                "  x{:<2}={:#018x} x{:<2}={:#018x} x{:<2}={:#018x} sp ={:#018x}\n",
                r,
                line[0],
                r + 1,
                line[1],
                r + 2,
                line[2],
                frame.sp_el0
            );
        } else {
            eprint!(
                "  x{:<2}={:#018x} x{:<2}={:#018x} x{:<2}={:#018x} x{:<2}={:#018x}\n",
                r,
                line[0],
                r + 1,
                line[1],
                r + 2,
                line[2],
                r + 3,
                line[3]
            );
        }
    }
    if kind.source == VectorSource::CurrentSp0 {
        let pc = frame.elr;
        eprint!("  bt #0 pc={pc:#x} off={:#x}\n", pc.wrapping_sub(base));
        print_backtrace(frame.x[29]);
    }
}

/// Reports a panic and stops the machine.
pub fn report_panic(info: &core::panic::PanicInfo<'_>) -> ! {
    eprint!("\nFATAL: {info}\n");
    let fp: u64;
    // SAFETY: reads the frame pointer register; no side effects.
    unsafe { core::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack)) };
    print_backtrace(fp);
    firmware::stop(Err(EXIT_PANIC))
}
