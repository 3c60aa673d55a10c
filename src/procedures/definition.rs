//! What a procedure definition says: the steps of one procedure group, their order (a step
//! starts when every step it comes `after` is done, so steps with the same predecessors run in
//! parallel), the command that asks for it, which event ends it, its deadline in working days
//! and the documents it yields. The groups themselves are data in `birth.rs` and `death.rs`,
//! one readable table each; the engine interprets them.

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
    /// An official asks for a supplement (portal status 5): the dossier waits, with the
    /// citizen's due date, and its appointment waits with it.
    pub supplement_requested: &'static str,
    /// The supplement came: processing resumes (status 4).
    pub supplement_provided: &'static str,
    /// The event that annuls the dossier's registration: every step done is then undone by its
    /// `compensation`, and nothing more is started.
    pub annulled_on: Option<&'static str>,
    /// Working days for the whole group: the appointment given to the citizen.
    pub working_days: u32,
    /// A step that gives the whole group more working days when the dossier includes it.
    pub extended_by: Option<Extension>,
    /// Where the submission holds the date of the life event, and after how many days its
    /// registration counts as late.
    pub event_date: &'static str,
    pub late_after_days: i64,
    /// Where the submission asks for copies of the extract beyond the original (each one
    /// charged, see `crate::domain::fees`); `None`: its form cannot ask for any.
    pub copies: Option<&'static str>,
    pub steps: &'static [StepDef],
    /// Documents issued before their dossier exists, which a submission names.
    pub documents: &'static [DocumentDef],
    /// The event every entitled agency is told once (Tell Us Once), if the group tells one.
    pub told: Option<ToldDef>,
    /// The form's fields national data can fill in, for the hub to count the pre-fill itself.
    pub prefill: Option<PrefillDef>,
}

/// The pre-fill as the hub counts it: the one-stop system asks national data for each person
/// its form names through the hub (the population database's answers come back as `found`
/// events of the dossier), and the engine counts the submitted form's fields that hold what
/// those answers, or a document joined to the dossier, told. It cannot know what the citizen
/// typed; it knows which fields national data that passed through the hub could have filled in
/// and which the form holds as told, and that is what it counts.
#[derive(Debug)]
pub struct PrefillDef {
    /// The population database's answer about one person on the form.
    pub found: &'static str,
    /// Where that answer lists the person's roles on the form (MOTHER, DECLARANT...).
    pub roles: &'static str,
    /// Where that answer gives the person's ID number.
    pub person: &'static str,
    /// Each role, and where the form holds its person's ID number: an answer counts only in
    /// the roles of the person the form names (not for a number mistyped, then corrected).
    pub identities: &'static [(&'static str, &'static str)],
    /// Every field of the form a citizen would otherwise type. A field whose object the
    /// submission leaves out (no father) is not on that dossier's form.
    pub fields: &'static [FormField],
}

/// A field of the form, and where national data holds it (the first source that tells the
/// submitted value counts it).
#[derive(Debug)]
pub struct FormField {
    /// Where the submission holds it.
    pub at: &'static str,
    pub from: &'static [Source],
}

/// Where national data holds a field of the form.
#[derive(Debug)]
pub enum Source {
    /// The person in this role on the form, as the population database told: the role, where
    /// its answer holds the field.
    Person(&'static str, &'static str),
    /// A document joined to the dossier (`DocumentDef::name`), where it holds the field.
    Document(&'static str, &'static str),
}

impl FormField {
    /// Whether the submission's form has this field: its object is there.
    pub fn on_form(&self, submission: &Value) -> bool {
        let parent = self.at.rsplit_once('/').map_or("", |(parent, _)| parent);
        submission.pointer(parent).is_some_and(|v| !v.is_null())
    }
}

