//! Polling sources and operators' offsets against the real broker and PostgreSQL: a
//! provincial outbox published in order, once, across two hub processes, waiting for
//! transactions still open; an HTTP API read page by page with its cursor kept across a
//! restart; and a sink's consumer offsets read and moved by operators.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use common::receiver::Receiver;
use common::{EVENT_TYPE, PURPOSE, TestEnv, client, dossier, publish_request, subscribe_request};
use lienthong::access::Direction;
use lienthong::connectors::admin::{AdminError, ResetTarget};
use lienthong::connectors::state::{self, Desired};
use lienthong::proto::{Delivery, GetOffsetsRequest, ResetOffsetsRequest, reset_offsets_request};
use serde_json::{Value, json};

const SYSTEM: &str = "one-stop-48-outbox";

/// The dossier codes of `count` deliveries in the order they were published, checking each
/// came from `SYSTEM`. Deliveries from several partitions interleave; the event ids, UUIDv7s
/// given as each record is published, give the order.
async fn codes(stream: &mut tonic::Streaming<Delivery>, count: usize) -> Vec<String> {
    let mut published = Vec::new();
    for _ in 0..count {
        let envelope = common::next(stream).await.envelope.expect("envelope");
        assert_eq!(envelope.producer_system, SYSTEM);
        published.push((envelope.event_id, envelope.correlation_id));
    }
    published.sort();
    published.into_iter().map(|(_, code)| code).collect()
}

/// Fails if another delivery arrives within `quiet`.
async fn nothing_more(stream: &mut tonic::Streaming<Delivery>, quiet: Duration) {
    if let Ok(more) = tokio::time::timeout(quiet, stream.message()).await {
        let code = more
            .ok()
            .flatten()
            .and_then(|d| d.envelope)
            .map(|e| e.correlation_id);
        panic!("nothing more was expected, got {code:?}");
    }
}

/// Waits until the reports on connector `name` satisfy `done`.
async fn wait_for_states(env: &TestEnv, name: &str, what: &str, done: impl Fn(&[String]) -> bool) {
    common::eventually(what, async || {
        let states: Vec<String> = state::workers(&env.pool, Some(name))
            .await
            .expect("reports")
            .into_iter()
            .filter(|w| w.state != "GONE")
            .map(|w| w.state)
            .collect();
        if done(&states) {
            Ok(())
        } else {
            Err(format!("{states:?}"))
        }
    })
    .await;
}

/// The connector's system, allowed to publish the dossier event, and a reader's token.
async fn systems(env: &TestEnv) -> String {
    env.token(SYSTEM).await;
    env.grant(SYSTEM, Direction::Publish, EVENT_TYPE, PURPOSE)
        .await;
    let reader = env.token("portal-48").await;
    env.grant("portal-48", Direction::Subscribe, EVENT_TYPE, PURPOSE)
        .await;
    reader
}

fn write_manifest(env: &TestEnv, name: &str, text: &str) {
    let dir = &env.config.connectors.dir;
    std::fs::create_dir_all(dir).expect("connectors dir");
    std::fs::write(dir.join(format!("{name}.toml")), text).expect("manifest written");
}

const OUTBOX: &str = "province-outbox";

