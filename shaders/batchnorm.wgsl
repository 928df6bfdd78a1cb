// BatchNorm2d over x [n, c, hw] (hw = h·w): statistics per channel over n·hw = m elements.
//
// Every entry point comes twice: scalar, and a *4 twin that moves vec4s when hw % 4 == 0
// (llvmpipe pays per load instruction, so a vec4 costs about what one f32 does). `p.hw` is
// the plane length in the entry point's units: elements, or vec4s for the *4 twins.
//
// Per-channel reductions (stats, backward_reduce) run one workgroup of WG invocations per
// channel: invocation li reads the channel's units li, li + WG, … (flat over n·hw, walked as
// (sample b, offset o) without a division per step), then a fixed tree adds the WG
// partials, so results are deterministic. WG is 64, not 256: on llvmpipe each tree level
// is a barrier, and 256-wide trees made these kernels 2–4× slower.
//
// Elementwise kernels give each invocation up to VPT consecutive units of one (sample,
// channel) plane, so the per-channel constants are loaded once per VPT units.
struct Params {
    n: u32, c: u32, hw: u32, m: u32,
    // WG = step_b·hw + step_s: how far the walk's (b, o) moves per WG units
    step_b: u32, step_s: u32,
    eps: f32, momentum: f32,
    // the *_pooled kernels: the MaxPool2d after this BatchNorm2d (see below); hw = h·w
    h: u32, w: u32, k: u32, ho: u32, wo: u32, hb: u32, wb: u32,
}
@group(0) @binding(0) var<uniform> p: Params;

// stats: x -> mean, var; running_mean, running_var updated in place
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> var_: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> running_var: array<f32>;

// normalize: x, mean, var, gamma, beta -> y
@group(0) @binding(2) var<storage, read> n_mean: array<f32>;
@group(0) @binding(3) var<storage, read> n_var: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<storage, read_write> y4: array<vec4<f32>>;

// backward_reduce: x, dy, mean, var -> dgamma += Σ dy·x̂, dbeta += Σ dy; this call's sums
// also go to sums = [Σ dy·x̂ (c) | Σ dy (c)] for backward_dx
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> r_mean: array<f32>;
@group(0) @binding(4) var<storage, read> r_var: array<f32>;
@group(0) @binding(5) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(6) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(7) var<storage, read_write> sums: array<f32>;

// backward_dx: x, dy, mean, var, gamma, sums -> dx
@group(0) @binding(5) var<storage, read> b_gamma: array<f32>;
@group(0) @binding(6) var<storage, read> b_sums: array<f32>;
@group(0) @binding(7) var<storage, read_write> grad_x: array<f32>; // dx; not `dx`, a namespace in DXC that naga does not rename
@group(0) @binding(7) var<storage, read_write> dx4: array<vec4<f32>>;

// *_pooled: dy is the gradient of the MaxPool2d that read this layer's output, with that
// pool's argmax (vec2 views for the k = 2 twin)
@group(0) @binding(2) var<storage, read> dy2: array<vec2<f32>>;
@group(0) @binding(8) var<storage, read> pool_argmax: array<u32>;
@group(0) @binding(8) var<storage, read> pool_argmax2: array<vec2<u32>>;
const NO_ARGMAX: u32 = 0xffffffffu;  // as maxpool.wgsl: a window that passes no gradient

const WG: u32 = 64u;
const VPT: u32 = 8u;
const VPT4: u32 = 4u;
var<workgroup> red_a: array<f32, WG>;
var<workgroup> red_b: array<f32, WG>;

// ---- the per-channel walk: (b, o) of unit li, then WG units on --------------------------
fn walk_start(li: u32) -> vec2<u32> {
    return vec2<u32>(li / p.hw, li % p.hw);
}
fn walk_next(bo: vec2<u32>) -> vec2<u32> {
    var b = bo.x + p.step_b;
    var o = bo.y + p.step_s;
    if (o >= p.hw) {
        o -= p.hw;
        b += 1u;
    }
    return vec2<u32>(b, o);
}
fn walk_index(bo: vec2<u32>, ch: u32) -> u32 {
    return (bo.x * p.c + ch) * p.hw + bo.y;
}

