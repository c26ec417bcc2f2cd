//! `loadgen otlp-sink`: an OTLP/gRPC trace receiver that counts what it is
//! sent, for benchmarks of the services with span export on (a real
//! exporter, a real connection, no collector to install). Prints the count
//! of spans and exports when stopped (SIGTERM or Ctrl-C).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// Spans and export calls received.
#[derive(Clone, Default)]
pub struct Counts {
    /// Spans.
    pub spans: Arc<AtomicU64>,
    /// Export calls.
    pub exports: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Counts {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(spans as u64, Ordering::Relaxed);
        self.exports.fetch_add(1, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Serves on `listen` until `stop` resolves; returns what it received.
pub async fn sink(
    listen: SocketAddr,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(u64, u64), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("--listen {listen}: {e}"))?;
    eprintln!(
        "otlp-sink: listening on {}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let counts = Counts::default();
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(counts.clone()))
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), stop)
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        counts.spans.load(Ordering::Relaxed),
        counts.exports.load(Ordering::Relaxed),
    ))
}
