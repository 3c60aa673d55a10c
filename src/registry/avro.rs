//! Mapping between a validated JSON payload and Avro values, guided by the Avro schema.
//! Event types are data, not Rust structs, so the mapping walks the schema: records in field
//! order, enums by symbol, `["null", T]` unions by the value, `date` from `YYYY-MM-DD`,
//! `timestamp-millis` from RFC 3339. Decoding goes back to the same JSON shape, with timestamps
//! written in Viet Nam's offset (+07:00), as the national portal expects.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{Name, RecordSchema};
use apache_avro::types::Value as Avro;
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone as _, Utc};
use serde_json::{Map, Value as Json};

use super::violation::{push_index, push_key};

/// A JSON value that the Avro schema cannot hold; `pointer` is a JSON pointer into the payload.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{pointer}: {problem}")]
pub struct MappingError {
    pub pointer: String,
    pub problem: String,
}

/// Named types of a schema, so that references such as `["null", "Parent"]` resolve.
/// Resolved once per schema and kept beside it.
#[derive(Debug, Clone)]
pub struct Names(HashMap<Name, Schema>);

impl Names {
    pub fn of(schema: &Schema) -> Result<Self, apache_avro::Error> {
        let resolved = apache_avro::schema::ResolvedSchema::try_from(schema)?;
        Ok(Self(
            resolved
                .get_names()
                .iter()
                .map(|(name, schema)| (name.clone(), (*schema).clone()))
                .collect(),
        ))
    }

    pub fn resolve<'a>(&'a self, schema: &'a Schema) -> &'a Schema {
        match schema {
            Schema::Ref { name } => self.0.get(name).unwrap_or(schema),
            other => other,
        }
    }
}

/// Converts `json` to an Avro value of `schema`.
pub fn json_to_avro(json: &Json, schema: &Schema, names: &Names) -> Result<Avro, MappingError> {
    let mut pointer = String::new();
    to_avro(json, schema, names, &mut pointer)
}

fn to_avro(
    json: &Json,
    schema: &Schema,
    names: &Names,
    pointer: &mut String,
) -> Result<Avro, MappingError> {
    // Problems name the field and the rule, never the value: they reach logs, the caller and
    // the quarantine's reason, and the value may be someone's personal data.
    let fail = |pointer: &str, problem: String| MappingError {
        pointer: if pointer.is_empty() {
            "/".to_owned()
        } else {
            pointer.to_owned()
        },
        problem,
    };
    let schema = names.resolve(schema);
    match (schema, json) {
        (Schema::Null, Json::Null) => Ok(Avro::Null),
        (Schema::Boolean, Json::Bool(b)) => Ok(Avro::Boolean(*b)),
        (Schema::Int, Json::Number(n)) => n
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .map(Avro::Int)
            .ok_or_else(|| fail(pointer, "is not a 32-bit integer".to_owned())),
        (Schema::Long, Json::Number(n)) => n
            .as_i64()
            .map(Avro::Long)
            .ok_or_else(|| fail(pointer, "is not a 64-bit integer".to_owned())),
        (Schema::Float, Json::Number(n)) => n
            .as_f64()
            .map(|f| Avro::Float(f as f32))
            .ok_or_else(|| fail(pointer, "is not a number".to_owned())),
        (Schema::Double, Json::Number(n)) => n
            .as_f64()
            .map(Avro::Double)
            .ok_or_else(|| fail(pointer, "is not a number".to_owned())),
        (Schema::String, Json::String(s)) => Ok(Avro::String(s.clone())),
        (Schema::Date, Json::String(s)) => {
            let date = NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|e| fail(pointer, format!("not a date YYYY-MM-DD: {e}")))?;
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("1970-01-01 is a date");
            let days = (date - epoch).num_days();
            i32::try_from(days)
                .map(Avro::Date)
                .map_err(|_| fail(pointer, "date out of range".to_owned()))
        }
        (Schema::TimestampMillis, Json::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Avro::TimestampMillis(t.timestamp_millis()))
            .map_err(|e| fail(pointer, format!("not an RFC 3339 date-time: {e}"))),
        (Schema::Enum(e), Json::String(s)) => e
            .symbols
            .iter()
            .position(|symbol| symbol == s)
            .map(|i| Avro::Enum(i as u32, s.clone()))
            .ok_or_else(|| fail(pointer, format!("is not one of {}", e.symbols.join(", ")))),
        (Schema::Array(a), Json::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                push_index(pointer, i);
                out.push(to_avro(item, &a.items, names, pointer)?);
                pointer.truncate(len);
            }
            Ok(Avro::Array(out))
        }
        (Schema::Map(m), Json::Object(entries)) => {
            let mut out = HashMap::with_capacity(entries.len());
            for (key, item) in entries {
                let len = pointer.len();
                push_key(pointer, key);
                out.insert(key.clone(), to_avro(item, &m.types, names, pointer)?);
                pointer.truncate(len);
            }
            Ok(Avro::Map(out))
        }
        (Schema::Record(r), Json::Object(fields)) => record_to_avro(r, fields, names, pointer),
        (Schema::Union(u), _) => {
            // The first branch that holds the value wins, as in Avro's JSON encoding rules.
            for (i, branch) in u.variants().iter().enumerate() {
                if let Ok(value) = to_avro(json, branch, names, pointer) {
                    return Ok(Avro::Union(i as u32, Box::new(value)));
                }
            }
            Err(fail(
                pointer,
                "matches no branch of the Avro union".to_owned(),
            ))
        }
        (other, _) => Err(fail(
            pointer,
            format!(
                "a JSON {} cannot be written as Avro {other:?}",
                json_kind(json)
            ),
        )),
    }
}

