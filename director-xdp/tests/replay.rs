//! `director-xdp replay` end to end: a capture built here runs through the
//! real director program (BPF_PROG_TEST_RUN) with the example config, and
//! the output capture and the report are checked against the table that
//! `proto` builds. Needs root (BPF); without it these tests fail rather
//! than skip, because a skipped proof is no proof.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use proto::config::Config;
use proto::flow::{Flow, flow_hash, gue_source_port, row_of};
use proto::wire::{GuePacket, GueRepr};

const EXAMPLE_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/director.json");
const ETH_HLEN: usize = 14;
/// MACs of the captured frames: the client's router and the director.
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0x5e, 0, 0x53, 0xaa];
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0x5e, 0, 0x53, 0xd1];

/// A directory removed, with everything in it, when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(role: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("glbt-{role}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        TempDir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One record of a capture: seconds, microseconds, bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    secs: u32,
    micros: u32,
    data: Vec<u8>,
}

/// A little-endian microsecond pcap of Ethernet frames.
fn write_pcap(path: &Path, records: &[Record]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes());
    for r in records {
        f.extend_from_slice(&r.secs.to_le_bytes());
        f.extend_from_slice(&r.micros.to_le_bytes());
        f.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
        f.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
        f.extend_from_slice(&r.data);
    }
    std::fs::write(path, f).expect("writing the input capture");
}

/// The same records as a pcapng file (Wireshark's default): a section
/// header, one Ethernet interface with nanosecond timestamps, a name
/// resolution block (skipped by readers), one enhanced packet block each.
fn write_pcapng(path: &Path, records: &[Record]) {
    fn block(f: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let mut body = body.to_vec();
        body.resize(body.len().next_multiple_of(4), 0);
        let total = (body.len() + 12) as u32;
        f.extend_from_slice(&kind.to_le_bytes());
        f.extend_from_slice(&total.to_le_bytes());
        f.extend_from_slice(&body);
        f.extend_from_slice(&total.to_le_bytes());
    }
    let mut f = Vec::new();
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut f, 0x0a0d_0d0a, &shb);
    let mut idb = 1u16.to_le_bytes().to_vec();
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&0u32.to_le_bytes());
    idb.extend_from_slice(&9u16.to_le_bytes()); // if_tsresol: 10^-9
    idb.extend_from_slice(&1u16.to_le_bytes());
    idb.extend_from_slice(&[9, 0, 0, 0]);
    idb.extend_from_slice(&[0; 4]);
    block(&mut f, 1, &idb);
    block(&mut f, 4, &[0; 4]); // an empty name resolution block
    for r in records {
        let ts = u64::from(r.secs) * 1_000_000_000 + u64::from(r.micros) * 1000 + 7;
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&r.data);
        block(&mut f, 6, &epb);
    }
    std::fs::write(path, f).expect("writing the input capture");
}

/// Reads back what replay writes: little-endian, microseconds, Ethernet.
fn read_pcap(path: &Path) -> Vec<Record> {
    let f = std::fs::read(path).expect("reading the output capture");
    let word = |at: usize| u32::from_le_bytes(f[at..at + 4].try_into().expect("4 bytes"));
    assert_eq!(word(0), 0xa1b2_c3d4, "little-endian microsecond magic");
    assert_eq!(word(20), 1, "LINKTYPE_ETHERNET");
    let mut at = 24;
    let mut out = Vec::new();
    while at < f.len() {
        let caplen = word(at + 8) as usize;
        assert_eq!(word(at + 12) as usize, caplen, "nothing cut short");
        out.push(Record {
            secs: word(at),
            micros: word(at + 4),
            data: f[at + 16..at + 16 + caplen].to_vec(),
        });
        at += 16 + caplen;
    }
    out
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_HLEN + payload.len());
    f.extend_from_slice(&DIRECTOR_MAC);
    f.extend_from_slice(&ROUTER_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// TCP (a SYN, 20 bytes) or UDP (8 bytes) header plus `payload`; checksums
/// are zero, which the director neither checks nor changes.
fn l4(proto: u8, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = match proto {
        6 => {
            let mut t = vec![0u8; 20];
            t[4..8].copy_from_slice(&1u32.to_be_bytes());
            t[12] = 5 << 4;
            t[13] = 0x02; // SYN
            t[14..16].copy_from_slice(&64240u16.to_be_bytes());
            t
        }
        _ => {
            let mut u = vec![0u8; 8];
            u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            u
        }
    };
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn ipv4_frame(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    let body = l4(proto, sport, dport, b"glb replay");
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + body.len()) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&0x1c46u16.to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&body);
    ethernet(0x0800, &ip)
}

