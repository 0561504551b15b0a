//! Redirect-module benchmark: ns per packet of the backend-side XDP
//! program for four kinds of packet, beside the floor (`bench_floor`,
//! `return XDP_TX`) measured the same way in the same run. Prints a
//! Markdown section for `docs/benchmarks.md` (see `make bench`).
//!
//! The program looks up sockets and routes, so it runs from a thread inside
//! a lab namespace of its own (`glbt-rbench-<pid>-<n>`, documentation
//! addresses only, removed on every exit path: return, panic, SIGINT,
//! SIGTERM, SIGHUP). Nothing is created in the root namespace. The
//! namespace holds a veth `eth0` (198.51.100.11, 2001:db8:1::11, forwarding
//! on) whose other end `eth1` stays in the namespace, a permanent neighbour
//! entry for the other backend (198.51.100.12), the VIP and a client address
//! on `lo`, a listener on the VIP and one accepted connection to it. The
//! maps are written as `director-xdp redirect --self 198.51.100.11 --self
//! 2001:db8:1::11 --allow 198.51.100.0/28 2001:db8:1::/124` writes them.
//!
//! Method (the director's, `director-xdp/benches/director.rs`): every run is
//! one `BPF_PROG_TEST_RUN` with repeat 1 on the original packet (received on
//! `eth0`), and the kernel-reported durations are summed. A figure is the
//! median of `BATCHES` batch means of `RUNS` runs each; the redirect program
//! and the floor are measured in interleaved batches so that drift affects
//! them alike. Before measuring, each packet's verdict, output bytes and
//! counter are checked (a mismatch aborts); afterwards, the counters must
//! show that every measured run took the expected path. Needs root.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use director_xdp::redirect::{Redirect, RedirectConfig};
use director_xdp::{BENCH_FLOOR_PROGRAM, REDIRECT_PROGRAM, load_xdp, xdp_program};
use lab_tests::Netns;
use proto::maps::RedirectStat;

const BATCHES: usize = 31;
const RUNS: usize = 2000;

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x11];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x12];
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
const DIRECTOR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const ME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
const ME6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11);
const OTHER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const VIP_PORT: u16 = 80;
const GUE_PORT: u16 = 19523;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// The lab namespace's name while it exists, for the signal thread.
static LAB: Mutex<Option<String>> = Mutex::new(None);

/// Blocks SIGINT, SIGTERM and SIGHUP in every thread (threads started later
/// inherit the mask) and starts a thread that waits for them, removes the
/// lab namespace and exits: an interrupted benchmark leaves nothing behind.
fn remove_lab_on_signals() -> io::Result<()> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use;
    // pthread_sigmask only changes the calling thread's mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::other("pthread_sigmask failed"));
        }
        set
    };
    std::thread::spawn(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is a valid, initialised signal set; `sig` is live.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return;
        }
        // Taken while the namespace is being created: waits until its name
        // is known, so it is removed too.
        let name = LAB.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(name) = name {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", &name])
                .output();
        }
        eprintln!("redirect bench: interrupted (signal {sig}), lab namespace removed");
        std::process::exit(128 + sig);
    });
    Ok(())
}

/// The lab namespace (see the module documentation).
fn lab() -> io::Result<Netns> {
    let ns = Netns::new("rbench")?;
    ns.ip(&[
        "link",
        "add",
        "eth0",
        "address",
        "02:00:00:00:02:11",
        "type",
        "veth",
        "peer",
        "name",
        "eth1",
        "address",
        "02:00:00:00:02:12",
    ])?;
    for dev in ["eth0", "eth1"] {
        ns.ip(&["link", "set", dev, "up"])?;
    }
    ns.ip(&["addr", "add", "198.51.100.11/24", "dev", "eth0"])?;
    ns.ip(&["addr", "add", "2001:db8:1::11/64", "dev", "eth0", "nodad"])?;
    ns.ip(&[
        "neigh",
        "add",
        "198.51.100.12",
        "lladdr",
        "02:00:00:00:02:12",
        "dev",
        "eth0",
        "nud",
        "permanent",
    ])?;
    ns.ip(&["addr", "add", "203.0.113.10/32", "dev", "lo"])?;
    ns.ip(&["addr", "add", "192.0.2.7/32", "dev", "lo"])?;
    for key in [
        "net.ipv4.conf.eth0.forwarding=1",
        "net.ipv6.conf.eth0.forwarding=1",
    ] {
        ns.exec("sysctl", &["-qw", key])?;
    }
    Ok(ns)
}

