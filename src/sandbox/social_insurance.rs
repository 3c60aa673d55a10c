//! The social insurance stand-in (Bảo hiểm xã hội Việt Nam):
//!
//! - `POST /social-insurance/v1/child-cards`: a newborn's health-insurance card, group TE,
//!   valid from birth until the day before the child is 72 months old; once per child, one per
//!   `Idempotency-Key`; `GET …/child-cards/{personal_id}` looks it up;
//! - `POST /social-insurance/v1/death-benefits`: the funeral allowance or the survivor lump sum
//!   of a deceased person, each decided once per death, from the contribution history the
//!   agency holds and the rules in `schemas/reference/social-insurance-benefits.csv` (data, so a
//!   change of the law is a change of a file); a benefit the history does not give is answered
//!   as a decision `REFUSED` with its reason, not an error. `POST …/{decision_number}/payment`
//!   pays a decided benefit to the beneficiary's bank account, once; `POST …/cancellation`
//!   cancels one not yet paid (the compensation when a death registration is annulled);
//! - `PUT /social-insurance/v1/contributions/{personal_id}`: the sandbox's control, setting a
//!   contribution history (the seeded population has some already).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{Months, NaiveDate};
use deadpool_postgres::Pool;
use serde_json::{Value, json};
use tokio_postgres::Row;

use super::answer::{self, Answer, authorised, problem, text};

/// Salaries above this are typing errors, not pay: they would only overflow the amounts.
const MAX_SALARY_VND: i64 = 10_000_000_000;

const RULES: &str = include_str!("../../schemas/reference/social-insurance-benefits.csv");

/// The amount rules in force, by name.
struct Rules(HashMap<String, f64>);

impl Rules {
    /// The rules in force today (rows whose validity has not ended).
    fn load() -> Result<Self, String> {
        let mut rules = HashMap::new();
        for record in csv::Reader::from_reader(RULES.as_bytes()).records() {
            let record = record.map_err(|e| format!("social-insurance-benefits.csv: {e}"))?;
            if record.get(3).is_some_and(|to| !to.is_empty()) {
                continue;
            }
            let value = record
                .get(1)
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or("social-insurance-benefits.csv: a value is not a number")?;
            rules.insert(record.get(0).unwrap_or_default().to_owned(), value);
        }
        for needed in [
            "reference_amount_vnd",
            "funeral_allowance_multiple",
            "funeral_minimum_contribution_months",
            "survivor_months_per_year_before_2014",
            "survivor_months_per_year_from_2014",
            "survivor_minimum_months",
            "child_card_valid_months",
        ] {
            if !rules.contains_key(needed) {
                return Err(format!(
                    "social-insurance-benefits.csv: no rule {needed} in force"
                ));
            }
        }
        Ok(Self(rules))
    }

    fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or_default()
    }

    /// (funeral allowance, survivor lump sum) in dong.
    fn death_benefits(&self, before_2014: i64, from_2014: i64, average_salary: i64) -> (i64, i64) {
        let months = before_2014 + from_2014;
        let funeral = if months as f64 >= self.get("funeral_minimum_contribution_months") {
            (self.get("funeral_allowance_multiple") * self.get("reference_amount_vnd")).round()
                as i64
        } else {
            0
        };
        let salary = average_salary as f64;
        let by_years = (before_2014 as f64 / 12.0)
            * self.get("survivor_months_per_year_before_2014")
            + (from_2014 as f64 / 12.0) * self.get("survivor_months_per_year_from_2014");
        let survivor = by_years.max(self.get("survivor_minimum_months")) * salary;
        (funeral, survivor.round() as i64)
    }
}

#[derive(Clone)]
struct Sandbox {
    pool: Pool,
    token: String,
    rules: Arc<Rules>,
}

