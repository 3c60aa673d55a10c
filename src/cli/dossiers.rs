//! `lienthong dossiers …`: the procedure engine's view for officials and operators. `show CODE`
//! prints one dossier's steps with their due times and documents and its timeline (which system
//! sent what, what the hub published); `list` the newest dossiers, `--overdue` only those past a
//! due time; `rights` what the engine's member system must be granted; `load` puts a running
//! hub under N dossiers and reports its pace (`dossiers_load`). Tables by default,
//! `--output json` for scripts. The work is done by `procedures::view`, which the gRPC
//! `DossierService` shares.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::connectors::Output;
use super::text::printable;
use crate::config::Config;
use crate::domain::ReferenceData;
use crate::procedures::instance::Filled;
use crate::procedures::view::{self, DossierView};
use crate::procedures::{PURPOSE, rights};

#[derive(Debug, Subcommand)]
pub enum DossiersCommand {
    /// One dossier: its steps, due times, documents and timeline.
    Show {
        code: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// The newest dossiers, or only those past a due time.
    List {
        /// Only dossiers past their appointment, or with a step past its due time.
        #[arg(long)]
        overdue: bool,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        limit: i64,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// The rights the engine's member system needs, one per line:
    /// `DIRECTION EVENT-TYPE PURPOSE`, for `lienthong systems grant`.
    Rights,
    /// Submits N birth dossiers through a running hub and its connectors, and prints the
    /// throughput and the latency from submission to result.
    Load(super::dossiers_load::LoadArgs),
}

fn local(at: DateTime<Utc>) -> String {
    at.with_timezone(&crate::domain::vietnam())
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

fn maybe(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "-".to_owned(), local)
}

pub async fn run(command: DossiersCommand, config: Config) -> anyhow::Result<()> {
    let (overdue, limit, output) = match command {
        DossiersCommand::Rights => {
            for (direction, event_type) in rights() {
                println!("{direction} {event_type} {PURPOSE}");
            }
            return Ok(());
        }
        DossiersCommand::Load(args) => {
            return super::dossiers_load::run(args, pool(&config).await?).await;
        }
        DossiersCommand::Show { code, output } => {
            let pool = pool(&config).await?;
            let dossier = view::show(&pool, &code, Utc::now())
                .await?
                .with_context(|| {
                    format!(
                        "no procedure for dossier {}: the engine has not taken its submission in",
                        printable(&code)
                    )
                })?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&dossier)?);
            } else {
                show(&dossier, &reference(&config)?);
            }
            return Ok(());
        }
        DossiersCommand::List {
            overdue,
            limit,
            output,
        } => (overdue, limit, output),
    };
    let pool = pool(&config).await?;
    let dossiers = view::list(&pool, overdue, limit, Utc::now()).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&dossiers)?);
        return Ok(());
    }
    if dossiers.is_empty() {
        println!(
            "{}",
            if overdue {
                "no overdue dossier"
            } else {
                "no dossier"
            }
        );
        return Ok(());
    }
    let reference = reference(&config)?;
    println!(
        "{:<28} {:<6} {:<10} {:<18} {:<19} STEPS",
        "DOSSIER", "GROUP", "STATE", "PORTAL STATUS", "APPOINTMENT"
    );
    for d in &dossiers {
        let steps: Vec<String> = d
            .steps
            .iter()
            .map(|s| format!("{}:{}", s.name, s.state))
            .collect();
        let late = if d.overdue { " !" } else { "" };
        println!(
            "{:<28} {:<6} {:<10} {:<18} {:<19} {}",
            printable(&d.dossier_code),
            d.group,
            d.state,
            format!(
                "{} {}",
                d.portal_status,
                status_name(&reference, d.portal_status)
            ),
            format!("{}{late}", maybe(d.due_at)),
            steps.join(" ")
        );
    }
    // The pre-fill ratio on average over the listed dossiers: as the hub counted it, and as
    // the one-stop systems reported it.
    let counted: Vec<f64> = dossiers
        .iter()
        .filter_map(|d| d.filled.as_ref().map(Filled::ratio))
        .collect();
    if !counted.is_empty() {
        println!(
            "\npre-filled from national data: {:.0} % of the form on average, as the hub \
             counted it ({} of {} dossiers)",
            average(&counted),
            counted.len(),
            dossiers.len()
        );
    }
    let reported: Vec<f64> = dossiers
        .iter()
        .filter_map(|d| d.prefill.map(|p| p.ratio()))
        .collect();
    if !reported.is_empty() {
        println!(
            "pre-filled from national data: {:.0} % of the form on average, as the one-stop \
             system said ({} of {} dossiers said)",
            average(&reported),
            reported.len(),
            dossiers.len()
        );
    }
    Ok(())
}

