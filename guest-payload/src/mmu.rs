//! Stage-1 translation for EL1: memory types, descriptors and an identity map
//! built from 4 KiB-granule tables (Arm ARM D8, "The AArch64 Virtual Memory
//! System Architecture").
//!
//! The table logic is pure: it reaches table memory only through
//! [`TableMemory`] and TLB maintenance only through [`TlbMaintenance`], so it
//! runs in host tests against a fake; `arch::mmu` supplies the real ones.

use core::fmt;

/// Translation granule and page size.
pub const PAGE_SIZE: u64 = 4096;
/// Descriptors per table.
pub const ENTRIES: usize = 512;
/// Virtual address width: T0SZ = 64 - 48, so walks start at level 0 and
/// PCIe windows above 512 GiB are reachable.
pub const VA_BITS: u32 = 48;

/// The memory types the guest maps with, in MAIR_EL1 index order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    /// Device-nGnRnE, MAIR index 0.
    DeviceNGnRnE,
    /// Device-nGnRE, MAIR index 1: ordinary MMIO.
    DeviceNGnRE,
    /// Device-GRE, MAIR index 2: gathering and reordering allowed.
    DeviceGRE,
    /// Normal Non-cacheable, MAIR index 3: write-combining.
    NormalNC,
    /// Normal Write-Back (read/write-allocate, non-transient), MAIR index 4.
    NormalWB,
    /// Device-nGRE, MAIR index 5: reordering but no gathering. Appended last
    /// so the other types keep their indexes.
    DeviceNGRE,
}

impl MemType {
    /// All types, in MAIR index order.
    pub const ALL: [MemType; 6] = [
        MemType::DeviceNGnRnE,
        MemType::DeviceNGnRE,
        MemType::DeviceGRE,
        MemType::NormalNC,
        MemType::NormalWB,
        MemType::DeviceNGRE,
    ];

    /// The types the write-combine benchmark measures, strongest first.
    pub const MEASURED: [MemType; 5] = [
        MemType::DeviceNGnRnE,
        MemType::DeviceNGnRE,
        MemType::DeviceGRE,
        MemType::NormalNC,
        MemType::NormalWB,
    ];

    /// AttrIndx: the MAIR_EL1 slot that holds this type.
    pub fn index(self) -> u64 {
        self as u64
    }

    /// The type stored at MAIR_EL1 slot `index`.
    pub fn from_index(index: u64) -> Option<MemType> {
        Self::ALL.get(usize::try_from(index).ok()?).copied()
    }

    /// The MAIR attribute encoding (Arm ARM D19.2.101, MAIR_EL1).
    pub fn mair_attr(self) -> u8 {
        match self {
            MemType::DeviceNGnRnE => 0x00,
            MemType::DeviceNGnRE => 0x04,
            MemType::DeviceGRE => 0x0c,
            MemType::NormalNC => 0x44,
            MemType::NormalWB => 0xff,
            MemType::DeviceNGRE => 0x08,
        }
    }

    /// The lower-case name used in machine-readable results
    /// (`device-ngnre`, `normal-nc`, ...).
    pub fn slug(self) -> &'static str {
        attr_slug(self.mair_attr())
    }

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        attr_name(self.mair_attr())
    }

    /// Device memory: never executable, unaligned accesses fault.
    pub fn is_device(self) -> bool {
        matches!(
            self,
            MemType::DeviceNGnRnE | MemType::DeviceNGnRE | MemType::DeviceNGRE | MemType::DeviceGRE
        )
    }
}

impl fmt::Display for MemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Names a MAIR-encoded attribute, as PAR_EL1.ATTR reports the combined
/// stage-1 and stage-2 result.
pub fn attr_name(attr: u8) -> &'static str {
    match attr {
        0x00 => "Device-nGnRnE",
        0x04 => "Device-nGnRE",
        0x08 => "Device-nGRE",
        0x0c => "Device-GRE",
        0x44 => "Normal-NC",
        0xff => "Normal-WB",
        0xbb => "Normal-WT",
        _ => "other",
    }
}

