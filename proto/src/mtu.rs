//! The path MTU toward the backends: what the encapsulation adds to a
//! packet, the largest packet that still fits, and the ICMP error the
//! director answers a bigger one with (docs/director.md, "Too big to
//! encapsulate").
//!
//! The director, its user-space model and the config check all ask this
//! module, so the limit the director applies, the MTU its ICMP errors
//! advertise and the smallest `director.mtu` the config accepts cannot
//! disagree. Each is a function of the table's encapsulation, the outer
//! family and, for GUE, the hop count (the table's `hops`, H of
//! docs/spec.md section 4).

use crate::Encap;
use crate::wire::{GLB_HEADER_LEN, PrivateType};

/// The path MTU value meaning "no limit" (`DirectorSettings::mtu`): what
/// the director runs with when neither `director.mtu` nor an interface
/// says otherwise (`director-xdp replay`, the model without a setting).
pub const NO_LIMIT: u32 = u32::MAX;

/// The largest path MTU a config may give: the largest IPv4 total length
/// (and what an IPv4 frag-needed can advertise).
pub const MAX_MTU: u32 = 65_535;

/// The smallest link MTU of IPv6 (RFC 8200 section 5): what the path must
/// leave an IPv6 client once its packets are encapsulated.
pub const IPV6_MIN_MTU: u32 = 1280;

/// The largest ICMPv4 error a router sends, its IP header included (RFC
/// 1812 4.3.2.3: no more than 576 bytes).
pub const IPV4_ICMP_ERROR_MAX: usize = 576;

/// The largest ICMPv6 error, its IPv6 header included (RFC 4443 2.4(c):
/// not beyond the minimum IPv6 MTU).
pub const IPV6_ICMP_ERROR_MAX: usize = IPV6_MIN_MTU as usize;

/// IPv4 header of the director's ICMP errors (no options).
const IPV4_HLEN: usize = 20;
/// IPv6 header of the director's ICMPv6 errors.
const IPV6_HLEN: usize = 40;
/// ICMP and ICMPv6 header (type, code, checksum, 4 bytes).
pub const ICMP_HLEN: usize = 8;
/// UDP header of the encapsulation.
const UDP_HLEN: usize = 8;

/// The most bytes of the original packet an ICMPv4 error quotes.
pub const IPV4_QUOTE_MAX: usize = IPV4_ICMP_ERROR_MAX - IPV4_HLEN - ICMP_HLEN;
/// The most bytes of the original packet an ICMPv6 error quotes.
pub const IPV6_QUOTE_MAX: usize = IPV6_ICMP_ERROR_MAX - IPV6_HLEN - ICMP_HLEN;

// The quote is summed in pieces of whole 32-bit words (`bpf_csum_diff`).
const _: () = assert!(IPV4_QUOTE_MAX == 548 && IPV4_QUOTE_MAX.is_multiple_of(4));
const _: () = assert!(IPV6_QUOTE_MAX == 1232 && IPV6_QUOTE_MAX.is_multiple_of(4));

/// Bytes the encapsulation puts in front of the original IP packet (its
/// Ethernet header aside): the outer IPv4 (20) or IPv6 (40) header, and
/// for GUE, UDP (8), GUE (4), the fixed part of the GLB private data (4)
/// and `hop_count` hops of the outer family (4 or 16 bytes each); IP-in-IP
/// adds the outer header alone (and carries no hops).
pub const fn encap_overhead(encap: Encap, outer_v6: bool, hop_count: usize) -> usize {
    let (ip, hops) = if outer_v6 {
        (IPV6_HLEN, PrivateType::Ipv6Hops)
    } else {
        (IPV4_HLEN, PrivateType::Ipv4Hops)
    };
    match encap {
        Encap::Gue => ip + UDP_HLEN + GLB_HEADER_LEN + hop_count * hops.hop_len(),
        Encap::Ipip => ip,
    }
}

const _: () = assert!(
    encap_overhead(Encap::Gue, false, 1) == 40
        && encap_overhead(Encap::Gue, true, 1) == 72
        && encap_overhead(Encap::Ipip, false, 0) == 20
        && encap_overhead(Encap::Ipip, true, 0) == 40
);

/// Whether an original IP packet of `len` bytes (from its IP header to the
/// end of the frame) fits a path MTU of `mtu` once encapsulated: the
/// director's check, one add and one compare per packet.
#[inline(always)]
pub const fn fits(len: u64, mtu: u32, encap: Encap, outer_v6: bool, hop_count: usize) -> bool {
    len + encap_overhead(encap, outer_v6, hop_count) as u64 <= mtu as u64
}

/// The largest original IP packet (from its IP header to the end of the
/// frame) that fits a path MTU of `mtu` once encapsulated: `mtu` minus
/// [`encap_overhead`], 0 if nothing fits. This is also the MTU the
/// director's ICMP errors advertise to the client.
pub const fn max_inner_len(mtu: u32, encap: Encap, outer_v6: bool, hop_count: usize) -> u32 {
    mtu.saturating_sub(encap_overhead(encap, outer_v6, hop_count) as u32)
}

