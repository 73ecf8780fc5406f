//! The guest image: an arm64 Linux `Image` or a flat binary, and where it goes
//! in guest RAM.
//!
//! An `Image` starts with the 64-byte header of the arm64 boot protocol
//! (Linux `Documentation/arch/arm64/booting.rst`, "Call the kernel image"):
//!
//! | offset | field       | use here |
//! |--------|-------------|----------|
//! | 0x00   | code0/code1 | the entry point is the first byte |
//! | 0x08   | text_offset | load at a 2 MiB-aligned base + text_offset |
//! | 0x10   | image_size  | bytes from the load address that must be free (with bss); 0: a kernel older than 3.17, text_offset is then 0x80000 |
//! | 0x18   | flags       | bit 0 big-endian (refused), bits 2:1 page size, bit 3 placement |
//! | 0x38   | magic       | `ARM\x64` (0x644D5241, little-endian) |
//!
//! Anything else, including a file shorter than the header, is a flat binary
//! loaded at the base of guest RAM and entered at its first byte.
//!
//! All arithmetic on header values is checked: a header can ask for anything
//! and gets an [`ImageError`], never a wrapped address or a panic.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::mm::addr::{Ipa, IpaRange, SIZE_2M};

/// Size of the arm64 `Image` header.
pub const HEADER_SIZE: usize = 64;
/// The header magic at 0x38: `ARM\x64` read as a little-endian u32.
pub const ARM64_MAGIC: u32 = 0x644D_5241;
/// text_offset of a kernel whose header has image_size 0 (before Linux 3.17).
pub const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;

const TEXT_OFFSET_AT: usize = 0x08;
const IMAGE_SIZE_AT: usize = 0x10;
const FLAGS_AT: usize = 0x18;
const MAGIC_AT: usize = 0x38;

const FLAG_BIG_ENDIAN: u64 = 1 << 0;
const FLAG_PAGE_SIZE_SHIFT: u32 = 1;
const FLAG_ANYWHERE: u64 = 1 << 3;

/// What kind of file the guest image is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    /// An arm64 Linux `Image` (or anything with its header).
    Image,
    /// A flat binary.
    Flat,
}

/// The kernel page size the header declares (flags bits 2:1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// Not stated.
    Unspecified,
    /// 4 KiB.
    Size4K,
    /// 16 KiB.
    Size16K,
    /// 64 KiB.
    Size64K,
}

/// A parsed guest image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestImage {
    /// `Image` or flat.
    pub kind: ImageKind,
    /// Where the first byte goes, from a 2 MiB-aligned base of RAM
    /// (text_offset; 0 for a flat binary, whose base needs no alignment).
    pub load_offset: u64,
    /// Bytes the image occupies from its load address, bss included:
    /// the larger of the file length and the header's image_size.
    pub memory_size: u64,
    /// Where execution starts, on the same scale as `load_offset`.
    pub entry_offset: u64,
    /// Page size the kernel was built for.
    pub page_size: PageSize,
    /// Header flags bit 3: the 2 MiB-aligned base may be anywhere in RAM
    /// (else as close as possible to its start; the lowest aligned base, which
    /// [`placement`] uses, satisfies both).
    pub anywhere: bool,
}

impl GuestImage {
    /// The entry point IPA of an image placed at `placed` (from [`placement`]).
    pub fn entry(&self, placed: &IpaRange) -> Option<Ipa> {
        placed
            .start()
            .checked_add(self.entry_offset.checked_sub(self.load_offset)?)
    }
}

/// Why an image cannot be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// The file is empty.
    Empty,
    /// The header says big-endian; the hypervisor runs guests little-endian.
    BigEndian,
    /// text_offset lies beyond the end of guest RAM.
    TextOffsetBeyondRam {
        /// The header's text_offset.
        text_offset: u64,
        /// Size of guest RAM.
        ram_size: u64,
    },
    /// The image does not fit in guest RAM below the reserved tail.
    DoesNotFit {
        /// Bytes the image needs from its load address.
        needed: u64,
        /// Bytes free from the load address (0 if the load address itself is out).
        available: u64,
    },
}

