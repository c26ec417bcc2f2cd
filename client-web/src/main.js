// The page: lobby -> queue -> call -> left. Reads state from `Call` and draws it.

import { Call } from './call.js';
import { LocalMedia } from './media.js';
import { SELF, gridShape, initials, layerForWidth, tokenRoom } from './layout.js';
import {
  CallRecorder, deleteRecording, download, listRecordings, recordingBlob, recordingFilename,
} from './recorder.js';

const $ = (id) => document.getElementById(id);
const media = new LocalMedia();
const params = new URLSearchParams(location.search);
let config = { tilesPerPage: 12, openJoin: false };
let call = null;
let recorder = null;
const lobby = { mic: true, cam: true };
const tiles = new Map();

function show(view) {
  for (const v of ['lobby', 'queue', 'call', 'left']) $(v).hidden = v !== view;
  document.body.dataset.view = view;
}

function setPressed(btn, on, onLabel, offLabel) {
  btn.setAttribute('aria-pressed', String(on));
  btn.textContent = on ? onLabel : offLabel;
}

// ---- lobby ------------------------------------------------------------------

async function fillDevices() {
  const { cameras, mics } = await media.devices();
  const fill = (select, list, current, fallback) => {
    select.replaceChildren(...list.map((d, i) => {
      const o = document.createElement('option');
      o.value = d.deviceId;
      o.textContent = d.label || `${fallback} ${i + 1}`;
      o.selected = d.deviceId === current;
      return o;
    }));
    select.disabled = list.length === 0;
  };
  fill($('camera-select'), cameras, media.cameraId, 'Camera');
  fill($('mic-select'), mics, media.micId, 'Microphone');
  $('lobby-flip').hidden = !(await media.canFlip());
}

function showPreview() {
  const v = $('preview');
  v.srcObject = media.videoTrack ? new MediaStream([media.videoTrack]) : null;
  v.hidden = !media.videoTrack;
  v.classList.toggle('mirror', media.facingMode === 'user');
  $('preview-off').hidden = !!media.videoTrack;
  $('preview-off').textContent = initials($('name').value || '?');
  setPressed($('lobby-cam'), lobby.cam && !!media.videoTrack, 'Camera on', 'Camera off');
  setPressed($('lobby-mic'), lobby.mic && !!media.audioTrack, 'Microphone on', 'Microphone off');
}

async function openLobby() {
  show('lobby');
  const token = params.get('token');
  const room = (token && tokenRoom(token)) || params.get('room') || '';
  $('room').value = room;
  $('room').readOnly = !!token;
  $('name').value = localStorage.getItem('throng.name') || '';
  if (lobby.cam) await media.openCamera();
  if (lobby.mic) await media.openMic();
  showPreview();
  await fillDevices();
  if (!token && !config.openJoin) {
    $('lobby-error').textContent = 'This server needs a join link from the organiser of the call.';
  }
  ($('room').value ? $('name') : $('room')).focus();
}

$('lobby-cam').onclick = async () => {
  lobby.cam = !(lobby.cam && media.videoTrack);
  if (lobby.cam) await media.openCamera();
  else media.stopCamera();
  showPreview();
};
$('lobby-mic').onclick = async () => {
  lobby.mic = !(lobby.mic && media.audioTrack);
  if (lobby.mic) await media.openMic();
  else media.stopMic();
  showPreview();
};
$('lobby-flip').onclick = async () => {
  await media.flip();
  lobby.cam = !!media.videoTrack;
  showPreview();
  await fillDevices();
};
$('camera-select').onchange = async (e) => {
  media.chooseCamera(e.target.value);
  if (lobby.cam) await media.openCamera();
  showPreview();
};
$('mic-select').onchange = async (e) => {
  media.chooseMic(e.target.value);
  if (lobby.mic) await media.openMic();
  showPreview();
};
$('name').oninput = () => showPreview();

