//! Throng's load generator as a library: the signalling client, a WebRTC
//! endpoint (str0m), a looped media source, and participants made of them,
//! used by the `loadgen` binary's scenarios and by its tests.
#![forbid(unsafe_code)]

pub mod capacity;
pub mod failover;
pub mod leave;
pub mod link;
pub mod measure;
pub mod otlp;
pub mod participant;
pub mod roster;
pub mod rtc;
pub mod scenario;
pub mod signal;
pub mod source;
pub mod surge;
pub mod turn;
