//! A small packet builder for the golden cases: Ethernet (with or without an
//! 802.1Q tag), IPv4 with options and fragments, IPv6 with extension
//! headers, TCP, UDP, ICMP and ICMPv6.
//!
//! Lengths and checksums (IPv4 header, TCP, UDP, ICMP, ICMPv6) are filled
//! in, so every frame is one a real host could send; the cases that need a
//! broken frame break it afterwards with [`cut`] or by hand.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proto::director::ipv4_checksum;

/// An IPv6 address from a literal.
pub fn ip6(s: &str) -> Ipv6Addr {
    s.parse()
        .unwrap_or_else(|_| panic!("{s:?} is not an IPv6 address"))
}

/// The director's MAC: every test frame is sent to it.
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];
/// The router that hands frames to the director.
pub const ROUTER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// EtherTypes.
pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_IPV6: u16 = 0x86dd;
pub const ETH_ARP: u16 = 0x0806;
pub const ETH_VLAN: u16 = 0x8100;
pub const ETH_QINQ: u16 = 0x88a8;

/// IP protocol numbers.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;
pub const SCTP: u8 = 132;

/// IPv6 extension header numbers.
pub const HOP_BY_HOP: u8 = 0;
pub const ROUTING: u8 = 43;
pub const FRAGMENT: u8 = 44;
pub const DEST_OPTS: u8 = 60;

/// TCP flags.
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const PSH_ACK: u8 = 0x18;

/// An address from a literal; the cases only use documentation ranges.
pub fn ip(s: &str) -> IpAddr {
    s.parse()
        .unwrap_or_else(|_| panic!("{s:?} is not an address"))
}

