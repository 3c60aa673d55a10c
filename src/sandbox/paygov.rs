//! The PayGov stand-in (the national online payment platform):
//!
//! - `POST /paygov/v1/transactions`: a merchant (the hub's payment connector) creates a
//!   transaction with its fee lines and beneficiary account, signed with an HMAC-SHA256
//!   `checksum` of `order_id|amount|dossier_code`; one transaction per `order_id`, however often
//!   it is sent; the answer holds the payment page's URL. An optional `expires_at` (RFC 3339)
//!   ends it: unpaid by then, it reads `EXPIRED` and its page takes no payment;
//! - `POST /paygov/v1/pay/{transaction_id}`: the payment page, where the citizen pays or
//!   cancels (no token: it is the citizen's browser);
//! - the server-to-server callback to the merchant's `callback_url` after a payment, its body
//!   signed in `X-PayGov-Signature` (hex HMAC-SHA256); sometimes late, twice, or never, as the
//!   fault controls say;
//! - `GET /paygov/v1/transactions/{id}` (the query a merchant makes when no callback came),
//!   `GET /paygov/v1/transactions/{id}/receipt`;
//! - the day's statement, `GET /paygov/v1/reconciliation?date=` or `…/reconciliation/{date}`,
//!   `final` once the day is closed: after it ends (Vietnam time), or at once through
//!   `POST /paygov/v1/reconciliation/{date}/close` (the sandbox's control, so the demo and the
//!   tests need not wait for midnight).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{NaiveDate, Utc};
use deadpool_postgres::Pool;
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_postgres::Row;

use super::answer::{self, Answer, authorised, problem, text};
use super::faults::{CallbackPlan, Controls};

/// Callback attempts when the merchant does not answer 2xx.
const CALLBACK_ATTEMPTS: u32 = 3;

#[derive(Clone)]
struct Sandbox {
    pool: Pool,
    token: String,
    /// The merchant's secret: checks transactions' checksums, signs callbacks.
    secret: String,
    controls: Controls,
    http: reqwest::Client,
}

pub fn routes(pool: Pool, token: String, secret: String, controls: Controls) -> Router {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    Router::new()
        .route("/paygov/v1/transactions", post(create))
        .route("/paygov/v1/transactions/{id}", get(query))
        .route("/paygov/v1/transactions/{id}/receipt", get(receipt))
        .route("/paygov/v1/pay/{id}", post(pay))
        .route("/paygov/v1/reconciliation", get(reconciliation))
        .route("/paygov/v1/reconciliation/{date}", get(statement))
        .route("/paygov/v1/reconciliation/{date}/close", post(close_day))
        .with_state(Sandbox {
            pool,
            token,
            secret,
            controls,
            http,
        })
}

fn internal(error: impl std::fmt::Display) -> Answer {
    answer::internal("paygov", error)
}

