// The media connection: the state of each transport, the one indicator the
// person sees (connecting / connected / reconnecting / disconnected), and
// ICE restarts when a transport fails or stays disconnected. Its timers live
// here, keyed by transport id, never on mediasoup-client's objects.

/** A transport `disconnected` this long gets an ICE restart. */
const DISCONNECTED_GRACE_MS = 2000;
/** Between ICE restarts of a transport that stays down. */
const RESTART_EVERY_MS = 5000;
/** ICE restarts that fail this long end in a full re-join. */
const ICE_GIVE_UP_MS = 20000;

export class Connection {
  /**
   * `restartIce(transport)` asks the server for new ICE parameters and applies
   * them; `giveUp(reason)` re-joins; `changed()` redraws.
   */
  constructor({ restartIce, giveUp, changed }) {
    Object.assign(this, { restartIce, giveUp, changed });
    this.transports = new Map(); // id -> { transport, state }
    this.timers = new Map(); // id -> timeout
    this.failingSince = new Map(); // id -> ms
    this.state = 'connecting';
    this.everConnected = false;
    this.restarts = 0;
    this.listeners = new Set();
    // How media goes, per transport once connected: 'direct' (to the media
    // node) or 'relay-udp' / 'relay-tcp' / 'relay-tls' (through TURN).
    this.paths = new Map(); // id -> path
  }

  /**
   * How the media of the call goes: 'direct', a relay ('relay-udp',
   * 'relay-tcp', 'relay-tls'), or '' while unknown. A relay on any transport
   * counts.
   */
  get path() {
    const all = [...this.paths.values()];
    return all.find((p) => p.startsWith('relay')) ?? all[0] ?? '';
  }

  /** Reads the transport's selected candidate pair from its stats. */
  async readPath(transport) {
    try {
      const stats = await transport.getStats();
      let pairId;
      for (const s of stats.values()) if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
      const pair = pairId
        ? stats.get(pairId)
        : [...stats.values()].find((s) => s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded');
      const local = pair && stats.get(pair.localCandidateId);
      if (!local || transport.closed || !this.transports.has(transport.id)) return;
      const path = local.candidateType === 'relay' ? `relay-${local.relayProtocol ?? 'udp'}` : 'direct';
      if (this.paths.get(transport.id) !== path) {
        this.paths.set(transport.id, path);
        this.changed();
      }
    } catch (e) {
      console.warn('transport stats not read', e);
    }
  }

  /** Calls `f(state)` whenever the indicator changes. */
  onState(f) {
    this.listeners.add(f);
  }

  /** Follows a new transport's connection state. */
  track(transport) {
    this.transports.set(transport.id, { transport, state: 'new' });
    transport.on('connectionstatechange', (state) => this.transportState(transport, state));
  }

  /** Forgets every transport (they were closed) and their timers. */
  reset() {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.failingSince.clear();
    this.transports.clear();
    this.paths.clear();
  }

  transportState(transport, state) {
    const entry = this.transports.get(transport.id);
    if (!entry) return;
    entry.state = state;
    clearTimeout(this.timers.get(transport.id));
    this.timers.delete(transport.id);
    if (state === 'connected') {
      this.failingSince.delete(transport.id);
      this.readPath(transport);
    } else if (state === 'disconnected') {
      this.later(transport, DISCONNECTED_GRACE_MS);
    } else if (state === 'failed') {
      this.restart(transport);
    }
    this.update();
  }

  later(transport, ms) {
    clearTimeout(this.timers.get(transport.id));
    this.timers.set(transport.id, setTimeout(() => this.restart(transport), ms));
  }

  async restart(transport) {
    const entry = this.transports.get(transport.id);
    if (!entry || transport.closed || entry.state === 'connected') return;
    if (!this.failingSince.has(transport.id)) this.failingSince.set(transport.id, Date.now());
    if (Date.now() - this.failingSince.get(transport.id) > ICE_GIVE_UP_MS) {
      this.giveUp('media connection lost');
      return;
    }
    await this.restartOnce(transport);
    if (this.transports.has(transport.id)) this.later(transport, RESTART_EVERY_MS);
  }

  /** New ICE credentials for one transport; a failure is logged, not thrown. */
  async restartOnce(transport) {
    try {
      await this.restartIce(transport);
      this.restarts += 1;
    } catch (e) {
      console.warn('ICE restart failed', e);
    }
  }

  /** The network changed (Wi-Fi to cellular): restart ICE on every used transport at once. */
  async restartAll() {
    for (const { transport, state } of [...this.transports.values()]) {
      if (transport.closed || state === 'new') continue;
      await this.restartOnce(transport);
    }
  }

  stateOf(transport) {
    return transport ? this.transports.get(transport.id)?.state : undefined;
  }

  /**
   * Recomputes the indicator from the transports and the session: the send
   * transport says whether media flows when we send, else the receive one.
   */
  update({ left = false, rejoining = false, joined = false, send = null } = this.context ?? {}) {
    this.context = { left, rejoining, joined, send };
    const prev = this.state;
    let state;
    if (left) state = 'disconnected';
    else if (rejoining) state = 'reconnecting';
    else {
      const used = [...this.transports.values()].filter((e) => !e.transport.closed && e.state !== 'new');
      const sendState = this.stateOf(send);
      if (used.some((e) => e.state === 'failed' || e.state === 'disconnected')) state = 'reconnecting';
      else if (send && !send.closed) {
        state = sendState === 'connected' ? 'connected' : this.everConnected ? 'reconnecting' : 'connecting';
      } else if (used.length > 0) {
        state = used.every((e) => e.state === 'connected') ? 'connected' : 'connecting';
      } else state = joined ? 'connected' : 'connecting';
    }
    this.state = state;
    if (state === 'connected') this.everConnected = true;
    if (prev !== state) {
      for (const f of this.listeners) f(state);
      this.changed();
    }
  }
}
