//! [`Dataplane::apply`] and friends, checked by reading the maps back.
//! Needs root (the maps are real kernel maps; nothing is attached).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use aya::maps::{Array, LpmTrie, MapData};
use aya::programs::{TestRun as _, TestRunOptions};
use director_xdp::dataplane::CheckError;
use director_xdp::{Dataplane, DataplaneError, PathMtu, bind_ids};
use proto::config::{BackendConfig, Bind, Config, Prefix, Proto, Table};
use proto::maps::{
    BACKEND_MAC_RESOLVED, BackendEntry, BindInfo, DirectorSettings, ENCAP_GUE, ENCAP_IPIP,
    MAX_BACKENDS, NO_INNER_LIMIT, PortRange, TABLE_ROWS, TableHead, TableKeys, TableRow,
    VIP_TABLE_PROBES, VIP_TABLE_STRIDE, VipEntry, VipKey, VipSlot, lpm_prefix_len, names,
    row_index, vip_fold, vip_home,
};
use proto::table::{Backend, BackendState, DEFAULT_HOPS};

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xbe];

fn example() -> Config {
    Config::from_json(include_str!("../../examples/director.json"))
        .expect("examples/director.json is a valid config")
}

fn load() -> Dataplane {
    match Dataplane::load() {
        Ok(dp) => dp,
        Err(e) => panic!("loading the director (needs root): {e:?}"),
    }
}

fn no_macs(_: IpAddr) -> Option<[u8; 6]> {
    None
}

fn array<'a, V: aya::Pod>(dp: &'a Dataplane, name: &str) -> Array<&'a MapData, V> {
    Array::try_from(dp.ebpf().map(name).expect("map in object")).expect("an Array")
}

fn get<V: aya::Pod>(dp: &Dataplane, name: &str, index: u32) -> V {
    array::<V>(dp, name)
        .get(&index, 0)
        .expect("reading a map entry")
}

/// The host VIPs of the live slot of the host VIP table, each checked to be
/// where the director's probe finds it.
fn host_vips(dp: &Dataplane) -> Vec<(VipKey, VipEntry)> {
    let settings: DirectorSettings = get(dp, names::SETTINGS, 0);
    let slot = usize::from(settings.vip_slot);
    assert!(slot < 2, "{settings:?}");
    let (mult, bits) = (settings.vip_mult[slot], settings.vip_bits[slot]);
    let table = array::<VipSlot>(dp, names::VIP_TABLE);
    let base = slot as u32 * VIP_TABLE_STRIDE;
    let mut out = Vec::new();
    for i in 0..(1 << bits) + VIP_TABLE_PROBES {
        let e = table.get(&(base + i), 0).expect("reading DIR_VIP_TABLE");
        if e.family == 0 {
            assert_eq!(e, VipSlot::default(), "empty entry {i}");
            continue;
        }
        let home = vip_home(vip_fold(e.addr), mult, bits);
        assert!(
            home <= i && i - home < VIP_TABLE_PROBES,
            "entry {i}, home {home}"
        );
        for j in home..i {
            let before = table.get(&(base + j), 0).expect("reading DIR_VIP_TABLE");
            assert_ne!(before.family, 0, "entry {i} behind an empty entry {j}");
        }
        let mut addr = [0u8; 16];
        addr[..8].copy_from_slice(&e.addr[0].to_ne_bytes());
        addr[8..].copy_from_slice(&e.addr[1].to_ne_bytes());
        let key = VipKey {
            family: e.family as u8,
            _pad: [0; 3],
            addr,
        };
        assert_eq!(u64::from(key.family), e.family);
        out.push((key, e.entry));
    }
    out
}

