//! The Confluent-compatible schema registry: Confluent's own Python client decodes what the hub
//! publishes, the REST API answers as Confluent's does, compatibility levels are enforced, and
//! ids are stable across restarts.

mod common;

use common::*;
use serde_json::{Value, json};

const SR_JSON: &str = "application/vnd.schemaregistry.v1+json";

struct Registry {
    base: String,
    http: reqwest::Client,
}

impl Registry {
    fn new(hub: &lienthong::app::Hub) -> Self {
        Self {
            base: format!("http://{}", hub.http_addr),
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", SR_JSON)
            .body(body.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }
}

#[tokio::test]
async fn confluent_python_client_decodes_what_the_hub_published() {
    let python = std::env::var("LIENTHONG_TEST_PYTHON").expect(
        "LIENTHONG_TEST_PYTHON names a Python with confluent-kafka: run deploy/local/test.sh",
    );
    let env = TestEnv::new("python").await;
    let hub = env.start_hub().await;
    let mut one_stop = client(&hub, Some(&env.member("danang-onestop").await)).await;
    let (code, payload) = dossier();
    let accepted = one_stop
        .publish(publish_request(&code, &payload))
        .await
        .expect("accepted")
        .into_inner();

    let output = tokio::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/decode_with_confluent.py"
        ))
        .args(["--registry", &format!("http://{}", hub.http_addr)])
        .args(["--bootstrap", &env.config.kafka.bootstrap_servers])
        .args(["--topic", &accepted.topic])
        .args(["--partition", &accepted.partition.to_string()])
        .args(["--offset", &accepted.offset.to_string()])
        .output()
        .await
        .expect("python runs");
    assert!(
        output.status.success(),
        "the Confluent client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decoded: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(decoded["key"], code);
    assert_eq!(decoded["headers"]["ce_type"], EVENT_TYPE);
    assert_eq!(decoded["headers"]["ce_id"], accepted.event_id);
    assert_eq!(decoded["value"]["dossier_code"], code);
    assert_eq!(decoded["value"]["child"]["full_name"], "Nguyễn Minh An");
    assert_eq!(decoded["value"]["child"]["sex"], "FEMALE");
    assert_eq!(decoded["value"]["child"]["birth_date"], "2026-11-12");
    assert_eq!(
        decoded["value"]["mother"]["personal_id"],
        payload["mother"]["personal_id"]
    );
    assert_eq!(
        decoded["value"]["requested_services"],
        payload["requested_services"]
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_rest_api_answers_like_confluent_and_enforces_compatibility() {
    let env = TestEnv::new("rest").await;
    let hub = env.start_hub().await;
    let token = env.operator_token("schema-admin").await;
    let member = env.token("danang-onestop").await;
    let registry = Registry::new(&hub);
    let subject = format!(
        "{}lienthong.birth-vn.lienthong.birth.BirthDossierSubmitted",
        env.config.kafka.topic_prefix
    );

    let (status, subjects) = registry.get("/subjects").await;
    assert_eq!(status, 200);
    assert!(
        subjects.as_array().expect("list").contains(&json!(subject)),
        "{subjects}"
    );
    assert_eq!(
        registry.get(&format!("/subjects/{subject}/versions")).await,
        (200, json!([1]))
    );
    let (status, latest) = registry
        .get(&format!("/subjects/{subject}/versions/latest"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (latest["subject"].as_str(), latest["version"].as_i64()),
        (Some(subject.as_str()), Some(1))
    );
    let id = latest["id"].as_i64().expect("id");
    let schema = latest["schema"].as_str().expect("schema").to_owned();
    let (status, by_id) = registry.get(&format!("/schemas/ids/{id}")).await;
    assert_eq!(
        (status, by_id["schema"].as_str()),
        (200, Some(schema.as_str()))
    );
    assert_eq!(
        registry.get(&format!("/schemas/ids/{id}/versions")).await,
        (200, json!([{"subject": subject, "version": 1}]))
    );

    // Lookup by content, whatever the formatting.
    let reformatted = serde_json::from_str::<Value>(&schema)
        .expect("schema JSON")
        .to_string();
    let (status, found) = registry
        .send(
            reqwest::Method::POST,
            &format!("/subjects/{subject}"),
            None,
            json!({"schema": reformatted}),
        )
        .await;
    assert_eq!(
        (status, found["id"].as_i64(), found["version"].as_i64()),
        (200, Some(id), Some(1))
    );

    // Errors have Confluent's shape and codes.
    assert_eq!(
        registry.get("/subjects/nope/versions").await,
        (
            404,
            json!({"error_code": 40401, "message": "subject \"nope\" not found"})
        )
    );
    assert_eq!(
        registry.get("/schemas/ids/999999").await.1["error_code"],
        40403
    );
    assert_eq!(
        registry.get("/schemas/ids/abc").await,
        (
            404,
            json!({"error_code": 40403, "message": "schema not found"})
        )
    );
    assert_eq!(
        registry
            .get(&format!("/subjects/{subject}/versions/0"))
            .await
            .1["error_code"],
        42202
    );

    // A new required field without a default breaks BACKWARD compatibility.
    let mut v2: Value = serde_json::from_str(&schema).expect("schema JSON");
    v2["fields"]
        .as_array_mut()
        .expect("fields")
        .push(json!({"name": "channel", "type": "string"}));
    let v2_body = json!({"schema": v2.to_string()});

    // The hub's own subjects are defined by schemas/ in git: read-only here, even for operators.
    let (status, read_only) = registry
        .send(
            reqwest::Method::POST,
            &format!("/subjects/{subject}/versions"),
            Some(&token),
            json!({"schema": schema.clone()}),
        )
        .await;
    assert_eq!(
        (status, read_only["error_code"].as_i64()),
        (422, Some(42205)),
        "{read_only}"
    );
    assert!(
        read_only["message"]
            .as_str()
            .is_some_and(|m| m.contains("schemas/ in git")),
        "{read_only}"
    );
    let (status, level) = registry
        .send(
            reqwest::Method::PUT,
            &format!("/config/{subject}"),
            Some(&token),
            json!({"compatibility": "NONE"}),
        )
        .await;
    assert_eq!((status, level["error_code"].as_i64()), (422, Some(42205)));

    // A member's own subject is writable: it starts with the same schema (and so the same id).
    let own = format!(
        "{}danang-onestop.dossiers-value",
        env.config.kafka.topic_prefix
    );
    let register = format!("/subjects/{own}/versions");
    let (status, first_own) = registry
        .send(
            reqwest::Method::POST,
            &register,
            Some(&token),
            json!({"schema": schema.clone()}),
        )
        .await;
    assert_eq!((status, first_own["id"].as_i64()), (200, Some(id)));
    let mut both = vec![own.clone(), subject.clone()];
    both.sort();
    assert_eq!(
        registry.get(&format!("/schemas/ids/{id}/subjects")).await,
        (200, json!(both)),
        "one schema, two subjects"
    );
    assert_eq!(
        registry.get("/mode").await,
        (200, json!({"mode": "READWRITE"}))
    );
    let (status, check) = registry
        .send(
            reqwest::Method::POST,
            &format!("/compatibility/subjects/{own}/versions/latest?verbose=true"),
            None,
            v2_body.clone(),
        )
        .await;
    assert_eq!(
        (status, check["is_compatible"].as_bool()),
        (200, Some(false)),
        "{check}"
    );
    assert!(
        check["messages"].as_array().is_some_and(|m| !m.is_empty()),
        "verbose answers say why: {check}"
    );
    let (status, against_all) = registry
        .send(
            reqwest::Method::POST,
            &format!("/compatibility/subjects/{own}/versions"),
            None,
            v2_body.clone(),
        )
        .await;
    assert_eq!(
        (status, against_all),
        (200, json!({"is_compatible": false}))
    );
    assert_eq!(
        registry
            .send(reqwest::Method::POST, &register, None, v2_body.clone())
            .await
            .0,
        401
    );
    let (status, denied) = registry
        .send(
            reqwest::Method::POST,
            &register,
            Some(&member),
            v2_body.clone(),
        )
        .await;
    assert_eq!(
        (status, denied["error_code"].as_i64()),
        (403, Some(40301)),
        "{denied}"
    );
    let (status, refused) = registry
        .send(
            reqwest::Method::POST,
            &register,
            Some(&token),
            v2_body.clone(),
        )
        .await;
    assert_eq!(
        (status, refused["error_code"].as_i64()),
        (409, Some(409)),
        "{refused}"
    );

    // With a default it is compatible; registering twice gives the same id.
    let fields = v2["fields"].as_array_mut().expect("fields");
    let added = fields.len() - 1;
    fields[added]["default"] = json!("PORTAL");
    let compatible = json!({"schema": v2.to_string()});
    let (status, first) = registry
        .send(
            reqwest::Method::POST,
            &register,
            Some(&token),
            compatible.clone(),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    let (_, again) = registry
        .send(reqwest::Method::POST, &register, Some(&token), compatible)
        .await;
    assert_eq!(first, again);
    assert_ne!(first["id"].as_i64(), Some(id));
    assert_eq!(
        registry.get(&format!("/subjects/{own}/versions")).await.1,
        json!([1, 2])
    );

    // Compatibility levels: global default, per subject, and NONE lets anything in.
    assert_eq!(
        registry.get("/config").await,
        (200, json!({"compatibilityLevel": "BACKWARD"}))
    );
    assert_eq!(
        registry.get(&format!("/config/{own}")).await.1["error_code"],
        40408
    );
    let (status, set) = registry
        .send(
            reqwest::Method::PUT,
            &format!("/config/{own}"),
            Some(&token),
            json!({"compatibility": "NONE"}),
        )
        .await;
    assert_eq!((status, set), (200, json!({"compatibility": "NONE"})));
    let (status, bad_level) = registry
        .send(
            reqwest::Method::PUT,
            "/config",
            Some(&token),
            json!({"compatibility": "SIDEWAYS"}),
        )
        .await;
    assert_eq!(
        (status, bad_level["error_code"].as_i64()),
        (422, Some(42203))
    );
    let (status, _) = registry
        .send(reqwest::Method::POST, &register, Some(&token), v2_body)
        .await;
    assert_eq!(status, 200, "NONE accepts an incompatible schema");
    hub.shutdown().await.expect("clean shutdown");

    // After a restart, the catalogue's schema keeps its id and version.
    let hub = env.start_hub().await;
    let registry = Registry::new(&hub);
    let (_, v1) = registry
        .get(&format!("/subjects/{subject}/versions/1"))
        .await;
    assert_eq!(v1["id"].as_i64(), Some(id));
    assert_eq!(
        registry.get(&format!("/subjects/{own}/versions")).await.1,
        json!([1, 2, 3])
    );
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_member_subject_is_deleted_softly_then_for_good_and_the_hubs_own_never() {
    let env = TestEnv::new("rest_delete").await;
    let hub = env.start_hub().await;
    let token = env.operator_token("schema-admin").await;
    let registry = Registry::new(&hub);
    let subject = format!("{}danang.receipts-value", env.config.kafka.topic_prefix);
    let record = |fields: Value| json!({"schema": json!({"type": "record", "name": "Receipt", "fields": fields}).to_string()});
    let v1 = record(json!([{"name": "number", "type": "string"}]));
    let v2 = record(json!([
        {"name": "number", "type": "string"},
        {"name": "amount", "type": "long", "default": 0}
    ]));
    let post = reqwest::Method::POST;
    let delete = reqwest::Method::DELETE;
    let versions_path = format!("/subjects/{subject}/versions");
    let (status, first) = registry
        .send(post.clone(), &versions_path, Some(&token), v1.clone())
        .await;
    assert_eq!(status, 200, "{first}");
    registry
        .send(post.clone(), &versions_path, Some(&token), v2.clone())
        .await;
    assert_eq!(registry.get(&versions_path).await, (200, json!([1, 2])));

    // Deleting needs an operator, as registering does.
    let (status, _) = registry
        .send(
            delete.clone(),
            &format!("{versions_path}/2"),
            None,
            json!({}),
        )
        .await;
    assert_eq!(status, 401);
    // A version deleted softly leaves the listing, stays readable with ?deleted=true, and its
    // schema id still resolves (records written with it must stay readable).
    assert_eq!(
        registry
            .send(
                delete.clone(),
                &format!("{versions_path}/2"),
                Some(&token),
                json!({})
            )
            .await,
        (200, json!(2))
    );
    assert_eq!(registry.get(&versions_path).await, (200, json!([1])));
    assert_eq!(
        registry.get(&format!("{versions_path}?deleted=true")).await,
        (200, json!([1, 2]))
    );
    let (status, hidden) = registry
        .get(&format!("{versions_path}/2?deleted=true"))
        .await;
    assert_eq!(status, 200, "{hidden}");
    assert_eq!(
        registry
            .get(&format!("/schemas/ids/{}", hidden["id"]))
            .await
            .0,
        200
    );
    // Twice: Confluent's 40406; for good only after a soft delete (40407 otherwise).
    assert_eq!(
        registry
            .send(
                delete.clone(),
                &format!("{versions_path}/2"),
                Some(&token),
                json!({})
            )
            .await
            .1["error_code"],
        40406
    );
    assert_eq!(
        registry
            .send(
                delete.clone(),
                &format!("{versions_path}/1?permanent=true"),
                Some(&token),
                json!({})
            )
            .await
            .1["error_code"],
        40407
    );
    assert_eq!(
        registry
            .send(
                delete.clone(),
                &format!("{versions_path}/2?permanent=true"),
                Some(&token),
                json!({})
            )
            .await,
        (200, json!(2))
    );
    assert_eq!(
        registry.get(&format!("{versions_path}?deleted=true")).await,
        (200, json!([1]))
    );
    // A number a soft-deleted version holds is not given again; one deleted for good is free.
    registry
        .send(
            delete.clone(),
            &format!("{versions_path}/1"),
            Some(&token),
            json!({}),
        )
        .await;
    let (status, again) = registry
        .send(post.clone(), &versions_path, Some(&token), v2.clone())
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(registry.get(&versions_path).await, (200, json!([2])));

    // The whole subject: softly (then listed only with ?deleted=true), then for good.
    let subject_path = format!("/subjects/{subject}");
    assert_eq!(
        registry
            .send(
                delete.clone(),
                &format!("{subject_path}?permanent=true"),
                Some(&token),
                json!({})
            )
            .await
            .1["error_code"],
        40405
    );
    assert_eq!(
        registry
            .send(delete.clone(), &subject_path, Some(&token), json!({}))
            .await,
        (200, json!([2]))
    );
    let (_, live) = registry.get("/subjects").await;
    assert!(!live.as_array().expect("list").contains(&json!(subject)));
    let (_, all) = registry.get("/subjects?deleted=true").await;
    assert!(all.as_array().expect("list").contains(&json!(subject)));
    assert_eq!(
        registry
            .send(delete.clone(), &subject_path, Some(&token), json!({}))
            .await
            .1["error_code"],
        40404
    );
    assert_eq!(
        registry
            .send(
                delete.clone(),
                &format!("{subject_path}?permanent=true"),
                Some(&token),
                json!({})
            )
            .await,
        (200, json!([1, 2]))
    );
    assert_eq!(registry.get(&versions_path).await.1["error_code"], 40401);

    // The hub's own subjects are defined by schemas/ in git: never deleted here.
    let own = format!(
        "/subjects/{}lienthong.birth-vn.lienthong.birth.BirthDossierSubmitted",
        env.config.kafka.topic_prefix
    );
    let (status, refused) = registry
        .send(delete.clone(), &own, Some(&token), json!({}))
        .await;
    assert_eq!((status, refused["error_code"].as_i64()), (422, Some(42205)));
    hub.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_member_registers_json_schemas_checked_against_their_draft() {
    let env = TestEnv::new("rest_json").await;
    let hub = env.start_hub().await;
    let token = env.operator_token("schema-admin").await;
    let registry = Registry::new(&hub);
    let subject = format!("{}danang.appointments-value", env.config.kafka.topic_prefix);
    let versions_path = format!("/subjects/{subject}/versions");
    let post = reqwest::Method::POST;
    let json_schema = |schema: Value| json!({"schemaType": "JSON", "schema": schema.to_string()});
    let v1 = json_schema(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"dossier_code": {"type": "string"}},
        "required": ["dossier_code"]
    }));
    assert_eq!(
        registry.get("/schemas/types").await,
        (200, json!(["AVRO", "JSON"]))
    );
    let (status, registered) = registry
        .send(post.clone(), &versions_path, Some(&token), v1.clone())
        .await;
    assert_eq!(status, 200, "{registered}");
    let id = registered["id"].as_i64().expect("id");
    let (status, latest) = registry.get(&format!("{versions_path}/latest")).await;
    assert_eq!((status, latest["schemaType"].as_str()), (200, Some("JSON")));
    assert_eq!(
        registry.get(&format!("/schemas/ids/{id}")).await.1["schemaType"],
        "JSON"
    );
    let (status, found) = registry
        .send(
            post.clone(),
            &format!("/subjects/{subject}"),
            None,
            v1.clone(),
        )
        .await;
    assert_eq!(
        (status, found["id"].as_i64()),
        (200, Some(id)),
        "lookup by content"
    );
    // The same text as Avro is another schema: not found under this subject.
    let (status, _) = registry
        .send(
            post.clone(),
            &format!("/subjects/{subject}"),
            None,
            json!({"schema": v1["schema"]}),
        )
        .await;
    assert_ne!(status, 200);

    // Not a JSON Schema, or a draft the hub would have to fetch: 42201, naming the problem.
    let (status, refused) = registry
        .send(
            post.clone(),
            &versions_path,
            Some(&token),
            json_schema(json!({"type": 12})),
        )
        .await;
    assert_eq!(
        (status, refused["error_code"].as_i64()),
        (422, Some(42201)),
        "{refused}"
    );
    let (status, refused) = registry
        .send(
            post.clone(),
            &versions_path,
            Some(&token),
            json_schema(json!({"$schema": "http://127.0.0.1:9/meta", "type": "object"})),
        )
        .await;
    assert_eq!((status, refused["error_code"].as_i64()), (422, Some(42201)));
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("draft")),
        "{refused}"
    );

    // A second version: its compatibility is not checked, so BACKWARD refuses it plainly...
    let v2 =
        json_schema(json!({"type": "object", "properties": {"dossier_code": {"type": "string"}}}));
    let (status, refused) = registry
        .send(post.clone(), &versions_path, Some(&token), v2.clone())
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("NONE")),
        "{refused}"
    );
    // ...and NONE, set on purpose, lets it in. An Avro schema never follows JSON ones.
    let (status, _) = registry
        .send(
            reqwest::Method::PUT,
            &format!("/config/{subject}"),
            Some(&token),
            json!({"compatibility": "NONE"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = registry
        .send(post.clone(), &versions_path, Some(&token), v2)
        .await;
    assert_eq!(status, 200);
    let avro = json!({"schema": json!({"type": "record", "name": "A", "fields": []}).to_string()});
    let (status, refused) = registry
        .send(post.clone(), &versions_path, Some(&token), avro)
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(registry.get(&versions_path).await, (200, json!([1, 2])));
    hub.shutdown().await.expect("clean shutdown");
}