pub fn routes(pool: Pool, token: String) -> Result<Router, String> {
    let rules = Arc::new(Rules::load()?);
    Ok(Router::new()
        .route("/social-insurance/v1/child-cards", post(child_card))
        .route(
            "/social-insurance/v1/child-cards/{personal_id}",
            get(card_of),
        )
        .route("/social-insurance/v1/death-benefits", post(decide))
        .route(
            "/social-insurance/v1/death-benefits/{decision_number}/payment",
            post(pay),
        )
        .route(
            "/social-insurance/v1/death-benefits/{decision_number}/cancellation",
            post(cancel),
        )
        .route(
            "/social-insurance/v1/contributions/{personal_id}",
            put(set_contribution),
        )
        .with_state(Sandbox { pool, token, rules }))
}

fn internal(error: impl std::fmt::Display) -> Answer {
    answer::internal("social-insurance", error)
}

fn invalid(message: &str) -> Answer {
    problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
}

async fn child_card(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let key = answer::header(&headers, "Idempotency-Key")?;
    let child = answer::personal_id(&body, "/personal_id")?;
    let province = text(&body, "/province_code")?;
    let birth = NaiveDate::parse_from_str(text(&body, "/birth_date")?, "%Y-%m-%d")
        .map_err(|_| invalid("/birth_date must be a date, YYYY-MM-DD"))?;
    if province.len() != 2 || !province.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("/province_code must be two digits"));
    }
    let months = sandbox.rules.get("child_card_valid_months") as u32;
    let valid_to = birth
        .checked_add_months(Months::new(months))
        .and_then(|d| d.pred_opt())
        .ok_or_else(|| invalid("/birth_date is out of range"))?;
    let client = sandbox.pool.get().await.map_err(internal)?;
    let number: i64 = client
        .query_one(
            "SELECT nextval('sandbox_social_insurance.insurance_number')",
            &[],
        )
        .await
        .map_err(internal)?
        .get(0);
    // The 10-digit social insurance number: the province, then a serial.
    let insurance_number = format!("{province}{:08}", number % 100_000_000);
    let answer = json!({
        "personal_id": child,
        "social_insurance_number": insurance_number,
        "card_number": format!("TE1{province}{insurance_number}"),
        "group": "TE",
        "valid_from": birth.to_string(),
        "valid_to": valid_to.to_string(),
        // The first health facility: the province's children's hospital in the sandbox.
        "registered_hospital_code": format!("{province}017"),
        "issued_at": chrono::Utc::now().with_timezone(&crate::domain::vietnam()).to_rfc3339(),
        "issuing_authority": format!("Bảo hiểm xã hội tỉnh/thành phố mã {province}"),
    });
    let inserted = client
        .execute(
            "INSERT INTO sandbox_social_insurance.child_card (personal_id, request_key, card_number, answer)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&child, &key, &answer["card_number"].as_str(), &answer],
        )
        .await
        .map_err(internal)?;
    // The key first: a repeat gets its first answer, a key reused for another child is
    // refused; then the child: one card each.
    let taken = problem(
        StatusCode::CONFLICT,
        "already_issued",
        "this child holds a card already",
    );
    answer::created_or_replayed(
        &client,
        "social-insurance",
        (inserted, answer),
        ("sandbox_social_insurance.child_card", key, child),
        taken,
    )
    .await
}

async fn card_of(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(child): Path<String>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let client = sandbox.pool.get().await.map_err(internal)?;
    let row = client
        .query_opt(
            "SELECT answer FROM sandbox_social_insurance.child_card WHERE personal_id = $1",
            &[&child],
        )
        .await
        .map_err(internal)?
        .ok_or_else(|| problem(StatusCode::NOT_FOUND, "not_found", "no card for this child"))?;
    Ok((StatusCode::OK, Json(row.get::<_, Value>(0))))
}

const COLUMNS: &str = "decision_id, deceased_personal_id, benefit_type, beneficiary, amount_vnd, \
     status, reason_code, payment_reference, decided_at, settled_at";

const AUTHORITY: &str = "Bảo hiểm xã hội Việt Nam";

