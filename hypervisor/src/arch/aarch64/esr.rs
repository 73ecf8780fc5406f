//! ESR_EL2 decoding: exception class and ISS fields.
//!
//! Follows the Arm Architecture Reference Manual for A-profile (ARM DDI 0487),
//! section D24.2 "ESR_EL2, Exception Syndrome Register (EL2)" and the ISS
//! encodings it references. Everything here is pure bit manipulation: the vcpu
//! loop reads ESR_EL2 once, then every consumer works from an [`Esr`] value.
//!
//! All decoding is total: any `u64` decodes to something, and unallocated or
//! reserved encodings come back as `Other` / `Reserved` values instead of
//! panics, because a guest controls much of what lands in this register.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use core::fmt;

/// Extracts `width` bits of `value` starting at bit `lsb`.
const fn bits(value: u64, lsb: u32, width: u32) -> u64 {
    (value >> lsb) & ((1 << width) - 1)
}

const fn bit(value: u64, n: u32) -> bool {
    (value >> n) & 1 == 1
}

/// A raw ESR_EL2 value as read from the register.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Esr(u64);

impl Esr {
    /// Wraps a raw ESR_EL2 value.
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The value as read from the register.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// EC, bits [31:26], as a number.
    pub const fn ec_raw(self) -> u8 {
        bits(self.0, 26, 6) as u8
    }

    /// EC, bits [31:26].
    pub const fn ec(self) -> ExceptionClass {
        ExceptionClass::from_raw(self.ec_raw())
    }

    /// IL, bit [25]: the trapped instruction was 32 bits long (`true`) or a
    /// 16-bit T32 instruction (`false`). Also `true` for exceptions that are
    /// not caused by an instruction (aborts on fetch, SError, ...).
    pub const fn il(self) -> bool {
        bit(self.0, 25)
    }

    /// The length in bytes of the trapped instruction, from IL: the amount to
    /// add to ELR_EL2 to skip it.
    pub const fn instruction_len(self) -> u64 {
        if self.il() {
            4
        } else {
            2
        }
    }

    /// ISS, bits [24:0].
    pub const fn iss(self) -> u32 {
        bits(self.0, 0, 25) as u32
    }

    /// ISS2, bits [55:32] (FEAT_LS64, FEAT_THE and later extensions).
    pub const fn iss2(self) -> u32 {
        bits(self.0, 32, 24) as u32
    }

    /// Decodes the ISS according to the exception class.
    pub const fn decode(self) -> Decoded {
        decode(self.0)
    }
}

impl fmt::Debug for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Esr({:#x})", self.0)
    }
}

/// The full human report: `EC=0x24 (Data Abort from a lower EL) IL=1 ISS: ...`.
impl fmt::Display for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EC={:#04x} ({}) IL={} ISS: ",
            self.ec_raw(),
            self.ec().name(),
            u8::from(self.il())
        )?;
        self.decode().fmt_iss(f)
    }
}

