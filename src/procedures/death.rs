//! The death group (Decree 63/2024/ND-CP): the relative chooses 2 to 5 of its procedures; the
//! death is registered (and every agency entitled to know is told once, its acknowledgement
//! kept), then, in parallel, the population database marks the person deceased (always), the
//! permanent residence is deleted and the benefits chosen are decided and paid. VIETNAM.md
//! gives no deadline per branch ("verify"): the hub reads the registration as due the next
//! working day, the updates of the national databases in one and two working days, a
//! benefit's decision in three and its payment in one more, within the group's five.
//!
//! The population and residence steps are asked for by commands that name the deceased and the
//! registration. A death registered before the dossier (the relative did not choose it) leaves
//! the registration null: the hub does not know it, the national systems refuse a request
//! without it, and the steps fail visibly for an officer to complete.
//!
//! When the civil-status system annuls the registration (`death.registration-annulled`), a
//! residence deleted for it is restored; nothing more is started.
//!
//! Each social-insurance benefit chosen is decided (or refused, with the reason: that branch
//! ends, the others stand) and a decided one is then paid, exactly as decided, into the
//! account the dossier gives; the declarant is the beneficiary.
//!
//! When the registration is annulled, a decision not yet paid is cancelled; a paid one stands
//! (recovering a payment is a procedure of its own).
//!
//! Not yet here: restoring the population
//! database's status (its sandbox has no way to, yet); the document of a residence deletion,
//! which needs its event to name it.

use serde_json::{Value, json};

