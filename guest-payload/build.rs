//! Links the EL1 test guest with its own linker script as a self-relocating
//! PIE, the same way as the hypervisor, except for `-z notext`: the
//! precompiled `core` for this target is not position independent, and its
//! read-only tables (panic and formatting paths the `fdt` crate reaches) hold
//! absolute addresses. With `-z notext` the linker turns those into
//! R_AARCH64_RELATIVE entries like all others, which the boot code applies
//! while the MMU is off and every page is writable.
//! Host builds (unit tests, clippy) get no link arguments.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&manifest).join("../linker/guest-payload.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if target.starts_with("aarch64-") && target.contains("-none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
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