macro_rules! exception_classes {
    ($( $(#[$doc:meta])* $variant:ident = $value:literal, $name:literal; )*) => {
        /// ESR_EL2.EC: why the exception was taken (DDI 0487, D24.2, table
        /// "ESR_EL2.EC"). Covers every class the manual allocates; anything
        /// else is [`ExceptionClass::Other`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ExceptionClass {
            $( $(#[$doc])* $variant, )*
            /// An EC value the manual does not allocate.
            Other(u8),
        }

        impl ExceptionClass {
            /// Decodes a 6-bit EC value; bits above bit 5 are ignored.
            pub const fn from_raw(ec: u8) -> Self {
                match ec & 0x3f {
                    $( $value => Self::$variant, )*
                    other => Self::Other(other),
                }
            }

            /// The 6-bit EC value.
            pub const fn raw(self) -> u8 {
                match self {
                    $( Self::$variant => $value, )*
                    Self::Other(ec) => ec & 0x3f,
                }
            }

            /// A short description, worded after the manual.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $name, )*
                    Self::Other(_) => "unallocated exception class",
                }
            }
        }
    };
}

exception_classes! {
    /// Unknown reason, including UNDEFINED instructions.
    Unknown = 0x00, "Unknown reason";
    /// WFI, WFE, WFIT or WFET trapped.
    Wfx = 0x01, "Trapped WFI/WFE/WFIT/WFET";
    /// AArch32 MCR or MRC with coproc 0b1111.
    McrMrcCp15 = 0x03, "Trapped MCR/MRC (coproc 0b1111)";
    /// AArch32 MCRR or MRRC with coproc 0b1111.
    McrrMrrcCp15 = 0x04, "Trapped MCRR/MRRC (coproc 0b1111)";
    /// AArch32 MCR or MRC with coproc 0b1110.
    McrMrcCp14 = 0x05, "Trapped MCR/MRC (coproc 0b1110)";
    /// AArch32 LDC or STC.
    LdcStc = 0x06, "Trapped LDC/STC";
    /// SME, SVE, Advanced SIMD or floating-point access trapped by CPACR/CPTR.
    FpSimdAccess = 0x07, "Trapped SVE/SIMD/FP access";
    /// AArch32 VMRS trapped by the ID group traps.
    VmrsId = 0x08, "Trapped VMRS access (ID group)";
    /// Pointer authentication instruction trapped (HCR_EL2.API).
    PointerAuth = 0x09, "Trapped pointer authentication instruction";
    /// LD64B, ST64B, ST64BV, ST64BV0 and other FEAT_LS64-era traps.
    Ls64 = 0x0A, "Trapped LD64B/ST64B* or other instruction";
    /// AArch32 MRRC with coproc 0b1110.
    MrrcCp14 = 0x0C, "Trapped MRRC (coproc 0b1110)";
    /// Branch Target Exception (FEAT_BTI).
    BranchTarget = 0x0D, "Branch Target Exception";
    /// Illegal Execution state.
    IllegalState = 0x0E, "Illegal Execution state";
    /// SVC in AArch32 state.
    Svc32 = 0x11, "SVC from AArch32";
    /// HVC in AArch32 state.
    Hvc32 = 0x12, "HVC from AArch32";
    /// SMC in AArch32 state.
    Smc32 = 0x13, "SMC from AArch32";
    /// SVC in AArch64 state.
    Svc64 = 0x15, "SVC from AArch64";
    /// HVC in AArch64 state.
    Hvc64 = 0x16, "HVC from AArch64";
    /// SMC in AArch64 state (trapped by HCR_EL2.TSC).
    Smc64 = 0x17, "SMC from AArch64";
    /// MSR, MRS or System instruction in AArch64 state.
    SysReg = 0x18, "Trapped MSR/MRS/System instruction";
    /// SVE access trapped by CPACR_EL1.ZEN / CPTR_EL2.
    Sve = 0x19, "Trapped SVE access";
    /// ERET, ERETAA or ERETAB trapped (FEAT_NV).
    Eret = 0x1A, "Trapped ERET/ERETAA/ERETAB";
    /// TSTART trapped (FEAT_TME).
    Tstart = 0x1B, "Trapped TSTART";
    /// Pointer authentication failure (FEAT_FPAC).
    PacFail = 0x1C, "Pointer authentication failure";
    /// SME access trapped.
    Sme = 0x1D, "Trapped SME access";
    /// Granule Protection Check (FEAT_RME); taken to EL3.
    GranuleProtection = 0x1E, "Granule Protection Check";
    /// IMPLEMENTATION DEFINED exception to EL3.
    ImpDefEl3 = 0x1F, "IMPLEMENTATION DEFINED exception to EL3";
    /// Instruction Abort from a lower Exception level.
    InstrAbortLower = 0x20, "Instruction Abort from a lower EL";
    /// Instruction Abort taken without a change in Exception level.
    InstrAbortCurrent = 0x21, "Instruction Abort from the current EL";
    /// PC alignment fault.
    PcAlignment = 0x22, "PC alignment fault";
    /// Data Abort from a lower Exception level.
    DataAbortLower = 0x24, "Data Abort from a lower EL";
    /// Data Abort taken without a change in Exception level.
    DataAbortCurrent = 0x25, "Data Abort from the current EL";
    /// SP alignment fault.
    SpAlignment = 0x26, "SP alignment fault";
    /// Memory Operation Exception (FEAT_MOPS).
    MemoryOp = 0x27, "Memory Operation Exception";
    /// Trapped floating-point exception from AArch32.
    Fp32 = 0x28, "Trapped FP exception from AArch32";
    /// Trapped floating-point exception from AArch64.
    Fp64 = 0x2C, "Trapped FP exception from AArch64";
    /// Guarded Control Stack exception (FEAT_GCS).
    Gcs = 0x2D, "GCS exception";
    /// SError exception.
    SError = 0x2F, "SError";
    /// Breakpoint from a lower Exception level.
    BreakpointLower = 0x30, "Breakpoint from a lower EL";
    /// Breakpoint taken without a change in Exception level.
    BreakpointCurrent = 0x31, "Breakpoint from the current EL";
    /// Software Step from a lower Exception level.
    SoftwareStepLower = 0x32, "Software Step from a lower EL";
    /// Software Step taken without a change in Exception level.
    SoftwareStepCurrent = 0x33, "Software Step from the current EL";
    /// Watchpoint from a lower Exception level.
    WatchpointLower = 0x34, "Watchpoint from a lower EL";
    /// Watchpoint taken without a change in Exception level.
    WatchpointCurrent = 0x35, "Watchpoint from the current EL";
    /// BKPT in AArch32 state.
    Bkpt32 = 0x38, "BKPT from AArch32";
    /// Vector Catch in AArch32 state.
    VectorCatch32 = 0x3A, "Vector Catch from AArch32";
    /// BRK in AArch64 state.
    Brk64 = 0x3C, "BRK from AArch64";
    /// Profiling exception (FEAT_SPE_EXC, FEAT_PMUv3_EXC).
    Profiling = 0x3D, "Profiling exception";
}

/// Data Fault Status Code / Instruction Fault Status Code, ISS bits [5:0]
/// of an abort (DDI 0487, D24.2, "ISS encoding for an exception from a Data
/// Abort", DFSC). Levels are numbered as the manual does, -2 to 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultStatus {
    /// Address size fault at `level` (level 0 includes the table base register).
    AddressSize {
        /// Lookup level, -2..=3.
        level: i8,
    },
    /// Translation fault at `level`.
    Translation {
        /// Lookup level, -2..=3.
        level: i8,
    },
    /// Access flag fault at `level`.
    AccessFlag {
        /// Lookup level, 0..=3.
        level: i8,
    },
    /// Permission fault at `level`.
    Permission {
        /// Lookup level, 0..=3.
        level: i8,
    },
    /// Synchronous External abort, not on a translation table walk.
    SyncExternal,
    /// Synchronous Tag Check Fault (FEAT_MTE2).
    TagCheck,
    /// Synchronous External abort on a translation table walk at `level`.
    SyncExternalOnWalk {
        /// Lookup level, -2..=3.
        level: i8,
    },
    /// Synchronous parity or ECC error, not on a translation table walk.
    ParityEcc,
    /// Synchronous parity or ECC error on a translation table walk at `level`.
    ParityEccOnWalk {
        /// Lookup level, -1..=3.
        level: i8,
    },
    /// Alignment fault.
    Alignment,
    /// Granule Protection Fault on a translation table walk at `level`.
    GranuleProtectionOnWalk {
        /// Lookup level, -2..=3.
        level: i8,
    },
    /// Granule Protection Fault, not on a translation table walk.
    GranuleProtection,
    /// TLB conflict abort.
    TlbConflict,
    /// Unsupported atomic hardware update fault (FEAT_HAFDBS).
    UnsupportedAtomicUpdate,
    /// IMPLEMENTATION DEFINED fault (Lockdown).
    ImpDefLockdown,
    /// IMPLEMENTATION DEFINED fault (Unsupported Exclusive or Atomic access).
    ImpDefUnsupportedExclusive,
    /// A value the manual reserves.
    Reserved(u8),
}

impl FaultStatus {
    /// Decodes a 6-bit fault status code; bits above bit 5 are ignored.
    pub const fn from_raw(fsc: u8) -> Self {
        let fsc = fsc & 0x3f;
        // Levels 0-3 sit in the low two bits of each group of four.
        let level = (fsc & 0b11) as i8;
        match fsc {
            0x00..=0x03 => Self::AddressSize { level },
            0x04..=0x07 => Self::Translation { level },
            0x08..=0x0B => Self::AccessFlag { level },
            0x0C..=0x0F => Self::Permission { level },
            0x10 => Self::SyncExternal,
            0x11 => Self::TagCheck,
            0x12 => Self::SyncExternalOnWalk { level: -2 },
            0x13 => Self::SyncExternalOnWalk { level: -1 },
            0x14..=0x17 => Self::SyncExternalOnWalk { level },
            0x18 => Self::ParityEcc,
            0x1B => Self::ParityEccOnWalk { level: -1 },
            0x1C..=0x1F => Self::ParityEccOnWalk { level },
            0x21 => Self::Alignment,
            0x22 => Self::GranuleProtectionOnWalk { level: -2 },
            0x23 => Self::GranuleProtectionOnWalk { level: -1 },
            0x24..=0x27 => Self::GranuleProtectionOnWalk { level },
            0x28 => Self::GranuleProtection,
            0x29 => Self::AddressSize { level: -1 },
            0x2A => Self::Translation { level: -2 },
            0x2B => Self::Translation { level: -1 },
            0x2C => Self::AddressSize { level: -2 },
            0x30 => Self::TlbConflict,
            0x31 => Self::UnsupportedAtomicUpdate,
            0x34 => Self::ImpDefLockdown,
            0x35 => Self::ImpDefUnsupportedExclusive,
            other => Self::Reserved(other),
        }
    }

