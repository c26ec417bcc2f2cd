// One browser and twelve bots that send real media (msc-node + ffmpeg): 13
// people, 12 tiles per page. Page one shows you and eleven bots; the twelfth
// bot is on page two, and its consumers exist on the server but stay paused
// (nothing sent) until the browser pages to it; then frames flow and the
// page-one consumers pause. Pinning brings a peer to page one. The screenshot of
// the 13-person call goes to docs/screenshots/.
import path from 'node:path';
import {
  check, connected, env, eventually, joinThroughUi, launch, log, newPage, receiveStats, scenario,
  serverRoom, sleep,
} from './lib.mjs';
import { startBot, startSource } from './bots.mjs';

const BOTS = 12;

await scenario('paging', async (cleanup) => {
  const wsUrl = `${env.url.replace(/^http/, 'ws')}/ws`;
  const source = await startSource();
  cleanup(() => source.stop());
  const bots = [];
  for (let i = 0; i < BOTS; i++) {
    const name = `Bot ${String(i + 1).padStart(2, '0')}`;
    bots.push(await startBot({ wsUrl, token: env.tokens[i + 1], name, room: env.room, source }));
  }
  cleanup(() => bots.forEach((b) => b.stop()));
  log(`${BOTS} bots joined and sending`);

  const browser = await launch();
  cleanup(() => browser.close());
  const { page } = await newPage(browser, { name: 'organiser', viewport: { width: 1440, height: 900 } });
  await joinThroughUi(page, { token: env.tokens[0], name: 'Organiser' });
  await connected(page, 'the browser');
  const me = await page.evaluate(() => window.throng.call.peerId);
  const last = bots[BOTS - 1];
  const firstEleven = bots.slice(0, BOTS - 1);

  await eventually('page one shows 12 tiles of 13 people, page label says 2 pages', async () => {
    const tiles = await page.locator('#grid .tile').count();
    const label = await page.locator('#page-label').textContent();
    return { ok: tiles === 12 && label === 'Page 1 of 2', tiles, label };
  });
  const onPage = await page.$$eval('#grid .tile', (els) => els.map((e) => e.dataset.peer));
  check(!onPage.includes(last.peerId) && firstEleven.every((b) => onPage.includes(b.peerId)),
    'page one: you and Bot 01..Bot 11; Bot 12 is not on it', onPage);

  // Server state through the admin API.
  const consumersOf = async () => {
    const peers = await serverRoom();
    const mine = peers.find((p) => p.peerId === me);
    const by = {};
    for (const c of mine?.consumers ?? []) (by[c.producerPeerId] ??= []).push(c);
    return by;
  };
  const s1 = await eventually('server: Bot 01..11 consumers resumed and sending, Bot 12 consumers exist and are paused', async () => {
    const by = await consumersOf();
    const okOn = firstEleven.every((b) => by[b.peerId]?.length === 2 && by[b.peerId].every((c) => !c.paused && c.packetsSent > 0));
    const okOff = by[last.peerId]?.length === 2 && by[last.peerId].every((c) => c.paused);
    const on = Object.fromEntries(firstEleven.map((b) => [b.name, (by[b.peerId] ?? []).map((c) => `${c.paused ? 'paused' : 'live'}:${c.packetsSent}`)]));
    return { ok: okOn && okOff, off: by[last.peerId], on };
  }, { timeoutMs: 30000 });
  await sleep(2000);
  const still = (await consumersOf())[last.peerId];
  check(still.every((c, i) => c.paused && c.packetsSent === s1.off.find((x) => x.consumerId === c.consumerId).packetsSent),
    'server: nothing is sent for Bot 12 while it is off the page', still);

  await eventually('the browser decodes video from all 11 bots on page one', async () => {
    const s = await receiveStats(page);
    const n = firstEleven.filter((b) => s[b.peerId]?.framesDecoded > 0).length;
    return { ok: n === 11, n };
  }, { timeoutMs: 30000 });
  // Only the browser sends audio levels (the bots' werift senders do not), so
  // the room's dominant speaker is the browser's beeping fake microphone.
  await eventually('the active speaker is named and its tile highlighted', async () => {
    const text = await page.locator('#speaker').textContent();
    const lit = await page.locator('#grid .tile.speaking').count();
    return { ok: text.startsWith('Speaking:') && lit === 1, text, lit };
  }, { timeoutMs: 20000 });
  await sleep(1000);
  await page.screenshot({ path: path.join(env.screenshots, 'call-13-people.png') });
  log('screenshot: docs/screenshots/call-13-people.png');

  // Page two: Bot 12 alone; its consumers resume and frames flow.
  await page.getByRole('button', { name: 'Next page' }).click();
  await eventually('page two shows Bot 12', async () => {
    const ids = await page.$$eval('#grid .tile', (els) => els.map((e) => e.dataset.peer));
    return ids.length === 1 && ids[0] === last.peerId;
  });
  await eventually('server: Bot 12 consumers resumed and sending; page-one consumers paused', async () => {
    const by = await consumersOf();
    const on = by[last.peerId]?.every((c) => !c.paused && c.packetsSent > 0);
    const off = firstEleven.every((b) => by[b.peerId]?.every((c) => c.paused));
    return { ok: on && off, bot12: by[last.peerId] };
  }, { timeoutMs: 20000 });
  const f1 = await eventually('the browser decodes Bot 12 video', async () => {
    const f = (await receiveStats(page))[last.peerId]?.framesDecoded ?? 0;
    return { ok: f > 0, f };
  }, { timeoutMs: 20000 });
  await sleep(2000);
  const f2 = (await receiveStats(page))[last.peerId].framesDecoded;
  check(f2 > f1.f, `Bot 12 frames keep coming (${f1.f} -> ${f2})`);

  // Pin Bot 12: back to page one, second tile; Bot 11 moves to page two.
  await page.getByRole('button', { name: 'Pin Bot 12 to page one' }).click();
  await eventually('pinned Bot 12 is on page one next to you', async () => {
    const ids = await page.$$eval('#grid .tile', (els) => els.map((e) => e.dataset.peer));
    return { ok: ids.length === 12 && ids[1] === last.peerId && !ids.includes(bots[BOTS - 2].peerId), ids };
  });
  await eventually('server: Bot 12 resumed, Bot 11 paused after the pin', async () => {
    const by = await consumersOf();
    return by[last.peerId]?.every((c) => !c.paused) && by[bots[BOTS - 2].peerId]?.every((c) => c.paused);
  });
});