/// The lower-case name of a MAIR-encoded attribute as the write-combine
/// results spell it: the four Device types, `normal-nc` for Non-cacheable
/// inner and outer, `normal-wt` when either half is Write-Through, and
/// `normal-wb` for any other cacheable combination. Encodings that are not
/// Device or Normal (Device with the low bits set, FEAT_XS and FEAT_MTE
/// forms) are `other`.
pub fn attr_slug(attr: u8) -> &'static str {
    let (outer, inner) = (attr >> 4, attr & 0xf);
    if outer == 0 {
        return match inner {
            0x0 => "device-ngnrne",
            0x4 => "device-ngnre",
            0x8 => "device-ngre",
            0xc => "device-gre",
            _ => "other",
        };
    }
    // A Normal half: 0b0100 Non-cacheable, 0b00RW (RW != 00) and 0b10RW
    // Write-Through, 0b01RW (RW != 00) and 0b11RW Write-Back.
    let kind = |half: u8| match half {
        0x4 => Some('n'),
        0x0 => None,
        0x1..=0x3 | 0x8..=0xb => Some('t'),
        _ => Some('b'),
    };
    match (kind(outer), kind(inner)) {
        (Some('n'), Some('n')) => "normal-nc",
        (Some(o), Some(i)) if o == 't' || i == 't' => "normal-wt",
        (Some(_), Some(_)) => "normal-wb",
        _ => "other",
    }
}

/// MAIR_EL1 with every [`MemType`] at its index.
pub const MAIR_EL1: u64 = {
    let mut value = 0u64;
    let mut i = 0;
    while i < MemType::ALL.len() {
        let attr = match MemType::ALL[i] {
            MemType::DeviceNGnRnE => 0x00u64,
            MemType::DeviceNGnRE => 0x04,
            MemType::DeviceGRE => 0x0c,
            MemType::NormalNC => 0x44,
            MemType::NormalWB => 0xff,
            MemType::DeviceNGRE => 0x08,
        };
        value |= attr << (8 * i);
        i += 1;
    }
    value
};

/// TCR_EL1 for the identity map: TTBR0 only (EPD1), 48-bit VA, 4 KiB granule,
/// walks Inner Shareable and Write-Back cacheable, and the intermediate
/// physical address size taken from ID_AA64MMFR0_EL1.PARange (capped at
/// 48 bits, the largest output a 4 KiB granule gives without FEAT_LPA2).
pub fn tcr_el1(pa_range: u8) -> u64 {
    let t0sz = u64::from(64 - VA_BITS);
    let irgn0 = 0b01 << 8;
    let orgn0 = 0b01 << 10;
    let sh0 = 0b11 << 12;
    let tg0_4k = 0b00 << 14;
    let epd1 = 1 << 23;
    let tg1_4k = 0b10 << 30;
    let ips = u64::from(pa_range.min(0b101)) << 32;
    t0sz | irgn0 | orgn0 | sh0 | tg0_4k | epd1 | tg1_4k | ips
}

/// SCTLR_EL1 with the MMU off: instruction cache on, SP alignment checks on,
/// alignment checks off, little-endian; RES1 bits set.
pub const SCTLR_EL1_MMU_OFF: u64 = SCTLR_RES1 | SCTLR_I | SCTLR_SA | SCTLR_SA0;
/// SCTLR_EL1 with the MMU and both caches on. A = 0, so unaligned accesses to
/// Normal memory work (the guest tells memory types apart that way).
pub const SCTLR_EL1_MMU_ON: u64 = SCTLR_EL1_MMU_OFF | SCTLR_M | SCTLR_C;

const SCTLR_M: u64 = 1 << 0;
const SCTLR_C: u64 = 1 << 2;
const SCTLR_SA: u64 = 1 << 3;
const SCTLR_SA0: u64 = 1 << 4;
const SCTLR_I: u64 = 1 << 12;
/// Bits 11, 20, 22, 23, 28, 29: RES1 in Armv8.0 (EOS, TSCXT, EIS, SPAN,
/// nTLSMD, LSMAOE with later features; 1 keeps their Armv8.0 behaviour).
const SCTLR_RES1: u64 = (1 << 11) | (1 << 20) | (1 << 22) | (1 << 23) | (1 << 28) | (1 << 29);

