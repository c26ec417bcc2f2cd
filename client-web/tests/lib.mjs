// Shared helpers of the web client's real-browser scenarios. Each scenario is a
// node script run by coordinator/tests/web_client.rs against a real
// coordinator + media node + Redis; it reads its settings from THRONG_E2E (JSON:
// url, adminKey, room, tokens, screenshots) and exits non-zero on the first
// failed check, saying what it saw.
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

export const env = JSON.parse(process.env.THRONG_E2E ?? '{}');

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
];

/** Headless Debian Chromium; `loopback: false` leaves out the flag that lets ICE use 127.0.0.1. */
export async function launch({ loopback = true, args = [] } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_ARGS, ...(loopback ? ['--allow-loopback-in-peer-connection'] : []), ...args],
  });
}

export function log(...args) {
  console.error(`[${new Date().toISOString().slice(11, 23)}]`, ...args);
}

export class CheckFailed extends Error {}

export function check(cond, what, seen) {
  if (!cond) throw new CheckFailed(`${what}${seen === undefined ? '' : `; saw ${JSON.stringify(seen)}`}`);
  log(`ok: ${what}`);
}

export async function eventually(what, fn, { timeoutMs = 20000, everyMs = 250 } = {}) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last && last.ok !== false) {
        log(`ok: ${what}`);
        return last;
      }
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > end) throw new CheckFailed(`${what}: not within ${timeoutMs} ms; last saw ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** GET on the admin API. */
export async function admin(path) {
  const res = await fetch(`${env.url}${path}`, { headers: { 'x-admin-key': env.adminKey } });
  if (!res.ok) throw new Error(`admin ${path}: ${res.status}`);
  return res.json();
}

/** The room as the server serves it: peers with producers and consumers (and packets sent). */
export async function serverRoom(room = env.room) {
  const r = await admin(`/admin/rooms/${encodeURIComponent(room)}?stats=true`);
  return r.peers ?? [];
}

/** A page with console and errors forwarded to stderr. */
export async function newPage(browser, { name, viewport = { width: 1280, height: 800 }, ...opts } = {}) {
  const context = await browser.newContext({ viewport, acceptDownloads: true, ...opts });
  // Remember every text the queue view showed (it may be on screen only briefly).
  await context.addInitScript(() => {
    window.__queueSeen = [];
    document.addEventListener('DOMContentLoaded', () => {
      const el = document.getElementById('queue-status');
      if (!el) return;
      new MutationObserver(() => window.__queueSeen.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
    });
  });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') log(`[${name} ${m.type()}] ${m.text()}`);
  });
  page.on('pageerror', (e) => log(`[${name} page error] ${e.message}`));
  return { context, page };
}

/** Opens the join link and joins through the lobby like a person would. */
export async function joinThroughUi(page, { token, name, micOn = true, camOn = true }) {
  await page.goto(`${env.url}/?token=${encodeURIComponent(token)}`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 20000 });
  await page.getByLabel('Your name').fill(name);
  if (!micOn) await page.getByRole('button', { name: 'Microphone on' }).click();
  if (!camOn) await page.getByRole('button', { name: 'Camera on' }).click();
  await page.getByRole('button', { name: 'Join' }).click();
  await page.waitForSelector('#call:not([hidden])', { timeout: 60000 });
}

/** Waits until the call says it is connected. */
export async function connected(page, what) {
  await eventually(`${what} shows Connected`, async () =>
    (await page.locator('#conn').getAttribute('data-state')) === 'connected', { timeoutMs: 30000 });
}

/** Per remote peer: frames decoded and audio packets received so far. */
export async function receiveStats(page) {
  return page.evaluate(() => window.throng.call.receiveStats());
}

/** Audio level of one remote peer's tile, read with an AnalyserNode over ~1 s. */
export async function audioPeak(page, peerId) {
  return page.evaluate(async (id) => {
    const el = document.querySelector(`.tile[data-peer="${id}"] audio`);
    if (!el?.srcObject) return -1;
    const ctx = new AudioContext();
    await ctx.resume();
    const src = ctx.createMediaStreamSource(el.srcObject);
    const an = ctx.createAnalyser();
    an.fftSize = 2048;
    src.connect(an);
    const buf = new Float32Array(an.fftSize);
    let peak = 0;
    const end = performance.now() + 1500;
    while (performance.now() < end) {
      an.getFloatTimeDomainData(buf);
      for (const v of buf) peak = Math.max(peak, Math.abs(v));
      await new Promise((r) => setTimeout(r, 50));
    }
    await ctx.close();
    return peak;
  }, peerId);
}

/** Runs a scenario: exits 0 on success, 1 with the failure on stderr. */
export async function scenario(name, fn) {
  const started = Date.now();
  const cleanups = [];
  try {
    await fn((c) => cleanups.push(c));
    log(`${name}: passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    process.exitCode = 0;
  } catch (e) {
    log(`${name}: FAILED: ${e.stack ?? e}`);
    process.exitCode = 1;
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (e) {
        log(`cleanup: ${e.message}`);
      }
    }
  }
  process.exit(process.exitCode);
}

