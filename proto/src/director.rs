//! The XDP director's behaviour as a pure function of (state, frame): the
//! user-space reference of `docs/director.md`.
//!
//! [`Model`] holds what the director's maps hold (the binds, the built
//! tables, the settings, the backends' MACs) and [`Model::process`] says
//! what the director does to one frame: the verdict, the bytes that leave,
//! the counters it bumps and, when it reads a table row, the decision.
//! Nothing here does I/O, so the golden-packet tests, `director-xdp replay`
//! and unit tests can all ask it what a frame should become.
//!
//! It is written from `docs/director.md` alone, not from the eBPF code: it
//! is the second opinion the eBPF program is checked against. Parsing is
//! its own (typed offsets below); the hash and the GUE header come from
//! [`crate::flow`] and [`crate::wire`], which define them.
//!
//! Backends appear as addresses, never as indexes of the backend map, so an
//! expected output does not depend on how the loader allocates indexes.
//!
//! Where docs/director.md leaves room, the model reads it so:
//!
//! - "Present" means in the frame, as in "total length ... <= the bytes
//!   present": extension headers, L4 headers and an ICMP error's quote are
//!   read up to the end of the frame, not of the IP packet (IPv4 total
//!   length, IPv6 payload length).
//! - An IPv6 fragment is looked up by its fragment header's next header,
//!   the only protocol every fragment of the datagram shows (the rule is
//!   that they all reach the same backend); a later fragment's walk stops
//!   at its fragment header, since what follows is data. A first fragment
//!   is still parsed to its L4 header, and malformed if that is truncated.
//! - `icmp_handled` counts every encapsulated ICMP packet, echo requests
//!   included (the table says "(ICMP)").
//! - A quoted IPv4 header with IHL < 5 is malformed, like the packet's own.
//! - A bind's `bytes` are the frame's length as received, L2 included.
//! - Without `director.mtu` the model has no path MTU: nothing is too big
//!   (the daemon would use its interface's MTU, which the model does not
//!   know).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use crate::Encap;
use crate::config::{Bind, Config, Prefix};
use crate::flow::{Flow, flow_hash, gue_source_port, row_of};
use crate::maps::{
    BindCounters, DirectorStat, HASH_DST_PORT, HASH_SRC_PORT, MAX_BINDS, MAX_PORT_RANGES,
    MAX_TABLES,
};
use crate::mtu;
use crate::table::{Rendezvous, TableError};
use crate::wire::{GuePacket, GueRepr, Hops, InnerProto};

/// Ethernet header offsets.
mod eth {
    use super::Range;
    /// Length of an untagged header.
    pub const HLEN: usize = 14;
    /// Destination MAC.
    pub const DST: Range<usize> = 0..6;
    /// EtherType (or TPID of an 802.1Q tag).
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// Length of one 802.1Q tag (TPID is the EtherType field above, TCI follows).
    pub const VLAN_TAG_LEN: usize = 4;
    /// The tag's own TPID and TCI, kept in the output.
    pub const VLAN_TAG: Range<usize> = 12..16;
    /// EtherType after one tag.
    pub const INNER_ETHERTYPE: Range<usize> = 16..18;
    /// IPv4.
    pub const TYPE_IPV4: u16 = 0x0800;
    /// IPv6.
    pub const TYPE_IPV6: u16 = 0x86dd;
    /// 802.1Q VLAN tag.
    pub const TYPE_VLAN: u16 = 0x8100;
}

/// IPv4 header offsets.
mod ipv4 {
    use super::Range;
    /// Length without options.
    pub const MIN_HLEN: usize = 20;
    /// Version (high nibble) and IHL (low nibble).
    pub const VER_IHL: usize = 0;
    /// Total length.
    pub const TOTAL_LEN: Range<usize> = 2..4;
    /// Flags and fragment offset.
    pub const FRAG: Range<usize> = 6..8;
    /// Type of service (DSCP and ECN).
    pub const TOS: usize = 1;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Don't-fragment flag within [`FRAG`].
    pub const DF: u16 = 0x4000;
    /// More-fragments flag within [`FRAG`].
    pub const MF: u16 = 0x2000;
    /// Fragment offset within [`FRAG`].
    pub const OFFSET_MASK: u16 = 0x1fff;
    /// Protocol.
    pub const PROTO: usize = 9;
    /// Header checksum.
    pub const CHECKSUM: Range<usize> = 10..12;
    /// Source address.
    pub const SRC: Range<usize> = 12..16;
    /// Destination address.
    pub const DST: Range<usize> = 16..20;
}

/// IPv6 header offsets.
mod ipv6 {
    use super::Range;
    /// Fixed header length.
    pub const HLEN: usize = 40;
    /// Version in the high nibble of byte 0.
    pub const VER: usize = 0;
    /// Payload length.
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    /// Next header.
    pub const NEXT: usize = 6;
    /// Hop limit.
    pub const HOP_LIMIT: usize = 7;
    /// Source address.
    pub const SRC: Range<usize> = 8..24;
    /// Destination address.
    pub const DST: Range<usize> = 24..40;
    /// Extension headers the director walks.
    pub const HOP_BY_HOP: u8 = 0;
    /// Routing header.
    pub const ROUTING: u8 = 43;
    /// Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// Destination options.
    pub const DEST_OPTS: u8 = 60;
    /// Most extension headers walked; one more is malformed.
    pub const MAX_EXT: usize = 6;
    /// Length of the fragment header.
    pub const FRAG_HLEN: usize = 8;
    /// Offset and flags within the fragment header.
    pub const FRAG_FIELD: Range<usize> = 2..4;
    /// M (more fragments) flag within [`FRAG_FIELD`].
    pub const FRAG_M: u16 = 1;
    /// Shift of the offset within [`FRAG_FIELD`].
    pub const FRAG_OFFSET_SHIFT: u32 = 3;
}

