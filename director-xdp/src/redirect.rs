//! [`Redirect`]: the loaded backend-side redirect module and the code that
//! writes its maps (allowed source prefixes, this host's addresses, the
//! socket-lookup namespace), and reads its counters.
//!
//! The decision itself is docs/spec.md section 3; docs/backend.md has the host
//! setup and the counters.

use std::net::IpAddr;
use std::os::fd::AsRawFd as _;
use std::path::Path;

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, MapData, lpm_trie::Key},
    programs::Xdp,
};
use proto::config::{Prefix, unusable_address};
use proto::maps::{
    AllowKey, MAX_ALLOWED, MAX_SELF, REDIRECT_NETNS, RedirectSettings, RedirectStat,
    lpm_prefix_len, redirect_names as names,
};

use crate::{DataplaneError, LoadError, REDIRECT_PROGRAM, load_xdp, xdp_program};

/// What the redirect module is told about its host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedirectConfig {
    /// This host's addresses: "the next hop is this host", and the first of
    /// each family is the outer source of forwarded packets.
    pub selves: Vec<IpAddr>,
    /// Source prefixes GUE is accepted from: the directors' and the other
    /// backends' (second-chance packets come from the backend that
    /// forwarded them).
    pub allow: Vec<Prefix>,
    /// Network namespace id (nsid, as seen from the interface's namespace)
    /// where sockets are looked up too.
    pub netns_id: Option<u32>,
}

/// Why a redirect config was refused.
#[derive(Debug, thiserror::Error)]
pub enum RedirectConfigError {
    /// No address of this host.
    #[error("no address of this host (--self) given")]
    NoSelf,
    /// No allowed source prefix.
    #[error("no allowed source prefix (--allow: the directors and the other backends) given")]
    NoAllow,
    /// An address of this host that no director or backend could send to.
    #[error("--self {addr}: {addr} is {why}: it cannot be a backend's address")]
    UnusableSelf {
        /// The address.
        addr: IpAddr,
        /// What it is ([`proto::config::unusable_address`]).
        why: &'static str,
    },
    /// An allowed prefix that holds no address a director or backend can
    /// send from.
    #[error(
        "--allow {prefix}: every address of it is {why}: no director or backend sends from there"
    )]
    UnusableAllow {
        /// The prefix.
        prefix: Prefix,
        /// What its addresses are.
        why: &'static str,
    },
    /// `--self` names an address no interface of this host holds: the
    /// module would take packets for this host for someone else's (and
    /// forward this host's own second chances nowhere).
    #[error(
        "--self {addr}: no interface of this host (in this network namespace) has that address; the ones it has: {held}"
    )]
    NotOnHost {
        /// The address.
        addr: IpAddr,
        /// The addresses the host holds, for the message.
        held: String,
    },
    /// Too many of something.
    #[error("{count} {what}, the redirect module holds at most {max}")]
    TooMany {
        /// What.
        what: &'static str,
        /// How many were given.
        count: usize,
        /// The limit.
        max: u32,
    },
}

/// The loaded redirect program and its maps.
#[derive(Debug)]
pub struct Redirect {
    ebpf: Ebpf,
}

impl Redirect {
    /// Loads the object and its `redirect` program, attached to nothing.
    pub fn load() -> Result<Self, DataplaneError> {
        Self::load_object(crate::redirect_object())
    }

    /// As [`Redirect::load`], from another build of the module's object
    /// (the redirect benchmark compares builds in one run).
    pub fn load_object(object: &[u8]) -> Result<Self, DataplaneError> {
        let mut ebpf =
            Ebpf::load(object).map_err(|e| DataplaneError::LoadRedirect(LoadError::Object(e)))?;
        load_xdp(&mut ebpf, REDIRECT_PROGRAM).map_err(DataplaneError::LoadRedirect)?;
        Ok(Redirect { ebpf })
    }

    /// The program, to attach or test-run.
    pub fn program(&self) -> &Xdp {
        // Loaded in `load`, so it is there and an XDP program.
        #[allow(clippy::unwrap_used)]
        xdp_program(&self.ebpf, REDIRECT_PROGRAM).unwrap()
    }

    /// The program, mutably (to attach and detach it).
    pub fn program_mut(&mut self) -> &mut Xdp {
        #[allow(clippy::unwrap_used)]
        load_xdp(&mut self.ebpf, REDIRECT_PROGRAM).unwrap()
    }

