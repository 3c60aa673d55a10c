//! The national population database stand-in (Cơ sở dữ liệu quốc gia về dân cư). What the
//! hub's procedures ask of it:
//!
//! - `GET /population/v1/citizens/{personal_id}`: a citizen's identity, residence and household;
//! - `POST /population/v1/citizens/{personal_id}/verify`: do a name and birth date match;
//! - `POST /population/v1/personal-ids`: a new personal ID for a newborn, for a civil-status
//!   office: never one number twice, and one number per `Idempotency-Key`;
//! - `POST /population/v1/citizens/{personal_id}/death`: mark a citizen deceased, once;
//! - `POST /population/v1/citizens/{personal_id}/id-card`: the identity authority's ID card
//!   (căn cước) for a living citizen whose name and birth date match, once per citizen, one
//!   per `Idempotency-Key`; its number is the personal ID, and a child's is valid until the day
//!   before 14 (Law on Identification 26/2023/QH15, when the card must be renewed).
//!
//! Like the real one, every read is logged with the caller (`X-Caller`, the agency) and the
//! purpose (`X-Purpose`); a read without them is refused.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use deadpool_postgres::{Object, Pool};
use serde_json::{Value, json};
use tokio_postgres::Row;

use super::answer::{self, Answer, authorised, problem, text};
use super::personal_id::IdDraws;

/// Attempts at drawing an unused personal ID number before giving up.
const ID_ATTEMPTS: usize = 20;

#[derive(Clone)]
struct Sandbox {
    pool: Pool,
    token: String,
    ids: IdDraws,
}

pub fn routes(pool: Pool, token: String, ids: IdDraws) -> Router {
    Router::new()
        .route("/population/v1/citizens/{personal_id}", get(look_up))
        .route("/population/v1/citizens/{personal_id}/verify", post(verify))
        .route("/population/v1/citizens/{personal_id}/death", post(death))
        .route(
            "/population/v1/citizens/{personal_id}/death/revert",
            post(revert_death),
        )
        .route(
            "/population/v1/citizens/{personal_id}/id-card",
            post(id_card),
        )
        .route("/population/v1/personal-ids", post(assign))
        .with_state(Sandbox { pool, token, ids })
}

fn internal(error: impl std::fmt::Display) -> Answer {
    answer::internal("population", error)
}

/// A citizen's columns, with the head of their household (a form joining it names the head).
const CITIZEN_COLUMNS: &str = "personal_id, full_name, birth_date, sex, ethnicity_code, \
     nationality, province_code, commune_code, address, household_id, relationship, \
     deceased_at::text, \
     (SELECT h.personal_id FROM sandbox_population.citizen h \
       WHERE h.household_id = citizen.household_id AND h.relationship = 'head' \
       ORDER BY h.personal_id LIMIT 1)";

fn citizen(row: &Row) -> Value {
    json!({
        "personal_id": row.get::<_, String>(0),
        "full_name": row.get::<_, String>(1),
        "birth_date": row.get::<_, String>(2),
        "sex": row.get::<_, String>(3),
        "ethnicity_code": row.get::<_, Option<String>>(4),
        "nationality": row.get::<_, String>(5),
        "permanent_residence": {
            "province_code": row.get::<_, String>(6),
            "commune_code": row.get::<_, Option<String>>(7),
            "address": row.get::<_, Option<String>>(8),
        },
        "household": {
            "id": row.get::<_, Option<String>>(9),
            "relationship": row.get::<_, Option<String>>(10),
            "head_personal_id": row.get::<_, Option<String>>(12),
        },
        "deceased_at": row.get::<_, Option<String>>(11),
    })
}

/// The connection and the caller and purpose of a read, or the refusal.
async fn reader(
    sandbox: &Sandbox,
    headers: &HeaderMap,
) -> Result<(Object, String, String), Answer> {
    authorised(&sandbox.token, headers)?;
    let caller = answer::header(headers, "X-Caller")?.to_owned();
    let purpose = answer::header(headers, "X-Purpose")?.to_owned();
    let client = sandbox.pool.get().await.map_err(internal)?;
    Ok((client, caller, purpose))
}

