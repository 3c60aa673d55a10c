//! `lienthong audit …`: the auditor's tools. `verify` checks the whole log against its signed
//! checkpoints and names what was changed; `prove` writes an inclusion proof that
//! `check-proof` (or any RFC 6962 verifier) checks offline with the key `key` prints;
//! `checkpoint` signs one now; `trace` and `subject` answer per dossier and per citizen.
//! Every question is itself recorded in the log.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Subcommand;

use super::connectors::Output;
use super::text::printable;
use crate::access::Rights;
use crate::audit::{self, Signer, SubjectKeys, TransferRow, Verifier, Verifiers};
use crate::config::Config;
use crate::connectors::admin::event_topics;
use crate::connectors::reload;
use crate::domain::{DossierCode, PersonalId};
use crate::lineage;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every entry and every checkpoint; exit 1 and name each problem found.
    Verify {
        /// A verifier key checkpoints may be signed with, repeated for rotated keys (default:
        /// the configured signing key's and audit.previous_verifier_keys).
        #[arg(long)]
        key: Vec<String>,
    },
    /// Sign a checkpoint over every entry so far (the hub also signs one at an interval).
    Checkpoint,
    /// Print the verifier key auditors check checkpoints and proofs with.
    Key,
    /// Write the inclusion proof of one entry (JSON), for checking without our database.
    Prove {
        /// The entry's position, from `audit trace` or `audit subject`.
        position: i64,
        /// Write it here instead of to standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check an inclusion proof offline: no database, only the proof and the verifier key.
    CheckProof {
        /// The proof, as `audit prove` wrote it.
        file: PathBuf,
        /// The published verifier key (`audit key`).
        #[arg(long)]
        key: String,
    },
    /// Every transfer of one dossier, in order: events, systems, fields, schema versions.
    Trace {
        dossier_code: String,
        /// Who asks (recorded), e.g. an auditor's name or staff id.
        #[arg(long, env = "LIENTHONG_OPERATOR", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        by: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// What the OpenLineage feed sends for one dossier, built from its ledger rows: each run
    /// event's state, job, run and datasets (`--output json`: the events themselves, one per
    /// line, as on the lineage topic), and how far the feed has got.
    Lineage {
        dossier_code: String,
        /// Who asks (recorded), e.g. an auditor's name or staff id.
        #[arg(long, env = "LIENTHONG_OPERATOR", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        by: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Where one field of an event came from: the events it follows from, their producers,
    /// and the external system that answered.
    Provenance {
        /// The event's id.
        event_id: uuid::Uuid,
        /// The field, as a dotted path, e.g. child.personal_id.
        field: String,
        #[arg(long, env = "LIENTHONG_OPERATOR", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        by: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Transfers whose purpose the system had no right to when they happened; exit 1 if any.
    Purposes {
        /// How far back to look.
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long, env = "LIENTHONG_OPERATOR", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        by: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Who a change to an event type's schema reaches: rights, connectors, actual recipients.
    BlastRadius {
        /// The event type, or its schema subject.
        event_type: String,
        #[arg(long, env = "LIENTHONG_OPERATOR", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        by: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Which systems received which fields of one citizen's data, when, why.
    Subject {
        /// The citizen's personal ID (hashed with the subject keys; never stored).
        personal_id: String,
        #[arg(long, env = "LIENTHONG_OPERATOR", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        by: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

pub async fn run(command: AuditCommand, config: Config) -> anyhow::Result<()> {
    // Neither of these needs the database: a proof is checked offline.
    match command {
        AuditCommand::CheckProof { file, key } => check_proof(&file, &key),
        AuditCommand::Key => {
            let signer = Signer::load(&config.audit)?;
            println!("{}", audit::verifier_key(signer.origin(), &signer.public()));
            Ok(())
        }
        command => run_on_database(command, config).await,
    }
}

async fn run_on_database(command: AuditCommand, config: Config) -> anyhow::Result<()> {
    let pool = crate::db::pool(&config.database)?;
    crate::db::migrate(&pool)
        .await
        .context("preparing the database")?;
    match command {
        AuditCommand::Verify { key } => {
            let verifiers = if key.is_empty() {
                hub_verifiers(&config)?
            } else {
                Verifiers::new(
                    key.iter()
                        .map(|k| Verifier::parse(k))
                        .collect::<Result<_, _>>()?,
                )
            };
            let report = audit::verify(&pool, &verifiers).await?;
            print_report(&report);
            if !report.is_intact() {
                bail!(
                    "the audit log is not intact: {} problem(s)",
                    report.problems.len()
                );
            }
        }
        AuditCommand::Checkpoint => {
            let signer = Signer::load(&config.audit)?;
            let verifiers = hub_verifiers(&config)?;
            match audit::make_checkpoint(&pool, &signer, &verifiers).await? {
                audit::Checkpointed::Signed(size) => println!("signed: the first {size} entries"),
                audit::Checkpointed::Elsewhere => {
                    println!("another hub process is signing one now; nothing to do here")
                }
                audit::Checkpointed::Current(size) => {
                    println!("nothing to sign: the latest checkpoint covers all {size} entries");
                }
            }
        }
        AuditCommand::Prove { position, out } => {
            let proof = audit::prove(&pool, position).await?;
            let text = serde_json::to_string_pretty(&proof)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, text + "\n")
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "proof of entry {position} written to {} (tree of {} entries)",
                        path.display(),
                        proof.tree_size
                    );
                }
                None => println!("{text}"),
            }
        }
        AuditCommand::Trace {
            dossier_code,
            by,
            output,
        } => {
            print_rows(&trace(&pool, &dossier_code, &by).await?, output)?;
        }
        AuditCommand::Lineage {
            dossier_code,
            by,
            output,
        } => {
            let rows = trace(&pool, &dossier_code, &by).await?;
            let catalogue = super::connectors::catalogue(&config)?;
            let describer = lineage::Describer {
                deployment: lineage::deployment(&config),
                topics: event_topics(&catalogue, &config.kafka),
                manifests: reload::fixed(super::connectors::manifests(&config, &catalogue)?),
            };
            let client = pool.get().await?;
            let events = describer.describe(&client, &rows).await?;
            let sent = lineage::sent_up_to(&client).await?;
            print_lineage(&rows, &events, sent, output)?;
        }
        AuditCommand::Subject {
            personal_id,
            by,
            output,
        } => {
            let references = references(&config, &personal_id)?;
            let rows = audit::subject_history(&pool, &references, "subject-history", &by).await?;
            print_rows(&rows, output)?;
        }
        AuditCommand::Provenance {
            event_id,
            field,
            by,
            output,
        } => {
            let chain = audit::field_provenance(&pool, event_id, field.trim(), &by).await?;
            print_provenance(&chain, &field, output)?;
        }
        AuditCommand::Purposes { days, by, output } => {
            let since = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
            let rights = Rights::new(pool.clone()).history().await?;
            let catalogue = super::systems::access_catalogue(&config)?;
            let uncovered = audit::purpose_check(&pool, &rights, &catalogue, since, &by).await?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&uncovered)?);
            } else {
                for found in &uncovered {
                    println!(
                        "entry {}: {} had no right to {} {} for {} at {}",
                        found.transfer.position,
                        printable(&found.system),
                        found.direction,
                        printable(found.transfer.event_type.as_deref().unwrap_or_default()),
                        printable(&found.transfer.purpose),
                        found.transfer.recorded_at.format("%Y-%m-%d %H:%M:%S")
                    );
                }
                println!(
                    "{} transfer(s) of the last {days} days without a right for their purpose",
                    uncovered.len()
                );
            }
            if !uncovered.is_empty() {
                bail!("{} transfer(s) without a right", uncovered.len());
            }
        }
        AuditCommand::BlastRadius {
            event_type,
            by,
            output,
        } => {
            let catalogue = super::connectors::catalogue(&config)?;
            let known = catalogue
                .event_named(&event_type, &config.kafka.topic_prefix)
                .with_context(|| {
                    format!(
                        "event_type: {event_type:?} is no event type or subject of the catalogue"
                    )
                })?;
            let connectors: Vec<audit::ConnectorTypes> =
                super::connectors::manifests(&config, &catalogue)?
                    .iter()
                    .map(|m| m.types())
                    .collect();
            let radius = audit::blast_radius(
                &pool,
                &known.event_type,
                &Rights::new(pool.clone()).history().await?,
                &super::systems::access_catalogue(&config)?,
                &connectors,
                &by,
            )
            .await?;
            print_radius(&radius, output)?;
        }
        // Answered in `run`, without the database.
        AuditCommand::CheckProof { .. } | AuditCommand::Key => {}
    }
    Ok(())
}