/// L4 offsets.
mod l4 {
    use super::Range;
    /// Source port (TCP and UDP).
    pub const SRC_PORT: Range<usize> = 0..2;
    /// Destination port (TCP and UDP).
    pub const DST_PORT: Range<usize> = 2..4;
    /// TCP header without options.
    pub const TCP_MIN_HLEN: usize = 20;
    /// TCP data offset (high nibble).
    pub const TCP_DOFF: usize = 12;
    /// UDP header.
    pub const UDP_HLEN: usize = 8;
    /// ICMP and ICMPv6 header: type, code, checksum, 4 more bytes.
    pub const ICMP_HLEN: usize = 8;
    /// ICMP type.
    pub const ICMP_TYPE: usize = 0;
    /// ICMP code.
    pub const ICMP_CODE: usize = 1;
    /// ICMP checksum.
    pub const ICMP_CHECKSUM: Range<usize> = 2..4;
}

/// IP protocol numbers.
mod proto_num {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// ICMPv4 echo request.
const ICMP_ECHO_REQUEST: u8 = 8;
/// ICMPv4 destination unreachable, with code 4: fragmentation needed.
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
/// ICMPv6 packet too big.
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
/// ICMPv6 echo request.
const ICMPV6_ECHO_REQUEST: u8 = 128;

/// Outer IPv4 header fields that never vary: DF, TTL 64, UDP.
const OUTER_V4_FLAGS: u16 = 0x4000;
const OUTER_TTL: u8 = 64;

/// The IPv4 type of service of the director's ICMP errors: precedence 6,
/// internetwork control (RFC 1812 4.3.2.5).
const ICMP_ERROR_TOS: u8 = 0xc0;
/// TTL / hop limit of the director's ICMP errors.
const ICMP_ERROR_TTL: u8 = 64;

/// `enum xdp_action` values (include/uapi/linux/bpf.h).
pub mod xdp_action {
    /// `XDP_ABORTED`: never returned by the director.
    pub const ABORTED: u32 = 0;
    /// `XDP_DROP`.
    pub const DROP: u32 = 1;
    /// `XDP_PASS`.
    pub const PASS: u32 = 2;
    /// `XDP_TX`.
    pub const TX: u32 = 3;
}

/// What the director does with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// `XDP_PASS`: to the host's stack, untouched.
    Pass,
    /// `XDP_DROP`.
    Drop,
    /// `XDP_TX`: encapsulated and sent back out of the interface.
    Tx,
}

impl Verdict {
    /// The `xdp_action` value the program returns.
    pub const fn xdp_action(self) -> u32 {
        match self {
            Verdict::Pass => xdp_action::PASS,
            Verdict::Drop => xdp_action::DROP,
            Verdict::Tx => xdp_action::TX,
        }
    }

    /// The verdict of an `xdp_action` value, `None` for `XDP_ABORTED`,
    /// `XDP_REDIRECT` and unknown values.
    pub const fn from_xdp_action(action: u32) -> Option<Verdict> {
        match action {
            xdp_action::PASS => Some(Verdict::Pass),
            xdp_action::DROP => Some(Verdict::Drop),
            xdp_action::TX => Some(Verdict::Tx),
            _ => None,
        }
    }
}

/// The flow a packet is hashed as (after the swap of an ICMP error's quote).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The client.
    pub src: IpAddr,
    /// The VIP.
    pub dst: IpAddr,
    /// Client port; 0 for ICMP echo and fragments.
    pub src_port: u16,
    /// VIP port; 0 for ICMP echo and fragments.
    pub dst_port: u16,
}

/// How the director chose a backend: set whenever it read a table row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Name of the bind's table.
    pub table: String,
    /// The flow that was hashed.
    pub flow: FlowKey,
    /// `HASH_*` bits actually hashed (a fragment's exclude the ports).
    pub hash_fields: u8,
    /// SipHash-2-4 of the flow under the table's `hash_key`.
    pub hash: u64,
    /// `hash & 0xffff`.
    pub row: u32,
    /// The row's primary: the outer destination.
    pub primary: IpAddr,
    /// The row's alternates: the hop list, in order (none with IP-in-IP).
    pub alternates: Vec<IpAddr>,
    /// How the packet is wrapped: the table's encapsulation.
    pub encap: Encap,
}

/// What the director does with one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The program's return value.
    pub verdict: Verdict,
    /// The frame after the program: the input for `Pass`, the GUE packet for
    /// `Tx`. For `Drop` the input: a dropped frame never leaves, and
    /// docs/director.md says nothing of its bytes.
    pub output: Vec<u8>,
    /// The `DIR_STATS` counters bumped (once each), in index order.
    pub counted: Vec<DirectorStat>,
    /// The bind the frame was for (`Tx` and `encap_failure`).
    pub bind: Option<u32>,
    /// What `DIR_BIND_STATS[bind]` gains: one packet and the frame's length
    /// as received (set for `Tx` only).
    pub bind_counters: Option<(u32, BindCounters)>,
    /// The table decision (`Tx`, and `encap_failure` after a row was read).
    pub decision: Option<Decision>,
}

impl Outcome {
    /// Whether `stat` was counted.
    pub fn counts(&self, stat: DirectorStat) -> bool {
        self.counted.contains(&stat)
    }
}

/// Why a config cannot be modelled (the loader refuses it too).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// More tables than the director's maps hold.
    #[error("{count} tables: the director holds at most {MAX_TABLES}")]
    TooManyTables {
        /// Tables in the config.
        count: usize,
    },
    /// More binds than the bind array holds.
    #[error("{count} binds: the director holds at most {MAX_BINDS}")]
    TooManyBinds {
        /// Binds in the config, all tables together.
        count: usize,
    },
    /// A VIP prefix would carry more port ranges than a VIP entry holds,
    /// its own plus those of the shorter prefixes that contain it.
    #[error(
        "VIP {prefix}/{proto}: {count} port ranges including those of containing prefixes, at most {MAX_PORT_RANGES} fit"
    )]
    TooManyRanges {
        /// The VIP prefix.
        prefix: Prefix,
        /// "tcp" or "udp".
        proto: &'static str,
        /// Ranges it would carry.
        count: usize,
    },
    /// The table builder refused a table's backends.
    #[error("building table \"{table}\"")]
    Table {
        /// The table's name.
        table: String,
        /// What the builder said.
        #[source]
        source: TableError,
    },
}

