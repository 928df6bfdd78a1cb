// One SGD step (PyTorch's torch.optim.SGD) over `len` elements, in place on param and the
// momentum buffer: one dispatch covers the whole parameter store, as Adam's does
// (src/reference/sgd.rs is the CPU twin). Per element, in f32:
//
//   d = g + wd·p                                   (only with wd ≠ 0)
//   b = d (FIRST: the buffer is new, its contents unread), else b = μ·b + (1 − dampening)·d
//   d = d + μ·b (NESTEROV), else d = b             (these two only with μ ≠ 0: no buffer)
//   p = p − lr·d
//
// lr, μ, 1 − dampening and wd come from the host, computed in f64 and rounded to f32 once
// (reference::sgd::hyper); they are fixed for a run, and FIRST changes once, so the bind
// groups stay cached and nothing is written per step. The branches are on uniforms.
//
// sgd_step4 covers whole vec4s [0, end) (end counts vec4s); sgd_step the scalar elements
// [start, end) (the tail, or everything for short buffers).
struct Params { start: u32, end: u32, lr: f32, momentum: f32, damp: f32, wd: f32, flags: u32 }
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;

@group(0) @binding(1) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> buf4: array<vec4<f32>>;

const NESTEROV: u32 = 1u;
const FIRST: u32 = 2u;

@compute @workgroup_size(64)
fn sgd_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let i = p.start + flat_group(wg, nwg) * 64u + li;
    if (i >= p.end) {
        return;
    }
    let w = param[i];
    var d = grad[i];
    if (p.wd != 0.0) {
        d += p.wd * w;
    }
    if (p.momentum != 0.0) {
        var b = d;
        if ((p.flags & FIRST) == 0u) {
            b = p.momentum * buf[i] + p.damp * d;
        }
        buf[i] = b;
        d = select(b, d + p.momentum * b, (p.flags & NESTEROV) != 0u);
    }
    param[i] = w - p.lr * d;
}

@compute @workgroup_size(64)
fn sgd_step4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let i = flat_group(wg, nwg) * 64u + li;
    if (i >= p.end) {
        return;
    }
    let w = param4[i];
    var d = grad4[i];
    if (p.wd != 0.0) {
        d += p.wd * w;
    }
    if (p.momentum != 0.0) {
        var b = d;
        if ((p.flags & FIRST) == 0u) {
            b = p.momentum * buf4[i] + p.damp * d;
        }
        buf4[i] = b;
        d = select(b, d + p.momentum * b, (p.flags & NESTEROV) != 0u);
    }
    param4[i] = w - p.lr * d;
}
