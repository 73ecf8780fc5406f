//! A host benchmark of the stage-2 mapping engine, run by `scripts/bench`:
//! `cargo test --release -p hypervisor -- --ignored --nocapture stage2_bench`.
//!
//! It maps 64 GiB of IPA space (64 slots of 1 GiB) with physical addresses
//! of mixed alignment, cycling through three kinds of slot: 1 GiB aligned
//! (one level-1 block), 2 MiB aligned but not 1 GiB (512 level-2 blocks under
//! one table), and a slot whose first 64 MiB is 4 KiB aligned but not 2 MiB
//! (16,384 pages under 32 level-3 tables) followed by 960 MiB of 2 MiB
//! blocks. It prints the best time of three runs and the table pages used
//! against the minimum for that layout.

use std::time::{Duration, Instant};

use super::*;
use crate::mm::addr::{PAGE_SIZE, SIZE_1G, SIZE_2M};
use crate::mm::pgtable::testing::{arena_pool, Arena};

/// TLB maintenance that does nothing: the tables are not live.
struct NoTlb;

impl Stage2TlbMaint for NoTlb {
    fn invalidate_ipa(&mut self, _ipa: Ipa, _level: usize) {}
    fn invalidate_all_stage1_for_vmid(&mut self) {}
    fn sync(&mut self) {}
}

const FEATURES: Features = Features {
    fwb: true,
    dic: true,
    idc: true,
};

/// IPA of the first slot; the slots' PAs sit 256 GiB above their IPAs.
const IPA_BASE: u64 = 64 * SIZE_1G;
const PA_SHIFT: u64 = 256 * SIZE_1G;
const SLOTS: u64 = 64;
/// The page-mapped head of every third slot.
const PAGE_HEAD: u64 = 64 << 20;

/// The chunks mapped, in order: (IPA, PA, size).
fn chunks() -> Vec<(u64, u64, u64)> {
    let mut v = Vec::new();
    for k in 0..SLOTS {
        let ipa = IPA_BASE + k * SIZE_1G;
        match k % 3 {
            0 => v.push((ipa, ipa + PA_SHIFT, SIZE_1G)),
            1 => v.push((ipa, ipa + PA_SHIFT + SIZE_2M, SIZE_1G)),
            _ => {
                v.push((ipa, ipa + PA_SHIFT + PAGE_SIZE, PAGE_HEAD));
                v.push((
                    ipa + PAGE_HEAD,
                    ipa + PAGE_HEAD + PA_SHIFT,
                    SIZE_1G - PAGE_HEAD,
                ));
            }
        }
    }
    v
}

/// The fewest table pages any engine needs for the chunks: the root (two
/// concatenated level-1 tables for a 40-bit IPA), one level-2 table per slot
/// that is not a 1 GiB block, and a level-3 table per 2 MiB of pages.
fn minimum_pages() -> u64 {
    let pages_slots = (0..SLOTS).filter(|k| k % 3 == 2).count() as u64;
    let block_slots = (0..SLOTS).filter(|k| k % 3 != 0).count() as u64;
    2 + block_slots + pages_slots * (PAGE_HEAD / SIZE_2M)
}

/// Maps every chunk into a fresh stage 2; returns the time and the tables.
fn map_all(pool_pages: usize) -> (Duration, Stage2<Arena>) {
    let cfg = Stage2Config::new(2, 40).expect("40-bit IPA config");
    let mut s2 = Stage2::new(
        cfg,
        Vmid(1),
        FEATURES,
        arena_pool(0x2_0000_0000, pool_pages),
    )
    .expect("stage 2");
    let chunks = chunks();
    let mut tlb = NoTlb;
    let start = Instant::now();
    for &(ipa, pa, size) in &chunks {
        let range = IpaRange::new(Ipa::new(ipa), size).expect("chunk range");
        s2.map_ram(range, PhysAddr::new(pa), &mut tlb)
            .expect("map chunk");
    }
    (start.elapsed(), s2)
}

#[test]
#[ignore = "benchmark: run by scripts/bench"]
fn stage2_bench() {
    let min = minimum_pages();
    let chunks = chunks();
    let mapped: u64 = chunks.iter().map(|c| c.2).sum();
    assert_eq!(mapped, SLOTS * SIZE_1G);
    // Room for the minimum plus slack, so running out shows as a failure,
    // not as a slow path.
    let pool_pages = min as usize + 64;
    let mut best = Duration::MAX;
    let mut used = 0;
    for _ in 0..3 {
        let (elapsed, s2) = map_all(pool_pages);
        best = best.min(elapsed);
        used = s2.table().table_pages();
        // Spot checks: an address in each kind of chunk lands where it should.
        for &(ipa, pa, _) in &chunks[..4] {
            let t = s2.translate(Ipa::new(ipa + 0x1_2345)).expect("mapped");
            assert_eq!(t.pa.raw(), pa + 0x1_2345);
        }
    }
    println!(
        "STAGE2-BENCH ipa_gib={} chunks={} ms={:.3} table_pages={} minimum_pages={}",
        mapped / SIZE_1G,
        chunks.len(),
        best.as_secs_f64() * 1e3,
        used,
        min
    );
}
