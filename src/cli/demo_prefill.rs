//! The demo's pre-filled forms: a one-stop system asks the population database, through the
//! hub, about the parents a citizen names (`birth.citizen-lookup-requested`, read by the
//! population-lookups connector), takes the health facility's certificate (the demo plays the
//! facility's software), and fills the birth form in from the answers and the certificate. The
//! procedure engine counts which of the form's fields hold what national data told through the
//! hub: `deploy/local/demo.sh` shows the count with each dossier, and the average.
//!
//! The demo's birth dossiers are filled in this way, each for a couple of the population
//! sandbox; the pre-fill scene (`run`) plays it step by step, a mistyped number included.

use std::collections::HashSet;

use anyhow::bail;
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde_json::{Value, json};
use tonic::Streaming;

use super::hub_client::{Client, acknowledged_until, birth_submission, read_json};
use crate::api::convert::{json_to_struct, struct_to_json};
use crate::proto::{Delivery, PublishRequest, StartFrom, SubscribeRequest};

const CERTIFICATE: &str =
    "schemas/examples/birth.e-birth-certificate-issued/valid-before-dossier.json";
const FOUND: &str = "birth.citizen-found";
const FAILED: &str = "birth.citizen-lookup-failed";
/// The one-stop system reads and asks for the pre-fill to process the dossier.
const PURPOSE: &str = "dossier-processing";
const LEGAL_BASIS: &str = "Decree 63/2024/ND-CP";
/// How long the citizen waits at the form for an answer.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// A couple of the population sandbox: the mother's and the father's personal ID numbers.
pub(super) type Couple<'a> = (&'a str, &'a str);

fn request(event_type: &str, code: &str, purpose: &str, payload: Value) -> PublishRequest {
    PublishRequest {
        event_type: event_type.into(),
        correlation_id: code.into(),
        purpose: purpose.into(),
        legal_basis: LEGAL_BASIS.into(),
        payload: Some(json_to_struct(payload)),
        ..PublishRequest::default()
    }
}

/// The one-stop system's subscriptions to the population database's answers, opened once for
/// every form the demo fills in. An answer read while another was awaited is kept for its own
/// turn, so forms can ask in any order.
pub(super) struct Answers {
    found: Streaming<Delivery>,
    failed: Streaming<Delivery>,
    /// The dossiers asked about through these subscriptions.
    asked: HashSet<String>,
    /// Answers read while another was awaited: whether each was a record found, and itself.
    kept: Vec<(bool, Value)>,
}

impl Answers {
    pub(super) async fn open(one_stop: &mut Client) -> anyhow::Result<Self> {
        let mut streams = Vec::new();
        for event_type in [FOUND, FAILED] {
            streams.push(
                one_stop
                    .subscribe(SubscribeRequest {
                        event_type: event_type.into(),
                        consumer_group: "demo-onestop-prefill".into(),
                        start_from: StartFrom::Earliest.into(),
                        max_unacknowledged: 16,
                        purpose: PURPOSE.into(),
                        legal_basis: LEGAL_BASIS.into(),
                    })
                    .await?
                    .into_inner(),
            );
        }
        let (Some(failed), Some(found)) = (streams.pop(), streams.pop()) else {
            bail!("two subscriptions opened");
        };
        Ok(Self {
            found,
            failed,
            asked: HashSet::new(),
            kept: Vec::new(),
        })
    }

