// One participant's session: signalling, the mediasoup device, one send and one
// receive transport, our producers, and consumers of exactly the peers on the
// current page (plus the next page, paused, so paging is instant). Everything
// the view shows is read from here; `onChange` tells the view to redraw.

import { Device } from 'mediasoup-client';
import { Signalling, SignalError } from './signalling.js';
import { paginate } from './layout.js';

/** Off-page consumers are closed after this long (paging back within it is instant). */
const KEEP_OFF_PAGE_MS = 20000;
/** A transport `disconnected` this long gets an ICE restart. */
const DISCONNECTED_GRACE_MS = 2000;
/** ICE restarts that fail this long end in a full re-join. */
const ICE_GIVE_UP_MS = 20000;
const SIMULCAST = [
  { scaleResolutionDownBy: 4, maxBitrate: 150000 },
  { scaleResolutionDownBy: 2, maxBitrate: 500000 },
  { scaleResolutionDownBy: 1, maxBitrate: 1200000 },
];
const REJOIN_ATTEMPTS = 8;

export class Call {
  constructor({ wsUrl, room, token, displayName, media, tilesPerPage, micOn, onChange, onQueued }) {
    Object.assign(this, { wsUrl, room, token, displayName, media, tilesPerPage, onChange, onQueued });
    this.wantMic = micOn;
    this.micOn = false;
    this.peers = new Map();
    this.joinSeq = 0;
    this.pinned = [];
    this.page = 0;
    this.activeSpeaker = null;
    this.conn = 'connecting';
    this.everConnected = false;
    this.transportStates = new Map();
    this.tileWidths = new Map();
    this.errors = [];
    this.left = null;
    this.busy = new Set();
    this.sig = null;
  }

  // ---- lifecycle -------------------------------------------------------------

  /** Joins (waiting in the queue as long as needed) and starts sending. */
  async start() {
    await this.connectSession();
    this.housekeeping = setInterval(() => this.sync(), 5000);
  }

  async connectSession() {
    const sig = new Signalling(this.wsUrl, {
      onEvent: (m) => this.onEvent(sig, m),
      onClose: (byUs) => {
        if (!byUs && this.sig === sig && !this.left) this.rejoin('connection to the server lost');
      },
    });
    this.sig = sig;
    // A new session: forget the old session's view of the room before joining.
    // Events of this session may arrive before `joined` (another join announced
    // while ours was being answered) and are kept.
    this.peers.clear();
    this.goneEarly = new Set();
    await sig.open();
    const joined = await sig.request(
      'join',
      { room: this.room, displayName: this.displayName, token: this.token },
      { onQueued: (q) => this.onQueued?.(q), timeoutMs: 0 },
    );
    if (this.sig !== sig) return;
    this.note(`joined as ${joined.peerId} with ${joined.peers.map((p) => p.peerId).join(',')}`);
    this.peerId = joined.peerId;
    this.canPublish = joined.canPublish;
    // Before any await: events about the room follow `joined` at once.
    // ...and a peer or producer that went away in that gap is not brought back.
    for (const p of joined.peers) {
      if (this.goneEarly.has(p.peerId)) continue;
      this.addPeer({ ...p, producers: (p.producers ?? []).filter((pr) => !this.goneEarly.has(pr.producerId)) });
    }
    this.goneEarly.clear();
    this.device = new Device();
    await this.device.load({ routerRtpCapabilities: joined.routerRtpCapabilities });
    this.recvTransport = await this.createTransport('recv');
    if (this.canPublish) {
      this.sendTransport = await this.createTransport('send');
      await this.produceMic();
      if (this.media.videoTrack) await this.produceCamera(this.media.videoTrack);
    }
    this.updateConn();
    // The transport may have connected while the mic producer was being made.
    this.maybeOpenMic();
    this.changed();
    this.sync();
  }

  async createTransport(direction) {
    const params = await this.sig.request('createTransport', { direction });
    const t = direction === 'send'
      ? this.device.createSendTransport(params)
      : this.device.createRecvTransport(params);
    const sig = this.sig;
    t.on('connect', ({ dtlsParameters }, ok, fail) => {
      sig.request('connectTransport', { transportId: t.id, dtlsParameters }).then(() => ok(), fail);
    });
    if (direction === 'send') {
      t.on('produce', ({ kind, rtpParameters, appData }, ok, fail) => {
        sig.request('produce', { transportId: t.id, kind, rtpParameters, source: appData.source })
          .then(({ id }) => ok({ id }), fail);
      });
    }
    this.transportStates.set(t.id, 'new');
    t.on('connectionstatechange', (state) => this.onTransportState(t, state));
    return t;
  }

