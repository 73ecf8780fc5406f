//! A panic-free reader of flattened device trees (Devicetree Specification
//! v0.4, chapter 5, "Flattened Devicetree (DTB) Format").
//!
//! The host DT is untrusted input and this runs before any console exists, so
//! [`Fdt::new`] checks the whole blob once (header, block bounds, every token,
//! every property name, nesting) and every later read still goes through
//! bounds-checked accessors: a malformed blob yields an [`FdtError`], never a
//! panic. The `fdt` crate was not used here because many of its accessors
//! `unwrap`, `expect`, `assert` or index slices on malformed input.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]

use core::fmt;

/// The magic number at the start of every blob.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Size of the header in bytes (version 17).
pub const HEADER_LEN: usize = 40;
/// Deepest node nesting accepted; real trees stay well under it.
pub const MAX_DEPTH: usize = 16;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// What is wrong with a blob's structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdtError {
    /// Fewer bytes than a header.
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// The first word is not [`FDT_MAGIC`].
    BadMagic(u32),
    /// A format version this reader does not understand.
    BadVersion {
        /// `version` from the header.
        version: u32,
        /// `last_comp_version` from the header.
        last_comp_version: u32,
    },
    /// `totalsize` is larger than the bytes given or smaller than a header.
    BadTotalSize {
        /// `totalsize` from the header.
        total: u32,
        /// Bytes available.
        len: usize,
    },
    /// A block the header describes lies outside `totalsize`.
    BlockOutOfBounds {
        /// Which block.
        block: &'static str,
        /// Its offset.
        offset: u32,
        /// Its size.
        size: u32,
    },
    /// The memory reservation block has no terminating entry.
    UnterminatedReservations,
    /// The structure block ends inside a token.
    Truncated {
        /// Offset of the token in the structure block.
        offset: usize,
    },
    /// A token that is unknown or not allowed where it stands.
    UnexpectedToken {
        /// Offset of the token in the structure block.
        offset: usize,
        /// The token.
        token: u32,
    },
    /// A node name that is unterminated or not UTF-8.
    BadNodeName {
        /// Offset of the node in the structure block.
        offset: usize,
    },
    /// A property whose name offset does not name a UTF-8 string.
    BadPropertyName {
        /// Offset of the property in the structure block.
        offset: usize,
        /// Its name offset into the strings block.
        name_offset: u32,
    },
    /// Nodes nested deeper than [`MAX_DEPTH`].
    TooDeep {
        /// Offset of the node in the structure block.
        offset: usize,
    },
    /// The structure block does not hold exactly one complete root node.
    BadRoot,
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => {
                write!(f, "{len} bytes is too short for a header ({HEADER_LEN})")
            }
            Self::BadMagic(m) => write!(f, "bad magic {m:#010x} (expected {FDT_MAGIC:#010x})"),
            Self::BadVersion {
                version,
                last_comp_version,
            } => write!(
                f,
                "unsupported version {version} (last compatible {last_comp_version})"
            ),
            Self::BadTotalSize { total, len } => {
                write!(f, "header totalsize {total} but {len} bytes available")
            }
            Self::BlockOutOfBounds {
                block,
                offset,
                size,
            } => write!(
                f,
                "{block} block at offset {offset:#x} size {size:#x} lies outside the blob"
            ),
            Self::UnterminatedReservations => {
                write!(f, "memory reservation block has no terminating entry")
            }
            Self::Truncated { offset } => {
                write!(f, "structure block truncated at offset {offset:#x}")
            }
            Self::UnexpectedToken { offset, token } => write!(
                f,
                "unexpected token {token:#x} at structure offset {offset:#x}"
            ),
            Self::BadNodeName { offset } => {
                write!(f, "bad node name at structure offset {offset:#x}")
            }
            Self::BadPropertyName {
                offset,
                name_offset,
            } => write!(
                f,
                "property at structure offset {offset:#x} has bad name offset {name_offset:#x}"
            ),
            Self::TooDeep { offset } => write!(
                f,
                "nodes nested deeper than {MAX_DEPTH} at structure offset {offset:#x}"
            ),
            Self::BadRoot => write!(f, "structure block is not exactly one root node"),
        }
    }
}

