//! The `pci-hostile` test on the machine: the hostile configuration-space
//! items (26-35 of the hostile-guest list) done by the guest against the
//! virtual ECAM of its first passed-through device, one report line each.
//!
//! Malformed accesses (item 31) go through a Normal Non-cacheable alias of
//! the device's ECAM page, so an unaligned access is not refused by the
//! guest's own stage 1 (Device memory would raise an alignment fault) and
//! reaches the hypervisor.

use super::chaos::{classify, load, map_windows, store, Ecam, HV_PHYS_BAR_CHECK};
use super::{firmware, mmu};
use crate::chaos::{Observed, Width};
use crate::esr::Fault;
use crate::hostile::{free_spot, sizing_ok, Line, Seen};
use crate::mmu::{MemType, PAGE_SIZE};
use crate::pci::{self, Bdf, MemBar, Mode};
use crate::platform::{Platform, Region};
use crate::println;
use crate::smccc::Hypervisor;

/// Where the Normal-NC alias of the ECAM page is mapped.
const ALIAS_VA: u64 = 0x202_0000_0000;

const COMMAND: u16 = 0x04;
const MSE: u64 = 1 << 1;
const BME: u64 = 1 << 2;
const ROM_BAR: u16 = 0x30;
const CAP_POINTER: u16 = 0x34;
/// Status (bits 31:16 of the dword at 0x04), bit 4: a capability list exists.
const STATUS_CAP_LIST: u64 = 1 << 4;

fn seen<T>(r: Result<T, Fault>, f: impl FnOnce(T) -> u64) -> Seen {
    match r {
        Ok(v) => Seen::Value(f(v)),
        Err(e) => match classify(&e) {
            Observed::DataAbort => Seen::Abort,
            _ => Seen::Other(e.esr),
        },
    }
}

struct Dev {
    ecam: Ecam,
    bdf: Bdf,
    ok: bool,
}

impl Dev {
    fn rd(&self, off: u16, width: Width) -> Seen {
        seen(load(self.ecam.addr(self.bdf, off), width), |v| v)
    }

    fn rd32(&self, off: u16) -> u64 {
        match self.rd(off, Width::B4) {
            Seen::Value(v) => v,
            _ => u64::MAX,
        }
    }

    fn wr(&self, off: u16, width: Width, value: u64) {
        let _ = store(self.ecam.addr(self.bdf, off), width, value);
    }

    fn mse(&self, on: bool) {
        let cmd = self.rd32(COMMAND) & 0xffff;
        self.wr(COMMAND, Width::B2, if on { cmd | MSE } else { cmd & !MSE });
    }

    fn bar_raw(&self, bar: &MemBar) -> u64 {
        let reg = 0x10 + 4 * u16::from(bar.index);
        let high = if bar.is_64 { self.rd32(reg + 4) } else { 0 };
        (high << 32) | self.rd32(reg)
    }

    fn bar_write(&self, bar: &MemBar, value: u64) {
        let reg = 0x10 + 4 * u16::from(bar.index);
        self.wr(reg, Width::B4, value & 0xffff_ffff);
        if bar.is_64 {
            self.wr(reg + 4, Width::B4, value >> 32);
        }
    }

    fn phys_unchanged(&self, bar: &MemBar) -> bool {
        let selector = (u64::from(bar.index) << 16)
            | (u64::from(self.bdf.bus) << 8)
            | (u64::from(self.bdf.dev & 0x1f) << 3)
            | u64::from(self.bdf.func & 7);
        matches!(firmware::smccc(HV_PHYS_BAR_CHECK, [selector, 0, 0]), Ok(r) if r[0] == 0 && r[3] == 1)
    }

    fn report(&mut self, item: u8, what: &str, seen: Seen, expect: Seen) {
        let line = Line {
            item,
            what,
            seen,
            expect,
        };
        self.ok &= line.ok();
        println!("{line}");
    }
}

fn window_of(windows: &[Region], addr: u64) -> Option<Region> {
    windows.iter().find(|w| w.contains(addr)).copied()
}

