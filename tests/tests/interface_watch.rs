//! No silent failure: a real `director-xdp run` in a namespace whose
//! interface is deleted and created again, whose XDP link is detached
//! behind its back, and whose interface goes down. While no program is
//! attached, `/healthz` answers 503 naming the problem, `/metrics` says
//! `glb_director_dataplane_attached 0`, and changes are refused with 503
//! without touching the config file; reads still work. When the interface
//! returns (a new ifindex) or the link is detached, the daemon attaches the
//! program again, and packets through the director are encapsulated again
//! (docs/operations.md, "When the interface goes away"). Needs root;
//! namespaces, daemons and files are removed on every exit path.
//!
//! Lab: one veth pair. The peer is the client (it routes the VIP through
//! the director) and the first backend; it runs the pass-through XDP
//! program, without which a veth drops the frames its peer sends with
//! `XDP_TX`, and captures what the director sends it.
//!
//! ```text
//!   director va 198.51.100.1 ──── vb 198.51.100.2 peer (client + backend)
//!   VIP 203.0.113.10:53/udp; backends 198.51.100.2 and .3 (no host)
//! ```
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lab_tests::http::{Response, request};
use lab_tests::{Capture, Daemon, Netns, Scratch, XdpPass, veth, workspace_bin};
use serde_json::Value;

const TOKEN: &str = "lab-token-77d0e1";
const API: &str = "127.0.0.1:9610";
const DIRECTOR_MAC: &str = "02:00:00:00:0b:01";
const PEER_MAC: &str = "02:00:00:00:0b:02";
/// The second backend's next hop: no host answers there, but its frames
/// still reach the peer's capture.
const OTHER_MAC: &str = "02:00:00:00:0b:03";
/// Loading the program and building tables in a debug build, on a shared
/// two-core machine.
const START: Duration = Duration::from_secs(120);
/// The daemon notices a deleted or returning interface within the settle
/// time of a netlink notification (200 ms), and a detached link within its
/// poll interval (5 s); this leaves room for a loaded machine.
const NOTICE: Duration = Duration::from_secs(20);
const PACKETS: u32 = 40;

fn config_text(token_file: &str) -> String {
    format!(
        r#"{{"tables":[{{"name":"web","hash_key":"0a4d8c2f7b1e93564fd0b5c2e1a87f36",
            "seed":"49a3d861d661ae5ab06ed9326871a2f5",
            "binds":[{{"ip":"203.0.113.10","proto":"udp","port":53}}],
            "backends":[
              {{"ip":"198.51.100.2","state":"active","healthy":true}},
              {{"ip":"198.51.100.3","state":"active","healthy":true}}]}}],
          "director":{{"interface":"va","source_v4":"198.51.100.1",
            "api_listen":"{API}","api_token_file":"{token_file}"}}}}"#
    )
}

/// The director and its peer. Fields drop in order: the daemon and the
/// peer's XDP program first, the namespaces, then the files.
struct Lab {
    daemon: Daemon,
    peer_xdp: Option<XdpPass>,
    ns: Netns,
    peer: Netns,
    scratch: Scratch,
}

impl Lab {
    fn new() -> Lab {
        let scratch = Scratch::new("ifwatch").unwrap();
        let ns = Netns::new("ifw").unwrap();
        let peer = Netns::new("ifwpeer").unwrap();
        let token = scratch.file("token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        std::fs::write(
            scratch.file("director.json"),
            config_text(token.to_str().unwrap()),
        )
        .unwrap();
        let peer_xdp = Some(plug(&ns, &peer));
        let bin = workspace_bin("director-xdp").unwrap();
        let mut daemon = ns
            .spawn(
                bin.to_str().unwrap(),
                &[
                    "run",
                    "--config",
                    scratch.file("director.json").to_str().unwrap(),
                ],
                scratch.file("director.log"),
            )
            .unwrap();
        daemon.wait_for_log("director attached", START).unwrap();
        Lab {
            daemon,
            peer_xdp,
            ns,
            peer,
            scratch,
        }
    }

    fn config_path(&self) -> PathBuf {
        self.scratch.file("director.json")
    }

    /// Deletes the director's interface (and with it the peer's end).
    fn delete_interface(&mut self) {
        self.ns.ip(&["link", "del", "va"]).unwrap();
        self.peer_xdp = None;
    }

