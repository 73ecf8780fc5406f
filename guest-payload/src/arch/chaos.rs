//! The `chaos` test on the machine: builds the target pools, runs the
//! seeded stream of hostile actions from [`crate::chaos`] under fault
//! probes, and then checks that the hypervisor survived it.
//!
//! Reaching the targets: the guest's stage 1 maps them, so every access
//! reaches stage 2 (no MMU-off tricks):
//!
//! - holes: every 2 MiB chunk below RAM that `HV_STAGE2_INFO` reports
//!   unmapped at both ends and that holds nothing of the guest's (UART, PCI
//!   windows, RAM, image, DT) is identity-mapped Device-nGnRE;
//! - the PCI memory windows are identity-mapped Device-nGnRE whole, so a
//!   BAR is reachable wherever the guest moves it;
//! - beyond the IPA size: 16 scratch pages at [`BEYOND_VA`] map, as
//!   Device-nGnRE, IPAs with one bit from 40 to 47 set: eight alias the
//!   canary (bit n | canary page, so a hypervisor that dropped high bits
//!   would let the stream write the canary), eight have random low bits;
//! - instruction fetches: aliases at [`EXEC_VA`] map hole, UART, ECAM,
//!   beyond-IPA and BAR pages as Normal-WB, which stage 1 lets execute, so
//!   each fetch reaches stage 2 and only the hypervisor can refuse it.
//!
//! Stores never go to UARTDR (the bytes would garble the console). The
//! canary, a 1 MiB static buffer, is never a target.

use core::arch::asm;

use spin::Mutex;

use super::probe::{exec_probe, probe};
use super::{counter, firmware, mmu};
use crate::chaos::{
    canary_word, Action, BarInfo, BarMove, Class, Conduit, DcOp, Kind, Observed, Page, Pools, Rng,
    SetWayOp, Tally, Target, Width,
};
use crate::cmdline::ChaosOptions;
use crate::esr::{ec, Fault};
use crate::mmu::{MemType, PAGE_SIZE};
use crate::pci::{self, Bdf, ConfigAccess, Mode};
use crate::platform::{PciSpace, Platform, Region, RegionList};
use crate::println;
use crate::smccc::Hypervisor;

/// `HV_EXIT_STATS` (the hypervisor's `vm::hypercall`).
pub const HV_EXIT_STATS: u32 = 0xc600_0003;
/// `HV_PHYS_BAR_CHECK`.
pub const HV_PHYS_BAR_CHECK: u32 = 0xc600_0004;

/// Scratch pages mapped onto IPAs beyond the IPA size.
const BEYOND_VA: u64 = 0x200_0000_0000;
/// Executable aliases of hole, MMIO and BAR pages.
const EXEC_VA: u64 = 0x201_0000_0000;
const CHUNK: u64 = 2 << 20;
const CANARY_WORDS: usize = (1 << 20) / 8;
const MAX_REPORTED: u64 = 10;

#[repr(C, align(4096))]
struct Canary([u64; CANARY_WORDS]);
static mut CANARY: Canary = Canary([0; CANARY_WORDS]);

/// The action in progress, for the exception handler and the panic handler.
static LAST: Mutex<Option<(u64, u64, Action)>> = Mutex::new(None);

/// Prints the action in progress, if the stream is running. Called by the
/// exception handler before it fails the run.
pub fn report_last() {
    if let Some(guard) = LAST.try_lock() {
        if let Some((seed, index, action)) = *guard {
            println!("GUEST chaos FAIL seed={seed} action #{index}: {action} (unexpected exception or panic)");
        }
    }
}

/// Configuration space through the identity-mapped ECAM window.
pub struct Ecam {
    /// The window's base.
    pub base: u64,
    /// Its first bus.
    pub bus_start: u8,
}

