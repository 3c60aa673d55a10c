//! Member systems and their bearer tokens. A token is 32 random bytes, shown once; the database
//! keeps its SHA-256 hash (a token is random, not a password, so a fast hash is enough and a
//! leaked table reveals no usable token).

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::db::DbError;
use crate::domain::SystemId;

pub(super) const TOKEN_PREFIX: &str = "lt_";

#[derive(Debug, Clone)]
pub struct MemberSystem {
    pub id: SystemId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub operator: bool,
    /// May ask for citizens' reports (`AuditService.CitizenReport`) without being an operator.
    pub citizen_reports: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    /// Credentials (tokens and client certificates) neither revoked nor expired.
    pub active_credentials: i64,
    /// When the first of those credentials expires, if any does.
    pub next_expiry: Option<DateTime<Utc>>,
}

/// One credential (a token or a client certificate) as operators see it: never the token, only
/// its id and state.
#[derive(Debug, Clone)]
pub struct CredentialInfo {
    pub id: i64,
    /// `token` or `certificate`.
    pub kind: String,
    /// A certificate's subject; empty for a token.
    pub subject: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
}

/// A newly issued token: the only time the secret exists outside the caller's hands. Its
/// `Debug` leaves the token out, so it cannot reach a log by accident.
pub struct IssuedToken {
    pub system: SystemId,
    pub id: i64,
    pub token: String,
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("system", &self.system)
            .field("id", &self.id)
            .field("token", &"***")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "member system {0} already exists; issue another token with `lienthong systems token {0}`"
    )]
    SystemExists(SystemId),
    #[error("member system {0} does not exist; create it with `lienthong systems add {0}`")]
    UnknownSystem(SystemId),
    #[error(
        "member system {system} has no credential #{id}; see `lienthong systems credentials {system}`"
    )]
    UnknownCredential { system: SystemId, id: i64 },
    #[error(
        "member system {system} has no right #{id} in force; see `lienthong systems rights {system}`"
    )]
    UnknownRight { system: SystemId, id: i64 },
    #[error("cannot grant this right: {0}")]
    InvalidGrant(String),
    #[error("not a usable client certificate: {0}")]
    InvalidCertificate(String),
    #[error("this certificate is already registered; see `lienthong systems credentials`")]
    CertificateRegistered,
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
        expires_at: Option<DateTime<Utc>>,
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
        let row = tx
            .query_one(
                "INSERT INTO system_credential (system_id, token_hash, expires_at)
                 VALUES ($1, $2, $3) RETURNING id",
                &[&id.as_str(), &hash(&token), &expires_at],
            )
            .await?;
        tx.commit().await?;
        Ok(IssuedToken {
            system: id.clone(),
            id: row.get(0),
            token,
            expires_at,
        })
    }

    /// Issues one more token for an existing system (rotation: revoke the old one afterwards).
    pub async fn issue_token(
        &self,
        id: &SystemId,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<IssuedToken, AccessError> {
        let client = self.pool.get().await?;
        let token = new_token();
        let row = client
            .query_opt(
                "INSERT INTO system_credential (system_id, token_hash, expires_at)
                 SELECT id, $2, $3 FROM member_system WHERE id = $1 RETURNING id",
                &[&id.as_str(), &hash(&token), &expires_at],
            )
            .await?
            .ok_or_else(|| AccessError::UnknownSystem(id.clone()))?;
        Ok(IssuedToken {
            system: id.clone(),
            id: row.get(0),
            token,
            expires_at,
        })
    }

    /// Revokes one credential of `system`, a token or a certificate (or all its tokens when
    /// `token` is `None`); returns how many were still active. Running hubs stop accepting them within their refresh interval,
    /// including the subscriptions they opened.
    pub async fn revoke_credentials(
        &self,
        system: &SystemId,
        token: Option<i64>,
        by: &str,
    ) -> Result<u64, AccessError> {
        self.require_system_exists(system).await?;
        let client = self.pool.get().await?;
        let revoked = client
            .execute(
                "UPDATE system_credential SET revoked_at = now(), revoked_by = $3
                 WHERE system_id = $1 AND revoked_at IS NULL
                   AND (id = $2 OR ($2::BIGINT IS NULL AND kind = 'token'))",
                &[&system.as_str(), &token, &by],
            )
            .await?;
        if let (Some(id), 0) = (token, revoked) {
            let exists = client
                .query_opt(
                    "SELECT 1 FROM system_credential WHERE system_id = $1 AND id = $2",
                    &[&system.as_str(), &id],
                )
                .await?;
            if exists.is_none() {
                return Err(AccessError::UnknownCredential {
                    system: system.clone(),
                    id,
                });
            }
        }
        Ok(revoked)
    }

    /// Disables (or enables again) a member system: while disabled, none of its tokens works.
    pub async fn set_disabled(&self, system: &SystemId, disabled: bool) -> Result<(), AccessError> {
        let client = self.pool.get().await?;
        let updated = client
            .execute(
                "UPDATE member_system
                 SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END
                 WHERE id = $1",
                &[&system.as_str(), &disabled],
            )
            .await?;
        if updated == 0 {
            return Err(AccessError::UnknownSystem(system.clone()));
        }
        Ok(())
    }

    /// Grants or removes operator status (changing the hub itself: schemas, levels).
    pub async fn set_operator(&self, system: &SystemId, operator: bool) -> Result<(), AccessError> {
        self.set_flag(
            system,
            "UPDATE member_system SET operator = $2 WHERE id = $1",
            operator,
        )
        .await
    }

    /// Runs `update`, which sets one of a system's flags to `$2` where its id is `$1`.
    async fn set_flag(
        &self,
        system: &SystemId,
        update: &str,
        value: bool,
    ) -> Result<(), AccessError> {
        let client = self.pool.get().await?;
        let updated = client.execute(update, &[&system.as_str(), &value]).await?;
        if updated == 0 {
            return Err(AccessError::UnknownSystem(system.clone()));
        }
        Ok(())
    }

    /// Allows a system (the national portal) to ask for citizens' "who used my data" reports,
    /// or stops it.
    pub async fn set_citizen_reports(
        &self,
        system: &SystemId,
        allowed: bool,
    ) -> Result<(), AccessError> {
        self.set_flag(
            system,
            "UPDATE member_system SET citizen_reports = $2 WHERE id = $1",
            allowed,
        )
        .await
    }

    /// Whether `system` may ask for citizens' reports: an operator, or a system allowed to.
    pub async fn answers_citizens(&self, system: &SystemId) -> Result<bool, AccessError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT operator OR citizen_reports FROM member_system
                 WHERE id = $1 AND disabled_at IS NULL",
                &[&system.as_str()],
            )
            .await?;
        Ok(row.is_some_and(|r| r.get(0)))
    }

    /// The credentials of one system, newest first.
    pub async fn credentials(&self, system: &SystemId) -> Result<Vec<CredentialInfo>, AccessError> {
        self.require_system_exists(system).await?;
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, kind, coalesce(subject, ''), created_at, expires_at, revoked_at,
                        revoked_by
                 FROM system_credential WHERE system_id = $1 ORDER BY id DESC",
                &[&system.as_str()],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| CredentialInfo {
                id: row.get(0),
                kind: row.get(1),
                subject: row.get(2),
                created_at: row.get(3),
                expires_at: row.get(4),
                revoked_at: row.get(5),
                revoked_by: row.get(6),
            })
            .collect())
    }

    /// Registers a client certificate (PEM) of `system`: over mutual TLS it then identifies the
    /// system, until it expires or is revoked. Returns the credential's id and the certificate's
    /// expiry.
    pub async fn add_certificate(
        &self,
        system: &SystemId,
        pem: &[u8],
    ) -> Result<(i64, DateTime<Utc>), AccessError> {
        let certificate = ClientCertificate::from_pem(pem)?;
        let client = self.pool.get().await?;
        require_system(&client, system).await?;
        let row = client
            .query_opt(
                "INSERT INTO system_credential (system_id, token_hash, expires_at, kind, subject)
                 VALUES ($1, $2, $3, 'certificate', $4)
                 ON CONFLICT (token_hash) DO NOTHING RETURNING id",
                &[
                    &system.as_str(),
                    &certificate.fingerprint,
                    &certificate.not_after,
                    &certificate.subject,
                ],
            )
            .await?
            .ok_or(AccessError::CertificateRegistered)?;
        Ok((row.get(0), certificate.not_after))
    }

    pub async fn require_system_exists(&self, system: &SystemId) -> Result<(), AccessError> {
        require_system(&**self.pool.get().await?, system).await
    }

    pub async fn list_systems(&self) -> Result<Vec<MemberSystem>, AccessError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT s.id, s.name, s.created_at, s.operator, s.disabled_at,
                        count(c.id), min(c.expires_at), s.citizen_reports
                 FROM member_system s
                 LEFT JOIN system_credential c ON c.system_id = s.id AND c.revoked_at IS NULL
                      AND (c.expires_at IS NULL OR c.expires_at > now())
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
                        operator: row.get(3),
                        disabled_at: row.get(4),
                        active_credentials: row.get(5),
                        next_expiry: row.get(6),
                        citizen_reports: row.get(7),
                    })
                })
            })
            .collect()
    }
}