fn be32(bytes: &[u8], offset: usize) -> Option<u32> {
    let b = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

fn be64(bytes: &[u8], offset: usize) -> Option<u64> {
    let hi = be32(bytes, offset)?;
    let lo = be32(bytes, offset.checked_add(4)?)?;
    Some(u64::from(hi) << 32 | u64::from(lo))
}

/// The UTF-8 string up to the first NUL at `offset`, if there is one.
fn cstr_at(bytes: &[u8], offset: usize) -> Option<&str> {
    let tail = bytes.get(offset..)?;
    let len = tail.iter().position(|&b| b == 0)?;
    core::str::from_utf8(tail.get(..len)?).ok()
}

fn align4(n: usize) -> Option<usize> {
    Some(n.checked_add(3)? & !3)
}

/// The blob's `totalsize`, read from its first [`HEADER_LEN`] bytes, so that a
/// caller can borrow the header first and the whole blob second.
pub fn total_size(header: &[u8]) -> Result<usize, FdtError> {
    if header.len() < HEADER_LEN {
        return Err(FdtError::TooShort { len: header.len() });
    }
    let magic = be32(header, 0).unwrap_or(0);
    if magic != FDT_MAGIC {
        return Err(FdtError::BadMagic(magic));
    }
    let total = be32(header, 4).unwrap_or(0);
    if (total as usize) < HEADER_LEN {
        return Err(FdtError::BadTotalSize {
            total,
            len: header.len(),
        });
    }
    Ok(total as usize)
}

/// A value's cell sizes for a node's children (`#address-cells`, `#size-cells`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cells {
    /// Cells in a child's address.
    pub address: u32,
    /// Cells in a child's size.
    pub size: u32,
}

impl Cells {
    /// What the specification says applies when a node states neither.
    pub const DEFAULT: Self = Self {
        address: 2,
        size: 1,
    };
}

/// What a node learns from its ancestors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inherited {
    /// The parent's cell sizes, which govern this node's `reg`.
    pub cells: Cells,
    /// Whether an ancestor is marked `dma-coherent` (Linux's
    /// `of_dma_is_coherent` also looks upward).
    pub dma_coherent: bool,
}

impl Inherited {
    const ROOT: Self = Self {
        cells: Cells::DEFAULT,
        dma_coherent: false,
    };
}

enum Token<'a> {
    Begin(&'a str),
    EndNode,
    Prop(Property<'a>),
    Nop,
    End,
}

/// A checked device-tree blob.
#[derive(Clone, Copy)]
pub struct Fdt<'a> {
    structs: &'a [u8],
    strings: &'a [u8],
    rsvmap: &'a [u8],
    total: usize,
}

impl fmt::Debug for Fdt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fdt").field("total", &self.total).finish()
    }
}

