//! Stand-ins for the national systems, which cannot be reached from a developer's machine or
//! CI: stateful (PostgreSQL, a schema per system), authenticated and idempotent like the real
//! ones, so the demo and the tests exercise the hub's connectors against something that answers
//! as the real system would. `lienthong sandbox serve` runs them as a process of their own.
//!
//! Every system can have a bad day on purpose (`faults`): latency, failures, outages, a rate
//! limit, set at start or while running through `/sandbox/v1/faults`.
//!
//! The civil-status system, the population database, residence, social insurance, PayGov and
//! the national public service portal. Their schemas are versioned migrations of
//! their own (`src/sandbox/migrations`, recorded in `sandbox_schema_history`).

mod answer;
pub mod civil_status;
mod civil_status_verification;
pub mod faults;
pub mod paygov;
mod personal_id;
pub mod population;
pub mod portal;
pub mod residence;
pub mod seed;
pub mod social_insurance;

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::{Json, Router, middleware};
use deadpool_postgres::Pool;
use serde_json::{Value, json};

use self::answer::{Answer, authorised};
use self::faults::{Controls, Faults};
pub use self::personal_id::IdDraws;
use crate::db::DbError;

/// The systems this process stands in for, by the name fault controls use.
pub const SYSTEMS: [&str; 6] = [
    "civil-status",
    "population",
    "residence",
    "social-insurance",
    "paygov",
    "portal",
];

mod embedded {
    refinery::embed_migrations!("src/sandbox/migrations");
}

/// Creates or updates the sandboxes' schemas (kept across restarts).
pub async fn migrate(pool: &Pool) -> Result<(), DbError> {
    let mut client = pool.get().await?;
    embedded::migrations::runner()
        .set_migration_table_name("sandbox_schema_history")
        .run_async(&mut **client)
        .await?;
    Ok(())
}

/// Who may call the sandboxes: each system its own bearer token, as the real systems issue
/// their own credentials, or the admin token where a system has none.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Guards the fault controls, and every system without a token of its own.
    pub admin: String,
    /// Tokens by system name (see [`SYSTEMS`]).
    pub systems: HashMap<String, String>,
    /// The merchant secret PayGov checks transactions with and signs callbacks with.
    pub paygov_secret: String,
}

impl Credentials {
    /// The same token for every system; the PayGov secret apart.
    pub fn shared(token: &str, paygov_secret: &str) -> Self {
        Self {
            admin: token.to_owned(),
            systems: HashMap::new(),
            paygov_secret: paygov_secret.to_owned(),
        }
    }

    fn token(&self, system: &str) -> String {
        self.systems.get(system).unwrap_or(&self.admin).clone()
    }
}

/// Prepares every sandbox's schema and serves them on `listen` until `shutdown` resolves.
/// `faults` names the systems that start with faults; new personal ID numbers come from `ids`.
pub async fn serve(
    pool: Pool,
    listen: SocketAddr,
    credentials: Credentials,
    faults: HashMap<String, Faults>,
    ids: IdDraws,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SandboxError> {
    let controls = Controls::new(&SYSTEMS, faults)
        .map_err(|e| SandboxError::Settings(format!("faults: {e}")))?;
    if let Some(unknown) = credentials
        .systems
        .keys()
        .find(|s| !SYSTEMS.contains(&s.as_str()))
    {
        return Err(SandboxError::Settings(format!(
            "a token for {unknown}: no such sandbox (there are: {})",
            SYSTEMS.join(", ")
        )));
    }
    let token = |system: &str| credentials.token(system);
    migrate(&pool).await?;
    let faulty = |router: Router, system: &'static str| {
        router.layer(middleware::from_fn_with_state(
            (controls.clone(), system),
            faults::apply,
        ))
    };
    let app = Router::new()
        .merge(faulty(
            civil_status::routes(pool.clone(), token("civil-status"), ids.clone()),
            "civil-status",
        ))
        .merge(faulty(
            civil_status_verification::routes(pool.clone(), token("civil-status")),
            "civil-status",
        ))
        .merge(faulty(
            population::routes(pool.clone(), token("population"), ids),
            "population",
        ))
        .merge(faulty(
            residence::routes(pool.clone(), token("residence")),
            "residence",
        ))
        .merge(faulty(
            social_insurance::routes(pool.clone(), token("social-insurance"))
                .map_err(SandboxError::Settings)?,
            "social-insurance",
        ))
        .merge(faulty(
            paygov::routes(
                pool.clone(),
                token("paygov"),
                credentials.paygov_secret.clone(),
                controls.clone(),
            ),
            "paygov",
        ))
        .merge(faulty(
            portal::routes(pool, token("portal")).map_err(SandboxError::Settings)?,
            "portal",
        ))
        .merge(fault_routes(controls.clone(), credentials.admin.clone()))
        .route("/openapi/{document}", get(openapi))
        .layer(middleware::map_response(json_rejections));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| SandboxError::Bind { listen, source })?;
    tracing::info!(%listen, "sandboxes ready");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(SandboxError::Serve)
}

