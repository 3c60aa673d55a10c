//! The demo's fee scene: the birth dossier asked for two copies of its extract, which are
//! charged, so once the birth is registered the procedure engine asks PayGov for the fee, the
//! hub's PayGov connectors open a transaction and confirm the payment by querying PayGov, and the
//! citizen pays on the sandbox's payment page in between. The one-stop system only follows the
//! payment, to show the citizen the page.

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tonic::Streaming;

use super::hub_client::{Client, acknowledged_until};
use crate::api::convert::struct_to_json;
use crate::procedures::definition::step_key;
use crate::proto::{Delivery, StartFrom, SubscribeRequest};

const PURPOSE: &str = "fee-payment";
const LEGAL_BASIS: &str = "Circular 85/2019/TT-BTC (civil-status fees)";
/// The copies of the extract the demo's dossier asks for.
pub const COPIES: u64 = 2;
/// The registration comes first, then the payment is confirmed by a query, retried on the
/// connector's backoff (up to 30 s apart).
const WAIT_FOR_PAYMENT: Duration = Duration::from_secs(90);

async fn subscribe(client: &mut Client, event_type: &str) -> anyhow::Result<Streaming<Delivery>> {
    Ok(client
        .subscribe(SubscribeRequest {
            event_type: event_type.into(),
            consumer_group: format!("demo-onestop-{event_type}"),
            start_from: StartFrom::Earliest.into(),
            max_unacknowledged: 16,
            purpose: PURPOSE.into(),
            legal_basis: LEGAL_BASIS.into(),
        })
        .await?
        .into_inner())
}

/// The payload of the first delivery about payment `key`; every delivery read is acknowledged
/// (earlier runs' events included).
async fn payment_event(
    client: &mut Client,
    stream: &mut Streaming<Delivery>,
    key: &str,
) -> anyhow::Result<Value> {
    let late = "nothing within 90 s: see `lienthong connectors status paygov-payments`";
    let about = |delivery: &Delivery| {
        delivery
            .payload
            .clone()
            .map(struct_to_json)
            .unwrap_or_default()
    };
    let (delivery, _) = acknowledged_until(client, stream, (WAIT_FOR_PAYMENT, late), |delivery| {
        about(delivery)["idempotency_key"] == key
    })
    .await?;
    Ok(about(&delivery))
}

/// Plays the scene for dossier `code`, submitted with [`COPIES`] copies.
pub async fn run(one_stop: &mut Client, code: &str) -> anyhow::Result<()> {
    let key = step_key(code, "PAYMENT");
    let mut initiated = subscribe(one_stop, "payment.initiated").await?;
    let mut confirmed = subscribe(one_stop, "payment.confirmed").await?;
    println!(
        "\n== 6. The dossier asked for {COPIES} copies of the birth extract: once the birth is \
         registered, the hub asks PayGov for the fee"
    );
    let page = payment_event(one_stop, &mut initiated, &key).await?;
    let url = page["payment_url"].as_str().unwrap_or_default();
    println!(
        "   the PayGov connector opened transaction {} for {} dong (key {key}: one per dossier)",
        page["platform_transaction_id"].as_str().unwrap_or("?"),
        page["amount_vnd"]
    );
    println!(
        "   the portal shows the dossier at status 6 (payment requested); payment page: {url}"
    );

    println!("\n== 7. The citizen pays on PayGov's page; the hub confirms it by asking PayGov");
    let paid = reqwest::Client::new()
        .post(url)
        .json(&json!({"outcome": "success", "bank_code": "VCB"}))
        .send()
        .await
        .with_context(|| format!("cannot reach the payment page {url}"))?;
    if !paid.status().is_success() {
        bail!("the payment page answered {}", paid.status());
    }
    let payment = payment_event(one_stop, &mut confirmed, &key).await?;
    println!(
        "   payment.confirmed: {} dong paid at {}, confirmed at {}; the dossier goes on (status 4)",
        payment["amount_vnd"],
        payment["paid_at"].as_str().unwrap_or("?"),
        payment["confirmed_at"].as_str().unwrap_or("?")
    );
    println!(
        "   (PayGov's signed callback is kept as evidence only: a late, repeated or lost one \
         changes nothing)"
    );
    Ok(())
}
