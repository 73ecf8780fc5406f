//! The hardware half of `check=attributes`: tables in frames, the EL1&0
//! regime loaded from EL2, `AT S12E1R/W`, and everything put back.

use alloc::string::String;

use super::{
    cpu_model, expectation, mair_el1, s1_page, s1_table, table_index, tcr_el1, va_for, Outcome,
    Par, Policy, Tally, SCTLR_EL1, VA_BASE,
};
use crate::arch::aarch64::cpu::CpuFeatures;
use crate::arch::aarch64::sysreg::{self, El1Regime, HCR_FWB, HCR_VM};
use crate::arch::aarch64::tlb::Stage2Tlb;
use crate::mm::addr::{Ipa, IpaRange, PhysAddr, PhysRange, PAGE_SIZE};
use crate::mm::attrs::{stage2_policy, Features, S1Type};
use crate::mm::frame::FrameAllocator;
use crate::mm::pgtable::pool::{IdentityMap, TablePool};
use crate::mm::stage2::{Stage2, Stage2Config, Vmid};
use crate::vm::layout;

/// VMID of the throw-away VM the check translates for.
const VMID: Vmid = Vmid(1);
/// Stage-2 table pages: the root (two concatenated tables for a 40-bit IPA
/// space) and a handful of lower levels.
const S2_POOL_PAGES: u64 = 32;
/// Stage-1 table pages: levels 1, 2 and 3.
const S1_TABLE_PAGES: u64 = 3;
/// Where the guest's stage-1 tables sit in guest RAM.
const S1_TABLES_IPA: Ipa = layout::RAM_BASE;

/// The IPA of the page mapped with `policy`: RAM in guest RAM, BARs in the
/// 32-bit PCI window, MMIO at the GICv2 CPU interface (the platform MMIO a
/// guest is given directly).
fn target_ipa(policy: Policy) -> Ipa {
    let bar = layout::PCI_MMIO32.start().raw();
    Ipa::new(match policy {
        Policy::Ram => layout::RAM_BASE.raw() + 0x10_0000,
        Policy::Device => bar,
        Policy::GuestChoice => bar + PAGE_SIZE,
        Policy::Cacheable => bar + 2 * PAGE_SIZE,
        Policy::Mmio => layout::GIC_CPU.start().raw(),
    })
}

/// Frames the check takes, returned when it ends.
struct Frames {
    s2_pool: PhysRange,
    s1_tables: PhysRange,
    targets: PhysRange,
}

/// Runs every combination and prints one `ATTR-CHECK` line each. Returns
/// `Err` with the number of failed combinations.
pub fn run(cpu: &CpuFeatures, frames: &mut FrameAllocator) -> Result<(), u32> {
    let alloc = |frames: &mut FrameAllocator, pages: u64, what: &str| {
        frames
            .alloc(pages * PAGE_SIZE, 16 * PAGE_SIZE)
            .map_err(|e| {
                log::error!("ATTR-CHECK: no memory for {what}: {e}");
                1u32
            })
    };
    let taken = Frames {
        s2_pool: alloc(frames, S2_POOL_PAGES, "stage-2 tables")?,
        s1_tables: alloc(frames, S1_TABLE_PAGES, "stage-1 tables")?,
        targets: alloc(frames, Policy::ALL.len() as u64, "target pages")?,
    };
    let saved = El1Regime::read();
    let saved_par = sysreg::par_el1();
    let result = check(cpu, &taken, saved);
    // SAFETY: restores the boot values (HCR_EL2.VM = 0): nothing runs at
    // EL1, and stage 2 is off again before its tables are freed below.
    unsafe { saved.load() };
    sysreg::set_par_el1(saved_par);
    let restored = El1Regime::read() == saved && sysreg::par_el1() == saved_par;
    if !restored {
        log::error!(
            "ATTR-CHECK: registers not restored: {:x?} instead of {saved:x?}",
            El1Regime::read()
        );
    }
    for r in [taken.s2_pool, taken.s1_tables, taken.targets] {
        if let Err(e) = frames.free(r) {
            log::warn!("ATTR-CHECK: could not return {r}: {e}");
        }
    }
    let mut tally = result?;
    if !restored {
        tally.failed += 1;
    }
    crate::println!("{}", tally.summary());
    if tally.failed == 0 {
        Ok(())
    } else {
        Err(tally.failed)
    }
}