async fn install_outbox(env: &TestEnv) {
    env.pool
        .get()
        .await
        .expect("connection")
        .batch_execute(
            "CREATE SCHEMA province;
             CREATE TABLE province.outbox (
                 id BIGSERIAL PRIMARY KEY,
                 dossier_code TEXT NOT NULL,
                 payload JSONB NOT NULL,
                 created_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .expect("outbox table");
    let url_file = env.config.connectors.dir.join("outbox.url");
    std::fs::create_dir_all(&env.config.connectors.dir).expect("dir");
    std::fs::write(&url_file, &env.config.database.url).expect("url file");
    write_manifest(
        env,
        OUTBOX,
        &format!(
            r#"
name = "{OUTBOX}"
kind = "postgres-outbox-source"
system = "{SYSTEM}"
purpose = "{PURPOSE}"
legal_basis = "Decree 63/2024/ND-CP"

[publish]
event_type = "{EVENT_TYPE}"
correlation = ".dossier_code"
payload = ".record.payload"

[outbox]
url_file = {url_file:?}
table = "province.outbox"
batch = 2
interval_ms = 200
"#
        ),
    );
}

/// Writes one dossier into the outbox (committed at once); its code.
async fn write_outbox(client: &impl tokio_postgres::GenericClient) -> String {
    let (code, payload) = dossier();
    client
        .execute(
            "INSERT INTO province.outbox (dossier_code, payload) VALUES ($1, $2)",
            &[&code, &payload],
        )
        .await
        .expect("outbox row");
    code
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_is_published_in_order_once_waiting_for_open_transactions_and_taken_over() {
    let env = TestEnv::new("src_outbox").await;
    let reader = systems(&env).await;
    install_outbox(&env).await;
    let pool = env.pool.clone();
    let db = pool.get().await.expect("connection");
    let mut written = Vec::new();
    for _ in 0..3 {
        written.push(write_outbox(&**db).await);
    }

    let first = env.start_hub().await;
    wait_for_states(&env, OUTBOX, "the first hub leads", |s| s == ["RUNNING"]).await;
    let second = env.start_hub().await;
    wait_for_states(&env, OUTBOX, "the second stands by", |s| {
        let mut s = s.to_vec();
        s.sort();
        s == ["RUNNING", "STANDBY"]
    })
    .await;
    let view = env.admin().status(OUTBOX).await.expect("status");
    assert_eq!(view.state, "RUNNING", "one leads, one stands by: running");

    let mut events = client(&second, Some(&reader)).await;
    let mut stream = events
        .subscribe(subscribe_request("outbox-readers"))
        .await
        .expect("subscribed")
        .into_inner();
    assert_eq!(
        codes(&mut stream, 3).await,
        written,
        "in the outbox's order"
    );

    // A transaction takes the next id but has not committed; a later id commits first. The
    // reader must wait: moving past the gap would lose the first row for ever.
    let (mut open, connection) =
        tokio_postgres::connect(&env.config.database.url, tokio_postgres::NoTls)
            .await
            .expect("second connection");
    tokio::spawn(connection);
    let tx = open.transaction().await.expect("transaction");
    let slow = write_outbox(&tx).await;
    let fast = write_outbox(&**db).await;
    nothing_more(&mut stream, Duration::from_secs(4)).await;
    tx.commit().await.expect("commit");
    assert_eq!(
        codes(&mut stream, 2).await,
        [slow, fast],
        "the row committed late comes first, in id order"
    );

    // A rolled-back id is passed over once no older transaction is open.
    let tx = open.transaction().await.expect("transaction");
    write_outbox(&tx).await;
    tx.rollback().await.expect("rollback");
    let after_gap = write_outbox(&**db).await;
    assert_eq!(codes(&mut stream, 1).await, [after_gap]);

    // The leader stops; the one standing by takes over from the stored position.
    first.shutdown().await.expect("clean shutdown");
    let mut later = Vec::new();
    for _ in 0..2 {
        later.push(write_outbox(&**db).await);
    }
    assert_eq!(
        codes(&mut stream, 2).await,
        later,
        "the other process took over"
    );
    nothing_more(&mut stream, Duration::from_secs(2)).await;

    let admin = env.admin();
    let offsets = admin.offsets(OUTBOX).await.expect("offsets");
    let stored = offsets.position.expect("a stored position");
    assert_eq!(stored.published, 8, "each row published once");
    assert_eq!(
        stored.position.cursor.as_deref(),
        Some("9"),
        "after the last id"
    );

    // Operators replay from an id: refused while it runs, done once it is stopped.
    let refused = admin
        .reset_offsets(
            OUTBOX,
            &ResetTarget::Offset("7".into()),
            None,
            "operator-an",
        )
        .await;
    assert!(
        matches!(refused, Err(AdminError::NotStopped { .. })),
        "{refused:?}"
    );
    state::set_desired(&env.pool, OUTBOX, Desired::Stopped, "operator-an", None)
        .await
        .expect("stopped");
    wait_for_states(&env, OUTBOX, "stopped", |s| s == ["STOPPED"]).await;
    let moved = admin
        .reset_offsets(
            OUTBOX,
            &ResetTarget::Offset("7".into()),
            None,
            "operator-an",
        )
        .await
        .expect("reset");
    assert_eq!(
        moved.position.expect("position").position.cursor.as_deref(),
        Some("7")
    );
    state::set_desired(&env.pool, OUTBOX, Desired::Running, "operator-an", None)
        .await
        .expect("resumed");
    assert_eq!(codes(&mut stream, 2).await, later, "read again from id 7");
    second.shutdown().await.expect("clean shutdown");
}

/// An HTTP API of changes paged by a sequence number: `GET /changes?after=N&limit=L`.
#[derive(Clone, Default)]
struct Changes {
    records: Arc<Mutex<Vec<Value>>>,
    /// The `after` of each request ("" for none).
    asked: Arc<Mutex<Vec<String>>>,
    /// Requests to answer 503 first.
    failures: Arc<Mutex<u32>>,
}

impl Changes {
    async fn start(&self) -> String {
        let app = axum::Router::new()
            .route("/changes", axum::routing::get(changes))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/changes")
    }

    fn add(&self) -> String {
        let (code, payload) = dossier();
        let mut records = self.records.lock().unwrap();
        let seq = records.len() + 1;
        records.push(json!({"seq": seq, "dossier": payload}));
        code
    }
}

async fn changes(
    State(api): State<Changes>,
    Query(query): Query<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let after: usize = query.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    api.asked
        .lock()
        .unwrap()
        .push(query.get("after").cloned().unwrap_or_default());
    {
        let mut failures = api.failures.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "busy"})),
            );
        }
    }
    let records = api.records.lock().unwrap();
    let page: Vec<Value> = records.iter().skip(after).take(limit).cloned().collect();
    let next = page.last().map(|r| r["seq"].clone()).unwrap_or(Value::Null);
    (StatusCode::OK, Json(json!({"items": page, "next": next})))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_api_is_read_page_by_page_and_its_cursor_survives_a_restart() {
    let env = TestEnv::new("src_poll").await;
    let reader = systems(&env).await;
    let api = Changes::default();
    *api.failures.lock().unwrap() = 1;
    let url = api.start().await;
    write_manifest(
        &env,
        "province-changes",
        &format!(
            r#"
name = "province-changes"
kind = "http-poll-source"
system = "{SYSTEM}"
purpose = "{PURPOSE}"
legal_basis = "Decree 63/2024/ND-CP"

[publish]
event_type = "{EVENT_TYPE}"
correlation = ".dossier.dossier_code"
payload = ".record.dossier"

[poll]
url = "{url}"
cursor_param = "after"
limit_param = "limit"
records = ".items"
next_cursor = ".next"
batch = 2
interval_ms = 200
"#
        ),
    );
    let written: Vec<String> = (0..5).map(|_| api.add()).collect();
    let hub = env.start_hub().await;
    let mut events = client(&hub, Some(&reader)).await;
    let mut stream = events
        .subscribe(subscribe_request("change-readers"))
        .await
        .expect("subscribed")
        .into_inner();
    assert_eq!(
        codes(&mut stream, 5).await,
        written,
        "every record, in order"
    );
    let asked = api.asked.lock().unwrap().clone();
    assert_eq!(
        asked[..4],
        ["", "", "2", "4"],
        "a 503 is retried, then pages follow the cursor"
    );
    common::eventually("the cursor stored", async || {
        let stored = env
            .admin()
            .offsets("province-changes")
            .await
            .expect("offsets");
        match stored.position.and_then(|p| p.position.cursor) {
            Some(cursor) if cursor == "5" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    common::eventually("the retried failure in status", async || {
        let status = env
            .admin()
            .status("province-changes")
            .await
            .expect("status");
        let worker = status.workers.first().ok_or("no report yet")?;
        match &worker.last_error {
            Some(error) if error.contains("503") && worker.state == "RUNNING" => Ok(()),
            _ => Err(format!("{worker:?}")),
        }
    })
    .await;
    hub.shutdown().await.expect("clean shutdown");

    let later: Vec<String> = (0..2).map(|_| api.add()).collect();
    let hub = env.start_hub().await;
    // Everything on the topic, read afresh: the old records once, then only the new ones.
    let mut events = client(&hub, Some(&reader)).await;
    let mut everything = events
        .subscribe(subscribe_request("everything"))
        .await
        .expect("subscribed")
        .into_inner();
    let mut expected = written;
    expected.extend(later);
    assert_eq!(
        codes(&mut everything, 7).await,
        expected,
        "only the new records after a restart"
    );
    nothing_more(&mut everything, Duration::from_secs(2)).await;
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_read_and_move_a_sinks_offsets_only_while_it_is_stopped() {
    let env = TestEnv::new("src_offsets").await;
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let sink_system = "civil-status-connector";
    env.token(sink_system).await;
    env.grant(sink_system, Direction::Subscribe, EVENT_TYPE, PURPOSE)
        .await;
    write_manifest(
        &env,
        "registrar",
        &format!(
            r#"
name = "registrar"
kind = "http-sink"
system = "{sink_system}"
purpose = "{PURPOSE}"
legal_basis = "Decree 63/2024/ND-CP"
request = "{{dossier_code: .event.dossier_code}}"

[source]
event_types = ["{EVENT_TYPE}"]

[http]
url = "{url}"
"#
        ),
    );
    let publisher = env.member("one-stop-48").await;
    let hub = env.start_hub().await;
    let mut events = client(&hub, Some(&publisher)).await;
    for _ in 0..3 {
        let (code, payload) = dossier();
        events
            .publish(publish_request(&code, &payload))
            .await
            .expect("published");
    }
    receiver.wait_for("three calls", |c| c.len() >= 3).await;
    let admin = env.admin();
    let refused = admin
        .reset_offsets("registrar", &ResetTarget::Earliest, None, "operator-an")
        .await;
    assert!(
        matches!(refused, Err(AdminError::NotStopped { .. })),
        "{refused:?}"
    );
    state::set_desired(
        &env.pool,
        "registrar",
        Desired::Stopped,
        "operator-an",
        None,
    )
    .await
    .expect("stopped");
    wait_for_states(&env, "registrar", "stopped", |s| s == ["STOPPED"]).await;

    let offsets = admin.offsets("registrar").await.expect("offsets");
    let partitions = &offsets.groups[0].partitions;
    let read: i64 = partitions.iter().map(|p| p.high - p.low).sum();
    assert_eq!(read, 3, "{partitions:?}");
    assert!(
        partitions.iter().all(|p| p.lag() == 0),
        "all delivered and committed: {partitions:?}"
    );

    // `--to-time` is not tested here: Tansu 0.6.0 answers a ListOffsets by timestamp with
    // offset 0 whatever the time (Kafka answers the first offset at or after it).
    // Over gRPC, as a console would: the operator system and the person are recorded.
    let operator = env.operator_token("ops-console").await;
    let mut consoles = common::admin_client(&hub, &operator).await;
    let moved = consoles
        .reset_offsets(ResetOffsetsRequest {
            name: "registrar".into(),
            to: Some(reset_offsets_request::To::Earliest(true)),
            partition: None,
            by: "operator-an".into(),
        })
        .await
        .expect("reset to the earliest")
        .into_inner();
    let lag: i64 = moved.groups[0].partitions.iter().map(|p| p.lag).sum();
    assert_eq!(lag, 3, "everything to read again: {moved:?}");
    let read = consoles
        .get_offsets(GetOffsetsRequest {
            name: "registrar".into(),
        })
        .await
        .expect("offsets")
        .into_inner();
    assert_eq!(read, moved);
    state::set_desired(
        &env.pool,
        "registrar",
        Desired::Running,
        "operator-an",
        None,
    )
    .await
    .expect("resumed");
    receiver
        .wait_for("the three events again", |c| c.len() >= 6)
        .await;
    assert_eq!(
        receiver.registrations(),
        3,
        "repeated with the same idempotency keys"
    );
    let actions: i64 = env
        .pool
        .get()
        .await
        .expect("connection")
        .query_one(
            "SELECT count(*) FROM connector_action WHERE name = 'registrar'
             AND action = 'offsets reset' AND actor = 'ops-console/operator-an'",
            &[],
        )
        .await
        .expect("actions")
        .get(0);
    assert_eq!(actions, 1, "the reset recorded; the refused one not");
    hub.shutdown().await.expect("clean shutdown");
}
