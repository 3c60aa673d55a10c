//! `lienthong sandbox serve`: the national systems' stand-ins as a process of their own, for
//! the demo, the tests and every province's developers.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Serve the stand-ins over HTTP until SIGTERM or Ctrl-C; their state is kept in
    /// PostgreSQL (schema sandbox_*), so a restart keeps it.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8095")]
        listen: SocketAddr,
        /// A file holding the bearer token callers must present (the fault controls, and every
        /// system without a token of its own).
        #[arg(long, env = "LIENTHONG_SANDBOX_TOKEN_FILE")]
        token_file: PathBuf,
        /// A system's own token: SYSTEM=FILE (civil-status, population, residence,
        /// social-insurance, paygov, portal); repeatable.
        #[arg(long, value_name = "SYSTEM=FILE")]
        system_token: Vec<String>,
        /// A TOML file of faults per system (`[civil-status]` error_rate = 0.3, …); they can
        /// also be changed while running: PUT /sandbox/v1/faults/{system}.
        #[arg(long)]
        faults: Option<PathBuf>,
        /// A file holding PayGov's merchant secret (transactions' checksums, callbacks'
        /// signatures); the token's file when absent.
        #[arg(long, env = "LIENTHONG_PAYGOV_SECRET_FILE")]
        paygov_secret_file: Option<PathBuf>,
        /// Draw new personal ID numbers in this seed's sequence (the same at every start, so
        /// a restart meets the numbers it gave before and skips them) instead of at random.
        #[arg(long)]
        id_seed: Option<u64>,
    },
    /// Add a synthetic population to the population-database sandbox: households, addresses
    /// on the province's current communes, valid and unique personal IDs.
    Seed {
        /// How many citizens.
        #[arg(long, default_value_t = 1000)]
        citizens: u64,
        /// A current two-digit province code (schemas/reference/provinces.csv).
        #[arg(long, default_value = "48")]
        province: String,
        /// The same seed gives the same population.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// A bearer token from its file: at least 16 characters, surrounding spaces removed.
fn read_token(file: &std::path::Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(file)
        .with_context(|| format!("reading the token file {}", file.display()))?
        .trim()
        .to_owned();
    anyhow::ensure!(
        token.len() >= 16,
        "the token in {} is shorter than 16 characters",
        file.display()
    );
    Ok(token)
}

pub async fn run(command: SandboxCommand, config: Config) -> anyhow::Result<()> {
    match command {
        SandboxCommand::Serve {
            listen,
            token_file,
            faults,
            paygov_secret_file,
            system_token,
            id_seed,
        } => {
            // Its own failures (a pool exhausted, a query refused) are logged as the hub's are.
            let _telemetry = crate::telemetry::init(&config.log)?;
            let token = read_token(&token_file)?;
            let mut systems = std::collections::HashMap::new();
            for pair in system_token {
                let Some((system, file)) = pair.split_once('=') else {
                    anyhow::bail!("--system-token {pair:?}: give SYSTEM=FILE");
                };
                systems.insert(system.to_owned(), read_token(std::path::Path::new(file))?);
            }
            let faults = match faults {
                None => Default::default(),
                Some(file) => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    toml::from_str(&text).with_context(|| format!("{}", file.display()))?
                }
            };
            let paygov_secret = match paygov_secret_file {
                None => token.clone(),
                Some(file) => std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
                    .trim()
                    .to_owned(),
            };
            let pool = crate::db::pool(&config.database)?;
            let credentials = crate::sandbox::Credentials {
                admin: token,
                systems,
                paygov_secret,
            };
            crate::sandbox::serve(
                pool,
                listen,
                credentials,
                faults,
                crate::sandbox::IdDraws::new(id_seed),
                crate::app::wait_for_signal(),
            )
            .await?;
            Ok(())
        }
        SandboxCommand::Seed {
            citizens,
            province,
            seed,
        } => {
            let pool = crate::db::pool(&config.database)?;
            let bar = indicatif::ProgressBar::new(citizens);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} citizens ({per_sec})",
                )
                .context("the progress bar's template")?
                .progress_chars("=> "),
            );
            let reference = config.schemas.dir.join("reference");
            let seeded =
                crate::sandbox::seed::seed(&pool, &reference, &province, citizens, seed, |n| {
                    bar.set_position(n)
                })
                .await?;
            bar.finish_and_clear();
            println!(
                "{} citizens in {} households of province {province} added in {:.1} s",
                seeded.citizens,
                seeded.households,
                seeded.elapsed.as_secs_f64()
            );
            if seeded.skipped > 0 {
                println!(
                    "{} generated numbers were given out by the API already and were left out",
                    seeded.skipped
                );
            }
            Ok(())
        }
    }
}
