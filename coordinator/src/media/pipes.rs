//! Join path: room -> **pipes** -> nodes. Where each of a room's producers
//! can be consumed ([`RoomPipes`], data the room keeps), the relay tree each
//! producer reaches the room's nodes through (a node feeds at most the
//! configured fan-out of other nodes, `THRONG_PIPE_FANOUT`), and how a
//! producer is made consumable on another router of the room: between two
//! workers of one node the node pipes it itself; between nodes an SRTP
//! PipeTransport pair carries it, one pair per pair of routers, both ends
//! created and connected concurrently (as mediasoup's
//! `create_pipe_transport_pair` does), used in either direction and dropped
//! with either router. A lost node's subtrees are handed back as orphans for
//! the room to close and feed again.
//!
//! Called with the room's lock held: pipe set-up is one of the two things
//! allowed to span node calls under it (the other is placement), because a
//! consumer must not be created before its producer is there.

use std::collections::{BTreeMap, HashMap, HashSet};

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

/// A room's producers' availability, the relay tree each one is fed
/// through, and the pipe pairs.
///
/// The tree is over nodes: a producer enters a node once, through a
/// cross-node pipe from a node that has it (its parent), and reaches the
/// node's other routers through the node's own worker-to-worker pipes. A node
/// feeds at most `fanout` other nodes with one producer; beyond that the
/// nodes it fed feed the next ones (shallowest first), so the origin
/// worker's pipe consumers stay bounded however many nodes an event spans.
#[derive(Debug)]
pub struct RoomPipes {
    /// Producer -> routers where it can be consumed.
    available: HashMap<String, HashSet<String>>,
    /// Producer -> node that has it -> the node it came from (`None`: its
    /// origin).
    feeds: HashMap<String, HashMap<String, Option<String>>>,
    /// (router, router), in id order -> their pair.
    pairs: HashMap<(String, String), PipePair>,
    /// Most nodes one node feeds one producer to.
    fanout: usize,
}

impl Default for RoomPipes {
    fn default() -> Self {
        Self::new(DEFAULT_FANOUT)
    }
}

/// Nodes one node feeds a producer to, unless configured.
pub const DEFAULT_FANOUT: usize = 8;

/// Producers whose copies on a node were fed through a node that is gone:
/// the copies must close and be made again from a node that has it.
pub type Orphans = Vec<(String, String)>;

impl RoomPipes {
    /// Nothing available yet; a node feeds at most `fanout` (1 or more).
    pub fn new(fanout: usize) -> Self {
        Self {
            available: HashMap::new(),
            feeds: HashMap::new(),
            pairs: HashMap::new(),
            fanout: fanout.max(1),
        }
    }

    /// Whether `producer` can be consumed on `router`.
    pub fn is_available(&self, producer: &str, router: &str) -> bool {
        self.available
            .get(producer)
            .is_some_and(|routers| routers.contains(router))
    }

    /// A new producer, consumable on its own router.
    pub fn add_source(&mut self, producer: &str, router: &RouterRef) {
        self.record(producer, router, None);
    }

    /// Records that `producer` is on `router`, its node fed from `parent`
    /// (`None`: a root). A node already in the tree keeps its parent.
    fn record(&mut self, producer: &str, router: &RouterRef, parent: Option<&str>) {
        self.available
            .entry(producer.to_string())
            .or_default()
            .insert(router.router_id.clone());
        self.feeds
            .entry(producer.to_string())
            .or_default()
            .entry(router.node_id.clone())
            .or_insert_with(|| parent.map(str::to_string));
    }

    /// A copy found on `router` (a room taken over from another
    /// coordinator): consumable there. Which node fed it is not known; its
    /// node counts as a root of the tree.
    pub fn add_copy(&mut self, producer: &str, router: &RouterRef) {
        self.record(producer, router, None);
    }

    /// Forgets a producer; returns the routers it was available on.
    pub fn forget_producer(&mut self, producer: &str) -> Vec<String> {
        self.feeds.remove(producer);
        self.available
            .remove(producer)
            .map(|r| r.into_iter().collect())
            .unwrap_or_default()
    }