    /// The population database's answer about `personal_id` for dossier `code`: its record
    /// when `found`, else its refusal.
    async fn about(
        &mut self,
        one_stop: &mut Client,
        code: &str,
        personal_id: &str,
        found: bool,
    ) -> anyhow::Result<Value> {
        let wanted = |p: &Value| p["dossier_code"] == code && p["personal_id"] == personal_id;
        if let Some(at) = self
            .kept
            .iter()
            .position(|(was_found, p)| *was_found == found && wanted(p))
        {
            return Ok(self.kept.swap_remove(at).1);
        }
        let stream = if found {
            &mut self.found
        } else {
            &mut self.failed
        };
        let (asked, kept) = (&self.asked, &mut self.kept);
        let (delivery, _) = acknowledged_until(
            one_stop,
            stream,
            (
                PATIENCE,
                "no answer from the population database within 30 s",
            ),
            |delivery| {
                let payload = delivery.payload.clone().map(struct_to_json);
                match payload {
                    Some(p) if wanted(&p) => true,
                    // Answers for other forms are kept; earlier runs' are dropped.
                    Some(p)
                        if p["dossier_code"]
                            .as_str()
                            .is_some_and(|c| asked.contains(c)) =>
                    {
                        kept.push((found, p));
                        false
                    }
                    _ => false,
                }
            },
        )
        .await?;
        Ok(delivery.payload.map(struct_to_json).unwrap_or_default())
    }

    /// Asks the population database, through the hub, about `personal_id` in `roles` on the
    /// form of dossier `code`.
    async fn ask(
        &mut self,
        one_stop: &mut Client,
        code: &str,
        personal_id: &str,
        roles: Value,
    ) -> anyhow::Result<()> {
        let lookup = json!({
            "dossier_code": code,
            "personal_id": personal_id,
            "roles": roles,
            "requested_at": Utc::now().with_timezone(&crate::domain::vietnam())
                .to_rfc3339_opts(SecondsFormat::Secs, false),
        });
        self.asked.insert(code.to_owned());
        one_stop
            .publish(request(
                "birth.citizen-lookup-requested",
                code,
                PURPOSE,
                lookup,
            ))
            .await?;
        Ok(())
    }
}

/// The health facility's certificate for the baby of `mother`, born a week before `now` (on
/// time, so free), published as the facility's software does at the birth; its number and
/// itself.
async fn certify(
    one_stop: &mut Client,
    code: &str,
    mother: &Value,
    now: DateTime<FixedOffset>,
) -> anyhow::Result<(String, Value)> {
    let mut certificate = read_json(CERTIFICATE)?;
    let number = format!("GCS-{}", code.rsplit('-').next().unwrap_or("0"));
    certificate["certificate_number"] = number.clone().into();
    for field in ["full_name", "personal_id", "birth_date"] {
        certificate["mother"][field] = mother[field].clone();
    }
    let born = now.date_naive() - chrono::Days::new(7);
    certificate["child"]["birth_date"] = born.to_string().into();
    certificate["issued_at"] = format!("{}T10:00:00+07:00", born + chrono::Days::new(1)).into();
    one_stop
        .publish(request(
            "birth.e-birth-certificate-issued",
            "",
            "civil-registration",
            certificate.clone(),
        ))
        .await?;
    Ok((number, certificate))
}

/// `form`, dossier `code` received `now`, filled in for `couple` from the population
/// database's answers and, when the form names a birth certificate, from the health facility's
/// certificate (issued first). Nothing is submitted.
pub(super) async fn fill_in(
    one_stop: &mut Client,
    answers: &mut Answers,
    (form, code, now): (&mut Value, &str, DateTime<FixedOffset>),
    (mother_id, father_id): Couple<'_>,
) -> anyhow::Result<()> {
    answers
        .ask(one_stop, code, mother_id, json!(["MOTHER", "DECLARANT"]))
        .await?;
    answers
        .ask(one_stop, code, father_id, json!(["FATHER"]))
        .await?;
    let mother = answers.about(one_stop, code, mother_id, true).await?;
    let father = answers.about(one_stop, code, father_id, true).await?;
    let certificate = if form["birth_certificate_no"].is_string() {
        Some(certify(one_stop, code, &mother, now).await?)
    } else {
        None
    };
    fill(form, &mother, &father, certificate.as_ref());
    Ok(())
}

