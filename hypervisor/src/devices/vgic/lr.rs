//! The list registers: how the emulated GIC's interrupts reach the
//! hardware's virtual CPU interface (IHI 0069H 11.2 and 12.4.7, ICH_LR<n>_EL2;
//! IHI 0048B 5.3.11, GICH_LR<n>).
//!
//! The [`Vgic`] holds the truth. Before a vCPU enters the guest,
//! [`LrManager::flush`] writes the interrupts it may take into the list
//! registers, active ones first, then pending ones in priority order (lower
//! value first, then lower INTID); when more are deliverable than there are
//! registers the rest wait in the distributor and the flush asks for the
//! underflow and no-pending maintenance interrupts (ICH_HCR_EL2.UIE, NPIE),
//! whose exit brings the next flush. After every exit, [`LrManager::fold`]
//! reads the registers back into the [`Vgic`] (what the guest acknowledged,
//! completed or left pending) and empties them.
//!
//! An interrupt backed by a physical one gets the HW bit and its physical
//! INTID: the guest's deactivation deactivates the physical interrupt, which
//! stays active from the moment EL2 took it (EOImode 1). Such an interrupt
//! is never written pending and active at once, which the architecture does
//! not allow for HW interrupts. A level-sensitive interrupt without the HW bit
//! asks for the EOI maintenance interrupt so its line is sampled again once
//! the guest completes it.
//!
//! The registers are reached through [`ListRegisters`], so host tests run
//! the manager against a fake.

use super::{Irq, Version, Vgic, SGI_COUNT};

/// The most list registers the architecture allows (ICH_VTR_EL2.ListRegs is
/// 4 bits; GICv2 allows 64 but no implementation has more than 16).
pub const MAX_LRS: usize = 16;

/// ICH_HCR_EL2 / GICH_HCR.UIE: maintenance interrupt when at most one list
/// register holds an interrupt.
pub const HCR_UIE: u32 = 1 << 1;
/// ICH_HCR_EL2 / GICH_HCR.NPIE: maintenance interrupt when no list register
/// holds a pending interrupt.
pub const HCR_NPIE: u32 = 1 << 3;

/// The list registers of the CPU interface running the vCPU.
pub trait ListRegisters {
    /// How many there are (ICH_VTR_EL2.ListRegs + 1).
    fn count(&self) -> usize;
    /// Reads list register `index` (< `count()`).
    fn read(&mut self, index: usize) -> u64;
    /// Writes list register `index` (< `count()`).
    fn write(&mut self, index: usize, value: u64);
}

/// The number of list registers ICH_VTR_EL2 (GICv3) or GICH_VTR (GICv2)
/// reports, at most [`MAX_LRS`].
pub fn count_from_vtr(version: Version, vtr: u64) -> usize {
    let field = match version {
        Version::V3 => vtr & 0x1f,
        Version::V2 => vtr & 0x3f,
    };
    (field as usize + 1).min(MAX_LRS)
}

/// A list register's state field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LrState {
    /// Nothing (the guest completed it, or never used).
    #[default]
    Invalid,
    /// Pending.
    Pending,
    /// Active.
    Active,
    /// Pending and active.
    PendingActive,
}

impl LrState {
    const fn from_bits(bits: u64) -> Self {
        match bits & 3 {
            0 => Self::Invalid,
            1 => Self::Pending,
            2 => Self::Active,
            _ => Self::PendingActive,
        }
    }

    const fn bits(self) -> u64 {
        match self {
            Self::Invalid => 0,
            Self::Pending => 1,
            Self::Active => 2,
            Self::PendingActive => 3,
        }
    }

    /// Whether the state includes pending.
    pub const fn pending(self) -> bool {
        matches!(self, Self::Pending | Self::PendingActive)
    }

    /// Whether the state includes active.
    pub const fn active(self) -> bool {
        matches!(self, Self::Active | Self::PendingActive)
    }
}

/// One list register, decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lr {
    /// The virtual INTID.
    pub vintid: u32,
    /// The physical INTID, for a hardware interrupt (the HW bit).
    pub pintid: Option<u32>,
    /// Priority (GICv2 keeps the top 5 bits).
    pub priority: u8,
    /// Group 1.
    pub group1: bool,
    /// State.
    pub state: LrState,
    /// Maintenance interrupt on EOI (only without the HW bit).
    pub eoi: bool,
    /// GICv2 SGIs: the source CPU (only without the HW bit).
    pub source: u8,
}

