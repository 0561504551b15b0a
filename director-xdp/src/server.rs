//! The API's HTTP server: its own accept loop and HTTP/1.1 connections
//! (hyper), bounded against slow, idle and abusive clients
//! (docs/api.md#limits).
//!
//! - Connections are capped in total and per client address
//!   (`director.api_max_connections`, `api_max_connections_per_address`);
//!   the total is further bounded by the file descriptors the daemon may
//!   open, less a reserve for its own work (config reloads, netlink, BPF),
//!   so that no number of clients can make a reload fail with EMFILE. A
//!   connection past a cap is accepted, answered 503 at once and closed:
//!   nothing waits for a slot.
//! - A request head must arrive whole within `api_header_timeout_ms` of
//!   the connection's start or of the previous response (this also bounds
//!   an idle keep-alive connection); a body within `api_body_timeout_ms` of
//!   its head; a response write may stall no longer than that either.
//! - Heads are limited to [`MAX_HEAD`] bytes and 100 header fields (431),
//!   request targets to [`MAX_URI`] bytes (414), bodies to
//!   `api_max_body_bytes` (413).
//! - Every refusal is a JSON error body, those that hyper makes itself
//!   (431, 400 on a request line or header it cannot parse) included:
//!   [`Guarded`] replaces them on their way out.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse as _;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use proto::config::ApiLimits;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt as _;
use tracing::{debug, info, warn};

use crate::api::{ApiError, ReplyBody};

/// The largest request head (request line and headers), in bytes, past
/// which hyper answers 431.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Header fields per request: hyper's default, past which it answers 431.
pub(crate) const MAX_HEADERS: usize = 100;
/// The longest request target (path and query), in bytes (414).
pub(crate) const MAX_URI: usize = 8 * 1024;
/// File descriptors kept for the daemon's own work (a reload reads the
/// config and the token, resolves next hops over netlink, ...), on top of
/// those open when the API starts.
const SPARE_FDS: u64 = 128;
/// How long a connection closed with input still arriving (a refused
/// body, a head too large) keeps reading and discarding it, so that the
/// client reads the answer instead of a reset.
const LINGER: Duration = Duration::from_secs(2);
/// How much it reads at most meanwhile.
const LINGER_BYTES: usize = 1 << 20;
/// How often at most refused connections are logged.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Raises the soft limit on open files to the hard limit, so that the
/// API's connection cap can be as high as the system allows; returns the
/// limit now in force.
pub(crate) fn raise_fd_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        warn!(
            "reading the file descriptor limit: {}",
            io::Error::last_os_error()
        );
        return 1024;
    }
    // The hard limit may read "unlimited", which setrlimit refuses past
    // the kernel's own ceiling.
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let target = r.rlim_max.min(nr_open);
    if r.rlim_cur >= target {
        return r.rlim_cur;
    }
    let before = r.rlim_cur;
    r.rlim_cur = target;
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
        warn!(
            "raising the file descriptor limit from {before} to {target}: {}",
            io::Error::last_os_error()
        );
        return before;
    }
    debug!("file descriptor limit raised from {before} to {target}");
    target
}

/// Connections the kernel completes and queues for the accept loop; a
/// flood is accepted and refused quickly, but meanwhile a short queue
/// would drop the operator's connection attempts (retried a second later).
const BACKLOG: u32 = 1024;

/// Binds the API's listening socket (address reuse, as `TcpListener::bind`,
/// with a longer accept queue: [`BACKLOG`]).
pub(crate) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// How many connections the API may hold open with a limit of `fd_limit`
/// open files: what is left once the files open now and [`SPARE_FDS`] are
/// counted.
pub(crate) fn fd_budget(fd_limit: u64) -> usize {
    let open = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(64);
    usize::try_from(fd_limit.saturating_sub(open + SPARE_FDS).max(1)).unwrap_or(usize::MAX)
}

