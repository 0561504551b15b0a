//! Second chance along chains of 1 + H backends (docs/spec.md sections 3-4),
//! with the real redirect agent (`redirect-xdp`) attached to the
//! `eth0` of three backends, and GUE packets that the test builds as a
//! director would and puts on the wire from the director's host:
//!
//! - a data segment of a real TCP connection that lives on backend 3 only,
//!   sent to backend 1 with hops [backend 2, backend 3]: backend 1 and
//!   backend 2 forward it (next_hop 0 -> 1 -> 2), backend 3 accepts it into
//!   the connection, whose server reads it and answers the client directly;
//!   over IPv4 and IPv6 hops;
//! - a chain padded by repeating its last entry (primary A, hops [B, B] or
//!   [B, B, B]): B, without a socket, finds itself as the next hop and
//!   accepts, and sends nothing on, to itself or anyone.
//!
//! Frames are captured where they arrive: a backend's forward on the
//! bridge port it leaves by (its `XDP_TX` never reaches its own capture),
//! an accepted packet on the accepting backend's `eth0` (after the XDP
//! program stripped it). The bridge knows every MAC from the start (static
//! entries), not from whatever the hosts happened to send first: the
//! redirect module does not look at the outer destination, so a frame
//! flooded to every port would be judged by every backend.
//!
//! Lab (documentation addresses only, one L2 segment through a bridge):
//!
//! ```text
//!   director  198.51.100.1   2001:db8:1::1   only puts frames on the wire
//!   client    198.51.100.2   2001:db8:1::2   routes the VIPs via backend 3
//!   backend i 198.51.100.1i  2001:db8:1::1i  VIPs on lo, redirect on eth0,
//!                                            a listener on the VIPs' port 80
//!   VIPs 203.0.113.10 and 2001:db8:10::10
//! ```
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use lab_tests::pkt::{ACK, Macs, gue, ip, set_tcp4_checksum, set_tcp6_checksum, tcp_header};
use lab_tests::redirect_lab::{DIRECTOR, DIRECTOR6, VIP, VIP6, agent_stats, assert_only};
use lab_tests::{Capture, Daemon, Netns, Scratch, Switch, XdpPass, send_frame, workspace_bin};
use proto::maps::RedirectStat;

/// The client, on the backends' segment.
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The client, IPv6.
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const DIRECTOR_MAC: [u8; 6] = [2, 0, 0, 0, 5, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 5, 2];
const PSH: u8 = 0x08;

