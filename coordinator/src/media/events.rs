//! A media node's event stream, typed: what [`follow`] reads from one node
//! (reconnecting after errors) and hands to the cluster as [`NodeEvent`]s.
//! Started and stopped by `crate::cluster` only; applied to rooms by
//! `crate::room::events`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use throng_proto::media as pb;
use tokio::sync::mpsc;
use tracing::debug;

use super::client::NodeClient;

/// Something a media node reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A source producer closed on the node (not by this coordinator's
    /// request, if the room still has it: its copies elsewhere must close).
    ProducerClosed {
        /// Room.
        room_id: String,
        /// Producer.
        producer_id: String,
    },
    /// A consumer closed because its producer did.
    ConsumerClosed {
        /// Consumer.
        consumer_id: String,
    },
    /// The layers a simulcast consumer sends changed.
    ConsumerLayers {
        /// Consumer.
        consumer_id: String,
        /// Spatial layer, if any.
        spatial_layer: Option<u32>,
        /// Temporal layer, if any.
        temporal_layer: Option<u32>,
    },
    /// ICE or DTLS state of a transport changed.
    TransportState {
        /// Transport.
        transport_id: String,
        /// ICE state.
        ice_state: String,
        /// DTLS state.
        dtls_state: String,
    },
    /// A room's dominant speaker changed.
    ActiveSpeaker {
        /// Room.
        room_id: String,
        /// The speaker's audio producer.
        producer_id: String,
    },
    /// A worker died: the node is lost.
    WorkerDied {
        /// Worker index.
        worker: u32,
        /// mediasoup's reason.
        reason: String,
    },
    /// The cluster evicted the node while it was cut off; it closes
    /// everything now: lost, as far as this coordinator's rooms go.
    Evicted,
    /// The stream ended and the node's gRPC port then refused connections
    /// [`REFUSALS`] times in a row within [`PROBING`]: the process is gone (a host that is cut
    /// off does not refuse, it stays silent; that case waits for the report
    /// to expire). Not from the contract: [`follow`] finds it.
    Stopped,
}

/// Refused connections in a row, [`PROBE_EVERY`] apart, that make a node whose
/// stream ended [`NodeEvent::Stopped`].
pub const REFUSALS: u32 = 3;
/// Time between two probes of a node whose stream ended.
pub const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long a node whose stream ended is probed at most.
pub const PROBING: Duration = Duration::from_secs(2);

impl NodeEvent {
    /// The typed form of a contract event; `None` for events a coordinator
    /// does not use (a consumer's producer paused or resumed: the coordinator
    /// announces its peers' pauses itself, as `producerPaused`).
    pub fn from_pb(event: pb::event::Event) -> Option<Self> {
        use pb::event::Event;
        Some(match event {
            Event::ProducerClosed(p) => Self::ProducerClosed {
                room_id: p.room_id,
                producer_id: p.producer_id,
            },
            Event::ConsumerClosed(c) => Self::ConsumerClosed {
                consumer_id: c.consumer_id,
            },
            Event::ConsumerLayersChanged(l) => Self::ConsumerLayers {
                consumer_id: l.consumer_id,
                spatial_layer: l.spatial_layer,
                temporal_layer: l.temporal_layer,
            },
            Event::TransportState(t) => Self::TransportState {
                transport_id: t.transport_id,
                ice_state: t.ice_state,
                dtls_state: t.dtls_state,
            },
            Event::ActiveSpeaker(a) => Self::ActiveSpeaker {
                room_id: a.room_id,
                producer_id: a.producer_id,
            },
            Event::WorkerDied(w) => Self::WorkerDied {
                worker: w.worker_index,
                reason: w.reason,
            },
            Event::NodeEvicted(_) => Self::Evicted,
            Event::ConsumerProducerPaused(_) | Event::ConsumerProducerResumed(_) => return None,
        })
    }
}

/// Reads `client`'s node's events into `out` for as long as the task runs,
/// reconnecting (with backoff up to 5 s) after errors; ends when `out` closes.
/// `connected` says whether a stream is open now: the node answers, whatever
/// Redis says of it. When an open stream ends, the node's `address` is
/// probed at once: a port that refuses is [`NodeEvent::Stopped`].
pub async fn follow(
    client: NodeClient,
    address: String,
    out: mpsc::UnboundedSender<(String, NodeEvent)>,
    connected: Arc<AtomicBool>,
) {
    let node = client.node_id().to_string();
    let mut backoff = Duration::from_millis(200);
    loop {
        match client.events().await {
            Ok(mut stream) => {
                connected.store(true, Ordering::Relaxed);
                backoff = Duration::from_millis(200);
                while let Ok(Some(event)) = stream.message().await {
                    if let Some(event) = event.event.and_then(NodeEvent::from_pb) {
                        if out.send((node.clone(), event)).is_err() {
                            return;
                        }
                    }
                }
                connected.store(false, Ordering::Relaxed);
                if refuses(&address).await {
                    debug!(node = %node, %address, "stream ended and the port refuses");
                    if out.send((node.clone(), NodeEvent::Stopped)).is_err() {
                        return;
                    }
                }
            }
            Err(e) => debug!(node = %node, error = %e, "events stream not open"),
        }
        connected.store(false, Ordering::Relaxed);
        if out.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Whether `address` refuses TCP connections [`REFUSALS`] times in a row
/// within [`PROBING`]. A process being killed may still accept for a moment
/// or leave a connection unanswered (its listening socket outlives it
/// briefly), so an accepted connection starts the count again and an attempt
/// without an answer is not counted; a host that is cut off never refuses
/// (it is silent) and only costs the stream [`PROBING`] before it is dialled
/// again.
async fn refuses(address: &str) -> bool {
    let started = tokio::time::Instant::now();
    let mut in_a_row = 0;
    while started.elapsed() < PROBING {
        let attempt =
            tokio::time::timeout(PROBE_EVERY * 3, tokio::net::TcpStream::connect(address)).await;
        match attempt {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                in_a_row += 1;
                if in_a_row == REFUSALS {
                    return true;
                }
            }
            Ok(Ok(_)) => in_a_row = 0,
            Ok(Err(_)) | Err(_) => {}
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_refuses_and_an_open_one_does_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        assert!(!refuses(&open).await);
        drop(listener);
        assert!(refuses(&open).await, "nothing listens on {open} any more");
        // An address that cannot even be resolved is not a refusal.
        assert!(!refuses("no-such-host.invalid:1").await);
    }
}
