//! Join path: signalling -> queue -> **placement** -> registry -> media RPC.
//! What a coordinator knows of the rooms whose participants it serves: their
//! routers (one per worker the room occupies), their producers and where each
//! producer is already available, and the sessions to tell about changes.
//!
//! Structural changes to a room (joins, new producers, pipes, leaves) are
//! serialised by the room's async lock; the lock is per room, so rooms never
//! wait for each other.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use throng_proto::media as pb;
use throng_proto::media::media_node_client::MediaNodeClient;
use throng_proto::report::NodeReport;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tracing::{debug, info, warn};

use crate::media_rpc::{MediaClients, MediaRpcError};
use crate::registry::{
    Candidate, PlacementRefused, PlacementRequest, Registry, RegistryError, WorkerRef,
};
use crate::signaling::protocol::{ErrorCode, PeerInfo, ProducerInfo, ServerMessage};

/// Placement settings.
#[derive(Debug, Clone)]
pub struct PlacementSettings {
    /// Consumer capacity of one worker (the original author's 1500).
    pub worker_capacity: u32,
    /// Tiles on one page of the grid (12).
    pub tiles_per_page: u32,
    /// Most participants in one room, across the cluster.
    pub room_cap: u32,
}

impl PlacementSettings {
    /// Consumer units one participant costs: audio + video for each tile of a
    /// page, plus its own two producers.
    pub fn participant_cost(&self) -> u32 {
        self.tiles_per_page * 2 + 2
    }
}

/// Why a conference operation failed, as the client sees it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConferenceError {
    /// Code for the client.
    pub code: ErrorCode,
    /// Message for the client.
    pub message: String,
}

impl ConferenceError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<RegistryError> for ConferenceError {
    fn from(e: RegistryError) -> Self {
        warn!(error = %e, "registry failure");
        Self::new(ErrorCode::Internal, "registry unavailable")
    }
}

impl From<MediaRpcError> for ConferenceError {
    fn from(e: MediaRpcError) -> Self {
        let code = match e.code() {
            Some(tonic::Code::InvalidArgument) | Some(tonic::Code::FailedPrecondition) => {
                ErrorCode::Rejected
            }
            Some(tonic::Code::NotFound) => ErrorCode::NotFound,
            _ => ErrorCode::Unavailable,
        };
        let message = match &e {
            MediaRpcError::Status { status, .. } if code != ErrorCode::Unavailable => {
                status.message().to_string()
            }
            _ => "media node unavailable".to_string(),
        };
        if code == ErrorCode::Unavailable {
            warn!(error = %e, "media call failed");
        }
        Self::new(code, message)
    }
}

type Res<T> = Result<T, ConferenceError>;

/// A router of a room.
#[derive(Debug, Clone)]
struct RouterRef {
    worker: WorkerRef,
    address: String,
    /// The router's RTP capabilities, kept from when it was first seen.
    caps: Value,
}

#[derive(Debug, Clone)]
struct ProducerRec {
    peer_id: String,
    /// Paused by its peer (muted).
    paused: bool,
    kind: String,
    source: String,
    router_id: String,
}

struct Peer {
    display_name: String,
    can_publish: bool,
    tx: mpsc::UnboundedSender<ServerMessage>,
    router_id: String,
    send_transport: Option<String>,
    recv_transport: Option<String>,
    producers: HashSet<String>,
    consumers: HashMap<String, ConsumerRec>,
    /// Position in the room's join order.
    joined_seq: u64,
}

impl Peer {
    /// The send (producing) or receive transport.
    fn transport(&self, producing: bool) -> Option<&str> {
        if producing {
            self.send_transport.as_deref()
        } else {
            self.recv_transport.as_deref()
        }
    }

    fn transport_slot(&mut self, producing: bool) -> &mut Option<String> {
        if producing {
            &mut self.send_transport
        } else {
            &mut self.recv_transport
        }
    }
}

/// One of a peer's consumers as the coordinator last set it on the node.
#[derive(Debug, Clone)]
struct ConsumerRec {
    producer_id: String,
    router_id: String,
    paused: bool,
    /// Preferred spatial layer the client asked for (tile size), if it did.
    spatial_layer: Option<u32>,
}

#[derive(Default)]
struct Room {
    peers: HashMap<String, Peer>,
    /// Last join's sequence number.
    next_seq: u64,
    routers: HashMap<String, RouterRef>,
    producers: HashMap<String, ProducerRec>,
    /// (producer, router) pairs where the producer can be consumed.
    available: HashSet<(String, String)>,
    /// Cross-node pipe transports: (from router, to router) -> (from pipe, to pipe).
    pipes: HashMap<(String, String), (String, String)>,
}

impl Room {
    fn peer_info(&self, peer_id: &str, p: &Peer) -> PeerInfo {
        PeerInfo {
            peer_id: peer_id.to_string(),
            display_name: p.display_name.clone(),
            producers: p
                .producers
                .iter()
                .filter_map(|id| self.producers.get(id).map(|r| (id, r)))
                .map(|(id, r)| ProducerInfo {
                    producer_id: id.clone(),
                    kind: r.kind.clone(),
                    source: r.source.clone(),
                    paused: r.paused,
                })
                .collect(),
        }
    }

    fn broadcast(&self, except: Option<&str>, msg: &ServerMessage) {
        for (id, p) in &self.peers {
            if Some(id.as_str()) != except {
                let _ = p.tx.send(msg.clone());
            }
        }
    }
}

/// Who owns an object a node reports about.
#[derive(Default)]
struct Index {
    producer_room: HashMap<String, String>,
    consumer_owner: HashMap<String, (String, String)>,
    transport_owner: HashMap<String, (String, String)>,
}

/// What a successful join returns.
pub struct Joined {
    /// Router RTP capabilities (JSON value).
    pub router_rtp_capabilities: Value,
    /// Peers already there.
    pub peers: Vec<PeerInfo>,
}

/// The coordinator's view of its rooms.
pub struct Conference {
    /// This coordinator's id in the registry (its placements are reaped if it dies).
    id: String,
    registry: Arc<dyn Registry>,
    /// Per-node admission slots (the join queue's).
    queue: Arc<crate::join::queue::JoinQueue>,
    media: MediaClients,
    settings: PlacementSettings,
    rooms: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Room>>>>,
    index: Mutex<Index>,
    /// Nodes whose event stream is followed.
    watched: Mutex<HashSet<String>>,
    /// Node reports, re-read at most every `NODES_CACHE`: during a surge every
    /// join would otherwise read them again (capacity itself is never cached).
    nodes_cache: Mutex<Option<(Instant, Arc<Vec<NodeReport>>)>>,
}

