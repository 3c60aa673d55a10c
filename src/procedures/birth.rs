//! The birth group (Decree 63/2024/ND-CP, amended by Decree 301/2026/ND-CP): one dossier, and
//! the hub sees it through civil registration (after the officer's verification, for a late
//! registration without a birth certificate), then the child's permanent residence, health
//! insurance card and ID card in parallel, as the citizen asked; the residence also waits for
//! the household head's consent when the head is not a parent. Deadlines come from
//! `../shared/domain/VIETNAM.md` (marked "verify" there): the whole group in 3 working days
//! (5 when verified first), residence and card in 2 each, civil registration the same working
//! day. No separate limit is known for the child's ID card; it gets the group's. Registering a
//! birth on time is free; a late registration and copies of the extract are charged
//! (`crate::domain::fees`), and paid on PayGov within the group.

use serde_json::{Value, json};

use super::definition::{
    Command, Concerns, Definition, DocumentDef, Extension, Fact, FormField, Inputs, PrefillDef,
    Refusal, Requested, ResultDef, Source, StepDef,
};
use super::instance::portal;

pub static BIRTH: Definition = Definition {
    group: "birth",
    intake: "birth.dossier-submitted",
    accepted: "birth.dossier-accepted",
    result: "birth.result-returned",
    step_failed: "birth.step-failed",
    supplement_requested: "birth.supplement-requested",
    supplement_provided: "birth.supplement-provided",
    // Annulling a birth registration would withdraw a personal ID and a card: not through the
    // hub yet.
    annulled_on: None,
    working_days: 3,
    // A late registration the officer must verify: 5 (Decree 123/2015/ND-CP, art. 26; "verify"
    // in VIETNAM.md).
    extended_by: Some(Extension {
        step: "VERIFICATION",
        working_days: 5,
    }),
    event_date: "/child/birth_date",
    // Law on Civil Status 60/2014/QH13, art. 15: within 60 days of the birth.
    late_after_days: 60,
    copies: Some("/extract_copies"),
    // Certificate numbers are per health facility: the mother tells whose it is.
    documents: &[DocumentDef {
        event_type: "birth.e-birth-certificate-issued",
        name: "BIRTH_CERTIFICATE",
        number: "/certificate_number",
        named_by: "birth_certificate_no",
        identity: Some(Fact {
            document: "/mother/personal_id",
            submission: "/mother/personal_id",
            what: "the mother's personal ID",
        }),
        facts: &[
            Fact {
                document: "/child/birth_date",
                submission: "/child/birth_date",
                what: "the child's date of birth",
            },
            Fact {
                document: "/child/sex",
                submission: "/child/sex",
                what: "the child's sex",
            },
        ],
    }],
    // Those told of a birth are the steps' own systems.
    told: None,
    prefill: Some(PrefillDef {
        found: "birth.citizen-found",
        roles: "/roles",
        person: "/personal_id",
        identities: &[
            ("MOTHER", "/mother/personal_id"),
            ("FATHER", "/father/personal_id"),
            ("DECLARANT", "/declarant/personal_id"),
        ],
        fields: FORM,
    }),
    steps: &[
        // A human step: a late registration without the health facility's birth certificate
        // is verified by the civil-status officer (witnesses, the place of birth) before it is
        // registered. The officer's software answers through the hub with
        // birth.verification-recorded; NOT_CONFIRMED ends the dossier's registration and every
        // step after it, with the reason. Its two working days are what the group gains.
        StepDef {
            name: "VERIFICATION",
            after: &[],
            requested: Requested::LateWithout("birth_certificate_no"),
            command: None,
            concerns: None,
            refused: Some(Refusal::Answer {
                at: "/outcome",
                refusal: "NOT_CONFIRMED",
                reason: Some("/reason_code"),
            }),
            done_on: "birth.verification-recorded",
            working_days: 2,
            portal_status: None,
            compensation: None,
            results: &[],
        },
        StepDef {
            name: "CIVIL_REGISTRATION",
            after: &["VERIFICATION"],
            requested: Requested::Always,
            // The civil-status connector takes the submission itself.
            command: None,
            concerns: None,
            refused: None,
            done_on: "birth.civil-registration-completed",
            working_days: 0,
            portal_status: None,
            compensation: None,
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
        // A human step: the household head says, in VNeID or in person, whether the child may
        // join the household. Asked by the one-stop system; answered through the hub by
        // birth.household-head-consent-recorded. VIETNAM.md gives no limit of its own: the
        // residence step's two working days.
        StepDef {
            name: "HOUSEHOLD_HEAD_CONSENT",
            // The head is asked about a birth whose facts stand (verified, when it must be).
            after: &["VERIFICATION"],
            requested: Requested::When(head_must_consent),
            command: None,
            concerns: None,
            refused: Some(Refusal::Answer {
                at: "/decision",
                refusal: "REFUSED",
                reason: None,
            }),
            done_on: "birth.household-head-consent-recorded",
            working_days: 2,
            portal_status: None,
            compensation: None,
            results: &[],
        },
        StepDef {
            name: "RESIDENCE_REGISTRATION",
            after: &["CIVIL_REGISTRATION", "HOUSEHOLD_HEAD_CONSENT"],
            requested: Requested::Flag("/requested_services/permanent_residence"),
            command: Some(Command {
                event_type: "birth.residence-registration-requested",
                due_field: "due_at",
                content: residence_request,
            }),
            concerns: None,
            refused: None,
            done_on: "birth.residence-registered",
            working_days: 2,
            portal_status: None,
            compensation: None,
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
                due_field: "due_at",
                content: card_request,
            }),
            concerns: None,
            refused: None,
            done_on: "birth.health-insurance-card-issued",
            working_days: 2,
            portal_status: None,
            compensation: None,
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
            // The card carries what the card for social insurance does: who was registered,
            // and where.
            command: Some(Command {
                event_type: "birth.id-card-requested",
                due_field: "due_at",
                content: card_request,
            }),
            concerns: None,
            refused: None,
            done_on: "birth.id-card-issued",
            working_days: 3,
            portal_status: None,
            compensation: None,
            results: &[ResultDef {
                result_type: "ID_CARD",
                reference: "/card_number",
                issued_at: "/issued_at",
            }],
        },
        // The fee, only where one applies (a late registration, copies of the extract): asked
        // of PayGov once the birth is registered (nothing is charged for a registration that did
        // not happen), under the step's own key, so the answer to a payment the one-stop system
        // asked for itself is not taken for it. The portal shows "payment requested" (6) until
        // it is paid. A payment cancelled, or not made before it expires, ends this branch (no
        // copies), the other results stand. VIETNAM.md gives no limit: the residence step's two
        // working days, within the group's three, named as the request's `expires_at` (PayGov
        // takes no payment after it).
        StepDef {
            name: "PAYMENT",
            after: &["CIVIL_REGISTRATION"],
            requested: Requested::Charged,
            command: Some(Command {
                event_type: "payment.requested",
                due_field: "expires_at",
                content: fee_request,
            }),
            concerns: Some(Concerns::CommandKey("idempotency_key")),
            refused: Some(Refusal::Event {
                event: "payment.failed",
                reason: "/reason_code",
            }),
            done_on: "payment.confirmed",
            working_days: 2,
            portal_status: Some(portal::PAYMENT_REQUESTED),
            compensation: None,
            results: &[ResultDef {
                result_type: "FEE_PAYMENT",
                reference: "/platform_transaction_id",
                issued_at: "/paid_at",
            }],
        },
    ],
};

