//! Working days in Viet Nam, for every deadline the hub tracks: Monday to Friday, less the public
//! holidays and compensatory days off, plus the Saturdays worked in exchange
//! (`schemas/reference/holidays.csv`, per year as the government announces them).
//!
//! How a deadline of N working days is counted (Decree 61/2018/ND-CP on the one-stop shop, as
//! practised by the one-stop offices; the hub's reading, marked unverified in VIETNAM.md):
//! - a dossier received after 15:00, or on a day that is not a working day, is deemed received
//!   on the next working day;
//! - the deadline is the close of office hours (17:00) on the Nth working day after that day.
//!
//! So a dossier received on Friday 20 November 2026 at 09:20 with three working days is due on
//! Wednesday 25 November at 17:00, and one received that Friday at 15:30 on Thursday 26.

use std::collections::HashSet;

use chrono::{DateTime, Datelike as _, Duration, FixedOffset, NaiveDate, NaiveTime, Weekday};
use serde::Deserialize;

/// After this time of day a dossier counts as received on the next working day.
const CUT_OFF: NaiveTime = NaiveTime::from_hms_opt(15, 0, 0).expect("a valid time");
/// Office hours end: a deadline falls at this time of its last day.
const CLOSE: NaiveTime = NaiveTime::from_hms_opt(17, 0, 0).expect("a valid time");
/// No deadline the hub counts is longer than this many working days; the walk stops there.
const MAX_WORKING_DAYS: u32 = 366;

/// One row of `holidays.csv`.
#[derive(Debug, Deserialize)]
pub(super) struct HolidayRow {
    pub(super) date: NaiveDate,
    pub(super) kind: String,
}

/// The working-day calendar of the years the reference data covers.
#[derive(Debug, Clone, Default)]
pub struct WorkingCalendar {
    /// Weekdays off: holidays and compensatory days.
    days_off: HashSet<NaiveDate>,
    /// Saturdays worked in exchange for a day off.
    working_saturdays: HashSet<NaiveDate>,
    /// The years the list covers: in another year the holidays are unknown, and a count there
    /// would take Tết for working days.
    years: HashSet<i32>,
}

impl WorkingCalendar {
    pub(super) fn from_rows(rows: Vec<HolidayRow>) -> Result<Self, String> {
        let mut calendar = Self::default();
        for row in rows {
            calendar.years.insert(row.date.year());
            match row.kind.as_str() {
                "holiday" | "compensatory" => calendar.days_off.insert(row.date),
                "working_saturday" => calendar.working_saturdays.insert(row.date),
                other => {
                    return Err(format!(
                        "{}: kind {other:?} is not holiday, compensatory or working_saturday",
                        row.date
                    ));
                }
            };
        }
        Ok(calendar)
    }

    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        match date.weekday() {
            Weekday::Sun => false,
            Weekday::Sat => self.working_saturdays.contains(&date),
            _ => !self.days_off.contains(&date),
        }
    }

    fn next_working_day(&self, mut date: NaiveDate) -> NaiveDate {
        for _ in 0..MAX_WORKING_DAYS {
            date += Duration::days(1);
            if self.is_working_day(date) {
                break;
            }
        }
        date
    }

    /// The working day a dossier received at `at` counts as received on.
    pub fn deemed_receipt(&self, at: DateTime<FixedOffset>) -> NaiveDate {
        let local = at.with_timezone(&super::vietnam());
        let day = local.date_naive();
        if self.is_working_day(day) && local.time() <= CUT_OFF {
            day
        } else {
            self.next_working_day(day)
        }
    }

    /// When something received at `at` with `working_days` to do it is due (Viet Nam time);
    /// `None` when the count runs through a year whose holidays the list does not hold.
    pub fn due(
        &self,
        at: DateTime<FixedOffset>,
        working_days: u32,
    ) -> Option<DateTime<FixedOffset>> {
        let first = at.with_timezone(&super::vietnam()).date_naive();
        let mut day = self.deemed_receipt(at);
        for _ in 0..working_days.min(MAX_WORKING_DAYS) {
            day = self.next_working_day(day);
        }
        if !(first.year()..=day.year()).all(|year| self.years.contains(&year)) {
            return None;
        }
        day.and_time(CLOSE)
            .and_local_timezone(super::vietnam())
            .single()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar() -> WorkingCalendar {
        let rows = [
            ("2026-09-01", "holiday"),
            ("2026-09-02", "holiday"),
            ("2026-04-25", "working_saturday"),
            ("2026-04-27", "compensatory"),
        ];
        WorkingCalendar::from_rows(
            rows.iter()
                .map(|(date, kind)| HolidayRow {
                    date: date.parse().unwrap(),
                    kind: (*kind).to_owned(),
                })
                .collect(),
        )
        .unwrap()
    }

    fn at(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    #[test]
    fn weekends_and_holidays_are_skipped_and_swapped_saturdays_worked() {
        let calendar = calendar();
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert!(calendar.is_working_day(day("2026-11-20")), "a Friday");
        assert!(!calendar.is_working_day(day("2026-11-21")), "a Saturday");
        assert!(!calendar.is_working_day(day("2026-09-02")), "National Day");
        assert!(
            calendar.is_working_day(day("2026-04-25")),
            "a Saturday worked"
        );
        assert!(
            !calendar.is_working_day(day("2026-04-27")),
            "the Monday off for it"
        );
    }

    #[test]
    fn deadlines_count_working_days_after_the_deemed_receipt_day() {
        let calendar = calendar();
        // Friday morning: Monday, Tuesday, Wednesday.
        assert_eq!(
            calendar.due(at("2026-11-20T09:20:00+07:00"), 3),
            Some(at("2026-11-25T17:00:00+07:00"))
        );
        // Friday after 15:00 counts from Monday.
        assert_eq!(
            calendar.due(at("2026-11-20T15:30:00+07:00"), 3),
            Some(at("2026-11-26T17:00:00+07:00"))
        );
        // A time in UTC is read in Viet Nam's: 08:30 UTC is 15:30 there.
        assert_eq!(
            calendar.due(at("2026-11-20T08:30:00Z"), 3),
            Some(at("2026-11-26T17:00:00+07:00"))
        );
        // The holidays are not counted: Thursday 3 to Wednesday 9 September.
        assert_eq!(
            calendar.due(at("2026-08-31T10:00:00+07:00"), 5),
            Some(at("2026-09-09T17:00:00+07:00"))
        );
        // Received on a holiday: deemed received the next working day.
        assert_eq!(
            calendar.due(at("2026-09-01T10:00:00+07:00"), 1),
            Some(at("2026-09-04T17:00:00+07:00"))
        );
        // Across a swapped weekend: Saturday 25 April is worked, Monday 27 is not.
        assert_eq!(
            calendar.due(at("2026-04-24T09:00:00+07:00"), 2),
            Some(at("2026-04-28T17:00:00+07:00"))
        );
    }

    #[test]
    fn a_year_the_list_does_not_cover_gives_no_deadline() {
        // The fixture lists 2026 only: Tết 2027 is unknown, so no count reaches into 2027.
        assert_eq!(calendar().due(at("2026-12-30T09:00:00+07:00"), 3), None);
        assert_eq!(calendar().due(at("2025-11-20T09:00:00+07:00"), 3), None);
    }

    #[test]
    fn an_unknown_kind_is_named() {
        let rows = vec![HolidayRow {
            date: "2026-01-01".parse().unwrap(),
            kind: "party".to_owned(),
        }];
        assert!(
            WorkingCalendar::from_rows(rows)
                .unwrap_err()
                .contains("party")
        );
    }
}