use super::definition::{
    Command, Compensation, Concerns, Definition, DocumentDef, Fact, Inputs, Refusal, Requested,
    ResultDef, StepDef, ToldDef,
};

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
    extended_by: None,
    event_date: "/deceased/death_date",
    // Law on Civil Status 60/2014/QH13, art. 33: within 15 days of the death.
    late_after_days: 15,
    // The death group's form asks for no copies, and the group has no payment step yet: a late
    // death registration's fee is not collected through the hub.
    copies: None,
    // Notice numbers are per issuer (a commune police, a hospital): the deceased tells whose it
    // is.
    documents: &[DocumentDef {
        event_type: "death.notice-issued",
        name: "DEATH_NOTICE",
        number: "/notice_number",
        named_by: "death_notice_number",
        identity: Some(Fact {
            document: "/personal_id",
            submission: "/deceased/personal_id",
            what: "the deceased's personal ID",
        }),
        facts: &[Fact {
            document: "/death_date",
            submission: "/deceased/death_date",
            what: "the date of death",
        }],
    }],
    // Tell Us Once: every agency granted the right to learn of registered deaths (a tax office,
    // the voters' roll) is handed the registration, and the dossier shows who confirmed it.
    told: Some(ToldDef {
        event_type: "death.civil-registration-completed",
        topic: "lienthong.death",
    }),
    // The death form's fields are the deceased's and the declarant's: not yet counted.
    prefill: None,
    steps: &[
        StepDef {
            name: "CIVIL_REGISTRATION",
            after: &[],
            requested: Requested::AnyOf(CHOSEN, &["DEATH_REGISTRATION"]),
            // The civil-status connector takes the submission itself.
            command: None,
            concerns: None,
            refused: None,
            done_on: "death.civil-registration-completed",
            working_days: 1,
            portal_status: None,
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
                due_field: "due_at",
                content: about_the_death,
            }),
            concerns: None,
            refused: None,
            done_on: "death.population-status-updated",
            working_days: 1,
            portal_status: None,
            // A person marked deceased under a death registration since annulled is living
            // again in the population database.
            compensation: Some(Compensation {
                command: Command {
                    event_type: "death.population-status-revert-requested",
                    due_field: "due_at",
                    content: undo_for_the_annulment,
                },
                done_on: "death.population-status-reverted",
            }),
            results: &[],
        },
        StepDef {
            name: "RESIDENCE_DELETION",
            after: &["CIVIL_REGISTRATION"],
            requested: Requested::AnyOf(CHOSEN, &["RESIDENCE_DELETION"]),
            command: Some(Command {
                event_type: "death.residence-deletion-requested",
                due_field: "due_at",
                content: about_the_death,
            }),
            concerns: None,
            refused: None,
            done_on: "death.residence-deleted",
            working_days: 2,
            portal_status: None,
            // Law on Residence 68/2020/QH14: a residence deleted for a death registration since
            // annulled is restored.
            compensation: Some(Compensation {
                command: Command {
                    event_type: "death.residence-deletion-revert-requested",
                    due_field: "due_at",
                    content: undo_for_the_annulment,
                },
                done_on: "death.residence-deletion-reverted",
            }),
            results: &[],
        },
        // Social insurance decides the funeral allowance and the survivor lump sum each on its
        // own, from the contributions it holds, then pays each decided one into the
        // beneficiary's account (VIETNAM.md gives no deadline: three working days to decide,
        // one to pay, within the group's five).
        StepDef {
            name: "FUNERAL_ALLOWANCE",
            after: &["CIVIL_REGISTRATION"],
            requested: Requested::AnyOf(CHOSEN, &["FUNERAL_ALLOWANCE"]),
            command: Some(Command {
                event_type: "death.benefit-decision-requested",
                due_field: "due_at",
                content: funeral_allowance_decision,
            }),
            done_on: "death.benefit-decided",
            concerns: Some(Concerns::Value("/benefit_type", "FUNERAL_ALLOWANCE")),
            refused: Some(Refusal::Event {
                event: "death.benefit-refused",
                reason: "/reason_code",
            }),
            working_days: 3,
            portal_status: None,
            // Law on Social Insurance 41/2024/QH15: a decision resting on an annulled death
            // registration is cancelled while unpaid (a paid one stands; see the engine).
            compensation: Some(Compensation {
                command: Command {
                    event_type: "death.benefit-decision-cancel-requested",
                    due_field: "due_at",
                    content: cancel_funeral_allowance,
                },
                done_on: "death.benefit-decision-cancelled",
            }),
            results: &[ResultDef {
                result_type: "FUNERAL_ALLOWANCE_DECISION",
                reference: "/decision_number",
                issued_at: "/decided_at",
            }],
        },
        StepDef {
            name: "FUNERAL_ALLOWANCE_PAYMENT",
            after: &["FUNERAL_ALLOWANCE"],
            requested: Requested::AnyOf(CHOSEN, &["FUNERAL_ALLOWANCE"]),
            command: Some(Command {
                event_type: "death.benefit-payment-requested",
                due_field: "due_at",
                content: funeral_allowance_payment,
            }),
            done_on: "death.benefit-paid",
            concerns: Some(Concerns::Value("/benefit_type", "FUNERAL_ALLOWANCE")),
            refused: None,
            working_days: 1,
            portal_status: None,
            compensation: None,
            results: &[],
        },
        StepDef {
            name: "SURVIVOR_BENEFIT",
            after: &["CIVIL_REGISTRATION"],
            requested: Requested::AnyOf(CHOSEN, &["SURVIVOR_BENEFIT"]),
            command: Some(Command {
                event_type: "death.benefit-decision-requested",
                due_field: "due_at",
                content: survivor_lump_sum_decision,
            }),
            done_on: "death.benefit-decided",
            concerns: Some(Concerns::Value("/benefit_type", "SURVIVOR_LUMP_SUM")),
            refused: Some(Refusal::Event {
                event: "death.benefit-refused",
                reason: "/reason_code",
            }),
            working_days: 3,
            portal_status: None,
            // Law on Social Insurance 41/2024/QH15: a decision resting on an annulled death
            // registration is cancelled while unpaid (a paid one stands; see the engine).
            compensation: Some(Compensation {
                command: Command {
                    event_type: "death.benefit-decision-cancel-requested",
                    due_field: "due_at",
                    content: cancel_survivor_benefit,
                },
                done_on: "death.benefit-decision-cancelled",
            }),
            results: &[ResultDef {
                result_type: "SURVIVOR_BENEFIT_DECISION",
                reference: "/decision_number",
                issued_at: "/decided_at",
            }],
        },
        StepDef {
            name: "SURVIVOR_BENEFIT_PAYMENT",
            after: &["SURVIVOR_BENEFIT"],
            requested: Requested::AnyOf(CHOSEN, &["SURVIVOR_BENEFIT"]),
            command: Some(Command {
                event_type: "death.benefit-payment-requested",
                due_field: "due_at",
                content: survivor_lump_sum_payment,
            }),
            done_on: "death.benefit-paid",
            concerns: Some(Concerns::Value("/benefit_type", "SURVIVOR_LUMP_SUM")),
            refused: None,
            working_days: 1,
            portal_status: None,
            compensation: None,
            results: &[],
        },
        // The social-protection authority's funeral support: no connector asks it yet, so the
        // step waits, visibly, for its decision.
        StepDef {
            name: "FUNERAL_SUPPORT",
            after: &["CIVIL_REGISTRATION"],
            requested: Requested::AnyOf(CHOSEN, &["FUNERAL_SUPPORT"]),
            command: None,
            done_on: "death.benefit-decided",
            concerns: Some(Concerns::Value("/benefit_type", "FUNERAL_SUPPORT")),
            refused: Some(Refusal::Event {
                event: "death.benefit-refused",
                reason: "/reason_code",
            }),
            working_days: 5,
            portal_status: None,
            compensation: None,
            results: &[ResultDef {
                result_type: "FUNERAL_SUPPORT_DECISION",
                reference: "/decision_number",
                issued_at: "/decided_at",
            }],
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

fn funeral_allowance_decision(inputs: &Inputs) -> Value {
    benefit_decision(inputs, "FUNERAL_ALLOWANCE")
}

fn survivor_lump_sum_decision(inputs: &Inputs) -> Value {
    benefit_decision(inputs, "SURVIVOR_LUMP_SUM")
}

/// One benefit to decide: for whose death, on which registration, for whom and paid where
/// (the relative who submitted the dossier, into the account it gives).
fn benefit_decision(inputs: &Inputs, benefit: &str) -> Value {
    let mut content = about_the_death(inputs);
    content["benefit_type"] = json!(benefit);
    content["beneficiary"] = beneficiary(inputs);
    content["beneficiary_account"] = inputs.submitted("/beneficiary_account");
    content
}

fn beneficiary(inputs: &Inputs) -> Value {
    json!({
        "personal_id": inputs.submitted("/declarant/personal_id"),
        "full_name": inputs.submitted("/declarant/full_name"),
        "relationship": inputs.submitted("/declarant/relationship"),
    })
}

fn funeral_allowance_payment(inputs: &Inputs) -> Value {
    payment(inputs, "FUNERAL_ALLOWANCE")
}

fn survivor_lump_sum_payment(inputs: &Inputs) -> Value {
    payment(inputs, "SURVIVOR_BENEFIT")
}

/// Exactly what `decision` decided, paid to whom it names, into the dossier's account.
fn payment(inputs: &Inputs, decision: &str) -> Value {
    json!({
        "benefit_type": inputs.result(decision, "/benefit_type"),
        "decision_number": inputs.result(decision, "/decision_number"),
        "amount_vnd": inputs.result(decision, "/amount_vnd"),
        "beneficiary": beneficiary(inputs),
        "beneficiary_account": inputs.submitted("/beneficiary_account"),
    })
}

fn cancel_funeral_allowance(inputs: &Inputs) -> Value {
    cancellation(inputs, "FUNERAL_ALLOWANCE")
}

fn cancel_survivor_benefit(inputs: &Inputs) -> Value {
    cancellation(inputs, "SURVIVOR_BENEFIT")
}

/// The decision `step` made, to cancel because the registration it rests on was annulled.
fn cancellation(inputs: &Inputs, step: &str) -> Value {
    let mut content = undo_for_the_annulment(inputs);
    if let Value::Object(fields) = &mut content {
        fields.remove("registration");
    }
    content["benefit_type"] = inputs.result(step, "/benefit_type");
    content["decision_number"] = inputs.result(step, "/decision_number");
    content
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
