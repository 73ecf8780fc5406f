//! A guest that can only take the same exception again and again.
//!
//! An exception injected while VBAR_EL1 is still 0 (before the guest set up
//! its vectors) sends it to an address near 0, where this layout maps
//! nothing: the fetch aborts, that abort is injected at the same vector, and
//! so on forever, with nothing printed. [`LockupWatch`] sees the same
//! exception (same PC, same syndrome) injected repeatedly with no vectors
//! and has the VM stopped with a report naming the exception that started
//! it, its PC and its ESR.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

/// Injections of the same exception with no vectors before the VM is stopped.
pub const REPEATS: u32 = 3;

/// One exit that led to an injection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Taken {
    /// The guest PC at the exit (ELR_EL2).
    pub pc: u64,
    /// ESR_EL2 of the exit.
    pub esr: u64,
}

/// Why the VM is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lockup {
    /// The first exception injected with VBAR_EL1 = 0: the cause.
    pub first: Taken,
    /// The exception that repeats.
    pub repeating: Taken,
    /// How many times in a row it was taken.
    pub times: u32,
}

impl core::fmt::Display for Lockup {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "the guest has no exception vectors (VBAR_EL1 = 0): it took an exception at pc {:#x} \
             (ESR_EL2 {:#x}), then the same exception at pc {:#x} (ESR_EL2 {:#x}) {} times in a row",
            self.first.pc, self.first.esr, self.repeating.pc, self.repeating.esr, self.times
        )
    }
}

/// Watches the injections of one vcpu.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockupWatch {
    first: Option<Taken>,
    last: Taken,
    times: u32,
}

impl LockupWatch {
    /// Called before an exception is injected for the exit `taken`, with the
    /// guest's VBAR_EL1. `Some` when the guest is looping and must be stopped.
    pub fn before_injection(&mut self, vbar: u64, taken: Taken) -> Option<Lockup> {
        if vbar != 0 {
            *self = Self::default();
            return None;
        }
        let Some(first) = self.first else {
            *self = Self {
                first: Some(taken),
                last: taken,
                times: 1,
            };
            return None;
        };
        if taken == self.last {
            self.times = self.times.saturating_add(1);
        } else {
            self.last = taken;
            self.times = 1;
        }
        (self.times >= REPEATS).then_some(Lockup {
            first,
            repeating: taken,
            times: self.times,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const UNDEF_MDSCR: Taken = Taken {
        pc: 0x4020_0040,
        esr: 0x6230_0844,
    };
    const IABT_AT_0X200: Taken = Taken {
        pc: 0x200,
        esr: 0x8200_0006,
    };

    #[test]
    fn the_same_exception_with_no_vectors_stops_with_the_first_cause() {
        let mut w = LockupWatch::default();
        assert_eq!(w.before_injection(0, UNDEF_MDSCR), None);
        assert_eq!(w.before_injection(0, IABT_AT_0X200), None);
        assert_eq!(w.before_injection(0, IABT_AT_0X200), None);
        let l = w.before_injection(0, IABT_AT_0X200).unwrap();
        assert_eq!(l.first, UNDEF_MDSCR);
        assert_eq!(l.repeating, IABT_AT_0X200);
        assert_eq!(l.times, REPEATS);
        let text = l.to_string();
        assert!(
            text.contains("pc 0x40200040 (ESR_EL2 0x62300844)"),
            "{text}"
        );
        assert!(
            text.contains("pc 0x200 (ESR_EL2 0x82000006) 3 times"),
            "{text}"
        );
    }

    #[test]
    fn guests_with_vectors_or_changing_exceptions_are_left_alone() {
        let mut w = LockupWatch::default();
        for _ in 0..100 {
            assert_eq!(w.before_injection(0x4000_0800, IABT_AT_0X200), None);
        }
        for i in 0..100 {
            let t = Taken {
                pc: 0x4000_0000 + 4 * i,
                esr: 0x0200_0000,
            };
            assert_eq!(w.before_injection(0, t), None);
        }
        // Setting VBAR_EL1 forgets what came before.
        w.before_injection(0x4000_0800, UNDEF_MDSCR);
        assert_eq!(w.before_injection(0, IABT_AT_0X200), None);
        assert_eq!(w.before_injection(0, IABT_AT_0X200), None);
        assert!(w.before_injection(0, IABT_AT_0X200).is_some());
    }
}
