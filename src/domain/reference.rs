//! Reference data, loaded from the versioned CSV files in `schemas/reference/` (data, not code,
//! so a ministry's change is a data change). Administrative codes carry validity periods: the
//! 2025 reform replaced 63 provinces by 34, and old records keep old codes, so every question is
//! "is this code valid on that date?". A province extends the commune lists by adding
//! `communes/<province code>.csv`.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
// Fx hashing: the rules look codes up in these maps several times per event, and SipHash's
// protection against crafted keys is for maps that input fills, which these never are.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::Deserialize;

use super::calendar::WorkingCalendar;
use super::fees::FeeSchedule;

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: csv::Error },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// When a code is valid: from `from` to `to` inclusive (no `to` = still valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: Option<NaiveDate>,
}

impl Period {
    pub fn contains(&self, date: NaiveDate) -> bool {
        self.from <= date && self.to.is_none_or(|to| date <= to)
    }
}

#[derive(Deserialize)]
struct DatedRow {
    code: String,
    valid_from: NaiveDate,
    valid_to: Option<NaiveDate>,
}

#[derive(Deserialize)]
struct CommuneRow {
    code: String,
    province_code: String,
    valid_from: NaiveDate,
    valid_to: Option<NaiveDate>,
}

#[derive(Deserialize)]
struct CodeRow {
    code: String,
}

#[derive(Deserialize)]
struct CountryRow {
    alpha2: String,
}

#[derive(Deserialize)]
struct IdCountryRow {
    code: String,
    alpha2: String,
    verified: Verified,
}

/// The `verified` column of the reference files.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Verified {
    Yes,
    No,
}

#[derive(Deserialize)]
struct ProcedureRow {
    code: String,
    group: String,
}

#[derive(Deserialize)]
struct StatusRow {
    code: u8,
    name_en: String,
}

#[derive(Deserialize)]
struct TransitionRow {
    from: u8,
    to: u8,
}

type Dated = HashMap<String, Vec<Period>>;

/// All reference data the validation rules need.
#[derive(Debug, Clone, Default)]
pub struct ReferenceData {
    /// 2-digit province codes (both before and after the 2025 reform).
    provinces: Dated,
    /// 3-digit province prefixes of personal ID numbers.
    id_provinces: Dated,
    /// 3-digit country prefixes of the personal IDs of births registered abroad, and whether
    /// each was checked against its source.
    id_countries: HashMap<String, bool>,
    /// Commune codes per 2-digit province code.
    communes: HashMap<String, Dated>,
    ethnicities: HashSet<String>,
    countries: HashSet<String>,
    transitions: HashSet<(u8, u8)>,
    /// The national portal's dossier statuses (TrangThaiHoSo) by code, in English.
    status_names: HashMap<u8, String>,
    /// Procedure codes and their group (`birth`, `death`, …).
    procedure_groups: HashMap<String, String>,
    calendar: WorkingCalendar,
    fees: FeeSchedule,
}

pub(super) fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, ReferenceError> {
    let error = |source| ReferenceError::Read {
        path: path.to_owned(),
        source,
    };
    let mut reader = csv::Reader::from_path(path).map_err(error)?;
    reader
        .deserialize()
        .collect::<Result<Vec<T>, _>>()
        .map_err(error)
}

fn dated(rows: impl IntoIterator<Item = (String, Period)>) -> Dated {
    let mut map: Dated = HashMap::default();
    for (code, period) in rows {
        map.entry(code).or_default().push(period);
    }
    map
}

