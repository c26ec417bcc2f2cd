//! A registry that counts its failures: wraps the configured one (Redis or
//! memory) and counts every call that returns an error into
//! `throng_registry_errors_total{op}`. Changes no result.

use std::sync::Arc;
use std::time::Duration;

use throng_proto::report::NodeReport;

use super::{
    Placement, PlacementRefused, PlacementRequest, Registry, RegistryError, Released, RoomState,
    WorkerRef,
};
use crate::metrics::Metrics;

/// See the module header.
pub struct Counted {
    inner: Arc<dyn Registry>,
    metrics: Arc<Metrics>,
}

impl Counted {
    /// Counts the failures of `inner` into `metrics`.
    pub fn new(inner: Arc<dyn Registry>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    fn count<T>(&self, op: &'static str, r: Result<T, RegistryError>) -> Result<T, RegistryError> {
        if r.is_err() {
            self.metrics.registry_error(op);
        }
        r
    }
}

#[async_trait::async_trait]
impl Registry for Counted {
    async fn nodes(&self) -> Result<Vec<NodeReport>, RegistryError> {
        self.count("nodes", self.inner.nodes().await)
    }

    async fn place(
        &self,
        req: &PlacementRequest,
    ) -> Result<Result<Placement, PlacementRefused>, RegistryError> {
        self.count("place", self.inner.place(req).await)
    }

    async fn set_router(
        &self,
        room_id: &str,
        w: &WorkerRef,
        router_id: &str,
    ) -> Result<(), RegistryError> {
        self.count(
            "set_router",
            self.inner.set_router(room_id, w, router_id).await,
        )
    }

    async fn router(&self, room_id: &str, w: &WorkerRef) -> Result<Option<String>, RegistryError> {
        self.count("router", self.inner.router(room_id, w).await)
    }

    async fn release(
        &self,
        room_id: &str,
        participant_id: &str,
    ) -> Result<Option<Released>, RegistryError> {
        self.count("release", self.inner.release(room_id, participant_id).await)
    }

    async fn remove_router(&self, room_id: &str, w: &WorkerRef) -> Result<(), RegistryError> {
        self.count("remove_router", self.inner.remove_router(room_id, w).await)
    }

    async fn reserved(&self, w: &WorkerRef) -> Result<u32, RegistryError> {
        self.count("reserved", self.inner.reserved(w).await)
    }

    async fn room(&self, room_id: &str) -> Result<RoomState, RegistryError> {
        self.count("room", self.inner.room(room_id).await)
    }

    async fn rooms(&self) -> Result<Vec<String>, RegistryError> {
        self.count("rooms", self.inner.rooms().await)
    }

    async fn heartbeat(&self, coordinator_id: &str, ttl: Duration) -> Result<(), RegistryError> {
        self.count("heartbeat", self.inner.heartbeat(coordinator_id, ttl).await)
    }

    async fn dead_coordinators(&self) -> Result<Vec<String>, RegistryError> {
        self.count("dead_coordinators", self.inner.dead_coordinators().await)
    }

    async fn reap_coordinator(
        &self,
        coordinator_id: &str,
    ) -> Result<Vec<(String, String, WorkerRef)>, RegistryError> {
        self.count(
            "reap_coordinator",
            self.inner.reap_coordinator(coordinator_id).await,
        )
    }

    async fn evict_node(&self, node_id: &str) -> Result<Vec<(String, String)>, RegistryError> {
        self.count("evict_node", self.inner.evict_node(node_id).await)
    }

    async fn epoch(&self) -> Result<String, RegistryError> {
        self.count("epoch", self.inner.epoch().await)
    }

    async fn adopt(
        &self,
        room_id: &str,
        participant_id: &str,
        owner: &str,
    ) -> Result<bool, RegistryError> {
        self.count(
            "adopt",
            self.inner.adopt(room_id, participant_id, owner).await,
        )
    }

    async fn restore(
        &self,
        room_id: &str,
        participant_id: &str,
        worker: &WorkerRef,
        cost: u32,
        owner: &str,
    ) -> Result<bool, RegistryError> {
        self.count(
            "restore",
            self.inner
                .restore(room_id, participant_id, worker, cost, owner)
                .await,
        )
    }
}