impl Lr {
    /// ICH_LR<n>_EL2 (IHI 0069H 12.4.7): vINTID [31:0], pINTID [44:32] with
    /// HW, else EOI [41]; Priority [55:48], Group [60], HW [61], State [63:62].
    pub fn encode_v3(&self) -> u64 {
        let mut v = u64::from(self.vintid)
            | u64::from(self.priority) << 48
            | u64::from(self.group1) << 60
            | self.state.bits() << 62;
        match self.pintid {
            Some(p) => v |= u64::from(p & 0x1fff) << 32 | 1 << 61,
            None => v |= u64::from(self.eoi) << 41,
        }
        v
    }

    /// The inverse of [`Lr::encode_v3`].
    pub fn decode_v3(v: u64) -> Self {
        let hw = v & (1 << 61) != 0;
        Self {
            vintid: v as u32,
            pintid: hw.then_some(((v >> 32) & 0x1fff) as u32),
            priority: (v >> 48) as u8,
            group1: v & (1 << 60) != 0,
            state: LrState::from_bits(v >> 62),
            eoi: !hw && v & (1 << 41) != 0,
            source: 0,
        }
    }

    /// GICH_LR<n> (IHI 0048B 5.3.11): VirtualID [9:0], PhysicalID [19:10]
    /// with HW, else CPUID [12:10] and EOI [19]; Priority [27:23] (the top
    /// five bits), State [29:28], Grp1 [30], HW [31].
    pub fn encode_v2(&self) -> u64 {
        let mut v = u64::from(self.vintid & 0x3ff)
            | u64::from(self.priority >> 3) << 23
            | self.state.bits() << 28
            | u64::from(self.group1) << 30;
        match self.pintid {
            Some(p) => v |= u64::from(p & 0x3ff) << 10 | 1 << 31,
            None => v |= u64::from(self.source & 7) << 10 | u64::from(self.eoi) << 19,
        }
        v
    }

    /// The inverse of [`Lr::encode_v2`].
    pub fn decode_v2(v: u64) -> Self {
        let hw = v & (1 << 31) != 0;
        Self {
            vintid: (v & 0x3ff) as u32,
            pintid: hw.then_some(((v >> 10) & 0x3ff) as u32),
            priority: (((v >> 23) & 0x1f) as u8) << 3,
            group1: v & (1 << 30) != 0,
            state: LrState::from_bits(v >> 28),
            eoi: !hw && v & (1 << 19) != 0,
            source: if hw { 0 } else { ((v >> 10) & 7) as u8 },
        }
    }

    fn encode(&self, version: Version) -> u64 {
        match version {
            Version::V3 => self.encode_v3(),
            Version::V2 => self.encode_v2(),
        }
    }

    fn decode(v: u64, version: Version) -> Self {
        match version {
            Version::V3 => Self::decode_v3(v),
            Version::V2 => Self::decode_v2(v),
        }
    }
}

/// What a flush did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flush {
    /// List registers written.
    pub loaded: usize,
    /// Deliverable interrupts that did not fit and wait in the distributor.
    pub overflow: usize,
}

impl Flush {
    /// The ICH_HCR_EL2 (GICH_HCR) maintenance enables this flush needs:
    /// UIE and NPIE while interrupts wait, so the guest's progress brings an
    /// exit and the next flush; none otherwise.
    pub const fn maintenance(&self) -> u32 {
        if self.overflow > 0 {
            HCR_UIE | HCR_NPIE
        } else {
            0
        }
    }
}

/// Ordering key: active first, then priority, then INTID.
type Key = (bool, u8, u32);

/// The list-register bookkeeping of one vCPU.
#[derive(Clone, Debug)]
pub struct LrManager {
    version: Version,
    vcpu: usize,
    count: usize,
    /// The INTID each register was loaded with.
    slots: [Option<u32>; MAX_LRS],
}

impl LrManager {
    /// For vCPU `vcpu` of a VM of `version`, on a CPU interface with
    /// `count` list registers (clamped to 1..=[`MAX_LRS`]).
    pub fn new(version: Version, vcpu: usize, count: usize) -> Self {
        Self {
            version,
            vcpu,
            count: count.clamp(1, MAX_LRS),
            slots: [None; MAX_LRS],
        }
    }

