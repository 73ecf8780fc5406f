//! The hypervisor console: a `log` backend with counter timestamps, the
//! `print!`/`println!` macros, and the line-buffered path for guest output.
//!
//! One global sink, behind a spin lock, receives everything: the PL011 once
//! the platform code knows its base address, or any `fmt::Write` (host tests).
//! Until a sink is set, output is discarded. The panic and exception reporters
//! use [`emergency_print`], which takes the lock even if its holder will never
//! release it (a fault while printing), so the report still comes out.
//!
//! Log lines look like `[12.345678] INFO frame: 2048 frames free`; the
//! timestamp comes from a clock function installed with [`init_logger`] or
//! [`set_clock`] (the arch layer passes a CNTPCT_EL0/CNTFRQ_EL0 reader).

use core::fmt::{self, Write};

use log::{Level, LevelFilter, Log, Metadata, Record};
use spin::Mutex;

use crate::drivers::pl011::Pl011;

/// Returns `(ticks, ticks per second)` of a free-running counter.
pub type ClockFn = fn() -> (u64, u64);

/// The level used when none is given or the given one does not parse.
pub const DEFAULT_LEVEL: LevelFilter = LevelFilter::Info;

/// Longest guest line kept before it is printed anyway.
pub const GUEST_LINE_MAX: usize = 256;

/// Prefix of every line of guest output.
pub const GUEST_PREFIX: &str = "[guest] ";

/// How many times the emergency path retries the lock before breaking it.
const EMERGENCY_LOCK_TRIES: u32 = 1 << 20;

/// Where console output goes.
pub enum Sink {
    /// The hypervisor's own UART.
    Uart(Pl011),
    /// Any writer that lives for the rest of the program.
    Writer(&'static mut (dyn Write + Send)),
}

impl Write for Sink {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match self {
            Self::Uart(uart) => uart.write_str(s),
            Self::Writer(w) => w.write_str(s),
        }
    }
}

struct State {
    sink: Option<Sink>,
    clock: Option<ClockFn>,
}

impl Write for State {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match &mut self.sink {
            Some(sink) => sink.write_str(s),
            None => Ok(()),
        }
    }
}

static CONSOLE: Mutex<State> = Mutex::new(State {
    sink: None,
    clock: None,
});

/// Sends console output to `uart` from now on, replacing any previous sink.
pub fn set_uart(uart: Pl011) {
    CONSOLE.lock().sink = Some(Sink::Uart(uart));
}

/// Sends console output to `writer` from now on, replacing any previous sink.
pub fn set_writer(writer: &'static mut (dyn Write + Send)) {
    CONSOLE.lock().sink = Some(Sink::Writer(writer));
}

/// Removes the sink and returns it; output is discarded until a new one is set.
pub fn take_sink() -> Option<Sink> {
    CONSOLE.lock().sink.take()
}

/// Installs the clock log timestamps are read from.
pub fn set_clock(clock: ClockFn) {
    CONSOLE.lock().clock = Some(clock);
}

/// Installs the console as the `log` backend with `level` as the maximum
/// level, and `clock` (if given) as the timestamp source. Calling it again
/// updates the level and clock; the error says another logger was installed
/// first.
pub fn init_logger(level: LevelFilter, clock: Option<ClockFn>) -> Result<(), log::SetLoggerError> {
    if let Some(clock) = clock {
        set_clock(clock);
    }
    log::set_max_level(level);
    match log::set_logger(&LOGGER) {
        Ok(()) => Ok(()),
        // Already ours: the level and clock above were the update.
        Err(_) if core::ptr::addr_eq(log::logger(), &LOGGER) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Parses a level name: `error`, `warn`, `info`, `debug`, `trace` or `off`,
/// in any case and surrounded by any whitespace.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    let s = s.trim();
    [
        ("off", LevelFilter::Off),
        ("error", LevelFilter::Error),
        ("warn", LevelFilter::Warn),
        ("info", LevelFilter::Info),
        ("debug", LevelFilter::Debug),
        ("trace", LevelFilter::Trace),
    ]
    .into_iter()
    .find_map(|(name, level)| s.eq_ignore_ascii_case(name).then_some(level))
}

/// A counter value converted to seconds and microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp {
    /// Whole seconds.
    pub secs: u64,
    /// Microseconds within the second, 0..=999_999.
    pub micros: u32,
}

