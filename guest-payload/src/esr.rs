//! Decoding of what an exception taken to EL1 reports (Arm ARM D24.2.40,
//! "ESR_EL1, Exception Syndrome Register (EL1)").

use core::fmt;

/// Exception classes (ESR_ELx.EC) the guest tells apart.
pub mod ec {
    /// Unknown reason: UNDEFINED instructions, including HVC or SMC where
    /// they are not available.
    pub const UNKNOWN: u8 = 0x00;
    /// HVC executed in AArch64 state.
    pub const HVC64: u8 = 0x16;
    /// SMC executed in AArch64 state.
    pub const SMC64: u8 = 0x17;
    /// Instruction abort from a lower exception level.
    pub const IABT_LOWER: u8 = 0x20;
    /// Instruction abort taken without a change of exception level.
    pub const IABT_CURRENT: u8 = 0x21;
    /// PC alignment fault.
    pub const PC_ALIGNMENT: u8 = 0x22;
    /// Data abort from a lower exception level.
    pub const DABT_LOWER: u8 = 0x24;
    /// Data abort taken without a change of exception level.
    pub const DABT_CURRENT: u8 = 0x25;
    /// SP alignment fault.
    pub const SP_ALIGNMENT: u8 = 0x26;
    /// SError interrupt.
    pub const SERROR: u8 = 0x2f;
    /// BRK instruction in AArch64 state.
    pub const BRK64: u8 = 0x3c;
}

/// ESR_ELx.EC, bits [31:26].
pub fn exception_class(esr: u64) -> u8 {
    ((esr >> 26) & 0x3f) as u8
}

/// ESR_ELx.ISS, bits [24:0].
pub fn iss(esr: u64) -> u32 {
    (esr & 0x1ff_ffff) as u32
}

/// Short name of an exception class, for reports.
pub fn class_name(ec: u8) -> &'static str {
    match ec {
        ec::UNKNOWN => "undefined instruction",
        ec::HVC64 => "hvc",
        ec::SMC64 => "smc",
        ec::IABT_LOWER | ec::IABT_CURRENT => "instruction abort",
        ec::PC_ALIGNMENT => "pc alignment",
        ec::DABT_LOWER | ec::DABT_CURRENT => "data abort",
        ec::SP_ALIGNMENT => "sp alignment",
        ec::SERROR => "serror",
        ec::BRK64 => "brk",
        _ => "other",
    }
}

/// The fault status code of an abort (DFSC or IFSC, ISS bits [5:0]).
pub fn fault_status(esr: u64) -> u8 {
    (esr & 0x3f) as u8
}

/// Describes an abort's fault status code (Arm ARM, ISS encoding for an
/// exception from a Data Abort, DFSC).
pub fn fault_status_name(fsc: u8) -> &'static str {
    match fsc {
        0x00..=0x03 => "address size fault",
        0x04..=0x07 => "translation fault",
        0x09..=0x0b => "access flag fault",
        0x0d..=0x0f => "permission fault",
        0x10 => "synchronous external abort",
        0x14..=0x17 => "external abort on table walk",
        0x21 => "alignment fault",
        0x30 => "tlb conflict",
        _ => "other fault",
    }
}

/// A synchronous exception caught by a probe: the syndrome, the faulting
/// address (meaningful for aborts) and the address of the instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// ESR_EL1.
    pub esr: u64,
    /// FAR_EL1.
    pub far: u64,
    /// ELR_EL1 when the exception was taken.
    pub elr: u64,
}

impl Fault {
    /// The exception class.
    pub fn ec(&self) -> u8 {
        exception_class(self.esr)
    }

    /// A data abort taken to EL1 from EL1 (injected by a hypervisor or raised
    /// by the guest's own translation).
    pub fn is_data_abort(&self) -> bool {
        self.ec() == ec::DABT_CURRENT
    }

    /// An instruction abort taken to EL1 from EL1.
    pub fn is_instruction_abort(&self) -> bool {
        self.ec() == ec::IABT_CURRENT
    }

    /// An UNDEFINED instruction.
    pub fn is_undefined(&self) -> bool {
        self.ec() == ec::UNKNOWN
    }

    /// For aborts: ISS.ISV, the syndrome describes the access.
    pub fn syndrome_valid(&self) -> bool {
        self.is_data_abort() && self.esr & (1 << 24) != 0
    }

    /// For aborts: the fault status code.
    pub fn fault_status(&self) -> u8 {
        fault_status(self.esr)
    }

    /// An alignment fault on a data access.
    pub fn is_alignment_fault(&self) -> bool {
        self.is_data_abort() && self.fault_status() == 0x21
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ec = self.ec();
        write!(
            f,
            "{} ESR_EL1={:#x} FAR={:#x} ELR={:#x}",
            class_name(ec),
            self.esr,
            self.far,
            self.elr
        )?;
        if matches!(ec, ec::DABT_CURRENT | ec::IABT_CURRENT) {
            write!(f, " ({})", fault_status_name(self.fault_status()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_data_abort() {
        // EC 0x25, IL, ISV, synchronous external abort.
        let fault = Fault {
            esr: 0x9600_0010 | (1 << 24),
            far: 0xb00_0000,
            elr: 0x4000_1234,
        };
        assert!(fault.is_data_abort());
        assert!(fault.syndrome_valid());
        assert!(!fault.is_alignment_fault());
        assert_eq!(fault.fault_status(), 0x10);
        let text = format!("{fault}");
        assert!(text.starts_with("data abort ESR_EL1=0x97000010 FAR=0xb000000"));
        assert!(text.ends_with("(synchronous external abort)"));
    }

    #[test]
    fn decodes_other_classes() {
        let undef = Fault {
            esr: 0x0200_0000,
            far: 0,
            elr: 0,
        };
        assert!(undef.is_undefined());
        assert_eq!(
            format!("{undef}"),
            "undefined instruction ESR_EL1=0x2000000 FAR=0x0 ELR=0x0"
        );
        let iabt = Fault {
            esr: 0x8600_000f,
            far: 0,
            elr: 0,
        };
        assert!(iabt.is_instruction_abort());
        assert!(format!("{iabt}").ends_with("(permission fault)"));
        let align = Fault {
            esr: 0x9600_0021,
            far: 1,
            elr: 0,
        };
        assert!(align.is_alignment_fault());
    }

    #[test]
    fn field_extraction() {
        assert_eq!(exception_class(0x5a00_0000), ec::HVC64);
        assert_eq!(iss(0xffff_ffff), 0x1ff_ffff);
    }
}
