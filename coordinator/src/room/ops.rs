//! The verbs a joined participant's session calls on its room: transports,
//! produce, consume, consumer and producer operations, leave (joining is
//! `room::join`). Each follows
//! one shape, [`Rooms::plan_call_commit`]: check and gather under the room's
//! lock (plan), call the node without it (call), take it again, re-check that
//! the session and what it used are still there, and record (commit); if the
//! re-check fails, whatever the node created is closed again (undo). Only
//! pipe set-up keeps the lock across node calls.

use serde_json::Value;
use tracing::{debug, info, warn};

use super::state::{PeerGone, ProducerGone, RoomState};
use super::{Res, RoomError, Rooms, HOOK_ROOM_CLOSING};
use crate::media::client::ConsumerCall;
use crate::protocol::{
    ConsumerCreated, Direction, ErrorCode, IceRestarted, MediaKind, Outbox, ProducerCreated,
    ServerMessage, TransportCreated,
};

/// Operations on a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerOp {
    /// Pause (mute).
    Pause,
    /// Resume.
    Resume,
    /// Close (camera off).
    Close,
}

impl Rooms {
    /// Plan under the room's lock, call without it, commit after re-taking
    /// it; `undo` runs when the commit finds the caller gone, and the caller
    /// gets `gone`.
    async fn plan_call_commit<P, R>(
        &self,
        room_id: &str,
        plan: impl AsyncFnOnce(&mut RoomState) -> Res<P>,
        call: impl AsyncFnOnce(&P) -> Res<R>,
        commit: impl FnOnce(&mut RoomState, &P, &R) -> bool,
        undo: impl AsyncFnOnce(&P, &R),
        gone: RoomError,
    ) -> Res<R> {
        let planned = {
            let mut room = self.joined_room(room_id).await?;
            plan(&mut room).await?
        };
        let result = call(&planned).await?;
        let committed = match self.existing_room(room_id).await {
            Some(mut room) => commit(&mut room, &planned, &result),
            None => false,
        };
        if committed {
            Ok(result)
        } else {
            undo(&planned, &result).await;
            Err(gone)
        }
    }

    /// A WebRTC transport for the peer.
    pub async fn create_transport(
        &self,
        room_id: &str,
        peer_id: &str,
        outbox: &Outbox,
        direction: Direction,
    ) -> Res<TransportCreated> {
        let t = self
            .plan_call_commit(
                room_id,
                async |room: &mut RoomState| {
                    let router = room.plan_transport(peer_id, direction)?;
                    Ok((router, room.peer(peer_id)?.display_name.clone()))
                },
                async |(router, name)| {
                    Ok(self
                        .clients
                        .of(router)?
                        .create_webrtc_transport(&router.router_id, peer_id, direction, name)
                        .await?)
                },
                |room, _, t: &TransportCreated| {
                    room.commit_transport(peer_id, outbox, direction, &t.id)
                },
                async |(router, _), t| {
                    if let Ok(c) = self.clients.of(router) {
                        let _ = c.close_transport(&t.id).await;
                    }
                },
                RoomError::new(
                    ErrorCode::OutOfOrder,
                    "you left the room while the transport was being created",
                ),
            )
            .await?;
        self.index().transports.insert(
            t.id.clone(),
            (room_id.into(), peer_id.into(), outbox.clone()),
        );
        Ok(t)
    }

    /// DTLS connect of one of the peer's transports.
    pub async fn connect_transport(
        &self,
        room_id: &str,
        peer_id: &str,
        transport_id: &str,
        dtls: &Value,
    ) -> Res<()> {
        let router = self
            .joined_room(room_id)
            .await?
            .plan_own_transport(peer_id, transport_id)?;
        Ok(self
            .clients
            .of(&router)?
            .connect_webrtc_transport(transport_id, dtls)
            .await?)
    }

    /// ICE restart of one of the peer's transports.
    pub async fn restart_ice(
        &self,
        room_id: &str,
        peer_id: &str,
        transport_id: &str,
    ) -> Res<IceRestarted> {
        let router = self
            .joined_room(room_id)
            .await?
            .plan_own_transport(peer_id, transport_id)?;
        let ice_parameters = self.clients.of(&router)?.restart_ice(transport_id).await?;
        Ok(IceRestarted::new(ice_parameters))
    }

