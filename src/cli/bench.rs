//! `lienthong bench`: where the time goes, measured in one run on this machine, printed as a
//! table of records per second and ratios (absolute figures move from run to run; ratios less).
//! It measures the validation pipeline per stage on one core, the raw idempotent producer as
//! the yardstick (bare, and with the envelope headers every hub record carries, which the broker
//! pays for too), validated publishing through the hub's own `PublishBatch`, and the latency of
//! unary `Publish` at a fixed offered rate; ratios are to the raw producer with headers.

use std::collections::HashMap;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::message::OwnedHeaders;
use serde_json::Value;
use tonic::transport::Channel;

use crate::access::{Credentials, Direction, Grant, Resource, Rights};
use crate::app::Hub;
use crate::audit::{self, Crossing, Ledger, SubjectKeys};
use crate::bus::{Envelope, Producer};
use crate::config::Config;
use crate::domain::{DossierCode, ReferenceData, SystemId};
use crate::proto::PublishRequest;
use crate::registry::{Catalogue, EventSchema};

use super::bench_chart;
use super::bench_latency::{self, OpenLoop};

const EVENT_TYPE: &str = "birth.dossier-submitted";
const EXAMPLE: &str = "examples/birth.dossier-submitted/valid-full.json";
/// Issue 21's goal for unary `Publish`'s p99, in milliseconds.
const UNARY_P99_GOAL_MS: f64 = 20.0;
/// Records sent, and not counted, before the producer and publish figures.
const WARM_UP: usize = 200;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Records per measurement.
    #[arg(long, default_value_t = 20_000)]
    records: usize,
    /// Citizens the sandbox's seeder loads, into a database of its own made and dropped by the
    /// bench (0: skip).
    #[arg(long, default_value_t = 1_000_000)]
    seed_citizens: u64,
    /// Birth dossiers the procedure engine takes through, on a database of its own (0: skip).
    #[arg(long, default_value_t = 2_000)]
    dossiers: usize,
    /// Times each figure is measured: the median is printed, with the spread.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    runs: u16,
    /// Unary `Publish` calls started per second, answered or not, for the latency figure
    /// (`--records` calls each run).
    #[arg(long, default_value = "2000", env = "LIENTHONG_BENCH_OFFERED_RATE")]
    offered_rate: NonZeroU32,
    /// Tables (Markdown), or one JSON document for scripts and charts.
    #[arg(long, value_enum, default_value_t = super::connectors::Output::Table)]
    output: super::connectors::Output,
    /// Also draws the figures (records per second, unary latency) as a PNG chart in this file.
    #[arg(long, value_name = "FILE.png")]
    chart: Option<std::path::PathBuf>,
}

/// Runs `work` on a database of its own, made and dropped here, so a bench never adds to a
/// real one.
async fn in_scratch_database<T>(
    config: &Config,
    label: &str,
    work: impl AsyncFnOnce(crate::config::DatabaseConfig) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut url = reqwest::Url::parse(&config.database.url)
        .context("database.url must be a postgres:// URL for the bench")?;
    let name = format!("lienthong_bench_{label}_{}", std::process::id());
    let admin = crate::db::pool(&config.database)?;
    let client = admin.get().await?;
    // Making and dropping a database copies and removes files: on a busy disk (a CI machine
    // building beside it) that outlasts the hub's statement timeout, which is for its queries.
    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .context("the bench's database connection")?;
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .context("the bench needs the right to create a database")?;
    url.set_path(&format!("/{name}"));
    let database = crate::config::DatabaseConfig {
        url: url.to_string(),
        ..config.database.clone()
    };
    let outcome = work(database).await;
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .with_context(|| format!("dropping the bench's database {name}"))?;
    outcome
}

/// What the bench measures on a broker: the raw producer bare and with the envelope headers,
/// the Python pipeline (when a Python with its packages is given), the hub's `PublishBatch`
/// with the hub's peak resident memory meanwhile, and unary `Publish` at a fixed offered rate.
struct OnTheBroker {
    raw_bare: Figure,
    raw: Figure,
    /// The raw producer with the envelope's first N headers: (N, records/s).
    by_headers: Vec<(usize, f64)>,
    python: Option<Figure>,
    published: Figure,
    /// The same with each payload as JSON text (`payload_json`) rather than a `Struct`.
    published_text: Figure,
    peak_rss_mb: Option<f64>,
    unary: Unary,
}

