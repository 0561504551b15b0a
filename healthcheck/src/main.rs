//! `healthcheck`: probes the backends of a GLB-style config and pushes
//! their health to every director (docs/healthcheck.md).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use serde_json::Value;

use healthcheck::checks::Plan;
use healthcheck::settings::Settings;

/// Health checker for GLB-style directors.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The GLB-style config: its tables and their backends' `healthchecks`,
    /// GLB's top-level `healthchecks` timing, and the checker's
    /// `healthcheck` section.
    #[arg(long)]
    config: PathBuf,
    /// A file holding the `healthcheck` section on its own (for a config
    /// the director rewrites, which keeps no section it does not know).
    #[arg(long)]
    settings: Option<PathBuf>,
    /// Probe every check once, print the verdicts as a table, and exit.
    #[arg(long)]
    once: bool,
}

fn read_json(path: &PathBuf) -> anyhow::Result<(String, Value)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    Ok((text, v))
}

fn load(args: &Args) -> anyhow::Result<(Plan, Settings)> {
    tracing::info!("reading {}", args.config.display());
    let (text, root) = read_json(&args.config)?;
    let config = proto::config::Config::from_json(&text)
        .with_context(|| format!("reading the config {}", args.config.display()))?;
    for w in &config.warnings {
        // The two top-level objects the director ignores are ours.
        if w.starts_with("config: unknown field \"healthcheck")
            && (w.contains("\"healthcheck\"") || w.contains("\"healthchecks\""))
        {
            continue;
        }
        tracing::warn!("{}: {w}", args.config.display());
    }
    let in_config = root.get("healthcheck");
    let section = match &args.settings {
        Some(path) => {
            if in_config.is_some() {
                anyhow::bail!(
                    "both {} (--settings) and the config {} have a healthcheck section: keep one",
                    path.display(),
                    args.config.display()
                );
            }
            let (_, v) = read_json(path)?;
            // The file is the section itself, or an object holding it.
            Some(v.get("healthcheck").cloned().unwrap_or(v))
        }
        None => in_config.cloned(),
    };
    let settings = Settings::from_values(section.as_ref(), root.get("healthchecks"))
        .context("reading the checker's settings")?;
    let plan =
        Plan::from_config(&config, &settings).context("reading the backends' healthchecks")?;
    for w in &plan.warnings {
        tracing::warn!("{}: {w}", args.config.display());
    }
    Ok((plan, settings))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let (plan, settings) = load(&args)?;
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    if args.once {
        let table = rt.block_on(healthcheck::run::once(plan, settings));
        print!("{table}");
        return Ok(());
    }
    if settings.directors.is_empty() {
        tracing::warn!("no directors in healthcheck.directors: verdicts are only shown on /health");
    }
    rt.block_on(healthcheck::run::run(
        plan,
        settings,
        Box::new(move || load(&args)),
    ))
}
