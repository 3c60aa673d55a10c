//! The residence database stand-in (Cơ sở dữ liệu về cư trú):
//!
//! - `POST /residence/v1/registrations`: a newborn's permanent residence, once per citizen
//!   (one per `Idempotency-Key`: a repeat gets the first answer). Joining a household whose
//!   head is not one of the child's parents needs the head's consent, as the Law on Residence
//!   requires;
//! - `POST /residence/v1/permanent/{personal_id}/deletion`: deleted on death (the same
//!   registration repeated gets the same answer);
//! - `POST /residence/v1/permanent/{personal_id}/deletion/revert`: restored when the death
//!   registration is annulled;
//! - `GET /residence/v1/permanent/{personal_id}`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use deadpool_postgres::Pool;
use serde_json::{Value, json};
use tokio_postgres::Row;

use super::answer::{self, Answer, authorised, problem, text};

#[derive(Clone)]
struct Sandbox {
    pool: Pool,
    token: String,
}

pub fn routes(pool: Pool, token: String) -> Router {
    Router::new()
        .route("/residence/v1/registrations", post(register))
        .route("/residence/v1/permanent/{personal_id}", get(look_up))
        .route(
            "/residence/v1/permanent/{personal_id}/deletion",
            post(delete),
        )
        .route(
            "/residence/v1/permanent/{personal_id}/deletion/revert",
            post(revert),
        )
        .with_state(Sandbox { pool, token })
}

fn internal(error: impl std::fmt::Display) -> Answer {
    answer::internal("residence", error)
}

const COLUMNS: &str = "personal_id, household_id, head_personal_id, relationship, commune_code, \
     address, registered_at, deleted_at, deletion_reference, province_code, reverted_at";

/// Who deletes and restores permanent residences in the answers (the commune police).
const AUTHORITY: &str = "Công an cấp xã (residence sandbox)";

fn record(row: &Row) -> Value {
    let time = |i: usize| {
        row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(i)
            .map(|t| t.with_timezone(&crate::domain::vietnam()).to_rfc3339())
    };
    json!({
        "personal_id": row.get::<_, String>(0),
        "household_id": row.get::<_, String>(1),
        "head_personal_id": row.get::<_, String>(2),
        "relationship": row.get::<_, String>(3),
        "commune_code": row.get::<_, String>(4),
        "address": row.get::<_, String>(5),
        "registered_at": time(6),
        "deleted_at": time(7),
        "deletion_reference": row.get::<_, Option<String>>(8),
        "province_code": row.get::<_, Option<String>>(9),
        "reverted_at": time(10),
        "authority": AUTHORITY,
    })
}

async fn register(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let key = answer::header(&headers, "Idempotency-Key")?;
    let child = answer::personal_id(&body, "/personal_id")?;
    let household = text(&body, "/household_id")?;
    let head = text(&body, "/head_personal_id")?;
    let relationship = text(&body, "/relationship")?;
    let commune = text(&body, "/commune_code")?;
    let address = text(&body, "/address")?;
    let parents: Vec<&str> = ["/mother_personal_id", "/father_personal_id"]
        .iter()
        .filter_map(|p| body.pointer(p).and_then(Value::as_str))
        .collect();
    let consent = body.pointer("/head_consent").filter(|c| !c.is_null());
    // A child joining a parent's own household needs nobody's consent; any other
    // household's head must agree.
    if !parents.contains(&head) {
        let given = consent
            .and_then(|c| c.pointer("/head_personal_id"))
            .and_then(Value::as_str);
        if given != Some(head) {
            return Err(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "consent_required",
                "the household head is not a parent of the child: send /head_consent with the \
                 head's /head_personal_id and /given_on",
            ));
        }
    }
    let client = sandbox.pool.get().await.map_err(internal)?;
    let answer = json!({
        "personal_id": child,
        "household_id": household,
        "registered": true,
        "province_code": body.pointer("/province_code").and_then(Value::as_str),
        "commune_code": commune,
        "address": address,
        "registered_at": chrono::Utc::now()
            .with_timezone(&crate::domain::vietnam())
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        "authority": AUTHORITY,
    });
    let inserted = client
        .execute(
            "INSERT INTO sandbox_residence.permanent (personal_id, request_key, household_id,
                 head_personal_id, relationship, commune_code, address, consent, answer,
                 province_code)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, COALESCE($10,
                 (SELECT province_code FROM sandbox_population.citizen WHERE personal_id = $4)))
             ON CONFLICT DO NOTHING",
            &[
                &child,
                &key,
                &household,
                &head,
                &relationship,
                &commune,
                &address,
                &consent,
                &answer,
                &body.pointer("/province_code").and_then(Value::as_str),
            ],
        )
        .await
        .map_err(internal)?;
    let taken = problem(
        StatusCode::CONFLICT,
        "already_registered",
        "this citizen has a permanent residence already",
    );
    answer::created_or_replayed(
        &client,
        "residence",
        (inserted, answer),
        ("sandbox_residence.permanent", key, child),
        taken,
    )
    .await
}

