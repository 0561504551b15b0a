//! The director's status page (`GET /`, docs/api.md#the-status-page),
//! loaded in headless Chromium (Debian's `chromium`, installed by `make
//! deps`) against a real `director-xdp run`: what the page shows once its
//! script has run is what the API answers, and its data calls need the
//! token, which it takes from the URL fragment or asks for.
//!
//! Lab (documentation addresses only, one L2 segment through a bridge):
//!
//! ```text
//!   client   198.51.100.2 ─┐  sends UDP to 203.0.113.10:53 and :443
//!   director 198.51.100.1 ─┘  API on 198.51.100.1:9610 (not loopback:
//!                              reads need the token); Chromium runs here
//!   backends .11 .12 .13 .14: neighbour entries only (what the director
//!   sends them is not looked at here)
//! ```
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lab_tests::chromium::{self, start_tag, text};
use lab_tests::http::{Response, request};
use lab_tests::{Daemon, Netns, Scratch, Switch, XdpPass, workspace_bin};
use proto::api::{DirectorStatus, Tables};

const API: &str = "198.51.100.1:9610";
const TOKEN: &str = "page-lab-token-3c9e";
const VIP: &str = "203.0.113.10";
/// Packets sent to each bind (UDP port), one flow each.
const SENT: [(u16, u16); 2] = [(53, 300), (443, 120)];
/// Backends: address, MAC, and their config fields.
const BACKENDS: [(&str, &str, &str); 4] = [
    ("198.51.100.11", "02:00:00:00:05:11", r#""state":"active""#),
    ("198.51.100.12", "02:00:00:00:05:12", r#""state":"active""#),
    (
        "198.51.100.13",
        "02:00:00:00:05:13",
        r#""state":"draining","healthy":false"#,
    ),
    (
        "198.51.100.14",
        "02:00:00:00:05:14",
        r#""state":"active","reachable":false"#,
    ),
];

/// The lab; fields drop in order: the daemon first, namespaces, files last.
struct PageLab {
    _daemon: Daemon,
    _peer_xdp: XdpPass,
    client: Netns,
    director: Netns,
    _sw: Switch,
    scratch: Scratch,
}

fn config(token_file: &Path) -> String {
    let backends: Vec<String> = BACKENDS
        .iter()
        .map(|(ip, _, fields)| format!(r#"{{"ip":"{ip}",{fields}}}"#))
        .collect();
    let binds: Vec<String> = SENT
        .iter()
        .map(|(port, _)| format!(r#"{{"ip":"{VIP}","proto":"udp","port":{port}}}"#))
        .collect();
    format!(
        r#"{{"tables":[{{"name":"web","hash_key":"6c61622d686173682d6b65792d303031",
            "seed":"6c61622d736565642d30303030303031",
            "binds":[{}],"backends":[{}]}}],
          "director":{{"interface":"eth0","source_v4":"198.51.100.1",
            "hash_fields":["src_addr","src_port"],"gateway_mac":"02:00:00:00:05:fe",
            "api_listen":"{API}","api_token_file":"{}"}}}}"#,
        binds.join(","),
        backends.join(","),
        token_file.display()
    )
}

impl PageLab {
    fn new() -> PageLab {
        let scratch = Scratch::new("page").unwrap();
        let mut sw = Switch::new().unwrap();
        let client = Netns::new("cl").unwrap();
        let director = Netns::new("dir").unwrap();
        let port = sw
            .plug(&director, "02:00:00:00:05:01", &["198.51.100.1/24"])
            .unwrap();
        sw.plug(&client, "02:00:00:00:05:02", &["198.51.100.2/24"])
            .unwrap();
        // What the director sends back out with XDP_TX reaches its switch
        // port only if that end runs XDP.
        let peer_xdp = XdpPass::attach(sw.ns(), &port).unwrap();
        client
            .ip(&["route", "add", &format!("{VIP}/32"), "via", "198.51.100.1"])
            .unwrap();
        client
            .add_neighbour("198.51.100.1", "02:00:00:00:05:01")
            .unwrap();
        for (ip, mac, _) in BACKENDS {
            director.add_neighbour(ip, mac).unwrap();
        }
        let token = scratch.file("api-token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let cfg = scratch.file("director.json");
        std::fs::write(&cfg, config(&token)).unwrap();
        let bin = workspace_bin("director-xdp").unwrap();
        let mut daemon = director
            .spawn(
                bin.to_str().unwrap(),
                &["run", "--config", cfg.to_str().unwrap()],
                scratch.file("director.log"),
            )
            .unwrap();
        daemon
            .wait_for_log("attached", Duration::from_secs(60))
            .unwrap();
        PageLab {
            _daemon: daemon,
            _peer_xdp: peer_xdp,
            client,
            director,
            _sw: sw,
            scratch,
        }
    }

    /// One call to the API from inside the director's namespace.
    fn call(&self, path: &str, token: Option<&'static str>) -> Response {
        let addr: SocketAddr = API.parse().unwrap();
        let path = path.to_string();
        self.director
            .run_in(move || request(addr, "GET", &path, token, None))
            .unwrap()
    }

    /// A read's answer, with the token.
    fn read(&self, path: &str) -> String {
        let r = self.call(path, Some(TOKEN));
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.body
    }

    /// Sends [`SENT`] from the client, each packet a flow of its own.
    fn send_traffic(&self) {
        self.client
            .run_in(|| {
                let mut sport = 20000;
                for (port, n) in SENT {
                    for _ in 0..n {
                        let s = std::net::UdpSocket::bind(("198.51.100.2", sport))?;
                        s.send_to(b"status page", (VIP, port))?;
                        sport += 1;
                    }
                }
                Ok(())
            })
            .unwrap();
        // The counters are read from the data plane; let the last
        // packets land.
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Chromium in the director's namespace, on `url`, with `args`
    /// before it; stdout and the console lines it logged.
    fn chromium(&self, run: &str, url: &str, args: &[&str]) -> (String, Vec<String>) {
        chromium::run(&self.director, &self.scratch, run, url, args)
    }

    fn dump(&self, run: &str, fragment: &str) -> (String, Vec<String>) {
        self.chromium(run, &format!("http://{API}/{fragment}"), &["--dump-dom"])
    }
}

/// `n` as the page writes it: digits grouped by three with commas.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn hidden(dom: &str, attr: &str) -> bool {
    start_tag(dom, attr).contains(" hidden")
}

/// The `<tr>` carrying `attr`, whole.
fn row<'a>(dom: &'a str, attr: &str) -> &'a str {
    let tag = start_tag(dom, attr);
    let from = dom.find(tag).unwrap();
    let len = dom[from..].find("</tr>").unwrap();
    &dom[from..from + len]
}

