//! A running VM on real hardware: guest RAM, stage 2, the guest image and
//! device tree in place, the vcpu, and the run loop around the exit handler.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use spin::Mutex;

use crate::arch::aarch64::cpu::CpuFeatures;
use crate::arch::aarch64::guest::{self, GuestEl2Config, HwGuestArch};
use crate::arch::aarch64::sysreg;
use crate::arch::aarch64::tlb::{dcache_range, zero_range, CacheOp, Stage2Tlb};
use crate::console;
use crate::devices::vpl011::VPl011;
use crate::mm::addr::{Ipa, IpaRange, PhysRange, PAGE_SIZE, SIZE_2M};
use crate::mm::attrs::BarPolicy;
use crate::mm::frame::{FrameAllocator, FrameError};
use crate::mm::pgtable::pool::{IdentityMap, PoolError, TablePool};
use crate::mm::stage2::{Stage2, Stage2Config, Stage2Error, Vmid, VtcrError};
use crate::pci::passthrough::{EcamWindow, HostFunctionConfig, Passthrough};
use crate::pci::types::{BarKind, Bdf, PassthroughDevice};
use crate::pci::vconfig::{BarEvent, PhysicalConfig, VconfigError, VirtualPciBus};
use crate::platform::GicVersion;
use crate::vm::config::VmConfig;
use crate::vm::exit::{self, ExitState, Outcome, Stage2Query};
use crate::vm::fdt_writer::FdtError;
use crate::vm::guest_dt::{
    self, GuestDtConfig, GuestGic, GuestPciWindow, GuestPcie, GuestUart, PciSpace,
};
use crate::vm::hypercall::{ExitCounter, MappingKind, Stage2Features, Stage2Info};
use crate::vm::image::{self, ImageError};
use crate::vm::initramfs;
use crate::vm::layout;
use crate::vm::mmio::{MmioBus, MmioDevice, MmioResult};
use crate::vm::psci::PsciState;
use crate::vm::sysreg::{GuestIdView, SysregState};
use crate::vm::vcpu::{self, VcpuContext};

/// Table pages for a VM's stage 2: RAM in blocks and a few devices need a
/// handful; BAR relocations and splits take more. A bounded pool: running
/// out is an error, never an allocator panic (hostile-guest item 13).
const STAGE2_POOL_PAGES: u64 = 256;

/// Room kept at the top of guest RAM for the guest's device tree.
const DT_RESERVE: u64 = SIZE_2M;

/// MPIDR_EL1 the guest's only vcpu reads: affinity 0, bit 31 RES1.
const VCPU_MPIDR: u64 = 1 << 31;

/// Where the running VM's exit counters are, for the debugger's `hv-exits`
/// (0 while no VM runs). Exported unmangled so gdb finds it by name.
#[no_mangle]
pub static HV_EXIT_COUNTERS: AtomicUsize = AtomicUsize::new(0);

/// Why a VM could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// Not enough physical memory.
    Frames(FrameError),
    /// Stage-2 configuration.
    Vtcr(VtcrError),
    /// Stage-2 table pool.
    Pool(PoolError),
    /// Stage-2 mapping.
    Stage2(Stage2Error),
    /// The guest image.
    Image(ImageError),
    /// The guest's initramfs.
    Initramfs(initramfs::InitramfsError),
    /// The guest device tree.
    DeviceTree(FdtError),
    /// An emulated device could not be placed.
    Bus,
    /// The passed-through devices cannot be shown to the guest.
    Pci(VconfigError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frames(e) => write!(f, "guest memory: {e}"),
            Self::Vtcr(e) => write!(f, "stage 2: {e:?}"),
            Self::Pool(e) => write!(f, "stage-2 tables: {e}"),
            Self::Stage2(e) => write!(f, "stage 2: {e:?}"),
            Self::Image(e) => write!(f, "guest image: {e}"),
            Self::Initramfs(e) => write!(f, "guest initramfs: {e}"),
            Self::DeviceTree(e) => write!(f, "guest device tree: {e}"),
            Self::Bus => write!(f, "emulated devices overlap"),
            Self::Pci(e) => write!(f, "passthrough: {e}"),
        }
    }
}

