//! The guest's interrupt controller: an emulated GICv3 distributor and
//! redistributors, or an emulated GICv2 distributor, per the GIC
//! architecture specifications (Arm IHI 0069H for GICv3, Arm IHI 0048B.b for
//! GICv2), and the list-register manager ([`lr`]) that hands their pending
//! interrupts to the hardware's virtual CPU interface.
//!
//! The state is one [`Vgic`] per VM: the private interrupts (SGIs and PPIs,
//! INTIDs 0-31) of every vCPU and the VM's SPIs. A register access arrives
//! with its context (the vCPU that makes it, the offset in the frame, the
//! width and, for a write, the value) and returns the value read or pushes
//! [`Effect`]s: an interrupt that became pending for a vCPU, SGIs sent, and
//! changes the physical GIC must see for interrupts the VM owns. Nothing here
//! touches hardware or knows about the VM; the caller applies the effects.
//!
//! Rules for what a guest may throw at it (hostile-guest items 21-25b):
//! - read-only registers (TYPER, IIDR, the ID registers) ignore writes;
//! - registers or INTIDs beyond the implemented interrupts read as zero and
//!   ignore writes: no INTID is ever used as an index unchecked;
//! - IPRIORITYR and ITARGETSR (and GICv2's SPENDSGIR/CPENDSGIR) take byte and
//!   word accesses, the 64-bit registers (IROUTER, GICR_TYPER) 64-bit and
//!   32-bit ones, every other register only aligned 32-bit accesses; anything
//!   else is [`BadAccess`] (the MMIO bus reads all ones and drops the write);
//! - an interrupt backed by a physical one ([`Vgic::assign_hw`]) changes the
//!   physical GIC only through [`Effect::PhysEnable`] and
//!   [`Effect::PhysRoute`]; no other interrupt ever yields a physical effect;
//! - a redistributor frame holds the state of the vCPU it belongs to,
//!   whichever vCPU accesses it (the architecture's rule), so one vCPU's
//!   access never changes another vCPU's frame.
//!
//! Security: the emulated GIC has a single Security state (GICD_CTLR.DS
//! reads 1), affinity routing always on for GICv3 (GICD_CTLR.ARE RAO/WI), no
//! LPIs, no ITS, and 1-of-N routing not implemented (GICD_TYPER.No1N = 1).

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use alloc::vec::Vec;

pub mod lr;
mod v2;
mod v3;

#[cfg(test)]
mod tests;

/// INTIDs 0-15: software-generated interrupts.
pub const SGI_COUNT: u32 = 16;
/// INTIDs 0-31 are private to each vCPU (SGIs and PPIs).
pub const PRIVATE_COUNT: u32 = 32;
/// The largest number of SPIs a distributor can have (INTIDs 32-1019).
pub const MAX_SPIS: u32 = 988;
/// The INTID an acknowledge returns when nothing is pending.
pub const SPURIOUS_INTID: u32 = 1023;
/// The largest VM: 8 vCPUs on GICv2 (its CPU target lists are 8 bits wide);
/// 64 on GICv3 here, the width of [`VcpuSet`].
pub const MAX_VCPUS_V2: usize = 8;
/// See [`MAX_VCPUS_V2`].
pub const MAX_VCPUS_V3: usize = 64;
/// Implemented priority bits: 5, as on GIC-400 and as the GICv2 list
/// registers hold. Lower bits read as zero (IHI 0069H 4.8.1).
pub const PRIORITY_MASK: u8 = 0xf8;

/// Size of the GICv3 distributor frame.
pub const GICD_V3_SIZE: u64 = 0x1_0000;
/// Size of the GICv2 distributor frame.
pub const GICD_V2_SIZE: u64 = 0x1000;
/// Size of one GICv3 redistributor (RD_base and SGI_base frames).
pub const GICR_STRIDE: u64 = 0x2_0000;

/// Which architecture the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// GICv2: distributor with CPU target lists, GICD_SGIR.
    V2,
    /// GICv3: distributor, one redistributor per vCPU, affinity routing.
    V3,
}

/// A set of vCPUs by index, bit n for vCPU n.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuSet(pub u64);

