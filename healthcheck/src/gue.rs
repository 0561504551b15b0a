//! The `gue` check: an ICMP echo request from the checker to the table's
//! VIP, encapsulated exactly as the director would send it (UDP to the
//! GUE port, GUE with GLB private data and a hop list), sent with an
//! ordinary UDP socket. Only a backend whose redirect module decapsulates
//! it and whose stack holds the VIP answers; the echo reply leaves the
//! backend straight to the checker (direct server return) and is read on a
//! raw ICMP socket, matched by identifier, sequence and a random token in
//! its payload.
//!
//! [`probe_bytes`] and [`parse_reply`] are pure; [`Receiver`] owns the raw
//! sockets.

use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::wire::{GuePacket, GueRepr, Hops, InnerProto};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::oneshot;

/// Bytes of the random token that starts the echo payload.
pub const TOKEN_LEN: usize = 16;
/// What follows the token, so that a capture says who sent it.
pub const MARK: &[u8] = b"glb-healthcheck";

/// One echo request: who asks whom, and how it is recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Echo {
    /// The inner source: the checker's address, where the reply goes.
    pub src: IpAddr,
    /// The inner destination: the VIP.
    pub vip: IpAddr,
    /// ICMP identifier.
    pub id: u16,
    /// ICMP sequence.
    pub seq: u16,
    /// The payload's token.
    pub token: [u8; TOKEN_LEN],
}

/// Why a probe could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The inner source and the VIP are of two families.
    #[error("the probe's source {src} and the VIP {vip} are of two address families")]
    Families {
        /// The source.
        src: IpAddr,
        /// The VIP.
        vip: IpAddr,
    },
    /// The hop list does not fit.
    #[error("building the GUE header with {hops} hops to {backend}: {source}")]
    Gue {
        /// The backend.
        backend: IpAddr,
        /// Hops asked for.
        hops: u8,
        /// Why.
        source: proto::wire::Error,
    },
}

/// The UDP payload of a probe to `backend`: GUE and GLB private data whose
/// hop list is `hops` times the backend itself (the shape and size of the
/// director's packets to a table with that many hops; an ICMP packet is
/// accepted by the module whatever its hops say), then the echo request.
pub fn probe_bytes(backend: IpAddr, hops: u8, echo: &Echo) -> Result<Vec<u8>, BuildError> {
    let inner = echo_request(echo)?;
    let n = usize::from(hops);
    let list = match backend {
        IpAddr::V4(a) => Hops::v4(&vec![a; n]),
        IpAddr::V6(a) => Hops::v6(&vec![a; n]),
    }
    .map_err(|source| BuildError::Gue {
        backend,
        hops,
        source,
    })?;
    let repr = GueRepr {
        inner: if echo.vip.is_ipv4() {
            InnerProto::Ipv4
        } else {
            InnerProto::Ipv6
        },
        next_hop: 0,
        hops: list,
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut GuePacket::new_unchecked(&mut out[..]));
    out.extend_from_slice(&inner);
    Ok(out)
}

/// The inner packet: IPv4 or IPv6 header and ICMP echo request, checksums
/// computed.
fn echo_request(e: &Echo) -> Result<Vec<u8>, BuildError> {
    let mut payload = e.token.to_vec();
    payload.extend_from_slice(MARK);
    match (e.src, e.vip) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let mut icmp = icmp_echo(8, e.id, e.seq, &payload);
            let c = checksum(&[&icmp]);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            let mut ip = vec![0u8; 20];
            ip[0] = 0x45;
            let total = (20 + icmp.len()) as u16;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            // Don't fragment, as the director's packets.
            ip[6] = 0x40;
            ip[8] = 64;
            ip[9] = 1;
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            let c = checksum(&[&ip]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            ip.extend_from_slice(&icmp);
            Ok(ip)
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let mut icmp = icmp_echo(128, e.id, e.seq, &payload);
            let len = icmp.len() as u32;
            let pseudo = [
                &src.octets()[..],
                &dst.octets()[..],
                &len.to_be_bytes()[..],
                &[0, 0, 0, 58][..],
            ]
            .concat();
            let c = checksum(&[&pseudo, &icmp]);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(icmp.len() as u16).to_be_bytes());
            ip[6] = 58;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
            ip.extend_from_slice(&icmp);
            Ok(ip)
        }
        (src, vip) => Err(BuildError::Families { src, vip }),
    }
}

fn icmp_echo(kind: u8, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    m
}