fn mac_str(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

/// Backend `i` (0-based): its IPv4 and IPv6 addresses and MAC.
fn backend(i: usize) -> (Ipv4Addr, Ipv6Addr, [u8; 6]) {
    let n = 0x11 + i as u8;
    (
        Ipv4Addr::new(198, 51, 100, 11 + i as u8),
        // 2001:db8:1::11 etc., written as the IPv4 ones read.
        format!("2001:db8:1::{}", 11 + i).parse().unwrap(),
        [2, 0, 0, 0, 5, n],
    )
}

/// Backend `i`'s address in the family of `v6`.
fn addr(i: usize, v6: bool) -> IpAddr {
    let (a4, a6, _) = backend(i);
    if v6 { a6.into() } else { a4.into() }
}

/// The director's address in the family of `v6`.
fn director(v6: bool) -> IpAddr {
    if v6 {
        DIRECTOR6.into()
    } else {
        DIRECTOR.into()
    }
}

/// A backend host: the agent is dropped (stopped) before its namespace.
struct Host {
    agent: Daemon,
    ns: Netns,
    /// Its bridge port, in the switch's namespace.
    port: String,
}

/// The lab; fields drop in order: agents and XDP first, namespaces last.
struct Lab {
    backends: Vec<Host>,
    listeners: Vec<TcpListener>,
    _xdp: Vec<XdpPass>,
    client: Netns,
    director: Netns,
    sw: Switch,
    _scratch: Scratch,
}

impl Lab {
    fn new() -> Lab {
        let scratch = Scratch::new("chain").unwrap();
        let mut sw = Switch::new().unwrap();
        let director = Netns::new("chd").unwrap();
        let client = Netns::new("chc").unwrap();
        let fdb = |sw: &Switch, mac: [u8; 6], port: &str| {
            sw.ns()
                .exec(
                    "bridge",
                    &[
                        "fdb",
                        "replace",
                        &mac_str(mac),
                        "dev",
                        port,
                        "master",
                        "static",
                    ],
                )
                .unwrap();
        };
        let p = sw
            .plug(
                &director,
                &mac_str(DIRECTOR_MAC),
                &["198.51.100.1/24", "2001:db8:1::1/64"],
            )
            .unwrap();
        fdb(&sw, DIRECTOR_MAC, &p);
        let p = sw
            .plug(
                &client,
                &mac_str(CLIENT_MAC),
                &["198.51.100.2/24", "2001:db8:1::2/64"],
            )
            .unwrap();
        fdb(&sw, CLIENT_MAC, &p);
        // The client's checksum offload stays on: its frames go to backend
        // 3 directly, through no XDP program that sends them on (see
        // docs/backend.md, labs on veth), and the segments the test sends
        // in its name carry complete checksums. Without options: no
        // timestamps on the connection.
        client
            .exec("sysctl", &["-qw", "net.ipv4.tcp_timestamps=0"])
            .unwrap();
        // The client reaches the VIPs through backend 3 directly (plain
        // TCP, which the redirect module passes untouched and uncounted):
        // its connections live there, and nowhere else.
        let (b3, b3_6, b3_mac) = backend(2);
        for a in [b3.to_string(), b3_6.to_string()] {
            client.add_neighbour(&a, &mac_str(b3_mac)).unwrap();
        }
        client
            .ip(&["route", "add", "203.0.113.10/32", "via", &b3.to_string()])
            .unwrap();
        client
            .ip(&[
                "-6",
                "route",
                "add",
                "2001:db8:10::10/128",
                "via",
                &b3_6.to_string(),
            ])
            .unwrap();

        let bin = workspace_bin("redirect-xdp").unwrap();
        let mut backends = Vec::new();
        let mut listeners = Vec::new();
        let mut xdp = Vec::new();
        for i in 0..3 {
            let (a4, a6, mac) = backend(i);
            let ns = Netns::new("chb").unwrap();
            let port = sw
                .plug(
                    &ns,
                    &mac_str(mac),
                    &[&format!("{a4}/24"), &format!("{a6}/64")],
                )
                .unwrap();
            fdb(&sw, mac, &port);
            // Forwarded frames leave with XDP_TX: the bridge port must run
            // XDP for them to arrive.
            xdp.push(XdpPass::attach(sw.ns(), &port).unwrap());
            ns.ip(&["addr", "add", "203.0.113.10/32", "dev", "lo"])
                .unwrap();
            ns.ip(&["addr", "add", "2001:db8:10::10/128", "dev", "lo"])
                .unwrap();
            for key in [
                "net.ipv4.conf.eth0.forwarding=1",
                "net.ipv6.conf.eth0.forwarding=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.eth0.rp_filter=0",
            ] {
                ns.exec("sysctl", &["-qw", key]).unwrap();
            }
            // Second chance forwards to the other backends, whose MACs it
            // takes from the neighbour table.
            let mut allow = vec![
                "198.51.100.1/32".to_string(),
                "2001:db8:1::1/128".to_string(),
            ];
            for j in (0..3).filter(|j| *j != i) {
                let (o4, o6, omac) = backend(j);
                for a in [o4.to_string(), o6.to_string()] {
                    ns.add_neighbour(&a, &mac_str(omac)).unwrap();
                }
                allow.push(format!("{o4}/32"));
                allow.push(format!("{o6}/128"));
            }
            if i == 2 {
                for a in [CLIENT.to_string(), CLIENT6.to_string()] {
                    ns.add_neighbour(&a, &mac_str(CLIENT_MAC)).unwrap();
                }
            }
            // Every backend serves the VIPs: a listener alone must not
            // keep a packet from going on.
            for vip in [
                SocketAddr::new(VIP.into(), 80),
                SocketAddr::new(VIP6.into(), 80),
            ] {
                listeners.push(ns.run_in(move || TcpListener::bind(vip)).unwrap());
            }
            let (s4, s6) = (a4.to_string(), a6.to_string());
            let mut args = vec!["--iface", "eth0", "--self", &s4, "--self", &s6, "--allow"];
            args.extend(allow.iter().map(String::as_str));
            let mut agent = ns
                .spawn(
                    bin.to_str().unwrap(),
                    &args,
                    scratch.file(&format!("redirect-{i}.log")),
                )
                .unwrap();
            agent
                .wait_for_log("redirect attached", Duration::from_secs(30))
                .unwrap();
            backends.push(Host { agent, ns, port });
        }
        Lab {
            backends,
            listeners,
            _xdp: xdp,
            client,
            director,
            sw,
            _scratch: scratch,
        }
    }

    /// The Ethernet addresses of backend `i` (`host`), of backend `next`
    /// (`peer`), and the director's.
    fn macs(&self, i: usize, next: usize) -> Macs {
        Macs {
            host: backend(i).2,
            peer: backend(next).2,
            director: DIRECTOR_MAC,
        }
    }

    /// Captures what backend `i` sends onto the segment.
    fn capture_sent_by(&self, i: usize) -> Capture {
        Capture::start(self.sw.ns(), &self.backends[i].port).unwrap()
    }

    /// Captures what backend `i`'s stack receives, after its XDP program.
    fn capture_received_by(&self, i: usize) -> Capture {
        Capture::start(&self.backends[i].ns, "eth0").unwrap()
    }

    /// The director puts `frame` on the wire.
    fn send(&self, frame: &[u8]) {
        send_frame(&self.director, "eth0", frame).unwrap();
    }
}

/// Whether `f` is a GUE frame (UDP to 19523, outer IPv4 or IPv6).
fn is_gue(f: &[u8]) -> bool {
    match f.get(12..14) {
        Some([0x08, 0x00]) => f.len() >= 42 && f[23] == 17 && f[36..38] == [0x4c, 0x43],
        Some([0x86, 0xdd]) => f.len() >= 62 && f[20] == 17 && f[56..58] == [0x4c, 0x43],
        _ => false,
    }
}

/// The frames of `frames` from `mac` that carry the IP packet `inner`
/// (other frames come and go: neighbour discovery, the client's own
/// segments).
fn carrying(frames: &[Vec<u8>], mac: [u8; 6], inner: &[u8]) -> Vec<Vec<u8>> {
    frames
        .iter()
        .filter(|f| f[6..12] == mac && f.windows(inner.len()).any(|w| w == inner))
        .cloned()
        .collect()
}

/// A client -> VIP TCP segment (no options) with `payload`, checksummed.
fn segment(v6: bool, sport: u16, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = tcp_header(sport, 80, seq, ack, flags, 0x2000);
    t.extend_from_slice(payload);
    if v6 {
        set_tcp6_checksum(CLIENT6, VIP6, &mut t);
        ip(CLIENT6.into(), VIP6.into(), 6, 64, &t)
    } else {
        set_tcp4_checksum(CLIENT, VIP, &mut t);
        ip(CLIENT.into(), VIP.into(), 6, 64, &t)
    }
}

/// `setsockopt(IPPROTO_TCP, opt, value)`.
fn set_tcp_opt(s: &TcpStream, opt: libc::c_int, value: libc::c_int) {
    // SAFETY: a valid fd and an int option of its size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            opt,
            (&value as *const libc::c_int).cast(),
            4,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt {opt}: {}",
        std::io::Error::last_os_error()
    );
}

