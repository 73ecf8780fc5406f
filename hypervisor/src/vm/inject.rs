//! Injecting a synchronous exception into a guest's EL1: what an abort or an
//! UNDEF taken by real hardware would have done, computed without touching a
//! register so it is tested on the host (Arm ARM D1.4, "Exception entry",
//! and D1.3.1, "Exception vectors").
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

/// ESR exception classes used for injection.
pub mod ec {
    /// Unknown reason: what an UNDEFINED instruction reports.
    pub const UNKNOWN: u64 = 0x00;
    /// Instruction abort from a lower exception level.
    pub const IABT_LOWER: u64 = 0x20;
    /// Instruction abort without a change of exception level.
    pub const IABT_CURRENT: u64 = 0x21;
    /// Data abort from a lower exception level.
    pub const DABT_LOWER: u64 = 0x24;
    /// Data abort without a change of exception level.
    pub const DABT_CURRENT: u64 = 0x25;
}

/// Fault status codes (DFSC/IFSC) used for injection.
pub mod fsc {
    /// Synchronous external abort, not on a translation table walk.
    pub const SYNC_EXTERNAL: u64 = 0x10;
    /// Synchronous external abort on a translation table walk, level 0..3 (add the level).
    pub const SYNC_EXTERNAL_WALK_L0: u64 = 0x14;
    /// Address size fault at level 0 (the input address is out of range).
    pub const ADDRESS_SIZE_L0: u64 = 0x00;
}

/// SPSR/PSTATE.M values for AArch64 modes.
const M_EL0T: u64 = 0b0000;
const M_EL1T: u64 = 0b0100;
const M_EL1H: u64 = 0b0101;
const SPSR_M_MASK: u64 = 0b1_1111;
const SPSR_NRW: u64 = 1 << 4;
/// D, A, I and F mask bits.
const SPSR_DAIF: u64 = 0b1111 << 6;
/// PSTATE.PAN, set on entry to EL1 when SCTLR_EL1.SPAN is 0.
const SPSR_PAN: u64 = 1 << 22;
/// PSTATE.SSBS is set to SCTLR_EL1.DSSBS on entry; left clear here.
const SCTLR_SPAN: u64 = 1 << 23;
/// ESR.IL: a 32-bit instruction.
const ESR_IL: u64 = 1 << 25;

/// What kind of exception to give the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// A synchronous external data abort at `far`. `write` sets ESR.WnR.
    DataAbort {
        /// Faulting virtual address.
        far: u64,
        /// Whether the access was a write.
        write: bool,
        /// Fault status code (a value from [`fsc`]).
        status: u64,
        /// Whether the fault was on the guest's own stage-1 table walk.
        s1ptw: bool,
    },
    /// A synchronous external instruction abort at `far`.
    InstructionAbort {
        /// Faulting virtual address.
        far: u64,
        /// Fault status code.
        status: u64,
    },
    /// An undefined instruction.
    Undefined,
}

/// The guest state an injection reads: its PSTATE, PC and EL1 configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestState {
    /// SPSR_EL2 at the exit: the guest's PSTATE.
    pub spsr: u64,
    /// ELR_EL2 at the exit: the guest's PC (of the faulting instruction).
    pub pc: u64,
    /// VBAR_EL1.
    pub vbar: u64,
    /// SCTLR_EL1 (for SPAN).
    pub sctlr: u64,
}

/// The registers to write so the guest takes the exception on return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InjectedState {
    /// New SPSR_EL2: the guest resumes in EL1h with DAIF masked.
    pub spsr_el2: u64,
    /// New ELR_EL2: the guest's vector.
    pub elr_el2: u64,
    /// ESR_EL1.
    pub esr_el1: u64,
    /// FAR_EL1, where the exception class has one.
    pub far_el1: Option<u64>,
    /// SPSR_EL1: the PSTATE the guest's handler returns to.
    pub spsr_el1: u64,
    /// ELR_EL1: the faulting instruction.
    pub elr_el1: u64,
}

/// Why an injection cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectError {
    /// The guest was in AArch32 state, which this hypervisor does not run.
    AArch32Guest,
    /// The guest was at a mode EL1 cannot take an exception from (EL2 or EL3 in SPSR).
    BadMode(u64),
}