/// How long node reports are reused for placement.
const NODES_CACHE: Duration = Duration::from_millis(250);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn parse_json(field: &str, json: &str) -> Res<Value> {
    serde_json::from_str(json).map_err(|_| {
        ConferenceError::new(ErrorCode::Internal, format!("bad {field} from media node"))
    })
}

fn kind_name(kind: i32) -> &'static str {
    match pb::MediaKind::try_from(kind) {
        Ok(pb::MediaKind::Audio) => "audio",
        Ok(pb::MediaKind::Video) => "video",
        _ => "unknown",
    }
}

impl Conference {
    /// A conference over a registry.
    pub fn new(
        id: String,
        registry: Arc<dyn Registry>,
        settings: PlacementSettings,
        queue: Arc<crate::join::queue::JoinQueue>,
    ) -> Arc<Self> {
        Arc::new(Self {
            id,
            registry,
            queue,
            media: MediaClients::new(),
            settings,
            rooms: Mutex::default(),
            index: Mutex::default(),
            watched: Mutex::default(),
            nodes_cache: Mutex::default(),
        })
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.registry
    }

    fn room(&self, room_id: &str) -> Arc<tokio::sync::Mutex<Room>> {
        lock(&self.rooms)
            .entry(room_id.to_string())
            .or_default()
            .clone()
    }

    fn existing_room(&self, room_id: &str) -> Option<Arc<tokio::sync::Mutex<Room>>> {
        lock(&self.rooms).get(room_id).cloned()
    }

    /// Rooms with participants on this coordinator.
    pub fn local_rooms(&self) -> Vec<String> {
        lock(&self.rooms).keys().cloned().collect()
    }

    /// The room of a request that needs a joined participant.
    fn joined_room(&self, room_id: &str) -> Res<Arc<tokio::sync::Mutex<Room>>> {
        self.existing_room(room_id)
            .ok_or_else(|| ConferenceError::new(ErrorCode::OutOfOrder, "join first"))
    }

    fn client(self: &Arc<Self>, node_id: &str, address: &str) -> Res<MediaNodeClient<Channel>> {
        let client = self.media.client(node_id, address)?;
        if lock(&self.watched).insert(node_id.to_string()) {
            tokio::spawn(
                self.clone()
                    .follow_events(node_id.to_string(), client.clone()),
            );
        }
        Ok(client)
    }

    fn router_client(self: &Arc<Self>, r: &RouterRef) -> Res<MediaNodeClient<Channel>> {
        self.client(&r.worker.node_id, &r.address)
    }

    async fn live_nodes(&self) -> Res<Arc<Vec<NodeReport>>> {
        if let Some((at, nodes)) = lock(&self.nodes_cache).as_ref() {
            if at.elapsed() < NODES_CACHE {
                return Ok(nodes.clone());
            }
        }
        let nodes = Arc::new(self.registry.nodes().await?);
        *lock(&self.nodes_cache) = Some((Instant::now(), nodes.clone()));
        Ok(nodes)
    }

    /// Live, non-draining workers with their capacity.
    fn candidates(&self, nodes: &[NodeReport]) -> Vec<Candidate> {
        nodes
            .iter()
            .filter(|n| !n.draining && !n.dead)
            .flat_map(|n| {
                n.workers.iter().map(|w| Candidate {
                    worker: WorkerRef {
                        node_id: n.node_id.clone(),
                        worker: w.index,
                    },
                    capacity: self.settings.worker_capacity,
                })
            })
            .collect()
    }

    /// Places `peer_id` in `room_id`, creating or finding its router.
    pub async fn join(
        self: &Arc<Self>,
        room_id: &str,
        peer_id: &str,
        display_name: &str,
        can_publish: bool,
        tx: mpsc::UnboundedSender<ServerMessage>,
    ) -> Res<Joined> {
        let room_lock = self.room(room_id);
        let mut room = room_lock.lock().await;
        // The same identity joining again (a re-join after a network change,
        // whose old socket the server has not yet seen close, or a second tab)
        // replaces the old session, which is told so.
        if let Some(old) = room.peers.get(peer_id) {
            let _ = old.tx.send(ServerMessage::Error {
                req_id: None,
                code: ErrorCode::Replaced,
                message: "this identity joined the room on another connection".into(),
            });
            self.remove_peer(&mut room, room_id, peer_id).await;
        }
        let nodes = self.live_nodes().await?;
        let request = PlacementRequest {
            room_id: room_id.to_string(),
            participant_id: peer_id.to_string(),
            cost: self.settings.participant_cost(),
            room_cap: self.settings.room_cap,
            candidates: self.candidates(&nodes),
            owner: self.id.clone(),
        };
        let placement = match self.registry.place(&request).await? {
            Ok(p) => p,
            Err(PlacementRefused::RoomFull(n)) => {
                return Err(ConferenceError::new(
                    ErrorCode::RoomFull,
                    format!("the room is full ({n} participants)"),
                ))
            }
            Err(PlacementRefused::NoCapacity(_)) => {
                return Err(ConferenceError::new(
                    ErrorCode::Unavailable,
                    "no media capacity left; try again later",
                ))
            }
        };
        // At most `per_node` joins talk to one node at once, however they fall.
        let placed = match self.queue.node_slot(&placement.worker.node_id).await {
            Ok(_slot) => {
                self.router_for(&mut room, room_id, &placement, &nodes)
                    .await
            }
            Err(e) => Err(ConferenceError::new(ErrorCode::Unavailable, e.to_string())),
        };
        let (router_id, caps) = match placed {
            Ok(v) => v,
            Err(e) => {
                let _ = self.registry.release(room_id, peer_id).await;
                return Err(e);
            }
        };
        // In join order: clients lay tiles out in this order.
        let mut earlier: Vec<_> = room.peers.iter().collect();
        earlier.sort_by_key(|(_, p)| p.joined_seq);
        let peers = earlier
            .into_iter()
            .map(|(id, p)| room.peer_info(id, p))
            .collect();
        room.next_seq += 1;
        let joined_seq = room.next_seq;
        room.peers.insert(
            peer_id.to_string(),
            Peer {
                display_name: display_name.to_string(),
                can_publish,
                tx,
                router_id,
                send_transport: None,
                recv_transport: None,
                producers: HashSet::new(),
                consumers: HashMap::new(),
                joined_seq,
            },
        );
        let me = room.peer_info(peer_id, &room.peers[peer_id]);
        room.broadcast(Some(peer_id), &ServerMessage::PeerJoined { peer: me });
        info!(room = room_id, peer = peer_id, worker = %placement.worker.key(), "joined");
        Ok(Joined {
            router_rtp_capabilities: caps,
            peers,
        })
    }

