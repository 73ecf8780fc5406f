//! The `pci-hostile` test's pure half: the report line and the checks that
//! need no hardware (the sizing mask, a free place for a BAR).

use core::fmt;

use crate::pci::bar_size;
use crate::platform::Region;

/// What a step of the test saw or expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A value read.
    Value(u64),
    /// A data abort.
    Abort,
    /// An exception other than a data abort, with its ESR.
    Other(u64),
    /// A check that held or not, for multi-part items.
    Holds(bool),
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Value(v) => write!(f, "{v:#x}"),
            Seen::Abort => f.write_str("data-abort"),
            Seen::Other(esr) => write!(f, "exception-esr-{esr:#x}"),
            Seen::Holds(true) => f.write_str("yes"),
            Seen::Holds(false) => f.write_str("no"),
        }
    }
}

/// One report line: `GUEST pci-hostile item <n> <what> -> <observed>
/// expect <expected> ok|FAIL`.
#[derive(Clone, Copy, Debug)]
pub struct Line<'a> {
    /// The hostile-guest item number.
    pub item: u8,
    /// What was done.
    pub what: &'a str,
    /// What was seen.
    pub seen: Seen,
    /// What must be seen.
    pub expect: Seen,
}

impl Line<'_> {
    /// Whether it held.
    pub fn ok(&self) -> bool {
        self.seen == self.expect
    }
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GUEST pci-hostile item {} {} -> {} expect {} {}",
            self.item,
            self.what,
            self.seen,
            self.expect,
            if self.ok() { "ok" } else { "FAIL" }
        )
    }
}

/// Whether a BAR read after writing all ones is a sizing answer: the
/// original type bits (3:0) intact and a power-of-two size of at least a
/// page (`high` for the upper dword of a 64-bit BAR).
pub fn sizing_ok(original_low: u32, low: u32, high: Option<u32>) -> bool {
    let size = bar_size(low, high);
    low & 0xf == original_low & 0xf && size.is_power_of_two() && size >= 0x1000
}

/// The lowest address in `window` aligned to `size` whose `size` bytes
/// overlap none of `taken`.
pub fn free_spot(window: Region, size: u64, taken: &[Region]) -> Option<u64> {
    if !size.is_power_of_two() {
        return None;
    }
    let mut addr = window.base.checked_add(size - 1)? & !(size - 1);
    while addr.checked_add(size)? <= window.end() {
        let r = Region::new(addr, size);
        if !taken.iter().any(|t| t.overlaps(&r)) {
            return Some(addr);
        }
        addr += size;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        let l = Line {
            item: 26,
            what: "BAR0 write with MSE on",
            seen: Seen::Value(0x1000_0000),
            expect: Seen::Value(0x1000_0000),
        };
        assert_eq!(
            l.to_string(),
            "GUEST pci-hostile item 26 BAR0 write with MSE on -> 0x10000000 expect 0x10000000 ok"
        );
        let l = Line {
            seen: Seen::Abort,
            ..l
        };
        assert!(l
            .to_string()
            .ends_with("-> data-abort expect 0x10000000 FAIL"));
    }

    #[test]
    fn sizing() {
        assert!(sizing_ok(0x1000_0000, 0xffff_f000, None));
        assert!(sizing_ok(0x0000_000c, 0xfc00_000c, Some(0xffff_ffff)));
        assert!(!sizing_ok(0x0000_000c, 0xfc00_0000, Some(0xffff_ffff)));
        assert!(!sizing_ok(0x1000_0000, 0xffff_ff00, None));
        assert!(!sizing_ok(0x1000_0000, 0x1000_0000, None));
    }

    #[test]
    fn free_spots() {
        let w = Region::new(0x1000_0000, 0x100_0000);
        assert_eq!(free_spot(w, 0x1000, &[]), Some(0x1000_0000));
        let taken = [Region::new(0x1000_0000, 0x2000)];
        assert_eq!(free_spot(w, 0x1000, &taken), Some(0x1000_2000));
        assert_eq!(free_spot(w, 0x200_0000, &[]), None);
        assert_eq!(free_spot(w, 0x3000, &[]), None);
    }
}
