//! Sex as civil-status records hold it (male / female), written `MALE` / `FEMALE` in events.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Male,
    Female,
}

impl Sex {
    /// Parses the event spelling; anything else is not a sex this hub knows.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "MALE" => Some(Self::Male),
            "FEMALE" => Some(Self::Female),
            _ => None,
        }
    }
}
