//! A broken rule in a submitted event, reported to the caller and kept in quarantine.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// JSON pointer into the request, e.g. `/payload/child/birth_date`.
    pub pointer: String,
    /// The rule that failed: a JSON Schema keyword (`pattern`, `required`, ...) or a hub rule
    /// (`envelope.correlation_id`, `avro`).
    pub rule: String,
    pub message: String,
}

impl Violation {
    pub fn new(
        pointer: impl Into<String>,
        rule: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            pointer: pointer.into(),
            rule: rule.into(),
            message: message.into(),
        }
    }
}
