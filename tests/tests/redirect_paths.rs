//! Two decision paths of the redirect module (SPEC.md section 3,
//! docs/backend.md) that need real kernel state, run on real bytes with
//! `BPF_PROG_TEST_RUN` from a thread inside a lab namespace (as in
//! `redirect_test_run.rs`):
//!
//! - `--netns`: an established connection living in another ("container")
//!   namespace, found through the nsid the loader assigns, and not found
//!   without it;
//! - a valid SYN cookie: a real cookie obtained from a listener with
//!   `net.ipv4.tcp_syncookies=2`, and the handshake-completing ACK built
//!   from it; a wrong cookie is not accepted.
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use director_xdp::redirect::{self, Redirect, RedirectConfig};
use lab_tests::{Netns, veth};
use proto::maps::RedirectStat;

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x03, 0x11];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x03, 0x12];
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x03, 0x01];
const DIRECTOR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const ME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const OTHER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// A backend host (`eth0` = `HOST_MAC`, address `ME`, forwarding on,
/// `OTHER` a permanent neighbour at `PEER_MAC`) and the peer namespace
/// holding the other end of its veth.
struct Lab {
    host: Netns,
    _peer: Netns,
}

fn lab() -> Lab {
    let host = Netns::new("rpb").unwrap();
    let peer = Netns::new("rpp").unwrap();
    veth(
        &host,
        "eth0",
        "02:00:00:00:03:11",
        &peer,
        "eth0",
        "02:00:00:00:03:12",
    )
    .unwrap();
    host.ip(&["addr", "add", "198.51.100.11/24", "dev", "eth0"])
        .unwrap();
    host.ip(&[
        "neigh",
        "add",
        "198.51.100.12",
        "lladdr",
        "02:00:00:00:03:12",
        "dev",
        "eth0",
        "nud",
        "permanent",
    ])
    .unwrap();
    host.exec("sysctl", &["-qw", "net.ipv4.conf.eth0.forwarding=1"])
        .unwrap();
    Lab { host, _peer: peer }
}

fn config(netns_id: Option<u32>) -> RedirectConfig {
    RedirectConfig {
        selves: vec![IpAddr::V4(ME)],
        allow: vec!["198.51.100.0/28".parse().unwrap()],
        netns_id,
    }
}

fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: a valid NUL-terminated name.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// Runs the program once on `frame` as received on `eth0`.
fn run(program: &Xdp, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex("eth0").to_ne_bytes());
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