    /// The lookup level the fault was reported at, for the kinds that have one.
    pub const fn level(self) -> Option<i8> {
        match self {
            Self::AddressSize { level }
            | Self::Translation { level }
            | Self::AccessFlag { level }
            | Self::Permission { level }
            | Self::SyncExternalOnWalk { level }
            | Self::ParityEccOnWalk { level }
            | Self::GranuleProtectionOnWalk { level } => Some(level),
            _ => None,
        }
    }

    /// A short description without the level.
    pub const fn description(self) -> &'static str {
        match self {
            Self::AddressSize { .. } => "address size fault",
            Self::Translation { .. } => "translation fault",
            Self::AccessFlag { .. } => "access flag fault",
            Self::Permission { .. } => "permission fault",
            Self::SyncExternal => "synchronous external abort",
            Self::TagCheck => "synchronous tag check fault",
            Self::SyncExternalOnWalk { .. } => "synchronous external abort on table walk",
            Self::ParityEcc => "synchronous parity/ECC error",
            Self::ParityEccOnWalk { .. } => "synchronous parity/ECC error on table walk",
            Self::Alignment => "alignment fault",
            Self::GranuleProtectionOnWalk { .. } => "granule protection fault on table walk",
            Self::GranuleProtection => "granule protection fault",
            Self::TlbConflict => "TLB conflict abort",
            Self::UnsupportedAtomicUpdate => "unsupported atomic hardware update fault",
            Self::ImpDefLockdown => "IMPLEMENTATION DEFINED fault (lockdown)",
            Self::ImpDefUnsupportedExclusive => {
                "IMPLEMENTATION DEFINED fault (unsupported exclusive or atomic access)"
            }
            Self::Reserved(_) => "reserved fault status code",
        }
    }

    /// A translation fault: nothing is mapped at the address.
    pub const fn is_translation(self) -> bool {
        matches!(self, Self::Translation { .. })
    }

    /// A permission fault: mapped, but the access is not allowed.
    pub const fn is_permission(self) -> bool {
        matches!(self, Self::Permission { .. })
    }

    /// An access flag fault.
    pub const fn is_access_flag(self) -> bool {
        matches!(self, Self::AccessFlag { .. })
    }
}

/// `translation fault, level 3`, `alignment fault`, ...
impl fmt::Display for FaultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())?;
        if let Some(level) = self.level() {
            write!(f, ", level {level}")?;
        }
        Ok(())
    }
}

/// ISS of a Data Abort, EC 0x24/0x25 (DDI 0487, D24.2, "ISS encoding for an
/// exception from a Data Abort").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DataAbortIss(u32);

impl DataAbortIss {
    /// Wraps ISS bits [24:0]; higher bits are dropped.
    pub const fn new(iss: u32) -> Self {
        Self(iss & 0x01ff_ffff)
    }

    /// The raw ISS.
    pub const fn raw(self) -> u32 {
        self.0
    }

    const fn bit(self, n: u32) -> bool {
        bit(self.0 as u64, n)
    }

    const fn field(self, lsb: u32, width: u32) -> u32 {
        bits(self.0 as u64, lsb, width) as u32
    }

    /// ISV, bit [24]: bits [23:14] hold a valid instruction syndrome.
    pub const fn isv(self) -> bool {
        self.bit(24)
    }

    /// SAS, bits [23:22], raw: 0 byte, 1 halfword, 2 word, 3 doubleword.
    pub const fn sas(self) -> u8 {
        self.field(22, 2) as u8
    }

    /// The access size in bytes from SAS: 1, 2, 4 or 8.
    pub const fn access_size(self) -> u8 {
        1 << self.sas()
    }

    /// SSE, bit [21]: the load sign-extends.
    pub const fn sse(self) -> bool {
        self.bit(21)
    }

    /// SRT, bits [20:16]: the transfer register; 31 means XZR/WZR.
    pub const fn srt(self) -> u8 {
        self.field(16, 5) as u8
    }

    /// SF, bit [15]: the transfer register is 64-bit (X) rather than W.
    pub const fn sf(self) -> bool {
        self.bit(15)
    }

    /// AR, bit [14]: the instruction has acquire/release semantics.
    pub const fn ar(self) -> bool {
        self.bit(14)
    }

    /// VNCR, bit [13]: the fault came from a VNCR_EL2-relative access (FEAT_NV2).
    pub const fn vncr(self) -> bool {
        self.bit(13)
    }

    /// FnV, bit [10]: FAR is not valid.
    pub const fn fnv(self) -> bool {
        self.bit(10)
    }

    /// EA, bit [9]: External abort type, IMPLEMENTATION DEFINED.
    pub const fn ea(self) -> bool {
        self.bit(9)
    }

    /// CM, bit [8]: the fault came from a cache maintenance or address
    /// translation instruction.
    pub const fn cm(self) -> bool {
        self.bit(8)
    }

    /// S1PTW, bit [7]: stage 2 fault on a stage 1 translation table walk.
    pub const fn s1ptw(self) -> bool {
        self.bit(7)
    }

    /// WnR, bit [6]: the access was a write.
    pub const fn wnr(self) -> bool {
        self.bit(6)
    }

    /// DFSC, bits [5:0], raw.
    pub const fn dfsc_raw(self) -> u8 {
        self.field(0, 6) as u8
    }

    /// DFSC, bits [5:0], decoded.
    pub const fn dfsc(self) -> FaultStatus {
        FaultStatus::from_raw(self.dfsc_raw())
    }

    /// The access the guest attempted, if the hardware described it.
    pub const fn mmio_access(self) -> Option<MmioAccess> {
        MmioAccess::from_data_abort(self)
    }
}

impl fmt::Display for DataAbortIss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = u8::from;
        if self.isv() {
            write!(
                f,
                "ISV=1 SAS={} SSE={} SRT={} SF={} AR={} ",
                self.access_size(),
                b(self.sse()),
                self.srt(),
                b(self.sf()),
                b(self.ar())
            )?;
        } else {
            f.write_str("ISV=0 ")?;
        }
        write!(
            f,
            "WnR={} DFSC={:#04x} ({}) FnV={} EA={} S1PTW={}",
            b(self.wnr()),
            self.dfsc_raw(),
            self.dfsc(),
            b(self.fnv()),
            b(self.ea()),
            b(self.s1ptw())
        )?;
        // Rare flags are shown only when set, to keep the common line short.
        if self.cm() {
            f.write_str(" CM=1")?;
        }
        if self.vncr() {
            f.write_str(" VNCR=1")?;
        }
        Ok(())
    }
}

/// ISS of an Instruction Abort, EC 0x20/0x21 (DDI 0487, D24.2, "ISS encoding
/// for an exception from an Instruction Abort").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InstrAbortIss(u32);

impl InstrAbortIss {
    /// Wraps ISS bits [24:0]; higher bits are dropped.
    pub const fn new(iss: u32) -> Self {
        Self(iss & 0x01ff_ffff)
    }

