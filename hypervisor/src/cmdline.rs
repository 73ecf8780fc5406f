//! The hypervisor command line: `/chosen/bootargs`, space-separated
//! `key=value` options. Parsing never fails: an unknown key or a bad value is
//! reported as a warning and the default stays, so a typo cannot stop a board.
//!
//! | option | values | default |
//! |---|---|---|
//! | `log` | `off`, `error`, `warn`, `info`, `debug`, `trace` | `info` |
//! | `selftest` | `panic`, `undef`, `data-abort`, `stack-overflow` (deliberate faults that check the crash reports) | none |

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
    warnings: [Option<Warning<'a>>; MAX_WARNINGS],
    warning_count: usize,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            log_level: crate::console::DEFAULT_LEVEL,
            selftest: None,
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
}
