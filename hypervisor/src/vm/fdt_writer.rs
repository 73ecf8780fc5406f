//! A writer for flattened device trees (DTB version 17), the format of the
//! Devicetree Specification v0.4, chapter 5.
//!
//! The tree is written front to back, the way `dtc` and libfdt's sequential-write
//! mode do it: open a node, write its properties, write its subnodes, close it.
//! Every call checks what the format and the specification's naming rules
//! require and returns an error instead of producing a blob a reader would
//! misparse. A call that fails changes nothing, so the writer stays consistent.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use alloc::vec::Vec;
use core::fmt;

/// `magic` of the header (§5.2).
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// The version this writer produces (§5.2).
pub const FDT_VERSION: u32 = 17;
/// The oldest version a version-17 blob stays compatible with (§5.2).
pub const FDT_LAST_COMP_VERSION: u32 = 16;

/// Structure block tokens (§5.4.1).
const FDT_BEGIN_NODE: u32 = 0x1;
const FDT_END_NODE: u32 = 0x2;
const FDT_PROP: u32 = 0x3;
const FDT_END: u32 = 0x9;

/// Size of the version-17 header: ten big-endian 32-bit fields (§5.2).
const HEADER_SIZE: usize = 40;

/// Longest node-name (the part before `@`) and property name (§2.2.1, §2.2.4).
pub const MAX_NAME_LEN: usize = 31;
/// Longest unit address (the part after `@`). The specification leaves it to
/// bindings; this bound only keeps names sane.
pub const MAX_UNIT_ADDRESS_LEN: usize = 32;

/// Why a tree could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdtError {
    /// `end_node` with no node open.
    UnbalancedEndNode,
    /// `finish` while this many nodes are still open.
    UnclosedNodes(usize),
    /// `finish` before any root node was written.
    NoRoot,
    /// A second top-level node: a tree has exactly one root.
    MultipleRoots,
    /// A property outside any node.
    PropertyOutsideNode,
    /// A property after a subnode of the same node; properties come first (§5.4.2).
    PropertyAfterSubnode,
    /// A property name already used in the same node.
    DuplicateProperty,
    /// A node name already used by a sibling.
    DuplicateNode,
    /// A node name that is empty (except the root's, which must be), too long,
    /// or holds a character outside Table 2.1 (a NUL among them).
    InvalidNodeName,
    /// A property name that is empty, too long, or holds a character outside
    /// Table 2.2 (a NUL among them).
    InvalidPropertyName,
    /// A cell count other than 1 or 2 (0 allowed for sizes), or a value that
    /// does not fit the cells it is written in.
    InvalidCells,
    /// A string value holding a NUL, which would split it.
    InvalidString,
    /// A phandle of 0 or 0xffffffff (§2.3.3), or none left to allocate.
    InvalidPhandle,
    /// A memory reservation of zero size or one that wraps.
    InvalidReservation,
    /// The blob or one property would not fit the 32-bit sizes and offsets.
    TooLarge,
    /// A description of a tree to build (such as a guest's configuration) is
    /// inconsistent; the text says how.
    BadDescription(&'static str),
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnbalancedEndNode => f.write_str("end_node without an open node"),
            Self::UnclosedNodes(n) => write!(f, "{n} node(s) still open at finish"),
            Self::NoRoot => f.write_str("no root node"),
            Self::MultipleRoots => f.write_str("more than one root node"),
            Self::PropertyOutsideNode => f.write_str("property outside any node"),
            Self::PropertyAfterSubnode => f.write_str("property after a subnode"),
            Self::DuplicateProperty => f.write_str("duplicate property name in a node"),
            Self::DuplicateNode => f.write_str("duplicate node name among siblings"),
            Self::InvalidNodeName => f.write_str("invalid node name"),
            Self::InvalidPropertyName => f.write_str("invalid property name"),
            Self::InvalidCells => f.write_str("invalid cell count or value too wide"),
            Self::InvalidString => f.write_str("string value holds a NUL"),
            Self::InvalidPhandle => f.write_str("invalid or exhausted phandle"),
            Self::InvalidReservation => f.write_str("invalid memory reservation"),
            Self::TooLarge => f.write_str("tree too large for 32-bit offsets"),
            Self::BadDescription(why) => write!(f, "bad tree description: {why}"),
        }
    }
}

