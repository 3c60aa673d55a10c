//! Semantic rules that JSON Schema cannot express, run in the same validation pass and reported
//! in the same list. They apply by field name across every event type (the catalogue names
//! fields consistently), with the reference data of the event's own date:
//!
//! | code | severity | rule |
//! |---|---|---|
//! | `vn.personal_id.province` | warning | the ID's 3-digit prefix is a province code issued on the birth date, or a listed country code |
//! | `vn.personal_id.country` | warning | a country prefix (a birth registered abroad, Circular 59/2021/TT-BCA) is listed as checked against the circular: the hub's list (`personal-id-country-codes.csv`) is incomplete, so a listed but unchecked code warns |
//! | `vn.personal_id.sex` | error | the century/sex digit agrees with `sex` beside it |
//! | `vn.personal_id.birth_year` | error | century and year digits agree with `birth_date` (or `birth_date_partial`) beside it |
//! | `vn.bhyt.group` | warning | a health-insurance card (`card_number` beside `bhxh_number`) of a child under 6 is group `TE` |
//! | `vn.bhyt.bhxh_number` | error | the card's social-insurance number (its last 10 digits, or the whole 10-digit code) is the one beside it |
//! | `vn.admin.province` | error | the 2-digit province code is valid on the event's date |
//! | `vn.admin.commune` | error | the commune code is valid in its province on the event's date |
//! | `vn.code.ethnicity` | error | the ethnicity code is in the national list |
//! | `vn.code.nationality` | error | the nationality (or a travel document's issuing country) is an ISO 3166 country |
//! | `vn.date.future` | error | a date of something that happened is not after the event |
//! | `vn.date.order` | error | a birth is not after the dates that follow it (registration, death) |
//! | `vn.plausible.birth_weight` | warning | a birth weight between 300 and 7 000 g (the schema refuses only the impossible) |
//! | `vn.status.transition` | warning | a dossier status change is allowed by the portal's state machine |
//! | `vn.deadline.appointment` | warning | a birth-group acceptance's appointment (`appointment_at` beside `accepted_at`, `verification_required` and a birth-group `procedure_code`) is not later than 3 working days, 5 with verification (`domain::calendar`, in the years its holiday list covers; deadlines transcribed from practice) |
//! | `vn.text.nul` | error | no text holds a NUL character (no database downstream can store it) |
//! | `vn.prefill.fields` | error | a submission's `prefill` names fields the submission holds, no more of them than `fields_on_form` |
//! | `vn.service.data` | error | a requested service comes with what it needs: `requested_services.permanent_residence` with the `residence` beside it; a funeral allowance or survivor benefit among `sub_procedures` with the `beneficiary_account` it is paid into |
//!
//! A `warning` accepts the event and reports the problem (to the caller, in metrics and to
//! subscribers): for rules whose data the hub cannot be sure of (incomplete lists, a portal state
//! machine transcribed from practice) or that would guess at the law (a few children under six
//! lawfully hold a health-insurance group other than TE). Everything else refuses the event.
//! Text is normalised before these rules run (see `normalise`), so names in another Unicode
//! form are not refused. A partial date of birth (`birth_date_partial`: `YYYY` or `YYYY-MM`,
//! for older citizens) stands in for `birth_date`, from the first day it can be.
//!
//! Each message is Vietnamese, then English. Messages name fields, never their values: they
//! reach logs, and values here are personal data.

use chrono::{DateTime, NaiveDate};
use serde_json::{Map, Value};

use super::violation::{push_index, push_key};
use super::{Severity, Violation};
use crate::domain::{PersonalId, ReferenceData, Sex};

/// A date of birth of which only the year or the month is known (older citizens): checked
/// from the first day it can be.
const PARTIAL_BIRTH_DATE: &str = "birth_date_partial";
/// Children under this age get the `TE` health-insurance group.
const TE_MAX_AGE: i32 = 6;

/// A health-insurance card is a `card_number` beside the `bhxh_number` it must end with (an ID
/// card's `card_number` has none).
fn is_health_card(name: &str, has_sibling: impl Fn(&str) -> bool) -> bool {
    name == "card_number" && has_sibling("bhxh_number")
}