/// `TCP_QUEUE_SEQ` of `queue` (a socket in repair mode).
fn queue_seq(s: &TcpStream, queue: libc::c_int) -> u32 {
    set_tcp_opt(s, libc::TCP_REPAIR_QUEUE, queue);
    let mut seq: u32 = 0;
    let mut len = 4u32;
    // SAFETY: a valid fd and a u32 of the length given.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUEUE_SEQ,
            (&mut seq as *mut u32).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_QUEUE_SEQ: {}", std::io::Error::last_os_error());
    seq
}

/// Queues `payload` on the client's connection as already sent (TCP
/// repair mode), so that the segment the test sends in its name through
/// the chain is one the client's stack expects acknowledged: (sequence
/// number of the payload, acknowledgment number).
fn sent_by_client(s: &TcpStream, payload: &[u8]) -> (u32, u32) {
    /// include/uapi/linux/tcp.h.
    const TCP_RECV_QUEUE: libc::c_int = 1;
    const TCP_SEND_QUEUE: libc::c_int = 2;
    const TCP_REPAIR_OFF_NO_WP: libc::c_int = -1;
    set_tcp_opt(s, libc::TCP_REPAIR, 1);
    let ack = queue_seq(s, TCP_RECV_QUEUE);
    let seq = queue_seq(s, TCP_SEND_QUEUE);
    // In repair mode with the send queue selected, written data joins the
    // queue as sent, without leaving.
    assert_eq!((&*s).write(payload).unwrap(), payload.len());
    // Out of repair mode without the window probe it would send.
    set_tcp_opt(s, libc::TCP_REPAIR, TCP_REPAIR_OFF_NO_WP);
    (seq, ack)
}

