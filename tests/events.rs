//! EventService against the real broker and PostgreSQL: publish, subscribe, acknowledge,
//! validation and quarantine, authentication, restart.

mod common;

use common::*;
use lienthong::proto::{AcknowledgeRequest, Position, batch_item_result::Outcome};
use tonic::Code;
use tonic_types::StatusExt as _;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn publish_then_subscribe_keeps_payload_envelope_and_trace() {
    let env = TestEnv::new("roundtrip").await;
    let hub = env.start_hub().await;
    let mut one_stop = client(&hub, Some(&env.member("danang-onestop").await)).await;
    let mut civil_status = client(&hub, Some(&env.member("civil-status").await)).await;

    let (code, payload) = dossier();
    let mut request = tonic::Request::new(publish_request(&code, &payload));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-00f067aa0ba902b7-01")
            .parse()
            .expect("header"),
    );
    let accepted = one_stop
        .publish(request)
        .await
        .expect("valid event accepted")
        .into_inner();
    assert_eq!(
        uuid::Uuid::parse_str(&accepted.event_id).map(|u| u.get_version_num()),
        Ok(7)
    );
    assert!(
        accepted.topic.ends_with(".lienthong.birth"),
        "{}",
        accepted.topic
    );
    assert_eq!(
        accepted.schema_subject,
        format!(
            "{}-vn.lienthong.birth.BirthDossierSubmitted",
            accepted.topic
        )
    );
    assert!(accepted.schema_id > 0);

    let mut stream = civil_status
        .subscribe(subscribe_request("civil"))
        .await
        .expect("subscribed")
        .into_inner();
    let delivery = next(&mut stream).await;
    let envelope = delivery.envelope.clone().expect("envelope");
    assert_eq!(envelope.event_id, accepted.event_id);
    assert_eq!(envelope.event_type, EVENT_TYPE);
    assert_eq!(envelope.correlation_id, code);
    assert_eq!(envelope.producer_system, "danang-onestop");
    assert_eq!(envelope.purpose, "civil-registration");
    assert_eq!(envelope.legal_basis, "Decree 63/2024/ND-CP");
    assert_eq!(envelope.schema_subject, accepted.schema_subject);
    assert_eq!(envelope.schema_version, 1);
    assert!(!envelope.recorded_at.is_empty() && !envelope.occurred_at.is_empty());
    assert!(
        envelope.traceparent.contains(TRACE_ID),
        "the caller's trace continues through Kafka: {}",
        envelope.traceparent
    );
    assert_eq!(
        (delivery.partition, delivery.offset),
        (accepted.partition, accepted.offset)
    );
    let received = lienthong::api::convert::struct_to_json(delivery.payload.expect("payload"));
    assert_eq!(received["child"], payload["child"]);
    // Optional fields the publisher left out (a partial birth date, a travel document) come
    // back as null.
    let mut mother = received["mother"].clone();
    if let Some(fields) = mother.as_object_mut() {
        fields.retain(|k, v| !v.is_null() || payload["mother"].get(k).is_some());
    }
    assert_eq!(mother, payload["mother"]);
    assert_eq!(
        received["requested_services"],
        payload["requested_services"]
    );
    assert_eq!(received["received_at"], "2026-11-20T09:15:00+07:00");

    let acked = civil_status
        .acknowledge(AcknowledgeRequest {
            subscription_id: delivery.subscription_id.clone(),
            positions: vec![Position {
                partition: delivery.partition,
                offset: delivery.offset,
            }],
        })
        .await
        .expect("acknowledged")
        .into_inner();
    assert_eq!(acked.acknowledged, 1);

    // Another system cannot acknowledge (or even see) this subscription.
    let refused = one_stop
        .acknowledge(AcknowledgeRequest {
            subscription_id: delivery.subscription_id,
            positions: vec![],
        })
        .await
        .expect_err("not this system's subscription");
    assert_eq!(refused.code(), Code::NotFound);
    drop(stream);
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_invalid_event_is_refused_with_every_violation_and_quarantined() {
    let env = TestEnv::new("invalid").await;
    let hub = env.start_hub().await;
    let mut one_stop = client(&hub, Some(&env.member("danang-onestop").await)).await;

    let (code, mut payload) = dossier();
    payload["mother"]["personal_id"] = "04819500123".into();
    payload["child"]["birth_date"] = "2026-13-01".into();
    payload["child"]
        .as_object_mut()
        .expect("object")
        .remove("sex");
    let mut request = publish_request(&code, &payload);
    request.purpose = String::new();

    let status = one_stop.publish(request).await.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    let bad_request = status
        .get_details_bad_request()
        .expect("BadRequest details");
    let fields: Vec<&str> = bad_request
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    for expected in [
        "/purpose",
        "/payload/mother/personal_id",
        "/payload/child/birth_date",
        "/payload/child/sex",
    ] {
        assert!(
            fields.contains(&expected),
            "{expected} missing from {fields:?}"
        );
    }
    assert_eq!(fields.len(), 4, "{fields:?}");
    assert!(
        status
            .message()
            .contains("/payload/child/sex [required] thiếu trường bắt buộc / "),
        "JSON Schema's refusals speak Vietnamese too: {}",
        status.message()
    );
    assert!(
        !status.message().contains("04819500123"),
        "messages do not echo personal data: {}",
        status.message()
    );

    let db = env.pool.get().await.expect("connection");
    let row = db
        .query_one(
            "SELECT system_id, reason, jsonb_array_length(violations), id
             FROM quarantine WHERE correlation_id = $1",
            &[&code],
        )
        .await
        .expect("the refused event is in quarantine");
    assert_eq!(row.get::<_, String>(0), "danang-onestop");
    assert_eq!(row.get::<_, String>(1), "schema");
    assert_eq!(row.get::<_, i32>(2), 4);
    let keys = std::sync::Arc::new(
        lienthong::events::QuarantineKeys::load(&env.config.quarantine).expect("keys"),
    );
    let quarantine = lienthong::events::Quarantine::new(env.pool.clone(), Some(keys));
    let kept = quarantine
        .read(row.get(3), "test")
        .await
        .expect("the sealed request opens");
    assert_eq!(
        kept["payload"]["mother"]["personal_id"], "04819500123",
        "the input is kept as sent"
    );

    // A NUL character is refused like any other violation, and the input is still kept.
    let (nul_code, mut nul_payload) = dossier();
    nul_payload["child"]["birth_place"] = "Bệnh viện\u{0}".into();
    let status = one_stop
        .publish(publish_request(&nul_code, &nul_payload))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(
        status.message().contains("vn.text.nul"),
        "{}",
        status.message()
    );
    let id: i64 = db
        .query_one(
            "SELECT id FROM quarantine WHERE correlation_id = $1",
            &[&nul_code],
        )
        .await
        .expect("kept in quarantine")
        .get(0);
    let kept = quarantine.read(id, "test").await.expect("opens");
    assert_eq!(
        kept["payload"]["child"]["birth_place"], "Bệnh viện\u{0}",
        "sealed, the input keeps even a NUL"
    );

    let unknown = one_stop
        .publish(lienthong::proto::PublishRequest {
            event_type: "birth.nothing".into(),
            ..publish_request(&code, &payload)
        })
        .await
        .expect_err("unknown type refused");
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(
        unknown.message().contains("/event_type"),
        "{}",
        unknown.message()
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn calls_without_a_valid_credential_are_refused() {
    let env = TestEnv::new("auth").await;
    let hub = env.start_hub().await;
    let (code, payload) = dossier();

    let mut anonymous = client(&hub, None).await;
    let status = anonymous
        .publish(publish_request(&code, &payload))
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);

    let mut forged = client(
        &hub,
        Some("lt_0000000000000000000000000000000000000000000000000000000000000000"),
    )
    .await;
    let status = forged
        .subscribe(subscribe_request("x"))
        .await
        .expect_err("unknown token");
    assert_eq!(status.code(), Code::Unauthenticated);

    // Health stays open for orchestrators.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&hub).await);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "lienthong.v1.EventService".into(),
        })
        .await
        .expect("health answers without a token")
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_subscriber_that_leaves_before_acknowledging_gets_the_events_again() {
    let env = TestEnv::new("redeliver").await;
    let hub = env.start_hub().await;
    let token = env.member("civil-status").await;
    let mut civil_status = client(&hub, Some(&token)).await;
    let (code, payload) = dossier();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let accepted = civil_status
            .publish(publish_request(&code, &payload))
            .await
            .expect("accepted")
            .into_inner();
        ids.push(accepted.event_id);
    }

    let mut stream = civil_status
        .subscribe(subscribe_request("g"))
        .await
        .expect("subscribed")
        .into_inner();
    let mut first_round = Vec::new();
    for _ in 0..3 {
        first_round.push(next(&mut stream).await);
    }
    let received: Vec<String> = first_round
        .iter()
        .map(|d| d.envelope.clone().expect("envelope").event_id)
        .collect();
    assert_eq!(received, ids, "one dossier's events arrive in order");
    civil_status
        .acknowledge(AcknowledgeRequest {
            subscription_id: first_round[0].subscription_id.clone(),
            positions: vec![Position {
                partition: first_round[0].partition,
                offset: first_round[0].offset,
            }],
        })
        .await
        .expect("acknowledged");
    drop(stream);

    // A new member of the same group resumes after the acknowledged event only.
    let mut civil_status = client(&hub, Some(&token)).await;
    let mut stream = civil_status
        .subscribe(subscribe_request("g"))
        .await
        .expect("subscribed")
        .into_inner();
    let again: Vec<String> = [next(&mut stream).await, next(&mut stream).await]
        .iter()
        .map(|d| d.envelope.clone().expect("envelope").event_id)
        .collect();
    assert_eq!(
        again,
        ids[1..],
        "the unacknowledged events come again, and only they"
    );
    drop(stream);
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_hub_restart_loses_no_accepted_event_nor_acknowledgement() {
    let env = TestEnv::new("restart").await;
    let hub = env.start_hub().await;
    let token = env.member("danang-onestop").await;
    let mut one_stop = client(&hub, Some(&token)).await;

    let mut requests = Vec::new();
    for i in 0..12 {
        let (code, mut payload) = dossier();
        if i == 5 {
            payload["commune_code"] = "2019".into();
        }
        requests.push(publish_request(&code, &payload));
    }
    let batch = one_stop
        .publish_batch(futures::stream::iter(requests))
        .await
        .expect("batch answered")
        .into_inner();
    assert_eq!((batch.accepted, batch.rejected, batch.failed), (11, 1, 0));
    let mut accepted_ids = Vec::new();
    for (i, result) in batch.results.iter().enumerate() {
        assert_eq!(result.index as usize, i);
        match result.outcome.as_ref().expect("outcome") {
            Outcome::Accepted(a) => accepted_ids.push(a.event_id.clone()),
            Outcome::Failed(f) => panic!("no failure expected: {}", f.message),
            Outcome::Denied(d) => panic!("no denial expected: {}", d.message),
            Outcome::Rejected(r) => {
                assert_eq!(i, 5);
                assert_eq!(r.violations[0].pointer, "/payload/commune_code");
                assert!(r.quarantine_id > 0);
            }
        }
    }
    let schema_id = match batch.results[0].outcome.as_ref() {
        Some(Outcome::Accepted(a)) => a.schema_id,
        other => panic!("first event accepted, got {other:?}"),
    };

    // Read and acknowledge four events, then stop the hub gracefully.
    let mut stream = one_stop
        .subscribe(subscribe_request("audit"))
        .await
        .expect("subscribed")
        .into_inner();
    let mut seen = std::collections::HashSet::new();
    let mut positions = Vec::new();
    for _ in 0..4 {
        let d = next(&mut stream).await;
        seen.insert(d.envelope.clone().expect("envelope").event_id);
        positions.push(Position {
            partition: d.partition,
            offset: d.offset,
        });
        if positions.len() == 4 {
            let acked = one_stop
                .acknowledge(AcknowledgeRequest {
                    subscription_id: d.subscription_id.clone(),
                    positions: positions.clone(),
                })
                .await
                .expect("acknowledged")
                .into_inner();
            assert_eq!(acked.acknowledged, 4);
        }
    }
    drop(stream);
    hub.shutdown().await.expect("clean shutdown");

    let hub = env.start_hub().await;
    let mut one_stop = client(&hub, Some(&token)).await;
    let (code, payload) = dossier();
    let after = one_stop
        .publish(publish_request(&code, &payload))
        .await
        .expect("accepted")
        .into_inner();
    assert_eq!(after.schema_id, schema_id, "schema ids survive a restart");
    accepted_ids.push(after.event_id);

    let mut stream = one_stop
        .subscribe(subscribe_request("audit"))
        .await
        .expect("subscribed")
        .into_inner();
    for _ in 0..(accepted_ids.len() - seen.len()) {
        let d = next(&mut stream).await;
        let id = d.envelope.expect("envelope").event_id;
        assert!(
            seen.insert(id.clone()),
            "event {id} delivered again after it was acknowledged"
        );
    }
    let expected: std::collections::HashSet<String> = accepted_ids.into_iter().collect();
    assert_eq!(seen, expected, "every accepted event is delivered");
    drop(stream);
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_subscriber_receives_only_its_event_type_from_a_shared_topic() {
    let env = TestEnv::new("filter").await;
    let hub = env.start_hub().await;
    let token = env.member("danang-onestop").await;
    env.grant_both("danang-onestop", "birth.dossier-accepted")
        .await;
    let mut one_stop = client(&hub, Some(&token)).await;
    let (code, submitted) = dossier();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/examples/birth.dossier-accepted/valid-on-time.json");
    let mut accepted: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("example")).expect("json");
    accepted["dossier_code"] = code.clone().into();
    one_stop
        .publish(publish_request(&code, &submitted))
        .await
        .expect("submitted accepted");
    let acceptance = one_stop
        .publish(lienthong::proto::PublishRequest {
            event_type: "birth.dossier-accepted".into(),
            ..publish_request(&code, &accepted)
        })
        .await
        .expect("acceptance accepted")
        .into_inner();
    one_stop
        .publish(publish_request(&code, &submitted))
        .await
        .expect("second submission accepted");

    let mut stream = one_stop
        .subscribe(lienthong::proto::SubscribeRequest {
            event_type: "birth.dossier-accepted".into(),
            ..subscribe_request("portal")
        })
        .await
        .expect("subscribed")
        .into_inner();
    let delivery = next(&mut stream).await;
    let envelope = delivery.envelope.expect("envelope");
    assert_eq!(envelope.event_type, "birth.dossier-accepted");
    assert_eq!(envelope.event_id, acceptance.event_id);
    let more = tokio::time::timeout(std::time::Duration::from_secs(2), stream.message()).await;
    assert!(more.is_err(), "no other event type is delivered: {more:?}");
    drop(stream);
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn quarantined_events_older_than_the_retention_disappear() {
    let env = TestEnv::new("retention").await;
    let client = env.pool.get().await.expect("connection");
    for age_days in [31, 29] {
        client
            .execute(
                "INSERT INTO quarantine (received_at, system_id, event_type, event_id,
                    correlation_id, reason, violations, request)
                 VALUES (now() - make_interval(days => $1), 's', 't', '', '', 'schema', '[]', '{}')",
                &[&age_days],
            )
            .await
            .expect("row inserted");
    }
    let quarantine = lienthong::events::Quarantine::new(env.pool.clone(), None);
    let deleted = quarantine
        .purge(env.config.quarantine.retention())
        .await
        .expect("purged");
    assert_eq!(deleted, 1);
    let left: Vec<i32> = client
        .query(
            "SELECT extract(day FROM now() - received_at)::INT FROM quarantine",
            &[],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, [29]);
}

