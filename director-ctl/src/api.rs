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
        "table \"{}\": {} rows, hash {}; binds: {}",
        t["name"].as_str().unwrap_or("?"),
        t["rows"],
        t["hash"].as_str().unwrap_or("-"),
        binds.join(", ")
    );
    println!(
        "  {:<40} {:<9} {:<7} {:>8} {:>7} {:>9}  reason",
        "backend", "state", "healthy", "primary", "share", "secondary"
    );
    for b in t["backends"].as_array().into_iter().flatten() {
        let p = b["rows_primary"].as_u64().unwrap_or(0);
        println!(
            "  {:<40} {:<9} {:<7} {:>8} {:>6.2}% {:>9}  {}",
            b["ip"].as_str().unwrap_or("?"),
            b["state"].as_str().unwrap_or("-"),
            if b["healthy"].as_bool() == Some(true) {
                "yes"
            } else {
                "no"
            },
            p,
            100.0 * p as f64 / TABLE_ROWS as f64,
            b["rows_secondary"].as_u64().unwrap_or(0),
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
                "{}, {}",
                b["state"].as_str().unwrap_or("?"),
                if b["healthy"].as_bool() == Some(true) {
                    "healthy"
                } else {
                    "unhealthy"
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
    let g = |k: &str| v[k].as_u64().unwrap_or(0);
    let pct = |n: u64| 100.0 * n as f64 / TABLE_ROWS as f64;
    println!(
        "table \"{table}\": {} rows would change ({:.2}%); primary {} ({:.2}%), secondary {}; old primary neither primary nor secondary: {}",
        g("rows_changed"),
        pct(g("rows_changed")),
        g("rows_primary_changed"),
        pct(g("rows_primary_changed")),
        g("rows_secondary_changed"),
        g("rows_old_primary_unreachable"),
    );
    println!(
        "  {:<40} {:>16} {:>18}",
        "backend", "rows as primary", "rows as secondary"
    );
    for b in v["backends"].as_array().into_iter().flatten() {
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
}
