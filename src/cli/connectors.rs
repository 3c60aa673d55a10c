//! `lienthong connectors …`: what operators need at 3 a.m. List the connectors, see one's
//! status on every hub process, pause, resume, stop or restart it everywhere (recorded with
//! who and why), list and replay what it dead-lettered, and run the mapping tests. Tables by
//! default, `--output json` for scripts. The work is done by `connectors::admin`, which the
//! gRPC `ConnectorAdmin` service shares.

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::{Subcommand, ValueEnum};

use super::text::printable;
use crate::config::Config;
use crate::connectors::admin::{Admin, ConnectorView, Offsets, ResetTarget, event_topics};
use crate::connectors::manifest::{self, Manifest};
use crate::connectors::source::describe;
use crate::connectors::source::position::Stored;
use crate::connectors::state::{DeadLetter, Desired};
use crate::connectors::{mapping_tests, reload};
use crate::registry::Catalogue;

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
    /// One connector in detail: each process's worker, errors, latency, breaker.
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
    /// Restart the connector's workers on every process, with a fresh endpoint client.
    Restart {
        #[command(flatten)]
        action: Action,
        /// Only workers that failed (they skip the rest of their restart delay).
        #[arg(long)]
        only_failed: bool,
    },
    /// The connector's journal, newest first: who paused, resumed, restarted, reset or
    /// replayed it, and the callbacks it refused for a bad signature.
    History {
        name: String,
        /// How many entries.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// The events a connector gave up on.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Where a connector reads next: a sink's committed offsets, a source's position.
    #[command(subcommand)]
    Offsets(OffsetsCommand),
    /// Check the manifests in the connectors directory, then wait until every hub process
    /// runs them (processes re-read the directory every `connectors.reload_interval_ms`).
    Reload {
        /// How long to wait for the processes.
        #[arg(long, default_value_t = 30)]
        wait_secs: u64,
    },
    /// Check every manifest and run its mapping tests (`<name>.tests.json`); needs no hub.
    Test {
        /// Only this connector.
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters not yet replayed, newest first.
    List {
        name: String,
        /// Include those already replayed.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// One dead letter with its whole error.
    Show { name: String, id: i64 },
    /// Hand dead letters to the connector again (once the cause is fixed); one process takes
    /// each, reads the record back from the dead-letter topic and handles it as new.
    Replay {
        name: String,
        /// The dead letters' numbers, from `dlq list`.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<i64>,
        /// Every dead letter not yet replayed.
        #[arg(long)]
        all: bool,
        /// Who asks (recorded).
        #[arg(long, env = "LIENTHONG_OPERATOR", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        by: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OffsetsCommand {
    /// Committed offsets and lag per partition (a sink), or the stored position (a source).
    Get {
        name: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Move where a stopped connector reads next: to read again, or to skip.
    Reset {
        name: String,
        #[command(flatten)]
        to: ResetArgs,
        /// Only this partition (a sink).
        #[arg(long)]
        partition: Option<i32>,
        /// Who does it (recorded).
        #[arg(long, env = "LIENTHONG_OPERATOR", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        by: String,
    },
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct ResetArgs {
    /// The oldest record the broker holds (a source: the origin's beginning).
    #[arg(long)]
    to_earliest: bool,
    /// After the newest record: skip everything waiting (a sink).
    #[arg(long)]
    to_latest: bool,
    /// The first record at or after this time, RFC 3339 (a sink).
    #[arg(long, value_name = "TIME")]
    to_time: Option<DateTime<chrono::FixedOffset>>,
    /// This offset (a sink), or this cursor (a source: an outbox's last published id).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<String>,
}

impl ResetArgs {
    fn target(self) -> ResetTarget {
        match (self.to_time, self.to_offset) {
            (Some(at), _) => ResetTarget::Time(at.with_timezone(&Utc)),
            (None, Some(offset)) => ResetTarget::Offset(offset),
            (None, None) if self.to_latest => ResetTarget::Latest,
            (None, None) => ResetTarget::Earliest,
        }
    }
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

pub(super) fn catalogue(config: &Config) -> anyhow::Result<Catalogue> {
    Catalogue::load(&config.schemas.dir)
        .with_context(|| format!("reading the catalogue in {}", config.schemas.dir.display()))
}

pub(super) fn manifests(config: &Config, catalogue: &Catalogue) -> anyhow::Result<Vec<Manifest>> {
    let known = |event_type: &str| catalogue.events.iter().any(|e| e.event_type == event_type);
    Ok(manifest::load_dir(&config.connectors.dir, &known)?)
}

fn ago(at: Option<DateTime<Utc>>) -> String {
    let Some(at) = at else {
        return "-".to_owned();
    };
    match (Utc::now() - at).num_seconds().max(0) {
        s @ 0..=119 => format!("{s}s ago"),
        s @ 120..=7199 => format!("{}m ago", s / 60),
        s => format!("{}h ago", s / 3600),
    }
}

fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn run(command: ConnectorsCommand, config: Config) -> anyhow::Result<()> {
    if let ConnectorsCommand::Test { name } = &command {
        return test(&config, name.as_deref());
    }
    let pool = crate::db::pool(&config.database)?;
    crate::db::migrate(&pool)
        .await
        .context("preparing the database")?;
    let catalogue = catalogue(&config)?;
    let admin = Admin::new(
        pool,
        reload::fixed(manifests(&config, &catalogue)?),
        config.kafka.clone(),
        event_topics(&catalogue, &config.kafka),
        config.connectors.refresh_interval(),
    );
    let done = |name: &str, what: &str, by: &str| {
        println!(
            "{name}: {what} on every hub process within a few seconds; recorded as done by {}",
            printable(by)
        );
    };
    match command {
        ConnectorsCommand::List { output } => {
            let views = admin.list().await?;
            if output == Output::Json {
                return json(&views);
            }
            println!(
                "{:<24} {:<22} {:<10} {:<9} {:>9} {:>12} {:>6}  EVENT TYPES",
                "NAME", "KIND", "STATE", "DESIRED", "PROCESSES", "DEAD LETTERS", "PARKED"
            );
            for v in views {
                println!(
                    "{:<24} {:<22} {:<10} {:<9} {:>9} {:>12} {:>6}  {}",
                    v.name,
                    v.kind,
                    v.state,
                    v.desired.as_str(),
                    v.workers.len(),
                    v.dead_letters,
                    v.parked,
                    v.event_types.join(", ")
                );
            }
        }
        ConnectorsCommand::Status { name, output } => {
            let view = admin.status(&name).await?;
            if output == Output::Json {
                return json(&view);
            }
            print_status(&view);
        }
        ConnectorsCommand::Pause(a) => {
            admin
                .set(&a.name, Desired::Paused, &a.by, a.reason.as_deref())
                .await?;
            done(&a.name, "paused", &a.by);
        }
        ConnectorsCommand::Resume(a) => {
            admin
                .set(&a.name, Desired::Running, &a.by, a.reason.as_deref())
                .await?;
            done(&a.name, "running", &a.by);
        }
        ConnectorsCommand::Stop(a) => {
            admin
                .set(&a.name, Desired::Stopped, &a.by, a.reason.as_deref())
                .await?;
            done(&a.name, "stopped", &a.by);
        }
        ConnectorsCommand::Restart {
            action: a,
            only_failed,
        } => {
            admin.restart(&a.name, only_failed, &a.by).await?;
            done(
                &a.name,
                if only_failed {
                    "failed workers restart"
                } else {
                    "restarts"
                },
                &a.by,
            );
        }
        ConnectorsCommand::History {
            name,
            limit,
            output,
        } => {
            let entries = admin.journal(&name, limit).await?;
            if output == Output::Json {
                return json(&entries);
            }
            if entries.is_empty() {
                println!("nothing recorded for {name}");
            }
            for e in &entries {
                println!(
                    "{}  {:<18} {:<20} {}",
                    e.acted_at
                        .with_timezone(&crate::domain::vietnam())
                        .format("%Y-%m-%d %H:%M:%S"),
                    e.action,
                    e.actor,
                    e.detail.as_deref().unwrap_or("")
                );
            }
        }
        ConnectorsCommand::Dlq(DlqCommand::List { name, all, output }) => {
            let letters = admin.dead_letters(&name, all).await?;
            if output == Output::Json {
                return json(&letters);
            }
            if letters.is_empty() {
                println!("no dead letters for {name}");
            }
            for d in &letters {
                print_dead_letter(d, false);
            }
        }
        ConnectorsCommand::Dlq(DlqCommand::Show { name, id }) => {
            let letters = admin.dead_letters(&name, true).await?;
            let Some(letter) = letters.iter().find(|d| d.id == id) else {
                bail!(
                    "{name} has no dead letter #{id} (see `lienthong connectors dlq list {name} --all`)"
                );
            };
            print_dead_letter(letter, true);
        }
        ConnectorsCommand::Dlq(DlqCommand::Replay { name, ids, all, by }) => {
            let ids = (!all).then_some(ids);
            let count = admin.replay(&name, ids.as_deref(), &by).await?;
            println!(
                "{count} dead letter(s) of {name} will be replayed by a hub process running it; follow with `lienthong connectors dlq list {name} --all`"
            );
        }
        ConnectorsCommand::Offsets(OffsetsCommand::Get { name, output }) => {
            let offsets = admin.offsets(&name).await?;
            if output == Output::Json {
                return json(&offsets);
            }
            print_offsets(&offsets);
        }
        ConnectorsCommand::Offsets(OffsetsCommand::Reset {
            name,
            to,
            partition,
            by,
        }) => {
            let offsets = admin
                .reset_offsets(&name, &to.target(), partition, &by)
                .await?;
            println!(
                "{name}: offsets moved (recorded as done by {}); resume it to read from here:",
                printable(&by)
            );
            print_offsets(&offsets);
        }
        ConnectorsCommand::Reload { wait_secs } => reload_and_wait(&admin, wait_secs).await?,
        ConnectorsCommand::Test { .. } => unreachable!("handled above"),
    }
    Ok(())
}

fn print_status(v: &ConnectorView) {
    println!(
        "connector    {} ({}) as system {}",
        v.name, v.kind, v.system
    );
    println!("state        {} (operators want: {})", v.state, v.desired);
    let source = v.kind.ends_with("-source");
    if source {
        println!("publishes    {}", v.event_types.join(", "));
        println!("reads        {}", v.endpoint);
    } else {
        println!("consumes     {}", v.event_types.join(", "));
        println!("calls        {}", v.endpoint);
    }
    if let Some(stored) = &v.position {
        println!("position     {}", position(stored));
    }
    if let Some(reply) = &v.reply_event_type {
        println!("publishes    {reply} (reply)");
    }
    if let Some(refusal) = &v.refusal_event_type {
        println!("on refusal   {refusal}");
    }
    if let Some(failure) = &v.failure_event_type {
        println!("on failure   {failure}");
    }
    if !source {
        println!(
            "dead letters {} waiting (topic {}; `lienthong connectors dlq list {}`)",
            v.dead_letters, v.dead_letter_topic, v.name
        );
        if v.parked > 0 {
            println!(
                "parked       {} event(s) waiting to ask again (listed with the dead letters)",
                v.parked
            );
        }
    }
    println!();
    if v.workers.is_empty() {
        println!("no hub process runs this connector now");
        return;
    }
    println!(
        "{:<32} {:<8} {:>9} {:>7} {:>6} {:>8} {:<9} {:>7} {:>7}  LAST SUCCESS / LAST FAILURE",
        "PROCESS", "STATE", "DELIVERED", "FAILED", "DLQ", "RESTARTS", "BREAKER", "P50 ms", "P99 ms"
    );
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    for w in &v.workers {
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
        if !w.partitions.is_empty() {
            println!("    partitions: {}", w.partitions);
        }
        if let Some(error) = &w.last_error {
            println!("    last error: {}", printable(error));
        }
    }
}

/// Waits until every process runs the manifests as they are on disk; fails if some do not
/// within `wait_secs`.
async fn reload_and_wait(admin: &Admin, wait_secs: u64) -> anyhow::Result<()> {
    println!("the manifests are valid; waiting for the hub processes to run them");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_secs);
    let rollout = loop {
        let rollout = admin.rollout().await?;
        let done = rollout.iter().all(|r| r.behind.is_empty());
        if done || std::time::Instant::now() >= deadline {
            break rollout;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    println!(
        "{:<24} {:<13} {:>9}  BEHIND",
        "NAME", "VERSION", "PROCESSES"
    );
    for r in &rollout {
        println!(
            "{:<24} {:<13} {:>9}  {}",
            r.name,
            r.version,
            r.processes,
            if r.behind.is_empty() {
                "-".to_owned()
            } else {
                r.behind.join(", ")
            }
        );
    }
    let behind: usize = rollout.iter().map(|r| r.behind.len()).sum();
    if behind > 0 {
        bail!(
            "{behind} worker(s) still run an older manifest after {wait_secs}s: is the directory \
             the same on every machine, and does `lienthong serve` log a manifest problem?"
        );
    }
    Ok(())
}

/// A source's stored position, where it is and who reads it.
fn position(stored: &Stored) -> String {
    format!(
        "{} ({} published; moved {}; read by {})",
        printable(&describe(&stored.position)),
        stored.published,
        ago(Some(stored.updated_at)),
        stored.owner.as_deref().unwrap_or("no process now")
    )
}

fn print_offsets(o: &Offsets) {
    if let Some(stored) = &o.position {
        println!("{}: {}", o.name, position(stored));
    } else if o.groups.is_empty() {
        println!("{}: nothing read yet", o.name);
    }
    for group in &o.groups {
        println!(
            "{} (group {}, topic {})",
            group.event_type, group.group, group.topic
        );
        println!(
            "  {:>9} {:>12} {:>12} {:>12} {:>8}",
            "PARTITION", "COMMITTED", "EARLIEST", "END", "LAG"
        );
        for p in &group.partitions {
            println!(
                "  {:>9} {:>12} {:>12} {:>12} {:>8}",
                p.partition,
                p.committed.map_or("-".to_owned(), |c| c.to_string()),
                p.low,
                p.high,
                p.lag()
            );
        }
    }
}

fn print_dead_letter(d: &DeadLetter, whole: bool) {
    let vietnam = |t: chrono::DateTime<chrono::Utc>| {
        t.with_timezone(&crate::domain::vietnam())
            .format("%Y-%m-%d %H:%M:%S")
    };
    let replay = match (&d.replay_outcome, d.replay_requested_at, d.parked_until) {
        (Some(outcome), ..) => format!(" [replayed: {outcome}]"),
        (None, Some(asked), Some(until)) if asked < until => {
            format!(" [parked: asked again now (due {})]", vietnam(until))
        }
        (None, _, Some(until)) => format!(" [parked: asks again at {}]", vietnam(until)),
        (None, Some(_), None) => " [replay requested]".to_owned(),
        (None, None, None) => String::new(),
    };
    let message: String = if whole {
        d.error_message.clone()
    } else {
        d.error_message.chars().take(120).collect()
    };
    println!(
        "#{} {} {} event {} from {}/{}/{} after {} attempt(s): {} {}{replay}",
        d.id,
        d.last_failure_at.format("%Y-%m-%d %H:%M:%S"),
        d.event_type,
        d.event_id.map_or("-".to_owned(), |id| id.to_string()),
        d.source.0,
        d.source.1,
        d.source.2,
        d.attempts,
        d.error_class,
        printable(&message)
    );
    if whole {
        println!(
            "    first failure {}, dead-letter record {}/{}/{}",
            d.first_failure_at.format("%Y-%m-%d %H:%M:%S"),
            d.dlq.0,
            d.dlq.1,
            d.dlq.2
        );
    }
}

fn test(config: &Config, only: Option<&str>) -> anyhow::Result<()> {
    let manifests = manifests(config, &catalogue(config)?)?;
    if let Some(name) = only
        && !manifests.iter().any(|m| m.name == name)
    {
        bail!("no connector {} has a manifest", printable(name));
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
