//! A bounded pool of translation-table pages over one contiguous physical range.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::mm::addr::{PhysAddr, PhysRange, PAGE_SIZE};

use super::ENTRIES;

/// Turns the physical address of a table page into a pointer the hypervisor can use.
///
/// On the machine the hypervisor identity-maps its memory ([`IdentityMap`]);
/// host tests back the "physical" range with a heap arena.
///
/// # Safety
///
/// For every page-aligned `pa` inside the range handed to [`TablePool::new`],
/// `table_ptr(pa)` must return a pointer that is 8-byte aligned, valid for
/// reads and writes of [`ENTRIES`] `u64`s for as long as the pool lives, and
/// accessed by nothing else than this pool and the MMU's table walks.
pub unsafe trait PhysToVirt {
    /// The pointer to the first entry of the table page at `pa`.
    fn table_ptr(&self, pa: PhysAddr) -> *mut u64;
}

/// The hypervisor's own mapping of RAM: virtual address equals physical address.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityMap;

// SAFETY: the hypervisor's EL2 stage 1 identity-maps all RAM read/write, and the
// caller of `TablePool::new` hands over a range it owns exclusively.
unsafe impl PhysToVirt for IdentityMap {
    fn table_ptr(&self, pa: PhysAddr) -> *mut u64 {
        pa.raw() as *mut u64
    }
}

/// Why a pool could not be built.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PoolError {
    /// The range is empty or not page-aligned.
    BadRange(PhysRange),
    /// More pages than [`MAX_POOL_PAGES`].
    TooLarge {
        /// Pages asked for.
        pages: usize,
    },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRange(r) => write!(f, "table pool range {r} is empty or not page-aligned"),
            Self::TooLarge { pages } => {
                write!(
                    f,
                    "a table pool of {pages} pages is over the limit of {MAX_POOL_PAGES}"
                )
            }
        }
    }
}

/// Most pages one pool manages: 32 MiB of tables. With block mappings a
/// VM's stage 2 needs a few dozen; 8192 pages map 16 GiB even in 4 KiB pages.
pub const MAX_POOL_PAGES: usize = 8192;

/// Table pages handed out from one contiguous physical range.
///
/// Allocation is bounded by the range: running out is an error the caller sees,
/// never a panic. Pages come back zeroed (all entries invalid).
pub struct TablePool<M: PhysToVirt> {
    range: PhysRange,
    /// One bit per page; set = in use. Fixed-size, so a pool needs no heap
    /// (the hypervisor's own map is built before the heap exists).
    used: [u64; MAX_POOL_PAGES / 64],
    pages: usize,
    free: usize,
    mem: M,
}

impl<M: PhysToVirt> TablePool<M> {
    /// A pool over `range`, which the caller allocated for this purpose and gives up.
    pub fn new(range: PhysRange, mem: M) -> Result<Self, PoolError> {
        if range.is_empty()
            || !range.start().is_aligned(PAGE_SIZE)
            || !range.size().is_multiple_of(PAGE_SIZE)
        {
            return Err(PoolError::BadRange(range));
        }
        let pages = (range.size() / PAGE_SIZE) as usize;
        if pages > MAX_POOL_PAGES {
            return Err(PoolError::TooLarge { pages });
        }
        Ok(Self {
            range,
            used: [0; MAX_POOL_PAGES / 64],
            pages,
            free: pages,
            mem,
        })
    }

    /// The physical range the pool manages.
    pub fn range(&self) -> PhysRange {
        self.range
    }

    /// Total number of pages.
    pub fn capacity(&self) -> usize {
        self.pages
    }

    /// Pages not in use.
    pub fn free_pages(&self) -> usize {
        self.free
    }

    /// Pages in use.
    pub fn used_pages(&self) -> usize {
        self.pages - self.free
    }

    fn is_used(&self, i: usize) -> bool {
        self.used[i / 64] & (1 << (i % 64)) != 0
    }

    fn set_used(&mut self, i: usize, used: bool) {
        if used {
            self.used[i / 64] |= 1 << (i % 64);
        } else {
            self.used[i / 64] &= !(1 << (i % 64));
        }
    }

    /// One zeroed page, or `None` if the pool is exhausted.
    pub fn alloc(&mut self) -> Option<PhysAddr> {
        self.alloc_contiguous(1)
    }

    /// `count` zeroed contiguous pages aligned to `count * PAGE_SIZE` (`count` a
    /// power of two, as a concatenated stage-2 root needs), or `None`.
    pub fn alloc_contiguous(&mut self, count: usize) -> Option<PhysAddr> {
        if count == 0 || !count.is_power_of_two() || count > self.free {
            return None;
        }
        let align = count as u64 * PAGE_SIZE;
        let mut pa = self.range.start().checked_align_up(align)?;
        loop {
            let first = (pa.offset_from(self.range.start())? / PAGE_SIZE) as usize;
            if first + count > self.pages {
                return None;
            }
            if (first..first + count).all(|i| !self.is_used(i)) {
                for i in first..first + count {
                    self.set_used(i, true);
                    self.zero(self.page_addr(i));
                }
                self.free -= count;
                return Some(pa);
            }
            pa = pa.checked_add(align)?;
        }
    }

    /// Returns a page obtained from this pool. The caller guarantees no table
    /// walk can still reach it (its parent entry is invalid and the TLBs were
    /// invalidated).
    pub fn free(&mut self, pa: PhysAddr) {
        let i = self.index(pa);
        assert!(self.is_used(i), "double free of table page {pa:?}");
        self.set_used(i, false);
        self.free += 1;
    }

    fn page_addr(&self, i: usize) -> PhysAddr {
        PhysAddr::new(self.range.start().raw() + i as u64 * PAGE_SIZE)
    }

    fn index(&self, pa: PhysAddr) -> usize {
        assert!(
            self.range.contains(pa) && pa.is_aligned(PAGE_SIZE),
            "{pa:?} is not a table page of this pool"
        );
        (pa.offset_from(self.range.start()).unwrap_or(0) / PAGE_SIZE) as usize
    }

    fn entry(&self, table: PhysAddr, idx: usize) -> &AtomicU64 {
        assert!(idx < ENTRIES);
        let i = self.index(table);
        debug_assert!(self.is_used(i), "access to free table page {table:?}");
        let ptr = self.mem.table_ptr(table);
        // SAFETY: `table` is a page of this pool (checked by `index`) and
        // `idx < ENTRIES`, so by the `PhysToVirt` contract `ptr.add(idx)` is an
        // aligned, valid u64 that only this pool and the MMU access. Every
        // software access goes through atomics, so there is no data race.
        unsafe { AtomicU64::from_ptr(ptr.add(idx)) }
    }

    fn zero(&self, table: PhysAddr) {
        for idx in 0..ENTRIES {
            self.entry(table, idx).store(0, Ordering::Relaxed);
        }
    }

    /// Reads entry `idx` of the table page at `table`.
    pub fn read(&self, table: PhysAddr, idx: usize) -> u64 {
        self.entry(table, idx).load(Ordering::Relaxed)
    }

    /// Writes entry `idx` of the table page at `table`.
    ///
    /// A release store, so a new table's zeroed or filled entries are visible
    /// before the descriptor that links it, as seen by other PEs' walks.
    pub fn write(&self, table: PhysAddr, idx: usize, value: u64) {
        self.entry(table, idx).store(value, Ordering::Release);
    }
}

impl<M: PhysToVirt> fmt::Debug for TablePool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TablePool")
            .field("range", &self.range)
            .field("free", &self.free)
            .field("capacity", &self.pages)
            .finish()
    }
}
