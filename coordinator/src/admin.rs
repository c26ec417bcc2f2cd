//! The admin API (`/admin/*`, admin key): the cluster's nodes and workers
//! with their reserved capacity, the rooms, and one room in detail (for rooms
//! this coordinator hosts: every peer, producer and consumer, and with
//! `?stats=true` the packets each consumer was sent, read from its node).
//! `/admin` is the live cluster view (a page; the key is typed into it and
//! sent as a header, never in a URL) fed by `/admin/live`, server-sent
//! events of [`cluster_view`] once a second.
//! Reads the registry, the rooms and the nodes; changes nothing.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use std::sync::Arc;

use crate::api::{require_key, ApiError};
use crate::cluster::Cluster;
use crate::media::client::NodeClients;
use crate::registry::nodes_with_reserved;
use crate::room::Rooms;
use crate::signaling::owners::RoomOwners;

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// The join queue (length and wait, for the live view).
    pub queue: Arc<crate::join::queue::JoinQueue>,
    /// This coordinator's metrics (participants, sessions).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The rooms hosted here.
    pub rooms: Arc<Rooms>,
    /// The cluster (registry, live nodes).
    pub cluster: Arc<Cluster>,
    /// Media node clients (consumer stats).
    pub clients: Arc<NodeClients>,
    /// Which coordinator hosts each room.
    pub owners: RoomOwners,
    /// The admin key.
    pub admin_key: Arc<str>,
}

fn registry_down<E>(_: E) -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "registry unavailable".into(),
    )
}

/// `GET /admin/nodes`.
pub async fn nodes(
    State(state): State<AdminState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_key(&headers, "x-admin-key", &state.admin_key)?;
    let nodes = nodes_with_reserved(state.cluster.registry().as_ref())
        .await
        .map_err(registry_down)?;
    let mut out = Vec::new();
    for (n, reserved) in nodes {
        let mut workers = Vec::new();
        for (w, reserved) in n.workers.iter().zip(reserved) {
            let reserved = reserved.unwrap_or(0);
            workers.push(json!({
                "index": w.index, "port": w.port, "reserved": reserved,
                "routers": w.routers, "transports": w.transports, "producers": w.producers, "consumers": w.consumers,
                "cpuLoad": w.cpu_load,
            }));
        }
        out.push(json!({ "nodeId": n.node_id, "grpcAddress": n.grpc_address, "draining": n.draining, "workers": workers }));
    }
    Ok(Json(json!({ "nodes": out })))
}

/// `GET /admin/rooms`.
pub async fn rooms(
    State(state): State<AdminState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_key(&headers, "x-admin-key", &state.admin_key)?;
    let rooms = state
        .cluster
        .registry()
        .rooms()
        .await
        .map_err(registry_down)?;
    Ok(Json(json!({ "rooms": rooms })))
}

/// Query of `GET /admin/rooms/{room}`.
#[derive(Deserialize)]
pub struct RoomQuery {
    /// `true`: each consumer also carries the packets its node sent for it.
    #[serde(default)]
    stats: bool,
}

/// `GET /admin/rooms/{room}/relays`: each producer's relay tree in a room
/// this coordinator serves (`null` otherwise). Reads the room's state only:
/// cheap enough to poll during an event of thousands (the room view lists
/// every peer and asks Redis for every participant).
pub async fn relays(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(room): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_key(&headers, "x-admin-key", &state.admin_key)?;
    let relays = state.rooms.relay_tree(&room).await;
    Ok(Json(json!({ "room": room, "relays": relays })))
}

