//! `lienthong quarantine list|show`: the most recent refused events with every violation, and
//! one refused request opened for an operator (a recorded read: it holds personal data).

use anyhow::Context as _;
use clap::Subcommand;

use super::text::printable;
use crate::config::Config;
use std::sync::Arc;

use crate::events::{Quarantine, QuarantineKeys};

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Show the most recent refused events, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Open one refused request (sealed at rest); the read is recorded with who made it.
    Show {
        /// Its number, from `quarantine list`.
        id: i64,
        /// Who reads it (recorded), e.g. an operator's name or staff id.
        #[arg(long, env = "LIENTHONG_OPERATOR", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        by: String,
    },
}

pub async fn run(command: QuarantineCommand, config: Config) -> anyhow::Result<()> {
    let pool = crate::db::pool(&config.database)?;
    crate::db::migrate(&pool)
        .await
        .context("preparing the database")?;
    match command {
        QuarantineCommand::List { limit } => {
            for entry in Quarantine::new(pool, None).recent(limit).await? {
                println!(
                    "#{} {} {} from {} dossier {} ({})",
                    entry.id,
                    entry.received_at.format("%Y-%m-%d %H:%M:%S"),
                    printable(&entry.event_type),
                    printable(&entry.system_id),
                    printable(&entry.correlation_id),
                    entry.reason
                );
                for v in entry.violations {
                    println!(
                        "    {:<40} {:<24} {}",
                        printable(&v.pointer),
                        printable(&v.rule),
                        printable(&v.message)
                    );
                }
            }
        }
        QuarantineCommand::Show { id, by } => {
            let keys = Arc::new(QuarantineKeys::load(&config.quarantine)?);
            let request = Quarantine::new(pool, Some(keys)).read(id, &by).await?;
            eprintln!(
                "quarantined request #{id}, opened by {} (recorded):",
                printable(&by)
            );
            // JSON escapes control characters inside strings: safe for a terminal as it is.
            println!("{}", serde_json::to_string_pretty(&request)?);
        }
    }
    Ok(())
}