/// What the writer remembers about one open node.
#[derive(Default)]
struct OpenNode {
    /// String-block offsets of the names of the properties written so far.
    props: Vec<u32>,
    /// Where in the structure block each child's name lies, to refuse duplicates.
    children: Vec<(usize, usize)>,
    /// Whether a subnode was written: no properties may follow.
    has_child: bool,
}

/// Builds a flattened device tree blob.
pub struct FdtWriter {
    structure: Vec<u8>,
    strings: Vec<u8>,
    reservations: Vec<(u64, u64)>,
    open: Vec<OpenNode>,
    root_done: bool,
    boot_cpuid_phys: u32,
    next_phandle: u32,
}

impl Default for FdtWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl FdtWriter {
    /// An empty tree: no nodes, no reservations, boot CPU 0.
    pub fn new() -> Self {
        Self {
            structure: Vec::new(),
            strings: Vec::new(),
            reservations: Vec::new(),
            open: Vec::new(),
            root_done: false,
            boot_cpuid_phys: 0,
            next_phandle: 1,
        }
    }

    /// Sets the header's `boot_cpuid_phys`: the `reg` of the boot CPU's node.
    pub fn set_boot_cpuid_phys(&mut self, id: u32) {
        self.boot_cpuid_phys = id;
    }

    /// Adds a memory reservation block entry (§5.3). Zero-size entries are
    /// refused: an all-zero entry is the block's terminator.
    pub fn add_reservation(&mut self, address: u64, size: u64) -> Result<(), FdtError> {
        if size == 0 || address.checked_add(size).is_none() {
            return Err(FdtError::InvalidReservation);
        }
        self.reservations.push((address, size));
        Ok(())
    }

    /// A fresh phandle, to be written into the node it names with
    /// [`property_phandle`](Self::property_phandle). Allocating before the node
    /// is written lets earlier nodes refer to it.
    pub fn alloc_phandle(&mut self) -> Result<u32, FdtError> {
        let p = self.next_phandle;
        if p == 0 || p == u32::MAX {
            return Err(FdtError::InvalidPhandle);
        }
        self.next_phandle = p.wrapping_add(1);
        Ok(p)
    }

    /// Opens a node. The root's name is empty; every other name is a node-name
    /// with an optional `@unit-address` (§2.2.1).
    pub fn begin_node(&mut self, name: &str) -> Result<(), FdtError> {
        if self.open.is_empty() {
            if self.root_done {
                return Err(FdtError::MultipleRoots);
            }
            if !name.is_empty() {
                return Err(FdtError::InvalidNodeName);
            }
        } else {
            validate_node_name(name)?;
        }
        if let Some(parent) = self.open.last() {
            let dup = parent.children.iter().any(|&(at, len)| {
                self.structure.get(at..at.saturating_add(len)) == Some(name.as_bytes())
            });
            if dup {
                return Err(FdtError::DuplicateNode);
            }
        }
        push_u32(&mut self.structure, FDT_BEGIN_NODE);
        let at = self.structure.len();
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        pad4(&mut self.structure);
        if let Some(parent) = self.open.last_mut() {
            parent.children.push((at, name.len()));
            parent.has_child = true;
        }
        self.open.push(OpenNode::default());
        Ok(())
    }

    /// Closes the innermost open node.
    pub fn end_node(&mut self) -> Result<(), FdtError> {
        self.open.pop().ok_or(FdtError::UnbalancedEndNode)?;
        push_u32(&mut self.structure, FDT_END_NODE);
        if self.open.is_empty() {
            self.root_done = true;
        }
        Ok(())
    }

