//! Queue pointers: the index and wrap-bit arithmetic shared by the command
//! and event queues (IHI 0070, 3.5 "Command and Event queues").
//!
//! A queue of `2^n` entries has PROD and CONS registers whose bits `[n-1:0]`
//! index an entry and bit `n` is the wrap flag, toggled each time the index
//! passes the end. The queue is empty when both fields match, full when the
//! indexes match and the wrap flags differ. Bit 31 of EVENTQ_PROD is the
//! overflow flag (OVFLG), echoed by software in EVENTQ_CONS.OVACKFLG; bits
//! 30:24 of CMDQ_CONS hold the error of a command that stopped the queue.

/// Largest supported log2 queue size (entries).
pub const MAX_LOG2: u8 = 19;

/// A PROD or CONS value of a queue of `2^log2` entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuePtr {
    log2: u8,
    value: u32,
}

/// EVENTQ_PROD.OVFLG / EVENTQ_CONS.OVACKFLG.
pub const OVERFLOW_FLAG: u32 = 1 << 31;

impl QueuePtr {
    /// The pointer held in `raw` (a PROD or CONS register) for a queue of
    /// `2^log2` entries; bits above the wrap flag are dropped.
    pub fn from_raw(log2: u8, raw: u32) -> Self {
        let log2 = log2.min(MAX_LOG2);
        Self {
            log2,
            value: raw & ((2u32 << log2) - 1),
        }
    }

    /// The entry index.
    pub fn index(self) -> u32 {
        self.value & ((1u32 << self.log2) - 1)
    }

    /// The wrap flag.
    pub fn wrap(self) -> bool {
        self.value & (1u32 << self.log2) != 0
    }

    /// Index and wrap flag, as written to the register.
    pub fn raw(self) -> u32 {
        self.value
    }

    /// The next position, toggling the wrap flag past the last entry.
    #[must_use]
    pub fn next(self) -> Self {
        Self {
            log2: self.log2,
            value: (self.value + 1) & ((2u32 << self.log2) - 1),
        }
    }

    /// Entries in the queue.
    pub fn entries(self) -> u32 {
        1u32 << self.log2
    }
}

/// Whether a queue with these pointers holds nothing.
pub fn is_empty(prod: QueuePtr, cons: QueuePtr) -> bool {
    prod.raw() == cons.raw()
}

/// Whether a queue with these pointers has no free entry.
pub fn is_full(prod: QueuePtr, cons: QueuePtr) -> bool {
    prod.index() == cons.index() && prod.wrap() != cons.wrap()
}

/// Entries between `cons` and `prod`.
pub fn used(prod: QueuePtr, cons: QueuePtr) -> u32 {
    if prod.wrap() == cons.wrap() {
        prod.index().wrapping_sub(cons.index())
    } else {
        prod.entries() - cons.index() + prod.index()
    }
}

/// Whether `cons` has moved past position `pos` that was produced when the
/// producer was at `pos` (so the entry there has been consumed): true when
/// the distance from `cons` to `pos.next()` has wrapped past zero.
pub fn consumed(pos: QueuePtr, cons: QueuePtr) -> bool {
    // The entry at `pos` is consumed once CONS is anywhere in
    // (pos, pos + entries], i.e. the queue between CONS and pos+1 is empty
    // or "behind": measured as how many entries pos+1 is ahead of cons.
    let ahead = used(pos.next(), cons);
    ahead == 0 || ahead > pos.entries()
}

/// CMDQ_CONS.ERR (bits 30:24): why the command at CONS stopped the queue.
pub fn cmdq_error(cons_raw: u32) -> CmdqError {
    match (cons_raw >> 24) & 0x7f {
        0 => CmdqError::None,
        1 => CmdqError::Illegal,
        2 => CmdqError::Abort,
        3 => CmdqError::AtcInvSync,
        n => CmdqError::Other(n as u8),
    }
}

/// CMDQ_CONS.ERR values (IHI 0070, 7.1 "Command queue errors").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdqError {
    /// No error.
    None,
    /// CERROR_ILL: an unknown or malformed command.
    Illegal,
    /// CERROR_ABT: an abort fetching the command.
    Abort,
    /// CERROR_ATC_INV_SYNC.
    AtcInvSync,
    /// Something else.
    Other(u8),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(log2: u8, index: u32, wrap: bool) -> QueuePtr {
        QueuePtr::from_raw(log2, index | (u32::from(wrap) << log2))
    }

    #[test]
    fn next_wraps_and_toggles_the_wrap_flag() {
        let mut q = QueuePtr::from_raw(2, 0);
        for i in 1..=4 {
            q = q.next();
            assert_eq!(q.index(), i % 4);
        }
        assert!(q.wrap());
        for _ in 0..4 {
            q = q.next();
        }
        assert_eq!((q.index(), q.wrap()), (0, false));
    }

    #[test]
    fn empty_and_full() {
        let cons = p(3, 5, false);
        assert!(is_empty(p(3, 5, false), cons));
        assert!(!is_full(p(3, 5, false), cons));
        assert!(is_full(p(3, 5, true), cons));
        assert!(!is_empty(p(3, 5, true), cons));
        assert_eq!(used(p(3, 5, true), cons), 8);
        assert_eq!(used(p(3, 7, false), cons), 2);
        assert_eq!(used(p(3, 1, true), cons), 4);
        // Filling from empty reaches full after exactly 2^log2 entries.
        let mut prod = cons;
        for n in 0..8 {
            assert!(!is_full(prod, cons), "full after {n}");
            prod = prod.next();
        }
        assert!(is_full(prod, cons));
    }

    #[test]
    fn high_bits_and_flags_are_not_part_of_the_pointer() {
        let q = QueuePtr::from_raw(4, OVERFLOW_FLAG | (0x7f << 24) | 0x13);
        assert_eq!((q.index(), q.wrap(), q.raw()), (3, true, 0x13));
        assert_eq!(cmdq_error(1 << 24 | 3), CmdqError::Illegal);
        assert_eq!(cmdq_error(0x12), CmdqError::None);
    }

    #[test]
    fn consumed_tracks_the_position_across_wraps() {
        let pos = p(2, 3, false);
        assert!(!consumed(pos, p(2, 3, false)));
        assert!(!consumed(pos, p(2, 1, false)));
        assert!(consumed(pos, p(2, 0, true)));
        assert!(consumed(pos, p(2, 2, true)));
    }
}
