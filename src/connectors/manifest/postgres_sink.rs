//! The postgres-sink kind's manifest: the events it consumes, the provincial system's table it
//! upserts them into (keyed, so a repeated event changes nothing), the row mapping, and how hard
//! it tries. The connection string is a secret: only named here.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::http_sink::{
    DeliveryFile, ReplyFile, SourceFile, Target, check_delivery, check_output, check_source,
};
use super::{
    Kind, KnownTypes, Manifest, Problems, Secret, SinkSpec, Spec, check_common, read_file, secret,
};

/// Where a postgres-sink writes.
#[derive(Debug, Clone)]
pub struct PgTarget {
    /// The connection string (`postgres://…`), which may hold a password.
    pub url: Secret,
    /// CA certificate(s) to verify the server with; TLS is then required.
    pub ca_file: Option<PathBuf>,
    /// `table` or `schema.table`.
    pub table: String,
    /// The columns of the table's primary key or a unique index: the upsert's conflict target.
    pub key_columns: Vec<String>,
}

/// A lower-case SQL identifier, safe to quote into a statement.
pub fn is_identifier(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
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
    postgres: PostgresFile,
    /// jq: the row, an object of column names and values.
    row: Spanned<String>,
    failure: Option<ReplyFile>,
    #[serde(default)]
    delivery: DeliveryFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresFile {
    url_env: Option<String>,
    url_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    table: Spanned<String>,
    key_columns: Spanned<Vec<String>>,
}

/// Parses a postgres-sink manifest; problems go to `problems`.
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
    let pg = &raw.postgres;
    let url = secret(
        problems,
        &pg.table.span(),
        "postgres.url",
        pg.url_env.as_ref(),
        pg.url_file.as_ref(),
    );
    if !pg.table.get_ref().split('.').all(is_identifier)
        || pg.table.get_ref().split('.').count() > 2
    {
        problems.add(
            &pg.table.span(),
            "postgres.table",
            "must be table or schema.table, in lower-case letters, digits and '_'",
        );
    }
    if pg.key_columns.get_ref().is_empty()
        || !pg.key_columns.get_ref().iter().all(|c| is_identifier(c))
    {
        problems.add(
            &pg.key_columns.span(),
            "postgres.key_columns",
            "must name the columns of the table's primary key or a unique index \
             (lower-case letters, digits and '_'): repeated events update, never duplicate",
        );
    }
    let row = problems.mapping(&raw.row, "row");
    let failure = check_output(problems, known, raw.failure.as_ref(), "failure");
    let delivery = check_delivery(problems, &raw.delivery);
    let (common, url, row) = (common?, url?, row?);
    let spec = Spec::Sink(Box::new(SinkSpec {
        event_types,
        start_at,
        when,
        target: Target::Postgres(PgTarget {
            url,
            ca_file: pg.ca_file.clone(),
            table: pg.table.get_ref().clone(),
            key_columns: pg.key_columns.get_ref().clone(),
        }),
        request: row,
        vars: serde_json::Map::new(),
        reply: None,
        refusal: None,
        failure,
        delivery,
    }));
    Some(common.into_manifest(problems, Kind::PostgresSink, raw.description, spec))
}
