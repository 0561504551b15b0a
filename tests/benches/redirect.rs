//! Redirect-module benchmark: ns per packet of the backend-side XDP
//! program for four kinds of packet, beside the floor (`bench_floor`,
//! `return XDP_TX`) and the director's matched IPv4 TCP packet measured the
//! same way in the same run, against the targets of issue [10] point 1: the
//! redirect module's cost above the floor at most 1.5 times the director's
//! for an established flow's packet, at most 3 times for a forwarded one.
//! Prints a Markdown section for `docs/benchmarks.md` (see `make bench`).
//!
//! The program looks up sockets and routes, so it runs from a thread inside
//! a lab namespace of its own (`glbt-rbench-<pid>-<n>`, documentation
//! addresses only, removed on every exit path: return, panic, SIGINT,
//! SIGTERM, SIGHUP). Nothing is created in the root namespace. The
//! namespace holds a veth `eth0` (198.51.100.11, 2001:db8:1::11, forwarding
//! on) whose other end `eth1` stays in the namespace, a permanent neighbour
//! entry for the other backend (198.51.100.12), the VIP and a client address
//! on `lo`, a listener on the VIP and one accepted connection to it. The
//! maps are written as `redirect-xdp --self 198.51.100.11 --self
//! 2001:db8:1::11 --allow 198.51.100.0/28 2001:db8:1::/124` writes them;
//! the director's from `examples/director.json`.
//!
//! Method (the director's, `director-xdp/benches/director.rs`): every run
//! is one `BPF_PROG_TEST_RUN` with repeat 1 on the original packet
//! (received on `eth0`), and the kernel-reported durations are summed. Both
//! objects are loaded `LOADS` times (the x86 JIT places each load's code at
//! a random offset, which moves its cost by several ns); per load, program
//! and packet, the median of `BATCHES` batch means of `RUNS` runs each, and
//! a figure is the median over the loads. The redirect program, the
//! director and each object's floor are measured in interleaved batches so
//! that drift affects them alike. Before measuring, each packet's verdict,
//! output bytes and counter are checked (the director's verdict and bytes
//! against `proto::director::Model`; a mismatch aborts); afterwards, the
//! counters must show that every measured run took the expected path.
//! Needs root.
//!
//! `REDIRECT_BENCH_OBJECTS=label=path,...` adds other builds of the
//! module's object (the `redirect` file a build with the `bench` feature
//! leaves in the build script's `OUT_DIR`: it needs `bench_floor`),
//! measured beside this build's in the same interleaved batches: how a
//! change to the program is measured.

use std::io;
use std::net::{IpAddr, SocketAddrV4, TcpListener};
use std::sync::Mutex;
use std::time::Duration;

use aya::programs::Xdp;
use director_xdp::redirect::{Redirect, RedirectConfig};
use director_xdp::{BENCH_FLOOR_PROGRAM, Dataplane, REDIRECT_PROGRAM, load_xdp, xdp_program};
use lab_tests::pkt::{ACK, Macs, SYN, eth, gue, ipv4, tcp};
use lab_tests::redirect_lab::{
    CLIENT, DIRECTOR, Lab, LabSpec, ME, ME6, OTHER, VIP, XDP_PASS, XDP_TX, connect_from, ifindex,
    run_once, xdp_ctx,
};
use proto::config::Config;
use proto::director::Model;
use proto::maps::RedirectStat;

/// Loads of each object measured (see the module documentation).
const LOADS: usize = 8;
const BATCHES: usize = 9;
const RUNS: usize = 2000;

/// Targets of issue [10] point 1: the redirect module's cost above the
/// floor over the director's (matched IPv4 TCP), per kind of packet.
const TARGET_ESTABLISHED: f64 = 1.5;
const TARGET_FORWARDED: f64 = 3.0;

/// The director's MAC for the backends of `examples/director.json`, and
/// the client's (the director bench's).
const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const BACKEND_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];

const MACS: Macs = Macs {
    host: [0x02, 0, 0, 0, 0x02, 0x11],
    peer: [0x02, 0, 0, 0, 0x02, 0x12],
    director: [0x02, 0, 0, 0, 0x02, 0x01],
};
const VIP_PORT: u16 = 80;