impl VcpuSet {
    /// Whether vCPU `vcpu` is in the set.
    pub const fn contains(self, vcpu: usize) -> bool {
        vcpu < 64 && self.0 & (1 << vcpu) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Adds vCPU `vcpu` (ignored beyond 63).
    pub fn insert(&mut self, vcpu: usize) {
        if vcpu < 64 {
            self.0 |= 1 << vcpu;
        }
    }

    /// The members, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..64).filter(move |&v| self.contains(v))
    }
}

/// What an access or an injection asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// `intid` can now be delivered to `vcpu`: refresh its list registers,
    /// wake it if it waits for an interrupt.
    Pending {
        /// The vCPU.
        vcpu: usize,
        /// The interrupt.
        intid: u32,
    },
    /// SGI `intid` was made pending on `targets`: kick them.
    Sgi {
        /// The SGI (0-15).
        intid: u32,
        /// The vCPUs it is now pending on.
        targets: VcpuSet,
    },
    /// The guest enabled or disabled an interrupt it owns: do the same to
    /// physical interrupt `pintid`.
    PhysEnable {
        /// The physical INTID.
        pintid: u32,
        /// Enable (true) or disable.
        enable: bool,
    },
    /// The guest routed an interrupt it owns to `vcpu`: route physical
    /// `pintid` to the physical CPU that runs it.
    PhysRoute {
        /// The physical INTID.
        pintid: u32,
        /// The vCPU it now targets.
        vcpu: usize,
    },
}

/// The effects of one or more accesses, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects(Vec<Effect>);

impl Effects {
    /// None yet. Allocates nothing until the first push.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Appends one effect.
    pub fn push(&mut self, effect: Effect) {
        self.0.push(effect);
    }

    /// The effects so far, in order.
    pub fn as_slice(&self) -> &[Effect] {
        &self.0
    }

    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes every effect out, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = Effect> + '_ {
        self.0.drain(..)
    }
}

/// An access the register does not take (wrong width, unaligned, a vCPU
/// index the VM does not have): the bus reads all ones and drops the write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadAccess;

/// The state of one interrupt for one target (IHI 0069H 4.1.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Irq {
    /// Forwarded to the CPU interface when pending (ISENABLER).
    pub enabled: bool,
    /// Pending latch: set by an edge, a write to ISPENDR or an SGI; for a
    /// level-sensitive interrupt the line also makes it pending.
    pub latch: bool,
    /// The input line, for level-sensitive interrupts.
    pub line: bool,
    /// Active (acknowledged, not yet deactivated).
    pub active: bool,
    /// Priority, the implemented bits only ([`PRIORITY_MASK`]).
    pub priority: u8,
    /// Group 1 (IGROUPR bit set).
    pub group1: bool,
    /// Edge-triggered (ICFGR's Int_config bit 1).
    pub edge: bool,
    /// The physical INTID this interrupt is backed by, when the VM owns one.
    pub hw: Option<u32>,
    /// GICv2 SGIs: the source CPUs the SGI is pending from, one bit each.
    pub sources: u8,
    /// GICv2 SGIs: the source of the activation in progress.
    pub active_source: u8,
    /// The vCPU whose list register holds it now, if any.
    pub queued_on: Option<usize>,
}

impl Irq {
    /// Pending, from the latch or, when level-sensitive, the line.
    pub const fn pending(&self) -> bool {
        self.latch || (!self.edge && self.line)
    }
}

/// How a [`Vgic`] is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VgicConfig {
    /// The architecture the guest sees.
    pub version: Version,
    /// Each vCPU's affinity, as GICR_TYPER[63:32] holds it
    /// (Aff3:Aff2:Aff1:Aff0, 8 bits each), index = vCPU.
    pub affinities: Vec<u32>,
    /// SPIs (INTIDs from 32): rounded up to a multiple of 32, at most
    /// [`MAX_SPIS`].
    pub spis: u32,
}

impl VgicConfig {
    /// `vcpus` vCPUs with Aff0 = index (the guest DT's MPIDRs), `spis` SPIs.
    pub fn new(version: Version, vcpus: usize, spis: u32) -> Self {
        Self {
            version,
            affinities: (0..vcpus).map(|v| v as u32).collect(),
            spis,
        }
    }
}

/// Why a configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// No vCPU, or more than the version allows.
    VcpuCount(usize),
    /// Two vCPUs share an affinity.
    DuplicateAffinity(u32),
}

