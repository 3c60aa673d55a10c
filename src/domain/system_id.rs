//! The id of a member system (a province's one-stop system, the civil-status software, a
//! national system): lower-case ASCII, digits and '-', so it is safe in headers, logs and metrics.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SystemId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a system id is 2 to 64 characters of a-z, 0-9 and '-', starting with a letter")]
pub struct SystemIdError;

impl SystemId {
    pub fn parse(raw: &str) -> Result<Self, SystemIdError> {
        let valid_len = (2..=64).contains(&raw.len());
        let starts_with_letter = raw.starts_with(|c: char| c.is_ascii_lowercase());
        let valid_chars = raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid_len && starts_with_letter && valid_chars {
            Ok(Self(raw.to_owned()))
        } else {
            Err(SystemIdError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: tables line up with `{:<32}`.
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_refuses_unsafe_ones() {
        assert!(SystemId::parse("danang-onestop").is_ok());
        for bad in ["", "a", "Danang", "1stop", "da nang", "x\ny"] {
            assert_eq!(SystemId::parse(bad), Err(SystemIdError), "{bad:?}");
        }
    }
}
