//! Connector manifests: one TOML file per external system in `connectors/`, checked in full at
//! load. Every error names the file, the line and the field, so an operator fixes it in one
//! go. A manifest never holds a secret: it names the environment variable or file that does.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

mod http_sink;
mod postgres_sink;
mod source;
mod webhook;

pub use http_sink::{DeliveryPolicy, HttpTarget, Output, SinkSpec, StartAt, Target};
pub use postgres_sink::{PgTarget, is_identifier};
pub use source::{Origin, OutboxTable, PollTarget, SourceSpec};
pub use webhook::{Signature, WebhookSpec};

use super::mapping::{Mapping, MappingError};
use crate::access::is_purpose_code;
use crate::domain::SystemId;

/// A manifest that cannot be used, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {field}: {problem}", file.display())]
pub struct ManifestError {
    pub file: PathBuf,
    /// From 1; 0 when the problem is the file as a whole.
    pub line: usize,
    pub field: String,
    pub problem: String,
}

/// Every problem found in the manifests, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestErrors {}

/// What kind of connector a manifest describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Consumes events, calls an HTTP API, publishes the reply (or a failure) as an event.
    HttpSink,
    /// Consumes events and upserts each into a table of a provincial system's PostgreSQL.
    PostgresSink,
    /// Receives signed HTTP callbacks and publishes each once as an event.
    WebhookSource,
    /// Reads an HTTP API page by page with a stored cursor and publishes each new record.
    HttpPollSource,
    /// Reads a provincial system's transactional outbox table in order and publishes each row.
    PostgresOutboxSource,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::HttpSink => "http-sink",
            Kind::PostgresSink => "postgres-sink",
            Kind::WebhookSource => "webhook-source",
            Kind::HttpPollSource => "http-poll-source",
            Kind::PostgresOutboxSource => "postgres-outbox-source",
        })
    }
}

/// Where a secret comes from; the value itself is read when the connector starts.
#[derive(Debug, Clone)]
pub enum Secret {
    Env(String),
    File(PathBuf),
}

impl Secret {
    /// The secret's value; the error names where it was looked for, never the value.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Env(name) => std::env::var(name)
                .map(|v| v.trim().to_owned())
                .map_err(|_| format!("the environment variable {name} is not set"))
                .and_then(|v| {
                    if v.is_empty() {
                        Err(format!("the environment variable {name} is empty"))
                    } else {
                        Ok(v)
                    }
                }),
            Secret::File(path) => std::fs::read_to_string(path)
                .map(|v| v.trim().to_owned())
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|v| {
                    if v.is_empty() {
                        Err(format!("{} is empty", path.display()))
                    } else {
                        Ok(v)
                    }
                }),
        }
    }
}

/// A checked manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub file: PathBuf,
    pub name: String,
    pub kind: Kind,
    /// The member system the connector acts as: its rights decide what it reads and publishes.
    pub system: SystemId,
    pub description: String,
    pub purpose: String,
    pub legal_basis: String,
    pub spec: Spec,
    /// SHA-256 of the file: a reload restarts a connector only when its manifest changed.
    pub fingerprint: [u8; 32],
}

impl Manifest {
    /// The start of the manifest's SHA-256, in hex: enough to tell two versions of a file apart
    /// in status and in `connectors reload`.
    pub fn version(&self) -> String {
        hex::encode(&self.fingerprint[..6])
    }
}

