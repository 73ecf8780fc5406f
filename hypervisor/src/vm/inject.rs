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
/// SPSR.M for AArch32 User mode (EL0): nRW set, M\[3:0\] 0b0000.
const M_USR32: u64 = 0b1_0000;
const SPSR_M_MASK: u64 = 0b1_1111;
const SPSR_NRW: u64 = 1 << 4;
/// D, A, I and F mask bits.
const SPSR_DAIF: u64 = 0b1111 << 6;
/// PSTATE.SSBS in an AArch64 SPSR.
const SPSR_SSBS: u64 = 1 << 12;
/// PSTATE.PAN, set on entry to EL1 when SCTLR_EL1.SPAN is 0.
const SPSR_PAN: u64 = 1 << 22;
/// PSTATE.DIT in an AArch64 SPSR, and where an AArch32 SPSR keeps it.
const SPSR_DIT: u64 = 1 << 24;
const SPSR32_DIT: u64 = 1 << 21;
const SCTLR_SPAN: u64 = 1 << 23;
/// SCTLR_EL1.DSSBS: the PSTATE.SSBS an exception to EL1 starts with.
const SCTLR_DSSBS: u64 = 1 << 44;
/// ESR.IL. RES1 for every exception injected here: an UNDEFINED instruction
/// (EC 0x00), instruction aborts and data aborts without a valid
/// instruction syndrome (Arm ARM D24.2, "ESR_EL1.IL"), whatever the length
/// of the instruction, 16-bit T32 included.
const ESR_IL: u64 = 1 << 25;

/// Vector offsets from VBAR_EL1 for a synchronous exception (Arm ARM D1.3.1):
/// current EL with SP_EL0, current EL with SP_ELx, lower EL in AArch64,
/// lower EL in AArch32.
const VECTOR_CURRENT_SP0: u64 = 0x000;
const VECTOR_CURRENT_SPX: u64 = 0x200;
const VECTOR_LOWER_A64: u64 = 0x400;
const VECTOR_LOWER_A32: u64 = 0x600;

/// What kind of exception to give the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// A synchronous data abort at `far`. `write` sets ESR.WnR.
    DataAbort {
        /// Faulting virtual address.
        far: u64,
        /// Whether the access was a write.
        write: bool,
        /// Fault status code (a value from [`fsc`]); a fault on the
        /// guest's own table walk says so with its code (0x14-0x17), as
        /// ESR_EL1.S1PTW belongs to stage-2 faults and stays 0.
        status: u64,
    },
    /// A synchronous instruction abort at `far`.
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
    /// SCTLR_EL1 (for SPAN and DSSBS).
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
    /// The saved PSTATE is not a mode the guest can be in: EL2 or EL3, or
    /// AArch32 other than User mode (HCR_EL2.RW keeps EL1 in AArch64, so
    /// only EL0 may run AArch32).
    BadMode(u64),
}

