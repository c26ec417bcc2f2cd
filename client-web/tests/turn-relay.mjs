// Two people whose browsers may use nothing but TURN relays (`?relay=1`:
// iceTransportPolicy 'relay', what a browser behind a firewall that blocks
// the media nodes' ports ends up with), or (`forceRelay: false`) browsers
// really behind such a firewall, join through the lobby, once per round:
// each round's coordinator hands out one kind of relay (coturn over UDP,
// over TCP, over TLS). Each must see the call connected through that
// relay (the indicator says so), and receive the other's video (frames
// decoded, increasing) and audio (packets increasing, and the fake
// microphone's beep heard).
import {
  audioPeak, check, eventually, launch, log, newPage, receiveStats, scenario, sleep,
} from './lib.mjs';
import { env } from './lib.mjs';

await scenario('turn relay', async (cleanup) => {
  // The TLS relay's certificate is checked: the harness gives the browser a
  // HOME whose NSS database trusts the test's CA.
  // A page on a plain-HTTP address other than localhost is no secure
  // context (no camera): a deployment serves HTTPS; the test names the origin.
  const browser = await launch({
    args: env.insecureOrigin ? [`--unsafely-treat-insecure-origin-as-secure=${env.insecureOrigin}`] : [],
  });
  cleanup(() => browser.close());
  const figures = [];
  for (const round of env.rounds) {
    const names = ['Ada', 'Grace'];
    const pages = [];
    const contexts = [];
    const started = Date.now();
    for (const [i, name] of names.entries()) {
      const { page, context } = await newPage(browser, { name: `${name}/${round.name}`, viewport: { width: 960, height: 640 } });
      contexts.push(context);
      const relay = round.forceRelay === false ? '' : '&relay=1';
      await page.goto(`${round.url}/?token=${encodeURIComponent(round.tokens[i])}${relay}`);
      await page.waitForSelector('body[data-ready="true"]', { timeout: 20000 });
      await page.getByLabel('Your name').fill(name);
      await page.getByRole('button', { name: 'Join' }).click();
      await page.waitForSelector('#call:not([hidden])', { timeout: 60000 });
      pages.push(page);
    }
    for (const [i, page] of pages.entries()) {
      await eventually(`${names[i]} (${round.name}) shows Connected through the relay (${round.path})`, async () => {
        const conn = page.locator('#conn');
        const state = await conn.getAttribute('data-state');
        const path = await conn.getAttribute('data-path');
        const text = await conn.textContent();
        return { ok: state === 'connected' && path === round.path && text.includes('relayed'), state, path, text };
      }, { timeoutMs: 30000 });
    }
    const firstMedia = [];
    for (const [i, page] of pages.entries()) {
      firstMedia.push(await eventually(`${names[i]} (${round.name}) decodes video and receives audio through the relay`, async () => {
        const s = Object.values(await receiveStats(page));
        return { ok: s.length === 1 && s[0].framesDecoded > 0 && s[0].audioPackets > 0, s };
      }, { timeoutMs: 30000 }));
    }
    const toMedia = Date.now() - started;
    await sleep(2000);
    for (const [i, page] of pages.entries()) {
      const before = firstMedia[i].s[0];
      const after = Object.values(await receiveStats(page))[0];
      check(after.framesDecoded > before.framesDecoded && after.audioPackets > before.audioPackets,
        `${names[i]} (${round.name}) keeps receiving (frames ${before.framesDecoded} -> ${after.framesDecoded}, audio packets ${before.audioPackets} -> ${after.audioPackets})`);
    }
    // Every transport's selected pair is a relay candidate of that protocol.
    for (const [i, page] of pages.entries()) {
      const pairs = await page.evaluate(async () => {
        const call = window.throng.call;
        const out = [];
        for (const t of [call.sendTransport, call.recvTransport]) {
          if (!t) continue;
          const stats = await t.getStats();
          let local;
          for (const s of stats.values()) {
            if (s.type === 'transport' && s.selectedCandidatePairId) {
              local = stats.get(stats.get(s.selectedCandidatePairId).localCandidateId);
            }
          }
          out.push({ direction: t.direction, type: local?.candidateType, protocol: local?.relayProtocol, url: local?.url });
        }
        return out;
      });
      check(pairs.length === 2 && pairs.every((p) => p.type === 'relay' && `relay-${p.protocol}` === round.path),
        `${names[i]} (${round.name}) sends and receives through ${round.path}`, pairs);
    }
    const grace = await pages[1].evaluate(() => window.throng.call.peerId);
    const peak = await eventually(`Ada (${round.name}) hears Grace through the relay`, async () => {
      const p = await audioPeak(pages[0], grace);
      return { ok: p > 0.05, p };
    }, { timeoutMs: 20000 });
    figures.push(`${round.name}: joined to media both ways ${toMedia} ms, beep peak ${peak.p.toFixed(2)}`);
    for (const page of pages) await page.getByRole('button', { name: 'Leave' }).click().catch(() => {});
    for (const c of contexts) await c.close();
  }
  for (const f of figures) log(`figure: relayed ${f}`);
});
