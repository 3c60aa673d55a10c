//! The connector runtime against the real broker and PostgreSQL, with an HTTP endpoint the test
//! controls: delivery with idempotency keys and the reply published, dead letters and the
//! failure event, per-dossier ordering under retry, pause and resume on two hub processes, a
//! bad manifest refused, and the repository's own mapping tests.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::{PURPOSE, TestEnv, WAIT, client, dossier, publish_request};
use lienthong::access::Direction;
use lienthong::connectors::state::{self, Desired};
use lienthong::proto::{
    GetConnectorRequest, ReplayDeadLettersRequest, RestartConnectorRequest, StartFrom,
    SubscribeRequest,
};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;

const CONNECTOR: &str = "civil-status";
const SYSTEM: &str = "civil-status-connector";
const REPLY: &str = "birth.civil-registration-completed";
const FAILED: &str = "birth.step-failed";

/// The repository's civil-status manifest, pointed at `url`, with delays a test can wait for.
async fn install_connector(env: &TestEnv, url: &str) {
    let dir = &env.config.connectors.dir;
    std::fs::create_dir_all(dir).expect("connectors dir");
    let secret = dir.join("civil-status.token");
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors/civil-status.toml"),
    )
    .expect("the repository's manifest");
    let manifest = manifest
        .replace(
            "url = \"http://127.0.0.1:8095/civil-status/v1/births\"",
            &format!("url = \"{url}\""),
        )
        .replace("url_env = \"LIENTHONG_CIVIL_STATUS_URL\"\n", "")
        .replace(
            "token_env = \"LIENTHONG_CIVIL_STATUS_TOKEN\"",
            &format!("token_file = {:?}", secret.display().to_string()),
        )
        .replace("initial_backoff_ms = 500", "initial_backoff_ms = 200")
        .replace("max_backoff_ms = 60000", "max_backoff_ms = 400")
        .replace("max_attempts = 8", "max_attempts = 4");
    assert!(
        manifest.contains(url) && manifest.contains("token_file"),
        "the test could adapt the manifest"
    );
    std::fs::write(dir.join("civil-status.token"), "test-secret\n").expect("secret written");
    std::fs::write(dir.join("civil-status.toml"), manifest).expect("manifest written");
    env.token(SYSTEM).await;
    env.grant(SYSTEM, Direction::Subscribe, common::EVENT_TYPE, PURPOSE)
        .await;
    env.grant(SYSTEM, Direction::Publish, REPLY, PURPOSE).await;
    env.grant(SYSTEM, Direction::Publish, FAILED, PURPOSE).await;
}

fn subscription(event_type: &str, group: &str) -> SubscribeRequest {
    SubscribeRequest {
        event_type: event_type.into(),
        consumer_group: group.into(),
        start_from: StartFrom::Earliest.into(),
        max_unacknowledged: 0,
        purpose: PURPOSE.into(),
        legal_basis: "Decree 63/2024/ND-CP".into(),
    }
}

/// A system that may read `event_type`, and its token.
async fn reader(env: &TestEnv, system: &str, event_type: &str) -> String {
    let token = env.token(system).await;
    env.grant(system, Direction::Subscribe, event_type, PURPOSE)
        .await;
    token
}

