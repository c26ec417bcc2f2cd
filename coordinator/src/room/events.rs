//! What the cluster reports, applied to the rooms: node events (a producer
//! closed on its node, a consumer closed with its producer, layer and
//! transport state changes, the dominant speaker) and lost nodes. Each event
//! is applied in a task of its own, so that the stream never waits behind a
//! room busy with a long join; events that need no room state (a transport's
//! state, for its owner) skip the room's lock altogether.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Rooms;
use crate::cluster::ClusterEvent;
use crate::media::events::NodeEvent;
use crate::protocol::ServerMessage;

/// Applies cluster events to `rooms` until the channel closes.
pub async fn apply_all(rooms: Arc<Rooms>, mut events: mpsc::UnboundedReceiver<ClusterEvent>) {
    while let Some(event) = events.recv().await {
        let rooms = rooms.clone();
        tokio::spawn(async move { rooms.apply(event).await });
    }
}

impl Rooms {
    /// Applies one cluster event.
    pub async fn apply(&self, event: ClusterEvent) {
        match event {
            ClusterEvent::NodeLost(node) => self.node_lost(&node).await,
            ClusterEvent::Node(node, event) => self.node_event(&node, event).await,
        }
    }

    async fn node_event(&self, node: &str, event: NodeEvent) {
        match event {
            NodeEvent::TransportState {
                transport_id,
                ice_state,
                dtls_state,
            } => {
                let owner = self.index().transports.get(&transport_id).cloned();
                if let Some((_, _, outbox)) = owner {
                    outbox.send(ServerMessage::ConnectionState {
                        transport_id,
                        ice_state,
                        dtls_state,
                    });
                }
            }
            NodeEvent::ConsumerClosed { consumer_id } => {
                let Some((room_id, peer_id)) = self.index().consumers.remove(&consumer_id) else {
                    return;
                };
                let Some(mut room) = self.existing_room(&room_id).await else {
                    return;
                };
                room.update_consumer(&peer_id, &consumer_id, None);
                if let Ok(peer) = room.peer(&peer_id) {
                    peer.outbox
                        .send(ServerMessage::ConsumerClosed { consumer_id });
                }
            }
            NodeEvent::ConsumerLayers {
                consumer_id,
                spatial_layer,
                temporal_layer,
            } => {
                let Some((room_id, peer_id)) = self.index().consumers.get(&consumer_id).cloned()
                else {
                    return;
                };
                let Some(mut room) = self.existing_room(&room_id).await else {
                    return;
                };
                let layers = (spatial_layer, temporal_layer);
                room.update_consumer(
                    &peer_id,
                    &consumer_id,
                    Some(&|c| c.current_layers = Some(layers)),
                );
                if let Ok(peer) = room.peer(&peer_id) {
                    peer.outbox.send(ServerMessage::ConsumerLayers {
                        consumer_id,
                        spatial_layer,
                        temporal_layer,
                    });
                }
            }
            NodeEvent::ActiveSpeaker {
                room_id,
                producer_id,
            } => {
                let Some(room) = self.existing_room(&room_id).await else {
                    return;
                };
                if let Some(rec) = room.producer(&producer_id) {
                    room.broadcast(
                        None,
                        &ServerMessage::ActiveSpeaker {
                            peer_id: rec.peer_id.clone(),
                        },
                    );
                }
            }
            NodeEvent::ProducerClosed {
                room_id,
                producer_id,
            } => {
                // The node closed a source producer by itself (its transport
                // or router closed under it); one this coordinator closed is
                // no longer in the room. Its copies on other nodes go too.
                let gone = {
                    let Some(mut room) = self.existing_room(&room_id).await else {
                        return;
                    };
                    let origin_here = room
                        .producer(&producer_id)
                        .is_some_and(|p| room.routers()[&p.router_id].node_id == node);
                    if !origin_here {
                        return;
                    }
                    room.remove_producer(&producer_id)
                };
                info!(room = %room_id, producer = %producer_id, node, "producer closed by its node");
                self.close_producers(gone.into_iter().collect()).await;
            }
            NodeEvent::WorkerDied { .. } | NodeEvent::Stopped | NodeEvent::Evicted => {
                debug!(node, "a node's end reaches the rooms as NodeLost");
            }
        }
    }

    /// A node is gone (the cluster evicted its reservations): every
    /// participant placed on it is told to reconnect (it will be placed
    /// elsewhere), its producers' copies on other nodes close, and rooms left
    /// empty close.
    async fn node_lost(&self, node: &str) {
        for (room_id, cell) in self.all_rooms() {
            let (producers, gone) = {
                let mut room = cell.state.lock().await;
                if room.closed {
                    continue;
                }
                let loss = room.lose_node(node);
                // Pipes that led to the lost node: their consumers feed nothing.
                for (router, transport) in &loss.dead_pipes {
                    if let Ok(client) = self.clients.of(router) {
                        let _ = client.close_transport(transport).await;
                    }
                }
                // Copies fed through the lost node: closed on their nodes
                // (under the lock, so that no consume finds them), and offered
                // again to the peers there, who consume them through another
                // node of the relay tree.
                for (producer, on) in &loss.orphans {
                    let Some(router) = room.router_on(on).cloned() else {
                        continue;
                    };
                    if let Ok(client) = self.clients.of(&router) {
                        if let Err(e) = client.close_producer(producer).await {
                            warn!(producer, node = on, error = %e, "stale relayed copy not closed");
                        }
                    }
                    room.reoffer(producer, on);
                }
                if !loss.orphans.is_empty() {
                    info!(room = %room_id, node, refed = loss.orphans.len(), "relayed copies fed again");
                }
                (loss.producers, loss.sent_away)
            };
            if producers.is_empty() && gone.is_empty() {
                continue;
            }
            self.clients
                .metrics()
                .reconnected("media_node_lost", gone.len());
            for (_, peer) in &gone {
                self.forget_owned(peer);
            }
            self.close_producers(producers).await;
            self.close_if_empty(&room_id).await;
            debug!(room = %room_id, sent_away = gone.len(), "node loss handled");
        }
    }
}
