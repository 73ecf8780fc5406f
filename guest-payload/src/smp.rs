//! The pure parts of the `smp` and `smp-bar-move` tests: the CPU_ON context
//! IDs, the expected answers and their verdict lines, the choice of bad
//! CPU_ON arguments, and the checker for the words one CPU writes into a BAR
//! while another moves it.
//!
//! PSCI references are to Arm DEN 0022 (PSCI 1.1): CPU_ON (5.6), AFFINITY_INFO
//! (5.7) and the return codes (5.2.2).

use core::fmt;

use crate::platform::{CpuList, Region};
use crate::smccc::{ret, Expect, Value};

/// CPUs the tests can drive: the device tree's list is cut to this.
pub const MAX_CPUS: usize = CpuList::CAPACITY;

/// PSCI return code ON_PENDING.
pub const ON_PENDING: i64 = -5;
/// PSCI return code INVALID_ADDRESS.
pub const INVALID_ADDRESS: i64 = -9;

/// AFFINITY_INFO answers (DEN 0022, 5.7.2).
pub mod affinity {
    /// The CPU is on.
    pub const ON: i64 = 0;
    /// The CPU is off.
    pub const OFF: i64 = 1;
    /// CPU_ON was accepted and the CPU is not running yet.
    pub const ON_PENDING: i64 = 2;
}

/// Why vCPU 0 started a secondary, carried in the CPU_ON context ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// First start: report, join the shared-counter test, then CPU_OFF.
    Count = 1,
    /// Second start after CPU_OFF: report, then CPU_OFF again.
    Restart = 2,
    /// Power the machine off with SYSTEM_OFF (`smp.off=secondary`).
    SystemOff = 3,
    /// Write numbered words into a BAR while vCPU 0 moves it.
    BarWriter = 4,
}

impl Purpose {
    fn from_raw(raw: u64) -> Option<Self> {
        Some(match raw {
            1 => Purpose::Count,
            2 => Purpose::Restart,
            3 => Purpose::SystemOff,
            4 => Purpose::BarWriter,
            _ => return None,
        })
    }

    /// The name printed in reports.
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Count => "count",
            Purpose::Restart => "restart",
            Purpose::SystemOff => "system-off",
            Purpose::BarWriter => "bar-writer",
        }
    }
}

/// The CPU_ON context ID: what the started CPU finds in x0. A magic in bits
/// 63:32, the purpose in bits 15:8 and the CPU's position in the device
/// tree's list in bits 7:0 (the entry code uses the low byte to pick the
/// CPU's stacks before any memory is read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// Position in the device tree's `/cpus` list.
    pub slot: usize,
    /// Why it was started.
    pub purpose: Purpose,
}

/// Bits 63:32 of every context ID.
pub const CONTEXT_MAGIC: u64 = 0x534d_5030; // "SMP0"

/// Why a context ID was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextError {
    /// The magic is wrong: x0 was not the value vCPU 0 passed.
    Magic,
    /// Bits other than magic, purpose and slot are set.
    Reserved,
    /// No such purpose.
    Purpose,
    /// The slot is beyond [`MAX_CPUS`].
    Slot,
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContextError::Magic => "wrong magic",
            ContextError::Reserved => "reserved bits set",
            ContextError::Purpose => "unknown purpose",
            ContextError::Slot => "slot out of range",
        })
    }
}

impl Context {
    /// The 64-bit context ID.
    pub fn encode(self) -> u64 {
        (CONTEXT_MAGIC << 32) | ((self.purpose as u64) << 8) | self.slot as u64
    }

    /// Reads a context ID back.
    pub fn decode(raw: u64) -> Result<Self, ContextError> {
        if raw >> 32 != CONTEXT_MAGIC {
            return Err(ContextError::Magic);
        }
        if raw & 0xffff_0000 != 0 {
            return Err(ContextError::Reserved);
        }
        let purpose = Purpose::from_raw((raw >> 8) & 0xff).ok_or(ContextError::Purpose)?;
        let slot = (raw & 0xff) as usize;
        if slot >= MAX_CPUS {
            return Err(ContextError::Slot);
        }
        Ok(Context { slot, purpose })
    }

