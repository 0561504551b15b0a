//! pcapng capture files (Wireshark's default format), Ethernet only: read
//! as `director-xdp replay`'s input beside classic pcap ([`crate::pcap`]).
//!
//! A file is a sequence of blocks, each `type, total length, body, total
//! length`, in sections that start with a Section Header Block (which sets
//! the byte order) and declare their interfaces (Interface Description
//! Blocks, each with a link type and a timestamp resolution). Packets come
//! in Enhanced Packet Blocks (and in the Simple and obsolete Packet Blocks);
//! every other block (name resolution, statistics, secrets, custom) is
//! skipped. Every error names the packet and the file offset of its block.

use std::io::Read;

use crate::pcap::{LINKTYPE_ETHERNET, MAX_CAPLEN, Packet, PcapError, Timestamp, read_full};

/// Block type of a Section Header Block; also the file's first four bytes
/// in either byte order (it is a palindrome).
pub const SHB: u32 = 0x0a0d_0d0a;
/// Interface Description Block.
const IDB: u32 = 0x0000_0001;
/// Obsolete Packet Block.
const PB: u32 = 0x0000_0002;
/// Simple Packet Block.
const SPB: u32 = 0x0000_0003;
/// Enhanced Packet Block.
const EPB: u32 = 0x0000_0006;
/// The byte-order magic in a section header.
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// Largest block accepted: a packet of [`MAX_CAPLEN`] bytes and generous
/// room for options; a bigger length means a corrupt file.
const MAX_BLOCK: u32 = MAX_CAPLEN + 64 * 1024;
/// Option `if_tsresol` of an Interface Description Block.
const IF_TSRESOL: u16 = 9;

/// Why a pcapng file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PcapngError {
    /// A block's structure is wrong (length, byte order, fields).
    #[error("block at offset {offset}: {what}")]
    Block {
        /// Offset of the block.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A packet refers to an interface that is not Ethernet.
    #[error(
        "packet {index} (block at offset {offset}): interface {interface} has link type {linktype}, not Ethernet (1)"
    )]
    LinkType {
        /// Packet number, from 1.
        index: u64,
        /// Offset of its block.
        offset: u64,
        /// The interface id.
        interface: u32,
        /// Its link type.
        linktype: u16,
    },
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: u16,
    snaplen: u32,
    /// Timestamp units per second.
    units_per_sec: u64,
}

/// Reads the packets of a pcapng file one by one.
#[derive(Debug)]
pub struct NgReader<R> {
    inner: R,
    big_endian: bool,
    interfaces: Vec<Interface>,
    offset: u64,
    count: u64,
}

impl<R: Read> NgReader<R> {
    /// Reads the first section header; `inner` starts at the file's start.
    pub fn new(inner: R) -> Result<Self, PcapError> {
        let mut r = NgReader {
            inner,
            big_endian: false,
            interfaces: Vec::new(),
            offset: 0,
            count: 0,
        };
        match r.block()? {
            Some((SHB, _, _)) => Ok(r),
            _ => Err(ng(PcapngError::Block {
                offset: 0,
                what: "the file does not start with a section header block".into(),
            })),
        }
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }

    fn u16(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.big_endian {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }

    /// The next block (type, offset, body), a section header already
    /// applied; `None` at the end of the file.
    fn block(&mut self) -> Result<Option<(u32, u64, Vec<u8>)>, PcapError> {
        let offset = self.offset;
        let mut head = [0u8; 8];
        let n = read_full(&mut self.inner, &mut head)
            .map_err(|source| PcapError::Io { offset, source })?;
        if n == 0 {
            return Ok(None);
        }
        let bad = |what: String| ng(PcapngError::Block { offset, what });
        if n < head.len() {
            return Err(bad(format!(
                "block header truncated ({n} of 8 bytes present)"
            )));
        }
        let raw_type = [head[0], head[1], head[2], head[3]];
        if u32::from_le_bytes(raw_type) == SHB {
            // A section sets its own byte order: read the magic first.
            let mut magic = [0u8; 4];
            let m = read_full(&mut self.inner, &mut magic)
                .map_err(|source| PcapError::Io { offset, source })?;
            if m < 4 {
                return Err(bad("section header truncated".into()));
            }
            self.big_endian = match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
                (BYTE_ORDER_MAGIC, _) => false,
                (_, BYTE_ORDER_MAGIC) => true,
                (_, other) => {
                    return Err(bad(format!(
                        "byte-order magic {other:#010x} is not 0x1a2b3c4d in either order"
                    )));
                }
            };
            self.interfaces.clear();
            let total = self.u32(&head[4..8]);
            let body = self.rest(offset, total, 12)?;
            let major = self.u16(&body[0..2]);
            if major != 1 {
                return Err(bad(format!("pcapng version {major} is not 1")));
            }
            return Ok(Some((SHB, offset, body)));
        }
        let block_type = self.u32(&head[0..4]);
        let total = self.u32(&head[4..8]);
        let body = self.rest(offset, total, 8)?;
        Ok(Some((block_type, offset, body)))
    }

