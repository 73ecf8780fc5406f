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
    /// A seeded stream of random hostile actions (`seed=`, `actions=`),
    /// each recovered from, then checks that the hypervisor survived.
    Chaos,
    /// The hostile configuration-space accesses, one report line each.
    PciHostile,
    /// Round trips through the hypervisor (HVC, emulated MMIO load) timed
    /// with the virtual counter.
    Bench,
    /// Every 2 MiB block of RAM the guest was not loaded into reads as
    /// zero, and what the first touch of each costs.
    RamZero,
    /// The hostile exit-path probes (`probe=` picks a group).
    ExitHostile,
    /// Checks where the guest was loaded (the Image header's text_offset,
    /// or the start of RAM for a flat binary) and that its code arrived
    /// whole (`image-sum=<bytes>:<FNV-1a>`, computed from the file).
    Image,
}

impl TestMode {
    /// Every mode, for help text.
    pub const ALL: [TestMode; 11] = [
        TestMode::Hello,
        TestMode::Abort,
        TestMode::Psci,
        TestMode::Probes,
        TestMode::Wc,
        TestMode::Chaos,
        TestMode::PciHostile,
        TestMode::Bench,
        TestMode::RamZero,
        TestMode::ExitHostile,
        TestMode::Image,
    ];

    /// The name used after `test=`.
    pub fn name(self) -> &'static str {
        match self {
            TestMode::Hello => "hello",
            TestMode::Abort => "abort",
            TestMode::Psci => "psci",
            TestMode::Probes => "probes",
            TestMode::Wc => "wc",
            TestMode::Chaos => "chaos",
            TestMode::PciHostile => "pci-hostile",
            TestMode::Bench => "bench",
            TestMode::RamZero => "ramzero",
            TestMode::ExitHostile => "exit-hostile",
            TestMode::Image => "image",
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

/// Options of the `chaos` test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChaosOptions {
    /// `seed=<n>`: the generator's seed (default 1).
    pub seed: u64,
    /// `actions=<n>`: how many actions (default 100000).
    pub actions: u64,
}

impl Default for ChaosOptions {
    fn default() -> Self {
        ChaosOptions {
            seed: 1,
            actions: 100_000,
        }
    }
}

/// A number in decimal or, with `0x`, hex.
fn number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Reads `seed=` and `actions=`; the last of each wins, values that are not
/// numbers keep the default.
pub fn chaos_options(bootargs: &str) -> ChaosOptions {
    let mut opts = ChaosOptions::default();
    for word in bootargs.split_ascii_whitespace() {
        if let Some(n) = word.strip_prefix("seed=").and_then(number) {
            opts.seed = n;
        } else if let Some(n) = word.strip_prefix("actions=").and_then(number) {
            opts.actions = n;
        }
    }
    opts
}

/// `probe=<group>` of the `exit-hostile` test; the last one wins, `all`
/// without one.
pub fn exit_probe(bootargs: &str) -> &str {
    bootargs
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("probe="))
        .next_back()
        .unwrap_or("all")
}

/// `image-sum=<bytes>:<sum>` (numbers in decimal or 0x hex): how many bytes
/// from the start of the image file were summed, and their FNV-1a 64.
pub fn image_sum(bootargs: &str) -> Option<(u64, u64)> {
    let word = bootargs
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("image-sum="))
        .next_back()?;
    let (len, sum) = word.split_once(':')?;
    Some((number(len)?, number(sum)?))
}

/// FNV-1a, 64 bits (the `image` test's checksum; `scripts/lib/scenario.sh`
/// computes the same over the file).
pub fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `dma=deny`: the guest is told the hypervisor runs with `pci.dma=deny`,
/// so Bus Master Enable must not stick.
pub fn dma_denied(bootargs: &str) -> bool {
    let mut denied = false;
    for word in bootargs.split_ascii_whitespace() {
        match word.strip_prefix("dma=") {
            Some("deny") => denied = true,
            Some("allow") => denied = false,
            _ => {}
        }
    }
    denied
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
        assert_eq!(parse("test=ramzero"), Ok(TestMode::RamZero));
        assert_eq!(parse("test=exit-hostile"), Ok(TestMode::ExitHostile));
        assert_eq!(exit_probe("test=exit-hostile probe=ras"), "ras");
        assert_eq!(exit_probe("test=exit-hostile"), "all");
        assert_eq!(parse("test=image"), Ok(TestMode::Image));
        assert_eq!(
            image_sum("test=image image-sum=0x1f000:0xdead"),
            Some((0x1f000, 0xdead))
        );
        assert_eq!(image_sum("image-sum=12"), None);
        assert_eq!(image_sum("test=image"), None);
        // The published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(*b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn rejects_unknown_test() {
        assert_eq!(parse("test=bogus"), Err(CmdlineError::UnknownTest("bogus")));
        assert_eq!(parse("test="), Err(CmdlineError::UnknownTest("")));
        assert_eq!(
            format!("{}", CmdlineError::UnknownTest("x")),
            "unknown test \"x\"; known: hello abort psci probes wc chaos pci-hostile bench ramzero exit-hostile image"
        );
    }

    #[test]
    fn chaos_and_hostile_options() {
        assert_eq!(parse("test=chaos seed=5"), Ok(TestMode::Chaos));
        assert_eq!(parse("test=pci-hostile"), Ok(TestMode::PciHostile));
        assert_eq!(chaos_options("test=chaos"), ChaosOptions::default());
        assert_eq!(
            chaos_options("test=chaos seed=0x10 actions=5 seed=bogus"),
            ChaosOptions {
                seed: 16,
                actions: 5
            }
        );
        assert!(!dma_denied("test=pci-hostile"));
        assert!(dma_denied("test=pci-hostile dma=deny"));
        assert!(!dma_denied("dma=deny dma=allow"));
    }

    #[test]
    fn names_round_trip() {
        for mode in TestMode::ALL {
            assert_eq!(parse(&format!("test={}", mode.name())), Ok(mode));
        }
    }
}
