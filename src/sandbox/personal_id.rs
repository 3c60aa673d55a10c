//! Personal ID numbers as the population database assigns them: `PPP C YY RRRRRR`, where PPP is
//! the (legacy, three-digit) province where the birth was registered, C the century and sex
//! (2000s: 2 male, 3 female), YY the birth year's last two digits and R random.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::Datelike as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// Where new numbers are drawn from: one random source shared by the sandboxes that assign
/// them (civil status and population). Under a seed it draws the same sequence at every
/// start, so a restarted sandbox draws the numbers it gave before and must skip them: how the
/// tests make draws collide.
#[derive(Clone)]
pub struct IdDraws(Arc<Mutex<StdRng>>);

impl IdDraws {
    /// Random draws, or the seed's sequence.
    pub fn new(seed: Option<u64>) -> Self {
        let random = seed.map_or_else(StdRng::from_os_rng, StdRng::seed_from_u64);
        Self(Arc::new(Mutex::new(random)))
    }

    /// A fresh number for a child registered in `province` (two-digit code) born on
    /// `birth_date` (`YYYY-MM-DD`); `None` when the inputs cannot make one.
    pub fn assign(&self, province: &str, birth_date: &str, female: bool) -> Option<String> {
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
        // A panic while the lock was held leaves a random source as good as any other.
        let random: u32 = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random_range(0..1_000_000);
        Some(format!("0{province}{century}{:02}{random:06}", year % 100))
    }
}

#[cfg(test)]
mod tests {
    use super::IdDraws;

    #[test]
    fn encodes_place_century_sex_and_year() {
        let draws = IdDraws::new(None);
        let id = draws.assign("48", "2026-11-12", true).unwrap();
        assert_eq!(&id[..6], "048326");
        assert_eq!(id.len(), 12);
        assert_eq!(
            &draws.assign("79", "1999-01-01", false).unwrap()[..6],
            "079099"
        );
        assert!(draws.assign("4", "2026-11-12", true).is_none());
    }

    #[test]
    fn a_seed_draws_the_same_numbers_at_every_start() {
        let draw = |draws: &IdDraws| draws.assign("48", "2026-11-12", true);
        let (first, again) = (IdDraws::new(Some(7)), IdDraws::new(Some(7)));
        let sequence: Vec<_> = (0..5).map(|_| draw(&first)).collect();
        assert_eq!(sequence, (0..5).map(|_| draw(&again)).collect::<Vec<_>>());
    }
}