/// The lab namespace's name while it exists, for the signal thread.
static LAB: Mutex<Option<String>> = Mutex::new(None);

/// Blocks SIGINT, SIGTERM and SIGHUP in every thread (threads started later
/// inherit the mask) and starts a thread that waits for them, removes the
/// lab namespace and exits: an interrupted benchmark leaves nothing behind.
fn remove_lab_on_signals() -> io::Result<()> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use;
    // pthread_sigmask only changes the calling thread's mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::other("pthread_sigmask failed"));
        }
        set
    };
    std::thread::spawn(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is a valid, initialised signal set; `sig` is live.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return;
        }
        // Taken while the namespace is being created: waits until its name
        // is known, so it is removed too.
        let name = LAB.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(name) = name {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", &name])
                .output();
        }
        eprintln!("redirect bench: interrupted (signal {sig}), lab namespace removed");
        std::process::exit(128 + sig);
    });
    Ok(())
}

/// The lab namespace (see the module documentation).
fn lab() -> io::Result<Lab> {
    let lab = Lab::new(&LabSpec {
        role: "rbench",
        peer_role: None,
        macs: &MACS,
        addrs: &[(IpAddr::V4(ME), 24), (IpAddr::V6(ME6), 64)],
        neighbours: &[IpAddr::V4(OTHER)],
    })?;
    lab.host
        .ip(&["addr", "add", "203.0.113.10/32", "dev", "lo"])?;
    lab.host.ip(&["addr", "add", "192.0.2.7/32", "dev", "lo"])?;
    Ok(lab)
}

fn config() -> RedirectConfig {
    let prefix = |s: &str| s.parse().expect("prefix literal");
    RedirectConfig {
        selves: vec![IpAddr::V4(ME), IpAddr::V6(ME6)],
        allow: vec![prefix("198.51.100.0/28"), prefix("2001:db8:1::/124")],
        netns_id: None,
    }
}

/// One packet measured: its frame, what the program must return and
/// output, and the counter it must bump (none: not GUE).
struct Case {
    name: &'static str,
    frame: Vec<u8>,
    verdict: u32,
    output: Vec<u8>,
    stat: Option<RedirectStat>,
    /// What the target calls it, and the most its cost above the floor may
    /// be, in the director's.
    target: Option<(&'static str, f64)>,
}

/// The four packets; `port` is the client port of the established
/// connection.
fn cases(port: u16) -> Vec<Case> {
    let syn = ipv4(CLIENT, VIP, 6, 61, &tcp(40000, VIP_PORT, SYN));
    let established = ipv4(CLIENT, VIP, 6, 61, &tcp(port, VIP_PORT, ACK));
    // Another client port: only the listener matches, which is no flow.
    let stranger = ipv4(CLIENT, VIP, 6, 61, &tcp(port ^ 1, VIP_PORT, ACK));
    let forward_gue = gue(0, &[OTHER.into()], &stranger);
    let not_gue = eth(
        MACS.host,
        MACS.director,
        0x0800,
        &ipv4(CLIENT, ME, 6, 64, &tcp(40000, 22, ACK)),
    );
    vec![
        Case {
            name: "GUE, inner SYN to the VIP",
            frame: MACS.gue_frame(DIRECTOR.into(), ME.into(), &gue(0, &[OTHER.into()], &syn)),
            verdict: XDP_PASS,
            output: MACS.stripped(&syn),
            stat: Some(RedirectStat::AcceptedSyn),
            target: None,
        },
        Case {
            name: "GUE, inner ACK of an established connection",
            frame: MACS.gue_frame(
                DIRECTOR.into(),
                ME.into(),
                &gue(0, &[OTHER.into()], &established),
            ),
            verdict: XDP_PASS,
            output: MACS.stripped(&established),
            stat: Some(RedirectStat::AcceptedEstablished),
            target: Some(("established", TARGET_ESTABLISHED)),
        },
        Case {
            name: "GUE, inner ACK of no local flow, another backend next",
            frame: MACS.gue_frame(DIRECTOR.into(), ME.into(), &forward_gue),
            verdict: XDP_TX,
            output: MACS.forwarded(&forward_gue, 0, ME.into(), OTHER.into()),
            stat: Some(RedirectStat::ForwardedToAlternate),
            target: Some(("forwarded", TARGET_FORWARDED)),
        },
        Case {
            name: "not GUE (IPv4 TCP to this host)",
            frame: not_gue.clone(),
            verdict: XDP_PASS,
            output: not_gue,
            stat: None,
            target: None,
        },
    ]
}

/// The director's packet: matched IPv4 TCP (a SYN from the client to the
/// VIP's port 80, table "web": to IPv4 backends, 2 hops), as the director
/// bench's first row.
fn director_frame() -> Vec<u8> {
    eth(
        DIRECTOR_MAC,
        CLIENT_MAC,
        0x0800,
        &ipv4(CLIENT, VIP, 6, 64, &tcp(40000, VIP_PORT, SYN)),
    )
}

/// `examples/director.json`.
fn director_config() -> io::Result<Config> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/director.json");
    let text = std::fs::read_to_string(path)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {path}: {e}")))?;
    Config::from_json(&text).map_err(|e| io::Error::other(format!("parsing {path}: {e}")))
}