/// The VIP maps as (prefix length, key) -> entry: the host VIPs (host VIP
/// table, full-length prefixes) and the shorter prefixes (LPM trie).
fn vips(dp: &Dataplane) -> BTreeMap<(u32, [u8; 20]), VipEntry> {
    let trie: LpmTrie<&MapData, VipKey, VipEntry> =
        LpmTrie::try_from(dp.ebpf().map(names::VIPS).expect("DIR_VIPS")).expect("an LpmTrie");
    let mut out: BTreeMap<_, _> = trie
        .iter()
        .map(|kv| {
            let (k, v) = kv.expect("reading DIR_VIPS");
            let len = k.prefix_len();
            assert!(
                len < lpm_prefix_len(host_bits(&k.data())),
                "host VIP in the trie"
            );
            ((len, key_bytes(&k.data())), v)
        })
        .collect();
    for (k, v) in host_vips(dp) {
        let key = (lpm_prefix_len(host_bits(&k)), key_bytes(&k));
        assert!(out.insert(key, v).is_none(), "VIP in both maps");
    }
    out
}

fn host_bits(k: &VipKey) -> u32 {
    if k.family == proto::maps::FAMILY_V4 {
        32
    } else {
        128
    }
}

fn key_bytes(k: &VipKey) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0] = k.family;
    b[1..4].copy_from_slice(&k._pad);
    b[4..].copy_from_slice(&k.addr);
    b
}

fn vip(prefix: &str, len: u32) -> (u32, [u8; 20]) {
    let addr: IpAddr = prefix.parse().expect("address");
    (lpm_prefix_len(len), key_bytes(&VipKey::new(addr)))
}

/// An entry of (protocol, first port, last port, bind, table id) ranges.
fn entry(ranges: &[(u8, u16, u16, u16, u8)]) -> VipEntry {
    let mut e = VipEntry {
        count: ranges.len() as u32,
        ..VipEntry::default()
    };
    for (slot, &(proto, start, end, bind, table)) in e.ranges.iter_mut().zip(ranges) {
        *slot = PortRange {
            start,
            end,
            bind,
            proto,
            table,
        };
    }
    e
}

fn active_slot(dp: &Dataplane, table: &str) -> u32 {
    let id = dp.table_id(table).expect("table id");
    get::<TableHead>(dp, names::TABLE_HEADS, id).active
}

/// Every row of `table`'s `slot`.
fn slot_rows(dp: &Dataplane, table: &str, slot: u32) -> Vec<TableRow> {
    let id = dp.table_id(table).expect("table id");
    let rows = array::<TableRow>(dp, names::TABLES);
    (0..TABLE_ROWS)
        .map(|r| rows.get(&row_index(id, slot, r), 0).expect("row"))
        .collect()
}

/// Asserts that the live slot of every table of `config` is its
/// `Rendezvous` table mapped through the loader's backend indexes, with the
/// table's hash key, and that each index holds its backend.
fn assert_tables_are_live(dp: &Dataplane, config: &Config) {
    for t in &config.tables {
        let built = t.rendezvous().expect("table builds");
        let index = |addr: IpAddr| dp.backend_index(&t.name, addr).expect("backend index");
        let slot = active_slot(dp, &t.name);
        let rows = slot_rows(dp, &t.name, slot);
        for (r, (got, chain)) in rows.iter().zip(built.row_addrs()).enumerate() {
            let mut want = TableRow::default();
            for (e, a) in want.chain.iter_mut().zip(chain.iter()) {
                *e = u16::try_from(index(*a)).expect("a 16-bit index");
            }
            assert_eq!(*got, want, "table {:?} row {r}", t.name);
        }
        let id = dp.table_id(&t.name).expect("table id");
        let head: TableHead = get(dp, names::TABLE_HEADS, id);
        assert_eq!(
            (head.keys[slot as usize], head.hops[slot as usize]),
            (TableKeys::new(&t.hash_key), t.hops),
            "hash key and hops of table {:?}",
            t.name
        );
        for b in &t.backends {
            let e: BackendEntry = get(dp, names::BACKENDS, index(b.backend.addr));
            assert_eq!(
                e.ip(),
                Some(b.backend.addr),
                "backend entry of {}",
                b.backend.addr
            );
        }
    }
}

