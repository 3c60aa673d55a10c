//! One dossier's procedure as a value, and how each event moves it: pure functions of the
//! definition, the instance, the event and the time, so every transition is tested without a
//! database or a broker. The engine loads the instance under the dossier's lock, applies one
//! event, and stores the instance with the events it decided to publish.

use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::definition::{
    ANNULMENT, Command, Concerns, Definition, DocumentDef, FEES, Fact, Facts, Inputs, PrefillDef,
    Refusal, Requested, STATUS_CHANGED, STEP_OVERDUE, SUBMISSION, Source, StepDef, step_key,
};
use crate::domain::fees::{Chargeable, FeeSchedule};
use crate::domain::{WorkingCalendar, vietnam};

/// Who the portal shows as having handled the hub's own transitions.
const HANDLER: &str = "Hệ thống liên thông";
/// Channel the results are returned through: the national portal, where the citizen applied.
const RESULT_CHANNEL: &str = "NATIONAL_PORTAL";

/// The national portal's dossier statuses (TrangThaiHoSo) the engine sets.
pub mod portal {
    pub const NEW: u8 = 1;
    pub const ACCEPTED: u8 = 2;
    pub const PROCESSING: u8 = 4;
    pub const SUPPLEMENT_REQUESTED: u8 = 5;
    pub const PAYMENT_REQUESTED: u8 = 6;
    pub const STOPPED: u8 = 8;
    pub const PROCESSED: u8 = 9;
    pub const RESULT_RETURNED: u8 = 10;

    /// What the portal's progress note says when a step sets status `code` while it waits
    /// for the citizen.
    pub fn waiting_note(code: u8) -> &'static str {
        match code {
            PAYMENT_REQUESTED => "Yêu cầu thanh toán phí, lệ phí",
            SUPPLEMENT_REQUESTED => "Yêu cầu bổ sung hồ sơ",
            _ => "Chờ công dân",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Completed,
    /// The registration was annulled: the steps done are being (or have been) undone.
    Annulled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Annulled => "annulled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "running" => Some(Self::Running),
            "completed" => Some(Self::Completed),
            "annulled" => Some(Self::Annulled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    /// Waiting for the steps it comes after.
    Waiting,
    /// Started: the system that does it has been told (by the event that started it).
    Running,
    Done,
    /// Given up by its connector after every retry: it waits for an operator's replay, whose
    /// success still completes it.
    Failed,
    /// A human step answered no (a household head refusing consent): that branch ends here.
    Refused,
    /// Never started: a step it needs was refused, or the registration was annulled.
    Skipped,
    /// Done, then asked to be undone (the registration annulled): waiting for the answer.
    Undoing,
    /// Done, then undone.
    Undone,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Refused => "refused",
            Self::Skipped => "skipped",
            Self::Undoing => "undoing",
            Self::Undone => "undone",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "waiting" => Some(Self::Waiting),
            "running" => Some(Self::Running),
            "done" => Some(Self::Done),
            "failed" => Some(Self::Failed),
            "refused" => Some(Self::Refused),
            "skipped" => Some(Self::Skipped),
            "undoing" => Some(Self::Undoing),
            "undone" => Some(Self::Undone),
            _ => None,
        }
    }

    /// Started and not yet answered: its due time runs (the deadline watch's states).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Running | Self::Failed | Self::Undoing)
    }

    /// Nothing more will happen to the step (unless the registration is annulled): done, its
    /// branch ended, or undone.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Self::Done | Self::Refused | Self::Skipped | Self::Undone
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub state: StepState,
    pub started_at: Option<DateTime<Utc>>,
    pub due_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub overdue_at: Option<DateTime<Utc>>,
    /// `{result_type, document_reference, issued_at}` objects.
    pub results: Vec<Value>,
    /// The event that did the step, which its compensation names as the one it undoes.
    pub done_event: Option<uuid::Uuid>,
    pub error: Option<String>,
}

impl Step {
    fn waiting(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            state: StepState::Waiting,
            started_at: None,
            due_at: None,
            finished_at: None,
            overdue_at: None,
            results: Vec::new(),
            done_event: None,
            error: None,
        }
    }

    /// A step that cannot be asked for: skipped from the start with the reason, so the
    /// dossier's other branches complete it, and the timeline says what was not done.
    fn not_asked(def: &StepDef, why: &str) -> Self {
        Self {
            state: StepState::Skipped,
            error: Some(why.to_owned()),
            ..Self::waiting(def.name)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub dossier_code: String,
    pub group: String,
    pub procedure_code: String,
    pub state: State,
    pub portal_status: u8,
    pub received_at: DateTime<FixedOffset>,
    pub accepted_at: DateTime<Utc>,
    pub due_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// In the definition's order.
    pub steps: Vec<Step>,
    /// The supplement the dossier waits for, while it waits.
    pub supplement: Option<Supplement>,
    /// How much of the form the one-stop system filled in from national data, as it said.
    pub prefill: Option<Prefill>,
    /// How much of the form holds what national data told through the hub, as the hub counts
    /// it (groups whose definition has a `prefill`).
    pub filled: Option<Filled>,
    /// What the steps' commands are built from: the submission and each finished step's event,
    /// by step name (see [`Inputs`]); emptied when the dossier completes, so the hub keeps
    /// personal data no longer than the procedure needs it.
    pub inputs: Value,
}

/// A supplement asked of the citizen: the dossier waits for it (portal status 5) until the
/// citizen's due time, and its appointment and steps' due times wait with it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Supplement {
    pub requested_at: DateTime<Utc>,
    /// The end of the due date the official gave (17:00, Viet Nam time).
    pub due_at: DateTime<Utc>,
    /// The kinds of item asked for.
    pub items: Vec<String>,
    /// When the hub noticed it past its due time (once).
    pub overdue_at: Option<DateTime<Utc>>,
}

/// Fields of the form filled in from the national databases rather than typed by the citizen
/// (the submission's `prefill`, checked by the rule `vn.prefill.fields`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Prefill {
    pub from_national_data: u32,
    pub fields_on_form: u32,
}

impl Prefill {
    /// Read from a submission; `None` when it says nothing.
    fn of(submission: &Value) -> Option<Self> {
        let prefill = submission.get("prefill")?;
        let fields_on_form = u32::try_from(prefill.get("fields_on_form")?.as_u64()?).ok()?;
        let filled = prefill.get("from_national_data")?.as_array()?.len();
        Some(Self {
            from_national_data: u32::try_from(filled).ok()?,
            fields_on_form,
        })
    }

    /// The share of the form filled in, from 0 to 1.
    pub fn ratio(self) -> f64 {
        f64::from(self.from_national_data) / f64::from(self.fields_on_form.max(1))
    }
}

/// The pre-fill as the hub counts it (the definition's `prefill`): the form's fields that hold what
/// national data told through the hub, by path, and the fields on the dossier's form.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Filled {
    pub fields: Vec<String>,
    pub on_form: u32,
}

impl Filled {
    /// The share of the form filled in, from 0 to 1.
    pub fn ratio(&self) -> f64 {
        let filled = u32::try_from(self.fields.len()).unwrap_or(u32::MAX);
        f64::from(filled) / f64::from(self.on_form.max(1))
    }
}

/// What the overdue announcement names a supplement not provided in time as.
pub const SUPPLEMENT: &str = "SUPPLEMENT";

/// An event the engine decided to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub event_type: String,
    pub payload: Value,
}

/// Why a submission cannot open a procedure (the validator lets none of these through; the
/// engine still refuses rather than guess).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct OpenError {
    pub field: &'static str,
    pub problem: String,
}

/// The time, the calendar, the fees and the event a transition reads.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub now: DateTime<Utc>,
    pub calendar: &'a WorkingCalendar,
    pub fees: &'a FeeSchedule,
    /// The id of the event being applied (`None` where none is: deadlines, tests).
    pub event: Option<uuid::Uuid>,
}

