// Browser side of the worker round trip (media-node/tests/browser_roundtrip.rs):
// a real DTLS/SRTP peer. Sends the fake camera and microphone into a mediasoup
// WebRtcTransport, consumes both back through the worker, and reports what
// arrived: decoded video frames, audio packets, audio level, the SRTP cipher.
import { Device } from 'mediasoup-client';

async function rpc(method, params = {}) {
  const res = await fetch('/rpc', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ method, params }),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(`${method}: ${body.error}`);
  return body;
}

function wireTransport(transport) {
  transport.on('connect', ({ dtlsParameters }, callback, errback) => {
    rpc('connect', { transportId: transport.id, dtlsParameters }).then(() => callback(), errback);
  });
  transport.on('produce', ({ kind, rtpParameters }, callback, errback) => {
    rpc('produce', { transportId: transport.id, kind, rtpParameters })
      .then(({ id }) => callback({ id }), errback);
  });
}

async function statsOf(transport) {
  const out = { inbound: {}, outbound: {}, srtpCipher: null, dtlsState: null };
  const report = await transport.getStats();
  for (const s of report.values()) {
    // mediasoup-client adds a receive-only "probator" m-section (SSRC 1234)
    // for the worker's bandwidth probing: padding, never decoded. It is an
    // inbound-rtp of kind video too, and when it came last in the report it
    // stood in for the real stream (a rare "0 frames decoded" with its PLIs).
    if (s.type === 'inbound-rtp' && (s.mid === 'probator' || s.ssrc === 1234)) continue;
    if (s.type === 'inbound-rtp') {
      out.inbound[s.kind] = {
        packetsReceived: s.packetsReceived ?? 0,
        packetsLost: s.packetsLost ?? 0,
        framesDecoded: s.framesDecoded ?? 0,
        // For a failure's diagnosis: what the receiver asked for and got.
        framesReceived: s.framesReceived ?? 0,
        keyFramesDecoded: s.keyFramesDecoded ?? 0,
        pliCount: s.pliCount ?? 0,
        firCount: s.firCount ?? 0,
        nackCount: s.nackCount ?? 0,
        bytesReceived: s.bytesReceived ?? 0,
        packetsDiscarded: s.packetsDiscarded ?? 0,
        ssrc: s.ssrc,
      };
    } else if (s.type === 'outbound-rtp') {
      const prev = out.outbound[s.kind] ?? { packetsSent: 0 };
      out.outbound[s.kind] = { packetsSent: prev.packetsSent + (s.packetsSent ?? 0) };
    } else if (s.type === 'transport') {
      out.srtpCipher = s.srtpCipher ?? null;
      out.dtlsState = s.dtlsState ?? null;
      out.transportPacketsReceived = s.packetsReceived ?? null;
      out.transportBytesReceived = s.bytesReceived ?? null;
    }
  }
  return out;
}

window.runRoundtrip = async (seconds) => {
  const device = new Device();
  await device.load({ routerRtpCapabilities: await rpc('routerRtpCapabilities') });

  const send = device.createSendTransport(await rpc('createTransport'));
  wireTransport(send);
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: true,
    video: { width: 640, height: 480, frameRate: 30 },
  });
  const audioProducer = await send.produce({ track: stream.getAudioTracks()[0] });
  const videoProducer = await send.produce({ track: stream.getVideoTracks()[0] });

  const recv = device.createRecvTransport(await rpc('createTransport'));
  wireTransport(recv);
  const consumers = {};
  for (const producer of [audioProducer, videoProducer]) {
    const params = await rpc('consume', {
      transportId: recv.id,
      producerId: producer.id,
      rtpCapabilities: device.rtpCapabilities,
    });
    const consumer = await recv.consume(params);
    // Server-side consumers are created paused; the client resumes once ready.
    await rpc('resume', { consumerId: consumer.id });
    consumers[consumer.kind] = consumer;
  }

  // Audio content: Chromium feeds WebAudio from a remote track only while the
  // track plays in a media element, so play it muted and read an AnalyserNode.
  const audioEl = document.createElement('audio');
  audioEl.muted = true;
  audioEl.srcObject = new MediaStream([consumers.audio.track]);
  document.body.appendChild(audioEl);
  await audioEl.play();
  const videoEl = document.createElement('video');
  videoEl.muted = true;
  videoEl.srcObject = new MediaStream([consumers.video.track]);
  document.body.appendChild(videoEl);
  await videoEl.play();
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 2048;
  ctx.createMediaStreamSource(new MediaStream([consumers.audio.track])).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let audioPeak = 0;

  // Media may take a moment to start (DTLS, the first keyframe after the
  // consumer is resumed), longer on a loaded machine: wait for the first
  // decoded frame and audio packets (at most 20 s), then measure the window.
  const startBy = performance.now() + 20000;
  for (;;) {
    const s = await statsOf(recv);
    const started = (s.inbound.video?.framesDecoded ?? 0) > 0 && (s.inbound.audio?.packetsReceived ?? 0) > 0;
    if (started || performance.now() > startBy) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const first = await statsOf(recv);
  const deadline = performance.now() + seconds * 1000;
  while (performance.now() < deadline) {
    analyser.getFloatTimeDomainData(samples);
    for (const v of samples) audioPeak = Math.max(audioPeak, Math.abs(v));
    await new Promise((r) => setTimeout(r, 50));
  }
  const last = await statsOf(recv);
  const sent = await statsOf(send);

  return {
    producerIds: { audio: audioProducer.id, video: videoProducer.id },
    consumerIds: { audio: consumers.audio.id, video: consumers.video.id },
    sendConnectionState: send.connectionState,
    recvConnectionState: recv.connectionState,
    first,
    last,
    sent,
    audioPeak,
  };
};

window.roundtripReady = true;
