//! The hypervisor command line: `/chosen/bootargs`, space-separated
//! `key=value` options. Parsing never fails: an unknown key or a bad value is
//! reported as a warning and the default stays, so a typo cannot stop a board.
//!
//! | option | values | default |
//! |---|---|---|
//! | `log` | `off`, `error`, `warn`, `info`, `debug`, `trace` | `info` |
//! | `selftest` | `panic`, `undef`, `data-abort`, `stack-overflow` (deliberate faults that check the crash reports) | none |
//! | `check` | `attributes`: prove stage-2 attributes with `AT S12E1R/W` instead of running a guest | none |
//! | `guest.mem` | guest RAM size, with an optional `K`, `M` or `G` suffix | `256M` |
//! | `guest.cpus` | vCPUs, 1 to 16, one physical CPU each | every CPU the device tree lists (at most 16) |
//! | `guest.bootargs` | the guest's `/chosen/bootargs` (one token; everything after `--` is appended with spaces) | empty |
//! | `pci.passthrough` | devices to pass through: comma-separated `bb:dd.f` or `vvvv:dddd` | none |
//! | `pci.attr` | per-device BAR policy override `<bdf>:device\|guest-choice\|cacheable`, comma-separated | by BAR type |
//! | `pci.dma` | `allow` or `deny` bus mastering for passed-through devices | `allow` |

use log::LevelFilter;

/// A deliberate fault, to check that crash reports work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    /// A Rust panic: message, location and backtrace.
    Panic,
    /// An undefined instruction at EL2: the decoded ESR report.
    Undef,
    /// A load from an unmapped address at EL2.
    DataAbort,
    /// Unbounded recursion into the main stack's guard page.
    StackOverflow,
}

/// Most warnings kept; later ones are counted but not stored.
pub const MAX_WARNINGS: usize = 8;

/// Something on the command line that was ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warning<'a> {
    /// A key the hypervisor does not know.
    UnknownKey(&'a str),
    /// A known key with a value it cannot take.
    BadValue {
        /// The option.
        key: &'a str,
        /// What was given.
        value: &'a str,
        /// What it accepts.
        expected: &'static str,
    },
}

impl core::fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Warning::UnknownKey(k) => write!(f, "unknown option '{k}' ignored"),
            Warning::BadValue {
                key,
                value,
                expected,
            } => write!(f, "option {key}={value} ignored: expected {expected}"),
        }
    }
}

/// The parsed options; borrows the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options<'a> {
    /// `log=`.
    pub log_level: LevelFilter,
    /// `selftest=`.
    pub selftest: Option<SelfTest>,
    /// `check=attributes`.
    pub check_attributes: bool,
    /// `guest.mem=`, in bytes.
    pub guest_mem: Option<u64>,
    /// `guest.cpus=`: how many vCPUs (1 to 16); each takes one physical CPU.
    pub guest_cpus: Option<usize>,
    /// `guest.bootargs=`.
    pub guest_bootargs: &'a str,
    /// Everything after `--`: more of the guest's command line.
    pub guest_bootargs_tail: &'a str,
    /// `pci.passthrough=`, unparsed (the PCI layer parses and reports it).
    pub pci_passthrough: Option<&'a str>,
    /// `pci.attr=`, unparsed.
    pub pci_attr: Option<&'a str>,
    /// `pci.dma=`, unparsed.
    pub pci_dma: Option<&'a str>,
    warnings: [Option<Warning<'a>>; MAX_WARNINGS],
    warning_count: usize,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            log_level: crate::console::DEFAULT_LEVEL,
            selftest: None,
            check_attributes: false,
            guest_mem: None,
            guest_cpus: None,
            guest_bootargs: "",
            guest_bootargs_tail: "",
            pci_passthrough: None,
            pci_attr: None,
            pci_dma: None,
            warnings: [None; MAX_WARNINGS],
            warning_count: 0,
        }
    }
}

impl<'a> Options<'a> {
    /// Parses a command line. Tokens are separated by ASCII whitespace; a
    /// token without `=` is a key with an empty value.
    pub fn parse(line: &'a str) -> Self {
        let mut opts = Self::default();
        let (line, tail) = match line.split_once(" -- ") {
            Some((head, tail)) => (head, tail.trim()),
            None => match line.trim_end().strip_suffix(" --") {
                Some(head) => (head, ""),
                None => (line, ""),
            },
        };
        opts.guest_bootargs_tail = tail;
        for token in line.split_ascii_whitespace() {
            let (key, value) = token.split_once('=').unwrap_or((token, ""));
            match key {
                "log" => match crate::console::parse_level(value) {
                    Some(level) => opts.log_level = level,
                    None => opts.warn(Warning::BadValue {
                        key,
                        value,
                        expected: "off|error|warn|info|debug|trace",
                    }),
                },
                "selftest" => {
                    let test = match value {
                        "panic" => Some(SelfTest::Panic),
                        "undef" => Some(SelfTest::Undef),
                        "data-abort" => Some(SelfTest::DataAbort),
                        "stack-overflow" => Some(SelfTest::StackOverflow),
                        _ => None,
                    };
                    match test {
                        Some(t) => opts.selftest = Some(t),
                        None => opts.warn(Warning::BadValue {
                            key,
                            value,
                            expected: "panic|undef|data-abort|stack-overflow",
                        }),
                    }
                }
                "check" => match value {
                    "attributes" => opts.check_attributes = true,
                    _ => opts.warn(Warning::BadValue {
                        key,
                        value,
                        expected: "attributes",
                    }),
                },
                "guest.mem" => match parse_size(value) {
                    Some(size) => opts.guest_mem = Some(size),
                    None => opts.warn(Warning::BadValue {
                        key,
                        value,
                        expected: "a size such as 256M or 1G",
                    }),
                },
                "guest.cpus" => match value.parse::<usize>() {
                    Ok(n @ 1..=16) => opts.guest_cpus = Some(n),
                    _ => opts.warn(Warning::BadValue {
                        key,
                        value,
                        expected: "a vCPU count from 1 to 16",
                    }),
                },
                "guest.bootargs" => opts.guest_bootargs = value,
                "pci.passthrough" => opts.pci_passthrough = Some(value),
                "pci.attr" => opts.pci_attr = Some(value),
                "pci.dma" => match value {
                    "allow" | "deny" => opts.pci_dma = Some(value),
                    _ => opts.warn(Warning::BadValue {
                        key,
                        value,
                        expected: "allow|deny",
                    }),
                },
                _ => opts.warn(Warning::UnknownKey(key)),
            }
        }
        opts
    }

