//! Frame-pointer backtraces. The binaries are built with frame pointers, so
//! x29 heads a chain of frame records `{previous x29, return address}`
//! (AAPCS64 "The Frame Pointer"). The walk reads memory only inside the stack
//! range it is given and stops at the first record that is misaligned,
//! outside that range, or not above the previous one, so a corrupt stack
//! cannot make it fault or loop.

/// Deepest backtrace printed.
pub const MAX_FRAMES: usize = 32;

/// One return address found on the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The return address (the caller's next instruction).
    pub pc: u64,
}

/// Walks the frame-record chain from `fp` inside `[stack_lo, stack_hi)`,
/// reading with `read` (which the caller only gets addresses inside the
/// range). Calls `visit` for each return address, at most [`MAX_FRAMES`].
pub fn walk(
    mut fp: u64,
    stack_lo: u64,
    stack_hi: u64,
    read: impl Fn(u64) -> u64,
    mut visit: impl FnMut(Frame),
) {
    for _ in 0..MAX_FRAMES {
        let inside = fp >= stack_lo && fp.checked_add(16).is_some_and(|end| end <= stack_hi);
        if fp == 0 || !fp.is_multiple_of(16) || !inside {
            return;
        }
        let next = read(fp);
        let lr = read(fp + 8);
        if lr == 0 {
            return;
        }
        visit(Frame { pc: lr });
        if next <= fp {
            return;
        }
        fp = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn stack(records: &[(u64, u64, u64)]) -> HashMap<u64, u64> {
        let mut m = HashMap::new();
        for &(at, next, lr) in records {
            m.insert(at, next);
            m.insert(at + 8, lr);
        }
        m
    }

    fn collect(fp: u64, m: &HashMap<u64, u64>) -> Vec<u64> {
        let mut out = Vec::new();
        walk(
            fp,
            0x1000,
            0x2000,
            |a| {
                assert!(
                    (0x1000..0x2000).contains(&a),
                    "read outside the stack: {a:#x}"
                );
                *m.get(&a).unwrap_or(&0)
            },
            |f| out.push(f.pc),
        );
        out
    }

    #[test]
    fn follows_a_chain_to_its_end() {
        let m = stack(&[
            (0x1100, 0x1200, 0xa),
            (0x1200, 0x1300, 0xb),
            (0x1300, 0, 0xc),
        ]);
        assert_eq!(collect(0x1100, &m), vec![0xa, 0xb, 0xc]);
    }

    #[test]
    fn stops_on_loops_misalignment_and_escapes() {
        let looped = stack(&[(0x1100, 0x1200, 0xa), (0x1200, 0x1100, 0xb)]);
        assert_eq!(collect(0x1100, &looped), vec![0xa, 0xb]);
        let misaligned = stack(&[(0x1100, 0x1208, 0xa)]);
        assert_eq!(collect(0x1100, &misaligned), vec![0xa]);
        let escapes = stack(&[(0x1100, 0x1ff8, 0xa)]);
        assert_eq!(collect(0x1100, &escapes), vec![0xa]);
        assert!(collect(0x0ff0, &escapes).is_empty());
        assert!(collect(!15u64, &escapes).is_empty());
    }

    #[test]
    fn is_bounded() {
        let mut records = Vec::new();
        for i in 0..100u64 {
            let at = 0x1000 + i * 16;
            records.push((at, at + 16, 0x100 + i));
        }
        let m = stack(&records);
        assert_eq!(collect(0x1000, &m).len(), MAX_FRAMES);
    }
}