fn record_to_avro(
    record: &RecordSchema,
    fields: &Map<String, Json>,
    names: &Names,
    pointer: &mut String,
) -> Result<Avro, MappingError> {
    let mut out = Vec::with_capacity(record.fields.len());
    for field in &record.fields {
        let len = pointer.len();
        push_key(pointer, &field.name);
        let value = match (fields.get(&field.name), &field.default) {
            (Some(value), _) => to_avro(value, &field.schema, names, pointer)?,
            (None, Some(default)) => to_avro(default, &field.schema, names, pointer)?,
            (None, None) => {
                return Err(MappingError {
                    pointer: pointer.clone(),
                    problem: "missing, and the Avro field has no default".to_owned(),
                });
            }
        };
        pointer.truncate(len);
        out.push((field.name.clone(), value));
    }
    Ok(Avro::Record(out))
}

fn json_kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// Converts a decoded Avro value back to the JSON shape publishers send.
pub fn avro_to_json(value: Avro) -> Json {
    match value {
        Avro::Null => Json::Null,
        Avro::Boolean(b) => Json::Bool(b),
        Avro::Int(i) => Json::from(i),
        Avro::Long(i) => Json::from(i),
        Avro::Float(f) => Json::from(f64::from(f)),
        Avro::Double(f) => Json::from(f),
        Avro::String(s) | Avro::Enum(_, s) => Json::String(s),
        Avro::Union(_, inner) => avro_to_json(*inner),
        Avro::Array(items) => Json::Array(items.into_iter().map(avro_to_json).collect()),
        Avro::Map(entries) => Json::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k, avro_to_json(v)))
                .collect(),
        ),
        Avro::Record(fields) => Json::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, avro_to_json(v)))
                .collect(),
        ),
        Avro::Date(days) => NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(days.into())))
            .map_or(Json::from(days), |d| {
                Json::String(d.format("%Y-%m-%d").to_string())
            }),
        Avro::TimestampMillis(ms) => Utc
            .timestamp_millis_opt(ms)
            .single()
            .map_or(Json::from(ms), |t| Json::String(in_vietnam(t))),
        Avro::Bytes(b) | Avro::Fixed(_, b) => Json::String(hex::encode(b)),
        other => Json::String(format!("{other:?}")),
    }
}

fn in_vietnam(t: DateTime<Utc>) -> String {
    t.with_timezone(&crate::domain::vietnam())
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[
                {"name":"when","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"day","type":{"type":"int","logicalType":"date"}},
                {"name":"sex","type":{"type":"enum","name":"Sex","symbols":["MALE","FEMALE"]}},
                {"name":"p","type":{"type":"record","name":"P","fields":[{"name":"n","type":"string"}]}},
                {"name":"q","type":["null","P"],"default":null},
                {"name":"note","type":["null","string"],"default":null}
            ]}"#,
        )
        .expect("test schema parses")
    }

    #[test]
    fn round_trips_through_avro_bytes() {
        let schema = schema();
        let names = Names::of(&schema).expect("names resolve");
        let input = json!({"when":"2026-11-20T09:15:00+07:00","day":"2026-11-12","sex":"FEMALE",
                           "p":{"n":"Nguyễn"},"q":{"n":"Trần"}});
        let avro = json_to_avro(&input, &schema, &names).expect("maps");
        let bytes = apache_avro::to_avro_datum(&schema, avro).expect("encodes");
        let decoded =
            apache_avro::from_avro_datum(&schema, &mut bytes.as_slice(), None).expect("decodes");
        assert_eq!(
            avro_to_json(decoded),
            json!({"when":"2026-11-20T09:15:00+07:00","day":"2026-11-12","sex":"FEMALE",
                   "p":{"n":"Nguyễn"},"q":{"n":"Trần"},"note":null})
        );
    }

    #[test]
    fn names_the_field_that_does_not_fit() {
        let schema = schema();
        let names = Names::of(&schema).expect("names resolve");
        let input = json!({"when":"yesterday","day":"2026-11-12","sex":"FEMALE","p":{"n":"x"}});
        let err = json_to_avro(&input, &schema, &names).unwrap_err();
        assert_eq!(err.pointer, "/when");
    }
}
