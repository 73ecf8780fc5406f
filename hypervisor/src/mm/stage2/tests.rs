use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use super::*;
use crate::mm::addr::{PAGE_SIZE, SIZE_1G, SIZE_2M};
use crate::mm::attrs::{MemAttr, Shareability};
use crate::mm::pgtable::testing::{arena_pool, Arena, Event, FakeTlb, XorShift};
use crate::mm::pgtable::{classify, leaf_descriptor, level_size, DescKind, Regime, DESC_ADDR_MASK};

impl Stage2TlbMaint for FakeTlb {
    fn invalidate_ipa(&mut self, ipa: Ipa, level: usize) {
        self.events.push(Event::Invalidate {
            addr: ipa.raw(),
            level,
        });
    }
    fn invalidate_all_stage1_for_vmid(&mut self) {
        self.events.push(Event::Stage1Flush);
    }
    fn sync(&mut self) {
        self.events.push(Event::Sync);
    }
    fn descriptor_written(&mut self, table: PhysAddr, index: usize, value: u64) {
        self.events.push(Event::Write {
            table,
            index,
            value,
        });
    }
}

const FWB: Features = Features {
    fwb: true,
    dic: true,
    idc: true,
};

fn ir(start: u64, size: u64) -> IpaRange {
    IpaRange::new(Ipa::new(start), size).unwrap()
}

/// A 40-bit IPA VM (level 1 start, 2 concatenated root tables).
fn vm(pool_pages: usize, features: Features) -> Stage2<Arena> {
    let cfg = Stage2Config::new(2, 40).unwrap();
    Stage2::new(
        cfg,
        Vmid(7),
        features,
        arena_pool(0x2_0000_0000, pool_pages),
    )
    .unwrap()
}

fn leaves(s: &Stage2<Arena>) -> Vec<(u64, u64, usize)> {
    let mut v = Vec::new();
    s.table()
        .for_each_leaf(|l| v.push((l.input.raw(), l.pa.raw(), l.level)));
    v
}

#[test]
fn descriptor_round_trip_randomized() {
    let mut rng = XorShift::new(0xfeed_f00d);
    let aps = [S2Ap::None, S2Ap::ReadOnly, S2Ap::WriteOnly, S2Ap::ReadWrite];
    for _ in 0..5000 {
        let attrs = S2Attrs {
            memattr: MemAttr::new(rng.below(16) as u8).unwrap(),
            s2ap: aps[rng.below(4) as usize],
            sh: Shareability::from_bits(rng.below(4)),
            xn: rng.below(2) == 1,
        };
        let level = 1 + rng.below(3) as usize;
        let oa = rng.next() & DESC_ADDR_MASK & !(level_size(level) - 1);
        let d = leaf_descriptor::<Stage2Regime>(PhysAddr::new(oa), level, &attrs);
        assert_eq!(Stage2Regime::decode_attrs(d), attrs, "{d:#x}");
        assert_eq!(classify(d, level), DescKind::Leaf(PhysAddr::new(oa)));
        // Field positions, read back independently of the bitfield definitions.
        assert_eq!((d >> 2) & 0xf, u64::from(attrs.memattr.bits()));
        assert_eq!((d >> 8) & 3, attrs.sh.bits());
        assert_eq!(d >> 10 & 1, 1, "AF");
        assert_eq!(d >> 53 & 3, if attrs.xn { 0b10 } else { 0 }, "XN[1:0]");
        assert_eq!(d & 0b11, if level == 3 { 0b11 } else { 0b01 });
        // Only the defined fields are ever set.
        assert_eq!(d & !(DESC_ADDR_MASK | 0x7ff | 3 << 53), 0);
    }
}

/// The manual's table (VTCR_EL2.SL0 with a 4 KiB granule and
/// `AArch64.S2InconsistentSL`): for each IPA size, the fewest-levels start level
/// and its concatenated tables. Rows written out, not computed.
const EXPECTED: [(u32, u64, usize); 17] = [
    // (ipa_bits, SL0, root tables)
    (32, 0b00, 4),
    (33, 0b00, 8),
    (34, 0b00, 16),
    (35, 0b01, 1),
    (36, 0b01, 1),
    (37, 0b01, 1),
    (38, 0b01, 1),
    (39, 0b01, 1),
    (40, 0b01, 2),
    (41, 0b01, 4),
    (42, 0b01, 8),
    (43, 0b01, 16),
    (44, 0b10, 1),
    (45, 0b10, 1),
    (46, 0b10, 1),
    (47, 0b10, 1),
    (48, 0b10, 1),
];