/// Takes a citizen the residence sandbox has not registered itself from the population
/// sandbox (a seeded citizen, say), so deaths of anyone in the population can be recorded.
async fn adopt(client: &deadpool_postgres::Object, personal_id: &str) -> Result<(), Answer> {
    client
        .execute(
            "INSERT INTO sandbox_residence.permanent (personal_id, request_key, household_id,
                 head_personal_id, relationship, commune_code, address, answer, province_code)
             SELECT c.personal_id, 'population:' || c.personal_id, c.household_id,
                 COALESCE((SELECT h.personal_id FROM sandbox_population.citizen h
                           WHERE h.household_id = c.household_id AND h.relationship = 'head'
                           LIMIT 1), c.personal_id),
                 COALESCE(c.relationship, 'head'), c.commune_code, c.address, '{}'::jsonb,
                 c.province_code
             FROM sandbox_population.citizen c
             WHERE c.personal_id = $1 AND c.household_id IS NOT NULL
               AND c.commune_code IS NOT NULL AND c.address IS NOT NULL
             ON CONFLICT DO NOTHING",
            &[&personal_id],
        )
        .await
        .map_err(internal)?;
    Ok(())
}

/// The citizen's record, read on the caller's connection (a second one taken while holding the
/// first could starve the pool under load).
async fn find(client: &deadpool_postgres::Object, personal_id: &str) -> Result<Row, Answer> {
    adopt(client, personal_id).await?;
    client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM sandbox_residence.permanent WHERE personal_id = $1"),
            &[&personal_id],
        )
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "no permanent residence for this citizen",
            )
        })
}

async fn look_up(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let client = sandbox.pool.get().await.map_err(internal)?;
    Ok((StatusCode::OK, Json(record(&find(&client, &id).await?))))
}

async fn delete(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let reference = text(&body, "/civil_status_reference")?;
    let client = sandbox.pool.get().await.map_err(internal)?;
    adopt(&client, &id).await?;
    let row = client
        .query_opt(
            &format!(
                "UPDATE sandbox_residence.permanent SET deleted_at = now(), deletion_reference = $2
                 WHERE personal_id = $1 AND deleted_at IS NULL
                   AND reverted_reference IS DISTINCT FROM $2
                 RETURNING {COLUMNS}"
            ),
            &[&id, &reference],
        )
        .await
        .map_err(internal)?;
    if let Some(row) = row {
        return Ok((StatusCode::OK, Json(record(&row))));
    }
    let row = find(&client, &id).await?;
    if row.get::<_, Option<String>>(8).as_deref() == Some(reference) {
        return Ok((StatusCode::OK, Json(record(&row))));
    }
    if row
        .get::<_, Option<chrono::DateTime<chrono::Utc>>>(7)
        .is_none()
    {
        // A late repeat of a deletion since reverted (its registration was annulled).
        return Err(problem(
            StatusCode::CONFLICT,
            "deletion_reverted",
            "the deletion for this registration was reverted: the registration was annulled",
        ));
    }
    Err(problem(
        StatusCode::CONFLICT,
        "already_deleted",
        "this permanent residence was deleted under another registration",
    ))
}

async fn revert(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let reference = text(&body, "/civil_status_reference")?;
    let client = sandbox.pool.get().await.map_err(internal)?;
    // Only the deletion made for this registration is reverted.
    let row = client
        .query_opt(
            &format!(
                "UPDATE sandbox_residence.permanent
                 SET deleted_at = NULL, deletion_reference = NULL, reverted_at = now(),
                     reverted_reference = $2
                 WHERE personal_id = $1 AND deletion_reference = $2 RETURNING {COLUMNS}"
            ),
            &[&id, &reference],
        )
        .await
        .map_err(internal)?;
    match row {
        Some(row) => Ok((StatusCode::OK, Json(record(&row)))),
        None => {
            let row = find(&client, &id).await?;
            if row
                .get::<_, Option<chrono::DateTime<chrono::Utc>>>(7)
                .is_none()
            {
                // Not deleted (or reverted already): nothing to do, and the answer says so.
                Ok((StatusCode::OK, Json(record(&row))))
            } else {
                Err(problem(
                    StatusCode::CONFLICT,
                    "other_deletion",
                    "the residence was deleted under another registration",
                ))
            }
        }
    }
}
