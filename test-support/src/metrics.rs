//! Reading `/metrics` as Prometheus would: the text fetched over HTTP and
//! parsed by a Prometheus text-format parser (`prometheus-parse`), then
//! looked up by name and labels.

use std::net::SocketAddr;

pub use prometheus_parse::Scrape;
use prometheus_parse::Value;

/// `GET path` with optional extra header lines; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, body.to_string())
}

/// Parses a scrape; panics (with the text) when it is not the text format.
pub fn parse(text: &str) -> Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    Scrape::parse(lines).unwrap_or_else(|e| panic!("not the Prometheus text format: {e}\n{text}"))
}

/// Fetches and parses `/metrics` at `addr`, with `headers` (e.g. a key).
pub async fn scrape(addr: SocketAddr, headers: &str) -> Scrape {
    let (status, body) = http_get(addr, "/metrics", headers).await;
    assert_eq!(status, 200, "/metrics: {body}");
    parse(&body)
}

/// The value of `name` with (at least) `labels`: a counter's or gauge's
/// value, a histogram's count. `None` when no such sample.
pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
}

/// The sum of `name` over every sample with (at least) `labels`.
pub fn sum(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            _ => 0.0,
        })
        .sum()
}
