//! The one test harness: every test gets its own PostgreSQL database and its own topic prefix on
//! the real broker (started by `deploy/local/test.sh`), then starts the real hub in-process on
//! ephemeral loopback ports. Names carry the run id so the script can drop this run's databases.

#![allow(dead_code)] // Each test binary uses its own subset of the harness.

pub mod pki;
pub mod receiver;
pub mod sandbox;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lienthong::access::{Credentials, Direction, Grant, Resource, Rights};
use lienthong::app::Hub;
use lienthong::config::{Config, LogConfig};
use lienthong::domain::SystemId;
use lienthong::proto::event_service_client::EventServiceClient;
use lienthong::proto::{Delivery, PublishRequest, StartFrom, SubscribeRequest};
use serde_json::Value;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

pub const EVENT_TYPE: &str = "birth.dossier-submitted";
pub const PURPOSE: &str = "civil-registration";
pub const WAIT: Duration = Duration::from_secs(60);

static TELEMETRY: OnceLock<Option<Arc<lienthong::telemetry::TelemetryGuard>>> = OnceLock::new();
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

fn run_id() -> String {
    std::env::var("LIENTHONG_TEST_RUN").unwrap_or_else(|_| format!("r{}", std::process::id()))
}

/// One test's isolated world: a database and a topic prefix.
pub struct TestEnv {
    pub config: Config,
    pub pool: deadpool_postgres::Pool,
}

