//! A 6,000-byte POST through the VIPs over a 1500-byte path: the client's
//! full-size segments (1500 bytes) do not fit the director-to-backend path
//! once encapsulated (1544, two hops), so the director answers them with
//! ICMP frag-needed / packet-too-big from the VIP; the client's kernel
//! learns the path MTU (1456), sends smaller segments and the POST
//! completes.
//! With the director told the path is 9000 bytes, the same POST stalls:
//! the lab does lose oversized encapsulated packets, as the issue's
//! hosts did.
//!
//! Real programs end to end: `director-xdp run`, the redirect agent,
//! Python's HTTP server on the backends (an echo handler) and curl on the
//! client (see `lab_tests::glb`). Needs root; everything is removed on
//! every exit path.
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

use std::path::Path;
use std::time::Duration;

use lab_tests::Daemon;
use lab_tests::glb::{Lab, VIP4, VIP6};
use serde_json::Value;

/// An HTTP/1.1 server on port 8080 of both families whose POST answers
/// with the request's body.
const ECHO_SERVER: &str = r#"
import http.server, socket
class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
server = Server(("::", 8080), Echo)
print("serving", flush=True)
server.serve_forever()
"#;

/// The POST's body: 6,000 bytes that are not a repeated pattern.
fn body() -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    (0..6000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// curl's POST of `body` (in `file`) to `vip`'s port 8080, the answer
/// written to `out`; curl's exit status and stderr.
fn post(lab: &Lab, vip: &str, file: &Path, out: &Path, max_time: u32) -> (i32, String) {
    let url = if vip.contains(':') {
        format!("http://[{vip}]:8080/echo")
    } else {
        format!("http://{vip}:8080/echo")
    };
    let _ = std::fs::remove_file(out);
    let r = std::process::Command::new("ip")
        .args(["netns", "exec", lab.client.name(), "curl", "-sS", "--fail"])
        .args(["--max-time", &max_time.to_string()])
        // No "Expect: 100-continue" wait before the body.
        .args([
            "-H",
            "Expect:",
            "-H",
            "Content-Type: application/octet-stream",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg("-o")
        .arg(out)
        .arg(url)
        .output()
        .unwrap();
    (
        r.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

/// The director's counters and path MTU (`GET /v1/stats`).
fn stats(lab: &Lab) -> Value {
    let r = lab.api("GET", "/v1/stats", false).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

fn too_big(stats: &Value) -> (u64, u64) {
    let o = &stats["outcomes"];
    (
        o["too_big_icmp"].as_u64().unwrap(),
        o["too_big_dropped"].as_u64().unwrap(),
    )
}

/// What the client's kernel knows of the path to `vip` (`ip route get`).
fn route_to(lab: &Lab, vip: &str) -> String {
    let family = if vip.contains(':') { "-6" } else { "-4" };
    let out = lab
        .client
        .exec("ip", &[family, "route", "get", vip])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_6000_byte_post_through_either_vip_succeeds_over_a_1500_byte_path() {
    let mut lab = Lab::new(&["active", "active"]).unwrap();
    // Declared after the lab, so stopped before its namespaces go.
    let mut servers: Vec<Daemon> = Vec::new();
    for (i, b) in lab.backends.iter().enumerate() {
        let log = lab.scratch.file(&format!("echo{i}.log"));
        let mut s = b.ns.spawn("python3", &["-c", ECHO_SERVER], log).unwrap();
        s.wait_for_log("serving", Duration::from_secs(10)).unwrap();
        servers.push(s);
    }
    let body = body();
    let file = lab.scratch.file("body");
    let out = lab.scratch.file("answer");
    std::fs::write(&file, &body).unwrap();

    // The director told the path is 9000 bytes: it encapsulates the
    // client's 1500-byte segments into 1540-byte packets, which the
    // 1500-byte link drops. The POST stalls, and no ICMP says why.
    lab.set_mtu(Some(9000)).unwrap();
    let (status, stderr) = post(&lab, VIP4, &file, &out, 4);
    assert_eq!(status, 28, "curl timed out: {stderr}");
    assert_eq!(too_big(&stats(&lab)), (0, 0));
    assert!(!route_to(&lab, VIP4).contains("mtu"), "nothing learnt");

    // The director's own interface MTU (1500): the same POST succeeds,
    // over IPv4 and over IPv6.
    lab.set_mtu(None).unwrap();
    assert_eq!(stats(&lab)["path_mtu"], 1500);
    let mut answered = 0;
    for vip in [VIP4, VIP6] {
        let (status, stderr) = post(&lab, vip, &file, &out, 20);
        assert_eq!(status, 0, "POST to {vip}: {stderr}\n{}", lab.director.log());
        let echoed = std::fs::read(&out).unwrap();
        assert!(echoed == body, "{vip}: {} bytes echoed", echoed.len());
        // The director said the path is 1500 - 44 = 1456 bytes (IPv4
        // backends, two hops), and the client's kernel believed it.
        let route = route_to(&lab, vip);
        assert!(route.contains("mtu 1456"), "{vip}: {route}");
        let (icmp, dropped) = too_big(&stats(&lab));
        assert!(icmp > answered, "{vip}: no ICMP error sent");
        assert_eq!(dropped, 0, "{vip}");
        answered = icmp;
    }
    drop(servers);
}
