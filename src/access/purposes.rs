//! The processing purposes of `schemas/access/purposes.toml`. A right can only cover a purpose
//! listed there, so a typo in a grant is refused instead of silently granting nothing.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::policy_file::{PolicyFileError, read_toml};

/// One purpose, as operators see it when granting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    pub code: String,
    pub name_vi: String,
    pub name_en: String,
    pub legal_basis: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurposesFile {
    purpose: Vec<Purpose>,
}

#[derive(Debug, Clone, Default)]
pub struct Purposes {
    by_code: BTreeMap<String, Purpose>,
}

/// True for a purpose code as the envelope accepts it: 2 to 63 characters of a-z, 0-9 and '-',
/// starting with a letter (it travels in Kafka headers and metric labels).
pub fn is_purpose_code(code: &str) -> bool {
    (2..=63).contains(&code.len())
        && code.starts_with(|c: char| c.is_ascii_lowercase())
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Longest legal basis accepted, in characters.
pub const MAX_LEGAL_BASIS: usize = 200;

/// True for a legal basis as the envelope and subscriptions accept it (after trimming): a
/// citation of 1 to [`MAX_LEGAL_BASIS`] characters on one line, since it travels in headers.
pub fn is_legal_basis(text: &str) -> bool {
    let len = text.chars().count();
    (1..=MAX_LEGAL_BASIS).contains(&len) && !text.chars().any(char::is_control)
}

impl Purposes {
    /// Reads `purposes.toml` from the access policy folder (`schemas/access/`).
    pub fn load(dir: &Path) -> Result<Self, PolicyFileError> {
        let path = dir.join("purposes.toml");
        let file: PurposesFile = read_toml(&path)?;
        let mut by_code = BTreeMap::new();
        for purpose in file.purpose {
            let invalid = |problem: &str| PolicyFileError::Invalid {
                path: path.clone(),
                problem: format!("purpose {:?}: {problem}", purpose.code),
            };
            if !is_purpose_code(&purpose.code) {
                return Err(invalid(
                    "a code is 2 to 63 characters of a-z, 0-9 and '-', starting with a letter",
                ));
            }
            if by_code.contains_key(&purpose.code) {
                return Err(invalid("is listed twice"));
            }
            by_code.insert(purpose.code.clone(), purpose);
        }
        Ok(Self { by_code })
    }

    pub fn get(&self, code: &str) -> Option<&Purpose> {
        self.by_code.get(code)
    }

    pub fn codes(&self) -> impl Iterator<Item = &str> {
        self.by_code.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_purposes_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/access");
        let purposes = Purposes::load(&dir).expect("purposes.toml loads");
        assert!(purposes.get("civil-registration").is_some());
        assert!(purposes.get("civil_registration").is_none());
    }

    #[test]
    fn purpose_codes_are_header_safe() {
        assert!(is_purpose_code("fee-payment"));
        for bad in ["", "x", "Fee", "9fee", "fee payment", "phí"] {
            assert!(!is_purpose_code(bad), "{bad:?}");
        }
    }
}
