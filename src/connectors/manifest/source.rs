//! The polling source kinds' manifests: where records are read (an HTTP API paged by a cursor,
//! or a provincial system's transactional outbox table), how often and how many at a time, and
//! the event each record becomes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::http_sink::{AuthFile, Endpoint, check_endpoint, default_timeout_ms};
use super::postgres_sink::is_identifier;
use super::{
    Kind, KnownTypes, Manifest, Problems, Secret, Spec, StartAt, check_common, check_event_type,
    read_file, secret,
};
use crate::connectors::mapping::Mapping;

/// An HTTP API read page by page: `GET url?<cursor_param>=<cursor>&<limit_param>=<batch>`.
#[derive(Debug, Clone)]
pub struct PollTarget {
    pub url: String,
    pub timeout: Duration,
    pub headers: BTreeMap<String, String>,
    pub bearer: Option<Secret>,
    pub cursor_param: String,
    pub limit_param: Option<String>,
    /// jq over the answer's body: the page's records, an array.
    pub records: Mapping,
    /// jq over the answer's body: the cursor after this page; `null` keeps the current one
    /// (the records already published are then skipped when the page is read again).
    pub next_cursor: Mapping,
}

/// A transactional outbox: rows written by the provincial system in the same transaction as
/// its own change, read in the order of an increasing id.
#[derive(Debug, Clone)]
pub struct OutboxTable {
    /// The connection string (`postgres://…`), which may hold a password.
    pub url: Secret,
    pub ca_file: Option<PathBuf>,
    /// `table` or `schema.table`.
    pub table: String,
    /// A `bigint` filled from a sequence (bigserial or identity): the read position.
    pub position_column: String,
    pub start_at: StartAt,
}

/// Where a polling source reads.
#[derive(Debug, Clone)]
pub enum Origin {
    Http(PollTarget),
    Outbox(OutboxTable),
}

