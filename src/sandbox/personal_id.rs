//! Personal ID numbers as the population database assigns them: `PPP C YY RRRRRR`, where PPP is
//! the (legacy, three-digit) province where the birth was registered, C the century and sex
//! (2000s: 2 male, 3 female), YY the birth year's last two digits and R random.

use chrono::Datelike as _;
use rand::Rng as _;

/// A fresh number for a child registered in `province` (two-digit code) born on `birth_date`
/// (`YYYY-MM-DD`); `None` when the inputs cannot make one.
pub fn assign(province: &str, birth_date: &str, female: bool) -> Option<String> {
    let date = chrono::NaiveDate::parse_from_str(birth_date, "%Y-%m-%d").ok()?;
    let year = date.year();
    let century = match year / 100 {
        19 => 0,
        20 => 2,
        21 => 4,
        _ => return None,
    } + u32::from(female);
    if province.len() != 2 || !province.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let random: u32 = rand::rng().random_range(0..1_000_000);
    Some(format!("0{province}{century}{:02}{random:06}", year % 100))
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_place_century_sex_and_year() {
        let id = super::assign("48", "2026-11-12", true).unwrap();
        assert_eq!(&id[..6], "048326");
        assert_eq!(id.len(), 12);
        assert_eq!(
            &super::assign("79", "1999-01-01", false).unwrap()[..6],
            "079099"
        );
        assert!(super::assign("4", "2026-11-12", true).is_none());
    }
}
