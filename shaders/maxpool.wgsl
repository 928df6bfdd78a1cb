// MaxPool2d, square window k, stride `stride` (PyTorch's default: k), over x [planes = n·c,
// h, w] → y [planes, ho, wo] (ho = (h − k)/stride + 1, floor). argmax holds the index within the input's h·w plane of
// each window's maximum: the first one in row-major window order on ties (strict >).
// With p.relu = 1 a ReLU follows in the same pass: y = relu(max), and where the ReLU zeroes
// a window's output its argmax is NO_ARGMAX, so the backward routes that window nothing
// (the ReLU's backward done for free).
// With p.normalize = 1 a BatchNorm2d's normalisation comes first, per channel (plane % c),
// by BatchnormNormalize's expression (x − mean)·(gamma/√(var + eps)) + beta, so it needs
// no pass of its own. A plain pool binds x in place of the four statistics buffers
// (read-only bindings may alias) and never reads them.
struct Params {
    planes: u32, h: u32, w: u32, k: u32, ho: u32, wo: u32, hb: u32, wb: u32,
    relu: u32, normalize: u32, c: u32, eps: f32,
    stride: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;
@group(0) @binding(4) var<storage, read> bn_mean: array<f32>;
@group(0) @binding(5) var<storage, read> bn_var: array<f32>;
@group(0) @binding(6) var<storage, read> bn_gamma: array<f32>;
@group(0) @binding(7) var<storage, read> bn_beta: array<f32>;

// The k = 2 fast paths (w % 4 == 0): a 4-wide run of an input row is one vec4, holding two
// windows' columns; outputs and argmax go out in pairs.
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y2: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> argmax2: array<vec2<u32>>;

@group(0) @binding(1) var<storage, read> dy2: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> bargmax2: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read_write> dx4: array<vec4<f32>>;

@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> bargmax: array<u32>;
@group(0) @binding(3) var<storage, read_write> grad_x: array<f32>; // dx; not `dx`, a namespace in DXC that naga does not rename

const NO_ARGMAX: u32 = 0xffffffffu;

// The normalisation of plane `plane`'s channel: x → (x − mu)·scale + shift.
struct Affine { mu: f32, scale: f32, shift: f32 }
fn affine(plane: u32) -> Affine {
    if (p.normalize == 0u) {
        return Affine(0.0, 1.0, 0.0);
    }
    let ch = plane % p.c;
    return Affine(bn_mean[ch], bn_gamma[ch] * inverseSqrt(bn_var[ch] + p.eps), bn_beta[ch]);
}
// x itself without normalize (not x·1 + 0, which would turn −0 into +0).
fn normalized(v: f32, a: Affine) -> f32 {
    if (p.normalize == 0u) {
        return v;
    }
    return (v - a.mu) * a.scale + a.shift;
}
fn normalized4(v: vec4<f32>, a: Affine) -> vec4<f32> {
    if (p.normalize == 0u) {
        return v;
    }
    return (v - vec4<f32>(a.mu)) * vec4<f32>(a.scale) + vec4<f32>(a.shift);
}

struct Pooled { y: f32, argmax: u32 }

// The output and argmax of one window whose maximum is m at plane index i.
fn pooled(m: f32, i: u32) -> Pooled {
    if (p.relu != 0u && !relu_keeps(m)) {
        return Pooled(0.0, NO_ARGMAX);  // +0.0, as ReluForward writes
    }
    return Pooled(m, i);
}

// One invocation per output element.
@compute @workgroup_size(64)
fn maxpool_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let o = flat_group(wg, nwg) * 64u + li;
    let per_plane = p.ho * p.wo;
    if (o >= p.planes * per_plane) {
        return;
    }
    let plane = o / per_plane;
    let r = o - plane * per_plane;
    let oy = r / p.wo;
    let ox = r - oy * p.wo;
    let base = plane * p.h * p.w;
    let first = oy * p.stride * p.w + ox * p.stride;
    let a = affine(plane);
    var best_i = first;
    var best = normalized(x[base + first], a);
    for (var ky = 0u; ky < p.k; ky++) {
        let row = first + ky * p.w;
        for (var kx = 0u; kx < p.k; kx++) {
            let v = normalized(x[base + row + kx], a);
            if (v > best) {
                best = v;
                best_i = row + kx;
            }
        }
    }
    let out = pooled(best, best_i);
    y[o] = out.y;
    argmax[o] = out.argmax;
}