fn ipv6_frame(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    let body = l4(proto, sport, dport, b"glb replay");
    let mut ip = vec![0u8; 40];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
    ip[6] = proto;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    ip.extend_from_slice(&body);
    ethernet(0x86dd, &ip)
}

/// What a packet of the capture should become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Pass,
    Drop,
    /// Encapsulated by the table named here.
    Tx(&'static str),
}

/// A flow as the director hashes it.
struct FlowOf {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
}

fn flow_of(frame: &[u8]) -> FlowOf {
    let ip = &frame[ETH_HLEN..];
    let (src, dst, l4) = match ip[0] >> 4 {
        4 => {
            let s: [u8; 4] = ip[12..16].try_into().expect("4 bytes");
            let d: [u8; 4] = ip[16..20].try_into().expect("4 bytes");
            (
                IpAddr::from(s),
                IpAddr::from(d),
                usize::from(ip[0] & 0xf) * 4,
            )
        }
        _ => {
            let s: [u8; 16] = ip[8..24].try_into().expect("16 bytes");
            let d: [u8; 16] = ip[24..40].try_into().expect("16 bytes");
            (IpAddr::from(s), IpAddr::from(d), 40)
        }
    };
    FlowOf {
        src,
        dst,
        sport: u16::from_be_bytes([ip[l4], ip[l4 + 1]]),
        dport: u16::from_be_bytes([ip[l4 + 2], ip[l4 + 3]]),
    }
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The encapsulation `table` must give `frame`: the hash, the primary and
/// the alternates, computed from `proto` alone.
struct Placement {
    hash: u64,
    client_port: u16,
    primary: IpAddr,
    alternates: Vec<IpAddr>,
}

fn placement(config: &Config, table: &str, frame: &[u8]) -> Placement {
    let t = config.table(table).expect("table in the example config");
    let flow = flow_of(frame);
    let (src, dst) = (octets(flow.src), octets(flow.dst));
    let hash = flow_hash(
        &t.hash_key,
        config.director.hash_fields.0,
        &Flow {
            src_addr: &src,
            dst_addr: &dst,
            src_port: flow.sport,
            dst_port: flow.dport,
        },
    );
    let built = t.rendezvous().expect("building the table");
    let chain = built.rows()[row_of(hash) as usize];
    let addr = |i: &u32| built.backend(*i).expect("backend of a row").addr;
    Placement {
        hash,
        client_port: flow.sport,
        primary: addr(&chain.primary()),
        alternates: chain.alternates().iter().map(addr).collect(),
    }
}

/// The capture of the main test, with what each packet should become.
fn cases() -> Vec<(Vec<u8>, Expect)> {
    let v4 = |s: &str| s.parse::<Ipv4Addr>().expect("IPv4 address");
    let v6 = |s: &str| s.parse::<Ipv6Addr>().expect("IPv6 address");
    let client4 = v4("192.0.2.44");
    let client6 = v6("2001:db8:c::44");

    // A VIP packet whose IPv4 total length claims more bytes than present.
    let mut truncated = ipv4_frame(client4, v4("203.0.113.10"), 6, 40001, 80);
    truncated[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&1500u16.to_be_bytes());
    let arp = {
        let mut a = vec![0u8; 28];
        a[0..2].copy_from_slice(&1u16.to_be_bytes());
        a[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
        a[4] = 6;
        a[5] = 4;
        a[7] = 1; // request
        ethernet(0x0806, &a)
    };
    vec![
        (
            ipv4_frame(client4, v4("203.0.113.10"), 6, 40000, 80),
            Expect::Tx("web"),
        ),
        (
            ipv6_frame(client6, v6("2001:db8:10::10"), 6, 40002, 443),
            Expect::Tx("web"),
        ),
        (
            ipv4_frame(client4, v4("203.0.113.53"), 17, 5353, 53),
            Expect::Tx("dns"),
        ),
        (
            ipv4_frame(v4("198.18.0.9"), v4("203.0.113.200"), 17, 6000, 5500),
            Expect::Tx("dns"),
        ),
        (
            ipv4_frame(client4, v4("203.0.113.99"), 6, 40003, 80),
            Expect::Pass,
        ),
        (
            ipv4_frame(client4, v4("203.0.113.10"), 6, 40004, 81),
            Expect::Pass,
        ),
        (truncated, Expect::Drop),
        (arp, Expect::Pass),
    ]
}

fn replay(config: &Path, input: &Path, output: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_director-xdp"))
        .arg("replay")
        .arg("--config")
        .arg(config)
        .arg("--in")
        .arg(input)
        .arg("--out")
        .arg(output)
        .output()
        .expect("running director-xdp replay")
}

/// Checks an encapsulated frame field by field against the spec
/// (docs/director.md, "Encapsulation") and the expected placement.
fn check_encapsulation(config: &Config, input: &[u8], out: &[u8], want: &Placement, what: &str) {
    let gateway = config
        .director
        .gateway_mac
        .expect("gateway_mac in the example");
    assert_eq!(
        &out[0..6],
        &gateway,
        "{what}: replay resolves nothing, so the gateway MAC"
    );
    assert_eq!(
        &out[6..12],
        &input[0..6],
        "{what}: source MAC = received destination MAC"
    );
    let inner = &input[ETH_HLEN..];
    let udp = match want.primary {
        IpAddr::V4(primary) => {
            assert_eq!(&out[12..14], &[0x08, 0x00], "{what}: outer EtherType");
            let ip = &out[ETH_HLEN..];
            assert_eq!(ip[0], 0x45, "{what}: outer IPv4 version and IHL");
            assert_eq!(ip[9], 17, "{what}: outer protocol UDP");
            let src = config.director.source_v4.expect("source_v4 in the example");
            assert_eq!(&ip[12..16], &src.octets(), "{what}: outer source");
            assert_eq!(&ip[16..20], &primary.octets(), "{what}: outer destination");
            ETH_HLEN + 20
        }
        IpAddr::V6(primary) => {
            assert_eq!(&out[12..14], &[0x86, 0xdd], "{what}: outer EtherType");
            let ip = &out[ETH_HLEN..];
            assert_eq!(ip[0] >> 4, 6, "{what}: outer IPv6 version");
            assert_eq!(ip[6], 17, "{what}: outer next header UDP");
            let src = config.director.source_v6.expect("source_v6 in the example");
            assert_eq!(&ip[8..24], &src.octets(), "{what}: outer source");
            assert_eq!(&ip[24..40], &primary.octets(), "{what}: outer destination");
            ETH_HLEN + 40
        }
    };
    let be16 = |at: usize| u16::from_be_bytes([out[at], out[at + 1]]);
    assert_eq!(
        be16(udp + 2),
        proto::GUE_PORT,
        "{what}: UDP destination port"
    );
    assert_eq!(
        be16(udp),
        gue_source_port(want.hash, want.client_port),
        "{what}: UDP source port"
    );
    let gue = GuePacket::new_checked(&out[udp + 8..]).expect("a whole GUE header");
    let repr = GueRepr::parse(&gue).expect("a valid GUE header");
    assert_eq!(repr.next_hop, 0, "{what}: next hop");
    assert_eq!(
        repr.hops.iter().collect::<Vec<_>>(),
        want.alternates,
        "{what}: the hops are the row's alternates"
    );
    assert_eq!(
        gue.payload(),
        inner,
        "{what}: the original packet follows, untouched"
    );
}

#[test]
fn replay_writes_one_packet_per_input_with_table_placement() {
    let dir = TempDir::new("replay");
    let (input, output) = (dir.join("in.pcap"), dir.join("out.pcap"));
    let config_text = std::fs::read_to_string(EXAMPLE_CONFIG).expect("reading the example");
    let config = Config::from_json(&config_text).expect("the example config is valid");
    let cases = cases();
    let records: Vec<Record> = cases
        .iter()
        .enumerate()
        .map(|(i, (data, _))| Record {
            secs: 1_700_000_000 + i as u32,
            micros: (i as u32 * 123_457) % 1_000_000,
            data: data.clone(),
        })
        .collect();
    write_pcap(&input, &records);

    let run = replay(Path::new(EXAMPLE_CONFIG), &input, &output);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "replay failed: {stderr}\n{stdout}");

    let got = read_pcap(&output);
    assert_eq!(got.len(), records.len(), "one output packet per input");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        records.len() + 1,
        "a line per packet and a summary: {stdout}"
    );
    for (i, ((input, expect), out)) in cases.iter().zip(&got).enumerate() {
        let what = format!("packet {} ({expect:?})", i + 1);
        assert_eq!(
            (out.secs, out.micros),
            (records[i].secs, records[i].micros),
            "{what}: same timestamp"
        );
        let line = lines[i];
        match expect {
            Expect::Pass => {
                assert_eq!(line, format!("{} PASS", i + 1));
                assert_eq!(&out.data, input, "{what}: passed unchanged");
            }
            Expect::Drop => {
                assert_eq!(line, format!("{} DROP", i + 1));
                assert_eq!(&out.data, input, "{what}: written as it came in");
            }
            Expect::Tx(table) => {
                let want = placement(&config, table, input);
                let hops: Vec<String> = want.alternates.iter().map(ToString::to_string).collect();
                assert!(
                    line.starts_with(&format!("{} TX ", i + 1))
                        && line.ends_with(&format!(
                            " -> {} hops [{}]",
                            want.primary,
                            hops.join(", ")
                        )),
                    "{what}: report line {line:?}"
                );
                check_encapsulation(&config, input, &out.data, &want, &what);
            }
        }
    }
    let summary = lines[records.len()];
    assert_eq!(summary, "8 packets: PASS 3, TX 4, DROP 1");

    // The same capture as pcapng gives the same output, byte for byte (its
    // nanoseconds truncated to the output's microseconds).
    let (ng_input, ng_output) = (dir.join("in.pcapng"), dir.join("out-ng.pcap"));
    write_pcapng(&ng_input, &records);
    let ng_run = replay(Path::new(EXAMPLE_CONFIG), &ng_input, &ng_output);
    assert!(
        ng_run.status.success(),
        "replay of pcapng failed: {}",
        String::from_utf8_lossy(&ng_run.stderr)
    );
    assert_eq!(ng_run.stdout, run.stdout, "the same report");
    assert_eq!(
        std::fs::read(&ng_output).expect("output"),
        std::fs::read(&output).expect("output"),
        "the same packets"
    );
    assert!(
        String::from_utf8_lossy(&ng_run.stderr).contains("finer than a microsecond"),
        "{}",
        String::from_utf8_lossy(&ng_run.stderr)
    );
}