/// Hex HMAC-SHA256 of `data` under `secret`.
pub fn sign(secret: &str, data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

/// The status is read, not stored, as EXPIRED: a pending transaction expires by the clock.
const COLUMNS: &str = "transaction_id, order_id, dossier_code, amount, fee_lines, order_info, \
     CASE WHEN status = 'PENDING' AND expires_at <= now() THEN 'EXPIRED' ELSE status END, \
     bank_code, paid_at, receipt_number, callback_url, created_at, expires_at";

fn transaction(row: &Row) -> Value {
    json!({
        "transaction_id": row.get::<_, String>(0),
        "order_id": row.get::<_, String>(1),
        "dossier_code": row.get::<_, String>(2),
        "amount": row.get::<_, i64>(3),
        "fee_lines": row.get::<_, Value>(4),
        "order_info": row.get::<_, String>(5),
        "status": row.get::<_, String>(6),
        "bank_code": row.get::<_, Option<String>>(7),
        "paid_at": row.get::<_, Option<chrono::DateTime<Utc>>>(8)
            .map(|t| t.with_timezone(&crate::domain::vietnam()).to_rfc3339()),
        "created_at": row.get::<_, chrono::DateTime<Utc>>(11)
            .with_timezone(&crate::domain::vietnam()).to_rfc3339(),
        "expires_at": row.get::<_, Option<chrono::DateTime<Utc>>>(12)
            .map(|t| t.with_timezone(&crate::domain::vietnam()).to_rfc3339()),
    })
}

async fn create(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let order = text(&body, "/order_id")?;
    let dossier = text(&body, "/dossier_code")?;
    let info = text(&body, "/order_info")?;
    let callback = text(&body, "/callback_url")?;
    let checksum = text(&body, "/checksum")?;
    let invalid = |message: &str| problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message);
    let amount = body
        .pointer("/amount")
        .and_then(Value::as_i64)
        .filter(|a| *a > 0)
        .ok_or_else(|| invalid("/amount must be a whole number of dong above 0"))?;
    let lines = body
        .pointer("/fee_lines")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| invalid("/fee_lines must list at least one fee"))?;
    let mut total: i64 = 0;
    for (i, line) in lines.iter().enumerate() {
        let fee = line
            .pointer("/amount")
            .and_then(Value::as_i64)
            .filter(|a| *a > 0)
            .filter(|_| line.pointer("/code").and_then(Value::as_str).is_some())
            .ok_or_else(|| {
                problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    format!("/fee_lines/{i} needs a code and an amount of dong above 0"),
                )
            })?;
        total = total
            .checked_add(fee)
            .ok_or_else(|| invalid("/fee_lines add up to more than any payment"))?;
    }
    if total != amount {
        return Err(invalid("/fee_lines must add up to /amount"));
    }
    let beneficiary = body
        .pointer("/beneficiary_account")
        .filter(|b| {
            b.pointer("/account_number")
                .and_then(Value::as_str)
                .is_some()
        })
        .ok_or_else(|| invalid("/beneficiary_account/account_number is required"))?;
    let expires = match body.pointer("/expires_at") {
        None | Some(Value::Null) => None,
        Some(at) => Some(
            at.as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .ok_or_else(|| invalid("/expires_at must be an RFC 3339 time, or null"))?
                .with_timezone(&Utc),
        ),
    };
    let expected = sign(
        &sandbox.secret,
        format!("{order}|{amount}|{dossier}").as_bytes(),
    );
    if expected != checksum {
        return Err(problem(
            StatusCode::UNAUTHORIZED,
            "checksum",
            "checksum must be the hex HMAC-SHA256 of order_id|amount|dossier_code",
        ));
    }
    let client = sandbox.pool.get().await.map_err(internal)?;
    let number: i64 = client
        .query_one("SELECT nextval('sandbox_paygov.transaction_number')", &[])
        .await
        .map_err(internal)?
        .get(0);
    let id = format!("PG{}{number:08}", Utc::now().format("%y%m%d"));
    client
        .execute(
            "INSERT INTO sandbox_paygov.transaction (transaction_id, order_id, dossier_code,
                 amount, fee_lines, beneficiary, order_info, callback_url, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (order_id) DO NOTHING",
            &[
                &id,
                &order,
                &dossier,
                &amount,
                &Value::from(lines.clone()),
                beneficiary,
                &info,
                &callback,
                &expires,
            ],
        )
        .await
        .map_err(internal)?;
    // The order's transaction, new or from an earlier request.
    let row = client
        .query_one(
            &format!("SELECT {COLUMNS} FROM sandbox_paygov.transaction WHERE order_id = $1"),
            &[&order],
        )
        .await
        .map_err(internal)?;
    if row.get::<_, i64>(3) != amount || row.get::<_, String>(2) != dossier {
        return Err(problem(
            StatusCode::CONFLICT,
            "order_reused",
            "this order_id was created with another amount or dossier",
        ));
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:8095");
    let mut answer = transaction(&row);
    let created = row.get::<_, String>(0) == id;
    answer["payment_url"] = Value::from(format!(
        "http://{host}/paygov/v1/pay/{}",
        row.get::<_, String>(0)
    ));
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(answer),
    ))
}

/// The transaction, read on the caller's connection (a second one taken while holding the
/// first could starve the pool under load).
async fn find(client: &deadpool_postgres::Object, id: &str) -> Result<Row, Answer> {
    client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM sandbox_paygov.transaction WHERE transaction_id = $1"),
            &[&id],
        )
        .await
        .map_err(internal)?
        .ok_or_else(|| problem(StatusCode::NOT_FOUND, "not_found", "no such transaction"))
}