    /// What a started CPU concludes from its x0 and its own MPIDR: the
    /// context must decode, and name the slot the device tree gives the
    /// MPIDR it reads.
    pub fn check(raw: u64, mpidr_affinity: u64, cpus: &CpuList) -> Result<Self, StartError> {
        let context = Context::decode(raw).map_err(StartError::Context)?;
        match cpus.index_of(mpidr_affinity) {
            Some(slot) if slot == context.slot => Ok(context),
            Some(slot) => Err(StartError::WrongSlot {
                context: context.slot,
                mpidr: slot,
            }),
            None => Err(StartError::UnlistedMpidr),
        }
    }
}

/// Why a started CPU refused to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// x0 is not a context ID.
    Context(ContextError),
    /// The context names another CPU than the one running.
    WrongSlot {
        /// The slot in the context.
        context: usize,
        /// The slot of the MPIDR read.
        mpidr: usize,
    },
    /// The MPIDR read is not in the device tree.
    UnlistedMpidr,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Context(e) => write!(f, "bad context: {e}"),
            StartError::WrongSlot { context, mpidr } => {
                write!(f, "context names cpu {context}, MPIDR says cpu {mpidr}")
            }
            StartError::UnlistedMpidr => f.write_str("MPIDR not in the device tree"),
        }
    }
}

/// An MPIDR affinity that no CPU of the list has: one past the highest
/// Aff0 of the first CPU's cluster, or Aff0 0 of the next Aff1 if Aff0 is
/// full.
pub fn unlisted_mpidr(cpus: &CpuList) -> u64 {
    let first = cpus.as_slice().first().copied().unwrap_or(0);
    let cluster = first & !0xff;
    let highest = cpus
        .as_slice()
        .iter()
        .filter(|&&m| m & !0xff == cluster)
        .map(|&m| m & 0xff)
        .max()
        .unwrap_or(0);
    let candidate = if highest < 0xff {
        cluster | (highest + 1)
    } else {
        cluster + 0x100
    };
    debug_assert!(cpus.index_of(candidate).is_none());
    candidate
}

/// A 4-byte-aligned entry address outside every RAM region: the end of the
/// highest region, or, if something else is RAM there (or it wraps), below
/// the lowest.
pub fn entry_outside_ram(ram: &[Region]) -> Option<u64> {
    let contains = |a: u64| ram.iter().any(|r| r.contains(a));
    let highest = ram.iter().map(|r| r.end()).max()?;
    let lowest = ram.iter().map(|r| r.base).min()?;
    [
        (highest != u64::MAX).then_some(highest),
        lowest.checked_sub(0x1000),
    ]
    .into_iter()
    .flatten()
    .map(|a| a & !3)
    .find(|&a| !contains(a))
}

/// Whether the checks run under the project's hypervisor or natively on
/// QEMU's own PSCI (which departs from DEN 0022 in two places, below).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// The project's hypervisor answers PSCI.
    Hypervisor,
    /// QEMU's built-in PSCI (the guest started at EL1, no hypervisor).
    Qemu,
}

/// What a check expects, or that it is skipped and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Make the call and judge the answer.
    Check(Expect),
    /// Do not make the call.
    Skip(&'static str),
}

/// CPU_ON with an entry address outside RAM. DEN 0022 5.6.2: INVALID_ADDRESS.
/// QEMU's PSCI does not check the address and would start the CPU there,
/// leaving it running wild, so natively the call is not made.
pub fn plan_entry_outside_ram(fw: Firmware) -> Plan {
    match fw {
        Firmware::Hypervisor => Plan::Check(Expect::Eq(INVALID_ADDRESS)),
        Firmware::Qemu => Plan::Skip("QEMU does not check the entry address"),
    }
}