/// Open connections, in total and per client address.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per: HashMap<IpAddr, usize>,
}

/// The connection table the accept loop takes slots from.
#[derive(Clone, Debug, Default)]
struct Slots(Arc<Mutex<Counts>>);

/// What the accept loop counts, for the daemon's metrics: connections open
/// now, and those refused at a cap since the start.
#[derive(Clone, Debug, Default)]
pub(crate) struct ApiCounts {
    slots: Slots,
    refused: Arc<Mutex<[u64; 2]>>,
}

impl ApiCounts {
    /// Connections open now.
    pub(crate) fn open(&self) -> u64 {
        let c = self
            .slots
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.total as u64
    }

    /// Connections refused since the start: at the total cap, at the cap
    /// per client address.
    pub(crate) fn refused(&self) -> (u64, u64) {
        let r = *self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (r[0], r[1])
    }

    fn note_refused(&self, why: Refusal) {
        let mut r = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match why {
            Refusal::Total(_) => r[0] += 1,
            Refusal::Address(_) => r[1] += 1,
        }
    }
}

/// Why a connection was refused: the cap reached and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    Total(usize),
    Address(usize),
}

/// One open connection's place in [`Slots`], given back on drop.
#[derive(Debug)]
struct Slot {
    slots: Slots,
    ip: IpAddr,
}

impl Slots {
    /// A slot for a connection from `ip`, unless `total` connections are
    /// open or `per` from `ip`.
    fn take(&self, ip: IpAddr, total: usize, per: usize) -> Result<Slot, Refusal> {
        let mut c = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if c.total >= total {
            return Err(Refusal::Total(total));
        }
        let n = c.per.entry(ip).or_insert(0);
        if *n >= per {
            return Err(Refusal::Address(per));
        }
        *n += 1;
        c.total += 1;
        Ok(Slot {
            slots: self.clone(),
            ip,
        })
    }

    #[cfg(test)]
    fn open(&self) -> (usize, usize) {
        let c = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (c.total, c.per.len())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self
            .slots
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per.remove(&self.ip);
            }
        }
    }
}

/// Counts refused connections and logs them now and then, not one line
/// each: a flood must not flood the log.
#[derive(Debug, Default)]
struct RefusalLog {
    count: u64,
    throttle: Throttle,
}

impl RefusalLog {
    fn note(&mut self, peer: SocketAddr, why: Refusal) {
        self.count += 1;
        let since = self.throttle.0.map(|t| t.elapsed());
        if self.throttle.due() {
            let window = since.map_or(String::new(), |d| format!(" in the last {} s", d.as_secs()));
            warn!(
                "API: refused {} connection(s){window}, the last from {peer}: {}",
                self.count,
                refusal_message(why)
            );
            self.count = 0;
        }
    }
}

/// Says when something logged at most every [`REFUSAL_LOG_EVERY`] is due.
#[derive(Debug, Default)]
struct Throttle(Option<Instant>);

impl Throttle {
    fn due(&mut self) -> bool {
        let due = self.0.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY);
        if due {
            self.0 = Some(Instant::now());
        }
        due
    }
}

fn refusal_message(why: Refusal) -> String {
    match why {
        Refusal::Total(n) => format!(
            "the API has {n} connections open, its limit (director.api_max_connections, and the file descriptors the daemon may open); try again shortly"
        ),
        Refusal::Address(n) => format!(
            "this client address has {n} connections open, its limit (director.api_max_connections_per_address); try again shortly"
        ),
    }
}