const DESC_VALID: u64 = 1 << 0;
const DESC_TABLE_OR_PAGE: u64 = 1 << 1;
const DESC_ATTR_SHIFT: u64 = 2;
const DESC_ATTR_MASK: u64 = 0b111 << DESC_ATTR_SHIFT;
const DESC_SH_INNER: u64 = 0b11 << 8;
const DESC_AF: u64 = 1 << 10;
/// AP\[1\]: EL0 may access the page (AP\[2\] = 0: read and write).
const DESC_AP_EL0: u64 = 1 << 6;
const DESC_PXN: u64 = 1 << 53;
const DESC_UXN: u64 = 1 << 54;
/// Output address bits [47:12] of a descriptor.
pub const DESC_ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Bytes mapped by one entry at `level` (0 to 3).
pub fn level_size(level: usize) -> u64 {
    1 << (12 + 9 * (3 - level))
}

fn level_index(va: u64, level: usize) -> usize {
    ((va >> (12 + 9 * (3 - level))) & (ENTRIES as u64 - 1)) as usize
}

/// A leaf (block or page) descriptor: EL1 read/write, EL0 no access, access
/// flag set, Inner Shareable. Only Normal Write-Back memory is executable:
/// guest RAM is mapped read-write-executable, which a test guest may afford;
/// everything else is execute-never.
pub fn leaf_descriptor(pa: u64, level: usize, ty: MemType) -> u64 {
    let kind = if level == 3 {
        DESC_VALID | DESC_TABLE_OR_PAGE
    } else {
        DESC_VALID
    };
    let xn = if ty == MemType::NormalWB {
        0
    } else {
        DESC_PXN | DESC_UXN
    };
    kind | (pa & DESC_ADDR_MASK) | (ty.index() << DESC_ATTR_SHIFT) | DESC_SH_INNER | DESC_AF | xn
}

/// A table descriptor pointing at the next-level table at `pa`.
pub fn table_descriptor(pa: u64) -> u64 {
    DESC_VALID | DESC_TABLE_OR_PAGE | (pa & DESC_ADDR_MASK)
}

fn is_valid(desc: u64) -> bool {
    desc & DESC_VALID != 0
}

fn is_table(desc: u64, level: usize) -> bool {
    level < 3 && desc & (DESC_VALID | DESC_TABLE_OR_PAGE) == DESC_VALID | DESC_TABLE_OR_PAGE
}

/// Where table memory comes from and how entries are read and written.
pub trait TableMemory {
    /// Allocates a zeroed, page-aligned table and returns its physical address.
    fn alloc_table(&mut self) -> Option<u64>;
    /// Reads entry `index` of the table at `table`.
    fn read(&mut self, table: u64, index: usize) -> u64;
    /// Writes entry `index` of the table at `table`; the write must reach
    /// memory in program order (the walker may be live).
    fn write(&mut self, table: u64, index: usize, value: u64);
}

/// The TLB maintenance that a change of a live mapping needs.
pub trait TlbMaintenance {
    /// After a valid entry covering `va` was made invalid: make the write
    /// visible, invalidate the TLB entries for `va` and wait for completion
    /// (DSB ISHST; TLBI VAE1IS; DSB ISH).
    fn invalidate_va(&mut self, va: u64);
    /// After new entries were written: make them visible to the walker and
    /// to the instructions that follow (DSB ISH; ISB).
    fn publish(&mut self);
}

/// Why a mapping request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The table pool is exhausted.
    OutOfTables,
    /// Address or size not page aligned, or a zero size.
    Unaligned,
    /// Beyond the 48-bit address space.
    OutOfRange,
    /// Part of the range is mapped already.
    AlreadyMapped {
        /// The first address found mapped.
        va: u64,
    },
    /// Part of the range is not mapped.
    NotMapped {
        /// The first address found unmapped.
        va: u64,
    },
    /// A block mapping extends beyond the range; it would have to be split.
    SplitsBlock {
        /// The start of that block.
        va: u64,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::OutOfTables => write!(f, "page-table pool exhausted"),
            MapError::Unaligned => write!(f, "range not page aligned or empty"),
            MapError::OutOfRange => write!(f, "range beyond the 48-bit address space"),
            MapError::AlreadyMapped { va } => write!(f, "{va:#x} is mapped already"),
            MapError::NotMapped { va } => write!(f, "{va:#x} is not mapped"),
            MapError::SplitsBlock { va } => {
                write!(f, "block at {va:#x} extends beyond the range")
            }
        }
    }
}

/// One leaf of the map, as found by a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Start of the virtual range the leaf maps.
    pub va: u64,
    /// Start of the physical range.
    pub pa: u64,
    /// Level of the descriptor (1 and 2 are blocks, 3 is a page).
    pub level: usize,
    /// Memory type, from AttrIndx.
    pub ty: MemType,
    /// Whether the leaf is executable at EL1.
    pub executable: bool,
}