impl Timestamp {
    /// `ticks` of a counter running at `freq` Hz; `None` if `freq` is zero
    /// (CNTFRQ_EL0 not programmed by firmware).
    pub const fn from_ticks(ticks: u64, freq: u64) -> Option<Self> {
        if freq == 0 {
            return None;
        }
        // The remainder times 10^6 overflows u64 once the frequency passes
        // ~18 THz; no counter runs that fast, but u128 makes it total.
        let micros = (ticks % freq) as u128 * 1_000_000 / freq as u128;
        Some(Self {
            secs: ticks / freq,
            micros: micros as u32,
        })
    }
}

/// `<seconds>.<6-digit microseconds>`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}", self.secs, self.micros)
    }
}

/// The last `::`-separated component of a module path.
pub fn module_tail(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

/// Writes one log line: `[<secs>.<micros>] <LEVEL> <module-tail>: <message>\n`,
/// with `?` for the timestamp when there is no usable clock.
pub fn format_record(
    out: &mut dyn Write,
    time: Option<(u64, u64)>,
    level: Level,
    module_path: &str,
    args: fmt::Arguments<'_>,
) -> fmt::Result {
    match time.and_then(|(ticks, freq)| Timestamp::from_ticks(ticks, freq)) {
        Some(ts) => write!(out, "[{ts}] ")?,
        None => out.write_str("[?] ")?,
    }
    writeln!(out, "{level} {}: {args}", module_tail(module_path))
}

struct Logger;

static LOGGER: Logger = Logger;

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut state = CONSOLE.lock();
        let time = state.clock.map(|clock| clock());
        let module = record.module_path().unwrap_or(record.target());
        // A console that cannot write has nowhere to report that.
        let _ = format_record(&mut *state, time, record.level(), module, *record.args());
    }

    fn flush(&self) {
        if let Some(Sink::Uart(uart)) = &mut CONSOLE.lock().sink {
            let _ = uart.flush();
        }
    }
}

/// Backend of `print!` and `println!`.
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Releases the console lock whoever holds it.
///
/// # Safety
///
/// The holder of the lock, if any, must never touch the console again: it is
/// this CPU's own interrupted context that will not resume, or a CPU that has
/// stopped. Otherwise two users would write to the sink at once.
pub unsafe fn force_unlock() {
    // SAFETY: the caller guarantees the holder is gone for good.
    unsafe { CONSOLE.force_unlock() }
}

/// Prints `args` even if the console lock is held and never released, for the
/// panic and exception reporters. Waits a bounded time for the lock, then
/// breaks it.
///
/// # Safety
///
/// As for [`force_unlock`]: if the lock is held after the bounded wait, its
/// holder must never touch the console again.
pub unsafe fn emergency_print(args: fmt::Arguments<'_>) {
    for attempt in 0..2 {
        for _ in 0..EMERGENCY_LOCK_TRIES {
            if let Some(mut state) = CONSOLE.try_lock() {
                let _ = state.write_fmt(args);
                return;
            }
            core::hint::spin_loop();
        }
        if attempt == 0 {
            // SAFETY: the caller guarantees a holder that kept the lock this
            // long is never coming back.
            unsafe { CONSOLE.force_unlock() };
        }
    }
    // Someone else took the lock again: give up rather than hang a report.
}

/// Collects guest output bytes into lines and prints each as
/// `[guest] <line>`, so guest text cannot pass for hypervisor output.
///
/// Carriage returns are dropped and bytes other than printable ASCII and tab
/// are shown as `\xNN`: a guest cannot move the cursor, clear the screen or
/// overwrite the prefix. A line longer than [`GUEST_LINE_MAX`] is printed in
/// pieces.
pub struct GuestLineBuffer {
    buf: [u8; GUEST_LINE_MAX],
    len: usize,
}