/// Serves the API on `listener` until the runtime ends. `limits` are read
/// at each new connection (a SIGHUP changes them for the next ones);
/// `budget` bounds the total cap whatever they say.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: watch::Receiver<ApiLimits>,
    budget: usize,
    counts: ApiCounts,
) {
    let slots = counts.slots.clone();
    let mut refused = RefusalLog::default();
    let mut accept_errors = Throttle::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors or memory (something else used them
                // up): the listener stays readable, so pause instead of
                // spinning. Anything else concerns one connection only.
                let scarce = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                if scarce {
                    if accept_errors.due() {
                        warn!("API: accepting a connection: {e}; pausing accepts for 100 ms");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                } else {
                    debug!("API: accepting a connection: {e}");
                }
                continue;
            }
        };
        let l = *limits.borrow();
        let total = budget.min(l.max_connections as usize);
        match slots.take(
            peer.ip().to_canonical(),
            total,
            l.max_connections_per_address as usize,
        ) {
            Ok(slot) => {
                tokio::spawn(connection(stream, peer, slot, l, router.clone()));
            }
            Err(why) => {
                counts.note_refused(why);
                refused.note(peer, why);
                refuse(&stream, peer, why);
            }
        }
    }
}

/// Answers a connection past a cap with a 503 and closes it, without
/// waiting for anything: what the client sent so far is read (so that the
/// close is not a reset that could destroy the answer), the answer is
/// written into the socket's buffer and the write side shut.
fn refuse(stream: &TcpStream, peer: SocketAddr, why: Refusal) {
    let mut scratch = [0u8; 4096];
    for _ in 0..16 {
        match stream.try_read(&mut scratch) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let field = match why {
        Refusal::Total(_) => None,
        Refusal::Address(_) => Some(("address", peer.ip().to_canonical().to_string().into())),
    };
    let text = raw_error(
        StatusCode::SERVICE_UNAVAILABLE,
        &refusal_message(why),
        field,
        &["retry-after: 1"],
    );
    let _ = stream.try_write(&text);
    // SAFETY: shutdown(2) on a descriptor this stream owns.
    unsafe {
        libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR);
    }
}

/// A whole HTTP/1.1 response carrying a JSON error in the API's shape
/// ([`ApiError`]), for the answers written below the router.
fn raw_error(
    status: StatusCode,
    message: &str,
    field: Option<(&str, Value)>,
    extra: &[&str],
) -> Vec<u8> {
    let mut e = ApiError::new(status, message);
    if let Some((f, v)) = field {
        e = e.at(f, v);
    }
    let body = match e.reply().body {
        ReplyBody::Json(v) => format!("{v:#}\n"),
        ReplyBody::Text(t) => t,
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    for h in extra {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.push_str(&body);
    head.into_bytes()
}

/// Serves one connection.
async fn connection(stream: TcpStream, peer: SocketAddr, slot: Slot, l: ApiLimits, router: Router) {
    let _ = stream.set_nodelay(true);
    let linger = Arc::new(AtomicBool::new(false));
    let body_timeout = Duration::from_millis(l.body_timeout_ms.into());
    let io = Guarded {
        stream: Some(stream),
        slot: Some(slot),
        stall: body_timeout,
        write_deadline: None,
        rewrite: None,
        linger: Arc::clone(&linger),
    };
    let service = service_fn(move |req| {
        let (router, linger) = (router.clone(), Arc::clone(&linger));
        async move { Ok::<_, Infallible>(handle(req, router, l, &linger).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(l.header_timeout_ms.into()))
        .max_header_size(MAX_HEAD)
        .writev(false)
        .keep_alive(true);
    if let Err(e) = builder.serve_connection(TokioIo::new(io), service).await {
        debug!("API connection from {peer}: {e}");
    }
}

/// Checks a request against the limits, reads its body, and hands it to
/// the router; or refuses it.
async fn handle(
    req: Request<Incoming>,
    router: Router,
    l: ApiLimits,
    linger: &AtomicBool,
) -> Response<Body> {
    match admit(req, l).await {
        Ok(req) => match router.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        },
        Err(e) => {
            // The body may be unread: close, and read what still comes
            // so that the client gets this answer.
            linger.store(true, Ordering::Relaxed);
            let mut r = e.reply().into_response();
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}

async fn admit(req: Request<Incoming>, l: ApiLimits) -> Result<Request<Body>, ApiError> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("the request target is {target} bytes long, more than {MAX_URI}"),
        ));
    }
    let max = l.max_body_bytes as usize;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {max} bytes (director.api_max_body_bytes)"),
        )
    };
    // Content-Length says so before any of it is read.
    if req.body().size_hint().lower() > max as u64 {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let timeout = Duration::from_millis(l.body_timeout_ms.into());
    let bytes = match tokio::time::timeout(timeout, Limited::new(body, max).collect()).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} ms (director.api_body_timeout_ms)",
                    l.body_timeout_ms
                ),
            ));
        }
        Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(too_large()),
        Ok(Err(e)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {e}"),
            ));
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The connection's socket as hyper sees it, with what hyper does not do:
///
/// - a response write that makes no progress for `stall` fails (a client
///   that never reads its answer);
/// - hyper's own answers to a head it refuses (431, 400; bodiless) are
///   replaced by JSON ones;
/// - on drop, a connection with input still arriving, or whose request was
///   refused, lingers: its write side is shut and what the client still
///   sends is read and discarded for a while ([`LINGER`]), so that the
///   close does not reset the connection and destroy the answer. The slot
///   goes with it.
struct Guarded {
    stream: Option<TcpStream>,
    slot: Option<Slot>,
    stall: Duration,
    write_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    rewrite: Option<Rewrite>,
    linger: Arc<AtomicBool>,
}

