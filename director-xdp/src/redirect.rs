//! [`Redirect`]: the loaded backend-side redirect module and the code that
//! writes its maps (allowed source prefixes, this host's addresses, the
//! socket-lookup namespace), and reads its counters.
//!
//! The decision itself is SPEC.md section 3; docs/backend.md has the host
//! setup and the counters.

use std::net::IpAddr;
use std::os::fd::AsRawFd as _;
use std::path::Path;

use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, MapData, lpm_trie::Key},
    programs::Xdp,
};
use proto::config::Prefix;
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
        let mut ebpf = Ebpf::load(crate::redirect_object())
            .map_err(|e| DataplaneError::Load(LoadError::Object(e)))?;
        load_xdp(&mut ebpf, REDIRECT_PROGRAM)?;
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
    Ok(())
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
