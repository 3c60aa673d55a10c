//! HTTP for operators, orchestrators and Kafka tooling: `/metrics` (Prometheus text), `/healthz`
//! (the process answers), `/readyz` (the broker and PostgreSQL are reachable, so traffic may
//! come) and the Confluent-compatible schema registry API (`schema_registry`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use deadpool_postgres::Pool;

use crate::access::Access;
use crate::bus::Producer;
use crate::telemetry::Metrics;

const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub access: Arc<Access>,
    pub pool: Pool,
    pub producer: Producer,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .merge(super::schema_registry::router())
        .with_state(state)
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn ready(State(state): State<HttpState>) -> impl IntoResponse {
    let (database, broker) = tokio::join!(
        tokio::time::timeout(READINESS_TIMEOUT, crate::db::is_reachable(&state.pool)),
        state.producer.is_reachable(READINESS_TIMEOUT),
    );
    let database = database.unwrap_or(false);
    let body = format!(
        "database: {}\nbroker: {}\n",
        if database { "ok" } else { "unreachable" },
        if broker { "ok" } else { "unreachable" }
    );
    let status = if database && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}
