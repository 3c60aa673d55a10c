//! How every sandbox answers: JSON bodies `{"error", "message"}` with the status a real system
//! would send, bearer-token checks, and required fields named by their JSON pointer.

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

pub type Answer = (StatusCode, Json<Value>);

pub fn problem(status: StatusCode, code: &str, message: impl Into<String>) -> Answer {
    (
        status,
        Json(json!({"error": code, "message": message.into()})),
    )
}

/// `Ok` when the request carries `Authorization: Bearer <token>`.
pub fn authorised(token: &str, headers: &HeaderMap) -> Result<(), Answer> {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented.is_some_and(|t| t == token) {
        Ok(())
    } else {
        Err(problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token>",
        ))
    }
}

/// A failure of the sandbox itself, logged; the caller is asked to try again.
pub fn internal(system: &str, error: impl std::fmt::Display) -> Answer {
    tracing::error!(%system, %error, "sandbox failed");
    problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "try again")
}

/// The field at `path` as text, or a 422 naming it.
pub fn text<'a>(body: &'a Value, path: &str) -> Result<&'a str, Answer> {
    body.pointer(path)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("{path} is required"),
            )
        })
}

/// A header's value, or a 400 naming it.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Answer> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            problem(
                StatusCode::BAD_REQUEST,
                "header",
                format!("send a {name} header"),
            )
        })
}

/// The field at `path` as a 12-digit personal ID, or a 422 naming it.
pub fn personal_id<'a>(body: &'a Value, path: &str) -> Result<&'a str, Answer> {
    let id = text(body, path)?;
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(id)
    } else {
        Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("{path} must be a personal ID of 12 digits"),
        ))
    }
}

/// The answer to a request that creates a citizen's record once, after its insert made
/// `inserted` rows: 201 with `answer` when it made the record; otherwise the first answer
/// stored under the key in `table` (which has `answer`, `personal_id` and `request_key`) if
/// that request was this citizen's, a refusal of the key if it was another's, else `taken`
/// (the citizen has the record under another key).
pub async fn created_or_replayed(
    client: &tokio_postgres::Client,
    system: &str,
    (inserted, answer): (u64, Value),
    (table, key, citizen): (&str, &str, &str),
    taken: Answer,
) -> Result<Answer, Answer> {
    if inserted == 1 {
        return Ok((StatusCode::CREATED, Json(answer)));
    }
    let earlier = client
        .query_opt(
            &format!("SELECT answer, personal_id FROM {table} WHERE request_key = $1"),
            &[&key],
        )
        .await
        .map_err(|e| internal(system, e))?;
    match earlier {
        Some(row) if row.get::<_, &str>(1) == citizen => Ok((StatusCode::OK, Json(row.get(0)))),
        Some(_) => Err(key_reused()),
        None => Err(taken),
    }
}

/// The refusal of an `Idempotency-Key` sent before with another request.
pub fn key_reused() -> Answer {
    problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key",
        "this Idempotency-Key was used for another request",
    )
}