/// Why [`Vgic::assign_hw`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignError {
    /// Not an SPI this distributor implements.
    NoSuchSpi(u32),
    /// The virtual or physical interrupt is assigned already.
    Taken(u32),
}

/// GICD_CTLR bits (IHI 0069H 12.9.4, single Security state).
pub(crate) mod ctlr {
    /// EnableGrp0.
    pub const GRP0: u32 = 1 << 0;
    /// EnableGrp1 (GICv2), EnableGrp1 (GICv3, DS=1).
    pub const GRP1: u32 = 1 << 1;
    /// ARE: affinity routing (GICv3, RAO/WI here).
    pub const ARE: u32 = 1 << 4;
    /// DS: disable security (GICv3, RAO/WI here).
    pub const DS: u32 = 1 << 6;
}

/// The emulated interrupt controller of one VM.
#[derive(Clone, Debug)]
pub struct Vgic {
    version: Version,
    affinities: Vec<u32>,
    /// Per vCPU: INTIDs 0-31.
    private: Vec<[Irq; PRIVATE_COUNT as usize]>,
    /// INTIDs 32.. .
    spis: Vec<Irq>,
    /// GICv3: GICD_IROUTER<n> per SPI, the Aff fields as written.
    irouter: Vec<u64>,
    /// GICv2: GICD_ITARGETSR byte per SPI.
    targets: Vec<u8>,
    /// GICD_CTLR enable bits ([`ctlr::GRP0`], [`ctlr::GRP1`]).
    ctlr: u32,
    /// GICR_WAKER.ProcessorSleep per vCPU.
    asleep: Vec<bool>,
}

impl Vgic {
    /// A distributor in its reset state: every interrupt disabled, inactive,
    /// not pending, priority 0, Group 0, SGIs edge, PPIs and SPIs level, SPIs
    /// routed to vCPU 0 (GICv3: IROUTER 0; GICv2: ITARGETSR 0, no target).
    pub fn new(config: &VgicConfig) -> Result<Self, ConfigError> {
        let vcpus = config.affinities.len();
        let max = match config.version {
            Version::V2 => MAX_VCPUS_V2,
            Version::V3 => MAX_VCPUS_V3,
        };
        if vcpus == 0 || vcpus > max {
            return Err(ConfigError::VcpuCount(vcpus));
        }
        for (i, a) in config.affinities.iter().enumerate() {
            if config.affinities.iter().skip(i + 1).any(|b| b == a) {
                return Err(ConfigError::DuplicateAffinity(*a));
            }
        }
        let spis = config.spis.div_ceil(32).saturating_mul(32).min(MAX_SPIS) as usize;
        let mut private = [Irq::default(); PRIVATE_COUNT as usize];
        for (intid, irq) in private.iter_mut().enumerate() {
            irq.edge = intid < SGI_COUNT as usize;
        }
        Ok(Self {
            version: config.version,
            affinities: config.affinities.clone(),
            private: alloc::vec![private; vcpus],
            spis: alloc::vec![Irq::default(); spis],
            irouter: alloc::vec![0; spis],
            targets: alloc::vec![0; spis],
            ctlr: 0,
            asleep: alloc::vec![true; vcpus],
        })
    }

    /// The architecture the guest sees.
    pub fn version(&self) -> Version {
        self.version
    }

    /// How many vCPUs.
    pub fn vcpus(&self) -> usize {
        self.affinities.len()
    }

    /// How many SPIs (a multiple of 32).
    pub fn spis(&self) -> u32 {
        self.spis.len() as u32
    }

    /// One past the largest implemented INTID.
    pub fn intid_limit(&self) -> u32 {
        PRIVATE_COUNT + self.spis()
    }

    /// The state of `intid` as `vcpu` sees it (private INTIDs are per vCPU),
    /// `None` for an INTID or a vCPU that does not exist.
    pub fn irq(&self, vcpu: usize, intid: u32) -> Option<&Irq> {
        if intid < PRIVATE_COUNT {
            self.private.get(vcpu)?.get(intid as usize)
        } else {
            self.spis.get(intid.checked_sub(PRIVATE_COUNT)? as usize)
        }
    }

    fn irq_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut Irq> {
        if intid < PRIVATE_COUNT {
            self.private.get_mut(vcpu)?.get_mut(intid as usize)
        } else {
            self.spis
                .get_mut(intid.checked_sub(PRIVATE_COUNT)? as usize)
        }
    }

