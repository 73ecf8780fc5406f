//! The EL1 stage-1 MMU: an identity map in a static table pool, turned on
//! once at boot, and retyped later by the tests (the benchmark maps a BAR
//! window under each memory type in turn).

use core::arch::asm;
use core::cell::UnsafeCell;

use spin::Mutex;

use crate::mmu::{
    for_each_outside, tcr_el1, MapError, MemType, PageTable, TableMemory, TlbMaintenance, ENTRIES,
    MAIR_EL1, PAGE_SIZE, SCTLR_EL1_MMU_ON,
};
use crate::platform::{Platform, Region};

/// Tables in the pool: the boot map of QEMU virt needs about ten.
const POOL_TABLES: usize = 128;

#[repr(C, align(4096))]
struct Pool(UnsafeCell<[[u64; ENTRIES]; POOL_TABLES]>);

// SAFETY: the pool is only reached through `PoolMemory`, which lives inside
// the `TABLES` mutex.
unsafe impl Sync for Pool {}

static POOL: Pool = Pool(UnsafeCell::new([[0; ENTRIES]; POOL_TABLES]));

/// Hands out tables from the pool; addresses are physical and, as the map is
/// an identity map, also usable as pointers with the MMU on or off.
struct PoolMemory {
    next: usize,
}

impl PoolMemory {
    fn entry(table: u64, index: usize) -> *mut u64 {
        assert!(index < ENTRIES);
        (table as *mut u64).wrapping_add(index)
    }
}

impl TableMemory for PoolMemory {
    fn alloc_table(&mut self) -> Option<u64> {
        if self.next == POOL_TABLES {
            return None;
        }
        let table = POOL
            .0
            .get()
            .cast::<[u64; ENTRIES]>()
            .wrapping_add(self.next) as u64;
        self.next += 1;
        for index in 0..ENTRIES {
            self.write(table, index, 0);
        }
        Some(table)
    }

    fn read(&mut self, table: u64, index: usize) -> u64 {
        // SAFETY: `table` came from `alloc_table`, so it is a pool table,
        // identity-mapped, and the index is in range.
        unsafe { core::ptr::read_volatile(Self::entry(table, index)) }
    }

    fn write(&mut self, table: u64, index: usize, value: u64) {
        // SAFETY: as for `read`; volatile keeps the break-before-make order.
        unsafe { core::ptr::write_volatile(Self::entry(table, index), value) }
    }
}

struct Tlb;

impl TlbMaintenance for Tlb {
    fn invalidate_va(&mut self, va: u64) {
        // SAFETY: TLB maintenance for an entry just made invalid; it only
        // drops cached translations (Arm ARM D8.16.1 break-before-make).
        unsafe {
            asm!("dsb ishst", "tlbi vae1is, {page}", "dsb ish", page = in(reg) va >> 12,
                options(nostack, preserves_flags))
        };
    }

    fn publish(&mut self) {
        publish();
    }
}

fn publish() {
    // SAFETY: barriers only: new descriptors become visible to the walker
    // before later instructions.
    unsafe { asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
}

static TABLES: Mutex<Option<PageTable<PoolMemory>>> = Mutex::new(None);

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __text_end: u8;
    static __main_stack_guard: u8;
    static __exception_stack_guard: u8;
}

/// The loaded image, bss and stacks included.
pub fn image() -> Region {
    let start = core::ptr::addr_of!(__image_start) as u64;
    let end = core::ptr::addr_of!(__image_end) as u64;
    Region::new(start, end - start)
}

/// The image's code, from its header to the end of `.text`: bytes the
/// guest's own relocations never change, so they must equal the file's.
pub fn text() -> Region {
    let start = core::ptr::addr_of!(__image_start) as u64;
    let end = core::ptr::addr_of!(__text_end) as u64;
    Region::new(start, end - start)
}

/// The unmapped page below each stack.
pub fn guard_pages() -> [(u64, u64); 2] {
    [
        (core::ptr::addr_of!(__main_stack_guard) as u64, PAGE_SIZE),
        (
            core::ptr::addr_of!(__exception_stack_guard) as u64,
            PAGE_SIZE,
        ),
    ]
}

fn cache_line() -> u64 {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    4 << ((ctr >> 16) & 0xf)
}

