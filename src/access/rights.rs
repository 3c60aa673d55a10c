//! Granting, revoking and listing access rights (the operator's side; enforcement is in
//! `enforce`). A grant is checked against the catalogue and the purposes before it is stored, so
//! a right always names something that exists. Rights are revoked, never deleted.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};

use std::collections::BTreeSet;

use super::AccessError;
use super::catalogue::AccessCatalogue;
use super::credentials::require_system;
use super::policy::{Direction, RIGHT_COLUMNS, Resource, Right};
use crate::db::DbError;
use crate::domain::SystemId;

/// A right as an operator asks for it.
#[derive(Debug, Clone)]
pub struct Grant {
    pub system: SystemId,
    pub direction: Direction,
    pub resource: Resource,
    pub purposes: Vec<String>,
    /// The data provider on whose behalf the right is granted (a member system).
    pub owner: SystemId,
    /// The person granting it, as they sign the change.
    pub granted_by: String,
    /// Why: the agreement or request it rests on.
    pub note: String,
}

/// What a grant did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granted {
    /// A new right, with its id.
    New(i64),
    /// The same right was already in force: nothing changed (its note and signer stay).
    Existing(i64),
}

impl Granted {
    pub fn id(self) -> i64 {
        match self {
            Self::New(id) | Self::Existing(id) => id,
        }
    }
}

/// A right as stored, in force or revoked.
#[derive(Debug, Clone)]
pub struct RightRecord {
    pub right: Right,
    pub note: String,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
}

impl RightRecord {
    /// A right from a row of [`RIGHT_COLUMNS`] then `note, revoked_at, revoked_by`.
    fn from_row(row: &tokio_postgres::Row) -> Option<Self> {
        Some(Self {
            right: Right::from_row(row)?,
            note: row.get(9),
            revoked_at: row.get(10),
            revoked_by: row.get(11),
        })
    }

    /// True when this right let its system `direction` `event_type` (on `topic`) for
    /// `purpose` at `at`: granted before, not yet revoked.
    pub fn covered(
        &self,
        direction: Direction,
        event_type: &str,
        topic: &str,
        purpose: &str,
        at: DateTime<Utc>,
    ) -> bool {
        self.right.direction == direction
            && self.right.resource.covers(event_type, topic)
            && self.right.purposes.iter().any(|p| p == purpose)
            && self.right.granted_at <= at
            && self.revoked_at.is_none_or(|revoked| revoked > at)
    }
}

/// A refused attempt, as recorded.
#[derive(Debug, Clone)]
pub struct DenialRecord {
    pub at: DateTime<Utc>,
    pub system: String,
    pub action: String,
    pub resource: String,
    pub purpose: String,
    pub reason: String,
}

#[derive(Clone)]
pub struct Rights {
    pool: Pool,
}

impl Rights {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Stores `grant` after checking that everything it names exists; returns the right's id.
    pub async fn grant(
        &self,
        grant: &Grant,
        catalogue: &AccessCatalogue,
    ) -> Result<Granted, AccessError> {
        check(grant, catalogue)?;
        let client = self.pool.get().await?;
        for system in [&grant.system, &grant.owner] {
            require_system(&client, system).await?;
        }
        // Stored sorted and without duplicates, so the unique index sees one purpose set.
        let purposes: Vec<&str> = grant
            .purposes
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let inserted = client
            .query_opt(
                "INSERT INTO access_right
                    (system_id, direction, resource_kind, resource, purposes, owner, granted_by, note)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (system_id, direction, resource_kind, resource, owner, purposes)
                    WHERE revoked_at IS NULL DO NOTHING
                 RETURNING id",
                &[
                    &grant.system.as_str(),
                    &grant.direction.as_str(),
                    &grant.resource.kind(),
                    &grant.resource.name(),
                    &purposes,
                    &grant.owner.as_str(),
                    &grant.granted_by,
                    &grant.note,
                ],
            )
            .await?;
        if let Some(row) = inserted {
            return Ok(Granted::New(row.get(0)));
        }
        // The same right is already in force (a repeated grant, perhaps concurrent).
        let row = client
            .query_one(
                "SELECT id FROM access_right
                 WHERE system_id = $1 AND direction = $2 AND resource_kind = $3 AND resource = $4
                   AND owner = $5 AND purposes = $6 AND revoked_at IS NULL",
                &[
                    &grant.system.as_str(),
                    &grant.direction.as_str(),
                    &grant.resource.kind(),
                    &grant.resource.name(),
                    &grant.owner.as_str(),
                    &purposes,
                ],
            )
            .await?;
        Ok(Granted::Existing(row.get(0)))
    }

    /// Revokes right `id` of `system`.
    pub async fn revoke(&self, system: &SystemId, id: i64, by: &str) -> Result<(), AccessError> {
        let client = self.pool.get().await?;
        let updated = client
            .execute(
                "UPDATE access_right SET revoked_at = now(), revoked_by = $3
                 WHERE system_id = $1 AND id = $2 AND revoked_at IS NULL",
                &[&system.as_str(), &id, &by],
            )
            .await?;
        if updated == 0 {
            return Err(AccessError::UnknownRight {
                system: system.clone(),
                id,
            });
        }
        Ok(())
    }

