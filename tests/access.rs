//! Access rights and the member lifecycle against the real hub: default deny, purposes, hub-only
//! types, recorded denials, and withdrawals that take effect on open subscriptions.

mod common;

use std::time::Duration;

use common::*;
use lienthong::access::{AccessError, Credentials, Direction, Grant, Resource, Rights};
use lienthong::domain::SystemId;
use lienthong::proto::{PublishRequest, batch_item_result::Outcome};
use tonic::Code;

fn system(id: &str) -> SystemId {
    SystemId::parse(id).expect("valid id")
}

async fn denials(env: &TestEnv, system: &str) -> Vec<(String, String, String, String)> {
    let client = env.pool.get().await.expect("connection");
    client
        .query(
            "SELECT action, resource, purpose, reason FROM access_denial
             WHERE system_id = $1 ORDER BY id",
            &[&system],
        )
        .await
        .expect("denials readable")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// The stream's end: the status it finished with, within the wait.
async fn ending(stream: &mut tonic::Streaming<lienthong::proto::Delivery>) -> tonic::Status {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => panic!("the stream did not end within 20 s"),
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => panic!("the stream ended without saying why"),
            Ok(Err(status)) => return status,
        }
    }
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

    // A right for one purpose does not cover another.
    env.grant(
        "stranger",
        Direction::Publish,
        EVENT_TYPE,
        "dossier-tracking",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = stranger
        .publish(publish_request(&code, &payload))
        .await
        .expect_err("wrong purpose");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("dossier-tracking"),
        "{}",
        status.message()
    );

    // Nothing of the refused payload was kept: the quarantine is for invalid data, not intruders.
    let client = env.pool.get().await.expect("connection");
    let quarantined: i64 = client
        .query_one("SELECT count(*) FROM quarantine", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(quarantined, 0);

    let recorded = denials(&env, "stranger").await;
    let reasons: Vec<(&str, &str)> = recorded
        .iter()
        .map(|(action, _, _, reason)| (action.as_str(), reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("publish", "no_right"),
            ("subscribe", "no_right"),
            ("publish", "purpose")
        ]
    );
    assert_eq!(recorded[0].1, EVENT_TYPE);
    assert_eq!(recorded[0].2, PURPOSE);

    let metrics = reqwest::get(format!("http://{}/metrics", hub.http_addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"lienthong_access_denied_total{action="publish",reason="no_right"} 1"#),
        "{metrics}"
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_batch_answers_denied_events_one_by_one() {
    let env = TestEnv::new("batchdeny").await;
    let hub = env.start_hub().await;
    let mut one_stop = client(&hub, Some(&env.member("one-stop").await)).await;
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
            allowed,
        ]))
        .await
        .expect("the batch is answered")
        .into_inner();
    assert_eq!((response.accepted, response.denied), (2, 1));
    match &response.results[1].outcome {
        Some(Outcome::Denied(denial)) => assert_eq!(denial.reason, "purpose"),
        other => panic!("expected a denial, got {other:?}"),
    }
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn audit_events_are_the_hubs_alone() {
    let env = TestEnv::new("hubonly").await;
    let hub = env.start_hub().await;
    let token = env.member("auditor").await;
    let catalogue =
        lienthong::registry::Catalogue::load(&env.config.schemas.dir).expect("catalogue");
    let access = lienthong::app::access_catalogue(&env.config.schemas.dir, &catalogue)
        .expect("access policy");
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

    let mut auditor = client(&hub, Some(&token)).await;
    let status = auditor
        .publish(PublishRequest {
            event_type: "audit.data-access-logged".into(),
            purpose: "audit".into(),
            ..publish_request("G22.99.08-261120-0001", &serde_json::json!({}))
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
        .revoke_tokens(&system("civil-status"), None, "test operator")
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
    tokio::time::sleep(Duration::from_millis(400)).await;
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
    let expiring = credentials
        .issue_token(
            &system("one-stop"),
            Some(chrono::Utc::now() + chrono::Duration::milliseconds(800)),
        )
        .await
        .expect("token issued");
    let mut short_lived = client(&hub, Some(&expiring.token)).await;
    short_lived
        .publish(publish_request(&code, &payload))
        .await
        .expect("valid before expiry");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let status = short_lived
        .publish(publish_request(&code, &payload))
        .await
        .expect_err("expired");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{}", status.message());
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_subscriber_receives_only_the_fields_its_purpose_allows() {
    let env = TestEnv::new("minimise").await;
    let hub = env.start_hub().await;
    let mut one_stop = client(&hub, Some(&env.member("one-stop").await)).await;
    let insurer_token = env.token("social-security").await;
    env.grant(
        "social-security",
        Direction::Subscribe,
        EVENT_TYPE,
        "health-insurance",
    )
    .await;
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
    assert_eq!(
        received["child"]["full_name"],
        payload["child"]["full_name"]
    );
    assert_eq!(
        received["mother"]["personal_id"],
        payload["mother"]["personal_id"]
    );
    assert!(received["child"].get("birth_place").is_none(), "{received}");
    assert!(
        received["child"].get("ethnicity_code").is_none(),
        "{received}"
    );
    assert!(received.get("father").is_none(), "{received}");
    assert!(received.get("declarant").is_none(), "{received}");
    for withheld in [
        "child.birth_place",
        "child.ethnicity_code",
        "declarant",
        "father",
    ] {
        assert!(
            delivery.withheld_fields.iter().any(|w| w == withheld),
            "{withheld} not reported as withheld: {:?}",
            delivery.withheld_fields
        );
    }

    // A purpose with no declared fields for this type cannot be granted a subscription.
    let catalogue =
        lienthong::registry::Catalogue::load(&env.config.schemas.dir).expect("catalogue");
    let access = lienthong::app::access_catalogue(&env.config.schemas.dir, &catalogue)
        .expect("access policy");
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
        .grant(&undeclared, &access)
        .await;
    assert!(
        matches!(&refused, Err(AccessError::InvalidGrant(why)) if why.contains("disclosure.toml")),
        "{refused:?}"
    );
    hub.shutdown().await.expect("clean shutdown");
}
