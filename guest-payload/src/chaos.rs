//! The `chaos` test's pure half: a seeded generator of hostile actions, what
//! the hypervisor must answer to each (`../shared/docs/hostile-guest.md`),
//! and the tallies. `arch::chaos` builds the target pools (stage-1 mappings
//! onto holes, MMIO, beyond-IPA addresses and BARs), performs each action
//! under a fault probe and reports what it saw.
//!
//! The same seed gives the same stream on every run, given the same pools:
//! the pools come from the device tree and the passed-through devices, so a
//! failing action is reproduced by rerunning with its seed and looking at
//! the same action index.

use core::fmt;

use crate::pci::Bdf;
use crate::platform::Region;

/// SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number
/// generators", 2014): one 64-bit state, every seed usable, good enough
/// spread for test inputs.
#[derive(Clone, Copy, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub const fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift; the bias is irrelevant for test inputs.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        items.get(self.below(items.len() as u64) as usize).copied()
    }
}

/// Access widths of loads and stores; `Pair` is LDP/STP of two X registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// LDRB/STRB.
    B1,
    /// LDRH/STRH.
    B2,
    /// LDR/STR of a W register.
    B4,
    /// LDR/STR of an X register.
    B8,
    /// LDP/STP of two X registers: no instruction syndrome at stage 2.
    Pair,
}

impl Width {
    /// Every width.
    pub const ALL: [Width; 5] = [Width::B1, Width::B2, Width::B4, Width::B8, Width::Pair];

    /// Bytes accessed.
    pub fn bytes(self) -> u64 {
        match self {
            Width::B1 => 1,
            Width::B2 => 2,
            Width::B4 => 4,
            Width::B8 => 8,
            Width::Pair => 16,
        }
    }

    /// All ones in the width (the value of a rejected read).
    pub fn all_ones(self) -> u64 {
        match self {
            Width::B1 => 0xff,
            Width::B2 => 0xffff,
            Width::B4 => 0xffff_ffff,
            Width::B8 | Width::Pair => u64::MAX,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Width::B1 => "8",
            Width::B2 => "16",
            Width::B4 => "32",
            Width::B8 => "64",
            Width::Pair => "pair",
        }
    }
}

/// Where a memory action is aimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// An IPA below RAM that stage 2 leaves unmapped.
    Hole,
    /// The emulated UART's page.
    Uart,
    /// The virtual ECAM window.
    Ecam,
    /// An IPA with a bit from 40 to 47 set, beyond the guest's IPA size.
    BeyondIpa,
    /// A passed-through BAR, where the guest's config space says it is.
    Bar,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 5] = [
        Class::Hole,
        Class::Uart,
        Class::Ecam,
        Class::BeyondIpa,
        Class::Bar,
    ];

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Class::Hole => "hole",
            Class::Uart => "uart",
            Class::Ecam => "ecam",
            Class::BeyondIpa => "beyond-ipa",
            Class::Bar => "bar",
        }
    }
}

/// A target address: the guest VA used and the IPA it reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// What lies there.
    pub class: Class,
    /// The virtual address accessed.
    pub va: u64,
    /// The intermediate physical address it translates to.
    pub ipa: u64,
}

/// A page the guest maps so it can aim at an IPA: identity-mapped pages
/// have `va == ipa`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// What lies there.
    pub class: Class,
    /// Page-aligned VA.
    pub va: u64,
    /// Page-aligned IPA.
    pub ipa: u64,
}

/// The conduit and immediate of a firmware call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// `hvc #0`.
    Hvc0,
    /// `hvc #1`: not an SMCCC call.
    Hvc1,
    /// `hvc #0xffff`: not an SMCCC call.
    HvcFfff,
    /// `smc #0`.
    Smc0,
    /// `smc #1`: not an SMCCC call.
    Smc1,
}

impl Conduit {
    /// Every conduit.
    pub const ALL: [Conduit; 5] = [
        Conduit::Hvc0,
        Conduit::Hvc1,
        Conduit::HvcFfff,
        Conduit::Smc0,
        Conduit::Smc1,
    ];

    /// The immediate.
    pub fn imm(self) -> u16 {
        match self {
            Conduit::Hvc0 | Conduit::Smc0 => 0,
            Conduit::Hvc1 | Conduit::Smc1 => 1,
            Conduit::HvcFfff => 0xffff,
        }
    }

    /// An HVC (not an SMC).
    pub fn is_hvc(self) -> bool {
        matches!(self, Conduit::Hvc0 | Conduit::Hvc1 | Conduit::HvcFfff)
    }
}

/// Set/way cache maintenance instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetWayOp {
    /// DC ISW: invalidate (would lose dirty data if not trapped).
    Isw,
    /// DC CSW.
    Csw,
    /// DC CISW.
    Cisw,
}

