// The README's picture of the page: node web/tests/screenshot.mjs URL OUT.png
// Trains LeNet-5 for one epoch on what the server offers (the subset in CI-like runs), draws a
// 7 on the pad, predicts it and takes a full-page screenshot.
import { chromium } from 'playwright-core';

const [url, out] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless=new', '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--disable-quic', '--enable-unsafe-webgpu'],
});
const page = await browser.newPage({ viewport: { width: 1040, height: 900 } });
await page.goto(url + '?model=lenet5&epochs=1&batch-size=100&log-every=5&autostart=1');
await page.waitForFunction(() => ['trained', 'failed'].includes(window.wgslCnn.phase), null, { timeout: 900000, polling: 500 });
await page.locator('#pad').scrollIntoViewIfNeeded();
const box = await page.locator('#pad').boundingBox();
const at = (x, y) => [box.x + x * box.width, box.y + y * box.height];
await page.mouse.move(...at(0.25, 0.22));
await page.mouse.down();
await page.mouse.move(...at(0.75, 0.22), { steps: 12 });
await page.mouse.move(...at(0.45, 0.8), { steps: 12 });
await page.mouse.up();
await page.click('#predict');
await page.waitForFunction(() => window.wgslCnn.prediction !== null || window.wgslCnn.phase === 'failed', null, { timeout: 120000 });
const errors = await page.evaluate(() => window.wgslCnn.errors);
if (errors.length) throw new Error(errors.join('; '));
await page.screenshot({ path: out, fullPage: true });
console.log(await page.evaluate(() => window.wgslCnn.lines.join('\n')));
await browser.close();