/// The rule codes that apply to a field of this name (given its sibling fields), for the data
/// dictionary. Kept beside the checks below so the two cannot drift apart.
pub fn rules_for_field(name: &str, has_sibling: impl Fn(&str) -> bool) -> Vec<&'static str> {
    let mut rules = Vec::new();
    match name {
        "personal_id" => rules.extend([
            "vn.personal_id.province",
            "vn.personal_id.country",
            "vn.personal_id.sex",
            "vn.personal_id.birth_year",
        ]),
        "province_code" => rules.push("vn.admin.province"),
        "commune_code" => rules.push("vn.admin.commune"),
        "ethnicity_code" => rules.push("vn.code.ethnicity"),
        "nationality" | "issuing_country" => rules.push("vn.code.nationality"),
        "to_status" => rules.push("vn.status.transition"),
        "birth_weight_grams" => rules.push("vn.plausible.birth_weight"),
        "residence" if has_sibling("requested_services") => rules.push("vn.service.data"),
        "beneficiary_account" if has_sibling("sub_procedures") => {
            rules.push("vn.service.data");
        }
        "prefill" => rules.push("vn.prefill.fields"),
        "appointment_at"
            if has_sibling("accepted_at")
                && has_sibling("verification_required")
                && has_sibling("procedure_code") =>
        {
            rules.push("vn.deadline.appointment");
        }
        _ => {}
    }
    if is_health_card(name, has_sibling) {
        rules.extend(["vn.bhyt.group", "vn.bhyt.bhxh_number"]);
    }
    if is_past_date(name) {
        rules.push("vn.date.future");
    }
    if matches!(name, "birth_date" | "death_date" | "date_of_death") {
        rules.push("vn.date.order");
    }
    rules
}

/// What the rules need beside the payload.
pub struct RuleContext<'a> {
    pub reference: &'a ReferenceData,
    /// The event's own date (its `occurred_at` in Viet Nam), for codes valid by date and the
    /// future check.
    pub event_date: NaiveDate,
}

/// Every semantic violation in `payload`, with pointers under `/payload`.
pub fn check(payload: &Value, context: &RuleContext<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    walk(payload, context, &Path::Root, &mut out);
    if let Value::Object(root) = payload {
        check_birth_before_process_dates(root, &mut out);
        check_requested_services_have_their_data(root, &mut out);
        check_prefill_names_what_is_there(root, &mut out);
    }
    out
}

/// Rules that warn instead of refusing (see the table above).
pub const WARNINGS: [&str; 6] = [
    "vn.personal_id.province",
    "vn.personal_id.country",
    "vn.bhyt.group",
    "vn.plausible.birth_weight",
    "vn.status.transition",
    "vn.deadline.appointment",
];
/// Working days a birth-group dossier may take, and with a verification (VIETNAM.md, from
/// practice under Decree 63/2024/ND-CP; marked unverified there).
const BIRTH_GROUP_WORKING_DAYS: (u32, u32) = (3, 5);
/// Birth weights outside this range are unusual but lawful: they warn, to be checked.
const PLAUSIBLE_BIRTH_WEIGHT_GRAMS: std::ops::RangeInclusive<i64> = 300..=7_000;

/// What breaking `rule` does to an event.
pub fn severity(rule: &str) -> Severity {
    if WARNINGS.contains(&rule) {
        Severity::Warning
    } else {
        Severity::Error
    }
}

fn violation(out: &mut Vec<Violation>, pointer: String, rule: &str, vi: &str, en: &str) {
    out.push(Violation {
        severity: severity(rule),
        ..Violation::new(pointer, rule, format!("{vi} / {en}"))
    });
}

/// Where the walk is, as a chain of the keys and indexes above it: written out as a JSON pointer
/// only for a violation, since most payloads have none and writing every field's pointer was a
/// fifth of the rules' time.
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn write(&self, pointer: &mut String) {
        match self {
            Self::Root => pointer.push_str("/payload"),
            Self::Key(parent, key) => {
                parent.write(pointer);
                push_key(pointer, key);
            }
            Self::Index(parent, index) => {
                parent.write(pointer);
                push_index(pointer, *index);
            }
        }
    }

    /// The pointer of this place's field `key`.
    fn at(&self, key: &str) -> String {
        let mut pointer = String::new();
        Path::Key(self, key).write(&mut pointer);
        pointer
    }
}

fn walk(value: &Value, context: &RuleContext<'_>, path: &Path<'_>, out: &mut Vec<Violation>) {
    match value {
        Value::Object(fields) => {
            check_object(fields, context, path, out);
            for (key, child) in fields {
                walk(child, context, &Path::Key(path, key), out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, context, &Path::Index(path, i), out);
            }
        }
        Value::String(text) if text.contains('\0') => {
            let mut pointer = String::new();
            path.write(&mut pointer);
            violation(
                out,
                pointer,
                "vn.text.nul",
                "văn bản chứa ký tự NUL",
                "the text holds a NUL character",
            );
        }
        _ => {}
    }
}

/// A date, a time's date, or the first day a partial date (`YYYY`, `YYYY-MM`) can be: the
/// earliest it may be, so a rule never refuses what the full date might make lawful.
fn date_of(value: Option<&Value>) -> Option<NaiveDate> {
    let raw = value?.as_str()?;
    if let Some(date) = iso_date(raw) {
        return Some(date);
    }
    // Longer than a date: a time, or nothing the format parser would take.
    if raw.len() > 10 {
        return DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|t| t.date_naive());
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .or_else(|| partial_start(raw))
}