impl<'a> Fdt<'a> {
    /// Checks `blob` from end to end. Bytes past the header's `totalsize` are ignored.
    pub fn new(blob: &'a [u8]) -> Result<Self, FdtError> {
        let total = total_size(blob)?;
        let blob = blob.get(..total).ok_or(FdtError::BadTotalSize {
            total: total as u32,
            len: blob.len(),
        })?;
        let field = |i: usize| be32(blob, i.saturating_mul(4)).unwrap_or(0);
        let (version, last_comp_version) = (field(5), field(6));
        // Version 16 added nothing this reader needs beyond 17's layout,
        // except that 16 has no size_dt_struct: refuse it rather than guess.
        if version < 17 || last_comp_version > 17 {
            return Err(FdtError::BadVersion {
                version,
                last_comp_version,
            });
        }
        let block = |name: &'static str, offset: u32, size: u32| {
            let start = offset as usize;
            start
                .checked_add(size as usize)
                .and_then(|end| blob.get(start..end))
                .ok_or(FdtError::BlockOutOfBounds {
                    block: name,
                    offset,
                    size,
                })
        };
        let structs = block("structure", field(2), field(9))?;
        let strings = block("strings", field(3), field(8))?;
        let rsv_off = field(4);
        let rsvmap = block(
            "memory reservation",
            rsv_off,
            total.saturating_sub(rsv_off as usize) as u32,
        )?;
        let fdt = Self {
            structs,
            strings,
            rsvmap,
            total,
        };
        fdt.check_reservations()?;
        fdt.check_structure()?;
        Ok(fdt)
    }

    /// Size of the blob in bytes, from its header.
    pub fn total_size(&self) -> usize {
        self.total
    }

    fn check_reservations(&self) -> Result<(), FdtError> {
        let mut off = 0usize;
        loop {
            let (addr, size) = (
                be64(self.rsvmap, off),
                be64(self.rsvmap, off.saturating_add(8)),
            );
            match (addr, size) {
                (Some(0), Some(0)) => return Ok(()),
                (Some(_), Some(_)) => off = off.saturating_add(16),
                _ => return Err(FdtError::UnterminatedReservations),
            }
        }
    }

    /// Walks every token once; afterwards readers can treat any surprise as the end.
    fn check_structure(&self) -> Result<(), FdtError> {
        let mut off = 0;
        let mut depth = 0usize;
        let mut root_done = false;
        // Per open node: whether a child has been seen (properties must come first).
        let mut had_child = [false; MAX_DEPTH + 1];
        loop {
            let (token, next) = self.token(off)?;
            let unexpected = FdtError::UnexpectedToken {
                offset: off,
                token: be32(self.structs, off).unwrap_or(0),
            };
            match token {
                Token::Begin(_) => {
                    if root_done {
                        return Err(FdtError::BadRoot);
                    }
                    if let Some(flag) = depth.checked_sub(1).and_then(|d| had_child.get_mut(d)) {
                        *flag = true;
                    }
                    depth = depth.saturating_add(1);
                    match had_child.get_mut(depth.saturating_sub(1)) {
                        Some(flag) if depth <= MAX_DEPTH => *flag = false,
                        _ => return Err(FdtError::TooDeep { offset: off }),
                    }
                }
                Token::EndNode => {
                    depth = depth.checked_sub(1).ok_or(unexpected)?;
                    root_done = depth == 0;
                }
                Token::Prop(_) => {
                    let in_node = depth.checked_sub(1).and_then(|d| had_child.get(d));
                    if in_node != Some(&false) {
                        return Err(unexpected);
                    }
                }
                Token::Nop => {}
                Token::End => {
                    return if root_done {
                        Ok(())
                    } else {
                        Err(FdtError::BadRoot)
                    };
                }
            }
            off = next;
        }
    }

    /// Decodes the token at `off` and returns it with the offset of the next one.
    fn token(&self, off: usize) -> Result<(Token<'a>, usize), FdtError> {
        let truncated = FdtError::Truncated { offset: off };
        let tag = be32(self.structs, off).ok_or(truncated)?;
        let body = off.checked_add(4).ok_or(truncated)?;
        match tag {
            FDT_BEGIN_NODE => {
                let tail = self.structs.get(body..).ok_or(truncated)?;
                let len = tail.iter().position(|&b| b == 0).ok_or(truncated)?;
                let name = tail
                    .get(..len)
                    .and_then(|n| core::str::from_utf8(n).ok())
                    .ok_or(FdtError::BadNodeName { offset: off })?;
                let next = body
                    .checked_add(len)
                    .and_then(|n| n.checked_add(1))
                    .and_then(align4)
                    .ok_or(truncated)?;
                Ok((Token::Begin(name), next))
            }
            FDT_PROP => {
                let len = be32(self.structs, body).ok_or(truncated)? as usize;
                let name_offset = be32(self.structs, body.saturating_add(4)).ok_or(truncated)?;
                let start = body.checked_add(8).ok_or(truncated)?;
                let end = start.checked_add(len).ok_or(truncated)?;
                let value = self.structs.get(start..end).ok_or(truncated)?;
                let name = cstr_at(self.strings, name_offset as usize).ok_or(
                    FdtError::BadPropertyName {
                        offset: off,
                        name_offset,
                    },
                )?;
                let next = align4(end).ok_or(truncated)?;
                Ok((Token::Prop(Property { name, value }), next))
            }
            FDT_END_NODE => Ok((Token::EndNode, body)),
            FDT_NOP => Ok((Token::Nop, body)),
            FDT_END => Ok((Token::End, body)),
            token => Err(FdtError::UnexpectedToken { offset: off, token }),
        }
    }

    /// The root node.
    pub fn root(&self) -> Node<'a> {
        let mut off = 0;
        // The structure was checked: NOPs, then the root's BEGIN_NODE.
        while let Ok((token, next)) = self.token(off) {
            match token {
                Token::Begin(name) => {
                    return Node {
                        fdt: *self,
                        name,
                        body: next,
                        inherited: Inherited::ROOT,
                    }
                }
                Token::Nop => off = next,
                _ => break,
            }
        }
        Node {
            fdt: *self,
            name: "",
            body: self.structs.len(),
            inherited: Inherited::ROOT,
        }
    }

    /// The memory reservation block's entries: `(address, size)`.
    pub fn reservations(&self) -> impl Iterator<Item = (u64, u64)> + 'a {
        let map = self.rsvmap;
        (0..)
            .map(move |i: usize| {
                let off = i.saturating_mul(16);
                Some((be64(map, off)?, be64(map, off.saturating_add(8))?))
            })
            .map_while(|e| e.filter(|&(a, s)| a != 0 || s != 0))
    }

    /// Every node, depth first, from the root.
    pub fn nodes(&self) -> Walk<'a> {
        Walk {
            fdt: *self,
            off: 0,
            depth: 0,
            stack: [Inherited::ROOT; MAX_DEPTH + 1],
        }
    }

    /// Every node with its depth (the root is 0), depth first.
    fn nodes_with_depth(&self) -> impl Iterator<Item = (Node<'a>, usize)> + 'a {
        let mut walk = self.nodes();
        core::iter::from_fn(move || {
            let node = walk.next()?;
            Some((node, walk.depth.saturating_sub(1)))
        })
    }

    /// The node at `path` (`/a/b@1`); a component without `@` matches a node
    /// whose name before `@` is equal.
    pub fn find(&self, path: &str) -> Option<Node<'a>> {
        if !path.starts_with('/') {
            return None;
        }
        let mut node = self.root();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            node = node
                .children()
                .find(|c| c.name == part || (!part.contains('@') && c.base_name() == part))?;
        }
        Some(node)
    }
}

