//! A looped audio+video source shared by every sender: one ffmpeg encodes a
//! test pattern (VP8, about 500 kbit/s, a keyframe every 2 s because a relayed
//! stream cannot answer keyframe requests) and a tone (Opus) to RTP on
//! loopback; every packet is parsed once and broadcast to the senders, which
//! rewrite SSRC, sequence numbers and payload type as their own.

use std::process::Stdio;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::process::{Child, Command};
use tokio::sync::broadcast;

/// One RTP packet of the source.
#[derive(Debug, Clone)]
pub struct SourcePacket {
    /// Audio (true) or video.
    pub audio: bool,
    /// Source sequence number (16 bits).
    pub seq: u16,
    /// RTP timestamp.
    pub time: u32,
    /// Marker bit.
    pub marker: bool,
    /// Payload (no header).
    pub payload: Arc<[u8]>,
}

/// Why the source could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// ffmpeg or a socket.
    #[error("media source: {0}")]
    Io(#[from] std::io::Error),
}

/// Picture size, frame rate and video bitrate of the source.
#[derive(Debug, Clone, Copy)]
pub struct SourceSpec {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// VP8 bitrate, kbit/s.
    pub video_kbps: u32,
}

impl SourceSpec {
    /// What benchmarks send: 640x360 at 30 fps, about 500 kbit/s (a webcam tile).
    pub const WEBCAM: Self = Self {
        width: 640,
        height: 360,
        fps: 30,
        video_kbps: 500,
    };
    /// A light source for tests on a busy machine.
    pub const LIGHT: Self = Self {
        width: 320,
        height: 180,
        fps: 15,
        video_kbps: 150,
    };

    /// Starts ffmpeg with this spec.
    pub async fn start(self) -> Result<Source, SourceError> {
        Source::start(self.width, self.height, self.fps, self.video_kbps).await
    }
}

/// The running source; dropping it stops ffmpeg.
pub struct Source {
    tx: broadcast::Sender<SourcePacket>,
    _ffmpeg: Child,
}

/// Parses an RTP packet's header: (seq, timestamp, marker, payload offset).
pub fn parse_rtp(b: &[u8]) -> Option<(u16, u32, bool, usize)> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    let cc = usize::from(b[0] & 0x0f);
    let mut off = 12 + 4 * cc;
    if b[0] & 0x10 != 0 {
        let len = usize::from(u16::from_be_bytes([*b.get(off + 2)?, *b.get(off + 3)?]));
        off += 4 + 4 * len;
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*b.last()?))?;
    }
    if off > end {
        return None;
    }
    let marker = b[1] & 0x80 != 0;
    let seq = u16::from_be_bytes([b[2], b[3]]);
    let ts = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    Some((seq, ts, marker, off))
}

impl Source {
    /// Starts ffmpeg: `width`x`height` at `fps`, VP8 at `video_kbps`, Opus at 32 kbit/s.
    pub async fn start(
        width: u32,
        height: u32,
        fps: u32,
        video_kbps: u32,
    ) -> Result<Self, SourceError> {
        let video = UdpSocket::bind("127.0.0.1:0").await?;
        let audio = UdpSocket::bind("127.0.0.1:0").await?;
        let vport = video.local_addr()?.port();
        let aport = audio.local_addr()?.port();
        let gop = (fps * 2).to_string();
        let ffmpeg = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args([
                "-f",
                "lavfi",
                "-i",
                &format!("testsrc2=size={width}x{height}:rate={fps}"),
            ])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args([
                "-map",
                "0:v",
                "-c:v",
                "libvpx",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
            ])
            .args([
                "-b:v",
                &format!("{video_kbps}k"),
                "-g",
                &gop,
                "-keyint_min",
                &gop,
            ])
            .args([
                "-f",
                "rtp",
                &format!("rtp://127.0.0.1:{vport}?pkt_size=1200"),
            ])
            .args([
                "-map", "1:a", "-c:a", "libopus", "-b:a", "32k", "-ar", "48000", "-ac", "2",
            ])
            .args(["-f", "rtp", &format!("rtp://127.0.0.1:{aport}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let (tx, _) = broadcast::channel(4096);
        for (socket, is_audio) in [(video, false), (audio, true)] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok((n, _)) = socket.recv_from(&mut buf).await {
                    let b = &buf[..n];
                    // RTCP from ffmpeg shares the port pair's next port; ignore anything else.
                    if n > 1 && (200..=204).contains(&b[1]) {
                        continue;
                    }
                    if let Some((seq, time, marker, off)) = parse_rtp(b) {
                        let _ = tx.send(SourcePacket {
                            audio: is_audio,
                            seq,
                            time,
                            marker,
                            payload: Arc::from(&b[off..]),
                        });
                    }
                }
            });
        }
        Ok(Self {
            tx,
            _ffmpeg: ffmpeg,
        })
    }

    /// A receiver of every packet from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SourcePacket> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_rtp;

    #[test]
    fn parses_headers_with_csrc_extension_and_padding() {
        let mut p = vec![0x80, 0xe5, 0x01, 0x02, 0, 0, 0, 9, 0, 0, 0, 1, 0xaa];
        assert_eq!(parse_rtp(&p), Some((0x0102, 9, true, 12)));
        // One CSRC, a one-word extension, two bytes of padding.
        p = vec![0xb1, 0x65, 0, 7, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
        p.extend([0xbe, 0xde, 0, 1, 1, 2, 3, 4, 0xcc, 0, 2]);
        assert_eq!(parse_rtp(&p), Some((7, 1, false, 24)));
        assert_eq!(parse_rtp(&[0x80, 0]), None);
    }
}