/// A module loaded and configured in the calling thread's namespace.
fn module(config: &RedirectConfig) -> Redirect {
    let mut m = Redirect::load()
        .unwrap_or_else(|e| panic!("loading the redirect module (needs root): {e:?}"));
    m.configure(config).unwrap();
    m
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&(20 + payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0, ttl, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// A TCP header without options (and no payload), its checksum computed
/// for `src` -> `dst`.
#[allow(clippy::too_many_arguments)]
fn tcp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&ack.to_be_bytes());
    h.extend_from_slice(&[0x50, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    let mut pseudo = src.octets().to_vec();
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(h.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&h);
    let c = checksum(&pseudo);
    h[16..18].copy_from_slice(&c.to_be_bytes());
    h
}

/// An inner client -> VIP TCP packet.
fn inner_tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    ipv4(
        CLIENT,
        VIP,
        6,
        61,
        &tcp(CLIENT, VIP, sport, dport, seq, ack, flags),
    )
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    h
}

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// GUE + GLB private data (SPEC.md section 2, IPv4 hops) and the inner
/// IPv4 packet.
fn gue(next_hop: u8, hops: &[Ipv4Addr], inner: &[u8]) -> Vec<u8> {
    let mut g = vec![1 + hops.len() as u8, 4, 0, 0, 0, 0, next_hop];
    g.push(hops.len() as u8);
    for h in hops {
        g.extend_from_slice(&h.octets());
    }
    g.extend_from_slice(inner);
    g
}

/// The GUE frame a director sends to this host.
fn gue_frame(gue: &[u8]) -> Vec<u8> {
    let mut u = udp(0x8123, 19523, gue);
    u[6..8].copy_from_slice(&[0, 0]);
    eth(
        HOST_MAC,
        DIRECTOR_MAC,
        0x0800,
        &ipv4(DIRECTOR, ME, 17, 64, &u),
    )
}

/// What an accepted packet becomes: the inner packet behind a fresh
/// Ethernet header with the received MACs.
fn stripped(inner: &[u8]) -> Vec<u8> {
    eth(HOST_MAC, DIRECTOR_MAC, 0x0800, inner)
}

/// The frame forwarded to `hops[next_hop]` = `OTHER` (SPEC.md section 3
/// step 6).
fn forwarded(received_gue: &[u8], next_hop: u8) -> Vec<u8> {
    let mut g = received_gue.to_vec();
    g[6] = next_hop + 1;
    let mut u = udp(0x8123, 19523, &g);
    u[6..8].copy_from_slice(&[0, 0]);
    eth(PEER_MAC, HOST_MAC, 0x0800, &ipv4(ME, OTHER, 17, 64, &u))
}

/// Every counter other than those listed is zero, and `total` is their sum.
fn assert_only(stats: &[(RedirectStat, u64)], want: &[(RedirectStat, u64)]) {
    for (stat, n) in stats {
        let expected = if *stat == RedirectStat::Total {
            want.iter().map(|(_, n)| n).sum()
        } else {
            want.iter().find(|(s, _)| s == stat).map_or(0, |(_, n)| *n)
        };
        assert_eq!(*n, expected, "counter {}: {stats:?}", stat.name());
    }
}

/// A TCP connection from `local` to `remote`.
fn socket_from(local: SocketAddrV4, remote: SocketAddrV4) -> TcpStream {
    let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
    // SAFETY: plain socket calls on a fresh fd with valid sockaddrs.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let stream = TcpStream::from_raw_fd(fd);
        let l = sockaddr(local);
        assert_eq!(
            libc::bind(fd, (&l as *const libc::sockaddr_in).cast(), len),
            0
        );
        let r = sockaddr(remote);
        assert_eq!(
            libc::connect(fd, (&r as *const libc::sockaddr_in).cast(), len),
            0
        );
        stream
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

#[test]
fn established_socket_in_the_configured_netns_is_accepted_and_not_without_it() {
    let lab = lab();
    // The "container": the VIP and the client on its loopback, a listener
    // and one connection to it. Nothing of it in the backend namespace.
    let ctr = Netns::new("rpc").unwrap();
    ctr.ip(&["addr", "add", "203.0.113.10/32", "dev", "lo"])
        .unwrap();
    ctr.ip(&["addr", "add", "192.0.2.7/32", "dev", "lo"])
        .unwrap();
    let (_listener, client, _server) = ctr
        .run_in(|| {
            let listener = TcpListener::bind(SocketAddrV4::new(VIP, 80))?;
            let client = socket_from(SocketAddrV4::new(CLIENT, 0), SocketAddrV4::new(VIP, 80));
            let (server, _) = listener.accept()?;
            Ok((listener, client, server))
        })
        .unwrap();
    let port = client.local_addr().unwrap().port();

    // The container has no nsid in the backend namespace yet (only the
    // veth peer has one): the loader must assign it.
    let ids = |ns: &Netns| String::from_utf8(ns.ip(&["netns", "list-id"]).unwrap().stdout).unwrap();
    assert!(!ids(&lab.host).contains(ctr.name()), "{}", ids(&lab.host));
    let ctr_path = PathBuf::from("/run/netns").join(ctr.name());
    let (nsid, with, without) = lab
        .host
        .run_in(move || {
            // What the agent does for `--netns PATH`, from the interface's
            // namespace: the container's nsid there (assigned if none).
            let nsid = redirect::netns_id(&ctr_path)?;
            assert_eq!(redirect::netns_id(&ctr_path)?, nsid, "a stable id");

            let inner = inner_tcp(port, 80, 1, 1, ACK);
            let g = gue(0, &[OTHER], &inner);
            let f = gue_frame(&g);
            // Another client port: only the container's listener matches.
            let other = inner_tcp(port ^ 1, 80, 1, 1, ACK);
            let g_other = gue(0, &[OTHER], &other);
            let f_other = gue_frame(&g_other);

            let m = module(&config(Some(nsid)));
            assert_eq!(run(m.program(), &f), (XDP_PASS, stripped(&inner)));
            assert_eq!(run(m.program(), &f_other), (XDP_TX, forwarded(&g_other, 0)));
            let with = m.stats().unwrap();

            let m = module(&config(None));
            assert_eq!(run(m.program(), &f), (XDP_TX, forwarded(&g, 0)));
            let without = m.stats().unwrap();
            Ok((nsid, with, without))
        })
        .unwrap();
    let listed = ids(&lab.host);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&format!("nsid {nsid} ")) && l.contains(ctr.name())),
        "nsid {nsid} of {} not listed in the backend namespace: {listed}",
        ctr.name()
    );
    assert_only(
        &with,
        &[
            (RedirectStat::AcceptedEstablished, 1),
            (RedirectStat::ForwardedToAlternate, 1),
        ],
    );
    assert_only(&without, &[(RedirectStat::ForwardedToAlternate, 1)]);
}

