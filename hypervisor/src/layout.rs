//! The hypervisor image's own layout, from the linker script's symbols,
//! turned into typed ranges. The only place that names linker symbols.
//!
//! The hypervisor's EL2 map is the identity, so these addresses are at once
//! where the code runs (virtual) and where it sits (physical).

use crate::mm::addr::{PhysAddr, PhysRange};

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
    static __image_end: u8;
}

fn addr(sym: &u8) -> PhysAddr {
    PhysAddr::new(sym as *const u8 as u64)
}

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
}

/// Reads the layout from the linker symbols.
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
        }
    }
}
