//! `director-xdp`: the director daemon. Only the command line exists so far.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The exit status of subcommands that are not written yet, distinct from
/// success (0) and from clap's usage errors, which also use 2 but print usage.
const NOT_IMPLEMENTED: u8 = 2;

/// The GLB-style director: an XDP program that forwards packets to backends
/// chosen by a rendezvous-hashing table.
#[derive(Debug, Parser)]
#[command(name = "director-xdp", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load the director, attach it to an interface and serve the HTTP API.
    Run,
    /// Run packets from a capture through the director with
    /// BPF_PROG_TEST_RUN and print the verdicts and output packets.
    Replay,
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run => not_implemented("run"),
        Command::Replay => not_implemented("replay"),
        Command::Version => {
            println!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

fn not_implemented(subcommand: &str) -> ExitCode {
    eprintln!("director-xdp {subcommand}: not implemented yet (issue [2])");
    ExitCode::from(NOT_IMPLEMENTED)
}
