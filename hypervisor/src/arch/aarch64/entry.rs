//! The image header, the first instructions, and the exception vectors.
//!
//! The loader (QEMU `-kernel`, U-Boot `booti`) enters at `_start` per the
//! arm64 Linux boot protocol (Documentation/arch/arm64/booting.rst): MMU off,
//! D-cache off, x0 = physical address of the device tree. The code here runs
//! before any Rust: it applies the image's own relocations, clears bss, sets up
//! the two stacks and the vectors, and calls `rust_entry` (at EL2) or
//! `rust_wrong_el` (at EL1 or EL3).
//!
//! Stacks: hypervisor code runs on SP_EL0 (the main stack); exceptions taken
//! to EL2 switch to SP_EL2 (the exception stack), so a main-stack overflow into
//! its guard page is still reported from a good stack.

use super::trap::TRAP_FRAME_SIZE;

/// `R_AARCH64_RELATIVE`: the only dynamic relocation a self-relocating
/// position-independent image may carry (ELF for the Arm 64-bit Architecture,
/// "Dynamic relocations").
pub const R_AARCH64_RELATIVE: u64 = 1027;

/// Image header flags: little-endian (bit 0 = 0), 4 KiB pages (bits 2:1 = 1),
/// placement anywhere in physical memory (bit 3 = 1).
pub const IMAGE_FLAGS: u64 = 0b1010;

core::arch::global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       primary_entry           // code0
    .long   0                       // code1
    .quad   0                       // text_offset
    .quad   __image_size            // image_size, including bss and stacks
    .quad   {flags}                 // flags
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5

    .section .text.boot, "ax"
primary_entry:
    msr     daifset, #0xf
    mov     x19, x0                 // device tree
    adrp    x20, _start             // load address: the image is 4 KiB aligned
    add     x20, x20, :lo12:_start
    mrs     x21, CurrentEL
    ubfx    x21, x21, #2, #2

    // Apply R_AARCH64_RELATIVE relocations: *(base + offset) = base + addend.
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
1:  cmp     x1, x2
    b.hs    2f
    ldp     x3, x4, [x1], #16       // r_offset, r_info
    ldr     x5, [x1], #8            // r_addend
    cmp     x4, #{relative}
    b.ne    .Lbad_relocation
    add     x5, x5, x20
    str     x5, [x20, x3]
    b       1b
2:
    // Clear bss (16-byte aligned at both ends by the linker script).
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
3:  cmp     x1, x2
    b.hs    4f
    stp     xzr, xzr, [x1], #16
    b       3b
4:
    // Exception stack on SP_ELx, main stack on SP_EL0.
    adrp    x1, __exception_stack_top
    add     x1, x1, :lo12:__exception_stack_top
    msr     spsel, #1
    mov     sp, x1
    adrp    x1, __main_stack_top
    add     x1, x1, :lo12:__main_stack_top
    msr     spsel, #0
    mov     sp, x1
    mov     x29, xzr                // end of the frame-record chain
    mov     x30, xzr

    cmp     x21, #2
    b.ne    .Lwrong_el

    adrp    x1, el2_vectors
    add     x1, x1, :lo12:el2_vectors
    msr     vbar_el2, x1
    // A known HCR_EL2: nothing trapped, no VHE, lower EL AArch64.
    mov     x1, #(1 << 31)
    msr     hcr_el2, x1
    isb
    mov     x0, x19
    mov     x1, x20
    bl      rust_entry
    b       .Lhang

.Lwrong_el:
    // Vectors that step over a semihosting call when semihosting is off,
    // so the error path can try it safely.
    cmp     x21, #1
    b.ne    5f
    adrp    x1, probe_vectors_el1
    add     x1, x1, :lo12:probe_vectors_el1
    msr     vbar_el1, x1
    isb
    b       6f
5:  cmp     x21, #3
    b.ne    6f
    adrp    x1, probe_vectors_el3
    add     x1, x1, :lo12:probe_vectors_el3
    msr     vbar_el3, x1
    isb
6:  mov     x0, x19
    mov     x1, x20
    mov     x2, x21
    bl      rust_wrong_el
    b       .Lhang

.Lbad_relocation:
    // An image with relocations other than RELATIVE was linked wrongly;
    // nothing can be printed before relocation, so park the CPU.
.Lhang:
    wfe
    b       .Lhang

    // Vector table for EL2: 16 entries of 0x80 bytes, 2 KiB aligned.
    .macro  vector_entry kind
    .balign 0x80
    sub     sp, sp, #{frame_size}
    stp     x0, x1, [sp, #0]
    mov     x1, #\kind
    b       el2_trap_common
    .endm

    // An exception from the guest: TPIDR_EL2 holds its VcpuContext. Only x0
    // and x1 can be spilled before the context is known, to the exception stack.
    .macro  guest_exit_entry kind
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mrs     x0, tpidr_el2
    mov     x1, #\kind
    b       guest_exit
    .endm

    .section .text.vectors, "ax"
    .balign 2048
    .global el2_vectors
el2_vectors:
    vector_entry 0      // current EL, SP_EL0: synchronous
    vector_entry 1      //                     IRQ
    vector_entry 2      //                     FIQ
    vector_entry 3      //                     SError
    vector_entry 4      // current EL, SP_ELx: synchronous
    vector_entry 5      //                     IRQ
    vector_entry 6      //                     FIQ
    vector_entry 7      //                     SError
    guest_exit_entry 8  // lower EL, AArch64:  synchronous
    guest_exit_entry 9  //                     IRQ
    guest_exit_entry 10 //                     FIQ
    guest_exit_entry 11 //                     SError
    guest_exit_entry 12 // lower EL, AArch32:  synchronous
    guest_exit_entry 13 //                     IRQ
    guest_exit_entry 14 //                     FIQ
    guest_exit_entry 15 //                     SError

el2_trap_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x2, elr_el2
    stp     x30, x2, [sp, #240]
    mrs     x2, spsr_el2
    mrs     x3, esr_el2
    stp     x2, x3, [sp, #256]
    mrs     x2, far_el2
    mrs     x3, sp_el0
    stp     x2, x3, [sp, #272]
    // A frame record linking the trap to the interrupted code, for backtraces.
    ldr     x2, [sp, #248]          // interrupted pc
    ldr     x3, [sp, #232]          // interrupted frame pointer
    stp     x3, x2, [sp, #-16]!
    mov     x29, sp
    add     x0, sp, #16
    bl      el2_trap
    add     sp, sp, #16
    ldp     x30, x2, [sp, #240]
    msr     elr_el2, x2
    ldr     x2, [sp, #256]
    msr     spsr_el2, x2
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #{frame_size}
    eret

    // Vectors used only on the wrong-EL error path: step over the semihosting
    // HLT if it traps (semihosting off), park the CPU on anything else.
    .macro  probe_vectors el
    .balign 2048
probe_vectors_el\el:
    .rept   16
    .balign 0x80
    b       probe_skip_el\el
    .endr
probe_skip_el\el:
    mrs     x17, elr_el\el
    ldr     w16, [x17]
    movz    w15, #0x0000
    movk    w15, #0xd45e, lsl #16   // hlt #0xf000
    cmp     w16, w15
    b.ne    7f
    add     x17, x17, #4
    msr     elr_el\el, x17
    eret
7:  wfe
    b       7b
    .endm

    probe_vectors 1
    probe_vectors 3
"#,
    flags = const IMAGE_FLAGS,
    relative = const R_AARCH64_RELATIVE,
    frame_size = const TRAP_FRAME_SIZE,
);
