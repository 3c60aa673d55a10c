//! The access policy's data files in `schemas/access/` (purposes and field disclosure) and what
//! they are checked against: the catalogue's event types. Loaded once, at start-up or by the CLI;
//! a mistake in them stops the hub with the file and the entry named.

use std::collections::HashMap;
use std::path::Path;

use super::disclosure::Disclosures;
use super::policy_file::PolicyFileError;
use super::purposes::Purposes;

/// What the access policy knows about one event type of the catalogue.
#[derive(Debug, Clone)]
pub struct EventTypeInfo {
    /// Topic name without the deployment's prefix.
    pub topic: String,
    pub hub_only: bool,
}

/// Everything rights are checked against: the event types, the purposes and which fields each
/// purpose may see.
#[derive(Debug, Clone)]
pub struct AccessCatalogue {
    pub event_types: HashMap<String, EventTypeInfo>,
    pub purposes: Purposes,
    pub disclosures: Disclosures,
}

impl AccessCatalogue {
    /// Reads `purposes.toml` and `disclosure.toml` from `dir` (`schemas/access/`), checking
    /// them against `event_types`.
    pub fn load(
        dir: &Path,
        event_types: HashMap<String, EventTypeInfo>,
    ) -> Result<Self, PolicyFileError> {
        let purposes = Purposes::load(dir)?;
        let disclosures = Disclosures::load(dir, &purposes, |t| event_types.contains_key(t))?;
        Ok(Self {
            event_types,
            purposes,
            disclosures,
        })
    }

    pub(super) fn has_topic(&self, topic: &str) -> bool {
        self.event_types.values().any(|info| info.topic == topic)
    }

    /// True when some event type of `topic` is produced by the hub alone.
    pub(super) fn topic_has_hub_only(&self, topic: &str) -> bool {
        self.event_types
            .values()
            .any(|info| info.topic == topic && info.hub_only)
    }
}