/// Indexes referenced by the live slot of every table of `config`.
fn live_indexes(dp: &Dataplane, config: &Config) -> BTreeSet<u32> {
    config
        .tables
        .iter()
        .flat_map(|t| {
            let used = 1 + usize::from(t.hops);
            slot_rows(dp, &t.name, active_slot(dp, &t.name))
                .into_iter()
                .flat_map(move |r| r.chain.into_iter().take(used).map(u32::from))
        })
        .collect()
}

fn backends_by_index(dp: &Dataplane) -> Vec<BackendEntry> {
    array::<BackendEntry>(dp, names::BACKENDS)
        .iter()
        .map(|e| e.expect("backend entry"))
        .collect()
}

fn backend(addr: &str, state: BackendState) -> BackendConfig {
    BackendConfig {
        backend: Backend::new(addr.parse().expect("address"), state),
        healthchecks: None,
    }
}

fn bind(prefix: &str, proto: Proto, ports: (u16, u16)) -> Bind {
    let (addr, len) = match prefix.split_once('/') {
        Some((a, l)) => (a.parse().expect("address"), l.parse().expect("length")),
        None => {
            let a: IpAddr = prefix.parse().expect("address");
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    Bind {
        prefix: Prefix { addr, len },
        proto,
        port_start: ports.0,
        port_end: ports.1,
    }
}

fn table(name: &str, binds: Vec<Bind>, backends: Vec<BackendConfig>) -> Table {
    let mut seed = [0x5a; 16];
    seed[..name.len().min(16)].copy_from_slice(&name.as_bytes()[..name.len().min(16)]);
    Table {
        name: name.to_string(),
        hash_key: [0x11; 16],
        seed,
        hops: DEFAULT_HOPS,
        encap: proto::Encap::Gue,
        binds,
        backends,
    }
}

/// Everything `apply` writes besides the rows, for "nothing changed" checks.
fn snapshot(dp: &Dataplane) -> String {
    let settings: DirectorSettings = get(dp, names::SETTINGS, 0);
    let heads: Vec<TableHead> = array::<TableHead>(dp, names::TABLE_HEADS)
        .iter()
        .map(|h| h.expect("table head"))
        .collect();
    let binds: Vec<BindInfo> = array::<BindInfo>(dp, names::BINDS)
        .iter()
        .map(|b| b.expect("bind"))
        .collect();
    let backends: Vec<BackendEntry> = backends_by_index(dp)
        .into_iter()
        .filter(|e| e.family != 0)
        .collect();
    format!(
        "{settings:?}\n{heads:?}\n{binds:?}\n{backends:?}\n{:?}",
        vips(dp)
    )
}

#[test]
fn example_config_fills_every_map() {
    let config = example();
    let mut dp = load();
    let mac_of = |a: IpAddr| (a == IpAddr::V4(Ipv4Addr::new(198, 51, 100, 11))).then_some(MAC);

    let report = dp.apply(&config, &mac_of).expect("applying the example");

    let settings: DirectorSettings = get(&dp, names::SETTINGS, 0);
    assert_eq!(settings.src_v4, [192, 0, 2, 1]);
    assert_eq!(
        settings.src_v6,
        "2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets()
    );
    assert_eq!(settings.gateway_mac, [0x02, 0x00, 0x5e, 0x00, 0x53, 0x01]);
    assert_eq!(settings.hash_fields, proto::maps::HASH_SRC_ADDR);
    // 203.0.113.128/25 is the one prefix shorter than an address.
    assert_eq!(settings.vip_prefixes, proto::maps::VIP_PREFIXES_V4);

    // Bind ids: table order, then bind order.
    let ids = bind_ids(&config);
    assert_eq!(ids.len(), 6);
    assert_eq!(
        (ids[4].table.as_str(), ids[4].index, ids[4].id),
        ("dns", 1, 4)
    );
    // Table ids: the first free ones, in config order.
    assert_eq!((dp.table_id("web"), dp.table_id("dns")), (Some(0), Some(1)));
    let want_vips: BTreeMap<_, _> = [
        (
            vip("203.0.113.10", 32),
            entry(&[(6, 80, 80, 0, 0), (6, 443, 443, 1, 0)]),
        ),
        (vip("2001:db8:10::10", 128), entry(&[(6, 443, 443, 2, 0)])),
        (
            vip("203.0.113.53", 32),
            entry(&[(6, 53, 53, 4, 1), (17, 53, 53, 3, 1)]),
        ),
        (vip("203.0.113.128", 25), entry(&[(17, 5000, 5999, 5, 1)])),
    ]
    .into_iter()
    .collect();
    assert_eq!(vips(&dp), want_vips);
    for b in &ids {
        let info: BindInfo = get(&dp, names::BINDS, b.id);
        assert_eq!(Some(info.table), dp.table_id(&b.table), "bind {}", b.id);
    }

    // The first update writes slot 1 (the maps start on slot 0) and flips.
    assert_eq!(report.tables.len(), 2);
    for t in &report.tables {
        assert!(t.flipped, "{t:?}");
        assert_eq!(t.active, 1);
        assert_eq!(active_slot(&dp, &t.name), 1);
    }
    assert_ne!(dp.table_id("web"), dp.table_id("dns"));
    assert_tables_are_live(&dp, &config);

    // Backends: one entry per (table, address), MAC only where known.
    assert_eq!(report.backends, 9);
    assert_eq!(report.unresolved_macs, 8);
    let mut seen = BTreeSet::new();
    for t in &config.tables {
        for b in &t.backends {
            let i = dp.backend_index(&t.name, b.backend.addr).expect("index");
            assert!(seen.insert(i), "index {i} given twice");
            let e: BackendEntry = get(&dp, names::BACKENDS, i);
            match mac_of(b.backend.addr) {
                Some(mac) => assert_eq!((e.flags, e.mac), (BACKEND_MAC_RESOLVED, mac)),
                None => assert_eq!((e.flags, e.mac), (0, [0; 6])),
            }
        }
    }
}

#[test]
fn updates_flip_slots_and_never_rewrite_a_live_index() {
    let first = example();
    let mut dp = load();
    dp.apply(&first, &no_macs).expect("first apply");

    // Web loses .11 and gains .21 and .22; dns drains one backend; a new
    // table appears.
    let mut second = first.clone();
    let web = &mut second.tables[0];
    web.backends.remove(0);
    web.backends
        .push(backend("198.51.100.21", BackendState::Active));
    web.backends
        .push(backend("198.51.100.22", BackendState::Filling));
    second.tables[1].backends[0].backend.state = BackendState::Draining;
    second.tables.push(table(
        "api",
        vec![bind("203.0.113.80", Proto::Tcp, (8080, 8080))],
        vec![
            backend("198.51.100.31", BackendState::Active),
            backend("198.51.100.32", BackendState::Active),
        ],
    ));
    // ...and then back, which frees and reuses indexes.
    let third = first.clone();

    let mut before = first.clone();
    for next in [second, third] {
        let live = live_indexes(&dp, &before);
        let entries = backends_by_index(&dp);
        let slots: Vec<(String, u32)> = before
            .tables
            .iter()
            .map(|t| (t.name.clone(), active_slot(&dp, &t.name)))
            .collect();

        let report = dp.apply(&next, &no_macs).expect("apply");

        let after = backends_by_index(&dp);
        for &i in &live {
            assert_eq!(
                after[i as usize].ip(),
                entries[i as usize].ip(),
                "index {i} was live and got rewritten for another backend"
            );
        }
        for t in &report.tables {
            if let Some((_, old)) = slots.iter().find(|(n, _)| *n == t.name) {
                assert!(t.flipped, "table {:?} changed: {t:?}", t.name);
                assert_eq!(t.active, 1 - old, "table {:?} flipped", t.name);
            }
        }
        assert_tables_are_live(&dp, &next);
        before = next;
    }
    // Every index ever used is inside the half the config may fill twice over.
    assert!(live_indexes(&dp, &before).iter().all(|&i| i < MAX_BACKENDS));
}

#[test]
fn unchanged_config_is_not_rewritten() {
    let config = example();
    let mut dp = load();
    dp.apply(&config, &no_macs).expect("first apply");

    let report = dp.apply(&config, &no_macs).expect("second apply");

    assert!(
        report
            .tables
            .iter()
            .all(|t| !t.flipped && t.rows_written == 0),
        "{report:?}"
    );
    assert_eq!(report.backends_written, 0);
    assert_eq!(report.vips_removed, 0);
    assert_eq!(active_slot(&dp, "web"), 1);
}

#[test]
fn only_changed_rows_are_written_into_the_idle_slot() {
    let config = example();
    let mut dp = load();
    dp.apply(&config, &no_macs).expect("first apply");
    let mut drained = config.clone();
    drained.tables[0].backends[0].backend.state = BackendState::Draining;

    let report = dp.apply(&drained, &no_macs).expect("drain");

    // Slot 0 was never written: every non-zero row is new there.
    let web = &report.tables[0];
    assert!(web.flipped && web.active == 0);
    assert_tables_are_live(&dp, &drained);
    // Back to slot 1, which still holds the first table: only the rows the
    // drain changed differ.
    let report = dp.apply(&config, &no_macs).expect("undrain");
    let web = &report.tables[0];
    assert_eq!(web.active, 1);
    let changed = slot_rows(&dp, "web", 0)
        .iter()
        .zip(slot_rows(&dp, "web", 1))
        .filter(|(a, b)| **a != *b)
        .count();
    assert_eq!(web.rows_written, 0, "slot 1 already held these rows");
    assert!(
        changed > 0 && changed < TABLE_ROWS as usize,
        "{changed} rows differ"
    );
    assert_tables_are_live(&dp, &config);
}

#[test]
fn prefix_entries_carry_the_ranges_of_the_prefixes_containing_them() {
    let mut config = example();
    config.tables = vec![
        table(
            "wide",
            vec![bind("203.0.113.0/24", Proto::Udp, (5000, 5999))],
            vec![backend("198.51.100.41", BackendState::Active)],
        ),
        table(
            "narrow",
            vec![
                bind("203.0.113.53", Proto::Udp, (53, 53)),
                bind("203.0.113.53", Proto::Tcp, (53, 53)),
            ],
            vec![backend("198.51.100.42", BackendState::Active)],
        ),
    ];
    let mut dp = load();
    dp.apply(&config, &no_macs).expect("apply");

    // Bind 0 is the wide table's (id 0), binds 1 and 2 the narrow one's.
    let want: BTreeMap<_, _> = [
        (vip("203.0.113.0", 24), entry(&[(17, 5000, 5999, 0, 0)])),
        (
            vip("203.0.113.53", 32),
            entry(&[
                (6, 53, 53, 2, 1),
                (17, 53, 53, 1, 1),
                (17, 5000, 5999, 0, 0),
            ]),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(vips(&dp), want);

    // The longest match alone decides: 203.0.113.53:5500/udp is the wide
    // table's, sent to its one backend.
    let mut frame = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    frame.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    frame.extend_from_slice(&[192, 0, 2, 7, 203, 0, 113, 53]);
    frame.extend_from_slice(&[0x30, 0x39, 0x15, 0x7c, 0, 8, 0, 0]);
    let mut out = vec![0u8; frame.len() + 128];
    let result = dp
        .program()
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(result.return_value, 3, "XDP_TX");
    assert_eq!(&out[30..34], &[198, 51, 100, 41], "outer destination");
    let stats = dp.stats().expect("stats");
    assert_eq!(stats.per_bind[0].packets, 1);
}

#[test]
fn removed_tables_lose_their_vips_binds_and_counters() {
    let config = example();
    let mut dp = load();
    dp.apply(&config, &no_macs).expect("first apply");
    let mut web_only = config.clone();
    web_only.tables.truncate(1);

    let report = dp.apply(&web_only, &no_macs).expect("second apply");

    // 203.0.113.53 (both protocols in one entry) and 203.0.113.128/25.
    assert_eq!(report.vips_removed, 2);
    assert_eq!(vips(&dp).len(), 2);
    for id in 3..6 {
        let info: BindInfo = get(&dp, names::BINDS, id);
        assert_eq!(info, BindInfo::default(), "bind {id}");
    }
    assert_eq!(dp.table_id("dns"), None);
    assert_eq!(dp.stats().expect("stats").per_bind.len(), 3);
}

#[test]
fn refresh_macs_rewrites_only_the_entries_whose_mac_changed() {
    let config = example();
    let mut dp = load();
    dp.apply(&config, &no_macs).expect("apply");
    let target = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 12));
    let mac_of = |a: IpAddr| (a == target).then_some(MAC);
    let rows_before = slot_rows(&dp, "web", 1);

    assert_eq!(dp.refresh_macs(&mac_of).expect("refresh"), 1);
    assert_eq!(dp.refresh_macs(&mac_of).expect("refresh again"), 0);

    let e: BackendEntry = get(
        &dp,
        names::BACKENDS,
        dp.backend_index("web", target).expect("index"),
    );
    assert_eq!(
        (e.flags, e.mac, e.ip()),
        (BACKEND_MAC_RESOLVED, MAC, Some(target))
    );
    assert_eq!(active_slot(&dp, "web"), 1, "no table change");
    assert_eq!(slot_rows(&dp, "web", 1), rows_before);
}

#[test]
fn configs_the_data_plane_cannot_hold_are_refused_and_nothing_is_written() {
    let mut dp = load();
    let empty = snapshot(&dp);

    // IPv6 backends without an IPv6 source, on fresh maps.
    let mut no_v6_source = example();
    no_v6_source.director.source_v6 = None;
    let err = dp.apply(&no_v6_source, &no_macs).expect_err("refused");
    assert!(matches!(
        err,
        DataplaneError::Check(CheckError::MissingSource { .. })
    ));
    assert_eq!(
        err.to_string(),
        "table \"dns\" has IPv6 backends, but director.source_v6 is not set (the outer source address of GUE packets to them)"
    );
    assert_eq!(snapshot(&dp), empty, "nothing written on fresh maps");

    dp.apply(&example(), &no_macs).expect("a good config");
    let good = snapshot(&dp);

    let mut too_many_backends = example();
    too_many_backends.tables[0].backends = (0..5000u32)
        .map(|i| {
            let [_, _, c, d] = i.to_be_bytes();
            backend(&format!("10.0.{c}.{d}"), BackendState::Active)
        })
        .collect();
    let err = dp.apply(&too_many_backends, &no_macs).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "table \"web\": 5000 backends, the data plane holds at most 4096 in all"
    );

    let mut too_many_ranges = example();
    too_many_ranges.tables[0].binds = (0..9)
        .map(|i| bind("203.0.113.10", Proto::Tcp, (1000 + i, 1000 + i)))
        .collect();
    let err = dp.apply(&too_many_ranges, &no_macs).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "VIP 203.0.113.10 tcp: 9 port ranges (its binds and those of the prefixes containing it), the data plane holds at most 8"
    );

    let mut too_many_tables = example();
    too_many_tables.tables = (0..17)
        .map(|i| {
            table(
                &format!("t{i}"),
                vec![],
                vec![backend("198.51.100.50", BackendState::Active)],
            )
        })
        .collect();
    let err = dp.apply(&too_many_tables, &no_macs).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "17 tables, the data plane holds at most 16"
    );

    assert_eq!(snapshot(&dp), good, "refused configs wrote nothing");
}

