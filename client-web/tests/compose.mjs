// The docker-compose stack as a person meets it: two browsers open the proxy's
// URL, join one room, one lands on each media node (seen through the admin
// API), they see and hear each other; then the node carrying one of them is
// stopped (`docker compose stop`, asked of the Rust side on stdout), that one
// re-joins on the other node by itself and media flows both ways again.
// Before that, a third browser that may use nothing but TURN relays
// (`?relay=1`) joins through the stack's coturn, sees and hears both and is
// heard, and leaves.
import {
  admin, check, connected, env, eventually, joinThroughUi, launch, log, newPage, receiveStats,
  scenario, stopNode,
} from './lib.mjs';

async function flowing(page, who, otherId) {
  const a = await eventually(`${who} decodes video and receives audio from the other`, async () => {
    const s = (await receiveStats(page))[otherId];
    return { ok: s?.framesDecoded > 0 && s?.audioPackets > 0, s };
  }, { timeoutMs: 30000 });
  await new Promise((r) => setTimeout(r, 2000));
  const b = (await receiveStats(page))[otherId];
  check(b.framesDecoded > a.s.framesDecoded && b.audioPackets > a.s.audioPackets,
    `${who} keeps receiving (${a.s.framesDecoded} -> ${b.framesDecoded} frames, ${a.s.audioPackets} -> ${b.audioPackets} audio packets)`);
}

/** peerId -> nodeId, once the room's owner (behind the proxy's round robin) answers with both peers. */
async function nodesOfPeers(ids) {
  const seen = await eventually('the admin API shows both participants and their nodes', async () => {
    const room = await admin(`/admin/rooms/${encodeURIComponent(env.room)}`);
    const routerNode = new Map((room.routers ?? []).map((r) => [r.routerId, r.nodeId]));
    const map = Object.fromEntries((room.peers ?? []).map((p) => [p.peerId, routerNode.get(p.routerId)]));
    return { ok: ids.every((id) => map[id]), map };
  }, { timeoutMs: 20000, everyMs: 200 });
  return seen.map;
}

await scenario('compose', async (cleanup) => {
  const browser = await launch();
  cleanup(() => browser.close());
  const ada = (await newPage(browser, { name: 'ada' })).page;
  const grace = (await newPage(browser, { name: 'grace' })).page;
  await joinThroughUi(ada, { token: env.tokens[0], name: 'Ada' });
  await connected(ada, 'Ada');
  await joinThroughUi(grace, { token: env.tokens[1], name: 'Grace' });
  await connected(grace, 'Grace');
  const adaId = await ada.evaluate(() => window.throng.call.peerId);
  const graceId = await grace.evaluate(() => window.throng.call.peerId);

  const before = await nodesOfPeers([adaId, graceId]);
  check(before[adaId] !== before[graceId], `one participant on each media node (${JSON.stringify(before)})`);
  await flowing(ada, 'Ada', graceId);
  await flowing(grace, 'Grace', adaId);

  // Through the TURN relay: Linus's browser may not reach the media nodes
  // directly; coturn relays to the address they announce (PUBLIC_IP).
  const linus = (await newPage(browser, { name: 'linus' })).page;
  await linus.goto(`${env.url}/?token=${encodeURIComponent(env.tokens[2])}&relay=1`);
  await linus.waitForSelector('body[data-ready="true"]', { timeout: 20000 });
  await linus.getByLabel('Your name').fill('Linus');
  await linus.getByRole('button', { name: 'Join' }).click();
  await eventually('Linus shows Connected through the TURN relay', async () => {
    const conn = linus.locator('#conn');
    const state = await conn.getAttribute('data-state');
    const path = await conn.getAttribute('data-path');
    return { ok: state === 'connected' && path?.startsWith('relay-'), state, path };
  }, { timeoutMs: 60000 });
  const linusId = await linus.evaluate(() => window.throng.call.peerId);
  await flowing(linus, 'Linus (relayed) from Ada', adaId);
  await flowing(linus, 'Linus (relayed) from Grace', graceId);
  await flowing(ada, 'Ada from Linus (relayed)', linusId);
  await linus.getByRole('button', { name: 'Leave' }).click();
  await eventually('Linus left the room', async () => {
    const room = await admin(`/admin/rooms/${encodeURIComponent(env.room)}`);
    const ids = (room.peers ?? []).map((p) => p.peerId);
    return { ok: !ids.includes(linusId) && ids.length === 2, ids };
  }, { timeoutMs: 20000 });

  const moving = before[adaId];
  log(`stopping ${moving}, which carries Ada`);
  await stopNode(moving, { timeoutMs: 60000 });
  await eventually('Ada re-joined on the other node and shows Connected', async () => {
    const state = await ada.locator('#conn').getAttribute('data-state');
    const call = await ada.evaluate(() => ({
      rejoins: window.throng.call.rejoins ?? 0, rejoining: !!window.throng.call.rejoining, left: window.throng.call.left,
    }));
    return { ok: state === 'connected' && call.rejoins >= 1 && !call.rejoining && !call.left, state, call };
  }, { timeoutMs: 60000 });
  await connected(grace, 'Grace');
  // A re-join may come back under a new peer id.
  const ada2 = await ada.evaluate(() => window.throng.call.peerId);
  const grace2 = await grace.evaluate(() => window.throng.call.peerId);
  const after = await nodesOfPeers([ada2, grace2]);
  check(after[ada2] !== moving && after[grace2] !== moving,
    `nobody is left on ${moving} (${JSON.stringify(after)})`);
  await flowing(ada, 'Ada (after the move)', grace2);
  await flowing(grace, 'Grace (after the move)', ada2);
});
