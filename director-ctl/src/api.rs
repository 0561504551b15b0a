//! Commands that talk to a director's HTTP API (docs/api.md), over plain
//! HTTP/1.1 (the API listens on loopback or a management network, without
//! TLS), with reqwest's blocking client: every address the host name
//! resolves to is tried, and connecting and the whole call are bounded.
//! Answers are read into the API's types (`proto::api`), so an answer of
//! another shape is an error, not zeros.
//!
//! Exit status: 0 success, 2 usage (bad URL, unreadable token file), 3 the
//! API refused or failed the call, 4 the director could not be reached (or
//! what answered is not a director's API: a body that is not JSON, or
//! JSON of another shape).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use proto::TABLE_ROWS;
use proto::api::{self, ErrorBody};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Exit status of a usage error.
pub const EXIT_USAGE: u8 = 2;
/// Exit status of a call the API refused or failed (4xx, 5xx).
pub const EXIT_API: u8 = 3;
/// Exit status of a director that could not be reached.
pub const EXIT_NETWORK: u8 = 4;

/// How long connecting to one address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole call may take (a change waits for the file's fsync).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an API command failed.
#[derive(Debug)]
pub enum Failure {
    /// Bad URL or token file.
    Usage(String),
    /// The API answered with an error.
    Api { status: u16, body: ErrorBody },
    /// Connecting, sending or reading failed, or the answer is not the
    /// API's.
    Network(String),
    /// The calls worked, but what was waited for did not happen in time.
    Unfinished(String),
}

impl Failure {
    /// Prints the failure and gives the exit status.
    pub fn report(self) -> ExitCode {
        match self {
            Failure::Usage(m) => {
                eprintln!("director-ctl: {m}");
                ExitCode::from(EXIT_USAGE)
            }
            Failure::Api { status, body } => {
                match (&body.field, &body.value) {
                    (Some(f), v) => eprintln!(
                        "director-ctl: API error {status}: {} (field {f}, value {})",
                        body.error,
                        v.as_ref().unwrap_or(&Value::Null)
                    ),
                    (None, _) => eprintln!("director-ctl: API error {status}: {}", body.error),
                }
                ExitCode::from(EXIT_API)
            }
            Failure::Network(m) => {
                eprintln!("director-ctl: {m}");
                ExitCode::from(EXIT_NETWORK)
            }
            Failure::Unfinished(m) => {
                eprintln!("director-ctl: {m}");
                ExitCode::FAILURE
            }
        }
    }
}