/// Computes the state for taking `what` to the guest's EL1. Never inlined:
/// the debugger's breakpoint for every exception injected into a guest
/// (`hv-break-inject`); a cold path, so the call costs nothing that matters.
#[inline(never)]
pub fn inject(guest: &GuestState, what: Injection) -> Result<InjectedState, InjectError> {
    if guest.spsr & SPSR_NRW != 0 {
        return Err(InjectError::AArch32Guest);
    }
    let mode = guest.spsr & SPSR_M_MASK;
    let (from_lower, vector_offset) = match mode {
        M_EL0T => (true, 0x400),
        M_EL1T => (false, 0x000),
        M_EL1H => (false, 0x200),
        other => return Err(InjectError::BadMode(other)),
    };
    let (esr, far) = match what {
        Injection::DataAbort {
            far,
            write,
            status,
            s1ptw,
        } => {
            let class = if from_lower {
                ec::DABT_LOWER
            } else {
                ec::DABT_CURRENT
            };
            let iss = (status & 0x3f) | (u64::from(write) << 6) | (u64::from(s1ptw) << 7);
            ((class << 26) | ESR_IL | iss, Some(far))
        }
        Injection::InstructionAbort { far, status } => {
            let class = if from_lower {
                ec::IABT_LOWER
            } else {
                ec::IABT_CURRENT
            };
            ((class << 26) | ESR_IL | (status & 0x3f), Some(far))
        }
        Injection::Undefined => ((ec::UNKNOWN << 26) | ESR_IL, None),
    };
    let mut spsr_el2 = M_EL1H | SPSR_DAIF;
    if guest.sctlr & SCTLR_SPAN == 0 {
        spsr_el2 |= SPSR_PAN;
    }
    Ok(InjectedState {
        spsr_el2,
        elr_el2: guest.vbar.wrapping_add(vector_offset),
        esr_el1: esr,
        far_el1: far,
        spsr_el1: guest.spsr,
        elr_el1: guest.pc,
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;

    const VBAR: u64 = 0x4008_0800;

    fn guest(mode: u64) -> GuestState {
        GuestState {
            spsr: mode | (1 << 29) | (0b1 << 9),
            pc: 0x4010_0004,
            vbar: VBAR,
            sctlr: SCTLR_SPAN,
        }
    }

    #[test]
    fn data_abort_from_el1h_goes_to_the_current_el_spx_vector() {
        let s = inject(
            &guest(M_EL1H),
            Injection::DataAbort {
                far: 0x1234,
                write: true,
                status: fsc::SYNC_EXTERNAL,
                s1ptw: false,
            },
        )
        .unwrap();
        assert_eq!(s.elr_el2, VBAR + 0x200);
        assert_eq!(s.esr_el1, 0x9600_0050);
        assert_eq!(s.far_el1, Some(0x1234));
        assert_eq!(s.spsr_el1, guest(M_EL1H).spsr);
        assert_eq!(s.elr_el1, 0x4010_0004);
        assert_eq!(s.spsr_el2, M_EL1H | SPSR_DAIF);
    }

    #[test]
    fn each_source_mode_selects_its_vector_and_class() {
        let cases = [
            (M_EL0T, 0x400, ec::DABT_LOWER, ec::IABT_LOWER),
            (M_EL1T, 0x000, ec::DABT_CURRENT, ec::IABT_CURRENT),
            (M_EL1H, 0x200, ec::DABT_CURRENT, ec::IABT_CURRENT),
        ];
        for (mode, offset, dclass, iclass) in cases {
            let d = inject(
                &guest(mode),
                Injection::DataAbort {
                    far: 0,
                    write: false,
                    status: fsc::SYNC_EXTERNAL,
                    s1ptw: false,
                },
            )
            .unwrap();
            assert_eq!(d.elr_el2, VBAR + offset);
            assert_eq!(d.esr_el1 >> 26, dclass);
            let i = inject(
                &guest(mode),
                Injection::InstructionAbort {
                    far: 8,
                    status: fsc::SYNC_EXTERNAL,
                },
            )
            .unwrap();
            assert_eq!(i.esr_el1 >> 26, iclass);
            assert_eq!(i.esr_el1 & 0x3f, fsc::SYNC_EXTERNAL);
            assert_eq!(i.far_el1, Some(8));
        }
    }

    #[test]
    fn undefined_has_no_far_and_sets_il() {
        let u = inject(&guest(M_EL1H), Injection::Undefined).unwrap();
        assert_eq!(u.esr_el1, ESR_IL);
        assert_eq!(u.far_el1, None);
    }

    #[test]
    fn pan_follows_span_and_s1ptw_is_reported() {
        let mut g = guest(M_EL1H);
        g.sctlr = 0;
        let s = inject(
            &g,
            Injection::DataAbort {
                far: 0,
                write: false,
                status: fsc::SYNC_EXTERNAL_WALK_L0 + 3,
                s1ptw: true,
            },
        )
        .unwrap();
        assert_ne!(s.spsr_el2 & SPSR_PAN, 0);
        assert_eq!(s.esr_el1 & 0x3f, 0x17);
        assert_ne!(s.esr_el1 & (1 << 7), 0);
    }

    #[test]
    fn refuses_aarch32_and_impossible_modes() {
        assert_eq!(
            inject(&guest(0b1_0011), Injection::Undefined),
            Err(InjectError::AArch32Guest)
        );
        assert_eq!(
            inject(&guest(0b1001), Injection::Undefined),
            Err(InjectError::BadMode(0b1001))
        );
    }

    #[test]
    fn vector_address_wraps_instead_of_panicking() {
        let mut g = guest(M_EL0T);
        g.vbar = u64::MAX - 0x100;
        assert!(inject(&g, Injection::Undefined).is_ok());
    }
}
