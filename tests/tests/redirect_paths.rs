//! Two decision paths of the redirect module (docs/spec.md section 3,
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
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use director_xdp::redirect::{self, RedirectConfig};
use lab_tests::Netns;
use lab_tests::pkt::{ACK, Macs, SYN, gue, ipv4, set_tcp4_checksum, tcp_header};
use lab_tests::redirect_lab::{
    CLIENT, DIRECTOR, Lab, LabSpec, ME, OTHER, VIP, XDP_PASS, XDP_TX, assert_only, connect_from,
    load, run, sockaddr,
};
use proto::maps::RedirectStat;

const MACS: Macs = Macs {
    host: [0x02, 0, 0, 0, 0x03, 0x11],
    peer: [0x02, 0, 0, 0, 0x03, 0x12],
    director: [0x02, 0, 0, 0, 0x03, 0x01],
};

/// A backend host (`eth0` = `MACS.host`, address `ME`, forwarding on,
/// `OTHER` a permanent neighbour at `MACS.peer`) and the peer namespace
/// holding the other end of its veth.
fn lab() -> Lab {
    Lab::new(&LabSpec {
        role: "rpb",
        peer_role: Some("rpp"),
        macs: &MACS,
        addrs: &[(IpAddr::V4(ME), 24)],
        neighbours: &[IpAddr::V4(OTHER)],
    })
    .unwrap()
}

fn config(netns_id: Option<u32>) -> RedirectConfig {
    RedirectConfig {
        selves: vec![IpAddr::V4(ME)],
        allow: vec!["198.51.100.0/28".parse().unwrap()],
        netns_id,
    }
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
    let mut h = tcp_header(sport, dport, seq, ack, flags, 0xfaf0);
    set_tcp4_checksum(src, dst, &mut h);
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

/// The GUE frame a director sends to this host.
fn gue_frame(gue: &[u8]) -> Vec<u8> {
    MACS.gue_frame(DIRECTOR.into(), ME.into(), gue)
}

/// The frame forwarded to `hops[next_hop]` = `OTHER` (docs/spec.md section 3
/// step 6).
fn forwarded(received_gue: &[u8], next_hop: u8) -> Vec<u8> {
    MACS.forwarded(received_gue, next_hop.into(), ME.into(), OTHER.into())
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
            let client =
                connect_from(SocketAddrV4::new(CLIENT, 0), SocketAddrV4::new(VIP, 80)).unwrap();
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
            let g = gue(0, &[OTHER.into()], &inner);
            let f = gue_frame(&g);
            // Another client port: only the container's listener matches.
            let other = inner_tcp(port ^ 1, 80, 1, 1, ACK);
            let g_other = gue(0, &[OTHER.into()], &other);
            let f_other = gue_frame(&g_other);

            let m = load(&config(Some(nsid)));
            assert_eq!(run(m.program(), &f), (XDP_PASS, MACS.stripped(&inner)));
            assert_eq!(run(m.program(), &f_other), (XDP_TX, forwarded(&g_other, 0)));
            let with = m.stats().unwrap();

            let m = load(&config(None));
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

            let m = load(&config(None));
            // The ACK completing that handshake.
            let inner = inner_tcp(cport, 80, isn.wrapping_add(1), cookie.wrapping_add(1), ACK);
            let g = gue(0, &[OTHER.into()], &inner);
            assert_eq!(
                run(m.program(), &gue_frame(&g)),
                (XDP_PASS, MACS.stripped(&inner))
            );
            // The same ACK with another cookie: the top bits are the
            // cookie's minute counter, so flipping one makes it invalid
            // for certain (a change in the low bits could still decode to
            // a valid MSS index). The listener alone does not keep it.
            let bad = cookie ^ 0x8000_0000;
            let inner = inner_tcp(cport, 80, isn.wrapping_add(1), bad.wrapping_add(1), ACK);
            let g = gue(0, &[OTHER.into()], &inner);
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