/**
 * Accessibility and layout at the page's current size: every visible control
 * has a name (visible text, a <label>, or aria-label), nothing overflows
 * sideways, and the call controls fit on screen.
 */
export async function layoutCheck(page, what) {
  const r = await page.evaluate(() => {
    const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length)
      && getComputedStyle(el).visibility !== 'hidden';
    const unnamed = [...document.querySelectorAll('button, input, select, a[href]')]
      .filter(visible)
      .filter((el) => {
        const label = el.getAttribute('aria-label') || el.labels?.[0]?.textContent || el.textContent;
        return !label || !label.trim();
      })
      .map((el) => el.outerHTML.slice(0, 80));
    const controls = [...document.querySelectorAll('#call:not([hidden]) .controls button')].filter(visible);
    const offscreen = controls.filter((b) => b.getBoundingClientRect().bottom > window.innerHeight + 1).map((b) => b.id);
    return {
      unnamed,
      offscreen,
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
    };
  });
  check(r.unnamed.length === 0, `${what}: every visible control has a name`, r.unnamed);
  check(r.scrollWidth <= r.innerWidth, `${what}: no sideways scrolling (${r.scrollWidth} <= ${r.innerWidth})`, r);
  check(r.offscreen.length === 0, `${what}: call controls fit on screen`, r.offscreen);
}

/** Presses Tab until `selector` has focus (at most 40 times), as a keyboard user would. */
export async function tabTo(page, selector) {
  for (let i = 0; i < 40; i++) {
    if (await page.evaluate((s) => document.activeElement?.matches(s), selector)) return;
    await page.keyboard.press('Tab');
  }
  throw new CheckFailed(`${selector} is not reachable with Tab`);
}

let harnessReplies;
/**
 * Asks the Rust harness to stop media node `id` (a `stop-node <id>` line on
 * stdout) and waits until it answers `stopped <id>` on stdin.
 */
export async function stopNode(id, { timeoutMs = 10000 } = {}) {
  await askHarness(`stop-node ${id}`, `stopped ${id}`, { timeoutMs });
}

/**
 * Writes `request` on stdout for the Rust harness and returns the rest of
 * the first line it answers that starts with `prefix`.
 */
export async function askHarnessValue(request, prefix, { timeoutMs = 10000 } = {}) {
  if (!harnessReplies) {
    harnessReplies = [];
    createInterface({ input: process.stdin }).on('line', (l) => harnessReplies.push(l));
  }
  const from = harnessReplies.length;
  process.stdout.write(`${request}\n`);
  const line = await eventually(`the harness answered ${prefix}`,
    async () => harnessReplies.slice(from).find((l) => l.startsWith(prefix)), { timeoutMs });
  return line.slice(prefix.length);
}

/**
 * Writes `request` on stdout for the Rust harness and waits until it
 * answers `reply` on stdin (`stop-node`, `start-load`, `stop-load`).
 */
export async function askHarness(request, reply, { timeoutMs = 10000 } = {}) {
  if (!harnessReplies) {
    harnessReplies = [];
    createInterface({ input: process.stdin }).on('line', (l) => harnessReplies.push(l));
  }
  process.stdout.write(`${request}\n`);
  await eventually(`the harness answered ${reply}`, async () => harnessReplies.includes(reply), { timeoutMs });
}