    /// A producer on the peer's send transport, made available on every
    /// router of the room and announced.
    #[allow(clippy::too_many_arguments)]
    pub async fn produce(
        &self,
        room_id: &str,
        peer_id: &str,
        outbox: &Outbox,
        transport_id: &str,
        kind: MediaKind,
        rtp_parameters: &Value,
        source: &str,
    ) -> Res<ProducerCreated> {
        let producer_id = self
            .plan_call_commit(
                room_id,
                async |room: &mut RoomState| room.plan_produce(peer_id, transport_id),
                async |router| {
                    Ok(self
                        .clients
                        .of(router)?
                        .produce(transport_id, kind, rtp_parameters, source)
                        .await?)
                },
                |room, _, id: &String| {
                    room.commit_producer(peer_id, outbox, transport_id, id, kind, source)
                },
                async |router, id| {
                    if let Ok(c) = self.clients.of(router) {
                        let _ = c.close_producer(id).await;
                    }
                },
                RoomError::new(ErrorCode::OutOfOrder, "you left the room while producing"),
            )
            .await?;
        // Pipe set-up to the room's other routers, then the announcement.
        if let Some(mut room) = self.existing_room(room_id).await {
            if let Some(rec) = room.producer(&producer_id) {
                let origin = rec.router_id.clone();
                // Nearest first: the origin's node, then the rest (the relay
                // tree decides who feeds whom).
                let mut others: Vec<_> = room
                    .routers()
                    .values()
                    .filter(|r| r.router_id != origin)
                    .cloned()
                    .collect();
                let origin_node = room.routers()[&origin].node_id.clone();
                others.sort_by(|a, b| {
                    (a.node_id != origin_node, &a.node_id, &a.router_id).cmp(&(
                        b.node_id != origin_node,
                        &b.node_id,
                        &b.router_id,
                    ))
                });
                for target in others {
                    if let Err(e) = room
                        .make_available(&self.clients, &producer_id, &target)
                        .await
                    {
                        warn!(producer = %producer_id, router = %target.router_id, error = %e, "producer not piped");
                    }
                }
                room.announce_producer(&producer_id);
            }
        }
        Ok(ProducerCreated { id: producer_id })
    }

    /// A paused consumer of another peer's producer on the peer's recv transport.
    pub async fn consume(
        &self,
        room_id: &str,
        peer_id: &str,
        outbox: &Outbox,
        producer_id: &str,
        caps: &Value,
    ) -> Res<ConsumerCreated> {
        let c = self
            .plan_call_commit(
                room_id,
                // Making the producer available on the peer's router is pipe
                // set-up: it happens under the lock, once per router.
                async |room: &mut RoomState| {
                    let (router, recv) = room.plan_consume(peer_id, producer_id)?;
                    room.make_available(&self.clients, producer_id, &router)
                        .await?;
                    Ok((router, recv))
                },
                async |(router, recv)| {
                    Ok(self
                        .clients
                        .of(router)?
                        .consume(recv, producer_id, caps)
                        .await?)
                },
                |room, (_, recv), c: &ConsumerCreated| {
                    room.commit_consumer(peer_id, outbox, recv, &c.id, producer_id)
                },
                async |(router, _), c| {
                    if let Ok(client) = self.clients.of(router) {
                        let _ = client.consumer_call(&c.id, ConsumerCall::Close).await;
                    }
                },
                RoomError::new(
                    ErrorCode::NotFound,
                    "the producer or your session ended while consuming",
                ),
            )
            .await?;
        self.index()
            .consumers
            .insert(c.id.clone(), (room_id.into(), peer_id.into()));
        Ok(c)
    }

    /// Pause, resume, close or set layers of one of the peer's consumers.
    pub async fn consumer_op(
        &self,
        room_id: &str,
        peer_id: &str,
        consumer_id: &str,
        call: ConsumerCall,
    ) -> Res<()> {
        self.plan_call_commit(
            room_id,
            async |room: &mut RoomState| room.plan_own_consumer(peer_id, consumer_id),
            async |router| {
                Ok(self
                    .clients
                    .of(router)?
                    .consumer_call(consumer_id, call)
                    .await?)
            },
            |room, _, _| {
                match call {
                    ConsumerCall::Close => room.update_consumer(peer_id, consumer_id, None),
                    ConsumerCall::Pause | ConsumerCall::Resume => {
                        let paused = call == ConsumerCall::Pause;
                        room.update_consumer(peer_id, consumer_id, Some(&|c| c.paused = paused))
                    }
                    ConsumerCall::Layers { spatial, .. } => room.update_consumer(
                        peer_id,
                        consumer_id,
                        Some(&|c| c.preferred_layer = Some(spatial)),
                    ),
                }
                true
            },
            async |_, _| {},
            RoomError::new(ErrorCode::OutOfOrder, "join first"),
        )
        .await?;
        if call == ConsumerCall::Close {
            self.index().consumers.remove(consumer_id);
        }
        Ok(())
    }