/// CPU_ON with an entry address that is not 4-byte aligned: INVALID_ADDRESS
/// (DEN 0022 5.6.2). QEMU answers INVALID_PARAMETERS instead.
pub fn plan_entry_unaligned(fw: Firmware) -> Expect {
    match fw {
        Firmware::Hypervisor => Expect::Eq(INVALID_ADDRESS),
        Firmware::Qemu => Expect::Either(INVALID_ADDRESS, ret::INVALID_PARAMETERS),
    }
}

/// How a verdict's numbers are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A PSCI return code.
    Status,
    /// An AFFINITY_INFO state.
    Affinity,
    /// A count.
    Count,
}

/// One verdict line: `GUEST smp <check> cpu=<n> -> <got> want <expect> ok`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict<'a> {
    /// The check's name (no spaces).
    pub check: &'a str,
    /// The CPU it is about (its slot), if any.
    pub cpu: Option<usize>,
    /// How to print the numbers.
    pub kind: Kind,
    /// What was seen; `None` when the call could not be made (it trapped,
    /// or a wait ran out).
    pub got: Option<i64>,
    /// What is accepted.
    pub want: Expect,
}

impl Verdict<'_> {
    /// Whether the check held.
    pub fn ok(&self) -> bool {
        self.got.is_some_and(|g| self.want.accepts(g))
    }
}

struct Shown(Kind, i64);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Kind::Status => write!(f, "{}", Value(self.1)),
            Kind::Affinity => {
                let name = match self.1 {
                    affinity::ON => "ON",
                    affinity::OFF => "OFF",
                    affinity::ON_PENDING => "ON_PENDING",
                    _ => return write!(f, "{}", Value(self.1)),
                };
                write!(f, "{}({name})", self.1)
            }
            Kind::Count => write!(f, "{}", self.1),
        }
    }
}

impl fmt::Display for Verdict<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GUEST smp {}", self.check)?;
        if let Some(cpu) = self.cpu {
            write!(f, " cpu={cpu}")?;
        }
        match self.got {
            Some(got) => write!(f, " -> {}", Shown(self.kind, got))?,
            None => f.write_str(" -> none")?,
        }
        f.write_str(" want ")?;
        match self.want {
            Expect::Eq(v) => write!(f, "{}", Shown(self.kind, v))?,
            Expect::Either(a, b) => write!(f, "{}|{}", Shown(self.kind, a), Shown(self.kind, b))?,
            Expect::AtLeast(v) => write!(f, ">={}", Shown(self.kind, v))?,
            Expect::Supported => f.write_str(">=0")?,
        }
        f.write_str(if self.ok() { " ok" } else { " FAIL" })
    }
}

/// The shared-counter test: how many increments each CPU makes with each
/// method, and what the totals must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterPlan {
    /// CPUs taking part (vCPU 0 included).
    pub cpus: u64,
    /// Increments per CPU and method.
    pub per_cpu: u64,
    /// Whether LDADD and CAS are used (ID_AA64ISAR0_EL1.Atomic >= 2).
    pub lse: bool,
}

/// Increments per CPU and method.
pub const INCREMENTS: u64 = 20_000;

impl CounterPlan {
    /// Methods used: LDXR/STXR, and with LSE also LDADD and CAS.
    pub fn methods(&self) -> u64 {
        if self.lse {
            3
        } else {
            1
        }
    }

    /// The total every single-method counter must reach.
    pub fn per_method_total(&self) -> u64 {
        self.cpus * self.per_cpu
    }

    /// The total of the counter every method increments.
    pub fn mixed_total(&self) -> u64 {
        self.cpus * self.per_cpu * self.methods()
    }
}

/// Whether ID_AA64ISAR0_EL1 says the LSE atomics (LDADD, CAS, ...) exist:
/// the Atomic field, bits 23:20, is 0b0010 or more.
pub fn has_lse(id_aa64isar0: u64) -> bool {
    (id_aa64isar0 >> 20) & 0xf >= 2
}

// ---- smp-bar-move -------------------------------------------------------

/// Which BAR address a write went through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The address the BAR had when the writer started.
    Old = 1,
    /// The address vCPU 0 moved it to.
    New = 2,
}

