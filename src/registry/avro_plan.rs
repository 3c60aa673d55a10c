//! An Avro schema compiled once into a plan that writes a JSON payload's Avro binary encoding
//! straight into a buffer: no `apache_avro::Value` tree per event, no copy of every string. It
//! follows [`super::avro::json_to_avro`] rule for rule (records in field order with their
//! defaults, enums by symbol, the first union branch that holds the value, `date` from
//! `YYYY-MM-DD`, `timestamp-millis` from RFC 3339), and apache-avro stays the reference: a
//! payload the plan cannot write is handed to it, which then says precisely why, and the tests
//! check that both write the same bytes. Types the catalogue does not use (maps, bytes, fixed,
//! other logical types) are not compiled: a schema holding one is encoded by apache-avro alone.

use apache_avro::Schema;
use chrono::{DateTime, NaiveDate};
use serde_json::Value as Json;

use super::avro::Names;

/// How deep named types may nest; a recursive schema is left to apache-avro.
const MAX_DEPTH: usize = 32;

/// The compiled form of one Avro schema.
#[derive(Debug, Clone)]
pub struct Plan {
    root: Node,
}

#[derive(Debug, Clone)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    String,
    Date,
    TimestampMillis,
    Enum(Vec<String>),
    Array(Box<Node>),
    Record(Vec<Field>),
    Union(Vec<Node>),
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    node: Node,
    default: Option<Json>,
}

/// The payload does not fit the plan: apache-avro is asked, and names the problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unfit;

impl Plan {
    /// The plan for `schema`, or `None` when it holds a type the plan does not write.
    pub fn compile(schema: &Schema, names: &Names) -> Option<Self> {
        Some(Self {
            root: node(schema, names, 0)?,
        })
    }

    /// Appends the Avro binary encoding of `json` to `out`; on [`Unfit`], `out` is as it was.
    pub fn write(&self, json: &Json, out: &mut Vec<u8>) -> Result<(), Unfit> {
        let start = out.len();
        let written = write(&self.root, json, out);
        if written.is_err() {
            out.truncate(start);
        }
        written
    }
}

fn node(schema: &Schema, names: &Names, depth: usize) -> Option<Node> {
    if depth > MAX_DEPTH {
        return None;
    }
    Some(match names.resolve(schema) {
        Schema::Null => Node::Null,
        Schema::Boolean => Node::Boolean,
        Schema::Int => Node::Int,
        Schema::Long => Node::Long,
        Schema::Float => Node::Float,
        Schema::Double => Node::Double,
        Schema::String => Node::String,
        Schema::Date => Node::Date,
        Schema::TimestampMillis => Node::TimestampMillis,
        Schema::Enum(e) => Node::Enum(e.symbols.clone()),
        Schema::Array(a) => Node::Array(Box::new(node(&a.items, names, depth + 1)?)),
        Schema::Record(r) => Node::Record(
            r.fields
                .iter()
                .map(|f| {
                    Some(Field {
                        name: f.name.clone(),
                        node: node(&f.schema, names, depth + 1)?,
                        default: f.default.clone(),
                    })
                })
                .collect::<Option<_>>()?,
        ),
        Schema::Union(u) => Node::Union(
            u.variants()
                .iter()
                .map(|v| node(v, names, depth + 1))
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    })
}

fn write(node: &Node, json: &Json, out: &mut Vec<u8>) -> Result<(), Unfit> {
    match (node, json) {
        (Node::Null, Json::Null) => {}
        (Node::Boolean, Json::Bool(b)) => out.push(u8::from(*b)),
        (Node::Int, Json::Number(n)) => {
            let int = n
                .as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .ok_or(Unfit)?;
            long(i64::from(int), out);
        }
        (Node::Long, Json::Number(n)) => long(n.as_i64().ok_or(Unfit)?, out),
        // As apache-avro: the nearest f32, written little-endian.
        (Node::Float, Json::Number(n)) => {
            out.extend_from_slice(&(n.as_f64().ok_or(Unfit)? as f32).to_le_bytes());
        }
        (Node::Double, Json::Number(n)) => {
            out.extend_from_slice(&n.as_f64().ok_or(Unfit)?.to_le_bytes());
        }
        (Node::String, Json::String(s)) => {
            length(s.len(), out);
            out.extend_from_slice(s.as_bytes());
        }
        (Node::Date, Json::String(s)) => {
            let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| Unfit)?;
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).ok_or(Unfit)?;
            let days = (date - epoch).num_days();
            long(i64::from(i32::try_from(days).map_err(|_| Unfit)?), out);
        }
        (Node::TimestampMillis, Json::String(s)) => {
            let at = DateTime::parse_from_rfc3339(s).map_err(|_| Unfit)?;
            long(at.timestamp_millis(), out);
        }
        (Node::Enum(symbols), Json::String(s)) => {
            let index = symbols.iter().position(|symbol| symbol == s).ok_or(Unfit)?;
            length(index, out);
        }
        (Node::Array(items), Json::Array(values)) => {
            // One block holding every item, then the empty block that ends the array.
            if !values.is_empty() {
                length(values.len(), out);
                for value in values {
                    write(items, value, out)?;
                }
            }
            out.push(0);
        }
        (Node::Record(fields), Json::Object(values)) => {
            for field in fields {
                let value = values
                    .get(&field.name)
                    .or(field.default.as_ref())
                    .ok_or(Unfit)?;
                write(&field.node, value, out)?;
            }
        }
        (Node::Union(branches), _) => {
            // The first branch that holds the value wins, as in `json_to_avro`.
            let start = out.len();
            for (index, branch) in branches.iter().enumerate() {
                length(index, out);
                if write(branch, json, out).is_ok() {
                    return Ok(());
                }
                out.truncate(start);
            }
            return Err(Unfit);
        }
        _ => return Err(Unfit),
    }
    Ok(())
}

