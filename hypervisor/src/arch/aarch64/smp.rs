//! Bringing up the secondary CPUs: their entry point, the block each one
//! reads with its MMU still off, and the firmware call that starts it.
//!
//! The boot CPU builds the EL2 map once ([`record_el2_mmu`]); a secondary
//! started by PSCI CPU_ON (Arm DEN 0022, 5.6) enters [`secondary_entry`] at
//! EL2 with its MMU off and x0 = the address of its [`CpuBoot`]. The
//! assembly loads the same MAIR/TCR/TTBR0/SCTLR as the boot CPU (the map is
//! an identity map, so the block's address is the same before and after),
//! takes its own stacks and vectors, and calls `rust_secondary_entry` with
//! the block's index and argument; the Rust side points TPIDR_EL2 at the
//! CPU's per-CPU block ([`set_percpu`]).

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::context::PerCpu;
use super::firmware;
use super::tlb::{dcache_range, CacheOp};

/// What a secondary CPU needs before it can run Rust: read by the entry
/// assembly with the MMU off, so it must be cleaned to the point of
/// coherency before the CPU is started ([`start_cpu`] does).
#[repr(C)]
#[derive(Debug)]
pub struct CpuBoot {
    /// MAIR_EL2 of the EL2 map.
    pub mair: u64,
    /// TCR_EL2.
    pub tcr: u64,
    /// TTBR0_EL2: the map's root.
    pub ttbr0: u64,
    /// SCTLR_EL2 with the MMU and caches on.
    pub sctlr: u64,
    /// Top of the CPU's main stack (SP_EL0).
    pub sp_main: u64,
    /// Top of its exception stack (SP_EL2).
    pub sp_exception: u64,
    /// First argument of `rust_secondary_entry`: the CPU's index.
    pub index: u64,
    /// Second argument, passed untouched.
    pub arg: u64,
}

const _: () = {
    assert!(core::mem::offset_of!(CpuBoot, mair) == 0);
    assert!(core::mem::offset_of!(CpuBoot, ttbr0) == 16);
    assert!(core::mem::offset_of!(CpuBoot, sp_main) == 32);
    assert!(core::mem::offset_of!(CpuBoot, index) == 48);
};

core::arch::global_asm!(
    r#"
    .section .text.boot, "ax"
    .global secondary_entry
secondary_entry:
    msr     daifset, #0xf
    // x0 = &CpuBoot, read with the MMU and caches off.
    ldp     x1, x2, [x0, #0]        // MAIR_EL2, TCR_EL2
    ldp     x3, x4, [x0, #16]       // TTBR0_EL2, SCTLR_EL2
    msr     mair_el2, x1
    msr     tcr_el2, x2
    msr     ttbr0_el2, x3
    dsb     ish
    tlbi    alle2
    dsb     ish
    isb
    msr     sctlr_el2, x4
    isb
    adrp    x1, el2_vectors
    add     x1, x1, :lo12:el2_vectors
    msr     vbar_el2, x1
    // A known HCR_EL2 until the vCPU's own: nothing trapped, EL1 AArch64.
    mov     x1, #(1 << 31)
    msr     hcr_el2, x1
    isb
    ldp     x1, x2, [x0, #32]       // main and exception stack tops
    msr     spsel, #1
    mov     sp, x2
    msr     spsel, #0
    mov     sp, x1
    msr     tpidr_el2, xzr
    ldp     x0, x1, [x0, #48]       // index, argument
    mov     x29, xzr
    mov     x30, xzr
    bl      rust_secondary_entry
1:  wfe
    b       1b
"#
);

extern "C" {
    fn secondary_entry();
}

/// The EL2 map's registers as the boot CPU loaded them: MAIR, TCR, TTBR0,
/// SCTLR. Zero until [`record_el2_mmu`].
static EL2_MMU: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

/// Records the EL2 map the boot CPU turned on, for the secondaries.
pub fn record_el2_mmu(mair: u64, tcr: u64, ttbr0: u64, sctlr: u64) {
    for (slot, v) in EL2_MMU.iter().zip([mair, tcr, ttbr0, sctlr]) {
        slot.store(v, Ordering::Release);
    }
}

/// The recorded EL2 map: (MAIR, TCR, TTBR0, SCTLR), or `None` before
/// [`record_el2_mmu`].
pub fn el2_mmu() -> Option<[u64; 4]> {
    let regs = EL2_MMU.each_ref().map(|r| r.load(Ordering::Acquire));
    (regs[2] != 0).then_some(regs)
}

/// PSCI CPU_ON, SMC64 (DEN 0022 5.1.4).
const PSCI_CPU_ON_64: u32 = 0xC400_0003;

/// Why a secondary CPU could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The boot CPU's EL2 map was never recorded.
    NoMap,
    /// The firmware has no PSCI the hypervisor can call.
    NoPsci,
    /// PSCI CPU_ON failed with this status.
    Psci(i64),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoMap => write!(f, "the EL2 map is not recorded"),
            Self::NoPsci => write!(f, "no PSCI firmware to start it (the device tree's /psci)"),
            Self::Psci(code) => write!(f, "PSCI CPU_ON returned {code}"),
        }
    }
}

/// Asks the firmware to start the CPU with MPIDR affinity `mpidr` at
/// [`secondary_entry`] with `boot`. The CPU runs `rust_secondary_entry`
/// afterwards, asynchronously: the caller waits for it to check in.
///
/// # Safety
///
/// `boot` must live for ever and not change once this is called; its stacks
/// must be mapped in the EL2 map and used by no other CPU.
pub unsafe fn start_cpu(mpidr: u64, boot: &'static CpuBoot) -> Result<(), StartError> {
    if el2_mmu().is_none() {
        return Err(StartError::NoMap);
    }
    let line = 64;
    // SAFETY: the block is mapped and written; cleaning it to PoC lets the
    // secondary read it with its caches off. Nothing is lost.
    unsafe {
        dcache_range(
            CacheOp::CleanInvalidate,
            boot as *const CpuBoot as u64,
            core::mem::size_of::<CpuBoot>() as u64,
            line,
        )
    };
    let entry = secondary_entry as *const () as u64;
    match firmware::psci_call(PSCI_CPU_ON_64, mpidr, entry, boot as *const CpuBoot as u64) {
        None => Err(StartError::NoPsci),
        Some(0) => Ok(()),
        Some(code) => Err(StartError::Psci(code)),
    }
}

/// MPIDR_EL1's affinity fields (Aff3 and Aff2..Aff0) of the CPU running this.
pub fn current_mpidr() -> u64 {
    let v: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v & 0xFF_00FF_FFFF
}

/// Points TPIDR_EL2 at this CPU's per-CPU block.
///
/// # Safety
///
/// `percpu` must be this CPU's alone and live for ever: the world switch
/// stores the guest's registers through it.
pub unsafe fn set_percpu(percpu: *mut PerCpu) {
    // SAFETY: TPIDR_EL2 is the hypervisor's own; the caller vouches for the block.
    unsafe { asm!("msr tpidr_el2, {}", in(reg) percpu, options(nostack, preserves_flags)) };
}

/// Wakes CPUs waiting in [`wait_for_event`].
pub fn send_event() {
    // SAFETY: SEV only sets the event register of every CPU.
    unsafe { asm!("dsb ish", "sev", options(nostack, preserves_flags)) };
}

/// Waits until an event (from [`send_event`], or any other) arrives.
pub fn wait_for_event() {
    // SAFETY: WFE only waits.
    unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
}
