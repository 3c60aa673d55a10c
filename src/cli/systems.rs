//! `lienthong systems`: member systems and their bearer tokens. A token is printed once, on
//! stdout alone, so scripts can capture it; everything else goes to stderr.

use anyhow::Context as _;
use clap::Subcommand;

use crate::access::Credentials;
use crate::config::Config;
use crate::domain::SystemId;

#[derive(Debug, Subcommand)]
pub enum SystemsCommand {
    /// Register a member system and print its first token.
    Add {
        /// Id, e.g. danang-onestop (a-z, 0-9, '-').
        id: String,
        /// Human name, e.g. "Da Nang one-stop system".
        #[arg(long)]
        name: Option<String>,
        /// May change the hub itself (register schemas, set compatibility levels).
        #[arg(long)]
        operator: bool,
    },
    /// Issue another token for an existing system (for rotation).
    Token { id: String },
    /// List member systems.
    List,
}

pub async fn run(command: SystemsCommand, config: Config) -> anyhow::Result<()> {
    let pool = crate::db::pool(&config.database)?;
    crate::db::migrate(&pool)
        .await
        .context("preparing the database")?;
    let credentials = Credentials::new(pool);
    match command {
        SystemsCommand::Add { id, name, operator } => {
            let id = SystemId::parse(&id).with_context(|| format!("system id {id:?}"))?;
            let name = name.unwrap_or_else(|| id.to_string());
            let issued = credentials.add_system(&id, &name, operator).await?;
            eprintln!(
                "member system {} created; keep this token, it is shown once:",
                issued.system
            );
            println!("{}", issued.token);
        }
        SystemsCommand::Token { id } => {
            let id = SystemId::parse(&id).with_context(|| format!("system id {id:?}"))?;
            let issued = credentials.issue_token(&id).await?;
            eprintln!("new token for {}; it is shown once:", issued.system);
            println!("{}", issued.token);
        }
        SystemsCommand::List => {
            println!("{:<32} {:<40} {:>6}  created", "system", "name", "tokens");
            for s in credentials.list_systems().await? {
                println!(
                    "{:<32} {:<40} {:>6}  {}",
                    s.id,
                    s.name,
                    s.active_tokens,
                    s.created_at.format("%Y-%m-%d %H:%M")
                );
            }
        }
    }
    Ok(())
}