    /// The rights of `system`, in force first; revoked ones too when `include_revoked`.
    pub async fn list(
        &self,
        system: &SystemId,
        include_revoked: bool,
    ) -> Result<Vec<RightRecord>, AccessError> {
        let client = self.pool.get().await?;
        let query = format!(
            "SELECT {RIGHT_COLUMNS}, note, revoked_at, revoked_by FROM access_right
             WHERE system_id = $1 AND ($2 OR revoked_at IS NULL)
             ORDER BY revoked_at IS NOT NULL, direction, resource, id"
        );
        let rows = client
            .query(&query, &[&system.as_str(), &include_revoked])
            .await?;
        Ok(rows.iter().filter_map(RightRecord::from_row).collect())
    }

    /// Every right ever granted, in force or revoked, oldest first: what an auditor replays to
    /// judge past transfers.
    pub async fn history(&self) -> Result<Vec<RightRecord>, AccessError> {
        let client = self.pool.get().await?;
        let query = format!(
            "SELECT {RIGHT_COLUMNS}, note, revoked_at, revoked_by FROM access_right ORDER BY id"
        );
        let rows = client.query(&query, &[]).await?;
        Ok(rows.iter().filter_map(RightRecord::from_row).collect())
    }

    /// The most recent refused attempts, of one system or of all.
    pub async fn denials(
        &self,
        system: Option<&SystemId>,
        limit: i64,
    ) -> Result<Vec<DenialRecord>, AccessError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT at, system_id, action, resource, purpose, reason FROM access_denial
                 WHERE $1::TEXT IS NULL OR system_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
                &[&system.map(SystemId::as_str), &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| DenialRecord {
                at: row.get(0),
                system: row.get(1),
                action: row.get(2),
                resource: row.get(3),
                purpose: row.get(4),
                reason: row.get(5),
            })
            .collect())
    }
}

/// Everything about a grant that can be checked without the database.
fn check(grant: &Grant, catalogue: &AccessCatalogue) -> Result<(), AccessError> {
    let refuse = |problem: String| Err(AccessError::InvalidGrant(problem));
    match &grant.resource {
        Resource::EventType(name) => match catalogue.event_types.get(name) {
            None => {
                return refuse(format!(
                    "unknown event type {name:?}; see schemas/topics.toml"
                ));
            }
            Some(info) if info.hub_only && grant.direction == Direction::Publish => {
                return refuse(format!(
                    "only the hub itself produces {name} events (hub_only in schemas/topics.toml)"
                ));
            }
            Some(_) => {}
        },
        Resource::Topic(name) => {
            if !catalogue.has_topic(name) {
                return refuse(format!("unknown topic {name:?}; see schemas/topics.toml"));
            }
            if grant.direction == Direction::Publish && catalogue.topic_has_hub_only(name) {
                return refuse(format!(
                    "topic {name} carries events only the hub produces; grant publish per event type"
                ));
            }
        }
    }
    if grant.purposes.is_empty() {
        return refuse("name at least one purpose (--purpose)".to_owned());
    }
    if let Some(unknown) = grant
        .purposes
        .iter()
        .find(|p| catalogue.purposes.get(p).is_none())
    {
        let known: Vec<&str> = catalogue.purposes.codes().collect();
        return refuse(format!(
            "unknown purpose {unknown:?}; known purposes (schemas/access/purposes.toml): {}",
            known.join(", ")
        ));
    }
    if grant.direction == Direction::Subscribe {
        // A right to receive nothing would look granted and fail every subscription.
        let declared = |purpose: &str| match &grant.resource {
            Resource::EventType(name) => catalogue.disclosures.fields(name, purpose).is_some(),
            Resource::Topic(name) => catalogue.event_types.iter().any(|(event_type, info)| {
                info.topic == *name && catalogue.disclosures.fields(event_type, purpose).is_some()
            }),
        };
        if let Some(purpose) = grant.purposes.iter().find(|p| !declared(p)) {
            return refuse(format!(
                "schemas/access/disclosure.toml declares no fields of {} for purpose {purpose}; \
                 declare what the purpose may see first",
                grant.resource
            ));
        }
    }
    if grant.granted_by.trim().is_empty() {
        return refuse("say who grants the right (--by)".to_owned());
    }
    Ok(())
}

/// The member systems entitled now to receive `event_type`: enabled, holding a subscribe right
/// in force on it or on its `topic` (the catalogue's name, without the deployment's prefix).
pub async fn subscribers(
    client: &impl GenericClient,
    event_type: &str,
    topic: &str,
) -> Result<Vec<String>, DbError> {
    let rows = client
        .query(
            "SELECT DISTINCT r.system_id
             FROM access_right r JOIN member_system m ON m.id = r.system_id
             WHERE r.direction = 'subscribe' AND r.revoked_at IS NULL AND m.disabled_at IS NULL
               AND ((r.resource_kind = 'event_type' AND r.resource = $1)
                    OR (r.resource_kind = 'topic' AND r.resource = $2))
             ORDER BY 1",
            &[&event_type, &topic],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}
