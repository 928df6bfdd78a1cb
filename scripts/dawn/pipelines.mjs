// Creates every kernel's compute pipeline on Dawn (Chrome's WebGPU implementation, through
// the npm package `webgpu`), with the bind group layouts the program uses: binding 0 the
// uniform block, then one storage buffer per letter of kernels.tsv (r read-only, w
// read_write). Modules of kernels marked "subgroups" in kernels.tsv get the `enable
// subgroups;` line WebGPU requires (wgpu's naga takes them without) and need an adapter with
// the feature. Usage: node pipelines.mjs <folder written by examples/translate.rs>
// <folder holding node_modules/webgpu>. Exits 1 if any module or pipeline fails.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dir, prefix] = process.argv.slice(2);
const { create, globals } = await import(pathToFileURL(resolve(prefix, 'node_modules/webgpu/index.js')));
Object.assign(globalThis, globals);
const gpu = create([]);
const adapter = await gpu.requestAdapter();
if (!adapter) throw new Error('Dawn found no adapter');
const info = adapter.info;
console.log(`Dawn adapter: ${info.vendor} ${info.architecture} ${info.device} ${info.description}`);
const subgroups = adapter.features.has('subgroups');
console.log(`Dawn subgroups: ${subgroups ? `yes, size ${info.subgroupMinSize}..${info.subgroupMaxSize}` : 'no'}`);
// The limits the program asks for (src/gpu/context.rs device_limits).
const device = await adapter.requestDevice({
  requiredFeatures: subgroups ? ['subgroups'] : [],
  requiredLimits: {
    maxStorageBuffersPerShaderStage: Math.min(adapter.limits.maxStorageBuffersPerShaderStage, 16),
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
  },
});
let lost = false;
device.lost.then((l) => { lost = true; console.log(`device lost: ${l.message}`); });

const kernels = readFileSync(join(dir, 'kernels.tsv'), 'utf8').trim().split('\n').map((l) => l.split('\t'));
const modules = new Map();
let ok = 0;
let failed = 0;
for (const [file, entry, rw, , kind] of kernels) {
  const t0 = performance.now();
  device.pushErrorScope('validation');
  if (!modules.has(file)) {
    const enable = kind === 'subgroups' ? 'enable subgroups;\n' : '';
    const module = device.createShaderModule({ code: enable + readFileSync(join(dir, `${file}.wgsl`), 'utf8') });
    const msgs = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error');
    for (const m of msgs) console.log(`${file}.wgsl:${m.lineNum}:${m.linePos}: ${m.message}`);
    modules.set(file, module);
  }
  const entries = [{ binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } }];
  [...rw].forEach((c, i) => entries.push({
    binding: i + 1,
    visibility: GPUShaderStage.COMPUTE,
    buffer: { type: c === 'r' ? 'read-only-storage' : 'storage' },
  }));
  let err = null;
  try {
    const layout = device.createPipelineLayout({ bindGroupLayouts: [device.createBindGroupLayout({ entries })] });
    await device.createComputePipelineAsync({ layout, compute: { module: modules.get(file), entryPoint: entry } });
  } catch (e) {
    err = e.message;
  }
  const scoped = await device.popErrorScope();
  err = err || (scoped && scoped.message);
  const ms = (performance.now() - t0).toFixed(0);
  if (err || lost) {
    failed++;
    console.log(`FAIL dawn ${file} ${entry} ${ms} ms\n${err}`);
  } else {
    ok++;
    console.log(`ok dawn ${file} ${entry} ${ms} ms`);
  }
}
console.log(`${ok} of ${kernels.length} pipelines created on Dawn`);
device.destroy();
process.exit(failed || ok === 0 ? 1 : 0);
