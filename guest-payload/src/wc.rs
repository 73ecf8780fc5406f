//! The write-combine test's pure side: which BARs it writes, how long it
//! measures, what figures mean, what each stage-2 policy must produce, and
//! the report lines. `arch::wc` does the mapping, the timed loops and the
//! hypercalls.

use core::fmt::{self, Write};

use crate::cmdline::{UnalignedProbe, WcBars};
use crate::mmu::{attr_slug, MemType};
use crate::pci::{Bdf, MemBar};

/// Largest part of a BAR that is measured.
pub const MAX_WINDOW: u64 = 16 << 20;
/// Smallest BAR that is measured.
pub const MIN_BAR: u64 = 4096;
/// The loops run in chunks of this many bytes (or the whole window, if
/// smaller) between looks at the counter.
pub const CHUNK: u64 = 64 << 10;

/// Base classes whose prefetchable BARs are memory: display controllers
/// (frame buffers, VRAM), memory controllers (ivshmem), co-processors and
/// processing accelerators (device memory).
const MEMORY_CLASSES: [u8; 3] = [0x03, 0x05, 0x12];

/// Whether the test writes to `bar` of a function of class `class`, and if
/// not, why. Writing arbitrary data to registers can start a device doing
/// things (a NIC's doorbells start DMA), so by default only prefetchable
/// BARs of memory-like classes are written.
pub fn select(class: u32, bar: &MemBar, which: WcBars) -> Result<(), &'static str> {
    if bar.size < MIN_BAR {
        return Err("smaller than 4 KiB");
    }
    if bar.cpu_addr.is_none() {
        return Err("not assigned or outside the host bridge windows");
    }
    if which == WcBars::All {
        return Ok(());
    }
    if !bar.prefetchable {
        return Err("non-prefetchable, so registers (wc-bars=all writes it anyway)");
    }
    if !MEMORY_CLASSES.contains(&((class >> 16) as u8)) {
        return Err("the function's class suggests registers (wc-bars=all writes it anyway)");
    }
    Ok(())
}

/// The part of a BAR that is measured: all of it up to [`MAX_WINDOW`].
/// BAR sizes are powers of two of at least 4 KiB, so the window is whole
/// pages and, from 2 MiB up, whole blocks.
pub fn window_size(bar_size: u64) -> u64 {
    bar_size.min(MAX_WINDOW)
}

/// How long a throughput loop runs: until it moved at least `min_bytes`
/// and ran at least `min_ticks`, or for `max_ticks` at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Bytes to move at least.
    pub min_bytes: u64,
    /// Counter ticks to run at least.
    pub min_ticks: u64,
    /// Counter ticks after which the loop stops anyway.
    pub max_ticks: u64,
}

impl Budget {
    /// 16 MiB and 50 ms at least, 750 ms at most, for a counter at `freq` Hz.
    /// The cap keeps a slow memory type from stretching the run: 5 types,
    /// two loops each, a few BARs.
    pub fn for_frequency(freq: u64) -> Self {
        Budget {
            min_bytes: 16 << 20,
            min_ticks: freq / 20,
            max_ticks: freq / 4 * 3,
        }
    }

    /// Whether a loop that moved `bytes` in `ticks` is done.
    pub fn done(&self, bytes: u64, ticks: u64) -> bool {
        ticks >= self.max_ticks || (bytes >= self.min_bytes && ticks >= self.min_ticks)
    }
}

