//! The hypervisor image's own layout, from the linker script's symbols,
//! turned into typed ranges. The only place that names linker symbols.
//!
//! The hypervisor's EL2 map is the identity, so these addresses are at once
//! where the code runs (virtual) and where it sits (physical).

use crate::mm::addr::{PhysAddr, PhysRange};

#[cfg(target_os = "none")]
extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __main_stack_guard: u8;
    static __main_stack_bottom: u8;
    static __main_stack_top: u8;
    static __exception_stack_guard: u8;
    static __exception_stack_bottom: u8;
    static __exception_stack_top: u8;
    static __cpu_stacks_start: u8;
    static __cpu_stacks_end: u8;
    static __image_end: u8;
}

/// Secondary CPUs the image has stacks for (the linker script's `SECONDARY_CPUS`).
pub const SECONDARY_CPUS: usize = 15;
/// A secondary CPU's main stack (the linker script's `CPU_MAIN_STACK_SIZE`).
pub const CPU_MAIN_STACK_SIZE: u64 = 64 << 10;
/// A secondary CPU's exception stack (`CPU_EXCEPTION_STACK_SIZE`).
pub const CPU_EXCEPTION_STACK_SIZE: u64 = 16 << 10;
/// One slot: guard page, main stack, guard page, exception stack.
pub const CPU_STACK_SLOT: u64 = PAGE + CPU_MAIN_STACK_SIZE + PAGE + CPU_EXCEPTION_STACK_SIZE;
const PAGE: u64 = 4096;

/// The stacks of one CPU, each with an unmapped guard page below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuStacks {
    /// Guard page below the main stack: never mapped.
    pub main_guard: PhysRange,
    /// The main stack (SP_EL0).
    pub main: PhysRange,
    /// Guard page below the exception stack: never mapped.
    pub exception_guard: PhysRange,
    /// The exception stack (SP_EL2).
    pub exception: PhysRange,
}

/// The stacks in slot `slot` of the secondary-CPU stack area `area`, if
/// the area holds that slot.
pub fn slot_stacks(area: PhysRange, slot: usize) -> Option<CpuStacks> {
    let offset = (slot as u64).checked_mul(CPU_STACK_SLOT)?;
    let start = area.start().raw().checked_add(offset)?;
    if offset.checked_add(CPU_STACK_SLOT)? > area.size() {
        return None;
    }
    let r = |at: u64, size: u64| PhysRange::new(PhysAddr::new(start + at), size);
    Some(CpuStacks {
        main_guard: r(0, PAGE)?,
        main: r(PAGE, CPU_MAIN_STACK_SIZE)?,
        exception_guard: r(PAGE + CPU_MAIN_STACK_SIZE, PAGE)?,
        exception: r(2 * PAGE + CPU_MAIN_STACK_SIZE, CPU_EXCEPTION_STACK_SIZE)?,
    })
}

#[cfg(target_os = "none")]
fn addr(sym: &u8) -> PhysAddr {
    PhysAddr::new(sym as *const u8 as u64)
}

#[cfg(target_os = "none")]
fn range(start: &u8, end: &u8) -> PhysRange {
    // The linker script orders every pair used here, so `end >= start`.
    PhysRange::from_bounds(addr(start), addr(end)).unwrap_or_default()
}

/// The image's sections as loaded, each starting on a page.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    /// The whole image, header to the top of the stacks.
    pub image: PhysRange,
    /// Code: read-only, executable.
    pub text: PhysRange,
    /// Constants and relocation data: read-only.
    pub rodata: PhysRange,
    /// Data, bss: read-write (ends on a page boundary below the first guard).
    pub data: PhysRange,
    /// Guard page below the main stack: never mapped.
    pub main_stack_guard: PhysRange,
    /// The main stack (SP_EL0).
    pub main_stack: PhysRange,
    /// Guard page below the exception stack: never mapped.
    pub exception_stack_guard: PhysRange,
    /// The exception stack (SP_EL2).
    pub exception_stack: PhysRange,
    /// The secondary CPUs' stacks: [`SECONDARY_CPUS`] slots of
    /// [`CPU_STACK_SLOT`] bytes, see [`ImageLayout::cpu_stacks`].
    pub secondary_stacks: PhysRange,
}

impl ImageLayout {
    /// The stacks of CPU `index` (0 is the boot CPU, whose stacks are the
    /// image's main and exception stacks).
    pub fn cpu_stacks(&self, index: usize) -> Option<CpuStacks> {
        match index {
            0 => Some(CpuStacks {
                main_guard: self.main_stack_guard,
                main: self.main_stack,
                exception_guard: self.exception_stack_guard,
                exception: self.exception_stack,
            }),
            n => slot_stacks(self.secondary_stacks, n - 1),
        }
    }
}

/// Reads the layout from the linker symbols.
#[cfg(target_os = "none")]
pub fn image_layout() -> ImageLayout {
    // SAFETY: the linker script defines every symbol; only their addresses
    // are taken, never their contents.
    unsafe {
        ImageLayout {
            image: range(&__image_start, &__image_end),
            text: range(&__image_start, &__text_end),
            rodata: range(&__text_end, &__rodata_end),
            data: range(&__rodata_end, &__main_stack_guard),
            main_stack_guard: range(&__main_stack_guard, &__main_stack_bottom),
            main_stack: range(&__main_stack_bottom, &__main_stack_top),
            exception_stack_guard: range(&__exception_stack_guard, &__exception_stack_bottom),
            exception_stack: range(&__exception_stack_bottom, &__exception_stack_top),
            secondary_stacks: range(&__cpu_stacks_start, &__cpu_stacks_end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secondary_slots_tile_the_area_with_guards_below_each_stack() {
        let area = PhysRange::new(PhysAddr::new(0x4100_0000), 15 * CPU_STACK_SLOT).unwrap();
        assert_eq!(
            CPU_STACK_SLOT, 0x16000,
            "the linker script asserts the same"
        );
        let mut end = area.start();
        for slot in 0..15 {
            let s = slot_stacks(area, slot).unwrap();
            assert_eq!(s.main_guard.start(), end);
            assert_eq!(s.main_guard.end(), s.main.start());
            assert_eq!(s.main.end(), s.exception_guard.start());
            assert_eq!(s.exception_guard.end(), s.exception.start());
            assert_eq!(s.main.size(), CPU_MAIN_STACK_SIZE);
            end = s.exception.end();
        }
        assert_eq!(end, area.end());
        assert_eq!(slot_stacks(area, 15), None);
        assert_eq!(slot_stacks(area, usize::MAX), None);
    }
}
