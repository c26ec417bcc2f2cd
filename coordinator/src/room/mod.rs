//! Join path: signalling -> join queue -> **rooms** -> placement / media
//! nodes. The rooms whose participants this coordinator serves: [`state`]
//! is one room as plain data, [`join`] how a participant enters it (and
//! pages its roster), [`presence`] how membership changes are told,
//! [`ops`] the other verbs a client may call on it,
//! [`events`] what the nodes report about it, [`takeover`] how a room whose
//! coordinator died is rebuilt from the nodes.
//!
//! Locks, in the order they may be taken (outer first); none is held across
//! an `.await` unless it says so:
//! 1. a room's lock (`tokio::sync::Mutex<RoomState>`, one per room). Held
//!    across node calls only for pipe set-up
//!    (`crate::media::pipes`) and closing the room's routers. Every other verb
//!    plans under it, calls the node without it, and commits after taking it
//!    again and re-checking (`ops::Rooms::plan_call_commit`).
//! 2. the room map (`Rooms::map`, std mutex): get or insert a room, remove a
//!    closed one. A closed room is marked closed under its own lock before it
//!    leaves the map, and [`Rooms::lock_room`] never returns a closed room: a
//!    join that waited at a closing room's lock starts over with a new one.
//! 3. the owner index (`Rooms::index`, std mutex): which room and peer own a
//!    transport or consumer a node reports about.
//! 4. a room's joins in flight (`presence::Joining`, std mutex, a leaf).
//!
//! A join places its participant (registry and node calls) without the
//! room's lock and takes it again to add the peer (`ops::Rooms::join`); the
//! room's membership changes reach its clients in coalesced lists
//! ([`presence`]), flushed by a task per room.

pub mod events;
pub mod join;
pub mod ops;
pub mod peer;
pub mod presence;
pub mod stage;
pub mod state;
pub mod takeover;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use throng_hooks::Hooks;
use tokio::sync::{Notify, OwnedMutexGuard};
use tracing::warn;

use crate::media::client::{NodeCallError, NodeClients, RouterRef};
use crate::placement::{Placement, PlacementError};
use crate::protocol::{ErrorCode, Outbox, ServerMessage};
use crate::registry::RegistryError;
use state::RoomState;

/// Hook point: a room closing, with its lock held (tests hold it there while
/// a join waits at the lock).
pub const HOOK_ROOM_CLOSING: &str = "room.closing";
/// Hook point: a join about to wait for its room's lock.
pub const HOOK_JOIN_AT_LOCK: &str = "room.join_at_lock";

/// Why a room operation failed, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RoomError {
    /// Code for the client.
    pub code: ErrorCode,
    /// Message for the client.
    pub message: String,
    /// A refusal for now: when to try again (`retryAfterMs`).
    pub retry_after: Option<Duration>,
}

impl RoomError {
    /// An error for the client.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A refusal for now, with when to try again.
    pub fn retry_later(code: ErrorCode, message: impl Into<String>, after: Duration) -> Self {
        Self {
            retry_after: Some(after),
            ..Self::new(code, message)
        }
    }

    /// The `error` message for the client.
    pub fn into_message(self, req_id: Option<String>) -> ServerMessage {
        match self.retry_after {
            Some(after) => ServerMessage::retry_later(req_id, self.code, self.message, after),
            None => ServerMessage::error(req_id, self.code, self.message),
        }
    }
}

impl From<RegistryError> for RoomError {
    fn from(e: RegistryError) -> Self {
        warn!(error = %e, "registry failure");
        Self::new(ErrorCode::Internal, "registry unavailable")
    }
}

