//! Commands that talk to a director's HTTP API (docs/api.md), over plain
//! HTTP/1.1: the API listens on loopback or a management network, without
//! TLS, so a small client on `std::net` does and pulls in no HTTP stack.
//!
//! Exit status: 0 success, 2 usage (bad URL, unreadable token file), 3 the
//! API refused or failed the call, 4 the director could not be reached.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use proto::TABLE_ROWS;
use serde_json::{Value, json};

/// Exit status of a usage error.
pub const EXIT_USAGE: u8 = 2;
/// Exit status of a call the API refused or failed (4xx, 5xx).
pub const EXIT_API: u8 = 3;
/// Exit status of a director that could not be reached.
pub const EXIT_NETWORK: u8 = 4;

/// Why an API command failed.
#[derive(Debug)]
pub enum Failure {
    /// Bad URL or token file.
    Usage(String),
    /// The API answered with an error.
    Api { status: u16, body: Value },
    /// Connecting, sending or reading failed.
    Network(String),
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
                let error = body["error"].as_str().unwrap_or("(no message)");
                match body["field"].as_str() {
                    Some(f) => eprintln!(
                        "director-ctl: API error {status}: {error} (field {f}, value {})",
                        body["value"]
                    ),
                    None => eprintln!("director-ctl: API error {status}: {error}"),
                }
                ExitCode::from(EXIT_API)
            }
            Failure::Network(m) => {
                eprintln!("director-ctl: {m}");
                ExitCode::from(EXIT_NETWORK)
            }
        }
    }
}

/// Where the API is and how to authenticate.
#[derive(Debug)]
pub struct Client {
    host: String,
    authority: String,
    prefix: String,
    token: Option<String>,
}

impl Client {
    /// `url`: `http://HOST:PORT[/PREFIX]`; `token_file`: first line is the token.
    pub fn new(url: &str, token_file: Option<&Path>) -> Result<Client, Failure> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            Failure::Usage(format!(
                "--api {url:?}: expected http://HOST:PORT (the API speaks plain HTTP)"
            ))
        })?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let host = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
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
        Ok(Client {
            host,
            authority: authority.to_string(),
            prefix: prefix.to_string(),
            token,
        })
    }

    /// One call; the JSON body of a 2xx answer.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let net = |e: std::io::Error| {
            Failure::Network(format!("{method} http://{}{path}: {e}", self.authority))
        };
        let addr = self
            .host
            .to_socket_addrs()
            .map_err(net)?
            .next()
            .ok_or_else(|| net(std::io::Error::other("no address")))?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(net)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(net)?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut req = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n",
            self.prefix, self.authority
        );
        if let Some(t) = &self.token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if method != "GET" {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        s.write_all(req.as_bytes()).map_err(net)?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).map_err(net)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| net(std::io::Error::other(format!("not HTTP: {line:?}"))))?;
        let mut chunked = false;
        loop {
            line.clear();
            r.read_line(&mut line).map_err(net)?;
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            chunked |= l.starts_with("transfer-encoding:") && l.contains("chunked");
        }
        let mut raw = Vec::new();
        r.read_to_end(&mut raw).map_err(net)?;
        if chunked {
            raw = dechunk(&raw).ok_or_else(|| net(std::io::Error::other("bad chunked body")))?;
        }
        let value: Value = serde_json::from_slice(&raw)
            .unwrap_or_else(|_| json!({ "error": String::from_utf8_lossy(&raw).trim() }));
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(Failure::Api {
                status,
                body: value,
            })
        }
    }
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_s = std::str::from_utf8(&raw[..end]).ok()?;
        let size = usize::from_str_radix(size_s.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..).unwrap_or_default();
    }
}

fn print_json(v: &Value) {
    println!("{v:#}");
}

/// Prints one table of the API as `table show` does.
fn print_table(t: &Value) {
    let binds: Vec<&str> = t["binds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["bind"].as_str())
        .collect();
    println!(
        "table \"{}\": {} rows of 1 primary + {} alternates, hash {}; binds: {}",
        t["name"].as_str().unwrap_or("?"),
        t["rows"],
        t["hops"],
        t["hash"].as_str().unwrap_or("-"),
        binds.join(", ")
    );
    println!(
        "  {:<40} {:<9} {:<7} {:<9} {:>8} {:>7} {:>9} {:>12}  reason",
        "backend", "state", "healthy", "reachable", "primary", "share", "alternate", "packets"
    );
    let yes_no = |v: &Value| {
        if v.as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        }
    };
    for b in t["backends"].as_array().into_iter().flatten() {
        let p = b["rows_primary"].as_u64().unwrap_or(0);
        println!(
            "  {:<40} {:<9} {:<7} {:<9} {:>8} {:>6.2}% {:>9} {:>12}  {}",
            b["ip"].as_str().unwrap_or("?"),
            b["state"].as_str().unwrap_or("-"),
            yes_no(&b["healthy"]),
            yes_no(&b["reachable"]),
            p,
            100.0 * p as f64 / TABLE_ROWS as f64,
            b["rows_alternate"].as_u64().unwrap_or(0),
            b["packets"].as_u64().unwrap_or(0),
            b["health_reason"].as_str().unwrap_or(""),
        );
    }
    for b in t["binds"].as_array().into_iter().flatten() {
        println!(
            "  bind {:<38} {} packets, {} bytes",
            b["bind"].as_str().unwrap_or("?"),
            b["packets"],
            b["bytes"]
        );
    }
}

