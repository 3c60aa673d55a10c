//! Wires the parts into one running hub: PostgreSQL and migrations, the schema registry, the
//! topics, the producer, the gRPC and HTTP servers. Tests start the same [`Hub`] in-process on
//! port 0, so they exercise the real wiring. Shutdown is explicit: stop accepting, end the
//! subscriptions (committing what was acknowledged), flush the producer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::TcpIncoming;

use crate::access::{
    Access, AccessCatalogue, AccessSettings, AuthLayer, EventTypeInfo, PolicyFileError,
    SystemLimits,
};
use crate::api::audit::AuditApi;
use crate::api::connectors::ConnectorAdminApi;
use crate::api::dossiers::DossierApi;
use crate::api::grpc::EventApi;
use crate::api::http::{self, HttpState};
use crate::audit::{self, KeyError, Ledger, Receipts, Signer, SubjectKeys, Verifiers};
use crate::bus::{ProduceError, Producer, TopicError, TopicSpec, ensure_topics};
use crate::config::{Config, DatabaseConfig};
use crate::connectors::admin::{Admin, event_topics};
use crate::connectors::manifest::{self, ManifestErrors};
use crate::connectors::reload::{self, KnownEventTypes};
use crate::connectors::runtime::{self, RuntimeParts};
use crate::connectors::webhook::Webhooks;
use crate::db::{self, DbError};
use crate::domain::{Clock, ReferenceData, ReferenceError, SystemId};
use crate::events::{Events, EventsParts, Quarantine, QuarantineKeys, SealError};
use crate::lineage;
use crate::procedures::{self, EngineParts};
use crate::proto::audit_service_server::AuditServiceServer;
use crate::proto::connector_admin_server::ConnectorAdminServer;
use crate::proto::dossier_service_server::DossierServiceServer;
use crate::proto::event_service_server::EventServiceServer;
use crate::registry::{Catalogue, Registry, RegistryError};
use crate::telemetry::Metrics;