// Adds red_a and red_b over the workgroup into element 0. Call from uniform control flow.
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

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// ---- stats: two passes over the channel (mean, then Σ(x − mean)²) for accuracy; the second
// pass finds the channel in cache. var is the biased variance (÷ m). The running statistics
// are updated from the same f32 mean and var, as a separate kernel reading them back would:
// running = (1 − momentum)·running + momentum·batch, the batch variance made unbiased.
fn stats_finish(li: u32, ch: u32, q: f32, mu: f32) {
    red_a[li] = q;
    tree_sum2(li);
    if (li == 0u) {
        let v = red_a[0] / f32(p.m);
        mean[ch] = mu;
        var_[ch] = v;
        let unbias = f32(p.m) / f32(p.m - 1u);
        running_mean[ch] = (1.0 - p.momentum) * running_mean[ch] + p.momentum * mu;
        running_var[ch] = (1.0 - p.momentum) * running_var[ch] + p.momentum * (v * unbias);
    }
}

@compute @workgroup_size(WG)
fn stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let ch = wg.x;
    var s = 0.0;
    for (var bo = walk_start(li); bo.x < p.n; bo = walk_next(bo)) {
        s += x[walk_index(bo, ch)];
    }
    red_a[li] = s;
    red_b[li] = 0.0;
    tree_sum2(li);
    let mu = red_a[0] / f32(p.m);
    workgroupBarrier(); // everyone has read red_a[0] before it is overwritten
    var q = 0.0;
    for (var bo = walk_start(li); bo.x < p.n; bo = walk_next(bo)) {
        let d = x[walk_index(bo, ch)] - mu;
        q += d * d;
    }
    stats_finish(li, ch, q, mu);
}

@compute @workgroup_size(WG)
fn stats4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let ch = wg.x;
    var s = vec4<f32>(0.0);
    for (var bo = walk_start(li); bo.x < p.n; bo = walk_next(bo)) {
        s += x4[walk_index(bo, ch)];
    }
    red_a[li] = hsum(s);
    red_b[li] = 0.0;
    tree_sum2(li);
    let mu = red_a[0] / f32(p.m);
    workgroupBarrier();
    var q = vec4<f32>(0.0);
    for (var bo = walk_start(li); bo.x < p.n; bo = walk_next(bo)) {
        let d = x4[walk_index(bo, ch)] - vec4<f32>(mu);
        q += d * d;
    }
    stats_finish(li, ch, hsum(q), mu);
}

// ---- normalize: y = (x − mean)·(gamma/√(var + eps)) + beta --------------------------------
// Invocation t takes units [start, end) of plane t / chunks (chunks = ceil(hw / per)).
fn chunk(t: u32, per: u32) -> vec3<u32> {
    let chunks = (p.hw + per - 1u) / per;
    let plane = t / chunks;
    let start = plane * p.hw + (t - plane * chunks) * per;
    let end = min(start + per, plane * p.hw + p.hw);
    return vec3<u32>(plane % p.c, start, end); // plane ≥ n·c is tested by the caller
}

@compute @workgroup_size(64)
fn normalize_apply(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let t = flat_group(wg, nwg) * 64u + li;
    if (t >= p.n * p.c * ((p.hw + VPT - 1u) / VPT)) {
        return;
    }
    let r = chunk(t, VPT);
    let mu = n_mean[r.x];
    let scale = gamma[r.x] * inverseSqrt(n_var[r.x] + p.eps);
    let shift = beta[r.x];
    for (var i = r.y; i < r.z; i++) {
        y[i] = (x[i] - mu) * scale + shift;
    }
}

@compute @workgroup_size(64)
fn normalize_apply4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let t = flat_group(wg, nwg) * 64u + li;
    if (t >= p.n * p.c * ((p.hw + VPT4 - 1u) / VPT4)) {
        return;
    }
    let r = chunk(t, VPT4);
    let mu = vec4<f32>(n_mean[r.x]);
    let scale = vec4<f32>(gamma[r.x] * inverseSqrt(n_var[r.x] + p.eps));
    let shift = vec4<f32>(beta[r.x]);
    for (var i = r.y; i < r.z; i++) {
        y4[i] = (x4[i] - mu) * scale + shift;
    }
}

