//! Tower layers around gRPC: [`ClientLayer`] on the coordinator's channel to
//! a node (a `rpc.client` span per call, whose context goes out in the
//! `traceparent` header), [`ServerLayer`] on the node's server (the caller's
//! context read back, a `rpc.server` span per call, so that the node's spans
//! join the coordinator's trace). Both time every call and count failures by
//! gRPC code in an [`RpcMetrics`]; long-lived streams (`Events`, `Watch`)
//! are not timed, their duration being the stream's lifetime.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;

use crate::metrics::RpcMetrics;
use crate::trace;

/// Methods whose calls are streams that last as long as the connection.
const STREAMS: &[&str] = &["Events", "Watch"];

/// The method of a gRPC path (`/throng.media.MediaNode/CreateRouter`).
pub fn method_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The name of the gRPC code a response carries in its headers (a
/// "trailers-only" answer, which is how every error comes back), `None` for
/// OK (success carries its status in the trailers).
fn failed_code<B>(response: &http::Response<B>) -> Option<String> {
    let code: i32 = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())?;
    let code = tonic::Code::from_i32(code);
    (code != tonic::Code::Ok).then(|| format!("{code:?}"))
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The client side: wraps a channel.
#[derive(Clone)]
pub struct ClientLayer {
    metrics: RpcMetrics,
}

impl ClientLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: RpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for ClientLayer {
    type Service = Client<S>;

    fn layer(&self, inner: S) -> Client<S> {
        Client {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`ClientLayer`].
#[derive(Clone)]
pub struct Client<S> {
    inner: S,
    metrics: RpcMetrics,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Client<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let method = method_of(request.uri().path()).to_string();
        let span = tracing::info_span!(
            "rpc.client",
            otel.name = %format!("node.{method}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.method = %method,
        );
        trace::inject(&span, request.headers_mut());
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(
            async move {
                let result = call.await;
                if !STREAMS.contains(&method.as_str()) {
                    let code = match &result {
                        Ok(r) => failed_code(r),
                        Err(_) => Some("Transport".to_string()),
                    };
                    if let Some(code) = &code {
                        tracing::Span::current().record("otel.status_code", "ERROR");
                        tracing::debug!(code, "node call failed");
                    }
                    metrics.observe(&method, started.elapsed(), code.as_deref());
                }
                result
            }
            .instrument(span),
        )
    }
}

/// The server side: wraps the server's routes.
#[derive(Clone)]
pub struct ServerLayer {
    metrics: RpcMetrics,
}

impl ServerLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: RpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for ServerLayer {
    type Service = Server<S>;

    fn layer(&self, inner: S) -> Server<S> {
        Server {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`ServerLayer`].
#[derive(Clone)]
pub struct Server<S> {
    inner: S,
    metrics: RpcMetrics,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Server<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method_of(request.uri().path()).to_string();
        let span = tracing::info_span!(
            "rpc.server",
            otel.name = %format!("node.{method}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.method = %method,
        );
        let parent = trace::extract(request.headers());
        if parent.span().span_context().is_valid() {
            trace::set_parent(&span, parent);
        }
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let call = {
            let _in = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let result = call.await;
                if !STREAMS.contains(&method.as_str()) {
                    let code = match &result {
                        Ok(r) => failed_code(r),
                        Err(_) => Some("Internal".to_string()),
                    };
                    if code.is_some() {
                        tracing::Span::current().record("otel.status_code", "ERROR");
                    }
                    metrics.observe(&method, started.elapsed(), code.as_deref());
                }
                result
            }
            .instrument(span),
        )
    }
}
