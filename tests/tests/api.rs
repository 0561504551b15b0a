//! The director's HTTP API against a real `director-xdp run` in a network
//! namespace (docs/api.md): reads, changes, refusals, concurrent changes
//! and persistence across a restart. The API listens on the namespace's
//! loopback only; the client runs on a thread inside the namespace. Needs
//! root; namespaces, daemons and files are removed on every exit path.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use lab_tests::http::{Response, request};
use lab_tests::{Daemon, Netns, Scratch, veth, workspace_bin};
use proto::config::Config;
use proto::table::{BackendState, content_hash};
use serde_json::{Value, json};

const TOKEN: &str = "lab-token-5f1c2a";
const API: &str = "127.0.0.1:9610";
const BACKENDS: [&str; 4] = [
    "198.51.100.2",
    "198.51.100.3",
    "198.51.100.4",
    "198.51.100.5",
];
/// Loading the program and building tables in a debug build, on a shared
/// two-core machine.
const START: Duration = Duration::from_secs(120);

/// A director in a namespace, with one peer on a veth. Drops the daemon
/// first, then the namespaces, then the files.
struct ApiLab {
    daemon: Option<Daemon>,
    ns: Netns,
    _peer: Netns,
    scratch: Scratch,
}

fn config_text(token_file: &str) -> String {
    let backends: Vec<String> = BACKENDS
        .iter()
        .map(|ip| {
            format!(
                r#"{{"ip":"{ip}","state":"active","healthy":true,"healthchecks":{{"http":80}},"rack":"r-{ip}"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"tables":[{{"name":"web","hash_key":"0a4d8c2f7b1e93564fd0b5c2e1a87f36",
            "seed":"49a3d861d661ae5ab06ed9326871a2f5",
            "binds":[{{"ip":"203.0.113.10","proto":"tcp","port":80}}],
            "backends":[{}]}}],
          "director":{{"interface":"va","source_v4":"198.51.100.1",
            "gateway_mac":"02:00:5e:00:53:01","api_listen":"{API}",
            "api_token_file":"{token_file}"}}}}"#,
        backends.join(",")
    )
}

impl ApiLab {
    fn new() -> ApiLab {
        ApiLab::setup(false)
    }

    /// With `director.json` a symbolic link to `conf/director.json`.
    fn linked() -> ApiLab {
        ApiLab::setup(true)
    }

    fn setup(linked: bool) -> ApiLab {
        let scratch = Scratch::new("api").expect("scratch dir");
        let ns = Netns::new("api").expect("namespace");
        let peer = Netns::new("apipeer").expect("namespace");
        veth(
            &ns,
            "va",
            "02:00:00:00:0a:01",
            &peer,
            "vb",
            "02:00:00:00:0a:02",
        )
        .expect("veth");
        ns.ip(&["addr", "add", "198.51.100.1/24", "dev", "va"])
            .expect("address");
        peer.ip(&["addr", "add", "198.51.100.2/24", "dev", "vb"])
            .expect("address");
        let token = scratch.file("token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("token file");
        let text = config_text(token.to_str().expect("path"));
        if linked {
            std::fs::create_dir(scratch.file("conf")).expect("conf dir");
            std::fs::write(scratch.file("conf/director.json"), text).expect("config");
            std::os::unix::fs::symlink("conf/director.json", scratch.file("director.json"))
                .expect("config link");
        } else {
            std::fs::write(scratch.file("director.json"), text).expect("config");
        }
        let mut lab = ApiLab {
            daemon: None,
            ns,
            _peer: peer,
            scratch,
        };
        lab.start();
        lab
    }

    fn config_path(&self) -> PathBuf {
        self.scratch.file("director.json")
    }

    fn start(&mut self) {
        let bin = workspace_bin("director-xdp").expect("director-xdp binary");
        let n = std::fs::read_dir(self.scratch.file(""))
            .map(|d| d.count())
            .unwrap_or(0);
        let mut d = self
            .ns
            .spawn(
                bin.to_str().expect("path"),
                &[
                    "run",
                    "--config",
                    self.config_path().to_str().expect("path"),
                ],
                self.scratch.file(&format!("director-{n}.log")),
            )
            .expect("starting director-xdp run");
        d.wait_for_log("director attached", START)
            .expect("the director starts");
        self.daemon = Some(d);
    }

    /// SIGKILL: no chance to write anything on the way out.
    fn kill(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.signal(libc::SIGKILL).expect("SIGKILL");
            // Drop reaps it (and finds it gone).
            drop(d);
        }
    }

    fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("the daemon runs")
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Response {
        let addr: SocketAddr = API.parse().expect("address");
        let (m, p) = (method.to_string(), path.to_string());
        let (t, b) = (token.map(str::to_string), body.map(str::to_string));
        self.ns
            .run_in(move || request(addr, &m, &p, t.as_deref(), b.as_deref()))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A call whose body is JSON: (status, body).
    fn json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let r = self.call(method, path, token, body);
        let v = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e}): {:?}", r.body));
        (r.status, v)
    }

    fn change(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.json(method, path, Some(TOKEN), body)
    }

    fn table_generation(&self) -> u64 {
        let (s, v) = self.json("GET", "/healthz", None, None);
        assert_eq!(s, 200, "{v}");
        v["generation"].as_u64().expect("generation")
    }

    fn table(&self) -> Value {
        let (s, v) = self.json("GET", "/v1/tables/web", None, None);
        assert_eq!(s, 200, "{v}");
        v
    }
}

