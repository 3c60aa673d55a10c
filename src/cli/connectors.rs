//! `lienthong connectors …`: what operators need at 3 a.m. List the connectors, see one's
//! status on every hub process, pause, resume or stop it everywhere (recorded with who and
//! why), list what it dead-lettered, and run the mapping tests. Tables by default, `--output
//! json` for scripts.

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::text::printable;
use crate::config::Config;
use crate::connectors::manifest::{self, Manifest};
use crate::connectors::state::{self, Desired};
use crate::connectors::{mapping_tests, runtime};
use crate::registry::Catalogue;

/// A report older than this many refresh intervals comes from a process that is gone.
const STALE_INTERVALS: u32 = 5;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ConnectorsCommand {
    /// Every connector with its state on each process and its dead letters.
    List {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// One connector in detail: each process's worker, errors, latency, breaker, recent actions.
    Status {
        name: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Stop taking events on every process; counters and the endpoint's breaker are kept.
    Pause(Action),
    /// Start taking events again where the connector left off.
    Resume(Action),
    /// Switch the connector off on every process, releasing its partitions and connections.
    Stop(Action),
    /// List the events a connector gave up on (newest first).
    Dlq {
        name: String,
        /// Include dead letters already replayed.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Check every manifest and run its mapping tests (`<name>.tests.json`); needs no hub.
    Test {
        /// Only this connector.
        name: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct Action {
    name: String,
    /// Who does it (recorded), e.g. an operator's name or staff id.
    #[arg(long, env = "LIENTHONG_OPERATOR", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    by: String,
    /// Why (recorded), e.g. an incident number.
    #[arg(long)]
    reason: Option<String>,
}

fn manifests(config: &Config) -> anyhow::Result<Vec<Manifest>> {
    let catalogue = Catalogue::load(&config.schemas.dir)
        .with_context(|| format!("reading the catalogue in {}", config.schemas.dir.display()))?;
    let known = |event_type: &str| catalogue.events.iter().any(|e| e.event_type == event_type);
    Ok(manifest::load_dir(&config.connectors.dir, &known)?)
}

fn find<'a>(manifests: &'a [Manifest], name: &str) -> anyhow::Result<&'a Manifest> {
    match manifests.iter().find(|m| m.name == name) {
        Some(manifest) => Ok(manifest),
        None => {
            let names: Vec<&str> = manifests.iter().map(|m| m.name.as_str()).collect();
            bail!(
                "no connector {} has a manifest (there are: {})",
                printable(name),
                names.join(", ")
            )
        }
    }
}

fn ago(at: Option<DateTime<Utc>>) -> String {
    match at {
        None => "-".to_owned(),
        Some(at) => {
            let seconds = (Utc::now() - at).num_seconds().max(0);
            match seconds {
                0..=119 => format!("{seconds}s ago"),
                120..=7199 => format!("{}m ago", seconds / 60),
                _ => format!("{}h ago", seconds / 3600),
            }
        }
    }
}

pub async fn run(command: ConnectorsCommand, config: Config) -> anyhow::Result<()> {
    if let ConnectorsCommand::Test { name } = &command {
        return test(&config, name.as_deref());
    }
    let manifests = manifests(&config)?;
    let pool = crate::db::pool(&config.database)?;
    crate::db::migrate(&pool)
        .await
        .context("preparing the database")?;
    let stale = chrono::Duration::from_std(config.connectors.refresh_interval() * STALE_INTERVALS)
        .unwrap_or_default()
        .max(chrono::Duration::seconds(10));
    let is_live = |report: &state::WorkerReport| {
        report.state != "GONE" && report.updated_at.is_some_and(|at| Utc::now() - at < stale)
    };
    match command {
        ConnectorsCommand::List { output } => {
            let desired = state::desired_states(&pool).await?;
            let workers = state::workers(&pool, None).await?;
            let mut rows = Vec::new();
            for m in &manifests {
                let want = desired.get(&m.name).copied().unwrap_or_default();
                let live: Vec<&state::WorkerReport> = workers
                    .iter()
                    .filter(|w| w.name == m.name && is_live(w))
                    .collect();
                let dead_letters = state::dead_letters(&pool, &m.name, false).await?.len();
                rows.push((m, want, overall(want, &live), live.len(), dead_letters));
            }
            if output == Output::Json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(m, want, state, processes, dlq)| {
                        json!({"name": m.name, "kind": m.kind.to_string(), "system": m.system.as_str(),
                               "event_types": m.event_types, "desired": want, "state": state,
                               "processes": processes, "dead_letters": dlq})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            println!(
                "{:<24} {:<10} {:<10} {:<9} {:>9} {:>12}  event types",
                "NAME", "KIND", "STATE", "DESIRED", "PROCESSES", "DEAD LETTERS"
            );
            for (m, want, state, processes, dlq) in rows {
                println!(
                    "{:<24} {:<10} {:<10} {:<9} {:>9} {:>12}  {}",
                    m.name,
                    m.kind.to_string(),
                    state,
                    want.as_str(),
                    processes,
                    dlq,
                    m.event_types.join(", ")
                );
            }
        }
        ConnectorsCommand::Status { name, output } => {
            let manifest = find(&manifests, &name)?;
            let want = state::desired_states(&pool)
                .await?
                .get(&name)
                .copied()
                .unwrap_or_default();
            let workers = state::workers(&pool, Some(&name)).await?;
            let live: Vec<&state::WorkerReport> = workers.iter().filter(|w| is_live(w)).collect();
            let dead_letters = state::dead_letters(&pool, &name, false).await?.len();
            let dlq_topic = runtime::dead_letter_topic(&config.kafka, &name);
            if output == Output::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "name": name, "kind": manifest.kind.to_string(), "system": manifest.system.as_str(),
                        "endpoint": manifest.http.url, "event_types": manifest.event_types,
                        "desired": want, "state": overall(want, &live), "workers": live,
                        "dead_letters": dead_letters, "dead_letter_topic": dlq_topic,
                    }))?
                );
                return Ok(());
            }
            println!(
                "connector   {name} ({}) as system {}",
                manifest.kind, manifest.system
            );
            println!(
                "state       {} (operators want: {want})",
                overall(want, &live)
            );
            println!("consumes    {}", manifest.event_types.join(", "));
            println!("calls       {} {}", manifest.http.method, manifest.http.url);
            if let Some(reply) = &manifest.reply {
                println!("publishes   {} (reply)", reply.event_type);
            }
            if let Some(failure) = &manifest.failure {
                println!("on failure  {}", failure.event_type);
            }
            println!(
                "dead letters {dead_letters} waiting (topic {dlq_topic}; `lienthong connectors dlq {name}`)"
            );
            println!();
            if live.is_empty() {
                println!("no hub process runs this connector now");
            } else {
                println!(
                    "{:<32} {:<8} {:>9} {:>7} {:>6} {:>8} {:<9} {:>7} {:>7}  last success / last failure",
                    "PROCESS",
                    "STATE",
                    "DELIVERED",
                    "FAILED",
                    "DLQ",
                    "RESTARTS",
                    "BREAKER",
                    "P50 ms",
                    "P99 ms"
                );
                let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
                for w in &live {
                    println!(
                        "{:<32} {:<8} {:>9} {:>7} {:>6} {:>8} {:<9} {:>7} {:>7}  {} / {}",
                        w.process,
                        w.state,
                        w.delivered,
                        w.failed_attempts,
                        w.dead_lettered,
                        w.restarts,
                        w.breaker,
                        ms(w.latency_p50_ms),
                        ms(w.latency_p99_ms),
                        ago(w.last_success_at),
                        ago(w.last_failure_at)
                    );
                    if let Some(error) = &w.last_error {
                        println!("    last error: {}", printable(error));
                    }
                }
            }
        }
        ConnectorsCommand::Pause(action) => set(&pool, &manifests, action, Desired::Paused).await?,
        ConnectorsCommand::Resume(action) => {
            set(&pool, &manifests, action, Desired::Running).await?
        }
        ConnectorsCommand::Stop(action) => set(&pool, &manifests, action, Desired::Stopped).await?,
        ConnectorsCommand::Dlq { name, all, output } => {
            find(&manifests, &name)?;
            let letters = state::dead_letters(&pool, &name, all).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
                return Ok(());
            }
            if letters.is_empty() {
                println!("no dead letters for {name}");
            }
            for d in letters {
                println!(
                    "#{} {} {} event {} from {}/{}/{} after {} attempt(s): {} {}",
                    d.id,
                    d.last_failure_at.format("%Y-%m-%d %H:%M:%S"),
                    d.event_type,
                    d.event_id.map_or("-".to_owned(), |id| id.to_string()),
                    d.source.0,
                    d.source.1,
                    d.source.2,
                    d.attempts,
                    d.error_class,
                    printable(&d.error_message)
                );
            }
        }
        ConnectorsCommand::Test { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// The state status shows: what operators want, unless a process's worker failed (a connector
/// is never shown RUNNING while one of its workers is FAILED).
fn overall(want: Desired, live: &[&state::WorkerReport]) -> String {
    if live.iter().any(|w| w.state == "FAILED") {
        return "FAILED".to_owned();
    }
    match want {
        Desired::Running if live.is_empty() => "UNASSIGNED".to_owned(),
        Desired::Running if live.iter().all(|w| w.state == "RUNNING") => "RUNNING".to_owned(),
        Desired::Running => "STARTING".to_owned(),
        Desired::Paused => "PAUSED".to_owned(),
        Desired::Stopped => "STOPPED".to_owned(),
    }
}

async fn set(
    pool: &deadpool_postgres::Pool,
    manifests: &[Manifest],
    action: Action,
    desired: Desired,
) -> anyhow::Result<()> {
    find(manifests, &action.name)?;
    state::set_desired(
        pool,
        &action.name,
        desired,
        &action.by,
        action.reason.as_deref(),
    )
    .await?;
    println!(
        "{} is now {desired} on every hub process (within a few seconds); recorded as done by {}",
        action.name,
        printable(&action.by)
    );
    Ok(())
}

fn test(config: &Config, only: Option<&str>) -> anyhow::Result<()> {
    let manifests = manifests(config)?;
    if let Some(name) = only {
        find(&manifests, name)?;
    }
    let mut failures = 0;
    let mut count = 0;
    for manifest in manifests
        .iter()
        .filter(|m| only.is_none_or(|n| n == m.name))
    {
        for outcome in mapping_tests::run(manifest) {
            count += 1;
            match outcome.failure {
                None => println!("ok    {} / {}", outcome.connector, outcome.test),
                Some(why) => {
                    failures += 1;
                    println!(
                        "FAIL  {} / {}\n      {why}",
                        outcome.connector, outcome.test
                    );
                }
            }
        }
    }
    if failures > 0 {
        bail!("{failures} of {count} mapping test(s) failed");
    }
    println!("{count} mapping test(s) passed");
    Ok(())
}
