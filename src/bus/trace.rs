//! W3C trace context across Kafka: the current span's context is injected into record headers
//! on produce and extracted from them on consume, so one trace follows an event from the gRPC
//! call through the broker to the subscriber.

use std::collections::HashMap;

use opentelemetry::Context;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The trace-context headers (`traceparent`, `tracestate`) of the current span.
pub fn current_context_headers() -> HashMap<String, String> {
    let context = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut carrier);
    });
    carrier
}

/// The remote context carried by `headers` (record headers or gRPC metadata).
pub fn extract(headers: &HashMap<String, String>) -> Context {
    opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(headers))
}