impl Ecam {
    /// The address of byte `offset` (any alignment) of `bdf`.
    pub fn addr(&self, bdf: Bdf, offset: u16) -> u64 {
        self.base + pci::ecam_offset(self.bus_start, bdf, 0) + u64::from(offset)
    }
}

impl ConfigAccess for Ecam {
    fn read32(&mut self, bdf: Bdf, reg: u16) -> u32 {
        load(self.addr(bdf, reg & 0xffc), Width::B4).unwrap_or(u64::MAX) as u32
    }

    fn write32(&mut self, bdf: Bdf, reg: u16, value: u32) {
        let _ = store(self.addr(bdf, reg & 0xffc), Width::B4, value.into());
    }
}

/// One load of `width` at `va` under a probe; a pair returns the first word.
pub fn load(va: u64, width: Width) -> Result<u64, Fault> {
    probe(|| {
        let v: u64;
        // SAFETY: a load from a page the test mapped for it (MMIO, a hole,
        // a BAR, an address beyond the IPA size); the probe recovers from
        // a fault, and nothing the guest owns lives there.
        unsafe {
            match width {
                Width::B1 => {
                    asm!("ldrb {v:w}, [{a}]", a = in(reg) va, v = out(reg) v, options(nostack))
                }
                Width::B2 => {
                    asm!("ldrh {v:w}, [{a}]", a = in(reg) va, v = out(reg) v, options(nostack))
                }
                Width::B4 => {
                    asm!("ldr {v:w}, [{a}]", a = in(reg) va, v = out(reg) v, options(nostack))
                }
                Width::B8 => {
                    asm!("ldr {v}, [{a}]", a = in(reg) va, v = out(reg) v, options(nostack))
                }
                Width::Pair => asm!("ldp {v}, {w}, [{a}]", a = in(reg) va, v = out(reg) v,
                    w = out(reg) _, options(nostack)),
            }
        }
        v
    })
}

/// One store of `width` at `va` under a probe; a pair stores `value` twice.
pub fn store(va: u64, width: Width, value: u64) -> Result<(), Fault> {
    probe(|| {
        // SAFETY: as for `load`: a page mapped for the test, never guest RAM.
        unsafe {
            match width {
                Width::B1 => {
                    asm!("strb {v:w}, [{a}]", a = in(reg) va, v = in(reg) value, options(nostack))
                }
                Width::B2 => {
                    asm!("strh {v:w}, [{a}]", a = in(reg) va, v = in(reg) value, options(nostack))
                }
                Width::B4 => {
                    asm!("str {v:w}, [{a}]", a = in(reg) va, v = in(reg) value, options(nostack))
                }
                Width::B8 => {
                    asm!("str {v}, [{a}]", a = in(reg) va, v = in(reg) value, options(nostack))
                }
                Width::Pair => asm!("stp {v}, {v}, [{a}]", a = in(reg) va, v = in(reg) value,
                    options(nostack)),
            }
        }
    })
}

/// What a probe's fault was.
pub fn classify(fault: &Fault) -> Observed {
    match fault.ec() {
        ec::DABT_CURRENT => Observed::DataAbort,
        ec::IABT_CURRENT => Observed::InstrAbort,
        ec::UNKNOWN => Observed::Undef,
        _ => Observed::Other(fault.esr),
    }
}

fn observe<T>(result: Result<T, Fault>, value: impl FnOnce(T) -> Option<u64>) -> Observed {
    match result {
        Ok(v) => Observed::Done(value(v)),
        Err(f) => classify(&f),
    }
}

type SysregFn = fn() -> Result<(), Fault>;

macro_rules! sysreg_table {
    ($($name:literal => $insn:literal),* $(,)?) => {
        /// System register accesses the hypervisor must make UNDEFINED, one
        /// fixed MRS or MSR each (writes write 0). The debug registers are
        /// RAZ/WI instead (checked by `test=sysregs`).
        pub const SYSREGS: &[(&str, SysregFn)] = &[$(($name, {
            fn access() -> Result<(), Fault> {
                probe(|| {
                    // SAFETY: one access to a register the hypervisor traps
                    // and makes UNDEFINED; the probe skips it. A write
                    // writes 0, harmless should it land.
                    unsafe { asm!($insn, x = inout(reg) 0u64 => _, options(nostack)) }
                })
            }
            access
        })),*];
    };
}

