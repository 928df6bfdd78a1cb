// One Adam step (PyTorch's, with bias correction) over `len` elements, in place on param,
// m and v: one dispatch covers the whole parameter store (params, grads, m, v are each one
// buffer holding every tensor). Nothing per step comes from the host:
//
// - state[0] is this step's t (counting from 1), written by the loss kernel
//   (reduce.wgsl's softmax_cross_entropy counts the steps); read-only here.
// - table holds the per-step scalars for a range of steps, computed on the host in f64 and
//   rounded to f32 once (gpu::adam::hyper_table): a header vec4 (first step covered and row
//   count as u32; 2 unused), then one vec4 per step
//   [step_size = lr/(1 − β1^t), 1/√(1 − β2^t), 1 − β1, 1 − β2] (reference::adam::hyper).
//   Step t uses row t − first. A t outside the table writes NaN into param (and leaves m, v
//   alone), so that the non-finite guard trips loudly; the host refills the table in time.
//
// Weight decay, as PyTorch: `l2` adds l2·p to the gradient (Adam's weight_decay; 0 skips
// it, a uniform branch), and `decay` scales the parameter before the update (AdamW's
// 1 − lr·wd, computed on the host in f64; 1 leaves it exact).
//
// The table is bound as u32s so that the header is read as integers, whatever a driver
// might do to the subnormal floats those bits spell; rows are bitcast back to f32 (exact).
// β1, β2, eps, l2 and decay are fixed and stay uniform.
//
// adam_step4 covers whole vec4s [0, end) (end counts vec4s); adam_step the scalar
// elements [start, end) (the tail, or everything for short buffers).
struct Params { start: u32, end: u32, beta1: f32, beta2: f32, eps: f32, l2: f32, decay: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<vec4<u32>>;

@group(0) @binding(3) var<storage, read_write> param: array<f32>;
@group(0) @binding(4) var<storage, read> grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> m: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;

@group(0) @binding(3) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> m4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> v4: array<vec4<f32>>;

// Index into `table` of step state[0]'s row, or 0 (the header) when the table lacks it.
// t − first wraps to a huge value when t < first, so one comparison covers both sides.
fn table_row() -> u32 {
    let r = state[0] - table[0].x;
    return select(0u, 1u + r, r < table[0].y);
}

// A runtime NaN (a constant NaN is a WGSL error).
fn nan(row: u32) -> f32 {
    return bitcast<f32>(0x7fc00000u | (row & 0u));
}

@compute @workgroup_size(64)
fn adam_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let i = p.start + flat_group(wg, nwg) * 64u + li;
    if (i >= p.end) {
        return;
    }
    let row = table_row();
    if (row == 0u) {
        param[i] = nan(row);
        return;
    }
    let h = bitcast<vec4<f32>>(table[row]);
    let w = param[i];
    var g = grad[i];
    if (p.l2 != 0.0) {
        g += p.l2 * w;
    }
    let mi = p.beta1 * m[i] + h[2] * g;
    let vi = p.beta2 * v[i] + h[3] * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = w * p.decay - h[0] * (mi / (sqrt(vi) * h[1] + p.eps));
}

@compute @workgroup_size(64)
fn adam_step4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let i = flat_group(wg, nwg) * 64u + li;
    if (i >= p.end) {
        return;
    }
    let row = table_row();
    if (row == 0u) {
        param4[i] = vec4<f32>(nan(row));
        return;
    }
    let h = bitcast<vec4<f32>>(table[row]);
    let w = param4[i];
    var g = grad4[i];
    if (p.l2 != 0.0) {
        g += p.l2 * w;
    }
    let mi = p.beta1 * m4[i] + h[2] * g;
    let vi = p.beta2 * v4[i] + h[3] * g * g;
    m4[i] = mi;
    v4[i] = vi;
    param4[i] = w * p.decay - h[0] * (mi / (sqrt(vi) * h[1] + p.eps));
}
