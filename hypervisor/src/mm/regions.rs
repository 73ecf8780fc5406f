//! Region arithmetic over physical memory, without the heap.
//!
//! The boot path needs set operations on physical ranges (the DT's memory
//! minus the hypervisor image, the DT itself, the initrd and the firmware's
//! reservations) before any allocator exists, so a [`RegionList`] is a sorted,
//! fixed-capacity array of disjoint [`PhysRange`]s. Every operation that could
//! need more room than the list has fails with an error and leaves the list
//! unchanged; nothing here panics or wraps past the top of the address space.

use core::fmt;

use super::addr::{PhysAddr, PhysRange, PAGE_SIZE};

/// Capacity of a [`RegionList`] unless a user picks another.
pub const DEFAULT_CAPACITY: usize = 64;

/// Why a region operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// `new` shares bytes with `existing`, which is already in the list.
    Overlap {
        /// The range being inserted.
        new: PhysRange,
        /// The range in the list it collides with.
        existing: PhysRange,
    },
    /// The list has no room for another range.
    Full {
        /// The list's capacity.
        capacity: usize,
    },
    /// Two carve-outs claim the same bytes.
    CarveOutOverlap {
        /// Name of the later carve-out.
        name: &'static str,
        /// Its range.
        range: PhysRange,
        /// Name of the earlier carve-out it collides with.
        other: &'static str,
        /// That one's range.
        other_range: PhysRange,
    },
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Overlap { new, existing } => {
                write!(f, "region {new:?} overlaps region {existing:?}")
            }
            Self::Full { capacity } => {
                write!(f, "more than {capacity} separate regions")
            }
            Self::CarveOutOverlap {
                name,
                range,
                other,
                other_range,
            } => write!(f, "{name} {range:?} overlaps {other} {other_range:?}"),
        }
    }
}

/// A sorted list of disjoint physical ranges with room for `N` of them.
///
/// No stored range is empty. [`insert`](Self::insert) keeps touching ranges
/// apart (two memory banks stay two banks); [`insert_merge`](Self::insert_merge)
/// unions them.
#[derive(Clone, Copy)]
pub struct RegionList<const N: usize = DEFAULT_CAPACITY> {
    ranges: [PhysRange; N],
    len: usize,
}

impl<const N: usize> Default for RegionList<N> {
    fn default() -> Self {
        Self::new()
    }
}

// Slots past `len` hold stale ranges: only the held ones count.
impl<const N: usize> PartialEq for RegionList<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const N: usize> Eq for RegionList<N> {}

impl<const N: usize> fmt::Debug for RegionList<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The range `[start, end)`; callers guarantee `start <= end`.
fn bounds(start: u64, end: u64) -> PhysRange {
    PhysRange::from_bounds(PhysAddr::new(start), PhysAddr::new(end)).unwrap_or_default()
}