/// Mean kernel-reported ns of one run of `prog` on `frame`; every run must
/// return `verdict`.
fn batch_mean(prog: &Xdp, frame: &[u8], ctx: &[u8], verdict: u32, out: &mut [u8]) -> f64 {
    let mut total = Duration::ZERO;
    for _ in 0..RUNS {
        let (d, v, _) = run_once(prog, frame, ctx, out);
        assert_eq!(v, verdict, "verdict changed while measuring");
        total += d;
    }
    total.as_nanos() as f64 / RUNS as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median, lowest and highest of `v`.
fn spread(v: Vec<f64>) -> Spread {
    let low = v.iter().copied().fold(f64::INFINITY, f64::min);
    let high = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Spread {
        median: median(v),
        low,
        high,
    }
}

/// A figure over the loads.
#[derive(Clone, Copy)]
struct Spread {
    median: f64,
    low: f64,
    high: f64,
}

fn verdict_name(v: u32) -> &'static str {
    match v {
        1 => "DROP",
        2 => "PASS",
        3 => "TX",
        _ => "other",
    }
}

/// Counter values, in `RedirectStat::ALL` order.
fn counters(module: &Redirect) -> Vec<u64> {
    module
        .stats()
        .expect("reading the counters")
        .into_iter()
        .map(|(_, n)| n)
        .collect()
}

/// What one case did to the counters between `before` and `after`, over
/// `runs` runs: must be `runs` in its counter (and `total`), 0 elsewhere.
fn check_counters(case: &Case, before: &[u64], after: &[u64], runs: u64) {
    for (i, stat) in RedirectStat::ALL.iter().enumerate() {
        let delta = after[i] - before[i];
        let want = match case.stat {
            Some(s) if s == *stat || *stat == RedirectStat::Total => runs,
            _ => 0,
        };
        assert_eq!(
            delta,
            want,
            "{}: counter {} moved by {delta}, expected {want}",
            case.name,
            stat.name()
        );
    }
}

/// A build of the redirect module's object: this build's (embedded), or
/// one named in `REDIRECT_BENCH_OBJECTS`.
struct Build {
    label: String,
    object: Option<Vec<u8>>,
}

/// This build's object, then those of `REDIRECT_BENCH_OBJECTS`.
fn builds() -> io::Result<Vec<Build>> {
    let mut builds = vec![Build {
        label: "this build".into(),
        object: None,
    }];
    let Ok(list) = std::env::var("REDIRECT_BENCH_OBJECTS") else {
        return Ok(builds);
    };
    for item in list.split(',').filter(|i| !i.is_empty()) {
        let (label, path) = item.split_once('=').ok_or_else(|| {
            io::Error::other(format!(
                "REDIRECT_BENCH_OBJECTS: {item:?} is not label=path"
            ))
        })?;
        let object = std::fs::read(path)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {path}: {e}")))?;
        builds.push(Build {
            label: label.into(),
            object: Some(object),
        });
    }
    Ok(builds)
}