/// The pre-fill scene with the couple `mother_id` and `father_id`, step by step; the dossier's
/// code.
pub async fn run(
    one_stop: &mut Client,
    answers: &mut Answers,
    example: &str,
    (mother_id, father_id): Couple<'_>,
) -> anyhow::Result<String> {
    println!("\n== 9b. A mother signs in to register her baby: the one-stop system asks the");
    println!(
        "   population database about her and the father through the hub, and fills the form in"
    );
    let now = Utc::now().with_timezone(&crate::domain::vietnam());
    let code = super::demo::dossier_code(now);
    // The father's number typed with one digit wrong, then as it is.
    let typo = format!(
        "{}{}",
        &father_id[..11],
        (father_id.as_bytes()[11] - b'0' + 1) % 10
    );
    for (personal_id, roles) in [
        (mother_id, json!(["MOTHER", "DECLARANT"])),
        (typo.as_str(), json!(["FATHER"])),
        (father_id, json!(["FATHER"])),
    ] {
        answers.ask(one_stop, &code, personal_id, roles).await?;
    }
    let mother = answers.about(one_stop, &code, mother_id, true).await?;
    println!(
        "   found      {} (mother, declarant), born {}, ethnicity {}, household {}",
        mother["full_name"].as_str().unwrap_or("?"),
        mother["birth_date"].as_str().unwrap_or("?"),
        mother["ethnicity_code"].as_str().unwrap_or("?"),
        mother["household"]["number"].as_str().unwrap_or("none"),
    );
    let refusal = answers.about(one_stop, &code, &typo, false).await?;
    println!(
        "   {}  {} (the father's number mistyped): nothing dead-lettered, retyped",
        refusal["reason_code"].as_str().unwrap_or("?"),
        typo
    );
    let father = answers.about(one_stop, &code, father_id, true).await?;
    println!(
        "   found      {} (father), born {}",
        father["full_name"].as_str().unwrap_or("?"),
        father["birth_date"].as_str().unwrap_or("?"),
    );
    let certificate = certify(one_stop, &code, &mother, now).await?;
    let mut form = read_json(example)?;
    super::demo::prepare(&mut form, &code, now);
    fill(&mut form, &mother, &father, Some(&certificate));
    one_stop.publish(birth_submission(&code, &form)).await?;
    println!(
        "   prefill dossier {code}: submitted, filled in from the answers and the certificate"
    );
    Ok(code)
}

/// Fills the birth form in as a one-stop system does: the parents and the declarant from the
/// population database's answers; with the health facility's certificate (its number and
/// itself), the child from it (its intended name too); the child's ethnicity and nationality
/// from the mother's; and, where the form asks for a residence, the father's household. What
/// it cannot know (how the child relates to the household head) the citizen picks.
fn fill(form: &mut Value, mother: &Value, father: &Value, certificate: Option<&(String, Value)>) {
    for (role, person) in [("mother", mother), ("father", father)] {
        for field in [
            "full_name",
            "personal_id",
            "birth_date",
            "ethnicity_code",
            "nationality",
        ] {
            form[role][field] = person[field].clone();
        }
    }
    form["declarant"] = json!({
        "full_name": mother["full_name"],
        "personal_id": mother["personal_id"],
        "relationship": "MOTHER",
    });
    if let Some((number, certificate)) = certificate {
        let child = &certificate["child"];
        form["birth_certificate_no"] = number.as_str().into();
        form["child"]["full_name"] = child["intended_name"].clone();
        form["child"]["sex"] = child["sex"].clone();
        form["child"]["birth_date"] = child["birth_date"].clone();
        form["child"]["birth_place"] = certificate["facility_name"].clone();
    }
    form["child"]["ethnicity_code"] = mother["ethnicity_code"].clone();
    form["child"]["nationality"] = mother["nationality"].clone();
    if form["requested_services"]["permanent_residence"] == true {
        let (home, household) = (&father["permanent_residence"], &father["household"]);
        let head = &household["head_personal_id"];
        form["residence"] = json!({
            "household_number": household["number"],
            "head_personal_id": head,
            "relationship_to_head": if *head == father["personal_id"] || *head == mother["personal_id"] {
                "CHILD"
            } else {
                "GRANDCHILD"
            },
            "province_code": home["province_code"],
            "commune_code": home["commune_code"],
            "address_line": home["address"],
        });
    }
    // The one-stop system's own count of what it filled in is left out: the hub counts it.
    form["prefill"] = Value::Null;
}