/// The text of the cell of `row` whose classes include `class`.
fn cell<'a>(row: &'a str, class: &str) -> &'a str {
    for td in row.split("<td").skip(1) {
        let Some(classes) = td
            .strip_prefix(" class=\"")
            .and_then(|t| t.split('"').next())
        else {
            continue;
        };
        if classes.split(' ').any(|c| c == class) {
            let from = td.find('>').unwrap() + 1;
            let len = td[from..].find("</td>").unwrap();
            return &td[from..from + len];
        }
    }
    panic!("no cell {class} in {row}")
}

/// The workspace's `target` directory (the binaries are in its `debug`).
fn target_dir() -> PathBuf {
    let bin = workspace_bin("director-xdp").unwrap();
    bin.parent().and_then(Path::parent).unwrap().to_path_buf()
}

#[test]
fn status_page_shows_tables_backends_traffic_and_bgp_state() {
    let lab = PageLab::new();
    lab.send_traffic();
    let tables: Tables = serde_json::from_str(&lab.read("/v1/tables")).unwrap();
    let director: DirectorStatus = serde_json::from_str(&lab.read("/v1/director")).unwrap();
    let t = &tables.tables[0];
    for ((port, n), b) in SENT.iter().zip(&t.binds) {
        assert_eq!(b.bind, format!("{VIP}:{port}/udp"));
        assert_eq!(b.packets, u64::from(*n), "{b:?}");
    }
    let busy = t.backends.iter().filter(|b| b.packets > 0).count();
    assert_eq!(busy, 2, "the two active backends take the flows: {t:?}");

    // The token comes in the fragment, which the browser never sends.
    let (dom, console) = lab.dump("token", &format!("#token={TOKEN}"));
    assert!(console.is_empty(), "console: {console:#?}");
    assert!(!dom.contains(TOKEN), "the token is in the page:\n{dom}");
    assert!(
        hidden(&dom, r#"id="login""#),
        "the token form shows:\n{dom}"
    );
    assert!(!hidden(&dom, r#"id="director""#));

    assert!(start_tag(&dom, r#"data-table="web""#).starts_with("<section"));
    assert_eq!(text(&dom, r#"class="name mono""#), "web");
    for b in &t.binds {
        let r = row(&dom, &format!(r#"data-bind="{}""#, b.bind));
        assert_eq!(cell(r, "bind"), b.bind);
        assert_eq!(cell(r, "packets"), group(b.packets), "{r}");
        assert_eq!(cell(r, "bytes"), group(b.bytes), "{r}");
        assert_ne!(b.bytes, 0);
    }
    for b in &t.backends {
        let r = row(&dom, &format!(r#"data-backend="{}""#, b.ip));
        assert_eq!(cell(r, "addr"), b.ip.to_string());
        assert_eq!(cell(r, "state"), b.state.as_str(), "{r}");
        let health = if b.healthy { "healthy" } else { "unhealthy" };
        assert_eq!(cell(r, "health"), health, "{r}");
        let reach = if b.reachable {
            "reachable"
        } else {
            "unreachable"
        };
        assert_eq!(cell(r, "reachability"), reach, "{r}");
        assert_eq!(cell(r, "rows-primary"), group(b.rows_primary), "{r}");
        assert_eq!(cell(r, "rows-alternate"), group(b.rows_alternate), "{r}");
        assert_eq!(cell(r, "packets"), group(b.packets), "{r}");
        assert_eq!(cell(r, "bytes"), group(b.bytes), "{r}");
    }
    // What the config says shows: a draining, unhealthy backend and an
    // unreachable one (in no row), next to two that took the traffic.
    let r13 = row(&dom, r#"data-backend="198.51.100.13""#);
    assert_eq!(
        (cell(r13, "state"), cell(r13, "health")),
        ("draining", "unhealthy")
    );
    let r14 = row(&dom, r#"data-backend="198.51.100.14""#);
    assert_eq!(
        (cell(r14, "reachability"), cell(r14, "rows-primary")),
        ("unreachable", "0")
    );
    let r11 = row(&dom, r#"data-backend="198.51.100.11""#);
    assert_ne!(cell(r11, "packets"), "0", "{r11}");

    assert_eq!(text(&dom, r#"id="attached""#), "attached");
    assert_eq!(text(&dom, r#"id="drained""#), "undrained");
    assert_eq!(text(&dom, r#"id="bgp-state""#), "off", "no BIRD settings");
    assert_eq!(
        text(&dom, r#"id="vip-packets""#),
        group(director.vip_packets)
    );
    assert_eq!(director.vip_packets, 420);

    // A screenshot for people, kept in target/.
    let png = target_dir().join("status-page.png");
    let _ = std::fs::remove_file(&png);
    let (_, console) = lab.chromium(
        "screenshot",
        &format!("http://{API}/#token={TOKEN}"),
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,900",
        ],
    );
    assert!(console.is_empty(), "console: {console:#?}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", png.display());
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 900));
    assert!(
        bytes.len() > 30_000,
        "{} is {} bytes: a page with its tables is more than a blank one",
        png.display(),
        bytes.len()
    );
}

#[test]
fn status_page_is_open_but_its_data_needs_the_token() {
    let lab = PageLab::new();
    let page = lab.call("/", None);
    assert_eq!(page.status, 200, "{}", page.body);
    let header = |name: &str| {
        page.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name}: {:?}", page.headers))
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("cache-control"), "no-store");
    let csp = header("content-security-policy");
    assert!(
        csp.starts_with("default-src 'none'; script-src 'sha256-")
            && csp.contains("style-src 'sha256-")
            && csp.contains("connect-src 'self'")
            && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(page.body.contains("<title>glb director</title>"));
    assert_eq!(lab.call("/v1/tables", None).status, 401);

    // Without a token: the form, and no data.
    let (dom, console) = lab.dump("none", "");
    assert!(!hidden(&dom, r#"id="login""#), "no token form:\n{dom}");
    assert_eq!(
        text(&dom, r#"id="login-why""#),
        "The director refused: missing bearer token."
    );
    assert!(hidden(&dom, r#"id="director""#));
    assert!(!dom.contains("data-backend="), "{dom}");
    // The browser logs the refused calls; nothing else.
    for line in &console {
        assert!(line.contains("status of 401"), "console: {console:#?}");
    }

    // A wrong token: the form again, saying so.
    let (dom, console) = lab.dump("wrong", "#token=not-the-token");
    assert!(!hidden(&dom, r#"id="login""#), "no token form:\n{dom}");
    assert_eq!(
        text(&dom, r#"id="login-why""#),
        "The director refused: wrong bearer token."
    );
    assert!(!dom.contains("data-backend="), "{dom}");
    assert!(!dom.contains("not-the-token"), "{dom}");
    for line in &console {
        assert!(line.contains("status of 401"), "console: {console:#?}");
    }
}