async function tokenFor(room) {
  const fromLink = params.get('token');
  if (fromLink) return fromLink;
  for (let attempt = 1; ; attempt++) {
    const res = await fetch('/api/join-token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ room }),
    });
    const body = await res.json().catch(() => ({}));
    if (res.ok) return body.token;
    // Too many requests from this address (a crowd behind one NAT): wait as told.
    if (res.status === 429 && attempt < 10) {
      const ms = Math.round((body.retryAfterMs ?? 1000) * (1 + Math.random() / 2));
      $('queue-status').textContent = `Busy; trying again in ${Math.ceil(ms / 1000)} s…`;
      await new Promise((r) => setTimeout(r, ms));
      continue;
    }
    throw new Error(body.error || `cannot get a token (${res.status})`);
  }
}

$('join-form').onsubmit = async (e) => {
  e.preventDefault();
  const room = $('room').value.trim();
  const name = $('name').value.trim();
  if (!room || !name) {
    $('lobby-error').textContent = !room ? 'Enter a room name.' : 'Enter your name.';
    (!room ? $('room') : $('name')).focus();
    return;
  }
  localStorage.setItem('throng.name', name);
  $('join').disabled = true;
  $('lobby-error').textContent = '';
  try {
    const token = await tokenFor(room);
    await startCall(room, name, token);
  } catch (err) {
    $('lobby-error').textContent = err.message;
    show('lobby');
  } finally {
    $('join').disabled = false;
  }
};

// ---- queue and call -----------------------------------------------------------

async function startCall(room, name, token) {
  if (!lobby.cam) media.stopCamera();
  if (!lobby.mic) media.stopMic();
  show('queue');
  $('queue-status').textContent = 'Connecting…';
  $('queue-progress').removeAttribute('value');
  const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  call = new Call({
    wsUrl, room, token, displayName: name, media,
    tilesPerPage: config.tilesPerPage,
    micOn: lobby.mic && !!media.audioTrack,
    relayOnly: params.get('relay') === '1',
    onChange: render,
    onQueued: (q) => {
      const wait = Math.max(1, Math.round(q.estimatedWaitMs / 1000));
      const where = call?.rejoining ? 'Reconnecting: you are' : 'You are';
      $('queue-status').textContent = `${where} number ${q.position} in line. Estimated wait: about ${wait} s.`;
      $('queue-progress').max = Math.max(q.position, Number($('queue-progress').max) || 1);
      $('queue-progress').value = $('queue-progress').max - q.position;
      $('queue').dataset.position = q.position;
    },
    onBusy: ({ retryInMs, attempt }) => {
      $('queue-status').textContent =
        `The event is at capacity right now. Trying again in ${Math.ceil(retryInMs / 1000)} s (attempt ${attempt + 1})…`;
      $('queue').dataset.busy = String(attempt);
    },
  });
  window.throng.call = call;
  $('queue-cancel').onclick = () => call.leave('You left the line.');
  try {
    await call.start();
  } catch (err) {
    call.finish(err.message);
    throw err;
  }
  $('call-title').textContent = room;
  show('call');
  render();
}

// The layer each visible video wants follows its tile's width, reported by the
// layout as it changes (render itself starts no network call).
const tileSizes = new ResizeObserver((entries) => {
  for (const e of entries) {
    const id = e.target.dataset.peer;
    const w = e.contentRect.width;
    if (!call || id === SELF || w <= 0 || !e.target.isConnected) continue;
    call.setTileWidth(id, layerForWidth(w, window.devicePixelRatio || 1));
  }
});

/** The muted marker: an icon that ships with the app (no emoji font needed). */
function mutedIcon() {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '14');
  svg.setAttribute('height', '14');
  svg.setAttribute('aria-hidden', 'true');
  svg.classList.add('muted-icon');
  const path = document.createElementNS(ns, 'path');
  // A microphone struck through.
  path.setAttribute('d', 'M12 2a3 3 0 0 0-3 3v6a3 3 0 0 0 4.9 2.3L9 8.4V5a3 3 0 0 1 6 0v5.6l2 2V5a5 5 0 0 0-5-3zM3.3 2.3 2 3.6l5 5V11a5 5 0 0 0 7.6 4.3l1.5 1.5A7 7 0 0 1 5 11H3a9 9 0 0 0 8 8.9V23h2v-3.1a8.9 8.9 0 0 0 4.5-1.7l2.9 2.9 1.3-1.3zM19 11h-2a6.9 6.9 0 0 1-.5 2.6l1.5 1.5A8.9 8.9 0 0 0 19 11z');
  path.setAttribute('fill', 'currentColor');
  svg.append(path);
  return svg;
}