impl TestEnv {
    pub async fn new(name: &str) -> Self {
        TELEMETRY.get_or_init(|| {
            lienthong::telemetry::init(&LogConfig {
                filter: "warn".into(),
                ..LogConfig::default()
            })
            .ok()
            .map(Arc::new)
        });
        let unique = format!(
            "{}_{}_{}_{}",
            run_id(),
            name,
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        )
        .to_lowercase();
        let database = format!("lienthong_{unique}");
        let admin_url = std::env::var("LIENTHONG_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://lienthong@127.0.0.1:5432/postgres".into());
        let (admin, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL must run: start the suite with deploy/local/test.sh");
        tokio::spawn(connection);
        admin
            .batch_execute(&format!("CREATE DATABASE \"{database}\""))
            .await
            .expect("the test role may create databases");

        let mut config = Config::default();
        config.database.url = format!(
            "{}/{database}",
            admin_url.rsplit_once('/').expect("url has a path").0
        );
        config.database.pool_max_size = 4;
        config.kafka.bootstrap_servers =
            std::env::var("LIENTHONG_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
        config.kafka.topic_prefix = format!("{}.", unique.replace('_', "-"));
        // Rights granted during a test reach the running hub quickly.
        config.access.refresh_interval_ms = 100;
        config.grpc.listen = "127.0.0.1:0".parse().expect("address");
        config.http.listen = "127.0.0.1:0".parse().expect("address");
        config.schemas.dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas");
        // No connector runs unless a test writes its manifest here.
        config.connectors.dir = std::env::temp_dir().join(format!("lienthong-connectors-{unique}"));
        config.connectors.refresh_interval_ms = 200;
        config.connectors.reload_interval_ms = 200;
        // The procedure engine runs only where a test turns it on and grants its rights
        // (`grant_procedure_engine`); it then relays its decisions at once.
        config.procedures.enabled = false;
        config.procedures.relay_interval_ms = 50;
        config.procedures.max_transactions = 2;
        // gRPC runs over TLS, with client certificates accepted (mutual TLS), as in production;
        // HTTP stays plain unless a test turns it on, so tools such as the Python client need
        // no CA of ours.
        let pki = pki::Pki::get();
        config.tls.cert_file = Some(pki.dir.join("server.pem"));
        config.tls.key_file = Some(pki.dir.join("server.key"));
        config.tls.client_ca_file = Some(pki.dir.join("ca.pem"));
        config.tls.http = Some(false);
        config.quarantine.key_file = Some(pki.dir.join("quarantine.key"));
        config.audit.signing_key_file = Some(pki.dir.join("audit-signing.key"));
        config.audit.subject_key_file = Some(pki.dir.join("audit-subject.key"));
        config.check().expect("the test configuration is valid");
        let pool = lienthong::db::pool(&config.database).expect("pool");
        lienthong::db::migrate(&pool)
            .await
            .expect("migrations apply");
        Self { config, pool }
    }

    /// What operators use, over the manifests now in the test's connectors directory.
    pub fn admin(&self) -> lienthong::connectors::admin::Admin {
        use lienthong::connectors::{admin, manifest, reload};
        let catalogue =
            lienthong::registry::Catalogue::load(&self.config.schemas.dir).expect("catalogue");
        let known = |t: &str| catalogue.events.iter().any(|e| e.event_type == t);
        let manifests = manifest::load_dir(&self.config.connectors.dir, &known).expect("manifests");
        admin::Admin::new(
            self.pool.clone(),
            reload::fixed(manifests),
            self.config.kafka.clone(),
            admin::event_topics(&catalogue, &self.config.kafka),
            self.config.connectors.refresh_interval(),
        )
    }

    /// The repository's PayGov webhook connector, with `secret`, and its system's right.
    pub async fn install_paygov_webhook(&self, secret: &str) {
        let dir = &self.config.connectors.dir;
        std::fs::create_dir_all(dir).expect("connectors dir");
        let file = dir.join("paygov.secret");
        std::fs::write(&file, secret).expect("secret written");
        let manifest = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("connectors/paygov-callbacks.toml"),
        )
        .expect("the repository's manifest")
        .replace(
            "secret_env = \"LIENTHONG_PAYGOV_SECRET\"",
            &format!("secret_file = {:?}", file.display().to_string()),
        );
        std::fs::write(dir.join("paygov-callbacks.toml"), manifest).expect("manifest written");
        self.token("paygov-connector").await;
        self.grant(
            "paygov-connector",
            Direction::Publish,
            "payment.callback-received",
            "fee-payment",
        )
        .await;
    }

    pub async fn start_hub(&self) -> Hub {
        Hub::start(self.config.clone())
            .await
            .expect("the hub starts")
    }

    /// Registers a member system and returns its token; it has no rights yet.
    pub async fn token(&self, system: &str) -> String {
        self.add_system(system, false).await
    }

    /// Registers a member system that may publish and subscribe [`EVENT_TYPE`] for the purpose
    /// the tests use, and returns its token.
    pub async fn member(&self, system: &str) -> String {
        let token = self.add_system(system, false).await;
        self.grant_both(system, EVENT_TYPE).await;
        token
    }

    /// Grants `system` both directions on `event_type` for [`PURPOSE`].
    pub async fn grant_both(&self, system: &str, event_type: &str) {
        for direction in [Direction::Publish, Direction::Subscribe] {
            self.grant(system, direction, event_type, PURPOSE).await;
        }
    }

    /// Grants `system` the right to act on `event_type` for `purpose`; returns the right's id.
    pub async fn grant(
        &self,
        system: &str,
        direction: Direction,
        event_type: &str,
        purpose: &str,
    ) -> i64 {
        let resource = Resource::EventType(event_type.to_owned());
        self.grant_on(system, direction, resource, purpose).await
    }

    /// Grants `system` the right to act on `resource` (an event type or a whole topic) for
    /// `purpose`; returns the right's id.
    pub async fn grant_on(
        &self,
        system: &str,
        direction: Direction,
        resource: Resource,
        purpose: &str,
    ) -> i64 {
        let schemas = &self.config.schemas.dir;
        let catalogue = lienthong::registry::Catalogue::load(schemas).expect("catalogue");
        let access = lienthong::app::access_catalogue(schemas, &catalogue).expect("access policy");
        let system = SystemId::parse(system).expect("valid system id");
        let grant = Grant {
            system: system.clone(),
            direction,
            resource,
            purposes: vec![purpose.to_owned()],
            owner: system,
            granted_by: "test".to_owned(),
            note: String::new(),
        };
        Rights::new(self.pool.clone())
            .grant(&grant, &access)
            .await
            .expect("right granted")
            .id()
    }

    /// Registers the procedure engine's member system with every right it needs.
    pub async fn grant_procedure_engine(&self) {
        let system = self.config.procedures.system.clone();
        self.token(&system).await;
        for (direction, event_type) in lienthong::procedures::rights() {
            self.grant(
                &system,
                direction,
                event_type,
                lienthong::procedures::PURPOSE,
            )
            .await;
        }
    }

    /// Registers `system` unless it is registered already (several connectors act as one).
    pub async fn ensure_system(&self, system: &str) {
        let id = SystemId::parse(system).expect("valid system id");
        match Credentials::new(self.pool.clone())
            .add_system(&id, system, false, None)
            .await
        {
            Ok(_) | Err(lienthong::access::AccessError::SystemExists(_)) => {}
            Err(e) => panic!("system added: {e}"),
        }
    }

    /// Registers an operator system and returns its token.
    pub async fn operator_token(&self, system: &str) -> String {
        self.add_system(system, true).await
    }

    async fn add_system(&self, system: &str, operator: bool) -> String {
        let id = SystemId::parse(system).expect("valid system id");
        Credentials::new(self.pool.clone())
            .add_system(&id, system, operator, None)
            .await
            .expect("system added")
            .token
    }
}

pub type Client = EventServiceClient<
    tonic::service::interceptor::InterceptedService<
        Channel,
        Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>,
    >,
>;

pub async fn channel(hub: &Hub) -> Channel {
    tls_channel(hub, None)
        .await
        .expect("the hub accepts connections")
}

/// A TLS connection to the hub, trusting the test CA, presenting `identity` if given.
pub async fn tls_channel(
    hub: &Hub,
    identity: Option<&pki::ClientCert>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            &pki::Pki::get().ca_pem,
        ))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            &identity.cert_pem,
            &identity.key_pem,
        ));
    }
    Channel::from_shared(format!("https://{}", hub.grpc_addr))
        .expect("uri")
        .tls_config(tls)?
        .connect()
        .await
}

