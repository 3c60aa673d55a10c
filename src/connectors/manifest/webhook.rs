//! The webhook-source kind's manifest: the event a callback becomes, how its sender is
//! authenticated (an HMAC-SHA256 signature of the body, or a shared token), the key that
//! makes a repeated callback the same event, and the mappings.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{
    Kind, KnownTypes, Manifest, Problems, Secret, Spec, check_common, check_event_type, read_file,
    secret,
};
use crate::connectors::mapping::Mapping;

/// How a callback proves where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signature {
    /// The header holds the hex HMAC-SHA256 of the raw body under the shared secret
    /// (optionally prefixed `sha256=`).
    HmacSha256,
    /// The header holds the shared secret itself.
    Token,
}

/// A checked webhook-source.
#[derive(Debug, Clone)]
pub struct WebhookSpec {
    /// The event each callback becomes.
    pub event_type: String,
    pub signature: Signature,
    /// The header that carries the signature or token.
    pub header: String,
    pub secret: Secret,
    /// jq over the callback body: the text that identifies it, however often it is sent.
    pub dedupe_key: Mapping,
    /// jq over the body: the dossier code, when the event type is keyed by it.
    pub correlation: Option<Mapping>,
    /// jq over `{body, received_at}`: the event's payload.
    pub payload: Mapping,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Spanned<String>,
    #[expect(dead_code, reason = "read first, by the manifest's head")]
    kind: Kind,
    system: Spanned<String>,
    #[serde(default)]
    description: String,
    purpose: Spanned<String>,
    legal_basis: Spanned<String>,
    webhook: WebhookFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    event_type: Spanned<String>,
    signature: Signature,
    header: Spanned<String>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    dedupe_key: Spanned<String>,
    correlation: Option<Spanned<String>>,
    payload: Spanned<String>,
}

/// Parses a webhook-source manifest; problems go to `problems`.
pub(super) fn parse(problems: &mut Problems<'_>, known: &dyn KnownTypes) -> Option<Manifest> {
    let raw: File = read_file(problems)?;
    let common = check_common(
        problems,
        &raw.name,
        &raw.system,
        &raw.purpose,
        &raw.legal_basis,
    );
    let w = &raw.webhook;
    check_event_type(problems, known, &w.event_type, "webhook.event_type");
    let header = w.header.get_ref();
    if header.is_empty()
        || !header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        problems.add(
            &w.header.span(),
            "webhook.header",
            "must be an HTTP header name (letters, digits and '-')",
        );
    }
    let secret = secret(
        problems,
        &w.header.span(),
        "webhook.secret",
        w.secret_env.as_ref(),
        w.secret_file.as_ref(),
    );
    let dedupe_key = problems.mapping(&w.dedupe_key, "webhook.dedupe_key");
    let correlation = match &w.correlation {
        Some(program) => Some(problems.mapping(program, "webhook.correlation")?),
        None => None,
    };
    let payload = problems.mapping(&w.payload, "webhook.payload");
    let (common, secret, dedupe_key, payload) = (common?, secret?, dedupe_key?, payload?);
    let spec = Spec::WebhookSource(WebhookSpec {
        event_type: w.event_type.get_ref().clone(),
        signature: w.signature,
        header: header.clone(),
        secret,
        dedupe_key,
        correlation,
        payload,
    });
    Some(common.into_manifest(problems, Kind::WebhookSource, raw.description, spec))
}