    /// Writes a property with a raw value into the innermost open node.
    pub fn property(&mut self, name: &str, value: &[u8]) -> Result<(), FdtError> {
        validate_property_name(name)?;
        let node = self.open.last().ok_or(FdtError::PropertyOutsideNode)?;
        if node.has_child {
            return Err(FdtError::PropertyAfterSubnode);
        }
        let len = u32::try_from(value.len()).map_err(|_| FdtError::TooLarge)?;
        let existing = find_string(&self.strings, name);
        if let Some(off) = existing {
            if node.props.contains(&off) {
                return Err(FdtError::DuplicateProperty);
            }
        }
        let nameoff = match existing {
            Some(off) => off,
            None => {
                let off = u32::try_from(self.strings.len()).map_err(|_| FdtError::TooLarge)?;
                self.strings.extend_from_slice(name.as_bytes());
                self.strings.push(0);
                off
            }
        };
        push_u32(&mut self.structure, FDT_PROP);
        push_u32(&mut self.structure, len);
        push_u32(&mut self.structure, nameoff);
        self.structure.extend_from_slice(value);
        pad4(&mut self.structure);
        if let Some(node) = self.open.last_mut() {
            node.props.push(nameoff);
        }
        Ok(())
    }

    /// A property with no value, a boolean such as `interrupt-controller`.
    pub fn property_empty(&mut self, name: &str) -> Result<(), FdtError> {
        self.property(name, &[])
    }

    /// A one-cell property.
    pub fn property_u32(&mut self, name: &str, value: u32) -> Result<(), FdtError> {
        self.property(name, &value.to_be_bytes())
    }

    /// A two-cell property, most significant cell first.
    pub fn property_u64(&mut self, name: &str, value: u64) -> Result<(), FdtError> {
        self.property(name, &value.to_be_bytes())
    }

    /// A `<prop-encoded-array>` of cells.
    pub fn property_cells(&mut self, name: &str, cells: &[u32]) -> Result<(), FdtError> {
        let bytes: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.property(name, &bytes)
    }

    /// A NUL-terminated string.
    pub fn property_string(&mut self, name: &str, value: &str) -> Result<(), FdtError> {
        self.property_string_list(name, &[value])
    }

    /// A `<stringlist>`: each string NUL-terminated, one after the other.
    pub fn property_string_list(&mut self, name: &str, values: &[&str]) -> Result<(), FdtError> {
        let mut bytes = Vec::new();
        for v in values {
            if v.as_bytes().contains(&0) {
                return Err(FdtError::InvalidString);
            }
            bytes.extend_from_slice(v.as_bytes());
            bytes.push(0);
        }
        self.property(name, &bytes)
    }

    /// A `phandle` property (§2.3.3).
    pub fn property_phandle(&mut self, phandle: u32) -> Result<(), FdtError> {
        if phandle == 0 || phandle == u32::MAX {
            return Err(FdtError::InvalidPhandle);
        }
        self.property_u32("phandle", phandle)
    }

    /// A `reg` property of `(address, size)` pairs in the parent's
    /// `#address-cells` (1 or 2) and `#size-cells` (0, 1 or 2) (§2.3.6). With no
    /// size cells every size must be 0.
    pub fn property_reg(
        &mut self,
        regions: &[(u64, u64)],
        address_cells: u32,
        size_cells: u32,
    ) -> Result<(), FdtError> {
        if !(1..=2).contains(&address_cells) || size_cells > 2 {
            return Err(FdtError::InvalidCells);
        }
        let mut cells = Vec::with_capacity(regions.len() * (address_cells + size_cells) as usize);
        for &(address, size) in regions {
            push_cells(&mut cells, address, address_cells)?;
            push_cells(&mut cells, size, size_cells)?;
        }
        self.property_cells("reg", &cells)
    }