#[test]
fn a_segment_forwarded_twice_reaches_the_connection_on_the_third_backend() {
    let lab = Lab::new();
    for (round, v6) in [false, true].into_iter().enumerate() {
        // A connection from the client to backend 3, directly.
        let vip = if v6 {
            SocketAddr::new(VIP6.into(), 80)
        } else {
            SocketAddr::new(VIP.into(), 80)
        };
        let client = lab
            .client
            .run_in(move || TcpStream::connect_timeout(&vip, Duration::from_secs(5)))
            .unwrap();
        let listener = &lab.listeners[2 * 2 + usize::from(v6)];
        let (mut server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        for s in [&client, &server] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }

        let payload = format!(
            "through backends 1 and 2 to 3, IPv{}\n",
            if v6 { 6 } else { 4 }
        );
        let (sent1, sent2) = (lab.capture_sent_by(0), lab.capture_sent_by(1));
        let (got1, got2, got3) = (
            lab.capture_received_by(0),
            lab.capture_received_by(1),
            lab.capture_received_by(2),
        );
        // From here the client retransmits the payload to backend 3
        // directly if no acknowledgment comes within its RTO: the server
        // reading it proves the connection whole, the captures and the
        // counters below prove the way it came.
        let (seq, ack) = sent_by_client(&client, payload.as_bytes());
        let inner = segment(v6, peer.port(), seq, ack, PSH | ACK, payload.as_bytes());
        // What a director writes for a row (1, [2, 3]) of a table with H = 2.
        let g = gue(0, &[addr(1, v6), addr(2, v6)], &inner);
        lab.send(&lab.macs(0, 1).gue_frame(director(v6), addr(0, v6), &g));
        let mut read = vec![0u8; payload.len()];
        server.read_exact(&mut read).unwrap();
        assert_eq!(
            read,
            payload.as_bytes(),
            "the server reads the client's bytes"
        );
        // The connection goes on: the echo reaches the client, directly.
        server.write_all(&read).unwrap();
        let mut echo = vec![0u8; payload.len()];
        (&client).read_exact(&mut echo).unwrap();
        assert_eq!(echo, read);

        let sent1 = sent1.finish().unwrap();
        let sent2 = sent2.finish().unwrap();
        // Backend 1 -> backend 2: next_hop 0 -> 1, from backend 1's address.
        let hop1 = lab.macs(0, 1).forwarded(&g, 0, addr(0, v6), addr(1, v6));
        assert_eq!(
            sent1.into_iter().filter(|f| is_gue(f)).collect::<Vec<_>>(),
            vec![hop1]
        );
        // Backend 2 -> backend 3: next_hop 1 -> 2.
        let hop2 = lab.macs(1, 2).forwarded(&g, 1, addr(1, v6), addr(2, v6));
        assert_eq!(
            sent2.into_iter().filter(|f| is_gue(f)).collect::<Vec<_>>(),
            vec![hop2]
        );
        // Backend 3's stack gets the inner segment, behind the Ethernet
        // addresses it arrived with; backends 1 and 2 got nothing of it.
        let accepted = Macs {
            host: backend(2).2,
            peer: backend(1).2,
            director: backend(1).2,
        }
        .stripped(&inner);
        let got = |c: Capture, from: [u8; 6]| carrying(&c.finish().unwrap(), from, &inner);
        assert_eq!(got(got3, backend(1).2), vec![accepted]);
        assert_eq!(got(got1, DIRECTOR_MAC), Vec::<Vec<u8>>::new());
        assert_eq!(got(got2, backend(0).2), Vec::<Vec<u8>>::new());

        let n = round as u64 + 1;
        for (i, want) in [
            (0, RedirectStat::ForwardedToAlternate),
            (1, RedirectStat::ForwardedToAlternate),
            (2, RedirectStat::AcceptedEstablished),
        ] {
            let stats = agent_stats(&lab.backends[i].agent).unwrap();
            assert_only(&stats, &[(want, n)]);
        }
    }
}