/// The fingerprint of a manifest's text.
fn fingerprint(text: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// What the connector's kind needs.
#[derive(Debug, Clone)]
pub enum Spec {
    Sink(Box<SinkSpec>),
    WebhookSource(WebhookSpec),
    /// A polling source: one hub process at a time reads, from a stored position.
    Source(SourceSpec),
}

impl Manifest {
    /// The event types the connector consumes (a sink) or publishes (a source).
    pub fn event_types(&self) -> Vec<String> {
        match &self.spec {
            Spec::Sink(sink) => sink.event_types.clone(),
            Spec::WebhookSource(webhook) => vec![webhook.event_type.clone()],
            Spec::Source(source) => vec![source.event_type.clone()],
        }
    }

    /// What the connector consumes and what it publishes (a sink's reply, refusal and failure
    /// events; a source's records): who a change to an event type reaches.
    pub fn consumes_and_publishes(&self) -> (Vec<String>, Vec<String>) {
        match &self.spec {
            Spec::Sink(sink) => {
                let outputs = [
                    sink.reply.as_ref(),
                    sink.refusal.as_ref().map(|r| &r.output),
                    sink.failure.as_ref(),
                ];
                let published = outputs
                    .into_iter()
                    .flatten()
                    .map(|o| o.event_type.clone())
                    .collect();
                (sink.event_types.clone(), published)
            }
            Spec::WebhookSource(_) | Spec::Source(_) => (Vec::new(), self.event_types()),
        }
    }

    /// What it consumes and publishes, as the auditors' blast radius counts it.
    pub fn types(&self) -> crate::audit::ConnectorTypes {
        let (consumes, publishes) = self.consumes_and_publishes();
        crate::audit::ConnectorTypes {
            name: self.name.clone(),
            system: self.system.to_string(),
            consumes,
            publishes,
        }
    }

    /// Where it sends or receives, for status.
    pub fn endpoint(&self) -> String {
        match &self.spec {
            Spec::Sink(sink) => match &sink.target {
                Target::Http(http) => format!("{} {}", http.method, shown_url(&http.url)),
                Target::Postgres(pg) => format!("UPSERT {} (PostgreSQL)", pg.table),
            },
            Spec::WebhookSource(_) => format!("POST {}", webhook_path(&self.name)),
            Spec::Source(source) => match &source.origin {
                Origin::Http(poll) => format!("GET {}", shown_url(&poll.url)),
                Origin::Outbox(outbox) => format!("OUTBOX {} (PostgreSQL)", outbox.table),
            },
        }
    }

    /// The mapping named `which` in its tests file.
    pub fn mapping(&self, which: &str) -> Option<&Mapping> {
        match (&self.spec, which) {
            (Spec::Sink(sink), "request" | "row") => Some(&sink.request),
            (Spec::Sink(sink), "when") => sink.when.as_ref(),
            (Spec::Sink(sink), "path") => match &sink.target {
                Target::Http(http) => http.path.as_ref(),
                Target::Postgres(_) => None,
            },
            (Spec::Sink(sink), "idempotency_key") => match &sink.target {
                Target::Http(http) => http.idempotency_key.as_ref(),
                Target::Postgres(_) => None,
            },
            (Spec::Sink(sink), "reply") => sink.reply.as_ref().map(|o| &o.mapping),
            (Spec::Sink(sink), "pending") => sink.reply.as_ref().and_then(|o| o.pending.as_ref()),
            (Spec::Sink(sink), "key") => sink.reply.as_ref().and_then(|o| o.key.as_ref()),
            (Spec::Sink(sink), "ask_again_at") => {
                sink.reply.as_ref().and_then(|o| o.ask_again_at.as_ref())
            }
            (Spec::Sink(sink), "checksum") => match &sink.target {
                Target::Http(http) => http.checksum.as_ref().map(|c| &c.over),
                Target::Postgres(_) => None,
            },
            (Spec::Sink(sink), "failure") => sink.failure.as_ref().map(|o| &o.mapping),
            (Spec::Sink(sink), "refusal.when") => sink.refusal.as_ref().map(|r| &r.when),
            (Spec::Sink(sink), "refusal") => sink.refusal.as_ref().map(|r| &r.output.mapping),
            (Spec::Sink(sink), "refusal.key") => {
                sink.refusal.as_ref().and_then(|r| r.output.key.as_ref())
            }
            (Spec::WebhookSource(webhook), "payload") => Some(&webhook.payload),
            (Spec::WebhookSource(webhook), "dedupe_key") => Some(&webhook.dedupe_key),
            (Spec::WebhookSource(webhook), "correlation") => webhook.correlation.as_ref(),
            (Spec::Source(source), "payload") => Some(&source.payload),
            (Spec::Source(source), "correlation") => source.correlation.as_ref(),
            (Spec::Source(source), "records" | "next_cursor") => match &source.origin {
                Origin::Http(poll) if which == "records" => Some(&poll.records),
                Origin::Http(poll) => Some(&poll.next_cursor),
                Origin::Outbox(_) => None,
            },
            _ => None,
        }
    }

    /// The mapping every tests file must test.
    pub fn main_mapping(&self) -> &'static str {
        match &self.spec {
            Spec::Sink(sink) if matches!(sink.target, Target::Postgres(_)) => "row",
            Spec::Sink(_) => "request",
            Spec::WebhookSource(_) | Spec::Source(_) => "payload",
        }
    }
}

