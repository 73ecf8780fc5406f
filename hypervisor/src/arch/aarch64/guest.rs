//! Entering a guest and coming back: the world switch.
//!
//! `enter_guest` saves the host's callee-saved registers and main stack
//! pointer in the [`VcpuContext`], points TPIDR_EL2 at it, loads the guest's
//! registers and ERETs. An exception from the guest lands in the lower-EL
//! vectors (`entry.rs`), which jump to `guest_exit`: it stores the guest's
//! registers and syndrome in the context, restores the host's registers and
//! main stack, and returns from `enter_guest` with the vector number. The
//! exit is then handled in ordinary Rust on the main stack.

use super::context::{offsets, VcpuContext};

core::arch::global_asm!(
    r#"
    .section .text.guest, "ax"
    .global enter_guest
enter_guest:
    // x0 = &mut VcpuContext
    stp     x19, x20, [x0, #{host} + 0]
    stp     x21, x22, [x0, #{host} + 16]
    stp     x23, x24, [x0, #{host} + 32]
    stp     x25, x26, [x0, #{host} + 48]
    stp     x27, x28, [x0, #{host} + 64]
    stp     x29, x30, [x0, #{host} + 80]
    mov     x1, sp
    str     x1, [x0, #{host_sp}]
    msr     tpidr_el2, x0
    // Leave the main stack: SP_EL0 is about to become the guest's.
    msr     spsel, #1
    ldr     x1, [x0, #{sp_el0}]
    msr     sp_el0, x1
    ldp     x1, x2, [x0, #{pc}]
    msr     elr_el2, x1
    msr     spsr_el2, x2
    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
    ldp     x18, x19, [x0, #144]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0, #0]
    eret
    // No speculation past the ERET.
    dsb     nsh
    isb

    .global guest_exit
guest_exit:
    // x0 = &mut VcpuContext, x1 = vector number; guest x0/x1 on the stack.
    str     x1, [x0, #{hpfar} + 8]
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    stp     x18, x19, [x0, #144]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    str     x30, [x0, #240]
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0, #0]
    mrs     x2, sp_el0
    str     x2, [x0, #{sp_el0}]
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x2, x3, [x0, #{pc}]
    mrs     x2, esr_el2
    mrs     x3, far_el2
    stp     x2, x3, [x0, #{esr}]
    mrs     x2, hpfar_el2
    str     x2, [x0, #{hpfar}]
    // Back to the host's main stack and registers.
    ldr     x1, [x0, #{host_sp}]
    msr     spsel, #0
    mov     sp, x1
    ldp     x19, x20, [x0, #{host} + 0]
    ldp     x21, x22, [x0, #{host} + 16]
    ldp     x23, x24, [x0, #{host} + 32]
    ldp     x25, x26, [x0, #{host} + 48]
    ldp     x27, x28, [x0, #{host} + 64]
    ldp     x29, x30, [x0, #{host} + 80]
    ldr     x0, [x0, #{hpfar} + 8]
    ret
"#,
    host = const offsets::HOST,
    host_sp = const offsets::HOST_SP,
    sp_el0 = const offsets::SP_EL0,
    pc = const offsets::PC,
    esr = const offsets::ESR,
    hpfar = const offsets::HPFAR,
);

extern "C" {
    fn enter_guest(ctx: *mut VcpuContext) -> u64;
    fn hv_at_s12e1r(va: u64) -> u64;
    fn hv_at_s12e1w(va: u64) -> u64;
    static hv_at_s12e1r_fault: u8;
    static hv_at_s12e1r_resume: u8;
    static hv_at_s12e1w_fault: u8;
    static hv_at_s12e1w_resume: u8;
}

// `AT S12E1R/W` for the guest, as leaf functions with the AT at a known
// address: x0 = guest VA in, PAR_EL1 out; the guest's PAR_EL1 is kept in x1
// and restored. SError is unmasked from the AT to the resume point, after a
// DSB and ISB, so an asynchronous abort caused by the walk is taken inside
// the window `at_fixups` describes rather than later, somewhere else.
core::arch::global_asm!(
    r#"
    .section .text.guest, "ax"
    .macro  at_routine name, op
    .global \name
\name:
    mrs     x1, par_el1
    msr     daifclr, #4
    .global \name\()_fault
\name\()_fault:
    at      \op, x0
    isb
    mrs     x0, par_el1
    dsb     sy
    isb
    .global \name\()_resume
\name\()_resume:
    msr     daifset, #4
    msr     par_el1, x1
    isb
    ret
    .endm

    at_routine hv_at_s12e1r, s12e1r
    at_routine hv_at_s12e1w, s12e1w
"#
);

/// The AT instructions above and where each resumes when it faults.
pub fn at_fixups() -> [super::trap::Fixup; 2] {
    let fixup = |fault: *const u8, resume: *const u8| super::trap::Fixup {
        fault_pc: fault as u64,
        resume_pc: resume as u64,
    };
    [
        fixup(
            &raw const hv_at_s12e1r_fault,
            &raw const hv_at_s12e1r_resume,
        ),
        fixup(
            &raw const hv_at_s12e1w_fault,
            &raw const hv_at_s12e1w_resume,
        ),
    ]
}

/// Runs the guest until its next exit; returns the EL2 vector number (8-15)
/// the exit came through, with the guest's registers and syndrome in `ctx`.
///
/// # Safety
///
/// Stage 2, HCR_EL2 and the guest's EL1 state must be set up so that
/// whatever the guest does traps back to EL2 without corrupting hypervisor
/// memory: stage 2 maps only memory the guest owns.
pub unsafe fn run(ctx: &mut VcpuContext) -> u64 {
    // SAFETY: `enter_guest` saves and restores every callee-saved register
    // and the main stack pointer, and returns normally; the caller vouches
    // for the guest's configuration.
    unsafe { enter_guest(ctx) }
}

/// EL2 registers that configure a guest's execution environment.
#[derive(Clone, Copy, Debug)]
pub struct GuestEl2Config {
    /// HCR_EL2.
    pub hcr: u64,
    /// VTCR_EL2.
    pub vtcr: u64,
    /// VTTBR_EL2.
    pub vttbr: u64,
    /// MDCR_EL2.
    pub mdcr: u64,
    /// CNTHCTL_EL2.
    pub cnthctl: u64,
    /// CPTR_EL2.
    pub cptr: u64,
    /// VMPIDR_EL2: the MPIDR_EL1 the guest reads.
    pub vmpidr: u64,
}

/// SCTLR_EL1 with the MMU and caches off and the RES1 bits set: the state
/// the arm64 boot protocol promises a kernel.
pub const SCTLR_EL1_RESET: u64 =
    (1 << 29) | (1 << 28) | (1 << 23) | (1 << 22) | (1 << 20) | (1 << 11);

/// Loads the guest's EL2 configuration, invalidates the VMID's TLB entries
/// and resets the EL1 state a kernel may not assume anything about.
///
/// # Safety
///
/// `vttbr` must point at a valid stage-2 table (built for `vtcr`) that maps
/// only memory the guest may own; the hypervisor must not rely on EL1
/// registers afterwards.
pub unsafe fn configure_el2(c: &GuestEl2Config) {
    // SAFETY: the caller vouches for the stage-2 tables; the remaining
    // registers only affect EL1 and EL0, which the guest owns from now on.
    unsafe {
        core::arch::asm!(
            "msr vtcr_el2, {vtcr}",
            "msr vttbr_el2, {vttbr}",
            "isb",
            "msr hcr_el2, {hcr}",
            "msr mdcr_el2, {mdcr}",
            "msr cnthctl_el2, {cnthctl}",
            "msr cntvoff_el2, xzr",
            "msr cptr_el2, {cptr}",
            "mrs {tmp}, midr_el1",
            "msr vpidr_el2, {tmp}",
            "msr vmpidr_el2, {vmpidr}",
            "msr sctlr_el1, {sctlr}",
            "isb",
            "tlbi vmalls12e1is",
            "dsb ish",
            "isb",
            vtcr = in(reg) c.vtcr,
            vttbr = in(reg) c.vttbr,
            hcr = in(reg) c.hcr,
            mdcr = in(reg) c.mdcr,
            cnthctl = in(reg) c.cnthctl,
            cptr = in(reg) c.cptr,
            vmpidr = in(reg) c.vmpidr,
            sctlr = in(reg) SCTLR_EL1_RESET,
            tmp = out(reg) _,
            options(nostack, preserves_flags),
        )
    };
}

/// The exit handler's instructions, on real hardware.
pub struct HwGuestArch;

impl crate::vm::exit::GuestArch for HwGuestArch {
    fn el1_vector_state(&mut self) -> (u64, u64) {
        let (vbar, sctlr): (u64, u64);
        // SAFETY: reads of EL1 registers from EL2 have no side effects.
        unsafe {
            core::arch::asm!("mrs {}, vbar_el1", "mrs {}, sctlr_el1", out(reg) vbar, out(reg) sctlr,
                options(nomem, nostack, preserves_flags))
        };
        (vbar, sctlr)
    }

    fn write_el1_exception(&mut self, esr: u64, far: Option<u64>, spsr: u64, elr: u64) {
        // SAFETY: these EL1 registers belong to the guest; writing them is
        // exactly what taking the exception in hardware would have done.
        unsafe {
            core::arch::asm!("msr esr_el1, {}", "msr spsr_el1, {}", "msr elr_el1, {}",
                in(reg) esr, in(reg) spsr, in(reg) elr, options(nomem, nostack, preserves_flags));
            if let Some(far) = far {
                core::arch::asm!("msr far_el1, {}", in(reg) far, options(nomem, nostack, preserves_flags));
            }
        }
    }

    fn translate_guest_va(&mut self, va: u64, write: bool) -> u64 {
        // SAFETY: the routines only run AT on `va` (which walks the guest's
        // tables through stage 2 and accesses no memory architecturally
        // visible to software) and restore the guest's PAR_EL1; an external
        // abort the walk takes is turned into a failed PAR by `at_fixups`.
        unsafe {
            if write {
                hv_at_s12e1w(va)
            } else {
                hv_at_s12e1r(va)
            }
        }
    }

    fn clean_invalidate_set_way(&mut self, operand: u64) {
        // SAFETY: clean and invalidate by set/way writes dirty lines back
        // before dropping them, so no one's data is lost.
        unsafe {
            core::arch::asm!("dc cisw, {}", "dsb sy", in(reg) operand, options(nostack, preserves_flags))
        };
    }
}
