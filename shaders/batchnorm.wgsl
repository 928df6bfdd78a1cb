// BatchNorm2d over x [n, c, hw] (hw = h·w): statistics per channel over n·hw = m elements.
//
// Per-channel reductions (stats, backward_reduce) run one workgroup of WG invocations per
// channel: invocation li reads the channel's elements li, li + WG, … (flat over n·hw,
// walked as (sample b, offset s) without a division per element), then a fixed tree adds
// the WG partials, so results are deterministic. Elementwise kernels give each invocation
// up to VPT consecutive elements of one (sample, channel) plane, so the per-channel
// constants are loaded once per VPT elements.
struct Params {
    n: u32, c: u32, hw: u32, m: u32,
    // WG = step_b·hw + step_s: how far (b, s) moves per WG flat elements
    step_b: u32, step_s: u32,
    eps: f32, momentum: f32,
}
@group(0) @binding(0) var<uniform> p: Params;

// stats: x -> mean, var
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> var_: array<f32>;

// normalize: x, mean, var, gamma, beta -> y
@group(0) @binding(2) var<storage, read> n_mean: array<f32>;
@group(0) @binding(3) var<storage, read> n_var: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

// update_running: mean, var -> running_mean, running_var
@group(0) @binding(1) var<storage, read> u_mean: array<f32>;
@group(0) @binding(2) var<storage, read> u_var: array<f32>;
@group(0) @binding(3) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_var: array<f32>;

// backward_reduce: x, dy, mean, var -> dgamma = Σ dy·x̂, dbeta = Σ dy
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> r_mean: array<f32>;
@group(0) @binding(4) var<storage, read> r_var: array<f32>;
@group(0) @binding(5) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(6) var<storage, read_write> dbeta: array<f32>;

// backward_dx: x, dy, mean, var, gamma, dgamma, dbeta -> dx
@group(0) @binding(5) var<storage, read> b_gamma: array<f32>;
@group(0) @binding(6) var<storage, read> b_dgamma: array<f32>;
@group(0) @binding(7) var<storage, read> b_dbeta: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx: array<f32>;

const WG: u32 = 256u;
const VPT: u32 = 8u;
var<workgroup> red_a: array<f32, WG>;
var<workgroup> red_b: array<f32, WG>;

// Adds red_a (and red_b) over the workgroup into element 0. Call from uniform control flow.
fn tree_sum2(li: u32) {
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half >>= 1u) {
        if (li < half) {
            red_a[li] += red_a[li + half];
            red_b[li] += red_b[li + half];
        }
        workgroupBarrier();
    }
}

// Two passes over the channel (mean, then Σ(x − mean)²) for accuracy; the second pass
// finds the channel in cache. var is the biased variance (÷ m).
@compute @workgroup_size(256)
fn stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let ch = wg.x;
    let plane_stride = p.c * p.hw;
    var s = 0.0;
    {
        var b = li / p.hw;
        var o = li % p.hw;
        while (b < p.n) {
            s += x[b * plane_stride + ch * p.hw + o];
            b += p.step_b;
            o += p.step_s;
            if (o >= p.hw) {
                o -= p.hw;
                b += 1u;
            }
        }
    }
    red_a[li] = s;
    red_b[li] = 0.0;
    tree_sum2(li);
    let mu = red_a[0] / f32(p.m);
    workgroupBarrier(); // everyone has read red_a[0] before it is overwritten
    var q = 0.0;
    {
        var b = li / p.hw;
        var o = li % p.hw;
        while (b < p.n) {
            let d = x[b * plane_stride + ch * p.hw + o] - mu;
            q += d * d;
            b += p.step_b;
            o += p.step_s;
            if (o >= p.hw) {
                o -= p.hw;
                b += 1u;
            }
        }
    }
    red_a[li] = q;
    tree_sum2(li);
    if (li == 0u) {
        mean[ch] = mu;
        var_[ch] = red_a[0] / f32(p.m);
    }
}

// y = (x − mean)·(gamma/√(var + eps)) + beta.
@compute @workgroup_size(64)
fn normalize_apply(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let t = flat_group(wg, nwg) * 64u + li;
    let chunks = (p.hw + VPT - 1u) / VPT;
    let plane = t / chunks;
    if (plane >= p.n * p.c) {
        return;
    }
    let ch = plane % p.c;
    let first = t - plane * chunks;
    let start = plane * p.hw + first * VPT;
    let end = min(start + VPT, plane * p.hw + p.hw);
    let mu = n_mean[ch];
    let scale = gamma[ch] * inverseSqrt(n_var[ch] + p.eps);
    let shift = beta[ch];
    for (var i = start; i < end; i++) {
        y[i] = (x[i] - mu) * scale + shift;
    }
}

// running = (1 − momentum)·running + momentum·batch, the batch variance made unbiased.
@compute @workgroup_size(64)
fn update_running(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ch = gid.x;
    if (ch >= p.c) {
        return;
    }
    let unbias = f32(p.m) / f32(p.m - 1u);
    running_mean[ch] = (1.0 - p.momentum) * running_mean[ch] + p.momentum * u_mean[ch];
    running_var[ch] = (1.0 - p.momentum) * running_var[ch] + p.momentum * (u_var[ch] * unbias);
}

// dbeta = Σ dy, dgamma = Σ dy·x̂ with x̂ = (x − mean)/√(var + eps), per channel.
@compute @workgroup_size(256)
fn backward_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let ch = wg.x;
    let plane_stride = p.c * p.hw;
    let mu = r_mean[ch];
    var sdy = 0.0;
    var sdyx = 0.0;
    var b = li / p.hw;
    var o = li % p.hw;
    while (b < p.n) {
        let i = b * plane_stride + ch * p.hw + o;
        let g = dy[i];
        sdy += g;
        sdyx += g * (x[i] - mu);
        b += p.step_b;
        o += p.step_s;
        if (o >= p.hw) {
            o -= p.hw;
            b += 1u;
        }
    }
    red_a[li] = sdy;
    red_b[li] = sdyx;
    tree_sum2(li);
    if (li == 0u) {
        dbeta[ch] = red_a[0];
        dgamma[ch] = red_b[0] * inverseSqrt(r_var[ch] + p.eps);
    }
}

// dx = gamma·istd·(dy − dbeta/m − x̂·dgamma/m), the gradient through the batch statistics.
@compute @workgroup_size(64)
fn backward_dx(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let t = flat_group(wg, nwg) * 64u + li;
    let chunks = (p.hw + VPT - 1u) / VPT;
    let plane = t / chunks;
    if (plane >= p.n * p.c) {
        return;
    }
    let ch = plane % p.c;
    let first = t - plane * chunks;
    let start = plane * p.hw + first * VPT;
    let end = min(start + VPT, plane * p.hw + p.hw);
    let mu = r_mean[ch];
    let istd = inverseSqrt(r_var[ch] + p.eps);
    let inv_m = 1.0 / f32(p.m);
    let k = b_gamma[ch] * istd;
    let mean_dy = b_dbeta[ch] * inv_m;
    let mean_dyx = b_dgamma[ch] * inv_m;
    for (var i = start; i < end; i++) {
        let xhat = (x[i] - mu) * istd;
        dx[i] = k * (dy[i] - mean_dy - xhat * mean_dyx);
    }
}
