//! `director-xdp`: the director daemon (`run`) and the offline replay of a
//! capture through the real director program (`replay`).
//!
//! Exit status: 0 on success, 2 for usage and config errors (a bad command
//! line, an unreadable or refused config, an unreadable capture), 1 for
//! runtime errors (loading the program, attaching it, writing the output).

mod api;
mod change;
mod daemon;
mod pins;
mod server;
mod status;

use std::fs::File;
use std::io::{BufReader, BufWriter, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};
use aya::programs::{TestRun as _, TestRunOptions};
use clap::{Parser, Subcommand};
use director_ctl::files::AtomicFile;
use director_xdp::dataplane::Dataplane;
use director_xdp::pcap;
use proto::config::Config;

/// Exit status of runtime errors.
const EXIT_RUNTIME: u8 = 1;
/// Exit status of usage and config errors, as clap uses for usage errors.
const EXIT_USAGE: u8 = 2;

/// The GLB-style director: an XDP program that forwards packets to backends
/// chosen by a rendezvous-hashing table.
#[derive(Debug, Parser)]
#[command(
    name = "director-xdp",
    version,
    after_help = "Exit status: 0 on success, 1 on a runtime error, 2 on a usage or config error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load the director, attach it to `director.interface` and keep its
    /// tables and next-hop MACs up to date.
    ///
    /// Native XDP is tried first, then generic (SKB) mode with a warning.
    /// Backends' next-hop MACs come from the kernel's routes and neighbour
    /// table (of this network namespace) and follow their changes; a next
    /// hop without a neighbour entry is made to resolve by an empty UDP
    /// datagram to the backend's discard port (9), every 5 s until it
    /// answers, and meanwhile its packets go to `director.gateway_mac`.
    /// SIGHUP re-reads the config (a refused config changes nothing);
    /// SIGINT and SIGTERM detach, remove the pins and exit 0 (with
    /// --keep-on-exit: leave the program attached and pinned for a
    /// restart). The maps and the XDP link are pinned in `director.pin_dir`;
    /// a daemon started while they are pinned adopts them, so packets keep
    /// flowing across a restart or a crash. Logs go to stderr; RUST_LOG
    /// sets the filter (default: info). Needs root.
    Run(RunArgs),
    /// Run every packet of a capture through the director program with
    /// BPF_PROG_TEST_RUN and write what comes out.
    ///
    /// The input is a pcap or pcapng file of Ethernet frames (pcap in
    /// either byte order, micro- or nanosecond timestamps; pcapng with any
    /// number of sections and Ethernet interfaces); the output, classic
    /// pcap, has one packet per input packet, in order, with the same
    /// timestamps (microseconds): the encapsulated or passed bytes, or, for
    /// a dropped packet, the bytes as they came in. Prints one line per packet, numbered from 1 as
    /// Wireshark numbers frames, then a summary. Nothing is resolved: every
    /// backend gets `director.gateway_mac` as its next-hop MAC. There is no
    /// interface either: the path MTU is `director.mtu`, and without it
    /// nothing is too big. Captured bytes are what runs, so a VIP packet
    /// cut short by the capture's snap length is dropped as malformed. A
    /// frame longer than a test run gives an XDP program whole (about 3.5
    /// KB with 4 KB pages: captures taken with GRO hold longer ones) is not
    /// run: reported TOO-LONG, with a warning, and written as it came in.
    /// The output is written to a temporary file renamed over `--out` at
    /// the end, so a failed replay leaves it as it was; `--out` must be a
    /// regular file (or new), and neither input. Needs root (BPF); attaches
    /// nothing.
    Replay(ReplayArgs),
    /// Print the version.
    Version,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The director's config (GLB tables plus the `director` section).
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    /// On SIGINT or SIGTERM, leave the program attached and its maps and
    /// link pinned, for a restart (upgrade) to adopt; without it they are
    /// detached and unpinned.
    #[arg(long)]
    keep_on_exit: bool,
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// The director's config (GLB tables plus the `director` section).
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    /// Capture to replay (pcap or pcapng, Ethernet).
    #[arg(long = "in", value_name = "IN.pcap")]
    input: PathBuf,
    /// Where to write the packets that come out: a new file, or a regular
    /// file replaced at the end (written through if it is a symbolic link).
    #[arg(long = "out", value_name = "OUT.pcap")]
    output: PathBuf,
}

/// Why a command failed: the error to print and the exit status.
#[derive(Debug)]
pub(crate) struct Failure {
    status: u8,
    error: anyhow::Error,
}