/// A client that sends `token` (when given) on every call, once the hub enforces every access
/// change made so far (systems, tokens and rights the test just set up).
pub async fn client(hub: &Hub, token: Option<&str>) -> Client {
    client_on(channel(hub).await, hub, token).await
}

/// Like [`client`], over a given channel (one with a client certificate, say).
pub async fn client_on(channel: Channel, hub: &Hub, token: Option<&str>) -> Client {
    hub.access_caught_up()
        .await
        .expect("the hub reads its access policy");
    let bearer: Option<MetadataValue<_>> =
        token.map(|t| format!("Bearer {t}").parse().expect("header"));
    EventServiceClient::with_interceptor(
        channel,
        Box::new(move |mut request: tonic::Request<()>| {
            if let Some(bearer) = &bearer {
                request
                    .metadata_mut()
                    .insert("authorization", bearer.clone());
            }
            Ok(request)
        }),
    )
}

/// The valid example dossier, with a dossier code unique to this call.
pub fn dossier() -> (String, Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/examples/birth.dossier-submitted/valid-full.json");
    let mut value: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("example")).expect("json");
    let code = format!(
        "G22.99.08-261120-{:04}{}",
        SEQUENCE.fetch_add(1, Ordering::Relaxed),
        std::process::id() % 1000
    );
    value["dossier_code"] = Value::String(code.clone());
    (code, value)
}

pub fn publish_request(code: &str, payload: &Value) -> PublishRequest {
    PublishRequest {
        event_type: EVENT_TYPE.into(),
        correlation_id: code.into(),
        purpose: PURPOSE.into(),
        legal_basis: "Decree 63/2024/ND-CP".into(),
        payload: Some(lienthong::api::convert::json_to_struct(payload.clone())),
        ..PublishRequest::default()
    }
}

pub fn subscribe_request(group: &str) -> SubscribeRequest {
    SubscribeRequest {
        event_type: EVENT_TYPE.into(),
        consumer_group: group.into(),
        start_from: StartFrom::Earliest.into(),
        max_unacknowledged: 0,
        purpose: PURPOSE.into(),
        legal_basis: "Law on Civil Status 60/2014/QH13".into(),
    }
}

