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

/// When a citizen's record could not be created because its key or its citizen is taken: the
/// first answer if `earlier` (the answer and the citizen stored under the key) is this
/// citizen's, a refusal of the reused key if it is another's, else `taken`.
pub fn replay(
    earlier: Option<tokio_postgres::Row>,
    citizen: &str,
    taken: Answer,
) -> Result<Answer, Answer> {
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
