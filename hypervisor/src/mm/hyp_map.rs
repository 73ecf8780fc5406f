//! The hypervisor's own EL2 stage-1 map, built from the image layout and the
//! platform: an identity map in which code is read-only and executable,
//! read-only data is read-only and execute-never, data, stacks and free RAM
//! are read-write and execute-never, the loader's blobs (DT, initrd) are
//! read-only, and device registers are Device-nGnRE. Stack guard pages and
//! firmware reservations are left unmapped.

use super::addr::{PhysRange, VirtAddr, VirtRange};
use super::attrs::Shareability;
use super::pgtable::el2::{El2Attrs, El2PageTable};
use super::pgtable::{MapError, PhysToVirt, TableConfig, TlbMaint};

/// MAIR_EL2 index of Normal Write-Back (inner and outer, read/write-allocate).
pub const ATTR_NORMAL_WB: u8 = 0;
/// MAIR_EL2 index of Device-nGnRE.
pub const ATTR_DEVICE_NGNRE: u8 = 1;
/// MAIR_EL2 index of Normal Non-cacheable.
pub const ATTR_NORMAL_NC: u8 = 2;
/// MAIR_EL2 index of Device-nGnRnE.
pub const ATTR_DEVICE_NGNRNE: u8 = 3;

/// MAIR_EL2 with the four attributes above (Arm ARM D23.2, "MAIR_EL2").
pub const MAIR_EL2: u64 = 0xff | (0x04 << 8) | (0x44 << 16);

/// Input address bits of the EL2 map: 48, so any 48-bit physical address
/// can be identity-mapped, whatever the CPU's PARange.
pub const VA_BITS: u32 = 48;

/// How a region of the hypervisor's map may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Code: read-only, executable.
    Code,
    /// Constants and the loader's blobs: read-only, execute-never.
    ReadOnly,
    /// Data, stacks, free RAM: read-write, execute-never.
    ReadWrite,
    /// Device registers: Device-nGnRE, read-write, execute-never.
    Device,
}

impl Use {
    /// The descriptor attributes for this use.
    pub fn attrs(self) -> El2Attrs {
        let normal = |read_only, xn| El2Attrs {
            attr_index: ATTR_NORMAL_WB,
            read_only,
            sh: Shareability::Inner,
            xn,
        };
        match self {
            Use::Code => normal(true, false),
            Use::ReadOnly => normal(true, true),
            Use::ReadWrite => normal(false, true),
            Use::Device => El2Attrs {
                attr_index: ATTR_DEVICE_NGNRE,
                read_only: false,
                sh: Shareability::Outer,
                xn: true,
            },
        }
    }
}

/// The table geometry of the EL2 map: 48-bit input, output up to `pa_bits`,
/// four levels from level 0.
pub fn table_config(pa_bits: u32) -> Result<TableConfig, super::pgtable::ConfigError> {
    TableConfig::new(VA_BITS, pa_bits, 0, 1)
}

/// TCR_EL2 for that geometry (Arm ARM D23.2, "TCR_EL2", E2H = 0): T0SZ for
/// 48 bits, write-back cacheable inner-shareable walks, 4 KiB granule, and
/// the physical address size `ps` (a PARange encoding).
pub fn tcr_el2(ps: u8) -> u64 {
    const RES1: u64 = (1 << 31) | (1 << 23);
    let t0sz = 64 - u64::from(VA_BITS);
    let irgn0 = 0b01 << 8;
    let orgn0 = 0b01 << 10;
    let sh0 = 0b11 << 12;
    RES1 | t0sz | irgn0 | orgn0 | sh0 | (u64::from(ps & 7) << 16)
}

/// SCTLR_EL2 with the MMU, caches, stack alignment checks and
/// write-implies-execute-never on; alignment checks off, little-endian.
pub fn sctlr_el2() -> u64 {
    const RES1: u64 = (1 << 4)
        | (1 << 5)
        | (1 << 11)
        | (1 << 16)
        | (1 << 18)
        | (1 << 22)
        | (1 << 23)
        | (1 << 28)
        | (1 << 29);
    const M: u64 = 1 << 0;
    const C: u64 = 1 << 2;
    const SA: u64 = 1 << 3;
    const I: u64 = 1 << 12;
    const WXN: u64 = 1 << 19;
    RES1 | M | C | SA | I | WXN
}

/// One region of the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// What it is, for error messages.
    pub name: &'static str,
    /// Where it is (identity mapped).
    pub range: PhysRange,
    /// How it may be used.
    pub usage: Use,
}

/// Why the map could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypMapError {
    /// The region being mapped.
    pub region: &'static str,
    /// Its range.
    pub range: PhysRange,
    /// What the table engine said.
    pub error: MapError,
}

impl core::fmt::Display for HypMapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "cannot map {} {}: {}",
            self.region, self.range, self.error
        )
    }
}

