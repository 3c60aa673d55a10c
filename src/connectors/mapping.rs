//! Field mapping between an event and an external system's payload, in jq (through the `jaq`
//! crates): the language integration engineers already use for JSON, with a formal
//! definition, and pure, so a mapping can be tested offline from a manifest's test file
//! (`lienthong connectors test`). A program must give exactly one value.

use std::sync::Arc;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Native, Vars, data};
use jaq_json::Val;
use serde_json::Value;

type Filter = jaq_core::compile::Filter<Native<data::JustLut<Val>>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("not a valid jq program: {0}")]
    Compile(String),
    #[error("{0}")]
    Run(String),
}

/// A compiled jq program, cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Mapping {
    source: Arc<str>,
    filter: Arc<Filter>,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Mapping").field(&self.source).finish()
    }
}

impl Mapping {
    pub fn compile(program: &str) -> Result<Self, MappingError> {
        let arena = Arena::default();
        let loader = Loader::new(
            jaq_core::defs()
                .chain(jaq_std::defs())
                .chain(jaq_json::defs()),
        );
        let modules = loader
            .load(
                &arena,
                File {
                    code: program,
                    path: (),
                },
            )
            .map_err(|errors| {
                MappingError::Compile(format!("{} error(s) parsing it: {errors:?}", errors.len()))
            })?;
        let filter = Compiler::default()
            .with_funs(
                jaq_core::funs()
                    .chain(jaq_std::funs())
                    .chain(jaq_json::funs()),
            )
            .compile(modules)
            .map_err(|errors| {
                let names: Vec<String> = errors
                    .iter()
                    .flat_map(|(_, errs)| {
                        errs.iter()
                            .map(|(name, undefined)| format!("{undefined:?} {name}"))
                    })
                    .collect();
                MappingError::Compile(format!("undefined: {}", names.join(", ")))
            })?;
        Ok(Self {
            source: program.into(),
            filter: Arc::new(filter),
        })
    }

    /// Runs the program on `input`; it must give exactly one value.
    pub fn apply(&self, input: &Value) -> Result<Value, MappingError> {
        let input: Val = serde_json::from_value(input.clone())
            .map_err(|e| MappingError::Run(format!("input is not JSON jq can read: {e}")))?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let mut outputs = self.filter.id.run((ctx, input)).map(jaq_core::unwrap_valr);
        let first = match outputs.next() {
            Some(Ok(value)) => value,
            Some(Err(error)) => {
                return Err(MappingError::Run(format!("the program failed: {error}")));
            }
            None => return Err(MappingError::Run("the program gave no value".to_owned())),
        };
        if outputs.next().is_some() {
            return Err(MappingError::Run(
                "the program gave more than one value".to_owned(),
            ));
        }
        serde_json::from_str(&first.to_string())
            .map_err(|e| MappingError::Run(format!("the program's value is not JSON: {e}")))
    }
}

/// What kind of JSON value a program gave, for error messages: never the value itself, which
/// may be personal data and would reach dead letters and logs.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_fields_and_reports_what_goes_wrong() {
        let mapping = Mapping::compile(
            "{code: .event.dossier_code, name: .event.child.full_name | ascii_upcase}",
        )
        .unwrap();
        let out = mapping
            .apply(&json!({"event": {"dossier_code": "X-1", "child": {"full_name": "an"}}}))
            .unwrap();
        assert_eq!(out, json!({"code": "X-1", "name": "AN"}));
        assert!(matches!(
            Mapping::compile("{a: "),
            Err(MappingError::Compile(_))
        ));
        assert!(matches!(
            Mapping::compile("nosuchfunction(1)"),
            Err(MappingError::Compile(_))
        ));
        let many = Mapping::compile(".[]").unwrap();
        assert_eq!(
            many.apply(&json!([1, 2])),
            Err(MappingError::Run(
                "the program gave more than one value".into()
            ))
        );
        let failing = Mapping::compile("error(\"no\")").unwrap();
        assert!(matches!(
            failing.apply(&json!(null)),
            Err(MappingError::Run(_))
        ));
    }
}