impl Context<'_> {
    /// `working_days` from `from`, as a UTC instant; `None` outside the calendar's years.
    fn due(&self, from: DateTime<FixedOffset>, working_days: u32) -> Option<DateTime<Utc>> {
        self.calendar
            .due(from, working_days)
            .map(|due| due.with_timezone(&Utc))
    }

    fn local_now(&self) -> DateTime<FixedOffset> {
        self.now.with_timezone(&vietnam())
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.with_timezone(&vietnam())
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Why a step was refused, for `dossiers show`: the answer that said no, or the reason the
/// refusing event gives.
fn refusal_note(def: &StepDef, payload: &Value) -> String {
    match def.refused {
        Some(Refusal::Answer {
            refusal, reason, ..
        }) => match reason.and_then(|r| text(payload, r)) {
            Some(reason) => format!("answered {refusal}: {reason}"),
            None => format!("answered {refusal}"),
        },
        Some(Refusal::Event { reason, .. }) => text(payload, reason).map_or_else(
            || "refused".to_owned(),
            |reason| format!("refused: {reason}"),
        ),
        None => "refused".to_owned(),
    }
}

fn text<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// The receiving agency: the dossier code's first part (`G22.99.08` of `G22.99.08-261120-0042`).
fn agency(dossier_code: &str) -> &str {
    dossier_code.split('-').next().unwrap_or(dossier_code)
}

/// The copies of the extract the submission asks for (none where its form cannot ask).
fn copies_asked(definition: &Definition, submission: &Value) -> u32 {
    definition
        .copies
        .and_then(|pointer| submission.pointer(pointer)?.as_u64())
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// Opens the procedure of a submitted dossier: its steps as the citizen asked, its appointment
/// in working days, and the acceptance and first steps announced.
pub fn open(
    definition: &Definition,
    submission: &Value,
    ctx: &Context<'_>,
) -> Result<(Instance, Vec<Outgoing>), OpenError> {
    let required = |field: &'static str| {
        text(submission, &format!("/{field}")).ok_or(OpenError {
            field,
            problem: "is required".to_owned(),
        })
    };
    let dossier_code = required("dossier_code")?.to_owned();
    let procedure_code = required("procedure_code")?.to_owned();
    let received_at =
        DateTime::parse_from_rfc3339(required("received_at")?).map_err(|e| OpenError {
            field: "received_at",
            problem: format!("is not an RFC 3339 time: {e}"),
        })?;
    let received_on = received_at.with_timezone(&vietnam()).date_naive();
    let late_registration = text(submission, definition.event_date)
        .and_then(|date| date.parse::<NaiveDate>().ok())
        .is_some_and(|date| (received_on - date).num_days() > definition.late_after_days);
    let province = text(submission, "/province_code").unwrap_or_default();
    let charge = ctx.fees.charge(Chargeable {
        group: definition.group,
        province,
        on: received_on,
        late: late_registration,
        copies: copies_asked(definition, submission),
    });
    let charged = !charge.lines.is_empty();
    // A fee with no account to collect it into cannot be asked for: its step is skipped from
    // the start, saying why (for the operator to enter the account), rather than the payment
    // platform refusing a request without one or the dossier waiting for ever.
    let uncollectable = (charged && charge.account.is_none()).then(|| {
        format!(
            "no account to collect the fee into: schemas/reference/fee-accounts.csv lists none \
             for province {province:?} on {received_on}"
        )
    });
    let facts = Facts {
        charged,
        late: late_registration,
    };
    let steps: Vec<Step> = definition
        .steps
        .iter()
        .filter(|step| step.requested.by(submission, facts))
        .map(|step| match &uncollectable {
            Some(why) if matches!(step.requested, Requested::Charged) => Step::not_asked(step, why),
            _ => Step::waiting(step.name),
        })
        .collect();
    let mut inputs = serde_json::Map::new();
    inputs.insert(SUBMISSION.to_owned(), submission.clone());
    if charged {
        inputs.insert(
            FEES.to_owned(),
            json!({
                "fee_lines": charge.lines,
                "total_amount_vnd": charge.total_vnd(),
                "beneficiary_account": charge.account,
            }),
        );
    }
    let extension = definition
        .extended_by
        .as_ref()
        .filter(|e| steps.iter().any(|s| s.name == e.step));
    let working_days = extension.map_or(definition.working_days, |e| e.working_days);
    let mut instance = Instance {
        due_at: ctx.due(received_at, working_days),
        dossier_code,
        group: definition.group.to_owned(),
        procedure_code,
        state: State::Running,
        portal_status: portal::NEW,
        received_at,
        accepted_at: ctx.now,
        completed_at: None,
        steps,
        supplement: None,
        prefill: Prefill::of(submission),
        filled: definition.prefill.as_ref().map(|p| Filled {
            fields: Vec::new(),
            on_form: u32::try_from(p.fields.iter().filter(|f| f.on_form(submission)).count())
                .unwrap_or(u32::MAX),
        }),
        inputs: Value::Object(inputs),
    };
    let accepted = Outgoing {
        event_type: definition.accepted.to_owned(),
        payload: json!({
            "dossier_code": instance.dossier_code,
            "procedure_code": instance.procedure_code,
            "accepted_at": timestamp(ctx.now),
            "receiving_agency_code": agency(&instance.dossier_code),
            // The appointment; a year the calendar does not cover gets the day itself, flagged
            // by the missing due time in the dossier's status.
            "appointment_at": timestamp(instance.due_at.unwrap_or(ctx.now)),
            "verification_required": extension.is_some(),
            "late_registration": late_registration,
        }),
    };
    let mut out = vec![accepted];
    out.push(instance.status(portal::ACCEPTED, ctx, "Tiếp nhận hồ sơ liên thông"));
    out.push(instance.status(portal::PROCESSING, ctx, "Chuyển xử lý"));
    out.extend(instance.start_ready(definition, ctx));
    Ok((instance, out))
}

/// What taking an event in did, for the dossier's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    StepDone(String),
    /// A human step answered no; the steps that needed it will not be done.
    StepRefused(String, Vec<String>),
    StepFailed(String),
    /// The event ends a step the dossier does not have (a service not asked for).
    NotInDossier(String),
    /// The step was already done (or refused, or skipped): a second answer changes nothing.
    AlreadyDone(String),
    /// A failure reported after the step ended (done, refused, skipped or undone: a late dead
    /// letter).
    FailureAfterDone(String),
    /// The registration was annulled: these steps are being undone, those not done skipped.
    Annulled {
        undoing: Vec<String>,
        skipped: Vec<String>,
    },
    /// A step done after the annulment: it is undone at once.
    DoneAfterAnnulment(String),
    /// A step undone.
    StepUndone(String),
    /// An undo nobody asked for (another event's, or a repeat).
    UndoNotAsked(String),
    /// The dossier is annulled already.
    AlreadyAnnulled,
    /// A supplement asked for, due at the given time.
    SupplementRequested(String),
    /// The supplement came; processing resumes.
    SupplementProvided,
    /// A supplement event that changes nothing (one already asked for, none asked, or the
    /// dossier no longer running): the reason.
    SupplementIgnored(&'static str),
    /// A document issued before the dossier joined it: its name, and the facts on which it
    /// differs from the submission with the form's fields that hold what it told (`None`:
    /// nothing to compare with, the dossier's submission forgotten once it completed).
    DocumentJoined(&'static str, Option<(Vec<&'static str>, usize)>),
    /// The population database's answer about a person on the form (their roles): how many
    /// more of the form's fields hold what it told (`None`: the dossier's submission was
    /// forgotten once it completed, nothing compared).
    Prefilled(Vec<String>, Option<usize>),
    /// An answer for the pre-fill not counted, and why.
    PrefillNotCounted(&'static str),
    /// The event is not one this group takes.
    Unrelated,
}

impl Effect {
    pub fn describe(&self) -> String {
        match self {
            Self::StepDone(step) => format!("{step} done"),
            Self::StepRefused(step, skipped) if skipped.is_empty() => format!("{step} refused"),
            Self::StepRefused(step, skipped) => {
                format!("{step} refused; not done: {}", skipped.join(", "))
            }
            Self::StepFailed(step) => format!("{step} failed"),
            Self::NotInDossier(step) => format!("{step} is not part of this dossier; ignored"),
            Self::AlreadyDone(step) => format!("{step} had already ended; ignored"),
            Self::Annulled { undoing, skipped } => format!(
                "registration annulled; undoing: {}; not done: {}",
                list(undoing),
                list(skipped)
            ),
            Self::DoneAfterAnnulment(step) => {
                format!("{step} done after the annulment; undoing it")
            }
            Self::StepUndone(step) => format!("{step} undone"),
            Self::UndoNotAsked(step) => {
                format!("an undo of {step} that was not asked for (or came before); ignored")
            }
            Self::AlreadyAnnulled => "the registration was annulled already; ignored".to_owned(),
            Self::SupplementRequested(due) => format!("supplement requested, due {due}"),
            Self::SupplementProvided => "supplement provided; processing resumes".to_owned(),
            Self::SupplementIgnored(why) => format!("{why}; ignored"),
            Self::FailureAfterDone(step) => {
                format!("a failure of {step} after it ended; ignored")
            }
            Self::DocumentJoined(name, None) => {
                format!("{name} joined; the dossier has ended, nothing compared")
            }
            Self::DocumentJoined(name, Some((differing, filled))) => {
                let compared = if differing.is_empty() {
                    format!("{name} joined; it tells what the submission tells")
                } else {
                    format!(
                        "{name} joined; it differs from the submission on {}: for the official \
                         to check",
                        differing.join(", ")
                    )
                };
                match filled {
                    0 => compared,
                    n => format!("{compared}; {n} more field(s) of the form hold what it told"),
                }
            }
            Self::Prefilled(roles, None) => format!(
                "the population database's answer about the {}; the dossier has ended, nothing \
                 compared",
                roles.join(" and ")
            ),
            Self::Prefilled(roles, Some(fields)) => format!(
                "the population database's answer about the {}: {fields} more field(s) of the \
                 form hold what it told",
                roles.join(" and ")
            ),
            Self::PrefillNotCounted(why) => format!("a pre-fill answer not counted: {why}"),
            Self::Unrelated => "not an event of this procedure; ignored".to_owned(),
        }
    }
}

fn list(steps: &[String]) -> String {
    if steps.is_empty() {
        "none".to_owned()
    } else {
        steps.join(", ")
    }
}

impl Instance {
    fn step_mut(&mut self, name: &str) -> Option<&mut Step> {
        self.steps.iter_mut().find(|s| s.name == name)
    }

    /// Whether the steps after `name` may start: it is done (or not in the dossier), and so is
    /// every step it comes after, however the answers arrived (a registration reported before
    /// the verification it follows still waits for that verification's outcome).
    fn stands(&self, definition: &Definition, name: &str) -> bool {
        let Some(step) = self.steps.iter().find(|s| s.name == name) else {
            return true;
        };
        step.state == StepState::Done
            && definition
                .step(name)
                .is_none_or(|def| def.after.iter().all(|b| self.stands(definition, b)))
    }

    /// Moves the portal status to `to` and announces it.
    fn status(&mut self, to: u8, ctx: &Context<'_>, note: &str) -> Outgoing {
        let from = self.portal_status;
        self.portal_status = to;
        Outgoing {
            event_type: STATUS_CHANGED.to_owned(),
            payload: json!({
                "dossier_code": self.dossier_code,
                "procedure_code": self.procedure_code,
                "from_status": from,
                "to_status": to,
                "changed_at": timestamp(ctx.now),
                "handler": HANDLER,
                "department": agency(&self.dossier_code),
                "note": note,
                "due_at": self.due_at.map(timestamp),
            }),
        }
    }

    /// Starts every waiting step whose predecessors are done (or not part of the dossier), and
    /// returns the commands that ask for them. A step whose failure came before its
    /// predecessors were done (replies from different systems overtake one another) stays
    /// failed, and gets its due time (and its command) now.
    fn start_ready(&mut self, definition: &Definition, ctx: &Context<'_>) -> Vec<Outgoing> {
        let ready: Vec<(usize, &StepDef)> = self
            .steps
            .iter()
            .enumerate()
            .filter(|(_, step)| {
                step.state == StepState::Waiting
                    || (step.state == StepState::Failed && step.due_at.is_none())
            })
            .filter_map(|(index, step)| definition.step(&step.name).map(|def| (index, def)))
            .filter(|(_, def)| {
                def.after
                    .iter()
                    .all(|before| self.stands(definition, before))
            })
            .collect();
        let mut commands = Vec::new();
        for (index, def) in ready {
            let step = &mut self.steps[index];
            if step.state == StepState::Waiting {
                step.state = StepState::Running;
            }
            step.started_at = Some(ctx.now);
            step.due_at = ctx.due(ctx.local_now(), def.working_days);
            let due_at = step.due_at;
            if let Some(command) = &def.command {
                commands.push(self.command(def, command, due_at, ctx));
            }
            if let Some(waiting) = def.portal_status
                && self.portal_status == portal::PROCESSING
            {
                commands.push(self.status(waiting, ctx, portal::waiting_note(waiting)));
            }
        }
        commands
    }

    /// Step `def` ended: when the portal showed the dossier waiting for the citizen on it, and
    /// no other running step keeps it so, processing resumes (status 4).
    fn resume_after(
        &mut self,
        definition: &Definition,
        def: &StepDef,
        ctx: &Context<'_>,
    ) -> Option<Outgoing> {
        let waiting = def.portal_status?;
        let still_waiting = self.waiting_on_citizen(definition, Some(def.name)) == Some(waiting);
        (self.portal_status == waiting && !still_waiting)
            .then(|| self.status(portal::PROCESSING, ctx, "Tiếp tục xử lý"))
    }

    /// The portal status a running step other than `except` holds the dossier at, waiting for
    /// the citizen (6 while a fee is unpaid), if one does.
    fn waiting_on_citizen(&self, definition: &Definition, except: Option<&str>) -> Option<u8> {
        self.steps
            .iter()
            .filter(|step| step.state == StepState::Running && Some(step.name.as_str()) != except)
            .find_map(|step| definition.step(&step.name)?.portal_status)
    }

    /// `command` of step `def` for this dossier, asked now, due at `due_at`.
    fn command(
        &self,
        def: &StepDef,
        command: &Command,
        due_at: Option<DateTime<Utc>>,
        ctx: &Context<'_>,
    ) -> Outgoing {
        let mut payload = (command.content)(&Inputs(&self.inputs));
        if let Value::Object(fields) = &mut payload {
            fields.insert("dossier_code".to_owned(), json!(self.dossier_code));
            fields.insert("requested_at".to_owned(), json!(timestamp(ctx.now)));
            fields.insert(command.due_field.to_owned(), json!(due_at.map(timestamp)));
            if let Some(Concerns::CommandKey(field)) = def.concerns {
                fields.insert(
                    field.to_owned(),
                    json!(step_key(&self.dossier_code, def.name)),
                );
            }
        }
        Outgoing {
            event_type: command.event_type.to_owned(),
            payload,
        }
    }

    /// The registration is annulled: every step done that has a compensation is undone, every
    /// step not done is skipped, and nothing more starts.
    fn annul(
        &mut self,
        definition: &Definition,
        payload: &Value,
        ctx: &Context<'_>,
    ) -> (Effect, Vec<Outgoing>) {
        if self.state == State::Annulled {
            return (Effect::AlreadyAnnulled, Vec::new());
        }
        self.state = State::Annulled;
        self.keep(ANNULMENT, payload);
        let (mut undoing, mut skipped, mut out) = (Vec::new(), Vec::new(), Vec::new());
        for index in 0..self.steps.len() {
            let state = self.steps[index].state;
            if state == StepState::Done {
                if let Some(later) = self.done_for_good_after(definition, index) {
                    // A benefit paid: its decision stands, and getting the money back is a
                    // procedure of its own, not an undo the hub can ask for.
                    self.steps[index].error = Some(format!("kept: {later} was done for good"));
                    continue;
                }
                if let Some(command) = self.undo(definition, index, ctx) {
                    undoing.push(self.steps[index].name.clone());
                    out.push(command);
                }
            } else if !state.is_settled() {
                let step = &mut self.steps[index];
                step.state = StepState::Skipped;
                step.error = Some("not done: the registration was annulled".to_owned());
                skipped.push(step.name.clone());
            }
        }
        self.forget_if_undone();
        // The citizen sees processing stop on the portal; a dossier processed already (9, 10)
        // has no status to go to (the portal's state machine ends there), and its result
        // stands there as returned.
        if matches!(
            self.portal_status,
            portal::PROCESSING | portal::SUPPLEMENT_REQUESTED | portal::PAYMENT_REQUESTED
        ) {
            out.push(self.status(portal::STOPPED, ctx, "Dừng xử lý: đăng ký hộ tịch bị hủy"));
        }
        (Effect::Annulled { undoing, skipped }, out)
    }

    /// A step done that needs step `index` (which can be undone) and that nothing undoes (a
    /// payment made): while it stands, so does step `index`.
    fn done_for_good_after(&self, definition: &Definition, index: usize) -> Option<String> {
        let name = &self.steps[index].name;
        definition.step(name)?.compensation.as_ref()?;
        self.steps
            .iter()
            .filter(|s| s.state == StepState::Done)
            .find(|s| {
                definition.step(&s.name).is_some_and(|def| {
                    def.after.contains(&name.as_str()) && def.compensation.is_none()
                })
            })
            .map(|s| s.name.clone())
    }

    /// Asks for step `index` (done) to be undone, if its definition says how.
    fn undo(
        &mut self,
        definition: &Definition,
        index: usize,
        ctx: &Context<'_>,
    ) -> Option<Outgoing> {
        let def = definition.step(&self.steps[index].name)?;
        let compensation = def.compensation.as_ref()?;
        let due_at = ctx.due(ctx.local_now(), def.working_days);
        let reverts = self.steps[index].done_event;
        let step = &mut self.steps[index];
        step.state = StepState::Undoing;
        step.due_at = due_at;
        step.overdue_at = None;
        let mut undo = self.command(def, &compensation.command, due_at, ctx);
        if let Value::Object(fields) = &mut undo.payload {
            // Null when the step's event is not known (a step done before the engine kept it):
            // the command is then refused by its schema and set aside, visibly, rather than
            // undoing the wrong thing.
            fields.insert(
                "reverts_event_id".to_owned(),
                json!(reverts.map(|id| id.to_string())),
            );
        }
        Some(undo)
    }

    /// Whether `document` is this dossier's, by its identity fact: `Some(false)` when the
    /// submission holds that fact and the document another (another person's document with the
    /// same number), `Some(true)` when both hold the same, `None` when nothing tells (a
    /// submission forgotten once its dossier ended, a fact one of them lacks).
    pub fn owns(&self, document: &DocumentDef, payload: &Value) -> Option<bool> {
        match &document.identity {
            Some(fact) => self.differs(fact, payload).map(|differs| !differs),
            None => Some(true),
        }
    }

    /// Does the document tell another value of `fact` than the submission? `None` when either
    /// does not tell it (or the submission is forgotten).
    fn differs(&self, fact: &Fact, payload: &Value) -> Option<bool> {
        let submitted = Inputs(&self.inputs).submitted(fact.submission);
        let told = payload.pointer(fact.document)?;
        (!submitted.is_null() && !told.is_null()).then(|| submitted != *told)
    }

    /// Counts the form's fields that hold what `tells` says national data holds for a source;
    /// `None` when there is nothing to count in or compare with.
    fn fill<'p>(
        &mut self,
        prefill: &PrefillDef,
        tells: impl Fn(&Source) -> Option<&'p Value>,
    ) -> Option<usize> {
        let inputs = Inputs(&self.inputs);
        if !inputs.has_submission() {
            return None;
        }
        let filled = self.filled.as_mut()?;
        let before = filled.fields.len();
        for field in prefill.fields {
            if filled.fields.iter().any(|f| f == field.at) {
                continue;
            }
            let submitted = inputs.submitted(field.at);
            if !submitted.is_null() && field.from.iter().any(|s| tells(s) == Some(&submitted)) {
                filled.fields.push(field.at.to_owned());
            }
        }
        Some(filled.fields.len() - before)
    }

    /// The population database's answer about a person on the form, counted in the pre-fill.
    fn prefilled(&mut self, prefill: &PrefillDef, payload: &Value) -> Effect {
        let roles: Vec<String> = payload
            .pointer(prefill.roles)
            .and_then(Value::as_array)
            .map(|roles| {
                roles
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if self.filled.is_none() {
            return Effect::PrefillNotCounted(
                "the dossier was opened before the hub counted pre-fills",
            );
        }
        // Only in the roles of the person the form names: the answer about a number typed
        // wrongly, then corrected, fills nothing in.
        let person = payload.pointer(prefill.person);
        let inputs = Inputs(&self.inputs);
        let named: Vec<&str> = prefill
            .identities
            .iter()
            .filter(|(role, at)| {
                roles.iter().any(|r| r == role)
                    && person.is_some_and(|id| *id == inputs.submitted(at))
            })
            .map(|(role, _)| *role)
            .collect();
        let added = self.fill(prefill, |source| match source {
            Source::Person(role, at) if named.contains(role) => payload.pointer(at),
            _ => None,
        });
        Effect::Prefilled(roles, added)
    }

    /// Joins a document to the dossier: what it is, and on which facts it differs. What it
    /// tells counts in the pre-fill.
    fn join(&mut self, definition: &Definition, document: &DocumentDef, payload: &Value) -> Effect {
        if !Inputs(&self.inputs).has_submission() {
            return Effect::DocumentJoined(document.name, None);
        }
        // Another person's document (joined because it came with the dossier's code) fills
        // nothing in.
        let ours = document
            .identity
            .as_ref()
            .is_none_or(|fact| self.differs(fact, payload) != Some(true));
        let filled = match &definition.prefill {
            Some(prefill) if ours => self
                .fill(prefill, |source| match source {
                    Source::Document(name, at) if *name == document.name => payload.pointer(at),
                    _ => None,
                })
                .unwrap_or(0),
            _ => 0,
        };
        // The identity too: a document sent with a dossier code is joined without the owner's
        // check, and another person's must then say so.
        let differing = document
            .identity
            .iter()
            .chain(document.facts)
            .filter(|fact| self.differs(fact, payload) == Some(true))
            .map(|fact| fact.what)
            .collect();
        Effect::DocumentJoined(document.name, Some((differing, filled)))
    }

    /// Keeps `value` among the inputs the commands are built from.
    fn keep(&mut self, key: &str, value: &Value) {
        if !self.inputs.is_object() {
            self.inputs = json!({});
        }
        if let Value::Object(inputs) = &mut self.inputs {
            inputs.insert(key.to_owned(), value.clone());
        }
    }

    /// Once nothing is being undone, nor can still answer (a step asked for before the
    /// annulment and skipped since may yet be done, and is then undone at once), what the
    /// compensations are built from is forgotten.
    fn forget_if_undone(&mut self) {
        let may_answer = |s: &Step| {
            s.state == StepState::Undoing
                || (s.state == StepState::Skipped && s.started_at.is_some())
        };
        if !self.steps.iter().any(may_answer) {
            self.inputs = json!({});
        }
    }

    /// Takes in one event of the dossier (never the submission: [`open`] takes that).
    pub fn apply(
        &mut self,
        definition: &Definition,
        event_type: &str,
        payload: &Value,
        ctx: &Context<'_>,
    ) -> (Effect, Vec<Outgoing>) {
        if event_type == definition.step_failed {
            return (self.fail(payload, ctx), Vec::new());
        }
        if definition.annulled_on == Some(event_type) {
            return self.annul(definition, payload, ctx);
        }
        if event_type == definition.supplement_requested {
            return self.ask_supplement(payload, ctx);
        }
        if event_type == definition.supplement_provided {
            return self.supplemented(definition, ctx);
        }
        if let Some(document) = definition.document(event_type) {
            return (self.join(definition, document, payload), Vec::new());
        }
        if let Some(prefill) = definition
            .prefill
            .as_ref()
            .filter(|p| p.found == event_type)
        {
            return (self.prefilled(prefill, payload), Vec::new());
        }
        let undoable: Vec<&str> = definition
            .steps_undone_by(event_type)
            .map(|def| def.name)
            .collect();
        if let Some(first) = undoable.first() {
            let reverts = text(payload, "/reverts_event_id");
            let asked = self.steps.iter_mut().find(|step| {
                undoable.contains(&step.name.as_str())
                    && step.state == StepState::Undoing
                    && step.done_event.map(|id| id.to_string()).as_deref() == reverts
            });
            if let Some(step) = asked {
                step.state = StepState::Undone;
                step.finished_at = Some(ctx.now);
                let name = step.name.clone();
                self.forget_if_undone();
                return (Effect::StepUndone(name), Vec::new());
            }
            let in_dossier = self
                .steps
                .iter()
                .find(|step| undoable.contains(&step.name.as_str()));
            return match in_dossier {
                Some(step) => (Effect::UndoNotAsked(step.name.clone()), Vec::new()),
                None => (Effect::NotInDossier((*first).to_owned()), Vec::new()),
            };
        }
        let Some((def, refused)) = definition.step_done_by(event_type, payload, &self.dossier_code)
        else {
            return (Effect::Unrelated, Vec::new());
        };
        if self.state == State::Annulled {
            return self.done_after_annulment(definition, def, refused, payload, ctx);
        }
        let Some(step) = self.step_mut(def.name) else {
            return (Effect::NotInDossier(def.name.to_owned()), Vec::new());
        };
        if step.state.is_settled() {
            return (Effect::AlreadyDone(def.name.to_owned()), Vec::new());
        }
        step.started_at.get_or_insert(ctx.now);
        step.finished_at = Some(ctx.now);
        if refused {
            step.state = StepState::Refused;
            step.error = Some(refusal_note(def, payload));
            let skipped = self.skip_after(definition, def.name);
            let effect = Effect::StepRefused(def.name.to_owned(), skipped);
            let mut out: Vec<Outgoing> = self
                .resume_after(definition, def, ctx)
                .into_iter()
                .collect();
            out.extend(self.complete_if_settled(definition, ctx));
            return (effect, out);
        }
        step.state = StepState::Done;
        step.done_event = ctx.event;
        step.error = None;
        step.results = def
            .results
            .iter()
            .filter_map(|result| {
                let reference = text(payload, result.reference)?;
                let issued_at = text(payload, result.issued_at)?;
                Some(json!({
                    "result_type": result.result_type,
                    "document_reference": reference,
                    "issued_at": issued_at,
                }))
            })
            .collect();
        let effect = Effect::StepDone(def.name.to_owned());
        self.keep(def.name, payload);
        let mut out: Vec<Outgoing> = self
            .resume_after(definition, def, ctx)
            .into_iter()
            .collect();
        out.extend(self.start_ready(definition, ctx));
        out.extend(self.complete_if_settled(definition, ctx));
        (effect, out)
    }

    /// A step's answer after the annulment (its system acted before it heard): a refusal is
    /// recorded, and leaves nothing to undo; a step done is undone at once when it can be,
    /// otherwise recorded as done, and then what it rests on stands too (a payment made keeps
    /// its decision, whose cancellation could only fail).
    fn done_after_annulment(
        &mut self,
        definition: &Definition,
        def: &StepDef,
        refused: bool,
        payload: &Value,
        ctx: &Context<'_>,
    ) -> (Effect, Vec<Outgoing>) {
        let Some(index) = self.steps.iter().position(|s| s.name == def.name) else {
            return (Effect::NotInDossier(def.name.to_owned()), Vec::new());
        };
        if matches!(
            self.steps[index].state,
            StepState::Done | StepState::Undoing | StepState::Undone | StepState::Refused
        ) {
            return (Effect::AlreadyDone(def.name.to_owned()), Vec::new());
        }
        let effect = Effect::DoneAfterAnnulment(def.name.to_owned());
        let step = &mut self.steps[index];
        step.done_event = ctx.event;
        step.finished_at = Some(ctx.now);
        if refused {
            step.state = StepState::Refused;
            step.error = Some(refusal_note(def, payload));
            self.forget_if_undone();
            return (effect, Vec::new());
        }
        step.state = StepState::Done;
        step.error = None;
        if def.compensation.is_none() {
            for step in &mut self.steps {
                if def.after.contains(&step.name.as_str()) && step.state == StepState::Undoing {
                    step.state = StepState::Done;
                    step.error = Some(format!("kept: {} was done for good", def.name));
                }
            }
            self.forget_if_undone();
            return (effect, Vec::new());
        }
        // What the undo is built from.
        self.keep(def.name, payload);
        let out: Vec<Outgoing> = self.undo(definition, index, ctx).into_iter().collect();
        (effect, out)
    }

    /// Skips every step that needs `refused` (directly or through another), as long as it has
    /// not started; their names.
    fn skip_after(&mut self, definition: &Definition, refused: &str) -> Vec<String> {
        let mut ended = vec![refused.to_owned()];
        let mut skipped = Vec::new();
        // Definitions list a step after the steps it needs, so one pass in order suffices.
        for step in &mut self.steps {
            let needs_ended = definition
                .step(&step.name)
                .is_some_and(|def| def.after.iter().any(|a| ended.iter().any(|e| e == a)));
            let not_started = step.state == StepState::Waiting
                || (step.state == StepState::Failed && step.due_at.is_none());
            if needs_ended && not_started {
                step.state = StepState::Skipped;
                step.error = Some(format!("not done: {refused} was refused"));
                ended.push(step.name.clone());
                skipped.push(step.name.clone());
            } else if needs_ended && step.state == StepState::Done {
                // Answered before what it follows (a registration reported before the
                // verification it needed was refused): it stands, as its system did it, and
                // nothing after it starts.
                ended.push(step.name.clone());
            }
        }
        skipped
    }

    /// An official asks for a supplement: the dossier shows status 5 and waits, visibly, until
    /// the citizen's due date.
    fn ask_supplement(&mut self, payload: &Value, ctx: &Context<'_>) -> (Effect, Vec<Outgoing>) {
        if self.state != State::Running {
            return (
                Effect::SupplementIgnored("the dossier is no longer running"),
                Vec::new(),
            );
        }
        if self.supplement.is_some() {
            return (
                Effect::SupplementIgnored("a supplement is awaited already"),
                Vec::new(),
            );
        }
        let Some(due_on) = text(payload, "/due_date").and_then(|d| d.parse::<NaiveDate>().ok())
        else {
            return (Effect::SupplementIgnored("no due date"), Vec::new());
        };
        let due_at = due_on
            .and_hms_opt(17, 0, 0)
            .and_then(|t| t.and_local_timezone(vietnam()).single())
            .map_or(ctx.now, |t| t.with_timezone(&Utc));
        let items = payload
            .pointer("/missing_items")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| text(i, "/item_type").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        self.supplement = Some(Supplement {
            requested_at: ctx.now,
            due_at,
            items,
            overdue_at: None,
        });
        let mut out = Vec::new();
        // The portal goes to 5 only from processing: a dossier awaiting a payment (6) passes
        // through 4, and shows 6 again once the supplement comes (see `supplemented`).
        if self.portal_status != portal::PROCESSING {
            out.push(self.status(portal::PROCESSING, ctx, "Tiếp tục xử lý"));
        }
        out.push(self.status(portal::SUPPLEMENT_REQUESTED, ctx, "Yêu cầu bổ sung hồ sơ"));
        (Effect::SupplementRequested(timestamp(due_at)), out)
    }

    /// The supplement came: the appointment and the running steps' due times move on by the
    /// time the dossier waited (in calendar time: the citizen's wait is not the agency's), and
    /// processing resumes at status 4.
    fn supplemented(
        &mut self,
        definition: &Definition,
        ctx: &Context<'_>,
    ) -> (Effect, Vec<Outgoing>) {
        let Some(supplement) = self.supplement.take() else {
            return (
                Effect::SupplementIgnored("no supplement was awaited"),
                Vec::new(),
            );
        };
        let waited = ctx.now - supplement.requested_at;
        self.due_at = self.due_at.map(|due| due + waited);
        for step in &mut self.steps {
            let open = step.state.is_open();
            if open && step.overdue_at.is_none() {
                step.due_at = step.due_at.map(|due| due + waited);
            }
        }
        let mut out = vec![self.status(portal::PROCESSING, ctx, "Đã bổ sung, tiếp tục xử lý")];
        if let Some(waiting) = self.waiting_on_citizen(definition, None) {
            out.push(self.status(waiting, ctx, portal::waiting_note(waiting)));
        }
        out.extend(self.complete_if_settled(definition, ctx));
        (Effect::SupplementProvided, out)
    }

    /// Every step settled: the results go back to the citizen.
    fn complete_if_settled(&mut self, definition: &Definition, ctx: &Context<'_>) -> Vec<Outgoing> {
        // While a supplement is awaited the dossier stays at status 5; it completes when the
        // supplement comes.
        if self.state == State::Running
            && self.supplement.is_none()
            && self.steps.iter().all(|s| s.state.is_settled())
        {
            self.complete(definition, ctx)
        } else {
            Vec::new()
        }
    }

    fn fail(&mut self, payload: &Value, ctx: &Context<'_>) -> Effect {
        let Some(name) = text(payload, "/step") else {
            return Effect::Unrelated;
        };
        let error = format!(
            "{} from {}: {}",
            text(payload, "/error_code").unwrap_or("ERROR"),
            text(payload, "/target_system").unwrap_or("?"),
            text(payload, "/message").unwrap_or("")
        );
        let Some(step) = self.step_mut(name) else {
            return Effect::NotInDossier(name.to_owned());
        };
        if step.state.is_settled() {
            return Effect::FailureAfterDone(name.to_owned());
        }
        if step.state == StepState::Undoing {
            // Undoing it failed: it stays being undone, with the reason, until a replay works.
            step.error = Some(error);
            return Effect::StepFailed(name.to_owned());
        }
        step.state = StepState::Failed;
        step.started_at.get_or_insert(ctx.now);
        step.error = Some(error);
        Effect::StepFailed(name.to_owned())
    }

    /// Every step is done: the results go back to the citizen.
    fn complete(&mut self, definition: &Definition, ctx: &Context<'_>) -> Vec<Outgoing> {
        self.state = State::Completed;
        self.completed_at = Some(ctx.now);
        self.inputs = json!({});
        let results: Vec<Value> = self
            .steps
            .iter()
            .flat_map(|s| s.results.iter().cloned())
            .collect();
        vec![
            self.status(portal::PROCESSED, ctx, "Đã giải quyết"),
            Outgoing {
                event_type: definition.result.to_owned(),
                payload: json!({
                    "dossier_code": self.dossier_code,
                    "channel": RESULT_CHANNEL,
                    "returned_at": timestamp(ctx.now),
                    "results": results,
                }),
            },
            self.status(portal::RESULT_RETURNED, ctx, "Đã trả kết quả"),
        ]
    }

    /// Marks the steps now past their due time (each once); the events announcing them.
    pub fn mark_overdue(&mut self, now: DateTime<Utc>) -> Vec<Outgoing> {
        let mut marked = Vec::new();
        if let Some(supplement) = &mut self.supplement {
            // The dossier waits for the citizen: only the citizen's due time runs.
            if supplement.due_at < now && supplement.overdue_at.is_none() {
                supplement.overdue_at = Some(now);
                marked.push(Outgoing {
                    event_type: STEP_OVERDUE.to_owned(),
                    payload: json!({
                        "dossier_code": self.dossier_code,
                        "procedure_code": self.procedure_code,
                        "procedure_group": self.group,
                        "step": SUPPLEMENT,
                        "step_state": "running",
                        "due_at": timestamp(supplement.due_at),
                        "noticed_at": timestamp(now),
                    }),
                });
            }
            return marked;
        }
        for step in &mut self.steps {
            let open = step.state.is_open();
            let Some(due) = step.due_at.filter(|due| *due < now) else {
                continue;
            };
            if open && step.overdue_at.is_none() {
                step.overdue_at = Some(now);
                marked.push(Outgoing {
                    event_type: STEP_OVERDUE.to_owned(),
                    payload: json!({
                        "dossier_code": self.dossier_code,
                        "procedure_code": self.procedure_code,
                        "procedure_group": self.group,
                        "step": step.name,
                        "step_state": step.state.as_str(),
                        "due_at": timestamp(due),
                        "noticed_at": timestamp(now),
                    }),
                });
            }
        }
        marked
    }

    /// Past the appointment and not completed (the appointment waits while a supplement is
    /// awaited), or past the supplement's due time.
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        match &self.supplement {
            Some(supplement) => supplement.due_at < now,
            None => self.state == State::Running && self.due_at.is_some_and(|due| due < now),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::domain::ReferenceData;
    use crate::procedures::birth::BIRTH;
    use crate::procedures::death::DEATH;

    fn reference() -> ReferenceData {
        ReferenceData::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/reference"))
            .expect("reference data")
    }

    fn context<'a>(reference: &'a ReferenceData, now: &str) -> Context<'a> {
        Context {
            now: at(now),
            calendar: reference.calendar(),
            fees: reference.fees(),
            event: None,
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a time")
            .with_timezone(&Utc)
    }

    fn submission(birth_date: &str, card: bool, residence: bool) -> Value {
        json!({
            "dossier_code": "G22.99.08-261120-0042",
            "procedure_code": "2.000986",
            "received_at": "2026-11-20T09:15:00+07:00",
            "province_code": "48",
            "commune_code": "20194",
            "child": {"birth_date": birth_date},
            "requested_services": {
                "permanent_residence": residence,
                "health_insurance": card,
                "id_card": false
            }
        })
    }

    fn registered() -> Value {
        json!({
            "dossier_code": "G22.99.08-261120-0042",
            "registration_number": "123/2026",
            "registered_at": "2026-11-20T10:00:00+07:00",
            "registering_agency_code": "G22.99.08",
            "e_extract_reference": "TLKS-2026-000123",
            "child": {"personal_id": "048326000123"}
        })
    }

    fn card() -> Value {
        json!({
            "dossier_code": "G22.99.08-261120-0042",
            "card_number": "TE1480123456789",
            "issued_at": "2026-11-20T11:00:00+07:00"
        })
    }

    fn statuses(out: &[Outgoing]) -> Vec<(u64, u64)> {
        out.iter()
            .filter(|o| o.event_type == STATUS_CHANGED)
            .map(|o| {
                (
                    o.payload["from_status"].as_u64().unwrap_or_default(),
                    o.payload["to_status"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    }

    fn states(instance: &Instance) -> Vec<(&str, StepState)> {
        instance
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.state))
            .collect()
    }

    #[test]
    fn the_prefill_counts_the_fields_that_hold_what_national_data_told_once_each() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T09:20:00+07:00");
        let mut form = submission("2026-11-12", true, false);
        form["child"] = json!({"full_name": "Nguyễn Minh An", "sex": "FEMALE",
            "birth_date": "2026-11-12", "birth_place": "Bệnh viện A", "ethnicity_code": "01",
            "nationality": "VN"});
        form["mother"] = json!({"full_name": "Trần Thị Bích", "personal_id": "048195001234",
            "birth_date": "1995-03-08", "ethnicity_code": "01", "nationality": "VN"});
        form["declarant"] = json!({"full_name": "Trần Thị Bích",
            "personal_id": "048195001234", "relationship": "MOTHER"});
        form["birth_certificate_no"] = json!("GCS-1");
        let (mut instance, _) = open(&BIRTH, &form, &ctx).expect("opened");
        let filled = |instance: &Instance| instance.filled.clone().expect("counted");
        assert_eq!(
            (filled(&instance).fields.len(), filled(&instance).on_form),
            (0, 6 + 5 + 3 + 1),
            "no father and no residence: not on this form"
        );
        let mother = json!({"personal_id": "048195001234", "roles": ["MOTHER", "DECLARANT"],
            "full_name": "Trần Thị Bích", "birth_date": "1995-03-08", "ethnicity_code": "01",
            "nationality": "VN", "household": null});
        let mut mistyped = mother.clone();
        mistyped["personal_id"] = json!("048195009999");
        let (effect, _) = instance.apply(&BIRTH, "birth.citizen-found", &mistyped, &ctx);
        assert!(
            effect.describe().contains(": 0 more field(s)"),
            "an answer about a number the form does not name fills nothing in: {}",
            effect.describe()
        );
        let (effect, out) = instance.apply(&BIRTH, "birth.citizen-found", &mother, &ctx);
        assert!(out.is_empty(), "a pre-fill moves no step");
        assert_eq!(
            effect.describe(),
            "the population database's answer about the MOTHER and DECLARANT: 9 more field(s) \
             of the form hold what it told",
            "the mother's five, the declarant's name and number, the child's ethnicity and \
             nationality"
        );
        let (effect, _) = instance.apply(&BIRTH, "birth.citizen-found", &mother, &ctx);
        assert!(
            effect.describe().contains(": 0 more field(s)"),
            "counted once"
        );
        let mut not_her = mother.clone();
        not_her["roles"] = json!(["FATHER"]);
        not_her["full_name"] = json!("Nguyễn Văn Cường");

        let certificate = json!({"certificate_number": "GCS-1",
            "facility_name": "Bệnh viện B", "mother": {"personal_id": "048195001234"},
            "child": {"birth_date": "2026-11-12", "sex": "FEMALE", "intended_name": "Nguyễn Minh An"}});
        let (effect, _) = instance.apply(&BIRTH, BIRTH.documents[0].event_type, &certificate, &ctx);
        assert!(
            effect
                .describe()
                .ends_with("; 3 more field(s) of the form hold what it told"),
            "the child's name, sex and date of birth; not a place of birth it words otherwise: {}",
            effect.describe()
        );
        assert_eq!(filled(&instance).fields.len(), 12);
        assert!(
            !filled(&instance)
                .fields
                .iter()
                .any(|f| f == "/declarant/relationship"),
            "a choice the citizen makes"
        );
        instance.inputs = json!({});
        let (effect, _) = instance.apply(&BIRTH, "birth.citizen-found", &not_her, &ctx);
        assert!(effect.describe().ends_with("nothing compared"));
        assert_eq!(
            filled(&instance).fields.len(),
            12,
            "kept once the dossier has ended"
        );
    }

    #[test]
    fn a_document_is_owned_by_its_identity_and_compared_on_its_facts() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T09:20:00+07:00");
        let mut told = submission("2026-11-12", true, false);
        told["child"]["sex"] = json!("FEMALE");
        told["mother"] = json!({"personal_id": "048195001234"});
        let (mut instance, _) = open(&BIRTH, &told, &ctx).expect("opened");
        let certificate = |mother: &str, sex: &str| {
            json!({"certificate_number": "GCS-1", "mother": {"personal_id": mother},
                   "child": {"birth_date": "2026-11-12", "sex": sex}})
        };
        let document = &BIRTH.documents[0];
        assert_eq!(
            instance.owns(document, &certificate("048195001234", "MALE")),
            Some(true)
        );
        assert_eq!(
            instance.owns(document, &certificate("048195009999", "FEMALE")),
            Some(false),
            "another mother's certificate with the same number"
        );
        let event = document.event_type;
        let (effect, out) =
            instance.apply(&BIRTH, event, &certificate("048195001234", "MALE"), &ctx);
        assert!(out.is_empty());
        assert_eq!(
            effect.describe(),
            "BIRTH_CERTIFICATE joined; it differs from the submission on the child's sex: for \
             the official to check; 2 more field(s) of the form hold what it told",
            "the mother's ID and the child's date of birth, as the certificate tells them"
        );
        let (effect, _) =
            instance.apply(&BIRTH, event, &certificate("048195009999", "FEMALE"), &ctx);
        assert_eq!(
            effect.describe(),
            "BIRTH_CERTIFICATE joined; it differs from the submission on the mother's personal \
             ID: for the official to check",
            "sent with the dossier's code, another mother's certificate is joined, and says so"
        );
        instance.inputs = json!({});
        assert_eq!(
            instance.owns(document, &certificate("048195009999", "FEMALE")),
            None,
            "nothing tells once the submission is forgotten"
        );
        let (effect, _) = instance.apply(&BIRTH, event, &certificate("048195001234", "MALE"), &ctx);
        assert_eq!(
            effect.describe(),
            "BIRTH_CERTIFICATE joined; the dossier has ended, nothing compared",
            "the submission is forgotten once the dossier ends"
        );
    }

    #[test]
    fn a_submission_opens_the_steps_asked_for_with_an_appointment_in_working_days() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T09:20:00+07:00");
        let (instance, out) =
            open(&BIRTH, &submission("2026-11-12", true, false), &ctx).expect("opened");
        assert_eq!(
            states(&instance),
            [
                ("CIVIL_REGISTRATION", StepState::Running),
                ("HEALTH_INSURANCE_CARD", StepState::Waiting)
            ],
            "no residence asked for; the card waits for the registration"
        );
        // Friday 20 November 2026, 09:15: three working days are Monday 23, Wednesday 25 and
        // Thursday 26 (Tuesday 24 is Viet Nam Culture Day), ending at 17:00.
        assert_eq!(instance.due_at, Some(at("2026-11-26T17:00:00+07:00")));
        assert_eq!(
            instance.steps[0].due_at,
            Some(at("2026-11-20T17:00:00+07:00")),
            "civil registration the same working day"
        );
        assert_eq!(out[0].event_type, "birth.dossier-accepted");
        assert_eq!(
            out[0].payload["appointment_at"],
            "2026-11-26T17:00:00+07:00"
        );
        assert_eq!(out[0].payload["receiving_agency_code"], "G22.99.08");
        assert_eq!(out[0].payload["late_registration"], false);
        assert_eq!(statuses(&out), [(1, 2), (2, 4)]);
        assert_eq!(instance.portal_status, portal::PROCESSING);

        let (late, out) =
            open(&BIRTH, &submission("2026-08-01", true, false), &ctx).expect("opened");
        assert_eq!(
            out[0].payload["late_registration"], true,
            "111 days after the birth"
        );
        assert_eq!(
            late.state,
            State::Running,
            "a late registration is still taken"
        );
    }

    #[test]
    fn parallel_steps_start_after_registration_and_the_result_lists_every_document() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T10:01:00+07:00");
        let (mut instance, _) =
            open(&BIRTH, &submission("2026-11-12", true, true), &ctx).expect("opened");
        let (effect, out) = instance.apply(
            &BIRTH,
            "birth.civil-registration-completed",
            &registered(),
            &ctx,
        );
        assert_eq!(effect, Effect::StepDone("CIVIL_REGISTRATION".into()));
        let asked: Vec<&str> = out.iter().map(|o| o.event_type.as_str()).collect();
        assert_eq!(
            asked,
            [
                "birth.residence-registration-requested",
                "birth.health-insurance-card-requested"
            ],
            "both asked for at once"
        );
        assert_eq!(out[1].payload["child"], registered()["child"]);
        assert_eq!(out[1].payload["province_code"], "48");
        assert_eq!(out[1].payload["due_at"], "2026-11-25T17:00:00+07:00");
        assert_eq!(
            states(&instance),
            [
                ("CIVIL_REGISTRATION", StepState::Done),
                ("RESIDENCE_REGISTRATION", StepState::Running),
                ("HEALTH_INSURANCE_CARD", StepState::Running)
            ]
        );
        assert_eq!(
            instance.steps[2].due_at,
            Some(at("2026-11-25T17:00:00+07:00")),
            "two working days from Friday: Monday and Wednesday, past the holiday"
        );
        let (_, out) = instance.apply(&BIRTH, "birth.health-insurance-card-issued", &card(), &ctx);
        assert!(out.is_empty(), "residence is still running: {out:?}");
        let residence = json!({
            "dossier_code": "G22.99.08-261120-0042",
            "household_number": "HK48000123",
            "registered_at": "2026-11-20T11:30:00+07:00"
        });
        let (_, out) = instance.apply(&BIRTH, "birth.residence-registered", &residence, &ctx);
        assert_eq!(instance.state, State::Completed);
        assert_eq!(
            instance.inputs,
            json!({}),
            "nothing personal kept once completed"
        );
        assert_eq!(statuses(&out), [(4, 9), (9, 10)]);
        let result = out
            .iter()
            .find(|o| o.event_type == "birth.result-returned")
            .expect("the result");
        let documents: Vec<(&str, &str)> = result.payload["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| {
                (
                    r["result_type"].as_str().unwrap_or_default(),
                    r["document_reference"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            documents,
            [
                ("BIRTH_EXTRACT", "TLKS-2026-000123"),
                ("PERSONAL_ID", "048326000123"),
                ("PERMANENT_RESIDENCE", "HK48000123"),
                ("HEALTH_INSURANCE_CARD", "TE1480123456789")
            ]
        );
    }

    fn payment(event_type: &str, key: &str) -> Value {
        let mut payment = json!({
            "dossier_code": "G22.99.08-261120-0042",
            "idempotency_key": key,
            "platform": "PAYGOV",
            "platform_transaction_id": "PG-0001",
            "amount_vnd": 21000,
        });
        if event_type == "payment.confirmed" {
            payment["paid_at"] = json!("2026-11-20T11:00:00+07:00");
        } else {
            payment["reason_code"] = json!("CANCELLED");
        }
        payment
    }

    #[test]
    fn a_late_registration_with_copies_pays_its_fee_after_registration_at_status_6() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T10:01:00+07:00");
        // Born 80 days before the dossier came: late; two copies asked for. The health
        // facility's birth certificate is named, so nothing needs verifying.
        let mut late = submission("2026-09-01", true, false);
        late["birth_certificate_no"] = json!("GCS-2026-118734");
        late["extract_copies"] = json!(2);
        late["declarant"] = json!({"full_name": "Trần Thị Bích", "personal_id": "048195001234"});
        let (mut instance, out) = open(&BIRTH, &late, &ctx).expect("opened");
        assert!(
            out.iter().all(|o| o.event_type != "payment.requested"),
            "nothing charged before the birth is registered"
        );
        let (_, out) = instance.apply(
            &BIRTH,
            "birth.civil-registration-completed",
            &registered(),
            &ctx,
        );
        let request = out
            .iter()
            .find(|o| o.event_type == "payment.requested")
            .expect("the fee asked for once registered");
        let key = "G22.99.08-261120-0042:PAYMENT";
        assert_eq!(request.payload["idempotency_key"], key);
        assert_eq!(request.payload["total_amount_vnd"], 21000);
        let lines: Vec<(&str, u64)> = request.payload["fee_lines"]
            .as_array()
            .expect("fee lines")
            .iter()
            .map(|l| {
                (
                    l["fee_code"].as_str().unwrap_or_default(),
                    l["amount_vnd"].as_u64().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(lines, [("HT.KSQH", 5000), ("HT.BSTL", 16000)]);
        assert_eq!(
            request.payload["beneficiary_account"]["bank_code"],
            "970436"
        );
        assert_eq!(request.payload["payer"]["personal_id"], "048195001234");
        assert_eq!(request.payload["expires_at"], "2026-11-25T17:00:00+07:00");
        assert!(request.payload.get("due_at").is_none());
        assert_eq!(
            statuses(&out),
            [(4, 6)],
            "the portal shows payment requested"
        );

        // The one-stop system's own payment for the dossier is not the procedure's fee.
        let (effect, _) = instance.apply(
            &BIRTH,
            "payment.confirmed",
            &payment("payment.confirmed", "ONESTOP-PAY-1"),
            &ctx,
        );
        assert_eq!(effect, Effect::Unrelated);
        let (effect, out) = instance.apply(
            &BIRTH,
            "payment.confirmed",
            &payment("payment.confirmed", key),
            &ctx,
        );
        assert_eq!(effect, Effect::StepDone("PAYMENT".into()));
        assert_eq!(
            statuses(&out),
            [(6, 4)],
            "processing resumes; the card still runs"
        );

        let (_, out) = instance.apply(&BIRTH, "birth.health-insurance-card-issued", &card(), &ctx);
        assert_eq!(instance.state, State::Completed);
        let result = out
            .iter()
            .find(|o| o.event_type == "birth.result-returned")
            .expect("the result");
        assert!(
            result.payload["results"]
                .as_array()
                .expect("results")
                .iter()
                .any(|r| r["result_type"] == "FEE_PAYMENT" && r["document_reference"] == "PG-0001"),
            "{result:?}"
        );
    }

    #[test]
    fn a_supplement_asked_while_the_fee_is_unpaid_keeps_the_portal_on_allowed_moves() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T10:01:00+07:00");
        let mut copies = submission("2026-11-12", false, false);
        copies["extract_copies"] = json!(1);
        let (mut instance, _) = open(&BIRTH, &copies, &ctx).expect("opened");
        let (_, out) = instance.apply(
            &BIRTH,
            "birth.civil-registration-completed",
            &registered(),
            &ctx,
        );
        assert_eq!(statuses(&out), [(4, 6)]);
        let (_, out) = instance.apply(
            &BIRTH,
            "birth.supplement-requested",
            &supplement_asked("2026-11-27"),
            &ctx,
        );
        assert_eq!(
            statuses(&out),
            [(6, 4), (4, 5)],
            "6 to 5 is no move the portal allows"
        );
        let provided = json!({"dossier_code": "G22.99.08-261120-0042"});
        let (_, out) = instance.apply(&BIRTH, "birth.supplement-provided", &provided, &ctx);
        assert_eq!(statuses(&out), [(5, 4), (4, 6)], "the fee is still unpaid");
        let key = "G22.99.08-261120-0042:PAYMENT";
        let (_, out) = instance.apply(
            &BIRTH,
            "payment.confirmed",
            &payment("payment.confirmed", key),
            &ctx,
        );
        assert_eq!(statuses(&out), [(6, 4), (4, 9), (9, 10)]);
    }

    #[test]
    fn a_cancelled_fee_ends_only_its_branch_and_a_fee_without_an_account_shows_why() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T10:01:00+07:00");
        let mut copies = submission("2026-11-12", false, false);
        copies["extract_copies"] = json!(1);
        let (mut instance, _) = open(&BIRTH, &copies, &ctx).expect("opened");
        instance.apply(
            &BIRTH,
            "birth.civil-registration-completed",
            &registered(),
            &ctx,
        );
        let key = "G22.99.08-261120-0042:PAYMENT";
        let (effect, out) = instance.apply(
            &BIRTH,
            "payment.failed",
            &payment("payment.failed", key),
            &ctx,
        );
        assert_eq!(effect, Effect::StepRefused("PAYMENT".into(), Vec::new()));
        assert_eq!(statuses(&out), [(6, 4), (4, 9), (9, 10)]);
        assert_eq!(
            instance.steps[1].error.as_deref(),
            Some("refused: CANCELLED")
        );

        // On time, no copies: free, no fee step.
        let (free, _) =
            open(&BIRTH, &submission("2026-11-12", false, false), &ctx).expect("opened");
        assert_eq!(states(&free), [("CIVIL_REGISTRATION", StepState::Running)]);

        // Ho Chi Minh City lists no account: the step is skipped from the start, saying why,
        // and the dossier completes with the registration.
        copies["province_code"] = json!("79");
        let (mut instance, _) = open(&BIRTH, &copies, &ctx).expect("opened");
        assert_eq!(instance.steps[1].state, StepState::Skipped);
        assert!(
            instance.steps[1]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("fee-accounts.csv lists none for province \"79\"")),
            "{:?}",
            instance.steps[1].error
        );
        let (_, out) = instance.apply(
            &BIRTH,
            "birth.civil-registration-completed",
            &registered(),
            &ctx,
        );
        assert!(out.iter().all(|o| o.event_type != "payment.requested"));
        assert_eq!(instance.state, State::Completed);
    }

    /// A dossier whose child joins a grandparent's household.
    fn with_grandparents(submission: &mut Value) {
        submission["mother"] = json!({"personal_id": "048195001234"});
        submission["residence"] = json!({
            "household_number": "48201940012873",
            "head_personal_id": "048060001234",
            "relationship_to_head": "GRANDCHILD",
            "province_code": "48",
            "commune_code": "20194",
            "address_line": "27 Lê Hồng Phong"
        });
    }

    fn consent(decision: &str) -> Value {
        json!({
            "dossier_code": "G22.99.08-261120-0042",
            "household_head": {"personal_id": "048060001234", "full_name": "Nguyễn Văn Tư"},
            "decision": decision,
            "decided_at": "2026-11-20T10:30:00+07:00",
            "channel": "VNEID"
        })
    }

    #[test]
    fn the_residence_waits_for_the_heads_consent_and_a_refusal_ends_only_that_branch() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T10:01:00+07:00");
        let mut submitted = submission("2026-11-12", true, true);
        with_grandparents(&mut submitted);
        let (mut consented, _) = open(&BIRTH, &submitted, &ctx).expect("opened");
        assert_eq!(
            states(&consented),
            [
                ("CIVIL_REGISTRATION", StepState::Running),
                ("HOUSEHOLD_HEAD_CONSENT", StepState::Running),
                ("RESIDENCE_REGISTRATION", StepState::Waiting),
                ("HEALTH_INSURANCE_CARD", StepState::Waiting)
            ],
            "the head is not a parent: the consent is waited for, visibly, with a due time"
        );
        assert!(consented.steps[1].due_at.is_some());
        let mut refused = consented.clone();
        let (_, out) = consented.apply(
            &BIRTH,
            "birth.civil-registration-completed",
            &registered(),
            &ctx,
        );
        let asked: Vec<&str> = out.iter().map(|o| o.event_type.as_str()).collect();
        assert_eq!(
            asked,
            ["birth.health-insurance-card-requested"],
            "residence waits for the consent"
        );
        let (effect, out) = consented.apply(
            &BIRTH,
            "birth.household-head-consent-recorded",
            &consent("CONSENTED"),
            &ctx,
        );
        assert_eq!(effect, Effect::StepDone("HOUSEHOLD_HEAD_CONSENT".into()));
        assert_eq!(out[0].event_type, "birth.residence-registration-requested");
        assert_eq!(
            out[0].payload["head_consent"],
            json!({"head_personal_id": "048060001234", "decided_at": "2026-11-20T10:30:00+07:00", "channel": "VNEID"})
        );
        assert_eq!(out[0].payload["mother_personal_id"], "048195001234");

        // The head says no: residence is not done, the card still is, and the dossier ends.
        let (effect, out) = refused.apply(
            &BIRTH,
            "birth.household-head-consent-recorded",
            &consent("REFUSED"),
            &ctx,
        );
        assert_eq!(
            effect,
            Effect::StepRefused(
                "HOUSEHOLD_HEAD_CONSENT".into(),
                vec!["RESIDENCE_REGISTRATION".into()]
            )
        );
        assert!(out.is_empty());
        refused.apply(
            &BIRTH,
            "birth.civil-registration-completed",
            &registered(),
            &ctx,
        );
        let (_, out) = refused.apply(&BIRTH, "birth.health-insurance-card-issued", &card(), &ctx);
        assert_eq!(refused.state, State::Completed);
        assert_eq!(
            states(&refused),
            [
                ("CIVIL_REGISTRATION", StepState::Done),
                ("HOUSEHOLD_HEAD_CONSENT", StepState::Refused),
                ("RESIDENCE_REGISTRATION", StepState::Skipped),
                ("HEALTH_INSURANCE_CARD", StepState::Done)
            ]
        );
        assert!(out.iter().any(|o| o.event_type == "birth.result-returned"));
        let (effect, _) = refused.apply(
            &BIRTH,
            "birth.household-head-consent-recorded",
            &consent("CONSENTED"),
            &ctx,
        );
        assert_eq!(
            effect,
            Effect::AlreadyDone("HOUSEHOLD_HEAD_CONSENT".into()),
            "an answer is final"
        );
    }

    fn verification(outcome: &str, reason: Value) -> Value {
        json!({
            "dossier_code": "G22.99.08-261120-0042",
            "outcome": outcome,
            "reason_code": reason,
            "verified_at": "2026-11-23T15:00:00+07:00",
            "verifying_agency_code": "G22.99.08"
        })
    }

    #[test]
    fn a_late_registration_without_its_birth_certificate_is_verified_first_within_five_working_days()
     {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T10:01:00+07:00");
        // Born 80 days before the dossier came, and no birth certificate named.
        let late = submission("2026-09-01", true, false);
        let (mut confirmed, _) = open(&BIRTH, &late, &ctx).expect("opened");
        assert_eq!(
            states(&confirmed),
            [
                ("VERIFICATION", StepState::Running),
                ("CIVIL_REGISTRATION", StepState::Waiting),
                ("HEALTH_INSURANCE_CARD", StepState::Waiting),
                ("PAYMENT", StepState::Waiting)
            ],
            "the officer verifies before anything else starts"
        );
        let received = DateTime::parse_from_rfc3339("2026-11-20T09:15:00+07:00").expect("time");
        assert_eq!(confirmed.due_at, ctx.due(received, 5), "five working days");
        assert_ne!(confirmed.due_at, ctx.due(received, 3));
        let (on_time, _) =
            open(&BIRTH, &submission("2026-11-12", true, false), &ctx).expect("opened");
        assert_eq!(
            on_time.due_at,
            ctx.due(received, 3),
            "three without verification"
        );
        assert!(on_time.steps.iter().all(|s| s.name != "VERIFICATION"));
        let mut refused = confirmed.clone();
        let mut early = confirmed.clone();

        // Confirmed: the registration is waited for, and the rest follows it as usual.
        let (effect, out) = confirmed.apply(
            &BIRTH,
            "birth.verification-recorded",
            &verification("CONFIRMED", Value::Null),
            &ctx,
        );
        assert_eq!(effect, Effect::StepDone("VERIFICATION".into()));
        assert!(out.is_empty(), "civil registration has no command: {out:?}");
        assert_eq!(confirmed.steps[1].state, StepState::Running);
        assert!(confirmed.steps[1].due_at.is_some());
        let (_, out) = confirmed.apply(
            &BIRTH,
            "birth.civil-registration-completed",
            &registered(),
            &ctx,
        );
        let asked: Vec<&str> = out.iter().map(|o| o.event_type.as_str()).collect();
        assert!(
            asked.contains(&"birth.health-insurance-card-requested"),
            "{asked:?}"
        );
        assert!(asked.contains(&"payment.requested"), "{asked:?}");

        // Not confirmed: nothing is registered, nothing after it is asked for, and the dossier
        // ends with the officer's reason.
        let (effect, out) = refused.apply(
            &BIRTH,
            "birth.verification-recorded",
            &verification("NOT_CONFIRMED", json!("WITNESSES_NOT_CONFIRMED")),
            &ctx,
        );
        assert_eq!(
            effect,
            Effect::StepRefused(
                "VERIFICATION".into(),
                vec![
                    "CIVIL_REGISTRATION".into(),
                    "HEALTH_INSURANCE_CARD".into(),
                    "PAYMENT".into()
                ]
            )
        );
        assert_eq!(
            refused.steps[0].error.as_deref(),
            Some("answered NOT_CONFIRMED: WITNESSES_NOT_CONFIRMED")
        );
        assert_eq!(refused.state, State::Completed);
        let result = out
            .iter()
            .find(|o| o.event_type == "birth.result-returned")
            .expect("the result");
        assert_eq!(result.payload["results"], json!([]), "nothing was issued");
        assert!(
            out.iter()
                .all(|o| o.event_type != "birth.health-insurance-card-requested"),
            "{out:?}"
        );

        // The registration reported before the verification (a civil-status system that does
        // not wait): it is taken, and what follows it waits for the verification's outcome.
        let (effect, out) = early.apply(
            &BIRTH,
            "birth.civil-registration-completed",
            &registered(),
            &ctx,
        );
        assert_eq!(effect, Effect::StepDone("CIVIL_REGISTRATION".into()));
        assert!(
            out.is_empty(),
            "nothing asked before the verification: {out:?}"
        );
        let mut early_refused = early.clone();
        let (_, out) = early.apply(
            &BIRTH,
            "birth.verification-recorded",
            &verification("CONFIRMED", Value::Null),
            &ctx,
        );
        let asked: Vec<&str> = out.iter().map(|o| o.event_type.as_str()).collect();
        assert!(
            asked.contains(&"birth.health-insurance-card-requested"),
            "{asked:?}"
        );
        let (effect, _) = early_refused.apply(
            &BIRTH,
            "birth.verification-recorded",
            &verification("NOT_CONFIRMED", json!("OTHER")),
            &ctx,
        );
        assert_eq!(
            effect,
            Effect::StepRefused(
                "VERIFICATION".into(),
                vec!["HEALTH_INSURANCE_CARD".into(), "PAYMENT".into()]
            ),
            "the registration done stands; nothing after it starts"
        );
        assert_eq!(early_refused.state, State::Completed);
    }

    fn death_submission() -> Value {
        json!({
            "dossier_code": "G22.99.08-261117-0021",
            "procedure_code": "2.002913",
            "received_at": "2026-11-17T09:00:00+07:00",
            "deceased": {"personal_id": "001048003517", "full_name": "Phạm Văn Hùng",
                         "death_date": "2026-11-15"},
            "sub_procedures": ["DEATH_REGISTRATION", "RESIDENCE_DELETION"]
        })
    }

    fn death_registered() -> Value {
        json!({
            "dossier_code": "G22.99.08-261117-0021",
            "registration_number": "188",
            "registration_book": "01/2026",
            "registered_at": "2026-11-17T14:00:00+07:00",
            "registering_agency_code": "G22.99.08",
            "e_extract_reference": "TLKT-48-2026-0018806"
        })
    }

    fn annulment() -> Value {
        json!({
            "dossier_code": "G22.99.08-261117-0021",
            "registration_number": "188",
            "registering_agency_code": "G22.99.08",
            "deceased": {"personal_id": "001048003517"},
            "annulled_at": "2026-11-22T10:00:00+07:00",
            "decision_reference": "45/QĐ-UBND",
            "reason_code": "WRONG_PERSON"
        })
    }

    #[test]
    fn an_annulled_registration_undoes_the_residence_deletion_and_the_deceased_status_and_starts_nothing_more()
     {
        let reference = reference();
        let ctx = context(&reference, "2026-11-17T14:01:00+07:00");
        let with = |id: uuid::Uuid| Context {
            event: Some(id),
            ..ctx
        };
        let (mut dossier, _) = open(&DEATH, &death_submission(), &ctx).expect("opened");
        dossier.apply(
            &DEATH,
            "death.civil-registration-completed",
            &death_registered(),
            &ctx,
        );
        let deletion = uuid::Uuid::now_v7();
        let deleted = json!({"dossier_code": "G22.99.08-261117-0021", "deleted_at": "2026-11-17T15:00:00+07:00"});
        dossier.apply(&DEATH, "death.residence-deleted", &deleted, &with(deletion));
        let update = uuid::Uuid::now_v7();
        let updated = json!({"dossier_code": "G22.99.08-261117-0021", "status": "DECEASED", "updated_at": "2026-11-17T15:00:00+07:00"});
        dossier.apply(
            &DEATH,
            "death.population-status-updated",
            &updated,
            &with(update),
        );
        assert_eq!(dossier.state, State::Completed);

        let (effect, out) =
            dossier.apply(&DEATH, "death.registration-annulled", &annulment(), &ctx);
        assert_eq!(
            effect,
            Effect::Annulled {
                undoing: vec!["POPULATION_STATUS".into(), "RESIDENCE_DELETION".into()],
                skipped: vec![]
            }
        );
        assert_eq!(dossier.state, State::Annulled);
        let commands: Vec<(&str, &Value)> = out
            .iter()
            .map(|o| (o.event_type.as_str(), &o.payload["reverts_event_id"]))
            .collect();
        assert_eq!(
            commands,
            [
                (
                    "death.population-status-revert-requested",
                    &json!(update.to_string())
                ),
                (
                    "death.residence-deletion-revert-requested",
                    &json!(deletion.to_string())
                )
            ],
            "a living person is not left marked deceased"
        );
        assert_eq!(out[1].payload["registration"]["registration_number"], "188");
        assert_eq!(out[1].payload["deceased"]["personal_id"], "001048003517");
        assert_eq!(
            states(&dossier),
            [
                ("CIVIL_REGISTRATION", StepState::Done),
                ("POPULATION_STATUS", StepState::Undoing),
                ("RESIDENCE_DELETION", StepState::Undoing)
            ]
        );
        let (effect, out) =
            dossier.apply(&DEATH, "death.registration-annulled", &annulment(), &ctx);
        assert_eq!((effect, out.len()), (Effect::AlreadyAnnulled, 0));
        let reverted = json!({"dossier_code": "G22.99.08-261117-0021", "reverts_event_id": deletion.to_string(), "reason": "DEATH_REGISTRATION_ANNULLED", "reverted_at": "2026-11-22T10:02:00+07:00"});
        let mut other = reverted.clone();
        other["reverts_event_id"] = json!(uuid::Uuid::now_v7().to_string());
        let (effect, _) = dossier.apply(&DEATH, "death.residence-deletion-reverted", &other, &ctx);
        assert_eq!(
            effect,
            Effect::UndoNotAsked("RESIDENCE_DELETION".into()),
            "another deletion's undo is not this one"
        );
        let (effect, _) =
            dossier.apply(&DEATH, "death.residence-deletion-reverted", &reverted, &ctx);
        assert_eq!(effect, Effect::StepUndone("RESIDENCE_DELETION".into()));
        assert_eq!(dossier.steps[2].state, StepState::Undone);
        assert_ne!(dossier.inputs, json!({}), "kept while the status is undone");
        let mut living = reverted.clone();
        living["reverts_event_id"] = json!(update.to_string());
        let (effect, _) = dossier.apply(&DEATH, "death.population-status-reverted", &living, &ctx);
        assert_eq!(effect, Effect::StepUndone("POPULATION_STATUS".into()));
        assert_eq!(dossier.inputs, json!({}), "nothing kept once undone");

        // Annulled while the deletion runs: it is skipped, and when the residence database
        // answers anyway, undone at once.
        let (mut running, _) = open(&DEATH, &death_submission(), &ctx).expect("opened");
        running.apply(
            &DEATH,
            "death.civil-registration-completed",
            &death_registered(),
            &ctx,
        );
        let (effect, out) =
            running.apply(&DEATH, "death.registration-annulled", &annulment(), &ctx);
        assert_eq!(
            effect,
            Effect::Annulled {
                undoing: vec![],
                skipped: vec!["POPULATION_STATUS".into(), "RESIDENCE_DELETION".into()]
            }
        );
        let told: Vec<(&str, &Value)> = out
            .iter()
            .map(|o| (o.event_type.as_str(), &o.payload["to_status"]))
            .collect();
        assert_eq!(
            told,
            [("dossier.status-changed", &json!(8))],
            "nothing to undo; the portal shows processing stopped"
        );
        let (effect, out) =
            running.apply(&DEATH, "death.residence-deleted", &deleted, &with(deletion));
        assert_eq!(
            effect,
            Effect::DoneAfterAnnulment("RESIDENCE_DELETION".into())
        );
        assert_eq!(
            out[0].event_type,
            "death.residence-deletion-revert-requested"
        );
        assert_eq!(
            (
                &out[0].payload["annulment"]["decision_reference"],
                &out[0].payload["deceased"]["personal_id"],
                &out[0].payload["reverts_event_id"]
            ),
            (
                &json!("45/QĐ-UBND"),
                &json!("001048003517"),
                &json!(deletion.to_string())
            ),
            "the annulment was kept for the late answer"
        );
        assert_eq!(running.steps[2].state, StepState::Undoing);
    }

    fn supplement_asked(due_date: &str) -> Value {
        json!({
            "dossier_code": "G22.99.08-261120-0042",
            "missing_items": [{"item_type": "WITNESS_STATEMENT"}],
            "requested_at": "2026-11-20T10:05:00+07:00",
            "due_date": due_date,
            "agency_code": "G22.99.08"
        })
    }

    #[test]
    fn a_supplement_holds_the_dossier_at_status_5_and_its_appointment_waits_with_it() {
        let reference = reference();
        let mut ctx = context(&reference, "2026-11-20T10:05:00+07:00");
        let (mut dossier, _) =
            open(&BIRTH, &submission("2026-11-12", true, false), &ctx).expect("opened");
        dossier.apply(
            &BIRTH,
            "birth.civil-registration-completed",
            &registered(),
            &ctx,
        );
        let appointment = dossier.due_at.expect("an appointment");
        let (effect, out) = dossier.apply(
            &BIRTH,
            "birth.supplement-requested",
            &supplement_asked("2026-11-27"),
            &ctx,
        );
        assert_eq!(
            effect,
            Effect::SupplementRequested("2026-11-27T17:00:00+07:00".into())
        );
        assert_eq!(statuses(&out), [(4, 5)]);
        let (effect, _) = dossier.apply(
            &BIRTH,
            "birth.supplement-requested",
            &supplement_asked("2026-11-30"),
            &ctx,
        );
        assert_eq!(
            effect,
            Effect::SupplementIgnored("a supplement is awaited already")
        );

        // The card comes while the citizen is asked: the dossier waits at 5.
        let (_, out) = dossier.apply(&BIRTH, "birth.health-insurance-card-issued", &card(), &ctx);
        assert!(
            out.is_empty(),
            "not completed while a supplement is awaited: {out:?}"
        );
        assert_eq!(dossier.state, State::Running);
        // Past the appointment, the wait does not count against the agency.
        assert!(
            dossier
                .mark_overdue(at("2026-11-27T09:00:00+07:00"))
                .is_empty()
        );
        assert!(!dossier.is_overdue(at("2026-11-27T09:00:00+07:00")));

        ctx.now = at("2026-11-23T10:05:00+07:00");
        let (effect, out) = dossier.apply(&BIRTH, "birth.supplement-provided", &json!({}), &ctx);
        assert_eq!(effect, Effect::SupplementProvided);
        assert_eq!(statuses(&out), [(5, 4), (4, 9), (9, 10)]);
        assert_eq!(dossier.state, State::Completed);
        assert_eq!(
            dossier.due_at,
            Some(appointment + chrono::Duration::days(3)),
            "the appointment moved on by the three days the dossier waited"
        );
        let (effect, _) = dossier.apply(&BIRTH, "birth.supplement-provided", &json!({}), &ctx);
        assert_eq!(
            effect,
            Effect::SupplementIgnored("no supplement was awaited")
        );
    }

    #[test]
    fn a_supplement_not_provided_in_time_shows_overdue_once() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T10:05:00+07:00");
        let (mut dossier, _) =
            open(&BIRTH, &submission("2026-11-12", true, false), &ctx).expect("opened");
        dossier.apply(
            &BIRTH,
            "birth.supplement-requested",
            &supplement_asked("2026-11-27"),
            &ctx,
        );
        assert!(
            dossier
                .mark_overdue(at("2026-11-27T16:00:00+07:00"))
                .is_empty()
        );
        let marked = dossier.mark_overdue(at("2026-11-27T17:30:00+07:00"));
        assert_eq!(marked.len(), 1);
        assert_eq!(marked[0].payload["step"], SUPPLEMENT);
        assert_eq!(marked[0].payload["due_at"], "2026-11-27T17:00:00+07:00");
        assert!(dossier.is_overdue(at("2026-11-27T17:30:00+07:00")));
        assert!(
            dossier
                .mark_overdue(at("2026-11-28T09:00:00+07:00"))
                .is_empty(),
            "once"
        );
    }

    #[test]
    fn the_pre_fill_ratio_is_kept_as_the_submission_said() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T10:05:00+07:00");
        let mut submitted = submission("2026-11-12", true, false);
        let (plain, _) = open(&BIRTH, &submitted, &ctx).expect("opened");
        assert_eq!(plain.prefill, None, "nothing said, nothing assumed");
        submitted["prefill"] = json!({
            "fields_on_form": 20,
            "from_national_data": ["mother.full_name", "mother.birth_date", "father.full_name",
                                   "father.birth_date", "province_code"]
        });
        let (dossier, _) = open(&BIRTH, &submitted, &ctx).expect("opened");
        let prefill = dossier.prefill.expect("kept");
        assert_eq!(
            (prefill.from_national_data, prefill.fields_on_form),
            (5, 20)
        );
        assert!((prefill.ratio() - 0.25).abs() < f64::EPSILON);
    }

    #[test]
    fn a_step_not_asked_for_is_never_asked_of_its_system() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T10:01:00+07:00");
        let (mut birth, _) =
            open(&BIRTH, &submission("2026-11-12", false, false), &ctx).expect("opened");
        let (_, out) = birth.apply(
            &BIRTH,
            "birth.civil-registration-completed",
            &registered(),
            &ctx,
        );
        assert!(
            out.iter().all(|o| !o.event_type.ends_with("-requested")),
            "no card asked for: {out:?}"
        );
        assert_eq!(birth.state, State::Completed);

        let death = json!({
            "dossier_code": "G22.99.08-261117-0021",
            "procedure_code": "2.002913",
            "received_at": "2026-11-17T09:00:00+07:00",
            "deceased": {"personal_id": "001048003517", "full_name": "Phạm Văn Hùng",
                         "death_date": "2026-11-15"},
            "sub_procedures": ["DEATH_REGISTRATION", "FUNERAL_ALLOWANCE"]
        });
        let (mut dossier, _) = open(&DEATH, &death, &ctx).expect("opened");
        let registration = json!({
            "dossier_code": "G22.99.08-261117-0021",
            "registration_number": "188",
            "registration_book": "01/2026",
            "registered_at": "2026-11-17T14:00:00+07:00",
            "registering_agency_code": "G22.99.08",
            "e_extract_reference": "TLKT-48-2026-0018806"
        });
        let (_, out) = dossier.apply(
            &DEATH,
            "death.civil-registration-completed",
            &registration,
            &ctx,
        );
        let asked: Vec<&str> = out.iter().map(|o| o.event_type.as_str()).collect();
        assert_eq!(
            asked,
            [
                "death.population-status-update-requested",
                "death.benefit-decision-requested"
            ],
            "the residence deletion and the survivor benefit were not chosen"
        );
        assert_eq!(out[1].payload["benefit_type"], "FUNERAL_ALLOWANCE");
        assert_eq!(out[0].payload["deceased"], death["deceased"]);
        assert_eq!(
            out[0].payload["registration"]["registration_book"],
            "01/2026"
        );

        // A death registered before the dossier: the steps start at once, with no
        // registration to name.
        let mut before = death.clone();
        before["sub_procedures"] = json!(["RESIDENCE_DELETION", "FUNERAL_ALLOWANCE"]);
        let (_, out) = open(&DEATH, &before, &ctx).expect("opened");
        let deletion = out
            .iter()
            .find(|o| o.event_type == "death.residence-deletion-requested")
            .expect("asked at once");
        assert_eq!(deletion.payload["registration"], Value::Null);
    }

    #[test]
    fn each_benefit_is_decided_then_paid_as_decided_and_a_refusal_ends_only_its_branch() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T10:01:00+07:00");
        let death = json!({
            "dossier_code": "G22.99.08-261117-0021",
            "procedure_code": "2.002913",
            "received_at": "2026-11-17T09:00:00+07:00",
            "deceased": {"personal_id": "001048003517", "full_name": "Phạm Văn Hùng",
                         "death_date": "2026-11-15"},
            "declarant": {"personal_id": "048078002468", "full_name": "Phạm Quốc Tuấn",
                          "relationship": "CHILD"},
            "beneficiary_account": {"bank_code": "970436", "account_number": "0041000372915",
                                    "account_name": "PHAM QUOC TUAN"},
            "sub_procedures": ["DEATH_REGISTRATION", "FUNERAL_ALLOWANCE", "SURVIVOR_BENEFIT"]
        });
        let (mut dossier, _) = open(&DEATH, &death, &ctx).expect("opened");
        let registration = json!({"dossier_code": "G22.99.08-261117-0021",
            "registration_number": "188", "registration_book": "01/2026",
            "registered_at": "2026-11-17T14:00:00+07:00", "registering_agency_code": "G22.99.08",
            "e_extract_reference": "TLKT-48-2026-0018806"});
        let (_, out) = dossier.apply(
            &DEATH,
            "death.civil-registration-completed",
            &registration,
            &ctx,
        );
        let asked: Vec<&Value> = out
            .iter()
            .filter(|o| o.event_type == "death.benefit-decision-requested")
            .map(|o| &o.payload["benefit_type"])
            .collect();
        assert_eq!(
            asked,
            [&json!("FUNERAL_ALLOWANCE"), &json!("SURVIVOR_LUMP_SUM")]
        );
        assert_eq!(out[1].payload["beneficiary"]["personal_id"], "048078002468");
        assert_eq!(
            out[1].payload["beneficiary_account"],
            death["beneficiary_account"]
        );

        // The survivor lump sum is decided: only its own step ends, and its payment asks for
        // exactly the amount decided.
        let decided = json!({"dossier_code": "G22.99.08-261117-0021",
            "benefit_type": "SURVIVOR_LUMP_SUM", "decision_number": "QD-BHXH-00000042",
            "amount_vnd": 220_000_000, "decided_at": "2026-11-20T10:00:00+07:00"});
        let (effect, out) = dossier.apply(&DEATH, "death.benefit-decided", &decided, &ctx);
        assert_eq!(effect, Effect::StepDone("SURVIVOR_BENEFIT".to_owned()));
        let payment = &out[0];
        assert_eq!(payment.event_type, "death.benefit-payment-requested");
        assert_eq!(
            (
                &payment.payload["decision_number"],
                &payment.payload["amount_vnd"]
            ),
            (&json!("QD-BHXH-00000042"), &json!(220_000_000))
        );
        let state_of = |dossier: &Instance, name: &str| {
            dossier
                .steps
                .iter()
                .find(|s| s.name == name)
                .map(|s| (s.state, s.error.clone()))
        };
        assert_eq!(
            state_of(&dossier, "FUNERAL_ALLOWANCE"),
            Some((StepState::Running, None))
        );

        // The funeral allowance is refused: its payment is skipped, the other branch stands.
        let refused = json!({"dossier_code": "G22.99.08-261117-0021",
            "benefit_type": "FUNERAL_ALLOWANCE", "reason_code": "CONTRIBUTION_TOO_SHORT",
            "refused_at": "2026-11-20T10:00:00+07:00"});
        let (effect, _) = dossier.apply(&DEATH, "death.benefit-refused", &refused, &ctx);
        assert_eq!(
            effect,
            Effect::StepRefused(
                "FUNERAL_ALLOWANCE".to_owned(),
                vec!["FUNERAL_ALLOWANCE_PAYMENT".to_owned()]
            )
        );
        assert_eq!(
            state_of(&dossier, "FUNERAL_ALLOWANCE"),
            Some((
                StepState::Refused,
                Some("refused: CONTRIBUTION_TOO_SHORT".to_owned())
            ))
        );
        assert_eq!(dossier.state, State::Running, "the payment is still due");
        let paid = json!({"dossier_code": "G22.99.08-261117-0021",
            "benefit_type": "SURVIVOR_LUMP_SUM", "decision_number": "QD-BHXH-00000042",
            "paid_at": "2026-11-21T09:00:00+07:00"});
        let (effect, _) = dossier.apply(&DEATH, "death.benefit-paid", &paid, &ctx);
        assert_eq!(
            effect,
            Effect::StepDone("SURVIVOR_BENEFIT_PAYMENT".to_owned())
        );
        let updated = json!({"dossier_code": "G22.99.08-261117-0021", "status": "DECEASED",
            "updated_at": "2026-11-20T10:05:00+07:00"});
        dossier.apply(&DEATH, "death.population-status-updated", &updated, &ctx);
        assert_eq!(dossier.state, State::Completed);
    }

    #[test]
    fn an_annulment_cancels_an_unpaid_benefit_decision_and_leaves_a_paid_one_standing() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T10:01:00+07:00");
        let with = |id: uuid::Uuid| Context {
            event: Some(id),
            ..ctx
        };
        let mut death = death_submission();
        death["sub_procedures"] = json!([
            "DEATH_REGISTRATION",
            "FUNERAL_ALLOWANCE",
            "SURVIVOR_BENEFIT"
        ]);
        death["declarant"] = json!({"personal_id": "048078002468", "full_name": "Phạm Quốc Tuấn",
                                    "relationship": "CHILD"});
        let (mut dossier, _) = open(&DEATH, &death, &ctx).expect("opened");
        dossier.apply(
            &DEATH,
            "death.civil-registration-completed",
            &death_registered(),
            &ctx,
        );
        let decided = |benefit: &str, number: &str| {
            json!({"dossier_code": "G22.99.08-261117-0021", "benefit_type": benefit,
                   "decision_number": number, "amount_vnd": 1_000_000,
                   "decided_at": "2026-11-20T10:00:00+07:00"})
        };
        let funeral_decision = uuid::Uuid::now_v7();
        dossier.apply(
            &DEATH,
            "death.benefit-decided",
            &decided("FUNERAL_ALLOWANCE", "QD-BHXH-00000001"),
            &with(funeral_decision),
        );
        dossier.apply(
            &DEATH,
            "death.benefit-decided",
            &decided("SURVIVOR_LUMP_SUM", "QD-BHXH-00000002"),
            &with(uuid::Uuid::now_v7()),
        );
        let paid = json!({"dossier_code": "G22.99.08-261117-0021",
            "benefit_type": "SURVIVOR_LUMP_SUM", "decision_number": "QD-BHXH-00000002",
            "paid_at": "2026-11-21T09:00:00+07:00"});
        dossier.apply(&DEATH, "death.benefit-paid", &paid, &ctx);

        let (_, out) = dossier.apply(&DEATH, "death.registration-annulled", &annulment(), &ctx);
        let cancels: Vec<&Value> = out
            .iter()
            .filter(|o| o.event_type == "death.benefit-decision-cancel-requested")
            .map(|o| &o.payload)
            .collect();
        assert_eq!(cancels.len(), 1, "only the unpaid decision: {out:?}");
        assert_eq!(
            (
                &cancels[0]["decision_number"],
                &cancels[0]["reverts_event_id"]
            ),
            (
                &json!("QD-BHXH-00000001"),
                &json!(funeral_decision.to_string())
            )
        );
        let state_of = |dossier: &Instance, name: &str| {
            dossier
                .steps
                .iter()
                .find(|s| s.name == name)
                .map(|s| (s.state, s.error.clone()))
        };
        assert_eq!(
            state_of(&dossier, "SURVIVOR_BENEFIT"),
            Some((
                StepState::Done,
                Some("kept: SURVIVOR_BENEFIT_PAYMENT was done for good".to_owned())
            ))
        );
        let cancelled = json!({"dossier_code": "G22.99.08-261117-0021",
            "reverts_event_id": funeral_decision.to_string(), "benefit_type": "FUNERAL_ALLOWANCE",
            "decision_number": "QD-BHXH-00000001", "reason": "DEATH_REGISTRATION_ANNULLED",
            "cancelled_at": "2026-11-22T10:05:00+07:00"});
        let (effect, _) =
            dossier.apply(&DEATH, "death.benefit-decision-cancelled", &cancelled, &ctx);
        assert_eq!(effect, Effect::StepUndone("FUNERAL_ALLOWANCE".to_owned()));
        assert_eq!(
            state_of(&dossier, "FUNERAL_ALLOWANCE").map(|s| s.0),
            Some(StepState::Undone)
        );
    }

    #[test]
    fn a_benefit_answered_after_the_annulment_is_cancelled_with_its_decision_or_kept_refused() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T10:01:00+07:00");
        let mut death = death_submission();
        death["sub_procedures"] = json!([
            "DEATH_REGISTRATION",
            "FUNERAL_ALLOWANCE",
            "SURVIVOR_BENEFIT"
        ]);
        let (mut dossier, _) = open(&DEATH, &death, &ctx).expect("opened");
        dossier.apply(
            &DEATH,
            "death.civil-registration-completed",
            &death_registered(),
            &ctx,
        );
        // Annulled while social insurance was deciding both: the portal shows processing
        // stopped.
        let (_, out) = dossier.apply(&DEATH, "death.registration-annulled", &annulment(), &ctx);
        let stopped = out
            .iter()
            .find(|o| o.event_type == "dossier.status-changed")
            .expect("the portal told");
        assert_eq!(
            (
                &stopped.payload["from_status"],
                &stopped.payload["to_status"]
            ),
            (&json!(4), &json!(8))
        );
        let decided = json!({"dossier_code": "G22.99.08-261117-0021",
            "benefit_type": "FUNERAL_ALLOWANCE", "decision_number": "QD-BHXH-00000001",
            "amount_vnd": 1_000_000, "decided_at": "2026-11-20T10:00:00+07:00"});
        let late = uuid::Uuid::now_v7();
        let (effect, out) = dossier.apply(
            &DEATH,
            "death.benefit-decided",
            &decided,
            &Context {
                event: Some(late),
                ..ctx
            },
        );
        assert_eq!(
            effect,
            Effect::DoneAfterAnnulment("FUNERAL_ALLOWANCE".to_owned())
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            (
                out[0].event_type.as_str(),
                &out[0].payload["decision_number"],
                &out[0].payload["reverts_event_id"]
            ),
            (
                "death.benefit-decision-cancel-requested",
                &json!("QD-BHXH-00000001"),
                &json!(late.to_string())
            ),
            "the late decision is cancelled, named by what it decided"
        );
        let refused = json!({"dossier_code": "G22.99.08-261117-0021",
            "benefit_type": "SURVIVOR_LUMP_SUM", "reason_code": "NOT_INSURED",
            "refused_at": "2026-11-20T10:00:00+07:00"});
        let (_, out) = dossier.apply(&DEATH, "death.benefit-refused", &refused, &ctx);
        assert!(out.is_empty(), "nothing to undo of a refusal: {out:?}");
        let survivor = dossier
            .steps
            .iter()
            .find(|s| s.name == "SURVIVOR_BENEFIT")
            .expect("the step");
        assert_eq!(survivor.state, StepState::Refused);
    }

    #[test]
    fn repeats_and_answers_nobody_asked_for_change_nothing() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T10:01:00+07:00");
        let (mut instance, _) =
            open(&BIRTH, &submission("2026-11-12", true, false), &ctx).expect("opened");
        instance.apply(
            &BIRTH,
            "birth.civil-registration-completed",
            &registered(),
            &ctx,
        );
        let before = instance.clone();
        let (effect, out) = instance.apply(
            &BIRTH,
            "birth.civil-registration-completed",
            &registered(),
            &ctx,
        );
        assert_eq!(effect, Effect::AlreadyDone("CIVIL_REGISTRATION".into()));
        assert!(out.is_empty());
        let (effect, _) = instance.apply(&BIRTH, "birth.residence-registered", &json!({}), &ctx);
        assert_eq!(
            effect,
            Effect::NotInDossier("RESIDENCE_REGISTRATION".into())
        );
        let failure = json!({"step": "CIVIL_REGISTRATION", "error_code": "TIMEOUT"});
        let (effect, _) = instance.apply(&BIRTH, "birth.step-failed", &failure, &ctx);
        assert_eq!(
            effect,
            Effect::FailureAfterDone("CIVIL_REGISTRATION".into())
        );
        assert_eq!(instance, before);
    }

    #[test]
    fn a_failed_step_waits_visibly_and_completes_when_its_replay_succeeds() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T10:01:00+07:00");
        let (mut instance, _) =
            open(&BIRTH, &submission("2026-11-12", false, false), &ctx).expect("opened");
        let failure = json!({
            "dossier_code": "G22.99.08-261120-0042",
            "step": "CIVIL_REGISTRATION",
            "target_system": "civil-status",
            "error_code": "HTTP",
            "message": "the civil-status system answered HTTP 503"
        });
        let (effect, out) = instance.apply(&BIRTH, "birth.step-failed", &failure, &ctx);
        assert_eq!(effect, Effect::StepFailed("CIVIL_REGISTRATION".into()));
        assert!(out.is_empty());
        assert_eq!(instance.steps[0].state, StepState::Failed);
        assert_eq!(
            instance.steps[0].error.as_deref(),
            Some("HTTP from civil-status: the civil-status system answered HTTP 503")
        );
        assert_eq!(instance.state, State::Running, "nothing ends silently");
        let (_, out) = instance.apply(
            &BIRTH,
            "birth.civil-registration-completed",
            &registered(),
            &ctx,
        );
        assert_eq!(instance.state, State::Completed);
        assert_eq!(instance.steps[0].error, None);
        assert_eq!(statuses(&out), [(4, 9), (9, 10)]);
    }

    #[test]
    fn a_step_past_its_due_time_is_marked_overdue_once() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T09:20:00+07:00");
        let (mut instance, _) =
            open(&BIRTH, &submission("2026-11-12", true, false), &ctx).expect("opened");
        assert!(
            instance
                .mark_overdue(at("2026-11-20T16:59:00+07:00"))
                .is_empty()
        );
        let later = at("2026-11-20T17:01:00+07:00");
        let announced = instance.mark_overdue(later);
        assert_eq!(announced.len(), 1);
        assert_eq!(announced[0].event_type, "dossier.step-overdue");
        assert_eq!(announced[0].payload["step"], "CIVIL_REGISTRATION");
        assert_eq!(announced[0].payload["step_state"], "running");
        assert_eq!(announced[0].payload["due_at"], "2026-11-20T17:00:00+07:00");
        assert!(instance.mark_overdue(later).is_empty(), "marked once");
        assert!(!instance.is_overdue(later), "the appointment is days away");
        assert!(instance.is_overdue(at("2026-11-26T17:01:00+07:00")));
    }

    #[test]
    fn a_submission_without_its_receipt_time_is_refused_naming_the_field() {
        let reference = reference();
        let ctx = context(&reference, "2026-11-20T09:20:00+07:00");
        let mut broken = submission("2026-11-12", true, false);
        broken["received_at"] = json!("yesterday");
        let error = open(&BIRTH, &broken, &ctx).expect_err("refused");
        assert_eq!(error.field, "received_at");
    }
}