impl<const N: usize> RegionList<N> {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            ranges: [PhysRange::from_bounds(PhysAddr::new(0), PhysAddr::new(0)).unwrap(); N],
            len: 0,
        }
    }

    /// A list holding `ranges`, which must be disjoint (see [`insert`](Self::insert)).
    pub fn from_ranges(ranges: &[PhysRange]) -> Result<Self, RegionError> {
        let mut list = Self::new();
        for r in ranges {
            list.insert(*r)?;
        }
        Ok(list)
    }

    /// Number of ranges held.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether no range is held.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of ranges.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The ranges, in ascending order.
    pub fn as_slice(&self) -> &[PhysRange] {
        &self.ranges[..self.len]
    }

    /// Iterates the ranges in ascending order.
    pub fn iter(&self) -> core::slice::Iter<'_, PhysRange> {
        self.as_slice().iter()
    }

    /// Sum of the sizes. Cannot overflow: the ranges are disjoint and none
    /// reaches past `u64::MAX`.
    pub fn total_size(&self) -> u64 {
        self.iter().map(PhysRange::size).sum()
    }

    /// The largest range, if any.
    pub fn largest(&self) -> Option<PhysRange> {
        self.iter().copied().max_by_key(PhysRange::size)
    }

    /// Whether one held range contains all of `r`.
    pub fn contains_range(&self, r: &PhysRange) -> bool {
        !r.is_empty() && self.iter().any(|m| m.contains_range(r))
    }

    /// The first held range sharing bytes with `r`.
    pub fn first_overlap(&self, r: &PhysRange) -> Option<PhysRange> {
        self.iter().copied().find(|m| m.overlaps(r))
    }

    /// Index at which `r` keeps the list sorted by start.
    fn position_for(&self, r: &PhysRange) -> usize {
        self.as_slice().partition_point(|m| m.start() < r.start())
    }

    fn insert_at(&mut self, idx: usize, r: PhysRange) -> Result<(), RegionError> {
        if self.len == N {
            return Err(RegionError::Full { capacity: N });
        }
        self.ranges.copy_within(idx..self.len, idx + 1);
        self.ranges[idx] = r;
        self.len += 1;
        Ok(())
    }

    fn remove_at(&mut self, idx: usize) {
        self.ranges.copy_within(idx + 1..self.len, idx);
        self.len -= 1;
    }

    /// Adds `r`, keeping the list sorted. Refuses a range that shares bytes
    /// with one already held, naming both. An empty `r` is ignored.
    pub fn insert(&mut self, r: PhysRange) -> Result<(), RegionError> {
        if r.is_empty() {
            return Ok(());
        }
        if let Some(existing) = self.first_overlap(&r) {
            return Err(RegionError::Overlap { new: r, existing });
        }
        self.insert_at(self.position_for(&r), r)
    }

    /// Adds `r`, merging it with every held range it overlaps or touches.
    pub fn insert_merge(&mut self, r: PhysRange) -> Result<(), RegionError> {
        if r.is_empty() {
            return Ok(());
        }
        let (mut start, mut end) = (r.start().raw(), r.end().raw());
        // Held ranges that overlap or touch `r` are contiguous in sorted order.
        let first = self.as_slice().partition_point(|m| m.end().raw() < start);
        let mut last = first;
        while last < self.len && self.ranges[last].start().raw() <= end {
            start = start.min(self.ranges[last].start().raw());
            end = end.max(self.ranges[last].end().raw());
            last += 1;
        }
        if first == last {
            return self.insert_at(first, r);
        }
        self.ranges[first] = bounds(start, end);
        for _ in first + 1..last {
            self.remove_at(first + 1);
        }
        Ok(())
    }

    /// Removes every byte of `r` from the list, trimming or splitting ranges.
    /// Bytes of `r` outside the list are ignored. Fails, changing nothing, only
    /// if splitting a range needs a slot the list does not have.
    pub fn subtract(&mut self, r: PhysRange) -> Result<(), RegionError> {
        if r.is_empty() {
            return Ok(());
        }
        let (cut_start, cut_end) = (r.start().raw(), r.end().raw());
        let mut i = 0;
        while i < self.len {
            let m = self.ranges[i];
            if !m.overlaps(&r) {
                i += 1;
                continue;
            }
            let (start, end) = (m.start().raw(), m.end().raw());
            let keep_low = start < cut_start;
            let keep_high = end > cut_end;
            match (keep_low, keep_high) {
                (true, true) => {
                    // `r` lies strictly inside this one range and touches no other.
                    self.insert_at(i + 1, bounds(cut_end, end))?;
                    self.ranges[i] = bounds(start, cut_start);
                    return Ok(());
                }
                (true, false) => {
                    self.ranges[i] = bounds(start, cut_start);
                    i += 1;
                }
                (false, true) => {
                    self.ranges[i] = bounds(cut_end, end);
                    i += 1;
                }
                (false, false) => self.remove_at(i),
            }
        }
        Ok(())
    }

    /// Shrinks every range to whole multiples of `align` (a power of two),
    /// dropping those that hold no aligned block.
    pub fn align_inward(&mut self, align: u64) {
        let mut i = 0;
        while i < self.len {
            let m = self.ranges[i];
            let start = m.start().checked_align_up(align);
            let end = m.end().align_down(align);
            match start {
                Some(start) if start < end => {
                    self.ranges[i] = bounds(start.raw(), end.raw());
                    i += 1;
                }
                _ => self.remove_at(i),
            }
        }
    }
}