async fn query(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    Ok((
        StatusCode::OK,
        Json(transaction(
            &find(&sandbox.pool.get().await.map_err(internal)?, &id).await?,
        )),
    ))
}

async fn receipt(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let row = find(&sandbox.pool.get().await.map_err(internal)?, &id).await?;
    let Some(number) = row.get::<_, Option<i64>>(9) else {
        return Err(problem(
            StatusCode::CONFLICT,
            "not_paid",
            "the transaction is not paid",
        ));
    };
    let mut receipt = transaction(&row);
    receipt["receipt_number"] = Value::from(format!("BL-PAYGOV-{number:010}"));
    receipt["issuer"] = Value::from("PayGov sandbox (biên lai điện tử / electronic receipt)");
    Ok((StatusCode::OK, Json(receipt)))
}

#[derive(Deserialize)]
struct PayForm {
    outcome: String,
    bank_code: Option<String>,
}

/// The payment page: the citizen pays (or cancels) once; the merchant is then told.
async fn pay(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    Json(form): Json<PayForm>,
) -> Result<Answer, Answer> {
    let (status, response_code) = match form.outcome.as_str() {
        "success" => ("PAID", "00"),
        "cancelled" => ("CANCELLED", "24"),
        _ => {
            return Err(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "/outcome must be success or cancelled",
            ));
        }
    };
    let bank = form.bank_code.unwrap_or_else(|| "VCB".to_owned());
    let client = sandbox.pool.get().await.map_err(internal)?;
    let row = client
        .query_opt(
            &format!(
                "UPDATE sandbox_paygov.transaction
                 SET status = $2, bank_code = $3,
                     paid_at = CASE WHEN $2 = 'PAID' THEN now() END,
                     receipt_number = CASE WHEN $2 = 'PAID'
                         THEN nextval('sandbox_paygov.receipt_number') END
                 WHERE transaction_id = $1 AND status = 'PENDING'
                   AND (expires_at IS NULL OR expires_at > now())
                 RETURNING {COLUMNS}"
            ),
            &[&id, &status, &bank],
        )
        .await
        .map_err(internal)?;
    let Some(row) = row else {
        if find(&client, &id).await?.get::<_, String>(6) == "EXPIRED" {
            return Err(problem(
                StatusCode::CONFLICT,
                "expired",
                "this transaction expired unpaid; the merchant must open a new one",
            ));
        }
        return Err(problem(
            StatusCode::CONFLICT,
            "already_settled",
            "this transaction was paid or cancelled already",
        ));
    };
    let callback_url: String = row.get(10);
    let body = callback_body(&sandbox.secret, &row, response_code);
    // Drawn now, in the order of the requests, so the seed decides it whatever the timing.
    let plan = sandbox.controls.callback("paygov");
    tokio::spawn(deliver(sandbox.clone(), id, callback_url, body, plan));
    Ok((StatusCode::OK, Json(transaction(&row))))
}