/// Identity-maps every region, rounded out to pages. Empty regions are skipped.
pub fn build<M: PhysToVirt>(
    table: &mut El2PageTable<M>,
    regions: impl IntoIterator<Item = Region>,
    tlb: &mut impl TlbMaint<VirtAddr>,
) -> Result<(), HypMapError> {
    for r in regions {
        if r.range.is_empty() {
            continue;
        }
        let fail = |error| HypMapError {
            region: r.name,
            range: r.range,
            error,
        };
        let start = r.range.start().align_down(super::addr::PAGE_SIZE);
        let end = r
            .range
            .end()
            .checked_align_up(super::addr::PAGE_SIZE)
            .ok_or(fail(MapError::InputOutOfRange {
                end: u64::MAX,
                limit: 1 << VA_BITS,
            }))?;
        let va = VirtRange::from_bounds(VirtAddr::new(start.raw()), VirtAddr::new(end.raw()))
            .ok_or(fail(MapError::MisalignedInput {
                start: start.raw(),
                size: r.range.size(),
            }))?;
        table.map(va, start, r.usage.attrs(), tlb).map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::addr::PhysAddr;
    use crate::mm::pgtable::testing::{arena_pool, FakeTlb};
    use crate::mm::pgtable::PageTable;

    fn r(name: &'static str, start: u64, size: u64, usage: Use) -> Region {
        Region {
            name,
            range: PhysRange::new(PhysAddr::new(start), size).unwrap(),
            usage,
        }
    }

    #[test]
    fn sections_get_their_permissions_and_guards_stay_unmapped() {
        let pool = arena_pool(0x7000_0000, 32);
        let mut t: El2PageTable<_> = PageTable::new(table_config(40).unwrap(), pool).unwrap();
        let mut tlb = FakeTlb::default();
        let base = 0x4020_0000;
        let regions = [
            r("text", base, 0x4000, Use::Code),
            r("rodata", base + 0x4000, 0x2000, Use::ReadOnly),
            r("data", base + 0x6000, 0x1000, Use::ReadWrite),
            // guard page at base + 0x7000
            r("stack", base + 0x8000, 0x4000, Use::ReadWrite),
            r("ram", 0x4100_0000, 0x7f00_0000, Use::ReadWrite),
            r("uart", 0x0900_0000, 0x1000, Use::Device),
        ];
        build(&mut t, regions, &mut tlb).unwrap();
        let at = |a: u64| t.translate(VirtAddr::new(a));
        let text = at(base + 0x10).unwrap();
        assert_eq!(text.pa, PhysAddr::new(base + 0x10));
        assert!(text.attrs.read_only && !text.attrs.xn);
        let ro = at(base + 0x4000).unwrap();
        assert!(ro.attrs.read_only && ro.attrs.xn);
        let data = at(base + 0x6000).unwrap();
        assert!(!data.attrs.read_only && data.attrs.xn);
        assert!(at(base + 0x7000).is_none(), "guard page must stay unmapped");
        let dev = at(0x0900_0010).unwrap();
        assert_eq!(dev.attrs.attr_index, ATTR_DEVICE_NGNRE);
        assert!(dev.attrs.xn);
        // 1 GiB-aligned RAM uses a level-1 block where it can.
        let ram = at(0x8000_0000 + 0x1234_5000).unwrap();
        assert_eq!(ram.block_size, 1 << 30);
        assert!(at(0x10).is_none());
    }

    #[test]
    fn overlapping_regions_are_refused_with_names() {
        let pool = arena_pool(0x7000_0000, 16);
        let mut t: El2PageTable<_> = PageTable::new(table_config(40).unwrap(), pool).unwrap();
        let mut tlb = FakeTlb::default();
        let err = build(
            &mut t,
            [
                r("ram", 0x4000_0000, 0x20_0000, Use::ReadWrite),
                r("dtb", 0x4010_0000, 0x1000, Use::ReadOnly),
            ],
            &mut tlb,
        )
        .unwrap_err();
        assert_eq!(err.region, "dtb");
        assert!(matches!(err.error, MapError::AlreadyMapped(_)));
    }

    #[test]
    fn register_fields_match_the_map_they_describe() {
        // Each attribute index the descriptors use names the MAIR_EL2 byte
        // for its memory type (Arm ARM D23.2, "MAIR_EL2").
        let mair = |index: u8| (MAIR_EL2 >> (8 * u32::from(index))) & 0xff;
        assert_eq!(mair(Use::Code.attrs().attr_index), 0xff, "Normal WB RA/WA");
        assert_eq!(mair(Use::ReadWrite.attrs().attr_index), 0xff);
        assert_eq!(mair(Use::Device.attrs().attr_index), 0x04, "Device-nGnRE");
        assert_eq!(mair(ATTR_NORMAL_NC), 0x44, "Normal Non-cacheable");
        assert_eq!(mair(ATTR_DEVICE_NGNRNE), 0x00, "Device-nGnRnE");
        // TCR_EL2: T0SZ gives the map's input size, PS the CPU's PARange,
        // 4 KiB granule (TG0 0), write-back inner-shareable walks.
        for ps in 0..=5u8 {
            let tcr = tcr_el2(ps);
            assert_eq!(64 - (tcr & 0x3f), u64::from(VA_BITS));
            assert_eq!((tcr >> 16) & 7, u64::from(ps));
            assert_eq!((tcr >> 14) & 3, 0);
            assert_eq!(
                ((tcr >> 8) & 3, (tcr >> 10) & 3, (tcr >> 12) & 3),
                (1, 1, 3)
            );
        }
        assert_eq!(tcr_el2(0xf) >> 16 & 7, 7, "PS is a 3-bit field");
        // SCTLR_EL2: MMU, caches, SP alignment and WXN on; alignment
        // checks and big-endian off.
        let sctlr = sctlr_el2();
        for (bit, on) in [
            (0, true),
            (1, false),
            (2, true),
            (3, true),
            (12, true),
            (19, true),
            (25, false),
        ] {
            assert_eq!(sctlr & (1 << bit) != 0, on, "SCTLR_EL2 bit {bit}");
        }
    }
}
