//! The access policy as one immutable snapshot: member systems, their credentials and their
//! rights, read from PostgreSQL in one transaction. Deciding "who is this token" and "may this
//! system do that" is a lookup in this snapshot, never a query, so the publish path costs no
//! database round trip. The snapshot never decides anything by itself being stale: `Access`
//! replaces it whenever the database says something changed.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};

use crate::domain::SystemId;

/// Publish or subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Publish,
    Subscribe,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "publish" => Some(Self::Publish),
            "subscribe" => Some(Self::Subscribe),
            _ => None,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a right is about: one event type, or every type of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    EventType(String),
    Topic(String),
}

impl Resource {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::EventType(_) => "event_type",
            Self::Topic(_) => "topic",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::EventType(name) | Self::Topic(name) => name,
        }
    }

    pub fn from_parts(kind: &str, name: String) -> Option<Self> {
        match kind {
            "event_type" => Some(Self::EventType(name)),
            "topic" => Some(Self::Topic(name)),
            _ => None,
        }
    }

    /// Does this right's resource cover `event_type`, which lives on `topic`?
    pub fn covers(&self, event_type: &str, topic: &str) -> bool {
        match self {
            Self::EventType(name) => name == event_type,
            Self::Topic(name) => name == topic,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EventType(name) => f.write_str(name),
            Self::Topic(name) => write!(f, "topic {name}"),
        }
    }
}

/// A right in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Right {
    pub id: i64,
    pub system: SystemId,
    pub direction: Direction,
    pub resource: Resource,
    pub purposes: Vec<String>,
    pub owner: String,
    pub granted_by: String,
    pub granted_at: DateTime<Utc>,
}

/// The columns [`Right::from_row`] reads, in order: a query of `access_right` selects these first.
pub(super) const RIGHT_COLUMNS: &str =
    "id, system_id, direction, resource_kind, resource, purposes, owner, granted_by, granted_at";

impl Right {
    /// A right from a row that starts with [`RIGHT_COLUMNS`]; `None` for a row that no longer
    /// parses (it grants nothing).
    pub(super) fn from_row(row: &tokio_postgres::Row) -> Option<Self> {
        Some(Self {
            id: row.get(0),
            system: SystemId::parse(row.get(1)).ok()?,
            direction: Direction::parse(row.get(2))?,
            resource: Resource::from_parts(row.get(3), row.get(4))?,
            purposes: row.get(5),
            owner: row.get(6),
            granted_by: row.get(7),
            granted_at: row.get(8),
        })
    }
}

/// The member system a call was authenticated as, or that the hub acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub system: SystemId,
    /// May change the hub itself (schemas, compatibility levels), not only exchange events.
    pub operator: bool,
    /// The credential used, so that revoking it can end what it opened. `None` when the hub
    /// itself acts for the system (a connector running as it): then only the system's own
    /// state (disabled, removed) ends what it opened.
    pub credential: Option<i64>,
    /// The client certificate presented with a token over mutual TLS, if any: revoking either
    /// ends what they opened.
    pub certificate: Option<i64>,
}

impl Caller {
    /// The hub acting for `system`, as its connectors do: the system's rights apply as to any
    /// call, with no credential of its own.
    pub fn internal(system: SystemId) -> Self {
        Self {
            system,
            operator: false,
            credential: None,
            certificate: None,
        }
    }

    /// True for the hub acting for a system ([`Caller::internal`]), never for a remote caller
    /// (authenticated by a token or a certificate).
    pub fn is_internal(&self) -> bool {
        self.credential.is_none() && self.certificate.is_none()
    }
}

#[derive(Debug, Clone)]
pub(super) struct CredentialEntry {
    pub id: i64,
    pub system: SystemId,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub(super) struct SystemEntry {
    pub operator: bool,
    pub disabled: bool,
}

/// Why a token was not accepted. The token itself is never part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("unknown token")]
    Unknown,
    #[error(
        "unknown client certificate: register it with `lienthong systems cert SYSTEM --file PEM`"
    )]
    UnknownCertificate,
    #[error("the token and the client certificate belong to different member systems")]
    Mismatch,
    #[error("the token was revoked")]
    Revoked,
    #[error("the token has expired; ask an operator for a new one (`lienthong systems token`)")]
    Expired,
    #[error("the member system is disabled")]
    Disabled,
}

impl AuthFailure {
    /// A stable label for metrics and logs.
    pub fn code(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::UnknownCertificate => "unknown_certificate",
            Self::Mismatch => "mismatch",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Disabled => "disabled",
        }
    }
}

/// Why an action was refused: stable code for metrics, words for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Denied {
    pub code: &'static str,
    pub message: String,
}

