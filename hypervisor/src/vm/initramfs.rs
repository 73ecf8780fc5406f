//! Where the guest's initramfs goes in its RAM.
//!
//! The arm64 boot protocol (Linux `Documentation/arch/arm64/booting.rst`,
//! "Setup the device tree") asks that the initrd lie entirely within a
//! 1 GiB aligned window of at most 32 GiB that also covers the kernel
//! Image, and names it in `/chosen` (`linux,initrd-start`, `-end`). It goes
//! as high as it can below the device tree's reserve at the top of RAM,
//! page-aligned, above the kernel's footprint, and inside the 32 GiB from
//! the 1 GiB boundary below the kernel.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::mm::addr::{Ipa, IpaRange, PAGE_SIZE};

/// Alignment of the window that must hold both the kernel and the initrd.
const WINDOW_ALIGN: u64 = 1 << 30;
/// Largest such window.
const WINDOW_MAX: u64 = 32 << 30;

/// Why the initramfs cannot be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitramfsError {
    /// The initramfs is empty.
    Empty,
    /// No room between the kernel and the device tree's reserve.
    DoesNotFit {
        /// The initramfs's size.
        size: u64,
        /// Bytes free above the kernel (within the window).
        free: u64,
    },
}

impl core::fmt::Display for InitramfsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Empty => write!(f, "the guest initramfs is empty"),
            Self::DoesNotFit { size, free } => write!(
                f,
                "the guest initramfs needs {size:#x} bytes but only {free:#x} are free in guest RAM above the kernel (raise guest.mem)"
            ),
        }
    }
}

/// Where an initramfs of `size` bytes goes in `ram`, given the kernel's
/// footprint `kernel` (bss included) and `tail_reserve` bytes kept free at
/// the top of RAM for the device tree.
pub fn placement(
    ram: IpaRange,
    kernel: IpaRange,
    size: u64,
    tail_reserve: u64,
) -> Result<IpaRange, InitramfsError> {
    if size == 0 {
        return Err(InitramfsError::Empty);
    }
    let window_end = (kernel.start().raw() & !(WINDOW_ALIGN - 1)).saturating_add(WINDOW_MAX);
    let top = ram.end().raw().saturating_sub(tail_reserve).min(window_end);
    let floor = kernel
        .end()
        .raw()
        .checked_add(PAGE_SIZE - 1)
        .map_or(u64::MAX, |e| e & !(PAGE_SIZE - 1));
    let free = top.saturating_sub(floor);
    let start = top.checked_sub(size).map(|s| s & !(PAGE_SIZE - 1));
    match start {
        Some(start) if start >= floor => {
            IpaRange::new(Ipa::new(start), size).ok_or(InitramfsError::DoesNotFit { size, free })
        }
        _ => Err(InitramfsError::DoesNotFit { size, free }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn r(start: u64, size: u64) -> IpaRange {
        IpaRange::new(Ipa::new(start), size).unwrap()
    }

    #[test]
    fn goes_high_below_the_dt_reserve_page_aligned() {
        let ram = r(0x4000_0000, 256 << 20);
        let kernel = r(0x4000_0000, 30 << 20);
        let p = placement(ram, kernel, 2_553_744, 2 << 20).unwrap();
        assert_eq!(p.size(), 2_553_744);
        assert_eq!(p.start().raw() % PAGE_SIZE, 0);
        assert!(p.end().raw() <= ram.end().raw() - (2 << 20));
        assert!(ram.end().raw() - (2 << 20) - p.end().raw() < PAGE_SIZE);
        assert!(!p.overlaps(&kernel));
    }

    #[test]
    fn stays_in_the_32_gib_window_over_the_kernel() {
        let ram = r(0x4000_0000, 64 << 30);
        let kernel = r(0x4000_0000, 30 << 20);
        let p = placement(ram, kernel, 1 << 20, 2 << 20).unwrap();
        // The window: 32 GiB from the 1 GiB boundary at or below the kernel.
        assert_eq!(p.end().raw(), 0x4000_0000 + (32 << 30));
        assert!(p.start().raw() >= kernel.end().raw());
    }

    #[test]
    fn refuses_what_does_not_fit_or_is_empty() {
        let ram = r(0x4000_0000, 16 << 20);
        let kernel = r(0x4000_0000, 13 << 20);
        let e = placement(ram, kernel, 2 << 20, 2 << 20).unwrap_err();
        assert_eq!(
            e,
            InitramfsError::DoesNotFit {
                size: 2 << 20,
                free: 1 << 20
            }
        );
        assert!(e.to_string().contains("raise guest.mem"));
        assert_eq!(placement(ram, kernel, 0, 0), Err(InitramfsError::Empty));
        // A kernel reaching into the reserve leaves nothing.
        let big = r(0x4000_0000, 15 << 20);
        assert!(placement(ram, big, 1, 2 << 20).is_err());
    }
}
