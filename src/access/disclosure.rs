//! Field-level minimisation: which fields of an event a subscriber may receive for its purpose,
//! declared in `schemas/access/disclosure.toml`, and the projection applied to each delivery.
//! Projection works on the decoded payload, after the record was read with its writer schema,
//! so the bytes on Kafka and the registered schemas are untouched (decision 0006).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::policy_file::{PolicyFileError, read_toml};
use super::purposes::Purposes;

/// The fields one purpose may see of one event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldSet {
    /// The whole value.
    All,
    /// Only these members of an object (each with what it may show of its own value).
    Some(BTreeMap<String, FieldSet>),
}

impl FieldSet {
    /// Builds the set from dot-separated paths; `*` alone means everything.
    fn from_paths<'a>(paths: impl IntoIterator<Item = &'a str>) -> Self {
        let mut set = Self::Some(BTreeMap::new());
        for path in paths {
            if path == "*" {
                return Self::All;
            }
            set.insert(path.split('.'));
        }
        set
    }

    fn insert<'a>(&mut self, mut parts: impl Iterator<Item = &'a str>) {
        let Self::Some(members) = self else {
            return; // Already everything.
        };
        let Some(first) = parts.next() else {
            *self = Self::All;
            return;
        };
        members
            .entry(first.to_owned())
            .or_insert_with(|| Self::Some(BTreeMap::new()))
            .insert(parts);
    }

    /// Removes from `value` every field this set does not show; returns the dotted paths of
    /// what was removed, each once. A null stays (it shows nothing) and is not reported.
    pub fn apply(&self, value: &mut Value) -> Vec<String> {
        let mut withheld = BTreeSet::new();
        if !self.apply_at(value, "", &mut withheld) {
            *value = Value::Null;
        }
        withheld.into_iter().collect()
    }

    /// Projects `value` (found at `at`); false when none of it may be shown, so the caller
    /// removes it and reports `at`.
    fn apply_at(&self, value: &mut Value, at: &str, withheld: &mut BTreeSet<String>) -> bool {
        let Self::Some(members) = self else {
            return true;
        };
        let path = |key: &str| {
            if at.is_empty() {
                key.to_owned()
            } else {
                format!("{at}.{key}")
            }
        };
        match value {
            Value::Null => true,
            Value::Object(object) => {
                object.retain(|key, member| {
                    let shown = members
                        .get(key)
                        .is_some_and(|set| set.apply_at(member, &path(key), withheld));
                    if !shown {
                        withheld.insert(path(key));
                    }
                    shown
                });
                true
            }
            Value::Array(items) => {
                let before = items.len();
                items.retain_mut(|item| self.apply_at(item, at, withheld));
                if items.len() < before {
                    withheld.insert(at.to_owned());
                }
                true
            }
            // A scalar where only some members of an object may be shown: nothing to show.
            _ => false,
        }
    }

    /// Every declared path, for checking them against the JSON Schema.
    pub fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_paths("", &mut out);
        out
    }

    fn collect_paths(&self, at: &str, out: &mut Vec<String>) {
        match self {
            Self::All if !at.is_empty() => out.push(at.to_owned()),
            Self::All => {}
            Self::Some(members) => {
                for (key, set) in members {
                    let path = if at.is_empty() {
                        key.clone()
                    } else {
                        format!("{at}.{key}")
                    };
                    set.collect_paths(&path, out);
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisclosureFile {
    disclosure: Vec<DisclosureEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisclosureEntry {
    purpose: String,
    event_types: Vec<String>,
    fields: Vec<String>,
}

/// Every declaration of `disclosure.toml`, by (event type, purpose).
#[derive(Debug, Clone, Default)]
pub struct Disclosures {
    by_key: HashMap<(String, String), Arc<FieldSet>>,
}

impl Disclosures {
    pub(super) fn load(
        dir: &Path,
        purposes: &Purposes,
        known_event_type: impl Fn(&str) -> bool,
    ) -> Result<Self, PolicyFileError> {
        let path = dir.join("disclosure.toml");
        let file: DisclosureFile = read_toml(&path)?;
        let mut by_key = HashMap::new();
        for (index, entry) in file.disclosure.iter().enumerate() {
            let invalid = |problem: String| PolicyFileError::Invalid {
                path: path.clone(),
                problem: format!(
                    "[[disclosure]] #{} ({}): {problem}",
                    index + 1,
                    entry.purpose
                ),
            };
            if purposes.get(&entry.purpose).is_none() {
                return Err(invalid("unknown purpose; see purposes.toml".to_owned()));
            }
            if entry.event_types.is_empty() {
                return Err(invalid("list at least one event type".to_owned()));
            }
            if entry.fields.is_empty() {
                return Err(invalid("list at least one field, or \"*\"".to_owned()));
            }
            if let Some(bad) = entry.fields.iter().find(|f| {
                f.is_empty() || f.split('.').any(str::is_empty) || (f.contains('*') && *f != "*")
            }) {
                return Err(invalid(format!(
                    "field {bad:?}: a field is a dot-separated path such as child.full_name, or \"*\" alone"
                )));
            }
            let set = Arc::new(FieldSet::from_paths(
                entry.fields.iter().map(String::as_str),
            ));
            for event_type in &entry.event_types {
                if !known_event_type(event_type) {
                    return Err(invalid(format!(
                        "unknown event type {event_type:?}; see schemas/topics.toml"
                    )));
                }
                let key = (event_type.clone(), entry.purpose.clone());
                if by_key.insert(key, set.clone()).is_some() {
                    return Err(invalid(format!(
                        "{event_type} is declared twice for this purpose"
                    )));
                }
            }
        }
        Ok(Self { by_key })
    }

    /// What `purpose` may see of `event_type`; `None` when nothing is declared (no delivery).
    pub fn fields(&self, event_type: &str, purpose: &str) -> Option<Arc<FieldSet>> {
        self.by_key
            .get(&(event_type.to_owned(), purpose.to_owned()))
            .cloned()
    }

    /// Every declaration, for checks and documentation.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &FieldSet)> {
        self.by_key
            .iter()
            .map(|((event_type, purpose), set)| (event_type.as_str(), purpose.as_str(), &**set))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_declared_fields_reach_the_subscriber_and_the_rest_is_named() {
        let set =
            FieldSet::from_paths(["dossier_code", "child.full_name", "mother", "fees.amount"]);
        let mut payload = json!({
            "dossier_code": "G22.99.08-261120-0042",
            "child": {"full_name": "Lê Minh An", "birth_place": "Đà Nẵng", "ethnicity_code": "01"},
            "mother": {"full_name": "Trần Thị B", "personal_id": "048196000123"},
            "father": null,
            "fees": [{"amount": 8000, "payer": "x"}, {"amount": 2000, "payer": "y"}],
        });
        let withheld = set.apply(&mut payload);
        assert_eq!(
            payload,
            json!({
                "dossier_code": "G22.99.08-261120-0042",
                "child": {"full_name": "Lê Minh An"},
                "mother": {"full_name": "Trần Thị B", "personal_id": "048196000123"},
                "fees": [{"amount": 8000}, {"amount": 2000}],
            })
        );
        assert_eq!(
            withheld,
            [
                "child.birth_place",
                "child.ethnicity_code",
                "father",
                "fees.payer"
            ]
        );
    }

    #[test]
    fn nulls_stay_unreported_and_unexpected_scalars_are_withheld_whole() {
        let set = FieldSet::from_paths(["mother.full_name", "tags.name"]);
        let mut payload = json!({"mother": null, "tags": ["a", {"name": "b", "x": 1}]});
        assert_eq!(set.apply(&mut payload), ["tags", "tags.x"]);
        assert_eq!(payload, json!({"mother": null, "tags": [{"name": "b"}]}));
        let mut scalar = json!({"mother": "not an object"});
        assert_eq!(set.apply(&mut scalar), ["mother"]);
        assert_eq!(scalar, json!({}));
    }

    #[test]
    fn a_star_or_a_whole_object_keeps_everything_below_it() {
        let mut payload = json!({"a": {"b": 1, "c": 2}});
        assert!(FieldSet::from_paths(["*"]).apply(&mut payload).is_empty());
        assert!(
            FieldSet::from_paths(["a.b", "a"])
                .apply(&mut payload)
                .is_empty()
        );
        assert_eq!(payload, json!({"a": {"b": 1, "c": 2}}));
        assert_eq!(FieldSet::from_paths(["a", "x.y"]).paths(), ["a", "x.y"]);
    }

    #[test]
    fn the_shipped_declarations_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/access");
        let purposes = Purposes::load(&dir).expect("purposes");
        let disclosures = Disclosures::load(&dir, &purposes, |_| true).expect("disclosures");
        let health = disclosures
            .fields("birth.dossier-submitted", "health-insurance")
            .expect("declared");
        assert!(!health.paths().contains(&"child.birth_place".to_owned()));
        assert!(
            disclosures
                .fields("birth.dossier-submitted", "fee-payment")
                .is_none()
        );
    }
}