/// A date written exactly `YYYY-MM-DD`, the form nearly every date here takes, read without
/// chrono's format parser (a tenth of the rules' time went to it); anything else is `None` and
/// left to that parser.
fn iso_date(raw: &str) -> Option<NaiveDate> {
    let bytes = raw.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| {
        bytes[range].iter().try_fold(0u32, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    let year = i32::try_from(number(0..4)?).ok()?;
    NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?)
}

fn partial_start(raw: &str) -> Option<NaiveDate> {
    let (year, month) = match raw.split_once('-') {
        Some((year, month)) if month.len() == 2 => (year, month.parse().ok()?),
        Some(_) => return None,
        None => (raw, 1),
    };
    if year.len() != 4 {
        return None;
    }
    NaiveDate::from_ymd_opt(year.parse().ok()?, month, 1)
}

/// The fields of one object the rules read, found in one pass over it: looking each up in
/// turn (a score of map searches an object) was the rules' largest cost.
#[derive(Default)]
struct Seen<'a> {
    personal_id: Option<&'a Value>,
    sex: Option<&'a Value>,
    birth_date: Option<&'a Value>,
    partial_birth_date: Option<&'a Value>,
    birth_weight_grams: Option<&'a Value>,
    card_number: Option<&'a Value>,
    bhxh_number: Option<&'a Value>,
    province_code: Option<&'a Value>,
    commune_code: Option<&'a Value>,
    ethnicity_code: Option<&'a Value>,
    nationality: Option<&'a Value>,
    issuing_country: Option<&'a Value>,
    from_status: Option<&'a Value>,
    to_status: Option<&'a Value>,
    accepted_at: Option<&'a Value>,
    appointment_at: Option<&'a Value>,
    verification_required: Option<&'a Value>,
    procedure_code: Option<&'a Value>,
    death_date: Option<&'a Value>,
    date_of_death: Option<&'a Value>,
}

impl<'a> Seen<'a> {
    fn of(fields: &'a Map<String, Value>) -> Self {
        let mut seen = Self::default();
        for (key, value) in fields {
            let slot = match key.as_str() {
                "personal_id" => &mut seen.personal_id,
                "sex" => &mut seen.sex,
                "birth_date" => &mut seen.birth_date,
                PARTIAL_BIRTH_DATE => &mut seen.partial_birth_date,
                "birth_weight_grams" => &mut seen.birth_weight_grams,
                "card_number" => &mut seen.card_number,
                "bhxh_number" => &mut seen.bhxh_number,
                "province_code" => &mut seen.province_code,
                "commune_code" => &mut seen.commune_code,
                "ethnicity_code" => &mut seen.ethnicity_code,
                "nationality" => &mut seen.nationality,
                "issuing_country" => &mut seen.issuing_country,
                "from_status" => &mut seen.from_status,
                "to_status" => &mut seen.to_status,
                "accepted_at" => &mut seen.accepted_at,
                "appointment_at" => &mut seen.appointment_at,
                "verification_required" => &mut seen.verification_required,
                "procedure_code" => &mut seen.procedure_code,
                "death_date" => &mut seen.death_date,
                "date_of_death" => &mut seen.date_of_death,
                _ => continue,
            };
            *slot = Some(value);
        }
        seen
    }

    /// The date of birth, or the first day a partial one can be.
    fn birth(&self) -> Option<NaiveDate> {
        date_of(self.birth_date).or_else(|| date_of(self.partial_birth_date))
    }
}

fn text(value: Option<&Value>) -> Option<&str> {
    value?.as_str()
}

/// A field whose name says it records when something happened (not a due date, a validity or
/// an appointment), so it cannot be after the event.
fn is_past_date(key: &str) -> bool {
    (key.ends_with("_date") || key.ends_with("_at") || key == PARTIAL_BIRTH_DATE)
        && !names_a_future(key)
}

/// Whether a date field's name holds a word for a future or a period: `due`, `valid_`,
/// `expires`, `until`, `appointment`. One pass over the name, each word tried only where its
/// first letter is: five `str::contains` per date field were 7 % of the rules' time.
fn names_a_future(key: &str) -> bool {
    let bytes = key.as_bytes();
    (0..bytes.len()).any(|i| {
        let rest = &bytes[i..];
        match rest[0] {
            b'd' => rest.starts_with(b"due"),
            b'v' => rest.starts_with(b"valid_"),
            b'e' => rest.starts_with(b"expires"),
            b'u' => rest.starts_with(b"until"),
            b'a' => rest.starts_with(b"appointment"),
            _ => false,
        }
    })
}

