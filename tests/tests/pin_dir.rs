//! The default pin directory (no `director.pin_dir`) of directors outside
//! the host's network namespace: two `director-xdp run` in two network
//! namespaces that share one bpffs, each on an interface named `eth0`, pin
//! to two directories named after their namespaces' inodes, neither of
//! them the host's `/sys/fs/bpf/glb-director/eth0`, and both keep running
//! (with one directory they would remove each other's pins). SIGTERM
//! removes the pins and the directories.
//!
//! Lab (documentation addresses only): both directors plugged into one
//! bridge (namespace "sw"); the bpffs is mounted in a mount namespace of
//! the test's own, removed with it.
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use lab_tests::{MountNs, Netns, Scratch, Switch, workspace_bin};

/// A debug build on a shared two-core machine loads the program and
/// writes 65,536-row tables.
const START_TIMEOUT: Duration = Duration::from_secs(120);

fn config(source: &str) -> String {
    format!(
        r#"{{"tables":[{{"name":"lab","hash_key":"6c61622d686173682d6b65792d303031",
            "seed":"6c61622d736565642d30303030303031",
            "binds":[{{"ip":"203.0.113.10","proto":"udp","port":53}}],
            "backends":[{{"ip":"198.51.100.11","state":"active","healthy":true}}]}}],
          "director":{{"interface":"eth0","source_v4":"{source}",
            "gateway_mac":"02:00:00:00:04:fe"}}}}"#
    )
}

/// The paths under /sys/fs/bpf in `mnt`, at most `depth` levels down,
/// except those in `kernel` (what the kernel puts in a fresh bpffs:
/// `maps.debug` and `progs.debug` with bpf_preload).
fn bpffs(mnt: &MountNs, depth: u32, kernel: &BTreeSet<String>) -> BTreeSet<String> {
    let depth = depth.to_string();
    let out = mnt
        .exec(
            "find",
            &["/sys/fs/bpf", "-mindepth", "1", "-maxdepth", &depth],
        )
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|p| !kernel.contains(*p))
        .map(str::to_string)
        .collect()
}

fn xdp_attached(ns: &Netns) -> bool {
    let out = ns.ip(&["-d", "link", "show", "dev", "eth0"]).unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

#[test]
fn directors_in_two_network_namespaces_pin_to_two_directories_by_default() {
    let scratch = Scratch::new("pindir").unwrap();
    // One bpffs for both directors, as on a host (network namespaces share
    // bpffs); in a mount namespace of the test's own, so no pin is ever
    // made in the root namespace's.
    let mnt = MountNs::new().unwrap();
    let mounted = mnt
        .exec("mount", &["-t", "bpf", "bpf", "/sys/fs/bpf"])
        .unwrap();
    assert!(mounted.status.success(), "{mounted:?}");
    let kernel = bpffs(&mnt, 4, &BTreeSet::new());
    let ours = |depth| bpffs(&mnt, depth, &kernel);

    // Hosts first, so that the daemons are dropped before them.
    let mut sw = Switch::new().unwrap();
    let a = Netns::new("pda").unwrap();
    let b = Netns::new("pdb").unwrap();
    sw.plug(&a, "02:00:00:00:04:01", &["198.51.100.1/24"])
        .unwrap();
    sw.plug(&b, "02:00:00:00:04:03", &["198.51.100.3/24"])
        .unwrap();
    let inode = |ns: &Netns| {
        std::fs::metadata(format!("/run/netns/{}", ns.name()))
            .unwrap()
            .ino()
    };
    let (ino_a, ino_b) = (inode(&a), inode(&b));
    assert_ne!(ino_a, ino_b);

    let bin = workspace_bin("director-xdp").unwrap();
    let start = |ns: &Netns, source: &str, name: &str| {
        let cfg = scratch.file(&format!("{name}.json"));
        std::fs::write(&cfg, config(source)).unwrap();
        let args = ["run", "--config", cfg.to_str().unwrap()];
        let mut d = ns
            .spawn_in_mount(
                &mnt,
                bin.to_str().unwrap(),
                &args,
                scratch.file(&format!("{name}.log")),
            )
            .unwrap();
        d.wait_for_log("attached", START_TIMEOUT).unwrap();
        d
    };
    // One after the other: the second finds the first one's pins on the
    // shared bpffs, as a director started later on the same host would.
    let mut da = start(&a, "198.51.100.1", "a");
    let mut db = start(&b, "198.51.100.3", "b");

    let dir = |ino: u64| format!("/sys/fs/bpf/glb-director/netns-{ino}/eth0");
    let (dir_a, dir_b) = (dir(ino_a), dir(ino_b));
    for (d, ino, pins) in [(&da, ino_a, &dir_a), (&db, ino_b, &dir_b)] {
        let log = d.log();
        assert!(
            log.contains(&format!(
                "pin directory {pins} (default): network namespace {ino}, not proven to be the host's"
            )),
            "no log line naming the pin directory and why:\n{log}"
        );
        assert!(log.contains(&format!("pinned in {pins}")), "{log}");
    }
    let expected: BTreeSet<String> = [
        "/sys/fs/bpf/glb-director".to_string(),
        format!("/sys/fs/bpf/glb-director/netns-{ino_a}"),
        dir_a.clone(),
        format!("/sys/fs/bpf/glb-director/netns-{ino_b}"),
        dir_b.clone(),
    ]
    .into();
    assert_eq!(ours(3), expected, "the host's path is never used");
    let links: BTreeSet<String> = ours(4)
        .into_iter()
        .filter(|p| p.ends_with("/link"))
        .collect();
    assert_eq!(
        links,
        [format!("{dir_a}/link"), format!("{dir_b}/link")].into(),
        "each director's link pinned in its own directory"
    );

    // Both keep running and attached, neither having removed the other's
    // pins.
    std::thread::sleep(Duration::from_secs(1));
    for (d, ns) in [(&mut da, &a), (&mut db, &b)] {
        assert!(d.running().unwrap(), "a director stopped:\n{}", d.log());
        assert!(
            xdp_attached(ns),
            "not attached in {}:\n{}",
            ns.name(),
            d.log()
        );
        assert!(
            !d.log().contains("WARN"),
            "a director warned (pins removed?):\n{}",
            d.log()
        );
    }
    assert_eq!(ours(3), expected);

    // SIGTERM: each removes its pins and its directories left empty.
    assert!(da.stop().unwrap().success());
    assert_eq!(
        ours(3),
        [
            "/sys/fs/bpf/glb-director".to_string(),
            format!("/sys/fs/bpf/glb-director/netns-{ino_b}"),
            dir_b.clone(),
        ]
        .into(),
        "the first director's pins removed, the second's kept"
    );
    assert!(xdp_attached(&b));
    assert!(db.stop().unwrap().success());
    assert_eq!(ours(1), BTreeSet::new(), "no pin left");
    assert!(!xdp_attached(&a) && !xdp_attached(&b));
}
