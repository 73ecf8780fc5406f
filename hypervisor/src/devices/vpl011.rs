//! The guest's UART: an emulated Arm PL011 (PrimeCell UART, Arm DDI 0183G,
//! r1p5) good enough for Linux's `amba-pl011` driver and its earlycon.
//!
//! Transmit only: every byte written to UARTDR goes straight to a
//! [`ByteSink`], so the transmit FIFO is always empty (FR.TXFE=1, TXFF=0,
//! BUSY=0) and the receive FIFO is always empty (FR.RXFE=1, UARTDR reads 0).
//! The control registers hold what the guest writes and read it back; they
//! change nothing, since there is no line to drive.
//!
//! The transmit interrupt follows the PL011's edge-like rule (TRM, "Interrupts",
//! UARTTXINTR): it asserts when the FIFO level passes through the trigger
//! level, which here happens on every write to UARTDR, and stays asserted
//! until UARTICR clears it. [`VPl011::interrupt_pending`] reports UARTMIS
//! for whoever wires the line to a virtual interrupt controller.
//!
//! Accesses: 8-, 16- and 32-bit, naturally aligned, to any register; a
//! narrower access reads or writes the matching byte lanes. A 64-bit or
//! unaligned access answers [`MmioError::BadAccess`] (the bus then reads all
//! ones and drops the write). Reserved offsets read as zero and ignore writes.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::devices::mmio::{is_aligned, Effects, MmioDevice, MmioError, MmioResult, VcpuId};

/// Where transmitted bytes go.
pub trait ByteSink {
    /// One transmitted byte.
    fn put(&mut self, byte: u8);
}

impl<F: FnMut(u8)> ByteSink for F {
    fn put(&mut self, byte: u8) {
        self(byte)
    }
}

/// Size of the register block.
pub const REGION_SIZE: u64 = 0x1000;

/// Register offsets, TRM table 3-1.
pub mod reg {
    /// Data register.
    pub const DR: u64 = 0x000;
    /// Receive status / error clear.
    pub const RSR_ECR: u64 = 0x004;
    /// Flag register.
    pub const FR: u64 = 0x018;
    /// IrDA low-power counter.
    pub const ILPR: u64 = 0x020;
    /// Integer baud rate divisor.
    pub const IBRD: u64 = 0x024;
    /// Fractional baud rate divisor.
    pub const FBRD: u64 = 0x028;
    /// Line control.
    pub const LCR_H: u64 = 0x02C;
    /// Control.
    pub const CR: u64 = 0x030;
    /// Interrupt FIFO level select.
    pub const IFLS: u64 = 0x034;
    /// Interrupt mask set/clear.
    pub const IMSC: u64 = 0x038;
    /// Raw interrupt status.
    pub const RIS: u64 = 0x03C;
    /// Masked interrupt status.
    pub const MIS: u64 = 0x040;
    /// Interrupt clear (write-only).
    pub const ICR: u64 = 0x044;
    /// DMA control.
    pub const DMACR: u64 = 0x048;
    /// UARTPeriphID0; ID registers follow every 4 bytes up to PCellID3 at 0xFFC.
    pub const PERIPH_ID0: u64 = 0xFE0;
}

/// Flag register bits.
pub mod fr {
    /// UART busy transmitting.
    pub const BUSY: u32 = 1 << 3;
    /// Receive FIFO empty.
    pub const RXFE: u32 = 1 << 4;
    /// Transmit FIFO full.
    pub const TXFF: u32 = 1 << 5;
    /// Receive FIFO full.
    pub const RXFF: u32 = 1 << 6;
    /// Transmit FIFO empty.
    pub const TXFE: u32 = 1 << 7;
}

/// Transmit interrupt bit in RIS, MIS, IMSC and ICR.
pub const INT_TX: u16 = 1 << 5;

/// UARTPeriphID0-3 then UARTPCellID0-3: part 0x011, designer 0x41 (Arm),
/// revision 1 (r1p5), and the PrimeCell ID 0xB105F00D. Linux matches the
/// AMBA device by these bytes.
pub const ID_BYTES: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1];