  // ---- producing -----------------------------------------------------------

  /** The mic producer starts paused: it is opened only once media is connected. */
  async produceMic() {
    const track = this.media.audioTrack;
    if (!track || !this.sendTransport) return;
    track.enabled = false;
    this.micProducer = await this.sendTransport.produce({
      track,
      stopTracks: false,
      codecOptions: { opusFec: true, opusDtx: true },
      appData: { source: 'mic' },
    });
    this.micProducer.pause();
    await this.sig.request('pauseProducer', { producerId: this.micProducer.id });
    this.micOn = false;
  }

  async produceCamera(track) {
    const vp8 = this.device.rtpCapabilities.codecs.find((c) => c.mimeType.toLowerCase() === 'video/vp8');
    this.camProducer = await this.sendTransport.produce({
      track,
      stopTracks: false,
      encodings: SIMULCAST,
      codecOptions: { videoGoogleStartBitrate: 1000 },
      codec: vp8,
      appData: { source: 'camera' },
    });
    this.camProducer.on('trackended', () => this.setCamera(false).catch(() => {}));
  }

  /** Mic on/off. Refused unless media is connected. */
  async setMic(on) {
    if (on && this.conn !== 'connected') throw new Error('not connected yet');
    return this.exclusive('mic', async () => {
      if (!this.micProducer) {
        if (!on) return;
        if (!this.media.audioTrack) await this.media.openMic();
        await this.produceMic();
        if (!this.micProducer) throw new Error('no microphone');
      }
      if (on) {
        this.media.audioTrack.enabled = true;
        await this.sig.request('resumeProducer', { producerId: this.micProducer.id });
        this.micProducer.resume();
      } else {
        this.micProducer.pause();
        await this.sig.request('pauseProducer', { producerId: this.micProducer.id });
      }
      this.micOn = on;
      this.wantMic = on;
    });
  }

  /** Camera on/off: off closes the producer and the camera; peers show the avatar. */
  async setCamera(on) {
    if (on && this.conn !== 'connected') throw new Error('not connected yet');
    return this.exclusive('cam', async () => {
      if (on && !this.camProducer) {
        const track = await this.media.openCamera();
        if (!track) throw new Error('camera unavailable');
        await this.produceCamera(track);
      } else if (!on && this.camProducer) {
        const p = this.camProducer;
        this.camProducer = null;
        p.close();
        this.media.stopCamera();
        await this.sig.request('closeProducer', { producerId: p.id });
      }
    });
  }

  /** Front/rear camera, swapped in place: peers keep the same producer. */
  async flipCamera() {
    return this.exclusive('cam', async () => {
      const track = await this.media.flip();
      if (track && this.camProducer) await this.camProducer.replaceTrack({ track });
    });
  }

  async exclusive(name, fn) {
    if (this.busy.has(name)) return;
    this.busy.add(name);
    this.changed();
    try {
      await fn();
    } finally {
      this.busy.delete(name);
      this.changed();
    }
  }

  // ---- peers and consumers ---------------------------------------------------

