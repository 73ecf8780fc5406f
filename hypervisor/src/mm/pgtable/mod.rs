//! Translation-table engine shared by the EL2 stage-1 map and guests' stage 2.
//!
//! VMSAv8-64, 4 KiB granule, 48-bit output addresses (no FEAT_LPA2). A
//! [`Regime`] supplies the input address type and the leaf attribute encoding;
//! [`PageTable`] does the rest: mapping with the largest blocks input and output
//! alignment allow (1 GiB at level 1, 2 MiB at level 2), unmapping, changing
//! attributes, translating and walking.
//!
//! Every edit is planned first by a dry run over the same code path that
//! counts the table pages it needs and validates the range (overlap,
//! unmapped pages), so an edit that fails leaves the tables untouched.
//!
//! Live entries change with break-before-make (Arm ARM DDI 0487 "Using
//! break-before-make when updating translation table entries", D8.14.1 in
//! J.a; R_WHZWS lists what needs it: changes of memory type, Shareability or
//! Cacheability, of output address, and of block size): the old entry
//! is made invalid, its TLB entries invalidated and the invalidation completed,
//! then the new entry is written. TLB maintenance itself goes through
//! [`TlbMaint`], so the arch layer supplies the instructions and host tests a
//! recorder.

pub mod el2;
pub mod pool;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;

use crate::mm::addr::{Ipa, IpaRange, PhysAddr, VirtAddr, VirtRange, PAGE_SIZE};

pub use pool::{IdentityMap, PhysToVirt, PoolError, TablePool};

/// Entries per table (4 KiB granule, 8-byte descriptors).
pub const ENTRIES: usize = 512;
/// The level whose entries are pages.
pub const LEAF_LEVEL: usize = 3;

/// bits[1:0] of a valid descriptor: bit 0 valid, bit 1 table (levels 0-2) or page (level 3).
pub const DESC_VALID: u64 = 1 << 0;
/// Bit 1: table descriptor at levels 0-2, page descriptor at level 3; clear for a block.
pub const DESC_TABLE_OR_PAGE: u64 = 1 << 1;
/// Output address (or next-level table address) bits [47:12].
pub const DESC_ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
/// Everything in a block or page descriptor that is neither type nor address.
pub const DESC_ATTR_MASK: u64 = !(DESC_ADDR_MASK | 0b11);

/// Bit position of the lowest input address bit resolved at `level`.
pub const fn level_shift(level: usize) -> u32 {
    12 + 9 * (LEAF_LEVEL - level) as u32
}

/// Bytes mapped by one entry at `level`: 512 GiB, 1 GiB, 2 MiB, 4 KiB for levels 0-3.
pub const fn level_size(level: usize) -> u64 {
    1 << level_shift(level)
}

/// An input address of some translation regime (an [`Ipa`] for stage 2, a
/// [`VirtAddr`] for the EL2 stage 1), with its range type.
pub trait InputAddress: Copy + Eq + Ord + fmt::Debug {
    /// The matching range type.
    type Range: Copy + fmt::Debug;
    /// Wraps a raw value.
    fn from_raw(raw: u64) -> Self;
    /// The raw value.
    fn to_raw(self) -> u64;
    /// `(start, size)` of a range.
    fn range_parts(range: &Self::Range) -> (u64, u64);
}

impl InputAddress for Ipa {
    type Range = IpaRange;
    fn from_raw(raw: u64) -> Self {
        Ipa::new(raw)
    }
    fn to_raw(self) -> u64 {
        self.raw()
    }
    fn range_parts(range: &IpaRange) -> (u64, u64) {
        (range.start().raw(), range.size())
    }
}

impl InputAddress for VirtAddr {
    type Range = VirtRange;
    fn from_raw(raw: u64) -> Self {
        VirtAddr::new(raw)
    }
    fn to_raw(self) -> u64 {
        self.raw()
    }
    fn range_parts(range: &VirtRange) -> (u64, u64) {
        (range.start().raw(), range.size())
    }
}

