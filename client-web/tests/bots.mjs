// Headless participants that send real media without a browser: msc-node
// (mediasoup-client on werift) speaking the coordinator's signalling over a
// WebSocket, each producing Opus and VP8. One ffmpeg encodes a test pattern and
// a tone to RTP on loopback; every bot forwards those packets into its own
// producers (werift rewrites SSRC, payload type, sequence numbers and
// timestamps per sender). ffmpeg sends a keyframe every 2 s because a relayed
// stream cannot answer keyframe requests.
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import WebSocket from 'ws';
import msc from 'msc-node';
import { MediaStreamTrack, RTCRtpCodecParameters } from 'werift';
import { log } from './lib.mjs';

const { Device } = msc;

function udpSocket() {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, '127.0.0.1', () => resolve(s));
  });
}

/** One ffmpeg producing VP8 + Opus RTP; `onVideo(buf)`, `onAudio(buf)` get every packet. */
export async function startSource({ width = 320, height = 180, fps = 15 } = {}) {
  const video = await udpSocket();
  const audio = await udpSocket();
  const listeners = { video: new Set(), audio: new Set() };
  video.on('message', (b) => { for (const f of listeners.video) f(b); });
  audio.on('message', (b) => { for (const f of listeners.audio) f(b); });
  const args = [
    '-hide_banner', '-loglevel', 'error', '-re',
    '-f', 'lavfi', '-i', `testsrc2=size=${width}x${height}:rate=${fps}`,
    '-f', 'lavfi', '-i', 'sine=frequency=660:sample_rate=48000:beep_factor=4',
    '-map', '0:v', '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '250k',
    '-g', String(fps * 2), '-keyint_min', String(fps * 2), '-payload_type', '101', '-ssrc', '1111',
    '-f', 'rtp', `rtp://127.0.0.1:${video.address().port}?pkt_size=1200`,
    '-map', '1:a', '-c:a', 'libopus', '-b:a', '32k', '-ar', '48000', '-ac', '2', '-payload_type', '100', '-ssrc', '2222',
    '-f', 'rtp', `rtp://127.0.0.1:${audio.address().port}`,
  ];
  const ffmpeg = spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  ffmpeg.stderr.on('data', (d) => log(`[ffmpeg] ${d.toString().trim()}`));
  return {
    listeners,
    stop() {
      ffmpeg.kill('SIGKILL');
      video.close();
      audio.close();
    },
  };
}

function request(ws, pending, type, fields = {}) {
  const reqId = String(pending.next++);
  return new Promise((resolve, reject) => {
    pending.map.set(reqId, { resolve, reject });
    ws.send(JSON.stringify({ type, reqId, ...fields }));
  });
}

/** A bot that joins `room` with `token` as `name` and sends audio and video until stopped. */
export async function startBot({ wsUrl, token, name, room, source }) {
  const ws = new WebSocket(wsUrl);
  const pending = { next: 1, map: new Map() };
  await new Promise((resolve, reject) => {
    ws.once('error', reject);
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString());
      if (m.type === 'welcome') return resolve();
      const p = m.reqId !== undefined && pending.map.get(m.reqId);
      if (!p || m.type === 'queued') return;
      pending.map.delete(m.reqId);
      if (m.type === 'error') p.reject(new Error(`${name}: ${m.code}: ${m.message}`));
      else p.resolve(m.type === 'joined' ? m : m.data);
    });
  });
  const joined = await request(ws, pending, 'join', { room, displayName: name, token });
  const device = new Device({
    codecs: {
      audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2 })],
      video: [new RTCRtpCodecParameters({
        mimeType: 'video/VP8', clockRate: 90000,
        rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }],
      })],
    },
    headerExtensions: { audio: [], video: [] },
  });
  await device.load({ routerRtpCapabilities: joined.routerRtpCapabilities });
  const params = await request(ws, pending, 'createTransport', { direction: 'send' });
  const transport = device.createSendTransport({
    ...params,
    // msc-node follows an older mediasoup-client that reads a candidate's `ip`
    // (mediasoup now says `address`).
    iceCandidates: params.iceCandidates.map((c) => ({ ...c, ip: c.ip ?? c.address })),
    additionalSettings: { iceAdditionalHostAddresses: ['127.0.0.1'] },
  });
  transport.on('connect', ({ dtlsParameters }, ok, fail) => {
    request(ws, pending, 'connectTransport', { transportId: transport.id, dtlsParameters }).then(() => ok(), fail);
  });
  transport.on('produce', ({ kind, rtpParameters, appData }, ok, fail) => {
    request(ws, pending, 'produce', { transportId: transport.id, kind, rtpParameters, source: appData.source })
      .then(({ id }) => ok({ id }), fail);
  });
  const connected = new Promise((resolve, reject) => {
    transport.on('connectionstatechange', (s) => {
      if (s === 'connected') resolve();
      if (s === 'failed') reject(new Error(`${name}: transport failed`));
    });
  });
  const audioTrack = new MediaStreamTrack({ kind: 'audio' });
  const videoTrack = new MediaStreamTrack({ kind: 'video' });
  const onAudio = (b) => audioTrack.writeRtp(b);
  const onVideo = (b) => videoTrack.writeRtp(b);
  source.listeners.audio.add(onAudio);
  source.listeners.video.add(onVideo);
  await transport.produce({ track: audioTrack, appData: { source: 'mic' } });
  await transport.produce({ track: videoTrack, appData: { source: 'camera' } });
  await connected;
  return {
    peerId: joined.peerId,
    name,
    stop() {
      source.listeners.audio.delete(onAudio);
      source.listeners.video.delete(onVideo);
      transport.close();
      ws.close();
    },
  };
}
