//! Boot modules: the guest's kernel, initramfs and command line as the
//! loader describes them in `/chosen`, in the `multiboot,module` binding
//! (Xen's `docs/misc/arm/device-tree/booting.txt`, which QEMU's
//! `-device guest-loader` and U-Boot boot scripts follow):
//!
//! ```text
//! chosen {
//!     module@60000000 {
//!         compatible = "multiboot,module", "multiboot,kernel";
//!         reg = <0x0 0x60000000 0x0 0x1a09fc0>;
//!         bootargs = "console=ttyAMA0 earlycon";
//!     };
//!     module@62000000 {
//!         compatible = "multiboot,module", "multiboot,ramdisk";
//!         reg = <0x0 0x62000000 0x0 0x26f790>;
//!     };
//! };
//! ```
//!
//! `reg` is read with `/chosen`'s `#address-cells`/`#size-cells`, or the
//! root's when `/chosen` has none (QEMU 10.0's guest-loader writes none and
//! uses the root's two and two). A module whose compatible names only
//! `multiboot,module` is the kernel if it comes first and the ramdisk if it
//! comes second, as in Xen. The modules must lie in RAM and not overlap
//! each other (hostile-guest item 43); overlaps with the hypervisor, the DT
//! and reservations are refused when usable memory is computed.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use super::fdt::{Fdt, Node};
use super::{cells_value, checked_range, PlatformError};
use crate::mm::addr::PhysRange;
use crate::mm::regions::RegionList;

/// A boot module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootModule<'a> {
    /// Its node's name (`module@60000000`).
    pub node: &'a str,
    /// Where the loader put it.
    pub range: PhysRange,
    /// Its `bootargs`, if any and not empty.
    pub bootargs: Option<&'a str>,
}

/// The boot modules in `/chosen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BootModules<'a> {
    /// The guest kernel (`multiboot,kernel`).
    pub kernel: Option<BootModule<'a>>,
    /// The guest's initramfs (`multiboot,ramdisk`).
    pub ramdisk: Option<BootModule<'a>>,
}

impl<'a> BootModules<'a> {
    /// Both modules, with what they are.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, BootModule<'a>)> {
        [
            ("guest kernel", self.kernel),
            ("guest initramfs", self.ramdisk),
        ]
        .into_iter()
        .filter_map(|(what, m)| m.map(|m| (what, m)))
    }
}

/// Reads the modules among `chosen`'s children.
pub fn read<'a>(fdt: &Fdt<'a>, chosen: &Node<'a>) -> Result<BootModules<'a>, PlatformError<'a>> {
    let cells = if chosen.has("#address-cells") || chosen.has("#size-cells") {
        chosen.cells()
    } else {
        fdt.find("/").map(|r| r.cells()).unwrap_or(chosen.cells())
    };
    let mut found = BootModules::default();
    for node in chosen
        .children()
        .filter(|n| n.is_compatible("multiboot,module") && n.is_enabled())
    {
        let name = node.name();
        let bad = |property, why| PlatformError::BadProperty {
            node: name,
            property,
            why,
        };
        if !(1..=2).contains(&cells.address) || !(1..=2).contains(&cells.size) {
            return Err(bad(
                "reg",
                "/chosen #address-cells or #size-cells is not 1 or 2",
            ));
        }
        let reg = node.property("reg").ok_or(bad("reg", "missing"))?.value;
        let addr_len = cells.address as usize * 4;
        if reg.len() != addr_len + cells.size as usize * 4 {
            return Err(bad("reg", "not exactly one (address, size) entry"));
        }
        let (a, s) = reg.split_at(addr_len);
        let start = cells_value(a).ok_or(bad("reg", "bad cell"))?;
        let size = cells_value(s).ok_or(bad("reg", "bad cell"))?;
        let range = checked_range(name, "reg", 0, start, size)?;
        let bootargs = match node.property("bootargs") {
            None => None,
            Some(p) => {
                Some(p.str().ok_or(bad("bootargs", "not a string"))?).filter(|s| !s.is_empty())
            }
        };
        let module = BootModule {
            node: name,
            range,
            bootargs,
        };
        let kernel = node.is_compatible("multiboot,kernel");
        let ramdisk = node.is_compatible("multiboot,ramdisk");
        let slot = match (kernel, ramdisk) {
            (true, true) => {
                return Err(bad(
                    "compatible",
                    "both multiboot,kernel and multiboot,ramdisk",
                ))
            }
            (true, false) => &mut found.kernel,
            (false, true) => &mut found.ramdisk,
            // Unnamed: the first is the kernel, the second the ramdisk.
            (false, false) if found.kernel.is_none() => &mut found.kernel,
            (false, false) => &mut found.ramdisk,
        };
        if slot.is_some() {
            return Err(bad(
                "compatible",
                "a second multiboot,kernel or multiboot,ramdisk module",
            ));
        }
        *slot = Some(module);
    }
    if let (Some(k), Some(r)) = (found.kernel, found.ramdisk) {
        if k.range.overlaps(&r.range) {
            return Err(PlatformError::Overlap {
                what: k.node,
                range: k.range,
                other: r.node,
                other_range: r.range,
            });
        }
    }
    Ok(found)
}

/// Checks that every module lies in `memory`.
pub fn check_in_memory<'a>(
    modules: &BootModules<'a>,
    memory: &RegionList,
) -> Result<(), PlatformError<'a>> {
    for (_, m) in modules.iter() {
        if !memory.iter().any(|r| r.contains_range(&m.range)) {
            return Err(PlatformError::BadProperty {
                node: m.node,
                property: "reg",
                why: "the module is not inside RAM",
            });
        }
    }
    Ok(())
}
