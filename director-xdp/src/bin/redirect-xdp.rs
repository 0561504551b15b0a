//! `redirect-xdp`: the backend's agent. Loads the redirect module, writes
//! its maps, attaches it to the interface GUE arrives on, then waits for:
//!
//! - SIGUSR1 (or every `--stats SECS`): print the counters to stdout, one
//!   line `counters: total N accepted_syn N ...`;
//! - SIGINT or SIGTERM: detach, print the counters, exit 0.
//!
//! A binary of its own, so that a backend installs what it runs and nothing
//! of the director (its program, its daemon, its HTTP server).
//!
//! Exit status: 0 on success, 2 for usage errors (a bad flag, an address
//! that cannot be this host's, a missing interface), 1 for runtime errors
//! (loading or attaching the module).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use aya::programs::XdpMode;
use clap::Parser as _;
use director_xdp::redirect::{self, Redirect, RedirectConfig};
use proto::config::Prefix;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

/// Exit status of runtime errors.
const EXIT_RUNTIME: u8 = 1;
/// Exit status of usage errors, as clap uses for its own.
const EXIT_USAGE: u8 = 2;

/// Why the agent failed: the error to print and the exit status.
#[derive(Debug)]
struct Failure {
    status: u8,
    error: anyhow::Error,
}

impl Failure {
    fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            status: EXIT_USAGE,
            error: error.into(),
        }
    }

    fn runtime(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            status: EXIT_RUNTIME,
            error: error.into(),
        }
    }
}

fn main() -> ExitCode {
    let args = RedirectArgs::parse();
    director_xdp::init_logging();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { status, error }) => {
            tracing::error!("{error:#}");
            ExitCode::from(status)
        }
    }
}

/// The backend-side redirect module: attach it to the interface GUE
/// arrives on, and accept (decapsulate for the local stack) or forward
/// (second chance) every GUE packet from an allowed source (a director, or
/// another backend passing a packet on).
///
/// SIGUSR1 prints the counters (one `counters: ...` line on stdout); SIGINT
/// and SIGTERM detach, print them and exit 0. Logs go to stderr; RUST_LOG
/// sets the filter (default: info). Needs root. Host setup (VIP on lo,
/// rp_filter, forwarding): docs/backend.md.
#[derive(Debug, clap::Parser)]
#[command(
    name = "redirect-xdp",
    version,
    after_help = "Exit status: 0 on success, 1 on a runtime error, 2 on a usage error."
)]
struct RedirectArgs {
    /// Interface the GUE packets arrive on.
    #[arg(long, value_name = "IF")]
    iface: String,
    /// An address of this host (repeatable; one per family at least for
    /// forwarding in that family). The first of each family is the outer
    /// source of forwarded packets; all count as "the next hop is this host".
    #[arg(long = "self", value_name = "ADDR", required = true)]
    selves: Vec<IpAddr>,
    /// Source prefixes GUE is accepted from (one or more): the directors'
    /// and every other backend's, because a backend that forwards a
    /// second-chance packet sends it from its own address. Nothing else:
    /// GUE carries a client address that the local stack believes.
    #[arg(long, value_name = "PREFIX", required = true, num_args = 1..)]
    allow: Vec<Prefix>,
    /// Also look sockets up in this network namespace (a /run/netns/NAME
    /// path), for servers that run in a container's namespace.
    #[arg(long, value_name = "PATH")]
    netns: Option<PathBuf>,
    /// Print the counters every SECS seconds as well as on SIGUSR1.
    #[arg(long, value_name = "SECS")]
    stats: Option<u64>,
}

/// Runs the agent until SIGINT or SIGTERM.
fn run(args: &RedirectArgs) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::runtime)?;
    runtime.block_on(run_async(args))
}

fn signal_stream(kind: SignalKind) -> Result<tokio::signal::unix::Signal, Failure> {
    signal(kind)
        .with_context(|| format!("installing a handler for signal {}", kind.as_raw_value()))
        .map_err(Failure::runtime)
}

