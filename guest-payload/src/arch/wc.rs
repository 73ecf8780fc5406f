//! The write-combine test on the machine: walks PCI through ECAM, maps a
//! window of each selected memory BAR under each memory type in turn, times
//! plain 64-bit stores and loads with the generic timer, checks the data,
//! asks what type is in effect, and judges it against the stage-2 policy.

use core::arch::asm;

use super::probe::read_u32_unaligned_probe;
use super::{counter, firmware, mmu};
use crate::cmdline::{self, WcBars};
use crate::mmu::MemType;
use crate::pci::{self, ecam_offset, Bdf, ConfigAccess, Function, MemBar, Mode};
use crate::platform::{Platform, Region};
use crate::println;
use crate::smccc::{Hypervisor, Par};
use crate::wc::{
    self, judge, judge_unaligned, pattern, tenths_mib_s, BarId, Budget, Measurement, Policy,
    ProbeUse, ResultLine, StrBuf, TableRow, UnalignedVerdict, CHUNK, TABLE_HEADER,
};

/// Configuration space through the ECAM window, identity-mapped as Device
/// memory by `mmu::init`.
struct Ecam {
    base: u64,
    bus_start: u8,
}

impl ConfigAccess for Ecam {
    fn read32(&mut self, bdf: Bdf, reg: u16) -> u32 {
        let addr = self.base + ecam_offset(self.bus_start, bdf, reg);
        // SAFETY: an aligned dword inside the ECAM window, which is mapped;
        // configuration reads have no side effects on the registers used.
        unsafe { core::ptr::read_volatile(addr as *const u32) }
    }

    fn write32(&mut self, bdf: Bdf, reg: u16, value: u32) {
        let addr = self.base + ecam_offset(self.bus_start, bdf, reg);
        // SAFETY: as for `read32`; the walk writes only BARs, command and
        // bridge registers.
        unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
    }
}

/// Stores `value` to `[va, va + len)` in blocks of eight single 64-bit STRs
/// (no STP, no SIMD: write-combining hardware merges such stores into
/// 64-byte packets), then waits for them to complete (DSB SY).
fn write_blocks(va: u64, len: u64, value: u64) {
    // SAFETY: the caller maps [va, va + len) read-write; `len` is a
    // multiple of 64 and non-zero. The stores touch nothing else.
    unsafe {
        asm!(
            "2:",
            "str {v}, [{p}]",
            "str {v}, [{p}, #8]",
            "str {v}, [{p}, #16]",
            "str {v}, [{p}, #24]",
            "str {v}, [{p}, #32]",
            "str {v}, [{p}, #40]",
            "str {v}, [{p}, #48]",
            "str {v}, [{p}, #56]",
            "add {p}, {p}, #64",
            "cmp {p}, {end}",
            "b.lo 2b",
            "dsb sy",
            p = inout(reg) va => _,
            end = in(reg) va + len,
            v = in(reg) value,
            options(nostack),
        )
    };
}

/// Loads `[va, va + len)` in blocks of eight single 64-bit LDRs, then
/// waits for them (DSB SY).
fn read_blocks(va: u64, len: u64) {
    // SAFETY: as for `write_blocks`; the loaded values are discarded.
    unsafe {
        asm!(
            "2:",
            "ldr {a}, [{p}]",
            "ldr {b}, [{p}, #8]",
            "ldr {a}, [{p}, #16]",
            "ldr {b}, [{p}, #24]",
            "ldr {a}, [{p}, #32]",
            "ldr {b}, [{p}, #40]",
            "ldr {a}, [{p}, #48]",
            "ldr {b}, [{p}, #56]",
            "add {p}, {p}, #64",
            "cmp {p}, {end}",
            "b.lo 2b",
            "dsb sy",
            p = inout(reg) va => _,
            end = in(reg) va + len,
            a = out(reg) _,
            b = out(reg) _,
            options(nostack),
        )
    };
}

/// Runs `step` over successive chunks of the window until the budget is
/// spent; returns tenths of MiB/s.
fn timed(va: u64, window: u64, freq: u64, mut step: impl FnMut(u64, u64)) -> u64 {
    let budget = Budget::for_frequency(freq);
    let chunk = CHUNK.min(window);
    let (start, _) = counter();
    let (mut bytes, mut offset) = (0u64, 0u64);
    loop {
        step(va + offset, chunk);
        bytes += chunk;
        offset = (offset + chunk) % window;
        let (now, _) = counter();
        let ticks = now.wrapping_sub(start);
        if budget.done(bytes, ticks) {
            return tenths_mib_s(bytes, ticks, freq);
        }
    }
}

