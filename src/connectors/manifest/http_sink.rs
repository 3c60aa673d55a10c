//! The http-sink kind's manifest: the events it consumes, the endpoint it calls, the request,
//! reply and failure mappings, and how hard it tries.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    Kind, KnownTypes, Manifest, Problems, Secret, Spec, check_common, check_event_type, read_file,
    secret,
};
use crate::connectors::mapping::Mapping;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    #[default]
    Earliest,
    Latest,
}

/// An event a connector publishes: its type and the jq program that makes its payload (a
/// reply mapping that gives `null` publishes nothing: the answer announces nothing).
#[derive(Debug, Clone)]
pub struct Output {
    pub event_type: String,
    pub mapping: Mapping,
    /// Reply only. jq over the answer: `true` while the external system has not finished (a
    /// payment still PENDING); the call is then repeated on the delivery backoff.
    pub pending: Option<Mapping>,
    /// Reply only. jq giving what the event is about (a transaction id): every reply with the
    /// same key carries one event id, whichever event caused it, so consumers drop the repeat.
    pub key: Option<Mapping>,
    /// Reply only, with `pending`. jq over the pending answer: the time (RFC 3339) to ask again
    /// at, the event parked until then outside its lane (a statement of a day not yet closed);
    /// `null` to ask again in the lane on the delivery backoff.
    pub ask_again_at: Option<Mapping>,
}

/// An answer that is a "no" rather than a result (a benefit refused, with its reason): the
/// system did what it was asked and decided against, which is neither the reply nor a failure.
/// When `when` gives true for an answer, the refusal's event is published instead of the reply.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub when: Mapping,
    pub output: Output,
    /// 4xx statuses that are answers rather than failures (a population database's 404 for a
    /// number nobody has): read like a success, for `when` to see as `.response.status`.
    pub statuses: Vec<u16>,
}

/// How hard a connector tries, and how fast.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub max_in_flight: usize,
    pub rate_per_second: Option<u32>,
    pub breaker_failures: u32,
    pub breaker_open: Duration,
    /// HTTP statuses retried although a 4xx: what only time fixes at this endpoint.
    pub retry_statuses: Vec<u16>,
}

#[derive(Debug, Clone)]
pub struct HttpTarget {
    pub url: String,
    /// jq over the request's input: path segments appended to `url` for each event (each
    /// percent-encoded, so a value can never climb out of the path).
    pub path: Option<Mapping>,
    /// jq over the request's input: what makes two events the same request to the endpoint
    /// (a dossier code, say), so a second event about it gets the first answer. Without it,
    /// each event is a request of its own.
    pub idempotency_key: Option<Mapping>,
    pub method: reqwest::Method,
    pub timeout: Duration,
    pub headers: BTreeMap<String, String>,
    pub bearer: Option<Secret>,
    pub checksum: Option<Checksum>,
}

/// A request field holding the hex HMAC-SHA256 of a string made from the request, as
/// Vietnamese payment platforms ask (PayGov's `order_id|amount|dossier_code`).
#[derive(Debug, Clone)]
pub struct Checksum {
    /// The request body's field that receives the checksum.
    pub field: String,
    /// jq over the request body: the string signed.
    pub over: Mapping,
    pub secret: Secret,
}
#[derive(Debug, Clone)]
pub enum Target {
    Http(HttpTarget),
    Postgres(super::postgres_sink::PgTarget),
}