/// Unary `Publish` at a fixed offered rate: each run's latencies from the scheduled start (in
/// milliseconds) and the rate the hub answered at.
struct Unary {
    offered: NonZeroU32,
    calls: usize,
    p50_ms: Figure,
    p99_ms: Figure,
    max_ms: Figure,
    per_second: Figure,
    /// Failed calls, over every run.
    errors: usize,
}

impl Unary {
    fn new(offered: NonZeroU32, calls: usize, runs: &[bench_latency::Run]) -> Self {
        fn ms(latency: Duration) -> f64 {
            latency.as_secs_f64() * 1000.0
        }
        let figure = |of: fn(&bench_latency::Run) -> f64| Figure {
            runs: runs.iter().map(of).collect(),
        };
        Self {
            offered,
            calls,
            p50_ms: figure(|run| ms(run.p50)),
            p99_ms: figure(|run| ms(run.p99)),
            max_ms: figure(|run| ms(run.max)),
            per_second: figure(|run| run.per_second),
            errors: runs.iter().map(|run| run.errors).sum(),
        }
    }
}

/// One figure measured several times: records (or rows) per second, or milliseconds.
#[derive(Debug, Clone)]
struct Figure {
    runs: Vec<f64>,
}

impl Figure {
    fn single(per_second: f64) -> Self {
        Self {
            runs: vec![per_second],
        }
    }

    fn median(&self) -> f64 {
        let mut sorted = self.runs.clone();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        match sorted.len() {
            0 => 0.0,
            len if len % 2 == 0 => (sorted[middle - 1] + sorted[middle]) / 2.0,
            _ => sorted[middle],
        }
    }

    fn min(&self) -> f64 {
        self.runs.iter().copied().fold(f64::INFINITY, f64::min)
    }

    fn max(&self) -> f64 {
        self.runs.iter().copied().fold(0.0, f64::max)
    }
}

/// Measures `one` `runs` times.
async fn repeated(
    runs: u16,
    mut one: impl AsyncFnMut() -> anyhow::Result<f64>,
) -> anyhow::Result<Figure> {
    let mut figure = Figure { runs: Vec::new() };
    for _ in 0..runs {
        figure.runs.push(one().await?);
    }
    Ok(figure)
}