/// Writes the type's pattern over the window with single stores, reads it
/// back, and says whether every word came back.
fn verify(va: u64, window: u64, type_index: usize) -> bool {
    let mut offset = 0;
    while offset < window {
        // SAFETY: inside the mapped window, aligned.
        unsafe {
            core::ptr::write_volatile((va + offset) as *mut u64, pattern(type_index, offset))
        };
        offset += 8;
    }
    // SAFETY: a barrier.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
    let mut offset = 0;
    while offset < window {
        // SAFETY: as above.
        let got = unsafe { core::ptr::read_volatile((va + offset) as *const u64) };
        if got != pattern(type_index, offset) {
            println!(
                "WC verify: {:#x}: read {got:#x}, wrote {:#x}",
                va + offset,
                pattern(type_index, offset)
            );
            return false;
        }
        offset += 8;
    }
    true
}

/// The combined attributes of `va`: from the hypervisor's AT S12E1R, or
/// natively from AT S1E1R. (PAR_EL1, ATTR if the translation succeeded.)
fn effective(va: u64, hypervisor: bool) -> (u64, Option<u8>) {
    let par = if hypervisor {
        match firmware::effective_attrs(va, false) {
            Ok(par) => par,
            Err(status) => {
                println!("WC effective-attributes call for {va:#x} failed: status {status}");
                return (0, None);
            }
        }
    } else {
        mmu::at_s1e1r(va)
    };
    match Par::decode(par) {
        Par::Ok { attr, .. } => (par, Some(attr)),
        Par::Fault { .. } => (par, None),
    }
}

/// What one BAR gave: five measurements, or why it could not be measured.
fn measure_bar(
    va: u64,
    window: u64,
    id: &BarId,
    fwb: bool,
    hypervisor: bool,
    freq: u64,
    probe: ProbeUse,
) -> Result<[Option<Measurement>; 5], StrBuf<96>> {
    mmu::map_region(va, va, window, MemType::DeviceNGnRE)
        .map_err(|e| StrBuf::format(format_args!("cannot map {va:#x}: {e}")))?;
    let mut results = [None; 5];
    for (index, ty) in MemType::MEASURED.into_iter().enumerate() {
        mmu::remap(va, window, ty)
            .map_err(|e| StrBuf::format(format_args!("cannot remap {va:#x} as {ty}: {e}")))?;
        let (par, attr) = effective(va, hypervisor);
        let unaligned_ok = read_u32_unaligned_probe(va).is_ok();
        let value = pattern(index, 0);
        let write = timed(va, window, freq, |p, n| write_blocks(p, n, value));
        let read = timed(va, window, freq, read_blocks);
        let verify_ok = verify(va, window, index);
        if ty == MemType::NormalWB {
            // Dirty lines must reach the BAR before it is mapped
            // non-cacheable again (Arm ARM "Mismatched memory attributes").
            mmu::clean_invalidate(Region::new(va, window));
        }
        let judgement = attr.map_or(wc::Judgement::Wrong, |a| judge(id.policy, ty, a, fwb));
        results[index] = Some(Measurement {
            requested: ty,
            par,
            effective: attr,
            unaligned_ok,
            unaligned: judge_unaligned(probe, id.policy, ty, unaligned_ok),
            write,
            read,
            verify_ok,
            judgement,
        });
    }
    // Leave it mapped the safe way.
    mmu::remap(va, window, MemType::DeviceNGnRE)
        .map_err(|e| StrBuf::format(format_args!("cannot remap {va:#x}: {e}")))?;
    Ok(results)
}

fn describe_bar(f: &Function, bar: &MemBar) {
    println!(
        "WC pci {} {:04x}:{:04x} class {:06x} BAR{} {}-bit {} {:#x} bytes at pci {:#x} cpu {:#x}",
        f.bdf,
        f.vendor,
        f.device,
        f.class,
        bar.index,
        if bar.is_64 { 64 } else { 32 },
        if bar.prefetchable {
            "prefetchable"
        } else {
            "non-prefetchable"
        },
        bar.size,
        bar.pci_addr,
        bar.cpu_addr.unwrap_or(0),
    );
}