impl Failure {
    /// A usage or config error (exit status 2).
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            status: EXIT_USAGE,
            error: error.into(),
        }
    }

    /// A runtime error (exit status 1).
    pub(crate) fn runtime(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            status: EXIT_RUNTIME,
            error: error.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    director_xdp::init_logging();
    let result = match cli.command {
        Command::Run(args) => daemon::run(&args.config, args.keep_on_exit),
        Command::Replay(args) => replay(&args),
        Command::Version => {
            println!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { status, error }) => {
            tracing::error!("{error:#}");
            ExitCode::from(status)
        }
    }
}

/// Reads and checks a config, logging its warnings.
pub(crate) fn load_config(path: &Path) -> anyhow::Result<Config> {
    load_config_text(path).map(|(c, _)| c)
}

/// [`load_config`], and the file's text.
pub(crate) fn load_config_text(path: &Path) -> anyhow::Result<(Config, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    let config =
        Config::from_json(&text).with_context(|| format!("checking config {}", path.display()))?;
    for warning in &config.warnings {
        tracing::warn!("config {}: {warning}", path.display());
    }
    Ok((config, text))
}

/// `XDP_*` verdicts, as in `enum xdp_action` (include/uapi/linux/bpf.h).
const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

/// Room for what the director puts in front of a packet: outer IPv6 (40),
/// UDP (8) and GUE with one IPv6 hop (24) need 72 bytes; 128 leaves margin.
const ENCAP_ROOM: usize = 128;
/// The kernel refuses to test-run XDP on less than an Ethernet header.
const ETH_HLEN: usize = 14;

/// What replay did with one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Pass,
    Tx,
    Drop,
    Aborted,
    Redirect,
    /// Not run: shorter than an Ethernet header, which test runs refuse.
    /// Written unchanged, as the director would pass it.
    Skip,
    /// Not run: longer than a test run gives an XDP program whole (the
    /// rest would go to fragments the director does not read, and it would
    /// drop what it sees as a cut packet). Written unchanged.
    TooLong,
}

impl Verdict {
    fn from_xdp(action: u32) -> Option<Verdict> {
        match action {
            XDP_ABORTED => Some(Verdict::Aborted),
            XDP_DROP => Some(Verdict::Drop),
            XDP_PASS => Some(Verdict::Pass),
            XDP_TX => Some(Verdict::Tx),
            XDP_REDIRECT => Some(Verdict::Redirect),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Tx => "TX",
            Verdict::Drop => "DROP",
            Verdict::Aborted => "ABORTED",
            Verdict::Redirect => "REDIRECT",
            Verdict::Skip => "SKIP",
            Verdict::TooLong => "TOO-LONG",
        }
    }
}

fn replay(args: &ReplayArgs) -> Result<(), Failure> {
    let config = load_config(&args.config).map_err(Failure::usage)?;
    let input = File::open(&args.input)
        .with_context(|| format!("opening capture {}", args.input.display()))
        .map_err(Failure::usage)?;
    let mut reader = pcap::Capture::open(BufReader::new(input))
        .with_context(|| format!("reading capture {}", args.input.display()))
        .map_err(Failure::usage)?;
    // Written to a temporary file beside --out and renamed over it at the
    // end: a replay that fails leaves --out as it was (and never deletes
    // it), and a device, FIFO or one of the inputs is refused now.
    let output = AtomicFile::create(&args.output, &[&args.input, &args.config]).map_err(|e| {
        let refused = e.is_refusal();
        let e = anyhow::Error::from(e).context("--out");
        if refused {
            Failure::usage(e)
        } else {
            Failure::runtime(e)
        }
    })?;
    if config.director.gateway_mac.is_none() {
        tracing::warn!(
            "config {} has no director.gateway_mac: replay resolves no neighbour, so every packet for a bind will be dropped (no MAC to send it to)",
            args.config.display()
        );
    }

    let mut dataplane = Dataplane::load()
        .context("loading the director program (needs root)")
        .map_err(Failure::runtime)?;
    let limit = whole_frame_limit(&mut dataplane).map_err(Failure::runtime)?;
    tracing::debug!("test runs give the director frames of up to {limit} bytes whole");
    // Replay resolves nothing: with no backend MAC the program falls back
    // to director.gateway_mac, the documented behaviour of an unresolved
    // neighbour.
    dataplane
        .apply(&config, &|_| None)
        .map_err(|e| daemon::apply_failure(e, &args.config))?;

    replay_packets(&dataplane, limit, &mut reader, output, args)
}

