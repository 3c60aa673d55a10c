//! The hub's Prometheus metrics, served as text on `/metrics`. Labels carry event types, reasons,
//! groups and topics: never anything about a citizen.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event_type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    pub event_type: String,
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    pub group: String,
    pub topic: String,
    pub partition: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    pub action: String,
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthFailureLabels {
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorLabels {
    pub connector: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorOutcomeLabels {
    pub connector: String,
    /// `delivered`, `skipped`, `failed_attempt`, `dead_lettered`, `parked`.
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToldLabels {
    /// The agency's member system.
    pub recipient: String,
    /// `handed` (first handed over) or `acknowledged`.
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub group: String,
    /// A step's name, or `DOSSIER` for the whole dossier against its appointment.
    pub step: String,
    /// `on_time`, `late` (finished after its due time) or `overdue` (noticed past it, unfinished).
    pub outcome: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn call_latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub published: Family<EventLabels, Counter>,
    pub rejected: Family<RejectionLabels, Counter>,
    /// Accepted events that broke a rule that only warns, by rule (`reason`).
    pub warned: Family<RejectionLabels, Counter>,
    pub delivered: Family<EventLabels, Counter>,
    pub produce_latency: Histogram,
    pub consumer_lag: Family<LagLabels, Gauge>,
    pub access_denied: Family<DenialLabels, Counter>,
    pub authentication_failures: Family<AuthFailureLabels, Counter>,
    pub subscriptions_withdrawn: Counter,
    pub access_denials_dropped: Counter,
    pub access_policy_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub connector_events: Family<ConnectorOutcomeLabels, Counter>,
    pub connector_call_latency: HistogramFamily<ConnectorLabels>,
    pub connector_restarts: Family<ConnectorLabels, Counter>,
    pub connector_manifest_problems: Gauge,
    pub procedure_steps: Family<StepLabels, Counter>,
    pub told: Family<ToldLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("lienthong");
        let published = Family::<EventLabels, Counter>::default();
        registry.register(
            "events_published",
            "Events validated and acknowledged by the broker",
            published.clone(),
        );
        let rejected = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "events_rejected",
            "Events refused and quarantined, by reason",
            rejected.clone(),
        );
        let warned = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "events_warned",
            "Events accepted with a warning, by the rule that warned (reason)",
            warned.clone(),
        );
        let delivered = Family::<EventLabels, Counter>::default();
        registry.register(
            "events_delivered",
            "Events streamed to subscribers",
            delivered.clone(),
        );
        let produce_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "produce_latency_seconds",
            "Time from produce to the broker's acknowledgement",
            produce_latency.clone(),
        );
        let consumer_lag = Family::<LagLabels, Gauge>::default();
        registry.register(
            "consumer_lag",
            "Records behind the high watermark, per subscription group and partition",
            consumer_lag.clone(),
        );
        let access_denied = Family::<DenialLabels, Counter>::default();
        registry.register(
            "access_denied",
            "Publishes and subscriptions refused for lack of a right, by action and reason",
            access_denied.clone(),
        );
        let authentication_failures = Family::<AuthFailureLabels, Counter>::default();
        registry.register(
            "authentication_failures",
            "Calls refused because their token was unknown, revoked or expired, or their system disabled",
            authentication_failures.clone(),
        );
        let subscriptions_withdrawn = Counter::default();
        registry.register(
            "subscriptions_withdrawn",
            "Open subscriptions ended because their credential or right was withdrawn",
            subscriptions_withdrawn.clone(),
        );
        let access_denials_dropped = Counter::default();
        registry.register(
            "access_denials_dropped",
            "Refusals counted but not written to access_denial because the queue was full",
            access_denials_dropped.clone(),
        );
        let access_policy_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "access_policy_age_seconds",
            "Time since this process last confirmed its access policy with PostgreSQL",
            access_policy_age.clone(),
        );
        let connector_events = Family::<ConnectorOutcomeLabels, Counter>::default();
        registry.register(
            "connector_events",
            "Events a connector handled, by outcome (delivered, skipped, failed_attempt, \
             dead_lettered, parked)",
            connector_events.clone(),
        );
        let connector_call_latency: HistogramFamily<ConnectorLabels> =
            Family::new_with_constructor(call_latency_histogram);
        registry.register(
            "connector_call_latency_seconds",
            "Time an external system took to answer a connector's call",
            connector_call_latency.clone(),
        );
        let connector_restarts = Family::<ConnectorLabels, Counter>::default();
        registry.register(
            "connector_restarts",
            "Times a failed connector worker was restarted",
            connector_restarts.clone(),
        );
        let connector_manifest_problems = Gauge::default();
        registry.register(
            "connector_manifest_problems",
            "Problems in the connector manifests on disk (not applied until fixed)",
            connector_manifest_problems.clone(),
        );
        let procedure_steps = Family::<StepLabels, Counter>::default();
        registry.register(
            "procedure_steps",
            "Procedure steps (and whole dossiers, step DOSSIER) finished on time or late, or \
             noticed overdue: the on-time rate per procedure group and step",
            procedure_steps.clone(),
        );
        let told = Family::<ToldLabels, Counter>::default();
        registry.register(
            "told",
            "Tell Us Once events first handed over to an agency, and acknowledged by it: the \
             difference per recipient is what an agency has not confirmed",
            told.clone(),
        );
        Self {
            registry,
            published,
            rejected,
            warned,
            delivered,
            produce_latency,
            consumer_lag,
            access_denied,
            authentication_failures,
            subscriptions_withdrawn,
            access_denials_dropped,
            access_policy_age,
            connector_events,
            connector_call_latency,
            connector_restarts,
            connector_manifest_problems,
            procedure_steps,
            told,
        }
    }
}

impl Metrics {
    /// Counts one event of `connector` that ended as `outcome` (published, delivered, refused…).
    pub fn connector_event(&self, connector: &str, outcome: &str) {
        self.connector_events
            .get_or_create(&ConnectorOutcomeLabels {
                connector: connector.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts a step of `group` (or `DOSSIER`) that finished or went overdue as `outcome`.
    pub fn procedure_step(&self, group: &str, step: &str, outcome: &str) {
        self.procedure_steps
            .get_or_create(&StepLabels {
                group: group.to_owned(),
                step: step.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}
