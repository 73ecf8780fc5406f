//! Trapped system registers by table: what the guest reads in the ID
//! registers, which registers it gets as RAZ/WI, and UNDEF for the rest.
//!
//! HCR_EL2.TID3 traps every read of the ID group 3 space (op0 3, op1 0,
//! CRn 0, CRm 1-7: ID_AA64PFR0_EL1 ... ID_AA64MMFR4_EL1 and the AArch32 ID
//! registers; Arm ARM D23.2, "HCR_EL2.TID3"), so the guest sees a sanitized
//! view: the host's values with every feature whose registers the
//! hypervisor does not give the guest removed. The rule is that nothing the
//! ID registers advertise UNDEFs (hostile-guest item 12):
//!
//! | feature | the guest gets | ID register fields |
//! |---|---|---|
//! | self-hosted debug | RAZ/WI debug registers (MDSCR_EL1, OSLAR/OSLSR/OSDLR_EL1, DBGB/W{V,C}Rn_EL1, ...); OSLSR_EL1 reports the OS lock as OSLAR_EL1 last set it | ID_AA64DFR0_EL1: DebugVer kept, 2 breakpoints, 2 watchpoints, no double lock |
//! | PMU, SPE, trace, TRBE, BRBE, AMU | hidden: their registers UNDEF (MDCR_EL2.TPM/TPMCR, CPTR_EL2.TTA/TAM) | PMUVer, PMSVer, TraceVer, TraceBuffer, BRBE, AMU = 0 |
//! | SVE, SME | hidden (CPTR_EL2.TZ/TSM): ZCR/SMCR UNDEF | SVE, SME = 0; ID_AA64ZFR0/SMFR0_EL1 = 0 |
//! | MTE, MPAM, NMI, GCS, RME, secure EL2, EL2, LOR, VHE, nested virt | hidden | those fields 0 |
//! | GIC system registers | only with a GICv3 guest | ID_AA64PFR0_EL1.GIC |
//! | FEAT_MOPS, LS64, HCX-gated registers (TCR2, PIE, POE) | hidden (HCRX_EL2 would have to enable them) | MOPS, LS64, ID_AA64MMFR3_EL1 = 0 |
//!
//! Registers outside the table are UNDEFINED for the guest, each encoding
//! logged once. Everything here is pure; the host's ID values come from the
//! arch layer (`arch::aarch64::sysreg::id_group3`).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::arch::aarch64::esr::{Direction, SysRegEncoding, SysRegIss};
use crate::platform::GicVersion;

/// Registers in the ID group 3 space: CRm 1 to 7, op2 0 to 7.
pub const ID_SPACE_LEN: usize = 56;

/// The ID group 3 space as read on the host: entry `(CRm - 1) * 8 + op2`
/// is `S3_0_C0_C<CRm>_<op2>` (unallocated encodings read as zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdSpace(pub [u64; ID_SPACE_LEN]);

impl Default for IdSpace {
    fn default() -> Self {
        Self([0; ID_SPACE_LEN])
    }
}

/// Index of `S3_0_C0_C<crm>_<op2>` in an [`IdSpace`], if it is in the space.
pub const fn id_index(crm: u8, op2: u8) -> Option<usize> {
    if crm >= 1 && crm <= 7 && op2 <= 7 {
        Some((crm as usize - 1) * 8 + op2 as usize)
    } else {
        None
    }
}

/// The encodings the sanitizing rules name (Arm ARM D23.2).
pub mod id {
    use super::id_index;

    macro_rules! ids {
        ($($name:ident = ($crm:literal, $op2:literal)),* $(,)?) => {
            $(
                #[doc = concat!("Index of ", stringify!($name), " in the ID space.")]
                pub const $name: usize = match id_index($crm, $op2) {
                    Some(i) => i,
                    None => usize::MAX,
                };
            )*
        };
    }

