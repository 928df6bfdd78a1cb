// One Adam step (PyTorch's, with bias correction) over `len` elements, in place on param,
// m and v. The per-step scalars come from the storage buffer `hyper` =
// [step_size = lr/(1 − β1^t), 1/√(1 − β2^t), 1 − β1, 1 − β2] (reference::adam::hyper),
// not from the uniform: uniform bytes key the bind-group cache, so a per-step uniform
// would make a new bind group every step. β1, β2 and eps are fixed and stay uniform.
//
// adam_step4 covers whole vec4s [0, end) (end counts vec4s); adam_step the scalar
// elements [start, end) (the tail, or everything for short tensors).
struct Params { start: u32, end: u32, beta1: f32, beta2: f32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> hyper: array<f32, 4>;

@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;

@group(0) @binding(2) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> v4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn adam_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let i = p.start + flat_group(wg, nwg) * 64u + li;
    if (i >= p.end) {
        return;
    }
    let h = hyper;
    let g = grad[i];
    let mi = p.beta1 * m[i] + h[2] * g;
    let vi = p.beta2 * v[i] + h[3] * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] -= h[0] * (mi / (sqrt(vi) * h[1] + p.eps));
}

@compute @workgroup_size(64)
fn adam_step4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let i = flat_group(wg, nwg) * 64u + li;
    if (i >= p.end) {
        return;
    }
    let h = hyper;
    let g = grad4[i];
    let mi = p.beta1 * m4[i] + h[2] * g;
    let vi = p.beta2 * v4[i] + h[3] * g * g;
    m4[i] = mi;
    v4[i] = vi;
    param4[i] -= h[0] * (mi / (sqrt(vi) * h[1] + p.eps));
}