/// One load of a redirect build, configured, with its floor loaded.
fn load_redirect(build: &Build) -> io::Result<Redirect> {
    let mut module = match &build.object {
        None => Redirect::load(),
        Some(object) => Redirect::load_object(object),
    }
    .map_err(|e| io::Error::other(format!("loading {} (root needed): {e:?}", build.label)))?;
    module
        .configure(&config())
        .map_err(|e| io::Error::other(format!("configuring {}: {e:?}", build.label)))?;
    load_xdp(module.ebpf_mut(), BENCH_FLOOR_PROGRAM)
        .map_err(|e| io::Error::other(format!("loading bench_floor: {e:?}")))?;
    Ok(module)
}

/// One load of the director, configured, with its floor loaded.
fn load_director(config: &Config) -> io::Result<Dataplane> {
    let mut dp =
        Dataplane::load().map_err(|e| io::Error::other(format!("loading the director: {e:?}")))?;
    dp.apply(config, &|_| Some(BACKEND_MAC))
        .map_err(|e| io::Error::other(format!("applying examples/director.json: {e:?}")))?;
    dp.load_program(BENCH_FLOOR_PROGRAM)
        .map_err(|e| io::Error::other(format!("loading the director's bench_floor: {e:?}")))?;
    Ok(dp)
}

/// The loaded XDP program `name` of `ebpf`.
fn xdp<'a>(ebpf: &'a aya::Ebpf, name: &str) -> io::Result<&'a Xdp> {
    xdp_program(ebpf, name).map_err(io::Error::other)
}

/// One program's figures over the loads, ns per run: the floor of its
/// object and the program above it.
struct Figures {
    floor: Spread,
    above: Spread,
}

/// Per load: the medians of the floor's and the program's batch means.
fn figures(per_load: &[[Vec<f64>; 2]]) -> Figures {
    let floors: Vec<f64> = per_load.iter().map(|[f, _]| median(f.clone())).collect();
    let above = per_load
        .iter()
        .map(|[f, p]| median(p.clone()) - median(f.clone()))
        .collect();
    Figures {
        floor: spread(floors),
        above: spread(above),
    }
}

/// What one run measured: per build and case, then the director.
struct Measured {
    builds: Vec<String>,
    cases: Vec<Case>,
    redirect: Vec<Vec<Figures>>,
    director: Figures,
}