/// The notification PayGov sends the merchant, with its own checksum over the key fields.
fn callback_body(secret: &str, row: &Row, response_code: &str) -> Vec<u8> {
    let (id, order, amount): (String, String, i64) = (row.get(0), row.get(1), row.get(3));
    let checksum = sign(
        secret,
        format!("{id}|{order}|{amount}|{response_code}").as_bytes(),
    );
    let paid_at = row
        .get::<_, Option<chrono::DateTime<Utc>>>(8)
        .map(|t| t.with_timezone(&crate::domain::vietnam()).to_rfc3339());
    let body = json!({
        "transaction_id": id,
        "order_id": order,
        "dossier_code": row.get::<_, String>(2),
        "amount": amount,
        "bank_code": row.get::<_, Option<String>>(7),
        "response_code": response_code,
        "order_info": row.get::<_, String>(5),
        "pay_date": paid_at,
        "checksum": checksum,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Sends the callback as the fault controls say: after a delay, maybe twice, maybe never;
/// retried a few times when the merchant does not answer 2xx. Every attempt is recorded.
async fn deliver(sandbox: Sandbox, id: String, url: String, body: Vec<u8>, plan: CallbackPlan) {
    if plan.lost {
        tracing::info!(transaction = %id, "callback lost on purpose (fault controls)");
        return;
    }
    tokio::time::sleep(plan.delay).await;
    let signature = sign(&sandbox.secret, &body);
    let copies = if plan.duplicate { 2 } else { 1 };
    for copy in 0..copies {
        for attempt in 1..=CALLBACK_ATTEMPTS {
            let sent = sandbox
                .http
                .post(&url)
                .header("content-type", "application/json")
                .header("X-PayGov-Signature", &signature)
                .body(body.clone())
                .send()
                .await;
            let (status, error) = match sent {
                Ok(response) => (Some(i32::from(response.status().as_u16())), None),
                Err(e) => (None, Some(e.without_url().to_string())),
            };
            if let Ok(client) = sandbox.pool.get().await {
                let recorded = client
                    .execute(
                        "INSERT INTO sandbox_paygov.callback (transaction_id, duplicate, status, error)
                         VALUES ($1, $2, $3, $4)",
                        &[&id, &(copy > 0), &status, &error],
                    )
                    .await;
                if let Err(error) = recorded {
                    tracing::warn!(%error, "paygov sandbox: callback not recorded");
                }
            }
            if status.is_some_and(|s| (200..300).contains(&s)) {
                break;
            }
            tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
        }
    }
}

#[derive(Deserialize)]
struct Day {
    date: String,
}

/// The day's statement by query: `?date=YYYY-MM-DD`.
async fn reconciliation(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Query(day): Query<Day>,
) -> Result<Answer, Answer> {
    statement(State(sandbox), headers, Path(day.date)).await
}

fn day_of(text: &str) -> Result<NaiveDate, Answer> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "date must be YYYY-MM-DD",
        )
    })
}

/// The day's statement: every transaction paid that day (Vietnam time), with the total, and
/// whether it is final (the day closed: nothing paid will be added to it, and a day closed
/// early leaves out what was paid after).
async fn statement(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(date): Path<String>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let day = day_of(&date)?;
    let client = sandbox.pool.get().await.map_err(internal)?;
    // Whether the day is closed first: a close between the two reads then gives a statement
    // that says it may still grow, never a final one that holds a payment made after the close.
    let closed = client
        .query_one(
            "SELECT $1 < (now() AT TIME ZONE 'Asia/Ho_Chi_Minh')::date
                    OR EXISTS (SELECT 1 FROM sandbox_paygov.closed_day WHERE day = $1)",
            &[&day],
        )
        .await
        .map_err(internal)?
        .get::<_, bool>(0);
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM sandbox_paygov.transaction
                 WHERE status = 'PAID'
                   AND (paid_at AT TIME ZONE 'Asia/Ho_Chi_Minh')::date = $1
                   -- A day closed early keeps what was paid before: a later payment that
                   -- day is on no statement, as when PayGov's books miss one.
                   AND paid_at <= coalesce(
                       (SELECT closed_at FROM sandbox_paygov.closed_day WHERE day = $1),
                       'infinity')
                 ORDER BY paid_at"
            ),
            &[&day],
        )
        .await
        .map_err(internal)?;
    let total: i64 = rows.iter().map(|r| r.get::<_, i64>(3)).sum();
    Ok((
        StatusCode::OK,
        Json(json!({
            "date": date,
            "final": closed,
            "count": rows.len(),
            "total_amount": total,
            "transactions": rows.iter().map(transaction).collect::<Vec<_>>(),
        })),
    ))
}

/// Closes the day's statement now, as PayGov does after midnight (the sandbox's control).
async fn close_day(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(date): Path<String>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let day = day_of(&date)?;
    sandbox
        .pool
        .get()
        .await
        .map_err(internal)?
        .execute(
            "INSERT INTO sandbox_paygov.closed_day (day) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&day],
        )
        .await
        .map_err(internal)?;
    Ok((StatusCode::OK, Json(json!({"date": date, "final": true}))))
}