sysreg_table! {
    "mrs pmcr_el0" => "mrs {x}, pmcr_el0",
    "msr pmcr_el0" => "msr pmcr_el0, {x}",
    "mrs pmccntr_el0" => "mrs {x}, pmccntr_el0",
    "msr pmccntr_el0" => "msr pmccntr_el0, {x}",
    "mrs pmcntenset_el0" => "mrs {x}, pmcntenset_el0",
    "mrs pmuserenr_el0" => "mrs {x}, pmuserenr_el0",
    "msr pmselr_el0" => "msr pmselr_el0, {x}",
    "mrs pmevcntr0_el0" => "mrs {x}, pmevcntr0_el0",
    "mrs pmccfiltr_el0" => "mrs {x}, pmccfiltr_el0",
    "msr pmintenclr_el1" => "msr pmintenclr_el1, {x}",
    "mrs lorc_el1" => "mrs {x}, s3_0_c10_c4_3",
    "msr lorc_el1" => "msr s3_0_c10_c4_3, {x}",
    "mrs lorid_el1" => "mrs {x}, s3_0_c10_c4_7",
    "mrs lorsa_el1" => "mrs {x}, s3_0_c10_c4_0",
    "mrs amcr_el0" => "mrs {x}, s3_3_c13_c2_0",
    "mrs amcfgr_el0" => "mrs {x}, s3_3_c13_c2_1",
    "mrs amevcntr00_el0" => "mrs {x}, s3_3_c13_c4_0",
    "msr amcntenclr0_el0" => "msr s3_3_c13_c2_4, {x}",
    "mrs s3_0_c15_c0_0" => "mrs {x}, s3_0_c15_c0_0",
    "mrs s3_1_c15_c2_0" => "mrs {x}, s3_1_c15_c2_0",
    "msr s3_1_c15_c2_1" => "msr s3_1_c15_c2_1, {x}",
    "mrs s3_3_c15_c1_0" => "mrs {x}, s3_3_c15_c1_0",
    "mrs s3_7_c15_c15_7" => "mrs {x}, s3_7_c15_c15_7",
    "mrs actlr_el1" => "mrs {x}, actlr_el1",
    "msr actlr_el1" => "msr actlr_el1, {x}",
    "mrs zcr_el1" => "mrs {x}, s3_0_c1_c2_0",
    "msr zcr_el1" => "msr s3_0_c1_c2_0, {x}",
    "mrs smcr_el1" => "mrs {x}, s3_0_c1_c2_6",
    "mrs cntp_ctl_el0" => "mrs {x}, cntp_ctl_el0",
    "msr cntp_tval_el0" => "msr cntp_tval_el0, {x}",
    "mrs cntp_cval_el0" => "mrs {x}, cntp_cval_el0",
}

/// Sentinels for x4..x17 (index 0 is x4).
fn sentinels(regs: &[u64; 8]) -> [u64; 14] {
    core::array::from_fn(|i| match i {
        0..=3 => regs[4 + i],
        _ => 0x5a5a_0000_0000_0000 ^ regs[0].rotate_left(i as u32) ^ i as u64,
    })
}

