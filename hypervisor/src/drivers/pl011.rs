//! PL011 UART driver.
//!
//! Register map and bit names follow the ARM PrimeCell UART (PL011) Technical
//! Reference Manual, ARM DDI 0183, chapter 3 "Programmers Model". The driver
//! only polls: the hypervisor console needs no interrupts, and polling keeps it
//! usable from exception handlers.
//!
//! Every wait is bounded, so a UART that never drains (a wedged device or a
//! wrong base address) makes output fail instead of hanging the hypervisor.

use core::fmt;
use core::ptr::NonNull;

use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! {
    u32,

    /// UARTDR, data register (DDI 0183, 3.3.1).
    pub DR [
        /// Overrun error.
        OE OFFSET(11) NUMBITS(1) [],
        /// Break error.
        BE OFFSET(10) NUMBITS(1) [],
        /// Parity error.
        PE OFFSET(9) NUMBITS(1) [],
        /// Framing error.
        FE OFFSET(8) NUMBITS(1) [],
        /// Received or transmitted character.
        DATA OFFSET(0) NUMBITS(8) [],
    ],

    /// UARTFR, flag register (DDI 0183, 3.3.3).
    pub FR [
        /// Ring indicator.
        RI OFFSET(8) NUMBITS(1) [],
        /// Transmit FIFO empty (with FIFOs off: holding register empty).
        TXFE OFFSET(7) NUMBITS(1) [],
        /// Receive FIFO full.
        RXFF OFFSET(6) NUMBITS(1) [],
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// UART busy transmitting, including the stop bits of the last byte.
        BUSY OFFSET(3) NUMBITS(1) [],
        /// Data carrier detect.
        DCD OFFSET(2) NUMBITS(1) [],
        /// Data set ready.
        DSR OFFSET(1) NUMBITS(1) [],
        /// Clear to send.
        CTS OFFSET(0) NUMBITS(1) [],
    ],

    /// UARTLCR_H, line control register (DDI 0183, 3.3.7).
    pub LCR_H [
        /// Stick parity select.
        SPS OFFSET(7) NUMBITS(1) [],
        /// Word length.
        WLEN OFFSET(5) NUMBITS(2) [
            FiveBit = 0b00,
            SixBit = 0b01,
            SevenBit = 0b10,
            EightBit = 0b11,
        ],
        /// Enable FIFOs.
        FEN OFFSET(4) NUMBITS(1) [],
        /// Two stop bits select.
        STP2 OFFSET(3) NUMBITS(1) [],
        /// Even parity select.
        EPS OFFSET(2) NUMBITS(1) [],
        /// Parity enable.
        PEN OFFSET(1) NUMBITS(1) [],
        /// Send break.
        BRK OFFSET(0) NUMBITS(1) [],
    ],

    /// UARTCR, control register (DDI 0183, 3.3.8).
    pub CR [
        /// CTS hardware flow control enable.
        CTSEN OFFSET(15) NUMBITS(1) [],
        /// RTS hardware flow control enable.
        RTSEN OFFSET(14) NUMBITS(1) [],
        /// Out2 modem status output.
        OUT2 OFFSET(13) NUMBITS(1) [],
        /// Out1 modem status output.
        OUT1 OFFSET(12) NUMBITS(1) [],
        /// Request to send.
        RTS OFFSET(11) NUMBITS(1) [],
        /// Data transmit ready.
        DTR OFFSET(10) NUMBITS(1) [],
        /// Receive enable.
        RXE OFFSET(9) NUMBITS(1) [],
        /// Transmit enable.
        TXE OFFSET(8) NUMBITS(1) [],
        /// Loopback enable.
        LBE OFFSET(7) NUMBITS(1) [],
        /// SIR low-power IrDA mode.
        SIRLP OFFSET(2) NUMBITS(1) [],
        /// SIR enable.
        SIREN OFFSET(1) NUMBITS(1) [],
        /// UART enable.
        UARTEN OFFSET(0) NUMBITS(1) [],
    ],
}