fn backend<'a>(table: &'a Value, ip: &str) -> &'a Value {
    table["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["ip"] == ip))
        .unwrap_or_else(|| panic!("no backend {ip} in {table}"))
}

/// The content hash of `config`'s table "web", computed offline.
fn expected_hash(config: &Config) -> String {
    let t = config.table("web").expect("table web");
    let r = t.rendezvous().expect("table builds");
    proto::hex::encode(&content_hash(&t.hash_key, r.row_addrs()))
}

fn on_disk(lab: &ApiLab) -> Config {
    Config::from_json(&std::fs::read_to_string(lab.config_path()).expect("config file"))
        .expect("the written config loads")
}

/// The health verdict of `ip` of table "web" in the state file:
/// (healthy, reachable, reason).
fn verdict_on_disk(lab: &ApiLab, ip: &str) -> Option<(bool, bool, Option<String>)> {
    let text = std::fs::read_to_string(lab.scratch.file("director.health.json")).ok()?;
    let v: Value = serde_json::from_str(&text).expect("the state file is JSON");
    assert_eq!(v["version"], 1, "{v}");
    v["verdicts"].as_array()?.iter().find_map(|e| {
        (e["table"] == "web" && e["ip"] == ip).then(|| {
            (
                e["healthy"].as_bool().expect("healthy"),
                e["reachable"].as_bool().expect("reachable"),
                e["reason"].as_str().map(str::to_string),
            )
        })
    })
}

fn state_on_disk(lab: &ApiLab, ip: &str) -> (BackendState, bool) {
    let c = on_disk(lab);
    let ip: IpAddr = ip.parse().expect("address");
    let b = c
        .table("web")
        .expect("web")
        .backends
        .iter()
        .find(|b| b.backend.addr == ip);
    b.map(|b| (b.backend.state, b.backend.healthy))
        .unwrap_or_else(|| panic!("{ip} not on disk"))
}

#[test]
fn reads_show_tables_counters_metrics_and_the_openapi_document() {
    let lab = ApiLab::new();
    let (s, v) = lab.json("GET", "/healthz", None, None);
    assert_eq!((s, &v["status"]), (200, &json!("ok")), "{v}");

    let (s, v) = lab.json("GET", "/v1/tables", None, None);
    assert_eq!(s, 200, "{v}");
    let t = &v["tables"][0];
    assert_eq!(t["name"], "web");
    assert_eq!(t["rows"], 65536);
    assert_eq!(t["binds"][0]["bind"], "203.0.113.10:80/tcp");
    assert_eq!(t["binds"][0]["packets"], 0);
    let primaries: u64 = BACKENDS
        .iter()
        .map(|ip| backend(t, ip)["rows_primary"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(primaries, 65536, "every row has one primary: {t}");
    assert_eq!(backend(t, BACKENDS[0])["healthchecks"], json!({"http": 80}));
    assert_eq!(backend(t, BACKENDS[0])["packets"], 0, "no traffic yet");
    assert_eq!(backend(t, BACKENDS[0])["bytes"], 0);
    assert_eq!(t["hash"], expected_hash(&on_disk(&lab)), "content hash");
    assert_eq!(lab.table(), *t, "GET /v1/tables/web is the same table");

    let (s, v) = lab.json("GET", "/v1/stats", None, None);
    assert_eq!(s, 200, "{v}");
    assert!(v["outcomes"]["encapsulated"].is_u64(), "{v}");
    assert_eq!(v["binds"][0]["table"], "web");
    assert_eq!(v["backends"].as_array().map(Vec::len), Some(4), "{v}");
    assert_eq!(v["backends"][0]["table"], "web");
    assert_eq!(v["backends"][0]["packets"], 0);
    assert_eq!(v["last_apply"]["source"], "start");
    assert_eq!(v["path_mtu"], 1500, "the veth's MTU: {v}");

    let r = lab.call("GET", "/metrics", None, None);
    assert_eq!(r.status, 200);
    for line in [
        "# TYPE glb_director_packets counter",
        "glb_director_packets_total{outcome=\"encapsulated\"} ",
        "glb_bind_packets_total{table=\"web\",bind=\"203.0.113.10:80/tcp\"} 0",
        "glb_backend_healthy{table=\"web\",backend=\"198.51.100.2\"} 1",
        "# TYPE glb_backend_packets counter",
        "glb_backend_packets_total{table=\"web\",backend=\"198.51.100.2\"} 0",
        "glb_backend_bytes_total{table=\"web\",backend=\"198.51.100.5\"} 0",
        "glb_backend_state{table=\"web\",backend=\"198.51.100.2\",state=\"active\"} 1",
        "glb_director_generation 1",
        "glb_director_path_mtu_bytes 1500",
        "glb_director_last_apply_success{source=\"start\"} 1",
        "glb_director_dataplane_attached 1",
        "glb_director_reattached_total 0",
    ] {
        assert!(r.body.contains(line), "no {line:?} in\n{}", r.body);
    }
    assert!(
        r.body.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("application/openmetrics-text")),
        "{:?}",
        r.headers
    );

    let (s, v) = lab.json("GET", "/v1/openapi.json", None, None);
    assert_eq!(s, 200);
    assert_eq!(v["openapi"], "3.1.0");
    assert_eq!(
        v["paths"]["/v1/tables/{name}/backends/{ip}/drain"]["post"]["operationId"],
        "drainBackend"
    );
    // What is served has the shape the document says (it is generated from
    // the types the daemon serialises, proto::api), and reads into them.
    let doc = v;
    let shape = |schema: &str, served: &Value| {
        let s = &doc["components"]["schemas"][schema];
        let props: Vec<&String> = s["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{schema}: {s}"))
            .keys()
            .collect();
        let keys: Vec<&String> = served.as_object().expect("an object").keys().collect();
        for k in &keys {
            assert!(
                props.contains(k),
                "{schema}: {k} is served but not documented"
            );
        }
        for r in s["required"].as_array().into_iter().flatten() {
            assert!(
                keys.iter().any(|k| *k == r),
                "{schema}: {r} is required but not served"
            );
        }
    };
    let tables = lab.json("GET", "/v1/tables", None, None).1;
    shape("Tables", &tables);
    shape("Table", &tables["tables"][0]);
    shape("Backend", &tables["tables"][0]["backends"][0]);
    serde_json::from_value::<proto::api::Tables>(tables).expect("Tables");
    let stats = lab.json("GET", "/v1/stats", None, None).1;
    shape("Stats", &stats);
    serde_json::from_value::<proto::api::Stats>(stats).expect("Stats");
    let healthz = lab.json("GET", "/healthz", None, None).1;
    shape("Healthz", &healthz);
    serde_json::from_value::<proto::api::Healthz>(healthz).expect("Healthz");

    let (s, v) = lab.json("GET", "/v1/tables/nope", None, None);
    assert_eq!(
        (s, &v["field"], &v["value"]),
        (404, &json!("table"), &json!("nope")),
        "{v}"
    );
    let (s, v) = lab.json("GET", "/v1/nothing", None, None);
    assert_eq!(s, 404, "{v}");
    let (s, v) = lab.json("PATCH", "/v1/tables", None, None);
    assert_eq!(s, 405, "{v}");
}

