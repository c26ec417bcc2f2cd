// A coordinator dies (SIGKILL) under two people in a call; the load balancer
// had sent both to it. Either it relayed them to the room's host, which keeps
// their sessions, or it hosted the room itself, and the other coordinator
// takes the room over and rebuilds it from the media node. Either way the
// web client resumes on a new socket through the load balancer (now at the
// other coordinator) with the same transports, producers and consumers, and
// video never stops decoding. Measures the
// longest stretch without a new decoded frame around the kill, and the time
// from the socket closing to `resumed`.
import {
  askHarness, check, connected, env, eventually, joinThroughUi, launch, log, newPage, receiveStats,
  scenario, sleep,
} from './lib.mjs';

/** The room as its host serves it (`ownerBefore` until the kill, `ownerAfter` after). */
let ownerUrl = env.ownerBefore;
async function ownerRoom() {
  const res = await fetch(`${ownerUrl}/admin/rooms/${encodeURIComponent(env.room)}`, {
    headers: { 'x-admin-key': env.adminKey },
  });
  if (!res.ok) throw new Error(`owner admin: ${res.status}`);
  return res.json();
}

async function flowing(page, who, otherId) {
  await eventually(`${who} decodes video and receives audio from the other`, async () => {
    const s = (await receiveStats(page))[otherId];
    return { ok: s?.framesDecoded > 0 && s?.audioPackets > 0, s };
  }, { timeoutMs: 30000 });
}

/** Samples the frames decoded of `otherId` every 50 ms, in the page. */
async function startSampling(page, otherId) {
  await page.evaluate((id) => {
    window.__frames = [];
    const tick = async () => {
      const s = (await window.throng.call.receiveStats())[id];
      window.__frames.push([performance.now(), s?.framesDecoded ?? 0]);
      window.__sampler = setTimeout(tick, 50);
    };
    tick();
  }, otherId);
}

/** The longest time since `from` (page clock) in which no new frame was decoded. */
async function longestStall(page, from) {
  return page.evaluate((since) => {
    clearTimeout(window.__sampler);
    const s = window.__frames.filter(([t]) => t >= since);
    let last = s[0];
    let worst = 0;
    for (const [t, f] of s) {
      if (f > last[1]) {
        worst = Math.max(worst, t - last[0]);
        last = [t, f];
      }
    }
    worst = Math.max(worst, s[s.length - 1][0] - last[0]);
    return { worstMs: Math.round(worst), samples: s.length, frames: s[s.length - 1][1] - s[0][1] };
  }, from);
}

function session(page) {
  return page.evaluate(() => {
    const c = window.throng.call;
    const consumers = [];
    for (const p of c.peers.values()) for (const x of p.consumers.values()) consumers.push(x.consumer.id);
    return {
      send: c.sendTransport?.id, recv: c.recvTransport?.id, consumers: consumers.sort(),
      mic: c.publisher.micProducer?.id, cam: c.camProducer?.id,
      resumes: c.resumes ?? 0, rejoins: c.rejoins ?? 0, resuming: !!c.resuming, left: c.left,
      lastResumeMs: c.lastResumeMs, trace: c.trace,
    };
  });
}

await scenario('coordinator-crash', async (cleanup) => {
  const browser = await launch();
  cleanup(() => browser.close());
  const ada = (await newPage(browser, { name: 'ada' })).page;
  const grace = (await newPage(browser, { name: 'grace' })).page;
  await joinThroughUi(ada, { token: env.tokens[0], name: 'Ada' });
  await joinThroughUi(grace, { token: env.tokens[1], name: 'Grace' });
  await connected(ada, 'Ada');
  await connected(grace, 'Grace');
  const adaId = await ada.evaluate(() => window.throng.call.peerId);
  const graceId = await grace.evaluate(() => window.throng.call.peerId);
  await flowing(ada, 'Ada', graceId);
  await flowing(grace, 'Grace', adaId);
  const owner = await ownerRoom();
  check(owner.peers.length === 3, 'the owner hosts both (relayed) and the anchor', owner.peers.map((p) => p.peerId));
  const before = { ada: await session(ada), grace: await session(grace) };
  check(before.ada.consumers.length >= 2 && before.grace.consumers.length >= 2,
    'each consumes the other\'s audio and video', { ada: before.ada.consumers, grace: before.grace.consumers });

  await startSampling(ada, graceId);
  await startSampling(grace, adaId);
  await sleep(1500);
  const killedAt = {
    ada: await ada.evaluate(() => performance.now()),
    grace: await grace.evaluate(() => performance.now()),
  };
  log('SIGKILL to the coordinator both browsers reach the room through');
  await askHarness('kill-coordinator', 'killed');
  ownerUrl = env.ownerAfter;

  for (const [page, who] of [[ada, 'ada'], [grace, 'grace']]) {
    await eventually(`${who} resumed its session and shows Connected`, async () => {
      const s = await session(page);
      const state = await page.locator('#conn').getAttribute('data-state');
      return { ok: s.resumes === 1 && !s.resuming && state === 'connected', s: { ...s, trace: s.trace.slice(-8) }, state };
    }, { timeoutMs: 20000 });
  }
  // Media after the resume, for the stall figure.
  await sleep(2000);
  for (const [page, who, other] of [[ada, 'ada', graceId], [grace, 'grace', adaId]]) {
    const after = await session(page);
    const b = before[who];
    check(after.rejoins === 0 && !after.left, `${who} did not re-join (resumed)`, after);
    check(after.send === b.send && after.recv === b.recv, `${who} kept its transports`, { before: [b.send, b.recv], after: [after.send, after.recv] });
    check(after.mic === b.mic && after.cam === b.cam, `${who} kept its producers`);
    check(JSON.stringify(after.consumers) === JSON.stringify(b.consumers), `${who} kept its consumers`, { before: b.consumers, after: after.consumers });
    check(after.lastResumeMs < 3000, `${who}: signalling back within 3 s (${after.lastResumeMs} ms)`, after.trace.slice(-8));
    const stall = await longestStall(page, killedAt[who] - 1000);
    log(`figure: ${who} resumed in ${after.lastResumeMs} ms; longest time without a new frame from ${other}, from 1 s before the kill to 2 s after the resume: ${stall.worstMs} ms (${stall.frames} frames, ${stall.samples} samples)`);
    check(stall.worstMs < 1000, `${who}'s video from the other never stopped (longest gap ${stall.worstMs} ms)`, stall);
  }
  const room = await ownerRoom();
  check(room.peers.map((p) => p.peerId).sort().join() === env.hostedAfter, `the room's host now hosts ${env.hostedAfter}`, room.peers.map((p) => p.peerId));
  // Requests work on the resumed sessions: mute and unmute through the new path.
  await ada.getByRole('button', { name: 'Mute microphone', exact: true }).click();
  await eventually('Grace sees Ada muted', async () => {
    const p = await grace.evaluate((id) => [...window.throng.call.peers.get(id).producers.values()].find((x) => x.kind === 'audio')?.paused, adaId);
    return p === true;
  });
  for (const page of [ada, grace]) await page.evaluate(() => window.throng.call.leave());
});
