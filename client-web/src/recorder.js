// Local recording of the call view: the tiles drawn onto a canvas, every audio
// track mixed, encoded by MediaRecorder. Every second's data goes to IndexedDB
// at once, so a closed tab loses at most a second; the next visit offers what
// was kept.

const DB_NAME = 'throng-recordings';
const DB_VERSION = 1;
const WIDTH = 1280;
const HEIGHT = 720;
const FPS = 15;

function idb(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function openDb() {
  const req = indexedDB.open(DB_NAME, DB_VERSION);
  req.onupgradeneeded = () => {
    const db = req.result;
    db.createObjectStore('recordings', { keyPath: 'id' });
    const chunks = db.createObjectStore('chunks', { autoIncrement: true });
    chunks.createIndex('byRecording', 'recordingId');
  };
  return idb(req);
}

function txDone(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

/** Recordings kept in this browser: `{id, room, startedAt, mimeType}`. */
export async function listRecordings() {
  const db = await openDb();
  try {
    return await idb(db.transaction('recordings').objectStore('recordings').getAll());
  } finally {
    db.close();
  }
}

/** A kept recording as one Blob. */
export async function recordingBlob(id) {
  const db = await openDb();
  try {
    const tx = db.transaction(['recordings', 'chunks']);
    const meta = await idb(tx.objectStore('recordings').get(id));
    const parts = await idb(tx.objectStore('chunks').index('byRecording').getAll(id));
    parts.sort((a, b) => a.seq - b.seq);
    return new Blob(parts.map((p) => p.data), { type: meta?.mimeType ?? 'video/webm' });
  } finally {
    db.close();
  }
}

/** Forgets a kept recording. */
export async function deleteRecording(id) {
  const db = await openDb();
  try {
    const tx = db.transaction(['recordings', 'chunks'], 'readwrite');
    tx.objectStore('recordings').delete(id);
    const index = tx.objectStore('chunks').index('byRecording');
    const keys = await idb(index.getAllKeys(id));
    for (const k of keys) tx.objectStore('chunks').delete(k);
    await txDone(tx);
  } finally {
    db.close();
  }
}

/** Saves a Blob as a file through the browser's download. */
export function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

export function recordingFilename(room, startedAt) {
  const stamp = new Date(startedAt).toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const safeRoom = String(room).replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 40) || 'call';
  return `throng-${safeRoom}-${stamp}.webm`;
}

function pickMimeType() {
  for (const t of ['video/webm;codecs=vp8,opus', 'video/webm;codecs=vp9,opus', 'video/webm', 'video/mp4']) {
    if (window.MediaRecorder?.isTypeSupported?.(t)) return t;
  }
  return '';
}

/**
 * Records what `source()` returns each frame: `{tiles: [{video, name, speaking}], audioTracks}`.
 */
export class CallRecorder {
  constructor(room, source) {
    this.room = room;
    this.source = source;
    this.id = `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    this.startedAt = Date.now();
    this.seq = 0;
    this.writes = Promise.resolve();
    this.audioNodes = new Map();
  }

  async start() {
    if (!window.MediaRecorder) throw new Error('this browser cannot record');
    this.mimeType = pickMimeType();
    this.db = await openDb();
    const tx = this.db.transaction('recordings', 'readwrite');
    tx.objectStore('recordings').put({
      id: this.id, room: this.room, startedAt: this.startedAt, mimeType: this.mimeType || 'video/webm',
    });
    await txDone(tx);

    this.canvas = document.createElement('canvas');
    this.canvas.width = WIDTH;
    this.canvas.height = HEIGHT;
    this.ctx = this.canvas.getContext('2d');
    this.audio = new AudioContext();
    this.mix = this.audio.createMediaStreamDestination();
    // A silent source keeps the audio track running when nobody speaks.
    const silence = this.audio.createConstantSource();
    silence.offset.value = 0;
    silence.connect(this.mix);
    silence.start();
    this.draw();
    this.timer = setInterval(() => this.draw(), 1000 / FPS);
    const stream = new MediaStream([
      ...this.canvas.captureStream(FPS).getVideoTracks(),
      ...this.mix.stream.getAudioTracks(),
    ]);
    this.recorder = new MediaRecorder(stream, this.mimeType ? { mimeType: this.mimeType } : {});
    this.recorder.ondataavailable = (ev) => {
      if (ev.data && ev.data.size > 0) this.store(ev.data);
    };
    this.stopped = new Promise((resolve) => {
      this.recorder.onstop = () => resolve();
    });
    this.recorder.start(1000);
  }

  store(data) {
    const seq = this.seq++;
    const db = this.db;
    this.writes = this.writes.then(async () => {
      const tx = db.transaction('chunks', 'readwrite');
      tx.objectStore('chunks').add({ recordingId: this.id, seq, data });
      await txDone(tx);
    }).catch((e) => console.error('recording chunk not kept', e));
  }

  syncAudio(tracks) {
    const live = new Set(tracks.map((t) => t.id));
    for (const [id, node] of this.audioNodes) {
      if (!live.has(id)) {
        node.disconnect();
        this.audioNodes.delete(id);
      }
    }
    for (const t of tracks) {
      if (this.audioNodes.has(t.id) || t.readyState !== 'live') continue;
      const node = this.audio.createMediaStreamSource(new MediaStream([t]));
      node.connect(this.mix);
      this.audioNodes.set(t.id, node);
    }
  }

  draw() {
    const { tiles, audioTracks } = this.source();
    this.syncAudio(audioTracks);
    const ctx = this.ctx;
    ctx.fillStyle = '#0d1117';
    ctx.fillRect(0, 0, WIDTH, HEIGHT);
    const n = Math.max(tiles.length, 1);
    const cols = Math.ceil(Math.sqrt(n));
    const rows = Math.ceil(n / cols);
    const w = WIDTH / cols;
    const h = HEIGHT / rows;
    tiles.forEach((t, i) => {
      const x = (i % cols) * w;
      const y = Math.floor(i / cols) * h;
      ctx.fillStyle = '#21262d';
      ctx.fillRect(x + 2, y + 2, w - 4, h - 4);
      const v = t.video;
      if (v && v.readyState >= 2 && v.videoWidth > 0) {
        const scale = Math.min((w - 4) / v.videoWidth, (h - 4) / v.videoHeight);
        const dw = v.videoWidth * scale;
        const dh = v.videoHeight * scale;
        ctx.drawImage(v, x + (w - dw) / 2, y + (h - dh) / 2, dw, dh);
      }
      if (t.speaking) {
        ctx.strokeStyle = '#3fb950';
        ctx.lineWidth = 4;
        ctx.strokeRect(x + 4, y + 4, w - 8, h - 8);
      }
      ctx.fillStyle = 'rgba(0,0,0,.6)';
      ctx.fillRect(x + 8, y + h - 34, Math.min(w - 16, 12 + t.name.length * 10), 26);
      ctx.fillStyle = '#e6edf3';
      ctx.font = '16px system-ui, sans-serif';
      ctx.fillText(t.name, x + 14, y + h - 15, w - 28);
    });
  }

  /** Stops, waits for the last data, and returns the whole recording. */
  async stop() {
    clearInterval(this.timer);
    if (this.recorder.state !== 'inactive') {
      this.recorder.requestData();
      this.recorder.stop();
    }
    await this.stopped;
    await this.writes;
    for (const node of this.audioNodes.values()) node.disconnect();
    await this.audio.close();
    this.db.close();
    const blob = await recordingBlob(this.id);
    return { blob, filename: recordingFilename(this.room, this.startedAt) };
  }
}