/// A decision as the agency answers it: its number, the benefit, the amount, and for a paid one
/// the transfer.
fn decision(row: &Row) -> Value {
    let at = |index: usize| {
        row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(index)
            .map(|t| t.with_timezone(&crate::domain::vietnam()).to_rfc3339())
    };
    let status: String = row.get(5);
    let reason: Option<String> = row.get(6);
    json!({
        "decision_number": decision_number(row.get(0)),
        "deceased_personal_id": row.get::<_, String>(1),
        "benefit_type": row.get::<_, String>(2),
        "beneficiary": row.get::<_, Value>(3),
        "amount_vnd": row.get::<_, i64>(4),
        "reason_text": reason.as_deref().map(reason_text),
        "reason_code": reason,
        "decided_at": at(8),
        "deciding_authority": AUTHORITY,
        "payment_reference": row.get::<_, Option<String>>(7),
        "paid_at": (status == "PAID").then(|| at(9)).flatten(),
        "cancelled_at": (status == "CANCELLED").then(|| at(9)).flatten(),
        "status": status,
    })
}

/// Decision numbers as the agency writes them; the serial is the sandbox's row.
fn decision_number(id: i64) -> String {
    format!("QD-BHXH-{id:08}")
}

fn decision_id(number: &str) -> Option<i64> {
    number.strip_prefix("QD-BHXH-")?.parse().ok()
}

fn reason_text(code: &str) -> &'static str {
    match code {
        "NOT_INSURED" => "Người chết không có quá trình đóng bảo hiểm xã hội.",
        "CONTRIBUTION_TOO_SHORT" => {
            "Người chết đóng bảo hiểm xã hội chưa đủ 12 tháng: không đủ điều kiện hưởng trợ cấp mai táng."
        }
        _ => "Không đủ điều kiện hưởng chế độ.",
    }
}

/// The benefit's amount from the contribution history the agency holds, or why it is refused.
fn assess(
    rules: &Rules,
    benefit: &str,
    history: Option<(i64, i64, i64)>,
) -> Result<i64, &'static str> {
    let (before, from, salary) = history
        .filter(|(before, from, _)| before + from > 0)
        .ok_or("NOT_INSURED")?;
    let (funeral, survivor) = rules.death_benefits(before, from, salary);
    match benefit {
        "FUNERAL_ALLOWANCE" if funeral == 0 => Err("CONTRIBUTION_TOO_SHORT"),
        "FUNERAL_ALLOWANCE" => Ok(funeral),
        _ => Ok(survivor),
    }
}

/// Sets what a citizen contributed (the sandbox's control: real contribution histories come
/// from employers' declarations).
async fn set_contribution(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(person): Path<String>,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    if crate::domain::PersonalId::parse(&person).is_err() {
        return Err(invalid("the path must end with a personal ID of 12 digits"));
    }
    let before = months(&body, "/months_before_2014")?;
    let from = months(&body, "/months_from_2014")?;
    let salary = body
        .pointer("/average_monthly_salary_vnd")
        .and_then(Value::as_i64)
        .filter(|s| (1..=MAX_SALARY_VND).contains(s))
        .ok_or_else(|| {
            invalid("/average_monthly_salary_vnd must be a number of dong from 1 to 10 billion")
        })?;
    let client = sandbox.pool.get().await.map_err(internal)?;
    client
        .execute(
            "INSERT INTO sandbox_social_insurance.contribution VALUES ($1, $2, $3, $4)
             ON CONFLICT (personal_id) DO UPDATE SET months_before_2014 = $2,
                 months_from_2014 = $3, average_monthly_salary_vnd = $4",
            &[&person, &month_count(before), &month_count(from), &salary],
        )
        .await
        .map_err(internal)?;
    Ok((
        StatusCode::OK,
        Json(
            json!({"personal_id": person, "months_before_2014": before, "months_from_2014": from, "average_monthly_salary_vnd": salary}),
        ),
    ))
}

