//! The hypervisor binary: the boot sequence, as numbered steps.
//!
//! Everything the hypervisor knows about the machine comes from the device
//! tree whose address the loader passes in x0; it is read once into a
//! [`Platform`](hypervisor::platform::Platform) and nothing re-reads it.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the hypervisor runs at EL2: build it with scripts/run or scripts/image");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod el2 {
    extern crate alloc;

    use core::fmt::Write;

    use hypervisor::arch::aarch64::cpu::CpuFeatures;
    use hypervisor::arch::aarch64::firmware::{self, PsciConduit};
    use hypervisor::arch::aarch64::smp;
    use hypervisor::arch::aarch64::sysreg;
    use hypervisor::arch::aarch64::tlb::{dcache_range, CacheOp, El2Tlb};
    use hypervisor::cmdline::Options;
    use hypervisor::drivers::pl011::Pl011;
    use hypervisor::fatal::{self, EXIT_BOOT, EXIT_PLATFORM};
    use hypervisor::mm::addr::{PhysAddr, PAGE_SIZE};
    use hypervisor::mm::frame::FrameAllocator;
    use hypervisor::mm::heap::LockedHeap;
    use hypervisor::mm::hyp_map::{self, Region, Use};
    use hypervisor::mm::pgtable::el2::{El2PageTable, El2Tlb as El2TlbAdapter};
    use hypervisor::mm::pgtable::pool::{IdentityMap, TablePool};
    use hypervisor::mm::regions::RegionList;
    use hypervisor::platform::{self, Platform, PsciMethod, UartKind};
    use hypervisor::vm::config::VmConfig;
    use hypervisor::vm::machine::Vm;
    use hypervisor::{console, layout, pci, selftest};

    #[global_allocator]
    static HEAP: LockedHeap = LockedHeap::empty();

    /// The hypervisor's own map, kept for later device mappings.
    static HYP_MAP: spin::Mutex<Option<El2PageTable<IdentityMap>>> = spin::Mutex::new(None);

    /// Heap size: enough for the VM's bookkeeping; page tables and guest
    /// memory come from the frame allocator, not the heap.
    const HEAP_SIZE: u64 = 8 << 20;

    /// Largest device tree accepted: a larger header size is corrupt.
    const MAX_DTB_SIZE: usize = 2 << 20;

    /// Output before the global console exists: straight to the UART, or
    /// through semihosting when there is none. Takes no locks, so it is safe
    /// with the MMU off.
    struct EarlyConsole(Option<Pl011>);

    impl Write for EarlyConsole {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            match &mut self.0 {
                Some(uart) => uart.write_str(s),
                None => {
                    // Semihosting takes NUL-terminated strings: send in chunks.
                    let mut buf = [0u8; 128];
                    for chunk in s.as_bytes().chunks(buf.len() - 1) {
                        buf[..chunk.len()].copy_from_slice(chunk);
                        buf[chunk.len()] = 0;
                        firmware::semihosting_write0(&buf[..=chunk.len()]);
                    }
                    Ok(())
                }
            }
        }
    }

    /// Entered from the boot assembly at EL2 with the MMU off.
    #[no_mangle]
    extern "C" fn rust_entry(dtb: u64, load: u64) -> ! {
        // First: when the hypervisor's own code began, for the boot-time
        // benchmark (logged once the log is up).
        let (entry_counter, _) = sysreg::counter();
        fatal::set_load_address(load);
        let mut early = EarlyConsole(None);
        match boot(dtb, load, entry_counter, &mut early) {
            Ok(()) => {
                log::info!("stopping: system off");
                firmware::stop(Ok(()))
            }
            Err(code) => {
                let _ = writeln!(early, "stopping: boot failed (status {code})");
                firmware::stop(Err(code))
            }
        }
    }

    /// The device tree blob at `pa`, bounded by its header's size.
    fn device_tree(pa: u64) -> Result<&'static [u8], &'static str> {
        if pa == 0 || !pa.is_multiple_of(8) {
            return Err("x0 does not hold a device tree address (it must be 8-byte aligned)");
        }
        // SAFETY: the boot protocol puts the DT at x0; 40 bytes of header are
        // read first, and the whole blob only once its size is checked.
        let header = unsafe { core::slice::from_raw_parts(pa as *const u8, 40) };
        let size = platform::fdt_total_size(header)
            .map_err(|_| "no valid device tree header at the address in x0")?;
        if size > MAX_DTB_SIZE {
            return Err("the device tree header claims more than 2 MiB");
        }
        // SAFETY: the loader placed `size` bytes of DT at `pa`; the range is
        // carved out of usable memory below, so nothing overwrites it.
        Ok(unsafe { core::slice::from_raw_parts(pa as *const u8, size) })
    }

    fn boot(
        dtb_pa: u64,
        load: u64,
        entry_counter: u64,
        early: &mut EarlyConsole,
    ) -> Result<(), u32> {
        // 1. What the CPU offers.
        let cpu = CpuFeatures::decode(&sysreg::id_registers());

        // 2. The device tree, read once into a validated Platform.
        let blob = device_tree(dtb_pa).map_err(|e| {
            let _ = writeln!(early, "error: device tree at {dtb_pa:#x}: {e}");
            EXIT_PLATFORM
        })?;
        let mut platform = Platform::from_fdt(blob).map_err(|e| {
            let _ = writeln!(early, "error: device tree at {dtb_pa:#x}: {e}");
            EXIT_PLATFORM
        })?;
        platform.locate_dtb(PhysAddr::new(dtb_pa)).map_err(|e| {
            let _ = writeln!(early, "error: device tree at {dtb_pa:#x}: {e}");
            EXIT_PLATFORM
        })?;

        // 3. The console UART the DT names.
        if let Some(uart) = platform.uart {
            match uart.kind {
                UartKind::Pl011 => {
                    // SAFETY: the DT describes a PL011 at this address and
                    // nothing else in the hypervisor drives it.
                    let mut pl011 = unsafe { Pl011::new(uart.regs.start().raw() as *mut u8) };
                    pl011.init();
                    fatal::set_early_uart(uart.regs.start().raw());
                    early.0 = Some(pl011);
                }
                UartKind::Other(compatible) => {
                    let _ = writeln!(
                        early,
                        "warning: console {} is '{compatible}', which has no driver; using semihosting",
                        uart.node
                    );
                }
            }
        }

        // 4. The command line.
        let options = Options::parse(platform.chosen.bootargs.unwrap_or(""));

        // 5. Firmware calls. HVC from EL2 would trap to the hypervisor itself.
        let conduit = match platform.psci {
            Some(PsciMethod::Smc) => PsciConduit::Smc,
            Some(PsciMethod::Hvc) => {
                let _ = writeln!(
                    early,
                    "warning: PSCI method is hvc, which cannot reach firmware from EL2; power-off falls back to semihosting"
                );
                PsciConduit::None
            }
            None => PsciConduit::None,
        };
        firmware::set_psci_conduit(conduit);

        // 6. Physical memory: RAM minus the image, the DT, the initrd and
        //    firmware reservations, each overlap refused by name.
        let image = layout::image_layout();
        let usable = platform.usable_memory(image.image).map_err(|e| {
            let _ = writeln!(early, "error: memory map: {e}");
            EXIT_PLATFORM
        })?;
        let mut frames = FrameAllocator::new(&usable).map_err(|e| {
            let _ = writeln!(early, "error: memory map: {e}");
            EXIT_PLATFORM
        })?;

        // 7. The hypervisor's own map; MMU and caches on.
        let hyp_map = enable_mmu(&cpu, &platform, &image, &usable, &mut frames).map_err(|e| {
            let _ = writeln!(early, "error: EL2 map: {e}");
            EXIT_BOOT
        })?;

        // 8. The heap, in RAM the map made cacheable.
        let heap = frames.alloc(HEAP_SIZE, 4096).map_err(|e| {
            let _ = writeln!(early, "error: no memory for the heap: {e}");
            EXIT_BOOT
        })?;
        // SAFETY: the frame allocator handed out this range for good, and the
        // EL2 map covers it read-write.
        unsafe { HEAP.init(heap.start().raw() as usize, heap.size() as usize) };
        *HYP_MAP.lock() = Some(hyp_map);

        // 9. The console and the log.
        match early.0.take() {
            Some(uart) => console::set_uart(uart),
            // No UART with a driver: the console goes through semihosting
            // (dropped when no debugger or emulator listens).
            None => console::set_writer(alloc::boxed::Box::leak(alloc::boxed::Box::new(
                EarlyConsole(None),
            ))),
        }
        fatal::set_console_ready();
        let _ = console::init_logger(options.log_level, Some(sysreg::counter));
        log::info!("boot: entry at counter {entry_counter}");

        // 10. The boot report.
        log::info!(
            "hypervisor {} at EL{}, loaded at {load:#x} ({} KiB)",
            env!("CARGO_PKG_VERSION"),
            sysreg::current_el(),
            image.image.size() >> 10
        );
        log::info!("cpu: {cpu}");
        for line in alloc::format!("{platform}").lines() {
            log::info!("platform: {line}");
        }
        log::info!(
            "memory: {} MiB usable in {} ranges, heap {} MiB at {}",
            frames.free_bytes() >> 20,
            usable.as_slice().len(),
            heap.size() >> 20,
            heap.start()
        );
        if let Some(map) = HYP_MAP.lock().as_ref() {
            log::info!(
                "EL2 map: {} table pages; text RX, rodata RO, data/stacks RW XN, guard pages unmapped",
                map.table_pages()
            );
        }
        for w in options.warnings() {
            log::warn!("command line: {w}");
        }

        if let Some(test) = options.selftest {
            selftest::run(test);
        }
        if options.check_attributes {
            return hypervisor::attrcheck::run(&cpu, &mut frames).map_err(|failed| {
                log::error!("ATTR-CHECK: {failed} combinations failed");
                fatal::EXIT_CHECK_FAILED
            });
        }

        // 11. PCIe: enumerate, assign BARs, choose what the guest gets.
        let features = hypervisor::mm::attrs::Features {
            fwb: cpu.fwb,
            dic: cpu.dic,
            idc: cpu.idc,
        };
        // SAFETY: the EL2 map covers every ECAM window as Device memory and
        // nothing else touches PCI config space during boot.
        let passthrough = unsafe { pci::passthrough::setup(&platform, &options, features) };
        for line in passthrough.report.lines() {
            if line.contains("WARNING") {
                log::warn!("pci: {line}");
            } else {
                log::info!("pci: {line}");
            }
        }

        // 12. The VM: its configuration derived once, then built and run.
        let config = match VmConfig::derive(&platform, &options, &cpu, smp::current_mpidr()) {
            Ok(Some(config)) => config,
            Ok(None) => {
                log::info!("vm: no guest image (the loader gave no initrd): nothing to run");
                return Ok(());
            }
            Err(e) => {
                log::error!("vm: {e}");
                return Err(EXIT_BOOT);
            }
        };
        let vm = Vm::build(&config, passthrough, &mut frames, &cpu, &image).map_err(|e| {
            log::error!("vm: {e}");
            EXIT_BOOT
        })?;
        // 13. Run it: this CPU is vCPU 0; the others start when the guest
        //     turns their vCPUs on. Whichever CPU ends the VM stops the machine.
        vm.run()
    }

    /// Table pages for the hypervisor's own map: RAM and devices take a few
    /// dozen at most; the rest is headroom for later device mappings.
    const HYP_MAP_POOL_PAGES: u64 = 128;

    /// Builds the identity map of everything the hypervisor uses, then turns
    /// on the MMU and caches.
    fn enable_mmu(
        cpu: &CpuFeatures,
        platform: &Platform<'_>,
        image: &layout::ImageLayout,
        usable: &RegionList,
        frames: &mut FrameAllocator,
    ) -> Result<El2PageTable<IdentityMap>, MmuSetupError> {
        let pool_range = frames
            .alloc(HYP_MAP_POOL_PAGES * PAGE_SIZE, PAGE_SIZE)
            .map_err(MmuSetupError::Frames)?;
        let pool = TablePool::new(pool_range, IdentityMap).map_err(MmuSetupError::Pool)?;
        let config =
            hyp_map::table_config(u32::from(cpu.pa_bits)).map_err(MmuSetupError::Config)?;
        let mut table = El2PageTable::new(config, pool).map_err(MmuSetupError::Map)?;

        let region = |name, range, usage| Region { name, range, usage };
        let fixed = [
            region("text", image.text, Use::Code),
            region("rodata", image.rodata, Use::ReadOnly),
            region("data", image.data, Use::ReadWrite),
            region("main stack", image.main_stack, Use::ReadWrite),
            region("exception stack", image.exception_stack, Use::ReadWrite),
        ];
        // Each secondary CPU's stacks; the guard page below each stays unmapped.
        let cpu_stacks = (1..=layout::SECONDARY_CPUS)
            .filter_map(|i| image.cpu_stacks(i))
            .flat_map(|s| {
                [
                    region("CPU main stack", s.main, Use::ReadWrite),
                    region("CPU exception stack", s.exception, Use::ReadWrite),
                ]
            });
        let blobs = [
            platform
                .dtb
                .map(|r| region("device tree", r, Use::ReadOnly)),
            platform
                .chosen
                .initrd
                .map(|r| region("initrd", r, Use::ReadOnly)),
        ];
        let ram = usable.iter().map(|r| region("RAM", *r, Use::ReadWrite));
        let uart = platform.uart.map(|u| region("UART", u.regs, Use::Device));
        let gic = core::iter::once(platform.gic.distributor)
            .chain(platform.gic.redistributors.iter().copied())
            .chain(platform.gic.cpu_interface)
            .map(|r| region("GIC", r, Use::Device));
        let ecam = platform
            .pcie
            .iter()
            .map(|b| region("PCIe ECAM", b.ecam, Use::Device));
        let all = fixed
            .into_iter()
            .chain(cpu_stacks)
            .chain(blobs.into_iter().flatten())
            .chain(ram)
            .chain(uart)
            .chain(gic)
            .chain(ecam);
        let mut tlb = El2TlbAdapter(&mut El2Tlb);
        hyp_map::build(&mut table, all, &mut tlb).map_err(MmuSetupError::Region)?;

        // Memory written with the caches off (the image's relocated data and
        // bss, the stacks, the tables) must not be hidden by stale lines.
        let line = cpu.dcache_line();
        for r in [image.image, pool_range] {
            // SAFETY: everything here was written with caches off, so memory
            // holds the only copy that matters; stale clean lines are dropped.
            unsafe { dcache_range(CacheOp::Invalidate, r.start().raw(), r.size(), line) };
        }
        let tcr = hyp_map::tcr_el2(cpu.ps_field());
        // SAFETY: the table identity-maps the image (code, data, both stacks)
        // and all RAM in use, so execution continues at the same addresses.
        unsafe {
            sysreg::enable_el2_mmu(
                hyp_map::MAIR_EL2,
                tcr,
                table.root().raw(),
                hyp_map::sctlr_el2(),
            )
        };
        // The secondary CPUs load the same map.
        smp::record_el2_mmu(
            hyp_map::MAIR_EL2,
            tcr,
            table.root().raw(),
            hyp_map::sctlr_el2(),
        );
        Ok(table)
    }

    /// Why the EL2 map could not be set up. Formats without the heap, which
    /// does not exist yet.
    enum MmuSetupError {
        Frames(hypervisor::mm::frame::FrameError),
        Pool(hypervisor::mm::pgtable::pool::PoolError),
        Config(hypervisor::mm::pgtable::ConfigError),
        Map(hypervisor::mm::pgtable::MapError),
        Region(hyp_map::HypMapError),
    }

    impl core::fmt::Display for MmuSetupError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                Self::Frames(e) => write!(f, "no memory for its tables: {e}"),
                Self::Pool(e) => write!(f, "{e}"),
                Self::Config(e) => write!(f, "{e:?}"),
                Self::Map(e) => write!(f, "{e}"),
                Self::Region(e) => write!(f, "{e}"),
            }
        }
    }

    /// Entered from the boot assembly at EL1 or EL3: say how to start at EL2.
    #[no_mangle]
    extern "C" fn rust_wrong_el(dtb: u64, load: u64, el: u64) -> ! {
        fatal::set_load_address(load);
        let mut early = EarlyConsole(None);
        if let Ok(blob) = device_tree(dtb) {
            if let Ok(p) = Platform::from_fdt(blob) {
                if let Some(uart) = p.uart.filter(|u| u.kind == UartKind::Pl011) {
                    // SAFETY: the DT describes a PL011 here; nothing else runs.
                    early.0 = Some(unsafe { Pl011::new(uart.regs.start().raw() as *mut u8) });
                }
            }
        }
        let _ = writeln!(
            early,
            "error: the hypervisor was started at EL{el}, but it must be started at EL2.\n\
             On QEMU, use -M virt,virtualization=on; with U-Boot or other firmware,\n\
             boot it from EL2 (not from EL1 under another hypervisor, nor from EL3)."
        );
        firmware::stop(Err(EXIT_BOOT))
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        fatal::report_panic(info)
    }
}
