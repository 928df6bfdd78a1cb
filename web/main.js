// The page: opens WebGPU through the wasm build of the library (pkg/, made by scripts/web.sh),
// loads the data set from the server, and awaits the library's Trainer a few steps at a time so
// that the tab stays responsive. Everything it prints is what the library returns (the seed's
// lines); nothing here trains or checks on its own.

import init, { Session } from './pkg/wgsl_cnn.js';
import { drawCurve, confusionTable, setupPad } from './view.js';

const $ = (id) => document.getElementById(id);
// What the page has done, for people reading the console and for the browser tests.
const state = { phase: 'starting', lines: [], lineTimes: [], kernels: [], errors: [], epochs: [], adapter: null, dataReport: null, details: null, prediction: null };
window.wgslCnn = state;

const WEBGPU_HELP = 'Use a browser that ships WebGPU: Chrome or Edge 113 or later (Windows, macOS, ChromeOS), ' +
  'Chrome 121+ on Android, Safari 26+, Firefox 141+ on Windows; on Linux, Chrome with chrome://flags/#enable-unsafe-webgpu.';

function status(text, kind = 'ok') {
  const el = $('status');
  el.textContent = text;
  el.className = 'status ' + kind;
}

function fail(text) {
  state.phase = 'failed';
  state.errors.push(text);
  status(text, 'error');
}

function median(v) {
  const s = [...v].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
}

function message(e) {
  return e && e.message ? e.message : String(e);
}

/// The CLI's flags from the URL (`?model=lenet5&epochs=1&batch-size=100&autostart=1`) into the form.
function readQuery() {
  const q = new URLSearchParams(location.search);
  const form = $('options');
  for (const [k, v] of q) {
    if (form.elements[k]) form.elements[k].value = v;
  }
  return q;
}

function options() {
  const f = $('options').elements;
  const num = (k) => Number(f[k].value);
  const q = new URLSearchParams(location.search);
  return {
    model: f.model.value, epochs: num('epochs'), batch_size: num('batch-size'), lr: num('lr'), seed: num('seed'),
    limit_train: num('limit-train'), log_every: q.has('log-every') ? Number(q.get('log-every')) : undefined,
    autotune: f.autotune.value,
  };
}

/// This adapter's kernel choices, kept in the browser's storage under the key the library
/// names (adapter, driver, build): read once the device is open, written after each tuning.
function loadTuning() {
  const key = session.tuning_key();
  state.tuning = { key, loaded: 0 };
  if (!key) return;
  try {
    const text = localStorage.getItem(key);
    if (text) state.tuning.loaded = session.load_tuning(text);
  } catch (e) {
    // Storage turned off, or a damaged entry: the choices are measured again.
    console.warn(`kernel choices not read from the browser's storage: ${message(e)}`);
  }
}

function saveTuning() {
  const key = session.tuning_key();
  if (!key) return;
  try {
    localStorage.setItem(key, session.tuning_json());
  } catch (e) {
    console.warn(`kernel choices not kept in the browser's storage: ${message(e)}`);
  }
}

function log(line) {
  state.lines.push(line);
  state.lineTimes.push(performance.now());
  show(line);
}

function show(line) {
  const el = $('log');
  el.textContent += line + '\n';
  el.scrollTop = el.scrollHeight;
}

async function fetchBytes(url, onProgress) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  const total = Number(r.headers.get('content-length')) || 0;
  const reader = r.body.getReader();
  const chunks = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    got += value.length;
    onProgress(got, total);
  }
  const out = new Uint8Array(got);
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}

let session = null;

async function loadServedData() {
  const dataset = $('options').elements.dataset.value;
  const index = await (await fetch('/data/')).json();
  if (index.dataset !== dataset) {
    throw new Error(`the server offers ${index.dataset}, not ${dataset}: restart it with \`wgsl-cnn serve --dataset ${dataset}\`, or pick the files`);
  }
  const files = index.files;
  let done = 0;
  for (const name of files) {
    const bytes = await fetchBytes('/data/' + name, (got, total) => {
      $('data').textContent = `loading ${name}: ${(got / 1e6).toFixed(1)}` + (total ? ` of ${(total / 1e6).toFixed(1)} MB` : ' MB');
      $('progress').value = (done + (total ? got / total : 0)) / files.length;
    });
    session.add_file(name, bytes);
    done += 1;
  }
  const checksums = index.checksums ? await (await fetch('/data/IDX-MD5SUMS')).text() : undefined;
  return session.load_data(dataset, location.origin + '/data', checksums);
}