/// Computes the state for taking `what` to the guest's EL1.
///
/// With HCR_EL2.RW set, exits from an AArch32 EL0 task arrive on the
/// lower-EL AArch64 vector like any other; the guest's EL1 (AArch64) takes
/// them at VBAR_EL1 + 0x600, with the lower-EL classes and the AArch32
/// PSTATE (T, ITSTATE and all) in SPSR_EL1.
///
/// Never inlined: the debugger's breakpoint for every exception injected
/// into a guest (`hv-break-inject`); a cold path, so the call costs nothing
/// that matters.
#[inline(never)]
pub fn inject(guest: &GuestState, what: Injection) -> Result<InjectedState, InjectError> {
    let mode = guest.spsr & SPSR_M_MASK;
    let (from_lower, vector_offset) = match mode {
        M_EL0T => (true, VECTOR_LOWER_A64),
        M_EL1T => (false, VECTOR_CURRENT_SP0),
        M_EL1H => (false, VECTOR_CURRENT_SPX),
        M_USR32 => (true, VECTOR_LOWER_A32),
        other => return Err(InjectError::BadMode(other)),
    };
    let (esr, far) = match what {
        Injection::DataAbort { far, write, status } => {
            let class = if from_lower {
                ec::DABT_LOWER
            } else {
                ec::DABT_CURRENT
            };
            let iss = (status & 0x3f) | (u64::from(write) << 6);
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
    if guest.sctlr & SCTLR_DSSBS != 0 {
        spsr_el2 |= SPSR_SSBS;
    }
    // DIT is kept across exception entry.
    let dit = if guest.spsr & SPSR_NRW != 0 {
        SPSR32_DIT
    } else {
        SPSR_DIT
    };
    if guest.spsr & dit != 0 {
        spsr_el2 |= SPSR_DIT;
    }
    Ok(InjectedState {
        spsr_el2,
        elr_el2: guest.vbar.wrapping_add(vector_offset),
        esr_el1: esr,
        far_el1: far,
        spsr_el1: guest.spsr,
        // An AArch32 PC has no upper half.
        elr_el1: if mode == M_USR32 {
            guest.pc & 0xffff_ffff
        } else {
            guest.pc
        },
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
    fn pan_follows_span_and_a_walk_fault_is_in_the_status_code() {
        let mut g = guest(M_EL1H);
        g.sctlr = 0;
        let s = inject(
            &g,
            Injection::DataAbort {
                far: 0,
                write: false,
                status: fsc::SYNC_EXTERNAL_WALK_L0 + 3,
            },
        )
        .unwrap();
        assert_ne!(s.spsr_el2 & SPSR_PAN, 0);
        assert_eq!(s.esr_el1 & 0x3f, 0x17);
        // S1PTW reports stage-2 faults; EL1 has no stage 2 to speak of.
        assert_eq!(s.esr_el1 & (1 << 7), 0);
    }

    #[test]
    fn ssbs_follows_dssbs_and_dit_is_kept() {
        let mut g = guest(M_EL1H);
        g.sctlr = SCTLR_SPAN | SCTLR_DSSBS;
        g.spsr |= SPSR_DIT;
        let s = inject(&g, Injection::Undefined).unwrap();
        assert_eq!(s.spsr_el2, M_EL1H | SPSR_DAIF | SPSR_SSBS | SPSR_DIT);
        // An AArch32 PSTATE keeps DIT at bit 21.
        let mut g = guest(M_USR32);
        g.spsr |= SPSR32_DIT;
        let s = inject(&g, Injection::Undefined).unwrap();
        assert_eq!(s.spsr_el2, M_EL1H | SPSR_DAIF | SPSR_DIT);
    }

    #[test]
    fn aarch32_el0_goes_to_the_lower_aarch32_vector() {
        // A T32 User-mode task in an IT block, flags set: SPSR_EL1 must
        // hold that PSTATE unchanged for the guest's handler.
        let spsr = M_USR32 | (1 << 5) | (0b11 << 25) | (0b1 << 10) | (0xf << 28);
        let g = GuestState {
            spsr,
            pc: 0x8002,
            vbar: VBAR,
            sctlr: SCTLR_SPAN,
        };
        let d = inject(
            &g,
            Injection::DataAbort {
                far: 0x0b00_0000,
                write: false,
                status: fsc::SYNC_EXTERNAL,
            },
        )
        .unwrap();
        assert_eq!(d.elr_el2, VBAR + 0x600);
        assert_eq!(d.esr_el1, 0x9200_0010, "EC 0x24, IL 1, DFSC 0x10");
        assert_eq!(d.far_el1, Some(0x0b00_0000));
        assert_eq!((d.spsr_el1, d.elr_el1), (spsr, 0x8002));
        assert_eq!(d.spsr_el2, M_EL1H | SPSR_DAIF);
        let i = inject(
            &g,
            Injection::InstructionAbort {
                far: 0x1000_0000,
                status: fsc::SYNC_EXTERNAL,
            },
        )
        .unwrap();
        assert_eq!((i.elr_el2, i.esr_el1), (VBAR + 0x600, 0x8200_0010));
        let u = inject(&g, Injection::Undefined).unwrap();
        assert_eq!(
            (u.elr_el2, u.esr_el1, u.far_el1),
            (VBAR + 0x600, ESR_IL, None)
        );
    }

    #[test]
    fn refuses_impossible_modes() {
        // AArch32 modes other than User would be an AArch32 EL1 (SVC 0x13,
        // IRQ 0x12, ...), which HCR_EL2.RW rules out; EL2h and EL3h.
        for mode in [0b1_0011, 0b1_0010, 0b1_1111, 0b1001, 0b1101] {
            assert_eq!(
                inject(&guest(mode), Injection::Undefined),
                Err(InjectError::BadMode(mode))
            );
        }
    }

    #[test]
    fn vector_address_wraps_instead_of_panicking() {
        let mut g = guest(M_EL0T);
        g.vbar = u64::MAX - 0x100;
        assert!(inject(&g, Injection::Undefined).is_ok());
    }
}