#[test]
fn vtcr_for_every_parange_and_ipa_size() {
    let pa_bits = [32, 36, 40, 42, 44, 48, 52];
    for (parange, &pa) in pa_bits.iter().enumerate() {
        for &(ipa, sl0, tables) in &EXPECTED {
            let r = Stage2Config::new(parange as u8, ipa);
            if ipa > pa {
                assert_eq!(
                    r,
                    Err(VtcrError::IpaExceedsPa {
                        ipa_bits: ipa,
                        pa_bits: pa
                    })
                );
                continue;
            }
            let c = r.unwrap();
            assert_eq!((c.sl0(), c.root_tables()), (sl0, tables), "ipa {ipa}");
            let level = match sl0 {
                0b00 => 2,
                0b01 => 1,
                _ => 0,
            };
            // AArch64.S2InconsistentSL: [min, max] IPA bits for this start level.
            let min = (3 - level) * 9 + 12 + 1;
            let max = min + 8 + if level == 0 { 0 } else { 4 };
            assert!((min..=max).contains(&ipa), "ipa {ipa} level {level}");
            // AArch64.S2InvalidSL: level 0 needs PAMax >= 44.
            assert!(level != 0 || pa >= 44);
            let ps = parange.min(5) as u64;
            let want = (64 - u64::from(ipa))
                | sl0 << 6
                | 0b01 << 8
                | 0b01 << 10
                | 0b11 << 12
                | ps << 16
                | 1 << 31;
            assert_eq!(c.vtcr(), want, "parange {parange} ipa {ipa}");
        }
    }
    // PARange 0b0111 is 56 bits (FEAT_D128); stage 2 still uses 48 of them.
    assert_eq!(Stage2Config::new(7, 40).map(|c| c.ps()), Ok(5));
    assert_eq!(Stage2Config::new(8, 40), Err(VtcrError::UnknownPaRange(8)));
    assert_eq!(
        Stage2Config::new(5, 31),
        Err(VtcrError::UnsupportedIpaBits(31))
    );
    assert_eq!(
        Stage2Config::new(6, 49),
        Err(VtcrError::UnsupportedIpaBits(49))
    );
    let msg = alloc::format!("{}", Stage2Config::new(2, 44).unwrap_err());
    assert!(msg.contains("44") && msg.contains("40"), "{msg}");
}

#[test]
fn vttbr_and_concatenated_root_alignment() {
    // 42-bit IPA: 8 concatenated level-1 tables, 32 KiB aligned. The pool
    // starts one page past a 32 KiB boundary, so alignment has to be sought.
    let cfg = Stage2Config::new(3, 42).unwrap();
    let pool = arena_pool(0x4_0000_1000, 32);
    let s2 = Stage2::new(cfg, Vmid(0xab), FWB, pool).unwrap();
    let root = s2.table().root();
    assert!(root.is_aligned(8 * PAGE_SIZE), "{root:?}");
    assert_eq!(s2.vttbr(), root.raw() | 0xab << 48);
    assert_eq!(s2.table().table_pages(), 8);
}

#[test]
fn one_gib_of_aligned_ram_is_one_block() {
    let mut s2 = vm(8, FWB);
    let mut tlb = FakeTlb::default();
    s2.map_ram(
        ir(0x4000_0000, SIZE_1G),
        PhysAddr::new(0x8000_0000),
        &mut tlb,
    )
    .unwrap();
    assert_eq!(leaves(&s2), [(0x4000_0000, 0x8000_0000, 1)]);
    assert_eq!(s2.table().table_pages(), 2, "the two root pages only");
    let t = s2.translate(Ipa::new(0x7fff_fff8)).unwrap();
    assert_eq!(t.pa, PhysAddr::new(0xbfff_fff8));
    assert_eq!(t.attrs.memattr, MemAttr::FWB_FORCE_WB);
    assert!(!t.attrs.xn);
}

