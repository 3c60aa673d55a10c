//! Stand-ins for the national systems, which cannot be reached from a developer's machine or
//! CI: stateful (PostgreSQL, a schema per system), authenticated and idempotent like the real
//! ones, so the demo and the tests exercise the hub's connectors against something that answers
//! as the real system would. `lienthong sandbox serve` runs them as a process of their own.
//!
//! Only the civil-status system's birth registration exists so far; the population database,
//! residence, social insurance, PayGov and the portal follow, with fault controls.

pub mod civil_status;
mod personal_id;

use std::net::SocketAddr;

use axum::Router;
use deadpool_postgres::Pool;

use crate::db::DbError;

/// Prepares every sandbox's schema and serves them on `listen` until `shutdown` resolves.
pub async fn serve(
    pool: Pool,
    listen: SocketAddr,
    token: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SandboxError> {
    civil_status::prepare(&pool).await?;
    let app = Router::new().merge(civil_status::routes(pool, token));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| SandboxError::Bind { listen, source })?;
    tracing::info!(%listen, "sandboxes ready");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(SandboxError::Serve)
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
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