/// The Internet checksum over the concatenation of `parts`.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo reply as read on a raw socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Who sent it (the VIP, for ours).
    pub from: IpAddr,
    /// ICMP identifier.
    pub id: u16,
    /// ICMP sequence.
    pub seq: u16,
    /// The payload's first bytes.
    pub token: [u8; TOKEN_LEN],
}

/// Reads an echo reply: on an IPv4 raw socket the buffer starts with the
/// IP header; on an IPv6 one with the ICMPv6 message, the source coming
/// from the socket (`from`). Anything else is `None`.
pub fn parse_reply(buf: &[u8], from: IpAddr) -> Option<Reply> {
    let (icmp, from, reply_type) = match from {
        IpAddr::V4(_) => {
            let first = *buf.first()?;
            if first >> 4 != 4 {
                return None;
            }
            let ihl = usize::from(first & 0x0f) * 4;
            let src: [u8; 4] = buf.get(12..16)?.try_into().ok()?;
            (buf.get(ihl..)?, IpAddr::V4(Ipv4Addr::from(src)), 0)
        }
        IpAddr::V6(_) => (buf, from, 129),
    };
    if *icmp.first()? != reply_type || *icmp.get(1)? != 0 {
        return None;
    }
    let id = u16::from_be_bytes(icmp.get(4..6)?.try_into().ok()?);
    let seq = u16::from_be_bytes(icmp.get(6..8)?.try_into().ok()?);
    let token = icmp.get(8..8 + TOKEN_LEN)?.try_into().ok()?;
    Some(Reply {
        from,
        id,
        seq,
        token,
    })
}

type Pending = Arc<Mutex<HashMap<[u8; TOKEN_LEN], (Echo, oneshot::Sender<()>)>>>;

/// The raw ICMP sockets and the probes waiting for their replies.
#[derive(Debug)]
pub struct Receiver {
    pending: Pending,
    /// Set on drop: the reading threads end within their read timeout.
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Why a family's raw socket could not be opened (needs CAP_NET_RAW).
    errors: [Option<String>; 2],
}

impl Receiver {
    /// Opens a raw socket per family and starts a thread reading each. A
    /// family whose socket cannot be opened is remembered: its probes are
    /// reported as internal errors.
    pub fn start() -> Receiver {
        let pending: Pending = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut errors = [None, None];
        for (k, (domain, proto)) in [
            (Domain::IPV4, Protocol::ICMPV4),
            (Domain::IPV6, Protocol::ICMPV6),
        ]
        .into_iter()
        .enumerate()
        {
            let sock = Socket::new(domain, Type::RAW, Some(proto)).and_then(|s| {
                // A bounded wait lets the thread end with the process
                // without a wake-up of its own.
                s.set_read_timeout(Some(Duration::from_millis(500)))?;
                Ok(s)
            });
            match sock {
                Ok(s) => {
                    let (p, stop) = (pending.clone(), stop.clone());
                    std::thread::spawn(move || read_loop(s, k == 1, p, &stop));
                }
                Err(e) => {
                    errors[k] = Some(format!(
                        "opening a raw {} socket for the echo replies: {e}",
                        if k == 0 { "ICMP" } else { "ICMPv6" }
                    ));
                }
            }
        }
        Receiver {
            pending,
            stop,
            errors,
        }
    }

    /// Why replies from `family` cannot be read, if they cannot.
    pub fn unavailable(&self, v6: bool) -> Option<&str> {
        self.errors[usize::from(v6)].as_deref()
    }

