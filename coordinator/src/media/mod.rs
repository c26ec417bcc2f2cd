//! Join path: placement / rooms -> **media nodes**. [`client`] is the typed
//! gRPC client of one node (and the pool of them), [`pipes`] makes a room's
//! producers consumable on its other routers, [`events`] reads a node's event
//! stream. Nothing here knows rooms or sessions.

pub mod client;
pub mod events;
pub mod pipes;
