//! Offline table tools: build, show, diff, trace.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use proto::TABLE_ROWS;
use proto::config::{Config, Proto};
use proto::flow::{Flow, flow_hash, gue_source_port, message, row_of};
use proto::table::{BackendState, Rendezvous};
use serde_json::{Value, json};

use crate::TraceArgs;

/// Reads and checks a config; its warnings go to stderr.
fn load_config(path: &Path) -> Result<Config> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config =
        Config::from_json(&text).with_context(|| format!("checking config {}", path.display()))?;
    for w in &config.warnings {
        eprintln!("director-ctl: warning: {}: {w}", path.display());
    }
    Ok(config)
}

/// A backend as the reports show it.
#[derive(Clone, Debug)]
struct BackendInfo {
    addr: IpAddr,
    state: Option<BackendState>,
    healthy: Option<bool>,
}

/// One built table: what `build` writes and `diff` reads back.
#[derive(Clone, Debug)]
struct Built {
    name: String,
    backends: Vec<BackendInfo>,
    rows: Vec<[IpAddr; 2]>,
}

fn build_all(config: &Config) -> Result<Vec<Built>> {
    config
        .tables
        .iter()
        .map(|t| {
            let r = Rendezvous::build(t.seed, &t.builder_backends())
                .with_context(|| format!("building table \"{}\"", t.name))?;
            Ok(Built {
                name: t.name.clone(),
                backends: t
                    .backends
                    .iter()
                    .map(|b| BackendInfo {
                        addr: b.backend.addr,
                        state: Some(b.backend.state),
                        healthy: Some(b.backend.healthy),
                    })
                    .collect(),
                rows: r.row_addrs().collect(),
            })
        })
        .collect()
}

/// A config, or a table file written by `build`.
fn load_tables(path: &Path) -> Result<Vec<Built>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let is_built = doc["tables"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t.get("rows").is_some()));
    if !is_built {
        return build_all(&load_config(path)?);
    }
    let tables = doc["tables"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    tables
        .iter()
        .enumerate()
        .map(|(i, t)| parse_built(t).with_context(|| format!("{}: tables[{i}]", path.display())))
        .collect()
}

fn parse_built(t: &Value) -> Result<Built> {
    let name = t["name"]
        .as_str()
        .ok_or_else(|| anyhow!("missing \"name\""))?
        .to_string();
    let rows_v = t["rows"]
        .as_array()
        .ok_or_else(|| anyhow!("table \"{name}\": missing \"rows\""))?;
    if rows_v.len() != TABLE_ROWS {
        bail!(
            "table \"{name}\": {} rows, expected {TABLE_ROWS}",
            rows_v.len()
        );
    }
    let addr = |v: &Value, row: usize| -> Result<IpAddr> {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("table \"{name}\": row {row}: {v} is not an IP address"))
    };
    let mut rows = Vec::with_capacity(TABLE_ROWS);
    for (i, r) in rows_v.iter().enumerate() {
        match r.as_array().map(Vec::as_slice) {
            Some([p, s]) => rows.push([addr(p, i)?, addr(s, i)?]),
            _ => bail!("table \"{name}\": row {i}: expected [primary, secondary], found {r}"),
        }
    }
    let mut backends: Vec<BackendInfo> = Vec::new();
    if let Some(list) = t["backends"].as_array() {
        for b in list {
            let addr: IpAddr = b["ip"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow!("table \"{name}\": backend {b} has no valid \"ip\""))?;
            let state = b["state"].as_str().and_then(BackendState::from_name);
            backends.push(BackendInfo {
                addr,
                state,
                healthy: b["healthy"].as_bool(),
            });
        }
    }
    // Backends only seen in rows (a hand-made table file) still get counted.
    for r in &rows {
        for a in r {
            if !backends.iter().any(|b| b.addr == *a) {
                backends.push(BackendInfo {
                    addr: *a,
                    state: None,
                    healthy: None,
                });
            }
        }
    }
    Ok(Built {
        name,
        backends,
        rows,
    })
}

