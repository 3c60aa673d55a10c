//! The civil-status officer's verification of a late birth registration (more than 60 days
//! after the birth, Law on Civil Status 60/2014/QH13, art. 15) that names no health facility's
//! certificate: the officer verifies the facts (witnesses, the place of birth) before the birth
//! is registered (Decree 123/2015/ND-CP, art. 26). The civil-status system answers such a
//! registration `202` with `status: VERIFYING` and the time the verification is due; asked again
//! once it is concluded, it registers (`CONFIRMED`) or answers `status: NOT_REGISTERED` with
//! the reason. `GET /civil-status/v1/verifications?after=N&limit=M` lists the concluded
//! verifications in the order they were concluded, for the hub to read. The sandbox's officer
//! confirms every verification when its due time passes, [`OFFICERS_TIME`] after the request,
//! unless told otherwise first: `POST /civil-status/v1/verifications/{dossier_code}` with
//! `{"outcome": "NOT_CONFIRMED", "reason_code": …}` (or `CONFIRMED`) concludes it at once, as
//! the officer's own screen would (409 once it is concluded).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::tokio_postgres::types::ToSql;
use deadpool_postgres::{Object, Pool};
use serde_json::{Value, json};

use super::answer::{self, Answer, authorised, problem};

/// How long the sandbox's officer takes: seconds, so a demo sees the wait and its end.
pub const OFFICERS_TIME: chrono::Duration = chrono::Duration::seconds(2);
/// Law on Civil Status 60/2014/QH13, art. 15: a birth is registered within 60 days.
const ON_TIME_DAYS: i64 = 60;
/// Verifications listed at most per page.
const MAX_PAGE: i64 = 500;

#[derive(Clone)]
struct Sandbox {
    pool: Pool,
    token: String,
}

pub fn routes(pool: Pool, token: String) -> Router {
    Router::new()
        .route("/civil-status/v1/verifications", get(list))
        .route(
            "/civil-status/v1/verifications/{dossier_code}",
            post(decide),
        )
        .with_state(Sandbox { pool, token })
}

fn internal(error: impl std::fmt::Display) -> Answer {
    answer::internal("civil-status", error)
}

/// Whether registering `body` waits for the officer's verification: late, and no certificate.
fn needs_verification(body: &Value) -> bool {
    let text = |pointer: &str| body.pointer(pointer).and_then(Value::as_str);
    let received = text("/received_at")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&crate::domain::vietnam()).date_naive());
    let born = text("/child/birth_date").and_then(|d| d.parse::<NaiveDate>().ok());
    let late = matches!((received, born), (Some(r), Some(b)) if (r - b).num_days() > ON_TIME_DAYS);
    late && text("/birth_certificate_no").is_none_or(str::is_empty)
}

/// The advisory lock under which verifications are concluded.
const CONCLUDING: i64 = 4_243;

/// Concludes the open verifications `filter` picks as `set` says, numbering each conclusion;
/// returns how many. One conclusion at a time, so the numbers the hub reads after its cursor
/// are committed in their order (a number committed after a higher one would be skipped by the
/// reader).
async fn conclude(
    client: &mut Object,
    set: &str,
    filter: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, Answer> {
    let tx = client.transaction().await.map_err(internal)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CONCLUDING])
        .await
        .map_err(internal)?;
    let concluded = tx
        .execute(
            &format!(
                "UPDATE sandbox_civil_status.verification
                    SET {set}, concluded = nextval('sandbox_civil_status.verification_concluded')
                  WHERE outcome IS NULL AND {filter}"
            ),
            params,
        )
        .await
        .map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    Ok(concluded)
}

/// The officer concludes every verification whose due time has passed: confirmed.
async fn conclude_due(client: &mut Object) -> Result<(), Answer> {
    conclude(
        client,
        "outcome = 'CONFIRMED', verified_at = due_at",
        "due_at <= now()",
        &[],
    )
    .await
    .map(drop)
}

