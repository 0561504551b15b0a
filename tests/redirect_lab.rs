//! The lab the redirect tests and benchmark run the redirect XDP program
//! in: a backend namespace with a veth `eth0` (forwarding on, permanent
//! neighbours), the program run on real bytes with `BPF_PROG_TEST_RUN` as
//! received on `eth0`, counter assertions, and TCP connections bound to a
//! given local address. Documentation addresses only.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd as _, FromRawFd as _, IntoRawFd as _, OwnedFd};
use std::time::Duration;

use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use director_xdp::redirect::{Redirect, RedirectConfig};
use proto::maps::RedirectStat;

use crate::{Daemon, Netns};

/// XDP verdicts.
pub const XDP_DROP: u32 = 1;
/// XDP verdicts.
pub const XDP_PASS: u32 = 2;
/// XDP verdicts.
pub const XDP_TX: u32 = 3;

/// The director, source of the GUE packets.
pub const DIRECTOR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The director, IPv6.
pub const DIRECTOR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The backend the program runs on.
pub const ME: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);
/// The backend the program runs on, IPv6.
pub const ME6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x11);
/// Another backend, a neighbour of `ME`.
pub const OTHER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 12);
/// Another backend, IPv6.
pub const OTHER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x12);
/// The client of the inner packets.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
/// The client, IPv6.
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 7);
/// The VIP of the inner packets.
pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The VIP, IPv6.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x10);

/// What a lab is made of.
#[derive(Debug)]
pub struct LabSpec<'a> {
    /// Role in the backend namespace's name.
    pub role: &'a str,
    /// Role in the name of the namespace holding the other end (`eth0`
    /// there) of the veth; `None`: the other end is `eth1` in the backend
    /// namespace itself.
    pub peer_role: Option<&'a str>,
    /// `eth0`'s MAC (`host`) and its peer's (`peer`).
    pub macs: &'a crate::pkt::Macs,
    /// Addresses of `eth0`, with their prefix lengths (IPv6: no DAD);
    /// forwarding is turned on for their families.
    pub addrs: &'a [(IpAddr, u8)],
    /// Permanent neighbours on `eth0`, at the peer's MAC.
    pub neighbours: &'a [IpAddr],
}

/// A backend namespace (`host`) and, if separate, the namespace holding
/// the other end of its veth; both removed on drop.
#[derive(Debug)]
pub struct Lab {
    /// The backend namespace.
    pub host: Netns,
    _peer: Option<Netns>,
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Lab {
    /// Builds the lab `spec` describes.
    pub fn new(spec: &LabSpec<'_>) -> io::Result<Lab> {
        let host = Netns::new(spec.role)?;
        let peer = spec.peer_role.map(Netns::new).transpose()?;
        let (host_mac, peer_mac) = (mac(spec.macs.host), mac(spec.macs.peer));
        match &peer {
            Some(p) => crate::veth(&host, "eth0", &host_mac, p, "eth0", &peer_mac)?,
            None => crate::veth(&host, "eth0", &host_mac, &host, "eth1", &peer_mac)?,
        }
        for (addr, len) in spec.addrs {
            let cidr = format!("{addr}/{len}");
            let mut args = vec!["addr", "add", &cidr, "dev", "eth0"];
            if addr.is_ipv6() {
                args.push("nodad");
            }
            host.ip(&args)?;
        }
        for ip in spec.neighbours {
            let fam = if ip.is_ipv6() { "-6" } else { "-4" };
            let ip = ip.to_string();
            host.ip(&[
                fam,
                "neigh",
                "add",
                &ip,
                "lladdr",
                &peer_mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ])?;
        }
        for (v6, key) in [
            (false, "net.ipv4.conf.eth0.forwarding=1"),
            (true, "net.ipv6.conf.eth0.forwarding=1"),
        ] {
            if spec.addrs.iter().any(|(a, _)| a.is_ipv6() == v6) {
                host.exec("sysctl", &["-qw", key])?;
            }
        }
        Ok(Lab { host, _peer: peer })
    }
}

/// The index of the interface `name` of the calling thread's namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: a valid NUL-terminated name.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// The `xdp_md` given to the kernel: the frame arrives on `ifindex`.
pub fn xdp_ctx(frame: &[u8], ifindex: u32) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    ctx
}

