//! Next-hop MACs of the backends, from the kernel's routing and neighbour
//! tables over rtnetlink, in the network namespace the process runs in.
//!
//! The director sends with `XDP_TX`, out of the interface the packet came
//! in on, so a backend's GUE packets go to the MAC of its next hop *on that
//! interface*: the gateway of the kernel's route to the backend, or the
//! backend itself when it is on-link. For each backend [`Resolver::resolve`]
//! asks the kernel for the route (`RTM_GETROUTE` with the destination, the
//! same lookup as `ip route get`) and reads the next hop's entry from a dump
//! of the neighbour table (`RTM_GETNEIGH`). A backend whose route leaves by
//! another interface, or whose next hop has no usable entry, gets no MAC:
//! the director then uses `director.gateway_mac`.
//!
//! Multipath (ECMP) routes: the kernel's answer names the one path it would
//! take for a packet of its own. When that path leaves by another
//! interface, the route itself is asked for (`RTM_F_FIB_MATCH`) and one of
//! its live paths on the director's interface is taken instead, the same
//! one for a backend at every resolution (chosen by a hash of the backend's
//! address, so that backends spread over the routers). Routes through
//! nexthop objects (`ip nexthop`, `RTA_NH_ID`) are taken as the kernel
//! answers.
//!
//! The kernel only resolves a neighbour when it has something to send to
//! it, and the director's own packets bypass the kernel. [`probe`] gives it
//! something: an empty UDP datagram to the backend's discard port (9),
//! whose transmission makes the kernel resolve the next hop (ARP or
//! neighbour discovery) exactly as it would for any local traffic. The
//! backend ignores it, or at worst answers with an ICMP port unreachable.
//!
//! [`Watcher`] subscribes to neighbour and route changes (`RTNLGRP_NEIGH`,
//! `RTNLGRP_IPV4_ROUTE`, `RTNLGRP_IPV6_ROUTE`) so that the daemon resolves
//! again as soon as something moves, rather than only on its poll timer,
//! and to link changes (`RTNLGRP_LINK`) of the director's interface, so
//! that the daemon notices at once when the interface is deleted, comes
//! back or goes down. [`link_state`] reads the interface by name: its
//! index, whether it is up, and the XDP programs attached to it.
//!
//! Written on raw netlink sockets rather than with a netlink crate: a few
//! message types, a few attributes each, and blocking calls are all the
//! daemon needs, and the message parsing stays pure functions over bytes
//! that the unit tests below feed by hand.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

/// The port [`probe`] sends to: discard (RFC 863), which nothing answers.
pub const DISCARD_PORT: u16 = 9;

// From include/uapi/linux/netlink.h, rtnetlink.h and neighbour.h.
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_MULTI: u16 = 0x2;
const NLM_F_DUMP: u16 = 0x300;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;
/// `struct rtmsg` and `struct ndmsg` are both 12 bytes (already aligned).
const RTMSG_LEN: usize = 12;
const NDMSG_LEN: usize = 12;
/// `struct ifinfomsg`.
const IFINFOMSG_LEN: usize = 16;
const IFLA_IFNAME: u16 = 3;
const IFLA_XDP: u16 = 43;
/// Inside `IFLA_XDP`: the program when one mode has one, and per mode.
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
const IFF_UP: u32 = 0x1;
const IFF_RUNNING: u32 = 0x40;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_VIA: u16 = 18;
const RTA_MULTIPATH: u16 = 9;
/// `rtm_flags`: answer with the matching route entry, all of its paths.
const RTM_F_FIB_MATCH: u32 = 0x2000;
/// `rtnh_flags` of a path that does not carry traffic.
const RTNH_F_DEAD: u8 = 1;
const RTNH_F_LINKDOWN: u8 = 16;
/// `struct rtnexthop`: len u16, flags u8, hops u8, ifindex i32.
const RTNEXTHOP_LEN: usize = 8;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// Attribute types carry flag bits (nested, byte order) above these.
const NLA_TYPE_MASK: u16 = 0x3fff;
const RTN_UNICAST: u8 = 1;
const NUD_REACHABLE: u16 = 0x02;
const NUD_STALE: u16 = 0x04;
const NUD_DELAY: u16 = 0x08;
const NUD_PROBE: u16 = 0x10;
const NUD_NOARP: u16 = 0x40;
const NUD_PERMANENT: u16 = 0x80;
/// States whose link-layer address can be used: everything but
/// INCOMPLETE, FAILED and NONE. STALE only means that the kernel has not
/// confirmed the entry lately, which is always so for a next hop only the
/// director talks to; the MAC is still the best known.
const NUD_USABLE: u16 =
    NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_NOARP | NUD_PERMANENT;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;
/// Receive buffer: the kernel fills dump replies up to 32 KiB.
const RECV_BUF: usize = 64 * 1024;