/// An event the group tells every agency holding a subscribe right for it: the hub keeps a
/// receipt per agency (handed over, acknowledged), and the dossier lists who has confirmed
/// and who is entitled but has not (`crate::audit::told`). Telling holds no step: an agency
/// that is down learns of it when it comes back, and the dossier shows it waiting.
#[derive(Debug)]
pub struct ToldDef {
    pub event_type: &'static str,
    /// Its topic as the catalogue names it (without the deployment's prefix): a right may be
    /// granted on the whole topic.
    pub topic: &'static str,
}

/// The whole group's working days when the dossier includes `step` (a verification: 5 instead
/// of 3); the acceptance then says `verification_required`.
#[derive(Debug)]
pub struct Extension {
    pub step: &'static str,
    pub working_days: u32,
}

/// A document issued before its dossier (the health facility's birth certificate, the death
/// notice), published keyed by its own number. The engine keeps it until a submission names that
/// number, then joins it to the dossier's timeline, saying whether both tell the same facts;
/// one that comes after the submission is joined at once.
#[derive(Debug)]
pub struct DocumentDef {
    pub event_type: &'static str,
    /// What the timeline calls it.
    pub name: &'static str,
    /// JSON pointer to the document's number in its event.
    pub number: &'static str,
    /// The submission's top-level field naming that number.
    pub named_by: &'static str,
    /// A fact that tells whose document it is: one that differs is another person's document
    /// with the same number (numbers are per issuer), and is not joined.
    pub identity: Option<Fact>,
    /// Facts both should tell: a difference is noted in the timeline, for the official.
    pub facts: &'static [Fact],
}

/// A fact a document and the submission both hold: where each holds it, and what it is (the
/// timeline names it, never its value: the values are personal data).
#[derive(Debug)]
pub struct Fact {
    pub document: &'static str,
    pub submission: &'static str,
    pub what: &'static str,
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
    /// What the hub publishes when the step starts, for the system that does it; `None` where
    /// that system acts on an earlier event itself (civil registration takes the submission).
    pub command: Option<Command>,
    /// The event that says the step is done.
    pub done_on: &'static str,
    /// When the event that ends the step may be another's (one kind of event ends several
    /// steps, or systems outside the procedure publish it too), what makes it this step's.
    pub concerns: Option<Concerns>,
    /// How the step's system says no. A refusal ends the step and every step that needs it,
    /// while the dossier's other branches go on.
    pub refused: Option<Refusal>,
    /// Working days from the step's start (0: the same working day).
    pub working_days: u32,
    /// The portal status the dossier shows while the step runs, when it waits for the citizen
    /// (6: payment requested); back to processing (4) when it ends.
    pub portal_status: Option<u8>,
    /// The documents the step yields, read from its `done_on` event.
    pub results: &'static [ResultDef],
    /// How a step done is undone when the registration is annulled; `None`: it needs no undoing
    /// or no system can undo it through the hub yet.
    pub compensation: Option<Compensation>,
}

