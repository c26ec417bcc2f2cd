//! What both Throng services share for observability, so that a join can be
//! followed from the coordinator's WebSocket to the node's worker and both
//! services expose their figures the same way:
//! - [`trace`]: the process's `tracing` subscriber (text or JSON logs on
//!   stderr) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, an OpenTelemetry
//!   layer exporting spans over OTLP/gRPC (nothing is built, nothing costs,
//!   when it is not); W3C trace context carried in HTTP/2 headers.
//! - [`grpc`]: tower layers for the gRPC client (the coordinator's node
//!   calls: one span per call, context injected) and server (the node: the
//!   caller's context extracted, one span per call), both timing each call and
//!   counting errors by gRPC code into [`metrics::RpcMetrics`].
//! - [`metrics`]: Prometheus text encoding of a per-instance registry (tests
//!   run several services in one process) and the label sets both use.
//!
//! Calls nothing of either service.
#![forbid(unsafe_code)]

pub mod grpc;
pub mod metrics;
pub mod trace;