/// A property: a name and its raw big-endian value.
#[derive(Clone, Copy, Debug)]
pub struct Property<'a> {
    /// The name.
    pub name: &'a str,
    /// The value bytes.
    pub value: &'a [u8],
}

impl<'a> Property<'a> {
    /// The value as one cell.
    pub fn u32(&self) -> Option<u32> {
        (self.value.len() == 4)
            .then(|| be32(self.value, 0))
            .flatten()
    }

    /// The value as one or two cells (`linux,initrd-start` uses either).
    pub fn u32_or_u64(&self) -> Option<u64> {
        match self.value.len() {
            4 => be32(self.value, 0).map(u64::from),
            8 => be64(self.value, 0),
            _ => None,
        }
    }

    /// The value as its first NUL-terminated UTF-8 string.
    pub fn str(&self) -> Option<&'a str> {
        cstr_at(self.value, 0)
    }

    /// The value as a list of NUL-terminated strings (`compatible`).
    pub fn strings(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.value
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .filter_map(|s| core::str::from_utf8(s).ok())
    }

    /// The value as big-endian cells; a trailing partial cell is dropped.
    pub fn cells(&self) -> impl Iterator<Item = u32> + 'a {
        self.value
            .chunks_exact(4)
            .filter_map(|c| c.try_into().ok().map(u32::from_be_bytes))
    }
}

/// A node of a checked blob.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    fdt: Fdt<'a>,
    name: &'a str,
    /// Offset of the first token after the node's name.
    body: usize,
    inherited: Inherited,
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Node({})", self.name())
    }
}