#[tokio::test]
async fn a_batch_over_the_limit_answers_every_event_it_was_sent() {
    let mut env = TestEnv::new("batchlimit").await;
    env.config.limits.max_batch_events = 3;
    let hub = env.start_hub().await;
    let mut one_stop = client(&hub, Some(&env.member("danang-onestop").await)).await;
    let (code, payload) = dossier();
    let requests: Vec<_> = (0..5)
        .map(|i| lienthong::proto::PublishRequest {
            event_id: format!("01935f6e-0000-7000-8000-00000000000{i}"),
            ..publish_request(&code, &payload)
        })
        .collect();
    let response = one_stop
        .publish_batch(futures::stream::iter(requests))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!((response.accepted, response.failed), (3, 2));
    assert!(!response.truncated);
    let indices: Vec<u32> = response.results.iter().map(|r| r.index).collect();
    assert_eq!(indices, [0, 1, 2, 3, 4]);
    match &response.results[4].outcome {
        Some(Outcome::Failed(failure)) => {
            assert_eq!(failure.event_id, "01935f6e-0000-7000-8000-000000000004");
            assert!(failure.message.contains("at most 3"), "{}", failure.message);
        }
        other => panic!("the extra event is answered: {other:?}"),
    }
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_checked_on_every_core_keeps_one_dossiers_events_in_the_order_sent() {
    let env = TestEnv::new("batchorder").await;
    let hub = env.start_hub().await;
    let mut one_stop = client(&hub, Some(&env.member("danang-onestop").await)).await;
    let (code, payload) = dossier();
    let mut broken = payload.clone();
    broken["commune_code"] = "2019".into();
    // Enough events that many are checked at once; every seventh is refused, so refusals
    // (which wait for the quarantine's database) are mixed with acceptances.
    let requests: Vec<_> = (0..300)
        .map(|i| publish_request(&code, if i % 7 == 3 { &broken } else { &payload }))
        .collect();
    let response = one_stop
        .publish_batch(futures::stream::iter(requests))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!((response.accepted, response.rejected), (257, 43));
    let mut positions = Vec::new();
    for (i, result) in response.results.iter().enumerate() {
        assert_eq!(result.index as usize, i);
        match result.outcome.as_ref().expect("outcome") {
            Outcome::Accepted(accepted) => {
                assert_ne!(i % 7, 3, "event {i} is valid");
                positions.push((accepted.partition, accepted.offset));
            }
            Outcome::Rejected(rejected) => {
                assert_eq!(i % 7, 3, "event {i} is the refused one");
                assert_eq!(rejected.violations[0].pointer, "/payload/commune_code");
            }
            other => panic!("event {i}: {other:?}"),
        }
    }
    // One key, so one partition, where the offsets follow the order the events were queued in.
    assert!(positions.iter().all(|(p, _)| *p == positions[0].0));
    assert!(
        positions.windows(2).all(|w| w[0].1 < w[1].1),
        "offsets in the order sent: {positions:?}"
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn publish_stream_answers_each_event_as_soon_as_it_is_known() {
    let env = TestEnv::new("pubstream").await;
    let hub = env.start_hub().await;
    let mut one_stop = client(&hub, Some(&env.member("danang-onestop").await)).await;
    let (code, payload) = dossier();
    let mut broken = payload.clone();
    broken["commune_code"] = "2019".into();
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut results = one_stop
        .publish_stream(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .expect("stream opened")
        .into_inner();
    // The refusal comes back while the stream is still open, before any further event.
    sender
        .send(publish_request(&code, &broken))
        .await
        .expect("sent");
    let first = tokio::time::timeout(WAIT, results.message())
        .await
        .expect("answered in time")
        .expect("healthy")
        .expect("a result");
    assert_eq!(first.index, 0);
    assert!(
        matches!(first.outcome, Some(Outcome::Rejected(_))),
        "{first:?}"
    );
    for _ in 0..2 {
        sender
            .send(publish_request(&code, &payload))
            .await
            .expect("sent");
    }
    drop(sender);
    let mut accepted = Vec::new();
    while let Some(result) = results.message().await.expect("healthy") {
        assert!(
            matches!(result.outcome, Some(Outcome::Accepted(_))),
            "{result:?}"
        );
        accepted.push(result.index);
    }
    accepted.sort_unstable();
    assert_eq!(accepted, [1, 2]);
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn quarantined_requests_are_sealed_and_every_read_is_recorded() {
    let env = TestEnv::new("sealed").await;
    let hub = env.start_hub().await;
    let mut one_stop = client(&hub, Some(&env.member("danang-onestop").await)).await;
    let (code, mut payload) = dossier();
    payload["commune_code"] = "2019".into();
    let mother_id = payload["mother"]["personal_id"]
        .as_str()
        .expect("example has an ID")
        .to_owned();
    let status = one_stop
        .publish(publish_request(&code, &payload))
        .await
        .expect_err("refused");
    let details = tonic_types::StatusExt::get_error_details(&status);
    assert!(details.bad_request().is_some());
    let client = env.pool.get().await.expect("connection");
    let row = client
        .query_one(
            "SELECT id, request IS NULL, sealed FROM quarantine ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .expect("quarantined");
    let (id, plain_gone, sealed): (i64, bool, Vec<u8>) = (row.get(0), row.get(1), row.get(2));
    assert!(plain_gone, "no plain request is stored");
    assert!(
        !sealed
            .windows(mother_id.len())
            .any(|w| w == mother_id.as_bytes()),
        "the sealed request does not show the ID"
    );
    let clear: String = client
        .query_one(
            "SELECT row_to_json(q)::text FROM quarantine q WHERE id = $1",
            &[&id],
        )
        .await
        .expect("row")
        .get(0);
    assert!(
        !clear.contains(&mother_id),
        "no column shows the ID: {clear}"
    );

    let keys = lienthong::events::QuarantineKeys::load(&env.config.quarantine).expect("keys");
    let request = lienthong::events::Quarantine::new(env.pool.clone(), Some(keys.into()))
        .read(id, "inspector-07")
        .await
        .expect("opened");
    assert_eq!(
        request["payload"]["mother"]["personal_id"],
        mother_id.as_str()
    );
    let readers: Vec<String> = client
        .query(
            "SELECT read_by FROM quarantine_read WHERE quarantine_id = $1",
            &[&id],
        )
        .await
        .expect("reads")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(readers, ["inspector-07"]);
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_rule_that_only_warns_accepts_the_event_and_the_warning_travels_with_it() {
    let env = TestEnv::new("warn").await;
    let hub = env.start_hub().await;
    let token = env.member("portal").await;
    env.grant_both("portal", "dossier.status-changed").await;
    let mut portal = client(&hub, Some(&token)).await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/examples/dossier.status-changed/invalid-transition.json");
    let example: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("example")).expect("json");
    let code = example["payload"]["dossier_code"]
        .as_str()
        .expect("code")
        .to_owned();
    let accepted = portal
        .publish(lienthong::proto::PublishRequest {
            event_type: "dossier.status-changed".into(),
            ..publish_request(&code, &example["payload"])
        })
        .await
        .expect("a transition the hub does not know is accepted")
        .into_inner();
    let rules: Vec<(&str, &str)> = accepted
        .warnings
        .iter()
        .map(|w| (w.rule.as_str(), w.severity.as_str()))
        .collect();
    assert_eq!(rules, [("vn.status.transition", "warning")]);

    let mut stream = portal
        .subscribe(lienthong::proto::SubscribeRequest {
            event_type: "dossier.status-changed".into(),
            ..subscribe_request("tracking")
        })
        .await
        .expect("subscribed")
        .into_inner();
    let delivery = next(&mut stream).await;
    let envelope = delivery.envelope.expect("envelope");
    assert_eq!(envelope.event_id, accepted.event_id);
    let seen: Vec<&str> = envelope.warnings.iter().map(|w| w.rule.as_str()).collect();
    assert_eq!(seen, ["vn.status.transition"]);

    let metrics = common::metrics(&hub).await;
    assert!(
        metrics.contains(
            r#"lienthong_events_warned_total{event_type="dossier.status-changed",reason="vn.status.transition"} 1"#
        ),
        "{metrics}"
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn names_and_phones_are_normalised_not_refused() {
    let env = TestEnv::new("normalise").await;
    let hub = env.start_hub().await;
    let mut one_stop = client(&hub, Some(&env.member("danang-onestop").await)).await;
    let (code, mut payload) = dossier();
    // Decomposed diacritics and stray spaces, as some keyboards and forms produce them.
    payload["child"]["full_name"] = "  Nguye\u{0302}\u{0303}n Minh An ".into();
    one_stop
        .publish(publish_request(&code, &payload))
        .await
        .expect("a name in another Unicode form is accepted");
    let mut stream = one_stop
        .subscribe(subscribe_request("normalised"))
        .await
        .expect("subscribed")
        .into_inner();
    let delivery = next(&mut stream).await;
    let received = lienthong::api::convert::struct_to_json(delivery.payload.expect("payload"));
    assert_eq!(received["child"]["full_name"], "Nguyễn Minh An");
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_birth_certificate_is_published_before_any_dossier_exists() {
    let env = TestEnv::new("predossier").await;
    let hub = env.start_hub().await;
    let token = env.member("hospital").await;
    env.grant_both("hospital", "birth.e-birth-certificate-issued")
        .await;
    let mut hospital = client(&hub, Some(&token)).await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/examples/birth.e-birth-certificate-issued/valid-before-dossier.json");
    let certificate: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("example")).expect("json");
    let accepted = hospital
        .publish(lienthong::proto::PublishRequest {
            event_type: "birth.e-birth-certificate-issued".into(),
            ..publish_request("", &certificate)
        })
        .await
        .expect("no dossier yet, and none is needed")
        .into_inner();

    // A dossier-keyed type still needs its dossier code.
    let (_, dossier) = dossier();
    let status = hospital
        .publish(publish_request("", &dossier))
        .await
        .expect_err("a dossier event without its dossier code");
    assert!(
        status.message().contains("/correlation_id"),
        "{}",
        status.message()
    );

    let mut stream = hospital
        .subscribe(lienthong::proto::SubscribeRequest {
            event_type: "birth.e-birth-certificate-issued".into(),
            ..subscribe_request("births")
        })
        .await
        .expect("subscribed")
        .into_inner();
    let delivery = next(&mut stream).await;
    let envelope = delivery.envelope.expect("envelope");
    assert_eq!(envelope.event_id, accepted.event_id);
    assert_eq!(envelope.correlation_id, "", "no dossier yet");
    hub.shutdown().await.expect("clean shutdown");
}

/// Opens a streaming subscription of `group` through `client`; the sender carries the
/// acknowledgements.
async fn open_stream(
    client: &mut common::Client,
    group: &str,
) -> (
    tokio::sync::mpsc::Sender<lienthong::proto::StreamingSubscribeRequest>,
    tonic::Streaming<lienthong::proto::Delivery>,
) {
    use lienthong::proto::StreamingSubscribeRequest;
    use lienthong::proto::streaming_subscribe_request::Request as Streaming;
    let (requests, receiver) = tokio::sync::mpsc::channel(4);
    requests
        .send(StreamingSubscribeRequest {
            request: Some(Streaming::Open(subscribe_request(group))),
        })
        .await
        .expect("open sent");
    let stream = client
        .streaming_subscribe(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .expect("subscribed")
        .into_inner();
    (requests, stream)
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledgements_on_the_stream_reach_the_right_process_behind_one_address() {
    use lienthong::proto::streaming_subscribe_request::Request as Streaming;
    use lienthong::proto::{Acknowledgement, StreamingSubscribeRequest};

    let env = TestEnv::new("behind_one_address").await;
    let token = env.member("one-stop-48").await;
    let (a, b) = (env.start_hub().await, env.start_hub().await);
    a.access_caught_up().await.expect("access");
    b.access_caught_up().await.expect("access");
    let address = round_robin(vec![a.grpc_addr, b.grpc_addr]).await;
    let mut publisher = client(&a, Some(&token)).await;
    let (code, payload) = dossier();
    publisher
        .publish(publish_request(&code, &payload))
        .await
        .expect("published");

    // A separate Acknowledge call may land on the other process, which holds no subscription.
    let mut first = client_at(address, &token).await;
    let mut second = client_at(address, &token).await;
    let mut stream = first
        .subscribe(subscribe_request("split"))
        .await
        .expect("subscribed")
        .into_inner();
    let delivery = next(&mut stream).await;
    let ack = AcknowledgeRequest {
        subscription_id: delivery.subscription_id.clone(),
        positions: vec![Position {
            partition: delivery.partition,
            offset: delivery.offset,
        }],
    };
    let missed = second
        .acknowledge(ack)
        .await
        .expect_err("the other process holds no subscription");
    assert_eq!(missed.code(), Code::NotFound);
    drop(stream);

    // On the stream itself, the acknowledgement always reaches the process that holds it.
    let (requests, mut stream) = open_stream(&mut first, "together").await;
    let delivery = next(&mut stream).await;
    assert_eq!(
        delivery
            .envelope
            .as_ref()
            .map(|e| e.correlation_id.as_str()),
        Some(code.as_str())
    );
    let ack = Acknowledgement {
        positions: vec![Position {
            partition: delivery.partition,
            offset: delivery.offset,
        }],
    };
    requests
        .send(StreamingSubscribeRequest {
            request: Some(Streaming::Acknowledge(ack)),
        })
        .await
        .expect("ack sent");
    // Give the acknowledgement a moment to be read before the client goes.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    drop(stream);
    drop(requests);

    // The group resumes after the acknowledged event, on whichever process it reaches now.
    let (later, later_payload) = dossier();
    publisher
        .publish(publish_request(&later, &later_payload))
        .await
        .expect("published");
    let (_requests, mut stream) = open_stream(&mut second, "together").await;
    let delivery = next(&mut stream).await;
    assert_eq!(
        delivery
            .envelope
            .as_ref()
            .map(|e| e.correlation_id.as_str()),
        Some(later.as_str()),
        "the acknowledged event came again"
    );
    drop(stream);

    // An acknowledgement before the subscription is opened is refused.
    let (requests, receiver) = tokio::sync::mpsc::channel(1);
    requests
        .send(StreamingSubscribeRequest {
            request: Some(Streaming::Acknowledge(Acknowledgement::default())),
        })
        .await
        .expect("sent");
    let refused = first
        .streaming_subscribe(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    a.shutdown().await.expect("clean shutdown");
    b.shutdown().await.expect("clean shutdown");
}

/// Every counter-example in `schemas/examples` that breaks only rules of severity `warning`,
/// published through the running hub: accepted, with exactly its declared warnings.
#[tokio::test]
async fn every_counter_example_that_only_warns_is_accepted_with_its_warnings() {
    use lienthong::registry::{Catalogue, EventSchema, Severity};
    use std::collections::BTreeSet;

    let schemas = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let catalogue = Catalogue::load(&schemas).expect("catalogue");
    let reference = std::sync::Arc::new(
        lienthong::domain::ReferenceData::load(&schemas.join("reference")).expect("reference"),
    );
    let today = chrono::Utc::now().date_naive();
    let mut warning_only = Vec::new();
    for def in catalogue.events.iter().filter(|d| !d.hub_only) {
        let schema = EventSchema::compile(def, reference.clone(), "").expect("compiles");
        let dir = schemas.join("examples").join(&def.event_type);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("examples")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("invalid-"))
            })
            .collect();
        files.sort();
        for file in files {
            let example: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
            let violations = schema.validate(&example["payload"], today);
            if !violations.is_empty() && violations.iter().all(|v| v.severity == Severity::Warning)
            {
                warning_only.push((def.event_type.clone(), file, example));
            }
        }
    }

    let env = TestEnv::new("warnings").await;
    let token = env.token("one-stop").await;
    let types: BTreeSet<&str> = warning_only.iter().map(|(t, ..)| t.as_str()).collect();
    for event_type in types {
        env.grant_both("one-stop", event_type).await;
    }
    let hub = env.start_hub().await;
    let mut one_stop = client(&hub, Some(&token)).await;
    let mut exercised = BTreeSet::new();
    for (event_type, file, example) in &warning_only {
        let payload = &example["payload"];
        let code = payload["dossier_code"].as_str().unwrap_or_default();
        let label = file.display().to_string();
        let accepted = one_stop
            .publish(lienthong::proto::PublishRequest {
                event_type: event_type.clone(),
                ..publish_request(code, payload)
            })
            .await
            .unwrap_or_else(|status| panic!("{label} only warns, yet: {status:?}"))
            .into_inner();
        let returned: BTreeSet<(String, String)> = accepted
            .warnings
            .iter()
            .map(|w| (w.pointer.clone(), w.rule.clone()))
            .collect();
        let declared: BTreeSet<(String, String)> = example["expect"]
            .as_array()
            .expect("expect")
            .iter()
            .map(|e| {
                (
                    e["pointer"].as_str().unwrap_or_default().to_owned(),
                    e["rule"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert_eq!(returned, declared, "{label}");
        exercised.extend(declared.into_iter().map(|(_, rule)| rule));
    }
    for rule in lienthong::registry::WARNING_RULES {
        assert!(exercised.contains(rule), "{rule} among {exercised:?}");
    }
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_payload_sent_as_json_text_or_avro_bytes_is_read_and_checked_like_a_struct() {
    let env = TestEnv::new("payload-forms").await;
    let hub = env.start_hub().await;
    let mut one_stop = client(&hub, Some(&env.member("danang-onestop").await)).await;
    let mut civil_status = client(&hub, Some(&env.member("civil-status").await)).await;

    // JSON text: accepted, and delivered as the same payload a Struct would carry.
    let (code, payload) = dossier();
    let as_text = lienthong::proto::PublishRequest {
        payload: None,
        payload_json: payload.to_string(),
        ..publish_request(&code, &payload)
    };
    let accepted = one_stop
        .publish(as_text)
        .await
        .expect("JSON text accepted")
        .into_inner();
    let mut stream = civil_status
        .subscribe(subscribe_request("forms"))
        .await
        .expect("subscribed")
        .into_inner();
    let delivery = next(&mut stream).await;
    assert_eq!(
        delivery.envelope.as_ref().map(|e| e.event_id.as_str()),
        Some(accepted.event_id.as_str())
    );
    let received = lienthong::api::convert::struct_to_json(delivery.payload.expect("payload"));
    assert_eq!(received["child"], payload["child"]);
    assert_eq!(received["residence"], payload["residence"]);

    // Avro in Confluent's framing, written with the schema the registry serves for that id.
    let schema_text: serde_json::Value = reqwest::get(format!(
        "http://{}/schemas/ids/{}",
        hub.http_addr, accepted.schema_id
    ))
    .await
    .expect("GET schema")
    .json()
    .await
    .expect("JSON");
    let schema =
        apache_avro::Schema::parse_str(schema_text["schema"].as_str().expect("schema text"))
            .expect("Avro schema");
    let names = lienthong::registry::avro::Names::of(&schema).expect("names");
    let (second, mut avro_payload) = dossier();
    avro_payload["child"]["full_name"] = "Lê Thị Avro".into();
    let value =
        lienthong::registry::avro::json_to_avro(&avro_payload, &schema, &names).expect("mapped");
    let datum = apache_avro::to_avro_datum(&schema, value).expect("written");
    let framed = lienthong::registry::wire::frame(accepted.schema_id as u32, &datum);
    let as_avro = lienthong::proto::PublishRequest {
        payload: None,
        payload_avro: framed.clone(),
        ..publish_request(&second, &avro_payload)
    };
    let accepted_avro = one_stop
        .publish(as_avro)
        .await
        .expect("Avro bytes accepted")
        .into_inner();
    let delivery = next(&mut stream).await;
    assert_eq!(
        delivery.envelope.as_ref().map(|e| e.event_id.as_str()),
        Some(accepted_avro.event_id.as_str())
    );
    let received = lienthong::api::convert::struct_to_json(delivery.payload.expect("payload"));
    assert_eq!(received["child"]["full_name"], "Lê Thị Avro");
    assert_eq!(received["dossier_code"], second.as_str());

    // Each form that cannot be read is refused naming its field and rule, and kept.
    let (third, payload) = dossier();
    let mut broken_id = framed.clone();
    broken_id[4] = broken_id[4].wrapping_add(100);
    let mut truncated = framed;
    truncated.truncate(truncated.len() / 2);
    let cases = [
        (
            lienthong::proto::PublishRequest {
                payload: None,
                payload_json: "{\"dossier_code\": ".into(),
                ..publish_request(&third, &payload)
            },
            "/payload_json",
            "json",
        ),
        (
            lienthong::proto::PublishRequest {
                payload: None,
                payload_json: "[1, 2]".into(),
                ..publish_request(&third, &payload)
            },
            "/payload_json",
            "json",
        ),
        (
            lienthong::proto::PublishRequest {
                payload: None,
                payload_avro: broken_id,
                ..publish_request(&third, &payload)
            },
            "/payload_avro",
            "avro",
        ),
        (
            lienthong::proto::PublishRequest {
                payload: None,
                payload_avro: truncated,
                ..publish_request(&third, &payload)
            },
            "/payload_avro",
            "avro",
        ),
        (
            lienthong::proto::PublishRequest {
                payload_json: payload.to_string(),
                ..publish_request(&third, &payload)
            },
            "/payload",
            "payload.one_form",
        ),
    ];
    // A system without the right to publish is denied, whatever its payload (which the hub
    // reads only after the right is known).
    let mut outsider = client(&hub, Some(&env.token("no-rights").await)).await;
    let denied = outsider
        .publish(lienthong::proto::PublishRequest {
            payload: None,
            payload_avro: vec![0, 0, 0, 0, 1, 2, 3],
            ..publish_request(&third, &payload)
        })
        .await
        .expect_err("no right to publish");
    assert_eq!(
        denied.code(),
        Code::PermissionDenied,
        "{}",
        denied.message()
    );
    for (request, pointer, rule) in cases {
        let status = one_stop.publish(request).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        let violations = status
            .get_details_bad_request()
            .expect("BadRequest details")
            .field_violations;
        assert_eq!(
            violations
                .iter()
                .map(|v| v.field.as_str())
                .collect::<Vec<_>>(),
            vec![pointer],
            "{}",
            status.message()
        );
        assert!(
            status.message().contains(&format!("{pointer} [{rule}]")),
            "{}",
            status.message()
        );
        assert!(
            status.message().contains("kept in quarantine"),
            "{}",
            status.message()
        );
    }
    drop(stream);
    hub.shutdown().await.expect("clean shutdown");
}
