// A join the server refuses for now: the line is full (THRONG_QUEUE_MAX), the
// coordinator answers `unavailable` with `retryAfterMs`. The browser must say
// so and try again by itself; once the line moves (the Rust side opens the
// gate that holds it), it gets in with nobody clicking anything.
import {
  askHarness, check, connected, env, eventually, launch, log, newPage, scenario,
} from './lib.mjs';

await scenario('busy', async (cleanup) => {
  const browser = await launch();
  cleanup(() => browser.close());
  const { page } = await newPage(browser, { name: 'ada' });
  await page.goto(`${env.url}/?token=${encodeURIComponent(env.tokens[0])}`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 20000 });
  await page.getByLabel('Your name').fill('Ada');
  await page.getByRole('button', { name: 'Join' }).click();
  const busy = await eventually('Ada is told the event is at capacity and when she will retry', async () => {
    const text = await page.locator('#queue-status').textContent();
    const retries = await page.evaluate(() => window.throng.call?.busyRetries ?? 0);
    return { ok: retries >= 1 && /at capacity/.test(text) && /Trying again in \d+ s/.test(text), text, retries };
  }, { timeoutMs: 20000 });
  log(`shown: ${busy.text}`);
  check(await page.locator('#queue').isVisible(), 'she stays on the waiting screen');
  await eventually('she keeps retrying while the line is full', async () => {
    const retries = await page.evaluate(() => window.throng.call?.busyRetries ?? 0);
    return { ok: retries >= 2, retries };
  }, { timeoutMs: 20000 });
  await askHarness('open-gate', 'gate-opened');
  await page.waitForSelector('#call:not([hidden])', { timeout: 60000 });
  await connected(page, 'Ada');
  const call = await page.evaluate(() => ({ retries: window.throng.call.busyRetries, left: window.throng.call.left }));
  check(!call.left && call.retries >= 2, `in the call after ${call.retries} refused attempts`, call);
});
