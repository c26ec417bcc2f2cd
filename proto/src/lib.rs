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

pub mod report;
