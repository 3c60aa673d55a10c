//! The civil-status system (hộ tịch) stand-in: registers a birth and, as the real system does
//! through the population database, answers with the register entry and the child's new
//! personal ID number. Like the real one it is authenticated (bearer token), idempotent per
//! `Idempotency-Key` (a repeat gets the first answer), and never registers one dossier twice:
//! a citizen never gets two ID numbers.
//!
//! `POST /civil-status/v1/births` registers (a late registration without a certificate after
//! the officer's verification: `civil_status_verification`); `GET
//! /civil-status/v1/births/{dossier_code}` looks a registration up. `POST /civil-status/v1/deaths` registers the death of a citizen the
//! population database knows and does not record as deceased (422 `unknown_citizen`, 409
//! `already_deceased`), once per person while no registration of it stands;
//! `POST /civil-status/v1/{births|deaths}/{dossier_code}/annulment` annuls a registration (the
//! same reason repeated gets the same answer).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use deadpool_postgres::Pool;
use serde_json::{Value, json};

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
        .route("/civil-status/v1/births", post(register))
        .route("/civil-status/v1/births/{dossier_code}", get(look_up))
        .route("/civil-status/v1/deaths", post(register_death))
        .route("/civil-status/v1/deaths/{dossier_code}", get(look_up_death))
        .route(
            "/civil-status/v1/{kind}/{dossier_code}/annulment",
            post(annul),
        )
        .with_state(Sandbox { pool, token, ids })
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
    let (dossier, province, birth_date, sex, name) = match fields {
        Ok(fields) => fields,
        Err(refused) => return refused,
    };
    if !matches!(sex, "MALE" | "FEMALE") {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "/child/sex must be MALE or FEMALE",
        );
    }
    if birth_date.len() != 10 {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "/child/birth_date must be a date, YYYY-MM-DD",
        );
    }
    let mut client = match sandbox.pool.get().await {
        Ok(client) => client,
        Err(e) => return internal(e),
    };
    let agency = dossier.split('-').next().unwrap_or(dossier);
    let year = birth_date.get(..4).unwrap_or_default();
    // A birth registered already is answered below; one the officer must verify first waits.
    let registered = client
        .query_opt(
            "SELECT 1 FROM sandbox_civil_status.birth WHERE idempotency_key = $1",
            &[&key],
        )
        .await;
    match registered {
        Ok(Some(_)) => {}
        Ok(None) => {
            match super::civil_status_verification::awaited(&mut client, dossier, &body).await {
                Ok(None) => {}
                Ok(Some(waiting)) => return waiting,
                Err(refused) => return refused,
            }
        }
        Err(e) => return internal(e),
    }
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
        let Some(id) = sandbox.ids.assign(province, birth_date, sex == "FEMALE") else {
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
        // As the real system does through the population database, the child enters it with
        // the new number in the same transaction: a number the database holds already (from a
        // seeding or its own API) is drawn again, and a crash leaves both or neither.
        let inserted = register_with_population(
            &mut client,
            [key, dossier, &id, name, birth_date, sex, province],
            number,
            &answer,
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

/// Inserts the newborn into the population database and the birth into the register, both or
/// neither; the number of births registered (0 when the number, the key or the dossier is
/// taken).
async fn register_with_population(
    client: &mut deadpool_postgres::Object,
    [key, dossier, id, name, birth_date, sex, province]: [&str; 7],
    number: i64,
    answer: &Value,
) -> Result<u64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let inserted = tx
        .execute(
            "WITH citizen AS (
                 INSERT INTO sandbox_population.citizen
                     (personal_id, full_name, birth_date, sex, province_code)
                 VALUES ($3, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING personal_id)
             INSERT INTO sandbox_civil_status.birth
                 (idempotency_key, dossier_code, personal_id, number, answer)
             SELECT $1, $2, personal_id, $4, $5 FROM citizen ON CONFLICT DO NOTHING",
            &[
                &key,
                &dossier,
                &id,
                &number,
                answer,
                &name,
                &birth_date,
                &sex,
                &province,
            ],
        )
        .await?;
    if inserted == 1 {
        tx.commit().await?;
    }
    Ok(inserted)
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

async fn register_death(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let key = answer::header(&headers, "Idempotency-Key")?;
    let dossier = text(&body, "/dossier_code")?;
    let province = text(&body, "/province_code")?;
    let deceased = answer::personal_id(&body, "/deceased/personal_id")?;
    text(&body, "/deceased/full_name")?;
    let died_on = chrono::NaiveDate::parse_from_str(text(&body, "/deceased/died_on")?, "%Y-%m-%d")
        .map_err(|_| {
            problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "/deceased/died_on must be a date, YYYY-MM-DD",
            )
        })?;
    let client = sandbox.pool.get().await.map_err(internal)?;
    if let Some(row) = client
        .query_opt(
            "SELECT answer, dossier_code FROM sandbox_civil_status.death WHERE idempotency_key = $1",
            &[&key],
        )
        .await
        .map_err(internal)?
    {
        return if row.get::<_, &str>(1) == dossier {
            Ok((StatusCode::OK, Json(row.get(0))))
        } else {
            Err(answer::key_reused())
        };
    }
    // As the civil-status software does through the population database: the person must be
    // known there, and not recorded as deceased already (a repeat of a registration made is
    // answered above, though the population database has recorded the death since).
    let known = client
        .query_opt(
            "SELECT deceased_at IS NOT NULL FROM sandbox_population.citizen WHERE personal_id = $1",
            &[&deceased],
        )
        .await
        .map_err(internal)?;
    match known.map(|row| row.get::<_, bool>(0)) {
        None => {
            return Err(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_citizen",
                "/deceased/personal_id is not in the population database",
            ));
        }
        Some(true) => {
            return Err(problem(
                StatusCode::CONFLICT,
                "already_deceased",
                "the population database records this citizen as deceased already",
            ));
        }
        Some(false) => {}
    }
    let number: i64 = client
        .query_one(
            "SELECT nextval(pg_get_serial_sequence('sandbox_civil_status.death', 'number'))",
            &[],
        )
        .await
        .map_err(internal)?
        .get(0);
    let year = chrono::Datelike::year(&died_on);
    let answer = json!({
        "registration_number": format!("{number}/{year}"),
        "registration_book": format!("01/{year}-KT"),
        "registered_at": Utc::now().with_timezone(&crate::domain::vietnam()).to_rfc3339(),
        "agency_code": dossier.split('-').next().unwrap_or(dossier),
        "personal_id": deceased,
        "e_extract_reference": format!("TLKT-{province}-{year}-{number:06}"),
    });
    let inserted = client
        .execute(
            "INSERT INTO sandbox_civil_status.death (idempotency_key, dossier_code, personal_id, number, answer)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&key, &dossier, &deceased, &number, &answer],
        )
        .await
        .map_err(internal)?;
    if inserted == 1 {
        Ok((StatusCode::CREATED, Json(answer)))
    } else {
        Err(problem(
            StatusCode::CONFLICT,
            "already_registered",
            "this death (or this dossier) is registered already",
        ))
    }
}

