//! Throughput benchmark: packets per second through the ATTACHED director
//! on a veth pair, beside the floor (`bench_floor`, `return XDP_TX`)
//! attached on the same path, IPv4 and IPv6. Prints a Markdown section for
//! `docs/benchmarks.md`; with `BENCH_DATA` set, also writes
//! `throughput.tsv` there (see `make bench`).
//!
//! The lab: two namespaces, `gen` and `dut` (`glbt-<role>-<pid>-<n>`,
//! removed on every exit path), joined by a veth pair. In `dut` the director
//! object is loaded with `examples/director.json` applied, and either the
//! director or the floor is attached to its end in native (driver) mode.
//! In `gen` a thread of ours sends frames with `sendmmsg` on an AF_PACKET
//! socket (qdisc bypassed), 64 frames a call, cycling over 256 client ports
//! (256 flows) to the example's VIP (IPv4 TCP port 80, or IPv6 TCP port
//! 443); `gen`'s end runs the pass-through program, so the frames the
//! program sends back with `XDP_TX` are received there and counted by the
//! veth (its `rx_packets`): the figure is what came out, not what was sent.
//!
//! The generator is paced to `RATE` for every program: the same offered
//! load, since a NAPI poll's batches, and so its cost per packet, grow
//! with the load. Each veth end runs its NAPI in a kernel thread of its
//! own (threaded NAPI): `dut`'s, which runs the program under test, is pinned to one CPU,
//! and the generator and `gen`'s NAPI thread to the other. Packets per
//! second per core = packets out / CPU seconds of `dut`'s NAPI thread in
//! the same window (from /proc). Programs and families are measured in interleaved
//! windows. Needs root and two CPUs.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aya::programs::XdpMode;
use director_xdp::{BENCH_FLOOR_PROGRAM, DIRECTOR_PROGRAM, Dataplane};
use lab_tests::pkt::{SYN, eth, ipv4, ipv6, set_tcp4_checksum, set_tcp6_checksum, tcp};
use lab_tests::{Netns, XdpPass, veth};
use proto::config::Config;

const ROUNDS: usize = 5;
const WINDOW: Duration = Duration::from_secs(2);
const SETTLE: Duration = Duration::from_millis(400);
const FLOWS: u16 = 256;
const BATCH: usize = 64;
/// The generator's pace, frames per second: the same offered load for
/// every program (a NAPI poll's batch, and so its cost per packet, grows
/// with the load), below what the generator sustains on this host.
const RATE: f64 = 300_000.0;

const GEN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x07, 0x01];
const DUT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x07, 0x02];