/// A request refused before its handler (a body that is not JSON, a path id that is not a
/// number, a missing query) gets axum's plain-text answer; the sandboxes answer every refusal
/// with the same JSON error object, so it is rewrapped.
async fn json_rejections(response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let plain_text = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/plain"));
    if !(response.status().is_client_error() && plain_text) {
        return response;
    }
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    answer::problem(status, "invalid", String::from_utf8_lossy(&body)).into_response()
}

/// The OpenAPI document of each sandbox API, by file name; the same files as in
/// `schemas/openapi/`, built into the binary so a sandbox serves them wherever it runs.
const OPENAPI: [(&str, &str); 7] = [
    (
        "civil-status.json",
        include_str!("../../schemas/openapi/civil-status.json"),
    ),
    (
        "population.json",
        include_str!("../../schemas/openapi/population.json"),
    ),
    (
        "residence.json",
        include_str!("../../schemas/openapi/residence.json"),
    ),
    (
        "social-insurance.json",
        include_str!("../../schemas/openapi/social-insurance.json"),
    ),
    (
        "paygov.json",
        include_str!("../../schemas/openapi/paygov.json"),
    ),
    (
        "portal.json",
        include_str!("../../schemas/openapi/portal.json"),
    ),
    (
        "sandbox-faults.json",
        include_str!("../../schemas/openapi/sandbox-faults.json"),
    ),
];

/// `GET /openapi/{document}`: no token needed, as developers read it before they have one.
async fn openapi(Path(document): Path<String>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match OPENAPI.iter().find(|(name, _)| *name == document) {
        Some((_, text)) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            *text,
        )
            .into_response(),
        None => answer::problem(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no such document; there are: {}",
                OPENAPI.map(|(name, _)| name).join(", ")
            ),
        )
        .into_response(),
    }
}

/// `GET /sandbox/v1/faults` (every system's) and `PUT /sandbox/v1/faults/{system}`.
fn fault_routes(controls: Controls, token: String) -> Router {
    Router::new()
        .route("/sandbox/v1/faults", get(list_faults))
        .route("/sandbox/v1/faults/{system}", put(set_faults))
        .with_state((controls, token))
}

async fn list_faults(
    State((controls, token)): State<(Controls, String)>,
    headers: HeaderMap,
) -> Answer {
    if let Err(refused) = authorised(&token, &headers) {
        return refused;
    }
    (StatusCode::OK, Json(json!(controls.all())))
}

async fn set_faults(
    State((controls, token)): State<(Controls, String)>,
    Path(system): Path<String>,
    headers: HeaderMap,
    Json(faults): Json<Value>,
) -> Answer {
    if let Err(refused) = authorised(&token, &headers) {
        return refused;
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
    /// The sandboxes' settings or built-in data are wrong.
    #[error("{0}")]
    Settings(String),
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
