//! The trap frame the EL2 vectors save, and which vector an exception came through.

/// Registers saved by the EL2 vectors, in the order `entry.rs` stores them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    /// x0 to x30.
    pub x: [u64; 31],
    /// ELR_EL2: where the exception was taken from.
    pub elr: u64,
    /// SPSR_EL2: the interrupted PSTATE.
    pub spsr: u64,
    /// ESR_EL2: the syndrome.
    pub esr: u64,
    /// FAR_EL2: the faulting virtual address, when the exception class sets it.
    pub far: u64,
    /// SP_EL0: the interrupted main stack (or a guest's EL0 stack).
    pub sp_el0: u64,
}

/// Bytes the vectors reserve for a [`TrapFrame`] on the exception stack.
pub const TRAP_FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(TRAP_FRAME_SIZE == 288 && TRAP_FRAME_SIZE.is_multiple_of(16));

/// Which of the sixteen vectors an exception came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorKind {
    /// Where the exception came from.
    pub source: VectorSource,
    /// What kind of exception it is.
    pub kind: ExceptionKind,
}

/// The vector group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorSource {
    /// EL2 running on SP_EL0: hypervisor code on its main stack.
    CurrentSp0,
    /// EL2 running on SP_EL2: a fault inside an exception handler.
    CurrentSpx,
    /// A guest in AArch64.
    LowerAArch64,
    /// A guest in AArch32.
    LowerAArch32,
}

/// The exception type within a vector group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionKind {
    /// Synchronous exception.
    Sync,
    /// IRQ.
    Irq,
    /// FIQ.
    Fiq,
    /// System error.
    SError,
}

impl VectorKind {
    /// Decodes the vector number (0 to 15) the entry stubs pass in.
    pub fn from_index(index: u64) -> Self {
        let source = match (index >> 2) & 3 {
            0 => VectorSource::CurrentSp0,
            1 => VectorSource::CurrentSpx,
            2 => VectorSource::LowerAArch64,
            _ => VectorSource::LowerAArch32,
        };
        let kind = match index & 3 {
            0 => ExceptionKind::Sync,
            1 => ExceptionKind::Irq,
            2 => ExceptionKind::Fiq,
            _ => ExceptionKind::SError,
        };
        Self { source, kind }
    }
}

impl core::fmt::Display for VectorKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let source = match self.source {
            VectorSource::CurrentSp0 => "EL2 (main stack)",
            VectorSource::CurrentSpx => "EL2 (exception stack)",
            VectorSource::LowerAArch64 => "lower EL (AArch64)",
            VectorSource::LowerAArch32 => "lower EL (AArch32)",
        };
        let kind = match self.kind {
            ExceptionKind::Sync => "synchronous exception",
            ExceptionKind::Irq => "IRQ",
            ExceptionKind::Fiq => "FIQ",
            ExceptionKind::SError => "SError",
        };
        write!(f, "{kind} from {source}")
    }
}

/// An EL2 instruction that works on a guest-chosen address and may take an
/// external abort for it: `fault_pc` is the instruction, `resume_pc` where
/// the code carries on, with x0 holding [`FixupAction::x0`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fixup {
    /// The address of the instruction that may fault.
    pub fault_pc: u64,
    /// Where to resume, at or after the end of the window the fault may be
    /// reported in.
    pub resume_pc: u64,
}

/// What the EL2 handler does with an exception a [`Fixup`] covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixupAction {
    /// The new ELR_EL2.
    pub elr: u64,
    /// The value for x0: a PAR_EL1 reporting a failed translation.
    pub x0: u64,
}

/// PAR_EL1 for a translation that ended in an external abort: F = 1, FST =
/// the fault's status code, bit 11 RES1 (Arm ARM D19.2, "PAR_EL1").
pub const fn failed_par(fst: u64) -> u64 {
    (1 << 11) | ((fst & 0x3f) << 1) | 1
}

