//! Engine tests through the EL2 stage-1 regime (stage 2 has its own in `mm::stage2`).

use alloc::vec::Vec;

use super::el2::{El2Attrs, El2PageTable, El2Stage1};
use super::testing::{arena_pool, Event, FakeTlb, XorShift};
use super::*;
use crate::mm::addr::{VirtRange, SIZE_1G, SIZE_2M};
use crate::mm::attrs::Shareability;

const RAM: El2Attrs = El2Attrs {
    attr_index: 1,
    read_only: false,
    sh: Shareability::Inner,
    xn: false,
};
const RO: El2Attrs = El2Attrs {
    read_only: true,
    xn: true,
    ..RAM
};

fn vr(start: u64, size: u64) -> VirtRange {
    VirtRange::new(VirtAddr::new(start), size).unwrap()
}

/// 39-bit VA, start at level 1, one root table.
fn table(pages: usize) -> El2PageTable<testing::Arena> {
    let cfg = TableConfig::new(39, 40, 1, 1).unwrap();
    PageTable::new(cfg, arena_pool(0x1_0000_0000, pages)).unwrap()
}

fn leaves(t: &El2PageTable<testing::Arena>) -> Vec<(u64, u64, usize)> {
    let mut v = Vec::new();
    t.for_each_leaf(|l| v.push((l.input.raw(), l.pa.raw(), l.level)));
    v
}

#[test]
fn el2_descriptor_round_trip_randomized() {
    let mut rng = XorShift::new(0x5eed);
    for _ in 0..2000 {
        let attrs = El2Attrs {
            attr_index: rng.below(8) as u8,
            read_only: rng.below(2) == 1,
            sh: Shareability::from_bits(rng.below(4)),
            xn: rng.below(2) == 1,
        };
        let level = 1 + rng.below(3) as usize;
        let oa = (rng.next() & DESC_ADDR_MASK) & !(level_size(level) - 1);
        let d = leaf_descriptor::<El2Stage1>(PhysAddr::new(oa), level, &attrs);
        assert_eq!(El2Stage1::decode_attrs(d), attrs);
        assert_eq!(classify(d, level), DescKind::Leaf(PhysAddr::new(oa)));
        // AP[1] RES1 and AF always set.
        assert_eq!(d & (1 << 6 | 1 << 10), 1 << 6 | 1 << 10);
    }
}

#[test]
fn config_geometry() {
    assert!(TableConfig::new(39, 48, 1, 1).is_ok());
    assert!(TableConfig::new(48, 48, 0, 1).is_ok());
    assert!(TableConfig::new(40, 48, 1, 2).is_ok());
    assert!(TableConfig::new(43, 48, 1, 16).is_ok());
    assert!(TableConfig::new(44, 48, 1, 32).is_err());
    assert!(TableConfig::new(40, 48, 1, 1).is_err());
    assert!(TableConfig::new(30, 48, 1, 1).is_err());
    assert!(TableConfig::new(39, 52, 1, 1).is_err());
    assert_eq!(
        TableConfig::new(34, 48, 2, 16).unwrap().root_entries(),
        8192
    );
}

#[test]
fn map_uses_largest_blocks_and_translates() {
    let mut t = table(16);
    let mut tlb = FakeTlb::default();
    // 1 GiB + 2 MiB + 4 KiB, 1 GiB-aligned on both sides.
    let size = SIZE_1G + SIZE_2M + PAGE_SIZE;
    t.map(
        vr(0x4000_0000, size),
        PhysAddr::new(0x8000_0000),
        RAM,
        &mut tlb,
    )
    .unwrap();
    assert_eq!(
        leaves(&t),
        [
            (0x4000_0000, 0x8000_0000, 1),
            (0x8000_0000, 0xc000_0000, 2),
            (0x8020_0000, 0xc020_0000, 3),
        ]
    );
    assert_eq!(t.table_pages(), 3);
    // New entries only: a barrier, no invalidation.
    assert_eq!(tlb.events.last(), Some(&Event::Publish));
    assert!(!tlb
        .events
        .iter()
        .any(|e| matches!(e, Event::Invalidate { .. })));
    let tr = t.translate(VirtAddr::new(0x4123_4567)).unwrap();
    assert_eq!(tr.pa, PhysAddr::new(0x8123_4567));
    assert_eq!((tr.level, tr.block_size, tr.attrs), (1, SIZE_1G, RAM));
    assert!(t.translate(VirtAddr::new(0x8020_1000)).is_none());
    let w = t.walk(VirtAddr::new(0x8020_0010));
    assert_eq!(w.steps().count(), 3);
    assert_eq!(w.last().unwrap().level, 3);
}

#[test]
fn output_misalignment_demotes_blocks() {
    let mut t = table(16);
    let mut tlb = FakeTlb::default();
    // Input 2 MiB-aligned, output only 4 KiB-aligned: pages only.
    t.map(vr(0x20_0000, SIZE_2M), PhysAddr::new(0x1000), RAM, &mut tlb)
        .unwrap();
    let l = leaves(&t);
    assert_eq!(l.len(), 512);
    assert!(l.iter().all(|&(_, _, level)| level == 3));
    assert_eq!(l[5], (0x20_5000, 0x6000, 3));
}