macro_rules! call_asm {
    ($insn:literal, $r:ident) => {
        // SAFETY: a firmware call with every register it may clobber
        // declared (x0-x17); the probe skips it if it traps.
        unsafe {
            asm!($insn,
                inout("x0") $r[0], inout("x1") $r[1], inout("x2") $r[2], inout("x3") $r[3],
                inout("x4") $r[4], inout("x5") $r[5], inout("x6") $r[6], inout("x7") $r[7],
                inout("x8") $r[8], inout("x9") $r[9], inout("x10") $r[10], inout("x11") $r[11],
                inout("x12") $r[12], inout("x13") $r[13], inout("x14") $r[14],
                inout("x15") $r[15], inout("x16") $r[16], inout("x17") $r[17],
                options(nostack))
        }
    };
}

/// Makes the call; returns x0 and whether x4..x17 came back unchanged.
fn call(conduit: Conduit, regs: &[u64; 8]) -> Observed {
    let want = sentinels(regs);
    let mut r = [0u64; 18];
    r[..4].copy_from_slice(&regs[..4]);
    r[4..].copy_from_slice(&want);
    let result = probe(|| match conduit {
        Conduit::Hvc0 => call_asm!("hvc #0", r),
        Conduit::Hvc1 => call_asm!("hvc #1", r),
        Conduit::HvcFfff => call_asm!("hvc #0xffff", r),
        Conduit::Smc0 => call_asm!("smc #0", r),
        Conduit::Smc1 => call_asm!("smc #1", r),
    });
    match result {
        Ok(()) => Observed::Call {
            x0: r[0],
            preserved: r[4..] == want,
        },
        Err(f) => classify(&f),
    }
}

fn set_way(op: SetWayOp, operand: u64) -> Result<(), Fault> {
    probe(|| {
        // SAFETY: set/way maintenance, trapped by the hypervisor (TSW) and
        // turned into clean and invalidate; any operand is architecturally
        // allowed (out-of-range set/way values are UNPREDICTABLE only in
        // which line they hit).
        unsafe {
            match op {
                SetWayOp::Isw => asm!("dc isw, {x}", x = in(reg) operand, options(nostack)),
                SetWayOp::Csw => asm!("dc csw, {x}", x = in(reg) operand, options(nostack)),
                SetWayOp::Cisw => asm!("dc cisw, {x}", x = in(reg) operand, options(nostack)),
            }
        }
    })
}

fn dc_va(op: DcOp, va: u64) -> Result<(), Fault> {
    probe(|| {
        // SAFETY: maintenance by VA on a hole, MMIO or a BAR, never on RAM
        // (DC IVAC there would discard data).
        unsafe {
            match op {
                DcOp::Civac => asm!("dc civac, {x}", x = in(reg) va, options(nostack)),
                DcOp::Cvac => asm!("dc cvac, {x}", x = in(reg) va, options(nostack)),
                DcOp::Ivac => asm!("dc ivac, {x}", x = in(reg) va, options(nostack)),
                DcOp::Cvau => asm!("dc cvau, {x}", x = in(reg) va, options(nostack)),
            }
        }
    })
}

/// Lets EL1 use FP/SIMD, SVE and SME (CPACR_EL1.FPEN, ZEN and SMEN), so
/// that accesses to ZCR_EL1 and SMCR_EL1 reach the hypervisor's CPTR_EL2
/// traps instead of the guest's own (an SVE register access checks FPEN too).
fn enable_sve_sme() {
    // SAFETY: only changes which EL1/EL0 accesses trap to EL1; the guest
    // uses no SVE or SME itself.
    unsafe {
        asm!("mrs {t}, cpacr_el1", "orr {t}, {t}, #(3 << 16)", "orr {t}, {t}, #(3 << 24)",
            "orr {t}, {t}, #(3 << 20)",
            "msr cpacr_el1, {t}", "isb", t = out(reg) _, options(nostack))
    };
}

fn bar_regs(ecam: &mut Ecam, bdf: Bdf, bar: &BarInfo) -> u64 {
    let reg = 0x10 + 4 * u16::from(bar.bar);
    let low = u64::from(ecam.read32(bdf, reg));
    let high = if bar.is_64 {
        u64::from(ecam.read32(bdf, reg + 4))
    } else {
        0
    };
    (high << 32) | (low & !0xf)
}

