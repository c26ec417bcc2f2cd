// One participant's call: the session with the server (signalling, the
// mediasoup device, one send and one receive transport), its lifecycle (join,
// re-join, leave), the room's events, and an event's roles (the audience
// watches the stage and may raise a hand; hosts promote and demote; a
// promoted member starts publishing without re-joining). The parts: `Roster` (who is there),
// `Subscriptions` (what we receive, paging), `Publisher` (what we send),
// `Connection` (transport states, ICE restarts, the indicator). The view
// reads from here; `onChange` tells it to redraw.

import { Device } from 'mediasoup-client';
import { Signalling, SignalError } from './signalling.js';
import { Connection } from './connection.js';
import { Publisher } from './publisher.js';
import { Roster } from './roster.js';
import { Subscriptions } from './subscriptions.js';

const REJOIN_ATTEMPTS = 8;
/**
 * A socket that closed is first taken up again (`resume`: same transports,
 * producers and consumers, media never stops) this many times, 250 ms apart
 * and doubling, before a full re-join.
 */
const RESUME_ATTEMPTS = 5;
/** A join the server refuses for now (queue full) is retried this many times. */
const BUSY_ATTEMPTS = 20;

/** `ms` stretched by up to half again, so that refused clients do not return together. */
const jittered = (ms) => Math.round(ms * (1 + Math.random() / 2));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Consumers are re-checked this often even when nothing happened. */
const HOUSEKEEPING_MS = 5000;

export class Call {
  constructor({
    wsUrl, room, token, displayName, media, tilesPerPage, micOn, relayOnly = false, onChange, onQueued, onBusy,
  }) {
    // `relayOnly`: media only through the TURN relays the server hands out
    // (what a browser behind a firewall that blocks the media ports ends up
    // using; `?relay=1` on the page forces it).
    Object.assign(this, { wsUrl, room, token, displayName, media, relayOnly, onChange, onQueued, onBusy });
    this.sig = null;
    // The current session's { sig, device, sendTransport, recvTransport }:
    // the parts compare it to tell a stale session's work from the current's.
    this.current = null;
    this.left = null;
    const session = () => this.current;
    const changed = () => this.changed();
    const error = (e) => this.error(e);
    this.roster = new Roster();
    // An event's roles (protocol 2): 'member' outside events.
    this.role = 'member';
    this.audienceCount = 0;
    this.hands = [];
    this.handsCount = 0;
    this.handRaised = false;
    const audience = () => this.role === 'audience';
    this.subs = new Subscriptions({
      roster: this.roster,
      tilesPerPage,
      session,
      changed,
      error,
      view: () => ({ self: !audience(), lead: audience() ? this.roster.activeSpeaker : null }),
    });
    this.publisher = new Publisher({
      media, micOn, session, changed, error, connected: () => this.conn === 'connected',
    });
    this.connection = new Connection({
      restartIce: (t) => this.restartIce(t),
      giveUp: (reason) => this.rejoin(reason),
      changed,
    });
    this.connection.onState(() => this.publisher.reconcile());
  }

  // ---- what the view and the tests read ------------------------------------------

  get peers() { return this.roster.peers; }
  get activeSpeaker() { return this.roster.activeSpeaker; }
  get pinned() { return this.subs.pinned; }
  get page() { return this.subs.page; }
  get conn() { return this.connection.state; }
  get everConnected() { return this.connection.everConnected; }
  get iceRestarts() { return this.connection.restarts; }
  /** '' (not known yet), 'direct', or 'relay-udp' / 'relay-tcp' / 'relay-tls' (through TURN). */
  get mediaPath() { return this.connection.path; }
  get micOn() { return this.publisher.micOn; }
  get camProducer() { return this.publisher.camProducer; }
  get busy() { return this.publisher.busy; }

  pages() { return this.subs.pages(); }
  goToPage(n) { this.subs.goToPage(n); }
  togglePin(peerId) { this.subs.togglePin(peerId); }
  /** A visible tile's width asks for this simulcast layer of the peer's video. */
  setTileWidth(peerId, spatialLayer) { this.subs.setLayer(peerId, spatialLayer); }
  setMic(on) { return this.publisher.setMic(on); }
  setCamera(on) { return this.publisher.setCamera(on); }
  flipCamera() { return this.publisher.flipCamera(); }
  restartAllIce() { return this.connection.restartAll(); }

