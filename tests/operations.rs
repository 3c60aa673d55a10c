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

/// A free loopback port (bound, read, released; the hub binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test]
async fn the_binary_serves_until_sigterm_then_exits_cleanly() {
    let env = TestEnv::new("sigterm").await;
    let (grpc, http) = (free_port(), free_port());
    let mut hub = tokio::process::Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .arg("serve")
        .env("LIENTHONG_DATABASE__URL", &env.config.database.url)
        .env(
            "LIENTHONG_KAFKA__BOOTSTRAP_SERVERS",
            &env.config.kafka.bootstrap_servers,
        )
        .env(
            "LIENTHONG_KAFKA__TOPIC_PREFIX",
            &env.config.kafka.topic_prefix,
        )
        .env("LIENTHONG_SCHEMAS__DIR", &env.config.schemas.dir)
        .env("LIENTHONG_GRPC__LISTEN", format!("127.0.0.1:{grpc}"))
        .env("LIENTHONG_HTTP__LISTEN", format!("127.0.0.1:{http}"))
        .env("LIENTHONG_LOG__FILTER", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("the hub starts");
    let ready = async {
        loop {
            if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{http}/readyz")).await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(WAIT, ready)
        .await
        .expect("the hub gets ready");

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
