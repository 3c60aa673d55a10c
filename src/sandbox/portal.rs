//! The national public service portal stand-in (Cổng Dịch vụ công quốc gia): provinces sync
//! their dossiers and report progress with the 1–10 status codes; the portal refuses a
//! transition its rules do not allow (`schemas/reference/dossier-status-transitions.csv`), and
//! anyone may look a dossier's timeline up by its code, as citizens do.
//!
//! - `POST /portal/v1/dossiers`: sync a dossier (once per code; a repeat gets the first answer);
//! - `POST /portal/v1/dossiers/{code}/progress`: a status update (`Idempotency-Key` optional:
//!   a repeat with the same key gets the first answer);
//! - `GET /portal/v1/dossiers/{code}`: the dossier and its timeline, without a token.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use deadpool_postgres::Pool;
use serde_json::{Value, json};

use super::answer::{self, Answer, authorised, problem, text};

/// The statuses and the allowed transitions, built into the binary from the reference data.
const STATUSES: &str = include_str!("../../schemas/reference/dossier-statuses.csv");
const TRANSITIONS: &str = include_str!("../../schemas/reference/dossier-status-transitions.csv");

/// A status's names in Vietnamese and English, and whether nothing may follow it.
struct Status {
    vi: String,
    en: String,
}

struct Rules {
    statuses: HashMap<i32, Status>,
    allowed: HashSet<(i32, i32)>,
}

impl Rules {
    fn load() -> Result<Self, String> {
        let mut statuses = HashMap::new();
        for record in csv::Reader::from_reader(STATUSES.as_bytes()).records() {
            let record = record.map_err(|e| format!("dossier-statuses.csv: {e}"))?;
            let code = record
                .get(0)
                .and_then(|c| c.parse().ok())
                .ok_or("dossier-statuses.csv: a code is not a number")?;
            statuses.insert(
                code,
                Status {
                    vi: record.get(1).unwrap_or_default().to_owned(),
                    en: record.get(2).unwrap_or_default().to_owned(),
                },
            );
        }
        let mut allowed = HashSet::new();
        for record in csv::Reader::from_reader(TRANSITIONS.as_bytes()).records() {
            let record = record.map_err(|e| format!("dossier-status-transitions.csv: {e}"))?;
            let code = |i| record.get(i).and_then(|c: &str| c.parse::<i32>().ok());
            match (code(0), code(1)) {
                (Some(from), Some(to)) => allowed.insert((from, to)),
                _ => {
                    return Err("dossier-status-transitions.csv: a code is not a number".to_owned());
                }
            };
        }
        Ok(Self { statuses, allowed })
    }

    fn name(&self, status: i32) -> (String, String) {
        self.statuses
            .get(&status)
            .map_or((String::new(), String::new()), |s| {
                (s.vi.clone(), s.en.clone())
            })
    }
}

#[derive(Clone)]
struct Sandbox {
    pool: Pool,
    token: String,
    rules: Arc<Rules>,
}

pub fn routes(pool: Pool, token: String) -> Result<Router, String> {
    let rules = Arc::new(Rules::load()?);
    Ok(Router::new()
        .route("/portal/v1/dossiers", post(sync))
        .route("/portal/v1/dossiers/{code}", get(timeline))
        .route("/portal/v1/dossiers/{code}/progress", post(progress))
        .with_state(Sandbox { pool, token, rules }))
}

fn internal(error: impl std::fmt::Display) -> Answer {
    answer::internal("portal", error)
}

fn status_of(body: &Value) -> Result<i32, Answer> {
    body.pointer("/status")
        .and_then(Value::as_i64)
        .and_then(|s| i32::try_from(s).ok())
        .filter(|s| (1..=10).contains(s))
        .ok_or_else(|| {
            problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "/status must be a status code from 1 to 10",
            )
        })
}

async fn sync(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let code = text(&body, "/dossier_code")?;
    let procedure = text(&body, "/procedure_code")?;
    let agency = text(&body, "/agency_code")?;
    let status = status_of(&body)?;
    if !matches!(status, 1 | 2) {
        return Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "/status of a dossier synced for the first time must be 1 (new) or 2 (accepted)",
        ));
    }
    let mut client = sandbox.pool.get().await.map_err(internal)?;
    let tx = client.transaction().await.map_err(internal)?;
    let created = tx
        .execute(
            "INSERT INTO sandbox_portal.dossier (dossier_code, procedure_code, agency_code, status, synced)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dossier_code) DO NOTHING",
            &[&code, &procedure, &agency, &status, &body],
        )
        .await
        .map_err(internal)?;
    if created == 1 {
        tx.execute(
            "INSERT INTO sandbox_portal.progress (dossier_code, status, note) VALUES ($1, $2, 'synced')",
            &[&code, &status],
        )
        .await
        .map_err(internal)?;
    }
    tx.commit().await.map_err(internal)?;
    let answer = view(&sandbox, &client, code).await?;
    Ok((
        if created == 1 {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(answer),
    ))
}

