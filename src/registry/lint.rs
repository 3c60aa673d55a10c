//! Checks that keep the catalogue honest before anything is registered: the JSON Schema (content
//! rules) and the Avro schema (wire format) of an event type describe the same fields at the same
//! places, and every field says what it means (Vietnamese / English) and how sensitive it is
//! (`public`, `basic` or `sensitive` personal data, per Law 91/2025 and Decree 356/2025).

use std::collections::BTreeSet;

use apache_avro::Schema;
use apache_avro::schema::RecordField;
use serde_json::{Map, Value};

use super::EventDefinition;
use super::avro::Names;

pub const CLASSIFICATIONS: [&str; 3] = ["public", "basic", "sensitive"];

/// Every problem found in one event type's pair of schemas, as readable sentences.
pub fn lint(def: &EventDefinition) -> Vec<String> {
    let mut problems = Vec::new();
    let avro = match Schema::parse_str(&def.avro_text) {
        Ok(avro) => avro,
        Err(e) => return vec![format!("{}.avsc does not parse: {e}", def.event_type)],
    };
    let names = match Names::of(&avro) {
        Ok(names) => names,
        Err(e) => return vec![format!("{}.avsc: {e}", def.event_type)],
    };
    let mut walker = Walker {
        root: &def.json_schema,
        names: &names,
        problems: &mut problems,
        event_type: &def.event_type,
    };
    walker.compare(&def.json_schema, &avro, "");
    problems
}

struct Walker<'a> {
    root: &'a Value,
    names: &'a Names,
    problems: &'a mut Vec<String>,
    event_type: &'a str,
}

impl<'a> Walker<'a> {
    fn problem(&mut self, path: &str, text: String) {
        let at = if path.is_empty() { "/" } else { path };
        self.problems
            .push(format!("{} {at}: {text}", self.event_type));
    }

    /// The schema a JSON Schema node stands for, past `$ref` and nullable wrappers.
    fn resolve<'v>(&self, node: &'v Value) -> &'v Value
    where
        'a: 'v,
    {
        if let Some(target) = node.get("$ref").and_then(Value::as_str)
            && let Some(found) = target.strip_prefix('#').and_then(|p| self.root.pointer(p))
        {
            return self.resolve(found);
        }
        for combinator in ["oneOf", "anyOf"] {
            if let Some(options) = node.get(combinator).and_then(Value::as_array) {
                let non_null: Vec<&Value> = options
                    .iter()
                    .filter(|o| o.get("type").and_then(Value::as_str) != Some("null"))
                    .collect();
                if let [only] = non_null.as_slice() {
                    return self.resolve(only);
                }
            }
        }
        node
    }

    fn compare(&mut self, json: &Value, avro: &Schema, path: &str) {
        let json = self.resolve(json);
        if let Some(problem) = unsupported(avro) {
            self.problem(path, problem);
            return;
        }
        let avro = self.unwrap(avro);
        match avro {
            Schema::Record(record) => {
                let Some(properties) = json.get("properties").and_then(Value::as_object) else {
                    self.problem(
                        path,
                        "Avro has a record where JSON Schema has no object".into(),
                    );
                    return;
                };
                self.compare_fields(properties, &record.fields, path);
            }
            Schema::Array(array) => match json.get("items") {
                Some(items) => self.compare(items, &array.items, &format!("{path}/items")),
                None => self.problem(
                    path,
                    "Avro has an array where JSON Schema has no items".into(),
                ),
            },
            _ => {
                if json.get("properties").is_some() {
                    self.problem(
                        path,
                        "JSON Schema has an object where Avro has no record".into(),
                    );
                }
            }
        }
    }

    fn unwrap<'s>(&self, avro: &'s Schema) -> &'s Schema
    where
        'a: 's,
    {
        match avro {
            Schema::Union(union) => {
                let non_null: Vec<&Schema> = union
                    .variants()
                    .iter()
                    .filter(|v| !matches!(v, Schema::Null))
                    .collect();
                match non_null.as_slice() {
                    [only] => self.unwrap(only),
                    _ => avro,
                }
            }
            Schema::Ref { .. } => self.names.resolve(avro),
            other => other,
        }
    }

    fn compare_fields(
        &mut self,
        properties: &Map<String, Value>,
        fields: &[RecordField],
        path: &str,
    ) {
        let json_names: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
        let avro_names: BTreeSet<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        for missing in json_names.difference(&avro_names) {
            self.problem(
                &format!("{path}/{missing}"),
                "in JSON Schema but not in Avro".into(),
            );
        }
        for missing in avro_names.difference(&json_names) {
            self.problem(
                &format!("{path}/{missing}"),
                "in Avro but not in JSON Schema".into(),
            );
        }
        for field in fields {
            let Some(property) = properties.get(&field.name) else {
                continue;
            };
            let field_path = format!("{path}/{}", field.name);
            self.check_annotations(property, field, &field_path);
            self.compare(property, &field.schema, &field_path);
        }
    }

    fn check_annotations(&mut self, property: &Value, field: &RecordField, path: &str) {
        let description = property.get("description").and_then(Value::as_str);
        if !description.is_some_and(|d| d.contains(" / ")) {
            self.problem(
                path,
                "needs a JSON Schema description \"<Vietnamese> / <English>\"".into(),
            );
        }
        if field.doc.as_deref().is_none_or(|d| !d.contains(" / ")) {
            self.problem(
                path,
                "needs an Avro doc \"<Vietnamese> / <English>\"".into(),
            );
        }
        let json_class = property.get("x-classification").and_then(Value::as_str);
        let avro_class = field
            .custom_attributes
            .get("classification")
            .and_then(Value::as_str);
        match (json_class, avro_class) {
            (Some(j), Some(a)) if j == a && CLASSIFICATIONS.contains(&j) => {}
            (Some(j), Some(a)) if j != a => self.problem(
                path,
                format!("classified {j:?} in JSON Schema but {a:?} in Avro"),
            ),
            _ => self.problem(
                path,
                format!("needs \"x-classification\" (JSON Schema) and \"classification\" (Avro), one of {CLASSIFICATIONS:?}"),
            ),
        }
    }
}