fn check_object(
    fields: &Map<String, Value>,
    context: &RuleContext<'_>,
    path: &Path<'_>,
    out: &mut Vec<Violation>,
) {
    let seen = Seen::of(fields);
    let birth_date = seen.birth();

    if let Some(id) = text(seen.personal_id).and_then(|raw| PersonalId::parse(raw).ok()) {
        check_personal_id(&id, &seen, birth_date, context, path, out);
    }
    if let Some(grams) = seen.birth_weight_grams.and_then(Value::as_i64)
        && !PLAUSIBLE_BIRTH_WEIGHT_GRAMS.contains(&grams)
    {
        violation(
            out,
            path.at("birth_weight_grams"),
            "vn.plausible.birth_weight",
            "cân nặng khi sinh bất thường, cần kiểm tra lại",
            "an unusual birth weight: check it",
        );
    }
    if seen.bhxh_number.is_some()
        && let Some(card) = text(seen.card_number)
    {
        check_health_card(card, &seen, context, path, out);
    }
    for (key, value) in fields {
        // The name first: parsing every string of the payload as a date is the costly part.
        if is_past_date(key)
            && let Some(date) = date_of(Some(value))
            && date > context.event_date
        {
            violation(
                out,
                path.at(key),
                "vn.date.future",
                "ngày ở tương lai so với sự kiện",
                "the date is after the event",
            );
        }
    }
    let province = text(seen.province_code);
    if let Some(province) = province
        && province.len() == 2
        && !context
            .reference
            .province_valid_on(province, context.event_date)
    {
        violation(
            out,
            path.at("province_code"),
            "vn.admin.province",
            "mã tỉnh không có hiệu lực vào ngày của sự kiện",
            "the province code is not valid on the event's date",
        );
    }
    // A commune is only checked within a province valid on the date: against a wrong province
    // every commune would look wrong, and the province's own violation already names the fix.
    if let (Some(province), Some(commune)) = (province, text(seen.commune_code))
        && context
            .reference
            .province_valid_on(province, context.event_date)
        && context
            .reference
            .commune_valid_on(province, commune, context.event_date)
            == Some(false)
    {
        violation(
            out,
            path.at("commune_code"),
            "vn.admin.commune",
            "mã xã không có hiệu lực trong tỉnh vào ngày của sự kiện",
            "the commune code is not valid in its province on the event's date",
        );
    }
    if let Some(code) = text(seen.ethnicity_code)
        && !context.reference.ethnicity_known(code)
    {
        violation(
            out,
            path.at("ethnicity_code"),
            "vn.code.ethnicity",
            "mã dân tộc không có trong danh mục",
            "unknown ethnicity code",
        );
    }
    for (key, value) in [
        ("nationality", seen.nationality),
        ("issuing_country", seen.issuing_country),
    ] {
        if let Some(country) = text(value)
            && !context.reference.country_known(country)
        {
            violation(
                out,
                path.at(key),
                "vn.code.nationality",
                "quốc gia không có trong ISO 3166",
                "not an ISO 3166 country",
            );
        }
    }
    if let (Some(from), Some(to)) = (seen.from_status, seen.to_status)
        && let (Some(from), Some(to)) = (from.as_u64(), to.as_u64())
        && !u8::try_from(from)
            .ok()
            .zip(u8::try_from(to).ok())
            .is_some_and(|(f, t)| context.reference.transition_allowed(f, t))
    {
        violation(
            out,
            path.at("to_status"),
            "vn.status.transition",
            "chuyển trạng thái hồ sơ không được phép",
            "this dossier status transition is not allowed",
        );
    }
    // The birth group's deadlines only: the death group's differ by branch and are not known
    // yet, and a count through a year without a holiday list proves nothing.
    if let (Some(accepted), Some(appointment), Some(verification), Some("birth")) = (
        text(seen.accepted_at).and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
        text(seen.appointment_at).and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
        seen.verification_required.and_then(Value::as_bool),
        text(seen.procedure_code).and_then(|code| context.reference.procedure_group(code)),
    ) {
        let (days, with_verification) = BIRTH_GROUP_WORKING_DAYS;
        let days = if verification {
            with_verification
        } else {
            days
        };
        if let Some(due) = context.reference.calendar().due(accepted, days)
            && appointment > due
        {
            violation(
                out,
                path.at("appointment_at"),
                "vn.deadline.appointment",
                "hẹn trả kết quả muộn hơn thời hạn (3 ngày làm việc, 5 nếu cần xác minh)",
                "the appointment is later than the deadline (3 working days, 5 with a verification)",
            );
        }
    }
    for (death_key, death) in [
        ("death_date", seen.death_date),
        ("date_of_death", seen.date_of_death),
    ] {
        if let (Some(birth), Some(death)) = (birth_date, date_of(death))
            && birth > death
        {
            violation(
                out,
                path.at(death_key),
                "vn.date.order",
                "ngày mất trước ngày sinh",
                "death before birth",
            );
        }
    }
}

