//! The data plane's loader: the embedded eBPF object and the code that puts
//! its programs into the kernel.
//!
//! Loading needs `CAP_BPF` and `CAP_NET_ADMIN` (or root). Nothing here
//! attaches a program to an interface; callers decide where, and tests run
//! programs with `BPF_PROG_TEST_RUN` only.

use aya::{
    Ebpf, EbpfError,
    programs::{ProgramError, Xdp},
};

/// Name of the director's XDP program in the object.
pub const DIRECTOR_PROGRAM: &str = "director";

/// Name of the one-entry `Array<u64>` where `director` stores the SipHash of
/// the 4 bytes after the Ethernet header of the last frame long enough.
pub const LAST_HASH_MAP: &str = "LAST_HASH";

/// The SipHash key of that probe; must equal `KEY` in `ebpf/src/main.rs`
/// (the `test_run` test fails if they differ).
pub const PROBE_HASH_KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// The ELF object built from `ebpf/` by `build.rs`; its binary target is
/// named `director-xdp`, hence the file name.
static DIRECTOR_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/director-xdp"));

/// The embedded eBPF object (ELF, with BTF) holding the director's programs.
pub fn director_object() -> &'static [u8] {
    DIRECTOR_OBJECT
}

/// Why the director could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The object did not parse, or its maps could not be created.
    #[error("loading the director object")]
    Object(#[source] EbpfError),
    /// The object lacks a program the loader expects.
    #[error("the director object has no program named {0:?}")]
    MissingProgram(&'static str),
    /// The program is not of the expected type, or the kernel refused it
    /// (the source carries the verifier log).
    #[error("loading XDP program {name:?}")]
    Program {
        /// The program's name in the object.
        name: &'static str,
        /// What aya or the kernel reported.
        #[source]
        source: ProgramError,
    },
}

/// Loads the director object and its XDP program into the kernel, attached
/// to nothing.
pub fn load_director() -> Result<Ebpf, LoadError> {
    let mut ebpf = Ebpf::load(director_object()).map_err(LoadError::Object)?;
    let program = ebpf
        .program_mut(DIRECTOR_PROGRAM)
        .ok_or(LoadError::MissingProgram(DIRECTOR_PROGRAM))?;
    let xdp: &mut Xdp = program.try_into().map_err(|source| LoadError::Program {
        name: DIRECTOR_PROGRAM,
        source,
    })?;
    xdp.load().map_err(|source| LoadError::Program {
        name: DIRECTOR_PROGRAM,
        source,
    })?;
    Ok(ebpf)
}

/// The director's XDP program in an object returned by [`load_director`].
pub fn director_program(ebpf: &Ebpf) -> Result<&Xdp, LoadError> {
    ebpf.program(DIRECTOR_PROGRAM)
        .ok_or(LoadError::MissingProgram(DIRECTOR_PROGRAM))?
        .try_into()
        .map_err(|source| LoadError::Program {
            name: DIRECTOR_PROGRAM,
            source,
        })
}
