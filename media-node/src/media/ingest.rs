//! Plain RTP into a room: PlainTransports for non-browser participants, and
//! the ingest (an Opus + VP8 producer pair on two comedia PlainTransports)
//! that ffmpeg loops a recording into (README: Feeding a recording).

use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroU8};

use mediasoup::prelude::*;
use mediasoup::router::RouterId;
use mediasoup::types::srtp_parameters::{SrtpCryptoSuite, SrtpParameters};

use super::{AnyTransport, Rooms};
use crate::error::MediaError;

/// Payload types and SSRCs an ingest sender must use.
pub mod wire {
    /// Opus payload type.
    pub const AUDIO_PT: u8 = 100;
    /// VP8 payload type.
    pub const VIDEO_PT: u8 = 101;
    /// Opus SSRC.
    pub const AUDIO_SSRC: u32 = 11_111_111;
    /// VP8 SSRC.
    pub const VIDEO_SSRC: u32 = 22_222_222;
}

/// Hook point: the ingest's video producer fails (tests check that nothing of
/// the ingest is left behind).
pub const HOOK_INGEST_VIDEO: &str = "media.ingest_video_produce";

/// The ingest's two transports and producers.
pub struct Ingest {
    /// Opus transport.
    pub audio: PlainTransport,
    /// VP8 transport.
    pub video: PlainTransport,
    /// Audio producer.
    pub audio_producer: ProducerId,
    /// Video producer.
    pub video_producer: ProducerId,
}

/// SRTP on a plain transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainSrtp {
    /// Plain RTP.
    Off,
    /// SRTP with mediasoup's default suite.
    Default,
    /// SRTP with this suite.
    Suite(SrtpCryptoSuite),
}

fn ingest_parameters(kind: MediaKind) -> RtpParameters {
    let (codec, ssrc) = match kind {
        MediaKind::Audio => (
            RtpCodecParameters::Audio {
                mime_type: MimeTypeAudio::Opus,
                payload_type: wire::AUDIO_PT,
                clock_rate: NonZeroU32::new(48000).unwrap(),
                channels: NonZeroU8::new(2).unwrap(),
                parameters: RtpCodecParametersParameters::default(),
                rtcp_feedback: vec![],
            },
            wire::AUDIO_SSRC,
        ),
        MediaKind::Video => (
            RtpCodecParameters::Video {
                mime_type: MimeTypeVideo::Vp8,
                payload_type: wire::VIDEO_PT,
                clock_rate: NonZeroU32::new(90000).unwrap(),
                parameters: RtpCodecParametersParameters::default(),
                rtcp_feedback: vec![],
            },
            wire::VIDEO_SSRC,
        ),
    };
    RtpParameters {
        codecs: vec![codec],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        }],
        ..Default::default()
    }
}

impl Rooms {
    async fn plain_transport(
        &self,
        router_id: RouterId,
        participant: &str,
        options: PlainTransportOptions,
    ) -> Result<PlainTransport, MediaError> {
        let (router, _) = self.router(router_id)?;
        let t = router
            .create_plain_transport(options)
            .await
            .map_err(MediaError::request("create plain transport"))?;
        self.register_transport(
            AnyTransport::Plain(t.clone()),
            router_id,
            Some(participant.to_string()),
        )?;
        Ok(t)
    }

    /// A plain RTP transport (optionally SRTP) for a non-browser participant.
    pub async fn create_plain_transport(
        &self,
        router_id: RouterId,
        participant: &str,
        comedia: bool,
        srtp: PlainSrtp,
    ) -> Result<PlainTransport, MediaError> {
        let mut options = PlainTransportOptions::new(self.pipe_listen_info());
        options.comedia = comedia;
        options.rtcp_mux = true;
        match srtp {
            PlainSrtp::Off => {}
            PlainSrtp::Default => options.enable_srtp = true,
            PlainSrtp::Suite(suite) => {
                options.enable_srtp = true;
                options.srtp_crypto_suite = suite;
            }
        }
        self.plain_transport(router_id, participant, options).await
    }

    /// Tells a plain transport where to send.
    pub async fn connect_plain_transport(
        &self,
        id: TransportId,
        ip: IpAddr,
        port: u16,
        srtp_parameters: Option<SrtpParameters>,
    ) -> Result<(), MediaError> {
        let AnyTransport::Plain(t) = self.transport(id)?.0 else {
            return Err(MediaError::FailedPrecondition(format!(
                "transport {id} is not a plain transport"
            )));
        };
        t.connect(PlainTransportRemoteParameters {
            ip: Some(ip),
            port: Some(port),
            rtcp_port: None,
            srtp_parameters,
        })
        .await
        .map_err(MediaError::request("connect plain transport"))
    }

    /// Two PlainTransports (comedia, RTCP not muxed) and an Opus + VP8
    /// producer pair fed by an external RTP sender. All or nothing: if any
    /// step fails, whatever it created is closed again.
    pub async fn create_ingest(
        &self,
        router_id: RouterId,
        participant: &str,
    ) -> Result<Ingest, MediaError> {
        // RTCP not muxed: ffmpeg sends RTCP from a second socket, and with comedia
        // a muxed transport would lock onto whichever source spoke first.
        let mut options = PlainTransportOptions::new(self.pipe_listen_info());
        options.comedia = true;
        options.rtcp_mux = false;
        let mut created: Vec<TransportId> = Vec::new();
        let result = self
            .ingest_steps(router_id, participant, options, &mut created)
            .await;
        if result.is_err() {
            for id in created {
                let _ = self.close_transport(id);
            }
        }
        result
    }

    async fn ingest_steps(
        &self,
        router_id: RouterId,
        participant: &str,
        options: PlainTransportOptions,
        created: &mut Vec<TransportId>,
    ) -> Result<Ingest, MediaError> {
        let audio = self
            .plain_transport(router_id, participant, options.clone())
            .await?;
        created.push(audio.id());
        let video = self
            .plain_transport(router_id, participant, options)
            .await?;
        created.push(video.id());
        if audio.rtcp_tuple().is_none() || video.rtcp_tuple().is_none() {
            return Err(MediaError::FailedPrecondition(
                "ingest transport has no RTCP port".into(),
            ));
        }
        let audio_producer = self
            .produce(
                audio.id(),
                MediaKind::Audio,
                ingest_parameters(MediaKind::Audio),
                false,
                "mic",
            )
            .await?;
        if self.hooks.should_fail(HOOK_INGEST_VIDEO) {
            return Err(MediaError::Injected(HOOK_INGEST_VIDEO));
        }
        let video_producer = self
            .produce(
                video.id(),
                MediaKind::Video,
                ingest_parameters(MediaKind::Video),
                false,
                "camera",
            )
            .await?;
        Ok(Ingest {
            audio,
            video,
            audio_producer,
            video_producer,
        })
    }
}
