//! The EL1 exception handler and recoverable fault probes.
//!
//! A probe arms a flag, runs one access (or call, or jump) that may fault,
//! and disarms. A synchronous exception while armed is recorded (ESR, FAR,
//! ELR) and recovered from, instead of failing the run:
//!
//! - skip mode (loads, stores, UNDEFINED instructions, HVC/SMC/HLT that
//!   trap): the handler steps over the faulting instruction (ELR += 4);
//! - jump mode (`exec_probe`): an instruction abort cannot be stepped over,
//!   so the probe saves a recovery point, setjmp-like (callee-saved
//!   registers, SP_EL0 and a resume address), and the handler returns there.
//!
//! Any other exception prints its syndrome and fails the run.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::cpu_index;
use crate::esr::{self, Fault};
use crate::smp::MAX_CPUS;
use crate::trap::{vector_slot, TrapFrame, VectorKind};

const DISARMED: u64 = 0;
const ARMED_SKIP: u64 = 1;
const ARMED_JUMP: u64 = 2;
const ARMED_EL0: u64 = 3;

/// Registers r0-r7 an EL0 task starts with and ends with.
pub const EL0_REGS: usize = 8;

/// Recovery point slots: x19..x29, resume address (x30), SP_EL0.
const JMP_SLOTS: usize = 13;

/// Probe state, shared by the probes, the jump-mode assembly (by offset)
/// and the handler. One per CPU (interrupts stay masked, so a CPU's probe
/// is only ever touched by that CPU).
#[repr(C)]
struct ProbeState {
    armed: AtomicU64,
    faulted: AtomicU64,
    esr: AtomicU64,
    far: AtomicU64,
    elr: AtomicU64,
    jmp: [AtomicU64; JMP_SLOTS],
    el0_regs: [AtomicU64; EL0_REGS],
}

static PROBES: [ProbeState; MAX_CPUS] = [const {
    ProbeState {
        armed: AtomicU64::new(DISARMED),
        faulted: AtomicU64::new(0),
        esr: AtomicU64::new(0),
        far: AtomicU64::new(0),
        elr: AtomicU64::new(0),
        jmp: [const { AtomicU64::new(0) }; JMP_SLOTS],
        el0_regs: [const { AtomicU64::new(0) }; EL0_REGS],
    }
}; MAX_CPUS];

/// The running CPU's probe state.
fn state() -> &'static ProbeState {
    // The entry code only ever stores slots below MAX_CPUS; `min` keeps a
    // corrupted TPIDR_EL1 from indexing out of bounds.
    &PROBES[cpu_index().min(MAX_CPUS - 1)]
}

const OFFSET_ARMED: usize = 0;
const OFFSET_JMP: usize = 40;
const OFFSET_EL0_REGS: usize = OFFSET_JMP + 8 * JMP_SLOTS;

fn arm(mode: u64) {
    let probe = state();
    probe.faulted.store(0, Ordering::SeqCst);
    probe.armed.store(mode, Ordering::SeqCst);
}

fn disarm() -> Result<(), Fault> {
    let probe = state();
    probe.armed.store(DISARMED, Ordering::SeqCst);
    if probe.faulted.swap(0, Ordering::SeqCst) == 0 {
        return Ok(());
    }
    Err(Fault {
        esr: probe.esr.load(Ordering::SeqCst),
        far: probe.far.load(Ordering::SeqCst),
        elr: probe.elr.load(Ordering::SeqCst),
    })
}

/// Runs `f` with a skip-mode probe armed: if an instruction in it takes a
/// synchronous exception, that instruction is skipped and the fault returned.
/// `f` should be a single access or call in inline assembly: compiled code
/// that loses one instruction may compute nonsense, which the `Err` discards.
pub fn probe<R>(f: impl FnOnce() -> R) -> Result<R, Fault> {
    arm(ARMED_SKIP);
    let value = f();
    disarm().map(|()| value)
}

/// Loads 64 bits from `addr` (one LDR).
pub fn read_u64_probe(addr: u64) -> Result<u64, Fault> {
    probe(|| {
        let value: u64;
        // SAFETY: a load from an arbitrary address; a fault is caught by the
        // armed probe and the instruction skipped. The caller chooses an
        // address whose read has no side effect it minds.
        unsafe { asm!("ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) value, options(nostack)) };
        value
    })
}

/// Stores 64 bits to `addr` (one STR).
pub fn write_u64_probe(addr: u64, value: u64) -> Result<(), Fault> {
    probe(|| {
        // SAFETY: a store to an address the caller chose to test (never
        // memory the guest itself uses); a fault is caught and skipped.
        unsafe { asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack)) };
    })
}

/// Loads 32 bits from `addr + 1` with one LDR: misaligned on purpose, so it
/// faults on Device memory and works on Normal memory (SCTLR_EL1.A = 0). A
/// single-register load without writeback, so a stage-2 abort on it has a
/// valid syndrome.
pub fn read_u32_unaligned_probe(addr: u64) -> Result<u32, Fault> {
    let target = addr.wrapping_add(1);
    probe(|| {
        let value: u32;
        // SAFETY: as for `read_u64_probe`; the misalignment is the point.
        unsafe {
            asm!("ldr {v:w}, [{a}]", a = in(reg) target, v = out(reg) value, options(nostack))
        };
        value
    })
}