#[test]
fn truncated_capture_is_refused_naming_the_packet_and_offset() {
    let dir = TempDir::new("replay");
    let (input, output) = (dir.join("in.pcap"), dir.join("out.pcap"));
    let frame = ipv4_frame(
        "192.0.2.44".parse().expect("address"),
        "203.0.113.99".parse().expect("address"),
        6,
        40000,
        80,
    );
    let record = Record {
        secs: 1,
        micros: 0,
        data: frame.clone(),
    };
    write_pcap(&input, &[record.clone(), record]);
    // Cut the second record's data short by one byte.
    let mut bytes = std::fs::read(&input).expect("reading the capture back");
    bytes.pop();
    std::fs::write(&input, &bytes).expect("rewriting the capture");
    let second = 24 + 16 + frame.len();

    let run = replay(Path::new(EXAMPLE_CONFIG), &input, &output);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        run.status.code(),
        Some(2),
        "bad input is a usage error: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "packet 2 at offset {second}: captured length {} but only {} bytes left",
            frame.len(),
            frame.len() - 1
        )),
        "{stderr}"
    );
    assert!(!output.exists(), "no half-written output is left behind");
    assert_eq!(names(&dir.0), ["in.pcap"], "no temporary file either");
}

/// The names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("listing")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A capture of two packets whose second record is cut short.
fn truncated_capture(path: &Path) {
    let frame = ipv4_frame(
        "192.0.2.44".parse().expect("address"),
        "203.0.113.10".parse().expect("address"),
        6,
        40000,
        80,
    );
    let record = Record {
        secs: 1,
        micros: 0,
        data: frame,
    };
    write_pcap(path, &[record.clone(), record]);
    let mut bytes = std::fs::read(path).expect("reading the capture back");
    bytes.pop();
    std::fs::write(path, &bytes).expect("rewriting the capture");
}

