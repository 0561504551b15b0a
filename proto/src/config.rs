//! The director's configuration: GLB's forwarding-table JSON as is, plus an
//! optional `director` section for this project's settings.
//!
//! A config is checked whole before anything uses it: the first problem is
//! returned with the table, the field and the value, and nothing of a bad
//! config is applied. Fields this project does not know are not errors (GLB
//! configs carry fields for other tools); they come back as warnings.
//! Every field is documented in `docs/config.md`.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::Encap;
use crate::de::fields_of;
use crate::hex;
use crate::maps::{HASH_DST_ADDR, HASH_DST_PORT, HASH_SRC_ADDR, HASH_SRC_PORT};
use crate::table::{Backend, Rendezvous, TableError};

mod raw;
mod read;

/// Default address of the director's HTTP API: loopback only.
pub const DEFAULT_API_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9610);

/// Limits of the director's HTTP API against slow, idle or abusive clients
/// (docs/api.md#limits). Each has a default; the connection caps are
/// further bounded by the daemon's file descriptor limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiLimits {
    /// Connections open at once, all clients together.
    pub max_connections: u32,
    /// Connections open at once from one client address.
    pub max_connections_per_address: u32,
    /// The largest request body, in bytes.
    pub max_body_bytes: u32,
    /// Milliseconds a client has to send a whole request head, from the
    /// connection's start or the end of the previous response (so also
    /// the longest an idle keep-alive connection is kept).
    pub header_timeout_ms: u32,
    /// Milliseconds a client has to send a whole request body once its
    /// head arrived; also the longest a response write may stall.
    pub body_timeout_ms: u32,
}

impl ApiLimits {
    /// The defaults (docs/config.md).
    pub const DEFAULT: ApiLimits = ApiLimits {
        max_connections: 512,
        max_connections_per_address: 32,
        max_body_bytes: 64 * 1024,
        header_timeout_ms: 5_000,
        body_timeout_ms: 10_000,
    };

    /// Each setting's config field (under `director`), its value, and
    /// the range it must be in.
    pub fn fields(&self) -> [(&'static str, u32, std::ops::RangeInclusive<u32>); 5] {
        [
            ("api_max_connections", self.max_connections, 1..=1_000_000),
            (
                "api_max_connections_per_address",
                self.max_connections_per_address,
                1..=1_000_000,
            ),
            ("api_max_body_bytes", self.max_body_bytes, 1024..=16 << 20),
            (
                "api_header_timeout_ms",
                self.header_timeout_ms,
                100..=600_000,
            ),
            ("api_body_timeout_ms", self.body_timeout_ms, 100..=600_000),
        ]
    }

    fn set(&mut self, field: &str, value: u32) {
        match field {
            "api_max_connections" => self.max_connections = value,
            "api_max_connections_per_address" => self.max_connections_per_address = value,
            "api_max_body_bytes" => self.max_body_bytes = value,
            "api_header_timeout_ms" => self.header_timeout_ms = value,
            _ => self.body_timeout_ms = value,
        }
    }
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits::DEFAULT
    }
}

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON at all; the message has the line and column.
    #[error("config is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but a field is missing or wrong.
    #[error("{path}: {message}")]
    Invalid {
        /// Where: the table (by position and name) and the field.
        path: String,
        /// What is wrong, with the value.
        message: String,
    },
}

/// A whole, checked config.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Forwarding tables, in config order.
    pub tables: Vec<Table>,
    /// This project's director settings (defaults when the section is absent).
    pub director: Director,
    /// Fields that were ignored, one line each, for the operator to see.
    pub warnings: Vec<String>,
}

