//! The dossier code (mã hồ sơ): agency code, receipt date YYMMDD, daily sequence, e.g.
//! `G22.99.08-260921-896048` or `000.00.01.H22-250301-0001`. It correlates every event of one
//! dossier and is the Kafka key, so one dossier's events stay in order on one partition.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

static PATTERN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Z0-9]{2,3}(\.[A-Z0-9]{2,3}){2,3}-\d{6}-\d{4,}$")
        .expect("the dossier-code pattern is a valid regex")
});

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DossierCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a dossier code: expected agency code, YYMMDD and a sequence, e.g. G22.99.08-260921-0001"
)]
pub struct DossierCodeError;

impl DossierCode {
    pub fn parse(raw: &str) -> Result<Self, DossierCodeError> {
        if PATTERN.is_match(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DossierCodeError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DossierCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_portal_shapes() {
        for code in ["G22.99.08-260921-896048", "000.00.01.H22-250301-0001"] {
            assert_eq!(
                DossierCode::parse(code).map(|c| c.to_string()).as_deref(),
                Ok(code)
            );
        }
    }

    #[test]
    fn refuses_other_shapes() {
        for code in [
            "",
            "G22-260921-0001",
            "g22.99.08-260921-0001",
            "G22.99.08-2609-0001",
            "G22.99.08-260921-12",
        ] {
            assert_eq!(DossierCode::parse(code), Err(DossierCodeError), "{code}");
        }
    }
}