/// Runs the test; true if every item held.
pub fn run(platform: &Platform<'_>, hypervisor: Hypervisor, dma_denied: bool) -> bool {
    if hypervisor != Hypervisor::Ours {
        println!(
            "GUEST pci-hostile: needs the project's hypervisor underneath (found {hypervisor})"
        );
        return false;
    }
    let Some(pcie) = platform.pcie else {
        println!("GUEST pci-hostile: the device tree has no PCIe host bridge");
        return false;
    };
    let Some(windows) = map_windows(platform) else {
        return false;
    };
    let windows = windows.as_slice();
    let mut ecam = Ecam {
        base: pcie.ecam.base,
        bus_start: pcie.bus_start,
    };
    let found = pci::enumerate(&mut ecam, &pcie, Mode::AsFound);
    let mut functions = found.functions().filter(|f| !f.is_bridge);
    let Some(first) = functions.next().copied() else {
        println!("GUEST pci-hostile: no passed-through device");
        return false;
    };
    let other_bar = functions.next().and_then(|f| f.mem_bars().next().copied());
    let bars: [Option<MemBar>; 6] = first.bars;
    let bar32 = bars.iter().flatten().find(|b| !b.is_64).copied();
    let bar64 = bars.iter().flatten().find(|b| b.is_64).copied();
    let (Some(bar32), Some(bar64)) = (bar32, bar64) else {
        println!(
            "GUEST pci-hostile: {} needs a 32-bit and a 64-bit memory BAR",
            first.bdf
        );
        return false;
    };
    println!(
        "GUEST pci-hostile: device {} ({:04x}:{:04x}), BAR{} at {:#x}, BAR{} at {:#x}, dma={}",
        first.bdf,
        first.vendor,
        first.device,
        bar32.index,
        bar32.pci_addr,
        bar64.index,
        bar64.pci_addr,
        if dma_denied { "deny" } else { "allow" }
    );
    let mut taken = [Region::default(); 8];
    let mut n = 0;
    for f in found.functions() {
        for b in f.mem_bars() {
            if n < taken.len() {
                taken[n] = Region::new(b.pci_addr, b.size.max(PAGE_SIZE));
                n += 1;
            }
        }
    }
    let taken = &taken[..n];
    let mut d = Dev {
        ecam,
        bdf: first.bdf,
        ok: true,
    };
    let size32 = bar32.size.max(PAGE_SIZE);
    let size64 = bar64.size.max(PAGE_SIZE);
    let (Some(win32), Some(win64)) = (
        window_of(windows, bar32.pci_addr),
        window_of(windows, bar64.pci_addr),
    ) else {
        println!("GUEST pci-hostile: the BARs lie outside the device tree's windows");
        return false;
    };
    let (Some(free32), Some(free64)) = (
        free_spot(win32, size32, taken),
        free_spot(win64, size64, taken),
    ) else {
        println!("GUEST pci-hostile: no free place in the windows");
        return false;
    };

    // 26: a BAR write while Memory Space Enable is on is ignored.
    d.mse(true);
    let old32 = d.bar_raw(&bar32);
    d.bar_write(&bar32, free32);
    let now = d.bar_raw(&bar32);
    d.report(
        26,
        "BAR write while MSE on",
        Seen::Value(now),
        Seen::Value(old32),
    );
    let phys = d.phys_unchanged(&bar32);
    d.report(
        26,
        "physical BAR unchanged",
        Seen::Holds(phys),
        Seen::Holds(true),
    );

    // 27: illegal moves with MSE off are refused; the physical BAR stays.
    d.mse(false);
    let old64 = d.bar_raw(&bar64);
    let ram = platform
        .ram
        .as_slice()
        .first()
        .map_or(0x4000_0000, |r| r.base);
    let uart = platform.uart.map_or(0x0900_0000, |u| u.base);
    let outside = win32.end().next_multiple_of(size32);
    let cases: [(&str, &MemBar, u64, u64); 5] = [
        ("BAR moved onto RAM", &bar32, ram, old32),
        ("BAR moved onto the UART", &bar32, uart, old32),
        ("BAR moved outside the window", &bar32, outside, old32),
        (
            "BAR moved misaligned",
            &bar64,
            (free64 + size64 / 2) | (old64 & 0xf),
            old64,
        ),
        (
            "BAR moved onto another BAR",
            &bar32,
            other_bar.map_or(bar64.pci_addr, |b| b.pci_addr),
            old32,
        ),
    ];
    for (what, bar, value, old) in cases {
        d.bar_write(bar, value);
        let now = d.bar_raw(bar);
        d.report(27, what, Seen::Value(now), Seen::Value(old));
        let phys = d.phys_unchanged(bar);
        d.report(
            27,
            "physical BAR unchanged",
            Seen::Holds(phys),
            Seen::Holds(true),
        );
    }

    // 27: a legal move with MSE off, then MSE on: the BAR is at the new IPA.
    let new64 = free64 | (old64 & 0xf);
    d.bar_write(&bar64, new64);
    let now = d.bar_raw(&bar64);
    d.report(
        27,
        "legal BAR move with MSE off",
        Seen::Value(now),
        Seen::Value(new64),
    );
    d.mse(true);
    let word = 0x5eed_c0de_0bad_f00d;
    let w = store(free64, Width::B8, word);
    let back = seen(w.and_then(|()| load(free64, Width::B8)), |v| v);
    d.report(
        27,
        "word written and read at the new IPA",
        back,
        Seen::Value(word),
    );
    let old_ipa = old64 & !0xf;
    let r = seen(load(old_ipa, Width::B8), |v| v);
    d.report(27, "read at the old IPA", r, Seen::Abort);
    let phys = d.phys_unchanged(&bar64);
    d.report(
        27,
        "physical BAR unchanged",
        Seen::Holds(phys),
        Seen::Holds(true),
    );
    d.mse(false);
    d.bar_write(&bar64, old64);
    let now = d.bar_raw(&bar64);
    d.report(27, "BAR moved back", Seen::Value(now), Seen::Value(old64));

    // 28: sizing with all ones: the size mask with the type bits.
    d.bar_write(&bar32, 0xffff_ffff);
    let mask = d.bar_raw(&bar32) as u32;
    let good = sizing_ok(old32 as u32, mask, None);
    println!("GUEST pci-hostile: 32-bit BAR sizing mask {mask:#x}");
    d.report(
        28,
        "32-bit BAR sizing mask with type bits",
        Seen::Holds(good),
        Seen::Holds(true),
    );
    d.bar_write(&bar32, old32);
    d.bar_write(&bar64, u64::MAX);
    let mask = d.bar_raw(&bar64);
    let good = sizing_ok(old64 as u32, mask as u32, Some((mask >> 32) as u32));
    println!("GUEST pci-hostile: 64-bit BAR sizing mask {mask:#x}");
    d.report(
        28,
        "64-bit BAR sizing mask with type bits",
        Seen::Holds(good),
        Seen::Holds(true),
    );
    d.bar_write(&bar64, old64);
    let restored = d.bar_raw(&bar32) == old32 && d.bar_raw(&bar64) == old64;
    d.report(
        28,
        "BARs restored after sizing",
        Seen::Holds(restored),
        Seen::Holds(true),
    );

    // 29: the ROM BAR reads 0 and ignores writes.
    let r = d.rd(ROM_BAR, Width::B4);
    d.report(29, "ROM BAR read", r, Seen::Value(0));
    d.wr(ROM_BAR, Width::B4, 0xffff_ffff);
    let r = d.rd(ROM_BAR, Width::B4);
    d.report(29, "ROM BAR after writing all ones", r, Seen::Value(0));
    d.wr(ROM_BAR, Width::B4, (free32 & !0x7ff) | 1);
    let r = d.rd(ROM_BAR, Width::B4);
    d.report(29, "ROM BAR after an enabling write", r, Seen::Value(0));

    // 30: Memory Space Enable cleared, then the BAR is accessed.
    d.mse(true);
    let bar_ipa = old64 & !0xf;
    let on = matches!(seen(load(bar_ipa, Width::B8), |v| v), Seen::Value(_));
    d.report(
        30,
        "BAR read with MSE on",
        Seen::Holds(on),
        Seen::Holds(true),
    );
    d.mse(false);
    let r = seen(load(bar_ipa, Width::B8), |v| v);
    d.report(30, "BAR read after MSE cleared", r, Seen::Abort);
    d.mse(true);
    let on = matches!(seen(load(bar_ipa, Width::B8), |v| v), Seen::Value(_));
    d.report(
        30,
        "BAR read after MSE set again",
        Seen::Holds(on),
        Seen::Holds(true),
    );

    // 31: malformed accesses, through a Normal-NC alias of the ECAM page.
    let page = d.ecam.addr(d.bdf, 0);
    if let Err(e) = mmu::map_region(ALIAS_VA, page, PAGE_SIZE, MemType::NormalNC) {
        println!("GUEST pci-hostile: cannot map the ECAM alias: {e}");
        return false;
    }
    let alias = |off: u64| ALIAS_VA + off;
    let bar0 = d.rd32(0x10);
    let r = seen(load(alias(0x00), Width::B8), |v| v);
    d.report(31, "8-byte read of the IDs", r, Seen::Value(u64::MAX));
    let _ = store(alias(0x10), Width::B8, 0);
    d.report(
        31,
        "8-byte write to BAR0/1",
        Seen::Value(d.rd32(0x10)),
        Seen::Value(bar0),
    );
    let r = seen(load(alias(0x02), Width::B4), |v| v);
    d.report(
        31,
        "4-byte read at 0x2 (crosses a dword)",
        r,
        Seen::Value(0xffff_ffff),
    );
    let r = seen(load(alias(0x03), Width::B2), |v| v);
    d.report(
        31,
        "2-byte read at 0x3 (crosses a dword)",
        r,
        Seen::Value(0xffff),
    );
    let r = seen(load(alias(0x01), Width::B2), |v| v);
    d.report(31, "2-byte read at 0x1 (unaligned)", r, Seen::Value(0xffff));
    let _ = store(alias(0x11), Width::B4, 0);
    d.report(
        31,
        "unaligned 4-byte write to BAR0",
        Seen::Value(d.rd32(0x10)),
        Seen::Value(bar0),
    );

    // 32: writes to read-only identity registers are ignored.
    let checks: [(&str, u16, Width, u64); 4] = [
        ("write to vendor/device ID", 0x00, Width::B4, 0xffff_ffff),
        ("write to header type", 0x0e, Width::B1, 0xff),
        ("write to capability pointer", 0x34, Width::B1, 0xff),
        ("write to interrupt pin", 0x3d, Width::B1, 0xff),
    ];
    for (what, off, width, value) in checks {
        let before = d.rd(off, width);
        d.wr(off, width, value);
        let after = d.rd(off, width);
        d.report(32, what, after, before);
    }

    // 33: functions the guest does not own.
    let foreign = [
        ("read of device 31", Bdf::new(pcie.bus_start, 31, 0)),
        (
            "read of function 1",
            Bdf::new(first.bdf.bus, first.bdf.dev, 1),
        ),
        (
            "read of the next bus",
            Bdf::new(pcie.bus_start.wrapping_add(1), 0, 0),
        ),
    ];
    for (what, bdf) in foreign {
        if bdf.bus > pcie.bus_end {
            continue;
        }
        let _ = store(d.ecam.addr(bdf, COMMAND), Width::B4, 0x6);
        let r = seen(load(d.ecam.addr(bdf, 0), Width::B4), |v| v);
        d.report(33, what, r, Seen::Value(0xffff_ffff));
    }

    // 34: capabilities (MSI and MSI-X among them) are hidden: no list in
    // Status, a zero pointer, and 0x40-0xFFF reads 0 and ignores writes.
    let status_caps = d.rd32(COMMAND) >> 16 & STATUS_CAP_LIST;
    d.report(
        34,
        "Status.Capabilities List",
        Seen::Value(status_caps),
        Seen::Value(0),
    );
    let r = d.rd(CAP_POINTER, Width::B1);
    d.report(34, "capability pointer", r, Seen::Value(0));
    let mut seen_nonzero = None;
    for off in (0x40u16..0x1000).step_by(4) {
        if d.rd32(off) != 0 {
            seen_nonzero = Some(off);
            break;
        }
    }
    d.report(
        34,
        "every dword in 0x40-0xfff reads 0",
        Seen::Holds(seen_nonzero.is_none()),
        Seen::Holds(true),
    );
    // An MSI-X Message Control write (enable, at the first capability slot).
    d.wr(0x40, Width::B4, 0xc000_0011);
    d.wr(0x44, Width::B4, 0xfee0_0000);
    let r = d.rd(0x40, Width::B4);
    d.report(
        34,
        "write to 0x40 (MSI-X control) ignored",
        r,
        Seen::Value(0),
    );

    // 35: Bus Master Enable.
    let cmd = d.rd32(COMMAND) & 0xffff;
    d.wr(COMMAND, Width::B2, cmd | BME | MSE);
    let bme = d.rd32(COMMAND) & BME;
    d.report(
        35,
        "Bus Master Enable set",
        Seen::Value(bme),
        Seen::Value(if dma_denied { 0 } else { BME }),
    );
    d.wr(COMMAND, Width::B2, cmd);

    let alive = firmware::detect_hypervisor() == Hypervisor::Ours;
    println!(
        "GUEST pci-hostile: hypervisor {}",
        if alive { "alive" } else { "DEAD" }
    );
    d.ok && alive
}