/// `GET /admin/rooms/{room}`.
pub async fn room(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(room): Path<String>,
    Query(q): Query<RoomQuery>,
) -> Result<Json<Value>, ApiError> {
    require_key(&headers, "x-admin-key", &state.admin_key)?;
    let r = state
        .cluster
        .registry()
        .room(&room)
        .await
        .map_err(registry_down)?;
    let routers: Vec<_> = r
        .routers
        .iter()
        .map(|(w, id)| json!({ "nodeId": w.node_id, "worker": w.worker, "routerId": id }))
        .collect();
    // Peers, producers and consumers as this coordinator serves them; a room
    // signalled by another coordinator has them there (see `owner`).
    let peers = match state.rooms.snapshot(&room).await {
        None => Value::Null,
        Some(peers) => {
            let mut out = Vec::with_capacity(peers.len());
            for p in peers {
                let mut consumers = Vec::with_capacity(p.consumers.len());
                for c in p.consumers {
                    let mut entry = json!({
                        "consumerId": c.consumer_id,
                        "producerId": c.record.producer_id,
                        "producerPeerId": c.producer_peer_id,
                        "paused": c.record.paused,
                        "preferredSpatialLayer": c.record.preferred_layer,
                        "currentLayers": c.record.current_layers.map(|(s, t)| json!({"spatialLayer": s, "temporalLayer": t})),
                    });
                    if q.stats {
                        entry["packetsSent"] = match state.clients.of(&c.router) {
                            Ok(client) => client
                                .consumer_packets(&c.consumer_id)
                                .await
                                .map_or(Value::Null, Value::from),
                            Err(_) => Value::Null,
                        };
                    }
                    consumers.push(entry);
                }
                out.push(json!({
                    "peerId": p.peer_id,
                    "displayName": p.display_name,
                    "routerId": p.router_id,
                    "producers": p.producers,
                    "consumers": consumers,
                }));
            }
            Value::Array(out)
        }
    };
    let owner = state.owners.owner_of(&room).await;
    let relays = state.rooms.relay_tree(&room).await;
    Ok(Json(json!({
        "room": room,
        "participants": r.participants,
        "participantIds": r.participant_ids,
        "routers": routers,
        "owner": owner,
        "peers": peers,
        // Per producer, per node: the node it is piped from (null: its origin).
        "relays": relays,
    })))
}

/// The live view's page.
pub async fn page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("../assets/admin.html"))
}

/// How often the live view is sent.
const LIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /admin/live`: [`cluster_view`] as server-sent events, at once and
/// then every second, until the client goes away.
pub async fn live(
    State(state): State<AdminState>,
    headers: HeaderMap,
) -> Result<
    axum::response::sse::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    require_key(&headers, "x-admin-key", &state.admin_key)?;
    let stream = futures::stream::unfold((state, true), |(state, first)| async move {
        if !first {
            tokio::time::sleep(LIVE_EVERY).await;
        }
        let view = cluster_view(&state).await;
        let event = Event::default().event("cluster").data(view.to_string());
        Some((Ok(event), (state, false)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The cluster as the live view shows it: every node and worker (consumer
/// units reserved against capacity, consumers, CPU, draining or dead),
/// every room with its participants and the workers it spans (a room on
/// several workers has its producers piped between them), the join queue.
/// Registry reads only: one for the nodes, one per worker, two per room.
pub async fn cluster_view(state: &AdminState) -> Value {
    let registry = state.cluster.registry();
    let capacity = state.rooms.worker_capacity();
    let mut nodes = Vec::new();
    let mut error = None;
    match nodes_with_reserved(registry.as_ref()).await {
        Ok(list) => {
            for (n, reserved) in list {
                let mut workers = Vec::with_capacity(n.workers.len());
                for (w, reserved) in n.workers.iter().zip(reserved) {
                    let reserved = reserved.unwrap_or(0);
                    workers.push(json!({
                        "index": w.index, "reserved": reserved, "capacity": capacity,
                        "consumers": w.consumers, "producers": w.producers, "routers": w.routers,
                        "cpu": w.cpu_load,
                    }));
                }
                nodes.push(json!({
                    "nodeId": n.node_id, "draining": n.draining, "dead": n.dead, "workers": workers,
                }));
            }
        }
        Err(e) => error = Some(e.to_string()),
    }
    let mut rooms = Vec::new();
    match registry.rooms().await {
        Ok(names) => {
            for room in names {
                let Ok(r) = registry.room(&room).await else {
                    continue;
                };
                let workers: Vec<String> = r
                    .routers
                    .iter()
                    .map(|(w, _)| format!("{}/{}", w.node_id, w.worker))
                    .collect();
                rooms.push(
                    json!({ "room": room, "participants": r.participants, "workers": workers }),
                );
            }
        }
        Err(e) => error = error.or(Some(e.to_string())),
    }
    json!({
        "at": throng_proto::now_ms(),
        "queue": {
            "length": state.queue.len(),
            "oldestWaitMs": state.queue.oldest_wait().as_millis() as u64,
        },
        "coordinator": {
            "participants": state.metrics.participants.get(),
            "sessions": state.metrics.ws_sessions.get(),
        },
        "nodes": nodes,
        "rooms": rooms,
        "error": error,
    })
}
