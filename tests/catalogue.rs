//! The catalogue in `schemas/` as data: every event type's JSON Schema and Avro schema agree
//! field for field and are annotated, every valid example validates and survives the Avro round
//! trip, and every counter-example fails with exactly the violations it declares.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate};
use lienthong::domain::ReferenceData;
use lienthong::registry::{Catalogue, EventSchema, avro, dictionary, lint, wire};
use serde_json::Value;

/// The date the examples were written for; validation is by the event's own date.
const EXAMPLES_DATE: (i32, u32, u32) = (2026, 11, 23);

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

fn examples_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(EXAMPLES_DATE.0, EXAMPLES_DATE.1, EXAMPLES_DATE.2).expect("date")
}

/// `back` without the nulls Avro filled in for optional fields `sent` left out, at any depth.
fn only_sent(sent: &Value, back: &Value) -> Value {
    match (sent, back) {
        (Value::Object(sent), Value::Object(all)) => Value::Object(
            all.iter()
                .filter(|(k, v)| sent.contains_key(*k) || !v.is_null())
                .map(|(k, v)| {
                    let inner = sent.get(k).map_or_else(|| v.clone(), |s| only_sent(s, v));
                    (k.clone(), inner)
                })
                .collect(),
        ),
        (Value::Array(sent), Value::Array(all)) if sent.len() == all.len() => {
            Value::Array(sent.iter().zip(all).map(|(s, v)| only_sent(s, v)).collect())
        }
        _ => back.clone(),
    }
}

/// Equal JSON, where two RFC 3339 strings for the same instant are equal.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        (Value::String(x), Value::String(y)) => {
            x == y
                || matches!(
                    (DateTime::parse_from_rfc3339(x), DateTime::parse_from_rfc3339(y)),
                    (Ok(s), Ok(t)) if s == t
                )
        }
        _ => a == b,
    }
}

#[test]
fn json_schema_and_avro_agree_and_every_field_is_annotated() {
    let catalogue = Catalogue::load(&schemas_dir()).expect("catalogue loads");
    let problems: Vec<String> = catalogue.events.iter().flat_map(lint::lint).collect();
    assert!(
        problems.is_empty(),
        "catalogue problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn examples_validate_round_trip_and_counter_examples_fail_as_declared() {
    let catalogue = Catalogue::load(&schemas_dir()).expect("catalogue loads");
    let reference =
        Arc::new(ReferenceData::load(&schemas_dir().join("reference")).expect("reference data"));
    let mut failures = Vec::new();
    for def in &catalogue.events {
        let schema = EventSchema::compile(def, reference.clone(), "").expect("compiles");
        let writer = apache_avro::Schema::parse_str(&def.avro_text).expect("avro parses");
        let dir = schemas_dir().join("examples").join(&def.event_type);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        let (mut valid, mut invalid) = (0, 0);
        for file in files {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let content: Value =
                serde_json::from_str(&std::fs::read_to_string(&file).expect("readable"))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            let label = format!("{}/{name}", def.event_type);
            if name.starts_with("valid-") {
                valid += 1;
                let violations = schema.validate(&content, examples_date());
                if !violations.is_empty() {
                    failures.push(format!("{label} should be valid: {violations:?}"));
                    continue;
                }
                let framed = schema
                    .encode(&content)
                    .unwrap_or_else(|v| panic!("{label}: {v:?}"));
                let (_, datum) = wire::unframe(&framed).expect("framed");
                let decoded =
                    apache_avro::from_avro_datum(&writer, &mut &datum[..], None).expect("decodes");
                let back = avro::avro_to_json(decoded);
                // Optional fields left out come back as null: compare what was sent.
                let sent_back = only_sent(&content, &back);
                if !same(&content, &sent_back) {
                    failures.push(format!(
                        "{label} changed in the Avro round trip:\n  sent {content}\n  back {back}"
                    ));
                }
            } else if name.starts_with("invalid-") {
                invalid += 1;
                let expected: BTreeSet<(String, String)> = content["expect"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{label} needs an \"expect\" list"))
                    .iter()
                    .map(|e| {
                        (
                            e["pointer"].as_str().unwrap_or_default().to_owned(),
                            e["rule"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect();
                let actual: BTreeSet<(String, String)> = schema
                    .validate(&content["payload"], examples_date())
                    .into_iter()
                    .map(|v| (v.pointer, v.rule))
                    .collect();
                if actual != expected {
                    failures.push(format!("{label}: expected {expected:?}, got {actual:?}"));
                }
            } else {
                failures.push(format!(
                    "{label}: example names start with valid- or invalid-"
                ));
            }
        }
        if valid == 0 || invalid == 0 {
            failures.push(format!(
                "{}: needs at least one valid- and one invalid- example",
                def.event_type
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_committed_data_dictionary_is_current() {
    let catalogue = Catalogue::load(&schemas_dir()).expect("catalogue loads");
    let current = dictionary::markdown(&dictionary::describe(&catalogue));
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/data-dictionary/index.md"),
    )
    .expect("docs/data-dictionary/index.md exists");
    assert!(
        current == committed,
        "docs/data-dictionary is stale: run `lienthong schemas docs` and commit it"
    );
}

/// The schema node a dotted path names, following `$ref`s, unions and array items.
fn schema_at<'a>(root: &'a Value, node: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let node = match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#')?;
            root.pointer(pointer)?
        }
        None => node,
    };
    let Some((first, rest)) = path.split_first() else {
        return Some(node);
    };
    if let Some(items) = node.get("items") {
        return schema_at(root, items, path);
    }
    for union in ["anyOf", "oneOf"] {
        if let Some(found) = node
            .get(union)
            .and_then(Value::as_array)
            .and_then(|variants| variants.iter().find_map(|v| schema_at(root, v, path)))
        {
            return Some(found);
        }
    }
    schema_at(root, node.get("properties")?.get(*first)?, rest)
}

#[test]
fn every_disclosed_field_exists_in_its_event_schema() {
    let catalogue = Catalogue::load(&schemas_dir()).expect("catalogue loads");
    let access =
        lienthong::app::access_catalogue(&schemas_dir(), &catalogue).expect("access policy loads");
    let mut missing = Vec::new();
    let mut declarations = 0;
    for (event_type, purpose, fields) in access.disclosures.iter() {
        declarations += 1;
        let schema = &catalogue
            .events
            .iter()
            .find(|e| e.event_type == event_type)
            .expect("declared types exist")
            .json_schema;
        for path in fields.paths() {
            let parts: Vec<&str> = path.split('.').collect();
            if schema_at(schema, schema, &parts).is_none() {
                missing.push(format!("{event_type} / {purpose}: {path}"));
            }
        }
    }
    assert!(declarations > 40, "only {declarations} declarations");
    assert!(
        missing.is_empty(),
        "undeclared fields:\n{}",
        missing.join("\n")
    );
}