#[test]
fn a_failed_replay_leaves_an_existing_output_as_it_was() {
    let dir = TempDir::new("replay-keep");
    let (input, output) = (dir.join("in.pcap"), dir.join("out.pcap"));
    truncated_capture(&input);
    let previous = b"the previous replay's capture".to_vec();
    std::fs::write(&output, &previous).expect("an earlier output");
    let run = replay(Path::new(EXAMPLE_CONFIG), &input, &output);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("packet 2 at offset"), "{stderr}");
    assert_eq!(
        std::fs::read(&output).expect("the output is still there"),
        previous,
        "a failed replay changes nothing at --out"
    );
    assert_eq!(names(&dir.0), ["in.pcap", "out.pcap"], "no temporary file");
}

#[test]
fn replay_refuses_an_output_that_is_not_a_regular_file() {
    use std::os::unix::fs::FileTypeExt as _;
    let dir = TempDir::new("replay-device");
    let input = dir.join("in.pcap");
    truncated_capture(&input);
    // A character device like /dev/null, made here (tests run as root;
    // /dev itself is never touched). Written to and then deleted by a
    // replay that failed, before outputs were checked.
    let null = dir.join("null");
    let made = Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .expect("running mknod");
    assert!(made.success(), "mknod (needs root)");
    let run = replay(Path::new(EXAMPLE_CONFIG), &input, &null);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} is a character device, not a regular file: refusing to replace it",
            null.display()
        )),
        "{stderr}"
    );
    let meta = std::fs::symlink_metadata(&null).expect("the device is still there");
    assert!(meta.file_type().is_char_device());
    // A directory, the same.
    let run = replay(Path::new(EXAMPLE_CONFIG), &input, &dir.0);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("is a directory"));
    assert_eq!(names(&dir.0), ["in.pcap", "null"]);
}

