//! A synthetic population for the population-database sandbox (`lienthong sandbox seed`):
//! households of one to six people living in the province's current communes, each citizen with
//! a valid personal ID (place, century and sex, year, and a serial), a name, a birth date that
//! fits the household (parents 20 to 45 years older than their children), and an ethnicity.
//! Deterministic under a seed. Loaded with `COPY`, not row by row: a million citizens take
//! seconds, not hours.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{Datelike as _, NaiveDate};
use deadpool_postgres::Pool;
use futures::SinkExt as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::db::DbError;

/// Citizens written per `COPY` chunk.
const CHUNK: usize = 10_000;

const SURNAMES: [(&str, u32); 14] = [
    ("Nguyễn", 38),
    ("Trần", 11),
    ("Lê", 9),
    ("Phạm", 7),
    ("Hoàng", 5),
    ("Huỳnh", 5),
    ("Phan", 4),
    ("Vũ", 4),
    ("Võ", 4),
    ("Đặng", 2),
    ("Bùi", 2),
    ("Đỗ", 2),
    ("Hồ", 2),
    ("Ngô", 5),
];
const MIDDLE_MALE: [&str; 6] = ["Văn", "Minh", "Đức", "Quang", "Hữu", "Công"];
const MIDDLE_FEMALE: [&str; 6] = ["Thị", "Ngọc", "Thu", "Thanh", "Minh", "Bảo"];
const GIVEN_MALE: [&str; 12] = [
    "An", "Bình", "Cường", "Dũng", "Hải", "Hùng", "Khoa", "Long", "Nam", "Phúc", "Quân", "Tuấn",
];
const GIVEN_FEMALE: [&str; 12] = [
    "Anh", "Chi", "Dung", "Hà", "Hoa", "Hương", "Lan", "Linh", "Mai", "Ngọc", "Trang", "Vy",
];

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{0}")]
    Reference(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for SeedError {
    fn from(error: tokio_postgres::Error) -> Self {
        SeedError::Db(error.into())
    }
}

/// What a seeding did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeded {
    pub citizens: u64,
    /// Generated numbers the API had given out already, left out.
    pub skipped: u64,
    pub households: u64,
    pub elapsed: Duration,
}

/// The communes of `province` in force today, from `<reference>/communes/<province>.csv`.
fn communes(reference: &Path, province: &str) -> Result<Vec<(String, String)>, SeedError> {
    let file = reference.join("communes").join(format!("{province}.csv"));
    let mut reader = csv::Reader::from_path(&file).map_err(|e| {
        SeedError::Reference(format!(
            "{}: {e} (is {province} a current province code?)",
            file.display()
        ))
    })?;
    let mut communes = Vec::new();
    for record in reader.records() {
        let record =
            record.map_err(|e| SeedError::Reference(format!("{}: {e}", file.display())))?;
        // code,name,province_code,valid_from,valid_to,verified: only those in force now.
        if record.get(4).is_some_and(str::is_empty) {
            communes.push((
                record.get(0).unwrap_or_default().to_owned(),
                record.get(1).unwrap_or_default().to_owned(),
            ));
        }
    }
    if communes.is_empty() {
        return Err(SeedError::Reference(format!(
            "{}: no commune in force today: {province} is not a current province",
            file.display()
        )));
    }
    Ok(communes)
}

/// Ethnicity codes with a weight each: the Kinh majority, then the others evenly.
fn ethnicities(reference: &Path) -> Result<Vec<(String, u32)>, SeedError> {
    let file = reference.join("ethnicities.csv");
    let mut reader = csv::Reader::from_path(&file)
        .map_err(|e| SeedError::Reference(format!("{}: {e}", file.display())))?;
    let mut codes = Vec::new();
    for record in reader.records() {
        let record =
            record.map_err(|e| SeedError::Reference(format!("{}: {e}", file.display())))?;
        let code = record.get(0).unwrap_or_default().to_owned();
        let weight = if code == "01" { 850 } else { 3 };
        codes.push((code, weight));
    }
    Ok(codes)
}

fn weighted<'a, T>(random: &mut StdRng, items: &'a [(T, u32)]) -> &'a T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut pick = random.random_range(0..total.max(1));
    for (item, weight) in items {
        if pick < *weight {
            return item;
        }
        pick -= weight;
    }
    &items[items.len() - 1].0
}

/// Issues personal ID serials: per prefix (place, century and sex, year) a walk through all
/// million serials in a scrambled order, so numbers look random and never repeat. The walk of
/// a prefix is always the same; a later seeding continues it after the numbers the sandbox
/// holds already, so seeding twice adds, and never collides with, the first.
struct Serials {
    /// prefix → how far its walk has gone.
    next: HashMap<String, u32>,
}

