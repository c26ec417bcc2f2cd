//! Join path, last step: node -> worker. One mediasoup worker per core, each
//! with its own WebRtcServer on one UDP and one TCP port (`base_port + index`),
//! so a node needs exactly N ports, known in advance.
//!
//! Workers are threads of this process: a worker that dies takes the node's
//! usefulness with it, so death is reported on a channel and the node exits
//! non-zero for the orchestrator to restart it.

use std::net::IpAddr;

use mediasoup::prelude::*;
use std::time::Duration;

use mediasoup::worker::{CreateWebRtcServerError, WorkerLogLevel};
use tokio::sync::mpsc;
use tracing::{error, info};

use crate::config::NodeConfig;
use crate::cpu::ThreadId;

/// Failure to bring the worker pool up.
#[derive(Debug, thiserror::Error)]
pub enum WorkerPoolError {
    /// The mediasoup worker thread could not be started.
    #[error("worker {index}: cannot start mediasoup worker: {source}")]
    CreateWorker {
        /// Worker index.
        index: usize,
        /// mediasoup's error.
        source: std::io::Error,
    },
    /// The worker's WebRtcServer could not bind its port.
    #[error("THRONG_RTC_BASE_PORT: worker {index} cannot listen on {ip} port {port} (UDP+TCP): {source}")]
    CreateWebRtcServer {
        /// Worker index.
        index: usize,
        /// Listen IP.
        ip: IpAddr,
        /// Port.
        port: u16,
        /// mediasoup's error.
        source: CreateWebRtcServerError,
    },
}

/// A worker died; the node cannot serve its rooms any more.
#[derive(Debug, Clone)]
pub struct WorkerDied {
    /// Index of the dead worker.
    pub index: usize,
    /// What mediasoup reported.
    pub reason: String,
}

/// One worker of this node and the server that carries its WebRTC traffic.
#[derive(Clone)]
pub struct NodeWorker {
    /// Position in the pool; also selects the port.
    pub index: usize,
    /// UDP and TCP port of the WebRtcServer.
    pub port: u16,
    /// The mediasoup worker.
    pub worker: Worker,
    /// Its WebRtcServer: every WebRTC transport of this worker uses it.
    pub webrtc_server: WebRtcServer,
    /// The worker's thread, for CPU accounting.
    pub thread: ThreadId,
}

impl NodeWorker {
    /// CPU time (user + system) the worker thread used so far.
    pub fn cpu_time(&self) -> std::io::Result<Duration> {
        self.thread.cpu_time()
    }
}

/// All workers of the node.
pub struct WorkerPool {
    workers: Vec<NodeWorker>,
    // Keeps the manager (and its event loop) alive as long as the pool.
    _manager: WorkerManager,
}

/// Where a worker's socket listens: `port` fixed (WebRtcServer) or any free
/// one (pipe, plain and ingest transports).
pub fn listen_info(
    protocol: Protocol,
    ip: IpAddr,
    announced_address: Option<String>,
    port: Option<u16>,
) -> ListenInfo {
    ListenInfo {
        protocol,
        ip,
        announced_address,
        expose_internal_ip: false,
        port,
        port_range: None,
        flags: None,
        send_buffer_size: None,
        recv_buffer_size: None,
    }
}

impl WorkerPool {
    /// Starts `config.workers` workers, each with its WebRtcServer. Deaths are
    /// sent on `died`. Fails, closing what was started, if any port is taken.
    pub async fn start(
        config: &NodeConfig,
        died: mpsc::UnboundedSender<WorkerDied>,
    ) -> Result<Self, WorkerPoolError> {
        let manager = WorkerManager::new();
        let mut workers = Vec::with_capacity(config.workers);
        for index in 0..config.workers {
            let thread = ThreadId::default();
            let mut settings = WorkerSettings::default();
            settings.log_level = WorkerLogLevel::Warn;
            settings.thread_initializer = Some({
                let thread = thread.clone();
                std::sync::Arc::new(move || thread.record_current())
            });
            let worker = manager
                .create_worker(settings)
                .await
                .map_err(|source| WorkerPoolError::CreateWorker { index, source })?;
            let died = died.clone();
            worker
                .on_dead(move |result| {
                    let reason = match result {
                        Ok(()) => "worker exited".to_string(),
                        Err(e) => e.to_string(),
                    };
                    error!(worker = index, %reason, "mediasoup worker died");
                    let _ = died.send(WorkerDied { index, reason });
                })
                .detach();

            let port = config.rtc_port(index);
            let at = |protocol| {
                listen_info(
                    protocol,
                    config.rtc_listen_ip,
                    config.announced_address.clone(),
                    Some(port),
                )
            };
            let listen = WebRtcServerListenInfos::new(at(Protocol::Udp)).insert(at(Protocol::Tcp));
            let webrtc_server = worker
                .create_webrtc_server(WebRtcServerOptions::new(listen))
                .await
                .map_err(|source| WorkerPoolError::CreateWebRtcServer {
                    index,
                    ip: config.rtc_listen_ip,
                    port,
                    source,
                })?;
            info!(worker = index, worker_id = %worker.id(), port, "worker ready (UDP+TCP)");
            workers.push(NodeWorker {
                index,
                port,
                worker,
                webrtc_server,
                thread,
            });
        }
        Ok(Self {
            workers,
            _manager: manager,
        })
    }

    /// The node's workers, by index.
    pub fn workers(&self) -> &[NodeWorker] {
        &self.workers
    }
}
