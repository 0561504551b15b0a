//! An `ipip` table end to end, through the real director (`director-xdp
//! run`): HTTP through the VIPs over IPv4 and IPv6, and the lab's held
//! connections, reach backends that decapsulate plain IP-in-IP, and the
//! replies go straight to the client (direct server return).
//!
//! - With the redirect agent (`redirect-xdp`), which decapsulates IP-in-IP
//!   from allowed sources in XDP: runs everywhere.
//! - With the kernel's own tunnel devices (`ipip` and `sit` in external
//!   mode) and no agent, the set-up of docs/backend.md for backends that run
//!   nothing of ours: runs where the kernel has those modules, and says so
//!   in its output, without failing, where it has not.
//!
//! The labs run one at a time (a lock), as in `redirect_e2e.rs`.
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use lab_tests::Capture;
use lab_tests::fleet_lab::http_server;
use lab_tests::glb::{Conn, Lab, VIP4, VIP6, backend_ip, connect_many};

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

/// `n` HTTP GETs of `/` on the VIP's port 8080 from the lab's client, one
/// connection each: who answered, counted; failures under "failed".
fn http_gets(lab: &Lab, vip: &str, n: usize) -> BTreeMap<String, usize> {
    let url = if vip.contains(':') {
        format!("http://[{vip}]:8080/")
    } else {
        format!("http://{vip}:8080/")
    };
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let out = lab
            .client
            .exec("curl", &["-sS", "--max-time", "5", "--fail", &url])
            .unwrap();
        let who = if out.status.success() {
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        } else {
            "failed".to_string()
        };
        *seen.entry(who).or_insert(0) += 1;
    }
    seen
}

/// Frames whose IP source is a VIP (replies), at the director and at the
/// client; asserts the director's stack saw none and the client got them
/// from the backends' MACs.
fn assert_direct_server_return(director: &[Vec<u8>], client: &[Vec<u8>], least: usize) {
    let vip4 = VIP4.parse::<std::net::Ipv4Addr>().unwrap().octets();
    let vip6 = VIP6.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let from_vip = |f: &&Vec<u8>| match &f[12..14] {
        [0x08, 0x00] if f.len() >= 34 => f[26..30] == vip4,
        [0x86, 0xdd] if f.len() >= 54 => f[22..38] == vip6,
        _ => false,
    };
    assert_eq!(
        director.iter().filter(from_vip).count(),
        0,
        "replies reached the director"
    );
    let replies: Vec<&Vec<u8>> = client.iter().filter(from_vip).collect();
    assert!(
        replies.len() >= least,
        "{} replies at the client",
        replies.len()
    );
    let backend_macs: Vec<[u8; 6]> = (0..3u8).map(|i| [2, 0, 0, 0, 3, 0x11 + i]).collect();
    for f in replies {
        assert!(
            backend_macs.iter().any(|m| f[6..12] == *m),
            "a reply from MAC {:02x?}, not a backend's",
            &f[6..12]
        );
    }
}

/// The lab's held connections: `n` to each VIP, three lines each; the
/// backends that answered.
fn held_connections(lab: &Lab, n: usize) -> BTreeMap<String, usize> {
    let mut conns: Vec<Conn> = connect_many(&lab.client, VIP4, n).unwrap();
    conns.extend(connect_many(&lab.client, VIP6, n).unwrap());
    let mut by_backend = BTreeMap::new();
    for (i, c) in conns.iter_mut().enumerate() {
        for k in 0..3 {
            c.ping(&format!("request {i} {k}")).unwrap();
        }
        *by_backend.entry(c.backend.clone()).or_insert(0) += 1;
    }
    by_backend
}

/// An HTTP server on every backend, then 30 GETs and 30 held connections
/// (three round trips each) to each VIP, captured at the director and the
/// client. Asserts that every request was answered, every backend answered
/// some, all 60 connections held, and the replies bypassed the director;
/// returns the held connections by backend.
fn serve_through_the_vips(lab: &Lab) -> BTreeMap<String, usize> {
    let _http: Vec<_> = lab
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| http_server(&b.ns, &lab.scratch, i).unwrap())
        .collect();
    let at_director = Capture::start(&lab.director_ns, "eth0").unwrap();
    let at_client = Capture::start(&lab.client, "eth0").unwrap();

    let mut answered = http_gets(lab, VIP4, 30);
    for (who, n) in http_gets(lab, VIP6, 30) {
        *answered.entry(who).or_insert(0) += n;
    }
    let held = held_connections(lab, 30);
    std::thread::sleep(Duration::from_millis(300));
    let director_frames = at_director.finish().unwrap();
    let client_frames = at_client.finish().unwrap();

    assert_eq!(answered.get("failed"), None, "{answered:?}");
    assert_eq!(answered.len(), 3, "every backend answered: {answered:?}");
    assert_eq!(held.values().sum::<usize>(), 60, "{held:?}");
    // 60 HTTP exchanges and 60 held connections, a few packets each.
    assert_direct_server_return(&director_frames, &client_frames, 120 * 3);
    held
}