/// Where the API is and how to authenticate.
#[derive(Debug)]
pub struct Client {
    /// `http://HOST:PORT[/PREFIX]`, without a trailing slash.
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl Client {
    /// `url`: `http://HOST:PORT[/PREFIX]`; `token_file`: first line is the token.
    pub fn new(url: &str, token_file: Option<&Path>) -> Result<Client, Failure> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| Failure::Usage(format!("--api {url:?}: {e}")))?;
        if parsed.scheme() != "http" || parsed.host().is_none() {
            return Err(Failure::Usage(format!(
                "--api {url:?}: expected http://HOST:PORT (the API speaks plain HTTP)"
            )));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(Failure::Usage(format!(
                "--api {url:?}: expected http://HOST:PORT[/PREFIX], without a query"
            )));
        }
        let token = match token_file {
            None => None,
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    Failure::Usage(format!("reading the token file {}: {e}", p.display()))
                })?;
                let t = text.lines().next().unwrap_or_default().trim().to_string();
                if t.is_empty() {
                    return Err(Failure::Usage(format!(
                        "the token file {} is empty",
                        p.display()
                    )));
                }
                Some(t)
            }
        };
        // No proxy: the API is the director's own, on loopback or a
        // management network, whatever http_proxy says for the web.
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Failure::Network(format!("starting the HTTP client: {e}")))?;
        Ok(Client {
            base: parsed.as_str().trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    /// One call; the JSON body of a 2xx answer.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let url = format!("{}{path}", self.base);
        let net = |e: String| Failure::Network(format!("{method} {url}: {e}"));
        let method_v = Method::from_bytes(method.as_bytes()).map_err(|e| net(e.to_string()))?;
        let mut req = self
            .http
            .request(method_v, &url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let answer = req.send().map_err(|e| net(error_chain(&e)))?;
        let status = answer.status().as_u16();
        let raw = answer.bytes().map_err(|e| net(error_chain(&e)))?;
        let value: Result<Value, _> = serde_json::from_slice(&raw);
        match value {
            Ok(v) if (200..300).contains(&status) => Ok(v),
            Ok(v) => Err(Failure::Api {
                status,
                body: serde_json::from_value(v.clone()).unwrap_or_else(|_| ErrorBody {
                    error: v.to_string(),
                    field: None,
                    value: None,
                }),
            }),
            Err(_) => Err(net(format!(
                "answered {status} with a body that is not JSON (is this a director's API?): {:?}",
                proto::config::shorten(String::from_utf8_lossy(&raw).trim())
            ))),
        }
    }

    /// [`Client::call`], the answer read as `T`.
    pub fn call_as<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(T, Value), Failure> {
        let v = self.call(method, path, body)?;
        let t = serde_json::from_value(v.clone()).map_err(|e| {
            Failure::Network(format!(
                "{method} {}{path}: the answer is not the API's shape ({e}); is the director of another version?",
                self.base
            ))
        })?;
        Ok((t, v))
    }
}

fn print_director(d: &api::DirectorStatus) {
    println!(
        "attached {}  drained {}  VIP packets {}",
        yes_no(d.attached),
        yes_no(d.drained),
        d.vip_packets
    );
    let b = &d.bgp;
    println!("BGP {}", b.state.as_str());
    if let Some(e) = &b.error {
        println!("  BIRD: {e}");
    }
    // A prefix both announced and withheld is being withdrawn: BIRD has not
    // taken the change yet.
    for p in &b.announced {
        match b.withheld.iter().find(|w| &w.prefix == p) {
            Some(w) => println!("  withdrawing {p} ({})", w.reason),
            None => println!("  announced   {p}"),
        }
    }
    for w in b
        .withheld
        .iter()
        .filter(|w| !b.announced.contains(&w.prefix))
    {
        println!("  withheld    {} ({})", w.prefix, w.reason);
    }
}

/// `director status`.
pub fn director_status(c: &Client, json: bool) -> Result<(), Failure> {
    let (d, v) = c.call_as::<api::DirectorStatus>("GET", api::path::DIRECTOR, None)?;
    if json {
        print_json(&v);
    } else {
        print_director(&d);
    }
    Ok(())
}

/// `director drain` and `undrain`; with `wait` (at most, quiet), then
/// waits until BIRD has withdrawn the VIPs and no VIP packet has arrived
/// for `quiet`.
pub fn director_drain(
    c: &Client,
    drained: bool,
    wait: Option<(Duration, Duration)>,
    json: bool,
) -> Result<(), Failure> {
    let path = if drained {
        api::path::DIRECTOR_DRAIN
    } else {
        api::path::DIRECTOR_UNDRAIN
    };
    let (d, v) = c.call_as::<api::DirectorStatus>("POST", path, None)?;
    let Some((at_most, quiet)) = wait else {
        if json {
            print_json(&v);
        } else {
            print_director(&d);
        }
        return Ok(());
    };
    let start = std::time::Instant::now();
    let poll = Duration::from_millis(250);
    let (mut last, mut since) = (d.vip_packets, std::time::Instant::now());
    let first = d.vip_packets;
    loop {
        std::thread::sleep(poll);
        let (d, v) = c.call_as::<api::DirectorStatus>("GET", api::path::DIRECTOR, None)?;
        let withdrawn = matches!(d.bgp.state, api::BgpState::Withdrawn);
        if d.vip_packets != last {
            (last, since) = (d.vip_packets, std::time::Instant::now());
        }
        if withdrawn && since.elapsed() >= quiet {
            if json {
                print_json(&v);
            } else {
                println!(
                    "drained: VIPs withdrawn, no VIP packet for {} s ({} since the drain, in {:.1} s)",
                    quiet.as_secs(),
                    d.vip_packets - first,
                    start.elapsed().as_secs_f64()
                );
            }
            return Ok(());
        }
        if start.elapsed() >= at_most {
            let why = if withdrawn {
                format!(
                    "VIP traffic still arrives ({} packets since the drain)",
                    d.vip_packets - first
                )
            } else {
                format!(
                    "BGP is {}{}",
                    d.bgp.state.as_str(),
                    d.bgp.error.map(|e| format!(": {e}")).unwrap_or_default()
                )
            };
            return Err(Failure::Unfinished(format!(
                "not drained after {} s: {why}",
                at_most.as_secs()
            )));
        }
    }
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

fn print_json(v: &Value) {
    println!("{v:#}");
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Prints one table of the API as `table show` does.
fn print_table(t: &api::Table) {
    let binds: Vec<&str> = t.binds.iter().map(|b| b.bind.as_str()).collect();
    println!(
        "table \"{}\": {} rows of {}, hash {}; binds: {}",
        t.name,
        t.rows,
        crate::table::chain_words(t.encap, t.hops),
        t.hash.as_deref().unwrap_or("-"),
        binds.join(", ")
    );
    println!(
        "  {:<40} {:<9} {:<7} {:<9} {:>8} {:>7} {:>9} {:>12}  reason",
        "backend", "state", "healthy", "reachable", "primary", "share", "alternate", "packets"
    );
    for b in &t.backends {
        let p = b.rows_primary;
        println!(
            "  {:<40} {:<9} {:<7} {:<9} {:>8} {:>6.2}% {:>9} {:>12}  {}",
            b.ip.to_string(),
            b.state.as_str(),
            yes_no(b.healthy),
            yes_no(b.reachable),
            p,
            100.0 * p as f64 / TABLE_ROWS as f64,
            b.rows_alternate,
            b.packets,
            b.health_reason.as_deref().unwrap_or(""),
        );
    }
    for b in &t.binds {
        println!(
            "  bind {:<38} {} packets, {} bytes",
            b.bind, b.packets, b.bytes
        );
    }
}

/// `tables`.
pub fn tables(c: &Client, json: bool) -> Result<(), Failure> {
    let (tables, v): (api::Tables, _) = c.call_as("GET", api::path::TABLES, None)?;
    if json {
        print_json(&v);
        return Ok(());
    }
    println!("generation {}", tables.generation);
    for t in &tables.tables {
        print_table(t);
    }
    Ok(())
}

/// `backends list TABLE`.
pub fn backends_list(c: &Client, table: &str, json: bool) -> Result<(), Failure> {
    let (t, v): (api::Table, _) = c.call_as("GET", &api::path::table(table), None)?;
    if json {
        print_json(&v);
    } else {
        print_table(&t);
    }
    Ok(())
}

/// A backend change as a call.
#[derive(Debug)]
pub struct ChangeCall {
    /// `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// Its path.
    pub path: String,
    /// Its body.
    pub body: Option<Value>,
    /// The backend, as given.
    pub ip: String,
}

/// A backend change (`backends add|remove|drain|...`, `health set`).
pub fn change(c: &Client, call: &ChangeCall, json: bool) -> Result<(), Failure> {
    let (answer, v): (api::Change, _) = c.call_as(call.method, &call.path, call.body.as_ref())?;
    for w in &answer.warnings {
        eprintln!("warning: {w}");
    }
    if json {
        print_json(&v);
    } else {
        println!("{}", describe_change(&answer, &call.ip));
    }
    Ok(())
}

/// "table "lab": backend 198.51.100.11 draining, healthy (generation 4)".
fn describe_change(answer: &api::Change, ip: &str) -> String {
    let what = answer
        .table
        .backends
        .iter()
        .find(|b| ip.parse() == Ok(b.ip))
        .map_or("removed".to_string(), |b| {
            format!(
                "{}, {}{}",
                b.state,
                if b.healthy { "healthy" } else { "unhealthy" },
                if b.reachable { "" } else { ", unreachable" }
            )
        });
    format!(
        "table \"{}\": backend {ip} {what}{} (generation {})",
        answer.table.name,
        if answer.changed {
            ""
        } else {
            "; nothing changed"
        },
        answer.generation
    )
}

/// `fleet backends|health --directors URL,... ...`: the change on every
/// director, one after the other (each reported, a failure does not stop
/// the others), then their tables compared as `fleet status` does. The
/// exit status is the worse of the two.
pub fn fleet_change(
    urls: &[String],
    token_file: Option<&Path>,
    call: &ChangeCall,
    json: bool,
) -> ExitCode {
    let mut worst = 0u8;
    let mut results = Vec::new();
    for url in urls {
        let result = Client::new(url, token_file)
            .and_then(|c| c.call_as::<api::Change>(call.method, &call.path, call.body.as_ref()));
        let (code, line, value) = match result {
            Ok((answer, v)) => {
                for w in &answer.warnings {
                    eprintln!("{url}: warning: {w}");
                }
                (0, describe_change(&answer, &call.ip), v)
            }
            Err(Failure::Api { status, body }) => (
                EXIT_API,
                format!("API error {status}: {}", body.error),
                json!({ "status": status, "error": body }),
            ),
            Err(Failure::Usage(m)) => (EXIT_USAGE, m.clone(), json!({ "error": m })),
            Err(Failure::Network(m) | Failure::Unfinished(m)) => (
                EXIT_NETWORK,
                format!("unreachable: {m}"),
                json!({ "error": m }),
            ),
        };
        worst = worse(worst, code);
        if json {
            results.push(json!({ "url": url, "ok": code == 0, "answer": value }));
        } else {
            println!("{url}: {line}");
        }
    }
    if json {
        print_json(&json!({ "changes": results }));
    }
    ExitCode::from(worse(worst, print_fleet_status(urls, token_file, json)))
}

/// The worse of two exit statuses: unreachable, refused, usage, disagree.
fn worse(a: u8, b: u8) -> u8 {
    let rank = |c: u8| match c {
        EXIT_NETWORK => 4,
        EXIT_API => 3,
        EXIT_USAGE => 2,
        0 => 0,
        _ => 1,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// `preview TABLE ACTION IP`.
pub fn preview(c: &Client, table: &str, proposal: &Value, json: bool) -> Result<(), Failure> {
    let (p, v): (api::Preview, _) =
        c.call_as("POST", &api::path::preview(table), Some(proposal))?;
    if json {
        print_json(&v);
        return Ok(());
    }
    crate::table::print_movement(table, &p.diff, "would change");
    Ok(())
}

/// `stats`.
pub fn stats(c: &Client, json: bool) -> Result<(), Failure> {
    let (st, v): (api::Stats, _) = c.call_as("GET", api::path::STATS, None)?;
    if json {
        print_json(&v);
        return Ok(());
    }
    println!("generation {}", st.generation);
    match st.path_mtu {
        Some(mtu) => println!("path MTU toward the backends: {mtu}"),
        None => println!("path MTU toward the backends: none"),
    }
    for (k, n) in &st.outcomes {
        println!("  {k:<16} {n}");
    }
    for b in &st.binds {
        println!(
            "  table \"{}\" bind {}: {} packets, {} bytes",
            b.table, b.traffic.bind, b.traffic.packets, b.traffic.bytes
        );
    }
    if let Some(l) = &st.last_apply {
        println!(
            "last apply: {} {}{}",
            l.source,
            if l.ok { "ok" } else { "FAILED" },
            l.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// Exit status of `fleet status` when some table differs between directors.
pub const EXIT_DISAGREE: u8 = 1;

/// What one director of a fleet answered.
#[derive(Debug)]
pub struct DirectorTables {
    /// Its API, as given.
    pub url: String,
    /// Its generation, when reached.
    pub generation: Option<u64>,
    /// Table name -> content hash (`None`: a table without rows yet).
    pub hashes: Vec<(String, Option<String>)>,
    /// Why it could not be compared: `(exit status, message)`.
    pub failure: Option<(u8, String)>,
}

/// One table across the fleet: its hash on each director (in the order
/// given; `None` where the table is missing or the director failed).
#[derive(Debug, PartialEq, Eq)]
pub struct FleetRow {
    /// The table's name.
    pub table: String,
    /// Hash per director.
    pub hashes: Vec<Option<String>>,
    /// Every director answered, every one has the table, all hashes equal.
    pub agree: bool,
}

/// Compares the tables of every director: one row per table name found on
/// any of them, in first-seen order. A table agrees when every director
/// answered and holds it with the same hash.
pub fn compare(directors: &[DirectorTables]) -> Vec<FleetRow> {
    let mut names: Vec<&str> = Vec::new();
    for d in directors {
        for (n, _) in &d.hashes {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
    }
    names
        .into_iter()
        .map(|name| {
            let hashes: Vec<Option<String>> = directors
                .iter()
                .map(|d| {
                    d.hashes
                        .iter()
                        .find(|(n, _)| n == name)
                        .and_then(|(_, h)| h.clone())
                })
                .collect();
            let agree = directors.iter().all(|d| d.failure.is_none())
                && hashes.iter().all(Option::is_some)
                && hashes.windows(2).all(|w| w[0] == w[1]);
            FleetRow {
                table: name.to_string(),
                hashes,
                agree,
            }
        })
        .collect()
}

/// The exit status of `fleet status`: 4 if a director could not be
/// reached, else 3 if one refused the call (or 2, a bad URL), else 1 if a
/// table differs, else 0.
pub fn fleet_exit(directors: &[DirectorTables], rows: &[FleetRow]) -> u8 {
    let worst = |code: u8| {
        directors
            .iter()
            .any(|d| d.failure.as_ref().is_some_and(|f| f.0 == code))
    };
    if worst(EXIT_NETWORK) {
        EXIT_NETWORK
    } else if worst(EXIT_API) {
        EXIT_API
    } else if worst(EXIT_USAGE) {
        EXIT_USAGE
    } else if rows.iter().any(|r| !r.agree) {
        EXIT_DISAGREE
    } else {
        0
    }
}

fn director_tables(url: &str, token_file: Option<&Path>) -> DirectorTables {
    let mut d = DirectorTables {
        url: url.to_string(),
        generation: None,
        hashes: Vec::new(),
        failure: None,
    };
    let answer = Client::new(url, token_file)
        .and_then(|c| c.call_as::<api::Tables>("GET", api::path::TABLES, None));
    match answer {
        Ok((tables, _)) => {
            d.generation = Some(tables.generation);
            d.hashes = tables
                .tables
                .into_iter()
                .map(|t| (t.name, t.hash))
                .collect();
        }
        Err(Failure::Usage(m)) => d.failure = Some((EXIT_USAGE, m)),
        Err(Failure::Network(m)) => d.failure = Some((EXIT_NETWORK, format!("unreachable: {m}"))),
        Err(Failure::Unfinished(m)) => d.failure = Some((1, m)),
        Err(Failure::Api { status, body }) => {
            d.failure = Some((EXIT_API, format!("API error {status}: {}", body.error)));
        }
    }
    d
}

/// `fleet status URL...`: every director's tables and content hashes,
/// side by side.
pub fn fleet_status(urls: &[String], token_file: Option<&Path>, json: bool) -> ExitCode {
    ExitCode::from(print_fleet_status(urls, token_file, json))
}

/// [`fleet_status`]'s work; its exit status.
fn print_fleet_status(urls: &[String], token_file: Option<&Path>, json: bool) -> u8 {
    // One director at a time: a handful of small GETs, each bounded by
    // the client's timeouts.
    let directors: Vec<DirectorTables> = urls
        .iter()
        .map(|u| director_tables(u, token_file))
        .collect();
    let rows = compare(&directors);
    let code = fleet_exit(&directors, &rows);
    for d in &directors {
        if let Some((_, m)) = &d.failure {
            eprintln!("director-ctl: {}: {m}", d.url);
        }
    }
    if json {
        let ds: Vec<Value> = directors
            .iter()
            .map(|d| {
                json!({
                    "url": d.url,
                    "reachable": d.failure.as_ref().is_none_or(|f| f.0 != EXIT_NETWORK),
                    "generation": d.generation,
                    "error": d.failure.as_ref().map(|f| f.1.clone()),
                })
            })
            .collect();
        let ts: Vec<Value> = rows
            .iter()
            .map(|r| json!({ "table": r.table, "hashes": r.hashes, "agree": r.agree }))
            .collect();
        print_json(&json!({
            "directors": ds,
            "tables": ts,
            "agree": code == 0,
        }));
        return code;
    }
    let width = rows.iter().map(|r| r.table.len()).max().unwrap_or(0).max(5);
    let cell = |d: &DirectorTables, h: &Option<String>| match (&d.failure, h) {
        (Some((EXIT_NETWORK, _)), _) => "unreachable".to_string(),
        (Some(_), _) => "error".to_string(),
        (None, Some(h)) => h.clone(),
        (None, None) => "missing".to_string(),
    };
    let mut head = format!("{:<width$}", "table");
    for d in &directors {
        head.push_str(&format!("  {:<32}", d.url));
    }
    println!("{head}  verdict");
    for r in &rows {
        let mut line = format!("{:<width$}", r.table);
        for (d, h) in directors.iter().zip(&r.hashes) {
            line.push_str(&format!("  {:<32}", cell(d, h)));
        }
        let verdict = if r.agree { "AGREE" } else { "DISAGREE" };
        println!("{line}  {verdict}");
    }
    let (agree, total) = (rows.iter().filter(|r| r.agree).count(), rows.len());
    println!(
        "{agree} of {total} tables agree across {} directors{}",
        directors.len(),
        match code {
            EXIT_NETWORK => "; some directors could not be reached",
            EXIT_API | EXIT_USAGE => "; some directors could not be asked",
            _ => "",
        }
    );
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_token_files_are_checked_before_any_call() {
        let c = Client::new("http://127.0.0.1:9610", None).expect("valid");
        assert_eq!(c.base, "http://127.0.0.1:9610");
        let c = Client::new("http://[::1]:9610/glb/", None).expect("valid");
        assert_eq!(c.base, "http://[::1]:9610/glb");
        for bad in [
            "https://127.0.0.1:9610",
            "127.0.0.1:9610",
            "http://",
            "http://127.0.0.1:9610/?x=1",
        ] {
            assert!(
                matches!(Client::new(bad, None), Err(Failure::Usage(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Client::new(
                "http://127.0.0.1:9610",
                Some(Path::new("/nonexistent/token"))
            ),
            Err(Failure::Usage(_))
        ));
    }

    fn director(url: &str, tables: &[(&str, &str)], failure: Option<u8>) -> DirectorTables {
        DirectorTables {
            url: url.to_string(),
            generation: Some(1),
            hashes: tables
                .iter()
                .map(|(n, h)| (n.to_string(), Some(h.to_string())))
                .collect(),
            failure: failure.map(|c| (c, "x".to_string())),
        }
    }

    #[test]
    fn fleet_tables_agree_only_when_every_director_has_the_same_hash() {
        let a = director("a", &[("web", "h1"), ("api", "h2")], None);
        let b = director("b", &[("web", "h1"), ("api", "h2")], None);
        let rows = compare(&[a, b]);
        assert!(rows.iter().all(|r| r.agree));
        let a = director("a", &[("web", "h1"), ("api", "h2")], None);
        let b = director("b", &[("web", "h1"), ("api", "h3")], None);
        let c = director("c", &[("web", "h1")], None);
        let ds = [a, b, c];
        let rows = compare(&ds);
        assert_eq!(
            rows.iter()
                .map(|r| (r.table.as_str(), r.agree))
                .collect::<Vec<_>>(),
            [("web", true), ("api", false)]
        );
        assert_eq!(rows[1].hashes[2], None, "missing on c");
        assert_eq!(fleet_exit(&ds, &rows), EXIT_DISAGREE);
        let ds = [
            director("a", &[("web", "h1")], None),
            director("b", &[], Some(EXIT_NETWORK)),
        ];
        let rows = compare(&ds);
        assert!(!rows[0].agree, "an unreachable director is no agreement");
        assert_eq!(fleet_exit(&ds, &rows), EXIT_NETWORK);
        let ds = [director("a", &[("web", "h1")], None)];
        assert_eq!(fleet_exit(&ds, &compare(&ds)), 0);
    }
}
