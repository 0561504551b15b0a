//! `director-ctl fleet status` against two real `director-xdp run` daemons,
//! each in its own namespace, reached from a third (the operator's) over a
//! veth each (docs/api.md). The same config on both: every table agrees;
//! one drained through the API: it disagrees; one daemon gone: it is
//! named as unreachable. Needs root; namespaces, daemons and files are
//! removed on every exit path.
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

use std::time::Duration;

use lab_tests::{Daemon, Netns, Scratch, veth, workspace_bin};
use serde_json::Value;

const TOKEN: &str = "fleet-token-2b7e41";
/// Loading the program and building tables in a debug build, on a shared
/// two-core machine.
const START: Duration = Duration::from_secs(120);
const BACKENDS: [&str; 3] = ["198.51.100.2", "198.51.100.3", "198.51.100.4"];

fn config_text(api_listen: &str, token_file: &str) -> String {
    let backends: Vec<String> = BACKENDS
        .iter()
        .map(|ip| format!(r#"{{"ip":"{ip}","state":"active","healthy":true}}"#))
        .collect();
    format!(
        r#"{{"tables":[{{"name":"web","hash_key":"0a4d8c2f7b1e93564fd0b5c2e1a87f36",
            "seed":"49a3d861d661ae5ab06ed9326871a2f5",
            "binds":[{{"ip":"203.0.113.10","proto":"tcp","port":80}}],
            "backends":[{b}]}},
          {{"name":"api","hash_key":"5b0e2a9c4d7f13865ae0c4d3f2b98e47",
            "seed":"7f3a1c5e9b2d4f6081a3c5e7092b4d6f",
            "binds":[{{"ip":"203.0.113.11","proto":"tcp","port":443}}],
            "backends":[{b}]}}],
          "director":{{"interface":"va","source_v4":"198.51.100.1",
            "gateway_mac":"02:00:5e:00:53:01","api_listen":"{api_listen}",
            "api_token_file":"{token_file}"}}}}"#,
        b = backends.join(",")
    )
}

/// Two directors and the operator's namespace. Drops the daemons first,
/// then the namespaces, then the files.
struct Fleet {
    daemons: Vec<Option<Daemon>>,
    _directors: Vec<Netns>,
    operator: Netns,
    scratch: Scratch,
    urls: Vec<String>,
}