#[test]
fn the_path_mtu_is_the_configs_else_the_interfaces_else_none() {
    let mut dp = load();
    let mtu = |dp: &Dataplane| get::<DirectorSettings>(dp, names::SETTINGS, 0).mtu;
    let mut config = example();
    assert_eq!(config.director.mtu, None);
    dp.apply(&config, &no_macs).expect("applying the example");
    assert_eq!(dp.path_mtu(&config), PathMtu::None);
    assert_eq!(
        mtu(&dp),
        proto::mtu::NO_LIMIT,
        "no interface (replay): no limit"
    );
    assert_eq!(dp.live_path_mtu(), None);
    let web = dp.table_id("web").expect("table id");
    let head: TableHead = get(&dp, names::TABLE_HEADS, web);
    assert_eq!(head.max_inner[head.active as usize], NO_INNER_LIMIT);

    dp.set_link_mtu("eth0", 9000);
    dp.apply(&config, &no_macs).expect("applying");
    assert_eq!(mtu(&dp), 9000);
    dp.set_link_mtu("lo", 65536);
    dp.apply(&config, &no_macs).expect("applying");
    assert_eq!(mtu(&dp), 65535, "capped at the largest IPv4 packet");
    config.director.mtu = Some(1500);
    dp.apply(&config, &no_macs).expect("applying");
    assert_eq!(dp.path_mtu(&config), PathMtu::Config(1500));
    assert_eq!(mtu(&dp), 1500, "director.mtu wins over the interface");
    // Each table's live slot holds the longest original packet that fits
    // once encapsulated: "web" (IPv4 backends) 1500 - 20 - 16 - 2 x 4,
    // "dns" (IPv6 backends) 1500 - 40 - 16 - 2 x 16.
    for (table, want) in [("web", 1456), ("dns", 1412)] {
        let id = dp.table_id(table).expect("table id");
        let head: TableHead = get(&dp, names::TABLE_HEADS, id);
        assert_eq!(head.max_inner[head.active as usize], want, "{table}");
    }

    // An interface too small for table "dns"'s IPv6 backends (two hops):
    // refused, and nothing written.
    config.director.mtu = None;
    dp.set_link_mtu("eth0", 1367);
    let before = snapshot(&dp);
    let err = dp.apply(&config, &no_macs).expect_err("refused");
    assert!(matches!(
        err,
        DataplaneError::Check(CheckError::PathMtu { .. })
    ));
    assert_eq!(
        err.to_string(),
        "the MTU of interface eth0 (director.mtu not set): 1367 is below 1368, the least path MTU that leaves clients 1280 bytes (IPv6's minimum MTU) once the 88 bytes of encapsulation to IPv6 backends are added (table \"dns\")"
    );
    assert_eq!(snapshot(&dp), before);
    assert_eq!(dp.live_path_mtu(), Some(1500), "the MTU written last");
    dp.set_link_mtu("eth0", 1368);
    dp.apply(&config, &no_macs).expect("just enough");
    assert_eq!(mtu(&dp), 1368);
}

