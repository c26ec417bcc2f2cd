// What we send: the microphone and camera producers on the send transport.
// The microphone is produced paused and opened only while media is connected
// (the original app's rule); what the person asked for (`wantMic`) is
// reconciled with what is sent whenever the connection or the producer
// changes, and again after a failure, until they agree.

const SIMULCAST = [
  { scaleResolutionDownBy: 4, maxBitrate: 150000 },
  { scaleResolutionDownBy: 2, maxBitrate: 500000 },
  { scaleResolutionDownBy: 1, maxBitrate: 1200000 },
];
/** A failed attempt to open (or close) the microphone is retried after this. */
const MIC_RETRY_MS = 1000;

export class Publisher {
  /**
   * `session()` returns `{ sig, device, sendTransport }` of the current
   * session (or null); `connected()` says whether media flows; `changed()`
   * redraws; `error(e)` reports.
   */
  constructor({ media, micOn, session, connected, changed, error }) {
    Object.assign(this, { media, session, connected, changed, error });
    this.wantMic = micOn;
    this.micOn = false;
    this.micProducer = null;
    this.camProducer = null;
    this.busy = new Set();
    this.retry = null;
  }

  /** A new send transport: produce the microphone (paused) and the camera. */
  async start() {
    await this.produceMic();
    if (this.media.videoTrack) await this.produceCamera(this.media.videoTrack);
    this.reconcile();
  }

  async produceMic() {
    const s = this.session();
    const track = this.media.audioTrack;
    if (!track || !s?.sendTransport) return;
    track.enabled = false;
    const producer = await s.sendTransport.produce({
      track,
      stopTracks: false,
      codecOptions: { opusFec: true, opusDtx: true },
      appData: { source: 'mic' },
    });
    producer.pause();
    await s.sig.request('pauseProducer', { producerId: producer.id });
    this.micProducer = producer;
    this.micOn = false;
  }

  async produceCamera(track) {
    const s = this.session();
    const vp8 = s.device.rtpCapabilities.codecs.find((c) => c.mimeType.toLowerCase() === 'video/vp8');
    this.camProducer = await s.sendTransport.produce({
      track,
      stopTracks: false,
      encodings: SIMULCAST,
      codecOptions: { videoGoogleStartBitrate: 1000 },
      codec: vp8,
      appData: { source: 'camera' },
    });
    this.camProducer.on('trackended', () => this.setCamera(false).catch(() => {}));
  }

  /** Mic on/off, as the person asks. Opening is refused unless media is connected. */
  async setMic(on) {
    if (on && !this.connected()) throw new Error('not connected yet');
    this.wantMic = on;
    try {
      await this.applyMic();
    } catch (e) {
      this.retryLater();
      throw e;
    }
  }

  retryLater() {
    clearTimeout(this.retry);
    this.retry = setTimeout(() => this.reconcile(), MIC_RETRY_MS);
  }

  /** Brings the microphone to what was asked; false if it could not now. */
  async applyMic() {
    return this.exclusive('mic', async () => {
      const on = this.wantMic;
      if (!this.micProducer) {
        if (!on) return;
        if (!this.media.audioTrack) await this.media.openMic();
        await this.produceMic();
        if (!this.micProducer) throw new Error('no microphone');
      }
      const s = this.session();
      if (on) {
        this.media.audioTrack.enabled = true;
        this.micProducer.resume();
        await s.sig.request('resumeProducer', { producerId: this.micProducer.id });
      } else {
        this.micProducer.pause();
        await s.sig.request('pauseProducer', { producerId: this.micProducer.id });
      }
      this.micOn = on;
    });
  }

  /**
   * Opens or closes the microphone if what is sent differs from what was
   * asked and media is connected; on failure tries again shortly, so that a
   * request lost in a busy moment does not leave the microphone closed.
   */
  reconcile() {
    clearTimeout(this.retry);
    this.retry = null;
    const needed = this.micProducer && this.wantMic !== this.micOn;
    if (!needed || !this.connected() || this.busy.has('mic')) return;
    this.applyMic()
      .catch((e) => console.warn('microphone not switched; retrying', e))
      .finally(() => {
        if (this.micProducer && this.wantMic !== this.micOn) this.retryLater();
      });
  }

  /** Camera on/off: off closes the producer and the camera; peers show the avatar. */
  async setCamera(on) {
    if (on && !this.connected()) throw new Error('not connected yet');
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
        await this.session().sig.request('closeProducer', { producerId: p.id });
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

  /** The session ended: its producers are gone (the wish for the mic stays). */
  reset() {
    clearTimeout(this.retry);
    this.retry = null;
    this.micProducer?.close();
    this.camProducer?.close();
    this.micProducer = null;
    this.camProducer = null;
    this.micOn = false;
  }
}