    fn warn(&mut self, w: Warning<'a>) {
        if let Some(slot) = self.warnings.get_mut(self.warning_count) {
            *slot = Some(w);
        }
        self.warning_count += 1;
    }

    /// The warnings kept (at most [`MAX_WARNINGS`]).
    pub fn warnings(&self) -> impl Iterator<Item = &Warning<'a>> {
        self.warnings.iter().flatten()
    }

    /// How many warnings there were, including any not kept.
    pub fn warning_count(&self) -> usize {
        self.warning_count
    }
}

/// Parses a size: decimal or `0x` hex, with an optional `K`, `M` or `G`
/// (binary) suffix. `None` on overflow or junk.
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<u64>().ok()?,
    };
    n.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_for_an_empty_line() {
        let o = Options::parse("");
        assert_eq!(o.log_level, LevelFilter::Info);
        assert_eq!(o.selftest, None);
        assert_eq!(o.warning_count(), 0);
    }

    #[test]
    fn parses_known_options() {
        let o = Options::parse("  log=debug\tselftest=stack-overflow ");
        assert_eq!(o.log_level, LevelFilter::Debug);
        assert_eq!(o.selftest, Some(SelfTest::StackOverflow));
    }

    #[test]
    fn bad_values_keep_the_default_and_warn() {
        let o = Options::parse("log=loud selftest=explode bogus console=ttyAMA0");
        assert_eq!(o.log_level, LevelFilter::Info);
        assert_eq!(o.selftest, None);
        let w: Vec<_> = o.warnings().copied().collect();
        assert_eq!(w.len(), 4);
        assert_eq!(
            w[0],
            Warning::BadValue {
                key: "log",
                value: "loud",
                expected: "off|error|warn|info|debug|trace"
            }
        );
        assert_eq!(w[2], Warning::UnknownKey("bogus"));
        assert_eq!(format!("{}", w[3]), "unknown option 'console' ignored");
    }

    #[test]
    fn many_warnings_are_counted_not_stored() {
        let line = "a b c d e f g h i j k";
        let o = Options::parse(line);
        assert_eq!(o.warning_count(), 11);
        assert_eq!(o.warnings().count(), MAX_WARNINGS);
    }

    #[test]
    fn later_options_override_earlier() {
        assert_eq!(
            Options::parse("log=trace log=warn").log_level,
            LevelFilter::Warn
        );
    }

    #[test]
    fn guest_and_pci_options() {
        let o = Options::parse(
            "guest.mem=512M guest.bootargs=test=wc pci.passthrough=00:02.0,1af4:1110 pci.attr=00:02.0:device pci.dma=deny check=attributes -- console=ttyAMA0 quiet",
        );
        assert_eq!(o.guest_mem, Some(512 << 20));
        assert_eq!(o.guest_cpus, None);
        assert_eq!(o.guest_bootargs, "test=wc");
        assert_eq!(o.guest_bootargs_tail, "console=ttyAMA0 quiet");
        assert_eq!(o.pci_passthrough, Some("00:02.0,1af4:1110"));
        assert_eq!(o.pci_attr, Some("00:02.0:device"));
        assert_eq!(o.pci_dma, Some("deny"));
        assert!(o.check_attributes);
        assert_eq!(o.warning_count(), 0);
        assert_eq!(Options::parse("log=debug --").guest_bootargs_tail, "");
    }

    #[test]
    fn guest_cpus_takes_one_to_sixteen() {
        assert_eq!(Options::parse("guest.cpus=1").guest_cpus, Some(1));
        assert_eq!(Options::parse("guest.cpus=16").guest_cpus, Some(16));
        for bad in ["0", "17", "-1", "two", ""] {
            let o = Options::parse_owned_for_test(&alloc::format!("guest.cpus={bad}"));
            assert_eq!(o, (None, 1), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("0x1000"), Some(4096));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("16k"), Some(16 << 10));
        assert_eq!(parse_size("99999999999G"), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("12Q"), None);
    }

    impl Options<'_> {
        fn parse_owned_for_test(line: &str) -> (Option<usize>, usize) {
            let o = Options::parse(line);
            (o.guest_cpus, o.warning_count())
        }
    }
}