    ids! {
        ID_DFR0_EL1 = (1, 2),
        ID_AFR0_EL1 = (1, 3),
        ID_DFR1_EL1 = (3, 5),
        ID_AA64PFR0_EL1 = (4, 0),
        ID_AA64PFR1_EL1 = (4, 1),
        ID_AA64PFR2_EL1 = (4, 2),
        ID_AA64ZFR0_EL1 = (4, 4),
        ID_AA64SMFR0_EL1 = (4, 5),
        ID_AA64FPFR0_EL1 = (4, 7),
        ID_AA64DFR0_EL1 = (5, 0),
        ID_AA64DFR1_EL1 = (5, 1),
        ID_AA64DFR2_EL1 = (5, 2),
        ID_AA64AFR0_EL1 = (5, 4),
        ID_AA64AFR1_EL1 = (5, 5),
        ID_AA64ISAR0_EL1 = (6, 0),
        ID_AA64ISAR1_EL1 = (6, 1),
        ID_AA64ISAR2_EL1 = (6, 2),
        ID_AA64ISAR3_EL1 = (6, 3),
        ID_AA64MMFR0_EL1 = (7, 0),
        ID_AA64MMFR1_EL1 = (7, 1),
        ID_AA64MMFR2_EL1 = (7, 2),
        ID_AA64MMFR3_EL1 = (7, 3),
        ID_AA64MMFR4_EL1 = (7, 4),
    }
}

/// A 4-bit ID field at `lsb`.
const fn field(lsb: u32) -> u64 {
    0xf << lsb
}

/// Fields kept from the host's value; every other field reads 0.
fn keep(value: u64, fields: &[u32]) -> u64 {
    value & fields.iter().fold(0, |mask, &lsb| mask | field(lsb))
}

/// ID_AA64PFR0_EL1.EL0 (bits 3:0) of 1: AArch64 only, no AArch32 at EL0.
const PFR0_EL0_AARCH64_ONLY: u64 = 1;

/// The ID registers a guest reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestIdView(IdSpace);

impl GuestIdView {
    /// The guest's view of the `host` ID registers for a VM whose interrupt
    /// controller is `gic` (module documentation: the table).
    pub fn sanitize(host: &IdSpace, gic: GicVersion) -> Self {
        use id::*;
        let h = |i: usize| host.0.get(i).copied().unwrap_or(0);
        let mut v = *host;
        let mut set = |i: usize, value: u64| {
            if let Some(r) = v.0.get_mut(i) {
                *r = value;
            }
        };

        // PFR0: EL0, EL1, EL3, FP, AdvSIMD, RAS, DIT, CSV2, CSV3 kept; EL2,
        // SVE, SEL2, MPAM, AMU, RME removed; GIC only for a GICv3 guest.
        let pfr0 = h(ID_AA64PFR0_EL1);
        let gic_field = match gic {
            GicVersion::V3 => pfr0 & field(24),
            GicVersion::V2 => 0,
        };
        set(
            ID_AA64PFR0_EL1,
            keep(pfr0, &[0, 4, 12, 16, 20, 28, 48, 56, 60]) | gic_field,
        );
        // PFR1: BT, SSBS, RAS_frac, CSV2_frac kept; MTE, SME, NMI, GCS and the rest removed.
        set(ID_AA64PFR1_EL1, keep(h(ID_AA64PFR1_EL1), &[0, 4, 12, 32]));
        for hidden in [
            ID_AA64PFR2_EL1,
            ID_AA64ZFR0_EL1,
            ID_AA64SMFR0_EL1,
            ID_AA64FPFR0_EL1,
            ID_AA64DFR1_EL1,
            ID_AA64DFR2_EL1,
            ID_AA64AFR0_EL1,
            ID_AA64AFR1_EL1,
            ID_AFR0_EL1,
            ID_DFR1_EL1,
            ID_AA64ISAR3_EL1,
            ID_AA64MMFR3_EL1,
            ID_AA64MMFR4_EL1,
        ] {
            set(hidden, 0);
        }
        // DFR0: the host's DebugVer (at least Armv8.0's 6), BRPs = 1 and
        // WRPs = 1 (two of each, the architectural minimum: their registers
        // are RAZ/WI), CTX_CMPs = 0, DoubleLock 0xF (not implemented);
        // PMU, SPE, trace, TRBE, BRBE and the rest 0.
        let debug_ver = (h(ID_AA64DFR0_EL1) & 0xf).max(6);
        set(
            ID_AA64DFR0_EL1,
            debug_ver | (1 << 12) | (1 << 20) | (0xf << 36),
        );
        // AArch32 debug: CopDbg, CopSDbg and MMapDbg kept; trace and PerfMon removed.
        set(ID_DFR0_EL1, keep(h(ID_DFR0_EL1), &[0, 4, 8]));
        // ISAR0: everything but TME (27:24).
        set(ID_AA64ISAR0_EL1, h(ID_AA64ISAR0_EL1) & !field(24));
        // ISAR1: everything but LS64 (63:60), which HCRX_EL2 would gate.
        set(ID_AA64ISAR1_EL1, h(ID_AA64ISAR1_EL1) & !field(60));
        // ISAR2: WFxT, RPRES, GPA3, APA3, BC, PAC_frac, CLRBHB, PRFMSLC,
        // RPRFM, CSSC kept; MOPS (HCRX_EL2.MSCEn), SYSREG_128 and the rest removed.
        set(
            ID_AA64ISAR2_EL1,
            keep(h(ID_AA64ISAR2_EL1), &[0, 4, 8, 12, 20, 24, 28, 40, 48, 52]),
        );
        // MMFR0: everything but FGT (59:56), an EL2 feature.
        set(ID_AA64MMFR0_EL1, h(ID_AA64MMFR0_EL1) & !field(56));
        // MMFR1: VH, LO, XNX, TWED, HCX, TIDCP1 removed.
        set(
            ID_AA64MMFR1_EL1,
            h(ID_AA64MMFR1_EL1)
                & !(field(8) | field(16) | field(28) | field(32) | field(40) | field(52)),
        );
        // MMFR2: NV and FWB (EL2 features) removed.
        set(
            ID_AA64MMFR2_EL1,
            h(ID_AA64MMFR2_EL1) & !(field(24) | field(40)),
        );
        // Without AArch32 at EL0 the AArch32 ID registers (CRm 1 to 3) mean
        // nothing: RAZ, as on a CPU without AArch32.
        if pfr0 & 0xf == PFR0_EL0_AARCH64_ONLY {
            for crm in 1..=3 {
                for op2 in 0..=7 {
                    if let Some(i) = id_index(crm, op2) {
                        set(i, 0);
                    }
                }
            }
        }
        Self(v)
    }

