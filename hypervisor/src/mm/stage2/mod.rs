//! Guest stage-2 translation.
//!
//! [`Stage2`] owns one VM's tables, their page pool and the VTCR_EL2/VTTBR_EL2
//! values that describe them. Mappings are requested by intent ([`Stage2::map_ram`],
//! [`Stage2::map_passthrough_bar`], [`Stage2::map_device`]); the attributes
//! follow from `mm::attrs`' policy and the CPU's features.

pub mod descriptor;
pub mod vtcr;

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;

use core::fmt;

use crate::mm::addr::{Ipa, IpaRange, PhysAddr};
use crate::mm::attrs::{stage2_policy, AttrError, BarPolicy, Features, MemoryIntent};
use crate::mm::pgtable::{MapError, PageTable, PhysToVirt, TablePool, TlbMaint, Translation, Walk};

pub use descriptor::{S2Ap, S2Attrs, Stage2Regime};
pub use vtcr::{vttbr, Stage2Config, Vmid, VtcrError};

/// Stage-2 TLB maintenance, implemented by the arch layer with the real
/// instructions (and by a recorder in host tests).
///
/// The engine asks for, per edit of live entries: [`invalidate_ipa`] for each
/// changed entry, then [`invalidate_all_stage1_for_vmid`], then [`sync`]. That
/// is the sequence the Arm ARM requires after changing stage-2 entries
/// (DDI 0487, "TLB maintenance instructions" / "Invalidation of TLB entries
/// from stage 2 translations"; the same sequence as the manual's example of
/// changing a stage-2 entry):
///
/// ```text
///     DSB ISHST              // the descriptor write is visible to table walks
///     TLBI IPAS2E1IS, <ipa>  // for each changed IPA: stage-2-only entries
///     DSB ISH                // ...complete before stage 1 is touched
///     TLBI VMALLE1IS         // combined stage 1+2 entries for the VMID
///     DSB ISH
///     ISB
/// ```
///
/// Why both: `TLBI IPAS2E1IS` removes only entries that hold stage-2
/// information alone. A TLB may also hold entries that combine stage 1 and
/// stage 2, indexed by guest VA; nothing invalidates those by IPA, so the
/// VMID's stage-1 entries go too. The DSB between them matters: without it a
/// walk on another PE could refill a combined entry from the old stage-2 entry
/// after `VMALLE1IS` ran but before the IPA invalidation completed.
///
/// The TLBIs act on the VMID in VTTBR_EL2: the implementation runs them with
/// this VM's VTTBR_EL2 loaded.
///
/// [`invalidate_ipa`]: Stage2TlbMaint::invalidate_ipa
/// [`invalidate_all_stage1_for_vmid`]: Stage2TlbMaint::invalidate_all_stage1_for_vmid
/// [`sync`]: Stage2TlbMaint::sync
pub trait Stage2TlbMaint {
    /// `DSB ISHST; TLBI IPAS2E1IS` for `ipa`, whose entry at `level` changed
    /// (`level` may serve as a TTL hint with FEAT_TTL).
    fn invalidate_ipa(&mut self, ipa: Ipa, level: usize);
    /// `DSB ISH; TLBI VMALLE1IS`.
    fn invalidate_all_stage1_for_vmid(&mut self);
    /// `DSB ISH; ISB`.
    fn sync(&mut self);
    /// A descriptor write, for tracing; the arch implementation ignores it.
    fn descriptor_written(&mut self, _table: PhysAddr, _index: usize, _value: u64) {}
}

/// Adapts a [`Stage2TlbMaint`] to the engine's [`TlbMaint`].
struct S2Tlb<'a, T: Stage2TlbMaint + ?Sized>(&'a mut T);

impl<T: Stage2TlbMaint + ?Sized> TlbMaint<Ipa> for S2Tlb<'_, T> {
    fn invalidate(&mut self, addr: Ipa, level: usize) {
        self.0.invalidate_ipa(addr, level);
    }
    fn sync(&mut self) {
        self.0.invalidate_all_stage1_for_vmid();
        self.0.sync();
    }
    fn publish(&mut self) {
        self.0.sync();
    }
    fn descriptor_written(&mut self, table: PhysAddr, index: usize, value: u64) {
        self.0.descriptor_written(table, index, value);
    }
}

/// Why a stage-2 operation failed. Nothing was changed when one is returned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stage2Error {
    /// The intent cannot be honoured on this CPU.
    Attr(AttrError),
    /// The table edit was refused.
    Map(MapError),
}

impl From<AttrError> for Stage2Error {
    fn from(e: AttrError) -> Self {
        Self::Attr(e)
    }
}

impl From<MapError> for Stage2Error {
    fn from(e: MapError) -> Self {
        Self::Map(e)
    }
}

impl fmt::Display for Stage2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Attr(e) => write!(f, "stage 2: {e}"),
            Self::Map(e) => write!(f, "stage 2: {e}"),
        }
    }
}

/// One VM's stage-2 translation.
pub struct Stage2<M: PhysToVirt> {
    table: PageTable<Stage2Regime, M>,
    config: Stage2Config,
    vmid: Vmid,
    features: Features,
}

