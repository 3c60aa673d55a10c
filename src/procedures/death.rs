//! The death group (Decree 63/2024/ND-CP): the relative chooses 2 to 5 of its procedures; the
//! death is registered, then, in parallel, the population database marks the person deceased
//! (always: every subscribed agency is told once), the permanent residence is deleted and the
//! benefits chosen are decided. VIETNAM.md gives no deadline per branch ("verify"): the hub
//! reads the registration as due the next working day, the updates of the national databases in
//! one and two working days, the benefit decision in the group's five.
//!
//! The population and residence steps are asked for by commands that name the deceased and the
//! registration. A death registered before the dossier (the relative did not choose it) leaves
//! the registration null: the hub does not know it, the national systems refuse a request
//! without it, and the steps fail visibly for an officer to complete.
//!
//! When the civil-status system annuls the registration (`death.registration-annulled`), a
//! residence deleted for it is restored; nothing more is started.
//!
//! Not yet here: the benefit command (it needs the beneficiary's account and the social
//! insurance record), paying a decided benefit and cancelling an unpaid decision on annulment;
//! restoring the population database's status (its sandbox has no way to, yet); the documents
//! of a residence deletion and of benefit decisions, which need their events to name them.

use serde_json::{Value, json};

use super::definition::{Command, Compensation, Definition, Inputs, Requested, ResultDef, StepDef};

const CHOSEN: &str = "/sub_procedures";

pub static DEATH: Definition = Definition {
    group: "death",
    intake: "death.dossier-submitted",
    accepted: "death.dossier-accepted",
    result: "death.result-returned",
    step_failed: "death.step-failed",
    supplement_requested: "death.supplement-requested",
    supplement_provided: "death.supplement-provided",
    annulled_on: Some("death.registration-annulled"),
    working_days: 5,
    event_date: "/deceased/death_date",
    // Law on Civil Status 60/2014/QH13, art. 33: within 15 days of the death.
    late_after_days: 15,
    steps: &[
        StepDef {
            name: "CIVIL_REGISTRATION",
            after: &[],
            requested: Requested::AnyOf(CHOSEN, &["DEATH_REGISTRATION"]),
            // The civil-status connector takes the submission itself.
            command: None,
            refused_if: None,
            done_on: "death.civil-registration-completed",
            working_days: 1,
            compensation: None,
            results: &[ResultDef {
                result_type: "DEATH_EXTRACT",
                reference: "/e_extract_reference",
                issued_at: "/registered_at",
            }],
        },
        StepDef {
            name: "POPULATION_STATUS",
            after: &["CIVIL_REGISTRATION"],
            requested: Requested::Always,
            command: Some(Command {
                event_type: "death.population-status-update-requested",
                content: about_the_death,
            }),
            refused_if: None,
            done_on: "death.population-status-updated",
            working_days: 1,
            compensation: None,
            results: &[],
        },
        StepDef {
            name: "RESIDENCE_DELETION",
            after: &["CIVIL_REGISTRATION"],
            requested: Requested::AnyOf(CHOSEN, &["RESIDENCE_DELETION"]),
            command: Some(Command {
                event_type: "death.residence-deletion-requested",
                content: about_the_death,
            }),
            refused_if: None,
            done_on: "death.residence-deleted",
            working_days: 2,
            // Law on Residence 68/2020/QH14: a residence deleted for a death registration since
            // annulled is restored.
            compensation: Some(Compensation {
                command: Command {
                    event_type: "death.residence-deletion-revert-requested",
                    content: undo_for_the_annulment,
                },
                done_on: "death.residence-deletion-reverted",
            }),
            results: &[],
        },
        StepDef {
            name: "BENEFIT_DECISION",
            after: &["CIVIL_REGISTRATION"],
            requested: Requested::AnyOf(
                CHOSEN,
                &["FUNERAL_ALLOWANCE", "SURVIVOR_BENEFIT", "FUNERAL_SUPPORT"],
            ),
            // No benefit connector yet: the step waits, visibly, for a decision.
            command: None,
            refused_if: None,
            done_on: "death.benefit-decided",
            working_days: 5,
            compensation: None,
            results: &[],
        },
    ],
};

/// Who died and the registration that says so (null when it was registered before this
/// dossier).
fn about_the_death(inputs: &Inputs) -> Value {
    json!({
        "deceased": {
            "personal_id": inputs.submitted("/deceased/personal_id"),
            "full_name": inputs.submitted("/deceased/full_name"),
            "death_date": inputs.submitted("/deceased/death_date"),
        },
        "registration": inputs.result_fields(
            "CIVIL_REGISTRATION",
            &[
                "registration_number",
                "registration_book",
                "registering_agency_code",
                "registered_at",
                "e_extract_reference",
            ],
        ),
    })
}

/// Who the annulled registration named, which registration, and the decision that annulled it.
fn undo_for_the_annulment(inputs: &Inputs) -> Value {
    json!({
        "deceased": {"personal_id": inputs.annulment("/deceased/personal_id")},
        "registration": {
            "registration_number": inputs.annulment("/registration_number"),
            "registering_agency_code": inputs.annulment("/registering_agency_code"),
        },
        "annulment": {
            "decision_reference": inputs.annulment("/decision_reference"),
            "annulled_at": inputs.annulment("/annulled_at"),
            "reason_code": inputs.annulment("/reason_code"),
        },
    })
}