/// Cleans and invalidates `region` to the point of coherency, so data written
/// with the caches off is not shadowed by stale lines once they are on.
pub fn clean_invalidate(region: Region) {
    let line = cache_line();
    let mut addr = region.base & !(line - 1);
    while addr < region.end() {
        // SAFETY: cache maintenance by VA on memory the guest owns; it does
        // not change memory contents that are already at the PoC.
        unsafe { asm!("dc civac, {}", in(reg) addr, options(nostack, preserves_flags)) };
        addr += line;
    }
    // SAFETY: a barrier.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Builds the identity map and turns on the MMU and caches: RAM (minus the
/// stack guard pages) as Normal-WB, read-write-executable; the device tree
/// blob if it lies outside RAM; the UART and the PCIe ECAM as Device-nGnRE.
pub fn init(platform: &Platform<'_>, dt: Region) -> Result<(), MapError> {
    let mut guard = TABLES.lock();
    let mut table = PageTable::new(PoolMemory { next: 0 })?;
    let guards = guard_pages();
    let mut result = Ok(());
    for ram in platform.ram.as_slice() {
        let ram = Region::new(
            (ram.base + PAGE_SIZE - 1) & !(PAGE_SIZE - 1),
            ram.size & !(PAGE_SIZE - 1),
        );
        for_each_outside(ram.base, ram.size, &guards, |base, size| {
            if result.is_ok() {
                result = table.map(base, base, size, MemType::NormalWB);
            }
        });
        result?;
    }
    for extra in [dt.page_aligned(), image()] {
        if !platform.ram.contains(extra.base) {
            table.map(extra.base, extra.base, extra.size, MemType::NormalWB)?;
        }
    }
    if let Some(uart) = platform.uart {
        let uart = uart.page_aligned();
        table.map(uart.base, uart.base, uart.size, MemType::DeviceNGnRE)?;
    }
    if let Some(pcie) = platform.pcie {
        let ecam = pcie.ecam.page_aligned();
        table.map(ecam.base, ecam.base, ecam.size, MemType::DeviceNGnRE)?;
    }
    let root = table.root();
    *guard = Some(table);
    drop(guard);

    clean_invalidate(image());
    clean_invalidate(dt);
    let pa_range = (read_id_aa64mmfr0() & 0xf) as u8;
    // SAFETY: the tables identity-map all RAM, including this code, its
    // stacks and data, and the UART, so turning translation on moves
    // nothing. Stale TLB entries are dropped first; the tables were written
    // with the caches off and cleaned to the PoC above.
    unsafe {
        asm!(
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {ttbr}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            "msr sctlr_el1, {sctlr}",
            "isb",
            mair = in(reg) MAIR_EL1,
            tcr = in(reg) tcr_el1(pa_range),
            ttbr = in(reg) root,
            sctlr = in(reg) SCTLR_EL1_MMU_ON,
            options(nostack, preserves_flags),
        )
    };
    Ok(())
}

fn read_id_aa64mmfr0() -> u64 {
    let value: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe {
        asm!("mrs {}, id_aa64mmfr0_el1", out(reg) value, options(nomem, nostack, preserves_flags))
    };
    value
}

fn with_table<R>(
    f: impl FnOnce(&mut PageTable<PoolMemory>) -> Result<R, MapError>,
) -> Result<R, MapError> {
    let mut guard = TABLES.lock();
    let table = guard.as_mut().ok_or(MapError::OutOfTables)?;
    f(table)
}

/// Maps `[va, va + size)` to `[pa, pa + size)` as `ty`; the range must be
/// unmapped so far.
pub fn map_region(va: u64, pa: u64, size: u64, ty: MemType) -> Result<(), MapError> {
    with_table(|t| t.map(va, pa, size, ty))?;
    publish();
    Ok(())
}

/// Maps one page for EL0 (see [`crate::mmu::PageTable::map_el0_page`]).
pub fn map_el0_page(va: u64, pa: u64, ty: MemType, exec: bool) -> Result<(), MapError> {
    with_table(|t| t.map_el0_page(va, pa, ty, exec))?;
    publish();
    Ok(())
}

/// Points the level-`level` entry for `va` at `table_pa`, a table the
/// guest does not own (see [`crate::mmu::PageTable::map_foreign_table`]).
pub fn map_foreign_table(va: u64, level: usize, table_pa: u64) -> Result<(), MapError> {
    with_table(|t| t.map_foreign_table(va, level, table_pa))?;
    publish();
    Ok(())
}

/// Changes the memory type of the mapped range `[va, va + size)`, with
/// break-before-make and TLBI VAE1IS per descriptor. The range must not be
/// in use while it changes (it is briefly unmapped).
pub fn remap(va: u64, size: u64, ty: MemType) -> Result<usize, MapError> {
    with_table(|t| t.remap(va, size, ty, &mut Tlb))
}

/// The physical address and memory type the guest's tables give `va`.
pub fn translate(va: u64) -> Option<(u64, MemType)> {
    TABLES.lock().as_mut()?.translate(va)
}

/// `AT S1E1R` on `va`, then PAR_EL1: the stage-1 view (under a hypervisor
/// the PA is an IPA and stage 2 is not applied).
pub fn at_s1e1r(va: u64) -> u64 {
    let par: u64;
    // SAFETY: an address translation query; it only writes PAR_EL1.
    unsafe {
        asm!("at s1e1r, {va}", "isb", "mrs {par}, par_el1", va = in(reg) va, par = out(reg) par,
            options(nostack, preserves_flags))
    };
    par
}

/// `AT S1E1W` on `va`, then PAR_EL1.
pub fn at_s1e1w(va: u64) -> u64 {
    let par: u64;
    // SAFETY: as for `at_s1e1r`.
    unsafe {
        asm!("at s1e1w, {va}", "isb", "mrs {par}, par_el1", va = in(reg) va, par = out(reg) par,
            options(nostack, preserves_flags))
    };
    par
}