/// Independent count of the minimum table pages: split each range greedily
/// into the largest aligned blocks, then count the distinct level-1 entries
/// that need a level-2 table and level-2 entries that need a level-3 table.
fn minimum_tables(root_pages: usize, ranges: &[(u64, u64, u64)]) -> usize {
    let mut l2_tables = BTreeSet::new();
    let mut l3_tables = BTreeSet::new();
    for &(ipa, pa, size) in ranges {
        let mut off = 0;
        while off < size {
            let (i, p) = (ipa + off, pa + off);
            let step = [SIZE_1G, SIZE_2M, PAGE_SIZE]
                .into_iter()
                .find(|&b| i % b == 0 && p % b == 0 && size - off >= b)
                .unwrap();
            if step < SIZE_1G {
                l2_tables.insert(i / SIZE_1G);
            }
            if step < SIZE_2M {
                l3_tables.insert(i / SIZE_2M);
            }
            off += step;
        }
    }
    root_pages + l2_tables.len() + l3_tables.len()
}

#[test]
fn layout_uses_minimum_table_pages() {
    let mut s2 = vm(16, FWB);
    let mut tlb = FakeTlb::default();
    let ram = (0x4000_0000, 0x4000_0000, SIZE_1G + SIZE_2M + PAGE_SIZE);
    let bar = (0x80_0000_0000, 0x10_0000_0000, 64 << 20);
    s2.map_ram(ir(ram.0, ram.2), PhysAddr::new(ram.1), &mut tlb)
        .unwrap();
    s2.map_passthrough_bar(
        ir(bar.0, bar.2),
        PhysAddr::new(bar.1),
        BarPolicy::GuestChoice,
        &mut tlb,
    )
    .unwrap();
    let want = minimum_tables(2, &[ram, bar]);
    assert_eq!(want, 5);
    assert_eq!(s2.table().table_pages(), want);
    let bar_leaf = s2.translate(Ipa::new(0x80_0000_0000 + (63 << 20))).unwrap();
    assert_eq!(bar_leaf.level, 2);
    assert_eq!(bar_leaf.pa, PhysAddr::new(0x10_0000_0000 + (63 << 20)));
    assert!(bar_leaf.attrs.xn);
    assert_eq!(bar_leaf.attrs.memattr, MemAttr::NORMAL_NC);
}

#[test]
fn intents_pick_attributes() {
    let mut s2 = vm(16, Features::default());
    let mut tlb = FakeTlb::default();
    assert!(s2.ram_needs_clean_to_poc());
    s2.map_ram(ir(0, SIZE_2M), PhysAddr::new(0), &mut tlb)
        .unwrap();
    s2.map_device(
        ir(0x900_0000, PAGE_SIZE),
        PhysAddr::new(0x900_0000),
        &mut tlb,
    )
    .unwrap();
    let ram = s2.translate(Ipa::new(0)).unwrap().attrs;
    assert_eq!(
        (ram.memattr, ram.xn, ram.s2ap),
        (MemAttr::NORMAL_WB, false, S2Ap::ReadWrite)
    );
    assert_eq!(ram.sh, Shareability::Inner);
    let dev = s2.translate(Ipa::new(0x900_0000)).unwrap().attrs;
    assert_eq!((dev.memattr, dev.xn), (MemAttr::DEVICE_NGNRE, true));
    let err = s2
        .map_passthrough_bar(
            ir(0x1000_0000, PAGE_SIZE),
            PhysAddr::new(0x1000_0000),
            BarPolicy::Cacheable,
            &mut tlb,
        )
        .unwrap_err();
    assert_eq!(
        err,
        Stage2Error::Attr(AttrError::CacheableNeeds {
            missing: "FEAT_S2FWB and CTR_EL0.DIC"
        })
    );
    assert!(s2.translate(Ipa::new(0x1000_0000)).is_none());
}

