// Drives headless Debian Chromium (playwright-core) through the worker round
// trip page served by the Rust test, and prints the page's result as one JSON
// line on stdout. Usage: node worker-roundtrip/run.mjs <url> <seconds>
import { chromium } from 'playwright-core';

const [url, seconds = '3'] = process.argv.slice(2);
if (!url) {
  console.error('usage: node worker-roundtrip/run.mjs <url> [seconds]');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection',
    '--autoplay-policy=no-user-gesture-required',
    // THRONG_CHROMIUM_LOG=1: Chromium's own log (WebRTC errors such as SRTP
    // unprotect failures) on stderr.
    ...(process.env.THRONG_CHROMIUM_LOG ? ['--enable-logging=stderr', '--v=0'] : []),
  ],
});
let code = 0;
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('console', (msg) => console.error(`[page ${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (err) => console.error(`[page error] ${err.message}`));
  await page.goto(url);
  await page.waitForFunction(() => window.roundtripReady === true, null, { timeout: 15000 });
  const result = await page.evaluate((s) => window.runRoundtrip(s), Number(seconds));
  process.stdout.write(JSON.stringify(result) + '\n');
} catch (err) {
  console.error(`roundtrip failed: ${err.stack ?? err}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
