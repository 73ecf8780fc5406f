//! Which host functions are passed through, with which BAR policies: parses
//! `pci.passthrough`, `pci.attr` and `pci.dma`, and produces the boot report.
//!
//! Policies: `guest-choice` for prefetchable memory BARs, `device` for the
//! others, unless `pci.attr` overrides them for a device. A `cacheable`
//! override on a CPU without FEAT_S2FWB and CTR_EL0.DIC is refused: the
//! device is still passed through with the default policies, and the report
//! says why, naming the missing feature (a typo on the command line should
//! not cost the guest its device; mapping a BAR cacheable without FWB and
//! DIC would be wrong, so the override cannot be honoured).
//!
//! Bus mastering (hostile-guest item 35): with no IOMMU a device that may
//! master the bus can read and write all memory. The report prints a
//! `WARNING:` line for every passed-through device allowed to; `pci.dma=deny`
//! keeps Bus Master Enable off in the guest's view of the device.

#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::host::{HostBar, HostFunction, HostPci, Size};
use super::types::{BarKind, Bdf, PassthroughDevice};
use crate::mm::attrs::{stage2_policy, BarPolicy, Features, MemoryIntent};

/// One `pci.passthrough` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// `bb:dd.f`: one function.
    Bdf(Bdf),
    /// `vvvv:dddd`: every function with these IDs.
    Ids {
        /// Vendor ID.
        vendor: u16,
        /// Device ID.
        device: u16,
    },
}

impl DeviceSpec {
    /// Whether `f` is what this entry names.
    pub fn matches(&self, f: &HostFunction) -> bool {
        match *self {
            Self::Bdf(b) => f.bdf == b,
            Self::Ids { vendor, device } => f.vendor_id == vendor && f.device_id == device,
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bdf(b) => write!(f, "{b}"),
            Self::Ids { vendor, device } => write!(f, "{vendor:04x}:{device:04x}"),
        }
    }
}

/// `pci.dma`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DmaPolicy {
    /// Passed-through devices may master the bus (the default).
    #[default]
    Allow,
    /// Bus Master Enable stays off.
    Deny,
}

/// What the command line asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// `pci.passthrough` entries.
    pub devices: Vec<DeviceSpec>,
    /// `pci.attr` overrides.
    pub overrides: Vec<(Bdf, BarPolicy)>,
}

/// A command-line value that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectError {
    /// The option.
    pub key: &'static str,
    /// The offending entry.
    pub token: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: bad entry `{}`: {}",
            self.key, self.token, self.reason
        )
    }
}

fn err(key: &'static str, token: &str, reason: &'static str) -> SelectError {
    SelectError {
        key,
        token: String::from(token),
        reason,
    }
}

fn hex<T: TryFrom<u32>>(s: &str, max_digits: usize) -> Option<T> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16)
        .ok()
        .and_then(|v| T::try_from(v).ok())
}

/// Parses `bb:dd.f` (hex; a leading `0000:` domain is accepted).
pub fn parse_bdf(s: &str) -> Result<Bdf, &'static str> {
    let s = match s.split_once(':') {
        Some((dom, rest)) if rest.contains(':') => {
            if hex::<u16>(dom, 4) != Some(0) {
                return Err("only PCI domain 0000 exists here");
            }
            rest
        }
        _ => s,
    };
    let (bus, rest) = s.split_once(':').ok_or("expected bb:dd.f")?;
    let (dev, func) = rest.split_once('.').ok_or("expected bb:dd.f")?;
    let bus = hex::<u8>(bus, 2).ok_or("bus is not 1-2 hex digits")?;
    let dev = hex::<u8>(dev, 2).ok_or("device is not 1-2 hex digits")?;
    let func = hex::<u8>(func, 1).ok_or("function is not one digit")?;
    if dev > 0x1f {
        return Err("device must be at most 1f");
    }
    Bdf::new(bus, dev, func).ok_or("function must be at most 7")
}

/// Parses `pci.passthrough`: comma-separated `bb:dd.f` or `vvvv:dddd`.
pub fn parse_passthrough(s: &str) -> Result<Vec<DeviceSpec>, SelectError> {
    const KEY: &str = "pci.passthrough";
    let mut out = Vec::new();
    for tok in s.split(',') {
        if tok.is_empty() {
            return Err(err(KEY, tok, "empty entry"));
        }
        let spec = if tok.contains('.') {
            DeviceSpec::Bdf(parse_bdf(tok).map_err(|r| err(KEY, tok, r))?)
        } else {
            let (v, d) = tok
                .split_once(':')
                .ok_or_else(|| err(KEY, tok, "expected bb:dd.f or vvvv:dddd"))?;
            match (hex::<u16>(v, 4), hex::<u16>(d, 4)) {
                (Some(vendor), Some(device)) if v.len() == 4 && d.len() == 4 => {
                    DeviceSpec::Ids { vendor, device }
                }
                _ => {
                    return Err(err(
                        KEY,
                        tok,
                        "expected vvvv:dddd with four hex digits each",
                    ))
                }
            }
        };
        out.push(spec);
    }
    Ok(out)
}

