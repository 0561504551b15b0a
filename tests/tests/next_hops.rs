//! Next-hop resolution against the kernel's real tables, in a namespace of
//! its own: backends behind a multipath (ECMP) route with one path on the
//! director's interface and one on another get the MAC of the path on the
//! director's interface, whichever path the kernel would pick itself.

use std::collections::BTreeSet;
use std::net::IpAddr;

use director_xdp::neigh::Resolver;
use lab_tests::{Netns, veth};

#[test]
fn backends_behind_an_ecmp_route_resolve_through_the_directors_interface() {
    let director = Netns::new("nhd").unwrap();
    let router1 = Netns::new("nhr1").unwrap();
    let router2 = Netns::new("nhr2").unwrap();
    veth(
        &director,
        "va",
        "02:00:00:00:0b:01",
        &router1,
        "vb",
        "02:00:00:00:0b:02",
    )
    .unwrap();
    veth(
        &director,
        "vx",
        "02:00:00:00:0b:03",
        &router2,
        "vy",
        "02:00:00:00:0b:04",
    )
    .unwrap();
    for args in [
        &["addr", "add", "198.51.100.1/26", "dev", "va"][..],
        &["addr", "add", "198.51.100.65/26", "dev", "vx"],
        &[
            "neigh",
            "add",
            "198.51.100.2",
            "lladdr",
            "02:00:00:00:0b:02",
            "dev",
            "va",
            "nud",
            "permanent",
        ],
        &[
            "neigh",
            "add",
            "198.51.100.66",
            "lladdr",
            "02:00:00:00:0b:04",
            "dev",
            "vx",
            "nud",
            "permanent",
        ],
        &[
            "route",
            "add",
            "203.0.113.0/24",
            "nexthop",
            "via",
            "198.51.100.2",
            "dev",
            "va",
            "nexthop",
            "via",
            "198.51.100.66",
            "dev",
            "vx",
        ],
    ] {
        director.ip(args).unwrap();
    }
    let backends: BTreeSet<IpAddr> = (1..=32u8).map(|i| IpAddr::from([203, 0, 113, i])).collect();

    // The kernel's own choice sends some of them by vx.
    let by_vx = backends
        .iter()
        .filter(|b| {
            let out = director.ip(&["route", "get", &b.to_string()]).unwrap();
            String::from_utf8_lossy(&out.stdout).contains("dev vx")
        })
        .count();
    assert!(
        by_vx > 0,
        "the kernel sends none of 32 backends by vx: the test proves nothing"
    );

    let ifindex = {
        let out = director.ip(&["-o", "link", "show", "va"]).unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split(':')
            .next()
            .unwrap()
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    let wanted = backends.clone();
    let snapshot = director
        .run_in(move || {
            let mut r = Resolver::new(ifindex).map_err(std::io::Error::other)?;
            r.resolve(&wanted).map_err(std::io::Error::other)
        })
        .unwrap();
    assert_eq!(
        snapshot.unresolved.len(),
        0,
        "{by_vx} of 32 leave by vx in the kernel's choice: {:?}",
        snapshot.unresolved
    );
    for b in &backends {
        assert_eq!(
            snapshot.mac_of(*b),
            Some([2, 0, 0, 0, 0x0b, 0x02]),
            "{b}: the router on the director's interface"
        );
    }
}