    /// The room's router on the placement's worker: recorded, being created by
    /// another coordinator, or to create now. New routers receive every
    /// producer of the room.
    async fn router_for(
        self: &Arc<Self>,
        room: &mut Room,
        room_id: &str,
        placement: &crate::registry::Placement,
        nodes: &[NodeReport],
    ) -> Res<(String, Value)> {
        let node = nodes
            .iter()
            .find(|n| n.node_id == placement.worker.node_id)
            .ok_or_else(|| ConferenceError::new(ErrorCode::Unavailable, "media node vanished"))?;
        if let Some(router_id) = &placement.router_id {
            if let Some(known) = room.routers.get(router_id) {
                return Ok((router_id.clone(), known.caps.clone()));
            }
        }
        let mut client = self.client(&node.node_id, &node.grpc_address)?;
        let info = if placement.new_router {
            let info = client
                .create_router(pb::CreateRouterRequest {
                    room_id: room_id.into(),
                    worker_index: placement.worker.worker,
                })
                .await
                .map_err(|s| MediaRpcError::status(&node.node_id, s))?
                .into_inner();
            self.registry
                .set_router(room_id, &placement.worker, &info.router_id)
                .await?;
            info
        } else {
            let router_id = match &placement.router_id {
                Some(id) => id.clone(),
                None => self.wait_for_router(room_id, &placement.worker).await?,
            };
            client
                .get_router(pb::GetRouterRequest { router_id })
                .await
                .map_err(|s| MediaRpcError::status(&node.node_id, s))?
                .into_inner()
        };
        let caps = parse_json("rtp capabilities", &info.rtp_capabilities_json)?;
        if !room.routers.contains_key(&info.router_id) {
            room.routers.insert(
                info.router_id.clone(),
                RouterRef {
                    worker: placement.worker.clone(),
                    address: node.grpc_address.clone(),
                    caps: caps.clone(),
                },
            );
            let producers: Vec<String> = room.producers.keys().cloned().collect();
            for producer_id in producers {
                self.make_available(room, &producer_id, &info.router_id)
                    .await?;
            }
        }
        Ok((info.router_id.clone(), caps))
    }