#[test]
fn replay_refuses_to_write_over_its_input() {
    let dir = TempDir::new("replay-same");
    let input = dir.join("in.pcap");
    let frame = ipv4_frame(
        "192.0.2.44".parse().expect("address"),
        "203.0.113.10".parse().expect("address"),
        6,
        40000,
        80,
    );
    write_pcap(
        &input,
        &[Record {
            secs: 1,
            micros: 0,
            data: frame,
        }],
    );
    let capture = std::fs::read(&input).expect("the capture");
    std::fs::hard_link(&input, dir.join("hard.pcap")).expect("hard link");
    std::os::unix::fs::symlink("in.pcap", dir.join("link.pcap")).expect("symlink");
    for out in ["in.pcap", "hard.pcap", "link.pcap"] {
        let run = replay(Path::new(EXAMPLE_CONFIG), &input, &dir.join(out));
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{out}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "is the same file as the input {}: refusing to overwrite it",
                input.display()
            )),
            "{out}: {stderr}"
        );
        assert_eq!(
            std::fs::read(&input).expect("the capture"),
            capture,
            "{out}"
        );
    }
    // The config is an input too.
    let config = dir.join("director.json");
    std::fs::copy(EXAMPLE_CONFIG, &config).expect("config");
    let run = replay(&config, &input, &config);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("is the same file as the input"));
    assert_eq!(
        std::fs::read_to_string(&config).expect("config"),
        std::fs::read_to_string(EXAMPLE_CONFIG).expect("example")
    );
    assert_eq!(
        names(&dir.0),
        ["director.json", "hard.pcap", "in.pcap", "link.pcap"]
    );
}

