//! What mediasoup's callbacks do. Each captures only channel senders: the
//! node's event broadcast (to coordinators, through `Events` in the gRPC API)
//! and the cleanup queue (removals applied by `Rooms`' cleanup task). Nothing
//! here may hold `Rooms` or a mediasoup handle: these closures run inside
//! mediasoup's dispatch, where dropping the last handle of anything deadlocks.

use std::sync::Mutex;

use mediasoup::consumer::ConsumerLayers;
use mediasoup::prelude::*;
use mediasoup::router::RouterId;
use mediasoup::types::data_structures::{DtlsState, IceState};
use throng_hooks::Hooks;
use throng_proto::media as pb;
use tokio::sync::{broadcast, mpsc};

use super::tree::ProducerKey;
use super::{AnyTransport, Ms};

/// Removals mediasoup's events ask for, applied by the cleanup task.
pub enum Cleanup {
    /// A router closed (its worker did).
    Router(RouterId),
    /// A transport closed (its router did).
    Transport(TransportId),
    /// A producer closed; `serial` names which registration of that key.
    Producer {
        /// Router and producer id.
        key: ProducerKey<Ms>,
        /// Registration it belongs to.
        serial: u64,
    },
    /// A consumer closed. `participant` is set when it closed because its
    /// producer did: that is announced as ConsumerClosed.
    Consumer {
        /// Consumer.
        id: ConsumerId,
        /// Its participant, when announced.
        participant: Option<String>,
    },
}

/// The node's event broadcast (bounded: a subscriber that falls behind is
/// told so and resubscribes).
#[derive(Clone)]
pub struct Events(broadcast::Sender<pb::Event>);

impl Events {
    pub(super) fn new() -> Self {
        Self(broadcast::channel(8192).0)
    }

    /// Sends an event to every subscriber (none is fine).
    pub fn emit(&self, event: pb::event::Event) {
        let _ = self.0.send(pb::Event { event: Some(event) });
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<pb::Event> {
        self.0.subscribe()
    }
}

/// Hook point inside a consumer's producer-close callback (tests hold a
/// mediasoup dispatch there).
pub const HOOK_IN_CALLBACK: &str = "media.in_callback";

pub(super) fn on_router_close(router: &Router, cleanup: &mpsc::UnboundedSender<Cleanup>) {
    let (cleanup, id) = (cleanup.clone(), router.id());
    router
        .on_close(move || {
            let _ = cleanup.send(Cleanup::Router(id));
        })
        .detach();
}

pub(super) fn on_transport_close(t: &AnyTransport, cleanup: &mpsc::UnboundedSender<Cleanup>) {
    let (cleanup, id) = (cleanup.clone(), t.id());
    t.on_close(Box::new(move || {
        let _ = cleanup.send(Cleanup::Transport(id));
    }));
}

pub(super) fn on_producer_close(
    producer: &Producer,
    key: ProducerKey<Ms>,
    serial: u64,
    cleanup: &mpsc::UnboundedSender<Cleanup>,
) {
    let cleanup = cleanup.clone();
    producer
        .on_close(move || {
            let _ = cleanup.send(Cleanup::Producer { key, serial });
        })
        .detach();
}

pub(super) fn on_dominant_speaker(observer: &ActiveSpeakerObserver, room: &str, events: &Events) {
    let (events, room) = (events.clone(), room.to_string());
    observer
        .on_dominant_speaker(move |speaker| {
            events.emit(pb::event::Event::ActiveSpeaker(pb::ActiveSpeaker {
                room_id: room.clone(),
                producer_id: speaker.producer.id().to_string(),
            }));
        })
        .detach();
}

fn ice_state_name(state: IceState) -> &'static str {
    match state {
        IceState::New => "new",
        IceState::Connected => "connected",
        IceState::Completed => "completed",
        IceState::Disconnected => "disconnected",
    }
}

fn dtls_state_name(state: DtlsState) -> &'static str {
    match state {
        DtlsState::New => "new",
        DtlsState::Connecting => "connecting",
        DtlsState::Connected => "connected",
        DtlsState::Failed => "failed",
        DtlsState::Closed => "closed",
    }
}

/// ICE and DTLS state changes of a browser transport, reported together.
pub(super) fn watch_webrtc_states(transport: &WebRtcTransport, participant: &str, events: &Events) {
    let id = transport.id().to_string();
    let participant = participant.to_string();
    let events = events.clone();
    // (ICE state, DTLS state): each change updates one half and reports both.
    let state = Mutex::new(("new", "new"));
    let record = std::sync::Arc::new(move |update: &dyn Fn(&mut (&'static str, &'static str))| {
        let (ice_state, dtls_state) = {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            update(&mut st);
            *st
        };
        events.emit(pb::event::Event::TransportState(pb::TransportState {
            transport_id: id.clone(),
            participant_id: participant.clone(),
            ice_state: ice_state.into(),
            dtls_state: dtls_state.into(),
        }));
    });
    {
        let record = record.clone();
        transport
            .on_ice_state_change(move |s| record(&|st| st.0 = ice_state_name(s)))
            .detach();
    }
    transport
        .on_dtls_state_change(move |s| record(&|st| st.1 = dtls_state_name(s)))
        .detach();
}

/// A consumer's close, its producer's close (announced as ConsumerClosed to
/// coordinators), layer changes and its producer's pause and resume.
pub(super) fn watch_consumer(
    consumer: &Consumer,
    participant: Option<String>,
    cleanup: &mpsc::UnboundedSender<Cleanup>,
    events: &Events,
    hooks: &Hooks,
) {
    let id = consumer.id();
    {
        let (cleanup, participant, hooks) = (cleanup.clone(), participant.clone(), hooks.clone());
        consumer
            .on_producer_close(move || {
                hooks.pass_blocking(HOOK_IN_CALLBACK);
                let _ = cleanup.send(Cleanup::Consumer {
                    id,
                    participant: Some(participant.unwrap_or_default()),
                });
            })
            .detach();
    }
    {
        let cleanup = cleanup.clone();
        consumer
            .on_close(move || {
                let _ = cleanup.send(Cleanup::Consumer {
                    id,
                    participant: None,
                });
            })
            .detach();
    }
    let participant = participant.unwrap_or_default();
    {
        let (events, participant) = (events.clone(), participant.clone());
        consumer
            .on_layers_change(move |layers: &Option<ConsumerLayers>| {
                events.emit(pb::event::Event::ConsumerLayersChanged(
                    pb::ConsumerLayersChanged {
                        consumer_id: id.to_string(),
                        participant_id: participant.clone(),
                        spatial_layer: layers.as_ref().map(|l| u32::from(l.spatial_layer)),
                        temporal_layer: layers
                            .as_ref()
                            .and_then(|l| l.temporal_layer.map(u32::from)),
                    },
                ));
            })
            .detach();
    }
    let paused_event = |make: fn(pb::ConsumerPaused) -> pb::event::Event| {
        let (events, participant) = (events.clone(), participant.clone());
        move || {
            events.emit(make(pb::ConsumerPaused {
                consumer_id: id.to_string(),
                participant_id: participant.clone(),
            }));
        }
    };
    consumer
        .on_producer_pause(paused_event(pb::event::Event::ConsumerProducerPaused))
        .detach();
    consumer
        .on_producer_resume(paused_event(pb::event::Event::ConsumerProducerResumed))
        .detach();
}