/// A translation regime: what its tables translate and how its leaves encode attributes.
pub trait Regime {
    /// Input address type.
    type Input: InputAddress;
    /// Leaf attributes (everything a block or page descriptor holds besides type and address).
    type Attrs: Copy + Eq + fmt::Debug;

    /// The attribute bits of a leaf with `attrs`, within [`DESC_ATTR_MASK`].
    /// Includes AF: the engine never maps anything that would take access-flag faults.
    fn encode_attrs(attrs: &Self::Attrs) -> u64;

    /// Inverse of [`Regime::encode_attrs`] for the bits it defines.
    fn decode_attrs(desc: u64) -> Self::Attrs;

    /// Whether changing a live leaf from `old` to `new` needs break-before-make.
    /// The conservative default: any change does.
    fn change_needs_break(old: &Self::Attrs, new: &Self::Attrs) -> bool {
        old != new
    }
}

/// TLB maintenance an edit needs, supplied by the arch layer or a host-test recorder.
///
/// The engine calls, in order: `invalidate` for each entry it made invalid or
/// changed while valid, then `sync` before writing anything that relies on the
/// old entry being gone (the "make" of break-before-make) and at the end of an
/// edit that invalidated; `publish` at the end of an edit that only filled
/// invalid entries (a TLB caches only entries that do not fault: Arm ARM
/// DDI 0487, VMSAv8-64 TLB caching rules: an entry is permitted to be
/// cached only if it is valid and generates no Translation, Address size or
/// Access flag fault).
pub trait TlbMaint<A> {
    /// The entry mapping `addr` at `level` was valid and has been made invalid or changed.
    fn invalidate(&mut self, addr: A, level: usize);
    /// Completes every invalidation issued so far, on all PEs.
    fn sync(&mut self);
    /// Makes newly written entries visible to table walks.
    fn publish(&mut self);
    /// A descriptor write: a hook for tracing and for host tests; the arch layer ignores it.
    fn descriptor_written(&mut self, _table: PhysAddr, _index: usize, _value: u64) {}
}

/// Why an edit was refused. Nothing was changed when one is returned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MapError {
    /// The input range start or size is not page-aligned.
    MisalignedInput { start: u64, size: u64 },
    /// The output address is not page-aligned.
    MisalignedOutput(PhysAddr),
    /// The input range ends past the regime's configured input size.
    InputOutOfRange { end: u64, limit: u64 },
    /// The output range ends past the configured output size.
    OutputOutOfRange { end: u64, limit: u64 },
    /// Mapping over an existing mapping at this input address (unmap it first).
    AlreadyMapped(u64),
    /// Changing attributes of an input address that is not mapped.
    NotMapped(u64),
    /// The table pool cannot supply the pages the edit needs.
    OutOfTables { needed: usize, free: usize },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::MisalignedInput { start, size } => {
                write!(f, "input range {start:#x}+{size:#x} is not page-aligned")
            }
            Self::MisalignedOutput(pa) => write!(f, "output address {pa} is not page-aligned"),
            Self::InputOutOfRange { end, limit } => {
                write!(f, "input range ends at {end:#x}, past the limit {limit:#x}")
            }
            Self::OutputOutOfRange { end, limit } => {
                write!(
                    f,
                    "output range ends at {end:#x}, past the limit {limit:#x}"
                )
            }
            Self::AlreadyMapped(a) => write!(f, "{a:#x} is already mapped"),
            Self::NotMapped(a) => write!(f, "{a:#x} is not mapped"),
            Self::OutOfTables { needed, free } => {
                write!(f, "needs {needed} table pages, the pool has {free}")
            }
        }
    }
}