/// `url` without user, password or query: what status may show.
fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// The path on the hub's HTTP listener where a webhook-source receives its callbacks.
pub fn webhook_path(name: &str) -> String {
    format!("/connectors/{name}/webhook")
}

/// The fields every manifest has, checked.
struct Common {
    name: String,
    system: SystemId,
    purpose: String,
    legal_basis: String,
}

/// Collects problems of one file, located by byte span.
struct Problems<'a> {
    file: &'a Path,
    text: &'a str,
    found: Vec<ManifestError>,
}

impl Problems<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        if span.is_empty() && span.start == 0 {
            return 0;
        }
        let start = span.start.min(self.text.len());
        self.text.as_bytes()[..start]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn add(&mut self, span: &Range<usize>, field: &str, problem: impl Into<String>) {
        self.found.push(ManifestError {
            file: self.file.to_owned(),
            line: self.line(span),
            field: field.to_owned(),
            problem: problem.into(),
        });
    }

    fn mapping(&mut self, program: &Spanned<String>, field: &str) -> Option<Mapping> {
        match Mapping::compile(program.get_ref()) {
            Ok(mapping) => Some(mapping),
            Err(MappingError::Compile(problem)) | Err(MappingError::Run(problem)) => {
                self.add(&program.span(), field, problem);
                None
            }
        }
    }
}

/// The manifest's kind, read before the rest so each kind's fields can be checked strictly.
#[derive(Debug, Deserialize)]
struct Head {
    kind: Spanned<Kind>,
}

/// The manifest's text as a kind's file structure; a TOML problem is reported and `None` given.
fn read_file<T: serde::de::DeserializeOwned>(problems: &mut Problems<'_>) -> Option<T> {
    match toml::from_str(problems.text) {
        Ok(file) => Some(file),
        Err(error) => {
            toml_problem(problems, &error);
            None
        }
    }
}

impl Common {
    /// The manifest these common fields and a kind's `spec` make.
    fn into_manifest(
        self,
        problems: &Problems<'_>,
        kind: Kind,
        description: String,
        spec: Spec,
    ) -> Manifest {
        Manifest {
            file: problems.file.to_owned(),
            name: self.name,
            kind,
            system: self.system,
            description,
            purpose: self.purpose,
            legal_basis: self.legal_basis,
            fingerprint: fingerprint(problems.text),
            spec,
        }
    }
}

/// A TOML error as a located problem; the field is the one the message quotes, if any.
fn toml_problem(problems: &mut Problems<'_>, error: &toml::de::Error) {
    let span = error.span().unwrap_or(0..0);
    let field = error
        .message()
        .split('`')
        .nth(1)
        .unwrap_or("(file)")
        .to_owned();
    problems.add(&span, &field, error.message().trim());
}

/// Checks the fields every manifest has.
fn check_common(
    problems: &mut Problems<'_>,
    name: &Spanned<String>,
    system: &Spanned<String>,
    purpose: &Spanned<String>,
    legal_basis: &Spanned<String>,
) -> Option<Common> {
    let before = problems.found.len();
    let text = name.get_ref().clone();
    let valid_name = (2..=63).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && text.starts_with(|c: char| c.is_ascii_lowercase());
    if !valid_name {
        problems.add(
            &name.span(),
            "name",
            "must be 2 to 63 characters a-z, 0-9 and '-', starting with a letter",
        );
    }
    let expected_file = format!("{text}.toml");
    if valid_name
        && problems
            .file
            .file_name()
            .is_some_and(|f| f != expected_file.as_str())
    {
        problems.add(
            &name.span(),
            "name",
            format!("must match the file name: this file should be called {expected_file}"),
        );
    }
    let system_id = SystemId::parse(system.get_ref());
    if system_id.is_err() {
        problems.add(
            &system.span(),
            "system",
            "is not a member system id (a-z, 0-9, '-')",
        );
    }
    if !is_purpose_code(purpose.get_ref()) {
        problems.add(
            &purpose.span(),
            "purpose",
            "must be a purpose code of schemas/access/purposes.toml, e.g. civil-registration",
        );
    }
    if !crate::access::is_legal_basis(legal_basis.get_ref().trim()) {
        problems.add(
            &legal_basis.span(),
            "legal_basis",
            "must be a legal basis on one line",
        );
    }
    match (problems.found.len() == before, system_id) {
        (true, Ok(system)) => Some(Common {
            name: text,
            system,
            purpose: purpose.get_ref().clone(),
            legal_basis: legal_basis.get_ref().trim().to_owned(),
        }),
        _ => None,
    }
}