const RESET_CR: u16 = 0x0300; // TXE | RXE
const RESET_IFLS: u8 = 0x12; // both FIFOs at half

const CR_MASK: u16 = 0xFF87; // bits 6:3 are reserved
const IFLS_MASK: u8 = 0x3F;
const INT_MASK: u16 = 0x7FF;
const FBRD_MASK: u8 = 0x3F;
const DMACR_MASK: u8 = 0x7;

/// An emulated PL011 sending its output to `S`.
pub struct VPl011<S> {
    sink: S,
    ibrd: u16,
    fbrd: u8,
    lcr_h: u8,
    cr: u16,
    ifls: u8,
    imsc: u16,
    ris: u16,
    dmacr: u8,
}

impl<S: ByteSink> VPl011<S> {
    /// A UART in its reset state.
    pub const fn new(sink: S) -> Self {
        Self {
            sink,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: RESET_CR,
            ifls: RESET_IFLS,
            imsc: 0,
            ris: 0,
            dmacr: 0,
        }
    }

    /// The output sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The output sink, mutably.
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Whether the UART's combined interrupt (UARTINTR) is asserted: UARTMIS != 0.
    pub fn interrupt_pending(&self) -> bool {
        self.mis() != 0
    }

    fn mis(&self) -> u16 {
        self.ris & self.imsc
    }

    /// The 32-bit register at a word-aligned offset.
    fn read_reg(&self, word: u64) -> u32 {
        match word {
            // The receive FIFO is empty: no data, no errors.
            reg::DR | reg::RSR_ECR => 0,
            reg::FR => fr::TXFE | fr::RXFE,
            reg::IBRD => self.ibrd.into(),
            reg::FBRD => self.fbrd.into(),
            reg::LCR_H => self.lcr_h.into(),
            reg::CR => self.cr.into(),
            reg::IFLS => self.ifls.into(),
            reg::IMSC => self.imsc.into(),
            reg::RIS => self.ris.into(),
            reg::MIS => self.mis().into(),
            reg::DMACR => self.dmacr.into(),
            0xFE0..=0xFFC => {
                let index = (word - reg::PERIPH_ID0) / 4;
                usize::try_from(index)
                    .ok()
                    .and_then(|i| ID_BYTES.get(i))
                    .copied()
                    .unwrap_or(0)
                    .into()
            }
            // ICR is write-only; ILPR (no IrDA) and reserved offsets read as zero.
            _ => 0,
        }
    }

    /// A write of `value` to the byte lanes in `mask` of the register at `word`.
    fn write_reg(&mut self, word: u64, value: u32, mask: u32) {
        let merge = |old: u32| (old & !mask) | (value & mask);
        match word {
            // Only byte lane 0 of DR carries data on a write.
            reg::DR if mask & 0xFF != 0 => {
                self.sink.put(value as u8);
                // The byte left the FIFO at once: the level passed the trigger.
                self.ris |= INT_TX;
            }
            reg::IBRD => self.ibrd = merge(self.ibrd.into()) as u16,
            reg::FBRD => self.fbrd = merge(self.fbrd.into()) as u8 & FBRD_MASK,
            reg::LCR_H => self.lcr_h = merge(self.lcr_h.into()) as u8,
            reg::CR => self.cr = merge(self.cr.into()) as u16 & CR_MASK,
            reg::IFLS => self.ifls = merge(self.ifls.into()) as u8 & IFLS_MASK,
            reg::IMSC => self.imsc = merge(self.imsc.into()) as u16 & INT_MASK,
            reg::ICR => self.ris &= !((value & mask) as u16),
            reg::DMACR => self.dmacr = merge(self.dmacr.into()) as u8 & DMACR_MASK,
            // RSR_ECR (no errors to clear), FR, RIS, MIS, ID registers are
            // read-only here; ILPR and reserved offsets ignore writes.
            _ => {}
        }
    }
}

