//! Entering a guest and coming back: the world switch.
//!
//! `enter_guest` saves the host's callee-saved registers and main stack
//! pointer in the [`VcpuContext`], points TPIDR_EL2 at it, loads the guest's
//! registers and ERETs. An exception from the guest lands in the lower-EL
//! vectors (`entry.rs`), which jump to `guest_exit`: it stores the guest's
//! registers and syndrome in the context, restores the host's registers and
//! main stack, and returns from `enter_guest` with the vector number. The
//! exit is then handled in ordinary Rust on the main stack.

use crate::vm::vcpu::{offsets, VcpuContext};

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