/// Why the kernel's tables could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NeighError {
    /// The netlink socket could not be opened or bound.
    #[error("opening a NETLINK_ROUTE socket")]
    Open(#[source] io::Error),
    /// Talking to the kernel failed (not a refused lookup: those are
    /// [`Unresolved::NoRoute`]).
    #[error("{what}")]
    Netlink {
        /// The request, with its input.
        what: String,
        /// What the socket reported.
        #[source]
        source: io::Error,
    },
    /// The change-notification thread could not start.
    #[error("starting the netlink watcher thread")]
    Thread(#[source] io::Error),
}

/// Why a backend has no next-hop MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unresolved {
    /// The kernel has no route to it (its answer, e.g. "Network is
    /// unreachable").
    NoRoute(String),
    /// The route is not a unicast route out of an interface (local,
    /// blackhole, unreachable, prohibit...): `rtm_type`.
    NotUnicast(u8),
    /// The route leaves by another interface than the director's, which
    /// `XDP_TX` cannot reach.
    OtherInterface {
        /// The route's output interface index (0: none given).
        oif: u32,
    },
    /// The next hop has no usable neighbour entry (none yet, incomplete or
    /// failed).
    NoNeighbour {
        /// The gateway, or the backend itself when on-link.
        next_hop: IpAddr,
    },
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unresolved::NoRoute(e) => write!(f, "no route ({e})"),
            Unresolved::NotUnicast(t) => write!(f, "the route is not unicast (rtm_type {t})"),
            Unresolved::OtherInterface { oif } => {
                write!(f, "the route leaves by another interface (ifindex {oif})")
            }
            Unresolved::NoNeighbour { next_hop } => {
                write!(f, "next hop {next_hop} has no usable neighbour entry")
            }
        }
    }
}

/// Next-hop MACs of a set of backends at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Backends with a next-hop MAC.
    pub macs: BTreeMap<IpAddr, [u8; 6]>,
    /// Backends without one, and why.
    pub unresolved: BTreeMap<IpAddr, Unresolved>,
}

impl Snapshot {
    /// The next-hop MAC of `backend`, if resolved: the `mac_of` that
    /// `Dataplane::apply` and `refresh_macs` take.
    pub fn mac_of(&self, backend: IpAddr) -> Option<[u8; 6]> {
        self.macs.get(&backend).copied()
    }
}

/// A MAC as `xx:xx:xx:xx:xx:xx`, for logs.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// The kernel's route to one destination, as far as next hops go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Route {
    /// `rtm_type`.
    kind: u8,
    /// Output interface.
    oif: Option<u32>,
    /// Gateway (`RTA_GATEWAY`, or `RTA_VIA` for an IPv4 route through an
    /// IPv6 next hop).
    gateway: Option<IpAddr>,
}

/// One live path of a multipath route (`RTA_MULTIPATH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Path {
    oif: u32,
    gateway: Option<IpAddr>,
}

/// The path of a multipath route that packets to `backend` take from the
/// director: one of the live paths on `ifindex`, the same for a backend at
/// every call, spread over the paths by the backend's address.
fn pick_path(backend: IpAddr, paths: &[Path], ifindex: u32) -> Option<Path> {
    let ours: Vec<Path> = paths.iter().copied().filter(|p| p.oif == ifindex).collect();
    if ours.is_empty() {
        return None;
    }
    // FNV-1a of the address: stable across runs and builds.
    let bytes = match backend {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    ours.get((hash % ours.len() as u64) as usize).copied()
}

/// One neighbour table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Neighbour {
    ifindex: u32,
    addr: IpAddr,
    state: u16,
    lladdr: Option<[u8; 6]>,
}

/// Neighbour entries by (interface, address).
type NeighbourTable = HashMap<(u32, IpAddr), Neighbour>;

/// The next hop's MAC for a backend, given the route the kernel chose and
/// the neighbour table: the pure decision behind [`Resolver::resolve`].
fn next_hop_mac(
    backend: IpAddr,
    route: &Route,
    ifindex: u32,
    neighbours: &NeighbourTable,
) -> Result<[u8; 6], Unresolved> {
    if route.kind != RTN_UNICAST {
        return Err(Unresolved::NotUnicast(route.kind));
    }
    let oif = route.oif.unwrap_or(0);
    if oif != ifindex {
        return Err(Unresolved::OtherInterface { oif });
    }
    let next_hop = route.gateway.unwrap_or(backend);
    neighbours
        .get(&(ifindex, next_hop))
        .filter(|n| n.state & NUD_USABLE != 0)
        .and_then(|n| n.lladdr)
        // An all-zero or multicast MAC (some NOARP entries) is no next hop.
        .filter(|mac| *mac != [0; 6] && mac[0] & 1 == 0)
        .ok_or(Unresolved::NoNeighbour { next_hop })
}

/// Resolves backends' next-hop MACs through one netlink socket.
#[derive(Debug)]
pub struct Resolver {
    socket: Socket,
    ifindex: u32,
}

impl Resolver {
    /// A resolver for next hops on the interface with index `ifindex`.
    pub fn new(ifindex: u32) -> Result<Self, NeighError> {
        let socket = Socket::open(0).map_err(NeighError::Open)?;
        // A kernel that never answers would hang the daemon's loop; a
        // local netlink request normally takes microseconds.
        socket
            .set_recv_timeout(Duration::from_secs(5))
            .map_err(NeighError::Open)?;
        Ok(Resolver { socket, ifindex })
    }

    /// Resolves on the interface with index `ifindex` from now on (the
    /// interface was deleted and created again).
    pub fn set_ifindex(&mut self, ifindex: u32) {
        self.ifindex = ifindex;
    }