    /// Backs SPI `intid` by physical interrupt `pintid` (a passed-through
    /// device's line): the guest's enables and routing of it are forwarded as
    /// effects, and its list registers carry the HW bit so the guest's
    /// deactivation deactivates the physical interrupt.
    pub fn assign_hw(&mut self, intid: u32, pintid: u32) -> Result<(), AssignError> {
        if intid < PRIVATE_COUNT || self.irq(0, intid).is_none() {
            return Err(AssignError::NoSuchSpi(intid));
        }
        if self.spis.iter().any(|i| i.hw == Some(pintid)) {
            return Err(AssignError::Taken(pintid));
        }
        match self.irq_mut(0, intid) {
            Some(irq) if irq.hw.is_none() => {
                irq.hw = Some(pintid);
                Ok(())
            }
            _ => Err(AssignError::Taken(intid)),
        }
    }

    /// Backs private interrupt `intid` of every vCPU by physical `pintid`
    /// (the virtual timer's PPI).
    pub fn assign_hw_private(&mut self, intid: u32, pintid: u32) -> Result<(), AssignError> {
        if !(SGI_COUNT..PRIVATE_COUNT).contains(&intid) {
            return Err(AssignError::NoSuchSpi(intid));
        }
        for bank in self.private.iter_mut() {
            if let Some(irq) = bank.get_mut(intid as usize) {
                irq.hw = Some(pintid);
            }
        }
        Ok(())
    }

    /// The vCPU an SPI is delivered to now, `None` when its routing names no
    /// vCPU of this VM (it then stays pending in the distributor).
    pub fn spi_target(&self, intid: u32) -> Option<usize> {
        let n = intid.checked_sub(PRIVATE_COUNT)? as usize;
        match self.version {
            Version::V3 => {
                let aff = route_affinity(*self.irouter.get(n)?);
                self.affinities.iter().position(|&a| a == aff)
            }
            Version::V2 => {
                let t = *self.targets.get(n)?;
                (t != 0).then(|| t.trailing_zeros() as usize)
            }
        }
    }

    /// Whether `intid` may be forwarded to `vcpu`'s CPU interface now: it
    /// targets `vcpu`, and it is active, or pending and enabled in an
    /// enabled group.
    fn deliverable(&self, vcpu: usize, intid: u32) -> bool {
        let Some(irq) = self.irq(vcpu, intid) else {
            return false;
        };
        let targeted = intid < PRIVATE_COUNT || self.spi_target(intid) == Some(vcpu);
        let group = if irq.group1 { ctlr::GRP1 } else { ctlr::GRP0 };
        let queued_elsewhere = irq.queued_on.is_some_and(|q| q != vcpu);
        targeted
            && !queued_elsewhere
            && (irq.active || (irq.pending() && irq.enabled && self.ctlr & group != 0))
    }

    /// Pushes [`Effect::Pending`] when `intid` became deliverable.
    fn notify(&self, intid: u32, vcpu: usize, fx: &mut Effects) {
        let target = if intid < PRIVATE_COUNT {
            Some(vcpu)
        } else {
            self.spi_target(intid)
        };
        if let Some(t) = target {
            if self.deliverable(t, intid) {
                fx.push(Effect::Pending { vcpu: t, intid });
            }
        }
    }

    /// After a change that may make many interrupts deliverable at once (a
    /// group enabled in GICD_CTLR): one [`Effect::Pending`] per vCPU that has
    /// something to take.
    fn notify_all(&self, fx: &mut Effects) {
        for vcpu in 0..self.vcpus() {
            if let Some(intid) = self.candidates(vcpu).next() {
                fx.push(Effect::Pending { vcpu, intid });
            }
        }
    }

    /// Whether anything can be delivered to `vcpu`: what WFI waits for.
    pub fn has_deliverable(&self, vcpu: usize) -> bool {
        self.candidates(vcpu).any(|intid| {
            self.irq(vcpu, intid)
                .is_some_and(|i| i.pending() && i.queued_on.is_none())
        })
    }

