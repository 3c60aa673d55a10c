//! `lienthong audit …`: the auditor's tools. `verify` checks the whole log against its signed
//! checkpoints and names what was changed; `prove` writes an inclusion proof that
//! `check-proof` (or any RFC 6962 verifier) checks offline with the key `key` prints;
//! `checkpoint` signs one now; `trace` and `subject` answer per dossier and per citizen.
//! Every question is itself recorded in the log.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use super::connectors::Output;
use super::text::printable;
use crate::audit::{self, Signer, SubjectKeys, TransferRow, Verifier};
use crate::config::Config;
use crate::domain::PersonalId;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every entry and every checkpoint; exit 1 and name each problem found.
    Verify {
        /// The verifier key to check checkpoints with (default: the configured signing key's).
        #[arg(long)]
        key: Option<String>,
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
    if let AuditCommand::CheckProof { file, key } = &command {
        return check_proof(file, key);
    }
    if let AuditCommand::Key = command {
        let signer = Signer::load(&config.audit)?;
        println!("{}", audit::verifier_key(signer.origin(), &signer.public()));
        return Ok(());
    }
    let pool = crate::db::pool(&config.database)?;
    crate::db::migrate(&pool)
        .await
        .context("preparing the database")?;
    match command {
        AuditCommand::Verify { key } => {
            let verifier = match key {
                Some(key) => Verifier::parse(&key)?,
                None => Verifier::of(&Signer::load(&config.audit)?),
            };
            let report = audit::verify(&pool, &verifier).await?;
            print_report(&report);
            if !report.is_intact() {
                bail!(
                    "the audit log is not intact: {} problem(s)",
                    report.problems.len()
                );
            }
        }
        AuditCommand::Checkpoint => {
            let size = audit::make_checkpoint(&pool, &Signer::load(&config.audit)?).await?;
            println!("signed: the first {size} entries");
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
            let rows = audit::dossier_trace(&pool, &dossier_code, &by).await?;
            print_rows(&rows, output)?;
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
        AuditCommand::CheckProof { .. } | AuditCommand::Key => unreachable!("answered above"),
    }
    Ok(())
}

/// The pseudonymous references of a personal ID under every subject key held.
pub(super) fn references(config: &Config, personal_id: &str) -> anyhow::Result<Vec<String>> {
    let id =
        PersonalId::parse(personal_id.trim()).map_err(|e| anyhow::anyhow!("personal_id: {e}"))?;
    Ok(SubjectKeys::load(&config.audit)?.all_references(id.expose()))
}

fn check_proof(file: &PathBuf, key: &str) -> anyhow::Result<()> {
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

fn print_report(report: &audit::Report) {
    println!(
        "{} entries, {} checkpoint(s) verified{}",
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
            "{} entries after the latest checkpoint: checked one by one, signed at the next",
            report.unsigned
        );
    }
    for problem in &report.problems {
        println!("PROBLEM: {}", problem.what);
    }
    if report.is_intact() {
        println!("intact");
    }
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