/// Cache maintenance by VA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DcOp {
    /// DC CIVAC.
    Civac,
    /// DC CVAC.
    Cvac,
    /// DC IVAC: aimed only at MMIO, holes and BARs, never at RAM.
    Ivac,
    /// DC CVAU.
    Cvau,
}

/// A write to one of a passed-through device's BAR registers, with Memory
/// Space Enable set to `mse` first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarMove {
    /// Index into [`Pools::devices`].
    pub device: usize,
    /// BAR number (the low one of a 64-bit BAR).
    pub bar: u8,
    /// Memory Space Enable during the write.
    pub mse: bool,
    /// The low dword written.
    pub low: u32,
    /// The high dword, written after the low one, for 64-bit BARs.
    pub high: Option<u32>,
}

/// One hostile action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A load.
    Load {
        /// Where.
        target: Target,
        /// How wide.
        width: Width,
    },
    /// A store.
    Store {
        /// Where.
        target: Target,
        /// How wide.
        width: Width,
        /// What (both registers of a pair get it).
        value: u64,
    },
    /// A branch to the target (an instruction fetch).
    Exec {
        /// Where.
        target: Target,
    },
    /// One entry of the trapped system register table.
    Sysreg {
        /// Index into the table.
        index: usize,
    },
    /// An HVC or SMC with x0..x7 as given.
    Call {
        /// Which instruction and immediate.
        conduit: Conduit,
        /// x0..x7.
        regs: [u64; 8],
    },
    /// A configuration space access through the ECAM at `offset` (any
    /// alignment) of `bdf`.
    Config {
        /// The function.
        bdf: Bdf,
        /// Byte offset in its 4 KiB (an 8-byte access at 0xffc crosses into
        /// the next function).
        offset: u16,
        /// Access width.
        width: Width,
        /// The value, for a write.
        write: Option<u64>,
    },
    /// A BAR relocation attempt.
    Bar(BarMove),
    /// Set/way cache maintenance with a random operand.
    SetWay {
        /// Which instruction.
        op: SetWayOp,
        /// Its operand.
        operand: u64,
    },
    /// Cache maintenance by VA on a hole, MMIO or a BAR.
    DcVa {
        /// Which instruction.
        op: DcOp,
        /// Where.
        target: Target,
    },
}

/// Action kinds, for the tallies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Loads.
    Load,
    /// Stores.
    Store,
    /// Instruction fetches.
    Exec,
    /// System register accesses.
    Sysreg,
    /// HVC.
    Hvc,
    /// SMC.
    Smc,
    /// Configuration accesses.
    Config,
    /// BAR relocations.
    Bar,
    /// Set/way maintenance.
    SetWay,
    /// Maintenance by VA.
    DcVa,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 10] = [
        Kind::Load,
        Kind::Store,
        Kind::Exec,
        Kind::Sysreg,
        Kind::Hvc,
        Kind::Smc,
        Kind::Config,
        Kind::Bar,
        Kind::SetWay,
        Kind::DcVa,
    ];

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Load => "load",
            Kind::Store => "store",
            Kind::Exec => "exec",
            Kind::Sysreg => "sysreg",
            Kind::Hvc => "hvc",
            Kind::Smc => "smc",
            Kind::Config => "config",
            Kind::Bar => "bar-move",
            Kind::SetWay => "set-way",
            Kind::DcVa => "dc-va",
        }
    }
}

impl Action {
    /// The action's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Action::Load { .. } => Kind::Load,
            Action::Store { .. } => Kind::Store,
            Action::Exec { .. } => Kind::Exec,
            Action::Sysreg { .. } => Kind::Sysreg,
            Action::Call { conduit, .. } if conduit.is_hvc() => Kind::Hvc,
            Action::Call { .. } => Kind::Smc,
            Action::Config { .. } => Kind::Config,
            Action::Bar(_) => Kind::Bar,
            Action::SetWay { .. } => Kind::SetWay,
            Action::DcVa { .. } => Kind::DcVa,
        }
    }

    /// The memory class aimed at, for memory actions.
    pub fn class(&self) -> Option<Class> {
        match self {
            Action::Load { target, .. }
            | Action::Store { target, .. }
            | Action::Exec { target }
            | Action::DcVa { target, .. } => Some(target.class),
            _ => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.va == self.ipa {
            write!(f, "{} ipa {:#x}", self.class.name(), self.ipa)
        } else {
            write!(
                f,
                "{} ipa {:#x} (va {:#x})",
                self.class.name(),
                self.ipa,
                self.va
            )
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Load { target, width } => write!(f, "load{} {target}", width.name()),
            Action::Store {
                target,
                width,
                value,
            } => write!(f, "store{} {value:#x} to {target}", width.name()),
            Action::Exec { target } => write!(f, "exec {target}"),
            Action::Sysreg { index } => write!(f, "sysreg #{index}"),
            Action::Call { conduit, regs } => write!(
                f,
                "{} #{:#x} x0={:#x} x1={:#x} x2={:#x} x3={:#x} x4={:#x} x5={:#x} x6={:#x} x7={:#x}",
                if conduit.is_hvc() { "hvc" } else { "smc" },
                conduit.imm(),
                regs[0],
                regs[1],
                regs[2],
                regs[3],
                regs[4],
                regs[5],
                regs[6],
                regs[7]
            ),
            Action::Config {
                bdf,
                offset,
                width,
                write,
            } => match write {
                Some(v) => write!(
                    f,
                    "config write{} {v:#x} to {bdf} +{offset:#x}",
                    width.name()
                ),
                None => write!(f, "config read{} of {bdf} +{offset:#x}", width.name()),
            },
            Action::Bar(m) => {
                write!(
                    f,
                    "bar move device #{} BAR{} mse={} low={:#x}",
                    m.device, m.bar, m.mse as u8, m.low
                )?;
                if let Some(high) = m.high {
                    write!(f, " high={high:#x}")?;
                }
                Ok(())
            }
            Action::SetWay { op, operand } => write!(f, "dc {op:?} {operand:#x}"),
            Action::DcVa { op, target } => write!(f, "dc {op:?} on {target}"),
        }
    }
}

