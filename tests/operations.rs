//! What operators and tooling rely on: reflection, HTTP health and metrics, `config check`.

mod common;

use common::*;
use lienthong::proto::PublishRequest;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test]
async fn reflection_lists_the_event_service() {
    let env = TestEnv::new("reflection").await;
    let hub = env.start_hub().await;
    let token = env.token("operator").await;
    let bearer: tonic::metadata::MetadataValue<_> =
        format!("Bearer {token}").parse().expect("header");
    let mut reflection = ServerReflectionClient::with_interceptor(
        channel(&hub).await,
        move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", bearer.clone());
            Ok(r)
        },
    );
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("stream")
        .expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected answer {:?}", response.message_response);
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"lienthong.v1.EventService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    hub.shutdown().await.expect("clean shutdown");
}

/// The hub announces its per-connection call limit as HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS,
/// so a client far ahead of it queues its calls itself. Without it, thousands of waiting call
/// bodies starved the connection's window until h2 took their ever smaller DATA frames for a
/// flood and closed the connection with every call on it (the bench's unary figure).
#[tokio::test]
async fn the_hub_tells_clients_how_many_calls_one_connection_may_carry() {
    let env = TestEnv::new("max-streams").await;
    let mut config = env.config.clone();
    // Plain HTTP/2 (prior knowledge), so a bare h2 client can read the server's settings.
    config.tls = Default::default();
    config.limits.concurrency_per_connection = 7;
    let hub = lienthong::app::Hub::start(config)
        .await
        .expect("the hub starts");
    let tcp = tokio::net::TcpStream::connect(hub.grpc_addr)
        .await
        .expect("connect");
    let (mut send, mut connection) = h2::client::handshake(tcp).await.expect("handshake");
    let request = http::Request::post(format!(
        "http://{}/grpc.health.v1.Health/Check",
        hub.grpc_addr
    ))
    .header("content-type", "application/grpc")
    .body(())
    .expect("request");
    let (answer, _body) = send.send_request(request, true).expect("send");
    // The server's SETTINGS come before any answer; the connection is driven meanwhile.
    let answered = tokio::select! {
        answered = answer => answered.expect("an answer"),
        ended = &mut connection => panic!("the connection ended first: {ended:?}"),
    };
    assert!(answered.status().is_success(), "{answered:?}");
    assert_eq!(connection.max_concurrent_send_streams(), 7);
    drop((send, connection));
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn health_readiness_and_metrics_over_http() {
    let env = TestEnv::new("http").await;
    let hub = env.start_hub().await;
    let base = format!("http://{}", hub.http_addr);
    let http = reqwest::Client::new();

    let healthz = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(healthz.status(), 200);
    let readyz = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(readyz.status(), 200, "broker and database are up");
    assert_eq!(
        readyz.text().await.expect("body"),
        "database: ok\nbroker: ok\n"
    );

    let mut one_stop = client(&hub, Some(&env.member("danang-onestop").await)).await;
    let (code, payload) = dossier();
    one_stop
        .publish(publish_request(&code, &payload))
        .await
        .expect("accepted");
    let refused = PublishRequest {
        correlation_id: "not-a-dossier".into(),
        ..publish_request(&code, &payload)
    };
    one_stop.publish(refused).await.expect_err("refused");

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains(
            r#"lienthong_events_published_total{event_type="birth.dossier-submitted"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"lienthong_events_rejected_total{event_type="birth.dossier-submitted",reason="envelope"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("lienthong_produce_latency_seconds_count 1"),
        "{metrics}"
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[test]
fn config_check_names_the_bad_field_and_hides_secrets() {
    let bin = env!("CARGO_BIN_EXE_lienthong");
    let schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");
    let file = std::env::temp_dir().join(format!("lienthong-config-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n",
    )
    .expect("written");
    let ok = std::process::Command::new(bin)
        .args(["config", "check", "--config"])
        .arg(&file)
        .env("LIENTHONG_SCHEMAS__DIR", schemas)
        .env(
            "LIENTHONG_DATABASE__URL",
            "postgres://hub:s3cret@db.example:5432/hub",
        )
        .env("LIENTHONG_GRPC__LISTEN", "0.0.0.0:50051")
        .output()
        .expect("runs");
    std::fs::remove_file(&file).expect("removed");
    let notes = String::from_utf8_lossy(&ok.stderr);
    assert!(notes.contains("gRPC 0.0.0.0:50051: plain text"), "{notes}");
    assert!(
        notes.contains("warning: grpc.listen 0.0.0.0:50051 is reachable from other machines"),
        "{notes}"
    );
    assert!(!notes.contains("warning: http.listen"), "{notes}");
    let shown = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        shown.contains("postgres://hub:***@db.example:5432/hub"),
        "{shown}"
    );
    assert!(
        !shown.contains("s3cret") && !shown.contains("hunter2"),
        "{shown}"
    );

    let bad = std::process::Command::new(bin)
        .args(["config", "check"])
        .env("LIENTHONG_SCHEMAS__DIR", schemas)
        .env("LIENTHONG_DATABASE__POOL_MAX_SIZE", "0")
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    let error = String::from_utf8_lossy(&bad.stderr);
    assert!(error.contains("database.pool_max_size"), "{error}");
}

#[tokio::test]
async fn the_binary_serves_until_sigterm_then_exits_cleanly() {
    let env = TestEnv::new("sigterm").await;
    let (grpc, http) = (free_port(), free_port());
    let mut hub = serve_command(&env, grpc, http)
        .env("LIENTHONG_LOG__FILTER", "warn")
        .spawn()
        .expect("the hub starts");
    wait_until_ready(http).await;

    let pid = hub.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(WAIT, hub.wait())
        .await
        .expect("the hub stops after SIGTERM")
        .expect("exit status");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

#[tokio::test]
async fn topics_are_created_with_the_catalogues_retention() {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;

    let env = TestEnv::new("retention").await;
    let hub = env.start_hub().await;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &env.config.kafka.bootstrap_servers)
        .create()
        .expect("admin client");
    let topic = env.config.kafka.topic("lienthong.payment");
    let described = admin
        .describe_configs(
            &[ResourceSpecifier::Topic(&topic)],
            &AdminOptions::new().request_timeout(Some(std::time::Duration::from_secs(30))),
        )
        .await
        .expect("describe answered");
    let resource = described
        .into_iter()
        .next()
        .expect("one resource")
        .expect("the topic is described");
    let retention = resource
        .get("retention.ms")
        .and_then(|entry| entry.value.clone());
    assert_eq!(
        retention.as_deref(),
        Some("7776000000"),
        "90 days for payments"
    );
    hub.shutdown().await.expect("clean shutdown");
}

/// Every number of 12 digits (a personal ID) or 10 digits (a social-insurance number) standing
/// on its own in `text` (digits inside a hex digest or an identifier do not count).
fn id_like_numbers(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut word = String::new();
    // A hyphen joins a word: a UUID's last group can be twelve digits by chance (about one
    // UUID in 280), and a personal ID is never written hyphenated.
    for c in text.chars().chain([' ']) {
        if c.is_ascii_alphanumeric() || c == '-' {
            word.push(c);
        } else {
            if matches!(word.len(), 10 | 12) && word.chars().all(|d| d.is_ascii_digit()) {
                found.push(word.clone());
            }
            word.clear();
        }
    }
    found
}

#[test]
fn the_log_scan_finds_ids_and_ignores_digests() {
    assert_eq!(
        id_like_numbers(
            r#"{"id":"048195001234","bhxh":4801234567,"d":"c43b279ac6b0437024792e89","e":"01a24ed7-1e26-7561-ace7-593095971949"}"#
        ),
        ["048195001234", "4801234567"]
    );
}

#[tokio::test]
async fn the_demo_leaves_no_personal_id_in_any_log_line() {
    use lienthong::access::Direction;

    let env = TestEnv::new("nologpii").await;
    let (grpc, http) = (free_port(), free_port());
    let pki = common::pki::Pki::get();
    let mut hub = serve_command(&env, grpc, http)
        .env("LIENTHONG_TLS__CERT_FILE", pki.dir.join("server.pem"))
        .env("LIENTHONG_TLS__KEY_FILE", pki.dir.join("server.key"))
        .env("LIENTHONG_TLS__CLIENT_CA_FILE", pki.dir.join("ca.pem"))
        .env("LIENTHONG_TLS__HTTP", "false")
        .env(
            "LIENTHONG_QUARANTINE__KEY_FILE",
            pki.dir.join("quarantine.key"),
        )
        // As talkative as the hub gets: every line it could ever write is checked.
        .env("LIENTHONG_LOG__FILTER", "debug")
        .env("LIENTHONG_LOG__FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the hub starts");
    // Read what it writes as it writes it: a full pipe would stop the hub.
    let drain = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        tokio::spawn(async move {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut text).await;
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(hub.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(hub.stderr.take().map(|p| Box::new(p) as _));
    wait_until_ready(http).await;

    let publisher = env.token("demo-onestop").await;
    env.grant("demo-onestop", Direction::Publish, EVENT_TYPE, PURPOSE)
        .await;
    let subscriber = env.token("demo-civil-status").await;
    env.grant(
        "demo-civil-status",
        Direction::Subscribe,
        EVENT_TYPE,
        PURPOSE,
    )
    .await;
    let certificate = pki.client("demo-civil-status", false);
    let cert_file = pki
        .dir
        .join(format!("civil-status-{}.pem", std::process::id()));
    let key_file = pki
        .dir
        .join(format!("civil-status-{}.key", std::process::id()));
    std::fs::write(&cert_file, &certificate.cert_pem).expect("written");
    std::fs::write(&key_file, &certificate.key_pem).expect("written");
    lienthong::access::Credentials::new(env.pool.clone())
        .add_certificate(
            &lienthong::domain::SystemId::parse("demo-civil-status").expect("id"),
            certificate.cert_pem.as_bytes(),
        )
        .await
        .expect("certificate registered");

    let demo = tokio::process::Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["demo", "--endpoint", &format!("https://127.0.0.1:{grpc}")])
        .arg("--ca-file")
        .arg(pki.dir.join("ca.pem"))
        .args([
            "--publisher-token",
            &publisher,
            "--subscriber-token",
            &subscriber,
        ])
        .arg("--subscriber-cert")
        .arg(&cert_file)
        .arg("--subscriber-key")
        .arg(&key_file)
        .output();
    let demo = tokio::time::timeout(WAIT, demo)
        .await
        .expect("the demo ends")
        .expect("the demo runs");
    assert!(
        demo.status.success(),
        "the demo failed: {}{}",
        String::from_utf8_lossy(&demo.stdout),
        String::from_utf8_lossy(&demo.stderr)
    );

    let pid = hub.id().expect("running").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    let status = tokio::time::timeout(WAIT, hub.wait())
        .await
        .expect("the hub stops")
        .expect("its status");
    assert!(status.success(), "{status}");
    let logs = format!(
        "{}{}",
        stdout.await.expect("stdout read"),
        stderr.await.expect("stderr read")
    );
    assert!(
        logs.lines().count() > 20,
        "the hub logged what it did: {logs}"
    );
    let leaked: Vec<(usize, &str)> = logs
        .lines()
        .enumerate()
        .filter(|(_, line)| !id_like_numbers(line).is_empty())
        .collect();
    assert!(
        leaked.is_empty(),
        "log lines with ID-like numbers: {leaked:#?}"
    );
}
