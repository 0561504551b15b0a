//! `director-ctl`'s library: what the operator's command line shares with
//! the director's own binary.
//!
//! - [`files`]: writing output files safely (regular files only, through a
//!   temporary file with an unpredictable name, a link written through,
//!   never an input), used by `director-ctl table build`, `director-xdp
//!   replay` and the daemon's config write.

pub mod files;