/// Throughput in tenths of MiB/s for `bytes` moved in `ticks` of a counter
/// running at `freq` Hz.
pub fn tenths_mib_s(bytes: u64, ticks: u64, freq: u64) -> u64 {
    let value = u128::from(bytes) * u128::from(freq) * 10 / (u128::from(ticks.max(1)) << 20);
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// The value the integrity check writes at `offset` of the window while it
/// is mapped as the type with index `type_index`: different for every type
/// and every word, so data left by an earlier type or a dropped store shows.
pub fn pattern(type_index: usize, offset: u64) -> u64 {
    0x5a00_0000_0000_0000 ^ ((type_index as u64 + 1) << 48) ^ offset.rotate_left(17) ^ offset
}

/// A fixed-capacity string for formatting without an allocator; output
/// beyond the capacity is dropped.
#[derive(Clone, Copy)]
pub struct StrBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for StrBuf<N> {
    fn default() -> Self {
        StrBuf {
            buf: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> StrBuf<N> {
    /// Formats `args` into a new buffer.
    pub fn format(args: fmt::Arguments<'_>) -> Self {
        let mut s = Self::default();
        let _ = s.write_fmt(args);
        s
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        // Only whole `str`s are copied in, cut at a character boundary.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> Write for StrBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut take = s.len().min(N - self.len);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

impl<const N: usize> fmt::Display for StrBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A number of tenths printed with one decimal ("123.4"); honours width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tenths(pub u64);

impl fmt::Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        StrBuf::<24>::format(format_args!("{}.{}", self.0 / 10, self.0 % 10)).fmt(f)
    }
}

/// `value / base` with two decimals ("1.25"), or "-" without a base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ratio {
    /// The numerator.
    pub value: u64,
    /// The denominator (0: no base).
    pub base: u64,
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.base == 0 {
            return f.pad("-");
        }
        let hundredths = u128::from(self.value) * 100 / u128::from(self.base);
        StrBuf::<24>::format(format_args!("{}.{:02}", hundredths / 100, hundredths % 100)).fmt(f)
    }
}

/// The stage-2 policy the hypervisor applies to a BAR, from the `kind` the
/// stage-2 info call returns; `Native` without a hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// No hypervisor: stage 1 is all there is.
    Native,
    /// Device-nGnRE at stage 2, whatever the guest maps (kind 2).
    Device,
    /// Normal-NC at stage 2: the guest picks Device-* or Normal-NC (kind 3).
    GuestChoice,
    /// Stage 1 decides, cacheable included (kind 4).
    Cacheable,
    /// Any other kind: not a BAR as far as the hypervisor says.
    Other(u64),
}

impl Policy {
    /// The policy for a stage-2 info `kind`.
    pub fn from_kind(kind: u64) -> Self {
        match kind {
            2 => Policy::Device,
            3 => Policy::GuestChoice,
            4 => Policy::Cacheable,
            other => Policy::Other(other),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Native => f.pad("native"),
            Policy::Device => f.pad("device"),
            Policy::GuestChoice => f.pad("guest-choice"),
            Policy::Cacheable => f.pad("cacheable"),
            Policy::Other(kind) => StrBuf::<24>::format(format_args!("kind-{kind}")).fmt(f),
        }
    }
}

/// How an effective type compares with what the policy promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// As promised.
    Ok,
    /// Accepted although the architecture says otherwise: QEMU's model
    /// differs (see [`judge`]).
    QemuDiffers,
    /// Not what the policy promises.
    Wrong,
}

/// Whether `effective` (a MAIR-encoded attribute, as PAR_EL1.ATTR gives it)
/// is what `policy` promises for a stage-1 mapping of type `requested`.
/// `fwb` says whether the hypervisor runs with HCR_EL2.FWB.
///
/// - native: stage 1 alone, so effective == requested.
/// - device: stage 2 is Device-nGnRE, and combining keeps the more
///   restrictive type, so Device-nGnRE or Device-nGnRnE, never anything
///   weaker or Normal.
/// - guest-choice: stage 2 is Normal-NC. Device types stay as asked; Normal
///   types come out Normal-NC.
/// - cacheable: stage 1 decides (FWB MemAttr 0b0111), so effective ==
///   requested, Normal-WB included.
///
/// One exception, under guest-choice only and only without FWB: QEMU 10.0
/// combines a stage-1 Device-GRE or Device-nGRE with a stage-2 Normal-NC
/// page into Device-nGnRE, where the Arm ARM ("Combining the stage 1 and
/// stage 2 attributes") gives the stage-1 Device type. Device-nGnRE there
/// is accepted and marked [`Judgement::QemuDiffers`], so the run stays
/// green on QEMU while the table shows the difference; with FWB the
/// architecture's answer is required.
pub fn judge(policy: Policy, requested: MemType, effective: u8, fwb: bool) -> Judgement {
    let eff = attr_slug(effective);
    let ok = match policy {
        Policy::Native | Policy::Cacheable => eff == requested.slug(),
        Policy::Device => matches!(eff, "device-ngnrne" | "device-ngnre"),
        Policy::GuestChoice if requested.is_device() => {
            if eff == requested.slug() {
                true
            } else if !fwb
                && matches!(requested, MemType::DeviceGRE | MemType::DeviceNGRE)
                && eff == "device-ngnre"
            {
                return Judgement::QemuDiffers;
            } else {
                false
            }
        }
        Policy::GuestChoice => eff == "normal-nc",
        Policy::Other(_) => false,
    };
    if ok {
        Judgement::Ok
    } else {
        Judgement::Wrong
    }
}

