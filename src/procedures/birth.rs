//! The birth group (Decree 63/2024/ND-CP, amended by Decree 301/2026/ND-CP): one dossier, and
//! the hub sees it through civil registration, then the child's permanent residence, health
//! insurance card and ID card in parallel, as the citizen asked. Deadlines come from
//! `../shared/domain/VIETNAM.md` (marked "verify" there): the whole group in 3 working days,
//! residence and card in 2 each, civil registration the same working day. No separate limit is
//! known for the child's ID card; it gets the group's.

use serde_json::{Value, json};

use super::definition::{Command, Definition, Inputs, Requested, ResultDef, StepDef};

pub static BIRTH: Definition = Definition {
    group: "birth",
    intake: "birth.dossier-submitted",
    accepted: "birth.dossier-accepted",
    result: "birth.result-returned",
    step_failed: "birth.step-failed",
    working_days: 3,
    event_date: "/child/birth_date",
    // Law on Civil Status 60/2014/QH13, art. 15: within 60 days of the birth.
    late_after_days: 60,
    steps: &[
        StepDef {
            name: "CIVIL_REGISTRATION",
            after: &[],
            requested: Requested::Always,
            // The civil-status connector takes the submission itself.
            command: None,
            done_on: "birth.civil-registration-completed",
            working_days: 0,
            results: &[
                ResultDef {
                    result_type: "BIRTH_EXTRACT",
                    reference: "/e_extract_reference",
                    issued_at: "/registered_at",
                },
                ResultDef {
                    result_type: "PERSONAL_ID",
                    reference: "/child/personal_id",
                    issued_at: "/registered_at",
                },
            ],
        },
        StepDef {
            name: "RESIDENCE_REGISTRATION",
            after: &["CIVIL_REGISTRATION"],
            requested: Requested::Flag("/requested_services/permanent_residence"),
            // Waits for the residence block of the submission (household, head's consent).
            command: None,
            done_on: "birth.residence-registered",
            working_days: 2,
            results: &[ResultDef {
                result_type: "PERMANENT_RESIDENCE",
                reference: "/household_number",
                issued_at: "/registered_at",
            }],
        },
        StepDef {
            name: "HEALTH_INSURANCE_CARD",
            after: &["CIVIL_REGISTRATION"],
            requested: Requested::Flag("/requested_services/health_insurance"),
            command: Some(Command {
                event_type: "birth.health-insurance-card-requested",
                content: card_request,
            }),
            done_on: "birth.health-insurance-card-issued",
            working_days: 2,
            results: &[ResultDef {
                result_type: "HEALTH_INSURANCE_CARD",
                reference: "/card_number",
                issued_at: "/issued_at",
            }],
        },
        StepDef {
            name: "ID_CARD",
            after: &["CIVIL_REGISTRATION"],
            requested: Requested::Flag("/requested_services/id_card"),
            // No system takes it through the hub yet: the step waits, visibly, for an answer.
            command: None,
            done_on: "birth.id-card-issued",
            working_days: 3,
            results: &[ResultDef {
                result_type: "ID_CARD",
                reference: "/card_number",
                issued_at: "/issued_at",
            }],
        },
    ],
};

/// The card is issued to the registered child, in the province where the dossier was filed.
fn card_request(inputs: &Inputs) -> Value {
    json!({
        "province_code": inputs.submitted("/province_code"),
        "child": inputs.result("CIVIL_REGISTRATION", "/child"),
    })
}
