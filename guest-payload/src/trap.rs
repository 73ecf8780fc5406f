//! The register frame the EL1 vectors save, shared by the assembly (offsets)
//! and the Rust handler.

/// General-purpose registers and exception state at the time of an exception.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    /// x0 to x30.
    pub x: [u64; 31],
    /// ELR_EL1: where the exception returns.
    pub elr: u64,
    /// SPSR_EL1.
    pub spsr: u64,
    /// ESR_EL1.
    pub esr: u64,
    /// FAR_EL1.
    pub far: u64,
    /// SP_EL0, the stack of the interrupted code; written back on return.
    pub sp_el0: u64,
}

/// Size of [`TrapFrame`] on the exception stack (a multiple of 16).
pub const TRAP_FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
/// Offset of `elr` (and of `x30`'s pair partner in the assembly).
pub const TRAP_FRAME_ELR: usize = 31 * 8;

/// Where an exception came from, as the vector table slot says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorKind {
    /// Synchronous exception.
    Synchronous,
    /// IRQ.
    Irq,
    /// FIQ.
    Fiq,
    /// SError.
    SError,
}

/// The source of an exception from the vector slot number (0 to 15): the
/// group (current EL with SP_EL0, current EL with SP_ELx, lower EL AArch64,
/// lower EL AArch32) and the kind.
pub fn vector_slot(slot: u64) -> (u64, VectorKind) {
    let kind = match slot % 4 {
        0 => VectorKind::Synchronous,
        1 => VectorKind::Irq,
        2 => VectorKind::Fiq,
        _ => VectorKind::SError,
    };
    (slot / 4, kind)
}

const _: () = assert!(TRAP_FRAME_SIZE.is_multiple_of(16));
const _: () = assert!(TRAP_FRAME_SIZE == 36 * 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots() {
        assert_eq!(vector_slot(0), (0, VectorKind::Synchronous));
        assert_eq!(vector_slot(5), (1, VectorKind::Irq));
        assert_eq!(vector_slot(7), (1, VectorKind::SError));
        assert_eq!(vector_slot(8), (2, VectorKind::Synchronous));
    }

    #[test]
    fn layout() {
        let frame = TrapFrame::default();
        let base = &frame as *const _ as usize;
        assert_eq!(&frame.elr as *const _ as usize - base, TRAP_FRAME_ELR);
        assert_eq!(&frame.sp_el0 as *const _ as usize - base, 35 * 8);
    }
}