#[test]
fn an_ipip_slot_carries_its_encap_no_hops_and_the_outer_header_alone_as_overhead() {
    let mut dp = load();
    let mut config = example();
    config.director.mtu = Some(1500);
    dp.apply(&config, &no_macs).expect("applying the example");
    let web = dp.table_id("web").expect("table id");
    let head: TableHead = get(&dp, names::TABLE_HEADS, web);
    let live = head.active as usize;
    assert_eq!((head.encap[live], head.hops[live]), (ENCAP_GUE, 2));

    // The same table in IP-in-IP: a new slot, flipped to, with the rows'
    // primaries alone, and 1500 - 20 bytes for the original packet.
    let primaries: Vec<u16> = slot_rows(&dp, "web", head.active)
        .iter()
        .map(|r| r.chain[0])
        .collect();
    config.tables[0].encap = proto::Encap::Ipip;
    dp.apply(&config, &no_macs).expect("applying IP-in-IP");
    let head: TableHead = get(&dp, names::TABLE_HEADS, web);
    let live = head.active as usize;
    assert_eq!(
        (head.encap[live], head.hops[live], head.max_inner[live]),
        (ENCAP_IPIP, 0, 1480)
    );
    // The other slot is left as it was, for packets still reading it.
    assert_eq!((head.encap[1 - live], head.hops[1 - live]), (ENCAP_GUE, 2));
    let rows = slot_rows(&dp, "web", head.active);
    assert!(rows.iter().map(|r| r.chain[0]).eq(primaries));
    assert!(rows.iter().all(|r| r.chain[1..] == [0; 3]));
}

