//! The data dictionary (`lienthong schemas docs`): every topic, event type and field with its
//! type, classification, description and rules, as Markdown and as one static HTML page, so an
//! auditor or a ministry reads the contract without reading JSON.

use std::fmt::Write as _;

use serde_json::Value;

use super::{Catalogue, rules};

/// One field of one event type, flattened.
pub struct FieldDoc {
    /// JSON pointer inside the payload, e.g. `/child/birth_date`.
    pub path: String,
    pub kind: String,
    pub required: bool,
    pub classification: String,
    pub description: String,
    pub rules: Vec<String>,
}

pub struct EventDoc {
    pub event_type: String,
    pub topic: String,
    pub description: String,
    pub fields: Vec<FieldDoc>,
}

pub fn describe(catalogue: &Catalogue) -> Vec<EventDoc> {
    catalogue
        .events
        .iter()
        .map(|def| {
            let mut fields = Vec::new();
            collect(&def.json_schema, &def.json_schema, "", &mut fields);
            EventDoc {
                event_type: def.event_type.clone(),
                topic: def.topic.clone(),
                description: def.description.clone(),
                fields,
            }
        })
        .collect()
}

/// The classification of each field of an event type, by dotted path (`child.birth_date`), as
/// the transfer ledger names fields.
pub fn classifications(json_schema: &Value) -> std::collections::HashMap<String, String> {
    let mut fields = Vec::new();
    collect(json_schema, json_schema, "", &mut fields);
    fields
        .into_iter()
        .map(|f| (f.path[1..].replace('/', "."), f.classification))
        .collect()
}

fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    if let Some(target) = node.get("$ref").and_then(Value::as_str)
        && let Some(found) = target.strip_prefix('#').and_then(|p| root.pointer(p))
    {
        return resolve(root, found);
    }
    if let Some(options) = node.get("oneOf").and_then(Value::as_array) {
        let non_null: Vec<&Value> = options
            .iter()
            .filter(|o| o.get("type").and_then(Value::as_str) != Some("null"))
            .collect();
        if let [only] = non_null.as_slice() {
            return resolve(root, only);
        }
    }
    node
}

fn kind(node: &Value) -> String {
    let base = match node.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "object".to_owned(),
    };
    if let Some(format) = node.get("format").and_then(Value::as_str) {
        return format!("{base} ({format})");
    }
    base
}

fn schema_rules(node: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(pattern) = node.get("pattern").and_then(Value::as_str) {
        out.push(format!("pattern `{pattern}`"));
    }
    if let Some(values) = node.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        out.push(format!("one of {}", values.join(", ")));
    }
    for key in [
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
    ] {
        if let Some(v) = node.get(key) {
            out.push(format!("{key} {v}"));
        }
    }
    out
}

fn collect(root: &Value, node: &Value, path: &str, out: &mut Vec<FieldDoc>) {
    let node = resolve(root, node);
    let required: Vec<&str> = node
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = node.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, property) in properties {
        let target = resolve(root, property);
        let field_path = format!("{path}/{name}");
        let mut field_rules = schema_rules(target);
        field_rules.extend(
            rules::rules_for_field(name, |sibling| properties.contains_key(sibling))
                .into_iter()
                .map(|r| match rules::severity(r) {
                    super::Severity::Error => format!("`{r}`"),
                    super::Severity::Warning => format!("`{r}` (warning)"),
                }),
        );
        let text = |key: &str| {
            property
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        out.push(FieldDoc {
            path: field_path.clone(),
            kind: kind(target),
            required: required.contains(&name.as_str()),
            classification: text("x-classification"),
            description: text("description"),
            rules: field_rules,
        });
        collect(root, target, &field_path, out);
        if let Some(items) = target.get("items") {
            collect(root, items, &format!("{field_path}/*"), out);
        }
    }
}

/// The dictionary as Markdown.
pub fn markdown(events: &[EventDoc]) -> String {
    let mut md = String::from(
        "# lienthong data dictionary\n\nGenerated by `lienthong schemas docs` from `schemas/`. \
         Classification follows Law 91/2025/QH15 and Decree 356/2025: `public`, `basic` or \
         `sensitive` personal data.\n",
    );
    for event in events {
        let _ = write!(
            md,
            "\n## {}\n\nTopic `{}`. {}\n\n| field | type | required | classification | description | rules |\n|---|---|---|---|---|---|\n",
            event.event_type, event.topic, event.description
        );
        for f in &event.fields {
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} | {} | {} |",
                f.path,
                f.kind.replace('|', "\\|"),
                if f.required { "yes" } else { "no" },
                f.classification,
                f.description.replace('|', "\\|"),
                f.rules.join("; ").replace('|', "\\|")
            );
        }
    }
    md
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The dictionary as one self-contained HTML page.
pub fn html(events: &[EventDoc]) -> String {
    let mut page = String::from(
        "<!doctype html>\n<html lang=\"vi\"><head><meta charset=\"utf-8\"><title>lienthong data dictionary</title>\n\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}\
         td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}th{background:#f3f3f3}\
         .sensitive{color:#a00;font-weight:bold}.basic{color:#a60}code{font-size:90%}</style></head><body>\n\
         <h1>lienthong data dictionary</h1>\n<ul>\n",
    );
    for event in events {
        let _ = writeln!(
            page,
            "<li><a href=\"#{0}\">{0}</a></li>",
            escape(&event.event_type)
        );
    }
    page.push_str("</ul>\n");
    for event in events {
        let _ = write!(
            page,
            "<h2 id=\"{0}\">{0}</h2>\n<p>Topic <code>{1}</code>. {2}</p>\n<table><tr><th>field</th><th>type</th><th>required</th><th>classification</th><th>description</th><th>rules</th></tr>\n",
            escape(&event.event_type),
            escape(&event.topic),
            escape(&event.description)
        );
        for f in &event.fields {
            let _ = writeln!(
                page,
                "<tr><td><code>{path}</code></td><td>{kind}</td><td>{required}</td><td class=\"{class}\">{class}</td><td>{description}</td><td>{rules}</td></tr>",
                path = escape(&f.path),
                kind = escape(&f.kind),
                required = if f.required { "yes" } else { "no" },
                class = escape(&f.classification),
                description = escape(&f.description),
                rules = escape(&f.rules.join("; ")).replace('`', "")
            );
        }
        page.push_str("</table>\n");
    }
    page.push_str("</body></html>\n");
    page
}
