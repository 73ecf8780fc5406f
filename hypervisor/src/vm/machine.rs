//! A running VM on real hardware: guest RAM, stage 2, the guest image and
//! device tree in place, its vCPUs on their physical CPUs, and the run loop
//! around the exit handler.
//!
//! Static partitioning: vCPU `i` runs on physical CPU `i` of the VM's list
//! (the boot CPU is vCPU 0), started with the firmware's PSCI CPU_ON the
//! first time the guest turns that vCPU on; a CPU whose vCPU is off waits in
//! WFE for the next CPU_ON and never runs anything else.
//!
//! Locking rules:
//! - The [`Vm`] is built once and never freed; what its vCPUs share is
//!   behind locks: stage 2 ([`Vm::stage2`]), the PSCI table, each emulated
//!   device (the bus locks one device per access), the virtual PCI bus.
//! - A lock is held only inside one exit's handling, never across guest
//!   entry, and never while waiting for another CPU, so one vCPU's exit
//!   never waits for another vCPU to exit.
//! - Order, where two are held: device, then virtual PCI bus; stage 2 is
//!   taken alone, after the exit handler has released everything.
//! - A stage-2 change (a BAR moved or unmapped) is applied under the stage-2
//!   lock with break-before-make and broadcast (inner-shareable) TLB
//!   invalidation of the VM's VMID completed by a DSB before the vCPU that
//!   asked for it resumes: no CPU can use the old translation afterwards.
//! - Everything else a vCPU touches (its registers, counters, pending
//!   effects) belongs to the CPU that runs it.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use spin::Mutex;

use crate::arch::aarch64::context::PerCpu;
use crate::arch::aarch64::cpu::CpuFeatures;
use crate::arch::aarch64::firmware;
use crate::arch::aarch64::guest::{self, GuestEl2Config, HwGuestArch};
use crate::arch::aarch64::smp::{self, CpuBoot};
use crate::arch::aarch64::sysreg;
use crate::arch::aarch64::tlb::{dcache_range, zero_range, CacheOp, Stage2Tlb};
use crate::console;
use crate::devices::mmio::{Effect, Effects, MmioBus, MmioDevice, MmioResult, VcpuId};
use crate::devices::vpl011::VPl011;
use crate::layout::ImageLayout;
use crate::mm::addr::{Ipa, IpaRange, PhysAddr, PAGE_SIZE, SIZE_2M};
use crate::mm::attrs::BarPolicy;
use crate::mm::frame::FrameAllocator;
use crate::mm::pgtable::pool::{IdentityMap, TablePool};
use crate::mm::stage2::{Stage2, Stage2Config, Vmid};
use crate::pci::passthrough::{EcamWindow, HostFunctionConfig, Passthrough};
use crate::pci::types::{BarKind, Bdf, PassthroughDevice};
use crate::pci::vconfig::{GuestWindows, PhysicalConfig, VirtualPciBus};
use crate::vm::builder::{vcpu_mpidr, BuildError, PciePlan, RamBlocks, VmPlan};
use crate::vm::config::{VmConfig, MAX_VCPUS};
use crate::vm::exit::{self, ExitState, Outcome, Stage2Query, VmExitShared};
use crate::vm::hypercall::{ExitCounter, MappingKind, Stage2Features, Stage2Info};
use crate::vm::image::ImageKind;
use crate::vm::layout;
use crate::vm::psci::{self};
use crate::vm::sysreg::{GuestIdView, SysregState};
use crate::vm::vcpu::{self, GuestRegs};

/// Table pages for a VM's stage 2: RAM in blocks and a few devices need a
/// handful; BAR relocations and splits take more. A bounded pool: running
/// out is an error, never an allocator panic (hostile-guest item 13).
const STAGE2_POOL_PAGES: u64 = 256;

/// Where the boot vCPU's exit counters are, for the debugger's `hv-exits`
/// (0 while no VM runs). Exported unmangled so gdb finds it by name.
#[no_mangle]
pub static HV_EXIT_COUNTERS: AtomicUsize = AtomicUsize::new(0);

