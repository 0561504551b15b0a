//! The fleet lab (tests/fleet_lab.rs): three directors behind a router
//! with ECMP over BGP, four backends, the health checker. Needs root.
#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

use std::time::Duration;

use lab_tests::fleet_lab::{DIRECTORS, FleetLab, Load, director_ip};
use lab_tests::glb::{VIP4, VIP6, connect_many};

fn director(lab: &FleetLab, k: usize) -> proto::api::DirectorStatus {
    let r = lab.api(k, "GET", proto::api::path::DIRECTOR).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn smoke() {
    let mut lab = FleetLab::new([&[], &[], &["--keep-on-exit"]]).unwrap();
    lab.start_checker().unwrap();
    for k in 0..DIRECTORS {
        let d = director(&lab, k);
        eprintln!("{k}: {d:?}");
    }
    eprintln!(
        "{:?} {:?}",
        lab.next_hops(VIP4).unwrap(),
        lab.next_hops(VIP6).unwrap()
    );
    let c4 = connect_many(&lab.client, VIP4, 60).unwrap();
    let c6 = connect_many(&lab.client, VIP6, 30).unwrap();
    let load = Load::start(&lab, Duration::from_millis(100));
    std::thread::sleep(Duration::from_secs(2));
    let r = load.finish().unwrap();
    eprintln!("load ok {} failed {:?}", r.ok, r.failed);
    for k in 0..DIRECTORS {
        eprintln!("{} {:?}", director_ip(k), director(&lab, k).vip_packets);
    }
    drop((c4, c6));
}