/// A number of months checked by [`months`] (0 to 600), as the table stores it.
fn month_count(months: i64) -> i32 {
    i32::try_from(months).unwrap_or(i32::MAX)
}

fn months(body: &Value, path: &str) -> Result<i64, Answer> {
    body.pointer(path)
        .and_then(Value::as_i64)
        .filter(|m| (0..=600).contains(m))
        .ok_or_else(|| invalid(&format!("{path} must be a number of months, 0 to 600")))
}

async fn decide(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let key = answer::header(&headers, "Idempotency-Key")?;
    let benefit = text(&body, "/benefit_type")?;
    if !["FUNERAL_ALLOWANCE", "SURVIVOR_LUMP_SUM"].contains(&benefit) {
        return Err(invalid(
            "/benefit_type must be FUNERAL_ALLOWANCE or SURVIVOR_LUMP_SUM",
        ));
    }
    let deceased = answer::personal_id(&body, "/deceased_personal_id")?;
    NaiveDate::parse_from_str(text(&body, "/died_on")?, "%Y-%m-%d")
        .map_err(|_| invalid("/died_on must be a date, YYYY-MM-DD"))?;
    let beneficiary = body
        .pointer("/beneficiary")
        .filter(|b| {
            [
                "/personal_id",
                "/full_name",
                "/relationship",
                "/bank_code",
                "/account_number",
                "/account_name",
            ]
            .iter()
            .all(|f| b.pointer(f).and_then(Value::as_str).is_some_and(|v| !v.is_empty()))
        })
        .ok_or_else(|| {
            invalid("/beneficiary needs personal_id, full_name, relationship, bank_code, account_number and account_name: benefits are paid to a bank account")
        })?;
    let client = sandbox.pool.get().await.map_err(internal)?;
    let history = client
        .query_opt(
            "SELECT months_before_2014, months_from_2014, average_monthly_salary_vnd
             FROM sandbox_social_insurance.contribution WHERE personal_id = $1",
            &[&deceased],
        )
        .await
        .map_err(internal)?
        .map(|r| {
            (
                i64::from(r.get::<_, i32>(0)),
                i64::from(r.get::<_, i32>(1)),
                r.get(2),
            )
        });
    let (amount, status, reason) = match assess(&sandbox.rules, benefit, history) {
        Ok(amount) => (amount, "DECIDED", None),
        Err(reason) => (0, "REFUSED", Some(reason)),
    };
    let inserted = client
        .execute(
            "INSERT INTO sandbox_social_insurance.benefit_decision (deceased_personal_id,
                 benefit_type, request_key, beneficiary, amount_vnd, status, reason_code)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[
                &deceased,
                &benefit,
                &key,
                beneficiary,
                &amount,
                &status,
                &reason,
            ],
        )
        .await
        .map_err(internal)?;
    let by_key = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM sandbox_social_insurance.benefit_decision
                 WHERE request_key = $1"
            ),
            &[&key],
        )
        .await
        .map_err(internal)?;
    let row = match by_key {
        Some(row) if row.get::<_, &str>(1) == deceased && row.get::<_, &str>(2) == benefit => row,
        Some(_) => return Err(answer::key_reused()),
        None => {
            return Err(problem(
                StatusCode::CONFLICT,
                "already_decided",
                "this benefit was decided for this death under another request",
            ));
        }
    };
    let status = if inserted == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(decision(&row))))
}