fn check_personal_id(
    id: &PersonalId,
    seen: &Seen<'_>,
    birth_date: Option<NaiveDate>,
    context: &RuleContext<'_>,
    path: &Path<'_>,
    out: &mut Vec<Violation>,
) {
    let reference = context.reference;
    let prefix = id.province_code();
    if reference.id_province_known(prefix) {
        if birth_date.is_some_and(|d| !reference.id_province_valid_on(prefix, d)) {
            violation(
                out,
                path.at("personal_id"),
                "vn.personal_id.province",
                "mã tỉnh trong số định danh không được cấp vào ngày sinh",
                "the ID's province prefix was not issued on the date of birth",
            );
        }
    } else {
        match reference.id_country_verified(prefix) {
            Some(true) => {}
            Some(false) => violation(
                out,
                path.at("personal_id"),
                "vn.personal_id.country",
                "mã quốc gia nơi đăng ký khai sinh (Thông tư 59/2021/TT-BCA) chưa được đối chiếu",
                "the ID's prefix is the country code of a birth registered abroad \
                 (Circular 59/2021/TT-BCA), from a list not yet checked against the circular",
            ),
            None => violation(
                out,
                path.at("personal_id"),
                "vn.personal_id.province",
                "ba số đầu của số định danh không phải mã tỉnh hay mã quốc gia đã biết",
                "the ID's first three digits are neither a province code nor a known country code",
            ),
        }
    }
    if let Some(sex) = text(seen.sex).and_then(Sex::parse)
        && sex != id.sex()
    {
        violation(
            out,
            path.at("personal_id"),
            "vn.personal_id.sex",
            "chữ số thế kỷ/giới tính không khớp với giới tính",
            "the century/sex digit does not match the sex",
        );
    }
    if let Some(birth) = birth_date
        && chrono::Datelike::year(&birth) != id.birth_year()
    {
        violation(
            out,
            path.at("personal_id"),
            "vn.personal_id.birth_year",
            "chữ số thế kỷ và năm sinh không khớp với ngày sinh",
            "the century and year digits do not match the date of birth",
        );
    }
}

fn check_health_card(
    card: &str,
    seen: &Seen<'_>,
    context: &RuleContext<'_>,
    path: &Path<'_>,
    out: &mut Vec<Violation>,
) {
    // The JSON Schema checks the card's shape; these rules only read a well-formed one: the
    // 15-character card (group, level, province, number) or, as cards are also issued, the
    // 10-digit social-insurance number alone, which carries no group.
    if !card.is_ascii() {
        return;
    }
    let (group, number) = match card.len() {
        15 => (Some(&card[..2]), &card[5..]),
        10 => (None, card),
        _ => return,
    };
    if let Some(bhxh) = text(seen.bhxh_number)
        && number != bhxh
    {
        violation(
            out,
            path.at("card_number"),
            "vn.bhyt.bhxh_number",
            "mã số BHXH trong thẻ BHYT phải là mã số BHXH đi kèm",
            "the social-insurance number in the card must be the one beside it",
        );
    }
    let Some(group) = group else {
        return;
    };
    let birth_year = date_of(seen.birth_date)
        .map(|d| chrono::Datelike::year(&d))
        .or_else(|| {
            text(seen.personal_id)
                .and_then(|raw| PersonalId::parse(raw).ok())
                .map(|id| id.birth_year())
        });
    // By calendar year: the card group follows the child's age when the card is issued.
    if let Some(year) = birth_year
        && chrono::Datelike::year(&context.event_date) - year < TE_MAX_AGE
        && group != "TE"
    {
        violation(
            out,
            path.at("card_number"),
            "vn.bhyt.group",
            "trẻ em dưới 6 tuổi phải có mã nhóm TE",
            "a child under 6 must be in group TE",
        );
    }
}