fn replay_packets(
    dataplane: &Dataplane,
    limit: usize,
    reader: &mut pcap::Capture<impl std::io::Read>,
    output: AtomicFile,
    args: &ReplayArgs,
) -> Result<(), Failure> {
    let mut writer = pcap::Writer::new(BufWriter::new(output))
        .with_context(|| format!("writing {}", args.output.display()))
        .map_err(Failure::runtime)?;
    let stdout = std::io::stdout();
    let mut report = stdout.lock();
    let mut counts = std::collections::BTreeMap::<Verdict, u64>::new();
    let mut index = 0u64;
    let mut cut_timestamps = false;
    while let Some(packet) = reader
        .next_packet()
        .with_context(|| format!("reading capture {}", args.input.display()))
        .map_err(Failure::usage)?
    {
        index += 1;
        if packet.timestamp.nanos % 1000 != 0 && !cut_timestamps {
            cut_timestamps = true;
            tracing::info!(
                "capture {} has timestamps finer than a microsecond (packet {index}); the output's are truncated to microseconds",
                args.input.display()
            );
        }
        let (verdict, out) = run_packet(dataplane, limit, &packet.data)
            .with_context(|| {
                format!(
                    "packet {index} ({} bytes) of {}",
                    packet.data.len(),
                    args.input.display()
                )
            })
            .map_err(Failure::runtime)?;
        let (bytes, line) = match verdict {
            Verdict::Tx => (out.as_slice(), describe_tx(&out)),
            Verdict::Pass => (out.as_slice(), String::new()),
            Verdict::Skip => (
                packet.data.as_slice(),
                " (not run: shorter than an Ethernet header)".to_string(),
            ),
            Verdict::TooLong => {
                if !counts.contains_key(&Verdict::TooLong) {
                    tracing::warn!(
                        "packet {index} of {} ({} bytes) is longer than the {limit} bytes a test run gives an XDP program whole: not run, written as it came in and reported TOO-LONG (and so is every later one; the summary counts them)",
                        args.input.display(),
                        packet.data.len()
                    );
                }
                (
                    packet.data.as_slice(),
                    format!(
                        " (not run: {} bytes, longer than the {limit} a test run takes)",
                        packet.data.len()
                    ),
                )
            }
            // Dropped (or aborted, redirected) packets are written as they
            // came in, so the output keeps one packet per input.
            Verdict::Drop | Verdict::Aborted | Verdict::Redirect => {
                (packet.data.as_slice(), String::new())
            }
        };
        // A packet the capture cut short stays short by as much.
        let cut = packet.orig_len.saturating_sub(packet.data.len() as u32);
        writer
            .write_packet(packet.timestamp, bytes.len() as u32 + cut, bytes)
            .with_context(|| format!("writing {}", args.output.display()))
            .map_err(Failure::runtime)?;
        writeln!(report, "{index} {}{line}", verdict.name())
            .context("writing the report to stdout")
            .map_err(Failure::runtime)?;
        *counts.entry(verdict).or_default() += 1;
    }
    writer
        .finish()
        .map_err(anyhow::Error::from)
        .and_then(|w| w.into_inner().map_err(|e| e.into_error().into()))
        .and_then(|f| f.commit().map_err(anyhow::Error::from))
        .with_context(|| format!("writing {}", args.output.display()))
        .map_err(Failure::runtime)?;
    let summary: Vec<String> = counts
        .iter()
        .map(|(v, n)| format!("{} {n}", v.name()))
        .collect();
    writeln!(
        report,
        "{index} packets: {}",
        if summary.is_empty() {
            "none".to_string()
        } else {
            summary.join(", ")
        }
    )
    .context("writing the report to stdout")
    .map_err(Failure::runtime)?;
    Ok(())
}

/// `struct xdp_md` (include/uapi/linux/bpf.h): data, data_end, data_meta,
/// ingress_ifindex, rx_queue_index, egress_ifindex.
const XDP_MD_LEN: usize = 24;

