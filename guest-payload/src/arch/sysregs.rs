//! The `sysregs` and `no-vectors` tests: what the hypervisor's
//! system-register table gives a guest (`hypervisor/src/vm/sysreg.rs`).

use core::arch::asm;

use super::probe::probe;
use crate::println;

macro_rules! mrs {
    ($reg:literal) => {
        probe(|| {
            let v: u64;
            // SAFETY: one MRS; the probe skips it if it traps.
            unsafe { asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nostack)) };
            v
        })
    };
}

macro_rules! msr {
    ($reg:literal, $v:expr) => {
        probe(|| {
            // SAFETY: one MSR to a debug or trapped register; under the
            // hypervisor it has no effect on anything but the emulation.
            unsafe { asm!(concat!("msr ", $reg, ", {}"), in(reg) $v, options(nostack)) }
        })
    };
}

fn field(v: u64, lsb: u32) -> u64 {
    (v >> lsb) & 0xf
}

/// Checks the sanitized ID registers, the RAZ/WI debug registers and the
/// UNDEFs; one line per check. Under the hypervisor only: natively the
/// debug registers keep what is written.
pub fn run() -> bool {
    let mut ok = true;
    let mut check = |what: &str, good: bool, detail: u64| {
        println!(
            "GUEST sysregs: {what}: {} ({detail:#x})",
            if good { "ok" } else { "FAIL" }
        );
        ok &= good;
    };
    match (
        mrs!("id_aa64pfr0_el1"),
        mrs!("id_aa64pfr1_el1"),
        mrs!("id_aa64dfr0_el1"),
        mrs!("s3_0_c0_c4_4"), // ID_AA64ZFR0_EL1
    ) {
        (Ok(pfr0), Ok(pfr1), Ok(dfr0), Ok(zfr0)) => {
            check(
                "ID_AA64PFR0_EL1 shows no SVE, AMU, MPAM or EL2",
                field(pfr0, 32) == 0
                    && field(pfr0, 44) == 0
                    && field(pfr0, 40) == 0
                    && field(pfr0, 8) == 0,
                pfr0,
            );
            check(
                "ID_AA64PFR1_EL1 shows no SME or MTE",
                field(pfr1, 24) == 0 && field(pfr1, 8) == 0,
                pfr1,
            );
            check(
                "ID_AA64DFR0_EL1 shows debug but no PMU, SPE or trace",
                field(dfr0, 0) >= 6
                    && field(dfr0, 8) == 0
                    && field(dfr0, 32) == 0
                    && field(dfr0, 4) == 0,
                dfr0,
            );
            check("ID_AA64ZFR0_EL1 reads 0", zfr0 == 0, zfr0);
        }
        _ => check("ID registers readable", false, 0),
    }
    // Debug registers: RAZ/WI. Natively MDSCR_EL1 would keep the bit.
    let mdscr = msr!("mdscr_el1", 1u64 << 15).and_then(|()| mrs!("mdscr_el1"));
    check(
        "MDSCR_EL1 is RAZ/WI",
        mdscr == Ok(0),
        mdscr.unwrap_or(u64::MAX),
    );
    let bcr = msr!("dbgbcr0_el1", 1u64).and_then(|()| mrs!("dbgbcr0_el1"));
    check(
        "DBGBCR0_EL1 is RAZ/WI",
        bcr == Ok(0),
        bcr.unwrap_or(u64::MAX),
    );
    let unlocked = msr!("oslar_el1", 0u64).and_then(|()| mrs!("oslsr_el1"));
    let locked = msr!("oslar_el1", 1u64).and_then(|()| mrs!("oslsr_el1"));
    check(
        "OSLAR_EL1 0 clears OSLSR_EL1.OSLK",
        unlocked == Ok(0b1000),
        unlocked.unwrap_or(u64::MAX),
    );
    check(
        "OSLAR_EL1 1 sets OSLSR_EL1.OSLK",
        locked == Ok(0b1010),
        locked.unwrap_or(u64::MAX),
    );
    msr!("oslar_el1", 0u64).ok();
    // Hidden features UNDEF (EC 0); PMCR twice, logged once by the hypervisor.
    // CPACR_EL1.ZEN and FPEN let EL1 use SVE, so that ZCR_EL1 reaches the
    // hypervisor's CPTR_EL2.TZ trap instead of the guest's own.
    let cpacr = mrs!("cpacr_el1").unwrap_or(0);
    msr!("cpacr_el1", cpacr | (0b11 << 16) | (0b11 << 20)).ok();
    let zcr = mrs!("s3_0_c1_c2_0");
    msr!("cpacr_el1", cpacr).ok();
    for (name, r) in [
        ("PMCR_EL0", mrs!("pmcr_el0")),
        ("PMCR_EL0 again", mrs!("pmcr_el0")),
        ("ZCR_EL1", zcr),
        ("AMCR_EL0", mrs!("s3_3_c13_c2_0")),
    ] {
        let esr = r.err().map_or(u64::MAX, |f| f.esr);
        check(undef_line(name), esr >> 26 == 0, esr);
    }
    ok
}

/// The check line for an UNDEF probe.
fn undef_line(name: &str) -> &'static str {
    match name {
        "PMCR_EL0" => "PMCR_EL0 is UNDEFINED",
        "PMCR_EL0 again" => "PMCR_EL0 again is UNDEFINED",
        "ZCR_EL1" => "ZCR_EL1 is UNDEFINED",
        _ => "AMCR_EL0 is UNDEFINED",
    }
}

/// Turns its MMU off (as a kernel's first instructions run), clears
/// VBAR_EL1 and executes an MRS of PMCR_EL0, which the hypervisor makes
/// UNDEFINED: the exception goes to IPA 0x200, where stage 2 maps nothing,
/// and every fetch there aborts again. The hypervisor must stop the VM.
/// (With the MMU on, the fetch at 0x200 would fault at the guest's own
/// stage 1 and loop inside the guest, where no exit shows it.)
pub fn no_vectors() -> ! {
    println!("GUEST no-vectors: MMU off, VBAR_EL1 = 0, then MRS PMCR_EL0");
    // SAFETY: deliberately leaves the guest without vectors; the code runs
    // from an identity map, so it goes on at the same addresses with the
    // MMU off. Nothing after this runs unless the hypervisor fails to stop
    // the VM.
    unsafe {
        asm!(
            "mrs {x}, sctlr_el1",
            "bic {x}, {x}, #1",
            "msr sctlr_el1, {x}",
            "isb",
            "msr vbar_el1, xzr",
            "isb",
            "mrs {x}, pmcr_el0",
            x = out(reg) _,
            options(nostack)
        )
    };
    println!("GUEST no-vectors: still running after the UNDEF: FAIL");
    super::firmware::fail()
}