/// Parses a policy name.
pub fn parse_policy(s: &str) -> Option<BarPolicy> {
    match s {
        "device" => Some(BarPolicy::Device),
        "guest-choice" => Some(BarPolicy::GuestChoice),
        "cacheable" => Some(BarPolicy::Cacheable),
        _ => None,
    }
}

/// The name [`parse_policy`] accepts.
pub fn policy_name(p: BarPolicy) -> &'static str {
    match p {
        BarPolicy::Device => "device",
        BarPolicy::GuestChoice => "guest-choice",
        BarPolicy::Cacheable => "cacheable",
    }
}

/// Parses `pci.attr`: comma-separated `<bdf>:device|guest-choice|cacheable`.
pub fn parse_attr(s: &str) -> Result<Vec<(Bdf, BarPolicy)>, SelectError> {
    const KEY: &str = "pci.attr";
    let mut out: Vec<(Bdf, BarPolicy)> = Vec::new();
    for tok in s.split(',') {
        if tok.is_empty() {
            return Err(err(KEY, tok, "empty entry"));
        }
        let (bdf, policy) = tok
            .rsplit_once(':')
            .ok_or_else(|| err(KEY, tok, "expected bb:dd.f:policy"))?;
        let bdf = parse_bdf(bdf).map_err(|r| err(KEY, tok, r))?;
        let policy = parse_policy(policy)
            .ok_or_else(|| err(KEY, tok, "policy must be device, guest-choice or cacheable"))?;
        if out.iter().any(|&(b, _)| b == bdf) {
            return Err(err(KEY, tok, "a second policy for the same device"));
        }
        out.push((bdf, policy));
    }
    Ok(out)
}

/// Parses `pci.dma`.
pub fn parse_dma(s: &str) -> Result<DmaPolicy, SelectError> {
    match s {
        "allow" => Ok(DmaPolicy::Allow),
        "deny" => Ok(DmaPolicy::Deny),
        _ => Err(err("pci.dma", s, "must be allow or deny")),
    }
}

impl Selection {
    /// Parses the raw `pci.passthrough` and `pci.attr` values.
    pub fn parse(passthrough: Option<&str>, attr: Option<&str>) -> Result<Self, SelectError> {
        Ok(Self {
            devices: match passthrough {
                Some(s) => parse_passthrough(s)?,
                None => Vec::new(),
            },
            overrides: match attr {
                Some(s) => parse_attr(s)?,
                None => Vec::new(),
            },
        })
    }
}

/// What happens to one function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Given to the guest.
    Passthrough,
    /// Not asked for.
    HostOnly,
    /// Asked for but not possible.
    Refused(String),
}

/// One BAR line of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarLine {
    /// The BAR.
    pub bar: HostBar,
    /// Its stage-2 policy, for passed-through memory BARs.
    pub policy: Option<BarPolicy>,
}

/// One line of the boot report and what follows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A function, its BARs, and notes about it.
    Function {
        /// Where.
        bdf: Bdf,
        /// Vendor ID.
        vendor_id: u16,
        /// Device ID.
        device_id: u16,
        /// Class code and revision.
        class_rev: u32,
        /// The verdict.
        outcome: Outcome,
        /// Its BARs.
        bars: Vec<BarLine>,
        /// Notes and warnings, one line each, printed as given.
        notes: Vec<String>,
    },
    /// A command-line entry that did nothing.
    Unused(String),
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unused(s) => writeln!(f, "{s}"),
            Self::Function {
                bdf,
                vendor_id,
                device_id,
                class_rev,
                outcome,
                bars,
                notes,
            } => {
                write!(
                    f,
                    "{bdf} {vendor_id:04x}:{device_id:04x} class {:06x} -> ",
                    class_rev >> 8
                )?;
                match outcome {
                    Outcome::Passthrough => writeln!(f, "passthrough")?,
                    Outcome::HostOnly => writeln!(f, "host only")?,
                    Outcome::Refused(why) => writeln!(f, "refused: {why}")?,
                }
                for line in bars {
                    writeln!(f, "  {line}")?;
                }
                for n in notes {
                    writeln!(f, "{n}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for BarLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.bar.bar;
        let kind = match b.kind {
            BarKind::Mem32 => "32-bit",
            BarKind::Mem64 => "64-bit",
            BarKind::Io => "I/O",
        };
        write!(f, "BAR{} {kind}", b.index)?;
        if b.prefetchable {
            write!(f, " prefetchable")?;
        }
        if b.kind == BarKind::Io {
            return write!(f, " size {} not passed through", Size(b.size));
        }
        if !self.bar.assigned {
            return write!(f, " size {} unassigned", Size(b.size));
        }
        write!(f, " {:#x} size {}", b.host_addr.raw(), Size(b.size))?;
        if let Some(p) = self.policy {
            write!(f, " policy {}", policy_name(p))?;
        }
        Ok(())
    }
}

/// The whole report, one [`Decision`] after another.
pub struct Report<'a>(pub &'a [Decision]);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|d| write!(f, "{d}"))
    }
}