/// Waits until the status reports of `CONNECTOR` satisfy `done`.
async fn wait_for_reports(
    env: &TestEnv,
    what: &str,
    done: impl Fn(&[state::WorkerReport]) -> bool,
) {
    common::eventually(what, async || {
        let reports = state::workers(&env.pool, Some(CONNECTOR))
            .await
            .expect("reports");
        if done(&reports) {
            Ok(())
        } else {
            Err(format!("{reports:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_event_is_delivered_with_its_idempotency_key_and_the_reply_is_published() {
    let env = TestEnv::new("conn_deliver").await;
    let receiver = Receiver::default();
    install_connector(&env, &receiver.start().await).await;
    let publisher = env.member("one-stop-48").await;
    let portal = reader(&env, "portal-48", REPLY).await;
    let hub = env.start_hub().await;
    let mut events = client(&hub, Some(&publisher)).await;
    let mut published = Vec::new();
    for _ in 0..3 {
        let (code, payload) = dossier();
        let id = events
            .publish(publish_request(&code, &payload))
            .await
            .expect("published")
            .into_inner()
            .event_id;
        published.push((code, id));
    }
    receiver
        .wait_for("three calls", |calls| calls.len() >= 3)
        .await;
    let calls = receiver.calls();
    let keys: HashSet<&str> = calls.iter().map(|c| c.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), 3, "one idempotency key per event");
    assert!(
        calls
            .iter()
            .all(|c| c.authorization == "Bearer test-secret"),
        "the secret from the environment is sent"
    );
    assert_eq!(
        calls[0].body["child"]["full_name"], "Nguyễn Minh An",
        "the request mapping ran"
    );
    assert!(
        calls[0].body.get("requested_services").is_none(),
        "fields the mapping leaves out are not sent"
    );

    let mut replies = client(&hub, Some(&portal))
        .await
        .subscribe(subscription(REPLY, "replies"))
        .await
        .expect("subscribed")
        .into_inner();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let delivery = common::next(&mut replies).await;
        let envelope = delivery.envelope.expect("envelope");
        let payload = lienthong::api::convert::struct_to_json(delivery.payload.expect("payload"));
        assert_eq!(
            envelope.producer_system, SYSTEM,
            "published as the connector's system"
        );
        assert_eq!(payload["dossier_code"], envelope.correlation_id);
        assert!(
            payload["child"]["personal_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("048326"))
        );
        seen.push((envelope.correlation_id, envelope.causation_id));
    }
    seen.sort();
    published.sort();
    assert_eq!(
        seen, published,
        "each reply names its dossier and the event that caused it"
    );
    wait_for_reports(&env, "the delivered count and the partitions held", |r| {
        r.iter().any(|w| {
            w.delivered == 3
                && w.state == "RUNNING"
                && w.partitions.starts_with("birth.dossier-submitted: 0(lag")
        })
    })
    .await;
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_event_is_dead_lettered_with_its_error_headers_and_the_failure_published() {
    let env = TestEnv::new("conn_dlq").await;
    let receiver = Receiver::default();
    install_connector(&env, &receiver.start().await).await;
    let publisher = env.member("one-stop-48").await;
    let portal = reader(&env, "portal-48", FAILED).await;
    let hub = env.start_hub().await;
    let mut events = client(&hub, Some(&publisher)).await;
    let (refused, payload) = dossier();
    receiver.script(&refused, &[422]);
    let refused_id = events
        .publish(publish_request(&refused, &payload))
        .await
        .expect("published")
        .into_inner()
        .event_id;
    let (accepted, payload) = dossier();
    events
        .publish(publish_request(&accepted, &payload))
        .await
        .expect("published");
    receiver
        .wait_for("both dossiers", |calls| {
            calls.iter().any(|c| c.status == 201) && calls.iter().any(|c| c.status == 422)
        })
        .await;

    let mut failures = client(&hub, Some(&portal))
        .await
        .subscribe(subscription(FAILED, "failures"))
        .await
        .expect("subscribed")
        .into_inner();
    let delivery = common::next(&mut failures).await;
    let envelope = delivery.envelope.expect("envelope");
    let payload = lienthong::api::convert::struct_to_json(delivery.payload.expect("payload"));
    assert_eq!(envelope.causation_id, refused_id);
    assert_eq!(payload["error_code"], "HTTPSTATUS422");
    assert_eq!(payload["retryable"], false);
    assert_eq!(
        receiver.calls().iter().filter(|c| c.status == 422).count(),
        1,
        "a 4xx is not retried"
    );

    let letters = state::dead_letters(&env.pool, CONNECTOR, false)
        .await
        .expect("dead letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(
        letter.event_id.map(|id| id.to_string()),
        Some(refused_id.clone())
    );
    assert_eq!(
        (letter.error_class.as_str(), letter.attempts),
        ("HttpStatus422", 1)
    );

    // The dead-letter topic holds the record itself, with Kafka Connect's error headers.
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &env.config.kafka.bootstrap_servers)
        .set("group.id", "dlq-reader")
        .create()
        .expect("consumer");
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(
            &letter.dlq.0,
            letter.dlq.1,
            rdkafka::Offset::Offset(letter.dlq.2),
        )
        .expect("partition");
    consumer.assign(&assignment).expect("assigned");
    let deadline = Instant::now() + WAIT;
    let record = loop {
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            break message.expect("a record").detach();
        }
        assert!(
            Instant::now() < deadline,
            "no record on the dead-letter topic"
        );
    };
    let headers = lienthong::bus::envelope::header_map(record.headers());
    assert_eq!(
        headers["__connect.errors.exception.class.name"],
        "HttpStatus422"
    );
    assert_eq!(headers["__connect.errors.connector.name"], CONNECTOR);
    assert_eq!(
        headers["__connect.errors.offset"].parse::<i64>().ok(),
        Some(letter.source.2)
    );
    assert_eq!(
        headers["ce_id"], refused_id,
        "the original envelope travels with it"
    );
    assert_eq!(record.key(), Some(refused.as_bytes()));

    // The cause is fixed (the endpoint now accepts it): an operator replays the dead letter.
    let operator = env.operator_token("ops-console").await;
    let mut admin = common::admin_client(&hub, &operator).await;
    let replay = ReplayDeadLettersRequest {
        name: CONNECTOR.into(),
        ids: vec![letter.id],
        all: false,
        by: "operator-binh".into(),
    };
    let requested = admin
        .replay_dead_letters(replay)
        .await
        .expect("replay asked")
        .into_inner()
        .requested;
    assert_eq!(requested, 1);
    receiver
        .wait_for("the replayed call", |calls| {
            calls
                .iter()
                .filter(|c| c.body["dossier_code"] == refused.as_str())
                .any(|c| c.status == 201)
        })
        .await;
    let calls = receiver.calls();
    let keys: HashSet<&str> = calls
        .iter()
        .filter(|c| c.body["dossier_code"] == refused.as_str())
        .map(|c| c.idempotency_key.as_str())
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "the replay carries the event's idempotency key"
    );
    let outcome = common::eventually("the replay recorded", async || {
        let letters = state::dead_letters(&env.pool, CONNECTOR, true)
            .await
            .expect("dead letters");
        letters
            .iter()
            .find(|d| d.id == letter.id)
            .and_then(|d| d.replay_outcome.clone())
            .ok_or_else(|| format!("{letters:?}"))
    })
    .await;
    assert_eq!(outcome, "delivered");
    assert!(
        state::dead_letters(&env.pool, CONNECTOR, false)
            .await
            .expect("dead letters")
            .is_empty(),
        "nothing left to replay"
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_connector_shows_failed_until_an_operator_restarts_it_fixed() {
    let env = TestEnv::new("conn_restart").await;
    let receiver = Receiver::default();
    install_connector(&env, &receiver.start().await).await;
    let secret = env.config.connectors.dir.join("civil-status.token");
    std::fs::remove_file(&secret).expect("secret removed");
    let operator = env.operator_token("ops-console").await;
    let member = env.token("one-stop-48").await;
    let hub = env.start_hub().await;
    let mut admin = common::admin_client(&hub, &operator).await;
    let get = || GetConnectorRequest {
        name: CONNECTOR.into(),
    };
    let failed = common::eventually("the connector shown FAILED", async || {
        let view = admin
            .get_connector(get())
            .await
            .expect("status")
            .into_inner();
        if view.state == "FAILED" {
            Ok(view)
        } else {
            Err(format!("{view:?}"))
        }
    })
    .await;
    let error = &failed.workers[0].last_error;
    assert!(
        error.contains("civil-status.token"),
        "the error names where the secret was looked for: {error}"
    );

    // Not an operator: refused.
    let mut member_admin = common::admin_client(&hub, &member).await;
    let refused = member_admin
        .get_connector(get())
        .await
        .expect_err("members cannot administer");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    std::fs::write(&secret, "test-secret\n").expect("secret restored");
    let restart = RestartConnectorRequest {
        name: CONNECTOR.into(),
        only_failed: true,
        by: "operator-chi".into(),
    };
    admin
        .restart_connector(restart)
        .await
        .expect("restart asked");
    let running = common::eventually("RUNNING after the restart", async || {
        let view = admin
            .get_connector(get())
            .await
            .expect("status")
            .into_inner();
        if view.state == "RUNNING" {
            Ok(view)
        } else {
            Err(format!("{view:?}"))
        }
    })
    .await;
    assert!(running.workers[0].restarts >= 1, "the restart is counted");
    let actor: String = env
        .pool
        .get()
        .await
        .expect("connection")
        .query_one(
            "SELECT actor FROM connector_action WHERE name = $1 AND action LIKE 'restart%'",
            &[&CONNECTOR],
        )
        .await
        .expect("the restart is recorded")
        .get(0);
    assert_eq!(actor, "ops-console/operator-chi");
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_event_holds_back_its_own_dossier_only() {
    let env = TestEnv::new("conn_order").await;
    let receiver = Receiver::default();
    install_connector(&env, &receiver.start().await).await;
    let publisher = env.member("one-stop-48").await;
    let hub = env.start_hub().await;
    let mut events = client(&hub, Some(&publisher)).await;
    let (slow, slow_payload) = dossier();
    let (other, other_payload) = dossier();
    receiver.script(&slow, &[503, 503]);
    events
        .publish(publish_request(&slow, &slow_payload))
        .await
        .expect("published");
    events
        .publish(publish_request(&other, &other_payload))
        .await
        .expect("published");
    // A second event of the slow dossier: it must wait for the first.
    events
        .publish(publish_request(&slow, &slow_payload))
        .await
        .expect("published");
    receiver
        .wait_for("the slow dossier's two events", |calls| {
            calls
                .iter()
                .filter(|c| c.body["dossier_code"] == slow.as_str() && c.status == 201)
                .count()
                == 2
        })
        .await;
    let calls = receiver.calls();
    let slow_calls: Vec<&common::receiver::Call> = calls
        .iter()
        .filter(|c| c.body["dossier_code"] == slow.as_str())
        .collect();
    let statuses: Vec<u16> = slow_calls.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [503, 503, 201, 201],
        "retried, then the second event after the first"
    );
    assert_eq!(
        slow_calls[0].idempotency_key, slow_calls[2].idempotency_key,
        "a retry repeats the key"
    );
    assert_eq!(
        slow_calls[2].idempotency_key, slow_calls[3].idempotency_key,
        "the manifest keys on the dossier: its second event is the same request again"
    );
    let other_call = calls
        .iter()
        .find(|c| c.body["dossier_code"] == other.as_str())
        .expect("the other dossier was called");
    assert!(
        other_call.at < slow_calls[2].at,
        "the other dossier did not wait for the retries"
    );
    wait_for_reports(&env, "the failed attempts", |r| {
        r.iter().any(|w| w.failed_attempts == 2 && w.delivered == 3)
    })
    .await;
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_holds_events_on_every_process_and_resume_delivers_them() {
    let env = TestEnv::new("conn_pause").await;
    let receiver = Receiver::default();
    install_connector(&env, &receiver.start().await).await;
    let publisher = env.member("one-stop-48").await;
    let first = env.start_hub().await;
    let second = env.start_hub().await;
    wait_for_reports(&env, "two running processes", |r| {
        r.iter().filter(|w| w.state == "RUNNING").count() == 2
    })
    .await;
    state::set_desired(
        &env.pool,
        CONNECTOR,
        Desired::Paused,
        "operator-an",
        Some("INC-1"),
    )
    .await
    .expect("paused");
    wait_for_reports(&env, "both paused", |r| {
        r.iter().filter(|w| w.state == "PAUSED").count() == 2
    })
    .await;
    let mut events = client(&first, Some(&publisher)).await;
    let (code, payload) = dossier();
    events
        .publish(publish_request(&code, &payload))
        .await
        .expect("published");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(receiver.calls().is_empty(), "a paused connector called out");
    state::set_desired(&env.pool, CONNECTOR, Desired::Running, "operator-an", None)
        .await
        .expect("resumed");
    receiver
        .wait_for("the held event", |calls| calls.len() == 1)
        .await;
    let actions: Vec<(String, String)> = env
        .pool
        .get()
        .await
        .expect("connection")
        .query(
            "SELECT action, actor FROM connector_action WHERE name = $1 ORDER BY id",
            &[&CONNECTOR],
        )
        .await
        .expect("actions")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        actions,
        [
            ("paused".to_owned(), "operator-an".to_owned()),
            ("running".to_owned(), "operator-an".to_owned())
        ]
    );
    first.shutdown().await.expect("clean shutdown");
    second.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_killed_mid_burst_repeats_calls_but_skips_none() {
    const BURST: usize = 40;
    let env = TestEnv::new("conn_kill").await;
    let receiver = Receiver::default();
    receiver.slow(Duration::from_millis(40));
    install_connector(&env, &receiver.start().await).await;
    // Four calls at a time, so the burst lasts (ten rounds of 40 ms) and the kill lands in it
    // even when a busy machine delivers the whole burst at once.
    let manifest = env.config.connectors.dir.join("civil-status.toml");
    let text = std::fs::read_to_string(&manifest).expect("the installed manifest");
    assert!(
        text.contains("max_in_flight = 64"),
        "the test could adapt the manifest"
    );
    std::fs::write(
        &manifest,
        text.replace("max_in_flight = 64", "max_in_flight = 4"),
    )
    .expect("manifest written");
    let publisher = env.member("one-stop-48").await;
    // This in-process hub only takes the publishes; the connector runs in the real binary.
    let mut publishing = env.config.clone();
    publishing.connectors.enabled = false;
    let hub = lienthong::app::Hub::start(publishing)
        .await
        .expect("the hub starts");
    let mut events = client(&hub, Some(&publisher)).await;
    let mut codes = HashSet::new();
    for _ in 0..BURST {
        let (code, payload) = dossier();
        events
            .publish(publish_request(&code, &payload))
            .await
            .expect("published");
        codes.insert(code);
    }
    let start_connector = || {
        let (grpc, http) = (common::free_port(), common::free_port());
        let child = common::serve_command(&env, grpc, http)
            .env("LIENTHONG_LOG__FILTER", "error")
            .env("LIENTHONG_CONNECTORS__REFRESH_INTERVAL_MS", "200")
            .spawn()
            .expect("the hub binary starts");
        (child, http)
    };
    let (mut first, http) = start_connector();
    common::wait_until_ready(http).await;
    receiver
        .wait_for("the burst under way", |calls| calls.len() >= 5)
        .await;
    first.start_kill().expect("SIGKILL sent");
    first.wait().await.expect("the killed hub is reaped");
    let done_before = receiver.registrations();
    assert!(
        done_before < BURST,
        "the kill came too late to test anything"
    );

    let (mut second, http) = start_connector();
    common::wait_until_ready(http).await;
    // The killed member keeps its partitions until its session times out (librdkafka's 45 s),
    // so this takes most of the harness's minute when the machine is idle: a busy one needs
    // more.
    receiver
        .wait_within(2 * common::WAIT, "every dossier registered", |_| {
            receiver.registrations() == BURST
        })
        .await;
    let calls = receiver.calls();
    let called: HashSet<String> = calls
        .iter()
        .filter_map(|c| c.body["dossier_code"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(called, codes, "every event was delivered");
    let keys: HashSet<&str> = calls.iter().map(|c| c.idempotency_key.as_str()).collect();
    assert_eq!(
        keys.len(),
        BURST,
        "repeats carried their first call's key, so the endpoint could drop them"
    );
    second.start_kill().expect("stopped");
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_manifest_stops_the_hub_with_file_line_and_field() {
    let env = TestEnv::new("conn_bad").await;
    let dir = &env.config.connectors.dir;
    std::fs::create_dir_all(dir).expect("connectors dir");
    std::fs::write(
        dir.join("bad.toml"),
        "name = \"bad\"\nkind = \"http-sink\"\nsystem = \"x-connector\"\npurpose = \"civil-registration\"\n\
         legal_basis = \"Decree 63/2024/ND-CP\"\nrequest = \".\"\n\n[source]\nevent_types = [\"birth.no-such-event\"]\n\n\
         [http]\nurl = \"http://127.0.0.1:9/x\"\n",
    )
    .expect("manifest written");
    let error = match lienthong::app::Hub::start(env.config.clone()).await {
        Ok(_) => panic!("a hub started with a bad manifest"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("bad.toml:9: source.event_types: unknown event type"),
        "{error}"
    );
}

/// The repository's PayGov webhook manifest, reading its secret from a file.
async fn install_webhook(env: &TestEnv) -> &'static str {
    const SECRET: &str = "paygov-shared-secret";
    env.install_paygov_webhook(SECRET).await;
    SECRET
}

fn signed(secret: &str, body: &serde_json::Value) -> (Vec<u8>, String) {
    use hmac::Mac as _;
    let bytes = serde_json::to_vec(body).expect("json");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(&bytes);
    (bytes, hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_callback_becomes_one_event_however_often_it_is_sent() {
    let env = TestEnv::new("conn_webhook").await;
    let secret = install_webhook(&env).await;
    let treasury = env.token("treasury").await;
    env.grant(
        "treasury",
        Direction::Subscribe,
        "payment.callback-received",
        "fee-payment",
    )
    .await;
    let hub = env.start_hub().await;
    let url = format!(
        "http://{}/connectors/paygov-callbacks/webhook",
        hub.http_addr
    );
    let (code, _) = dossier();
    let callback = |transaction: &str| {
        serde_json::json!({
            "transaction_id": transaction, "order_id": format!("{code}:copies:1"), "dossier_code": code,
            "amount": 16000, "bank_code": "VCB", "response_code": "00",
            "order_info": "Thanh toan phi ho so", "pay_date": "2026-11-20T15:26:04+07:00",
            "checksum": "d33ce6d4dc64e032642015431a0fdf50e4d9e5a8fbdd6f50d1c1b78e12b99905"
        })
    };
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>, signature: String| {
        http.post(&url)
            .header("X-PayGov-Signature", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (body, signature) = signed(secret, &callback("PG-1"));
    let first: serde_json::Value = post(body.clone(), signature.clone())
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(first["duplicate"], false, "{first}");
    let again: serde_json::Value = post(body.clone(), signature.clone())
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (&again["duplicate"], &again["event_id"]),
        (&serde_json::json!(true), &first["event_id"])
    );
    let forged = post(body, "00".repeat(32)).await.expect("answered");
    assert_eq!(forged.status(), 401);
    let mut broken = callback("PG-3");
    broken["dossier_code"] = "not a dossier".into();
    let (body, signature) = signed(secret, &broken);
    assert_eq!(post(body, signature).await.expect("answered").status(), 422);
    let (body, signature) = signed(secret, &callback("PG-2"));
    let second: serde_json::Value = post(body, signature)
        .await
        .expect("answered")
        .json()
        .await
        .expect("json");
    assert_eq!(second["duplicate"], false);

    let mut events = client(&hub, Some(&treasury))
        .await
        .subscribe(SubscribeRequest {
            purpose: "fee-payment".into(),
            ..subscription("payment.callback-received", "treasury")
        })
        .await
        .expect("subscribed")
        .into_inner();
    let ids: Vec<String> = [
        common::next(&mut events).await,
        common::next(&mut events).await,
    ]
    .into_iter()
    .map(|d| d.envelope.expect("envelope").event_id)
    .collect();
    assert_eq!(
        ids,
        [
            first["event_id"].as_str().unwrap_or_default(),
            second["event_id"].as_str().unwrap_or_default()
        ],
        "the repeat was not published again"
    );

    state::set_desired(
        &env.pool,
        "paygov-callbacks",
        Desired::Paused,
        "operator-an",
        None,
    )
    .await
    .expect("paused");
    // Every process sees the pause within a second; from then on senders are asked to wait.
    common::eventually("a paused webhook asks to be sent again later", async || {
        let (body, signature) = signed(secret, &callback("PG-4"));
        match post(body, signature)
            .await
            .expect("answered")
            .status()
            .as_u16()
        {
            503 => Ok(()),
            other => Err(format!("answered {other}")),
        }
    })
    .await;
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_changes_apply_without_restarting_the_hub() {
    let env = TestEnv::new("conn_reload").await;
    let publisher = env.member("one-stop-48").await;
    let hub = env.start_hub().await;
    let mut events = client(&hub, Some(&publisher)).await;

    // A manifest added while the hub runs starts its connector.
    let first = Receiver::default();
    install_connector(&env, &first.start().await).await;
    wait_for_reports(&env, "the new connector running", |r| {
        r.iter().any(|w| w.state == "RUNNING")
    })
    .await;
    let (code, payload) = dossier();
    events
        .publish(publish_request(&code, &payload))
        .await
        .expect("published");
    first
        .wait_for("the first endpoint's call", |calls| calls.len() == 1)
        .await;

    // A changed manifest restarts it against the new endpoint.
    let second = Receiver::default();
    let second_url = second.start().await;
    let file = env.config.connectors.dir.join("civil-status.toml");
    let text = std::fs::read_to_string(&file).expect("manifest");
    let first_url = text
        .lines()
        .find_map(|l| l.strip_prefix("url = "))
        .expect("url line")
        .trim_matches('"')
        .to_owned();
    std::fs::write(&file, text.replace(&first_url, &second_url)).expect("manifest changed");
    // What `connectors reload` waits for: every process on the new version.
    let admin = env.admin();
    common::eventually("the change rolled out", async || {
        let rollout = admin.rollout().await.expect("rollout");
        match rollout.as_slice() {
            [r] if r.processes == 1 && r.behind.is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (code, payload) = dossier();
    events
        .publish(publish_request(&code, &payload))
        .await
        .expect("published");
    second
        .wait_for("the second endpoint's call", |calls| calls.len() == 1)
        .await;

    // A broken manifest is not applied: the connector runs on as it was.
    let text = std::fs::read_to_string(&file).expect("manifest");
    std::fs::write(
        &file,
        text.replace("kind = \"http-sink\"", "kind = \"http-sink\"\nbogus = 1"),
    )
    .expect("manifest broken");
    let metrics_url = format!("http://{}/metrics", hub.http_addr);
    common::eventually("the broken manifest noticed", async || {
        let metrics = reqwest::get(&metrics_url)
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if metrics.contains("lienthong_connector_manifest_problems 1") {
            Ok(())
        } else {
            Err("lienthong_connector_manifest_problems is not 1".to_owned())
        }
    })
    .await;
    let (code, payload) = dossier();
    events
        .publish(publish_request(&code, &payload))
        .await
        .expect("published");
    second
        .wait_for("the call after the broken edit", |calls| calls.len() == 2)
        .await;
    assert_eq!(
        first.calls().len(),
        1,
        "the old endpoint is no longer called"
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn when_one_of_two_processes_stops_the_other_takes_its_work_over() {
    const BURST: usize = 30;
    let env = TestEnv::new("conn_takeover").await;
    let receiver = Receiver::default();
    receiver.slow(Duration::from_millis(30));
    install_connector(&env, &receiver.start().await).await;
    let publisher = env.member("one-stop-48").await;
    let leaving = env.start_hub().await;
    let staying = env.start_hub().await;
    wait_for_reports(&env, "both processes running", |r| {
        r.iter().filter(|w| w.state == "RUNNING").count() == 2
    })
    .await;
    let mut events = client(&staying, Some(&publisher)).await;
    let mut codes = HashSet::new();
    for _ in 0..BURST {
        let (code, payload) = dossier();
        events
            .publish(publish_request(&code, &payload))
            .await
            .expect("published");
        codes.insert(code);
    }
    receiver
        .wait_for("the burst under way", |calls| calls.len() >= 3)
        .await;
    leaving
        .shutdown()
        .await
        .expect("the leaving process stops cleanly");
    receiver
        .wait_for("every dossier registered", |_| {
            receiver.registrations() == BURST
        })
        .await;
    let called: HashSet<String> = receiver
        .calls()
        .iter()
        .filter_map(|c| c.body["dossier_code"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(called, codes);
    staying.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_circuit_holds_every_call_until_its_probe_succeeds() {
    let env = TestEnv::new("conn_breaker").await;
    let receiver = Receiver::default();
    install_connector(&env, &receiver.start().await).await;
    let file = env.config.connectors.dir.join("civil-status.toml");
    let text = std::fs::read_to_string(&file).expect("manifest");
    std::fs::write(
        &file,
        text.replace("breaker_failures = 5", "breaker_failures = 2")
            .replace("breaker_open_ms = 30000", "breaker_open_ms = 1500"),
    )
    .expect("manifest");
    let publisher = env.member("one-stop-48").await;
    let hub = env.start_hub().await;
    let mut events = client(&hub, Some(&publisher)).await;
    let (failing, payload) = dossier();
    receiver.script(&failing, &[503, 503]);
    events
        .publish(publish_request(&failing, &payload))
        .await
        .expect("published");
    receiver
        .wait_for("two failures", |calls| calls.len() == 2)
        .await;
    let opened_at = receiver.calls()[1].at;
    wait_for_reports(&env, "the breaker open", |r| {
        r.iter().any(|w| w.breaker == "open")
    })
    .await;
    // Another dossier's call waits for the open period too: the endpoint is down for all.
    let (other, payload) = dossier();
    events
        .publish(publish_request(&other, &payload))
        .await
        .expect("published");
    receiver
        .wait_for("both dossiers registered", |_| {
            receiver.registrations() == 2
        })
        .await;
    let calls = receiver.calls();
    let first_after = calls[2].at;
    assert!(
        first_after.duration_since(opened_at) >= Duration::from_millis(1400),
        "a call went out while the circuit was open"
    );
    assert_eq!(
        calls.len(),
        4,
        "one probe, then the rest: {:?}",
        calls.iter().map(|c| c.status).collect::<Vec<_>>()
    );
    wait_for_reports(&env, "the breaker closed", |r| {
        r.iter().any(|w| w.breaker == "closed" && w.delivered == 2)
    })
    .await;
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_sink_upserts_each_dossier_once_and_dead_letters_what_the_table_refuses() {
    let env = TestEnv::new("conn_pgsink").await;
    env.pool
        .get()
        .await
        .expect("connection")
        .batch_execute(
            "CREATE TABLE province_dossier (
                 dossier_code TEXT PRIMARY KEY,
                 child_name   TEXT NOT NULL CHECK (child_name <> 'REFUSED BY THE PROVINCE'),
                 birth_date   DATE NOT NULL,
                 event_id     UUID NOT NULL)",
        )
        .await
        .expect("the province's table");
    let dir = &env.config.connectors.dir;
    std::fs::create_dir_all(dir).expect("connectors dir");
    let url = dir.join("province.url");
    std::fs::write(&url, &env.config.database.url).expect("secret written");
    let manifest = format!(
        r#"name = "province-registry"
kind = "postgres-sink"
system = "province-48-registry"
purpose = "civil-registration"
legal_basis = "Decree 63/2024/ND-CP"
row = "{{dossier_code: .event.dossier_code, child_name: .event.child.full_name, birth_date: .event.child.birth_date, event_id: .envelope.event_id}}"

[source]
event_types = ["birth.dossier-submitted"]

[postgres]
url_file = {url:?}
table = "public.province_dossier"
key_columns = ["dossier_code"]

[delivery]
initial_backoff_ms = 100
max_backoff_ms = 200
"#,
        url = url.display().to_string()
    );
    std::fs::write(dir.join("province-registry.toml"), manifest).expect("manifest written");
    env.token("province-48-registry").await;
    env.grant(
        "province-48-registry",
        Direction::Subscribe,
        common::EVENT_TYPE,
        PURPOSE,
    )
    .await;
    let publisher = env.member("one-stop-48").await;
    let hub = env.start_hub().await;
    let mut events = client(&hub, Some(&publisher)).await;
    let (first, first_payload) = dossier();
    events
        .publish(publish_request(&first, &first_payload))
        .await
        .expect("published");
    let (second, payload) = dossier();
    events
        .publish(publish_request(&second, &payload))
        .await
        .expect("published");
    // The first dossier again (a correction, say): its row is updated, not duplicated.
    let again = events
        .publish(publish_request(&first, &first_payload))
        .await
        .expect("published")
        .into_inner()
        .event_id;
    let (refused, mut payload) = dossier();
    payload["child"]["full_name"] = "REFUSED BY THE PROVINCE".into();
    events
        .publish(publish_request(&refused, &payload))
        .await
        .expect("published");

    let (rows, letters) = common::eventually("two rows and one dead letter", async || {
        let letters = state::dead_letters(&env.pool, "province-registry", false)
            .await
            .expect("dead letters");
        let rows: Vec<(String, String)> = env
            .pool
            .get()
            .await
            .expect("connection")
            .query(
                "SELECT dossier_code, event_id::text FROM province_dossier ORDER BY dossier_code",
                &[],
            )
            .await
            .expect("rows")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let done = rows.len() == 2
            && rows.iter().any(|(code, id)| *code == first && *id == again)
            && letters.len() == 1;
        if done {
            Ok((rows, letters))
        } else {
            Err(format!("rows {rows:?}, dead letters {letters:?}"))
        }
    })
    .await;
    assert_eq!(
        letters[0].error_class, "SqlState23514",
        "the table's own rule, not retried"
    );
    assert_eq!(letters[0].attempts, 1);
    assert!(rows.iter().any(|(code, _)| *code == second));
    hub.shutdown().await.expect("clean shutdown");
}

#[test]
fn the_repository_connectors_pass_their_mapping_tests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let catalogue = lienthong::registry::Catalogue::load(&root.join("schemas")).expect("catalogue");
    let known = |t: &str| catalogue.events.iter().any(|e| e.event_type == t);
    let manifests = lienthong::connectors::manifest::load_dir(&root.join("connectors"), &known)
        .expect("manifests load");
    assert!(!manifests.is_empty());
    for manifest in &manifests {
        let outcomes = lienthong::connectors::mapping_tests::run(manifest);
        assert!(
            outcomes.len() >= 3,
            "{}: too few mapping tests",
            manifest.name
        );
        let failed: Vec<_> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
        assert!(failed.is_empty(), "{failed:#?}");
    }
}