/// Where a secret is named: exactly one of an environment variable and a file.
fn secret(
    problems: &mut Problems<'_>,
    span: &Range<usize>,
    field: &str,
    env: Option<&String>,
    file: Option<&PathBuf>,
) -> Option<Secret> {
    match (env, file) {
        (Some(var), None) => Some(Secret::Env(var.clone())),
        (None, Some(path)) => Some(Secret::File(path.clone())),
        _ => {
            problems.add(
                span,
                field,
                "needs exactly one of an environment variable (…_env) and a file (…_file); \
                 the secret itself never goes in a manifest",
            );
            None
        }
    }
}

/// An event type a manifest names, checked against the catalogue.
fn check_event_type(
    problems: &mut Problems<'_>,
    known: &dyn KnownTypes,
    event_type: &Spanned<String>,
    field: &str,
) {
    if !known.is_known(event_type.get_ref()) {
        problems.add(
            &event_type.span(),
            field,
            format!(
                "unknown event type {:?}; see schemas/topics.toml",
                event_type.get_ref()
            ),
        );
    }
}

/// The event types a manifest may name, and whether a name is one of them.
pub trait KnownTypes {
    fn is_known(&self, event_type: &str) -> bool;
}

impl<F: Fn(&str) -> bool> KnownTypes for F {
    fn is_known(&self, event_type: &str) -> bool {
        self(event_type)
    }
}

/// Parses and checks one manifest; every problem found is reported.
pub fn parse(
    file: &Path,
    text: &str,
    known: &dyn KnownTypes,
) -> Result<Manifest, Vec<ManifestError>> {
    let mut problems = Problems {
        file,
        text,
        found: Vec::new(),
    };
    let head: Head = match toml::from_str(text) {
        Ok(head) => head,
        Err(error) => {
            toml_problem(&mut problems, &error);
            return Err(problems.found);
        }
    };
    let parsed = match head.kind.into_inner() {
        Kind::HttpSink => http_sink::parse(&mut problems, known),
        Kind::PostgresSink => postgres_sink::parse(&mut problems, known),
        Kind::WebhookSource => webhook::parse(&mut problems, known),
        Kind::HttpPollSource => source::parse_http(&mut problems, known),
        Kind::PostgresOutboxSource => source::parse_outbox(&mut problems, known),
    };
    match parsed {
        Some(manifest) if problems.found.is_empty() => Ok(manifest),
        _ => Err(problems.found),
    }
}