// ---- backward_reduce: dbeta += Σ dy, dgamma += Σ dy·x̂ with x̂ = (x − mean)/√(var + eps) --
// Parameter gradients accumulate (weight tying). Invocation 0 rounds this call's sums to f32
// and stores them; invocation 1 adds them to the old values after a barrier, so that no
// compiler can fuse Σ·istd + old into one fma: the result is f32(sum) + old, which is
// exactly the sum when old is 0.
fn backward_reduce_finish(li: u32, ch: u32, sdy: f32, sdyx: f32) {
    red_a[li] = sdy;
    red_b[li] = sdyx;
    tree_sum2(li);
    if (li == 0u) {
        let sg = red_b[0] * inverseSqrt(r_var[ch] + p.eps);
        red_b[0] = sg;
        sums[ch] = sg;
        sums[p.c + ch] = red_a[0];
    }
    workgroupBarrier();
    if (li == 1u) {
        dgamma[ch] = red_b[0] + dgamma[ch];
        dbeta[ch] = red_a[0] + dbeta[ch];
    }
}

@compute @workgroup_size(WG)
fn backward_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let ch = wg.x;
    let mu = r_mean[ch];
    var sdy = 0.0;
    var sdyx = 0.0;
    for (var bo = walk_start(li); bo.x < p.n; bo = walk_next(bo)) {
        let i = walk_index(bo, ch);
        let g = dy[i];
        sdy += g;
        sdyx += g * (x[i] - mu);
    }
    backward_reduce_finish(li, ch, sdy, sdyx);
}

@compute @workgroup_size(WG)
fn backward_reduce4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let ch = wg.x;
    let mu = vec4<f32>(r_mean[ch]);
    var sdy = vec4<f32>(0.0);
    var sdyx = vec4<f32>(0.0);
    for (var bo = walk_start(li); bo.x < p.n; bo = walk_next(bo)) {
        let i = walk_index(bo, ch);
        let g = dy4[i];
        sdy += g;
        sdyx += g * (x4[i] - mu);
    }
    backward_reduce_finish(li, ch, hsum(sdy), hsum(sdyx));
}

// ---- backward_dx: dx = gamma·istd·(dy − Σdy/m − x̂·Σdy·x̂/m), through the batch stats, with
// backward_reduce's sums of this call (not the accumulated dgamma, dbeta) ----
@compute @workgroup_size(64)
fn backward_dx(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let t = flat_group(wg, nwg) * 64u + li;
    if (t >= p.n * p.c * ((p.hw + VPT - 1u) / VPT)) {
        return;
    }
    let r = chunk(t, VPT);
    let mu = r_mean[r.x];
    let istd = inverseSqrt(r_var[r.x] + p.eps);
    let inv_m = 1.0 / f32(p.m);
    let k = b_gamma[r.x] * istd;
    let mean_dy = b_sums[p.c + r.x] * inv_m;
    let mean_dyx = b_sums[r.x] * inv_m;
    for (var i = r.y; i < r.z; i++) {
        let xhat = (x[i] - mu) * istd;
        grad_x[i] = k * (dy[i] - mean_dy - xhat * mean_dyx);
    }
}

@compute @workgroup_size(64)
fn backward_dx4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let t = flat_group(wg, nwg) * 64u + li;
    if (t >= p.n * p.c * ((p.hw + VPT4 - 1u) / VPT4)) {
        return;
    }
    let r = chunk(t, VPT4);
    let mu = vec4<f32>(r_mean[r.x]);
    let istd = inverseSqrt(r_var[r.x] + p.eps);
    let inv_m = 1.0 / f32(p.m);
    let k = vec4<f32>(b_gamma[r.x] * istd);
    let mean_dy = vec4<f32>(b_sums[p.c + r.x] * inv_m);
    let mean_dyx = vec4<f32>(b_sums[r.x] * inv_m);
    for (var i = r.y; i < r.z; i++) {
        let xhat = (x4[i] - mu) * istd;
        dx4[i] = k * (dy4[i] - mean_dy - xhat * mean_dyx);
    }
}

