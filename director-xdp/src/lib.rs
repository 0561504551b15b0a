//! The data plane's loader: the embedded eBPF object, the code that puts its
//! programs into the kernel, and [`Dataplane`], which owns the loaded
//! director and writes its maps from a [`proto::config::Config`].
//!
//! Loading needs `CAP_BPF`, `CAP_PERFMON` and `CAP_NET_ADMIN` (or root):
//! without `CAP_PERFMON` the verifier refuses the programs' arithmetic on
//! packet pointers ("pointer -= pointer prohibited"). Nothing here attaches
//! a program to an interface; callers decide where, and tests run programs
//! with `BPF_PROG_TEST_RUN` only.

use aya::{
    Ebpf, EbpfError,
    programs::{ProgramError, Xdp},
};

pub mod dataplane;
pub mod neigh;
pub mod pcap;
pub mod pcapng;
pub mod redirect;

pub use dataplane::{
    ApplyReport, BackendStats, BindId, BindStats, Dataplane, DataplaneError, PathMtu, Stats,
    bind_ids,
};

/// Name of the director's XDP program in the object.
pub const DIRECTOR_PROGRAM: &str = "director";

/// Name of the backend-side redirect module's XDP program in its object.
pub const REDIRECT_PROGRAM: &str = "redirect";

/// Passes every frame: for the peer end of a veth, which must run XDP for
/// frames sent with `XDP_TX` to reach it (labs, and backends on veths).
pub const PASS_PROGRAM: &str = "pass";

/// Benchmark reference program: returns `XDP_TX` and does nothing else (in
/// both objects). Like every `BENCH_*` program, it is in the objects only
/// when this crate is built with its `bench` feature ([`BENCH_PROGRAMS`]).
pub const BENCH_FLOOR_PROGRAM: &str = "bench_floor";

/// Benchmark reference program: grows the head by 40 bytes, writes a
/// constant 54-byte outer header at the new head and returns `XDP_TX`.
pub const BENCH_MIN_ENCAP_PROGRAM: &str = "bench_min_encap";

/// Benchmark reference program: the director's default hash of an IPv6
/// address (SipHash-2-4 of 16 bytes), alone, on the frame's first 32 bytes;
/// returns `XDP_TX` (`XDP_DROP` for a shorter frame or a hash of zero).
pub const BENCH_SIPHASH_PROGRAM: &str = "bench_siphash";

/// The benchmark's reference programs, built into the objects only with the
/// `bench` feature (`make bench` turns it on; the objects users run do not
/// carry them).
pub const BENCH_PROGRAMS: [&str; 3] = [
    BENCH_FLOOR_PROGRAM,
    BENCH_MIN_ENCAP_PROGRAM,
    BENCH_SIPHASH_PROGRAM,
];

/// Every XDP program of the director's object.
#[cfg(not(feature = "bench"))]
pub const PROGRAMS: &[&str] = &[DIRECTOR_PROGRAM, PASS_PROGRAM];

/// Every XDP program of the director's object.
#[cfg(feature = "bench")]
pub const PROGRAMS: &[&str] = &[
    DIRECTOR_PROGRAM,
    PASS_PROGRAM,
    BENCH_FLOOR_PROGRAM,
    BENCH_MIN_ENCAP_PROGRAM,
    BENCH_SIPHASH_PROGRAM,
];

/// The director's ELF object, built from `ebpf/` by `build.rs`; its binary
/// target is named `director-xdp`, hence the file name.
static DIRECTOR_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/director-xdp"));

/// The redirect module's ELF object (binary target `redirect` of `ebpf/`),
/// built apart from the director's for its code generation flags.
static REDIRECT_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/redirect"));

/// The embedded eBPF object (ELF, with BTF) holding the director's programs.
pub fn director_object() -> &'static [u8] {
    DIRECTOR_OBJECT
}

/// The embedded eBPF object holding the redirect module (and, with the
/// `bench` feature, a `bench_floor` to measure it against).
pub fn redirect_object() -> &'static [u8] {
    REDIRECT_OBJECT
}

/// Why a program of the object could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The object did not parse, or its maps could not be created.
    #[error("loading the eBPF object")]
    Object(#[source] EbpfError),
    /// The object lacks a program the loader expects.
    #[error("the eBPF object has no program named {0:?}")]
    MissingProgram(String),
    /// The program is not of the expected type, or the kernel refused it
    /// (the source carries the verifier log: print it with `{:?}`).
    #[error("loading XDP program {name:?}")]
    Program {
        /// The program's name in the object.
        name: String,
        /// What aya or the kernel reported.
        #[source]
        source: ProgramError,
    },
}

/// Logs to stderr (standard output is for reports: replay's, the agent's
/// counters); `RUST_LOG` overrides the default `info`. For the binaries.
pub fn init_logging() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The index of interface `name` in this thread's network namespace.
pub fn interface_index(name: &str) -> std::io::Result<u32> {
    let c_name = std::ffi::CString::new(name).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{name:?} holds a NUL byte"),
        )
    })?;
    // SAFETY: `c_name` is a valid NUL-terminated string for the call.
    match unsafe { libc::if_nametoindex(c_name.as_ptr()) } {
        0 => Err(std::io::Error::last_os_error()),
        index => Ok(index),
    }
}

/// Loads the director object and its `director` program into the kernel,
/// attached to nothing.
pub fn load_director() -> Result<Ebpf, LoadError> {
    let mut ebpf = Ebpf::load(director_object()).map_err(LoadError::Object)?;
    load_xdp(&mut ebpf, DIRECTOR_PROGRAM)?;
    Ok(ebpf)
}

/// Loads the XDP program `name` of `ebpf` into the kernel (a no-op if it
/// is loaded already) and returns it, attached to nothing.
pub fn load_xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, LoadError> {
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| LoadError::MissingProgram(name.to_string()))?;
    let xdp: &mut Xdp = program.try_into().map_err(|source| LoadError::Program {
        name: name.to_string(),
        source,
    })?;
    if xdp.fd().is_err() {
        xdp.load().map_err(|source| LoadError::Program {
            name: name.to_string(),
            source,
        })?;
    }
    Ok(xdp)
}

/// The XDP program `name` in an object returned by [`load_director`].
pub fn xdp_program<'a>(ebpf: &'a Ebpf, name: &str) -> Result<&'a Xdp, LoadError> {
    ebpf.program(name)
        .ok_or_else(|| LoadError::MissingProgram(name.to_string()))?
        .try_into()
        .map_err(|source| LoadError::Program {
            name: name.to_string(),
            source,
        })
}

/// The director's XDP program in an object returned by [`load_director`].
pub fn director_program(ebpf: &Ebpf) -> Result<&Xdp, LoadError> {
    xdp_program(ebpf, DIRECTOR_PROGRAM)
}