fn bar_move(ecam: &mut Ecam, bdf: Bdf, m: &BarMove) -> Result<(), Fault> {
    let cmd_addr = ecam.addr(bdf, 0x04);
    let cmd = load(cmd_addr, Width::B2)?;
    let cmd = if m.mse { cmd | 2 } else { cmd & !2 };
    store(cmd_addr, Width::B2, cmd)?;
    let reg = 0x10 + 4 * u16::from(m.bar);
    store(ecam.addr(bdf, reg), Width::B4, m.low.into())?;
    if let Some(high) = m.high {
        store(ecam.addr(bdf, reg + 4), Width::B4, high.into())?;
    }
    Ok(())
}

struct Setup {
    holes: RegionList<32>,
    beyond: [Page; 16],
    exec: [Page; 16],
    exec_len: usize,
    windows: RegionList<6>,
    devices: [Bdf; pci::MAX_FUNCTIONS],
    device_count: usize,
    bars: [BarInfo; 32],
    bar_count: usize,
}

fn stage2_kind(ipa: u64) -> Option<u64> {
    firmware::stage2_info(ipa).ok().map(|i| i.kind)
}

fn map(va: u64, pa: u64, size: u64, ty: MemType) -> Result<(), ()> {
    mmu::map_region(va, pa, size, ty).map_err(|e| {
        println!("GUEST chaos: cannot map {va:#x} -> {pa:#x} ({size:#x} bytes): {e}");
    })
}

/// Maps the PCI memory windows as Device-nGnRE and returns them; `None`
/// (after saying why) if one cannot be mapped.
pub fn map_windows(platform: &Platform<'_>) -> Option<RegionList<6>> {
    let mut windows = RegionList::default();
    if let Some(pcie) = platform.pcie {
        for w in pcie.windows() {
            if matches!(w.space, PciSpace::Mem32 | PciSpace::Mem64) {
                let r = w.cpu_region().page_aligned();
                if mmu::translate(r.base).is_none() {
                    map(r.base, r.base, r.size, MemType::DeviceNGnRE).ok()?;
                }
                windows.push(r);
            }
        }
    }
    Some(windows)
}

