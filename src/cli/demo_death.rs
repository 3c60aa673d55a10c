//! The demo's death scene: a relative reports a death at the one-stop system, which fills the
//! deceased's details in from the population database (the relative types only the personal ID
//! number) and publishes the death dossier: registration, residence deletion, the funeral
//! allowance and the survivor benefit, paid into the relative's account. The hub's connectors
//! and procedure engine do the rest; `deploy/local/demo.sh` shows the outcome. An agency told
//! of registered deaths (Tell Us Once) receives the registration and acknowledges it.

use anyhow::{Context as _, bail};
use chrono::{Duration, SecondsFormat, Utc};
use serde_json::Value;

use super::hub_client::{Client, acknowledged_until};
use crate::api::convert::json_to_struct;
use crate::proto::{PublishRequest, StartFrom, SubscribeRequest};

const EXAMPLE: &str = "schemas/examples/death.dossier-submitted/valid-with-funeral-allowance.json";
/// What every agency entitled to it is told of a death.
const TOLD: &str = "death.civil-registration-completed";

/// Where the one-stop system reads the population database.
pub struct Population {
    /// `…/population/v1/citizens`.
    pub url: String,
    pub token: String,
}

/// The citizen `personal_id` as the population database holds them.
async fn look_up(population: &Population, personal_id: &str) -> anyhow::Result<Value> {
    let response = reqwest::Client::new()
        .get(format!("{}/{personal_id}", population.url))
        .bearer_auth(&population.token)
        .header("X-Caller", "demo-onestop")
        .header("X-Purpose", "civil-registration")
        .send()
        .await
        .with_context(|| format!("cannot reach the population database at {}", population.url))?;
    if !response.status().is_success() {
        bail!(
            "the population database answered {} for the deceased",
            response.status()
        );
    }
    Ok(response.json().await?)
}

/// Publishes the death of `personal_id`; the dossier's code. `agency`, when given, is told of
/// the registration and acknowledges it.
pub async fn run(
    one_stop: &mut Client,
    population: &Population,
    personal_id: &str,
    agency: Option<&mut Client>,
) -> anyhow::Result<String> {
    println!(
        "\n== 8. Meanwhile a relative reports a death; the one-stop system fills the deceased"
    );
    println!("   in from the population database and publishes the death dossier (registration,");
    println!("   residence deletion, funeral allowance and survivor benefit)");
    let citizen = look_up(population, personal_id).await?;
    let mut dossier = super::hub_client::read_json(EXAMPLE)?;
    let now = Utc::now().with_timezone(&crate::domain::vietnam());
    let code = super::demo::dossier_code(now);
    let residence = &citizen["permanent_residence"];
    dossier["dossier_code"] = Value::String(code.clone());
    dossier["received_at"] = Value::String(now.to_rfc3339_opts(SecondsFormat::Secs, false));
    dossier["province_code"] = residence["province_code"].clone();
    dossier["commune_code"] = residence["commune_code"].clone();
    dossier["sub_procedures"] = serde_json::json!([
        "DEATH_REGISTRATION",
        "RESIDENCE_DELETION",
        "FUNERAL_ALLOWANCE",
        "SURVIVOR_BENEFIT"
    ]);
    let deceased = &mut dossier["deceased"];
    deceased["personal_id"] = Value::String(personal_id.to_owned());
    deceased["full_name"] = citizen["full_name"].clone();
    deceased["sex"] = citizen["sex"].clone();
    // The population database keeps only the year (or month) of some older citizens' births.
    let born = citizen["birth_date"].as_str().unwrap_or_default();
    let birth_field = if born.len() == 10 {
        deceased["birth_date"] = Value::String(born.to_owned());
        "deceased.birth_date"
    } else {
        deceased["birth_date"] = Value::Null;
        deceased["birth_date_partial"] = Value::String(born.to_owned());
        "deceased.birth_date_partial"
    };

    let yesterday = (now - Duration::days(1)).date_naive();
    deceased["death_date"] = Value::String(yesterday.to_string());
    // What the relative did not have to type, for the pre-fill ratio (the form: the deceased,
    // the declarant, the choices and the account).
    dossier["prefill"] = serde_json::json!({
        "fields_on_form": 15,
        "from_national_data": [
            "deceased.full_name", "deceased.sex", birth_field, "province_code", "commune_code"
        ],
    });
    let published = one_stop
        .publish(PublishRequest {
            event_type: "death.dossier-submitted".into(),
            correlation_id: code.clone(),
            purpose: "civil-registration".into(),
            legal_basis: "Decree 63/2024/ND-CP".into(),
            payload: Some(json_to_struct(dossier)),
            ..PublishRequest::default()
        })
        .await?
        .into_inner();
    println!(
        "   death.dossier-submitted {} for {} (died {yesterday}): dossier {code}",
        published.event_id,
        citizen["full_name"].as_str().unwrap_or("?")
    );
    if let Some(agency) = agency {
        told(agency, &code).await?;
    }
    Ok(code)
}

/// The agency receives the registration of dossier `code` (acknowledging any earlier death it
/// had not) and acknowledges it: the hub keeps its receipt.
async fn told(agency: &mut Client, code: &str) -> anyhow::Result<()> {
    let mut deliveries = agency
        .subscribe(SubscribeRequest {
            event_type: TOLD.into(),
            consumer_group: "deaths".into(),
            start_from: StartFrom::Earliest.into(),
            max_unacknowledged: 16,
            purpose: "social-protection".into(),
            legal_basis: "Decree 20/2021/ND-CP".into(),
        })
        .await?
        .into_inner();
    let late = "the death's registration was not told within 60 s";
    let (delivery, _) = acknowledged_until(
        agency,
        &mut deliveries,
        (super::demo::WAIT_FOR_DELIVERY, late),
        |delivery| {
            delivery
                .envelope
                .as_ref()
                .map(|e| e.correlation_id.as_str())
                == Some(code)
        },
    )
    .await?;
    let envelope = delivery.envelope.unwrap_or_default();
    println!(
        "   told once: the social-protection office received the registration ({} by {}) and \
         acknowledged it",
        envelope.event_id, envelope.producer_system
    );
    Ok(())
}
