//! The hypervisor heap: a buddy allocator over one range of frames, set up
//! once at boot. Allocation failure is reported through `alloc`'s error path.

use buddy_system_allocator::Heap;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

/// A buddy heap behind a spin lock, usable as the global allocator.
pub struct LockedHeap(spin::Mutex<Heap<32>>);

impl LockedHeap {
    /// An empty heap; every allocation fails until [`LockedHeap::init`].
    pub const fn empty() -> Self {
        Self(spin::Mutex::new(Heap::empty()))
    }

    /// Gives the heap the memory `[start, start + size)`.
    ///
    /// # Safety
    ///
    /// The range must be mapped read-write, unused by anything else, and
    /// stay so for the rest of the program.
    pub unsafe fn init(&self, start: usize, size: usize) {
        // SAFETY: the caller hands over exclusive use of the range.
        unsafe { self.0.lock().init(start, size) };
    }

    /// Bytes in use and bytes managed.
    pub fn usage(&self) -> (usize, usize) {
        let heap = self.0.lock();
        (heap.stats_alloc_actual(), heap.stats_total_bytes())
    }
}

// SAFETY: the buddy allocator hands out disjoint, suitably aligned blocks and
// takes back only blocks it handed out, under the lock.
unsafe impl GlobalAlloc for LockedHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .alloc(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` on this
            // heap with this layout.
            unsafe { self.0.lock().dealloc(p, layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_from_the_given_range_and_fails_when_full() {
        let mut backing = vec![0u64; 8192];
        let heap = LockedHeap::empty();
        let start = backing.as_mut_ptr() as usize;
        // SAFETY: the vector outlives the heap and nothing else uses it.
        unsafe { heap.init(start, 8192 * 8) };
        let layout = Layout::from_size_align(4096, 4096).unwrap();
        let mut got = Vec::new();
        loop {
            // SAFETY: a valid non-zero layout.
            let p = unsafe { heap.alloc(layout) };
            if p.is_null() {
                break;
            }
            assert!((p as usize) >= start && (p as usize) + 4096 <= start + 8192 * 8);
            got.push(p);
        }
        assert!(!got.is_empty() && got.len() <= 16);
        for p in got {
            // SAFETY: each pointer came from this heap with this layout.
            unsafe { heap.dealloc(p, layout) };
        }
        assert_eq!(heap.usage().0, 0);
    }
}