    /// The whole object (its other programs share nothing with this one).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Writes `config` to the maps. Call once, before attaching.
    pub fn configure(&mut self, config: &RedirectConfig) -> Result<(), DataplaneError> {
        check(config)?;
        let mut settings = RedirectSettings::default();
        for ip in &config.selves {
            match ip {
                IpAddr::V4(a) if settings.self_v4 == [0; 4] => settings.self_v4 = a.octets(),
                IpAddr::V6(a) if settings.self_v6 == [0; 16] => settings.self_v6 = a.octets(),
                _ => {}
            }
        }
        if let Some(id) = config.netns_id {
            settings.netns_id = id;
            settings.flags |= REDIRECT_NETNS;
        }

        let map = self
            .ebpf
            .map_mut(names::ALLOW)
            .ok_or_else(|| missing(names::ALLOW))?;
        let mut allow: LpmTrie<&mut MapData, AllowKey, u8> =
            LpmTrie::try_from(map).map_err(|source| DataplaneError::Map {
                name: names::ALLOW,
                source,
            })?;
        for p in &config.allow {
            let key = Key::new(lpm_prefix_len(u32::from(p.len)), AllowKey::new(p.addr));
            allow
                .insert(&key, &1, 0)
                .map_err(|source| DataplaneError::Write {
                    map: names::ALLOW,
                    what: format!("prefix {p}"),
                    source,
                })?;
        }

        let map = self
            .ebpf
            .map_mut(names::SELF)
            .ok_or_else(|| missing(names::SELF))?;
        let mut selves: HashMap<&mut MapData, AllowKey, u8> =
            HashMap::try_from(map).map_err(|source| DataplaneError::Map {
                name: names::SELF,
                source,
            })?;
        for ip in &config.selves {
            selves
                .insert(&AllowKey::new(*ip), &1, 0)
                .map_err(|source| DataplaneError::Write {
                    map: names::SELF,
                    what: format!("address {ip}"),
                    source,
                })?;
        }

        let map = self
            .ebpf
            .map_mut(names::SETTINGS)
            .ok_or_else(|| missing(names::SETTINGS))?;
        let mut array: Array<&mut MapData, RedirectSettings> =
            Array::try_from(map).map_err(|source| DataplaneError::Map {
                name: names::SETTINGS,
                source,
            })?;
        array
            .set(0, &settings, 0)
            .map_err(|source| DataplaneError::Write {
                map: names::SETTINGS,
                what: "the settings".to_string(),
                source,
            })?;
        Ok(())
    }

    /// Every counter, summed over the CPUs, in index order.
    pub fn stats(&self) -> Result<Vec<(RedirectStat, u64)>, DataplaneError> {
        crate::dataplane::sum_counters(&self.ebpf, names::STATS, &RedirectStat::ALL, |s| {
            (s.index(), s.name())
        })
    }
}

/// Checks a config against the maps' limits.
pub fn check(config: &RedirectConfig) -> Result<(), RedirectConfigError> {
    if config.selves.is_empty() {
        return Err(RedirectConfigError::NoSelf);
    }
    if config.allow.is_empty() {
        return Err(RedirectConfigError::NoAllow);
    }
    if config.allow.len() > MAX_ALLOWED as usize {
        return Err(RedirectConfigError::TooMany {
            what: "allowed prefixes",
            count: config.allow.len(),
            max: MAX_ALLOWED,
        });
    }
    if config.selves.len() > MAX_SELF as usize {
        return Err(RedirectConfigError::TooMany {
            what: "addresses of this host",
            count: config.selves.len(),
            max: MAX_SELF,
        });
    }
    for &addr in &config.selves {
        if let Some(why) = unusable_address(addr) {
            return Err(RedirectConfigError::UnusableSelf { addr, why });
        }
    }
    for &prefix in &config.allow {
        // The classes are ranges: a prefix whose first and last addresses
        // are of one class is all of it. Wider prefixes (0.0.0.0/0 too)
        // hold usable addresses and pass.
        let first = unusable_address(prefix.addr);
        if first.is_some() && first == unusable_address(last_address(prefix)) {
            let why = first.unwrap_or_default();
            return Err(RedirectConfigError::UnusableAllow { prefix, why });
        }
    }
    Ok(())
}

/// The highest address of `p`.
fn last_address(p: Prefix) -> IpAddr {
    match p.addr {
        IpAddr::V4(a) => {
            let host = u32::MAX.checked_shr(u32::from(p.len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) | host).into())
        }
        IpAddr::V6(a) => {
            let host = u128::MAX.checked_shr(u32::from(p.len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) | host).into())
        }
    }
}