    /// The value of `S3_0_C0_C<crm>_<op2>`, if it is in the ID space.
    pub fn get(&self, crm: u8, op2: u8) -> Option<u64> {
        id_index(crm, op2).and_then(|i| self.0 .0.get(i).copied())
    }
}

/// What the exit handler does with a trapped MRS or MSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysregAction {
    /// An MRS: write this value to Rt and step over the instruction.
    Read(u64),
    /// An MSR whose value is ignored (or kept in the emulated state): step over.
    Written,
    /// UNDEFINED for the guest.
    Undefined,
}

/// How many distinct UNDEF encodings are remembered for logging once.
const LOGGED_MAX: usize = 32;

/// The VM's emulated system-register state and its table.
#[derive(Clone, Debug)]
pub struct SysregState {
    ids: GuestIdView,
    /// OSLSR_EL1.OSLK: the OS lock as OSLAR_EL1 last set it (set at reset).
    os_lock: bool,
    logged: [Option<SysRegEncoding>; LOGGED_MAX],
    logged_len: usize,
}

/// What the table says about an encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// In the ID group 3 space.
    Id { crm: u8, op2: u8 },
    /// OSLAR_EL1: sets the emulated OS lock.
    OsLar,
    /// OSLSR_EL1: the OS lock model and state.
    OsLsr,
    /// A debug register given RAZ/WI.
    RazWi,
    /// Not given to the guest.
    Undefined,
}

