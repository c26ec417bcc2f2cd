// Two people join through the lobby, once per round, each round through
// its own coordinator and kind of path: direct to the media node, or only
// through a TURN relay the coordinator hands out (coturn over UDP, TCP or
// TLS), either forced (`?relay=1`: iceTransportPolicy 'relay', what a
// browser behind a firewall that blocks the media nodes' ports ends up
// with) or (`forceRelay: false`) because the browsers really are behind
// such a firewall. Each must see the call connected on the round's path
// (the indicator says so, and every transport's selected candidate pair is
// of that kind), and receive the other's video (frames decoded, increasing)
// and audio (packets increasing, the fake microphone's beep heard).
// Figures: Join click to Connected per browser, and (with a harness that
// answers `turn-cpu`) coturn's CPU while it relays the call.
import {
  askHarnessValue, audioPeak, check, env, eventually, launch, log, newPage, receiveStats, scenario, sleep,
} from './lib.mjs';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

await scenario('turn relay', async (cleanup) => {
  // A page on a plain-HTTP address other than localhost is no secure
  // context (no camera): a deployment serves HTTPS; the test names the origin.
  const browser = await launch({
    args: env.insecureOrigin ? [`--unsafely-treat-insecure-origin-as-secure=${env.insecureOrigin}`] : [],
  });
  cleanup(() => browser.close());
  const figures = [];
  const repeat = env.repeat ?? 1;
  for (let run = 0; run < repeat; run += 1) {
    for (const round of env.rounds) {
      const relayed = round.path !== 'direct';
      const names = ['Ada', 'Grace'];
      const pages = [];
      const contexts = [];
      const connectMs = [];
      for (const [i, name] of names.entries()) {
        const { page, context } = await newPage(browser, { name: `${name}/${round.name}`, viewport: { width: 960, height: 640 } });
        contexts.push(context);
        const relay = round.forceRelay === false ? '' : '&relay=1';
        await page.goto(`${round.url}/?token=${encodeURIComponent(round.tokens[i])}${relay}`);
        await page.waitForSelector('body[data-ready="true"]', { timeout: 20000 });
        await page.getByLabel('Your name').fill(name);
        const clicked = Date.now();
        await page.getByRole('button', { name: 'Join' }).click();
        await eventually(`${name} (${round.name}) shows Connected on its path (${round.path})`, async () => {
          const conn = page.locator('#conn');
          const state = await conn.getAttribute('data-state');
          const path = await conn.getAttribute('data-path');
          const text = await conn.textContent();
          return { ok: state === 'connected' && path === round.path && text.includes('relayed') === relayed, state, path, text };
        }, { timeoutMs: 30000, everyMs: 50 });
        connectMs.push(Date.now() - clicked);
        pages.push(page);
      }
      const firstMedia = [];
      for (const [i, page] of pages.entries()) {
        firstMedia.push(await eventually(`${names[i]} (${round.name}) decodes video and receives audio`, async () => {
          const s = Object.values(await receiveStats(page));
          return { ok: s.length === 1 && s[0].framesDecoded > 0 && s[0].audioPackets > 0, s };
        }, { timeoutMs: 30000 }));
      }
      const cpuFrom = env.turnCpu && relayed ? Number(await askHarnessValue('turn-cpu', 'turn-cpu ')) : null;
      await sleep(env.steadyMs ?? 2000);
      const cpuTo = cpuFrom !== null ? Number(await askHarnessValue('turn-cpu', 'turn-cpu ')) : null;
      for (const [i, page] of pages.entries()) {
        const before = firstMedia[i].s[0];
        const after = Object.values(await receiveStats(page))[0];
        check(after.framesDecoded > before.framesDecoded && after.audioPackets > before.audioPackets,
          `${names[i]} (${round.name}) keeps receiving (frames ${before.framesDecoded} -> ${after.framesDecoded}, audio packets ${before.audioPackets} -> ${after.audioPackets})`);
      }
      // Every transport's selected pair is of the round's kind.
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
            out.push({ direction: t.direction, type: local?.candidateType, protocol: local?.relayProtocol });
          }
          return out;
        });
        const kind = (p) => (p.type === 'relay' ? `relay-${p.protocol}` : 'direct');
        check(pairs.length === 2 && pairs.every((p) => kind(p) === round.path),
          `${names[i]} (${round.name}) sends and receives ${relayed ? 'through' : 'on'} ${round.path}`, pairs);
      }
      const grace = await pages[1].evaluate(() => window.throng.call.peerId);
      const peak = await eventually(`Ada (${round.name}) hears Grace`, async () => {
        const p = await audioPeak(pages[0], grace);
        return { ok: p > 0.05, p };
      }, { timeoutMs: 20000 });
      const cpu = cpuFrom !== null
        ? `, coturn ${((100 * (cpuTo - cpuFrom)) / (env.steadyMs ?? 2000)).toFixed(1)} % of a core relaying 2 participants`
        : '';
      figures.push(`${round.name}: Join to Connected ${connectMs.join(' / ')} ms (median ${median(connectMs)}), beep peak ${peak.p.toFixed(2)}${cpu}`);
      for (const page of pages) await page.getByRole('button', { name: 'Leave' }).click().catch(() => {});
      for (const c of contexts) await c.close();
    }
  }
  for (const f of figures) log(`figure: ${f}`);
});