/// Copies the initramfs the loader left at `file` into guest RAM (`ram`,
/// the VM's `ram_ipa`) above the kernel at `kernel`; returns where it went.
///
/// # Safety
///
/// `file` must be memory the loader filled, mapped readable and not
/// written while the VM is built.
unsafe fn copy_initramfs(
    ram: &mut [u8],
    ram_ipa: IpaRange,
    kernel: IpaRange,
    file: PhysRange,
) -> Result<IpaRange, BuildError> {
    let placed = initramfs::placement(ram_ipa, kernel, file.size(), DT_RESERVE)
        .map_err(BuildError::Initramfs)?;
    // SAFETY: the caller vouches for `file`.
    let bytes = unsafe {
        core::slice::from_raw_parts(file.start().raw() as *const u8, file.size() as usize)
    };
    let offset = (placed.start().raw() - ram_ipa.start().raw()) as usize;
    ram.get_mut(offset..offset + bytes.len())
        .ok_or(BuildError::Initramfs(initramfs::InitramfsError::Empty))?
        .copy_from_slice(bytes);
    log::info!(
        "vm: initramfs of {} KiB at IPA {:#x}..{:#x}",
        file.size() >> 10,
        placed.start().raw(),
        placed.end().raw()
    );
    Ok(placed)
}

/// How a VM ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmEnd {
    /// PSCI SYSTEM_OFF (or CPU_OFF of the last vcpu).
    PowerOff,
    /// PSCI SYSTEM_RESET: by this project's convention for test guests, a
    /// failure verdict.
    Reset,
    /// The VM could not go on; the hypervisor is fine.
    Stopped(&'static str),
}

/// The guest's virtual PCIe host bridge, shared between the MMIO bus (which
/// the exit handler drives) and the run loop (which applies the stage-2
/// changes its accesses ask for).
struct Pci {
    bus: Arc<Mutex<VirtualPciBus>>,
    /// Set by a config-space write: BAR events may be queued.
    pending: Arc<AtomicBool>,
    ecam: EcamWindow,
    devices: Vec<PassthroughDevice>,
}

/// The MMIO-bus face of the shared virtual host bridge.
struct SharedPci {
    bus: Arc<Mutex<VirtualPciBus>>,
    pending: Arc<AtomicBool>,
}

impl MmioDevice for SharedPci {
    fn name(&self) -> &'static str {
        "pci-ecam"
    }

    fn read(&mut self, offset: u64, size: u8) -> MmioResult<u64> {
        self.bus.lock().read(offset, size)
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> MmioResult<()> {
        let r = self.bus.lock().write(offset, size, value);
        self.pending.store(true, Ordering::Relaxed);
        r
    }
}

/// What is mapped where in a VM's IPA space, for the stage-2 hypercalls.
struct IpaMap {
    regions: Vec<(IpaRange, MappingKind)>,
    features: Stage2Features,
    pci: Option<Pci>,
}

impl Stage2Query for (&Stage2<IdentityMap>, &IpaMap) {
    fn stage2_info(&self, ipa: Ipa) -> Stage2Info {
        let (stage2, map) = *self;
        let bar = map.pci.as_ref().and_then(|pci| {
            pci.bus
                .lock()
                .mapped()
                .find(|(r, _, _)| r.contains(ipa))
                .map(|(_, _, policy)| match policy {
                    BarPolicy::Device => MappingKind::BarPolicyDevice,
                    BarPolicy::GuestChoice => MappingKind::BarGuestChoice,
                    BarPolicy::Cacheable => MappingKind::BarCacheable,
                })
        });
        let kind = bar.unwrap_or_else(|| {
            map.regions
                .iter()
                .find(|(r, _)| r.contains(ipa))
                .map_or(MappingKind::Unmapped, |(_, k)| *k)
        });
        let translation = stage2.translate(ipa);
        Stage2Info {
            mem_attr: translation.map_or(0, |t| t.attrs.memattr.bits()),
            kind,
            features: Stage2Features {
                xn: translation.is_some_and(|t| t.attrs.xn),
                ..map.features
            },
        }
    }

    fn bar_check(&self, routing_id: u16, bar: u8) -> Option<(u64, u64)> {
        let pci = self.1.pci.as_ref()?;
        let guest = Bdf::new(
            (routing_id >> 8) as u8,
            ((routing_id >> 3) & 31) as u8,
            (routing_id & 7) as u8,
        )?;
        let host = pci.bus.lock().host_bdf(guest)?;
        let device = pci.devices.iter().find(|d| d.host_bdf == host)?;
        let (b, _) = device.bars.get(usize::from(bar))?.as_ref()?;
        // SAFETY: the window is mapped; these reads of the device's BAR
        // registers have no side effects and race with nothing (one vcpu).
        let mut phys = unsafe { HostFunctionConfig::new(&pci.ecam, host) };
        let offset = 0x10 + 4 * u16::from(bar);
        let low = u64::from(phys.read32(offset) & !0xf);
        let now = match b.kind {
            BarKind::Mem64 => low | (u64::from(phys.read32(offset + 4)) << 32),
            _ => low,
        };
        Some((now, b.pci_addr))
    }
}

