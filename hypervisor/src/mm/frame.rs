//! The physical frame allocator.
//!
//! Hands out page-aligned, physically contiguous ranges from the usable memory
//! computed by [`usable_memory`](super::regions::usable_memory): a chunk per
//! page-table pool, 2 MiB-aligned blocks of guest RAM. It keeps no per-frame
//! state, only a sorted free list of fixed capacity, so it works before the
//! heap exists and frees coalesce with their neighbours. Frees are checked:
//! a range that was never managed here or is already (partly) free is refused.

use core::fmt;

use super::addr::{PhysAddr, PhysRange, PAGE_SIZE};
use super::regions::{RegionError, RegionList};

/// Most separate free ranges the allocator can track. Each costs 16 bytes;
/// only long-lived fragmentation (frees out of order) approaches it.
pub const FREE_LIST_CAPACITY: usize = 256;

/// Why an allocation or a free failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A request for zero bytes.
    ZeroSize,
    /// An alignment that is not a power of two.
    BadAlignment(u64),
    /// No free range can hold `size` bytes at `align`.
    OutOfMemory {
        /// Requested size, rounded up to whole pages.
        size: u64,
        /// Requested alignment.
        align: u64,
    },
    /// The free list has no slot for the split or the free.
    FreeListFull,
    /// A freed range that does not start and end on page boundaries.
    Unaligned(PhysRange),
    /// A freed range that is not inside the memory this allocator manages.
    Foreign(PhysRange),
    /// A freed range that is already free, wholly or in part.
    DoubleFree {
        /// The range being freed.
        range: PhysRange,
        /// The free range it overlaps.
        free: PhysRange,
    },
    /// The memory handed to [`FrameAllocator::new`] did not fit.
    Regions(RegionError),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroSize => write!(f, "frame allocation of zero bytes"),
            Self::BadAlignment(a) => write!(f, "frame alignment {a:#x} is not a power of two"),
            Self::OutOfMemory { size, align } => write!(
                f,
                "out of physical memory: no free range holds {size:#x} bytes aligned to {align:#x}"
            ),
            Self::FreeListFull => {
                write!(f, "frame free list full ({FREE_LIST_CAPACITY} fragments)")
            }
            Self::Unaligned(r) => write!(f, "freeing {r:?}, which is not page-aligned"),
            Self::Foreign(r) => write!(f, "freeing {r:?}, which this allocator does not manage"),
            Self::DoubleFree { range, free } => {
                write!(f, "freeing {range:?}, which overlaps free range {free:?}")
            }
            Self::Regions(e) => write!(f, "frame allocator memory: {e}"),
        }
    }
}

impl From<RegionError> for FrameError {
    fn from(e: RegionError) -> Self {
        match e {
            RegionError::Full { .. } => Self::FreeListFull,
            e => Self::Regions(e),
        }
    }
}

/// A first-fit allocator of physically contiguous, page-aligned ranges.
#[derive(Clone)]
pub struct FrameAllocator {
    /// Everything this allocator may hand out, merged; frees must fall inside.
    managed: RegionList<FREE_LIST_CAPACITY>,
    free: RegionList<FREE_LIST_CAPACITY>,
}

impl fmt::Debug for FrameAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameAllocator")
            .field("managed", &self.managed)
            .field("free", &self.free)
            .finish()
    }
}

impl FrameAllocator {
    /// An allocator owning the whole pages of `memory`; all of it starts free.
    pub fn new<const N: usize>(memory: &RegionList<N>) -> Result<Self, FrameError> {
        let mut managed = RegionList::new();
        for r in memory {
            managed.insert_merge(*r)?;
        }
        managed.align_inward(PAGE_SIZE);
        Ok(Self {
            managed,
            free: managed,
        })
    }

    /// Allocates `size` bytes (rounded up to whole pages) at a multiple of
    /// `align` (a power of two; anything below a page means a page), taking
    /// the lowest free range that fits.
    pub fn alloc(&mut self, size: u64, align: u64) -> Result<PhysRange, FrameError> {
        if size == 0 {
            return Err(FrameError::ZeroSize);
        }
        if !align.is_power_of_two() {
            return Err(FrameError::BadAlignment(align));
        }
        let align = align.max(PAGE_SIZE);
        let oom = FrameError::OutOfMemory {
            size: PhysAddr::new(size)
                .checked_align_up(PAGE_SIZE)
                .map_or(u64::MAX, PhysAddr::raw),
            align,
        };
        let size = match PhysAddr::new(size).checked_align_up(PAGE_SIZE) {
            Some(s) => s.raw(),
            None => return Err(oom),
        };
        let mut result = Err(oom);
        for candidate in self.free.iter() {
            let Some(start) = candidate.start().checked_align_up(align) else {
                continue;
            };
            let Some(range) = PhysRange::new(start, size) else {
                continue;
            };
            if !candidate.contains_range(&range) {
                continue;
            }
            // Carving from the middle of a range needs a free-list slot; if
            // none is left, a later range may still fit without a split.
            let mut free = self.free;
            match free.subtract(range) {
                Ok(()) => {
                    self.free = free;
                    return Ok(range);
                }
                Err(_) => result = Err(FrameError::FreeListFull),
            }
        }
        result
    }