/// Stores two registers to `addr` with one STP: an access that gives no
/// instruction syndrome (ISV = 0), so a hypervisor cannot emulate it.
pub fn stp_probe(addr: u64, first: u64, second: u64) -> Result<(), Fault> {
    probe(|| {
        // SAFETY: a store pair to an address the caller chose to test; a
        // fault is caught and skipped.
        unsafe {
            asm!("stp {f}, {s}, [{a}]", a = in(reg) addr, f = in(reg) first, s = in(reg) second,
                options(nostack))
        };
    })
}

/// Executes `udf #0`, for testing the probes themselves.
pub fn udf_probe() -> Result<(), Fault> {
    probe(|| {
        // SAFETY: a permanently UNDEFINED instruction; the exception is
        // caught and the instruction skipped.
        unsafe { asm!("udf #0", options(nomem, nostack)) };
    })
}

global_asm!(
    r#"
    .section .text.probe, "ax"
    .global guest_exec_probe
    // x0 = target, x1 = this CPU's probe state. Saves a recovery point, arms jump mode and
    // branches to the target; returns when the target returns or, after a
    // fault, when the handler resumes at 1:.
guest_exec_probe:
    stp     x29, x30, [sp, #-16]!
    mov     x29, sp
    add     x9, x1, #{jmp}
    stp     x19, x20, [x9, #0]
    stp     x21, x22, [x9, #16]
    stp     x23, x24, [x9, #32]
    stp     x25, x26, [x9, #48]
    stp     x27, x28, [x9, #64]
    adr     x10, 1f
    stp     x29, x10, [x9, #80]
    mov     x10, sp
    str     x10, [x9, #96]
    mov     x10, #{jump}
    str     x10, [x1, #{armed}]
    blr     x0
1:  ldp     x29, x30, [sp], #16
    ret
"#,
    jmp = const OFFSET_JMP,
    armed = const OFFSET_ARMED,
    jump = const ARMED_JUMP,
);

global_asm!(
    r#"
    .section .text.probe, "ax"
    .global guest_el0_run
    // x0 = EL0 entry point, x1 = this CPU's probe state, x2 = SPSR for EL0. Saves a
    // recovery point, arms EL0 mode, loads r0-r7 from its el0_regs and
    // drops to EL0; the handler comes back to 1: at the first exception the
    // EL0 task takes, with its r0-r7 stored.
guest_el0_run:
    stp     x29, x30, [sp, #-16]!
    mov     x29, sp
    add     x9, x1, #{jmp}
    stp     x19, x20, [x9, #0]
    stp     x21, x22, [x9, #16]
    stp     x23, x24, [x9, #32]
    stp     x25, x26, [x9, #48]
    stp     x27, x28, [x9, #64]
    adr     x10, 1f
    stp     x29, x10, [x9, #80]
    mov     x10, sp
    str     x10, [x9, #96]
    mov     x10, #{el0}
    str     x10, [x1, #{armed}]
    msr     elr_el1, x0
    msr     spsr_el1, x2
    add     x9, x1, #{regs}
    ldp     x0, x1, [x9, #0]
    ldp     x2, x3, [x9, #16]
    ldp     x4, x5, [x9, #32]
    ldp     x6, x7, [x9, #48]
    eret
1:  ldp     x29, x30, [sp], #16
    ret
"#,
    jmp = const OFFSET_JMP,
    armed = const OFFSET_ARMED,
    regs = const OFFSET_EL0_REGS,
    el0 = const ARMED_EL0,
);

extern "C" {
    fn guest_exec_probe(target: u64, state: *const ProbeState);
    fn guest_el0_run(entry: u64, state: *const ProbeState, spsr: u64);
}

/// Runs a task at EL0 from `entry` with PSTATE `spsr` (AArch32 or AArch64)
/// and r0-r7 = `regs`, until its first exception (its own SVC, or a fault
/// the hypervisor injected): returns that exception, taken to EL1, and the
/// task's r0-r7 at that point. The task's code and data must be mapped for
/// EL0 ([`super::mmu::map_el0_page`]).
pub fn run_el0(entry: u64, spsr: u64, regs: [u64; EL0_REGS]) -> (Fault, [u64; EL0_REGS]) {
    let probe = state();
    for (slot, value) in probe.el0_regs.iter().zip(regs) {
        slot.store(value, Ordering::SeqCst);
    }
    arm(DISARMED);
    // SAFETY: guest_el0_run follows the C ABI; the EL0 task cannot touch
    // EL1 state, and its first exception makes the handler restore the
    // callee-saved registers, the stack and the return path saved here.
    unsafe { guest_el0_run(entry, probe, spsr) };
    let fault = Fault {
        esr: probe.esr.load(Ordering::SeqCst),
        far: probe.far.load(Ordering::SeqCst),
        elr: probe.elr.load(Ordering::SeqCst),
    };
    probe.faulted.store(0, Ordering::SeqCst);
    let out = core::array::from_fn(|i| probe.el0_regs[i].load(Ordering::SeqCst));
    (fault, out)
}

/// Branches with link to `addr`. If fetching or running it faults (an
/// instruction abort cannot be stepped over), the guest resumes here with
/// the fault; if the code there returns, `Ok`.
pub fn exec_probe(addr: u64) -> Result<(), Fault> {
    arm(DISARMED);
    // SAFETY: the target is code the caller wants to try, typically an
    // address that must not be executable. guest_exec_probe follows the C
    // ABI and, on a fault, the handler restores its callee-saved registers,
    // stack pointer and return path from the recovery point it saved.
    unsafe { guest_exec_probe(addr, state()) };
    disarm()
}

/// A function the handler calls before failing the run on an unexpected
/// exception (0: none), so a test can say what it was doing.
static UNEXPECTED_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Makes the handler call `hook` before it fails the run on an unexpected
/// exception.
pub fn on_unexpected(hook: fn()) {
    UNEXPECTED_HOOK.store(hook as usize, Ordering::SeqCst);
}

/// What the vectors call for every exception.
#[no_mangle]
extern "C" fn el1_trap(frame: &mut TrapFrame, slot: u64) {
    let (group, kind) = vector_slot(slot);
    let probe = state();
    let armed = probe.armed.swap(DISARMED, Ordering::SeqCst);
    let fault = Fault {
        esr: frame.esr,
        far: frame.far,
        elr: frame.elr,
    };
    // Groups 2 and 3 are EL0 (AArch64, AArch32): the task `run_el0` started
    // is done at its first exception, whatever it is.
    if armed == ARMED_EL0 && group >= 2 {
        record(probe, &fault);
        for (slot, value) in probe.el0_regs.iter().zip(frame.x) {
            slot.store(value, Ordering::SeqCst);
        }
        let jmp: [u64; JMP_SLOTS] = core::array::from_fn(|i| probe.jmp[i].load(Ordering::SeqCst));
        frame.x[19..31].copy_from_slice(&jmp[..12]);
        frame.elr = jmp[11];
        frame.sp_el0 = jmp[12];
        // Back to EL1 on SP_EL0, interrupts masked, as the guest runs.
        frame.spsr = SPSR_EL1T_MASKED;
        return;
    }
    // Group 0 is EL1 on SP_EL0 (guest code); group 1 is EL1 on SP_EL1 (the
    // failure path, which probes its firmware calls from the handler).
    if kind == VectorKind::Synchronous && group <= 1 && armed != DISARMED {
        let ec = fault.ec();
        let unskippable = matches!(ec, esr::ec::IABT_CURRENT | esr::ec::PC_ALIGNMENT);
        if armed == ARMED_JUMP && group == 0 {
            record(probe, &fault);
            let jmp: [u64; JMP_SLOTS] =
                core::array::from_fn(|i| probe.jmp[i].load(Ordering::SeqCst));
            frame.x[19..31].copy_from_slice(&jmp[..12]);
            frame.elr = jmp[11];
            frame.sp_el0 = jmp[12];
            return;
        }
        if armed == ARMED_SKIP && !unskippable {
            record(probe, &fault);
            frame.elr += 4;
            return;
        }
    }
    crate::println!(
        "GUEST unexpected {} exception (vector slot {slot}): {fault}",
        match kind {
            VectorKind::Synchronous => "synchronous",
            VectorKind::Irq => "IRQ",
            VectorKind::Fiq => "FIQ",
            VectorKind::SError => "SError",
        }
    );
    crate::println!(
        "GUEST   SPSR={:#x} SP_EL0={:#x} x0={:#x} x1={:#x} x29={:#x} x30={:#x}",
        frame.spsr,
        frame.sp_el0,
        frame.x[0],
        frame.x[1],
        frame.x[29],
        frame.x[30]
    );
    let hook = UNEXPECTED_HOOK.load(Ordering::SeqCst);
    if hook != 0 {
        // SAFETY: the value was stored from a `fn()` by `on_unexpected`.
        let hook: fn() = unsafe { core::mem::transmute::<usize, fn()>(hook) };
        hook();
    }
    super::firmware::fail()
}

fn record(probe: &ProbeState, fault: &Fault) {
    probe.esr.store(fault.esr, Ordering::SeqCst);
    probe.far.store(fault.far, Ordering::SeqCst);
    probe.elr.store(fault.elr, Ordering::SeqCst);
    probe.faulted.store(1, Ordering::SeqCst);
}

const _: () = assert!(core::mem::offset_of!(ProbeState, armed) == OFFSET_ARMED);
const _: () = assert!(core::mem::offset_of!(ProbeState, jmp) == OFFSET_JMP);
const _: () = assert!(core::mem::offset_of!(ProbeState, el0_regs) == OFFSET_EL0_REGS);

/// SPSR for EL1t with D, A, I and F masked.
const SPSR_EL1T_MASKED: u64 = 0b0100 | (0b1111 << 6);
