//! What a dossier is charged, from `schemas/reference/civil-status-fees.csv` and
//! `fee-accounts.csv`. Registering a birth or a death on time is free (Law on Civil Status
//! 60/2014/QH13, art. 11); a late registration pays the fee its province's People's Council set,
//! and every copy of the extract asked for beyond the original pays the national copy fee. A
//! province's own row for a fee replaces the national one; a fee with no row is not charged.
//! The money goes to the receiving province's account.

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDate;
use serde::Deserialize;

use super::reference::{Period, ReferenceError, read};

/// What a fee is charged for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargedFor {
    /// Each copy of the extract beyond the original.
    ExtractCopy,
    /// A registration after the law's time limit (60 days for a birth, 15 for a death).
    LateRegistration,
}

#[derive(Debug, Clone, Deserialize)]
struct FeeRow {
    fee_code: String,
    group: String,
    charged_for: ChargedFor,
    province_code: Option<String>,
    unit_price_vnd: u32,
    name_vi: String,
    valid_from: NaiveDate,
    valid_to: Option<NaiveDate>,
}

/// The collecting agency's account, as a payment request names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    pub bank_code: String,
    pub account_number: String,
    pub account_name: String,
}

// Fields spelled out rather than a flattened `Account`: csv reads a flattened number as one.
#[derive(Debug, Clone, Deserialize)]
struct AccountRow {
    province_code: String,
    bank_code: String,
    account_number: String,
    account_name: String,
    valid_from: NaiveDate,
    valid_to: Option<NaiveDate>,
}

/// One line of a charge, in the payment request's terms.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeeLine {
    pub fee_code: String,
    pub fee_name: String,
    pub quantity: u32,
    pub unit_price_vnd: u32,
    pub amount_vnd: u64,
}

/// What one dossier is charged, and into which account (`None`: the province has none listed,
/// so the fee cannot be collected until one is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub lines: Vec<FeeLine>,
    pub account: Option<Account>,
}

impl Charge {
    pub fn total_vnd(&self) -> u64 {
        self.lines.iter().map(|line| line.amount_vnd).sum()
    }
}

/// The fees and accounts, valid by date.
#[derive(Debug, Clone, Default)]
pub struct FeeSchedule {
    fees: Vec<(Period, FeeRow)>,
    accounts: HashMap<String, Vec<(Period, Account)>>,
}

/// What a dossier asks for that may be charged.
#[derive(Debug, Clone, Copy)]
pub struct Chargeable<'a> {
    pub group: &'a str,
    pub province: &'a str,
    /// The day the dossier was received: the fees in force then apply.
    pub on: NaiveDate,
    pub late: bool,
    pub copies: u32,
}

