//! `lienthong systems`: member systems, their bearer tokens and their rights. A token is printed
//! once, on stdout alone, so scripts can capture it; everything else goes to stderr. Changes made
//! here reach running hubs within their `access.refresh_interval_ms`.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use super::text::printable;
use crate::access::{
    AccessCatalogue, Credentials, Direction, Grant, Granted, IssuedToken, Resource, Rights,
};
use crate::config::Config;
use crate::domain::SystemId;
use crate::registry::Catalogue;

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
        /// The token stops working after this long, e.g. 90d or 12h (default: never).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
    },
    /// Issue another token for an existing system (for rotation: revoke the old one after).
    Token {
        id: String,
        /// The token stops working after this long, e.g. 90d or 12h (default: never).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
    },
    /// List a system's credentials, tokens and client certificates (ids, expiry and state; the
    /// tokens themselves are never stored).
    #[command(alias = "tokens")]
    Credentials { id: String },
    /// Register a client certificate (PEM) that identifies the system over mutual TLS; revoke
    /// it like a token (`revoke-credential --id ID`).
    Cert {
        id: String,
        /// The certificate, PEM (the private key stays with the member system).
        #[arg(long)]
        file: std::path::PathBuf,
    },
    /// Revoke one credential (--id N: a token or a client certificate) or all tokens
    /// (--all-tokens) of a system. Running hubs refuse them within seconds and end the
    /// subscriptions they opened.
    #[command(alias = "revoke-token")]
    RevokeCredential {
        id: String,
        #[command(flatten)]
        which: WhichCredentials,
        #[command(flatten)]
        by: By,
    },
    /// Disable a system: none of its tokens works until it is enabled again.
    Disable { id: String },
    /// Enable a disabled system.
    Enable { id: String },
    /// Make a system an operator, or remove operator status with --remove.
    Operator {
        id: String,
        #[arg(long)]
        remove: bool,
    },
    /// Allow a system (the national portal) to ask for citizens' "who used my data" reports
    /// over gRPC (`AuditService.CitizenReport`) without making it an operator; --remove stops it.
    CitizenReports {
        id: String,
        #[arg(long)]
        remove: bool,
    },
    /// List member systems.
    List,
    /// Grant a right: a system may publish or subscribe an event type (or a whole topic) for
    /// the given purposes, on behalf of the data's owner.
    Grant(GrantArgs),
    /// Revoke a right (its id is in `systems rights`).
    RevokeRight {
        id: String,
        right: i64,
        #[command(flatten)]
        by: By,
    },
    /// Show exactly what a system may publish and subscribe, for which purposes and why.
    Rights {
        id: String,
        /// Also show revoked rights.
        #[arg(long)]
        all: bool,
    },
    /// The most recent refused attempts (who tried what, when, why).
    Denials {
        /// Only this system's.
        id: Option<String>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..))]
        limit: u16,
    },
}

#[derive(Debug, Args)]
pub struct By {
    /// Who makes this change (recorded with it), e.g. an operator's name or staff id.
    #[arg(long, env = "LIENTHONG_OPERATOR", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    by: String,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct WhichCredentials {
    /// The credential's id, a token or a client certificate (see `systems credentials`).
    /// (Named apart from the system's id, which the command also takes.)
    #[arg(long = "id")]
    credential: Option<i64>,
    /// Every token of the system (its certificates stay: revoke them by id).
    #[arg(long)]
    all_tokens: bool,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct GrantDirection {
    /// The system may publish the events.
    #[arg(long)]
    publish: bool,
    /// The system may subscribe to the events.
    #[arg(long)]
    subscribe: bool,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct GrantResource {
    /// One event type, e.g. birth.dossier-submitted.
    #[arg(long)]
    event_type: Option<String>,
    /// Every event type of one topic, e.g. lienthong.birth.
    #[arg(long)]
    topic: Option<String>,
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The system receiving the right.
    id: String,
    #[command(flatten)]
    direction: GrantDirection,
    #[command(flatten)]
    resource: GrantResource,
    /// A purpose the right covers (repeat for several), from schemas/access/purposes.toml.
    #[arg(long = "purpose", required = true)]
    purposes: Vec<String>,
    /// The data provider (a member system) on whose behalf the right is granted.
    #[arg(long)]
    owner: String,
    /// The agreement or request the right rests on.
    #[arg(long, default_value = "")]
    note: String,
    #[command(flatten)]
    by: By,
}

fn system_id(raw: &str) -> anyhow::Result<SystemId> {
    SystemId::parse(raw).with_context(|| format!("system id {raw:?}"))
}

fn expiry(expires_in: Option<Duration>) -> anyhow::Result<Option<DateTime<Utc>>> {
    expires_in
        .map(|d| {
            anyhow::ensure!(!d.is_zero(), "--expires-in must be longer than 0");
            chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| Utc::now().checked_add_signed(d))
                .context("--expires-in is too far in the future")
        })
        .transpose()
}

fn when(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "-".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M").to_string(),
    )
}

