//! A mediasoup worker kept busy with real RTP, for tests of what a hot worker
//! does to placement (the CPU ceiling): an ingest on one worker of a node
//! whose audio is copied to plain receivers on the same router, fed from a
//! thread of this process until the [`HotWorker`] is dropped. The worker's
//! CPU is real (every packet in is parsed once and sent once per receiver),
//! as the node's load report measures it.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use throng_proto::media as pb;
use throng_proto::media::media_node_client::MediaNodeClient;
use tonic::transport::Channel;

/// The load on one worker; stops when dropped.
pub struct HotWorker {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    sender: Option<std::thread::JoinHandle<()>>,
    /// Where the receivers' copies go (never read: the kernel drops them).
    _sink: UdpSocket,
}

impl HotWorker {
    /// Puts `receivers` copies of a stream of `packets_per_sec` audio packets
    /// on worker `worker` of the node behind `client`, in room `room`.
    pub async fn start(
        client: &mut MediaNodeClient<Channel>,
        room: &str,
        worker: u32,
        receivers: usize,
        packets_per_sec: u32,
    ) -> Self {
        let router = client
            .create_router(pb::CreateRouterRequest {
                room_id: room.into(),
                worker_index: worker,
            })
            .await
            .expect("router of the hot worker")
            .into_inner()
            .router_id;
        let ingest = client
            .create_ingest(pb::CreateIngestRequest {
                router_id: router.clone(),
                participant_id: "heat".into(),
            })
            .await
            .expect("ingest of the hot worker")
            .into_inner();
        let sink = UdpSocket::bind("127.0.0.1:0").expect("sink socket");
        let sink_addr = sink.local_addr().expect("sink address");
        for i in 0..receivers {
            crate::plain::plain_consumer(
                client,
                &router,
                &format!("heat-receiver-{i}"),
                &ingest.audio_producer_id,
                sink_addr,
            )
            .await;
        }
        let to: SocketAddr = format!("{}:{}", ingest.ip, ingest.audio_port)
            .parse()
            .expect("ingest address");
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let sender = {
            let (stop, sent) = (stop.clone(), sent.clone());
            let (pt, ssrc) = (ingest.audio_payload_type as u8, ingest.audio_ssrc);
            std::thread::spawn(move || send(to, pt, ssrc, packets_per_sec, &stop, &sent))
        };
        Self {
            stop,
            sent,
            sender: Some(sender),
            _sink: sink,
        }
    }

    /// Packets sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for HotWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.sender.take() {
            let _ = t.join();
        }
    }
}

/// Bursts every 5 ms, paced against the clock so that a late wake-up is made
/// up for.
fn send(to: SocketAddr, pt: u8, ssrc: u32, rate: u32, stop: &AtomicBool, sent: &AtomicU64) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("sender socket");
    let started = Instant::now();
    let mut i: u64 = 0;
    let mut packet = vec![0x80, pt, 0, 0, 0, 0, 0, 0];
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend((0..80u8).map(|j| j.wrapping_mul(7)));
    while !stop.load(Ordering::Relaxed) {
        let due = started.elapsed().as_secs_f64() * f64::from(rate);
        while (i as f64) < due {
            packet[2..4].copy_from_slice(&(i as u16).to_be_bytes());
            packet[4..8].copy_from_slice(&((i as u32).wrapping_mul(960)).to_be_bytes());
            if socket.send_to(&packet, to).is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            i += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