impl<M: PhysToVirt> Stage2<M> {
    /// Empty stage-2 tables for `config`, the root taken from `pool`.
    pub fn new(
        config: Stage2Config,
        vmid: Vmid,
        features: Features,
        pool: TablePool<M>,
    ) -> Result<Self, Stage2Error> {
        let table = PageTable::new(config.table_config(), pool)?;
        debug_assert!(table
            .root()
            .is_aligned(config.root_tables() as u64 * crate::mm::addr::PAGE_SIZE));
        Ok(Self {
            table,
            config,
            vmid,
            features,
        })
    }

    /// The geometry and VTCR_EL2 source.
    pub fn config(&self) -> &Stage2Config {
        &self.config
    }

    /// The VMID.
    pub fn vmid(&self) -> Vmid {
        self.vmid
    }

    /// VTCR_EL2 for this VM.
    pub fn vtcr(&self) -> u64 {
        self.config.vtcr()
    }

    /// VTTBR_EL2 for this VM.
    pub fn vttbr(&self) -> u64 {
        vttbr(self.table.root(), self.vmid)
    }

    /// The underlying tables (for walks, dumps and tests).
    pub fn table(&self) -> &PageTable<Stage2Regime, M> {
        &self.table
    }

    /// Whether guest RAM this hypervisor wrote must be cleaned and invalidated
    /// to PoC before the guest first runs (no FEAT_S2FWB).
    pub fn ram_needs_clean_to_poc(&self) -> bool {
        !self.features.fwb
    }

    /// The attributes `intent` gets on this CPU.
    pub fn attrs_for(&self, intent: MemoryIntent) -> Result<S2Attrs, AttrError> {
        stage2_policy(intent, self.features).map(|p| S2Attrs::from_policy(&p))
    }

    /// Maps `ipa` to `pa` with the attributes of `intent`.
    pub fn map(
        &mut self,
        ipa: IpaRange,
        pa: PhysAddr,
        intent: MemoryIntent,
        tlb: &mut impl Stage2TlbMaint,
    ) -> Result<(), Stage2Error> {
        let attrs = self.attrs_for(intent)?;
        Ok(self.table.map(ipa, pa, attrs, &mut S2Tlb(tlb))?)
    }

    /// Guest RAM: read/write/execute, Write-Back.
    pub fn map_ram(
        &mut self,
        ipa: IpaRange,
        pa: PhysAddr,
        tlb: &mut impl Stage2TlbMaint,
    ) -> Result<(), Stage2Error> {
        self.map(ipa, pa, MemoryIntent::GuestRam, tlb)
    }

    /// A passthrough PCIe BAR under `policy`: never executable.
    pub fn map_passthrough_bar(
        &mut self,
        ipa: IpaRange,
        pa: PhysAddr,
        policy: BarPolicy,
        tlb: &mut impl Stage2TlbMaint,
    ) -> Result<(), Stage2Error> {
        self.map(ipa, pa, MemoryIntent::PassthroughBar(policy), tlb)
    }

    /// Platform MMIO the guest may access directly: Device-nGnRE, never executable.
    pub fn map_device(
        &mut self,
        ipa: IpaRange,
        pa: PhysAddr,
        tlb: &mut impl Stage2TlbMaint,
    ) -> Result<(), Stage2Error> {
        self.map(ipa, pa, MemoryIntent::PlatformMmio, tlb)
    }

    /// Removes every mapping in `ipa`.
    pub fn unmap(
        &mut self,
        ipa: IpaRange,
        tlb: &mut impl Stage2TlbMaint,
    ) -> Result<(), Stage2Error> {
        Ok(self.table.unmap(ipa, &mut S2Tlb(tlb))?)
    }

    /// Gives the (wholly mapped) range `ipa` the attributes of `intent`.
    pub fn change_intent(
        &mut self,
        ipa: IpaRange,
        intent: MemoryIntent,
        tlb: &mut impl Stage2TlbMaint,
    ) -> Result<(), Stage2Error> {
        let attrs = self.attrs_for(intent)?;
        self.change_attributes(ipa, attrs, tlb)
    }

    /// Gives the (wholly mapped) range `ipa` exactly `attrs`.
    pub fn change_attributes(
        &mut self,
        ipa: IpaRange,
        attrs: S2Attrs,
        tlb: &mut impl Stage2TlbMaint,
    ) -> Result<(), Stage2Error> {
        Ok(self.table.change_attributes(ipa, attrs, &mut S2Tlb(tlb))?)
    }

    /// Where `ipa` maps to.
    pub fn translate(&self, ipa: Ipa) -> Option<Translation<S2Attrs>> {
        self.table.translate(ipa)
    }

    /// Every descriptor a walk for `ipa` reads (debugger, fault logging).
    pub fn walk(&self, ipa: Ipa) -> Walk {
        self.table.walk(ipa)
    }
}

impl<M: PhysToVirt> fmt::Debug for Stage2<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stage2")
            .field("vmid", &self.vmid)
            .field("config", &self.config)
            .field("table", &self.table)
            .finish()
    }
}
