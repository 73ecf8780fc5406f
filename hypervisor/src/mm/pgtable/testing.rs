//! Host-test doubles: a heap arena standing in for physical memory, a TLB
//! that records what it is asked to do, and a tiny PRNG.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use super::{InputAddress, PhysToVirt, TablePool, TlbMaint, ENTRIES};
use crate::mm::addr::{PhysAddr, PhysRange, PAGE_SIZE};

#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u64; ENTRIES]);

/// A run of page-aligned heap memory that pretends to sit at physical `base`.
pub(crate) struct Arena {
    ptr: *mut Page,
    pages: usize,
    base: PhysAddr,
}

impl Arena {
    pub(crate) fn new(base: PhysAddr, pages: usize) -> Self {
        let mem: Box<[Page]> =
            vec![Page([0xdead_beef_dead_beef; ENTRIES]); pages].into_boxed_slice();
        Self {
            ptr: Box::into_raw(mem).cast::<Page>(),
            pages,
            base,
        }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        let slice = core::ptr::slice_from_raw_parts_mut(self.ptr, self.pages);
        // SAFETY: `ptr` and `pages` come from the `Box<[Page]>` leaked in `new`,
        // and this is the only place that reclaims it.
        drop(unsafe { Box::from_raw(slice) });
    }
}

// SAFETY: every page-aligned address in `[base, base + pages * 4096)` maps to a
// distinct, page-aligned `Page` of the leaked allocation, which lives until the
// arena (owned by the pool) is dropped.
unsafe impl PhysToVirt for Arena {
    fn table_ptr(&self, pa: PhysAddr) -> *mut u64 {
        let page = (pa.offset_from(self.base).expect("below arena") / PAGE_SIZE) as usize;
        assert!(page < self.pages, "{pa:?} past the arena");
        self.ptr.wrapping_add(page).cast::<u64>()
    }
}

/// A pool of `pages` table pages at physical `base`, backed by an arena.
pub(crate) fn arena_pool(base: u64, pages: usize) -> TablePool<Arena> {
    let base = PhysAddr::new(base);
    let range = PhysRange::new(base, pages as u64 * PAGE_SIZE).unwrap();
    TablePool::new(range, Arena::new(base, pages)).unwrap()
}

/// What the engine asked of the TLB, and the descriptor writes in between.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Event {
    Write {
        table: PhysAddr,
        index: usize,
        value: u64,
    },
    /// Per-address invalidation (TLBI IPAS2E1IS / VAE2IS).
    Invalidate { addr: u64, level: usize },
    /// TLBI VMALLE1IS (stage 2 only).
    Stage1Flush,
    /// DSB ISH; ISB.
    Sync,
    /// Barrier only: new entries, nothing invalidated.
    Publish,
}

/// A TLB that records.
#[derive(Default, Debug)]
pub(crate) struct FakeTlb {
    pub(crate) events: Vec<Event>,
}

impl FakeTlb {
    pub(crate) fn take(&mut self) -> Vec<Event> {
        core::mem::take(&mut self.events)
    }
}

impl<A: InputAddress> TlbMaint<A> for FakeTlb {
    fn invalidate(&mut self, addr: A, level: usize) {
        self.events.push(Event::Invalidate {
            addr: addr.to_raw(),
            level,
        });
    }
    fn sync(&mut self) {
        self.events.push(Event::Sync);
    }
    fn publish(&mut self) {
        self.events.push(Event::Publish);
    }
    fn descriptor_written(&mut self, table: PhysAddr, index: usize, value: u64) {
        self.events.push(Event::Write {
            table,
            index,
            value,
        });
    }
}

/// xorshift64*: enough randomness for field round trips, no dependency.
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