/// A memory BAR of a passed-through device, as the guest found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarInfo {
    /// Index into [`Pools::devices`].
    pub device: usize,
    /// BAR number.
    pub bar: u8,
    /// A 64-bit BAR.
    pub is_64: bool,
    /// Bytes decoded (at least a page).
    pub size: u64,
    /// Where it was at the start (an IPA).
    pub boot: u64,
    /// Where the guest's config space says it is now, if inside a window.
    pub now: u64,
}

/// Everything an action may be aimed at.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pools<'a> {
    /// Identity-mapped holes.
    pub holes: &'a [Region],
    /// The UART page.
    pub uart: Option<u64>,
    /// The ECAM window (identity-mapped) and its first bus.
    pub ecam: Option<(Region, u8)>,
    /// Pages mapped onto IPAs beyond the IPA size.
    pub beyond: &'a [Page],
    /// Passed-through memory BARs.
    pub bars: &'a [BarInfo],
    /// The guest's passed-through functions.
    pub devices: &'a [Bdf],
    /// The PCI memory windows (IPA ranges, identity-mapped).
    pub windows: &'a [Region],
    /// Executable (stage 1) aliases of hole, MMIO and BAR pages.
    pub exec: &'a [Page],
    /// Entries in the system register table.
    pub sysregs: usize,
    /// Guest RAM, for BAR moves aimed at it.
    pub ram: Option<Region>,
}

/// PSCI and SMCCC function IDs that stop, suspend or reset the caller: never
/// generated (`CPU_SUSPEND`, `CPU_OFF`, `SYSTEM_OFF`, `SYSTEM_RESET`,
/// `CPU_FREEZE`, `CPU_DEFAULT_SUSPEND`, `SYSTEM_SUSPEND`, `SYSTEM_RESET2`,
/// in their SMC32 and SMC64 forms).
pub fn stops_the_caller(function: u32) -> bool {
    let low = function & 0xbfff_ffff;
    matches!(
        low,
        0x8400_0001
            | 0x8400_0002
            | 0x8400_0008
            | 0x8400_0009
            | 0x8400_000b
            | 0x8400_000c
            | 0x8400_000e
            | 0x8400_0012
    )
}

/// Whether the hypervisor implements `function` for this conduit; every
/// other ID must be answered with x0 = -1 (SMCCC Unknown Function
/// Identifier), as must any call with a non-zero immediate.
pub fn implemented(function: u32, conduit: Conduit) -> bool {
    if conduit.imm() != 0 {
        return false;
    }
    let psci_or_arch = matches!(
        function,
        0x8000_0000 // SMCCC_VERSION
            | 0x8000_0001 // SMCCC_ARCH_FEATURES
            | 0x8400_0000 // PSCI_VERSION
            | 0x8400_0001 | 0xc400_0001 // CPU_SUSPEND
            | 0x8400_0002 // CPU_OFF
            | 0x8400_0003 | 0xc400_0003 // CPU_ON
            | 0x8400_0004 | 0xc400_0004 // AFFINITY_INFO
            | 0x8400_0006 // MIGRATE_INFO_TYPE
            | 0x8400_0008 | 0x8400_0009 // SYSTEM_OFF, SYSTEM_RESET
            | 0x8400_000a // PSCI_FEATURES
            | 0x8400_0012 | 0xc400_0012 // SYSTEM_RESET2
    );
    let hypercall = conduit.is_hvc()
        && matches!(
            function,
            0x8600_ff00 | 0x8600_ff01 | 0x8600_ff03 | 0xc600_0001..=0xc600_0004
        );
    psci_or_arch || hypercall
}