/// The country prefixes of personal IDs: three digits that are no province prefix (the two
/// lists share the ID's first three digits), each naming a country of `countries.csv`.
fn id_countries(
    path: &Path,
    countries: &HashSet<String>,
) -> Result<HashMap<String, bool>, ReferenceError> {
    let mut codes = HashMap::default();
    for row in read::<IdCountryRow>(path)? {
        let problem = if row.code.len() != 3 || !row.code.bytes().all(|b| b.is_ascii_digit()) {
            Some(format!("code {:?} is not 3 digits", row.code))
        } else if row.code.starts_with('0') {
            Some(format!("code {} is a province prefix (0PP)", row.code))
        } else if !countries.contains(&row.alpha2) {
            Some(format!(
                "code {}: {:?} is not a country of countries.csv",
                row.code, row.alpha2
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ReferenceError::Invalid {
                path: path.to_owned(),
                problem,
            });
        }
        if codes
            .insert(row.code.clone(), row.verified == Verified::Yes)
            .is_some()
        {
            return Err(ReferenceError::Invalid {
                path: path.to_owned(),
                problem: format!("code {} is listed twice", row.code),
            });
        }
    }
    Ok(codes)
}

impl ReferenceData {
    pub fn load(dir: &Path) -> Result<Self, ReferenceError> {
        let periods = |rows: Vec<DatedRow>| {
            dated(rows.into_iter().map(|r| {
                (
                    r.code,
                    Period {
                        from: r.valid_from,
                        to: r.valid_to,
                    },
                )
            }))
        };
        let provinces = periods(read(&dir.join("provinces.csv"))?);
        let id_provinces = periods(read(&dir.join("personal-id-province-codes.csv"))?);
        let mut communes: HashMap<String, Dated> = HashMap::default();
        let commune_dir = dir.join("communes");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&commune_dir)
            .map_err(|e| ReferenceError::Invalid {
                path: commune_dir.clone(),
                problem: e.to_string(),
            })?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "csv"))
            .collect();
        files.sort();
        for file in files {
            for row in read::<CommuneRow>(&file)? {
                communes
                    .entry(row.province_code)
                    .or_default()
                    .entry(row.code)
                    .or_default()
                    .push(Period {
                        from: row.valid_from,
                        to: row.valid_to,
                    });
            }
        }
        let ethnicities = read::<CodeRow>(&dir.join("ethnicities.csv"))?
            .into_iter()
            .map(|r| r.code)
            .collect();
        let countries: HashSet<String> = read::<CountryRow>(&dir.join("countries.csv"))?
            .into_iter()
            .map(|r| r.alpha2)
            .collect();
        let id_countries = id_countries(&dir.join("personal-id-country-codes.csv"), &countries)?;
        let transitions = read::<TransitionRow>(&dir.join("dossier-status-transitions.csv"))?
            .into_iter()
            .map(|r| (r.from, r.to))
            .collect();
        let status_names = read::<StatusRow>(&dir.join("dossier-statuses.csv"))?
            .into_iter()
            .map(|r| (r.code, r.name_en))
            .collect();
        let procedure_groups: HashMap<String, String> =
            read::<ProcedureRow>(&dir.join("procedures.csv"))?
                .into_iter()
                .map(|r| (r.code, r.group))
                .collect();
        let holidays = dir.join("holidays.csv");
        let calendar = WorkingCalendar::from_rows(read(&holidays)?).map_err(|problem| {
            ReferenceError::Invalid {
                path: holidays,
                problem,
            }
        })?;
        let fees = FeeSchedule::load(
            dir,
            |group| procedure_groups.values().any(|g| g == group),
            |code| provinces.contains_key(code),
        )?;
        Ok(Self {
            provinces,
            id_provinces,
            id_countries,
            communes,
            ethnicities,
            countries,
            transitions,
            status_names,
            procedure_groups,
            calendar,
            fees,
        })
    }

    fn valid(map: &Dated, code: &str, date: NaiveDate) -> bool {
        map.get(code)
            .is_some_and(|periods| periods.iter().any(|p| p.contains(date)))
    }

    /// Is the 2-digit province code valid on `date`?
    pub fn province_valid_on(&self, code: &str, date: NaiveDate) -> bool {
        Self::valid(&self.provinces, code, date)
    }

    /// Is the 3-digit personal-ID province prefix known at all?
    pub fn id_province_known(&self, code: &str) -> bool {
        self.id_provinces.contains_key(code)
    }

    /// Could an ID with this prefix be issued on `date`?
    pub fn id_province_valid_on(&self, code: &str, date: NaiveDate) -> bool {
        Self::valid(&self.id_provinces, code, date)
    }

    /// Is the 3-digit prefix the country code of a birth registered abroad? `Some(verified)`
    /// when listed, `verified` telling whether the row was checked against its source.
    pub fn id_country_verified(&self, code: &str) -> Option<bool> {
        self.id_countries.get(code).copied()
    }

    /// Is the commune valid on `date`? `None` when no commune list is shipped for the province
    /// (the rule cannot be checked, so it is not applied).
    pub fn commune_valid_on(&self, province: &str, commune: &str, date: NaiveDate) -> Option<bool> {
        self.communes
            .get(province)
            .map(|communes| Self::valid(communes, commune, date))
    }

    pub fn ethnicity_known(&self, code: &str) -> bool {
        self.ethnicities.contains(code)
    }

    pub fn country_known(&self, alpha2: &str) -> bool {
        self.countries.contains(alpha2)
    }

    pub fn transition_allowed(&self, from: u8, to: u8) -> bool {
        self.transitions.contains(&(from, to))
    }

    /// The English name of a portal dossier status, if the code is known.
    pub fn status_name(&self, code: u8) -> Option<&str> {
        self.status_names.get(&code).map(String::as_str)
    }

    /// The group (`birth`, `death`, …) of a procedure code, if the code is known.
    pub fn procedure_group(&self, code: &str) -> Option<&str> {
        self.procedure_groups.get(code).map(String::as_str)
    }

    /// Working days, for deadlines.
    pub fn calendar(&self) -> &WorkingCalendar {
        &self.calendar
    }

    pub fn fees(&self) -> &FeeSchedule {
        &self.fees
    }
}

