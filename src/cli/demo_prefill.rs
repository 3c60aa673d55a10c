//! The demo's pre-fill scene: a mother signs in to the one-stop system to register her baby.
//! The one-stop system asks the population database, through the hub, about her and the father
//! (`birth.citizen-lookup-requested`, read by the population-lookups connector); a mistyped
//! number is answered NOT_FOUND; the health facility's certificate arrives (the demo plays the
//! facility's software); the form is filled in from the answers and the certificate, and the
//! dossier submitted. The procedure engine counts which of the form's fields hold what national
//! data told through the hub: `deploy/local/demo.sh` shows the count with the dossier.

use anyhow::{Context as _, bail};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use super::hub_client::{Client, acknowledged_until, birth_submission, received_on_time};
use crate::api::convert::{json_to_struct, struct_to_json};
use crate::proto::{PublishRequest, StartFrom, SubscribeRequest};

const EXAMPLE: &str = "schemas/examples/birth.dossier-submitted/valid-full.json";
const CERTIFICATE: &str =
    "schemas/examples/birth.e-birth-certificate-issued/valid-before-dossier.json";
const FOUND: &str = "birth.citizen-found";
const FAILED: &str = "birth.citizen-lookup-failed";
/// The one-stop system reads and asks for the pre-fill to process the dossier.
const PURPOSE: &str = "dossier-processing";
const LEGAL_BASIS: &str = "Decree 63/2024/ND-CP";
/// How long the citizen waits at the form for an answer.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

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

fn read(path: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
    )?)
}

/// The answer about `personal_id` for dossier `code`, of `event_type`, from `stream`.
async fn answer(
    one_stop: &mut Client,
    stream: &mut tonic::Streaming<crate::proto::Delivery>,
    code: &str,
    personal_id: &str,
) -> anyhow::Result<Value> {
    let (delivery, _) = acknowledged_until(
        one_stop,
        stream,
        (
            PATIENCE,
            "no answer from the population database within 30 s",
        ),
        |delivery| {
            let payload = delivery.payload.clone().map(struct_to_json);
            payload.is_some_and(|p| p["dossier_code"] == code && p["personal_id"] == personal_id)
        },
    )
    .await?;
    Ok(delivery.payload.map(struct_to_json).unwrap_or_default())
}

/// Plays the scene with the seeded couple `mother` and `father`; the dossier's code.
pub async fn run(
    one_stop: &mut Client,
    mother_id: &str,
    father_id: &str,
) -> anyhow::Result<String> {
    println!("\n== 9b. A mother signs in to register her baby: the one-stop system asks the");
    println!(
        "   population database about her and the father through the hub, and fills the form in"
    );
    let now = Utc::now().with_timezone(&crate::domain::vietnam());
    let code = super::demo::dossier_code(now);
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
    let (Some(mut failed), Some(mut found)) = (streams.pop(), streams.pop()) else {
        bail!("two subscriptions opened");
    };
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
        let lookup = json!({
            "dossier_code": code,
            "personal_id": personal_id,
            "roles": roles,
            "requested_at": Utc::now().with_timezone(&crate::domain::vietnam())
                .to_rfc3339_opts(SecondsFormat::Secs, false),
        });
        one_stop
            .publish(request(
                "birth.citizen-lookup-requested",
                &code,
                PURPOSE,
                lookup,
            ))
            .await?;
    }
    let mother = answer(one_stop, &mut found, &code, mother_id).await?;
    println!(
        "   found      {} (mother, declarant), born {}, ethnicity {}, household {}",
        mother["full_name"].as_str().unwrap_or("?"),
        mother["birth_date"].as_str().unwrap_or("?"),
        mother["ethnicity_code"].as_str().unwrap_or("?"),
        mother["household"]["number"].as_str().unwrap_or("none"),
    );
    let refusal = answer(one_stop, &mut failed, &code, &typo).await?;
    println!(
        "   {}  {} (the father's number mistyped): nothing dead-lettered, retyped",
        refusal["reason_code"].as_str().unwrap_or("?"),
        typo
    );
    let father = answer(one_stop, &mut found, &code, father_id).await?;
    println!(
        "   found      {} (father), born {}",
        father["full_name"].as_str().unwrap_or("?"),
        father["birth_date"].as_str().unwrap_or("?"),
    );

    // The health facility's certificate, as its software publishes it at the birth.
    let mut certificate = read(CERTIFICATE)?;
    let number = format!("GCS-{}", code.rsplit('-').next().unwrap_or("0"));
    certificate["certificate_number"] = number.clone().into();
    for field in ["full_name", "personal_id", "birth_date"] {
        certificate["mother"][field] = mother[field].clone();
    }
    // Born a week ago (on time, so free), the certificate issued the next day.
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

    let mut form = read(EXAMPLE)?;
    form["dossier_code"] = code.clone().into();
    received_on_time(
        &mut form,
        now.to_rfc3339_opts(SecondsFormat::Secs, false),
        now.date_naive(),
    );
    fill(&mut form, &mother, &father, &certificate);
    form["birth_certificate_no"] = number.into();
    one_stop.publish(birth_submission(&code, &form)).await?;
    println!(
        "   prefill dossier {code}: submitted, filled in from the answers and the certificate"
    );
    Ok(code)
}

/// Fills the birth form in as a one-stop system does: the parents and the declarant from the
/// population database's answers, the child from the certificate (its intended name too), the
/// child's ethnicity and nationality from the mother's, and the residence in the father's
/// household. What it cannot know (how the child relates to the household head) the citizen
/// picks.
fn fill(form: &mut Value, mother: &Value, father: &Value, certificate: &Value) {
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
    let child = &certificate["child"];
    form["child"]["full_name"] = child["intended_name"].clone();
    form["child"]["sex"] = child["sex"].clone();
    form["child"]["birth_date"] = child["birth_date"].clone();
    form["child"]["birth_place"] = certificate["facility_name"].clone();
    form["child"]["ethnicity_code"] = mother["ethnicity_code"].clone();
    form["child"]["nationality"] = mother["nationality"].clone();
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
    form["prefill"] = Value::Null;
}