/// One repeat-1 run: kernel-reported duration, verdict, output length.
pub fn run_once(prog: &Xdp, frame: &[u8], ctx: &[u8], out: &mut [u8]) -> (Duration, u32, usize) {
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

/// Runs the program once on `frame` as received on `eth0` of the calling
/// thread's namespace: verdict and output frame.
pub fn run(prog: &Xdp, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    let eth0 = ifindex("eth0").expect("eth0 in the lab namespace");
    let (_, verdict, len) = run_once(prog, frame, &xdp_ctx(frame, eth0), &mut out);
    out.truncate(len);
    (verdict, out)
}

/// The module loaded and configured in the calling thread's namespace.
pub fn try_load(config: &RedirectConfig) -> io::Result<Redirect> {
    let mut module = Redirect::load().map_err(|e| {
        io::Error::other(format!("loading the redirect module (root needed): {e:?}"))
    })?;
    module
        .configure(config)
        .map_err(|e| io::Error::other(format!("configuring the redirect module: {e:?}")))?;
    Ok(module)
}

/// `try_load`, panicking on failure.
pub fn load(config: &RedirectConfig) -> Redirect {
    try_load(config).unwrap_or_else(|e| panic!("{e}"))
}

/// The value of `stat` in `stats` (0 if absent).
pub fn get(stats: &[(RedirectStat, u64)], stat: RedirectStat) -> u64 {
    stats
        .iter()
        .find(|(s, _)| *s == stat)
        .map_or(0, |(_, n)| *n)
}

/// Every counter other than those listed is zero, and `total` is their sum.
pub fn assert_only(stats: &[(RedirectStat, u64)], want: &[(RedirectStat, u64)]) {
    for (stat, n) in stats {
        let expected = if *stat == RedirectStat::Total {
            want.iter().map(|(_, n)| n).sum()
        } else {
            get(want, *stat)
        };
        assert_eq!(*n, expected, "counter {}: {stats:?}", stat.name());
    }
}

/// The counters of a running `redirect-xdp` agent, by name, as it
/// prints them on SIGUSR1 (its last `counters:` line after the signal).
pub fn agent_counters(agent: &Daemon) -> io::Result<Vec<(String, u64)>> {
    let before = agent.log().matches("counters:").count();
    agent.signal(libc::SIGUSR1)?;
    for _ in 0..100 {
        let log = agent.log();
        if log.matches("counters:").count() > before {
            let line = log
                .lines()
                .rfind(|l| l.starts_with("counters:"))
                .unwrap_or_default();
            let words: Vec<&str> = line["counters:".len()..].split_whitespace().collect();
            return Ok(words
                .chunks(2)
                .filter_map(|c| Some((c[0].to_string(), c.get(1)?.parse().ok()?)))
                .collect());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(io::Error::other(format!(
        "no counters after SIGUSR1:\n{}",
        agent.log()
    )))
}

/// [`agent_counters`] as `RedirectStat`s (every one of them, for
/// [`assert_only`]); fails on a name it does not know.
pub fn agent_stats(agent: &Daemon) -> io::Result<Vec<(RedirectStat, u64)>> {
    let named = agent_counters(agent)?;
    let stats: Vec<(RedirectStat, u64)> = named
        .iter()
        .map(|(name, n)| {
            RedirectStat::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .map(|s| (s, *n))
                .ok_or_else(|| io::Error::other(format!("unknown counter {name} in {named:?}")))
        })
        .collect::<io::Result<_>>()?;
    if stats.len() != RedirectStat::COUNT {
        return Err(io::Error::other(format!(
            "{} counters printed, {} expected: {named:?}",
            stats.len(),
            RedirectStat::COUNT
        )));
    }
    Ok(stats)
}

/// The `sockaddr_in` of `a`.
pub fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// A TCP connection from `local` to `remote`.
pub fn connect_from(local: SocketAddrV4, remote: SocketAddrV4) -> io::Result<TcpStream> {
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