function tileFor(id) {
  let t = tiles.get(id);
  if (t) return t;
  const el = document.createElement('div');
  el.className = 'tile';
  el.setAttribute('role', 'listitem');
  el.dataset.peer = id;
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true;
  const audio = document.createElement('audio');
  audio.autoplay = true;
  const avatar = document.createElement('div');
  avatar.className = 'avatar';
  avatar.setAttribute('aria-hidden', 'true');
  const name = document.createElement('span');
  name.className = 'name';
  const label = document.createElement('span');
  const muted = mutedIcon();
  name.append(label, muted);
  el.append(video, avatar, name, audio);
  tileSizes.observe(el);
  if (id !== SELF) {
    const pin = document.createElement('button');
    pin.type = 'button';
    pin.className = 'pin';
    pin.onclick = () => call.togglePin(id);
    // Hosts of an event: send a speaker back to the audience.
    const demote = document.createElement('button');
    demote.type = 'button';
    demote.className = 'demote';
    demote.hidden = true;
    demote.textContent = 'To audience';
    demote.onclick = () => guarded(() => call.demote(id));
    el.append(pin, demote);
    t = { el, video, audio, avatar, name: label, muted, pin, demote };
  } else {
    t = { el, video, audio, avatar, name: label, muted };
  }
  tiles.set(id, t);
  return t;
}

function attach(el, track) {
  const current = el.srcObject?.getTracks()[0];
  if ((current?.id ?? null) === (track?.id ?? null)) return;
  el.srcObject = track ? new MediaStream([track]) : null;
  if (track) el.play().catch(() => {});
}

function drawTile(id) {
  const t = tileFor(id);
  let label;
  let videoTrack;
  let audioTrack = null;
  let muted;
  if (id === SELF) {
    label = `${call.displayName} (you)`;
    videoTrack = call.camProducer ? media.videoTrack : null;
    muted = !call.micOn;
    t.video.classList.toggle('mirror', media.facingMode === 'user');
  } else {
    const peer = call.peers.get(id);
    const tr = call.tracksOf(id);
    label = peer.name;
    videoTrack = tr.video;
    audioTrack = tr.audio;
    muted = tr.audioMuted;
    const pinned = call.pinned.includes(id);
    t.pin.setAttribute('aria-pressed', String(pinned));
    t.pin.textContent = pinned ? 'Unpin' : 'Pin';
    t.pin.setAttribute('aria-label', `${pinned ? 'Unpin' : 'Pin'} ${peer.name} ${pinned ? 'from' : 'to'} page one`);
    t.demote.hidden = !(call.role === 'host' && peer.role === 'speaker');
    t.demote.setAttribute('aria-label', `Move ${peer.name} to the audience`);
  }
  attach(t.video, videoTrack);
  attach(t.audio, audioTrack);
  t.video.hidden = !videoTrack;
  t.avatar.hidden = !!videoTrack;
  t.avatar.textContent = initials(label);
  t.name.textContent = label;
  // An SVG element has no `hidden` property: the attribute is what CSS hides.
  t.muted.toggleAttribute('hidden', !muted);
  const speaking = call.activeSpeaker === (id === SELF ? call.peerId : id);
  t.el.classList.toggle('speaking', speaking);
  t.el.setAttribute('aria-label', `${label}${muted ? ', muted' : ''}${videoTrack ? '' : ', camera off'}${speaking ? ', speaking' : ''}`);
  return t;
}

