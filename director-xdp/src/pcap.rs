//! Classic libpcap capture files, Ethernet only: the input and output of
//! `director-xdp replay`.
//!
//! Reads both byte orders and both timestamp resolutions (magic
//! `0xa1b2c3d4`, microseconds, and `0xa1b23c4d`, nanoseconds); writes
//! little-endian microsecond files, which every tool reads. [`Capture`]
//! reads either this format or pcapng ([`crate::pcapng`]), told apart by
//! the first four bytes.
//!
//! Written by hand rather than with a crate: the format is a 24-byte file
//! header and a 16-byte header per record, and owning the parser lets every
//! error name the packet and the file offset where the capture went wrong.

use std::io::{self, Read, Write};

/// `LINKTYPE_ETHERNET`: frames start with the Ethernet header.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Magic of files with microsecond timestamps, as a native-order `u32`.
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Magic of files with nanosecond timestamps, as a native-order `u32`.
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// Bytes of the file header.
pub const FILE_HEADER_LEN: usize = 24;
/// Bytes of each record header.
pub const RECORD_HEADER_LEN: usize = 16;
/// Largest captured length accepted, libpcap's own limit
/// (`MAXIMUM_SNAPLEN`): a bigger one means a corrupt file, and refusing it
/// keeps a garbage length from becoming a huge allocation.
pub const MAX_CAPLEN: u32 = 262_144;

/// Why a capture could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// Reading or writing the underlying file failed.
    #[error("I/O error at offset {offset}")]
    Io {
        /// Byte offset in the file where the operation started.
        offset: u64,
        /// What the operating system reported.
        #[source]
        source: io::Error,
    },
    /// The file ends inside its 24-byte header.
    #[error("{len} bytes is too short for a pcap file header (24 bytes)")]
    ShortFileHeader {
        /// Bytes present.
        len: usize,
    },
    /// The first four bytes are neither a classic pcap magic nor a
    /// pcapng section header.
    #[error(
        "magic {magic:#010x} is neither a pcap file (0xa1b2c3d4 or 0xa1b23c4d in either byte order) nor a pcapng file (0x0a0d0d0a)"
    )]
    BadMagic {
        /// The first four bytes, read big-endian.
        magic: u32,
    },
    /// The capture is not of Ethernet frames.
    #[error("link type {0} is not Ethernet (1)")]
    LinkType(u32),
    /// The file ends inside a record header.
    #[error(
        "packet {index} at offset {offset}: record header truncated ({present} of 16 bytes present)"
    )]
    TruncatedRecordHeader {
        /// Packet number, from 1.
        index: u64,
        /// Offset of the record header.
        offset: u64,
        /// Bytes of it present.
        present: usize,
    },
    /// The file ends inside a packet's data.
    #[error(
        "packet {index} at offset {offset}: captured length {caplen} but only {present} bytes left in the file"
    )]
    TruncatedData {
        /// Packet number, from 1.
        index: u64,
        /// Offset of the record header.
        offset: u64,
        /// Captured length the header claims.
        caplen: u32,
        /// Bytes present after the header.
        present: usize,
    },
    /// A record claims more than [`MAX_CAPLEN`] bytes.
    #[error(
        "packet {index} at offset {offset}: captured length {caplen} exceeds the 262144-byte limit (corrupt file?)"
    )]
    CaplenTooBig {
        /// Packet number, from 1.
        index: u64,
        /// Offset of the record header.
        offset: u64,
        /// Captured length the header claims.
        caplen: u32,
    },
    /// The sub-second part of a timestamp is a second or more.
    #[error(
        "packet {index} at offset {offset}: sub-second timestamp {fraction} is not below {limit}"
    )]
    BadTimestamp {
        /// Packet number, from 1.
        index: u64,
        /// Offset of the record header.
        offset: u64,
        /// The field as read.
        fraction: u32,
        /// One second in the file's unit.
        limit: u32,
    },
    /// A pcapng file's block is wrong.
    #[error(transparent)]
    Pcapng(#[from] crate::pcapng::PcapngError),
    /// A packet to write is larger than a record can say.
    #[error("packet {index}: {len} bytes is more than a pcap record can hold")]
    TooLongToWrite {
        /// Packet number, from 1.
        index: u64,
        /// Its length.
        len: usize,
    },
}

/// When a packet was captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub secs: u32,
    /// Nanoseconds within the second (below 1,000,000,000).
    pub nanos: u32,
}