/// What makes an event this step's.
#[derive(Debug)]
pub enum Concerns {
    /// It holds this value at this JSON pointer (each benefit decided names its benefit).
    Value(&'static str, &'static str),
    /// It holds, in this top-level field, the key the engine gave the step's command,
    /// [`step_key`]: a payment's idempotency key, so the answer to a payment the one-stop
    /// system asked for itself, for the same dossier, is not taken for the procedure's fee.
    CommandKey(&'static str),
}

/// The key of a step's command, unique per dossier and step.
pub fn step_key(dossier_code: &str, step: &str) -> String {
    format!("{dossier_code}:{step}")
}

impl Concerns {
    fn matches(&self, payload: &Value, dossier_code: &str, step: &str) -> bool {
        match self {
            Self::Value(pointer, value) => {
                payload.pointer(pointer).and_then(Value::as_str) == Some(value)
            }
            Self::CommandKey(field) => {
                payload.get(field).and_then(Value::as_str)
                    == Some(step_key(dossier_code, step).as_str())
            }
        }
    }
}

/// How a step's answer says no.
#[derive(Debug)]
pub enum Refusal {
    /// `done_on` holds `refusal` at the JSON pointer `at` (a human step's `REFUSED`), giving
    /// the reason at `reason` if it gives one.
    Answer {
        at: &'static str,
        refusal: &'static str,
        reason: Option<&'static str>,
    },
    /// An event of its own (a benefit refused), with where it gives the reason.
    Event {
        event: &'static str,
        reason: &'static str,
    },
}

/// What undoes a step: the command that asks for it (built from the inputs, which then hold the
/// annulment under [`ANNULMENT`]; the engine adds `reverts_event_id`, the event that did the
/// step) and the event that says it is undone.
#[derive(Debug)]
pub struct Compensation {
    pub command: Command,
    pub done_on: &'static str,
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
    /// What the submission says decides it (a step the citizen does not choose, but the
    /// dossier's facts call for, such as a household head's consent).
    When(fn(&Value) -> bool),
    /// The dossier is charged a fee (a late registration, copies of the extract): the fee
    /// schedule in the reference data decides.
    Charged,
    /// A late registration (past the group's `late_after_days`) whose submission does not name
    /// this top-level field (the health facility's birth certificate): the officer verifies
    /// the facts before registering.
    LateWithout(&'static str),
}

/// What the engine reads off a submission before it decides its steps.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// Charged a fee (see [`Requested::Charged`]).
    pub charged: bool,
    /// Registered past the group's `late_after_days`.
    pub late: bool,
}

impl Requested {
    /// Whether a dossier with this submission and these facts includes the step.
    pub fn by(&self, submission: &Value, facts: Facts) -> bool {
        match self {
            Self::Always => true,
            Self::Charged => facts.charged,
            Self::LateWithout(field) => {
                facts.late && submission.get(field).is_none_or(Value::is_null)
            }
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
            Self::When(needed) => needed(submission),
        }
    }
}

/// The event that asks a system for a step: it carries exactly what the step needs, so the
/// system acts only for dossiers that include the step, and only once the steps before it are
/// done.
#[derive(Debug)]
pub struct Command {
    pub event_type: &'static str,
    /// The command's own fields, from what the dossier holds; the engine adds `dossier_code`,
    /// `requested_at`, the step's due time as `due_field`, and the step's key where the step
    /// is [`Concerns::CommandKey`].
    pub content: fn(&Inputs) -> Value,
    /// Where the step's due time goes: `due_at`, or a payment request's `expires_at` (the
    /// citizen may pay until the step is due).
    pub due_field: &'static str,
}

/// What a running dossier holds for its commands: the submission and the event that ended each
/// step, as the engine received them (minimised for its purpose). Kept only while the dossier
/// runs.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a>(pub &'a Value);

/// Where the submission is kept among the inputs (no step has this name: steps are upper case).
pub const SUBMISSION: &str = "submission";
/// Where the annulment is kept among the inputs, while the compensations run.
pub const ANNULMENT: &str = "annulment";
/// Where the dossier's charge is kept among the inputs, when it is charged: `fee_lines`,
/// `total_amount_vnd` and `beneficiary_account`, as a payment request names them.
pub const FEES: &str = "fees";

impl Inputs<'_> {
    /// The submission's value at `pointer`; null when it has none.
    pub fn submitted(&self, pointer: &str) -> Value {
        self.at(SUBMISSION, pointer)
    }

    /// True while the dossier's submission is kept: false before it came and once it was
    /// forgotten. Borrows it, where [`Inputs::submitted`] copies.
    pub fn has_submission(&self) -> bool {
        self.0.get(SUBMISSION).is_some_and(|s| !s.is_null())
    }

    /// The dossier's charge at `pointer` (see [`FEES`]); null when it is not charged.
    pub fn charged(&self, pointer: &str) -> Value {
        self.at(FEES, pointer)
    }