#[cfg(test)]
pub mod fixture {
    //! A small hand-made data set for unit tests of the rules.

    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("fixture date")
    }

    pub fn reference() -> ReferenceData {
        let old = Period {
            from: date("1900-01-01"),
            to: Some(date("2025-06-30")),
        };
        let new = Period {
            from: date("2025-07-01"),
            to: None,
        };
        let always = Period {
            from: date("1900-01-01"),
            to: None,
        };
        ReferenceData {
            provinces: dated([
                ("48".into(), always),
                ("49".into(), old),
                ("79".into(), always),
                ("52".into(), new),
            ]),
            id_provinces: dated([
                ("048".into(), always),
                ("049".into(), old),
                ("079".into(), always),
            ]),
            id_countries: [("286".to_owned(), false), ("250".to_owned(), true)]
                .into_iter()
                .collect(),
            communes: [("48".to_owned(), dated([("20194".into(), new)]))]
                .into_iter()
                .collect(),
            ethnicities: ["01".to_owned(), "02".to_owned()].into_iter().collect(),
            countries: ["VN".to_owned(), "LA".to_owned()].into_iter().collect(),
            transitions: [(1, 2), (2, 4), (4, 9), (9, 10)].into_iter().collect(),
            status_names: [(10, "Result returned".to_owned())].into_iter().collect(),
            procedure_groups: [("2.000986".to_owned(), "birth".to_owned())]
                .into_iter()
                .collect(),
            // 2026 is covered (its New Year's Day listed); no other year is.
            calendar: WorkingCalendar::from_rows(vec![crate::domain::calendar::HolidayRow {
                date: date("2026-01-01"),
                kind: "holiday".to_owned(),
            }])
            .expect("fixture calendar"),
            fees: FeeSchedule::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_valid_by_date() {
        let data = fixture::reference();
        let before = NaiveDate::from_ymd_opt(2025, 6, 30).expect("date");
        let after = NaiveDate::from_ymd_opt(2025, 7, 1).expect("date");
        assert!(data.province_valid_on("49", before));
        assert!(
            !data.province_valid_on("49", after),
            "Quảng Nam merged into Đà Nẵng"
        );
        assert!(!data.province_valid_on("52", before) && data.province_valid_on("52", after));
        assert_eq!(data.commune_valid_on("48", "20194", after), Some(true));
        assert_eq!(data.commune_valid_on("48", "99999", after), Some(false));
        assert_eq!(data.commune_valid_on("79", "26734", after), None);
    }

    #[test]
    fn the_shipped_files_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/reference");
        let data = ReferenceData::load(&dir).expect("reference data loads");
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).expect("date");
        let new_provinces = data
            .provinces
            .keys()
            .filter(|code| data.province_valid_on(code, today))
            .count();
        assert_eq!(new_provinces, 34, "34 provinces since 1 July 2025");
        assert!(data.ethnicity_known("01") && data.country_known("VN"));
        assert!(data.transition_allowed(9, 10) && !data.transition_allowed(10, 1));
        // The portal's moves in practice: repeated progress, a supplement at intake and what
        // follows it when it is never answered.
        assert!(data.transition_allowed(4, 4) && data.transition_allowed(1, 5));
        assert!(data.transition_allowed(5, 3) && data.transition_allowed(5, 8));
        assert_eq!(
            data.id_country_verified("286"),
            Some(false),
            "Ukraine's prefix, not yet checked against Circular 59/2021's appendix"
        );
        assert_eq!(data.id_country_verified("048"), None);
    }

    #[test]
    fn a_country_prefix_must_name_a_country_and_not_a_province() {
        let dir =
            std::env::temp_dir().join(format!("lienthong-id-countries-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let countries: HashSet<String> = ["UA".to_owned()].into_iter().collect();
        let cases = [
            ("286,UA,x,no\n", None),
            ("286,ZZ,x,no\n", Some("\"ZZ\" is not a country")),
            ("048,UA,x,no\n", Some("048 is a province prefix")),
            ("28,UA,x,no\n", Some("\"28\" is not 3 digits")),
            ("286,UA,x,no\n286,UA,y,yes\n", Some("286 is listed twice")),
        ];
        for (rows, expected) in cases {
            let path = dir.join("codes.csv");
            std::fs::write(&path, format!("code,alpha2,name_vi,verified\n{rows}")).expect("write");
            match (id_countries(&path, &countries), expected) {
                (Ok(codes), None) => assert_eq!(codes.get("286"), Some(&false)),
                (Err(error), Some(problem)) => {
                    assert!(error.to_string().contains(problem), "{error}");
                }
                (other, _) => panic!("{rows:?} gave {other:?}"),
            }
        }
        std::fs::remove_dir_all(&dir).expect("remove temp dir");
    }
}
