//! Passthrough at boot: enumerate the host bridge, assign BARs, choose what
//! the guest gets from the command line, and report every decision. Also the
//! adapter that lets a guest's virtual config space reach its devices'
//! real config space.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::cmdline::Options;
use crate::mm::addr::PhysRange;
use crate::mm::attrs::Features;
use crate::pci::ecam::{ConfigAccess, Ecam};
use crate::pci::host;
use crate::pci::select::{self, DmaPolicy, Report, Selection};
use crate::pci::types::{Bdf, PassthroughDevice};
use crate::pci::vconfig::PhysicalConfig;
use crate::platform::{PciHostBridge, Platform};

/// Where a host bridge's configuration space is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamWindow {
    /// The ECAM window.
    pub range: PhysRange,
    /// First bus.
    pub bus_start: u8,
    /// Last bus.
    pub bus_end: u8,
}

impl EcamWindow {
    fn of(bridge: &PciHostBridge<'_>) -> Self {
        Self {
            range: bridge.ecam,
            bus_start: bridge.bus_start,
            bus_end: bridge.bus_end,
        }
    }

    /// An accessor for the window.
    ///
    /// # Safety
    ///
    /// The window must be mapped as Device memory in the hypervisor's map,
    /// and callers must not touch the same function's registers at once.
    pub unsafe fn accessor(&self) -> Ecam {
        // SAFETY: the caller vouches for the mapping and for exclusive use
        // of what it touches.
        unsafe {
            Ecam::new(
                self.range.start().raw() as *mut u8,
                self.bus_start,
                self.bus_end,
            )
        }
    }
}

/// What passthrough setup decided.
#[derive(Debug, Default)]
pub struct Passthrough {
    /// Devices the guest gets.
    pub devices: Vec<PassthroughDevice>,
    /// Their host bridge's config space.
    pub ecam: Option<EcamWindow>,
    /// Whether their DMA is cache-coherent (the host bridge's `dma-coherent`).
    pub dma_coherent: bool,
    /// The boot report: the host PCI tree with a decision per device and BAR.
    pub report: String,
}

/// Enumerates the first generic ECAM host bridge and applies the command
/// line's selection. Problems with the command line are reported and leave
/// the guest without passthrough; they never stop the boot.
///
/// # Safety
///
/// The platform's ECAM windows must be mapped as Device memory, and nothing
/// else may use PCI config space meanwhile.
pub unsafe fn setup(
    platform: &Platform<'_>,
    options: &Options<'_>,
    features: Features,
) -> Passthrough {
    let mut out = Passthrough::default();
    let Some(bridge) = platform.pcie.first() else {
        let _ = write!(
            out.report,
            "passthrough off: the device tree has no generic ECAM PCIe host bridge"
        );
        match platform.unsupported_pcie.first() {
            Some(u) => {
                let _ = writeln!(out.report, " ({} is {})", u.node, u.compatible);
            }
            None => {
                let _ = writeln!(out.report);
            }
        }
        if let Some(asked) = options.pci_passthrough {
            let _ = writeln!(out.report, "pci.passthrough={asked} ignored");
        }
        return out;
    };
    let window = EcamWindow::of(bridge);
    // SAFETY: the caller maps the window; setup is the only user now.
    let mut ecam = unsafe { window.accessor() };
    let found = host::probe(&mut ecam, bridge, &platform.memory);
    let selection = match Selection::parse(options.pci_passthrough, options.pci_attr) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(out.report, "{e}; passthrough off");
            Selection::default()
        }
    };
    let dma = match options.pci_dma.map(select::parse_dma) {
        None => DmaPolicy::Allow,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            let _ = writeln!(out.report, "{e}; bus mastering denied");
            DmaPolicy::Deny
        }
    };
    let (devices, decisions) =
        select::select(&found, &selection, features, dma, bridge.dma_coherent);
    let _ = write!(out.report, "{}", Report(&decisions));
    out.devices = devices;
    out.ecam = Some(window);
    out.dma_coherent = bridge.dma_coherent;
    out
}

/// One host function's config space, as a passed-through device's virtual
/// config space reaches it.
pub struct HostFunctionConfig {
    ecam: Ecam,
    bdf: Bdf,
}

impl HostFunctionConfig {
    /// The config space of `bdf` behind `window`.
    ///
    /// # Safety
    ///
    /// As for [`EcamWindow::accessor`]; the function must be passed through
    /// to one VM, whose virtual config space is then its only user.
    pub unsafe fn new(window: &EcamWindow, bdf: Bdf) -> Self {
        Self {
            // SAFETY: per the caller.
            ecam: unsafe { window.accessor() },
            bdf,
        }
    }
}

// SAFETY: the accessor holds only the ECAM window's address; MMIO to it is
// valid from any CPU, and each instance touches one function, which has one
// user (its VM).
unsafe impl Send for HostFunctionConfig {}

impl PhysicalConfig for HostFunctionConfig {
    fn read32(&mut self, offset: u16) -> u32 {
        self.ecam.read32(self.bdf, offset)
    }

    fn write(&mut self, offset: u16, size: u8, value: u32) {
        match size {
            1 => self.ecam.write8(self.bdf, offset, value as u8),
            2 => self.ecam.write16(self.bdf, offset, value as u16),
            _ => self.ecam.write32(self.bdf, offset, value),
        }
    }
}