/// A count, length or index: a non-negative long.
fn length(n: usize, out: &mut Vec<u8>) {
    long(i64::try_from(n).unwrap_or(i64::MAX), out);
}

/// Avro's long: zig-zag, then little-endian base-128 groups.
fn long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};

    use super::*;
    use crate::registry::avro::json_to_avro;

    fn parsed(text: &str) -> (Schema, Names) {
        let schema = Schema::parse_str(text).expect("a schema");
        let names = Names::of(&schema).expect("names");
        (schema, names)
    }

    fn reference(json: &Json, schema: &Schema, names: &Names) -> Option<Vec<u8>> {
        let value = json_to_avro(json, schema, names).ok()?;
        apache_avro::to_avro_datum(schema, value).ok()
    }

    fn planned(json: &Json, plan: &Plan) -> Option<Vec<u8>> {
        let mut out = vec![0xAA];
        match plan.write(json, &mut out) {
            Ok(()) => Some(out.split_off(1)),
            Err(Unfit) => {
                assert_eq!(out, [0xAA], "nothing left behind");
                None
            }
        }
    }

    #[test]
    fn writes_what_apache_avro_writes_and_refuses_what_it_refuses() {
        let (schema, names) = parsed(
            r#"{"type":"record","name":"R","fields":[
                {"name":"n","type":"int"},
                {"name":"big","type":"long"},
                {"name":"ok","type":"boolean"},
                {"name":"f","type":"float"},
                {"name":"d","type":"double"},
                {"name":"s","type":"string"},
                {"name":"day","type":{"type":"int","logicalType":"date"}},
                {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}},
                {"name":"list","type":{"type":"array","items":"string"}},
                {"name":"p","type":["null",{"type":"record","name":"P","fields":[
                    {"name":"x","type":["null","string"],"default":null}]}],"default":null},
                {"name":"q","type":["null","P"],"default":null},
                {"name":"copies","type":["null","int"],"default":null}
            ]}"#,
        );
        let plan = Plan::compile(&schema, &names).expect("compiled");
        let full = serde_json::json!({
            "n": -300, "big": 9_007_199_254_740_993_i64, "ok": true, "f": 1.5, "d": -0.1,
            "s": "Nguyễn Minh An", "day": "1969-12-31", "at": "2026-11-20T09:15:00.123+07:00",
            "e": "C", "list": ["a", "bb"], "p": {"x": "y"}, "q": {}, "copies": 2
        });
        let mut cases = vec![full.clone()];
        // Defaults for what is left out, an empty array, the other branches of each union.
        let mut sparse = full.clone();
        for key in ["p", "q", "copies"] {
            sparse.as_object_mut().expect("object").remove(key);
        }
        sparse["list"] = serde_json::json!([]);
        cases.push(sparse);
        // Every way of not fitting.
        for (key, bad) in [
            ("n", serde_json::json!(3_000_000_000_i64)),
            ("n", serde_json::json!(1.5)),
            ("e", serde_json::json!("D")),
            ("day", serde_json::json!("2026-02-30")),
            ("at", serde_json::json!("yesterday")),
            ("copies", serde_json::json!("two")),
            ("list", serde_json::json!([1])),
            ("s", serde_json::Value::Null),
        ] {
            let mut case = full.clone();
            case[key] = bad;
            cases.push(case);
        }
        let mut missing = full.clone();
        missing.as_object_mut().expect("object").remove("s");
        cases.push(missing);
        for case in &cases {
            assert_eq!(
                planned(case, &plan),
                reference(case, &schema, &names),
                "{case}"
            );
        }
        assert!(planned(&cases[0], &plan).is_some());
        assert!(planned(&cases[2], &plan).is_none());
    }

    /// A random document `schema` holds: every branch and default of the schema taken
    /// somewhere, strings with any character, dates and instants across centuries and offsets.
    fn generate(schema: &Schema, names: &Names, rng: &mut StdRng) -> Json {
        match names.resolve(schema) {
            Schema::Null => Json::Null,
            Schema::Boolean => Json::Bool(rng.random()),
            Schema::Int => Json::from(rng.random::<i32>() >> rng.random_range(0..32)),
            Schema::Long => Json::from(rng.random::<i64>() >> rng.random_range(0..64)),
            Schema::Float | Schema::Double => Json::from(rng.random_range(-1e9..1e9)),
            Schema::String => Json::String(
                (0..rng.random_range(0..40))
                    .map(|_| match rng.random_range(0..4) {
                        0 => rng.random_range('a'..='z'),
                        1 => rng.random_range('À'..='ỹ'),
                        2 => ['~', '/', '"', '\\', '\n', ' '][rng.random_range(0..6)],
                        _ => rng.random::<char>(),
                    })
                    .collect(),
            ),
            Schema::Date => Json::String(
                (NaiveDate::from_ymd_opt(1900, 1, 1).expect("a date")
                    + chrono::Days::new(rng.random_range(0..73_000)))
                .to_string(),
            ),
            Schema::TimestampMillis => {
                let offset = chrono::FixedOffset::east_opt(rng.random_range(-12..=14) * 3600)
                    .expect("an offset");
                let millis = rng.random_range(-2_000_000_000_000_i64..4_000_000_000_000);
                Json::String(
                    chrono::DateTime::from_timestamp_millis(millis)
                        .expect("an instant")
                        .with_timezone(&offset)
                        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, rng.random()),
                )
            }
            Schema::Enum(e) => {
                Json::String(e.symbols[rng.random_range(0..e.symbols.len())].clone())
            }
            Schema::Array(a) => Json::Array(
                (0..rng.random_range(0..4))
                    .map(|_| generate(&a.items, names, rng))
                    .collect(),
            ),
            Schema::Record(r) => {
                let mut fields = serde_json::Map::new();
                for f in &r.fields {
                    if f.default.is_none() || rng.random_bool(0.7) {
                        fields.insert(f.name.clone(), generate(&f.schema, names, rng));
                    }
                }
                Json::Object(fields)
            }
            Schema::Union(u) => {
                let branches = u.variants();
                generate(&branches[rng.random_range(0..branches.len())], names, rng)
            }
            other => panic!("the catalogue holds {other:?}, which the plan does not write"),
        }
    }

    /// The property the plan rests on, over the whole catalogue: for documents its schemas
    /// hold, generated at random (seeded, so a failure repeats), the plan writes exactly the
    /// bytes apache-avro writes.
    #[test]
    fn for_every_event_type_the_plan_writes_the_bytes_apache_avro_writes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let catalogue = crate::registry::Catalogue::load(&dir).expect("the catalogue loads");
        let mut rng = StdRng::seed_from_u64(20_261_206);
        let mut written = 0;
        for def in &catalogue.events {
            let (schema, names) = parsed(&def.avro_text);
            let plan = Plan::compile(&schema, &names)
                .unwrap_or_else(|| panic!("{}: not compiled", def.event_type));
            for _ in 0..200 {
                let document = generate(&schema, &names, &mut rng);
                let expected = reference(&document, &schema, &names);
                assert!(expected.is_some(), "{}: {document}", def.event_type);
                assert_eq!(
                    planned(&document, &plan),
                    expected,
                    "{}: {document}",
                    def.event_type
                );
                written += 1;
            }
        }
        assert!(written >= 50 * 200, "{written} documents");
    }

    #[test]
    fn a_schema_with_a_type_it_does_not_write_is_left_to_apache_avro() {
        let (schema, names) = parsed(r#"{"type":"map","values":"string"}"#);
        assert!(Plan::compile(&schema, &names).is_none());
        let (schema, names) = parsed(
            r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#,
        );
        assert!(Plan::compile(&schema, &names).is_none(), "recursive");
    }
}
