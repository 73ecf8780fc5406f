//! The `bench` test on the machine: tight loops around one trapping
//! instruction (an HVC, an MMIO load the hypervisor emulates), each timed with
//! the virtual counter against a null loop that has a NOP in its place.
//!
//! The loops are written out in assembly so the only difference between a
//! measured loop and its null twin is that one instruction: whatever the
//! difference costs per iteration is the trap, the hypervisor's handling and
//! the return.

use core::arch::asm;

use super::{counter, firmware};
use crate::bench::{BenchLine, LoopTiming, ITERATIONS};
use crate::pci::{ecam_offset, Bdf};
use crate::platform::Platform;
use crate::println;
use crate::smccc::Hypervisor;

/// The hypervisor service's call count (SMCCC `Call Count` of owner 6):
/// the cheapest call it answers, so the round trip is nearly all trap.
const HV_CALL_COUNT: u32 = 0x8600_ff00;

/// Expands to a function that runs `n` iterations of `mov x0, fid; <insn>;
/// subs; b.ne` between two counter reads and returns the ticks. x0-x17 are
/// declared clobbered: an SMCCC callee may change them, and an emulated
/// load writes x0.
macro_rules! timed_loop {
    ($(#[$doc:meta])* $name:ident, $insn:literal) => {
        $(#[$doc])*
        fn $name(n: u64, x0: u64, addr: u64) -> u64 {
            let (start, end): (u64, u64);
            // SAFETY: the loop runs `n` (non-zero) times the instruction under
            // test, an HVC (SMCCC: may clobber x0-x17, all declared), an
            // aligned load from the mapped address `addr`, or a NOP. Nothing
            // else is touched.
            unsafe {
                asm!(
                    "isb",
                    "mrs {start}, cntvct_el0",
                    "2:",
                    "mov x0, {x0}",
                    $insn,
                    "subs {n}, {n}, #1",
                    "b.ne 2b",
                    "isb",
                    "mrs {end}, cntvct_el0",
                    start = out(reg) start,
                    end = out(reg) end,
                    n = inout(reg) n => _,
                    x0 = in(reg) x0,
                    addr = in(reg) addr,
                    out("x0") _, out("x1") _, out("x2") _, out("x3") _, out("x4") _,
                    out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
                    out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
                    out("x15") _, out("x16") _, out("x17") _,
                    options(nostack),
                );
            }
            end.wrapping_sub(start)
        }
    };
}

timed_loop!(
    /// The null loop: four instructions per iteration.
    null_loop,
    "nop // {addr}"
);
timed_loop!(
    /// One HVC #0 per iteration.
    hvc_loop,
    "hvc #0 // {addr}"
);
timed_loop!(
    /// One 32-bit load from `addr` per iteration.
    load_loop,
    "ldr w0, [{addr}]"
);
timed_loop!(
    /// The null loop with two more NOPs: six instructions per iteration.
    six_insn_loop,
    "nop; nop; nop // {addr}"
);

/// What the MMIO round trip loads from.
struct MmioTarget {
    addr: u64,
    what: &'static str,
}

/// The vendor ID of bus 0 device 0 in the ECAM window when a function is
/// there (a virtual config-space read), else the UART's flag register.
fn mmio_target(platform: &Platform<'_>) -> Option<MmioTarget> {
    if let Some(pcie) = platform.pcie {
        let addr = pcie.ecam.base + ecam_offset(pcie.bus_start, Bdf::new(pcie.bus_start, 0, 0), 0);
        // SAFETY: an aligned dword in the ECAM window, mapped by `mmu::init`;
        // reading an ID register has no side effect.
        let id = unsafe { core::ptr::read_volatile(addr as *const u32) };
        if id & 0xffff != 0xffff {
            return Some(MmioTarget {
                addr,
                what: "ecam-vendor-id",
            });
        }
    }
    // UARTFR: reading the flag register has no side effect.
    platform.uart.map(|uart| MmioTarget {
        addr: uart.base + 0x18,
        what: "uart-fr",
    })
}

fn timing(n: u64, measured: u64, null: u64) -> LoopTiming {
    LoopTiming {
        iterations: n,
        measured,
        null,
    }
}

/// Runs the benchmarks and prints one `GUEST BENCH` line each. False if a
/// measurement could not be made.
pub fn run(platform: &Platform<'_>, hypervisor: Hypervisor) -> bool {
    let n = ITERATIONS;
    let (_, freq) = counter();
    println!("GUEST BENCH counter cntfrq={freq}");

    // Four instructions against six: the counter ticks per instruction.
    let four = null_loop(n, 0, 0);
    let six = six_insn_loop(n, 0, 0);
    println!(
        "{}",
        BenchLine {
            name: "calibrate",
            detail: format_args!("extra_insns=2"),
            timing: timing(n, six, four),
            units: 2,
        }
    );

    let mut ok = true;
    if hypervisor.is_present() && firmware::conduit() == Some(crate::platform::Conduit::Hvc) {
        let fid = u64::from(HV_CALL_COUNT);
        // Warm up: the first calls fill caches and translate code.
        hvc_loop(16, fid, 0);
        let hvc = hvc_loop(n, fid, 0);
        let null = null_loop(n, fid, 0);
        println!(
            "{}",
            BenchLine {
                name: "hvc",
                detail: format_args!("call=HV_CALL_COUNT fid={fid:#x}"),
                timing: timing(n, hvc, null),
                units: 1,
            }
        );
    } else {
        println!("GUEST BENCH hvc skipped: no hypervisor answers HVC");
    }

    match mmio_target(platform) {
        Some(target) => {
            load_loop(16, 0, target.addr);
            let load = load_loop(n, 0, target.addr);
            let null = null_loop(n, 0, target.addr);
            println!(
                "{}",
                BenchLine {
                    name: "mmio",
                    detail: format_args!(
                        "target={} addr={:#x} hypervisor={}",
                        target.what, target.addr, hypervisor
                    ),
                    timing: timing(n, load, null),
                    units: 1,
                }
            );
        }
        None => {
            println!("GUEST BENCH mmio skipped: neither a PCI function at 00:00.0 nor a UART");
            ok = false;
        }
    }
    ok
}
