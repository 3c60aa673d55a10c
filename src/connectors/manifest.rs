//! Connector manifests: one TOML file per external system in `connectors/`, checked in full at
//! load. Every error names the file, the line and the field, so an operator fixes it in one
//! go. A manifest never holds a secret: it names the environment variable or file that does.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

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
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::HttpSink => "http-sink",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    #[default]
    Earliest,
    Latest,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Spanned<String>,
    kind: Kind,
    system: Spanned<String>,
    #[serde(default)]
    description: String,
    purpose: Spanned<String>,
    legal_basis: Spanned<String>,
    source: SourceFile,
    http: HttpFile,
    request: Spanned<String>,
    reply: Option<ReplyFile>,
    failure: Option<ReplyFile>,
    #[serde(default)]
    delivery: DeliveryFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    event_types: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    start_at: StartAt,
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
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    auth: Option<AuthFile>,
}

fn default_method() -> Spanned<String> {
    Spanned::new(0..0, "POST".to_owned())
}

fn default_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    /// `bearer`: `Authorization: Bearer <secret>`.
    scheme: Spanned<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyFile {
    event_type: Spanned<String>,
    mapping: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DeliveryFile {
    max_attempts: u32,
    initial_backoff_ms: u64,
    max_backoff_ms: u64,
    max_in_flight: usize,
    rate_per_second: Option<u32>,
    breaker_failures: u32,
    breaker_open_ms: u64,
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
        }
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
                .map_err(|_| format!("the environment variable {name} is not set")),
            Secret::File(path) => std::fs::read_to_string(path)
                .map(|v| v.trim().to_owned())
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
        }
    }
}

/// An event a connector publishes: its type and the jq program that makes its payload.
#[derive(Debug, Clone)]
pub struct Output {
    pub event_type: String,
    pub mapping: Mapping,
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
}

