//! `director-ctl`: the operator's command line.
//!
//! The table tools work offline on a config (no root, no director): build a
//! forwarding table, summarise it, compare two of them before applying a
//! change, and trace where one packet would go. The other commands talk to
//! a director's HTTP API (`--api`, `--token-file`; docs/api.md).
//!
//! Exit status: 0 success, 1 a failed offline command (or, for `fleet
//! status`, tables that differ between directors), 2 usage, 3 an API error
//! (the director refused or failed the call), 4 a network error.

mod api;
mod table;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "director-ctl",
    version,
    about = "Operate GLB-compatible directors: their HTTP API, and offline table tools",
    after_help = "Exit status: 0 success, 1 a failed offline command or directors that disagree, 2 usage, 3 API error, 4 network error."
)]
struct Cli {
    /// The director's API.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        default_value = "http://127.0.0.1:9610"
    )]
    api: String,
    /// File whose first line is the API's bearer token (needed for changes).
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every table of the director: binds, backends, rows, content hash.
    Tables,
    /// List or change a table's backends.
    #[command(subcommand)]
    Backends(BackendsCommand),
    /// Set a backend's health verdict (what the health checker does).
    #[command(subcommand)]
    Health(HealthCommand),
    /// The rows a change would move, without applying it.
    Preview {
        /// The table.
        table: String,
        /// add, remove, drain, fill, activate, deactivate or health.
        action: String,
        /// The backend.
        ip: String,
        /// For `health`: the verdict; for `add`: the initial health.
        #[arg(long)]
        healthy: Option<bool>,
        /// For `health`: whether it is reachable; for `add`: initially.
        #[arg(long)]
        reachable: Option<bool>,
        /// For `add`: the initial state.
        #[arg(long)]
        state: Option<String>,
    },
    /// The director's counters.
    Stats,
    /// This director in its fleet: drain it, undrain it, its BGP
    /// announcements.
    #[command(subcommand)]
    Director(DirectorCommand),
    /// Compare several directors.
    #[command(subcommand)]
    Fleet(FleetCommand),
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
    },
}