async fn look_up_death(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(dossier): Path<String>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let client = sandbox.pool.get().await.map_err(internal)?;
    let row = client
        .query_opt(
            "SELECT answer, annulled_at::text FROM sandbox_civil_status.death WHERE dossier_code = $1",
            &[&dossier],
        )
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            problem(StatusCode::NOT_FOUND, "not_found", "no death registered for this dossier")
        })?;
    let mut answer: Value = row.get(0);
    answer["annulled_at"] = json!(row.get::<_, Option<String>>(1));
    Ok((StatusCode::OK, Json(answer)))
}

/// Annuls a birth or death registration; the same reason repeated gets the same answer.
async fn annul(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path((kind, dossier)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    // The table is one of two names, never the caller's text.
    let table = match kind.as_str() {
        "births" => "sandbox_civil_status.birth",
        "deaths" => "sandbox_civil_status.death",
        _ => {
            return Err(problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "annul births or deaths",
            ));
        }
    };
    let reason = text(&body, "/reason")?;
    let client = sandbox.pool.get().await.map_err(internal)?;
    let row = client
        .query_opt(
            &format!(
                "UPDATE {table} SET annulled_at = COALESCE(annulled_at, now()),
                     annulment_reason = COALESCE(annulment_reason, $2)
                 WHERE dossier_code = $1
                 RETURNING annulled_at::text, annulment_reason"
            ),
            &[&dossier, &reason],
        )
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            problem(
                StatusCode::NOT_FOUND,
                "not_found",
                "no registration for this dossier",
            )
        })?;
    if row.get::<_, &str>(1) != reason {
        return Err(problem(
            StatusCode::CONFLICT,
            "already_annulled",
            "this registration was annulled already, for another reason",
        ));
    }
    Ok((
        StatusCode::OK,
        Json(
            json!({"dossier_code": dossier, "annulled_at": row.get::<_, String>(0), "reason": reason}),
        ),
    ))
}
