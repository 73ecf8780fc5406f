//! Typed addresses: one type per address space, never silently converted.
//!
//! A physical address (`PhysAddr`), a guest intermediate physical address
//! (`Ipa`, the input of stage 2) and a hypervisor virtual address (`VirtAddr`,
//! the input of the EL2 stage-1 regime) are different things even where the
//! hypervisor's own map is the identity. Every conversion is a named function
//! at the place that knows why it holds.

use core::fmt;

/// Size of a translation granule and of the smallest mapping.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a level-2 block.
pub const SIZE_2M: u64 = 2 << 20;
/// Size of a level-1 block.
pub const SIZE_1G: u64 = 1 << 30;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Wraps a raw address value.
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }

            /// The raw address value.
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// `self + bytes`, or `None` on overflow.
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// `self - bytes`, or `None` on underflow.
            pub const fn checked_sub(self, bytes: u64) -> Option<Self> {
                match self.0.checked_sub(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// Distance in bytes from `base` up to `self`, or `None` if `self < base`.
            pub const fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }

            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                debug_assert!(align.is_power_of_two());
                self.0 & (align - 1) == 0
            }

            /// Rounds down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self {
                debug_assert!(align.is_power_of_two());
                Self(self.0 & !(align - 1))
            }

            /// Rounds up to a multiple of `align` (a power of two), or `None` on overflow.
            pub const fn checked_align_up(self, align: u64) -> Option<Self> {
                debug_assert!(align.is_power_of_two());
                match self.0.checked_add(align - 1) {
                    Some(v) => Some(Self(v & !(align - 1))),
                    None => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_type!(
    /// A physical address: what the hypervisor's stage 1 and a guest's stage 2 output.
    PhysAddr,
    "PA"
);
address_type!(
    /// An intermediate physical address: what a guest believes is physical; the input of stage 2.
    Ipa,
    "IPA"
);
address_type!(
    /// A virtual address in the hypervisor's own EL2 stage-1 regime.
    VirtAddr,
    "VA"
);

macro_rules! range_type {
    ($(#[$doc:meta])* $name:ident, $addr:ident) => {
        $(#[$doc])*
        /// Half-open: `[start, start + size)`. A range never wraps past the top of the
        /// address space: `new` refuses one that would.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name {
            start: $addr,
            size: u64,
        }

        impl $name {
            /// A range of `size` bytes from `start`, or `None` if it would wrap.
            pub const fn new(start: $addr, size: u64) -> Option<Self> {
                match start.raw().checked_add(size) {
                    Some(_) => Some(Self { start, size }),
                    None => None,
                }
            }

            /// The range `[start, end)`, or `None` if `end < start`.
            pub const fn from_bounds(start: $addr, end: $addr) -> Option<Self> {
                match end.raw().checked_sub(start.raw()) {
                    Some(size) => Some(Self { start, size }),
                    None => None,
                }
            }

            /// First address.
            pub const fn start(&self) -> $addr {
                self.start
            }

            /// One past the last address.
            pub const fn end(&self) -> $addr {
                // `new` checked this cannot overflow.
                $addr::new(self.start.raw() + self.size)
            }

            /// Size in bytes.
            pub const fn size(&self) -> u64 {
                self.size
            }

            /// Whether the range has no bytes.
            pub const fn is_empty(&self) -> bool {
                self.size == 0
            }

            /// Whether `addr` lies inside.
            pub const fn contains(&self, addr: $addr) -> bool {
                addr.raw() >= self.start.raw() && addr.raw() - self.start.raw() < self.size
            }

            /// Whether `other` lies wholly inside (an empty `other` inside any range
            /// that contains its start or ends at it).
            pub const fn contains_range(&self, other: &Self) -> bool {
                other.start.raw() >= self.start.raw() && other.end().raw() <= self.end().raw()
            }

            /// Whether the two ranges share at least one byte.
            pub const fn overlaps(&self, other: &Self) -> bool {
                self.size != 0
                    && other.size != 0
                    && self.start.raw() < other.end().raw()
                    && other.start.raw() < self.end().raw()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "[{:#x}..{:#x})", self.start.raw(), self.end().raw())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}..{:#x}", self.start.raw(), self.end().raw())
            }
        }
    };
}

range_type!(
    /// A range of physical addresses.
    PhysRange,
    PhysAddr
);
range_type!(
    /// A range of intermediate physical addresses.
    IpaRange,
    Ipa
);
range_type!(
    /// A range of hypervisor virtual addresses.
    VirtRange,
    VirtAddr
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_refuse_wraparound() {
        assert!(PhysRange::new(PhysAddr::new(u64::MAX - 4095), 4096).is_none());
        let top = PhysRange::new(PhysAddr::new(u64::MAX - 4096), 4096).unwrap();
        assert_eq!(top.end().raw(), u64::MAX);
        assert!(PhysRange::from_bounds(PhysAddr::new(10), PhysAddr::new(5)).is_none());
    }

    #[test]
    fn overlap_and_containment() {
        let a = PhysRange::new(PhysAddr::new(0x1000), 0x2000).unwrap();
        let b = PhysRange::new(PhysAddr::new(0x2fff), 1).unwrap();
        let c = PhysRange::new(PhysAddr::new(0x3000), 1).unwrap();
        let empty = PhysRange::new(PhysAddr::new(0x1800), 0).unwrap();
        assert!(a.overlaps(&b));
        assert!(!a.overlaps(&c));
        assert!(!a.overlaps(&empty));
        assert!(a.contains_range(&b));
        assert!(!a.contains_range(&c));
        assert!(a.contains(PhysAddr::new(0x2fff)));
        assert!(!a.contains(PhysAddr::new(0x3000)));
    }

    #[test]
    fn alignment() {
        let a = Ipa::new(0x4000_1234);
        assert_eq!(a.align_down(PAGE_SIZE), Ipa::new(0x4000_1000));
        assert_eq!(a.checked_align_up(SIZE_2M), Some(Ipa::new(0x4020_0000)));
        assert_eq!(Ipa::new(u64::MAX).checked_align_up(PAGE_SIZE), None);
        assert!(Ipa::new(0x4000_0000).is_aligned(SIZE_1G));
    }
}