/// A service asked for that needs data of its own: the permanent residence needs where (the
/// household, its head, the address), a benefit the account it is paid into. Without it the
/// service could only fail later, in the national system, after the citizen was told the
/// dossier was accepted.
fn check_requested_services_have_their_data(root: &Map<String, Value>, out: &mut Vec<Violation>) {
    let asked = root
        .get("requested_services")
        .and_then(|s| s.get("permanent_residence"))
        == Some(&Value::Bool(true));
    if asked && root.get("residence").is_none_or(Value::is_null) {
        violation(
            out,
            "/payload/residence".to_owned(),
            "vn.service.data",
            "đề nghị đăng ký thường trú phải ghi nơi thường trú (số hộ, chủ hộ, địa chỉ)",
            "permanent residence is requested: give the residence (household, its head, the address)",
        );
    }
    // A social-insurance benefit is paid only into a bank account (Law on Social Insurance
    // 41/2024/QH15): without it the decision could be made and never paid.
    let benefit_chosen = root
        .get("sub_procedures")
        .and_then(Value::as_array)
        .is_some_and(|chosen| {
            chosen.iter().any(|c| {
                c.as_str()
                    .is_some_and(|c| c == "FUNERAL_ALLOWANCE" || c == "SURVIVOR_BENEFIT")
            })
        });
    if benefit_chosen && root.get("beneficiary_account").is_none_or(Value::is_null) {
        violation(
            out,
            "/payload/beneficiary_account".to_owned(),
            "vn.service.data",
            "đề nghị trợ cấp mai táng hoặc tử tuất phải ghi tài khoản nhận tiền",
            "a funeral allowance or survivor benefit is requested: give the beneficiary_account it is paid into",
        );
    }
}

