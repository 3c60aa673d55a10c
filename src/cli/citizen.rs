//! `lienthong citizen report PERSONAL_ID`: every disclosure of one citizen's data the hub
//! carried, in Vietnamese, for the citizen (through the national portal) or an official
//! answering them: who received which fields, when, from whom, why and on which legal basis.
//! The question is recorded in the audit log like an auditor's.

use anyhow::Context as _;
use clap::Subcommand;

use super::connectors::Output;
use crate::audit;
use crate::config::Config;
use crate::domain::PersonalId;

#[derive(Debug, Subcommand)]
pub enum CitizenCommand {
    /// Who used this citizen's data: every transfer, oldest first.
    Report {
        /// The citizen's personal ID (hashed with the subject keys; never stored).
        personal_id: String,
        /// Who asks (recorded), e.g. the official's name or the portal's request id.
        #[arg(long, env = "LIENTHONG_OPERATOR", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        by: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

pub async fn run(command: CitizenCommand, config: Config) -> anyhow::Result<()> {
    let CitizenCommand::Report {
        personal_id,
        by,
        output,
    } = command;
    let references = super::audit::references(&config, &personal_id)?;
    let pool = crate::db::pool(&config.database)?;
    crate::db::migrate(&pool)
        .await
        .context("preparing the database")?;
    let rows = audit::subject_history(&pool, &references, "citizen-report", &by).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let shown = PersonalId::parse(personal_id.trim())
        .map(|id| id.to_string())
        .unwrap_or_default();
    print!("{}", audit::citizen_report(&shown, &rows));
    Ok(())
}
