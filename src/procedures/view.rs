//! What officials and operators see of a dossier (`lienthong dossiers`, the gRPC
//! `DossierService`): its state, steps with due times, the documents each yielded, its
//! timeline and, for a group that tells agencies once, who has confirmed. Personal ID numbers
//! among the documents are masked: the full number goes to the systems entitled to it in
//! `result-returned`, not to every screen.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::Value;

use super::instance::{Filled, Instance, Prefill, Step, Supplement};
use super::store::{self, Entry};
use crate::access;
use crate::audit::{self, Told};
use crate::db::DbError;

#[derive(Debug, Clone, Serialize)]
pub struct DossierView {
    pub dossier_code: String,
    pub group: String,
    pub procedure_code: String,
    pub state: &'static str,
    /// The national portal's TrangThaiHoSo (1 to 10).
    pub portal_status: u8,
    pub received_at: DateTime<Utc>,
    pub accepted_at: DateTime<Utc>,
    /// The appointment; `None` where the holiday calendar does not cover its year.
    pub due_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Running past its appointment, or past the due time of a supplement it waits for.
    pub overdue: bool,
    /// The supplement it waits for (portal status 5), if it waits for one.
    pub supplement: Option<Supplement>,
    /// How much of the form was filled in from national data, if the submission said.
    pub prefill: Option<Prefill>,
    /// How much of the form holds what national data told through the hub, as the hub counts
    /// it (groups that count it).
    pub filled: Option<Filled>,
    pub steps: Vec<StepView>,
    /// Empty in lists.
    pub timeline: Vec<Entry>,
    /// Tell Us Once: every agency entitled to the group's told event, and whether it was
    /// handed the dossier's and acknowledged it. Empty in lists, and for groups that tell none.
    pub told: Vec<Told>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    pub name: String,
    pub state: &'static str,
    pub started_at: Option<DateTime<Utc>>,
    pub due_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub overdue_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub documents: Vec<Document>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub result_type: String,
    pub document_reference: String,
    pub issued_at: String,
}

/// A personal ID's province and last two digits; other references as they are.
fn shown(result: &Value) -> Document {
    let text = |field: &str| result[field].as_str().unwrap_or_default().to_owned();
    let reference = text("document_reference");
    let personal = matches!(
        result["result_type"].as_str(),
        Some("PERSONAL_ID" | "ID_CARD")
    );
    Document {
        result_type: text("result_type"),
        document_reference: match reference.get(..3).zip(reference.get(10..)) {
            Some((head, tail)) if personal && reference.len() == 12 => {
                format!("{head}*******{tail}")
            }
            _ => reference,
        },
        issued_at: text("issued_at"),
    }
}

fn step_view(step: &Step) -> StepView {
    StepView {
        name: step.name.clone(),
        state: step.state.as_str(),
        started_at: step.started_at,
        due_at: step.due_at,
        finished_at: step.finished_at,
        overdue_at: step.overdue_at,
        error: step.error.clone(),
        documents: step.results.iter().map(shown).collect(),
    }
}

impl DossierView {
    pub fn new(instance: &Instance, timeline: Vec<Entry>, now: DateTime<Utc>) -> Self {
        Self {
            dossier_code: instance.dossier_code.clone(),
            group: instance.group.clone(),
            procedure_code: instance.procedure_code.clone(),
            state: instance.state.as_str(),
            portal_status: instance.portal_status,
            received_at: instance.received_at.with_timezone(&Utc),
            accepted_at: instance.accepted_at,
            due_at: instance.due_at,
            completed_at: instance.completed_at,
            overdue: instance.is_overdue(now),
            supplement: instance.supplement.clone(),
            prefill: instance.prefill,
            filled: instance.filled.clone(),
            steps: instance.steps.iter().map(step_view).collect(),
            timeline,
            told: Vec::new(),
        }
    }
}

/// One dossier with its timeline, if the engine opened it.
pub async fn show(
    pool: &Pool,
    dossier_code: &str,
    now: DateTime<Utc>,
) -> Result<Option<DossierView>, DbError> {
    let Some(instance) = store::load(&pool.get().await?, dossier_code).await? else {
        return Ok(None);
    };
    let timeline = store::timeline(pool, dossier_code).await?;
    let mut view = DossierView::new(&instance, timeline, now);
    let told = super::GROUPS
        .iter()
        .find(|g| g.group == instance.group)
        .and_then(|g| g.told.as_ref());
    if let Some(told) = told {
        let client = pool.get().await?;
        let entitled = access::subscribers(&client, told.event_type, told.topic).await?;
        view.told = audit::told(&client, dossier_code, told.event_type, &entitled).await?;
    }
    Ok(Some(view))
}

/// The newest dossiers; with `overdue`, only those past their appointment or with a step
/// marked overdue.
pub async fn list(
    pool: &Pool,
    overdue: bool,
    limit: i64,
    now: DateTime<Utc>,
) -> Result<Vec<DossierView>, DbError> {
    Ok(store::list(pool, overdue.then_some(now), limit)
        .await?
        .iter()
        .map(|instance| DossierView::new(instance, Vec::new(), now))
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn personal_id_numbers_are_masked_and_other_references_kept() {
        let id = shown(&json!({
            "result_type": "PERSONAL_ID",
            "document_reference": "048326000123",
            "issued_at": "2026-11-20T10:00:00+07:00"
        }));
        assert_eq!(id.document_reference, "048*******23");
        let card = shown(&json!({
            "result_type": "HEALTH_INSURANCE_CARD",
            "document_reference": "TE1480123456789",
            "issued_at": "2026-11-20T10:00:00+07:00"
        }));
        assert_eq!(card.document_reference, "TE1480123456789");
    }
}