/// The longest frame that `BPF_PROG_TEST_RUN` gives an XDP program whole.
///
/// The kernel puts at most a page, less the headroom and the
/// `skb_shared_info` at its end, in the linear part (3,520 bytes with 4 KB
/// pages on x86-64) and the rest in fragments, up to `MAX_SKB_FRAGS` of
/// them; longer still, the test run fails. The director reads the linear
/// part only. The limit depends on the page size and the kernel's build,
/// so it is measured: the `pass` program runs on frames of growing length
/// with an `xdp_md` context, which the kernel writes back with the linear
/// part's end, and a binary search finds the longest whole one.
fn whole_frame_limit(dataplane: &mut Dataplane) -> anyhow::Result<usize> {
    let pass = dataplane
        .load_program(director_xdp::PASS_PROGRAM)
        .context("loading the pass program (to measure what a test run takes)")?;
    let frame = vec![0u8; pcap::MAX_CAPLEN as usize];
    let whole = |len: usize| -> bool {
        let mut ctx_in = [0u8; XDP_MD_LEN];
        ctx_in[4..8].copy_from_slice(&(len as u32).to_ne_bytes());
        let mut ctx_out = [0u8; XDP_MD_LEN];
        let run = pass.test_run(TestRunOptions {
            data_in: Some(&frame[..len]),
            ctx_in: Some(&ctx_in),
            ctx_out: Some(&mut ctx_out),
            ..Default::default()
        });
        let word = |at: usize| {
            u32::from_ne_bytes([
                ctx_out[at],
                ctx_out[at + 1],
                ctx_out[at + 2],
                ctx_out[at + 3],
            ])
        };
        run.is_ok_and(|r| r.return_value == XDP_PASS)
            && word(4).checked_sub(word(0)) == Some(len as u32)
    };
    let (mut lo, mut hi) = (ETH_HLEN, frame.len());
    if !whole(lo) {
        // A kernel that takes no context in XDP test runs: a page less the
        // headroom (256) and x86-64's skb_shared_info (320).
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let limit = page.saturating_sub(256 + 320).max(ETH_HLEN);
        tracing::debug!("the kernel takes no xdp_md context in test runs: assuming {limit} bytes");
        return Ok(limit);
    }
    if whole(hi) {
        return Ok(hi);
    }
    // Invariant: whole(lo), not whole(hi).
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if whole(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// Runs the director once on `frame`: the verdict and the frame as the
/// program left it.
fn run_packet(
    dataplane: &Dataplane,
    limit: usize,
    frame: &[u8],
) -> anyhow::Result<(Verdict, Vec<u8>)> {
    if frame.len() < ETH_HLEN {
        return Ok((Verdict::Skip, frame.to_vec()));
    }
    if frame.len() > limit {
        return Ok((Verdict::TooLong, frame.to_vec()));
    }
    let mut out = vec![0u8; frame.len() + ENCAP_ROOM];
    let result = dataplane
        .program()
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .context("BPF_PROG_TEST_RUN of the director program")?;
    let verdict = Verdict::from_xdp(result.return_value)
        .ok_or_else(|| anyhow!("unknown XDP verdict {}", result.return_value))?;
    out.truncate(result.data_size_out as usize);
    Ok((verdict, out))
}

/// ` VIP -> backend hops [...]` for a GUE frame, ` VIP -> backend ipip`
/// for an IP-in-IP one, or ` ICMP ...` for the error answering a packet
/// too big for the path MTU, read back from its bytes: what the director
/// actually wrote, not what it was meant to.
fn describe_tx(frame: &[u8]) -> String {
    match parse_tx_frame(frame) {
        Ok(TxFrame {
            backend,
            hops: Some(hops),
            inner,
        }) => {
            let hops: Vec<String> = hops.iter().map(ToString::to_string).collect();
            format!(" {inner} -> {backend} hops [{}]", hops.join(", "))
        }
        Ok(TxFrame {
            backend,
            hops: None,
            inner,
        }) => format!(" {inner} -> {backend} ipip"),
        Err(why) => describe_too_big(frame)
            .unwrap_or_else(|| format!(" (output is not a GUE or IP-in-IP packet: {why})")),
    }
}

/// ` ICMP frag-needed mtu M VIP -> client` (or `ICMPv6 packet-too-big`) for
/// the director's answer to a packet too big for the path MTU.
fn describe_too_big(frame: &[u8]) -> Option<String> {
    let at = if frame.get(12..14)? == [0x81, 0x00] {
        ETH_HLEN + 4
    } else {
        ETH_HLEN
    };
    let ip = frame.get(at..)?;
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(ip.get(at..at + 4)?.try_into().ok()?))
    };
    match ip.first()? >> 4 {
        4 if ip.get(9) == Some(&1) && ip.get(20..22) == Some(&[3, 4]) => {
            let (src, dst): ([u8; 4], [u8; 4]) = (
                ip.get(12..16)?.try_into().ok()?,
                ip.get(16..20)?.try_into().ok()?,
            );
            Some(format!(
                " ICMP frag-needed mtu {} {} -> {}",
                word(24)? & 0xffff,
                IpAddr::from(src),
                IpAddr::from(dst)
            ))
        }
        6 if ip.get(6) == Some(&58) && ip.get(40) == Some(&2) => {
            let (src, dst): ([u8; 16], [u8; 16]) = (
                ip.get(8..24)?.try_into().ok()?,
                ip.get(24..40)?.try_into().ok()?,
            );
            Some(format!(
                " ICMPv6 packet-too-big mtu {} {} -> {}",
                word(44)?,
                IpAddr::from(src),
                IpAddr::from(dst)
            ))
        }
        _ => None,
    }
}

