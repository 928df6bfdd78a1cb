// Drives the page in headless Chromium (Debian's package, Chrome's software WebGPU adapter)
// for tests/web.rs: node browser.mjs BASE_URL OUT_DIR
//
// OUT_DIR holds the inputs the Rust test prepared (step-<model>-init.safetensors and
// step-<model>-batch.safetensors) and receives what the page produced: step-<model>-web.safetensors,
// model.safetensors (the checkpoint the page downloads), bench.json (the benchmark view's
// records), pad.png (the drawn digit) and
// results.json (the page's lines, details, prediction, errors and timings). It checks nothing
// itself beyond the page reaching each state; tests/web.rs asserts.

import { chromium } from 'playwright-core';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [base, out] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const FLAGS = ['--headless=new', '--no-sandbox', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic'];
const results = {};

/// A page in `context` (a browser context: its own storage) with every uncaught error and
/// console error collected.
async function open(context, url) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`uncaught: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  const t0 = Date.now();
  await page.goto(url);
  return { page, errors, t0 };
}

async function until(page, what, test, seconds) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const s = await page.evaluate(() => ({ phase: window.wgslCnn.phase, errors: window.wgslCnn.errors, lines: window.wgslCnn.lines }));
    if (test(s)) return s;
    if (s.phase === 'failed') throw new Error(`${what}: the page failed: ${s.errors.join('; ')}`);
    if (Date.now() > deadline) throw new Error(`${what}: not reached in ${seconds} s (phase ${s.phase})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

// 1. Without WebGPU: the page says so, and nothing is thrown.
{
  const browser = await chromium.launch({ executablePath, args: FLAGS });
  const { page, errors } = await open(await browser.newContext(), base);
  await until(page, 'the no-WebGPU message', (s) => s.phase === 'failed' || s.phase === 'ready', 60).catch(() => {});
  results.no_webgpu = { phase: await page.evaluate(() => window.wgslCnn.phase), status: await page.textContent('#status'), errors };
  await browser.close();
}

const browser = await chromium.launch({ executablePath, args: [...FLAGS, '--enable-unsafe-webgpu'] });
// One context for what follows: its pages share the browser's storage, where the page keeps the
// adapter's kernel choices.
const context = await browser.newContext({ acceptDownloads: true });

// 2. One `step` per model from the test's files, and the benchmark view.
{
  const { page, errors } = await open(context, base);
  await until(page, 'the page ready', (s) => s.phase === 'ready', 300);
  results.adapter = await page.evaluate(() => window.wgslCnn.adapter);
  results.step = {};
  for (const model of ['lenet5', 'tied']) {
    const b64 = (f) => readFileSync(join(out, `step-${model}-${f}.safetensors`)).toString('base64');
    const t = Date.now();
    const got = await page.evaluate(([i, b]) => window.wgslCnn.step(i, b, 0.001), [b64('init'), b64('batch')]);
    writeFileSync(join(out, `step-${model}-web.safetensors`), Buffer.from(got, 'base64'));
    results.step[model] = { ms: Date.now() - t };
  }
  // The benchmark view: a small run, its JSON downloaded as a user would.
  await page.fill('#bench-batch', '20');
  await page.fill('#bench-repeats', '2');
  await page.click('#bench-run');
  await page.waitForFunction(() => window.wgslCnn.bench || window.wgslCnn.phase === 'failed', null, { timeout: 600000, polling: 250 });
  const benchFile = page.waitForEvent('download');
  await page.click('#bench-save');
  await (await benchFile).saveAs(join(out, 'bench.json'));
  results.bench_table = await page.evaluate(() => window.wgslCnn.bench && window.wgslCnn.bench.table);
  results.step_errors = errors;
  await page.close();
}

// 3. A short training run from the URL's options, the checkpoint download, a drawn digit.
{
  const query = '?model=lenet5&epochs=1&batch-size=50&limit-train=600&log-every=1&seed=3&autostart=1';
  const { page, errors, t0 } = await open(context, base + query);
  await until(page, 'the first logged step', (s) => s.lines.length > 0, 600);
  results.first_line_ms = Date.now() - t0;
  await until(page, 'training', (s) => s.phase === 'trained', 900);
  results.train = await page.evaluate(() => ({
    lines: window.wgslCnn.lines, epochs: window.wgslCnn.epochs, details: window.wgslCnn.details,
    host_ms_per_step: window.wgslCnn.hostMsPerStep, summary: window.wgslCnn.summary, kernels: window.wgslCnn.kernels,
    tuning: window.wgslCnn.tuning, stored: JSON.parse(localStorage.getItem(window.wgslCnn.tuning.key) || 'null'),
  }));
  const download = page.waitForEvent('download');
  await page.click('#save');
  await (await download).saveAs(join(out, 'model.safetensors'));

  // A "7": a bar across the top and a stroke down to the lower left.
  await page.locator('#pad').scrollIntoViewIfNeeded();
  const box = await page.locator('#pad').boundingBox();
  const at = (x, y) => [box.x + x * box.width, box.y + y * box.height];
  const strokes = [[[0.25, 0.22], [0.75, 0.22], [0.45, 0.8]]];
  for (const stroke of strokes) {
    await page.mouse.move(...at(...stroke[0]));
    await page.mouse.down();
    for (const p of stroke.slice(1)) await page.mouse.move(...at(...p), { steps: 12 });
    await page.mouse.up();
  }
  await page.click('#predict');
  await page.waitForFunction(() => window.wgslCnn.prediction !== null, null, { timeout: 120000 });
  results.prediction = await page.evaluate(() => window.wgslCnn.prediction);
  const png = await page.evaluate(() => window.wgslCnn.padPng());
  writeFileSync(join(out, 'pad.png'), Buffer.from(png.split(',')[1], 'base64'));
  results.train_errors = errors;

  // 4. The same run again: the kernel choices come from the browser's storage, and the run
  // repeats line for line.
  const t1 = Date.now();
  await page.goto(base + query);
  await until(page, 'the first logged step again', (s) => s.lines.length > 0, 600);
  results.again_first_line_ms = Date.now() - t1;
  await until(page, 'training again', (s) => s.phase === 'trained', 900);
  results.again = await page.evaluate(() => ({ lines: window.wgslCnn.lines, kernels: window.wgslCnn.kernels, tuning: window.wgslCnn.tuning }));
  results.again_errors = errors;
}
await browser.close();

writeFileSync(join(out, 'results.json'), JSON.stringify(results, null, 1));
console.log(`browser run done: ${JSON.stringify({ adapter: results.adapter, first_line_ms: results.first_line_ms, step: results.step })}`);