/// The keys the hub's checkpoints may carry: its signing key's and the rotated ones.
fn hub_verifiers(config: &Config) -> anyhow::Result<Verifiers> {
    let signer = Signer::load(&config.audit)?;
    Verifiers::of(&signer, &config.audit.previous_verifier_keys)
        .context("audit.previous_verifier_keys")
}

/// The pseudonymous references of a personal ID under every subject key held.
pub(super) fn references(config: &Config, personal_id: &str) -> anyhow::Result<Vec<String>> {
    let id =
        PersonalId::parse(personal_id.trim()).map_err(|e| anyhow::anyhow!("personal_id: {e}"))?;
    Ok(SubjectKeys::load(&config.audit)?.all_references(id.expose()))
}

fn check_proof(file: &Path, key: &str) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let proof: audit::Proof = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a proof", file.display()))?;
    let verifier = Verifier::parse(key)?;
    let checkpoint = audit::check(&proof, &verifier)?;
    println!(
        "verified: entry {} is in the log of {} entries signed by {}{}",
        proof.position,
        checkpoint.tree_size,
        checkpoint.origin,
        checkpoint
            .signed_at
            .map(|at| format!(" at {}", at.to_rfc3339()))
            .unwrap_or_default()
    );
    println!("{}", proof.entry);
    Ok(())
}

