//! Code generation flags per object.
//!
//! The director's object is generated with `+allows-misaligned-mem-access`:
//! without it LLVM splits every load and store whose alignment it cannot
//! prove (header fields, addresses, the whole outer header) into single
//! bytes. XDP packet memory and map values may be accessed misaligned on
//! this kernel's architectures (the verifier enforces alignment there only
//! for strict-alignment targets); the stack may not, and the redirect
//! module's object, where LLVM then merges stack stores into misaligned
//! ones, is built without the flag.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("bpf") {
        println!(
            "cargo::rustc-link-arg-bin=director-xdp=--cpu-features=+allows-misaligned-mem-access"
        );
    }
}