    /// Pause, resume or close one of the peer's producers.
    pub async fn producer_op(
        &self,
        room_id: &str,
        peer_id: &str,
        producer_id: &str,
        op: ProducerOp,
    ) -> Res<()> {
        if op == ProducerOp::Close {
            let gone = {
                let mut room = self.joined_room(room_id).await?;
                room.plan_own_producer(peer_id, producer_id)?;
                room.remove_producer(producer_id)
            };
            self.close_producers(gone.into_iter().collect()).await;
            return Ok(());
        }
        let paused = op == ProducerOp::Pause;
        self.plan_call_commit(
            room_id,
            async |room: &mut RoomState| room.plan_own_producer(peer_id, producer_id),
            async |router| {
                Ok(self
                    .clients
                    .of(router)?
                    .set_producer_paused(producer_id, paused)
                    .await?)
            },
            |room, _, _| {
                room.commit_producer_paused(peer_id, producer_id, paused);
                true
            },
            async |_, _| {},
            RoomError::new(ErrorCode::OutOfOrder, "join first"),
        )
        .await
    }

    /// The peer of the session `outbox` belongs to leaves: its media objects
    /// close, its reservation is released, and an emptied room gives its
    /// routers back. A session whose peer was already sent away (its node
    /// died) and whose identity has since re-joined on a new session leaves
    /// nothing: the new session is not its to end.
    pub async fn leave(&self, room_id: &str, peer_id: &str, outbox: &Outbox) {
        let gone = {
            let Some(mut room) = self.existing_room(room_id).await else {
                return;
            };
            if room.peer_of_session(peer_id, outbox).is_none() {
                debug!(
                    room = room_id,
                    peer = peer_id,
                    "stale session's leave ignored"
                );
                return;
            }
            room.remove_peer(peer_id).expect("checked")
        };
        self.finish_peer(room_id, peer_id, gone).await;
        info!(room = room_id, peer = peer_id, "left");
        self.close_if_empty(room_id).await;
    }

    /// The session of `peer_id` ended without a leave (its socket closed).
    /// The peer stays, its transports, producers and consumers untouched on
    /// the node, for `grace`: a `resume` in that time takes it up again
    /// ([`Rooms::resume`]); after it, the peer leaves as with `leave`.
    /// Returns false, having done nothing, when the session should leave now
    /// instead (no grace configured, the coordinator draining) or is no
    /// longer the peer's (resumed or replaced elsewhere).
    pub async fn detach(
        self: &std::sync::Arc<Self>,
        room_id: &str,
        peer_id: &str,
        outbox: &Outbox,
        grace: std::time::Duration,
    ) -> bool {
        if grace.is_zero() || self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let mark = self.next_mark();
        {
            let Some(mut room) = self.existing_room(room_id).await else {
                return false;
            };
            if !room.detach(peer_id, outbox, mark) {
                return false;
            }
        }
        info!(
            room = room_id,
            peer = peer_id,
            grace_ms = grace.as_millis() as u64,
            "session detached; kept for a resume"
        );
        self.leave_after(room_id, peer_id, mark, grace);
        true
    }

    /// A new detachment mark.
    pub(super) fn next_mark(&self) -> u64 {
        self.detachments
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// After `grace`, the peer leaves if it is still detached as `mark`.
    pub(super) fn leave_after(
        self: &std::sync::Arc<Self>,
        room_id: &str,
        peer_id: &str,
        mark: u64,
        grace: std::time::Duration,
    ) {
        let (rooms, room_id, peer_id) = (self.clone(), room_id.to_string(), peer_id.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if rooms.leave_detached(&room_id, &peer_id, Some(mark)).await {
                info!(room = %room_id, peer = %peer_id, "not resumed within the grace: left");
            }
        });
    }