    /// Reads the rest of a block of `total` bytes of which `read` are read,
    /// checks the trailing length, and returns the body after the first
    /// `read - 8` body bytes already consumed (the section header's magic).
    fn rest(&mut self, offset: u64, total: u32, read: u32) -> Result<Vec<u8>, PcapError> {
        let bad = |what: String| ng(PcapngError::Block { offset, what });
        if !total.is_multiple_of(4) || total < read + 4 || total > MAX_BLOCK {
            return Err(bad(format!(
                "block length {total} is not a multiple of 4 between {} and {MAX_BLOCK}",
                read + 4
            )));
        }
        let mut body = vec![0u8; (total - read) as usize];
        let n = read_full(&mut self.inner, &mut body).map_err(|source| PcapError::Io {
            offset: offset + u64::from(read),
            source,
        })?;
        if n < body.len() {
            return Err(bad(format!(
                "block of {total} bytes truncated ({} bytes present)",
                u64::from(read) + n as u64
            )));
        }
        let trailer = body.split_off(body.len() - 4);
        if self.u32(&trailer) != total {
            return Err(bad(format!(
                "trailing length {} differs from the leading {total}",
                self.u32(&trailer)
            )));
        }
        self.offset = offset + u64::from(total);
        Ok(body)
    }

    /// The next packet, or `None` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, PcapError> {
        loop {
            let Some((block_type, offset, body)) = self.block()? else {
                return Ok(None);
            };
            let bad = |what: &str| {
                ng(PcapngError::Block {
                    offset,
                    what: what.to_string(),
                })
            };
            match block_type {
                IDB => {
                    if body.len() < 8 {
                        return Err(bad("interface description block too short"));
                    }
                    let mut iface = Interface {
                        linktype: self.u16(&body[0..2]),
                        snaplen: self.u32(&body[4..8]),
                        units_per_sec: 1_000_000,
                    };
                    let mut opts = &body[8..];
                    while opts.len() >= 4 {
                        let (code, len) =
                            (self.u16(&opts[0..2]), usize::from(self.u16(&opts[2..4])));
                        let value = opts
                            .get(4..4 + len)
                            .ok_or_else(|| bad("option truncated"))?;
                        if code == 0 {
                            break;
                        }
                        if code == IF_TSRESOL && len == 1 {
                            iface.units_per_sec = tsresol(value[0]).ok_or_else(|| {
                                bad("if_tsresol finer than a nanosecond is not supported")
                            })?;
                        }
                        opts = opts.get(4 + len.next_multiple_of(4)..).unwrap_or_default();
                    }
                    self.interfaces.push(iface);
                }
                EPB | PB => {
                    // EPB: interface u32; PB: interface u16, drops u16.
                    if body.len() < 20 {
                        return Err(bad("packet block too short"));
                    }
                    let interface = if block_type == EPB {
                        self.u32(&body[0..4])
                    } else {
                        u32::from(self.u16(&body[0..2]))
                    };
                    let ts = (u64::from(self.u32(&body[4..8])) << 32)
                        | u64::from(self.u32(&body[8..12]));
                    let caplen = self.u32(&body[12..16]);
                    let orig_len = self.u32(&body[16..20]);
                    let data = body
                        .get(20..20 + caplen as usize)
                        .ok_or_else(|| bad("captured length runs past the block"))?;
                    return self.packet(offset, interface, ts, orig_len, data).map(Some);
                }
                SPB => {
                    if body.len() < 4 {
                        return Err(bad("simple packet block too short"));
                    }
                    let orig_len = self.u32(&body[0..4]);
                    let iface = self.interfaces.first().copied();
                    let snap =
                        iface.map_or(
                            u32::MAX,
                            |i| if i.snaplen == 0 { u32::MAX } else { i.snaplen },
                        );
                    let caplen = orig_len.min(snap) as usize;
                    let data = body
                        .get(4..4 + caplen)
                        .ok_or_else(|| bad("packet length runs past the block"))?;
                    return self.packet(offset, 0, 0, orig_len, data).map(Some);
                }
                _ => {} // name resolution, statistics, secrets, custom...
            }
        }
    }

    fn packet(
        &mut self,
        offset: u64,
        interface: u32,
        ts: u64,
        orig_len: u32,
        data: &[u8],
    ) -> Result<Packet, PcapError> {
        let index = self.count + 1;
        let iface = self
            .interfaces
            .get(interface as usize)
            .copied()
            .ok_or_else(|| {
                ng(PcapngError::Block {
                    offset,
                    what: format!(
                        "packet {index} names interface {interface}, which is not described"
                    ),
                })
            })?;
        if u32::from(iface.linktype) != LINKTYPE_ETHERNET {
            return Err(ng(PcapngError::LinkType {
                index,
                offset,
                interface,
                linktype: iface.linktype,
            }));
        }
        let secs = ts / iface.units_per_sec;
        let frac = ts % iface.units_per_sec;
        let nanos = frac * 1_000_000_000 / iface.units_per_sec;
        let secs = u32::try_from(secs).map_err(|_| {
            ng(PcapngError::Block {
                offset,
                what: format!("packet {index}: timestamp {secs} s is past 2106"),
            })
        })?;
        self.count = index;
        Ok(Packet {
            timestamp: Timestamp {
                secs,
                // Below 10^9 by construction.
                nanos: u32::try_from(nanos).unwrap_or(999_999_999),
            },
            orig_len,
            data: data.to_vec(),
        })
    }
}