/// Avro the hub's JSON mapping (`registry::avro`) cannot write faithfully.
fn unsupported(avro: &Schema) -> Option<String> {
    match avro {
        Schema::Union(union) => {
            let branches = union
                .variants()
                .iter()
                .filter(|v| !matches!(v, Schema::Null))
                .count();
            (branches > 1).then(|| {
                "a union of several non-null types is ambiguous from JSON; use [\"null\", T]"
                    .to_owned()
            })
        }
        Schema::Null
        | Schema::Boolean
        | Schema::Int
        | Schema::Long
        | Schema::Float
        | Schema::Double
        | Schema::String
        | Schema::Array(_)
        | Schema::Map(_)
        | Schema::Record(_)
        | Schema::Enum(_)
        | Schema::Date
        | Schema::TimestampMillis
        | Schema::Ref { .. } => None,
        other => Some(format!(
            "{other:?} is not supported by the hub's JSON mapping; use string, int/long, date or timestamp-millis"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(json_schema: Value, avro: &str) -> EventDefinition {
        EventDefinition {
            event_type: "t".into(),
            topic: "x".into(),
            description: String::new(),
            hub_only: false,
            key: None,
            json_schema,
            avro_text: avro.into(),
        }
    }

    const ANNOTATED: &str = r#""doc":"a / a","classification":"public""#;

    #[test]
    fn ambiguous_unions_and_unmapped_types_are_refused() {
        let json_schema = json!({"type": "object", "properties": {
            "a": {"type": ["string", "integer"], "description": "a / a", "x-classification": "public"},
            "b": {"type": "string", "description": "b / b", "x-classification": "public"}
        }});
        let avro = format!(
            r#"{{"type":"record","name":"T","fields":[
                {{"name":"a","type":["string","long"],{ANNOTATED}}},
                {{"name":"b","type":{{"type":"string","logicalType":"uuid"}},{ANNOTATED}}}
            ]}}"#
        );
        let problems = lint(&def(json_schema, &avro));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("t /a: a union"), "{problems:?}");
        assert!(problems[1].starts_with("t /b: Uuid"), "{problems:?}");
    }

    #[test]
    fn fields_must_match_and_be_annotated() {
        let json_schema = json!({"type": "object", "properties": {
            "a": {"type": "string", "description": "a / a", "x-classification": "public"},
            "only_json": {"type": "string", "description": "b / b", "x-classification": "basic"},
            "p": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/p"}], "description": "p / p", "x-classification": "basic"}
        }, "$defs": {"p": {"type": "object", "properties": {
            "n": {"type": "string", "description": "n", "x-classification": "basic"}
        }}}});
        let avro = format!(
            r#"{{"type":"record","name":"T","fields":[
                {{"name":"a","type":"string",{ANNOTATED}}},
                {{"name":"only_avro","type":"string",{ANNOTATED}}},
                {{"name":"p","type":["null",{{"type":"record","name":"P","fields":[
                    {{"name":"n","type":"string","doc":"n / n","classification":"sensitive"}}]}}],"default":null,{ANNOTATED}}}
            ]}}"#
        );
        let problems = lint(&def(json_schema, &avro));
        assert_eq!(
            problems,
            [
                "t /only_json: in JSON Schema but not in Avro",
                "t /only_avro: in Avro but not in JSON Schema",
                "t /p: classified \"basic\" in JSON Schema but \"public\" in Avro",
                "t /p/n: needs a JSON Schema description \"<Vietnamese> / <English>\"",
                "t /p/n: classified \"basic\" in JSON Schema but \"sensitive\" in Avro",
            ]
        );
    }
}
