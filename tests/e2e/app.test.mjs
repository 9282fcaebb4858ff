// End-to-end test of the web app in a real headless Chromium (Debian's, driven by Playwright):
// serve the trunk build on 127.0.0.1, load the bundled demo model, draw the benchmark's shifted
// domain, LayerNorm-tune on WebGPU (SwiftShader here) and then on the CPU backend, check on the
// page that the loss fell and the test accuracy rose, ask about an image, export the adapter and
// check that the native `normtune infer --adapter` gives the same answer. Every request the page
// and its worker make is recorded; any that leaves the origin fails the test. Screenshots go to
// $NORMTUNE_ARTIFACTS (default: a temp dir), printed at the end.
//
// Environment: NORMTUNE_DIST (the trunk build, default www/dist), NORMTUNE_BIN (the native
// binary, default $CARGO_TARGET_DIR/debug/normtune), CHROMIUM (default /usr/bin/chromium).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, openOn as openAt, serve, setNumber, timeSteps } from './serve.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = process.env.NORMTUNE_DIST ?? path.join(ROOT, 'www/dist');
const TARGET = process.env.CARGO_TARGET_DIR ?? path.join(os.homedir(), '.cache/normtune/target');
const BIN = process.env.NORMTUNE_BIN ?? path.join(TARGET, 'debug/normtune');
const ART = process.env.NORMTUNE_ARTIFACTS ?? fs.mkdtempSync(path.join(os.tmpdir(), 'normtune-e2e-'));
const MODEL = path.join(ROOT, 'core/assets/demo-base');
// Short runs, sized per backend. On the CPU backend (wasm flex, ~0.5 s a step): 16 training
// studies (127 questions), batch 16, 2 epochs = 16 steps, 16 test questions scored before and
// after each epoch. On WebGPU-SwiftShader a step takes ~50-75 s whatever its size (measured),
// so: 2 studies (17 questions), 3 epochs = 6 steps, 2 test questions. The same runs on the CPU
// backend give the same losses to 4 decimals, so these sizes were chosen there.
// NORMTUNE_E2E_{STUDIES,EPOCHS,LR,EVAL_N} override both.
const DOMAIN = 'scanner-b';
const env = (k, d) => process.env[`NORMTUNE_E2E_${k}`] ?? d;
const SIZE = { webgpu: { studies: 2, epochs: 3, evalN: 2 }, cpu: { studies: 16, epochs: 2, evalN: 16 } };
const runFor = (backend) => ({ domain: DOMAIN, studies: +env('STUDIES', SIZE[backend].studies), testStudies: 6,
  epochs: +env('EPOCHS', SIZE[backend].epochs), lr: env('LR', '0.01'), batch: 16, evalN: +env('EVAL_N', SIZE[backend].evalN) });

let server, origin;

before(async () => {
  assert.ok(fs.existsSync(path.join(DIST, 'index.html')), `no trunk build in ${DIST} (run trunk build in www/)`);
  assert.ok(fs.existsSync(BIN), `no native binary at ${BIN}`);
  fs.mkdirSync(ART, { recursive: true });
  ({ server, origin } = await serve(DIST));
});

after(() => {
  server?.close();
  console.log(`screenshots and downloads: ${ART}`);
});

