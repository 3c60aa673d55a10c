//! Compatibility levels, as Confluent Schema Registry defines them, checked with apache-avro's
//! schema resolution rules. BACKWARD (the default) means consumers using the new schema can read
//! records written with the previous one; FORWARD the reverse; FULL both; `_TRANSITIVE` against
//! every earlier version instead of the latest only.

use std::fmt;
use std::str::FromStr;

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a compatibility level; use BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE"
)]
pub struct UnknownCompatibility(pub String);

impl Compatibility {
    pub const ALL: [Compatibility; 7] = [
        Self::Backward,
        Self::BackwardTransitive,
        Self::Forward,
        Self::ForwardTransitive,
        Self::Full,
        Self::FullTransitive,
        Self::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
            Self::None => "NONE",
        }
    }

    /// Checks `new` against the subject's earlier schemas, oldest first. Returns one message per
    /// incompatibility (empty when compatible).
    pub fn check(self, new: &Schema, earlier: &[Schema]) -> Vec<String> {
        let against: &[Schema] = match self {
            Self::None => &[],
            Self::Backward | Self::Forward | Self::Full => {
                earlier.last().map_or(&[], std::slice::from_ref)
            }
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive => earlier,
        };
        let backward = matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        );
        let forward = matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        );
        let mut problems = Vec::new();
        for old in against {
            if backward && let Err(e) = SchemaCompatibility::can_read(old, new) {
                problems.push(format!(
                    "the new schema cannot read data written with an earlier one: {e}"
                ));
            }
            if forward && let Err(e) = SchemaCompatibility::can_read(new, old) {
                problems.push(format!(
                    "an earlier schema cannot read data written with the new one: {e}"
                ));
            }
        }
        problems
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compatibility {
    type Err = UnknownCompatibility;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownCompatibility(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"R","fields":[{fields}]}}"#
        ))
        .expect("test schema parses")
    }

    #[test]
    fn levels_decide_which_direction_is_checked() {
        let v1 = schema(r#"{"name":"a","type":"string"}"#);
        // Adds a field without a default: old data cannot be read by the new schema, but old
        // readers can read new data (they ignore the extra field).
        let v2 = schema(r#"{"name":"a","type":"string"},{"name":"b","type":"string"}"#);
        let earlier = std::slice::from_ref(&v1);
        assert_eq!(Compatibility::Backward.check(&v2, earlier).len(), 1);
        assert!(Compatibility::Forward.check(&v2, earlier).is_empty());
        assert_eq!(Compatibility::Full.check(&v2, earlier).len(), 1);
        assert!(Compatibility::None.check(&v2, earlier).is_empty());
    }

    #[test]
    fn transitive_levels_check_every_earlier_version() {
        let v1 = schema(r#"{"name":"a","type":"string"}"#);
        let v2 =
            schema(r#"{"name":"a","type":"string"},{"name":"b","type":"string","default":"x"}"#);
        // v3 drops b's default: it still reads v2's records (they have b) but not v1's.
        let v3 = schema(r#"{"name":"a","type":"string"},{"name":"b","type":"string"}"#);
        let earlier = [v1, v2];
        assert!(Compatibility::Backward.check(&v3, &earlier).is_empty());
        assert_eq!(
            Compatibility::BackwardTransitive.check(&v3, &earlier).len(),
            1
        );
    }

    #[test]
    fn parses_confluent_names() {
        assert_eq!("full_transitive".parse(), Ok(Compatibility::FullTransitive));
        assert!("SIDEWAYS".parse::<Compatibility>().is_err());
    }
}
