//! `lienthong bench --dossiers N`: the procedure engine's own pace, on a database of its own. A
//! hub started for it runs the engine (as a member system of the bench's) and nothing else; the
//! bench publishes N birth dossiers asking for the card, waits until the engine opened them all,
//! then answers for the civil-status and social-insurance systems straight through the hub (so
//! the national systems' pace is left out) and waits until every dossier is completed and every
//! decision relayed. Each dossier is 3 events in and 6 out (acceptance, 4 statuses, result).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use deadpool_postgres::Pool;
use serde_json::Value;
use tonic::transport::Channel;

use super::hub_client::{Client, client};
use crate::access::{Credentials, Direction, Grant, Resource, Rights};
use crate::api::convert::json_to_struct;
use crate::app::Hub;
use crate::config::Config;
use crate::domain::SystemId;
use crate::proto::PublishRequest;

/// How long the bench waits for the engine before giving up.
const PATIENCE: Duration = Duration::from_secs(600);

/// How long each phase took.
pub(super) struct Phases {
    pub opened: Duration,
    pub completed: Duration,
}

fn example(config: &Config, path: &str) -> anyhow::Result<Value> {
    let path = config.schemas.dir.join("examples").join(path);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn request(event_type: &str, purpose: &str, code: &str, mut payload: Value) -> PublishRequest {
    payload["dossier_code"] = Value::String(code.to_owned());
    PublishRequest {
        event_type: event_type.into(),
        correlation_id: code.into(),
        purpose: purpose.into(),
        legal_basis: "Decree 63/2024/ND-CP".into(),
        payload: Some(json_to_struct(payload)),
        ..PublishRequest::default()
    }
}

/// Registers `system` with the rights `rights` ((direction, event type, purpose)); its token.
async fn member(
    pool: &Pool,
    config: &Config,
    system: &str,
    rights: &[(Direction, &str, &str)],
) -> anyhow::Result<String> {
    let id = SystemId::parse(system)?;
    let token = Credentials::new(pool.clone())
        .add_system(&id, system, false, None)
        .await?
        .token;
    let catalogue = super::systems::access_catalogue(config)?;
    for (direction, event_type, purpose) in rights {
        let grant = Grant {
            system: id.clone(),
            direction: *direction,
            resource: Resource::EventType((*event_type).to_owned()),
            purposes: vec![(*purpose).to_owned()],
            owner: id.clone(),
            granted_by: "lienthong bench".to_owned(),
            note: "benchmark".to_owned(),
        };
        Rights::new(pool.clone()).grant(&grant, &catalogue).await?;
    }
    Ok(token)
}

/// Publishes `requests` in calls of at most `max_batch`; fails unless every one is accepted.
async fn publish_all(
    client: &mut Client,
    requests: Vec<PublishRequest>,
    max_batch: usize,
) -> anyhow::Result<()> {
    for chunk in requests.chunks(max_batch.max(1)) {
        let answer = client
            .publish_batch(futures::stream::iter(chunk.to_vec()))
            .await?
            .into_inner();
        anyhow::ensure!(
            answer.accepted as usize == chunk.len(),
            "only {} of {} events accepted",
            answer.accepted,
            chunk.len()
        );
    }
    Ok(())
}

/// Waits until `sql` (a count) reaches `target`.
async fn until(pool: &Pool, sql: &str, target: usize, started: Instant) -> anyhow::Result<()> {
    loop {
        let count: i64 = pool.get().await?.query_one(sql, &[]).await?.get(0);
        if usize::try_from(count).unwrap_or_default() >= target {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < PATIENCE,
            "the engine got {count} of {target} dossiers this far in {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the measurement on a database of its own (`database`); `config` is the bench's.
pub(super) async fn run(
    config: &Config,
    database: crate::config::DatabaseConfig,
    dossiers: usize,
) -> anyhow::Result<Phases> {
    let mut config = config.clone();
    config.database = database;
    config.connectors.enabled = false;
    config.procedures.enabled = true;
    config.procedures.relay_interval_ms = 50;
    let pid = std::process::id();
    config.procedures.system = format!("bench-engine-{pid}");
    config.kafka.topic_prefix = format!("{}procedures.", config.kafka.topic_prefix);
    let pool = crate::db::pool(&config.database)?;
    crate::db::migrate(&pool).await?;
    let engine_rights: Vec<(Direction, &str, &str)> = crate::procedures::rights()
        .into_iter()
        .map(|(direction, event_type)| (direction, event_type, crate::procedures::PURPOSE))
        .collect();
    member(&pool, &config, &config.procedures.system, &engine_rights).await?;
    let purpose = "civil-registration";
    let token = member(
        &pool,
        &config,
        &format!("bench-systems-{pid}"),
        &[
            (Direction::Publish, "birth.dossier-submitted", purpose),
            (
                Direction::Publish,
                "birth.civil-registration-completed",
                purpose,
            ),
            (
                Direction::Publish,
                "birth.health-insurance-card-issued",
                purpose,
            ),
        ],
    )
    .await?;
    let hub = Hub::start(config.clone())
        .await
        .context("starting a hub for the engine's bench")?;
    let channel = Channel::from_shared(format!("http://{}", hub.grpc_addr))?
        .connect()
        .await?;
    let mut systems = client(channel, &token)?;

    let today = chrono::Utc::now()
        .with_timezone(&crate::domain::vietnam())
        .format("%y%m%d")
        .to_string();
    let codes: Vec<String> = (0..dossiers)
        .map(|i| format!("G22.99.08-{today}-{:03}{i:06}", pid % 1000))
        .collect();
    let mut submission = example(&config, "birth.dossier-submitted/valid-card-only.json")?;
    let now = chrono::Utc::now().with_timezone(&crate::domain::vietnam());
    super::hub_client::received_on_time(
        &mut submission,
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        now.date_naive(),
    );
    let registration = example(
        &config,
        "birth.civil-registration-completed/valid-danang.json",
    )?;
    let card = example(
        &config,
        "birth.health-insurance-card-issued/valid-te-card.json",
    )?;
    let max_batch = config.limits.max_batch_events;

    let started = Instant::now();
    let submissions = codes
        .iter()
        .map(|code| {
            let mut submission = submission.clone();
            super::hub_client::own_birth_certificate(&mut submission, code);
            request("birth.dossier-submitted", purpose, code, submission)
        })
        .collect();
    publish_all(&mut systems, submissions, max_batch).await?;
    until(
        &pool,
        "SELECT count(*) FROM procedure_instance",
        dossiers,
        started,
    )
    .await?;
    let opened = started.elapsed();

    let answered = Instant::now();
    let answers = codes
        .iter()
        .flat_map(|code| {
            [
                request(
                    "birth.civil-registration-completed",
                    purpose,
                    code,
                    registration.clone(),
                ),
                request(
                    "birth.health-insurance-card-issued",
                    purpose,
                    code,
                    card.clone(),
                ),
            ]
        })
        .collect();
    publish_all(&mut systems, answers, max_batch).await?;
    until(
        &pool,
        "SELECT count(*) FROM procedure_instance i WHERE state = 'completed'
           AND NOT EXISTS (SELECT 1 FROM procedure_outbox o
                           WHERE o.dossier_code = i.dossier_code AND o.published_at IS NULL)",
        dossiers,
        answered,
    )
    .await?;
    let completed = answered.elapsed();
    hub.shutdown().await?;
    Ok(Phases { opened, completed })
}