  // ---- an event's stage and audience --------------------------------------------

  /** Raises (or lowers) your hand; hosts see it. Audience only. */
  async raiseHand(raised = true) {
    await this.sig.request('raiseHand', { raised });
    this.handRaised = raised;
    this.changed();
  }

  /** Hosts: brings an audience member onto the stage. */
  promote(peerId) { return this.sig.request('promote', { peerId }); }

  /** Hosts: sends a speaker back to the audience. */
  demote(peerId) { return this.sig.request('demote', { peerId }); }

  /** A page of the audience after `cursor`: `{ peers, nextCursor, peerCount }`. */
  listAudience(cursor) {
    return this.sig.request('listAudience', cursor ? { cursor } : {});
  }

  // ---- lifecycle -------------------------------------------------------------

  /** Joins (waiting in the queue as long as needed) and starts sending. */
  async start() {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.connectSession();
        break;
      } catch (e) {
        // Refused for now (the queue is full): wait as told, then try again.
        const wait = e instanceof SignalError ? e.retryAfterMs : undefined;
        if (wait === undefined || this.left || attempt >= BUSY_ATTEMPTS) throw e;
        this.sig?.close();
        this.sig = null;
        this.current = null;
        const ms = jittered(wait);
        this.busyRetries = attempt;
        this.note(`busy: ${e.message}; retry in ${ms} ms`);
        this.onBusy?.({ retryInMs: ms, attempt, reason: e.message });
        await sleep(ms);
        if (this.left) throw new Error(this.left);
      }
    }
    this.housekeeping = setInterval(() => this.subs.sync(), HOUSEKEEPING_MS);
  }

  async connectSession() {
    const sig = new Signalling(this.wsUrl, {
      onEvent: (m) => this.onEvent(sig, m),
      onClose: (byUs) => {
        if (!byUs && this.sig === sig && !this.left) this.resume('connection to the server lost');
      },
    });
    this.sig = sig;
    this.resumeToken = null;
    const current = { sig };
    this.current = current;
    this.roster.reset();
    await sig.open();
    const joined = await sig.request(
      'join',
      { room: this.room, displayName: this.displayName, token: this.token },
      { onQueued: (q) => this.onQueued?.(q), timeoutMs: 0 },
    );
    if (this.sig !== sig) return;
    this.note(`joined as ${joined.peerId} with ${joined.peers.map((p) => p.peerId).join(',')} of ${joined.peerCount}`);
    this.peerId = joined.peerId;
    this.canPublish = joined.canPublish;
    this.role = joined.role ?? 'member';
    this.audienceCount = joined.audienceCount ?? 0;
    this.handRaised = false;
    this.resumeToken = joined.resumeToken;
    // Watching: no camera light and no open microphone until promoted.
    if (!this.canPublish && this.role === 'audience') {
      this.media.stopCamera();
      this.media.stopMic();
    }
    // Before any await: events about the room follow `joined` at once.
    this.roster.selfId = joined.peerId;
    this.roster.page(joined);
    // The rest of a big room's roster, page by page, while media starts.
    if (joined.nextCursor) this.loadRoster(sig, joined.nextCursor);
    this.device = current.device = new Device();
    await this.device.load({ routerRtpCapabilities: joined.routerRtpCapabilities });
    this.recvTransport = current.recvTransport = await this.createTransport('recv');
    if (this.canPublish) {
      this.sendTransport = current.sendTransport = await this.createTransport('send');
      await this.publisher.start();
    }
    this.updateConn();
    this.changed();
    this.subs.sync();
  }

  async createTransport(direction) {
    const reply = await this.sig.request('createTransport', { direction });
    // TURN relays with this participant's credentials come with the transport
    // when the cluster has any.
    const params = {
      ...reply,
      iceServers: reply.iceServers ?? [],
      iceTransportPolicy: this.relayOnly ? 'relay' : 'all',
    };
    const t = direction === 'send'
      ? this.device.createSendTransport(params)
      : this.device.createRecvTransport(params);
    // The session's socket at the time of the call: a resume replaces it
    // (`current.sig`), a re-join replaces the whole session and its transports.
    const current = this.current;
    t.on('connect', ({ dtlsParameters }, ok, fail) => {
      current.sig.request('connectTransport', { transportId: t.id, dtlsParameters }).then(() => ok(), fail);
    });
    if (direction === 'send') {
      t.on('produce', ({ kind, rtpParameters, appData }, ok, fail) => {
        current.sig.request('produce', { transportId: t.id, kind, rtpParameters, source: appData.source })
          .then(({ id }) => ok({ id }), fail);
      });
    }
    this.connection.track(t);
    return t;
  }

  async restartIce(t) {
    const { iceParameters, iceServers } = await this.sig.request('restartIce', { transportId: t.id });
    // Fresh TURN credentials: the restart may allocate a new relay.
    if (iceServers) await t.updateIceServers({ iceServers });
    await t.restartIce({ iceParameters });
  }

  /** Recomputes the connection indicator from the session's state. */
  updateConn() {
    this.connection.update({
      left: !!this.left,
      rejoining: !!this.rejoining || !!this.resuming,
      joined: !!this.peerId,
      send: this.sendTransport,
    });
  }

  /** Keeps the last 100 session events for diagnostics (`window.throng.call.trace`). */
  note(what) {
    this.trace ??= [];
    this.trace.push(`${new Date().toISOString().slice(11, 23)} ${what}`);
    if (this.trace.length > 100) this.trace.shift();
  }

  onEvent(sig, m) {
    const who = m.peerId ?? m.peers?.map((p) => p.peerId).join(',') ?? m.peerIds?.join(',') ?? m.code ?? '';
    this.note(`${sig === this.sig ? '' : '(stale) '}${m.type} ${who}`);
    if (sig !== this.sig) return;
    if (m.type === 'audience') {
      this.audienceCount = m.count;
      this.changed();
      return;
    }
    if (m.type === 'hands') {
      this.hands = m.hands;
      this.handsCount = m.count;
      this.changed();
      return;
    }
    if (m.type === 'roleChanged') {
      this.changeRole(m).catch((e) => this.error(e));
      return;
    }
    if (m.type === 'consumerLayers') {
      this.layerEvents = (this.layerEvents ?? 0) + 1;
      this.roster.apply(m);
      return;
    }
    if (this.roster.apply(m)) {
      if (m.type === 'peersLeft') for (const id of m.peerIds) this.subs.forget(id);
      this.changed();
      this.subs.sync();
      return;
    }
    if (m.type === 'reconnect') this.rejoin(m.reason || 'the server moved this call');
    else if (m.type === 'error') {
      if (m.code === 'replaced') this.finish('You joined this call from another tab or device.');
      else this.error(new Error(m.message));
    }
  }

  /**
   * A host promoted or demoted us: start sending (camera and microphone,
   * the microphone muted until unmuted) or stop, on the same session.
   */
  async changeRole({ role, canPublish }) {
    const current = this.current;
    this.role = role;
    this.canPublish = canPublish;
    this.handRaised = false;
    this.changed();
    this.subs.sync();
    if (canPublish && !current.sendTransport) {
      await this.media.openMic().catch((e) => this.note(`microphone: ${e.message}`));
      await this.media.openCamera().catch((e) => this.note(`camera: ${e.message}`));
      if (this.current !== current) return;
      this.sendTransport = current.sendTransport = await this.createTransport('send');
      // On stage with the microphone muted: the speaker unmutes when ready.
      this.publisher.wantMic = false;
      await this.publisher.start();
    } else if (!canPublish && current.sendTransport) {
      // The server closed our producers already; close ours to match.
      this.publisher.reset();
      current.sendTransport.close();
      this.sendTransport = current.sendTransport = null;
      this.media.stopCamera();
      this.media.stopMic();
    }
    this.updateConn();
    this.changed();
  }

  /**
   * The socket dropped (network change, a coordinator that died): take the
   * session up on a new socket, through whichever coordinator answers, while
   * media keeps flowing on the same transports. Falls back to a full re-join
   * when the server no longer holds the session or cannot be reached in time.
   */
  async resume(reason) {
    this.note(`resume: ${reason}`);
    if (this.resuming || this.rejoining || this.left) return;
    const current = this.current;
    if (!this.resumeToken || !current?.recvTransport) {
      this.rejoin(reason);
      return;
    }
    this.resuming = true;
    this.updateConn();
    this.changed();
    const started = performance.now();
    let delay = 250;
    try {
      for (let attempt = 1; attempt <= RESUME_ATTEMPTS && !this.left && this.current === current; attempt++) {
        const sig = new Signalling(this.wsUrl, {
          onEvent: (m) => this.onEvent(sig, m),
          onClose: (byUs) => {
            if (!byUs && this.sig === sig && !this.left) this.resume('connection to the server lost');
          },
        });
        try {
          await sig.open();
          // Events after `resumed` are this session's: route them from now.
          this.sig = sig;
          current.sig = sig;
          const r = await sig.request('resume', { room: this.room, resumeToken: this.resumeToken });
          this.applyResumed(r, sig);
          this.resumes = (this.resumes ?? 0) + 1;
          this.lastResumeMs = Math.round(performance.now() - started);
          this.note(`resumed in ${this.lastResumeMs} ms with ${r.peers.map((p) => p.peerId).join(',')}`);
          return;
        } catch (e) {
          this.note(`resume attempt ${attempt} failed: ${e.code ?? ''} ${e.message}`);
          if (this.sig === sig) this.sig = null;
          sig.close();
          // Refused for good (session no longer held, token refused): re-join.
          if (e instanceof SignalError && !['unavailable', 'timeout', 'rate_limited'].includes(e.code)) break;
          await sleep(e instanceof SignalError && e.retryAfterMs !== undefined ? e.retryAfterMs : delay);
          delay = Math.min(delay * 2, 2000);
        }
      }
    } finally {
      this.resuming = false;
      this.updateConn();
      this.changed();
    }
    if (!this.left && this.current === current) this.rejoin(reason);
  }

  /**
   * Pages through the roster from `cursor` (`listPeers`); returns true when
   * the last page came on this session.
   */
  async loadRoster(sig, cursor) {
    try {
      while (cursor && this.sig === sig) {
        const page = await sig.request('listPeers', { cursor });
        if (this.sig !== sig) return false;
        this.roster.page(page);
        this.changed();
        this.subs.sync();
        cursor = page.nextCursor;
      }
      return this.sig === sig;
    } catch (e) {
      this.note(`roster paging stopped: ${e.message}`);
      return false;
    }
  }

  /** Lines the roster, consumers and producers up with a `resumed` message. */
  applyResumed(r, sig) {
    this.resumeToken = r.resumeToken;
    this.canPublish = r.canPublish;
    // The room as it is now: who came arrives, producers closed meanwhile
    // go; who left meanwhile is whoever no page or event names (below).
    this.roster.markStale();
    this.roster.selfId = r.peerId;
    for (const p of r.peers) {
      const known = this.roster.peers.get(p.peerId);
      if (known) {
        const live = new Set((p.producers ?? []).map((pr) => pr.producerId));
        for (const pid of [...known.producers.keys()]) {
          if (!live.has(pid)) this.roster.apply({ type: 'producerClosed', peerId: p.peerId, producerId: pid });
        }
      }
      this.roster.add(p);
    }
    this.roster.goneEarly.clear();
    this.roster.count = r.peerCount;
    // Our consumers: the server's list is the truth. One we hold that it
    // does not was closed meanwhile; one it holds that we do not was made
    // while its answer was lost.
    const held = new Set(r.consumers.map((c) => c.consumerId));
    const ours = new Set();
    for (const peer of this.roster.peers.values()) {
      for (const [pid, c] of [...peer.consumers]) {
        if (held.has(c.consumer.id)) ours.add(c.consumer.id);
        else {
          peer.consumers.delete(pid);
          c.consumer.close();
        }
      }
    }
    for (const c of r.consumers) {
      if (!ours.has(c.consumerId)) sig.request('closeConsumer', { consumerId: c.consumerId }).catch(() => {});
    }
    const mine = new Set([this.publisher.micProducer?.id, this.publisher.camProducer?.id].filter(Boolean));
    for (const p of r.producers) {
      if (!mine.has(p.producerId)) sig.request('closeProducer', { producerId: p.producerId }).catch(() => {});
    }
    this.subs.sync();
    this.publisher.reconcile();
    this.finishResumedRoster(sig, r.nextCursor);
  }

  /** The rest of a resumed session's roster; then whoever nobody named left meanwhile. */
  async finishResumedRoster(sig, cursor) {
    if (!(await this.loadRoster(sig, cursor))) return;
    for (const id of this.roster.staleIds()) {
      this.roster.remove(id);
      this.subs.forget(id);
    }
    this.roster.goneEarly.clear();
    this.changed();
    this.subs.sync();
  }

  /** The server moved us or the session is gone: join again on a new socket, same tracks. */
  async rejoin(reason) {
    this.note(`rejoin: ${reason}`);
    if (this.rejoining || this.left) return;
    this.rejoining = true;
    this.rejoinReason = reason;
    this.updateConn();
    const old = this.sig;
    this.sig = null;
    this.current = null;
    old?.close();
    this.teardownMedia();
    let delay = 500;
    for (let attempt = 1; attempt <= REJOIN_ATTEMPTS && !this.left; attempt++) {
      try {
        this.rejoining = true;
        await this.connectSession();
        this.rejoining = false;
        this.rejoins = (this.rejoins ?? 0) + 1;
        this.updateConn();
        this.changed();
        this.subs.sync();
        return;
      } catch (e) {
        console.warn(`re-join attempt ${attempt} failed`, e);
        this.sig?.close();
        this.sig = null;
        this.current = null;
        this.teardownMedia();
        if (e instanceof SignalError && ['unauthorized', 'forbidden', 'room_full'].includes(e.code)) {
          this.finish(e.message);
          return;
        }
        // The server's hint when it gave one (queue full), else back off.
        await sleep(e instanceof SignalError && e.retryAfterMs !== undefined ? jittered(e.retryAfterMs) : delay);
        delay = Math.min(delay * 2, 8000);
      }
    }
    if (!this.left) this.finish(`could not reconnect (${reason})`);
  }

  teardownMedia() {
    this.roster.dropConsumers();
    this.publisher.reset();
    this.sendTransport?.close();
    this.recvTransport?.close();
    this.sendTransport = null;
    this.recvTransport = null;
    this.connection.reset();
    this.changed();
  }

  /** Leaves the call for good. */
  async leave(reason = 'You left the call.') {
    if (this.left) return;
    try {
      await this.sig?.request('leave', {}, { timeoutMs: 3000 });
    } catch {
      // Closing the socket is a leave too.
    }
    this.finish(reason);
  }

  finish(reason) {
    if (this.left) return;
    this.left = reason;
    this.subs.stopped = true;
    clearInterval(this.housekeeping);
    this.sig?.close();
    this.teardownMedia();
    this.media.stopCamera();
    this.media.stopMic();
    this.updateConn();
    this.changed();
  }

  error(e) {
    console.error(e);
    this.lastError = e.message ?? String(e);
    this.changed();
  }

  changed() {
    if (this.pendingChange) return;
    this.pendingChange = true;
    queueMicrotask(() => {
      this.pendingChange = false;
      this.onChange?.();
    });
  }

  /** Remote tracks of a peer, for its tile. */
  tracksOf(peerId) {
    const peer = this.roster.peers.get(peerId);
    const out = { video: null, audio: null, videoPaused: true, audioMuted: true };
    if (!peer) return out;
    for (const [pid, pr] of peer.producers) {
      const c = peer.consumers.get(pid);
      if (pr.kind === 'video') {
        out.videoPaused = pr.paused || !c || c.paused;
        if (c && !c.paused && !pr.paused) out.video = c.consumer.track;
      } else if (pr.kind === 'audio') {
        out.audioMuted = pr.paused;
        if (c && !c.paused) out.audio = c.consumer.track;
      }
    }
    return out;
  }

  /** Receive statistics per peer: decoded frames, audio packets (for diagnostics and tests). */
  async receiveStats() {
    const out = {};
    for (const peer of this.roster.peers.values()) {
      const entry = { name: peer.name, framesDecoded: 0, audioPackets: 0, consumers: peer.consumers.size };
      for (const c of peer.consumers.values()) {
        const report = await c.consumer.getStats();
        for (const s of report.values()) {
          if (s.type !== 'inbound-rtp') continue;
          if (s.kind === 'video') entry.framesDecoded += s.framesDecoded ?? 0;
          else entry.audioPackets += s.packetsReceived ?? 0;
        }
      }
      out[peer.id] = entry;
    }
    return out;
  }
}
