//! PostgreSQL: the connection pool and the versioned migrations in `migrations/`, applied at
//! start-up. Each part of the hub owns its own tables; nothing here knows what they mean.
//! Every connection has a `statement_timeout`, and the pool has wait and create timeouts, because
//! neither PostgreSQL nor deadpool sets any by default. With `database.ca_file` connections use
//! TLS and verify the server.

use std::path::Path;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::DatabaseConfig;

mod embedded {
    refinery::embed_migrations!("migrations");
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database.url: {0}")]
    Url(tokio_postgres::Error),
    #[error("cannot build the PostgreSQL pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("no PostgreSQL connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("PostgreSQL: {}", server_says(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("applying migrations: {0}")]
    Migration(#[from] refinery::Error),
    #[error("database.ca_file: {0}")]
    Tls(String),
    /// A row holds what the hub never writes: someone changed the table by hand.
    #[error("unexpected data in PostgreSQL: {0}")]
    Corrupt(String),
}

/// What the server answered: its SQLSTATE and the constraint, table and column concerned
/// ("db error" alone hid a foreign-key violation in the engine's retry log). Its message only
/// when our own migrations raised it (class P0: "audit_log is append-only"); other messages
/// and every DETAIL may quote a row's values: personal data, and this goes to logs.
fn server_says(error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        return error.to_string();
    };
    let code = db.code().code();
    let mut said = if code.starts_with("P0") {
        format!("{} (SQLSTATE {code})", db.message())
    } else {
        format!("SQLSTATE {code}")
    };
    for (what, name) in [
        ("constraint", db.constraint()),
        ("table", db.table()),
        ("column", db.column()),
    ] {
        if let Some(name) = name {
            said.push_str(&format!(", {what} {name}"));
        }
    }
    said
}

/// Builds the pool. Connections are opened lazily; call [`migrate`] to check the database.
pub fn pool(config: &DatabaseConfig) -> Result<Pool, DbError> {
    let mut pg: tokio_postgres::Config = config.url.parse().map_err(DbError::Url)?;
    pg.connect_timeout(config.connect_timeout());
    pg.options(format!(
        "-c statement_timeout={} -c lock_timeout={}",
        config.statement_timeout_ms, config.statement_timeout_ms
    ));
    pg.application_name("lienthong");
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match &config.ca_file {
        None => Manager::from_config(pg, NoTls, manager_config),
        Some(ca) => {
            // With a CA configured, TLS is required: libpq's default (`prefer`) would fall back
            // to plain text if a man in the middle answered that TLS is not offered.
            pg.ssl_mode(tokio_postgres::config::SslMode::Require);
            Manager::from_config(pg, tls_connector(ca)?, manager_config)
        }
    };
    Ok(Pool::builder(manager)
        .max_size(config.pool_max_size)
        .wait_timeout(Some(config.pool_wait_timeout()))
        .create_timeout(Some(config.connect_timeout()))
        .recycle_timeout(Some(config.connect_timeout()))
        .runtime(Runtime::Tokio1)
        .build()?)
}

/// TLS to PostgreSQL, trusting only the CA(s) in `ca_file`, with rustls's ring provider (the
/// one the hub installs; rustls will not choose between the two compiled in).
fn tls_connector(ca_file: &Path) -> Result<MakeRustlsConnect, DbError> {
    let fail = |why: String| DbError::Tls(format!("{}: {why}", ca_file.display()));
    let pem = std::fs::read(ca_file).map_err(|e| fail(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|e| fail(e.to_string()))?;
        roots.add(certificate).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("holds no PEM certificate".to_owned()));
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fail(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(tls))
}

/// Applies the migrations not yet applied. Safe to run at every start.
pub async fn migrate(pool: &Pool) -> Result<(), DbError> {
    let mut client = pool.get().await?;
    let report = embedded::migrations::runner()
        .run_async(&mut **client)
        .await?;
    for migration in report.applied_migrations() {
        tracing::info!(
            version = migration.version(),
            name = migration.name(),
            "migration applied"
        );
    }
    Ok(())
}

/// True when a connection can be taken and answers.
pub async fn is_reachable(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}
