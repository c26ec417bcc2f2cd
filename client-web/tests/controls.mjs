// Controls and recording, in a phone-sized and a desktop browser:
// - a browser whose ICE cannot connect (no loopback candidates) keeps every
//   control disabled and the mic closed, and says "Connecting";
// - once connected, mute/unmute reaches the server and the other person;
//   camera off shows the avatar to the other person, on brings video back, and
//   five off/on cycles leave the node's producer and consumer counts where they
//   were;
// - leaving while recording downloads a WebM file; a tab closed while
//   recording leaves its recording in IndexedDB, offered on the next visit.
// Screenshots: the lobby and the phone layout, into docs/screenshots/.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  admin, check, connected, env, eventually, joinThroughUi, launch, layoutCheck, log, newPage,
  receiveStats, scenario, serverRoom, sleep, tabTo,
} from './lib.mjs';

const PHONE = {
  viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  userAgent: 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Mobile Safari/537.36',
};
const CONTROLS = ['#mic', '#cam', '#record', '#leave', '#page-prev', '#page-next'];

async function controlStates(page) {
  return page.evaluate((ids) => Object.fromEntries(ids.map((id) => [id, document.querySelector(id).disabled])), CONTROLS);
}

async function isWebm(file) {
  const bytes = await readFile(file);
  return { size: bytes.length, ebml: bytes.subarray(0, 4).toString('hex') === '1a45dfa3' };
}

/** Producer and consumer counts of the node, as it reports them to Redis. */
async function nodeCounts() {
  const { nodes } = await admin('/admin/nodes');
  let producers = 0;
  let consumers = 0;
  for (const n of nodes) for (const w of n.workers) { producers += w.producers; consumers += w.consumers; }
  return { producers, consumers };
}

