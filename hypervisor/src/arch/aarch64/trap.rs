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
}