#[test]
fn splitting_a_gib_block_is_break_before_make() {
    let mut s2 = vm(8, FWB);
    let mut tlb = FakeTlb::default();
    s2.map_ram(
        ir(0x4000_0000, SIZE_1G),
        PhysAddr::new(0x8000_0000),
        &mut tlb,
    )
    .unwrap();
    assert_eq!(tlb.take(), {
        let root = s2.table().root();
        [
            Event::Write {
                table: root,
                index: 1,
                value: s2.walk(Ipa::new(0x4000_0000)).last().unwrap().desc,
            },
            Event::Sync,
        ]
    });
    let page = 0x4012_3000;
    let device = s2
        .attrs_for(MemoryIntent::PassthroughBar(BarPolicy::Device))
        .unwrap();
    s2.change_attributes(ir(page, PAGE_SIZE), device, &mut tlb)
        .unwrap();
    let ev = tlb.take();

    let root = s2.table().root();
    let walk = s2.walk(Ipa::new(page));
    let steps: Vec<_> = walk.steps().copied().collect();
    assert_eq!(steps.len(), 3);
    let (l2, l3) = match (steps[0].kind, steps[1].kind) {
        (DescKind::Table(a), DescKind::Table(b)) => (a, b),
        other => panic!("{other:?}"),
    };
    let write = |table, index, value| Event::Write {
        table,
        index,
        value,
    };
    let want = [
        // 1 GiB block -> level-2 table.
        write(root, 1, 0),
        Event::Invalidate {
            addr: 0x4000_0000,
            level: 1,
        },
        Event::Stage1Flush,
        Event::Sync,
        write(root, 1, steps[0].desc),
        // 2 MiB block -> level-3 table.
        write(l2, 0, 0),
        Event::Invalidate {
            addr: 0x4000_0000,
            level: 2,
        },
        Event::Stage1Flush,
        Event::Sync,
        write(l2, 0, steps[1].desc),
        // The page itself changes memory type: break-before-make too.
        write(l3, 0x123, 0),
        Event::Invalidate {
            addr: page,
            level: 3,
        },
        Event::Stage1Flush,
        Event::Sync,
        write(l3, 0x123, steps[2].desc),
        // Final barrier: nothing left to invalidate.
        Event::Sync,
    ];
    assert_eq!(ev, want);

    // Translations around every 4 KiB and 2 MiB boundary near the page.
    let ram = s2.attrs_for(MemoryIntent::GuestRam).unwrap();
    let probes = [
        (0x3fff_f000, None),
        (0x4000_0000, Some((3, ram))),
        (0x4012_2ff8, Some((3, ram))),
        (0x4012_3000, Some((3, device))),
        (0x4012_3ff8, Some((3, device))),
        (0x4012_4000, Some((3, ram))),
        (0x401f_f000, Some((3, ram))),
        (0x4020_0000, Some((2, ram))),
        (0x403f_ffff, Some((2, ram))),
        (0x7fe0_0000, Some((2, ram))),
        (0x7fff_f000, Some((2, ram))),
        (0x8000_0000, None),
    ];
    for (ipa, want) in probes {
        let got = s2.translate(Ipa::new(ipa));
        match want {
            None => assert!(got.is_none(), "{ipa:#x}"),
            Some((level, attrs)) => {
                let t = got.unwrap_or_else(|| panic!("{ipa:#x} unmapped"));
                assert_eq!(t.pa.raw(), ipa - 0x4000_0000 + 0x8000_0000, "{ipa:#x}");
                assert_eq!((t.level, t.attrs), (level, attrs), "{ipa:#x}");
            }
        }
    }
    // 1 root (2 pages) + one level-2 + one level-3 table.
    assert_eq!(s2.table().table_pages(), 4);
}