    /// The registers in use.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether any register holds an interrupt.
    pub fn in_use(&self) -> bool {
        self.slots.iter().any(Option::is_some)
    }

    /// After an exit: every loaded register's state back into `vgic`, then
    /// the register emptied.
    pub fn fold(&mut self, vgic: &mut Vgic, lrs: &mut impl ListRegisters) {
        let count = self.count.min(lrs.count());
        let v2 = self.version == Version::V2;
        for (index, slot) in self.slots.iter_mut().enumerate().take(count) {
            let Some(intid) = slot.take() else {
                continue;
            };
            let lr = Lr::decode(lrs.read(index), self.version);
            lrs.write(index, 0);
            let Some(irq) = vgic.irq_mut(self.vcpu, intid) else {
                continue;
            };
            irq.queued_on = None;
            if lr.vintid != intid {
                // Only EL2 writes list registers; nothing to fold.
                continue;
            }
            irq.active = lr.state.active();
            let sgi = v2 && intid < SGI_COUNT;
            if lr.state.pending() {
                irq.latch = true;
                if sgi {
                    irq.sources |= 1 << (lr.source & 7);
                }
            }
            if sgi && irq.active {
                irq.active_source = lr.source;
            }
        }
    }

    /// Before entry: the deliverable interrupts with the best keys into the
    /// list registers (see the module documentation).
    pub fn flush(&mut self, vgic: &mut Vgic, lrs: &mut impl ListRegisters) -> Flush {
        let count = self.count.min(lrs.count());
        let mut best: [Key; MAX_LRS] = [(false, 0, 0); MAX_LRS];
        let mut n = 0;
        let mut overflow = 0;
        for intid in vgic.candidates(self.vcpu) {
            let Some(irq) = vgic.irq(self.vcpu, intid) else {
                continue;
            };
            let key = (!irq.active, irq.priority, intid);
            if n < count {
                n += 1;
            } else {
                overflow += 1;
                if best.get(n - 1).is_none_or(|last| key >= *last) {
                    continue;
                }
            }
            // Insert in order, dropping the worst when full.
            let mut i = n - 1;
            while i > 0 && best.get(i - 1).is_some_and(|prev| *prev > key) {
                if let Some(prev) = best.get(i - 1).copied() {
                    if let Some(slot) = best.get_mut(i) {
                        *slot = prev;
                    }
                }
                i -= 1;
            }
            if let Some(slot) = best.get_mut(i) {
                *slot = key;
            }
        }
        let mut loaded = 0;
        for (index, &(_, _, intid)) in best.iter().enumerate().take(n) {
            let Some(irq) = vgic.irq_mut(self.vcpu, intid) else {
                continue;
            };
            let lr = load(irq, intid, self.version, self.vcpu);
            lrs.write(index, lr.encode(self.version));
            if let Some(slot) = self.slots.get_mut(index) {
                *slot = Some(intid);
            }
            loaded += 1;
        }
        Flush { loaded, overflow }
    }
}

/// The list register for `irq`, and its state moved into it: a pending
/// state handed to the register leaves the distributor's latch.
fn load(irq: &mut Irq, intid: u32, version: Version, vcpu: usize) -> Lr {
    let v2_sgi = version == Version::V2 && intid < SGI_COUNT;
    let pending = irq.pending() && irq.enabled;
    let level_sw = !irq.edge && irq.hw.is_none();
    // HW interrupts, level-sensitive ones and GICv2 SGIs (whose pending
    // source differs from the active one) take one state at a time.
    let state = match (irq.active, pending) {
        (true, true) if !(irq.hw.is_some() || level_sw || v2_sgi) => LrState::PendingActive,
        (true, _) => LrState::Active,
        (false, true) => LrState::Pending,
        (false, false) => LrState::Invalid,
    };
    let mut source = 0;
    if v2_sgi {
        if state == LrState::Pending {
            source = irq.sources.trailing_zeros().min(7) as u8;
            irq.sources &= !(1 << source);
            irq.latch = irq.sources != 0;
        } else {
            source = irq.active_source;
        }
    } else if state.pending() {
        irq.latch = false;
    }
    irq.queued_on = Some(vcpu);
    Lr {
        vintid: intid,
        pintid: irq.hw,
        priority: irq.priority,
        group1: irq.group1,
        state,
        eoi: level_sw,
        source,
    }
}