/// Runs inside the lab namespace: loads, configures, checks, measures.
fn measure() -> io::Result<Measured> {
    let builds = builds()?;
    let director_config = director_config()?;
    let mut modules: Vec<Vec<Redirect>> = Vec::new();
    for build in &builds {
        modules.push(
            (0..LOADS)
                .map(|_| load_redirect(build))
                .collect::<io::Result<_>>()?,
        );
    }
    let directors: Vec<Dataplane> = (0..LOADS)
        .map(|_| load_director(&director_config))
        .collect::<io::Result<_>>()?;

    // A listener on the VIP and one accepted connection to it: the
    // established flow bpf_skc_lookup_tcp finds.
    let listener = TcpListener::bind(SocketAddrV4::new(VIP, VIP_PORT))?;
    let client = connect_from(
        SocketAddrV4::new(CLIENT, 0),
        SocketAddrV4::new(VIP, VIP_PORT),
    )?;
    let (_server, _) = listener.accept()?;
    let port = match client.local_addr()? {
        std::net::SocketAddr::V4(a) => a.port(),
        other => return Err(io::Error::other(format!("client bound to {other}"))),
    };

    let eth0 = ifindex("eth0")?;
    let cases = cases(port);
    let ctxs: Vec<[u8; 24]> = cases.iter().map(|c| xdp_ctx(&c.frame, eth0)).collect();
    let dframe = director_frame();
    let dctx = xdp_ctx(&dframe, eth0);
    let mut out = vec![0u8; 2048];

    // Each verdict, output and counter, before measuring anything.
    for (build, loads) in builds.iter().zip(&modules) {
        for module in loads {
            for (case, ctx) in cases.iter().zip(&ctxs) {
                let before = counters(module);
                let (_, verdict, len) = run_once(module.program(), &case.frame, ctx, &mut out);
                assert_eq!(
                    verdict_name(verdict),
                    verdict_name(case.verdict),
                    "{}, {}: wrong verdict",
                    build.label,
                    case.name
                );
                assert!(
                    out[..len] == case.output[..],
                    "{}, {}: wrong output\n got {:02x?}\nwant {:02x?}",
                    build.label,
                    case.name,
                    &out[..len],
                    case.output
                );
                check_counters(case, &before, &counters(module), 1);
            }
        }
    }
    let model = Model::new(&director_config, &|_| Some(BACKEND_MAC))
        .map_err(|e| io::Error::other(format!("modelling examples/director.json: {e}")))?;
    let want = model.process(&dframe);
    let dverdict = want.verdict.xdp_action();
    assert_eq!(dverdict, XDP_TX, "the director's packet is not matched");
    for dp in &directors {
        let (_, verdict, len) = run_once(dp.program(), &dframe, &dctx, &mut out);
        assert_eq!(verdict, dverdict, "director: wrong verdict");
        assert!(
            out[..len] == want.output[..],
            "director: wrong output\n got {:02x?}\nwant {:02x?}",
            &out[..len],
            want.output
        );
    }

    let before: Vec<Vec<Vec<u64>>> = modules
        .iter()
        .map(|loads| loads.iter().map(counters).collect())
        .collect();
    // Per build, load and case, and for the director per load: the floor's
    // and the program's batch means.
    let mut samples: Vec<Vec<Vec<[Vec<f64>; 2]>>> = builds
        .iter()
        .map(|_| {
            (0..LOADS)
                .map(|_| cases.iter().map(|_| Default::default()).collect())
                .collect()
        })
        .collect();
    let mut dsamples: Vec<[Vec<f64>; 2]> = (0..LOADS).map(|_| Default::default()).collect();
    for _ in 0..BATCHES {
        for l in 0..LOADS {
            for (b, loads) in modules.iter_mut().enumerate() {
                let ebpf = &*loads[l].ebpf_mut();
                let redirect = xdp(ebpf, REDIRECT_PROGRAM)?;
                let floor = xdp(ebpf, BENCH_FLOOR_PROGRAM)?;
                for (i, (case, ctx)) in cases.iter().zip(&ctxs).enumerate() {
                    let [f, p] = &mut samples[b][l][i];
                    f.push(batch_mean(floor, &case.frame, ctx, XDP_TX, &mut out));
                    p.push(batch_mean(
                        redirect,
                        &case.frame,
                        ctx,
                        case.verdict,
                        &mut out,
                    ));
                }
            }
            let ebpf = directors[l].ebpf();
            let [f, p] = &mut dsamples[l];
            f.push(batch_mean(
                xdp(ebpf, BENCH_FLOOR_PROGRAM)?,
                &dframe,
                &dctx,
                XDP_TX,
                &mut out,
            ));
            p.push(batch_mean(
                directors[l].program(),
                &dframe,
                &dctx,
                dverdict,
                &mut out,
            ));
        }
    }
    // Every measured run took its case's path.
    for (b, loads) in modules.iter().enumerate() {
        for (l, module) in loads.iter().enumerate() {
            let mut expected = before[b][l].clone();
            for case in &cases {
                for (i, stat) in RedirectStat::ALL.iter().enumerate() {
                    if case
                        .stat
                        .is_some_and(|s| s == *stat || *stat == RedirectStat::Total)
                    {
                        expected[i] += (BATCHES * RUNS) as u64;
                    }
                }
            }
            assert_eq!(
                expected,
                counters(module),
                "{}: the counters after measuring are not those of every run taking its \
                 expected path",
                builds[b].label
            );
        }
    }
    drop(client);

    let redirect = samples
        .iter()
        .map(|loads| {
            (0..cases.len())
                .map(|i| {
                    let per_load: Vec<[Vec<f64>; 2]> =
                        loads.iter().map(|cases| cases[i].clone()).collect();
                    figures(&per_load)
                })
                .collect()
        })
        .collect();
    Ok(Measured {
        builds: builds.into_iter().map(|b| b.label).collect(),
        cases,
        redirect,
        director: figures(&dsamples),
    })
}

