// What the live cluster view (/admin) costs in a real browser while a surge
// runs: headless Chromium opens the page, connects with the admin key and
// records every update (bytes of the event, time to render it, participants
// and rooms shown) for SECONDS, then prints one summary line. Run by
// scripts/bench-telemetry.sh (ADMIN_VIEW=1) next to its first surge:
//   URL=http://127.0.0.1:8191 ADMIN_KEY=... SECONDS=40 node client-web/bench/admin-view.mjs
import { chromium } from 'playwright-core';

const url = process.env.URL;
const key = process.env.ADMIN_KEY;
const seconds = Number(process.env.SECONDS ?? 40);
if (!url || !key) {
  console.error('admin-view: URL and ADMIN_KEY are required');
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  await page.goto(`${url}/admin`);
  await page.evaluate(() => {
    window.samples = [];
    new MutationObserver(() => {
      const b = document.body.dataset;
      window.samples.push({
        ms: Number(b.renderMs),
        bytes: Number(b.bytes),
        participants: Number(document.getElementById('participants').textContent),
        rooms: document.querySelectorAll('.room').length,
        workers: document.querySelectorAll('.worker').length,
      });
    }).observe(document.body, { attributes: true, attributeFilter: ['data-updates'] });
  });
  await page.fill('#key', key);
  await page.click('#connect');
  await page.waitForTimeout(seconds * 1000);
  const samples = await page.evaluate(() => window.samples);
  if (samples.length === 0) throw new Error('no update arrived');
  const sorted = (xs) => xs.slice().sort((a, b) => a - b);
  const ms = sorted(samples.map((s) => s.ms));
  const peak = samples.reduce((a, s) => (s.participants > a.participants ? s : a), samples[0]);
  console.log(
    `admin view: ${samples.length} updates in ${seconds} s, render median ${ms[ms.length >> 1].toFixed(1)} ms ` +
      `max ${ms[ms.length - 1].toFixed(1)} ms, largest update ${Math.max(...samples.map((s) => s.bytes))} bytes, ` +
      `peak ${peak.participants} participants in ${peak.rooms} rooms on ${peak.workers} workers (${peak.bytes} bytes)`,
  );
} finally {
  await browser.close();
}