  addPeer(p) {
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

  removeConsumer(peer, producerId) {
    const c = peer.consumers.get(producerId);
    if (!c) return;
    peer.consumers.delete(producerId);
    c.consumer.close();
  }

  /** Keeps the last 100 session events for diagnostics (`window.throng.call.trace`). */
  note(what) {
    this.trace ??= [];
    this.trace.push(`${new Date().toISOString().slice(11, 23)} ${what}`);
    if (this.trace.length > 100) this.trace.shift();
  }

  onEvent(sig, m) {
    this.note(`${sig === this.sig ? '' : '(stale) '}${m.type} ${m.peerId ?? m.peer?.peerId ?? m.code ?? ''}`);
    if (sig !== this.sig) return;
    switch (m.type) {
      case 'peerJoined':
        this.goneEarly?.delete(m.peer.peerId);
        this.addPeer(m.peer);
        break;
      case 'peerLeft': {
        this.goneEarly?.add(m.peerId);
        const peer = this.peers.get(m.peerId);
        if (peer) for (const id of [...peer.consumers.keys()]) this.removeConsumer(peer, id);
        this.peers.delete(m.peerId);
        this.pinned = this.pinned.filter((id) => id !== m.peerId);
        if (this.activeSpeaker === m.peerId) this.activeSpeaker = null;
        break;
      }
      case 'newProducer': {
        const peer = this.peers.get(m.peerId);
        if (peer) peer.producers.set(m.producer.producerId, { kind: m.producer.kind, source: m.producer.source, paused: false });
        break;
      }
      case 'producerClosed': {
        this.goneEarly?.add(m.producerId);
        const peer = this.peers.get(m.peerId);
        if (peer) {
          this.removeConsumer(peer, m.producerId);
          peer.producers.delete(m.producerId);
        }
        break;
      }
      case 'producerPaused': {
        const pr = this.peers.get(m.peerId)?.producers.get(m.producerId);
        if (pr) pr.paused = m.paused;
        break;
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
        break;
      case 'activeSpeaker':
        this.activeSpeaker = m.peerId;
        break;
      case 'reconnect':
        this.rejoin(m.reason || 'the server moved this call');
        return;
      case 'error':
        if (m.code === 'replaced') this.finish('You joined this call from another tab or device.');
        else this.error(new Error(m.message));
        return;
      default:
        return;
    }
    this.changed();
    this.sync();
  }

  /** Peers in page order (you are tile one, not in this list). */
  pages() {
    const ids = [...this.peers.values()].sort((a, b) => a.seq - b.seq).map((p) => p.id);
    return paginate(ids, this.pinned, this.tilesPerPage);
  }

  goToPage(n) {
    const count = this.pages().length;
    this.page = Math.max(0, Math.min(n, count - 1));
    this.changed();
    this.sync();
  }

  togglePin(peerId) {
    this.pinned = this.pinned.includes(peerId)
      ? this.pinned.filter((id) => id !== peerId)
      : [...this.pinned, peerId];
    this.goToPage(this.pinned.includes(peerId) ? 0 : this.page);
  }

  /** The view reports how wide each visible tile is; the video layer follows. */
  setTileWidth(peerId, spatialLayer) {
    this.tileWidths.set(peerId, spatialLayer);
    this.sync();
  }

  /** Brings consumers in line with the page: serialised, re-run while anything changed. */
  async sync() {
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    this.syncing = true;
    try {
      do {
        this.syncAgain = false;
        await this.syncOnce();
      } while (this.syncAgain && !this.left);
    } catch (e) {
      if (!(e instanceof SignalError && e.code === 'unavailable')) this.error(e);
    } finally {
      this.syncing = false;
    }
  }

  async syncOnce() {
    if (!this.recvTransport || this.left || this.rejoining) return;
    const pages = this.pages();
    if (this.page >= pages.length) this.page = pages.length - 1;
    const onPage = new Set(pages[this.page] ?? []);
    const nextPage = new Set(pages[this.page + 1] ?? []);
    const now = Date.now();
    const sig = this.sig;
    for (const peer of [...this.peers.values()]) {
      const visible = onPage.has(peer.id);
      const wanted = visible || nextPage.has(peer.id);
      if (visible || wanted) peer.offSince = visible ? null : (peer.offSince ?? now);
      else peer.offSince = peer.offSince ?? now;
      for (const [producerId] of peer.producers) {
        if (this.sig !== sig || !this.peers.has(peer.id)) return;
        let c = peer.consumers.get(producerId);
        if (!c && wanted) c = await this.consume(peer, producerId);
        if (!c) continue;
        if (visible && c.paused) {
          await sig.request('resumeConsumer', { consumerId: c.consumer.id });
          c.consumer.resume();
          c.paused = false;
          this.changed();
        } else if (!visible && !c.paused) {
          c.consumer.pause();
          c.paused = true;
          await sig.request('pauseConsumer', { consumerId: c.consumer.id });
          this.changed();
        }
        if (!wanted && peer.offSince !== null && now - peer.offSince > KEEP_OFF_PAGE_MS) {
          peer.consumers.delete(producerId);
          c.consumer.close();
          await sig.request('closeConsumer', { consumerId: c.consumer.id });
          continue;
        }
        const layer = this.tileWidths.get(peer.id);
        if (visible && c.consumer.kind === 'video' && c.simulcast && layer !== undefined && c.layer !== layer) {
          await sig.request('setPreferredLayers', { consumerId: c.consumer.id, spatialLayer: layer });
          c.layer = layer;
        }
      }
    }
  }

  async consume(peer, producerId) {
    const data = await this.sig.request('consume', {
      producerId,
      rtpCapabilities: this.device.rtpCapabilities,
    });
    const consumer = await this.recvTransport.consume({
      id: data.id,
      producerId: data.producerId,
      kind: data.kind,
      rtpParameters: data.rtpParameters,
    });
    consumer.pause();
    const c = { consumer, paused: true, simulcast: data.type === 'simulcast', layer: undefined };
    if (!this.peers.has(peer.id) || !peer.producers.has(producerId)) {
      consumer.close();
      await this.sig.request('closeConsumer', { consumerId: consumer.id }).catch(() => {});
      return null;
    }
    peer.consumers.set(producerId, c);
    this.changed();
    return c;
  }

  // ---- connection state -------------------------------------------------------

  onTransportState(t, state) {
    this.transportStates.set(t.id, state);
    if (state === 'connected') {
      clearTimeout(t.__restartTimer);
      t.__failingSince = null;
    } else if (state === 'disconnected') {
      clearTimeout(t.__restartTimer);
      t.__restartTimer = setTimeout(() => this.restartIce(t), DISCONNECTED_GRACE_MS);
    } else if (state === 'failed') {
      this.restartIce(t);
    }
    this.updateConn();
  }

  async restartIce(t) {
    if (t.closed || this.left || this.transportStates.get(t.id) === 'connected') return;
    t.__failingSince ??= Date.now();
    if (Date.now() - t.__failingSince > ICE_GIVE_UP_MS) {
      this.rejoin('media connection lost');
      return;
    }
    await this.iceRestartOnce(t);
    clearTimeout(t.__restartTimer);
    t.__restartTimer = setTimeout(() => this.restartIce(t), 5000);
  }

  /** The network changed (e.g. Wi-Fi to cellular): restart ICE on both transports at once. */
  async restartAllIce() {
    for (const t of [this.sendTransport, this.recvTransport]) {
      if (!t || t.closed || this.transportStates.get(t.id) === 'new') continue;
      await this.iceRestartOnce(t);
    }
  }

  /** New ICE credentials from the server, applied to the transport; failures are logged. */
  async iceRestartOnce(t) {
    try {
      const { iceParameters } = await this.sig.request('restartIce', { transportId: t.id });
      await t.restartIce({ iceParameters });
      this.iceRestarts = (this.iceRestarts ?? 0) + 1;
    } catch (e) {
      console.warn('ICE restart failed', e);
    }
  }

  /** The transport that says whether media flows: send if we send, else receive. */
  updateConn() {
    const prev = this.conn;
    let state;
    if (this.left) state = 'disconnected';
    else if (this.rejoining) state = 'reconnecting';
    else {
      const used = [this.sendTransport, this.recvTransport]
        .filter((t) => t && !t.closed && this.transportStates.get(t.id) !== 'new');
      const states = used.map((t) => this.transportStates.get(t.id));
      if (states.some((s) => s === 'failed' || s === 'disconnected')) state = 'reconnecting';
      else if (this.sendTransport && !this.sendTransport.closed) {
        state = this.transportStates.get(this.sendTransport.id) === 'connected' ? 'connected'
          : this.everConnected ? 'reconnecting' : 'connecting';
      } else if (states.length > 0) {
        state = states.every((s) => s === 'connected') ? 'connected' : 'connecting';
      } else state = this.peerId ? 'connected' : 'connecting';
    }
    this.conn = state;
    if (state === 'connected' && prev !== 'connected') {
      this.everConnected = true;
      this.maybeOpenMic();
    }
    if (prev !== state) this.changed();
  }

  /** The mic opens once media is connected, and only if the person asked for it. */
  maybeOpenMic() {
    if (this.conn === 'connected' && this.wantMic && !this.micOn && this.micProducer && !this.busy.has('mic')) {
      this.setMic(true).catch((e) => this.error(e));
    }
  }

  /** The server moved us or the socket dropped: join again on a new socket, same tracks. */
  async rejoin(reason) {
    this.note(`rejoin: ${reason}`);
    if (this.rejoining || this.left) return;
    this.rejoining = true;
    this.rejoinReason = reason;
    this.updateConn();
    const old = this.sig;
    this.sig = null;
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
        this.sync();
        return;
      } catch (e) {
        console.warn(`re-join attempt ${attempt} failed`, e);
        this.sig?.close();
        this.sig = null;
        this.teardownMedia();
        if (e instanceof SignalError && ['unauthorized', 'forbidden', 'room_full'].includes(e.code)) {
          this.finish(e.message);
          return;
        }
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 8000);
      }
    }
    if (!this.left) this.finish(`could not reconnect (${reason})`);
  }

  teardownMedia() {
    for (const peer of this.peers.values()) {
      for (const c of peer.consumers.values()) c.consumer.close();
      peer.consumers.clear();
    }
    this.micProducer?.close();
    this.camProducer?.close();
    this.micProducer = null;
    this.camProducer = null;
    this.micOn = false;
    this.sendTransport?.close();
    this.recvTransport?.close();
    this.sendTransport = null;
    this.recvTransport = null;
    this.transportStates.clear();
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

  // ---- what the view and the tests read -----------------------------------------

  /** Remote tracks of a peer, for its tile. */
  tracksOf(peerId) {
    const peer = this.peers.get(peerId);
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
    for (const peer of this.peers.values()) {
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