/// An encapsulated frame, as far as the report goes.
#[derive(Debug)]
struct TxFrame {
    /// Outer destination: the primary backend.
    backend: IpAddr,
    /// GLB hops (the row's alternates); `None` for IP-in-IP.
    hops: Option<Vec<IpAddr>>,
    /// The inner packet's destination, e.g. `203.0.113.10:80/tcp`.
    inner: String,
}

fn parse_tx_frame(frame: &[u8]) -> Result<TxFrame, String> {
    let field = |at: usize, len: usize| {
        frame
            .get(at..at + len)
            .ok_or_else(|| format!("ends at {} bytes", frame.len()))
    };
    let be16 = |at: usize| field(at, 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let mut l3 = ETH_HLEN;
    let mut ethertype = be16(12)?;
    if ethertype == 0x8100 {
        ethertype = be16(16)?;
        l3 += 4;
    }
    // IP-in-IP carries IPv4 (4) or IPv6 (41) right after the outer header.
    let ipip = |protocol: u8| protocol == 4 || protocol == 41;
    let (backend, udp, protocol) = match ethertype {
        0x0800 => {
            let ihl = usize::from(field(l3, 1)?[0] & 0x0f) * 4;
            let dst: [u8; 4] = field(l3 + 16, 4)?.try_into().map_err(|_| "short")?;
            (IpAddr::from(dst), l3 + ihl, field(l3 + 9, 1)?[0])
        }
        0x86dd => {
            let dst: [u8; 16] = field(l3 + 24, 16)?.try_into().map_err(|_| "short")?;
            (IpAddr::from(dst), l3 + 40, field(l3 + 6, 1)?[0])
        }
        other => return Err(format!("outer EtherType {other:#06x}")),
    };
    if ipip(protocol) {
        return Ok(TxFrame {
            backend,
            hops: None,
            inner: describe_inner(frame.get(udp..).unwrap_or_default()),
        });
    }
    if protocol != 17 {
        return Err(format!("outer IP protocol {protocol} is not UDP"));
    }
    let port = be16(udp + 2)?;
    if port != proto::GUE_PORT {
        return Err(format!("UDP destination port {port}"));
    }
    let gue = frame.get(udp + 8..).unwrap_or_default();
    let packet = proto::wire::GuePacket::new_checked(gue).map_err(|e| e.to_string())?;
    let repr = proto::wire::GueRepr::parse(&packet).map_err(|e| e.to_string())?;
    Ok(TxFrame {
        backend,
        hops: Some(repr.hops.iter().collect()),
        inner: describe_inner(packet.payload()),
    })
}

/// The destination of an IP packet: `addr:port/proto` for unfragmented TCP
/// and UDP, `addr/proto` otherwise.
fn describe_inner(ip: &[u8]) -> String {
    let (dst, proto, l4, fragment) = match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 20 => {
            let dst: [u8; 4] = [ip[16], ip[17], ip[18], ip[19]];
            let frag = u16::from_be_bytes([ip[6], ip[7]]);
            (
                IpAddr::from(dst),
                ip[9],
                usize::from(ip[0] & 0x0f) * 4,
                frag & 0x3fff != 0,
            )
        }
        Some(6) if ip.len() >= 40 => {
            let mut dst = [0u8; 16];
            dst.copy_from_slice(&ip[24..40]);
            (IpAddr::from(dst), ip[6], 40, false)
        }
        _ => return "?".to_string(),
    };
    let name = match proto {
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        1 => "icmp".to_string(),
        58 => "icmpv6".to_string(),
        n => format!("proto {n}"),
    };
    let port = ip
        .get(l4 + 2..l4 + 4)
        .map(|b| u16::from_be_bytes([b[0], b[1]]));
    match port {
        Some(port) if (proto == 6 || proto == 17) && !fragment => {
            format!("{}/{name}", SocketAddr::new(dst, port))
        }
        _ if fragment => format!("{dst}/{name} fragment"),
        _ => format!("{dst}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses_the_documented_usage() {
        let cli = Cli::try_parse_from([
            "director-xdp",
            "replay",
            "--config",
            "c.json",
            "--in",
            "a.pcap",
            "--out",
            "b.pcap",
        ])
        .expect("valid command line");
        match cli.command {
            Command::Replay(a) => {
                assert_eq!(a.input, PathBuf::from("a.pcap"));
                assert_eq!(a.output, PathBuf::from("b.pcap"));
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(Cli::try_parse_from(["director-xdp", "run"]).is_err());
    }

    #[test]
    fn describes_an_encapsulated_frame_from_its_bytes() {
        let inner = {
            let mut ip = vec![0u8; 40];
            ip[0] = 0x45;
            ip[9] = 6;
            ip[16..20].copy_from_slice(&[203, 0, 113, 10]);
            ip[22..24].copy_from_slice(&80u16.to_be_bytes());
            ip
        };
        let repr = proto::wire::GueRepr {
            inner: proto::wire::InnerProto::Ipv4,
            next_hop: 0,
            hops: proto::wire::Hops::v4(&["198.51.100.14".parse().expect("address")])
                .expect("one hop"),
        };
        let mut frame = vec![0u8; 14 + 20 + 8];
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        frame[14] = 0x45;
        frame[14 + 9] = 17;
        frame[14 + 16..14 + 20].copy_from_slice(&[198, 51, 100, 12]);
        frame[34 + 2..34 + 4].copy_from_slice(&proto::GUE_PORT.to_be_bytes());
        let mut gue = vec![0u8; repr.buffer_len()];
        repr.emit(&mut proto::wire::GuePacket::new_unchecked(&mut gue[..]));
        frame.extend_from_slice(&gue);
        frame.extend_from_slice(&inner);
        assert_eq!(
            describe_tx(&frame),
            " 203.0.113.10:80/tcp -> 198.51.100.12 hops [198.51.100.14]"
        );
        // The same packet in IP-in-IP: the outer header, then the client's.
        let mut ipip = frame[..34].to_vec();
        ipip[14 + 9] = 4;
        ipip.extend_from_slice(&inner);
        assert_eq!(
            describe_tx(&ipip),
            " 203.0.113.10:80/tcp -> 198.51.100.12 ipip"
        );
        frame[34 + 3] ^= 1;
        assert!(describe_tx(&frame).contains("not a GUE or IP-in-IP packet: UDP destination port"));
        assert_eq!(
            describe_tx(&frame[..20]),
            " (output is not a GUE or IP-in-IP packet: ends at 20 bytes)"
        );
    }

    #[test]
    fn describes_the_answer_to_a_packet_too_big() {
        let mut frame = vec![0u8; 14 + 28];
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        frame[14] = 0x45;
        frame[14 + 9] = 1;
        frame[14 + 12..14 + 20].copy_from_slice(&[203, 0, 113, 10, 192, 0, 2, 100]);
        frame[34..36].copy_from_slice(&[3, 4]);
        frame[40..42].copy_from_slice(&1460u16.to_be_bytes());
        assert_eq!(
            describe_tx(&frame),
            " ICMP frag-needed mtu 1460 203.0.113.10 -> 192.0.2.100"
        );
        let mut frame6 = vec![0u8; 18 + 48];
        frame6[12..18].copy_from_slice(&[0x81, 0x00, 0x00, 0x2a, 0x86, 0xdd]);
        frame6[18] = 0x60;
        frame6[18 + 6] = 58;
        frame6[18 + 8..18 + 24].copy_from_slice(
            &"2001:db8:10::20"
                .parse::<std::net::Ipv6Addr>()
                .expect("address")
                .octets(),
        );
        frame6[18 + 24..18 + 40].copy_from_slice(
            &"2001:db8:1::100"
                .parse::<std::net::Ipv6Addr>()
                .expect("address")
                .octets(),
        );
        frame6[58] = 2;
        frame6[62..66].copy_from_slice(&1428u32.to_be_bytes());
        assert_eq!(
            describe_tx(&frame6),
            " ICMPv6 packet-too-big mtu 1428 2001:db8:10::20 -> 2001:db8:1::100"
        );
    }
}