    /// Waits for `echo`'s reply from now on: the receiver resolves when it
    /// comes. Dropping the receiver leaves an entry that [`Receiver::forget`]
    /// removes.
    pub fn expect(&self, echo: Echo) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(echo.token, (echo, tx));
        }
        rx
    }

    /// Stops waiting for the reply with `token`.
    pub fn forget(&self, token: &[u8; TOKEN_LEN]) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(token);
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn read_loop(sock: Socket, v6: bool, pending: Pending, stop: &std::sync::atomic::AtomicBool) {
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::error!(
                    "reading echo replies (ICMP{}): {e}",
                    if v6 { "v6" } else { "" }
                );
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        // SAFETY: recv_from initialised the first `n` bytes.
        let bytes: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
        let from = from
            .as_socket()
            .map(|a: SocketAddr| a.ip())
            .unwrap_or(if v6 {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            });
        let Some(r) = parse_reply(bytes, from) else {
            continue;
        };
        let Ok(mut p) = pending.lock() else { return };
        // A reply must match everything we sent: a stray or forged echo
        // reply with a right token but from elsewhere proves nothing.
        let matches = p
            .get(&r.token)
            .is_some_and(|(e, _)| e.id == r.id && e.seq == r.seq && e.vip == r.from);
        if matches && let Some((_, tx)) = p.remove(&r.token) {
            let _ = tx.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failure is the test failing

    use super::*;

    fn echo(src: &str, vip: &str) -> Echo {
        Echo {
            src: src.parse().unwrap(),
            vip: vip.parse().unwrap(),
            id: 0x1234,
            seq: 7,
            token: *b"0123456789abcdef",
        }
    }

    #[test]
    fn the_probe_is_gue_as_the_director_sends_it_with_an_echo_to_the_vip() {
        let e = echo("198.51.100.5", "203.0.113.10");
        let b = probe_bytes("198.51.100.11".parse().unwrap(), 2, &e).unwrap();
        // GUE: version 0, hlen 1 + 2 hops, inner IPv4; private type 0,
        // next hop 0, two hops: the backend itself.
        assert_eq!(&b[..8], &[0x03, 4, 0, 0, 0, 0, 0, 2]);
        assert_eq!(&b[8..16], &[198, 51, 100, 11, 198, 51, 100, 11]);
        let repr = GueRepr::parse(&GuePacket::new_unchecked(&b[..])).unwrap();
        assert_eq!(repr.buffer_len(), 16);
        let ip = &b[16..];
        assert_eq!(checksum(&[&ip[..20]]), 0, "IPv4 header checksum");
        assert_eq!(&ip[12..16], &[198, 51, 100, 5]);
        assert_eq!(&ip[16..20], &[203, 0, 113, 10]);
        let icmp = &ip[20..];
        assert_eq!(checksum(&[icmp]), 0, "ICMP checksum");
        assert_eq!(&icmp[..2], &[8, 0]);
        assert_eq!(&icmp[4..8], &[0x12, 0x34, 0, 7]);
        assert_eq!(&icmp[8..24], b"0123456789abcdef");
    }

    #[test]
    fn an_ipv6_probe_has_ipv6_hops_and_an_icmpv6_echo() {
        let e = echo("2001:db8:1::5", "2001:db8:10::10");
        let b = probe_bytes("2001:db8:1::11".parse().unwrap(), 1, &e).unwrap();
        let repr = GueRepr::parse(&GuePacket::new_unchecked(&b[..])).unwrap();
        assert_eq!(repr.inner, InnerProto::Ipv6);
        assert_eq!(repr.hops.get(0), Some("2001:db8:1::11".parse().unwrap()));
        let ip = &b[repr.buffer_len()..];
        assert_eq!((ip[0] >> 4, ip[6]), (6, 58));
        let icmp = &ip[40..];
        let pseudo = [
            &ip[8..40],
            &(icmp.len() as u32).to_be_bytes()[..],
            &[0, 0, 0, 58][..],
        ]
        .concat();
        assert_eq!(checksum(&[&pseudo, icmp]), 0, "ICMPv6 checksum");
        assert_eq!(icmp[0], 128);
    }

    #[test]
    fn mixed_families_are_refused_with_both_addresses() {
        let e = echo("198.51.100.5", "2001:db8:10::10");
        let err = probe_bytes("198.51.100.11".parse().unwrap(), 1, &e).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the probe's source 198.51.100.5 and the VIP 2001:db8:10::10 are of two address families"
        );
    }

    #[test]
    fn replies_are_read_from_both_socket_kinds() {
        let e = echo("198.51.100.5", "203.0.113.10");
        let req = echo_request(&e).unwrap();
        // The reply is the request with the addresses swapped and type 0.
        let mut rep = req.clone();
        rep[12..16].copy_from_slice(&[203, 0, 113, 10]);
        rep[16..20].copy_from_slice(&[198, 51, 100, 5]);
        rep[20] = 0;
        let r = parse_reply(&rep, "0.0.0.0".parse().unwrap()).unwrap();
        assert_eq!(r.from, e.vip);
        assert_eq!((r.id, r.seq, r.token), (e.id, e.seq, e.token));
        assert_eq!(
            parse_reply(&req, "0.0.0.0".parse().unwrap()),
            None,
            "a request is no reply"
        );

        let e6 = echo("2001:db8:1::5", "2001:db8:10::10");
        let mut icmp6 = echo_request(&e6).unwrap()[40..].to_vec();
        icmp6[0] = 129;
        let r = parse_reply(&icmp6, e6.vip).unwrap();
        assert_eq!((r.from, r.token), (e6.vip, e6.token));
        assert_eq!(parse_reply(&icmp6[..10], e6.vip), None, "truncated");
    }
}