/// One forwarding table: its binds (the VIPs it serves) and its backends.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Unique name; GLB configs without one get their position ("0", "1", ...).
    pub name: String,
    /// SipHash key of the packet hash.
    pub hash_key: [u8; 16],
    /// SipHash key of the table generation.
    pub seed: [u8; 16],
    /// Alternates per row (1 to [`MAX_HOPS`]): how many overlapping changes
    /// of a row its established flows survive. Not used with
    /// [`Encap::Ipip`] ([`Table::chain_hops`]).
    pub hops: u8,
    /// How its packets are wrapped for the backends.
    pub encap: Encap,
    /// What this table serves.
    pub binds: Vec<Bind>,
    /// Its backends, in config order.
    pub backends: Vec<BackendConfig>,
}

impl Table {
    /// The backends as the table builder takes them.
    pub fn builder_backends(&self) -> Vec<Backend> {
        self.backends.iter().map(|b| b.backend).collect()
    }

    /// The alternates each row carries: `hops` for GUE, none for
    /// IP-in-IP (no hop list, so no second chance).
    pub fn chain_hops(&self) -> u8 {
        crate::table::chain_hops(self.encap, self.hops)
    }

    /// The table's rows, built.
    pub fn rendezvous(&self) -> Result<Rendezvous, TableError> {
        Rendezvous::build(self.seed, self.chain_hops(), &self.builder_backends())
    }
}

/// A backend entry of the config.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendConfig {
    /// Address, state and health.
    pub backend: Backend,
    /// GLB's per-backend health-check settings, kept as given for the health
    /// checker.
    pub healthchecks: Option<Value>,
}

/// Transport protocol of a bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Proto {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    /// Name used in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// An address prefix: a single VIP is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// Network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub len: u8,
}

impl Prefix {
    /// Whether `ip` is inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask_v4(a, self.len) == n,
            (IpAddr::V6(n), IpAddr::V6(a)) => mask_v6(a, self.len) == n,
            _ => false,
        }
    }

    /// Whether the two prefixes share an address.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        if self.len <= other.len {
            self.contains(other.addr)
        } else {
            other.contains(self.addr)
        }
    }
}

impl core::fmt::Display for Prefix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let host = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.len == host {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

fn mask_v4(a: Ipv4Addr, len: u8) -> Ipv4Addr {
    let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    Ipv4Addr::from(u32::from(a) & m)
}

fn mask_v6(a: Ipv6Addr, len: u8) -> Ipv6Addr {
    let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    Ipv6Addr::from(u128::from(a) & m)
}

/// A VIP (or VIP prefix), protocol and port range served by a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bind {
    /// The VIP or VIP prefix.
    pub prefix: Prefix,
    /// Transport protocol.
    pub proto: Proto,
    /// First port, inclusive.
    pub port_start: u16,
    /// Last port, inclusive (equal to `port_start` for a single port).
    pub port_end: u16,
}

impl Bind {
    /// Whether a packet to `dst`:`port` over `proto` is for this bind.
    pub fn matches(&self, dst: IpAddr, proto: Proto, port: u16) -> bool {
        self.proto == proto
            && (self.port_start..=self.port_end).contains(&port)
            && self.prefix.contains(dst)
    }

    fn overlaps(&self, o: &Bind) -> bool {
        self.proto == o.proto
            && self.port_start <= o.port_end
            && o.port_start <= self.port_end
            && self.prefix.overlaps(&o.prefix)
    }
}

impl core::fmt::Display for Bind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let addr = match self.prefix.addr {
            IpAddr::V6(_) if self.prefix.len == 128 => format!("[{}]", self.prefix),
            _ => self.prefix.to_string(),
        };
        if self.port_start == self.port_end {
            write!(f, "{addr}:{}/{}", self.port_start, self.proto.as_str())
        } else {
            write!(
                f,
                "{addr}:{}-{}/{}",
                self.port_start,
                self.port_end,
                self.proto.as_str()
            )
        }
    }
}

/// Fields of a packet that enter the flow hash (docs/spec.md section 1); bits as
/// in [`crate::maps`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashFields(pub u8);