/// A VM ready to run.
pub struct Vm {
    stage2: Stage2<IdentityMap>,
    exits: ExitState,
    ctx: Box<VcpuContext>,
    el2: GuestEl2Config,
    ipa_map: IpaMap,
}

fn bus_register(
    bus: &mut MmioBus,
    range: IpaRange,
    device: Box<dyn MmioDevice + Send>,
) -> Result<(), BuildError> {
    bus.register(range, device).map_err(|_| BuildError::Bus)
}

/// Applies one BAR change to stage 2. Never inlined: the place to break in a
/// debugger to see a BAR appear (`break hypervisor::vm::machine::apply_bar_event`).
#[inline(never)]
fn apply_bar_event(stage2: &mut Stage2<IdentityMap>, event: BarEvent) {
    let mut tlb = Stage2Tlb;
    let result = match event {
        BarEvent::Map {
            guest,
            host,
            policy,
        } => {
            log::debug!("vm: BAR {guest} -> PA {host} mapped, policy {policy:?}");
            stage2.map_passthrough_bar(guest, host, policy, &mut tlb)
        }
        BarEvent::Unmap { guest } => {
            log::debug!("vm: BAR {guest} unmapped");
            stage2.unmap(guest, &mut tlb)
        }
    };
    if let Err(e) = result {
        log::warn!("vm: stage 2 refused a BAR change {event:?}: {e:?}");
    }
}

/// One exit of the vcpu, handled. A plain function that is never inlined:
/// the place to break in a debugger (`break hypervisor::vm::machine::vcpu_exit`).
#[inline(never)]
fn vcpu_exit(vm: &mut Vm, arch: &mut HwGuestArch) -> Outcome {
    exit::handle_exit(
        &mut vm.ctx.guest,
        &mut vm.exits,
        arch,
        &(&vm.stage2, &vm.ipa_map),
    )
}