/// `tables`.
pub fn tables(c: &Client, json: bool) -> Result<(), Failure> {
    let v = c.call("GET", "/v1/tables", None)?;
    if json {
        print_json(&v);
        return Ok(());
    }
    println!("generation {}", v["generation"]);
    for t in v["tables"].as_array().into_iter().flatten() {
        print_table(t);
    }
    Ok(())
}

/// `backends list TABLE`.
pub fn backends_list(c: &Client, table: &str, json: bool) -> Result<(), Failure> {
    let v = c.call("GET", &format!("/v1/tables/{table}"), None)?;
    if json {
        print_json(&v);
    } else {
        print_table(&v);
    }
    Ok(())
}

/// A change: prints what the director answered.
pub fn change(
    c: &Client,
    method: &str,
    path: &str,
    body: Option<&Value>,
    ip: &str,
    json: bool,
) -> Result<(), Failure> {
    let v = c.call(method, path, body)?;
    if json {
        print_json(&v);
        return Ok(());
    }
    let table = v["table"]["name"].as_str().unwrap_or("?");
    let what = v["table"]["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["ip"] == ip)
        .map_or("removed".to_string(), |b| {
            format!(
                "{}, {}{}",
                b["state"].as_str().unwrap_or("?"),
                if b["healthy"].as_bool() == Some(true) {
                    "healthy"
                } else {
                    "unhealthy"
                },
                if b["reachable"].as_bool() == Some(false) {
                    ", unreachable"
                } else {
                    ""
                }
            )
        });
    println!(
        "table \"{table}\": backend {ip} {what}{} (generation {})",
        if v["changed"] == true {
            ""
        } else {
            "; nothing changed"
        },
        v["generation"]
    );
    Ok(())
}

/// `preview TABLE ACTION IP`.
pub fn preview(c: &Client, table: &str, proposal: &Value, json: bool) -> Result<(), Failure> {
    let v = c.call(
        "POST",
        &format!("/v1/tables/{table}/preview"),
        Some(proposal),
    )?;
    if json {
        print_json(&v);
        return Ok(());
    }
    let d: proto::table::RowDiff = serde_json::from_value(v)
        .map_err(|e| Failure::Network(format!("reading the director's preview: {e}")))?;
    crate::table::print_movement(table, &d, "would change");
    Ok(())
}

/// `stats`.
pub fn stats(c: &Client, json: bool) -> Result<(), Failure> {
    let v = c.call("GET", "/v1/stats", None)?;
    if json {
        print_json(&v);
        return Ok(());
    }
    println!("generation {}", v["generation"]);
    match v["path_mtu"].as_u64() {
        Some(mtu) => println!("path MTU toward the backends: {mtu}"),
        None => println!("path MTU toward the backends: none"),
    }
    if let Some(o) = v["outcomes"].as_object() {
        for (k, n) in o {
            println!("  {k:<16} {n}");
        }
    }
    for b in v["binds"].as_array().into_iter().flatten() {
        println!(
            "  table \"{}\" bind {}: {} packets, {} bytes",
            b["table"].as_str().unwrap_or("?"),
            b["bind"].as_str().unwrap_or("?"),
            b["packets"],
            b["bytes"]
        );
    }
    let l = &v["last_apply"];
    if l.is_object() {
        println!(
            "last apply: {} {}{}",
            l["source"].as_str().unwrap_or("?"),
            if l["ok"] == true { "ok" } else { "FAILED" },
            l["error"]
                .as_str()
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
    let answer = Client::new(url, token_file).and_then(|c| c.call("GET", "/v1/tables", None));
    match answer {
        Ok(v) => {
            d.generation = v["generation"].as_u64();
            for t in v["tables"].as_array().into_iter().flatten() {
                let name = t["name"].as_str().unwrap_or("?").to_string();
                d.hashes
                    .push((name, t["hash"].as_str().map(str::to_string)));
            }
        }
        Err(Failure::Usage(m)) => d.failure = Some((EXIT_USAGE, m)),
        Err(Failure::Network(m)) => d.failure = Some((EXIT_NETWORK, format!("unreachable: {m}"))),
        Err(Failure::Api { status, body }) => {
            let error = body["error"].as_str().unwrap_or("(no message)");
            d.failure = Some((EXIT_API, format!("API error {status}: {error}")));
        }
    }
    d
}

/// `fleet status URL...`: every director's tables and content hashes,
/// side by side.
pub fn fleet_status(urls: &[String], token_file: Option<&Path>, json: bool) -> ExitCode {
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
        return ExitCode::from(code);
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
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_token_files_are_checked_before_any_call() {
        let c = Client::new("http://127.0.0.1:9610", None).expect("valid");
        assert_eq!(c.host, "127.0.0.1:9610");
        let c = Client::new("http://[::1]:9610/glb/", None).expect("valid");
        assert_eq!((c.host.as_str(), c.prefix.as_str()), ("[::1]:9610", "/glb"));
        assert!(matches!(
            Client::new("https://127.0.0.1:9610", None),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            Client::new(
                "http://127.0.0.1:9610",
                Some(Path::new("/nonexistent/token"))
            ),
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk(b"3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n").as_deref(),
            Some(b"{\"a\":1}".as_slice())
        );
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