    /// The raw ISS.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// FnV, bit [10]: FAR is not valid.
    pub const fn fnv(self) -> bool {
        bit(self.0 as u64, 10)
    }

    /// EA, bit [9]: External abort type.
    pub const fn ea(self) -> bool {
        bit(self.0 as u64, 9)
    }

    /// S1PTW, bit [7]: stage 2 fault on a stage 1 translation table walk.
    pub const fn s1ptw(self) -> bool {
        bit(self.0 as u64, 7)
    }

    /// IFSC, bits [5:0], raw.
    pub const fn ifsc_raw(self) -> u8 {
        (self.0 & 0x3f) as u8
    }

    /// IFSC, bits [5:0], decoded.
    pub const fn ifsc(self) -> FaultStatus {
        FaultStatus::from_raw(self.ifsc_raw())
    }
}

impl fmt::Display for InstrAbortIss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IFSC={:#04x} ({}) FnV={} EA={} S1PTW={}",
            self.ifsc_raw(),
            self.ifsc(),
            u8::from(self.fnv()),
            u8::from(self.ea()),
            u8::from(self.s1ptw())
        )
    }
}

/// Direction of a trapped system register access (ISS bit [0]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// MSR: the guest writes the register from Rt.
    Write,
    /// MRS: the guest reads the register into Rt.
    Read,
}

/// A system register or System instruction encoding: `op0, op1, CRn, CRm, op2`.
///
/// Displays in the assembler's generic form, `S<op0>_<op1>_C<n>_C<m>_<op2>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SysRegEncoding {
    /// op0, 0..=3.
    pub op0: u8,
    /// op1, 0..=7.
    pub op1: u8,
    /// CRn, 0..=15.
    pub crn: u8,
    /// CRm, 0..=15.
    pub crm: u8,
    /// op2, 0..=7.
    pub op2: u8,
}

impl SysRegEncoding {
    /// An encoding; each field is masked to its architectural width.
    pub const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Self {
        Self {
            op0: op0 & 0b11,
            op1: op1 & 0b111,
            crn: crn & 0b1111,
            crm: crm & 0b1111,
            op2: op2 & 0b111,
        }
    }
}

impl fmt::Display for SysRegEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "S{}_{}_C{}_C{}_{}",
            self.op0, self.op1, self.crn, self.crm, self.op2
        )
    }
}

/// ISS of a trapped MSR, MRS or System instruction, EC 0x18 (DDI 0487, D24.2,
/// "ISS encoding for an exception from MSR, MRS, or System instruction
/// execution in AArch64 state").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SysRegIss(u32);

impl SysRegIss {
    /// Wraps ISS bits [24:0]; higher bits are dropped.
    pub const fn new(iss: u32) -> Self {
        Self(iss & 0x01ff_ffff)
    }

    /// The raw ISS.
    pub const fn raw(self) -> u32 {
        self.0
    }

    const fn field(self, lsb: u32, width: u32) -> u8 {
        bits(self.0 as u64, lsb, width) as u8
    }

    /// Op0, bits [21:20].
    pub const fn op0(self) -> u8 {
        self.field(20, 2)
    }

    /// Op2, bits [19:17].
    pub const fn op2(self) -> u8 {
        self.field(17, 3)
    }

    /// Op1, bits [16:14].
    pub const fn op1(self) -> u8 {
        self.field(14, 3)
    }

    /// CRn, bits [13:10].
    pub const fn crn(self) -> u8 {
        self.field(10, 4)
    }

    /// Rt, bits [9:5]; 31 means XZR.
    pub const fn rt(self) -> u8 {
        self.field(5, 5)
    }

    /// CRm, bits [4:1].
    pub const fn crm(self) -> u8 {
        self.field(1, 4)
    }

    /// Direction, bit [0].
    pub const fn direction(self) -> Direction {
        if self.0 & 1 == 1 {
            Direction::Read
        } else {
            Direction::Write
        }
    }

    /// The register or instruction accessed.
    pub const fn encoding(self) -> SysRegEncoding {
        SysRegEncoding::new(self.op0(), self.op1(), self.crn(), self.crm(), self.op2())
    }
}

impl fmt::Display for SysRegIss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.direction() {
            Direction::Read => write!(f, "MRS X{}, {}", self.rt(), self.encoding()),
            Direction::Write => write!(f, "MSR {}, X{}", self.encoding(), self.rt()),
        }
    }
}

/// Which wait instruction trapped (ISS bits [1:0], TI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WfxKind {
    /// WFI.
    Wfi,
    /// WFE.
    Wfe,
    /// WFIT (FEAT_WFxT).
    Wfit,
    /// WFET (FEAT_WFxT).
    Wfet,
}

/// ISS of a trapped WF* instruction, EC 0x01 (DDI 0487, D24.2, "ISS encoding
/// for an exception from a WF* instruction").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WfxIss(u32);

impl WfxIss {
    /// Wraps ISS bits [24:0]; higher bits are dropped.
    pub const fn new(iss: u32) -> Self {
        Self(iss & 0x01ff_ffff)
    }

    /// The raw ISS.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// TI, bits [1:0], raw.
    pub const fn ti(self) -> u8 {
        (self.0 & 0b11) as u8
    }

    /// TI, decoded.
    pub const fn kind(self) -> WfxKind {
        match self.ti() {
            0 => WfxKind::Wfi,
            1 => WfxKind::Wfe,
            2 => WfxKind::Wfit,
            _ => WfxKind::Wfet,
        }
    }

    /// RV, bit [2]: RN is valid (WFIT/WFET).
    pub const fn rv(self) -> bool {
        bit(self.0 as u64, 2)
    }

    /// RN, bits [9:5]: the register holding the WFIT/WFET timeout.
    pub const fn rn(self) -> u8 {
        bits(self.0 as u64, 5, 5) as u8
    }
}

impl fmt::Display for WfxIss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TI={} ({:?})", self.ti(), self.kind())?;
        if self.rv() {
            write!(f, " RN={}", self.rn())?;
        }
        Ok(())
    }
}

/// ISS of an HVC or SMC, EC 0x12/0x16/0x17 (DDI 0487, D24.2, "ISS encoding for
/// an exception from HVC or SVC instruction execution" and "... SMC ...").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HvcSmcIss(u32);

impl HvcSmcIss {
    /// Wraps ISS bits [24:0]; higher bits are dropped.
    pub const fn new(iss: u32) -> Self {
        Self(iss & 0x01ff_ffff)
    }

    /// The raw ISS.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// imm16, bits [15:0]: the instruction's immediate.
    pub const fn imm16(self) -> u16 {
        self.0 as u16
    }
}

impl fmt::Display for HvcSmcIss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "imm16={:#06x}", self.imm16())
    }
}

