//! Join path: placement -> **media RPC** -> node. One gRPC channel per media
//! node (HTTP/2 multiplexes every call), dialled lazily at the address the
//! node reports, with a deadline on every call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use throng_proto::media::media_node_client::MediaNodeClient;
use tonic::transport::{Channel, Endpoint};

/// Deadline of one media call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A media call failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaRpcError {
    /// The node's address is unusable.
    #[error("bad address for node {node}: {address}")]
    BadAddress {
        /// Node id.
        node: String,
        /// Address reported.
        address: String,
    },
    /// The node answered with an error status (or could not be reached).
    #[error("node {node}: {status}")]
    Status {
        /// Node id.
        node: String,
        /// gRPC status.
        status: tonic::Status,
    },
}

impl MediaRpcError {
    /// Wraps a status from `node`.
    pub fn status(node: &str, status: tonic::Status) -> Self {
        Self::Status {
            node: node.to_string(),
            status,
        }
    }

    /// The gRPC code, if the node answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Self::Status { status, .. } => Some(status.code()),
            Self::BadAddress { .. } => None,
        }
    }
}

/// Clients of every known media node.
#[derive(Default)]
pub struct MediaClients {
    clients: Mutex<HashMap<String, (String, MediaNodeClient<Channel>)>>,
}

impl MediaClients {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// The client of `node_id` at `address` (host:port), dialled on first use.
    pub fn client(
        &self,
        node_id: &str,
        address: &str,
    ) -> Result<MediaNodeClient<Channel>, MediaRpcError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((addr, client)) = clients.get(node_id) {
            if addr == address {
                return Ok(client.clone());
            }
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|_| MediaRpcError::BadAddress {
                node: node_id.into(),
                address: address.into(),
            })?
            .connect_timeout(Duration::from_secs(3))
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(15))
            .keep_alive_while_idle(true);
        let client = MediaNodeClient::new(endpoint.connect_lazy());
        clients.insert(node_id.to_string(), (address.to_string(), client.clone()));
        Ok(client)
    }

    /// Forgets a node (it died).
    pub fn forget(&self, node_id: &str) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(node_id);
    }
}