// stride = k. One invocation per k×k block of the input, hb = ceil(h / k) by wb = ceil(w / k) blocks
// per plane, so that every dx element is written exactly once without atomics: blocks
// that are pooling windows route dy to their argmax and write 0 elsewhere; the partial
// blocks past the floor (h or w not a multiple of k) write 0.
@compute @workgroup_size(64)
fn maxpool_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let t = flat_group(wg, nwg) * 64u + li;
    let per_plane = p.hb * p.wb;
    if (t >= p.planes * per_plane) {
        return;
    }
    let plane = t / per_plane;
    let r = t - plane * per_plane;
    let by = r / p.wb;
    let bx = r - by * p.wb;
    var g = 0.0;
    var a = 0xffffffffu;
    if (by < p.ho && bx < p.wo) {
        let o = plane * p.ho * p.wo + by * p.wo + bx;
        g = dy[o];
        a = bargmax[o];
    }
    let base = plane * p.h * p.w;
    let y_end = min(by * p.k + p.k, p.h);
    let x_end = min(bx * p.k + p.k, p.w);
    for (var iy = by * p.k; iy < y_end; iy++) {
        for (var ix = bx * p.k; ix < x_end; ix++) {
            let i = iy * p.w + ix;
            grad_x[base + i] = select(0.0, g, i == a);
        }
    }
}

// k = 2, w % 4 == 0. Invocation t takes the output pair y[2t], y[2t + 1]: output row
// r = plane·ho + oy, columns 2c and 2c + 1 (wo/2 = w/4 pairs per row). It reads input rows
// 2oy and 2oy + 1, columns 4c..4c + 3, as two vec4s.
@compute @workgroup_size(64)
fn maxpool_forward_k2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let t = flat_group(wg, nwg) * 64u + li;
    let w4 = p.w / 4u;
    if (t >= p.planes * p.ho * w4) {
        return;
    }
    let r = t / w4;
    let c = t - r * w4;
    let plane = r / p.ho;
    let oy = r - plane * p.ho;
    let top = (plane * p.h + 2u * oy) * w4 + c;
    let n = affine(plane);
    let a = normalized4(x4[top], n);
    let b = normalized4(x4[top + w4], n);
    let i0 = 2u * oy * p.w + 4u * c; // plane index of a.x
    // Row-major order within each window: (a.x, a.y, b.x, b.y) and (a.z, a.w, b.z, b.w).
    var m0 = a.x;
    var j0 = i0;
    if (a.y > m0) { m0 = a.y; j0 = i0 + 1u; }
    if (b.x > m0) { m0 = b.x; j0 = i0 + p.w; }
    if (b.y > m0) { m0 = b.y; j0 = i0 + p.w + 1u; }
    var m1 = a.z;
    var j1 = i0 + 2u;
    if (a.w > m1) { m1 = a.w; j1 = i0 + 3u; }
    if (b.z > m1) { m1 = b.z; j1 = i0 + p.w + 2u; }
    if (b.w > m1) { m1 = b.w; j1 = i0 + p.w + 3u; }
    let r0 = pooled(m0, j0);
    let r1 = pooled(m1, j1);
    y2[t] = vec2<f32>(r0.y, r1.y);
    argmax2[t] = vec2<u32>(r0.argmax, r1.argmax);
}

// k = 2, w % 4 == 0, h even (every input element lies in a window). Invocation t takes the
// output pair 2t, 2t + 1 and writes the 2×4 block of dx under it as two vec4s.
@compute @workgroup_size(64)
fn maxpool_backward_k2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) li: u32) {
    let t = flat_group(wg, nwg) * 64u + li;
    let w4 = p.w / 4u;
    if (t >= p.planes * p.ho * w4) {
        return;
    }
    let r = t / w4;
    let c = t - r * w4;
    let oy = r % p.ho;
    let routed = pool2_route(dy2[t], bargmax2[t], 2u * oy * p.w + 4u * c, p.w);
    let o = (r * 2u) * w4 + c; // vec4 index of the top row (input row 2·r over all planes)
    dx4[o] = routed[0];
    dx4[o + w4] = routed[1];
}

// Any stride (the kernel for stride ≠ k, where windows overlap or leave gaps): one invocation
// per input element, which gathers dy from every window holding it whose argmax it is, in
// output order (the reference's order of summation); 0 when there is none.
@compute @workgroup_size(64)
fn maxpool_backward_gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) li: u32) {
    let t = flat_group(wg, nwg) * 64u + li;
    let per_plane = p.h * p.w;
    if (t >= p.planes * per_plane) {
        return;
    }
    let plane = t / per_plane;
    let i = t - plane * per_plane;
    let iy = i / p.w;
    let ix = i - iy * p.w;
    let oy_range = windows_holding(iy, p.k, p.stride, p.ho);
    let ox_range = windows_holding(ix, p.k, p.stride, p.wo);
    var g = 0.0;
    for (var oy = oy_range.x; oy < oy_range.y; oy++) {
        for (var ox = ox_range.x; ox < ox_range.y; ox++) {
            let o = (plane * p.ho + oy) * p.wo + ox;
            if (bargmax[o] == i) {
                g += dy[o];
            }
        }
    }
    grad_x[t] = g;
}