/// A decoded ESR_EL2: one variant per exit the vcpu loop handles, each
/// carrying its typed ISS. Classes without a dedicated decoder are `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decoded {
    /// EC 0x00: unknown reason (typically an UNDEFINED instruction).
    Unknown,
    /// EC 0x01: WFI/WFE/WFIT/WFET.
    Wfx(WfxIss),
    /// EC 0x16: HVC from AArch64.
    Hvc64(HvcSmcIss),
    /// EC 0x17: SMC from AArch64. ELR_EL2 points at the SMC itself.
    Smc64(HvcSmcIss),
    /// EC 0x12: HVC from AArch32.
    Hvc32(HvcSmcIss),
    /// EC 0x13: SMC from AArch32; its ISS carries no immediate.
    Smc32 {
        /// The raw ISS (CV, COND, CCKNOWNPASS).
        iss: u32,
    },
    /// EC 0x18: MSR, MRS or System instruction.
    SysReg(SysRegIss),
    /// EC 0x20/0x21: Instruction Abort.
    InstrAbort {
        /// Taken from a lower EL (0x20) rather than from EL2 (0x21).
        lower: bool,
        /// The decoded ISS.
        iss: InstrAbortIss,
    },
    /// EC 0x24/0x25: Data Abort.
    DataAbort {
        /// Taken from a lower EL (0x24) rather than from EL2 (0x25).
        lower: bool,
        /// The decoded ISS.
        iss: DataAbortIss,
    },
    /// EC 0x3C: BRK from AArch64.
    Brk64 {
        /// The BRK immediate, ISS bits [15:0].
        comment: u16,
    },
    /// EC 0x2F: SError.
    SError {
        /// The raw ISS (IDS, AET, EA, DFSC).
        iss: u32,
    },
    /// Any other class, allocated or not.
    Other {
        /// The exception class.
        class: ExceptionClass,
        /// The raw ISS.
        iss: u32,
    },
}

/// Decodes a raw ESR_EL2 value. Total: never panics, whatever `esr` holds.
pub const fn decode(esr: u64) -> Decoded {
    let e = Esr::new(esr);
    let iss = e.iss();
    match e.ec() {
        ExceptionClass::Unknown => Decoded::Unknown,
        ExceptionClass::Wfx => Decoded::Wfx(WfxIss::new(iss)),
        ExceptionClass::Hvc64 => Decoded::Hvc64(HvcSmcIss::new(iss)),
        ExceptionClass::Smc64 => Decoded::Smc64(HvcSmcIss::new(iss)),
        ExceptionClass::Hvc32 => Decoded::Hvc32(HvcSmcIss::new(iss)),
        ExceptionClass::Smc32 => Decoded::Smc32 { iss },
        ExceptionClass::SysReg => Decoded::SysReg(SysRegIss::new(iss)),
        ExceptionClass::InstrAbortLower => Decoded::InstrAbort {
            lower: true,
            iss: InstrAbortIss::new(iss),
        },
        ExceptionClass::InstrAbortCurrent => Decoded::InstrAbort {
            lower: false,
            iss: InstrAbortIss::new(iss),
        },
        ExceptionClass::DataAbortLower => Decoded::DataAbort {
            lower: true,
            iss: DataAbortIss::new(iss),
        },
        ExceptionClass::DataAbortCurrent => Decoded::DataAbort {
            lower: false,
            iss: DataAbortIss::new(iss),
        },
        ExceptionClass::Brk64 => Decoded::Brk64 {
            comment: iss as u16,
        },
        ExceptionClass::SError => Decoded::SError { iss },
        class => Decoded::Other { class, iss },
    }
}

impl Decoded {
    /// The exception class this was decoded from.
    pub const fn class(&self) -> ExceptionClass {
        match *self {
            Self::Unknown => ExceptionClass::Unknown,
            Self::Wfx(_) => ExceptionClass::Wfx,
            Self::Hvc64(_) => ExceptionClass::Hvc64,
            Self::Smc64(_) => ExceptionClass::Smc64,
            Self::Hvc32(_) => ExceptionClass::Hvc32,
            Self::Smc32 { .. } => ExceptionClass::Smc32,
            Self::SysReg(_) => ExceptionClass::SysReg,
            Self::InstrAbort { lower: true, .. } => ExceptionClass::InstrAbortLower,
            Self::InstrAbort { lower: false, .. } => ExceptionClass::InstrAbortCurrent,
            Self::DataAbort { lower: true, .. } => ExceptionClass::DataAbortLower,
            Self::DataAbort { lower: false, .. } => ExceptionClass::DataAbortCurrent,
            Self::Brk64 { .. } => ExceptionClass::Brk64,
            Self::SError { .. } => ExceptionClass::SError,
            Self::Other { class, .. } => class,
        }
    }

    /// Writes the ISS part of the report.
    fn fmt_iss(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown => f.write_str("-"),
            Self::Wfx(iss) => fmt::Display::fmt(iss, f),
            Self::Hvc64(iss) | Self::Smc64(iss) | Self::Hvc32(iss) => fmt::Display::fmt(iss, f),
            Self::SysReg(iss) => fmt::Display::fmt(iss, f),
            Self::InstrAbort { iss, .. } => fmt::Display::fmt(iss, f),
            Self::DataAbort { iss, .. } => fmt::Display::fmt(iss, f),
            Self::Brk64 { comment } => write!(f, "comment={comment:#06x}"),
            Self::Smc32 { iss } | Self::SError { iss } | Self::Other { iss, .. } => {
                write!(f, "{iss:#09x}")
            }
        }
    }
}

/// `EC=0x24 (Data Abort from a lower EL) ISS: ...`. IL is part of the ESR, not
/// of the decoded syndrome: print the [`Esr`] for the full report with IL.
impl fmt::Display for Decoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = self.class();
        write!(f, "EC={:#04x} ({}) ISS: ", class.raw(), class.name())?;
        self.fmt_iss(f)
    }
}

/// A guest load or store to emulated MMIO, as described by a Data Abort's
/// instruction syndrome (ISV=1). The faulting address comes from HPFAR_EL2 and
/// FAR_EL2, which the caller reads; this holds only what the ESR says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MmioAccess {
    /// Access size in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// A store (`true`) or a load.
    pub write: bool,
    /// The transfer register, SRT; 31 is XZR/WZR (reads as zero, writes discarded).
    pub reg: u8,
    /// A load that sign-extends to the register width (SSE).
    pub sign_extend: bool,
    /// The register is 64-bit X rather than 32-bit W (SF).
    pub sixty_four: bool,
    /// Load-acquire or store-release (AR).
    pub acquire_release: bool,
}

impl MmioAccess {
    /// The access described by a Data Abort ISS, or `None` when ISV=0: the
    /// instruction (LDP/STP, writeback, SIMD, ...) cannot be emulated from the
    /// syndrome and the caller injects an abort into the guest instead.
    pub const fn from_data_abort(iss: DataAbortIss) -> Option<Self> {
        if !iss.isv() {
            return None;
        }
        Some(Self {
            size: iss.access_size(),
            write: iss.wnr(),
            reg: iss.srt(),
            sign_extend: iss.sse(),
            sixty_four: iss.sf(),
            acquire_release: iss.ar(),
        })
    }