    /// The next-hop MAC of every backend in `backends`, now.
    pub fn resolve(&mut self, backends: &BTreeSet<IpAddr>) -> Result<Snapshot, NeighError> {
        let mut neighbours = NeighbourTable::new();
        for (family, name) in [(AF_INET, "IPv4"), (AF_INET6, "IPv6")] {
            // A family no backend uses can still be a next hop's (IPv4
            // routes through IPv6 gateways), so both are read; the tables
            // of one interface are small.
            let reply = self
                .socket
                .transact(RTM_GETNEIGH, NLM_F_DUMP, &neigh_dump_request(family))
                .and_then(|r| r.map_err(io::Error::from_raw_os_error))
                .map_err(|source| NeighError::Netlink {
                    what: format!("dumping the {name} neighbour table"),
                    source,
                })?;
            for (ty, body) in reply {
                if ty == RTM_NEWNEIGH
                    && let Some(n) = parse_neighbour(&body)
                    && n.ifindex == self.ifindex
                {
                    neighbours.insert((n.ifindex, n.addr), n);
                }
            }
        }
        let mut snapshot = Snapshot::default();
        for &backend in backends {
            let reply = self
                .socket
                .transact(RTM_GETROUTE, 0, &route_request(backend))
                .map_err(|source| NeighError::Netlink {
                    what: format!("asking the kernel for the route to {backend}"),
                    source,
                })?;
            let outcome = match reply {
                Err(errno) => Err(Unresolved::NoRoute(
                    io::Error::from_raw_os_error(errno).to_string(),
                )),
                Ok(messages) => match messages
                    .iter()
                    .find(|(ty, _)| *ty == RTM_NEWROUTE)
                    .and_then(|(_, body)| parse_route(body))
                {
                    None => Err(Unresolved::NoRoute(
                        "no route in the kernel's answer".into(),
                    )),
                    Some(route) => next_hop_mac(backend, &route, self.ifindex, &neighbours),
                },
            };
            // The kernel's own path leaves elsewhere: a multipath route may
            // have one on the director's interface.
            let outcome = match outcome {
                Err(Unresolved::OtherInterface { oif }) => self
                    .multipath_route(backend)
                    .and_then(|paths| pick_path(backend, &paths, self.ifindex))
                    .map_or(Err(Unresolved::OtherInterface { oif }), |p| {
                        let route = Route {
                            kind: RTN_UNICAST,
                            oif: Some(p.oif),
                            gateway: p.gateway,
                        };
                        next_hop_mac(backend, &route, self.ifindex, &neighbours)
                    }),
                other => other,
            };
            match outcome {
                Ok(mac) => {
                    snapshot.macs.insert(backend, mac);
                }
                Err(why) => {
                    snapshot.unresolved.insert(backend, why);
                }
            }
        }
        Ok(snapshot)
    }
}

impl Resolver {
    /// The live paths of the route to `backend`, if it is a multipath route.
    fn multipath_route(&mut self, backend: IpAddr) -> Option<Vec<Path>> {
        let mut request = route_request(backend);
        request[8..12].copy_from_slice(&RTM_F_FIB_MATCH.to_ne_bytes());
        let reply = self.socket.transact(RTM_GETROUTE, 0, &request).ok()?.ok()?;
        reply
            .iter()
            .find(|(ty, _)| *ty == RTM_NEWROUTE)
            .and_then(|(_, body)| parse_multipath(body))
            .filter(|paths| !paths.is_empty())
    }
}

/// The live paths of an `RTM_NEWROUTE` body's `RTA_MULTIPATH`, if it has
/// one.
fn parse_multipath(body: &[u8]) -> Option<Vec<Path>> {
    let family = *body.first()?;
    let (_, mut nexthops) =
        attributes(body.get(RTMSG_LEN..)?).find(|(ty, _)| *ty == RTA_MULTIPATH)?;
    let mut paths = Vec::new();
    while nexthops.len() >= RTNEXTHOP_LEN {
        let len = usize::from(u16_at(nexthops, 0)?);
        if len < RTNEXTHOP_LEN || len > nexthops.len() {
            break;
        }
        let flags = nexthops[2];
        let oif = u32_at(nexthops, 4)?;
        let mut gateway = None;
        for (ty, payload) in attributes(&nexthops[RTNEXTHOP_LEN..len]) {
            match ty {
                RTA_GATEWAY => gateway = parse_addr(family, payload),
                RTA_VIA => {
                    let via = u16_at(payload, 0).and_then(|f| u8::try_from(f).ok());
                    gateway = via.and_then(|f| parse_addr(f, payload.get(2..)?));
                }
                _ => {}
            }
        }
        if flags & (RTNH_F_DEAD | RTNH_F_LINKDOWN) == 0 {
            paths.push(Path { oif, gateway });
        }
        nexthops = nexthops.get(align4(len)..).unwrap_or_default();
    }
    Some(paths)
}

/// Makes the kernel resolve the next hop towards `backend`: sends an empty
/// UDP datagram to its discard port. Fire and forget; the datagram waits in
/// the kernel's neighbour queue until the next hop answers.
pub fn probe(backend: IpAddr) -> io::Result<()> {
    let local: SocketAddr = match backend {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    socket.send_to(&[], (backend, DISCARD_PORT))?;
    Ok(())
}

/// What a [`Watcher`] notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A route, or a neighbour on the interface: resolve the next hops
    /// again.
    NextHops,
    /// The interface itself: created, deleted, renamed, up or down, or its
    /// XDP program changed through netlink. Read it again with
    /// [`link_state`].
    Link,
}

/// Calls a function whenever the kernel's routes, the neighbours on one
/// interface, or that interface itself change. Stops (within a second)
/// when dropped.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
    ifindex: Arc<AtomicU32>,
}

