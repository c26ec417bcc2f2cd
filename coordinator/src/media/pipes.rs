//! Join path: room -> **pipes** -> nodes. Where each of a room's producers
//! can be consumed ([`RoomPipes`], data the room keeps) and how a producer is
//! made consumable on another router of the room: between two workers of one
//! node the node pipes it itself; between nodes an SRTP PipeTransport pair
//! carries it, one pair per pair of routers, both ends created and connected
//! concurrently (as mediasoup's `create_pipe_transport_pair` does), used in
//! either direction and dropped with either router.
//!
//! Called with the room's lock held: pipe set-up is one of the two things
//! allowed to span node calls under it (the other is placement), because a
//! consumer must not be created before its producer is there.

use std::collections::{HashMap, HashSet};

use super::client::{NodeCallError, NodeClients, PipeEnd, RouterRef};
use crate::metrics::Metrics;

/// A connected pair of pipe transports between two routers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipePair {
    ends: [(String, String); 2],
}

impl PipePair {
    /// The pipe transport on `router`.
    fn end_on(&self, router: &str) -> Option<&str> {
        self.ends
            .iter()
            .find(|(r, _)| r == router)
            .map(|(_, p)| p.as_str())
    }
}

fn pair_key(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

/// A room's producers' availability and its pipe pairs.
#[derive(Debug, Default)]
pub struct RoomPipes {
    /// Producer -> routers where it can be consumed.
    available: HashMap<String, HashSet<String>>,
    /// (router, router), in id order -> their pair.
    pairs: HashMap<(String, String), PipePair>,
}

impl RoomPipes {
    /// Whether `producer` can be consumed on `router`.
    pub fn is_available(&self, producer: &str, router: &str) -> bool {
        self.available
            .get(producer)
            .is_some_and(|routers| routers.contains(router))
    }

    /// A new producer, consumable on its own router.
    pub fn add_source(&mut self, producer: &str, router: &str) {
        self.available
            .entry(producer.to_string())
            .or_default()
            .insert(router.to_string());
    }

    /// Forgets a producer; returns the routers it was available on.
    pub fn forget_producer(&mut self, producer: &str) -> Vec<String> {
        self.available
            .remove(producer)
            .map(|r| r.into_iter().collect())
            .unwrap_or_default()
    }

    /// Forgets a router (its node died, or it closed): nothing is available
    /// on it, and its pairs are gone.
    pub fn forget_router(&mut self, router: &str) {
        for routers in self.available.values_mut() {
            routers.remove(router);
        }
        self.pairs.retain(|(a, b), _| a != router && b != router);
    }

    /// Forgets everything (the room closes with its routers).
    pub fn clear(&mut self) {
        self.available.clear();
        self.pairs.clear();
    }

    /// Makes `producer`, which lives on `origin`, consumable on `target`: a
    /// same-node pipe, or the SRTP pair between the two nodes (created on
    /// first use).
    pub async fn make_available(
        &mut self,
        clients: &NodeClients,
        producer: &str,
        origin: &RouterRef,
        target: &RouterRef,
    ) -> Result<(), NodeCallError> {
        if self.is_available(producer, &target.router_id) {
            return Ok(());
        }
        if origin.node_id == target.node_id {
            clients
                .of(origin)?
                .pipe_producer_to_router(producer, &target.router_id)
                .await?;
            Metrics::count(&clients.metrics().pipes, "same_node");
        } else {
            let key = pair_key(&origin.router_id, &target.router_id);
            let pair = match self.pairs.get(&key) {
                Some(p) => p.clone(),
                None => {
                    let p = connect_pair(clients, origin, target).await?;
                    self.pairs.insert(key, p.clone());
                    p
                }
            };
            let (src, dst) = (clients.of(origin)?, clients.of(target)?);
            let from = pair
                .end_on(&origin.router_id)
                .expect("pair of these routers");
            let to = pair
                .end_on(&target.router_id)
                .expect("pair of these routers");
            let consumed = src.consume_to_pipe(from, producer).await?;
            dst.produce_from_pipe(to, producer, &consumed).await?;
            Metrics::count(&clients.metrics().pipes, "cross_node");
        }
        self.available
            .entry(producer.to_string())
            .or_default()
            .insert(target.router_id.clone());
        Ok(())
    }
}

/// Creates a pipe transport on each router and connects each to the other,
/// both sides at once. If anything fails, what was created is closed again.
async fn connect_pair(
    clients: &NodeClients,
    a: &RouterRef,
    b: &RouterRef,
) -> Result<PipePair, NodeCallError> {
    let (ca, cb) = (clients.of(a)?, clients.of(b)?);
    let (ea, eb) = tokio::join!(
        ca.create_pipe_transport(&a.router_id),
        cb.create_pipe_transport(&b.router_id)
    );
    let close = |end: &Result<PipeEnd, NodeCallError>, client: &super::client::NodeClient| {
        let (client, id) = (client.clone(), end.as_ref().ok().map(|e| e.id.clone()));
        async move {
            if let Some(id) = id {
                let _ = client.close_transport(&id).await;
            }
        }
    };
    let (ea, eb) = match (ea, eb) {
        (Ok(ea), Ok(eb)) => (ea, eb),
        (ra, rb) => {
            tokio::join!(close(&ra, &ca), close(&rb, &cb));
            return Err(ra.err().or(rb.err()).expect("one failed"));
        }
    };
    let (connected_a, connected_b) = tokio::join!(
        ca.connect_pipe_transport(&ea.id, &eb),
        cb.connect_pipe_transport(&eb.id, &ea)
    );
    if let Err(e) = connected_a.and(connected_b) {
        let (ra, rb) = (Ok(ea), Ok(eb));
        tokio::join!(close(&ra, &ca), close(&rb, &cb));
        return Err(e);
    }
    Ok(PipePair {
        ends: [(a.router_id.clone(), ea.id), (b.router_id.clone(), eb.id)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_is_forgotten_with_its_producer_or_router() {
        let mut p = RoomPipes::default();
        p.add_source("prod", "r1");
        p.available.get_mut("prod").unwrap().insert("r2".into());
        p.pairs.insert(
            pair_key("r2", "r1"),
            PipePair {
                ends: [("r1".into(), "p1".into()), ("r2".into(), "p2".into())],
            },
        );
        assert_eq!(pair_key("r2", "r1"), pair_key("r1", "r2"));
        assert!(p.is_available("prod", "r2"));
        p.forget_router("r2");
        assert!(!p.is_available("prod", "r2"));
        assert!(p.pairs.is_empty());
        assert_eq!(p.forget_producer("prod"), vec!["r1".to_string()]);
        assert!(!p.is_available("prod", "r1"));
    }
}
