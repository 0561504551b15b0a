//! Offline table tools: build, show, diff, trace.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use director_ctl::files::{AtomicFile, FileError};
use proto::config::{Config, Proto};
use proto::flow::{Flow, flow_hash, gue_source_port, message, row_of};
use proto::table::{
    BackendState, Chain, Holders, MAX_HOPS, Release, RowCount, RowDiff, row_counts,
};
use proto::{Encap, TABLE_ROWS};
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

/// A backend as the reports show it (a hand-made table file may leave
/// out what it is).
#[derive(Clone, Debug)]
struct BackendInfo {
    addr: IpAddr,
    state: Option<BackendState>,
    healthy: Option<bool>,
    reachable: Option<bool>,
}

impl BackendInfo {
    fn json(&self) -> Value {
        json!({
            "ip": self.addr.to_string(),
            "state": self.state.map(BackendState::as_str),
            "healthy": self.healthy,
            "reachable": self.reachable,
        })
    }
}

/// One built table: what `build` writes and `diff` reads back.
#[derive(Clone, Debug)]
struct Built {
    name: String,
    hops: u8,
    encap: Encap,
    backends: Vec<BackendInfo>,
    rows: Vec<Chain<IpAddr>>,
}

impl Built {
    /// Which members of the chains may hold established flows, as far as
    /// the table tells: the primaries, and the members that take no new
    /// flows (a backend whose state is not known counts as one).
    fn holders(&self) -> Holders {
        let serving: std::collections::HashSet<IpAddr> = self
            .backends
            .iter()
            .filter(|b| {
                b.state.is_some_and(BackendState::serves)
                    && b.healthy != Some(false)
                    && b.reachable != Some(false)
            })
            .map(|b| b.addr)
            .collect();
        Holders::assumed(&self.rows, |ip| serving.contains(&ip))
    }

    /// The backends this table takes out of every row on purpose, compared
    /// with `old` (removed, made inactive, marked unreachable).
    fn released_since(&self, old: &Built) -> BTreeMap<IpAddr, Release> {
        old.backends
            .iter()
            .filter_map(|o| {
                let reason = match self.backends.iter().find(|n| n.addr == o.addr) {
                    None => Release::Removed,
                    Some(n) if n.state == Some(BackendState::Inactive) => Release::Inactive,
                    Some(n) if n.reachable == Some(false) => Release::Unreachable,
                    Some(_) => return None,
                };
                Some((o.addr, reason))
            })
            .collect()
    }
}

