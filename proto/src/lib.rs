//! Throng's gRPC contract (`proto/throng/media/v1/media.proto`): what a
//! coordinator asks of a media node, and the events a node streams back.
#![allow(
    missing_docs,
    clippy::large_enum_variant,
    clippy::doc_lazy_continuation
)]

/// `throng.media.v1`: the media node service.
pub mod media {
    tonic::include_proto!("throng.media.v1");
}

pub mod names;
pub mod report;

/// Milliseconds since the Unix epoch (0 if the clock is before it): the one
/// wall clock of reports, leases and tokens.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
