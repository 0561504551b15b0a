//! Packet builders for the redirect tests and benchmark: expected bytes
//! built from docs/spec.md sections 2-3, independently of the eBPF code.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// TCP flags.
pub const SYN: u8 = 0x02;
/// TCP flags.
pub const ACK: u8 = 0x10;

/// The UDP source port a director's GUE packets carry.
pub const GUE_SPORT: u16 = 0x8123;
/// The GUE destination port.
pub const GUE_PORT: u16 = 19523;

/// The Internet checksum of `bytes`.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header (DF, no options, checksum computed) and its payload.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
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

/// An IPv6 header and its payload.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, hop_limit]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// A 20-byte TCP header without options (checksum 0, no payload).
pub fn tcp_header(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, window: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&ack.to_be_bytes());
    h.extend_from_slice(&[0x50, flags]);
    h.extend_from_slice(&window.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

/// A 20-byte TCP header, sequence and acknowledgment numbers 1, window
/// 0xffff, checksum 0, no payload.
pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    tcp_header(sport, dport, 1, 1, flags, 0xffff)
}

/// Writes the checksum of the TCP `segment` sent from `src` to `dst`.
pub fn set_tcp4_checksum(src: Ipv4Addr, dst: Ipv4Addr, segment: &mut [u8]) {
    let mut pseudo = src.octets().to_vec();
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(segment);
    let c = checksum(&pseudo);
    segment[16..18].copy_from_slice(&c.to_be_bytes());
}

/// Writes the checksum of the TCP `segment` sent from `src` to `dst`.
pub fn set_tcp6_checksum(src: Ipv6Addr, dst: Ipv6Addr, segment: &mut [u8]) {
    let mut pseudo = src.octets().to_vec();
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(segment.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 6]);
    pseudo.extend_from_slice(segment);
    let c = checksum(&pseudo);
    segment[16..18].copy_from_slice(&c.to_be_bytes());
}

/// A UDP header (checksum 0) and its payload.
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    h
}

/// An Ethernet header and its payload.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The address's bytes, network order.
pub fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The ethertype of an IP packet, from its version.
fn ethertype(packet: &[u8]) -> u16 {
    if packet[0] >> 4 == 6 { 0x86dd } else { 0x0800 }
}

/// An IP packet from `src` to `dst` (the family is theirs).
pub fn ip(src: IpAddr, dst: IpAddr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4(s, d, proto, ttl, payload),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6(s, d, proto, ttl, payload),
        _ => unreachable!("one family"),
    }
}

/// GUE + GLB private data (docs/spec.md section 2) and the inner packet: the
/// hops' family sets the private type, the inner packet's version the
/// inner protocol.
pub fn gue(next_hop: u8, hops: &[IpAddr], inner: &[u8]) -> Vec<u8> {
    let v6 = hops.first().is_some_and(IpAddr::is_ipv6);
    let hop_bytes: Vec<u8> = hops.iter().flat_map(|h| octets(*h)).collect();
    let hlen = 1 + hop_bytes.len() / 4;
    let inner_proto = if inner[0] >> 4 == 6 { 41 } else { 4 };
    let mut g = vec![hlen as u8, inner_proto, 0, 0, 0, u8::from(v6), next_hop];
    g.push(hops.len() as u8);
    g.extend_from_slice(&hop_bytes);
    g.extend_from_slice(inner);
    g
}

/// The MACs of a backend's link: its own (`host`), the other end of its
/// veth (`peer`, where the other backends are) and the director's.
#[derive(Debug, Clone, Copy)]
pub struct Macs {
    /// The backend's `eth0`.
    pub host: [u8; 6],
    /// The other end of the veth, the other backends' MAC.
    pub peer: [u8; 6],
    /// The director's, source of the GUE frames.
    pub director: [u8; 6],
}

impl Macs {
    /// The GUE frame a director sends from `src` to `dst` (the outer family
    /// is theirs).
    pub fn gue_frame(&self, src: IpAddr, dst: IpAddr, gue: &[u8]) -> Vec<u8> {
        let u = udp(GUE_SPORT, GUE_PORT, gue);
        let packet = ip(src, dst, 17, 64, &u);
        eth(self.host, self.director, ethertype(&packet), &packet)
    }

    /// What an accepted packet becomes: the inner packet behind a fresh
    /// Ethernet header with the received MACs.
    pub fn stripped(&self, inner: &[u8]) -> Vec<u8> {
        eth(self.host, self.director, ethertype(inner), inner)
    }

    /// The frame docs/spec.md section 3 step 6 describes: `received_gue` with
    /// the next hop moved past `next_hop_index`, from `from` to `to`.
    pub fn forwarded(
        &self,
        received_gue: &[u8],
        next_hop_index: usize,
        from: IpAddr,
        to: IpAddr,
    ) -> Vec<u8> {
        let mut g = received_gue.to_vec();
        g[6] = next_hop_index as u8 + 1;
        let u = udp(GUE_SPORT, GUE_PORT, &g);
        let packet = ip(from, to, 17, 64, &u);
        eth(self.peer, self.host, ethertype(&packet), &packet)
    }
}