/// An IPv4 UDP datagram to the DNS bind (203.0.113.53:53/udp) filling a
/// frame of `len` bytes, its lengths consistent up to 65,535.
fn udp_frame_of(len: usize) -> Vec<u8> {
    let mut f = ipv4_frame(
        "192.0.2.44".parse().expect("address"),
        "203.0.113.53".parse().expect("address"),
        17,
        40000,
        53,
    );
    f.resize(len, 0x5a);
    let ip_len = (len - ETH_HLEN).min(65_535) as u16;
    f[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&ip_len.to_be_bytes());
    f[ETH_HLEN + 6..ETH_HLEN + 8].copy_from_slice(&[0, 0]);
    f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&[0, 0]);
    let c = ipv4_checksum(&f[ETH_HLEN..ETH_HLEN + 20]);
    f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
    f[ETH_HLEN + 24..ETH_HLEN + 26].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

#[test]
fn frames_longer_than_a_test_run_takes_are_reported_not_dropped() {
    let dir = TempDir::new("replay-big");
    let (input, output) = (dir.join("in.pcap"), dir.join("out.pcap"));
    // 3,000 bytes fits a test run; 5,000 is longer than its linear part
    // (the director saw a cut packet and dropped it); 80,000 is longer
    // than a test run takes at all (the run failed, and the replay with it).
    let frames = [
        udp_frame_of(100),
        udp_frame_of(5_000),
        udp_frame_of(3_000),
        udp_frame_of(80_000),
        udp_frame_of(200),
    ];
    let records: Vec<Record> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| Record {
            secs: 1_700_000_000 + i as u32,
            micros: 0,
            data: f.clone(),
        })
        .collect();
    write_pcap(&input, &records);
    let run = replay(Path::new(EXAMPLE_CONFIG), &input, &output);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}\n{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), frames.len() + 1, "{stdout}");
    for i in [0, 2, 4] {
        assert!(
            lines[i].starts_with(&format!("{} TX 203.0.113.53:53/udp -> ", i + 1)),
            "{stdout}"
        );
    }
    for (i, len) in [(1, 5_000), (3, 80_000)] {
        assert!(
            lines[i].starts_with(&format!(
                "{} TOO-LONG (not run: {len} bytes, longer than the ",
                i + 1
            )) && lines[i].ends_with(" a test run takes)"),
            "{stdout}"
        );
    }
    assert_eq!(lines[5], "5 packets: TX 3, TOO-LONG 2");
    assert!(
        stderr.contains("WARN")
            && stderr.contains("packet 2 of ")
            && stderr.contains("(5000 bytes) is longer than the "),
        "{stderr}"
    );
    let got = read_pcap(&output);
    assert_eq!(got.len(), frames.len(), "one output packet per input");
    for i in [1, 3] {
        assert_eq!(
            got[i].data,
            frames[i],
            "packet {}: written as it came in",
            i + 1
        );
    }
    // IPv6 backends, one hop: outer IPv6, UDP and GUE add 88 bytes.
    assert_eq!(got[4].data.len(), frames[4].len() + 88, "encapsulated");
}

