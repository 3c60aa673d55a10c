//! The civil-status sandbox against real PostgreSQL: authenticated, idempotent per key, never
//! two registrations (two personal ID numbers) for one dossier, and clear refusals; its fault
//! controls; and the repository's civil-status connector delivering through a one-minute outage
//! and 30 % failures without losing or repeating a registration.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{EVENT_TYPE, PURPOSE, TestEnv, client, dossier, publish_request};
use lienthong::access::Direction;
use lienthong::connectors::state;
use lienthong::sandbox::Credentials;
use lienthong::sandbox::faults::{Faults, Outage};
use serde_json::{Value, json};

use common::sandbox::{PAYGOV_SECRET, TOKEN};

async fn start(env: &TestEnv) -> String {
    start_with(env, HashMap::new()).await
}

/// Starts the sandboxes with `faults`, every system on the one test token; the civil-status
/// births URL.
async fn start_with(env: &TestEnv, faults: HashMap<String, Faults>) -> String {
    start_as(env, faults, Credentials::shared(TOKEN, PAYGOV_SECRET)).await
}

async fn start_as(
    env: &TestEnv,
    faults: HashMap<String, Faults>,
    credentials: Credentials,
) -> String {
    let base = common::sandbox::start(env, faults, credentials).await;
    format!("{base}/civil-status/v1/births")
}

fn birth(code: &str) -> Value {
    json!({
        "dossier_code": code,
        "province_code": "48",
        "child": {"full_name": "Nguyễn Minh An", "sex": "FEMALE", "birth_date": "2026-11-12"}
    })
}

