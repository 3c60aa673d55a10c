//! `lienthong schemas`: check the catalogue before it ships, and write its data dictionary.
//!
//! `check` lints every event type (JSON Schema and Avro in step, every field annotated), compiles
//! it, and compares each Avro schema with its baseline: the versions registered in the hub's
//! database, or the schema at an earlier git revision when no registry is reachable. Any problem
//! fails the command with a readable report.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use apache_avro::Schema;
use clap::{Subcommand, ValueEnum};

use crate::config::Config;
use crate::domain::ReferenceData;
use crate::registry::compatibility::Compatibility;
use crate::registry::store;
use crate::registry::{Catalogue, EventDefinition, EventSchema, RegistryError, dictionary, lint};

#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Lint the catalogue and check every schema's compatibility with its baseline.
    Check {
        /// What to compare with: the registry in the database, an earlier git revision, or the
        /// registry when it answers and git otherwise.
        #[arg(long, value_enum, default_value_t = Baseline::Auto)]
        against: Baseline,
        /// The git revision to compare with when the baseline is git.
        #[arg(long, default_value = "HEAD~1")]
        git_rev: String,
    },
    /// Write the data dictionary as Markdown and HTML.
    Docs {
        #[arg(long, default_value = "docs/data-dictionary")]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Baseline {
    Auto,
    Registry,
    Git,
}

pub async fn run(command: SchemasCommand, config: Config) -> anyhow::Result<()> {
    let catalogue = Catalogue::load(&config.schemas.dir)?;
    match command {
        SchemasCommand::Check { against, git_rev } => {
            check(&config, &catalogue, against, &git_rev).await
        }
        SchemasCommand::Docs { out } => {
            let events = dictionary::describe(&catalogue);
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            std::fs::write(out.join("index.md"), dictionary::markdown(&events))?;
            std::fs::write(out.join("index.html"), dictionary::html(&events))?;
            eprintln!(
                "data dictionary of {} event types written to {}/index.md and index.html",
                events.len(),
                out.display()
            );
            Ok(())
        }
    }
}

async fn check(
    config: &Config,
    catalogue: &Catalogue,
    against: Baseline,
    git_rev: &str,
) -> anyhow::Result<()> {
    let reference = Arc::new(
        ReferenceData::load(&config.schemas.dir.join("reference"))
            .context("loading reference data")?,
    );
    let pool = match against {
        Baseline::Git => None,
        Baseline::Registry | Baseline::Auto => {
            let pool = crate::db::pool(&config.database)?;
            let reachable =
                tokio::time::timeout(Duration::from_secs(3), crate::db::is_reachable(&pool))
                    .await
                    .unwrap_or(false);
            match (reachable, against) {
                (true, _) => Some(pool),
                (false, Baseline::Registry) => bail!("the registry's database is not reachable"),
                (false, _) => None,
            }
        }
    };
    println!(
        "checking {} event types against {}",
        catalogue.events.len(),
        if pool.is_some() {
            "the registered versions".to_owned()
        } else {
            format!("git {git_rev}")
        }
    );
    let mut failed = 0;
    for def in &catalogue.events {
        let mut problems = lint::lint(def);
        let verdict = match EventSchema::compile(def, reference.clone(), &config.kafka.topic_prefix)
        {
            Err(e) => {
                problems.push(e.to_string());
                String::new()
            }
            Ok(schema) => match &pool {
                Some(pool) => against_registry(pool, &schema.subject, def, &mut problems).await?,
                None => against_git(def, git_rev, &mut problems)?,
            },
        };
        if problems.is_empty() {
            println!("  ok    {:<45} {verdict}", def.event_type);
        } else {
            failed += 1;
            println!("  FAIL  {}", def.event_type);
            for problem in problems {
                println!("        - {problem}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} event type(s) failed the check");
    }
    println!("all event types pass");
    Ok(())
}

async fn against_registry(
    pool: &deadpool_postgres::Pool,
    subject: &str,
    def: &EventDefinition,
    problems: &mut Vec<String>,
) -> anyhow::Result<String> {
    if let Some(found) =
        store::lookup(pool, subject, store::SchemaType::Avro, &def.avro_text).await?
    {
        return Ok(format!(
            "registered as version {} (id {})",
            found.version, found.id
        ));
    }
    match store::compatibility_problems(
        pool,
        subject,
        None,
        store::SchemaType::Avro,
        &def.avro_text,
    )
    .await
    {
        Ok(found) if found.is_empty() => Ok("compatible: would become a new version".to_owned()),
        Ok(found) => {
            problems.extend(found);
            Ok(String::new())
        }
        Err(RegistryError::SubjectNotFound(_)) => Ok("new subject".to_owned()),
        Err(e) => Err(e.into()),
    }
}

fn against_git(
    def: &EventDefinition,
    rev: &str,
    problems: &mut Vec<String>,
) -> anyhow::Result<String> {
    let path = format!("schemas/events/{}.avsc", def.event_type);
    let output = Command::new("git")
        .args(["show", &format!("{rev}:{path}")])
        .output()
        .context("running git")?;
    if !output.status.success() {
        return Ok(format!("new since {rev}"));
    }
    let old = Schema::parse_str(&String::from_utf8_lossy(&output.stdout));
    let new = Schema::parse_str(&def.avro_text);
    match (old, new) {
        (Ok(old), Ok(new)) => {
            let found = Compatibility::default().check(&new, &[old]);
            if found.is_empty() {
                Ok(format!(
                    "{} compatible with {rev}",
                    Compatibility::default()
                ))
            } else {
                problems.extend(found);
                Ok(String::new())
            }
        }
        (Err(e), _) => Ok(format!(
            "the schema at {rev} does not parse ({e}); not compared"
        )),
        (_, Err(e)) => {
            problems.push(format!("does not parse: {e}"));
            Ok(String::new())
        }
    }
}