    /// Returns `range`, which must be page-aligned, managed here and wholly
    /// allocated, to the free list, merging it with free neighbours.
    pub fn free(&mut self, range: PhysRange) -> Result<(), FrameError> {
        if range.is_empty()
            || !range.start().is_aligned(PAGE_SIZE)
            || !range.end().is_aligned(PAGE_SIZE)
        {
            return Err(FrameError::Unaligned(range));
        }
        if !self.managed.contains_range(&range) {
            return Err(FrameError::Foreign(range));
        }
        if let Some(free) = self.free.first_overlap(&range) {
            return Err(FrameError::DoubleFree { range, free });
        }
        self.free.insert_merge(range)?;
        Ok(())
    }

    /// Bytes currently free.
    pub fn free_bytes(&self) -> u64 {
        self.free.total_size()
    }

    /// Size of the largest free range: an upper bound for one allocation.
    pub fn largest_free(&self) -> u64 {
        self.free.largest().map_or(0, |r| r.size())
    }

    /// The memory this allocator manages.
    pub fn managed(&self) -> &RegionList<FREE_LIST_CAPACITY> {
        &self.managed
    }

    /// The free ranges, in ascending order.
    pub fn free_ranges(&self) -> &RegionList<FREE_LIST_CAPACITY> {
        &self.free
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::format;
    use std::vec::Vec;

    use super::*;
    use crate::mm::addr::SIZE_2M;

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange::from_bounds(PhysAddr::new(start), PhysAddr::new(end)).unwrap()
    }

    fn allocator(ranges: &[PhysRange]) -> FrameAllocator {
        FrameAllocator::new(&RegionList::<8>::from_ranges(ranges).unwrap()).unwrap()
    }

    #[test]
    fn rounds_size_and_honours_alignment() {
        let mut a = allocator(&[r(0x4000_1000, 0x4100_0000)]);
        let x = a.alloc(1, 1).unwrap();
        assert_eq!(x, r(0x4000_1000, 0x4000_2000));
        let y = a.alloc(SIZE_2M, SIZE_2M).unwrap();
        assert_eq!(y, r(0x4020_0000, 0x4040_0000));
        // The gap left below the aligned block is still used first-fit.
        let z = a.alloc(0x3000, 0x1000).unwrap();
        assert_eq!(z, r(0x4000_2000, 0x4000_5000));
        let w = a.alloc(0x1001, 0x4000).unwrap();
        assert_eq!(w, r(0x4000_8000, 0x4000_a000));
        assert_eq!(a.alloc(0, 0x1000), Err(FrameError::ZeroSize));
        assert_eq!(
            a.alloc(0x1000, 0x3000),
            Err(FrameError::BadAlignment(0x3000))
        );
        assert_eq!(a.alloc(0x1000, 0), Err(FrameError::BadAlignment(0)));
    }

    #[test]
    fn new_drops_partial_pages_and_merges_banks() {
        let a = allocator(&[r(0x1800, 0x4000), r(0x4000, 0x6800)]);
        assert_eq!(a.managed().as_slice(), [r(0x2000, 0x6000)]);
        assert_eq!(a.free_bytes(), 0x4000);
        assert_eq!(a.largest_free(), 0x4000);
    }

    #[test]
    fn exhaustion_is_an_error() {
        let mut a = allocator(&[r(0x1000, 0x5000)]);
        assert_eq!(
            a.alloc(0x5000, 0x1000),
            Err(FrameError::OutOfMemory {
                size: 0x5000,
                align: 0x1000
            })
        );
        a.alloc(0x4000, 0x1000).unwrap();
        assert_eq!(a.free_bytes(), 0);
        assert_eq!(a.largest_free(), 0);
        assert!(matches!(
            a.alloc(0x1000, 0x1000),
            Err(FrameError::OutOfMemory { .. })
        ));
        // Enough bytes but not at the alignment.
        let mut b = allocator(&[r(0x1000, 0x3000)]);
        assert!(matches!(
            b.alloc(0x1000, 0x4000),
            Err(FrameError::OutOfMemory { .. })
        ));
        // Sizes near u64::MAX do not wrap.
        assert!(matches!(
            b.alloc(u64::MAX, 0x1000),
            Err(FrameError::OutOfMemory { .. })
        ));
        assert!(matches!(
            b.alloc(0x1000, 1 << 63),
            Err(FrameError::OutOfMemory { .. })
        ));
    }