impl HashFields {
    /// GLB's default: the client's address only, so all of a client's flows
    /// (and its fragments and ICMP errors) reach the same backend.
    pub const DEFAULT: HashFields = HashFields(HASH_SRC_ADDR);
    /// Names in the fixed hashing order.
    pub const NAMES: [(&'static str, u8); 4] = [
        ("src_addr", HASH_SRC_ADDR),
        ("dst_addr", HASH_DST_ADDR),
        ("src_port", HASH_SRC_PORT),
        ("dst_port", HASH_DST_PORT),
    ];

    /// Whether `bit` is enabled.
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// Enabled names, in hashing order.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(_, b)| self.has(*b))
            .map(|(n, _)| *n)
            .collect()
    }
}

/// This project's settings for a director host.
#[derive(Clone, Debug, PartialEq)]
pub struct Director {
    /// Interface the director attaches to (required to run a director).
    pub interface: Option<String>,
    /// Outer source address of GUE packets to IPv4 backends.
    pub source_v4: Option<Ipv4Addr>,
    /// Outer source address of GUE packets to IPv6 backends.
    pub source_v6: Option<Ipv6Addr>,
    /// Fields of the flow hash.
    pub hash_fields: HashFields,
    /// Next-hop MAC used when a backend's neighbour entry is unknown.
    pub gateway_mac: Option<[u8; 6]>,
    /// Where the HTTP API listens.
    pub api_listen: SocketAddr,
    /// File holding the bearer token that API mutations must present
    /// (absolute path); without one, the API is read-only.
    pub api_token_file: Option<PathBuf>,
    /// File holding the health verdicts (absolute path); `None`: beside
    /// the config, `NAME.health.json`.
    pub state_file: Option<PathBuf>,
    /// The API's connection caps, body size limit and timeouts.
    pub api_limits: ApiLimits,
    /// Directory on bpffs where the director's maps and XDP link are
    /// pinned, so that a restarted daemon adopts them (absolute path);
    /// `None`: [`Director::default_pin_dir`].
    pub pin_dir: Option<PathBuf>,
    /// Path MTU toward the backends (the largest IP packet, outer header
    /// included, the director may send them); `None`: the interface's MTU
    /// when running, no limit in `director-xdp replay`.
    pub mtu: Option<u32>,
    /// BIRD's control socket (absolute path): the daemon announces its
    /// VIPs through BIRD; `None`: no BGP.
    pub bird_socket: Option<PathBuf>,
    /// The BIRD config include the daemon writes with the VIPs it
    /// announces (absolute path); required with `bird_socket`.
    pub bird_include: Option<PathBuf>,
    /// On SIGTERM: how long the director keeps forwarding after its VIPs
    /// are withdrawn, while the routers converge, before it detaches.
    pub withdraw_delay_ms: u32,
}

impl Director {
    /// [`Director::withdraw_delay_ms`] unless set.
    pub const DEFAULT_WITHDRAW_DELAY_MS: u32 = 2000;
    /// Its largest value (10 minutes).
    pub const MAX_WITHDRAW_DELAY_MS: u32 = 600_000;
}

impl Director {
    /// The default pin directory of a director on `interface`:
    /// `/sys/fs/bpf/glb-director/<interface>` for a daemon proven to run in
    /// the host's network namespace (`netns` is `None`), otherwise
    /// `/sys/fs/bpf/glb-director/netns-<inode>/<interface>` (`netns` is its
    /// namespace's inode): network namespaces share bpffs, and interface
    /// names repeat across them.
    pub fn default_pin_dir(interface: &str, netns: Option<u64>) -> PathBuf {
        let base = PathBuf::from("/sys/fs/bpf/glb-director");
        match netns {
            None => base.join(interface),
            Some(inode) => base.join(format!("netns-{inode}")).join(interface),
        }
    }
}