impl GuestLineBuffer {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            buf: [0; GUEST_LINE_MAX],
            len: 0,
        }
    }

    /// The bytes of the unfinished line.
    pub fn pending(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Adds one byte; a newline, or a byte arriving when the buffer is full,
    /// prints the buffered line to `out`.
    pub fn push(&mut self, byte: u8, out: &mut dyn Write) -> fmt::Result {
        match byte {
            b'\n' => self.emit(out),
            b'\r' => Ok(()),
            _ => {
                // Full: print what we have first, so a line of exactly
                // GUEST_LINE_MAX bytes and its newline still print once.
                let result = if self.len == GUEST_LINE_MAX {
                    self.emit(out)
                } else {
                    Ok(())
                };
                self.buf[self.len] = byte;
                self.len += 1;
                result
            }
        }
    }

    /// Prints the unfinished line, if any (when the guest stops).
    pub fn flush(&mut self, out: &mut dyn Write) -> fmt::Result {
        if self.len == 0 {
            return Ok(());
        }
        self.emit(out)
    }

    fn emit(&mut self, out: &mut dyn Write) -> fmt::Result {
        let line = &self.buf[..self.len];
        self.len = 0;
        out.write_str(GUEST_PREFIX)?;
        let mut start = 0;
        for (i, &b) in line.iter().enumerate() {
            if b == b'\t' || (0x20..0x7f).contains(&b) {
                continue;
            }
            // Everything before `i` is printable ASCII, hence valid UTF-8.
            out.write_str(core::str::from_utf8(&line[start..i]).unwrap_or(""))?;
            write!(out, "\\x{b:02x}")?;
            start = i + 1;
        }
        out.write_str(core::str::from_utf8(&line[start..]).unwrap_or(""))?;
        out.write_char('\n')
    }
}

impl Default for GuestLineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

static GUEST_LINE: Mutex<GuestLineBuffer> = Mutex::new(GuestLineBuffer::new());

/// Takes one byte the guest wrote to its console and prints it as part of a
/// `[guest] ` line once the line is complete.
pub fn guest_write_byte(byte: u8) {
    // Lock order: guest line, then console.
    let mut line = GUEST_LINE.lock();
    let needs_console = matches!(byte, b'\n') || (byte != b'\r' && line.len == GUEST_LINE_MAX);
    if needs_console {
        let _ = line.push(byte, &mut *CONSOLE.lock());
    } else {
        let _ = line.push(byte, &mut NullWriter);
    }
}

/// Prints any unfinished guest line.
pub fn guest_flush() {
    let mut line = GUEST_LINE.lock();
    let _ = line.flush(&mut *CONSOLE.lock());
}

/// Accepts and drops everything; stands in for the console when a push is
/// known not to print, so the console lock is not taken per byte.
struct NullWriter;

impl Write for NullWriter {
    fn write_str(&mut self, _: &str) -> fmt::Result {
        Ok(())
    }
}

/// Prints to the hypervisor console, without a timestamp or newline.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!($($arg)*))
    };
}