    /// Every INTID that may be forwarded to `vcpu` now, in INTID order.
    pub fn candidates(&self, vcpu: usize) -> impl Iterator<Item = u32> + '_ {
        (0..self.intid_limit()).filter(move |&i| self.deliverable(vcpu, i))
    }

    /// An emulated device's interrupt line to SPI or PPI `intid` changed
    /// (for a PPI, `vcpu`'s). An edge-triggered interrupt latches pending on
    /// a rising level. Unknown INTIDs are ignored.
    pub fn set_line(&mut self, vcpu: usize, intid: u32, level: bool, fx: &mut Effects) {
        if intid < SGI_COUNT {
            return;
        }
        let Some(irq) = self.irq_mut(vcpu, intid) else {
            return;
        };
        let rising = level && !irq.line;
        irq.line = level;
        if rising && irq.edge {
            irq.latch = true;
        }
        if rising {
            self.notify(intid, vcpu, fx);
        }
    }

    /// Physical interrupt `pintid`, which the VM owns, was taken at EL2 on
    /// the CPU running `vcpu` (priority dropped, still active): make its
    /// virtual interrupt pending. Returns false when no interrupt of this VM
    /// is backed by it (the caller deactivates it itself).
    pub fn inject_hw(&mut self, vcpu: usize, pintid: u32, fx: &mut Effects) -> bool {
        let found = self
            .private
            .get(vcpu)
            .and_then(|bank| bank.iter().position(|i| i.hw == Some(pintid)))
            .map(|i| i as u32)
            .or_else(|| {
                self.spis
                    .iter()
                    .position(|i| i.hw == Some(pintid))
                    .map(|i| i as u32 + PRIVATE_COUNT)
            });
        let Some(intid) = found else {
            return false;
        };
        if let Some(irq) = self.irq_mut(vcpu, intid) {
            irq.latch = true;
        }
        self.notify(intid, vcpu, fx);
        true
    }

    /// A trapped write to ICC_SGI1R_EL1 (`group1`) or ICC_SGI0R_EL1 by
    /// `vcpu` (IHI 0069H 12.2.22): the SGI becomes pending on each target
    /// whose copy of it is in the requested group. Targets that do not
    /// exist are ignored.
    pub fn write_sgir_sysreg(&mut self, vcpu: usize, value: u64, group1: bool, fx: &mut Effects) {
        if vcpu >= self.vcpus() {
            return;
        }
        let intid = ((value >> 24) & 0xf) as u32;
        let mut targets = VcpuSet::default();
        if value & (1 << 40) != 0 {
            for v in 0..self.vcpus() {
                if v != vcpu {
                    targets.insert(v);
                }
            }
        } else {
            let aff321 =
                ((value >> 48) & 0xff) << 16 | ((value >> 32) & 0xff) << 8 | (value >> 16) & 0xff;
            let rs = ((value >> 44) & 0xf) as u32;
            let list = (value & 0xffff) as u32;
            for (v, &aff) in self.affinities.iter().enumerate() {
                let aff0 = aff & 0xff;
                let bit = aff0.wrapping_sub(rs * 16);
                if u64::from(aff >> 8) == aff321 && bit < 16 && list & (1 << bit) != 0 {
                    targets.insert(v);
                }
            }
        }
        self.raise_sgi(vcpu, intid, targets, Some(group1), fx);
    }

    /// Makes SGI `intid` from `source` pending on `targets`.
    fn raise_sgi(
        &mut self,
        source: usize,
        intid: u32,
        targets: VcpuSet,
        group1: Option<bool>,
        fx: &mut Effects,
    ) {
        let mut hit = VcpuSet::default();
        for t in targets.iter() {
            let v2 = self.version == Version::V2;
            let Some(irq) = self.irq_mut(t, intid) else {
                continue;
            };
            if group1.is_some_and(|g| g != irq.group1) {
                continue;
            }
            if v2 {
                irq.sources |= 1 << (source & 7);
            }
            irq.latch = true;
            hit.insert(t);
        }
        if !hit.is_empty() {
            fx.push(Effect::Sgi {
                intid,
                targets: hit,
            });
        }
    }

    // Register helpers shared by the GICv3 and GICv2 frames.

    /// A 32-bit register of one bit per INTID, from `first`.
    fn read_bits(&self, vcpu: usize, first: u32, bit: impl Fn(&Irq) -> bool) -> u32 {
        (0..32).fold(0, |acc, i| match self.irq(vcpu, first + i) {
            Some(irq) if bit(irq) => acc | 1 << i,
            _ => acc,
        })
    }

    /// Applies `set` to each INTID from `first` whose bit is set in `value`.
    fn write_bits(
        &mut self,
        vcpu: usize,
        first: u32,
        value: u32,
        fx: &mut Effects,
        mut set: impl FnMut(&mut Irq, u32, &mut Effects),
    ) {
        for i in 0..32 {
            if value & (1 << i) == 0 {
                continue;
            }
            let intid = first + i;
            let Some(irq) = self.irq_mut(vcpu, intid) else {
                continue;
            };
            set(irq, intid, fx);
            self.notify(intid, vcpu, fx);
        }
    }

    /// ISENABLER/ICENABLER, ISPENDR/ICPENDR, ISACTIVER/ICACTIVER and
    /// IGROUPR, for the 32 INTIDs from `first` (`vcpu`'s bank for 0-31).
    fn read_bitmap(&self, vcpu: usize, base: u64, first: u32) -> u32 {
        match base {
            reg::IGROUPR => self.read_bits(vcpu, first, |i| i.group1),
            reg::ISENABLER | reg::ICENABLER => self.read_bits(vcpu, first, |i| i.enabled),
            reg::ISPENDR | reg::ICPENDR => self.read_bits(vcpu, first, |i| i.pending()),
            reg::ISACTIVER | reg::ICACTIVER => self.read_bits(vcpu, first, |i| i.active),
            _ => 0,
        }
    }

    fn write_bitmap(&mut self, vcpu: usize, base: u64, first: u32, value: u32, fx: &mut Effects) {
        // GICv2 SGIs: pending state is per source, set and cleared through
        // SPENDSGIR/CPENDSGIR only (IHI 0048B 4.3.7).
        let value = if self.version == Version::V2
            && first == 0
            && matches!(base, reg::ISPENDR | reg::ICPENDR)
        {
            value & !0xffff
        } else {
            value
        };
        match base {
            reg::IGROUPR => {
                for i in 0..32 {
                    if let Some(irq) = self.irq_mut(vcpu, first + i) {
                        irq.group1 = value & (1 << i) != 0;
                    }
                }
                for i in 0..32 {
                    self.notify(first + i, vcpu, fx);
                }
            }
            reg::ISENABLER => self.write_bits(vcpu, first, value, fx, |irq, _, fx| {
                if !irq.enabled {
                    if let Some(p) = irq.hw {
                        fx.push(Effect::PhysEnable {
                            pintid: p,
                            enable: true,
                        });
                    }
                }
                irq.enabled = true;
            }),
            reg::ICENABLER => self.write_bits(vcpu, first, value, fx, |irq, _, fx| {
                if irq.enabled {
                    if let Some(p) = irq.hw {
                        fx.push(Effect::PhysEnable {
                            pintid: p,
                            enable: false,
                        });
                    }
                }
                irq.enabled = false;
            }),
            reg::ISPENDR => self.write_bits(vcpu, first, value, fx, |irq, _, _| {
                irq.latch = true;
            }),
            reg::ICPENDR => self.write_bits(vcpu, first, value, fx, |irq, _, _| {
                irq.latch = false;
                irq.sources = 0;
            }),
            reg::ISACTIVER => self.write_bits(vcpu, first, value, fx, |irq, _, _| {
                irq.active = true;
            }),
            reg::ICACTIVER => self.write_bits(vcpu, first, value, fx, |irq, _, _| {
                irq.active = false;
            }),
            _ => {}
        }
    }

    /// IPRIORITYR: `size` bytes (1 or 4) from INTID `first`.
    fn read_priority(&self, vcpu: usize, first: u32, size: u8) -> u32 {
        (0..u32::from(size)).fold(0, |acc, i| {
            let p = self.irq(vcpu, first + i).map_or(0, |irq| irq.priority);
            acc | u32::from(p) << (8 * i)
        })
    }

    fn write_priority(&mut self, vcpu: usize, first: u32, size: u8, value: u32) {
        for i in 0..u32::from(size) {
            if let Some(irq) = self.irq_mut(vcpu, first + i) {
                irq.priority = (value >> (8 * i)) as u8 & PRIORITY_MASK;
            }
        }
    }

    /// ICFGR: 16 INTIDs from `first`, two bits each (bit 1: edge).
    fn read_config(&self, vcpu: usize, first: u32) -> u32 {
        (0..16).fold(0, |acc, i| match self.irq(vcpu, first + i) {
            Some(irq) if irq.edge => acc | 2 << (2 * i),
            _ => acc,
        })
    }

    /// SGI and PPI configuration is fixed (SGIs edge, PPIs level); SPIs take
    /// the guest's choice.
    fn write_config(&mut self, first: u32, value: u32) {
        for i in 0..16 {
            let intid = first + i;
            if intid < PRIVATE_COUNT {
                continue;
            }
            if let Some(irq) = self.irq_mut(0, intid) {
                irq.edge = value & (2 << (2 * i)) != 0;
            }
        }
    }
}

