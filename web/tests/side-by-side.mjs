// The page against the native program on the same software driver, interleaved:
//   node web/tests/side-by-side.mjs [ROUNDS]        (from the repository root, after
//   cargo build --release and scripts/web.sh --build-only)
// Native: `wgsl-cnn --autotune off train` on SwiftShader's Vulkan driver from Debian's chromium
// package (VK_ICD_FILENAMES); the page: Chrome's WebGPU on the same SwiftShader. Both train
// LeNet-5 on the first 1,000 images of the offline subset in batches of 100 with the fixed kernel
// rules (the page has no tuner), logging every step. Reports start (process start, or page load
// with the data served locally) to the first logged step, and the time per step: the median gap
// between the loss lines of steps 2..10 as they appear (both wait for the device before a line
// can print: the CLI at most two reads behind it, the page after every call), so the first
// step's pipeline creation is left out.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const rounds = Number(process.argv[2] || 2);
const bin = 'target/release/wgsl-cnn';
const icd = process.env.SWIFTSHADER_ICD || execFileSync('sh', ['-c', 'dpkg -S vk_swiftshader_icd.json | cut -d" " -f2 | head -1']).toString().trim();
const opts = ['--epochs', '1', '--batch-size', '100', '--limit-train', '1000', '--log-every', '1'];
const query = '?model=lenet5&epochs=1&batch-size=100&limit-train=1000&log-every=1&autostart=1';

function median(v) {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/// The median gap between consecutive times (of steps 1..n: the gaps of steps 2..n).
function perStep(times) {
  return median(times.slice(1).map((t, i) => t - times[i]));
}

async function native() {
  const dir = mkdtempSync(join(tmpdir(), 'wgsl-cnn-sbs-'));
  const t0 = Date.now();
  const child = spawn(bin, ['--autotune', 'off', 'train', '--data-dir', 'assets/mnist-subset', ...opts, '--save', join(dir, 'm.safetensors'), '--no-plots', '--no-progress'],
    { env: { ...process.env, VK_ICD_FILENAMES: icd, WGPU_BACKEND: 'vulkan' }, stdio: ['ignore', 'pipe', 'ignore'] });
  const times = [];
  for await (const line of createInterface({ input: child.stdout })) {
    if (line.startsWith('Epoch')) times.push(Date.now() - t0);
  }
  await new Promise((r) => child.on('close', r));
  return { first: times[0], step: perStep(times) };
}

async function page(url) {
  const out = execFileSync('node', ['web/tests/timing.mjs', url + query]).toString();
  const r = JSON.parse(out.trim().split('\n').pop());
  return { first: r.first_logged_step_ms, step: perStep(r.line_ms), host: r.host_ms };
}

const serve = spawn(bin, ['serve', '--port', '0', '--offline', '--data-dir', 'assets/mnist-subset'], { stdio: ['ignore', 'pipe', 'ignore'] });
const url = await new Promise((resolve) => {
  createInterface({ input: serve.stdout }).on('line', (l) => { const m = l.match(/http:\/\/\S+\//); if (m) resolve(m[0]); });
});
const rows = [];
for (let i = 0; i < rounds; i++) {
  const n = await native();
  const w = await page(url);
  rows.push({ round: i + 1, native_first_ms: n.first, page_first_ms: w.first, native_step_ms: n.step, page_step_ms: w.step, page_host_ms: w.host });
  console.log(JSON.stringify(rows[rows.length - 1]));
}
serve.kill();
const m = (k) => median(rows.map((r) => r[k]));
console.log(`median of ${rounds}: step native ${m('native_step_ms').toFixed(0)} ms, page ${m('page_step_ms').toFixed(0)} ms ` +
  `(page/native ${(m('page_step_ms') / m('native_step_ms')).toFixed(2)}); start to first logged step native ${m('native_first_ms')} ms, ` +
  `page ${m('page_first_ms')} ms (${(m('page_first_ms') / m('native_first_ms')).toFixed(2)}); page host ${m('page_host_ms').toFixed(2)} ms per step`);
