//! Logs, traces and metrics. Logs go through `tracing` (pretty or JSON); spans become
//! OpenTelemetry spans, exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. The W3C
//! trace context propagator is installed globally so that `bus::trace` can carry a trace from a
//! gRPC call through Kafka headers to a subscriber. No personal data in any field.

pub mod metrics;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{LogConfig, LogFormat};

pub use metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log.filter {filter:?} is not a valid tracing filter: {reason}")]
    Filter { filter: String, reason: String },
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    #[error("a global subscriber is already installed: {0}")]
    AlreadyInstalled(String),
}

/// Keeps the tracer provider alive; dropping it flushes and shuts down span export.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("lienthong: flushing traces at exit failed: {e}");
        }
    }
}

/// Installs the global subscriber and propagator. Call once per process.
pub fn init(config: &LogConfig) -> Result<TelemetryGuard, TelemetryError> {
    let filter = EnvFilter::try_new(&config.filter).map_err(|e| TelemetryError::Filter {
        filter: config.filter.clone(),
        reason: e.to_string(),
    })?;
    let mut builder = SdkTracerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder()
            .with_service_name("lienthong")
            .build(),
    );
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    // Without an exporter the provider still creates real span contexts, so trace ids travel
    // through Kafka headers whether or not anything collects them.
    let provider = builder.build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    opentelemetry::global::set_tracer_provider(provider.clone());
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("lienthong"));
    let fmt = match config.format {
        LogFormat::Json => tracing_subscriber::fmt::layer().json().boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().boxed(),
    };
    // The log filter applies to logs only: quieting logs must never cut a trace short.
    let spans = Targets::new()
        .with_target("lienthong", Level::INFO)
        .with_default(Level::WARN);
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel.with_filter(spans))
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}
