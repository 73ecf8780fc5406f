//! The hypervisor binary.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the hypervisor runs at EL2: build it with scripts/run or scripts/image");
    std::process::exit(2);
}
