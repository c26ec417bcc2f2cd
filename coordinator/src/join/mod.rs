//! Join path: signalling -> **join queue** -> placement. [`queue`] orders
//! joins and admits them within the bounds [`limiter`] keeps.

pub mod limiter;
pub mod queue;