async fn register(url: &str, key: &str, body: &Value, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("the sandbox answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_birth_is_registered_once_whatever_is_repeated() {
    let env = TestEnv::new("sandbox_cs").await;
    let url = start(&env).await;
    let (status, first) = register(&url, "k-1", &birth("G22.99.08-261120-0001"), TOKEN).await;
    assert_eq!(status, 201, "{first}");
    let id = first["personal_id"].as_str().expect("a personal ID");
    assert!(id.starts_with("048326") && id.len() == 12, "{id}");
    assert_eq!(first["agency_code"], "G22.99.08");

    let (status, repeat) = register(&url, "k-1", &birth("G22.99.08-261120-0001"), TOKEN).await;
    assert_eq!(
        (status, &repeat),
        (200, &first),
        "a repeat gets the first answer"
    );

    let in_population: i64 = env
        .pool
        .get()
        .await
        .expect("connection")
        .query_one(
            "SELECT count(*) FROM sandbox_population.citizen WHERE personal_id = $1",
            &[&id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        in_population, 1,
        "the child enters the population database with its number"
    );
    let (status, again) = register(&url, "k-2", &birth("G22.99.08-261120-0001"), TOKEN).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (409, Some("already_registered")),
        "no second ID for one dossier"
    );

    let (status, _) = register(&url, "k-3", &birth("G22.99.08-261120-0002"), "wrong-token").await;
    assert_eq!(status, 401);
    let mut incomplete = birth("G22.99.08-261120-0003");
    incomplete["child"]
        .as_object_mut()
        .expect("child")
        .remove("birth_date");
    let (status, refused) = register(&url, "k-4", &incomplete, TOKEN).await;
    assert_eq!(status, 422);
    assert_eq!(refused["message"], "/child/birth_date is required");

    let found: Value = reqwest::Client::new()
        .get(format!("{url}/G22.99.08-261120-0001"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("lookup")
        .json()
        .await
        .expect("json");
    assert_eq!(found, first);
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_controls_are_set_while_running_and_refuse_bad_settings() {
    let env = TestEnv::new("sandbox_faults").await;
    let url = start(&env).await;
    let base = url.replace("/civil-status/v1/births", "");
    let http = reqwest::Client::new();
    let set = async |system: &str, faults: Value, token: &str| {
        let response = http
            .put(format!("{base}/sandbox/v1/faults/{system}"))
            .bearer_auth(token)
            .json(&faults)
            .send()
            .await
            .expect("answered");
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    assert_eq!(set("civil-status", json!({}), "wrong").await.0, 401);
    let (status, refused) = set("civil-status", json!({"error_rate": 2}), TOKEN).await;
    assert_eq!(status, 422);
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("error_rate")),
        "{refused}"
    );
    assert_eq!(set("nowhere", json!({}), TOKEN).await.0, 404);

    let (status, _) = set(
        "civil-status",
        json!({"error_rate": 1.0, "error_status": 500}),
        TOKEN,
    )
    .await;
    assert_eq!(status, 200);
    let (status, answer) = register(&url, "k-f", &birth("G22.99.08-261120-0009"), TOKEN).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (500, Some("injected_failure"))
    );
    let now = chrono::Utc::now();
    let outage = json!({"outages": [{"from": now - chrono::Duration::seconds(1), "until": now + chrono::Duration::seconds(30)}]});
    assert_eq!(set("civil-status", outage, TOKEN).await.0, 200);
    let (status, answer) = register(&url, "k-f", &birth("G22.99.08-261120-0009"), TOKEN).await;
    assert_eq!((status, answer["error"].as_str()), (503, Some("outage")));
    let listed: Value = http
        .get(format!("{base}/sandbox/v1/faults"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("listed")
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["civil-status"]["outages"].as_array().map(Vec::len),
        Some(1)
    );
    let registered: i64 = env
        .pool
        .get()
        .await
        .expect("connection")
        .query_one("SELECT count(*) FROM sandbox_civil_status.birth", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(registered, 0, "an injected failure changes nothing");
}

/// A repository manifest as it is, pointed at the sandbox listening at `base`.
fn install_repository_manifest(env: &TestEnv, name: &str, base: &str) {
    common::sandbox::install_manifest(env, name, base, &[]);
}

/// The repository's civil-status manifest as it is, pointed at the sandbox.
async fn install_repository_connector(env: &TestEnv, url: &str) {
    install_repository_manifest(
        env,
        "civil-status",
        &url.replace("/civil-status/v1/births", ""),
    );
    let system = "civil-status-connector";
    env.token(system).await;
    env.grant(system, Direction::Subscribe, EVENT_TYPE, PURPOSE)
        .await;
    for reply in ["birth.civil-registration-completed", "birth.step-failed"] {
        env.grant(system, Direction::Publish, reply, PURPOSE).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connector_rides_out_a_one_minute_outage_and_thirty_percent_failures() {
    let env = TestEnv::new("sandbox_outage").await;
    let now = chrono::Utc::now();
    let faults = Faults {
        error_rate: 0.3,
        seed: 11,
        outages: vec![Outage {
            from: now,
            until: now + chrono::Duration::seconds(60),
        }],
        ..Faults::default()
    };
    let url = start_with(&env, HashMap::from([("civil-status".to_owned(), faults)])).await;
    install_repository_connector(&env, &url).await;
    let publisher = env.member("one-stop-48").await;
    let hub = env.start_hub().await;
    let mut events = client(&hub, Some(&publisher)).await;
    let mut codes = Vec::new();
    for _ in 0..10 {
        let (code, payload) = dossier();
        events
            .publish(publish_request(&code, &payload))
            .await
            .expect("published");
        codes.push(code);
    }
    let db = env.pool.get().await.expect("connection");
    let count = async || -> (i64, i64) {
        let row = db
            .query_one(
                "SELECT count(*), count(DISTINCT dossier_code) FROM sandbox_civil_status.birth",
                &[],
            )
            .await
            .expect("count");
        (row.get(0), row.get(1))
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(count().await, (0, 0), "nothing gets through the outage");

    // The outage ends after a minute; the breaker's probe finds the system back and the
    // waiting dossiers go through, each registered once despite the failures and retries.
    let deadline = Instant::now() + Duration::from_secs(240);
    while count().await.0 < 10 {
        assert!(
            Instant::now() < deadline,
            "not all registered: {:?}",
            count().await
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(count().await, (10, 10), "each dossier registered once");
    let mut registered: Vec<String> = db
        .query("SELECT dossier_code FROM sandbox_civil_status.birth", &[])
        .await
        .expect("rows")
        .iter()
        .map(|row| row.get(0))
        .collect();
    registered.sort();
    codes.sort();
    assert_eq!(registered, codes, "the published dossiers, none other");
    let waiting = state::dead_letters_waiting(&env.pool, "civil-status")
        .await
        .expect("dead letters");
    assert_eq!(waiting, (0, 0), "nothing given up on, nothing waiting");
    common::eventually("every reply published", async || {
        let reports = state::workers(&env.pool, Some("civil-status"))
            .await
            .expect("reports");
        match reports.first() {
            Some(w) if w.delivered == 10 && w.failed_attempts > 0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_population_database_assigns_each_number_once_logs_reads_issues_a_card_and_records_a_death_once()
 {
    let env = TestEnv::new("sandbox_population").await;
    let base = start(&env)
        .await
        .replace("/civil-status/v1/births", "/population/v1");
    let http = reqwest::Client::new();
    let call = async |request: reqwest::RequestBuilder| -> (u16, Value) {
        let response = request.bearer_auth(TOKEN).send().await.expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    };
    let newborn = |name: &str| {
        json!({
            "full_name": name,
            "birth_date": "2026-11-12",
            "sex": "FEMALE",
            "province_code": "48",
            "civil_status_reference": "1/2026-KS"
        })
    };
    let assign = |key: &str, body: Value| {
        http.post(format!("{base}/personal-ids"))
            .header("Idempotency-Key", key)
            .json(&body)
    };
    let (status, first) = call(assign("req-1", newborn("Nguyễn Minh An"))).await;
    assert_eq!(status, 201, "{first}");
    let id = first["personal_id"].as_str().expect("an ID").to_owned();
    assert!(id.starts_with("048326") && id.len() == 12, "{id}");
    let (status, repeat) = call(assign("req-1", newborn("Nguyễn Minh An"))).await;
    assert_eq!(
        (status, &repeat),
        (200, &first),
        "one number per request key"
    );
    let (status, reused) = call(assign("req-1", newborn("Lê Văn Tâm"))).await;
    assert_eq!(
        (status, reused["error"].as_str()),
        (422, Some("idempotency_key")),
        "a key reused for another newborn never hands over the first one's number"
    );
    let mut numbers = std::collections::HashSet::from([id.clone()]);
    for n in 0..20 {
        let (status, other) = call(assign(&format!("req-x{n}"), newborn("Trần Bảo Ngọc"))).await;
        assert_eq!(status, 201, "{other}");
        assert!(
            numbers.insert(other["personal_id"].as_str().expect("id").to_owned()),
            "never one number twice"
        );
    }
    let (status, refused) = call(assign("req-2", json!({"full_name": "X"}))).await;
    assert_eq!(
        (status, refused["message"].as_str()),
        (422, Some("/birth_date is required"))
    );

    let look_up = || http.get(format!("{base}/citizens/{id}"));
    let (status, refused) = call(look_up()).await;
    assert_eq!(
        (status, refused["message"].as_str()),
        (400, Some("send a X-Caller header")),
        "a read names its caller and purpose"
    );
    let read = || {
        look_up()
            .header("X-Caller", "G22.99.08")
            .header("X-Purpose", "civil-registration")
    };
    let (status, citizen) = call(read()).await;
    assert_eq!(status, 200, "{citizen}");
    assert_eq!(citizen["full_name"], "Nguyễn Minh An");
    assert_eq!(citizen["permanent_residence"]["province_code"], "48");
    let (status, verified) = call(
        http.post(format!("{base}/citizens/{id}/verify"))
            .header("X-Caller", "G22.99.08")
            .header("X-Purpose", "civil-registration")
            .json(&json!({"full_name": "Nguyễn Minh Anh", "birth_date": "2026-11-12"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        verified,
        json!({"matches": false, "mismatched": ["full_name"]})
    );
    let logged: Vec<(String, String, String)> = env
        .pool
        .get()
        .await
        .expect("connection")
        .query(
            "SELECT caller, purpose, what FROM sandbox_population.read_log
             WHERE personal_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .expect("log")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        logged,
        [
            (
                "G22.99.08".to_owned(),
                "civil-registration".to_owned(),
                "look-up".to_owned()
            ),
            (
                "G22.99.08".to_owned(),
                "civil-registration".to_owned(),
                "verify".to_owned()
            ),
        ],
        "every read logged with who and why; the refused one not"
    );

    // The child's ID card: once per citizen, only for the name and birth date held.
    let card = |key: &str, name: &str| {
        http.post(format!("{base}/citizens/{id}/id-card"))
            .header("Idempotency-Key", key)
            .json(&json!({"full_name": name, "birth_date": "2026-11-12"}))
    };
    let (status, mismatch) = call(card("card-0", "Nguyễn Minh Anh")).await;
    assert_eq!(
        (status, mismatch["error"].as_str()),
        (422, Some("mismatch"))
    );
    let (status, issued) = call(card("card-1", "Nguyễn Minh An")).await;
    assert_eq!(status, 201, "{issued}");
    assert_eq!(
        (
            issued["card_number"].as_str(),
            issued["valid_until"].as_str()
        ),
        (Some(id.as_str()), Some("2040-11-11")),
        "numbered by the personal ID, renewed at 14"
    );
    assert_eq!(call(card("card-1", "Nguyễn Minh An")).await, (200, issued));
    assert_eq!(
        call(card("card-2", "Nguyễn Minh An")).await.0,
        409,
        "one card per citizen"
    );

    let death = |reference: &str| {
        http.post(format!("{base}/citizens/{id}/death"))
            .json(&json!({"died_on": "2026-12-01", "civil_status_reference": reference}))
    };
    let (status, marked) = call(death("7/2026-KT")).await;
    assert_eq!(
        (status, marked["deceased_at"].as_str()),
        (200, Some("2026-12-01"))
    );
    let (status, again) = call(death("7/2026-KT")).await;
    assert_eq!(
        (status, &again),
        (200, &marked),
        "the same registration repeated"
    );
    let (status, refused) = call(death("9/2026-KT")).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (409, Some("already_deceased")),
        "a citizen dies once"
    );
    let (_, citizen) = call(read()).await;
    assert_eq!(citizen["deceased_at"], "2026-12-01");

    // The registration is annulled: only its own death is reverted, once, and its late repeat
    // never marks the citizen deceased again.
    let revert = |reference: &str| {
        http.post(format!("{base}/citizens/{id}/death/revert"))
            .json(&json!({"civil_status_reference": reference}))
    };
    let (status, refused) = call(revert("9/2026-KT")).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (409, Some("other_registration"))
    );
    let (status, living) = call(revert("7/2026-KT")).await;
    assert_eq!((status, living["status"].as_str()), (200, Some("LIVING")));
    let (status, repeated) = call(revert("7/2026-KT")).await;
    assert_eq!(
        (status, &repeated),
        (200, &living),
        "a repeat, the same answer"
    );
    let (status, refused) = call(death("7/2026-KT")).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (409, Some("registration_annulled")),
        "a late repeat of the annulled registration's request"
    );
    let (_, citizen) = call(read()).await;
    assert_eq!(citizen["deceased_at"], serde_json::Value::Null);
}

/// Draws forced to collide: a sandbox restarted under the same seed draws, in order, the
/// numbers it gave before its restart; it must skip every one of them, whichever system (civil
/// status or population) gave it.
#[tokio::test(flavor = "multi_thread")]
async fn a_number_already_given_is_drawn_again_and_skipped() {
    use lienthong::sandbox::IdDraws;

    const SEED: u64 = 7;
    let env = TestEnv::new("sandbox_collide").await;
    let credentials = || Credentials::shared(TOKEN, PAYGOV_SECRET);
    let started = async || {
        common::sandbox::start_drawing(
            &env,
            HashMap::new(),
            credentials(),
            IdDraws::new(Some(SEED)),
        )
        .await
    };
    let http = reqwest::Client::new();
    let assign = async |base: &str, key: &str| -> String {
        let response = http
            .post(format!("{base}/population/v1/personal-ids"))
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", key)
            .json(&json!({
                "full_name": format!("Trẻ {key}"),
                "birth_date": "2026-11-12",
                "sex": "FEMALE",
                "province_code": "48",
                "civil_status_reference": "1/2026-KS"
            }))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status().as_u16(), 201, "{key}");
        let answer: Value = response.json().await.expect("json");
        answer["personal_id"].as_str().expect("a number").to_owned()
    };
    let first = started().await;
    let before = [
        assign(&first, "a-0").await,
        assign(&first, "a-1").await,
        register(
            &format!("{first}/civil-status/v1/births"),
            "a-2",
            &birth("G22.99.08-261120-0077"),
            TOKEN,
        )
        .await
        .1["personal_id"]
            .as_str()
            .expect("registered")
            .to_owned(),
    ];
    let restarted = started().await;
    let after = [
        assign(&restarted, "b-0").await,
        assign(&restarted, "b-1").await,
    ];

    let sequence = IdDraws::new(Some(SEED));
    let drawn: Vec<String> = (0..5)
        .map(|_| sequence.assign("48", "2026-11-12", true).expect("a number"))
        .collect();
    assert_eq!(before[..], drawn[..3], "the seed's first three numbers");
    assert_eq!(
        after[..],
        drawn[3..],
        "the restarted sandbox drew the three taken numbers again, skipped them, and took the next"
    );
    let holders: i64 = env
        .pool
        .get()
        .await
        .expect("db")
        .query_one(
            "SELECT count(DISTINCT full_name) FROM sandbox_population.citizen
             WHERE personal_id = ANY($1)",
            &[&drawn],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        holders, 5,
        "five numbers, five newborns: none was handed over twice"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeded_population_is_consistent_and_a_second_seeding_adds_to_it() {
    let env = TestEnv::new("sandbox_seed").await;
    let reference = env.config.schemas.dir.join("reference");
    let seeded = lienthong::sandbox::seed::seed(&env.pool, &reference, "48", 5_000, 3, |_| {})
        .await
        .expect("seeded");
    assert_eq!((seeded.citizens, seeded.skipped), (5_000, 0));
    let more = lienthong::sandbox::seed::seed(&env.pool, &reference, "48", 5_000, 4, |_| {})
        .await
        .expect("seeded again");
    assert_eq!(
        more.citizens, 5_000,
        "a second seeding adds, never collides"
    );

    let current: std::collections::HashSet<String> =
        csv::Reader::from_path(reference.join("communes/48.csv"))
            .expect("communes")
            .records()
            .map(|r| r.expect("row"))
            .filter(|r| r.get(4) == Some(""))
            .map(|r| r.get(0).expect("code").to_owned())
            .collect();
    let rows = env
        .pool
        .get()
        .await
        .expect("connection")
        .query(
            "SELECT personal_id, birth_date, sex, commune_code, household_id, relationship
             FROM sandbox_population.citizen",
            &[],
        )
        .await
        .expect("citizens");
    assert_eq!(rows.len(), 10_000);
    let mut households: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for row in &rows {
        let (id, birth, sex): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let year: i32 = birth[..4].parse().expect("year");
        let century = match (year / 100, sex.as_str()) {
            (19, "MALE") => '0',
            (19, _) => '1',
            (20, "MALE") => '2',
            _ => '3',
        };
        assert!(
            id.len() == 12
                && id.starts_with("048")
                && id.as_bytes()[3] as char == century
                && id[4..6] == birth[2..4],
            "{id} for {sex} born {birth}"
        );
        assert!(
            current.contains(&row.get::<_, String>(3)),
            "a current commune of 48"
        );
        households
            .entry(row.get(4))
            .or_default()
            .push((row.get(5), birth));
    }
    for (household, members) in &households {
        let heads = members.iter().filter(|(r, _)| r == "head").count();
        assert_eq!(heads, 1, "{household}: one head");
        let youngest_parent = members
            .iter()
            .filter(|(r, _)| r != "child")
            .map(|(_, b)| b.as_str())
            .max()
            .expect("a parent");
        for (_, child) in members.iter().filter(|(r, _)| r == "child") {
            let gap: i32 = child[..4].parse::<i32>().expect("year")
                - youngest_parent[..4].parse::<i32>().expect("year");
            assert!(
                gap >= 19,
                "{household}: a child {gap} years younger than a parent"
            );
        }
    }
    // Social insurance holds a contribution history for most adults, never for a minor, and
    // never more months than were worked since 22.
    let contributions = env
        .pool
        .get()
        .await
        .expect("connection")
        .query_one(
            "SELECT count(*),
                    count(*) FILTER (WHERE age(p.birth_date::date) < INTERVAL '23 years'),
                    count(*) FILTER (WHERE (c.months_before_2014 + c.months_from_2014) / 12
                                           > extract(year FROM age(p.birth_date::date)) - 22),
                    (SELECT count(*) FROM sandbox_population.citizen
                     WHERE age(birth_date::date) >= INTERVAL '23 years')
             FROM sandbox_social_insurance.contribution c
             JOIN sandbox_population.citizen p USING (personal_id)",
            &[],
        )
        .await
        .expect("contributions");
    let (held, minors, too_long, adults): (i64, i64, i64, i64) = (
        contributions.get(0),
        contributions.get(1),
        contributions.get(2),
        contributions.get(3),
    );
    assert_eq!((minors, too_long), (0, 0));
    let share = held as f64 / adults as f64;
    assert!((0.6..0.8).contains(&share), "{held} of {adults} adults");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_path_of_the_openapi_documents_is_served() {
    let env = TestEnv::new("sandbox_openapi").await;
    let base = start(&env).await.replace("/civil-status/v1/births", "");
    let http = reqwest::Client::new();
    for document in [
        "civil-status.json",
        "population.json",
        "residence.json",
        "sandbox-faults.json",
        "social-insurance.json",
        "paygov.json",
        "portal.json",
    ] {
        let served: Value = http
            .get(format!("{base}/openapi/{document}"))
            .send()
            .await
            .expect("served")
            .json()
            .await
            .expect("JSON");
        let on_disk: Value = serde_json::from_str(
            &std::fs::read_to_string(env.config.schemas.dir.join("openapi").join(document))
                .expect("the file"),
        )
        .expect("JSON");
        assert_eq!(served, on_disk, "{document}: the binary serves the file");
        assert_eq!(served["openapi"], "3.1.0");
        let paths = served["paths"].as_object().expect("paths");
        assert!(!paths.is_empty(), "{document}");
        for (path, methods) in paths {
            let concrete = path
                .split('/')
                .map(|part| if part.starts_with('{') { "x" } else { part })
                .collect::<Vec<_>>()
                .join("/");
            for method in methods.as_object().expect("methods").keys() {
                let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes())
                    .expect("an HTTP method");
                let response = http
                    .request(method.clone(), format!("{base}{concrete}"))
                    .send()
                    .await
                    .expect("answered");
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                // An unrouted path gets axum's bare 404 or 405; a routed one answers in JSON
                // (here, mostly 401: no token).
                assert!(
                    status != 405 && !(status == 404 && body.is_empty()),
                    "{document}: {method} {path} is not served ({status})"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_notified_twice_becomes_one_event_and_a_lost_one_can_be_queried() {
    let env = TestEnv::new("sandbox_paygov").await;
    let faults = Faults {
        duplicate_callback_rate: 1.0,
        callback_delay_ms: 200,
        ..Faults::default()
    };
    let base = start_with(&env, HashMap::from([("paygov".to_owned(), faults)]))
        .await
        .replace("/civil-status/v1/births", "");
    env.install_paygov_webhook(PAYGOV_SECRET).await;
    let treasury = env.token("treasury-48").await;
    env.grant(
        "treasury-48",
        Direction::Subscribe,
        "payment.callback-received",
        "fee-payment",
    )
    .await;
    let hub = env.start_hub().await;
    let webhook = format!(
        "http://{}/connectors/paygov-callbacks/webhook",
        hub.http_addr
    );
    let http = reqwest::Client::new();
    let sign = |data: &str| lienthong::sandbox::paygov::sign(PAYGOV_SECRET, data.as_bytes());
    let order = |code: &str, n: u32| {
        let order_id = format!("{code}:copies:{n}");
        json!({
            "order_id": order_id,
            "dossier_code": code,
            "amount": 16000,
            "fee_lines": [{"code": "copies", "description": "Bản sao trích lục (2)", "amount": 16000}],
            "beneficiary_account": {"bank_code": "VCB", "account_number": "0011000123456", "name": "Kho bạc Nhà nước Đà Nẵng"},
            "order_info": format!("Thanh toan phi ho so {code}"),
            "callback_url": webhook,
            "checksum": sign(&format!("{order_id}|16000|{code}")),
        })
    };
    let call = async |request: reqwest::RequestBuilder| -> (u16, Value) {
        let response = request.send().await.expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    };
    let create = |body: &Value| {
        http.post(format!("{base}/paygov/v1/transactions"))
            .bearer_auth(TOKEN)
            .json(body)
    };

    let (code, _) = dossier();
    let (status, created) = call(create(&order(&code, 1))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["transaction_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let (status, again) = call(create(&order(&code, 1))).await;
    assert_eq!(
        (status, again["transaction_id"].as_str()),
        (200, Some(id.as_str())),
        "one transaction per order"
    );
    let mut negative = order(&code, 4);
    negative["fee_lines"] = json!([
        {"code": "copies", "amount": 20000},
        {"code": "discount", "amount": -4000}
    ]);
    let (status, refused) = call(create(&negative)).await;
    assert_eq!(
        (status, refused["message"].as_str()),
        (
            422,
            Some("/fee_lines/1 needs a code and an amount of dong above 0")
        )
    );
    let mut forged = order(&code, 2);
    forged["checksum"] = json!(sign("signed with something else"));
    let (status, refused) = call(create(&forged)).await;
    assert_eq!((status, refused["error"].as_str()), (401, Some("checksum")));

    let mut callbacks = client(&hub, Some(&treasury)).await;
    let mut stream = callbacks
        .subscribe(lienthong::proto::SubscribeRequest {
            event_type: "payment.callback-received".into(),
            consumer_group: "treasury".into(),
            start_from: lienthong::proto::StartFrom::Earliest.into(),
            max_unacknowledged: 0,
            purpose: "fee-payment".into(),
            legal_basis: "Decree 11/2016/ND-CP".into(),
        })
        .await
        .expect("subscribed")
        .into_inner();
    let (status, paid) = call(
        http.post(format!("{base}/paygov/v1/pay/{id}"))
            .json(&json!({"outcome": "success", "bank_code": "VCB"})),
    )
    .await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("PAID")),
        "{paid}"
    );
    let (status, _) = call(
        http.post(format!("{base}/paygov/v1/pay/{id}"))
            .json(&json!({"outcome": "success"})),
    )
    .await;
    assert_eq!(status, 409, "paid once");

    let delivery = common::next(&mut stream).await;
    let payload = lienthong::api::convert::struct_to_json(delivery.payload.expect("payload"));
    assert_eq!(payload["platform_transaction_id"], id.as_str());
    assert_eq!(payload["amount_vnd"], 16000);
    assert_eq!(payload["response_code"], "00");
    let db = env.pool.get().await.expect("connection");
    common::eventually("both copies of the callback sent", async || {
        let sent: Vec<(bool, Option<i32>)> = db
            .query(
                "SELECT duplicate, status FROM sandbox_paygov.callback WHERE transaction_id = $1 ORDER BY id",
                &[&id],
            )
            .await
            .expect("callbacks")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        if sent == [(false, Some(200)), (true, Some(200))] {
            Ok(())
        } else {
            Err(format!("{sent:?}"))
        }
    })
    .await;
    if let Ok(more) = tokio::time::timeout(Duration::from_secs(2), stream.message()).await {
        panic!("the repeated callback was published again: {more:?}");
    }

    // A callback not signed with the shared secret is refused.
    let (status, _) = call(
        http.post(&webhook)
            .header("X-PayGov-Signature", sign("something else"))
            .body(r#"{"transaction_id":"PG1"}"#),
    )
    .await;
    assert_eq!(status, 401);

    let authorised_get = |path: String| http.get(format!("{base}{path}")).bearer_auth(TOKEN);
    let (status, receipt) = call(authorised_get(format!(
        "/paygov/v1/transactions/{id}/receipt"
    )))
    .await;
    assert_eq!(status, 200, "{receipt}");
    assert!(
        receipt["receipt_number"]
            .as_str()
            .is_some_and(|r| r.starts_with("BL-PAYGOV-"))
    );
    let today = chrono::Utc::now()
        .with_timezone(&lienthong::domain::vietnam())
        .date_naive();
    let (status, statement) = call(authorised_get(format!(
        "/paygov/v1/reconciliation?date={today}"
    )))
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            statement["count"].as_u64(),
            statement["total_amount"].as_i64()
        ),
        (Some(1), Some(16000))
    );

    // A callback that never comes: the merchant queries the transaction.
    let lost = json!({"lost_callback_rate": 1.0});
    let (status, _) = call(
        http.put(format!("{base}/sandbox/v1/faults/paygov"))
            .bearer_auth(TOKEN)
            .json(&lost),
    )
    .await;
    assert_eq!(status, 200);
    let (_, second) = call(create(&order(&code, 3))).await;
    let second_id = second["transaction_id"].as_str().expect("id").to_owned();
    call(
        http.post(format!("{base}/paygov/v1/pay/{second_id}"))
            .json(&json!({"outcome": "success"})),
    )
    .await;
    let (_, queried) = call(authorised_get(format!(
        "/paygov/v1/transactions/{second_id}"
    )))
    .await;
    assert_eq!(queried["status"], "PAID");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent: i64 = db
        .query_one(
            "SELECT count(*) FROM sandbox_paygov.callback WHERE transaction_id = $1",
            &[&second_id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(sent, 0, "the callback was never sent");
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_portal_follows_a_dossier_and_refuses_an_illegal_transition() {
    let env = TestEnv::new("sandbox_portal").await;
    let base = start(&env)
        .await
        .replace("/civil-status/v1/births", "/portal/v1/dossiers");
    let http = reqwest::Client::new();
    let call = async |request: reqwest::RequestBuilder| -> (u16, Value) {
        let response = request.send().await.expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    };
    let (code, _) = dossier();
    let synced = json!({"dossier_code": code, "procedure_code": "1.001193", "agency_code": "G22.99.08", "status": 2});
    let (status, first) = call(http.post(&base).bearer_auth(TOKEN).json(&synced)).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = call(http.post(&base).bearer_auth(TOKEN).json(&synced)).await;
    assert_eq!((status, &again), (200, &first), "synced once");

    let update = |to: i64, key: &str| {
        http.post(format!("{base}/{code}/progress"))
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", key)
            .json(&json!({"status": to, "note": format!("to {to}")}))
    };
    for (to, key) in [(4, "u1"), (9, "u2"), (10, "u3")] {
        let (status, answer) = call(update(to, key)).await;
        assert_eq!(
            (status, answer["status"].as_i64()),
            (200, Some(to)),
            "{answer}"
        );
    }
    let (status, repeat) = call(update(10, "u3")).await;
    assert_eq!(
        (status, repeat["timeline"].as_array().map(Vec::len)),
        (200, Some(4)),
        "a repeated update changes nothing"
    );
    let (status, refused) = call(update(4, "u4")).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (409, Some("illegal_transition"))
    );
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("10 (Result returned)") && m.contains("Đã trả kết quả")),
        "{refused}"
    );
    let (status, timeline) = call(http.get(format!("{base}/{code}"))).await;
    assert_eq!(status, 200, "anyone may look a dossier up");
    let statuses: Vec<i64> = timeline["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|s| s["status"].as_i64())
        .collect();
    assert_eq!(statuses, [2, 4, 9, 10]);
    assert_eq!(timeline["status_name_en"], "Result returned");
    let (status, _) = call(http.get(format!("{base}/G22.99.08-000000-0000"))).await;
    assert_eq!(status, 404);
    let (status, refused) = call(
        http.post(format!("{base}/{code}/progress"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid")),
        "a body that is not JSON is refused with the JSON error object too"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_residence_needs_the_heads_consent_outside_a_parents_household_and_a_deletion_reverts() {
    let env = TestEnv::new("sandbox_residence").await;
    let base = start(&env)
        .await
        .replace("/civil-status/v1/births", "/residence/v1");
    let http = reqwest::Client::new();
    let call = async |request: reqwest::RequestBuilder| -> (u16, Value) {
        let response = request.bearer_auth(TOKEN).send().await.expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    };
    let child = "048326000123";
    let mut body = json!({
        "personal_id": child,
        "household_id": "HK48000000042",
        "head_personal_id": "048055000001",
        "relationship": "cháu",
        "commune_code": "20194",
        "address": "12 Lê Duẩn, phường Hải Châu",
        "mother_personal_id": "048190000002",
        "father_personal_id": "048088000003"
    });
    let register = |key: &str, body: &Value| {
        http.post(format!("{base}/registrations"))
            .header("Idempotency-Key", key)
            .json(body)
    };
    let (status, refused) = call(register("r-1", &body)).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (422, Some("consent_required")),
        "a grandparent's household needs the head's consent"
    );
    body["head_consent"] = json!({"head_personal_id": "048055000001", "given_on": "2026-11-20"});
    let (status, first) = call(register("r-1", &body)).await;
    assert_eq!(status, 201, "{first}");
    let (status, repeat) = call(register("r-1", &body)).await;
    assert_eq!(
        (status, &repeat),
        (200, &first),
        "a repeat gets the first answer"
    );
    let (status, _) = call(register("r-2", &body)).await;
    assert_eq!(status, 409, "one permanent residence per citizen");

    let mut sibling = body.clone();
    sibling["personal_id"] = json!("048326000124");
    sibling["head_personal_id"] = json!("048190000002");
    sibling["head_consent"] = Value::Null;
    let (status, _) = call(register("r-3", &sibling)).await;
    assert_eq!(
        status, 201,
        "joining the mother's own household needs no consent"
    );

    let reference = json!({"civil_status_reference": "7/2026-KT"});
    let (status, deleted) = call(
        http.post(format!("{base}/permanent/{child}/deletion"))
            .json(&reference),
    )
    .await;
    assert_eq!(status, 200);
    assert!(deleted["deleted_at"].is_string(), "{deleted}");
    let (status, _) = call(
        http.post(format!("{base}/permanent/{child}/deletion"))
            .json(&reference),
    )
    .await;
    assert_eq!(status, 200, "the same registration repeated");
    let other = json!({"civil_status_reference": "9/2026-KT"});
    let (status, _) = call(
        http.post(format!("{base}/permanent/{child}/deletion/revert"))
            .json(&other),
    )
    .await;
    assert_eq!(
        status, 409,
        "only the deletion's own registration reverts it"
    );
    let (status, restored) = call(
        http.post(format!("{base}/permanent/{child}/deletion/revert"))
            .json(&reference),
    )
    .await;
    assert_eq!((status, &restored["deleted_at"]), (200, &Value::Null));
    let (status, late) = call(
        http.post(format!("{base}/permanent/{child}/deletion"))
            .json(&reference),
    )
    .await;
    assert_eq!(
        (status, late["error"].as_str()),
        (409, Some("deletion_reverted")),
        "a late repeat of the annulled deletion deletes nothing"
    );
    let (_, now) = call(http.get(format!("{base}/permanent/{child}"))).await;
    assert_eq!(now["deleted_at"], Value::Null);
    assert_eq!(now["household_id"], "HK48000000042");
}

#[tokio::test(flavor = "multi_thread")]
async fn social_insurance_issues_one_te_card_and_decides_refuses_pays_or_cancels_each_death_benefit_once()
 {
    let env = TestEnv::new("sandbox_bhxh").await;
    let base = start(&env)
        .await
        .replace("/civil-status/v1/births", "/social-insurance/v1");
    let http = reqwest::Client::new();
    let call = async |request: reqwest::RequestBuilder| -> (u16, Value) {
        let response = request.bearer_auth(TOKEN).send().await.expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    };
    let card = |key: &str, child: &str| {
        http.post(format!("{base}/child-cards"))
            .header("Idempotency-Key", key)
            .json(&json!({"personal_id": child, "birth_date": "2026-11-12", "province_code": "48"}))
    };
    let (status, first) = call(card("c-1", "048326000123")).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(
        (first["group"].as_str(), first["valid_to"].as_str()),
        (Some("TE"), Some("2032-11-11")),
        "valid until the day before 72 months of age"
    );
    let number = first["card_number"].as_str().expect("card");
    assert!(
        number.len() == 15 && number.starts_with("TE148"),
        "{number}"
    );
    assert_eq!(
        call(card("c-1", "048326000123")).await,
        (200, first.clone())
    );
    assert_eq!(
        call(card("c-2", "048326000123")).await.0,
        409,
        "one card per child"
    );
    let (status, reused) = call(card("c-1", "048326000999")).await;
    assert_eq!(
        (status, reused["error"].as_str()),
        (422, Some("idempotency_key"))
    );
    let (status, refused) = call(card("c-3", "12345")).await;
    assert_eq!(
        (status, refused["message"].as_str()),
        (422, Some("/personal_id must be a personal ID of 12 digits"))
    );

    // The agency decides from the contributions it holds, not from what the caller says.
    let contributed = |person: &str, before: i64, from: i64| {
        http.put(format!("{base}/contributions/{person}"))
            .json(&json!({
                "months_before_2014": before,
                "months_from_2014": from,
                "average_monthly_salary_vnd": 8_000_000
            }))
    };
    assert_eq!(call(contributed("048055000001", 60, 120)).await.0, 200);
    assert_eq!(call(contributed("048055000002", 0, 6)).await.0, 200);
    let decide = |key: &str, deceased: &str, benefit: &str| {
        http.post(format!("{base}/death-benefits"))
            .header("Idempotency-Key", key)
            .json(&json!({
                "benefit_type": benefit,
                "deceased_personal_id": deceased,
                "died_on": "2026-11-30",
                "beneficiary": {"personal_id": "048190000002", "full_name": "Lê Thị Hoa", "relationship": "SPOUSE",
                                "bank_code": "970436", "account_number": "0011000123456", "account_name": "LE THI HOA"}
            }))
    };
    let (status, funeral) = call(decide("d-1", "048055000001", "FUNERAL_ALLOWANCE")).await;
    assert_eq!(status, 201, "{funeral}");
    let (status, survivor) = call(decide("d-2", "048055000001", "SURVIVOR_LUMP_SUM")).await;
    assert_eq!(status, 201, "{survivor}");
    assert_eq!(
        (
            funeral["amount_vnd"].as_i64(),
            survivor["amount_vnd"].as_i64(),
            funeral["status"].as_str()
        ),
        (Some(23_400_000), Some(220_000_000), Some("DECIDED")),
        "amounts from the rules file and the history held"
    );
    assert_eq!(
        call(decide("d-1", "048055000001", "FUNERAL_ALLOWANCE")).await,
        (200, funeral.clone()),
        "a repeated request gets the first answer"
    );
    assert_eq!(
        call(decide("d-3", "048055000001", "FUNERAL_ALLOWANCE"))
            .await
            .0,
        409,
        "decided once per death and benefit"
    );
    let (status, short) = call(decide("d-4", "048055000002", "FUNERAL_ALLOWANCE")).await;
    assert_eq!(
        (
            status,
            short["status"].as_str(),
            short["reason_code"].as_str()
        ),
        (201, Some("REFUSED"), Some("CONTRIBUTION_TOO_SHORT")),
        "a refusal is a decision with its reason: {short}"
    );
    let (_, uninsured) = call(decide("d-5", "048055000003", "SURVIVOR_LUMP_SUM")).await;
    assert_eq!(uninsured["reason_code"], "NOT_INSURED");
    let (status, missing) = call(
        http.post(format!("{base}/death-benefits"))
            .header("Idempotency-Key", "d-6")
            .json(&json!({"benefit_type": "SURVIVOR_LUMP_SUM", "deceased_personal_id": "048055000001", "died_on": "2026-11-30",
                          "beneficiary": {"personal_id": "048190000002", "full_name": "Lê Thị Hoa"}})),
    )
    .await;
    assert_eq!(status, 422, "{missing}");
    assert!(
        missing["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("/beneficiary needs")),
        "{missing}"
    );

    let number = funeral["decision_number"].as_str().expect("number");
    let payment = |number: &str, amount: i64| {
        http.post(format!("{base}/death-benefits/{number}/payment"))
            .json(&json!({"amount_vnd": amount, "account_number": "0011000123456"}))
    };
    let (status, wrong) = call(payment(number, 23_400_001)).await;
    assert_eq!(
        (status, wrong["error"].as_str()),
        (422, Some("mismatch")),
        "never another amount than decided"
    );
    let (status, paid) = call(payment(number, 23_400_000)).await;
    assert_eq!((status, paid["status"].as_str()), (200, Some("PAID")));
    assert!(
        paid["payment_reference"].is_string() && paid["paid_at"].is_string(),
        "{paid}"
    );
    assert_eq!(
        call(payment(number, 23_400_000)).await,
        (200, paid.clone()),
        "paid once"
    );
    let (status, refused) =
        call(http.post(format!("{base}/death-benefits/{number}/cancellation"))).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (409, Some("already_paid"))
    );
    let refused_number = short["decision_number"].as_str().expect("number");
    assert_eq!(
        call(payment(refused_number, 0)).await.0,
        409,
        "a refused benefit is never paid"
    );

    let other = survivor["decision_number"].as_str().expect("number");
    let (status, cancelled) =
        call(http.post(format!("{base}/death-benefits/{other}/cancellation"))).await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("CANCELLED"))
    );
    assert_eq!(
        call(payment(other, 220_000_000)).await.0,
        409,
        "a cancelled decision is never paid"
    );
    assert_eq!(call(payment("QD-BHXH-99999999", 1)).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registered_birth_gets_its_health_insurance_card_through_two_connectors_and_the_engine() {
    let mut env = TestEnv::new("sandbox_chain").await;
    // The card is asked for by the procedure engine, once the birth is registered.
    env.config.procedures.enabled = true;
    env.grant_procedure_engine().await;
    let url = start(&env).await;
    install_repository_connector(&env, &url).await;
    install_repository_manifest(
        &env,
        "social-insurance-cards",
        &url.replace("/civil-status/v1/births", ""),
    );
    let system = "social-insurance-connector";
    env.token(system).await;
    env.grant(
        system,
        Direction::Subscribe,
        "birth.health-insurance-card-requested",
        "health-insurance",
    )
    .await;
    for event_type in ["birth.health-insurance-card-issued", "birth.step-failed"] {
        env.grant(system, Direction::Publish, event_type, "health-insurance")
            .await;
    }
    let family = env.token("family-portal").await;
    env.grant(
        "family-portal",
        Direction::Subscribe,
        "birth.health-insurance-card-issued",
        "health-insurance",
    )
    .await;
    let publisher = env.member("one-stop-48").await;
    let hub = env.start_hub().await;
    let (code, payload) = dossier();
    client(&hub, Some(&publisher))
        .await
        .publish(publish_request(&code, &payload))
        .await
        .expect("published");

    let mut cards = client(&hub, Some(&family)).await;
    let mut stream = cards
        .subscribe(lienthong::proto::SubscribeRequest {
            event_type: "birth.health-insurance-card-issued".into(),
            consumer_group: "family".into(),
            start_from: lienthong::proto::StartFrom::Earliest.into(),
            max_unacknowledged: 0,
            purpose: "health-insurance".into(),
            legal_basis: "Law on Health Insurance 25/2008/QH12".into(),
        })
        .await
        .expect("subscribed")
        .into_inner();
    let delivery = common::next(&mut stream).await;
    let card = lienthong::api::convert::struct_to_json(delivery.payload.expect("payload"));
    assert_eq!(card["dossier_code"], code.as_str());
    let child = card["personal_id"]
        .as_str()
        .expect("the child's ID")
        .to_owned();
    assert!(
        card["card_number"]
            .as_str()
            .is_some_and(|n| n.starts_with("TE148")),
        "{card}"
    );
    let db = env.pool.get().await.expect("connection");
    let registered: String = db
        .query_one(
            "SELECT personal_id FROM sandbox_civil_status.birth WHERE dossier_code = $1",
            &[&code],
        )
        .await
        .expect("registered")
        .get(0);
    assert_eq!(registered, child, "the card is the registered child's");
    let issued: i64 = db
        .query_one(
            "SELECT count(*) FROM sandbox_social_insurance.child_card WHERE personal_id = $1",
            &[&child],
        )
        .await
        .expect("cards")
        .get(0);
    assert_eq!(issued, 1);
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_death_of_a_living_citizen_is_registered_once_until_its_registration_is_annulled() {
    let env = TestEnv::new("sandbox_death").await;
    let base = start(&env).await.replace("/births", "");
    let http = reqwest::Client::new();
    let call = async |request: reqwest::RequestBuilder| -> (u16, Value) {
        let response = request.bearer_auth(TOKEN).send().await.expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    };
    let death_of = |person: &str, key: &str, dossier: &str| {
        http.post(format!("{base}/deaths"))
            .header("Idempotency-Key", key)
            .json(&json!({
                "dossier_code": dossier,
                "province_code": "48",
                "deceased": {"personal_id": person, "full_name": "Vũ Hữu Hải", "died_on": "2026-11-30"}
            }))
    };
    let death = |key: &str, dossier: &str| death_of("048055000001", key, dossier);
    // The population database must know the person, alive.
    let (status, unknown) = call(death("d-0", "G22.99.08-261201-0009")).await;
    assert_eq!(
        (status, unknown["error"].as_str()),
        (422, Some("unknown_citizen"))
    );
    let db = env.pool.get().await.expect("connection");
    db.execute(
        "INSERT INTO sandbox_population.citizen (personal_id, full_name, birth_date, sex, province_code, deceased_at)
         VALUES ('048055000001', 'Vũ Hữu Hải', '1955-03-02', 'MALE', '48', NULL),
                ('048055000002', 'Vũ Thị Lan', '1955-04-02', 'FEMALE', '48', '2026-11-01')",
        &[],
    )
    .await
    .expect("citizens");
    let (status, dead) = call(death_of("048055000002", "d-9", "G22.99.08-261201-0008")).await;
    assert_eq!(
        (status, dead["error"].as_str()),
        (409, Some("already_deceased")),
        "recorded as deceased already"
    );
    let (status, first) = call(death("d-1", "G22.99.08-261201-0001")).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["registration_book"], "01/2026-KT");
    assert_eq!(
        call(death("d-1", "G22.99.08-261201-0001")).await,
        (200, first.clone())
    );
    let (status, refused) = call(death("d-2", "G22.99.08-261201-0002")).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (409, Some("already_registered")),
        "a person's death is registered once"
    );
    let annul = |reason: &str| {
        http.post(format!("{base}/deaths/G22.99.08-261201-0001/annulment"))
            .json(&json!({"reason": reason}))
    };
    let (status, annulled) = call(annul("registered in error: the person is alive")).await;
    assert_eq!(status, 200, "{annulled}");
    assert_eq!(
        call(annul("registered in error: the person is alive")).await,
        (200, annulled.clone())
    );
    assert_eq!(call(annul("another reason")).await.0, 409);
    let (_, found) = call(http.get(format!("{base}/deaths/G22.99.08-261201-0001"))).await;
    assert_eq!(found["annulled_at"], annulled["annulled_at"]);
    let (status, _) = call(death("d-3", "G22.99.08-261201-0003")).await;
    assert_eq!(
        status, 201,
        "once annulled, the death can be registered again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_system_can_have_a_token_of_its_own() {
    let env = TestEnv::new("sandbox_tokens").await;
    let mut credentials = Credentials::shared(TOKEN, PAYGOV_SECRET);
    credentials.systems.insert(
        "population".to_owned(),
        "population-only-token-0123".to_owned(),
    );
    let base = start_as(&env, HashMap::new(), credentials)
        .await
        .replace("/civil-status/v1/births", "");
    let http = reqwest::Client::new();
    let read = |token: &str| {
        http.get(format!("{base}/population/v1/citizens/048326000123"))
            .bearer_auth(token)
            .header("X-Caller", "G22.99.08")
            .header("X-Purpose", "civil-registration")
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(read(TOKEN).send().await.expect("answered")),
        401,
        "the shared token no longer opens the population database"
    );
    assert_eq!(
        status(
            read("population-only-token-0123")
                .send()
                .await
                .expect("answered")
        ),
        404,
        "its own token does (no such citizen)"
    );
    let births = http
        .get(format!("{base}/civil-status/v1/births/x"))
        .bearer_auth("population-only-token-0123")
        .send()
        .await
        .expect("answered");
    assert_eq!(status(births), 401, "and only the population database");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_death_asked_of_the_population_and_residence_databases_is_recorded_in_both() {
    let env = TestEnv::new("sandbox_deaths").await;
    let url = start(&env).await;
    let base = url.replace("/civil-status/v1/births", "");
    // The procedure engine's commands, published here by a stand-in so each connector is
    // tested on its own (tests/procedures.rs runs them with the engine).
    let connectors = [
        (
            "population-deaths",
            "population-connector",
            "identity-management",
            "death.population-status-update-requested",
            "death.population-status-updated",
        ),
        (
            "residence-deaths",
            "residence-connector",
            "residence-registration",
            "death.residence-deletion-requested",
            "death.residence-deleted",
        ),
    ];
    for (manifest, system, purpose, command, reply) in connectors {
        install_repository_manifest(&env, manifest, &base);
        env.token(system).await;
        env.grant(system, Direction::Subscribe, command, purpose)
            .await;
        for published in [reply, "death.step-failed"] {
            env.grant(system, Direction::Publish, published, purpose)
                .await;
        }
    }
    let engine = env.token("engine-stand-in").await;
    for (_, _, _, command, _) in connectors {
        env.grant("engine-stand-in", Direction::Publish, command, PURPOSE)
            .await;
    }
    let registry = env.token("identity-registry").await;
    for (_, _, purpose, _, reply) in connectors {
        env.grant("identity-registry", Direction::Subscribe, reply, purpose)
            .await;
    }
    env.grant(
        "identity-registry",
        Direction::Subscribe,
        "death.step-failed",
        PURPOSE,
    )
    .await;

    // A citizen of the seeded population, living in a household of Đà Nẵng.
    let reference = env.config.schemas.dir.join("reference");
    lienthong::sandbox::seed::seed(&env.pool, &reference, "48", 50, 7, |_| {})
        .await
        .expect("seeded");
    let db = env.pool.get().await.expect("connection");
    let (id, commune): (String, String) = {
        let row = db
            .query_one(
                "SELECT personal_id, commune_code FROM sandbox_population.citizen
                 WHERE relationship <> 'head' ORDER BY personal_id LIMIT 1",
                &[],
            )
            .await
            .expect("a seeded citizen");
        (row.get(0), row.get(1))
    };

    let hub = env.start_hub().await;
    let death = |code: &str, id: &str| {
        json!({
            "dossier_code": code,
            "requested_at": "2026-11-17T14:00:05+07:00",
            "due_at": null,
            "deceased": {"personal_id": id, "full_name": "Phạm Văn Hùng", "death_date": "2026-11-15"},
            "registration": {
                "registration_number": "188",
                "registration_book": "01/2026",
                "registered_at": "2026-11-17T14:00:00+07:00",
                "registering_agency_code": "G22.99.08",
                "e_extract_reference": "TLKT-48-2026-0018806"
            }
        })
    };
    let mut engine = client(&hub, Some(&engine)).await;
    let mut register = async |payload: Value, code: &str| {
        for (_, _, _, command, _) in connectors {
            engine
                .publish(lienthong::proto::PublishRequest {
                    event_type: command.into(),
                    correlation_id: code.into(),
                    purpose: PURPOSE.into(),
                    legal_basis: "Decree 63/2024/ND-CP".into(),
                    payload: Some(lienthong::api::convert::json_to_struct(payload.clone())),
                    ..Default::default()
                })
                .await
                .expect("published");
        }
    };
    let (code, _) = dossier();
    register(death(&code, &id), &code).await;

    let mut registry = client(&hub, Some(&registry)).await;
    let mut subscribe = async |event_type: &str, purpose: &str| {
        registry
            .subscribe(lienthong::proto::SubscribeRequest {
                event_type: event_type.into(),
                consumer_group: "registry".into(),
                start_from: lienthong::proto::StartFrom::Earliest.into(),
                max_unacknowledged: 0,
                purpose: purpose.into(),
                legal_basis: "Law on Civil Status 60/2014/QH13".into(),
            })
            .await
            .expect("subscribed")
            .into_inner()
    };
    let mut updates = subscribe("death.population-status-updated", "identity-management").await;
    let mut deletions = subscribe("death.residence-deleted", "residence-registration").await;
    let mut failures = subscribe("death.step-failed", PURPOSE).await;
    let payload = |delivery: lienthong::proto::Delivery| {
        lienthong::api::convert::struct_to_json(delivery.payload.expect("payload"))
    };
    let update = payload(common::next(&mut updates).await);
    assert_eq!(
        (
            update["personal_id"].as_str(),
            update["status"].as_str(),
            update["effective_date"].as_str()
        ),
        (Some(id.as_str()), Some("DECEASED"), Some("2026-11-15"))
    );
    let deleted = payload(common::next(&mut deletions).await);
    assert_eq!(
        (
            deleted["personal_id"].as_str(),
            deleted["province_code"].as_str(),
            deleted["commune_code"].as_str()
        ),
        (Some(id.as_str()), Some("48"), Some(commune.as_str())),
        "the residence the population database holds: {deleted}"
    );
    let recorded: (Option<String>, Option<String>, Option<String>) = {
        let row = db
            .query_one(
                "SELECT c.deceased_at::text, c.death_reference, r.deletion_reference
                 FROM sandbox_population.citizen c
                 JOIN sandbox_residence.permanent r USING (personal_id)
                 WHERE personal_id = $1",
                &[&id],
            )
            .await
            .expect("citizen");
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!(
        recorded,
        (
            Some("2026-11-15".to_owned()),
            Some("G22.99.08/188".to_owned()),
            Some("G22.99.08/188".to_owned())
        ),
        "recorded at the deceased's own paths, with the registration (agency and number)"
    );

    // A personal ID neither database knows: both steps fail, and say so.
    let (unknown_code, _) = dossier();
    register(death(&unknown_code, "048099999999"), &unknown_code).await;
    let mut steps = Vec::new();
    for _ in 0..2 {
        let failed = payload(common::next(&mut failures).await);
        assert_eq!(failed["dossier_code"], unknown_code.as_str());
        assert_eq!(failed["error_code"], "HTTPSTATUS404", "{failed}");
        steps.push(failed["step"].as_str().expect("step").to_owned());
    }
    steps.sort();
    assert_eq!(steps, ["POPULATION_STATUS", "RESIDENCE_DELETION"]);
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_portal_follows_a_dossier_through_its_connectors_even_when_progress_comes_first() {
    let env = TestEnv::new("sandbox_portal_connectors").await;
    let url = start(&env).await;
    let base = url.replace("/civil-status/v1/births", "");
    for manifest in ["portal-dossiers", "portal-progress"] {
        install_repository_manifest(&env, manifest, &base);
    }
    env.token("portal-connector").await;
    for source in [
        "birth.dossier-submitted",
        "death.dossier-submitted",
        "dossier.status-changed",
    ] {
        env.grant(
            "portal-connector",
            Direction::Subscribe,
            source,
            "dossier-tracking",
        )
        .await;
    }
    let onestop = env.token("onestop-48").await;
    for published in [EVENT_TYPE, "dossier.status-changed"] {
        env.grant("onestop-48", Direction::Publish, published, PURPOSE)
            .await;
    }
    let hub = env.start_hub().await;
    let mut publisher = client(&hub, Some(&onestop)).await;
    let (code, submitted) = dossier();
    let status_changed = |from: i64, to: i64| lienthong::proto::PublishRequest {
        event_type: "dossier.status-changed".into(),
        correlation_id: code.clone(),
        purpose: PURPOSE.into(),
        legal_basis: "Decree 63/2024/ND-CP".into(),
        payload: Some(lienthong::api::convert::json_to_struct(json!({
            "dossier_code": code,
            "procedure_code": "1.001193",
            "from_status": from,
            "to_status": to,
            "changed_at": "2026-11-20T09:25:00+07:00",
            "handler": "Lê Thị Mỹ Duyên",
            "department": "Bộ phận Một cửa UBND phường Hải Châu",
            "note": "Bà Nguyễn Thị Hoa nộp đủ giấy tờ",
            "due_at": null
        }))),
        ..Default::default()
    };
    // The acceptance is published before the dossier: the portal answers 404 until the dossier
    // is synced, and the progress connector waits for it.
    publisher
        .publish(status_changed(1, 2))
        .await
        .expect("published");
    tokio::time::sleep(Duration::from_secs(1)).await;
    publisher
        .publish(publish_request(&code, &submitted))
        .await
        .expect("published");
    let http = reqwest::Client::new();
    let timeline = async || -> Result<Value, String> {
        let response = http
            .get(format!("{base}/portal/v1/dossiers/{code}"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        response.json::<Value>().await.map_err(|e| e.to_string())
    };
    let statuses = |view: &Value| -> Vec<i64> {
        view["timeline"]
            .as_array()
            .map(|t| t.iter().filter_map(|s| s["status"].as_i64()).collect())
            .unwrap_or_default()
    };
    common::eventually("the dossier synced, then accepted", async || {
        let view = timeline().await?;
        if statuses(&view) == [1, 2] {
            Ok(())
        } else {
            Err(view.to_string())
        }
    })
    .await;
    publisher
        .publish(status_changed(2, 4))
        .await
        .expect("published");
    let view = common::eventually("processing shown", async || {
        let view = timeline().await?;
        if statuses(&view) == [1, 2, 4] {
            Ok(view)
        } else {
            Err(view.to_string())
        }
    })
    .await;
    assert!(
        !view.to_string().contains("Nguyễn Thị Hoa"),
        "the official's note, naming a citizen, stays home: {view}"
    );
    assert_eq!(
        view["procedure_code"], submitted["procedure_code"],
        "synced from the dossier: {view}"
    );
    hub.shutdown().await.expect("clean shutdown");
}

/// The civil-status officer verifies a late birth without its certificate before it is
/// registered: the registration answers VERIFYING until the officer concludes; told
/// NOT_CONFIRMED, the birth is not registered, the verification is listed for the hub with
/// its reason, and a second decision is refused. A late birth with its certificate is
/// registered at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_birth_waits_for_the_officer_who_may_refuse_it() {
    let env = TestEnv::new("sandbox_verify").await;
    let url = start(&env).await;
    let verifications = url.replace("/births", "/verifications");
    let late = |code: &str, certificate: Value| {
        let mut body = birth(code);
        body["received_at"] = json!("2026-11-20T09:15:00+07:00");
        body["child"]["birth_date"] = json!("2026-08-01");
        body["birth_certificate_no"] = certificate;
        body
    };
    let code = "G22.99.08-261120-7001";
    let (status, waiting) = register(&url, "late-1", &late(code, Value::Null), TOKEN).await;
    assert_eq!(
        (status, waiting["status"].as_str()),
        (202, Some("VERIFYING")),
        "{waiting}"
    );
    assert!(waiting["verification_due_at"].is_string());
    let decide = async |decision: Value| {
        let response = reqwest::Client::new()
            .post(format!("{verifications}/{code}"))
            .bearer_auth(TOKEN)
            .json(&decision)
            .send()
            .await
            .expect("the sandbox answers");
        response.status().as_u16()
    };
    assert_eq!(
        decide(json!({"outcome": "NOT_CONFIRMED", "reason_code": "UNKNOWN"})).await,
        422,
        "a reason the hub's event does not know"
    );
    assert_eq!(
        decide(json!({"outcome": "NOT_CONFIRMED", "reason_code": "WITNESSES_NOT_CONFIRMED"})).await,
        200
    );
    assert_eq!(
        decide(json!({"outcome": "CONFIRMED"})).await,
        409,
        "concluded once"
    );
    let (status, refused) = register(&url, "late-1", &late(code, Value::Null), TOKEN).await;
    assert_eq!(
        (
            status,
            refused["status"].as_str(),
            refused["reason_code"].as_str()
        ),
        (200, Some("NOT_REGISTERED"), Some("WITNESSES_NOT_CONFIRMED")),
        "{refused}"
    );
    let listed: Value = reqwest::Client::new()
        .get(format!("{verifications}?after=0"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("the sandbox answers")
        .json()
        .await
        .expect("a JSON answer");
    let mine: Vec<&Value> = listed["verifications"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|v| v["dossier_code"] == code)
        .collect();
    assert_eq!(mine.len(), 1, "{listed}");
    assert_eq!(
        (mine[0]["outcome"].as_str(), mine[0]["reason_code"].as_str()),
        (Some("NOT_CONFIRMED"), Some("WITNESSES_NOT_CONFIRMED"))
    );
    assert_eq!(listed["next"], mine[0]["id"], "the cursor after the page");
    let (status, registered) = register(
        &url,
        "late-2",
        &late("G22.99.08-261120-7002", json!("GCS-2026-000001")),
        TOKEN,
    )
    .await;
    assert_eq!(status, 201, "with its certificate, at once: {registered}");
}