register_structs! {
    /// The PL011 register block (DDI 0183, table 3-1 "UART register summary").
    #[allow(non_snake_case)]
    pub Registers {
        /// UARTDR, data register.
        (0x000 => pub DR: ReadWrite<u32, DR::Register>),
        /// UARTRSR (read) / UARTECR (write), receive status / error clear.
        (0x004 => pub RSR_ECR: ReadWrite<u32>),
        (0x008 => _reserved0),
        /// UARTFR, flag register.
        (0x018 => pub FR: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        /// UARTILPR, IrDA low-power counter register.
        (0x020 => pub ILPR: ReadWrite<u32>),
        /// UARTIBRD, integer baud rate divisor.
        (0x024 => pub IBRD: ReadWrite<u32>),
        /// UARTFBRD, fractional baud rate divisor (6 bits).
        (0x028 => pub FBRD: ReadWrite<u32>),
        /// UARTLCR_H, line control register.
        (0x02c => pub LCR_H: ReadWrite<u32, LCR_H::Register>),
        /// UARTCR, control register.
        (0x030 => pub CR: ReadWrite<u32, CR::Register>),
        /// UARTIFLS, interrupt FIFO level select.
        (0x034 => pub IFLS: ReadWrite<u32>),
        /// UARTIMSC, interrupt mask set/clear.
        (0x038 => pub IMSC: ReadWrite<u32>),
        /// UARTRIS, raw interrupt status.
        (0x03c => pub RIS: ReadOnly<u32>),
        /// UARTMIS, masked interrupt status.
        (0x040 => pub MIS: ReadOnly<u32>),
        /// UARTICR, interrupt clear.
        (0x044 => pub ICR: WriteOnly<u32>),
        /// UARTDMACR, DMA control.
        (0x048 => pub DMACR: ReadWrite<u32>),
        (0x04c => _reserved2),
        /// UARTPeriphID0-3.
        (0xfe0 => pub PeriphID: [ReadOnly<u32>; 4]),
        /// UARTPCellID0-3.
        (0xff0 => pub PCellID: [ReadOnly<u32>; 4]),
        (0x1000 => @END),
    }
}

/// Size of the register block in bytes: what must be mapped at the base.
pub const REGION_SIZE: usize = 0x1000;

/// How many flag register polls a wait may take before giving up. A poll is
/// an uncached device read, so this is tens to hundreds of milliseconds:
/// longer than a full FIFO takes to drain at 115200 baud.
pub const DEFAULT_SPIN_LIMIT: u32 = 1_000_000;

/// UARTCLK assumed when firmware left the divisors at zero: QEMU's `virt`
/// machine and many boards clock the PL011 at 24 MHz.
pub const DEFAULT_UARTCLK_HZ: u32 = 24_000_000;

/// Line rate used when firmware left the divisors at zero.
pub const DEFAULT_BAUD: u32 = 115_200;

/// All interrupt bits of UARTICR, [10:0].
const ALL_INTERRUPTS: u32 = 0x7ff;

/// The UART did not become ready within the spin limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout;

/// IBRD and FBRD for `baud` from a `uartclk` reference (DDI 0183, 3.3.6):
/// BAUDDIV = UARTCLK / (16 * baud), FBRD = round(fraction * 64). `None` when
/// the result does not fit the 16-bit integer divisor or is zero.
pub const fn baud_divisors(uartclk: u32, baud: u32) -> Option<(u16, u8)> {
    if baud == 0 {
        return None;
    }
    // BAUDDIV in 1/64 units is uartclk * 4 / baud; round to nearest.
    let scaled = (uartclk as u64 * 8 / baud as u64).div_ceil(2);
    let ibrd = scaled >> 6;
    if ibrd == 0 || ibrd > 0xffff {
        return None;
    }
    Some((ibrd as u16, (scaled & 0x3f) as u8))
}

/// Feeds the bytes of `s` to `put`, turning each `\n` into `\r\n` as serial
/// terminals expect. Stops at the first error.
fn for_each_crlf_byte<E>(s: &str, mut put: impl FnMut(u8) -> Result<(), E>) -> Result<(), E> {
    for &b in s.as_bytes() {
        if b == b'\n' {
            put(b'\r')?;
        }
        put(b)?;
    }
    Ok(())
}

/// A polled PL011 UART.
pub struct Pl011 {
    regs: NonNull<Registers>,
    spin_limit: u32,
    /// The last wait timed out: later writes do not wait again until the
    /// transmitter is seen ready, so a dead UART costs one timeout, not one
    /// per byte.
    stalled: bool,
}

// SAFETY: `Pl011` is the only user of its registers (the contract of `new`),
// and MMIO registers may be accessed from any CPU, so moving the owner to
// another thread or CPU is sound.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// A driver for the PL011 whose registers are at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be non-null, 4-byte aligned and map [`REGION_SIZE`] bytes
    /// of a PL011's registers (as device memory) for as long as the returned
    /// value exists, and nothing else may access those registers concurrently.
    pub unsafe fn new(base: *mut u8) -> Self {
        Self {
            // SAFETY: the caller guarantees `base` is non-null.
            regs: unsafe { NonNull::new_unchecked(base.cast()) },
            spin_limit: DEFAULT_SPIN_LIMIT,
            stalled: false,
        }
    }

    /// Changes how many polls a wait may take (at least one).
    pub fn set_spin_limit(&mut self, polls: u32) {
        self.spin_limit = polls.max(1);
    }

    /// The registers' base address.
    pub fn base(&self) -> *mut u8 {
        self.regs.as_ptr().cast()
    }

    fn regs(&self) -> &Registers {
        // SAFETY: `new`'s contract: the block is mapped, aligned and ours for
        // the lifetime of `self`; tock-registers only performs volatile accesses.
        unsafe { self.regs.as_ref() }
    }

    /// Makes the UART usable for polled 8N1 output and input with FIFOs on.
    ///
    /// Firmware (or QEMU) usually configured the line already; then the
    /// divisors are kept and, if the line is already 8N1 with FIFOs and the
    /// UART and transmitter are on, nothing is reprogrammed so no output in
    /// flight is disturbed. Divisors are programmed only if IBRD is zero, for
    /// [`DEFAULT_BAUD`] from [`DEFAULT_UARTCLK_HZ`]. Interrupts are masked.
    pub fn init(&mut self) {
        let regs = self.regs();
        regs.IMSC.set(0);
        regs.ICR.set(ALL_INTERRUPTS);

        let lcr = regs.LCR_H.extract();
        let cr = regs.CR.extract();
        let line_ok = lcr.read_as_enum(LCR_H::WLEN) == Some(LCR_H::WLEN::Value::EightBit)
            && lcr.is_set(LCR_H::FEN)
            && !lcr.is_set(LCR_H::PEN)
            && !lcr.is_set(LCR_H::STP2)
            && !lcr.is_set(LCR_H::BRK);
        let enabled = cr.is_set(CR::UARTEN) && cr.is_set(CR::TXE) && !cr.is_set(CR::LBE);
        if line_ok && enabled && regs.IBRD.get() != 0 {
            if !cr.is_set(CR::RXE) {
                regs.CR.modify(CR::RXE::SET);
            }
            return;
        }

        // DDI 0183, 3.3.8: disable the UART, let the transmitter finish,
        // then reprogram LCR_H (which also flushes the FIFOs) and re-enable.
        let _ = self.flush();
        let regs = self.regs();
        regs.CR.modify(CR::UARTEN::CLEAR);
        if regs.IBRD.get() == 0 {
            if let Some((ibrd, fbrd)) = baud_divisors(DEFAULT_UARTCLK_HZ, DEFAULT_BAUD) {
                regs.IBRD.set(u32::from(ibrd));
                regs.FBRD.set(u32::from(fbrd));
            }
        }
        // The LCR_H write also latches IBRD and FBRD (DDI 0183, 3.3.6).
        regs.LCR_H.write(LCR_H::WLEN::EightBit + LCR_H::FEN::SET);
        regs.CR
            .write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET + CR::DTR::SET + CR::RTS::SET);
        self.stalled = false;
    }

    /// Polls until `ready` holds, at most the spin limit times (once after a
    /// previous timeout, until the UART recovers).
    fn wait(&mut self, ready: impl Fn(&Registers) -> bool) -> Result<(), Timeout> {
        let polls = if self.stalled { 1 } else { self.spin_limit };
        for _ in 0..polls {
            if ready(self.regs()) {
                self.stalled = false;
                return Ok(());
            }
            core::hint::spin_loop();
        }
        self.stalled = true;
        Err(Timeout)
    }

    /// Queues one byte for transmission, waiting (bounded) while the transmit
    /// FIFO is full. The byte is dropped on timeout.
    pub fn put_byte(&mut self, byte: u8) -> Result<(), Timeout> {
        self.wait(|r| !r.FR.is_set(FR::TXFF))?;
        self.regs().DR.set(u32::from(byte));
        Ok(())
    }

    /// Waits (bounded) until everything queued has left the transmitter,
    /// stop bits included.
    pub fn flush(&mut self) -> Result<(), Timeout> {
        self.wait(|r| !r.FR.is_set(FR::BUSY))
    }

    /// A received byte, if the receive FIFO holds one. Bytes received with a
    /// framing, parity, break or overrun error are still returned.
    pub fn try_get_byte(&mut self) -> Option<u8> {
        let regs = self.regs();
        if regs.FR.is_set(FR::RXFE) {
            return None;
        }
        Some(regs.DR.read(DR::DATA) as u8)
    }
}