impl Watcher {
    /// Subscribes and starts the thread that calls `changed`. The interface
    /// is `interface`, whose index is `ifindex` now: link messages about
    /// either (a new interface of that name, a rename of that index) are
    /// [`Notice::Link`].
    pub fn spawn(
        ifindex: u32,
        interface: &str,
        changed: impl Fn(Notice) + Send + 'static,
    ) -> Result<Self, NeighError> {
        let groups = (libc::RTMGRP_NEIGH
            | libc::RTMGRP_IPV4_ROUTE
            | libc::RTMGRP_IPV6_ROUTE
            | libc::RTMGRP_LINK) as u32;
        let socket = Socket::open(groups).map_err(NeighError::Open)?;
        // The timeout only bounds how long a dropped watcher lingers.
        socket
            .set_recv_timeout(Duration::from_secs(1))
            .map_err(NeighError::Open)?;
        let stop = Arc::new(AtomicBool::new(false));
        let index = Arc::new(AtomicU32::new(ifindex));
        let watched = Watched {
            stop: Arc::clone(&stop),
            ifindex: Arc::clone(&index),
            name: interface.to_string(),
        };
        std::thread::Builder::new()
            .name("netlink-watch".into())
            .spawn(move || watch(&socket, &watched, &changed))
            .map_err(NeighError::Thread)?;
        Ok(Watcher {
            stop,
            ifindex: index,
        })
    }

