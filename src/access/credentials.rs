//! Member systems and their bearer tokens. A token is 32 random bytes, shown once; the database
//! keeps its SHA-256 hash (a token is random, not a password, so a fast hash is enough and a
//! leaked table reveals no usable token).

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::db::DbError;
use crate::domain::SystemId;

const TOKEN_PREFIX: &str = "lt_";

/// The member system a call was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub system: SystemId,
    /// May change the hub itself (schemas, compatibility levels), not only exchange events.
    pub operator: bool,
}

#[derive(Debug, Clone)]
pub struct MemberSystem {
    pub id: SystemId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub active_tokens: i64,
}

/// A newly issued token: the only time the secret exists outside the caller's hands.
#[derive(Debug)]
pub struct IssuedToken {
    pub system: SystemId,
    pub token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "member system {0} already exists; issue another token with `lienthong systems token {0}`"
    )]
    SystemExists(SystemId),
    #[error("member system {0} does not exist; create it with `lienthong systems add {0}`")]
    UnknownSystem(SystemId),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for AccessError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

impl From<deadpool_postgres::PoolError> for AccessError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Db(DbError::Pool(e))
    }
}

#[derive(Clone)]
pub struct Credentials {
    pool: Pool,
}

impl Credentials {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Creates a member system (an operator when `operator`) with its first token.
    pub async fn add_system(
        &self,
        id: &SystemId,
        name: &str,
        operator: bool,
    ) -> Result<IssuedToken, AccessError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let inserted = tx
            .execute(
                "INSERT INTO member_system (id, name, operator) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
                &[&id.as_str(), &name, &operator],
            )
            .await?;
        if inserted == 0 {
            return Err(AccessError::SystemExists(id.clone()));
        }
        let token = new_token();
        tx.execute(
            "INSERT INTO system_credential (system_id, token_hash) VALUES ($1, $2)",
            &[&id.as_str(), &hash(&token)],
        )
        .await?;
        tx.commit().await?;
        Ok(IssuedToken {
            system: id.clone(),
            token,
        })
    }

    /// Issues one more token for an existing system (rotation: revoke the old one afterwards).
    pub async fn issue_token(&self, id: &SystemId) -> Result<IssuedToken, AccessError> {
        let client = self.pool.get().await?;
        let token = new_token();
        let inserted = client
            .execute(
                "INSERT INTO system_credential (system_id, token_hash)
                 SELECT id, $2 FROM member_system WHERE id = $1",
                &[&id.as_str(), &hash(&token)],
            )
            .await?;
        if inserted == 0 {
            return Err(AccessError::UnknownSystem(id.clone()));
        }
        Ok(IssuedToken {
            system: id.clone(),
            token,
        })
    }

    pub async fn list_systems(&self) -> Result<Vec<MemberSystem>, AccessError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT s.id, s.name, s.created_at,
                        count(c.id) FILTER (WHERE c.revoked_at IS NULL)
                 FROM member_system s LEFT JOIN system_credential c ON c.system_id = s.id
                 GROUP BY s.id ORDER BY s.id",
                &[],
            )
            .await?;
        rows.into_iter()
            .filter_map(|row| {
                let id: String = row.get(0);
                // Ids were parsed on the way in; a row that no longer parses is skipped, not fatal.
                SystemId::parse(&id).ok().map(|id| {
                    Ok(MemberSystem {
                        id,
                        name: row.get(1),
                        created_at: row.get(2),
                        active_tokens: row.get(3),
                    })
                })
            })
            .collect()
    }

    /// The caller a bearer token belongs to, if the token is valid and not revoked.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Caller>, AccessError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT c.system_id, s.operator FROM system_credential c
                 JOIN member_system s ON s.id = c.system_id
                 WHERE c.token_hash = $1 AND c.revoked_at IS NULL",
                &[&hash(token)],
            )
            .await?;
        Ok(row.and_then(|row| {
            SystemId::parse(row.get::<_, &str>(0))
                .ok()
                .map(|system| Caller {
                    system,
                    operator: row.get(1),
                })
        }))
    }
}

/// The token of an `Authorization: Bearer <token>` header value (the scheme is
/// case-insensitive, RFC 7235).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