impl Default for Director {
    fn default() -> Self {
        Director {
            interface: None,
            source_v4: None,
            source_v6: None,
            hash_fields: HashFields::DEFAULT,
            gateway_mac: None,
            api_listen: DEFAULT_API_LISTEN,
            api_token_file: None,
            state_file: None,
            api_limits: ApiLimits::DEFAULT,
            pin_dir: None,
            mtu: None,
            bird_socket: None,
            bird_include: None,
            withdraw_delay_ms: Director::DEFAULT_WITHDRAW_DELAY_MS,
        }
    }
}

impl Config {
    /// Parses and checks a config.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        read::config(text)
    }

    /// The bind (as table index, bind index) that a packet to `dst`:`port`
    /// over `proto` belongs to. Binds never overlap, so there is at most one.
    pub fn find_bind(&self, dst: IpAddr, proto: Proto, port: u16) -> Option<(usize, usize)> {
        self.tables.iter().enumerate().find_map(|(ti, t)| {
            t.binds
                .iter()
                .position(|b| b.matches(dst, proto, port))
                .map(|bi| (ti, bi))
        })
    }

    /// The table called `name`.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// A JSON value as it appeared, shortened, for error messages.
fn show(v: &Value) -> String {
    shorten(&v.to_string())
}

/// Longest value an error message repeats whole, in characters.
pub const SHOWN_MAX: usize = 60;

/// `s` as an error message may repeat it: whole up to [`SHOWN_MAX`]
/// characters, else its start and "...". A message that echoes a 20 MB
/// value is a message nobody can read (and a log line nobody wants).
pub fn shorten(s: &str) -> String {
    if s.chars().count() > SHOWN_MAX {
        let cut: String = s.chars().take(SHOWN_MAX - 3).collect();
        format!("{cut}...")
    } else {
        s.to_string()
    }
}

/// Why `addr` can be neither a backend nor a director's source address, or
/// `None` when it can. A backend is a host the director reaches through a
/// routed tunnel, so it needs a unicast address that names one host
/// beyond this one: a refused address would still get its share of the
/// rows, and that traffic would be black-holed.
pub fn unusable_address(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(a) => {
            let [first, second, ..] = a.octets();
            if a.is_unspecified() {
                Some("the unspecified address")
            } else if first == 0 {
                Some("in 0.0.0.0/8 (this network), which no host can be reached at")
            } else if a.is_broadcast() {
                Some("the broadcast address")
            } else if a.is_multicast() {
                Some("a multicast address")
            } else if a.is_loopback() {
                Some("a loopback address")
            } else if first == 169 && second == 254 {
                Some("a link-local address")
            } else {
                None
            }
        }
        IpAddr::V6(a) => {
            let segments = a.segments();
            if a.is_unspecified() {
                Some("the unspecified address")
            } else if a.is_multicast() {
                Some("a multicast address")
            } else if a.is_loopback() {
                Some("a loopback address")
            } else if segments[0] & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else if a.to_ipv4_mapped().is_some() {
                Some("an IPv4-mapped address (give the IPv4 address itself)")
            } else {
                None
            }
        }
    }
}

/// `addr` for `what` ("a backend", "the director's IPv4 source"), or why not.
fn usable(addr: IpAddr, what: &str) -> Result<(), String> {
    match unusable_address(addr) {
        Some(why) => Err(format!("{addr} is {why}: it cannot be {what}")),
        None => Ok(()),
    }
}

/// A path MTU too small for a table: once encapsulated, clients would be
/// left less than IPv6's minimum MTU.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{mtu} is below {least}, the least path MTU that leaves clients {} bytes (IPv6's minimum MTU) once the {overhead} bytes of encapsulation to {} backends are added{}",
    crate::mtu::IPV6_MIN_MTU,
    if *.outer_v6 { "IPv6" } else { "IPv4" },
    .table.as_ref().map_or(String::new(), |t| format!(" (table \"{t}\")"))
)]
pub struct PathMtuTooSmall {
    /// The path MTU given.
    pub mtu: u32,
    /// The least the tables accept.
    pub least: u32,
    /// The table that needs it (`None` with no table: IPv4 backends').
    pub table: Option<String>,
    /// Whether that table's backends are IPv6 (the outer family).
    pub outer_v6: bool,
    /// Bytes its encapsulation adds.
    pub overhead: usize,
}