function native(args) {
  return execFileSync(BIN, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A test image and its first question, drawn by the native binary (same generator as the app). */
function testImage(dir) {
  fs.rmSync(dir, { recursive: true, force: true }); // the artefacts dir outlives runs
  native(['demo-data', '--domain', DOMAIN, '--studies', '1', '--seed', '424242', '--out', dir]);
  const first = JSON.parse(fs.readFileSync(path.join(dir, 'vqa.jsonl'), 'utf8').split('\n')[0]);
  return { image: path.join(dir, first.image), question: first.question };
}

async function number(page, sel) {
  const t = await page.locator(sel).textContent();
  const v = Number.parseFloat(t);
  assert.ok(Number.isFinite(v), `${sel} holds "${t}", not a number`);
  return v;
}

/** A headless Chromium on the app, every request and console line recorded. */
async function openApp(backend) {
  const browser = await launch();
  const context = await browser.newContext({ acceptDownloads: true });
  const requests = [];
  const offOrigin = [];
  context.on('request', (r) => {
    requests.push(r.url());
    const u = r.url();
    if (!u.startsWith(origin) && !u.startsWith('blob:') && !u.startsWith('data:')) offOrigin.push(u);
  });
  const page = await context.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  // The Web Worker runs all model code: its console (and WebGPU's validation messages) too.
  page.on('worker', (w) => w.on('console', (m) => logs.push(`worker ${m.type()}: ${m.text()}`)));
  const shot = (name) => page.screenshot({ path: path.join(ART, `${backend}-${name}.png`), fullPage: true });
  const t0 = Date.now();
  const mark = (what) => console.log(`[${backend}] ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return { browser, page, requests, offOrigin, logs, shot, mark };
}

/** Opens the page and waits until the worker is ready on `backend`. */
const openOn = (page, backend, at = '/') => openAt(page, origin, backend, at);

/** The names at the top of the origin's private file system (OPFS). */
const opfsNames = (page) => page.evaluate(async () => {
  const names = [];
  for await (const name of (await navigator.storage.getDirectory()).keys()) names.push(name);
  return names;
});

/** Picks the backend, loads the demo model, draws the data and runs training to its end. */
async function tune(app, backend, RUN) {
  const { page, shot, mark } = app;
  // NORMTUNE_E2E_AT=/plain/ runs the same test on the page served without cross-origin isolation
  // (one thread on the CPU): BENCHMARKS.md compares the two.
  const at = env('AT', '/');
  const device = await openOn(page, backend, at);
  mark(`device: ${device}`);
  if (backend === 'cpu' && os.cpus().length > 1 && at === '/') {
    // The page is cross-origin isolated: flex runs on one rayon thread (Web Worker) per core.
    assert.match(device, new RegExp(`burn flex on ${os.cpus().length} wasm threads`));
  }
  await shot('1-device');

  await page.click('#load-demo');
  await page.locator('#model-info').waitFor({ timeout: 120_000 });
  assert.match(await page.locator('#model-info').textContent(), /2,485,395 parameters/);
  mark('model loaded');

  await setNumber(page, '#studies', RUN.studies);
  await setNumber(page, '#test-studies', RUN.testStudies);
  await page.click('#draw-data');
  await page.locator('#data-info').waitFor({ timeout: 120_000 });
  await page.locator('#data .samples img').first().waitFor();
  mark(await page.locator('#data-info').textContent());
  await shot('2-data');

  await setNumber(page, '#epochs', RUN.epochs);
  await setNumber(page, '#lr', RUN.lr);
  await setNumber(page, '#batch', RUN.batch);
  await setNumber(page, '#eval-n', RUN.evalN);
  if (RUN.more) {
    // "More settings" takes any run.toml key as the CLI's command line does: a misspelt one is
    // refused naming the nearest, before anything trains.
    await page.click('#more-settings summary');
    await page.fill('#overrides', 'train.lerning_rate=0.1');
    await page.click('#start');
    await page.locator('#error').waitFor({ timeout: 60_000 });
    assert.match(await page.locator('#error').textContent(),
      /more settings: unknown key `lerning_rate`; did you mean `learning_rate`\?/);
    await page.locator('#start:enabled').waitFor({ timeout: 60_000 });
    await page.fill('#overrides', RUN.more.join('\n'));
  }
  await page.click('#start');
  await page.locator('#trainable').waitFor({ timeout: 300_000 });
  if (RUN.more) {
    // The run the worker made holds the page's numbers and the extra keys.
    const spec = await page.locator('#run-spec pre').textContent();
    for (const line of [...RUN.more.map((kv) => kv.replace(/^[a-z_]+\./, '').replace('=', ' = ')), `lr = ${RUN.lr}`]) {
      assert.ok(spec.includes(line), `run.toml lacks "${line}":\n${spec}`);
    }
  }
  const trainable = await page.locator('#trainable').textContent();
  assert.equal(trainable, 'trainable params: 7,680 || all params: 2,485,395 || trainable%: 0.3090');
  await page.locator('#run-state', { hasText: 'running' }).waitFor({ timeout: 600_000 });
  mark('zero-shot scored, training');
  await page.locator('#loss-first').waitFor({ timeout: 600_000 });
  await shot('3-training');
  await page.locator('#run-state', { hasText: /finished|stopped/ }).waitFor({ timeout: 30 * 60_000 });
  assert.equal(await page.locator('#run-state').textContent(), 'finished',
    `the run stopped: ${await page.locator('#error').textContent().catch(() => '')}`);
  mark(`finished: ${await page.locator('#progress').textContent()}`);
}

for (const backend of ['webgpu', 'cpu']) {
  test(`tune, ask and export on ${backend}`, { timeout: 40 * 60_000 }, async () => {
    const RUN = { ...runFor(backend), more: backend === 'cpu' ? ['train.warmup_steps=5', 'train.max_grad_norm=2.0'] : undefined };
    const app = await openApp(backend);
    const { browser, page, requests, offOrigin, logs, shot, mark } = app;
    try {
      await tune(app, backend, RUN);
      const [lossFirst, lossLast] = [await number(page, '#loss-first'), await number(page, '#loss-last')];
      const [accStart, accLast] = [await number(page, '#acc-start'), await number(page, '#acc-last')];
      console.log(`[${backend}] loss ${lossFirst} -> ${lossLast}; overall accuracy ${accStart} -> ${accLast} %`);
      assert.ok(lossLast < lossFirst, `the loss did not fall: ${lossFirst} -> ${lossLast}`);
      assert.ok(accLast > accStart, `the accuracy did not rise: ${accStart} -> ${accLast}`);
      await shot('4-tuned');

      // Ask about an image the page has never seen, picked from disk.
      const { image, question } = testImage(path.join(ART, `${backend}-image`));
      await page.setInputFiles('#ask-image', image);
      await page.locator('#drop img').waitFor();
      await page.fill('#question', question);
      await page.click('#ask-button');
      const row = page.locator('#answers tbody tr').first();
      await row.waitFor({ timeout: 300_000 });
      const pageBase = (await row.locator('td.base').textContent()).trim();
      const pageTuned = (await row.locator('td.tuned').textContent()).trim();
      mark(`asked "${question}": base "${pageBase}", tuned "${pageTuned}"`);
      await shot('5-ask');

      // Export, download both files of the adapter folder and the zip.
      await page.click('#export-button');
      await page.locator('#download-adapter-zip').waitFor({ timeout: 300_000 });
      const adapter = path.join(ART, `${backend}-adapter`);
      fs.rmSync(adapter, { recursive: true, force: true });
      fs.mkdirSync(adapter, { recursive: true });
      for (const [id, name] of [['#download-adapter_config-json', 'adapter_config.json'],
        ['#download-adapter_model-safetensors', 'adapter_model.safetensors'], ['#download-adapter-zip', 'adapter.zip']]) {
        const [dl] = await Promise.all([page.waitForEvent('download'), page.click(id)]);
        await dl.saveAs(name.endsWith('.zip') ? path.join(ART, `${backend}-adapter.zip`) : path.join(adapter, name));
      }
      const cfg = JSON.parse(fs.readFileSync(path.join(adapter, 'adapter_config.json'), 'utf8'));
      assert.equal(cfg.peft_type, 'LN_TUNING');
      await shot('6-exported');

      // The native CLI on the exported files answers as the page did (greedy, 10 tokens).
      const args = ['infer', '--model', MODEL, '--image', image, '--question', question, '--num-beams', '1',
        '--max-new-tokens', '10', '--json', '--device', 'cpu'];
      const nativeBase = JSON.parse(native(args)).answer;
      const nativeTuned = JSON.parse(native([...args, '--adapter', adapter])).answer;
      console.log(`[${backend}] native: base "${nativeBase}", tuned "${nativeTuned}"`);
      assert.equal(pageBase, nativeBase, 'the page and the CLI disagree on the base model');
      assert.equal(pageTuned, nativeTuned, 'the page and the CLI disagree on the tuned model');

      // Importing the exported zip gives the same tuned answer again.
      await page.setInputFiles('#import-adapter', path.join(ART, `${backend}-adapter.zip`));
      await page.locator('#imported').waitFor({ timeout: 120_000 });
      await page.click('#ask-button');
      await page.locator('#answers tbody tr').nth(1).waitFor({ timeout: 300_000 });
      assert.equal((await page.locator('#answers tbody tr').first().locator('td.tuned').textContent()).trim(), nativeTuned);

      assert.equal(await page.locator('#crashed').count(), 0, 'the worker crashed');
      assert.deepEqual(offOrigin, [], 'requests left the origin');
      // Nothing persistent was stored (no storage is used unless the user asks), ...
      const stored = { ...await page.evaluate(async () => ({ local: localStorage.length, session: sessionStorage.length,
        cookies: document.cookie, indexedDB: (await indexedDB.databases()).map((d) => d.name), caches: await caches.keys() })),
      opfs: await opfsNames(page) };
      assert.deepEqual(stored, { local: 0, session: 0, cookies: '', indexedDB: [], caches: [], opfs: [] });
      // ... and the page's Content-Security-Policy refuses a connection off the origin.
      const refused = await page.evaluate(() => new Promise((resolve) => {
        document.addEventListener('securitypolicyviolation', (e) => resolve(e.effectiveDirective), { once: true });
        fetch('http://127.0.0.2:9/').catch(() => {});
        setTimeout(() => resolve('not refused by the CSP'), 10_000);
      }));
      assert.equal(refused, 'connect-src');
      console.log(`[${backend}] ${requests.length} requests, all to ${origin}: ${[...new Set(requests.map((u) => new URL(u).pathname))].join(' ')}`);
    } catch (e) {
      await shot('failure').catch(() => {});
      console.log(`[${backend}] page console:\n${logs.slice(0, 60).join('\n')}`);
      throw e;
    } finally {
      await browser.close();
    }
  });
}

// Training leaks are a plague of browser training: 200+ micro-batches on the CPU backend (all
// tensors live in the worker's WebAssembly memory, which never shrinks), and the memory after
// warm-up must not grow. 2 studies (17 questions) in batches of 2: 9 micro-batches an epoch.
test('the worker\'s memory stays flat over 200 training steps', { timeout: 30 * 60_000 }, async () => {
  const RUN = { ...runFor('cpu'), studies: 2, epochs: +env('MEMORY_EPOCHS', 23), batch: 2, evalN: 1 };
  const app = await openApp('cpu-memory');
  try {
    await tune(app, 'cpu', RUN);
    const trace = (await app.page.locator('#memory').getAttribute('data-trace')).trim().split(/\s+/)
      .map((t) => t.split(':').map(Number));
    const last = trace[trace.length - 1];
    assert.ok(last[0] >= 200 || env('MEMORY_EPOCHS', null) !== null, `only ${last[0]} steps`);
    // Warm-up: the first five epochs (evaluation and the allocator's pools reach their size).
    const warm = trace.find(([pos]) => pos >= 45);
    const growth = last[1] - warm[1];
    console.log(`[cpu-memory] wasm memory: ${trace[0][1]} MiB after step 1, ${warm[1]} MiB after step ${warm[0]}, ` +
      `${last[1]} MiB after step ${last[0]} (growth after warm-up ${growth.toFixed(3)} MiB)`);
    assert.ok(growth <= 1.0, `the worker's memory grew ${growth.toFixed(3)} MiB between steps ${warm[0]} and ${last[0]}`);
    assert.deepEqual(app.offOrigin, [], 'requests left the origin');
  } catch (e) {
    await app.shot('failure').catch(() => {});
    console.log(`[cpu-memory] page console:\n${app.logs.slice(0, 60).join('\n')}`);
    throw e;
  } finally {
    await app.browser.close();
  }
});

// A host that cannot send COOP/COEP: no shared memory, so the CPU backend runs trunk's worker on
// one thread, and still loads and answers.
test('without cross-origin isolation the CPU backend runs on one thread', { timeout: 10 * 60_000 }, async () => {
  const app = await openApp('plain');
  const { page, mark } = app;
  try {
    const device = await openOn(page, 'cpu', '/plain/');
    mark(`device: ${device}`);
    assert.equal(await page.evaluate(() => self.crossOriginIsolated), false);
    assert.match(device, /burn flex on one wasm thread/);
    await page.click('#load-demo');
    await page.locator('#model-info').waitFor({ timeout: 120_000 });
    assert.match(await page.locator('#model-info').textContent(), /2,485,395 parameters/);
    // "Time a step" on synthetic inputs (no data drawn): ten timed steps after two untimed ones,
    // on the device the page names.
    const t = await timeSteps(page, 'lora', 2);
    mark(`timed: ${t.text}`);
    assert.equal(t.ms.length, 10);
    assert.ok(t.ms.every((v) => Number.isFinite(v) && v > 0), `step times ${t.ms}`);
    const sorted = [...t.ms].sort((a, b) => a - b);
    assert.ok(Math.abs(t.median - (sorted[4] + sorted[5]) / 2) < 1e-3, `median ${t.median} of ${sorted}`);
    assert.match(t.text, /^lora, batch 2: \d+ ms a step \(median of 10, .*after 2 untimed\) on burn flex on one wasm thread/);
    assert.equal(await page.locator('#crashed').count(), 0, 'the worker crashed');
    assert.deepEqual(app.offOrigin, [], 'requests left the origin');
  } catch (e) {
    await app.shot('failure').catch(() => {});
    console.log(`[plain] page console:\n${app.logs.slice(0, 60).join('\n')}`);
    throw e;
  } finally {
    await app.browser.close();
  }
});

// Keeping a model in the browser, on request: a quota too small for it gives a message and keeps
// nothing; with room, the model is kept, listed, loaded on a later visit (a new page and worker in
// the same browser profile) without picking files, and deleted, leaving OPFS empty.
test('a model kept in the browser loads on a later visit; a full quota is reported', { timeout: 15 * 60_000 }, async () => {
  const app = await openApp('cache');
  const { page, shot, mark } = app;
  try {
    await openOn(page, 'cpu');
    await page.locator('#kept-empty').waitFor({ timeout: 60_000 });
    await page.click('#load-demo');
    await page.locator('#model-info').waitFor({ timeout: 120_000 });

    // 2 MB of quota for a 5 MB model (Chromium's DevTools protocol sets the origin's quota).
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 2_000_000 });
    await page.click('#keep-model');
    // Any error, so that a wrong one fails here with its text (not a timeout).
    const error = page.locator('#error');
    await error.waitFor({ timeout: 120_000 });
    const message = await error.textContent();
    mark(`quota: ${message}`);
    assert.match(message, /^browser storage is full: the browser refused to keep `normtune-demo-base` \(5\.0 MB; QuotaExceededError.*nothing was kept/);
    await shot('1-quota');
    await page.locator('#kept-empty').waitFor();
    assert.deepEqual(await opfsNames(page), [], 'a failed keep left files behind');
    await cdp.send('Storage.overrideQuotaForOrigin', { origin });

    await page.click('#keep-model');
    const kept = page.locator('#kept li[data-key="normtune-demo-base"]');
    await kept.waitFor({ timeout: 120_000 });
    assert.match(await kept.textContent(), /normtune-demo-base · 5\.0 MB in 5 files · kept /);
    assert.match(await page.locator('#storage-usage').textContent(), /This site stores [\d.]+ MB of the [\d.]+ MB/);
    assert.deepEqual(await opfsNames(page), ['normtune-models']);
    await shot('2-kept');

    // A later visit: fresh page, fresh worker, nothing loaded; the kept model loads from OPFS.
    mark(`device: ${await openOn(page, 'cpu')}`);
    assert.equal(await page.locator('#model-info').count(), 0);
    await kept.locator('button.load').click();
    await page.locator('#model-info').waitFor({ timeout: 120_000 });
    assert.match(await page.locator('#model-info').textContent(), /^normtune-demo-base · .*2,485,395 parameters/);
    mark('loaded from the browser');
    await shot('3-loaded');

    await kept.locator('button.delete').click();
    await page.locator('#kept-empty').waitFor({ timeout: 60_000 });
    assert.deepEqual(await opfsNames(page), [], 'deleting the kept model left files behind');
    assert.equal(await page.locator('#crashed').count(), 0, 'the worker crashed');
    assert.deepEqual(app.offOrigin, [], 'requests left the origin');
  } catch (e) {
    await shot('failure').catch(() => {});
    console.log(`[cache] page console:\n${app.logs.slice(0, 60).join('\n')}`);
    throw e;
  } finally {
    await app.browser.close();
  }
});

// The app is built with WebAssembly SIMD: a browser without it gets one plain sentence (from
// boot.js) and no attempt to load the module. Simulated by making `WebAssembly.validate` say no.
test('a browser without WebAssembly SIMD is told so plainly', { timeout: 5 * 60_000 }, async () => {
  const app = await openApp('no-simd');
  try {
    await app.page.addInitScript(() => { WebAssembly.validate = () => false; });
    await app.page.goto(origin + '/');
    const msg = app.page.locator('#no-simd');
    await msg.waitFor({ timeout: 60_000 });
    assert.match(await msg.textContent(), /^normtune needs WebAssembly SIMD, which this browser does not have\./);
    // (trunk's `<link rel=preload>` still downloads the module; it is never compiled.)
    assert.equal(await app.page.locator('#device-status').count(), 0, 'the app started anyway');
  } catch (e) {
    await app.shot('failure').catch(() => {});
    console.log(`[no-simd] page console:\n${app.logs.slice(0, 60).join('\n')}`);
    throw e;
  } finally {
    await app.browser.close();
  }
});
