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
        /// A file holding the bearer token callers must present.
        #[arg(long, env = "LIENTHONG_SANDBOX_TOKEN_FILE")]
        token_file: PathBuf,
        /// A TOML file of faults per system (`[civil-status]` error_rate = 0.3, …); they can
        /// also be changed while running: PUT /sandbox/v1/faults/{system}.
        #[arg(long)]
        faults: Option<PathBuf>,
    },
}

pub async fn run(command: SandboxCommand, config: Config) -> anyhow::Result<()> {
    match command {
        SandboxCommand::Serve {
            listen,
            token_file,
            faults,
        } => {
            let token = std::fs::read_to_string(&token_file)
                .with_context(|| format!("reading the token file {}", token_file.display()))?
                .trim()
                .to_owned();
            anyhow::ensure!(
                token.len() >= 16,
                "the token in {} is shorter than 16 characters",
                token_file.display()
            );
            let faults = match faults {
                None => Default::default(),
                Some(file) => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    toml::from_str(&text).with_context(|| format!("{}", file.display()))?
                }
            };
            let pool = crate::db::pool(&config.database)?;
            crate::sandbox::serve(pool, listen, token, faults, crate::app::wait_for_signal())
                .await?;
            Ok(())
        }
    }
}
