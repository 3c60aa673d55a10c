//! HTTP for operators, orchestrators and Kafka tooling: `/metrics` (Prometheus text), `/healthz`
//! (the process answers), `/readyz` (the broker and PostgreSQL are reachable, so traffic may
//! come), the Confluent-compatible schema registry API (`schema_registry`) and the callbacks of
//! webhook-source connectors (`webhooks`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum_server::tls_rustls::RustlsConfig;
use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access::Access;
use crate::bus::Producer;
use crate::connectors::webhook::Webhooks;
use crate::registry::Registry;
use crate::telemetry::Metrics;

const READINESS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long open HTTP requests may finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub access: Arc<Access>,
    pub registry: Arc<Registry>,
    pub pool: Pool,
    pub producer: Producer,
    pub webhooks: Arc<Webhooks>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .merge(super::schema_registry::router())
        .merge(super::webhooks::router())
        .with_state(state)
}

/// Serves the HTTP API on `listener` until `shutdown`, over TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    tls: Option<RustlsConfig>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state);
    let Some(tls) = tls else {
        return axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    };
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener.into_std()?, tls)
        .handle(handle.clone())
        .serve(app.into_make_service());
    let mut server = std::pin::pin!(server);
    tokio::select! {
        served = &mut server => return served,
        () = shutdown.cancelled() => handle.graceful_shutdown(Some(SHUTDOWN_GRACE)),
    }
    server.await
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
