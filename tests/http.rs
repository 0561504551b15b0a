//! The tests' HTTP client for the director's API: reqwest's blocking client
//! (the one `director-ctl` uses), one call per connection, plain HTTP.
//!
//! Call it from the thread that should own the connection: the client is
//! built per call, on the calling thread, so its runtime thread (and the
//! socket) starts in that thread's network namespace.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

/// Sends one request. `token` becomes `Authorization: Bearer <token>`;
/// `body` is sent as JSON, as given (malformed bodies included).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> io::Result<Response> {
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .map_err(io::Error::other)?;
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(io::Error::other)?;
    let sends_body =
        body.is_some() || matches!(method, reqwest::Method::POST | reqwest::Method::PUT);
    let mut req = client.request(method, format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if sends_body {
        req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.unwrap_or_default().to_string());
    }
    let answer = req.send().map_err(|e| io::Error::other(chain(&e)))?;
    let status = answer.status().as_u16();
    let headers = answer
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = answer.text().map_err(io::Error::other)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// An error with its causes ("error sending request ...: client error
/// (Connect): tcp connect error: Connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}
