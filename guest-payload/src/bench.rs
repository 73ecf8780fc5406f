//! The `bench` test's arithmetic and report lines: round trips through the
//! hypervisor timed with the virtual counter, a null loop of the same length
//! subtracted so only the trap, the hypervisor's work and the return remain.
//!
//! Every figure is in ticks of the virtual counter (CNTVCT_EL0). Under QEMU
//! with `-icount shift=0` the counter runs at 1 GHz and advances one tick per
//! executed instruction, so a tick is an instruction; the `calibrate` line
//! checks that on the machine it runs on.

use core::fmt;

/// Round trips per measurement.
pub const ITERATIONS: u64 = 100_000;

/// A measured loop and its null twin: the same instructions with the one
/// under test replaced by a NOP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopTiming {
    /// Iterations of each loop.
    pub iterations: u64,
    /// Counter ticks of the measured loop.
    pub measured: u64,
    /// Counter ticks of the null loop.
    pub null: u64,
}

impl LoopTiming {
    /// Ticks per iteration the measured loop spent beyond the null loop,
    /// divided by `units` (e.g. the instructions the difference stands
    /// for), in hundredths. `None` when the null loop was not faster or
    /// there were no iterations.
    pub fn centi_per_unit(&self, units: u64) -> Option<Centi> {
        let extra = self.measured.checked_sub(self.null)?;
        let div = self.iterations.checked_mul(units).filter(|&d| d != 0)?;
        let centi = u128::from(extra) * 100 / u128::from(div);
        Some(Centi(u64::try_from(centi).unwrap_or(u64::MAX)))
    }

    /// Ticks per round trip, in hundredths.
    pub fn centi_per_op(&self) -> Option<Centi> {
        self.centi_per_unit(1)
    }
}

/// A fixed-point number in hundredths, printed as `12.34`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Centi(pub u64);

impl fmt::Display for Centi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// One `GUEST BENCH` result line:
/// `GUEST BENCH <name> <detail> iterations=N loop_ticks=N null_ticks=N ticks_per_op=X.XX`.
pub struct BenchLine<'a> {
    /// What was measured (`hvc`, `mmio`, `calibrate`).
    pub name: &'a str,
    /// `key=value` words describing the target.
    pub detail: fmt::Arguments<'a>,
    /// The two loops.
    pub timing: LoopTiming,
    /// What the difference per iteration is divided by (1 for a round trip).
    pub units: u64,
}

impl fmt::Display for BenchLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.timing;
        write!(
            f,
            "GUEST BENCH {} {} iterations={} loop_ticks={} null_ticks={} ",
            self.name, self.detail, t.iterations, t.measured, t.null
        )?;
        let key = if self.units == 1 {
            "ticks_per_op"
        } else {
            "ticks_per_unit"
        };
        match t.centi_per_unit(self.units) {
            Some(v) => write!(f, "{key}={v}"),
            None => write!(f, "{key}=invalid"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_op_subtracts_the_null_loop() {
        let t = LoopTiming {
            iterations: 100_000,
            measured: 100_000 * 154 + 12,
            null: 100_000 * 3 + 12,
        };
        assert_eq!(t.centi_per_op(), Some(Centi(15_100)));
        assert_eq!(format!("{}", Centi(15_100)), "151.00");
        assert_eq!(format!("{}", Centi(7)), "0.07");
    }

    #[test]
    fn per_unit_divides() {
        let t = LoopTiming {
            iterations: 1000,
            measured: 4000,
            null: 2000,
        };
        assert_eq!(t.centi_per_unit(2), Some(Centi(100)));
        assert_eq!(t.centi_per_unit(0), None);
    }

    #[test]
    fn slower_null_loop_is_invalid() {
        let t = LoopTiming {
            iterations: 10,
            measured: 5,
            null: 6,
        };
        assert_eq!(t.centi_per_op(), None);
        let line = BenchLine {
            name: "hvc",
            detail: format_args!("call=x"),
            timing: t,
            units: 1,
        };
        assert_eq!(
            format!("{line}"),
            "GUEST BENCH hvc call=x iterations=10 loop_ticks=5 null_ticks=6 ticks_per_op=invalid"
        );
    }

    #[test]
    fn line_format() {
        let line = BenchLine {
            name: "calibrate",
            detail: format_args!("insns=2"),
            timing: LoopTiming {
                iterations: 100,
                measured: 400,
                null: 200,
            },
            units: 2,
        };
        assert_eq!(
            format!("{line}"),
            "GUEST BENCH calibrate insns=2 iterations=100 loop_ticks=400 null_ticks=200 ticks_per_unit=1.00"
        );
    }
}
