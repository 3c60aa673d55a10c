//! The death group (Decree 63/2024/ND-CP): the relative chooses 2 to 5 of its procedures; the
//! death is registered, then, in parallel, the population database marks the person deceased
//! (always: every subscribed agency is told once), the permanent residence is deleted and the
//! benefits chosen are decided. VIETNAM.md gives no deadline per branch ("verify"): the hub
//! reads the registration as due the next working day, the updates of the national databases in
//! one and two working days, the benefit decision in the group's five.
//!
//! Not yet here: paying a decided benefit and the compensations of an annulled registration
//! (residence deletion reverted, an unpaid decision cancelled), which need commands the engine
//! publishes; the documents of a residence deletion and of benefit decisions, which need their
//! events to name them.

use super::definition::{Definition, Requested, ResultDef, StepDef};

const CHOSEN: &str = "/sub_procedures";

pub static DEATH: Definition = Definition {
    group: "death",
    intake: "death.dossier-submitted",
    accepted: "death.dossier-accepted",
    result: "death.result-returned",
    step_failed: "death.step-failed",
    working_days: 5,
    event_date: "/deceased/death_date",
    // Law on Civil Status 60/2014/QH13, art. 33: within 15 days of the death.
    late_after_days: 15,
    steps: &[
        StepDef {
            name: "CIVIL_REGISTRATION",
            after: &[],
            requested: Requested::AnyOf(CHOSEN, &["DEATH_REGISTRATION"]),
            done_on: "death.civil-registration-completed",
            working_days: 1,
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
            done_on: "death.population-status-updated",
            working_days: 1,
            results: &[],
        },
        StepDef {
            name: "RESIDENCE_DELETION",
            after: &["CIVIL_REGISTRATION"],
            requested: Requested::AnyOf(CHOSEN, &["RESIDENCE_DELETION"]),
            done_on: "death.residence-deleted",
            working_days: 2,
            results: &[],
        },
        StepDef {
            name: "BENEFIT_DECISION",
            after: &["CIVIL_REGISTRATION"],
            requested: Requested::AnyOf(
                CHOSEN,
                &["FUNERAL_ALLOWANCE", "SURVIVOR_BENEFIT", "FUNERAL_SUPPORT"],
            ),
            done_on: "death.benefit-decided",
            working_days: 5,
            results: &[],
        },
    ],
};
