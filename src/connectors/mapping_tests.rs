//! Mapping tests, declared next to each manifest in `<name>.tests.json`: inputs and the
//! outputs (or errors) the manifest's jq programs must give. `lienthong connectors test` and
//! CI run them, so a mapping change that breaks an external system's payload fails before it
//! ships. Every connector must declare at least one test of its request mapping.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::manifest::Manifest;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// `when`, `request`, `path`, `idempotency_key`, `checksum`, `reply`, `pending`, `key`,
    /// `ask_again_at`, `refusal.when`, `refusal`, `refusal.key` or `failure` for a sink;
    /// `payload`, `dedupe_key` or `correlation` for a webhook source.
    mapping: String,
    input: Value,
    /// `null` is an expected value (a reply that announces nothing), not a missing one.
    #[serde(default, deserialize_with = "present")]
    expected: Option<Value>,
    /// A part of the error message the mapping must fail with, instead of `expected`.
    error: Option<String>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// One test's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub connector: String,
    pub test: String,
    /// `None` when it passed; otherwise what went wrong.
    pub failure: Option<String>,
}

/// The tests file of `manifest`.
pub fn tests_file(manifest: &Manifest) -> PathBuf {
    let dir = manifest.file.parent().unwrap_or(Path::new("."));
    dir.join(format!("{}.tests.json", manifest.name))
}

fn failed(manifest: &Manifest, test: &str, why: String) -> Outcome {
    Outcome {
        connector: manifest.name.clone(),
        test: test.to_owned(),
        failure: Some(why),
    }
}

/// Runs every test of `manifest`.
pub fn run(manifest: &Manifest) -> Vec<Outcome> {
    let file = tests_file(manifest);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) => {
            let why = format!(
                "{}: cannot read ({e}); every connector declares mapping tests",
                file.display()
            );
            return vec![failed(manifest, "(tests file)", why)];
        }
    };
    let cases: Vec<Case> = match serde_json::from_str(&text) {
        Ok(cases) => cases,
        Err(e) => {
            let why = format!("{}:{}: {e}", file.display(), e.line());
            return vec![failed(manifest, "(tests file)", why)];
        }
    };
    let main = manifest.main_mapping();
    if !cases.iter().any(|c| c.mapping == main) {
        let why = format!("{}: no test of the {main} mapping", file.display());
        return vec![failed(manifest, "(tests file)", why)];
    }
    cases
        .into_iter()
        .map(|case| run_case(manifest, case))
        .collect()
}

fn run_case(manifest: &Manifest, case: Case) -> Outcome {
    let Some(program) = manifest.mapping(&case.mapping) else {
        let why = format!("the manifest has no mapping {:?}", case.mapping);
        return failed(manifest, &case.name, why);
    };
    let got = program.apply(&case.input);
    let failure = match (&case.expected, &case.error, got) {
        (Some(expected), None, Ok(value)) if value == *expected => None,
        (Some(expected), None, Ok(value)) => Some(format!(
            "expected {}\n      got {}",
            compact(expected),
            compact(&value)
        )),
        (Some(_), None, Err(e)) => Some(format!("the mapping failed: {e}")),
        (None, Some(part), Err(e)) if e.to_string().contains(part.as_str()) => None,
        (None, Some(part), Err(e)) => Some(format!("expected an error with {part:?}, got: {e}")),
        (None, Some(part), Ok(value)) => Some(format!(
            "expected an error with {part:?}, got {}",
            compact(&value)
        )),
        _ => Some("give exactly one of expected and error".to_owned()),
    };
    Outcome {
        connector: manifest.name.clone(),
        test: case.name,
        failure,
    }
}

fn compact(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