/// Whether the run judges its unaligned probe, and why.
///
/// The architecture raises an alignment fault for an unaligned load from any
/// Device type and none for Normal memory with SCTLR_EL1.A = 0 (Arm ARM,
/// "Alignment of data accesses"), which makes the probe a check of the
/// effective type that does not rely on PAR_EL1. QEMU 10.0's TCG raises it
/// only when it runs vCPUs in parallel: with two or more CPUs and without
/// `-icount` (qemu/QUIRKS.md). So the guest judges when its device tree
/// lists two or more CPUs, and reports only with one; `wc-unaligned=` on the
/// command line overrides that either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeUse {
    /// Whether a mismatch fails the run.
    pub judged: bool,
    /// The CPUs the device tree lists.
    pub cpus: usize,
    /// Whether `wc-unaligned=` decided.
    pub from_cmdline: bool,
}

impl ProbeUse {
    /// The rule above, from the command-line option and the CPU count.
    pub fn new(option: Option<UnalignedProbe>, cpus: usize) -> Self {
        match option {
            Some(o) => ProbeUse {
                judged: o == UnalignedProbe::Judge,
                cpus,
                from_cmdline: true,
            },
            None => ProbeUse {
                judged: cpus >= 2,
                cpus,
                from_cmdline: false,
            },
        }
    }
}

impl fmt::Display for ProbeUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cpus = self.cpus;
        let plural = if cpus == 1 { "" } else { "s" };
        match (self.judged, self.from_cmdline) {
            (true, true) => write!(
                f,
                "judged (Device must fault, Normal must not): wc-unaligned=judge on the command line"
            ),
            (true, false) => write!(
                f,
                "judged (Device must fault, Normal must not): {cpus} CPU{plural} in the device tree"
            ),
            (false, true) => write!(
                f,
                "reported, not judged: wc-unaligned=report on the command line"
            ),
            (false, false) => write!(
                f,
                "reported, not judged: {cpus} CPU{plural} in the device tree, and QEMU's TCG \
                 faults unaligned Device loads only when it runs CPUs in parallel \
                 (qemu/QUIRKS.md; wc-unaligned=judge to judge anyway)"
            ),
        }
    }
}

/// Whether an unaligned load must complete on a window `policy` maps for a
/// stage-1 `requested` type: `Some(false)` where the promised type is Device
/// (it must fault), `Some(true)` where it is Normal, `None` where the policy
/// promises nothing. Device-nGnRE at stage 2 (policy `device`) makes every
/// type Device; the other policies keep stage 1's Device types Device and
/// its Normal types Normal.
pub fn unaligned_must_complete(policy: Policy, requested: MemType) -> Option<bool> {
    match policy {
        Policy::Device => Some(false),
        Policy::Native | Policy::GuestChoice | Policy::Cacheable => Some(!requested.is_device()),
        Policy::Other(_) => None,
    }
}

/// What the unaligned probe says about one measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnalignedVerdict {
    /// Judged, and as the promised type requires.
    Ok,
    /// Not judged on this run (see [`ProbeUse`]).
    Reported,
    /// Judged, and not as the promised type requires.
    Wrong,
}