/// The word written for sequence number `seq` through `via`: the sequence
/// number and the address used are both in it, so the backing file shows
/// which mapping each word came through.
pub fn word(seq: u64, via: Via) -> u64 {
    0x5eb0_0000_0000_0000 | ((via as u64) << 32) | (seq & 0xffff_ffff)
}

/// What the writer (vCPU 1) records for one numbered word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteRecord {
    /// The address through which the word landed.
    pub via: Via,
    /// Whether vCPU 1 had seen vCPU 0's "move complete" flag before it
    /// issued the write (the write that finally landed).
    pub saw_moved: bool,
    /// Whether the first attempt faulted and this is the retry.
    pub retried: bool,
}

/// What the sequence says, when it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoveSummary {
    /// Words written.
    pub writes: usize,
    /// The first word that went through the new address.
    pub first_new: usize,
    /// The first word written after vCPU 1 had seen the move complete.
    pub first_moved: usize,
    /// Writes that faulted and were retried.
    pub retries: usize,
}

/// Why the sequence does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveProblem {
    /// Nothing was written.
    Empty,
    /// No write went through the old address: the move came too early.
    NoOldWrite,
    /// No write went through the new address: the move never happened.
    NoNewWrite,
    /// The writer never saw the move complete.
    NeverSawMove,
    /// A word went through the old address after one had gone through the
    /// new one.
    BackToOld(usize),
    /// A write through the old address succeeded although the writer had
    /// already seen the move complete.
    OldAfterMove(usize),
    /// A retried write whose first attempt was not through the old address.
    BadRetry(usize),
    /// Word `seq` does not read back as written (lost, duplicated through
    /// the other address, or overwritten).
    Landed {
        /// Sequence number.
        seq: usize,
        /// What was read back.
        found: u64,
    },
    /// A word beyond the last one written is not zero: a stray write.
    Stray {
        /// Sequence number.
        seq: usize,
        /// What was read back.
        found: u64,
    },
}

impl fmt::Display for MoveProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MoveProblem::Empty => f.write_str("nothing was written"),
            MoveProblem::NoOldWrite => f.write_str("no word went through the old address"),
            MoveProblem::NoNewWrite => f.write_str("no word went through the new address"),
            MoveProblem::NeverSawMove => f.write_str("the writer never saw the move complete"),
            MoveProblem::BackToOld(s) => write!(f, "word {s} went back to the old address"),
            MoveProblem::OldAfterMove(s) => write!(
                f,
                "word {s} landed through the old address after the move had completed"
            ),
            MoveProblem::BadRetry(s) => write!(f, "word {s} was retried through the old address"),
            MoveProblem::Landed { seq, found } => {
                write!(f, "word {seq} reads back {found:#x}")
            }
            MoveProblem::Stray { seq, found } => {
                write!(f, "word {seq}, never written, reads {found:#x}")
            }
        }
    }
}