/// What the hypervisor must do with an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A data abort is injected.
    DataAbort,
    /// An instruction abort is injected.
    InstrAbort,
    /// The instruction is UNDEFINED for the guest.
    Undef,
    /// The access completes; a read gives `value` if it is given.
    Completes(Option<u64>),
    /// Either a data abort or completion (with `value` for a read, if
    /// given): where the outcome depends on state the stream changes
    /// (a BAR's Memory Space Enable) or on whether the CPU checks alignment
    /// on Device memory.
    AbortOr(Option<u64>),
    /// A firmware call returns; x0 = -1 if `unknown`.
    Call {
        /// The ID is not implemented: x0 must be -1.
        unknown: bool,
    },
}

/// What the guest saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// No exception; the value read, for loads.
    Done(Option<u64>),
    /// A data abort (EC 0x25).
    DataAbort,
    /// An instruction abort (EC 0x21).
    InstrAbort,
    /// An UNDEFINED instruction (EC 0).
    Undef,
    /// Another exception, with its ESR.
    Other(u64),
    /// A firmware call returned x0, and whether x4..x17 were preserved.
    Call {
        /// x0 after the call.
        x0: u64,
        /// x4..x17 unchanged.
        preserved: bool,
    },
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::DataAbort => f.write_str("data abort"),
            Expect::InstrAbort => f.write_str("instruction abort"),
            Expect::Undef => f.write_str("undef"),
            Expect::Completes(None) => f.write_str("completion"),
            Expect::Completes(Some(v)) => write!(f, "value {v:#x}"),
            Expect::AbortOr(None) => f.write_str("data abort or completion"),
            Expect::AbortOr(Some(v)) => write!(f, "data abort or value {v:#x}"),
            Expect::Call { unknown: true } => f.write_str("x0=-1, x4-x17 preserved"),
            Expect::Call { unknown: false } => f.write_str("x4-x17 preserved"),
        }
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Done(None) => f.write_str("completed"),
            Observed::Done(Some(v)) => write!(f, "value {v:#x}"),
            Observed::DataAbort => f.write_str("data abort"),
            Observed::InstrAbort => f.write_str("instruction abort"),
            Observed::Undef => f.write_str("undef"),
            Observed::Other(esr) => write!(f, "exception ESR={esr:#x}"),
            Observed::Call { x0, preserved } => write!(
                f,
                "x0={x0:#x}, x4-x17 {}",
                if *preserved { "preserved" } else { "CHANGED" }
            ),
        }
    }
}

fn value_ok(want: Option<u64>, got: Option<u64>) -> bool {
    match (want, got) {
        (Some(w), Some(g)) => w == g,
        _ => true,
    }
}

/// Whether what was seen is what was expected.
pub fn judge(expect: Expect, seen: Observed) -> bool {
    match (expect, seen) {
        (Expect::DataAbort, Observed::DataAbort)
        | (Expect::InstrAbort, Observed::InstrAbort)
        | (Expect::Undef, Observed::Undef)
        | (Expect::AbortOr(_), Observed::DataAbort) => true,
        (Expect::Completes(w) | Expect::AbortOr(w), Observed::Done(g)) => value_ok(w, g),
        (Expect::Call { unknown }, Observed::Call { x0, preserved }) => {
            preserved && (!unknown || x0 == u64::MAX)
        }
        _ => false,
    }
}

