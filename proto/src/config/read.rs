//! Reading a config: the text into JSON, the JSON into the file's shape
//! ([`raw`], serde derive), the shape checked into a [`Config`]. Every
//! refusal names the table, the field and the value, worded the same
//! whether the field has the wrong type (serde's refusal, reworded here
//! from its path) or a value out of its range (the check's).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use serde_path_to_error::Segment;

use super::raw;
use super::{
    ApiLimits, Backend, BackendConfig, Bind, Config, ConfigError, Director, HashFields, Table,
    check_across_tables, check_path_mtu, invalid, parse_mac, parse_prefix_str, shorten, show,
    usable, valid_name,
};
use crate::Encap;
use crate::de::{Object, fields_of, value_at};
use crate::hex;
use crate::table::{BackendState, DEFAULT_HOPS, MAX_HOPS, TableError, check_hops};

/// Top-level fields of the health checker's (docs/healthcheck.md), in the
/// file the directors read too: no warning, and kept by a rewrite like any
/// field the director does not read.
const HEALTHCHECK_FIELDS: &[&str] = &["healthcheck", "healthchecks"];

/// The director's fields that hold a string.
const DIRECTOR_STRINGS: &[&str] = &[
    "interface",
    "source_v4",
    "source_v6",
    "gateway_mac",
    "api_listen",
    "api_token_file",
    "state_file",
    "pin_dir",
    "bird_socket",
    "bird_include",
];

/// [`Config::from_json`].
pub(super) fn config(text: &str) -> Result<Config, ConfigError> {
    let doc: Value = serde_json::from_str(text)?;
    let Object(file): Object<raw::Config> =
        serde_path_to_error::deserialize(&doc).map_err(|e| shape_error(&doc, &e))?;
    let raw_tables = file
        .tables
        .ok_or_else(|| invalid("config", "missing field \"tables\""))?;
    let mut tables = Vec::with_capacity(raw_tables.len());
    for (i, Object(t)) in raw_tables.into_iter().enumerate() {
        tables.push(table(i, t)?);
    }
    check_across_tables(&tables)?;
    let director = match file.director {
        None => Director::default(),
        Some(Object(d)) => director(d)?,
    };
    if let Some(mtu) = director.mtu {
        check_path_mtu(mtu, &tables).map_err(|e| invalid("director.mtu", e.to_string()))?;
    }
    let mut warnings = unknown_fields(&doc, &tables);
    warnings.extend(ipip_warnings(&doc, &tables));
    Ok(Config {
        tables,
        director,
        warnings,
    })
}