/// IROUTER's Aff3:Aff2:Aff1:Aff0 packed as GICR_TYPER holds affinity.
const fn route_affinity(irouter: u64) -> u32 {
    (((irouter >> 32) & 0xff) << 24 | (irouter & 0xff_ffff)) as u32
}

/// Distributor offsets common to both versions (IHI 0069H table 12-25,
/// IHI 0048B table 4-1), and the GICv3 redistributor's SGI_base ones.
pub(crate) mod reg {
    /// Control.
    pub const CTLR: u64 = 0x0000;
    /// Type.
    pub const TYPER: u64 = 0x0004;
    /// Implementer identification.
    pub const IIDR: u64 = 0x0008;
    /// Group.
    pub const IGROUPR: u64 = 0x0080;
    /// Set-enable.
    pub const ISENABLER: u64 = 0x0100;
    /// Clear-enable.
    pub const ICENABLER: u64 = 0x0180;
    /// Set-pending.
    pub const ISPENDR: u64 = 0x0200;
    /// Clear-pending.
    pub const ICPENDR: u64 = 0x0280;
    /// Set-active.
    pub const ISACTIVER: u64 = 0x0300;
    /// Clear-active.
    pub const ICACTIVER: u64 = 0x0380;
    /// Priority, a byte per INTID.
    pub const IPRIORITYR: u64 = 0x0400;
    /// GICv2 CPU targets, a byte per INTID.
    pub const ITARGETSR: u64 = 0x0800;
    /// Configuration, two bits per INTID.
    pub const ICFGR: u64 = 0x0C00;
    /// GICv2 software-generated interrupts.
    pub const SGIR: u64 = 0x0F00;
    /// GICv2 SGI clear-pending, a byte per SGI.
    pub const CPENDSGIR: u64 = 0x0F10;
    /// GICv2 SGI set-pending, a byte per SGI.
    pub const SPENDSGIR: u64 = 0x0F20;
    /// GICv3 routing, 64 bits per SPI.
    pub const IROUTER: u64 = 0x6000;
}