fn config() -> RedirectConfig {
    let prefix = |s: &str| s.parse().expect("prefix literal");
    RedirectConfig {
        selves: vec![IpAddr::V4(ME), IpAddr::V6(ME6)],
        allow: vec![prefix("198.51.100.0/28"), prefix("2001:db8:1::/124")],
        netns_id: None,
    }
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

/// A 20-byte TCP header, no payload.
fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    h
}

/// A UDP header (checksum 0) and its payload.
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

/// GUE + GLB private data (SPEC.md section 2) with IPv4 hops, then the
/// inner IPv4 packet.
fn gue(next_hop: u8, hops: &[Ipv4Addr], inner: &[u8]) -> Vec<u8> {
    let mut g = vec![1 + hops.len() as u8, 4, 0, 0, 0, 0, next_hop];
    g.push(hops.len() as u8);
    for hop in hops {
        g.extend_from_slice(&hop.octets());
    }
    g.extend_from_slice(inner);
    g
}

/// `gue` in UDP in IPv4, from `src` to `dst`, in Ethernet.
fn gue_frame(src: Ipv4Addr, dst: Ipv4Addr, gue: &[u8]) -> Vec<u8> {
    let u = udp(0x8123, GUE_PORT, gue);
    eth(HOST_MAC, DIRECTOR_MAC, 0x0800, &ipv4(src, dst, 17, 64, &u))
}

/// What an accepted packet becomes (SPEC.md section 3): the inner packet
/// behind a fresh Ethernet header with the received MACs.
fn stripped(inner: &[u8]) -> Vec<u8> {
    eth(HOST_MAC, DIRECTOR_MAC, 0x0800, inner)
}

/// What a forwarded packet becomes (SPEC.md section 3 step 6).
fn forwarded(received_gue: &[u8], next_hop_index: usize, to: Ipv4Addr) -> Vec<u8> {
    let mut g = received_gue.to_vec();
    g[6] = next_hop_index as u8 + 1;
    let u = udp(0x8123, GUE_PORT, &g);
    eth(PEER_MAC, HOST_MAC, 0x0800, &ipv4(ME, to, 17, 64, &u))
}

/// One packet measured: its frame, what the program must return and
/// output, and the counter it must bump (none: not GUE).
struct Case {
    name: &'static str,
    frame: Vec<u8>,
    verdict: u32,
    output: Vec<u8>,
    stat: Option<RedirectStat>,
}

/// The four packets; `port` is the client port of the established
/// connection.
fn cases(port: u16) -> Vec<Case> {
    let syn = ipv4(CLIENT, VIP, 6, 61, &tcp(40000, VIP_PORT, SYN));
    let established = ipv4(CLIENT, VIP, 6, 61, &tcp(port, VIP_PORT, ACK));
    // Another client port: only the listener matches, which is no flow.
    let stranger = ipv4(CLIENT, VIP, 6, 61, &tcp(port ^ 1, VIP_PORT, ACK));
    let forward_gue = gue(0, &[OTHER], &stranger);
    let not_gue = eth(
        HOST_MAC,
        DIRECTOR_MAC,
        0x0800,
        &ipv4(CLIENT, ME, 6, 64, &tcp(40000, 22, ACK)),
    );
    vec![
        Case {
            name: "GUE, inner SYN to the VIP",
            frame: gue_frame(DIRECTOR, ME, &gue(0, &[OTHER], &syn)),
            verdict: XDP_PASS,
            output: stripped(&syn),
            stat: Some(RedirectStat::AcceptedSyn),
        },
        Case {
            name: "GUE, inner ACK of an established connection",
            frame: gue_frame(DIRECTOR, ME, &gue(0, &[OTHER], &established)),
            verdict: XDP_PASS,
            output: stripped(&established),
            stat: Some(RedirectStat::AcceptedEstablished),
        },
        Case {
            name: "GUE, inner ACK of no local flow, another backend next",
            frame: gue_frame(DIRECTOR, ME, &forward_gue),
            verdict: XDP_TX,
            output: forwarded(&forward_gue, 0, OTHER),
            stat: Some(RedirectStat::ForwardedToAlternate),
        },
        Case {
            name: "not GUE (IPv4 TCP to this host)",
            frame: not_gue.clone(),
            verdict: XDP_PASS,
            output: not_gue,
            stat: None,
        },
    ]
}

fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: a valid NUL-terminated name.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// The `xdp_md` given to the kernel: the frame arrives on `ifindex`.
fn xdp_ctx(frame: &[u8], ifindex: u32) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    ctx
}

/// One repeat-1 run: kernel-reported duration, verdict, output bytes.
fn run_once(prog: &Xdp, frame: &[u8], ctx: &[u8], out: &mut [u8]) -> (Duration, u32, usize) {
    let r = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(out),
            ctx_in: Some(ctx),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN (root needed)");
    (r.duration, r.return_value, r.data_size_out as usize)
}

/// Mean kernel-reported ns of one run of `prog` on `frame`; every run must
/// return `verdict`.
fn batch_mean(prog: &Xdp, frame: &[u8], ctx: &[u8], verdict: u32, out: &mut [u8]) -> f64 {
    let mut total = Duration::ZERO;
    for _ in 0..RUNS {
        let (d, v, _) = run_once(prog, frame, ctx, out);
        assert_eq!(v, verdict, "verdict changed while measuring");
        total += d;
    }
    total.as_nanos() as f64 / RUNS as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn verdict_name(v: u32) -> &'static str {
    match v {
        1 => "DROP",
        2 => "PASS",
        3 => "TX",
        _ => "other",
    }
}

/// Counter values, in `RedirectStat::ALL` order.
fn counters(module: &Redirect) -> Vec<u64> {
    module
        .stats()
        .expect("reading the counters")
        .into_iter()
        .map(|(_, n)| n)
        .collect()
}

/// What one case did to the counters between `before` and `after`, over
/// `runs` runs: must be `runs` in its counter (and `total`), 0 elsewhere.
fn check_counters(case: &Case, before: &[u64], after: &[u64], runs: u64) {
    for (i, stat) in RedirectStat::ALL.iter().enumerate() {
        let delta = after[i] - before[i];
        let want = match case.stat {
            Some(s) if s == *stat || *stat == RedirectStat::Total => runs,
            _ => 0,
        };
        assert_eq!(
            delta,
            want,
            "{}: counter {} moved by {delta}, expected {want}",
            case.name,
            stat.name()
        );
    }
}

/// A TCP connection from `local` to `remote`.
fn connect_from(local: SocketAddrV4, remote: SocketAddrV4) -> io::Result<TcpStream> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, IntoRawFd as _, OwnedFd};
    let sockaddr = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
    // SAFETY: socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let (l, r) = (sockaddr(local), sockaddr(remote));
    // SAFETY: valid fd and sockaddrs of the length given.
    unsafe {
        if libc::bind(fd.as_raw_fd(), (&l as *const libc::sockaddr_in).cast(), len) != 0
            || libc::connect(fd.as_raw_fd(), (&r as *const libc::sockaddr_in).cast(), len) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: ownership of the connected socket moves to the stream.
    Ok(unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) })
}

/// One case's figures: medians of the batch means, ns per run.
struct Figures {
    name: &'static str,
    verdict: u32,
    stat: Option<RedirectStat>,
    floor: f64,
    redirect: f64,
}