/// The birth form (tờ khai đăng ký khai sinh, Circular 04/2020/TT-BTP, with the interconnected
/// procedures' fields): what the citizen would type, and where national data that passes
/// through the hub holds it. The child's facts are the health facility's certificate's; the
/// parents' and the household's, the population database's answers about the people the form
/// names. A parent's ID number counts as filled in when that parent declares (the identity
/// they signed in with, which the population database confirmed) or the certificate names the
/// mother. The choices (services asked for, copies) are not typing, and are not counted.
const CERTIFICATE: &str = "BIRTH_CERTIFICATE";
const FORM: &[FormField] = &[
    field(
        "/child/full_name",
        &[Source::Document(CERTIFICATE, "/child/intended_name")],
    ),
    field("/child/sex", &[Source::Document(CERTIFICATE, "/child/sex")]),
    field(
        "/child/birth_date",
        &[Source::Document(CERTIFICATE, "/child/birth_date")],
    ),
    field(
        "/child/birth_place",
        &[Source::Document(CERTIFICATE, "/facility_name")],
    ),
    // A child takes a parent's ethnicity and nationality (Law on Civil Status, art. 15 and
    // Law on Nationality, art. 15-16, where the parents agree).
    field(
        "/child/ethnicity_code",
        &[
            Source::Person("MOTHER", "/ethnicity_code"),
            Source::Person("FATHER", "/ethnicity_code"),
        ],
    ),
    field(
        "/child/nationality",
        &[
            Source::Person("MOTHER", "/nationality"),
            Source::Person("FATHER", "/nationality"),
        ],
    ),
    field(
        "/mother/full_name",
        &[
            Source::Person("MOTHER", "/full_name"),
            Source::Document(CERTIFICATE, "/mother/full_name"),
        ],
    ),
    field(
        "/mother/personal_id",
        &[
            Source::Person("DECLARANT", "/personal_id"),
            Source::Document(CERTIFICATE, "/mother/personal_id"),
        ],
    ),
    field(
        "/mother/birth_date",
        &[
            Source::Person("MOTHER", "/birth_date"),
            Source::Document(CERTIFICATE, "/mother/birth_date"),
        ],
    ),
    field(
        "/mother/ethnicity_code",
        &[Source::Person("MOTHER", "/ethnicity_code")],
    ),
    field(
        "/mother/nationality",
        &[Source::Person("MOTHER", "/nationality")],
    ),
    field(
        "/father/full_name",
        &[Source::Person("FATHER", "/full_name")],
    ),
    field(
        "/father/personal_id",
        &[Source::Person("DECLARANT", "/personal_id")],
    ),
    field(
        "/father/birth_date",
        &[Source::Person("FATHER", "/birth_date")],
    ),
    field(
        "/father/ethnicity_code",
        &[Source::Person("FATHER", "/ethnicity_code")],
    ),
    field(
        "/father/nationality",
        &[Source::Person("FATHER", "/nationality")],
    ),
    field(
        "/declarant/full_name",
        &[Source::Person("DECLARANT", "/full_name")],
    ),
    field(
        "/declarant/personal_id",
        &[Source::Person("DECLARANT", "/personal_id")],
    ),
    field("/declarant/relationship", &[]),
    field("/birth_certificate_no", &[]),
    // The child joins a parent's household, as the population database records it.
    field(
        "/residence/household_number",
        &[
            Source::Person("MOTHER", "/household/number"),
            Source::Person("FATHER", "/household/number"),
        ],
    ),
    field(
        "/residence/head_personal_id",
        &[
            Source::Person("MOTHER", "/household/head_personal_id"),
            Source::Person("FATHER", "/household/head_personal_id"),
        ],
    ),
    field("/residence/relationship_to_head", &[]),
    field(
        "/residence/province_code",
        &[
            Source::Person("MOTHER", "/permanent_residence/province_code"),
            Source::Person("FATHER", "/permanent_residence/province_code"),
        ],
    ),
    field(
        "/residence/commune_code",
        &[
            Source::Person("MOTHER", "/permanent_residence/commune_code"),
            Source::Person("FATHER", "/permanent_residence/commune_code"),
        ],
    ),
    field(
        "/residence/address_line",
        &[
            Source::Person("MOTHER", "/permanent_residence/address"),
            Source::Person("FATHER", "/permanent_residence/address"),
        ],
    ),
];