/// One record of a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Capture time.
    pub timestamp: Timestamp,
    /// Length of the frame on the wire; more than `data.len()` when the
    /// capture cut it short (snap length).
    pub orig_len: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    fn u32(self, b: [u8; 4]) -> u32 {
        match self {
            ByteOrder::Little => u32::from_le_bytes(b),
            ByteOrder::Big => u32::from_be_bytes(b),
        }
    }

    fn u16(self, b: [u8; 2]) -> u16 {
        match self {
            ByteOrder::Little => u16::from_le_bytes(b),
            ByteOrder::Big => u16::from_be_bytes(b),
        }
    }
}

/// Reads the records of a classic pcap file one by one.
#[derive(Debug)]
pub struct Reader<R> {
    inner: R,
    order: ByteOrder,
    nanos: bool,
    /// Offset of the next unread byte.
    offset: u64,
    /// Records read so far.
    count: u64,
}

impl<R: Read> Reader<R> {
    /// Reads and checks the file header.
    pub fn new(mut inner: R) -> Result<Self, PcapError> {
        let mut header = [0u8; FILE_HEADER_LEN];
        let n = read_full(&mut inner, &mut header)
            .map_err(|source| PcapError::Io { offset: 0, source })?;
        if n < FILE_HEADER_LEN {
            return Err(PcapError::ShortFileHeader { len: n });
        }
        let magic_bytes = [header[0], header[1], header[2], header[3]];
        let (order, nanos) = match (
            u32::from_le_bytes(magic_bytes),
            u32::from_be_bytes(magic_bytes),
        ) {
            (MAGIC_MICROS, _) => (ByteOrder::Little, false),
            (MAGIC_NANOS, _) => (ByteOrder::Little, true),
            (_, MAGIC_MICROS) => (ByteOrder::Big, false),
            (_, MAGIC_NANOS) => (ByteOrder::Big, true),
            (_, magic) => return Err(PcapError::BadMagic { magic }),
        };
        // Bytes 4-7 are the format version (2.4 everywhere since 1998) and
        // 8-19 thiszone, sigfigs and snaplen: none changes how records
        // read, so a writer's odd values there are no reason to refuse.
        let _version = (
            order.u16([header[4], header[5]]),
            order.u16([header[6], header[7]]),
        );
        // The top bits of the link-type field carry FCS information
        // (LT_FCS_DATAWITHLEN); the type itself is the low 16 bits.
        let linktype = order.u32([header[20], header[21], header[22], header[23]]) & 0xffff;
        if linktype != LINKTYPE_ETHERNET {
            return Err(PcapError::LinkType(linktype));
        }
        Ok(Reader {
            inner,
            order,
            nanos,
            offset: FILE_HEADER_LEN as u64,
            count: 0,
        })
    }

    /// Whether the file's timestamps are in nanoseconds.
    pub fn nanosecond_timestamps(&self) -> bool {
        self.nanos
    }

    /// The next record, or `None` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, PcapError> {
        let index = self.count + 1;
        let offset = self.offset;
        let mut header = [0u8; RECORD_HEADER_LEN];
        let n = read_full(&mut self.inner, &mut header)
            .map_err(|source| PcapError::Io { offset, source })?;
        if n == 0 {
            return Ok(None);
        }
        if n < RECORD_HEADER_LEN {
            return Err(PcapError::TruncatedRecordHeader {
                index,
                offset,
                present: n,
            });
        }
        let word = |i: usize| {
            self.order
                .u32([header[i], header[i + 1], header[i + 2], header[i + 3]])
        };
        let (secs, fraction, caplen, orig_len) = (word(0), word(4), word(8), word(12));
        let limit = if self.nanos { 1_000_000_000 } else { 1_000_000 };
        if fraction >= limit {
            return Err(PcapError::BadTimestamp {
                index,
                offset,
                fraction,
                limit,
            });
        }
        if caplen > MAX_CAPLEN {
            return Err(PcapError::CaplenTooBig {
                index,
                offset,
                caplen,
            });
        }
        let mut data = vec![0u8; caplen as usize];
        let data_offset = offset + RECORD_HEADER_LEN as u64;
        let present = read_full(&mut self.inner, &mut data).map_err(|source| PcapError::Io {
            offset: data_offset,
            source,
        })?;
        if present < data.len() {
            return Err(PcapError::TruncatedData {
                index,
                offset,
                caplen,
                present,
            });
        }
        self.offset = data_offset + u64::from(caplen);
        self.count = index;
        let nanos = if self.nanos {
            fraction
        } else {
            fraction * 1000
        };
        Ok(Some(Packet {
            timestamp: Timestamp { secs, nanos },
            orig_len,
            data,
        }))
    }
}