/// Prints a line to the hypervisor console, without a timestamp.
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::_print(::core::format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!(
            "{}\n",
            ::core::format_args!($($arg)*)
        ))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::format;
    use alloc::string::String;

    fn ts(ticks: u64, freq: u64) -> String {
        match Timestamp::from_ticks(ticks, freq) {
            Some(t) => format!("{t}"),
            None => String::from("none"),
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(ts(0, 62_500_000), "0.000000");
        assert_eq!(ts(1_500_000, 1_000_000), "1.500000");
        assert_eq!(ts(62_500_000 * 3 + 62, 62_500_000), "3.000000"); // 62 ticks < 1 us
        assert_eq!(ts(62_500_000 * 3 + 63, 62_500_000), "3.000001");
        assert_eq!(ts(24_000_000 - 1, 24_000_000), "0.999999");
        assert_eq!(ts(5, 0), "none");
        // 2^64 - 1 ticks at 24 MHz: 768614336404 s and 564650 us (truncated).
        assert_eq!(ts(u64::MAX, 24_000_000), "768614336404.564650");
        // The remainder times 10^6 overflows u64 here: u128 keeps it exact.
        assert_eq!(ts(u64::MAX, u64::MAX), "1.000000");
        assert_eq!(ts(u64::MAX - 1, u64::MAX), "0.999999");
        assert_eq!(ts(u64::MAX, 1), "18446744073709551615.000000");
    }

    #[test]
    fn levels() {
        assert_eq!(parse_level("error"), Some(LevelFilter::Error));
        assert_eq!(parse_level("warn"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("info"), Some(LevelFilter::Info));
        assert_eq!(parse_level("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("trace"), Some(LevelFilter::Trace));
        assert_eq!(parse_level("off"), Some(LevelFilter::Off));
        assert_eq!(parse_level(" DeBuG\n"), Some(LevelFilter::Debug));
        assert_eq!(parse_level(""), None);
        assert_eq!(parse_level("warning"), None);
        assert_eq!(parse_level("inf"), None);
        assert_eq!(parse_level("info=debug"), None);
        assert_eq!(DEFAULT_LEVEL, LevelFilter::Info);
    }

    #[test]
    fn record_format() {
        let mut out = String::new();
        format_record(
            &mut out,
            Some((1_500_000, 1_000_000)),
            Level::Info,
            "hypervisor::mm::frame",
            format_args!("{} frames free", 2048),
        )
        .unwrap();
        assert_eq!(out, "[1.500000] INFO frame: 2048 frames free\n");
        out.clear();
        format_record(&mut out, None, Level::Warn, "main", format_args!("x")).unwrap();
        assert_eq!(out, "[?] WARN main: x\n");
        out.clear();
        format_record(
            &mut out,
            Some((1, 0)),
            Level::Error,
            "a::b",
            format_args!("y"),
        )
        .unwrap();
        assert_eq!(out, "[?] ERROR b: y\n");
        assert_eq!(module_tail("a::b::c"), "c");
        assert_eq!(module_tail("plain"), "plain");
        assert_eq!(module_tail(""), "");
    }

    fn push_all(buf: &mut GuestLineBuffer, bytes: &[u8], out: &mut String) {
        for &b in bytes {
            buf.push(b, out).unwrap();
        }
    }

    #[test]
    fn guest_lines() {
        let mut buf = GuestLineBuffer::new();
        let mut out = String::new();
        push_all(&mut buf, b"hello\r\nwor", &mut out);
        assert_eq!(out, "[guest] hello\n");
        assert_eq!(buf.pending(), b"wor");
        push_all(&mut buf, b"ld\n\n", &mut out);
        assert_eq!(out, "[guest] hello\n[guest] world\n[guest] \n");
        // A partial line comes out on flush, and only once.
        out.clear();
        push_all(&mut buf, b"login:", &mut out);
        assert_eq!(out, "");
        buf.flush(&mut out).unwrap();
        buf.flush(&mut out).unwrap();
        assert_eq!(out, "[guest] login:\n");
    }

    #[test]
    fn guest_overflow() {
        let mut buf = GuestLineBuffer::new();
        let mut out = String::new();
        let long = [b'a'; GUEST_LINE_MAX + 5];
        push_all(&mut buf, &long, &mut out);
        push_all(&mut buf, b"\n", &mut out);
        let expected = format!(
            "[guest] {}\n[guest] {}\n",
            "a".repeat(GUEST_LINE_MAX),
            "a".repeat(5)
        );
        assert_eq!(out, expected);
        // Exactly a full line plus its newline: one line, no empty one.
        out.clear();
        push_all(&mut buf, &long[..GUEST_LINE_MAX], &mut out);
        push_all(&mut buf, b"\n", &mut out);
        assert_eq!(out, format!("[guest] {}\n", "a".repeat(GUEST_LINE_MAX)));
    }

    #[test]
    fn guest_control_bytes_are_escaped() {
        let mut buf = GuestLineBuffer::new();
        let mut out = String::new();
        push_all(&mut buf, b"\x1b[2J\tok\xff\x7f\rfake\n", &mut out);
        assert_eq!(out, "[guest] \\x1b[2J\tok\\xff\\x7ffake\n");
    }

    static CAPTURED: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

    struct Capture;

    impl Write for Capture {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            CAPTURED.lock().unwrap().push_str(s);
            Ok(())
        }
    }

    fn captured() -> String {
        core::mem::take(&mut *CAPTURED.lock().unwrap())
    }

    /// The only test that touches the global console, so tests running in
    /// parallel cannot interleave their output.
    #[test]
    fn global_console() {
        set_writer(Box::leak(Box::new(Capture)));
        init_logger(LevelFilter::Debug, Some(|| (2_250_000, 1_000_000))).unwrap();
        // A second call updates instead of failing.
        init_logger(LevelFilter::Debug, None).unwrap();

        log::debug!("value {}", 7);
        log::trace!("filtered out");
        assert_eq!(captured(), "[2.250000] DEBUG tests: value 7\n");

        print!("a{}", 1);
        println!("b");
        println!();
        assert_eq!(captured(), "a1b\n\n");

        for &b in b"boot ok\npart" {
            guest_write_byte(b);
        }
        assert_eq!(captured(), "[guest] boot ok\n");
        guest_flush();
        assert_eq!(captured(), "[guest] part\n");

        // A report still prints while the lock is held and never released.
        core::mem::forget(CONSOLE.lock());
        // SAFETY: the guard above was leaked; nothing will use it.
        unsafe { emergency_print(format_args!("panic: {}\n", "oops")) };
        assert_eq!(captured(), "panic: oops\n");
        println!("after");
        assert_eq!(captured(), "after\n");

        assert!(matches!(take_sink(), Some(Sink::Writer(_))));
        println!("dropped");
        assert_eq!(captured(), "");
    }
}