/// For the debugger: entry `i` is the address of vCPU `i`'s `VcpuContext`
/// (layout in `arch::aarch64::context`), 0 while vCPU `i` has never run.
#[no_mangle]
pub static HV_VCPU_CONTEXTS: [AtomicUsize; MAX_VCPUS] = [const { AtomicUsize::new(0) }; MAX_VCPUS];

/// For the debugger: entry `i` is the address of vCPU `i`'s exit counters,
/// laid out like the one `HV_EXIT_COUNTERS` points at.
#[no_mangle]
pub static HV_VCPU_EXIT_COUNTERS: [AtomicUsize; MAX_VCPUS] =
    [const { AtomicUsize::new(0) }; MAX_VCPUS];

/// How long a vCPU's start may take before its physical CPU counts as
/// failed, and how long the VM's end waits for the other vCPUs to stop:
/// a tenth of a second of the system counter.
const CPU_WAIT_DIVISOR: u64 = 10;

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
    ecam: EcamWindow,
    devices: Vec<PassthroughDevice>,
}

/// The MMIO-bus face of the shared virtual host bridge: the stage-2 changes
/// a config write causes leave as effects.
struct SharedPci {
    bus: Arc<Mutex<VirtualPciBus>>,
}

impl MmioDevice for SharedPci {
    fn name(&self) -> &'static str {
        "pci-ecam"
    }

    fn read(&mut self, vcpu: VcpuId, offset: u64, size: u8, fx: &mut Effects) -> MmioResult<u64> {
        MmioDevice::read(&mut *self.bus.lock(), vcpu, offset, size, fx)
    }

    fn write(
        &mut self,
        vcpu: VcpuId,
        offset: u64,
        size: u8,
        value: u64,
        fx: &mut Effects,
    ) -> MmioResult<()> {
        MmioDevice::write(&mut *self.bus.lock(), vcpu, offset, size, value, fx)
    }
}

/// What is mapped where in a VM's IPA space, for the stage-2 hypercalls.
struct IpaMap {
    regions: Vec<(IpaRange, MappingKind)>,
    features: Stage2Features,
    pci: Option<Pci>,
}

/// The hypercalls' view of the VM: stage 2 is locked only for the one
/// translation a query needs.
struct VmQuery<'a>(&'a Vm);

