//! `lienthong.v1.ConnectorAdmin` over gRPC: the operators' actions of `connectors::admin`, for
//! consoles and scripts. Only operator systems may call it; an action is recorded as
//! `<operator system>/<by>`.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use tonic::{Request, Response, Status};

use crate::access::Caller;
use crate::connectors::admin::{Admin, AdminError, ConnectorView, Offsets, ResetTarget};
use crate::connectors::source::position::{ResetError, Stored};
use crate::connectors::state::{DeadLetter, Desired, WorkerReport};
use crate::proto::connector_admin_server::ConnectorAdmin;
use crate::proto::{
    self, Connector, DesiredState, GetConnectorRequest, GetOffsetsRequest, ListConnectorsRequest,
    ListConnectorsResponse, ListDeadLettersRequest, ListDeadLettersResponse,
    ReplayDeadLettersRequest, ReplayDeadLettersResponse, ResetOffsetsRequest,
    RestartConnectorRequest, SetConnectorStateRequest, reset_offsets_request,
};

pub struct ConnectorAdminApi {
    admin: Arc<Admin>,
}

impl ConnectorAdminApi {
    pub fn new(admin: Arc<Admin>) -> Self {
        Self { admin }
    }
}

/// The calling operator system, or why the call is refused. Shared by the operators' services.
pub(super) fn operator<T>(request: &Request<T>) -> Result<Caller, Status> {
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no authenticated caller"))?;
    if !caller.operator {
        return Err(Status::permission_denied(format!(
            "{} is not an operator: only operator systems may call this service",
            caller.system
        )));
    }
    Ok(caller)
}

/// Who an action is recorded as: the operator system and the person it names.
pub(super) fn actor(caller: &Caller, by: &str) -> Result<String, Status> {
    let by = by.trim();
    if by.is_empty() || by.len() > 100 || by.chars().any(char::is_control) {
        return Err(Status::invalid_argument(
            "by: name the person acting (1 to 100 characters on one line); it is recorded",
        ));
    }
    Ok(format!("{}/{by}", caller.system))
}

fn status(error: AdminError) -> Status {
    match error {
        AdminError::Unknown { .. } => Status::not_found(error.to_string()),
        AdminError::Db(e) => {
            tracing::error!(error = %e, "connector administration failed");
            Status::unavailable("the hub's database did not answer; try again")
        }
        AdminError::Position(ResetError::Db(e)) => {
            tracing::error!(error = %e, "connector administration failed");
            Status::unavailable("the hub's database did not answer; try again")
        }
        AdminError::Kafka(_) => Status::unavailable(error.to_string()),
        AdminError::NotStopped { .. } | AdminError::Position(ResetError::Leased { .. }) => {
            Status::failed_precondition(error.to_string())
        }
        AdminError::Invalid(_) => Status::invalid_argument(error.to_string()),
    }
}

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn desired(d: Desired) -> DesiredState {
    match d {
        Desired::Running => DesiredState::Running,
        Desired::Paused => DesiredState::Paused,
        Desired::Stopped => DesiredState::Stopped,
    }
}

fn worker(w: WorkerReport) -> proto::ConnectorWorker {
    proto::ConnectorWorker {
        process: w.process,
        state: w.state,
        delivered: w.delivered,
        failed_attempts: w.failed_attempts,
        dead_lettered: w.dead_lettered,
        restarts: w.restarts,
        breaker: w.breaker,
        last_success_at: time(w.last_success_at),
        last_failure_at: time(w.last_failure_at),
        last_error: w.last_error.unwrap_or_default(),
        latency_p50_ms: w.latency_p50_ms.unwrap_or_default(),
        latency_p99_ms: w.latency_p99_ms.unwrap_or_default(),
        updated_at: time(w.updated_at),
        partitions: w.partitions,
    }
}

fn connector(v: ConnectorView) -> Connector {
    Connector {
        name: v.name,
        kind: v.kind,
        system: v.system,
        event_types: v.event_types,
        endpoint: v.endpoint,
        reply_event_type: v.reply_event_type.unwrap_or_default(),
        failure_event_type: v.failure_event_type.unwrap_or_default(),
        refusal_event_type: v.refusal_event_type.unwrap_or_default(),
        desired: desired(v.desired).into(),
        state: v.state,
        workers: v.workers.into_iter().map(worker).collect(),
        dead_letters: u32::try_from(v.dead_letters).unwrap_or(u32::MAX),
        parked: u32::try_from(v.parked).unwrap_or(u32::MAX),
        dead_letter_topic: v.dead_letter_topic,
        position: v.position.map(source_position),
    }
}

fn source_position(stored: Stored) -> proto::SourcePosition {
    proto::SourcePosition {
        cursor: stored.position.cursor.unwrap_or_default(),
        skip: stored.position.skip,
        owner: stored.owner.unwrap_or_default(),
        published: stored.published,
        updated_at: time(Some(stored.updated_at)),
    }
}

fn offsets(o: Offsets) -> proto::ConnectorOffsets {
    proto::ConnectorOffsets {
        name: o.name,
        groups: o
            .groups
            .into_iter()
            .map(|g| proto::GroupOffsets {
                event_type: g.event_type,
                group: g.group,
                topic: g.topic,
                partitions: g
                    .partitions
                    .iter()
                    .map(|p| proto::PartitionOffsets {
                        partition: p.partition,
                        committed: p.committed,
                        earliest: p.low,
                        end: p.high,
                        lag: p.lag(),
                    })
                    .collect(),
            })
            .collect(),
        position: o.position.map(source_position),
    }
}