/// Why a table geometry is invalid.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConfigError {
    /// The start level cannot translate `ia_bits` with `root_tables` root tables.
    Geometry {
        ia_bits: u32,
        start_level: usize,
        root_tables: usize,
    },
    /// Output size beyond 48 bits (no FEAT_LPA2 support) or below 32.
    OutputBits(u32),
}

/// The shape of one set of tables.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TableConfig {
    ia_bits: u32,
    oa_bits: u32,
    start_level: usize,
    root_tables: usize,
}

impl TableConfig {
    /// Tables translating `ia_bits` of input to `oa_bits` of output, starting at
    /// `start_level` with `root_tables` concatenated root tables (1 for stage 1;
    /// up to 16 for stage 2, Arm ARM D8.2.2 R_JKZFY).
    ///
    /// The root level must resolve at least one bit and at most 9 bits plus the
    /// concatenation: `root_tables` must equal
    /// `max(1, 2^(ia_bits - level_shift(start_level)) / 512)`.
    pub fn new(
        ia_bits: u32,
        oa_bits: u32,
        start_level: usize,
        root_tables: usize,
    ) -> Result<Self, ConfigError> {
        let bad = ConfigError::Geometry {
            ia_bits,
            start_level,
            root_tables,
        };
        if !(32..=48).contains(&oa_bits) {
            return Err(ConfigError::OutputBits(oa_bits));
        }
        if start_level > 2 || ia_bits > 48 || ia_bits <= level_shift(start_level) {
            return Err(bad);
        }
        let root_bits = ia_bits - level_shift(start_level);
        let want = if root_bits <= 9 {
            1
        } else {
            1 << (root_bits - 9)
        };
        if root_bits > 13 || root_tables != want {
            return Err(bad);
        }
        Ok(Self {
            ia_bits,
            oa_bits,
            start_level,
            root_tables,
        })
    }

    /// Input address bits.
    pub fn ia_bits(&self) -> u32 {
        self.ia_bits
    }

    /// Output address bits.
    pub fn oa_bits(&self) -> u32 {
        self.oa_bits
    }

    /// Level of the initial lookup.
    pub fn start_level(&self) -> usize {
        self.start_level
    }

    /// Number of concatenated root tables.
    pub fn root_tables(&self) -> usize {
        self.root_tables
    }

    /// Entries in the (concatenated) root.
    pub fn root_entries(&self) -> usize {
        1 << (self.ia_bits - level_shift(self.start_level))
    }
}

/// What one descriptor is, at the level it was read from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DescKind {
    /// Faults (bit 0 clear, or a reserved encoding: a block at level 0 or 0b01 at level 3).
    Invalid,
    /// Points to the next-level table.
    Table(PhysAddr),
    /// A block (levels 1-2) or page (level 3) mapping this output address.
    Leaf(PhysAddr),
}

/// Classifies `desc` read at `level`.
pub fn classify(desc: u64, level: usize) -> DescKind {
    let addr = PhysAddr::new(desc & DESC_ADDR_MASK);
    match (desc & 0b11, level) {
        (0b11, LEAF_LEVEL) => DescKind::Leaf(addr),
        (0b11, _) => DescKind::Table(addr),
        (0b01, 1 | 2) => DescKind::Leaf(PhysAddr::new(addr.raw() & !(level_size(level) - 1))),
        _ => DescKind::Invalid,
    }
}

/// A table descriptor pointing at `table`. Hierarchical attributes stay zero
/// (stage 2 has none; for stage 1 zero means "no further restriction").
pub fn table_descriptor(table: PhysAddr) -> u64 {
    (table.raw() & DESC_ADDR_MASK) | DESC_TABLE_OR_PAGE | DESC_VALID
}

/// A block (levels 1-2) or page (level 3) descriptor.
pub fn leaf_descriptor<R: Regime>(oa: PhysAddr, level: usize, attrs: &R::Attrs) -> u64 {
    debug_assert!(oa.is_aligned(level_size(level)));
    let ty = if level == LEAF_LEVEL {
        DESC_TABLE_OR_PAGE | DESC_VALID
    } else {
        DESC_VALID
    };
    (oa.raw() & DESC_ADDR_MASK) | (R::encode_attrs(attrs) & DESC_ATTR_MASK) | ty
}