/// A number coprime with 1 000 000: multiplying by it permutes the serials.
const SERIAL_STEP: u64 = 23_757;

impl Serials {
    fn new(taken: HashMap<String, u32>) -> Self {
        Self { next: taken }
    }

    fn id(&mut self, province: &str, birth: NaiveDate, female: bool) -> Option<String> {
        use sha2::Digest as _;
        let century = match birth.year() / 100 {
            19 => 0,
            20 => 2,
            _ => return None,
        } + u32::from(female);
        let prefix = format!("0{province}{century}{:02}", birth.year() % 100);
        let digest = sha2::Sha256::digest(prefix.as_bytes());
        let offset = u64::from(u32::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3],
        ]));
        let count = self.next.entry(prefix.clone()).or_insert(0);
        if *count >= 1_000_000 {
            return None;
        }
        let serial = (u64::from(*count) * SERIAL_STEP + offset) % 1_000_000;
        *count += 1;
        Some(format!("{prefix}{serial:06}"))
    }
}

/// How many numbers of each prefix the sandbox holds already.
async fn taken(
    client: &deadpool_postgres::Transaction<'_>,
) -> Result<HashMap<String, u32>, SeedError> {
    let rows = client
        .query(
            "SELECT left(personal_id, 6), count(*) FROM sandbox_population.citizen GROUP BY 1",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let count: i64 = row.get(1);
            (row.get(0), u32::try_from(count).unwrap_or(u32::MAX))
        })
        .collect())
}

/// Where a household lives and who it is.
struct Household<'a> {
    id: &'a str,
    province: &'a str,
    /// (code, name)
    commune: &'a (String, String),
    ethnicity: &'a str,
}

/// One citizen's line of `COPY … (FORMAT text)`.
fn line(
    out: &mut String,
    household: &Household<'_>,
    (id, name): (&str, &str),
    (birth, female): (NaiveDate, bool),
    relationship: &str,
) {
    let h = household;
    let _ = writeln!(
        out,
        "{id}\t{name}\t{birth}\t{}\t{}\tVN\t{}\t{}\t{}, tỉnh/thành {}\t{}\t{relationship}",
        if female { "FEMALE" } else { "MALE" },
        h.ethnicity,
        h.province,
        h.commune.0,
        h.commune.1,
        h.province,
        h.id,
    );
}

fn name(random: &mut StdRng, surname: &str, female: bool) -> String {
    let (middle, given) = if female {
        (&MIDDLE_FEMALE[..], &GIVEN_FEMALE[..])
    } else {
        (&MIDDLE_MALE[..], &GIVEN_MALE[..])
    };
    format!(
        "{surname} {} {}",
        middle[random.random_range(0..middle.len())],
        given[random.random_range(0..given.len())]
    )
}

fn date_between(random: &mut StdRng, from: NaiveDate, to: NaiveDate) -> NaiveDate {
    let days = (to - from).num_days().max(1);
    from + chrono::Duration::days(random.random_range(0..days))
}

