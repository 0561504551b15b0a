//! Lets LLVM load and store unaligned words (packet fields, map values)
//! with one instruction instead of byte by byte. x86-64 and arm64 JITs
//! handle unaligned packet and map-value access; the verifier only insists
//! on aligned stack access, which LLVM keeps aligned regardless. A link
//! argument, because bpf-linker does the code generation and aya-build
//! owns `RUSTFLAGS`.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("bpf") {
        println!("cargo::rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
    }
}