fn print_token(issued: &IssuedToken, what: &str) {
    let expiry = issued
        .expires_at
        .map(|t| format!(", expires {}", t.format("%Y-%m-%d %H:%M UTC")))
        .unwrap_or_default();
    eprintln!(
        "{what} for {} (token #{}{expiry}); keep it, it is shown once:",
        issued.system, issued.id
    );
    println!("{}", issued.token);
}

/// What a grant may name, read from the configured catalogue folder.
pub(super) fn access_catalogue(config: &Config) -> anyhow::Result<AccessCatalogue> {
    let catalogue = Catalogue::load(&config.schemas.dir)?;
    Ok(crate::app::access_catalogue(
        &config.schemas.dir,
        &catalogue,
    )?)
}

pub async fn run(command: SystemsCommand, config: Config) -> anyhow::Result<()> {
    let pool = crate::db::pool(&config.database)?;
    crate::db::migrate(&pool)
        .await
        .context("preparing the database")?;
    let credentials = Credentials::new(pool.clone());
    let rights = Rights::new(pool);
    match command {
        SystemsCommand::Add {
            id,
            name,
            operator,
            expires_in,
        } => {
            let id = system_id(&id)?;
            let name = name.unwrap_or_else(|| id.to_string());
            let issued = credentials
                .add_system(&id, &name, operator, expiry(expires_in)?)
                .await?;
            print_token(&issued, "member system created; first token");
            eprintln!("it has no rights yet: grant them with `lienthong systems grant {id} ...`");
        }
        SystemsCommand::Token { id, expires_in } => {
            let issued = credentials
                .issue_token(&system_id(&id)?, expiry(expires_in)?)
                .await?;
            print_token(&issued, "new token");
        }
        SystemsCommand::Credentials { id } => {
            println!(
                "{:>6}  {:<11}  {:<16}  {:<16}  {:<16}  {:<16}  subject",
                "id", "kind", "created", "expires", "revoked", "revoked by"
            );
            for c in credentials.credentials(&system_id(&id)?).await? {
                println!(
                    "{:>6}  {:<11}  {:<16}  {:<16}  {:<16}  {:<16}  {}",
                    c.id,
                    c.kind,
                    when(Some(c.created_at)),
                    when(c.expires_at),
                    when(c.revoked_at),
                    printable(c.revoked_by.as_deref().unwrap_or("-")),
                    printable(&c.subject),
                );
            }
        }
        SystemsCommand::Cert { id, file } => {
            let id = system_id(&id)?;
            let pem =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let (credential, expires) = credentials.add_certificate(&id, &pem).await?;
            eprintln!(
                "certificate registered for {id} as credential #{credential}; it expires {}",
                expires.format("%Y-%m-%d %H:%M UTC")
            );
        }
        SystemsCommand::RevokeCredential { id, which, by } => {
            let id = system_id(&id)?;
            // The group guarantees one of the two: an id, or every token (None).
            let credential = if which.all_tokens {
                None
            } else {
                which.credential
            };
            let revoked = credentials
                .revoke_credentials(&id, credential, &by.by)
                .await?;
            eprintln!("{revoked} credential(s) of {id} revoked");
        }
        SystemsCommand::Disable { id } => {
            let id = system_id(&id)?;
            credentials.set_disabled(&id, true).await?;
            eprintln!("{id} disabled: none of its tokens works until `systems enable {id}`");
        }
        SystemsCommand::Enable { id } => {
            let id = system_id(&id)?;
            credentials.set_disabled(&id, false).await?;
            eprintln!("{id} enabled");
        }
        SystemsCommand::Operator { id, remove } => {
            let id = system_id(&id)?;
            credentials.set_operator(&id, !remove).await?;
            let state = if remove { "is no longer" } else { "is now" };
            eprintln!("{id} {state} an operator");
        }
        SystemsCommand::CitizenReports { id, remove } => {
            let id = system_id(&id)?;
            credentials.set_citizen_reports(&id, !remove).await?;
            let state = if remove { "may no longer" } else { "may now" };
            eprintln!("{id} {state} ask for citizens' reports");
        }
        SystemsCommand::List => {
            println!(
                "{:<32} {:<32} {:<8} {:<8} {:<8} {:>6}  {:<16}  created",
                "system", "name", "operator", "reports", "state", "creds", "next expiry"
            );
            for s in credentials.list_systems().await? {
                println!(
                    "{:<32} {:<32} {:<8} {:<8} {:<8} {:>6}  {:<16}  {}",
                    s.id,
                    printable(&s.name),
                    if s.operator { "yes" } else { "no" },
                    if s.operator || s.citizen_reports {
                        "yes"
                    } else {
                        "no"
                    },
                    if s.disabled_at.is_some() {
                        "disabled"
                    } else {
                        "active"
                    },
                    s.active_credentials,
                    when(s.next_expiry),
                    s.created_at.format("%Y-%m-%d %H:%M")
                );
            }
        }
        SystemsCommand::Grant(args) => {
            // The group guarantees exactly one of the two.
            let resource = match (args.resource.event_type, args.resource.topic) {
                (Some(event_type), _) => Resource::EventType(event_type),
                (None, topic) => Resource::Topic(topic.unwrap_or_default()),
            };
            let grant = Grant {
                system: system_id(&args.id)?,
                direction: if args.direction.publish {
                    Direction::Publish
                } else {
                    Direction::Subscribe
                },
                resource,
                purposes: args.purposes,
                owner: system_id(&args.owner).context("--owner")?,
                granted_by: args.by.by,
                note: args.note,
            };
            let granted = rights.grant(&grant, &access_catalogue(&config)?).await?;
            let what = match granted {
                Granted::New(id) => format!("right #{id} granted"),
                Granted::Existing(id) => format!("already granted as right #{id}; nothing changed"),
            };
            eprintln!(
                "{what}: {} may {} {} for {}",
                grant.system,
                grant.direction,
                grant.resource,
                grant.purposes.join(", ")
            );
        }
        SystemsCommand::RevokeRight { id, right, by } => {
            let id = system_id(&id)?;
            rights.revoke(&id, right, &by.by).await?;
            eprintln!("right #{right} of {id} revoked");
        }
        SystemsCommand::Rights { id, all } => {
            let id = system_id(&id)?;
            credentials.require_system_exists(&id).await?;
            let list = rights.list(&id, all).await?;
            if list.is_empty() {
                eprintln!(
                    "{id} has no rights: it can neither publish nor subscribe (default deny)"
                );
            }
            println!(
                "{:>5}  {:<9}  {:<38}  {:<32}  {:<20}  {:<16}  {:<16}  why",
                "right",
                "direction",
                "event type / topic",
                "purposes",
                "owner",
                "granted by",
                "granted"
            );
            for r in list {
                let granted = match &r.revoked_at {
                    Some(at) => format!(
                        "revoked {} by {}",
                        at.format("%Y-%m-%d %H:%M"),
                        r.revoked_by.as_deref().unwrap_or("-")
                    ),
                    None => r.right.granted_at.format("%Y-%m-%d %H:%M").to_string(),
                };
                println!(
                    "{:>5}  {:<9}  {:<38}  {:<32}  {:<20}  {:<16}  {:<16}  {}",
                    r.right.id,
                    r.right.direction,
                    r.right.resource.to_string(),
                    r.right.purposes.join(","),
                    r.right.owner,
                    printable(&r.right.granted_by),
                    printable(&granted),
                    printable(&r.note)
                );
            }
        }
        SystemsCommand::Denials { id, limit } => {
            let id = id.as_deref().map(system_id).transpose()?;
            println!(
                "{:<19}  {:<24}  {:<9}  {:<38}  {:<24}  reason",
                "at (UTC)", "system", "action", "event type", "purpose"
            );
            for d in rights.denials(id.as_ref(), i64::from(limit)).await? {
                println!(
                    "{:<19}  {:<24}  {:<9}  {:<38}  {:<24}  {}",
                    d.at.format("%Y-%m-%d %H:%M:%S"),
                    d.system,
                    d.action,
                    printable(&d.resource),
                    printable(&d.purpose),
                    d.reason
                );
            }
        }
    }
    Ok(())
}
