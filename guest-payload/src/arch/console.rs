//! The console: a PL011 driven by raw register writes (PrimeCell UART
//! (PL011) Technical Reference Manual: UARTDR at 0x00, UARTFR at 0x18).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const UARTDR: u64 = 0x00;
const UARTFR: u64 = 0x18;
const UARTFR_TXFF: u32 = 1 << 5;
/// How long to wait for room in the FIFO before writing anyway, so a stuck
/// or absent UART slows output down instead of hanging the guest.
const TXFF_SPINS: u32 = 100_000;

/// The UART base address; 0 until `init`, and output is dropped.
static UART_BASE: AtomicU64 = AtomicU64::new(0);

/// Sends console output to the PL011 at `base` (identity-mapped as Device
/// memory, or the MMU off).
pub fn init(base: u64) {
    UART_BASE.store(base, Ordering::SeqCst);
}

fn put_byte(base: u64, byte: u8) {
    for _ in 0..TXFF_SPINS {
        // SAFETY: `base` is the PL011 named by the device tree, mapped as
        // Device memory (or accessed with the MMU off); reading UARTFR has
        // no side effects.
        let flags = unsafe { core::ptr::read_volatile((base + UARTFR) as *const u32) };
        if flags & UARTFR_TXFF == 0 {
            break;
        }
        core::hint::spin_loop();
    }
    // SAFETY: as above; a write to UARTDR queues one character.
    unsafe { core::ptr::write_volatile((base + UARTDR) as *mut u32, u32::from(byte)) };
}

/// A handle for `core::fmt` output to the console.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let base = UART_BASE.load(Ordering::Relaxed);
        if base != 0 {
            s.bytes().for_each(|b| put_byte(base, b));
        }
        Ok(())
    }
}

/// Whether several CPUs may print: then each `println!` holds the line lock,
/// so lines from different CPUs do not interleave. Off until the first
/// secondary CPU starts: the lock's exclusives need the MMU on (Normal
/// memory), and the boot CPU prints before that.
static SHARED: AtomicBool = AtomicBool::new(false);

/// The slot + 1 of the CPU printing a line, 0 when none is.
static LINE_OWNER: AtomicU64 = AtomicU64::new(0);

/// How long to wait for another CPU's line before printing anyway, so a CPU
/// that stopped mid-line garbles output instead of hanging everyone.
const LOCK_SPINS: u32 = 50_000_000;

/// Makes console output safe for several CPUs (see [`SHARED`]).
pub fn share() {
    SHARED.store(true, Ordering::SeqCst);
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    if !SHARED.load(Ordering::Relaxed) {
        let _ = Console.write_fmt(args);
        return;
    }
    let me = super::cpu_index() as u64 + 1;
    // A CPU that takes an exception while printing prints from the handler:
    // it already owns the line.
    let nested = LINE_OWNER.load(Ordering::Relaxed) == me;
    let mut owned = nested;
    for _ in 0..if nested { 0 } else { LOCK_SPINS } {
        if LINE_OWNER
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            owned = true;
            break;
        }
        core::hint::spin_loop();
    }
    let _ = Console.write_fmt(args);
    if owned && !nested {
        LINE_OWNER.store(0, Ordering::Release);
    }
}

/// Prints to the guest console, with a newline.
#[macro_export]
macro_rules! println {
    () => {
        $crate::arch::console::_print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::arch::console::_print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
