//! Hitless restart: a `director-xdp run` in its namespace forwards a counted
//! stream of UDP packets from a client to a backend; mid-stream the daemon
//! is killed with SIGKILL and started again with the same config and pin
//! directory. Every packet must arrive encapsulated, exactly once (zero
//! lost), the XDP program must stay attached while no daemon runs, the new
//! daemon must say it adopted the pins, and a config change sent to it
//! (SIGHUP: a new bind) must apply. On SIGTERM the pins are removed; with
//! `--keep-on-exit` they stay and the program stays attached, for the next
//! daemon to adopt (and a daemon whose health state file is corrupt refuses
//! to start, naming it, while the pinned program keeps forwarding); pins of
//! another map layout are removed with a warning and the start is fresh.
//!
//! Lab (documentation addresses only, one L2 segment through a bridge):
//!
//! ```text
//!   client 198.51.100.2 ─┐
//!   director 198.51.100.1 ┼─ bridge (namespace "sw")
//!   backend 198.51.100.11 ┘
//!   VIP 203.0.113.10 is routed by the client via the director.
//! ```
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use lab_tests::{Capture, MountNs, Netns, Scratch, Switch, XdpPass, workspace_bin};

const BACKEND: (&str, &str) = ("198.51.100.11", "02:00:00:00:01:11");
const DIRECTOR_MAC: &str = "02:00:00:00:01:01";
/// A debug build on a shared two-core machine loads, builds and writes
/// 65,536-row tables, and reads the live ones back when it adopts them.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The stream: one packet every 2 ms, at least this many.
const MIN_PACKETS: u32 = 2000;
const INTERVAL: Duration = Duration::from_millis(2);

fn config(pin_dir: &Path, ports: &[u16]) -> String {
    let binds: Vec<String> = ports
        .iter()
        .map(|p| format!(r#"{{"ip":"203.0.113.10","proto":"udp","port":{p}}}"#))
        .collect();
    format!(
        r#"{{"tables":[{{"name":"lab","hash_key":"6c61622d686173682d6b65792d303031",
            "seed":"6c61622d736565642d30303030303031",
            "binds":[{}],
            "backends":[{{"ip":"{}","state":"active","healthy":true}}]}}],
          "director":{{"interface":"eth0","source_v4":"198.51.100.1",
            "hash_fields":["src_addr","src_port"],"gateway_mac":"02:00:00:00:01:fe",
            "api_listen":"127.0.0.1:9610","pin_dir":"{}"}}}}"#,
        binds.join(","),
        BACKEND.0,
        pin_dir.display()
    )
}

/// A pin directory unique to this test run, on the bpffs of the lab's
/// own mount namespace: removed with it (and with the pins inside) when
/// the namespace's holder is killed, panics included.
struct PinDir(PathBuf);

/// The XDP program id on the director's interface, if any.
fn xdp_prog(director: &Netns) -> Option<String> {
    let out = director.ip(&["-d", "link", "show", "dev", "eth0"]).ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let at = text.find("prog/xdp id ")?;
    text[at + 12..]
        .split_whitespace()
        .next()
        .map(str::to_string)
}

/// The sequence numbers of the stream's packets (to `port`) that reached
/// the backend encapsulated by the director.
fn sequences(frames: &[Vec<u8>], port: u16) -> Vec<u32> {
    frames
        .iter()
        .filter(|f| {
            f.len() >= 42 + 8 + 28 + 4
                && f[12..14] == [0x08, 0x00]
                && f[23] == 17
                && f[36..38] == 19523u16.to_be_bytes()
                && f[26..30] == [198, 51, 100, 1]
        })
        .filter_map(|f| {
            // GUE header with one hop (8 + 4 bytes) precedes the inner packet.
            let gue = proto::wire::GuePacket::new_checked(&f[42..]).ok()?;
            let inner = gue.payload();
            (inner.len() >= 32
                && inner[16..20] == [203, 0, 113, 10]
                && inner[22..24] == port.to_be_bytes())
            .then(|| u32::from_be_bytes([inner[28], inner[29], inner[30], inner[31]]))
        })
        .collect()
}