async function loadPickedData(fileList) {
  for (const f of fileList) session.add_file(f.name, new Uint8Array(await f.arrayBuffer()));
  return session.load_data($('options').elements.dataset.value, 'the picked files', undefined);
}

function dataLoaded(report) {
  state.dataReport = report;
  $('data').textContent = report.split('\n').filter((l) => l.includes('images of') || l.startsWith('checksums') || l.startsWith('note')).join(' · ');
  $('start').disabled = false;
}

let paused = false;
let resume = null;
let running = false;

/// Steps per `advance` call: about 50 ms of device work, so that a fast GPU is not held back by
/// a wait per step and a slow one still lets the page redraw.
function stepsPerCall(msPerStep) {
  return Math.max(1, Math.min(200, Math.round(50 / Math.max(msPerStep, 0.01))));
}

async function train() {
  running = true;
  $('start').disabled = true;
  $('bench-run').disabled = true;
  $('pause').disabled = false;
  state.phase = 'training';
  state.lines = [];
  state.lineTimes = [];
  state.losses = [];
  state.epochs = [];
  state.kernels = [];
  $('log').textContent = '';
  const losses = [];
  const summary = JSON.parse(session.start(JSON.stringify(options())));
  state.summary = summary;
  const epochs = options().epochs;
  let perCall = 1;
  let msPerStep = 0;
  let started = performance.now();
  const hostPerStep = [];
  for (;;) {
    if (paused) await new Promise((r) => { resume = r; });
    const t0 = performance.now();
    const r = JSON.parse(await session.advance(perCall));
    const wall = performance.now() - t0;
    // The first call measured the kernel choices this run had none for (`autotune`).
    if (r.events.some((e) => e.kind === 'kernel')) saveTuning();
    // Per call, ms of host time per step; the first call's includes creating the pipelines.
    if (r.recorded > 0) hostPerStep.push(r.host_ms / r.recorded);
    msPerStep = wall / Math.max(1, r.recorded);
    perCall = stepsPerCall(msPerStep);
    for (const e of r.events) {
      if (e.kind === 'loss') { losses.push(e.loss); state.losses.push(e); drawCurve($('curve'), losses); }
      if (e.kind === 'epoch') state.epochs.push(e);
      // Kernel choices go beside the seed's lines, as the CLI prints them on stderr.
      if (e.kind === 'kernel') { state.kernels.push(e.line); show(`kernel: ${e.line}`); } else if (e.line) log(e.line);
    }
    const epochDone = r.done ? epochs : r.epoch;
    $('progress').value = (epochDone * summary.n_train + (r.done ? 0 : r.images)) / (epochs * summary.n_train);
    const secs = (performance.now() - started) / 1000;
    state.hostMsPerStep = median(hostPerStep.slice(1).length ? hostPerStep.slice(1) : hostPerStep);
    $('rate').textContent = `${Math.round((epochDone * summary.n_train + (r.done ? 0 : r.images)) / secs)} images/s · ` +
      `host ${state.hostMsPerStep.toFixed(2)} ms per step (record + submit, median)`;
    if (r.done) break;
    await new Promise((r) => setTimeout(r, 0));
  }
  running = false;
  $('pause').disabled = true;
  $('start').disabled = false;
  $('bench-run').disabled = false;
  await afterModel();
  state.phase = 'trained';
}

async function afterModel() {
  const d = JSON.parse(await session.details());
  state.details = d;
  $('details').replaceChildren(confusionTable(d));
  $('predict').disabled = false;
  $('save').disabled = false;
}

async function predict() {
  const pad = $('pad');
  const img = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height).data;
  const gray = new Uint8Array(pad.width * pad.height);
  for (let i = 0; i < gray.length; i++) gray[i] = img[4 * i];
  let p;
  try {
    p = JSON.parse(await session.predict(pad.width, pad.height, gray));
  } catch (e) {
    // A blank pad and the like: said beside the pad, training is not affected.
    const li = document.createElement('li');
    li.textContent = message(e);
    $('top').replaceChildren(li);
    return;
  }
  state.prediction = p;
  $('top').replaceChildren(...p.top.map((t) => {
    const li = document.createElement('li');
    li.textContent = `${t.name}: ${(100 * t.probability).toFixed(1)} %`;
    return li;
  }));
  const seen = $('seen').getContext('2d');
  const data = seen.createImageData(28, 28);
  p.pixels.forEach((v, i) => { data.data.set([v, v, v, 255], 4 * i); });
  seen.putImageData(data, 0, 0);
}

