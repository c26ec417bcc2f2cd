// Who is in the room, as this client knows it: the peers (in join order) with
// their producers, and the consumers this client holds of them. Built from
// `joined` and kept current by the room's events. Events of a new session may
// arrive before its `joined` (another join announced while ours was being
// answered): arrivals are kept, and departures seen early are not brought
// back by the `joined` list.

export class Roster {
  constructor() {
    this.peers = new Map();
    this.joinSeq = 0;
    this.activeSpeaker = null;
    this.goneEarly = new Set();
  }

  /** A new session: forget the old session's view of the room. */
  reset() {
    this.peers.clear();
    this.goneEarly = new Set();
  }

  /** The room as `joined` listed it, under the events that came first. */
  joined(peers) {
    for (const p of peers) {
      if (this.goneEarly.has(p.peerId)) continue;
      this.add({ ...p, producers: (p.producers ?? []).filter((pr) => !this.goneEarly.has(pr.producerId)) });
    }
    this.goneEarly.clear();
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
    for (const pr of p.producers ?? []) {
      peer.producers.set(pr.producerId, { kind: pr.kind, source: pr.source, paused: !!pr.paused });
    }
    this.peers.set(p.peerId, peer);
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
      case 'peerJoined':
        this.goneEarly.delete(m.peer.peerId);
        this.add(m.peer);
        return true;
      case 'peerLeft': {
        this.goneEarly.add(m.peerId);
        const peer = this.peers.get(m.peerId);
        if (peer) for (const id of [...peer.consumers.keys()]) this.dropConsumer(peer, id);
        this.peers.delete(m.peerId);
        if (this.activeSpeaker === m.peerId) this.activeSpeaker = null;
        return true;
      }
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