    /// Lays out the blob: header, memory reservation block, structure block,
    /// strings block (§5.1), in the order and alignment `dtc` uses.
    pub fn finish(self) -> Result<Vec<u8>, FdtError> {
        if !self.open.is_empty() {
            return Err(FdtError::UnclosedNodes(self.open.len()));
        }
        if !self.root_done {
            return Err(FdtError::NoRoot);
        }
        // The header is 40 bytes, already a multiple of the block's 8-byte alignment.
        let off_mem_rsvmap = HEADER_SIZE;
        let rsvmap_len = (self.reservations.len() + 1) * 16;
        let off_dt_struct = off_mem_rsvmap + rsvmap_len;
        let size_dt_struct = self.structure.len() + 4;
        let off_dt_strings = off_dt_struct + size_dt_struct;
        let size_dt_strings = self.strings.len();
        let totalsize = off_dt_strings + size_dt_strings;
        let to_u32 = |v: usize| u32::try_from(v).map_err(|_| FdtError::TooLarge);

        let mut blob = Vec::with_capacity(totalsize);
        for field in [
            FDT_MAGIC,
            to_u32(totalsize)?,
            to_u32(off_dt_struct)?,
            to_u32(off_dt_strings)?,
            to_u32(off_mem_rsvmap)?,
            FDT_VERSION,
            FDT_LAST_COMP_VERSION,
            self.boot_cpuid_phys,
            to_u32(size_dt_strings)?,
            to_u32(size_dt_struct)?,
        ] {
            push_u32(&mut blob, field);
        }
        for &(address, size) in self.reservations.iter().chain(&[(0, 0)]) {
            blob.extend_from_slice(&address.to_be_bytes());
            blob.extend_from_slice(&size.to_be_bytes());
        }
        blob.extend_from_slice(&self.structure);
        push_u32(&mut blob, FDT_END);
        blob.extend_from_slice(&self.strings);
        debug_assert_eq!(blob.len(), totalsize);
        Ok(blob)
    }
}

fn push_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

fn pad4(buf: &mut Vec<u8>) {
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Appends `value` as `count` big-endian cells, or fails if it does not fit.
fn push_cells(cells: &mut Vec<u32>, value: u64, count: u32) -> Result<(), FdtError> {
    match count {
        0 if value == 0 => {}
        1 => cells.push(u32::try_from(value).map_err(|_| FdtError::InvalidCells)?),
        2 => {
            cells.push((value >> 32) as u32);
            cells.push(value as u32);
        }
        _ => return Err(FdtError::InvalidCells),
    }
    Ok(())
}

/// Offset of `name` in the strings block, as dtc finds it: the first place
/// where `name` followed by NUL starts, a suffix of a longer name included.
fn find_string(strings: &[u8], name: &str) -> Option<u32> {
    let needle = name.as_bytes();
    let n = needle.len();
    (0..strings.len().checked_sub(n)?)
        .find(|&i| {
            strings
                .get(i..)
                .is_some_and(|rest| rest.starts_with(needle) && rest.get(n) == Some(&0))
        })
        .and_then(|i| u32::try_from(i).ok())
}

/// Characters of a node-name (Table 2.1).
fn is_node_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b',' | b'.' | b'_' | b'+' | b'-')
}

/// Characters of a property name (Table 2.2).
fn is_property_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b',' | b'.' | b'_' | b'+' | b'?' | b'#' | b'-')
}

fn validate_node_name(name: &str) -> Result<(), FdtError> {
    let (base, unit) = match name.split_once('@') {
        Some((base, unit)) => (base, Some(unit)),
        None => (name, None),
    };
    let base_ok = (1..=MAX_NAME_LEN).contains(&base.len()) && base.bytes().all(is_node_char);
    let unit_ok = unit.is_none_or(|u| {
        (1..=MAX_UNIT_ADDRESS_LEN).contains(&u.len()) && u.bytes().all(is_node_char)
    });
    if base_ok && unit_ok {
        Ok(())
    } else {
        Err(FdtError::InvalidNodeName)
    }
}