impl<'l, const N: usize> IntoIterator for &'l RegionList<N> {
    type Item = &'l PhysRange;
    type IntoIter = core::slice::Iter<'l, PhysRange>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The page-aligned memory left for allocation: `memory` minus every carve-out.
///
/// Carve-outs are what something else already owns (the hypervisor image, the
/// device tree, the initrd, firmware reservations). They may lie partly or
/// wholly outside `memory` (that part is simply not memory), and empty ones are
/// ignored, but two carve-outs sharing a byte mean the loader or the firmware
/// put one thing on top of another: that is refused, naming both.
pub fn usable_memory(
    memory: &RegionList,
    carve_outs: &[(&'static str, PhysRange)],
) -> Result<RegionList, RegionError> {
    for (i, (name, range)) in carve_outs.iter().enumerate() {
        if let Some((other, other_range)) = carve_outs[..i].iter().find(|(_, o)| o.overlaps(range))
        {
            return Err(RegionError::CarveOutOverlap {
                name,
                range: *range,
                other,
                other_range: *other_range,
            });
        }
    }
    let mut free = *memory;
    for (_, range) in carve_outs {
        free.subtract(*range)?;
    }
    free.align_inward(PAGE_SIZE);
    Ok(free)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::format;
    use std::vec::Vec;

    use super::*;

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange::from_bounds(PhysAddr::new(start), PhysAddr::new(end)).unwrap()
    }

    fn list<const N: usize>(l: &RegionList<N>) -> Vec<(u64, u64)> {
        l.iter().map(|m| (m.start().raw(), m.end().raw())).collect()
    }

    #[test]
    fn insert_sorts_and_rejects_overlap() {
        let mut l = RegionList::<8>::new();
        l.insert(r(0x3000, 0x4000)).unwrap();
        l.insert(r(0x1000, 0x2000)).unwrap();
        l.insert(r(0x2000, 0x3000)).unwrap(); // touching is not overlapping
        l.insert(r(0x5000, 0x5000)).unwrap(); // empty: ignored
        assert_eq!(
            list(&l),
            [(0x1000, 0x2000), (0x2000, 0x3000), (0x3000, 0x4000)]
        );
        let err = l.insert(r(0x3fff, 0x8000)).unwrap_err();
        assert_eq!(
            err,
            RegionError::Overlap {
                new: r(0x3fff, 0x8000),
                existing: r(0x3000, 0x4000)
            }
        );
        assert_eq!(
            format!("{err}"),
            "region [0x3fff..0x8000) overlaps region [0x3000..0x4000)"
        );
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn insert_full_is_an_error() {
        let mut l = RegionList::<2>::new();
        l.insert(r(0, 1)).unwrap();
        l.insert(r(2, 3)).unwrap();
        assert_eq!(l.insert(r(4, 5)), Err(RegionError::Full { capacity: 2 }));
        assert_eq!(list(&l), [(0, 1), (2, 3)]);
    }

    #[test]
    fn insert_merge_unions_overlapping_and_touching() {
        let mut l = RegionList::<8>::new();
        l.insert_merge(r(0x1000, 0x2000)).unwrap();
        l.insert_merge(r(0x4000, 0x5000)).unwrap();
        l.insert_merge(r(0x7000, 0x8000)).unwrap();
        l.insert_merge(r(0x2000, 0x3000)).unwrap();
        assert_eq!(
            list(&l),
            [(0x1000, 0x3000), (0x4000, 0x5000), (0x7000, 0x8000)]
        );
        l.insert_merge(r(0x2800, 0x7800)).unwrap();
        assert_eq!(list(&l), [(0x1000, 0x8000)]);
        l.insert_merge(r(0x0, 0x10000)).unwrap();
        assert_eq!(list(&l), [(0x0, 0x10000)]);
        // Merging never needs a new slot, even when full.
        let mut full = RegionList::<1>::new();
        full.insert_merge(r(0, 10)).unwrap();
        full.insert_merge(r(10, 20)).unwrap();
        assert_eq!(list(&full), [(0, 20)]);
        assert_eq!(
            full.insert_merge(r(30, 40)),
            Err(RegionError::Full { capacity: 1 })
        );
    }

    #[test]
    fn subtract_trims_splits_and_removes() {
        let mut l = RegionList::<8>::from_ranges(&[r(0x1000, 0x5000), r(0x8000, 0x9000)]).unwrap();
        l.subtract(r(0x2000, 0x3000)).unwrap();
        assert_eq!(
            list(&l),
            [(0x1000, 0x2000), (0x3000, 0x5000), (0x8000, 0x9000)]
        );
        l.subtract(r(0x4000, 0x8800)).unwrap();
        assert_eq!(
            list(&l),
            [(0x1000, 0x2000), (0x3000, 0x4000), (0x8800, 0x9000)]
        );
        l.subtract(r(0x0, 0x3800)).unwrap();
        assert_eq!(list(&l), [(0x3800, 0x4000), (0x8800, 0x9000)]);
        l.subtract(r(0xa000, 0xb000)).unwrap(); // outside: no effect
        l.subtract(r(0x0, u64::MAX)).unwrap();
        assert!(l.is_empty());
    }

    #[test]
    fn subtract_split_when_full_changes_nothing() {
        let mut l = RegionList::<2>::from_ranges(&[r(0, 0x1000), r(0x2000, 0x5000)]).unwrap();
        assert_eq!(
            l.subtract(r(0x3000, 0x4000)),
            Err(RegionError::Full { capacity: 2 })
        );
        assert_eq!(list(&l), [(0, 0x1000), (0x2000, 0x5000)]);
        // Trimming needs no slot.
        l.subtract(r(0x4000, 0x6000)).unwrap();
        assert_eq!(list(&l), [(0, 0x1000), (0x2000, 0x4000)]);
    }

    #[test]
    fn align_inward_drops_slivers() {
        let mut l = RegionList::<8>::from_ranges(&[
            r(0x1001, 0x3fff),
            r(0x5000, 0x5fff),
            r(0x7000, 0x9000),
        ])
        .unwrap();
        l.align_inward(PAGE_SIZE);
        assert_eq!(list(&l), [(0x2000, 0x3000), (0x7000, 0x9000)]);
        assert_eq!(l.total_size(), 0x3000);
    }

    #[test]
    fn top_of_address_space_does_not_wrap() {
        let top = u64::MAX;
        let mut l = RegionList::<4>::from_ranges(&[r(top - 0x3000, top)]).unwrap();
        // The last byte below u64::MAX cannot start an aligned page past it.
        l.align_inward(PAGE_SIZE);
        assert_eq!(list(&l), [(top - 0x2fff, top - 0xfff)]);
        l.subtract(r(top - 0x1fff, top)).unwrap();
        assert_eq!(list(&l), [(top - 0x2fff, top - 0x1fff)]);
        let mut l = RegionList::<4>::from_ranges(&[r(top - 10, top)]).unwrap();
        l.align_inward(PAGE_SIZE);
        assert!(l.is_empty());
        let mut l = RegionList::<4>::new();
        l.insert_merge(r(0, top)).unwrap();
        l.insert_merge(r(top - 1, top)).unwrap();
        assert_eq!(l.total_size(), top);
        assert_eq!(l.largest(), Some(r(0, top)));
    }

    #[test]
    fn usable_memory_clips_and_aligns() {
        let memory = RegionList::from_ranges(&[
            r(0x4000_0000, 0x8000_0000),
            r(0x1_0000_0000, 0x1_4000_0000),
        ])
        .unwrap();
        let usable = usable_memory(
            &memory,
            &[
                ("hypervisor image", r(0x4008_0000, 0x4020_0800)),
                ("device tree", r(0x3fff_f000, 0x4000_2000)), // straddles the start
                ("initrd", r(0x7fff_f800, 0x8000_0800)),      // straddles a hole
                ("reserved", r(0x2_0000_0000, 0x2_0000_1000)), // outside memory
                ("nothing", r(0x5000_0000, 0x5000_0000)),     // empty
            ],
        )
        .unwrap();
        assert_eq!(
            list(&usable),
            [
                (0x4000_2000, 0x4008_0000),
                (0x4020_1000, 0x7fff_f000),
                (0x1_0000_0000, 0x1_4000_0000)
            ]
        );
    }

    #[test]
    fn usable_memory_rejects_overlapping_carve_outs_naming_both() {
        let memory = RegionList::from_ranges(&[r(0x4000_0000, 0x8000_0000)]).unwrap();
        let err = usable_memory(
            &memory,
            &[
                ("hypervisor image", r(0x4008_0000, 0x4020_0000)),
                ("device tree", r(0x4400_0000, 0x4400_2000)),
                ("initrd", r(0x401f_f000, 0x4100_0000)),
            ],
        )
        .unwrap_err();
        assert_eq!(
            format!("{err}"),
            "initrd [0x401ff000..0x41000000) overlaps hypervisor image [0x40080000..0x40200000)"
        );
        // Touching carve-outs are fine.
        usable_memory(
            &memory,
            &[
                ("hypervisor image", r(0x4008_0000, 0x4020_0000)),
                ("initrd", r(0x4020_0000, 0x4100_0000)),
            ],
        )
        .unwrap();
    }

    #[test]
    fn usable_memory_at_the_top_of_the_address_space() {
        let top = u64::MAX;
        let memory = RegionList::from_ranges(&[r(top - 0x10_0fff, top)]).unwrap();
        let usable = usable_memory(&memory, &[("device tree", r(top - 0x800, top))]).unwrap();
        assert_eq!(list(&usable), [(top - 0x10_0fff, top - 0xfff)]);
    }

    #[test]
    fn subtract_matches_a_byte_model() {
        // Small universe: every byte tracked in a bitmap.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        for _ in 0..200 {
            let mut l = RegionList::<32>::new();
            let mut model = [false; 256];
            for _ in 0..6 {
                let a = next(256);
                let b = next(256);
                let (s, e) = (a.min(b), a.max(b));
                l.insert_merge(r(s, e)).unwrap();
                model[s as usize..e as usize]
                    .iter_mut()
                    .for_each(|x| *x = true);
            }
            for _ in 0..6 {
                let a = next(256);
                let b = next(256);
                let (s, e) = (a.min(b), a.max(b));
                l.subtract(r(s, e)).unwrap();
                model[s as usize..e as usize]
                    .iter_mut()
                    .for_each(|x| *x = false);
            }
            let mut got = [false; 256];
            for m in &l {
                assert!(!m.is_empty());
                got[m.start().raw() as usize..m.end().raw() as usize]
                    .iter_mut()
                    .for_each(|x| *x = true);
            }
            assert_eq!(got, model);
            assert!(l.as_slice().windows(2).all(|w| w[0].end() <= w[1].start()));
        }
    }
}