impl Leaf {
    /// Bytes mapped by the leaf.
    pub fn size(&self) -> u64 {
        level_size(self.level)
    }
}

/// A stage-1 translation table rooted at a level-0 table.
pub struct PageTable<M: TableMemory> {
    root: u64,
    mem: M,
}

impl<M: TableMemory> PageTable<M> {
    /// Creates an empty table in `mem`.
    pub fn new(mut mem: M) -> Result<Self, MapError> {
        let root = mem.alloc_table().ok_or(MapError::OutOfTables)?;
        Ok(PageTable { root, mem })
    }

    /// The physical address of the level-0 table, for TTBR0_EL1.
    pub fn root(&self) -> u64 {
        self.root
    }

    fn check_range(va: u64, size: u64) -> Result<u64, MapError> {
        if size == 0 || !va.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Unaligned);
        }
        let end = va.checked_add(size).ok_or(MapError::OutOfRange)?;
        if end > 1 << VA_BITS {
            return Err(MapError::OutOfRange);
        }
        Ok(end)
    }

    /// Maps `[va, va + size)` to `[pa, pa + size)` as `ty`, with the largest
    /// blocks alignment allows. Fails, leaving earlier parts mapped, if any
    /// page is mapped already.
    pub fn map(&mut self, va: u64, pa: u64, size: u64, ty: MemType) -> Result<(), MapError> {
        let end = Self::check_range(va, size)?;
        if !pa.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Unaligned);
        }
        if let Some(va) = self.first_mapped(va, end) {
            return Err(MapError::AlreadyMapped { va });
        }
        let (mut va, mut pa) = (va, pa);
        while va < end {
            let level = (1..=3)
                .find(|&level| {
                    let block = level_size(level);
                    va % block == 0 && pa % block == 0 && end - va >= block
                })
                .unwrap_or(3);
            self.map_one(va, pa, level, ty)?;
            va += level_size(level);
            pa += level_size(level);
        }
        Ok(())
    }

    fn map_one(&mut self, va: u64, pa: u64, level: usize, ty: MemType) -> Result<(), MapError> {
        let mut table = self.root;
        for current in 0..level {
            let index = level_index(va, current);
            let desc = self.mem.read(table, index);
            table = if is_table(desc, current) {
                desc & DESC_ADDR_MASK
            } else if is_valid(desc) {
                return Err(MapError::AlreadyMapped { va });
            } else {
                let next = self.mem.alloc_table().ok_or(MapError::OutOfTables)?;
                self.mem.write(table, index, table_descriptor(next));
                next
            };
        }
        let index = level_index(va, level);
        if is_valid(self.mem.read(table, index)) {
            return Err(MapError::AlreadyMapped { va });
        }
        self.mem.write(table, index, leaf_descriptor(pa, level, ty));
        Ok(())
    }

    /// The leaf that maps `va` with the descriptor's table and index, or
    /// the level at which the walk met an invalid entry.
    fn lookup(&mut self, va: u64) -> Result<(Leaf, u64, usize), usize> {
        if va >= 1 << VA_BITS {
            return Err(0);
        }
        let mut table = self.root;
        for level in 0..=3 {
            let index = level_index(va, level);
            let desc = self.mem.read(table, index);
            if !is_valid(desc) {
                return Err(level);
            }
            if is_table(desc, level) {
                table = desc & DESC_ADDR_MASK;
                continue;
            }
            let size = level_size(level);
            let ty = MemType::from_index((desc & DESC_ATTR_MASK) >> DESC_ATTR_SHIFT);
            let (true, Some(ty)) = (level > 0, ty) else {
                return Err(level);
            };
            let leaf = Leaf {
                va: va & !(size - 1),
                pa: desc & DESC_ADDR_MASK & !(size - 1),
                level,
                ty,
                executable: desc & DESC_PXN == 0,
            };
            return Ok((leaf, table, index));
        }
        Err(3)
    }

    fn walk(&mut self, va: u64) -> Option<(Leaf, u64, usize)> {
        self.lookup(va).ok()
    }

    /// The leaf that maps `va`, if any.
    pub fn leaf(&mut self, va: u64) -> Option<Leaf> {
        self.walk(va).map(|(leaf, _, _)| leaf)
    }

    /// Translates `va` to a physical address and memory type.
    pub fn translate(&mut self, va: u64) -> Option<(u64, MemType)> {
        let leaf = self.leaf(va)?;
        Some((leaf.pa + (va - leaf.va), leaf.ty))
    }

    /// The first mapped page in `[va, end)`, skipping unmapped holes by the
    /// size of the entry found invalid, so large ranges are checked quickly.
    fn first_mapped(&mut self, va: u64, end: u64) -> Option<u64> {
        let mut va = va;
        while va < end {
            match self.lookup(va) {
                Ok(_) => return Some(va),
                Err(level) => {
                    let size = level_size(level);
                    va = (va & !(size - 1)) + size;
                }
            }
        }
        None
    }

    /// Maps one page that EL0 may read and write, and execute if `exec`
    /// (EL1 never executes it): for the 32-bit EL0 tasks of the hostile
    /// exit probes. Both addresses must be page aligned and `va` unmapped.
    pub fn map_el0_page(
        &mut self,
        va: u64,
        pa: u64,
        ty: MemType,
        exec: bool,
    ) -> Result<(), MapError> {
        self.map(va, pa, PAGE_SIZE, ty)?;
        let (_, table, index) = self.walk(va).ok_or(MapError::NotMapped { va })?;
        let desc = self.mem.read(table, index) | DESC_AP_EL0 | DESC_PXN;
        let desc = if exec {
            desc & !DESC_UXN
        } else {
            desc | DESC_UXN
        };
        self.mem.write(table, index, desc);
        Ok(())
    }

    /// Makes the level-`level` entry for `va` (0 to 2) a table descriptor
    /// pointing at `table_pa`, whatever lies there: a hostile guest's
    /// stage-1 table in a hole or in MMIO. Tables above it are allocated as
    /// needed; the entry must be invalid.
    pub fn map_foreign_table(
        &mut self,
        va: u64,
        level: usize,
        table_pa: u64,
    ) -> Result<(), MapError> {
        Self::check_range(va, PAGE_SIZE)?;
        if level > 2 || !table_pa.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Unaligned);
        }
        let mut table = self.root;
        for current in 0..level {
            let index = level_index(va, current);
            let desc = self.mem.read(table, index);
            table = if is_table(desc, current) {
                desc & DESC_ADDR_MASK
            } else if is_valid(desc) {
                return Err(MapError::AlreadyMapped { va });
            } else {
                let next = self.mem.alloc_table().ok_or(MapError::OutOfTables)?;
                self.mem.write(table, index, table_descriptor(next));
                next
            };
        }
        let index = level_index(va, level);
        if is_valid(self.mem.read(table, index)) {
            return Err(MapError::AlreadyMapped { va });
        }
        self.mem.write(table, index, table_descriptor(table_pa));
        Ok(())
    }

    /// Changes the memory type of the mapped range `[va, va + size)`, which
    /// must be covered by leaves lying wholly inside it (no block is split).
    /// Each leaf is changed with break-before-make, as a change of memory type
    /// requires (Arm ARM D8.16.1, "Using break-before-make when updating
    /// translation table entries"). Nothing changes if the check fails.
    /// Returns the number of descriptors rewritten.
    pub fn remap(
        &mut self,
        va: u64,
        size: u64,
        ty: MemType,
        tlb: &mut impl TlbMaintenance,
    ) -> Result<usize, MapError> {
        let end = Self::check_range(va, size)?;
        let mut cursor = va;
        while cursor < end {
            let (leaf, _, _) = self
                .walk(cursor)
                .ok_or(MapError::NotMapped { va: cursor })?;
            if leaf.va < va || leaf.va + leaf.size() > end {
                return Err(MapError::SplitsBlock { va: leaf.va });
            }
            cursor = leaf.va + leaf.size();
        }
        let mut cursor = va;
        let mut changed = 0;
        while cursor < end {
            let (leaf, table, index) = self
                .walk(cursor)
                .ok_or(MapError::NotMapped { va: cursor })?;
            self.mem.write(table, index, 0);
            tlb.invalidate_va(leaf.va);
            self.mem
                .write(table, index, leaf_descriptor(leaf.pa, leaf.level, ty));
            changed += 1;
            cursor = leaf.va + leaf.size();
        }
        tlb.publish();
        Ok(changed)
    }
}

