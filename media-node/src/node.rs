//! Who this node is and what state it is in: the facts every other module
//! reads (identity for reports and GetNodeInfo; draining for placement,
//! health and readiness; dead once a worker died). One place, so that
//! `load`, `rpc` and `http` depend on it and not on each other.

use std::sync::atomic::{AtomicBool, Ordering};

/// Facts about the node that do not change while it runs.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    /// Node id.
    pub node_id: String,
    /// Address coordinators dial.
    pub grpc_address: String,
    /// Address announced in ICE candidates.
    pub announced_address: String,
}

/// The node's identity and its lifecycle flags.
#[derive(Debug)]
pub struct NodeState {
    /// Who the node is.
    pub identity: NodeIdentity,
    draining: AtomicBool,
    dead: AtomicBool,
    /// The last load report reached Redis (always true without Redis).
    reported: AtomicBool,
}

impl NodeState {
    /// A serving node.
    pub fn new(identity: NodeIdentity) -> Self {
        Self {
            identity,
            draining: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            reported: AtomicBool::new(true),
        }
    }

    /// Records whether the last load report was written: a node whose
    /// reports do not arrive is invisible to coordinators, so not ready.
    pub fn set_reported(&self, ok: bool) {
        self.reported.store(ok, Ordering::SeqCst);
    }

    /// Why the node cannot take new rooms, if it cannot (`/readyz`).
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.is_dead() {
            Some("a worker died")
        } else if self.is_draining() {
            Some("draining")
        } else if !self.reported.load(Ordering::SeqCst) {
            Some("load report not written: Redis unreachable")
        } else {
            None
        }
    }

    /// SIGTERM: no new rooms from now on; the open ones go on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the node refuses new rooms.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// A worker died: the node cannot serve its rooms any more.
    pub fn set_dead(&self) {
        self.dead.store(true, Ordering::SeqCst);
    }

    /// Whether a worker died.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }
}