fn setup(platform: &Platform<'_>, rng: &mut Rng, canary: u64) -> Result<Setup, ()> {
    let windows = map_windows(platform).ok_or(())?;
    let uart_page = platform.uart.map(|u| u.page_aligned());
    let ram_base = platform
        .ram
        .as_slice()
        .iter()
        .map(|r| r.base)
        .min()
        .unwrap_or(0x4000_0000);
    let mut holes: RegionList<32> = RegionList::default();
    let mut chunk = 0;
    while chunk + CHUNK <= ram_base {
        let r = Region::new(chunk, CHUNK);
        let busy = uart_page.is_some_and(|u| u.overlaps(&r))
            || windows.overlaps(&r)
            || platform.ram.overlaps(&r)
            || mmu::image().overlaps(&r)
            || mmu::translate(chunk).is_some()
            || mmu::translate(chunk + CHUNK - PAGE_SIZE).is_some();
        let empty = !busy
            && stage2_kind(chunk) == Some(0)
            && stage2_kind(chunk + CHUNK / 2) == Some(0)
            && stage2_kind(chunk + CHUNK - PAGE_SIZE) == Some(0);
        if empty {
            map(chunk, chunk, CHUNK, MemType::DeviceNGnRE)?;
            match holes.as_slice().last() {
                Some(last) if last.end() == chunk => {
                    let merged = Region::new(last.base, last.size + CHUNK);
                    let n = holes.as_slice().len();
                    let mut fresh = RegionList::default();
                    for (i, h) in holes.as_slice().iter().enumerate() {
                        fresh.push(if i + 1 == n { merged } else { *h });
                    }
                    holes = fresh;
                }
                _ => {
                    holes.push(r);
                }
            }
        }
        chunk += CHUNK;
    }

    let mut beyond = [Page {
        class: Class::BeyondIpa,
        va: 0,
        ipa: 0,
    }; 16];
    for (i, page) in beyond.iter_mut().enumerate() {
        let bit = 40 + (i as u64 % 8);
        let low = if i < 8 {
            canary + (i as u64) * PAGE_SIZE
        } else {
            rng.next_u64() & ((1 << bit) - 1) & !(PAGE_SIZE - 1)
        };
        page.va = BEYOND_VA + i as u64 * PAGE_SIZE;
        page.ipa = (1 << bit) | low;
        map(page.va, page.ipa, PAGE_SIZE, MemType::DeviceNGnRE)?;
    }

    // Passed-through devices and their BARs.
    let mut devices = [Bdf::default(); pci::MAX_FUNCTIONS];
    let mut device_count = 0;
    let mut bars = [BarInfo {
        device: 0,
        bar: 0,
        is_64: false,
        size: 0,
        boot: 0,
        now: 0,
    }; 32];
    let mut bar_count = 0;
    if let Some(pcie) = platform.pcie {
        let mut ecam = Ecam {
            base: pcie.ecam.base,
            bus_start: pcie.bus_start,
        };
        let found = pci::enumerate(&mut ecam, &pcie, Mode::AsFound);
        for f in found.functions().filter(|f| !f.is_bridge) {
            if device_count == devices.len() {
                break;
            }
            devices[device_count] = f.bdf;
            for b in f.mem_bars() {
                let Some(cpu) = b.cpu_addr else { continue };
                if bar_count < bars.len() {
                    bars[bar_count] = BarInfo {
                        device: device_count,
                        bar: b.index,
                        is_64: b.is_64,
                        size: b.size.max(PAGE_SIZE),
                        boot: cpu,
                        now: cpu,
                    };
                    bar_count += 1;
                }
            }
            device_count += 1;
        }
    }

    // Executable aliases: stage 1 lets them execute, so stage 2 must refuse.
    let mut exec = [Page {
        class: Class::Hole,
        va: 0,
        ipa: 0,
    }; 16];
    let mut exec_len = 0;
    let mut add = |class: Class, ipa: u64| -> Result<(), ()> {
        if exec_len == exec.len() {
            return Ok(());
        }
        let va = EXEC_VA + exec_len as u64 * PAGE_SIZE;
        map(va, ipa, PAGE_SIZE, MemType::NormalWB)?;
        exec[exec_len] = Page { class, va, ipa };
        exec_len += 1;
        Ok(())
    };
    for _ in 0..4 {
        if let Some(h) = rng.pick(holes.as_slice()) {
            add(Class::Hole, h.base + (rng.below(h.size) & !(PAGE_SIZE - 1)))?;
        }
    }
    if let Some(u) = uart_page {
        add(Class::Uart, u.base)?;
    }
    if let Some(pcie) = platform.pcie {
        add(Class::Ecam, pcie.ecam.base)?;
    }
    add(Class::BeyondIpa, 1 << 40)?;
    add(Class::BeyondIpa, (1 << 47) | canary)?;
    for b in &bars[..bar_count] {
        add(Class::Bar, b.boot)?;
    }

    Ok(Setup {
        holes,
        beyond,
        exec,
        exec_len,
        windows,
        devices,
        device_count,
        bars,
        bar_count,
    })
}

fn fill_canary(seed: u64) -> u64 {
    let base = core::ptr::addr_of_mut!(CANARY) as *mut u64;
    for i in 0..CANARY_WORDS {
        // SAFETY: inside the static canary, which only this test touches.
        unsafe { base.add(i).write_volatile(canary_word(seed, i)) };
    }
    base as u64
}