impl From<NodeCallError> for RoomError {
    fn from(e: NodeCallError) -> Self {
        let code = match e.code() {
            Some(tonic::Code::InvalidArgument) | Some(tonic::Code::FailedPrecondition) => {
                ErrorCode::Rejected
            }
            Some(tonic::Code::NotFound) => ErrorCode::NotFound,
            _ => ErrorCode::Unavailable,
        };
        let message = match &e {
            NodeCallError::Status { status, .. } if code != ErrorCode::Unavailable => {
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

impl From<PlacementError> for RoomError {
    fn from(e: PlacementError) -> Self {
        match e {
            PlacementError::RoomFull(_) => Self::new(ErrorCode::RoomFull, e.to_string()),
            PlacementError::NoCapacity
            | PlacementError::Overloaded
            | PlacementError::Busy(_)
            | PlacementError::NodeVanished
            | PlacementError::RouterTimeout => Self::new(ErrorCode::Unavailable, e.to_string()),
            PlacementError::Registry(e) => e.into(),
            PlacementError::Node(e) => e.into(),
        }
    }
}

/// Result of a room operation.
pub type Res<T> = Result<T, RoomError>;

/// A room behind its lock.
struct RoomCell {
    state: Arc<tokio::sync::Mutex<RoomState>>,
}

/// Who owns a transport or consumer a node reports about.
#[derive(Default)]
struct Index {
    /// consumer -> (room, peer).
    consumers: HashMap<String, (String, String)>,
    /// transport -> (room, peer, its session's outbox).
    transports: HashMap<String, (String, String, Outbox)>,
}

/// The rooms this coordinator serves.
pub struct Rooms {
    placement: Placement,
    clients: Arc<NodeClients>,
    map: Mutex<HashMap<String, Arc<RoomCell>>>,
    index: Mutex<Index>,
    /// Notified whenever a room leaves the map (drain waits on it).
    room_gone: Notify,
    hooks: Hooks,
    /// Set by [`Rooms::drain`]: sessions that end leave at once (no resume).
    draining: std::sync::atomic::AtomicBool,
    /// Numbers each detachment (`ops::Rooms::detach`).
    detachments: std::sync::atomic::AtomicU64,
    /// How long membership changes are coalesced ([`presence`]).
    presence_window: Duration,
    /// Most nodes one node pipes a producer to (`media::pipes`).
    pipe_fanout: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Rooms {
    /// No rooms yet.
    pub fn new(
        placement: Placement,
        clients: Arc<NodeClients>,
        hooks: Hooks,
        presence_window: Duration,
        pipe_fanout: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            placement,
            clients,
            map: Mutex::default(),
            index: Mutex::default(),
            room_gone: Notify::new(),
            hooks,
            draining: Default::default(),
            detachments: Default::default(),
            presence_window,
            pipe_fanout,
        })
    }

    /// A new room, with its presence flusher running.
    fn new_cell(&self) -> Arc<RoomCell> {
        let wake = Arc::new(Notify::new());
        let mut room = RoomState::default();
        room.presence = presence::Presence::with_wake(wake.clone());
        room.pipes = crate::media::pipes::RoomPipes::new(self.pipe_fanout);
        let state = Arc::new(tokio::sync::Mutex::new(room));
        tokio::spawn(presence::flusher(
            Arc::downgrade(&state),
            wake,
            self.presence_window,
        ));
        Arc::new(RoomCell { state })
    }

    /// The room's lock, creating the room if needed; never a closed room.
    async fn lock_room(&self, room_id: &str) -> OwnedMutexGuard<RoomState> {
        loop {
            let cell = lock(&self.map)
                .entry(room_id.to_string())
                .or_insert_with(|| self.new_cell())
                .clone();
            self.hooks.pass(HOOK_JOIN_AT_LOCK).await;
            let guard = cell.state.clone().lock_owned().await;
            if !guard.closed {
                return guard;
            }
            // It closed while we waited; its closer removed it from the map
            // (or is about to: then the same cell is found again and skipped).
            drop(guard);
            self.forget_room(room_id, &cell);
            tokio::task::yield_now().await;
        }
    }

    /// The lock of a room that exists and is open.
    async fn existing_room(&self, room_id: &str) -> Option<OwnedMutexGuard<RoomState>> {
        let cell = lock(&self.map).get(room_id).cloned()?;
        let guard = cell.state.clone().lock_owned().await;
        (!guard.closed).then_some(guard)
    }

    /// The lock of a room a request needs the caller to have joined.
    async fn joined_room(&self, room_id: &str) -> Res<OwnedMutexGuard<RoomState>> {
        self.existing_room(room_id)
            .await
            .ok_or_else(|| RoomError::new(ErrorCode::OutOfOrder, "join first"))
    }

    /// Removes `cell` from the map if it is still the room's entry.
    fn forget_room(&self, room_id: &str, cell: &Arc<RoomCell>) {
        let mut map = lock(&self.map);
        if map.get(room_id).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            map.remove(room_id);
            drop(map);
            self.room_gone.notify_waiters();
        }
    }

    fn forget_room_of(&self, room_id: &str, state: &OwnedMutexGuard<RoomState>) {
        let mut map = lock(&self.map);
        let same = map
            .get(room_id)
            .is_some_and(|c| Arc::ptr_eq(&c.state, OwnedMutexGuard::mutex(state)));
        if same {
            map.remove(room_id);
            drop(map);
            self.room_gone.notify_waiters();
        }
    }

    /// Consumer units one worker may be reserved up to.
    pub fn worker_capacity(&self) -> u32 {
        self.placement.settings().worker_capacity
    }

    /// Rooms with participants on this coordinator.
    pub fn local_rooms(&self) -> Vec<String> {
        lock(&self.map).keys().cloned().collect()
    }

    fn all_rooms(&self) -> Vec<(String, Arc<RoomCell>)> {
        lock(&self.map)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        lock(&self.index)
    }

    /// Records again, in a registry that lost its data, every router and
    /// reservation of the rooms hosted here. Each room's lock is held only to
    /// read it. Returns the participants recorded.
    pub async fn reassert(&self) -> usize {
        let mut restored = 0;
        for (room_id, cell) in self.all_rooms() {
            let (routers, peers) = {
                let room = cell.state.lock().await;
                if room.closed {
                    continue;
                }
                let routers: Vec<RouterRef> = room.routers().values().cloned().collect();
                let peers: Vec<(String, RouterRef)> = room
                    .peers()
                    .map(|(id, p)| (id.clone(), room.router_of(p)))
                    .collect();
                (routers, peers)
            };
            match self.placement.reassert(&room_id, &routers, &peers).await {
                Ok(n) => restored += n,
                Err(e) => {
                    warn!(room = %room_id, error = %e, "room not re-asserted; retried at the next check")
                }
            }
        }
        restored
    }

    /// Watches the registry's generation ([`crate::registry::Registry::epoch`])
    /// every second: when it changes (Redis restarted empty), re-asserts the
    /// rooms hosted here, so that capacity accounting is exact again and new
    /// joins land on the rooms' routers. Runs until the task is aborted.
    pub async fn reassert_loop(self: Arc<Self>, registry: Arc<dyn crate::registry::Registry>) {
        let mut seen: Option<String> = None;
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticker.tick().await;
            let Ok(epoch) = registry.epoch().await else {
                continue;
            };
            if seen.as_ref().is_some_and(|s| *s != epoch) {
                let restored = self.reassert().await;
                tracing::info!(
                    participants = restored,
                    "registry lost its data: rooms re-asserted"
                );
            }
            seen = Some(epoch);
        }
    }

    /// Shutdown: every participant served here is told to reconnect (to
    /// another coordinator behind the load balancer); their sessions then
    /// leave, releasing reservations and media objects. Waits until the rooms
    /// are empty or `grace` passed.
    pub async fn drain(&self, grace: Duration) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Detached peers are not coming back here: they leave now.
        for (room_id, cell) in self.all_rooms() {
            let detached: Vec<String> = {
                let room = cell.state.lock().await;
                room.peers()
                    .filter(|(_, p)| p.detached.is_some())
                    .map(|(id, _)| id.clone())
                    .collect()
            };
            for peer in detached {
                self.leave_detached(&room_id, &peer, None).await;
            }
        }
        for (_, cell) in self.all_rooms() {
            let room = cell.state.lock().await;
            self.clients
                .metrics()
                .reconnected("coordinator_restarting", room.len());
            room.broadcast(
                None,
                &ServerMessage::Reconnect {
                    reason: "coordinator restarting".into(),
                },
            );
        }
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let gone = self.room_gone.notified();
            tokio::pin!(gone);
            gone.as_mut().enable();
            if lock(&self.map).is_empty() {
                return;
            }
            if tokio::time::timeout_at(deadline, gone).await.is_err() {
                break;
            }
        }
        let left = lock(&self.map).len();
        warn!(
            rooms = left,
            "drain grace period over with rooms still open"
        );
    }
}

