//! The demo's supplement scene: a second birth dossier, for which the officer asks the citizen
//! for a copy of the parents' marriage certificate (their marriage is not in the electronic
//! civil-status register, so the father cannot be recorded without it). The procedure engine
//! holds the dossier at portal status 5 while it waits (the registration and the card go on);
//! the citizen provides the copy on the portal, and processing resumes to the result. The
//! portal's public timeline shows the wait.

use anyhow::bail;
use chrono::{Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::demo_prefill::{Answers, Couple};
use super::hub_client::{Client, read_json};
use crate::api::convert::json_to_struct;
use crate::proto::PublishRequest;

const EXAMPLE: &str = "schemas/examples/birth.dossier-submitted/valid-card-only.json";
/// How long the scene waits for the portal to show the dossier waiting.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

fn request(event_type: &str, code: &str, payload: Value) -> PublishRequest {
    PublishRequest {
        event_type: event_type.into(),
        correlation_id: code.into(),
        purpose: "civil-registration".into(),
        legal_basis: "Decree 63/2024/ND-CP".into(),
        payload: Some(json_to_struct(payload)),
        ..PublishRequest::default()
    }
}

/// The statuses the national portal shows for `code` (its public timeline).
async fn portal_statuses(portal: &str, code: &str) -> Vec<i64> {
    let Ok(response) = reqwest::get(format!("{portal}/{code}")).await else {
        return Vec::new();
    };
    let view: Value = response.json().await.unwrap_or_default();
    view["timeline"]
        .as_array()
        .map(|t| t.iter().filter_map(|s| s["status"].as_i64()).collect())
        .unwrap_or_default()
}

/// Plays the scene; the dossier's code. `portal` is the portal's dossiers endpoint
/// (`…/portal/v1/dossiers`).
/// With `filler`, the one-stop system fills the parents in from the population database for
/// this couple.
pub async fn run(
    one_stop: &mut Client,
    portal: &str,
    filler: Option<(&mut Answers, Couple<'_>)>,
) -> anyhow::Result<String> {
    println!("\n== 9. A second birth dossier: the parents' marriage is not in the electronic");
    println!("   register, so the officer asks the citizen for a copy of the marriage certificate");
    println!("   (portal status 5); the citizen provides it");
    let mut dossier = read_json(EXAMPLE)?;
    let now = Utc::now().with_timezone(&crate::domain::vietnam());
    let code = super::demo::dossier_code(now);
    super::demo::prepare(&mut dossier, &code, now);
    if let Some((answers, couple)) = filler {
        super::demo_prefill::fill_in(one_stop, answers, (&mut dossier, &code, now), couple).await?;
    }
    one_stop
        .publish(request("birth.dossier-submitted", &code, dossier))
        .await?;
    let due = (now + Duration::days(7)).date_naive();
    let asked = json!({
        "dossier_code": code,
        "missing_items": [{
            "item_type": "MARRIAGE_CERTIFICATE",
            "note": "Việc kết hôn của cha mẹ chưa có trong cơ sở dữ liệu hộ tịch điện tử: nộp bản sao giấy chứng nhận kết hôn."
        }],
        "requested_at": now.to_rfc3339_opts(SecondsFormat::Secs, false),
        "due_date": due.to_string(),
        "agency_code": code.split('-').next().unwrap_or_default(),
    });
    one_stop
        .publish(request("birth.supplement-requested", &code, asked))
        .await?;
    println!("   supplement dossier {code}: marriage certificate asked for, due {due}");
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    while !statuses.contains(&5) {
        if started.elapsed() > PATIENCE {
            bail!("the portal did not show {code} waiting for its supplement: {statuses:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        statuses = portal_statuses(portal, &code).await;
    }
    println!("   the portal shows it waiting: statuses {statuses:?}");
    let provided = json!({
        "dossier_code": code,
        "provided_items": [{"item_type": "MARRIAGE_CERTIFICATE", "document_reference": format!("KHS-{code}-01")}],
        "provided_at": Utc::now()
            .with_timezone(&crate::domain::vietnam())
            .to_rfc3339_opts(SecondsFormat::Secs, false),
        "channel": "NATIONAL_PORTAL",
    });
    one_stop
        .publish(request("birth.supplement-provided", &code, provided))
        .await?;
    println!("   the citizen provided it on the portal: processing resumes");
    Ok(code)
}
