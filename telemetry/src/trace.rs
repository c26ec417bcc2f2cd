//! The process's `tracing` subscriber: an `EnvFilter` (`RUST_LOG`, default
//! `info`), logs on stderr as text or JSON, and an OpenTelemetry layer that
//! exports spans over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. The standard `OTEL_*`
//! variables apply unprefixed (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`...);
//! `OTEL_SDK_DISABLED=true` turns export off. Spans still queued are flushed
//! when the returned [`Tracing`] is shut down (or dropped).
//!
//! Context crosses processes as W3C `traceparent`/`tracestate` headers:
//! [`inject`] and [`extract`] work on any `http::HeaderMap` (gRPC metadata
//! is one).

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
pub use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What is exported as spans: Throng's own at `info`, the libraries' at
/// `warn` (their spans would flood a trace).
const SPAN_FILTER: &str = "warn,coordinator=info,media_node=info,throng_telemetry=info";

/// Whether `env` asks for spans to be exported.
pub fn export_enabled(env: &HashMap<String, String>) -> bool {
    let set = |k: &str| env.get(k).is_some_and(|v| !v.trim().is_empty());
    let disabled = env
        .get("OTEL_SDK_DISABLED")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The installed subscriber; [`Tracing::shutdown`] flushes exported spans.
#[must_use = "dropping it flushes and stops span export"]
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes the spans still queued and stops exporting (bounded: an
    /// unreachable collector does not hold the exit).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5)) {
                eprintln!("span export not flushed: {e}");
            }
        }
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Why the subscriber could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// `RUST_LOG` does not parse.
    #[error("RUST_LOG={0:?}: {1}")]
    Filter(String, String),
    /// The OTLP exporter could not be built from the `OTEL_*` variables.
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT: {0}")]
    Exporter(String),
}

/// The filter `RUST_LOG` asks for (`info` when unset or empty).
pub fn filter(env: &HashMap<String, String>) -> Result<EnvFilter, TraceError> {
    match env.get("RUST_LOG").map(|v| v.trim()) {
        None | Some("") => Ok(EnvFilter::new("info")),
        Some(v) => EnvFilter::try_new(v).map_err(|e| TraceError::Filter(v.into(), e.to_string())),
    }
}

/// Installs the process's subscriber. `service` names the process in traces
/// unless `OTEL_SERVICE_NAME` does. Must run inside a Tokio runtime when
/// exporting (the OTLP client is tonic).
pub fn init(
    env: &HashMap<String, String>,
    service: &'static str,
    format: LogFormat,
) -> Result<Tracing, TraceError> {
    let filter = filter(env)?;
    // Colours only on a terminal (and not with NO_COLOR): a log file or a
    // container's log stream gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && env.get("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    // RUST_LOG filters the logs only: spans are exported at `info` whatever
    // the log level (an operator quietening the logs keeps the traces).
    let fmt = match format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).with_filter(filter).boxed(),
    };
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = if export_enabled(env) {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TraceError::Exporter(e.to_string()))?;
        let mut resource = Resource::builder();
        if !env.contains_key("OTEL_SERVICE_NAME") {
            resource = resource.with_service_name(service);
        }
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.build())
                .build(),
        )
    } else {
        None
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("throng"))
            .with_filter(EnvFilter::new(SPAN_FILTER))
    });
    tracing_subscriber::registry().with(fmt).with(otel).init();
    Ok(Tracing { provider })
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes the context of `span` into `headers` (nothing when it has none,
/// as when spans are not exported).
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// The caller's context, read from `headers` (empty when there is none).
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// The OpenTelemetry context of `span`, to parent later spans on it after it
/// ended (a participant's requests after its join, say).
pub fn context_of(span: &tracing::Span) -> Context {
    span.context()
}

/// Makes `cx` the parent of `span`, which must not have been entered yet.
/// Nothing happens when spans are not exported.
pub fn set_parent(span: &tracing::Span, cx: Context) {
    let _ = span.set_parent(cx);
}