/// Adds `citizens` synthetic citizens of `province` (a current two-digit code) to the sandbox,
/// reporting progress to `progress` (citizens written so far).
pub async fn seed(
    pool: &Pool,
    reference: &Path,
    province: &str,
    citizens: u64,
    seed: u64,
    progress: impl Fn(u64),
) -> Result<Seeded, SeedError> {
    let started = Instant::now();
    let communes = communes(reference, province)?;
    let ethnicities = ethnicities(reference)?;
    super::migrate(pool).await?;
    let mut random = StdRng::seed_from_u64(seed);
    let today = chrono::Utc::now().date_naive();
    let year = |years: i64| today - chrono::Duration::days(years * 365);

    let mut client = pool.get().await.map_err(DbError::from)?;
    let tx = client.transaction().await?;
    let mut serials = Serials::new(taken(&tx).await?);
    // Household numbers go on from the last one of the province, as serials do.
    let last: Option<String> = tx
        .query_one(
            "SELECT max(household_id) FROM sandbox_population.citizen WHERE household_id LIKE $1",
            &[&format!("HK{province}%")],
        )
        .await?
        .get(0);
    let first_household: u64 = last
        .and_then(|id| id.get(2 + province.len()..).and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    // Numbers already in the sandbox (from an earlier seeding or the API) are skipped: the
    // rows go through a staging table and only new numbers are kept.
    tx.batch_execute(
        "CREATE TEMP TABLE seed_citizen (LIKE sandbox_population.citizen INCLUDING DEFAULTS)
         ON COMMIT DROP",
    )
    .await?;
    let sink = tx
        .copy_in(
            "COPY seed_citizen (personal_id, full_name, birth_date, sex, ethnicity_code, \
             nationality, province_code, commune_code, address, household_id, relationship) \
             FROM STDIN (FORMAT text)",
        )
        .await?;
    futures::pin_mut!(sink);
    let mut written = 0u64;
    let mut households = 0u64;
    let mut chunk = String::with_capacity(CHUNK * 160);
    let mut in_chunk = 0usize;
    while written < citizens {
        households += 1;
        let household = format!("HK{province}{:09}", first_household + households);
        let commune = &communes[random.random_range(0..communes.len())];
        let surname = *weighted(&mut random, &SURNAMES);
        let ethnicity = weighted(&mut random, &ethnicities).clone();
        let home = Household {
            id: &household,
            province,
            commune,
            ethnicity: &ethnicity,
        };
        let head_female = random.random_bool(0.25);
        let head_birth = date_between(&mut random, year(85), year(22));
        let size = random.random_range(1..=6u64).min(citizens - written);
        let mut members = vec![(head_female, head_birth, "head")];
        if size > 1 {
            let spouse_birth = date_between(
                &mut random,
                head_birth - chrono::Duration::days(3650),
                head_birth + chrono::Duration::days(3650),
            )
            .min(year(18));
            members.push((!head_female, spouse_birth, "spouse"));
        }
        let youngest_parent = members.iter().map(|m| m.1).max().unwrap_or(head_birth);
        // Children are born 20 to 45 years after the younger parent, and not in the future:
        // a young couple has none yet.
        let from = youngest_parent + chrono::Duration::days(20 * 365);
        let to = (youngest_parent + chrono::Duration::days(45 * 365)).min(today);
        while (members.len() as u64) < size && from < to {
            let birth = date_between(&mut random, from, to);
            members.push((random.random_bool(0.49), birth, "child"));
        }
        for (female, birth, relationship) in members {
            let Some(id) = serials.id(province, birth, female) else {
                continue;
            };
            let own_surname = if relationship == "spouse" {
                *weighted(&mut random, &SURNAMES)
            } else {
                surname
            };
            let full_name = name(&mut random, own_surname, female);
            line(
                &mut chunk,
                &home,
                (&id, &full_name),
                (birth, female),
                relationship,
            );
            written += 1;
            in_chunk += 1;
        }
        if in_chunk >= CHUNK {
            sink.send(Bytes::from(std::mem::take(&mut chunk))).await?;
            in_chunk = 0;
            progress(written);
        }
    }
    if !chunk.is_empty() {
        sink.send(Bytes::from(chunk)).await?;
    }
    sink.as_mut().finish().await?;
    progress(written);
    let kept = tx
        .execute(
            "INSERT INTO sandbox_population.citizen SELECT * FROM seed_citizen
             ON CONFLICT (personal_id) DO NOTHING",
            &[],
        )
        .await?;
    // Seven adults in ten have contributed to social insurance since they were 22 (at most 35
    // years), at a salary of 5 to 20 million dong: enough for the death benefits to be decided,
    // or refused, as they would be.
    tx.execute(
        "INSERT INTO sandbox_social_insurance.contribution
         SELECT personal_id,
                LEAST(worked - LEAST(worked, since_2014), 600),
                LEAST(worked, since_2014),
                5000000 + (abs(hashtext(personal_id)::bigint) % 31) * 500000
         FROM (SELECT personal_id,
                      LEAST((extract(year FROM age(birth_date::date))::int - 22) * 12, 420) AS worked,
                      (extract(year FROM age(DATE '2014-01-01'))::int * 12
                       + extract(month FROM age(DATE '2014-01-01'))::int) AS since_2014
               FROM seed_citizen
               -- Seeded dates are full; a partial one (YYYY) would stand for no contribution.
               WHERE length(birth_date) = 10
                 AND birth_date::date < current_date - INTERVAL '23 years'
                 AND abs(hashtext(personal_id || 'bhxh')::bigint) % 10 < 7) AS adult
         ON CONFLICT (personal_id) DO NOTHING",
        &[],
    )
    .await?;
    tx.commit().await?;
    Ok(Seeded {
        citizens: kept,
        skipped: written - kept,
        households,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_never_repeat_within_a_prefix() {
        let mut serials = Serials::new(HashMap::new());
        let birth = NaiveDate::from_ymd_opt(1990, 5, 1).unwrap();
        let ids: std::collections::HashSet<String> = (0..100_000)
            .map(|_| serials.id("48", birth, true).unwrap())
            .collect();
        assert_eq!(ids.len(), 100_000);
        assert!(
            ids.iter()
                .all(|id| id.starts_with("048190") && id.len() == 12)
        );
    }
}
