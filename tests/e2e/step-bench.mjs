// The browser's training step against native flex, measured in one run (BENCHMARKS.md, issue 27's
// yardstick): the page's "Time a step" (the demo model, synthetic inputs, median of 10 steps)
// in headless Chromium, and `normtune bench` on the same inputs natively on one thread
// (RAYON_NUM_THREADS=1) and on all, alternated over rounds. Prints each round, then per page the
// median step and the median of its ratios to the same round's native one-thread step.
//
//   node tests/e2e/step-bench.mjs [--rounds 3] [--method layernorm] [--batch 16]
//        [--page DIST[@PATH]]...
//
// --page: a trunk build and the path to open it at (default: www/dist at / (cross-origin
// isolated: the threaded CPU worker) and at /plain/ (one thread)); give it again to compare
// builds. NORMTUNE_BIN: the native binary (default: the release build under
// ~/.cache/normtune/release-cpu). Each page is opened in a fresh browser, and "Time a step" runs
// twice there: the first run lets V8 finish compiling, the second is the one reported. The pages'
// order rotates from round to round.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, openOn, serve, timeSteps } from './serve.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(`--${k}`); return i >= 0 ? args[i + 1] : d; };
const rounds = +opt('rounds', 3);
const method = opt('method', 'layernorm');
const batch = +opt('batch', 16);
const pages = args.flatMap((a, i) => (a === '--page' ? [args[i + 1]] : []));
if (pages.length === 0) pages.push(`${path.join(ROOT, 'www/dist')}@/`, `${path.join(ROOT, 'www/dist')}@/plain/`);
const BIN = process.env.NORMTUNE_BIN ?? path.join(os.homedir(), '.cache/normtune/release-cpu/release/normtune');
if (!fs.existsSync(BIN)) throw new Error(`no native binary at ${BIN} (NORMTUNE_BIN)`);

const median = (v) => { const s = [...v].sort((a, b) => a - b); const n = s.length; return n % 2 ? s[n >> 1] : (s[n / 2 - 1] + s[n / 2]) / 2; };

function native(threads) {
  const env = { ...process.env };
  if (threads) env.RAYON_NUM_THREADS = String(threads); else delete env.RAYON_NUM_THREADS;
  const out = execFileSync(BIN, ['bench', '--model', path.join(ROOT, 'core/assets/demo-base'), '--peft', method,
    '--batch', String(batch), '--warmup', '2', '--steps', '10', '--answers', '0', '--device', 'cpu', '--json'],
  { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] });
  return JSON.parse(out.trim().split('\n').pop()).step_ms_median;
}

const servers = new Map();
async function browser(page) {
  const [dist, at = '/'] = page.split('@');
  if (!servers.has(dist)) servers.set(dist, await serve(path.resolve(dist)));
  const { origin } = servers.get(dist);
  const b = await launch();
  try {
    const p = await (await b.newContext()).newPage();
    const device = await openOn(p, origin, 'cpu', at);
    await p.click('#load-demo');
    await p.locator('#model-info').waitFor({ timeout: 120_000 });
    await timeSteps(p, method, batch);
    const t = await timeSteps(p, method, batch);
    return { ms: t.median, device: device.replace(/: correct.*/, '') };
  } finally {
    await b.close();
  }
}

const rows = { 'native, 1 thread': [], [`native, ${os.cpus().length} threads`]: [] };
const devices = {};
for (let r = 1; r <= rounds; r++) {
  rows['native, 1 thread'].push(native(1));
  rows[`native, ${os.cpus().length} threads`].push(native(0));
  // The pages in a rotated order each round: a page's place in the round (after a browser has
  // just closed, say) must not become its result.
  for (const page of pages.map((_, i) => pages[(i + r - 1) % pages.length])) {
    const { ms, device } = await browser(page);
    (rows[page] ??= []).push(ms);
    devices[page] = device;
  }
  console.log(`round ${r}: ${Object.entries(rows).map(([k, v]) => `${k} ${v.at(-1).toFixed(1)} ms`).join(' | ')}`);
}
for (const s of servers.values()) s.server.close();
const one = rows['native, 1 thread'];
console.log(`\n${method}, batch ${batch}, demo model, ${rounds} rounds: the median over rounds of each step median,`);
console.log('and of its ratio to native flex on one thread in the same round');
console.log('| where | step (ms): median (each round) | × native 1 thread: median (each round) |\n|---|---:|---:|');
for (const [k, v] of Object.entries(rows)) {
  const ratios = v.map((x, i) => x / one[i]);
  console.log(`| ${devices[k] ? `${k} (${devices[k]})` : k} | ${median(v).toFixed(1)} (${v.map((x) => x.toFixed(0)).join(', ')}) | ` +
    `${median(ratios).toFixed(2)} (${ratios.map((x) => x.toFixed(2)).join(', ')}) |`);
}
