//! The image header, the first instructions, and the EL1 exception vectors.
//!
//! The loader (the hypervisor, or QEMU `-kernel` when the guest runs natively)
//! enters at `_start` per the arm64 Linux boot protocol: MMU off, x0 = device
//! tree. Entered at EL2 (QEMU with `virtualization=on` and no hypervisor), the
//! guest first drops to EL1 so it runs the same way on either machine. Then it
//! applies its own relocations, clears bss, sets up two stacks and the
//! vectors, and calls `rust_entry(dt, load_address, entry_el)`.
//!
//! Guest code runs on SP_EL0 (the main stack); exceptions switch to SP_EL1
//! (the exception stack), so a main-stack overflow into its guard page is
//! still reported, and a fault probe can restore SP_EL0 on recovery.

use crate::mmu::SCTLR_EL1_MMU_OFF;
use crate::trap::TRAP_FRAME_SIZE;

/// `R_AARCH64_RELATIVE`, the only dynamic relocation a self-relocating image
/// may carry (ELF for the Arm 64-bit Architecture, "Dynamic relocations").
const R_AARCH64_RELATIVE: u64 = 1027;

/// Image header flags: little-endian, 4 KiB pages, placement anywhere.
const IMAGE_FLAGS: u64 = 0b1010;

/// HCR_EL2 for the native EL2 case: EL1 is AArch64, nothing trapped, no
/// stage 2.
const HCR_EL2_RW: u64 = 1 << 31;

/// SPSR_EL2 for the drop to EL1: EL1h with D, A, I and F masked.
const SPSR_EL1H_MASKED: u64 = 0x3c5;

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
    mrs     x21, CurrentEL
    ubfx    x21, x21, #2, #2
    cmp     x21, #1
    b.eq    el1_entry
    cmp     x21, #2
    b.ne    .Lhang                  // EL3: not supported

    // At EL2 without a hypervisor: leave a stub that answers HVCs with
    // NOT_SUPPORTED, give EL1 the counters and its real IDs, and drop to EL1.
    adrp    x1, el2_stub_vectors
    add     x1, x1, :lo12:el2_stub_vectors
    msr     vbar_el2, x1
    ldr     x1, .Lhcr_el2
    msr     hcr_el2, x1
    mrs     x1, cnthctl_el2
    orr     x1, x1, #3              // EL1PCTEN, EL1PCEN
    msr     cnthctl_el2, x1
    msr     cntvoff_el2, xzr
    mrs     x1, midr_el1
    msr     vpidr_el2, x1
    mrs     x1, mpidr_el1
    msr     vmpidr_el2, x1
    ldr     x1, .Lsctlr_el1
    msr     sctlr_el1, x1
    adrp    x1, el1_entry
    add     x1, x1, :lo12:el1_entry
    msr     elr_el2, x1
    ldr     x1, .Lspsr_el2
    msr     spsr_el2, x1
    isb
    eret

el1_entry:
    adrp    x20, _start             // load address: the image is 4 KiB aligned
    add     x20, x20, :lo12:_start

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
    b.ne    .Lhang                  // linked wrongly; nothing can print yet
    add     x5, x5, x20
    str     x5, [x20, x3]
    b       1b
2:
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
3:  cmp     x1, x2
    b.hs    4f
    stp     xzr, xzr, [x1], #16
    b       3b
4:
    adrp    x1, __exception_stack_top
    add     x1, x1, :lo12:__exception_stack_top
    msr     spsel, #1
    mov     sp, x1
    adrp    x1, __main_stack_top
    add     x1, x1, :lo12:__main_stack_top
    msr     spsel, #0
    mov     sp, x1
    mov     x29, xzr
    mov     x30, xzr
    msr     tpidr_el1, xzr          // the boot CPU's slot (arch::cpu_index)

    adrp    x1, el1_vectors
    add     x1, x1, :lo12:el1_vectors
    msr     vbar_el1, x1
    ldr     x1, .Lsctlr_el1
    msr     sctlr_el1, x1
    isb
    mov     x0, x19
    mov     x1, x20
    mov     x2, x21
    bl      rust_entry
.Lhang:
    wfe
    b       .Lhang

    .balign 8
.Lhcr_el2:
    .quad   {hcr_el2}
.Lsctlr_el1:
    .quad   {sctlr_el1}
.Lspsr_el2:
    .quad   {spsr_el2}

    // EL2 stub, used only when the guest was entered at EL2: an HVC from
    // EL1 gets SMCCC NOT_SUPPORTED in x0 (the SMCCC lets a call clobber
    // x0-x17); anything else parks the CPU.
    .section .text.vectors, "ax"
    .balign 2048
el2_stub_vectors:
    .rept   16
    .balign 0x80
    b       el2_stub
    .endr
el2_stub:
    mrs     x17, esr_el2
    lsr     x17, x17, #26
    cmp     x17, #0x16              // HVC64
    b.ne    5f
    mov     x0, #-1
    eret
5:  wfe
    b       5b

    // EL1 vectors: 16 entries of 0x80 bytes, 2 KiB aligned. Every entry saves
    // a full frame and calls el1_trap(frame, slot).
    .macro  vector_entry slot
    .balign 0x80
    sub     sp, sp, #{frame_size}
    stp     x0, x1, [sp, #0]
    mov     x1, #\slot
    b       el1_trap_common
    .endm

    .balign 2048
    .global el1_vectors
el1_vectors:
    vector_entry 0
    vector_entry 1
    vector_entry 2
    vector_entry 3
    vector_entry 4
    vector_entry 5
    vector_entry 6
    vector_entry 7
    vector_entry 8
    vector_entry 9
    vector_entry 10
    vector_entry 11
    vector_entry 12
    vector_entry 13
    vector_entry 14
    vector_entry 15

el1_trap_common:
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
    mrs     x2, elr_el1
    stp     x30, x2, [sp, #240]
    mrs     x2, spsr_el1
    mrs     x3, esr_el1
    stp     x2, x3, [sp, #256]
    mrs     x2, far_el1
    mrs     x3, sp_el0
    stp     x2, x3, [sp, #272]
    // A frame record linking the trap to the interrupted code.
    ldr     x2, [sp, #248]
    ldr     x3, [sp, #232]
    stp     x3, x2, [sp, #-16]!
    mov     x29, sp
    add     x0, sp, #16
    bl      el1_trap
    add     sp, sp, #16
    // The handler may have redirected the return (probe recovery): reload
    // SP_EL0, ELR and SPSR from the frame.
    ldr     x3, [sp, #280]
    msr     sp_el0, x3
    ldp     x30, x2, [sp, #240]
    msr     elr_el1, x2
    ldr     x2, [sp, #256]
    msr     spsr_el1, x2
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
"#,
    flags = const IMAGE_FLAGS,
    relative = const R_AARCH64_RELATIVE,
    frame_size = const TRAP_FRAME_SIZE,
    hcr_el2 = const HCR_EL2_RW,
    sctlr_el1 = const SCTLR_EL1_MMU_OFF,
    spsr_el2 = const SPSR_EL1H_MASKED,
);