/// Checks the writer's records against what the BAR holds afterwards
/// (`read(seq)`, through the new mapping, for `0..words_checked`).
///
/// The rule: every word lands exactly once, through the old address until
/// the move and through the new one after, never back. vCPU 0 declares the
/// move complete only after the config write that turns memory decoding off
/// has returned; by then the old address must be unreachable. The writer
/// samples that flag before each write, so a write through the old address
/// that succeeded after the writer had seen the flag is a violation. The one
/// write that was issued just before the writer saw the flag (sampled
/// "not moved", performed while vCPU 0 finished) cannot be ordered against
/// the move from the guest and is allowed to have landed through either.
pub fn check_moves(
    records: &[WriteRecord],
    words_checked: usize,
    mut read: impl FnMut(usize) -> u64,
) -> Result<MoveSummary, MoveProblem> {
    if records.is_empty() {
        return Err(MoveProblem::Empty);
    }
    let mut first_new = None;
    let mut first_moved = None;
    let mut retries = 0;
    for (seq, r) in records.iter().enumerate() {
        if r.saw_moved && first_moved.is_none() {
            first_moved = Some(seq);
        }
        match r.via {
            Via::New => {
                first_new.get_or_insert(seq);
            }
            Via::Old => {
                if first_new.is_some() {
                    return Err(MoveProblem::BackToOld(seq));
                }
                if r.saw_moved {
                    return Err(MoveProblem::OldAfterMove(seq));
                }
                if r.retried {
                    return Err(MoveProblem::BadRetry(seq));
                }
            }
        }
        if r.retried {
            retries += 1;
        }
    }
    let first_new = first_new.ok_or(MoveProblem::NoNewWrite)?;
    if first_new == 0 {
        return Err(MoveProblem::NoOldWrite);
    }
    let first_moved = first_moved.ok_or(MoveProblem::NeverSawMove)?;
    for (seq, r) in records.iter().enumerate() {
        let found = read(seq);
        if found != word(seq as u64, r.via) {
            return Err(MoveProblem::Landed { seq, found });
        }
    }
    for seq in records.len()..words_checked {
        let found = read(seq);
        if found != 0 {
            return Err(MoveProblem::Stray { seq, found });
        }
    }
    Ok(MoveSummary {
        writes: records.len(),
        first_new,
        first_moved,
        retries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(n: u64) -> CpuList {
        let list: Vec<u64> = (0..n).collect();
        CpuList::from_mpidrs(&list)
    }

    #[test]
    fn contexts_round_trip_and_reject_junk() {
        for slot in 0..MAX_CPUS {
            for purpose in [
                Purpose::Count,
                Purpose::Restart,
                Purpose::SystemOff,
                Purpose::BarWriter,
            ] {
                let c = Context { slot, purpose };
                assert_eq!(Context::decode(c.encode()), Ok(c));
                assert_eq!(
                    c.encode() & 0xff,
                    slot as u64,
                    "the entry code reads the slot"
                );
            }
        }
        let good = Context {
            slot: 1,
            purpose: Purpose::Count,
        }
        .encode();
        assert_eq!(Context::decode(0), Err(ContextError::Magic));
        assert_eq!(Context::decode(good ^ (1 << 40)), Err(ContextError::Magic));
        assert_eq!(Context::decode(good | 1 << 20), Err(ContextError::Reserved));
        assert_eq!(
            Context::decode(good & !0xff00 | 0x0900),
            Err(ContextError::Purpose)
        );
        assert_eq!(Context::decode(good | 0x3f), Err(ContextError::Slot));
    }

    #[test]
    fn a_started_cpu_checks_its_context_against_its_mpidr() {
        let list = cpus(4);
        let c = Context {
            slot: 2,
            purpose: Purpose::Restart,
        };
        assert_eq!(Context::check(c.encode(), 2, &list), Ok(c));
        assert_eq!(
            Context::check(c.encode(), 3, &list),
            Err(StartError::WrongSlot {
                context: 2,
                mpidr: 3
            })
        );
        assert_eq!(
            Context::check(c.encode(), 9, &list),
            Err(StartError::UnlistedMpidr)
        );
        assert_eq!(
            Context::check(7, 2, &list),
            Err(StartError::Context(ContextError::Magic))
        );
    }

    #[test]
    fn bad_cpu_on_arguments() {
        assert_eq!(unlisted_mpidr(&cpus(2)), 2);
        assert_eq!(unlisted_mpidr(&cpus(4)), 4);
        let sparse = CpuList::from_mpidrs(&[0x100, 0x101, 0x200]);
        assert_eq!(unlisted_mpidr(&sparse), 0x102);
        let full: Vec<u64> = (0..8).map(|i| 0xf8 + i).collect();
        assert_eq!(unlisted_mpidr(&CpuList::from_mpidrs(&full)), 0x100);

        let ram = [Region::new(0x4000_0000, 0x1000_0000)];
        assert_eq!(entry_outside_ram(&ram), Some(0x5000_0000));
        let two = [
            Region::new(0x4000_0000, 0x1000_0000),
            Region::new(0x5000_0000, 0x1000),
        ];
        assert_eq!(entry_outside_ram(&two), Some(0x5000_1000));
        let top = [Region::new(0x4000_0000, u64::MAX - 0x4000_0000)];
        assert_eq!(entry_outside_ram(&top), Some(0x3fff_f000));
        assert_eq!(entry_outside_ram(&[]), None);
        for r in [&ram[..], &two[..], &top[..]] {
            let e = entry_outside_ram(r).unwrap();
            assert_eq!(e & 3, 0);
            assert!(!r.iter().any(|x| x.contains(e)));
        }
    }

    #[test]
    fn expectations_under_the_hypervisor_and_on_qemu() {
        assert_eq!(
            plan_entry_outside_ram(Firmware::Hypervisor),
            Plan::Check(Expect::Eq(INVALID_ADDRESS))
        );
        assert!(matches!(
            plan_entry_outside_ram(Firmware::Qemu),
            Plan::Skip(_)
        ));
        let hv = plan_entry_unaligned(Firmware::Hypervisor);
        assert!(hv.accepts(INVALID_ADDRESS) && !hv.accepts(ret::INVALID_PARAMETERS));
        let qemu = plan_entry_unaligned(Firmware::Qemu);
        assert!(qemu.accepts(ret::INVALID_PARAMETERS) && !qemu.accepts(ret::SUCCESS));
    }

    #[test]
    fn verdict_lines() {
        let v = Verdict {
            check: "cpu-on-running",
            cpu: Some(1),
            kind: Kind::Status,
            got: Some(ret::ALREADY_ON),
            want: Expect::Eq(ret::ALREADY_ON),
        };
        assert!(v.ok());
        assert_eq!(
            v.to_string(),
            "GUEST smp cpu-on-running cpu=1 -> -4(ALREADY_ON) want -4(ALREADY_ON) ok"
        );
        let v = Verdict {
            check: "affinity-after-cpu-off",
            cpu: Some(3),
            kind: Kind::Affinity,
            got: Some(affinity::ON),
            want: Expect::Eq(affinity::OFF),
        };
        assert!(!v.ok());
        assert_eq!(
            v.to_string(),
            "GUEST smp affinity-after-cpu-off cpu=3 -> 0(ON) want 1(OFF) FAIL"
        );
        let v = Verdict {
            check: "counter-ldadd",
            cpu: None,
            kind: Kind::Count,
            got: Some(80_000),
            want: Expect::Eq(80_000),
        };
        assert_eq!(
            v.to_string(),
            "GUEST smp counter-ldadd -> 80000 want 80000 ok"
        );
        let v = Verdict { got: None, ..v };
        assert!(!v.ok());
        assert_eq!(
            v.to_string(),
            "GUEST smp counter-ldadd -> none want 80000 FAIL"
        );
        let v = Verdict {
            check: "cpu-on-unaligned-entry",
            cpu: Some(1),
            kind: Kind::Status,
            got: Some(ret::INVALID_PARAMETERS),
            want: plan_entry_unaligned(Firmware::Qemu),
        };
        assert_eq!(
            v.to_string(),
            "GUEST smp cpu-on-unaligned-entry cpu=1 -> -2(INVALID_PARAMETERS) want -9(INVALID_ADDRESS)|-2(INVALID_PARAMETERS) ok"
        );
    }

    #[test]
    fn counter_totals() {
        let plan = CounterPlan {
            cpus: 4,
            per_cpu: 1000,
            lse: true,
        };
        assert_eq!(plan.per_method_total(), 4000);
        assert_eq!(plan.mixed_total(), 12_000);
        let plan = CounterPlan { lse: false, ..plan };
        assert_eq!(plan.mixed_total(), 4000);
        assert!(has_lse(0x0000_0000_0021_0000));
        assert!(has_lse(0x0000_0000_0030_0000));
        assert!(!has_lse(0x0000_0000_0001_0000));
        assert!(!has_lse(0x0000_0000_000f_ffff));
    }

    const OLD: WriteRecord = WriteRecord {
        via: Via::Old,
        saw_moved: false,
        retried: false,
    };
    const NEW: WriteRecord = WriteRecord {
        via: Via::New,
        saw_moved: true,
        retried: false,
    };
    const RETRY: WriteRecord = WriteRecord {
        via: Via::New,
        saw_moved: false,
        retried: true,
    };

    fn memory(records: &[WriteRecord], extra: usize) -> Vec<u64> {
        let mut m: Vec<u64> = records
            .iter()
            .enumerate()
            .map(|(s, r)| word(s as u64, r.via))
            .collect();
        m.resize(records.len() + extra, 0);
        m
    }

    fn run(records: &[WriteRecord], mem: &[u64]) -> Result<MoveSummary, MoveProblem> {
        check_moves(records, mem.len(), |s| mem[s])
    }

    #[test]
    fn a_clean_move_passes() {
        let recs = [OLD, OLD, OLD, RETRY, NEW, NEW];
        let mem = memory(&recs, 4);
        assert_eq!(
            run(&recs, &mem),
            Ok(MoveSummary {
                writes: 6,
                first_new: 3,
                first_moved: 4,
                retries: 1
            })
        );
        // The write in flight: sampled "not moved", landed through the new
        // address without faulting (vCPU 0 finished between sample and write).
        let in_flight = WriteRecord {
            via: Via::New,
            saw_moved: false,
            retried: false,
        };
        let recs = [OLD, OLD, in_flight, NEW];
        assert!(run(&recs, &memory(&recs, 0)).is_ok());
    }

    #[test]
    fn broken_moves_are_caught() {
        // The old mapping still worked after the move was complete.
        let stale = WriteRecord {
            via: Via::Old,
            saw_moved: true,
            retried: false,
        };
        let recs = [OLD, OLD, stale, NEW];
        assert_eq!(
            run(&recs, &memory(&recs, 0)),
            Err(MoveProblem::OldAfterMove(2))
        );
        let recs = [OLD, NEW, OLD, NEW];
        assert_eq!(
            run(&recs, &memory(&recs, 0)),
            Err(MoveProblem::BackToOld(2))
        );
        assert_eq!(run(&[OLD, OLD], &[0; 2]), Err(MoveProblem::NoNewWrite));
        assert_eq!(run(&[NEW, NEW], &[0; 2]), Err(MoveProblem::NoOldWrite));
        assert_eq!(run(&[], &[]), Err(MoveProblem::Empty));
        let unseen = [OLD, RETRY];
        assert_eq!(
            run(&unseen, &memory(&unseen, 0)),
            Err(MoveProblem::NeverSawMove)
        );
        let bad_retry = WriteRecord {
            via: Via::Old,
            saw_moved: false,
            retried: true,
        };
        let recs = [OLD, bad_retry, NEW];
        assert_eq!(run(&recs, &memory(&recs, 0)), Err(MoveProblem::BadRetry(1)));
    }

    #[test]
    fn lost_duplicated_and_stray_words_are_caught() {
        let recs = [OLD, OLD, RETRY, NEW];
        // Lost: a write that reported success but never reached the BAR.
        let mut mem = memory(&recs, 2);
        mem[1] = 0;
        assert_eq!(
            run(&recs, &mem),
            Err(MoveProblem::Landed { seq: 1, found: 0 })
        );
        // The faulted attempt did land after all, and the retry did not.
        let mut mem = memory(&recs, 2);
        mem[2] = word(2, Via::Old);
        assert_eq!(
            run(&recs, &mem),
            Err(MoveProblem::Landed {
                seq: 2,
                found: word(2, Via::Old)
            })
        );
        // Something wrote past the end.
        let mut mem = memory(&recs, 2);
        mem[5] = 7;
        assert_eq!(
            run(&recs, &mem),
            Err(MoveProblem::Stray { seq: 5, found: 7 })
        );
    }

    #[test]
    fn words_name_their_sequence_and_address() {
        assert_eq!(word(5, Via::Old), 0x5eb0_0001_0000_0005);
        assert_eq!(word(5, Via::New), 0x5eb0_0002_0000_0005);
        assert_ne!(word(0, Via::Old), 0);
    }
}