/// Where a reset request moves the connector.
fn reset_target(to: Option<reset_offsets_request::To>) -> Result<ResetTarget, Status> {
    match to {
        Some(reset_offsets_request::To::Earliest(true)) => Ok(ResetTarget::Earliest),
        Some(reset_offsets_request::To::Latest(true)) => Ok(ResetTarget::Latest),
        Some(reset_offsets_request::To::Time(text)) => DateTime::parse_from_rfc3339(&text)
            .map(|at| ResetTarget::Time(at.with_timezone(&Utc)))
            .map_err(|_| Status::invalid_argument("time: must be an RFC 3339 time")),
        Some(reset_offsets_request::To::Offset(offset)) if !offset.is_empty() => {
            Ok(ResetTarget::Offset(offset))
        }
        _ => Err(Status::invalid_argument(
            "to: one of earliest, latest, time or offset",
        )),
    }
}

fn dead_letter(d: DeadLetter) -> proto::DeadLetter {
    proto::DeadLetter {
        id: d.id,
        event_id: d.event_id.map(|id| id.to_string()).unwrap_or_default(),
        event_type: d.event_type,
        source_topic: d.source.0,
        source_partition: d.source.1,
        source_offset: d.source.2,
        error_class: d.error_class,
        error_message: d.error_message,
        attempts: d.attempts,
        first_failure_at: time(Some(d.first_failure_at)),
        last_failure_at: time(Some(d.last_failure_at)),
        replay_requested_at: time(d.replay_requested_at),
        replay_outcome: d.replay_outcome.unwrap_or_default(),
        parked_until: time(d.parked_until),
    }
}

#[tonic::async_trait]
impl ConnectorAdmin for ConnectorAdminApi {
    async fn list_connectors(
        &self,
        request: Request<ListConnectorsRequest>,
    ) -> Result<Response<ListConnectorsResponse>, Status> {
        operator(&request)?;
        let views = self.admin.list().await.map_err(status)?;
        Ok(Response::new(ListConnectorsResponse {
            connectors: views.into_iter().map(connector).collect(),
        }))
    }

    async fn get_connector(
        &self,
        request: Request<GetConnectorRequest>,
    ) -> Result<Response<Connector>, Status> {
        operator(&request)?;
        let view = self
            .admin
            .status(&request.into_inner().name)
            .await
            .map_err(status)?;
        Ok(Response::new(connector(view)))
    }

    async fn set_connector_state(
        &self,
        request: Request<SetConnectorStateRequest>,
    ) -> Result<Response<Connector>, Status> {
        let caller = operator(&request)?;
        let request = request.into_inner();
        let actor = actor(&caller, &request.by)?;
        let wanted = match request.desired() {
            DesiredState::Running => Desired::Running,
            DesiredState::Paused => Desired::Paused,
            DesiredState::Stopped => Desired::Stopped,
            DesiredState::Unspecified => {
                return Err(Status::invalid_argument(
                    "desired: RUNNING, PAUSED or STOPPED",
                ));
            }
        };
        let reason = Some(request.reason.trim()).filter(|r| !r.is_empty());
        self.admin
            .set(&request.name, wanted, &actor, reason)
            .await
            .map_err(status)?;
        let view = self.admin.status(&request.name).await.map_err(status)?;
        Ok(Response::new(connector(view)))
    }

    async fn restart_connector(
        &self,
        request: Request<RestartConnectorRequest>,
    ) -> Result<Response<Connector>, Status> {
        let caller = operator(&request)?;
        let request = request.into_inner();
        let actor = actor(&caller, &request.by)?;
        self.admin
            .restart(&request.name, request.only_failed, &actor)
            .await
            .map_err(status)?;
        let view = self.admin.status(&request.name).await.map_err(status)?;
        Ok(Response::new(connector(view)))
    }

    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        operator(&request)?;
        let request = request.into_inner();
        let letters = self
            .admin
            .dead_letters(&request.name, request.all)
            .await
            .map_err(status)?;
        Ok(Response::new(ListDeadLettersResponse {
            dead_letters: letters.into_iter().map(dead_letter).collect(),
        }))
    }

    async fn replay_dead_letters(
        &self,
        request: Request<ReplayDeadLettersRequest>,
    ) -> Result<Response<ReplayDeadLettersResponse>, Status> {
        let caller = operator(&request)?;
        let request = request.into_inner();
        let actor = actor(&caller, &request.by)?;
        let ids = match (request.all, request.ids.is_empty()) {
            (true, true) => None,
            (false, false) => Some(request.ids.as_slice()),
            _ => {
                return Err(Status::invalid_argument(
                    "give either ids or all, not both and not neither",
                ));
            }
        };
        let requested = self
            .admin
            .replay(&request.name, ids, &actor)
            .await
            .map_err(status)?;
        Ok(Response::new(ReplayDeadLettersResponse { requested }))
    }

    async fn get_offsets(
        &self,
        request: Request<GetOffsetsRequest>,
    ) -> Result<Response<proto::ConnectorOffsets>, Status> {
        operator(&request)?;
        let found = self
            .admin
            .offsets(&request.into_inner().name)
            .await
            .map_err(status)?;
        Ok(Response::new(offsets(found)))
    }

    async fn reset_offsets(
        &self,
        request: Request<ResetOffsetsRequest>,
    ) -> Result<Response<proto::ConnectorOffsets>, Status> {
        let caller = operator(&request)?;
        let request = request.into_inner();
        let actor = actor(&caller, &request.by)?;
        let to = reset_target(request.to)?;
        let moved = self
            .admin
            .reset_offsets(&request.name, &to, request.partition, &actor)
            .await
            .map_err(status)?;
        Ok(Response::new(offsets(moved)))
    }
}