/// A reader with the bytes [`Capture::open`] looked at put back in front.
pub type Reread<R> = io::Chain<io::Cursor<[u8; 4]>, R>;

/// A capture in either format.
#[derive(Debug)]
pub enum Capture<R> {
    /// Classic pcap.
    Pcap(Reader<R>),
    /// pcapng.
    Pcapng(crate::pcapng::NgReader<R>),
}

impl<R: Read> Capture<R> {
    /// Reads the start of `inner` and picks the format by its first four
    /// bytes.
    pub fn open(mut inner: R) -> Result<Capture<Reread<R>>, PcapError> {
        let mut magic = [0u8; 4];
        let n = read_full(&mut inner, &mut magic)
            .map_err(|source| PcapError::Io { offset: 0, source })?;
        if n < magic.len() {
            return Err(PcapError::ShortFileHeader { len: n });
        }
        let again = io::Cursor::new(magic).chain(inner);
        if u32::from_le_bytes(magic) == crate::pcapng::SHB {
            Ok(Capture::Pcapng(crate::pcapng::NgReader::new(again)?))
        } else {
            Ok(Capture::Pcap(Reader::new(again)?))
        }
    }
}

impl<R: Read> Capture<R> {
    /// The next packet, or `None` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, PcapError> {
        match self {
            Capture::Pcap(r) => r.next_packet(),
            Capture::Pcapng(r) => r.next_packet(),
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Writes a little-endian, microsecond-resolution pcap file of Ethernet
/// frames.
#[derive(Debug)]
pub struct Writer<W: Write> {
    inner: W,
    offset: u64,
    count: u64,
}

impl<W: Write> Writer<W> {
    /// Writes the file header.
    pub fn new(mut inner: W) -> Result<Self, PcapError> {
        let mut header = [0u8; FILE_HEADER_LEN];
        header[0..4].copy_from_slice(&MAGIC_MICROS.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes());
        header[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay 0, as every modern writer leaves them.
        header[16..20].copy_from_slice(&MAX_CAPLEN.to_le_bytes());
        header[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        inner
            .write_all(&header)
            .map_err(|source| PcapError::Io { offset: 0, source })?;
        Ok(Writer {
            inner,
            offset: FILE_HEADER_LEN as u64,
            count: 0,
        })
    }

    /// Appends one record. Nanoseconds are truncated to microseconds.
    pub fn write_packet(
        &mut self,
        timestamp: Timestamp,
        orig_len: u32,
        data: &[u8],
    ) -> Result<(), PcapError> {
        let index = self.count + 1;
        let caplen = u32::try_from(data.len())
            .ok()
            .filter(|&n| n <= MAX_CAPLEN)
            .ok_or(PcapError::TooLongToWrite {
                index,
                len: data.len(),
            })?;
        let mut header = [0u8; RECORD_HEADER_LEN];
        header[0..4].copy_from_slice(&timestamp.secs.to_le_bytes());
        header[4..8].copy_from_slice(&(timestamp.nanos / 1000).to_le_bytes());
        header[8..12].copy_from_slice(&caplen.to_le_bytes());
        header[12..16].copy_from_slice(&orig_len.max(caplen).to_le_bytes());
        let offset = self.offset;
        self.inner
            .write_all(&header)
            .and_then(|()| self.inner.write_all(data))
            .map_err(|source| PcapError::Io { offset, source })?;
        self.offset += (RECORD_HEADER_LEN + data.len()) as u64;
        self.count = index;
        Ok(())
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> Result<W, PcapError> {
        let offset = self.offset;
        self.inner
            .flush()
            .map_err(|source| PcapError::Io { offset, source })?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A capture with the given magic and byte order, holding `records`
    /// as (seconds, fraction, captured bytes, original length).
    fn capture(
        magic: u32,
        big: bool,
        linktype: u32,
        records: &[(u32, u32, &[u8], u32)],
    ) -> Vec<u8> {
        let w32 = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let w16 = |v: u16| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut f = Vec::new();
        f.extend_from_slice(&w32(magic));
        f.extend_from_slice(&w16(2));
        f.extend_from_slice(&w16(4));
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&w32(65535));
        f.extend_from_slice(&w32(linktype));
        for (secs, frac, data, orig) in records {
            f.extend_from_slice(&w32(*secs));
            f.extend_from_slice(&w32(*frac));
            f.extend_from_slice(&w32(data.len() as u32));
            f.extend_from_slice(&w32(*orig));
            f.extend_from_slice(data);
        }
        f
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Packet>, PcapError> {
        let mut r = Reader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(p) = r.next_packet()? {
            out.push(p);
        }
        Ok(out)
    }

    #[test]
    fn reads_all_four_magics_to_the_same_packets() {
        let data: &[u8] = &[1, 2, 3, 4, 5];
        for big in [false, true] {
            let micros = capture(MAGIC_MICROS, big, 1, &[(10, 123_456, data, 60)]);
            let nanos = capture(MAGIC_NANOS, big, 1, &[(10, 123_456_000, data, 60)]);
            for file in [micros, nanos] {
                let packets = read_all(&file).expect("valid capture");
                assert_eq!(
                    packets,
                    vec![Packet {
                        timestamp: Timestamp {
                            secs: 10,
                            nanos: 123_456_000
                        },
                        orig_len: 60,
                        data: data.to_vec(),
                    }],
                    "big-endian: {big}"
                );
            }
        }
    }

    #[test]
    fn written_file_reads_back_with_microsecond_timestamps() {
        let mut w = Writer::new(Vec::new()).expect("header");
        let ts = Timestamp {
            secs: 1_700_000_000,
            nanos: 999_999_999,
        };
        w.write_packet(ts, 0, &[0xaa; 3]).expect("record");
        w.write_packet(Timestamp { secs: 1, nanos: 0 }, 100, &[0xbb; 60])
            .expect("record");
        let bytes = w.finish().expect("flush");
        assert_eq!(
            &bytes[..4],
            &[0xd4, 0xc3, 0xb2, 0xa1],
            "little-endian micros"
        );
        let packets = read_all(&bytes).expect("reads back");
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[0].timestamp.nanos, 999_999_000);
        assert_eq!(packets[0].orig_len, 3, "orig_len is at least caplen");
        assert_eq!(packets[1].orig_len, 100);
        assert_eq!(packets[1].data, vec![0xbb; 60]);
    }

    #[test]
    fn errors_name_the_packet_and_the_offset() {
        let good: &[u8] = &[0; 20];
        let mut file = capture(
            MAGIC_MICROS,
            false,
            1,
            &[(1, 0, good, 20), (2, 0, good, 20)],
        );
        // Second record starts at 24 + 16 + 20 = 60; cut its data short.
        file.truncate(60 + 16 + 5);
        let e = read_all(&file).expect_err("truncated");
        assert_eq!(
            e.to_string(),
            "packet 2 at offset 60: captured length 20 but only 5 bytes left in the file"
        );
        file.truncate(60 + 7);
        let e = read_all(&file).expect_err("truncated header");
        assert_eq!(
            e.to_string(),
            "packet 2 at offset 60: record header truncated (7 of 16 bytes present)"
        );
    }

    #[test]
    fn refuses_what_is_not_an_ethernet_pcap() {
        assert!(matches!(
            read_all(&[0xd4, 0xc3]),
            Err(PcapError::ShortFileHeader { len: 2 })
        ));
        let mut pcapng = capture(MAGIC_MICROS, false, 1, &[]);
        pcapng[..4].copy_from_slice(&[0x0a, 0x0d, 0x0d, 0x0a]);
        assert!(matches!(
            read_all(&pcapng),
            Err(PcapError::BadMagic { magic: 0x0a0d_0d0a })
        ));
        let raw_ip = capture(MAGIC_MICROS, true, 101, &[]);
        assert!(matches!(read_all(&raw_ip), Err(PcapError::LinkType(101))));
    }

    #[test]
    fn refuses_impossible_record_fields() {
        let file = capture(MAGIC_MICROS, false, 1, &[(1, 1_000_000, &[0; 4], 4)]);
        assert!(matches!(
            read_all(&file),
            Err(PcapError::BadTimestamp {
                index: 1,
                offset: 24,
                ..
            })
        ));
        let mut file = capture(MAGIC_MICROS, false, 1, &[(1, 0, &[0; 4], 4)]);
        file[24 + 8..24 + 12].copy_from_slice(&(MAX_CAPLEN + 1).to_le_bytes());
        assert!(matches!(
            read_all(&file),
            Err(PcapError::CaplenTooBig { index: 1, .. })
        ));
    }

    #[test]
    fn an_empty_capture_has_no_packets() {
        let file = capture(MAGIC_NANOS, true, 1, &[]);
        let r = Reader::new(&file[..]).expect("header");
        assert!(r.nanosecond_timestamps());
        assert_eq!(read_all(&file).expect("valid").len(), 0);
    }
}