    /// How many high bits of a 64-bit value the access does not cover. A
    /// `size` outside 1..=8 (only possible if built by hand) counts as 8.
    const fn unused_bits(&self) -> u32 {
        match self.size {
            1..=8 => 64 - 8 * self.size as u32,
            _ => 0,
        }
    }

    /// The value to place in the register after a load of `raw` (the low
    /// `size` bytes are used): sign- or zero-extended, then truncated to 32
    /// bits for a W register, which zeroes the upper half of X as the
    /// architecture does.
    pub const fn load_value(&self, raw: u64) -> u64 {
        let shift = self.unused_bits();
        let value = if self.sign_extend {
            (((raw << shift) as i64) >> shift) as u64
        } else {
            (raw << shift) >> shift
        };
        if self.sixty_four {
            value
        } else {
            value & 0xffff_ffff
        }
    }

    /// The bytes a store writes, taken from the register value `reg_value`
    /// (pass 0 for XZR) and truncated to the access size.
    pub const fn store_value(&self, reg_value: u64) -> u64 {
        let shift = self.unused_bits();
        (reg_value << shift) >> shift
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::String;
    use core::fmt::Write;

    const fn esr(ec: u64, il: bool, iss: u64) -> u64 {
        (ec << 26) | ((il as u64) << 25) | iss
    }

    #[test]
    fn ldr_x0_translation_fault_level_2() {
        // 0x93C08006: EC=0b100100, IL=1, ISS=0x1C08006: ISV=1, SAS=0b11,
        // SSE=0, SRT=0, SF=1, AR=0, WnR=0, DFSC=0b000110.
        let e = Esr::new(0x93C0_8006);
        assert_eq!(e.ec_raw(), 0x24);
        assert_eq!(e.ec(), ExceptionClass::DataAbortLower);
        assert!(e.il());
        assert_eq!(e.iss(), 0x1C0_8006);
        let Decoded::DataAbort { lower, iss } = e.decode() else {
            panic!("not a data abort: {:?}", e.decode());
        };
        assert!(lower);
        assert!(iss.isv());
        assert_eq!(iss.sas(), 3);
        assert_eq!(iss.access_size(), 8);
        assert!(!iss.sse());
        assert_eq!(iss.srt(), 0);
        assert!(iss.sf());
        assert!(!iss.ar());
        assert!(!iss.wnr());
        assert_eq!(iss.dfsc(), FaultStatus::Translation { level: 2 });
        assert_eq!(
            iss.mmio_access(),
            Some(MmioAccess {
                size: 8,
                write: false,
                reg: 0,
                sign_extend: false,
                sixty_four: true,
                acquire_release: false,
            })
        );
    }

    #[test]
    fn str_w1_translation_fault_level_3() {
        // STR W1: ISV=1, SAS=0b10 (word), SRT=1, SF=0, WnR=1, DFSC=0b000111.
        let raw = esr(
            0x24,
            true,
            (1 << 24) | (2 << 22) | (1 << 16) | (1 << 6) | 0x07,
        );
        assert_eq!(raw, 0x9381_0047);
        let e = Esr::new(raw);
        let Decoded::DataAbort { lower: true, iss } = e.decode() else {
            panic!("not a lower-EL data abort");
        };
        let access = MmioAccess::from_data_abort(iss).unwrap();
        assert_eq!(access.size, 4);
        assert!(access.write);
        assert_eq!(access.reg, 1);
        assert!(!access.sixty_four && !access.sign_extend && !access.acquire_release);
        assert_eq!(
            format!("{e}"),
            "EC=0x24 (Data Abort from a lower EL) IL=1 ISS: ISV=1 SAS=4 SSE=0 SRT=1 SF=0 \
             AR=0 WnR=1 DFSC=0x07 (translation fault, level 3) FnV=0 EA=0 S1PTW=0"
        );
    }

    #[test]
    fn store_w_report_format() {
        let raw = esr(
            0x24,
            true,
            (1 << 24) | (2 << 22) | (3 << 16) | (1 << 6) | 0x07,
        );
        assert_eq!(
            format!("{}", Esr::new(raw)),
            "EC=0x24 (Data Abort from a lower EL) IL=1 ISS: ISV=1 SAS=4 SSE=0 SRT=3 SF=0 \
             AR=0 WnR=1 DFSC=0x07 (translation fault, level 3) FnV=0 EA=0 S1PTW=0"
        );
    }

    #[test]
    fn data_abort_without_syndrome() {
        // An STP: ISV=0, WnR=1, translation fault level 3; the SAS/SRT bits
        // are not meaningful and must not leak into an access.
        let raw = esr(0x24, true, (3 << 22) | (5 << 16) | (1 << 6) | 0x07);
        let Decoded::DataAbort { iss, .. } = decode(raw) else {
            panic!()
        };
        assert!(!iss.isv());
        assert_eq!(MmioAccess::from_data_abort(iss), None);
        let text = format!("{}", Esr::new(raw));
        assert!(
            text.ends_with(
                "ISS: ISV=0 WnR=1 DFSC=0x07 (translation fault, level 3) FnV=0 EA=0 S1PTW=0"
            ),
            "{text}"
        );
    }

    #[test]
    fn data_abort_flag_bits() {
        let iss = DataAbortIss::new(
            (1 << 24) | (1 << 21) | (31 << 16) | (1 << 15) | (1 << 14) | (1 << 13),
        );
        assert!(iss.sse() && iss.sf() && iss.ar() && iss.vncr());
        assert_eq!(iss.srt(), 31);
        assert_eq!(iss.access_size(), 1);
        let iss = DataAbortIss::new((1 << 10) | (1 << 9) | (1 << 8) | (1 << 7) | 0x0F);
        assert!(iss.fnv() && iss.ea() && iss.cm() && iss.s1ptw() && !iss.wnr());
        assert_eq!(iss.dfsc(), FaultStatus::Permission { level: 3 });
        let text = format!("{iss}");
        assert!(text.contains("FnV=1 EA=1 S1PTW=1 CM=1"), "{text}");
        // Bits above the ISS are dropped.
        assert_eq!(DataAbortIss::new(u32::MAX).raw(), 0x01ff_ffff);
    }

    #[test]
    fn mmio_load_and_store_values() {
        let ldrsb_w = MmioAccess {
            size: 1,
            write: false,
            reg: 2,
            sign_extend: true,
            sixty_four: false,
            acquire_release: false,
        };
        assert_eq!(ldrsb_w.load_value(0xffff_ff80), 0xffff_ff80);
        assert_eq!(ldrsb_w.load_value(0x7f), 0x7f);
        let ldrsh_x = MmioAccess {
            size: 2,
            sixty_four: true,
            ..ldrsb_w
        };
        assert_eq!(ldrsh_x.load_value(0x1234_8000), 0xffff_ffff_ffff_8000);
        let ldr_w = MmioAccess {
            size: 4,
            sign_extend: false,
            ..ldrsb_w
        };
        assert_eq!(ldr_w.load_value(0xdead_beef_cafe_f00d), 0xcafe_f00d);
        let ldr_x = MmioAccess {
            size: 8,
            sixty_four: true,
            ..ldr_w
        };
        assert_eq!(ldr_x.load_value(u64::MAX), u64::MAX);
        let strh = MmioAccess {
            size: 2,
            write: true,
            ..ldr_w
        };
        assert_eq!(strh.store_value(0x1234_5678), 0x5678);
        assert_eq!(ldr_x.store_value(u64::MAX), u64::MAX);
    }

    #[test]
    fn every_fault_status_code() {
        use FaultStatus::*;
        let expected: &[(u8, FaultStatus, &str)] = &[
            (
                0x00,
                AddressSize { level: 0 },
                "address size fault, level 0",
            ),
            (
                0x01,
                AddressSize { level: 1 },
                "address size fault, level 1",
            ),
            (
                0x02,
                AddressSize { level: 2 },
                "address size fault, level 2",
            ),
            (
                0x03,
                AddressSize { level: 3 },
                "address size fault, level 3",
            ),
            (0x04, Translation { level: 0 }, "translation fault, level 0"),
            (0x05, Translation { level: 1 }, "translation fault, level 1"),
            (0x06, Translation { level: 2 }, "translation fault, level 2"),
            (0x07, Translation { level: 3 }, "translation fault, level 3"),
            (0x08, AccessFlag { level: 0 }, "access flag fault, level 0"),
            (0x09, AccessFlag { level: 1 }, "access flag fault, level 1"),
            (0x0A, AccessFlag { level: 2 }, "access flag fault, level 2"),
            (0x0B, AccessFlag { level: 3 }, "access flag fault, level 3"),
            (0x0C, Permission { level: 0 }, "permission fault, level 0"),
            (0x0D, Permission { level: 1 }, "permission fault, level 1"),
            (0x0E, Permission { level: 2 }, "permission fault, level 2"),
            (0x0F, Permission { level: 3 }, "permission fault, level 3"),
            (0x10, SyncExternal, "synchronous external abort"),
            (0x11, TagCheck, "synchronous tag check fault"),
            (
                0x12,
                SyncExternalOnWalk { level: -2 },
                "synchronous external abort on table walk, level -2",
            ),
            (
                0x13,
                SyncExternalOnWalk { level: -1 },
                "synchronous external abort on table walk, level -1",
            ),
            (
                0x14,
                SyncExternalOnWalk { level: 0 },
                "synchronous external abort on table walk, level 0",
            ),
            (
                0x15,
                SyncExternalOnWalk { level: 1 },
                "synchronous external abort on table walk, level 1",
            ),
            (
                0x16,
                SyncExternalOnWalk { level: 2 },
                "synchronous external abort on table walk, level 2",
            ),
            (
                0x17,
                SyncExternalOnWalk { level: 3 },
                "synchronous external abort on table walk, level 3",
            ),
            (0x18, ParityEcc, "synchronous parity/ECC error"),
            (
                0x1B,
                ParityEccOnWalk { level: -1 },
                "synchronous parity/ECC error on table walk, level -1",
            ),
            (
                0x1C,
                ParityEccOnWalk { level: 0 },
                "synchronous parity/ECC error on table walk, level 0",
            ),
            (
                0x1D,
                ParityEccOnWalk { level: 1 },
                "synchronous parity/ECC error on table walk, level 1",
            ),
            (
                0x1E,
                ParityEccOnWalk { level: 2 },
                "synchronous parity/ECC error on table walk, level 2",
            ),
            (
                0x1F,
                ParityEccOnWalk { level: 3 },
                "synchronous parity/ECC error on table walk, level 3",
            ),
            (0x21, Alignment, "alignment fault"),
            (
                0x22,
                GranuleProtectionOnWalk { level: -2 },
                "granule protection fault on table walk, level -2",
            ),
            (
                0x23,
                GranuleProtectionOnWalk { level: -1 },
                "granule protection fault on table walk, level -1",
            ),
            (
                0x24,
                GranuleProtectionOnWalk { level: 0 },
                "granule protection fault on table walk, level 0",
            ),
            (
                0x25,
                GranuleProtectionOnWalk { level: 1 },
                "granule protection fault on table walk, level 1",
            ),
            (
                0x26,
                GranuleProtectionOnWalk { level: 2 },
                "granule protection fault on table walk, level 2",
            ),
            (
                0x27,
                GranuleProtectionOnWalk { level: 3 },
                "granule protection fault on table walk, level 3",
            ),
            (0x28, GranuleProtection, "granule protection fault"),
            (
                0x29,
                AddressSize { level: -1 },
                "address size fault, level -1",
            ),
            (
                0x2A,
                Translation { level: -2 },
                "translation fault, level -2",
            ),
            (
                0x2B,
                Translation { level: -1 },
                "translation fault, level -1",
            ),
            (
                0x2C,
                AddressSize { level: -2 },
                "address size fault, level -2",
            ),
            (0x30, TlbConflict, "TLB conflict abort"),
            (
                0x31,
                UnsupportedAtomicUpdate,
                "unsupported atomic hardware update fault",
            ),
            (
                0x34,
                ImpDefLockdown,
                "IMPLEMENTATION DEFINED fault (lockdown)",
            ),
            (
                0x35,
                ImpDefUnsupportedExclusive,
                "IMPLEMENTATION DEFINED fault (unsupported exclusive or atomic access)",
            ),
        ];
        for &(raw, status, text) in expected {
            assert_eq!(FaultStatus::from_raw(raw), status, "{raw:#x}");
            assert_eq!(format!("{status}"), text, "{raw:#x}");
        }
        for raw in [0x19u8, 0x1A, 0x20, 0x2D, 0x2E, 0x2F, 0x32, 0x33, 0x36, 0x3F] {
            assert_eq!(FaultStatus::from_raw(raw), Reserved(raw), "{raw:#x}");
            assert_eq!(FaultStatus::from_raw(raw).level(), None);
        }
        // The table above lists every code the manual names.
        let named = (0u8..64)
            .filter(|&r| !matches!(FaultStatus::from_raw(r), Reserved(_)))
            .count();
        assert_eq!(named, expected.len());
        assert_eq!(Translation { level: 3 }.level(), Some(3));
        assert_eq!(Alignment.level(), None);
        assert!(Translation { level: 1 }.is_translation());
        assert!(Permission { level: 1 }.is_permission());
        assert!(AccessFlag { level: 3 }.is_access_flag());
        assert_eq!(FaultStatus::from_raw(0xC7), Translation { level: 3 });
    }

    #[test]
    // The zero fields are spelled out so the encoding reads like the manual's table.
    #[allow(clippy::identity_op)]
    fn sysreg_read_id_aa64mmfr0() {
        // MRS X3, ID_AA64MMFR0_EL1 = S3_0_C0_C7_0.
        let iss = (3 << 20) | (0 << 17) | (0 << 14) | (0 << 10) | (3 << 5) | (7 << 1) | 1;
        let raw = esr(0x18, true, iss);
        let Decoded::SysReg(s) = decode(raw) else {
            panic!()
        };
        assert_eq!(s.op0(), 3);
        assert_eq!(s.op1(), 0);
        assert_eq!(s.crn(), 0);
        assert_eq!(s.crm(), 7);
        assert_eq!(s.op2(), 0);
        assert_eq!(s.rt(), 3);
        assert_eq!(s.direction(), Direction::Read);
        assert_eq!(s.encoding(), SysRegEncoding::new(3, 0, 0, 7, 0));
        assert_eq!(format!("{}", s.encoding()), "S3_0_C0_C7_0");
        assert_eq!(
            format!("{}", Esr::new(raw)),
            "EC=0x18 (Trapped MSR/MRS/System instruction) IL=1 ISS: MRS X3, S3_0_C0_C7_0"
        );
    }

    #[test]
    fn sysreg_write_every_field() {
        // MSR S2_5_C13_C9_6, XZR: distinct values show the fields do not overlap.
        let iss = (2 << 20) | (6 << 17) | (5 << 14) | (13 << 10) | (31 << 5) | (9 << 1);
        let s = SysRegIss::new(iss);
        assert_eq!(s.direction(), Direction::Write);
        assert_eq!(s.encoding(), SysRegEncoding::new(2, 5, 13, 9, 6));
        assert_eq!(format!("{s}"), "MSR S2_5_C13_C9_6, X31");
    }

    #[test]
    fn wfx_hvc_smc_brk() {
        assert_eq!(WfxIss::new(0).kind(), WfxKind::Wfi);
        assert_eq!(WfxIss::new(1).kind(), WfxKind::Wfe);
        assert_eq!(WfxIss::new(2).kind(), WfxKind::Wfit);
        assert_eq!(WfxIss::new(3).kind(), WfxKind::Wfet);
        let wfit = WfxIss::new((7 << 5) | (1 << 2) | 2);
        assert!(wfit.rv());
        assert_eq!(wfit.rn(), 7);
        assert_eq!(decode(esr(0x01, true, 1)), Decoded::Wfx(WfxIss::new(1)));

        // HVC #0x1337 and SMC #0.
        let Decoded::Hvc64(h) = decode(esr(0x16, true, 0x1337)) else {
            panic!()
        };
        assert_eq!(h.imm16(), 0x1337);
        let Decoded::Smc64(s) = decode(esr(0x17, true, 0)) else {
            panic!()
        };
        assert_eq!(s.imm16(), 0);
        assert!(matches!(decode(esr(0x12, true, 5)), Decoded::Hvc32(i) if i.imm16() == 5));
        assert_eq!(
            decode(esr(0x3C, true, 0xF000)),
            Decoded::Brk64 { comment: 0xF000 }
        );
        assert_eq!(
            format!("{}", Esr::new(esr(0x16, true, 0x1337))),
            "EC=0x16 (HVC from AArch64) IL=1 ISS: imm16=0x1337"
        );
    }

    #[test]
    fn instruction_abort() {
        let raw = esr(0x20, true, (1 << 7) | 0x06);
        let Decoded::InstrAbort { lower: true, iss } = decode(raw) else {
            panic!()
        };
        assert!(iss.s1ptw());
        assert_eq!(iss.ifsc(), FaultStatus::Translation { level: 2 });
        assert_eq!(
            format!("{}", Esr::new(raw)),
            "EC=0x20 (Instruction Abort from a lower EL) IL=1 ISS: \
             IFSC=0x06 (translation fault, level 2) FnV=0 EA=0 S1PTW=1"
        );
        assert!(matches!(
            decode(esr(0x21, true, 0x0F)),
            Decoded::InstrAbort { lower: false, .. }
        ));
    }

    #[test]
    fn exception_classes_round_trip() {
        for ec in 0u8..64 {
            let class = ExceptionClass::from_raw(ec);
            assert_eq!(class.raw(), ec);
            assert!(!class.name().is_empty());
            assert_eq!(decode(u64::from(ec) << 26).class(), class);
        }
        // Unallocated values stay distinguishable.
        for ec in [
            0x02u8, 0x0B, 0x0F, 0x10, 0x14, 0x23, 0x29, 0x2A, 0x2B, 0x2E, 0x36, 0x37, 0x39, 0x3B,
            0x3E, 0x3F,
        ] {
            assert_eq!(ExceptionClass::from_raw(ec), ExceptionClass::Other(ec));
        }
        assert_eq!(
            ExceptionClass::from_raw(0x20),
            ExceptionClass::InstrAbortLower
        );
        assert_eq!(ExceptionClass::from_raw(0x2C), ExceptionClass::Fp64);
        assert_eq!(ExceptionClass::from_raw(0x19), ExceptionClass::Sve);
        assert_eq!(ExceptionClass::from_raw(0x1A), ExceptionClass::Eret);
        assert_eq!(ExceptionClass::from_raw(0x3C), ExceptionClass::Brk64);
        assert_eq!(ExceptionClass::Other(0xff).raw(), 0x3f);
    }

    #[test]
    fn il_and_instruction_len() {
        assert_eq!(Esr::new(esr(0x18, true, 0)).instruction_len(), 4);
        assert_eq!(Esr::new(esr(0x03, false, 0)).instruction_len(), 2);
        assert_eq!(Esr::new(0xabcd_u64 << 32).iss2(), 0xabcd);
    }

    /// xorshift64: deterministic, good enough to spread bits over every field.
    fn xorshift(state: &mut u64) -> u64 {
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        x
    }

    #[test]
    fn decoding_is_total() {
        let mut state = 0x9E37_79B9_7F4A_7C15;
        let mut text = String::new();
        let check = |x: u64, text: &mut String| {
            let e = Esr::new(x);
            assert_eq!(u64::from(e.ec_raw()), (x >> 26) & 0x3f);
            assert_eq!(e.ec().raw(), e.ec_raw());
            let d = decode(x);
            assert_eq!(d.class(), e.ec());
            if let Decoded::DataAbort { iss, .. } = d {
                let a = iss.mmio_access();
                assert_eq!(a.is_some(), iss.isv());
                if let Some(a) = a {
                    assert!(matches!(a.size, 1 | 2 | 4 | 8));
                    assert!(a.reg <= 31);
                    let _ = a.load_value(x) | a.store_value(x);
                }
            }
            text.clear();
            write!(text, "{e} / {d}").unwrap();
            assert!(text.starts_with("EC=0x"));
        };
        for _ in 0..300_000 {
            check(xorshift(&mut state), &mut text);
        }
        // Every class with all-zero and all-one syndromes, too.
        for ec in 0..64u64 {
            check(ec << 26, &mut text);
            check((ec << 26) | 0x03ff_ffff, &mut text);
            check((ec << 26) | !0xffff_ffffu64 | 0x03ff_ffff, &mut text);
        }
        check(0, &mut text);
        check(u64::MAX, &mut text);
    }
}