#[test]
fn ipip_table_reaches_agent_backends_and_replies_bypass_the_director() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::with_table(&["active", "active", "active"], 2, "ipip").unwrap();
    let held = serve_through_the_vips(&lab);
    assert_eq!(held.len(), 3, "{held:?}");

    // What the agents saw was IP-in-IP only, all of it accepted.
    let mut lab = lab;
    let mut ipip = 0;
    for b in &mut lab.backends {
        let c: BTreeMap<String, u64> = b.counters().unwrap().into_iter().collect();
        assert!(c["accepted_ipip"] > 0, "{c:?}");
        assert_eq!(c["total"], c["accepted_ipip"], "no GUE at all: {c:?}");
        ipip += c["accepted_ipip"];
    }
    assert!(ipip >= 120 * 3, "{ipip} IP-in-IP packets accepted");
    assert!(
        lab.director
            .log()
            .contains("ignored with \"encap\": \"ipip\""),
        "the lab's table gives hops, which an ipip table ignores: said so"
    );

    // The API names the encap, and its preview of a drain warns and lists
    // exactly the rows the backend is primary of as lost.
    let table: serde_json::Value =
        serde_json::from_str(&lab.api("GET", "/v1/tables/lab", false).unwrap().body).unwrap();
    assert_eq!(table["encap"], "ipip");
    assert_eq!(table["hops"], 0);
    let drained = backend_ip(1);
    let owned = table["backends"][1]["rows_primary"].as_u64().unwrap();
    assert!(owned > 0);
    let out = lab
        .ctl(&["--json", "preview", "lab", "drain", &drained])
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let preview: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(preview["rows_lost"], owned, "{preview}");
    assert_eq!(preview["lost"][0]["ip"], drained.as_str());
    let warning = preview["warnings"][0].as_str().unwrap();
    assert!(warning.contains("no second chance"), "{warning}");
    let out = lab.ctl(&["tables"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("no alternates (ipip: no second chance)"),
        "{text}"
    );
    // The drain itself says so too, in the API's answer and on
    // director-ctl's stderr, with the same count.
    let token = lab.token_file();
    let out = lab
        .ctl(&[
            "--token-file",
            token.to_str().unwrap(),
            "backends",
            "drain",
            "lab",
            &drained,
        ])
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "warning: table \"lab\" is \"encap\": \"ipip\" (no hop list, no second chance)"
        ) && err.contains(&format!("moves the established flows of {owned} rows")),
        "{err}"
    );
}

/// Why the kernel cannot run the tunnel test, if it cannot: `ip link add`
/// of an `ipip` and a `sit` device in external mode, in a namespace of its
/// own (the modules load on first use where they exist).
fn kernel_tunnels_missing() -> Option<String> {
    let ns = match lab_tests::Netns::new("probe") {
        Ok(ns) => ns,
        Err(e) => return Some(format!("creating a namespace to probe in: {e}")),
    };
    for (name, kind) in [("ipipprobe", "ipip"), ("sitprobe", "sit")] {
        match ns.ip(&["link", "add", name, "type", kind, "external"]) {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Some(format!(
                    "`ip link add {name} type {kind} external`: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Err(e) => return Some(format!("`ip link add type {kind}`: {e}")),
        }
    }
    None
}

#[test]
fn ipip_table_reaches_backends_that_decapsulate_with_kernel_tunnels() {
    if let Some(why) = kernel_tunnels_missing() {
        // Straight to the process's stderr: the test harness keeps what
        // `println!` and `eprintln!` say of a passing test to itself, and
        // this must show in `make test`'s output.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED ipip_table_reaches_backends_that_decapsulate_with_kernel_tunnels: this kernel has no IP-in-IP tunnel devices ({why}); the agent's test covers the path"
        );
        return;
    }
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::with_table(&["active", "active", "active"], 2, "ipip").unwrap();
    for b in &mut lab.backends {
        // No agent: the kernel decapsulates (docs/backend.md, "without the
        // agent").
        b.agent.signal(libc::SIGTERM).unwrap();
        while b.agent.running().unwrap() {
            std::thread::sleep(Duration::from_millis(10));
        }
        for (name, kind) in [("ipip0", "ipip"), ("sit0x", "sit")] {
            let out =
                b.ns.ip(&["link", "add", name, "type", kind, "external"])
                    .unwrap();
            assert!(out.status.success(), "{out:?}");
            b.ns.ip(&["link", "set", name, "up"]).unwrap();
        }
        for key in [
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv4.conf.ipip0.rp_filter=0",
            "net.ipv4.conf.sit0x.rp_filter=0",
        ] {
            b.ns.exec("sysctl", &["-qw", key]).unwrap();
        }
    }
    serve_through_the_vips(&lab);
}
