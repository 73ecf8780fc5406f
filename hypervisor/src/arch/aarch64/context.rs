//! A vCPU's saved state as the world-switch assembly lays it out, and the
//! per-CPU block TPIDR_EL2 points at.
//!
//! The guest's EL1 system registers stay live in the hardware while it is
//! the only thing running on its CPU (static partitioning): the hypervisor
//! never uses EL1 registers itself, so an exit saves and restores only what
//! the exception entry changes (general registers, SP_EL0, ELR/SPSR) plus
//! the syndrome.

/// General registers and exit syndrome, laid out for the entry/exit assembly.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRegs {
    /// x0 to x30.
    pub x: [u64; 31],
    /// SP_EL0 (the guest's EL0 stack).
    pub sp_el0: u64,
    /// The guest PC: ELR_EL2 at exit, restored on entry.
    pub pc: u64,
    /// The guest PSTATE: SPSR_EL2 at exit, restored on entry.
    pub pstate: u64,
    /// ESR_EL2 at the last exit.
    pub esr: u64,
    /// FAR_EL2 at the last exit.
    pub far: u64,
    /// HPFAR_EL2 at the last exit.
    pub hpfar: u64,
    /// Which EL2 vector the last exit came through (8 to 15).
    pub vector: u64,
}

/// The host's callee-saved registers across a guest run (AAPCS64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HostRegs {
    /// x19 to x30.
    pub x19_x30: [u64; 12],
    /// The host's main stack pointer (SP_EL0).
    pub sp: u64,
}

/// What the entry/exit assembly works on; TPIDR_EL2 points at it while the guest runs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VcpuContext {
    /// Guest registers.
    pub guest: GuestRegs,
    /// Host registers.
    pub host: HostRegs,
}

/// Offsets the assembly uses; checked against the struct layout below.
pub mod offsets {
    /// `guest.x[0]`.
    pub const X0: usize = 0;
    /// `guest.sp_el0`.
    pub const SP_EL0: usize = 248;
    /// `guest.pc` (followed by `pstate`).
    pub const PC: usize = 256;
    /// `guest.esr` (followed by `far`).
    pub const ESR: usize = 272;
    /// `guest.hpfar` (followed by `vector`).
    pub const HPFAR: usize = 288;
    /// `host.x19_x30`.
    pub const HOST: usize = 304;
    /// `host.sp`.
    pub const HOST_SP: usize = 400;
}

const _: () = {
    assert!(core::mem::offset_of!(VcpuContext, guest) == offsets::X0);
    assert!(core::mem::offset_of!(GuestRegs, sp_el0) == offsets::SP_EL0);
    assert!(core::mem::offset_of!(GuestRegs, pc) == offsets::PC);
    assert!(core::mem::offset_of!(GuestRegs, pstate) == offsets::PC + 8);
    assert!(core::mem::offset_of!(GuestRegs, esr) == offsets::ESR);
    assert!(core::mem::offset_of!(GuestRegs, far) == offsets::ESR + 8);
    assert!(core::mem::offset_of!(GuestRegs, hpfar) == offsets::HPFAR);
    assert!(core::mem::offset_of!(GuestRegs, vector) == offsets::HPFAR + 8);
    assert!(core::mem::offset_of!(VcpuContext, host) == offsets::HOST);
    assert!(core::mem::offset_of!(HostRegs, sp) == offsets::HOST_SP - offsets::HOST);
};

/// What TPIDR_EL2 points at on every CPU the hypervisor runs on: the vCPU
/// context the world switch uses first (the assembly finds it at offset 0),
/// then which CPU this is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PerCpu {
    /// The context of the vCPU this CPU runs.
    pub ctx: VcpuContext,
    /// The CPU's index: 0 for the boot CPU, and the index of its vCPU.
    pub index: usize,
    /// Its physical MPIDR_EL1 affinity.
    pub mpidr: u64,
}

const _: () = assert!(core::mem::offset_of!(PerCpu, ctx) == 0);
