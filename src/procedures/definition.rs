//! What a procedure definition says: the steps of one procedure group, their order (a step
//! starts when every step it comes `after` is done, so steps with the same predecessors run in
//! parallel), which event ends each, its deadline in working days and the documents it
//! yields. The groups themselves are data in `birth.rs` (and, next, `death.rs`), one readable
//! table each; the engine interprets them.

use serde_json::Value;

/// One procedure group.
#[derive(Debug)]
pub struct Definition {
    /// The group's name in `schemas/reference/procedures.csv` ("birth", "death").
    pub group: &'static str,
    /// The event that opens a dossier of this group.
    pub intake: &'static str,
    /// What the hub publishes when it takes a dossier in.
    pub accepted: &'static str,
    /// What it publishes when every step is done.
    pub result: &'static str,
    /// What a connector publishes when it gives a step up (its `step` names the step).
    pub step_failed: &'static str,
    /// Working days for the whole group: the appointment given to the citizen.
    pub working_days: u32,
    /// Where the submission holds the date of the life event, and after how many days its
    /// registration counts as late.
    pub event_date: &'static str,
    pub late_after_days: i64,
    pub steps: &'static [StepDef],
}

/// One step of a group.
#[derive(Debug)]
pub struct StepDef {
    /// As connectors name it in the group's step-failed event.
    pub name: &'static str,
    /// The steps that must be done before this one starts.
    pub after: &'static [&'static str],
    /// Which dossiers include the step.
    pub requested: Requested,
    /// The event that says the step is done.
    pub done_on: &'static str,
    /// Working days from the step's start (0: the same working day).
    pub working_days: u32,
    /// The documents the step yields, read from its `done_on` event.
    pub results: &'static [ResultDef],
}

/// Which dossiers include a step: what the citizen asked for, read from the submission.
#[derive(Debug)]
pub enum Requested {
    /// Every dossier of the group.
    Always,
    /// A service flag (a JSON pointer) is `true`.
    Flag(&'static str),
    /// A list of choices (a JSON pointer) holds one of these.
    AnyOf(&'static str, &'static [&'static str]),
}

impl Requested {
    pub fn by(&self, submission: &Value) -> bool {
        match self {
            Self::Always => true,
            Self::Flag(pointer) => submission.pointer(pointer) == Some(&Value::Bool(true)),
            Self::AnyOf(pointer, choices) => submission
                .pointer(pointer)
                .and_then(Value::as_array)
                .is_some_and(|chosen| {
                    chosen
                        .iter()
                        .filter_map(Value::as_str)
                        .any(|c| choices.contains(&c))
                }),
        }
    }
}

/// A document a step yields, as `result-returned` lists it.
#[derive(Debug)]
pub struct ResultDef {
    pub result_type: &'static str,
    /// JSON pointers into the step's `done_on` event.
    pub reference: &'static str,
    pub issued_at: &'static str,
}

impl Definition {
    pub fn step(&self, name: &str) -> Option<&StepDef> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The step an event ends, if it ends one.
    pub fn step_done_by(&self, event_type: &str) -> Option<&StepDef> {
        self.steps.iter().find(|s| s.done_on == event_type)
    }

    /// Every event type the engine takes in for this group.
    pub fn event_types(&self) -> Vec<&'static str> {
        let mut types = vec![self.intake, self.step_failed];
        types.extend(self.steps.iter().map(|s| s.done_on));
        types
    }

    /// Every event type the engine publishes for this group.
    pub fn publishes(&self) -> Vec<&'static str> {
        vec![self.accepted, self.result, STATUS_CHANGED, STEP_OVERDUE]
    }
}

/// The event that mirrors a dossier's status to the national portal.
pub const STATUS_CHANGED: &str = "dossier.status-changed";
/// The event that says a step is past its due time.
pub const STEP_OVERDUE: &str = "dossier.step-overdue";

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::procedures::GROUPS;
    use crate::registry::Catalogue;

    #[test]
    fn every_step_follows_earlier_steps_and_names_what_the_catalogue_has() {
        let catalogue = Catalogue::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas"))
            .expect("the catalogue loads");
        let known = |t: &str| catalogue.events.iter().any(|e| e.event_type == t);
        for group in GROUPS {
            for event_type in group.event_types().into_iter().chain(group.publishes()) {
                assert!(
                    known(event_type),
                    "{}: {event_type} is not in the catalogue",
                    group.group
                );
            }
            let failed = std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(format!("schemas/events/{}.schema.json", group.step_failed)),
            )
            .expect("the step-failed schema");
            for (index, step) in group.steps.iter().enumerate() {
                assert!(
                    failed.contains(&format!("\"{}\"", step.name)),
                    "{}: {} is not a step {} can name",
                    group.group,
                    step.name,
                    group.step_failed
                );
                for before in step.after {
                    let position = group.steps.iter().position(|s| s.name == *before);
                    assert!(
                        position.is_some_and(|p| p < index),
                        "{}: {} comes after {before}, which is not an earlier step",
                        group.group,
                        step.name
                    );
                }
            }
        }
    }
}
