//! A room's roster as a client keeps it under protocol 2 (docs/signalling.md,
//! Presence): the first page from `joined`, the rest by `listPeers`, kept
//! current by the coalesced `peersJoined` / `peersLeft` lists. The same rules
//! as the web client's (`client-web/src/roster.js`): a page is applied under
//! the events seen before it, departures seen since the previous page are not
//! brought back by the next one, and a client skips its own id.
//!
//! Events and answers reach [`Session`] on two channels; every event queued
//! before a page's answer is in the event channel by the time the answer is
//! read, so draining the events before applying the page keeps the order
//! that matters (a departure after the page is then remembered and skipped).
//!
//! Also counts what presence costs a client: messages and bytes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};

use crate::signal::{Event, Session, SignalError};

/// One client's view of its room.
#[derive(Debug, Default)]
pub struct Roster {
    self_id: String,
    /// Peer id -> producer ids.
    peers: HashMap<String, HashSet<String>>,
    gone: HashSet<String>,
    /// Everyone in the room, this client included, as the server last said.
    pub count: usize,
    /// `peersJoined` / `peersLeft` messages received.
    pub presence_messages: usize,
    /// Their bytes.
    pub presence_bytes: usize,
    /// Pages fetched with `listPeers`.
    pub pages: usize,
}

fn id_of(v: &Value) -> Option<&str> {
    v.as_str().or_else(|| v["peerId"].as_str())
}

impl Roster {
    /// The roster of `self_id`, from its `joined` (or `resumed`) message.
    pub fn new(self_id: &str, first_page: &Value) -> Self {
        let mut r = Self {
            self_id: self_id.to_string(),
            ..Self::default()
        };
        r.page(first_page);
        r
    }

    /// Applies a page (`joined`, `resumed` or a `listPeers` answer).
    pub fn page(&mut self, page: &Value) {
        for p in page["peers"].as_array().into_iter().flatten() {
            let Some(id) = id_of(p) else { continue };
            if id == self.self_id || self.gone.contains(id) {
                continue;
            }
            self.upsert(id, p);
        }
        if let Some(n) = page["peerCount"].as_u64() {
            self.count = n as usize;
        }
        self.gone.clear();
    }

    fn upsert(&mut self, id: &str, p: &Value) {
        let producers = p["producers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|pr| pr["producerId"].as_str().map(str::to_string))
            .collect();
        self.peers.insert(id.to_string(), producers);
    }

    /// Applies an event; false if it is not about the roster.
    pub fn event(&mut self, ev: &Event) -> bool {
        match ev.kind.as_str() {
            "peersJoined" | "peersLeft" => {
                self.presence_messages += 1;
                self.presence_bytes += ev.text.len();
            }
            "newProducer" | "producerClosed" => {}
            // Protocol 1's one message per join and leave: counted (a
            // benchmark against an older coordinator), not applied.
            "peerJoined" | "peerLeft" => {
                self.presence_messages += 1;
                self.presence_bytes += ev.text.len();
                return true;
            }
            _ => return false,
        }
        let Ok(v) = serde_json::from_str::<Value>(&ev.text) else {
            return false;
        };
        match ev.kind.as_str() {
            "peersJoined" => {
                for p in v["peers"].as_array().into_iter().flatten() {
                    let Some(id) = id_of(p) else { continue };
                    if id == self.self_id {
                        continue;
                    }
                    self.gone.remove(id);
                    self.upsert(id, p);
                }
            }
            "peersLeft" => {
                for id in v["peerIds"].as_array().into_iter().flatten() {
                    let Some(id) = id.as_str() else { continue };
                    self.peers.remove(id);
                    self.gone.insert(id.to_string());
                }
            }
            "newProducer" => {
                let (peer, producer) = (v["peerId"].as_str(), v["producer"]["producerId"].as_str());
                if let (Some(peer), Some(producer)) = (peer, producer) {
                    if let Some(p) = self.peers.get_mut(peer) {
                        p.insert(producer.to_string());
                    }
                }
            }
            _ => {
                let (peer, producer) = (v["peerId"].as_str(), v["producerId"].as_str());
                if let (Some(peer), Some(producer)) = (peer, producer) {
                    if let Some(p) = self.peers.get_mut(peer) {
                        p.remove(producer);
                    }
                }
            }
        }
        if let Some(n) = v["peerCount"].as_u64() {
            self.count = n as usize;
        }
        true
    }

    /// Applies every event received so far; returns the others (not about
    /// the roster), in order.
    pub fn drain(&mut self, session: &mut Session) -> Vec<Event> {
        let mut other = Vec::new();
        while let Ok(ev) = session.events.try_recv() {
            if !self.event(&ev) {
                other.push(ev);
            }
        }
        other
    }

    /// Fetches the pages from `cursor` on (`nextCursor` of the first page).
    pub async fn complete(
        &mut self,
        session: &mut Session,
        mut cursor: Option<String>,
        timeout: Duration,
    ) -> Result<(), SignalError> {
        while let Some(c) = cursor {
            let page = session
                .request("listPeers", json!({ "cursor": c }), timeout)
                .await?;
            self.drain(session);
            self.page(&page);
            self.pages += 1;
            cursor = page["nextCursor"].as_str().map(str::to_string);
        }
        Ok(())
    }

    /// The other peers, sorted.
    pub fn ids(&self) -> BTreeSet<String> {
        self.peers.keys().cloned().collect()
    }

    /// A peer's producers, as known.
    pub fn producers_of(&self, peer: &str) -> Option<&HashSet<String>> {
        self.peers.get(peer)
    }
}