/// What a registration of `body` waits for: `None` to register it now (no verification needed,
/// or confirmed), else the answer to give (still verifying, or not confirmed).
pub(super) async fn awaited(
    client: &mut Object,
    dossier: &str,
    body: &Value,
) -> Result<Option<Answer>, Answer> {
    if !needs_verification(body) {
        return Ok(None);
    }
    let agency = dossier.split('-').next().unwrap_or(dossier);
    client
        .execute(
            "INSERT INTO sandbox_civil_status.verification (dossier_code, agency_code, due_at)
             VALUES ($1, $2, now() + make_interval(secs => $3))
             ON CONFLICT (dossier_code) DO NOTHING",
            &[
                &dossier,
                &agency,
                &(OFFICERS_TIME.num_milliseconds() as f64 / 1000.0),
            ],
        )
        .await
        .map_err(internal)?;
    conclude_due(client).await?;
    let row = client
        .query_one(
            "SELECT outcome, reason_code, due_at FROM sandbox_civil_status.verification
              WHERE dossier_code = $1",
            &[&dossier],
        )
        .await
        .map_err(internal)?;
    let due_at: DateTime<Utc> = row.get(2);
    Ok(match row.get::<_, Option<&str>>(0) {
        Some("CONFIRMED") => None,
        Some(_) => Some((
            StatusCode::OK,
            Json(json!({
                "status": "NOT_REGISTERED",
                "dossier_code": dossier,
                "reason_code": row.get::<_, Option<&str>>(1),
            })),
        )),
        None => Some((
            StatusCode::ACCEPTED,
            Json(json!({
                "status": "VERIFYING",
                "dossier_code": dossier,
                "verification_due_at": due_at.with_timezone(&crate::domain::vietnam()).to_rfc3339(),
            })),
        )),
    })
}

/// The reasons the hub's `birth.verification-recorded` knows.
const REASONS: [&str; 3] = ["WITNESSES_NOT_CONFIRMED", "BIRTH_FACTS_DIFFER", "OTHER"];

/// The officer concludes a verification now, as told.
async fn decide(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(dossier): Path<String>,
    axum::Json(body): axum::Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let outcome = body.get("outcome").and_then(Value::as_str);
    let reason = body.get("reason_code").and_then(Value::as_str);
    let (outcome, reason) = match (outcome, reason) {
        (Some("CONFIRMED"), None) => ("CONFIRMED", None),
        (Some("NOT_CONFIRMED"), Some(reason)) if REASONS.contains(&reason) => {
            ("NOT_CONFIRMED", Some(reason))
        }
        _ => {
            return Err(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!(
                    "/outcome must be CONFIRMED (no reason_code) or NOT_CONFIRMED with \
                     /reason_code one of {}",
                    REASONS.join(", ")
                ),
            ));
        }
    };
    let mut client = sandbox.pool.get().await.map_err(internal)?;
    let concluded = conclude(
        &mut client,
        "outcome = $2, reason_code = $3, verified_at = now()",
        "dossier_code = $1",
        &[&dossier, &outcome, &reason],
    )
    .await?;
    if concluded == 1 {
        return Ok((
            StatusCode::OK,
            Json(json!({"dossier_code": dossier, "outcome": outcome, "reason_code": reason})),
        ));
    }
    Err(problem(
        StatusCode::CONFLICT,
        "not_open",
        "no verification of this dossier waits for the officer (none asked, or concluded)",
    ))
}

#[derive(serde::Deserialize)]
struct Page {
    after: Option<i64>,
    limit: Option<i64>,
}

async fn list(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let mut client = sandbox.pool.get().await.map_err(internal)?;
    conclude_due(&mut client).await?;
    let rows = client
        .query(
            "SELECT concluded, dossier_code, outcome, reason_code, verified_at, agency_code
               FROM sandbox_civil_status.verification
              WHERE concluded > $1 ORDER BY concluded LIMIT $2",
            &[
                &page.after.unwrap_or(0),
                &page.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE),
            ],
        )
        .await
        .map_err(internal)?;
    let verifications: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "id": row.get::<_, i64>(0),
                "dossier_code": row.get::<_, &str>(1),
                "outcome": row.get::<_, &str>(2),
                "reason_code": row.get::<_, Option<&str>>(3),
                "verified_at": row.get::<_, DateTime<Utc>>(4)
                    .with_timezone(&crate::domain::vietnam()).to_rfc3339(),
                "agency_code": row.get::<_, &str>(5),
            })
        })
        .collect();
    let next = rows.last().map(|row| row.get::<_, i64>(0));
    Ok((
        StatusCode::OK,
        Json(json!({"verifications": verifications, "next": next})),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_registration_without_a_certificate_is_verified_first() {
        let body = |received: &str, certificate: Value| {
            json!({"received_at": received, "child": {"birth_date": "2026-09-01"},
                   "birth_certificate_no": certificate})
        };
        assert!(needs_verification(&body(
            "2026-11-20T09:00:00+07:00",
            Value::Null
        )));
        assert!(!needs_verification(&body(
            "2026-11-20T09:00:00+07:00",
            json!("GCS-1")
        )));
        assert!(
            !needs_verification(&body("2026-10-31T09:00:00+07:00", Value::Null)),
            "60 days after the birth is on time"
        );
    }
}