/// The verdict for a probe that completed (`completed`) under `policy` and
/// `requested`, on a run that judges it or not.
pub fn judge_unaligned(
    probe: ProbeUse,
    policy: Policy,
    requested: MemType,
    completed: bool,
) -> UnalignedVerdict {
    if !probe.judged {
        return UnalignedVerdict::Reported;
    }
    match unaligned_must_complete(policy, requested) {
        Some(want) if want == completed => UnalignedVerdict::Ok,
        Some(_) => UnalignedVerdict::Wrong,
        // No promise to hold it to; the effective type's judgement fails it.
        None => UnalignedVerdict::Reported,
    }
}

/// One memory type measured on one BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measurement {
    /// The stage-1 type the window was mapped with.
    pub requested: MemType,
    /// PAR_EL1 from the effective-attributes query (0 if it failed).
    pub par: u64,
    /// PAR_EL1.ATTR when the query succeeded and the translation did not
    /// fault.
    pub effective: Option<u8>,
    /// Whether an unaligned load from the window completed (no alignment
    /// fault).
    pub unaligned_ok: bool,
    /// That result against the promised type.
    pub unaligned: UnalignedVerdict,
    /// Write throughput, tenths of MiB/s.
    pub write: u64,
    /// Read throughput, tenths of MiB/s.
    pub read: u64,
    /// Whether the pattern read back intact.
    pub verify_ok: bool,
    /// The effective type against the policy.
    pub judgement: Judgement,
}

impl Measurement {
    /// The effective type's name, `unknown` if the query failed.
    pub fn effective_name(&self) -> &'static str {
        self.effective.map_or("unknown", attr_slug)
    }

    /// Whether this measurement passes: the type as promised, by PAR_EL1
    /// and by the unaligned probe where it is judged, and the data intact.
    pub fn passes(&self) -> bool {
        self.verify_ok
            && self.judgement != Judgement::Wrong
            && self.unaligned != UnalignedVerdict::Wrong
    }
}

/// Where a set of measurements was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarId {
    /// The function.
    pub bdf: Bdf,
    /// The BAR number.
    pub bar: u8,
    /// The hypervisor's policy for it.
    pub policy: Policy,
}

/// The machine-readable line for one measurement.
pub struct ResultLine<'a>(pub &'a BarId, pub &'a Measurement);

impl fmt::Display for ResultLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ResultLine(id, m) = self;
        write!(
            f,
            "WC-RESULT bdf={} bar={} policy={} s1={} effective={} par={:#x} unaligned={} \
             write_mib_s={} read_mib_s={} verify={}",
            id.bdf,
            id.bar,
            id.policy,
            m.requested.slug(),
            m.effective_name(),
            m.par,
            if m.unaligned_ok { "ok" } else { "fault" },
            Tenths(m.write),
            Tenths(m.read),
            if m.verify_ok { "ok" } else { "FAIL" },
        )
    }
}

/// The table header matching [`TableRow`].
pub const TABLE_HEADER: &str =
    "  requested      effective      unaligned  write MiB/s   read MiB/s  verify  w/nGnRE  note";

/// One row of the readable table; `base_write` is the Device-nGnRE row's
/// write figure, for the ratio column.
pub struct TableRow<'a> {
    /// The measurement.
    pub m: &'a Measurement,
    /// Write throughput of the Device-nGnRE row (tenths of MiB/s).
    pub base_write: u64,
}