/// The bitmap register at `offset` and the first INTID it covers, if it is
/// one: (base of the register array, first INTID).
fn bitmap_register(offset: u64) -> Option<(u64, u32)> {
    let base = offset & !0x7f;
    matches!(
        base,
        reg::IGROUPR
            | reg::ISENABLER
            | reg::ICENABLER
            | reg::ISPENDR
            | reg::ICPENDR
            | reg::ISACTIVER
            | reg::ICACTIVER
    )
    .then(|| (base, ((offset & 0x7f) / 4 * 32) as u32))
}

/// Whether an access of `size` at `offset` is a naturally aligned access of
/// one of the widths in `widths`.
fn fits(offset: u64, size: u8, widths: &[u8]) -> bool {
    widths.contains(&size) && offset.is_multiple_of(u64::from(size))
}

/// The ID registers' common part: CIDR0-3 at 0xFFF0 (v3) / 0xFF0 (v2) read
/// 0x0D, 0xF0, 0x05, 0xB1 (IHI 0069H 12.1.3); PIDR2's ArchRev is at 0xFE8.
fn id_register(offset_in_page: u64, arch_rev: u32) -> u32 {
    match offset_in_page {
        0xfe0 => 0x92, // PIDR0: part number low byte (Arm GIC)
        0xfe4 => 0xb4, // PIDR1: part number high nibble, JEP106 low bits
        0xfe8 => (arch_rev << 4) | 0x0b,
        0xff0 => 0x0d,
        0xff4 => 0xf0,
        0xff8 => 0x05,
        0xffc => 0xb1,
        _ => 0,
    }
}

/// GICD_IIDR / GICR_IIDR: Arm (JEP106 0x43B), product 0, revision 0.
const IIDR_VALUE: u32 = 0x0000_043b;