/// On a hub of the bench's own (topics made, a member system granted): the raw producer with
/// none to all of the envelope headers, the Python pipeline, then validated `PublishBatch`
/// (records per second each), then `n` unary `Publish` calls at `offered` a second; every
/// figure `runs` times.
async fn through_a_hub(
    mut config: Config,
    schema: &EventSchema,
    payload: &Value,
    (n, runs, offered): (usize, u16, NonZeroU32),
) -> anyhow::Result<OnTheBroker> {
    config.grpc.listen = "127.0.0.1:0".parse()?;
    config.http.listen = "127.0.0.1:0".parse()?;
    // The per-system limits keep a runaway member from taking the hub from the others; the
    // bench's one member is the load being measured, and a refusal would measure the limit
    // instead. Four times the offered rate leaves room for a generator catching up after a
    // stall.
    let headroom = offered.saturating_mul(NonZeroU32::new(4).unwrap_or(NonZeroU32::MIN));
    let limits = &mut config.limits;
    limits.calls_per_second = limits.calls_per_second.max(headroom);
    limits.call_burst = limits.call_burst.max(headroom);
    limits.events_per_second = limits.events_per_second.max(headroom);
    limits.event_burst = limits.event_burst.max(headroom);
    // The bench's hub measures publishing only: no connector may deliver its records to a
    // system, and no engine take them in as dossiers. The OpenLineage feed reads the ledger
    // after the fact, off the publish path; left running, it would write a lineage record per
    // event to the same broker while the figures are taken.
    config.connectors.enabled = false;
    config.procedures.enabled = false;
    config.lineage.enabled = false;
    let hub = Hub::start(config.clone())
        .await
        .context("starting a hub for the bench")?;
    let bytes = encode(schema, payload)?;
    let producer = Producer::new(&config.kafka)?;
    let key = payload["dossier_code"].as_str().unwrap_or("bench");
    // Realistic traffic: many dossiers, their keys spread over every partition.
    let keys = dossier_codes(key);
    // The same envelope headers the hub writes: the broker pays for them too.
    let envelope = Envelope {
        event_id: uuid::Uuid::now_v7(),
        event_type: EVENT_TYPE.into(),
        schema_subject: schema.subject.clone(),
        schema_version: 1,
        occurred_at: chrono::Utc::now().fixed_offset(),
        recorded_at: chrono::Utc::now(),
        producer_system: SystemId::parse("bench")?,
        correlation_id: Some(DossierCode::parse(key)?),
        causation_id: None,
        purpose: "civil-registration".into(),
        legal_basis: "Decree 63/2024/ND-CP".into(),
        warnings: None,
    };
    let headers = envelope.to_headers(&HashMap::new());
    // A warm-up first: the producer's connection, the topic's metadata and the idempotent
    // producer's id would otherwise be paid for by the first figure alone.
    raw_produce(
        &producer,
        &schema.topic,
        &keys,
        &bytes,
        headers.clone(),
        WARM_UP.min(n),
    )
    .await?;
    // What the envelope's headers cost the broker: the same records with none, some, all.
    let all = rdkafka::message::Headers::count(&headers);
    let mut by_headers = Vec::new();
    let mut figures = Vec::new();
    for count in [0, all / 4, all / 2, 3 * all / 4, all] {
        let kept = first_headers(&headers, count);
        let figure = repeated(runs, async || {
            raw_produce(&producer, &schema.topic, &keys, &bytes, kept.clone(), n).await
        })
        .await?;
        by_headers.push((count, figure.median()));
        figures.push(figure);
    }
    let raw_bare = figures.first().cloned().unwrap_or(Figure::single(0.0));
    let raw = figures.last().cloned().unwrap_or(Figure::single(0.0));
    let python = match std::env::var_os(PYTHON) {
        Some(python) => Some(
            repeated(runs, async || {
                python_pipeline(&config, schema, key, &headers, n, &python).await
            })
            .await?,
        ),
        None => {
            eprintln!("the Python pipeline is not measured: {PYTHON} names no Python");
            None
        }
    };

    let pool = crate::db::pool(&config.database)?;
    let system = SystemId::parse(&format!("bench-{}", std::process::id()))?;
    let token = Credentials::new(pool.clone())
        .add_system(&system, "bench", false, None)
        .await?
        .token;
    let grant = Grant {
        system: system.clone(),
        direction: Direction::Publish,
        resource: Resource::EventType(EVENT_TYPE.to_owned()),
        purposes: vec!["civil-registration".to_owned()],
        owner: system.clone(),
        granted_by: "lienthong bench".to_owned(),
        note: "benchmark".to_owned(),
    };
    Rights::new(pool)
        .grant(&grant, &super::systems::access_catalogue(&config)?)
        .await?;
    // Running hubs see new rights within their refresh interval.
    tokio::time::sleep(config.access.refresh_interval() * 2).await;
    let channel = Channel::from_shared(format!("http://{}", hub.grpc_addr))?
        .connect()
        .await?;
    let mut client = super::hub_client::client(channel, &token)?;
    // Each dossier's request with its payload as a `Struct`, and as JSON text.
    let (requests, as_text): (Vec<_>, Vec<_>) = keys
        .iter()
        .map(|code| {
            let mut payload = payload.clone();
            payload["dossier_code"] = Value::String(code.clone());
            let request = super::hub_client::birth_submission(code, &payload);
            let as_text = PublishRequest {
                payload: None,
                payload_json: payload.to_string(),
                ..request.clone()
            };
            (request, as_text)
        })
        .unzip();
    let (requests, as_text) = (Arc::new(requests), Arc::new(as_text));
    let max_batch = config.limits.max_batch_events;
    // The hub's first call opens its producer and its ledger's connections: warmed up too.
    publish_batches(&mut client, &requests, WARM_UP.min(n), max_batch).await?;
    let peak_is_fresh = peak_rss::reset();
    let published = repeated(runs, async || {
        publish_batches(&mut client, &requests, n, max_batch).await
    })
    .await?;
    let peak_rss_mb = peak_rss::megabytes().filter(|_| peak_is_fresh);
    let published_text = repeated(runs, async || {
        publish_batches(&mut client, &as_text, n, max_batch).await
    })
    .await?;

    let open_loop = OpenLoop::connect(hub.grpc_addr, &token, requests, offered).await?;
    // A warm-up at the same rate: the new connections' first calls are not counted.
    open_loop.run(WARM_UP.min(n)).await?;
    let mut unary = Vec::with_capacity(usize::from(runs));
    for _ in 0..runs {
        unary.push(open_loop.run(n).await?);
    }
    hub.shutdown().await?;
    Ok(OnTheBroker {
        raw_bare,
        raw,
        by_headers,
        python,
        published,
        published_text,
        peak_rss_mb,
        unary: Unary::new(offered, n, &unary),
    })
}