/// Calls `f` for each part of `region` (base, size) left after removing the
/// page-aligned `holes`, in address order.
pub fn for_each_outside(base: u64, size: u64, holes: &[(u64, u64)], mut f: impl FnMut(u64, u64)) {
    let end = base + size;
    let mut cursor = base;
    while cursor < end {
        // The nearest hole that still overlaps [cursor, end).
        let next = holes
            .iter()
            .filter(|&&(h, s)| s > 0 && h + s > cursor && h < end)
            .min_by_key(|&&(h, _)| h);
        match next {
            Some(&(h, s)) => {
                if h > cursor {
                    f(cursor, h - cursor);
                }
                cursor = h + s;
            }
            None => {
                f(cursor, end - cursor);
                cursor = end;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Tables live in a map keyed by fake physical addresses.
    #[derive(Default)]
    struct FakeMemory {
        tables: BTreeMap<u64, Vec<u64>>,
        limit: usize,
        writes: Vec<(u64, usize, u64)>,
    }

    impl FakeMemory {
        fn with_limit(limit: usize) -> Self {
            FakeMemory {
                limit,
                ..Default::default()
            }
        }
    }

    impl TableMemory for FakeMemory {
        fn alloc_table(&mut self) -> Option<u64> {
            if self.tables.len() >= self.limit {
                return None;
            }
            let pa = 0x8000_0000 + self.tables.len() as u64 * PAGE_SIZE;
            self.tables.insert(pa, vec![0; ENTRIES]);
            Some(pa)
        }
        fn read(&mut self, table: u64, index: usize) -> u64 {
            self.tables[&table][index]
        }
        fn write(&mut self, table: u64, index: usize, value: u64) {
            self.writes.push((table, index, value));
            self.tables.get_mut(&table).unwrap()[index] = value;
        }
    }

    #[derive(Default)]
    struct FakeTlb {
        invalidated: Vec<u64>,
        published: usize,
    }

    impl TlbMaintenance for FakeTlb {
        fn invalidate_va(&mut self, va: u64) {
            self.invalidated.push(va);
        }
        fn publish(&mut self) {
            self.published += 1;
        }
    }

    fn table() -> PageTable<FakeMemory> {
        PageTable::new(FakeMemory::with_limit(64)).unwrap()
    }

    #[test]
    fn mair_holds_each_type_at_its_index() {
        assert_eq!(MAIR_EL1, 0x08ff_440c_0400);
        for ty in MemType::ALL {
            let attr = (MAIR_EL1 >> (8 * ty.index())) as u8;
            assert_eq!(attr, ty.mair_attr());
            assert_eq!(MemType::from_index(ty.index()), Some(ty));
        }
        assert_eq!(MemType::from_index(5), Some(MemType::DeviceNGRE));
        assert_eq!(MemType::from_index(6), None);
    }

    #[test]
    fn attribute_names() {
        assert_eq!(MemType::NormalNC.name(), "Normal-NC");
        assert_eq!(attr_name(0x08), "Device-nGRE");
        assert_eq!(attr_name(0x12), "other");
    }

    #[test]
    fn attribute_slugs() {
        let slugs: Vec<_> = MemType::MEASURED.iter().map(|t| t.slug()).collect();
        assert_eq!(
            slugs,
            [
                "device-ngnrne",
                "device-ngnre",
                "device-gre",
                "normal-nc",
                "normal-wb"
            ]
        );
        assert_eq!(MemType::DeviceNGRE.slug(), "device-ngre");
        assert!(MemType::DeviceNGRE.is_device());
        assert_eq!(attr_slug(0xff), "normal-wb");
        assert_eq!(attr_slug(0x4f), "normal-wb");
        assert_eq!(attr_slug(0x77), "normal-wb");
        assert_eq!(attr_slug(0xbb), "normal-wt");
        assert_eq!(attr_slug(0xf8), "normal-wt");
        assert_eq!(attr_slug(0x44), "normal-nc");
        assert_eq!(attr_slug(0x01), "other");
        assert_eq!(attr_slug(0x40), "other");
    }

    #[test]
    fn tcr_fields() {
        let tcr = tcr_el1(0b0101);
        assert_eq!(tcr & 0x3f, 16);
        assert_eq!((tcr >> 32) & 7, 0b101);
        assert_ne!(tcr & (1 << 23), 0);
        // PARange beyond 48 bits is capped.
        assert_eq!((tcr_el1(0b0110) >> 32) & 7, 0b101);
        assert_eq!((tcr_el1(0b0010) >> 32) & 7, 0b010);
    }

    #[test]
    fn sctlr_values() {
        assert_eq!(SCTLR_EL1_MMU_ON & 0b111, 0b101, "M and C on, A off");
        assert_eq!(SCTLR_EL1_MMU_OFF & 1, 0);
        assert_ne!(SCTLR_EL1_MMU_OFF & (1 << 12), 0);
    }

    #[test]
    fn descriptors() {
        let page = leaf_descriptor(0x4000_1000, 3, MemType::NormalWB);
        assert_eq!(page & 0b11, 0b11);
        assert_eq!((page >> 2) & 7, 4);
        assert_ne!(page & DESC_AF, 0);
        assert_eq!(page & (DESC_PXN | DESC_UXN), 0);
        let block = leaf_descriptor(0x4000_0000, 1, MemType::DeviceNGnRE);
        assert_eq!(block & 0b11, 0b01);
        assert_eq!(block & DESC_ADDR_MASK, 0x4000_0000);
        assert_ne!(block & DESC_PXN, 0);
        assert_ne!(block & DESC_UXN, 0);
    }

    #[test]
    fn el0_pages_and_foreign_tables() {
        let mut pt = table();
        pt.map_el0_page(0xe000_0000, 0x4010_0000, MemType::NormalWB, true)
            .unwrap();
        pt.map_el0_page(0xe000_1000, 0x0b00_0000, MemType::DeviceNGnRE, false)
            .unwrap();
        let code = pt.walk(0xe000_0000).unwrap();
        let desc = pt.mem.read(code.1, code.2);
        assert_eq!(
            desc & (DESC_AP_EL0 | DESC_PXN | DESC_UXN),
            DESC_AP_EL0 | DESC_PXN
        );
        assert_eq!(desc & DESC_ADDR_MASK, 0x4010_0000);
        let data = pt.walk(0xe000_1000).unwrap();
        let desc = pt.mem.read(data.1, data.2);
        assert_eq!(desc & (DESC_AP_EL0 | DESC_UXN), DESC_AP_EL0 | DESC_UXN);
        // A level-2 entry pointing at a "table" in a hole: the walk of any
        // VA below it reads the hole.
        pt.map_foreign_table(0xe020_0000, 2, 0x0b01_0000).unwrap();
        let root = pt.root();
        let l1 = pt.mem.read(root, 0) & DESC_ADDR_MASK;
        let l2 = pt.mem.read(l1, 3) & DESC_ADDR_MASK;
        assert_eq!(pt.mem.read(l2, 257), table_descriptor(0x0b01_0000));
        // The EL0 pages' level-3 table is the neighbour, untouched.
        assert!(is_table(pt.mem.read(l2, 256), 2));
        assert_eq!(
            pt.map_foreign_table(0xe020_0000, 2, 0x0b01_0000),
            Err(MapError::AlreadyMapped { va: 0xe020_0000 })
        );
        assert_eq!(
            pt.map_foreign_table(0xe040_0000, 3, 0x0b01_0000),
            Err(MapError::Unaligned)
        );
    }

    #[test]
    fn maps_with_largest_blocks() {
        let mut pt = table();
        pt.map(0x4000_0000, 0x4000_0000, 0x4000_0000, MemType::NormalWB)
            .unwrap();
        let leaf = pt.leaf(0x4123_4567).unwrap();
        assert_eq!(leaf.level, 1);
        assert_eq!(leaf.va, 0x4000_0000);
        assert!(leaf.executable);
        // Root plus one level-1 table.
        assert_eq!(pt.mem.tables.len(), 2);
        assert_eq!(
            pt.translate(0x4123_4567),
            Some((0x4123_4567, MemType::NormalWB))
        );
        assert_eq!(pt.translate(0x8000_0000), None);
    }

    #[test]
    fn maps_mixed_alignment() {
        let mut pt = table();
        // 4 KiB + 2 MiB + 4 KiB, starting one page below a 2 MiB boundary.
        pt.map(0x1f_f000, 0x1f_f000, 0x20_2000, MemType::DeviceNGnRE)
            .unwrap();
        assert_eq!(pt.leaf(0x1f_f000).unwrap().level, 3);
        assert_eq!(pt.leaf(0x20_0000).unwrap().level, 2);
        assert_eq!(pt.leaf(0x40_0000).unwrap().level, 3);
        assert_eq!(pt.leaf(0x40_1000), None);
        assert!(!pt.leaf(0x20_0000).unwrap().executable);
    }

    #[test]
    fn maps_high_addresses_at_other_pa() {
        let mut pt = table();
        pt.map(0x80_0000_0000, 0x1000_0000, 0x1000, MemType::NormalNC)
            .unwrap();
        assert_eq!(
            pt.translate(0x80_0000_0123),
            Some((0x1000_0123, MemType::NormalNC))
        );
    }

    #[test]
    fn rejects_bad_requests() {
        let mut pt = table();
        assert_eq!(
            pt.map(0x1001, 0x1000, 0x1000, MemType::NormalWB),
            Err(MapError::Unaligned)
        );
        assert_eq!(
            pt.map(0x1000, 0x1000, 0, MemType::NormalWB),
            Err(MapError::Unaligned)
        );
        assert_eq!(
            pt.map(1 << 48, 0, 0x1000, MemType::NormalWB),
            Err(MapError::OutOfRange)
        );
        pt.map(0x20_0000, 0x20_0000, 0x20_0000, MemType::NormalWB)
            .unwrap();
        assert_eq!(
            pt.map(0x1f_f000, 0x1f_f000, 0x2000, MemType::NormalWB),
            Err(MapError::AlreadyMapped { va: 0x20_0000 })
        );
        let mut small = PageTable::new(FakeMemory::with_limit(2)).unwrap();
        assert_eq!(
            small.map(0x1000, 0x1000, 0x1000, MemType::NormalWB),
            Err(MapError::OutOfTables)
        );
    }

    #[test]
    fn remap_uses_break_before_make() {
        let mut pt = table();
        pt.map(0x1000_0000, 0x1000_0000, 0x3000, MemType::DeviceNGnRE)
            .unwrap();
        let mut tlb = FakeTlb::default();
        pt.mem.writes.clear();
        let changed = pt
            .remap(0x1000_0000, 0x3000, MemType::NormalNC, &mut tlb)
            .unwrap();
        assert_eq!(changed, 3);
        assert_eq!(tlb.invalidated, vec![0x1000_0000, 0x1000_1000, 0x1000_2000]);
        assert_eq!(tlb.published, 1);
        // Each descriptor goes invalid before it gets its new value.
        assert_eq!(pt.mem.writes.len(), 6);
        for pair in pt.mem.writes.chunks(2) {
            assert_eq!(pair[0].2, 0);
            assert_eq!((pair[1].2 >> 2) & 7, MemType::NormalNC.index());
        }
        assert_eq!(
            pt.translate(0x1000_2008),
            Some((0x1000_2008, MemType::NormalNC))
        );
    }

    #[test]
    fn remap_refuses_partial_blocks_and_holes() {
        let mut pt = table();
        pt.map(0x20_0000, 0x20_0000, 0x20_0000, MemType::NormalWB)
            .unwrap();
        let mut tlb = FakeTlb::default();
        assert_eq!(
            pt.remap(0x20_0000, 0x1000, MemType::NormalNC, &mut tlb),
            Err(MapError::SplitsBlock { va: 0x20_0000 })
        );
        assert_eq!(
            pt.remap(0x20_0000, 0x20_1000, MemType::NormalNC, &mut tlb),
            Err(MapError::NotMapped { va: 0x40_0000 })
        );
        assert!(tlb.invalidated.is_empty());
        assert_eq!(
            pt.translate(0x20_0000),
            Some((0x20_0000, MemType::NormalWB))
        );
    }

    #[test]
    fn regions_around_holes() {
        let mut parts = Vec::new();
        for_each_outside(
            0x4000_0000,
            0x10_0000,
            &[
                (0x4000_8000, 0x1000),
                (0x4000_2000, 0x1000),
                (0x5000_0000, 0x1000),
            ],
            |b, s| parts.push((b, s)),
        );
        assert_eq!(
            parts,
            vec![
                (0x4000_0000, 0x2000),
                (0x4000_3000, 0x5000),
                (0x4000_9000, 0xf_7000)
            ]
        );
        parts.clear();
        for_each_outside(0x1000, 0x1000, &[(0x1000, 0x1000)], |b, s| {
            parts.push((b, s))
        });
        assert!(parts.is_empty());
    }
}