impl Fleet {
    fn new() -> Fleet {
        let scratch = Scratch::new("fleet").unwrap();
        let operator = Netns::new("fleetop").unwrap();
        let token = scratch.file("token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        let bin = workspace_bin("director-xdp").unwrap();
        let mut fleet = Fleet {
            daemons: Vec::new(),
            _directors: Vec::new(),
            operator,
            scratch,
            urls: Vec::new(),
        };
        for i in 0..2u8 {
            let ns = Netns::new("fleetdir").unwrap();
            // Director i: 192.0.2.(16i+1)/28, the operator .(16i+2) on the
            // other end. The API listens there, so reads need the token.
            let (dir_ip, op_ip) = (16 * i + 1, 16 * i + 2);
            veth(
                &ns,
                "va",
                &format!("02:00:00:00:0c:{:02x}", 2 * i + 1),
                &fleet.operator,
                &format!("op{i}"),
                &format!("02:00:00:00:0c:{:02x}", 2 * i + 2),
            )
            .unwrap();
            ns.ip(&["addr", "add", "198.51.100.1/24", "dev", "va"])
                .unwrap();
            ns.ip(&["addr", "add", &format!("192.0.2.{dir_ip}/28"), "dev", "va"])
                .unwrap();
            fleet
                .operator
                .ip(&[
                    "addr",
                    "add",
                    &format!("192.0.2.{op_ip}/28"),
                    "dev",
                    &format!("op{i}"),
                ])
                .unwrap();
            let listen = format!("192.0.2.{dir_ip}:9610");
            let cfg = fleet.scratch.file(&format!("director-{i}.json"));
            std::fs::write(&cfg, config_text(&listen, token.to_str().unwrap())).unwrap();
            let mut d = ns
                .spawn(
                    bin.to_str().unwrap(),
                    &["run", "--config", cfg.to_str().unwrap()],
                    fleet.scratch.file(&format!("director-{i}.log")),
                )
                .unwrap();
            d.wait_for_log("director attached", START).unwrap();
            fleet.daemons.push(Some(d));
            fleet._directors.push(ns);
            fleet.urls.push(format!("http://{listen}"));
        }
        fleet
    }

    /// `director-ctl ARGS` in the operator's namespace: (exit code, stdout,
    /// stderr).
    fn ctl(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let ctl = workspace_bin("director-ctl").unwrap();
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", self.operator.name()])
            .arg(&ctl)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn status(&self, json: bool) -> (Option<i32>, String, String) {
        let token = self.scratch.file("token");
        let mut args = vec!["--token-file", token.to_str().unwrap(), "fleet", "status"];
        args.extend(self.urls.iter().map(String::as_str));
        if json {
            args.push("--json");
        }
        self.ctl(&args)
    }
}

#[test]
fn fleet_status_compares_content_hashes_and_names_unreachable_directors() {
    let mut fleet = Fleet::new();

    // The same config: both tables agree.
    let (code, out, err) = fleet.status(false);
    assert_eq!(code, Some(0), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("table") && lines[0].contains(&fleet.urls[1]),
        "{out}"
    );
    assert!(
        lines.iter().filter(|l| l.ends_with("  AGREE")).count() == 2,
        "{out}"
    );
    let (code, out, err) = fleet.status(true);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["agree"], true, "{v}");
    let tables = v["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2, "{v}");
    for t in tables {
        assert_eq!(t["agree"], true, "{v}");
        let h = t["hashes"].as_array().unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0], h[1]);
        assert_eq!(h[0].as_str().map(str::len), Some(32), "{v}");
    }
    assert_eq!(v["directors"][1]["url"], fleet.urls[1].as_str());
    assert_eq!(v["directors"][1]["reachable"], true);

    // Reads off loopback need the token: without it, the director refuses.
    let mut args = vec!["fleet", "status"];
    args.extend(fleet.urls.iter().map(String::as_str));
    let (code, _, err) = fleet.ctl(&args);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("401"), "{err}");

    // One director's "web" changes through its API: "web" disagrees,
    // "api" still agrees.
    let token = fleet.scratch.file("token");
    let (code, _, err) = fleet.ctl(&[
        "--api",
        &fleet.urls[1],
        "--token-file",
        token.to_str().unwrap(),
        "backends",
        "drain",
        "web",
        BACKENDS[0],
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = fleet.status(false);
    assert_eq!(code, Some(1), "{out}{err}");
    let web = out.lines().find(|l| l.starts_with("web ")).unwrap();
    let api = out.lines().find(|l| l.starts_with("api ")).unwrap();
    assert!(web.ends_with("  DISAGREE"), "{out}");
    assert!(api.ends_with("  AGREE"), "{out}");
    let (code, out, _) = fleet.status(true);
    assert_eq!(code, Some(1));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["agree"], false);
    let web = v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "web")
        .unwrap();
    assert_eq!(web["agree"], false, "{v}");
    assert_ne!(web["hashes"][0], web["hashes"][1], "{v}");

    // The second director stops: it is named, and the exit status is 4.
    let d = fleet.daemons[1].take().unwrap();
    assert!(d.stop().unwrap().success());
    let (code, out, err) = fleet.status(false);
    assert_eq!(code, Some(4), "{out}{err}");
    assert!(
        err.contains(&fleet.urls[1]) && err.contains("unreachable"),
        "{err}"
    );
    assert!(!err.contains(&format!("{}:", fleet.urls[0])), "{err}");
    assert!(out.contains("unreachable"), "{out}");
    let (code, out, _) = fleet.status(true);
    assert_eq!(code, Some(4));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["directors"][0]["reachable"], true, "{v}");
    assert_eq!(v["directors"][1]["reachable"], false, "{v}");
    assert!(v["directors"][1]["error"].as_str().is_some(), "{v}");
}
