//! The civil-status system (hộ tịch) stand-in: registers a birth and, as the real system does
//! through the population database, answers with the register entry and the child's new
//! personal ID number. Like the real one it is authenticated (bearer token), idempotent per
//! `Idempotency-Key` (a repeat gets the first answer), and never registers one dossier twice:
//! a citizen never gets two ID numbers.
//!
//! `POST /civil-status/v1/births` registers; `GET /civil-status/v1/births/{dossier_code}` looks a
//! registration up.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use deadpool_postgres::Pool;
use serde_json::{Value, json};

use super::answer::{self, Answer, authorised, problem, text};
use super::personal_id;

/// Attempts at drawing an unused personal ID number before giving up.
const ID_ATTEMPTS: usize = 20;

#[derive(Clone)]
struct Sandbox {
    pool: Pool,
    token: String,
}

pub fn routes(pool: Pool, token: String) -> Router {
    Router::new()
        .route("/civil-status/v1/births", post(register))
        .route("/civil-status/v1/births/{dossier_code}", get(look_up))
        .with_state(Sandbox { pool, token })
}

fn internal(error: impl std::fmt::Display) -> Answer {
    answer::internal("civil-status", error)
}

async fn register(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    if let Err(refused) = authorised(&sandbox.token, &headers) {
        return refused;
    }
    let key = match answer::header(&headers, "Idempotency-Key") {
        Ok(key) => key,
        Err(refused) => return refused,
    };
    let fields = (|| {
        Ok::<_, Answer>((
            text(&body, "/dossier_code")?,
            text(&body, "/province_code")?,
            text(&body, "/child/birth_date")?,
            text(&body, "/child/sex")?,
            text(&body, "/child/full_name")?,
        ))
    })();
    let (dossier, province, birth_date, sex, _) = match fields {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    let client = match sandbox.pool.get().await {
        Ok(client) => client,
        Err(e) => return internal(e),
    };
    let agency = dossier.split('-').next().unwrap_or(dossier);
    let year = birth_date.get(..4).unwrap_or_default();
    for _ in 0..ID_ATTEMPTS {
        // A repeat of a request already answered gets the same answer.
        match client
            .query_opt("SELECT answer, dossier_code FROM sandbox_civil_status.birth WHERE idempotency_key = $1", &[&key])
            .await
        {
            Ok(Some(row)) if row.get::<_, &str>(1) == dossier => return (StatusCode::OK, Json(row.get(0))),
            Ok(Some(_)) => {
                return problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key", "this key was used for another dossier");
            }
            Ok(None) => {}
            Err(e) => return internal(e),
        }
        let Some(id) = personal_id::assign(province, birth_date, sex == "FEMALE") else {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "/province_code or /child/birth_date cannot make a personal ID",
            );
        };
        let number: i64 = match client
            .query_one(
                "SELECT nextval(pg_get_serial_sequence('sandbox_civil_status.birth', 'number'))",
                &[],
            )
            .await
        {
            Ok(row) => row.get(0),
            Err(e) => return internal(e),
        };
        let answer = json!({
            "registration_number": format!("{number}/{year}"),
            "registration_book": format!("01/{year}-KS"),
            "registered_at": Utc::now().with_timezone(&crate::domain::vietnam()).to_rfc3339(),
            "agency_code": agency,
            "personal_id": id,
            "e_extract_reference": format!("TLKS-{province}-{year}-{number:06}"),
        });
        // One statement: a crash leaves the registration whole or absent.
        let inserted = client
            .execute(
                "INSERT INTO sandbox_civil_status.birth (idempotency_key, dossier_code, personal_id, number, answer)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&key, &dossier, &id, &number, &answer],
            )
            .await;
        match inserted {
            Ok(1) => return (StatusCode::CREATED, Json(answer)),
            // The same key just registered by a concurrent repeat is answered above; a number
            // already taken is drawn again.
            Ok(_) => match client.query_opt("SELECT 1 FROM sandbox_civil_status.birth WHERE dossier_code = $1 AND idempotency_key <> $2", &[&dossier, &key]).await {
                Ok(Some(_)) => {
                    return problem(StatusCode::CONFLICT, "already_registered", "this dossier's birth is registered already");
                }
                Ok(None) => continue,
                Err(e) => return internal(e),
            },
            Err(e) => return internal(e),
        }
    }
    internal("no unused personal ID number found")
}

async fn look_up(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(dossier): Path<String>,
) -> Answer {
    if let Err(refused) = authorised(&sandbox.token, &headers) {
        return refused;
    }
    let client = match sandbox.pool.get().await {
        Ok(client) => client,
        Err(e) => return internal(e),
    };
    match client
        .query_opt(
            "SELECT answer FROM sandbox_civil_status.birth WHERE dossier_code = $1",
            &[&dossier],
        )
        .await
    {
        Ok(Some(row)) => (StatusCode::OK, Json(row.get(0))),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "no birth registered for this dossier",
        ),
        Err(e) => internal(e),
    }
}
