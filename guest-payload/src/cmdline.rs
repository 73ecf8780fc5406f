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
    /// Write-combine benchmark: every memory BAR under each memory type,
    /// with the effective type checked against the stage-2 policy.
    Wc,
    /// Round trips through the hypervisor (HVC, emulated MMIO load) timed
    /// with the virtual counter.
    Bench,
}

impl TestMode {
    /// Every mode, for help text.
    pub const ALL: [TestMode; 6] = [
        TestMode::Hello,
        TestMode::Abort,
        TestMode::Psci,
        TestMode::Probes,
        TestMode::Wc,
        TestMode::Bench,
    ];

    /// The name used after `test=`.
    pub fn name(self) -> &'static str {
        match self {
            TestMode::Hello => "hello",
            TestMode::Abort => "abort",
            TestMode::Psci => "psci",
            TestMode::Probes => "probes",
            TestMode::Wc => "wc",
            TestMode::Bench => "bench",
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
/// kernel parameters; without one the guest runs `wc`, the benchmark it
/// exists for. Other words are ignored so the same command line can carry
/// options for the tests.
pub fn parse(bootargs: &str) -> Result<TestMode, CmdlineError<'_>> {
    let mut mode = TestMode::Wc;
    for word in bootargs.split_ascii_whitespace() {
        if let Some(name) = word.strip_prefix("test=") {
            mode = TestMode::from_name(name).ok_or(CmdlineError::UnknownTest(name))?;
        }
    }
    Ok(mode)
}

/// Which memory BARs the `wc` test writes to (`wc-bars=` on the command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WcBars {
    /// `wc-bars=memory`, the default: prefetchable BARs of functions whose
    /// class says the BAR is memory (display, memory controller, processing
    /// accelerator). Register BARs are left alone: stores to them have side
    /// effects (a NIC's registers can start DMA), and they do not read back.
    Memory,
    /// `wc-bars=all`: every memory BAR of at least 4 KiB, for a device the
    /// user knows to be safe.
    All,
}

/// Reads `wc-bars=`; the last one wins, unknown values keep the default.
pub fn wc_bars(bootargs: &str) -> WcBars {
    let mut bars = WcBars::Memory;
    for word in bootargs.split_ascii_whitespace() {
        match word.strip_prefix("wc-bars=") {
            Some("all") => bars = WcBars::All,
            Some("memory") => bars = WcBars::Memory,
            _ => {}
        }
    }
    bars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_wc() {
        assert_eq!(parse(""), Ok(TestMode::Wc));
        assert_eq!(parse("  console=ttyAMA0 "), Ok(TestMode::Wc));
    }

    #[test]
    fn wc_bars_option() {
        assert_eq!(wc_bars(""), WcBars::Memory);
        assert_eq!(wc_bars("test=wc wc-bars=all"), WcBars::All);
        assert_eq!(wc_bars("wc-bars=all wc-bars=memory"), WcBars::Memory);
        assert_eq!(wc_bars("wc-bars=bogus"), WcBars::Memory);
    }

    #[test]
    fn picks_named_test() {
        assert_eq!(parse("test=abort"), Ok(TestMode::Abort));
        assert_eq!(parse("quiet test=psci\n"), Ok(TestMode::Psci));
        assert_eq!(parse("test=hello test=probes"), Ok(TestMode::Probes));
        assert_eq!(parse("test=wc"), Ok(TestMode::Wc));
        assert_eq!(parse("test=hello"), Ok(TestMode::Hello));
        assert_eq!(parse("test=bench"), Ok(TestMode::Bench));
    }

    #[test]
    fn rejects_unknown_test() {
        assert_eq!(parse("test=bogus"), Err(CmdlineError::UnknownTest("bogus")));
        assert_eq!(parse("test="), Err(CmdlineError::UnknownTest("")));
        assert_eq!(
            format!("{}", CmdlineError::UnknownTest("x")),
            "unknown test \"x\"; known: hello abort psci probes wc bench"
        );
    }

    #[test]
    fn names_round_trip() {
        for mode in TestMode::ALL {
            assert_eq!(parse(&format!("test={}", mode.name())), Ok(mode));
        }
    }
}