    /// Forgets a node and its routers (`routers`: every router of the room,
    /// those of the node included). Returns the producers (not from that
    /// node) that reached other nodes through it: their copies there are
    /// fed no more, and nothing is available on those nodes until they are
    /// closed and fed again; and the pipe transports of other routers that
    /// led to it (router, transport), to close with their pipe consumers.
    pub fn forget_node(
        &mut self,
        node: &str,
        routers: &HashMap<String, RouterRef>,
    ) -> (Orphans, Vec<(RouterRef, String)>) {
        let mut orphans = Vec::new();
        for (producer, feeds) in self.feeds.iter_mut() {
            let cut: Vec<String> = feeds
                .keys()
                .filter(|n| *n != node && descends_from(feeds, n, node))
                .cloned()
                .collect();
            feeds.remove(node);
            for n in cut {
                feeds.remove(&n);
                orphans.push((producer.clone(), n));
            }
        }
        for (producer, on) in self.available.iter_mut() {
            on.retain(|r| {
                routers.get(r).is_some_and(|r| {
                    r.node_id != node
                        && !orphans
                            .iter()
                            .any(|(p, n)| p == producer && *n == r.node_id)
                })
            });
        }
        let gone = |r: &str| routers.get(r).is_none_or(|r| r.node_id == node);
        let mut ends = Vec::new();
        self.pairs.retain(|(a, b), pair| {
            if !gone(a) && !gone(b) {
                return true;
            }
            // The end that survives pipes to nowhere: it must close.
            for (router, transport) in &pair.ends {
                if let Some(r) = routers.get(router).filter(|r| r.node_id != node) {
                    ends.push((r.clone(), transport.clone()));
                }
            }
            false
        });
        orphans.sort();
        ends.sort_by(|a, b| a.1.cmp(&b.1));
        (orphans, ends)
    }

    /// Forgets everything (the room closes with its routers).
    pub fn clear(&mut self) {
        self.available.clear();
        self.feeds.clear();
        self.pairs.clear();
    }

    /// Each producer's relay tree: node -> the node it is fed from (`None`:
    /// the origin), in id order (for the admin API).
    pub fn tree(&self) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
        self.feeds
            .iter()
            .map(|(p, feeds)| (p.clone(), feeds.clone().into_iter().collect()))
            .collect()
    }

    /// How many nodes `node` feeds `producer` to.
    pub fn fed_by(&self, producer: &str, node: &str) -> usize {
        self.feeds.get(producer).map_or(0, |feeds| {
            feeds
                .values()
                .filter(|p| p.as_deref() == Some(node))
                .count()
        })
    }

    /// The node that feeds `target_node` with `producer`: one that has it
    /// and feeds fewer than the fan-out, the shallowest (then the least
    /// loaded, then by id, so the choice is the same on every call).
    fn parent_for(&self, producer: &str) -> Option<String> {
        let feeds = self.feeds.get(producer)?;
        feeds
            .keys()
            .map(|n| (depth(feeds, n), self.fed_by(producer, n), n))
            .filter(|(_, fed, _)| *fed < self.fanout)
            .min()
            .map(|(_, _, n)| n.clone())
    }

    /// Makes `producer` consumable on `target`: through the node's own pipe
    /// if `target`'s node has it already, else through the SRTP pair from a
    /// router of the node chosen as its parent in the relay tree (created on
    /// first use). `routers`: the room's routers.
    pub async fn make_available(
        &mut self,
        clients: &NodeClients,
        producer: &str,
        target: &RouterRef,
        routers: &HashMap<String, RouterRef>,
    ) -> Result<(), NodeCallError> {
        if self.is_available(producer, &target.router_id) {
            return Ok(());
        }
        let has_node = self
            .feeds
            .get(producer)
            .is_some_and(|f| f.contains_key(&target.node_id));
        if has_node {
            clients
                .of(target)?
                .pipe_producer_to_router(producer, &target.router_id)
                .await?;
            Metrics::count(&clients.metrics().pipes, "same_node");
        } else {
            let nowhere = |node: &str| NodeCallError::Status {
                node: node.to_string(),
                status: tonic::Status::not_found(format!("producer {producer} is on no router")),
            };
            let parent = self
                .parent_for(producer)
                .ok_or_else(|| nowhere(&target.node_id))?;
            // A router of the parent node that has it, the same on every
            // call (lowest id); on the origin node any copy is fed by the
            // origin anyway.
            let origin = self
                .available
                .get(producer)
                .into_iter()
                .flatten()
                .filter_map(|r| routers.get(r))
                .filter(|r| r.node_id == parent)
                .min_by(|a, b| a.router_id.cmp(&b.router_id))
                .ok_or_else(|| nowhere(&parent))?
                .clone();
            let key = pair_key(&origin.router_id, &target.router_id);
            let pair = match self.pairs.get(&key) {
                Some(p) => p.clone(),
                None => {
                    let p = connect_pair(clients, &origin, target).await?;
                    self.pairs.insert(key, p.clone());
                    p
                }
            };
            let (src, dst) = (clients.of(&origin)?, clients.of(target)?);
            let from = pair
                .end_on(&origin.router_id)
                .expect("pair of these routers");
            let to = pair
                .end_on(&target.router_id)
                .expect("pair of these routers");
            let consumed = src.consume_to_pipe(from, producer).await?;
            dst.produce_from_pipe(to, producer, &consumed).await?;
            Metrics::count(&clients.metrics().pipes, "cross_node");
            self.record(producer, target, Some(&parent));
            return Ok(());
        }
        self.record(producer, target, None);
        Ok(())
    }
}