    /// Creates the veth pair again, as [`plug`] did the first time.
    fn recreate_interface(&mut self) {
        self.peer_xdp = Some(plug(&self.ns, &self.peer));
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>) -> Response {
        let addr: SocketAddr = API.parse().unwrap();
        let (m, p, t) = (
            method.to_string(),
            path.to_string(),
            token.map(str::to_string),
        );
        self.ns
            .run_in(move || request(addr, &m, &p, t.as_deref(), None))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn json(&self, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
        let r = self.call(method, path, token);
        let v = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e}): {:?}", r.body));
        (r.status, v)
    }

    fn healthz(&self) -> (u16, Value) {
        self.json("GET", "/healthz", None)
    }

    fn metrics(&self) -> String {
        let r = self.call("GET", "/metrics", None);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// Waits until `/healthz` answers `status`; returns its body.
    fn wait_for_health(&self, status: u16) -> Value {
        let start = Instant::now();
        loop {
            let (s, v) = self.healthz();
            if s == status {
                return v;
            }
            assert!(
                start.elapsed() < NOTICE,
                "/healthz still answers {s} after {NOTICE:?}, not {status}: {v}\n{}",
                self.daemon.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of a metric line without labels.
    fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// Sends [`PACKETS`] datagrams from the peer to the VIP; returns how
    /// many came back to the peer encapsulated by the director, and the
    /// destination MACs of those for the peer itself.
    fn send_through_director(&self) -> (u32, Vec<[u8; 6]>) {
        let capture = Capture::start(&self.peer, "vb").unwrap();
        self.peer
            .run_in(|| {
                let s = std::net::UdpSocket::bind("198.51.100.2:0")?;
                for i in 0..PACKETS {
                    s.send_to(&i.to_be_bytes(), "203.0.113.10:53")?;
                }
                Ok(())
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let frames = capture.finish().unwrap();
        let mut seen = vec![false; PACKETS as usize];
        let mut macs = Vec::new();
        for f in &frames {
            // Ethernet, IPv4 from the director, UDP to the GUE port.
            if f.len() < 42
                || f[12..14] != [0x08, 0x00]
                || f[23] != 17
                || f[26..30] != [198, 51, 100, 1]
                || f[36..38] != 19523u16.to_be_bytes()
            {
                continue;
            }
            let Ok(gue) = proto::wire::GuePacket::new_checked(&f[42..]) else {
                continue;
            };
            let inner = gue.payload();
            if inner.len() < 32 || inner[16..20] != [203, 0, 113, 10] {
                continue;
            }
            let i = u32::from_be_bytes([inner[28], inner[29], inner[30], inner[31]]);
            if let Some(s) = seen.get_mut(i as usize) {
                *s = true;
            }
            if f[30..34] == [198, 51, 100, 2] {
                macs.push(<[u8; 6]>::try_from(&f[0..6]).unwrap());
            }
        }
        (seen.iter().filter(|s| **s).count() as u32, macs)
    }

    /// Sends traffic until every packet comes back encapsulated, and those
    /// for the peer carry the peer's MAC (the next hops were resolved on
    /// the interface the director runs on now).
    fn wait_for_forwarding(&self) {
        let peer_mac = proto::config::parse_mac(PEER_MAC).unwrap();
        let start = Instant::now();
        loop {
            let (n, macs) = self.send_through_director();
            if n == PACKETS && !macs.is_empty() && macs.iter().all(|m| *m == peer_mac) {
                return;
            }
            assert!(
                start.elapsed() < NOTICE,
                "{n} of {PACKETS} packets encapsulated (MACs toward the peer {macs:?})\n{}",
                self.daemon.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Connects the director's namespace to the peer's: veth `va` (director)
/// and `vb` (peer) with addresses, permanent neighbours and the VIP's
/// route, and the pass-through XDP program on `vb`.
fn plug(ns: &Netns, peer: &Netns) -> XdpPass {
    veth(ns, "va", DIRECTOR_MAC, peer, "vb", PEER_MAC).unwrap();
    configure(ns, peer)
}

/// Like [`plug`], but `va` comes with another XDP program on it (the
/// pass-through one, attached under another name, before the rename):
/// returns it too.
fn plug_with_foreign_program(ns: &Netns, peer: &Netns) -> (XdpPass, XdpPass) {
    veth(ns, "vx", DIRECTOR_MAC, peer, "vb", PEER_MAC).unwrap();
    // Only a link that is down can be renamed.
    ns.ip(&["link", "set", "vx", "down"]).unwrap();
    let foreign = XdpPass::attach(ns, "vx").unwrap();
    ns.ip(&["link", "set", "vx", "name", "va"]).unwrap();
    ns.ip(&["link", "set", "va", "up"]).unwrap();
    (configure(ns, peer), foreign)
}

fn configure(ns: &Netns, peer: &Netns) -> XdpPass {
    ns.ip(&["addr", "add", "198.51.100.1/24", "dev", "va"])
        .unwrap();
    peer.ip(&["addr", "add", "198.51.100.2/24", "dev", "vb"])
        .unwrap();
    for (ip, mac) in [("198.51.100.2", PEER_MAC), ("198.51.100.3", OTHER_MAC)] {
        ns.ip(&[
            "neigh",
            "add",
            ip,
            "lladdr",
            mac,
            "dev",
            "va",
            "nud",
            "permanent",
        ])
        .unwrap();
    }
    peer.ip(&[
        "neigh",
        "add",
        "198.51.100.1",
        "lladdr",
        DIRECTOR_MAC,
        "dev",
        "vb",
        "nud",
        "permanent",
    ])
    .unwrap();
    peer.ip(&["route", "add", "203.0.113.10/32", "via", "198.51.100.1"])
        .unwrap();
    XdpPass::attach(peer, "vb").unwrap()
}

const DRAIN: &str = "/v1/tables/web/backends/198.51.100.3/drain";

#[test]
fn a_deleted_interface_is_reported_and_the_director_returns_with_it() {
    let mut lab = Lab::new();
    let (s, v) = lab.healthz();
    assert_eq!((s, &v["status"]), (200, &Value::from("ok")), "{v}");
    assert_eq!(v["attached"], true, "{v}");
    assert_eq!(lab.metric("glb_director_dataplane_attached"), Some(1.0));
    lab.wait_for_forwarding();
    let ifindex = v["ifindex"].as_u64().unwrap();

    lab.delete_interface();
    let v = lab.wait_for_health(503);
    assert_eq!(v["status"], "detached", "{v}");
    assert_eq!(v["problem"], "interface_missing", "{v}");
    assert_eq!(v["attached"], false, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("va")),
        "the error names the interface: {v}"
    );
    let metrics = lab.metrics();
    for line in [
        "glb_director_dataplane_attached 0",
        "glb_director_interface_up 0",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }

    // Changes are refused and write nothing; reads still work.
    let before = std::fs::read(lab.config_path()).unwrap();
    let (s, v) = lab.json("POST", DRAIN, Some(TOKEN));
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("no director program is attached")),
        "{v}"
    );
    assert_eq!(
        std::fs::read(lab.config_path()).unwrap(),
        before,
        "the config file is untouched"
    );
    let (s, v) = lab.json("GET", "/v1/tables/web", None);
    assert_eq!(s, 200, "{v}");
    let state = v["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["ip"] == "198.51.100.3"))
        .map(|b| b["state"].clone());
    assert_eq!(state, Some(Value::from("active")), "nothing applied: {v}");
    let (s, v) = lab.json("GET", "/v1/stats", None);
    assert_eq!(s, 200, "{v}");

    // The interface returns (a new ifindex): attached again.
    lab.recreate_interface();
    let v = lab.wait_for_health(200);
    assert_eq!((&v["status"], &v["attached"]), (&"ok".into(), &true.into()));
    assert_ne!(v["ifindex"].as_u64(), Some(ifindex), "a new interface: {v}");
    assert!(
        lab.daemon.log().contains("attached again"),
        "{}",
        lab.daemon.log()
    );
    assert_eq!(lab.metric("glb_director_dataplane_attached"), Some(1.0));
    assert_eq!(lab.metric("glb_director_reattached_total"), Some(1.0));
    let link = String::from_utf8(lab.ns.ip(&["-d", "link", "show", "va"]).unwrap().stdout).unwrap();
    assert!(link.contains("prog/xdp"), "{link}");
    lab.wait_for_forwarding();

    let (s, v) = lab.json("POST", DRAIN, Some(TOKEN));
    assert_eq!((s, &v["changed"]), (200, &Value::from(true)), "{v}");
    assert_ne!(std::fs::read(lab.config_path()).unwrap(), before, "saved");
}

#[test]
fn a_detached_program_is_attached_again_and_a_down_link_is_reported() {
    let lab = Lab::new();
    lab.wait_for_forwarding();
    let prog = lab_tests::xdp_prog_id(&lab.ns, "va").expect("a program on va");

    // The link owns the attachment: the kernel refuses to take it away
    // through netlink.
    let off = lab.ns.ip(&["link", "set", "dev", "va", "xdp", "off"]);
    assert!(off.is_err(), "ip link set xdp off detached the link");
    assert_eq!(lab.healthz().0, 200);

    // Detached through the link itself (as `bpftool link detach` does).
    lab_tests::detach_xdp_link(prog).unwrap();
    assert_eq!(lab_tests::xdp_prog_id(&lab.ns, "va"), None);
    let (s, v) = lab.healthz();
    if s == 503 {
        assert_eq!(
            (&v["status"], &v["problem"]),
            (&"detached".into(), &"program_detached".into()),
            "{v}"
        );
        let (s, v) = lab.json("POST", DRAIN, Some(TOKEN));
        // The poll may have attached it again between the two calls.
        assert!(s == 503 || s == 200, "{s}: {v}");
    }
    // Noticed by the poll and attached again.
    lab.wait_for_health(200);
    let start = Instant::now();
    while !lab.daemon.log().contains("attached again") {
        assert!(start.elapsed() < NOTICE, "{}", lab.daemon.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        lab.daemon.log().contains("is no longer attached to va"),
        "{}",
        lab.daemon.log()
    );
    assert_eq!(lab.metric("glb_director_reattached_total"), Some(1.0));
    assert_eq!(lab_tests::xdp_prog_id(&lab.ns, "va"), Some(prog));
    lab.wait_for_forwarding();

    // Down is not detached: the program stays attached (it forwards again
    // when the link comes up), /healthz stays ok and says so.
    lab.ns.ip(&["link", "set", "va", "down"]).unwrap();
    let (s, v) = lab.healthz();
    assert_eq!(
        (s, &v["status"], &v["link_up"]),
        (200, &"ok".into(), &false.into()),
        "{v}"
    );
    assert_eq!(lab.metric("glb_director_interface_up"), Some(0.0));
    assert_eq!(lab.metric("glb_director_dataplane_attached"), Some(1.0));
    lab.ns.ip(&["link", "set", "va", "up"]).unwrap();
    let (s, v) = lab.healthz();
    assert_eq!((s, &v["link_up"]), (200, &true.into()), "{v}");
    assert_eq!(lab.metric("glb_director_interface_up"), Some(1.0));
    assert_eq!(lab_tests::xdp_prog_id(&lab.ns, "va"), Some(prog));
    // Setting a link down flushes its neighbours, permanent ones included:
    // put them back (on a real network, ARP does) and it forwards again.
    for (ip, mac) in [("198.51.100.2", PEER_MAC), ("198.51.100.3", OTHER_MAC)] {
        lab.ns
            .ip(&[
                "neigh",
                "replace",
                ip,
                "lladdr",
                mac,
                "dev",
                "va",
                "nud",
                "permanent",
            ])
            .unwrap();
    }
    lab.wait_for_forwarding();
    assert_eq!(lab.metric("glb_director_reattached_total"), Some(1.0));
}

#[test]
fn an_interface_that_returns_with_another_program_is_reported_until_it_leaves() {
    let mut lab = Lab::new();
    lab.delete_interface();
    lab.wait_for_health(503);
    let (peer_xdp, foreign) = plug_with_foreign_program(&lab.ns, &lab.peer);
    lab.peer_xdp = Some(peer_xdp);

    // The daemon cannot attach beside it, and says so; it does not exit.
    let start = Instant::now();
    let v = loop {
        let (s, v) = lab.healthz();
        assert_eq!(s, 503, "attached beside another program? {v}");
        if v["problem"] == "attach_failed" {
            break v;
        }
        assert!(start.elapsed() < NOTICE, "{v}\n{}", lab.daemon.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("attaching the director to va")),
        "{v}"
    );
    assert_eq!(lab.metric("glb_director_dataplane_attached"), Some(0.0));
    let (s, v) = lab.json("POST", DRAIN, Some(TOKEN));
    assert_eq!(s, 503, "{v}");

    // The other program leaves: the next poll attaches the director.
    drop(foreign);
    let v = lab.wait_for_health(200);
    assert_eq!(v["attached"], true, "{v}");
    assert_eq!(lab.metric("glb_director_reattached_total"), Some(1.0));
    lab.wait_for_forwarding();
    let (s, v) = lab.json("POST", DRAIN, Some(TOKEN));
    assert_eq!(s, 200, "{v}");
}