async function saveCheckpoint() {
  const bytes = await session.checkpoint();
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
  a.download = 'model.safetensors';
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

async function loadCheckpoint(file) {
  const name = session.load_checkpoint(file.name, new Uint8Array(await file.arrayBuffer()));
  log(`loaded ${file.name} (model ${name})`);
  await afterModel();
}

async function bench() {
  $('bench-run').disabled = true;
  $('bench-table').textContent = 'running…';
  try {
    const options = {
      model: $('bench-model').value, batch: Number($('bench-batch').value), repeats: Number($('bench-repeats').value), warmup: 1,
      adapter: state.adapter.description, host: navigator.userAgent, threads: navigator.hardwareConcurrency || 1,
      autotune: $('options').elements.autotune.value,
    };
    const r = JSON.parse(await session.bench(JSON.stringify(options)));
    saveTuning();
    state.bench = r;
    $('bench-table').textContent = r.table;
    $('bench-save').disabled = false;
  } finally {
    $('bench-run').disabled = running;
  }
}

function saveBench() {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([JSON.stringify(state.bench.records, null, 1) + '\n'], { type: 'application/json' }));
  a.download = 'bench.json';
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

/// Runs `f`, showing its error on the page instead of leaving an uncaught rejection.
function guarded(f) {
  return async (...args) => {
    try {
      await f(...args);
    } catch (e) {
      running = false;
      fail(message(e));
    }
  };
}

// Test hook: one `wgsl-cnn step` on this device, files in and out as base64.
state.step = async (initB64, batchB64, lr) => {
  const b = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const out = await session.step(b(initB64), b(batchB64), lr);
  let s = '';
  for (let i = 0; i < out.length; i += 0x8000) s += String.fromCharCode(...out.subarray(i, i + 0x8000));
  return btoa(s);
};
state.padPng = () => $('pad').toDataURL('image/png');

async function boot() {
  const q = readQuery();
  setupPad($('pad'));
  $('clear').onclick = () => { setupPad($('pad')); $('top').replaceChildren(); };
  if (!navigator.gpu) {
    fail(`This browser offers no WebGPU (navigator.gpu is missing), so the page cannot train here. ${WEBGPU_HELP}`);
    return;
  }
  const adapter = await navigator.gpu.requestAdapter().catch(() => null);
  if (!adapter) {
    fail(`WebGPU is there but offers no adapter (the GPU is blocked or its driver is too old). ${WEBGPU_HELP}`);
    return;
  }
  status('Loading the wasm module…');
  await init();
  try {
    session = await Session.open();
  } catch (e) {
    fail(`Could not open a WebGPU device: ${message(e)}`);
    return;
  }
  loadTuning();
  const info = JSON.parse(session.adapter());
  // wgpu leaves the adapter's name empty on the web: the browser's own description names it.
  const web = adapter.info || {};
  info.description = [web.vendor, web.architecture, web.device, web.description].filter(Boolean).join(' ') || info.description;
  info.software = info.software || web.architecture === 'swiftshader' || adapter.isFallbackAdapter === true;
  state.adapter = info;
  if (info.software) {
    status(`WebGPU adapter: ${info.description}. This is a software adapter that runs on the CPU: ` +
      'training will be slow (about a second per LeNet-5 step). A real GPU is 100× faster.', 'warn');
  } else {
    status(`WebGPU adapter: ${info.description}`);
  }
  $('start').onclick = guarded(train);
  $('pause').onclick = () => {
    paused = !paused;
    $('pause').textContent = paused ? 'Resume' : 'Pause';
    if (!paused && resume) { resume(); resume = null; }
  };
  $('predict').onclick = guarded(predict);
  $('save').onclick = guarded(saveCheckpoint);
  $('bench-run').onclick = guarded(bench);
  $('bench-save').onclick = saveBench;
  $('bench-run').disabled = false;
  $('load').onchange = guarded(async (e) => loadCheckpoint(e.target.files[0]));
  $('pick').onchange = guarded(async (e) => dataLoaded(await loadPickedData(e.target.files)));
  state.phase = 'loading data';
  dataLoaded(await loadServedData());
  state.phase = 'ready';
  if (q.get('autostart') === '1') await train();
}

guarded(boot)();