fn check_canary(seed: u64) -> Option<usize> {
    let base = core::ptr::addr_of!(CANARY) as *const u64;
    (0..CANARY_WORDS).find(|&i| {
        // SAFETY: as for `fill_canary`.
        unsafe { base.add(i).read_volatile() != canary_word(seed, i) }
    })
}

fn refresh_bars(ecam: &mut Ecam, devices: &[Bdf], bars: &mut [BarInfo], windows: &[Region]) {
    for b in bars.iter_mut() {
        let addr = bar_regs(ecam, devices[b.device], b);
        let inside = windows
            .iter()
            .any(|w| w.contains(addr) && addr.checked_add(b.size).is_some_and(|e| e <= w.end()));
        b.now = if inside { addr } else { b.boot };
    }
}

fn perform(action: &Action, ecam: &mut Option<Ecam>, devices: &[Bdf]) -> Observed {
    match *action {
        Action::Load { target, width } => observe(load(target.va, width), Some),
        Action::Store {
            target,
            width,
            value,
        } => observe(store(target.va, width, value), |()| None),
        Action::Exec { target } => observe(exec_probe(target.va), |()| None),
        Action::Sysreg { index } => match SYSREGS.get(index) {
            Some((_, access)) => observe(access(), |()| None),
            None => Observed::Other(0),
        },
        Action::Call { conduit, regs } => call(conduit, &regs),
        Action::Config {
            bdf,
            offset,
            width,
            write,
        } => {
            let Some(e) = ecam.as_ref() else {
                return Observed::Other(0);
            };
            let addr = e.addr(bdf, offset);
            match write {
                Some(v) => observe(store(addr, width, v), |()| None),
                None => observe(load(addr, width), Some),
            }
        }
        Action::Bar(m) => match (ecam.as_mut(), devices.get(m.device)) {
            (Some(e), Some(&bdf)) => observe(bar_move(e, bdf, &m), |()| None),
            _ => Observed::Other(0),
        },
        Action::SetWay { op, operand } => observe(set_way(op, operand), |()| None),
        Action::DcVa { op, target } => observe(dc_va(op, target.va), |()| None),
    }
}

fn touches_config(action: &Action) -> bool {
    matches!(
        action,
        Action::Bar(_)
            | Action::Config { write: Some(_), .. }
            | Action::Store {
                target: Target {
                    class: Class::Ecam,
                    ..
                },
                ..
            }
    )
}

