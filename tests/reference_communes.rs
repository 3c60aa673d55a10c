//! The commune code lists in `schemas/reference/communes/` as data: every province of the 2025
//! reform has its full list, every pre-reform province keeps its old codes up to 2025-06-30, and
//! every row follows the file conventions the loader relies on. The CSV files are read directly,
//! independent of the library's loader.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

/// Communes valid on 2026-01-01 per post-reform province (Decision 19/2025/QĐ-TTg: 3,321 units,
/// plus one alternative code for Quảng Ninh's Xã Ba Chẽ, 06970/06978, where sources disagree).
const COUNTS_2026: [(&str, usize); 34] = [
    ("01", 126),
    ("04", 56),
    ("08", 124),
    ("11", 45),
    ("12", 38),
    ("14", 75),
    ("15", 99),
    ("19", 92),
    ("20", 65),
    ("22", 55),
    ("24", 99),
    ("25", 148),
    ("31", 114),
    ("33", 104),
    ("37", 129),
    ("38", 166),
    ("40", 130),
    ("42", 69),
    ("44", 78),
    ("46", 40),
    ("48", 94),
    ("51", 96),
    ("52", 135),
    ("56", 65),
    ("66", 102),
    ("68", 124),
    ("75", 95),
    ("79", 168),
    ("80", 96),
    ("82", 102),
    ("86", 124),
    ("91", 102),
    ("92", 103),
    ("96", 64),
];

const HEADER: [&str; 6] = [
    "code",
    "name",
    "province_code",
    "valid_from",
    "valid_to",
    "verified",
];

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/reference")
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_else(|e| panic!("bad date {s:?}: {e}"))
}

/// `(from, to)`, both inclusive; `None` = still valid.
type Period = (NaiveDate, Option<NaiveDate>);

fn period(from: &str, to: &str) -> Period {
    (date(from), (!to.is_empty()).then(|| date(to)))
}

fn contains(p: &Period, day: NaiveDate) -> bool {
    p.0 <= day && p.1.is_none_or(|to| day <= to)
}

/// Every row of a CSV file as a map from column name to value, with the header.
fn read_csv(path: &Path) -> (Vec<String>, Vec<HashMap<String, String>>) {
    let mut reader =
        csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = reader
        .headers()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|record| {
            let record = record.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            header
                .iter()
                .cloned()
                .zip(record.iter().map(str::to_owned))
                .collect()
        })
        .collect();
    (header, rows)
}

/// Province code → its periods, merged where one ends the day before the next starts.
fn province_periods() -> HashMap<String, Vec<Period>> {
    let (_, rows) = read_csv(&reference_dir().join("provinces.csv"));
    let mut raw: HashMap<String, Vec<Period>> = HashMap::new();
    for row in rows {
        raw.entry(row["code"].clone())
            .or_default()
            .push(period(&row["valid_from"], &row["valid_to"]));
    }
    raw.into_iter()
        .map(|(code, mut periods)| {
            periods.sort();
            let mut merged: Vec<Period> = Vec::new();
            for p in periods {
                match merged.last_mut() {
                    Some(last)
                        if last
                            .1
                            .is_none_or(|to| to.succ_opt().is_some_and(|next| next >= p.0)) =>
                    {
                        last.1 = match (last.1, p.1) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            _ => None,
                        };
                    }
                    _ => merged.push(p),
                }
            }
            (code, merged)
        })
        .collect()
}

struct CommuneFile {
    header: Vec<String>,
    rows: Vec<HashMap<String, String>>,
}

/// File stem (the province code) → the file's rows.
fn commune_files() -> BTreeMap<String, CommuneFile> {
    let dir = reference_dir().join("communes");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "csv"))
        .map(|path| {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("file name")
                .to_owned();
            let (header, rows) = read_csv(&path);
            (stem, CommuneFile { header, rows })
        })
        .collect()
}

fn crosswalk() -> Vec<HashMap<String, String>> {
    read_csv(&reference_dir().join("province-crosswalk.csv")).1
}

