//! A broken rule in a submitted event, reported to the caller and kept in quarantine.

use serde::{Deserialize, Serialize};

/// What a broken rule does to the event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The event is refused and quarantined.
    #[default]
    Error,
    /// The event is accepted; the warning goes back to the caller and along to subscribers.
    /// For rules whose data the hub cannot be sure of, or which would guess at the law.
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// JSON pointer into the request, e.g. `/payload/child/birth_date`.
    pub pointer: String,
    /// The rule that failed: a JSON Schema keyword (`pattern`, `required`, ...) or a hub rule
    /// (`envelope.correlation_id`, `avro`).
    pub rule: String,
    pub message: String,
    /// Rows quarantined before severities existed were all errors.
    #[serde(default)]
    pub severity: Severity,
}

impl Violation {
    /// A broken rule that refuses the event.
    pub fn new(
        pointer: impl Into<String>,
        rule: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            pointer: pointer.into(),
            rule: rule.into(),
            message: message.into(),
            severity: Severity::Error,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Appends `/key` to a JSON pointer, escaped as RFC 6901 says (`~` as `~0`, `/` as `~1`),
/// without allocating for the keys that need no escape (all of the catalogue's).
pub(super) fn push_key(pointer: &mut String, key: &str) {
    pointer.push('/');
    if key.contains(['~', '/']) {
        for c in key.chars() {
            match c {
                '~' => pointer.push_str("~0"),
                '/' => pointer.push_str("~1"),
                c => pointer.push(c),
            }
        }
    } else {
        pointer.push_str(key);
    }
}

/// Appends `/index` to a JSON pointer.
pub(super) fn push_index(pointer: &mut String, index: usize) {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = write!(pointer, "/{index}");
}

#[cfg(test)]
mod pointer_tests {
    use super::*;

    #[test]
    fn keys_are_escaped_as_rfc_6901_says() {
        let mut pointer = String::from("/payload");
        push_key(&mut pointer, "a/b~c");
        push_index(&mut pointer, 12);
        push_key(&mut pointer, "child");
        assert_eq!(pointer, "/payload/a~1b~0c/12/child");
    }
}
