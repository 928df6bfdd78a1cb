// The page against the native program on the same software driver, interleaved:
//   node web/tests/side-by-side.mjs [ROUNDS] [REPEATS]      (from the repository root, after
//   cargo build --release and scripts/web.sh --build-only)
// Native: `wgsl-cnn --autotune off` on SwiftShader's Vulkan driver from Debian's chromium
// package (VK_ICD_FILENAMES); the page: Chrome's WebGPU on the same SwiftShader. Both use the
// fixed kernel rules (`--autotune off`, the page's `autotune=off`). Per round:
// - the step: `bench --no-cpu --batch 100` natively, the page's Benchmark view (batch 100): the
//   same end-to-end records (the step with a wait after each, back to back, the host's record +
//   submit on the wall clock);
// - start to the first logged step: LeNet-5 training on the offline subset, logging every step,
//   from process start natively, from page load (data served locally) in the page.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const rounds = Number(process.argv[2] || 2);
const repeats = String(process.argv[3] || 3);
const bin = 'target/release/wgsl-cnn';
const icd = process.env.SWIFTSHADER_ICD ||
  execFileSync('sh', ['-c', 'dpkg -L chromium chromium-common 2>/dev/null | grep -m1 vk_swiftshader_icd.json']).toString().trim();
const nativeEnv = { ...process.env, VK_ICD_FILENAMES: icd, WGPU_BACKEND: 'vulkan' };
const dir = mkdtempSync(join(tmpdir(), 'wgsl-cnn-sbs-'));
const FLAGS = ['--headless=new', '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--disable-quic', '--enable-unsafe-webgpu'];

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const pick = (records, kernel) => records.find((r) => r.kind === 'end_to_end' && r.kernel === kernel).median_ms;
const figures = (records) => ({ waited: pick(records, 'train_step'), back_to_back: pick(records, 'train_step_pipelined'), host: pick(records, 'train_step_recording_wall') });

function nativeBench() {
  const json = join(dir, 'native.json');
  execFileSync(bin, ['--autotune', 'off', 'bench', '--no-cpu', '--batch', '100', '--repeats', repeats, '--json', json], { env: nativeEnv, stdio: 'ignore' });
  return figures(JSON.parse(readFileSync(json, 'utf8')));
}

async function nativeFirstStep() {
  const t0 = Date.now();
  const child = spawn(bin, ['--autotune', 'off', 'train', '--data-dir', 'assets/mnist-subset', '--epochs', '1', '--limit-train', '300',
    '--log-every', '1', '--save', join(dir, 'm.safetensors'), '--no-plots', '--no-progress'], { env: nativeEnv, stdio: ['ignore', 'pipe', 'ignore'] });
  let first = null;
  for await (const line of createInterface({ input: child.stdout })) {
    if (first === null && line.startsWith('Epoch')) first = Date.now() - t0;
  }
  return first;
}

async function page(url, f) {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: FLAGS });
  try {
    return await f(await browser.newPage());
  } finally {
    await browser.close();
  }
}

const pageBench = (url) => page(url, async (p) => {
  await p.goto(url + '?autotune=off');
  await p.waitForFunction(() => ['ready', 'failed'].includes(window.wgslCnn.phase), null, { timeout: 300000, polling: 200 });
  await p.fill('#bench-batch', '100');
  await p.fill('#bench-repeats', repeats);
  await p.click('#bench-run');
  await p.waitForFunction(() => window.wgslCnn.bench, null, { timeout: 900000, polling: 500 });
  return figures(await p.evaluate(() => window.wgslCnn.bench.records));
});

const pageFirstStep = (url) => page(url, async (p) => {
  const t0 = Date.now();
  await p.goto(url + '?model=lenet5&epochs=1&limit-train=300&log-every=1&autotune=off&autostart=1');
  await p.waitForFunction(() => window.wgslCnn.lines.length > 0 || window.wgslCnn.phase === 'failed', null, { timeout: 300000, polling: 50 });
  return Date.now() - t0;
});

const serve = spawn(bin, ['serve', '--port', '0', '--offline', '--data-dir', 'assets/mnist-subset'], { stdio: ['ignore', 'pipe', 'ignore'] });
const url = await new Promise((resolve) => {
  createInterface({ input: serve.stdout }).on('line', (l) => { const m = l.match(/http:\/\/\S+\//); if (m) resolve(m[0]); });
});
const rows = [];
try {
  for (let i = 0; i < rounds; i++) {
    const n = nativeBench();
    const w = await pageBench(url);
    const nf = await nativeFirstStep();
    const wf = await pageFirstStep(url);
    const row = {
      round: i + 1, native_step_ms: n.waited, page_step_ms: w.waited, native_back_to_back_ms: n.back_to_back, page_back_to_back_ms: w.back_to_back,
      native_host_ms: n.host, page_host_ms: w.host, native_first_step_ms: nf, page_first_step_ms: wf,
    };
    rows.push(row);
    console.log(JSON.stringify(row));
  }
} finally {
  serve.kill();
}
const m = (k) => median(rows.map((r) => r[k]));
console.log(`medians of ${rounds} rounds (${repeats} repeats each), SwiftShader, LeNet-5 batch 100:`);
console.log(`  step, wait after each:  native ${m('native_step_ms').toFixed(1)} ms, page ${m('page_step_ms').toFixed(1)} ms (page/native ${(m('page_step_ms') / m('native_step_ms')).toFixed(2)})`);
console.log(`  step, back to back:     native ${m('native_back_to_back_ms').toFixed(1)} ms, page ${m('page_back_to_back_ms').toFixed(1)} ms (page/native ${(m('page_back_to_back_ms') / m('native_back_to_back_ms')).toFixed(2)})`);
console.log(`  host record + submit (wall clock): native ${m('native_host_ms').toFixed(3)} ms, page ${m('page_host_ms').toFixed(3)} ms`);
console.log(`  start to first logged step: native ${m('native_first_step_ms')} ms, page ${m('page_first_step_ms')} ms (page/native ${(m('page_first_step_ms') / m('native_first_step_ms')).toFixed(2)})`);
