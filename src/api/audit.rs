//! `lienthong.v1.AuditService` over gRPC: the auditor's questions of `audit::queries` and
//! `audit::rights_check`, and the proofs of `audit::proof`, for auditors' tools and the national
//! portal. Only operator systems may call it, except `CitizenReport`, which systems allowed to
//! answer citizens may call too; each question is recorded as `<system>/<by>`.

use std::sync::Arc;

use chrono::SecondsFormat;
use deadpool_postgres::Pool;
use tonic::{Request, Response, Status};

use super::connectors::{actor, operator};
use crate::access::{AccessCatalogue, Caller, Credentials, RightRecord, Rights};
use crate::audit::{self, ProveError, SubjectKeys, TransferRow};
use crate::connectors::reload::ManifestSet;
use crate::domain::{DossierCode, PersonalId};
use crate::proto::audit_service_server::AuditService;
use crate::proto::{
    BlastRadiusAnswer, BlastRadiusRequest, CitizenReportAnswer, ConnectorUse, EventRecipient,
    FieldProvenanceRequest, InclusionProof, ProveEntryRequest, Provenance, PurposeCheckRequest,
    RightHolder, SubjectHistoryRequest, TraceDossierRequest, Transfer, TransferList,
    UncoveredTransfer, UncoveredTransfers, UpstreamEvent,
};
use crate::registry::Catalogue;

/// What the audit questions read besides the ledger.
pub struct AuditApi {
    pub pool: Pool,
    pub subjects: Arc<SubjectKeys>,
    /// The event types, and the topic prefix their subjects are under.
    pub catalogue: Arc<Catalogue>,
    pub topic_prefix: String,
    /// The purposes and event types rights are judged against.
    pub access: Arc<AccessCatalogue>,
    /// The connectors, for who a schema change reaches.
    pub manifests: ManifestSet,
}

/// The caller, when it may ask for a citizen's report: an operator, or a system allowed to
/// answer citizens (`lienthong systems citizen-reports`).
async fn may_ask_citizen_reports<T>(pool: &Pool, request: &Request<T>) -> Result<Caller, Status> {
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no authenticated caller"))?;
    let allowed = Credentials::new(pool.clone())
        .answers_citizens(&caller.system)
        .await
        .map_err(unavailable)?;
    if !allowed {
        return Err(Status::permission_denied(format!(
            "{} may not ask for citizens' reports: an operator allows it with \
             `lienthong systems citizen-reports {}`",
            caller.system, caller.system
        )));
    }
    Ok(caller)
}