impl core::fmt::Display for ImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Empty => write!(f, "the guest image is empty"),
            Self::BigEndian => write!(
                f,
                "the guest Image is big-endian; only little-endian guests run"
            ),
            Self::TextOffsetBeyondRam {
                text_offset,
                ram_size,
            } => {
                write!(
                    f,
                    "Image text_offset {text_offset:#x} is beyond guest RAM ({ram_size:#x} bytes)"
                )
            }
            Self::DoesNotFit { needed, available } => {
                write!(f, "the guest image needs {needed:#x} bytes but only {available:#x} are free in guest RAM")
            }
        }
    }
}

fn le_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let field = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(field.try_into().ok()?))
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

/// Parses the guest image file. Never panics.
pub fn parse(image: &[u8]) -> Result<GuestImage, ImageError> {
    let file_len = image.len() as u64;
    if file_len == 0 {
        return Err(ImageError::Empty);
    }
    let flat = GuestImage {
        kind: ImageKind::Flat,
        load_offset: 0,
        memory_size: file_len,
        entry_offset: 0,
        page_size: PageSize::Unspecified,
        anywhere: true,
    };
    if image.len() < HEADER_SIZE || le_u32(image, MAGIC_AT) != Some(ARM64_MAGIC) {
        return Ok(flat);
    }
    let (Some(text_offset), Some(image_size), Some(flags)) = (
        le_u64(image, TEXT_OFFSET_AT),
        le_u64(image, IMAGE_SIZE_AT),
        le_u64(image, FLAGS_AT),
    ) else {
        return Ok(flat);
    };
    if flags & FLAG_BIG_ENDIAN != 0 {
        return Err(ImageError::BigEndian);
    }
    // booting.rst: image_size 0 marks a kernel older than 3.17, whose
    // text_offset may be in either endianness but is 0x80000.
    let (text_offset, memory_size) = if image_size == 0 {
        (LEGACY_TEXT_OFFSET, file_len)
    } else {
        (text_offset, image_size.max(file_len))
    };
    let page_size = match (flags >> FLAG_PAGE_SIZE_SHIFT) & 3 {
        1 => PageSize::Size4K,
        2 => PageSize::Size16K,
        3 => PageSize::Size64K,
        _ => PageSize::Unspecified,
    };
    Ok(GuestImage {
        kind: ImageKind::Image,
        load_offset: text_offset,
        memory_size,
        entry_offset: text_offset,
        page_size,
        anywhere: flags & FLAG_ANYWHERE != 0,
    })
}