fn main() {
    if let Err(e) = remove_lab_on_signals() {
        eprintln!("redirect bench: {e}");
        std::process::exit(1);
    }
    let ns = {
        let mut name = LAB.lock().unwrap_or_else(|e| e.into_inner());
        match lab() {
            Ok(lab) => {
                *name = Some(lab.host.name().to_string());
                lab
            }
            Err(e) => {
                eprintln!("redirect bench: building the lab namespace (root needed): {e}");
                std::process::exit(1);
            }
        }
    };
    let result = ns.host.run_in(measure);
    LAB.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(ns);
    let m = match result {
        Ok(m) => m,
        Err(e) => {
            eprintln!("redirect bench: {e}");
            std::process::exit(1);
        }
    };
    print_section(&m);
}

/// The Markdown section (see the module documentation).
fn print_section(m: &Measured) {
    let d = &m.director;
    println!("### Redirect module (`BPF_PROG_TEST_RUN`, repeat 1, original packet every run)\n");
    println!(
        "Measured from a thread inside a lab namespace (a listener on the VIP and one accepted \
         connection to it; the other backend in the neighbour table), beside the director's \
         matched IPv4 TCP packet (`examples/director.json`, to IPv4 backends, 2 hops) in the \
         same run. The module's object and the director's are each loaded {LOADS} times, each \
         load with its own maps and JIT image; per load, program and packet: the median of \
         {BATCHES} batch means of {RUNS} runs, kernel-reported ns per run, all interleaved. \
         \"Above floor\" subtracts the floor (`bench_floor`, `XDP_TX`) of the same object, load \
         and packet; each figure is the median over the loads, and the range column gives the \
         lowest and highest load. Outer IPv4 from an allowed director, inner IPv4 TCP; maps as \
         `redirect-xdp --self 198.51.100.11 --self 2001:db8:1::11 --allow 198.51.100.0/28 \
         2001:db8:1::/124` writes them.\n"
    );
    println!(
        "| packet | verdict | floor (`XDP_TX`) | redirect above floor | lowest to highest load | \
         over the director's | target | holds |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    let mut verdicts = Vec::new();
    for (case, f) in m.cases.iter().zip(&m.redirect[0]) {
        let verdict = match case.stat {
            Some(stat) => format!("{} (`{}`)", verdict_name(case.verdict), stat.name()),
            None => format!("{} (uncounted)", verdict_name(case.verdict)),
        };
        let ratio = f.above.median / d.above.median;
        let (target, holds) = match case.target {
            Some((label, t)) => {
                let holds = if ratio <= t { "yes" } else { "no" };
                let verdict = if ratio <= t { "holds" } else { "does not hold" };
                verdicts.push(format!("{label} {ratio:.2}x, {verdict}"));
                (format!("<= {t:.1}x"), holds)
            }
            None => ("-".into(), "-"),
        };
        println!(
            "| {} | {verdict} | {:.1} | {:.1} | {:.1} to {:.1} | {ratio:.2}x | {target} | {holds} |",
            case.name, f.floor.median, f.above.median, f.above.low, f.above.high
        );
    }
    println!(
        "\nThe director in the same run: matched IPv4 TCP {:.1} ns above its floor of {:.1} \
         (loads {:.1} to {:.1}). \"Over the director's\" is the module's figure over that one. \
         Targets (issue [10] point 1): an established flow's packet at most 1.5 times the \
         director's cost above the floor, a forwarded one at most 3 times. Here: {}.",
        d.above.median,
        d.floor.median,
        d.above.low,
        d.above.high,
        verdicts.join("; ")
    );
    if m.builds.len() > 1 {
        println!(
            "\nBuilds of the module measured in this run, in the same interleaved batches \
             (above floor, the median over loads and the lowest to highest load; then over the \
             director's):\n"
        );
        let header: Vec<String> = m.builds.iter().map(|b| format!("`{b}`")).collect();
        println!("| packet | {} |", header.join(" | "));
        println!("|---|{}", "---:|".repeat(m.builds.len()));
        for (i, case) in m.cases.iter().enumerate() {
            let cells: Vec<String> = m
                .redirect
                .iter()
                .map(|b| {
                    let a = b[i].above;
                    format!(
                        "{:.1} ({:.1} to {:.1}), {:.2}x",
                        a.median,
                        a.low,
                        a.high,
                        a.median / d.above.median
                    )
                })
                .collect();
            println!("| {} | {} |", case.name, cells.join(" | "));
        }
    }
}