fn print_provenance(chain: &[audit::Upstream], field: &str, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(chain)?);
        return Ok(());
    }
    if chain.is_empty() {
        bail!("no published event with that id in the ledger");
    }
    for link in chain {
        println!(
            "{:>2}  entry {:<7} {} (v{}) published by {}{}: {}",
            link.depth,
            link.position,
            printable(&link.event_type),
            link.schema_version.unwrap_or_default(),
            printable(&link.producer),
            link.answered_by
                .as_ref()
                .map(|s| format!(" with the answer of {}", printable(s)))
                .unwrap_or_default(),
            if link.carries.is_empty() {
                "does not carry it".to_owned()
            } else {
                link.carries.join(", ")
            }
        );
    }
    // The field entered with the deepest event of the unbroken run that carries it.
    let origin = chain
        .iter()
        .take_while(|link| !link.carries.is_empty())
        .last();
    match origin {
        Some(link) => println!(
            "{field} came into the hub with {} (entry {}), from {}",
            printable(&link.event_type),
            link.position,
            printable(link.answered_by.as_deref().unwrap_or(&link.producer))
        ),
        None => println!("the event does not carry {field}"),
    }
    Ok(())
}

fn print_radius(radius: &audit::BlastRadius, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(radius)?);
        return Ok(());
    }
    println!("a change to {} reaches:", radius.event_type);
    println!("rights in force ({}):", radius.rights.len());
    for holder in &radius.rights {
        println!(
            "    {:<32} {:<10} for {}",
            printable(&holder.system),
            holder.direction,
            holder.purposes.join(", ")
        );
    }
    println!("connectors ({}):", radius.connectors.len());
    for used in &radius.connectors {
        println!(
            "    {:<32} {:<10} as {}",
            printable(&used.connector),
            used.uses,
            printable(&used.system)
        );
    }
    println!("systems that received it ({}):", radius.recipients.len());
    for recipient in &radius.recipients {
        println!(
            "    {:<32} {} deliveries, the last at {}",
            printable(&recipient.system),
            recipient.deliveries,
            recipient.last_at.format("%Y-%m-%d %H:%M:%S")
        );
    }
    Ok(())
}