impl FeeSchedule {
    /// Reads both files of `dir`; a row that could not be charged as written (an unknown group
    /// or province, two rows for one fee on one day, an account the payment request would
    /// refuse) stops the load, naming it.
    pub fn load(
        dir: &Path,
        group_known: impl Fn(&str) -> bool,
        province_known: impl Fn(&str) -> bool,
    ) -> Result<Self, ReferenceError> {
        let fees_path = dir.join("civil-status-fees.csv");
        let invalid = |path: &Path, problem: String| ReferenceError::Invalid {
            path: path.to_owned(),
            problem,
        };
        let mut schedule = Self::default();
        for row in read::<FeeRow>(&fees_path)? {
            let period = Period {
                from: row.valid_from,
                to: row.valid_to,
            };
            let problem = if !group_known(&row.group) {
                Some(format!(
                    "{}: group {:?} is not in procedures.csv",
                    row.fee_code, row.group
                ))
            } else if let Some(province) =
                row.province_code.as_deref().filter(|p| !province_known(p))
            {
                Some(format!(
                    "{}: province {province:?} is not in provinces.csv",
                    row.fee_code
                ))
            } else if schedule.fees.iter().any(|(other_period, other)| {
                other.group == row.group
                    && other.charged_for == row.charged_for
                    && other.province_code == row.province_code
                    && overlap(*other_period, period)
            }) {
                Some(format!(
                    "{}: another row charges {:?} for {} in {} over the same days",
                    row.fee_code,
                    row.charged_for,
                    row.group,
                    row.province_code.as_deref().unwrap_or("every province")
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(invalid(&fees_path, problem));
            }
            schedule.fees.push((period, row));
        }
        let accounts_path = dir.join("fee-accounts.csv");
        for row in read::<AccountRow>(&accounts_path)? {
            let period = Period {
                from: row.valid_from,
                to: row.valid_to,
            };
            let digits = |text: &str, lengths: std::ops::RangeInclusive<usize>| {
                lengths.contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
            };
            let account = Account {
                bank_code: row.bank_code,
                account_number: row.account_number,
                account_name: row.account_name,
            };
            let problem = if !province_known(&row.province_code) {
                Some(format!(
                    "province {:?} is not in provinces.csv",
                    row.province_code
                ))
            } else if !digits(&account.bank_code, 6..=6) {
                Some(format!(
                    "{}: bank_code must be the bank's 6-digit NAPAS BIN",
                    row.province_code
                ))
            } else if !digits(&account.account_number, 6..=19) {
                Some(format!(
                    "{}: account_number must be 6 to 19 digits",
                    row.province_code
                ))
            } else if !(1..=100).contains(&account.account_name.chars().count()) {
                Some(format!(
                    "{}: account_name must be 1 to 100 characters",
                    row.province_code
                ))
            } else if schedule
                .accounts
                .get(&row.province_code)
                .is_some_and(|rows| rows.iter().any(|(other, _)| overlap(*other, period)))
            {
                Some(format!(
                    "{}: two accounts over the same days",
                    row.province_code
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(invalid(&accounts_path, problem));
            }
            schedule
                .accounts
                .entry(row.province_code)
                .or_default()
                .push((period, account));
        }
        Ok(schedule)
    }

    /// What `dossier` is charged: nothing (no lines) when it is on time and asks for no copy,
    /// or when no fee is listed for what it asks.
    pub fn charge(&self, dossier: Chargeable<'_>) -> Charge {
        let mut lines = Vec::new();
        let mut add = |charged_for, quantity: u32| {
            if quantity == 0 {
                return;
            }
            if let Some(fee) = self.fee(dossier, charged_for) {
                lines.push(FeeLine {
                    fee_code: fee.fee_code.clone(),
                    fee_name: fee.name_vi.clone(),
                    quantity,
                    unit_price_vnd: fee.unit_price_vnd,
                    amount_vnd: u64::from(quantity) * u64::from(fee.unit_price_vnd),
                });
            }
        };
        add(ChargedFor::LateRegistration, u32::from(dossier.late));
        add(ChargedFor::ExtractCopy, dossier.copies);
        let account = if lines.is_empty() {
            None
        } else {
            self.accounts.get(dossier.province).and_then(|rows| {
                rows.iter()
                    .find(|(period, _)| period.contains(dossier.on))
                    .map(|(_, account)| account.clone())
            })
        };
        Charge { lines, account }
    }

    /// The province's own fee in force, else the national one.
    fn fee(&self, dossier: Chargeable<'_>, charged_for: ChargedFor) -> Option<&FeeRow> {
        let in_force = |province: Option<&str>| {
            self.fees.iter().find_map(|(period, row)| {
                (row.group == dossier.group
                    && row.charged_for == charged_for
                    && row.province_code.as_deref() == province
                    && period.contains(dossier.on))
                .then_some(row)
            })
        };
        in_force(Some(dossier.province)).or_else(|| in_force(None))
    }
}

fn overlap(a: Period, b: Period) -> bool {
    a.to.is_none_or(|to| b.from <= to) && b.to.is_none_or(|to| a.from <= to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().expect("a date")
    }

    fn schedule(fees: &str, accounts: &str) -> Result<FeeSchedule, ReferenceError> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("lienthong-fees-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        std::fs::write(
            dir.join("civil-status-fees.csv"),
            format!("fee_code,group,charged_for,province_code,unit_price_vnd,name_vi,valid_from,valid_to,source,verified\n{fees}"),
        )
        .expect("fees written");
        std::fs::write(
            dir.join("fee-accounts.csv"),
            format!("province_code,bank_code,account_number,account_name,valid_from,valid_to,source,verified\n{accounts}"),
        )
        .expect("accounts written");
        let loaded = FeeSchedule::load(
            &dir,
            |g| ["birth", "death"].contains(&g),
            |p| ["48", "79"].contains(&p),
        );
        std::fs::remove_dir_all(&dir).expect("the temporary directory removed");
        loaded
    }

    const NATIONAL_COPY: &str = "HT.BSTL,birth,extract_copy,,8000,Bản sao,2017-01-01,,x,no\n";
    const LATE_48: &str = "HT.KSQH,birth,late_registration,48,5000,Quá hạn,2025-07-01,,x,no\n";
    const ACCOUNT_48: &str = "48,970436,0011000123456,Kho bạc,2025-07-01,,x,no\n";

    fn dossier(province: &str, late: bool, copies: u32) -> Chargeable<'_> {
        Chargeable {
            group: "birth",
            province,
            on: date("2026-11-20"),
            late,
            copies,
        }
    }

    #[test]
    fn on_time_without_copies_is_free_and_each_fee_applies_where_listed() {
        let fees = schedule(&format!("{NATIONAL_COPY}{LATE_48}"), ACCOUNT_48).expect("loaded");
        assert_eq!(fees.charge(dossier("48", false, 0)).lines, Vec::new());

        let charge = fees.charge(dossier("48", true, 2));
        let lines: Vec<_> = charge
            .lines
            .iter()
            .map(|l| (l.fee_code.as_str(), l.quantity, l.amount_vnd))
            .collect();
        assert_eq!(lines, [("HT.KSQH", 1, 5000), ("HT.BSTL", 2, 16000)]);
        assert_eq!(charge.total_vnd(), 21000);
        assert_eq!(
            charge.account.map(|a| a.bank_code),
            Some("970436".to_owned())
        );

        // Province 79 set no late fee and lists no account: the copies are charged, and the
        // charge says it has nowhere to go.
        let charge = fees.charge(dossier("79", true, 1));
        assert_eq!(charge.lines.len(), 1);
        assert_eq!(charge.account, None);
        // A death dossier has no fee listed.
        let death = Chargeable {
            group: "death",
            ..dossier("48", true, 3)
        };
        assert!(fees.charge(death).lines.is_empty());
    }

    #[test]
    fn a_provinces_own_fee_replaces_the_national_one_on_its_days() {
        let own = "HT.BSTL,birth,extract_copy,48,6000,Bản sao,2026-01-01,,x,no\n";
        let fees = schedule(&format!("{NATIONAL_COPY}{own}"), ACCOUNT_48).expect("loaded");
        assert_eq!(fees.charge(dossier("48", false, 1)).total_vnd(), 6000);
        assert_eq!(fees.charge(dossier("79", false, 1)).total_vnd(), 8000);
        let before = Chargeable {
            on: date("2025-12-31"),
            ..dossier("48", false, 1)
        };
        assert_eq!(fees.charge(before).total_vnd(), 8000);
    }

    #[test]
    fn rows_that_could_not_be_charged_stop_the_load_naming_them() {
        let problem = |fees: &str, accounts: &str| match schedule(fees, accounts) {
            Err(ReferenceError::Invalid { problem, .. }) => problem,
            other => panic!("expected an invalid row, got {other:?}"),
        };
        assert!(
            problem(&format!("{NATIONAL_COPY}{NATIONAL_COPY}"), "")
                .contains("another row charges ExtractCopy")
        );
        assert!(problem("X,marriage,extract_copy,,1,x,2017-01-01,,x,no\n", "").contains("group"));
        assert!(
            problem("X,birth,extract_copy,99,1,x,2017-01-01,,x,no\n", "")
                .contains("province \"99\"")
        );
        assert!(
            problem("", "48,9704,0011000123456,Kho bạc,2025-07-01,,x,no\n").contains("bank_code")
        );
        assert!(problem("", &format!("{ACCOUNT_48}{ACCOUNT_48}")).contains("two accounts"));
        assert!(matches!(
            schedule("X,birth,a_gift,,1,x,2017-01-01,,x,no\n", ""),
            Err(ReferenceError::Read { .. })
        ));
    }
}