#[test]
fn every_post_reform_province_has_its_full_list() {
    let files = commune_files();
    let day = date("2026-01-01");
    let new_codes: BTreeSet<String> = crosswalk()
        .into_iter()
        .map(|row| row["new_code"].clone())
        .collect();
    let expected: BTreeMap<&str, usize> = COUNTS_2026.into_iter().collect();
    assert_eq!(new_codes.len(), 34, "34 provinces since 1 July 2025");
    assert_eq!(
        new_codes
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        expected.keys().copied().collect::<BTreeSet<_>>(),
        "the count table covers exactly the 34 provinces of the crosswalk"
    );
    let mut total = 0;
    for code in &new_codes {
        let file = files
            .get(code)
            .unwrap_or_else(|| panic!("no commune file for province {code}"));
        let valid = file
            .rows
            .iter()
            .filter(|row| contains(&period(&row["valid_from"], &row["valid_to"]), day))
            .count();
        assert!(valid > 0, "province {code}: no commune valid on {day}");
        assert_eq!(
            valid,
            expected[code.as_str()],
            "province {code}: communes valid on {day}"
        );
        total += valid;
    }
    assert!(
        (3_200..=3_400).contains(&total),
        "{total} communes valid on {day}, expected about 3,321"
    );
}

#[test]
fn every_legacy_province_keeps_its_pre_reform_codes() {
    let files = commune_files();
    let last_day = date("2025-06-30");
    for row in crosswalk() {
        let code = &row["legacy_code"];
        let file = files
            .get(code)
            .unwrap_or_else(|| panic!("no commune file for legacy province {code}"));
        let ending = file
            .rows
            .iter()
            .filter(|r| period(&r["valid_from"], &r["valid_to"]).1 == Some(last_day))
            .count();
        assert!(
            ending > 0,
            "legacy province {code}: no commune row ending {last_day}"
        );
    }
}

#[test]
fn every_row_follows_the_file_conventions() {
    let provinces = province_periods();
    let files = commune_files();
    assert!(!files.is_empty());
    for (stem, file) in &files {
        assert_eq!(file.header, HEADER, "{stem}.csv: header");
        let mut seen = BTreeSet::new();
        for row in &file.rows {
            let code = &row["code"];
            let what = format!("{stem}.csv {code} {}", row["valid_from"]);
            assert_eq!(&row["province_code"], stem, "{what}: province_code");
            assert!(
                code.len() == 5 && code.bytes().all(|b| b.is_ascii_digit()),
                "{what}: code must be 5 ASCII digits"
            );
            assert!(!row["name"].trim().is_empty(), "{what}: empty name");
            assert!(
                matches!(row["verified"].as_str(), "yes" | "no"),
                "{what}: verified"
            );
            let p = period(&row["valid_from"], &row["valid_to"]);
            assert!(
                p.1.is_none_or(|to| p.0 <= to),
                "{what}: valid_from > valid_to"
            );
            let covered = provinces.get(stem).is_some_and(|periods| {
                periods.iter().any(|q| {
                    q.0 <= p.0
                        && match (p.1, q.1) {
                            (_, None) => true,
                            (Some(to), Some(qto)) => to <= qto,
                            (None, Some(_)) => false,
                        }
                })
            });
            assert!(
                covered,
                "{what}: province {stem} is not in provinces.csv for the whole period"
            );
            assert!(
                seen.insert((code.clone(), row["valid_from"].clone())),
                "{what}: duplicate (code, valid_from)"
            );
        }
    }
}

#[test]
fn the_codes_test_data_relies_on_are_valid() {
    let files = commune_files();
    let valid = |province: &str, code: &str, day: &str| {
        files[province].rows.iter().any(|row| {
            row["code"] == *code
                && contains(&period(&row["valid_from"], &row["valid_to"]), date(day))
        })
    };
    assert!(valid("01", "00004", "2026-11-23"));
    assert!(valid("48", "20194", "2026-11-23"));
    assert!(valid("79", "26737", "2026-11-23"));
    assert!(valid("79", "26734", "2025-06-30") && !valid("79", "26734", "2025-07-01"));
}