fn print_report(report: &audit::Report) {
    println!(
        "{} entries, {} checkpoint(s) with a valid signature{}",
        report.entries,
        report.checkpoints,
        report
            .latest
            .as_ref()
            .map(|c| format!("; the latest covers {} entries", c.tree_size))
            .unwrap_or_default()
    );
    if report.unsigned > 0 {
        println!(
            "after the latest checkpoint: {} more entr{}, checked one by one, signed at the next",
            report.unsigned,
            if report.unsigned == 1 { "y" } else { "ies" }
        );
    }
    for problem in &report.problems {
        println!("PROBLEM: {}", problem.what);
    }
    if report.is_intact() {
        println!("intact");
    }
}

/// Every transfer of the dossier `dossier_code` names, asked by `by` (recorded).
async fn trace(
    pool: &deadpool_postgres::Pool,
    dossier_code: &str,
    by: &str,
) -> anyhow::Result<Vec<TransferRow>> {
    let code = DossierCode::parse(dossier_code.trim())
        .map_err(|e| anyhow::anyhow!("dossier_code: {e}"))?;
    Ok(audit::dossier_trace(pool, code.as_str(), by).await?)
}

fn print_lineage(
    rows: &[TransferRow],
    events: &[lineage::RunEvent],
    sent_up_to: i64,
    output: Output,
) -> anyhow::Result<()> {
    if output == Output::Json {
        for event in events {
            println!("{}", serde_json::to_string(event)?);
        }
        return Ok(());
    }
    println!(
        "{:>7}  {:<8}  {:<44}  {:<8}  what it read -> what it wrote",
        "entry", "state", "job", "run"
    );
    let name = |dataset: &serde_json::Value| {
        dataset
            .as_array()
            .and_then(|d| d.first())
            .map(|d| {
                format!(
                    "{} {}",
                    d["namespace"].as_str().unwrap_or_default(),
                    d["name"].as_str().unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "-".to_owned())
    };
    for (row, event) in rows.iter().zip(events) {
        let event = serde_json::to_value(event)?;
        println!(
            "{:>7}  {:<8}  {:<44}  {:<8}  {} -> {}",
            row.position,
            event["eventType"].as_str().unwrap_or_default(),
            printable(event["job"]["name"].as_str().unwrap_or_default()),
            event["run"]["runId"]
                .as_str()
                .unwrap_or_default()
                .get(..8)
                .unwrap_or_default(),
            printable(&name(&event["inputs"])),
            printable(&name(&event["outputs"])),
        );
    }
    let behind = rows.iter().filter(|r| r.position > sent_up_to).count();
    println!(
        "{} run event(s); the feed has sent up to entry {sent_up_to}{}",
        events.len(),
        if behind == 0 {
            String::new()
        } else {
            format!(", {behind} of these not yet")
        }
    );
    Ok(())
}

fn print_rows(rows: &[TransferRow], output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(rows)?);
        return Ok(());
    }
    println!(
        "{:>7}  {:<19}  {:<14}  {:<28}  {:<28}  {:<44}  {:<20}  fields",
        "entry", "recorded (UTC)", "channel", "from", "to", "event type (schema v.)", "purpose"
    );
    for row in rows {
        let event = match (&row.event_type, row.schema_version) {
            (Some(t), Some(v)) => format!("{t} (v{v})"),
            (Some(t), None) => t.clone(),
            _ => String::new(),
        };
        println!(
            "{:>7}  {:<19}  {:<14}  {:<28}  {:<28}  {:<44}  {:<20}  {}",
            row.position,
            row.recorded_at.format("%Y-%m-%d %H:%M:%S"),
            row.channel,
            printable(&row.source_system),
            printable(&row.target_system),
            printable(&event),
            printable(&row.purpose),
            row.fields.join(", ")
        );
    }
    println!("{} transfer(s)", rows.len());
    Ok(())
}