/// A replacement being written for hyper's answer of `consumes` bytes.
struct Rewrite {
    text: Vec<u8>,
    written: usize,
    consumes: usize,
}

impl Guarded {
    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// After a write that returned Pending: fails once it has been
    /// pending for `stall`.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let stall = self.stall;
        let deadline = self
            .write_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client read none of the response for {} ms",
                    stall.as_millis()
                ),
            )));
        }
        Poll::Pending
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.rewrite.is_none()
            && let Some(text) = automatic_error(buf)
        {
            this.linger.store(true, Ordering::Relaxed);
            this.rewrite = Some(Rewrite {
                text,
                written: 0,
                consumes: buf.len(),
            });
        }
        if let Some(mut r) = this.rewrite.take() {
            while r.written < r.text.len() {
                let stream = this.stream()?;
                match Pin::new(stream).poll_write(cx, &r.text[r.written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        r.written += n;
                        this.write_deadline = None;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        this.rewrite = Some(r);
                        return this.stalled(cx);
                    }
                }
            }
            return Poll::Ready(Ok(r.consumes));
        }
        match Pin::new(this.stream()?).poll_write(cx, buf) {
            Poll::Pending => this.stalled(cx),
            ready => {
                this.write_deadline = None;
                ready
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_shutdown(cx)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let (Some(stream), Some(slot)) = (self.stream.take(), self.slot.take()) else {
            return;
        };
        let mut scratch = [0u8; 4096];
        let unread = matches!(stream.try_read(&mut scratch), Ok(n) if n > 0);
        if !(unread || self.linger.load(Ordering::Relaxed)) {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(linger(stream, slot));
        }
    }
}

/// Shuts the write side (the answer is complete), then reads and discards
/// until the client closes, [`LINGER`] passes or [`LINGER_BYTES`] came;
/// the slot is held meanwhile.
async fn linger(mut stream: TcpStream, slot: Slot) {
    let _ = tokio::time::timeout(LINGER, stream.shutdown()).await;
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0;
    while total < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => break,
        }
    }
    drop(slot);
}

