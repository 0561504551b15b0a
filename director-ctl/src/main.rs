//! `director-ctl`: the operator's command line.
//!
//! The table tools work offline on a config (no root, no director): build a
//! forwarding table, summarise it, compare two of them before applying a
//! change, and trace where one packet would go.

mod table;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "director-ctl",
    version,
    about = "Operate GLB-compatible directors: offline table tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build, summarise and compare forwarding tables from a config.
    #[command(subcommand)]
    Table(TableCommand),
    /// Show the bind, hash, row and backends a packet would get.
    Trace {
        /// Config file (GLB forwarding-table JSON).
        config: PathBuf,
        /// Client address, with its port when the hash uses it: 192.0.2.7:40000, [2001:db8::7]:40000.
        #[arg(long)]
        src: String,
        /// Destination: VIP:PORT/PROTO, e.g. 203.0.113.10:80/tcp or [2001:db8::10]:443/tcp.
        #[arg(long)]
        dst: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TableCommand {
    /// Write every table's 65,536 rows as [primary, secondary] address pairs.
    Build {
        /// Config file (GLB forwarding-table JSON).
        config: PathBuf,
        /// Output file (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Rows per backend as primary and secondary, and the spread.
    Show {
        /// Config file (GLB forwarding-table JSON).
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rows that change primary or secondary between two configs or built tables.
    Diff {
        /// The current config, or a table built from it.
        old: PathBuf,
        /// The proposed config, or a table built from it.
        new: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// What `--src` and `--dst` name.
#[derive(Debug)]
pub struct TraceArgs {
    src: IpAddr,
    src_port: Option<u16>,
    dst: IpAddr,
    dst_port: u16,
    proto: proto::config::Proto,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Table(TableCommand::Build { config, out }) => table::build(&config, &out),
        Command::Table(TableCommand::Show { config, json }) => table::show(&config, json),
        Command::Table(TableCommand::Diff { old, new, json }) => table::diff(&old, &new, json),
        Command::Trace {
            config,
            src,
            dst,
            json,
        } => match table::parse_trace_args(&src, &dst) {
            Ok(args) => table::trace(&config, &args, json),
            Err(e) => {
                eprintln!("director-ctl: {e:#}");
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("director-ctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
