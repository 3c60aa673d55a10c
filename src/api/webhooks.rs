//! `POST /connectors/{name}/webhook`: where webhook-source connectors receive their callbacks.
//! The status tells the sender what to do: 200 taken (or a duplicate, already taken), 401 not
//! signed as agreed, 400/422 never valid (do not send again), 503 send again later.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::http::HttpState;
use crate::connectors::webhook::{Received, WebhookError};

pub fn router() -> Router<HttpState> {
    Router::new().route("/connectors/{name}/webhook", post(receive))
}

async fn receive(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    match state.webhooks.receive(&name, header, &body).await {
        Ok(Received::Published { event_id }) => {
            Json(json!({"event_id": event_id, "duplicate": false})).into_response()
        }
        Ok(Received::Duplicate { event_id }) => {
            Json(json!({"event_id": event_id, "duplicate": true})).into_response()
        }
        Err(error) => {
            let (status, code) = match &error {
                WebhookError::Unknown(_) => (StatusCode::NOT_FOUND, "unknown_connector"),
                WebhookError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
                WebhookError::NotJson(_) => (StatusCode::BAD_REQUEST, "not_json"),
                WebhookError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "refused"),
                WebhookError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            };
            let body = json!({"error": code, "message": error.to_string()});
            (status, Json(body)).into_response()
        }
    }
}