impl Stage2Query for VmQuery<'_> {
    fn stage2_info(&self, ipa: Ipa) -> Stage2Info {
        let map = &self.0.ipa_map;
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
        let translation = self.0.stage2.lock().translate(ipa);
        Stage2Info {
            mem_attr: translation.map_or(0, |t| t.attrs.memattr.bits()),
            kind,
            features: Stage2Features {
                xn: translation.is_some_and(|t| t.attrs.xn),
                ..map.features
            },
        }
    }

    fn fault_in(&self, ipa: Ipa) -> bool {
        let vm = self.0;
        // Every emulated MMIO access is a translation fault too: decide
        // that it is not RAM without taking the lock.
        if !vm.ram.contains(ipa) {
            return false;
        }
        let mut blocks = vm.ram_blocks.lock();
        let Some((i, _)) = blocks.block(ipa) else {
            return false;
        };
        let mut stage2 = vm.stage2.lock();
        let mut tlb = Stage2Tlb::for_vm(vm.vttbr);
        let populated = blocks.populate(i, vm.ram_pa, &mut stage2, &mut tlb, |r| {
            // SAFETY: a block of the VM's RAM not yet in stage 2, so no
            // guest access can see it half zeroed; Normal memory in the EL2
            // map. Cleaning to PoC loses nothing.
            unsafe {
                zero_range(r.start().raw(), r.size());
                if vm.clean_to_poc {
                    dcache_range(
                        CacheOp::CleanInvalidate,
                        r.start().raw(),
                        r.size(),
                        vm.dcache_line,
                    );
                }
            }
        });
        match populated {
            Ok(true) => true,
            // Mapped by another vCPU a moment ago: run it again. (Present
            // but still faulting cannot be, and must not loop: abort.)
            Ok(false) => stage2.translate(ipa).is_some(),
            Err(e) => {
                log::error!("vm: guest RAM block at {ipa} could not be mapped: {e}");
                false
            }
        }
    }

    fn bar_check(&self, routing_id: u16, bar: u8) -> Option<(u64, u64)> {
        let pci = self.0.ipa_map.pci.as_ref()?;
        let guest = Bdf::new(
            (routing_id >> 8) as u8,
            ((routing_id >> 3) & 31) as u8,
            (routing_id & 7) as u8,
        )?;
        // The virtual bus's lock, held to the end, keeps these reads from
        // racing with its writes.
        let vbus = pci.bus.lock();
        let host = vbus.host_bdf(guest)?;
        let device = pci.devices.iter().find(|d| d.host_bdf == host)?;
        let (b, _) = device.bars.get(usize::from(bar))?.as_ref()?;
        // SAFETY: the window is mapped; these reads of the device's BAR
        // registers have no side effects.
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

/// A physical CPU's state, as the VM's other CPUs see it.
mod cpu_state {
    /// Never started: the next CPU_ON of its vCPU asks the firmware.
    pub const NEVER: u8 = 0;
    /// Asked to start; not yet checked in.
    pub const STARTING: u8 = 1;
    /// Running the hypervisor (its vCPU on, or waiting for a CPU_ON).
    pub const ALIVE: u8 = 2;
    /// Did not start: its vCPU's CPU_ON answers INTERNAL_FAILURE.
    pub const FAILED: u8 = 3;
}

/// One vCPU as its VM sees it: where it runs, and its start mailbox.
struct VcpuSlot {
    /// The physical CPU's MPIDR affinity.
    host_mpidr: u64,
    /// [`cpu_state`] of that CPU.
    cpu: AtomicU8,
    /// A CPU_ON for this vCPU waits here: set (release) after `entry` and
    /// `context`, taken (acquire) by the vCPU's CPU.
    start: AtomicBool,
    entry: AtomicU64,
    context: AtomicU64,
    /// For a secondary CPU: what its entry code reads with the MMU off.
    boot: Option<Box<CpuBoot>>,
}

/// How the VM ended, as stored in [`Vm::end`]: 0 while it runs.
mod end_code {
    pub const RUNNING: u8 = 0;
    pub const POWER_OFF: u8 = 1;
    pub const RESET: u8 = 2;
    pub const STOPPED: u8 = 3;
}

/// A VM ready to run: what its vCPUs share.
pub struct Vm {
    /// Guest RAM, and the host memory behind it.
    ram: IpaRange,
    ram_pa: PhysAddr,
    /// Which RAM blocks are in stage 2; taken before `stage2` when both are.
    ram_blocks: Mutex<RamBlocks>,
    /// Without FWB: a block zeroed on first touch is cleaned to PoC too.
    clean_to_poc: bool,
    dcache_line: u64,
    /// Stage 2, locked for every change and translation.
    stage2: Mutex<Stage2<IdentityMap>>,
    /// VTTBR_EL2 of the VM: root and VMID, for its TLB maintenance.
    vttbr: u64,
    exits: Arc<VmExitShared>,
    /// The ID registers every vCPU reads, sanitized once.
    id_view: GuestIdView,
    el2: GuestEl2Config,
    ipa_map: IpaMap,
    vcpus: Vec<VcpuSlot>,
    /// [`end_code`]: set once, by the first vCPU that ends the VM.
    end: AtomicU8,
    stop_reason: Mutex<Option<&'static str>>,
    /// CPUs that have left guest code for good since the VM ended.
    stopped: AtomicUsize,
}

/// One vCPU, owned by the CPU that runs it.
struct Vcpu {
    percpu: Box<PerCpu>,
    exits: ExitState,
}

fn bus_register(
    bus: &mut MmioBus,
    range: IpaRange,
    device: Box<dyn MmioDevice + Send>,
) -> Result<(), BuildError> {
    bus.register(range, device).map_err(|_| BuildError::Bus)
}

/// Applies one stage-2 change asked for by a device. Never inlined: the
/// place to break in a debugger to see a BAR appear
/// (`break hypervisor::vm::machine::apply_bar_event`).
#[inline(never)]
fn apply_bar_event(stage2: &mut Stage2<IdentityMap>, tlb: &mut Stage2Tlb, effect: Effect) {
    let result = match effect {
        Effect::MapBar { ipa, pa, policy } => {
            log::debug!("vm: BAR {ipa} -> PA {pa} mapped, policy {policy:?}");
            stage2.map_passthrough_bar(ipa, pa, policy, tlb)
        }
        Effect::UnmapBar { ipa } => {
            log::debug!("vm: BAR {ipa} unmapped");
            stage2.unmap(ipa, tlb)
        }
        Effect::Line { .. } => return,
    };
    if let Err(e) = result {
        log::warn!("vm: stage 2 refused a BAR change {effect:?}: {e:?}");
    }
}

/// One exit of a vCPU, handled. A plain function that is never inlined:
/// the place to break in a debugger (`break hypervisor::vm::machine::vcpu_exit`).
#[inline(never)]
fn vcpu_exit(
    regs: &mut GuestRegs,
    exits: &mut ExitState,
    vm: &Vm,
    arch: &mut HwGuestArch,
) -> Outcome {
    exit::handle_exit(regs, exits, arch, &VmQuery(vm))
}

impl Vm {
    /// Builds the VM: guest RAM, stage 2, the image and device tree in
    /// guest RAM, the emulated devices, vCPU 0 ready at the image's entry
    /// and a start block for every other vCPU's physical CPU, whose stacks
    /// are the image's (`image`). The VM lives for ever.
    pub fn build(
        config: &VmConfig,
        passthrough: Passthrough,
        frames: &mut FrameAllocator,
        cpu: &CpuFeatures,
        image: &ImageLayout,
    ) -> Result<&'static Self, BuildError> {
        // The guest image, from the loader's initrd.
        // SAFETY: the DT says the loader put the initrd here; the EL2 map
        // covers it read-only and it was carved out of usable memory.
        let file = unsafe {
            core::slice::from_raw_parts(
                config.image.start().raw() as *const u8,
                config.image.size() as usize,
            )
        };
        let pcie = (!passthrough.devices.is_empty()).then_some(PciePlan {
            dma_coherent: passthrough.dma_coherent,
        });
        let plan = VmPlan::new(config, file, pcie)?;

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
        let mut tlb = Stage2Tlb::for_vm(stage2.vttbr());

        // Guest RAM enters stage 2 in 2 MiB blocks, each zeroed first (what
        // the frames held before is not the guest's to see): now the blocks
        // the image and DT go into, the rest on first touch. A device that
        // may master the bus could DMA into a block nobody has touched, and
        // a DMA fault cannot be retried: with one, all of RAM goes in now.
        let dma = passthrough.devices.iter().any(|d| d.bus_master_allowed);
        let mut blocks = RamBlocks::new(config.ram);
        let eager: Vec<usize> = if dma {
            (0..blocks.len()).collect()
        } else {
            plan.eager_blocks.clone()
        };
        for &i in &eager {
            blocks.populate(i, ram_pa.start(), &mut stage2, &mut tlb, |r| {
                // SAFETY: a block of the VM's RAM, Normal memory in the EL2
                // map, not yet in stage 2: no one else uses it.
                unsafe { zero_range(r.start().raw(), r.size()) }
            })?;
        }
        // SAFETY: the frame allocator gave this range to the VM alone, and
        // the EL2 map covers all usable RAM read-write.
        let ram = unsafe {
            core::slice::from_raw_parts_mut(ram_pa.start().raw() as *mut u8, ram_pa.size() as usize)
        };
        // SAFETY: as for the image: a boot module the loader filled, carved
        // out of usable memory and mapped read-only.
        let initramfs = config.initramfs.map(|r| unsafe {
            core::slice::from_raw_parts(r.start().raw() as *const u8, r.size() as usize)
        });
        plan.load(config, ram, file, initramfs)?;
        if let Some(r) = plan.initramfs_at {
            log::info!(
                "vm: initramfs of {} KiB at IPA {:#x}..{:#x}",
                r.size() >> 10,
                r.start().raw(),
                r.end().raw()
            );
        }
        let vcpu_count = plan.vcpus;
        let entry = plan.entry;
        let dt_ipa = plan.dt_at.raw();

        let clean_to_poc = stage2.ram_needs_clean_to_poc();
        if clean_to_poc {
            // Without FWB the guest starts with its MMU and caches off and
            // reads memory directly: what the hypervisor wrote through its
            // cacheable map must reach the point of coherency first.
            for &i in &eager {
                if let Some(r) = blocks.range(i) {
                    let pa = ram_pa.start().raw() + (r.start().raw() - config.ram.start().raw());
                    // SAFETY: guest RAM is mapped in the EL2 map; cleaning
                    // loses nothing.
                    unsafe {
                        dcache_range(CacheOp::CleanInvalidate, pa, r.size(), cpu.dcache_line())
                    };
                }
            }
        }
        log::info!(
            "vm: guest RAM: {} of {} 2 MiB blocks zeroed and mapped now{}",
            blocks.present_count(),
            blocks.len(),
            if dma {
                " (a passed-through device may master the bus: all of it)"
            } else {
                ", the rest on first touch"
            }
        );

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
                let windows = GuestWindows {
                    mmio32: layout::PCI_MMIO32,
                    mmio64: layout::PCI_MMIO64,
                };
                let vbus = VirtualPciBus::new(&passthrough.devices, phys, windows)
                    .map_err(BuildError::Pci)?;
                let bus = Arc::new(Mutex::new(vbus));
                bus_register(
                    &mut bus_devices,
                    layout::PCI_ECAM,
                    Box::new(SharedPci { bus: bus.clone() }),
                )?;
                Some(Pci {
                    bus,
                    ecam,
                    devices: passthrough.devices,
                })
            }
            _ => None,
        };
        let psci = plan.psci.clone();

        let el2 = GuestEl2Config {
            hcr: vcpu::hcr_for(cpu, true),
            vtcr: stage2.vtcr(),
            vttbr: stage2.vttbr(),
            mdcr: vcpu::mdcr(),
            cnthctl: vcpu::cnthctl(),
            cptr: vcpu::cptr(),
            vmpidr: vcpu_mpidr(0),
        };
        let ipa_map = IpaMap {
            regions: plan.regions.clone(),
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
            match plan.image_kind {
                ImageKind::Image => "arm64 Image",
                ImageKind::Flat => "flat binary",
            },
            file.len() >> 10,
            plan.image_at.start(),
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
        log::info!(
            "vm: {vcpu_count} vCPU{} on physical CPUs (MPIDR) {:x?}; vCPU i reads MPIDR affinity i",
            if vcpu_count == 1 { "" } else { "s" },
            config.cpus
        );
        let vcpus = config
            .cpus
            .iter()
            .enumerate()
            .map(|(i, &host_mpidr)| VcpuSlot {
                host_mpidr,
                cpu: AtomicU8::new(if i == 0 {
                    cpu_state::ALIVE
                } else {
                    cpu_state::NEVER
                }),
                // vCPU 0 is on from the start, at the image's entry with the
                // device tree's address in x0 (arm64 boot protocol).
                start: AtomicBool::new(i == 0),
                entry: AtomicU64::new(if i == 0 { entry.raw() } else { 0 }),
                context: AtomicU64::new(if i == 0 { dt_ipa } else { 0 }),
                boot: None,
            })
            .collect();
        let vttbr = stage2.vttbr();
        let mut vm = Box::new(Self {
            ram: config.ram,
            ram_pa: ram_pa.start(),
            ram_blocks: Mutex::new(blocks),
            clean_to_poc,
            dcache_line: cpu.dcache_line(),
            stage2: Mutex::new(stage2),
            vttbr,
            exits: Arc::new(VmExitShared::new(bus_devices, psci, config.ipa_bits)),
            id_view: GuestIdView::sanitize(&sysreg::id_group3(), config.gic),
            el2,
            ipa_map,
            vcpus,
            end: AtomicU8::new(end_code::RUNNING),
            stop_reason: Mutex::new(None),
            stopped: AtomicUsize::new(0),
        });
        // The secondaries' start blocks name the VM, so they are written
        // once it has its final address.
        let vm_addr = &*vm as *const Self as u64;
        let mmu = smp::el2_mmu();
        for (i, slot) in vm.vcpus.iter_mut().enumerate().skip(1) {
            let (Some([mair, tcr, ttbr0, sctlr]), Some(stacks)) = (mmu, image.cpu_stacks(i)) else {
                log::warn!("vm: no stacks or EL2 map for vCPU {i}'s CPU: its CPU_ON will fail");
                continue;
            };
            slot.boot = Some(Box::new(CpuBoot {
                mair,
                tcr,
                ttbr0,
                sctlr,
                sp_main: stacks.main.end().raw(),
                sp_exception: stacks.exception.end().raw(),
                index: i as u64,
                arg: vm_addr,
            }));
        }
        Ok(Box::leak(vm))
    }

    /// Runs the VM on the boot CPU as vCPU 0. Never returns: the CPU that
    /// ends the VM stops the machine, the others park.
    pub fn run(&'static self) -> ! {
        self.cpu_loop(0)
    }

    /// The life of one physical CPU of the VM: wait for its vCPU to be
    /// turned on (vCPU 0 is on from the start), run it until CPU_OFF, and
    /// again; or end the VM.
    fn cpu_loop(&'static self, index: usize) -> ! {
        let Some(slot) = self.vcpus.get(index) else {
            firmware::park()
        };
        let mut vcpu = Vcpu {
            percpu: Box::new(PerCpu {
                index,
                mpidr: slot.host_mpidr,
                ..PerCpu::default()
            }),
            exits: ExitState::for_vcpu(self.exits.clone(), VcpuId(index), index as u64)
                .with_sysregs(SysregState::new(self.id_view)),
        };
        // SAFETY: the block is this CPU's alone and is never freed (this
        // function does not return).
        unsafe { smp::set_percpu(&mut *vcpu.percpu) };
        if let (Some(ctx), Some(counters)) = (
            HV_VCPU_CONTEXTS.get(index),
            HV_VCPU_EXIT_COUNTERS.get(index),
        ) {
            ctx.store(
                core::ptr::addr_of!(vcpu.percpu.ctx) as usize,
                Ordering::Relaxed,
            );
            counters.store(
                core::ptr::addr_of!(vcpu.exits.counters) as usize,
                Ordering::Relaxed,
            );
        }
        if index == 0 {
            HV_EXIT_COUNTERS.store(
                core::ptr::addr_of!(vcpu.exits.counters) as usize,
                Ordering::Relaxed,
            );
        }
        slot.cpu.store(cpu_state::ALIVE, Ordering::Release);
        let mut arch = HwGuestArch;
        loop {
            let Some((entry, context)) = self.wait_for_start(slot) else {
                self.park_stopped()
            };
            vcpu.percpu.ctx.guest = GuestRegs {
                pc: entry,
                pstate: vcpu::INITIAL_PSTATE,
                ..GuestRegs::default()
            };
            vcpu.percpu.ctx.guest.x[0] = context;
            let el2 = GuestEl2Config {
                vmpidr: vcpu_mpidr(index),
                ..self.el2
            };
            // SAFETY: stage 2 maps only the VM's own memory (emulated devices
            // are left unmapped so they trap); EL1 is reset to the state PSCI
            // CPU_ON and the boot protocol promise (MMU and caches off).
            unsafe { guest::configure_el2(&el2) };
            self.exits.psci.lock().mark_running(index as u64);
            if index != 0 {
                log::debug!("vm: vCPU {index} on at {entry:#x}, context {context:#x}");
            }
            if let Some(end) = self.run_vcpu(&mut vcpu, &mut arch) {
                self.finish(index, end, &vcpu)
            }
        }
    }

    /// Runs the vCPU until CPU_OFF (`None`) or the end of the VM.
    fn run_vcpu(&'static self, vcpu: &mut Vcpu, arch: &mut HwGuestArch) -> Option<VmEnd> {
        loop {
            if self.end.load(Ordering::Acquire) != end_code::RUNNING {
                self.park_stopped()
            }
            // SAFETY: configured by `cpu_loop`; the context is this CPU's.
            let _vector = unsafe { guest::run(&mut vcpu.percpu.ctx) };
            let outcome = vcpu_exit(&mut vcpu.percpu.ctx.guest, &mut vcpu.exits, self, arch);
            self.apply_effects(&mut vcpu.exits.effects);
            match outcome {
                Outcome::Resume => {}
                Outcome::CpuOn {
                    target_mpidr,
                    entry,
                    context_id,
                } => {
                    if self.start_vcpu(target_mpidr, entry, context_id).is_err() {
                        self.exits.psci.lock().set_power(target_mpidr, false);
                        if let Some(x0) = vcpu.percpu.ctx.guest.x.first_mut() {
                            *x0 = psci::ret::INTERNAL_FAILURE as i64 as u64;
                        }
                    }
                }
                Outcome::CpuOff => return None,
                Outcome::PowerOff => return Some(VmEnd::PowerOff),
                Outcome::Reset => return Some(VmEnd::Reset),
                Outcome::Stop(why) => return Some(VmEnd::Stopped(why)),
            }
        }
    }

    /// Waits until a CPU_ON for this vCPU arrives: its entry point and
    /// context ID. `None` once the VM has ended.
    fn wait_for_start(&self, slot: &VcpuSlot) -> Option<(u64, u64)> {
        loop {
            if self.end.load(Ordering::Acquire) != end_code::RUNNING {
                return None;
            }
            if slot.start.swap(false, Ordering::Acquire) {
                return Some((
                    slot.entry.load(Ordering::Relaxed),
                    slot.context.load(Ordering::Relaxed),
                ));
            }
            // Woken by the SEV that follows every start request and the
            // VM's end; an event that came first makes WFE return at once.
            smp::wait_for_event();
        }
    }

    /// Hands vCPU `target` (its virtual MPIDR affinity) the CPU_ON that PSCI
    /// accepted, starting its physical CPU the first time. An error means
    /// the CPU could not be started: the caller answers INTERNAL_FAILURE.
    fn start_vcpu(&self, target: u64, entry: u64, context: u64) -> Result<(), ()> {
        let index = usize::try_from(target).map_err(|_| ())?;
        let slot = self.vcpus.get(index).ok_or(())?;
        match slot.cpu.load(Ordering::Acquire) {
            cpu_state::FAILED => return Err(()),
            cpu_state::NEVER => {}
            _ => {
                slot.entry.store(entry, Ordering::Relaxed);
                slot.context.store(context, Ordering::Relaxed);
                slot.start.store(true, Ordering::Release);
                smp::send_event();
                return Ok(());
            }
        }
        let Some(boot) = slot.boot.as_deref() else {
            return Err(());
        };
        slot.entry.store(entry, Ordering::Relaxed);
        slot.context.store(context, Ordering::Relaxed);
        slot.start.store(true, Ordering::Release);
        slot.cpu.store(cpu_state::STARTING, Ordering::Release);
        // SAFETY: `boot` lives as long as the VM, which is never freed; its
        // stacks are this CPU's slot of the image's secondary stacks, mapped
        // by the EL2 map and used by no other CPU.
        let boot: &'static CpuBoot = unsafe { &*(boot as *const CpuBoot) };
        // SAFETY: as above.
        if let Err(e) = unsafe { smp::start_cpu(slot.host_mpidr, boot) } {
            log::error!(
                "vm: physical CPU MPIDR {:#x} for vCPU {index} did not start: {e}; its CPU_ON fails",
                slot.host_mpidr
            );
            slot.start.store(false, Ordering::Relaxed);
            slot.cpu.store(cpu_state::FAILED, Ordering::Release);
            return Err(());
        }
        let (t0, freq) = sysreg::counter();
        let limit = freq / CPU_WAIT_DIVISOR;
        while slot.cpu.load(Ordering::Acquire) != cpu_state::ALIVE {
            if sysreg::counter().0.wrapping_sub(t0) > limit {
                log::error!(
                    "vm: physical CPU MPIDR {:#x} for vCPU {index} did not come up within 100 ms; its CPU_ON fails",
                    slot.host_mpidr
                );
                slot.start.store(false, Ordering::Relaxed);
                slot.cpu.store(cpu_state::FAILED, Ordering::Release);
                return Err(());
            }
            core::hint::spin_loop();
        }
        log::info!(
            "vm: physical CPU MPIDR {:#x} up for vCPU {index}",
            slot.host_mpidr
        );
        Ok(())
    }

    /// Applies what the last exit's device accesses asked for, before the
    /// vCPU resumes (see the locking rules at the top).
    fn apply_effects(&self, effects: &mut Effects) {
        if effects.is_empty() {
            return;
        }
        let mut stage2 = self.stage2.lock();
        let mut tlb = Stage2Tlb::for_vm(self.vttbr);
        for effect in effects.drain() {
            apply_bar_event(&mut stage2, &mut tlb, effect);
        }
    }

    /// Ends the VM from vCPU `index`: the first vCPU to end it records how,
    /// waits (a bounded time) for the others to leave guest code, reports,
    /// and stops the machine. A later one just parks.
    fn finish(&self, index: usize, end: VmEnd, vcpu: &Vcpu) -> ! {
        let code = match end {
            VmEnd::PowerOff => end_code::POWER_OFF,
            VmEnd::Reset => end_code::RESET,
            VmEnd::Stopped(why) => {
                *self.stop_reason.lock() = Some(why);
                end_code::STOPPED
            }
        };
        if self
            .end
            .compare_exchange(end_code::RUNNING, code, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            self.park_stopped()
        }
        smp::send_event();
        let others = self
            .vcpus
            .iter()
            .enumerate()
            .filter(|(i, s)| *i != index && s.cpu.load(Ordering::Acquire) == cpu_state::ALIVE)
            .count();
        let (t0, freq) = sysreg::counter();
        while self.stopped.load(Ordering::Acquire) < others {
            if sysreg::counter().0.wrapping_sub(t0) > freq / CPU_WAIT_DIVISOR {
                log::warn!(
                    "vm: {} of {others} other vCPUs still in guest code after 100 ms; stopping anyway",
                    others - self.stopped.load(Ordering::Acquire)
                );
                break;
            }
            core::hint::spin_loop();
        }
        console::guest_flush();
        let exits = vcpu.exits.counters.get(ExitCounter::Total);
        let from = if self.vcpus.len() > 1 {
            alloc::format!(" (from vCPU {index})")
        } else {
            alloc::string::String::new()
        };
        let result = match end {
            VmEnd::PowerOff => {
                log::info!("vm: the guest powered off{from} after {exits} exits");
                log::info!("stopping: system off");
                Ok(())
            }
            VmEnd::Reset => {
                log::warn!(
                    "vm: the guest asked for a reset{from} after {exits} exits: by convention, its failure verdict"
                );
                Err(crate::fatal::EXIT_GUEST_FAILED)
            }
            VmEnd::Stopped(why) => {
                log::error!(
                    "vm: stopped at guest pc {:#x}{from}: {why}",
                    vcpu.percpu.ctx.guest.pc
                );
                Err(crate::fatal::EXIT_GUEST_FAILED)
            }
        };
        firmware::stop(result)
    }

    /// Leaves guest code for good once the VM has ended: counted, then parked.
    fn park_stopped(&self) -> ! {
        self.stopped.fetch_add(1, Ordering::AcqRel);
        firmware::park()
    }

    /// The vCPUs the VM has.
    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }
}

/// Entered by a secondary CPU once its entry code has turned its MMU on and
/// taken its stacks: `index` is its vCPU, `vm` the [`Vm`] it belongs to.
#[no_mangle]
extern "C" fn rust_secondary_entry(index: u64, vm: u64) -> ! {
    // SAFETY: `Vm::build` wrote this VM's address into the CPU's boot block;
    // the VM is never freed.
    let vm: &'static Vm = unsafe { &*(vm as *const Vm) };
    vm.cpu_loop(usize::try_from(index).unwrap_or(usize::MAX))
}