/// Everything one decision needs about the event type concerned.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub event_type: &'a str,
    /// Topic name without the deployment's prefix, as rights name it.
    pub topic: &'a str,
    pub hub_only: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub(super) generation: i64,
    /// Credential ids by SHA-256 hash of the token.
    pub(super) tokens: HashMap<String, i64>,
    /// Credential ids by SHA-256 fingerprint of the client certificate (DER).
    pub(super) certificates: HashMap<String, i64>,
    pub(super) credentials: HashMap<i64, CredentialEntry>,
    pub(super) systems: HashMap<SystemId, SystemEntry>,
    pub(super) rights: HashMap<SystemId, Vec<Right>>,
}

impl Snapshot {
    /// The caller a token hash belongs to at `now`.
    pub fn authenticate(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Caller, AuthFailure> {
        let credential = self
            .tokens
            .get(token_hash)
            .and_then(|id| self.credentials.get(id))
            .ok_or(AuthFailure::Unknown)?;
        self.caller(credential, now)
    }

    /// The caller a client certificate (by fingerprint) belongs to at `now`.
    pub fn authenticate_certificate(
        &self,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Caller, AuthFailure> {
        let credential = self
            .certificates
            .get(fingerprint)
            .and_then(|id| self.credentials.get(id))
            .ok_or(AuthFailure::UnknownCertificate)?;
        self.caller(credential, now)
    }

    /// Is the credential `caller` authenticated with still good at `now`?
    pub fn still_valid(&self, caller: &Caller, now: DateTime<Utc>) -> Result<(), AuthFailure> {
        if caller.credential.is_none() {
            let system = self
                .systems
                .get(&caller.system)
                .ok_or(AuthFailure::Unknown)?;
            if system.disabled {
                return Err(AuthFailure::Disabled);
            }
        }
        for id in caller.credential.into_iter().chain(caller.certificate) {
            let credential = self.credentials.get(&id).ok_or(AuthFailure::Revoked)?;
            self.caller(credential, now)?;
        }
        Ok(())
    }

    /// When the first of `caller`'s credentials expires, if one does.
    pub fn expiry_of(&self, caller: &Caller) -> Option<DateTime<Utc>> {
        caller
            .credential
            .into_iter()
            .chain(caller.certificate)
            .filter_map(|id| self.credentials.get(&id).and_then(|c| c.expires_at))
            .min()
    }

    fn caller(
        &self,
        credential: &CredentialEntry,
        now: DateTime<Utc>,
    ) -> Result<Caller, AuthFailure> {
        if credential.revoked {
            return Err(AuthFailure::Revoked);
        }
        if credential.expires_at.is_some_and(|at| at <= now) {
            return Err(AuthFailure::Expired);
        }
        let system = self
            .systems
            .get(&credential.system)
            .ok_or(AuthFailure::Unknown)?;
        if system.disabled {
            return Err(AuthFailure::Disabled);
        }
        Ok(Caller {
            system: credential.system.clone(),
            operator: system.operator,
            credential: Some(credential.id),
            certificate: None,
        })
    }

    /// The whole decision for one call: `caller`'s credential is still valid at `now`, the event
    /// type is known (`target`), and a right covers it for `purpose`.
    pub fn check(
        &self,
        caller: &Caller,
        direction: Direction,
        event_type: &str,
        target: Option<Target<'_>>,
        purpose: &str,
        now: DateTime<Utc>,
    ) -> Result<&Right, Denied> {
        self.still_valid(caller, now).map_err(|failure| Denied {
            code: failure.code(),
            message: failure.to_string(),
        })?;
        let target = target.ok_or_else(|| Denied {
            code: "unknown_type",
            message: format!(
                "unknown event type {}; see schemas/topics.toml",
                quoted(event_type)
            ),
        })?;
        self.allows(&caller.system, direction, target, purpose)
    }

    /// The right under which `system` may act on `target` for `purpose`, or why not.
    pub fn allows(
        &self,
        system: &SystemId,
        direction: Direction,
        target: Target<'_>,
        purpose: &str,
    ) -> Result<&Right, Denied> {
        if direction == Direction::Publish && target.hub_only {
            return Err(Denied {
                code: "hub_only",
                message: format!(
                    "only the hub itself produces {} events; no member system may publish them",
                    target.event_type
                ),
            });
        }
        let on_target: Vec<&Right> = self
            .rights
            .get(system)
            .into_iter()
            .flatten()
            .filter(|r| {
                r.direction == direction && r.resource.covers(target.event_type, target.topic)
            })
            .collect();
        if on_target.is_empty() {
            return Err(Denied {
                code: "no_right",
                message: format!(
                    "{system} has no right to {direction} {}; the data's owner grants it through an \
                     operator (`lienthong systems grant`)",
                    target.event_type
                ),
            });
        }
        on_target
            .iter()
            .find(|r| r.purposes.iter().any(|p| p == purpose))
            .copied()
            .ok_or_else(|| {
                let mut covered: Vec<&str> = on_target
                    .iter()
                    .flat_map(|r| r.purposes.iter().map(String::as_str))
                    .collect();
                covered.sort_unstable();
                covered.dedup();
                Denied {
                    code: "purpose",
                    message: format!(
                        "{system} may {direction} {} only for purpose {}, not {}",
                        target.event_type,
                        covered.join(", "),
                        quoted(purpose),
                    ),
                }
            })
    }

    /// True when `system` holds at least one right in `direction`, on anything.
    pub fn has_any_anywhere(&self, system: &SystemId, direction: Direction) -> bool {
        self.rights
            .get(system)
            .into_iter()
            .flatten()
            .any(|r| r.direction == direction)
    }

    /// True when `system` holds at least one right on `target` in `direction`, whatever purpose.
    pub fn has_any(&self, system: &SystemId, direction: Direction, target: Target<'_>) -> bool {
        self.rights
            .get(system)
            .into_iter()
            .flatten()
            .any(|r| r.direction == direction && r.resource.covers(target.event_type, target.topic))
    }
}

/// Caller input quoted back in a refusal or a record: cut to a sane length and escaped, so it
/// cannot carry control characters into a terminal or a log line.
fn quoted(text: &str) -> String {
    format!("{:?}", text.chars().take(64).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(id: &str) -> SystemId {
        SystemId::parse(id).expect("valid id")
    }

    fn snapshot() -> Snapshot {
        let now = Utc::now();
        let right = |id, sys: &str, direction, resource, purposes: &[&str]| Right {
            id,
            system: system(sys),
            direction,
            resource,
            purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
            owner: "owner".into(),
            granted_by: "op".into(),
            granted_at: now,
        };
        Snapshot {
            generation: 1,
            tokens: (1..=4).map(|id| (format!("h{id}"), id)).collect(),
            certificates: HashMap::new(),
            credentials: [
                (1, "onestop", None, false),
                (2, "onestop", None, true),
                (
                    3,
                    "onestop",
                    Some(now - chrono::Duration::seconds(1)),
                    false,
                ),
                (4, "gone", None, false),
            ]
            .into_iter()
            .map(|(id, sys, expires_at, revoked)| {
                let entry = CredentialEntry {
                    id,
                    system: system(sys),
                    expires_at,
                    revoked,
                };
                (id, entry)
            })
            .collect(),
            systems: [
                (
                    system("onestop"),
                    SystemEntry {
                        operator: false,
                        disabled: false,
                    },
                ),
                (
                    system("gone"),
                    SystemEntry {
                        operator: true,
                        disabled: true,
                    },
                ),
            ]
            .into(),
            rights: [(
                system("onestop"),
                vec![
                    right(
                        1,
                        "onestop",
                        Direction::Publish,
                        Resource::EventType("birth.dossier-submitted".into()),
                        &["civil-registration"],
                    ),
                    right(
                        2,
                        "onestop",
                        Direction::Subscribe,
                        Resource::Topic("lienthong.birth".into()),
                        &["dossier-tracking"],
                    ),
                ],
            )]
            .into(),
        }
    }

    const SUBMITTED: Target<'static> = Target {
        event_type: "birth.dossier-submitted",
        topic: "lienthong.birth",
        hub_only: false,
    };

    #[test]
    fn tokens_resolve_only_while_valid() {
        let s = snapshot();
        let now = Utc::now();
        assert_eq!(s.authenticate("h1", now).map(|c| c.credential), Ok(Some(1)));
        assert_eq!(s.authenticate("h2", now), Err(AuthFailure::Revoked));
        assert_eq!(s.authenticate("h3", now), Err(AuthFailure::Expired));
        assert_eq!(s.authenticate("h4", now), Err(AuthFailure::Disabled));
        assert_eq!(s.authenticate("nope", now), Err(AuthFailure::Unknown));
    }

    #[test]
    fn a_right_covers_its_type_or_topic_and_its_purposes_only() {
        let s = snapshot();
        let onestop = system("onestop");
        let granted = s.allows(
            &onestop,
            Direction::Publish,
            SUBMITTED,
            "civil-registration",
        );
        assert_eq!(granted.map(|r| r.id), Ok(1));
        let other_purpose = s.allows(&onestop, Direction::Publish, SUBMITTED, "fee-payment");
        assert_eq!(other_purpose.map_err(|d| d.code), Err("purpose"));
        let accepted = Target {
            event_type: "birth.dossier-accepted",
            ..SUBMITTED
        };
        let no_right = s.allows(&onestop, Direction::Publish, accepted, "civil-registration");
        assert_eq!(no_right.map_err(|d| d.code), Err("no_right"));
        let by_topic = s.allows(&onestop, Direction::Subscribe, accepted, "dossier-tracking");
        assert_eq!(by_topic.map(|r| r.id), Ok(2));
        assert!(!s.has_any(&system("gone"), Direction::Publish, SUBMITTED));
    }

    #[test]
    fn nobody_publishes_a_hub_only_type() {
        let s = snapshot();
        let audit = Target {
            event_type: "audit.data-access-logged",
            topic: "lienthong.audit",
            hub_only: true,
        };
        let denied = s.allows(&system("onestop"), Direction::Publish, audit, "audit");
        assert_eq!(denied.map_err(|d| d.code), Err("hub_only"));
    }
}