#[test]
fn refuses_overlap_misalignment_and_out_of_range() {
    let mut s2 = vm(8, FWB);
    let mut tlb = FakeTlb::default();
    s2.map_ram(
        ir(0x4000_0000, SIZE_2M),
        PhysAddr::new(0x4000_0000),
        &mut tlb,
    )
    .unwrap();
    tlb.take();
    let pa = PhysAddr::new(0x1_0000_0000);
    let e = |r| Stage2Error::Map(r);
    assert_eq!(
        s2.map_device(ir(0x401f_f000, 0x2000), pa, &mut tlb),
        Err(e(MapError::AlreadyMapped(0x401f_f000)))
    );
    assert!(matches!(
        s2.map_device(ir(0x5000_0800, PAGE_SIZE), pa, &mut tlb),
        Err(Stage2Error::Map(MapError::MisalignedInput { .. }))
    ));
    assert_eq!(
        s2.map_device(ir(0x5000_0000, PAGE_SIZE), PhysAddr::new(0x123), &mut tlb),
        Err(e(MapError::MisalignedOutput(PhysAddr::new(0x123))))
    );
    assert_eq!(
        s2.map_device(ir(1 << 40, PAGE_SIZE), pa, &mut tlb),
        Err(e(MapError::InputOutOfRange {
            end: (1 << 40) + PAGE_SIZE,
            limit: 1 << 40
        }))
    );
    assert!(tlb.events.is_empty());
    assert_eq!(leaves(&s2), [(0x4000_0000, 0x4000_0000, 2)]);
}

#[test]
fn pool_exhaustion_keeps_previous_mappings() {
    // Two root pages and one spare.
    let mut s2 = vm(3, FWB);
    let mut tlb = FakeTlb::default();
    s2.map_ram(
        ir(0x4000_0000, SIZE_1G),
        PhysAddr::new(0x4000_0000),
        &mut tlb,
    )
    .unwrap();
    s2.map_ram(
        ir(0x8000_0000, SIZE_2M),
        PhysAddr::new(0x8000_0000),
        &mut tlb,
    )
    .unwrap();
    assert_eq!(s2.table().pool().free_pages(), 0);
    let before = leaves(&s2);
    tlb.take();
    assert_eq!(
        s2.map_device(
            ir(0x9000_0000, PAGE_SIZE),
            PhysAddr::new(0x9000_0000),
            &mut tlb
        ),
        Err(Stage2Error::Map(MapError::OutOfTables {
            needed: 1,
            free: 0
        }))
    );
    assert_eq!(
        s2.change_intent(
            ir(0x4000_0000, PAGE_SIZE),
            MemoryIntent::PlatformMmio,
            &mut tlb
        ),
        Err(Stage2Error::Map(MapError::OutOfTables {
            needed: 2,
            free: 0
        }))
    );
    assert!(tlb.events.is_empty());
    assert_eq!(leaves(&s2), before);
    let t = s2.translate(Ipa::new(0x4abc_d123)).unwrap();
    assert_eq!((t.pa.raw(), t.level), (0x4abc_d123, 1));
    let t = s2.translate(Ipa::new(0x801f_f000)).unwrap();
    assert_eq!((t.pa.raw(), t.level), (0x801f_f000, 2));
    // Unmapping gives the table back; then the map fits.
    s2.unmap(ir(0x8000_0000, SIZE_2M), &mut tlb).unwrap();
    assert_eq!(s2.table().pool().free_pages(), 1);
    s2.map_device(
        ir(0x9000_0000, SIZE_2M),
        PhysAddr::new(0x9000_0000),
        &mut tlb,
    )
    .unwrap();
}

#[test]
fn unmap_frees_tables_after_the_invalidation_completes() {
    let mut s2 = vm(8, FWB);
    let mut tlb = FakeTlb::default();
    s2.map_ram(
        ir(0x4000_0000, PAGE_SIZE),
        PhysAddr::new(0x4000_0000),
        &mut tlb,
    )
    .unwrap();
    assert_eq!(s2.table().table_pages(), 4);
    tlb.take();
    s2.unmap(ir(0x4000_0000, PAGE_SIZE), &mut tlb).unwrap();
    assert_eq!(s2.table().table_pages(), 2);
    let ev = tlb.take();
    let invalidations: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Invalidate { addr, level } => Some((*addr, *level)),
            _ => None,
        })
        .collect();
    assert_eq!(
        invalidations,
        [(0x4000_0000, 3), (0x4000_0000, 2), (0x4000_0000, 1)]
    );
    assert_eq!(ev[ev.len() - 2..], [Event::Stage1Flush, Event::Sync]);
}