/// The pre-fill ratio is only as good as its fields: each one the one-stop system says it
/// filled from national data must be in the submission, and there cannot be more of them than
/// fields on the form.
fn check_prefill_names_what_is_there(root: &Map<String, Value>, out: &mut Vec<Violation>) {
    let Some(Value::Object(prefill)) = root.get("prefill") else {
        return;
    };
    // Read in place, not collected: a submission names a dozen of them, and growing a vector
    // for them was a tenth of the rules' time.
    let paths = || {
        prefill
            .get("from_national_data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    };
    let on_form = prefill
        .get("fields_on_form")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if paths().count() as u64 > on_form {
        violation(
            out,
            "/payload/prefill/from_national_data".to_owned(),
            "vn.prefill.fields",
            "số trường điền sẵn nhiều hơn số trường trên tờ khai",
            "more fields filled in than the form has",
        );
    }
    let present = |path: &str| {
        let mut parts = path.split('.');
        let first = parts.next().and_then(|part| root.get(part));
        parts
            .try_fold(first, |value, part| Some(value?.get(part)))
            .flatten()
            .is_some_and(|value| !value.is_null())
    };
    for (index, path) in paths().enumerate() {
        if !present(path) {
            violation(
                out,
                format!("/payload/prefill/from_national_data/{index}"),
                "vn.prefill.fields",
                "trường điền sẵn không có trong hồ sơ",
                "a field said to be filled in is not in the submission",
            );
        }
    }
}

/// A birth cannot come after the dates the payload records at its top level (receipt,
/// registration, issue): those are the process's own dates.
fn check_birth_before_process_dates(root: &Map<String, Value>, out: &mut Vec<Violation>) {
    let Some(first) = root
        .iter()
        .filter(|(key, _)| key.ends_with("_at") && is_past_date(key))
        .filter_map(|(_, value)| date_of(Some(value)))
        .min()
    else {
        return;
    };
    for (key, value) in root {
        if let Value::Object(person) = value
            && key != "mother"
            && key != "father"
            && let Some(birth) = date_of(person.get("birth_date"))
            && birth > first
        {
            violation(
                out,
                format!("/payload/{key}/birth_date"),
                "vn.date.order",
                "ngày sinh sau ngày tiếp nhận/đăng ký",
                "the birth is after the receipt or registration",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::reference::fixture;
    use serde_json::json;

    fn rules_of(payload: Value, event_date: &str) -> Vec<(String, String)> {
        let reference = fixture::reference();
        let context = RuleContext {
            reference: &reference,
            event_date: NaiveDate::parse_from_str(event_date, "%Y-%m-%d").expect("date"),
        };
        let mut found: Vec<(String, String)> = check(&payload, &context)
            .into_iter()
            .map(|v| (v.pointer, v.rule))
            .collect();
        found.sort();
        found
    }

    fn pair(pointer: &str, rule: &str) -> (String, String) {
        (pointer.to_owned(), rule.to_owned())
    }

    #[test]
    fn a_consistent_dossier_passes() {
        let payload = json!({
            "received_at": "2026-11-20T09:15:00+07:00",
            "province_code": "48", "commune_code": "20194",
            "child": {"full_name": "Nguyễn Minh An", "sex": "FEMALE", "birth_date": "2026-11-12",
                      "ethnicity_code": "01", "nationality": "VN"},
            "mother": {"full_name": "Trần Thị Bích", "personal_id": "048195001234", "birth_date": "1995-03-08"}
        });
        assert_eq!(
            rules_of(payload, "2026-11-20"),
            Vec::<(String, String)>::new()
        );
    }

    #[test]
    fn personal_id_digits_must_agree_with_sex_and_birth() {
        let payload = json!({"mother": {"personal_id": "048095001234", "sex": "FEMALE", "birth_date": "1996-03-08"}});
        assert_eq!(
            rules_of(payload, "2026-11-20"),
            [
                pair("/payload/mother/personal_id", "vn.personal_id.birth_year"),
                pair("/payload/mother/personal_id", "vn.personal_id.sex")
            ]
        );
        let unknown_province = json!({"declarant": {"personal_id": "999195001234"}});
        assert_eq!(
            rules_of(unknown_province, "2026-11-20"),
            [pair(
                "/payload/declarant/personal_id",
                "vn.personal_id.province"
            )]
        );
        let born_abroad = json!({"declarant": {"personal_id": "286195001234"}});
        assert_eq!(
            rules_of(born_abroad, "2026-11-20"),
            [pair(
                "/payload/declarant/personal_id",
                "vn.personal_id.country"
            )],
            "Ukraine's code, listed but unverified"
        );
        let verified_country = json!({"declarant": {"personal_id": "250195001234"}});
        assert_eq!(
            rules_of(verified_country, "2026-11-20"),
            Vec::<(String, String)>::new()
        );
        let merged_away =
            json!({"child": {"personal_id": "049326000001", "birth_date": "2026-01-02"}});
        assert_eq!(
            rules_of(merged_away, "2026-11-20"),
            [pair(
                "/payload/child/personal_id",
                "vn.personal_id.province"
            )],
            "Quảng Nam's prefix is no longer issued after the merger"
        );
    }

    #[test]
    fn codes_are_checked_on_the_event_date() {
        let payload = json!({"province_code": "49", "commune_code": "20194"});
        assert_eq!(
            rules_of(payload.clone(), "2025-06-30"),
            Vec::<(String, String)>::new()
        );
        assert_eq!(
            rules_of(payload, "2025-07-01"),
            [pair("/payload/province_code", "vn.admin.province")]
        );
        let wrong_commune = json!({"province_code": "48", "commune_code": "11111"});
        assert_eq!(
            rules_of(wrong_commune, "2026-01-01"),
            [pair("/payload/commune_code", "vn.admin.commune")]
        );
        let codes = json!({"p": {"ethnicity_code": "77", "nationality": "XX"}});
        assert_eq!(
            rules_of(codes, "2026-01-01"),
            [
                pair("/payload/p/ethnicity_code", "vn.code.ethnicity"),
                pair("/payload/p/nationality", "vn.code.nationality")
            ]
        );
    }

    #[test]
    fn health_cards_of_young_children_are_te_and_carry_the_bhxh_number() {
        let good = json!({"personal_id": "048326000001", "card_number": "TE1484812345678", "bhxh_number": "4812345678"});
        assert!(rules_of(good, "2026-11-20").is_empty());
        let payload = json!({"personal_id": "048326000001", "card_number": "GD4484812345678", "bhxh_number": "4812345670"});
        assert_eq!(
            rules_of(payload, "2026-11-20"),
            [
                pair("/payload/card_number", "vn.bhyt.bhxh_number"),
                pair("/payload/card_number", "vn.bhyt.group")
            ]
        );
        // The 10-digit social-insurance number alone is a card too; it names no group.
        let number_only = json!({"personal_id": "048326000001", "card_number": "4812345678", "bhxh_number": "4812345678"});
        assert!(rules_of(number_only, "2026-11-20").is_empty());
        let other_number = json!({"personal_id": "048326000001", "card_number": "4812345679", "bhxh_number": "4812345678"});
        assert_eq!(
            rules_of(other_number, "2026-11-20"),
            [pair("/payload/card_number", "vn.bhyt.bhxh_number")]
        );
    }

    #[test]
    fn an_unusual_birth_weight_warns() {
        assert_eq!(
            rules_of(json!({"birth_weight_grams": 250}), "2026-11-20"),
            [pair(
                "/payload/birth_weight_grams",
                "vn.plausible.birth_weight"
            )]
        );
        assert!(rules_of(json!({"birth_weight_grams": 3150}), "2026-11-20").is_empty());
        assert_eq!(severity("vn.plausible.birth_weight"), Severity::Warning);
    }

    #[test]
    fn dates_are_in_the_past_and_in_order() {
        let payload = json!({
            "received_at": "2026-11-20T09:15:00+07:00",
            "child": {"full_name": "Nguye\u{0302}\u{0303}n", "birth_date": "2026-11-21"},
            "deceased": {"birth_date": "1950-01-01", "date_of_death": "1949-12-31"},
            "due_at": "2026-12-01T00:00:00+07:00"
        });
        assert_eq!(
            rules_of(payload, "2026-11-20"),
            [
                pair("/payload/child/birth_date", "vn.date.future"),
                pair("/payload/child/birth_date", "vn.date.order"),
                pair("/payload/deceased/date_of_death", "vn.date.order"),
            ]
        );
    }

    #[test]
    fn only_dates_of_what_happened_are_checked_against_the_event() {
        let later = "2027-01-01";
        for ahead in [
            "due_date",
            "valid_until_date",
            "valid_to_date",
            "expires_at",
            "paid_until_date",
            "appointment_at",
            "next_appointment_date",
        ] {
            assert!(
                rules_of(json!({ ahead: later }), "2026-11-20").is_empty(),
                "{ahead} names a future"
            );
        }
        for happened in ["issued_date", "updated_at", "registered_at", "death_date"] {
            assert_eq!(
                rules_of(json!({ happened: later }), "2026-11-20"),
                [pair(&format!("/payload/{happened}"), "vn.date.future")],
                "{happened} names something that happened"
            );
        }
    }

    #[test]
    fn prefilled_fields_are_in_the_submission_and_no_more_than_the_form_has() {
        let submission = |paths: Value, on_form: u64| {
            json!({
                "mother": {"full_name": "Trần Thị Bích", "birth_date": null},
                "father": {"full_name": "Nguyễn Văn Cường"},
                "province_code": "48",
                "prefill": {"fields_on_form": on_form, "from_national_data": paths},
            })
        };
        let held = json!(["mother.full_name", "father.full_name", "province_code"]);
        assert!(rules_of(submission(held, 20), "2026-11-20").is_empty());
        // Missing, null, a path through a text, an empty step, and a group left then met again.
        let missing = json!([
            "mother.full_name",
            "mother.birth_date",
            "father.full_name.first",
            "father..full_name",
            "mother.full_name",
            "child.full_name",
            "province_code"
        ]);
        let at = |index: usize| {
            pair(
                &format!("/payload/prefill/from_national_data/{index}"),
                "vn.prefill.fields",
            )
        };
        assert_eq!(
            rules_of(submission(missing, 20), "2026-11-20"),
            [at(1), at(2), at(3), at(5)]
        );
        assert_eq!(
            rules_of(
                submission(json!(["province_code", "mother.full_name"]), 1),
                "2026-11-20"
            ),
            [pair(
                "/payload/prefill/from_national_data",
                "vn.prefill.fields"
            )]
        );
    }

    #[test]
    fn nul_characters_are_refused_anywhere() {
        assert_eq!(
            rules_of(json!({"notes": ["ok", "a\u{0}b"]}), "2026-11-20"),
            [pair("/payload/notes/1", "vn.text.nul")]
        );
    }

    #[test]
    fn status_changes_follow_the_portal_state_machine() {
        assert_eq!(severity("vn.status.transition"), Severity::Warning);
        assert_eq!(severity("vn.personal_id.birth_year"), Severity::Error);
        assert!(rules_of(json!({"from_status": 9, "to_status": 10}), "2026-11-20").is_empty());
        assert_eq!(
            rules_of(json!({"from_status": 10, "to_status": 1}), "2026-11-20"),
            [pair("/payload/to_status", "vn.status.transition")]
        );
    }

    #[test]
    fn an_appointment_after_the_working_day_deadline_warns() {
        let accepted = |appointment: &str, verification: bool| {
            json!({
                "procedure_code": "2.000986",
                "accepted_at": "2026-11-20T09:20:00+07:00",
                "appointment_at": appointment,
                "verification_required": verification
            })
        };
        assert_eq!(severity("vn.deadline.appointment"), Severity::Warning);
        // Friday morning: three working days end on Wednesday.
        assert!(rules_of(accepted("2026-11-25T16:00:00+07:00", false), "2026-11-20").is_empty());
        assert_eq!(
            rules_of(accepted("2026-11-26T08:00:00+07:00", false), "2026-11-20"),
            [pair("/payload/appointment_at", "vn.deadline.appointment")]
        );
        assert!(rules_of(accepted("2026-11-26T08:00:00+07:00", true), "2026-11-20").is_empty());
    }

    #[test]
    fn a_partial_birth_date_stands_in_for_the_full_one() {
        let parent = |partial: &str| json!({"personal_id": "048065001234", "birth_date": null, "birth_date_partial": partial});
        assert!(rules_of(parent("1965"), "2026-11-20").is_empty());
        assert!(rules_of(parent("1965-03"), "2026-11-20").is_empty());
        assert_eq!(
            rules_of(parent("1966"), "2026-11-20"),
            [pair("/payload/personal_id", "vn.personal_id.birth_year")]
        );
        assert_eq!(
            rules_of(parent("2027"), "2026-11-20"),
            [
                pair("/payload/birth_date_partial", "vn.date.future"),
                pair("/payload/personal_id", "vn.personal_id.birth_year"),
            ]
        );
        assert_eq!(
            partial_start("1938-03"),
            NaiveDate::from_ymd_opt(1938, 3, 1)
        );
        assert_eq!(partial_start("1938-13"), None);
        assert_eq!(partial_start("38"), None);
    }
}