/// Whether an exception at EL2 is one a fixup covers, and what to do then.
///
/// `AT S12E1R/W` walks the guest's stage-1 tables, which the guest may put
/// in a BAR that stage 2 maps Normal; a device that answers the walk with an
/// error makes the AT take a synchronous external abort at EL2 (EC 0x25,
/// ELR_EL2 at the AT), or, for an asynchronous one, an SError in the window
/// before the resume point. Either becomes a failed translation for the
/// guest. Anything else, at any other address, stays fatal.
pub fn fixup_for(table: &[Fixup], kind: VectorKind, elr: u64, esr: u64) -> Option<FixupAction> {
    if !matches!(
        kind.source,
        VectorSource::CurrentSp0 | VectorSource::CurrentSpx
    ) {
        return None;
    }
    let ec = (esr >> 26) & 0x3f;
    let fixup = table.iter().find(|f| match kind.kind {
        ExceptionKind::Sync => ec == 0x25 && elr == f.fault_pc,
        ExceptionKind::SError => (f.fault_pc..=f.resume_pc).contains(&elr),
        ExceptionKind::Irq | ExceptionKind::Fiq => false,
    })?;
    let fst = match kind.kind {
        // The data abort's DFSC: an external abort on the walk, at a level.
        ExceptionKind::Sync => esr & 0x3f,
        // An SError says nothing about the walk: a synchronous external
        // abort is the closest report.
        _ => 0x10,
    };
    Some(FixupAction {
        elr: fixup.resume_pc,
        x0: failed_par(fst),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_index_decodes_every_entry() {
        for i in 0..16 {
            let v = VectorKind::from_index(i);
            let back = (match v.source {
                VectorSource::CurrentSp0 => 0,
                VectorSource::CurrentSpx => 1,
                VectorSource::LowerAArch64 => 2,
                VectorSource::LowerAArch32 => 3,
            } << 2)
                | match v.kind {
                    ExceptionKind::Sync => 0,
                    ExceptionKind::Irq => 1,
                    ExceptionKind::Fiq => 2,
                    ExceptionKind::SError => 3,
                };
            assert_eq!(back, i);
        }
    }

    #[test]
    fn frame_layout_matches_the_vectors() {
        // entry.rs stores x30 at 240, ELR at 248, SPSR 256, ESR 264, FAR 272, SP_EL0 280.
        assert_eq!(core::mem::offset_of!(TrapFrame, elr), 248);
        assert_eq!(core::mem::offset_of!(TrapFrame, spsr), 256);
        assert_eq!(core::mem::offset_of!(TrapFrame, esr), 264);
        assert_eq!(core::mem::offset_of!(TrapFrame, far), 272);
        assert_eq!(core::mem::offset_of!(TrapFrame, sp_el0), 280);
    }

    #[test]
    fn only_an_abort_at_a_listed_instruction_is_fixed_up() {
        let table = [
            Fixup {
                fault_pc: 0x4020_1000,
                resume_pc: 0x4020_1010,
            },
            Fixup {
                fault_pc: 0x4020_2000,
                resume_pc: 0x4020_2010,
            },
        ];
        let sync_sp0 = VectorKind::from_index(0);
        let sync_spx = VectorKind::from_index(4);
        let serror = VectorKind::from_index(3);
        // Data abort from EL2 (EC 0x25), external abort on walk level 1.
        let dabt = (0x25 << 26) | (1 << 25) | 0x15;
        assert_eq!(
            fixup_for(&table, sync_sp0, 0x4020_2000, dabt),
            Some(FixupAction {
                elr: 0x4020_2010,
                x0: (1 << 11) | (0x15 << 1) | 1,
            })
        );
        assert!(fixup_for(&table, sync_spx, 0x4020_1000, dabt).is_some());
        // The same abort one instruction later, or elsewhere: fatal.
        assert_eq!(fixup_for(&table, sync_sp0, 0x4020_1004, dabt), None);
        assert_eq!(fixup_for(&table, sync_sp0, 0x5000_0000, dabt), None);
        // Other classes at the AT stay fatal (an UNDEF, a PC alignment fault).
        assert_eq!(fixup_for(&table, sync_sp0, 0x4020_1000, 1 << 25), None);
        assert_eq!(fixup_for(&table, sync_sp0, 0x4020_1000, 0x22 << 26), None);
        // An SError anywhere in the window, up to the resume point.
        for elr in [0x4020_1000, 0x4020_1008, 0x4020_1010] {
            assert_eq!(
                fixup_for(&table, serror, elr, 0xbe00_0000).map(|a| (a.elr, a.x0)),
                Some((0x4020_1010, failed_par(0x10)))
            );
        }
        assert_eq!(fixup_for(&table, serror, 0x4020_1014, 0xbe00_0000), None);
        // IRQs, and anything from a guest, are not fixups.
        assert_eq!(
            fixup_for(&table, VectorKind::from_index(1), 0x4020_1000, dabt),
            None
        );
        assert_eq!(
            fixup_for(&table, VectorKind::from_index(8), 0x4020_1000, dabt),
            None
        );
        assert_eq!(failed_par(0x10) & 1, 1, "F set");
    }
}
