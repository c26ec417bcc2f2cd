// An event in headless Chromium: a host and an audience member in browsers,
// the load generator filling the audience (300 signalling participants) and
// a presenter with real media. The audience member sees the stage (host and
// presenter, decoding their video), not itself, the audience count, and
// pages through the audience list 100 at a time; raises a hand; the host
// sees it, invites them, and the promoted member's camera reaches the host
// without a re-join; the host sends them back to the audience and their
// producers close. Screenshots: event-audience.png, event-host.png.
import path from 'node:path';
import {
  askHarness, check, connected, env, eventually, joinThroughUi, launch, log, newPage, receiveStats,
  scenario, serverRoom, sleep,
} from './lib.mjs';

const LOAD = 300;

await scenario('event', async (cleanup) => {
  const browser = await launch();
  cleanup(() => browser.close());
  const { page: host } = await newPage(browser, { name: 'host', viewport: { width: 1440, height: 900 } });
  await joinThroughUi(host, { token: env.tokens[0], name: 'Hedy Host' });
  await connected(host, 'the host');
  const { page: alice } = await newPage(browser, { name: 'alice', viewport: { width: 1280, height: 800 } });
  await joinThroughUi(alice, { token: env.tokens[1], name: 'Alice Audience' });
  await connected(alice, 'the audience member');
  const hostId = await host.evaluate(() => window.throng.call.peerId);
  const aliceId = await alice.evaluate(() => window.throng.call.peerId);

  await eventually('the audience member sees the host on stage and not itself; no mic or camera, a hand', async () => {
    const tiles = await alice.$$eval('#grid .tile', (els) => els.map((e) => e.dataset.peer));
    const mic = await alice.locator('#mic').isVisible();
    const hand = await alice.getByRole('button', { name: 'Raise hand' }).isVisible();
    const role = await alice.evaluate(() => window.throng.call.role);
    return { ok: tiles.length === 1 && tiles[0] === hostId && !mic && hand && role === 'audience', tiles, mic, hand, role };
  });
  await eventually('everyone sees 1 watching', async () => {
    const a = await alice.locator('#audience-count').textContent();
    const h = await host.locator('#audience-count').textContent();
    return { ok: a === '1 watching' && h === '1 watching', a, h };
  });

  await askHarness('start-load', 'load-started');
  const watching = `${(LOAD + 1).toLocaleString('en')} watching`;
  await eventually(`the load's audience arrives: ${watching}`, async () => {
    const a = await alice.locator('#audience-count').textContent();
    return { ok: a === watching, a };
  }, { timeoutMs: 90000 });
  const presenter = await eventually('the presenter joins the stage: two tiles for the audience', async () => {
    const tiles = await alice.$$eval('#grid .tile', (els) => els.map((e) => e.dataset.peer));
    const other = tiles.find((t) => t !== hostId);
    return tiles.length === 2 && other ? { ok: true, id: other } : { ok: false, tiles };
  }, { timeoutMs: 30000 });
  await eventually('the audience member decodes the host\'s and the presenter\'s video', async () => {
    const s = await receiveStats(alice);
    const h = s[hostId]?.framesDecoded ?? 0;
    const p = s[presenter.id]?.framesDecoded ?? 0;
    return { ok: h > 0 && p > 0, h, p };
  }, { timeoutMs: 30000 });
  const own = (await serverRoom()).find((p) => p.peerId === aliceId);
  check(own && own.producers.length === 0, 'the audience member publishes nothing', own?.producers);

  // The audience list, a page at a time.
  await alice.getByRole('button', { name: 'Audience', exact: true }).click();
  await eventually('the audience panel shows the first 100', async () => {
    const range = await alice.locator('#audience-range').textContent();
    const rows = await alice.locator('#audience-list li').count();
    return { ok: range === `1–100 of ${LOAD + 1}` && rows === 100, range, rows };
  });
  await alice.getByRole('button', { name: 'Next audience page' }).click();
  await eventually('page two: 101–200, still 100 rows in the document', async () => {
    const range = await alice.locator('#audience-range').textContent();
    const rows = await alice.locator('#audience-list li').count();
    return { ok: range === `101–200 of ${LOAD + 1}` && rows === 100, range, rows };
  });
  await alice.getByRole('button', { name: 'Previous audience page' }).click();
  await eventually('back to page one, the audience member first', async () => {
    const first = await alice.locator('#audience-list li').first().getAttribute('data-peer');
    return { ok: first === aliceId, first };
  });
  await sleep(500);
  await alice.screenshot({ path: path.join(env.screenshots, 'event-audience.png') });
  log('screenshot: event-audience.png');

  // A hand goes up; the host invites its owner to the stage.
  await alice.getByRole('button', { name: 'Raise hand' }).click();
  await eventually('the host sees the raised hand', async () => {
    const hands = await host.$$eval('#hands-list li', (els) => els.map((e) => e.dataset.peer));
    return { ok: hands.length === 1 && hands[0] === aliceId, hands };
  });
  await host.getByRole('button', { name: 'Audience', exact: true }).click();
  await eventually('the host pages the audience too, with invite buttons', async () =>
    (await host.getByRole('button', { name: 'Invite Alice Audience to the stage' }).count()) === 2);
  await host.screenshot({ path: path.join(env.screenshots, 'event-host.png') });
  log('screenshot: event-host.png');
  await host.locator('#hands-list').getByRole('button', { name: 'Invite Alice Audience to the stage' }).click();
  await eventually('promoted: a speaker with its own tile and controls, no hand', async () => {
    const role = await alice.evaluate(() => window.throng.call.role);
    const self = await alice.locator('#grid .tile[data-peer="self"]').count();
    const cam = await alice.locator('#cam').isVisible();
    const hand = await alice.locator('#raise-hand').isVisible();
    return { ok: role === 'speaker' && self === 1 && cam && !hand, role, self, cam, hand };
  });
  await eventually('the server has the promoted member\'s camera and microphone', async () => {
    const me = (await serverRoom()).find((p) => p.peerId === aliceId);
    return { ok: me?.producers.length === 2, producers: me?.producers };
  }, { timeoutMs: 30000 });
  await eventually('the host decodes the promoted member\'s video (no re-join)', async () => {
    const f = (await receiveStats(host))[aliceId]?.framesDecoded ?? 0;
    return { ok: f > 0, f };
  }, { timeoutMs: 30000 });
  const rejoins = await alice.evaluate(() => window.throng.call.rejoins ?? 0);
  check(rejoins === 0, 'the promotion needed no re-join', rejoins);
  await eventually('the hand went down: the host sees no raised hands', async () =>
    host.locator('#hands-panel').isHidden());

  // Back to the audience.
  await host.getByRole('button', { name: 'Move Alice Audience to the audience' }).click();
  await eventually('demoted: audience again, camera off, producers closed on the server', async () => {
    const role = await alice.evaluate(() => window.throng.call.role);
    const camOpen = await alice.evaluate(() => !!window.throng.media.videoTrack);
    const me = (await serverRoom()).find((p) => p.peerId === aliceId);
    const self = await alice.locator('#grid .tile[data-peer="self"]').count();
    return { ok: role === 'audience' && !camOpen && me?.producers.length === 0 && self === 0, role, camOpen, producers: me?.producers, self };
  }, { timeoutMs: 20000 });
  await eventually('the host\'s stage is the presenter again, without the demoted member', async () => {
    const tiles = await host.$$eval('#grid .tile', (els) => els.map((e) => e.dataset.peer));
    return { ok: !tiles.includes(aliceId) && tiles.includes(presenter.id), tiles };
  });

  await askHarness('stop-load', 'load-stopped', { timeoutMs: 120000 });
  await eventually('the count goes back to 1 when the load leaves', async () => {
    const a = await alice.locator('#audience-count').textContent();
    return { ok: a === '1 watching', a };
  }, { timeoutMs: 30000 });
});