/// Sends a bare SYN from `client` (an address of this namespace) to
/// `server` through a raw socket and returns the ISN of the SYN-ACK that
/// answers it. The kernel answers that SYN-ACK with a reset (no socket owns
/// the client side), which a listener ignores; no connection is made.
fn syn_ack_isn(client: SocketAddrV4, server: SocketAddrV4, isn: u32) -> io::Result<u32> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let fd = sock.as_raw_fd();
    let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
    // Bound to the client address: the source of what it sends, and it
    // receives only TCP to that address.
    let local = sockaddr(SocketAddrV4::new(*client.ip(), 0));
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: valid fd, pointers to live values of the sizes given.
    unsafe {
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
    }
    let syn = tcp(
        *client.ip(),
        *server.ip(),
        client.port(),
        server.port(),
        isn,
        0,
        SYN,
    );
    let to = sockaddr(SocketAddrV4::new(*server.ip(), 0));
    // SAFETY: a valid buffer and sockaddr of the sizes given.
    if unsafe {
        libc::sendto(
            fd,
            syn.as_ptr().cast(),
            syn.len(),
            0,
            (&to as *const libc::sockaddr_in).cast(),
            len,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    let start = Instant::now();
    let mut buf = [0u8; 1500];
    while start.elapsed() < Duration::from_secs(3) {
        // SAFETY: a valid buffer of its own size.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
        // The IP header, then TCP.
        let p = &buf[..n as usize];
        let ihl = usize::from(p[0] & 0x0f) * 4;
        let Some(t) = p.get(ihl..ihl + 20) else {
            continue;
        };
        let be16 = |at: usize| u16::from_be_bytes([t[at], t[at + 1]]);
        let be32 = |at: usize| u32::from_be_bytes([t[at], t[at + 1], t[at + 2], t[at + 3]]);
        if p[12..16] == server.ip().octets()
            && be16(0) == server.port()
            && be16(2) == client.port()
            && t[13] & (SYN | ACK) == SYN | ACK
        {
            assert_eq!(be32(8), isn.wrapping_add(1), "the SYN-ACK acks our SYN");
            return Ok(be32(4));
        }
    }
    Err(io::Error::other("no SYN-ACK from the listener within 3 s"))
}

#[test]
fn ack_carrying_a_valid_syn_cookie_is_accepted_and_a_wrong_cookie_forwarded() {
    let lab = lab();
    lab.host
        .ip(&["addr", "add", "203.0.113.10/32", "dev", "lo"])
        .unwrap();
    lab.host
        .ip(&["addr", "add", "192.0.2.7/32", "dev", "lo"])
        .unwrap();
    // Always answer a SYN with a cookie (no request socket is kept), in the
    // backend namespace only.
    lab.host
        .exec("sysctl", &["-qw", "net.ipv4.tcp_syncookies=2"])
        .unwrap();
    let stats = lab
        .host
        .run_in(|| {
            let _listener = TcpListener::bind(SocketAddrV4::new(VIP, 80))?;
            let (cport, isn) = (40123, 0x1234_5678u32);
            let cookie = syn_ack_isn(
                SocketAddrV4::new(CLIENT, cport),
                SocketAddrV4::new(VIP, 80),
                isn,
            )?;

            let m = module(&config(None));
            // The ACK completing that handshake.
            let inner = inner_tcp(cport, 80, isn.wrapping_add(1), cookie.wrapping_add(1), ACK);
            let g = gue(0, &[OTHER], &inner);
            assert_eq!(
                run(m.program(), &gue_frame(&g)),
                (XDP_PASS, stripped(&inner))
            );
            // The same ACK with another cookie: the top bits are the
            // cookie's minute counter, so flipping one makes it invalid
            // for certain (a change in the low bits could still decode to
            // a valid MSS index). The listener alone does not keep it.
            let bad = cookie ^ 0x8000_0000;
            let inner = inner_tcp(cport, 80, isn.wrapping_add(1), bad.wrapping_add(1), ACK);
            let g = gue(0, &[OTHER], &inner);
            assert_eq!(run(m.program(), &gue_frame(&g)), (XDP_TX, forwarded(&g, 0)));
            Ok(m.stats().unwrap())
        })
        .unwrap();
    assert_only(
        &stats,
        &[
            (RedirectStat::AcceptedSynCookie, 1),
            (RedirectStat::ForwardedToAlternate, 1),
        ],
    );
}