impl Pools<'_> {
    fn owns(&self, bdf: Bdf) -> bool {
        self.devices.contains(&bdf)
    }

    /// What the hypervisor must do with `action`.
    pub fn expect(&self, action: &Action) -> Expect {
        match *action {
            Action::Load { target, width } | Action::Store { target, width, .. } => {
                let read = matches!(action, Action::Load { .. });
                let aligned = target.va % width.bytes().min(8) == 0;
                match target.class {
                    Class::Hole | Class::BeyondIpa => Expect::DataAbort,
                    // No syndrome to emulate from (item 8).
                    Class::Uart | Class::Ecam if width == Width::Pair => Expect::DataAbort,
                    // Wrong width: all ones (item 10); 8 bytes in the ECAM too (item 31).
                    Class::Uart | Class::Ecam if width == Width::B8 && aligned => {
                        Expect::Completes(read.then_some(u64::MAX))
                    }
                    Class::Uart | Class::Ecam if aligned => Expect::Completes(None),
                    // Unaligned Device accesses may fault at stage 1.
                    Class::Uart | Class::Ecam => Expect::AbortOr(None),
                    // Mapped exactly while Memory Space Enable is set.
                    Class::Bar => Expect::AbortOr(None),
                }
            }
            Action::Exec { .. } => Expect::InstrAbort,
            Action::Sysreg { .. } => Expect::Undef,
            Action::Call { conduit, regs } => Expect::Call {
                unknown: !implemented(regs[0] as u32, conduit),
            },
            Action::Config {
                bdf,
                offset,
                width,
                write,
            } => {
                let bytes = width.bytes();
                let natural = bytes <= 4 && u64::from(offset) % bytes == 0;
                let value = if write.is_some() || (natural && self.owns(bdf)) {
                    None
                } else {
                    Some(width.all_ones())
                };
                if width == Width::Pair {
                    Expect::DataAbort
                } else if u64::from(offset) % bytes == 0 {
                    Expect::Completes(value)
                } else {
                    Expect::AbortOr(value)
                }
            }
            Action::Bar(_) | Action::SetWay { .. } | Action::DcVa { .. } => Expect::Completes(None),
        }
    }

    fn classes(&self) -> ([Class; 5], usize) {
        let mut out = [Class::Hole; 5];
        let mut n = 0;
        for class in Class::ALL {
            let present = match class {
                Class::Hole => !self.holes.is_empty(),
                Class::Uart => self.uart.is_some(),
                Class::Ecam => self.ecam.is_some(),
                Class::BeyondIpa => !self.beyond.is_empty(),
                Class::Bar => !self.bars.is_empty(),
            };
            if present {
                out[n] = class;
                n += 1;
            }
        }
        (out, n)
    }

    /// A data target of `width` (aligned, or unaligned one time in eight).
    fn data_target(&self, rng: &mut Rng, width: Width, store: bool) -> Option<Target> {
        let (classes, n) = self.classes();
        let class = rng.pick(&classes[..n])?;
        let align = width.bytes().min(8);
        let misalign = if rng.chance(1, 8) {
            1 + rng.below(align.max(2) - 1)
        } else {
            0
        };
        let (base, span) = match class {
            Class::Hole => {
                let r = rng.pick(self.holes)?;
                (r.base, r.size)
            }
            Class::Uart => (self.uart?, 0x1000),
            Class::Ecam => {
                let (r, _) = self.ecam?;
                (r.base, r.size)
            }
            Class::BeyondIpa => {
                let p = rng.pick(self.beyond)?;
                let off = (rng.below(0x1000 - 16) & !(align - 1)) + misalign;
                return Some(Target {
                    class,
                    va: p.va + off,
                    ipa: p.ipa + off,
                });
            }
            Class::Bar => {
                let b = rng.pick(self.bars)?;
                (b.now, b.size)
            }
        };
        let mut off = (rng.below(span.saturating_sub(16).max(1)) & !(align - 1)) + misalign;
        if class == Class::Uart && store && off < 4 {
            // UARTDR: the bytes would appear on the console. RSR/ECR instead.
            off += 4;
        }
        let va = base + off;
        Some(Target { class, va, ipa: va })
    }

    fn exec_target(&self, rng: &mut Rng) -> Option<Target> {
        let p = rng.pick(self.exec)?;
        let off = rng.below(0x1000 / 4) * 4;
        Some(Target {
            class: p.class,
            va: p.va + off,
            ipa: p.ipa + off,
        })
    }

    fn function_id(rng: &mut Rng) -> u32 {
        loop {
            let id = match rng.below(6) {
                0 => rng.next_u64() as u32,
                // PSCI, SMC32 and SMC64.
                1 => 0x8400_0000 | (rng.below(0x20) as u32) | ((rng.below(2) as u32) << 30),
                // The hypervisor's service, both ranges.
                2 => 0x8600_ff00 | rng.below(0x100) as u32,
                3 => 0xc600_0000 | rng.below(8) as u32,
                // SMCCC architecture calls.
                4 => 0x8000_0000 | rng.below(4) as u32 | ((rng.below(2) as u32) << 15),
                // Other owners, fast and yielding.
                _ => ((rng.below(64) as u32) << 24) | rng.below(0x1_0000) as u32,
            };
            if !stops_the_caller(id) {
                return id;
            }
        }
    }

    fn bdf(&self, rng: &mut Rng) -> Bdf {
        if !self.devices.is_empty() && rng.chance(3, 4) {
            if let Some(b) = rng.pick(self.devices) {
                return b;
            }
        }
        let bus_start = self.ecam.map_or(0, |(_, b)| b);
        let buses = self.ecam.map_or(1, |(r, _)| (r.size >> 20).max(1));
        let bus = if rng.chance(1, 2) {
            bus_start
        } else {
            bus_start.wrapping_add(rng.below(buses) as u8)
        };
        Bdf::new(bus, rng.below(32) as u8, rng.below(8) as u8)
    }

    fn bar_move(&self, rng: &mut Rng) -> Option<BarMove> {
        let b = rng.pick(self.bars)?;
        let window = self
            .windows
            .iter()
            .find(|w| w.contains(b.boot))
            .copied()
            .unwrap_or(Region::new(b.boot, b.size));
        let addr = match rng.below(9) {
            0 => u64::MAX,
            1 => rng.next_u64(),
            2 => b.boot,
            3 => self.ram.map_or(0x4000_0000, |r| {
                r.base + (rng.below(r.size) & !(b.size - 1))
            }),
            4 => self.uart.unwrap_or(0x0900_0000),
            // Misaligned inside the window.
            5 => window.base + (rng.below(window.size) & !0xfff) + 0x1000,
            // Onto another BAR.
            6 => rng.pick(self.bars).map_or(b.boot, |o| o.now),
            // Legal-looking: aligned inside the window.
            _ => window.base + (rng.below(window.size / b.size) * b.size),
        };
        let low = (addr as u32 & !0xf) | (rng.next_u64() as u32 & 0xf);
        let low = if rng.chance(3, 4) {
            addr as u32 & !0xf
        } else {
            low
        };
        Some(BarMove {
            device: b.device,
            bar: b.bar,
            mse: rng.chance(1, 2),
            low,
            high: b.is_64.then_some((addr >> 32) as u32),
        })
    }

    /// The next action. Memory actions need their pools; kinds whose pools
    /// are empty are drawn again.
    pub fn generate(&self, rng: &mut Rng) -> Action {
        loop {
            if let Some(a) = self.try_generate(rng) {
                return a;
            }
        }
    }

    fn try_generate(&self, rng: &mut Rng) -> Option<Action> {
        let kind = match rng.below(100) {
            0..=21 => Kind::Load,
            22..=41 => Kind::Store,
            42..=49 => Kind::Exec,
            50..=59 => Kind::Sysreg,
            60..=67 => Kind::Hvc,
            68..=71 => Kind::Smc,
            72..=83 => Kind::Config,
            84..=88 => Kind::Bar,
            89..=93 => Kind::SetWay,
            _ => Kind::DcVa,
        };
        Some(match kind {
            Kind::Load | Kind::Store => {
                let width = rng.pick(&Width::ALL)?;
                let store = kind == Kind::Store;
                let target = self.data_target(rng, width, store)?;
                if store {
                    Action::Store {
                        target,
                        width,
                        value: rng.next_u64(),
                    }
                } else {
                    Action::Load { target, width }
                }
            }
            Kind::Exec => Action::Exec {
                target: self.exec_target(rng)?,
            },
            Kind::Sysreg => {
                if self.sysregs == 0 {
                    return None;
                }
                Action::Sysreg {
                    index: rng.below(self.sysregs as u64) as usize,
                }
            }
            Kind::Hvc | Kind::Smc => {
                let conduit = if kind == Kind::Hvc {
                    rng.pick(&[
                        Conduit::Hvc0,
                        Conduit::Hvc0,
                        Conduit::Hvc1,
                        Conduit::HvcFfff,
                    ])?
                } else {
                    rng.pick(&[Conduit::Smc0, Conduit::Smc0, Conduit::Smc1])?
                };
                let mut regs = [0u64; 8];
                for r in regs.iter_mut().skip(1) {
                    *r = rng.next_u64();
                }
                let id = Self::function_id(rng);
                // Sometimes junk in the upper half of x0, which SMCCC ignores.
                let upper = if rng.chance(1, 4) {
                    rng.next_u64() & !0xffff_ffff
                } else {
                    0
                };
                regs[0] = upper | u64::from(id);
                Action::Call { conduit, regs }
            }
            Kind::Config => {
                self.ecam?;
                let width = rng.pick(&[Width::B1, Width::B2, Width::B4, Width::B4, Width::B8])?;
                let offset = if rng.chance(1, 8) {
                    0x1000 - width.bytes() as u16 / 2
                } else if rng.chance(1, 2) {
                    rng.below(0x40) as u16
                } else {
                    rng.below(0x1000) as u16
                };
                let offset = if rng.chance(7, 8) {
                    offset & !(width.bytes() as u16 - 1)
                } else {
                    offset
                };
                let offset = offset.min(0x1000 - width.bytes() as u16 / 2);
                Action::Config {
                    bdf: self.bdf(rng),
                    offset,
                    width,
                    write: rng.chance(1, 2).then(|| rng.next_u64()),
                }
            }
            Kind::Bar => Action::Bar(self.bar_move(rng)?),
            Kind::SetWay => Action::SetWay {
                op: rng.pick(&[SetWayOp::Isw, SetWayOp::Csw, SetWayOp::Cisw])?,
                operand: rng.next_u64(),
            },
            Kind::DcVa => {
                let target = self.data_target(rng, Width::B1, false)?;
                Action::DcVa {
                    op: rng.pick(&[DcOp::Civac, DcOp::Cvac, DcOp::Ivac, DcOp::Cvau])?,
                    target,
                }
            }
        })
    }
}