/// `table build`: one row per line, so that text tools can diff two files.
pub fn build(config: &Path, out: &Path) -> Result<ExitCode> {
    let tables = build_all(&load_config(config)?)?;
    let tmp = out.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        let mut w = BufWriter::new(fs::File::create(&tmp)?);
        writeln!(w, "{{\n  \"tables\": [")?;
        for (ti, t) in tables.iter().enumerate() {
            let backends: Vec<Value> = t
                .backends
                .iter()
                .map(|b| {
                    json!({
                        "ip": b.addr.to_string(),
                        "state": b.state.map(BackendState::as_str),
                        "healthy": b.healthy,
                    })
                })
                .collect();
            writeln!(w, "    {{")?;
            writeln!(w, "      \"name\": {},", json!(t.name))?;
            writeln!(w, "      \"backends\": {},", Value::Array(backends))?;
            writeln!(w, "      \"rows\": [")?;
            for (i, [p, s]) in t.rows.iter().enumerate() {
                let comma = if i + 1 < t.rows.len() { "," } else { "" };
                writeln!(w, "        [\"{p}\", \"{s}\"]{comma}")?;
            }
            writeln!(w, "      ]")?;
            let comma = if ti + 1 < tables.len() { "," } else { "" };
            writeln!(w, "    }}{comma}")?;
        }
        writeln!(w, "  ]\n}}")?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    write().with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, out)
        .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    for t in &tables {
        eprintln!(
            "director-ctl: table \"{}\": {} rows, {} backends",
            t.name,
            t.rows.len(),
            t.backends.len()
        );
    }
    eprintln!("director-ctl: wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// Rows held per backend: (as primary, as secondary).
fn counts(rows: &[[IpAddr; 2]]) -> BTreeMap<IpAddr, (usize, usize)> {
    let mut m: BTreeMap<IpAddr, (usize, usize)> = BTreeMap::new();
    for [p, s] in rows {
        m.entry(*p).or_default().0 += 1;
        m.entry(*s).or_default().1 += 1;
    }
    m
}

/// max / mean of the rows held as primary, over backends holding any.
fn spread(c: &BTreeMap<IpAddr, (usize, usize)>) -> f64 {
    let primaries: Vec<usize> = c.values().map(|v| v.0).filter(|&n| n > 0).collect();
    if primaries.is_empty() {
        return 0.0;
    }
    let max = primaries.iter().copied().max().unwrap_or(0) as f64;
    max / (TABLE_ROWS as f64 / primaries.len() as f64)
}

fn yes_no(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

/// `table show`.
pub fn show(config_path: &Path, as_json: bool) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let tables = build_all(&config)?;
    let mut out = Vec::new();
    for (t, cfg) in tables.iter().zip(&config.tables) {
        let c = counts(&t.rows);
        let backends: Vec<Value> = t
            .backends
            .iter()
            .map(|b| {
                let (p, s) = c.get(&b.addr).copied().unwrap_or_default();
                json!({
                    "ip": b.addr.to_string(),
                    "state": b.state.map(BackendState::as_str),
                    "healthy": b.healthy,
                    "rows_primary": p,
                    "rows_secondary": s,
                })
            })
            .collect();
        out.push(json!({
            "name": t.name,
            "binds": cfg.binds.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "rows": t.rows.len(),
            "backends": backends,
            "spread": spread(&c),
        }));
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "tables": out }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    for (t, v) in tables.iter().zip(&out) {
        let binds: Vec<&str> = v["binds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "table \"{}\": {} rows; binds: {}",
            t.name,
            t.rows.len(),
            binds.join(", ")
        );
        println!(
            "  {:<40} {:<9} {:<7} {:>8} {:>7} {:>9}",
            "backend", "state", "healthy", "primary", "share", "secondary"
        );
        for b in v["backends"].as_array().into_iter().flatten() {
            let p = b["rows_primary"].as_u64().unwrap_or(0);
            println!(
                "  {:<40} {:<9} {:<7} {:>8} {:>6.2}% {:>9}",
                b["ip"].as_str().unwrap_or("?"),
                b["state"].as_str().unwrap_or("-"),
                yes_no(b["healthy"].as_bool()),
                p,
                100.0 * p as f64 / TABLE_ROWS as f64,
                b["rows_secondary"].as_u64().unwrap_or(0),
            );
        }
        println!(
            "  spread (max/mean rows as primary, over backends holding any): {:.3}",
            v["spread"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `table diff`.
pub fn diff(old_path: &Path, new_path: &Path, as_json: bool) -> Result<ExitCode> {
    let old = load_tables(old_path)?;
    let new = load_tables(new_path)?;
    let mut reports = Vec::new();
    for o in &old {
        let Some(n) = new.iter().find(|n| n.name == o.name) else {
            reports.push(json!({ "name": o.name, "status": "removed" }));
            continue;
        };
        let d = proto::table::diff_rows(&o.rows, &n.rows);
        let mut report = json!({
            "name": o.name,
            "status": if d.rows_changed == 0 { "unchanged" } else { "changed" },
        });
        if let (Value::Object(r), Value::Object(m)) = (&mut report, serde_json::to_value(&d)?) {
            r.extend(m);
        }
        reports.push(report);
    }
    for n in &new {
        if !old.iter().any(|o| o.name == n.name) {
            reports.push(json!({ "name": n.name, "status": "added" }));
        }
    }
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "tables": reports }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    for r in &reports {
        let name = r["name"].as_str().unwrap_or("?");
        match r["status"].as_str() {
            Some("removed") => println!("table \"{name}\": removed"),
            Some("added") => println!("table \"{name}\": added"),
            Some("unchanged") => println!("table \"{name}\": unchanged"),
            _ => print_movement(name, r, "change"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a table's row movement (a `table diff` report, or the API's
/// preview): counts, then rows as primary and secondary per backend.
pub(crate) fn print_movement(name: &str, r: &Value, verb: &str) {
    let pct = |n: u64| 100.0 * n as f64 / TABLE_ROWS as f64;
    let g = |k: &str| r[k].as_u64().unwrap_or(0);
    println!(
        "table \"{name}\": {} rows {verb} ({:.2}%)",
        g("rows_changed"),
        pct(g("rows_changed"))
    );
    println!(
        "  primary changes:   {:>6} rows ({:.2}%)",
        g("rows_primary_changed"),
        pct(g("rows_primary_changed"))
    );
    println!(
        "  secondary changes: {:>6} rows ({:.2}%)",
        g("rows_secondary_changed"),
        pct(g("rows_secondary_changed"))
    );
    let lost = g("rows_old_primary_unreachable");
    println!(
        "  old primary neither primary nor secondary: {lost} rows ({:.2}%){}",
        pct(lost),
        if lost > 0 {
            ": second chance cannot find the established flows of these rows"
        } else {
            ""
        }
    );
    println!(
        "  {:<40} {:>16} {:>18}",
        "backend", "rows as primary", "rows as secondary"
    );
    for b in r["backends"].as_array().into_iter().flatten() {
        let g = |k: &str| b[k].as_u64().unwrap_or(0);
        println!(
            "  {:<40} {:>7} -> {:<6} {:>8} -> {:<7}",
            b["ip"].as_str().unwrap_or("?"),
            g("primary_before"),
            g("primary_after"),
            g("secondary_before"),
            g("secondary_after"),
        );
    }
}

/// Parses `--src IP[:PORT]` and `--dst IP:PORT/PROTO`.
pub fn parse_trace_args(src: &str, dst: &str) -> Result<TraceArgs> {
    let (src, src_port) = parse_endpoint(src).with_context(|| format!("--src {src:?}"))?;
    let (dst_ep, proto) = dst.rsplit_once('/').ok_or_else(|| {
        anyhow!("--dst {dst:?}: expected VIP:PORT/PROTO, like 203.0.113.10:80/tcp")
    })?;
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        p => bail!("--dst {dst:?}: protocol {p:?} is not tcp or udp"),
    };
    let (dst_addr, dst_port) = parse_endpoint(dst_ep).with_context(|| format!("--dst {dst:?}"))?;
    let dst_port =
        dst_port.ok_or_else(|| anyhow!("--dst {dst:?}: the port is missing (VIP:PORT/PROTO)"))?;
    if src.is_ipv4() != dst_addr.is_ipv4() {
        bail!("--src {src} and --dst {dst_addr} are of different address families");
    }
    Ok(TraceArgs {
        src,
        src_port,
        dst: dst_addr,
        dst_port,
        proto,
    })
}

/// `IP`, `IPv4:PORT` or `[IPv6]:PORT`.
fn parse_endpoint(s: &str) -> Result<(IpAddr, Option<u16>)> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    let sa: std::net::SocketAddr = s.parse().map_err(|_| {
        anyhow!("not an address or address:port (IPv6 with a port is written [2001:db8::1]:80)")
    })?;
    Ok((sa.ip(), Some(sa.port())))
}

fn addr_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// `trace`.
pub fn trace(config_path: &Path, a: &TraceArgs, as_json: bool) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let proto_s = a.proto.as_str();
    let Some((ti, bi)) = config.find_bind(a.dst, a.proto, a.dst_port) else {
        let dst = if a.dst.is_ipv6() {
            format!("[{}]", a.dst)
        } else {
            a.dst.to_string()
        };
        if as_json {
            println!("{}", json!({ "bind": null }));
        } else {
            println!(
                "no bind matches {dst}:{}/{proto_s}: the director passes such packets to the kernel",
                a.dst_port
            );
        }
        return Ok(ExitCode::from(1));
    };
    let fields = config.director.hash_fields;
    if fields.has(proto::maps::HASH_SRC_PORT) && a.src_port.is_none() {
        bail!("hash_fields include src_port: give --src as ADDRESS:PORT");
    }
    let table = &config.tables[ti];
    let src_b = addr_bytes(a.src);
    let dst_b = addr_bytes(a.dst);
    let flow = Flow {
        src_addr: &src_b,
        dst_addr: &dst_b,
        src_port: a.src_port.unwrap_or(0),
        dst_port: a.dst_port,
    };
    let mut buf = [0u8; proto::flow::MAX_MESSAGE];
    let n = message(&flow, fields.0, &mut buf);
    let hash = flow_hash(&table.hash_key, fields.0, &flow);
    let row = row_of(hash);
    let r = Rendezvous::build(table.seed, &table.builder_backends())
        .with_context(|| format!("building table \"{}\"", table.name))?;
    let [p, s] = r.rows()[row as usize];
    let describe = |i: u32| {
        let b = r.backend(i).copied();
        b.map_or(json!(null), |b| {
            json!({ "ip": b.addr.to_string(), "state": b.state.as_str(), "healthy": b.healthy })
        })
    };
    let sport = gue_source_port(hash, flow.src_port);
    let report = json!({
        "bind": table.binds[bi].to_string(),
        "table": table.name,
        "bind_index": bi,
        "hash_fields": fields.names(),
        "hash_message": proto::hex::encode(&buf[..n]),
        "hash": format!("{hash:016x}"),
        "row": row,
        "primary": describe(p),
        "secondary": describe(s),
        "gue_source_port": sport,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let who = |v: &Value| {
        format!(
            "{} ({}, {})",
            v["ip"].as_str().unwrap_or("?"),
            v["state"].as_str().unwrap_or("?"),
            if v["healthy"].as_bool() == Some(true) {
                "healthy"
            } else {
                "unhealthy"
            }
        )
    };
    println!(
        "bind:      {} (table \"{}\", binds[{bi}])",
        report["bind"].as_str().unwrap_or("?"),
        table.name
    );
    println!(
        "hash:      siphash24(hash_key, {}) = {hash:016x}",
        report["hash_message"].as_str().unwrap_or("")
    );
    println!("           fields: {}", fields.names().join(", "));
    println!("row:       {row}");
    println!("primary:   {}", who(&report["primary"]));
    println!("secondary: {}", who(&report["secondary"]));
    println!("gue:       udp {sport} -> {}", proto::GUE_PORT);
    Ok(ExitCode::SUCCESS)
}