function render() {
  if (!call) return;
  if (call.left) {
    finishCall(call.left);
    return;
  }
  if ($('call').hidden && call.peerId && !call.rejoining) {
    $('call-title').textContent = call.room;
    show('call');
  }
  const pages = call.pages();
  const page = Math.min(call.page, pages.length - 1);
  const ids = pages[page] ?? [];
  $('stage-empty').hidden = ids.length > 0;
  $('grid').hidden = ids.length === 0;
  const grid = $('grid');
  const rect = grid.getBoundingClientRect();
  const { cols, rows } = gridShape(ids.length, rect.width || 800, rect.height || 450);
  grid.style.setProperty('--cols', cols);
  grid.style.setProperty('--rows', rows);
  const els = ids.map((id) => drawTile(id).el);
  const same = els.length === grid.children.length && els.every((el, i) => grid.children[i] === el);
  if (!same) grid.replaceChildren(...els);
  for (const [id, t] of tiles) {
    if (id !== SELF && !call.peers.has(id)) {
      tileSizes.unobserve(t.el);
      t.el.remove();
      tiles.delete(id);
    }
  }

  $('page-label').textContent = `Page ${page + 1} of ${pages.length}`;
  const connected = call.conn === 'connected';
  const everConnected = call.everConnected;
  $('page-prev').disabled = !everConnected || page === 0;
  $('page-next').disabled = !everConnected || page >= pages.length - 1;
  const conn = $('conn');
  conn.dataset.state = call.conn;
  const path = call.mediaPath;
  conn.dataset.path = path;
  const relayed = { 'relay-udp': 'relayed over UDP', 'relay-tcp': 'relayed over TCP', 'relay-tls': 'relayed over TLS' }[path];
  conn.textContent = { connecting: 'Connecting', connected: 'Connected', reconnecting: 'Reconnecting', disconnected: 'Disconnected' }[call.conn]
    + (call.conn === 'connected' && relayed ? ` (${relayed})` : '');
  conn.title = relayed
    ? 'Your network does not let media through directly: it goes through a relay server (TURN).'
    : '';

  // Controls wait for the send transport; mic and camera need it connected right now.
  const mic = $('mic');
  mic.disabled = !connected || !call.canPublish || !media.audioTrack || call.busy.has('mic');
  setPressed(mic, call.micOn, 'Mute', 'Unmute');
  mic.setAttribute('aria-label', call.micOn ? 'Mute microphone' : 'Unmute microphone');
  const cam = $('cam');
  cam.disabled = !connected || !call.canPublish || call.busy.has('cam');
  setPressed(cam, !!call.camProducer, 'Stop camera', 'Start camera');
  $('flip').hidden = $('lobby-flip').hidden;
  $('flip').disabled = !connected || !call.camProducer || call.busy.has('cam');
  $('record').disabled = !everConnected || !!recorder?.stopping;
  setPressed($('record'), !!recorder, 'Stop recording', 'Record');
  $('rec-indicator').hidden = !recorder;
  $('leave').disabled = !everConnected;

  const speaker = call.activeSpeaker && call.peers.get(call.activeSpeaker);
  $('speaker').textContent = speaker ? `Speaking: ${speaker.name}`
    : call.activeSpeaker && call.activeSpeaker === call.peerId ? 'Speaking: you' : '';
  const pinBtn = $('pin-speaker');
  pinBtn.hidden = !speaker || call.pinned.includes(call.activeSpeaker);
  if (speaker) pinBtn.setAttribute('aria-label', `Pin ${speaker.name} to page one`);
  $('call-error').textContent = call.lastError ?? '';
  renderEvent();
}

// ---- an event: audience count, raised hands, the audience list ------------------

const AUDIENCE_PAGE = 100;
/** The audience panel: the page on screen and the cursors that lead to each page so far. */
const audienceView = { open: false, cursors: [null], index: 0, page: null, loading: false };

