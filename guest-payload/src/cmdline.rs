//! The guest's own command line (`/chosen/bootargs`): which test to run.

/// The test the guest runs, chosen with `test=<name>` on its command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestMode {
    /// Print where the guest runs and power off.
    Hello,
    /// Check that aborts are injected for unmapped IPAs and unemulatable MMIO.
    Abort,
    /// Check the answers of the PSCI and SMCCC calls.
    Psci,
    /// Self-test of the fault probes and the stage-1 attribute helpers.
    Probes,
}

impl TestMode {
    /// Every mode, for help text.
    pub const ALL: [TestMode; 4] = [
        TestMode::Hello,
        TestMode::Abort,
        TestMode::Psci,
        TestMode::Probes,
    ];

    /// The name used after `test=`.
    pub fn name(self) -> &'static str {
        match self {
            TestMode::Hello => "hello",
            TestMode::Abort => "abort",
            TestMode::Psci => "psci",
            TestMode::Probes => "probes",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Why a command line was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError<'a> {
    /// `test=` names no known test.
    UnknownTest(&'a str),
}

impl core::fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CmdlineError::UnknownTest(name) => {
                write!(f, "unknown test \"{name}\"; known:")?;
                for mode in TestMode::ALL {
                    write!(f, " {}", mode.name())?;
                }
                Ok(())
            }
        }
    }
}

/// Picks the test from the command line: the last `test=` wins, as with
/// kernel parameters; without one the guest runs `hello`. Other words are
/// ignored so the same command line can carry options for later tests.
pub fn parse(bootargs: &str) -> Result<TestMode, CmdlineError<'_>> {
    let mut mode = TestMode::Hello;
    for word in bootargs.split_ascii_whitespace() {
        if let Some(name) = word.strip_prefix("test=") {
            mode = TestMode::from_name(name).ok_or(CmdlineError::UnknownTest(name))?;
        }
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_hello() {
        assert_eq!(parse(""), Ok(TestMode::Hello));
        assert_eq!(parse("  console=ttyAMA0 "), Ok(TestMode::Hello));
    }

    #[test]
    fn picks_named_test() {
        assert_eq!(parse("test=abort"), Ok(TestMode::Abort));
        assert_eq!(parse("quiet test=psci\n"), Ok(TestMode::Psci));
        assert_eq!(parse("test=hello test=probes"), Ok(TestMode::Probes));
    }

    #[test]
    fn rejects_unknown_test() {
        assert_eq!(parse("test=bogus"), Err(CmdlineError::UnknownTest("bogus")));
        assert_eq!(parse("test="), Err(CmdlineError::UnknownTest("")));
        assert_eq!(
            format!("{}", CmdlineError::UnknownTest("x")),
            "unknown test \"x\"; known: hello abort psci probes"
        );
    }

    #[test]
    fn names_round_trip() {
        for mode in TestMode::ALL {
            assert_eq!(parse(&format!("test={}", mode.name())), Ok(mode));
        }
    }
}