/// The result of translating one input address.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Translation<A> {
    /// Output address of the input address itself (not of the block).
    pub pa: PhysAddr,
    /// Leaf attributes.
    pub attrs: A,
    /// Level of the leaf: 1 (1 GiB block), 2 (2 MiB block) or 3 (page).
    pub level: usize,
    /// Bytes the leaf maps.
    pub block_size: u64,
}

/// One descriptor read during a walk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct WalkStep {
    /// Lookup level.
    pub level: usize,
    /// Physical address of the table read (for a concatenated root, the page holding the entry).
    pub table: PhysAddr,
    /// Index within that table page.
    pub index: usize,
    /// The raw descriptor.
    pub desc: u64,
    /// What it is.
    pub kind: DescKind,
}

impl fmt::Display for WalkStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "L{} {}[{:3}] = {:#018x} ",
            self.level, self.table, self.index, self.desc
        )?;
        match self.kind {
            DescKind::Invalid => write!(f, "invalid"),
            DescKind::Table(t) => write!(f, "table -> {t}"),
            DescKind::Leaf(pa) if self.level == LEAF_LEVEL => write!(f, "page -> {pa}"),
            DescKind::Leaf(pa) => write!(f, "block {:#x} -> {pa}", level_size(self.level)),
        }
    }
}

/// Every descriptor a walk for one address read, root first.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Walk {
    steps: [Option<WalkStep>; 4],
}

impl Walk {
    /// The steps, root first; the last is invalid or a leaf.
    pub fn steps(&self) -> impl Iterator<Item = &WalkStep> {
        self.steps.iter().flatten()
    }

    /// The last step.
    pub fn last(&self) -> Option<&WalkStep> {
        self.steps().last()
    }
}

impl fmt::Display for Walk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in self.steps() {
            writeln!(f, "{s}")?;
        }
        Ok(())
    }
}

/// One leaf, as reported by [`PageTable::for_each_leaf`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Leaf<I, A> {
    /// First input address it maps.
    pub input: I,
    /// Output address.
    pub pa: PhysAddr,
    /// Level (1, 2 or 3).
    pub level: usize,
    /// Attributes.
    pub attrs: A,
}

/// A table, real or one that exists only in a dry run.
#[derive(Clone, Copy)]
enum Node {
    Real(PhysAddr),
    /// A table the edit would allocate: all entries invalid.
    Empty,
    /// The table a split of this block descriptor (read at `level - 1`) would produce.
    Split {
        block: u64,
        level: usize,
    },
}

#[derive(Clone, Copy)]
enum Op<A> {
    /// Map: output address = input - `in_base` + `out_base`.
    Map {
        in_base: u64,
        out_base: u64,
        attrs: A,
    },
    Unmap,
    Protect {
        attrs: A,
    },
}

struct Ctx<'t, T> {
    dry: bool,
    tables_needed: usize,
    tlb: &'t mut T,
    unsynced: bool,
    wrote: bool,
    to_free: Vec<PhysAddr>,
}

/// One set of translation tables of regime `R`, with the pool its pages come from.
pub struct PageTable<R: Regime, M: PhysToVirt> {
    root: PhysAddr,
    config: TableConfig,
    pool: TablePool<M>,
    _regime: PhantomData<R>,
}

impl<R: Regime, M: PhysToVirt> PageTable<R, M> {
    /// Empty tables shaped by `config`, with the root (its concatenated pages
    /// contiguous and aligned to their total size) taken from `pool`.
    pub fn new(config: TableConfig, mut pool: TablePool<M>) -> Result<Self, MapError> {
        let free = pool.free_pages();
        let root = pool
            .alloc_contiguous(config.root_tables)
            .ok_or(MapError::OutOfTables {
                needed: config.root_tables,
                free,
            })?;
        Ok(Self {
            root,
            config,
            pool,
            _regime: PhantomData,
        })
    }