/// A checked polling source (http-poll-source or postgres-outbox-source).
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// The event each record becomes.
    pub event_type: String,
    pub origin: Origin,
    /// jq over the record: the dossier code, when the event type is keyed by it.
    pub correlation: Option<Mapping>,
    /// jq over `{record, read_at}`: the event's payload.
    pub payload: Mapping,
    /// Records read at most per poll.
    pub batch: u32,
    /// The pause between polls that found nothing more to read.
    pub interval: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishFile {
    event_type: Spanned<String>,
    correlation: Option<Spanned<String>>,
    payload: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    name: Spanned<String>,
    #[expect(dead_code, reason = "read first, by the manifest's head")]
    kind: Kind,
    system: Spanned<String>,
    #[serde(default)]
    description: String,
    purpose: Spanned<String>,
    legal_basis: Spanned<String>,
    publish: PublishFile,
    poll: PollFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PollFile {
    url: Spanned<String>,
    url_env: Option<String>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    auth: Option<AuthFile>,
    #[serde(default = "default_cursor_param")]
    cursor_param: Spanned<String>,
    limit_param: Option<Spanned<String>>,
    records: Spanned<String>,
    next_cursor: Spanned<String>,
    #[serde(default = "default_batch")]
    batch: u32,
    #[serde(default = "default_interval_ms")]
    interval_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboxFile {
    name: Spanned<String>,
    #[expect(dead_code, reason = "read first, by the manifest's head")]
    kind: Kind,
    system: Spanned<String>,
    #[serde(default)]
    description: String,
    purpose: Spanned<String>,
    legal_basis: Spanned<String>,
    publish: PublishFile,
    outbox: OutboxTableFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboxTableFile {
    url_env: Option<String>,
    url_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    table: Spanned<String>,
    #[serde(default = "default_position_column")]
    position_column: Spanned<String>,
    #[serde(default)]
    start_at: StartAt,
    #[serde(default = "default_batch")]
    batch: u32,
    #[serde(default = "default_interval_ms")]
    interval_ms: u64,
}

fn default_cursor_param() -> Spanned<String> {
    Spanned::new(0..0, "cursor".to_owned())
}

fn default_position_column() -> Spanned<String> {
    Spanned::new(0..0, "id".to_owned())
}

fn default_batch() -> u32 {
    100
}

fn default_interval_ms() -> u64 {
    5_000
}

/// Upper bound of `batch`: a page is published record by record before the next is read.
const MAX_BATCH: u32 = 10_000;

/// The event a source publishes and the pace it reads at, checked.
struct Checked {
    event_type: String,
    correlation: Option<Mapping>,
    payload: Option<Mapping>,
}

fn check_publish(
    problems: &mut Problems<'_>,
    known: &dyn KnownTypes,
    publish: &PublishFile,
) -> Checked {
    check_event_type(problems, known, &publish.event_type, "publish.event_type");
    let correlation = publish
        .correlation
        .as_ref()
        .and_then(|program| problems.mapping(program, "publish.correlation"));
    Checked {
        event_type: publish.event_type.get_ref().clone(),
        correlation,
        payload: problems.mapping(&publish.payload, "publish.payload"),
    }
}

fn check_pace(problems: &mut Problems<'_>, table: &str, batch: u32, interval_ms: u64) {
    if !(1..=MAX_BATCH).contains(&batch) {
        problems.add(
            &(0..0),
            &format!("{table}.batch"),
            format!("must be 1 to {MAX_BATCH}"),
        );
    }
    if interval_ms < 100 {
        problems.add(
            &(0..0),
            &format!("{table}.interval_ms"),
            "must be at least 100: a source must not poll the external system in a busy loop",
        );
    }
}

fn is_query_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Parses an http-poll-source manifest; problems go to `problems`.
pub(super) fn parse_http(problems: &mut Problems<'_>, known: &dyn KnownTypes) -> Option<Manifest> {
    let raw: HttpFile = read_file(problems)?;
    let common = check_common(
        problems,
        &raw.name,
        &raw.system,
        &raw.purpose,
        &raw.legal_basis,
    );
    let publish = check_publish(problems, known, &raw.publish);
    let poll = &raw.poll;
    let endpoint = Endpoint {
        url: &poll.url,
        url_env: poll.url_env.as_ref(),
        timeout_ms: poll.timeout_ms,
        headers: &poll.headers,
        auth: poll.auth.as_ref(),
    };
    let (url, bearer) = check_endpoint(problems, "poll", endpoint);
    for (param, field) in [
        (Some(&poll.cursor_param), "poll.cursor_param"),
        (poll.limit_param.as_ref(), "poll.limit_param"),
    ] {
        if let Some(param) = param
            && !is_query_name(param.get_ref())
        {
            problems.add(
                &param.span(),
                field,
                "must be a query parameter name (letters, digits, '_', '-', '.')",
            );
        }
    }
    let records = problems.mapping(&poll.records, "poll.records");
    let next_cursor = problems.mapping(&poll.next_cursor, "poll.next_cursor");
    check_pace(problems, "poll", poll.batch, poll.interval_ms);
    let (common, payload, records, next_cursor) =
        (common?, publish.payload?, records?, next_cursor?);
    let spec = Spec::Source(SourceSpec {
        event_type: publish.event_type,
        origin: Origin::Http(PollTarget {
            url,
            timeout: Duration::from_millis(poll.timeout_ms),
            headers: poll.headers.clone(),
            bearer,
            cursor_param: poll.cursor_param.get_ref().clone(),
            limit_param: poll.limit_param.as_ref().map(|p| p.get_ref().clone()),
            records,
            next_cursor,
        }),
        correlation: publish.correlation,
        payload,
        batch: poll.batch,
        interval: Duration::from_millis(poll.interval_ms),
    });
    Some(common.into_manifest(problems, Kind::HttpPollSource, raw.description, spec))
}

/// Parses a postgres-outbox-source manifest; problems go to `problems`.
pub(super) fn parse_outbox(
    problems: &mut Problems<'_>,
    known: &dyn KnownTypes,
) -> Option<Manifest> {
    let raw: OutboxFile = read_file(problems)?;
    let common = check_common(
        problems,
        &raw.name,
        &raw.system,
        &raw.purpose,
        &raw.legal_basis,
    );
    let publish = check_publish(problems, known, &raw.publish);
    let outbox = &raw.outbox;
    let url = secret(
        problems,
        &outbox.table.span(),
        "outbox.url",
        outbox.url_env.as_ref(),
        outbox.url_file.as_ref(),
    );
    let table = outbox.table.get_ref();
    if !table.split('.').all(is_identifier) || table.split('.').count() > 2 {
        problems.add(
            &outbox.table.span(),
            "outbox.table",
            "must be table or schema.table, in lower-case letters, digits and '_'",
        );
    }
    if !is_identifier(outbox.position_column.get_ref()) {
        problems.add(
            &outbox.position_column.span(),
            "outbox.position_column",
            "must be a column name (lower-case letters, digits and '_') of a bigint filled \
             from a sequence",
        );
    }
    check_pace(problems, "outbox", outbox.batch, outbox.interval_ms);
    let (common, payload, url) = (common?, publish.payload?, url?);
    let spec = Spec::Source(SourceSpec {
        event_type: publish.event_type,
        origin: Origin::Outbox(OutboxTable {
            url,
            ca_file: outbox.ca_file.clone(),
            table: table.clone(),
            position_column: outbox.position_column.get_ref().clone(),
            start_at: outbox.start_at,
        }),
        correlation: publish.correlation,
        payload,
        batch: outbox.batch,
        interval: Duration::from_millis(outbox.interval_ms),
    });
    Some(common.into_manifest(problems, Kind::PostgresOutboxSource, raw.description, spec))
}
