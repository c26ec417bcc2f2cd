//! Producers made available on other routers of the room: between two workers
//! of this node (mediasoup's `pipe_producer_to_router`; the copy keeps the
//! id) and between nodes (an SRTP PipeTransport on each side, connected by the
//! coordinator: a pipe consumer here, a producer with the source's id there).

use std::net::IpAddr;

use mediasoup::prelude::*;
use mediasoup::router::RouterId;
use mediasoup::types::srtp_parameters::SrtpParameters;

use super::tree::Origin;
use super::{AnyTransport, Rooms};
use crate::error::MediaError;

impl Rooms {
    /// Makes `producer_id` available on `target` (another worker of this
    /// node); the piped copy keeps the id.
    #[tracing::instrument(skip(self))]
    pub async fn pipe_producer_to_router(
        &self,
        producer_id: ProducerId,
        target: RouterId,
    ) -> Result<(), MediaError> {
        let (target_router, target_worker) = self.router(target)?;
        let source = {
            let tree = self.lock();
            if tree.producer(&(target, producer_id)).is_some() {
                return Err(MediaError::FailedPrecondition(format!(
                    "producer {producer_id} is already on router {target}"
                )));
            }
            let copies = tree.producer_copies(&producer_id);
            if copies.is_empty() {
                return Err(MediaError::not_found("producer", producer_id));
            }
            // The original rather than a copy: the chain then closes with it.
            copies
                .iter()
                .filter(|(_, worker, _)| *worker != target_worker)
                .min_by_key(|(_, _, p)| p.origin != Origin::Source)
                .map(|(router, _, _)| *router)
                .ok_or_else(|| {
                    MediaError::FailedPrecondition(format!(
                        "producer {producer_id} lives only on worker {target_worker}: mediasoup cannot pipe between two routers of one worker"
                    ))
                })?
        };
        let (source_router, _) = self.router(source)?;
        let pair = source_router
            .pipe_producer_to_router(producer_id, PipeToRouterOptions::new(target_router))
            .await?;
        self.register_producer(
            pair.pipe_producer.into_inner(),
            target,
            None,
            Origin::SameNodePipe,
            Some(pair.pipe_consumer),
        )
    }

    pub(super) fn pipe_listen_info(&self) -> ListenInfo {
        crate::workers::listen_info(
            Protocol::Udp,
            self.pipe_listen_ip,
            self.pipe_announced_address.clone(),
            None,
        )
    }

    /// An SRTP pipe transport on a router, for a cross-node pipe.
    pub async fn create_pipe_transport(
        &self,
        router_id: RouterId,
    ) -> Result<PipeTransport, MediaError> {
        let (router, _) = self.router(router_id)?;
        let mut options = PipeTransportOptions::new(self.pipe_listen_info());
        options.enable_srtp = true;
        options.enable_rtx = true;
        let pipe = router
            .create_pipe_transport(options)
            .await
            .map_err(MediaError::request("create pipe transport"))?;
        self.register_transport(AnyTransport::Pipe(pipe.clone()), router_id, None)?;
        Ok(pipe)
    }

    fn pipe_transport(&self, id: TransportId) -> Result<(PipeTransport, RouterId), MediaError> {
        match self.transport(id)? {
            (AnyTransport::Pipe(t), router, _) => Ok((t, router)),
            _ => Err(MediaError::FailedPrecondition(format!(
                "transport {id} is not a pipe transport"
            ))),
        }
    }

    /// Connects a pipe transport to its far side.
    pub async fn connect_pipe_transport(
        &self,
        id: TransportId,
        ip: IpAddr,
        port: u16,
        srtp_parameters: SrtpParameters,
    ) -> Result<(), MediaError> {
        self.pipe_transport(id)?
            .0
            .connect(PipeTransportRemoteParameters {
                ip,
                port,
                srtp_parameters: Some(srtp_parameters),
            })
            .await
            .map_err(MediaError::request("connect pipe transport"))
    }

    /// Source side of a cross-node pipe: a pipe consumer of `producer_id`.
    pub async fn consume_to_pipe(
        &self,
        pipe_id: TransportId,
        producer_id: ProducerId,
    ) -> Result<Consumer, MediaError> {
        let (pipe, router_id) = self.pipe_transport(pipe_id)?;
        if self.lock().producer(&(router_id, producer_id)).is_none() {
            return Err(MediaError::not_found(
                "producer",
                format!("{producer_id} on router {router_id}"),
            ));
        }
        let consumer = pipe
            .consume(ConsumerOptions::new(
                producer_id,
                RtpCapabilities::default(),
            ))
            .await?;
        self.register_consumer(consumer.clone(), pipe_id, None)?;
        Ok(consumer)
    }

    /// Far side of a cross-node pipe: a producer with the source's id.
    pub async fn produce_from_pipe(
        &self,
        pipe_id: TransportId,
        producer_id: ProducerId,
        kind: MediaKind,
        rtp_parameters: RtpParameters,
        paused: bool,
    ) -> Result<ProducerId, MediaError> {
        let (pipe, router_id) = self.pipe_transport(pipe_id)?;
        if self.lock().producer(&(router_id, producer_id)).is_some() {
            return Err(MediaError::FailedPrecondition(format!(
                "producer {producer_id} already exists on router {router_id}"
            )));
        }
        let mut options = ProducerOptions::new_pipe_transport(producer_id, kind, rtp_parameters);
        options.paused = paused;
        // The viewers on this node ask the origin node through the pipe:
        // throttled here as well, so the pipe carries about one a delay.
        options.key_frame_request_delay = self.key_frame_request_delay_ms;
        let producer = pipe.produce(options).await?;
        self.register_producer(producer, router_id, Some(pipe_id), Origin::RemotePipe, None)?;
        Ok(producer_id)
    }
}
