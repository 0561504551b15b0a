//! `redirect-xdp` refuses addresses it cannot work with before it
//! touches anything: a `--self` that is not an address of this host, or
//! that no director could send to, and an `--allow` prefix that holds no
//! sender. Run in a namespace of its own (root).

use std::process::Command;

use lab_tests::{Netns, workspace_bin};

/// Runs the agent in `ns` with `args`: (exit code, stderr).
fn redirect(ns: &Netns, args: &[&str]) -> (Option<i32>, String) {
    let bin = workspace_bin("redirect-xdp").expect("redirect-xdp binary");
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(&bin)
        .args(args)
        .output()
        .expect("running redirect-xdp");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn redirect_refuses_self_addresses_that_are_not_this_hosts_and_senderless_allows() {
    let ns = Netns::new("rflags").expect("namespace");
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ])
    .expect("veth pair");
    ns.ip(&["addr", "add", "198.51.100.11/24", "dev", "eth0"])
        .expect("address");
    ns.ip(&["link", "set", "eth0", "up"]).expect("up");

    let base = ["--iface", "eth0", "--allow", "198.51.100.1/32"];
    let cases: [(&[&str], &str); 5] = [
        (
            &["--self", "198.51.100.12"],
            "--self 198.51.100.12: no interface of this host (in this network namespace) has that address; the ones it has: ",
        ),
        (
            &["--self", "0.0.0.0"],
            "--self 0.0.0.0: 0.0.0.0 is the unspecified address: it cannot be a backend's address",
        ),
        (
            // On the host (lo), but no director can reach it there.
            &["--self", "127.0.0.1"],
            "--self 127.0.0.1: 127.0.0.1 is a loopback address: it cannot be a backend's address",
        ),
        (
            &["--self", "198.51.100.11", "--allow", "224.0.0.0/4"],
            "--allow 224.0.0.0/4: every address of it is a multicast address: no director or backend sends from there",
        ),
        (
            &["--self", "198.51.100.11", "--allow", "fe80::/64"],
            "--allow fe80::/64: every address of it is a link-local address: no director or backend sends from there",
        ),
    ];
    for (extra, expected) in cases {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        let (code, stderr) = redirect(&ns, &args);
        assert_eq!(code, Some(2), "{args:?}: a usage error: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // The one it has lists it.
    let (_, stderr) = redirect(
        &ns,
        &[
            "--iface",
            "eth0",
            "--allow",
            "198.51.100.1/32",
            "--self",
            "198.51.100.12",
        ],
    );
    assert!(stderr.contains("198.51.100.11"), "{stderr}");
}