/// The portal's names of its statuses (`schemas/reference/dossier-statuses.csv`).
fn reference(config: &Config) -> anyhow::Result<ReferenceData> {
    Ok(ReferenceData::load(&config.schemas.dir.join("reference"))?)
}

fn status_name(reference: &ReferenceData, status: u8) -> &str {
    reference.status_name(status).unwrap_or("unknown")
}

async fn pool(config: &Config) -> anyhow::Result<deadpool_postgres::Pool> {
    let pool = crate::db::pool(&config.database)?;
    crate::db::migrate(&pool)
        .await
        .context("preparing the database")?;
    Ok(pool)
}

fn show(d: &DossierView, reference: &ReferenceData) {
    println!(
        "dossier      {} ({} group, procedure {})",
        printable(&d.dossier_code),
        d.group,
        d.procedure_code
    );
    println!(
        "state        {}; portal status {} ({})",
        d.state,
        d.portal_status,
        status_name(reference, d.portal_status)
    );
    println!(
        "received     {}; accepted {}",
        local(d.received_at),
        local(d.accepted_at)
    );
    let overdue = if d.overdue { "  OVERDUE" } else { "" };
    println!(
        "appointment  {}{overdue}",
        d.due_at.map_or_else(
            || "unknown (the holiday calendar does not cover it)".to_owned(),
            local
        )
    );
    if let Some(filled) = &d.filled {
        println!(
            "pre-filled   {} of {} fields hold what national data told through the hub ({:.0} %)",
            filled.fields.len(),
            filled.on_form,
            100.0 * filled.ratio()
        );
        if !filled.fields.is_empty() {
            println!("             {}", filled.fields.join(" "));
        }
    }
    if let Some(prefill) = d.prefill {
        println!(
            "reported     {} of {} fields from national data, as the one-stop system said ({:.0} %)",
            prefill.from_national_data,
            prefill.fields_on_form,
            100.0 * prefill.ratio()
        );
    }
    if let Some(supplement) = &d.supplement {
        println!(
            "supplement   asked {} for {}; due {}{}",
            local(supplement.requested_at),
            supplement.items.join(", "),
            local(supplement.due_at),
            if supplement.overdue_at.is_some() {
                " (overdue)"
            } else {
                ""
            }
        );
    }
    if let Some(completed) = d.completed_at {
        println!("completed    {}", local(completed));
    }
    println!();
    println!(
        "{:<26} {:<8} {:<17} {:<17} FINISHED",
        "STEP", "STATE", "STARTED", "DUE"
    );
    for step in &d.steps {
        let late = if step.overdue_at.is_some() {
            " (overdue)"
        } else {
            ""
        };
        println!(
            "{:<26} {:<8} {:<17} {:<17} {}{late}",
            step.name,
            step.state,
            maybe(step.started_at),
            maybe(step.due_at),
            maybe(step.finished_at)
        );
        for document in &step.documents {
            println!(
                "    {} {}",
                document.result_type,
                printable(&document.document_reference)
            );
        }
        if let Some(error) = &step.error {
            println!("    error: {}", printable(error));
        }
    }
    if !d.told.is_empty() {
        println!();
        println!(
            "{:<32} {:<17} {:<17} NOTE",
            "TOLD ONCE", "DELIVERED", "ACKNOWLEDGED"
        );
        for told in &d.told {
            let mut notes = Vec::new();
            if told.deliveries > 1 {
                notes.push(format!("handed over {} times", told.deliveries));
            }
            if !told.entitled {
                notes.push("no longer entitled (right revoked or system disabled)".to_owned());
            }
            if told.delivered_at.is_none() {
                notes.push("entitled, not yet handed over".to_owned());
            }
            println!(
                "{:<32} {:<17} {:<17} {}",
                printable(&told.recipient),
                maybe(told.delivered_at),
                maybe(told.acknowledged_at),
                notes.join("; ")
            );
        }
    }
    println!();
    println!("timeline");
    for entry in &d.timeline {
        println!(
            "  {}  {:<3} {:<40} {:<26} {}",
            local(entry.at),
            entry.direction,
            printable(&entry.event_type),
            printable(&entry.by),
            printable(&entry.what)
        );
    }
}

/// The mean of ratios from 0 to 1, as a percentage.
fn average(ratios: &[f64]) -> f64 {
    100.0 * ratios.iter().sum::<f64>() / ratios.len().max(1) as f64
}
