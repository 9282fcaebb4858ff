// The trunk build served on 127.0.0.1 as `trunk serve` serves it, and the headless Chromium that
// opens it: shared by the end-to-end test (app.test.mjs) and the step benchmark (step-bench.mjs).

import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.png': 'image/png' };

/** Serves `dist` on a free port; resolves to `{ server, origin }`. */
export async function serve(dist) {
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    // As `trunk serve` (www/Trunk.toml) and the README ask of static hosts: cross-origin isolation,
    // so the CPU backend's threads can share the worker's memory. Under /plain/ the same files
    // come without it, as from a host that cannot set headers.
    const plain = url.pathname.startsWith('/plain/');
    const rel = plain ? url.pathname.slice('/plain'.length) : url.pathname;
    const file = path.join(dist, rel === '/' ? 'index.html' : decodeURIComponent(rel));
    if (!file.startsWith(dist) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end();
      return;
    }
    const isolation = plain ? {} : { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };
    res.writeHead(200, { 'content-type': MIME[path.extname(file)] ?? 'application/octet-stream', ...isolation });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

/** Debian's Chromium (or $CHROMIUM), headless, nothing fetched in the background; more flags
 * from $NORMTUNE_CHROMIUM_FLAGS, a JSON array (`["--js-flags=--prof --logfile=/tmp/p/v8-%p.log"]`
 * profiles V8: one log per isolate, read with `node --prof-process`). */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-quic', '--enable-unsafe-webgpu',
      ...JSON.parse(process.env.NORMTUNE_CHROMIUM_FLAGS ?? '[]')],
  });
}

/** Opens the page at `origin + at` and waits until the worker is ready on `backend`; the device line. */
export async function openOn(page, origin, backend, at = '/') {
  await page.goto(origin + at);
  const status = page.locator('#device-status');
  if (backend === 'cpu') {
    await status.filter({ hasText: /: (?!starting)/ }).waitFor({ timeout: 120_000 });
    await page.click('#use-cpu');
    await status.filter({ hasText: /^CPU.*: burn flex/ }).waitFor({ timeout: 120_000 });
  } else {
    await status.filter({ hasText: /^WebGPU: (?!starting)/ }).waitFor({ timeout: 120_000 });
  }
  return status.textContent();
}

/** Sets a number field as a user's typing does. */
export async function setNumber(page, sel, value) {
  await page.locator(sel).fill(String(value));
  await page.locator(sel).dispatchEvent('change');
}

/** Clicks "Time a step" for `method` at `batch` (the model loaded) and resolves to the step times, ms. */
export async function timeSteps(page, method, batch) {
  await page.selectOption('#method', method);
  await setNumber(page, '#batch', batch);
  const before = await page.locator('#step-time').getAttribute('data-step-ms').catch(() => null);
  await page.click('#time-step');
  const line = page.locator('#step-time');
  await page.waitForFunction((b) => {
    const el = document.querySelector('#step-time');
    return el && el.getAttribute('data-step-ms') !== b;
  }, before, { timeout: 600_000 });
  return { text: await line.textContent(), ms: (await line.getAttribute('data-step-ms')).split(' ').map(Number),
    median: Number(await line.getAttribute('data-median-ms')) };
}
