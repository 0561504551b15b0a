//! GLB-compatible config: the example parses to exactly what it says, GLB's
//! own format is read as is, and every bad field is refused with the table,
//! field and value named.
#![allow(clippy::unwrap_used)] // helpers of tests: a failure is the test failing

use std::net::IpAddr;

use proto::config::{ApiLimits, Config, ConfigError, HashFields, Prefix, Proto, to_json};
use proto::table::BackendState;

const EXAMPLE: &str = include_str!("../../examples/director.json");

fn err(text: &str) -> String {
    match Config::from_json(text) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// A one-table config with `bind` and `backends` spliced in.
fn with(binds: &str, backends: &str) -> String {
    format!(
        r#"{{"tables":[{{"name":"web","hash_key":"000102030405060708090a0b0c0d0e0f",
        "seed":"49a3d861d661ae5ab06ed9326871a2f5","binds":[{binds}],"backends":[{backends}]}}]}}"#
    )
}

const ONE_BACKEND: &str = r#"{"ip":"198.51.100.1","state":"active","healthy":true}"#;
const ONE_BIND: &str = r#"{"ip":"203.0.113.10","proto":"tcp","port":80}"#;

#[test]
fn example_config_parses_to_what_it_says() {
    let c = Config::from_json(EXAMPLE).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.tables.len(), 2);
    let web = c.table("web").unwrap();
    assert_eq!(web.seed[0], 0x49);
    assert_eq!(web.binds.len(), 3);
    assert_eq!(web.binds[0].to_string(), "203.0.113.10:80/tcp");
    assert_eq!(web.binds[2].to_string(), "[2001:db8:10::10]:443/tcp");
    let states: Vec<BackendState> = web.backends.iter().map(|b| b.backend.state).collect();
    use BackendState::*;
    assert_eq!(
        states,
        [Active, Active, Draining, Filling, Active, Inactive]
    );
    assert!(!web.backends[4].backend.healthy);
    assert_eq!(web.backends[0].healthchecks.as_ref().unwrap()["http"], 80);
    let dns = c.table("dns").unwrap();
    assert_eq!(
        dns.binds[2].prefix,
        Prefix {
            addr: "203.0.113.128".parse().unwrap(),
            len: 25
        }
    );
    assert_eq!(
        (dns.binds[2].port_start, dns.binds[2].port_end),
        (5000, 5999)
    );
    assert_eq!(dns.binds[0].proto, Proto::Udp);
    let d = &c.director;
    assert_eq!(d.interface.as_deref(), Some("eth0"));
    assert_eq!(d.source_v4, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(d.source_v6, Some("2001:db8::1".parse().unwrap()));
    assert_eq!(d.hash_fields, HashFields::DEFAULT);
    assert_eq!(d.gateway_mac, Some([0x02, 0, 0x5e, 0, 0x53, 1]));
    assert_eq!(d.api_listen, "127.0.0.1:9610".parse().unwrap());
}

#[test]
fn glb_config_without_names_or_director_section_is_read_as_is() {
    let glb = r#"{"tables":[{"hash_key":"12345678901234561234567890123456",
        "seed":"34567890123456783456789012345678",
        "binds":[{"ip":"203.0.113.1","proto":"tcp","port":80},
                 {"ip":"203.0.113.1","proto":"udp","port_start":8000,"port_end":8010}],
        "backends":[{"ip":"198.51.100.1","state":"active","healthy":true,"healthchecks":{"http":80}},
                    {"ip":"198.51.100.2","state":"draining","healthy":false}]}]}"#;
    let c = Config::from_json(glb).unwrap();
    assert_eq!(c.tables[0].name, "0");
    assert_eq!(c.director.hash_fields, HashFields::DEFAULT);
    assert_eq!(c.director.api_listen, "127.0.0.1:9610".parse().unwrap());
    assert_eq!(c.director.api_token_file, None, "no token: a read-only API");
    assert_eq!(
        c.tables[0].binds[1].to_string(),
        "203.0.113.1:8000-8010/udp"
    );
}

#[test]
fn defaults_unknown_fields_and_lookup() {
    let c = Config::from_json(&with(
        r#"{"ip":"203.0.113.0/24","proto":"tcp","port":80,"comment":"x"}"#,
        r#"{"ip":"198.51.100.1","weight":3}"#,
    ))
    .unwrap();
    let b = &c.tables[0].backends[0].backend;
    assert_eq!(
        (b.state, b.healthy, b.reachable),
        (BackendState::Active, true, true)
    );
    assert_eq!(c.tables[0].hops, proto::table::DEFAULT_HOPS);
    assert_eq!(
        c.warnings,
        [
            "table \"web\".binds[0]: unknown field \"comment\" ignored",
            "table \"web\".backends[0]: unknown field \"weight\" ignored",
        ]
    );
    let vip: IpAddr = "203.0.113.77".parse().unwrap();
    assert_eq!(c.find_bind(vip, Proto::Tcp, 80), Some((0, 0)));
    assert_eq!(c.find_bind(vip, Proto::Tcp, 81), None);
    assert_eq!(c.find_bind(vip, Proto::Udp, 80), None);
    assert_eq!(
        c.find_bind("203.0.114.1".parse().unwrap(), Proto::Tcp, 80),
        None
    );
}