impl Vm {
    /// Builds the VM: guest RAM, stage 2, the image and device tree in
    /// guest RAM, the emulated devices and the vcpu at the image's entry.
    pub fn build(
        config: &VmConfig,
        passthrough: Passthrough,
        frames: &mut FrameAllocator,
        cpu: &CpuFeatures,
    ) -> Result<Self, BuildError> {
        // Guest RAM, 2 MiB aligned so stage 2 can use blocks.
        let ram_pa = frames
            .alloc(config.ram.size(), SIZE_2M)
            .map_err(BuildError::Frames)?;
        let pool_pa = frames
            .alloc(STAGE2_POOL_PAGES * PAGE_SIZE, PAGE_SIZE * 16)
            .map_err(BuildError::Frames)?;
        let pool = TablePool::new(pool_pa, IdentityMap).map_err(BuildError::Pool)?;
        let s2config =
            Stage2Config::new(cpu.ps_field(), config.ipa_bits).map_err(BuildError::Vtcr)?;
        let mut stage2 =
            Stage2::new(s2config, Vmid(1), config.features, pool).map_err(BuildError::Stage2)?;
        let mut tlb = Stage2Tlb;
        stage2
            .map_ram(config.ram, ram_pa.start(), &mut tlb)
            .map_err(BuildError::Stage2)?;

        // Whatever was in these frames before is not the guest's to see.
        // SAFETY: the range is the VM's RAM, Normal memory in the EL2 map,
        // and nothing else uses it.
        unsafe { zero_range(ram_pa.start().raw(), ram_pa.size()) };

        // SAFETY: the frame allocator gave this range to the VM alone, and
        // the EL2 map covers all usable RAM read-write.
        let ram = unsafe {
            core::slice::from_raw_parts_mut(ram_pa.start().raw() as *mut u8, ram_pa.size() as usize)
        };

        // The guest image: the kernel boot module, else the loader's initrd.
        // SAFETY: the DT says the loader put it here; the EL2 map covers it
        // read-only and it was carved out of usable memory.
        let file = unsafe {
            core::slice::from_raw_parts(
                config.image.start().raw() as *const u8,
                config.image.size() as usize,
            )
        };
        let parsed = image::parse(file).map_err(BuildError::Image)?;
        let placed = image::placement(&parsed, config.ram, file.len() as u64, DT_RESERVE)
            .map_err(BuildError::Image)?;
        let entry = parsed
            .entry(&placed)
            .ok_or(BuildError::Image(ImageError::Empty))?;
        let offset = (placed.start().raw() - config.ram.start().raw()) as usize;
        ram.get_mut(offset..offset + file.len())
            .ok_or(BuildError::Image(ImageError::Empty))?
            .copy_from_slice(file);
        let initrd = match config.initramfs {
            // SAFETY: as for the image: a carve-out the EL2 map covers read-only.
            Some(r) => Some(unsafe { copy_initramfs(ram, config.ram, placed, r)? }),
            None => None,
        };

        // The guest's device tree, at the top of its RAM.
        let gic = match config.gic {
            GicVersion::V2 => GuestGic::V2 {
                dist: layout::GIC_DIST,
                cpu: layout::GIC_CPU,
            },
            GicVersion::V3 => GuestGic::V3 {
                dist: layout::GIC_DIST,
                // One vcpu: one redistributor frame pair.
                redist: IpaRange::new(layout::GIC_REDIST.start(), 0x2_0000)
                    .unwrap_or(layout::GIC_REDIST),
            },
        };
        let pci_windows = [
            GuestPciWindow {
                kind: PciSpace::Mem32,
                prefetchable: false,
                pci_addr: layout::PCI_MMIO32.start().raw(),
                cpu_addr: layout::PCI_MMIO32.start(),
                size: layout::PCI_MMIO32.size(),
            },
            GuestPciWindow {
                kind: PciSpace::Mem64,
                prefetchable: false,
                pci_addr: layout::PCI_MMIO64.start().raw(),
                cpu_addr: layout::PCI_MMIO64.start(),
                size: layout::PCI_MMIO64.size(),
            },
        ];
        let guest_pcie = (!passthrough.devices.is_empty()).then_some(GuestPcie {
            ecam: layout::PCI_ECAM,
            bus_start: 0,
            bus_end: 255,
            windows: &pci_windows,
            dma_coherent: passthrough.dma_coherent,
        });
        let dt = guest_dt::build(&GuestDtConfig {
            ram: config.ram,
            cpu_mpidrs: &[0],
            uart: Some(GuestUart {
                base: layout::UART.start(),
                size: layout::UART.size(),
                spi: layout::UART_SPI,
            }),
            gic,
            timer_ppis: [13, 14, 11, 10],
            psci_method: "hvc",
            bootargs: &config.bootargs,
            stdout_path: true,
            initrd,
            pcie: guest_pcie,
            hypervisor_node: true,
        })
        .map_err(BuildError::DeviceTree)?;
        let dt_ipa = config.ram.end().raw() - DT_RESERVE;
        let dt_offset = (dt_ipa - config.ram.start().raw()) as usize;
        ram.get_mut(dt_offset..dt_offset + dt.len())
            .ok_or(BuildError::DeviceTree(FdtError::TooLarge))?
            .copy_from_slice(&dt);

        if stage2.ram_needs_clean_to_poc() {
            // Without FWB the guest starts with its MMU and caches off and
            // reads memory directly: what the hypervisor wrote through its
            // cacheable map must reach the point of coherency first.
            // SAFETY: guest RAM is mapped in the EL2 map; cleaning loses nothing.
            unsafe {
                dcache_range(
                    CacheOp::CleanInvalidate,
                    ram_pa.start().raw(),
                    ram_pa.size(),
                    cpu.dcache_line(),
                )
            };
        }

        let mut bus_devices = MmioBus::new();
        bus_register(
            &mut bus_devices,
            layout::UART,
            Box::new(VPl011::new(|b: u8| console::guest_write_byte(b))),
        )?;
        let pci = match passthrough.ecam {
            Some(ecam) if !passthrough.devices.is_empty() => {
                let phys = passthrough
                    .devices
                    .iter()
                    .map(|d| {
                        // SAFETY: the ECAM window is in the EL2 map; each
                        // device is passed to this VM alone, whose virtual
                        // config space becomes its config space's only user.
                        let f = unsafe { HostFunctionConfig::new(&ecam, d.host_bdf) };
                        Box::new(f) as Box<dyn PhysicalConfig + Send>
                    })
                    .collect();
                let vbus =
                    VirtualPciBus::new(&passthrough.devices, phys).map_err(BuildError::Pci)?;
                let bus = Arc::new(Mutex::new(vbus));
                let pending = Arc::new(AtomicBool::new(false));
                bus_register(
                    &mut bus_devices,
                    layout::PCI_ECAM,
                    Box::new(SharedPci {
                        bus: bus.clone(),
                        pending: pending.clone(),
                    }),
                )?;
                Some(Pci {
                    bus,
                    pending,
                    ecam,
                    devices: passthrough.devices,
                })
            }
            _ => None,
        };
        let mut psci = PsciState::new(VCPU_MPIDR);
        psci.set_entry_range(config.ram);

        let mut ctx = Box::new(VcpuContext::default());
        ctx.guest.pc = entry.raw();
        ctx.guest.pstate = vcpu::INITIAL_PSTATE;
        ctx.guest.x[0] = dt_ipa;

        let el2 = GuestEl2Config {
            hcr: vcpu::hcr_for(cpu, true),
            vtcr: stage2.vtcr(),
            vttbr: stage2.vttbr(),
            mdcr: vcpu::mdcr(),
            cnthctl: vcpu::cnthctl(),
            cptr: vcpu::cptr(),
            vmpidr: VCPU_MPIDR,
        };
        let ipa_map = IpaMap {
            regions: alloc::vec![
                (config.ram, MappingKind::GuestRam),
                (layout::UART, MappingKind::EmulatedMmio),
                (layout::PCI_ECAM, MappingKind::EmulatedMmio),
            ],
            features: Stage2Features {
                fwb: config.features.fwb,
                dic: config.features.dic,
                idc: config.features.idc,
                xn: false,
            },
            pci,
        };
        log::info!(
            "vm: {} MiB RAM at IPA {} (PA {}), {} of {} KiB at {}, entry {}, DT at {:#x}, bootargs {:?}",
            config.ram.size() >> 20,
            config.ram.start(),
            ram_pa.start(),
            match parsed.kind {
                image::ImageKind::Image => "arm64 Image",
                image::ImageKind::Flat => "flat binary",
            },
            file.len() >> 10,
            placed.start(),
            entry,
            dt_ipa,
            config.bootargs
        );
        log::info!(
            "vm: stage 2 VTCR_EL2={:#x} VTTBR_EL2={:#x}, {} table pages, guest RAM MemAttr {:#06b}{}",
            stage2.vtcr(),
            stage2.vttbr(),
            stage2.table().table_pages(),
            stage2
                .translate(config.ram.start())
                .map_or(0, |t| t.attrs.memattr.bits()),
            if stage2.ram_needs_clean_to_poc() {
                " (no FWB: guest RAM cleaned to PoC)"
            } else {
                " (FWB: forced write-back)"
            }
        );
        Ok(Self {
            exits: ExitState::new(bus_devices, psci, config.ipa_bits).with_sysregs(
                SysregState::new(GuestIdView::sanitize(&sysreg::id_group3(), config.gic)),
            ),
            stage2,
            ctx,
            el2,
            ipa_map,
        })
    }