/// The default policy of a memory BAR.
pub fn default_policy(bar: &HostBar) -> BarPolicy {
    if bar.bar.prefetchable {
        BarPolicy::GuestChoice
    } else {
        BarPolicy::Device
    }
}

/// Decides every function of `host`: which are passed through and how.
pub fn select(
    host: &HostPci,
    sel: &Selection,
    features: Features,
    dma: DmaPolicy,
    dma_coherent: bool,
) -> (Vec<PassthroughDevice>, Vec<Decision>) {
    let mut devices = Vec::new();
    let mut decisions = Vec::new();
    for f in &host.devices {
        let wanted = sel.devices.iter().any(|s| s.matches(f));
        let mut notes = Vec::new();
        let override_policy = sel
            .overrides
            .iter()
            .find(|(b, _)| *b == f.bdf)
            .map(|&(_, p)| p);
        let outcome = if !wanted {
            Outcome::HostOnly
        } else if f.is_bridge {
            Outcome::Refused(String::from("bridges are not passed through"))
        } else if let Some(why) = &f.refusal {
            Outcome::Refused(why.clone())
        } else if f.assigned_bars().next().is_none() {
            Outcome::Refused(String::from("no memory BAR to pass through"))
        } else {
            Outcome::Passthrough
        };
        let pass = outcome == Outcome::Passthrough;
        let mut policy_override = override_policy.filter(|_| pass);
        if let Some(BarPolicy::Cacheable) = policy_override {
            if let Err(e) =
                stage2_policy(MemoryIntent::PassthroughBar(BarPolicy::Cacheable), features)
            {
                notes.push(format!(
                    "  note: pci.attr {}:cacheable refused: {e}; using the default policy per BAR",
                    f.bdf
                ));
                policy_override = None;
            }
        }
        let mut bars = Vec::new();
        let mut pt_bars = [None; 6];
        for hb in f.bars.iter().flatten() {
            let policy = (pass && hb.assigned && hb.bar.kind != BarKind::Io)
                .then(|| policy_override.unwrap_or_else(|| default_policy(hb)));
            if let (Some(p), Some(slot)) = (policy, pt_bars.get_mut(usize::from(hb.bar.index))) {
                *slot = Some((hb.bar, p));
            }
            bars.push(BarLine { bar: *hb, policy });
        }
        if pass {
            let bus_master_allowed = dma == DmaPolicy::Allow;
            if bus_master_allowed {
                notes.push(format!(
                    "WARNING: {} may master the bus and no IOMMU isolates it: its DMA can \
                     reach all memory, the hypervisor's included (pci.dma=deny keeps it off)",
                    f.bdf
                ));
            } else {
                notes.push(String::from("  bus mastering: off (pci.dma=deny)"));
            }
            devices.push(PassthroughDevice {
                host_bdf: f.bdf,
                vendor_id: f.vendor_id,
                device_id: f.device_id,
                class_rev: f.class_rev,
                header_type: f.header_type,
                bars: pt_bars,
                dma_coherent,
                bus_master_allowed,
            });
        } else if override_policy.is_some() && wanted {
            notes.push(format!("  note: pci.attr for {} unused", f.bdf));
        }
        decisions.push(Decision::Function {
            bdf: f.bdf,
            vendor_id: f.vendor_id,
            device_id: f.device_id,
            class_rev: f.class_rev,
            outcome,
            bars,
            notes,
        });
    }
    for s in &sel.devices {
        if !host.devices.iter().any(|f| s.matches(f)) {
            decisions.push(Decision::Unused(format!(
                "pci.passthrough: {s} matches no function"
            )));
        }
    }
    for (b, p) in &sel.overrides {
        let passed = devices.iter().any(|d| d.host_bdf == *b);
        if !passed
            && host
                .get(*b)
                .is_none_or(|f| !sel.devices.iter().any(|s| s.matches(f)))
        {
            decisions.push(Decision::Unused(format!(
                "pci.attr: {b}:{} ignored: {b} is not passed through",
                policy_name(*p)
            )));
        }
    }
    (devices, decisions)
}

#[cfg(test)]
mod tests;