#[test]
fn round_trips_through_to_json() {
    let c = Config::from_json(EXAMPLE).unwrap();
    let again = Config::from_json(&to_json(&c).to_string()).unwrap();
    assert_eq!(c, again);
    let with_token = EXAMPLE.replace(
        r#""gateway_mac""#,
        r#""api_token_file": "/etc/glb/api-token", "gateway_mac""#,
    );
    let c = Config::from_json(&with_token).unwrap();
    assert_eq!(
        c.director.api_token_file.as_deref(),
        Some(std::path::Path::new("/etc/glb/api-token"))
    );
    assert_eq!(Config::from_json(&to_json(&c).to_string()).unwrap(), c);
    assert_eq!(c.director.pin_dir, None);
    let with_pins = EXAMPLE.replace(
        r#""gateway_mac""#,
        r#""pin_dir": "/sys/fs/bpf/lb/eth0", "gateway_mac""#,
    );
    let c = Config::from_json(&with_pins).unwrap();
    assert_eq!(
        c.director.pin_dir.as_deref(),
        Some(std::path::Path::new("/sys/fs/bpf/lb/eth0"))
    );
    assert_eq!(Config::from_json(&to_json(&c).to_string()).unwrap(), c);
    // Hops and reachability are kept.
    let chained = with(
        ONE_BIND,
        r#"{"ip":"198.51.100.1"},{"ip":"198.51.100.2","reachable":false,"healthy":false}"#,
    )
    .replace(r#""binds""#, r#""hops":3,"binds""#);
    let c = Config::from_json(&chained).unwrap();
    assert_eq!(c.tables[0].hops, 3);
    let b = &c.tables[0].backends[1].backend;
    assert_eq!((b.healthy, b.reachable), (false, false));
    assert_eq!(Config::from_json(&to_json(&c).to_string()).unwrap(), c);
    assert_eq!(c.director.mtu, None);
    let with_mtu = EXAMPLE.replace(r#""gateway_mac""#, r#""mtu": 9000, "gateway_mac""#);
    let c = Config::from_json(&with_mtu).unwrap();
    assert_eq!(c.director.mtu, Some(9000));
    assert_eq!(to_json(&c)["director"]["mtu"], 9000);
    assert_eq!(Config::from_json(&to_json(&c).to_string()).unwrap(), c);
}

#[test]
fn api_limits_default_parse_round_trip_and_refuse_out_of_range() {
    let c = Config::from_json(EXAMPLE).unwrap();
    assert_eq!(c.director.api_limits, ApiLimits::DEFAULT);
    let dir = to_json(&c)["director"].clone();
    assert!(
        dir.get("api_max_connections").is_none(),
        "defaults are not written: {dir}"
    );
    let set = EXAMPLE.replace(
        r#""gateway_mac""#,
        r#""api_max_connections": 100, "api_max_connections_per_address": 10,
           "api_max_body_bytes": 4096, "api_header_timeout_ms": 2000,
           "api_body_timeout_ms": 3000, "gateway_mac""#,
    );
    let c = Config::from_json(&set).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.director.api_limits,
        ApiLimits {
            max_connections: 100,
            max_connections_per_address: 10,
            max_body_bytes: 4096,
            header_timeout_ms: 2000,
            body_timeout_ms: 3000,
        }
    );
    assert_eq!(to_json(&c)["director"]["api_header_timeout_ms"], 2000);
    assert_eq!(Config::from_json(&to_json(&c).to_string()).unwrap(), c);
    for (field, value, range) in [
        ("api_max_connections", "0", "1 to 1000000"),
        ("api_max_connections_per_address", "-1", "1 to 1000000"),
        ("api_max_body_bytes", "100", "1024 to 16777216"),
        ("api_header_timeout_ms", "1.5", "100 to 600000"),
        ("api_body_timeout_ms", "\"10\"", "100 to 600000"),
    ] {
        let text = EXAMPLE.replace(
            r#""gateway_mac""#,
            &format!(r#""{field}": {value}, "gateway_mac""#),
        );
        assert_eq!(
            err(&text),
            format!("director.{field}: {value} is not an integer from {range}")
        );
    }
}

#[test]
fn bird_settings_parse_round_trip_and_go_together() {
    let c = Config::from_json(EXAMPLE).unwrap();
    assert_eq!(c.director.bird_socket, None);
    assert_eq!(c.director.withdraw_delay_ms, 2000);
    let set =
        |extra: &str| EXAMPLE.replace(r#""gateway_mac""#, &format!(r#"{extra}, "gateway_mac""#));
    let c = Config::from_json(&set(
        r#""bird_socket": "/run/bird/bird.ctl", "bird_include": "/etc/bird/glb-vips.conf",
           "withdraw_delay_ms": 500"#,
    ))
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        c.director.bird_socket.as_deref(),
        Some(std::path::Path::new("/run/bird/bird.ctl"))
    );
    assert_eq!(c.director.withdraw_delay_ms, 500);
    assert_eq!(
        to_json(&c)["director"]["bird_include"],
        "/etc/bird/glb-vips.conf"
    );
    assert_eq!(Config::from_json(&to_json(&c).to_string()).unwrap(), c);
    for (extra, message) in [
        (
            r#""bird_socket": "/run/bird/bird.ctl""#,
            "director.bird_include: is required with director.bird_socket (the BIRD config include the director writes its VIPs to)",
        ),
        (
            r#""bird_include": "/etc/bird/glb-vips.conf""#,
            "director.bird_socket: is required with director.bird_include (BIRD's control socket, to make BIRD read it)",
        ),
        (
            r#""bird_socket": "bird.ctl", "bird_include": "/x""#,
            "director.bird_socket: \"bird.ctl\" is not an absolute path",
        ),
        (
            r#""withdraw_delay_ms": 600001"#,
            "director.withdraw_delay_ms: 600001 is not an integer from 0 to 600000",
        ),
    ] {
        assert_eq!(err(&set(extra)), message);
    }
}

/// A config whose table "t" has `backend` and one hop per row, and whose
/// director sets `mtu`.
fn with_mtu(backend: &str, mtu: &str) -> String {
    format!(
        r#"{{"tables":[{{"name":"t","hash_key":"000102030405060708090a0b0c0d0e0f",
        "seed":"49a3d861d661ae5ab06ed9326871a2f5","hops":1,"binds":[{ONE_BIND}],
        "backends":[{{"ip":"{backend}"}}]}}],"director":{{"mtu":{mtu}}}}}"#
    )
}