/// A peer as the admin API shows it.
#[derive(Debug, Clone)]
pub struct PeerSnapshot {
    /// Peer id.
    pub peer_id: String,
    /// Display name.
    pub display_name: String,
    /// Its router.
    pub router_id: String,
    /// Its producers.
    pub producers: Vec<crate::protocol::ProducerInfo>,
    /// Its consumers.
    pub consumers: Vec<ConsumerSnapshot>,
}

/// A consumer as the admin API shows it.
#[derive(Debug, Clone)]
pub struct ConsumerSnapshot {
    /// Consumer id.
    pub consumer_id: String,
    /// What it consumes.
    pub record: state::ConsumerRec,
    /// The producer's peer.
    pub producer_peer_id: Option<String>,
    /// The router it is on.
    pub router: crate::media::client::RouterRef,
}

impl Rooms {
    /// Each producer's relay tree in a room this coordinator serves:
    /// producer -> node -> the node feeding it (`None`: its origin).
    pub async fn relay_tree(
        &self,
        room_id: &str,
    ) -> Option<
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, Option<String>>>,
    > {
        Some(self.existing_room(room_id).await?.pipes.tree())
    }

    /// What this coordinator serves of a room, sorted by peer and consumer;
    /// `None` when the room has no participants here.
    pub async fn snapshot(&self, room_id: &str) -> Option<Vec<PeerSnapshot>> {
        let room = self.existing_room(room_id).await?;
        if room.is_empty() {
            return None;
        }
        let mut peers: Vec<PeerSnapshot> = room
            .peers()
            .map(|(id, p)| {
                let router = room.router_of(p);
                let mut producers: Vec<_> = p
                    .producer_ids()
                    .filter_map(|pid| {
                        let r = room.producer(pid)?;
                        Some(crate::protocol::ProducerInfo {
                            producer_id: pid.clone(),
                            kind: r.kind,
                            source: r.source.clone(),
                            paused: r.paused,
                        })
                    })
                    .collect();
                producers.sort_by(|a, b| a.producer_id.cmp(&b.producer_id));
                let mut consumers: Vec<_> = p
                    .consumers()
                    .map(|(cid, c)| ConsumerSnapshot {
                        consumer_id: cid.clone(),
                        producer_peer_id: room.producer(&c.producer_id).map(|r| r.peer_id.clone()),
                        record: c.clone(),
                        router: router.clone(),
                    })
                    .collect();
                consumers.sort_by(|a, b| a.consumer_id.cmp(&b.consumer_id));
                PeerSnapshot {
                    peer_id: id.clone(),
                    display_name: p.display_name.clone(),
                    router_id: p.router_id.clone(),
                    producers,
                    consumers,
                }
            })
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        Some(peers)
    }
}
