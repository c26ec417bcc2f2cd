//! Prometheus metrics: each service instance keeps its own
//! [`prometheus_client`] registry (tests run several services in one
//! process), encoded here in the Prometheus text format (0.0.4). Names carry
//! the `throng_` prefix, counters end in `_total`, durations are in seconds;
//! labels are bounded (methods, codes, outcomes, node and worker ids; never a
//! participant).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use prometheus_client;

/// `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

/// Buckets of a histogram of durations from 0.5 ms to about 60 s.
pub fn duration_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0,
    ]
    .into_iter()
}

/// Constructs histograms with [`duration_buckets`].
#[derive(Clone, Copy, Default)]
pub struct Durations;

impl MetricConstructor<Histogram> for Durations {
    fn new_metric(&self) -> Histogram {
        Histogram::new(duration_buckets())
    }
}

/// A family of duration histograms.
pub type DurationFamily<L> = Family<L, Histogram, Durations>;

/// A new [`DurationFamily`].
pub fn duration_family<L: EncodeLabelSet + Clone + std::hash::Hash + Eq>() -> DurationFamily<L> {
    Family::new_with_constructor(Durations)
}

/// Labels of a gRPC method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// The method's name (`CreateRouter`).
    pub method: String,
}

/// Labels of a failed gRPC call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodCodeLabels {
    /// The method's name.
    pub method: String,
    /// The gRPC code's name (`NotFound`), or `Transport` when no answer came.
    pub code: String,
}

/// Duration and failures of gRPC calls, by method (client or server side).
#[derive(Clone)]
pub struct RpcMetrics {
    seconds: DurationFamily<MethodLabels>,
    errors: Family<MethodCodeLabels, Counter>,
}

impl RpcMetrics {
    /// Registers `{name}_duration_seconds` and `{name}_errors_total`.
    pub fn register(registry: &mut Registry, name: &str, what: &str) -> Self {
        let m = Self {
            seconds: duration_family(),
            errors: Family::default(),
        };
        registry.register(
            format!("{name}_duration_seconds"),
            format!("Duration of {what}, by method"),
            m.seconds.clone(),
        );
        registry.register(
            format!("{name}_errors"),
            format!("{what} that failed, by method and gRPC code"),
            m.errors.clone(),
        );
        m
    }

    /// Records one call; `code` is `None` for success.
    pub fn observe(&self, method: &str, took: Duration, code: Option<&str>) {
        let method = method.to_string();
        if let Some(code) = code {
            self.errors
                .get_or_create(&MethodCodeLabels {
                    method: method.clone(),
                    code: code.to_string(),
                })
                .inc();
        }
        self.seconds
            .get_or_create(&MethodLabels { method })
            .observe(took.as_secs_f64());
    }
}