/// An untagged Ethernet frame from the router to the director.
pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&DIRECTOR_MAC);
    f.extend_from_slice(&ROUTER_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An Ethernet frame carrying `ip` (IPv4 or IPv6, by its version nibble).
pub fn frame(ip: &[u8]) -> Vec<u8> {
    eth(ethertype_of(ip), ip)
}

/// The same with one 802.1Q tag (priority 0, VLAN `vid`).
pub fn frame_vlan(vid: u16, ip: &[u8]) -> Vec<u8> {
    let mut tagged = vid.to_be_bytes().to_vec();
    tagged.extend_from_slice(&ethertype_of(ip).to_be_bytes());
    tagged.extend_from_slice(ip);
    eth(ETH_VLAN, &tagged)
}

fn ethertype_of(ip: &[u8]) -> u16 {
    match ip.first().map(|b| b >> 4) {
        Some(6) => ETH_IPV6,
        _ => ETH_IPV4,
    }
}

/// An IPv6 extension header.
#[derive(Clone, Debug)]
pub enum Ext {
    /// Hop-by-hop options: `len` 8-octet units beyond the first (PadN filled).
    HopByHop(u8),
    /// Destination options, the same way.
    DestOpts(u8),
    /// A routing header of type 4 (segment routing) with `segments` IPv6
    /// segments.
    Routing(Vec<Ipv6Addr>),
    /// A fragment header: offset in 8-byte units, M flag, identification.
    Fragment { offset: u16, more: bool, id: u32 },
}

impl Ext {
    fn number(&self) -> u8 {
        match self {
            Ext::HopByHop(_) => HOP_BY_HOP,
            Ext::DestOpts(_) => DEST_OPTS,
            Ext::Routing(_) => ROUTING,
            Ext::Fragment { .. } => FRAGMENT,
        }
    }

    fn bytes(&self, next: u8) -> Vec<u8> {
        match self {
            Ext::HopByHop(len) | Ext::DestOpts(len) => {
                let total = (usize::from(*len) + 1) * 8;
                // PadN option covering the rest: type 1, length total - 4.
                let mut h = vec![next, *len, 1, (total - 4) as u8];
                h.resize(total, 0);
                h
            }
            Ext::Routing(segments) => {
                let len = (segments.len() * 2) as u8;
                let last = segments.len().saturating_sub(1) as u8;
                let mut h = vec![next, len, 4, last, last, 0, 0, 0];
                for s in segments {
                    h.extend_from_slice(&s.octets());
                }
                h
            }
            Ext::Fragment { offset, more, id } => {
                let mut h = vec![next, 0];
                h.extend_from_slice(&((offset << 3) | u16::from(*more)).to_be_bytes());
                h.extend_from_slice(&id.to_be_bytes());
                h
            }
        }
    }
}

/// The IP layer of a packet under construction.
#[derive(Clone, Debug)]
pub struct Ip {
    src: IpAddr,
    dst: IpAddr,
    /// IPv4 options (padded to 4 bytes by the caller).
    options: Vec<u8>,
    /// IPv4: MF flag and offset in 8-byte units.
    more_fragments: bool,
    frag_offset: u16,
    id: u16,
    /// IPv4 DF flag; `None`: set unless the packet is a fragment.
    df: Option<bool>,
    ext: Vec<Ext>,
}

/// An IPv4 or IPv6 packet from `src` to `dst` (same family).
pub fn ip_from(src: &str, dst: &str) -> Ip {
    let (src, dst) = (ip(src), ip(dst));
    assert_eq!(src.is_ipv4(), dst.is_ipv4(), "{src} -> {dst}: one family");
    Ip {
        src,
        dst,
        options: Vec::new(),
        more_fragments: false,
        frag_offset: 0,
        id: 0x1c46,
        df: None,
        ext: Vec::new(),
    }
}

impl Ip {
    /// IPv4 options, as bytes (a multiple of 4, at most 40).
    pub fn options(mut self, options: &[u8]) -> Self {
        assert!(self.src.is_ipv4() && options.len().is_multiple_of(4) && options.len() <= 40);
        self.options = options.to_vec();
        self
    }

    /// IPv4 fragment: MF flag and offset in 8-byte units.
    pub fn fragment(mut self, more: bool, offset: u16) -> Self {
        assert!(self.src.is_ipv4());
        self.more_fragments = more;
        self.frag_offset = offset;
        self
    }

    /// IPv4 DF flag (by default set unless the packet is a fragment).
    pub fn df(mut self, df: bool) -> Self {
        assert!(self.src.is_ipv4());
        self.df = Some(df);
        self
    }

    /// IPv4 identification.
    pub fn id(mut self, id: u16) -> Self {
        self.id = id;
        self
    }

    /// Appends an IPv6 extension header.
    pub fn ext(mut self, ext: Ext) -> Self {
        assert!(self.src.is_ipv6());
        self.ext.push(ext);
        self
    }

    /// A TCP segment: `flags`, no options, `payload`.
    pub fn tcp(self, src_port: u16, dst_port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        self.tcp_with_options(src_port, dst_port, flags, &[], payload)
    }

    /// A TCP segment with options (a multiple of 4 bytes).
    pub fn tcp_with_options(
        self,
        src_port: u16,
        dst_port: u16,
        flags: u8,
        options: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        assert!(options.len().is_multiple_of(4));
        let mut t = Vec::with_capacity(20 + options.len() + payload.len());
        t.extend_from_slice(&src_port.to_be_bytes());
        t.extend_from_slice(&dst_port.to_be_bytes());
        t.extend_from_slice(&0x1a2b_3c4du32.to_be_bytes()); // seq
        let ack = if flags & ACK != 0 { 0x0102_0304u32 } else { 0 };
        t.extend_from_slice(&ack.to_be_bytes());
        t.push(((20 + options.len()) / 4) as u8 * 16);
        t.push(flags);
        t.extend_from_slice(&64240u16.to_be_bytes()); // window
        t.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        t.extend_from_slice(options);
        t.extend_from_slice(payload);
        self.finish(TCP, t, Some(16))
    }

    /// A UDP datagram.
    pub fn udp(self, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::with_capacity(8 + payload.len());
        u.extend_from_slice(&src_port.to_be_bytes());
        u.extend_from_slice(&dst_port.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        self.finish(UDP, u, Some(6))
    }

    /// An ICMP (IPv4) or ICMPv6 (IPv6) message: type, code, the 4 bytes
    /// after the checksum, and the body.
    pub fn icmp(self, ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
        let mut m = vec![ty, code, 0, 0];
        m.extend_from_slice(&rest);
        m.extend_from_slice(body);
        let proto = if self.src.is_ipv4() { ICMP } else { ICMPV6 };
        self.finish(proto, m, Some(2))
    }

    /// Any payload with protocol number `proto` (no checksum filled in):
    /// other protocols and non-first fragments.
    pub fn raw(self, proto: u8, payload: &[u8]) -> Vec<u8> {
        self.finish(proto, payload.to_vec(), None)
    }

    /// Prepends the IP header (and extension headers) to `l4` and fills in
    /// the L4 checksum at `checksum_at` when given.
    fn finish(self, proto: u8, mut l4: Vec<u8>, checksum_at: Option<usize>) -> Vec<u8> {
        if let Some(at) = checksum_at {
            // ICMPv4 has no pseudo-header; the others do.
            let pseudo = if proto == ICMP {
                Vec::new()
            } else {
                pseudo_header(self.src, self.dst, proto, l4.len())
            };
            let mut all = pseudo;
            all.extend_from_slice(&l4);
            let mut sum = inet_checksum(&all);
            if proto == UDP && sum == 0 {
                sum = 0xffff;
            }
            l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        }
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.v4_header(s, d, proto, l4),
            (IpAddr::V6(s), IpAddr::V6(d)) => self.v6_header(s, d, proto, l4),
            _ => unreachable!("checked in ip_from"),
        }
    }

    fn v4_header(&self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: Vec<u8>) -> Vec<u8> {
        let hlen = 20 + self.options.len();
        let mut p = Vec::with_capacity(hlen + l4.len());
        p.push(0x40 | (hlen / 4) as u8);
        p.push(0);
        p.extend_from_slice(&((hlen + l4.len()) as u16).to_be_bytes());
        p.extend_from_slice(&self.id.to_be_bytes());
        let fragment = self.more_fragments || self.frag_offset != 0;
        let df = if self.df.unwrap_or(!fragment) {
            0x4000
        } else {
            0
        };
        let mf = if self.more_fragments { 0x2000 } else { 0 };
        p.extend_from_slice(&(df | mf | self.frag_offset).to_be_bytes());
        p.push(64);
        p.push(proto);
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&self.options);
        let sum = ipv4_checksum(&p);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p.extend_from_slice(&l4);
        p
    }

    fn v6_header(&self, src: Ipv6Addr, dst: Ipv6Addr, proto: u8, l4: Vec<u8>) -> Vec<u8> {
        let mut exts = Vec::new();
        for (i, e) in self.ext.iter().enumerate() {
            let next = self.ext.get(i + 1).map_or(proto, Ext::number);
            exts.extend_from_slice(&e.bytes(next));
        }
        let first = self.ext.first().map_or(proto, Ext::number);
        let mut p = Vec::with_capacity(40 + exts.len() + l4.len());
        p.extend_from_slice(&[0x60, 0x00, 0x00, 0x00]);
        p.extend_from_slice(&((exts.len() + l4.len()) as u16).to_be_bytes());
        p.push(first);
        p.push(64);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&exts);
        p.extend_from_slice(&l4);
        p
    }
}

fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => unreachable!("one family per packet"),
    }
    p
}

/// The Internet checksum of `data` (RFC 1071).
fn inet_checksum(data: &[u8]) -> u16 {
    // The IPv4 header checksum is the same sum.
    ipv4_checksum(data)
}

/// `packet` (an IP packet) cut to `len` bytes, with its length field (and
/// IPv4 checksum) rewritten to match: a packet that is short in one header
/// only, not inconsistent with itself.
pub fn cut(packet: &[u8], len: usize) -> Vec<u8> {
    let mut p = packet[..len].to_vec();
    match p[0] >> 4 {
        4 if len >= 20 => {
            p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            refresh_v4_checksum(&mut p);
        }
        6 if len >= 40 => {
            p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        }
        _ => {}
    }
    p
}

/// Recomputes the IPv4 header checksum after a header byte was changed.
pub fn refresh_v4_checksum(p: &mut [u8]) {
    let hlen = (usize::from(p[0] & 0x0f) * 4).clamp(20, p.len());
    p[10..12].copy_from_slice(&[0, 0]);
    let sum = ipv4_checksum(&p[..hlen]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
}
