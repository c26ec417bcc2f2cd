//! Join path on the node: rpc -> media -> **describe**. What a room has on
//! this node, as plain data, for a coordinator that takes over a room whose
//! coordinator died (`DescribeRoom`): its routers, the participants'
//! transports, producers and consumers, and the copies piped between
//! routers. The labels the coordinator needs back (display name, which
//! transport sends, a producer's source) ride on the objects' app data from
//! their creation ([`TransportLabel`], [`ProducerLabel`]).

use mediasoup::prelude::*;

use super::tree::Origin;
use super::{AnyTransport, Rooms};

/// What a participant's WebRTC transport carries (its app data).
#[derive(Debug, Clone)]
pub struct TransportLabel {
    /// The transport the browser sends on.
    pub producing: bool,
    /// The participant's display name.
    pub display_name: String,
}

/// What a participant's producer carries (its app data).
#[derive(Debug, Clone)]
pub struct ProducerLabel {
    /// "mic", "camera"...
    pub source: String,
}

/// One router of a room as [`Rooms::describe_room`] lists it.
pub struct DescribedRouter {
    /// The router.
    pub router: Router,
    /// Its worker.
    pub worker: usize,
    /// Participants' transports.
    pub transports: Vec<DescribedTransport>,
    /// Producers, sources and copies.
    pub producers: Vec<DescribedProducer>,
    /// Consumers on the participants' transports.
    pub consumers: Vec<DescribedConsumer>,
}

/// A participant's transport.
pub struct DescribedTransport {
    /// Id.
    pub id: TransportId,
    /// Whose.
    pub participant: String,
    /// The one it sends on.
    pub producing: bool,
    /// The participant's display name ("" if not given).
    pub display_name: String,
}

/// A producer on a router.
pub struct DescribedProducer {
    /// Id (a copy has its source's).
    pub id: ProducerId,
    /// The participant transport it arrives on; `None` for a copy.
    pub transport: Option<TransportId>,
    /// Audio or video.
    pub kind: MediaKind,
    /// Paused (muted).
    pub paused: bool,
    /// "mic", "camera"... ("" if not given).
    pub source: String,
}

/// A consumer on a participant's transport.
pub struct DescribedConsumer {
    /// Id.
    pub id: ConsumerId,
    /// Its transport.
    pub transport: TransportId,
    /// What it consumes.
    pub producer: ProducerId,
    /// Paused.
    pub paused: bool,
}

impl Rooms {
    /// Everything `room` has on this node (`tree::Tree::room`), as plain
    /// data: what a coordinator taking over the room rebuilds it from.
    /// Labels come from the objects' app data (set at creation).
    pub fn describe_room(&self, room: &str) -> Vec<DescribedRouter> {
        let tree = self.lock();
        tree.room(room)
            .into_iter()
            .map(|r| DescribedRouter {
                router: r.node.handle.router.clone(),
                worker: r.node.worker,
                transports: r
                    .transports
                    .iter()
                    .map(|(id, t)| {
                        let label = match &t.handle {
                            AnyTransport::WebRtc(w) => {
                                w.app_data().downcast_ref::<TransportLabel>().cloned()
                            }
                            _ => None,
                        };
                        DescribedTransport {
                            id: *id,
                            participant: t.participant.clone().unwrap_or_default(),
                            // Plain (ingest) transports only send.
                            producing: label.as_ref().is_none_or(|l| l.producing),
                            display_name: label.map(|l| l.display_name).unwrap_or_default(),
                        }
                    })
                    .collect(),
                producers: r
                    .producers
                    .iter()
                    .map(|(id, p)| {
                        let producer = &p.handle.producer;
                        DescribedProducer {
                            id: *id,
                            transport: match p.origin {
                                Origin::Source => p.transport,
                                _ => None,
                            },
                            kind: producer.kind(),
                            paused: producer.paused(),
                            source: producer
                                .app_data()
                                .downcast_ref::<ProducerLabel>()
                                .map(|l| l.source.clone())
                                .unwrap_or_default(),
                        }
                    })
                    .collect(),
                consumers: r
                    .consumers
                    .iter()
                    .map(|(id, c)| DescribedConsumer {
                        id: *id,
                        transport: c.transport,
                        producer: c.handle.producer_id(),
                        paused: c.handle.paused(),
                    })
                    .collect(),
            })
            .collect()
    }
}