/// Counts of what the stream did and saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Actions performed.
    pub actions: u64,
    /// Data aborts seen.
    pub data_aborts: u64,
    /// Instruction aborts seen.
    pub instr_aborts: u64,
    /// UNDEFINED instructions seen.
    pub undefs: u64,
    /// Actions whose outcome was not the expected one.
    pub failures: u64,
    /// Actions by [`Kind`].
    pub by_kind: [u64; Kind::ALL.len()],
    /// Memory actions by [`Class`].
    pub by_class: [u64; Class::ALL.len()],
}

impl Tally {
    /// Records one action and what was seen; returns whether it was expected.
    pub fn record(&mut self, action: &Action, expect: Expect, seen: Observed) -> bool {
        self.actions += 1;
        if let Some(i) = Kind::ALL.iter().position(|k| *k == action.kind()) {
            self.by_kind[i] += 1;
        }
        if let Some(class) = action.class() {
            if let Some(i) = Class::ALL.iter().position(|c| *c == class) {
                self.by_class[i] += 1;
            }
        }
        match seen {
            Observed::DataAbort => self.data_aborts += 1,
            Observed::InstrAbort => self.instr_aborts += 1,
            Observed::Undef => self.undefs += 1,
            _ => {}
        }
        let ok = judge(expect, seen);
        if !ok {
            self.failures += 1;
        }
        ok
    }