impl fmt::Display for TableRow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.m;
        let note = match (m.judgement, m.unaligned) {
            (Judgement::Wrong, _) => "WRONG TYPE",
            (_, UnalignedVerdict::Wrong) if m.unaligned_ok => "WRONG: no alignment fault",
            (_, UnalignedVerdict::Wrong) => "WRONG: alignment fault",
            (Judgement::QemuDiffers, _) => "qemu-differs",
            (Judgement::Ok, _) => "",
        };
        write!(
            f,
            "  {:<14} {:<14} {:<9} {:>12} {:>12}  {:<6} {:>8}",
            m.requested.slug(),
            m.effective_name(),
            if m.unaligned_ok { "ok" } else { "fault" },
            Tenths(m.write),
            Tenths(m.read),
            if m.verify_ok { "ok" } else { "FAIL" },
            Ratio {
                value: m.write,
                base: self.base_write,
            },
        )?;
        if note.is_empty() {
            Ok(())
        } else {
            write!(f, "  {note}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(size: u64, prefetchable: bool) -> MemBar {
        MemBar {
            index: 2,
            is_64: true,
            prefetchable,
            size,
            pci_addr: 0x80_0000_0000,
            cpu_addr: Some(0x80_0000_0000),
        }
    }

    #[test]
    fn selection() {
        let ivshmem = 0x05_0000;
        let bochs = 0x03_8000;
        let nic = 0x02_0000;
        assert_eq!(
            select(ivshmem, &bar(64 << 20, true), WcBars::Memory),
            Ok(())
        );
        assert_eq!(select(bochs, &bar(16 << 20, true), WcBars::Memory), Ok(()));
        assert!(select(bochs, &bar(4096, false), WcBars::Memory).is_err());
        assert!(select(nic, &bar(16 << 10, true), WcBars::Memory).is_err());
        assert_eq!(select(nic, &bar(16 << 10, true), WcBars::All), Ok(()));
        assert_eq!(select(bochs, &bar(4096, false), WcBars::All), Ok(()));
        assert_eq!(
            select(ivshmem, &bar(256, false), WcBars::All),
            Err("smaller than 4 KiB")
        );
        let mut unassigned = bar(1 << 20, true);
        unassigned.cpu_addr = None;
        assert!(select(ivshmem, &unassigned, WcBars::All).is_err());
    }

    #[test]
    fn windows() {
        assert_eq!(window_size(64 << 20), 16 << 20);
        assert_eq!(window_size(16 << 20), 16 << 20);
        assert_eq!(window_size(4096), 4096);
    }

    #[test]
    fn budget() {
        let b = Budget::for_frequency(1_000_000_000);
        assert_eq!(b.min_ticks, 50_000_000);
        assert_eq!(b.max_ticks, 750_000_000);
        assert!(!b.done(1 << 30, 1_000_000), "fast, but too short");
        assert!(!b.done(1 << 20, 60_000_000), "long enough, too few bytes");
        assert!(b.done(16 << 20, 50_000_000));
        assert!(b.done(4096, 750_000_000), "capped");
    }

    #[test]
    fn throughput() {
        // 16 MiB in one second.
        assert_eq!(tenths_mib_s(16 << 20, 62_500_000, 62_500_000), 160);
        // 1 MiB in 3 s: 0.333 MiB/s.
        assert_eq!(tenths_mib_s(1 << 20, 3, 1), 3);
        assert_eq!(tenths_mib_s(1 << 20, 0, 1), 10);
        assert_eq!(Tenths(12345).to_string(), "1234.5");
        assert_eq!(Tenths(7).to_string(), "0.7");
        assert_eq!(format!("{:>7}", Tenths(7)), "    0.7");
        assert_eq!(
            Ratio {
                value: 250,
                base: 200
            }
            .to_string(),
            "1.25"
        );
        assert_eq!(Ratio { value: 1, base: 3 }.to_string(), "0.33");
        assert_eq!(format!("{:>5}", Ratio { value: 1, base: 0 }), "    -");
    }

    #[test]
    fn patterns_differ_per_type_and_word() {
        let mut seen = std::collections::BTreeSet::new();
        for t in 0..5 {
            for off in (0..4096).step_by(8) {
                assert!(seen.insert(pattern(t, off)));
            }
        }
    }

    #[test]
    fn strbuf_truncates_at_capacity() {
        let s = StrBuf::<4>::format(format_args!("abcdef"));
        assert_eq!(s.as_str(), "abcd");
        let s = StrBuf::<3>::format(format_args!("aé"));
        assert_eq!(s.as_str(), "aé");
        let s = StrBuf::<2>::format(format_args!("aé"));
        assert_eq!(s.as_str(), "a");
    }

    #[test]
    fn policies() {
        assert_eq!(Policy::from_kind(2), Policy::Device);
        assert_eq!(Policy::from_kind(3), Policy::GuestChoice);
        assert_eq!(Policy::from_kind(4), Policy::Cacheable);
        assert_eq!(Policy::from_kind(1).to_string(), "kind-1");
        assert_eq!(Policy::GuestChoice.to_string(), "guest-choice");
        assert_eq!(format!("{:<8}|", Policy::Native), "native  |");
    }

    #[test]
    fn native_wants_exactly_what_was_asked() {
        for ty in MemType::MEASURED {
            assert_eq!(
                judge(Policy::Native, ty, ty.mair_attr(), false),
                Judgement::Ok
            );
        }
        assert_eq!(
            judge(Policy::Native, MemType::NormalNC, 0xff, false),
            Judgement::Wrong
        );
    }

    #[test]
    fn device_policy_allows_ngnre_or_stronger() {
        for ty in MemType::MEASURED {
            assert_eq!(judge(Policy::Device, ty, 0x04, true), Judgement::Ok);
        }
        assert_eq!(
            judge(Policy::Device, MemType::DeviceNGnRnE, 0x00, false),
            Judgement::Ok
        );
        for weaker in [0x08, 0x0c, 0x44, 0xff] {
            assert_eq!(
                judge(Policy::Device, MemType::NormalWB, weaker, false),
                Judgement::Wrong
            );
        }
    }

    #[test]
    fn guest_choice() {
        use MemType::*;
        for ty in [DeviceNGnRnE, DeviceNGnRE, DeviceGRE, DeviceNGRE] {
            assert_eq!(
                judge(Policy::GuestChoice, ty, ty.mair_attr(), true),
                Judgement::Ok
            );
            assert_eq!(
                judge(Policy::GuestChoice, ty, ty.mair_attr(), false),
                Judgement::Ok
            );
        }
        for ty in [NormalNC, NormalWB] {
            assert_eq!(judge(Policy::GuestChoice, ty, 0x44, false), Judgement::Ok);
            assert_eq!(
                judge(Policy::GuestChoice, ty, 0xff, false),
                Judgement::Wrong
            );
        }
        assert_eq!(
            judge(Policy::GuestChoice, DeviceNGnRE, 0x44, false),
            Judgement::Wrong
        );
    }

    #[test]
    fn qemu_gre_over_normal_nc_only_without_fwb() {
        use MemType::*;
        assert_eq!(
            judge(Policy::GuestChoice, DeviceGRE, 0x04, false),
            Judgement::QemuDiffers
        );
        assert_eq!(
            judge(Policy::GuestChoice, DeviceNGRE, 0x04, false),
            Judgement::QemuDiffers
        );
        assert_eq!(
            judge(Policy::GuestChoice, DeviceGRE, 0x04, true),
            Judgement::Wrong
        );
        // Only under guest-choice, only towards nGnRE.
        assert_eq!(
            judge(Policy::Native, DeviceGRE, 0x04, false),
            Judgement::Wrong
        );
        assert_eq!(
            judge(Policy::GuestChoice, DeviceGRE, 0x00, false),
            Judgement::Wrong
        );
    }

    #[test]
    fn probe_is_judged_with_two_cpus_or_when_told() {
        use UnalignedProbe::*;
        assert!(!ProbeUse::new(None, 0).judged);
        assert!(!ProbeUse::new(None, 1).judged);
        assert!(ProbeUse::new(None, 2).judged);
        assert!(ProbeUse::new(Some(Judge), 1).judged);
        assert!(!ProbeUse::new(Some(Report), 4).judged);
        assert!(ProbeUse::new(None, 1)
            .to_string()
            .starts_with("reported, not judged: 1 CPU in the device tree"));
        assert_eq!(
            ProbeUse::new(None, 2).to_string(),
            "judged (Device must fault, Normal must not): 2 CPUs in the device tree"
        );
        assert!(ProbeUse::new(Some(Judge), 1)
            .to_string()
            .ends_with("wc-unaligned=judge on the command line"));
    }

    #[test]
    fn device_must_fault_and_normal_must_not() {
        use MemType::*;
        let judged = ProbeUse::new(None, 2);
        for policy in [Policy::Native, Policy::GuestChoice, Policy::Cacheable] {
            for ty in MemType::MEASURED {
                let completes = !ty.is_device();
                assert_eq!(
                    judge_unaligned(judged, policy, ty, completes),
                    UnalignedVerdict::Ok,
                    "{policy} {ty}"
                );
                assert_eq!(
                    judge_unaligned(judged, policy, ty, !completes),
                    UnalignedVerdict::Wrong,
                    "{policy} {ty}"
                );
            }
        }
        // Policy device makes Normal requests Device: they must fault too.
        for ty in [NormalNC, NormalWB, DeviceGRE] {
            assert_eq!(
                judge_unaligned(judged, Policy::Device, ty, false),
                UnalignedVerdict::Ok
            );
            assert_eq!(
                judge_unaligned(judged, Policy::Device, ty, true),
                UnalignedVerdict::Wrong
            );
        }
        // Not judged: whatever happened is only reported.
        let reported = ProbeUse::new(None, 1);
        assert_eq!(
            judge_unaligned(reported, Policy::GuestChoice, DeviceGRE, true),
            UnalignedVerdict::Reported
        );
    }

    #[test]
    fn a_wrong_unaligned_result_fails_the_measurement() {
        let (_, m) = sample();
        let wrong = Measurement {
            unaligned: UnalignedVerdict::Wrong,
            judgement: Judgement::Ok,
            ..m
        };
        assert!(!wrong.passes());
        let row = TableRow {
            m: &wrong,
            base_write: 0,
        }
        .to_string();
        assert!(row.ends_with("WRONG: no alignment fault"), "{row}");
        let ok = Measurement {
            unaligned: UnalignedVerdict::Ok,
            unaligned_ok: false,
            ..wrong
        };
        assert!(ok.passes());
    }

    #[test]
    fn cacheable_keeps_stage_1() {
        assert_eq!(
            judge(Policy::Cacheable, MemType::NormalWB, 0xff, true),
            Judgement::Ok
        );
        assert_eq!(
            judge(Policy::Cacheable, MemType::NormalWB, 0x44, true),
            Judgement::Wrong
        );
        assert_eq!(
            judge(Policy::Other(1), MemType::NormalWB, 0xff, true),
            Judgement::Wrong
        );
    }

    fn sample() -> (BarId, Measurement) {
        let id = BarId {
            bdf: Bdf::new(0, 2, 0),
            bar: 0,
            policy: Policy::GuestChoice,
        };
        let m = Measurement {
            requested: MemType::DeviceGRE,
            par: 0x0400_0000_1100_0000,
            effective: Some(0x04),
            unaligned_ok: true,
            unaligned: UnalignedVerdict::Reported,
            write: 12345,
            read: 6789,
            verify_ok: true,
            judgement: Judgement::QemuDiffers,
        };
        (id, m)
    }

    #[test]
    fn result_line() {
        let (id, m) = sample();
        assert_eq!(
            ResultLine(&id, &m).to_string(),
            "WC-RESULT bdf=00:02.0 bar=0 policy=guest-choice s1=device-gre \
             effective=device-ngnre par=0x400000011000000 unaligned=ok \
             write_mib_s=1234.5 read_mib_s=678.9 verify=ok"
        );
        assert!(m.passes());
        let failed = Measurement {
            verify_ok: false,
            effective: None,
            unaligned_ok: false,
            ..m
        };
        let line = ResultLine(&id, &failed).to_string();
        assert!(line.contains("effective=unknown"));
        assert!(line.contains("unaligned=fault"));
        assert!(line.ends_with("verify=FAIL"));
        assert!(!failed.passes());
        assert!(line.len() < 240, "fits the hypervisor's guest line buffer");
    }

    #[test]
    fn table_row_lines_up_with_header() {
        let (_, m) = sample();
        let row = TableRow {
            m: &m,
            base_write: 10000,
        }
        .to_string();
        assert_eq!(
            row,
            "  device-gre     device-ngnre   ok              1234.5        678.9  ok         1.23  qemu-differs"
        );
        let col = |s: &str, w: &str| s.find(w).unwrap();
        assert_eq!(col(TABLE_HEADER, "note"), col(&row, "qemu-differs"));
        assert_eq!(col(TABLE_HEADER, "effective"), col(&row, "device-ngnre"));
    }
}