    /// Removes a peer still detached as `mark` (any detached peer with
    /// `None`), as a leave does; true if it was.
    pub(super) async fn leave_detached(
        &self,
        room_id: &str,
        peer_id: &str,
        mark: Option<u64>,
    ) -> bool {
        let gone = {
            let Some(mut room) = self.existing_room(room_id).await else {
                return false;
            };
            let still = match mark {
                Some(mark) => room.detached_as(peer_id, mark),
                None => room.peer(peer_id).is_ok_and(|p| p.detached.is_some()),
            };
            if !still {
                return false;
            }
            room.remove_peer(peer_id).expect("checked")
        };
        self.clients.metrics().resume_outcome("expired");
        self.finish_peer(room_id, peer_id, gone).await;
        self.close_if_empty(room_id).await;
        true
    }

    /// Takes up a detached (or still attached) peer's session on `outbox`
    /// if `nonce` is its resume nonce: the `resumed` message (with
    /// `resume_token`) is queued under the room's lock, so that every room
    /// event after it is relative to the state it lists.
    #[allow(clippy::too_many_arguments)]
    pub async fn resume(
        &self,
        room_id: &str,
        peer_id: &str,
        nonce: &str,
        can_publish: bool,
        outbox: &Outbox,
        req_id: Option<String>,
        resume_token: String,
    ) -> Res<()> {
        let not_held = || {
            RoomError::new(
                ErrorCode::NotFound,
                "this session is no longer held; join again",
            )
        };
        let room = self.existing_room(room_id).await.ok_or_else(not_held)?;
        let mut room = room;
        let r = room.reattach(peer_id, nonce, can_publish, outbox)?;
        {
            let mut index = self.index();
            for t in &r.transports {
                if let Some(entry) = index.transports.get_mut(t) {
                    entry.2 = outbox.clone();
                }
            }
        }
        outbox.send(ServerMessage::Resumed {
            req_id,
            peer_id: peer_id.to_string(),
            can_publish: r.can_publish,
            roster: r.roster,
            producers: r.producers,
            consumers: r.consumers,
            transports: r.transports,
            resume_token,
        });
        drop(room);
        info!(room = room_id, peer = peer_id, "session resumed");
        Ok(())
    }

    /// After a peer left the room's state: forget its objects, close them on
    /// the nodes and release its reservation (all without the room's lock).
    pub(super) async fn finish_peer(&self, room_id: &str, peer_id: &str, gone: PeerGone) {
        self.forget_owned(&gone);
        self.close_producers(gone.producers).await;
        if let Some(router) = &gone.router {
            match self.clients.of(router) {
                Ok(c) => {
                    if let Err(e) = c.close_participant(peer_id).await {
                        warn!(peer = peer_id, error = %e, "close participant failed");
                    }
                }
                Err(e) => warn!(peer = peer_id, error = %e, "close participant failed"),
            }
        }
        self.placement.release(room_id, peer_id).await;
    }

    /// Forgets a departed peer's transports and consumers in the owner index.
    pub(super) fn forget_owned(&self, gone: &PeerGone) {
        let mut index = self.index();
        for t in &gone.transports {
            index.transports.remove(t);
        }
        for c in &gone.consumers {
            index.consumers.remove(c);
        }
    }

    /// Closes producers that left the room on every node holding them.
    pub(super) async fn close_producers(&self, producers: Vec<ProducerGone>) {
        for p in producers {
            for router in &p.nodes {
                let Ok(client) = self.clients.of(router) else {
                    continue;
                };
                match client.close_producer(&p.producer_id).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        warn!(producer = %p.producer_id, node = %router.node_id, error = %e, "close failed")
                    }
                }
            }
        }
    }

    /// Closes the room if nobody is in it, here or (per the registry) on
    /// another coordinator. The room is marked closed under its lock, its
    /// routers are closed with the lock still held (so a join waiting at the
    /// lock is placed only once they are gone), then it leaves the map.
    pub(super) async fn close_if_empty(&self, room_id: &str) {
        let Some(mut room) = self.existing_room(room_id).await else {
            return;
        };
        if !room.is_empty() || !room.joining.is_empty() {
            return;
        }
        self.hooks.pass(HOOK_ROOM_CLOSING).await;
        if self.placement.room_in_use(room_id).await {
            return;
        }
        let routers = room.close();
        self.placement.close_routers(room_id, routers).await;
        self.forget_room_of(room_id, &room);
        debug!(room = room_id, "room closed");
    }
}