    /// Runs the vcpu until the VM ends.
    pub fn run(&mut self) -> VmEnd {
        // SAFETY: stage 2 maps only the VM's own RAM (emulated devices are
        // left unmapped so they trap).
        unsafe { guest::configure_el2(&self.el2) };
        let mut arch = HwGuestArch;
        HV_EXIT_COUNTERS.store(
            core::ptr::addr_of!(self.exits.counters) as usize,
            Ordering::Relaxed,
        );
        loop {
            // SAFETY: configured above; the context belongs to this VM.
            let _vector = unsafe { guest::run(&mut self.ctx) };
            let outcome = vcpu_exit(self, &mut arch);
            self.apply_bar_events();
            match outcome {
                Outcome::Resume => {}
                Outcome::PowerOff => return VmEnd::PowerOff,
                Outcome::Reset => return VmEnd::Reset,
                Outcome::Stop(why) => return VmEnd::Stopped(why),
            }
        }
    }

    /// Moves stage 2 after the guest's config-space writes: a BAR appears
    /// while its device decodes memory and disappears when it stops. The
    /// virtual config space has checked every address already; a failure
    /// here (table pool exhausted) is the guest's problem and only logged.
    fn apply_bar_events(&mut self) {
        let Some(pci) = &self.ipa_map.pci else { return };
        // Runs after every exit: a plain load first, so the common case
        // (nothing pending) costs no exclusive load/store pair.
        if !pci.pending.load(Ordering::Relaxed) || !pci.pending.swap(false, Ordering::Relaxed) {
            return;
        }
        let events: Vec<BarEvent> = pci.bus.lock().take_events().collect();
        for event in events {
            apply_bar_event(&mut self.stage2, event);
        }
    }

    /// Exit counters so far.
    pub fn exit_count(&self, counter: ExitCounter) -> u64 {
        self.exits.counters.get(counter)
    }

    /// The guest PC at the last exit.
    pub fn guest_pc(&self) -> u64 {
        self.ctx.guest.pc
    }
}