/// Runs the test; prints `WC-SUMMARY ok` or `WC-SUMMARY FAIL <reason>` and
/// returns whether it passed.
pub fn run(platform: &Platform<'_>, hypervisor: Hypervisor, which: WcBars) -> bool {
    let mut failure: Option<StrBuf<160>> = None;
    let mut fail = |reason: core::fmt::Arguments<'_>| {
        if failure.is_none() {
            failure = Some(StrBuf::format(reason));
        }
    };
    let measured = match platform.pcie {
        None => {
            fail(format_args!(
                "no pci-host-ecam-generic node in the device tree"
            ));
            0
        }
        Some(host) => {
            let probe = ProbeUse::new(
                cmdline::wc_unaligned(platform.bootargs),
                platform.cpus.as_slice().len(),
            );
            println!("WC unaligned probe: {probe}");
            run_on(&host, hypervisor, which, probe, &mut fail)
        }
    };
    if measured == 0 {
        fail(format_args!("no memory BAR found"));
    }
    match failure {
        None => {
            println!("WC-SUMMARY ok");
            true
        }
        Some(reason) => {
            println!("WC-SUMMARY FAIL {reason}");
            false
        }
    }
}

/// Walks the bus and measures every selected BAR; returns how many were
/// measured.
fn run_on(
    host: &crate::platform::PcieHost,
    hypervisor: Hypervisor,
    which: WcBars,
    probe: ProbeUse,
    fail: &mut impl FnMut(core::fmt::Arguments<'_>),
) -> usize {
    let present = hypervisor.is_present();
    let mode = if present { Mode::AsFound } else { Mode::Assign };
    println!(
        "WC pci: ECAM {}, buses {}..={}, {}",
        host.ecam,
        host.bus_start,
        host.bus_end,
        match mode {
            Mode::AsFound => "BARs as the hypervisor assigned them",
            Mode::Assign => "no hypervisor: assigning BARs",
        }
    );
    let mut ecam = Ecam {
        base: host.ecam.base,
        bus_start: host.bus_start,
    };
    let found = pci::enumerate(&mut ecam, host, mode);
    if found.truncated {
        println!(
            "WC pci: more than {} functions; the rest were skipped",
            pci::MAX_FUNCTIONS
        );
    }
    let (_, freq) = counter();
    let mut measured = 0;
    for f in found.functions() {
        if let Some(problem) = f.problem {
            println!("WC pci {}: memory decode left off: {problem}", f.bdf);
        }
        for bar in f.mem_bars() {
            describe_bar(f, bar);
            if let Err(why) = wc::select(f.class, bar, which) {
                println!("WC pci {} BAR{}: not measured: {why}", f.bdf, bar.index);
                continue;
            }
            let Some(cpu) = bar.cpu_addr else { continue };
            let (policy, fwb) = if present {
                match firmware::stage2_info(cpu) {
                    Ok(info) => (Policy::from_kind(info.kind), info.flags & 1 != 0),
                    Err(status) => {
                        fail(format_args!(
                            "stage-2 info for {cpu:#x} failed: status {status}"
                        ));
                        continue;
                    }
                }
            } else {
                (Policy::Native, false)
            };
            let id = BarId {
                bdf: f.bdf,
                bar: bar.index,
                policy,
            };
            let window = wc::window_size(bar.size);
            println!(
                "WC {} BAR{}: {:#x} bytes at {cpu:#x}, window {} KiB, policy {policy}, fwb {}",
                f.bdf,
                bar.index,
                bar.size,
                window >> 10,
                if present {
                    if fwb {
                        "1"
                    } else {
                        "0"
                    }
                } else {
                    "-"
                }
            );
            let results = match measure_bar(cpu, window, &id, fwb, present, freq, probe) {
                Ok(results) => results,
                Err(why) => {
                    fail(format_args!("{} BAR{}: {why}", f.bdf, bar.index));
                    continue;
                }
            };
            measured += 1;
            let base_write = results[1].map_or(0, |m| m.write);
            println!("{TABLE_HEADER}");
            for m in results.iter().flatten() {
                println!("{}", TableRow { m, base_write });
            }
            for m in results.iter().flatten() {
                println!("{}", ResultLine(&id, m));
                if !m.verify_ok {
                    fail(format_args!(
                        "{} BAR{} {}: data did not read back",
                        f.bdf,
                        bar.index,
                        m.requested.slug()
                    ));
                } else if m.unaligned == UnalignedVerdict::Wrong {
                    fail(format_args!(
                        "{} BAR{} policy {policy}: an unaligned load from {} {}",
                        f.bdf,
                        bar.index,
                        m.requested.slug(),
                        if m.unaligned_ok {
                            "completed, where a Device type must fault"
                        } else {
                            "faulted, where a Normal type must not"
                        }
                    ));
                } else if !m.passes() {
                    fail(format_args!(
                        "{} BAR{} policy {policy}: {} came out {}",
                        f.bdf,
                        bar.index,
                        m.requested.slug(),
                        m.effective_name()
                    ));
                }
            }
        }
    }
    measured
}