/// The smallest path MTU that leaves a client [`IPV6_MIN_MTU`] bytes once
/// encapsulated: below it IPv6 clients cannot be served, since they never
/// send packets smaller than that on request.
pub const fn min_mtu(encap: Encap, outer_v6: bool, hop_count: usize) -> u32 {
    IPV6_MIN_MTU + encap_overhead(encap, outer_v6, hop_count) as u32
}

/// How many bytes of the original packet (from its IP header on) an ICMP
/// error quotes: as many as keep the error within [`IPV4_ICMP_ERROR_MAX`]
/// or [`IPV6_ICMP_ERROR_MAX`]. A packet too big for a path MTU that
/// [`min_mtu`] allows is longer than [`IPV6_MIN_MTU`], so it always has
/// them; the director drops a shorter one rather than quote less (only a
/// path MTU the config refuses could make one too big).
pub const fn quote_len(v6: bool) -> usize {
    if v6 { IPV6_QUOTE_MAX } else { IPV4_QUOTE_MAX }
}

const _: () = assert!(IPV6_QUOTE_MAX < IPV6_MIN_MTU as usize);

/// Whether an IPv4 source address names a single host, so that an ICMP
/// error may be sent to it (RFC 1812 4.3.2.7): not 0.0.0.0/8, loopback,
/// multicast, or 240.0.0.0/4 (the limited broadcast included).
pub const fn answerable_v4(addr: [u8; 4]) -> bool {
    !matches!(addr[0], 0 | 127 | 224..=255)
}

/// [`answerable_v4`] for IPv6 (RFC 4443 2.4(e)): not the unspecified
/// address, loopback or multicast.
pub const fn answerable_v6(addr: [u8; 16]) -> bool {
    let bits = u128::from_be_bytes(addr);
    bits != 0 && bits != 1 && addr[0] != 0xff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_is_outer_header_udp_gue_and_hops() {
        const G: Encap = Encap::Gue;
        assert_eq!(encap_overhead(G, false, 1), 20 + 8 + 4 + 4 + 4);
        assert_eq!(encap_overhead(G, true, 1), 40 + 8 + 4 + 4 + 16);
        assert_eq!(encap_overhead(G, false, 3), 20 + 8 + 8 + 12);
        assert_eq!(encap_overhead(G, true, 3), 40 + 8 + 8 + 48);
        assert_eq!(max_inner_len(1500, G, false, 1), 1460);
        assert_eq!(max_inner_len(1500, G, true, 1), 1428);
        assert_eq!(max_inner_len(9000, G, false, 1), 8960);
        assert_eq!(max_inner_len(NO_LIMIT, G, true, 1), NO_LIMIT - 72);
        assert_eq!(max_inner_len(30, G, false, 1), 0);
        assert_eq!(min_mtu(G, false, 1), 1320);
        assert!(fits(1460, 1500, G, false, 1) && !fits(1461, 1500, G, false, 1));
        assert!(fits(1428, 1500, G, true, 1) && !fits(1429, 1500, G, true, 1));
        assert!(fits(65_535, NO_LIMIT, G, true, 3));
        assert_eq!(min_mtu(G, true, 1), 1352);
    }

    #[test]
    fn ipip_overhead_is_the_outer_header_alone() {
        const I: Encap = Encap::Ipip;
        // No hops whatever the count says.
        for hops in [0, 2] {
            assert_eq!(encap_overhead(I, false, hops), 20);
            assert_eq!(encap_overhead(I, true, hops), 40);
        }
        assert_eq!(max_inner_len(1500, I, false, 0), 1480);
        assert_eq!(max_inner_len(1500, I, true, 0), 1460);
        assert!(fits(1480, 1500, I, false, 0) && !fits(1481, 1500, I, false, 0));
        assert_eq!(min_mtu(I, false, 0), 1300);
        assert_eq!(min_mtu(I, true, 0), 1320);
    }

    #[test]
    fn quotes_fill_the_error_to_its_limit() {
        assert_eq!(20 + 8 + quote_len(false), 576);
        assert_eq!(40 + 8 + quote_len(true), 1280);
        // Whatever the encapsulation and hops, what fits a path MTU the
        // config accepts is more than either quote.
        for (encap, v6, hops) in [
            (Encap::Gue, false, 1),
            (Encap::Gue, true, 1),
            (Encap::Gue, false, 3),
            (Encap::Gue, true, 3),
            (Encap::Ipip, false, 0),
            (Encap::Ipip, true, 0),
        ] {
            let least = max_inner_len(min_mtu(encap, v6, hops), encap, v6, hops) as usize;
            assert!(least >= quote_len(true) && least >= quote_len(false));
        }
    }

    #[test]
    fn only_single_hosts_are_answered() {
        assert!(answerable_v4([192, 0, 2, 100]));
        assert!(answerable_v4([223, 255, 255, 254]));
        for a in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [224, 0, 0, 1],
            [255; 4],
            [240, 0, 0, 1],
        ] {
            assert!(!answerable_v4(a), "{a:?}");
        }
        let v6 = |s: &str| s.parse::<core::net::Ipv6Addr>().unwrap().octets();
        assert!(answerable_v6(v6("2001:db8:1::100")));
        assert!(answerable_v6(v6("fe80::1")));
        for a in ["::", "::1", "ff02::1", "ff0e::1234"] {
            assert!(!answerable_v6(v6(a)), "{a}");
        }
    }
}
