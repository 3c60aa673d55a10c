//! `lienthong.v1.AuditService` over gRPC: the auditor's questions of `audit::queries` and the
//! proofs of `audit::proof`, for auditors' tools and the national portal. Only operator systems
//! may call it; each question is recorded as `<system>/<by>`.

use std::sync::Arc;

use chrono::SecondsFormat;
use deadpool_postgres::Pool;
use tonic::{Request, Response, Status};

use super::connectors::{actor, operator};
use crate::audit::{self, ProveError, SubjectKeys, TransferRow};
use crate::domain::{DossierCode, PersonalId};
use crate::proto::audit_service_server::AuditService;
use crate::proto::{
    InclusionProof, ProveEntryRequest, SubjectHistoryRequest, TraceDossierRequest, Transfer,
    TransferList,
};

pub struct AuditApi {
    pool: Pool,
    subjects: Arc<SubjectKeys>,
}

impl AuditApi {
    pub fn new(pool: Pool, subjects: Arc<SubjectKeys>) -> Self {
        Self { pool, subjects }
    }
}

fn unavailable(error: crate::db::DbError) -> Status {
    tracing::error!(%error, "an audit question failed");
    Status::unavailable("the hub's database did not answer; try again")
}

fn transfers(rows: Vec<TransferRow>) -> TransferList {
    TransferList {
        transfers: rows
            .into_iter()
            .map(|row| Transfer {
                position: row.position,
                recorded_at: row.recorded_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                channel: row.channel,
                source_system: row.source_system,
                target_system: row.target_system,
                event_id: row.event_id.map(|id| id.to_string()).unwrap_or_default(),
                event_type: row.event_type.unwrap_or_default(),
                schema_subject: row.schema_subject.unwrap_or_default(),
                schema_version: row.schema_version.unwrap_or_default(),
                fields: row.fields,
                classification: row.classification,
                purpose: row.purpose,
                legal_basis: row.legal_basis,
                dossier_code: row.dossier_code.unwrap_or_default(),
                trace_id: row.trace_id.unwrap_or_default(),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn trace_dossier(
        &self,
        request: Request<TraceDossierRequest>,
    ) -> Result<Response<TransferList>, Status> {
        let caller = operator(&request)?;
        let request = request.into_inner();
        let by = actor(&caller, &request.by)?;
        let code = DossierCode::parse(request.dossier_code.trim())
            .map_err(|e| Status::invalid_argument(format!("dossier_code: {e}")))?;
        let rows = audit::dossier_trace(&self.pool, code.as_str(), &by)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(transfers(rows)))
    }

    async fn subject_history(
        &self,
        request: Request<SubjectHistoryRequest>,
    ) -> Result<Response<TransferList>, Status> {
        let caller = operator(&request)?;
        let request = request.into_inner();
        let by = actor(&caller, &request.by)?;
        let id = PersonalId::parse(request.personal_id.trim())
            .map_err(|e| Status::invalid_argument(format!("personal_id: {e}")))?;
        let references = self.subjects.all_references(id.expose());
        let rows = audit::subject_history(&self.pool, &references, "subject-history", &by)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(transfers(rows)))
    }

    async fn prove_entry(
        &self,
        request: Request<ProveEntryRequest>,
    ) -> Result<Response<InclusionProof>, Status> {
        operator(&request)?;
        let position = request.into_inner().position;
        let proof = audit::prove(&self.pool, position)
            .await
            .map_err(|error| match error {
                ProveError::Db(e) => unavailable(e),
                ProveError::NoEntry(_) => Status::not_found(error.to_string()),
                ProveError::NotSigned(_) => Status::failed_precondition(error.to_string()),
                ProveError::Mismatch => {
                    tracing::error!("the audit log does not match its latest checkpoint");
                    Status::data_loss(error.to_string())
                }
            })?;
        Ok(Response::new(InclusionProof {
            format: proof.format,
            position: proof.position,
            entry: proof.entry,
            tree_size: proof.tree_size,
            path: proof.path,
            checkpoint: proof.checkpoint,
        }))
    }
}
