// Three people join one room through the lobby; each must receive the other
// two's video (frames decoded, increasing) and audio (packets increasing, and
// real sound: the fake microphone's beep read with an AnalyserNode).
import {
  admin, audioPeak, check, connected, env, eventually, joinThroughUi, launch, log, newPage,
  receiveStats, scenario, sleep,
} from './lib.mjs';

await scenario('three browsers', async (cleanup) => {
  const browser = await launch();
  cleanup(() => browser.close());
  const names = ['Ada', 'Grace', 'Linus'];
  const pages = [];
  for (const [i, name] of names.entries()) {
    const { page } = await newPage(browser, { name, viewport: { width: 1280, height: 720 } });
    await joinThroughUi(page, { token: env.tokens[i], name });
    pages.push(page);
  }
  for (const [i, page] of pages.entries()) await connected(page, names[i]);

  // Each saw its place in line and an estimate while being admitted.
  for (const [i, page] of pages.entries()) {
    const seen = await page.evaluate(() => window.__queueSeen);
    check(seen.some((t) => /^You are number \d+ in line\. Estimated wait: about \d+ s\.$/.test(t)),
      `${names[i]} was shown a place in line and an estimated wait`, seen);
  }

  // Everyone sees three tiles: themselves and the other two.
  for (const [i, page] of pages.entries()) {
    await eventually(`${names[i]} shows 3 tiles`, async () => (await page.locator('#grid .tile').count()) === 3);
  }

  // Media flows both ways for every pair.
  const first = [];
  for (const [i, page] of pages.entries()) {
    first.push(await eventually(`${names[i]} decodes video and receives audio from both others`, async () => {
      const s = await receiveStats(page);
      const peers = Object.values(s);
      return { ok: peers.length === 2 && peers.every((p) => p.framesDecoded > 0 && p.audioPackets > 0), s };
    }, { timeoutMs: 30000 }));
  }
  await sleep(3000);
  for (const [i, page] of pages.entries()) {
    const before = first[i].s;
    const after = await receiveStats(page);
    for (const [id, p] of Object.entries(after)) {
      check(p.framesDecoded > before[id].framesDecoded && p.audioPackets > before[id].audioPackets,
        `${names[i]} keeps receiving from ${p.name} (frames ${before[id].framesDecoded} -> ${p.framesDecoded}, audio packets ${before[id].audioPackets} -> ${p.audioPackets})`);
    }
  }

  // Real sound: the beep of Grace's fake microphone, heard at Ada's.
  const gracePeer = await pages[1].evaluate(() => window.throng.call.peerId);
  const peak = await eventually('Ada hears Grace (AnalyserNode peak > 0.05)', async () => {
    const p = await audioPeak(pages[0], gracePeer);
    return { ok: p > 0.05, p };
  }, { timeoutMs: 20000 });
  log(`audio peak at Ada from Grace: ${peak.p.toFixed(3)}`);

  // Simulcast: Ada sends three VP8 layers; the layer Grace asks for follows
  // the size of Ada's tile on Grace's screen.
  const layers = await pages[0].evaluate(async () => {
    const report = await window.throng.call.camProducer.getStats();
    return [...report.values()].filter((s) => s.type === 'outbound-rtp' && s.kind === 'video')
      .map((s) => ({ rid: s.rid, width: s.frameWidth ?? 0, active: s.active }));
  });
  check(layers.length === 3 && new Set(layers.map((l) => l.rid)).size === 3, 'Ada sends 3 simulcast layers', layers);
  const adaPeer = await pages[0].evaluate(() => window.throng.call.peerId);
  const graceView = async () => {
    const room = await admin(`/admin/rooms/${encodeURIComponent(env.room)}`);
    const grace = room.peers.find((p) => p.peerId === gracePeer);
    const adaVideo = room.peers.find((p) => p.peerId === adaPeer).producers.find((p) => p.kind === 'video');
    return grace.consumers.find((c) => c.producerId === adaVideo.producerId)?.preferredSpatialLayer;
  };
  const wide = await eventually('Grace at 1280x720 (tiles ~630 px wide) asks for the top layer of Ada', async () => {
    const l = await graceView();
    return { ok: l === 2, l };
  });
  await pages[1].setViewportSize({ width: 480, height: 700 });
  await eventually('Grace at 480x700 asks for a lower layer', async () => {
    const l = await graceView();
    return { ok: l !== null && l < wide.l, l };
  });

  // The server agrees: 3 peers, each with 4 resumed consumers.
  const room = await admin(`/admin/rooms/${encodeURIComponent(env.room)}`);
  check(room.peers.length === 3 && room.peers.every((p) => p.consumers.length === 4 && p.consumers.every((c) => !c.paused)),
    'server: 3 peers, each consuming 4 streams, none paused',
    room.peers.map((p) => ({ n: p.displayName, c: p.consumers.map((c) => c.paused) })));
});