#[test]
fn a_chain_padded_with_its_last_backend_ends_there_without_a_loop() {
    let lab = Lab::new();
    // Primary A = backend 1, B = backend 2 repeated: fewer keepers than
    // H. No socket for the flow anywhere.
    let cases = [(false, 2), (false, 3), (true, 3)];
    for (round, (v6, h)) in cases.into_iter().enumerate() {
        let inner = segment(v6, 40000 + round as u16, 7, 9, ACK, b"");
        let hops = vec![addr(1, v6); h];
        let g = gue(0, &hops, &inner);
        let frame = lab.macs(0, 1).gue_frame(director(v6), addr(0, v6), &g);

        let (sent1, sent2) = (lab.capture_sent_by(0), lab.capture_sent_by(1));
        let got2 = lab.capture_received_by(1);
        lab.send(&frame);
        std::thread::sleep(Duration::from_millis(300));
        let sent1 = sent1.finish().unwrap();
        let sent2 = sent2.finish().unwrap();
        let got2 = got2.finish().unwrap();

        // A forwards to B (next_hop 0 -> 1).
        let hop1 = lab.macs(0, 1).forwarded(&g, 0, addr(0, v6), addr(1, v6));
        assert_eq!(
            sent1.into_iter().filter(|f| is_gue(f)).collect::<Vec<_>>(),
            vec![hop1],
            "H = {h}"
        );
        // B's next hop is B: accepted there, once, and sent nowhere.
        let accepted = Macs {
            host: backend(1).2,
            peer: backend(0).2,
            director: backend(0).2,
        }
        .stripped(&inner);
        assert_eq!(
            carrying(&got2, backend(0).2, &inner),
            vec![accepted],
            "H = {h}"
        );
        assert_eq!(
            sent2.into_iter().filter(|f| is_gue(f)).collect::<Vec<_>>(),
            Vec::<Vec<u8>>::new(),
            "B sent GUE on (H = {h})"
        );
        let n = round as u64 + 1;
        let stats = |i: usize| agent_stats(&lab.backends[i].agent).unwrap();
        assert_only(&stats(0), &[(RedirectStat::ForwardedToAlternate, n)]);
        assert_only(&stats(1), &[(RedirectStat::ForwardedToSelf, n)]);
        assert_only(&stats(2), &[]);
    }
}