// ---- the same backward with the MaxPool2d's backward folded in ------------------------------
// The layer's output gradient is the pool's dy routed to each window's argmax (0 elsewhere,
// and in windows with NO_ARGMAX), so the sums run over the windows (a k²-th of the
// elements) and dx is written block by block as maxpool_backward writes its dx; units are
// elements (p.hw = h·w).
@compute @workgroup_size(WG)
fn backward_reduce_pooled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let ch = wg.x;
    let mu = r_mean[ch];
    let windows = p.ho * p.wo;
    var sdy = 0.0;
    var sdyx = 0.0;
    for (var t = li; t < p.n * windows; t += WG) {
        let plane = (t / windows) * p.c + ch;
        let o = plane * windows + t % windows;
        let a = pool_argmax[o];
        if (a != NO_ARGMAX) {
            let g = dy[o];
            sdy += g;
            sdyx += g * (x[plane * p.hw + a] - mu);
        }
    }
    backward_reduce_finish(li, ch, sdy, sdyx);
}

// One invocation per k×k block (hb·wb per plane, the partial ones past the floor too).
@compute @workgroup_size(64)
fn backward_dx_pooled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let t = flat_group(wg, nwg) * 64u + li;
    let per_plane = p.hb * p.wb;
    if (t >= p.n * p.c * per_plane) {
        return;
    }
    let plane = t / per_plane;
    let ch = plane % p.c;
    let r = t - plane * per_plane;
    let by = r / p.wb;
    let bx = r - by * p.wb;
    var g = 0.0;
    var a = NO_ARGMAX;
    if (by < p.ho && bx < p.wo) {
        let o = plane * p.ho * p.wo + by * p.wo + bx;
        g = dy[o];
        a = pool_argmax[o];
    }
    let mu = r_mean[ch];
    let istd = inverseSqrt(r_var[ch] + p.eps);
    let inv_m = 1.0 / f32(p.m);
    let k = b_gamma[ch] * istd;
    let mean_dy = b_sums[p.c + ch] * inv_m;
    let mean_dyx = b_sums[ch] * inv_m;
    let base = plane * p.hw;
    let y_end = min(by * p.k + p.k, p.h);
    let x_end = min(bx * p.k + p.k, p.w);
    for (var iy = by * p.k; iy < y_end; iy++) {
        for (var ix = bx * p.k; ix < x_end; ix++) {
            let i = iy * p.w + ix;
            let xhat = (x[base + i] - mu) * istd;
            grad_x[base + i] = k * (select(0.0, g, i == a) - mean_dy - xhat * mean_dyx);
        }
    }
}

// k = 2, w % 4 == 0, h even (as maxpool_backward_k2): invocation t takes the pool's output
// pair 2t, 2t + 1 and writes the 2×4 block of dx under it as two vec4s.
@compute @workgroup_size(64)
fn backward_dx_pooled_k2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) li: u32) {
    let t = flat_group(wg, nwg) * 64u + li;
    let w4 = p.w / 4u;
    if (t >= p.n * p.c * p.ho * w4) {
        return;
    }
    let r = t / w4;
    let c4 = t - r * w4;
    let plane = r / p.ho;
    let ch = plane % p.c;
    let oy = r - plane * p.ho;
    let routed = pool2_route(dy2[t], pool_argmax2[t], 2u * oy * p.w + 4u * c4, p.w);
    let mu = vec4<f32>(r_mean[ch]);
    let istd = inverseSqrt(r_var[ch] + p.eps);
    let inv_m = 1.0 / f32(p.m);
    let k = vec4<f32>(b_gamma[ch] * istd);
    let mean_dy = vec4<f32>(b_sums[p.c + ch] * inv_m);
    let mean_dyx = vec4<f32>(b_sums[ch] * inv_m);
    let o = (r * 2u) * w4 + c4; // vec4 index of the block's top row (input row 2r over all planes)
    let xt = (x4[o] - mu) * istd;
    dx4[o] = k * (routed[0] - mean_dy - xt * mean_dyx);
    let xb = (x4[o + w4] - mu) * istd;
    dx4[o + w4] = k * (routed[1] - mean_dy - xb * mean_dyx);
}
