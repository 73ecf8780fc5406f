//! Translating a node's bus addresses to CPU physical addresses through its
//! ancestors' `ranges` (Devicetree Specification v0.4, 2.3.8 "ranges").
//!
//! A `reg` address is in the address space of the node's parent bus. Each bus
//! between the node and the root maps its children's addresses to its own
//! parent's: an empty `ranges` is the identity, entries
//! `(child-bus-address, parent-bus-address, length)` map windows, and a bus
//! without `ranges` maps nothing, so its children cannot be reached from the
//! CPU. The Raspberry Pi 4's `/soc`, for instance, maps bus addresses
//! 0x7e000000.. to CPU addresses 0xfe000000...
//!
//! Addresses of one or two cells are handled; buses with wider addresses (PCI,
//! three cells) are refused, as nothing the hypervisor reads sits below one.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use core::fmt;

use super::fdt::Node;

/// Why a bus address has no CPU address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Untranslatable<'a> {
    /// The bus node on the way to the root that stops the translation.
    pub bus: &'a str,
    /// The address in that bus's child address space.
    pub address: u64,
    /// What is wrong.
    pub why: &'static str,
}

impl fmt::Display for Untranslatable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "address {:#x} does not reach the CPU through {}: {}",
            self.address, self.bus, self.why
        )
    }
}

/// A big-endian value of one or two cells.
fn cells_value(bytes: &[u8]) -> Option<u64> {
    match bytes.len() {
        4 => Some(u64::from(u32::from_be_bytes(bytes.try_into().ok()?))),
        8 => Some(u64::from_be_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

/// The CPU physical address of `[address, address + size)` in the address
/// space `node`'s parent gives its children (the space of `node`'s `reg`).
/// The whole range must lie in one window of every bus on the way up.
pub fn to_cpu<'a>(node: &Node<'a>, address: u64, size: u64) -> Result<u64, Untranslatable<'a>> {
    let mut addr = address;
    let mut parents = node.parents().peekable();
    while let Some(bus) = parents.next() {
        // The root's children's addresses are CPU addresses.
        if parents.peek().is_none() {
            break;
        }
        addr = through_bus(&bus, addr, size)?;
    }
    Ok(addr)
}

/// Maps `addr` (with `size` bytes after it) from `bus`'s child address space
/// to its parent's.
fn through_bus<'a>(bus: &Node<'a>, addr: u64, size: u64) -> Result<u64, Untranslatable<'a>> {
    let fail = |why| Untranslatable {
        bus: bus.name(),
        address: addr,
        why,
    };
    let ranges = bus
        .property("ranges")
        .ok_or(fail("the bus has no ranges property"))?;
    if ranges.value.is_empty() {
        return Ok(addr);
    }
    let child = bus.cells();
    let parent = bus.inherited().cells;
    if !(1..=2).contains(&child.address)
        || !(1..=2).contains(&child.size)
        || !(1..=2).contains(&parent.address)
    {
        return Err(fail(
            "ranges with #address-cells or #size-cells other than 1 or 2",
        ));
    }
    let child_len = child.address as usize * 4;
    let parent_len = parent.address as usize * 4;
    let stride = child_len + parent_len + child.size as usize * 4;
    if ranges.value.len() % stride != 0 {
        return Err(fail("ranges is not a whole number of entries"));
    }
    let last = addr
        .checked_add(size.saturating_sub(1))
        .ok_or(fail("the region runs past the top of the address space"))?;
    for entry in ranges.value.chunks_exact(stride) {
        let (c, rest) = entry.split_at(child_len);
        let (p, l) = rest.split_at(parent_len);
        let (Some(child_base), Some(parent_base), Some(len)) =
            (cells_value(c), cells_value(p), cells_value(l))
        else {
            return Err(fail("ranges has a bad cell"));
        };
        if len == 0 || addr < child_base {
            continue;
        }
        let offset = addr.wrapping_sub(child_base);
        if offset >= len {
            continue;
        }
        if last.wrapping_sub(child_base) >= len {
            return Err(fail("the region crosses the end of a ranges window"));
        }
        return parent_base
            .checked_add(offset)
            .ok_or(fail("the window maps past the top of the address space"));
    }
    Err(fail("no ranges window covers it"))
}