#[test]
fn changes_are_applied_persisted_and_refused_with_the_field_at_fault() {
    let lab = ApiLab::new();
    let drain = format!("/v1/tables/web/backends/{}/drain", BACKENDS[1]);

    // Auth: no token, a wrong token.
    let r = lab.call("POST", &drain, None, None);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.headers.iter().any(|(k, _)| k == "www-authenticate"));
    let (s, v) = lab.json("POST", &drain, Some("not-the-token"), None);
    assert_eq!((s, &v["field"]), (401, &json!("Authorization")), "{v}");
    assert_eq!(
        backend(&lab.table(), BACKENDS[1])["state"],
        "active",
        "unchanged"
    );

    // Unknown table and backend, malformed address.
    let (s, v) = lab.change("POST", "/v1/tables/nope/backends/198.51.100.3/drain", None);
    assert_eq!((s, &v["field"]), (404, &json!("table")), "{v}");
    let (s, v) = lab.change("POST", "/v1/tables/web/backends/198.51.100.99/drain", None);
    assert_eq!(
        (s, &v["field"], &v["value"]),
        (404, &json!("ip"), &json!("198.51.100.99")),
        "{v}"
    );
    let (s, v) = lab.change("POST", "/v1/tables/web/backends/198.51.100.300/drain", None);
    assert_eq!(
        (s, &v["field"], &v["value"]),
        (400, &json!("ip"), &json!("198.51.100.300")),
        "{v}"
    );

    // Addresses no host can be reached at are not backends; long values are
    // cut in the answer.
    let hash = lab.table()["hash"].clone();
    for (ip, why) in [
        ("0.0.0.0", "the unspecified address"),
        ("255.255.255.255", "the broadcast address"),
        ("224.0.0.1", "a multicast address"),
        ("127.0.0.1", "a loopback address"),
        ("169.254.0.7", "a link-local address"),
    ] {
        let (s, v) = lab.change(
            "POST",
            "/v1/tables/web/backends",
            Some(&format!(r#"{{"ip":"{ip}"}}"#)),
        );
        assert_eq!(
            (s, &v["error"], &v["field"], &v["value"]),
            (
                400,
                &json!(format!("{ip} is {why}: it cannot be a backend")),
                &json!("ip"),
                &json!(ip)
            ),
            "{v}"
        );
    }
    let long = "7".repeat(10_000);
    let (s, v) = lab.change(
        "POST",
        "/v1/tables/web/backends",
        Some(&format!(r#"{{"ip":"{long}"}}"#)),
    );
    let cut = format!("{}...", "7".repeat(57));
    assert_eq!(
        (s, &v["error"], &v["value"]),
        (
            400,
            &json!(format!("\"{cut}\" is not an IP address")),
            &json!(cut)
        ),
        "{v}"
    );
    assert_eq!(lab.table()["hash"], hash, "nothing was added");

    // Drain: applied, persisted, the drained backend keeps no row as primary.
    let before = lab.table();
    let (s, v) = lab.change("POST", &drain, None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["changed"], &v["generation"]),
        (&json!(true), &json!(2)),
        "{v}"
    );
    let b = backend(&v["table"], BACKENDS[1]);
    assert_eq!(
        (&b["state"], &b["rows_primary"]),
        (&json!("draining"), &json!(0)),
        "{v}"
    );
    let held = |t: &Value, ip: &str| {
        let b = backend(t, ip);
        b["rows_primary"].as_u64().unwrap_or(0) + b["rows_alternate"].as_u64().unwrap_or(0)
    };
    assert_eq!(
        b["rows_alternate"].as_u64(),
        Some(held(&before, BACKENDS[1])),
        "it stays an alternate of every row it was primary or alternate of"
    );
    assert_eq!(
        state_on_disk(&lab, BACKENDS[1]),
        (BackendState::Draining, true)
    );
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.config_path()).expect("config"))
            .expect("JSON");
    assert_eq!(
        file["tables"][0]["backends"][1]["rack"],
        format!("r-{}", BACKENDS[1]),
        "a field this project does not read is kept: {file}"
    );
    assert_eq!(v["table"]["hash"], expected_hash(&on_disk(&lab)));
    // The same again changes nothing.
    let (s, v) = lab.change("POST", &drain, None);
    assert_eq!(
        (s, &v["changed"], &v["generation"]),
        (200, &json!(false), &json!(2)),
        "{v}"
    );

    // Preview: the rows activating it would move, nothing applied.
    let (s, v) = lab.json(
        "POST",
        "/v1/tables/web/preview",
        None,
        Some(&format!(
            r#"{{"action":"activate","ip":"{}"}}"#,
            BACKENDS[1]
        )),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["rows_primary_changed"],
        backend(&before, BACKENDS[1])["rows_primary"],
        "{v}"
    );
    assert_eq!(
        v["hash_after"], before["hash"],
        "activating again restores the table"
    );
    assert_eq!(
        lab.json("GET", "/healthz", None, None).1["generation"],
        2,
        "not applied"
    );
    let (s, v) = lab.json(
        "POST",
        "/v1/tables/web/preview",
        None,
        Some(r#"{"action":"explode","ip":"198.51.100.3"}"#),
    );
    assert_eq!(
        (s, &v["field"], &v["value"]),
        (400, &json!("action"), &json!("explode")),
        "{v}"
    );

    // Fill, activate, deactivate.
    for (action, state) in [
        ("fill", "filling"),
        ("activate", "active"),
        ("deactivate", "inactive"),
    ] {
        let (s, v) = lab.change(
            "POST",
            &format!("/v1/tables/web/backends/{}/{action}", BACKENDS[1]),
            None,
        );
        assert_eq!(s, 200, "{action}: {v}");
        assert_eq!(
            backend(&v["table"], BACKENDS[1])["state"],
            state,
            "{action}"
        );
    }
    assert_eq!(state_on_disk(&lab, BACKENDS[1]).0, BackendState::Inactive);

    // Health: the health checker's call, with a reason. Verdicts are kept
    // in the state file beside the config; the config file is not touched.
    let health = format!("/v1/tables/web/backends/{}/health", BACKENDS[2]);
    let before = lab.table();
    let config_before = std::fs::read(lab.config_path()).expect("config");
    let (s, v) = lab.change(
        "PUT",
        &health,
        Some(r#"{"healthy":false,"reason":"http 503"}"#),
    );
    assert_eq!(s, 200, "{v}");
    let b = backend(&v["table"], BACKENDS[2]);
    assert_eq!(
        (&b["healthy"], &b["health_reason"], &b["rows_primary"]),
        (&json!(false), &json!("http 503"), &json!(0)),
        "{v}"
    );
    assert_eq!(
        backend(&v["table"], BACKENDS[2])["rows_alternate"].as_u64(),
        Some(held(&before, BACKENDS[2])),
        "unhealthy, it keeps its place in every chain (and its flows)"
    );
    assert_eq!(
        verdict_on_disk(&lab, BACKENDS[2]),
        Some((false, true, Some("http 503".to_string())))
    );
    assert_eq!(
        std::fs::read(lab.config_path()).expect("config"),
        config_before,
        "a verdict does not rewrite the operator's file"
    );
    // Unreachable: in no row; previewed first, the rows it leaves are
    // reported as released, not as lost.
    let (s, v) = lab.json(
        "POST",
        "/v1/tables/web/preview",
        None,
        Some(&format!(
            r#"{{"action":"health","ip":"{}","reachable":false}}"#,
            BACKENDS[2]
        )),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["lost"], json!([]), "{v}");
    assert_eq!(
        v["released"],
        json!([{ "ip": BACKENDS[2], "reason": "unreachable", "rows": held(&before, BACKENDS[2]) }]),
        "{v}"
    );
    let (s, v) = lab.change("PUT", &health, Some(r#"{"reachable":false}"#));
    assert_eq!(s, 200, "{v}");
    let b = backend(&v["table"], BACKENDS[2]);
    assert_eq!(
        (
            &b["reachable"],
            &b["healthy"],
            &b["rows_primary"],
            &b["rows_alternate"]
        ),
        (&json!(false), &json!(false), &json!(0), &json!(0)),
        "{v}"
    );
    assert_eq!(
        verdict_on_disk(&lab, BACKENDS[2]),
        Some((false, false, None)),
        "persisted; what it leaves out stays as it was"
    );
    let (s, v) = lab.change("PUT", &health, Some(r#"{"reachable":true}"#));
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        backend(&v["table"], BACKENDS[2])["rows_alternate"].as_u64(),
        Some(held(&before, BACKENDS[2])),
        "reachable again, back in its chains: {v}"
    );
    // Many verdicts, of any tables, in one change: one table flip; those
    // this director does not know are reported, the others applied.
    let generation = lab.table_generation();
    let (s, v) = lab.change(
        "PUT",
        "/v1/health",
        Some(&format!(
            r#"{{"verdicts":[{{"table":"web","ip":"{}","healthy":false,"reason":"tcp reset"}},
                {{"table":"web","ip":"{}","reachable":false}},
                {{"table":"web","ip":"198.51.100.77","healthy":false}},
                {{"table":"other","ip":"{}","healthy":false}}]}}"#,
            BACKENDS[0], BACKENDS[3], BACKENDS[0]
        )),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["changed"], &v["generation"]),
        (&json!(true), &json!(generation + 1)),
        "one apply for the batch: {v}"
    );
    assert_eq!(
        v["unknown"],
        json!([{"table": "web", "ip": "198.51.100.77"}, {"table": "other", "ip": BACKENDS[0]}])
    );
    let t = lab.table();
    assert_eq!(v["hashes"]["web"], t["hash"], "{v}");
    assert_eq!(
        (
            &backend(&t, BACKENDS[0])["healthy"],
            &backend(&t, BACKENDS[0])["health_reason"],
            &backend(&t, BACKENDS[3])["reachable"]
        ),
        (&json!(false), &json!("tcp reset"), &json!(false)),
        "{t}"
    );
    assert_eq!(
        verdict_on_disk(&lab, BACKENDS[3]),
        Some((true, false, None))
    );
    let (s, v) = lab.change("PUT", "/v1/health", Some(&format!(
        r#"{{"verdicts":[{{"table":"web","ip":"{}","healthy":true,"reachable":true}},{{"table":"web","ip":"{}","healthy":true,"reachable":true}}]}}"#,
        BACKENDS[0], BACKENDS[3]
    )));
    assert_eq!((s, &v["changed"]), (200, &json!(true)), "{v}");
    for (body, field) in [
        (
            r#"{"verdicts":[{"table":"web","ip":"198.51.100.2","healthy":"no"}]}"#,
            "verdicts[0].healthy",
        ),
        (
            r#"{"verdicts":[{"table":"web","ip":"198.51.100.300","healthy":true}]}"#,
            "verdicts[0].ip",
        ),
        (
            r#"{"verdicts":[{"table":"web","ip":"198.51.100.2"}]}"#,
            "verdicts[0].healthy",
        ),
        (
            r#"{"verdicts":[{"table":"web","ip":"198.51.100.2","healthy":true},{"table":"web","ip":"198.51.100.2","healthy":false}]}"#,
            "verdicts[1].ip",
        ),
        (r#"{"verdicts":[],"x":1}"#, "x"),
    ] {
        let (s, v) = lab.change("PUT", "/v1/health", Some(body));
        assert_eq!((s, &v["field"]), (400, &json!(field)), "{body}: {v}");
    }
    assert_eq!(
        lab.table_generation(),
        generation + 2,
        "refusals apply nothing"
    );

    for (body, field) in [
        (r#"{"healthy":"no"}"#, "healthy"),
        (r#"{"reason":"x"}"#, "healthy"),
        (r#"{"healthy":true,"why":"x"}"#, "why"),
        (r#"{"reachable":"no"}"#, "reachable"),
        (r#"{"healthy":tru"#, "body"),
        ("[]", "body"),
        ("", "body"),
    ] {
        let (s, v) = lab.change("PUT", &health, Some(body));
        assert_eq!((s, &v["field"]), (400, &json!(field)), "{body}: {v}");
    }

    // Remove: refused unless inactive or forced.
    let (s, v) = lab.change(
        "DELETE",
        &format!("/v1/tables/web/backends/{}", BACKENDS[3]),
        None,
    );
    assert_eq!((s, &v["field"]), (409, &json!("ip")), "{v}");
    let (s, v) = lab.change(
        "DELETE",
        &format!("/v1/tables/web/backends/{}?force=maybe", BACKENDS[3]),
        None,
    );
    assert_eq!((s, &v["field"]), (400, &json!("force")), "{v}");
    let (s, v) = lab.change(
        "DELETE",
        &format!("/v1/tables/web/backends/{}", BACKENDS[1]),
        None,
    );
    assert_eq!(s, 200, "an inactive backend goes: {v}");
    let (s, v) = lab.change(
        "DELETE",
        &format!("/v1/tables/web/backends/{}?force=true", BACKENDS[3]),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["table"]["backends"].as_array().map(Vec::len),
        Some(2),
        "{v}"
    );
    assert_eq!(on_disk(&lab).table("web").expect("web").backends.len(), 2);

    // Add, then the same again; a backend of the other family.
    let (s, v) = lab.change(
        "POST",
        "/v1/tables/web/backends",
        Some(r#"{"ip":"198.51.100.7","state":"filling"}"#),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(backend(&v["table"], "198.51.100.7")["state"], "filling");
    let (s, v) = lab.change(
        "POST",
        "/v1/tables/web/backends",
        Some(r#"{"ip":"198.51.100.7"}"#),
    );
    assert_eq!((s, &v["field"]), (409, &json!("ip")), "{v}");
    let (s, v) = lab.change(
        "POST",
        "/v1/tables/web/backends",
        Some(r#"{"ip":"2001:db8::7"}"#),
    );
    assert_eq!((s, &v["field"]), (409, &json!("ip")), "mixed families: {v}");
    let (s, v) = lab.change(
        "POST",
        "/v1/tables/web/backends",
        Some(r#"{"ip":"198.51.100.8","state":"drained"}"#),
    );
    assert_eq!(
        (s, &v["field"], &v["value"]),
        (400, &json!("state"), &json!("drained")),
        "{v}"
    );

    // Nothing leaves the table without a backend that can serve.
    let c = on_disk(&lab);
    let serving: Vec<String> = c
        .table("web")
        .expect("web")
        .backends
        .iter()
        .map(|b| b.backend.addr.to_string())
        .collect();
    for ip in &serving[..serving.len() - 1] {
        let (s, v) = lab.change(
            "POST",
            &format!("/v1/tables/web/backends/{ip}/deactivate"),
            None,
        );
        assert_eq!(s, 200, "{v}");
    }
    let last = &serving[serving.len() - 1];
    let generation = lab.json("GET", "/healthz", None, None).1["generation"].clone();
    let (s, v) = lab.change(
        "POST",
        &format!("/v1/tables/web/backends/{last}/deactivate"),
        None,
    );
    assert_eq!((s, &v["field"]), (409, &json!("ip")), "{v}");
    assert_eq!(
        lab.json("GET", "/healthz", None, None).1["generation"],
        generation,
        "nothing applied"
    );
    let warnings = on_disk(&lab).warnings;
    assert!(
        warnings
            .iter()
            .all(|w| w.ends_with("unknown field \"rack\" ignored")),
        "the written config warns only of the fields it was given: {warnings:?}"
    );
    assert_eq!(
        lab.table()["hash"],
        expected_hash(&on_disk(&lab)),
        "the file is what runs"
    );
}

#[test]
fn concurrent_drains_give_one_consistent_table() {
    let lab = std::sync::Arc::new(ApiLab::new());
    let threads: Vec<_> = [BACKENDS[0], BACKENDS[3]]
        .into_iter()
        .map(|ip| {
            let lab = std::sync::Arc::clone(&lab);
            std::thread::spawn(move || {
                lab.change("POST", &format!("/v1/tables/web/backends/{ip}/drain"), None)
            })
        })
        .collect();
    let mut generations = Vec::new();
    for t in threads {
        let (s, v) = t.join().expect("client thread");
        assert_eq!(s, 200, "{v}");
        generations.push(v["generation"].as_u64().unwrap_or(0));
    }
    generations.sort_unstable();
    assert_eq!(generations, [2, 3], "one change after the other");
    let t = lab.table();
    for ip in [BACKENDS[0], BACKENDS[3]] {
        assert_eq!(backend(&t, ip)["state"], "draining", "{t}");
        assert_eq!(state_on_disk(&lab, ip).0, BackendState::Draining);
    }
    // Both changes are in the rows, not only in the listing.
    assert_eq!(t["hash"], expected_hash(&on_disk(&lab)));
}

#[test]
fn acknowledged_changes_survive_sigkill_and_file_edits_go_through_sighup() {
    let mut lab = ApiLab::new();
    let (s, v) = lab.change(
        "POST",
        &format!("/v1/tables/web/backends/{}/drain", BACKENDS[1]),
        None,
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = lab.change(
        "PUT",
        &format!("/v1/tables/web/backends/{}/health", BACKENDS[2]),
        Some(r#"{"healthy":false}"#),
    );
    assert_eq!(s, 200, "{v}");
    let hash = lab.table()["hash"].clone();

    lab.kill();
    lab.start();
    let t = lab.table();
    assert_eq!(backend(&t, BACKENDS[1])["state"], "draining", "{t}");
    assert_eq!(backend(&t, BACKENDS[2])["healthy"], false, "{t}");
    assert_eq!(t["hash"], hash, "the same table after the restart");

    // An edit of the file is not overwritten by the API: refused until
    // SIGHUP loads it.
    let text = std::fs::read_to_string(lab.config_path()).expect("config");
    let edited = text.replacen("\"draining\"", "\"active\"", 1);
    assert_ne!(edited, text);
    std::fs::write(lab.config_path(), &edited).expect("editing the config");
    let (s, v) = lab.change(
        "POST",
        &format!("/v1/tables/web/backends/{}/drain", BACKENDS[0]),
        None,
    );
    assert_eq!((s, &v["field"]), (409, &json!("config")), "{v}");
    // A verdict is not the file's: taken while the edit waits, the edit
    // left as it is.
    let (s, v) = lab.change(
        "PUT",
        &format!("/v1/tables/web/backends/{}/health", BACKENDS[3]),
        Some(r#"{"healthy":false}"#),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        std::fs::read_to_string(lab.config_path()).expect("config"),
        edited
    );
    lab.daemon().signal(libc::SIGHUP).expect("SIGHUP");
    lab.daemon()
        .wait_for_log(
            "director.json applied: generation 3",
            Duration::from_secs(30),
        )
        .expect("SIGHUP applies the edit (after the verdict's generation 2)");
    let t = lab.table();
    assert_eq!(backend(&t, BACKENDS[1])["state"], "active");
    assert_eq!(
        (
            &backend(&t, BACKENDS[2])["healthy"],
            &backend(&t, BACKENDS[3])["healthy"]
        ),
        (&json!(false), &json!(false)),
        "the verdicts lie over the reloaded file: {t}"
    );
    let (s, v) = lab.change(
        "POST",
        &format!("/v1/tables/web/backends/{}/drain", BACKENDS[0]),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(state_on_disk(&lab, BACKENDS[0]).0, BackendState::Draining);
}

#[test]
fn a_config_reached_through_a_link_stays_a_link_and_its_target_takes_the_changes() {
    let mut lab = ApiLab::linked();
    let link = lab.config_path();
    let target = lab.scratch.file("conf/director.json");
    let (s, v) = lab.change(
        "POST",
        &format!("/v1/tables/web/backends/{}/drain", BACKENDS[1]),
        None,
    );
    assert_eq!(s, 200, "{v}");
    let meta = std::fs::symlink_metadata(&link).expect("the config path");
    assert!(
        meta.file_type().is_symlink(),
        "the config is still a link, not a copy that edits of its target would miss"
    );
    assert_eq!(
        std::fs::read_link(&link).expect("link"),
        PathBuf::from("conf/director.json")
    );
    let written = Config::from_json(&std::fs::read_to_string(&target).expect("target"))
        .expect("the written config loads");
    let drained = written
        .table("web")
        .expect("web")
        .backends
        .iter()
        .find(|b| b.backend.addr.to_string() == BACKENDS[1])
        .expect("the backend");
    assert_eq!(
        drained.backend.state,
        BackendState::Draining,
        "the target has it"
    );
    let conf: Vec<_> = std::fs::read_dir(lab.scratch.file("conf"))
        .expect("conf dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(conf, ["director.json"], "no temporary file left");

    // An edit of the target is what the director loads on SIGHUP, and the
    // next change is written over it.
    let text = std::fs::read_to_string(&target).expect("target");
    let edited = text.replacen("\"draining\"", "\"active\"", 1);
    assert_ne!(edited, text);
    std::fs::write(&target, &edited).expect("editing the target");
    lab.daemon().signal(libc::SIGHUP).expect("SIGHUP");
    lab.daemon()
        .wait_for_log("applied: generation 3", Duration::from_secs(30))
        .expect("SIGHUP applies the edit");
    assert_eq!(backend(&lab.table(), BACKENDS[1])["state"], "active");
    let (s, v) = lab.change(
        "POST",
        &format!("/v1/tables/web/backends/{}/drain", BACKENDS[0]),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(state_on_disk(&lab, BACKENDS[0]).0, BackendState::Draining);
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("link")
            .file_type()
            .is_symlink()
    );
}

#[test]
fn director_ctl_drives_the_api_with_distinct_exit_codes() {
    let lab = ApiLab::new();
    let ctl = workspace_bin("director-ctl").expect("director-ctl binary");
    let token = lab.scratch.file("token");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", lab.ns.name()])
            .arg(&ctl)
            .args(args)
            .output()
            .expect("running director-ctl");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let tf = token.to_str().expect("path");
    let ip = BACKENDS[1];

    let (code, out, err) = run(&["tables", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["tables"][0]["name"], "web");
    let (code, out, _) = run(&["tables"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("table \"web\": 65536 rows"), "{out}");

    let (code, out, err) = run(&["preview", "web", "drain", ip, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert!(v["rows_primary_changed"].as_u64().unwrap_or(0) > 0, "{v}");

    let (code, _, err) = run(&["backends", "drain", "web", ip]);
    assert_eq!(code, Some(3), "no token: an API error: {err}");
    assert!(err.contains("401"), "{err}");
    let (code, out, err) = run(&["--token-file", tf, "backends", "drain", "web", ip]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&format!("backend {ip} draining")), "{out}");
    let (code, out, err) = run(&[
        "--token-file",
        tf,
        "health",
        "set",
        "web",
        BACKENDS[2],
        "--healthy",
        "false",
        "--reason",
        "tcp reset",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("unhealthy"), "{out}");
    let (code, out, _) = run(&["backends", "list", "web"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("tcp reset"), "{out}");
    let (code, _, err) = run(&["--token-file", tf, "backends", "remove", "web", ip]);
    assert_eq!(code, Some(3), "draining, not forced: {err}");
    assert!(err.contains("409") && err.contains("field ip"), "{err}");
    let (code, _, err) = run(&[
        "--token-file",
        tf,
        "backends",
        "add",
        "web",
        "198.51.100.9",
        "--state",
        "filling",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = run(&["stats", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(serde_json::from_str::<Value>(&out).expect("JSON")["outcomes"].is_object());
    let (code, out, err) = run(&["stats"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("path MTU toward the backends: 1500"), "{out}");
    assert!(out.contains("too_big_icmp"), "{out}");

    let (code, _, err) = run(&["backends", "list", "nope"]);
    assert_eq!(code, Some(3), "{err}");
    let (code, _, err) = run(&["--api", "http://127.0.0.1:1", "tables"]);
    assert_eq!(code, Some(4), "nothing listens there: {err}");
    let (code, _, err) = run(&["--api", "ftp://127.0.0.1:9610", "tables"]);
    assert_eq!(code, Some(2), "{err}");

    // A name whose first address has no listener: the next is tried. The
    // namespace's own hosts file (`ip netns exec` mounts
    // /etc/netns/NAME/hosts) lists ::1 first; the API listens on 127.0.0.1.
    let hosts_dir = std::path::Path::new("/etc/netns").join(lab.ns.name());
    let _hosts = RemoveOnDrop(hosts_dir.clone());
    std::fs::create_dir_all(&hosts_dir).expect("/etc/netns/NAME");
    std::fs::write(
        hosts_dir.join("hosts"),
        "::1 director.test\n127.0.0.1 director.test\n",
    )
    .expect("hosts file");
    let (code, out, err) = run(&["--api", "http://director.test:9610", "tables"]);
    assert_eq!(code, Some(0), "both addresses tried: {err}");
    assert!(out.contains("table \"web\""), "{out}");

    // Something that answers 200 but is not the API: an error, not zeros.
    let listener = lab
        .ns
        .run_in(|| std::net::TcpListener::bind("127.0.0.1:9620"))
        .expect("listener");
    let server = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            use std::io::{Read as _, Write as _};
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 15\r\nConnection: close\r\n\r\n<html>hi</html>",
            );
        }
    });
    let (code, _, err) = run(&["--api", "http://127.0.0.1:9620", "tables"]);
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("answered 200 with a body that is not JSON"),
        "{err}"
    );
    let _ = server.join();
    let (code, _, _) = run(&["backends", "explode"]);
    assert_eq!(code, Some(2));
    assert_eq!(state_on_disk(&lab, "198.51.100.9").0, BackendState::Filling);
}

/// A directory removed (with what it holds) on drop.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_acknowledged_change_survives_sigkill_in_a_burst_of_changes() {
    let mut lab = ApiLab::new();
    // One client, one call at a time (as the daemon serialises them): at
    // the kill at most one change is in flight, acknowledged or not.
    // Each call's target: (backend, state it sets or None, healthy it sets).
    let calls: Vec<(usize, Option<&str>, Option<bool>)> = (0..12)
        .map(|i| {
            let b = i % 3;
            match (i / 3) % 4 {
                0 => (b, Some("draining"), None),
                1 => (b, None, Some(false)),
                2 => (b, Some("active"), None),
                _ => (b, None, Some(true)),
            }
        })
        .collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Per backend: the last acknowledged (state, healthy) and the one in
    // flight when the daemon died.
    let (acked, in_flight) = std::thread::scope(|s| {
        let burst = s.spawn(|| {
            let mut acked: Vec<(String, bool)> = vec![("active".into(), true); 3];
            // Round and round until the daemon dies under it.
            for (b, state, healthy) in calls.iter().cycle() {
                let ip = BACKENDS[*b];
                let mut target = acked[*b].clone();
                let (method, path, body) = match (state, healthy) {
                    (Some(st), _) => {
                        target.0 = st.to_string();
                        let action = if *st == "draining" {
                            "drain"
                        } else {
                            "activate"
                        };
                        (
                            "POST",
                            format!("/v1/tables/web/backends/{ip}/{action}"),
                            None,
                        )
                    }
                    (None, h) => {
                        target.1 = h.unwrap_or(true);
                        (
                            "PUT",
                            format!("/v1/tables/web/backends/{ip}/health"),
                            Some(format!(r#"{{"healthy":{}}}"#, target.1)),
                        )
                    }
                };
                let addr: SocketAddr = API.parse().expect("address");
                let (m, p) = (method.to_string(), path.clone());
                let answer = lab.ns.run_in(move || {
                    lab_tests::http::request(addr, &m, &p, Some(TOKEN), body.as_deref())
                });
                match answer {
                    Ok(r) if r.status == 200 => acked[*b] = target,
                    _ => return (acked, Some((*b, target))),
                }
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
            }
            (acked, None)
        });
        std::thread::sleep(Duration::from_millis(1500));
        // The kill comes whatever the burst is doing (the stop flag is
        // only a safety net for a daemon that would not die).
        lab.daemon
            .as_ref()
            .expect("the daemon runs")
            .signal(libc::SIGKILL)
            .expect("SIGKILL");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        burst.join().expect("the burst thread")
    });
    let in_flight = in_flight.expect("the burst was still running at the kill");
    lab.kill(); // reap it

    // Both files load, and hold every acknowledged change (the one in
    // flight may or may not have made it).
    let config = on_disk(&lab);
    for (b, want) in acked.iter().enumerate() {
        let ip: IpAddr = BACKENDS[b].parse().expect("address");
        let state = config
            .table("web")
            .and_then(|t| t.backends.iter().find(|x| x.backend.addr == ip))
            .map(|x| x.backend.state.as_str().to_string())
            .expect("backend on disk");
        let healthy = verdict_on_disk(&lab, BACKENDS[b]).is_none_or(|v| v.0);
        let got = (state, healthy);
        let flight = (in_flight.0 == b).then(|| in_flight.1.clone());
        assert!(
            &got == want || flight.as_ref() == Some(&got),
            "backend {}: on disk {got:?}, acknowledged {want:?}, in flight {flight:?}",
            BACKENDS[b]
        );
    }
    // The director restarts from them.
    lab.start();
    let t = lab.table();
    for b in 0..3 {
        let got = (
            backend(&t, BACKENDS[b])["state"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            backend(&t, BACKENDS[b])["healthy"]
                .as_bool()
                .unwrap_or(true),
        );
        let flight = (in_flight.0 == b).then(|| in_flight.1.clone());
        assert!(
            got == acked[b] || flight.as_ref() == Some(&got),
            "backend {} after the restart: {got:?}, acknowledged {:?}",
            BACKENDS[b],
            acked[b]
        );
    }
}