    #[test]
    fn frees_coalesce() {
        let mut a = allocator(&[r(0x10_0000, 0x20_0000)]);
        let x = a.alloc(0x1000, 0x1000).unwrap();
        let y = a.alloc(0x1000, 0x1000).unwrap();
        let z = a.alloc(0x1000, 0x1000).unwrap();
        assert_eq!(a.free_ranges().len(), 1);
        a.free(x).unwrap();
        a.free(z).unwrap();
        assert_eq!(a.free_ranges().len(), 2);
        a.free(y).unwrap();
        assert_eq!(a.free_ranges().as_slice(), [r(0x10_0000, 0x20_0000)]);
    }

    #[test]
    fn bad_frees_are_refused() {
        let mut a = allocator(&[r(0x10_0000, 0x20_0000)]);
        let x = a.alloc(0x2000, 0x1000).unwrap();
        assert_eq!(
            a.free(r(0x20_0000, 0x20_1000)),
            Err(FrameError::Foreign(r(0x20_0000, 0x20_1000)))
        );
        assert_eq!(
            a.free(r(0x10_0800, 0x10_1000)),
            Err(FrameError::Unaligned(r(0x10_0800, 0x10_1000)))
        );
        assert_eq!(
            a.free(r(0x10_0000, 0x10_0000)),
            Err(FrameError::Unaligned(r(0x10_0000, 0x10_0000)))
        );
        a.free(x).unwrap();
        let err = a.free(x).unwrap_err();
        assert_eq!(
            err,
            FrameError::DoubleFree {
                range: x,
                free: r(0x10_0000, 0x20_0000)
            }
        );
        assert_eq!(
            format!("{err}"),
            "freeing [0x100000..0x102000), which overlaps free range [0x100000..0x200000)"
        );
        // Partly free is still a double free.
        let y = a.alloc(0x2000, 0x1000).unwrap();
        a.free(r(y.start().raw(), y.start().raw() + 0x1000))
            .unwrap();
        assert!(matches!(a.free(y), Err(FrameError::DoubleFree { .. })));
    }

    #[test]
    fn full_free_list_reports_and_keeps_state() {
        // 2 * FREE_LIST_CAPACITY pages: freeing every other one fills the list.
        let pages = 2 * FREE_LIST_CAPACITY as u64 + 2;
        let mut a = allocator(&[r(0, pages * 0x1000)]);
        let all: Vec<_> = (0..pages)
            .map(|_| a.alloc(0x1000, 0x1000).unwrap())
            .collect();
        for p in all.iter().step_by(2).take(FREE_LIST_CAPACITY) {
            a.free(*p).unwrap();
        }
        let before = a.clone();
        assert_eq!(a.free(all[all.len() - 1]), Err(FrameError::FreeListFull));
        assert_eq!(a.free_ranges(), before.free_ranges());
        // Splitting a free page is impossible, but an exact fit needs no slot.
        assert_eq!(a.alloc(0x1000, 0x1000), Ok(all[0]));
    }

    #[test]
    fn randomized_against_a_model() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        let banks = [
            r(0x4000_0000, 0x4100_0000),
            r(0x4200_0000, 0x4240_0000),
            r(0x8_0000_0000, 0x8_0080_0000),
        ];
        let mut a = allocator(&banks);
        let total = a.free_bytes();
        let initial = *a.free_ranges();
        let mut live: Vec<PhysRange> = Vec::new();
        for _ in 0..5000 {
            if live.is_empty() || next(3) != 0 {
                let bound = if next(8) == 0 { 0x40_0000 } else { 0x8000 };
                let size = 1 + next(bound);
                let align = 1u64 << next(23);
                match a.alloc(size, align) {
                    Ok(got) => {
                        assert!(got.start().is_aligned(align.max(PAGE_SIZE)));
                        assert!(got.size() >= size && got.size() - size < PAGE_SIZE);
                        assert!(banks.iter().any(|b| b.contains_range(&got)));
                        assert!(live.iter().all(|l| !l.overlaps(&got)));
                        live.push(got);
                    }
                    Err(FrameError::OutOfMemory { .. }) => {
                        // First fit must really have found nothing.
                        let size = size.next_multiple_of(PAGE_SIZE);
                        let align = align.max(PAGE_SIZE);
                        assert!(a.free_ranges().iter().all(|f| {
                            let s = f.start().raw().next_multiple_of(align);
                            s.checked_add(size).is_none_or(|e| e > f.end().raw())
                        }));
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            } else {
                let i = next(live.len() as u64) as usize;
                a.free(live.swap_remove(i)).unwrap();
            }
            let used: u64 = live.iter().map(|l| l.size()).sum();
            assert_eq!(a.free_bytes() + used, total);
            assert!(a
                .free_ranges()
                .as_slice()
                .windows(2)
                .all(|w| w[0].end() < w[1].start()));
        }
        // In address order every free merges with the gap below it, so the
        // free list only shrinks.
        live.sort_by_key(|l| l.start());
        for l in live.drain(..) {
            a.free(l).unwrap();
        }
        assert_eq!(*a.free_ranges(), initial);
    }
}