function renderEvent() {
  const event = call.role !== 'member' || call.audienceCount > 0;
  const audience = call.role === 'audience';
  const host = call.role === 'host';
  const count = $('audience-count');
  count.hidden = !event;
  count.textContent = `${call.audienceCount.toLocaleString('en')} watching`;
  // The audience sends nothing: no microphone or camera controls, a hand instead.
  $('mic').hidden = audience;
  $('cam').hidden = audience;
  const hand = $('raise-hand');
  hand.hidden = !audience;
  setPressed(hand, call.handRaised, 'Lower hand', 'Raise hand');
  hand.disabled = !call.everConnected;
  const toggle = $('audience-toggle');
  toggle.hidden = !event;
  toggle.setAttribute('aria-expanded', String(audienceView.open));
  toggle.textContent = audienceView.open ? 'Hide audience' : 'Audience';
  $('audience-panel').hidden = !audienceView.open;

  const hands = $('hands-panel');
  hands.hidden = !host || call.handsCount === 0;
  if (!hands.hidden) {
    $('hands-list').replaceChildren(...call.hands.map((h) => personRow(h, 'Invite')));
    $('hands-more').textContent = call.handsCount > call.hands.length
      ? `and ${call.handsCount - call.hands.length} more` : '';
  }
  if (audienceView.open) {
    drawAudience();
    // The page on screen follows the audience (promotions, arrivals), at
    // most every 2 s however fast thousands come and go.
    const stale = audienceView.page && audienceView.page.peerCount !== call.audienceCount;
    if (stale && !audienceView.loading && Date.now() - (audienceView.loadedAt ?? 0) > 2000) {
      loadAudience(audienceView.index).catch((e) => call.error(e));
    }
  }
}

/** A person in a list; hosts get a button that brings them on stage. */
function personRow(p, action) {
  const li = document.createElement('li');
  li.dataset.peer = p.peerId;
  const name = document.createElement('span');
  const self = p.peerId === call.peerId;
  name.textContent = self ? `${p.displayName} (you)` : p.displayName;
  li.append(name);
  if (call.role === 'host' && !self) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = action;
    b.setAttribute('aria-label', `Invite ${p.displayName} to the stage`);
    b.onclick = () => guarded(() => call.promote(p.peerId));
    li.append(b);
  }
  return li;
}

function drawAudience() {
  const page = audienceView.page;
  if (!page) return;
  const first = audienceView.index * AUDIENCE_PAGE;
  $('audience-range').textContent = page.peers.length === 0 ? 'Nobody in the audience.'
    : `${first + 1}–${first + page.peers.length} of ${page.peerCount.toLocaleString('en')}`;
  const rows = page.peers.map((p) => personRow(p, 'Invite'));
  $('audience-list').replaceChildren(...rows);
  $('audience-prev').disabled = audienceView.index === 0 || audienceView.loading;
  $('audience-next').disabled = !page.nextCursor || audienceView.loading;
}

/** Loads audience page `index` (only the page on screen is in the document). */
async function loadAudience(index) {
  audienceView.loading = true;
  try {
    const page = await call.listAudience(audienceView.cursors[index]);
    audienceView.page = page;
    audienceView.index = index;
    audienceView.cursors[index + 1] = page.nextCursor ?? null;
    audienceView.cursors.length = index + 2;
    audienceView.loadedAt = Date.now();
  } finally {
    audienceView.loading = false;
    render();
  }
}

$('audience-toggle').onclick = () => guarded(async () => {
  audienceView.open = !audienceView.open;
  render();
  if (audienceView.open) await loadAudience(audienceView.index);
});
$('audience-next').onclick = () => guarded(() => loadAudience(audienceView.index + 1));
$('audience-prev').onclick = () => guarded(() => loadAudience(Math.max(0, audienceView.index - 1)));
$('raise-hand').onclick = () => guarded(() => call.raiseHand(!call.handRaised));

// ---- controls -------------------------------------------------------------------

async function guarded(fn) {
  try {
    call.lastError = null;
    await fn();
  } catch (e) {
    call.error(e);
  }
}

$('mic').onclick = () => guarded(() => call.setMic(!call.micOn));
$('cam').onclick = () => guarded(() => call.setCamera(!call.camProducer));
$('flip').onclick = () => guarded(() => call.flipCamera());
$('page-prev').onclick = () => call.goToPage(call.page - 1);
$('page-next').onclick = () => call.goToPage(call.page + 1);
$('pin-speaker').onclick = () => call.activeSpeaker && call.togglePin(call.activeSpeaker);
$('record').onclick = () => guarded(() => (recorder ? stopRecording() : startRecording()));
$('leave').onclick = () => guarded(async () => {
  await stopRecording();
  await call.leave();
});
document.addEventListener('keydown', (e) => {
  if (!call || $('call').hidden || e.target.closest?.('input, select, textarea')) return;
  if (e.key === 'PageDown') call.goToPage(call.page + 1);
  if (e.key === 'PageUp') call.goToPage(call.page - 1);
});
window.addEventListener('resize', () => render());
// A new network path (Wi-Fi to cellular, VPN up): ICE restarts at once rather
// than waiting for the old path to time out.
window.addEventListener('online', () => call && !call.left && call.restartAllIce());

