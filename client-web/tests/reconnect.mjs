// Reconnecting. (1) The network changes ('online' event): both transports
// restart ICE and media keeps flowing. (2) The media node hosting the room
// goes away (stopped by the Rust side on request): the coordinator tells both
// browsers to reconnect, they re-join on their own, land on the other node and
// see and hear each other again, without anyone clicking anything.
import {
  admin, check, connected, env, eventually, joinThroughUi, launch, log, newPage, receiveStats,
  scenario, stopNode,
} from './lib.mjs';

async function flowing(page, who, otherId) {
  const a = await eventually(`${who} decodes video and receives audio from the other`, async () => {
    const all = await receiveStats(page);
    const s = all[otherId];
    const peers = await page.evaluate(() => [...window.throng.call.peers.values()].map((p) => ({
      id: p.id, producers: [...p.producers.keys()].length, consumers: p.consumers.size,
    })));
    const trace = await page.evaluate(() => window.throng.call.trace);
    return { ok: s?.framesDecoded > 0 && s?.audioPackets > 0, s, peers, all, trace, server: (await admin(`/admin/rooms/${env.room}`)).peers?.map((p) => p.peerId) };
  }, { timeoutMs: 30000 });
  await new Promise((r) => setTimeout(r, 2000));
  const b = (await receiveStats(page))[otherId];
  check(b.framesDecoded > a.s.framesDecoded, `${who} keeps decoding (${a.s.framesDecoded} -> ${b.framesDecoded} frames)`);
}

async function roomNodes() {
  const room = await admin(`/admin/rooms/${encodeURIComponent(env.room)}`);
  return [...new Set(room.routers.map((r) => r.nodeId))];
}

await scenario('reconnect', async (cleanup) => {
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

  // (1) Network change: ICE restart on both transports, media continues.
  await ada.evaluate(() => window.dispatchEvent(new Event('online')));
  await eventually('Ada restarted ICE on both transports', async () => {
    const n = await ada.evaluate(() => window.throng.call.iceRestarts ?? 0);
    return { ok: n === 2, n };
  });
  await connected(ada, 'Ada after the ICE restart');
  await flowing(grace, "Grace (after Ada's ICE restart)", adaId);
  await flowing(ada, 'Ada (after her ICE restart)', graceId);

  // (2) The room's media node goes away.
  const [hosting] = await roomNodes();
  log(`room is on ${hosting}; stopping it`);
  await stopNode(hosting);
  for (const [page, who] of [[ada, 'Ada'], [grace, 'Grace']]) {
    await eventually(`${who} re-joined on the other node and shows Connected`, async () => {
      const state = await page.locator('#conn').getAttribute('data-state');
      const call = await page.evaluate(() => ({
        rejoins: window.throng.call.rejoins ?? 0, rejoining: !!window.throng.call.rejoining, left: window.throng.call.left,
        reason: window.throng.call.rejoinReason,
      }));
      return { ok: state === 'connected' && call.rejoins === 1 && !call.rejoining && !call.left, state, call };
    }, { timeoutMs: 40000 });
  }
  const nodes = await roomNodes();
  check(nodes.length === 1 && nodes[0] !== hosting, `the room now lives on ${nodes[0]}`, nodes);
  await flowing(ada, 'Ada (after the move)', graceId);
  await flowing(grace, 'Grace (after the move)', adaId);
  check(await ada.locator('#call').isVisible() && await grace.locator('#call').isVisible(),
    'both stayed in the call view throughout (no click needed)');
});