impl AuditApi {
    /// Every right, revoked ones too: transfers are judged by the rights of their time.
    async fn rights(&self) -> Result<Vec<RightRecord>, Status> {
        Rights::new(self.pool.clone())
            .history()
            .await
            .map_err(unavailable)
    }
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn unavailable(error: impl std::fmt::Display) -> Status {
    tracing::error!(%error, "an audit question failed");
    Status::unavailable("the hub's database did not answer; try again")
}

fn transfers(rows: Vec<TransferRow>) -> TransferList {
    TransferList {
        transfers: rows.into_iter().map(transfer).collect(),
    }
}

fn transfer(row: TransferRow) -> Transfer {
    Transfer {
        position: row.position,
        recorded_at: rfc3339(row.recorded_at),
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

    async fn citizen_report(
        &self,
        request: Request<SubjectHistoryRequest>,
    ) -> Result<Response<CitizenReportAnswer>, Status> {
        let caller = may_ask_citizen_reports(&self.pool, &request).await?;
        let request = request.into_inner();
        let by = actor(&caller, &request.by)?;
        let id = PersonalId::parse(request.personal_id.trim())
            .map_err(|e| Status::invalid_argument(format!("personal_id: {e}")))?;
        let references = self.subjects.all_references(id.expose());
        let rows = audit::subject_history(&self.pool, &references, "citizen-report", &by)
            .await
            .map_err(unavailable)?;
        let report = audit::citizen_report(&id.to_string(), &rows);
        Ok(Response::new(CitizenReportAnswer {
            transfers: transfers(rows).transfers,
            report,
        }))
    }

    async fn field_provenance(
        &self,
        request: Request<FieldProvenanceRequest>,
    ) -> Result<Response<Provenance>, Status> {
        let caller = operator(&request)?;
        let request = request.into_inner();
        let by = actor(&caller, &request.by)?;
        let event_id = uuid::Uuid::parse_str(request.event_id.trim())
            .map_err(|e| Status::invalid_argument(format!("event_id: not a UUID ({e})")))?;
        let field = request.field.trim();
        if field.is_empty() {
            return Err(Status::invalid_argument(
                "field: name the field as a dotted path, e.g. child.personal_id",
            ));
        }
        let chain = audit::field_provenance(&self.pool, event_id, field, &by)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(Provenance {
            events: chain
                .into_iter()
                .map(|u| UpstreamEvent {
                    depth: u.depth,
                    position: u.position,
                    recorded_at: rfc3339(u.recorded_at),
                    event_id: u.event_id.to_string(),
                    event_type: u.event_type,
                    schema_version: u.schema_version.unwrap_or_default(),
                    producer: u.producer,
                    answered_by: u.answered_by.unwrap_or_default(),
                    carries: u.carries,
                })
                .collect(),
        }))
    }

    async fn purpose_check(
        &self,
        request: Request<PurposeCheckRequest>,
    ) -> Result<Response<UncoveredTransfers>, Status> {
        let caller = operator(&request)?;
        let request = request.into_inner();
        let by = actor(&caller, &request.by)?;
        if !(1..=3650).contains(&request.days) {
            return Err(Status::invalid_argument("days: must be 1 to 3650"));
        }
        let since = chrono::Utc::now() - chrono::Duration::days(i64::from(request.days));
        let rights = self.rights().await?;
        let uncovered = audit::purpose_check(&self.pool, &rights, &self.access, since, &by)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(UncoveredTransfers {
            transfers: uncovered
                .into_iter()
                .map(|u| UncoveredTransfer {
                    transfer: Some(transfer(u.transfer)),
                    system: u.system,
                    direction: u.direction,
                })
                .collect(),
        }))
    }

    async fn blast_radius(
        &self,
        request: Request<BlastRadiusRequest>,
    ) -> Result<Response<BlastRadiusAnswer>, Status> {
        let caller = operator(&request)?;
        let request = request.into_inner();
        let by = actor(&caller, &request.by)?;
        let name = request.event_type.trim();
        let known = self
            .catalogue
            .event_named(name, &self.topic_prefix)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "event_type: {name:?} is no event type or subject of the catalogue"
                ))
            })?;
        let connectors: Vec<audit::ConnectorTypes> =
            self.manifests.borrow().iter().map(|m| m.types()).collect();
        let rights = self.rights().await?;
        let radius = audit::blast_radius(
            &self.pool,
            &known.event_type,
            &rights,
            &self.access,
            &connectors,
            &by,
        )
        .await
        .map_err(unavailable)?;
        Ok(Response::new(BlastRadiusAnswer {
            event_type: radius.event_type,
            rights: radius
                .rights
                .into_iter()
                .map(|h| RightHolder {
                    system: h.system,
                    direction: h.direction,
                    purposes: h.purposes,
                    granted_at: rfc3339(h.granted_at),
                })
                .collect(),
            connectors: radius
                .connectors
                .into_iter()
                .map(|c| ConnectorUse {
                    connector: c.connector,
                    system: c.system,
                    uses: c.uses,
                })
                .collect(),
            recipients: radius
                .recipients
                .into_iter()
                .map(|r| EventRecipient {
                    system: r.system,
                    deliveries: r.deliveries,
                    last_at: rfc3339(r.last_at),
                })
                .collect(),
        }))
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
