//! What every room router offers and how browser transports are set up: the
//! same settings serve the node and loadgen's bare-mediasoup baseline.

use std::num::{NonZeroU32, NonZeroU8};

use mediasoup::prelude::*;

/// Codecs every room router offers: Opus, VP8 (simulcast) and H264 baseline.
pub fn media_codecs() -> Vec<RtpCodecCapability> {
    let video_feedback = vec![
        RtcpFeedback::Nack,
        RtcpFeedback::NackPli,
        RtcpFeedback::CcmFir,
        RtcpFeedback::GoogRemb,
        RtcpFeedback::TransportCc,
    ];
    vec![
        RtpCodecCapability::Audio {
            mime_type: MimeTypeAudio::Opus,
            preferred_payload_type: Some(100),
            clock_rate: NonZeroU32::new(48000).unwrap(),
            channels: NonZeroU8::new(2).unwrap(),
            parameters: RtpCodecParametersParameters::from([("useinbandfec", 1_u32.into())]),
            rtcp_feedback: vec![RtcpFeedback::TransportCc],
        },
        RtpCodecCapability::Video {
            mime_type: MimeTypeVideo::Vp8,
            preferred_payload_type: Some(101),
            clock_rate: NonZeroU32::new(90000).unwrap(),
            parameters: RtpCodecParametersParameters::default(),
            rtcp_feedback: video_feedback.clone(),
        },
        RtpCodecCapability::Video {
            mime_type: MimeTypeVideo::H264,
            preferred_payload_type: Some(103),
            clock_rate: NonZeroU32::new(90000).unwrap(),
            parameters: RtpCodecParametersParameters::from([
                ("level-asymmetry-allowed", 1_u32.into()),
                ("packetization-mode", 1_u32.into()),
                ("profile-level-id", "42e01f".into()),
            ]),
            rtcp_feedback: video_feedback,
        },
    ]
}

/// How a participant's WebRTC transport is set up on a worker's WebRtcServer
/// (UDP preferred, TCP as fallback, 1 Mbit/s initial outgoing estimate).
pub fn webrtc_transport_options(server: WebRtcServer) -> WebRtcTransportOptions {
    let mut options = WebRtcTransportOptions::new_with_server(server);
    options.enable_udp = true;
    options.enable_tcp = true;
    options.prefer_udp = true;
    options.initial_available_outgoing_bitrate = 1_000_000;
    options
}

/// Most a sender's transport may receive (a browser's camera and microphone).
pub const MAX_INCOMING_BITRATE: u64 = 3_000_000;