fn build_all(config: &Config) -> Result<Vec<Built>> {
    config
        .tables
        .iter()
        .map(|t| {
            let r = t
                .rendezvous()
                .with_context(|| format!("building table \"{}\"", t.name))?;
            Ok(Built {
                name: t.name.clone(),
                hops: t.chain_hops(),
                encap: t.encap,
                backends: t
                    .backends
                    .iter()
                    .map(|b| BackendInfo {
                        addr: b.backend.addr,
                        state: Some(b.backend.state),
                        healthy: Some(b.backend.healthy),
                        reachable: Some(b.backend.reachable),
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
    let mut rows: Vec<Chain<IpAddr>> = Vec::with_capacity(TABLE_ROWS);
    for (i, r) in rows_v.iter().enumerate() {
        let entries = r
            .as_array()
            .map(|a| a.iter().map(|v| addr(v, i)).collect::<Result<Vec<_>>>())
            .transpose()?;
        let chain = entries.as_deref().and_then(Chain::from_slice).ok_or_else(|| {
            anyhow!(
                "table \"{name}\": row {i}: expected [primary, alternate, ...] with 1 to {MAX_HOPS} alternates, found {r}"
            )
        })?;
        if let Some(first) = rows.first()
            && first.len() != chain.len()
        {
            bail!(
                "table \"{name}\": row {i} has {} entries, row 0 has {}",
                chain.len(),
                first.len()
            );
        }
        rows.push(chain);
    }
    let hops = rows.first().map_or(0, |c| c.alternates().len() as u8);
    let encap = match t.get("encap") {
        None => Encap::Gue,
        Some(e) => e
            .as_str()
            .and_then(Encap::from_name)
            .ok_or_else(|| anyhow!("table \"{name}\": \"encap\" {e} is not \"gue\" or \"ipip\""))?,
    };
    if (encap == Encap::Ipip) != (hops == 0) {
        bail!(
            "table \"{name}\": \"encap\": \"{encap}\" with rows of {} entries (ipip rows are their primary alone, gue rows have alternates)",
            hops + 1
        );
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
                reachable: b["reachable"].as_bool(),
            });
        }
    }
    // Backends only seen in rows (a hand-made table file) still get counted.
    for r in &rows {
        for a in r.iter() {
            if !backends.iter().any(|b| b.addr == *a) {
                backends.push(BackendInfo {
                    addr: *a,
                    state: None,
                    healthy: None,
                    reachable: None,
                });
            }
        }
    }
    Ok(Built {
        name,
        hops,
        encap,
        backends,
        rows,
    })
}

/// Why `table build` failed: the output path was refused (a usage error),
/// or building or writing failed.
#[derive(Debug)]
pub enum BuildFailure {
    /// The output is not something to write a table to.
    Refused(anyhow::Error),
    /// Reading the config, building or writing the table failed.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for BuildFailure {
    fn from(e: anyhow::Error) -> Self {
        BuildFailure::Failed(e)
    }
}

/// `table build`: one row per line, so that text tools can diff two files.
/// `out` is `-` for standard output; any other output is written through
/// [`director_ctl::files`] (a regular file only, never the config).
pub fn build(config: &Path, out: &Path) -> Result<ExitCode, BuildFailure> {
    let to_stdout = out.as_os_str() == "-";
    // Check the output before the work: a refused path fails at once.
    let file = if to_stdout {
        None
    } else {
        let f = AtomicFile::create(out, &[config]).map_err(|e| match e {
            FileError::NotRegular { .. } | FileError::ProcLink { .. } => {
                BuildFailure::Refused(anyhow!("{e} (`--out -` writes to standard output)"))
            }
            e if e.is_refusal() => BuildFailure::Refused(e.into()),
            e => BuildFailure::Failed(
                anyhow::Error::from(e).context(format!("writing {}", out.display())),
            ),
        })?;
        Some(f)
    };
    let tables = build_all(&load_config(config)?)?;
    let written = match file {
        Some(f) => {
            let target = f.target().clone();
            let mut w = BufWriter::new(f);
            write_tables(&mut w, &tables).with_context(|| format!("writing {}", out.display()))?;
            w.into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("writing {}", out.display()))?
                .commit()
                .with_context(|| format!("writing {}", out.display()))?;
            if target.through_link() {
                format!(
                    "{} (through its link to {})",
                    out.display(),
                    target.path().display()
                )
            } else {
                out.display().to_string()
            }
        }
        None => {
            let mut w = BufWriter::new(std::io::stdout().lock());
            write_tables(&mut w, &tables)
                .and_then(|()| w.flush())
                .context("writing the table to standard output")?;
            "standard output".to_string()
        }
    };
    for t in &tables {
        eprintln!(
            "director-ctl: table \"{}\": {} rows, {} backends",
            t.name,
            t.rows.len(),
            t.backends.len()
        );
    }
    eprintln!("director-ctl: wrote {written}");
    Ok(ExitCode::SUCCESS)
}

/// The table file: every table's backends, then its rows one per line.
fn write_tables(w: &mut impl Write, tables: &[Built]) -> std::io::Result<()> {
    writeln!(w, "{{\n  \"tables\": [")?;
    for (ti, t) in tables.iter().enumerate() {
        let backends: Vec<Value> = t.backends.iter().map(BackendInfo::json).collect();
        writeln!(w, "    {{")?;
        writeln!(w, "      \"name\": {},", json!(t.name))?;
        writeln!(w, "      \"hops\": {},", t.hops)?;
        writeln!(w, "      \"encap\": {},", json!(t.encap.as_str()))?;
        writeln!(w, "      \"backends\": {},", Value::Array(backends))?;
        writeln!(w, "      \"rows\": [")?;
        for (i, chain) in t.rows.iter().enumerate() {
            let comma = if i + 1 < t.rows.len() { "," } else { "" };
            writeln!(w, "        {}{comma}", json!(chain))?;
        }
        writeln!(w, "      ]")?;
        let comma = if ti + 1 < tables.len() { "," } else { "" };
        writeln!(w, "    }}{comma}")?;
    }
    writeln!(w, "  ]\n}}")
}

/// max / mean of the rows held as primary, over backends holding any.
fn spread(c: &BTreeMap<IpAddr, RowCount>) -> f64 {
    let primaries: Vec<usize> = c.values().map(|v| v.primary).filter(|&n| n > 0).collect();
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
    let counts: Vec<BTreeMap<IpAddr, RowCount>> =
        tables.iter().map(|t| row_counts(&t.rows)).collect();
    if as_json {
        let out: Vec<Value> = tables
            .iter()
            .zip(&config.tables)
            .zip(&counts)
            .map(|((t, cfg), c)| {
                let backends: Vec<Value> = t
                    .backends
                    .iter()
                    .map(|b| {
                        let held = c.get(&b.addr).copied().unwrap_or_default();
                        let mut v = b.json();
                        v["rows_primary"] = json!(held.primary);
                        v["rows_alternate"] = json!(held.alternate);
                        v
                    })
                    .collect();
                json!({
                    "name": t.name,
                    "hops": t.hops,
                    "encap": t.encap,
                    "binds": cfg.binds.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "rows": t.rows.len(),
                    "backends": backends,
                    "spread": spread(c),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "tables": out }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    for ((t, cfg), c) in tables.iter().zip(&config.tables).zip(&counts) {
        let binds: Vec<String> = cfg.binds.iter().map(ToString::to_string).collect();
        println!(
            "table \"{}\": {} rows of {}; binds: {}",
            t.name,
            t.rows.len(),
            chain_words(t.encap, t.hops),
            binds.join(", ")
        );
        println!(
            "  {:<40} {:<9} {:<7} {:<9} {:>8} {:>7} {:>9}",
            "backend", "state", "healthy", "reachable", "primary", "share", "alternate"
        );
        for b in &t.backends {
            let held = c.get(&b.addr).copied().unwrap_or_default();
            println!(
                "  {:<40} {:<9} {:<7} {:<9} {:>8} {:>6.2}% {:>9}",
                b.addr.to_string(),
                b.state.map_or("-", BackendState::as_str),
                yes_no(b.healthy),
                yes_no(b.reachable),
                held.primary,
                100.0 * held.primary as f64 / TABLE_ROWS as f64,
                held.alternate,
            );
        }
        println!(
            "  spread (max/mean rows as primary, over backends holding any): {:.3}",
            spread(c)
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
            reports.push((o.name.as_str(), "removed", None));
            continue;
        };
        let mut d = proto::table::diff_rows(&o.rows, &n.rows, &o.holders(), &n.released_since(o));
        if n.encap == Encap::Ipip {
            d.warn_no_second_chance(&n.name);
        }
        let status = if d.rows_changed == 0 {
            "unchanged"
        } else {
            "changed"
        };
        reports.push((o.name.as_str(), status, Some(d)));
    }
    for n in &new {
        if !old.iter().any(|o| o.name == n.name) {
            reports.push((n.name.as_str(), "added", None));
        }
    }
    if as_json {
        let tables: Vec<Value> = reports
            .iter()
            .map(|(name, status, d)| {
                let mut report = json!({ "name": name, "status": status });
                if let (Value::Object(r), Some(Value::Object(m))) = (
                    &mut report,
                    d.as_ref().and_then(|d| serde_json::to_value(d).ok()),
                ) {
                    r.extend(m);
                }
                report
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "tables": tables }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    for (name, status, d) in &reports {
        match d {
            Some(d) if *status == "changed" => print_movement(name, d, "change"),
            _ => println!("table \"{name}\": {status}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a row of a table is, for a line of text: `1 primary + 2
/// alternates (gue)`, or `1 primary, no alternates (ipip: no second
/// chance)`.
pub(crate) fn chain_words(encap: Encap, hops: u8) -> String {
    match encap {
        Encap::Gue => format!("1 primary + {hops} alternates (gue)"),
        Encap::Ipip => "1 primary, no alternates (ipip: no second chance)".to_string(),
    }
}

/// The first rows of a list, for a line of text.
fn some_rows(rows: &[u32]) -> String {
    const SHOWN: usize = 8;
    let mut s: Vec<String> = rows.iter().take(SHOWN).map(u32::to_string).collect();
    if rows.len() > SHOWN {
        s.push(format!("... ({} more)", rows.len() - SHOWN));
    }
    s.join(", ")
}

/// Prints a table's row movement (a `table diff` report, or the API's
/// preview): counts, the rows whose established flows second chance can
/// no longer find, per backend, then rows as primary and alternate per
/// backend.
pub(crate) fn print_movement(name: &str, d: &RowDiff, verb: &str) {
    let pct = |n: usize| 100.0 * n as f64 / TABLE_ROWS as f64;
    for w in &d.warnings {
        println!("warning: {w}");
    }
    println!(
        "table \"{name}\": {} rows {verb} ({:.2}%)",
        d.rows_changed,
        pct(d.rows_changed)
    );
    println!(
        "  primary changes:    {:>6} rows ({:.2}%)",
        d.rows_primary_changed,
        pct(d.rows_primary_changed)
    );
    println!(
        "  alternates changes: {:>6} rows ({:.2}%)",
        d.rows_alternates_changed,
        pct(d.rows_alternates_changed)
    );
    if d.lost.is_empty() {
        println!(
            "  established flows lost: none (every backend that may hold flows stays in its rows' chains)"
        );
    } else {
        println!(
            "  established flows lost in {} rows ({:.2}%): a backend that may hold flows leaves the chain, second chance cannot find them",
            d.rows_lost,
            pct(d.rows_lost)
        );
        for l in &d.lost {
            for (rows, place) in [
                (&l.primary_rows, "primary"),
                (&l.alternate_rows, "an alternate (flows of earlier changes)"),
            ] {
                if !rows.is_empty() {
                    println!(
                        "    {:<40} {:>6} rows it is {place} of: {}",
                        l.ip.to_string(),
                        rows.len(),
                        some_rows(rows)
                    );
                }
            }
        }
    }
    for r in &d.released {
        let why = match r.reason {
            Release::Removed => "removed",
            Release::Inactive => "made inactive",
            Release::Unreachable => "unreachable",
        };
        println!(
            "  released on purpose: {} ({why}) leaves {} rows",
            r.ip, r.rows
        );
    }
    println!(
        "  {:<40} {:>16} {:>18}",
        "backend", "rows as primary", "rows as alternate"
    );
    for m in &d.backends {
        println!(
            "  {:<40} {:>7} -> {:<6} {:>8} -> {:<7}",
            m.ip.to_string(),
            m.primary_before,
            m.primary_after,
            m.alternate_before,
            m.alternate_after,
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
    let r = table
        .rendezvous()
        .with_context(|| format!("building table \"{}\"", table.name))?;
    let chain = r.rows()[row as usize];
    let describe = |i: u32| {
        let b = r.backend(i).copied();
        b.map_or(json!(null), |b| {
            json!({
                "ip": b.addr.to_string(),
                "state": b.state.as_str(),
                "healthy": b.healthy,
                "reachable": b.reachable,
            })
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
        "hops": r.hops(),
        "encap": table.encap,
        "primary": describe(chain.primary()),
        "alternates": chain.alternates().iter().map(|&i| describe(i)).collect::<Vec<_>>(),
        "gue_source_port": sport,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let who = |i: u32| match r.backend(i) {
        Some(b) => format!(
            "{} ({}, {}{})",
            b.addr,
            b.state.as_str(),
            if b.healthy { "healthy" } else { "unhealthy" },
            if b.reachable { "" } else { ", unreachable" }
        ),
        None => "?".to_string(),
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
    println!("primary:   {}", who(chain.primary()));
    for &a in chain.alternates() {
        println!("alternate: {}", who(a));
    }
    match table.encap {
        Encap::Gue => println!(
            "gue:       udp {sport} -> {}, {} hops",
            proto::GUE_PORT,
            r.hops()
        ),
        Encap::Ipip => println!(
            "ipip:      outer {}, protocol {} (no hop list)",
            if r.backend(chain.primary()).is_some_and(|b| b.addr.is_ipv6()) {
                "IPv6"
            } else {
                "IPv4"
            },
            if a.src.is_ipv6() { 41 } else { 4 }
        ),
    }
    Ok(ExitCode::SUCCESS)
}
