//! The director's flow hash and the GUE source port it derives
//! (docs/spec.md sections 1 and 2): the reference that the eBPF director, the
//! replay tool and `director-ctl trace` agree with.

use crate::maps::{HASH_DST_ADDR, HASH_DST_PORT, HASH_SRC_ADDR, HASH_SRC_PORT};
use crate::siphash::siphash24;

/// Longest hash message: two IPv6 addresses and two ports.
pub const MAX_MESSAGE: usize = 16 + 16 + 2 + 2;

/// The fields of one flow, in network byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow<'a> {
    /// Client address: 4 or 16 bytes.
    pub src_addr: &'a [u8],
    /// VIP: 4 or 16 bytes.
    pub dst_addr: &'a [u8],
    /// Client port (0 for ICMP echo and fragments).
    pub src_port: u16,
    /// VIP port (0 for ICMP echo and fragments).
    pub dst_port: u16,
}

/// Writes the hash message of `flow` for the enabled `fields` (bits of
/// [`crate::maps`]) into `out` and returns its length: the enabled fields
/// concatenated in the fixed order src_addr, dst_addr, src_port, dst_port.
pub fn message(flow: &Flow<'_>, fields: u8, out: &mut [u8; MAX_MESSAGE]) -> usize {
    let mut n = 0;
    let mut put = |bytes: &[u8], n: &mut usize| {
        let end = *n + bytes.len();
        if let Some(dst) = out.get_mut(*n..end) {
            dst.copy_from_slice(bytes);
            *n = end;
        }
    };
    if fields & HASH_SRC_ADDR != 0 {
        put(flow.src_addr, &mut n);
    }
    if fields & HASH_DST_ADDR != 0 {
        put(flow.dst_addr, &mut n);
    }
    if fields & HASH_SRC_PORT != 0 {
        put(&flow.src_port.to_be_bytes(), &mut n);
    }
    if fields & HASH_DST_PORT != 0 {
        put(&flow.dst_port.to_be_bytes(), &mut n);
    }
    n
}

/// The flow hash under the table's `hash_key`.
pub fn flow_hash(hash_key: &[u8; 16], fields: u8, flow: &Flow<'_>) -> u64 {
    let mut buf = [0u8; MAX_MESSAGE];
    let n = message(flow, fields, &mut buf);
    siphash24(hash_key, &buf[..n])
}

/// Table row of a hash.
pub fn row_of(hash: u64) -> u32 {
    (hash & 0xffff) as u32
}

/// UDP source port of the GUE packet: entropy for ECMP and RSS towards the
/// backend, with the top bit set to stay out of the well-known range.
pub fn gue_source_port(hash: u64, client_src_port: u16) -> u16 {
    0x8000 | ((hash as u16 ^ client_src_port) & 0x7fff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_concatenates_enabled_fields_in_fixed_order() {
        let flow = Flow {
            src_addr: &[192, 0, 2, 1],
            dst_addr: &[203, 0, 113, 10],
            src_port: 0x1234,
            dst_port: 80,
        };
        let mut buf = [0u8; MAX_MESSAGE];
        let n = message(&flow, HASH_SRC_ADDR, &mut buf);
        assert_eq!(&buf[..n], &[192, 0, 2, 1]);
        let all = HASH_SRC_ADDR | HASH_DST_ADDR | HASH_SRC_PORT | HASH_DST_PORT;
        let n = message(&flow, all, &mut buf);
        assert_eq!(
            &buf[..n],
            &[192, 0, 2, 1, 203, 0, 113, 10, 0x12, 0x34, 0, 80]
        );
        let n = message(&flow, HASH_DST_PORT | HASH_SRC_ADDR, &mut buf);
        assert_eq!(&buf[..n], &[192, 0, 2, 1, 0, 80]);
        let key = [3u8; 16];
        assert_eq!(
            flow_hash(&key, all, &flow),
            siphash24(&key, &buf_all(&flow))
        );
    }

    fn buf_all(f: &Flow<'_>) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(f.src_addr);
        b[4..8].copy_from_slice(f.dst_addr);
        b[8..10].copy_from_slice(&f.src_port.to_be_bytes());
        b[10..].copy_from_slice(&f.dst_port.to_be_bytes());
        b
    }

    #[test]
    fn gue_source_port_keeps_the_top_bit_and_mixes_the_client_port() {
        assert_eq!(gue_source_port(0, 0), 0x8000);
        assert_eq!(gue_source_port(0xffff_ffff_ffff_0001, 0x0001), 0x8000);
        assert_eq!(gue_source_port(0x1234, 0x8000), 0x8000 | 0x1234);
        assert_eq!(row_of(0xdead_beef_0000_abcd), 0xabcd);
    }
}
