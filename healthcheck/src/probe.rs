//! One probe of one check: the I/O. A probe ends in a pass, a failure (the
//! backend did not answer as required) or an internal error (the checker
//! could not probe: no socket, no usable source address), which is never
//! taken as a verdict.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use http_body_util::Empty;
use hyper::body::Bytes;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use crate::checks::{CheckSpec, Kind};
use crate::engine::Outcome;
use crate::gue::{self, Echo};
use crate::schedule::Spread;
use crate::settings::Settings;

/// Why a probe did not pass.
enum NotPass {
    Fail(String),
    Internal(String),
}

type Probed = Result<(), NotPass>;

fn fail(s: impl Into<String>) -> NotPass {
    NotPass::Fail(s.into())
}

fn internal(s: impl Into<String>) -> NotPass {
    NotPass::Internal(s.into())
}

/// An I/O error as a reason: short, without the OS error number.
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        _ => {
            let s = e.to_string();
            s.split(" (os error").next().unwrap_or(&s).to_lowercase()
        }
    }
}

/// What probes share: source addresses, the raw sockets of `gue` checks,
/// the ICMP identifier and sequence.
#[derive(Debug)]
pub struct Prober {
    source_v4: Option<IpAddr>,
    source_v6: Option<IpAddr>,
    receiver: Option<gue::Receiver>,
    id: u16,
    seq: AtomicU16,
    spread: std::sync::Mutex<Spread>,
}

impl Prober {
    /// A prober for `settings`; `gue` opens the raw sockets for the echo
    /// replies.
    pub fn new(settings: &Settings, gue: bool) -> Arc<Prober> {
        let mut spread = Spread::from_entropy();
        Arc::new(Prober {
            source_v4: settings.source_v4.map(IpAddr::V4),
            source_v6: settings.source_v6.map(IpAddr::V6),
            receiver: gue.then(gue::Receiver::start),
            id: spread.next_u64() as u16,
            seq: AtomicU16::new(0),
            spread: std::sync::Mutex::new(spread),
        })
    }

    fn source(&self, to: IpAddr) -> Option<IpAddr> {
        if to.is_ipv4() {
            self.source_v4
        } else {
            self.source_v6
        }
    }

    /// Probes `spec` once, within its timeout; returns the outcome and how
    /// long it took.
    pub async fn probe(&self, spec: &CheckSpec) -> (Outcome, Duration) {
        let start = Instant::now();
        let r = tokio::time::timeout(spec.timing.timeout, self.probe_inner(spec)).await;
        let took = start.elapsed();
        let outcome = match r {
            Ok(Ok(())) => Outcome::Pass,
            Ok(Err(NotPass::Fail(why))) => Outcome::Fail(why),
            Ok(Err(NotPass::Internal(why))) => Outcome::Error(why),
            Err(_) => Outcome::Fail(match spec.kind {
                Kind::Gue => format!(
                    "no echo reply from {} within {} ms",
                    spec.vip.unwrap_or(spec.addr),
                    spec.timing.timeout.as_millis()
                ),
                _ => format!("no answer within {} ms", spec.timing.timeout.as_millis()),
            }),
        };
        (outcome, took)
    }

    async fn probe_inner(&self, spec: &CheckSpec) -> Probed {
        match spec.kind {
            Kind::Tcp => self.connect(spec).await.map(drop),
            Kind::Http => {
                let s = self.connect(spec).await?;
                http_get(s, spec).await
            }
            Kind::Https => {
                let s = self.connect(spec).await?;
                let tls = crate::tls::connect(s, spec).await?;
                http_get(tls, spec).await
            }
            Kind::Gue => self.gue(spec).await,
        }
    }