function recordingSource() {
  const ids = call.pages()[call.page] ?? [];
  const visible = ids.map((id) => {
    const t = tiles.get(id);
    const name = id === SELF ? `${call.displayName} (you)` : call.peers.get(id)?.name ?? '';
    return { video: t && !t.video.hidden ? t.video : null, name, speaking: t?.el.classList.contains('speaking') };
  });
  const audioTracks = [];
  for (const peer of call.peers.values()) {
    const a = call.tracksOf(peer.id).audio;
    if (a) audioTracks.push(a);
  }
  if (call.micOn && media.audioTrack) audioTracks.push(media.audioTrack);
  return { tiles: visible, audioTracks };
}

async function startRecording() {
  const r = new CallRecorder(call.room, recordingSource);
  await r.start();
  recorder = r;
  render();
}

/** Finalises the recording and downloads it; safe to call when not recording. */
async function stopRecording() {
  const r = recorder;
  if (!r || r.stopping) return;
  r.stopping = true;
  render();
  try {
    const { blob, filename } = await r.stop();
    download(blob, filename);
    await deleteRecording(r.id);
  } finally {
    recorder = null;
    render();
  }
}

async function finishCall(reason) {
  if (!$('left').hidden) return;
  if (recorder) await stopRecording().catch((e) => console.error(e));
  tiles.clear();
  $('grid').replaceChildren();
  $('left-reason').textContent = reason;
  $('left-title').textContent = reason.startsWith('You left') ? 'You left the call' : 'Disconnected';
  show('left');
  $('rejoin').focus();
}

$('rejoin').onclick = () => {
  call = null;
  openLobby();
};

// ---- recordings kept from an earlier visit -----------------------------------------

async function offerRecovered() {
  let list = [];
  try {
    list = await listRecordings();
  } catch (e) {
    console.warn('recordings store unavailable', e);
    return;
  }
  const banner = $('recovered');
  banner.hidden = list.length === 0;
  if (list.length === 0) return;
  $('recovered-text').textContent = list.length === 1
    ? 'A recording was interrupted when the page closed. What was recorded is kept here:'
    : `${list.length} recordings were interrupted when the page closed. What was recorded is kept here:`;
  $('recovered-list').replaceChildren(...list.map((r) => {
    const li = document.createElement('li');
    const when = new Date(r.startedAt).toLocaleString();
    const text = document.createElement('span');
    text.textContent = `${r.room}, ${when}`;
    const dl = document.createElement('button');
    dl.type = 'button';
    dl.textContent = 'Download';
    dl.setAttribute('aria-label', `Download the recording of ${r.room} from ${when}`);
    dl.onclick = async () => {
      download(await recordingBlob(r.id), recordingFilename(r.room, r.startedAt));
      await deleteRecording(r.id);
      offerRecovered();
    };
    const discard = document.createElement('button');
    discard.type = 'button';
    discard.textContent = 'Discard';
    discard.setAttribute('aria-label', `Discard the recording of ${r.room} from ${when}`);
    discard.onclick = async () => {
      await deleteRecording(r.id);
      offerRecovered();
    };
    li.append(text, dl, discard);
    return li;
  }));
}

// ---- start ----------------------------------------------------------------------------

window.throng = { call: null, media, render };

async function boot() {
  try {
    const res = await fetch('/api/config');
    if (res.ok) config = { ...config, ...(await res.json()) };
  } catch (e) {
    console.warn('config unavailable, using defaults', e);
  }
  // Recordings are offered only when not already recording in another tab of this visit.
  await offerRecovered();
  await openLobby();
  document.body.dataset.ready = 'true';
}

boot();