/// Runs inside the lab namespace: loads, configures, checks, measures.
fn measure() -> io::Result<Vec<Figures>> {
    let mut module = Redirect::load().map_err(|e| {
        io::Error::other(format!("loading the redirect module (root needed): {e:?}"))
    })?;
    module
        .configure(&config())
        .map_err(|e| io::Error::other(format!("configuring the redirect module: {e:?}")))?;
    load_xdp(module.ebpf_mut(), BENCH_FLOOR_PROGRAM)
        .map_err(|e| io::Error::other(format!("loading bench_floor: {e:?}")))?;

    // A listener on the VIP and one accepted connection to it: the
    // established flow bpf_skc_lookup_tcp finds.
    let listener = TcpListener::bind(SocketAddrV4::new(VIP, VIP_PORT))?;
    let client = connect_from(
        SocketAddrV4::new(CLIENT, 0),
        SocketAddrV4::new(VIP, VIP_PORT),
    )?;
    let (_server, _) = listener.accept()?;
    let port = match client.local_addr()? {
        std::net::SocketAddr::V4(a) => a.port(),
        other => return Err(io::Error::other(format!("client bound to {other}"))),
    };

    let eth0 = ifindex("eth0")?;
    let cases = cases(port);
    let ctxs: Vec<[u8; 24]> = cases.iter().map(|c| xdp_ctx(&c.frame, eth0)).collect();
    let mut out = vec![0u8; 2048];

    // Each verdict, output and counter, before measuring anything.
    for (case, ctx) in cases.iter().zip(&ctxs) {
        let before = counters(&module);
        let (_, verdict, len) = run_once(module.program(), &case.frame, ctx, &mut out);
        assert_eq!(
            verdict_name(verdict),
            verdict_name(case.verdict),
            "{}: wrong verdict",
            case.name
        );
        assert!(
            out[..len] == case.output[..],
            "{}: wrong output\n got {:02x?}\nwant {:02x?}",
            case.name,
            &out[..len],
            case.output
        );
        check_counters(case, &before, &counters(&module), 1);
    }

    let before = counters(&module);
    // Per case: floor, redirect (batch means).
    let mut samples: Vec<[Vec<f64>; 2]> = cases.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    {
        let ebpf = &*module.ebpf_mut();
        let redirect = xdp_program(ebpf, REDIRECT_PROGRAM).map_err(io::Error::other)?;
        let floor = xdp_program(ebpf, BENCH_FLOOR_PROGRAM).map_err(io::Error::other)?;
        for _ in 0..BATCHES {
            for (i, (case, ctx)) in cases.iter().zip(&ctxs).enumerate() {
                samples[i][0].push(batch_mean(floor, &case.frame, ctx, XDP_TX, &mut out));
                samples[i][1].push(batch_mean(
                    redirect,
                    &case.frame,
                    ctx,
                    case.verdict,
                    &mut out,
                ));
            }
        }
    }
    // Every measured run took its case's path.
    let after = counters(&module);
    let mut running = before;
    for case in &cases {
        let mut expected = running.clone();
        for (i, stat) in RedirectStat::ALL.iter().enumerate() {
            if case
                .stat
                .is_some_and(|s| s == *stat || *stat == RedirectStat::Total)
            {
                expected[i] += (BATCHES * RUNS) as u64;
            }
        }
        running = expected;
    }
    assert_eq!(
        running, after,
        "the counters after measuring are not those of every run taking its expected path"
    );
    drop(client);

    Ok(cases
        .iter()
        .zip(samples)
        .map(|(case, [f, r])| Figures {
            name: case.name,
            verdict: case.verdict,
            stat: case.stat,
            floor: median(f),
            redirect: median(r),
        })
        .collect())
}

fn main() {
    if let Err(e) = remove_lab_on_signals() {
        eprintln!("redirect bench: {e}");
        std::process::exit(1);
    }
    let ns = {
        let mut name = LAB.lock().unwrap_or_else(|e| e.into_inner());
        match lab() {
            Ok(ns) => {
                *name = Some(ns.name().to_string());
                ns
            }
            Err(e) => {
                eprintln!("redirect bench: building the lab namespace (root needed): {e}");
                std::process::exit(1);
            }
        }
    };
    let result = ns.run_in(measure);
    LAB.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(ns);
    let figures = match result {
        Ok(f) => f,
        Err(e) => {
            eprintln!("redirect bench: {e}");
            std::process::exit(1);
        }
    };

    println!("### Redirect module (`BPF_PROG_TEST_RUN`, repeat 1, original packet every run)\n");
    println!(
        "Median of {BATCHES} batch means of {RUNS} runs, kernel-reported ns per run, from a \
         thread inside a lab namespace (a listener on the VIP and one accepted connection to it; \
         the other backend in the neighbour table). \"Above floor\" subtracts the floor \
         (`bench_floor`) measured on the same packet the same way, in interleaved batches. Outer \
         IPv4 from an allowed director, inner IPv4 TCP; maps as `director-xdp redirect --self \
         198.51.100.11 --self 2001:db8:1::11 --allow 198.51.100.0/28 2001:db8:1::/124` writes \
         them.\n"
    );
    println!("| packet | verdict | floor (`XDP_TX`) | redirect above floor |");
    println!("|---|---|---:|---:|");
    for f in &figures {
        let verdict = match f.stat {
            Some(stat) => format!("{} (`{}`)", verdict_name(f.verdict), stat.name()),
            None => format!("{} (uncounted)", verdict_name(f.verdict)),
        };
        println!(
            "| {} | {verdict} | {:.1} | {:.1} |",
            f.name,
            f.floor,
            f.redirect - f.floor
        );
    }
}
