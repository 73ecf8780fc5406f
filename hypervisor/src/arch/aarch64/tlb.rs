//! TLB and cache maintenance: the instructions behind the table engine's
//! maintenance traits, and data-cache maintenance by address range.

use core::arch::asm;

use crate::mm::addr::{Ipa, VirtAddr};
use crate::mm::pgtable::el2::El2TlbMaint;
use crate::mm::stage2::Stage2TlbMaint;

/// TLB maintenance for the hypervisor's own EL2 map.
pub struct El2Tlb;

impl El2TlbMaint for El2Tlb {
    fn invalidate_va(&mut self, va: VirtAddr, _level: usize) {
        // SAFETY: TLB invalidation by VA only drops cached translations.
        unsafe {
            asm!("dsb ishst", "tlbi vae2is, {}", in(reg) va.raw() >> 12,
                options(nostack, preserves_flags))
        };
    }

    fn sync(&mut self) {
        // SAFETY: barriers only order and complete earlier maintenance.
        unsafe { asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
    }
}

/// TLB maintenance for one VM's stage 2, by the VM's VMID.
///
/// The `TLBI` instructions that act on stage 2 take their VMID from the
/// VTTBR_EL2 loaded on the CPU that issues them. When that is not the VM's
/// (the VM is being built, or the CPU runs nothing yet), the VM's VTTBR is
/// loaded around the maintenance and the previous value put back, as KVM's
/// `__tlb_switch_to_guest` does; the inner-shareable forms then reach every
/// CPU running the VM.
pub struct Stage2Tlb {
    vttbr: u64,
}

impl Stage2Tlb {
    /// Maintenance for the VM whose VTTBR_EL2 (root and VMID) is `vttbr`.
    pub const fn for_vm(vttbr: u64) -> Self {
        Self { vttbr }
    }

    /// Runs `f` with this VM's VTTBR_EL2 loaded, then restores the CPU's.
    fn with_vmid(&self, f: impl FnOnce()) {
        let current: u64;
        // SAFETY: reading VTTBR_EL2 has no side effects.
        unsafe {
            asm!("mrs {}, vttbr_el2", out(reg) current, options(nomem, nostack, preserves_flags))
        };
        if current == self.vttbr {
            f();
            return;
        }
        // SAFETY: this runs at EL2 with no guest executing on this CPU, so
        // swapping VTTBR_EL2 changes no live translation; the previous value
        // is restored after the maintenance completes.
        unsafe {
            asm!("msr vttbr_el2, {}", "isb", in(reg) self.vttbr, options(nostack, preserves_flags))
        };
        f();
        // SAFETY: as above; the DSB completes the maintenance first.
        unsafe {
            asm!("dsb ish", "msr vttbr_el2, {}", "isb", in(reg) current,
                options(nostack, preserves_flags))
        };
    }

    /// Drops every TLB entry of this VMID, stage 1 and stage 2
    /// (`TLBI VMALLS12E1IS`), on every CPU, and waits for completion.
    pub fn invalidate_vmid(&mut self) {
        self.with_vmid(|| {
            // SAFETY: TLB invalidation only drops cached translations.
            unsafe {
                asm!(
                    "dsb ishst",
                    "tlbi vmalls12e1is",
                    "dsb ish",
                    "isb",
                    options(nostack, preserves_flags)
                )
            };
        });
    }
}

impl Stage2TlbMaint for Stage2Tlb {
    fn invalidate_ipa(&mut self, ipa: Ipa, _level: usize) {
        self.with_vmid(|| {
            // SAFETY: TLB invalidation by IPA only drops cached translations.
            unsafe {
                asm!("dsb ishst", "tlbi ipas2e1is, {}", in(reg) ipa.raw() >> 12,
                    options(nostack, preserves_flags))
            };
        });
    }

    fn invalidate_all_stage1_for_vmid(&mut self) {
        self.with_vmid(|| {
            // SAFETY: as above, for all stage-1 entries of the VMID.
            unsafe {
                asm!(
                    "dsb ish",
                    "tlbi vmalle1is",
                    options(nostack, preserves_flags)
                )
            };
        });
    }

    fn sync(&mut self) {
        // SAFETY: barriers only order and complete earlier maintenance.
        unsafe { asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
    }
}

/// Which data-cache operation to apply by address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOp {
    /// `DC CIVAC`: clean and invalidate to the point of coherency.
    CleanInvalidate,
    /// `DC IVAC`: invalidate to the point of coherency (discards dirty data).
    Invalidate,
}

/// Applies `op` to every data-cache line overlapping `[start, start + len)`,
/// in lines of `line` bytes, then waits for completion. A range reaching the
/// top of the address space stops there instead of wrapping.
///
/// # Safety
///
/// The range must be mapped (or the MMU off). With [`CacheOp::Invalidate`],
/// any dirty data in the range is lost: the caller must know there is none
/// it needs.
pub unsafe fn dcache_range(op: CacheOp, start: u64, len: u64, line: u64) {
    let line = line.max(4);
    let end = start.saturating_add(len);
    let mut addr = start & !(line - 1);
    while addr < end {
        match op {
            // SAFETY: maintenance by VA on a mapped address, per the caller.
            CacheOp::CleanInvalidate => unsafe {
                asm!("dc civac, {}", in(reg) addr, options(nostack, preserves_flags))
            },
            // SAFETY: as above; the caller accepts losing dirty lines.
            CacheOp::Invalidate => unsafe {
                asm!("dc ivac, {}", in(reg) addr, options(nostack, preserves_flags))
            },
        }
        match addr.checked_add(line) {
            Some(next) => addr = next,
            None => break,
        }
    }
    // SAFETY: barriers only wait for the maintenance above.
    unsafe { asm!("dsb sy", "isb", options(nostack, preserves_flags)) };
}

/// Zeroes `[start, start + len)` with `DC ZVA` (a whole block of
/// DCZID_EL0.BS words per instruction) where the architecture allows it,
/// and plain stores for the unaligned ends or when DCZID_EL0.DZP forbids it.
///
/// # Safety
///
/// The range must be mapped as Normal memory, writable, and unused by
/// anything else.
pub unsafe fn zero_range(start: u64, len: u64) {
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effects.
    unsafe { asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack, preserves_flags)) };
    let end = start.saturating_add(len);
    let block = 4u64 << (dczid & 0xf);
    let prohibited = dczid & (1 << 4) != 0;
    let first = start
        .checked_add(block - 1)
        .map_or(end, |a| a & !(block - 1))
        .min(end);
    let last = (end & !(block - 1)).max(first);
    let plain = |from: u64, to: u64| {
        if to > from {
            // SAFETY: inside the caller's range, which it hands over.
            unsafe { core::ptr::write_bytes(from as *mut u8, 0, (to - from) as usize) };
        }
    };
    if prohibited {
        plain(start, end);
        return;
    }
    plain(start, first);
    let mut addr = first;
    while addr < last {
        // SAFETY: a whole aligned block inside the caller's Normal-memory range.
        unsafe { asm!("dc zva, {}", in(reg) addr, options(nostack, preserves_flags)) };
        addr += block;
    }
    plain(last, end);
    // SAFETY: a barrier only orders the zeroing before later accesses.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
}
