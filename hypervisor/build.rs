//! Links the EL2 binary with its own linker script. The flags that make it a
//! self-relocating PIE are the target's, in `.cargo/config.toml`.
//! Host builds (unit tests, clippy) get no link arguments.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&manifest).join("../linker/hypervisor.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if target.starts_with("aarch64-") && target.contains("-none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    }
}