/// One bind as the director sees it: its id is its position in [`Model`].
#[derive(Clone, Copy, Debug)]
struct ModelBind {
    bind: Bind,
    table: usize,
}

/// One table: its name, packet-hash key, encapsulation and rows.
struct ModelTable {
    name: String,
    hash_key: [u8; 16],
    encap: Encap,
    table: Rendezvous,
}

/// The director's state: what its maps hold after the loader applied a
/// config.
pub struct Model {
    binds: Vec<ModelBind>,
    tables: Vec<ModelTable>,
    src_v4: Option<Ipv4Addr>,
    src_v6: Option<Ipv6Addr>,
    gateway_mac: Option<[u8; 6]>,
    hash_fields: u8,
    /// Path MTU toward the backends; [`mtu::NO_LIMIT`] without one.
    mtu: u32,
    /// Backends whose MAC is resolved; the others use the gateway MAC.
    macs: HashMap<IpAddr, [u8; 6]>,
}

impl fmt::Debug for Model {
    // Not derived: the tables' 65,536 rows would flood any failure message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let binds: Vec<String> = self
            .binds
            .iter()
            .map(|b| format!("{} -> {}", b.bind, self.tables[b.table].name))
            .collect();
        f.debug_struct("Model")
            .field("binds", &binds)
            .field(
                "tables",
                &self.tables.iter().map(|t| &t.name).collect::<Vec<_>>(),
            )
            .field("src_v4", &self.src_v4)
            .field("src_v6", &self.src_v6)
            .field("gateway_mac", &self.gateway_mac)
            .field("hash_fields", &self.hash_fields)
            .field("mtu", &self.mtu)
            .field("macs", &self.macs)
            .finish()
    }
}

/// Where a frame is going, once parsing is done.
enum Class {
    /// Not for a bind: `XDP_PASS`, `not_vip`.
    NotVip,
    /// For a VIP address, but malformed: `XDP_DROP`, `malformed`.
    Malformed,
    /// For a bind: encapsulate.
    Bind(Target),
}

/// A frame that is for a bind, with what encapsulation needs.
struct Target {
    bind: u32,
    /// Offset of the original IP header in the frame.
    l3: usize,
    inner: InnerProto,
    flow: FlowKey,
    /// The flow's client port for the GUE source port.
    client_src_port: u16,
    fragment: bool,
    icmp: bool,
    /// An ICMP error (frag-needed, packet-too-big): never answered with one.
    icmp_error: bool,
}

/// What the L4 header of an unfragmented packet (or a first fragment) says.
enum L4 {
    /// TCP or UDP with these ports.
    Ports { src: u16, dst: u16 },
    /// ICMP or ICMPv6 echo request.
    Echo,
    /// Frag-needed / packet-too-big quoting this packet (as it went from the
    /// VIP to the client).
    Quote {
        proto: u8,
        src: IpAddr,
        dst: IpAddr,
        src_port: u16,
        dst_port: u16,
    },
    /// Nothing the director handles: pass.
    Other,
    /// For a VIP, but too short or inconsistent.
    Malformed,
}