/// If `buf` is one of hyper's own answers to a head it could not take
/// (a whole bodiless 400, 414 or 431 response, with no content type: the
/// router's answers all have one), the JSON answer to write instead.
fn automatic_error(buf: &[u8]) -> Option<Vec<u8>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if end != buf.len() {
        return None;
    }
    let head = std::str::from_utf8(buf).ok()?.to_ascii_lowercase();
    let rest = head
        .strip_prefix("http/1.1 ")
        .or_else(|| head.strip_prefix("http/1.0 "))?;
    let code: u16 = rest.get(..3)?.parse().ok()?;
    if head.contains("\r\ncontent-type:") || !head.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let (status, message, field) = match code {
        431 => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request head is too large: at most {MAX_HEAD} bytes (request line and headers) and {MAX_HEADERS} header fields"
            ),
            Some(("headers", Value::Null)),
        ),
        414 => (
            StatusCode::URI_TOO_LONG,
            format!("the request target is longer than {MAX_URI} bytes"),
            None,
        ),
        400 => (
            StatusCode::BAD_REQUEST,
            "malformed request: the request line or a header could not be parsed as HTTP/1.1 (the request target must be ASCII; percent-encode anything else)".to_string(),
            None,
        ),
        _ => return None,
    };
    debug!("replacing hyper's {code} answer with a JSON one");
    Some(raw_error(status, &message, field, &[]))
}

/// What the daemon logs when the API starts.
pub(crate) fn describe(l: &ApiLimits, budget: usize) -> String {
    let total = budget.min(l.max_connections as usize);
    let mut s = format!(
        "at most {total} connections ({} per client address), heads within {} ms, bodies of at most {} bytes within {} ms",
        l.max_connections_per_address, l.header_timeout_ms, l.max_body_bytes, l.body_timeout_ms
    );
    if total < l.max_connections as usize {
        s.push_str(&format!(
            "; api_max_connections {} lowered to {total} by the file descriptor limit",
            l.max_connections
        ));
    }
    s
}

/// Logs a change of the limits (a SIGHUP).
pub(crate) fn log_change(old: &ApiLimits, new: &ApiLimits, budget: usize) {
    if old != new {
        info!("API limits now: {}", describe(new, budget));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cap_the_total_and_each_address() {
        let slots = Slots::default();
        let a = IpAddr::from([192, 0, 2, 1]);
        let b = IpAddr::from([192, 0, 2, 2]);
        let a1 = slots.take(a, 3, 2);
        let a2 = slots.take(a, 3, 2);
        assert!(a1.is_ok() && a2.is_ok());
        assert_eq!(slots.take(a, 3, 2).err(), Some(Refusal::Address(2)));
        let b1 = slots.take(b, 3, 2);
        assert!(b1.is_ok());
        assert_eq!(slots.take(b, 3, 2).err(), Some(Refusal::Total(3)));
        drop(a1);
        assert!(slots.take(a, 3, 2).is_ok(), "a slot given back is free");
        drop((a2, b1));
        assert_eq!(slots.open(), (0, 0), "nothing left behind");
    }

    #[test]
    fn hypers_bodiless_refusals_become_json_and_nothing_else_does() {
        let auto = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
        let text = automatic_error(auto).map(String::from_utf8);
        let Some(Ok(text)) = text else {
            panic!("not replaced: {text:?}");
        };
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        assert!(text.contains("content-type: application/json"), "{text}");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains("too large")),
            "{v}"
        );
        let len = format!("content-length: {}\r\n", body.len());
        assert!(text.contains(&len), "{text}");
        // The router's own answers (a content type, a body) pass as they are.
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert!(automatic_error(ours).is_none());
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}";
        assert!(automatic_error(with_body).is_none());
        assert!(automatic_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(automatic_error(b"{\"error\": \"HTTP/1.1 400 \"}").is_none());
    }
}

#[cfg(test)]
mod live {
    use super::*;
    use std::io::{Read as _, Write as _};