    /// A TCP connection to the check's port, with the PROXY header sent if
    /// the check asks for one.
    async fn connect(&self, spec: &CheckSpec) -> Result<TcpStream, NotPass> {
        let dst = SocketAddr::new(spec.addr, spec.port);
        let sock = if dst.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| internal(format!("opening a TCP socket: {e}")))?;
        if let Some(src) = self.source(spec.addr) {
            sock.bind(SocketAddr::new(src, 0))
                .map_err(|e| internal(format!("binding to the source address {src}: {e}")))?;
        }
        let mut s = sock.connect(dst).await.map_err(|e| fail(describe(&e)))?;
        if let Some(v) = spec.proxy_protocol {
            let local = s
                .local_addr()
                .map_err(|e| internal(format!("reading the probe's own address: {e}")))?;
            let h = crate::proxy::header(v, local, dst);
            s.write_all(&h)
                .await
                .map_err(|e| fail(format!("sending the PROXY header: {}", describe(&e))))?;
        }
        Ok(s)
    }

    async fn gue(&self, spec: &CheckSpec) -> Probed {
        let vip = spec.vip.unwrap_or(spec.addr);
        let receiver = self
            .receiver
            .as_ref()
            .ok_or_else(|| internal("no raw sockets for gue checks"))?;
        if let Some(why) = receiver.unavailable(vip.is_ipv6()) {
            return Err(internal(why));
        }
        let dst = SocketAddr::new(spec.addr, spec.port);
        let bind = match self.source(spec.addr) {
            Some(a) => SocketAddr::new(a, 0),
            None if dst.is_ipv4() => "0.0.0.0:0".parse().map_err(|_| internal("0.0.0.0:0"))?,
            None => "[::]:0".parse().map_err(|_| internal("[::]:0"))?,
        };
        let udp = UdpSocket::bind(bind)
            .await
            .map_err(|e| internal(format!("binding a UDP socket to {bind}: {e}")))?;
        udp.connect(dst).await.map_err(|e| fail(describe(&e)))?;
        // The inner source is where the backend sends its reply: the
        // configured source of the VIP's family, else the address the
        // kernel chose toward the backend.
        let src = match self.source(vip) {
            Some(a) => a,
            None if vip.is_ipv4() == dst.is_ipv4() => udp
                .local_addr()
                .map_err(|e| internal(format!("reading the probe's own address: {e}")))?
                .ip(),
            None => {
                return Err(internal(format!(
                    "the VIP {vip} is not of the backend's family: set healthcheck.source_{}",
                    if vip.is_ipv4() { "v4" } else { "v6" }
                )));
            }
        };
        let mut token = [0u8; gue::TOKEN_LEN];
        if let Ok(mut s) = self.spread.lock() {
            token[..8].copy_from_slice(&s.next_u64().to_le_bytes());
            token[8..].copy_from_slice(&s.next_u64().to_le_bytes());
        }
        let echo = Echo {
            src,
            vip,
            id: self.id,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            token,
        };
        let bytes = gue::probe_bytes(spec.addr, spec.hops.max(1), &echo)
            .map_err(|e| internal(e.to_string()))?;
        let reply = receiver.expect(echo);
        let forget = Forget(receiver, token);
        udp.send(&bytes)
            .await
            .map_err(|e| fail(format!("sending to {dst}: {}", describe(&e))))?;
        // A port unreachable from the backend (nothing decapsulates GUE
        // there) comes back on the connected socket as an error: a failure
        // known at once rather than at the timeout.
        let mut buf = [0u8; 64];
        let r = tokio::select! {
            r = reply => r.map_err(|_| internal("the reply reader stopped")),
            e = udp.recv(&mut buf) => Err(match e {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => fail(format!(
                    "{dst} answered port unreachable: no redirect module there"
                )),
                Err(e) => fail(describe(&e)),
                Ok(_) => fail(format!("{dst} answered with UDP, not an echo reply from {vip}")),
            }),
        };
        drop(forget);
        r
    }
}

/// Removes a pending echo on every exit path (timeouts drop the future).
struct Forget<'a>(&'a gue::Receiver, [u8; gue::TOKEN_LEN]);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget(&self.1);
    }
}

/// GET of the check's path over `io`; passes when the status is one the
/// check accepts.
async fn http_get<T>(io: T, spec: &CheckSpec) -> Probed
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(io);
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
        .await
        .map_err(|e| fail(format!("HTTP handshake: {e}")))?;
    let driver = tokio::spawn(conn);
    let host = match &spec.host {
        Some(h) => h.clone(),
        None => SocketAddr::new(spec.addr, spec.port).to_string(),
    };
    let req = hyper::Request::get(spec.path.as_str())
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "glb-healthcheck")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| internal(format!("building the request for {}: {e}", spec.path)))?;
    let answer = sender.send_request(req).await;
    driver.abort();
    let status = answer
        .map_err(|e| fail(format!("HTTP request: {e}")))?
        .status()
        .as_u16();
    if spec
        .statuses
        .iter()
        .any(|(lo, hi)| (*lo..=*hi).contains(&status))
    {
        Ok(())
    } else {
        Err(fail(format!("status {status}")))
    }
}

impl From<crate::tls::TlsError> for NotPass {
    fn from(e: crate::tls::TlsError) -> NotPass {
        match e {
            crate::tls::TlsError::Setup(s) => NotPass::Internal(s),
            crate::tls::TlsError::Handshake(s) => NotPass::Fail(s),
        }
    }
}