    /// The annulment's value at `pointer`; null when it has none.
    pub fn annulment(&self, pointer: &str) -> Value {
        self.at(ANNULMENT, pointer)
    }

    /// The value at `pointer` in the event that ended `step`; null when it has none or the step
    /// is not done (or not in the dossier).
    pub fn result(&self, step: &str, pointer: &str) -> Value {
        self.at(step, pointer)
    }

    /// `fields` of the event that ended `step`, as one object; null when the step did not end
    /// here (not in the dossier: what it registered came before).
    pub fn result_fields(&self, step: &str, fields: &[&str]) -> Value {
        match self.0.get(step) {
            Some(Value::Object(event)) => Value::Object(
                fields
                    .iter()
                    .map(|f| {
                        (
                            (*f).to_owned(),
                            event.get(*f).cloned().unwrap_or(Value::Null),
                        )
                    })
                    .collect(),
            ),
            _ => Value::Null,
        }
    }

    fn at(&self, key: &str, pointer: &str) -> Value {
        self.0
            .get(key)
            .and_then(|v| v.pointer(pointer))
            .cloned()
            .unwrap_or(Value::Null)
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

    /// The step an event of `dossier_code` ends, if it ends one, and whether it ends it with a
    /// refusal.
    pub fn step_done_by(
        &self,
        event_type: &str,
        payload: &Value,
        dossier_code: &str,
    ) -> Option<(&StepDef, bool)> {
        self.steps.iter().find_map(|s| {
            if let Some(concerns) = &s.concerns
                && !concerns.matches(payload, dossier_code, s.name)
            {
                return None;
            }
            match s.refused {
                Some(Refusal::Event { event, .. }) if event == event_type => Some((s, true)),
                Some(Refusal::Answer { at, refusal, .. }) if s.done_on == event_type => Some((
                    s,
                    payload.pointer(at).and_then(Value::as_str) == Some(refusal),
                )),
                _ if s.done_on == event_type => Some((s, false)),
                _ => None,
            }
        })
    }

    /// The document an event type brings, if it brings one.
    pub fn document(&self, event_type: &str) -> Option<&DocumentDef> {
        self.documents.iter().find(|d| d.event_type == event_type)
    }

    /// The steps an event says one of is undone (its `reverts_event_id` tells which).
    pub fn steps_undone_by<'a>(&'a self, event_type: &'a str) -> impl Iterator<Item = &'a StepDef> {
        self.steps.iter().filter(move |s| {
            s.compensation
                .as_ref()
                .is_some_and(|c| c.done_on == event_type)
        })
    }

    /// Every event type the engine takes in for this group.
    pub fn event_types(&self) -> Vec<&'static str> {
        let mut types = vec![
            self.intake,
            self.step_failed,
            self.supplement_requested,
            self.supplement_provided,
        ];
        types.extend(self.steps.iter().map(|s| s.done_on));
        types.extend(self.steps.iter().filter_map(|s| match s.refused {
            Some(Refusal::Event { event, .. }) => Some(event),
            _ => None,
        }));
        types.extend(self.annulled_on);
        types.extend(
            self.steps
                .iter()
                .filter_map(|s| Some(s.compensation.as_ref()?.done_on)),
        );
        types.extend(self.documents.iter().map(|d| d.event_type));
        types.extend(self.prefill.as_ref().map(|p| p.found));
        // Several steps end on one kind of event (each benefit decided): subscribed to once.
        once_each(types)
    }

    /// Every event type the engine publishes for this group.
    pub fn publishes(&self) -> Vec<&'static str> {
        let mut types = vec![self.accepted, self.result, STATUS_CHANGED, STEP_OVERDUE];
        types.extend(
            self.steps
                .iter()
                .filter_map(|s| Some(s.command.as_ref()?.event_type)),
        );
        types.extend(
            self.steps
                .iter()
                .filter_map(|s| Some(s.compensation.as_ref()?.command.event_type)),
        );
        once_each(types)
    }
}