#[test]
fn a_killed_director_restarts_without_losing_a_packet() {
    let scratch = Scratch::new("hitless").unwrap();
    // The daemons run in a mount namespace of their own that outlives them
    // (`ip netns exec` would give each its own /sys, hence its own bpffs).
    let mnt = MountNs::new().unwrap();
    let pins = PinDir(PathBuf::from(format!(
        "/sys/fs/bpf/glbt-hitless-{}",
        std::process::id()
    )));
    let cfg_path = scratch.file("director.json");
    std::fs::write(&cfg_path, config(&pins.0, &[53])).unwrap();

    // Hosts first, so that daemons and captures are dropped before them.
    let mut sw = Switch::new().unwrap();
    let client = Netns::new("cl").unwrap();
    let director = Netns::new("dir").unwrap();
    let backend = Netns::new("be").unwrap();
    let mut attach = |host: &Netns, mac: &str, addr: &str| sw.plug(host, mac, &[addr]).unwrap();
    let director_port = attach(&director, DIRECTOR_MAC, "198.51.100.1/24");
    attach(&client, "02:00:00:00:01:02", "198.51.100.2/24");
    attach(&backend, BACKEND.1, &format!("{}/24", BACKEND.0));
    let _peer_xdp = XdpPass::attach(sw.ns(), &director_port).unwrap();
    client
        .ip(&["route", "add", "203.0.113.10/32", "via", "198.51.100.1"])
        .unwrap();
    for (ns, ip, mac) in [
        (&client, "198.51.100.1", DIRECTOR_MAC),
        (&director, BACKEND.0, BACKEND.1),
    ] {
        ns.add_neighbour(ip, mac).unwrap();
    }

    let bin = workspace_bin("director-xdp").unwrap();
    let start_with = |log: &str, extra: &[&str]| {
        let mut args = vec!["run", "--config", cfg_path.to_str().unwrap()];
        args.extend_from_slice(extra);
        director
            .spawn_in_mount(&mnt, bin.to_str().unwrap(), &args, scratch.file(log))
            .unwrap()
    };
    let start = |log: &str| start_with(log, &[]);
    let mut first = start("first.log");
    first.wait_for_log("attached", START_TIMEOUT).unwrap();
    assert!(
        first.log().contains("pinned in"),
        "the first daemon did not pin:\n{}",
        first.log()
    );
    let prog_before = xdp_prog(&director).expect("XDP program attached");

    let capture = Capture::start(&backend, "eth0").unwrap();
    // The stream, on its own thread: one packet every 2 ms, numbered, until
    // told to stop (and at least MIN_PACKETS).
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU32::new(0));
    let stream = {
        let (stop, sent) = (stop.clone(), sent.clone());
        client.spawn_in(move || {
            let s = std::net::UdpSocket::bind("198.51.100.2:40000")?;
            let begin = Instant::now();
            let mut n: u32 = 0;
            while n < MIN_PACKETS || !stop.load(Ordering::Relaxed) {
                s.send_to(&n.to_be_bytes(), "203.0.113.10:53")?;
                n += 1;
                sent.store(n, Ordering::Relaxed);
                // Paced on the clock, so a slow moment does not burst.
                let due = begin + INTERVAL * n;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            Ok(n)
        })
    };

    // Mid-stream: SIGKILL, then a gap with no daemon at all.
    while sent.load(Ordering::Relaxed) < 500 {
        std::thread::sleep(Duration::from_millis(10));
    }
    first.signal(libc::SIGKILL).unwrap();
    drop(first); // reaps it
    let at_kill = sent.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        xdp_prog(&director).as_deref(),
        Some(prog_before.as_str()),
        "the XDP program must stay attached while no daemon runs"
    );

    let mut second = start("second.log");
    second.wait_for_log("attached", START_TIMEOUT).unwrap();
    let restarted_at = sent.load(Ordering::Relaxed);
    assert!(
        second.log().contains("adopted the pinned link"),
        "the restarted daemon did not adopt the pins:\n{}",
        second.log()
    );
    assert!(
        xdp_prog(&director).is_some(),
        "no XDP program after the restart"
    );
    // Traffic after the restart too, through the new program and tables.
    let until = sent.load(Ordering::Relaxed) + 500;
    while sent.load(Ordering::Relaxed) < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let total = stream.join().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let frames = capture.finish().unwrap();
    let mut seqs = sequences(&frames, 53);
    let received = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), received, "packets arrived twice");
    let missing: Vec<u32> = (0..total)
        .filter(|n| seqs.binary_search(n).is_err())
        .take(20)
        .collect();
    assert!(
        missing.is_empty() && received == total as usize,
        "{received} of {total} packets arrived encapsulated (killed after {at_kill}, restarted after {restarted_at}); first missing: {missing:?}"
    );

    eprintln!(
        "{total} packets, all encapsulated; SIGKILL after {at_kill}, restarted after {restarted_at}\n{}",
        second.log()
    );

    // A config change after the restart still applies: a new bind.
    std::fs::write(&cfg_path, config(&pins.0, &[53, 54])).unwrap();
    second.signal(libc::SIGHUP).unwrap();
    second
        .wait_for_log("applied: generation 2", Duration::from_secs(60))
        .unwrap();
    let capture = Capture::start(&backend, "eth0").unwrap();
    client
        .run_in(|| {
            let s = std::net::UdpSocket::bind("198.51.100.2:40001")?;
            for n in 0..20u32 {
                s.send_to(&n.to_be_bytes(), "203.0.113.10:54")?;
            }
            Ok(())
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let frames = capture.finish().unwrap();
    assert_eq!(
        sequences(&frames, 54).len(),
        20,
        "the new bind is not forwarded:\n{}",
        second.log()
    );

    // SIGTERM: detached, pins removed.
    let status = second.stop().unwrap();
    assert!(status.success(), "director exit: {status}");
    assert_eq!(xdp_prog(&director), None, "XDP program left attached");
    let pinned = |what: &str| {
        mnt.exec("ls", &[pins.0.join(what).to_str().unwrap()])
            .unwrap()
            .status
            .success()
    };
    assert!(
        !pinned(""),
        "pins left in {} after SIGTERM",
        pins.0.display()
    );

    // --keep-on-exit: SIGTERM leaves the program attached and pinned, and
    // the next daemon adopts it.
    let mut third = start_with("third.log", &["--keep-on-exit"]);
    third.wait_for_log("pinned in", START_TIMEOUT).unwrap();
    let prog = xdp_prog(&director).expect("attached");
    assert!(third.stop().unwrap().success());
    assert_eq!(
        xdp_prog(&director),
        Some(prog.clone()),
        "--keep-on-exit left the program attached"
    );
    assert!(pinned("link"), "--keep-on-exit left the link pinned");

    // A corrupt health state file: a clear refusal to start, and the pinned
    // program keeps forwarding meanwhile.
    let state = scratch.file("director.health.json");
    std::fs::write(&state, "{\"version\":1,\"verdicts\":[{\"table\":\"dns\"").unwrap();
    let mut refused = start("corrupt-state.log");
    let deadline = Instant::now() + START_TIMEOUT;
    while refused.running().unwrap() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = refused.exited().unwrap().expect("it exits");
    let log = refused.log();
    assert_eq!(status.code(), Some(2), "a usage error:\n{log}");
    assert!(
        log.contains(&format!(
            "the health state file {} is not valid",
            state.display()
        )) && log.contains("fix it or remove it"),
        "{log}"
    );
    assert_eq!(
        xdp_prog(&director),
        Some(prog),
        "the pinned program stays attached"
    );
    std::fs::remove_file(&state).unwrap();
    let mut fourth = start("fourth.log");
    fourth
        .wait_for_log("adopted the pinned link", START_TIMEOUT)
        .unwrap();

    // Pins of another layout (an upgrade changed a map): removed with a
    // warning, and the start is fresh.
    let marker = mnt.exec("ls", &[pins.0.to_str().unwrap()]).unwrap();
    let marker = String::from_utf8(marker.stdout)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("layout-"))
        .expect("a layout marker beside the pins")
        .to_string();
    let from = pins.0.join(&marker);
    let to = pins.0.join("layout-v0-0000000000000000");
    let moved = mnt
        .exec("mv", &[from.to_str().unwrap(), to.to_str().unwrap()])
        .unwrap();
    assert!(moved.status.success(), "{moved:?}");
    fourth.signal(libc::SIGKILL).unwrap();
    drop(fourth);
    let mut fifth = start("fifth.log");
    fifth.wait_for_log("attached", START_TIMEOUT).unwrap();
    let log = fifth.log();
    assert!(
        log.contains("another map layout") && log.contains("NOT hitless"),
        "no clear warning about incompatible pins:\n{log}"
    );
    assert!(
        !log.contains("adopted"),
        "incompatible pins adopted:\n{log}"
    );
    assert!(pinned(&marker), "fresh pins carry this build's marker");
    assert!(fifth.stop().unwrap().success());
    assert_eq!(xdp_prog(&director), None, "XDP program left attached");
    assert!(!pinned(""), "pins left after SIGTERM");
}