#[test]
fn the_path_mtu_must_leave_clients_ipv6s_minimum_once_encapsulated() {
    // IPv4 backends: 40 bytes of encapsulation, so at least 1320.
    let v4 = |mtu: &str| with_mtu("198.51.100.1", mtu);
    assert_eq!(
        Config::from_json(&v4("1320")).unwrap().director.mtu,
        Some(1320)
    );
    assert_eq!(
        Config::from_json(&v4("65535")).unwrap().director.mtu,
        Some(65535)
    );
    // IPv6 backends: 72 bytes, so at least 1352.
    let v6 = |mtu: &str| with_mtu("2001:db8::1", mtu);
    assert_eq!(
        Config::from_json(&v6("1352")).unwrap().director.mtu,
        Some(1352)
    );
    assert_eq!(
        err(&v6("1351")),
        "director.mtu: 1351 is below 1352, the least path MTU that leaves clients 1280 bytes (IPv6's minimum MTU) once the 72 bytes of encapsulation to IPv6 backends are added (table \"t\")"
    );
    assert_eq!(
        err(&v4("1319")),
        "director.mtu: 1319 is below 1320, the least path MTU that leaves clients 1280 bytes (IPv6's minimum MTU) once the 40 bytes of encapsulation to IPv4 backends are added (table \"t\")"
    );
    for (mtu, found) in [
        ("1299", "1299"),
        ("65536", "65536"),
        ("0", "0"),
        ("-1500", "-1500"),
        ("1500.5", "1500.5"),
        (r#""1500""#, r#""1500""#),
    ] {
        assert_eq!(
            err(&v4(mtu)),
            format!("director.mtu: {found} is not a path MTU (an integer from 1300 to 65535)"),
        );
    }
    // Each hop adds 4 bytes to IPv4 backends' packets, 16 to IPv6 ones'.
    let hops = |backend: &str, hops: u8, mtu: u32| {
        Config::from_json(
            &with_mtu(backend, &mtu.to_string())
                .replace(r#""hops":1"#, &format!(r#""hops":{hops}"#)),
        )
    };
    assert!(hops("198.51.100.1", 3, 1320 + 8).is_ok());
    assert!(hops("198.51.100.1", 3, 1320 + 7).is_err());
    assert!(hops("2001:db8::1", 2, 1352 + 16).is_ok());
    let e = hops("2001:db8::1", 3, 1352 + 31).unwrap_err().to_string();
    assert!(
        e.contains("below 1384") && e.contains("the 104 bytes of encapsulation"),
        "{e}"
    );
    // With tables of both families, the IPv6 one decides.
    let both = with_mtu("2001:db8::1", "1340").replace(
        r#""tables":["#,
        r#""tables":[{"name":"a","hash_key":"000102030405060708090a0b0c0d0e0f",
        "seed":"49a3d861d661ae5ab06ed9326871a2f5","backends":[{"ip":"198.51.100.1"}]},"#,
    );
    assert!(err(&both).contains("(table \"t\")"), "{}", err(&both));
}

#[test]
fn bad_values_are_refused_with_table_field_and_value() {
    let cases: Vec<(String, &str)> = vec![
        ("{".into(), "config is not valid JSON: EOF while parsing an object at line 1 column 1"),
        ("[]".into(), "config: expected an object, found []"),
        ("{}".into(), "config: missing field \"tables\""),
        (
            with(r#"{"ip":"203.0.113.300","proto":"tcp","port":80}"#, ONE_BACKEND),
            "table \"web\".binds[0].ip: \"203.0.113.300\" is not an IP address or prefix",
        ),
        (
            with(r#"{"ip":"203.0.113.5/24","proto":"tcp","port":80}"#, ONE_BACKEND),
            "table \"web\".binds[0].ip: \"203.0.113.5/24\" has host bits set (the network is 203.0.113.0/24)",
        ),
        (
            with(r#"{"ip":"203.0.113.0/33","proto":"tcp","port":80}"#, ONE_BACKEND),
            "table \"web\".binds[0].ip: \"203.0.113.0/33\": prefix length must be 0-32",
        ),
        (
            with(r#"{"ip":"203.0.113.10","proto":"sctp","port":80}"#, ONE_BACKEND),
            "table \"web\".binds[0].proto: \"sctp\" is not \"tcp\" or \"udp\"",
        ),
        (
            with(r#"{"ip":"203.0.113.10","proto":"tcp","port":70000}"#, ONE_BACKEND),
            "table \"web\".binds[0].port: 70000 is not a port (1-65535)",
        ),
        (
            with(r#"{"ip":"203.0.113.10","proto":"tcp","port_start":90,"port_end":80}"#, ONE_BACKEND),
            "table \"web\".binds[0]: port range 90-80 is reversed",
        ),
        (
            with(r#"{"ip":"203.0.113.10","proto":"tcp","port":80,"port_start":80,"port_end":81}"#, ONE_BACKEND),
            "table \"web\".binds[0]: give either \"port\" or \"port_start\" and \"port_end\", not both",
        ),
        (
            with(r#"{"ip":"203.0.113.10","proto":"tcp","port_start":80}"#, ONE_BACKEND),
            "table \"web\".binds[0]: a port range needs both \"port_start\" and \"port_end\"",
        ),
        (
            with(r#"{"ip":"203.0.113.10","proto":"tcp"}"#, ONE_BACKEND),
            "table \"web\".binds[0]: missing field \"port\" (or \"port_start\" and \"port_end\")",
        ),
        (
            with(
                r#"{"ip":"203.0.113.0/24","proto":"tcp","port_start":1,"port_end":100},{"ip":"203.0.113.9","proto":"tcp","port":80}"#,
                ONE_BACKEND,
            ),
            "table \"web\".binds[1]: 203.0.113.9:80/tcp overlaps 203.0.113.0/24:1-100/tcp (table \"web\".binds[0])",
        ),
        (
            with(ONE_BIND, r#"{"ip":"198.51.100.1","state":"drained"}"#),
            "table \"web\".backends[0] (198.51.100.1).state: \"drained\" is not one of \"active\", \"filling\", \"draining\", \"inactive\"",
        ),
        (
            with(ONE_BIND, r#"{"ip":"198.51.100.1","healthy":"yes"}"#),
            "table \"web\".backends[0] (198.51.100.1).healthy: \"yes\" is not true or false",
        ),
        (
            with(ONE_BIND, r#"{"ip":"198.51.100.1","reachable":0}"#),
            "table \"web\".backends[0] (198.51.100.1).reachable: 0 is not true or false",
        ),
        (
            with(ONE_BIND, ONE_BACKEND).replace(r#""binds""#, r#""hops":0,"binds""#),
            "table \"web\".hops: 0 is not a number of alternates per row (1 to 3)",
        ),
        (
            with(ONE_BIND, ONE_BACKEND).replace(r#""binds""#, r#""hops":4,"binds""#),
            "table \"web\".hops: 4 is not a number of alternates per row (1 to 3)",
        ),
        (
            with(ONE_BIND, ONE_BACKEND).replace(r#""binds""#, r#""hops":"2","binds""#),
            "table \"web\".hops: \"2\" is not a number of alternates per row (1 to 3)",
        ),
        (
            with(ONE_BIND, r#"{"ip":"backend-1"}"#),
            "table \"web\".backends[0].ip: \"backend-1\" is not an IP address",
        ),
        (
            with(ONE_BIND, r#"{"ip":"198.51.100.1"},{"ip":"2001:db8::1"}"#),
            "table \"web\".backends: backend 2001:db8::1 is not of the same address family as backend 198.51.100.1",
        ),
        (
            with(ONE_BIND, r#"{"ip":"198.51.100.1"},{"ip":"198.51.100.1"}"#),
            "table \"web\".backends: backend 198.51.100.1 is listed twice",
        ),
        (
            with(ONE_BIND, r#"{"ip":"198.51.100.1","state":"inactive"}"#),
            "table \"web\".backends: no backend can take traffic (every backend is inactive, or there are none): the table's VIPs would be blackholed",
        ),
        (
            r#"{"tables":[{"name":"web","hash_key":"00","seed":"49a3d861d661ae5ab06ed9326871a2f5","backends":[]}]}"#.into(),
            "table \"web\".hash_key: \"00\": expected 32 hex digits, found 2",
        ),
        (
            r#"{"tables":[{"name":"web","hash_key":"000102030405060708090a0b0c0d0e0f","backends":[]}]}"#.into(),
            "table \"web\": missing field \"seed\" (16 bytes as 32 hex digits)",
        ),
        (
            r#"{"tables":[{"name":"a b","backends":[]}]}"#.into(),
            "tables[0].name: \"a b\" is not a table name (1-64 characters of letters, digits, '-', '_', '.')",
        ),
        (
            r#"{"tables":[],"director":{"hash_fields":["src_addr","src_ip"]}}"#.into(),
            "director.hash_fields: \"src_ip\" is not one of \"src_addr\", \"dst_addr\", \"src_port\", \"dst_port\"",
        ),
        (
            r#"{"tables":[],"director":{"hash_fields":[]}}"#.into(),
            "director.hash_fields: needs at least one field",
        ),
        (
            r#"{"tables":[],"director":{"gateway_mac":"01:00:5e:00:00:01"}}"#.into(),
            "director.gateway_mac: \"01:00:5e:00:00:01\" is not a unicast MAC address",
        ),
        (
            r#"{"tables":[],"director":{"source_v4":"2001:db8::1"}}"#.into(),
            "director.source_v4: \"2001:db8::1\" is not an IPv4 address",
        ),
        (
            r#"{"tables":[],"director":{"api_token_file":"token"}}"#.into(),
            "director.api_token_file: \"token\" is not an absolute path",
        ),
        (
            r#"{"tables":[],"director":{"pin_dir":"/tmp/pins"}}"#.into(),
            "director.pin_dir: \"/tmp/pins\" is not a directory under /sys/fs/bpf (an absolute path on bpffs, without \"..\")",
        ),
        (
            r#"{"tables":[],"director":{"pin_dir":"/sys/fs/bpf/../x"}}"#.into(),
            "director.pin_dir: \"/sys/fs/bpf/../x\" is not a directory under /sys/fs/bpf (an absolute path on bpffs, without \"..\")",
        ),
        (
            r#"{"tables":[],"director":{"api_token_file":7}}"#.into(),
            "director.api_token_file: expected a string, found 7",
        ),
        (
            r#"{"tables":[],"director":{"api_listen":"localhost"}}"#.into(),
            "director.api_listen: \"localhost\" is not an address and port (like 127.0.0.1:9610 or [::1]:9610)",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(err(&text), want, "config: {text}");
    }
}

/// A field of the wrong type is refused in the words of the field's bad
/// values, named by its table's name and its backend's address; when that
/// name or address is bad too, it is the refusal.
#[test]
fn wrong_types_are_refused_like_bad_values() {
    let with_hops = |hops: &str| {
        with(ONE_BIND, ONE_BACKEND).replace(r#""binds""#, &format!(r#""hops":{hops},"binds""#))
    };
    let cases: Vec<(String, &str)> = vec![
        (
            with_hops("null"),
            "table \"web\".hops: null is not a number of alternates per row (1 to 3)",
        ),
        (
            with_hops("300"),
            "table \"web\".hops: 300 is not a number of alternates per row (1 to 3)",
        ),
        (
            with(ONE_BIND, r#"["198.51.100.1"]"#),
            "table \"web\".backends[0]: expected an object, found [\"198.51.100.1\"]",
        ),
        (
            with(ONE_BIND, r#"{"ip":"198.51.100.1","state":null}"#),
            "table \"web\".backends[0] (198.51.100.1).state: null is not one of \"active\", \"filling\", \"draining\", \"inactive\"",
        ),
        (
            with(ONE_BIND, r#"{"ip":"198.51.100.1","healthchecks":[80]}"#),
            "table \"web\".backends[0] (198.51.100.1).healthchecks: expected an object, found [80]",
        ),
        (
            with(ONE_BIND, r#"{"healthy":"yes","ip":"backend-1"}"#),
            "table \"web\".backends[0].ip: \"backend-1\" is not an IP address",
        ),
        (
            with(ONE_BIND, r#"{"ip":7}"#),
            "table \"web\".backends[0].ip: 7 is not an IP address",
        ),
        (
            with(
                r#"{"ip":"203.0.113.10","proto":"tcp","port":"80"}"#,
                ONE_BACKEND,
            ),
            "table \"web\".binds[0].port: \"80\" is not a port (1-65535)",
        ),
        (
            with(
                r#"{"ip":["203.0.113.10"],"proto":"tcp","port":80}"#,
                ONE_BACKEND,
            ),
            "table \"web\".binds[0].ip: [\"203.0.113.10\"] is not an IP address or prefix",
        ),
        (
            r#"{"tables":[{"backends":5,"name":"a b"}]}"#.into(),
            "tables[0].name: \"a b\" is not a table name (1-64 characters of letters, digits, '-', '_', '.')",
        ),
        (
            r#"{"tables":[{"name":"web","hash_key":7,"backends":[]}]}"#.into(),
            "table \"web\".hash_key: expected 32 hex digits, found 7",
        ),
        (
            r#"{"tables":{}}"#.into(),
            "tables: expected an array, found {}",
        ),
        (
            r#"{"tables":[[]]}"#.into(),
            "tables[0]: expected an object, found []",
        ),
        (
            r#"{"tables":[],"director":[]}"#.into(),
            "director: expected an object, found []",
        ),
        (
            r#"{"tables":[],"director":{"mtu":null}}"#.into(),
            "director.mtu: null is not a path MTU (an integer from 1300 to 65535)",
        ),
        (
            r#"{"tables":[],"director":{"withdraw_delay_ms":5000000000}}"#.into(),
            "director.withdraw_delay_ms: 5000000000 is not an integer from 0 to 600000",
        ),
        (
            r#"{"tables":[],"director":{"hash_fields":"src_addr"}}"#.into(),
            "director.hash_fields: expected an array, found \"src_addr\"",
        ),
        (
            r#"{"tables":[],"director":{"hash_fields":["src_addr",1]}}"#.into(),
            "director.hash_fields: 1 is not one of \"src_addr\", \"dst_addr\", \"src_port\", \"dst_port\"",
        ),
        (
            r#"{"tables":[],"director":{"interface":null}}"#.into(),
            "director.interface: expected a string, found null",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(err(&text), want, "config: {text}");
    }
}

#[test]
fn binds_of_two_tables_may_not_claim_the_same_packet() {
    let t = |name: &str, bind: &str| {
        format!(
            r#"{{"name":"{name}","hash_key":"000102030405060708090a0b0c0d0e0f","seed":"49a3d861d661ae5ab06ed9326871a2f5","binds":[{bind}],"backends":[{ONE_BACKEND}]}}"#
        )
    };
    let two = |a: &str, b: &str| format!(r#"{{"tables":[{},{}]}}"#, t("a", a), t("b", b));
    assert_eq!(
        err(&two(
            ONE_BIND,
            r#"{"ip":"203.0.113.10","proto":"tcp","port_start":79,"port_end":81}"#
        )),
        "table \"b\".binds[0]: 203.0.113.10:79-81/tcp overlaps 203.0.113.10:80/tcp (table \"a\".binds[0])"
    );
    // Same VIP, other protocol or port: fine.
    Config::from_json(&two(
        ONE_BIND,
        r#"{"ip":"203.0.113.10","proto":"udp","port":80}"#,
    ))
    .unwrap();
    Config::from_json(&two(
        ONE_BIND,
        r#"{"ip":"203.0.113.10","proto":"tcp","port":81}"#,
    ))
    .unwrap();
    assert_eq!(
        err(&format!(
            r#"{{"tables":[{},{}]}}"#,
            t("a", ONE_BIND),
            t("a", r#"{"ip":"203.0.113.11","proto":"tcp","port":80}"#)
        )),
        "table \"a\": the name is used by another table"
    );
    assert!(matches!(Config::from_json("{"), Err(ConfigError::Json(_))));
}

#[test]
fn addresses_no_host_can_be_reached_at_are_refused_as_backends() {
    let cases = [
        ("0.0.0.0", "the unspecified address"),
        (
            "0.1.2.3",
            "in 0.0.0.0/8 (this network), which no host can be reached at",
        ),
        ("255.255.255.255", "the broadcast address"),
        ("224.0.0.1", "a multicast address"),
        ("239.255.255.250", "a multicast address"),
        ("127.0.0.1", "a loopback address"),
        ("127.9.9.9", "a loopback address"),
        ("169.254.169.254", "a link-local address"),
        ("::", "the unspecified address"),
        ("::1", "a loopback address"),
        ("ff02::1", "a multicast address"),
        ("fe80::1", "a link-local address"),
        ("febf::1", "a link-local address"),
        (
            "::ffff:198.51.100.1",
            "an IPv4-mapped address (give the IPv4 address itself)",
        ),
    ];
    for (ip, why) in cases {
        let backends = format!(r#"{ONE_BACKEND},{{"ip":"{ip}"}}"#);
        assert_eq!(
            err(&with(ONE_BIND, &backends)),
            format!("table \"web\".backends[1].ip: {ip} is {why}: it cannot be a backend"),
        );
    }
    // Their neighbours are ordinary unicast addresses.
    for ip in [
        "1.0.0.1",
        "126.255.255.254",
        "169.253.0.1",
        "223.255.255.254",
        "fec0::1",
        "2001:db8::1",
    ] {
        let backends = format!(r#"{{"ip":"{ip}"}}"#);
        Config::from_json(&with(ONE_BIND, &backends)).unwrap();
    }
}

#[test]
fn director_sources_must_be_addresses_a_backend_can_answer() {
    for (key, ip, why) in [
        ("source_v4", "0.0.0.0", "the unspecified address"),
        ("source_v4", "255.255.255.255", "the broadcast address"),
        ("source_v4", "224.0.0.5", "a multicast address"),
        ("source_v4", "127.0.0.1", "a loopback address"),
        ("source_v6", "::", "the unspecified address"),
        ("source_v6", "ff05::2", "a multicast address"),
        ("source_v6", "fe80::2", "a link-local address"),
    ] {
        let text = with(ONE_BIND, ONE_BACKEND).replacen(
            '{',
            &format!(r#"{{"director":{{"{key}":"{ip}"}},"#),
            1,
        );
        assert_eq!(
            err(&text),
            format!("director.{key}: {ip} is {why}: it cannot be the director's source address"),
        );
    }
}

#[test]
fn error_messages_cut_long_values() {
    let long = "9".repeat(20_000_000);
    let text = with(ONE_BIND, &format!(r#"{{"ip":"{long}"}}"#));
    let e = err(&text);
    assert_eq!(
        e,
        format!(
            "table \"web\".backends[0].ip: \"{}...\" is not an IP address",
            "9".repeat(57)
        )
    );
    let text = with(ONE_BIND, ONE_BACKEND).replacen(
        '{',
        &format!(r#"{{"director":{{"interface":"{long}"}},"#),
        1,
    );
    assert_eq!(
        err(&text),
        format!(
            "director.interface: \"{}...\" is not an interface name",
            "9".repeat(57)
        )
    );
    // Unknown fields' names are warnings, cut too.
    let text = with(ONE_BIND, ONE_BACKEND).replacen('{', &format!(r#"{{"{long}":1,"#), 1);
    let c = Config::from_json(&text).unwrap();
    assert_eq!(
        c.warnings,
        [format!(
            "config: unknown field \"{}...\" ignored",
            "9".repeat(57)
        )]
    );
}

#[test]
fn a_rewrite_keeps_the_fields_this_project_does_not_read() {
    let original: serde_json::Value = serde_json::from_str(
        r#"{"owner":"team-a",
        "tables":[{"name":"web","hash_key":"000102030405060708090a0b0c0d0e0f",
          "seed":"49a3d861d661ae5ab06ed9326871a2f5","glb_extra":{"a":1},
          "binds":[{"ip":"203.0.113.10","proto":"tcp","port_start":80,"port_end":80,"comment":"main"}],
          "backends":[{"ip":"198.51.100.1","rack":"r1"},{"ip":"198.51.100.2","rack":"r2","healthy":true}]}],
        "director":{"interface":"eth0","x_note":"keep"}}"#,
    )
    .unwrap();
    let mut c = Config::from_json(&original.to_string()).unwrap();
    assert_eq!(c.warnings.len(), 6, "{:?}", c.warnings);
    // A change as the API makes one: a backend drained, one removed, one added.
    let web = &mut c.tables[0];
    web.backends[0].backend.state = BackendState::Draining;
    web.backends.remove(1);
    let mut added = web.backends[0].clone();
    added.backend.addr = "198.51.100.3".parse().unwrap();
    web.backends.push(added);
    let out = proto::config::to_json_keeping(&c, &original);
    assert_eq!(out["owner"], "team-a");
    assert_eq!(out["director"]["x_note"], "keep");
    assert_eq!(out["tables"][0]["glb_extra"]["a"], 1);
    let bind = &out["tables"][0]["binds"][0];
    assert_eq!(bind["comment"], "main");
    assert_eq!(
        (bind.get("port"), bind.get("port_start")),
        (Some(&serde_json::json!(80)), None),
        "known fields are the rendering's, not put back: {bind}"
    );
    let backends = out["tables"][0]["backends"].as_array().unwrap();
    assert_eq!(
        (&backends[0]["rack"], &backends[0]["state"]),
        (&serde_json::json!("r1"), &serde_json::json!("draining"))
    );
    assert_eq!(backends[1].get("rack"), None, "the added backend has none");
    // It reads back to the same config, warnings and all.
    let again = Config::from_json(&out.to_string()).unwrap();
    assert_eq!(again.tables, c.tables);
    assert_eq!(again.warnings.len(), 5, "{:?}", again.warnings);
}

#[test]
fn the_health_checkers_sections_are_no_warning_and_kept_by_a_rewrite() {
    let text = with(ONE_BIND, ONE_BACKEND).replacen(
        '{',
        r#"{"healthchecks":{"interval_ms":2000},"healthcheck":{"directors":["http://127.0.0.1:9610"]},"#,
        1,
    );
    let c = Config::from_json(&text).unwrap();
    assert_eq!(c.warnings, Vec::<String>::new());
    let original: serde_json::Value = serde_json::from_str(&text).unwrap();
    let out = proto::config::to_json_keeping(&c, &original);
    assert_eq!(out["healthchecks"]["interval_ms"], 2000);
    assert_eq!(out["healthcheck"]["directors"][0], "http://127.0.0.1:9610");
}

#[test]
fn encap_defaults_to_gue_takes_ipip_and_refuses_anything_else() {
    use proto::Encap;
    let c = Config::from_json(&with(ONE_BIND, ONE_BACKEND)).unwrap();
    assert_eq!(c.tables[0].encap, Encap::Gue);
    assert_eq!(c.tables[0].chain_hops(), 2);

    let ipip = with(ONE_BIND, ONE_BACKEND).replace(r#""binds""#, r#""encap":"ipip","binds""#);
    let c = Config::from_json(&ipip).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let t = &c.tables[0];
    assert_eq!(t.encap, Encap::Ipip);
    // No hop list: a row is its primary alone.
    assert_eq!(t.chain_hops(), 0);
    let rows = t.rendezvous().unwrap();
    assert!(rows.rows().iter().all(|r| r.len() == 1));
    assert_eq!(to_json(&c)["tables"][0]["encap"], "ipip");
    assert_eq!(Config::from_json(&to_json(&c).to_string()).unwrap(), c);

    // `hops` means nothing there: kept, and said so.
    let c = Config::from_json(&ipip.replace(r#""binds""#, r#""hops":3,"binds""#)).unwrap();
    assert_eq!(c.tables[0].hops, 3);
    assert_eq!(c.tables[0].chain_hops(), 0);
    assert_eq!(
        c.warnings,
        [
            r#"table "web".hops: ignored with "encap": "ipip" (no hop list: a row is its primary alone)"#
        ]
    );

    for (value, shown) in [
        (r#""vxlan""#, r#""vxlan""#),
        ("4", "4"),
        (r#""IPIP""#, r#""IPIP""#),
    ] {
        let text = with(ONE_BIND, ONE_BACKEND)
            .replace(r#""binds""#, &format!(r#""encap":{value},"binds""#));
        assert_eq!(
            err(&text),
            format!(r#"table "web".encap: {shown} is not "gue" or "ipip""#)
        );
    }

    // The path MTU: IP-in-IP adds the outer header alone, 20 bytes to
    // IPv4 backends.
    let mtu = |m: u32| {
        Config::from_json(&ipip.replace(r#"]}]}"#, &format!(r#"]}}],"director":{{"mtu":{m}}}}}"#)))
    };
    assert!(mtu(1300).is_ok());
    assert_eq!(
        mtu(1299).unwrap_err().to_string(),
        "director.mtu: 1299 is not a path MTU (an integer from 1300 to 65535)"
    );
}
