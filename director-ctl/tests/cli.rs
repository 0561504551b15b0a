//! `director-ctl`'s offline table tools, run as an operator runs them.
#![allow(clippy::unwrap_used)] // helpers of tests: a failure is the test failing

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use proto::config::Config;
use proto::flow::{Flow, flow_hash};
use serde_json::Value;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/director.json");

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_director-ctl"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p =
            std::env::temp_dir().join(format!("director-ctl-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn example() -> Config {
    Config::from_json(&std::fs::read_to_string(EXAMPLE).unwrap()).unwrap()
}

/// Each row's chain, primary first, as the builder makes it.
fn expected_rows(config: &Config, table: usize) -> Vec<Vec<String>> {
    config.tables[table]
        .rendezvous()
        .unwrap()
        .row_addrs()
        .map(|r| r.iter().map(ToString::to_string).collect())
        .collect()
}

fn rows_of(v: &Value) -> Vec<Vec<String>> {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// Whether `ip` is an alternate of `row` (padding counted once).
fn alternate_of(row: &[String], ip: &str) -> bool {
    row[1..].iter().any(|a| a == ip)
}

#[test]
fn table_build_writes_every_row_of_every_table() {
    let dir = Scratch::new("build");
    let out = dir.file("table.json");
    let o = ctl(&["table", "build", EXAMPLE, "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let tables = doc["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2);
    let config = example();
    for (i, t) in tables.iter().enumerate() {
        assert_eq!(t["name"], config.tables[i].name.as_str());
        assert_eq!(t["hops"], config.tables[i].hops);
        let rows = rows_of(t);
        assert_eq!(rows.len(), 65_536);
        assert!(
            rows.iter()
                .all(|r| r.len() == 1 + usize::from(config.tables[i].hops))
        );
        assert_eq!(rows, expected_rows(&config, i), "table {i}");
    }
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
}

#[test]
fn table_build_reproduces_glb_published_rows() {
    // GLB's published vectors (proto/compat): with every backend active and
    // healthy and one hop, rank 0 is the primary and rank 1 the alternate,
    // as GLB has them; more hops go on in rank order.
    let vectors: Value = serde_json::from_str(include_str!(
        "../../proto/compat/glb-rendezvous-vectors.json"
    ))
    .unwrap();
    let order = &vectors["orders"][0];
    let backends: Vec<String> = order["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| format!(r#"{{"ip":{h},"state":"active","healthy":true}}"#))
        .collect();
    let dir = Scratch::new("glb");
    for hops in 1..=3usize {
        let config = format!(
            r#"{{"tables":[{{"name":"glb","hash_key":"000102030405060708090a0b0c0d0e0f","seed":{},"hops":{hops},"binds":[],"backends":[{}]}}]}}"#,
            vectors["seed"],
            backends.join(",")
        );
        let cfg = dir.file("glb.json");
        std::fs::write(&cfg, config).unwrap();
        let out = dir.file("table.json");
        assert!(
            ctl(&[
                "table",
                "build",
                cfg.to_str().unwrap(),
                "--out",
                out.to_str().unwrap()
            ])
            .status
            .success()
        );
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let rows = rows_of(&doc["tables"][0]);
        for o in vectors["orders"].as_array().unwrap() {
            let row = o["row"].as_u64().unwrap() as usize;
            let ranked: Vec<&str> = o["ranked"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap())
                .collect();
            assert_eq!(rows[row], ranked[..1 + hops], "row {row}, hops {hops}");
        }
    }
}

#[test]
fn table_show_counts_rows_per_backend() {
    let v = stdout_json(&ctl(&["table", "show", EXAMPLE, "--json"]));
    let config = example();
    for (i, t) in v["tables"].as_array().unwrap().iter().enumerate() {
        let rows = expected_rows(&config, i);
        let mut primary_total = 0;
        for b in t["backends"].as_array().unwrap() {
            let ip = b["ip"].as_str().unwrap();
            let p = rows.iter().filter(|r| r[0] == ip).count() as u64;
            let s = rows.iter().filter(|r| alternate_of(r, ip)).count() as u64;
            assert_eq!(b["rows_primary"].as_u64().unwrap(), p, "{ip}");
            assert_eq!(b["rows_alternate"].as_u64().unwrap(), s, "{ip}");
            primary_total += p;
            let state = b["state"].as_str().unwrap();
            if state == "draining" || state == "inactive" || b["healthy"] == false {
                assert_eq!(p, 0, "{ip} ({state}) holds no row as primary");
            }
            if state == "inactive" {
                assert_eq!(s, 0, "{ip} holds no row as alternate");
            } else {
                assert!(s > 0, "{ip} ({state}) keeps its place in the chains");
            }
        }
        assert_eq!(primary_total, 65_536);
        let spread = t["spread"].as_f64().unwrap();
        assert!((1.0..1.05).contains(&spread), "spread {spread}");
    }
    // The text form names every table and backend.
    let text = String::from_utf8(ctl(&["table", "show", EXAMPLE]).stdout).unwrap();
    assert!(
        text.contains(
            "table \"web\": 65536 rows of 1 primary + 2 alternates (gue); binds: 203.0.113.10:80/tcp"
        ),
        "{text}"
    );
    assert!(text.contains("198.51.100.13"));
    assert!(text.contains("spread"));
}

#[test]
fn table_diff_counts_the_rows_a_drain_moves() {
    let dir = Scratch::new("diff");
    let drained = dir.file("drained.json");
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let changed = text.replace(
        r#""ip": "198.51.100.11", "state": "active""#,
        r#""ip": "198.51.100.11", "state": "draining""#,
    );
    assert_ne!(text, changed);
    std::fs::write(&drained, changed).unwrap();
    let built = dir.file("built.json");
    assert!(
        ctl(&["table", "build", EXAMPLE, "--out", built.to_str().unwrap()])
            .status
            .success()
    );

    // A config and the table built from it are the same thing to diff.
    let v = stdout_json(&ctl(&[
        "table",
        "diff",
        EXAMPLE,
        built.to_str().unwrap(),
        "--json",
    ]));
    for t in v["tables"].as_array().unwrap() {
        assert_eq!(t["status"], "unchanged");
    }

    let v = stdout_json(&ctl(&[
        "table",
        "diff",
        built.to_str().unwrap(),
        drained.to_str().unwrap(),
        "--json",
    ]));
    let web = &v["tables"][0];
    assert_eq!(web["name"], "web");
    let old = expected_rows(&example(), 0);
    let new = expected_rows(
        &Config::from_json(&std::fs::read_to_string(&drained).unwrap()).unwrap(),
        0,
    );
    let count = |f: &dyn Fn(&[String], &[String]) -> bool| {
        old.iter().zip(&new).filter(|(a, b)| f(a, b)).count() as u64
    };
    let victim = "198.51.100.11";
    let owned = old.iter().filter(|r| r[0] == victim).count() as u64;
    assert_eq!(web["rows_primary_changed"].as_u64().unwrap(), owned);
    assert_eq!(
        web["rows_primary_changed"].as_u64().unwrap(),
        count(&|a, b| a[0] != b[0])
    );
    assert_eq!(
        web["rows_alternates_changed"].as_u64().unwrap(),
        count(&|a, b| a[1..] != b[1..])
    );
    assert_eq!(web["rows_changed"].as_u64().unwrap(), count(&|a, b| a != b));
    // The rows lost, per backend and place, as the two tables say. The
    // example already has a draining and an unhealthy backend: where both
    // rank above the drained one, its chain of 1 + 2 cannot keep it (three
    // changes in flight), and where the new primary was not in the chain,
    // the last alternate is pushed out. Which members may hold flows, as
    // far as a table tells: the primary, and those that take no new flows
    // (the draining and the unhealthy one); the others are pushed out
    // without loss.
    let holds_flows = |ip: &str| ["198.51.100.13", "198.51.100.15"].contains(&ip);
    let mut want_lost: Vec<Value> = Vec::new();
    let ips: std::collections::BTreeSet<&String> = old.iter().flatten().collect();
    for ip in ips {
        let gone = |r: usize| !new[r].contains(ip);
        let primary: Vec<usize> = (0..old.len())
            .filter(|&r| old[r][0] == *ip && gone(r))
            .collect();
        let alternate: Vec<usize> = (0..old.len())
            .filter(|&r| {
                old[r][0] != *ip && alternate_of(&old[r], ip) && holds_flows(ip) && gone(r)
            })
            .collect();
        if !primary.is_empty() || !alternate.is_empty() {
            want_lost.push(serde_json::json!({
                "ip": ip, "primary_rows": primary, "alternate_rows": alternate,
            }));
        }
    }
    assert_eq!(web["lost"], Value::Array(want_lost));
    assert_eq!(
        web["rows_lost"].as_u64().unwrap(),
        count(&|a, b| {
            a.iter()
                .enumerate()
                .any(|(i, x)| (i == 0 || holds_flows(x)) && !b.contains(x))
        })
    );
    let moved = web["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["ip"] == victim)
        .unwrap();
    assert_eq!(moved["primary_before"].as_u64().unwrap(), owned);
    assert_eq!(moved["primary_after"].as_u64().unwrap(), 0);
    assert_eq!(v["tables"][1]["status"], "unchanged");
}

fn trace_json(src: &str, dst: &str) -> Value {
    stdout_json(&ctl(&[
        "trace", EXAMPLE, "--src", src, "--dst", dst, "--json",
    ]))
}

#[test]
fn trace_names_the_bind_hash_row_and_backends() {
    let config = example();
    for (src, dst, table, bind) in [
        ("192.0.2.7:40000", "203.0.113.10:80/tcp", 0, 0),
        ("192.0.2.8", "203.0.113.10:443/tcp", 0, 1),
        ("[2001:db8:1::7]:5000", "[2001:db8:10::10]:443/tcp", 0, 2),
        ("192.0.2.9", "203.0.113.200:5500/udp", 1, 2),
    ] {
        let v = trace_json(src, dst);
        let t = &config.tables[table];
        assert_eq!(v["table"], t.name.as_str(), "{src} -> {dst}");
        assert_eq!(v["bind"], t.binds[bind].to_string());
        let client: IpAddr = src
            .parse()
            .or_else(|_| src.parse::<std::net::SocketAddr>().map(|s| s.ip()))
            .unwrap();
        let client_bytes = match client {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        // Default hash fields: the client address alone.
        let hash = flow_hash(
            &t.hash_key,
            proto::maps::HASH_SRC_ADDR,
            &Flow {
                src_addr: &client_bytes,
                dst_addr: &[],
                src_port: 0,
                dst_port: 0,
            },
        );
        assert_eq!(v["hash"], format!("{hash:016x}"));
        assert_eq!(v["hash_message"], proto::hex::encode(&client_bytes));
        let row = (hash & 0xffff) as usize;
        assert_eq!(v["row"].as_u64().unwrap() as usize, row);
        let rows = expected_rows(&config, table);
        assert_eq!(v["primary"]["ip"], rows[row][0].as_str());
        let alternates: Vec<&str> = v["alternates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["ip"].as_str().unwrap())
            .collect();
        assert_eq!(alternates, rows[row][1..], "{src} -> {dst}");
        assert_eq!(v["hops"], t.hops);
    }
}

#[test]
fn trace_of_a_packet_for_no_bind_says_so_and_fails() {
    let o = ctl(&[
        "trace",
        EXAMPLE,
        "--src",
        "192.0.2.7",
        "--dst",
        "203.0.113.10:8080/tcp",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "no bind matches 203.0.113.10:8080/tcp: the director passes such packets to the kernel\n"
    );
    let o = ctl(&[
        "trace",
        EXAMPLE,
        "--src",
        "192.0.2.7",
        "--dst",
        "203.0.113.10/tcp",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = ctl(&[
        "trace",
        EXAMPLE,
        "--src",
        "192.0.2.7",
        "--dst",
        "203.0.113.10:80/sctp",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("protocol \"sctp\" is not tcp or udp"));
}

#[test]
fn a_bad_config_is_refused_with_the_field_named() {
    let dir = Scratch::new("bad");
    let bad = dir.file("bad.json");
    let text = std::fs::read_to_string(EXAMPLE)
        .unwrap()
        .replace("\"port\": 443", "\"port\": 0");
    std::fs::write(&bad, text).unwrap();
    let out = dir.file("never.json");
    let o = ctl(&[
        "table",
        "build",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("table \"web\".binds[1].port: 0 is not a port (1-65535)"),
        "{err}"
    );
    assert!(
        !Path::new(&out).exists(),
        "nothing is written for a bad config"
    );
}

/// The file type of `p` itself (a link is not followed).
fn file_type(p: &Path) -> std::fs::FileType {
    std::fs::symlink_metadata(p).unwrap().file_type()
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// The names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn table_build_refuses_an_output_that_is_not_a_regular_file() {
    use std::os::unix::fs::FileTypeExt as _;
    let dir = Scratch::new("build-special");
    let fifo = dir.file("fifo");
    mkfifo(&fifo);
    let o = ctl(&["table", "build", EXAMPLE, "--out", fifo.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{} is a FIFO (named pipe), not a regular file: refusing to replace it",
            fifo.display()
        )),
        "{err}"
    );
    assert!(file_type(&fifo).is_fifo(), "the FIFO is still one");
    // A character device like /dev/null, made here (root only; /dev is
    // never touched).
    let null = dir.file("null");
    let made = std::process::Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .unwrap()
        .success();
    if made {
        let o = ctl(&["table", "build", EXAMPLE, "--out", null.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("is a character device"), "{err}");
        assert!(file_type(&null).is_char_device(), "the device is still one");
    } else {
        eprintln!("mknod refused (not root?): the device case is not checked");
    }
    let mut expected = vec!["fifo".to_string()];
    if made {
        expected.push("null".to_string());
    }
    assert_eq!(names(&dir.0), expected, "nothing else written");
}

#[test]
fn table_build_refuses_to_overwrite_its_config() {
    let dir = Scratch::new("build-config");
    let cfg = dir.file("director.json");
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    std::fs::write(&cfg, &text).unwrap();
    std::fs::hard_link(&cfg, dir.file("hard.json")).unwrap();
    std::os::unix::fs::symlink("director.json", dir.file("link.json")).unwrap();
    for out in ["director.json", "hard.json", "link.json"] {
        let out = dir.file(out);
        let o = ctl(&[
            "table",
            "build",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!(
                "is the same file as the input {}: refusing to overwrite it",
                cfg.display()
            )),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&cfg).unwrap(), text);
    }
    assert!(file_type(&dir.file("link.json")).is_symlink());
    assert_eq!(
        names(&dir.0),
        ["director.json", "hard.json", "link.json"],
        "nothing else written"
    );
}

#[test]
fn table_build_writes_through_a_link_and_never_through_a_planted_one() {
    let dir = Scratch::new("build-link");
    std::fs::create_dir(dir.file("real")).unwrap();
    std::fs::write(dir.file("real/table.json"), "old").unwrap();
    std::os::unix::fs::symlink("real/table.json", dir.file("table.json")).unwrap();
    // Links planted where a predictable temporary name would be: a build
    // that followed one would overwrite the victim.
    let victim = dir.file("victim");
    std::fs::write(&victim, "precious").unwrap();
    for planted in [
        "table.json.tmp",
        ".table.json.tmp",
        "real/table.json.tmp",
        "real/.table.json.tmp",
    ] {
        std::os::unix::fs::symlink(&victim, dir.file(planted)).unwrap();
    }
    let out = dir.file("table.json");
    let o = ctl(&["table", "build", EXAMPLE, "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(file_type(&out).is_symlink(), "the link is kept");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.file("real/table.json")).unwrap())
            .unwrap();
    assert_eq!(doc["tables"].as_array().unwrap().len(), 2);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(
        names(&dir.file("real")),
        [".table.json.tmp", "table.json", "table.json.tmp"],
        "no temporary file left"
    );
}

#[test]
fn table_build_to_dash_writes_standard_output() {
    let o = ctl(&["table", "build", EXAMPLE, "--out", "-"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows_of(&doc["tables"][0]), expected_rows(&example(), 0));
    assert!(!Path::new("-").exists());
}

#[test]
fn table_builds_to_one_output_at_once_do_not_collide() {
    let dir = Scratch::new("build-race");
    let out = dir.file("table.json");
    let builds: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_director-ctl"))
                .args(["table", "build", EXAMPLE, "--out", out.to_str().unwrap()])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for b in builds {
        let o = b.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(rows_of(&doc["tables"][0]), expected_rows(&example(), 0));
    assert_eq!(names(&dir.0), ["table.json"], "no temporary file left");
}

/// The example's "web" table in IP-in-IP.
fn ipip_example(s: &Scratch, name: &str, draining: Option<&str>) -> PathBuf {
    let mut text = std::fs::read_to_string(EXAMPLE).unwrap().replacen(
        r#""hops": 2,"#,
        r#""encap": "ipip","#,
        1,
    );
    if let Some(ip) = draining {
        let from = format!(r#""ip": "{ip}", "state": "active""#);
        assert!(text.contains(&from));
        text = text.replace(&from, &format!(r#""ip": "{ip}", "state": "draining""#));
    }
    let p = s.file(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn an_ipip_table_is_shown_as_such_and_a_drain_in_it_reports_every_moved_row_lost() {
    let s = Scratch::new("ipip");
    let old = ipip_example(&s, "old.json", None);
    let new = ipip_example(&s, "new.json", Some("198.51.100.12"));

    // show: the encap, and no alternates.
    let out = ctl(&["table", "show", old.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "table \"web\": 65536 rows of 1 primary, no alternates (ipip: no second chance)"
        ),
        "{text}"
    );
    assert!(text.contains("1 primary + 2 alternates (gue)"), "{text}");
    let v = stdout_json(&ctl(&["table", "show", old.to_str().unwrap(), "--json"]));
    assert_eq!(v["tables"][0]["encap"], "ipip");
    assert_eq!(v["tables"][0]["hops"], 0);
    assert_eq!(v["tables"][1]["encap"], "gue");

    // The config check warns of the drain.
    let out = ctl(&["table", "show", new.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(198.51.100.12): draining in an \"ipip\" table (no second chance)"),
        "{err}"
    );

    // diff: the rows the drained backend was primary of are lost, exactly.
    let config = Config::from_json(&std::fs::read_to_string(&old).unwrap()).unwrap();
    let owned: Vec<u64> = expected_rows(&config, 0)
        .iter()
        .enumerate()
        .filter(|(_, r)| r[0] == "198.51.100.12")
        .map(|(i, r)| {
            assert_eq!(r.len(), 1, "a row is its primary alone");
            i as u64
        })
        .collect();
    let v = stdout_json(&ctl(&[
        "table",
        "diff",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--json",
    ]));
    let web = &v["tables"][0];
    assert_eq!(web["rows_lost"], owned.len());
    assert_eq!(web["lost"][0]["ip"], "198.51.100.12");
    let lost: Vec<u64> = web["lost"][0]["primary_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_u64().unwrap())
        .collect();
    assert_eq!(lost, owned);
    let warning = web["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("\"encap\": \"ipip\" (no hop list, no second chance)")
            && warning.contains(&format!("{} rows", owned.len())),
        "{warning}"
    );
    let out = ctl(&[
        "table",
        "diff",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning: table \"web\" is \"encap\": \"ipip\""),
        "{text}"
    );

    // Built tables keep the encap and diff alike.
    let (a, b) = (s.file("old.table"), s.file("new.table"));
    for (config, out) in [(&old, &a), (&new, &b)] {
        let r = ctl(&[
            "table",
            "build",
            config.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }
    let built: Value = serde_json::from_str(&std::fs::read_to_string(&a).unwrap()).unwrap();
    assert_eq!(built["tables"][0]["encap"], "ipip");
    let v = stdout_json(&ctl(&[
        "table",
        "diff",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["tables"][0]["rows_lost"], owned.len());
    assert!(v["tables"][0]["warnings"][0].is_string());

    // trace names the encapsulation.
    let out = ctl(&[
        "trace",
        old.to_str().unwrap(),
        "--src",
        "192.0.2.7:40000",
        "--dst",
        "203.0.113.10:443/tcp",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ipip:      outer IPv4, protocol 4 (no hop list)"),
        "{text}"
    );
    assert!(!text.contains("alternate:"), "{text}");
}