    /// Follows the interface under its new index (it was created again):
    /// neighbours on it, and link messages about it.
    pub fn set_ifindex(&self, ifindex: u32) {
        self.ifindex.store(ifindex, Ordering::Relaxed);
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the watcher thread follows.
struct Watched {
    stop: Arc<AtomicBool>,
    ifindex: Arc<AtomicU32>,
    name: String,
}

/// What one datagram of notifications is about: (next hops, link).
fn classify(datagram: &[u8], ifindex: u32, name: &str) -> (bool, bool) {
    let (mut hops, mut link) = (false, false);
    for (hdr, body) in messages(datagram) {
        match hdr.ty {
            RTM_NEWROUTE | RTM_DELROUTE => hops = true,
            RTM_NEWNEIGH | RTM_DELNEIGH => {
                hops |= parse_neighbour(body).is_some_and(|n| n.ifindex == ifindex);
            }
            RTM_NEWLINK | RTM_DELLINK => {
                link |= parse_link(body)
                    .is_some_and(|l| l.ifindex == ifindex || l.name.as_deref() == Some(name));
            }
            _ => {}
        }
    }
    (hops, link)
}

fn watch(socket: &Socket, watched: &Watched, changed: &dyn Fn(Notice)) {
    let mut buf = vec![0u8; RECV_BUF];
    while !watched.stop.load(Ordering::Relaxed) {
        match socket.recv(&mut buf) {
            Ok(n) => {
                let ifindex = watched.ifindex.load(Ordering::Relaxed);
                let (hops, link) = classify(&buf[..n], ifindex, &watched.name);
                if link {
                    changed(Notice::Link);
                }
                if hops {
                    changed(Notice::NextHops);
                }
            }
            Err(e) if is_timeout(&e) => {}
            // ENOBUFS: notifications were lost while the socket was full,
            // so something changed that we did not see.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                changed(Notice::Link);
                changed(Notice::NextHops);
            }
            Err(e) => {
                tracing::warn!(error = %e, "netlink watcher stopped; next hops and the interface are now only polled");
                return;
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// A `NETLINK_ROUTE` socket (also used for the redirect module's nsid
/// requests).
#[derive(Debug)]
pub(crate) struct Socket {
    fd: OwnedFd,
    seq: u32,
}

/// A request's reply: the messages, or the errno the kernel refused it with.
pub(crate) type Reply = Result<Vec<(u16, Vec<u8>)>, i32>;

impl Socket {
    /// Opens a socket subscribed to the multicast `groups` (a bit mask of
    /// `RTMGRP_*`; 0 for requests only).
    pub(crate) fn open(groups: u32) -> io::Result<Socket> {
        // SAFETY: plain socket(2) call; the result is checked below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut addr = kernel_address();
        addr.nl_groups = groups;
        // SAFETY: `addr` is a valid sockaddr_nl and the length is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Socket { fd, seq: 0 })
    }

    fn set_recv_timeout(&self, timeout: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
        };
        // SAFETY: `tv` is a valid timeval and the length is its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const tv).cast(),
                mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one datagram; fails rather than return a truncated one.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n > buf.len() {
            return Err(io::Error::other(format!(
                "netlink message of {n} bytes truncated to {}",
                buf.len()
            )));
        }
        Ok(n)
    }

    /// Sends one request and collects its reply: every message of a dump
    /// until `NLMSG_DONE`, or the single answer of a get.
    pub(crate) fn transact(&mut self, ty: u16, flags: u16, body: &[u8]) -> io::Result<Reply> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let request = encode_message(ty, NLM_F_REQUEST | flags, seq, body);
        let to = kernel_address();
        // SAFETY: `request` and `to` are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                (&raw const to).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; RECV_BUF];
        let mut out = Vec::new();
        loop {
            let n = self.recv(&mut buf)?;
            for (hdr, body) in messages(&buf[..n]) {
                // Replies to an earlier request that timed out: not ours.
                if hdr.seq != seq {
                    continue;
                }
                match hdr.ty {
                    NLMSG_DONE => return Ok(Ok(out)),
                    NLMSG_ERROR => {
                        let errno = body
                            .get(..4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        // errno 0 is an acknowledgement.
                        return Ok(if errno == 0 { Ok(out) } else { Err(-errno) });
                    }
                    ty => {
                        out.push((ty, body.to_vec()));
                        if hdr.flags & NLM_F_MULTI == 0 {
                            return Ok(Ok(out));
                        }
                    }
                }
            }
        }
    }
}

/// An interface as the kernel describes it (`RTM_NEWLINK`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    /// Its index.
    pub ifindex: u32,
    /// Its name (`IFLA_IFNAME`), if the message carried one.
    pub name: Option<String>,
    /// `IFF_UP`: administratively up.
    pub admin_up: bool,
    /// `IFF_RUNNING`: operationally up (carrier, RFC 2863 state up).
    pub running: bool,
    /// The XDP programs attached to it, in any mode (`IFLA_XDP`).
    pub xdp_programs: Vec<u32>,
}

impl LinkState {
    /// Up and running: frames can come in.
    pub fn up(&self) -> bool {
        self.admin_up && self.running
    }
}

/// The interface named `name` in this network namespace, or `None` when
/// there is none.
pub fn link_state(name: &str) -> io::Result<Option<LinkState>> {
    let mut body = vec![0u8; IFINFOMSG_LEN];
    let mut c_name = name.as_bytes().to_vec();
    c_name.push(0);
    push_attribute(&mut body, IFLA_IFNAME, &c_name);
    link_request(&body)
}

/// The interface with index `ifindex` of this network namespace, or `None`
/// when there is none.
fn link_by_index(ifindex: u32) -> io::Result<Option<LinkState>> {
    let mut body = vec![0u8; IFINFOMSG_LEN];
    body[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    link_request(&body)
}

fn link_request(body: &[u8]) -> io::Result<Option<LinkState>> {
    let mut socket = Socket::open(0)?;
    socket.set_recv_timeout(Duration::from_secs(2))?;
    match socket.transact(RTM_GETLINK, 0, body)? {
        Err(errno) if errno == libc::ENODEV => Ok(None),
        Err(errno) => Err(io::Error::from_raw_os_error(errno)),
        Ok(reply) => Ok(reply
            .iter()
            .filter(|(ty, _)| *ty == RTM_NEWLINK)
            .find_map(|(_, msg)| parse_link(msg))),
    }
}

/// The id of the XDP program attached to interface `ifindex` of this
/// network namespace, if there is exactly one (`IFLA_XDP_PROG_ID`).
pub fn xdp_prog_id(ifindex: u32) -> io::Result<Option<u32>> {
    Ok(
        link_by_index(ifindex)?.and_then(|l| match l.xdp_programs.as_slice() {
            [one] => Some(*one),
            _ => None,
        }),
    )
}

/// An `RTM_NEWLINK` (or `RTM_DELLINK`) body.
fn parse_link(body: &[u8]) -> Option<LinkState> {
    let ifindex = u32_at(body, 4)?;
    let flags = u32_at(body, 8)?;
    let mut link = LinkState {
        ifindex,
        name: None,
        admin_up: flags & IFF_UP != 0,
        running: flags & IFF_RUNNING != 0,
        xdp_programs: Vec::new(),
    };
    for (ty, payload) in attributes(body.get(IFINFOMSG_LEN..)?) {
        match ty {
            IFLA_IFNAME => {
                let name = payload.split(|b| *b == 0).next().unwrap_or_default();
                link.name = Some(String::from_utf8_lossy(name).into_owned());
            }
            IFLA_XDP => {
                for (x, v) in attributes(payload) {
                    if matches!(
                        x,
                        IFLA_XDP_PROG_ID
                            | IFLA_XDP_DRV_PROG_ID
                            | IFLA_XDP_SKB_PROG_ID
                            | IFLA_XDP_HW_PROG_ID
                    ) && let Some(id) = u32_at(v, 0).filter(|id| *id != 0)
                        && !link.xdp_programs.contains(&id)
                    {
                        link.xdp_programs.push(id);
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}

fn kernel_address() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all-zero is the kernel's address.
    let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr
}

/// The fixed header of a netlink message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    ty: u16,
    flags: u16,
    seq: u32,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The messages of one datagram, with their bodies; stops at the first
/// malformed length.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (Header, &[u8])> {
    std::iter::from_fn(move || {
        let len = u32_at(buf, 0)? as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return None;
        }
        let hdr = Header {
            ty: u16_at(buf, 4)?,
            flags: u16_at(buf, 6)?,
            seq: u32_at(buf, 8)?,
        };
        let body = &buf[NLMSG_HDRLEN..len];
        buf = buf.get(align4(len)..).unwrap_or_default();
        Some((hdr, body))
    })
}

/// The attributes (`struct rtattr`) of a body, after its fixed part.
fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(buf, 0)?);
        if len < 4 || len > buf.len() {
            return None;
        }
        let ty = u16_at(buf, 2)? & NLA_TYPE_MASK;
        let payload = &buf[4..len];
        buf = buf.get(align4(len)..).unwrap_or_default();
        Some((ty, payload))
    })
}

fn encode_message(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + body.len();
    let mut m = Vec::with_capacity(align4(len));
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    m.extend_from_slice(body);
    m.resize(align4(len), 0);
    m
}

fn push_attribute(out: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(align4(out.len()), 0);
}

/// `struct rtmsg` plus `RTA_DST`: "which route would a packet to `dst`
/// take", as `ip route get` asks.
fn route_request(dst: IpAddr) -> Vec<u8> {
    let (family, bits, addr) = match dst {
        IpAddr::V4(a) => (AF_INET, 32, a.octets().to_vec()),
        IpAddr::V6(a) => (AF_INET6, 128, a.octets().to_vec()),
    };
    // family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    let mut body = vec![family, bits, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    push_attribute(&mut body, RTA_DST, &addr);
    body
}

/// `struct ndmsg` asking for every entry of one family.
fn neigh_dump_request(family: u8) -> Vec<u8> {
    let mut body = vec![0u8; NDMSG_LEN];
    body[0] = family;
    body
}

fn parse_addr(family: u8, b: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?))),
        _ => None,
    }
}

