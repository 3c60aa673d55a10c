//! `lienthong demo`: the end-to-end scenario, played against a running hub over gRPC exactly as
//! a province's one-stop system and the civil-status software would: the one-stop system
//! publishes a valid birth dossier and a broken one; the civil-status side subscribes, receives
//! the valid one with its envelope and acknowledges it. Later issues grow this into the full
//! life-event procedure.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{SecondsFormat, Utc};
use rand::Rng as _;
use serde_json::Value;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::api::convert::{json_to_struct, struct_to_json};
use crate::proto::event_service_client::EventServiceClient;
use crate::proto::{AcknowledgeRequest, Position, PublishRequest, StartFrom, SubscribeRequest};

const EVENT_TYPE: &str = "birth.dossier-submitted";
const WAIT_FOR_DELIVERY: Duration = Duration::from_secs(60);

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The hub's gRPC endpoint.
    #[arg(
        long,
        default_value = "http://127.0.0.1:50051",
        env = "LIENTHONG_ENDPOINT"
    )]
    endpoint: String,
    /// Bearer token of the publishing one-stop system (see `lienthong systems add`).
    #[arg(long, env = "LIENTHONG_PUBLISHER_TOKEN", hide_env_values = true)]
    publisher_token: String,
    /// Bearer token of the subscribing civil-status system.
    #[arg(long, env = "LIENTHONG_SUBSCRIBER_TOKEN", hide_env_values = true)]
    subscriber_token: String,
    /// A valid birth dossier to start from.
    #[arg(
        long,
        default_value = "schemas/examples/birth.dossier-submitted/valid-full.json"
    )]
    example: PathBuf,
}

pub(super) type Client = EventServiceClient<
    tonic::service::interceptor::InterceptedService<
        Channel,
        Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>,
    >,
>;

/// A client that names its member system with a bearer token on every call.
pub(super) fn client(channel: Channel, token: &str) -> anyhow::Result<Client> {
    let bearer: MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .context("the token is not a valid header value")?;
    Ok(EventServiceClient::with_interceptor(
        channel,
        Box::new(move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
            Ok(request)
        }),
    ))
}

/// A one-stop system's publish of a birth dossier, as the demo and the bench send it.
pub(super) fn birth_submission(code: &str, payload: &Value) -> PublishRequest {
    PublishRequest {
        event_type: EVENT_TYPE.into(),
        correlation_id: code.into(),
        purpose: "civil-registration".into(),
        legal_basis: "Decree 63/2024/ND-CP".into(),
        payload: Some(json_to_struct(payload.clone())),
        ..PublishRequest::default()
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let channel = Channel::from_shared(args.endpoint.clone())?
        .connect()
        .await
        .with_context(|| format!("cannot reach the hub at {}", args.endpoint))?;
    let mut one_stop = client(channel.clone(), &args.publisher_token)?;
    let mut civil_status = client(channel, &args.subscriber_token)?;

    let mut dossier: Value = serde_json::from_str(
        &std::fs::read_to_string(&args.example)
            .with_context(|| format!("reading {}", args.example.display()))?,
    )?;
    let now = Utc::now().with_timezone(&crate::domain::vietnam());
    let code = format!(
        "G22.99.08-{}-{:06}",
        now.format("%y%m%d"),
        rand::rng().random_range(0..1_000_000)
    );
    dossier["dossier_code"] = Value::String(code.clone());
    dossier["received_at"] = Value::String(now.to_rfc3339_opts(SecondsFormat::Secs, false));

    // The civil-status side subscribes first, so the rebalance overlaps the publishing.
    println!("== 1. The civil-status software subscribes to {EVENT_TYPE}");
    let mut deliveries = civil_status
        .subscribe(SubscribeRequest {
            event_type: EVENT_TYPE.into(),
            consumer_group: "demo-civil-status".into(),
            start_from: StartFrom::Earliest.into(),
            max_unacknowledged: 16,
            purpose: "civil-registration".into(),
            legal_basis: "Law on Civil Status 60/2014/QH13".into(),
        })
        .await?
        .into_inner();

    println!("\n== 2. The one-stop system publishes dossier {code}");
    let request = |payload: &Value| birth_submission(&code, payload);
    let accepted = one_stop.publish(request(&dossier)).await?.into_inner();
    println!(
        "   accepted: event {} on {} partition {} offset {} (schema {} v{}, id {})",
        accepted.event_id,
        accepted.topic,
        accepted.partition,
        accepted.offset,
        accepted.schema_subject,
        accepted.schema_version,
        accepted.schema_id
    );

    println!(
        "\n== 3. It publishes a broken copy: an 11-digit ID, no sex, a 13th month, and a mother whose \
         ID number says she was born in another year"
    );
    let mut broken = dossier.clone();
    broken["declarant"]["personal_id"] = Value::String("04909300432".into());
    broken["mother"]["birth_date"] = Value::String("1996-03-08".into());
    broken["child"]["birth_date"] = Value::String("2026-13-01".into());
    if let Some(child) = broken["child"].as_object_mut() {
        child.remove("sex");
    }
    match one_stop.publish(request(&broken)).await {
        Ok(_) => bail!("the hub accepted a broken dossier"),
        Err(status) => {
            println!("   refused with {:?}:", status.code());
            for part in status.message().split("; ") {
                println!("     {part}");
            }
        }
    }

    println!(
        "\n== 4. The civil-status software tries to publish a birth dossier itself: it holds only \
         a right to subscribe"
    );
    match civil_status.publish(request(&dossier)).await {
        Ok(_) => bail!("the hub let a system publish without a right"),
        Err(status) => println!("   refused with {:?}: {}", status.code(), status.message()),
    }

    println!("\n== 5. The civil-status software receives the valid dossier and acknowledges it");
    let deadline = tokio::time::Instant::now() + WAIT_FOR_DELIVERY;
    loop {
        let next = tokio::time::timeout_at(deadline, deliveries.message())
            .await
            .context("no delivery within 60 s")??;
        let Some(delivery) = next else {
            bail!("the hub ended the subscription");
        };
        let envelope = delivery.envelope.clone().unwrap_or_default();
        civil_status
            .acknowledge(AcknowledgeRequest {
                subscription_id: delivery.subscription_id.clone(),
                positions: vec![Position {
                    partition: delivery.partition,
                    offset: delivery.offset,
                }],
            })
            .await?;
        if envelope.event_id != accepted.event_id {
            println!(
                "   (acknowledged an earlier event {} of dossier {})",
                envelope.event_id, envelope.correlation_id
            );
            continue;
        }
        let payload = delivery.payload.map(struct_to_json).unwrap_or_default();
        println!(
            "   event      {} ({})",
            envelope.event_id, envelope.event_type
        );
        println!(
            "   from       {} at {}",
            envelope.producer_system, envelope.recorded_at
        );
        println!("   dossier    {}", envelope.correlation_id);
        println!(
            "   purpose    {} under {}",
            envelope.purpose, envelope.legal_basis
        );
        println!(
            "   schema     {} v{}",
            envelope.schema_subject, envelope.schema_version
        );
        println!("   trace      {}", envelope.traceparent);
        println!(
            "   child      {} born {}",
            payload["child"]["full_name"].as_str().unwrap_or("?"),
            payload["child"]["birth_date"].as_str().unwrap_or("?")
        );
        println!(
            "   acknowledged: offset {} committed for the group",
            delivery.offset
        );
        break;
    }
    println!("\nDone: one dossier published and delivered, one refused and kept in quarantine");
    println!("(see it with `lienthong quarantine list`), one publish denied for lack of a right");
    println!("(see it with `lienthong systems denials`).");
    Ok(())
}