/// What the hub's Prometheus endpoint says now.
pub async fn metrics(hub: &Hub) -> String {
    reqwest::get(format!("http://{}/metrics", hub.http_addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The next delivery, failing the test after [`WAIT`].
pub async fn next(stream: &mut tonic::Streaming<Delivery>) -> Delivery {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a delivery within the wait")
        .expect("the stream is healthy")
        .expect("the stream has not ended")
}

// The real binary, for tests that kill or signal a hub process.

/// A free loopback port (bound, read, released; the hub binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The real binary's `serve`, configured for `env` on the given loopback ports (plain text).
pub fn serve_command(env: &TestEnv, grpc: u16, http: u16) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_lienthong"));
    command
        .arg("serve")
        .env("LIENTHONG_DATABASE__URL", &env.config.database.url)
        .env(
            "LIENTHONG_KAFKA__BOOTSTRAP_SERVERS",
            &env.config.kafka.bootstrap_servers,
        )
        .env(
            "LIENTHONG_KAFKA__TOPIC_PREFIX",
            &env.config.kafka.topic_prefix,
        )
        .env("LIENTHONG_SCHEMAS__DIR", &env.config.schemas.dir)
        .env("LIENTHONG_CONNECTORS__DIR", &env.config.connectors.dir)
        .env(
            "LIENTHONG_PROCEDURES__ENABLED",
            env.config.procedures.enabled.to_string(),
        )
        .env(
            "LIENTHONG_PROCEDURES__RELAY_INTERVAL_MS",
            env.config.procedures.relay_interval_ms.to_string(),
        )
        .env("LIENTHONG_GRPC__LISTEN", format!("127.0.0.1:{grpc}"))
        .env("LIENTHONG_HTTP__LISTEN", format!("127.0.0.1:{http}"))
        .env(
            "LIENTHONG_QUARANTINE__KEY_FILE",
            env.config.quarantine.key_file.as_ref().expect("test key"),
        )
        .env(
            "LIENTHONG_AUDIT__SIGNING_KEY_FILE",
            env.config
                .audit
                .signing_key_file
                .as_ref()
                .expect("test key"),
        )
        .env(
            "LIENTHONG_AUDIT__SUBJECT_KEY_FILE",
            env.config
                .audit
                .subject_key_file
                .as_ref()
                .expect("test key"),
        )
        .kill_on_drop(true);
    command
}

/// Waits (at most [`WAIT`]) until the hub on `http` says it is ready.
pub async fn wait_until_ready(http: u16) {
    let ready = async {
        loop {
            if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{http}/readyz")).await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(WAIT, ready)
        .await
        .expect("the hub gets ready");
}

/// A TCP proxy on loopback that sends each new connection to the next of `backends` in turn:
/// several hub processes behind one address, as a load balancer puts them.
pub async fn round_robin(backends: Vec<std::net::SocketAddr>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("proxy port");
    let addr = listener.local_addr().expect("proxy address");
    tokio::spawn(async move {
        for turn in 0.. {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let backend = backends[turn % backends.len()];
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

/// A client of the hub at `addr` (a proxy, say) over TLS, sending `token`.
pub async fn client_at(addr: std::net::SocketAddr, token: &str) -> Client {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            &pki::Pki::get().ca_pem,
        ))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("connected");
    let bearer: MetadataValue<_> = format!("Bearer {token}").parse().expect("header");
    EventServiceClient::with_interceptor(
        channel,
        Box::new(move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
            Ok(request)
        }),
    )
}

/// Polls `check` until it gives `Ok`, failing the test after [`WAIT`] with what it last
/// said (`Err`) of the state it saw.
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {seen}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `ConnectorAdmin` client presenting `token`, once the hub enforces the access policy.
pub async fn admin_client(
    hub: &Hub,
    token: &str,
) -> lienthong::proto::connector_admin_client::ConnectorAdminClient<
    tonic::service::interceptor::InterceptedService<
        Channel,
        impl tonic::service::Interceptor + use<>,
    >,
> {
    hub.access_caught_up().await.expect("access policy read");
    lienthong::proto::connector_admin_client::ConnectorAdminClient::with_interceptor(
        channel(hub).await,
        bearer(token),
    )
}

/// Names the calling system with `token` on every call of a gRPC client.
pub fn bearer(token: &str) -> impl tonic::service::Interceptor + use<> {
    let bearer: MetadataValue<_> = format!("Bearer {token}").parse().expect("header");
    move |mut request: tonic::Request<()>| {
        request
            .metadata_mut()
            .insert("authorization", bearer.clone());
        Ok(request)
    }
}

/// The OpenLineage events of `dossier` on the hub's lineage topic, in their order there, once
/// the feed has sent every ledger row of the dossier recorded so far.
pub async fn lineage_events(env: &TestEnv, dossier: &str) -> Vec<Value> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::message::Message as _;
    let client = env.pool.get().await.expect("connection");
    eventually(
        "the lineage feed has sent the dossier's transfers",
        async || {
            let behind: i64 = client
                .query_one(
                    "SELECT count(*) FROM audit_transfer
                 WHERE dossier_code = $1
                   AND position > (SELECT position FROM lineage_feed WHERE name = 'openlineage')",
                    &[&dossier],
                )
                .await
                .map_err(|e| e.to_string())?
                .get(0);
            if behind == 0 {
                Ok(())
            } else {
                Err(format!("{behind} rows not sent"))
            }
        },
    )
    .await;
    let topic = env.config.kafka.topic(&env.config.lineage.topic);
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &env.config.kafka.bootstrap_servers)
        .set("group.id", "lineage-reader")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut assignment = rdkafka::TopicPartitionList::new();
    let partitions = 3;
    for partition in 0..partitions {
        assignment
            .add_partition_offset(&topic, partition, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assigned");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut ended = std::collections::HashSet::new();
    let mut events = Vec::new();
    while ended.len() < partitions as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic} not read to its end"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let event: Value =
                    serde_json::from_slice(message.payload().expect("a payload")).expect("JSON");
                if event["run"]["facets"]["lienthong_audit"]["dossierCode"] == dossier {
                    events.push(event);
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                ended.insert(partition);
            }
            Some(Err(error)) => panic!("reading {topic}: {error}"),
            None => {}
        }
    }
    events
}