/// Where `img` goes in guest RAM `ram`, keeping `reserved_tail` bytes at the
/// top of RAM free (for the device tree, say). An `Image` is loaded at the
/// lowest 2 MiB-aligned address in RAM plus text_offset; a flat binary at the
/// start of RAM. The range covers [`GuestImage::memory_size`] bytes, or
/// `file_len` if that is more. Never panics, never wraps.
pub fn placement(
    img: &GuestImage,
    ram: IpaRange,
    file_len: u64,
    reserved_tail: u64,
) -> Result<IpaRange, ImageError> {
    let needed = img.memory_size.max(file_len);
    if needed == 0 {
        return Err(ImageError::Empty);
    }
    let too_big = |available| ImageError::DoesNotFit { needed, available };
    let load = match img.kind {
        ImageKind::Flat => ram.start().checked_add(img.load_offset),
        ImageKind::Image => {
            if img.load_offset >= ram.size() {
                return Err(ImageError::TextOffsetBeyondRam {
                    text_offset: img.load_offset,
                    ram_size: ram.size(),
                });
            }
            ram.start()
                .checked_align_up(SIZE_2M)
                .and_then(|base| base.checked_add(img.load_offset))
        }
    }
    .ok_or(too_big(0))?;
    let usable_end = ram.end().checked_sub(reserved_tail).ok_or(too_big(0))?;
    let available = usable_end.offset_from(load).ok_or(too_big(0))?;
    if needed > available || load < ram.start() {
        return Err(too_big(available));
    }
    IpaRange::new(load, needed).ok_or(too_big(available))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    fn header(text_offset: u64, image_size: u64, flags: u64, len: usize) -> Vec<u8> {
        let mut h = vec![0u8; len.max(HEADER_SIZE)];
        h[0..4].copy_from_slice(&0x1400_0000u32.to_le_bytes()); // b .
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[0x38..0x3C].copy_from_slice(b"ARM\x64");
        h
    }

    fn ram(start: u64, size: u64) -> IpaRange {
        IpaRange::new(Ipa::new(start), size).unwrap()
    }

    #[test]
    fn linux_image_header() {
        let file = header(0, 0x1A0_0000, 0b1010, 0x100_0000);
        let img = parse(&file).unwrap();
        assert_eq!(
            img,
            GuestImage {
                kind: ImageKind::Image,
                load_offset: 0,
                memory_size: 0x1A0_0000,
                entry_offset: 0,
                page_size: PageSize::Size4K,
                anywhere: true,
            }
        );
        let placed = placement(&img, ram(0x4000_0000, GIB), file.len() as u64, 2 * MIB).unwrap();
        assert_eq!(placed, ram(0x4000_0000, 0x1A0_0000));
        assert_eq!(img.entry(&placed), Some(Ipa::new(0x4000_0000)));
    }

    #[test]
    fn page_size_flags() {
        for (bits, size) in [
            (0, PageSize::Unspecified),
            (1, PageSize::Size4K),
            (2, PageSize::Size16K),
            (3, PageSize::Size64K),
        ] {
            let img = parse(&header(0, 4096, bits << 1, 64)).unwrap();
            assert_eq!(img.page_size, size);
            assert!(!img.anywhere);
        }
    }

    #[test]
    fn text_offset_is_kept_from_a_2m_aligned_base() {
        let img = parse(&header(0x8_0000, 0x100_0000, 0, 0x1000)).unwrap();
        assert_eq!(img.load_offset, 0x8_0000);
        // RAM already aligned.
        assert_eq!(
            placement(&img, ram(0x4000_0000, GIB), 0x1000, 0)
                .unwrap()
                .start(),
            Ipa::new(0x4008_0000)
        );
        // RAM starting off a 2 MiB boundary: the next boundary is the base.
        let placed = placement(&img, ram(0x4010_0000, GIB), 0x1000, 0).unwrap();
        assert_eq!(placed.start(), Ipa::new(0x4028_0000));
        assert_eq!(img.entry(&placed), Some(Ipa::new(0x4028_0000)));
    }

    #[test]
    fn legacy_header_without_image_size() {
        let img = parse(&header(0x1234_5678_0000_0000, 0, 0, 0x4_0000)).unwrap();
        assert_eq!(img.load_offset, LEGACY_TEXT_OFFSET);
        assert_eq!(img.entry_offset, LEGACY_TEXT_OFFSET);
        assert_eq!(img.memory_size, 0x4_0000);
        assert_eq!(
            placement(&img, ram(0x8000_0000, GIB), 0x4_0000, 0).unwrap(),
            ram(0x8008_0000, 0x4_0000)
        );
    }

    #[test]
    fn image_size_smaller_than_the_file_uses_the_file() {
        let img = parse(&header(0, 0x100, 0, 0x2000)).unwrap();
        assert_eq!(img.memory_size, 0x2000);
    }

    #[test]
    fn big_endian_is_refused() {
        assert_eq!(
            parse(&header(0, 0x100_0000, 1, 64)),
            Err(ImageError::BigEndian)
        );
        assert_eq!(parse(&header(0, 0, 0b1111, 64)), Err(ImageError::BigEndian));
    }

    #[test]
    fn flat_binaries() {
        assert_eq!(parse(&[]), Err(ImageError::Empty));
        // Shorter than a header, even with the magic where it would be.
        let short = header(0, 0x100, 1, 64)[..63].to_vec();
        let img = parse(&short).unwrap();
        assert_eq!(img.kind, ImageKind::Flat);
        assert_eq!(img.memory_size, 63);
        // Long enough but no magic.
        let mut no_magic = header(0x8_0000, 0x100_0000, 0, 4096);
        no_magic[0x3B] = 0x65;
        let img = parse(&no_magic).unwrap();
        assert_eq!(
            (img.kind, img.load_offset, img.entry_offset, img.memory_size),
            (ImageKind::Flat, 0, 0, 4096)
        );
        // A flat binary needs no 2 MiB alignment.
        let placed = placement(&img, ram(0x4010_0000, 16 * MIB), 4096, 0).unwrap();
        assert_eq!(placed, ram(0x4010_0000, 4096));
        assert_eq!(img.entry(&placed), Some(Ipa::new(0x4010_0000)));
    }

    #[test]
    fn absurd_text_offsets_are_errors() {
        for text_offset in [u64::MAX, u64::MAX - 0xFFFF, GIB, 1 << 63] {
            let img = parse(&header(text_offset, 0x1000, 0, 64)).unwrap();
            assert_eq!(
                placement(&img, ram(0x4000_0000, GIB), 64, 0),
                Err(ImageError::TextOffsetBeyondRam {
                    text_offset,
                    ram_size: GIB
                }),
                "{text_offset:#x}"
            );
        }
    }

    #[test]
    fn images_that_do_not_fit() {
        let r = ram(0x4000_0000, 64 * MIB);
        // image_size beyond RAM, up to u64::MAX.
        for image_size in [64 * MIB + 1, u64::MAX, u64::MAX - 0x1000] {
            let img = parse(&header(0, image_size, 0, 64)).unwrap();
            assert_eq!(
                placement(&img, r, 64, 0),
                Err(ImageError::DoesNotFit {
                    needed: image_size,
                    available: 64 * MIB
                }),
                "{image_size:#x}"
            );
        }
        // Fits only without the reserved tail.
        let img = parse(&header(0, 62 * MIB, 0, 64)).unwrap();
        assert!(placement(&img, r, 64, 2 * MIB).is_ok());
        assert_eq!(
            placement(&img, r, 64, 2 * MIB + 1),
            Err(ImageError::DoesNotFit {
                needed: 62 * MIB,
                available: 2 * MIB * 31 - 1
            })
        );
        // The tail larger than RAM.
        assert_eq!(
            placement(&img, r, 64, u64::MAX),
            Err(ImageError::DoesNotFit {
                needed: 62 * MIB,
                available: 0
            })
        );
        // text_offset inside RAM but the image runs off its end.
        let img = parse(&header(63 * MIB, 2 * MIB, 0, 64)).unwrap();
        assert_eq!(
            placement(&img, r, 64, 0),
            Err(ImageError::DoesNotFit {
                needed: 2 * MIB,
                available: MIB
            })
        );
        // RAM with no 2 MiB boundary inside, and RAM at the top of the address space.
        let img = parse(&header(0, 4096, 0, 64)).unwrap();
        assert!(placement(&img, ram(0x4010_0000, MIB), 64, 0).is_err());
        assert!(placement(&img, ram(u64::MAX - 0xF_FFFF, 0xF_FFFF), 64, 0).is_err());
        // A file longer than the image size counts.
        assert_eq!(
            placement(&parse(&header(0, 4096, 0, 64)).unwrap(), r, 65 * MIB, 0),
            Err(ImageError::DoesNotFit {
                needed: 65 * MIB,
                available: 64 * MIB
            })
        );
    }

    #[test]
    fn random_headers_never_panic_or_wrap() {
        let mut s = 0xA076_1D64_78BD_642Fu64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..50_000 {
            let pick = |v: u64, k: u64| match k % 4 {
                0 => v,
                1 => v % (4 * GIB),
                2 => u64::MAX - (v % 0x10_0000),
                _ => v % 0x1000,
            };
            let (a, b, c, d) = (next(), next(), next(), next());
            let file = header(pick(a, b), pick(b, c), c & 0xE, 64 + (d % 64) as usize);
            let img = parse(&file).unwrap();
            let start = pick(d, a) & !0xFFF;
            let Some(r) = IpaRange::new(Ipa::new(start), pick(c, d)) else {
                continue;
            };
            if let Ok(placed) = placement(&img, r, file.len() as u64, pick(b, a)) {
                assert!(r.contains_range(&placed), "{placed:?} outside {r:?}");
                assert!(placed.size() >= img.memory_size);
            }
        }
    }
}