/// Checks that a path MTU toward the backends of `tables` leaves every
/// client at least IPv6's minimum MTU once encapsulated
/// ([`crate::mtu::min_mtu`] for each table's encapsulation, outer family
/// and hop count). The director refuses less: an IPv6 client never sends
/// smaller packets on request, so its flows would stall.
pub fn check_path_mtu(mtu: u32, tables: &[Table]) -> Result<(), PathMtuTooSmall> {
    // (least, table, outer_v6, encap, hops): with no table, IPv4 GUE
    // backends' least.
    let mut need = (
        crate::mtu::min_mtu(Encap::Gue, false, 1),
        None,
        false,
        Encap::Gue,
        1,
    );
    for t in tables {
        let outer_v6 = t.backends.first().is_some_and(|b| b.backend.addr.is_ipv6());
        let hops = usize::from(t.chain_hops());
        let least = crate::mtu::min_mtu(t.encap, outer_v6, hops);
        if least > need.0 || need.1.is_none() {
            need = (least, Some(t.name.clone()), outer_v6, t.encap, hops);
        }
    }
    let (least, table, outer_v6, encap, hops) = need;
    if mtu >= least {
        return Ok(());
    }
    Err(PathMtuTooSmall {
        mtu,
        least,
        table,
        outer_v6,
        overhead: crate::mtu::encap_overhead(encap, outer_v6, hops),
    })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl core::str::FromStr for Prefix {
    type Err = String;

    /// `ADDR` (a host prefix) or `ADDR/LEN` with the host bits zero.
    fn from_str(s: &str) -> Result<Prefix, String> {
        parse_prefix_str(s)
    }
}

fn parse_prefix_str(s: &str) -> Result<Prefix, String> {
    let (addr_s, len_s) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr_s
        .parse()
        .map_err(|_| format!("\"{}\" is not an IP address or prefix", shorten(s)))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len_s {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max && !l.starts_with('+') => n,
            _ => return Err(format!("\"{}\": prefix length must be 0-{max}", shorten(s))),
        },
    };
    let net = match addr {
        IpAddr::V4(a) => IpAddr::V4(mask_v4(a, len)),
        IpAddr::V6(a) => IpAddr::V6(mask_v6(a, len)),
    };
    if net != addr {
        return Err(format!(
            "\"{}\" has host bits set (the network is {net}/{len})",
            shorten(s)
        ));
    }
    Ok(Prefix { addr, len })
}

/// A unicast MAC address written as six colon-separated hex pairs.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!(
            "\"{}\" is not a MAC address (like 02:00:5e:00:53:01)",
            shorten(s)
        ));
    }
    for (m, p) in mac.iter_mut().zip(&parts) {
        let [b]: [u8; 1] = hex::decode_array(p).map_err(|_| {
            format!(
                "\"{}\" is not a MAC address (like 02:00:5e:00:53:01)",
                shorten(s)
            )
        })?;
        *m = b;
    }
    if mac == [0; 6] || mac[0] & 1 == 1 {
        return Err(format!("\"{}\" is not a unicast MAC address", shorten(s)));
    }
    Ok(mac)
}

