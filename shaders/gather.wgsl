// Batch assembly from the dataset kept on the device: images as u8 pixels packed four per
// u32 (little-endian: byte a sits in word a / 4 at bits 8·(a % 4)), labels as u32.
// x[i, q] = images[perm[offset + i]][q] / 255 and y[i] = labels[perm[offset + i]].
struct Params { pixels: u32, offset: u32, n: u32, _pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> images: array<u32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> perm: array<u32>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<u32>;
@group(0) @binding(4) var<storage, read_write> x4: array<vec4<f32>>;

// One invocation per output pixel; the first n invocations also copy a label.
@compute @workgroup_size(64)
fn gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let t = flat_group(wg, nwg) * 64u + li;
    if (t < p.n) {
        y[t] = labels[perm[p.offset + t]];
    }
    if (t >= p.n * p.pixels) {
        return;
    }
    let i = t / p.pixels;
    let q = t - i * p.pixels;
    let a = perm[p.offset + i] * p.pixels + q;
    let byte = (images[a >> 2u] >> ((a & 3u) * 8u)) & 0xffu;
    x[t] = f32(byte) / 255.0;
}

// pixels % 4 == 0 (MNIST's 784): invocation t unpacks one word, 4 pixels of image row
// i = t / (pixels / 4), into one vec4 of x.
@compute @workgroup_size(64)
fn gather4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let t = flat_group(wg, nwg) * 64u + li;
    if (t < p.n) {
        y[t] = labels[perm[p.offset + t]];
    }
    let words = p.pixels / 4u;
    if (t >= p.n * words) {
        return;
    }
    let i = t / words;
    let word = images[perm[p.offset + i] * words + (t - i * words)];
    let bytes = (vec4<u32>(word) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
    x4[t] = vec4<f32>(bytes) / 255.0;
}