/// A step of the path serde reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// A field of the wrong type (or a number beyond its type), refused as the
/// check refuses the field's bad values: `tables[0].backends[2].state` is
/// `table "web".backends[2] (198.51.100.3).state`, with the value given.
fn shape_error(doc: &Value, e: &serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    use Step::{Index, Key};
    let steps: Vec<Step<'_>> = e
        .path()
        .iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(Key(key)),
            Segment::Seq { index } => Some(Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect();
    let shown = show(value_at(doc, e.path()).unwrap_or(&Value::Null));
    let found = |path: &str, what: &str| invalid(path, format!("expected {what}, found {shown}"));
    let refusal = match steps.as_slice() {
        [] => Some(found("config", "an object")),
        [Key("tables")] => Some(found("tables", "an array")),
        [Key("tables"), Index(i), rest @ ..] => {
            table_shape_error(&doc["tables"][*i], *i, rest, &shown)
        }
        [Key("director")] => Some(found("director", "an object")),
        [Key("director"), Key("hash_fields")] => Some(found("director.hash_fields", "an array")),
        [Key("director"), Key("hash_fields"), Index(_)] => Some(hash_field_refused(&shown)),
        [Key("director"), Key(k)] => director_shape_error(k, &shown),
        _ => None,
    };
    // Every field of the shape is worded above; serde's own words are
    // the fallback.
    refusal.unwrap_or_else(|| invalid(e.path().to_string(), e.inner().to_string()))
}

/// [`shape_error`] in table `i` (`t` as given), at `rest` within it.
fn table_shape_error(t: &Value, i: usize, rest: &[Step<'_>], shown: &str) -> Option<ConfigError> {
    use Step::{Index, Key};
    match rest {
        [] => {
            return Some(invalid(
                format!("tables[{i}]"),
                format!("expected an object, found {shown}"),
            ));
        }
        [Key("name")] => return Some(name_refused(i, shown)),
        _ => {}
    }
    // Other fields are named by the table's name, so a bad name is the
    // refusal (as the check, which reads the name first, would say).
    let name = match t.get("name") {
        None => i.to_string(),
        Some(Value::String(s)) if valid_name(s) => s.clone(),
        Some(n) => return Some(name_refused(i, &show(n))),
    };
    let table = format!("table \"{name}\"");
    let refusal = match rest {
        [Key(k @ ("hash_key" | "seed"))] => invalid(
            format!("{table}.{k}"),
            format!("expected 32 hex digits, found {shown}"),
        ),
        [Key("hops")] => hops_refused(&table, shown),
        [Key("encap")] => invalid(
            format!("{table}.encap"),
            format!("{shown} is not \"gue\" or \"ipip\""),
        ),
        [Key(k @ ("binds" | "backends"))] => invalid(
            format!("{table}.{k}"),
            format!("expected an array, found {shown}"),
        ),
        [Key(k @ ("binds" | "backends")), Index(j)] => invalid(
            format!("{table}.{k}[{j}]"),
            format!("expected an object, found {shown}"),
        ),
        [Key("binds"), Index(j), Key(k)] => {
            let bind = format!("{table}.binds[{j}]");
            match *k {
                "ip" => invalid(
                    format!("{bind}.ip"),
                    format!("{shown} is not an IP address or prefix"),
                ),
                "proto" => invalid(
                    format!("{bind}.proto"),
                    format!("{shown} is not \"tcp\" or \"udp\""),
                ),
                "port" | "port_start" | "port_end" => port_refused(&bind, k, shown),
                _ => return None,
            }
        }
        [Key("backends"), Index(j), Key("ip")] => invalid(
            format!("{table}.backends[{j}].ip"),
            format!("{shown} is not an IP address"),
        ),
        [Key("backends"), Index(j), Key(k), ..] => {
            let backend = format!("{table}.backends[{j}]");
            // Named by its address, so a bad address is the refusal.
            let addr = match t["backends"][*j].get("ip") {
                Some(Value::String(s)) => backend_addr(&backend, Some(s)),
                None => backend_addr(&backend, None),
                Some(other) => Err(invalid(
                    format!("{backend}.ip"),
                    format!("{} is not an IP address", show(other)),
                )),
            };
            let backend = match addr {
                Ok(addr) => format!("{backend} ({addr})"),
                Err(e) => return Some(e),
            };
            match *k {
                "state" => invalid(
                    format!("{backend}.state"),
                    format!(
                        "{shown} is not one of \"active\", \"filling\", \"draining\", \"inactive\""
                    ),
                ),
                "healthy" | "reachable" => invalid(
                    format!("{backend}.{k}"),
                    format!("{shown} is not true or false"),
                ),
                "healthchecks" => invalid(
                    format!("{backend}.healthchecks"),
                    format!("expected an object, found {shown}"),
                ),
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(refusal)
}

/// [`shape_error`] at `director.{k}`.
fn director_shape_error(k: &str, shown: &str) -> Option<ConfigError> {
    if let Some((_, _, range)) = ApiLimits::DEFAULT.fields().into_iter().find(|f| f.0 == k) {
        return Some(limit_refused(k, shown, &range));
    }
    match k {
        "withdraw_delay_ms" => Some(withdraw_delay_refused(shown)),
        "mtu" => Some(mtu_refused(shown)),
        k if DIRECTOR_STRINGS.contains(&k) => Some(invalid(
            format!("director.{k}"),
            format!("expected a string, found {shown}"),
        )),
        _ => None,
    }
}

// Refusals of fields that can be of the wrong type or out of range, one
// wording for both; `shown` is the value as given ([`show`]).

fn name_refused(i: usize, shown: &str) -> ConfigError {
    invalid(
        format!("tables[{i}].name"),
        format!("{shown} is not a table name (1-64 characters of letters, digits, '-', '_', '.')"),
    )
}

fn hops_refused(table: &str, shown: &str) -> ConfigError {
    invalid(
        format!("{table}.hops"),
        format!("{shown} is not a number of alternates per row (1 to {MAX_HOPS})"),
    )
}

fn port_refused(bind: &str, k: &str, shown: &str) -> ConfigError {
    invalid(
        format!("{bind}.{k}"),
        format!("{shown} is not a port (1-65535)"),
    )
}

fn hash_field_refused(shown: &str) -> ConfigError {
    invalid(
        "director.hash_fields",
        format!("{shown} is not one of \"src_addr\", \"dst_addr\", \"src_port\", \"dst_port\""),
    )
}

fn limit_refused(k: &str, shown: &str, range: &std::ops::RangeInclusive<u32>) -> ConfigError {
    invalid(
        format!("director.{k}"),
        format!(
            "{shown} is not an integer from {} to {}",
            range.start(),
            range.end()
        ),
    )
}

fn withdraw_delay_refused(shown: &str) -> ConfigError {
    invalid(
        "director.withdraw_delay_ms",
        format!(
            "{shown} is not an integer from 0 to {}",
            Director::MAX_WITHDRAW_DELAY_MS
        ),
    )
}

/// The least path MTU any table accepts (IPv4 backends in IP-in-IP); the
/// tables' own needs are checked once they are read.
fn least_mtu() -> u32 {
    crate::mtu::min_mtu(Encap::Ipip, false, 0)
}

fn mtu_refused(shown: &str) -> ConfigError {
    invalid(
        "director.mtu",
        format!(
            "{shown} is not a path MTU (an integer from {} to {})",
            least_mtu(),
            crate::mtu::MAX_MTU
        ),
    )
}

/// A string as [`show`] shows it: quoted, escaped, cut.
fn show_str(s: &str) -> String {
    show(&Value::from(s))
}

fn table(i: usize, t: raw::Table) -> Result<Table, ConfigError> {
    let name = match t.name {
        None => i.to_string(),
        Some(s) if valid_name(&s) => s,
        Some(s) => return Err(name_refused(i, &show_str(&s))),
    };
    let path = format!("table \"{name}\"");
    let hash_key = key16(&path, "hash_key", t.hash_key.as_deref())?;
    let seed = key16(&path, "seed", t.seed.as_deref())?;
    let hops = match t.hops {
        None => DEFAULT_HOPS,
        Some(h) => check_hops(h).map_err(|_| hops_refused(&path, &h.to_string()))?,
    };
    let encap = t.encap.unwrap_or_default();
    let raw_binds = t.binds.unwrap_or_default();
    let mut binds = Vec::with_capacity(raw_binds.len());
    for (j, Object(b)) in raw_binds.into_iter().enumerate() {
        binds.push(bind(&format!("{path}.binds[{j}]"), b)?);
    }
    let bpath = format!("{path}.backends");
    let raw_backends = t
        .backends
        .ok_or_else(|| invalid(&path, "missing field \"backends\""))?;
    let mut backends = Vec::with_capacity(raw_backends.len());
    for (j, Object(b)) in raw_backends.into_iter().enumerate() {
        backends.push(backend(&format!("{bpath}[{j}]"), b)?);
    }
    let list: Vec<Backend> = backends.iter().map(|b: &BackendConfig| b.backend).collect();
    crate::table::check_backends(&list).map_err(|e| {
        let message = match e {
            TableError::NoUsableBackend => {
                "no backend can take traffic (every backend is inactive, or there are none): the table's VIPs would be blackholed".to_string()
            }
            e => e.to_string(),
        };
        invalid(&bpath, message)
    })?;
    Ok(Table {
        name,
        hash_key,
        seed,
        hops,
        encap,
        binds,
        backends,
    })
}

/// Key `k` of `table`: 16 bytes as 32 hex digits.
fn key16(table: &str, k: &str, v: Option<&str>) -> Result<[u8; 16], ConfigError> {
    let s = v.ok_or_else(|| {
        invalid(
            table,
            format!("missing field \"{k}\" (16 bytes as 32 hex digits)"),
        )
    })?;
    hex::decode_array(s)
        .map_err(|e| invalid(format!("{table}.{k}"), format!("\"{}\": {e}", shorten(s))))
}

fn bind(path: &str, b: raw::Bind) -> Result<Bind, ConfigError> {
    let ip = b.ip.ok_or_else(|| invalid(path, "missing field \"ip\""))?;
    let prefix = parse_prefix_str(&ip).map_err(|m| invalid(format!("{path}.ip"), m))?;
    let proto = b
        .proto
        .ok_or_else(|| invalid(path, "missing field \"proto\""))?;
    let port = |k: &str, p: Option<u16>| match p {
        Some(0) => Err(port_refused(path, k, "0")),
        p => Ok(p),
    };
    let (port_start, port_end) = match (
        port("port", b.port)?,
        port("port_start", b.port_start)?,
        port("port_end", b.port_end)?,
    ) {
        (Some(p), None, None) => (p, p),
        (None, Some(s), Some(e)) if s <= e => (s, e),
        (None, Some(s), Some(e)) => {
            return Err(invalid(path, format!("port range {s}-{e} is reversed")));
        }
        (Some(_), _, _) => {
            return Err(invalid(
                path,
                "give either \"port\" or \"port_start\" and \"port_end\", not both",
            ));
        }
        (None, None, None) => {
            return Err(invalid(
                path,
                "missing field \"port\" (or \"port_start\" and \"port_end\")",
            ));
        }
        (None, _, _) => {
            return Err(invalid(
                path,
                "a port range needs both \"port_start\" and \"port_end\"",
            ));
        }
    };
    Ok(Bind {
        prefix,
        proto,
        port_start,
        port_end,
    })
}

fn backend(path: &str, b: raw::Backend) -> Result<BackendConfig, ConfigError> {
    Ok(BackendConfig {
        backend: Backend {
            addr: backend_addr(path, b.ip.as_deref())?,
            state: b.state.unwrap_or(BackendState::Active),
            healthy: b.healthy.unwrap_or(true),
            reachable: b.reachable.unwrap_or(true),
        },
        healthchecks: b.healthchecks.map(Value::Object),
    })
}

/// The address of the backend at `path`.
fn backend_addr(path: &str, ip: Option<&str>) -> Result<IpAddr, ConfigError> {
    let s = ip.ok_or_else(|| invalid(path, "missing field \"ip\""))?;
    let addr = s.parse::<IpAddr>().map_err(|_| {
        invalid(
            format!("{path}.ip"),
            format!("\"{}\" is not an IP address", shorten(s)),
        )
    })?;
    usable(addr, "a backend").map_err(|m| invalid(format!("{path}.ip"), m))?;
    Ok(addr)
}

fn director(raw: raw::Director) -> Result<Director, ConfigError> {
    let mut d = Director::default();
    let field = |k: &str| format!("director.{k}");
    if let Some(s) = &raw.interface {
        // Linux interface names: 1-15 bytes, no '/', no whitespace.
        if s.is_empty()
            || s.len() > 15
            || s.contains(['/', ':'])
            || s.chars().any(char::is_whitespace)
        {
            return Err(invalid(
                field("interface"),
                format!("\"{}\" is not an interface name", shorten(s)),
            ));
        }
        d.interface = Some(s.clone());
    }
    if let Some(s) = &raw.source_v4 {
        let a: Ipv4Addr = s.parse().map_err(|_| {
            invalid(
                field("source_v4"),
                format!("\"{}\" is not an IPv4 address", shorten(s)),
            )
        })?;
        usable(IpAddr::V4(a), "the director's source address")
            .map_err(|m| invalid(field("source_v4"), m))?;
        d.source_v4 = Some(a);
    }
    if let Some(s) = &raw.source_v6 {
        let a: Ipv6Addr = s.parse().map_err(|_| {
            invalid(
                field("source_v6"),
                format!("\"{}\" is not an IPv6 address", shorten(s)),
            )
        })?;
        usable(IpAddr::V6(a), "the director's source address")
            .map_err(|m| invalid(field("source_v6"), m))?;
        d.source_v6 = Some(a);
    }
    if let Some(s) = &raw.gateway_mac {
        d.gateway_mac = Some(parse_mac(s).map_err(|m| invalid(field("gateway_mac"), m))?);
    }
    if let Some(s) = &raw.api_listen {
        d.api_listen = s.parse().map_err(|_| {
            invalid(
                field("api_listen"),
                format!(
                    "\"{}\" is not an address and port (like 127.0.0.1:9610 or [::1]:9610)",
                    shorten(s)
                ),
            )
        })?;
    }
    // Relative to what? The daemon's working directory is an accident
    // of how it was started: only absolute paths.
    let absolute = |k: &str, s: &Option<String>| {
        let Some(s) = s else { return Ok(None) };
        let path = PathBuf::from(s);
        if !path.is_absolute() || s.contains('\0') {
            return Err(invalid(
                field(k),
                format!("\"{}\" is not an absolute path", shorten(s)),
            ));
        }
        Ok(Some(path))
    };
    d.api_token_file = absolute("api_token_file", &raw.api_token_file)?;
    d.state_file = absolute("state_file", &raw.state_file)?;
    d.bird_socket = absolute("bird_socket", &raw.bird_socket)?;
    d.bird_include = absolute("bird_include", &raw.bird_include)?;
    match (&d.bird_socket, &d.bird_include) {
        (Some(_), None) => {
            return Err(invalid(
                field("bird_include"),
                "is required with director.bird_socket (the BIRD config include the director writes its VIPs to)",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                field("bird_socket"),
                "is required with director.bird_include (BIRD's control socket, to make BIRD read it)",
            ));
        }
        _ => {}
    }
    if let Some(n) = raw.withdraw_delay_ms {
        if n > Director::MAX_WITHDRAW_DELAY_MS {
            return Err(withdraw_delay_refused(&n.to_string()));
        }
        d.withdraw_delay_ms = n;
    }
    if let Some(s) = &raw.pin_dir {
        let path = PathBuf::from(s);
        // Pinned objects live on bpffs, mounted at /sys/fs/bpf; a
        // relative path or `..` could leave it.
        let escapes = path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
        if !path.is_absolute()
            || s.contains('\0')
            || escapes
            || !path.starts_with("/sys/fs/bpf/")
            || path == Path::new("/sys/fs/bpf/")
        {
            return Err(invalid(
                field("pin_dir"),
                format!(
                    "\"{}\" is not a directory under /sys/fs/bpf (an absolute path on bpffs, without \"..\")",
                    shorten(s)
                ),
            ));
        }
        d.pin_dir = Some(path);
    }
    if let Some(names) = &raw.hash_fields {
        let mut bits = 0u8;
        for name in names {
            let bit = HashFields::NAMES
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| *b)
                .ok_or_else(|| hash_field_refused(&show_str(name)))?;
            if bits & bit != 0 {
                return Err(invalid(
                    field("hash_fields"),
                    format!("\"{name}\" is listed twice"),
                ));
            }
            bits |= bit;
        }
        if bits == 0 {
            return Err(invalid(field("hash_fields"), "needs at least one field"));
        }
        d.hash_fields = HashFields(bits);
    }
    for ((name, given), (_, _, range)) in raw
        .api_limits()
        .into_iter()
        .zip(ApiLimits::DEFAULT.fields())
    {
        let Some(n) = given else { continue };
        if !range.contains(&n) {
            return Err(limit_refused(name, &n.to_string(), &range));
        }
        d.api_limits.set(name, n);
    }
    if let Some(mtu) = raw.mtu {
        if !(least_mtu()..=crate::mtu::MAX_MTU).contains(&mtu) {
            return Err(mtu_refused(&mtu.to_string()));
        }
        d.mtu = Some(mtu);
    }
    Ok(d)
}

/// What an `ipip` table's settings mean, for the operator to see: a
/// `hops` given is not used (no hop list), and a draining or filling
/// backend moves the established flows of the rows whose primary changes
/// at once (no second chance).
fn ipip_warnings(doc: &Value, tables: &[Table]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, t) in tables.iter().enumerate() {
        if t.encap != Encap::Ipip {
            continue;
        }
        let path = format!("table \"{}\"", t.name);
        if doc["tables"][i].get("hops").is_some() {
            warnings.push(format!(
                "{path}.hops: ignored with \"encap\": \"ipip\" (no hop list: a row is its primary alone)"
            ));
        }
        for (j, b) in t.backends.iter().enumerate() {
            let state = b.backend.state;
            if matches!(state, BackendState::Draining | BackendState::Filling) {
                warnings.push(format!(
                    "{path}.backends[{j}] ({}): {} in an \"ipip\" table (no second chance) moves the established flows of the rows whose primary changes",
                    b.backend.addr,
                    state.as_str()
                ));
            }
        }
    }
    warnings
}

/// A warning for each field of `doc` this project does not read (GLB
/// configs carry fields for other tools), for the operator to see.
fn unknown_fields(doc: &Value, tables: &[Table]) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut report = |v: Option<&Value>, path: &str, known: &[&str]| {
        for k in v.and_then(Value::as_object).into_iter().flat_map(Map::keys) {
            if !known.contains(&k.as_str()) {
                warnings.push(format!("{path}: unknown field \"{}\" ignored", shorten(k)));
            }
        }
    };
    let root: Vec<&str> = fields_of::<raw::Config>()
        .iter()
        .chain(HEALTHCHECK_FIELDS)
        .copied()
        .collect();
    report(Some(doc), "config", &root);
    for (i, t) in tables.iter().enumerate() {
        let v = &doc["tables"][i];
        report(Some(v), &format!("tables[{i}]"), fields_of::<raw::Table>());
        let path = format!("table \"{}\"", t.name);
        for j in 0..t.binds.len() {
            report(
                v["binds"].get(j),
                &format!("{path}.binds[{j}]"),
                fields_of::<raw::Bind>(),
            );
        }
        for j in 0..t.backends.len() {
            report(
                v["backends"].get(j),
                &format!("{path}.backends[{j}]"),
                fields_of::<raw::Backend>(),
            );
        }
    }
    report(
        doc.get("director"),
        "director",
        fields_of::<raw::Director>(),
    );
    warnings
}