const fn field(at: &'static str, from: &'static [Source]) -> FormField {
    FormField { at, from }
}

/// The dossier's charge, paid by its declarant on PayGov.
fn fee_request(inputs: &Inputs) -> Value {
    json!({
        "platform": "PAYGOV",
        "fee_lines": inputs.charged("/fee_lines"),
        "total_amount_vnd": inputs.charged("/total_amount_vnd"),
        "beneficiary_account": inputs.charged("/beneficiary_account"),
        "payer": {
            "full_name": inputs.submitted("/declarant/full_name"),
            "personal_id": inputs.submitted("/declarant/personal_id"),
            "phone": null,
        },
    })
}

/// The card is issued to the registered child, in the province where the dossier was filed.
fn card_request(inputs: &Inputs) -> Value {
    json!({
        "province_code": inputs.submitted("/province_code"),
        "child": inputs.result("CIVIL_REGISTRATION", "/child"),
    })
}

/// The Law on Residence (68/2020/QH14, art. 20) asks the consent of the household head the
/// child joins, unless the head is one of the child's parents.
fn head_must_consent(submission: &Value) -> bool {
    let Some(head) = submission
        .pointer("/residence/head_personal_id")
        .and_then(Value::as_str)
    else {
        return false;
    };
    let parent = |who: &str| {
        submission
            .pointer(&format!("/{who}/personal_id"))
            .and_then(Value::as_str)
            == Some(head)
    };
    submission.pointer("/requested_services/permanent_residence") == Some(&Value::Bool(true))
        && !parent("mother")
        && !parent("father")
}

/// The registered child joins the household the dossier names, with the head's consent when
/// one was needed (null otherwise).
fn residence_request(inputs: &Inputs) -> Value {
    let consent = match inputs.result("HOUSEHOLD_HEAD_CONSENT", "/decided_at") {
        Value::Null => Value::Null,
        decided_at => json!({
            "head_personal_id": inputs.result("HOUSEHOLD_HEAD_CONSENT", "/household_head/personal_id"),
            "decided_at": decided_at,
            "channel": inputs.result("HOUSEHOLD_HEAD_CONSENT", "/channel"),
        }),
    };
    json!({
        "child": inputs.result("CIVIL_REGISTRATION", "/child"),
        "mother_personal_id": inputs.submitted("/mother/personal_id"),
        "father_personal_id": inputs.submitted("/father/personal_id"),
        "residence": inputs.submitted("/residence"),
        "head_consent": consent,
    })
}