fn validate_property_name(name: &str) -> Result<(), FdtError> {
    if (1..=MAX_NAME_LEN).contains(&name.len()) && name.bytes().all(is_property_char) {
        Ok(())
    } else {
        Err(FdtError::InvalidPropertyName)
    }
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
    use alloc::string::String;
    use alloc::vec;

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// The tree of `testdata/small.dts`, written property for property.
    fn small_tree() -> Vec<u8> {
        let mut w = FdtWriter::new();
        w.add_reservation(0x4000_0000, 0x1000).unwrap();
        w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        w.property_string("compatible", "linux,dummy-virt").unwrap();
        w.property_u32("interrupt-parent", 1).unwrap();
        w.begin_node("memory@40000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_reg(&[(0x4000_0000, 0x800_0000)], 2, 2).unwrap();
        w.end_node().unwrap();
        w.begin_node("intc@8000000").unwrap();
        w.property_string("compatible", "arm,gic-v3").unwrap();
        w.property_u32("#interrupt-cells", 3).unwrap();
        w.property_empty("interrupt-controller").unwrap();
        w.property_reg(&[(0x800_0000, 0x1_0000), (0x80a_0000, 0xf6_0000)], 2, 2)
            .unwrap();
        w.property_phandle(1).unwrap();
        w.end_node().unwrap();
        w.begin_node("pl011@9000000").unwrap();
        w.property_string_list("compatible", &["arm,pl011", "arm,primecell"])
            .unwrap();
        w.property_cells("interrupts", &[0, 1, 4]).unwrap();
        w.property_u64("size-cells", 0x1_0000_0002).unwrap();
        w.end_node().unwrap();
        w.begin_node("chosen").unwrap();
        w.property_string("bootargs", "console=ttyAMA0").unwrap();
        w.end_node().unwrap();
        w.end_node().unwrap();
        w.finish().unwrap()
    }

    fn from_hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text
            .bytes()
            .filter(|c| c.is_ascii_hexdigit())
            .map(|c| (c as char).to_digit(16).unwrap() as u8)
            .collect();
        digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    fn to_hex(blob: &[u8]) -> String {
        let mut s = String::new();
        for line in blob.chunks(16) {
            for b in line {
                s.push_str(&alloc::format!("{b:02x}"));
            }
            s.push('\n');
        }
        s
    }

    #[test]
    fn matches_dtc_byte_for_byte() {
        // `testdata/small.dtb.hex` is `dtc -I dts -O dtb testdata/small.dts`, one
        // line of hex per 16 bytes: text keeps the expectation reviewable.
        let expected = from_hex(include_str!("testdata/small.dtb.hex"));
        let blob = small_tree();
        assert_eq!(to_hex(&blob), to_hex(&expected));
    }

    #[test]
    fn committed_blob_is_what_dtc_produces() {
        let dtc = std::path::Path::new("/usr/bin/dtc");
        if !dtc.exists() {
            std::println!("note: /usr/bin/dtc not found; committed blob not re-checked");
            return;
        }
        let dts = concat!(env!("CARGO_MANIFEST_DIR"), "/src/vm/testdata/small.dts");
        let out = std::process::Command::new(dtc)
            .args(["-q", "-I", "dts", "-O", "dtb", dts])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = from_hex(include_str!("testdata/small.dtb.hex"));
        assert_eq!(to_hex(&out.stdout), to_hex(&expected));
    }

    #[test]
    fn header_and_blocks() {
        let blob = small_tree();
        assert_eq!(be32(&blob, 0), FDT_MAGIC);
        assert_eq!(be32(&blob, 4) as usize, blob.len());
        let off_struct = be32(&blob, 8) as usize;
        let off_strings = be32(&blob, 12) as usize;
        let off_rsv = be32(&blob, 16) as usize;
        assert_eq!(be32(&blob, 20), 17);
        assert_eq!(be32(&blob, 24), 16);
        assert_eq!(off_rsv % 8, 0);
        assert_eq!(off_struct % 4, 0);
        assert_eq!(off_struct + be32(&blob, 36) as usize, off_strings);
        assert_eq!(off_strings + be32(&blob, 32) as usize, blob.len());
        assert_eq!(be32(&blob, off_struct), FDT_BEGIN_NODE);
        assert_eq!(be32(&blob, off_strings - 4), FDT_END);
    }

    #[test]
    fn reads_back_with_fdt_crate() {
        let blob = small_tree();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let rsv: Vec<_> = fdt
            .memory_reservations()
            .map(|r| (r.address() as u64, r.size()))
            .collect();
        assert_eq!(rsv, vec![(0x4000_0000, 0x1000)]);
        let mem = fdt.memory().regions().next().unwrap();
        assert_eq!(mem.starting_address as u64, 0x4000_0000);
        assert_eq!(mem.size, Some(0x800_0000));
        let gic = fdt.find_node("/intc@8000000").unwrap();
        assert!(gic
            .property("interrupt-controller")
            .unwrap()
            .value
            .is_empty());
        assert_eq!(gic.property("phandle").unwrap().as_usize(), Some(1));
        let regs: Vec<_> = gic
            .reg()
            .unwrap()
            .map(|r| r.starting_address as u64)
            .collect();
        assert_eq!(regs, vec![0x800_0000, 0x80a_0000]);
        let uart = fdt.find_compatible(&["arm,primecell"]).unwrap();
        assert_eq!(uart.name, "pl011@9000000");
        assert_eq!(
            uart.property("size-cells").unwrap().as_usize(),
            Some(0x1_0000_0002)
        );
        assert_eq!(fdt.chosen().bootargs(), Some("console=ttyAMA0"));
        assert_eq!(fdt.root().compatible().first(), "linux,dummy-virt");
    }

    #[test]
    fn property_names_are_deduplicated() {
        let blob = small_tree();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let strings: Vec<_> = fdt.strings().collect();
        // "compatible" is used three times and stored once; "size-cells" reuses
        // the tail of "#size-cells", as dtc does.
        assert_eq!(strings.iter().filter(|s| **s == "compatible").count(), 1);
        assert!(!strings.contains(&"size-cells"));
    }

    #[test]
    fn refuses_malformed_trees() {
        let mut w = FdtWriter::new();
        assert_eq!(w.end_node(), Err(FdtError::UnbalancedEndNode));
        assert_eq!(w.property_u32("a", 1), Err(FdtError::PropertyOutsideNode));
        assert_eq!(w.begin_node("root"), Err(FdtError::InvalidNodeName));
        w.begin_node("").unwrap();
        assert_eq!(w.begin_node(""), Err(FdtError::InvalidNodeName));
        assert_eq!(w.begin_node("a\0b"), Err(FdtError::InvalidNodeName));
        assert_eq!(
            w.begin_node(&"n".repeat(32)),
            Err(FdtError::InvalidNodeName)
        );
        assert_eq!(w.begin_node("n@"), Err(FdtError::InvalidNodeName));
        assert_eq!(w.begin_node("n@1@2"), Err(FdtError::InvalidNodeName));
        assert_eq!(w.begin_node("a/b"), Err(FdtError::InvalidNodeName));
        assert_eq!(w.property_u32("", 1), Err(FdtError::InvalidPropertyName));
        assert_eq!(w.property_u32("a\0", 1), Err(FdtError::InvalidPropertyName));
        assert_eq!(
            w.property_u32(&"p".repeat(32), 1),
            Err(FdtError::InvalidPropertyName)
        );
        assert_eq!(w.property_string("s", "a\0b"), Err(FdtError::InvalidString));
        w.property_u32("p", 1).unwrap();
        assert_eq!(w.property_u32("p", 2), Err(FdtError::DuplicateProperty));
        assert_eq!(w.property_reg(&[(1, 1)], 3, 2), Err(FdtError::InvalidCells));
        assert_eq!(
            w.property_reg(&[(1 << 32, 1)], 1, 1),
            Err(FdtError::InvalidCells)
        );
        assert_eq!(w.property_reg(&[(1, 1)], 1, 0), Err(FdtError::InvalidCells));
        assert_eq!(w.property_phandle(0), Err(FdtError::InvalidPhandle));
        assert_eq!(w.add_reservation(1, 0), Err(FdtError::InvalidReservation));
        assert_eq!(
            w.add_reservation(u64::MAX, 2),
            Err(FdtError::InvalidReservation)
        );
        w.begin_node("child@1").unwrap();
        w.end_node().unwrap();
        assert_eq!(w.begin_node("child@1"), Err(FdtError::DuplicateNode));
        assert_eq!(w.property_u32("q", 1), Err(FdtError::PropertyAfterSubnode));
        w.begin_node("child@2").unwrap();
        w.property_u32("p", 1).unwrap();
        w.end_node().unwrap();
        w.end_node().unwrap();
        assert_eq!(w.begin_node(""), Err(FdtError::MultipleRoots));
        assert_eq!(w.property_u32("p", 1), Err(FdtError::PropertyOutsideNode));
        assert_eq!(w.end_node(), Err(FdtError::UnbalancedEndNode));
        // The refused calls left no trace.
        let blob = w.finish().unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let names: Vec<_> = fdt.all_nodes().map(|n| n.name).collect();
        assert_eq!(names, vec!["/", "child@1", "child@2"]);
        assert_eq!(fdt.root().properties().count(), 1);
    }

    #[test]
    fn finish_needs_one_closed_root() {
        assert_eq!(FdtWriter::new().finish(), Err(FdtError::NoRoot));
        let mut w = FdtWriter::new();
        w.begin_node("").unwrap();
        w.begin_node("a").unwrap();
        assert_eq!(w.finish(), Err(FdtError::UnclosedNodes(2)));
    }

    #[test]
    fn phandles_are_unique_and_valid() {
        let mut w = FdtWriter::new();
        let a = w.alloc_phandle().unwrap();
        let b = w.alloc_phandle().unwrap();
        assert!(a != 0 && b != 0 && a != b);
        w.next_phandle = u32::MAX;
        assert_eq!(w.alloc_phandle(), Err(FdtError::InvalidPhandle));
        assert_eq!(w.alloc_phandle(), Err(FdtError::InvalidPhandle));
    }

    #[test]
    fn boot_cpuid_and_empty_tree() {
        let mut w = FdtWriter::new();
        w.set_boot_cpuid_phys(3);
        w.begin_node("").unwrap();
        w.end_node().unwrap();
        let blob = w.finish().unwrap();
        assert_eq!(be32(&blob, 28), 3);
        // Header, one terminating reservation, BEGIN_NODE + empty name, END_NODE, END.
        assert_eq!(blob.len(), 40 + 16 + 8 + 4 + 4);
        assert_eq!(fdt::Fdt::new(&blob).unwrap().all_nodes().count(), 1);
    }

    /// xorshift64: deterministic, good enough to shuffle calls.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    const NODE_NAMES: &[&str] = &["", "a", "b@1", "cpu@0", "x\0", "memory@40000000", "bad/"];
    const PROP_NAMES: &[&str] = &[
        "reg",
        "compatible",
        "#size-cells",
        "size-cells",
        "",
        "p\0",
        "x",
    ];

    #[test]
    fn random_call_sequences_never_panic_and_parse() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut ok_blobs = 0;
        for _ in 0..2000 {
            let mut w = FdtWriter::new();
            if rng.below(4) != 0 {
                w.begin_node("").unwrap();
            }
            for _ in 0..rng.below(40) {
                let name = PROP_NAMES[rng.below(PROP_NAMES.len() as u64) as usize];
                // Errors are expected; the point is that none of these panics.
                let _ = match rng.below(12) {
                    0..=2 => w.begin_node(NODE_NAMES[rng.below(NODE_NAMES.len() as u64) as usize]),
                    3..=5 => w.end_node(),
                    6 => w.property_u32(name, rng.next() as u32),
                    7 => w.property_string_list(name, &["a", "bc"]),
                    8 => w.property_empty(name),
                    9 => w.property_reg(&[(rng.below(1 << 33), 0x1000)], 2, rng.below(3) as u32),
                    10 => w.add_reservation(rng.next(), rng.below(0x10000)),
                    _ => w.alloc_phandle().and_then(|p| w.property_phandle(p)),
                };
            }
            // Close what is open, as a caller would before finishing.
            while w.end_node().is_ok() {}
            if let Ok(blob) = w.finish() {
                let fdt = fdt::Fdt::new(&blob).unwrap();
                assert_eq!(fdt.total_size(), blob.len());
                for node in fdt.all_nodes() {
                    for prop in node.properties() {
                        assert!(!prop.name.is_empty());
                    }
                }
                fdt.memory_reservations().count();
                ok_blobs += 1;
            }
        }
        assert!(ok_blobs > 100, "only {ok_blobs} sequences produced a tree");
    }
}
