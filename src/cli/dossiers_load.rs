//! `lienthong dossiers load`: N birth dossiers through a running hub, its connectors and the
//! national systems (the sandboxes, in the demo), as a province's one-stop systems would send
//! them, `--concurrency` at a time. The engine's own record of each dossier (received,
//! completed) then gives the throughput and the latency from submission to result, as
//! percentiles. `deploy/local/demo.sh --dossiers N` runs it against the demo's hub.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{SecondsFormat, Utc};
use clap::Args;
use deadpool_postgres::Pool;
use futures::StreamExt as _;
use rand::Rng as _;
use serde_json::Value;

use tonic_types::StatusExt as _;

use super::hub_client::{
    birth_submission, client, connect, own_birth_certificate, received_on_time,
};
use crate::proto::PublishRequest;

/// How long the load waits for its dossiers to complete before giving up.
const PATIENCE: Duration = Duration::from_secs(600);

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Birth dossiers to submit.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    count: u32,
    /// Dossiers in flight at once (one one-stop connection each).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// The hub's gRPC endpoint.
    #[arg(
        long,
        default_value = "http://127.0.0.1:50051",
        env = "LIENTHONG_ENDPOINT"
    )]
    endpoint: String,
    /// The CA certificate (PEM) to trust for an https endpoint.
    #[arg(long, env = "LIENTHONG_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Bearer token of the one-stop system that submits the dossiers.
    #[arg(long, env = "LIENTHONG_PUBLISHER_TOKEN", hide_env_values = true)]
    publisher_token: String,
    /// The birth dossier each one is made from (its code and receipt time replaced).
    #[arg(
        long,
        default_value = "schemas/examples/birth.dossier-submitted/valid-full.json"
    )]
    example: PathBuf,
}

/// Tries a publish the hub throttled again after the wait its RetryInfo gives, as a one-stop
/// system would: over its call rate is no failure of the dossier.
async fn publish_within_limits(
    hub: &mut super::hub_client::Client,
    request: PublishRequest,
) -> Result<(), tonic::Status> {
    loop {
        match hub.publish(request.clone()).await {
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                let wait = status
                    .get_details_retry_info()
                    .and_then(|info| info.retry_delay)
                    .unwrap_or(Duration::from_millis(10));
                tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
            }
            outcome => return outcome.map(drop),
        }
    }
}

/// What the engine recorded of the load's dossiers.
struct Measured {
    completed: i64,
    seconds: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

pub async fn run(args: LoadArgs, pool: Pool) -> anyhow::Result<()> {
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(&args.example)
            .with_context(|| format!("reading {}", args.example.display()))?,
    )?;
    let channel = connect(&args.endpoint, args.ca_file.as_ref(), None).await?;
    // Codes of their own: the receiving agency, today, a run number and a 5-digit serial (the
    // demo's own dossiers have 6 digits), so the load finds exactly its dossiers.
    let now = Utc::now().with_timezone(&crate::domain::vietnam());
    let prefix = format!(
        "G22.99.08-{}-{:04}",
        now.format("%y%m%d"),
        rand::rng().random_range(0..10_000)
    );
    println!(
        "submitting {} birth dossiers, {} at a time ({prefix}…)",
        args.count, args.concurrency
    );
    let started = Instant::now();
    let submitted = futures::stream::iter(0..args.concurrency)
        .map(|worker| {
            let (channel, example, prefix) = (channel.clone(), example.clone(), prefix.clone());
            let (count, concurrency) = (args.count, args.concurrency);
            let token = args.publisher_token.clone();
            async move {
                let mut hub = client(channel, &token)?;
                let mut sent = 0u32;
                for index in (worker..count).step_by(concurrency as usize) {
                    let code = format!("{prefix}{index:05}");
                    let mut dossier = example.clone();
                    dossier["dossier_code"] = Value::String(code.clone());
                    own_birth_certificate(&mut dossier, &code);
                    // Received when submitted: the latency runs from here to the result.
                    let now = Utc::now().with_timezone(&crate::domain::vietnam());
                    received_on_time(
                        &mut dossier,
                        now.to_rfc3339_opts(SecondsFormat::Millis, false),
                        now.date_naive(),
                    );
                    publish_within_limits(&mut hub, birth_submission(&code, &dossier))
                        .await
                        .with_context(|| format!("submitting {code}"))?;
                    sent += 1;
                }
                anyhow::Ok(sent)
            }
        })
        .buffer_unordered(args.concurrency as usize)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum::<anyhow::Result<u32>>()?;
    println!(
        "submitted {submitted} in {:.1} s; waiting for their results",
        started.elapsed().as_secs_f64()
    );
    let measured = until_completed(&pool, &prefix, i64::from(submitted), started).await?;
    println!();
    println!("| dossiers | in flight | seconds | dossiers/s | p50 ms | p95 ms | p99 ms | max ms |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
        measured.completed,
        args.concurrency,
        measured.seconds,
        measured.completed as f64 / measured.seconds.max(f64::EPSILON),
        measured.p50 * 1000.0,
        measured.p95 * 1000.0,
        measured.p99 * 1000.0,
        measured.max * 1000.0
    );
    println!(
        "(from each dossier's receipt to its result returned, as the engine recorded them; \
         seconds from the first receipt to the last result)"
    );
    Ok(())
}

/// Waits until every dossier of the load is completed; what the engine recorded of them.
async fn until_completed(
    pool: &Pool,
    prefix: &str,
    submitted: i64,
    started: Instant,
) -> anyhow::Result<Measured> {
    let pattern = format!("{prefix}_____");
    let mut reported = Instant::now();
    loop {
        let row = pool
            .get()
            .await?
            .query_one(
                "SELECT count(*) FILTER (WHERE state = 'completed'),
                    extract(epoch FROM max(completed_at) - min(received_at))::float8,
                    percentile_cont(ARRAY[0.5, 0.95, 0.99, 1.0]) WITHIN GROUP
                        (ORDER BY extract(epoch FROM completed_at - received_at)::float8)
                 FROM procedure_instance WHERE dossier_code LIKE $1",
                &[&pattern],
            )
            .await?;
        let completed: i64 = row.get(0);
        if completed >= submitted {
            let quantiles: Vec<f64> = row.get(2);
            let at = |i: usize| quantiles.get(i).copied().unwrap_or_default();
            return Ok(Measured {
                completed,
                seconds: row.get::<_, Option<f64>>(1).unwrap_or_default(),
                p50: at(0),
                p95: at(1),
                p99: at(2),
                max: at(3),
            });
        }
        anyhow::ensure!(
            started.elapsed() < PATIENCE,
            "{completed} of {submitted} dossiers completed in {PATIENCE:?}; `lienthong dossiers \
             list` shows where the others wait"
        );
        if reported.elapsed() >= Duration::from_secs(5) {
            println!("  {completed} of {submitted} completed");
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