    /// Physical address of the root (for TTBR0_EL2 / VTTBR_EL2.BADDR).
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// The geometry.
    pub fn config(&self) -> &TableConfig {
        &self.config
    }

    /// The table pool.
    pub fn pool(&self) -> &TablePool<M> {
        &self.pool
    }

    /// Table pages in use, root included.
    pub fn table_pages(&self) -> usize {
        self.pool.used_pages()
    }

    /// Which root page and index hold the root entry `i`.
    fn root_slot(&self, i: usize) -> (PhysAddr, usize) {
        (
            PhysAddr::new(self.root.raw() + (i / ENTRIES) as u64 * PAGE_SIZE),
            i % ENTRIES,
        )
    }

    fn check_input(&self, start: u64, size: u64) -> Result<(), MapError> {
        if !start.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::MisalignedInput { start, size });
        }
        let limit = 1u64 << self.config.ia_bits;
        match start.checked_add(size) {
            Some(end) if end <= limit => Ok(()),
            _ => Err(MapError::InputOutOfRange {
                end: start.saturating_add(size),
                limit,
            }),
        }
    }

    /// Maps `range` to the output range starting at `pa`, with `attrs`, using
    /// the largest blocks alignment allows. Refuses if any part is already mapped.
    pub fn map(
        &mut self,
        range: <R::Input as InputAddress>::Range,
        pa: PhysAddr,
        attrs: R::Attrs,
        tlb: &mut impl TlbMaint<R::Input>,
    ) -> Result<(), MapError> {
        let (start, size) = R::Input::range_parts(&range);
        self.check_input(start, size)?;
        if !pa.is_aligned(PAGE_SIZE) {
            return Err(MapError::MisalignedOutput(pa));
        }
        let limit = 1u64 << self.config.oa_bits;
        match pa.raw().checked_add(size) {
            Some(end) if end <= limit => {}
            _ => {
                return Err(MapError::OutputOutOfRange {
                    end: pa.raw().saturating_add(size),
                    limit,
                })
            }
        }
        let op = Op::Map {
            in_base: start,
            out_base: pa.raw(),
            attrs,
        };
        self.edit(start, size, op, tlb)
    }

    /// Unmaps `range`. Parts not mapped are skipped; blocks partly covered are
    /// split; tables left empty go back to the pool.
    pub fn unmap(
        &mut self,
        range: <R::Input as InputAddress>::Range,
        tlb: &mut impl TlbMaint<R::Input>,
    ) -> Result<(), MapError> {
        let (start, size) = R::Input::range_parts(&range);
        self.check_input(start, size)?;
        self.edit(start, size, Op::Unmap, tlb)
    }

    /// Sets the attributes of every mapping in `range` (which must be wholly
    /// mapped), keeping output addresses; blocks partly covered are split.
    pub fn change_attributes(
        &mut self,
        range: <R::Input as InputAddress>::Range,
        attrs: R::Attrs,
        tlb: &mut impl TlbMaint<R::Input>,
    ) -> Result<(), MapError> {
        let (start, size) = R::Input::range_parts(&range);
        self.check_input(start, size)?;
        self.edit(start, size, Op::Protect { attrs }, tlb)
    }

    fn edit(
        &mut self,
        start: u64,
        size: u64,
        op: Op<R::Attrs>,
        tlb: &mut impl TlbMaint<R::Input>,
    ) -> Result<(), MapError> {
        if size == 0 {
            return Ok(());
        }
        let end = start + size;
        let mut ctx = Ctx {
            dry: true,
            tables_needed: 0,
            tlb,
            unsynced: false,
            wrote: false,
            to_free: Vec::new(),
        };
        self.walk_root(start, end, &op, &mut ctx)?;
        let free = self.pool.free_pages();
        if ctx.tables_needed > free {
            return Err(MapError::OutOfTables {
                needed: ctx.tables_needed,
                free,
            });
        }
        ctx.dry = false;
        self.walk_root(start, end, &op, &mut ctx)?;
        if ctx.unsynced {
            ctx.tlb.sync();
        } else if ctx.wrote {
            ctx.tlb.publish();
        }
        // Only now can no walk reach the tables unlinked by this edit.
        for t in ctx.to_free {
            self.pool.free(t);
        }
        Ok(())
    }

    fn walk_root<T: TlbMaint<R::Input>>(
        &mut self,
        start: u64,
        end: u64,
        op: &Op<R::Attrs>,
        ctx: &mut Ctx<'_, T>,
    ) -> Result<(), MapError> {
        let level = self.config.start_level;
        let size = level_size(level);
        let first = (start / size) as usize;
        let last = ((end - 1) / size) as usize;
        // The concatenated root is one table of `root_entries` entries; apply
        // the edit page by page so each call sees an ordinary 512-entry table.
        let mut page = first / ENTRIES;
        while page * ENTRIES <= last {
            let base = (page * ENTRIES) as u64 * size;
            let page_end = base + ENTRIES as u64 * size;
            let (table, _) = self.root_slot(page * ENTRIES);
            self.apply(
                Node::Real(table),
                level,
                base,
                start.max(base),
                end.min(page_end),
                op,
                ctx,
            )?;
            page += 1;
        }
        Ok(())
    }

    fn read_node(&self, node: Node, idx: usize) -> u64 {
        match node {
            Node::Real(t) => self.pool.read(t, idx),
            Node::Empty => 0,
            Node::Split { block, level } => {
                let oa = classify(block, level - 1);
                let DescKind::Leaf(oa) = oa else { return 0 };
                let child_oa = PhysAddr::new(oa.raw() + idx as u64 * level_size(level));
                let ty = if level == LEAF_LEVEL {
                    DESC_TABLE_OR_PAGE | DESC_VALID
                } else {
                    DESC_VALID
                };
                (child_oa.raw() & DESC_ADDR_MASK) | (block & DESC_ATTR_MASK) | ty
            }
        }
    }

    fn write<T: TlbMaint<R::Input>>(
        &self,
        ctx: &mut Ctx<'_, T>,
        table: PhysAddr,
        idx: usize,
        value: u64,
    ) {
        debug_assert!(!ctx.dry);
        self.pool.write(table, idx, value);
        ctx.tlb.descriptor_written(table, idx, value);
        ctx.wrote = true;
    }

    /// Allocates a table (or counts one in a dry run).
    fn new_table<T: TlbMaint<R::Input>>(
        &mut self,
        ctx: &mut Ctx<'_, T>,
    ) -> Result<Option<PhysAddr>, MapError> {
        if ctx.dry {
            ctx.tables_needed += 1;
            return Ok(None);
        }
        let free = self.pool.free_pages();
        self.pool
            .alloc()
            .map(Some)
            .ok_or(MapError::OutOfTables { needed: 1, free })
    }

    /// Applies `op` to `[start, end)` within the table `node` at `level`, whose
    /// entry 0 maps input address `base`.
    #[allow(clippy::too_many_arguments)]
    fn apply<T: TlbMaint<R::Input>>(
        &mut self,
        node: Node,
        level: usize,
        base: u64,
        start: u64,
        end: u64,
        op: &Op<R::Attrs>,
        ctx: &mut Ctx<'_, T>,
    ) -> Result<(), MapError> {
        let size = level_size(level);
        let first = ((start - base) / size) as usize;
        let last = ((end - 1 - base) / size) as usize;
        for idx in first..=last {
            let e_base = base + idx as u64 * size;
            let s = start.max(e_base);
            let e = end.min(e_base + size);
            let whole = s == e_base && e == e_base + size;
            let desc = self.read_node(node, idx);
            let table = match node {
                Node::Real(t) => Some(t),
                _ => None,
            };
            match (classify(desc, level), op) {
                (DescKind::Invalid, Op::Unmap) => {}
                (DescKind::Invalid, Op::Protect { .. }) => return Err(MapError::NotMapped(s)),
                (
                    DescKind::Invalid,
                    Op::Map {
                        in_base,
                        out_base,
                        attrs,
                    },
                ) => {
                    // `s` is never below the range start; when the entry is whole, `s == e_base`.
                    let out = s - in_base + out_base;
                    let leaf_ok = level == LEAF_LEVEL
                        || (matches!(level, 1 | 2) && whole && out.is_multiple_of(size));
                    if leaf_ok {
                        if !ctx.dry {
                            let d = leaf_descriptor::<R>(PhysAddr::new(out), level, attrs);
                            self.write(ctx, table.expect("real table"), idx, d);
                        }
                    } else {
                        let child = self.new_table(ctx)?;
                        if let (Some(child), Some(t)) = (child, table) {
                            self.write(ctx, t, idx, table_descriptor(child));
                        }
                        let child_node = child.map_or(Node::Empty, Node::Real);
                        self.apply(child_node, level + 1, e_base, s, e, op, ctx)?;
                    }
                }
                (DescKind::Table(child), _) => {
                    self.apply(Node::Real(child), level + 1, e_base, s, e, op, ctx)?;
                    if matches!(op, Op::Unmap) && !ctx.dry && self.is_empty(child) {
                        let t = table.expect("real table");
                        self.write(ctx, t, idx, 0);
                        ctx.tlb.invalidate(R::Input::from_raw(e_base), level);
                        ctx.unsynced = true;
                        ctx.to_free.push(child);
                    }
                }
                (DescKind::Leaf(_), Op::Map { .. }) => return Err(MapError::AlreadyMapped(s)),
                (DescKind::Leaf(_), Op::Unmap) if whole => {
                    if let Some(t) = table {
                        if !ctx.dry {
                            self.write(ctx, t, idx, 0);
                            ctx.tlb.invalidate(R::Input::from_raw(e_base), level);
                            ctx.unsynced = true;
                        }
                    }
                }
                (DescKind::Leaf(oa), Op::Protect { attrs }) => {
                    let old = R::decode_attrs(desc);
                    if old == *attrs {
                        continue;
                    }
                    if whole {
                        if let (Some(t), false) = (table, ctx.dry) {
                            let new = leaf_descriptor::<R>(oa, level, attrs);
                            let addr = R::Input::from_raw(e_base);
                            if R::change_needs_break(&old, attrs) {
                                self.write(ctx, t, idx, 0);
                                ctx.tlb.invalidate(addr, level);
                                ctx.tlb.sync();
                                self.write(ctx, t, idx, new);
                                ctx.unsynced = false;
                            } else {
                                self.write(ctx, t, idx, new);
                                ctx.tlb.invalidate(addr, level);
                                ctx.unsynced = true;
                            }
                        }
                    } else {
                        let child = self.split(ctx, table, idx, desc, level, e_base)?;
                        self.apply(child, level + 1, e_base, s, e, op, ctx)?;
                    }
                }
                (DescKind::Leaf(_), Op::Unmap) => {
                    let child = self.split(ctx, table, idx, desc, level, e_base)?;
                    self.apply(child, level + 1, e_base, s, e, op, ctx)?;
                }
            }
        }
        Ok(())
    }

    /// Replaces the block `desc` at `table[idx]` (level `level`, mapping from
    /// `e_base`) by a table of next-level entries with the same output and
    /// attributes, break-before-make: invalid, TLBI, sync, then the table.
    fn split<T: TlbMaint<R::Input>>(
        &mut self,
        ctx: &mut Ctx<'_, T>,
        table: Option<PhysAddr>,
        idx: usize,
        desc: u64,
        level: usize,
        e_base: u64,
    ) -> Result<Node, MapError> {
        let virtual_child = Node::Split {
            block: desc,
            level: level + 1,
        };
        let child = self.new_table(ctx)?;
        let (Some(child), Some(t)) = (child, table) else {
            return Ok(virtual_child);
        };
        for i in 0..ENTRIES {
            // Not yet reachable by any walk: plain fills, no tracing needed.
            self.pool.write(child, i, self.read_node(virtual_child, i));
        }
        self.write(ctx, t, idx, 0);
        ctx.tlb.invalidate(R::Input::from_raw(e_base), level);
        ctx.tlb.sync();
        self.write(ctx, t, idx, table_descriptor(child));
        ctx.unsynced = false;
        Ok(Node::Real(child))
    }

    fn is_empty(&self, table: PhysAddr) -> bool {
        (0..ENTRIES).all(|i| self.pool.read(table, i) & DESC_VALID == 0)
    }

    /// Every descriptor the MMU would read to translate `addr`.
    pub fn walk(&self, addr: R::Input) -> Walk {
        let mut steps = [None; 4];
        let a = addr.to_raw();
        if a >> self.config.ia_bits != 0 {
            return Walk { steps };
        }
        let mut level = self.config.start_level;
        let (mut table, mut index) = self.root_slot((a >> level_shift(level)) as usize);
        for step in steps.iter_mut() {
            let desc = self.pool.read(table, index);
            let kind = classify(desc, level);
            *step = Some(WalkStep {
                level,
                table,
                index,
                desc,
                kind,
            });
            match kind {
                DescKind::Table(next) if level < LEAF_LEVEL => {
                    level += 1;
                    table = next;
                    index = ((a >> level_shift(level)) as usize) % ENTRIES;
                }
                _ => break,
            }
        }
        Walk { steps }
    }

    /// Where `addr` maps to, with which attributes and leaf size, or `None` if unmapped.
    pub fn translate(&self, addr: R::Input) -> Option<Translation<R::Attrs>> {
        let last = *self.walk(addr).last()?;
        let DescKind::Leaf(oa) = last.kind else {
            return None;
        };
        let size = level_size(last.level);
        Some(Translation {
            pa: PhysAddr::new(oa.raw() + (addr.to_raw() & (size - 1))),
            attrs: R::decode_attrs(last.desc),
            level: last.level,
            block_size: size,
        })
    }

    /// Calls `f` for every leaf, in input address order.
    pub fn for_each_leaf(&self, mut f: impl FnMut(Leaf<R::Input, R::Attrs>)) {
        let level = self.config.start_level;
        for i in 0..self.config.root_entries() {
            let (t, idx) = self.root_slot(i);
            self.leaves_of(
                self.pool.read(t, idx),
                level,
                i as u64 * level_size(level),
                &mut f,
            );
        }
    }

    fn leaves_of(
        &self,
        desc: u64,
        level: usize,
        base: u64,
        f: &mut impl FnMut(Leaf<R::Input, R::Attrs>),
    ) {
        match classify(desc, level) {
            DescKind::Invalid => {}
            DescKind::Leaf(pa) => f(Leaf {
                input: R::Input::from_raw(base),
                pa,
                level,
                attrs: R::decode_attrs(desc),
            }),
            DescKind::Table(t) => {
                for i in 0..ENTRIES {
                    let child_base = base + i as u64 * level_size(level + 1);
                    self.leaves_of(self.pool.read(t, i), level + 1, child_base, f);
                }
            }
        }
    }
}

impl<R: Regime, M: PhysToVirt> fmt::Debug for PageTable<R, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageTable")
            .field("root", &self.root)
            .field("config", &self.config)
            .field("pool", &self.pool)
            .finish()
    }
}