#[test]
fn replay_has_no_path_mtu_unless_the_config_gives_one() {
    let dir = TempDir::new("replay-mtu");
    let (input, output) = (dir.join("in.pcap"), dir.join("out.pcap"));
    // A full-size 1500-byte IPv4 TCP segment (DF) to a VIP of IPv4 backends.
    let mut big = ipv4_frame(
        "192.0.2.44".parse().expect("address"),
        "203.0.113.10".parse().expect("address"),
        6,
        40000,
        80,
    );
    big.resize(ETH_HLEN + 1500, 0x5a);
    big[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&1500u16.to_be_bytes());
    big[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&[0, 0]);
    let c = ipv4_checksum(&big[ETH_HLEN..ETH_HLEN + 20]);
    big[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
    write_pcap(
        &input,
        &[Record {
            secs: 1_700_000_000,
            micros: 0,
            data: big.clone(),
        }],
    );

    // No interface, no director.mtu: no limit, encapsulated to 1544 bytes
    // (table "web": IPv4 backends, two hops).
    let run = replay(Path::new(EXAMPLE_CONFIG), &input, &output);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("1 TX 203.0.113.10:80/tcp -> "),
        "{stdout}"
    );
    assert_eq!(read_pcap(&output)[0].data.len(), big.len() + 44);

    // director.mtu 1500: answered with a frag-needed advertising 1456.
    let with_mtu = dir.join("mtu.json");
    let text = std::fs::read_to_string(EXAMPLE_CONFIG).expect("reading the example");
    std::fs::write(
        &with_mtu,
        text.replace(r#""hash_fields""#, r#""mtu": 1500, "hash_fields""#),
    )
    .expect("writing the config");
    let run = replay(&with_mtu, &input, &output);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    assert_eq!(
        stdout.lines().next(),
        Some("1 TX ICMP frag-needed mtu 1456 203.0.113.10 -> 192.0.2.44"),
        "{stdout}"
    );
    let out = &read_pcap(&output)[0].data;
    assert_eq!(out.len(), ETH_HLEN + 576);
    assert_eq!(&out[0..6], &ROUTER_MAC, "back to the router");
}

#[test]
fn replay_shows_ipip_output_for_an_ipip_table() {
    let dir = TempDir::new("replay-ipip");
    let (input, output) = (dir.join("in.pcap"), dir.join("out.pcap"));
    let frame = ipv4_frame(
        "192.0.2.44".parse().expect("address"),
        "203.0.113.10".parse().expect("address"),
        6,
        40000,
        80,
    );
    write_pcap(
        &input,
        &[Record {
            secs: 1_700_000_000,
            micros: 0,
            data: frame.clone(),
        }],
    );
    let config_path = dir.join("ipip.json");
    let text = std::fs::read_to_string(EXAMPLE_CONFIG).expect("reading the example");
    let text = text.replacen(r#""hops": 2,"#, r#""hops": 2, "encap": "ipip","#, 1);
    std::fs::write(&config_path, &text).expect("writing the config");
    let config = Config::from_json(&text).expect("the config");
    let want = placement(&config, "web", &frame);

    let run = replay(&config_path, &input, &output);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    assert_eq!(
        stdout.lines().next(),
        Some(format!("1 TX 203.0.113.10:80/tcp -> {} ipip", want.primary).as_str()),
        "{stdout}"
    );
    // One outer IPv4 header (protocol 4) in front of the client's packet.
    let out = &read_pcap(&output)[0].data;
    assert_eq!(out.len(), frame.len() + 20);
    assert_eq!(out[ETH_HLEN + 9], 4, "IP-in-IP");
    assert_eq!(
        &out[ETH_HLEN + 16..ETH_HLEN + 20],
        octets(want.primary).as_slice()
    );
    assert_eq!(&out[ETH_HLEN + 20..], &frame[ETH_HLEN..]);
}
