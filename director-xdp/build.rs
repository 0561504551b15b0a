//! Builds the eBPF crate (`ebpf/`) and leaves its object in `OUT_DIR`, where
//! `src/lib.rs` embeds it.

use std::{env, path::PathBuf};

use anyhow::{Context as _, anyhow};

/// The toolchain of the eBPF crate; `scripts/deps.sh` installs it with
/// `rust-src`, which `-Z build-std=core` needs.
const EBPF_TOOLCHAIN: &str = "nightly-2026-06-20";
const EBPF_PACKAGE: &str = "director-xdp-ebpf";

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR").ok_or_else(|| anyhow!("CARGO_MANIFEST_DIR not set"))?,
    );
    let ebpf_dir = manifest_dir.join("ebpf");
    let proto_dir = manifest_dir
        .join("../proto")
        .canonicalize()
        .context("locating the proto crate next to director-xdp")?;

    // aya-build watches the eBPF crate's directory itself; the eBPF object
    // also compiles `proto`, which cargo does not know this build script
    // depends on.
    for path in [proto_dir.join("src"), proto_dir.join("Cargo.toml")] {
        println!("cargo::rerun-if-changed={}", path.display());
    }

    // aya-build runs `cargo build --package ...` in the current directory,
    // and the eBPF crate is not a member of the outer workspace (it needs its
    // own toolchain and target), so cargo must start inside it.
    env::set_current_dir(&ebpf_dir)
        .with_context(|| format!("entering the eBPF crate at {}", ebpf_dir.display()))?;
    // aya-build forwards every line the inner cargo prints as a build-script
    // warning; keep only the compiler's diagnostics (errors still print).
    // SAFETY: the build script has not started any thread yet.
    unsafe { env::set_var("CARGO_TERM_QUIET", "true") };
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("eBPF crate path {} is not UTF-8", ebpf_dir.display()))?;
    // This crate's `bench` feature is the eBPF crate's: the benchmark's
    // reference programs are built into the objects only then.
    let features: &[&str] = if env::var_os("CARGO_FEATURE_BENCH").is_some() {
        &["bench"]
    } else {
        &[]
    };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: EBPF_PACKAGE,
            root_dir,
            features,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(EBPF_TOOLCHAIN),
    )
    .with_context(|| format!("building {EBPF_PACKAGE} with {EBPF_TOOLCHAIN}"))
}