/// Table names are unique, and no two binds (in one table or two) claim the
/// same packet: a packet must have exactly one table.
fn check_across_tables(tables: &[Table]) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for t in tables {
        if !names.insert(t.name.as_str()) {
            return Err(invalid(
                format!("table \"{}\"", t.name),
                "the name is used by another table",
            ));
        }
    }
    let all: Vec<(&Table, usize, &Bind)> = tables
        .iter()
        .flat_map(|t| t.binds.iter().enumerate().map(move |(i, b)| (t, i, b)))
        .collect();
    // Binds are few (tens); a pairwise check is fine and easy to trust.
    for (k, (t, i, b)) in all.iter().enumerate() {
        for (t2, i2, b2) in &all[..k] {
            if b.overlaps(b2) {
                return Err(invalid(
                    format!("table \"{}\".binds[{i}]", t.name),
                    format!("{b} overlaps {b2} (table \"{}\".binds[{i2}])", t2.name),
                ));
            }
        }
    }
    Ok(())
}

/// [`to_json`], with every field of `original` (the file's JSON as last
/// read or written) that this project does not read put back where it was:
/// GLB configs carry fields for other tools, and a rewrite by the daemon
/// must not drop them. Tables are matched by name (by position for
/// unnamed GLB tables), backends by address, binds by position; what has no
/// match (an added backend) has no unknown fields to keep.
pub fn to_json_keeping(config: &Config, original: &Value) -> Value {
    fn keep(out: &mut Value, original: Option<&Value>, known: &[&str]) {
        let (Some(out), Some(original)) =
            (out.as_object_mut(), original.and_then(Value::as_object))
        else {
            return;
        };
        for (k, v) in original {
            if !known.contains(&k.as_str()) && !out.contains_key(k) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    let mut out = to_json(config);
    keep(&mut out, Some(original), fields_of::<raw::Config>());
    if let Some(d) = out.get_mut("director") {
        keep(d, original.get("director"), fields_of::<raw::Director>());
    } else if let Some(d) = original.get("director") {
        // No director settings, but unknown fields in the section.
        let mut section = Value::Object(Map::new());
        keep(&mut section, Some(d), fields_of::<raw::Director>());
        if section.as_object().is_some_and(|o| !o.is_empty()) {
            out["director"] = section;
        }
    }
    let old_tables: &[Value] = original
        .get("tables")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let Some(tables) = out.get_mut("tables").and_then(Value::as_array_mut) else {
        return out;
    };
    for t in tables {
        let name = t["name"].as_str().unwrap_or_default().to_string();
        let old = old_tables.iter().enumerate().find_map(|(i, o)| {
            let old_name = o
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| i.to_string(), str::to_string);
            (old_name == name).then_some(o)
        });
        keep(t, old, fields_of::<raw::Table>());
        let Some(old) = old else { continue };
        let list = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let (old_binds, old_backends) = (list(old, "binds"), list(old, "backends"));
        if let Some(binds) = t.get_mut("binds").and_then(Value::as_array_mut) {
            for (i, b) in binds.iter_mut().enumerate() {
                keep(b, old_binds.get(i), fields_of::<raw::Bind>());
            }
        }
        if let Some(backends) = t.get_mut("backends").and_then(Value::as_array_mut) {
            for b in backends {
                let ip = b["ip"].as_str().and_then(|s| s.parse::<IpAddr>().ok());
                let old = old_backends.iter().find(|o| {
                    o.get("ip")
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse::<IpAddr>().ok())
                        == ip
                });
                keep(b, old, fields_of::<raw::Backend>());
            }
        }
    }
    out
}