/// Checks that every `--self` address is held by an interface of this host
/// (in the calling thread's network namespace).
pub fn check_on_host(selves: &[IpAddr]) -> Result<(), RedirectConfigError> {
    let held = host_addresses().unwrap_or_default();
    match selves.iter().find(|a| !held.contains(a)) {
        None => Ok(()),
        Some(&addr) => Err(RedirectConfigError::NotOnHost {
            addr,
            held: if held.is_empty() {
                "none".to_string()
            } else {
                held.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        }),
    }
}

/// The IP addresses of every interface of this network namespace
/// (getifaddrs(3)).
pub fn host_addresses() -> std::io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned, alive
        // until freeifaddrs; ifa_addr is null or a sockaddr of ifa_addr's
        // family, whose size that family fixes.
        unsafe {
            let sa = (*cur).ifa_addr;
            if !sa.is_null() {
                match i32::from((*sa).sa_family) {
                    libc::AF_INET => {
                        let sin = &*sa.cast::<libc::sockaddr_in>();
                        out.push(IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*sa.cast::<libc::sockaddr_in6>();
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
    }
    // SAFETY: the head getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Formats counters as `name value` lines.
pub fn format_stats(stats: &[(RedirectStat, u64)]) -> String {
    stats
        .iter()
        .map(|(s, n)| format!("{} {n}\n", s.name()))
        .collect()
}

fn missing(name: &'static str) -> DataplaneError {
    DataplaneError::Map {
        name,
        source: aya::maps::MapError::InvalidName {
            name: name.to_string(),
        },
    }
}

/// `RTM_NEWNSID`, `RTM_GETNSID` and their attributes (linux/net_namespace.h).
const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;
const NLM_F_ACK: u16 = 4;

/// The id (nsid) of the network namespace at `path` as seen from the
/// caller's namespace, assigning one if it has none: the socket lookups
/// of a BPF program take this id, not an inode.
pub fn netns_id(path: &Path) -> std::io::Result<u32> {
    let ns = std::fs::File::open(path)?;
    let fd = ns.as_raw_fd() as u32;
    if let Some(id) = nsid_request(RTM_GETNSID, fd, None)? {
        return Ok(id);
    }
    nsid_request(RTM_NEWNSID, fd, Some(-1))?;
    nsid_request(RTM_GETNSID, fd, None)?.ok_or_else(|| {
        std::io::Error::other(format!(
            "{} still has no nsid after RTM_NEWNSID",
            path.display()
        ))
    })
}

/// One rtnetlink nsid request; the id in the answer, if any.
fn nsid_request(ty: u16, fd: u32, nsid: Option<i32>) -> std::io::Result<Option<u32>> {
    // rtgenmsg (family, padded to 4 bytes), then the attributes.
    let mut body = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    let mut attr = |ty: u16, value: [u8; 4]| {
        body.extend_from_slice(&8u16.to_ne_bytes());
        body.extend_from_slice(&ty.to_ne_bytes());
        body.extend_from_slice(&value);
    };
    attr(NETNSA_FD, fd.to_ne_bytes());
    if let Some(id) = nsid {
        attr(NETNSA_NSID, id.to_ne_bytes());
    }
    let flags = if nsid.is_some() { NLM_F_ACK } else { 0 };
    let messages = crate::neigh::Socket::open(0)?
        .transact(ty, flags, &body)?
        .map_err(std::io::Error::from_raw_os_error)?;
    let Some((_, reply)) = messages.first() else {
        return Ok(None);
    };
    let u16_at = |at: usize| {
        reply
            .get(at..at + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
    };
    // rtgenmsg (4), then attributes.
    let mut at = 4;
    while let (Some(alen), Some(aty)) = (u16_at(at), u16_at(at + 2)) {
        if alen < 4 {
            break;
        }
        if aty & 0x3fff == NETNSA_NSID {
            let id = reply
                .get(at + 4..at + 8)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            // NETNSA_NSID_NOT_ASSIGNED (-1) is no id.
            return Ok(id.and_then(|id| u32::try_from(id).ok()));
        }
        at += (usize::from(alen) + 3) & !3;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(selves: &[&str], allow: &[&str]) -> RedirectConfig {
        RedirectConfig {
            selves: selves.iter().map(|s| s.parse().expect("address")).collect(),
            allow: allow.iter().map(|s| s.parse().expect("prefix")).collect(),
            netns_id: None,
        }
    }

    #[test]
    fn allow_prefixes_are_refused_only_when_no_address_of_them_can_send() {
        for ok in [
            "0.0.0.0/0",
            "::/0",
            "192.0.0.0/2",
            "198.51.100.0/24",
            "2001:db8::/32",
        ] {
            check(&config(&["198.51.100.11"], &[ok])).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "127.0.0.0/8",
            "127.0.0.1/32",
            "224.0.0.0/4",
            "ff00::/8",
            "fe80::/10",
            "::1/128",
            "169.254.0.0/16",
        ] {
            assert!(
                matches!(
                    check(&config(&["198.51.100.11"], &[bad])),
                    Err(RedirectConfigError::UnusableAllow { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn last_address_of_a_prefix() {
        let last = |p: &str| last_address(p.parse().expect("prefix")).to_string();
        assert_eq!(last("0.0.0.0/0"), "255.255.255.255");
        assert_eq!(last("198.51.100.0/24"), "198.51.100.255");
        assert_eq!(last("198.51.100.7/32"), "198.51.100.7");
        assert_eq!(last("fe80::/10"), "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(last("::/0"), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    }
}