    /// Data and instruction aborts.
    pub fn aborts(&self) -> u64 {
        self.data_aborts + self.instr_aborts
    }
}

/// The canary's word at `index` for `seed`.
pub fn canary_word(seed: u64, index: usize) -> u64 {
    let mut r = Rng::new(seed ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    r.next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools<'a>(holes: &'a [Region], beyond: &'a [Page], exec: &'a [Page]) -> Pools<'a> {
        Pools {
            holes,
            uart: Some(0x0900_0000),
            ecam: Some((Region::new(0x40_1000_0000, 0x1000_0000), 0)),
            beyond,
            bars: &[],
            devices: &[],
            windows: &[],
            exec,
            sysregs: 7,
            ram: Some(Region::new(0x4000_0000, 0x1000_0000)),
        }
    }

    const HOLES: [Region; 1] = [Region::new(0, 0x0800_0000)];
    const BEYOND: [Page; 1] = [Page {
        class: Class::BeyondIpa,
        va: 0xf2_0000_0000,
        ipa: 1 << 45,
    }];
    const EXEC: [Page; 1] = [Page {
        class: Class::Uart,
        va: 0xf3_0000_0000,
        ipa: 0x0900_0000,
    }];

    #[test]
    fn rng_is_reproducible_and_spread() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut c = Rng::new(8);
        assert_ne!(Rng::new(7).next_u64(), c.next_u64());
        let mut hits = [0u32; 10];
        for _ in 0..10_000 {
            hits[c.below(10) as usize] += 1;
        }
        assert!(hits.iter().all(|&h| (800..1200).contains(&h)), "{hits:?}");
        assert_eq!(c.below(0), 0);
    }

    #[test]
    fn same_seed_same_stream() {
        let p = pools(&HOLES, &BEYOND, &EXEC);
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        for _ in 0..1000 {
            assert_eq!(p.generate(&mut a), p.generate(&mut b));
        }
    }

    #[test]
    fn never_stops_the_caller_and_stays_in_pools() {
        let p = pools(&HOLES, &BEYOND, &EXEC);
        let mut rng = Rng::new(1);
        let mut kinds = [0u32; Kind::ALL.len()];
        for _ in 0..50_000 {
            let a = p.generate(&mut rng);
            kinds[Kind::ALL.iter().position(|k| *k == a.kind()).unwrap()] += 1;
            match a {
                Action::Call { regs, .. } => assert!(!stops_the_caller(regs[0] as u32)),
                Action::Load { target, width } | Action::Store { target, width, .. } => {
                    let end = target.va + width.bytes();
                    match target.class {
                        Class::Hole => assert!(end <= 0x0800_0000),
                        Class::Uart => assert!(target.va >= 0x0900_0000 && end <= 0x0900_1000),
                        Class::Ecam => assert!(target.va >= 0x40_1000_0000),
                        Class::BeyondIpa => {
                            assert!(
                                target.ipa >= 1 << 40
                                    && end - target.va + target.ipa <= (1 << 45) + 0x1000
                            )
                        }
                        Class::Bar => unreachable!("no BARs in these pools"),
                    }
                    if let Action::Store { target, .. } = a {
                        if target.class == Class::Uart {
                            assert!(target.va - 0x0900_0000 >= 4, "store to UARTDR");
                        }
                    }
                }
                Action::Exec { target } => assert_eq!(target.va & 3, 0),
                Action::Sysreg { index } => assert!(index < 7),
                Action::Bar(_) => unreachable!("no BARs"),
                Action::Config { offset, width, .. } => {
                    assert!(u64::from(offset) + width.bytes() / 2 <= 0x1000)
                }
                _ => {}
            }
        }
        for (k, n) in Kind::ALL.iter().zip(kinds) {
            if *k != Kind::Bar {
                assert!(n > 500, "{k:?}: {n}");
            }
        }
    }

    #[test]
    fn dangerous_psci_ids() {
        for id in [
            0x8400_0008,
            0x8400_0009,
            0x8400_0012,
            0xc400_0012,
            0x8400_0002,
            0xc400_0001,
        ] {
            assert!(stops_the_caller(id), "{id:#x}");
        }
        for id in [0x8400_0000, 0xc400_0003, 0x8600_ff01, 1337] {
            assert!(!stops_the_caller(id), "{id:#x}");
        }
    }

    #[test]
    fn unknown_ids_and_immediates() {
        assert!(!implemented(1337, Conduit::Hvc0));
        assert!(implemented(0x8400_0000, Conduit::Smc0));
        assert!(!implemented(0x8400_0000, Conduit::Hvc1));
        assert!(implemented(0xc600_0003, Conduit::Hvc0));
        assert!(!implemented(0xc600_0003, Conduit::Smc0));
        assert!(!implemented(0xc600_0005, Conduit::Hvc0));
        assert!(!implemented(0x8400_0005, Conduit::Hvc0));
    }

    #[test]
    fn expectations() {
        let p = pools(&HOLES, &BEYOND, &EXEC);
        let hole = Target {
            class: Class::Hole,
            va: 0x1000,
            ipa: 0x1000,
        };
        let uart = Target {
            class: Class::Uart,
            va: 0x0900_0018,
            ipa: 0x0900_0018,
        };
        let e = p.expect(&Action::Load {
            target: hole,
            width: Width::B4,
        });
        assert!(judge(e, Observed::DataAbort));
        assert!(!judge(e, Observed::Done(Some(0))));
        let e = p.expect(&Action::Store {
            target: uart,
            width: Width::Pair,
            value: 0,
        });
        assert_eq!(e, Expect::DataAbort);
        let e = p.expect(&Action::Load {
            target: uart,
            width: Width::B8,
        });
        assert!(judge(e, Observed::Done(Some(u64::MAX))));
        assert!(!judge(e, Observed::Done(Some(0x90))));
        let e = p.expect(&Action::Config {
            bdf: Bdf::new(0, 3, 0),
            offset: 0,
            width: Width::B4,
            write: None,
        });
        assert!(judge(e, Observed::Done(Some(0xffff_ffff))));
        assert!(!judge(e, Observed::Done(Some(0x1110_1af4))));
        let e = p.expect(&Action::Config {
            bdf: Bdf::new(0, 0, 0),
            offset: 2,
            width: Width::B4,
            write: None,
        });
        assert!(judge(e, Observed::DataAbort));
        assert!(judge(e, Observed::Done(Some(0xffff_ffff))));
        let call = |id: u64, conduit| Action::Call {
            conduit,
            regs: [id, 0, 0, 0, 0, 0, 0, 0],
        };
        let e = p.expect(&call(1337, Conduit::Smc0));
        assert!(judge(
            e,
            Observed::Call {
                x0: u64::MAX,
                preserved: true
            }
        ));
        assert!(!judge(
            e,
            Observed::Call {
                x0: 0xffff_ffff,
                preserved: true
            }
        ));
        let e = p.expect(&call(0x8400_0000, Conduit::Hvc0));
        assert!(judge(
            e,
            Observed::Call {
                x0: 0x10001,
                preserved: true
            }
        ));
        assert!(!judge(
            e,
            Observed::Call {
                x0: 0x10001,
                preserved: false
            }
        ));
        assert_eq!(p.expect(&Action::Sysreg { index: 0 }), Expect::Undef);
    }

    #[test]
    fn tally_counts() {
        let mut t = Tally::default();
        let a = Action::Sysreg { index: 0 };
        assert!(t.record(&a, Expect::Undef, Observed::Undef));
        assert!(!t.record(&a, Expect::Undef, Observed::Done(None)));
        assert_eq!((t.actions, t.undefs, t.failures), (2, 1, 1));
        assert_eq!(t.by_kind[3], 2);
    }

    #[test]
    fn canary_differs_by_seed_and_index() {
        assert_ne!(canary_word(1, 0), canary_word(1, 1));
        assert_ne!(canary_word(1, 0), canary_word(2, 0));
        assert_eq!(canary_word(3, 9), canary_word(3, 9));
    }
}