async fn progress(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(code): Path<String>,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let to = status_of(&body)?;
    let note = body
        .pointer("/note")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty());
    let mut client = sandbox.pool.get().await.map_err(internal)?;
    let tx = client.transaction().await.map_err(internal)?;
    // The row is locked first: two updates of one dossier, even two copies of one, are
    // judged one after the other.
    let from: i32 = tx
        .query_opt(
            "SELECT status FROM sandbox_portal.dossier WHERE dossier_code = $1 FOR UPDATE",
            &[&code],
        )
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "no dossier has this code",
            )
        })?
        .get(0);
    if let Some(key) = key
        && let Some(earlier) = tx
            .query_opt(
                "SELECT status FROM sandbox_portal.progress WHERE dossier_code = $1 AND idempotency_key = $2",
                &[&code, &key],
            )
            .await
            .map_err(internal)?
    {
        drop(tx);
        if earlier.get::<_, i32>(0) != to {
            return Err(answer::key_reused());
        }
        return Ok((StatusCode::OK, Json(view(&sandbox, &client, &code).await?)));
    }
    if !sandbox.rules.allowed.contains(&(from, to)) {
        let (from_vi, from_en) = sandbox.rules.name(from);
        let (to_vi, to_en) = sandbox.rules.name(to);
        return Err(problem(
            StatusCode::CONFLICT,
            "illegal_transition",
            format!(
                "không được chuyển từ {from} ({from_vi}) sang {to} ({to_vi}) / \
                 status {from} ({from_en}) cannot be followed by {to} ({to_en})"
            ),
        ));
    }
    tx.execute(
        "UPDATE sandbox_portal.dossier SET status = $2 WHERE dossier_code = $1",
        &[&code, &to],
    )
    .await
    .map_err(internal)?;
    tx.execute(
        "INSERT INTO sandbox_portal.progress (dossier_code, status, note, idempotency_key)
         VALUES ($1, $2, $3, $4)",
        &[&code, &to, &note, &key],
    )
    .await
    .map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    Ok((StatusCode::OK, Json(view(&sandbox, &client, &code).await?)))
}

/// A dossier with its status and timeline, read on the handler's own connection (taking a
/// second one while holding the first starves the pool under load: every handler waits for
/// a connection another holds).
async fn view(
    sandbox: &Sandbox,
    client: &tokio_postgres::Client,
    code: &str,
) -> Result<Value, Answer> {
    let dossier = client
        .query_opt(
            "SELECT procedure_code, agency_code, status FROM sandbox_portal.dossier WHERE dossier_code = $1",
            &[&code],
        )
        .await
        .map_err(internal)?
        .ok_or_else(|| problem(StatusCode::NOT_FOUND, "not_found", "no dossier has this code"))?;
    let steps = client
        .query(
            "SELECT status, note, at FROM sandbox_portal.progress WHERE dossier_code = $1 ORDER BY id",
            &[&code],
        )
        .await
        .map_err(internal)?;
    let status: i32 = dossier.get(2);
    let (vi, en) = sandbox.rules.name(status);
    let timeline: Vec<Value> = steps
        .iter()
        .map(|row| {
            let status: i32 = row.get(0);
            let (vi, en) = sandbox.rules.name(status);
            json!({
                "status": status,
                "name_vi": vi,
                "name_en": en,
                "note": row.get::<_, String>(1),
                "at": row.get::<_, chrono::DateTime<chrono::Utc>>(2)
                    .with_timezone(&crate::domain::vietnam())
                    .to_rfc3339(),
            })
        })
        .collect();
    Ok(json!({
        "dossier_code": code,
        "procedure_code": dossier.get::<_, String>(0),
        "agency_code": dossier.get::<_, String>(1),
        "status": status,
        "status_name_vi": vi,
        "status_name_en": en,
        "timeline": timeline,
    }))
}

async fn timeline(State(sandbox): State<Sandbox>, Path(code): Path<String>) -> Answer {
    let client = match sandbox.pool.get().await {
        Ok(client) => client,
        Err(e) => return internal(e),
    };
    match view(&sandbox, &client, &code).await {
        Ok(view) => (StatusCode::OK, Json(view)),
        Err(refused) => refused,
    }
}