const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often idle connections are probed, and how long an answer may take.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// How long open gRPC calls may finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// Largest answer the gRPC API writes: a PublishBatch answer holds up to 20 000 results.
const MAX_RESPONSE_BYTES: usize = 32 << 20;
/// Connections of the access policy: one polls for changes, one records refusals.
const ACCESS_POOL_SIZE: usize = 2;
/// Connections of the HTTP API (schema registry, readiness).
const HTTP_POOL_SIZE: usize = 4;
/// The OpenLineage topic: keyed by dossier, spread like the procedure topics, and kept as long
/// as they keep records (catalogues read it as it comes; the audit log keeps the evidence).
const LINEAGE_PARTITIONS: i32 = 3;
const LINEAGE_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// How often entries past the quarantine's retention are deleted.
const QUARANTINE_PURGE_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("reference data: {0}")]
    Reference(#[from] ReferenceError),
    #[error("access policy: {0}")]
    AccessPolicy(#[from] PolicyFileError),
    #[error(transparent)]
    Topics(#[from] TopicError),
    #[error(transparent)]
    Producer(#[from] ProduceError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error(transparent)]
    Tls(#[from] crate::api::tls::TlsError),
    #[error(transparent)]
    QuarantineKey(#[from] SealError),
    #[error(transparent)]
    AuditKey(#[from] KeyError),
    #[error("the gRPC listener's TLS: {0}")]
    GrpcTls(tonic::transport::Error),
    #[error("connector manifests:\n{0}")]
    Connectors(#[from] ManifestErrors),
    #[error("connectors: {0}")]
    ConnectorRuntime(#[from] runtime::RuntimeError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("a server task panicked: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A running hub.
pub struct Hub {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    access: Arc<Access>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// The connector runtime's and the procedure engine's tasks, stopped before the
    /// subscriptions they acknowledge on.
    workers: TaskTracker,
    /// Ends the hub's own subscriptions, once `workers` have stopped.
    internal_subscriptions: CancellationToken,
    /// Ends the transfer ledger's writer, once nothing records any more.
    ledger_stop: CancellationToken,
    ledger_writer: JoinHandle<()>,
    producer: Producer,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    http: JoinHandle<std::io::Result<()>>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

impl Hub {
    pub async fn start(config: Config) -> Result<Self, StartError> {
        Self::start_with_clock(config, crate::domain::system_clock()).await
    }

    /// A hub whose connectors and procedure engine read `clock` (tests move it forward to
    /// reach deadlines and backoffs without waiting for them).
    pub async fn start_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        crate::api::tls::install_crypto_provider();
        let pool = db::pool(&config.database)?;
        db::migrate(&pool).await?;
        let catalogue = Catalogue::load(&config.schemas.dir).map_err(RegistryError::from)?;
        let reference = Arc::new(ReferenceData::load(&config.schemas.dir.join("reference"))?);
        let registry = Arc::new(
            Registry::load(
                &catalogue,
                reference.clone(),
                &config.kafka.topic_prefix,
                pool.clone(),
            )
            .await?,
        );
        let mut topics: Vec<TopicSpec> = catalogue
            .topics
            .iter()
            .map(|t| TopicSpec {
                name: config.kafka.topic(&t.name),
                partitions: t.partitions,
                retention: Duration::from_secs(u64::from(t.retention_days) * 86_400),
            })
            .collect();
        if config.lineage.enabled {
            topics.push(TopicSpec {
                name: config.kafka.topic(&config.lineage.topic),
                partitions: LINEAGE_PARTITIONS,
                retention: LINEAGE_RETENTION,
            });
        }
        ensure_topics(&config.kafka, &topics).await?;
        let producer = Producer::new(&config.kafka)?;
        let metrics = Arc::new(Metrics::default());
        let shutdown = CancellationToken::new();
        // Background tasks start below; if the start fails after that, this guard stops them.
        let stop_on_failure = shutdown.clone().drop_guard();
        let tracker = TaskTracker::new();
        let workers = TaskTracker::new();
        let internal_subscriptions = CancellationToken::new();
        let stop_internal_on_failure = internal_subscriptions.clone().drop_guard();
        // The access policy reads and records on connections of its own (see `Access`).
        let access_pool = db::pool(&DatabaseConfig {
            pool_max_size: ACCESS_POOL_SIZE,
            ..config.database.clone()
        })?;
        let (access, denial_recorder) = Access::load(
            access_pool,
            access_catalogue(&config.schemas.dir, &catalogue)?,
            AccessSettings {
                refresh_interval: config.access.refresh_interval(),
                denial_retention: config.access.denial_retention(),
            },
            metrics.clone(),
        )
        .await?;
        let access = Arc::new(access);
        let access_for_hub = access.clone();
        tracker.spawn(access.clone().keep_current(shutdown.clone()));
        tracker.spawn(denial_recorder.run(shutdown.clone()));
        let quarantine = Quarantine::new(
            pool.clone(),
            Some(Arc::new(QuarantineKeys::load(&config.quarantine)?)),
        );
        tracker.spawn(quarantine.clone().enforce_retention(
            config.quarantine.retention(),
            QUARANTINE_PURGE_INTERVAL,
            shutdown.clone(),
        ));
        let signer = Arc::new(Signer::load(&config.audit)?);
        let ledger_stop = CancellationToken::new();
        let stop_ledger_on_failure = ledger_stop.clone().drop_guard();
        let subjects = Arc::new(SubjectKeys::load(&config.audit)?);
        let (ledger, ledger_writer) =
            Ledger::start(pool.clone(), subjects.clone(), ledger_stop.clone());
        let verifiers =
            Verifiers::of(&signer, &config.audit.previous_verifier_keys).map_err(|e| {
                crate::config::ConfigError::Invalid {
                    field: "audit.previous_verifier_keys",
                    problem: e.to_string(),
                }
            })?;
        tracker.spawn(audit::keep_checkpointing(
            pool.clone(),
            signer,
            verifiers,
            config.audit.checkpoint_interval(),
            shutdown.clone(),
        ));
        let limits = Arc::new(SystemLimits::new(&config.limits));
        let events = Arc::new(Events::new(EventsParts {
            registry: registry.clone(),
            access: access.clone(),
            limits: limits.clone(),
            subscription_buffer_bytes: config.limits.subscription_buffer_bytes,
            producer: producer.clone(),
            quarantine,
            ledger,
            // The procedures say which events every entitled agency is told once.
            receipts: Receipts::new(
                pool.clone(),
                procedures::GROUPS
                    .iter()
                    .filter_map(|g| Some(g.told.as_ref()?.event_type)),
                metrics.clone(),
            ),
            metrics: metrics.clone(),
            kafka: config.kafka.clone(),
            shutdown: shutdown.clone(),
            internal_shutdown: internal_subscriptions.clone(),
            tracker: tracker.clone(),
        }));

        // Loaded even where they do not run, so every process can administer them; re-read
        // at an interval, so manifest changes apply without a restart.
        let known: KnownEventTypes = {
            let registry = registry.clone();
            Arc::new(move |event_type: &str| registry.event(event_type).is_some())
        };
        let initial = manifest::load_dir(&config.connectors.dir, &|t: &str| known(t))?;
        let (manifest_updates, manifests) = tokio::sync::watch::channel(Arc::new(initial));
        // The auditors' questions judge transfers against the policy's purposes and reach the
        // connectors that use an event type.
        let audit_access = Arc::new(access_catalogue(&config.schemas.dir, &catalogue)?);
        let audit_manifests = manifests.clone();
        tracker.spawn(reload::follow_dir(
            config.connectors.dir.clone(),
            known,
            config.connectors.reload_interval(),
            manifest_updates,
            metrics.clone(),
            shutdown.clone(),
        ));
        let connector_admin = Arc::new(Admin::new(
            pool.clone(),
            manifests.clone(),
            config.kafka.clone(),
            event_topics(&catalogue, &config.kafka),
            config.connectors.refresh_interval(),
        ));
        let webhooks = Arc::new(Webhooks::new(
            manifests.clone(),
            events.clone(),
            pool.clone(),
            clock.clone(),
            metrics.clone(),
        ));
        if config.lineage.enabled {
            let feed = lineage::Feed {
                pool: pool.clone(),
                producer: producer.clone(),
                topic: config.kafka.topic(&config.lineage.topic),
                http_url: config.lineage.http_url.clone(),
                describer: lineage::Describer {
                    deployment: lineage::deployment(&config),
                    topics: event_topics(&catalogue, &config.kafka),
                    manifests: manifests.clone(),
                },
                interval: config.lineage.interval(),
            };
            tracker.spawn(feed.run(shutdown.clone()));
        }
        if config.connectors.enabled {
            runtime::start(
                RuntimeParts {
                    manifests,
                    events: events.clone(),
                    producer: producer.clone(),
                    pool: pool.clone(),
                    kafka: config.kafka.clone(),
                    config: config.connectors.clone(),
                    clock: clock.clone(),
                    metrics: metrics.clone(),
                },
                &shutdown,
                &workers,
            )
            .await?;
        }
        if config.procedures.enabled {
            let system = SystemId::parse(&config.procedures.system).map_err(|e| {
                StartError::Config(crate::config::ConfigError::Invalid {
                    field: "procedures.system",
                    problem: e.to_string(),
                })
            })?;
            procedures::start(
                EngineParts {
                    events: events.clone(),
                    pool: pool.clone(),
                    reference,
                    clock: clock.clone(),
                    metrics: metrics.clone(),
                    config: config.procedures.clone(),
                    system,
                },
                &shutdown,
                &workers,
            );
        }

        let grpc_listener = bind(config.grpc.listen).await?;
        let http_listener = bind(config.http.listen).await?;
        let grpc_addr = grpc_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.grpc.listen,
                source,
            })?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.http.listen,
                source,
            })?;

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<EventServiceServer<EventApi>>().await;
        health
            .set_serving::<ConnectorAdminServer<ConnectorAdminApi>>()
            .await;
        health
            .set_serving::<DossierServiceServer<DossierApi>>()
            .await;
        health.set_serving::<AuditServiceServer<AuditApi>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        let mut grpc_server = tonic::transport::Server::builder();
        if let Some(tls) = crate::api::tls::grpc(&config.tls)? {
            grpc_server = grpc_server.tls_config(tls).map_err(StartError::GrpcTls)?;
        }
        let grpc = grpc_server
            .concurrency_limit_per_connection(config.limits.concurrency_per_connection)
            // The same bound told to clients as HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS, so
            // calls beyond it wait in the client rather than in the hub. Without it, a client
            // far ahead of the hub (the bench's open loop at 20 000 calls/s) had thousands of
            // call bodies waiting here, the connection's flow-control window starved, its
            // bodies arriving in ever smaller DATA frames, until h2 took them for a flood
            // (`too_many_data_frames`, ENHANCE_YOUR_CALM) and closed the connection with every
            // call on it.
            .max_concurrent_streams(
                u32::try_from(config.limits.concurrency_per_connection).unwrap_or(u32::MAX),
            )
            // Dead clients are noticed and their subscriptions freed, rather than held until the
            // operating system gives up on the connection.
            .http2_keepalive_interval(Some(KEEPALIVE))
            .http2_keepalive_timeout(Some(KEEPALIVE))
            .tcp_keepalive(Some(KEEPALIVE))
            .timeout(config.limits.request_timeout())
            .layer(AuthLayer::new(access.clone(), limits))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(ConnectorAdminServer::new(ConnectorAdminApi::new(
                connector_admin,
            )))
            .add_service(DossierServiceServer::new(DossierApi::new(pool.clone())))
            .add_service(AuditServiceServer::new(AuditApi {
                pool: pool.clone(),
                subjects,
                catalogue: Arc::new(catalogue),
                topic_prefix: config.kafka.topic_prefix.clone(),
                access: audit_access,
                manifests: audit_manifests,
            }))
            .add_service(
                EventServiceServer::new(EventApi::new(events, config.limits.max_batch_events))
                    .max_decoding_message_size(config.limits.max_message_bytes)
                    .max_encoding_message_size(MAX_RESPONSE_BYTES),
            )
            .serve_with_incoming_shutdown(
                // Without TCP_NODELAY, small HTTP/2 frames (window updates) wait for delayed ACKs
                // and a streaming PublishBatch crawls.
                TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
                shutdown.clone().cancelled_owned(),
            );
        // The HTTP API (registry reads, readiness) reads on connections of its own: a flood of
        // registry reads must not take the connections that publishing needs.
        let http_pool = db::pool(&DatabaseConfig {
            pool_max_size: HTTP_POOL_SIZE,
            ..config.database.clone()
        })?;
        let http = http::serve(
            http_listener,
            HttpState {
                metrics,
                access,
                registry,
                pool: http_pool,
                producer: producer.clone(),
                webhooks,
            },
            crate::api::tls::http(&config.tls)?,
            shutdown.clone(),
        );
        tracing::info!(%grpc_addr, %http_addr, tls = config.tls.enabled(), "hub ready");
        stop_on_failure.disarm();
        stop_internal_on_failure.disarm();
        stop_ledger_on_failure.disarm();
        Ok(Self {
            grpc_addr,
            http_addr,
            access: access_for_hub,
            shutdown,
            tracker,
            workers,
            internal_subscriptions,
            ledger_stop,
            ledger_writer,
            producer,
            grpc: tokio::spawn(grpc),
            http: tokio::spawn(http),
        })
    }

    /// Waits until this hub enforces every change of systems, tokens and rights committed
    /// before the call.
    pub async fn access_caught_up(&self) -> Result<(), DbError> {
        self.access.caught_up().await
    }

    /// Stops accepting calls, ends subscriptions (committing acknowledged offsets) and waits
    /// until every produced event is acknowledged by the broker.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        // The servers first: once they stop, no call can start another subscription. A client
        // holding a call open past the grace period is cut off.
        let mut grpc_task = self.grpc;
        let grpc = match tokio::time::timeout(SHUTDOWN_GRACE, &mut grpc_task).await {
            Ok(joined) => joined?,
            Err(_) => {
                tracing::warn!("gRPC calls still open after the grace period; closing them");
                grpc_task.abort();
                Ok(())
            }
        };
        let http = self.http.await?;
        // Connector workers and the engine finish what they hold (acknowledging it) before
        // their subscriptions end.
        self.workers.close();
        self.workers.wait().await;
        self.internal_subscriptions.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        // Everything that records crossings has stopped: what is queued is written, then the
        // writer ends.
        self.ledger_stop.cancel();
        self.ledger_writer.await?;
        if let Err(error) = self.producer.flush(FLUSH_TIMEOUT).await {
            tracing::error!(%error, "some events were not acknowledged before shutdown");
        }
        tracing::info!("hub stopped");
        grpc?;
        http.map_err(ServeError::Http)
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn run_until_signal(self) -> Result<(), ServeError> {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        self.shutdown().await
    }
}

/// The access policy's data (`<schemas>/access/`), checked against the catalogue's event types.
pub fn access_catalogue(
    schemas: &std::path::Path,
    catalogue: &Catalogue,
) -> Result<AccessCatalogue, PolicyFileError> {
    let event_types: HashMap<String, EventTypeInfo> = catalogue
        .events
        .iter()
        .map(|e| {
            let info = EventTypeInfo {
                topic: e.topic.clone(),
                hub_only: e.hub_only,
            };
            (e.event_type.clone(), info)
        })
        .collect();
    AccessCatalogue::load(&schemas.join("access"), event_types)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
