//! Access rights and the member lifecycle against the real hub: default deny, purposes, hub-only
//! types, recorded denials, minimised deliveries, and withdrawals that take effect on open
//! streams.

mod common;

use std::time::Duration;

use common::*;
use lienthong::access::{AccessError, Credentials, Direction, Grant, Resource, Rights};
use lienthong::domain::SystemId;
use lienthong::proto::{PublishRequest, batch_item_result::Outcome};
use serde_json::json;
use tonic::Code;

fn system(id: &str) -> SystemId {
    SystemId::parse(id).expect("valid id")
}

type DenialRow = (String, String, String, String);

/// The refusals recorded for `system`, once `count` of them are written (they are written by
/// a background task).
async fn denials(env: &TestEnv, system: &str, count: usize) -> Vec<DenialRow> {
    let client = env.pool.get().await.expect("connection");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<DenialRow> = client
            .query(
                "SELECT action, resource, purpose, reason FROM access_denial
                 WHERE system_id = $1 ORDER BY id",
                &[&system],
            )
            .await
            .expect("denials readable")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        if rows.len() >= count || tokio::time::Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The status a stream ends with; it must end within seconds (refresh interval 100 ms in tests).
async fn ending(stream: &mut tonic::Streaming<lienthong::proto::Delivery>) -> tonic::Status {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => panic!("the stream did not end within 10 s"),
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => panic!("the stream ended without saying why"),
            Ok(Err(status)) => return status,
        }
    }
}

fn access_catalogue(env: &TestEnv) -> lienthong::access::AccessCatalogue {
    let catalogue =
        lienthong::registry::Catalogue::load(&env.config.schemas.dir).expect("catalogue");
    lienthong::app::access_catalogue(&env.config.schemas.dir, &catalogue).expect("access policy")
}

