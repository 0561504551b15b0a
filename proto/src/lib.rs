//! The contract between the roles of the load balancer.
//!
//! - [`siphash`]: the packet and table hash (docs/spec.md sections 1 and 4).
//! - [`wire`]: GUE and GLB private data, typed views with parse and emit
//!   (docs/spec.md section 2).
//! - [`maps`]: the layouts of the BPF maps shared by the eBPF programs and
//!   the loader.
//! - [`mtu`]: the path MTU toward the backends: the encapsulation's
//!   overhead, the largest packet that fits, what the ICMP errors quote.
//! - [`table`] (feature `std`): the rendezvous forwarding table builder
//!   (docs/spec.md section 4).
//! - [`api`] (feature `std`): the director HTTP API's requests, answers
//!   and paths, as types shared by the daemon and its clients.
//! - [`config`] (feature `std`): GLB's forwarding-table JSON plus this
//!   project's `director` section.
//! - [`de`] (feature `std`): reading JSON into derived types with refusals
//!   that name the field and the value (the config, the API's bodies).
//!
//! The core is `no_std` so that the eBPF crate uses the very same code.
#![cfg_attr(not(feature = "std"), no_std)]

pub mod flow;
pub mod hex;
pub mod maps;
pub mod mtu;
pub mod siphash;
pub mod wire;

#[cfg(feature = "std")]
pub mod api;
#[cfg(feature = "std")]
pub mod config;
#[cfg(feature = "std")]
pub mod de;
#[cfg(feature = "std")]
pub mod director;
#[cfg(feature = "std")]
pub mod table;

/// UDP destination port of GUE packets from the director (GLB's choice).
pub const GUE_PORT: u16 = 19523;
/// Rows in every forwarding table.
pub const TABLE_ROWS: usize = 65_536;