#[test]
fn refuses_bad_requests_without_changes() {
    let mut t = table(16);
    let mut tlb = FakeTlb::default();
    t.map(
        vr(0x4000_0000, SIZE_2M),
        PhysAddr::new(0x4000_0000),
        RAM,
        &mut tlb,
    )
    .unwrap();
    let before = leaves(&t);
    let pages = t.table_pages();
    tlb.take();
    let pa = PhysAddr::new(0x9000_0000);
    assert_eq!(
        t.map(vr(0x4000_1000, 0x2000), pa, RAM, &mut tlb),
        Err(MapError::AlreadyMapped(0x4000_1000))
    );
    assert_eq!(
        t.map(vr(0x3fff_f000, 0x2000), pa, RAM, &mut tlb),
        Err(MapError::AlreadyMapped(0x4000_0000))
    );
    assert!(matches!(
        t.map(vr(0x1800, 0x1000), pa, RAM, &mut tlb),
        Err(MapError::MisalignedInput { .. })
    ));
    assert!(matches!(
        t.map(vr(0x1000, 0x1800), pa, RAM, &mut tlb),
        Err(MapError::MisalignedInput { .. })
    ));
    assert_eq!(
        t.map(vr(0x1000, 0x1000), PhysAddr::new(0x10), RAM, &mut tlb),
        Err(MapError::MisalignedOutput(PhysAddr::new(0x10)))
    );
    assert!(matches!(
        t.map(vr((1 << 39) - 0x1000, 0x2000), pa, RAM, &mut tlb),
        Err(MapError::InputOutOfRange { .. })
    ));
    assert!(matches!(
        t.map(vr(0, 0x1000), PhysAddr::new(1 << 40), RAM, &mut tlb),
        Err(MapError::OutputOutOfRange { .. })
    ));
    assert_eq!(
        t.change_attributes(vr(0x4000_0000, SIZE_2M + PAGE_SIZE), RO, &mut tlb),
        Err(MapError::NotMapped(0x4020_0000))
    );
    assert_eq!(leaves(&t), before);
    assert_eq!(t.table_pages(), pages);
    assert!(tlb.events.is_empty(), "{:?}", tlb.events);
}

#[test]
fn unmap_splits_and_frees_empty_tables() {
    let mut t = table(16);
    let mut tlb = FakeTlb::default();
    t.map(
        vr(0x4000_0000, SIZE_1G),
        PhysAddr::new(0x4000_0000),
        RAM,
        &mut tlb,
    )
    .unwrap();
    assert_eq!(t.table_pages(), 1);
    // Punch a page out of the middle: 1 GiB -> 2 MiB blocks -> pages.
    t.unmap(vr(0x4030_0000, PAGE_SIZE), &mut tlb).unwrap();
    assert_eq!(t.table_pages(), 3);
    assert!(t.translate(VirtAddr::new(0x4030_0000)).is_none());
    let tr = t.translate(VirtAddr::new(0x4030_1000)).unwrap();
    assert_eq!((tr.pa.raw(), tr.level), (0x4030_1000, 3));
    assert_eq!(t.translate(VirtAddr::new(0x4040_0000)).unwrap().level, 2);
    // Unmapping everything returns every table but the root.
    t.unmap(vr(0x4000_0000, SIZE_1G), &mut tlb).unwrap();
    assert_eq!(t.table_pages(), 1);
    assert!(leaves(&t).is_empty());
    assert_eq!(tlb.events.last(), Some(&Event::Sync));
}

#[test]
fn permission_change_needs_no_break() {
    let mut t = table(16);
    let mut tlb = FakeTlb::default();
    t.map(
        vr(0x20_0000, SIZE_2M),
        PhysAddr::new(0x20_0000),
        RAM,
        &mut tlb,
    )
    .unwrap();
    tlb.take();
    t.change_attributes(vr(0x20_0000, SIZE_2M), RO, &mut tlb)
        .unwrap();
    let ev = tlb.take();
    assert!(matches!(ev[0], Event::Write { value, .. } if value & 1 == 1));
    assert_eq!(
        ev[1..],
        [
            Event::Invalidate {
                addr: 0x20_0000,
                level: 2
            },
            Event::Sync
        ]
    );
    assert_eq!(t.translate(VirtAddr::new(0x20_0000)).unwrap().attrs, RO);
}

#[test]
fn pool_exhaustion_changes_nothing() {
    // Root + 1 page: enough for one L2 table, not for L2 + L3.
    let mut t = table(2);
    let mut tlb = FakeTlb::default();
    t.map(
        vr(0x4000_0000, SIZE_1G),
        PhysAddr::new(0x4000_0000),
        RAM,
        &mut tlb,
    )
    .unwrap();
    let before = leaves(&t);
    assert_eq!(
        t.map(vr(0x1000, PAGE_SIZE), PhysAddr::new(0x1000), RAM, &mut tlb),
        Err(MapError::OutOfTables { needed: 2, free: 1 })
    );
    assert_eq!(
        t.unmap(vr(0x4000_1000, PAGE_SIZE), &mut tlb),
        Err(MapError::OutOfTables { needed: 2, free: 1 })
    );
    assert_eq!(leaves(&t), before);
    assert_eq!(t.translate(VirtAddr::new(0x4000_1000)).unwrap().level, 1);
    // What fits still works.
    t.map(vr(0x20_0000, SIZE_2M), PhysAddr::new(0), RAM, &mut tlb)
        .unwrap();
    assert_eq!(t.pool().free_pages(), 0);
}
