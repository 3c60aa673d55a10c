//! The demo's fee scene: the one-stop system asks for a fee (two copies of the birth extract),
//! the hub's PayGov connectors open a transaction and confirm the payment by querying PayGov,
//! and the citizen pays on the sandbox's payment page in between.

use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use tonic::Streaming;

use super::hub_client::{Client, acknowledge};
use crate::api::convert::{json_to_struct, struct_to_json};
use crate::proto::{Delivery, PublishRequest, StartFrom, SubscribeRequest};

const PURPOSE: &str = "fee-payment";
const LEGAL_BASIS: &str = "Circular 85/2019/TT-BTC (civil-status fees)";
/// A payment is confirmed by a query, retried on the connector's backoff (up to 30 s apart).
const WAIT_FOR_PAYMENT: Duration = Duration::from_secs(90);
/// The fee for one copy of a birth extract (trích lục), in dong.
const COPY_FEE_VND: i64 = 8_000;

/// The payment request for `copies` extracts of dossier `code`, paid by its declarant.
fn request(code: &str, key: &str, dossier: &Value, copies: i64) -> PublishRequest {
    let declarant = &dossier["declarant"];
    let payload = json!({
        "dossier_code": code,
        "idempotency_key": key,
        "platform": "PAYGOV",
        "fee_lines": [{
            "fee_code": "HT.BSTL",
            "fee_name": "Phí cấp bản sao trích lục khai sinh",
            "quantity": copies,
            "unit_price_vnd": COPY_FEE_VND,
            "amount_vnd": copies * COPY_FEE_VND
        }],
        "total_amount_vnd": copies * COPY_FEE_VND,
        "beneficiary_account": {
            "bank_code": "970436",
            "account_number": "0011000123456",
            "account_name": "Kho bạc Nhà nước Đà Nẵng"
        },
        "payer": {
            "full_name": declarant["full_name"],
            "personal_id": declarant["personal_id"],
            "phone": null
        },
        "requested_at": Utc::now()
            .with_timezone(&crate::domain::vietnam())
            .to_rfc3339_opts(SecondsFormat::Secs, false)
    });
    PublishRequest {
        event_type: "payment.requested".into(),
        correlation_id: code.into(),
        purpose: PURPOSE.into(),
        legal_basis: LEGAL_BASIS.into(),
        payload: Some(json_to_struct(payload)),
        ..PublishRequest::default()
    }
}

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
    let deadline = tokio::time::Instant::now() + WAIT_FOR_PAYMENT;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.message())
            .await
            .context("nothing within 90 s: see `lienthong connectors status paygov-payments`")??;
        let Some(delivery) = next else {
            bail!("the hub ended the subscription");
        };
        acknowledge(client, &delivery).await?;
        let payload = delivery.payload.map(struct_to_json).unwrap_or_default();
        if payload["idempotency_key"] == key {
            return Ok(payload);
        }
    }
}

/// Plays the scene for dossier `code` (`dossier` is its submission).
pub async fn run(one_stop: &mut Client, code: &str, dossier: &Value) -> anyhow::Result<()> {
    let key = format!("{code}:copies:1");
    let mut initiated = subscribe(one_stop, "payment.initiated").await?;
    let mut confirmed = subscribe(one_stop, "payment.confirmed").await?;
    println!(
        "\n== 6. The one-stop system asks for the fee of two extra copies of the birth extract"
    );
    let requested = one_stop
        .publish(request(code, &key, dossier, 2))
        .await?
        .into_inner();
    println!(
        "   payment.requested {} ({} dong, key {key})",
        requested.event_id,
        2 * COPY_FEE_VND
    );
    let page = payment_event(one_stop, &mut initiated, &key).await?;
    let url = page["payment_url"].as_str().unwrap_or_default();
    println!(
        "   the PayGov connector opened transaction {} (one per payment key)",
        page["platform_transaction_id"].as_str().unwrap_or("?")
    );
    println!("   payment page: {url}");

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
        "   payment.confirmed: {} dong paid at {}, confirmed at {}",
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