impl fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for_each_crlf_byte(s, |b| self.put_byte(b)).map_err(|Timeout| fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec::Vec;
    use core::fmt::Write;

    /// Zeroed memory standing in for the register block.
    struct FakeRegs(*mut [u32; 1024]);

    impl FakeRegs {
        fn new() -> Self {
            Self(Box::into_raw(Box::new([0u32; 1024])))
        }

        fn uart(&self) -> Pl011 {
            // SAFETY: the block is 4 KiB, aligned, lives until `self` drops,
            // which the tests do only after the driver is gone.
            let mut uart = unsafe { Pl011::new(self.0.cast()) };
            uart.set_spin_limit(1000);
            uart
        }

        fn get(&self, offset: usize) -> u32 {
            // SAFETY: in bounds of the live allocation; volatile like the driver.
            unsafe { self.0.cast::<u32>().add(offset / 4).read_volatile() }
        }

        fn set(&self, offset: usize, value: u32) {
            // SAFETY: as for `get`.
            unsafe { self.0.cast::<u32>().add(offset / 4).write_volatile(value) }
        }
    }

    impl Drop for FakeRegs {
        fn drop(&mut self) {
            // SAFETY: allocated by `Box::into_raw` in `new`, freed once.
            drop(unsafe { Box::from_raw(self.0) });
        }
    }

    const DR_OFF: usize = 0x000;
    const FR_OFF: usize = 0x018;
    const IBRD_OFF: usize = 0x024;
    const FBRD_OFF: usize = 0x028;
    const LCR_H_OFF: usize = 0x02c;
    const CR_OFF: usize = 0x030;
    const IMSC_OFF: usize = 0x038;
    const ICR_OFF: usize = 0x044;

    #[test]
    fn register_offsets_match_the_trm() {
        use core::mem::{offset_of, size_of};
        assert_eq!(offset_of!(Registers, DR), 0x000);
        assert_eq!(offset_of!(Registers, RSR_ECR), 0x004);
        assert_eq!(offset_of!(Registers, FR), 0x018);
        assert_eq!(offset_of!(Registers, ILPR), 0x020);
        assert_eq!(offset_of!(Registers, IBRD), 0x024);
        assert_eq!(offset_of!(Registers, FBRD), 0x028);
        assert_eq!(offset_of!(Registers, LCR_H), 0x02c);
        assert_eq!(offset_of!(Registers, CR), 0x030);
        assert_eq!(offset_of!(Registers, IFLS), 0x034);
        assert_eq!(offset_of!(Registers, IMSC), 0x038);
        assert_eq!(offset_of!(Registers, RIS), 0x03c);
        assert_eq!(offset_of!(Registers, MIS), 0x040);
        assert_eq!(offset_of!(Registers, ICR), 0x044);
        assert_eq!(offset_of!(Registers, DMACR), 0x048);
        assert_eq!(offset_of!(Registers, PeriphID), 0xfe0);
        assert_eq!(offset_of!(Registers, PCellID), 0xff0);
        assert_eq!(size_of::<Registers>(), REGION_SIZE);
    }

    #[test]
    fn put_byte_writes_dr() {
        let fake = FakeRegs::new();
        let mut uart = fake.uart();
        uart.put_byte(b'A').unwrap();
        assert_eq!(fake.get(DR_OFF), u32::from(b'A'));
        write!(uart, "xyz").unwrap();
        assert_eq!(fake.get(DR_OFF), u32::from(b'z'));
    }

    #[test]
    fn newline_becomes_crlf() {
        let mut out = Vec::new();
        for_each_crlf_byte("a\nb\n\n", |b| {
            out.push(b);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(out, b"a\r\nb\r\n\r\n");
        // The error stops the stream.
        let mut n = 0;
        assert_eq!(
            for_each_crlf_byte("abc", |_| {
                n += 1;
                if n == 2 {
                    Err(())
                } else {
                    Ok(())
                }
            }),
            Err(())
        );
        assert_eq!(n, 2);
    }

    #[test]
    fn full_fifo_times_out_instead_of_hanging() {
        let fake = FakeRegs::new();
        fake.set(FR_OFF, 1 << 5); // TXFF stuck
        let mut uart = fake.uart();
        assert_eq!(uart.put_byte(b'X'), Err(Timeout));
        assert_eq!(
            fake.get(DR_OFF),
            0,
            "nothing written while the FIFO is full"
        );
        assert!(write!(uart, "hello").is_err());
        // Once the FIFO drains, output resumes.
        fake.set(FR_OFF, 0);
        uart.put_byte(b'Y').unwrap();
        assert_eq!(fake.get(DR_OFF), u32::from(b'Y'));
    }

    #[test]
    fn flush_waits_for_busy_bounded() {
        let fake = FakeRegs::new();
        fake.set(FR_OFF, 1 << 3); // BUSY stuck
        let mut uart = fake.uart();
        assert_eq!(uart.flush(), Err(Timeout));
        fake.set(FR_OFF, 0);
        assert_eq!(uart.flush(), Ok(()));
    }

    #[test]
    fn init_programs_an_unconfigured_uart() {
        let fake = FakeRegs::new();
        fake.set(IMSC_OFF, 0x7ff);
        let mut uart = fake.uart();
        uart.init();
        assert_eq!(fake.get(IBRD_OFF), 13);
        assert_eq!(fake.get(FBRD_OFF), 1);
        assert_eq!(
            fake.get(LCR_H_OFF),
            0b111_0000,
            "8 bits, FIFOs on, no parity"
        );
        let cr = fake.get(CR_OFF);
        assert_eq!(cr & 0x301, 0x301, "UARTEN, TXE and RXE set");
        assert_eq!(cr & (1 << 7), 0, "no loopback");
        assert_eq!(fake.get(IMSC_OFF), 0);
        assert_eq!(fake.get(ICR_OFF), 0x7ff);
    }

    #[test]
    fn init_keeps_firmware_divisors() {
        let fake = FakeRegs::new();
        fake.set(IBRD_OFF, 1);
        fake.set(FBRD_OFF, 40);
        fake.set(LCR_H_OFF, 0b110_0010); // 8 bits but parity on, FIFOs off
        let mut uart = fake.uart();
        uart.init();
        assert_eq!(fake.get(IBRD_OFF), 1);
        assert_eq!(fake.get(FBRD_OFF), 40);
        assert_eq!(fake.get(LCR_H_OFF), 0b111_0000);
        assert_eq!(fake.get(CR_OFF) & 0x301, 0x301);
    }

    #[test]
    fn init_leaves_a_ready_uart_alone() {
        let fake = FakeRegs::new();
        fake.set(IBRD_OFF, 13);
        fake.set(FBRD_OFF, 1);
        fake.set(LCR_H_OFF, 0b111_0000);
        fake.set(CR_OFF, 0x101); // UARTEN + TXE, receiver off
        fake.set(FR_OFF, 1 << 3); // busy sending: must not wait or disable
        let mut uart = fake.uart();
        uart.init();
        assert_eq!(fake.get(CR_OFF), 0x301, "only RXE added");
        assert_eq!(fake.get(LCR_H_OFF), 0b111_0000);
    }

    #[test]
    fn receive() {
        let fake = FakeRegs::new();
        fake.set(FR_OFF, 1 << 4); // RXFE
        let mut uart = fake.uart();
        assert_eq!(uart.try_get_byte(), None);
        fake.set(FR_OFF, 0);
        fake.set(DR_OFF, 0x100 | u32::from(b'q')); // with a framing error
        assert_eq!(uart.try_get_byte(), Some(b'q'));
    }

    #[test]
    fn divisors() {
        assert_eq!(baud_divisors(24_000_000, 115_200), Some((13, 1)));
        // DDI 0183, 3.3.6 example: 4 MHz at 230400 -> 1.085 -> IBRD 1, FBRD 5.
        assert_eq!(baud_divisors(4_000_000, 230_400), Some((1, 5)));
        assert_eq!(baud_divisors(24_000_000, 0), None);
        assert_eq!(baud_divisors(1_000, 115_200), None);
        assert_eq!(baud_divisors(u32::MAX, 1), None);
    }
}