/// A checked sink (http-sink or postgres-sink).
#[derive(Debug, Clone)]
pub struct SinkSpec {
    pub event_types: Vec<String>,
    pub start_at: StartAt,
    /// Which of those events the connector acts on; the others are acknowledged untouched.
    pub when: Option<Mapping>,
    pub target: Target,
    /// The request body (http-sink) or the row (postgres-sink).
    pub request: Mapping,
    /// Deployment values the mappings read as `.vars.NAME` (the hub's own callback URL).
    pub vars: serde_json::Map<String, serde_json::Value>,
    pub reply: Option<Output>,
    pub refusal: Option<Refusal>,
    pub failure: Option<Output>,
    pub delivery: DeliveryPolicy,
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
    source: SourceFile,
    http: HttpFile,
    request: Spanned<String>,
    #[serde(default)]
    vars: BTreeMap<String, Spanned<VarFile>>,
    reply: Option<ReplyFile>,
    refusal: Option<RefusalFile>,
    failure: Option<ReplyFile>,
    #[serde(default)]
    delivery: DeliveryFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefusalFile {
    /// jq over the answer: true when it says no.
    when: Spanned<String>,
    event_type: Spanned<String>,
    mapping: Spanned<String>,
    /// jq: what the refusal is about, as a reply's `key`.
    key: Option<Spanned<String>>,
    /// 4xx statuses read as answers for `when` (e.g. `[404]`), not failures.
    statuses: Option<Spanned<Vec<u16>>>,
}

/// A deployment value: from the environment when `env` is set there, else `default`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VarFile {
    env: Option<String>,
    default: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceFile {
    event_types: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    start_at: StartAt,
    /// jq over `{event, envelope}`: `false` for an event this connector leaves alone (a payment
    /// request for another platform).
    when: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    url: Spanned<String>,
    /// An environment variable that, when set, replaces `url` (each deployment points the
    /// same manifest at its own endpoint).
    url_env: Option<String>,
    #[serde(default = "default_method")]
    method: Spanned<String>,
    /// jq: the path segments appended to `url` for each event, e.g.
    /// `["citizens", .event.deceased.personal_id, "death"]`.
    path: Option<Spanned<String>>,
    /// jq: what makes two events the same request, e.g. `.event.dossier_code`.
    idempotency_key: Option<Spanned<String>>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    auth: Option<AuthFile>,
    checksum: Option<ChecksumFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChecksumFile {
    field: Spanned<String>,
    over: Spanned<String>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
}

/// The fields that say where an HTTP connector calls and how it proves who it is, as read
/// from whichever table holds them (serde's `flatten` would lose their line numbers).
pub(super) struct Endpoint<'a> {
    pub url: &'a Spanned<String>,
    pub url_env: Option<&'a String>,
    pub timeout_ms: u64,
    pub headers: &'a BTreeMap<String, String>,
    pub auth: Option<&'a AuthFile>,
}

fn default_method() -> Spanned<String> {
    Spanned::new(0..0, "POST".to_owned())
}

pub(super) fn default_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthFile {
    /// `bearer`: `Authorization: Bearer <secret>`.
    scheme: Spanned<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplyFile {
    event_type: Spanned<String>,
    mapping: Spanned<String>,
    pending: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    ask_again_at: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct DeliveryFile {
    max_attempts: u32,
    initial_backoff_ms: u64,
    max_backoff_ms: u64,
    max_in_flight: usize,
    rate_per_second: Option<u32>,
    breaker_failures: u32,
    breaker_open_ms: u64,
    retry_statuses: Vec<u16>,
}

impl Default for DeliveryFile {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff_ms: 500,
            max_backoff_ms: 60_000,
            max_in_flight: 64,
            rate_per_second: None,
            breaker_failures: 5,
            breaker_open_ms: 30_000,
            retry_statuses: Vec::new(),
        }
    }
}

/// The events a sink consumes, checked: their types, where to start and which to act on.
pub(super) fn check_source(
    problems: &mut Problems<'_>,
    known: &dyn KnownTypes,
    source: &SourceFile,
) -> (Vec<String>, StartAt, Option<Mapping>) {
    if source.event_types.get_ref().is_empty() {
        problems.add(
            &source.event_types.span(),
            "source.event_types",
            "names no event type: a sink consumes at least one",
        );
    }
    for event_type in source.event_types.get_ref() {
        check_event_type(problems, known, event_type, "source.event_types");
    }
    let event_types = source
        .event_types
        .get_ref()
        .iter()
        .map(|t| t.get_ref().clone())
        .collect();
    let when = source
        .when
        .as_ref()
        .and_then(|program| problems.mapping(program, "source.when"));
    (event_types, source.start_at, when)
}

/// An event a sink publishes (its reply or its failure), checked.
pub(super) fn check_output(
    problems: &mut Problems<'_>,
    known: &dyn KnownTypes,
    output: Option<&ReplyFile>,
    field: &str,
) -> Option<Output> {
    let output = output?;
    check_event_type(
        problems,
        known,
        &output.event_type,
        &format!("{field}.event_type"),
    );
    let mut optional = |program: &Option<Spanned<String>>, name: &str| {
        let program = program.as_ref()?;
        if field != "reply" {
            problems.add(
                &program.span(),
                &format!("{field}.{name}"),
                "belongs to a reply: a failure is published once, when the event is given up",
            );
            return None;
        }
        problems.mapping(program, &format!("{field}.{name}"))
    };
    let pending = optional(&output.pending, "pending");
    let key = optional(&output.key, "key");
    let ask_again_at = optional(&output.ask_again_at, "ask_again_at");
    if let (Some(program), None) = (&output.ask_again_at, &output.pending) {
        problems.add(
            &program.span(),
            &format!("{field}.ask_again_at"),
            "needs `pending`: it says when to ask again about an answer that is not final",
        );
    }
    let mapping = problems.mapping(&output.mapping, &format!("{field}.mapping"))?;
    Some(Output {
        event_type: output.event_type.get_ref().clone(),
        mapping,
        pending,
        key,
        ask_again_at,
    })
}

/// A refusal, checked: its test, its event type and its mapping.
fn check_refusal(
    problems: &mut Problems<'_>,
    known: &dyn KnownTypes,
    file: &RefusalFile,
) -> Option<Refusal> {
    check_event_type(problems, known, &file.event_type, "refusal.event_type");
    let when = problems.mapping(&file.when, "refusal.when");
    let mapping = problems.mapping(&file.mapping, "refusal.mapping");
    let key = match &file.key {
        Some(program) => Some(problems.mapping(program, "refusal.key")?),
        None => None,
    };
    let statuses = file.statuses.as_ref();
    if let Some((bad, span)) = statuses.and_then(|statuses| {
        let bad = statuses
            .get_ref()
            .iter()
            .find(|s| !(400..500).contains(*s) || matches!(s, 408 | 425 | 429))?;
        Some((bad, statuses.span()))
    }) {
        problems.add(
            &span,
            "refusal.statuses",
            format!(
                "{bad} is not a 4xx answer a system gives as a \"no\" (408, 425 and 429 are \
                 retried)"
            ),
        );
    }
    Some(Refusal {
        statuses: statuses.map(|s| s.get_ref().clone()).unwrap_or_default(),
        when: when?,
        output: Output {
            event_type: file.event_type.get_ref().clone(),
            mapping: mapping?,
            pending: None,
            key,
            ask_again_at: None,
        },
    })
}

/// How hard a sink tries, checked.
pub(super) fn check_delivery(problems: &mut Problems<'_>, d: &DeliveryFile) -> DeliveryPolicy {
    if d.max_attempts == 0 || d.max_in_flight == 0 || d.breaker_failures == 0 {
        problems.add(
            &(0..0),
            "delivery",
            "max_attempts, max_in_flight and breaker_failures must be at least 1",
        );
    }
    if d.initial_backoff_ms > d.max_backoff_ms {
        problems.add(
            &(0..0),
            "delivery.initial_backoff_ms",
            "must not exceed max_backoff_ms",
        );
    }
    if let Some(bad) = d.retry_statuses.iter().find(|s| !(400..500).contains(*s)) {
        problems.add(
            &(0..0),
            "delivery.retry_statuses",
            format!("{bad} is not a 4xx status (5xx, 408, 425 and 429 are retried anyway)"),
        );
    }
    DeliveryPolicy {
        max_attempts: d.max_attempts,
        initial_backoff: Duration::from_millis(d.initial_backoff_ms),
        max_backoff: Duration::from_millis(d.max_backoff_ms),
        max_in_flight: d.max_in_flight,
        rate_per_second: d.rate_per_second,
        breaker_failures: d.breaker_failures,
        breaker_open: Duration::from_millis(d.breaker_open_ms),
        retry_statuses: d.retry_statuses.clone(),
    }
}

/// An HTTP endpoint (the URL, from the environment when `url_env` is set, and the bearer
/// token's secret), checked; `table` is the manifest table it sits in, for the field names.
pub(super) fn check_endpoint(
    problems: &mut Problems<'_>,
    table: &str,
    endpoint: Endpoint<'_>,
) -> (String, Option<Secret>) {
    let url = endpoint
        .url_env
        .and_then(|var| std::env::var(var).ok())
        .unwrap_or_else(|| endpoint.url.get_ref().clone());
    match reqwest::Url::parse(&url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
        _ => problems.add(
            &endpoint.url.span(),
            &format!("{table}.url"),
            "must be an http:// or https:// URL",
        ),
    }
    let bearer = endpoint.auth.and_then(|auth| {
        if auth.scheme.get_ref() != "bearer" {
            problems.add(
                &auth.scheme.span(),
                &format!("{table}.auth.scheme"),
                "must be \"bearer\"",
            );
        }
        secret(
            problems,
            &auth.scheme.span(),
            &format!("{table}.auth"),
            auth.token_env.as_ref(),
            auth.token_file.as_ref(),
        )
    });
    for (name, value) in endpoint.headers {
        let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && reqwest::header::HeaderValue::from_str(value).is_ok();
        if !valid {
            problems.add(
                &endpoint.url.span(),
                &format!("{table}.headers.{name}"),
                "is not a valid HTTP header name and value",
            );
        }
    }
    if endpoint.timeout_ms == 0 {
        problems.add(
            &endpoint.url.span(),
            &format!("{table}.timeout_ms"),
            "must be above 0",
        );
    }
    (url, bearer)
}

fn check_vars(
    problems: &mut Problems<'_>,
    vars: &BTreeMap<String, Spanned<VarFile>>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut values = serde_json::Map::new();
    for (name, var) in vars {
        let from_env = var
            .get_ref()
            .env
            .as_ref()
            .and_then(|e| std::env::var(e).ok());
        match from_env.or_else(|| var.get_ref().default.clone()) {
            Some(value) => {
                values.insert(name.clone(), serde_json::Value::String(value));
            }
            None => problems.add(
                &var.span(),
                &format!("vars.{name}"),
                match &var.get_ref().env {
                    Some(env) => {
                        format!("the environment variable {env} is not set and there is no default")
                    }
                    None => "needs an env, a default or both".to_owned(),
                },
            ),
        }
    }
    values
}

fn check_checksum(problems: &mut Problems<'_>, file: &ChecksumFile) -> Option<Checksum> {
    if file.field.get_ref().is_empty() {
        problems.add(
            &file.field.span(),
            "http.checksum.field",
            "must name a field",
        );
    }
    let over = problems.mapping(&file.over, "http.checksum.over");
    let secret = secret(
        problems,
        &file.field.span(),
        "http.checksum",
        file.secret_env.as_ref(),
        file.secret_file.as_ref(),
    );
    Some(Checksum {
        field: file.field.get_ref().clone(),
        over: over?,
        secret: secret?,
    })
}

/// Parses an http-sink manifest; problems go to `problems`.
pub(super) fn parse(problems: &mut Problems<'_>, known: &dyn KnownTypes) -> Option<Manifest> {
    let raw: File = read_file(problems)?;
    let common = check_common(
        problems,
        &raw.name,
        &raw.system,
        &raw.purpose,
        &raw.legal_basis,
    );
    let (event_types, start_at, when) = check_source(problems, known, &raw.source);
    let endpoint = Endpoint {
        url: &raw.http.url,
        url_env: raw.http.url_env.as_ref(),
        timeout_ms: raw.http.timeout_ms,
        headers: &raw.http.headers,
        auth: raw.http.auth.as_ref(),
    };
    let (url, bearer) = check_endpoint(problems, "http", endpoint);
    let method = match raw.http.method.get_ref().as_str() {
        "POST" => Some(reqwest::Method::POST),
        "PUT" => Some(reqwest::Method::PUT),
        "PATCH" => Some(reqwest::Method::PATCH),
        // A query (a transaction's status): the request mapping's value is not sent.
        "GET" => Some(reqwest::Method::GET),
        _ => {
            problems.add(
                &raw.http.method.span(),
                "http.method",
                "must be POST, PUT, PATCH or GET",
            );
            None
        }
    };
    let path = match &raw.http.path {
        Some(program) => Some(problems.mapping(program, "http.path")?),
        None => None,
    };
    let idempotency_key = match &raw.http.idempotency_key {
        Some(program) => Some(problems.mapping(program, "http.idempotency_key")?),
        None => None,
    };
    let checksum = raw
        .http
        .checksum
        .as_ref()
        .and_then(|c| check_checksum(problems, c));
    if let (Some(file), Some(reqwest::Method::GET)) = (&raw.http.checksum, &method) {
        problems.add(
            &file.field.span(),
            "http.checksum",
            "a GET sends no body to carry a checksum",
        );
    }
    let request = problems.mapping(&raw.request, "request");
    let vars = check_vars(problems, &raw.vars);
    let reply = check_output(problems, known, raw.reply.as_ref(), "reply");
    let refusal = raw
        .refusal
        .as_ref()
        .and_then(|r| check_refusal(problems, known, r));
    let failure = check_output(problems, known, raw.failure.as_ref(), "failure");
    let delivery = check_delivery(problems, &raw.delivery);
    // A status both retried and taken as a refusal: the refusal would win, the retry be dead.
    if let Some(both) = refusal.as_ref().and_then(|r| {
        r.statuses
            .iter()
            .find(|s| delivery.retry_statuses.contains(s))
    }) {
        problems.add(
            &(0..0),
            "refusal.statuses",
            format!("{both} is also in delivery.retry_statuses: a status is one or the other"),
        );
    }
    let (common, method, request) = (common?, method?, request?);
    let spec = Spec::Sink(Box::new(SinkSpec {
        event_types,
        start_at,
        when,
        target: Target::Http(HttpTarget {
            url,
            path,
            idempotency_key,
            method,
            timeout: Duration::from_millis(raw.http.timeout_ms),
            headers: raw.http.headers,
            bearer,
            checksum,
        }),
        request,
        vars,
        reply,
        refusal,
        failure,
        delivery,
    }));
    Some(common.into_manifest(problems, Kind::HttpSink, raw.description, spec))
}
