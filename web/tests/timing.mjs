// Times the page's training steps in headless Chromium (Chrome's software WebGPU adapter
// unless the machine has a GPU Chromium uses): node timing.mjs URL_WITH_QUERY
// Prints one JSON line: page load to the first logged step, and when each loss line appeared,
// so that the gaps between steps 2..n give the time per step without the first step's
// pipeline creation.
import { chromium } from 'playwright-core';

const [url] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless=new', '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--disable-quic', '--enable-unsafe-webgpu'],
});
const page = await browser.newPage();
const t0 = Date.now();
await page.goto(url);
let first = null;
for (;;) {
  const s = await page.evaluate(() => ({ phase: window.wgslCnn.phase, n: window.wgslCnn.lines.length, errors: window.wgslCnn.errors }));
  if (first === null && s.n > 0) first = Date.now() - t0;
  if (s.phase === 'trained') break;
  if (s.phase === 'failed') throw new Error(s.errors.join('; '));
  await new Promise((r) => setTimeout(r, 100));
}
// When each loss line appeared (ms, the page's clock), for the wall time between steps.
const r = await page.evaluate(() => ({ line_ms: window.wgslCnn.lineTimes.slice(0, window.wgslCnn.losses.length), host_ms: window.wgslCnn.hostMsPerStep, adapter: window.wgslCnn.adapter }));
console.log(JSON.stringify({ first_logged_step_ms: first, ...r }));
await browser.close();
