//! The config file's shape as serde reads it: every field with its JSON
//! type, nothing checked yet. [`super::Config::from_json`] reads the file
//! into these, then checks them into a [`super::Config`].
//!
//! Every field is optional here, so that a missing one is refused by the
//! check with the table's name and what the field holds; a field given as
//! `null` is refused like any value of the wrong type ([`given`]). Unknown
//! fields are read past: GLB configs carry fields for other tools, and the
//! check reports them as warnings. The names these structs read
//! ([`crate::de::fields_of`]) are the fields this project knows.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::Proto;
use crate::de::{Object, given};
use crate::table::BackendState;

/// The whole file.
#[derive(Debug, Deserialize)]
pub(super) struct Config {
    #[serde(default, deserialize_with = "given")]
    pub tables: Option<Vec<Object<Table>>>,
    #[serde(default, deserialize_with = "given")]
    pub director: Option<Object<Director>>,
}

/// One of `tables`.
#[derive(Debug, Deserialize)]
pub(super) struct Table {
    #[serde(default, deserialize_with = "given")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub hash_key: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub seed: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub hops: Option<u8>,
    #[serde(default, deserialize_with = "given")]
    pub encap: Option<crate::Encap>,
    #[serde(default, deserialize_with = "given")]
    pub binds: Option<Vec<Object<Bind>>>,
    #[serde(default, deserialize_with = "given")]
    pub backends: Option<Vec<Object<Backend>>>,
}

/// One of a table's `binds`.
#[derive(Debug, Deserialize)]
pub(super) struct Bind {
    #[serde(default, deserialize_with = "given")]
    pub ip: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub proto: Option<Proto>,
    #[serde(default, deserialize_with = "given")]
    pub port: Option<u16>,
    #[serde(default, deserialize_with = "given")]
    pub port_start: Option<u16>,
    #[serde(default, deserialize_with = "given")]
    pub port_end: Option<u16>,
}

/// One of a table's `backends`.
#[derive(Debug, Deserialize)]
pub(super) struct Backend {
    #[serde(default, deserialize_with = "given")]
    pub ip: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub state: Option<BackendState>,
    #[serde(default, deserialize_with = "given")]
    pub healthy: Option<bool>,
    #[serde(default, deserialize_with = "given")]
    pub reachable: Option<bool>,
    #[serde(default, deserialize_with = "given")]
    pub healthchecks: Option<Map<String, Value>>,
}

/// The `director` section.
#[derive(Debug, Deserialize)]
pub(super) struct Director {
    #[serde(default, deserialize_with = "given")]
    pub interface: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub source_v4: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub source_v6: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub hash_fields: Option<Vec<String>>,
    #[serde(default, deserialize_with = "given")]
    pub gateway_mac: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub api_listen: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub api_token_file: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub api_max_connections: Option<u32>,
    #[serde(default, deserialize_with = "given")]
    pub api_max_connections_per_address: Option<u32>,
    #[serde(default, deserialize_with = "given")]
    pub api_max_body_bytes: Option<u32>,
    #[serde(default, deserialize_with = "given")]
    pub api_header_timeout_ms: Option<u32>,
    #[serde(default, deserialize_with = "given")]
    pub api_body_timeout_ms: Option<u32>,
    #[serde(default, deserialize_with = "given")]
    pub state_file: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub pin_dir: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub mtu: Option<u32>,
    #[serde(default, deserialize_with = "given")]
    pub bird_socket: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub bird_include: Option<String>,
    #[serde(default, deserialize_with = "given")]
    pub withdraw_delay_ms: Option<u32>,
}

impl Director {
    /// The API limits as given, by config field
    /// ([`super::ApiLimits::fields`]'s names).
    pub fn api_limits(&self) -> [(&'static str, Option<u32>); 5] {
        [
            ("api_max_connections", self.api_max_connections),
            (
                "api_max_connections_per_address",
                self.api_max_connections_per_address,
            ),
            ("api_max_body_bytes", self.api_max_body_bytes),
            ("api_header_timeout_ms", self.api_header_timeout_ms),
            ("api_body_timeout_ms", self.api_body_timeout_ms),
        ]
    }
}
