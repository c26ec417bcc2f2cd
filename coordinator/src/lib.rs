//! Throng coordinator: the one URL browsers open.
//!
//! Join path: browser -> signalling -> join queue -> placement ->
//! [`registry`] (Redis, or memory on a single machine) -> media RPC -> node.
#![forbid(unsafe_code)]

pub mod registry;
