//! The director object run on real bytes with `BPF_PROG_TEST_RUN`, which
//! attaches nothing to any interface. Needs root (CAP_BPF + CAP_NET_ADMIN);
//! without it these tests fail rather than skip, because a skipped proof is
//! no proof.

use aya::{
    Ebpf,
    maps::{Array, MapData},
    programs::{TestRun as _, TestRunOptions},
};
use director_xdp::{LAST_HASH_MAP, PROBE_HASH_KEY, director_program, load_director};

/// `XDP_PASS` in `enum xdp_action` (include/uapi/linux/bpf.h).
const XDP_PASS: u32 = 2;
const ETH_HLEN: usize = 14;
const IPV4_HLEN: usize = 20;
const UDP_HLEN: usize = 8;

/// A 64-byte Ethernet + IPv4 + UDP frame from 192.0.2.1:40000 to
/// 203.0.113.10:80 (documentation addresses), with a valid IPv4 checksum.
fn ipv4_udp_frame() -> [u8; 64] {
    let mut frame = [0u8; 64];
    let (eth, rest) = frame.split_at_mut(ETH_HLEN);
    eth[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // locally administered
    eth[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    eth[12..14].copy_from_slice(&0x0800u16.to_be_bytes());

    let (ip, rest) = rest.split_at_mut(IPV4_HLEN);
    let ip_len = (IPV4_HLEN + rest.len()) as u16;
    ip[0] = 0x45; // version 4, 5 words of header
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // don't fragment
    ip[8] = 64;
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&[192, 0, 2, 1]);
    ip[16..20].copy_from_slice(&[203, 0, 113, 10]);
    let checksum = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());

    let udp_len = rest.len() as u16;
    let (udp, payload) = rest.split_at_mut(UDP_HLEN);
    udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&80u16.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    // A zero UDP checksum means "none" over IPv4.
    for (i, b) in payload.iter_mut().enumerate() {
        *b = i as u8;
    }
    frame
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let (words, _) = header.as_chunks::<2>();
    let mut sum: u32 = words
        .iter()
        .map(|&w| u32::from(u16::from_be_bytes(w)))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn last_hash(ebpf: &Ebpf) -> u64 {
    let map = ebpf
        .map(LAST_HASH_MAP)
        .expect("LAST_HASH map in the object");
    let array: Array<&MapData, u64> = Array::try_from(map).expect("LAST_HASH is an Array<u64>");
    array.get(&0, 0).expect("reading LAST_HASH[0]")
}

/// Runs the loaded director once on `frame`; returns the verdict and the
/// frame as the program left it.
fn run_director(ebpf: &Ebpf, frame: &[u8]) -> (u32, Vec<u8>) {
    let program = director_program(ebpf).expect("director program");
    // Room to spare, so that a program that grew the frame would show it
    // instead of failing with ENOSPC.
    let mut out = vec![0u8; frame.len() + 256];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN of director");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

#[test]
fn ebpf_and_user_space_siphash_agree() {
    let ebpf = load_director().expect("loading the director (needs root)");
    assert_eq!(last_hash(&ebpf), 0, "a fresh map starts zeroed");

    let frame = ipv4_udp_frame();
    let (verdict, out) = run_director(&ebpf, &frame);

    assert_eq!(verdict, XDP_PASS);
    assert_eq!(out, frame, "the frame leaves unchanged");
    let want = proto::siphash::siphash24(&PROBE_HASH_KEY, &frame[ETH_HLEN..ETH_HLEN + 4]);
    assert_ne!(
        want, 0,
        "a zero digest could not be told from an unwritten map"
    );
    assert_eq!(last_hash(&ebpf), want);
}

#[test]
fn frame_too_short_to_hash_passes_unhashed() {
    let ebpf = load_director().expect("loading the director (needs root)");
    // Ethernet header plus 3 bytes: one short of the 4 bytes the probe hashes.
    let frame = &ipv4_udp_frame()[..ETH_HLEN + 3];

    let (verdict, out) = run_director(&ebpf, frame);

    assert_eq!(verdict, XDP_PASS);
    assert_eq!(out, frame);
    assert_eq!(last_hash(&ebpf), 0, "nothing hashed, nothing stored");
}