fn mac_text(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

/// The frames of one family, one per flow.
fn frames(v6: bool) -> Vec<Vec<u8>> {
    (0..FLOWS)
        .map(|i| {
            let sport = 40000 + i;
            if v6 {
                let (src, dst): (Ipv6Addr, Ipv6Addr) = (
                    "2001:db8:1::7".parse().expect("literal"),
                    "2001:db8:10::10".parse().expect("literal"),
                );
                let mut seg = tcp(sport, 443, SYN);
                set_tcp6_checksum(src, dst, &mut seg);
                eth(DUT_MAC, GEN_MAC, 0x86dd, &ipv6(src, dst, 6, 64, &seg))
            } else {
                let (src, dst) = (Ipv4Addr::new(192, 0, 2, 7), Ipv4Addr::new(203, 0, 113, 10));
                let mut seg = tcp(sport, 80, SYN);
                set_tcp4_checksum(src, dst, &mut seg);
                let mut f = eth(DUT_MAC, GEN_MAC, 0x0800, &ipv4(src, dst, 6, 64, &seg));
                f.resize(60, 0);
                f
            }
        })
        .collect()
}

/// Pins thread (or process) `tid` to `cpu`.
fn pin(tid: libc::pid_t, cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data, set up by CPU_ZERO/CPU_SET; the call
    // reads it only.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel threads running `ifname`'s NAPI (`napi/<ifname>-<id>`).
fn napi_threads(ifname: &str) -> Vec<libc::pid_t> {
    let prefix = format!("napi/{ifname}-");
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
                .filter(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim_end().starts_with(&prefix))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// CPU time (user + system) of `tid`, in clock ticks.
fn cpu_ticks(tid: libc::pid_t) -> u64 {
    std::fs::read_to_string(format!("/proc/{tid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s[s.rfind(')')? + 1..].to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            // After the command: state is field 3; utime 14, stime 15.
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// A counter of `ifname`'s `statistics/` in sysfs.
fn if_stat(ns: &Netns, ifname: &str, stat: &str) -> io::Result<u64> {
    let out = ns.exec(
        "cat",
        &[&format!("/sys/class/net/{ifname}/statistics/{stat}")],
    )?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(io::Error::other)
}

/// The generator: sends the frames of the family `family` says (4 or 6;
/// 0 pauses) until `stop`; `sent` counts frames the kernel took.
fn generate(
    ifname: String,
    family: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> io::Result<()> {
    pin(0, 0)?;
    let c_name = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
    // SAFETY: plain libc calls on a socket this function owns; the
    // structures passed live across each call.
    unsafe {
        let ifindex = libc::if_nametoindex(c_name.as_ptr());
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd);
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_protocol = 0;
        if libc::bind(
            raw,
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        let sets = [frames(false), frames(true)];
        let mut iovs: Vec<Vec<libc::iovec>> = sets
            .iter()
            .map(|set| {
                set.iter()
                    .map(|f| libc::iovec {
                        iov_base: f.as_ptr() as *mut libc::c_void,
                        iov_len: f.len(),
                    })
                    .collect()
            })
            .collect();
        let mut next = 0usize;
        // When the current family started, and frames sent since.
        let mut pace: Option<(Instant, u64)> = None;
        while !stop.load(Ordering::Relaxed) {
            let which = match family.load(Ordering::Relaxed) {
                4 => 0,
                6 => 1,
                _ => {
                    pace = None;
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            };
            let (since, done) = pace.get_or_insert((Instant::now(), 0));
            if *done as f64 > since.elapsed().as_secs_f64() * RATE {
                std::thread::sleep(Duration::from_micros(20));
                continue;
            }
            let iov = &mut iovs[which];
            let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
                .map(|k| {
                    let mut m: libc::mmsghdr = std::mem::zeroed();
                    m.msg_hdr.msg_iov = &mut iov[(next + k) % FLOWS as usize];
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            next = (next + BATCH) % FLOWS as usize;
            let n = libc::sendmmsg(raw, msgs.as_mut_ptr(), BATCH as u32, 0);
            if n > 0 {
                sent.fetch_add(n as u64, Ordering::Relaxed);
                *done += n as u64;
            }
        }
    }
    Ok(())
}

/// What the `dut` thread is told: attach this program (replacing the one
/// attached), or stop.
enum Cmd {
    Attach(&'static str),
    Stop,
}

/// The `dut` side: loads the director object with the example config and
/// attaches programs on command; answers each with the result.
fn dut(ifname: String, cmds: mpsc::Receiver<Cmd>, done: mpsc::Sender<io::Result<()>>) {
    let setup = (|| -> io::Result<Dataplane> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/director.json"
        ))?;
        let config = Config::from_json(&text).map_err(io::Error::other)?;
        let mut dp = Dataplane::load().map_err(io::Error::other)?;
        dp.apply(&config, &|_| Some([0x02, 0, 0, 0, 0, 0x11]))
            .map_err(io::Error::other)?;
        dp.load_program(BENCH_FLOOR_PROGRAM)
            .map_err(io::Error::other)?;
        Ok(dp)
    })();
    let mut dp = match setup {
        Ok(dp) => {
            let _ = done.send(Ok(()));
            dp
        }
        Err(e) => {
            let _ = done.send(Err(e));
            return;
        }
    };
    let Ok(c_ifname) = std::ffi::CString::new(ifname) else {
        return;
    };
    let mut attached: Option<(&'static str, aya::programs::xdp::XdpLinkId)> = None;
    while let Ok(Cmd::Attach(name)) = cmds.recv() {
        let result = (|| -> io::Result<()> {
            if let Some((was, link)) = attached.take() {
                dp.load_program(was)
                    .map_err(io::Error::other)?
                    .detach(link)
                    .map_err(io::Error::other)?;
            }
            let prog = dp.load_program(name).map_err(io::Error::other)?;
            let link = prog
                .attach(c_ifname.as_c_str(), XdpMode::Driver)
                .map_err(io::Error::other)?;
            attached = Some((name, link));
            Ok(())
        })();
        let _ = done.send(result);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One measured window.
#[derive(Clone, Copy, Default)]
struct Window {
    /// Packets out per second.
    pps: f64,
    /// The same per CPU second of `dut`'s NAPI thread.
    per_core: f64,
    /// Busy share of that thread.
    busy: f64,
    /// Frames the generator had the kernel take, per second.
    offered: f64,
    /// Of those, the share the veth dropped on the way in (the program's
    /// ring full).
    lost_in: f64,
}

fn main() {
    if let Err(e) = lab_tests::clean_up_on_signals("throughput bench") {
        eprintln!("throughput bench: {e}");
        std::process::exit(1);
    }
    if let Err(e) = run() {
        eprintln!("throughput bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> io::Result<()> {
    let gen_ns = Netns::new("tgen")?;
    let dut_ns = Netns::new("tdut")?;
    let pid = std::process::id();
    // NAPI threads are named after the interface: names unique to this run.
    let (gen_if, dut_if) = (format!("tg{pid}"), format!("td{pid}"));
    veth(
        &gen_ns,
        &gen_if,
        &mac_text(GEN_MAC),
        &dut_ns,
        &dut_if,
        &mac_text(DUT_MAC),
    )?;
    // A veth has NAPI (and so a thread to make) only with GRO on or XDP
    // attached: GRO on keeps it across the program changes.
    for (ns, ifname) in [(&gen_ns, &gen_if), (&dut_ns, &dut_if)] {
        ns.exec("ethtool", &["-K", ifname, "gro", "on"])?;
        ns.exec(
            "sh",
            &["-c", &format!("echo 1 > /sys/class/net/{ifname}/threaded")],
        )?;
    }
    let _gen_xdp = XdpPass::attach(&gen_ns, &gen_if)?;

    let (cmd_tx, cmd_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let dut_name = dut_if.clone();
    let dut_thread = dut_ns.spawn_in(move || {
        dut(dut_name, cmd_rx, done_tx);
        Ok(())
    });
    done_rx
        .recv()
        .map_err(|_| io::Error::other("dut thread ended"))??;

    let family = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let generator = {
        let (ifname, family, stop, sent) =
            (gen_if.clone(), family.clone(), stop.clone(), sent.clone());
        gen_ns.spawn_in(move || generate(ifname, family, stop, sent))
    };

    let ticks_per_s = {
        // SAFETY: sysconf has no preconditions.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 { t as f64 } else { 100.0 }
    };
    let cases: [(&str, &'static str, u8); 4] = [
        ("floor (`bench_floor`)", BENCH_FLOOR_PROGRAM, 4),
        ("director", DIRECTOR_PROGRAM, 4),
        ("floor (`bench_floor`)", BENCH_FLOOR_PROGRAM, 6),
        ("director", DIRECTOR_PROGRAM, 6),
    ];
    let mut windows: Vec<Vec<Window>> = vec![Vec::new(); cases.len()];
    let mut measure = || -> io::Result<()> {
        for _ in 0..ROUNDS {
            for (c, &(_, prog, fam)) in cases.iter().enumerate() {
                family.store(0, Ordering::Relaxed);
                cmd_tx
                    .send(Cmd::Attach(prog))
                    .map_err(|_| io::Error::other("dut thread ended"))?;
                done_rx
                    .recv()
                    .map_err(|_| io::Error::other("dut thread ended"))??;
                family.store(fam, Ordering::Relaxed);
                std::thread::sleep(SETTLE);
                // Attaching may restart the NAPI threads: pin them again.
                let dut_threads = napi_threads(&dut_if);
                if dut_threads.is_empty() {
                    return Err(io::Error::other(format!(
                        "no NAPI thread for {dut_if}: threaded NAPI unavailable on veth here"
                    )));
                }
                for t in &dut_threads {
                    pin(*t, 1)?;
                }
                for t in napi_threads(&gen_if) {
                    pin(t, 0)?;
                }
                std::thread::sleep(Duration::from_millis(100));
                let t0 = Instant::now();
                let rx0 = if_stat(&gen_ns, &gen_if, "rx_packets")?;
                let drop0 = if_stat(&gen_ns, &gen_if, "tx_dropped")?;
                let cpu0: u64 = dut_threads.iter().map(|t| cpu_ticks(*t)).sum();
                let sent0 = sent.load(Ordering::Relaxed);
                std::thread::sleep(WINDOW);
                let rx1 = if_stat(&gen_ns, &gen_if, "rx_packets")?;
                let drop1 = if_stat(&gen_ns, &gen_if, "tx_dropped")?;
                let cpu1: u64 = dut_threads.iter().map(|t| cpu_ticks(*t)).sum();
                let sent1 = sent.load(Ordering::Relaxed);
                let secs = t0.elapsed().as_secs_f64();
                let out = (rx1 - rx0) as f64;
                let cpu = (cpu1 - cpu0) as f64 / ticks_per_s;
                windows[c].push(Window {
                    pps: out / secs,
                    per_core: if cpu > 0.0 { out / cpu } else { 0.0 },
                    busy: cpu / secs,
                    offered: (sent1 - sent0) as f64 / secs,
                    lost_in: if sent1 > sent0 {
                        (drop1 - drop0) as f64 / (sent1 - sent0) as f64
                    } else {
                        0.0
                    },
                });
            }
        }
        Ok(())
    };
    let result = measure();
    stop.store(true, Ordering::Relaxed);
    let _ = cmd_tx.send(Cmd::Stop);
    let gen_result = generator
        .join()
        .map_err(|_| io::Error::other("generator panicked"))?;
    let _ = dut_thread.join();
    result?;
    gen_result?;

    println!("### Throughput through the attached director (veth, native XDP)\n");
    println!(
        "Packets per second out of a veth end with the director (`examples/director.json`) or \
         the floor (`bench_floor`, `XDP_TX`) ATTACHED in native mode, fed by our generator \
         (AF_PACKET, `sendmmsg` of {BATCH} frames, qdisc bypassed, paced to {:.0} kpps for every \
         program, since the cost per packet of a NAPI poll falls as its batches grow with the \
         load; {FLOWS} flows of TCP SYNs to the VIP, 60-byte IPv4 or 74-byte IPv6 frames) and counted where they come out (the \
         peer veth's `rx_packets`, which runs the pass-through program). The program's NAPI runs \
         in a kernel thread pinned to one CPU, the generator and the peer on the other; per \
         core = packets out per CPU second of that thread: what one core running the program \
         takes, the floor's being the path's own limit (veth, `XDP_TX`), which no program \
         exceeds. Median of {ROUNDS} interleaved windows of {} s each; the floor and the director share \
         every round. Out is below offered where a veth ring was full: on the way in (the \
         program's ring; \"lost in\", the generator's veth `tx_dropped`) or on the way back (the \
         peer's ring, whose NAPI shares the generator's CPU). Frames from a socket reach the \
         veth as socket buffers, converted for XDP before the program runs: that, not the \
         program, is most of the floor's cost per packet. The core is not saturated (busy below \
         100%): the pace set the rate, and the per-core figures are the ones to compare.\n",
        RATE / 1e3,
        WINDOW.as_secs()
    );
    println!(
        "| program | family | offered, Mpps | lost in | out, Mpps | out per core, Mpps | core busy | ns per packet on that core |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let mut tsv = String::from("program\tfamily\toffered_mpps\tout_mpps\tper_core_mpps\tbusy\n");
    for (c, &(name, _, fam)) in cases.iter().enumerate() {
        let w = &windows[c];
        let pick = |f: fn(&Window) -> f64| median(w.iter().map(f).collect());
        let (offered, lost_in, pps, core, busy) = (
            pick(|w| w.offered),
            pick(|w| w.lost_in),
            pick(|w| w.pps),
            pick(|w| w.per_core),
            pick(|w| w.busy),
        );
        println!(
            "| {name} | IPv{fam} | {:.3} | {:.0}% | {:.3} | {:.3} | {:.0}% | {:.0} |",
            offered / 1e6,
            lost_in * 100.0,
            pps / 1e6,
            core / 1e6,
            busy * 100.0,
            if core > 0.0 { 1e9 / core } else { 0.0 }
        );
        let short = if name.starts_with("floor") {
            "floor"
        } else {
            "director"
        };
        tsv.push_str(&format!(
            "{short}\tIPv{fam}\t{:.4}\t{:.4}\t{:.4}\t{busy:.3}\n",
            offered / 1e6,
            pps / 1e6,
            core / 1e6
        ));
    }
    // Per round, the director's ns per packet on its core minus the
    // floor's, from the two windows of that round: the spread says how
    // much of the difference is the host.
    let above = |floor: usize, dir: usize| {
        let d: Vec<f64> = (0..ROUNDS)
            .map(|r| 1e9 / windows[dir][r].per_core - 1e9 / windows[floor][r].per_core)
            .collect();
        let (lo, hi) = d
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        (median(d), lo, hi)
    };
    let (v4, lo4, hi4) = above(0, 1);
    let (v6, lo6, hi6) = above(2, 3);
    println!(
        "\nThe director's own cost on its core, attached (ns per packet on that core, director \
         minus floor, per round, the median and the range over rounds): IPv4 {v4:+.0} ns \
         ({lo4:+.0} to {hi4:+.0}), IPv6 {v6:+.0} ns ({lo6:+.0} to {hi6:+.0}). Where the range \
         spans zero the director's cost is within this host's noise on this path; the \
         detached figures above resolve it."
    );
    if let Some(dir) = std::env::var_os("BENCH_DATA") {
        std::fs::write(std::path::Path::new(&dir).join("throughput.tsv"), tsv)?;
    }
    Ok(())
}
