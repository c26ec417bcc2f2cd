// The live cluster view at /admin in headless Chromium while loadgen joins
// people (started by the Rust harness on `start-load`): a wrong key is
// refused, a bar appears for every worker, the bars move as people join,
// rooms spanning several workers are listed with the pipes between them, and
// the bars go back when everyone has left. Screenshot: admin-view.png.
import { env, launch, check, eventually, scenario, askHarness, log } from './lib.mjs';

await scenario('admin view', async (cleanup) => {
  const browser = await launch();
  cleanup(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1440, height: 860 } });
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(`${env.url}/admin`);

  await page.fill('#key', 'not-the-key');
  await page.click('#connect');
  await eventually('a wrong key is refused', async () => (await page.textContent('#status')).includes('wrong admin key'));

  await page.fill('#key', env.adminKey);
  await page.click('#connect');
  const reserved = () =>
    page.$$eval('.worker', (els) => Object.fromEntries(els.map((e) => [e.dataset.worker, Number(e.dataset.reserved)])));
  const before = await eventually(`a bar for each of the ${env.workers} workers`, async () => {
    const r = await reserved();
    return Object.keys(r).length === env.workers ? r : false;
  });
  check(Object.values(before).every((v) => v === 0), 'nothing reserved before the load', before);
  const updates = Number(await page.getAttribute('body', 'data-updates'));

  await askHarness('start-load', 'load-started');
  const during = await eventually(
    'the bars move as people join: every worker gets participants',
    async () => {
      const r = await reserved();
      return Object.values(r).every((v) => v > 0) ? r : false;
    },
    { timeoutMs: 90000 },
  );
  log('reserved during the load', JSON.stringify(during));
  const widths = await page.$$eval('.worker .fill', (els) => els.map((e) => parseFloat(e.style.width)));
  check(widths.every((w) => w > 0), 'every bar shows its load', widths);
  const spans = await eventually(
    'several rooms, some spanning two workers or more, with their pipes',
    async () => {
      const rooms = await page.$$eval('.room', (els) =>
        els.map((e) => ({ room: e.dataset.room, workers: Number(e.dataset.workers), pipes: e.querySelector('.pipes').textContent })),
      );
      return rooms.length >= 3 && rooms.some((r) => r.workers >= 2 && r.pipes.includes('⇄')) ? rooms : false;
    },
    { timeoutMs: 60000 },
  );
  log('rooms', JSON.stringify(spans));
  check(Number(await page.textContent('#participants')) > 0, 'participants counted');
  await eventually('the view updates by itself, once a second (no reload)', async () =>
    Number(await page.getAttribute('body', 'data-updates')) >= updates + 3);
  check(!requests.some((u) => u.includes(env.adminKey)), 'the key never appears in a URL', requests);
  await page.screenshot({ path: `${env.screenshots}/admin-view.png` });

  await askHarness('stop-load', 'load-stopped', { timeoutMs: 120000 });
  await eventually(
    'the bars go back to zero when everyone has left',
    async () => {
      const r = await reserved();
      return Object.values(r).every((v) => v === 0) ? r : false;
    },
    { timeoutMs: 30000 },
  );
});