async fn log_read(
    client: &Object,
    caller: &str,
    purpose: &str,
    personal_id: &str,
    what: &str,
) -> Result<(), Answer> {
    client
        .execute(
            "INSERT INTO sandbox_population.read_log (caller, purpose, personal_id, what)
             VALUES ($1, $2, $3, $4)",
            &[&caller, &purpose, &personal_id, &what],
        )
        .await
        .map(|_| ())
        .map_err(internal)
}

async fn find(client: &Object, personal_id: &str) -> Result<Option<Row>, Answer> {
    client
        .query_opt(
            &format!(
                "SELECT {CITIZEN_COLUMNS} FROM sandbox_population.citizen WHERE personal_id = $1"
            ),
            &[&personal_id],
        )
        .await
        .map_err(internal)
}

fn not_found() -> Answer {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        "no citizen has this personal ID",
    )
}

async fn look_up(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(personal_id): Path<String>,
) -> Result<Answer, Answer> {
    let (client, caller, purpose) = reader(&sandbox, &headers).await?;
    // Logged whether or not the citizen exists: asking is itself a use of the database.
    log_read(&client, &caller, &purpose, &personal_id, "look-up").await?;
    let row = find(&client, &personal_id).await?.ok_or_else(not_found)?;
    Ok((StatusCode::OK, Json(citizen(&row))))
}

async fn verify(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(personal_id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    let (client, caller, purpose) = reader(&sandbox, &headers).await?;
    let name = text(&body, "/full_name")?;
    let birth_date = text(&body, "/birth_date")?;
    log_read(&client, &caller, &purpose, &personal_id, "verify").await?;
    let row = find(&client, &personal_id).await?.ok_or_else(not_found)?;
    let mut mismatched = Vec::new();
    if row.get::<_, &str>(1) != name {
        mismatched.push("full_name");
    }
    if row.get::<_, &str>(2) != birth_date {
        mismatched.push("birth_date");
    }
    Ok((
        StatusCode::OK,
        Json(json!({"matches": mismatched.is_empty(), "mismatched": mismatched})),
    ))
}

async fn assign(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let key = answer::header(&headers, "Idempotency-Key")?;
    let name = text(&body, "/full_name")?;
    let birth_date = text(&body, "/birth_date")?;
    let sex = text(&body, "/sex")?;
    let province = text(&body, "/province_code")?;
    let reference = text(&body, "/civil_status_reference")?;
    let date = chrono::NaiveDate::parse_from_str(birth_date, "%Y-%m-%d").ok();
    if birth_date.len() != 10 || date.is_none() {
        return Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "/birth_date must be a date, YYYY-MM-DD",
        ));
    }
    if !matches!(sex, "MALE" | "FEMALE") {
        return Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "/sex must be MALE or FEMALE",
        ));
    }
    let mut client = sandbox.pool.get().await.map_err(internal)?;
    for _ in 0..ID_ATTEMPTS {
        // A repeated request gets the number it was given; a key reused for another
        // newborn is refused rather than handing over that number.
        if let Some(row) = client
            .query_opt(
                "SELECT a.answer, c.full_name, c.birth_date
                 FROM sandbox_population.assignment a
                 JOIN sandbox_population.citizen c USING (personal_id)
                 WHERE a.request_key = $1",
                &[&key],
            )
            .await
            .map_err(internal)?
        {
            if row.get::<_, &str>(1) != name || row.get::<_, &str>(2) != birth_date {
                return Err(answer::key_reused());
            }
            return Ok((StatusCode::OK, Json(row.get::<_, Value>(0))));
        }
        let id = sandbox
            .ids
            .assign(province, birth_date, sex == "FEMALE")
            .ok_or_else(|| {
                problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    "/province_code or /birth_date cannot make a personal ID",
                )
            })?;
        let answer = json!({"personal_id": id, "civil_status_reference": reference});
        let tx = client.transaction().await.map_err(internal)?;
        let created = tx
            .execute(
                "INSERT INTO sandbox_population.citizen
                     (personal_id, full_name, birth_date, sex, province_code)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&id, &name, &birth_date, &sex, &province],
            )
            .await
            .map_err(internal)?;
        if created == 0 {
            // The number is someone's already: draw another.
            continue;
        }
        let assigned = tx
            .execute(
                "INSERT INTO sandbox_population.assignment (request_key, personal_id, answer)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&key, &id, &answer],
            )
            .await
            .map_err(internal)?;
        if assigned == 0 {
            // A concurrent repeat of this request won: its number is the answer.
            drop(tx);
            continue;
        }
        tx.commit().await.map_err(internal)?;
        return Ok((StatusCode::CREATED, Json(answer)));
    }
    Err(internal("no unused personal ID number found"))
}