impl<'a> Node<'a> {
    /// The full name, `name@unit-address`; the root is `/`.
    pub fn name(&self) -> &'a str {
        if self.name.is_empty() {
            "/"
        } else {
            self.name
        }
    }

    /// The name before any `@`.
    pub fn base_name(&self) -> &'a str {
        self.name.split('@').next().unwrap_or(self.name)
    }

    /// What this node inherits from its ancestors.
    pub fn inherited(&self) -> Inherited {
        self.inherited
    }

    /// The node's properties, in blob order.
    pub fn properties(&self) -> Properties<'a> {
        Properties {
            fdt: self.fdt,
            off: self.body,
        }
    }

    /// The property called `name`.
    pub fn property(&self, name: &str) -> Option<Property<'a>> {
        self.properties().find(|p| p.name == name)
    }

    /// Whether the node has a property called `name` (flags like `dma-coherent`).
    pub fn has(&self, name: &str) -> bool {
        self.property(name).is_some()
    }

    /// Whether `compatible` lists `name`.
    pub fn is_compatible(&self, name: &str) -> bool {
        self.property("compatible")
            .is_some_and(|p| p.strings().any(|c| c == name))
    }

    /// Whether `status` is absent, `okay` or `ok`.
    pub fn is_enabled(&self) -> bool {
        self.property("status")
            .is_none_or(|p| matches!(p.str(), Some("okay" | "ok")))
    }

    /// The cell sizes this node sets for its children.
    pub fn cells(&self) -> Cells {
        let get = |name, default| self.property(name).and_then(|p| p.u32()).unwrap_or(default);
        Cells {
            address: get("#address-cells", Cells::DEFAULT.address),
            size: get("#size-cells", Cells::DEFAULT.size),
        }
    }

    fn for_children(&self) -> Inherited {
        Inherited {
            cells: self.cells(),
            dma_coherent: self.inherited.dma_coherent || self.has("dma-coherent"),
        }
    }

    /// The node's ancestors, nearest first and the root last; empty for the
    /// root. Found by walking the blob from the start, so it costs one pass.
    pub fn parents(&self) -> Parents<'a> {
        let mut stack: [Option<Node<'a>>; MAX_DEPTH] = [None; MAX_DEPTH];
        let mut depth = 0usize;
        for node in self.fdt.nodes_with_depth() {
            let (node, d) = node;
            if node.body == self.body {
                depth = d;
                break;
            }
            if let Some(slot) = stack.get_mut(d) {
                *slot = Some(node);
            }
        }
        Parents { stack, next: depth }
    }

    /// The node's direct children.
    pub fn children(&self) -> Children<'a> {
        Children {
            fdt: self.fdt,
            off: self.body,
            depth: 0,
            inherited: self.for_children(),
            done: false,
        }
    }
}

/// Iterator over a node's ancestors, nearest first (see [`Node::parents`]).
pub struct Parents<'a> {
    /// `stack[d]` is the ancestor at depth `d`.
    stack: [Option<Node<'a>>; MAX_DEPTH],
    /// Depth of the next ancestor to hand out, plus one.
    next: usize,
}

impl<'a> Iterator for Parents<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        self.next = self.next.checked_sub(1)?;
        *self.stack.get(self.next)?
    }
}

/// Iterator over a node's properties.
pub struct Properties<'a> {
    fdt: Fdt<'a>,
    off: usize,
}

impl<'a> Iterator for Properties<'a> {
    type Item = Property<'a>;

    fn next(&mut self) -> Option<Property<'a>> {
        loop {
            let (token, next) = self.fdt.token(self.off).ok()?;
            match token {
                Token::Prop(p) => {
                    self.off = next;
                    return Some(p);
                }
                Token::Nop => self.off = next,
                _ => return None,
            }
        }
    }
}

/// Iterator over a node's direct children.
pub struct Children<'a> {
    fdt: Fdt<'a>,
    off: usize,
    depth: usize,
    inherited: Inherited,
    done: bool,
}

impl<'a> Iterator for Children<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        while !self.done {
            let Ok((token, next)) = self.fdt.token(self.off) else {
                break;
            };
            self.off = next;
            match token {
                Token::Begin(name) => {
                    self.depth = self.depth.saturating_add(1);
                    if self.depth == 1 {
                        return Some(Node {
                            fdt: self.fdt,
                            name,
                            body: next,
                            inherited: self.inherited,
                        });
                    }
                }
                Token::EndNode => match self.depth.checked_sub(1) {
                    Some(d) => self.depth = d,
                    None => break,
                },
                Token::End => break,
                Token::Prop(_) | Token::Nop => {}
            }
        }
        self.done = true;
        None
    }
}

/// Depth-first iterator over every node.
pub struct Walk<'a> {
    fdt: Fdt<'a>,
    off: usize,
    depth: usize,
    /// What each open level hands down; `stack[0]` is what the root gets.
    stack: [Inherited; MAX_DEPTH + 1],
}

impl<'a> Iterator for Walk<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        loop {
            let (token, next) = self.fdt.token(self.off).ok()?;
            self.off = next;
            match token {
                Token::Begin(name) => {
                    let node = Node {
                        fdt: self.fdt,
                        name,
                        body: next,
                        inherited: *self.stack.get(self.depth)?,
                    };
                    self.depth = self.depth.saturating_add(1);
                    *self.stack.get_mut(self.depth)? = node.for_children();
                    return Some(node);
                }
                Token::EndNode => self.depth = self.depth.checked_sub(1)?,
                Token::End => return None,
                Token::Prop(_) | Token::Nop => {}
            }
        }
    }
}