/// `types` in their order, each once.
fn once_each(mut types: Vec<&'static str>) -> Vec<&'static str> {
    let mut seen = std::collections::HashSet::new();
    types.retain(|t| seen.insert(*t));
    types
}

/// The event that mirrors a dossier's status to the national portal.
pub const STATUS_CHANGED: &str = "dossier.status-changed";
/// The event that says a step is past its due time.
pub const STEP_OVERDUE: &str = "dossier.step-overdue";

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use chrono::{DateTime, NaiveDate, Utc};
    use serde_json::Value;

    use super::{Command, Concerns};
    use crate::domain::ReferenceData;
    use crate::procedures::instance::{self, Context};
    use crate::procedures::{GROUPS, PURPOSE};
    use crate::registry::{Catalogue, EventSchema};

    fn schemas() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
    }

    /// The example `<event_type>/<file>` as the engine receives it: minimised for its purpose.
    fn as_the_engine_sees(
        access: &crate::access::AccessCatalogue,
        event_type: &str,
        file: &str,
    ) -> Value {
        let path = schemas().join("examples").join(event_type).join(file);
        let mut payload: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("example")).expect("json");
        access
            .disclosures
            .fields(event_type, PURPOSE)
            .unwrap_or_else(|| panic!("the engine may not receive {event_type}"))
            .apply(&mut payload);
        payload
    }

    fn first_valid(event_type: &str) -> String {
        let mut names: Vec<String> = std::fs::read_dir(schemas().join("examples").join(event_type))
            .expect("examples")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("valid-"))
            .collect();
        names.sort();
        names.into_iter().next().expect("a valid example")
    }

    /// Every command a dossier asking for every step leads to, built from the examples as the
    /// engine sees them, is valid against its own schema: the engine's disclosures cover what
    /// the commands carry, and the commands name it as their schemas do.
    #[test]
    fn every_command_built_from_what_the_engine_sees_is_valid() {
        let catalogue = Catalogue::load(&schemas()).expect("the catalogue loads");
        let access = crate::app::access_catalogue(&schemas(), &catalogue).expect("access");
        let reference = Arc::new(ReferenceData::load(&schemas().join("reference")).expect("data"));
        let now: DateTime<Utc> = "2026-11-20T03:00:00Z".parse().expect("a time");
        let ctx = Context {
            now,
            calendar: reference.calendar(),
            fees: reference.fees(),
            event: None,
        };
        let on = NaiveDate::from_ymd_opt(2026, 11, 23).expect("a date");
        let cases = [
            // The head is a grandparent: the consent step comes in, and its answer goes on; late,
            // and with copies: the fee is asked of the declarant.
            (
                "birth.dossier-submitted",
                "valid-late-with-copies-joins-grandparents.json",
            ),
            (
                "death.dossier-submitted",
                "valid-with-funeral-allowance.json",
            ),
        ];
        let mut checked = Vec::new();
        for (group, (intake, file)) in GROUPS.iter().zip(cases) {
            assert_eq!(group.intake, intake);
            let mut submission = as_the_engine_sees(&access, intake, file);
            if let Some(Value::Object(services)) = submission.get_mut("requested_services") {
                services.values_mut().for_each(|v| *v = Value::Bool(true));
            }
            if submission.get("sub_procedures").is_some() {
                submission["sub_procedures"] = serde_json::json!([
                    "DEATH_REGISTRATION",
                    "RESIDENCE_DELETION",
                    "FUNERAL_ALLOWANCE",
                    "SURVIVOR_BENEFIT",
                    "FUNERAL_SUPPORT"
                ]);
            }
            let (mut dossier, mut out) = instance::open(group, &submission, &ctx).expect("opened");
            for step in group.steps {
                // Benefits decided and not paid yet, so the annulment cancels their decisions.
                if step.name.ends_with("_PAYMENT") {
                    continue;
                }
                let mut done =
                    as_the_engine_sees(&access, step.done_on, &first_valid(step.done_on));
                // The example made this step's (a decision about its own benefit).
                if let Some(Concerns::Value(pointer, value)) = step.concerns {
                    *done.pointer_mut(pointer).expect("the example has it") = value.into();
                }
                let ctx = Context {
                    event: Some(uuid::Uuid::now_v7()),
                    ..ctx
                };
                out.extend(dossier.apply(group, step.done_on, &done, &ctx).1);
            }
            // Then the registration is annulled: the compensations are asked for.
            if let Some(annulled) = group.annulled_on {
                let annulment = as_the_engine_sees(&access, annulled, &first_valid(annulled));
                out.extend(dossier.apply(group, annulled, &annulment, &ctx).1);
            }
            let commands: Vec<&Command> = group
                .steps
                .iter()
                .flat_map(|s| {
                    s.command
                        .iter()
                        .chain(s.compensation.as_ref().map(|c| &c.command))
                })
                .collect();
            let sent: Vec<_> = out
                .iter()
                .filter(|o| commands.iter().any(|c| c.event_type == o.event_type))
                .collect();
            assert_eq!(sent.len(), commands.len(), "each command sent once");
            for command in sent {
                let def = catalogue
                    .events
                    .iter()
                    .find(|e| e.event_type == command.event_type)
                    .expect("in the catalogue");
                let schema = EventSchema::compile(def, reference.clone(), "").expect("compiles");
                let violations = schema.validate(&command.payload, on);
                assert!(
                    violations.is_empty(),
                    "{}: {violations:?}\n{}",
                    command.event_type,
                    command.payload
                );
                checked.push(command.event_type.clone());
            }
        }
        assert_eq!(
            checked,
            [
                "birth.health-insurance-card-requested",
                "birth.id-card-requested",
                "payment.requested",
                "birth.residence-registration-requested",
                "death.population-status-update-requested",
                "death.residence-deletion-requested",
                "death.benefit-decision-requested",
                "death.benefit-decision-requested",
                "death.benefit-payment-requested",
                "death.benefit-payment-requested",
                "death.population-status-revert-requested",
                "death.residence-deletion-revert-requested",
                "death.benefit-decision-cancel-requested",
                "death.benefit-decision-cancel-requested"
            ]
        );
    }

    #[test]
    fn every_step_follows_earlier_steps_and_names_what_the_catalogue_has() {
        let catalogue = Catalogue::load(&schemas()).expect("the catalogue loads");
        let known = |t: &str| catalogue.events.iter().any(|e| e.event_type == t);
        for group in GROUPS {
            for event_type in group.event_types().into_iter().chain(group.publishes()) {
                assert!(
                    known(event_type),
                    "{}: {event_type} is not in the catalogue",
                    group.group
                );
            }
            if let Some(extension) = &group.extended_by {
                assert!(
                    group.step(extension.step).is_some(),
                    "{}: the extension names no step {}",
                    group.group,
                    extension.step
                );
                assert!(extension.working_days > group.working_days);
            }
            if let Some(told) = &group.told {
                assert!(
                    catalogue
                        .events
                        .iter()
                        .any(|e| e.event_type == told.event_type && e.topic == told.topic),
                    "{}: {} is not an event of topic {} in the catalogue",
                    group.group,
                    told.event_type,
                    told.topic
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

    /// The engine routes an event to the group that takes its type in: one group per type
    /// (a fee in the death group would need the payment events told apart by dossier first).
    #[test]
    fn no_event_type_is_taken_in_by_two_groups() {
        let mut seen = std::collections::HashMap::new();
        for group in GROUPS {
            for event_type in group.event_types() {
                if let Some(other) = seen.insert(event_type, group.group) {
                    panic!(
                        "{event_type} is taken in by both {other} and {}",
                        group.group
                    );
                }
            }
        }
    }
}
