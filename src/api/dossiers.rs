//! `lienthong.v1.DossierService` over gRPC: the dossiers of `procedures::view`, for officials'
//! consoles and scripts. Only operator systems may call it.

use chrono::{DateTime, SecondsFormat, Utc};
use deadpool_postgres::Pool;
use tonic::{Request, Response, Status};

use super::connectors::operator;
use crate::procedures::view::{self, DossierView};
use crate::proto::dossier_service_server::DossierService;
use crate::proto::{
    Document, Dossier, DossierStep, GetDossierRequest, ListDossiersRequest, ListDossiersResponse,
    Supplement, TimelineEntry, Told,
};

/// Dossiers a list gives when the request does not say.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 10_000;

pub struct DossierApi {
    pool: Pool,
}

impl DossierApi {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn unavailable(error: crate::db::DbError) -> Status {
    tracing::error!(%error, "reading the dossiers failed");
    Status::unavailable("the hub's database did not answer; try again")
}

fn dossier(view: DossierView) -> Dossier {
    Dossier {
        dossier_code: view.dossier_code,
        procedure_group: view.group,
        procedure_code: view.procedure_code,
        state: view.state.to_owned(),
        portal_status: u32::from(view.portal_status),
        received_at: time(Some(view.received_at)),
        accepted_at: time(Some(view.accepted_at)),
        due_at: time(view.due_at),
        completed_at: time(view.completed_at),
        overdue: view.overdue,
        supplement: view.supplement.map(|s| Supplement {
            requested_at: time(Some(s.requested_at)),
            due_at: time(Some(s.due_at)),
            items: s.items,
            overdue_at: time(s.overdue_at),
        }),
        prefilled_fields: view.prefill.map_or(0, |p| p.from_national_data),
        fields_on_form: view.prefill.map_or(0, |p| p.fields_on_form),
        fields_counted_on_form: view.filled.as_ref().map_or(0, |f| f.on_form),
        filled_from_national_data: view.filled.map(|f| f.fields).unwrap_or_default(),
        steps: view
            .steps
            .into_iter()
            .map(|step| DossierStep {
                name: step.name,
                state: step.state.to_owned(),
                started_at: time(step.started_at),
                due_at: time(step.due_at),
                finished_at: time(step.finished_at),
                overdue_at: time(step.overdue_at),
                error: step.error.unwrap_or_default(),
                documents: step
                    .documents
                    .into_iter()
                    .map(|d| Document {
                        result_type: d.result_type,
                        document_reference: d.document_reference,
                        issued_at: d.issued_at,
                    })
                    .collect(),
            })
            .collect(),
        told: view
            .told
            .into_iter()
            .map(|told| Told {
                recipient: told.recipient,
                entitled: told.entitled,
                delivered_at: time(told.delivered_at),
                deliveries: u32::try_from(told.deliveries).unwrap_or_default(),
                acknowledged_at: time(told.acknowledged_at),
            })
            .collect(),
        timeline: view
            .timeline
            .into_iter()
            .map(|entry| TimelineEntry {
                at: time(Some(entry.at)),
                direction: entry.direction.to_owned(),
                event_type: entry.event_type,
                by: entry.by,
                what: entry.what,
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl DossierService for DossierApi {
    async fn get_dossier(
        &self,
        request: Request<GetDossierRequest>,
    ) -> Result<Response<Dossier>, Status> {
        operator(&request)?;
        let code = request.into_inner().dossier_code;
        match view::show(&self.pool, &code, Utc::now()).await {
            Ok(Some(found)) => Ok(Response::new(dossier(found))),
            Ok(None) => Err(Status::not_found(format!(
                "dossier_code: no procedure for {:?}; the engine has not taken its submission in",
                crate::events::truncated(&code)
            ))),
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn list_dossiers(
        &self,
        request: Request<ListDossiersRequest>,
    ) -> Result<Response<ListDossiersResponse>, Status> {
        operator(&request)?;
        let request = request.into_inner();
        let limit = match request.limit {
            0 => DEFAULT_LIMIT,
            n if n <= MAX_LIMIT => n,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "limit: at most {MAX_LIMIT} dossiers (0 means {DEFAULT_LIMIT})"
                )));
            }
        };
        let dossiers = view::list(
            &self.pool,
            request.overdue_only,
            i64::from(limit),
            Utc::now(),
        )
        .await
        .map_err(unavailable)?;
        Ok(Response::new(ListDossiersResponse {
            dossiers: dossiers.into_iter().map(dossier).collect(),
        }))
    }
}