/// Checks width and alignment; returns the register's word offset, the
/// access's bit shift within it and its lane mask.
fn lanes(offset: u64, size: u8) -> MmioResult<(u64, u32, u32)> {
    let mask: u32 = match size {
        1 => 0xFF,
        2 => 0xFFFF,
        4 => 0xFFFF_FFFF,
        _ => return Err(MmioError::BadAccess),
    };
    if !is_aligned(offset, size) || offset >= REGION_SIZE {
        return Err(MmioError::BadAccess);
    }
    let shift = ((offset & 3) * 8) as u32;
    Ok((offset & !3, shift, mask << shift))
}

impl<S: ByteSink> VPl011<S> {
    /// A load of `size` bytes at `offset` in the UART's frame.
    pub fn read(&mut self, offset: u64, size: u8) -> MmioResult<u64> {
        let (word, shift, mask) = lanes(offset, size)?;
        Ok(u64::from((self.read_reg(word) & mask) >> shift))
    }

    /// A store of the low `size` bytes of `value` at `offset`.
    pub fn write(&mut self, offset: u64, size: u8, value: u64) -> MmioResult<()> {
        let (word, shift, mask) = lanes(offset, size)?;
        self.write_reg(word, (value as u32) << shift, mask);
        Ok(())
    }
}