/// An `RTM_NEWROUTE` body.
fn parse_route(body: &[u8]) -> Option<Route> {
    let family = *body.first()?;
    let kind = *body.get(7)?;
    let mut route = Route {
        kind,
        oif: None,
        gateway: None,
    };
    for (ty, payload) in attributes(body.get(RTMSG_LEN..)?) {
        match ty {
            RTA_OIF => route.oif = u32_at(payload, 0),
            RTA_GATEWAY => route.gateway = parse_addr(family, payload),
            // struct rtvia: a u16 family, then the address.
            RTA_VIA => {
                let via_family = u16_at(payload, 0).and_then(|f| u8::try_from(f).ok());
                route.gateway = via_family.and_then(|f| parse_addr(f, payload.get(2..)?));
            }
            _ => {}
        }
    }
    Some(route)
}

/// An `RTM_NEWNEIGH` (or `RTM_DELNEIGH`) body; `None` without a
/// destination address.
fn parse_neighbour(body: &[u8]) -> Option<Neighbour> {
    let family = *body.first()?;
    let ifindex = u32_at(body, 4)?;
    let state = u16_at(body, 8)?;
    let mut addr = None;
    let mut lladdr = None;
    for (ty, payload) in attributes(body.get(NDMSG_LEN..)?) {
        match ty {
            NDA_DST => addr = parse_addr(family, payload),
            NDA_LLADDR => lladdr = <[u8; 6]>::try_from(payload).ok(),
            _ => {}
        }
    }
    Some(Neighbour {
        ifindex,
        addr: addr?,
        state,
        lladdr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const IFINDEX: u32 = 7;
    const MAC: [u8; 6] = [0x02, 0, 0x5e, 0, 0x53, 0x22];

    fn backend() -> IpAddr {
        "198.51.100.12".parse().expect("address")
    }

    fn gateway() -> IpAddr {
        "198.51.100.1".parse().expect("address")
    }

    fn neighbour_body(family: u8, ifindex: u32, state: u16, dst: &[u8], lladdr: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8; NDMSG_LEN];
        body[0] = family;
        body[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        body[8..10].copy_from_slice(&state.to_ne_bytes());
        push_attribute(&mut body, NDA_DST, dst);
        push_attribute(&mut body, NDA_LLADDR, lladdr);
        body
    }

    fn table(entries: &[(IpAddr, u16, [u8; 6])]) -> NeighbourTable {
        entries
            .iter()
            .map(|&(addr, state, mac)| {
                (
                    (IFINDEX, addr),
                    Neighbour {
                        ifindex: IFINDEX,
                        addr,
                        state,
                        lladdr: Some(mac),
                    },
                )
            })
            .collect()
    }

    /// An `RTM_NEWROUTE` body of a multipath IPv4 route: (flags, ifindex,
    /// gateway) per path.
    fn multipath_body(paths: &[(u8, u32, [u8; 4])]) -> Vec<u8> {
        let mut nexthops = Vec::new();
        for &(flags, ifindex, gw) in paths {
            let mut attrs = Vec::new();
            push_attribute(&mut attrs, RTA_GATEWAY, &gw);
            let len = (RTNEXTHOP_LEN + attrs.len()) as u16;
            nexthops.extend_from_slice(&len.to_ne_bytes());
            nexthops.extend_from_slice(&[flags, 0]);
            nexthops.extend_from_slice(&ifindex.to_ne_bytes());
            nexthops.extend_from_slice(&attrs);
        }
        let mut body = vec![AF_INET, 25, 0, 0, 254, 0, 0, RTN_UNICAST, 0, 0, 0, 0];
        push_attribute(&mut body, RTA_DST, &[198, 51, 100, 128]);
        push_attribute(&mut body, RTA_MULTIPATH, &nexthops);
        body
    }

    #[test]
    fn a_multipath_route_gives_a_live_path_on_the_directors_interface() {
        let gw = |last: u8| IpAddr::from([198, 51, 100, last]);
        let body = multipath_body(&[
            (0, IFINDEX + 1, [198, 51, 100, 1]),
            (0, IFINDEX, [198, 51, 100, 2]),
            (RTNH_F_LINKDOWN, IFINDEX, [198, 51, 100, 3]),
            (0, IFINDEX, [198, 51, 100, 4]),
            (RTNH_F_DEAD, IFINDEX, [198, 51, 100, 5]),
        ]);
        let paths = parse_multipath(&body).expect("a multipath route");
        assert_eq!(
            paths,
            [
                Path {
                    oif: IFINDEX + 1,
                    gateway: Some(gw(1))
                },
                Path {
                    oif: IFINDEX,
                    gateway: Some(gw(2))
                },
                Path {
                    oif: IFINDEX,
                    gateway: Some(gw(4))
                },
            ],
            "dead and link-down paths are left out"
        );
        // Each backend gets a path on the interface, always the same one,
        // and backends spread over both.
        let mut seen = std::collections::BTreeSet::new();
        for last in 130..160u8 {
            let b = IpAddr::from([198, 51, 100, last]);
            let p = pick_path(b, &paths, IFINDEX).expect("a path on the interface");
            assert_eq!(p.oif, IFINDEX);
            assert_eq!(pick_path(b, &paths, IFINDEX), Some(p), "stable");
            seen.insert(p.gateway);
        }
        assert_eq!(seen.len(), 2, "spread over both paths: {seen:?}");
        assert_eq!(pick_path(gw(140), &paths[..1], IFINDEX), None);
        // A route without RTA_MULTIPATH has none.
        let mut plain = vec![AF_INET, 32, 0, 0, 254, 0, 0, RTN_UNICAST, 0, 0, 0, 0];
        push_attribute(&mut plain, RTA_OIF, &IFINDEX.to_ne_bytes());
        assert_eq!(parse_multipath(&plain), None);
    }

    #[test]
    fn on_link_backend_is_its_own_next_hop() {
        let route = Route {
            kind: RTN_UNICAST,
            oif: Some(IFINDEX),
            gateway: None,
        };
        let neighbours = table(&[(backend(), NUD_REACHABLE, MAC)]);
        assert_eq!(
            next_hop_mac(backend(), &route, IFINDEX, &neighbours),
            Ok(MAC)
        );
    }

    #[test]
    fn routed_backend_uses_the_gateway_entry_even_when_stale() {
        let route = Route {
            kind: RTN_UNICAST,
            oif: Some(IFINDEX),
            gateway: Some(gateway()),
        };
        let neighbours = table(&[(gateway(), NUD_STALE, MAC)]);
        assert_eq!(
            next_hop_mac(backend(), &route, IFINDEX, &neighbours),
            Ok(MAC)
        );
    }

    #[test]
    fn unusable_or_missing_entries_leave_the_backend_unresolved() {
        let route = Route {
            kind: RTN_UNICAST,
            oif: Some(IFINDEX),
            gateway: Some(gateway()),
        };
        let missing = Err(Unresolved::NoNeighbour {
            next_hop: gateway(),
        });
        for state in [0x01 /* INCOMPLETE */, 0x20 /* FAILED */] {
            let neighbours = table(&[(gateway(), state, MAC)]);
            assert_eq!(
                next_hop_mac(backend(), &route, IFINDEX, &neighbours),
                missing
            );
        }
        let zero = table(&[(gateway(), NUD_NOARP, [0; 6])]);
        assert_eq!(next_hop_mac(backend(), &route, IFINDEX, &zero), missing);
        // The backend's own entry does not stand in for the gateway's.
        let own = table(&[(backend(), NUD_REACHABLE, MAC)]);
        assert_eq!(next_hop_mac(backend(), &route, IFINDEX, &own), missing);
    }

    #[test]
    fn routes_xdp_tx_cannot_follow_are_refused() {
        let neighbours = table(&[(backend(), NUD_REACHABLE, MAC)]);
        let elsewhere = Route {
            kind: RTN_UNICAST,
            oif: Some(IFINDEX + 1),
            gateway: None,
        };
        assert_eq!(
            next_hop_mac(backend(), &elsewhere, IFINDEX, &neighbours),
            Err(Unresolved::OtherInterface { oif: IFINDEX + 1 })
        );
        let local = Route {
            kind: 2,
            oif: Some(IFINDEX),
            gateway: None,
        };
        assert_eq!(
            next_hop_mac(backend(), &local, IFINDEX, &neighbours),
            Err(Unresolved::NotUnicast(2))
        );
    }

    #[test]
    fn parses_a_route_reply_with_gateway_and_via() {
        let mut body = route_request(backend());
        body[7] = RTN_UNICAST;
        push_attribute(&mut body, RTA_OIF, &IFINDEX.to_ne_bytes());
        push_attribute(&mut body, RTA_GATEWAY, &[198, 51, 100, 1]);
        assert_eq!(
            parse_route(&body),
            Some(Route {
                kind: RTN_UNICAST,
                oif: Some(IFINDEX),
                gateway: Some(gateway()),
            })
        );
        let mut via = route_request(backend());
        let v6: Ipv6Addr = "fe80::1".parse().expect("address");
        let mut payload = u16::from(AF_INET6).to_ne_bytes().to_vec();
        payload.extend_from_slice(&v6.octets());
        push_attribute(&mut via, RTA_VIA, &payload);
        assert_eq!(
            parse_route(&via).and_then(|r| r.gateway),
            Some(IpAddr::V6(v6))
        );
    }

    #[test]
    fn parses_neighbour_messages_inside_a_datagram() {
        let v6: Ipv6Addr = "2001:db8:20::1".parse().expect("address");
        let a = neighbour_body(AF_INET, IFINDEX, NUD_REACHABLE, &[198, 51, 100, 12], &MAC);
        let b = neighbour_body(AF_INET6, 3, NUD_STALE, &v6.octets(), &MAC);
        let mut datagram = encode_message(RTM_NEWNEIGH, NLM_F_MULTI, 9, &a);
        datagram.extend(encode_message(RTM_NEWNEIGH, NLM_F_MULTI, 9, &b));
        datagram.extend(encode_message(NLMSG_DONE, NLM_F_MULTI, 9, &[0; 4]));
        let got: Vec<(Header, Option<Neighbour>)> = messages(&datagram)
            .map(|(h, body)| (h, parse_neighbour(body)))
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0.ty, RTM_NEWNEIGH);
        assert_eq!(got[0].0.seq, 9);
        assert_eq!(
            got[0].1,
            Some(Neighbour {
                ifindex: IFINDEX,
                addr: backend(),
                state: NUD_REACHABLE,
                lladdr: Some(MAC),
            })
        );
        assert_eq!(
            got[1].1.map(|n| (n.ifindex, n.addr)),
            Some((3, IpAddr::V6(v6)))
        );
        assert_eq!(got[2].0.ty, NLMSG_DONE);
    }

    #[test]
    fn malformed_lengths_end_parsing_without_panicking() {
        let a = neighbour_body(AF_INET, IFINDEX, NUD_REACHABLE, &[198, 51, 100, 12], &MAC);
        let datagram = encode_message(RTM_NEWNEIGH, 0, 1, &a);
        for cut in 0..datagram.len() {
            for (_, body) in messages(&datagram[..cut]) {
                let _ = parse_neighbour(body);
            }
        }
        let mut bad = datagram.clone();
        bad[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(messages(&bad).count(), 0);
        // An attribute claiming more than its message holds ends the list.
        let mut body = neigh_dump_request(AF_INET);
        body.extend_from_slice(&200u16.to_ne_bytes());
        body.extend_from_slice(&NDA_DST.to_ne_bytes());
        assert_eq!(parse_neighbour(&body), None);
    }

    #[test]
    fn route_request_carries_the_destination() {
        let v6: IpAddr = "2001:db8:20::3".parse().expect("address");
        let body = route_request(v6);
        assert_eq!(body[0], AF_INET6);
        assert_eq!(body[1], 128);
        let attrs: Vec<(u16, &[u8])> = attributes(&body[RTMSG_LEN..]).collect();
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs[0].0, RTA_DST);
        assert_eq!(parse_addr(AF_INET6, attrs[0].1), Some(v6));
        assert_eq!(
            encode_message(RTM_GETROUTE, NLM_F_REQUEST, 1, &body).len(),
            16 + 12 + 20
        );
    }

    fn link_body(ifindex: u32, flags: u32, name: &str, xdp: &[(u16, u32)]) -> Vec<u8> {
        let mut body = vec![0u8; IFINFOMSG_LEN];
        body[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        body[8..12].copy_from_slice(&flags.to_ne_bytes());
        let mut c_name = name.as_bytes().to_vec();
        c_name.push(0);
        push_attribute(&mut body, IFLA_IFNAME, &c_name);
        if !xdp.is_empty() {
            let mut nested = Vec::new();
            for (ty, id) in xdp {
                push_attribute(&mut nested, *ty, &id.to_ne_bytes());
            }
            // NLA_F_NESTED, as the kernel sets it.
            push_attribute(&mut body, IFLA_XDP | 0x8000, &nested);
        }
        body
    }

    #[test]
    fn parses_a_link_with_its_xdp_programs_in_every_mode() {
        let body = link_body(
            7,
            IFF_UP | IFF_RUNNING,
            "eth0",
            &[(IFLA_XDP_DRV_PROG_ID, 31), (IFLA_XDP_PROG_ID, 31)],
        );
        assert_eq!(
            parse_link(&body),
            Some(LinkState {
                ifindex: 7,
                name: Some("eth0".into()),
                admin_up: true,
                running: true,
                xdp_programs: vec![31],
            })
        );
        let both = link_body(
            7,
            IFF_UP,
            "eth0",
            &[(IFLA_XDP_SKB_PROG_ID, 9), (IFLA_XDP_DRV_PROG_ID, 31)],
        );
        let l = parse_link(&both).expect("a link");
        assert_eq!(l.xdp_programs, [9, 31]);
        assert!(!l.up(), "up without carrier is not up");
        assert_eq!(
            parse_link(&link_body(7, 0, "eth0", &[])).map(|l| l.xdp_programs),
            Some(vec![])
        );
        assert_eq!(parse_link(&body[..8]), None);
    }

    #[test]
    fn link_notifications_about_the_interface_are_told_apart() {
        let mut datagram = encode_message(RTM_DELLINK, 0, 0, &link_body(7, 0, "eth0", &[]));
        assert_eq!(classify(&datagram, 7, "eth0"), (false, true));
        // Created again: another index, the same name.
        assert_eq!(classify(&datagram, 3, "eth0"), (false, true));
        // Renamed: the same index, another name.
        assert_eq!(classify(&datagram, 7, "wan0"), (false, true));
        // Another interface.
        assert_eq!(classify(&datagram, 3, "wan0"), (false, false));
        let a = neighbour_body(AF_INET, 7, NUD_REACHABLE, &[198, 51, 100, 12], &MAC);
        datagram.extend(encode_message(RTM_NEWNEIGH, 0, 0, &a));
        assert_eq!(classify(&datagram, 7, "eth0"), (true, true));
        assert_eq!(classify(&datagram, 3, "wan0"), (false, false));
    }

    #[test]
    fn formats_macs_for_logs() {
        assert_eq!(format_mac(&MAC), "02:00:5e:00:53:22");
    }
}