async fn death(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(personal_id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let died_on = text(&body, "/died_on")?;
    let reference = text(&body, "/civil_status_reference")?;
    let date = chrono::NaiveDate::parse_from_str(died_on, "%Y-%m-%d").map_err(|_| {
        problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "/died_on must be a date, YYYY-MM-DD",
        )
    })?;
    let client = sandbox.pool.get().await.map_err(internal)?;
    let row = client
        .query_opt(
            "UPDATE sandbox_population.citizen
             SET deceased_at = $2, death_reference = $3, death_recorded_at = now()
             WHERE personal_id = $1 AND deceased_at IS NULL
               -- A registration annulled and reverted never marks anyone deceased again (a
               -- late repeat of its request).
               AND death_reverted_reference IS DISTINCT FROM $3
             RETURNING deceased_at::text, death_recorded_at",
            &[&personal_id, &date, &reference],
        )
        .await
        .map_err(internal)?;
    let answer = |deceased: String, recorded: chrono::DateTime<chrono::Utc>| {
        json!({
            "personal_id": personal_id,
            "deceased_at": deceased,
            "recorded_at": recorded.with_timezone(&crate::domain::vietnam()).to_rfc3339(),
            "civil_status_reference": reference,
        })
    };
    if let Some(row) = row {
        return Ok((StatusCode::OK, Json(answer(row.get(0), row.get(1)))));
    }
    // Marked already: the same registration repeated gets the same answer; another is
    // refused, as a citizen dies once.
    let record = death_record(&client, &personal_id).await?;
    match record {
        DeathRecord {
            deceased_at: Some(deceased),
            reference: Some(before),
            recorded_at: Some(recorded),
            ..
        } if before == reference => Ok((StatusCode::OK, Json(answer(deceased, recorded)))),
        DeathRecord {
            deceased_at: None,
            reverted_reference: Some(reverted),
            ..
        } if reverted == reference => Err(problem(
            StatusCode::CONFLICT,
            "registration_annulled",
            "this registration was annulled and the death it recorded reverted",
        )),
        _ => Err(problem(
            StatusCode::CONFLICT,
            "already_deceased",
            "this citizen is recorded as deceased under another registration",
        )),
    }
}

/// What the population database holds of a citizen's death, and of its revert.
struct DeathRecord {
    deceased_at: Option<String>,
    reference: Option<String>,
    recorded_at: Option<chrono::DateTime<chrono::Utc>>,
    reverted_at: Option<chrono::DateTime<chrono::Utc>>,
    reverted_reference: Option<String>,
}

async fn death_record(
    client: &deadpool_postgres::Object,
    personal_id: &str,
) -> Result<DeathRecord, Answer> {
    let row = client
        .query_opt(
            "SELECT deceased_at::text, death_reference, death_recorded_at, death_reverted_at,
                    death_reverted_reference
             FROM sandbox_population.citizen WHERE personal_id = $1",
            &[&personal_id],
        )
        .await
        .map_err(internal)?
        .ok_or_else(not_found)?;
    Ok(DeathRecord {
        deceased_at: row.get(0),
        reference: row.get(1),
        recorded_at: row.get(2),
        reverted_at: row.get(3),
        reverted_reference: row.get(4),
    })
}

