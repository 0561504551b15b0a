//! The properties the fuzz targets check, shared by the cargo-fuzz targets
//! (`director-xdp/fuzz/fuzz_targets/`, run by `make fuzz`) and the corpus run in
//! `make test` (`director-xdp/tests/fuzz_corpus.rs`), so that both check
//! the same thing. Every function panics on a violation, and must never
//! panic otherwise, whatever the input. The including crate provides
//! `crate::pcap` (the reader of director-xdp/src/pcap.rs).

use proto::api;
use proto::config::{Config, to_json, to_json_keeping};
use proto::wire::{GuePacket, GueRepr};

/// Longest error message any refusal may print: values are cut, so a
/// message stays short whatever the input's size.
const MESSAGE_MAX: usize = 2_000;

/// A config: parsed or refused; a parsed one renders and re-reads to the
/// same config (with and without the fields kept from the original), and
/// a refusal's message stays short.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_json(text) {
        Ok(c) => {
            let again = Config::from_json(&to_json(&c).to_string())
                .unwrap_or_else(|e| panic!("the rendering of an accepted config is refused: {e}"));
            assert_eq!((&again.tables, &again.director), (&c.tables, &c.director));
            let original: serde_json::Value =
                serde_json::from_str(text).expect("an accepted config is JSON");
            let kept = Config::from_json(&to_json_keeping(&c, &original).to_string())
                .unwrap_or_else(|e| panic!("the rewrite keeping unknown fields is refused: {e}"));
            assert_eq!((&kept.tables, &kept.director), (&c.tables, &c.director));
            for w in &c.warnings {
                assert!(w.len() <= MESSAGE_MAX, "a {}-byte warning", w.len());
            }
        }
        Err(e) => {
            let m = e.to_string();
            assert!(
                m.len() <= MESSAGE_MAX,
                "a {}-byte error: {}...",
                m.len(),
                &m[..200]
            );
        }
    }
}

/// A GUE header: parsed or refused; a parsed one emits the same bytes
/// back, which parse to the same header.
pub fn gue(data: &[u8]) {
    let packet = GuePacket::new_unchecked(data);
    let Ok(repr) = GueRepr::parse(&packet) else {
        return;
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut GuePacket::new_unchecked(&mut buf[..]));
    assert_eq!(
        &buf[..],
        &data[..repr.buffer_len()],
        "emit gives the bytes parsed"
    );
    let again = GueRepr::parse(&GuePacket::new_unchecked(&buf[..])).expect("emitted GUE parses");
    assert_eq!(again, repr);
}

/// An API request body, read as each request type: refused or read, and
/// what is read serialises and reads back to the same value.
pub fn api_body(data: &[u8]) {
    fn round_trip<T>(data: &[u8])
    where
        T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
    {
        if let Ok(v) = serde_json::from_slice::<T>(data) {
            let text = serde_json::to_vec(&v).expect("serialises");
            let again: T = serde_json::from_slice(&text).expect("reads back");
            assert_eq!(again, v);
        }
    }
    round_trip::<api::AddBackend>(data);
    round_trip::<api::SetHealth>(data);
    round_trip::<api::Proposal>(data);
    round_trip::<api::HealthBatch>(data);
}

/// A capture file: read to its end or refused at some record, never a
/// panic; what is read is within the format's limits.
pub fn capture(data: &[u8]) {
    use crate::pcap::{Capture, MAX_CAPLEN};
    let Ok(mut c) = Capture::open(data) else {
        return;
    };
    // A record is at least 16 bytes (a block 12): the file bounds the count.
    for _ in 0..=data.len() / 12 {
        match c.next_packet() {
            Ok(Some(p)) => {
                assert!(p.data.len() <= MAX_CAPLEN as usize);
                assert!(p.timestamp.nanos < 1_000_000_000);
            }
            Ok(None) | Err(_) => return,
        }
    }
    panic!("more records than the file has room for");
}