/// Hops from `node` up to the origin.
fn depth(feeds: &HashMap<String, Option<String>>, node: &str) -> usize {
    let mut at = node;
    let mut hops = 0;
    while let Some(Some(parent)) = feeds.get(at) {
        at = parent;
        hops += 1;
        if hops > feeds.len() {
            break;
        }
    }
    hops
}

/// Whether `ancestor` is on the way from `node` up to the origin.
fn descends_from(feeds: &HashMap<String, Option<String>>, node: &str, ancestor: &str) -> bool {
    let mut at = node;
    for _ in 0..=feeds.len() {
        match feeds.get(at) {
            Some(Some(parent)) if parent == ancestor => return true,
            Some(Some(parent)) => at = parent,
            _ => return false,
        }
    }
    false
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
impl RoomPipes {
    /// Records that `router`'s node got `producer` from `parent` (what
    /// `make_available` records after its node calls).
    pub fn record_feed(&mut self, producer: &str, router: &RouterRef, parent: &str) {
        self.record(producer, router, Some(parent));
    }
}

/// A router reference for tests.
#[cfg(test)]
pub fn test_router(id: &str, node: &str) -> RouterRef {
    RouterRef {
        router_id: id.into(),
        node_id: node.into(),
        worker: 0,
        address: "127.0.0.1:1".into(),
        caps: std::sync::Arc::new(serde_json::json!({})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_router as router;

    fn routers(list: &[&RouterRef]) -> HashMap<String, RouterRef> {
        list.iter()
            .map(|r| (r.router_id.clone(), (*r).clone()))
            .collect()
    }

    /// Grows the tree as `make_available` would, node after node.
    fn grow(p: &mut RoomPipes, producer: &str, nodes: usize) {
        for i in 2..=nodes {
            let parent = p.parent_for(producer).expect("a parent");
            p.record_feed(
                producer,
                &router(&format!("r{i}"), &format!("n{i:02}")),
                &parent,
            );
        }
    }

    #[test]
    fn no_node_feeds_more_than_the_fanout_and_the_tree_stays_shallow() {
        let mut p = RoomPipes::new(3);
        p.add_source("prod", &router("r1", "n01"));
        grow(&mut p, "prod", 40);
        let feeds = &p.feeds["prod"];
        assert_eq!(feeds.len(), 40);
        for node in feeds.keys() {
            assert!(
                p.fed_by("prod", node) <= 3,
                "{node} feeds {}",
                p.fed_by("prod", node)
            );
        }
        assert_eq!(p.fed_by("prod", "n01"), 3, "the origin feeds its share");
        // 1 + 3 + 9 + 27 >= 40: three hops at most.
        let deepest = feeds.keys().map(|n| depth(feeds, n)).max().unwrap();
        assert_eq!(deepest, 3);
        // Unbounded enough: one origin feeds everyone directly.
        let mut flat = RoomPipes::new(64);
        flat.add_source("prod", &router("r1", "n01"));
        grow(&mut flat, "prod", 40);
        assert_eq!(flat.fed_by("prod", "n01"), 39);
    }

    #[test]
    fn losing_a_relay_orphans_its_subtree_and_frees_its_parents_share() {
        let mut p = RoomPipes::new(2);
        let origin = router("r1", "n01");
        p.add_source("prod", &origin);
        p.add_source("other", &router("r5", "n05"));
        grow(&mut p, "prod", 7);
        // n01 feeds n02 n03; n02 feeds n04 n06; n03 feeds n05 n07 (the
        // least loaded of the shallowest in turn).
        assert_eq!(p.feeds["prod"]["n04"].as_deref(), Some("n02"));
        let all = routers(&[
            &origin,
            &router("r2", "n02"),
            &router("r3", "n03"),
            &router("r4", "n04"),
            &router("r5", "n05"),
            &router("r6", "n06"),
            &router("r7", "n07"),
        ]);
        p.pairs.insert(
            pair_key("r1", "r2"),
            PipePair {
                ends: [("r1".into(), "p1".into()), ("r2".into(), "p2".into())],
            },
        );
        let (orphans, ends) = p.forget_node("n02", &all);
        assert_eq!(ends, vec![(origin.clone(), "p1".to_string())]);
        assert_eq!(
            orphans,
            vec![
                ("prod".to_string(), "n04".to_string()),
                ("prod".to_string(), "n06".to_string())
            ]
        );
        for r in ["r2", "r4", "r6"] {
            assert!(!p.is_available("prod", r), "{r}");
        }
        for r in ["r1", "r3", "r5", "r7"] {
            assert!(p.is_available("prod", r), "{r}");
        }
        assert!(
            p.is_available("other", "r5"),
            "another producer's origin stays"
        );
        assert!(p.pairs.is_empty(), "the pair with n02 is gone");
        // The origin feeds one node now: the orphans go there first.
        assert_eq!(p.parent_for("prod").as_deref(), Some("n01"));
        assert_eq!(p.forget_producer("prod").len(), 4);
        assert!(!p.is_available("prod", "r1"));
    }
}
