// Times each given wasm module's `run` on the demo model's product shapes in one headless
// Chromium page, the modules alternated each round; prints the median ms and GFLOP/s per shape.
//   node time.mjs A.wasm B.wasm ...   (SHAPES='[[m,n,k],...]' to choose shapes)
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { chromium } = createRequire(path.join(here, '../../../tests/e2e/package.json'))('playwright-core');
const files = process.argv.slice(2);
const shapes = JSON.parse(process.env.SHAPES || '[[1040,512,128],[1040,128,512],[1040,128,128],[128,512,1040],[65,65,32]]');
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
const page = await browser.newPage();
const res = await page.evaluate(async ({ mods, shapes, rounds }) => {
  const inst = [];
  for (const b64 of mods) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    inst.push((await WebAssembly.instantiate(bytes, {})).instance.exports);
  }
  const out = {};
  for (const [m, n, k] of shapes) {
    const flops = 2 * m * n * k;
    const iters = Math.max(3, Math.round(2e9 / flops));
    for (const e of inst) e.run(m, n, k, iters); // V8 compiles the hot code
    const t = inst.map(() => []);
    for (let r = 0; r < rounds; r++) {
      inst.forEach((e, i) => {
        const t0 = performance.now();
        e.run(m, n, k, iters);
        t[i].push((performance.now() - t0) / iters);
      });
    }
    out[`${m}x${k} by ${k}x${n}`] = t.map((ts) => {
      ts.sort((a, b) => a - b);
      const med = ts[ts.length >> 1];
      return `${med.toFixed(3)} ms ${(flops / med / 1e6).toFixed(1)} GFLOP/s`;
    });
  }
  return out;
}, { mods: files.map((f) => fs.readFileSync(f).toString('base64')), shapes, rounds: 7 });
console.log(`| shape | ${files.join(' | ')} |\n|---|${files.map(() => '---|').join('')}`);
for (const [shape, cols] of Object.entries(res)) console.log(`| ${shape} | ${cols.join(' | ')} |`);
await browser.close();