/// Every vCPU sees the same UART, so the accessing vCPU does not matter.
/// Its interrupt line is not wired to a guest interrupt controller yet.
impl<S: ByteSink> MmioDevice for VPl011<S> {
    fn name(&self) -> &'static str {
        "pl011"
    }

    fn read(&mut self, _: VcpuId, offset: u64, size: u8, _: &mut Effects) -> MmioResult<u64> {
        VPl011::read(self, offset, size)
    }

    fn write(
        &mut self,
        _: VcpuId,
        offset: u64,
        size: u8,
        value: u64,
        _: &mut Effects,
    ) -> MmioResult<()> {
        VPl011::write(self, offset, size, value)
    }
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
    use crate::devices::mmio::{BusAccess, DispatchResult, MmioBus};
    use crate::mm::addr::{Ipa, IpaRange};
    use alloc::boxed::Box;
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use spin::Mutex;

    fn uart() -> VPl011<Vec<u8>> {
        VPl011::new(Vec::new())
    }

    impl ByteSink for Vec<u8> {
        fn put(&mut self, byte: u8) {
            self.push(byte);
        }
    }

    #[test]
    fn id_registers_are_what_linux_matches() {
        let mut u = uart();
        let ids: Vec<u64> = (0..8).map(|i| u.read(0xFE0 + 4 * i, 4).unwrap()).collect();
        assert_eq!(ids, [0x11, 0x10, 0x14, 0x00, 0x0D, 0xF0, 0x05, 0xB1]);
        let periph = ids[..4]
            .iter()
            .enumerate()
            .fold(0, |acc, (i, b)| acc | b << (8 * i));
        assert_eq!(periph & 0x000F_FFFF, 0x0004_1011, "amba-pl011 id and mask");
        let cell = ids[4..]
            .iter()
            .enumerate()
            .fold(0, |acc, (i, b)| acc | b << (8 * i));
        assert_eq!(cell, 0xB105_F00D);
        u.write(0xFE0, 4, 0xFF).unwrap();
        assert_eq!(u.read(0xFE0, 4), Ok(0x11), "ID registers are read-only");
    }

    #[test]
    fn flags_say_transmit_empty_and_receive_empty() {
        let mut u = uart();
        let flags = u.read(reg::FR, 4).unwrap() as u32;
        assert_eq!(
            flags & (fr::TXFE | fr::RXFE | fr::TXFF | fr::BUSY | fr::RXFF),
            fr::TXFE | fr::RXFE
        );
        u.write(reg::FR, 4, 0).unwrap();
        assert_eq!(u.read(reg::FR, 2), Ok(0x90));
        assert_eq!(u.read(reg::DR, 4), Ok(0), "nothing received");
    }

    #[test]
    fn data_register_writes_reach_the_sink() {
        let mut u = uart();
        u.write(reg::DR, 4, 0xFFFF_FF00 | u64::from(b'h')).unwrap();
        u.write(reg::DR, 2, u64::from(b'i')).unwrap();
        u.write(reg::DR, 1, u64::from(b'\n')).unwrap();
        // Byte lanes 1-3 of DR hold no data on a write.
        u.write(reg::DR + 1, 1, u64::from(b'x')).unwrap();
        u.write(reg::DR + 2, 2, u64::from(b'y')).unwrap();
        assert_eq!(u.sink(), b"hi\n");
    }

    #[test]
    fn bad_widths_and_alignment_are_bad_accesses() {
        let mut u = uart();
        assert_eq!(
            u.write(reg::DR, 8, u64::from(b'x')),
            Err(MmioError::BadAccess)
        );
        assert_eq!(u.read(reg::FR, 8), Err(MmioError::BadAccess));
        assert_eq!(u.read(reg::FR + 1, 2), Err(MmioError::BadAccess));
        assert_eq!(u.write(reg::DR + 2, 4, 0), Err(MmioError::BadAccess));
        assert_eq!(u.read(reg::CR, 3), Err(MmioError::BadAccess));
        assert_eq!(u.read(0x1000, 4), Err(MmioError::BadAccess));
        assert_eq!(u.read(u64::MAX - 3, 4), Err(MmioError::BadAccess));
        assert!(u.sink().is_empty());
    }

    #[test]
    fn control_registers_hold_their_implemented_bits() {
        let mut u = uart();
        assert_eq!(u.read(reg::CR, 4), Ok(0x300));
        assert_eq!(u.read(reg::IFLS, 4), Ok(0x12));
        for (r, mask) in [
            (reg::IBRD, 0xFFFF),
            (reg::FBRD, 0x3F),
            (reg::LCR_H, 0xFF),
            (reg::CR, 0xFF87),
            (reg::IFLS, 0x3F),
            (reg::IMSC, 0x7FF),
            (reg::DMACR, 0x7),
        ] {
            u.write(r, 4, 0xFFFF_FFFF).unwrap();
            assert_eq!(u.read(r, 4), Ok(mask), "{r:#x}");
            u.write(r, 4, 0).unwrap();
            assert_eq!(u.read(r, 4), Ok(0), "{r:#x}");
        }
        u.write(reg::IBRD, 4, 0x1A).unwrap();
        u.write(reg::FBRD, 4, 0x03).unwrap();
        u.write(reg::LCR_H, 4, 0x70).unwrap();
        u.write(reg::CR, 4, 0x301).unwrap();
        assert_eq!(
            [reg::IBRD, reg::FBRD, reg::LCR_H, reg::CR].map(|r| u.read(r, 4).unwrap()),
            [0x1A, 0x03, 0x70, 0x301]
        );
    }

    #[test]
    fn narrow_accesses_use_byte_lanes() {
        let mut u = uart();
        u.write(reg::CR, 2, 0x0301).unwrap();
        u.write(reg::CR + 1, 1, 0x01).unwrap(); // TXE off, RXE off, UARTEN kept
        assert_eq!(u.read(reg::CR, 4), Ok(0x101));
        assert_eq!(u.read(reg::CR + 1, 1), Ok(0x01));
        assert_eq!(u.read(reg::CR, 1), Ok(0x01));
        u.write(reg::IBRD + 2, 2, 0xFFFF).unwrap();
        assert_eq!(
            u.read(reg::IBRD, 4),
            Ok(0),
            "bits above the register are dropped"
        );
    }

    #[test]
    fn transmit_interrupt_asserts_after_a_byte_until_cleared() {
        let mut u = uart();
        assert_eq!(u.read(reg::RIS, 4), Ok(0));
        assert!(!u.interrupt_pending());
        u.write(reg::DR, 1, u64::from(b'a')).unwrap();
        assert_eq!(u.read(reg::RIS, 4), Ok(u64::from(INT_TX)));
        assert_eq!(u.read(reg::MIS, 4), Ok(0), "masked");
        assert!(!u.interrupt_pending());
        u.write(reg::IMSC, 4, u64::from(INT_TX)).unwrap();
        assert_eq!(u.read(reg::MIS, 4), Ok(u64::from(INT_TX)));
        assert!(u.interrupt_pending());
        assert_eq!(u.read(reg::ICR, 4), Ok(0), "ICR is write-only");
        u.write(reg::ICR, 4, 0x7FF).unwrap();
        assert_eq!(u.read(reg::RIS, 4), Ok(0));
        assert!(!u.interrupt_pending());
        u.write(reg::RIS, 4, 0x7FF).unwrap();
        u.write(reg::MIS, 4, 0x7FF).unwrap();
        assert_eq!(u.read(reg::RIS, 4), Ok(0), "RIS and MIS are read-only");
    }

    #[test]
    fn reserved_offsets_read_zero_and_ignore_writes() {
        let mut u = uart();
        for off in [reg::RSR_ECR, 0x008, 0x014, reg::ILPR, 0x04C, 0x100, 0xFDC] {
            u.write(off, 4, 0xFFFF_FFFF).unwrap();
            assert_eq!(u.read(off, 4), Ok(0), "{off:#x}");
        }
        assert!(u.sink().is_empty());
    }

    #[test]
    fn through_the_bus() {
        type Shared = Arc<Mutex<Vec<u8>>>;
        struct Out(Shared);
        impl ByteSink for Out {
            fn put(&mut self, byte: u8) {
                self.0.lock().push(byte);
            }
        }
        let out = Shared::default();
        let mut bus = MmioBus::new();
        let base = 0x900_0000;
        bus.register(
            IpaRange::new(Ipa::new(base), REGION_SIZE).unwrap(),
            Box::new(VPl011::new(Out(out.clone()))),
        )
        .unwrap();
        let load = |size| BusAccess {
            size,
            write: false,
            value: 0,
            sign_extend: false,
            sixty_four: false,
        };
        let store = |size, value| BusAccess {
            size,
            write: true,
            value,
            sign_extend: false,
            sixty_four: false,
        };
        // LDRB of FR: earlycon's poll.
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(base + reg::FR),
                load(1),
                &mut Effects::new()
            ),
            DispatchResult::Read(0x90)
        );
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(base),
                store(1, u64::from(b'o')),
                &mut Effects::new()
            ),
            DispatchResult::WriteDone
        );
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(base),
                store(4, u64::from(b'k')),
                &mut Effects::new()
            ),
            DispatchResult::WriteDone
        );
        // A 64-bit store is dropped; a 64-bit load reads all ones.
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(base),
                store(8, u64::from(b'!')),
                &mut Effects::new()
            ),
            DispatchResult::WriteDone
        );
        let wide = BusAccess {
            size: 8,
            write: false,
            value: 0,
            sign_extend: false,
            sixty_four: true,
        };
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(base + reg::FR),
                wide,
                &mut Effects::new()
            ),
            DispatchResult::Read(u64::MAX)
        );
        assert_eq!(*out.lock(), b"ok");
        // LDRSB of PCellID1 (0xF0) into a W register.
        let ldrsb = BusAccess {
            size: 1,
            write: false,
            value: 0,
            sign_extend: true,
            sixty_four: false,
        };
        assert_eq!(
            bus.dispatch(
                VcpuId(0),
                Ipa::new(base + 0xFF4),
                ldrsb,
                &mut Effects::new()
            ),
            DispatchResult::Read(0xFFFF_FFF0)
        );
    }

    #[test]
    fn closures_are_sinks() {
        let mut n = 0;
        {
            let mut u = VPl011::new(|_b: u8| n += 1);
            u.write(reg::DR, 1, 1).unwrap();
            u.write(reg::DR, 1, 2).unwrap();
        }
        assert_eq!(n, 2);
    }

    #[test]
    fn random_accesses_never_panic() {
        let mut u = uart();
        let mut s = 0xDEAD_BEEF_CAFE_F00Du64;
        for _ in 0..100_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let offset = if s & 1 == 0 { (s >> 8) % 0x1004 } else { s };
            let size = [1, 2, 4, 8, 0, 3][(s >> 40) as usize % 6];
            if s & 2 == 0 {
                let _ = u.read(offset, size);
            } else {
                let _ = u.write(offset, size, s.rotate_left(9));
            }
        }
    }
}
