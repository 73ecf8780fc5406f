//! The hypervisor binary.
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
    use core::fmt::Write;
    use hypervisor::arch::aarch64::{firmware, trap::TrapFrame};
    use hypervisor::mm::heap::LockedHeap;

    #[global_allocator]
    static HEAP: LockedHeap = LockedHeap::empty();

    struct Raw;
    impl Write for Raw {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for b in s.bytes() {
                // SAFETY: temporary smoke test.
                unsafe { core::ptr::write_volatile(0x0900_0000 as *mut u32, u32::from(b)) };
            }
            Ok(())
        }
    }

    #[no_mangle]
    extern "C" fn rust_entry(dtb: usize, load: usize) -> ! {
        let _ = writeln!(Raw, "hello from EL2 dtb={dtb:#x} loaded at {load:#x}");
        firmware::set_psci_conduit(firmware::PsciConduit::Smc);
        firmware::stop(Ok(()))
    }

    #[no_mangle]
    extern "C" fn rust_wrong_el(dtb: usize, load: usize, el: u64) -> ! {
        let _ = writeln!(Raw, "wrong EL{el} dtb={dtb:#x} loaded at {load:#x}");
        firmware::stop(Err(1))
    }

    #[no_mangle]
    extern "C" fn el2_trap(frame: &mut TrapFrame, kind: u64) {
        let _ = writeln!(
            Raw,
            "trap kind={kind} esr={:#x} elr={:#x}",
            frame.esr, frame.elr
        );
        firmware::stop(Err(3))
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        let _ = writeln!(Raw, "panicked at {info}");
        firmware::stop(Err(2))
    }
}