/// Fails with [`AccessError::UnknownSystem`] unless `system` is registered.
pub(super) async fn require_system(
    client: &tokio_postgres::Client,
    system: &SystemId,
) -> Result<(), AccessError> {
    client
        .query_opt(
            "SELECT 1 FROM member_system WHERE id = $1",
            &[&system.as_str()],
        )
        .await?
        .map(|_| ())
        .ok_or_else(|| AccessError::UnknownSystem(system.clone()))
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

/// What the hub keeps of a client certificate.
struct ClientCertificate {
    fingerprint: String,
    subject: String,
    not_after: DateTime<Utc>,
}

impl ClientCertificate {
    fn from_pem(pem: &[u8]) -> Result<Self, AccessError> {
        let invalid = |why: String| AccessError::InvalidCertificate(why);
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
            .map_err(|e| invalid(format!("no PEM certificate found ({e})")))?;
        let certificate = pem
            .parse_x509()
            .map_err(|e| invalid(format!("not an X.509 certificate ({e})")))?;
        let not_after = DateTime::from_timestamp(certificate.validity().not_after.timestamp(), 0)
            .ok_or_else(|| invalid("its expiry is out of range".to_owned()))?;
        if not_after <= Utc::now() {
            return Err(invalid(format!("it expired on {not_after}")));
        }
        Ok(Self {
            fingerprint: certificate_fingerprint(&pem.contents),
            subject: certificate.subject().to_string(),
            not_after,
        })
    }
}

/// How a client certificate is registered and recognised: SHA-256 of its DER encoding, hex.
pub(super) fn certificate_fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

pub(super) fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