async fn run_async(args: &RedirectArgs) -> Result<(), Failure> {
    let mut usr1 = signal_stream(SignalKind::user_defined1())?;
    let mut int = signal_stream(SignalKind::interrupt())?;
    let mut term = signal_stream(SignalKind::terminate())?;

    let netns_id = match &args.netns {
        Some(path) => Some(
            redirect::netns_id(path)
                .with_context(|| {
                    format!("finding the nsid of network namespace {}", path.display())
                })
                .map_err(Failure::usage)?,
        ),
        None => None,
    };
    let config = RedirectConfig {
        selves: args.selves.clone(),
        allow: args.allow.clone(),
        netns_id,
    };
    redirect::check(&config).map_err(Failure::usage)?;
    redirect::check_on_host(&config.selves).map_err(Failure::usage)?;
    if let Some(p) = config.allow.iter().find(|p| p.len == 0) {
        warn!(
            "--allow {p} accepts GUE from any address: GUE carries a client address that the local stack believes; allow only the directors and the other backends"
        );
    }
    let ifindex = director_xdp::interface_index(&args.iface)
        .with_context(|| format!("looking up interface {} (--iface)", args.iface))
        .map_err(Failure::usage)?;
    warn_forwarding(&args.iface);

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        warn!("not root: loading the module needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN");
    }
    let mut module = Redirect::load().map_err(Failure::runtime)?;
    module
        .configure(&config)
        .context("writing the redirect module's maps")
        .map_err(Failure::runtime)?;
    let program = module.program_mut();
    let (link, mode) = match program.attach(ifindex, XdpMode::Driver) {
        Ok(link) => (link, "native"),
        Err(native) => {
            warn!(
                "native XDP on {} failed ({:#}); falling back to generic (SKB) mode",
                args.iface,
                anyhow::Error::from(native)
            );
            let link = program
                .attach(ifindex, XdpMode::Skb)
                .with_context(|| format!("attaching the redirect module to {}", args.iface))
                .map_err(Failure::runtime)?;
            (link, "generic")
        }
    };
    let allow: Vec<String> = args.allow.iter().map(ToString::to_string).collect();
    let selves: Vec<String> = args.selves.iter().map(ToString::to_string).collect();
    info!(
        "redirect attached to {} in {mode} mode; self {}; allow {}{}",
        args.iface,
        selves.join(" "),
        allow.join(" "),
        netns_id.map_or(String::new(), |id| format!(
            "; sockets also looked up in nsid {id}"
        ))
    );

    let period = Duration::from_secs(args.stats.unwrap_or(3600).max(1));
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    let signal_name = loop {
        tokio::select! {
            _ = usr1.recv() => print_counters(&module),
            _ = tick.tick(), if args.stats.is_some() => print_counters(&module),
            _ = int.recv() => break "SIGINT",
            _ = term.recv() => break "SIGTERM",
        }
    };
    info!("{signal_name}: detaching from {}", args.iface);
    module
        .program_mut()
        .detach(link)
        .with_context(|| format!("detaching the redirect module from {}", args.iface))
        .map_err(Failure::runtime)?;
    print_counters(&module);
    info!("redirect detached from {}; exiting", args.iface);
    Ok(())
}

fn print_counters(module: &Redirect) {
    match module.stats() {
        Ok(stats) => {
            let line: Vec<String> = stats
                .iter()
                .map(|(s, n)| format!("{} {n}", s.name()))
                .collect();
            println!("counters: {}", line.join(" "));
        }
        Err(e) => warn!("reading the counters: {:#}", anyhow::Error::from(e)),
    }
}

/// `bpf_fib_lookup` (forwarding to the next hop) answers only when
/// forwarding is on for the interface: say so at start.
fn warn_forwarding(iface: &str) {
    for (family, path) in [
        (
            "IPv4",
            format!("/proc/sys/net/ipv4/conf/{iface}/forwarding"),
        ),
        (
            "IPv6",
            format!("/proc/sys/net/ipv6/conf/{iface}/forwarding"),
        ),
    ] {
        if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "0") {
            warn!(
                "{path} is 0: {family} packets for another backend (second chance) cannot be forwarded and are dropped (forward_failed); see docs/backend.md"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_says_allow_must_cover_the_other_backends() {
        // Both the summary (-h) and the full help (--help): an operator
        // who allows only the directors loses every second chance.
        for flag in ["-h", "--help"] {
            let help = RedirectArgs::try_parse_from(["redirect-xdp", flag])
                .expect_err("help is printed, not parsed");
            assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
            let text = help.to_string();
            let allow = text
                .lines()
                .skip_while(|l| !l.trim_start().starts_with("--allow"))
                .take_while(|l| !l.trim_start().starts_with("--netns"))
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                allow.contains("the directors' and every other backend's, because a backend that forwards a second-chance packet sends it from its own address"),
                "{flag}: {text}"
            );
        }
    }
}
