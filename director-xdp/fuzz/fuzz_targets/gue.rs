//! cargo-fuzz target: checks::gue (director-xdp/fuzz/checks.rs).
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;
#[path = "../../src/pcap.rs"]
#[allow(dead_code)]
mod pcap;
#[path = "../../src/pcapng.rs"]
#[allow(dead_code)]
mod pcapng;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::gue(data));
