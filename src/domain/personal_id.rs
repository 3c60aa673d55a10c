//! The personal ID number (số định danh cá nhân): 12 digits `PPP C YY RRRRRR`, no check digit.
//! PPP is the province (or country) where the birth was registered, C encodes century and sex
//! (1900s: male 0 / female 1, 2000s: 2 / 3, 2100s: 4 / 5, ...; even = male), YY the last two
//! digits of the birth year. The number is personal data: `Debug` and `Display` mask it, so it
//! cannot leak into a log by accident.

use std::fmt;

use super::Sex;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PersonalId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a personal ID number is exactly 12 digits")]
pub struct PersonalIdError;

impl PersonalId {
    /// True for a payload member that holds a personal ID by the catalogue's convention:
    /// `personal_id`, or a name ending in `_personal_id` (`head_personal_id`).
    pub fn is_field_name(name: &str) -> bool {
        name == "personal_id" || name.ends_with("_personal_id")
    }

    pub fn parse(raw: &str) -> Result<Self, PersonalIdError> {
        if raw.len() == 12 && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(PersonalIdError)
        }
    }

    /// The 3-digit code of the province (or country) of birth registration.
    pub fn province_code(&self) -> &str {
        &self.0[..3]
    }

    fn century_sex_digit(&self) -> u8 {
        self.0.as_bytes()[3] - b'0'
    }

    pub fn sex(&self) -> Sex {
        if self.century_sex_digit().is_multiple_of(2) {
            Sex::Male
        } else {
            Sex::Female
        }
    }

    /// The first year of the birth century the number encodes: 1900, 2000, 2100, ...
    pub fn century(&self) -> i32 {
        1900 + 100 * i32::from(self.century_sex_digit() / 2)
    }

    pub fn birth_year(&self) -> i32 {
        let yy =
            i32::from(self.0.as_bytes()[4] - b'0') * 10 + i32::from(self.0.as_bytes()[5] - b'0');
        self.century() + yy
    }

    /// The full number, for the few places that must send it on (never for logs).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PersonalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonalId({self})")
    }
}

impl fmt::Display for PersonalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}*******{}", &self.0[..3], &self.0[10..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_province_sex_and_birth_year() {
        let mother = PersonalId::parse("048195001234").expect("valid");
        assert_eq!(mother.province_code(), "048");
        assert_eq!(mother.sex(), Sex::Female);
        assert_eq!(mother.birth_year(), 1995);
        let boy = PersonalId::parse("079226000001").expect("valid");
        assert_eq!((boy.sex(), boy.birth_year()), (Sex::Male, 2026));
    }

    #[test]
    fn never_shows_the_whole_number() {
        let id = PersonalId::parse("048195001234").expect("valid");
        assert_eq!(
            format!("{id} {id:?}"),
            "048*******34 PersonalId(048*******34)"
        );
    }

    #[test]
    fn refuses_anything_but_twelve_digits() {
        for bad in [
            "",
            "04819500123",
            "0481950012345",
            "04819500123a",
            "０４８１９５００１２３４",
        ] {
            assert_eq!(PersonalId::parse(bad), Err(PersonalIdError), "{bad}");
        }
    }
}
