//! The civil-status sandbox against real PostgreSQL: authenticated, idempotent per key, never
//! two registrations (two personal ID numbers) for one dossier, and clear refusals.

mod common;

use common::TestEnv;
use serde_json::{Value, json};

const TOKEN: &str = "sandbox-test-token-0123456789";

async fn start(env: &TestEnv) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let pool = env.pool.clone();
    tokio::spawn(lienthong::sandbox::serve(
        pool,
        addr,
        TOKEN.to_owned(),
        std::future::pending(),
    ));
    let url = format!("http://{addr}/civil-status/v1/births");
    for _ in 0..100 {
        if reqwest::Client::new()
            .get(format!("{url}/x"))
            .send()
            .await
            .is_ok()
        {
            return url;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the sandbox did not start");
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
