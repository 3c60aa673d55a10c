//! PostgreSQL: the connection pool and the versioned migrations in `migrations/`, applied at
//! start-up. Each part of the hub owns its own tables; nothing here knows what they mean.
//! Every connection has a `statement_timeout`, and the pool has wait and create timeouts, because
//! neither PostgreSQL nor deadpool sets any by default.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

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
    #[error("PostgreSQL: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("applying migrations: {0}")]
    Migration(#[from] refinery::Error),
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
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(config.pool_max_size)
        .wait_timeout(Some(config.pool_wait_timeout()))
        .create_timeout(Some(config.connect_timeout()))
        .recycle_timeout(Some(config.connect_timeout()))
        .runtime(Runtime::Tokio1)
        .build()?)
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
