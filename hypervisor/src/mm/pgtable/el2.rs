//! The hypervisor's own translation regime: EL2 stage 1 without VHE.
//!
//! One VA range through TTBR0_EL2, one privilege level (Arm ARM D8.4.1.2.1:
//! "For a stage 1 translation that supports one Exception level, AP[1] is
//! RES1"; PXN is RES0 and only XN, bit 54, controls execution). The
//! hypervisor identity-maps, but inputs stay [`VirtAddr`]s.

use tock_registers::{register_bitfields, LocalRegisterCopy};

use super::{PageTable, Regime, TlbMaint};
use crate::mm::addr::VirtAddr;
use crate::mm::attrs::Shareability;

register_bitfields! {u64,
    /// Stage-1 block and page descriptor, upper and lower attributes
    /// (Arm ARM D8.3.2 "Block descriptor and Page descriptor formats").
    pub S1_LEAF [
        /// Index into MAIR_EL2.
        ATTR_INDX OFFSET(2) NUMBITS(3) [],
        /// Non-secure (RES0 from Non-secure state).
        NS OFFSET(5) NUMBITS(1) [],
        /// AP[1]: RES1 in a regime with one Exception level.
        AP1 OFFSET(6) NUMBITS(1) [],
        /// AP[2]: read-only.
        AP2_RO OFFSET(7) NUMBITS(1) [],
        /// Shareability.
        SH OFFSET(8) NUMBITS(2) [],
        /// Access flag.
        AF OFFSET(10) NUMBITS(1) [],
        /// Execute-never.
        XN OFFSET(54) NUMBITS(1) []
    ]
}

/// Attributes of one leaf of the hypervisor's own map.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct El2Attrs {
    /// MAIR_EL2 index (0-7).
    pub attr_index: u8,
    /// Writes fault.
    pub read_only: bool,
    /// Shareability (meaningful for Normal cacheable memory).
    pub sh: Shareability,
    /// Instruction fetches fault.
    pub xn: bool,
}

/// Marker for the EL2 stage-1 regime.
#[derive(Clone, Copy, Debug)]
pub enum El2Stage1 {}

impl Regime for El2Stage1 {
    type Input = VirtAddr;
    type Attrs = El2Attrs;

    fn encode_attrs(a: &El2Attrs) -> u64 {
        let mut d = LocalRegisterCopy::<u64, S1_LEAF::Register>::new(0);
        d.modify(
            S1_LEAF::ATTR_INDX.val(u64::from(a.attr_index & 7))
                + S1_LEAF::AP1::SET
                + S1_LEAF::AP2_RO.val(u64::from(a.read_only))
                + S1_LEAF::SH.val(a.sh.bits())
                + S1_LEAF::AF::SET
                + S1_LEAF::XN.val(u64::from(a.xn)),
        );
        d.get()
    }

    fn decode_attrs(desc: u64) -> El2Attrs {
        let d = LocalRegisterCopy::<u64, S1_LEAF::Register>::new(desc);
        El2Attrs {
            attr_index: d.read(S1_LEAF::ATTR_INDX) as u8,
            read_only: d.is_set(S1_LEAF::AP2_RO),
            sh: Shareability::from_bits(d.read(S1_LEAF::SH)),
            xn: d.is_set(S1_LEAF::XN),
        }
    }

    /// Permission-only changes (AP, XN) need no break; memory type and
    /// shareability changes do (R_WHZWS, see the module docs of `pgtable`).
    fn change_needs_break(old: &El2Attrs, new: &El2Attrs) -> bool {
        old.attr_index != new.attr_index || old.sh != new.sh
    }
}

/// TLB maintenance for the EL2 stage-1 regime: `TLBI VAE2IS` per changed
/// address, then `DSB ISH; ISB` (Arm ARM DDI 0487, "TLB maintenance instructions").
pub trait El2TlbMaint {
    /// `TLBI VAE2IS` for `va` (preceded by `DSB ISHST` so the descriptor write is seen).
    fn invalidate_va(&mut self, va: VirtAddr, level: usize);
    /// `DSB ISH; ISB`.
    fn sync(&mut self);
}

/// Adapts an [`El2TlbMaint`] to the engine's [`TlbMaint`].
pub struct El2Tlb<'a, T: El2TlbMaint + ?Sized>(pub &'a mut T);

impl<T: El2TlbMaint + ?Sized> TlbMaint<VirtAddr> for El2Tlb<'_, T> {
    fn invalidate(&mut self, addr: VirtAddr, level: usize) {
        self.0.invalidate_va(addr, level);
    }
    fn sync(&mut self) {
        self.0.sync();
    }
    fn publish(&mut self) {
        self.0.sync();
    }
}

/// The hypervisor's own tables.
pub type El2PageTable<M> = PageTable<El2Stage1, M>;