/// Reverts the death recorded under the registration the body names (annulled since): the
/// citizen is living again. Only that registration's death is reverted; a repeat gets the same
/// answer.
async fn revert_death(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(personal_id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let reference = text(&body, "/civil_status_reference")?;
    let client = sandbox.pool.get().await.map_err(internal)?;
    let answer = |reverted: chrono::DateTime<chrono::Utc>| {
        json!({
            "personal_id": personal_id,
            "status": "LIVING",
            "reverted_at": reverted.with_timezone(&crate::domain::vietnam()).to_rfc3339(),
            "civil_status_reference": reference,
        })
    };
    let reverted = client
        .query_opt(
            "UPDATE sandbox_population.citizen
             SET deceased_at = NULL, death_reference = NULL, death_recorded_at = NULL,
                 death_reverted_at = now(), death_reverted_reference = $2
             WHERE personal_id = $1 AND death_reference = $2
             RETURNING death_reverted_at",
            &[&personal_id, &reference],
        )
        .await
        .map_err(internal)?;
    if let Some(row) = reverted {
        return Ok((StatusCode::OK, Json(answer(row.get(0)))));
    }
    match death_record(&client, &personal_id).await? {
        DeathRecord {
            reference: None,
            reverted_at: Some(at),
            reverted_reference: Some(before),
            ..
        } if before == reference => Ok((StatusCode::OK, Json(answer(at)))),
        DeathRecord {
            reference: Some(_), ..
        } => Err(problem(
            StatusCode::CONFLICT,
            "other_registration",
            "this citizen's death is recorded under another registration",
        )),
        _ => Err(problem(
            StatusCode::CONFLICT,
            "not_deceased",
            "no death of this citizen is recorded under this registration",
        )),
    }
}

/// Until this age a card is a child's, renewed at it.
const CHILD_CARD_UNTIL_YEARS: u32 = 14;

async fn id_card(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(personal_id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let key = answer::header(&headers, "Idempotency-Key")?;
    let name = text(&body, "/full_name")?;
    let born = text(&body, "/birth_date")?;
    let client = sandbox.pool.get().await.map_err(internal)?;
    let citizen = client
        .query_opt(
            "SELECT full_name, birth_date, deceased_at IS NOT NULL
             FROM sandbox_population.citizen WHERE personal_id = $1",
            &[&personal_id],
        )
        .await
        .map_err(internal)?
        .ok_or_else(not_found)?;
    if citizen.get::<_, &str>(0) != name || citizen.get::<_, &str>(1) != born {
        return Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "mismatch",
            "/full_name and /birth_date must be the citizen's as the population database holds them",
        ));
    }
    if citizen.get::<_, bool>(2) {
        return Err(problem(
            StatusCode::CONFLICT,
            "deceased",
            "no card for a citizen recorded as deceased",
        ));
    }
    let valid_until = chrono::NaiveDate::parse_from_str(born, "%Y-%m-%d")
        .ok()
        .and_then(|b| b.checked_add_months(chrono::Months::new(CHILD_CARD_UNTIL_YEARS * 12)))
        .and_then(|d| d.pred_opt())
        .filter(|d| *d > chrono::Utc::now().date_naive())
        .map(|d| d.to_string());
    let answer = json!({
        "personal_id": personal_id,
        "card_number": personal_id,
        "full_name": name,
        "valid_until": valid_until,
        "issued_at": chrono::Utc::now().with_timezone(&crate::domain::vietnam()).to_rfc3339(),
        "issuing_authority": "Cục Cảnh sát quản lý hành chính về trật tự xã hội",
    });
    let inserted = client
        .execute(
            "INSERT INTO sandbox_population.id_card (personal_id, request_key, answer)
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&personal_id, &key, &answer],
        )
        .await
        .map_err(internal)?;
    let taken = problem(
        StatusCode::CONFLICT,
        "already_issued",
        "this citizen holds a card already",
    );
    answer::created_or_replayed(
        &client,
        "population",
        (inserted, answer),
        ("sandbox_population.id_card", key, &personal_id),
        taken,
    )
    .await
}