/// Renders a config back to JSON in the same format (GLB fields plus the
/// `director` section, every field explicit), for persisting a changed
/// desired state.
pub fn to_json(config: &Config) -> Value {
    let tables: Vec<Value> = config
        .tables
        .iter()
        .map(|t| {
            let binds: Vec<Value> = t
                .binds
                .iter()
                .map(|b| {
                    let mut o = Map::new();
                    o.insert("ip".into(), Value::String(b.prefix.to_string()));
                    o.insert("proto".into(), Value::String(b.proto.as_str().into()));
                    if b.port_start == b.port_end {
                        o.insert("port".into(), b.port_start.into());
                    } else {
                        o.insert("port_start".into(), b.port_start.into());
                        o.insert("port_end".into(), b.port_end.into());
                    }
                    Value::Object(o)
                })
                .collect();
            let backends: Vec<Value> = t
                .backends
                .iter()
                .map(|b| {
                    let mut o = Map::new();
                    o.insert("ip".into(), Value::String(b.backend.addr.to_string()));
                    o.insert(
                        "state".into(),
                        Value::String(b.backend.state.as_str().into()),
                    );
                    o.insert("healthy".into(), Value::Bool(b.backend.healthy));
                    o.insert("reachable".into(), Value::Bool(b.backend.reachable));
                    if let Some(h) = &b.healthchecks {
                        o.insert("healthchecks".into(), h.clone());
                    }
                    Value::Object(o)
                })
                .collect();
            let mut o = Map::new();
            o.insert("name".into(), Value::String(t.name.clone()));
            o.insert("hash_key".into(), Value::String(hex::encode(&t.hash_key)));
            o.insert("seed".into(), Value::String(hex::encode(&t.seed)));
            // An IP-in-IP table uses no hops: written only when the file
            // gave some, so that a rewrite adds no warning.
            if t.encap == Encap::Gue || t.hops != crate::table::DEFAULT_HOPS {
                o.insert("hops".into(), t.hops.into());
            }
            o.insert("encap".into(), Value::String(t.encap.as_str().into()));
            o.insert("binds".into(), Value::Array(binds));
            o.insert("backends".into(), Value::Array(backends));
            Value::Object(o)
        })
        .collect();
    let d = &config.director;
    let mut dir = BTreeMap::new();
    if let Some(i) = &d.interface {
        dir.insert("interface", Value::String(i.clone()));
    }
    if let Some(a) = d.source_v4 {
        dir.insert("source_v4", Value::String(a.to_string()));
    }
    if let Some(a) = d.source_v6 {
        dir.insert("source_v6", Value::String(a.to_string()));
    }
    dir.insert(
        "hash_fields",
        Value::Array(
            d.hash_fields
                .names()
                .into_iter()
                .map(|n| Value::String(n.into()))
                .collect(),
        ),
    );
    if let Some(m) = d.gateway_mac {
        let s: Vec<String> = m.iter().map(|b| format!("{b:02x}")).collect();
        dir.insert("gateway_mac", Value::String(s.join(":")));
    }
    dir.insert("api_listen", Value::String(d.api_listen.to_string()));
    if let Some(p) = &d.api_token_file {
        dir.insert(
            "api_token_file",
            Value::String(p.to_string_lossy().into_owned()),
        );
    }
    if let Some(p) = &d.state_file {
        dir.insert(
            "state_file",
            Value::String(p.to_string_lossy().into_owned()),
        );
    }
    // Written when not the default, so that a file the API rewrites keeps
    // following the defaults it did not set.
    for ((name, value, _), (_, default, _)) in d
        .api_limits
        .fields()
        .into_iter()
        .zip(ApiLimits::DEFAULT.fields())
    {
        if value != default {
            dir.insert(name, value.into());
        }
    }
    if let Some(p) = &d.pin_dir {
        dir.insert("pin_dir", Value::String(p.to_string_lossy().into_owned()));
    }
    if let Some(m) = d.mtu {
        dir.insert("mtu", m.into());
    }
    for (name, p) in [
        ("bird_socket", &d.bird_socket),
        ("bird_include", &d.bird_include),
    ] {
        if let Some(p) = p {
            dir.insert(name, Value::String(p.to_string_lossy().into_owned()));
        }
    }
    if d.withdraw_delay_ms != Director::DEFAULT_WITHDRAW_DELAY_MS {
        dir.insert("withdraw_delay_ms", d.withdraw_delay_ms.into());
    }
    let dir: Map<String, Value> = dir.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let mut root = Map::new();
    root.insert("tables".into(), Value::Array(tables));
    root.insert("director".into(), Value::Object(dir));
    Value::Object(root)
}
