//! The procedure engine against the real broker, PostgreSQL and the sandboxes, with the
//! repository's connectors: a birth dossier submitted (twice) becomes one procedure that goes
//! through civil registration and the health-insurance card to its result, mirrored on the
//! national portal; a dossier that did not ask for the card never reaches social insurance; a
//! child joining a grandparent's household waits for the head's consent, and a refusal ends
//! only the residence branch; and a hub stopped in the middle leaves the next one to finish it
//! with no second personal ID and no second card. A late registration with copies pays its fee on
//! PayGov within the group, at portal status 6, charged once. (A hub killed with SIGKILL cannot be tested
//! here: the local broker never gives a dead member's partitions to the rest of its group.) A
//! death dossier is registered, and the population and residence databases updated, before its
//! result is returned; its benefits are decided by social insurance from the contributions it
//! holds, then paid once, or refused with the reason while the other branches go on; every
//! agency entitled to the death's registration is told once, and the dossier shows who
//! confirmed. A birth form filled in from the population database through the hub has its
//! pre-fill counted by the hub itself. An answer that overtakes its dossier is joined to it, a step past its due time
//! (on an injected clock) shows overdue, and officials read the dossier over gRPC.

mod common;

use std::sync::Arc;

use common::sandbox::{down, failing_a_third};
use common::{PURPOSE, TestEnv, client, dossier, lineage_events, publish_request};
use lienthong::access::Direction;
use lienthong::domain::Clock as _;
use lienthong::domain::ManualClock;
use lienthong::procedures::instance::{Instance, State, StepState};
use lienthong::procedures::{store, view};
use lienthong::proto::dossier_service_client::DossierServiceClient;
use lienthong::proto::{GetDossierRequest, ListDossiersRequest};
use lienthong::sandbox::faults::Faults;
use serde_json::Value;

/// The purpose PayGov's connectors act for.
const FEES: &str = "fee-payment";

/// Starts the sandboxes and installs the repository's connectors named in `manifests`, with
/// the rights their systems need; grants the engine its rights. The sandboxes' base URL.
async fn prepare(env: &TestEnv, manifests: &[&str]) -> String {
    prepare_with_faults(env, manifests, Default::default()).await
}

/// [`prepare`], with the sandboxes' faults.
async fn prepare_with_faults(
    env: &TestEnv,
    manifests: &[&str],
    faults: std::collections::HashMap<String, Faults>,
) -> String {
    let base = common::sandbox::start_shared(env, faults).await;
    for manifest in manifests {
        install(env, manifest, &base).await;
    }
    env.grant_procedure_engine().await;
    base
}

/// One repository connector pointed at the sandboxes, and its system's rights.
async fn install(env: &TestEnv, manifest: &str, base: &str) {
    common::sandbox::install_manifest(env, manifest, base, &[]);
    let (system, purpose, subscribes, publishes): (&str, &str, &[&str], &[&str]) = match manifest {
        "civil-status" => (
            "civil-status-connector",
            PURPOSE,
            &["birth.dossier-submitted"],
            &["birth.civil-registration-completed", "birth.step-failed"],
        ),
        "civil-status-deaths" => (
            "civil-status-connector",
            PURPOSE,
            &["death.dossier-submitted"],
            &["death.civil-registration-completed", "death.step-failed"],
        ),
        "population-deaths" => (
            "population-connector",
            "identity-management",
            &["death.population-status-update-requested"],
            &["death.population-status-updated", "death.step-failed"],
        ),
        "population-death-reverts" => (
            "population-connector",
            "identity-management",
            &["death.population-status-revert-requested"],
            &["death.population-status-reverted", "death.step-failed"],
        ),
        "residence-death-reverts" => (
            "residence-connector",
            "residence-registration",
            &["death.residence-deletion-revert-requested"],
            &["death.residence-deletion-reverted", "death.step-failed"],
        ),
        "residence-births" => (
            "residence-connector",
            "residence-registration",
            &["birth.residence-registration-requested"],
            &["birth.residence-registered", "birth.step-failed"],
        ),
        "residence-deaths" => (
            "residence-connector",
            "residence-registration",
            &["death.residence-deletion-requested"],
            &["death.residence-deleted", "death.step-failed"],
        ),
        "social-insurance-benefits" => (
            "social-insurance-connector",
            "social-insurance-benefit",
            &["death.benefit-decision-requested"],
            &[
                "death.benefit-decided",
                "death.benefit-refused",
                "death.step-failed",
            ],
        ),
        "social-insurance-benefit-cancellations" => (
            "social-insurance-connector",
            "social-insurance-benefit",
            &["death.benefit-decision-cancel-requested"],
            &["death.benefit-decision-cancelled", "death.step-failed"],
        ),
        "social-insurance-benefit-payments" => (
            "social-insurance-connector",
            "social-insurance-benefit",
            &["death.benefit-payment-requested"],
            &["death.benefit-paid", "death.step-failed"],
        ),
        "id-cards" => (
            "population-connector",
            "identity-management",
            &["birth.id-card-requested"],
            &["birth.id-card-issued", "birth.step-failed"],
        ),
        "social-insurance-cards" => (
            "social-insurance-connector",
            "health-insurance",
            &["birth.health-insurance-card-requested"],
            &["birth.health-insurance-card-issued", "birth.step-failed"],
        ),
        "portal-dossiers" => (
            "portal-connector",
            "dossier-tracking",
            &[
                "birth.dossier-submitted",
                "death.dossier-submitted",
                "dossier.status-changed",
            ],
            &[],
        ),
        "paygov-payments" => (
            "paygov-connector",
            FEES,
            &["payment.requested"],
            &["payment.initiated"],
        ),
        "paygov-confirmations" => (
            "paygov-connector",
            FEES,
            &["payment.initiated"],
            &["payment.confirmed", "payment.failed"],
        ),
        "civil-status-verifications" => (
            "civil-status-connector",
            PURPOSE,
            &[],
            &["birth.verification-recorded"],
        ),
        "population-lookups" => (
            "population-connector",
            "identity-management",
            &["birth.citizen-lookup-requested"],
            &["birth.citizen-found", "birth.citizen-lookup-failed"],
        ),
        // Runs as portal-dossiers' system, granted with it.
        "portal-progress" => return,
        other => panic!("no rights known for {other}"),
    };
    env.ensure_system(system).await;
    for event_type in subscribes {
        env.grant(system, Direction::Subscribe, event_type, purpose)
            .await;
    }
    for event_type in publishes {
        env.grant(system, Direction::Publish, event_type, purpose)
            .await;
    }
}

/// A birth dossier asking for the health-insurance card but not for residence (whose
/// connector for newborns does not exist yet).
fn birth_dossier() -> (String, Value) {
    let (code, mut payload) = dossier();
    payload["requested_services"]["permanent_residence"] = Value::Bool(false);
    payload["requested_services"]["health_insurance"] = Value::Bool(true);
    (code, payload)
}

async fn dossier_client(
    hub: &lienthong::app::Hub,
    token: &str,
) -> DossierServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        impl tonic::service::Interceptor + use<>,
    >,
> {
    hub.access_caught_up().await.expect("access policy read");
    DossierServiceClient::with_interceptor(common::channel(hub).await, common::bearer(token))
}

/// The civil-status system's answer for dossier `code` (the registration example).
fn registration_answer(code: &str) -> lienthong::proto::PublishRequest {
    let mut registration: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("schemas/examples/birth.civil-registration-completed/valid-danang.json"),
        )
        .expect("example"),
    )
    .expect("json");
    registration["dossier_code"] = Value::String(code.to_owned());
    let mut answer = publish_request(code, &registration);
    answer.event_type = "birth.civil-registration-completed".into();
    answer
}

/// The statuses the national portal's sandbox shows for `code`, once the last is 10 (result
/// returned).
async fn portal_statuses_once_returned(base: &str, code: &str) -> Vec<i64> {
    let http = reqwest::Client::new();
    common::eventually("the portal shows the result returned", async || {
        let view: Value = http
            .get(format!("{base}/portal/v1/dossiers/{code}"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let statuses: Vec<i64> = view["timeline"]
            .as_array()
            .map(|t| t.iter().filter_map(|s| s["status"].as_i64()).collect())
            .unwrap_or_default();
        if statuses.last() == Some(&10) {
            Ok(statuses)
        } else {
            Err(view.to_string())
        }
    })
    .await
}

async fn procedure(env: &TestEnv, code: &str) -> Option<Instance> {
    let client = env.pool.get().await.expect("connection");
    store::load(&client, code).await.expect("readable")
}

fn step_states(instance: &Instance) -> Vec<(&str, StepState)> {
    instance
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.state))
        .collect()
}

/// The dossier's procedure once completed and everything it decided published.
async fn completed(env: &TestEnv, code: &str) -> Instance {
    common::eventually("the procedure completes", async || {
        // The instance first: its completion and the events announcing it are committed
        // together, so once it reads completed, a count of zero means they were published.
        let instance = procedure(env, code).await;
        let queued = count(
            env,
            "SELECT count(*) FROM procedure_outbox WHERE dossier_code = $1 AND published_at IS NULL",
            code,
        )
        .await;
        match instance {
            Some(instance) if instance.state == State::Completed && queued == 0 => Ok(instance),
            other => Err(format!("{queued} event(s) queued; {other:?}")),
        }
    })
    .await
}

async fn count(env: &TestEnv, sql: &str, value: &str) -> i64 {
    env.pool
        .get()
        .await
        .expect("connection")
        .query_one(sql, &[&value])
        .await
        .expect("counted")
        .get(0)
}

/// The outbox events of `code` of `event_type`, published or not.
async fn decided(env: &TestEnv, code: &str, event_type: &str) -> Vec<(Value, bool)> {
    env.pool
        .get()
        .await
        .expect("connection")
        .query(
            "SELECT payload, published_at IS NOT NULL FROM procedure_outbox
             WHERE dossier_code = $1 AND event_type = $2 ORDER BY id",
            &[&code, &event_type],
        )
        .await
        .expect("outbox")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// The one personal ID the civil-status sandbox gave the dossier's child (fails on two).
async fn registered_child(env: &TestEnv, code: &str) -> String {
    let rows = env
        .pool
        .get()
        .await
        .expect("connection")
        .query(
            "SELECT personal_id FROM sandbox_civil_status.birth WHERE dossier_code = $1",
            &[&code],
        )
        .await
        .expect("births");
    assert_eq!(rows.len(), 1, "one registration for the dossier");
    rows[0].get(0)
}

/// A dossier whose child joins the household of a grandparent (not a parent): the head's
/// consent is needed.
fn grandparents_dossier() -> (String, Value) {
    let (code, _) = dossier();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/examples/birth.dossier-submitted/valid-joins-grandparents-household.json");
    let mut payload: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("example")).expect("json");
    payload["dossier_code"] = Value::String(code.clone());
    (code, payload)
}

