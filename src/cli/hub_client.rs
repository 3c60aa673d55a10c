//! The CLI's gRPC client of the hub, shared by the scenes that play member systems (`demo`,
//! its fee scene, `bench`): connecting (TLS, client certificates), naming the system with its
//! token, acknowledging, and the one-stop system's birth submission.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{Days, NaiveDate};
use serde_json::Value;
use tonic::Streaming;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::api::convert::json_to_struct;
use crate::proto::event_service_client::EventServiceClient;
use crate::proto::{AcknowledgeRequest, Delivery, Position, PublishRequest};

/// The event type a one-stop system submits a birth dossier as.
pub(super) const BIRTH_SUBMITTED: &str = "birth.dossier-submitted";

/// A connection to the hub: TLS when the endpoint is https (trusting `ca_file`), presenting a
/// client certificate when `identity` names one.
pub(super) async fn connect(
    endpoint: &str,
    ca_file: Option<&PathBuf>,
    identity: Option<(&PathBuf, &PathBuf)>,
) -> anyhow::Result<Channel> {
    let mut channel = Channel::from_shared(endpoint.to_owned())?;
    if endpoint.starts_with("https://") {
        crate::api::tls::install_crypto_provider();
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let mut tls = ClientTlsConfig::new().domain_name("localhost");
        if let Some(ca) = ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        channel = channel.tls_config(tls)?;
    }
    channel
        .connect()
        .await
        .with_context(|| format!("cannot reach the hub at {endpoint}"))
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

/// Acknowledges deliveries of one subscription, so its consumer group's offset may move past
/// them.
async fn acknowledge(
    client: &mut Client,
    subscription_id: &str,
    positions: Vec<Position>,
) -> anyhow::Result<()> {
    client
        .acknowledge(AcknowledgeRequest {
            subscription_id: subscription_id.to_owned(),
            positions,
        })
        .await?;
    Ok(())
}

/// Earlier events acknowledged in one call: below the demo subscriptions' 16 unacknowledged,
/// so the stream never waits for them, and few calls when earlier runs left thousands (a call
/// per event would meet the member system's call rate limit).
const ACKNOWLEDGED_AT_ONCE: usize = 8;

/// Reads `stream`, acknowledging every delivery read (earlier runs' events included), until
/// `wanted` picks one; that one, and how many earlier ones were acknowledged first. Gives up
/// after `wait`, saying `late`.
pub(super) async fn acknowledged_until(
    client: &mut Client,
    stream: &mut Streaming<Delivery>,
    (wait, late): (Duration, &str),
    mut wanted: impl FnMut(&Delivery) -> bool,
) -> anyhow::Result<(Delivery, usize)> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pending = Vec::new();
    let mut skipped = 0;
    loop {
        let delivery = tokio::time::timeout_at(deadline, stream.message())
            .await
            .with_context(|| late.to_owned())??
            .context("the hub ended the subscription")?;
        pending.push(Position {
            partition: delivery.partition,
            offset: delivery.offset,
        });
        let found = wanted(&delivery);
        if found || pending.len() >= ACKNOWLEDGED_AT_ONCE {
            acknowledge(
                client,
                &delivery.subscription_id,
                std::mem::take(&mut pending),
            )
            .await?;
        }
        if found {
            return Ok((delivery, skipped));
        }
        skipped += 1;
    }
}

/// Makes `dossier` one received at `at` (as `received_at` says) for a child born a week before:
/// registered on time, so free. An example's own birth date would, months on, make every
/// dossier a late registration, charged a fee nobody in a load run pays.
pub(super) fn received_on_time(dossier: &mut Value, received_at: String, at: NaiveDate) {
    // An example that is no object, or whose child is none, is left as it is, for the hub to
    // refuse with the field named.
    let Some(fields) = dossier.as_object_mut() else {
        return;
    };
    fields.insert("received_at".to_owned(), Value::String(received_at));
    if let Some(child) = fields.get_mut("child").and_then(Value::as_object_mut) {
        child.insert(
            "birth_date".to_owned(),
            Value::String((at - Days::new(7)).to_string()),
        );
    }
}

/// Gives a dossier made from an example a birth certificate number of its own (from its code),
/// as every birth has one: dossiers that all named the example's certificate would each take
/// that one document's lock in the engine, one after the other, which no real load does. A
/// dossier that names none is left as it is.
pub(super) fn own_birth_certificate(dossier: &mut Value, code: &str) {
    if let Some(number) = dossier
        .get_mut("birth_certificate_no")
        .filter(|number| number.is_string())
    {
        *number = Value::String(format!("GCS-{code}"));
    }
}

/// A JSON file of the repository's (an example, a certificate), as a value.
pub(super) fn read_json(path: impl AsRef<std::path::Path>) -> anyhow::Result<Value> {
    let path = path.as_ref();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// A one-stop system's publish of a birth dossier, as the demo and the bench send it.
pub(super) fn birth_submission(code: &str, payload: &Value) -> PublishRequest {
    PublishRequest {
        event_type: BIRTH_SUBMITTED.into(),
        correlation_id: code.into(),
        purpose: "civil-registration".into(),
        legal_basis: "Decree 63/2024/ND-CP".into(),
        payload: Some(json_to_struct(payload.clone())),
        ..PublishRequest::default()
    }
}
