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

/// How a table's packets are wrapped for its backends (docs/spec.md
/// section 2): a table's `encap`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "std",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Encap {
    /// GUE with GLB's private data and the row's alternates as the hop
    /// list: backends run the redirect module (second chance).
    #[default]
    Gue,
    /// Plain IP-in-IP (IP protocol 4 or 41 in the outer header), no hop
    /// list: any backend whose kernel decapsulates it, no second chance.
    Ipip,
}

impl Encap {
    /// Every encapsulation, the default first.
    pub const ALL: [Encap; 2] = [Encap::Gue, Encap::Ipip];

    /// Its name in configs and reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Encap::Gue => "gue",
            Encap::Ipip => "ipip",
        }
    }

    /// The encapsulation called `name`.
    pub fn from_name(name: &str) -> Option<Encap> {
        Encap::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// Its value in [`maps::TableHead::encap`].
    pub const fn map_value(self) -> u8 {
        match self {
            Encap::Gue => maps::ENCAP_GUE,
            Encap::Ipip => maps::ENCAP_IPIP,
        }
    }
}

impl core::fmt::Display for Encap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// UDP destination port of GUE packets from the director (GLB's choice).
pub const GUE_PORT: u16 = 19523;
/// Rows in every forwarding table.
pub const TABLE_ROWS: usize = 65_536;