/// Publishes `n` of `requests` (in turn) through `PublishBatch`, in as many calls as the hub's
/// `max_batch` events a call needs; records per second.
async fn publish_batches(
    client: &mut super::hub_client::Client,
    requests: &Arc<Vec<PublishRequest>>,
    n: usize,
    max_batch: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut accepted = 0;
    let mut sent = 0;
    for size in (0..n)
        .step_by(max_batch)
        .map(|start| max_batch.min(n - start))
    {
        // A call's stream outlives this function's borrows: it holds its own handle.
        let requests = requests.clone();
        let batch = futures::stream::iter(
            (sent..sent + size).map(move |i| requests[i % requests.len()].clone()),
        );
        sent += size;
        accepted += client.publish_batch(batch).await?.into_inner().accepted as usize;
    }
    anyhow::ensure!(accepted == n, "only {accepted} of {n} accepted");
    Ok(rate(n, started.elapsed()))
}

/// The environment variable naming the Python that runs the peer pipeline
/// (`deploy/local/bench.sh` sets it to the test environment's).
const PYTHON: &str = "LIENTHONG_BENCH_PYTHON";
const PEER: &str = "tests/python/peer_pipeline.py";

/// Runs the Python pipeline a province would write (`tests/python/peer_pipeline.py`) on the
/// same record, dossier keys, headers, topic and broker; its records per second.
async fn python_pipeline(
    config: &Config,
    schema: &EventSchema,
    key: &str,
    headers: &OwnedHeaders,
    n: usize,
    python: &std::ffi::OsStr,
) -> anyhow::Result<f64> {
    anyhow::ensure!(
        std::path::Path::new(PEER).is_file(),
        "{PEER} is not here: run the bench from the repository's root (deploy/local/bench.sh does)"
    );
    use rdkafka::message::Headers as _;
    let named: Vec<(&str, String)> = headers
        .iter()
        .map(|h| {
            (
                h.key,
                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    let file = RemoveOnDrop(std::env::temp_dir().join(format!(
        "lienthong-bench-{}-headers.json",
        std::process::id()
    )));
    std::fs::write(&file.0, serde_json::to_vec(&named)?)?;
    let events = config.schemas.dir.join("events");
    let mut command = std::process::Command::new(python);
    command
        .arg(PEER)
        .arg("--bootstrap")
        .arg(&config.kafka.bootstrap_servers)
        .args(["--topic", &schema.topic, "--key", key])
        .args(["--keys", &DOSSIERS.to_string()])
        .arg("--payload")
        .arg(config.schemas.dir.join(EXAMPLE))
        .arg("--schema")
        .arg(events.join(format!("{EVENT_TYPE}.schema.json")))
        .arg("--avsc")
        .arg(events.join(format!("{EVENT_TYPE}.avsc")))
        .arg("--headers")
        .arg(&file.0)
        .args(["--records", &n.to_string()]);
    // The peer runs for seconds, away from the bench's runtime.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await?
        .with_context(|| format!("running {PEER} with {}", python.to_string_lossy()))?;
    anyhow::ensure!(
        output.status.success(),
        "{PEER} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("{PEER} printed no figure"))?;
    said["records_per_second"]
        .as_f64()
        .with_context(|| format!("{PEER} printed no records_per_second"))
}

/// The process's peak resident memory (Linux: `VmHWM`, reset through `clear_refs`): the hub
/// runs inside the bench, so this is the hub's, plus the bench client's.
mod peak_rss {
    /// Starts a new peak from the memory held now; false where the kernel cannot (a peak read
    /// then would include what came before).
    pub fn reset() -> bool {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }

    /// The peak since the last reset, in MB; `None` where the kernel does not say.
    pub fn megabytes() -> Option<f64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kilobytes: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kilobytes / 1024.0)
    }
}

/// Ledger rows recorded per second, `n` of them from as many concurrent callers as a
/// publishing stream has events in flight: what the ledger adds to the publish path.
async fn ledger_rate(
    config: &Config,
    database: crate::config::DatabaseConfig,
    schema: &EventSchema,
    payload: &Value,
    n: usize,
) -> anyhow::Result<f64> {
    use futures::StreamExt as _;
    const IN_FLIGHT: usize = 4096;
    let pool = crate::db::pool(&database)?;
    crate::db::migrate(&pool)
        .await
        .context("migrating the bench's ledger database")?;
    let stop = tokio_util::sync::CancellationToken::new();
    let subjects = Arc::new(SubjectKeys::load(&config.audit)?);
    let (ledger, writer) = Ledger::start(pool, subjects, stop.clone());
    let record = |ledger: Ledger| async move {
        ledger
            .record(Crossing {
                channel: audit::Channel::Publish,
                source: "bench",
                target: "hub",
                event: None,
                purpose: "civil-registration",
                legal_basis: "Decree 63/2024/ND-CP",
                dossier_code: payload["dossier_code"].as_str(),
                payload,
                concerning: None,
                classes: Some(&schema.classes),
                trace_id: None,
            })
            .await
    };
    let started = Instant::now();
    let mut waiting = futures::stream::FuturesUnordered::new();
    for _ in 0..n {
        if waiting.len() >= IN_FLIGHT
            && let Some(outcome) = waiting.next().await
        {
            outcome?;
        }
        waiting.push(record(ledger.clone()));
    }
    while let Some(outcome) = waiting.next().await {
        outcome?;
    }
    let per_second = rate(n, started.elapsed());
    stop.cancel();
    drop(ledger);
    writer.await?;
    Ok(per_second)
}

/// Seeds `citizens` into a database of its own; the time it took.
async fn seeding(config: &Config, citizens: u64) -> anyhow::Result<Duration> {
    in_scratch_database(config, "seed", async |database| {
        let pool = crate::db::pool(&database)?;
        let reference = config.schemas.dir.join("reference");
        let seeded =
            crate::sandbox::seed::seed(&pool, &reference, "48", citizens, 1, |_| {}).await?;
        anyhow::ensure!(
            seeded.citizens == citizens,
            "only {} seeded",
            seeded.citizens
        );
        Ok(seeded.elapsed)
    })
    .await
}

/// A file of the bench's own, removed when it goes out of scope.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Row {
    name: &'static str,
    /// The name in the chart.
    label: &'static str,
    per_second: Figure,
}

/// Every figure of one run, printed as tables or as JSON.
struct Report {
    records: usize,
    rows: Vec<Row>,
    /// The raw producer with headers (median): the yardstick of the ratios.
    raw: f64,
    runs: u16,
    python_ratio: Option<f64>,
    by_headers: Vec<(usize, f64)>,
    peak_rss_mb: Option<f64>,
    unary: Unary,
    dossiers: usize,
    procedures: Vec<(&'static str, Duration)>,
    citizens: u64,
    seeded: Option<Duration>,
}

impl Report {
    fn print_tables(&self) {
        println!(
            "| pipeline | records/s (median of {}) | spread | ratio to raw produce |",
            self.runs
        );
        println!("|---|---:|---:|---:|");
        for row in &self.rows {
            let figure = &row.per_second;
            println!(
                "| {} | {:.0} | {} | {:.2} |",
                row.name,
                figure.median(),
                spread(figure, 0),
                figure.median() / self.raw
            );
        }
        println!();
        if let Some(ratio) = self.python_ratio {
            println!("PublishBatch / Python pipeline: {ratio:.1}x (goal: at least 20x)");
        }
        if let Some(megabytes) = self.peak_rss_mb {
            println!(
                "hub peak RSS during PublishBatch: {megabytes:.0} MB (goal: under 200 MB; the \
                 bench's own client included)"
            );
        }
        self.print_unary();
        if let Some((_, none)) = self.by_headers.first() {
            println!();
            println!(
                "| raw produce with the envelope's first N headers | records/s | ratio to none |"
            );
            println!("|---:|---:|---:|");
            for (count, per_second) in &self.by_headers {
                println!("| {count} | {per_second:.0} | {:.2} |", per_second / none);
            }
        }
        if !self.procedures.is_empty() {
            println!();
            println!("| procedure engine, no connectors | dossiers | seconds | dossiers/s |");
            println!("|---|---:|---:|---:|");
            for (name, took) in &self.procedures {
                println!(
                    "| {name} | {} | {:.1} | {:.0} |",
                    self.dossiers,
                    took.as_secs_f64(),
                    rate(self.dossiers, *took)
                );
            }
        }
        if let Some(took) = self.seeded {
            println!();
            println!("| sandbox seed | citizens | seconds | citizens/s |");
            println!("|---|---:|---:|---:|");
            println!(
                "| `sandbox seed --province 48` (COPY) | {} | {:.1} | {:.0} |",
                self.citizens,
                took.as_secs_f64(),
                self.seeded_rate(took)
            );
        }
    }

    fn print_unary(&self) {
        let unary = &self.unary;
        println!();
        println!(
            "| unary `Publish`, open loop | offered/s | calls | p50 ms | p99 ms (median of {}) \
             | spread | max ms | answered/s | errors |",
            self.runs
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        println!(
            "| latency from each call's scheduled start | {} | {} | {:.1} | {:.1} | {} | {:.1} \
             | {:.0} | {} |",
            unary.offered,
            unary.calls,
            unary.p50_ms.median(),
            unary.p99_ms.median(),
            spread(&unary.p99_ms, 1),
            unary.max_ms.max(),
            unary.per_second.median(),
            unary.errors
        );
        println!(
            "unary Publish p99 at {}/s offered: {:.1} ms (goal: under {UNARY_P99_GOAL_MS} ms)",
            unary.offered,
            unary.p99_ms.median()
        );
    }

    fn chart(&self) -> bench_chart::Chart {
        let bar = |label: &str, figure: &Figure| bench_chart::Bar {
            label: label.to_owned(),
            median: figure.median(),
            low: figure.min(),
            high: figure.max(),
        };
        let unary = &self.unary;
        bench_chart::Chart {
            title: format!(
                "lienthong bench: {EVENT_TYPE}, {} records, median of {} runs, {} build",
                self.records,
                self.runs,
                build(),
            ),
            throughput: self
                .rows
                .iter()
                .map(|row| bar(row.label, &row.per_second))
                .collect(),
            latency: vec![
                bar(&format!("p50 at {}/s", unary.offered), &unary.p50_ms),
                bar(&format!("p99 at {}/s", unary.offered), &unary.p99_ms),
                bar("longest (median of runs)", &unary.max_ms),
            ],
            latency_goal_ms: UNARY_P99_GOAL_MS,
        }
    }

    fn seeded_rate(&self, took: Duration) -> f64 {
        rate(usize::try_from(self.citizens).unwrap_or(usize::MAX), took)
    }

    fn to_json(&self) -> Value {
        serde_json::json!({
            "machine": {
                "cores": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
                "build": build(),
            },
            "event_type": EVENT_TYPE,
            "records": self.records,
            "runs": self.runs,
            "pipeline": self.rows.iter().map(|row| serde_json::json!({
                "name": row.name,
                "records_per_second": row.per_second.median(),
                "each_run": row.per_second.runs,
                "ratio_to_raw_produce": row.per_second.median() / self.raw,
            })).collect::<Vec<_>>(),
            "publish_batch_over_python": self.python_ratio,
            "hub_peak_rss_mb": self.peak_rss_mb,
            "unary_publish": {
                "offered_per_second": self.unary.offered,
                "calls": self.unary.calls,
                "p50_ms": self.unary.p50_ms.median(),
                "p99_ms": self.unary.p99_ms.median(),
                "max_ms": self.unary.max_ms.max(),
                "answered_per_second": self.unary.per_second.median(),
                "errors": self.unary.errors,
                "each_run": (0..self.unary.p99_ms.runs.len()).map(|i| serde_json::json!({
                    "p50_ms": self.unary.p50_ms.runs[i],
                    "p99_ms": self.unary.p99_ms.runs[i],
                    "max_ms": self.unary.max_ms.runs[i],
                    "answered_per_second": self.unary.per_second.runs[i],
                })).collect::<Vec<_>>(),
            },
            "raw_produce_by_headers": self.by_headers.iter().map(|(count, per_second)| serde_json::json!({
                "headers": count,
                "records_per_second": per_second,
            })).collect::<Vec<_>>(),
            "procedures": self.procedures.iter().map(|(name, took)| serde_json::json!({
                "phase": name,
                "dossiers": self.dossiers,
                "seconds": took.as_secs_f64(),
                "dossiers_per_second": rate(self.dossiers, *took),
            })).collect::<Vec<_>>(),
            "seed": self.seeded.map(|took| serde_json::json!({
                "citizens": self.citizens,
                "seconds": took.as_secs_f64(),
                "citizens_per_second": self.seeded_rate(took),
            })),
        })
    }
}

/// The build the figures come from (a debug build's say little).
fn build() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// A figure's lowest to highest run, with `decimals` decimals.
fn spread(figure: &Figure, decimals: usize) -> String {
    if figure.runs.len() > 1 {
        format!("{:.decimals$}–{:.decimals$}", figure.min(), figure.max())
    } else {
        "one run".to_owned()
    }
}

fn rate(records: usize, elapsed: Duration) -> f64 {
    records as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

fn encode(schema: &EventSchema, payload: &Value) -> anyhow::Result<Vec<u8>> {
    schema
        .encode(payload)
        .map_err(|v| anyhow::anyhow!("{}: {}", v.pointer, v.message))
}

/// Runs `step` `records` times, `runs` times over, and returns records per second.
fn measure(
    records: usize,
    runs: u16,
    mut step: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Figure> {
    let mut figure = Figure { runs: Vec::new() };
    for _ in 0..runs {
        let started = Instant::now();
        for _ in 0..records {
            step()?;
        }
        figure.runs.push(rate(records, started.elapsed()));
    }
    Ok(figure)
}

/// The first `count` of `headers`.
fn first_headers(headers: &OwnedHeaders, count: usize) -> OwnedHeaders {
    use rdkafka::message::Headers as _;
    headers
        .iter()
        .take(count)
        .fold(OwnedHeaders::new_with_capacity(count), |kept, header| {
            kept.insert(header)
        })
}

/// Dossiers the producing figures spread their records over.
const DOSSIERS: usize = 1024;

/// [`DOSSIERS`] dossier codes of the example's agency and day: `…-000000` to `…-001023`.
fn dossier_codes(example: &str) -> Vec<String> {
    let day = example.rsplit_once('-').map_or(example, |(day, _)| day);
    (0..DOSSIERS).map(|i| format!("{day}-{i:06}")).collect()
}

/// Produces `n` copies of one record, keyed by `keys` in turn, all queued at once, and returns
/// records per second.
async fn raw_produce(
    producer: &Producer,
    topic: &str,
    keys: &[String],
    bytes: &[u8],
    headers: OwnedHeaders,
    n: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut in_flight = Vec::with_capacity(n);
    for key in keys.iter().cycle().take(n) {
        in_flight.push(producer.enqueue(topic, key, bytes, headers.clone()).await?);
    }
    for record in in_flight {
        record.acknowledged().await?;
    }
    Ok(rate(n, started.elapsed()))
}

pub async fn run(args: BenchArgs, mut config: Config) -> anyhow::Result<()> {
    let n = args.records.max(1);
    let runs = args.runs;
    let catalogue = Catalogue::load(&config.schemas.dir)?;
    let reference = Arc::new(ReferenceData::load(&config.schemas.dir.join("reference"))?);
    let def = catalogue
        .events
        .iter()
        .find(|e| e.event_type == EVENT_TYPE)
        .context("the catalogue has no birth.dossier-submitted")?;
    // The bench's own hub listens on loopback in plain text: it measures the pipeline, and a
    // TLS handshake per connection would only blur the comparison with the raw producer.
    config.tls = crate::config::TlsConfig::default();
    // The hub does not start without its keys (the quarantine's, the audit log's): the
    // bench's hub gets throw-away ones, gone when the bench ends, however it ends.
    let mut keys = Vec::new();
    for name in ["quarantine", "audit-signing", "audit-subject"] {
        let file =
            std::env::temp_dir().join(format!("lienthong-bench-{}-{name}.key", std::process::id()));
        std::fs::write(&file, hex::encode(rand::random::<[u8; 32]>()))?;
        keys.push(RemoveOnDrop(file));
    }
    config.quarantine.key_file = Some(keys[0].0.clone());
    config.audit.signing_key_file = Some(keys[1].0.clone());
    config.audit.subject_key_file = Some(keys[2].0.clone());
    // Its own topic prefix, so the bench never mixes with real traffic.
    config.kafka.topic_prefix =
        format!("{}bench-{}.", config.kafka.topic_prefix, std::process::id());
    let schema = EventSchema::compile(def, reference, &config.kafka.topic_prefix)?;
    let text = std::fs::read_to_string(config.schemas.dir.join(EXAMPLE))?;
    let payload: Value = serde_json::from_str(&text)?;
    let today = chrono::Utc::now()
        .with_timezone(&crate::domain::vietnam())
        .date_naive();
    eprintln!(
        "measuring {n} records of {EVENT_TYPE} ({} bytes as JSON)",
        text.len()
    );

    let mut rows = vec![
        Row {
            name: "JSON parse (serde_json), one core",
            label: "parse",
            per_second: measure(n, runs, || {
                black_box(serde_json::from_str::<Value>(black_box(&text))?);
                Ok(())
            })?,
        },
        Row {
            name: "validate: JSON Schema + semantic rules, one core",
            label: "validate",
            per_second: measure(n, runs, || {
                let violations = schema.validate(black_box(&payload), today);
                anyhow::ensure!(violations.is_empty(), "example invalid");
                Ok(())
            })?,
        },
        Row {
            name: "encode: Avro, Confluent framing, one core",
            label: "encode (plan)",
            per_second: measure(n, runs, || {
                black_box(encode(&schema, black_box(&payload))?);
                Ok(())
            })?,
        },
        Row {
            name: "encode through apache-avro's Value tree (the reference), one core",
            label: "encode (apache-avro Value)",
            per_second: measure(n, runs, || {
                black_box(
                    schema
                        .encode_with_apache_avro(black_box(&payload))
                        .map_err(|v| anyhow::anyhow!("{}: {}", v.pointer, v.message))?,
                );
                Ok(())
            })?,
        },
        // Issue 21's figure: what the hub adds to a payload already parsed.
        Row {
            name: "validate + encode, one core",
            label: "validate + encode",
            per_second: measure(n, runs, || {
                let payload = black_box(&payload);
                anyhow::ensure!(
                    schema.validate(payload, today).is_empty(),
                    "example invalid"
                );
                black_box(encode(&schema, payload)?);
                Ok(())
            })?,
        },
        Row {
            name: "parse + validate + encode, one core",
            label: "parse + validate + encode",
            per_second: measure(n, runs, || {
                let value: Value = serde_json::from_str(black_box(&text))?;
                anyhow::ensure!(schema.validate(&value, today).is_empty(), "example invalid");
                black_box(encode(&schema, &value)?);
                Ok(())
            })?,
        },
    ];

    let recorded = in_scratch_database(&config, "ledger", async |database| {
        ledger_rate(&config, database, &schema, &payload, n).await
    })
    .await?;
    rows.push(Row {
        name: "transfer ledger: rows recorded in PostgreSQL (group commit)",
        label: "transfer ledger rows",
        per_second: Figure::single(recorded),
    });

    // The hub part runs on a database of its own: its bench system, rights and ledger rows
    // (and checkpoints signed with the bench's throw-away key) never reach a real one.
    let on_the_broker = in_scratch_database(&config, "publish", async |database| {
        let config = Config {
            database,
            ..config.clone()
        };
        through_a_hub(config, &schema, &payload, (n, runs, args.offered_rate)).await
    })
    .await?;
    let OnTheBroker {
        raw_bare,
        raw,
        by_headers,
        python,
        published,
        published_text,
        peak_rss_mb,
        unary,
    } = on_the_broker;
    let raw_median = raw.median();
    let python_ratio = python
        .as_ref()
        .map(|python| published.median() / python.median());
    rows.extend([
        Row {
            name: "raw idempotent produce (acks=all), same bytes, no headers",
            label: "raw produce, no headers",
            per_second: raw_bare,
        },
        Row {
            name: "raw idempotent produce (acks=all), same bytes and envelope headers",
            label: "raw produce, headers",
            per_second: raw,
        },
    ]);
    if let Some(python) = python {
        rows.push(Row {
            name: "Python pipeline (jsonschema with formats + fastavro + confluent-kafka), same \
                   record, keys and headers",
            label: "Python pipeline",
            per_second: python,
        });
    }
    rows.extend([
        Row {
            name: "validated publish through gRPC PublishBatch",
            label: "PublishBatch",
            per_second: published,
        },
        Row {
            name: "validated publish through gRPC PublishBatch, payloads as JSON text",
            label: "PublishBatch, JSON text",
            per_second: published_text,
        },
    ]);

    let procedures = if args.dossiers > 0 {
        eprintln!(
            "taking {} birth dossiers through the procedure engine",
            args.dossiers
        );
        let phases = in_scratch_database(&config, "procedures", async |database| {
            super::bench_procedures::run(&config, database, args.dossiers).await
        })
        .await?;
        let whole = phases.opened + phases.completed;
        vec![
            (
                "opened: submission in; acceptance, 2 statuses out",
                phases.opened,
            ),
            (
                "completed: 2 answers in; result, 2 statuses out",
                phases.completed,
            ),
            ("whole: 3 events in, 6 out per dossier", whole),
        ]
    } else {
        Vec::new()
    };
    let seeded = if args.seed_citizens > 0 {
        eprintln!(
            "seeding {} citizens into a sandbox database of its own",
            args.seed_citizens
        );
        Some(seeding(&config, args.seed_citizens).await?)
    } else {
        None
    };
    let report = Report {
        records: n,
        rows,
        raw: raw_median,
        runs,
        python_ratio,
        by_headers,
        peak_rss_mb,
        unary,
        dossiers: args.dossiers,
        procedures,
        citizens: args.seed_citizens,
        seeded,
    };
    match args.output {
        super::connectors::Output::Table => report.print_tables(),
        super::connectors::Output::Json => {
            println!("{}", serde_json::to_string_pretty(&report.to_json())?);
        }
    }
    // After the figures, so a chart that cannot be written loses none of them.
    if let Some(path) = &args.chart {
        bench_chart::draw(&report.chart(), path)?;
        eprintln!("chart written to {}", path.display());
    }
    Ok(())
}
