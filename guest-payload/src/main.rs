//! The EL1 test guest. It reads its device tree, brings up the console, the
//! stage-1 MMU and the fault probes, finds out whether it runs under the
//! hypervisor, and runs the test its command line names (`test=...`).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the test guest runs at EL1: build it with scripts/run");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod el1 {
    use guest_payload::arch::probe::{
        exec_probe, read_u32_unaligned_probe, read_u64_probe, stp_probe, udf_probe, write_u64_probe,
    };
    use guest_payload::arch::{console, counter, current_el, firmware, mmu, mpidr};
    use guest_payload::cmdline::{self, TestMode};
    use guest_payload::esr::Fault;
    use guest_payload::mmu::{MemType, PAGE_SIZE};
    use guest_payload::platform::{Platform, Region};
    use guest_payload::println;
    use guest_payload::smccc::{
        func, mpidr_affinity, CallKind, CheckLine, Hypervisor, Outcome, Par, OWN_MPIDR, PSCI_CHECKS,
    };

    /// Where the guest's run ended up.
    type Verdict = Result<(), ()>;

    /// Addresses that no QEMU virt-like machine assigns (between virtio-mmio
    /// and the platform bus, and far above RAM); the first one the device
    /// tree leaves free is used.
    const UNASSIGNED_CANDIDATES: [u64; 3] = [0x0b00_0000, 0x0b10_0000, 0x7_0000_0000];

    /// Virtual addresses for aliases the `probes` test creates; nothing else
    /// maps there (the identity map stays below them on QEMU virt).
    const ALIAS_VA: u64 = 0xf0_0000_0000;
    const UNMAPPED_VA: u64 = 0xf1_0000_0000;

    struct Context<'a> {
        platform: Platform<'a>,
        dt: u64,
        load: u64,
        hypervisor: Hypervisor,
    }

    #[no_mangle]
    extern "C" fn rust_entry(dt: u64, load: u64, entry_el: u64) -> ! {
        // First: when the guest's own code began, for the boot-time benchmark.
        let (entry_counter, _) = counter();
        // SAFETY: the loader passes the device tree's address in x0; the
        // header check in `from_ptr` rejects anything else.
        let fdt = match unsafe { fdt::Fdt::from_ptr(dt as *const u8) } {
            Ok(fdt) => fdt,
            Err(_) => firmware::fail(),
        };
        let Ok(platform) = Platform::from_fdt(&fdt) else {
            firmware::fail()
        };
        if let Some(uart) = platform.uart {
            console::init(uart.base);
        }
        firmware::set_conduit(platform.psci);
        println!(
            "GUEST boot: entered at EL{entry_el}, running at EL{}, image at {load:#x}, DT at {dt:#x}, counter={entry_counter}",
            current_el()
        );
        let dt_region = Region::new(dt, fdt.total_size() as u64);
        if let Err(e) = mmu::init(&platform, dt_region) {
            println!("GUEST boot: stage-1 map failed: {e}");
            firmware::fail();
        }
        let hypervisor = firmware::detect_hypervisor();
        let ctx = Context {
            platform,
            dt,
            load,
            hypervisor,
        };
        let verdict = match cmdline::parse(ctx.platform.bootargs) {
            Ok(TestMode::Hello) => hello(&ctx),
            Ok(TestMode::Abort) => abort(&ctx),
            Ok(TestMode::Psci) => psci(&ctx),
            Ok(TestMode::Probes) => probes(&ctx),
            Ok(TestMode::Wc) => wc(&ctx),
            Ok(TestMode::Chaos) => verdict(guest_payload::arch::chaos::run(
                &ctx.platform,
                ctx.hypervisor,
                cmdline::chaos_options(ctx.platform.bootargs),
            )),
            Ok(TestMode::PciHostile) => verdict(guest_payload::arch::hostile::run(
                &ctx.platform,
                ctx.hypervisor,
                cmdline::dma_denied(ctx.platform.bootargs),
            )),
            Ok(TestMode::Bench) => bench(&ctx),
            Ok(TestMode::RamZero) => ramzero(&ctx),
            Ok(TestMode::ExitHostile) => exit_hostile(&ctx),
            Ok(TestMode::Image) => image(&ctx),
            Err(e) => {
                println!("GUEST bad command line \"{}\": {e}", ctx.platform.bootargs);
                Err(())
            }
        };
        match verdict {
            Ok(()) => {
                println!("GUEST result: PASS");
                firmware::pass()
            }
            Err(()) => {
                println!("GUEST result: FAIL");
                firmware::fail()
            }
        }
    }

    fn verdict(ok: bool) -> Verdict {
        if ok {
            Ok(())
        } else {
            Err(())
        }
    }

    /// Reads words spread over every 2 MiB block of RAM except the first
    /// (the image, its stacks and tables) and the last (the device tree):
    /// nothing there was written by anyone the guest trusts, so everything
    /// must read zero. Under the hypervisor the first read of a block is
    /// also its first touch; the time per block is reported as ticks.
    fn ramzero(ctx: &Context<'_>) -> Verdict {
        const BLOCK: u64 = 2 << 20;
        let Some(ram) = ctx.platform.ram.as_slice().first().copied() else {
            println!("GUEST ramzero: no RAM in the device tree");
            return Err(());
        };
        let first = ram.base.div_ceil(BLOCK) * BLOCK + BLOCK;
        let end = (ram.base + ram.size) / BLOCK * BLOCK - BLOCK;
        let (mut blocks, mut nonzero, mut words) = (0u64, 0u64, 0u64);
        let (t0, freq) = counter();
        let mut block = first;
        while block < end {
            for offset in [0, 0x1000, BLOCK / 2, BLOCK - 8] {
                // SAFETY: inside guest RAM, which the stage-1 map covers as
                // Normal memory; nothing else of the guest lives there.
                let v = unsafe { core::ptr::read_volatile((block + offset) as *const u64) };
                words += 1;
                if v != 0 {
                    nonzero += 1;
                    if nonzero <= 4 {
                        println!("GUEST ramzero: {:#x} holds {v:#x}", block + offset);
                    }
                }
            }
            blocks += 1;
            block += BLOCK;
        }
        let (t1, _) = counter();
        let per_block = (t1 - t0) / blocks.max(1);
        println!(
            "GUEST ramzero blocks={blocks} words={words} nonzero={nonzero} ticks_per_block={per_block} freq={freq}"
        );
        verdict(blocks > 0 && nonzero == 0)
    }

    fn hello(ctx: &Context<'_>) -> Verdict {
        println!(
            "GUEST hello: EL{}, DT at {:#x}, hypervisor={}",
            current_el(),
            ctx.dt,
            ctx.hypervisor
        );
        Ok(())
    }

    fn abort(ctx: &Context<'_>) -> Verdict {
        let Some(addr) = ctx.platform.pick_unassigned(&UNASSIGNED_CANDIDATES) else {
            println!("GUEST abort: no unassigned address among the candidates");
            return Err(());
        };
        // Device memory, so nothing but the probe's own load touches it.
        if let Err(e) = mmu::map_region(addr, addr, PAGE_SIZE, MemType::DeviceNGnRE) {
            println!("GUEST abort: cannot map {addr:#x}: {e}");
            return Err(());
        }
        let load_aborted = match read_u64_probe(addr) {
            Err(f) if f.is_data_abort() => {
                println!(
                    "GUEST abort: unmapped load -> data abort ESR_EL1={:#x} FAR={:#x}",
                    f.esr, f.far
                );
                true
            }
            Err(f) => {
                println!("GUEST abort: unmapped load -> unexpected {f}");
                false
            }
            Ok(v) => {
                println!("GUEST abort: unmapped load at {addr:#x} -> read {v:#x}, no abort");
                false
            }
        };
        let Some(uart) = ctx.platform.uart else {
            println!("GUEST abort: no UART to aim the STP at");
            return Err(());
        };
        // UARTDR is at +0; +0x8..+0x17 are reserved PL011 registers, so the
        // store is harmless where it does reach the device.
        let stp_aborted = match stp_probe(uart.base + 0x8, 0, 0) {
            Err(f) if f.is_data_abort() => {
                println!(
                    "GUEST abort: stp to emulated MMIO -> data abort ESR_EL1={:#x} FAR={:#x}",
                    f.esr, f.far
                );
                true
            }
            Err(f) => {
                println!("GUEST abort: stp to emulated MMIO -> unexpected {f}");
                false
            }
            Ok(()) => {
                println!("GUEST abort: stp to emulated MMIO -> not-trapped");
                false
            }
        };
        let alive = read_u64_probe(ctx.load).is_ok();
        println!(
            "GUEST abort: alive after both: {}",
            if alive { "yes" } else { "no" }
        );
        if ctx.hypervisor.is_present() {
            if load_aborted && stp_aborted && alive {
                Ok(())
            } else {
                Err(())
            }
        } else {
            println!("GUEST abort: no hypervisor: the STP reaches the real UART, only the load must abort");
            if load_aborted && alive {
                Ok(())
            } else {
                Err(())
            }
        }
    }

    fn psci(ctx: &Context<'_>) -> Verdict {
        let own = mpidr_affinity(mpidr());
        let mut all_ok = true;
        for check in PSCI_CHECKS {
            let arg1 = if check.arg1 == OWN_MPIDR {
                own
            } else {
                check.arg1
            };
            // CPU_ON needs a plausible entry point: the image's own start.
            let arg2 = if check.function == func::CPU_ON {
                ctx.load
            } else {
                check.arg2
            };
            let answer = match check.kind {
                CallKind::Standard => firmware::psci(check.function, arg1, arg2, 0),
                CallKind::HvcImmediate1 => {
                    firmware::hvc_immediate_1(check.function).map(guest_payload::smccc::status)
                }
            };
            let outcome = match answer {
                Ok(value) => Outcome::Value(value),
                Err(firmware::CallError::Trapped(f)) => Outcome::Trapped(f.esr),
                Err(firmware::CallError::NoConduit) => {
                    println!("GUEST psci: the device tree names no PSCI conduit");
                    return Err(());
                }
            };
            let line = CheckLine { check, outcome };
            all_ok &= line.ok();
            println!("{line}");
        }
        if !ctx.hypervisor.is_present() {
            println!("GUEST psci: no hypervisor: these are the platform's own answers; the verdict applies only under the hypervisor");
            return Ok(());
        }
        if all_ok {
            Ok(())
        } else {
            Err(())
        }
    }

    #[repr(C, align(4096))]
    struct Page([u64; 512]);
    static mut SCRATCH: Page = Page([0; 512]);

    extern "C" fn returns_at_once() {}

    fn report(ok: &mut bool, name: &str, pass: bool, detail: core::fmt::Arguments<'_>) {
        *ok &= pass;
        println!(
            "GUEST probes {name} -> {detail} {}",
            if pass { "ok" } else { "FAIL" }
        );
    }

    fn describe<T: core::fmt::LowerHex>(result: &Result<T, Fault>) -> impl core::fmt::Display + '_ {
        struct D<'a, T>(&'a Result<T, Fault>);
        impl<T: core::fmt::LowerHex> core::fmt::Display for D<'_, T> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.0 {
                    Ok(v) => write!(f, "value {v:#x}"),
                    Err(fault) => write!(f, "{fault}"),
                }
            }
        }
        D(result)
    }

    fn probes(ctx: &Context<'_>) -> Verdict {
        let mut ok = true;
        let scratch = core::ptr::addr_of_mut!(SCRATCH) as u64;

        let w = write_u64_probe(scratch, 0x1122_3344_5566_7788).map(|()| 0u64);
        report(
            &mut ok,
            "str to RAM",
            w.is_ok(),
            format_args!("{}", describe(&w)),
        );
        let r = read_u64_probe(scratch);
        report(
            &mut ok,
            "ldr from RAM",
            r == Ok(0x1122_3344_5566_7788),
            format_args!("{}", describe(&r)),
        );
        let r = read_u32_unaligned_probe(scratch);
        report(
            &mut ok,
            "unaligned ldr from Normal-WB",
            r == Ok(0x4455_6677),
            format_args!("{}", describe(&r)),
        );
        let s = stp_probe(scratch + 16, 1, 2).map(|()| 0u64);
        let back = (read_u64_probe(scratch + 16), read_u64_probe(scratch + 24));
        report(
            &mut ok,
            "stp to RAM",
            s.is_ok() && back == (Ok(1), Ok(2)),
            format_args!("{}", describe(&s)),
        );
        let u = udf_probe().map(|()| 0u64);
        report(
            &mut ok,
            "udf",
            u.is_err_and(|f| f.is_undefined()),
            format_args!("{}", describe(&u)),
        );
        let guard = mmu::guard_pages()[0].0;
        let g = read_u64_probe(guard);
        report(
            &mut ok,
            "ldr from stack guard page",
            g.is_err_and(|f| f.is_data_abort()),
            format_args!("{}", describe(&g)),
        );

        // A Device alias of the scratch page: unaligned loads fault there.
        if let Err(e) = mmu::map_region(ALIAS_VA, scratch, PAGE_SIZE, MemType::DeviceNGnRE) {
            println!("GUEST probes: cannot map the alias: {e}");
            return Err(());
        }
        for ty in MemType::ALL {
            if let Err(e) = mmu::remap(ALIAS_VA, PAGE_SIZE, ty) {
                println!("GUEST probes: remap to {ty} failed: {e}");
                return Err(());
            }
            let par = Par::decode(mmu::at_s1e1r(ALIAS_VA));
            let attr_ok =
                matches!(par, Par::Ok { attr, pa, .. } if attr == ty.mair_attr() && pa == scratch);
            report(
                &mut ok,
                "AT S1E1R on alias",
                attr_ok,
                format_args!("{ty}: {par}"),
            );
            let r = read_u32_unaligned_probe(ALIAS_VA);
            if ty.is_device() {
                // The architecture raises an alignment fault here; QEMU 10.0
                // does not, so this is reported, not judged.
                let seen = if r.is_err_and(|f| f.is_alignment_fault()) {
                    "alignment fault"
                } else {
                    "no alignment fault"
                };
                println!(
                    "GUEST probes unaligned ldr from alias -> {ty}: {seen} ({})",
                    describe(&r)
                );
            } else {
                report(
                    &mut ok,
                    "unaligned ldr from alias",
                    r == Ok(0x4455_6677),
                    format_args!("{ty}: {}", describe(&r)),
                );
            }
            if ctx.hypervisor.is_present() {
                match firmware::effective_attrs(ALIAS_VA, false) {
                    Ok(par) => println!(
                        "GUEST probes effective attrs of alias ({ty}): {}",
                        Par::decode(par)
                    ),
                    Err(status) => {
                        println!("GUEST probes effective attrs of alias ({ty}): status {status}")
                    }
                }
            }
        }

        if let Some(uart) = ctx.platform.uart {
            // UARTFR + 1: reading the flag register has no side effect.
            let r = read_u32_unaligned_probe(uart.base + 0x18);
            println!("GUEST probes unaligned ldr from the UART: {}", describe(&r));
        }
        let e = exec_probe(returns_at_once as *const () as u64).map(|()| 0u64);
        report(
            &mut ok,
            "blr to code",
            e.is_ok(),
            format_args!("{}", describe(&e)),
        );
        let e = exec_probe(UNMAPPED_VA).map(|()| 0u64);
        report(
            &mut ok,
            "blr to unmapped",
            e.is_err_and(|f| f.is_instruction_abort() && f.far == UNMAPPED_VA),
            format_args!("{}", describe(&e)),
        );
        if let Err(e) = mmu::remap(ALIAS_VA, PAGE_SIZE, MemType::DeviceNGnRE) {
            println!("GUEST probes: remap to Device failed: {e}");
            return Err(());
        }
        let e = exec_probe(ALIAS_VA).map(|()| 0u64);
        report(
            &mut ok,
            "blr to execute-never",
            e.is_err_and(|f| f.is_instruction_abort()),
            format_args!("{}", describe(&e)),
        );

        if ctx.hypervisor.is_present() {
            match firmware::stage2_info(scratch) {
                Ok(info) => println!(
                    "GUEST probes stage-2 info of scratch: memattr={:#x} kind={:#x} flags={:#x}",
                    info.memattr, info.kind, info.flags
                ),
                Err(status) => println!("GUEST probes stage-2 info of scratch: status {status}"),
            }
        } else {
            let par = Par::decode(mmu::at_s1e1w(scratch));
            println!("GUEST probes no hypervisor: AT S1E1W on scratch: {par}");
        }
        if ok {
            Ok(())
        } else {
            Err(())
        }
    }

    fn wc(ctx: &Context<'_>) -> Verdict {
        let bars = cmdline::wc_bars(ctx.platform.bootargs);
        if guest_payload::arch::wc::run(&ctx.platform, ctx.hypervisor, bars) {
            Ok(())
        } else {
            Err(())
        }
    }

    /// Where an arm64 Image must run: `text_offset` from the 2 MiB-aligned
    /// start of RAM; a flat binary (no "ARM\x64" magic at byte 56) at the
    /// start of RAM.
    fn image(ctx: &Context<'_>) -> Verdict {
        let Some(ram) = ctx.platform.ram.as_slice().first().map(|r| r.base) else {
            println!("GUEST image: the device tree has no memory");
            return Err(());
        };
        // SAFETY: the image header is the first 64 bytes of the loaded
        // image, mapped and never written.
        let header = unsafe { core::ptr::read_volatile(ctx.load as *const [u8; 64]) };
        let magic = header[56..60] == *b"ARM\x64";
        let text_offset = u64::from_le_bytes(header[8..16].try_into().unwrap_or([0; 8]));
        let expected = if magic {
            ram.next_multiple_of(0x20_0000) + text_offset
        } else {
            ram
        };
        let placed = ctx.load == expected;
        println!(
            "GUEST image: {} loaded at {:#x}, expected {expected:#x} (RAM at {ram:#x}, text_offset {text_offset:#x}) {}",
            if magic { "arm64 Image" } else { "flat binary" },
            ctx.load,
            if placed { "ok" } else { "FAIL" }
        );
        let text = mmu::text();
        let Some((len, sum)) = cmdline::image_sum(ctx.platform.bootargs) else {
            println!("GUEST image: no image-sum=<bytes>:<sum> on the command line FAIL");
            return Err(());
        };
        if len == 0 || len > text.size {
            println!(
                "GUEST image: image-sum covers {len} bytes, the code has {} FAIL",
                text.size
            );
            return Err(());
        }
        // SAFETY: [load, load + len) lies in the image's code, mapped and
        // read-only in use.
        let bytes = unsafe { core::slice::from_raw_parts(ctx.load as *const u8, len as usize) };
        let seen = cmdline::fnv1a64(bytes.iter().copied());
        let whole = seen == sum;
        println!(
            "GUEST image: FNV-1a of the first {len} bytes {seen:#x}, expected {sum:#x} {}",
            if whole { "ok" } else { "FAIL" }
        );
        verdict(placed && whole)
    }

    fn exit_hostile(ctx: &Context<'_>) -> Verdict {
        let (Some(uart), Some(hole)) = (
            ctx.platform.uart,
            ctx.platform.pick_unassigned(&UNASSIGNED_CANDIDATES),
        ) else {
            println!("GUEST exit-hostile: needs a UART and an unassigned address");
            return Err(());
        };
        verdict(guest_payload::arch::exits::run(
            ctx.hypervisor,
            uart.base,
            hole,
            cmdline::exit_probe(ctx.platform.bootargs),
        ))
    }

    fn bench(ctx: &Context<'_>) -> Verdict {
        if guest_payload::arch::bench::run(&ctx.platform, ctx.hypervisor) {
            Ok(())
        } else {
            Err(())
        }
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        println!("GUEST panic: {info}");
        guest_payload::arch::chaos::report_last();
        firmware::fail()
    }
}
