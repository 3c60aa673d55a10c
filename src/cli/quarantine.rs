//! `lienthong quarantine list`: the most recent refused events with every violation.

use anyhow::Context as _;
use clap::Subcommand;

use super::text::printable;
use crate::config::Config;
use crate::events::Quarantine;

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Show the most recent refused events, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

pub async fn run(command: QuarantineCommand, config: Config) -> anyhow::Result<()> {
    let pool = crate::db::pool(&config.database)?;
    crate::db::migrate(&pool)
        .await
        .context("preparing the database")?;
    match command {
        QuarantineCommand::List { limit } => {
            for entry in Quarantine::new(pool).recent(limit).await? {
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
    }
    Ok(())
}