    /// Serves a one-route router with `limits` on a loopback port.
    fn start(limits: ApiLimits) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                tx.send(l.local_addr().expect("addr")).expect("send");
                let router = Router::new()
                    .route("/x", axum::routing::get(|| async { "ok" }))
                    .route("/big", axum::routing::get(|| async { vec![b'x'; BIG] }));
                let (_keep, limits) = watch::channel(limits);
                tokio::time::timeout(
                    Duration::from_secs(20),
                    serve(l, router, limits, 1000, ApiCounts::default()),
                )
                .await
                .ok();
            });
        });
        (rx.recv().expect("address"), h)
    }

    fn exchange(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let _ = s.write_all(req);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The body of `/big`: more than the socket buffers hold.
    const BIG: usize = 64 << 20;

    /// A connection whose receive buffer is fixed small before the
    /// handshake: the kernel does not grow its window while nothing is read,
    /// so a server writing to it stalls for good (with the default, the
    /// window may keep opening, a little at a time, for seconds).
    fn small_window_connect(addr: SocketAddr) -> std::net::TcpStream {
        use std::os::fd::FromRawFd as _;
        let SocketAddr::V4(v4) = addr else {
            panic!("an IPv4 test address")
        };
        // SAFETY: plain socket calls on a descriptor this function owns
        // until it hands it to TcpStream.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let size: libc::c_int = 16 * 1024;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            let r = libc::connect(
                fd,
                (&raw const sin).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
            std::net::TcpStream::from_raw_fd(fd)
        }
    }

    #[test]
    fn a_client_that_reads_nothing_is_cut() {
        let (addr, _h) = start(ApiLimits {
            body_timeout_ms: 300,
            ..ApiLimits::DEFAULT
        });
        let mut s = small_window_connect(addr);
        s.write_all(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n")
            .expect("request");
        // Reads nothing for a while: the server's write stalls, and is cut.
        std::thread::sleep(Duration::from_secs(3));
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut got = 0;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("still open after {got} bytes: {e}"),
            }
        }
        assert!(got < BIG, "the whole response came: {got} bytes");
    }

    /// Status and JSON body of a refusal.
    fn refusal(out: &str) -> (u16, Value) {
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains("content-type: application/json"), "{out}");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    #[test]
    fn limits_are_refused_in_json() {
        let limits = ApiLimits {
            max_body_bytes: 1024,
            max_connections_per_address: 2,
            ..ApiLimits::DEFAULT
        };
        let (addr, _h) = start(limits);
        // A head just over MAX_HEAD (hyper's limit is exact, not its
        // buffer's capacity).
        let big = format!(
            "GET /x HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "b".repeat(MAX_HEAD)
        );
        let (status, v) = refusal(&exchange(addr, big.as_bytes()));
        assert_eq!((status, &v["field"]), (431, &Value::from("headers")), "{v}");
        let body = format!(
            "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n{}",
            "x".repeat(2000)
        );
        assert_eq!(refusal(&exchange(addr, body.as_bytes())).0, 413);
        let long = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(MAX_URI));
        assert_eq!(refusal(&exchange(addr, long.as_bytes())).0, 414);
        assert_eq!(
            refusal(&exchange(addr, b"GET /\xff HTTP/1.1\r\n\r\n")).0,
            400
        );

        // Two connections held from 127.0.0.1: the third is refused at once.
        // (The refused ones above linger until their client closes, which
        // may take a moment: until both are held, not answered, retry.)
        let mut held = Vec::new();
        for _ in 0..50 {
            drop(std::mem::take(&mut held));
            std::thread::sleep(Duration::from_millis(100));
            held = (0..2)
                .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
                .collect();
            std::thread::sleep(Duration::from_millis(100));
            let answered = held.iter().any(|s| {
                s.set_nonblocking(true).ok();
                !matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            });
            if !answered {
                break;
            }
        }
        let (status, v) = refusal(&exchange(addr, b"GET /x HTTP/1.1\r\n\r\n"));
        assert_eq!((status, &v["field"]), (503, &Value::from("address")), "{v}");
        drop(held);
        std::thread::sleep(Duration::from_millis(200));
        let ok = exchange(
            addr,
            b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        );
        assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
    }
}
