//! The PROXY protocol header (HAProxy's specification, versions 1 and 2)
//! that a check sends first on its connection, for backends that require
//! it on every connection. It carries the probe connection's own
//! addresses, with the PROXY command: the backend sees the checker. Pure.

use std::net::SocketAddr;

use crate::checks::ProxyVersion;

/// The 12 bytes every version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The header for a TCP connection from `src` to `dst` (one family: a
/// socket's two ends always are).
pub fn header(version: ProxyVersion, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    match version {
        ProxyVersion::V1 => {
            let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {fam} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        ProxyVersion::V2 => {
            let mut h = V2_SIGNATURE.to_vec();
            // Version 2, command PROXY.
            h.push(0x21);
            let (fam, addrs): (u8, Vec<u8>) = match (src, dst) {
                (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                    (0x11, [s.ip().octets(), d.ip().octets()].concat())
                }
                (s, d) => (0x21, [v6(s), v6(d)].concat()),
            };
            // Address family and transport: TCP over IPv4 or IPv6.
            h.push(fam);
            let len = (addrs.len() + 4) as u16;
            h.extend_from_slice(&len.to_be_bytes());
            h.extend_from_slice(&addrs);
            h.extend_from_slice(&src.port().to_be_bytes());
            h.extend_from_slice(&dst.port().to_be_bytes());
            h
        }
    }
}

fn v6(a: SocketAddr) -> [u8; 16] {
    match a {
        SocketAddr::V4(a) => a.ip().to_ipv6_mapped().octets(),
        SocketAddr::V6(a) => a.ip().octets(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failure is the test failing

    use super::*;

    #[test]
    fn v1_is_one_line_of_text() {
        let h = header(
            ProxyVersion::V1,
            "192.0.2.5:40000".parse().unwrap(),
            "198.51.100.11:80".parse().unwrap(),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.5 198.51.100.11 40000 80\r\n");
        let h = header(
            ProxyVersion::V1,
            "[2001:db8::5]:40000".parse().unwrap(),
            "[2001:db8:1::11]:443".parse().unwrap(),
        );
        assert_eq!(h, b"PROXY TCP6 2001:db8::5 2001:db8:1::11 40000 443\r\n");
    }

    #[test]
    fn v2_is_the_signature_then_addresses_in_network_order() {
        let h = header(
            ProxyVersion::V2,
            "192.0.2.5:40000".parse().unwrap(),
            "198.51.100.11:80".parse().unwrap(),
        );
        let mut want = V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0, 12]);
        want.extend_from_slice(&[192, 0, 2, 5, 198, 51, 100, 11]);
        want.extend_from_slice(&[0x9c, 0x40, 0, 80]);
        assert_eq!(h, want);
        let h = header(
            ProxyVersion::V2,
            "[2001:db8::5]:1".parse().unwrap(),
            "[2001:db8::6]:2".parse().unwrap(),
        );
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(h[16 + 15], 5);
        assert_eq!(h[32 + 15], 6);
        assert_eq!(&h[48..52], &[0, 1, 0, 2]);
    }
}
