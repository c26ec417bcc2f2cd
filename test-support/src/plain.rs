//! Plain-RTP receivers of a node's producers, over the node's gRPC API: what
//! the media node's tests and [`crate::hot_worker`] use to take a stream out
//! of a worker without a browser.

use std::net::SocketAddr;

use throng_proto::media as pb;
use throng_proto::media::media_node_client::MediaNodeClient;
use tonic::transport::Channel;

/// Receive capabilities of a plain receiver: opus and VP8, no extensions.
pub fn opus_capabilities_json() -> String {
    serde_json::json!({
        "codecs": [
            {"kind": "audio", "mimeType": "audio/opus", "preferredPayloadType": 100, "clockRate": 48000, "channels": 2, "parameters": {}, "rtcpFeedback": []},
            {"kind": "video", "mimeType": "video/VP8", "preferredPayloadType": 101, "clockRate": 90000, "parameters": {}, "rtcpFeedback": []}
        ],
        "headerExtensions": []
    })
    .to_string()
}

/// A plain receiver on `router_id` sending RTP to `sink`, consuming
/// `producer_id` (resumed); its consumer id.
pub async fn plain_consumer(
    client: &mut MediaNodeClient<Channel>,
    router_id: &str,
    participant: &str,
    producer_id: &str,
    sink: SocketAddr,
) -> String {
    let t = client
        .create_plain_transport(pb::CreatePlainTransportRequest {
            router_id: router_id.into(),
            participant_id: participant.into(),
            comedia: false,
            enable_srtp: false,
            srtp_crypto_suite: String::new(),
        })
        .await
        .expect("plain transport")
        .into_inner();
    client
        .connect_plain_transport(pb::ConnectPlainTransportRequest {
            transport_id: t.transport_id.clone(),
            ip: sink.ip().to_string(),
            port: u32::from(sink.port()),
            srtp_parameters_json: String::new(),
        })
        .await
        .expect("connect plain");
    let c = client
        .consume(pb::ConsumeRequest {
            transport_id: t.transport_id,
            producer_id: producer_id.into(),
            rtp_capabilities_json: opus_capabilities_json(),
        })
        .await
        .expect("consume")
        .into_inner();
    client
        .resume_consumer(pb::ConsumerRequest {
            consumer_id: c.consumer_id.clone(),
        })
        .await
        .expect("resume");
    c.consumer_id
}
