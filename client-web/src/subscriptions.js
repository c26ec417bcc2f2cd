// What we receive: consumers of exactly the peers on the current page (plus
// the next page, paused, so that paging is instant), resumed while on screen,
// paused off screen and closed after a while off screen; the simulcast layer
// of each video follows its tile's width. Paging and pins live here too.
// `sync()` brings the consumers in line; it runs one at a time and again
// while anything changed during a run.

import { paginate } from './layout.js';

/** Off-page consumers are closed after this long (paging back within it is instant). */
const KEEP_OFF_PAGE_MS = 20000;

export class Subscriptions {
  /**
   * `session()` returns `{ sig, device, recvTransport }` of the current
   * session (or null while there is none); `changed()` redraws; `error(e)`
   * reports.
   */
  constructor({ roster, tilesPerPage, session, changed, error, view = () => ({}) }) {
    // `view()`: `{ self, lead }` for `paginate` (an event's audience is no
    // tile and follows the active speaker).
    Object.assign(this, { roster, tilesPerPage, session, changed, error, view });
    this.pinned = [];
    this.page = 0;
    this.layers = new Map(); // peer id -> spatial layer its tile wants
    this.syncing = false;
    this.again = false;
    this.stopped = false;
  }

  /** Pages of tile ids (you are tile one unless you are in an event's audience). */
  pages() {
    return paginate(this.roster.order(), this.pinned, this.tilesPerPage, this.view());
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

  /** A peer left: it is no longer pinned. */
  forget(peerId) {
    this.pinned = this.pinned.filter((id) => id !== peerId);
  }

  /** A visible tile is this wide now: the spatial layer its video wants. */
  setLayer(peerId, spatialLayer) {
    if (this.layers.get(peerId) === spatialLayer) return;
    this.layers.set(peerId, spatialLayer);
    this.sync();
  }

  /** Brings consumers in line with the page: serialised, re-run while anything changed. */
  async sync() {
    if (this.syncing) {
      this.again = true;
      return;
    }
    this.syncing = true;
    try {
      do {
        this.again = false;
        await this.syncOnce();
      } while (this.again && !this.stopped);
    } catch (e) {
      if (e?.code !== 'unavailable') this.error(e);
    } finally {
      this.syncing = false;
    }
  }

  async syncOnce() {
    const s = this.session();
    if (!s?.recvTransport || this.stopped) return;
    const pages = this.pages();
    if (this.page >= pages.length) this.page = pages.length - 1;
    const onPage = new Set(pages[this.page] ?? []);
    const nextPage = new Set(pages[this.page + 1] ?? []);
    const now = Date.now();
    for (const peer of [...this.roster.peers.values()]) {
      const visible = onPage.has(peer.id);
      const wanted = visible || nextPage.has(peer.id);
      if (visible) peer.offSince = null;
      else peer.offSince = peer.offSince ?? now;
      for (const [producerId] of peer.producers) {
        if (this.session() !== s || !this.roster.peers.has(peer.id)) return;
        let c = peer.consumers.get(producerId);
        if (!c && wanted) c = await this.consume(s, peer, producerId);
        if (!c) continue;
        // The layer first: resuming then switching layers would wait for two
        // keyframes instead of one.
        const layer = this.layers.get(peer.id);
        if (visible && c.consumer.kind === 'video' && c.simulcast && layer !== undefined && c.layer !== layer) {
          await s.sig.request('setPreferredLayers', { consumerId: c.consumer.id, spatialLayer: layer });
          c.layer = layer;
        }
        if (visible && c.paused) {
          // Locally first: the keyframe the server asks for on resume must
          // find the track enabled.
          c.consumer.resume();
          c.paused = false;
          await s.sig.request('resumeConsumer', { consumerId: c.consumer.id });
          this.changed();
        } else if (!visible && !c.paused) {
          c.consumer.pause();
          c.paused = true;
          await s.sig.request('pauseConsumer', { consumerId: c.consumer.id });
          this.changed();
        }
        if (!wanted && now - peer.offSince > KEEP_OFF_PAGE_MS) {
          peer.consumers.delete(producerId);
          c.consumer.close();
          await s.sig.request('closeConsumer', { consumerId: c.consumer.id });
        }
      }
    }
  }

  async consume(s, peer, producerId) {
    const data = await s.sig.request('consume', {
      producerId,
      rtpCapabilities: s.device.rtpCapabilities,
    });
    const consumer = await s.recvTransport.consume({
      id: data.id,
      producerId: data.producerId,
      kind: data.kind,
      rtpParameters: data.rtpParameters,
    });
    consumer.pause();
    const c = { consumer, paused: true, simulcast: data.type === 'simulcast', layer: undefined };
    if (!this.roster.peers.has(peer.id) || !peer.producers.has(producerId)) {
      consumer.close();
      await s.sig.request('closeConsumer', { consumerId: consumer.id }).catch(() => {});
      return null;
    }
    peer.consumers.set(producerId, c);
    this.changed();
    return c;
  }
}