async fn settle(sandbox: &Sandbox, number: &str, to: &str) -> Result<Answer, Answer> {
    let id = decision_id(number).ok_or_else(not_found)?;
    let client = sandbox.pool.get().await.map_err(internal)?;
    let reference = (to == "PAID").then(|| format!("CK-BHXH-{id:010}"));
    let row = client
        .query_opt(
            &format!(
                "UPDATE sandbox_social_insurance.benefit_decision
                 SET status = $2, payment_reference = COALESCE($3, payment_reference), settled_at = now()
                 WHERE decision_id = $1 AND status = 'DECIDED' RETURNING {COLUMNS}"
            ),
            &[&id, &to, &reference],
        )
        .await
        .map_err(internal)?;
    if let Some(row) = row {
        return Ok((StatusCode::OK, Json(decision(&row))));
    }
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM sandbox_social_insurance.benefit_decision WHERE decision_id = $1"),
            &[&id],
        )
        .await
        .map_err(internal)?
        .ok_or_else(not_found)?;
    let now: String = row.get(5);
    if now == to {
        // Repeated: the same answer.
        return Ok((StatusCode::OK, Json(decision(&row))));
    }
    let code = match now.as_str() {
        "PAID" => "already_paid",
        "REFUSED" => "refused",
        _ => "cancelled",
    };
    Err(problem(
        StatusCode::CONFLICT,
        code,
        format!("the decision is {} already", now.to_lowercase()),
    ))
}

/// Pays a decision, which the request must name exactly: its amount and the account it was
/// decided for (a payment for another amount or into another account is refused, never made).
async fn pay(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(number): Path<String>,
    Json(body): Json<Value>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    let amount = body
        .pointer("/amount_vnd")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("/amount_vnd must be the decided amount, in dong"))?;
    let account = text(&body, "/account_number")?;
    let id = decision_id(&number).ok_or_else(not_found)?;
    let client = sandbox.pool.get().await.map_err(internal)?;
    let decided = client
        .query_opt(
            "SELECT amount_vnd, beneficiary->>'account_number'
             FROM sandbox_social_insurance.benefit_decision WHERE decision_id = $1",
            &[&id],
        )
        .await
        .map_err(internal)?
        .ok_or_else(not_found)?;
    if decided.get::<_, i64>(0) != amount || decided.get::<_, Option<&str>>(1) != Some(account) {
        return Err(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "mismatch",
            "/amount_vnd and /account_number must be the decision's",
        ));
    }
    // One connection at a time: holding this one while settling takes another.
    drop(client);
    settle(&sandbox, &number, "PAID").await
}

fn not_found() -> Answer {
    problem(StatusCode::NOT_FOUND, "not_found", "no such decision")
}

async fn cancel(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Result<Answer, Answer> {
    authorised(&sandbox.token, &headers)?;
    settle(&sandbox, &number, "CANCELLED").await
}

#[cfg(test)]
mod tests {
    use super::{Rules, assess};

    #[test]
    fn death_benefits_follow_the_rules_file() {
        let rules = Rules::load().unwrap();
        // 10 x 2 340 000; 5 years before 2014 (7.5 months) + 10 years after (20 months).
        assert_eq!(
            rules.death_benefits(60, 120, 8_000_000),
            (23_400_000, 220_000_000)
        );
        // Under 12 months: no funeral allowance, and the survivor minimum of 3 months.
        assert_eq!(rules.death_benefits(0, 6, 5_000_000), (0, 15_000_000));
    }

    #[test]
    fn a_benefit_the_history_does_not_give_is_refused_with_its_reason() {
        let rules = Rules::load().unwrap();
        assert_eq!(
            assess(&rules, "FUNERAL_ALLOWANCE", None),
            Err("NOT_INSURED")
        );
        assert_eq!(
            assess(&rules, "SURVIVOR_LUMP_SUM", Some((0, 0, 5_000_000))),
            Err("NOT_INSURED")
        );
        assert_eq!(
            assess(&rules, "FUNERAL_ALLOWANCE", Some((0, 6, 5_000_000))),
            Err("CONTRIBUTION_TOO_SHORT")
        );
        assert_eq!(
            assess(&rules, "SURVIVOR_LUMP_SUM", Some((0, 6, 5_000_000))),
            Ok(15_000_000)
        );
        assert_eq!(
            assess(&rules, "FUNERAL_ALLOWANCE", Some((60, 120, 8_000_000))),
            Ok(23_400_000)
        );
    }
}