/// Runs the test; true if everything held.
pub fn run(platform: &Platform<'_>, hypervisor: Hypervisor, opts: ChaosOptions) -> bool {
    if hypervisor != Hypervisor::Ours {
        println!("GUEST chaos: needs the project's hypervisor underneath (found {hypervisor})");
        return false;
    }
    let ChaosOptions { seed, actions } = opts;
    let mut rng = Rng::new(seed);
    enable_sve_sme();
    let canary = fill_canary(seed);
    let Ok(mut s) = setup(platform, &mut rng, canary) else {
        return false;
    };
    let mut ecam = platform.pcie.map(|p| Ecam {
        base: p.ecam.base,
        bus_start: p.bus_start,
    });
    let devices = &s.devices[..s.device_count];
    println!(
        "GUEST chaos: seed={seed} actions={actions}: {} hole regions, {} beyond-IPA pages, {} exec aliases, {} devices, {} BARs, {} system registers, canary at {canary:#x}",
        s.holes.as_slice().len(),
        s.beyond.len(),
        s.exec_len,
        devices.len(),
        s.bar_count,
        SYSREGS.len()
    );
    for h in s.holes.as_slice() {
        println!("GUEST chaos: hole {h}");
    }
    for b in &s.bars[..s.bar_count] {
        println!(
            "GUEST chaos: BAR {} #{} at {:#x}, {:#x} bytes",
            devices[b.device], b.bar, b.boot, b.size
        );
    }

    super::probe::on_unexpected(report_last);
    let mut tally = Tally::default();
    let (start, freq) = counter();
    for index in 0..actions {
        let pools = Pools {
            holes: s.holes.as_slice(),
            uart: platform.uart.map(|u| u.base & !(PAGE_SIZE - 1)),
            ecam: platform.pcie.map(|p| (p.ecam, p.bus_start)),
            beyond: &s.beyond,
            bars: &s.bars[..s.bar_count],
            devices,
            windows: s.windows.as_slice(),
            exec: &s.exec[..s.exec_len],
            sysregs: SYSREGS.len(),
            ram: platform.ram.as_slice().first().copied(),
        };
        let action = pools.generate(&mut rng);
        *LAST.lock() = Some((seed, index, action));
        let expect = pools.expect(&action);
        let seen = perform(&action, &mut ecam, devices);
        if !tally.record(&action, expect, seen) && tally.failures <= MAX_REPORTED {
            let name = match action {
                Action::Sysreg { index } => SYSREGS.get(index).map_or("?", |e| e.0),
                _ => "",
            };
            println!(
                "GUEST chaos FAIL seed={seed} action #{index}: {action} {name} -> {seen}, expected {expect}"
            );
        }
        if touches_config(&action) {
            if let Some(e) = ecam.as_mut() {
                refresh_bars(e, devices, &mut s.bars[..s.bar_count], s.windows.as_slice());
            }
        }
    }
    *LAST.lock() = None;
    let (end, _) = counter();
    let ms = end.wrapping_sub(start) * 1000 / freq.max(1);

    let mut ok = tally.failures == 0;
    for (kind, n) in Kind::ALL.iter().zip(tally.by_kind) {
        println!("GUEST chaos: {} {n}", kind.name());
    }
    for (class, n) in Class::ALL.iter().zip(tally.by_class) {
        println!("GUEST chaos: target {} {n}", class.name());
    }
    println!(
        "GUEST chaos: {} data aborts, {} instruction aborts, {} undefs, {} unexpected, {ms} ms",
        tally.data_aborts, tally.instr_aborts, tally.undefs, tally.failures
    );

    let alive = firmware::detect_hypervisor() == Hypervisor::Ours;
    let exits = firmware::smccc(HV_EXIT_STATS, [0, 0, 0]).ok();
    let total = match exits {
        Some(r) if r[0] == 0 => r[1],
        _ => 0,
    };
    println!(
        "GUEST chaos: after the stream: HV_CALL_UID {}, {total} exits",
        if alive { "answers" } else { "DOES NOT ANSWER" }
    );
    ok &= alive && total > actions / 2;
    match check_canary(seed) {
        None => println!("GUEST chaos: canary intact (1 MiB at {canary:#x})"),
        Some(i) => {
            println!("GUEST chaos FAIL seed={seed}: canary word {i} changed");
            ok = false;
        }
    }
    for b in &s.bars[..s.bar_count] {
        let bdf = devices[b.device];
        let selector = (u64::from(b.bar) << 16)
            | (u64::from(bdf.bus) << 8)
            | (u64::from(bdf.dev & 0x1f) << 3)
            | u64::from(bdf.func & 7);
        let r = firmware::smccc(HV_PHYS_BAR_CHECK, [selector, 0, 0]);
        let unchanged = matches!(r, Ok(r) if r[0] == 0 && r[3] == 1);
        println!(
            "GUEST chaos: physical BAR of {bdf} #{}: {}",
            b.bar,
            match r {
                Ok(r) if r[0] == 0 =>
                    if unchanged {
                        "unchanged"
                    } else {
                        "MOVED"
                    },
                _ => "NO ANSWER",
            }
        );
        ok &= unchanged;
    }
    println!(
        "CHAOS seed={seed} actions={} aborts={} undefs={} hypervisor={}",
        tally.actions,
        tally.aborts(),
        tally.undefs,
        if alive { "alive" } else { "dead" }
    );
    ok
}