fn consent(code: &str, decision: &str) -> lienthong::proto::PublishRequest {
    let mut request = publish_request(
        code,
        &serde_json::json!({
            "dossier_code": code,
            "household_head": {"personal_id": "048060001234", "full_name": "Nguyễn Văn Tư"},
            "decision": decision,
            "decided_at": "2026-11-20T10:30:00+07:00",
            "channel": "VNEID"
        }),
    );
    request.event_type = "birth.household-head-consent-recorded".into();
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_joining_a_grandparents_household_waits_for_consent_and_a_refusal_ends_only_residence()
 {
    let mut env = TestEnv::new("procedures_consent").await;
    env.config.procedures.enabled = true;
    prepare(
        &env,
        &["civil-status", "social-insurance-cards", "residence-births"],
    )
    .await;
    let onestop = env.member("one-stop-48").await;
    // The one-stop system passes on the head's answer, from VNeID.
    env.grant(
        "one-stop-48",
        Direction::Publish,
        "birth.household-head-consent-recorded",
        PURPOSE,
    )
    .await;
    let hub = env.start_hub().await;
    let mut publisher = client(&hub, Some(&onestop)).await;
    let (consented, payload) = grandparents_dossier();
    publisher
        .publish(publish_request(&consented, &payload))
        .await
        .expect("published");
    let (refused, payload) = grandparents_dossier();
    publisher
        .publish(publish_request(&refused, &payload))
        .await
        .expect("published");

    // Registered and carded, the residence waits, visibly, for the head.
    for code in [&consented, &refused] {
        common::eventually(
            "the card is issued while the consent is awaited",
            async || {
                let instance = procedure(&env, code).await.ok_or("not opened")?;
                let states = step_states(&instance);
                let expected = [
                    ("CIVIL_REGISTRATION", StepState::Done),
                    ("HOUSEHOLD_HEAD_CONSENT", StepState::Running),
                    ("RESIDENCE_REGISTRATION", StepState::Waiting),
                    ("HEALTH_INSURANCE_CARD", StepState::Done),
                ];
                if states == expected && instance.steps[1].due_at.is_some() {
                    Ok(())
                } else {
                    Err(format!("{states:?}"))
                }
            },
        )
        .await;
    }
    let residences = "SELECT count(*) FROM sandbox_residence.permanent WHERE personal_id = $1";
    let child = registered_child(&env, &consented).await;
    assert_eq!(
        count(&env, residences, &child).await,
        0,
        "not before the consent"
    );

    publisher
        .publish(consent(&consented, "CONSENTED"))
        .await
        .expect("published");
    let instance = completed(&env, &consented).await;
    assert_eq!(instance.steps[2].state, StepState::Done, "{instance:?}");
    assert_eq!(count(&env, residences, &child).await, 1, "registered once");
    let recorded: Value = env
        .pool
        .get()
        .await
        .expect("connection")
        .query_one(
            "SELECT consent FROM sandbox_residence.permanent WHERE personal_id = $1",
            &[&child],
        )
        .await
        .expect("consent")
        .get(0);
    assert_eq!(recorded["head_personal_id"], "048060001234");
    let results = decided(&env, &consented, "birth.result-returned").await;
    let documents: Vec<&str> = results[0].0["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["result_type"].as_str())
        .collect();
    assert_eq!(
        documents,
        [
            "BIRTH_EXTRACT",
            "PERSONAL_ID",
            "PERMANENT_RESIDENCE",
            "HEALTH_INSURANCE_CARD"
        ]
    );

    publisher
        .publish(consent(&refused, "REFUSED"))
        .await
        .expect("published");
    let instance = completed(&env, &refused).await;
    assert_eq!(
        step_states(&instance),
        [
            ("CIVIL_REGISTRATION", StepState::Done),
            ("HOUSEHOLD_HEAD_CONSENT", StepState::Refused),
            ("RESIDENCE_REGISTRATION", StepState::Skipped),
            ("HEALTH_INSURANCE_CARD", StepState::Done)
        ],
        "the refusal ends the residence branch; the card stands"
    );
    let child = registered_child(&env, &refused).await;
    assert_eq!(count(&env, residences, &child).await, 0, "never asked");
    assert!(
        decided(&env, &refused, "birth.residence-registration-requested")
            .await
            .is_empty()
    );
    let timeline = store::timeline(&env.pool, &refused)
        .await
        .expect("timeline");
    assert!(
        timeline
            .iter()
            .any(|e| e.what == "HOUSEHOLD_HEAD_CONSENT refused; not done: RESIDENCE_REGISTRATION"),
        "{timeline:?}"
    );
    hub.shutdown().await.expect("clean shutdown");
}

/// Brings each `(system, connector, faults)` back with `faults` (a failure rate, no outage) as
/// soon as its connector has reported a failed call against it, each on its own: a system
/// restored late would leave its connector backing off past the tests' wait.
async fn back_once_failed(env: &TestEnv, base: &str, systems: &[(&str, &str, Faults)]) {
    let http = reqwest::Client::new();
    let mut down: Vec<_> = systems.iter().collect();
    common::eventually("every connector fails against its system", async || {
        let mut still = Vec::new();
        for entry in down.drain(..) {
            let (system, connector, faults) = entry;
            let failed = count(
                env,
                "SELECT COALESCE(sum(failed_attempts), 0)::bigint FROM connector_worker
                 WHERE name = $1",
                connector,
            )
            .await;
            if failed == 0 {
                still.push(entry);
                continue;
            }
            let back = http
                .put(format!("{base}/sandbox/v1/faults/{system}"))
                .bearer_auth(common::sandbox::TOKEN)
                .json(faults)
                .send()
                .await
                .expect("answered");
            assert_eq!(back.status().as_u16(), 200, "{system} back up");
        }
        let waiting: Vec<&str> = still.iter().map(|(_, c, _)| *c).collect();
        down = still;
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("no failure yet: {}", waiting.join(", ")))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_national_system_down_then_flaky_still_gives_one_registration_one_card_one_residence_one_id_card()
 {
    let mut env = TestEnv::new("procedures_faults").await;
    env.config.procedures.enabled = true;
    // Each system is down until its connector has seen it fail, then fails 30 % of its
    // calls: driven by what the connectors report, not by the clock, so a slow machine
    // changes nothing.
    let systems = [
        ("civil-status", "civil-status"),
        ("social-insurance", "social-insurance-cards"),
        ("residence", "residence-births"),
        ("population", "id-cards"),
        ("portal", "portal-dossiers"),
    ];
    // Each system's seed: the same failures every run. Seeds whose first calls are a run of
    // failures (10's first five) would make a connector back off past the test's wait.
    let seeds = [7, 8, 9, 16, 19];
    let faults = systems
        .iter()
        .enumerate()
        .map(|(i, (system, _))| ((*system).to_owned(), down(failing_a_third(seeds[i]))))
        .collect();
    let base = prepare_with_faults(
        &env,
        &[
            "civil-status",
            "social-insurance-cards",
            "residence-births",
            "id-cards",
            "portal-dossiers",
            "portal-progress",
        ],
        faults,
    )
    .await;
    let onestop = env.member("one-stop-48").await;
    let hub = env.start_hub().await;
    let (code, mut payload) = dossier();
    payload["requested_services"]["id_card"] = true.into();
    client(&hub, Some(&onestop))
        .await
        .publish(publish_request(&code, &payload))
        .await
        .expect("published");

    // Each system comes back (failing 30 %) as soon as its connector has reported failing
    // against it: civil status first, then the systems asked after it.
    let flaky_again: Vec<(&str, &str, Faults)> = systems
        .iter()
        .enumerate()
        .map(|(i, (system, connector))| (*system, *connector, failing_a_third(seeds[i])))
        .collect();
    back_once_failed(&env, &base, &flaky_again).await;

    let instance = completed(&env, &code).await;
    assert_eq!(
        step_states(&instance),
        [
            ("CIVIL_REGISTRATION", StepState::Done),
            ("RESIDENCE_REGISTRATION", StepState::Done),
            ("HEALTH_INSURANCE_CARD", StepState::Done),
            ("ID_CARD", StepState::Done)
        ],
        "the father's household: no consent needed"
    );
    let child = registered_child(&env, &code).await;
    for (table, what) in [
        ("sandbox_social_insurance.child_card", "one card"),
        ("sandbox_residence.permanent", "one residence"),
        ("sandbox_population.id_card", "one ID card"),
    ] {
        let sql = format!("SELECT count(*) FROM {table} WHERE personal_id = $1");
        assert_eq!(count(&env, &sql, &child).await, 1, "{what}");
    }
    common::eventually(
        "the portal shows the result returned",
        async || match count(
            &env,
            "SELECT coalesce((SELECT status FROM sandbox_portal.dossier WHERE dossier_code = $1),
                             0)::bigint",
            &code,
        )
        .await
        {
            10 => Ok(()),
            status => Err(format!("status {status}")),
        },
    )
    .await;
    let dead_letters = count(
        &env,
        "SELECT count(*) FROM connector_dead_letter WHERE name <> $1",
        "",
    )
    .await;
    assert_eq!(dead_letters, 0, "every failure was ridden out by retries");
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_supplement_holds_the_dossier_at_status_5_until_the_citizen_provides_it() {
    let mut env = TestEnv::new("procedures_supplement").await;
    env.config.procedures.enabled = true;
    let base = prepare(
        &env,
        &[
            "civil-status",
            "social-insurance-cards",
            "portal-dossiers",
            "portal-progress",
        ],
    )
    .await;
    let onestop = env.member("one-stop-48").await;
    for event_type in ["birth.supplement-requested", "birth.supplement-provided"] {
        env.grant("one-stop-48", Direction::Publish, event_type, PURPOSE)
            .await;
    }
    let hub = env.start_hub().await;
    let mut publisher = client(&hub, Some(&onestop)).await;
    let (code, payload) = birth_dossier();
    publisher
        .publish(publish_request(&code, &payload))
        .await
        .expect("published");
    // The officer asks for a witness statement at once.
    let mut asked = publish_request(
        &code,
        &serde_json::json!({
            "dossier_code": code,
            "missing_items": [{"item_type": "WITNESS_STATEMENT",
                               "note": "Nộp văn bản xác nhận của người làm chứng."}],
            "requested_at": "2026-11-20T10:05:00+07:00",
            "due_date": "2099-12-31",
            "agency_code": "G22.99.08"
        }),
    );
    asked.event_type = "birth.supplement-requested".into();
    publisher.publish(asked).await.expect("published");

    // Registered and carded, the dossier still waits for the citizen.
    common::eventually(
        "the steps are done and the supplement awaited",
        async || {
            let instance = procedure(&env, &code).await.ok_or("not opened")?;
            let done = instance.steps.iter().all(|s| s.state == StepState::Done);
            if done && instance.portal_status == 5 && instance.supplement.is_some() {
                Ok(())
            } else {
                Err(format!("{instance:?}"))
            }
        },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let waiting = procedure(&env, &code).await.expect("opened");
    assert_eq!(waiting.state, State::Running, "not completed while waiting");
    assert!(
        decided(&env, &code, "birth.result-returned")
            .await
            .is_empty()
    );
    let operator = env.operator_token("province-operator").await;
    let shown = dossier_client(&hub, &operator)
        .await
        .get_dossier(GetDossierRequest {
            dossier_code: code.clone(),
        })
        .await
        .expect("shown")
        .into_inner();
    let supplement = shown
        .supplement
        .expect("the supplement awaited, for officials");
    assert_eq!(
        (
            shown.portal_status,
            supplement.items,
            supplement.due_at.as_str()
        ),
        (
            5,
            vec!["WITNESS_STATEMENT".to_owned()],
            "2099-12-31T10:00:00Z"
        )
    );

    let mut provided = publish_request(
        &code,
        &serde_json::json!({
            "dossier_code": code,
            "provided_items": [{"item_type": "WITNESS_STATEMENT",
                                "document_reference": "KHS-2026-0042-03"}],
            "provided_at": "2026-11-21T09:40:00+07:00",
            "channel": "NATIONAL_PORTAL"
        }),
    );
    provided.event_type = "birth.supplement-provided".into();
    publisher.publish(provided).await.expect("published");
    let instance = completed(&env, &code).await;
    assert_eq!(instance.portal_status, 10);
    assert!(instance.supplement.is_none());

    let statuses = portal_statuses_once_returned(&base, &code).await;
    assert_eq!(statuses, [1, 2, 4, 5, 4, 9, 10], "the portal saw the wait");
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_birth_dossier_submitted_twice_runs_once_to_its_result_and_the_portal_shows_it() {
    let mut env = TestEnv::new("procedures_birth").await;
    env.config.procedures.enabled = true;
    let base = prepare(
        &env,
        &[
            "civil-status",
            "social-insurance-cards",
            "id-cards",
            "portal-dossiers",
            "portal-progress",
        ],
    )
    .await;
    let onestop = env.member("one-stop-48").await;
    let hub = env.start_hub().await;
    let (code, mut payload) = birth_dossier();
    payload["requested_services"]["id_card"] = Value::Bool(true);
    let mut publisher = client(&hub, Some(&onestop)).await;
    // Submitted twice by the one-stop system, and its first event delivered twice (a producer
    // retrying with the same event id).
    let first = publisher
        .publish(publish_request(&code, &payload))
        .await
        .expect("published")
        .into_inner();
    let mut repeat = publish_request(&code, &payload);
    repeat.event_id = first.event_id.clone();
    for request in [repeat, publish_request(&code, &payload)] {
        publisher.publish(request).await.expect("published");
    }

    let instance = completed(&env, &code).await;
    assert_eq!(
        step_states(&instance),
        [
            ("CIVIL_REGISTRATION", StepState::Done),
            ("HEALTH_INSURANCE_CARD", StepState::Done),
            ("ID_CARD", StepState::Done)
        ]
    );
    assert_eq!(instance.portal_status, 10);
    assert!(instance.due_at.is_some(), "an appointment in working days");

    let child = registered_child(&env, &code).await;
    let cards = count(
        &env,
        "SELECT count(*) FROM sandbox_social_insurance.child_card WHERE personal_id = $1",
        &child,
    )
    .await;
    assert_eq!(cards, 1, "one card for the child");
    let id_cards = count(
        &env,
        "SELECT count(*) FROM sandbox_population.id_card WHERE personal_id = $1",
        &child,
    )
    .await;
    assert_eq!(id_cards, 1, "one ID card for the child");
    let results = decided(&env, &code, "birth.result-returned").await;
    assert_eq!(results.len(), 1, "one result: {results:?}");
    let (result, published) = &results[0];
    assert!(published, "the relay published the result");
    let documents: Vec<(&str, &str)> = result["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["result_type"].as_str().unwrap_or_default(),
                r["document_reference"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(documents.len(), 4, "{documents:?}");
    assert_eq!(documents[1], ("PERSONAL_ID", child.as_str()));
    assert!(documents[2].1.starts_with("TE1"), "{documents:?}");
    assert_eq!(
        documents[3],
        ("ID_CARD", child.as_str()),
        "numbered by the ID"
    );
    assert_eq!(
        decided(&env, &code, "birth.dossier-accepted").await.len(),
        1,
        "accepted once though submitted twice"
    );

    // In OpenLineage, the dossier is a run with a run per step under it, and the civil-status
    // connector's call goes to the sandbox's endpoint.
    let lineage = lineage_events(&env, &code).await;
    let runs = |job: &str| -> Vec<(String, String)> {
        lineage
            .iter()
            .filter(|e| e["job"]["name"] == job)
            .map(|e| {
                (
                    e["eventType"].as_str().unwrap_or_default().to_owned(),
                    e["run"]["runId"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let dossier_run = runs("procedure.birth");
    assert_eq!(
        dossier_run.first().map(|r| r.0.as_str()),
        Some("START"),
        "{dossier_run:?}"
    );
    assert_eq!(
        dossier_run.last().map(|r| r.0.as_str()),
        Some("COMPLETE"),
        "{dossier_run:?}"
    );
    let card = runs("procedure.birth.HEALTH_INSURANCE_CARD");
    let states: Vec<&str> = card.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(states, ["START", "COMPLETE"]);
    assert_eq!(card[0].1, card[1].1, "one run per step");
    let card_start = lineage
        .iter()
        .find(|e| e["job"]["name"] == "procedure.birth.HEALTH_INSURANCE_CARD")
        .expect("the card step");
    assert_eq!(
        card_start["run"]["facets"]["parent"]["run"]["runId"].as_str(),
        Some(dossier_run[0].1.as_str())
    );
    let call = lineage
        .iter()
        .find(|e| e["job"]["name"] == "connector.civil-status")
        .expect("the civil-status connector's call");
    assert_eq!(call["outputs"][0]["name"], "/civil-status/v1/births");
    assert_eq!(
        call["outputs"][0]["namespace"].as_str(),
        Some(base.trim_end_matches('/')),
        "the sandbox's origin"
    );
    let refused = count(
        &env,
        "SELECT count(*) FROM connector_dead_letter WHERE name = $1",
        "civil-status",
    )
    .await;
    assert_eq!(
        refused, 0,
        "the second submission got the first registration's answer, not a refusal"
    );

    let timeline = store::timeline(&env.pool, &code).await.expect("timeline");
    let submissions: Vec<&str> = timeline
        .iter()
        .filter(|e| e.event_type == "birth.dossier-submitted")
        .map(|e| e.what.as_str())
        .collect();
    assert_eq!(
        submissions,
        [
            "opened",
            "a repeated submission; the dossier is already open"
        ],
        "three records, two events: the repeated id changed nothing"
    );

    let statuses = portal_statuses_once_returned(&base, &code).await;
    assert_eq!(statuses, [1, 2, 4, 9, 10]);

    // Officials read the same through the gRPC DossierService; only operators may.
    let operator = env.operator_token("province-operator").await;
    let mut dossiers = dossier_client(&hub, &operator).await;
    let shown = dossiers
        .get_dossier(GetDossierRequest {
            dossier_code: code.clone(),
        })
        .await
        .expect("shown")
        .into_inner();
    assert_eq!(
        (shown.state.as_str(), shown.portal_status),
        ("completed", 10)
    );
    let documents: Vec<(&str, &str)> = shown
        .steps
        .iter()
        .flat_map(|s| &s.documents)
        .map(|d| (d.result_type.as_str(), d.document_reference.as_str()))
        .collect();
    let masked = format!("{}*******{}", &child[..3], &child[10..]);
    assert!(
        documents.contains(&("PERSONAL_ID", masked.as_str())),
        "the personal ID masked: {documents:?}"
    );
    assert!(!format!("{shown:?}").contains(&child), "never the whole ID");
    assert!(shown.timeline.len() >= 6, "{:?}", shown.timeline);
    let missing = dossiers
        .get_dossier(GetDossierRequest {
            dossier_code: "G22.99.08-261120-9999".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let listed = dossiers
        .list_dossiers(ListDossiersRequest {
            overdue_only: false,
            limit: 0,
        })
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.dossiers.len(), 1);
    let denied = dossier_client(&hub, &onestop)
        .await
        .get_dossier(GetDossierRequest {
            dossier_code: code.clone(),
        })
        .await
        .expect_err("not an operator");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    // A dossier that does not ask for the card: social insurance is never asked, and the
    // dossier is done once the birth is registered.
    let (plain, mut payload) = birth_dossier();
    payload["requested_services"]["health_insurance"] = Value::Bool(false);
    publisher
        .publish(publish_request(&plain, &payload))
        .await
        .expect("published");
    let instance = completed(&env, &plain).await;
    assert_eq!(
        step_states(&instance),
        [("CIVIL_REGISTRATION", StepState::Done)]
    );
    assert_eq!(
        instance.inputs,
        serde_json::json!({}),
        "nothing kept once completed"
    );
    let child = registered_child(&env, &plain).await;
    assert!(
        decided(&env, &plain, "birth.health-insurance-card-requested")
            .await
            .is_empty(),
        "no card asked for"
    );
    let cards = count(
        &env,
        "SELECT count(*) FROM sandbox_social_insurance.child_card WHERE personal_id = $1",
        &child,
    )
    .await;
    assert_eq!(cards, 0, "no card issued that nobody asked for");
    assert_eq!(
        decided(&env, &code, "birth.health-insurance-card-requested")
            .await
            .len(),
        1,
        "the first dossier's card was asked for once"
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hub_stopped_mid_procedure_leaves_the_next_to_finish_it_with_one_id_and_one_card() {
    let mut env = TestEnv::new("procedures_restart").await;
    env.config.procedures.enabled = true;
    let base = prepare(&env, &["civil-status"]).await;
    let onestop = env.member("one-stop-48").await;

    // A hub process running the engine and the civil-status connector only.
    let first = env.start_hub().await;
    let (code, payload) = birth_dossier();
    client(&first, Some(&onestop))
        .await
        .publish(publish_request(&code, &payload))
        .await
        .expect("published");
    common::eventually(
        "the birth registered and the card step started",
        async || match procedure(&env, &code).await {
            Some(i)
                if i.steps
                    .get(1)
                    .is_some_and(|s| s.state == StepState::Running) =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    first.shutdown().await.expect("clean shutdown");

    // The next process also runs the insurance connector.
    install(&env, "social-insurance-cards", &base).await;
    let next = env.start_hub().await;
    let instance = completed(&env, &code).await;
    assert_eq!(instance.portal_status, 10);
    let child = registered_child(&env, &code).await;
    let cards = count(
        &env,
        "SELECT count(*) FROM sandbox_social_insurance.child_card WHERE personal_id = $1",
        &child,
    )
    .await;
    assert_eq!(cards, 1, "one card");
    assert_eq!(
        decided(&env, &code, "birth.result-returned").await.len(),
        1,
        "one result"
    );
    let unpublished = count(
        &env,
        "SELECT count(*) FROM procedure_outbox WHERE dossier_code = $1 AND published_at IS NULL",
        &code,
    )
    .await;
    assert_eq!(unpublished, 0, "every decision reached the broker");
    next.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_before_its_dossier_is_joined_to_it_and_a_late_step_shows_overdue() {
    let mut env = TestEnv::new("procedures_early").await;
    env.config.procedures.enabled = true;
    env.config.procedures.deadline_interval_ms = 1_000;
    env.grant_procedure_engine().await;
    let onestop = env.member("one-stop-48").await;
    let registrar = env.token("civil-status-connector").await;
    env.grant(
        "civil-status-connector",
        Direction::Publish,
        "birth.civil-registration-completed",
        PURPOSE,
    )
    .await;
    // Friday 20 November 2026, 09:20 in Viet Nam, on a clock the test moves.
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-20T09:20:00+07:00")
        .expect("a time")
        .with_timezone(&chrono::Utc);
    let clock = ManualClock::new(start);
    let hub = lienthong::app::Hub::start_with_clock(env.config.clone(), Arc::new(clock.clone()))
        .await
        .expect("the hub starts");
    let (code, payload) = birth_dossier();

    // The registration's answer overtakes the dossier (another system, another partition).
    client(&hub, Some(&registrar))
        .await
        .publish(registration_answer(&code))
        .await
        .expect("published");
    common::eventually("the answer waits for its dossier", async || {
        let timeline = store::timeline(&env.pool, &code)
            .await
            .map_err(|e| e.to_string())?;
        if timeline.iter().any(|e| e.what == store::EARLY) {
            Ok(())
        } else {
            Err(format!("{timeline:?}"))
        }
    })
    .await;

    client(&hub, Some(&onestop))
        .await
        .publish(publish_request(&code, &payload))
        .await
        .expect("published");
    let instance =
        common::eventually(
            "the dossier opened with its answer",
            async || match procedure(&env, &code).await {
                Some(i) if i.steps.first().is_some_and(|s| s.state == StepState::Done) => Ok(i),
                other => Err(format!("{other:?}")),
            },
        )
        .await;
    let card = &instance.steps[1];
    assert_eq!(
        (card.name.as_str(), card.state),
        ("HEALTH_INSURANCE_CARD", StepState::Running)
    );
    // Two working days from Friday 09:20, past Tuesday's holiday: Wednesday 25 at 17:00.
    let card_due = chrono::DateTime::parse_from_rfc3339("2026-11-25T17:00:00+07:00")
        .expect("a time")
        .with_timezone(&chrono::Utc);
    assert_eq!(card.due_at, Some(card_due));
    let timeline = store::timeline(&env.pool, &code).await.expect("timeline");
    assert!(
        timeline
            .iter()
            .any(|e| e.event_type == "birth.civil-registration-completed"
                && e.what == "CIVIL_REGISTRATION done"),
        "the early answer applied when the dossier came: {timeline:?}"
    );
    let overdue = view::list(&env.pool, true, 10, clock.now())
        .await
        .expect("listed");
    assert!(overdue.is_empty(), "nothing late yet: {overdue:?}");

    // No card comes; half an hour past its due time the watch notices, once.
    clock.advance(
        (card_due - start + chrono::Duration::minutes(30))
            .to_std()
            .expect("forward"),
    );
    let listed = common::eventually("the card step marked overdue", async || {
        let listed = view::list(&env.pool, true, 10, clock.now())
            .await
            .map_err(|e| e.to_string())?;
        if listed.len() == 1 {
            Ok(listed)
        } else {
            Err(format!("{listed:?}"))
        }
    })
    .await;
    assert_eq!(listed[0].dossier_code, code);
    assert!(
        !listed[0].overdue,
        "the appointment (Thursday 26) is still ahead"
    );
    assert!(listed[0].steps[1].overdue_at.is_some());
    let marks = store::timeline(&env.pool, &code)
        .await
        .expect("timeline")
        .into_iter()
        .filter(|e| e.event_type == lienthong::procedures::DEADLINE)
        .count();
    assert_eq!(marks, 1, "marked once");
    let announced = common::eventually("the overdue step announced", async || {
        let announced = decided(&env, &code, "dossier.step-overdue").await;
        match announced.as_slice() {
            [(event, true)] => Ok(event.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(
        (&announced["step"], &announced["due_at"]),
        (
            &Value::from("HEALTH_INSURANCE_CARD"),
            &Value::from("2026-11-25T17:00:00+07:00")
        )
    );
    hub.shutdown().await.expect("clean shutdown");
}

/// A death dossier from the example `file` about a citizen of the seeded population of Đà
/// Nẵng (with a full birth date): its code, the deceased's personal ID and the payload.
async fn death_dossier(env: &TestEnv, file: &str) -> (String, String, Value) {
    let reference = env.config.schemas.dir.join("reference");
    lienthong::sandbox::seed::seed(&env.pool, &reference, "48", 50, 7, |_| {})
        .await
        .expect("seeded");
    let citizen = env
        .pool
        .get()
        .await
        .expect("connection")
        .query_one(
            "SELECT personal_id, full_name, birth_date, sex, commune_code
             FROM sandbox_population.citizen
             WHERE relationship <> 'head' AND length(birth_date) = 10 AND commune_code IS NOT NULL
             ORDER BY personal_id LIMIT 1",
            &[],
        )
        .await
        .expect("a seeded citizen");
    let id: String = citizen.get(0);
    let mut death: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("schemas/examples/death.dossier-submitted/{file}")),
        )
        .expect("example"),
    )
    .expect("json");
    let (code, _) = dossier();
    death["dossier_code"] = Value::String(code.clone());
    death["province_code"] = Value::String("48".into());
    death["commune_code"] = Value::String(citizen.get(4));
    death["deceased"]["personal_id"] = Value::String(id.clone());
    death["deceased"]["full_name"] = Value::String(citizen.get(1));
    death["deceased"]["birth_date"] = Value::String(citizen.get(2));
    death["deceased"]["sex"] = Value::String(citizen.get(3));
    (code, id, death)
}

/// The one-stop system of Đà Nẵng submits `death`.
async fn submit_death(env: &TestEnv, hub: &lienthong::app::Hub, code: &str, death: &Value) {
    let onestop = env.token("one-stop-48").await;
    env.grant(
        "one-stop-48",
        Direction::Publish,
        "death.dossier-submitted",
        PURPOSE,
    )
    .await;
    let mut request = publish_request(code, death);
    request.event_type = "death.dossier-submitted".into();
    client(hub, Some(&onestop))
        .await
        .publish(request)
        .await
        .expect("published");
}

/// The civil-status office of Đà Nẵng annuls the death registration (agency, number) of `id`,
/// the wrong person; the request, to deliver again, and the office's token.
async fn annul(
    env: &TestEnv,
    hub: &lienthong::app::Hub,
    code: &str,
    id: &str,
    (agency, number): (&str, &str),
) -> (lienthong::proto::PublishRequest, String) {
    let registrar = env.token("civil-status-48").await;
    env.grant(
        "civil-status-48",
        Direction::Publish,
        "death.registration-annulled",
        PURPOSE,
    )
    .await;
    let mut annulment = publish_request(
        code,
        &serde_json::json!({
            "dossier_code": code,
            "registration_number": number,
            "registering_agency_code": agency,
            "deceased": {"personal_id": id},
            "annulled_at": "2026-11-22T10:00:00+07:00",
            "decision_reference": "45/QĐ-UBND",
            "reason_code": "WRONG_PERSON"
        }),
    );
    annulment.event_type = "death.registration-annulled".into();
    client(hub, Some(&registrar))
        .await
        .publish(annulment.clone())
        .await
        .expect("published");
    (annulment, registrar)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_death_dossier_is_registered_told_to_population_and_residence_and_returned_then_annulled()
{
    let mut env = TestEnv::new("procedures_death").await;
    env.config.procedures.enabled = true;
    prepare(
        &env,
        &[
            "civil-status-deaths",
            "population-deaths",
            "residence-deaths",
            "residence-death-reverts",
            "population-death-reverts",
        ],
    )
    .await;
    let (code, id, death) = death_dossier(&env, "valid-registration-and-residence-only.json").await;
    let hub = env.start_hub().await;
    submit_death(&env, &hub, &code, &death).await;

    let instance = completed(&env, &code).await;
    assert_eq!(
        step_states(&instance),
        [
            ("CIVIL_REGISTRATION", StepState::Done),
            ("POPULATION_STATUS", StepState::Done),
            ("RESIDENCE_DELETION", StepState::Done)
        ],
        "no benefit was chosen"
    );
    assert_eq!(
        instance
            .prefill
            .map(|p| (p.from_national_data, p.fields_on_form)),
        Some((5, 12)),
        "the pre-fill the one-stop system reported"
    );
    let db = env.pool.get().await.expect("connection");
    let recorded = db
        .query_one(
            "SELECT c.deceased_at IS NOT NULL, r.deleted_at IS NOT NULL
             FROM sandbox_population.citizen c JOIN sandbox_residence.permanent r USING (personal_id)
             WHERE personal_id = $1",
            &[&id],
        )
        .await
        .expect("the citizen");
    assert_eq!(
        (recorded.get::<_, bool>(0), recorded.get::<_, bool>(1)),
        (true, true),
        "deceased in the population database, residence deleted"
    );
    let results = decided(&env, &code, "death.result-returned").await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0["results"][0]["result_type"], "DEATH_EXTRACT");
    assert!(results[0].1, "published");

    // The civil-status office annuls the registration (the wrong person): the residence
    // deleted for it is restored and the person is living again in the population database,
    // by the compensations the engine asks for.
    let reference: String = db
        .query_one(
            "SELECT deletion_reference FROM sandbox_residence.permanent WHERE personal_id = $1",
            &[&id],
        )
        .await
        .expect("deleted")
        .get(0);
    let (agency, number) = reference.split_once('/').expect("agency/number");
    let (mut annulment, registrar) = annul(&env, &hub, &code, &id, (agency, number)).await;
    let instance = common::eventually("the deletion and the status are undone", async || {
        let instance = procedure(&env, &code).await.ok_or("gone")?;
        if instance.steps[1].state == StepState::Undone
            && instance.steps[2].state == StepState::Undone
        {
            Ok(instance)
        } else {
            Err(format!("{:?}", step_states(&instance)))
        }
    })
    .await;
    assert_eq!(instance.state, State::Annulled);
    let living = db
        .query_one(
            "SELECT deceased_at IS NULL AND death_reference IS NULL, death_reverted_at IS NOT NULL
             FROM sandbox_population.citizen WHERE personal_id = $1",
            &[&id],
        )
        .await
        .expect("the citizen");
    assert_eq!(
        (living.get::<_, bool>(0), living.get::<_, bool>(1)),
        (true, true),
        "living again in the population database"
    );
    let restored = db
        .query_one(
            "SELECT deleted_at IS NULL, reverted_at IS NOT NULL
             FROM sandbox_residence.permanent WHERE personal_id = $1",
            &[&id],
        )
        .await
        .expect("the residence");
    assert_eq!(
        (restored.get::<_, bool>(0), restored.get::<_, bool>(1)),
        (true, true),
        "restored"
    );
    let reverts = decided(&env, &code, "death.residence-deletion-revert-requested").await;
    assert_eq!(reverts.len(), 1, "asked once");
    let deletion: uuid::Uuid = db
        .query_one(
            "SELECT event_id FROM procedure_event
             WHERE dossier_code = $1 AND event_type = 'death.residence-deleted'",
            &[&code],
        )
        .await
        .expect("the deletion taken in")
        .get(0);
    assert_eq!(
        reverts[0].0["reverts_event_id"],
        deletion.to_string(),
        "the compensation names the event it undoes"
    );
    // The annulment delivered again changes nothing.
    annulment.event_id = uuid::Uuid::now_v7().to_string();
    client(&hub, Some(&registrar))
        .await
        .publish(annulment)
        .await
        .expect("published");
    common::eventually("the repeat is recorded", async || {
        let timeline = store::timeline(&env.pool, &code)
            .await
            .map_err(|e| e.to_string())?;
        let annulments = timeline
            .iter()
            .filter(|e| e.event_type == "death.registration-annulled")
            .count();
        if annulments == 2 {
            Ok(())
        } else {
            Err(format!("{annulments}"))
        }
    })
    .await;
    assert_eq!(
        decided(&env, &code, "death.residence-deletion-revert-requested")
            .await
            .len(),
        1
    );
    hub.shutdown().await.expect("clean shutdown");
}

/// The civil-status officer's verification of dossier `code`.
fn verification(code: &str, outcome: &str, reason: Value) -> lienthong::proto::PublishRequest {
    let mut request = publish_request(
        code,
        &serde_json::json!({
            "dossier_code": code,
            "outcome": outcome,
            "reason_code": reason,
            "verified_at": "2026-11-20T16:10:00+07:00",
            "verifying_agency_code": "G22.99.08"
        }),
    );
    request.event_type = "birth.verification-recorded".into();
    request
}

/// The civil-status sandbox plays the officer: a late birth without its certificate is
/// answered VERIFYING, parked until the verification is due, read back by the
/// civil-status-verifications connector as `birth.verification-recorded`, and only then
/// registered: one verification and, after it, one registration in the sandbox; the
/// procedure's VERIFICATION and CIVIL_REGISTRATION both done (the engine may take the two
/// answers in either order). Another, which the officer refuses on the sandbox's screen before
/// it is due, ends refused with the officer's reason, nothing registered.
#[tokio::test(flavor = "multi_thread")]
async fn the_civil_status_officer_verifies_a_late_birth_through_the_hub_before_registering_it() {
    let mut env = TestEnv::new("procedures_officer").await;
    env.config.procedures.enabled = true;
    let base = prepare(&env, &["civil-status", "civil-status-verifications"]).await;
    // Parked no longer than the sandbox's officer takes.
    common::sandbox::install_manifest(
        &env,
        "civil-status",
        &base,
        &[("max_backoff_ms = 60000", "max_backoff_ms = 1000")],
    );
    let onestop = env.member("one-stop-48").await;
    let hub = env.start_hub().await;
    let late = || {
        let (code, mut payload) = birth_dossier();
        payload["child"]["birth_date"] = "2026-08-01".into();
        payload["birth_certificate_no"] = Value::Null;
        (code, payload)
    };
    let (code, payload) = late();
    let (refused, refused_payload) = late();
    let mut one_stop = client(&hub, Some(&onestop)).await;
    for (code, payload) in [(&code, &payload), (&refused, &refused_payload)] {
        one_stop
            .publish(publish_request(code, payload))
            .await
            .expect("published");
    }
    // The officer refuses the second as soon as the civil-status system asks for its
    // verification: well before the sandbox's officer would confirm it.
    common::eventually("the refused dossier's verification asked", async || {
        let sql = "SELECT count(*) FROM sandbox_civil_status.verification WHERE dossier_code = $1";
        match count(&env, sql, &refused).await {
            1 => Ok(()),
            n => Err(format!("{n} verifications")),
        }
    })
    .await;
    let decided = reqwest::Client::new()
        .post(format!("{base}/civil-status/v1/verifications/{refused}"))
        .bearer_auth(common::sandbox::TOKEN)
        .json(&serde_json::json!({"outcome": "NOT_CONFIRMED", "reason_code": "WITNESSES_NOT_CONFIRMED"}))
        .send()
        .await
        .expect("the sandbox answers");
    assert_eq!(
        decided.status().as_u16(),
        200,
        "the officer refuses in time"
    );
    common::eventually("verified and registered", async || {
        let instance = procedure(&env, &code).await;
        let states = instance.as_ref().map(step_states).unwrap_or_default();
        if states.contains(&("VERIFICATION", StepState::Done))
            && states.contains(&("CIVIL_REGISTRATION", StepState::Done))
        {
            Ok(())
        } else {
            Err(format!("{states:?}"))
        }
    })
    .await;
    for (sql, what) in [
        (
            "SELECT count(*) FROM sandbox_civil_status.birth b
             JOIN sandbox_civil_status.verification v USING (dossier_code)
             WHERE dossier_code = $1 AND b.registered_at >= v.verified_at",
            "registered once the officer had verified",
        ),
        (
            "SELECT count(*) FROM sandbox_civil_status.verification
             WHERE dossier_code = $1 AND outcome = 'CONFIRMED'",
            "one verification, confirmed",
        ),
        (
            "SELECT count(*) FROM sandbox_civil_status.birth WHERE dossier_code = $1",
            "one registration",
        ),
    ] {
        assert_eq!(count(&env, sql, &code).await, 1, "{what}");
    }
    let timeline = store::timeline(&env.pool, &code).await.expect("timeline");
    assert!(
        timeline
            .iter()
            .any(|e| e.event_type == "birth.verification-recorded"
                && e.by == "civil-status-connector"
                && e.what == "VERIFICATION done"),
        "the officer's answer came through the connector: {timeline:?}"
    );
    let ended = completed(&env, &refused).await;
    assert_eq!(
        step_states(&ended)[..2],
        [
            ("VERIFICATION", StepState::Refused),
            ("CIVIL_REGISTRATION", StepState::Skipped)
        ]
    );
    assert_eq!(
        ended.steps[0].error.as_deref(),
        Some("answered NOT_CONFIRMED: WITNESSES_NOT_CONFIRMED"),
        "the officer's reason, through the connector"
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM sandbox_civil_status.birth WHERE dossier_code = $1",
            &refused
        )
        .await,
        0,
        "nothing registered"
    );
    hub.shutdown().await.expect("clean shutdown");
}

/// A late birth registration without the health facility's certificate waits for the
/// civil-status officer's verification, published through the hub; confirmed, the dossier
/// goes on to the registration (and its fee); not confirmed, it ends with nothing registered
/// and the officer's reason, every later step skipped.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_birth_without_its_certificate_is_verified_before_it_is_registered() {
    let mut env = TestEnv::new("procedures_verification").await;
    env.config.procedures.enabled = true;
    env.grant_procedure_engine().await;
    let onestop = env.member("one-stop-48").await;
    let officer = env.token("civil-status-48").await;
    for event_type in [
        "birth.verification-recorded",
        "birth.civil-registration-completed",
    ] {
        env.grant("civil-status-48", Direction::Publish, event_type, PURPOSE)
            .await;
    }
    let hub = env.start_hub().await;
    let mut one_stop = client(&hub, Some(&onestop)).await;
    let mut civil_status = client(&hub, Some(&officer)).await;
    let late = || {
        let (code, mut payload) = birth_dossier();
        payload["child"]["birth_date"] = "2026-08-01".into();
        payload["birth_certificate_no"] = Value::Null;
        (code, payload)
    };
    let (confirmed, confirmed_dossier) = late();
    let (refused, refused_dossier) = late();
    for (code, payload) in [
        (&confirmed, &confirmed_dossier),
        (&refused, &refused_dossier),
    ] {
        one_stop
            .publish(publish_request(code, payload))
            .await
            .expect("published");
    }
    for code in [&confirmed, &refused] {
        common::eventually(
            "the dossier waits for its verification",
            async || match procedure(&env, code).await {
                Some(i)
                    if i.steps
                        .first()
                        .is_some_and(|s| s.state == StepState::Running) =>
                {
                    Ok(i)
                }
                other => Err(format!("{other:?}")),
            },
        )
        .await;
    }
    let waiting = procedure(&env, &confirmed).await.expect("opened");
    assert_eq!(
        step_states(&waiting)[..2],
        [
            ("VERIFICATION", StepState::Running),
            ("CIVIL_REGISTRATION", StepState::Waiting)
        ]
    );

    civil_status
        .publish(verification(&confirmed, "CONFIRMED", Value::Null))
        .await
        .expect("published");
    civil_status
        .publish(registration_answer(&confirmed))
        .await
        .expect("published");
    civil_status
        .publish(verification(
            &refused,
            "NOT_CONFIRMED",
            "BIRTH_FACTS_DIFFER".into(),
        ))
        .await
        .expect("published");

    let going_on = common::eventually("registered, the fee asked for", async || {
        match procedure(&env, &confirmed).await {
            Some(i)
                if i.steps
                    .iter()
                    .any(|s| s.name == "PAYMENT" && s.state == StepState::Running) =>
            {
                Ok(i)
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(
        step_states(&going_on)[..2],
        [
            ("VERIFICATION", StepState::Done),
            ("CIVIL_REGISTRATION", StepState::Done)
        ]
    );
    let ended = completed(&env, &refused).await;
    assert_eq!(
        step_states(&ended),
        [
            ("VERIFICATION", StepState::Refused),
            ("CIVIL_REGISTRATION", StepState::Skipped),
            ("HEALTH_INSURANCE_CARD", StepState::Skipped),
            ("PAYMENT", StepState::Skipped)
        ]
    );
    assert_eq!(
        ended.steps[0].error.as_deref(),
        Some("answered NOT_CONFIRMED: BIRTH_FACTS_DIFFER")
    );
    let results = decided(&env, &refused, "birth.result-returned").await;
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].0["results"],
        serde_json::json!([]),
        "nothing issued"
    );
    assert_eq!(
        decided(&env, &refused, "payment.requested").await.len(),
        0,
        "no fee for a birth not registered"
    );
    hub.shutdown().await.expect("clean shutdown");
}

/// The death's registration, as every agency entitled to it is told of it.
const TOLD: &str = "death.civil-registration-completed";

/// `(recipient, entitled, handed over, deliveries, acknowledged)` of each agency the dossier
/// lists as told.
async fn told(env: &TestEnv, code: &str) -> Vec<(String, bool, bool, i32, bool)> {
    view::show(&env.pool, code, chrono::Utc::now())
        .await
        .expect("read")
        .expect("the dossier")
        .told
        .into_iter()
        .map(|t| {
            let handed = t.delivered_at.is_some();
            let confirmed = t.acknowledged_at.is_some();
            (t.recipient, t.entitled, handed, t.deliveries, confirmed)
        })
        .collect()
}

/// The tax office's deliveries of `code`'s registration, skipping other dossiers'.
async fn registration_of(
    stream: &mut tonic::Streaming<lienthong::proto::Delivery>,
    code: &str,
) -> lienthong::proto::Delivery {
    loop {
        let delivery = common::next(stream).await;
        if delivery
            .envelope
            .as_ref()
            .map(|e| e.correlation_id.as_str())
            == Some(code)
        {
            return delivery;
        }
    }
}

/// Tell Us Once: the death's registration is handed to every agency entitled to it, and the
/// dossier lists each one's receipt: handed over and not yet confirmed, confirmed, or entitled
/// (here on the whole topic) and never handed it because it never came. An agency that went
/// away without acknowledging is handed the event again (counted) and confirms it once.
#[tokio::test(flavor = "multi_thread")]
async fn a_death_is_told_once_to_every_entitled_agency_and_the_dossier_shows_who_confirmed() {
    let mut env = TestEnv::new("procedures_told").await;
    env.config.procedures.enabled = true;
    prepare(&env, &["civil-status-deaths"]).await;
    let (code, _, death) = death_dossier(&env, "valid-registration-and-residence-only.json").await;
    let tax = env.token("tax-office-48").await;
    env.grant("tax-office-48", Direction::Subscribe, TOLD, PURPOSE)
        .await;
    env.token("voters-roll-48").await;
    env.grant_on(
        "voters-roll-48",
        Direction::Subscribe,
        lienthong::access::Resource::Topic("lienthong.death".into()),
        PURPOSE,
    )
    .await;
    let hub = env.start_hub().await;
    let subscription = lienthong::proto::SubscribeRequest {
        event_type: TOLD.into(),
        ..common::subscribe_request("deaths")
    };
    let mut tax_office = client(&hub, Some(&tax)).await;
    let mut stream = tax_office
        .subscribe(subscription.clone())
        .await
        .expect("subscribed")
        .into_inner();
    submit_death(&env, &hub, &code, &death).await;

    registration_of(&mut stream, &code).await;
    let engine = env.config.procedures.system.clone();
    let expected = |tax_office| {
        vec![
            (engine.clone(), true, true, 1, true),
            tax_office,
            ("voters-roll-48".to_owned(), true, false, 0, false),
        ]
    };
    let handed = ("tax-office-48".to_owned(), true, true, 1, false);
    common::eventually(
        "the engine confirmed, the tax office handed it",
        async || {
            let seen = told(&env, &code).await;
            if seen == expected(handed.clone()) {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        },
    )
    .await;

    // The tax office goes away without acknowledging, comes back, is handed it again and
    // confirms it.
    drop(stream);
    let mut stream = tax_office
        .subscribe(subscription)
        .await
        .expect("subscribed again")
        .into_inner();
    let again = registration_of(&mut stream, &code).await;
    let acked = tax_office
        .acknowledge(lienthong::proto::AcknowledgeRequest {
            subscription_id: again.subscription_id.clone(),
            positions: vec![lienthong::proto::Position {
                partition: again.partition,
                offset: again.offset,
            }],
        })
        .await
        .expect("acknowledged")
        .into_inner();
    assert_eq!(acked.acknowledged, 1);
    assert_eq!(
        told(&env, &code).await,
        expected(("tax-office-48".to_owned(), true, true, 2, true)),
        "confirmed as soon as the acknowledgement is answered"
    );
    // Operators see it counted: handed over once (the second time is the same receipt), and
    // acknowledged once.
    let metrics = common::metrics(&hub).await;
    for outcome in ["handed", "acknowledged"] {
        let line =
            format!(r#"lienthong_told_total{{recipient="tax-office-48",outcome="{outcome}"}} 1"#);
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }

    // Officials read the same list over gRPC.
    let operator = env.operator_token("province-operator").await;
    let shown = dossier_client(&hub, &operator)
        .await
        .get_dossier(GetDossierRequest {
            dossier_code: code.clone(),
        })
        .await
        .expect("the dossier")
        .into_inner();
    let listed: Vec<(&str, u32, bool)> = shown
        .told
        .iter()
        .map(|t| {
            (
                t.recipient.as_str(),
                t.deliveries,
                !t.acknowledged_at.is_empty(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (engine.as_str(), 1, true),
            ("tax-office-48", 2, true),
            ("voters-roll-48", 0, false)
        ]
    );
    drop(stream);
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn death_benefits_are_decided_from_the_contributions_held_paid_once_or_refused_with_reason() {
    let mut env = TestEnv::new("procedures_benefits").await;
    env.config.procedures.enabled = true;
    let base = prepare(
        &env,
        &[
            "civil-status-deaths",
            "population-deaths",
            "social-insurance-benefits",
            "social-insurance-benefit-payments",
        ],
    )
    .await;
    let (code, id, mut death) = death_dossier(&env, "valid-with-funeral-allowance.json").await;
    death["sub_procedures"] = serde_json::json!([
        "DEATH_REGISTRATION",
        "FUNERAL_ALLOWANCE",
        "SURVIVOR_BENEFIT"
    ]);
    // Six months of contributions: too short for the funeral allowance, and the survivor lump
    // sum's minimum of three months' salary.
    let http = reqwest::Client::new();
    let set = http
        .put(format!("{base}/social-insurance/v1/contributions/{id}"))
        .bearer_auth(common::sandbox::TOKEN)
        .json(
            &serde_json::json!({"months_before_2014": 0, "months_from_2014": 6,
                                  "average_monthly_salary_vnd": 5_000_000}),
        )
        .send()
        .await
        .expect("answered");
    assert_eq!(set.status().as_u16(), 200);
    let hub = env.start_hub().await;
    submit_death(&env, &hub, &code, &death).await;

    let instance = completed(&env, &code).await;
    assert_eq!(
        step_states(&instance),
        [
            ("CIVIL_REGISTRATION", StepState::Done),
            ("POPULATION_STATUS", StepState::Done),
            ("FUNERAL_ALLOWANCE", StepState::Refused),
            ("FUNERAL_ALLOWANCE_PAYMENT", StepState::Skipped),
            ("SURVIVOR_BENEFIT", StepState::Done),
            ("SURVIVOR_BENEFIT_PAYMENT", StepState::Done),
        ],
        "the refusal ends only its own branch"
    );
    assert_eq!(
        instance.steps[2].error.as_deref(),
        Some("refused: CONTRIBUTION_TOO_SHORT")
    );
    let db = env.pool.get().await.expect("connection");
    let decisions: Vec<(String, String, i64, Value)> = db
        .query(
            "SELECT benefit_type, status, amount_vnd, beneficiary
             FROM sandbox_social_insurance.benefit_decision
             WHERE deceased_personal_id = $1 ORDER BY benefit_type",
            &[&id],
        )
        .await
        .expect("decisions")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        decisions
            .iter()
            .map(|(t, s, a, _)| (t.as_str(), s.as_str(), *a))
            .collect::<Vec<_>>(),
        [
            ("FUNERAL_ALLOWANCE", "REFUSED", 0),
            ("SURVIVOR_LUMP_SUM", "PAID", 15_000_000)
        ],
        "one decision per benefit, the decided one paid once"
    );
    assert_eq!(
        decisions[1].3["account_number"], death["beneficiary_account"]["account_number"],
        "paid into the account the dossier gave"
    );
    let results = decided(&env, &code, "death.result-returned").await;
    let kinds: Vec<&str> = results[0].0["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["result_type"].as_str())
        .collect();
    assert_eq!(kinds, ["DEATH_EXTRACT", "SURVIVOR_BENEFIT_DECISION"]);
    let payments = decided(&env, &code, "death.benefit-payment-requested").await;
    assert_eq!(
        (payments.len(), &payments[0].0["amount_vnd"]),
        (1, &serde_json::json!(15_000_000)),
        "paid exactly as decided"
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_death_group_system_down_then_failing_a_third_still_registers_updates_deletes_decides_and_pays_once()
 {
    let mut env = TestEnv::new("procedures_death_faults").await;
    env.config.procedures.enabled = true;
    let base = prepare(
        &env,
        &[
            "civil-status-deaths",
            "population-deaths",
            "residence-deaths",
            "social-insurance-benefits",
            "social-insurance-benefit-payments",
        ],
    )
    .await;
    let (code, id, death) = death_dossier(&env, "valid-with-funeral-allowance.json").await;
    let http = reqwest::Client::new();
    let put = async |path: String, body: Value| {
        let answer = http
            .put(format!("{base}{path}"))
            .bearer_auth(common::sandbox::TOKEN)
            .json(&body)
            .send()
            .await
            .expect("answered");
        assert_eq!(answer.status().as_u16(), 200, "{path}");
    };
    // Five years of contributions: the funeral allowance is due.
    put(
        format!("/social-insurance/v1/contributions/{id}"),
        serde_json::json!({"months_before_2014": 0, "months_from_2014": 60,
                           "average_monthly_salary_vnd": 5_000_000}),
    )
    .await;
    // Each system is down until its connector has seen it fail, then fails 30 % of its calls
    // (as long as a one-minute outage, driven by what the connectors report, not the clock).
    let systems = [
        ("civil-status", "civil-status-deaths"),
        ("population", "population-deaths"),
        ("residence", "residence-deaths"),
        ("social-insurance", "social-insurance-benefits"),
    ];
    for (i, (system, _)) in systems.iter().enumerate() {
        put(
            format!("/sandbox/v1/faults/{system}"),
            serde_json::to_value(down(failing_a_third(11 + i as u64))).expect("faults"),
        )
        .await;
    }
    let hub = env.start_hub().await;
    submit_death(&env, &hub, &code, &death).await;
    let flaky_again: Vec<(&str, &str, Faults)> = systems
        .iter()
        .enumerate()
        .map(|(i, (system, connector))| (*system, *connector, failing_a_third(11 + i as u64)))
        .collect();
    back_once_failed(&env, &base, &flaky_again).await;

    let instance = completed(&env, &code).await;
    assert_eq!(
        step_states(&instance),
        [
            ("CIVIL_REGISTRATION", StepState::Done),
            ("POPULATION_STATUS", StepState::Done),
            ("RESIDENCE_DELETION", StepState::Done),
            ("FUNERAL_ALLOWANCE", StepState::Done),
            ("FUNERAL_ALLOWANCE_PAYMENT", StepState::Done),
        ]
    );
    for (sql, what) in [
        (
            "SELECT count(*) FROM sandbox_civil_status.death WHERE personal_id = $1",
            "one registration",
        ),
        (
            "SELECT count(*) FROM sandbox_population.citizen
             WHERE personal_id = $1 AND deceased_at IS NOT NULL",
            "one death recorded",
        ),
        (
            "SELECT count(*) FROM sandbox_residence.permanent
             WHERE personal_id = $1 AND deleted_at IS NOT NULL",
            "one residence deleted",
        ),
        (
            "SELECT count(*) FROM sandbox_social_insurance.benefit_decision
             WHERE deceased_personal_id = $1 AND status = 'PAID'",
            "one decision, paid once",
        ),
    ] {
        assert_eq!(count(&env, sql, &id).await, 1, "{what}");
    }
    let dead_letters = count(
        &env,
        "SELECT count(*) FROM connector_dead_letter WHERE name <> $1",
        "",
    )
    .await;
    assert_eq!(dead_letters, 0, "every failure was ridden out by retries");
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_annulled_registration_cancels_the_benefit_decided_and_not_yet_paid() {
    let mut env = TestEnv::new("procedures_benefit_cancel").await;
    env.config.procedures.enabled = true;
    // No payment connector: the decision is made and its payment waits, so the annulment
    // finds it unpaid.
    prepare(
        &env,
        &[
            "civil-status-deaths",
            "population-deaths",
            "social-insurance-benefits",
            "social-insurance-benefit-cancellations",
        ],
    )
    .await;
    let (code, id, mut death) = death_dossier(&env, "valid-with-funeral-allowance.json").await;
    death["sub_procedures"] = serde_json::json!(["DEATH_REGISTRATION", "FUNERAL_ALLOWANCE"]);
    let hub = env.start_hub().await;
    submit_death(&env, &hub, &code, &death).await;
    common::eventually("the allowance is decided", async || {
        let instance = procedure(&env, &code).await.ok_or("no procedure yet")?;
        match instance
            .steps
            .iter()
            .find(|s| s.name == "FUNERAL_ALLOWANCE")
        {
            Some(step) if step.state == StepState::Done => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let db = env.pool.get().await.expect("connection");
    let registration = db
        .query_one(
            "SELECT answer->>'registration_number', answer->>'agency_code'
             FROM sandbox_civil_status.death WHERE dossier_code = $1",
            &[&code],
        )
        .await
        .expect("registered");
    let (number, agency): (String, String) = (registration.get(0), registration.get(1));
    annul(&env, &hub, &code, &id, (&agency, &number)).await;
    let instance = common::eventually("the decision is cancelled", async || {
        let instance = procedure(&env, &code).await.ok_or("gone")?;
        if instance.steps.iter().any(|s| s.state == StepState::Undone) {
            Ok(instance)
        } else {
            Err(format!("{:?}", step_states(&instance)))
        }
    })
    .await;
    assert_eq!(instance.state, State::Annulled);
    assert_eq!(
        step_states(&instance)[2..],
        [
            ("FUNERAL_ALLOWANCE", StepState::Undone),
            ("FUNERAL_ALLOWANCE_PAYMENT", StepState::Skipped)
        ]
    );
    let status: String = db
        .query_one(
            "SELECT status FROM sandbox_social_insurance.benefit_decision
             WHERE deceased_personal_id = $1",
            &[&id],
        )
        .await
        .expect("the decision")
        .get(0);
    assert_eq!(status, "CANCELLED", "never to be paid");
    let statuses = decided(&env, &code, "dossier.status-changed").await;
    assert_eq!(
        statuses.last().map(|(s, _)| &s["to_status"]),
        Some(&serde_json::json!(8)),
        "the portal shows processing stopped"
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_birth_dossiers_all_complete_none_stuck() {
    const DOSSIERS: usize = 1000;
    let mut env = TestEnv::new("procedures_many").await;
    env.config.procedures.enabled = true;
    prepare(&env, &["civil-status", "social-insurance-cards"]).await;
    let onestop = env.member("one-stop-48").await;
    let hub = env.start_hub().await;
    let dossiers: Vec<(String, Value)> = (0..DOSSIERS).map(|_| birth_dossier()).collect();
    let started = std::time::Instant::now();
    let batch = client(&hub, Some(&onestop))
        .await
        .publish_batch(futures::stream::iter(
            dossiers
                .iter()
                .map(|(code, payload)| publish_request(code, payload))
                .collect::<Vec<_>>(),
        ))
        .await
        .expect("batch answered")
        .into_inner();
    assert_eq!(batch.accepted as usize, DOSSIERS, "every dossier taken");

    let count_where = async |condition: &str| -> i64 {
        env.pool
            .get()
            .await
            .expect("connection")
            .query_one(
                &format!("SELECT count(*) FROM procedure_instance WHERE {condition}"),
                &[],
            )
            .await
            .expect("counted")
            .get(0)
    };
    // Generous: the connectors' own rate limits (50 calls a second) set the pace here.
    let deadline = started + std::time::Duration::from_secs(300);
    loop {
        let done = count_where("state = 'completed'").await;
        let queued = count_where(
            "EXISTS (SELECT 1 FROM procedure_outbox o
                     WHERE o.dossier_code = procedure_instance.dossier_code
                       AND o.published_at IS NULL)",
        )
        .await;
        if done as usize == DOSSIERS && queued == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{done} of {DOSSIERS} dossiers completed; {} opened",
            count_where("true").await
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    eprintln!(
        "{DOSSIERS} birth dossiers completed in {:.1} s (connectors limited to 50 calls/s)",
        started.elapsed().as_secs_f64()
    );
    let db = env.pool.get().await.expect("connection");
    let registrations: i64 = db
        .query_one("SELECT count(*) FROM sandbox_civil_status.birth", &[])
        .await
        .expect("counted")
        .get(0);
    let cards: i64 = db
        .query_one(
            "SELECT count(*) FROM sandbox_social_insurance.child_card",
            &[],
        )
        .await
        .expect("counted")
        .get(0);
    assert_eq!(
        (registrations as usize, cards as usize),
        (DOSSIERS, DOSSIERS),
        "one registration and one card per dossier"
    );
    let results: i64 = db
        .query_one(
            "SELECT count(DISTINCT dossier_code) FROM procedure_outbox
             WHERE event_type = 'birth.result-returned' AND published_at IS NOT NULL",
            &[],
        )
        .await
        .expect("counted")
        .get(0);
    assert_eq!(results as usize, DOSSIERS, "every result published");
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_for_a_dossier_whose_rows_were_changed_by_hand_is_set_aside_not_retried() {
    let mut env = TestEnv::new("procedures_corrupt").await;
    env.config.procedures.enabled = true;
    env.grant_procedure_engine().await;
    let onestop = env.member("one-stop-48").await;
    let registrar = env.token("civil-status-connector").await;
    env.grant(
        "civil-status-connector",
        Direction::Publish,
        "birth.civil-registration-completed",
        PURPOSE,
    )
    .await;
    let hub = env.start_hub().await;
    let (code, payload) = birth_dossier();
    client(&hub, Some(&onestop))
        .await
        .publish(publish_request(&code, &payload))
        .await
        .expect("published");
    common::eventually("the dossier opened", async || {
        procedure(&env, &code)
            .await
            .map(|_| ())
            .ok_or_else(|| "not yet".to_owned())
    })
    .await;
    env.pool
        .get()
        .await
        .expect("connection")
        .execute(
            "UPDATE procedure_instance SET state = 'paused-by-hand' WHERE dossier_code = $1",
            &[&code],
        )
        .await
        .expect("changed by hand");

    client(&hub, Some(&registrar))
        .await
        .publish(registration_answer(&code))
        .await
        .expect("published");
    let entry = common::eventually("the answer set aside", async || {
        let timeline = store::timeline(&env.pool, &code)
            .await
            .map_err(|e| e.to_string())?;
        timeline
            .into_iter()
            .find(|e| e.event_type == "birth.civil-registration-completed")
            .ok_or_else(|| "not yet".to_owned())
    })
    .await;
    assert_eq!(
        entry.what,
        "set aside: procedure_instance.state holds \"paused-by-hand\""
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_issued_before_or_after_their_dossier_are_joined_to_it_and_compared() {
    let mut env = TestEnv::new("procedures_documents").await;
    env.config.procedures.enabled = true;
    prepare(&env, &[]).await;
    let hospital = env.token("hospital-48017").await;
    env.grant(
        "hospital-48017",
        Direction::Publish,
        "birth.e-birth-certificate-issued",
        PURPOSE,
    )
    .await;
    let police = env.token("police-48").await;
    env.grant(
        "police-48",
        Direction::Publish,
        "death.notice-issued",
        PURPOSE,
    )
    .await;
    let (code, birth) = dossier();
    let (death_code, id, death) = death_dossier(&env, "valid-with-funeral-allowance.json").await;
    let hub = env.start_hub().await;
    let example = |path: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("schemas/examples")
                    .join(path),
            )
            .expect("example"),
        )
        .expect("json")
    };
    let publish = async |token: &str, event_type: &str, payload: &Value| {
        let mut request = publish_request("", payload);
        request.event_type = event_type.into();
        client(&hub, Some(token))
            .await
            .publish(request)
            .await
            .expect("published before any dossier names it");
    };

    // The hospital's certificate comes first, and another facility's with the same number
    // for another mother.
    let certificate = example("birth.e-birth-certificate-issued/valid-before-dossier.json");
    let number = certificate["certificate_number"]
        .as_str()
        .expect("number")
        .to_owned();
    assert_eq!(birth["birth_certificate_no"], number.as_str());
    let mut another = certificate.clone();
    another["mother"]["personal_id"] = "048195009999".into();
    publish(&hospital, "birth.e-birth-certificate-issued", &certificate).await;
    publish(&hospital, "birth.e-birth-certificate-issued", &another).await;
    let waiting_key = format!("birth.e-birth-certificate-issued#{number}");
    common::eventually(
        "both certificates wait for a dossier",
        async || match count(
            &env,
            "SELECT count(*) FROM procedure_event WHERE dossier_code = $1 AND payload IS NOT NULL",
            &waiting_key,
        )
        .await
        {
            2 => Ok(()),
            n => Err(format!("{n} waiting")),
        },
    )
    .await;

    // The dossier naming it comes: its own certificate is joined, the other one still waits.
    client(&hub, Some(&env.member("one-stop-births-48").await))
        .await
        .publish(publish_request(&code, &birth))
        .await
        .expect("submitted");
    common::eventually("the certificate joined", async || {
        let timeline = store::timeline(&env.pool, &code)
            .await
            .map_err(|e| e.to_string())?;
        let joined: Vec<&str> = timeline
            .iter()
            .filter(|e| e.event_type == "birth.e-birth-certificate-issued")
            .map(|e| e.what.as_str())
            .collect();
        match joined.as_slice() {
            // The child's name, sex, birth date and place; the mother's name, ID and birth
            // date: what the form holds from it, counted in the pre-fill.
            [
                "BIRTH_CERTIFICATE joined; it tells what the submission tells; 7 more field(s) \
                 of the form hold what it told",
            ] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM procedure_event WHERE dossier_code = $1",
            &waiting_key
        )
        .await,
        1,
        "another mother's certificate is not this dossier's"
    );

    // A death notice that comes after its dossier, telling another date of death.
    submit_death(&env, &hub, &death_code, &death).await;
    common::eventually("the death dossier opened", async || {
        match procedure(&env, &death_code).await {
            Some(_) => Ok(()),
            None => Err("not yet".to_owned()),
        }
    })
    .await;
    let mut notice = example("death.notice-issued/valid-before-dossier.json");
    assert_eq!(death["death_notice_number"], notice["notice_number"]);
    notice["personal_id"] = Value::String(id);
    notice["death_date"] = "2026-11-14".into();
    publish(&police, "death.notice-issued", &notice).await;
    let joined = common::eventually("the notice joined", async || {
        let timeline = store::timeline(&env.pool, &death_code)
            .await
            .map_err(|e| e.to_string())?;
        match timeline
            .iter()
            .find(|e| e.event_type == "death.notice-issued")
        {
            Some(e) => Ok(e.what.clone()),
            None => Err("not yet".to_owned()),
        }
    })
    .await;
    assert_eq!(
        joined,
        "DEATH_NOTICE joined; it differs from the submission on the date of death: for the \
         official to check"
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_document_and_what_the_engine_published_are_forgotten_after_the_retention() {
    let mut env = TestEnv::new("procedures_forget").await;
    env.config.procedures.enabled = true;
    env.config.procedures.deadline_interval_ms = 100;
    prepare(&env, &[]).await;
    let hospital = env.token("hospital-48017").await;
    env.grant(
        "hospital-48017",
        Direction::Publish,
        "birth.e-birth-certificate-issued",
        PURPOSE,
    )
    .await;
    let onestop = env.member("one-stop-48").await;
    let clock = ManualClock::new(chrono::Utc::now());
    let hub = lienthong::app::Hub::start_with_clock(env.config.clone(), Arc::new(clock.clone()))
        .await
        .expect("the hub starts");
    // A dossier the engine takes in (naming another certificate than the one below): what it
    // publishes for it is forgotten the same way.
    let (code, mut dossier) = birth_dossier();
    dossier["birth_certificate_no"] = "GCS-2026-000001".into();
    client(&hub, Some(&onestop))
        .await
        .publish(publish_request(&code, &dossier))
        .await
        .expect("published");
    let published_kept = "SELECT count(*) FROM procedure_outbox
         WHERE dossier_code = $1 AND published_at IS NOT NULL AND payload <> '{}'::jsonb";
    common::eventually("the acceptance published", async || {
        match count(&env, published_kept, &code).await {
            0 => Err("nothing published yet".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
    let certificate: Value =
        serde_json::from_str(
            &std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
                "schemas/examples/birth.e-birth-certificate-issued/valid-before-dossier.json",
            ))
            .expect("example"),
        )
        .expect("json");
    let mut request = publish_request("", &certificate);
    request.event_type = "birth.e-birth-certificate-issued".into();
    client(&hub, Some(&hospital))
        .await
        .publish(request)
        .await
        .expect("published");
    let key = format!(
        "birth.e-birth-certificate-issued#{}",
        certificate["certificate_number"].as_str().expect("number")
    );
    let kept =
        "SELECT count(*) FROM procedure_event WHERE dossier_code = $1 AND payload IS NOT NULL";
    common::eventually("the certificate waits", async || {
        match count(&env, kept, &key).await {
            1 => Ok(()),
            n => Err(format!("{n} kept")),
        }
    })
    .await;

    // A day short of the retention it is still kept; past it, its personal data is gone and
    // the timeline says why.
    clock.advance(std::time::Duration::from_secs(29 * 24 * 3600));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        count(&env, kept, &key).await,
        1,
        "kept within the retention"
    );
    assert!(count(&env, published_kept, &code).await > 0);
    clock.advance(std::time::Duration::from_secs(2 * 24 * 3600));
    common::eventually("the certificate forgotten", async || {
        match count(&env, kept, &key).await {
            0 => Ok(()),
            n => Err(format!("{n} kept")),
        }
    })
    .await;
    let timeline = store::timeline(&env.pool, &key).await.expect("timeline");
    assert_eq!(
        timeline.iter().map(|e| e.what.as_str()).collect::<Vec<_>>(),
        [store::FORGOTTEN]
    );
    common::eventually("what was published forgotten", async || {
        match count(&env, published_kept, &code).await {
            0 => Ok(()),
            n => Err(format!("{n} kept")),
        }
    })
    .await;
    let timeline = store::timeline(&env.pool, &code).await.expect("timeline");
    assert!(
        timeline
            .iter()
            .any(|e| e.direction == "out" && e.what == "published"),
        "the timeline still says what was published: {timeline:?}"
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_birth_with_copies_pays_its_fee_on_paygov_within_the_group_once() {
    let mut env = TestEnv::new("procedures_fee").await;
    env.config.procedures.enabled = true;
    let base = prepare(
        &env,
        &[
            "civil-status",
            "social-insurance-cards",
            "paygov-payments",
            "paygov-confirmations",
            "portal-dossiers",
            "portal-progress",
        ],
    )
    .await;
    let onestop = env.member("one-stop-48").await;
    let hub = env.start_hub().await;
    let (code, mut payload) = birth_dossier();
    // Born 80 days before the dossier came (60 are allowed), and two copies asked for.
    payload["child"]["birth_date"] = Value::String("2026-09-01".into());
    payload["extract_copies"] = Value::from(2);
    let mut publisher = client(&hub, Some(&onestop)).await;
    publisher
        .publish(publish_request(&code, &payload))
        .await
        .expect("published");

    // Once the birth is registered the engine asks PayGov, under the step's own key.
    let key = format!("{code}:PAYMENT");
    let (transaction, amount): (String, i64) =
        common::eventually("PayGov opened the fee's transaction", async || {
            let rows = env
                .pool
                .get()
                .await
                .map_err(|e| e.to_string())?
                .query(
                    "SELECT transaction_id, amount FROM sandbox_paygov.transaction
                     WHERE order_id = $1",
                    &[&key],
                )
                .await
                .map_err(|e| e.to_string())?;
            rows.first()
                .map(|row| (row.get(0), row.get(1)))
                .ok_or_else(|| "no transaction yet".to_owned())
        })
        .await;
    assert_eq!(
        amount,
        5_000 + 2 * 8_000,
        "Da Nang's late fee and two copies"
    );
    let waiting = procedure(&env, &code).await.expect("the dossier is open");
    assert_eq!(
        waiting.portal_status, 6,
        "the portal shows payment requested"
    );
    assert_ne!(
        waiting.state,
        State::Completed,
        "not returned before it is paid"
    );

    // The citizen pays on PayGov's page; the hub confirms it by asking PayGov.
    let paid = reqwest::Client::new()
        .post(format!("{base}/paygov/v1/pay/{transaction}"))
        .json(&serde_json::json!({"outcome": "success"}))
        .send()
        .await
        .expect("the payment page answers");
    assert!(paid.status().is_success(), "{}", paid.status());
    let instance = completed(&env, &code).await;
    assert_eq!(
        step_states(&instance),
        [
            ("CIVIL_REGISTRATION", StepState::Done),
            ("HEALTH_INSURANCE_CARD", StepState::Done),
            ("PAYMENT", StepState::Done)
        ]
    );
    let results = decided(&env, &code, "birth.result-returned").await;
    assert_eq!(results.len(), 1);
    assert!(
        results[0].0["results"]
            .as_array()
            .expect("results")
            .iter()
            .any(|r| r["result_type"] == "FEE_PAYMENT"
                && r["document_reference"] == transaction.as_str()),
        "{results:?}"
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM sandbox_paygov.transaction WHERE dossier_code = $1",
            &code
        )
        .await,
        1,
        "charged once"
    );
    let statuses = portal_statuses_once_returned(&base, &code).await;
    assert_eq!(
        statuses,
        [1, 2, 4, 6, 4, 9, 10],
        "the portal saw the payment asked and made"
    );
    hub.shutdown().await.expect("clean shutdown");
}

/// A couple of the seeded population: a woman and a man heading one household, both with a
/// whole date of birth, as (mother, father).
async fn seeded_couple(env: &TestEnv) -> (String, String) {
    let reference = env.config.schemas.dir.join("reference");
    lienthong::sandbox::seed::seed(&env.pool, &reference, "48", 200, 11, |_| {})
        .await
        .expect("seeded");
    let row = env
        .pool
        .get()
        .await
        .expect("connection")
        .query_one(
            "SELECT m.personal_id, f.personal_id
             FROM sandbox_population.citizen m
             JOIN sandbox_population.citizen f
               ON f.household_id = m.household_id AND f.sex = 'MALE'
              AND f.relationship IN ('head', 'spouse') AND length(f.birth_date) = 10
             WHERE m.sex = 'FEMALE' AND m.relationship IN ('head', 'spouse')
               AND length(m.birth_date) = 10 AND m.commune_code IS NOT NULL
             ORDER BY m.personal_id LIMIT 1",
            &[],
        )
        .await
        .expect("a seeded couple");
    (row.get(0), row.get(1))
}

/// The pre-fill (issue 19): the one-stop system asks the population database about the people
/// its form names through the hub (the repository's population-lookups connector), fills the
/// form in with the answers and the health facility's certificate, and the engine counts which
/// of the submitted form's fields hold what national data told: all but the father's number,
/// who did not sign in, and what only the citizen knows. A number nobody has is answered
/// NOT_FOUND, not dead-lettered. The database logged each read under the connector.
#[tokio::test]
async fn a_birth_form_filled_in_from_the_population_database_through_the_hub_has_its_prefill_counted()
 {
    let mut env = TestEnv::new("procedures_prefill").await;
    env.config.procedures.enabled = true;
    let (mother_id, father_id) = seeded_couple(&env).await;
    prepare(&env, &["population-lookups"]).await;
    let one_stop = env.member("one-stop-births-48").await;
    for event_type in ["birth.citizen-found", "birth.citizen-lookup-failed"] {
        env.grant(
            "one-stop-births-48",
            Direction::Subscribe,
            event_type,
            "dossier-processing",
        )
        .await;
    }
    env.grant(
        "one-stop-births-48",
        Direction::Publish,
        "birth.citizen-lookup-requested",
        "dossier-processing",
    )
    .await;
    let hospital = env.token("hospital-48017").await;
    env.grant(
        "hospital-48017",
        Direction::Publish,
        "birth.e-birth-certificate-issued",
        PURPOSE,
    )
    .await;
    let hub = env.start_hub().await;
    let (code, mut form) = dossier();
    let subscribe = async |event_type: &str| {
        client(&hub, Some(&one_stop))
            .await
            .subscribe(lienthong::proto::SubscribeRequest {
                event_type: event_type.into(),
                consumer_group: "one-stop-prefill".into(),
                start_from: lienthong::proto::StartFrom::Earliest.into(),
                max_unacknowledged: 0,
                purpose: "dossier-processing".into(),
                legal_basis: "Decree 63/2024/ND-CP".into(),
            })
            .await
            .expect("subscribed")
            .into_inner()
    };
    let mut found = subscribe("birth.citizen-found").await;
    let mut failed = subscribe("birth.citizen-lookup-failed").await;
    let ask = async |personal_id: &str, roles: &[&str]| {
        let mut request = publish_request(
            &code,
            &serde_json::json!({
                "dossier_code": code,
                "personal_id": personal_id,
                "roles": roles,
                "requested_at": "2026-11-20T09:01:00+07:00",
            }),
        );
        request.event_type = "birth.citizen-lookup-requested".into();
        request.purpose = "dossier-processing".into();
        client(&hub, Some(&one_stop))
            .await
            .publish(request)
            .await
            .expect("lookup asked");
    };
    // The mother signs in and declares; the father's number is typed, wrongly first.
    ask(&mother_id, &["MOTHER", "DECLARANT"]).await;
    ask("048093009999", &["FATHER"]).await;
    ask(&father_id, &["FATHER"]).await;

    let refusal = common::next(&mut failed).await;
    let refusal = lienthong::api::convert::struct_to_json(refusal.payload.expect("payload"));
    assert_eq!(
        (
            refusal["personal_id"].as_str(),
            refusal["reason_code"].as_str()
        ),
        (Some("048093009999"), Some("NOT_FOUND")),
        "a number nobody has is an answer: {refusal}"
    );
    let mut people = std::collections::HashMap::new();
    while people.len() < 2 {
        let delivery = common::next(&mut found).await;
        let person = lienthong::api::convert::struct_to_json(delivery.payload.expect("payload"));
        people.insert(
            person["roles"][0].as_str().expect("role").to_owned(),
            person,
        );
    }
    let (mother, father) = (&people["MOTHER"], &people["FATHER"]);
    assert_eq!(mother["personal_id"], mother_id.as_str());
    let household = &father["household"];
    assert!(
        [mother_id.as_str(), father_id.as_str()]
            .contains(&household["head_personal_id"].as_str().unwrap_or("")),
        "one of them heads the household: {household}"
    );

    // The one-stop system fills the form in; the citizen types the child's name as the
    // certificate has it and says how the child relates to the head.
    for (role, person) in [("mother", mother), ("father", father)] {
        for field in [
            "full_name",
            "personal_id",
            "birth_date",
            "ethnicity_code",
            "nationality",
        ] {
            form[role][field] = person[field].clone();
        }
    }
    form["declarant"] = serde_json::json!({
        "full_name": mother["full_name"],
        "personal_id": mother["personal_id"],
        "relationship": "MOTHER",
    });
    form["child"]["ethnicity_code"] = mother["ethnicity_code"].clone();
    form["child"]["nationality"] = mother["nationality"].clone();
    let home = &father["permanent_residence"];
    form["commune_code"] = home["commune_code"].clone();
    form["residence"] = serde_json::json!({
        "household_number": household["number"],
        "head_personal_id": household["head_personal_id"],
        "relationship_to_head": "CHILD",
        "province_code": home["province_code"],
        "commune_code": home["commune_code"],
        "address_line": home["address"],
    });
    form["prefill"] = Value::Null;
    let mut certificate: Value =
        serde_json::from_str(
            &std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
                "schemas/examples/birth.e-birth-certificate-issued/valid-before-dossier.json",
            ))
            .expect("example"),
        )
        .expect("json");
    for field in ["full_name", "personal_id", "birth_date"] {
        certificate["mother"][field] = mother[field].clone();
    }
    let mut issued = publish_request("", &certificate);
    issued.event_type = "birth.e-birth-certificate-issued".into();
    client(&hub, Some(&hospital))
        .await
        .publish(issued)
        .await
        .expect("certificate issued");
    client(&hub, Some(&one_stop))
        .await
        .publish(publish_request(&code, &form))
        .await
        .expect("submitted");

    let missing = [
        "/father/personal_id",
        "/declarant/relationship",
        "/birth_certificate_no",
        "/residence/relationship_to_head",
    ];
    let filled = common::eventually("the hub counts the pre-fill", async || {
        let filled = procedure(&env, &code).await.and_then(|i| i.filled);
        match filled {
            Some(filled) if filled.fields.len() == 22 => Ok(filled),
            other => {
                let timeline = store::timeline(&env.pool, &code).await.unwrap_or_default();
                let taken: Vec<String> = timeline
                    .iter()
                    .map(|e| format!("{} {}: {}", e.direction, e.event_type, e.what))
                    .collect();
                Err(format!("{other:?}; timeline: {taken:#?}"))
            }
        }
    })
    .await;
    assert_eq!(
        filled.on_form, 26,
        "every field of a form with a father and a residence"
    );
    for field in missing {
        assert!(
            !filled.fields.iter().any(|f| f == field),
            "{field} is typed"
        );
    }
    assert!(filled.ratio() >= 0.8, "the aim: {}", filled.ratio());
    let operator = env.operator_token("province-operator").await;
    let shown = dossier_client(&hub, &operator)
        .await
        .get_dossier(GetDossierRequest {
            dossier_code: code.clone(),
        })
        .await
        .expect("shown")
        .into_inner();
    assert_eq!(
        (
            shown.filled_from_national_data.len(),
            shown.fields_counted_on_form
        ),
        (22, 26)
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM sandbox_population.read_log
             WHERE caller = 'population-connector' AND purpose = 'identity-management'
               AND personal_id = $1",
            &mother_id,
        )
        .await,
        1,
        "the database logged the read under the connector"
    );
    assert_eq!(
        count(
            &env,
            "SELECT count(*) FROM connector_dead_letter WHERE name = $1",
            "population-lookups",
        )
        .await,
        0,
        "nothing dead-lettered"
    );
    hub.shutdown().await.expect("clean shutdown");
}
