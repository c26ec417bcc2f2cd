//! Join path: signalling -> **join queue** -> placement.

pub mod queue;