const fn enc(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> (u8, u8, u8, u8, u8) {
    (op0, op1, crn, crm, op2)
}

fn classify(e: SysRegEncoding) -> Class {
    match (e.op0, e.op1, e.crn, e.crm, e.op2) {
        (3, 0, 0, crm @ 1..=7, op2) => Class::Id { crm, op2 },
        x if x == enc(2, 0, 1, 0, 4) => Class::OsLar,
        x if x == enc(2, 0, 1, 1, 4) => Class::OsLsr,
        // DBGBVRn, DBGBCRn, DBGWVRn, DBGWCRn (op2 4-7, n = CRm).
        (2, 0, 0, _, 4..=7)
        // MDCCINT_EL1, MDSCR_EL1, OSDTRRX_EL1, OSDTRTX_EL1, OSECCR_EL1.
        | (2, 0, 0, 2, 0)
        | (2, 0, 0, 2 | 0 | 3 | 6, 2)
        // MDRAR_EL1, OSDLR_EL1, DBGPRCR_EL1.
        | (2, 0, 1, 0, 0)
        | (2, 0, 1, 3 | 4, 4)
        // DBGCLAIMSET_EL1, DBGCLAIMCLR_EL1, DBGAUTHSTATUS_EL1.
        | (2, 0, 7, 8 | 9 | 14, 6)
        // MDCCSR_EL0, DBGDTR_EL0, DBGDTRRX_EL0/DBGDTRTX_EL0.
        | (2, 3, 0, 1 | 4 | 5, 0) => Class::RazWi,
        _ => Class::Undefined,
    }
}

/// OSLSR_EL1.OSLM: bit 3 set, bit 0 clear: the OS lock is implemented
/// (Armv8.0's model).
const OSLSR_OSLM: u64 = 1 << 3;
/// OSLSR_EL1.OSLK.
const OSLSR_OSLK: u64 = 1 << 1;

impl SysregState {
    /// The state of a VM that sees `ids`; the OS lock is set, as at a cold reset.
    pub fn new(ids: GuestIdView) -> Self {
        Self {
            ids,
            os_lock: true,
            logged: [None; LOGGED_MAX],
            logged_len: 0,
        }
    }

    /// What to do with the trapped access `iss`; `written` is Rt's value
    /// (for an MSR). An UNDEF is logged the first time its encoding is seen.
    pub fn access(&mut self, iss: SysRegIss, written: u64, pc: u64) -> SysregAction {
        let read = iss.direction() == Direction::Read;
        let action = match (classify(iss.encoding()), read) {
            (Class::Id { crm, op2 }, true) => self
                .ids
                .get(crm, op2)
                .map_or(SysregAction::Undefined, SysregAction::Read),
            (Class::OsLar, false) => {
                self.os_lock = written & 1 == 1;
                SysregAction::Written
            }
            (Class::OsLsr, true) => {
                SysregAction::Read(OSLSR_OSLM | if self.os_lock { OSLSR_OSLK } else { 0 })
            }
            (Class::RazWi, true) => SysregAction::Read(0),
            (Class::RazWi, false) => SysregAction::Written,
            // Writes to read-only registers, reads of write-only ones, and
            // everything outside the table.
            _ => SysregAction::Undefined,
        };
        if action == SysregAction::Undefined && self.first_sighting(iss.encoding()) {
            log::warn!("guest: {iss} at pc {pc:#x} is not given to guests: UNDEF (logged once per register)");
        }
        action
    }

    /// Whether `e` is an UNDEF not seen before (once the list is full,
    /// nothing more is logged).
    fn first_sighting(&mut self, e: SysRegEncoding) -> bool {
        let seen = self.logged.iter().flatten().any(|l| *l == e);
        if seen || self.logged_len >= LOGGED_MAX {
            return false;
        }
        if let Some(slot) = self.logged.get_mut(self.logged_len) {
            *slot = Some(e);
        }
        self.logged_len += 1;
        true
    }
}

impl Default for SysregState {
    /// A VM on a host whose ID registers all read zero (host tests).
    fn default() -> Self {
        Self::new(GuestIdView::sanitize(&IdSpace::default(), GicVersion::V3))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    /// ISS of an MRS (read) or MSR of `S<op0>_<op1>_C<crn>_C<crm>_<op2>` with Rt = 3.
    fn iss(op0: u32, op1: u32, crn: u32, crm: u32, op2: u32, read: bool) -> SysRegIss {
        SysRegIss::new(
            (op0 << 20)
                | (op2 << 17)
                | (op1 << 14)
                | (crn << 10)
                | (3 << 5)
                | (crm << 1)
                | read as u32,
        )
    }

    /// ID values shaped like a CPU with everything (QEMU's `-cpu max`):
    /// SVE, SME, a PMU, SPE, AMU, MTE, MPAM, NMI, MOPS, EL2 and nested
    /// virtualization all advertised.
    fn qemu_max() -> IdSpace {
        let mut s = IdSpace::default();
        s.0[id::ID_AA64PFR0_EL1] = 0x1201_1111_1112_2222 | (1 << 32) | (1 << 44) | (1 << 40);
        s.0[id::ID_AA64PFR1_EL1] = 0x0000_0001_0000_0121 | (1 << 24) | (1 << 36);
        s.0[id::ID_AA64ZFR0_EL1] = 0x0110_0110_0001_0021;
        s.0[id::ID_AA64SMFR0_EL1] = 0x80f1_0000_0000_0000;
        s.0[id::ID_AA64DFR0_EL1] = 0x0000_0001_f210_5139 | (5 << 8) | (0xf << 12);
        s.0[id::ID_AA64ISAR2_EL1] = 0x0000_0000_0001_2000 | (1 << 16);
        s.0[id::ID_AA64MMFR1_EL1] = 0x1011_1110_1211_2122;
        s.0[id::ID_AA64MMFR2_EL1] = 0x1221_0011_1101_1011 | (2 << 24);
        s.0[id::ID_AA64MMFR3_EL1] = 0x0000_0000_0000_1011;
        s.0[id::ID_DFR0_EL1] = 0x1101_0088;
        s
    }

    fn get(v: &GuestIdView, i: usize) -> u64 {
        v.get((i / 8 + 1) as u8, (i % 8) as u8).unwrap()
    }

    const fn f(value: u64, lsb: u32) -> u64 {
        (value >> lsb) & 0xf
    }

    #[test]
    fn nothing_the_guest_cannot_use_is_advertised() {
        let v = GuestIdView::sanitize(&qemu_max(), GicVersion::V3);
        let pfr0 = get(&v, id::ID_AA64PFR0_EL1);
        assert_eq!(f(pfr0, 32), 0, "SVE");
        assert_eq!(f(pfr0, 44), 0, "AMU");
        assert_eq!(f(pfr0, 40), 0, "MPAM");
        assert_eq!(f(pfr0, 8), 0, "EL2");
        assert_eq!(
            f(pfr0, 16),
            f(qemu_max().0[id::ID_AA64PFR0_EL1], 16),
            "FP kept"
        );
        assert_eq!(f(pfr0, 24), 1, "GICv3 system registers for a GICv3 guest");
        let pfr1 = get(&v, id::ID_AA64PFR1_EL1);
        assert_eq!(f(pfr1, 24), 0, "SME");
        assert_eq!(f(pfr1, 8), 0, "MTE");
        assert_eq!(f(pfr1, 36), 0, "NMI");
        assert_eq!(f(pfr1, 0), 1, "BTI kept");
        assert_eq!(get(&v, id::ID_AA64ZFR0_EL1), 0);
        assert_eq!(get(&v, id::ID_AA64SMFR0_EL1), 0);
        let dfr0 = get(&v, id::ID_AA64DFR0_EL1);
        assert_eq!(f(dfr0, 8), 0, "PMUVer");
        assert_eq!(f(dfr0, 32), 0, "PMSVer");
        assert_eq!(f(dfr0, 4), 0, "TraceVer");
        assert_eq!(f(dfr0, 0), 9, "DebugVer kept");
        assert_eq!((f(dfr0, 12), f(dfr0, 20), f(dfr0, 28)), (1, 1, 0));
        assert_eq!(f(dfr0, 36), 0xf, "no double lock");
        assert_eq!(f(get(&v, id::ID_AA64ISAR2_EL1), 16), 0, "MOPS");
        assert_eq!(f(get(&v, id::ID_AA64ISAR2_EL1), 12), 2, "APA3 kept");
        let mmfr1 = get(&v, id::ID_AA64MMFR1_EL1);
        assert_eq!((f(mmfr1, 8), f(mmfr1, 16)), (0, 0), "VH, LO");
        assert_eq!(f(get(&v, id::ID_AA64MMFR2_EL1), 24), 0, "NV");
        assert_eq!(get(&v, id::ID_AA64MMFR3_EL1), 0);
        assert_eq!(f(get(&v, id::ID_DFR0_EL1), 24), 0, "AArch32 PerfMon");
    }

    #[test]
    fn a_gicv2_guest_is_not_told_of_gic_system_registers() {
        let v = GuestIdView::sanitize(&qemu_max(), GicVersion::V2);
        assert_eq!(f(get(&v, id::ID_AA64PFR0_EL1), 24), 0);
    }

    #[test]
    fn aarch64_only_hosts_show_no_aarch32_id_registers() {
        let mut host = qemu_max();
        host.0[id::ID_AA64PFR0_EL1] = (host.0[id::ID_AA64PFR0_EL1] & !0xf) | 1;
        host.0[id::ID_DFR0_EL1] = 0x1234;
        host.0[0] = 0x131; // ID_PFR0_EL1
        let v = GuestIdView::sanitize(&host, GicVersion::V3);
        assert_eq!(v.get(1, 0), Some(0));
        assert_eq!(v.get(1, 2), Some(0));
        // With AArch32 at EL0 (field 2), they are the host's.
        let v = GuestIdView::sanitize(&qemu_max(), GicVersion::V3);
        assert_eq!(v.get(1, 2), Some(0x88));
    }

    #[test]
    fn id_reads_come_from_the_view_and_writes_undef() {
        let mut s = SysregState::new(GuestIdView::sanitize(&qemu_max(), GicVersion::V3));
        let dfr0 = iss(3, 0, 0, 5, 0, true);
        match s.access(dfr0, 0, 0) {
            SysregAction::Read(v) => assert_eq!(f(v, 8), 0),
            other => panic!("{other:?}"),
        }
        // Reserved encodings in the space read as zero.
        assert_eq!(
            s.access(iss(3, 0, 0, 7, 7, true), 0, 0),
            SysregAction::Read(0)
        );
        assert_eq!(
            s.access(iss(3, 0, 0, 5, 0, false), 0, 0),
            SysregAction::Undefined
        );
        // CRm 0 (MIDR_EL1, MPIDR_EL1) is not group 3.
        assert_eq!(
            s.access(iss(3, 0, 0, 0, 0, true), 0, 0),
            SysregAction::Undefined
        );
    }

    #[test]
    fn debug_registers_are_raz_wi_and_the_os_lock_is_kept() {
        let mut s = SysregState::default();
        // MDSCR_EL1, DBGBCR5_EL1, DBGWVR15_EL1, OSDLR_EL1, DBGPRCR_EL1, MDCCSR_EL0.
        for (op0, op1, crn, crm, op2) in [
            (2, 0, 0, 2, 2),
            (2, 0, 0, 5, 5),
            (2, 0, 0, 15, 6),
            (2, 0, 1, 3, 4),
            (2, 0, 1, 4, 4),
            (2, 3, 0, 1, 0),
        ] {
            assert_eq!(
                s.access(iss(op0, op1, crn, crm, op2, false), 0xffff, 0),
                SysregAction::Written
            );
            assert_eq!(
                s.access(iss(op0, op1, crn, crm, op2, true), 0, 0),
                SysregAction::Read(0)
            );
        }
        let oslsr = iss(2, 0, 1, 1, 4, true);
        let oslar = iss(2, 0, 1, 0, 4, false);
        assert_eq!(s.access(oslsr, 0, 0), SysregAction::Read(0b1010));
        assert_eq!(s.access(oslar, 0, 0), SysregAction::Written);
        assert_eq!(s.access(oslsr, 0, 0), SysregAction::Read(0b1000));
        assert_eq!(s.access(oslar, 1, 0), SysregAction::Written);
        assert_eq!(s.access(oslsr, 0, 0), SysregAction::Read(0b1010));
        // OSLAR is write-only, OSLSR read-only.
        assert_eq!(
            s.access(iss(2, 0, 1, 0, 4, true), 0, 0),
            SysregAction::Undefined
        );
        assert_eq!(
            s.access(iss(2, 0, 1, 1, 4, false), 0, 0),
            SysregAction::Undefined
        );
    }

    #[test]
    fn pmu_sve_sme_amu_and_impdef_registers_undef_and_are_logged_once() {
        let mut s = SysregState::default();
        let undef = [
            iss(3, 3, 9, 12, 0, true),  // PMCR_EL0
            iss(3, 3, 9, 14, 0, false), // PMUSERENR_EL0
            iss(3, 0, 1, 2, 0, true),   // ZCR_EL1
            iss(3, 0, 1, 2, 6, true),   // SMCR_EL1
            iss(3, 3, 13, 2, 0, true),  // AMCR_EL0
            iss(3, 0, 15, 0, 0, true),  // IMPDEF
            iss(2, 1, 0, 0, 0, true),   // trace (TRC*)
        ];
        for i in undef {
            assert_eq!(s.access(i, 0, 0), SysregAction::Undefined, "{i}");
        }
        assert_eq!(s.logged_len, undef.len());
        s.access(undef[0], 0, 0);
        assert_eq!(s.logged_len, undef.len(), "a second sighting is not logged");
        // The log list is bounded.
        for crm in 0..16 {
            for op2 in 0..8 {
                s.access(iss(3, 7, 15, crm, op2, true), 0, 0);
            }
        }
        assert_eq!(s.logged_len, LOGGED_MAX);
    }
}
