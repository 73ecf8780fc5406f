//! Links the EL2 binary with its own linker script as a self-relocating PIE.
//! Host builds (unit tests, clippy) get no link arguments.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&manifest).join("../linker/hypervisor.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if target.starts_with("aarch64-") && target.contains("-none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        // `-z notext`: the prebuilt core and alloc are not position-independent,
        // so their read-only tables carry absolute addresses. Those become
        // ordinary R_AARCH64_RELATIVE entries, applied by the boot code while
        // the MMU is off and everything is still writable.
        for arg in [
            "-pie",
            "--no-dynamic-linker",
            "-z",
            "notext",
            "--gc-sections",
            "-z",
            "norelro",
        ] {
            println!("cargo:rustc-link-arg-bins={arg}");
        }
    }
}