    async fn wait_for_router(&self, room_id: &str, worker: &WorkerRef) -> Res<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(id) = self.registry.router(room_id, worker).await? {
                return Ok(id);
            }
            if Instant::now() > deadline {
                return Err(ConferenceError::new(
                    ErrorCode::Unavailable,
                    "the room's router was not created in time",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Makes `producer_id` consumable on `router_id`: a same-node pipe
    /// between workers, or an SRTP pipe between nodes.
    async fn make_available(
        self: &Arc<Self>,
        room: &mut Room,
        producer_id: &str,
        router_id: &str,
    ) -> Res<()> {
        if room
            .available
            .contains(&(producer_id.to_string(), router_id.to_string()))
        {
            return Ok(());
        }
        let origin_id = room.producers[producer_id].router_id.clone();
        let origin = room.routers[&origin_id].clone();
        let target = room.routers[router_id].clone();
        if origin.worker.node_id == target.worker.node_id {
            self.router_client(&origin)?
                .pipe_producer_to_router(pb::PipeProducerToRouterRequest {
                    producer_id: producer_id.into(),
                    target_router_id: router_id.into(),
                })
                .await
                .map_err(|s| MediaRpcError::status(&origin.worker.node_id, s))?;
        } else {
            let (from_pipe, to_pipe) = self.pipe_pair(room, &origin_id, router_id).await?;
            let mut src = self.router_client(&origin)?;
            let mut dst = self.router_client(&target)?;
            let consumed = src
                .consume_to_pipe(pb::ConsumeToPipeRequest {
                    pipe_transport_id: from_pipe,
                    producer_id: producer_id.into(),
                })
                .await
                .map_err(|s| MediaRpcError::status(&origin.worker.node_id, s))?
                .into_inner();
            dst.produce_from_pipe(pb::ProduceFromPipeRequest {
                pipe_transport_id: to_pipe,
                producer_id: producer_id.into(),
                kind: consumed.kind,
                rtp_parameters_json: consumed.rtp_parameters_json,
                paused: consumed.producer_paused,
            })
            .await
            .map_err(|s| MediaRpcError::status(&target.worker.node_id, s))?;
        }
        room.available
            .insert((producer_id.to_string(), router_id.to_string()));
        Ok(())
    }

    async fn pipe_pair(
        self: &Arc<Self>,
        room: &mut Room,
        from: &str,
        to: &str,
    ) -> Res<(String, String)> {
        if let Some(pair) = room.pipes.get(&(from.to_string(), to.to_string())) {
            return Ok(pair.clone());
        }
        let (a, b) = (room.routers[from].clone(), room.routers[to].clone());
        let mut ca = self.router_client(&a)?;
        let mut cb = self.router_client(&b)?;
        let pa = ca
            .create_pipe_transport(pb::CreatePipeTransportRequest {
                router_id: from.into(),
            })
            .await
            .map_err(|s| MediaRpcError::status(&a.worker.node_id, s))?
            .into_inner();
        let pb_ = cb
            .create_pipe_transport(pb::CreatePipeTransportRequest {
                router_id: to.into(),
            })
            .await
            .map_err(|s| MediaRpcError::status(&b.worker.node_id, s))?
            .into_inner();
        ca.connect_pipe_transport(pb::ConnectPipeTransportRequest {
            pipe_transport_id: pa.pipe_transport_id.clone(),
            ip: pb_.ip.clone(),
            port: pb_.port,
            srtp_parameters_json: pb_.srtp_parameters_json.clone(),
        })
        .await
        .map_err(|s| MediaRpcError::status(&a.worker.node_id, s))?;
        cb.connect_pipe_transport(pb::ConnectPipeTransportRequest {
            pipe_transport_id: pb_.pipe_transport_id.clone(),
            ip: pa.ip.clone(),
            port: pa.port,
            srtp_parameters_json: pa.srtp_parameters_json.clone(),
        })
        .await
        .map_err(|s| MediaRpcError::status(&b.worker.node_id, s))?;
        let pair = (pa.pipe_transport_id, pb_.pipe_transport_id);
        room.pipes
            .insert((from.to_string(), to.to_string()), pair.clone());
        Ok(pair)
    }

    fn peer_router(room: &Room, peer_id: &str) -> Res<RouterRef> {
        let peer = room
            .peers
            .get(peer_id)
            .ok_or_else(|| ConferenceError::new(ErrorCode::OutOfOrder, "join first"))?;
        Ok(room.routers[&peer.router_id].clone())
    }

    /// A WebRTC transport for the peer ("send" or "recv").
    pub async fn create_transport(
        self: &Arc<Self>,
        room_id: &str,
        peer_id: &str,
        direction: &str,
    ) -> Res<Value> {
        let producing = match direction {
            "send" => true,
            "recv" => false,
            _ => {
                return Err(ConferenceError::new(
                    ErrorCode::BadRequest,
                    "direction must be \"send\" or \"recv\"",
                ))
            }
        };
        let room_lock = self.joined_room(room_id)?;
        // Checked under the room's lock, which is not held during the call
        // to the node: in a room of 1000 a lock held across every RPC
        // serialises everybody's set-up. A session sends its requests one at
        // a time, so nothing of this peer's can change meanwhile except its
        // removal (leave elsewhere, replacement, node loss), checked after.
        let (router, router_id, session) = {
            let mut room = room_lock.lock().await;
            let router = Self::peer_router(&room, peer_id)?;
            let peer = room.peers.get_mut(peer_id).expect("checked");
            if peer.transport(producing).is_some() {
                return Err(ConferenceError::new(
                    ErrorCode::OutOfOrder,
                    format!("a {direction} transport exists already"),
                ));
            }
            if producing && !peer.can_publish {
                return Err(ConferenceError::new(
                    ErrorCode::Forbidden,
                    "this token does not allow publishing",
                ));
            }
            (router, peer.router_id.clone(), peer.tx.clone())
        };
        let mut client = self.router_client(&router)?;
        let t = client
            .create_web_rtc_transport(pb::CreateWebRtcTransportRequest {
                router_id,
                participant_id: peer_id.into(),
                producing,
            })
            .await
            .map_err(|s| MediaRpcError::status(&router.worker.node_id, s))?
            .into_inner();
        let recorded = {
            let mut room = room_lock.lock().await;
            match room.peers.get_mut(peer_id) {
                Some(peer)
                    if peer.tx.same_channel(&session) && peer.transport(producing).is_none() =>
                {
                    *peer.transport_slot(producing) = Some(t.transport_id.clone());
                    lock(&self.index)
                        .transport_owner
                        .insert(t.transport_id.clone(), (room_id.into(), peer_id.into()));
                    true
                }
                _ => false,
            }
        };
        if !recorded {
            // The peer went away while the node created it: nobody owns it.
            let _ = client
                .close_transport(pb::CloseTransportRequest {
                    transport_id: t.transport_id.clone(),
                })
                .await;
            return Err(ConferenceError::new(
                ErrorCode::OutOfOrder,
                "you left the room while the transport was being created",
            ));
        }
        Ok(json!({
            "id": t.transport_id,
            "iceParameters": parse_json("ice parameters", &t.ice_parameters_json)?,
            "iceCandidates": parse_json("ice candidates", &t.ice_candidates_json)?,
            "dtlsParameters": parse_json("dtls parameters", &t.dtls_parameters_json)?,
        }))
    }

    fn own_transport(room: &Room, peer_id: &str, transport_id: &str) -> Res<()> {
        let peer = room
            .peers
            .get(peer_id)
            .ok_or_else(|| ConferenceError::new(ErrorCode::OutOfOrder, "join first"))?;
        if peer.send_transport.as_deref() == Some(transport_id)
            || peer.recv_transport.as_deref() == Some(transport_id)
        {
            Ok(())
        } else {
            Err(ConferenceError::new(
                ErrorCode::NotFound,
                "no such transport of yours",
            ))
        }
    }

    /// DTLS connect of one of the peer's transports.
    pub async fn connect_transport(
        self: &Arc<Self>,
        room_id: &str,
        peer_id: &str,
        transport_id: &str,
        dtls: &Value,
    ) -> Res<()> {
        let (router, _) = self
            .checked(room_id, peer_id, |room| {
                Self::own_transport(room, peer_id, transport_id)
            })
            .await?;
        self.router_client(&router)?
            .connect_web_rtc_transport(pb::ConnectWebRtcTransportRequest {
                transport_id: transport_id.into(),
                dtls_parameters_json: dtls.to_string(),
            })
            .await
            .map_err(|s| MediaRpcError::status(&router.worker.node_id, s))?;
        Ok(())
    }

    /// ICE restart of one of the peer's transports.
    pub async fn restart_ice(
        self: &Arc<Self>,
        room_id: &str,
        peer_id: &str,
        transport_id: &str,
    ) -> Res<Value> {
        let (router, _) = self
            .checked(room_id, peer_id, |room| {
                Self::own_transport(room, peer_id, transport_id)
            })
            .await?;
        let r = self
            .router_client(&router)?
            .restart_ice(pb::RestartIceRequest {
                transport_id: transport_id.into(),
            })
            .await
            .map_err(|s| MediaRpcError::status(&router.worker.node_id, s))?
            .into_inner();
        Ok(json!({ "iceParameters": parse_json("ice parameters", &r.ice_parameters_json)? }))
    }

    /// Runs `check` on the room under its lock; returns the peer's router.
    async fn checked(
        &self,
        room_id: &str,
        peer_id: &str,
        check: impl FnOnce(&Room) -> Res<()>,
    ) -> Res<(RouterRef, ())> {
        let room_lock = self.joined_room(room_id)?;
        let room = room_lock.lock().await;
        let router = Self::peer_router(&room, peer_id)?;
        check(&room)?;
        Ok((router, ()))
    }

    /// A producer on the peer's send transport, made available on every
    /// router of the room and announced.
    pub async fn produce(
        self: &Arc<Self>,
        room_id: &str,
        peer_id: &str,
        transport_id: &str,
        kind: &str,
        rtp_parameters: &Value,
        source: &str,
    ) -> Res<String> {
        let kind_pb = match kind {
            "audio" => pb::MediaKind::Audio,
            "video" => pb::MediaKind::Video,
            _ => {
                return Err(ConferenceError::new(
                    ErrorCode::BadRequest,
                    "kind must be \"audio\" or \"video\"",
                ))
            }
        };
        let room_lock = self.joined_room(room_id)?;
        let mut room = room_lock.lock().await;
        let router = Self::peer_router(&room, peer_id)?;
        let peer = &room.peers[peer_id];
        if !peer.can_publish {
            return Err(ConferenceError::new(
                ErrorCode::Forbidden,
                "this token does not allow publishing",
            ));
        }
        if peer.send_transport.as_deref() != Some(transport_id) {
            return Err(ConferenceError::new(
                ErrorCode::NotFound,
                "no such send transport of yours",
            ));
        }
        let router_id = peer.router_id.clone();
        let produced = self
            .router_client(&router)?
            .produce(pb::ProduceRequest {
                transport_id: transport_id.into(),
                kind: kind_pb as i32,
                rtp_parameters_json: rtp_parameters.to_string(),
                paused: false,
                source: source.into(),
            })
            .await
            .map_err(|s| MediaRpcError::status(&router.worker.node_id, s))?
            .into_inner();
        let producer_id = produced.producer_id;
        room.producers.insert(
            producer_id.clone(),
            ProducerRec {
                peer_id: peer_id.into(),
                paused: false,
                kind: kind.into(),
                source: source.into(),
                router_id: router_id.clone(),
            },
        );
        room.available
            .insert((producer_id.clone(), router_id.clone()));
        room.peers
            .get_mut(peer_id)
            .expect("checked")
            .producers
            .insert(producer_id.clone());
        lock(&self.index)
            .producer_room
            .insert(producer_id.clone(), room_id.into());
        let others: Vec<String> = room
            .routers
            .keys()
            .filter(|r| **r != router_id)
            .cloned()
            .collect();
        for other in others {
            if let Err(e) = self.make_available(&mut room, &producer_id, &other).await {
                warn!(producer = %producer_id, router = %other, error = %e, "producer not piped");
            }
        }
        room.broadcast(
            Some(peer_id),
            &ServerMessage::NewProducer {
                peer_id: peer_id.into(),
                producer: ProducerInfo {
                    producer_id: producer_id.clone(),
                    kind: kind.into(),
                    source: source.into(),
                    paused: false,
                },
            },
        );
        Ok(producer_id)
    }

    /// A paused consumer of another peer's producer on the peer's recv transport.
    pub async fn consume(
        self: &Arc<Self>,
        room_id: &str,
        peer_id: &str,
        producer_id: &str,
        caps: &Value,
    ) -> Res<Value> {
        let room_lock = self.joined_room(room_id)?;
        // As in create_transport: checks (and the piping that makes the
        // producer available on the peer's router, once per router) under the
        // room's lock, the consume call without it, the record after it.
        let (router, router_id, recv, session) = {
            let mut room = room_lock.lock().await;
            let router = Self::peer_router(&room, peer_id)?;
            let peer = &room.peers[peer_id];
            let recv = peer.recv_transport.clone().ok_or_else(|| {
                ConferenceError::new(ErrorCode::OutOfOrder, "create a recv transport first")
            })?;
            let (session, router_id) = (peer.tx.clone(), peer.router_id.clone());
            if !room.producers.contains_key(producer_id) {
                return Err(ConferenceError::new(
                    ErrorCode::NotFound,
                    "no such producer in this room",
                ));
            }
            self.make_available(&mut room, producer_id, &router_id)
                .await?;
            (router, router_id, recv, session)
        };
        let mut client = self.router_client(&router)?;
        let c = client
            .consume(pb::ConsumeRequest {
                transport_id: recv.clone(),
                producer_id: producer_id.into(),
                rtp_capabilities_json: caps.to_string(),
            })
            .await
            .map_err(|s| MediaRpcError::status(&router.worker.node_id, s))?
            .into_inner();
        let recorded = {
            let mut room = room_lock.lock().await;
            let producer_there = room.producers.contains_key(producer_id);
            match room.peers.get_mut(peer_id) {
                Some(peer)
                    if producer_there
                        && peer.tx.same_channel(&session)
                        && peer.recv_transport.as_deref() == Some(recv.as_str()) =>
                {
                    peer.consumers.insert(
                        c.consumer_id.clone(),
                        ConsumerRec {
                            producer_id: c.producer_id.clone(),
                            router_id: router_id.clone(),
                            paused: true,
                            spatial_layer: None,
                        },
                    );
                    lock(&self.index)
                        .consumer_owner
                        .insert(c.consumer_id.clone(), (room_id.into(), peer_id.into()));
                    true
                }
                _ => false,
            }
        };
        if !recorded {
            // The producer or the peer went away during the call.
            let _ = client
                .close_consumer(pb::ConsumerRequest {
                    consumer_id: c.consumer_id.clone(),
                })
                .await;
            return Err(ConferenceError::new(
                ErrorCode::NotFound,
                "the producer or your session ended while consuming",
            ));
        }
        Ok(json!({
            "id": c.consumer_id,
            "producerId": c.producer_id,
            "kind": kind_name(c.kind),
            "rtpParameters": parse_json("rtp parameters", &c.rtp_parameters_json)?,
            "type": c.consumer_type,
            "producerPaused": c.producer_paused,
        }))
    }

    /// Pause, resume or set layers of one of the peer's consumers.
    pub async fn consumer_op(
        self: &Arc<Self>,
        room_id: &str,
        peer_id: &str,
        consumer_id: &str,
        op: ConsumerOp,
    ) -> Res<()> {
        let (router, _) = self
            .checked(room_id, peer_id, |room| {
                if room.peers[peer_id].consumers.contains_key(consumer_id) {
                    Ok(())
                } else {
                    Err(ConferenceError::new(
                        ErrorCode::NotFound,
                        "no such consumer of yours",
                    ))
                }
            })
            .await?;
        let mut client = self.router_client(&router)?;
        let req = pb::ConsumerRequest {
            consumer_id: consumer_id.into(),
        };
        let paused = match op {
            ConsumerOp::Pause => Some(true),
            ConsumerOp::Resume => Some(false),
            ConsumerOp::Close | ConsumerOp::Layers { .. } => None,
        };
        let result = match op {
            ConsumerOp::Pause => client.pause_consumer(req).await.map(|_| ()),
            ConsumerOp::Resume => client.resume_consumer(req).await.map(|_| ()),
            ConsumerOp::Close => client.close_consumer(req).await.map(|_| ()),
            ConsumerOp::Layers { spatial, temporal } => client
                .set_consumer_preferred_layers(pb::SetConsumerPreferredLayersRequest {
                    consumer_id: consumer_id.into(),
                    spatial_layer: spatial,
                    temporal_layer: temporal,
                })
                .await
                .map(|_| ()),
        };
        result.map_err(|s| MediaRpcError::status(&router.worker.node_id, s))?;
        if matches!(op, ConsumerOp::Close) {
            lock(&self.index).consumer_owner.remove(consumer_id);
            if let Some(room_lock) = self.existing_room(room_id) {
                if let Some(p) = room_lock.lock().await.peers.get_mut(peer_id) {
                    p.consumers.remove(consumer_id);
                }
            }
            return Ok(());
        }
        if let Some(room_lock) = self.existing_room(room_id) {
            if let Some(c) = room_lock
                .lock()
                .await
                .peers
                .get_mut(peer_id)
                .and_then(|p| p.consumers.get_mut(consumer_id))
            {
                match op {
                    ConsumerOp::Layers { spatial, .. } => c.spatial_layer = Some(spatial),
                    _ => c.paused = paused.unwrap_or(c.paused),
                }
            }
        }
        Ok(())
    }

    /// What this coordinator serves of a room, for the admin API: every peer with
    /// its producers and consumers (paused as last set on the node). With
    /// `stats`, each consumer also carries the packets its node has sent for it.
    /// `None` when the room has no participants on this coordinator.
    pub async fn media_snapshot(self: &Arc<Self>, room_id: &str, stats: bool) -> Option<Value> {
        let room_lock = self.existing_room(room_id)?;
        let (peers, owners, routers) = {
            let room = room_lock.lock().await;
            if room.peers.is_empty() {
                return None;
            }
            let mut peers: Vec<(Value, Vec<(String, ConsumerRec)>)> = room
                .peers
                .iter()
                .map(|(id, p)| {
                    let producers: Vec<Value> = p
                        .producers
                        .iter()
                        .filter_map(|pid| room.producers.get(pid).map(|r| (pid, r)))
                        .map(|(pid, r)| {
                            json!({ "producerId": pid, "kind": r.kind, "source": r.source, "paused": r.paused })
                        })
                        .collect();
                    let head = json!({
                        "peerId": id,
                        "displayName": p.display_name,
                        "routerId": p.router_id,
                        "producers": producers,
                    });
                    let consumers = p
                        .consumers
                        .iter()
                        .map(|(cid, c)| (cid.clone(), c.clone()))
                        .collect();
                    (head, consumers)
                })
                .collect();
            peers.sort_by(|a, b| a.0["peerId"].as_str().cmp(&b.0["peerId"].as_str()));
            let owners: HashMap<String, String> = room
                .producers
                .iter()
                .map(|(id, r)| (id.clone(), r.peer_id.clone()))
                .collect();
            (peers, owners, room.routers.clone())
        };
        let mut out = Vec::with_capacity(peers.len());
        for (mut head, consumers) in peers {
            let mut list = Vec::with_capacity(consumers.len());
            for (cid, c) in consumers {
                let mut entry = json!({
                    "consumerId": cid,
                    "producerId": c.producer_id,
                    "producerPeerId": owners.get(&c.producer_id),
                    "paused": c.paused,
                    "preferredSpatialLayer": c.spatial_layer,
                });
                if stats {
                    entry["packetsSent"] = match routers.get(&c.router_id) {
                        Some(r) => self
                            .consumer_packets(r, &cid)
                            .await
                            .map_or(Value::Null, Value::from),
                        None => Value::Null,
                    };
                }
                list.push(entry);
            }
            list.sort_by(|a, b| a["consumerId"].as_str().cmp(&b["consumerId"].as_str()));
            head["consumers"] = Value::Array(list);
            out.push(head);
        }
        Some(Value::Array(out))
    }

    /// Packets the node has sent for a consumer (its outbound RTP stats).
    async fn consumer_packets(
        self: &Arc<Self>,
        router: &RouterRef,
        consumer_id: &str,
    ) -> Option<u64> {
        let stats = self
            .router_client(router)
            .ok()?
            .get_stats(pb::GetStatsRequest {
                target: Some(pb::get_stats_request::Target::ConsumerId(
                    consumer_id.into(),
                )),
            })
            .await
            .ok()?
            .into_inner();
        let v: Value = serde_json::from_str(&stats.stats_json).ok()?;
        v.as_array()?
            .iter()
            .filter(|s| s["type"] == "outbound-rtp")
            .map(|s| s["packetCount"].as_u64())
            .sum()
    }

    /// Pause, resume or close one of the peer's producers.
    pub async fn producer_op(
        self: &Arc<Self>,
        room_id: &str,
        peer_id: &str,
        producer_id: &str,
        op: ProducerOp,
    ) -> Res<()> {
        let room_lock = self.joined_room(room_id)?;
        let mut room = room_lock.lock().await;
        let router = Self::peer_router(&room, peer_id)?;
        if !room.peers[peer_id].producers.contains(producer_id) {
            return Err(ConferenceError::new(
                ErrorCode::NotFound,
                "no such producer of yours",
            ));
        }
        let mut client = self.router_client(&router)?;
        let req = pb::ProducerRequest {
            producer_id: producer_id.into(),
        };
        match op {
            ProducerOp::Pause | ProducerOp::Resume => {
                let paused = matches!(op, ProducerOp::Pause);
                let result = if paused {
                    client.pause_producer(req).await
                } else {
                    client.resume_producer(req).await
                };
                result.map_err(|s| MediaRpcError::status(&router.worker.node_id, s))?;
                if let Some(rec) = room.producers.get_mut(producer_id) {
                    rec.paused = paused;
                }
                // Same-node copies pause with their source; across nodes the pipe
                // consumer pauses, so the far copy simply receives no RTP.
                room.broadcast(
                    Some(peer_id),
                    &ServerMessage::ProducerPaused {
                        peer_id: peer_id.into(),
                        producer_id: producer_id.into(),
                        paused,
                    },
                );
            }
            ProducerOp::Close => self.close_producer_everywhere(&mut room, producer_id).await,
        }
        Ok(())
    }

    /// Closes a producer on its node and its copies on other nodes, and tells the room.
    async fn close_producer_everywhere(self: &Arc<Self>, room: &mut Room, producer_id: &str) {
        let Some(rec) = room.producers.remove(producer_id) else {
            return;
        };
        let mut nodes: Vec<RouterRef> = Vec::new();
        for (p, r) in &room.available {
            if p == producer_id {
                if let Some(router) = room.routers.get(r) {
                    if !nodes
                        .iter()
                        .any(|n| n.worker.node_id == router.worker.node_id)
                    {
                        nodes.push(router.clone());
                    }
                }
            }
        }
        room.available.retain(|(p, _)| p != producer_id);
        for router in nodes {
            if let Ok(mut client) = self.router_client(&router) {
                match client
                    .close_producer(pb::ProducerRequest {
                        producer_id: producer_id.into(),
                    })
                    .await
                {
                    Ok(_) => {}
                    Err(s) if s.code() == tonic::Code::NotFound => {}
                    Err(s) => {
                        warn!(producer = producer_id, node = %router.worker.node_id, error = %s, "close failed")
                    }
                }
            }
        }
        if let Some(peer) = room.peers.get_mut(&rec.peer_id) {
            peer.producers.remove(producer_id);
        }
        lock(&self.index).producer_room.remove(producer_id);
        room.broadcast(
            Some(&rec.peer_id),
            &ServerMessage::ProducerClosed {
                peer_id: rec.peer_id.clone(),
                producer_id: producer_id.into(),
            },
        );
    }

    /// The peer of the session whose channel is `session` leaves: its media
    /// objects close, its reservation is released, and an emptied room gives
    /// its routers back. A session that was already evicted (its node died) and
    /// whose identity has since re-joined on a new session leaves nothing: the
    /// new session is not its to end.
    pub async fn leave(
        self: &Arc<Self>,
        room_id: &str,
        peer_id: &str,
        session: &mpsc::UnboundedSender<ServerMessage>,
    ) {
        let Some(room_lock) = self.existing_room(room_id) else {
            return;
        };
        let mut room = room_lock.lock().await;
        let Some(peer) = room.peers.get(peer_id) else {
            return;
        };
        if !peer.tx.same_channel(session) {
            debug!(
                room = room_id,
                peer = peer_id,
                "stale session's leave ignored"
            );
            return;
        }
        self.remove_peer(&mut room, room_id, peer_id).await;
        if room.peers.is_empty() {
            self.close_room(room_id, &mut room).await;
        }
    }

    /// Closes a peer's media objects, forgets it, releases its reservation and
    /// tells the room. The caller holds the room's lock.
    async fn remove_peer(self: &Arc<Self>, room: &mut Room, room_id: &str, peer_id: &str) {
        let Some(peer) = room.peers.get(peer_id) else {
            return;
        };
        let producers: Vec<String> = peer.producers.iter().cloned().collect();
        let router = room.routers.get(&peer.router_id).cloned();
        for producer_id in producers {
            self.close_producer_everywhere(room, &producer_id).await;
        }
        if let Some(router) = &router {
            if let Ok(mut client) = self.router_client(router) {
                if let Err(s) = client
                    .close_participant(pb::CloseParticipantRequest {
                        participant_id: peer_id.into(),
                    })
                    .await
                {
                    warn!(peer = peer_id, error = %s, "close participant failed");
                }
            }
        }
        if let Some(peer) = room.peers.remove(peer_id) {
            let mut index = lock(&self.index);
            for t in [&peer.send_transport, &peer.recv_transport]
                .into_iter()
                .flatten()
            {
                index.transport_owner.remove(t);
            }
            for c in peer.consumers.keys() {
                index.consumer_owner.remove(c);
            }
        }
        if let Err(e) = self.registry.release(room_id, peer_id).await {
            warn!(room = room_id, peer = peer_id, error = %e, "reservation not released");
        }
        room.broadcast(
            None,
            &ServerMessage::PeerLeft {
                peer_id: peer_id.into(),
            },
        );
        info!(room = room_id, peer = peer_id, "left");
    }

    async fn close_room(self: &Arc<Self>, room_id: &str, room: &mut Room) {
        // Other coordinators may still have participants here (they hold
        // their own reservations): only close when the registry agrees.
        match self.registry.room(room_id).await {
            Ok(state) if state.participants > 0 => {
                debug!(
                    room = room_id,
                    remaining = state.participants,
                    "room still used elsewhere"
                );
                return;
            }
            Ok(_) => {}
            Err(e) => {
                warn!(room = room_id, error = %e, "cannot check room; keeping routers");
                return;
            }
        }
        for (router_id, router) in room.routers.drain() {
            if let Ok(mut client) = self.router_client(&router) {
                let _ = client
                    .close_router(pb::CloseRouterRequest {
                        router_id: router_id.clone(),
                    })
                    .await;
            }
            let _ = self.registry.remove_router(room_id, &router.worker).await;
        }
        room.available.clear();
        room.pipes.clear();
        lock(&self.rooms).remove(room_id);
    }

    /// Follows a node's events for as long as the node lives, reconnecting
    /// after errors.
    async fn follow_events(self: Arc<Self>, node_id: String, mut client: MediaNodeClient<Channel>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match client.events(pb::EventsRequest {}).await {
                Ok(stream) => {
                    backoff = Duration::from_millis(200);
                    let mut stream = stream.into_inner();
                    while let Ok(Some(event)) = stream.message().await {
                        if let Some(event) = event.event {
                            self.on_event(&node_id, event).await;
                        }
                    }
                }
                Err(status) => debug!(node = %node_id, %status, "events stream not open"),
            }
            if !lock(&self.watched).contains(&node_id) {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn send_to(&self, owner: Option<(String, String)>, msg: ServerMessage) {
        let Some((room_id, peer_id)) = owner else {
            return;
        };
        let Some(room_lock) = self.existing_room(&room_id) else {
            return;
        };
        // Delivered from a task of its own: the event stream must not wait
        // behind a room busy with a long join.
        tokio::spawn(async move {
            let room = room_lock.lock().await;
            if let Some(p) = room.peers.get(&peer_id) {
                let _ = p.tx.send(msg);
            }
        });
    }

    async fn on_event(self: &Arc<Self>, node_id: &str, event: pb::event::Event) {
        use pb::event::Event;
        match event {
            Event::ConsumerClosed(c) => {
                let owner = lock(&self.index).consumer_owner.remove(&c.consumer_id);
                if let Some((room_id, peer_id)) = owner.clone() {
                    if let Some(room_lock) = self.existing_room(&room_id) {
                        let consumer_id = c.consumer_id.clone();
                        tokio::spawn(async move {
                            if let Some(p) = room_lock.lock().await.peers.get_mut(&peer_id) {
                                p.consumers.remove(&consumer_id);
                            }
                        });
                    }
                }
                self.send_to(
                    owner,
                    ServerMessage::ConsumerClosed {
                        consumer_id: c.consumer_id,
                    },
                );
            }
            Event::TransportState(t) => {
                let owner = lock(&self.index)
                    .transport_owner
                    .get(&t.transport_id)
                    .cloned();
                self.send_to(
                    owner,
                    ServerMessage::ConnectionState {
                        transport_id: t.transport_id,
                        ice_state: t.ice_state,
                        dtls_state: t.dtls_state,
                    },
                );
            }
            Event::ActiveSpeaker(a) => {
                if let Some(room_lock) = self.existing_room(&a.room_id) {
                    tokio::spawn(async move {
                        let room = room_lock.lock().await;
                        if let Some(rec) = room.producers.get(&a.producer_id) {
                            room.broadcast(
                                None,
                                &ServerMessage::ActiveSpeaker {
                                    peer_id: rec.peer_id.clone(),
                                },
                            );
                        }
                    });
                }
            }
            Event::WorkerDied(w) => {
                warn!(node = node_id, worker = w.worker_index, reason = %w.reason, "media worker died");
                self.node_lost(node_id).await;
            }
            Event::ProducerClosed(_)
            | Event::ConsumerLayersChanged(_)
            | Event::ConsumerProducerPaused(_)
            | Event::ConsumerProducerResumed(_) => {}
        }
    }

    /// This coordinator's registry id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Another coordinator died: release what it placed, close its
    /// participants' media objects, and give back routers of rooms it emptied.
    pub async fn reap(self: &Arc<Self>, dead: &str) {
        let reaped = match self.registry.reap_coordinator(dead).await {
            Ok(r) => r,
            Err(e) => {
                warn!(coordinator = dead, error = %e, "dead coordinator not reaped");
                return;
            }
        };
        info!(
            coordinator = dead,
            participants = reaped.len(),
            "dead coordinator reaped"
        );
        let nodes = self.registry.nodes().await.unwrap_or_default();
        let address = |node_id: &str| {
            nodes
                .iter()
                .find(|n| n.node_id == node_id)
                .map(|n| n.grpc_address.clone())
        };
        let mut rooms: Vec<String> = Vec::new();
        for (room, participant, worker) in reaped {
            if let Some(addr) = address(&worker.node_id) {
                if let Ok(mut client) = self.client(&worker.node_id, &addr) {
                    let r = client
                        .close_participant(pb::CloseParticipantRequest {
                            participant_id: participant.clone(),
                        })
                        .await;
                    match r {
                        Ok(_) => {}
                        Err(s) if s.code() == tonic::Code::NotFound => {}
                        Err(s) => {
                            warn!(room = %room, participant = %participant, error = %s, "media objects of a reaped participant not closed")
                        }
                    }
                }
            }
            if !rooms.contains(&room) {
                rooms.push(room);
            }
        }
        for room in rooms {
            let Ok(state) = self.registry.room(&room).await else {
                continue;
            };
            if state.participants > 0 {
                continue;
            }
            for (worker, router_id) in state.routers {
                if let (Some(router_id), Some(addr)) = (router_id, address(&worker.node_id)) {
                    if let Ok(mut client) = self.client(&worker.node_id, &addr) {
                        let _ = client
                            .close_router(pb::CloseRouterRequest { router_id })
                            .await;
                    }
                }
                let _ = self.registry.remove_router(&room, &worker).await;
            }
        }
    }

    /// Shutdown: every participant served here is told to reconnect (to
    /// another coordinator behind the load balancer); their sessions then
    /// leave, releasing reservations and media objects. Waits until the rooms
    /// are empty or `grace` passed.
    pub async fn drain(self: &Arc<Self>, grace: Duration) {
        let rooms: Vec<Arc<tokio::sync::Mutex<Room>>> =
            lock(&self.rooms).values().cloned().collect();
        for room_lock in rooms {
            let room = room_lock.lock().await;
            room.broadcast(
                None,
                &ServerMessage::Reconnect {
                    reason: "coordinator restarting".into(),
                },
            );
        }
        let deadline = Instant::now() + grace;
        while !lock(&self.rooms).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left = lock(&self.rooms).len();
        if left > 0 {
            warn!(
                rooms = left,
                "drain grace period over with rooms still open"
            );
        }
    }

    /// A node died or vanished: its reservations go, and every participant
    /// placed on it is told to reconnect (it will be placed elsewhere).
    pub async fn node_lost(self: &Arc<Self>, node_id: &str) {
        lock(&self.watched).remove(node_id);
        self.media.forget(node_id);
        match self.registry.evict_node(node_id).await {
            Ok(evicted) => info!(node = node_id, participants = evicted.len(), "node evicted"),
            Err(e) => warn!(node = node_id, error = %e, "node not evicted"),
        }
        let rooms: Vec<(String, Arc<tokio::sync::Mutex<Room>>)> = lock(&self.rooms)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (room_id, room_lock) in rooms {
            let mut room = room_lock.lock().await;
            let dead_routers: Vec<String> = room
                .routers
                .iter()
                .filter(|(_, r)| r.worker.node_id == node_id)
                .map(|(id, _)| id.clone())
                .collect();
            if dead_routers.is_empty() {
                continue;
            }
            for router_id in &dead_routers {
                room.routers.remove(router_id);
                room.available.retain(|(_, r)| r != router_id);
                room.pipes
                    .retain(|(a, b), _| a != router_id && b != router_id);
            }
            let lost_producers: Vec<String> = room
                .producers
                .iter()
                .filter(|(_, p)| dead_routers.contains(&p.router_id))
                .map(|(id, _)| id.clone())
                .collect();
            for producer_id in lost_producers {
                self.close_producer_everywhere(&mut room, &producer_id)
                    .await;
            }
            let gone: Vec<String> = room
                .peers
                .iter()
                .filter(|(_, p)| dead_routers.contains(&p.router_id))
                .map(|(id, _)| id.clone())
                .collect();
            for peer_id in gone {
                if let Some(peer) = room.peers.remove(&peer_id) {
                    let _ = peer.tx.send(ServerMessage::Reconnect {
                        reason: "media node lost".into(),
                    });
                }
                room.broadcast(None, &ServerMessage::PeerLeft { peer_id });
            }
            debug!(room = %room_id, "node loss handled");
        }
    }
}

/// Operations on a consumer.
#[derive(Debug, Clone, Copy)]
pub enum ConsumerOp {
    /// Pause.
    Pause,
    /// Resume.
    Resume,
    /// Close (the client no longer wants it).
    Close,
    /// Preferred layers.
    Layers {
        /// Spatial.
        spatial: u32,
        /// Temporal.
        temporal: Option<u32>,
    },
}

/// Operations on a producer.
#[derive(Debug, Clone, Copy)]
pub enum ProducerOp {
    /// Pause.
    Pause,
    /// Resume.
    Resume,
    /// Close.
    Close,
}
