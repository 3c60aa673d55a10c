//! Stand-ins for the national systems, which cannot be reached from a developer's machine or
//! CI: stateful (PostgreSQL, a schema per system), authenticated and idempotent like the real
//! ones, so the demo and the tests exercise the hub's connectors against something that answers
//! as the real system would. `lienthong sandbox serve` runs them as a process of their own.
//!
//! Every system can have a bad day on purpose (`faults`): latency, failures, outages, a rate
//! limit, set at start or while running through `/sandbox/v1/faults`.
//!
//! Only the civil-status system's birth registration exists so far; the population database,
//! residence, social insurance, PayGov and the portal follow.

pub mod civil_status;
pub mod faults;
mod personal_id;

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::{Json, Router, middleware};
use deadpool_postgres::Pool;
use serde_json::{Value, json};

use self::faults::{Controls, Faults};
use crate::db::DbError;

/// The systems this process stands in for, by the name fault controls use.
pub const SYSTEMS: [&str; 1] = ["civil-status"];

/// Prepares every sandbox's schema and serves them on `listen` until `shutdown` resolves.
/// `faults` names the systems that start with faults; the token also guards the fault controls.
pub async fn serve(
    pool: Pool,
    listen: SocketAddr,
    token: String,
    faults: HashMap<String, Faults>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SandboxError> {
    let controls = Controls::new(&SYSTEMS, faults).map_err(SandboxError::Faults)?;
    civil_status::prepare(&pool).await?;
    let app = Router::new()
        .merge(
            civil_status::routes(pool, token.clone()).layer(middleware::from_fn_with_state(
                (controls.clone(), "civil-status"),
                faults::apply,
            )),
        )
        .merge(fault_routes(controls, token));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| SandboxError::Bind { listen, source })?;
    tracing::info!(%listen, "sandboxes ready");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(SandboxError::Serve)
}

/// `GET /sandbox/v1/faults` (every system's) and `PUT /sandbox/v1/faults/{system}`.
fn fault_routes(controls: Controls, token: String) -> Router {
    Router::new()
        .route("/sandbox/v1/faults", get(list_faults))
        .route("/sandbox/v1/faults/{system}", put(set_faults))
        .with_state((controls, token))
}

fn authorised(token: &str, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|presented| presented == token)
}

type Answer = (StatusCode, Json<Value>);

fn unauthorised() -> Answer {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "unauthorized", "message": "send Authorization: Bearer <token>"})),
    )
}

async fn list_faults(
    State((controls, token)): State<(Controls, String)>,
    headers: HeaderMap,
) -> Answer {
    if !authorised(&token, &headers) {
        return unauthorised();
    }
    (StatusCode::OK, Json(json!(controls.all())))
}

async fn set_faults(
    State((controls, token)): State<(Controls, String)>,
    Path(system): Path<String>,
    headers: HeaderMap,
    Json(faults): Json<Value>,
) -> Answer {
    if !authorised(&token, &headers) {
        return unauthorised();
    }
    let faults: Faults = match serde_json::from_value(faults) {
        Ok(faults) => faults,
        Err(e) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"error": "invalid", "message": e.to_string()})),
            );
        }
    };
    match controls.set(&system, faults.clone()) {
        Ok(()) => {
            tracing::info!(%system, ?faults, "sandbox faults set");
            (StatusCode::OK, Json(json!(faults)))
        }
        Err(message) if message.ends_with("no such sandbox") => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "not_found", "message": message})),
        ),
        Err(message) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "invalid", "message": message})),
        ),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("faults: {0}")]
    Faults(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        listen: SocketAddr,
        source: std::io::Error,
    },
    #[error("the sandbox server failed: {0}")]
    Serve(std::io::Error),
}