/// A bpffs mounted on a fresh directory for as long as this value lives.
struct BpfFs(std::path::PathBuf);

impl BpfFs {
    fn mount() -> BpfFs {
        let dir = std::env::temp_dir().join(format!("glbt-bpffs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&dir)
            .status()
            .expect("running mount");
        let fs = BpfFs(dir);
        assert!(status.success(), "mounting bpffs (needs root)");
        fs
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Rows of every slot of every table id.
fn all_slots(dp: &Dataplane) -> Vec<Vec<TableRow>> {
    let rows = array::<TableRow>(dp, names::TABLES);
    (0..proto::maps::MAX_TABLES)
        .flat_map(|id| (0..2).map(move |slot| (id, slot)))
        .map(|(id, slot)| {
            (0..TABLE_ROWS)
                .map(|r| rows.get(&row_index(id, slot, r), 0).expect("row"))
                .collect()
        })
        .collect()
}

#[test]
fn pinned_maps_are_adopted_without_touching_what_the_live_slots_use() {
    let fs = BpfFs::mount();
    let first = example();
    let (mut dp, reused) = Dataplane::load_pinned(&fs.0).expect("loading with pins");
    assert!(!reused, "nothing was pinned yet");
    dp.apply(&first, &no_macs).expect("first apply");
    let live = live_indexes(&dp, &first);
    let entries = backends_by_index(&dp);
    let old_ids: Vec<u32> = first
        .tables
        .iter()
        .map(|t| dp.table_id(&t.name).expect("table id"))
        .collect();
    let old_slots: Vec<u32> = old_ids
        .iter()
        .map(|&id| get::<TableHead>(&dp, names::TABLE_HEADS, id).active)
        .collect();
    // The process dies: only the pins hold the maps.
    drop(dp);

    let (mut dp, reused) = Dataplane::load_pinned(&fs.0).expect("adopting the pins");
    assert!(reused, "the pinned maps are reused");
    assert_eq!(
        backends_by_index(&dp),
        entries,
        "the pinned maps hold what the first process wrote"
    );
    let before = all_slots(&dp);
    let mut second = first.clone();
    second.tables[0].backends.remove(0);
    second.tables[0]
        .backends
        .push(backend("198.51.100.21", BackendState::Active));
    dp.apply(&second, &no_macs).expect("apply after adoption");

    let after = backends_by_index(&dp);
    for &i in &live {
        assert_eq!(
            after[i as usize], entries[i as usize],
            "index {i} was live before the adoption and got rewritten"
        );
    }
    let after_slots = all_slots(&dp);
    for (id, slot) in old_ids.iter().zip(&old_slots) {
        let at = (*id * 2 + slot) as usize;
        assert!(
            before[at] == after_slots[at],
            "the slot table {id} was reading from was written"
        );
    }
    assert_tables_are_live(&dp, &second);
    // And a second update after the adoption, back to the first config.
    dp.apply(&first, &no_macs)
        .expect("second apply after adoption");
    assert_tables_are_live(&dp, &first);
    drop(dp);
}

#[test]
fn a_zero_hash_key_on_a_one_backend_table_is_written_as_its_siphash_state() {
    // Fresh maps hold zeros, and one backend (index 0) makes every row
    // (0, 0): only the key tells this table from the empty maps. The key
    // is stored as the SipHash state it gives, which is not zero.
    let mut config = example();
    let mut t = table(
        "zero-key",
        vec![bind("203.0.113.10", Proto::Tcp, (80, 80))],
        vec![backend("198.51.100.41", BackendState::Active)],
    );
    t.hash_key = [0; 16];
    config.tables = vec![t];
    let mut dp = load();
    dp.apply(&config, &no_macs).expect("apply");
    assert_eq!(
        dp.backend_index("zero-key", "198.51.100.41".parse().unwrap()),
        Some(0)
    );
    assert_tables_are_live(&dp, &config);
}