/// Units per second of an `if_tsresol` value: 10^-n or 2^-n seconds
/// (high bit set); `None` finer than a nanosecond.
fn tsresol(v: u8) -> Option<u64> {
    let n = u32::from(v & 0x7f);
    let units = if v & 0x80 == 0 {
        10u64.checked_pow(n)?
    } else {
        1u64.checked_shl(n)?
    };
    (units <= 1_000_000_000 * 2).then_some(units)
}

fn ng(e: PcapngError) -> PcapError {
    PcapError::Pcapng(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::Capture;

    /// Writes pcapng blocks in one byte order.
    struct Ng {
        big: bool,
        out: Vec<u8>,
    }

    impl Ng {
        fn u16(&self, v: u16) -> [u8; 2] {
            if self.big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        fn u32(&self, v: u32) -> [u8; 4] {
            if self.big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        fn block(&mut self, kind: u32, body: &[u8]) -> &mut Self {
            let mut body = body.to_vec();
            body.resize(body.len().next_multiple_of(4), 0);
            let total = u32::try_from(body.len() + 12).expect("small");
            let (k, t) = (self.u32(kind), self.u32(total));
            self.out.extend_from_slice(&k);
            self.out.extend_from_slice(&t);
            self.out.extend_from_slice(&body);
            self.out.extend_from_slice(&t);
            self
        }

        fn section(big: bool, out: Vec<u8>) -> Ng {
            let mut ng = Ng { big, out };
            let mut body = Vec::new();
            body.extend_from_slice(&ng.u32(BYTE_ORDER_MAGIC));
            body.extend_from_slice(&ng.u16(1));
            body.extend_from_slice(&ng.u16(0));
            body.extend_from_slice(&(-1i64).to_le_bytes());
            ng.block(SHB, &body);
            ng
        }

        /// An interface; `tsresol` as the option's byte, if any.
        fn interface(&mut self, linktype: u16, tsresol: Option<u8>) -> &mut Self {
            let mut body = Vec::new();
            body.extend_from_slice(&self.u16(linktype));
            body.extend_from_slice(&[0, 0]);
            body.extend_from_slice(&self.u32(0));
            if let Some(r) = tsresol {
                body.extend_from_slice(&self.u16(IF_TSRESOL));
                body.extend_from_slice(&self.u16(1));
                body.extend_from_slice(&[r, 0, 0, 0]);
                body.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
            }
            self.block(IDB, &body)
        }

        fn epb(&mut self, interface: u32, ts: u64, data: &[u8], orig: u32) -> &mut Self {
            let mut body = Vec::new();
            body.extend_from_slice(&self.u32(interface));
            body.extend_from_slice(&self.u32((ts >> 32) as u32));
            body.extend_from_slice(&self.u32(ts as u32));
            body.extend_from_slice(&self.u32(u32::try_from(data.len()).expect("small")));
            body.extend_from_slice(&self.u32(orig));
            body.extend_from_slice(data);
            self.block(EPB, &body)
        }
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Packet>, PcapError> {
        let mut c = Capture::open(bytes)?;
        assert!(matches!(c, Capture::Pcapng(_)), "read as pcapng");
        let mut out = Vec::new();
        while let Some(p) = c.next_packet()? {
            out.push(p);
        }
        Ok(out)
    }

    #[test]
    fn reads_packets_of_every_section_interface_and_resolution() {
        let frame = [0xaau8; 60];
        let mut ng = Ng::section(false, Vec::new());
        ng.interface(1, None) // microseconds
            .interface(1, Some(9)) // nanoseconds
            .epb(0, 1_700_000_000_123_456, &frame[..54], 60)
            .block(5, &[0; 8]) // statistics: skipped
            .epb(1, 1_700_000_001_000_000_789, &frame, 60);
        let mut simple = Vec::new();
        simple.extend_from_slice(&ng.u32(60));
        simple.extend_from_slice(&frame);
        ng.block(SPB, &simple);
        // A second section, big-endian, with its own interfaces.
        let mut ng = Ng::section(true, ng.out);
        ng.interface(1, Some(0x80 | 20)) // 2^-20 s
            .epb(0, (5u64 << 20) | (1 << 19), &frame[..20], 20);
        let packets = read_all(&ng.out).expect("valid");
        let got: Vec<(u32, u32, usize, u32)> = packets
            .iter()
            .map(|p| {
                (
                    p.timestamp.secs,
                    p.timestamp.nanos,
                    p.data.len(),
                    p.orig_len,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (1_700_000_000, 123_456_000, 54, 60),
                (1_700_000_001, 789, 60, 60),
                (0, 0, 60, 60),
                (5, 500_000_000, 20, 20),
            ]
        );
    }

    #[test]
    fn refuses_broken_blocks_naming_the_offset() {
        let frame = [0u8; 60];
        let mut ng = Ng::section(false, Vec::new());
        ng.interface(1, None).epb(0, 0, &frame, 60);
        let good = ng.out.clone();
        let epb_offset = good.len() - (60 + 32);

        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x10; // trailing length
        let e = read_all(&bad).expect_err("refused").to_string();
        assert_eq!(
            e,
            format!(
                "block at offset {epb_offset}: trailing length {} differs from the leading 92",
                92 ^ (0x10 << 24)
            )
        );
        let e = read_all(&good[..good.len() - 10])
            .expect_err("refused")
            .to_string();
        assert!(
            e.starts_with(&format!(
                "block at offset {epb_offset}: block of 92 bytes truncated"
            )),
            "{e}"
        );

        let mut ng = Ng::section(false, Vec::new());
        ng.interface(101, None).epb(0, 0, &frame, 60); // raw IP
        let e = read_all(&ng.out).expect_err("refused").to_string();
        assert!(
            e.contains("interface 0 has link type 101, not Ethernet (1)"),
            "{e}"
        );

        let mut ng = Ng::section(false, Vec::new());
        ng.interface(1, None).epb(3, 0, &frame, 60);
        let e = read_all(&ng.out).expect_err("refused").to_string();
        assert!(
            e.contains("packet 1 names interface 3, which is not described"),
            "{e}"
        );

        let mut bad = Ng::section(false, Vec::new()).out;
        bad[8..12].copy_from_slice(&0x1122_3344u32.to_le_bytes());
        let e = read_all(&bad).expect_err("refused").to_string();
        assert!(e.contains("byte-order magic"), "{e}");
    }

    #[test]
    fn neither_format_is_refused_by_its_magic() {
        let e = Capture::open(&b"GIF89a........................"[..])
            .expect_err("refused")
            .to_string();
        assert!(e.contains("neither a pcap file"), "{e}");
    }
}