/// Builds the tables, loads the regime, translates every combination and
/// drops the VMID's TLB entries. The caller restores the registers.
fn check(cpu: &CpuFeatures, taken: &Frames, saved: El1Regime) -> Result<Tally, u32> {
    let features = Features {
        fwb: cpu.fwb,
        dic: cpu.dic,
        idc: cpu.idc,
    };
    let model = cpu_model(cpu.core_name());
    let config = Stage2Config::new(cpu.parange, layout::IPA_BITS).map_err(|e| {
        log::error!("ATTR-CHECK: stage 2: {e}");
        1u32
    })?;
    let pool = TablePool::new(taken.s2_pool, IdentityMap).map_err(|e| {
        log::error!("ATTR-CHECK: {e}");
        1u32
    })?;
    let mut s2 = Stage2::new(config, VMID, features, pool).map_err(|e| {
        log::error!("ATTR-CHECK: {e}");
        1u32
    })?;

    // Stage-1 tables: zeroed (all invalid) before anything can walk them.
    let s1 = taken.s1_tables.start().raw();
    // SAFETY: the frames were just allocated for this check and the EL2
    // map covers all RAM read/write.
    unsafe { core::ptr::write_bytes(s1 as *mut u8, 0, (S1_TABLE_PAGES * PAGE_SIZE) as usize) };

    let mut regime = El1Regime {
        hcr_el2: saved.hcr_el2 | HCR_VM | if cpu.fwb { HCR_FWB } else { 0 },
        vtcr_el2: s2.vtcr(),
        vttbr_el2: s2.vttbr(),
        ttbr0_el1: S1_TABLES_IPA.raw(),
        tcr_el1: tcr_el1(config_ips(cpu)),
        mair_el1: mair_el1(),
        sctlr_el1: SCTLR_EL1,
    };
    // Stage 2 first, with VTTBR_EL2 loaded so that the engine's TLB
    // maintenance acts on this VMID. The stage-1 tables are still empty.
    // SAFETY: nothing runs at EL1 or EL0; the stage-2 root is valid (empty)
    // and the stage-1 tables are all invalid entries.
    unsafe { regime.load() };
    let mut tlb = Stage2Tlb::for_vm(s2.vttbr());
    let tables = IpaRange::new(S1_TABLES_IPA, S1_TABLE_PAGES * PAGE_SIZE).ok_or(1u32)?;
    let mapped = s2.map_ram(tables, taken.s1_tables.start(), &mut tlb);
    if let Err(e) = mapped {
        log::error!("ATTR-CHECK: mapping the stage-1 tables: {e}");
        tlb.invalidate_vmid();
        return Err(1);
    }

    let mut tally = Tally::default();
    let mut s2_attrs = [None; Policy::ALL.len()];
    for (i, policy) in Policy::ALL.into_iter().enumerate() {
        let page = IpaRange::new(target_ipa(policy), PAGE_SIZE).ok_or(1u32)?;
        let pa = PhysAddr::new(taken.targets.start().raw() + i as u64 * PAGE_SIZE);
        match stage2_policy(policy.intent(), features) {
            Ok(p) => {
                if let Err(e) = s2.map(page, pa, policy.intent(), &mut tlb) {
                    log::error!("ATTR-CHECK: mapping {} at stage 2: {e}", policy.name());
                    tlb.invalidate_vmid();
                    return Err(1);
                }
                s2_attrs[i] = Some(p);
            }
            Err(e) => {
                crate::println!(
                    "ATTR-CHECK cpu={model} fwb={} s2={} refused-as-expected: {e}",
                    u8::from(cpu.fwb),
                    policy.name()
                );
                tally.refused += 1;
            }
        }
    }

    // Stage 1: level 1 -> level 2 -> level 3, one page per (policy, type).
    let l1 = s1 as *mut u64;
    let l2 = (s1 + PAGE_SIZE) as *mut u64;
    let l3 = (s1 + 2 * PAGE_SIZE) as *mut u64;
    let ipa_of = |n: u64| S1_TABLES_IPA.raw() + n * PAGE_SIZE;
    let mut entries = alloc::vec![
        (l1, table_index(VA_BASE, 1), s1_table(ipa_of(1))),
        (l2, table_index(VA_BASE, 2), s1_table(ipa_of(2))),
    ];
    for policy in Policy::ALL {
        for t in S1Type::ALL {
            let va = va_for(policy, t);
            entries.push((l3, table_index(va, 3), s1_page(target_ipa(policy).raw(), t)));
        }
    }
    for (table, index, desc) in entries {
        // SAFETY: `table` is one of the three zeroed table pages and `index`
        // is below 512 (`table_index` masks it to 9 bits).
        unsafe { table.add(index).write_volatile(desc) };
    }
    // No TLB entry for this VMID can predate the tables, but the stage-2
    // maps ran with stage 1 already on: start from a clean slate.
    tlb.invalidate_vmid();

    for (i, policy) in Policy::ALL.into_iter().enumerate() {
        let Some(p) = s2_attrs[i] else { continue };
        for t in S1Type::ALL {
            let Some(expect) = expectation(t, p.memattr, p.shareability, cpu.fwb) else {
                log::error!("ATTR-CHECK: {} uses a reserved MemAttr", policy.name());
                tally.failed += 1;
                continue;
            };
            for write in [false, true] {
                // SAFETY: the regime is loaded; every table the walk reads
                // (stage 2 in the pool, stage 1 in the three pages mapped as
                // guest RAM) is in RAM.
                let par = unsafe { sysreg::at_s12e1(va_for(policy, t), write) };
                let outcome = Outcome {
                    policy,
                    s1: t,
                    write,
                    par: Par::decode(par),
                    expect,
                };
                let line: String = outcome.line(&model, cpu.fwb);
                if outcome.ok() {
                    tally.ok += 1;
                } else {
                    tally.failed += 1;
                }
                crate::println!("{line}");
            }
        }
    }

    tlb.invalidate_vmid();
    // Stage 2 off before the caller restores the rest and frees the tables.
    regime.hcr_el2 = saved.hcr_el2;
    // SAFETY: VM = 0: the EL1&0 regime no longer uses these tables.
    unsafe { sysreg::set_hcr_el2(regime.hcr_el2) };
    Ok(tally)
}

/// TCR_EL1.IPS for the guest: the 40-bit IPA size (0b010), or the CPU's PA
/// size if smaller.
fn config_ips(cpu: &CpuFeatures) -> u8 {
    cpu.ps_field().min(2)
}