#[derive(Debug, Subcommand)]
enum TableCommand {
    /// Write every table's 65,536 rows as [primary, alternate, ...] chains.
    Build {
        /// Config file (GLB forwarding-table JSON).
        config: PathBuf,
        /// Output file (JSON), or `-` for standard output. A regular file
        /// or a new one: replaced atomically (a temporary file beside it,
        /// then a rename), written through if it is a symbolic link; a
        /// device, FIFO or directory is refused, and so is the config itself.
        #[arg(long)]
        out: PathBuf,
    },
    /// Rows per backend as primary and as alternate, and the spread.
    Show {
        /// Config file (GLB forwarding-table JSON).
        config: PathBuf,
    },
    /// Rows that change between two configs or built tables, and the rows
    /// whose established flows would be lost.
    Diff {
        /// The current config, or a table built from it.
        old: PathBuf,
        /// The proposed config, or a table built from it.
        new: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// Each director's tables and content hashes side by side (`GET
    /// /v1/tables`). Exit 0 all agree, 1 some table differs, 3 a director
    /// refused the call, 4 a director could not be reached.
    Status {
        /// The directors' APIs, http://HOST:PORT each (`--api` is not used).
        #[arg(required = true, num_args = 1..)]
        urls: Vec<String>,
    },
    /// Change a backend on every director, one after the other; then
    /// compare their tables (as `status`). Exit 0 every director changed
    /// and all agree, 1 they disagree, 3 a director refused, 4 one could
    /// not be reached.
    Backends {
        /// The directors' APIs, comma-separated.
        #[arg(long, required = true, value_delimiter = ',', value_name = "URL,...")]
        directors: Vec<String>,
        #[command(subcommand)]
        command: BackendsCommand,
    },
    /// Set a backend's health verdict on every director (as `backends`).
    Health {
        /// The directors' APIs, comma-separated.
        #[arg(long, required = true, value_delimiter = ',', value_name = "URL,...")]
        directors: Vec<String>,
        #[command(subcommand)]
        command: HealthCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DirectorCommand {
    /// Attached, drained, VIP traffic and the BGP announcements.
    Status,
    /// Withdraw every VIP (the director keeps forwarding what still
    /// arrives; it stays drained across restarts).
    Drain {
        /// Then wait until the VIP traffic has stopped (no VIP packet for
        /// --quiet seconds), at most this many seconds; exit 1 if it has not.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
        /// With --wait: how long without a VIP packet counts as stopped.
        #[arg(long, value_name = "SECONDS", default_value_t = 2)]
        quiet: u64,
    },
    /// Announce the VIPs again.
    Undrain,
}

#[derive(Debug, Subcommand)]
enum BackendsCommand {
    /// The table's backends with state, health and rows.
    List { table: String },
    /// Add a backend (state active unless --state says otherwise).
    Add {
        table: String,
        ip: String,
        /// active, filling, draining or inactive.
        #[arg(long)]
        state: Option<String>,
        /// Add it as unhealthy.
        #[arg(long)]
        unhealthy: bool,
    },
    /// Remove a backend (refused unless inactive, or --force).
    Remove {
        table: String,
        ip: String,
        #[arg(long)]
        force: bool,
    },
    /// Drain a backend: no new flows, its established flows keep it.
    Drain { table: String, ip: String },
    /// Set a backend to filling (GLB's step of adding one).
    Fill { table: String, ip: String },
    /// Set a backend to active.
    Activate { table: String, ip: String },
    /// Take a backend out of the table.
    Deactivate { table: String, ip: String },
}

#[derive(Debug, Subcommand)]
enum HealthCommand {
    /// Set the verdict: --healthy true|false (false: no new flows, it
    /// keeps its established ones), --reachable true|false (false: in no
    /// row at all), or both; with an optional reason.
    #[command(group(clap::ArgGroup::new("verdict").required(true).multiple(true)))]
    Set {
        table: String,
        ip: String,
        #[arg(long, group = "verdict")]
        healthy: Option<bool>,
        #[arg(long, group = "verdict")]
        reachable: Option<bool>,
        #[arg(long)]
        reason: Option<String>,
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
    if let Some(code) = api_command(&cli) {
        return code;
    }
    let result = match cli.command {
        Command::Table(TableCommand::Build { config, out }) => match table::build(&config, &out) {
            Ok(code) => Ok(code),
            Err(table::BuildFailure::Failed(e)) => Err(e),
            Err(table::BuildFailure::Refused(e)) => {
                eprintln!("director-ctl: {e:#}");
                return ExitCode::from(2);
            }
        },
        Command::Table(TableCommand::Show { config }) => table::show(&config, cli.json),
        Command::Table(TableCommand::Diff { old, new }) => table::diff(&old, &new, cli.json),
        Command::Trace { config, src, dst } => match table::parse_trace_args(&src, &dst) {
            Ok(args) => table::trace(&config, &args, cli.json),
            Err(e) => {
                eprintln!("director-ctl: {e:#}");
                return ExitCode::from(2);
            }
        },
        // Run by `api_command` above.
        _ => return ExitCode::FAILURE,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("director-ctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command if it talks to the API.
fn api_command(cli: &Cli) -> Option<ExitCode> {
    let run = |f: &dyn Fn(&api::Client) -> Result<(), api::Failure>| {
        let result = api::Client::new(&cli.api, cli.token_file.as_deref()).and_then(|c| f(&c));
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => e.report(),
        }
    };
    let json = cli.json;
    Some(match &cli.command {
        Command::Tables => run(&|c| api::tables(c, json)),
        Command::Stats => run(&|c| api::stats(c, json)),
        Command::Director(DirectorCommand::Status) => run(&|c| api::director_status(c, json)),
        Command::Director(DirectorCommand::Undrain) => {
            run(&|c| api::director_drain(c, false, None, json))
        }
        Command::Director(DirectorCommand::Drain { wait, quiet }) => {
            let wait = wait.map(|w| (Duration::from_secs(w), Duration::from_secs(*quiet)));
            run(&|c| api::director_drain(c, true, wait, json))
        }
        Command::Fleet(FleetCommand::Status { urls }) => {
            api::fleet_status(urls, cli.token_file.as_deref(), json)
        }
        Command::Backends(BackendsCommand::List { table }) => {
            run(&|c| api::backends_list(c, table, json))
        }
        Command::Backends(b) => {
            let call = backends_call(b)?;
            run(&|c| api::change(c, &call, json))
        }
        Command::Health(h) => {
            let call = health_call(h);
            run(&|c| api::change(c, &call, json))
        }
        Command::Fleet(FleetCommand::Backends { directors, command }) => {
            let Some(call) = backends_call(command) else {
                eprintln!(
                    "director-ctl: fleet backends: list is not a change; `fleet status` compares the directors"
                );
                return Some(ExitCode::from(api::EXIT_USAGE));
            };
            api::fleet_change(directors, cli.token_file.as_deref(), &call, json)
        }
        Command::Fleet(FleetCommand::Health { directors, command }) => api::fleet_change(
            directors,
            cli.token_file.as_deref(),
            &health_call(command),
            json,
        ),
        Command::Preview {
            table,
            action,
            ip,
            healthy,
            reachable,
            state,
        } => {
            let mut body = json!({ "action": action, "ip": ip });
            if let Some(h) = healthy {
                body["healthy"] = json!(h);
            }
            if let Some(r) = reachable {
                body["reachable"] = json!(r);
            }
            if let Some(s) = state {
                body["state"] = Value::String(s.clone());
            }
            run(&|c| api::preview(c, table, &body, json))
        }
        Command::Table(_) | Command::Trace { .. } => return None,
    })
}

/// `backends ...` as the call it makes; `None` for `list`.
fn backends_call(b: &BackendsCommand) -> Option<api::ChangeCall> {
    let (method, table, ip, tail, body) = match b {
        BackendsCommand::List { .. } => return None,
        BackendsCommand::Add {
            table,
            ip,
            state,
            unhealthy,
        } => {
            let mut body = json!({ "ip": ip, "healthy": !unhealthy });
            if let Some(s) = state {
                body["state"] = json!(s);
            }
            return Some(api::ChangeCall {
                method: "POST",
                path: proto::api::path::backends(table),
                body: Some(body),
                ip: ip.clone(),
            });
        }
        BackendsCommand::Remove { table, ip, force } => (
            "DELETE",
            table,
            ip,
            if *force { "?force=true" } else { "" },
            None,
        ),
        BackendsCommand::Drain { table, ip } => ("POST", table, ip, "/drain", None),
        BackendsCommand::Fill { table, ip } => ("POST", table, ip, "/fill", None),
        BackendsCommand::Activate { table, ip } => ("POST", table, ip, "/activate", None),
        BackendsCommand::Deactivate { table, ip } => ("POST", table, ip, "/deactivate", None),
    };
    Some(api::ChangeCall {
        method,
        path: backend_path(table, ip, tail),
        body,
        ip: ip.clone(),
    })
}

/// `health set ...` as the call it makes.
fn health_call(h: &HealthCommand) -> api::ChangeCall {
    let HealthCommand::Set {
        table,
        ip,
        healthy,
        reachable,
        reason,
    } = h;
    let mut body = json!({});
    if let Some(h) = healthy {
        body["healthy"] = json!(h);
    }
    if let Some(r) = reachable {
        body["reachable"] = json!(r);
    }
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    api::ChangeCall {
        method: "PUT",
        path: backend_path(table, ip, "/health"),
        body: Some(body),
        ip: ip.clone(),
    }
}

/// A backend's path; the address goes as given: the API says what is
/// wrong with it.
fn backend_path(table: &str, ip: &str, tail: &str) -> String {
    format!(
        "{}/{}{tail}",
        proto::api::path::backends(table),
        proto::api::path::segment(ip)
    )
}