fn be16(bytes: &[u8], at: Range<usize>) -> Option<u16> {
    let b = bytes.get(at)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn addr_v4(bytes: &[u8], at: Range<usize>) -> Option<IpAddr> {
    let b: [u8; 4] = bytes.get(at)?.try_into().ok()?;
    Some(IpAddr::V4(Ipv4Addr::from(b)))
}

fn addr_v6(bytes: &[u8], at: Range<usize>) -> Option<IpAddr> {
    let b: [u8; 16] = bytes.get(at)?.try_into().ok()?;
    Some(IpAddr::V6(Ipv6Addr::from(b)))
}

fn octets(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The Internet checksum (RFC 1071) of an IPv4 header whose checksum field
/// holds zero; over a header with its checksum in place, 0 means valid.
/// ICMP and ICMPv6 (with its pseudo-header) use the same sum.
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    let (words, rest) = header.as_chunks::<2>();
    let mut sum: u32 = words
        .iter()
        .map(|w| u32::from(u16::from_be_bytes(*w)))
        .sum();
    if let [last] = rest {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Model {
    /// The director's state after the loader applied `config`, with
    /// `mac_of` the neighbour table: a backend whose MAC it knows is sent
    /// to directly, the others through the gateway MAC.
    pub fn new(
        config: &Config,
        mac_of: &dyn Fn(IpAddr) -> Option<[u8; 6]>,
    ) -> Result<Model, ModelError> {
        if config.tables.len() > MAX_TABLES as usize {
            return Err(ModelError::TooManyTables {
                count: config.tables.len(),
            });
        }
        let binds: Vec<ModelBind> = config
            .tables
            .iter()
            .enumerate()
            .flat_map(|(table, t)| t.binds.iter().map(move |&bind| ModelBind { bind, table }))
            .collect();
        if binds.len() > MAX_BINDS as usize {
            return Err(ModelError::TooManyBinds { count: binds.len() });
        }
        for b in &binds {
            let p = b.bind.prefix;
            let count = binds
                .iter()
                .filter(|o| {
                    o.bind.proto == b.bind.proto
                        && o.bind.prefix.len <= p.len
                        && o.bind.prefix.contains(p.addr)
                })
                .count();
            if count > MAX_PORT_RANGES {
                return Err(ModelError::TooManyRanges {
                    prefix: p,
                    proto: b.bind.proto.as_str(),
                    count,
                });
            }
        }
        let mut tables = Vec::with_capacity(config.tables.len());
        let mut macs = HashMap::new();
        for t in &config.tables {
            let table = t.rendezvous().map_err(|source| ModelError::Table {
                table: t.name.clone(),
                source,
            })?;
            for b in &t.backends {
                if let Some(mac) = mac_of(b.backend.addr) {
                    macs.insert(b.backend.addr, mac);
                }
            }
            tables.push(ModelTable {
                name: t.name.clone(),
                hash_key: t.hash_key,
                encap: t.encap,
                table,
            });
        }
        let d = &config.director;
        Ok(Model {
            binds,
            tables,
            // An all-zero address or MAC in the settings map means "none".
            src_v4: d.source_v4.filter(|a| !a.is_unspecified()),
            src_v6: d.source_v6.filter(|a| !a.is_unspecified()),
            gateway_mac: d.gateway_mac.filter(|m| *m != [0; 6]),
            hash_fields: d.hash_fields.0,
            mtu: d.mtu.unwrap_or(mtu::NO_LIMIT),
            macs,
        })
    }

    /// The bind with id `id`: binds are numbered in config order, tables
    /// first, then their binds.
    pub fn bind(&self, id: u32) -> Option<&Bind> {
        self.binds.get(id as usize).map(|b| &b.bind)
    }

    /// Name of the table serving bind `id`.
    pub fn bind_table(&self, id: u32) -> Option<&str> {
        let b = self.binds.get(id as usize)?;
        Some(self.tables[b.table].name.as_str())
    }

    /// Number of binds (ids are `0..bind_count()`).
    pub fn bind_count(&self) -> usize {
        self.binds.len()
    }

    /// What the director does with `frame`.
    pub fn process(&self, frame: &[u8]) -> Outcome {
        let unchanged = |verdict, stat| Outcome {
            verdict,
            output: frame.to_vec(),
            counted: vec![stat],
            bind: None,
            bind_counters: None,
            decision: None,
        };
        match self.classify(frame) {
            Class::NotVip => unchanged(Verdict::Pass, DirectorStat::NotVip),
            Class::Malformed => unchanged(Verdict::Drop, DirectorStat::Malformed),
            Class::Bind(target) => self.encapsulate(frame, &target),
        }
    }

    /// The VIP entry for (family of `dst`, `proto`, `dst`): the port ranges
    /// of every bind whose prefix holds `dst`, lowest port first. This is
    /// what the longest LPM match returns once the loader has merged the
    /// ranges of containing prefixes into it.
    fn vip_entry(&self, proto: u8, dst: IpAddr) -> Vec<(u16, u16, u32)> {
        let mut ranges: Vec<(u16, u16, u32)> = self
            .binds
            .iter()
            .enumerate()
            .filter(|(_, b)| b.bind.proto.number() == proto && b.bind.prefix.contains(dst))
            .map(|(id, b)| (b.bind.port_start, b.bind.port_end, id as u32))
            .collect();
        ranges.sort_unstable();
        ranges
    }

    /// The bind whose range holds `port`.
    fn bind_for_port(&self, proto: u8, dst: IpAddr, port: u16) -> Option<u32> {
        self.vip_entry(proto, dst)
            .into_iter()
            .find(|&(start, end, _)| start <= port && port <= end)
            .map(|(_, _, id)| id)
    }

    /// The entry's first range (the lowest port): ICMP echo and fragments.
    fn first_bind(&self, proto: u8, dst: IpAddr) -> Option<u32> {
        self.vip_entry(proto, dst).first().map(|&(_, _, id)| id)
    }

    /// "Is it a VIP" for the malformed rule.
    fn is_vip(&self, dst: IpAddr) -> bool {
        !self.vip_entry(proto_num::TCP, dst).is_empty()
            || !self.vip_entry(proto_num::UDP, dst).is_empty()
    }

    fn classify(&self, frame: &[u8]) -> Class {
        let Some(mut ethertype) = be16(frame, eth::ETHERTYPE) else {
            return Class::NotVip;
        };
        let mut l3 = eth::HLEN;
        if ethertype == eth::TYPE_VLAN {
            let Some(inner) = be16(frame, eth::INNER_ETHERTYPE) else {
                return Class::NotVip;
            };
            ethertype = inner;
            l3 += eth::VLAN_TAG_LEN;
        }
        let ip = frame.get(l3..).unwrap_or_default();
        match ethertype {
            eth::TYPE_IPV4 => self.classify_v4(ip, l3),
            eth::TYPE_IPV6 => self.classify_v6(ip, l3),
            _ => Class::NotVip,
        }
    }

    fn classify_v4(&self, ip: &[u8], l3: usize) -> Class {
        let (Some(src), Some(dst)) = (addr_v4(ip, ipv4::SRC), addr_v4(ip, ipv4::DST)) else {
            return Class::NotVip;
        };
        if !self.is_vip(dst) {
            return Class::NotVip;
        }
        let ver_ihl = ip[ipv4::VER_IHL];
        let hlen = usize::from(ver_ihl & 0x0f) * 4;
        let Some(total) = be16(ip, ipv4::TOTAL_LEN) else {
            return Class::Malformed;
        };
        let total = usize::from(total);
        if ver_ihl >> 4 != 4
            || hlen < ipv4::MIN_HLEN
            || ip.len() < hlen
            || total < hlen
            || total > ip.len()
        {
            return Class::Malformed;
        }
        let frag = be16(ip, ipv4::FRAG).unwrap_or_default();
        let offset = frag & ipv4::OFFSET_MASK;
        let fragment = frag & ipv4::MF != 0 || offset != 0;
        let proto = ip[ipv4::PROTO];
        let header = Header {
            l3,
            inner: InnerProto::Ipv4,
            src,
            dst,
            proto,
            // "Present" means in the frame, as in the total-length rule above.
            l4: &ip[hlen..],
            fragment,
            first: offset == 0,
            datagram_proto: proto,
        };
        self.classify_l4(&header)
    }

    fn classify_v6(&self, ip: &[u8], l3: usize) -> Class {
        let (Some(src), Some(dst)) = (addr_v6(ip, ipv6::SRC), addr_v6(ip, ipv6::DST)) else {
            return Class::NotVip;
        };
        if !self.is_vip(dst) {
            return Class::NotVip;
        }
        let payload_len = be16(ip, ipv6::PAYLOAD_LEN).map_or(0, usize::from);
        if ip[ipv6::VER] >> 4 != 6 || payload_len > ip.len() - ipv6::HLEN {
            return Class::Malformed;
        }
        let mut next = ip[ipv6::NEXT];
        let mut at = ipv6::HLEN;
        let mut walked = 0;
        let mut fragment = false;
        let mut first = true;
        // The fragment header's next header: what every fragment of the
        // datagram can see, so what all of them are looked up by.
        let mut datagram_proto = None;
        loop {
            let len = match next {
                ipv6::HOP_BY_HOP | ipv6::ROUTING | ipv6::DEST_OPTS => match ip.get(at + 1) {
                    Some(&len) => (usize::from(len) + 1) * 8,
                    None => return Class::Malformed,
                },
                ipv6::FRAGMENT => {
                    let Some(field) = ip.get(at..).and_then(|h| be16(h, ipv6::FRAG_FIELD)) else {
                        return Class::Malformed;
                    };
                    let offset = field >> ipv6::FRAG_OFFSET_SHIFT;
                    if offset != 0 || field & ipv6::FRAG_M != 0 {
                        fragment = true;
                        datagram_proto.get_or_insert(ip[at]);
                    }
                    if offset != 0 {
                        first = false;
                    }
                    ipv6::FRAG_HLEN
                }
                _ => break,
            };
            walked += 1;
            if walked > ipv6::MAX_EXT || ip.len() < at + len {
                return Class::Malformed;
            }
            next = ip[at];
            at += len;
            if !first {
                // A later fragment: what follows is data, not headers.
                break;
            }
        }
        let header = Header {
            l3,
            inner: InnerProto::Ipv6,
            src,
            dst,
            proto: next,
            l4: &ip[at..],
            fragment,
            first,
            datagram_proto: datagram_proto.unwrap_or(next),
        };
        self.classify_l4(&header)
    }

    fn classify_l4(&self, h: &Header<'_>) -> Class {
        let parsed = if !h.fragment || h.first {
            parse_l4(h)
        } else {
            L4::Other
        };
        if let L4::Malformed = parsed {
            return Class::Malformed;
        }
        if h.fragment {
            // Every fragment of a datagram, the first included, goes by
            // addresses alone: later fragments have no ports to look at.
            let Some(bind) = self.first_bind(h.datagram_proto, h.dst) else {
                return Class::NotVip;
            };
            return Class::Bind(Target {
                bind,
                l3: h.l3,
                inner: h.inner,
                flow: FlowKey {
                    src: h.src,
                    dst: h.dst,
                    src_port: 0,
                    dst_port: 0,
                },
                client_src_port: 0,
                fragment: true,
                // Only TCP and UDP have binds, so a fragment is never ICMP.
                icmp: false,
                icmp_error: false,
            });
        }
        let (bind, flow, icmp, icmp_error) = match parsed {
            L4::Ports { src, dst } => {
                let bind = self.bind_for_port(h.proto, h.dst, dst);
                let flow = FlowKey {
                    src: h.src,
                    dst: h.dst,
                    src_port: src,
                    dst_port: dst,
                };
                (bind, flow, false, false)
            }
            L4::Echo => {
                let bind = self
                    .first_bind(proto_num::TCP, h.dst)
                    .or_else(|| self.first_bind(proto_num::UDP, h.dst));
                let flow = FlowKey {
                    src: h.src,
                    dst: h.dst,
                    src_port: 0,
                    dst_port: 0,
                };
                (bind, flow, true, false)
            }
            L4::Quote {
                proto,
                src,
                dst,
                src_port,
                dst_port,
            } => {
                // The quoted packet went from the VIP to the client.
                let bind = self.bind_for_port(proto, src, src_port);
                let flow = FlowKey {
                    src: dst,
                    dst: src,
                    src_port: dst_port,
                    dst_port: src_port,
                };
                (bind, flow, true, true)
            }
            L4::Other | L4::Malformed => return Class::NotVip,
        };
        let Some(bind) = bind else {
            return Class::NotVip;
        };
        Class::Bind(Target {
            bind,
            l3: h.l3,
            inner: h.inner,
            flow,
            client_src_port: flow.src_port,
            fragment: false,
            icmp,
            icmp_error,
        })
    }

    fn encapsulate(&self, frame: &[u8], t: &Target) -> Outcome {
        let b = self.binds[t.bind as usize];
        let table = &self.tables[b.table];
        let fields = if t.fragment {
            self.hash_fields & !(HASH_SRC_PORT | HASH_DST_PORT)
        } else {
            self.hash_fields
        };
        let (src, dst) = (octets(&t.flow.src), octets(&t.flow.dst));
        let flow = Flow {
            src_addr: &src,
            dst_addr: &dst,
            src_port: t.flow.src_port,
            dst_port: t.flow.dst_port,
        };
        let hash = flow_hash(&table.hash_key, fields, &flow);
        let row = row_of(hash);
        // A row naming a backend that is not in the backend map: "no
        // backend entry". A built table never has one.
        let chain: Option<Vec<IpAddr>> = table.table.rows()[row as usize]
            .iter()
            .map(|&i| table.table.backend(i).map(|b| b.addr))
            .collect();
        let Some((&primary, alternates)) = chain.as_deref().and_then(<[IpAddr]>::split_first)
        else {
            return Outcome {
                verdict: Verdict::Drop,
                output: frame.to_vec(),
                counted: vec![DirectorStat::EncapFailure],
                bind: Some(t.bind),
                bind_counters: None,
                decision: None,
            };
        };
        let decision = Decision {
            table: table.name.clone(),
            flow: t.flow,
            hash_fields: fields,
            hash,
            row,
            primary,
            alternates: alternates.to_vec(),
            encap: table.encap,
        };
        // The path MTU, checked as soon as the outer family and the hop
        // count are known.
        let (encap, outer_v6, hop_count) = (table.encap, primary.is_ipv6(), alternates.len());
        let len = (frame.len() - t.l3) as u64;
        if !mtu::fits(len, self.mtu, encap, outer_v6, hop_count) {
            let limit = mtu::max_inner_len(self.mtu, encap, outer_v6, hop_count);
            return too_big(frame, t, decision, limit);
        }
        let failure = || Outcome {
            verdict: Verdict::Drop,
            output: frame.to_vec(),
            counted: vec![DirectorStat::EncapFailure],
            bind: Some(t.bind),
            bind_counters: None,
            decision: Some(decision.clone()),
        };
        let (dst_mac, fallback) = match (self.macs.get(&primary), self.gateway_mac) {
            (Some(mac), _) => (*mac, false),
            (None, Some(gw)) => (gw, true),
            (None, None) => return failure(),
        };
        let v4: Option<Vec<Ipv4Addr>> = alternates
            .iter()
            .map(|a| match a {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            })
            .collect();
        let v6: Option<Vec<Ipv6Addr>> = alternates
            .iter()
            .map(|a| match a {
                IpAddr::V6(a) => Some(*a),
                IpAddr::V4(_) => None,
            })
            .collect();
        let outer = match (primary, v4, v6, self.src_v4, self.src_v6) {
            (IpAddr::V4(dst), Some(hops), _, Some(src), _) => Outer::V4 { src, dst, hops },
            (IpAddr::V6(dst), _, Some(hops), _, Some(src)) => Outer::V6 { src, dst, hops },
            _ => return failure(),
        };
        let output = match encap {
            Encap::Gue => build_output(frame, t, hash, dst_mac, &outer),
            Encap::Ipip => build_ipip_output(frame, t, dst_mac, &outer),
        };
        let Some(output) = output else {
            return failure();
        };
        let mut counted = vec![DirectorStat::Encapsulated];
        if t.icmp {
            counted.push(DirectorStat::IcmpHandled);
        }
        if t.fragment {
            counted.push(DirectorStat::Fragment);
        }
        if fallback {
            counted.push(DirectorStat::MacFallback);
        }
        Outcome {
            verdict: Verdict::Tx,
            output,
            counted,
            bind: Some(t.bind),
            bind_counters: Some((
                t.bind,
                BindCounters {
                    packets: 1,
                    bytes: frame.len() as u64,
                },
            )),
            decision: Some(decision),
        }
    }
}

/// The parsed IP layer of a frame that is for a VIP address.
struct Header<'a> {
    l3: usize,
    inner: InnerProto,
    src: IpAddr,
    dst: IpAddr,
    /// Upper-layer protocol (after IPv6 extension headers).
    proto: u8,
    /// From the L4 header to the end of the frame.
    l4: &'a [u8],
    fragment: bool,
    /// Fragment offset 0 (true for unfragmented packets too).
    first: bool,
    /// The protocol a fragment is looked up by: IPv4's protocol, or the
    /// next header of IPv6's fragment header.
    datagram_proto: u8,
}

fn ports(l4: &[u8]) -> Option<(u16, u16)> {
    Some((be16(l4, l4::SRC_PORT)?, be16(l4, l4::DST_PORT)?))
}

fn parse_l4(h: &Header<'_>) -> L4 {
    let l4 = h.l4;
    let v4 = h.inner == InnerProto::Ipv4;
    match h.proto {
        proto_num::TCP => {
            let doff = l4.get(l4::TCP_DOFF).map_or(0, |b| usize::from(b >> 4) * 4);
            if l4.len() < l4::TCP_MIN_HLEN || doff < l4::TCP_MIN_HLEN || l4.len() < doff {
                return L4::Malformed;
            }
            ports(l4).map_or(L4::Malformed, |(src, dst)| L4::Ports { src, dst })
        }
        proto_num::UDP => match ports(l4) {
            Some((src, dst)) if l4.len() >= l4::UDP_HLEN => L4::Ports { src, dst },
            _ => L4::Malformed,
        },
        proto_num::ICMP if v4 => parse_icmp(l4, true),
        proto_num::ICMPV6 if !v4 => parse_icmp(l4, false),
        _ => L4::Other,
    }
}

fn parse_icmp(l4: &[u8], v4: bool) -> L4 {
    if l4.len() < l4::ICMP_HLEN {
        return L4::Malformed;
    }
    let (ty, code) = (l4[l4::ICMP_TYPE], l4[l4::ICMP_CODE]);
    let quoted = &l4[l4::ICMP_HLEN..];
    match (v4, ty, code) {
        (true, ICMP_ECHO_REQUEST, _) | (false, ICMPV6_ECHO_REQUEST, _) => L4::Echo,
        (true, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED) => parse_quote_v4(quoted),
        (false, ICMPV6_PACKET_TOO_BIG, _) => parse_quote_v6(quoted),
        _ => L4::Other,
    }
}

fn parse_quote_v4(q: &[u8]) -> L4 {
    if q.len() < ipv4::MIN_HLEN {
        return L4::Malformed;
    }
    let hlen = usize::from(q[ipv4::VER_IHL] & 0x0f) * 4;
    if hlen < ipv4::MIN_HLEN || q.len() < hlen {
        return L4::Malformed;
    }
    let proto = q[ipv4::PROTO];
    quote(
        proto,
        addr_v4(q, ipv4::SRC),
        addr_v4(q, ipv4::DST),
        &q[hlen..],
    )
}

fn parse_quote_v6(q: &[u8]) -> L4 {
    if q.len() < ipv6::HLEN {
        return L4::Malformed;
    }
    let proto = q[ipv6::NEXT];
    quote(
        proto,
        addr_v6(q, ipv6::SRC),
        addr_v6(q, ipv6::DST),
        &q[ipv6::HLEN..],
    )
}

fn quote(proto: u8, src: Option<IpAddr>, dst: Option<IpAddr>, l4: &[u8]) -> L4 {
    if proto != proto_num::TCP && proto != proto_num::UDP {
        return L4::Other;
    }
    match (src, dst, ports(l4)) {
        (Some(src), Some(dst), Some((src_port, dst_port))) => L4::Quote {
            proto,
            src,
            dst,
            src_port,
            dst_port,
        },
        _ => L4::Malformed,
    }
}

/// The outer IP header's addresses and the hop list (the alternates).
enum Outer {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        hops: Vec<Ipv4Addr>,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hops: Vec<Ipv6Addr>,
    },
}

/// `| L2 | outer IP | UDP | GUE | GLB private data | original IP packet |`,
/// or `None` if the lengths do not fit their 16-bit fields.
fn build_output(
    frame: &[u8],
    t: &Target,
    hash: u64,
    dst_mac: [u8; 6],
    outer: &Outer,
) -> Option<Vec<u8>> {
    let inner = frame.get(t.l3..)?;
    let hops = match outer {
        Outer::V4 { hops, .. } => Hops::v4(hops),
        Outer::V6 { hops, .. } => Hops::v6(hops),
    }
    .ok()?;
    let gue = GueRepr {
        inner: t.inner,
        next_hop: 0,
        hops,
    };
    let udp_len = l4::UDP_HLEN + gue.buffer_len() + inner.len();
    let udp_len16 = u16::try_from(udp_len).ok()?;

    let mut out = Vec::with_capacity(t.l3 + ipv6::HLEN + udp_len);
    push_outer_headers(&mut out, frame, t, dst_mac, outer, udp_len, proto_num::UDP)?;
    out.extend_from_slice(&gue_source_port(hash, t.client_src_port).to_be_bytes());
    out.extend_from_slice(&crate::GUE_PORT.to_be_bytes());
    out.extend_from_slice(&udp_len16.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // zero checksum (RFC 6935)
    let at = out.len();
    out.resize(at + gue.buffer_len(), 0);
    gue.emit(&mut GuePacket::new_unchecked(&mut out[at..]));
    out.extend_from_slice(inner);
    Some(out)
}

/// `| L2 | outer IP | original IP packet |`: IP-in-IP, the outer header's
/// protocol (next header) 4 for an IPv4 original packet, 41 for IPv6, its
/// other fields as GUE's; `None` if the lengths do not fit their 16-bit
/// fields. `outer`'s hops are empty (an IP-in-IP row has none).
fn build_ipip_output(frame: &[u8], t: &Target, dst_mac: [u8; 6], outer: &Outer) -> Option<Vec<u8>> {
    let inner = frame.get(t.l3..)?;
    let mut out = Vec::with_capacity(t.l3 + ipv6::HLEN + inner.len());
    push_outer_headers(
        &mut out,
        frame,
        t,
        dst_mac,
        outer,
        inner.len(),
        u8::from(t.inner),
    )?;
    out.extend_from_slice(inner);
    Some(out)
}

/// Appends the Ethernet header (to `dst_mac`, from the MAC the frame was
/// sent to, its VLAN tag kept) and the outer IP header of `outer`, whose
/// payload is `payload_len` bytes of `protocol`: DF, TTL / hop limit 64,
/// the IPv4 checksum. `None` if the length does not fit its 16-bit field.
fn push_outer_headers(
    out: &mut Vec<u8>,
    frame: &[u8],
    t: &Target,
    dst_mac: [u8; 6],
    outer: &Outer,
    payload_len: usize,
    protocol: u8,
) -> Option<()> {
    out.extend_from_slice(&dst_mac);
    // The source MAC is the one the frame was sent to: this host's.
    out.extend_from_slice(&frame[eth::DST]);
    if t.l3 > eth::HLEN {
        out.extend_from_slice(&frame[eth::VLAN_TAG]);
    }
    match outer {
        Outer::V4 { src, dst, .. } => {
            out.extend_from_slice(&eth::TYPE_IPV4.to_be_bytes());
            let total = u16::try_from(ipv4::MIN_HLEN + payload_len).ok()?;
            let mut ip = [0u8; ipv4::MIN_HLEN];
            ip[ipv4::VER_IHL] = 0x45;
            ip[ipv4::TOTAL_LEN].copy_from_slice(&total.to_be_bytes());
            ip[ipv4::FRAG].copy_from_slice(&OUTER_V4_FLAGS.to_be_bytes());
            ip[ipv4::TTL] = OUTER_TTL;
            ip[ipv4::PROTO] = protocol;
            ip[ipv4::SRC].copy_from_slice(&src.octets());
            ip[ipv4::DST].copy_from_slice(&dst.octets());
            let checksum = ipv4_checksum(&ip);
            ip[ipv4::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
            out.extend_from_slice(&ip);
        }
        Outer::V6 { src, dst, .. } => {
            out.extend_from_slice(&eth::TYPE_IPV6.to_be_bytes());
            let payload = u16::try_from(payload_len).ok()?;
            let mut ip = [0u8; ipv6::HLEN];
            ip[ipv6::VER] = 0x60;
            ip[ipv6::PAYLOAD_LEN].copy_from_slice(&payload.to_be_bytes());
            ip[ipv6::NEXT] = protocol;
            ip[ipv6::HOP_LIMIT] = OUTER_TTL;
            ip[ipv6::SRC].copy_from_slice(&src.octets());
            ip[ipv6::DST].copy_from_slice(&dst.octets());
            out.extend_from_slice(&ip);
        }
    }
    Some(())
}

/// A frame for a bind that would not fit the path MTU once encapsulated:
/// answered with an ICMP frag-needed or packet-too-big advertising `limit`
/// (`too_big_icmp`), or dropped (`too_big_dropped`) when docs/director.md
/// says no error may be sent. Counts nothing of the encapsulated.
fn too_big(frame: &[u8], t: &Target, decision: Decision, limit: u32) -> Outcome {
    let reply = if t.icmp_error {
        // Never an ICMP error about an ICMP error (RFC 1122 3.2.2, RFC
        // 4443 2.4(e)).
        None
    } else {
        too_big_reply(frame, t.l3, t.inner, limit)
    };
    let (verdict, output, stat) = match reply {
        Some(reply) => (Verdict::Tx, reply, DirectorStat::TooBigIcmp),
        None => (Verdict::Drop, frame.to_vec(), DirectorStat::TooBigDropped),
    };
    Outcome {
        verdict,
        output,
        counted: vec![stat],
        bind: Some(t.bind),
        bind_counters: None,
        decision: Some(decision),
    }
}

/// The ICMP error answering the too-big packet at `l3` in `frame`, as a
/// router would send it back to the client: from the VIP, advertising
/// `mtu`, quoting what [`mtu::quote_len`] says; `None` for IPv4 without
/// DF, for a source that is not a single host, and for a packet shorter
/// than the quote (which a path MTU the config accepts never makes too
/// big).
fn too_big_reply(frame: &[u8], l3: usize, inner: InnerProto, mtu: u32) -> Option<Vec<u8>> {
    let original = frame.get(l3..)?;
    let (ethertype, ip) = match inner {
        InnerProto::Ipv4 => (eth::TYPE_IPV4, frag_needed(original, mtu)?),
        InnerProto::Ipv6 => (eth::TYPE_IPV6, packet_too_big(original, mtu)?),
    };
    // Back where the frame came from, in its VLAN if it had one.
    let mut out = Vec::with_capacity(l3 + ip.len());
    out.extend_from_slice(frame.get(6..12)?);
    out.extend_from_slice(frame.get(eth::DST)?);
    if l3 > eth::HLEN {
        out.extend_from_slice(frame.get(eth::VLAN_TAG)?);
    }
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(&ip);
    Some(out)
}

/// ICMPv4 destination unreachable, fragmentation needed (RFC 792, RFC 1191
/// next-hop MTU), answering the IPv4 packet `original`.
fn frag_needed(original: &[u8], mtu: u32) -> Option<Vec<u8>> {
    let client: [u8; 4] = original.get(ipv4::SRC)?.try_into().ok()?;
    let frag = be16(original, ipv4::FRAG)?;
    if frag & ipv4::DF == 0 || !mtu::answerable_v4(client) {
        return None;
    }
    let quote = original.get(..mtu::quote_len(false))?;
    let next_hop_mtu = u16::try_from(mtu).unwrap_or(u16::MAX);
    let mut icmp = vec![ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 0, 0, 0, 0];
    icmp.extend_from_slice(&next_hop_mtu.to_be_bytes());
    icmp.extend_from_slice(quote);
    let checksum = ipv4_checksum(&icmp);
    icmp[l4::ICMP_CHECKSUM].copy_from_slice(&checksum.to_be_bytes());

    let total = u16::try_from(ipv4::MIN_HLEN + icmp.len()).ok()?;
    let mut ip = [0u8; ipv4::MIN_HLEN];
    ip[ipv4::VER_IHL] = 0x45;
    ip[ipv4::TOS] = ICMP_ERROR_TOS;
    ip[ipv4::TOTAL_LEN].copy_from_slice(&total.to_be_bytes());
    ip[ipv4::FRAG].copy_from_slice(&ipv4::DF.to_be_bytes());
    ip[ipv4::TTL] = ICMP_ERROR_TTL;
    ip[ipv4::PROTO] = proto_num::ICMP;
    // From the VIP (the packet's destination) to the client.
    ip[ipv4::SRC].copy_from_slice(original.get(ipv4::DST)?);
    ip[ipv4::DST].copy_from_slice(&client);
    let checksum = ipv4_checksum(&ip);
    ip[ipv4::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    let mut out = ip.to_vec();
    out.extend_from_slice(&icmp);
    Some(out)
}

/// ICMPv6 packet too big (RFC 4443 3.2) answering the IPv6 packet
/// `original`.
fn packet_too_big(original: &[u8], mtu: u32) -> Option<Vec<u8>> {
    let client: [u8; 16] = original.get(ipv6::SRC)?.try_into().ok()?;
    let vip: [u8; 16] = original.get(ipv6::DST)?.try_into().ok()?;
    if !mtu::answerable_v6(client) {
        return None;
    }
    let quote = original.get(..mtu::quote_len(true))?;
    let mut icmp = vec![ICMPV6_PACKET_TOO_BIG, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(quote);
    let payload_len = u16::try_from(icmp.len()).ok()?;
    // The checksum covers the pseudo-header (RFC 8200 8.1).
    let mut summed = Vec::with_capacity(40 + icmp.len());
    summed.extend_from_slice(&vip);
    summed.extend_from_slice(&client);
    summed.extend_from_slice(&u32::from(payload_len).to_be_bytes());
    summed.extend_from_slice(&[0, 0, 0, proto_num::ICMPV6]);
    summed.extend_from_slice(&icmp);
    let checksum = ipv4_checksum(&summed);
    icmp[l4::ICMP_CHECKSUM].copy_from_slice(&checksum.to_be_bytes());

    let mut ip = [0u8; ipv6::HLEN];
    ip[ipv6::VER] = 0x60;
    ip[ipv6::PAYLOAD_LEN].copy_from_slice(&payload_len.to_be_bytes());
    ip[ipv6::NEXT] = proto_num::ICMPV6;
    ip[ipv6::HOP_LIMIT] = ICMP_ERROR_TTL;
    ip[ipv6::SRC].copy_from_slice(&vip);
    ip[ipv6::DST].copy_from_slice(&client);
    let mut out = ip.to_vec();
    out.extend_from_slice(&icmp);
    Some(out)
}
