// Who is in the room, as this client knows it: the peers (in join order) with
// their producers, and the consumers this client holds of them. Built from
// the pages of the roster (`joined` or `resumed` carry the first, `listPeers`
// the rest) and kept current by the room's events (protocol 2: `peersJoined`
// and `peersLeft` lists, coalesced by the server). Events may be applied
// before a page that was taken earlier: arrivals are kept, and departures
// seen since the last page are not brought back by the next one.

export class Roster {
  constructor() {
    this.peers = new Map();
    this.joinSeq = 0;
    this.activeSpeaker = null;
    this.goneEarly = new Set();
    // Everyone in the room, this client included, as the server last said.
    this.count = 0;
    this.selfId = null;
  }

  /** A new session: forget the old session's view of the room. */
  reset() {
    this.peers.clear();
    this.goneEarly = new Set();
    this.count = 0;
  }

  /** A page of the room (`joined`, `resumed`, `listPeers`), under the events that came first. */
  page(page) {
    for (const p of page.peers) {
      if (this.goneEarly.has(p.peerId) || p.peerId === this.selfId) continue;
      this.add({ ...p, producers: (p.producers ?? []).filter((pr) => !this.goneEarly.has(pr.producerId)) });
    }
    if (typeof page.peerCount === 'number') this.count = page.peerCount;
    this.goneEarly.clear();
  }

  /** Before the pages of a resumed session: every peer known is stale until a page or event names it. */
  markStale() {
    for (const peer of this.peers.values()) peer.stale = true;
  }

  /** After the last page: peers no page or event named since `markStale` left meanwhile. */
  staleIds() {
    return [...this.peers.values()].filter((p) => p.stale).map((p) => p.id);
  }

  add(p) {
    const peer = this.peers.get(p.peerId) ?? {
      id: p.peerId,
      name: p.displayName,
      seq: this.joinSeq++,
      producers: new Map(),
      consumers: new Map(),
      offSince: null,
    };
    peer.name = p.displayName;
    peer.role = p.role ?? 'member';
    peer.stale = false;
    for (const pr of p.producers ?? []) {
      peer.producers.set(pr.producerId, { kind: pr.kind, source: pr.source, paused: !!pr.paused });
    }
    this.peers.set(p.peerId, peer);
  }

  /** A peer left (its consumers close); remembered until the next page. */
  remove(id) {
    this.goneEarly.add(id);
    const peer = this.peers.get(id);
    if (peer) for (const pid of [...peer.consumers.keys()]) this.dropConsumer(peer, pid);
    this.peers.delete(id);
    if (this.activeSpeaker === id) this.activeSpeaker = null;
  }

  /** Peer ids in join order. */
  order() {
    return [...this.peers.values()].sort((a, b) => a.seq - b.seq).map((p) => p.id);
  }

  /** Closes the consumer of `producerId` held of `peer`, if any. */
  dropConsumer(peer, producerId) {
    const c = peer.consumers.get(producerId);
    if (!c) return;
    peer.consumers.delete(producerId);
    c.consumer.close();
  }

  /** Closes every consumer (the session ended). */
  dropConsumers() {
    for (const peer of this.peers.values()) {
      for (const c of peer.consumers.values()) c.consumer.close();
      peer.consumers.clear();
    }
  }

  /**
   * Applies a room event; returns true if the roster changed (false: not a
   * roster event).
   */
  apply(m) {
    switch (m.type) {
      case 'peersJoined':
        for (const p of m.peers) {
          if (p.peerId === this.selfId) continue;
          this.goneEarly.delete(p.peerId);
          this.add(p);
        }
        this.count = m.peerCount;
        return true;
      case 'peersLeft':
        for (const id of m.peerIds) this.remove(id);
        this.count = m.peerCount;
        return true;
      case 'newProducer': {
        const peer = this.peers.get(m.peerId);
        if (peer) peer.producers.set(m.producer.producerId, { kind: m.producer.kind, source: m.producer.source, paused: false });
        return true;
      }
      case 'producerClosed': {
        this.goneEarly.add(m.producerId);
        const peer = this.peers.get(m.peerId);
        if (peer) {
          this.dropConsumer(peer, m.producerId);
          peer.producers.delete(m.producerId);
        }
        return true;
      }
      case 'producerPaused': {
        const pr = this.peers.get(m.peerId)?.producers.get(m.producerId);
        if (pr) pr.paused = m.paused;
        return true;
      }
      case 'consumerClosed':
        for (const peer of this.peers.values()) {
          for (const [pid, c] of peer.consumers) {
            if (c.consumer.id === m.consumerId) {
              peer.consumers.delete(pid);
              c.consumer.close();
            }
          }
        }
        return true;
      case 'consumerLayers':
        for (const peer of this.peers.values()) {
          for (const c of peer.consumers.values()) {
            if (c.consumer.id === m.consumerId) c.currentLayers = { spatial: m.spatialLayer, temporal: m.temporalLayer };
          }
        }
        return true;
      case 'activeSpeaker':
        this.activeSpeaker = m.peerId;
        return true;
      default:
        return false;
    }
  }
}
