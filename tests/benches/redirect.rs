//! Redirect-module benchmark: ns per packet of the backend-side XDP
//! program for four kinds of packet, beside the floor (`bench_floor`,
//! `return XDP_TX`) measured the same way in the same run. Prints a
//! Markdown section for `docs/benchmarks.md` (see `make bench`).
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
//! 2001:db8:1::11 --allow 198.51.100.0/28 2001:db8:1::/124` writes them.
//!
//! Method (the director's, `director-xdp/benches/director.rs`, but with one
//! load of the object, so a figure carries the few ns by which the JIT's
//! placement of the code moves it): every run is one `BPF_PROG_TEST_RUN`
//! with repeat 1 on the original packet (received on `eth0`), and the
//! kernel-reported durations are summed. A figure is the median of
//! `BATCHES` batch means of `RUNS` runs each; the redirect program and the
//! floor are measured in interleaved batches so that drift affects them
//! alike. Before measuring, each packet's verdict, output bytes and
//! counter are checked (a mismatch aborts); afterwards, the counters must
//! show that every measured run took the expected path. Needs root.

use std::io;
use std::net::{IpAddr, SocketAddrV4, TcpListener};
use std::sync::Mutex;
use std::time::Duration;

use aya::programs::Xdp;
use director_xdp::redirect::{Redirect, RedirectConfig};
use director_xdp::{BENCH_FLOOR_PROGRAM, REDIRECT_PROGRAM, load_xdp, xdp_program};
use lab_tests::pkt::{ACK, Macs, SYN, eth, gue, ipv4, tcp};
use lab_tests::redirect_lab::{
    CLIENT, DIRECTOR, Lab, LabSpec, ME, ME6, OTHER, VIP, XDP_PASS, XDP_TX, connect_from, ifindex,
    run_once, try_load, xdp_ctx,
};
use proto::maps::RedirectStat;

const BATCHES: usize = 31;
const RUNS: usize = 2000;

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
        },
        Case {
            name: "GUE, inner ACK of no local flow, another backend next",
            frame: MACS.gue_frame(DIRECTOR.into(), ME.into(), &forward_gue),
            verdict: XDP_TX,
            output: MACS.forwarded(&forward_gue, 0, ME.into(), OTHER.into()),
            stat: Some(RedirectStat::ForwardedToAlternate),
        },
        Case {
            name: "not GUE (IPv4 TCP to this host)",
            frame: not_gue.clone(),
            verdict: XDP_PASS,
            output: not_gue,
            stat: None,
        },
    ]
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

/// One case's figures: medians of the batch means, ns per run.
struct Figures {
    name: &'static str,
    verdict: u32,
    stat: Option<RedirectStat>,
    floor: f64,
    redirect: f64,
}

/// Runs inside the lab namespace: loads, configures, checks, measures.
fn measure() -> io::Result<Vec<Figures>> {
    let mut module = try_load(&config())?;
    load_xdp(module.ebpf_mut(), BENCH_FLOOR_PROGRAM)
        .map_err(|e| io::Error::other(format!("loading bench_floor: {e:?}")))?;

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
    let mut out = vec![0u8; 2048];

    // Each verdict, output and counter, before measuring anything.
    for (case, ctx) in cases.iter().zip(&ctxs) {
        let before = counters(&module);
        let (_, verdict, len) = run_once(module.program(), &case.frame, ctx, &mut out);
        assert_eq!(
            verdict_name(verdict),
            verdict_name(case.verdict),
            "{}: wrong verdict",
            case.name
        );
        assert!(
            out[..len] == case.output[..],
            "{}: wrong output\n got {:02x?}\nwant {:02x?}",
            case.name,
            &out[..len],
            case.output
        );
        check_counters(case, &before, &counters(&module), 1);
    }

    let before = counters(&module);
    // Per case: floor, redirect (batch means).
    let mut samples: Vec<[Vec<f64>; 2]> = cases.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    {
        let ebpf = &*module.ebpf_mut();
        let redirect = xdp_program(ebpf, REDIRECT_PROGRAM).map_err(io::Error::other)?;
        let floor = xdp_program(ebpf, BENCH_FLOOR_PROGRAM).map_err(io::Error::other)?;
        for _ in 0..BATCHES {
            for (i, (case, ctx)) in cases.iter().zip(&ctxs).enumerate() {
                samples[i][0].push(batch_mean(floor, &case.frame, ctx, XDP_TX, &mut out));
                samples[i][1].push(batch_mean(
                    redirect,
                    &case.frame,
                    ctx,
                    case.verdict,
                    &mut out,
                ));
            }
        }
    }
    // Every measured run took its case's path.
    let after = counters(&module);
    let mut running = before;
    for case in &cases {
        let mut expected = running.clone();
        for (i, stat) in RedirectStat::ALL.iter().enumerate() {
            if case
                .stat
                .is_some_and(|s| s == *stat || *stat == RedirectStat::Total)
            {
                expected[i] += (BATCHES * RUNS) as u64;
            }
        }
        running = expected;
    }
    assert_eq!(
        running, after,
        "the counters after measuring are not those of every run taking its expected path"
    );
    drop(client);

    Ok(cases
        .iter()
        .zip(samples)
        .map(|(case, [f, r])| Figures {
            name: case.name,
            verdict: case.verdict,
            stat: case.stat,
            floor: median(f),
            redirect: median(r),
        })
        .collect())
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
    let figures = match result {
        Ok(f) => f,
        Err(e) => {
            eprintln!("redirect bench: {e}");
            std::process::exit(1);
        }
    };

    println!("### Redirect module (`BPF_PROG_TEST_RUN`, repeat 1, original packet every run)\n");
    println!(
        "Median of {BATCHES} batch means of {RUNS} runs, kernel-reported ns per run, from a \
         thread inside a lab namespace (a listener on the VIP and one accepted connection to it; \
         the other backend in the neighbour table). \"Above floor\" subtracts the floor \
         (`bench_floor`) measured on the same packet the same way, in interleaved batches. Outer \
         IPv4 from an allowed director, inner IPv4 TCP; maps as `redirect-xdp --self \
         198.51.100.11 --self 2001:db8:1::11 --allow 198.51.100.0/28 2001:db8:1::/124` writes \
         them.\n"
    );
    println!("| packet | verdict | floor (`XDP_TX`) | redirect above floor |");
    println!("|---|---|---:|---:|");
    for f in &figures {
        let verdict = match f.stat {
            Some(stat) => format!("{} (`{}`)", verdict_name(f.verdict), stat.name()),
            None => format!("{} (uncounted)", verdict_name(f.verdict)),
        };
        println!(
            "| {} | {verdict} | {:.1} | {:.1} |",
            f.name,
            f.floor,
            f.redirect - f.floor
        );
    }
}