#[derive(Debug, Clone)]
pub struct HttpTarget {
    pub url: String,
    pub method: reqwest::Method,
    pub timeout: Duration,
    pub headers: BTreeMap<String, String>,
    pub bearer: Option<Secret>,
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
    pub event_types: Vec<String>,
    pub start_at: StartAt,
    pub http: HttpTarget,
    pub request: Mapping,
    pub reply: Option<Output>,
    pub failure: Option<Output>,
    pub delivery: DeliveryPolicy,
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
    let raw: File = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            let field = error
                .message()
                .split('`')
                .nth(1)
                .unwrap_or("(file)")
                .to_owned();
            problems.add(&span, &field, error.message().trim());
            return Err(problems.found);
        }
    };
    let name = raw.name.get_ref().clone();
    let valid_name = (2..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !valid_name {
        problems.add(
            &raw.name.span(),
            "name",
            "must be 2 to 63 characters a-z, 0-9 and '-', starting with a letter",
        );
    }
    let expected_file = format!("{name}.toml");
    if valid_name
        && file
            .file_name()
            .is_some_and(|f| f != expected_file.as_str())
    {
        problems.add(
            &raw.name.span(),
            "name",
            format!("must match the file name: this file should be called {expected_file}"),
        );
    }
    let system = SystemId::parse(raw.system.get_ref());
    if system.is_err() {
        problems.add(
            &raw.system.span(),
            "system",
            "is not a member system id (a-z, 0-9, '-')",
        );
    }
    if !is_purpose_code(raw.purpose.get_ref()) {
        problems.add(
            &raw.purpose.span(),
            "purpose",
            "must be a purpose code of schemas/access/purposes.toml, e.g. civil-registration",
        );
    }
    if !crate::access::is_legal_basis(raw.legal_basis.get_ref().trim()) {
        problems.add(
            &raw.legal_basis.span(),
            "legal_basis",
            "must be a legal basis on one line",
        );
    }
    if raw.source.event_types.get_ref().is_empty() {
        problems.add(
            &raw.source.event_types.span(),
            "source.event_types",
            "names no event type: a sink consumes at least one",
        );
    }
    for event_type in raw.source.event_types.get_ref() {
        if !known.is_known(event_type.get_ref()) {
            problems.add(
                &event_type.span(),
                "source.event_types",
                format!(
                    "unknown event type {:?}; see schemas/topics.toml",
                    event_type.get_ref()
                ),
            );
        }
    }
    let url = raw
        .http
        .url_env
        .as_deref()
        .and_then(|var| std::env::var(var).ok())
        .unwrap_or_else(|| raw.http.url.get_ref().clone());
    match reqwest::Url::parse(&url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
        _ => problems.add(
            &raw.http.url.span(),
            "http.url",
            "must be an http:// or https:// URL",
        ),
    }
    let method = match raw.http.method.get_ref().as_str() {
        "POST" => Some(reqwest::Method::POST),
        "PUT" => Some(reqwest::Method::PUT),
        "PATCH" => Some(reqwest::Method::PATCH),
        _ => {
            problems.add(
                &raw.http.method.span(),
                "http.method",
                "must be POST, PUT or PATCH",
            );
            None
        }
    };
    let bearer = match &raw.http.auth {
        None => None,
        Some(auth) => {
            if auth.scheme.get_ref() != "bearer" {
                problems.add(
                    &auth.scheme.span(),
                    "http.auth.scheme",
                    "must be \"bearer\"",
                );
            }
            match (&auth.token_env, &auth.token_file) {
                (Some(var), None) => Some(Secret::Env(var.clone())),
                (None, Some(path)) => Some(Secret::File(path.clone())),
                _ => {
                    problems.add(
                        &auth.scheme.span(),
                        "http.auth",
                        "needs exactly one of token_env and token_file (the secret itself never \
                         goes in a manifest)",
                    );
                    None
                }
            }
        }
    };
    if raw.http.timeout_ms == 0 {
        problems.add(&raw.http.url.span(), "http.timeout_ms", "must be above 0");
    }
    let request = problems.mapping(&raw.request, "request");
    let mut output = |reply: &Option<ReplyFile>, field: &str| {
        reply.as_ref().and_then(|reply| {
            if !known.is_known(reply.event_type.get_ref()) {
                problems.add(
                    &reply.event_type.span(),
                    &format!("{field}.event_type"),
                    format!(
                        "unknown event type {:?}; see schemas/topics.toml",
                        reply.event_type.get_ref()
                    ),
                );
            }
            let mapping = problems.mapping(&reply.mapping, &format!("{field}.mapping"))?;
            Some(Output {
                event_type: reply.event_type.get_ref().clone(),
                mapping,
            })
        })
    };
    let reply = output(&raw.reply, "reply");
    let failure = output(&raw.failure, "failure");
    let d = &raw.delivery;
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
    match (problems.found.is_empty(), system, method, request) {
        (true, Ok(system), Some(method), Some(request)) => Ok(Manifest {
            file: file.to_owned(),
            name,
            kind: raw.kind,
            system,
            description: raw.description,
            purpose: raw.purpose.into_inner(),
            legal_basis: raw.legal_basis.into_inner().trim().to_owned(),
            event_types: raw
                .source
                .event_types
                .into_inner()
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            start_at: raw.source.start_at,
            http: HttpTarget {
                url,
                method,
                timeout: Duration::from_millis(raw.http.timeout_ms),
                headers: raw.http.headers,
                bearer,
            },
            request,
            reply,
            failure,
            delivery: DeliveryPolicy {
                max_attempts: d.max_attempts,
                initial_backoff: Duration::from_millis(d.initial_backoff_ms),
                max_backoff: Duration::from_millis(d.max_backoff_ms),
                max_in_flight: d.max_in_flight,
                rate_per_second: d.rate_per_second,
                breaker_failures: d.breaker_failures,
                breaker_open: Duration::from_millis(d.breaker_open_ms),
            },
        }),
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
        assert_eq!(manifest.http.method, reqwest::Method::POST);
        assert_eq!(manifest.delivery.max_attempts, 8);
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
    fn a_secret_is_named_never_given() {
        let text = format!("{GOOD}\n[http.auth]\nscheme = \"bearer\"\ntoken = \"abc\"\n");
        let found = problems(&text);
        assert_eq!(found[0].field, "token", "{found:?}");
    }
}