/// Every manifest in `dir` (`*.toml`), or every problem of every file. Two manifests with one
/// name are refused.
pub fn load_dir(dir: &Path, known: &dyn KnownTypes) -> Result<Vec<Manifest>, ManifestErrors> {
    let whole = |problem: String| ManifestError {
        file: dir.to_owned(),
        line: 0,
        field: "(directory)".to_owned(),
        problem,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ManifestErrors(vec![whole(format!("cannot read: {e}"))])),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut manifests: Vec<Manifest> = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                problems.push(ManifestError {
                    file: file.clone(),
                    line: 0,
                    field: "(file)".to_owned(),
                    problem: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        match parse(&file, &text, known) {
            Ok(manifest) => manifests.push(manifest),
            Err(found) => problems.extend(found),
        }
    }
    let mut seen = std::collections::HashSet::new();
    for manifest in &manifests {
        if !seen.insert(manifest.name.as_str()) {
            problems.push(ManifestError {
                file: manifest.file.clone(),
                line: 0,
                field: "name".to_owned(),
                problem: format!("another manifest is also called {}", manifest.name),
            });
        }
    }
    if problems.is_empty() {
        Ok(manifests)
    } else {
        Err(ManifestErrors(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two of the repository's manifests that read their URL from one environment variable
    /// must mean the same endpoint: otherwise a deployment that sets the variable for one
    /// points the other at the wrong API (residence registrations at the deletions' URL).
    #[test]
    fn the_repository_manifests_share_an_url_variable_only_for_one_url() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("connectors");
        let mut by_variable: std::collections::HashMap<String, (String, String)> =
            std::collections::HashMap::new();
        for entry in std::fs::read_dir(&dir).expect("connectors/") {
            let path = entry.expect("an entry").path();
            if path.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable");
            let manifest: toml::Value = toml::from_str(&text).expect("TOML");
            let http = manifest.get("http");
            let field = |name: &str| {
                http.and_then(|h| h.get(name))
                    .and_then(toml::Value::as_str)
                    .map(str::to_owned)
            };
            let (Some(variable), Some(url)) = (field("url_env"), field("url")) else {
                continue;
            };
            let name = path.display().to_string();
            if let Some((other, other_url)) = by_variable.get(&variable) {
                assert_eq!(
                    &url, other_url,
                    "{name} and {other} both read {variable} for different URLs"
                );
            }
            by_variable.insert(variable, (name, url));
        }
        assert!(!by_variable.is_empty());
    }

    const GOOD: &str = r#"
name = "civil-status"
kind = "http-sink"
system = "civil-status-connector"
purpose = "civil-registration"
legal_basis = "Decree 63/2024/ND-CP"
request = "{dossier: .event.dossier_code}"

[source]
event_types = ["birth.dossier-submitted"]

[http]
url = "http://127.0.0.1:9/births"
"#;

    fn known(event_type: &str) -> bool {
        event_type.starts_with("birth.")
    }

    fn problems(text: &str) -> Vec<ManifestError> {
        parse(Path::new("connectors/civil-status.toml"), text, &known).unwrap_err()
    }

    #[test]
    fn a_good_manifest_loads_with_defaults() {
        let manifest = parse(Path::new("civil-status.toml"), GOOD, &known).unwrap();
        assert_eq!(manifest.kind, Kind::HttpSink);
        let Spec::Sink(sink) = &manifest.spec else {
            panic!("not a sink")
        };
        let Target::Http(http) = &sink.target else {
            panic!("not an http sink")
        };
        assert_eq!(http.method, reqwest::Method::POST);
        assert_eq!(sink.delivery.max_attempts, 8);
    }

    #[test]
    fn an_unknown_field_is_named_with_its_line() {
        let text = GOOD.replace("[http]\n", "[http]\nurll = \"x\"\n");
        let found = problems(&text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].line, found[0].field.as_str()), (13, "urll"));
    }

    #[test]
    fn semantic_problems_are_all_reported_with_line_and_field() {
        let text = GOOD
            .replace("birth.dossier-submitted", "death.nothing")
            .replace(".event.dossier_code}", ".event.dossier_code")
            .replace("http://127.0.0.1:9/births", "ftp://x");
        let found = problems(&text);
        let located: Vec<(usize, &str)> =
            found.iter().map(|p| (p.line, p.field.as_str())).collect();
        assert_eq!(
            located,
            [(10, "source.event_types"), (13, "http.url"), (7, "request")],
            "{found:?}"
        );
        assert!(
            found[0]
                .to_string()
                .starts_with("connectors/civil-status.toml:10: ")
        );
    }

    #[test]
    fn a_per_event_path_is_a_checked_jq_program() {
        let with_path = GOOD.replace(
            "[http]\n",
            "[http]\npath = '[.event.child.personal_id, \"card\"]'\n",
        );
        let manifest = parse(Path::new("civil-status.toml"), &with_path, &known).unwrap();
        assert!(manifest.mapping("path").is_some());
        let broken = GOOD.replace("[http]\n", "[http]\npath = '[.event'\n");
        let found = problems(&broken);
        assert_eq!(
            (found[0].line, found[0].field.as_str()),
            (13, "http.path"),
            "{found:?}"
        );
    }

    #[test]
    fn checksum_vars_pending_and_key_load_and_misuse_is_named() {
        let text =
            GOOD.replace(
                "[http]\n",
                "[vars.callback]\ndefault = \"http://hub/cb\"\n\n[http]\nmethod = \"PUT\"\n",
            )
            .replace(
                "event_types = [\"birth.dossier-submitted\"]\n",
                "event_types = [\"birth.dossier-submitted\"]\nwhen = '.event.x == 1'\n",
            )
            .replace(
                "request = \"{dossier: .event.dossier_code}\"",
                "request = \"{dossier: .event.dossier_code, cb: .vars.callback}\"",
            ) + "[http.checksum]\nfield = \"checksum\"\nover = '.dossier'\nsecret_env = \"S\"\n\n\
               [reply]\nevent_type = \"birth.done\"\nmapping = \"null\"\n\
               pending = '.response.body.status == \"PENDING\"'\nkey = '.response.body.id'\n\n\
               [delivery]\nretry_statuses = [404]\n";
        let manifest = parse(Path::new("civil-status.toml"), &text, &known).unwrap();
        let Spec::Sink(sink) = &manifest.spec else {
            panic!("not a sink")
        };
        assert_eq!(sink.vars["callback"], "http://hub/cb");
        assert_eq!(sink.delivery.retry_statuses, [404]);
        let Target::Http(http) = &sink.target else {
            panic!("not an http sink")
        };
        assert_eq!(http.method, reqwest::Method::PUT);
        for mapping in ["when", "checksum", "pending", "key", "reply"] {
            assert!(manifest.mapping(mapping).is_some(), "{mapping}");
        }

        let misused = text
            .replace("retry_statuses = [404]", "retry_statuses = [503]")
            .replace(
                "default = \"http://hub/cb\"",
                "env = \"LIENTHONG_TEST_UNSET_VAR\"",
            )
            .replace("[reply]", "[failure]")
            .replace("method = \"PUT\"", "method = \"GET\"");
        let found: Vec<String> = problems(&misused).iter().map(|p| p.field.clone()).collect();
        assert_eq!(
            found,
            [
                "http.checksum",
                "vars.callback",
                "failure.pending",
                "failure.key",
                "delivery.retry_statuses"
            ]
        );
    }

    #[test]
    fn refusal_statuses_load_as_answers_and_a_retried_status_is_named() {
        let refusal = "[refusal]\nstatuses = [404]\nwhen = '.response.status == 404'\n\
                       event_type = \"birth.done\"\nmapping = \"null\"\n";
        let text = format!("{GOOD}\n{refusal}");
        let manifest = parse(Path::new("civil-status.toml"), &text, &known).unwrap();
        let Spec::Sink(sink) = &manifest.spec else {
            panic!("not a sink")
        };
        assert_eq!(
            sink.refusal.as_ref().map(|r| r.statuses.clone()),
            Some(vec![404])
        );
        for retried in ["429", "503"] {
            let found = problems(&text.replace("[404]", &format!("[{retried}]")));
            assert_eq!(
                found
                    .iter()
                    .map(|p| (p.field.as_str(), p.line))
                    .collect::<Vec<_>>(),
                [("refusal.statuses", text.lines().count() - 3)],
                "{retried} is retried, never an answer: {found:?}"
            );
        }
        let both = problems(&format!("{text}\n[delivery]\nretry_statuses = [404]\n"));
        assert_eq!(
            both.iter().map(|p| p.field.as_str()).collect::<Vec<_>>(),
            ["refusal.statuses"],
            "a status retried and a refusal at once: {both:?}"
        );
    }

    #[test]
    fn ask_again_at_loads_beside_pending_and_is_named_without_it() {
        let reply = "[reply]\nevent_type = \"birth.done\"\nmapping = \"null\"\n\
                     ask_again_at = '.response.received_at'\n";
        let text = format!("{GOOD}\n{reply}pending = '.response.body.final != true'\n");
        let manifest = parse(Path::new("civil-status.toml"), &text, &known).unwrap();
        assert!(manifest.mapping("ask_again_at").is_some());
        let found: Vec<String> = problems(&format!("{GOOD}\n{reply}"))
            .iter()
            .map(|p| p.field.clone())
            .collect();
        assert_eq!(found, ["reply.ask_again_at"]);
    }

    #[test]
    fn a_secret_is_named_never_given() {
        let text = format!("{GOOD}\n[http.auth]\nscheme = \"bearer\"\ntoken = \"abc\"\n");
        let found = problems(&text);
        assert_eq!(found[0].field, "token", "{found:?}");
    }

    const WEBHOOK: &str = r#"
name = "paygov-callbacks"
kind = "webhook-source"
system = "paygov-connector"
purpose = "fee-payment"
legal_basis = "Decree 11/2026/ND-CP"

[webhook]
event_type = "birth.payment-callback"
signature = "hmac-sha256"
header = "X-PayGov-Signature"
secret_env = "PAYGOV_SECRET"
dedupe_key = ".transaction_id"
payload = "{id: .body.transaction_id}"
"#;

    #[test]
    fn a_webhook_source_loads_and_its_problems_are_named() {
        let file = Path::new("paygov-callbacks.toml");
        let manifest = parse(file, WEBHOOK, &known).unwrap();
        assert_eq!(manifest.kind, Kind::WebhookSource);
        assert_eq!(
            manifest.endpoint(),
            "POST /connectors/paygov-callbacks/webhook"
        );
        let broken = WEBHOOK
            .replace("signature = \"hmac-sha256\"", "signature = \"md5\"")
            .replace("secret_env = \"PAYGOV_SECRET\"\n", "");
        let found = parse(file, &broken, &known).unwrap_err();
        assert_eq!(
            (found[0].line, found[0].field.as_str()),
            (10, "md5"),
            "{found:?}"
        );
        let unsigned = WEBHOOK.replace("secret_env = \"PAYGOV_SECRET\"\n", "");
        let found = parse(file, &unsigned, &known).unwrap_err();
        assert_eq!(
            (found[0].line, found[0].field.as_str()),
            (11, "webhook.secret"),
            "{found:?}"
        );
    }

    const OUTBOX: &str = r#"
name = "province-outbox"
kind = "postgres-outbox-source"
system = "one-stop-48"
purpose = "civil-registration"
legal_basis = "Decree 63/2024/ND-CP"

[publish]
event_type = "birth.dossier-submitted"
correlation = ".dossier_code"
payload = ".record.payload"

[outbox]
url_env = "PROVINCE_DB"
table = "province.outbox"
"#;

    #[test]
    fn an_outbox_source_loads_with_defaults_and_its_problems_are_named() {
        let file = Path::new("province-outbox.toml");
        let manifest = parse(file, OUTBOX, &known).unwrap();
        assert_eq!(manifest.kind, Kind::PostgresOutboxSource);
        assert_eq!(manifest.endpoint(), "OUTBOX province.outbox (PostgreSQL)");
        let Spec::Source(source) = &manifest.spec else {
            panic!("not a source")
        };
        let Origin::Outbox(outbox) = &source.origin else {
            panic!("not an outbox")
        };
        assert_eq!(outbox.position_column, "id");
        assert_eq!((source.batch, source.interval.as_millis()), (100, 5000));
        assert!(manifest.mapping("payload").is_some());
        let broken = OUTBOX
            .replace("table = \"province.outbox\"", "table = \"Province.Outbox\"")
            .replace("\"birth.dossier-submitted\"", "\"death.nothing\"")
            .replace("url_env = \"PROVINCE_DB\"\n", "");
        let found = parse(file, &broken, &known).unwrap_err();
        let located: Vec<(usize, &str)> =
            found.iter().map(|p| (p.line, p.field.as_str())).collect();
        assert_eq!(
            located,
            [
                (9, "publish.event_type"),
                (14, "outbox.url"),
                (14, "outbox.table")
            ],
            "{found:?}"
        );
    }

    #[test]
    fn an_http_poll_source_needs_its_record_and_cursor_mappings() {
        let text = r#"
name = "province-changes"
kind = "http-poll-source"
system = "one-stop-48"
purpose = "civil-registration"
legal_basis = "Decree 63/2024/ND-CP"

[publish]
event_type = "birth.dossier-submitted"
payload = ".record"

[poll]
url = "http://127.0.0.1:9/changes"
records = ".items"
next_cursor = ".next"
interval_ms = 10
"#;
        let file = Path::new("province-changes.toml");
        let found = parse(file, text, &known).unwrap_err();
        assert_eq!(found[0].field, "poll.interval_ms", "{found:?}");
        let manifest = parse(file, &text.replace("interval_ms = 10", ""), &known).unwrap();
        assert_eq!(manifest.endpoint(), "GET http://127.0.0.1:9/changes");
        assert!(manifest.mapping("records").is_some());
        assert!(manifest.mapping("next_cursor").is_some());
        let missing = text.replace("next_cursor = \".next\"\n", "");
        let found = parse(file, &missing, &known).unwrap_err();
        assert!(
            found[0].problem.contains("next_cursor"),
            "a missing field is named: {found:?}"
        );
    }
}