await scenario('controls', async (cleanup) => {
  // 1. No loopback candidates: ICE never connects, so nothing may be enabled.
  {
    const browser = await launch({ loopback: false });
    const { page } = await newPage(browser, { name: 'no-ice' });
    await page.goto(`${env.url}/?token=${encodeURIComponent(env.tokens[0])}`);
    await page.waitForSelector('body[data-ready="true"]');
    await page.getByLabel('Your name').fill('Grace Hopper');
    await layoutCheck(page, 'lobby at 1280x800');
    await sleep(500);
    await page.screenshot({ path: path.join(env.screenshots, 'lobby.png') });
    log('screenshot: docs/screenshots/lobby.png');
    await page.getByRole('button', { name: 'Join' }).click();
    await page.waitForSelector('#call:not([hidden])', { timeout: 30000 });
    for (let i = 0; i < 8; i++) {
      const states = await controlStates(page);
      const conn = await page.locator('#conn').getAttribute('data-state');
      check(Object.values(states).every(Boolean) && conn !== 'connected',
        `not connected (${conn}), t=${i}s: every control disabled`, states);
      await sleep(1000);
    }
    await page.locator('#mic').click({ force: true, timeout: 2000 }).catch(() => {});
    const mic = await page.evaluate(() => ({
      micOn: window.throng.call.micOn,
      trackEnabled: window.throng.media.audioTrack?.enabled,
    }));
    check(mic.micOn === false && mic.trackEnabled === false, 'the mic stays closed while not connected', mic);
    const peers = await serverRoom();
    const audio = peers.flatMap((p) => p.producers).filter((p) => p.kind === 'audio');
    check(audio.length === 1 && audio[0].paused, 'server: its audio producer is paused', audio);
    await browser.close();
  }

  // 2. A phone and a desktop, connected.
  const browser = await launch();
  cleanup(() => browser.close());
  // The desktop joins with the keyboard only: the name field has focus, Enter joins.
  const desk = (await newPage(browser, { name: 'desk', viewport: { width: 1920, height: 1080 } })).page;
  await desk.goto(`${env.url}/?token=${encodeURIComponent(env.tokens[2])}`);
  await desk.waitForSelector('body[data-ready="true"]');
  check(await desk.evaluate(() => document.activeElement?.id === 'name'), 'the lobby puts the focus on the name');
  await desk.keyboard.type('Desk');
  await desk.keyboard.press('Enter');
  await desk.waitForSelector('#call:not([hidden])', { timeout: 60000 });
  const { context: phoneCtx, page: phone } = await newPage(browser, { name: 'phone', ...PHONE });
  await joinThroughUi(phone, { token: env.tokens[1], name: 'Phone' });
  await connected(phone, 'the phone');
  await connected(desk, 'the desktop');
  await eventually('the phone enables its controls once connected', async () => {
    const s = await controlStates(phone);
    return { ok: !s['#mic'] && !s['#cam'] && !s['#record'] && !s['#leave'], s };
  });
  const phoneId = await phone.evaluate(() => window.throng.call.peerId);
  const deskTile = desk.locator(`.tile[data-peer="${phoneId}"]`);
  await eventually('the desktop decodes the phone\'s video', async () => {
    const f = (await receiveStats(desk))[phoneId]?.framesDecoded ?? 0;
    return { ok: f > 0, f };
  });
  await layoutCheck(phone, 'call on a 390x844 phone');
  await layoutCheck(desk, 'call at 1920x1080');
  await sleep(1000);
  await phone.screenshot({ path: path.join(env.screenshots, 'phone.png') });
  log('screenshot: docs/screenshots/phone.png');

  // Mute and unmute.
  // Mute with the keyboard: Tab to the mic button, press Space.
  await tabTo(phone, '#mic');
  await phone.keyboard.press('Space');
  await eventually('muted: the server has the phone\'s audio producer paused, the desktop shows it muted', async () => {
    const p = (await serverRoom()).find((x) => x.peerId === phoneId);
    const label = await deskTile.getAttribute('aria-label');
    return { ok: p.producers.find((x) => x.kind === 'audio')?.paused === true && label.includes('muted'), label };
  });
  await phone.getByRole('button', { name: 'Unmute microphone' }).click();
  await eventually('unmuted again on the server and at the desktop', async () => {
    const p = (await serverRoom()).find((x) => x.peerId === phoneId);
    const label = await deskTile.getAttribute('aria-label');
    return { ok: p.producers.find((x) => x.kind === 'audio')?.paused === false && !label.includes('muted'), label };
  });

  // Camera off/on five times: avatar, video back, counts flat.
  const before = await eventually('node counts readable', async () => ({ ...(await nodeCounts()), ok: true }));
  for (let i = 1; i <= 5; i++) {
    await phone.getByRole('button', { name: 'Stop camera' }).click();
    await eventually(`cycle ${i}: camera off -> the desktop shows the phone's avatar`, async () => {
      const label = await deskTile.getAttribute('aria-label');
      const avatar = await deskTile.locator('.avatar').isVisible();
      return { ok: label.includes('camera off') && avatar, label };
    });
    if (i === 1) {
      // The counts are live (the node reports every second), so "flat" below means something.
      await eventually('camera off: the node reports one producer fewer', async () => {
        const now = await nodeCounts();
        return { ok: now.producers === before.producers - 1, before, now };
      }, { timeoutMs: 10000 });
    }
    const f0 = (await receiveStats(desk))[phoneId]?.framesDecoded ?? 0;
    await phone.getByRole('button', { name: 'Start camera' }).click();
    await eventually(`cycle ${i}: camera on -> the desktop decodes the phone's video again`, async () => {
      const s = (await receiveStats(desk))[phoneId];
      const visible = await deskTile.locator('video').isVisible();
      return { ok: visible && (s?.framesDecoded ?? 0) > 0, s, f0 };
    });
  }
  await eventually('after 5 camera cycles the node counts are where they were', async () => {
    const now = await nodeCounts();
    return { ok: now.producers === before.producers && now.consumers === before.consumers, before, now };
  }, { timeoutMs: 10000 });

  // Switch camera (front/rear) in the call: the track is replaced, the producer stays.
  const videoProducer = async () => (await serverRoom()).find((x) => x.peerId === phoneId)
    .producers.find((x) => x.kind === 'video')?.producerId;
  const producerBefore = await videoProducer();
  const framesBefore = (await receiveStats(desk))[phoneId].framesDecoded;
  await phone.getByRole('button', { name: 'Switch camera' }).click();
  await eventually('switched camera: same producer on the server, the desktop keeps decoding', async () => {
    const facing = await phone.evaluate(() => window.throng.media.facingMode);
    const f = (await receiveStats(desk))[phoneId].framesDecoded;
    const id = await videoProducer();
    return { ok: id === producerBefore && f > framesBefore + 10 && facing === 'environment', facing, f, framesBefore };
  });

  // Leave while recording: the file downloads.
  await phone.getByRole('button', { name: 'Record' }).click();
  await eventually('recording indicator shown', async () => phone.locator('#rec-indicator').isVisible());
  await sleep(3000);
  const [download] = await Promise.all([
    phone.waitForEvent('download', { timeout: 20000 }),
    phone.getByRole('button', { name: 'Leave' }).click(),
  ]);
  const file = path.join(process.env.TMPDIR ?? '/tmp', `throng-${process.pid}-leave.webm`);
  await download.saveAs(file);
  const webm = await isWebm(file);
  check(webm.ebml && webm.size > 20000, `leaving while recording downloaded ${download.suggestedFilename()} (${webm.size} bytes, WebM)`, webm);
  await phone.waitForSelector('#left:not([hidden])');
  await eventually('the phone left the room on the server', async () =>
    !(await serverRoom()).some((p) => p.peerId === phoneId));

  // Tab closed while recording: kept, offered on the next visit.
  const again = await phoneCtx.newPage();
  await joinThroughUi(again, { token: env.tokens[1], name: 'Phone' });
  await connected(again, 'the phone (second visit)');
  await eventually('record enabled', async () => !(await again.locator('#record').isDisabled()));
  await again.getByRole('button', { name: 'Record' }).click();
  await sleep(3500);
  await again.close();
  const next = await phoneCtx.newPage();
  await next.goto(env.url);
  await next.waitForSelector('body[data-ready="true"]');
  await eventually('the next visit offers the interrupted recording', async () => next.locator('#recovered').isVisible());
  const [kept] = await Promise.all([
    next.waitForEvent('download', { timeout: 20000 }),
    next.locator('#recovered-list button', { hasText: 'Download' }).first().click(),
  ]);
  const keptFile = path.join(process.env.TMPDIR ?? '/tmp', `throng-${process.pid}-kept.webm`);
  await kept.saveAs(keptFile);
  const keptWebm = await isWebm(keptFile);
  check(keptWebm.ebml && keptWebm.size > 10000, `the kept recording downloads (${keptWebm.size} bytes, WebM)`, keptWebm);
  await eventually('and is then forgotten', async () => !(await next.locator('#recovered').isVisible()));
});