#[tokio::test]
async fn without_a_right_nothing_is_published_or_delivered_and_the_attempt_is_recorded() {
    let env = TestEnv::new("deny").await;
    let hub = env.start_hub().await;
    let mut stranger = client(&hub, Some(&env.token("stranger").await)).await;
    let (code, payload) = dossier();

    let status = stranger
        .publish(publish_request(&code, &payload))
        .await
        .expect_err("no right to publish");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("no right to publish"),
        "{}",
        status.message()
    );

    let status = stranger
        .subscribe(subscribe_request("peek"))
        .await
        .expect_err("no right to subscribe");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // An unknown type from a system that may publish nothing is refused, not quarantined.
    let status = stranger
        .publish(PublishRequest {
            event_type: "birth.made-up".into(),
            ..publish_request(&code, &payload)
        })
        .await
        .expect_err("unknown type");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // A right for one purpose does not cover another.
    env.grant(
        "stranger",
        Direction::Publish,
        EVENT_TYPE,
        "dossier-tracking",
    )
    .await;
    hub.access_caught_up().await.expect("caught up");
    let status = stranger
        .publish(PublishRequest {
            purpose: "048196000123".into(),
            ..publish_request(&code, &payload)
        })
        .await
        .expect_err("wrong purpose");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("dossier-tracking"),
        "{}",
        status.message()
    );

    // Nothing of the refused payloads was kept: the quarantine is for invalid data from
    // systems that may send data, not for intruders.
    let client = env.pool.get().await.expect("connection");
    let quarantined: i64 = client
        .query_one("SELECT count(*) FROM quarantine", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(quarantined, 0);

    let recorded = denials(&env, "stranger", 4).await;
    let expected = [
        ("publish", EVENT_TYPE, PURPOSE, "no_right"),
        ("subscribe", EVENT_TYPE, PURPOSE, "no_right"),
        ("publish", "(unknown event type)", PURPOSE, "unknown_type"),
        // What the caller typed as a purpose (here an ID number) is not stored.
        ("publish", EVENT_TYPE, "(not a purpose code)", "purpose"),
    ];
    let recorded: Vec<(&str, &str, &str, &str)> = recorded
        .iter()
        .map(|(a, r, p, why)| (a.as_str(), r.as_str(), p.as_str(), why.as_str()))
        .collect();
    assert_eq!(recorded, expected);

    let metrics = common::metrics(&hub).await;
    assert!(
        metrics.contains(r#"lienthong_access_denied_total{action="publish",reason="no_right"} 1"#),
        "{metrics}"
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_batch_answers_denied_events_one_by_one_and_stops_when_the_token_goes() {
    let env = TestEnv::new("batchdeny").await;
    let hub = env.start_hub().await;
    let token = env.member("one-stop").await;
    let mut one_stop = client(&hub, Some(&token)).await;
    let (code, payload) = dossier();
    let allowed = publish_request(&code, &payload);
    let other_purpose = PublishRequest {
        purpose: "fee-payment".into(),
        ..publish_request(&code, &payload)
    };
    let response = one_stop
        .publish_batch(futures::stream::iter([
            allowed.clone(),
            other_purpose,
            allowed.clone(),
        ]))
        .await
        .expect("the batch is answered")
        .into_inner();
    assert_eq!((response.accepted, response.denied), (2, 1));
    match &response.results[1].outcome {
        Some(Outcome::Denied(denial)) => assert_eq!(denial.reason, "purpose"),
        other => panic!("expected a denial, got {other:?}"),
    }

    // A batch still streaming when its token is revoked publishes nothing more.
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut streaming = client(&hub, Some(&token)).await;
    let batch = tokio::spawn({
        async move {
            streaming
                .publish_batch(tokio_stream::wrappers::ReceiverStream::new(receiver))
                .await
        }
    });
    sender.send(allowed.clone()).await.expect("sent");
    tokio::time::sleep(Duration::from_millis(300)).await;
    Credentials::new(env.pool.clone())
        .revoke_credentials(&system("one-stop"), None, "test operator")
        .await
        .expect("revoked");
    hub.access_caught_up().await.expect("caught up");
    sender.send(allowed).await.expect("sent");
    drop(sender);
    let response = batch
        .await
        .expect("the task ends")
        .expect("answered")
        .into_inner();
    assert_eq!((response.accepted, response.denied), (1, 1), "{response:?}");
    match &response.results[1].outcome {
        Some(Outcome::Denied(denial)) => assert_eq!(denial.reason, "revoked"),
        other => panic!("expected a denial, got {other:?}"),
    }
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn audit_events_are_the_hubs_alone() {
    let env = TestEnv::new("hubonly").await;
    let hub = env.start_hub().await;
    let token = env.member("auditor").await;
    let access = access_catalogue(&env);
    let grant = Grant {
        system: system("auditor"),
        direction: Direction::Publish,
        resource: Resource::EventType("audit.data-access-logged".into()),
        purposes: vec!["audit".into()],
        owner: system("auditor"),
        granted_by: "test".into(),
        note: String::new(),
    };
    let refused = Rights::new(env.pool.clone()).grant(&grant, &access).await;
    assert!(
        matches!(&refused, Err(AccessError::InvalidGrant(why)) if why.contains("only the hub")),
        "{refused:?}"
    );
    let unknown_purpose = Grant {
        resource: Resource::EventType(EVENT_TYPE.into()),
        purposes: vec!["curiosity".into()],
        ..grant.clone()
    };
    let refused = Rights::new(env.pool.clone())
        .grant(&unknown_purpose, &access)
        .await;
    assert!(
        matches!(&refused, Err(AccessError::InvalidGrant(why)) if why.contains("unknown purpose \"curiosity\"")),
        "{refused:?}"
    );
    // Even a right forced into the table by hand does not let a member publish audit events.
    env.pool
        .get()
        .await
        .expect("connection")
        .execute(
            "INSERT INTO access_right (system_id, direction, resource_kind, resource, purposes,
                owner, granted_by) VALUES ('auditor', 'publish', 'event_type',
                'audit.data-access-logged', '{audit}', 'auditor', 'psql')",
            &[],
        )
        .await
        .expect("forced");

    let mut auditor = client(&hub, Some(&token)).await;
    let status = auditor
        .publish(PublishRequest {
            event_type: "audit.data-access-logged".into(),
            purpose: "audit".into(),
            ..publish_request("G22.99.08-261120-0001", &json!({}))
        })
        .await
        .expect_err("members never publish audit events");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("only the hub"),
        "{}",
        status.message()
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_revoked_token_is_refused_and_its_open_stream_ends() {
    let env = TestEnv::new("revoke").await;
    let hub = env.start_hub().await;
    let token = env.member("civil-status").await;
    let mut civil_status = client(&hub, Some(&token)).await;
    let mut stream = civil_status
        .subscribe(subscribe_request("registrar"))
        .await
        .expect("subscribed")
        .into_inner();

    let revoked = Credentials::new(env.pool.clone())
        .revoke_credentials(&system("civil-status"), None, "test operator")
        .await
        .expect("revoked");
    assert_eq!(revoked, 1);

    let status = ending(&mut stream).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("revoked"), "{}", status.message());
    let (code, payload) = dossier();
    let status = civil_status
        .publish(publish_request(&code, &payload))
        .await
        .expect_err("revoked token");
    assert_eq!(status.code(), Code::Unauthenticated);
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn revoking_the_right_ends_the_subscription_it_allowed() {
    let env = TestEnv::new("unright").await;
    let hub = env.start_hub().await;
    let token = env.token("portal").await;
    let right = env
        .grant("portal", Direction::Subscribe, EVENT_TYPE, PURPOSE)
        .await;
    let mut portal = client(&hub, Some(&token)).await;
    let mut stream = portal
        .subscribe(subscribe_request("tracking"))
        .await
        .expect("subscribed")
        .into_inner();
    Rights::new(env.pool.clone())
        .revoke(&system("portal"), right, "test operator")
        .await
        .expect("right revoked");
    let status = ending(&mut stream).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("right was withdrawn"),
        "{}",
        status.message()
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn disabled_systems_and_expired_tokens_are_refused() {
    let env = TestEnv::new("lifecycle").await;
    let hub = env.start_hub().await;
    let credentials = Credentials::new(env.pool.clone());
    let token = env.member("one-stop").await;
    let (code, payload) = dossier();
    let mut one_stop = client(&hub, Some(&token)).await;
    one_stop
        .publish(publish_request(&code, &payload))
        .await
        .expect("allowed while enabled");

    credentials
        .set_disabled(&system("one-stop"), true)
        .await
        .expect("disabled");
    hub.access_caught_up().await.expect("caught up");
    let status = one_stop
        .publish(publish_request(&code, &payload))
        .await
        .expect_err("disabled");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().contains("disabled"),
        "{}",
        status.message()
    );

    credentials
        .set_disabled(&system("one-stop"), false)
        .await
        .expect("enabled");
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(6);
    let expiring = credentials
        .issue_token(&system("one-stop"), Some(expires_at))
        .await
        .expect("token issued");
    let mut short_lived = client(&hub, Some(&expiring.token)).await;
    short_lived
        .publish(publish_request(&code, &payload))
        .await
        .expect("valid before expiry");
    let mut stream = short_lived
        .subscribe(subscribe_request("until-expiry"))
        .await
        .expect("subscribed")
        .into_inner();
    // The stream ends by itself when the token expires, without any change in the database.
    let status = ending(&mut stream).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(chrono::Utc::now() >= expires_at);
    let status = short_lived
        .publish(publish_request(&code, &payload))
        .await
        .expect_err("expired");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{}", status.message());
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_system_cannot_hold_more_subscriptions_than_its_cap_even_all_at_once() {
    let env = TestEnv::new("cap").await;
    let hub = env.start_hub().await;
    let token = env.member("civil-status").await;
    let cap = lienthong::events::MAX_SUBSCRIPTIONS_PER_SYSTEM;
    let mut clients = Vec::new();
    for _ in 0..cap + 8 {
        clients.push(client(&hub, Some(&token)).await);
    }
    let attempts = clients
        .iter_mut()
        .enumerate()
        .map(|(i, civil_status)| async move {
            civil_status
                .subscribe(subscribe_request(&format!("group-{i}")))
                .await
        });
    let outcomes = futures::future::join_all(attempts).await;
    let opened = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| {
            matches!(o, Err(s) if s.code() == Code::ResourceExhausted
                && s.message().contains("subscriptions"))
        })
        .count();
    assert_eq!((opened, refused), (cap, 8));
    drop(outcomes);
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_subscriber_receives_only_the_fields_its_purpose_allows() {
    let env = TestEnv::new("minimise").await;
    let hub = env.start_hub().await;
    let publisher = env.member("one-stop").await;
    let insurer_token = env.token("social-security").await;
    env.grant(
        "social-security",
        Direction::Subscribe,
        EVENT_TYPE,
        "health-insurance",
    )
    .await;
    let mut one_stop = client(&hub, Some(&publisher)).await;
    let mut insurer = client(&hub, Some(&insurer_token)).await;
    let mut stream = insurer
        .subscribe(lienthong::proto::SubscribeRequest {
            purpose: "health-insurance".into(),
            legal_basis: "Law on Health Insurance 25/2008/QH12".into(),
            ..subscribe_request("cards")
        })
        .await
        .expect("subscribed")
        .into_inner();
    let (code, payload) = dossier();
    let accepted = one_stop
        .publish(publish_request(&code, &payload))
        .await
        .expect("published")
        .into_inner();
    let delivery = loop {
        let delivery = next(&mut stream).await;
        if delivery.envelope.as_ref().map(|e| e.event_id.as_str()) == Some(&accepted.event_id) {
            break delivery;
        }
    };
    let received =
        lienthong::api::convert::struct_to_json(delivery.payload.expect("payload decoded"));
    // Exactly the declared fields, whatever else the example dossier holds.
    let p = &payload;
    let expected = json!({
        "dossier_code": p["dossier_code"], "procedure_code": p["procedure_code"],
        "received_at": p["received_at"], "province_code": p["province_code"],
        "commune_code": p["commune_code"],
        "child": {
            "full_name": p["child"]["full_name"], "sex": p["child"]["sex"],
            "birth_date": p["child"]["birth_date"], "nationality": p["child"]["nationality"],
        },
        "mother": {"full_name": p["mother"]["full_name"], "personal_id": p["mother"]["personal_id"]},
        "requested_services": {"health_insurance": p["requested_services"]["health_insurance"]},
    });
    // The time comes back as the same instant, perhaps written in UTC: compared apart.
    assert!(received["received_at"].is_string(), "{received}");
    let mut received_without_time = received.clone();
    let mut expected_without_time = expected;
    for v in [&mut received_without_time, &mut expected_without_time] {
        if let Some(object) = v.as_object_mut() {
            object.remove("received_at");
        }
    }
    assert_eq!(received_without_time, expected_without_time);
    let withheld: Vec<&str> = delivery
        .withheld_fields
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        withheld,
        [
            "birth_certificate_no",
            "child.birth_place",
            "child.ethnicity_code",
            "declarant",
            "extract_copies",
            "father",
            "mother.birth_date",
            "mother.birth_date_partial",
            "mother.ethnicity_code",
            "mother.nationality",
            "mother.stateless",
            "mother.travel_document",
            "prefill",
            "requested_services.id_card",
            "requested_services.permanent_residence",
            "residence",
        ]
    );

    // A purpose with no declared fields for this type cannot be granted a subscription.
    let undeclared = Grant {
        system: system("social-security"),
        direction: Direction::Subscribe,
        resource: Resource::EventType(EVENT_TYPE.into()),
        purposes: vec!["fee-payment".into()],
        owner: system("one-stop"),
        granted_by: "test".into(),
        note: String::new(),
    };
    let refused = Rights::new(env.pool.clone())
        .grant(&undeclared, &access_catalogue(&env))
        .await;
    assert!(
        matches!(&refused, Err(AccessError::InvalidGrant(why)) if why.contains("disclosure.toml")),
        "{refused:?}"
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn one_system_over_its_limits_is_slowed_down_and_the_others_are_not() {
    let mut env = TestEnv::new("limits").await;
    let two = std::num::NonZeroU32::new(2).expect("non-zero");
    env.config.limits.calls_per_second = std::num::NonZeroU32::MIN;
    env.config.limits.call_burst = two;
    env.config.limits.max_message_bytes = 8192;
    env.config.limits.subscription_buffer_bytes = 8192;
    let hub = env.start_hub().await;
    let greedy = env.member("greedy").await;
    let patient = env.member("patient").await;
    let (code, payload) = dossier();

    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(client(&hub, Some(&greedy)).await);
    }
    // Sent at once, so that a slow machine cannot refill the budget between them.
    let calls = clients.into_iter().map(|mut greedy| {
        let request = publish_request(&code, &payload);
        async move {
            match greedy.publish(request).await {
                Ok(_) => Code::Ok,
                Err(status) => status.code(),
            }
        }
    });
    let mut codes = futures::future::join_all(calls).await;
    codes.sort_by_key(|code| *code as i32);
    assert_eq!(codes, [Code::Ok, Code::Ok, Code::ResourceExhausted]);
    let mut patient = client(&hub, Some(&patient)).await;
    patient
        .publish(publish_request(&code, &payload))
        .await
        .expect("another system keeps its own budget");

    // A message over the size limit is refused before it is read.
    let mut huge = payload.clone();
    huge["child"]["full_name"] = "A".repeat(10_000).into();
    let status = patient
        .publish(publish_request(&code, &huge))
        .await
        .expect_err("over the size limit");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    hub.shutdown().await.expect("clean shutdown");
}
