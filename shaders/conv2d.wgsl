// Conv2d (cross-correlation, as PyTorch) over x [n, c_in, h, w] with weights
// [c_out, c_in, k, k] and bias [c_out], giving y [n, c_out, h_out, w_out]; its input, weight
// and bias gradients. CPU twin: src/reference/conv2d.rs.
//
// Three kernel families. The first two are built for CPU adapters (lavapipe): as in
// matmul.wgsl's v4 and strided families every invocation computes a register block and
// no kernel uses workgroup memory.
// - *_direct: any stride and padding; 4×4 blocks with scalar loads (index arithmetic with
//   bounds checks per element). Correct everywhere, not fast.
// - *_rows: stride 1, no padding, rows of x a multiple of 4 long, w_out % 4 == 0, k ≤ 5
//   (the seed's convolutions). One invocation takes 4·np neighbouring outputs of one row
//   (np = 1, 2, 3): for a given (channel, kernel row) the inputs of all its k·4·np products
//   are 4·np + 4 consecutive floats of one input row, i.e. np + 1 aligned vec4 loads,
//   shifted in registers for each kernel column.
//   The forward reads the weights transposed to [c_in·k·k, c_out4] so that 4 output
//   channels come in one vec4 (conv_weight_kc makes that copy). The input gradient runs the
//   same kernel over dy with k − 1 − pad zero columns added on each side (conv_pad_columns)
//   and the weights flipped and transposed; rows outside dy are skipped, not padded.
// - *_tiled: for real GPUs, any stride and padding: each pass as an implicit GEMM with
//   64×64 tiles staged in workgroup memory (see its section at the end).
// conv2d_subgroup.wgsl adds a fourth, for devices with subgroups, on this file's GEMM maps.
//
// Storage bindings differ per entry point and share binding numbers, so the globals have
// neutral names; each entry point's comment says what its bindings hold. The vec4 views
// (in1v, in2v) alias bindings 1 and 2; an entry point uses one view of each binding only.

struct ConvParams {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    k: u32,
    stride: u32,
    pad: u32,
    h_out: u32,
    w_out: u32,
    // forward: add the bias; weight gradient: the bias gradient's partials too
    has_bias: u32,
    // split-K passes: number of splits of the reduction over positions
    splits: u32,
    // *_rows kernels: elements per input row (w, or the padded width); a multiple of 4
    x_row: u32,
    // *_rows forward and conv_weight_kc: columns of the transposed weights (multiple of 4)
    co4: u32,
    // conv_weight_kc: 1 = flip the kernel and swap c_in/c_out (for the input gradient);
    // *_subgroup kernels (conv2d_subgroup.wgsl): 1 = every lane gathers A itself (tests)
    flip: u32,
    // split-K passes: elements of one split's weight partial sums (c_out·c_in·k·k)
    len: u32,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> in1: array<f32>;
@group(0) @binding(1) var<storage, read> in1v: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> in2: array<f32>;
@group(0) @binding(2) var<storage, read> in2v: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out2: array<f32>;
@group(0) @binding(3) var<storage, read> in3: array<f32>;
@group(0) @binding(3) var<storage, read_write> out3: array<f32>;
@group(0) @binding(4) var<storage, read_write> out4: array<f32>;

const WG: u32 = 64u;

fn global_index(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return flat_group(wg, nwg) * WG + li;
}

// 4 weights a·x.x, a·x.y, a·x.z, a·x.w as the columns of a matrix.
fn outer(a: vec4<f32>, x: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(a * x.x, a * x.y, a * x.z, a * x.w);
}

// The *_direct kernels keep their 4 lanes in vectors and load each lane with a call below,
// not with local arrays written at a loop index: FXC cannot unroll such loops inside loops
// with run-time bounds (error X3511), and wgpu falls back to FXC without dxcompiler.dll.

// in1[base + ih·w + iw] (base: the start of one input plane), 0 outside the plane (padding).
fn x_tap(base: u32, ih: i32, iw: i32) -> f32 {
    let inside = ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w);
    let idx = base + u32(max(ih, 0)) * p.w + u32(max(iw, 0));
    return select(0.0, in1[min(idx, arrayLength(&in1) - 1u)], inside);
}

// dy[img, co, oh, ow] with oh·stride = a, ow·stride = b, or 0 where no such output exists.
// Stride 1 skips the divisions (uniform branch), which CPU adapters run slowly.
fn dy_tap(img: u32, co: u32, a: i32, b: i32) -> f32 {
    var oh = a;
    var ow = b;
    var ok = a >= 0 && b >= 0;
    if (p.stride != 1u) {
        let s = i32(p.stride);
        oh = a / s;
        ow = b / s;
        ok = ok && a % s == 0 && b % s == 0;
    }
    ok = ok && oh < i32(p.h_out) && ow < i32(p.w_out);
    let idx = ((img * p.c_out + co) * p.h_out + u32(max(oh, 0))) * p.w_out + u32(max(ow, 0));
    return select(0.0, in1[min(idx, arrayLength(&in1) - 1u)], ok);
}

// pos0 + (0, 1, 2, 3), clamped to the last position.
fn lanes(pos0: u32, total: u32) -> vec4<u32> {
    return min(vec4<u32>(pos0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(total - 1u));
}

// ---- forward ---------------------------------------------------------------------------

// Bindings: 1 x, 2 w, 3 bias, 4 y. Block: 4 consecutive output positions (flat over
// n·h_out·w_out) × 4 output channels.
@compute @workgroup_size(64)
fn conv_forward_direct(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) li: u32) {
    let g = global_index(wg, nwg, li);
    let ncb = (p.c_out + 3u) / 4u;
    let co0 = (g % ncb) * 4u;
    let pos0 = (g / ncb) * 4u;
    let plane = p.h_out * p.w_out;
    let total = p.n * plane;
    if (pos0 >= total) {
        return;
    }
    // Per position (clamped into range; only real ones are stored): image, first input row
    // and column of its window (may be negative with padding).
    let pos = lanes(pos0, total);
    let img = pos / plane;
    let q = pos % plane;
    let ih0 = vec4<i32>((q / p.w_out) * p.stride) - vec4<i32>(i32(p.pad));
    let iw0 = vec4<i32>((q % p.w_out) * p.stride) - vec4<i32>(i32(p.pad));
    let hw = p.h * p.w;
    let kk = p.k * p.k;
    let wco = min(vec4<u32>(co0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.c_out - 1u)) * (p.c_in * kk);
    var acc = mat4x4<f32>(); // column j: channel co0 + j; component i: position pos0 + i
    for (var ci = 0u; ci < p.c_in; ci++) {
        for (var kh = 0u; kh < p.k; kh++) {
            for (var kw = 0u; kw < p.k; kw++) {
                let ih = ih0 + vec4<i32>(i32(kh));
                let iw = iw0 + vec4<i32>(i32(kw));
                let base = (img * p.c_in + vec4<u32>(ci)) * hw;
                let xv = vec4<f32>(
                    x_tap(base.x, ih.x, iw.x),
                    x_tap(base.y, ih.y, iw.y),
                    x_tap(base.z, ih.z, iw.z),
                    x_tap(base.w, ih.w, iw.w),
                );
                let wi = (ci * p.k + kh) * p.k + kw;
                acc[0] += xv * in2[wco.x + wi];
                acc[1] += xv * in2[wco.y + wi];
                acc[2] += xv * in2[wco.z + wi];
                acc[3] += xv * in2[wco.w + wi];
            }
        }
    }
    for (var j = 0u; j < 4u; j++) {
        let co = co0 + j;
        if (co < p.c_out) {
            var add = 0.0;
            if (p.has_bias != 0u) {
                add = in3[co];
            }
            for (var i = 0u; i < 4u; i++) {
                if (pos0 + i < total) {
                    out4[(img[i] * p.c_out + co) * plane + q[i]] = acc[j][i] + add;
                }
            }
        }
    }
}

// The 4 inputs seen by 4 consecutive outputs through kernel column kw (0..4), out of the 8
// consecutive inputs a, b.
fn shift(a: vec4<f32>, b: vec4<f32>, kw: u32) -> vec4<f32> {
    switch kw {
        case 0u: { return a; }
        case 1u: { return vec4<f32>(a.yzw, b.x); }
        case 2u: { return vec4<f32>(a.zw, b.xy); }
        case 3u: { return vec4<f32>(a.w, b.xyz); }
        default: { return b; }
    }
}

// Bindings: 1 x (vec4 view; rows p.x_row long, p.h rows per plane), 2 weights transposed
// to [c_in·k·k, co4] (vec4 view), 3 bias, 4 y [n, c_out, h_out, w_out].
// y[n, co, oh, ow] = Σ x[n, ci, oh + kh − pad, ow + kw]·wt[(ci·k + kh)·k + kw, co] over the
// kernel rows that land inside x (p.pad pads rows only; columns are never padded here).
// Block: 4·np outputs along a row × 4 channels; needs x_row % 4 == 0, w_out % (4·np) == 0,
// k ≤ 5. np = 2 measured best on lavapipe (8 loads per 160 FMAs); 3 × 4 accumulators
// (np = 3) still fit, 8 channels × 8 outputs did not (spills, 30% slower). Written out
// unrolled (conv_forward_rows{4,8,12}, generated): with the accumulators and the loaded
// vectors in arrays indexed by unrolled loop counters conv2 took ~25% more CPU time.
// BEGIN GENERATED forward_rows by tests/conv2d_generated.rs: edit the generator, then run
// WGSL_CNN_BLESS=1 cargo test --release --test conv2d_generated (rewrites up to END).
@compute @workgroup_size(64)
fn conv_forward_rows4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let g = global_index(wg, nwg, li);
    let cq = p.co4 / 4u;
    let cb = g % cq;
    let blocks = p.w_out / 4u;
    let rest = g / cq;
    let ow0 = (rest % blocks) * 4u;
    let row = rest / blocks;
    if (row >= p.n * p.h_out) {
        return;
    }
    let img = row / p.h_out;
    let oh = row % p.h_out;
    // kernel rows kh with 0 ≤ oh + kh − pad < h
    let kh_lo = u32(max(i32(p.pad) - i32(oh), 0));
    let kh_hi = min(p.k, p.h + p.pad - oh);
    let rowq = p.x_row / 4u;
    let last = arrayLength(&in1v) - 1u;
    var a0 = vec4<f32>(); // output ow0 + 0, 4 channels
    var a1 = vec4<f32>(); // output ow0 + 1, 4 channels
    var a2 = vec4<f32>(); // output ow0 + 2, 4 channels
    var a3 = vec4<f32>(); // output ow0 + 3, 4 channels
    for (var ci = 0u; ci < p.c_in; ci++) {
        for (var kh = kh_lo; kh < kh_hi; kh++) {
            let xb = ((img * p.c_in + ci) * p.h + oh + kh - p.pad) * rowq + ow0 / 4u;
            let v0 = in1v[min(xb + 0u, last)];
            let v1 = in1v[min(xb + 1u, last)];
            let wr = (ci * p.k + kh) * p.k * cq + cb;
            let w0 = in2v[wr + 0u * cq];
            a0 += w0 * v0.x;
            a1 += w0 * v0.y;
            a2 += w0 * v0.z;
            a3 += w0 * v0.w;
            if (p.k > 1u) {
                let w1 = in2v[wr + 1u * cq];
                a0 += w1 * v0.y;
                a1 += w1 * v0.z;
                a2 += w1 * v0.w;
                a3 += w1 * v1.x;
            }
            if (p.k > 2u) {
                let w2 = in2v[wr + 2u * cq];
                a0 += w2 * v0.z;
                a1 += w2 * v0.w;
                a2 += w2 * v1.x;
                a3 += w2 * v1.y;
            }
            if (p.k > 3u) {
                let w3 = in2v[wr + 3u * cq];
                a0 += w3 * v0.w;
                a1 += w3 * v1.x;
                a2 += w3 * v1.y;
                a3 += w3 * v1.z;
            }
            if (p.k > 4u) {
                let w4 = in2v[wr + 4u * cq];
                a0 += w4 * v1.x;
                a1 += w4 * v1.y;
                a2 += w4 * v1.z;
                a3 += w4 * v1.w;
            }
        }
    }
    let acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
    let plane = p.h_out * p.w_out;
    let ybase = img * p.c_out * plane + oh * p.w_out + ow0;
    for (var j = 0u; j < 4u; j++) {
        let co = cb * 4u + j;
        if (co < p.c_out) {
            var add = 0.0;
            if (p.has_bias != 0u) {
                add = in3[co];
            }
            let o = ybase + co * plane;
            for (var i = 0u; i < 4u; i++) {
                out4[o + i] = acc[i][j] + add;
            }
        }
    }
}

@compute @workgroup_size(64)
fn conv_forward_rows8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let g = global_index(wg, nwg, li);
    let cq = p.co4 / 4u;
    let cb = g % cq;
    let blocks = p.w_out / 8u;
    let rest = g / cq;
    let ow0 = (rest % blocks) * 8u;
    let row = rest / blocks;
    if (row >= p.n * p.h_out) {
        return;
    }
    let img = row / p.h_out;
    let oh = row % p.h_out;
    // kernel rows kh with 0 ≤ oh + kh − pad < h
    let kh_lo = u32(max(i32(p.pad) - i32(oh), 0));
    let kh_hi = min(p.k, p.h + p.pad - oh);
    let rowq = p.x_row / 4u;
    let last = arrayLength(&in1v) - 1u;
    var a0 = vec4<f32>(); // output ow0 + 0, 4 channels
    var a1 = vec4<f32>(); // output ow0 + 1, 4 channels
    var a2 = vec4<f32>(); // output ow0 + 2, 4 channels
    var a3 = vec4<f32>(); // output ow0 + 3, 4 channels
    var a4 = vec4<f32>(); // output ow0 + 4, 4 channels
    var a5 = vec4<f32>(); // output ow0 + 5, 4 channels
    var a6 = vec4<f32>(); // output ow0 + 6, 4 channels
    var a7 = vec4<f32>(); // output ow0 + 7, 4 channels
    for (var ci = 0u; ci < p.c_in; ci++) {
        for (var kh = kh_lo; kh < kh_hi; kh++) {
            let xb = ((img * p.c_in + ci) * p.h + oh + kh - p.pad) * rowq + ow0 / 4u;
            let v0 = in1v[min(xb + 0u, last)];
            let v1 = in1v[min(xb + 1u, last)];
            let v2 = in1v[min(xb + 2u, last)];
            let wr = (ci * p.k + kh) * p.k * cq + cb;
            let w0 = in2v[wr + 0u * cq];
            a0 += w0 * v0.x;
            a1 += w0 * v0.y;
            a2 += w0 * v0.z;
            a3 += w0 * v0.w;
            a4 += w0 * v1.x;
            a5 += w0 * v1.y;
            a6 += w0 * v1.z;
            a7 += w0 * v1.w;
            if (p.k > 1u) {
                let w1 = in2v[wr + 1u * cq];
                a0 += w1 * v0.y;
                a1 += w1 * v0.z;
                a2 += w1 * v0.w;
                a3 += w1 * v1.x;
                a4 += w1 * v1.y;
                a5 += w1 * v1.z;
                a6 += w1 * v1.w;
                a7 += w1 * v2.x;
            }
            if (p.k > 2u) {
                let w2 = in2v[wr + 2u * cq];
                a0 += w2 * v0.z;
                a1 += w2 * v0.w;
                a2 += w2 * v1.x;
                a3 += w2 * v1.y;
                a4 += w2 * v1.z;
                a5 += w2 * v1.w;
                a6 += w2 * v2.x;
                a7 += w2 * v2.y;
            }
            if (p.k > 3u) {
                let w3 = in2v[wr + 3u * cq];
                a0 += w3 * v0.w;
                a1 += w3 * v1.x;
                a2 += w3 * v1.y;
                a3 += w3 * v1.z;
                a4 += w3 * v1.w;
                a5 += w3 * v2.x;
                a6 += w3 * v2.y;
                a7 += w3 * v2.z;
            }
            if (p.k > 4u) {
                let w4 = in2v[wr + 4u * cq];
                a0 += w4 * v1.x;
                a1 += w4 * v1.y;
                a2 += w4 * v1.z;
                a3 += w4 * v1.w;
                a4 += w4 * v2.x;
                a5 += w4 * v2.y;
                a6 += w4 * v2.z;
                a7 += w4 * v2.w;
            }
        }
    }
    let acc = array<vec4<f32>, 8>(a0, a1, a2, a3, a4, a5, a6, a7);
    let plane = p.h_out * p.w_out;
    let ybase = img * p.c_out * plane + oh * p.w_out + ow0;
    for (var j = 0u; j < 4u; j++) {
        let co = cb * 4u + j;
        if (co < p.c_out) {
            var add = 0.0;
            if (p.has_bias != 0u) {
                add = in3[co];
            }
            let o = ybase + co * plane;
            for (var i = 0u; i < 8u; i++) {
                out4[o + i] = acc[i][j] + add;
            }
        }
    }
}

@compute @workgroup_size(64)
fn conv_forward_rows12(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let g = global_index(wg, nwg, li);
    let cq = p.co4 / 4u;
    let cb = g % cq;
    let blocks = p.w_out / 12u;
    let rest = g / cq;
    let ow0 = (rest % blocks) * 12u;
    let row = rest / blocks;
    if (row >= p.n * p.h_out) {
        return;
    }
    let img = row / p.h_out;
    let oh = row % p.h_out;
    // kernel rows kh with 0 ≤ oh + kh − pad < h
    let kh_lo = u32(max(i32(p.pad) - i32(oh), 0));
    let kh_hi = min(p.k, p.h + p.pad - oh);
    let rowq = p.x_row / 4u;
    let last = arrayLength(&in1v) - 1u;
    var a0 = vec4<f32>(); // output ow0 + 0, 4 channels
    var a1 = vec4<f32>(); // output ow0 + 1, 4 channels
    var a2 = vec4<f32>(); // output ow0 + 2, 4 channels
    var a3 = vec4<f32>(); // output ow0 + 3, 4 channels
    var a4 = vec4<f32>(); // output ow0 + 4, 4 channels
    var a5 = vec4<f32>(); // output ow0 + 5, 4 channels
    var a6 = vec4<f32>(); // output ow0 + 6, 4 channels
    var a7 = vec4<f32>(); // output ow0 + 7, 4 channels
    var a8 = vec4<f32>(); // output ow0 + 8, 4 channels
    var a9 = vec4<f32>(); // output ow0 + 9, 4 channels
    var a10 = vec4<f32>(); // output ow0 + 10, 4 channels
    var a11 = vec4<f32>(); // output ow0 + 11, 4 channels
    for (var ci = 0u; ci < p.c_in; ci++) {
        for (var kh = kh_lo; kh < kh_hi; kh++) {
            let xb = ((img * p.c_in + ci) * p.h + oh + kh - p.pad) * rowq + ow0 / 4u;
            let v0 = in1v[min(xb + 0u, last)];
            let v1 = in1v[min(xb + 1u, last)];
            let v2 = in1v[min(xb + 2u, last)];
            let v3 = in1v[min(xb + 3u, last)];
            let wr = (ci * p.k + kh) * p.k * cq + cb;
            let w0 = in2v[wr + 0u * cq];
            a0 += w0 * v0.x;
            a1 += w0 * v0.y;
            a2 += w0 * v0.z;
            a3 += w0 * v0.w;
            a4 += w0 * v1.x;
            a5 += w0 * v1.y;
            a6 += w0 * v1.z;
            a7 += w0 * v1.w;
            a8 += w0 * v2.x;
            a9 += w0 * v2.y;
            a10 += w0 * v2.z;
            a11 += w0 * v2.w;
            if (p.k > 1u) {
                let w1 = in2v[wr + 1u * cq];
                a0 += w1 * v0.y;
                a1 += w1 * v0.z;
                a2 += w1 * v0.w;
                a3 += w1 * v1.x;
                a4 += w1 * v1.y;
                a5 += w1 * v1.z;
                a6 += w1 * v1.w;
                a7 += w1 * v2.x;
                a8 += w1 * v2.y;
                a9 += w1 * v2.z;
                a10 += w1 * v2.w;
                a11 += w1 * v3.x;
            }
            if (p.k > 2u) {
                let w2 = in2v[wr + 2u * cq];
                a0 += w2 * v0.z;
                a1 += w2 * v0.w;
                a2 += w2 * v1.x;
                a3 += w2 * v1.y;
                a4 += w2 * v1.z;
                a5 += w2 * v1.w;
                a6 += w2 * v2.x;
                a7 += w2 * v2.y;
                a8 += w2 * v2.z;
                a9 += w2 * v2.w;
                a10 += w2 * v3.x;
                a11 += w2 * v3.y;
            }
            if (p.k > 3u) {
                let w3 = in2v[wr + 3u * cq];
                a0 += w3 * v0.w;
                a1 += w3 * v1.x;
                a2 += w3 * v1.y;
                a3 += w3 * v1.z;
                a4 += w3 * v1.w;
                a5 += w3 * v2.x;
                a6 += w3 * v2.y;
                a7 += w3 * v2.z;
                a8 += w3 * v2.w;
                a9 += w3 * v3.x;
                a10 += w3 * v3.y;
                a11 += w3 * v3.z;
            }
            if (p.k > 4u) {
                let w4 = in2v[wr + 4u * cq];
                a0 += w4 * v1.x;
                a1 += w4 * v1.y;
                a2 += w4 * v1.z;
                a3 += w4 * v1.w;
                a4 += w4 * v2.x;
                a5 += w4 * v2.y;
                a6 += w4 * v2.z;
                a7 += w4 * v2.w;
                a8 += w4 * v3.x;
                a9 += w4 * v3.y;
                a10 += w4 * v3.z;
                a11 += w4 * v3.w;
            }
        }
    }
    let acc = array<vec4<f32>, 12>(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11);
    let plane = p.h_out * p.w_out;
    let ybase = img * p.c_out * plane + oh * p.w_out + ow0;
    for (var j = 0u; j < 4u; j++) {
        let co = cb * 4u + j;
        if (co < p.c_out) {
            var add = 0.0;
            if (p.has_bias != 0u) {
                add = in3[co];
            }
            let o = ybase + co * plane;
            for (var i = 0u; i < 12u; i++) {
                out4[o + i] = acc[i][j] + add;
            }
        }
    }
}
// END GENERATED forward_rows

// Bindings: 1 w [c_out, c_in, k, k], 2 out: the weights as a [rows, co4] matrix, zero in the
// padding columns. flip = 0: out[(ci·k + kh)·k + kw, co] = w[co, ci, kh, kw] (forward).
// flip = 1: out[(co·k + kh)·k + kw, ci] = w[co, ci, k−1−kh, k−1−kw] (the input gradient is
// the forward conv of dy padded by k − 1 with these weights).
@compute @workgroup_size(64)
fn conv_weight_kc(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let g = global_index(wg, nwg, li);
    let kk = p.k * p.k;
    var rows = p.c_in * kk;
    var cols = p.c_out;
    if (p.flip != 0u) {
        rows = p.c_out * kk;
        cols = p.c_in;
    }
    if (g >= rows * p.co4) {
        return;
    }
    let r = g / p.co4;
    let col = g % p.co4;
    var v = 0.0;
    if (col < cols) {
        if (p.flip == 0u) {
            v = in1[col * p.c_in * kk + r];
        } else {
            let co = r / kk;
            let kh = (r % kk) / p.k;
            let kw = r % p.k;
            v = in1[((co * p.c_in + col) * p.k + (p.k - 1u - kh)) * p.k + (p.k - 1u - kw)];
        }
    }
    out2[g] = v;
}

// Bindings: 1 src [rows, w], 2 dst [rows, x_row] with rows = n·c_in·h: dst[r, j] =
// src[r, j − pad] inside src, else 0 (columns only; the row kernels skip rows outside).
// One invocation writes 4 consecutive elements.
@compute @workgroup_size(64)
fn conv_pad_columns(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let g = global_index(wg, nwg, li) * 4u;
    let rows = p.n * p.c_in * p.h;
    if (g >= rows * p.x_row) {
        return;
    }
    let r = g / p.x_row;
    let j0 = g % p.x_row;
    for (var t = 0u; t < 4u; t++) {
        let j = i32(j0 + t) - i32(p.pad);
        let inside = j >= 0 && j < i32(p.w);
        out2[g + t] = select(0.0, in1[min(r * p.w + u32(max(j, 0)), arrayLength(&in1) - 1u)], inside);
    }
}

// ---- input gradient, stride 1: scatter form ---------------------------------------------

// Bindings: 1 dy (vec4 view, rows w_out long), 2 weights flipped and transposed by
// conv_weight_kc (flip = 1: row (co·k + k−1−kh)·k + k−1−kw holds w[co, ·, kh, kw] over
// input channels, co4 columns; vec4 view), 3 dx. One invocation computes a whole dx row
// (image, ih) for 4 input channels: for every output channel co and kernel row kh with
// 0 ≤ oh = ih + pad − kh < h_out it loads the dy row oh (np = w_out / 4 vec4 loads) and
// adds dy[oh, ow]·w[co, ·, kh, kw] into acc[ow + kw], which holds dx column ow + kw − pad.
// Every product is a useful one (no zero padding), 4·np + k − 1 ≤ 16 accumulators.
// Needs stride 1, pad < k ≤ 5, w_out % 4 == 0, w_out ≤ 12.
// (Generated, fully unrolled: with the accumulators in an array indexed by unrolled loop
// counters lavapipe ran 3.5× slower.)
// BEGIN GENERATED grad_input_scatter by tests/conv2d_generated.rs: edit the generator, then run
// WGSL_CNN_BLESS=1 cargo test --release --test conv2d_generated (rewrites up to END).
@compute @workgroup_size(64)
fn conv_grad_input_scatter4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) li: u32) {
    let g = global_index(wg, nwg, li);
    let cq = p.co4 / 4u;
    let cb = g % cq;
    let row = g / cq;
    if (row >= p.n * p.h) {
        return;
    }
    let img = row / p.h;
    let ih = row % p.h;
    let kh_lo = u32(max(i32(ih + p.pad + 1u) - i32(p.h_out), 0));
    let kh_hi = min(p.k, ih + p.pad + 1u);
    let dyq = p.w_out / 4u;
    var a0 = vec4<f32>();
    var a1 = vec4<f32>();
    var a2 = vec4<f32>();
    var a3 = vec4<f32>();
    var a4 = vec4<f32>();
    var a5 = vec4<f32>();
    var a6 = vec4<f32>();
    var a7 = vec4<f32>();
    for (var co = 0u; co < p.c_out; co++) {
        for (var kh = kh_lo; kh < kh_hi; kh++) {
            let db = ((img * p.c_out + co) * p.h_out + ih + p.pad - kh) * dyq;
            let d0 = in1v[db + 0u];
            let wr = (co * p.k + p.k - 1u - kh) * p.k * cq + cb;
            let w0 = in2v[wr + (p.k - 1u) * cq];
            a0 += w0 * d0.x;
            a1 += w0 * d0.y;
            a2 += w0 * d0.z;
            a3 += w0 * d0.w;
            if (p.k > 1u) {
                let w1 = in2v[wr + (p.k - 2u) * cq];
                a1 += w1 * d0.x;
                a2 += w1 * d0.y;
                a3 += w1 * d0.z;
                a4 += w1 * d0.w;
            }
            if (p.k > 2u) {
                let w2 = in2v[wr + (p.k - 3u) * cq];
                a2 += w2 * d0.x;
                a3 += w2 * d0.y;
                a4 += w2 * d0.z;
                a5 += w2 * d0.w;
            }
            if (p.k > 3u) {
                let w3 = in2v[wr + (p.k - 4u) * cq];
                a3 += w3 * d0.x;
                a4 += w3 * d0.y;
                a5 += w3 * d0.z;
                a6 += w3 * d0.w;
            }
            if (p.k > 4u) {
                let w4 = in2v[wr + (p.k - 5u) * cq];
                a4 += w4 * d0.x;
                a5 += w4 * d0.y;
                a6 += w4 * d0.z;
                a7 += w4 * d0.w;
            }
        }
    }
    let acc = array<vec4<f32>, 8>(a0, a1, a2, a3, a4, a5, a6, a7);
    for (var j = 0u; j < 4u; j++) {
        let ci = cb * 4u + j;
        if (ci < p.c_in) {
            let o = ((img * p.c_in + ci) * p.h + ih) * p.w;
            for (var a = 0u; a < 8u; a++) {
                let iw = i32(a) - i32(p.pad);
                if (iw >= 0 && iw < i32(p.w)) {
                    out3[o + u32(iw)] = acc[a][j];
                }
            }
        }
    }
}

@compute @workgroup_size(64)
fn conv_grad_input_scatter8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) li: u32) {
    let g = global_index(wg, nwg, li);
    let cq = p.co4 / 4u;
    let cb = g % cq;
    let row = g / cq;
    if (row >= p.n * p.h) {
        return;
    }
    let img = row / p.h;
    let ih = row % p.h;
    let kh_lo = u32(max(i32(ih + p.pad + 1u) - i32(p.h_out), 0));
    let kh_hi = min(p.k, ih + p.pad + 1u);
    let dyq = p.w_out / 4u;
    var a0 = vec4<f32>();
    var a1 = vec4<f32>();
    var a2 = vec4<f32>();
    var a3 = vec4<f32>();
    var a4 = vec4<f32>();
    var a5 = vec4<f32>();
    var a6 = vec4<f32>();
    var a7 = vec4<f32>();
    var a8 = vec4<f32>();
    var a9 = vec4<f32>();
    var a10 = vec4<f32>();
    var a11 = vec4<f32>();
    for (var co = 0u; co < p.c_out; co++) {
        for (var kh = kh_lo; kh < kh_hi; kh++) {
            let db = ((img * p.c_out + co) * p.h_out + ih + p.pad - kh) * dyq;
            let d0 = in1v[db + 0u];
            let d1 = in1v[db + 1u];
            let wr = (co * p.k + p.k - 1u - kh) * p.k * cq + cb;
            let w0 = in2v[wr + (p.k - 1u) * cq];
            a0 += w0 * d0.x;
            a1 += w0 * d0.y;
            a2 += w0 * d0.z;
            a3 += w0 * d0.w;
            a4 += w0 * d1.x;
            a5 += w0 * d1.y;
            a6 += w0 * d1.z;
            a7 += w0 * d1.w;
            if (p.k > 1u) {
                let w1 = in2v[wr + (p.k - 2u) * cq];
                a1 += w1 * d0.x;
                a2 += w1 * d0.y;
                a3 += w1 * d0.z;
                a4 += w1 * d0.w;
                a5 += w1 * d1.x;
                a6 += w1 * d1.y;
                a7 += w1 * d1.z;
                a8 += w1 * d1.w;
            }
            if (p.k > 2u) {
                let w2 = in2v[wr + (p.k - 3u) * cq];
                a2 += w2 * d0.x;
                a3 += w2 * d0.y;
                a4 += w2 * d0.z;
                a5 += w2 * d0.w;
                a6 += w2 * d1.x;
                a7 += w2 * d1.y;
                a8 += w2 * d1.z;
                a9 += w2 * d1.w;
            }
            if (p.k > 3u) {
                let w3 = in2v[wr + (p.k - 4u) * cq];
                a3 += w3 * d0.x;
                a4 += w3 * d0.y;
                a5 += w3 * d0.z;
                a6 += w3 * d0.w;
                a7 += w3 * d1.x;
                a8 += w3 * d1.y;
                a9 += w3 * d1.z;
                a10 += w3 * d1.w;
            }
            if (p.k > 4u) {
                let w4 = in2v[wr + (p.k - 5u) * cq];
                a4 += w4 * d0.x;
                a5 += w4 * d0.y;
                a6 += w4 * d0.z;
                a7 += w4 * d0.w;
                a8 += w4 * d1.x;
                a9 += w4 * d1.y;
                a10 += w4 * d1.z;
                a11 += w4 * d1.w;
            }
        }
    }
    let acc = array<vec4<f32>, 12>(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11);
    for (var j = 0u; j < 4u; j++) {
        let ci = cb * 4u + j;
        if (ci < p.c_in) {
            let o = ((img * p.c_in + ci) * p.h + ih) * p.w;
            for (var a = 0u; a < 12u; a++) {
                let iw = i32(a) - i32(p.pad);
                if (iw >= 0 && iw < i32(p.w)) {
                    out3[o + u32(iw)] = acc[a][j];
                }
            }
        }
    }
}

@compute @workgroup_size(64)
fn conv_grad_input_scatter12(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) li: u32) {
    let g = global_index(wg, nwg, li);
    let cq = p.co4 / 4u;
    let cb = g % cq;
    let row = g / cq;
    if (row >= p.n * p.h) {
        return;
    }
    let img = row / p.h;
    let ih = row % p.h;
    let kh_lo = u32(max(i32(ih + p.pad + 1u) - i32(p.h_out), 0));
    let kh_hi = min(p.k, ih + p.pad + 1u);
    let dyq = p.w_out / 4u;
    var a0 = vec4<f32>();
    var a1 = vec4<f32>();
    var a2 = vec4<f32>();
    var a3 = vec4<f32>();
    var a4 = vec4<f32>();
    var a5 = vec4<f32>();
    var a6 = vec4<f32>();
    var a7 = vec4<f32>();
    var a8 = vec4<f32>();
    var a9 = vec4<f32>();
    var a10 = vec4<f32>();
    var a11 = vec4<f32>();
    var a12 = vec4<f32>();
    var a13 = vec4<f32>();
    var a14 = vec4<f32>();
    var a15 = vec4<f32>();
    for (var co = 0u; co < p.c_out; co++) {
        for (var kh = kh_lo; kh < kh_hi; kh++) {
            let db = ((img * p.c_out + co) * p.h_out + ih + p.pad - kh) * dyq;
            let d0 = in1v[db + 0u];
            let d1 = in1v[db + 1u];
            let d2 = in1v[db + 2u];
            let wr = (co * p.k + p.k - 1u - kh) * p.k * cq + cb;
            let w0 = in2v[wr + (p.k - 1u) * cq];
            a0 += w0 * d0.x;
            a1 += w0 * d0.y;
            a2 += w0 * d0.z;
            a3 += w0 * d0.w;
            a4 += w0 * d1.x;
            a5 += w0 * d1.y;
            a6 += w0 * d1.z;
            a7 += w0 * d1.w;
            a8 += w0 * d2.x;
            a9 += w0 * d2.y;
            a10 += w0 * d2.z;
            a11 += w0 * d2.w;
            if (p.k > 1u) {
                let w1 = in2v[wr + (p.k - 2u) * cq];
                a1 += w1 * d0.x;
                a2 += w1 * d0.y;
                a3 += w1 * d0.z;
                a4 += w1 * d0.w;
                a5 += w1 * d1.x;
                a6 += w1 * d1.y;
                a7 += w1 * d1.z;
                a8 += w1 * d1.w;
                a9 += w1 * d2.x;
                a10 += w1 * d2.y;
                a11 += w1 * d2.z;
                a12 += w1 * d2.w;
            }
            if (p.k > 2u) {
                let w2 = in2v[wr + (p.k - 3u) * cq];
                a2 += w2 * d0.x;
                a3 += w2 * d0.y;
                a4 += w2 * d0.z;
                a5 += w2 * d0.w;
                a6 += w2 * d1.x;
                a7 += w2 * d1.y;
                a8 += w2 * d1.z;
                a9 += w2 * d1.w;
                a10 += w2 * d2.x;
                a11 += w2 * d2.y;
                a12 += w2 * d2.z;
                a13 += w2 * d2.w;
            }
            if (p.k > 3u) {
                let w3 = in2v[wr + (p.k - 4u) * cq];
                a3 += w3 * d0.x;
                a4 += w3 * d0.y;
                a5 += w3 * d0.z;
                a6 += w3 * d0.w;
                a7 += w3 * d1.x;
                a8 += w3 * d1.y;
                a9 += w3 * d1.z;
                a10 += w3 * d1.w;
                a11 += w3 * d2.x;
                a12 += w3 * d2.y;
                a13 += w3 * d2.z;
                a14 += w3 * d2.w;
            }
            if (p.k > 4u) {
                let w4 = in2v[wr + (p.k - 5u) * cq];
                a4 += w4 * d0.x;
                a5 += w4 * d0.y;
                a6 += w4 * d0.z;
                a7 += w4 * d0.w;
                a8 += w4 * d1.x;
                a9 += w4 * d1.y;
                a10 += w4 * d1.z;
                a11 += w4 * d1.w;
                a12 += w4 * d2.x;
                a13 += w4 * d2.y;
                a14 += w4 * d2.z;
                a15 += w4 * d2.w;
            }
        }
    }
    let acc = array<vec4<f32>, 16>(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15);
    for (var j = 0u; j < 4u; j++) {
        let ci = cb * 4u + j;
        if (ci < p.c_in) {
            let o = ((img * p.c_in + ci) * p.h + ih) * p.w;
            for (var a = 0u; a < 16u; a++) {
                let iw = i32(a) - i32(p.pad);
                if (iw >= 0 && iw < i32(p.w)) {
                    out3[o + u32(iw)] = acc[a][j];
                }
            }
        }
    }
}
// END GENERATED grad_input_scatter

// ---- input gradient, any stride and padding ---------------------------------------------

// Bindings: 1 dy, 2 w, 3 dx. dx[n, ci, ih, iw] = Σ dy[n, co, oh, ow]·w[co, ci, kh, kw] over
// oh·stride + kh = ih + pad, ow·stride + kw = iw + pad. Block: 4 consecutive input positions
// (flat over n·h·w) × 4 input channels.
@compute @workgroup_size(64)
fn conv_grad_input_direct(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) li: u32) {
    let g = global_index(wg, nwg, li);
    let ncb = (p.c_in + 3u) / 4u;
    let ci0 = (g % ncb) * 4u;
    let pos0 = (g / ncb) * 4u;
    let plane = p.h * p.w;
    let total = p.n * plane;
    if (pos0 >= total) {
        return;
    }
    let pos = lanes(pos0, total);
    let img = pos / plane;
    let q = pos % plane;
    let th = vec4<i32>(q / p.w + vec4<u32>(p.pad)); // ih + pad
    let tw = vec4<i32>(q % p.w + vec4<u32>(p.pad));
    let kk = p.k * p.k;
    let wci = min(vec4<u32>(ci0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.c_in - 1u)) * kk;
    var acc = mat4x4<f32>(); // column j: channel ci0 + j; component i: position pos0 + i
    for (var co = 0u; co < p.c_out; co++) {
        for (var kh = 0u; kh < p.k; kh++) {
            for (var kw = 0u; kw < p.k; kw++) {
                let a = th - vec4<i32>(i32(kh));
                let b = tw - vec4<i32>(i32(kw));
                let dv = vec4<f32>(
                    dy_tap(img.x, co, a.x, b.x),
                    dy_tap(img.y, co, a.y, b.y),
                    dy_tap(img.z, co, a.z, b.z),
                    dy_tap(img.w, co, a.w, b.w),
                );
                let wi = co * p.c_in * kk + kh * p.k + kw;
                acc[0] += dv * in2[wi + wci.x];
                acc[1] += dv * in2[wi + wci.y];
                acc[2] += dv * in2[wi + wci.z];
                acc[3] += dv * in2[wi + wci.w];
            }
        }
    }
    for (var j = 0u; j < 4u; j++) {
        let ci = ci0 + j;
        if (ci < p.c_in) {
            for (var i = 0u; i < 4u; i++) {
                if (pos0 + i < total) {
                    out3[(img[i] * p.c_in + ci) * plane + q[i]] = acc[j][i];
                }
            }
        }
    }
}

// ---- weight gradient: split-K partial sums, then a serial sum over the splits --------------
// The weight and bias gradients add into dw / db (C += contribution, as PyTorch's .grad),
// so that a weight used several times sums its gradients; forward and input gradient
// overwrite.
// part[s, co, (ci·k + kh)·k + kw] = Σ over the positions of split s of
// dy[n, co, oh, ow]·x[n, ci, oh·stride + kh − pad, ow·stride + kw − pad]. Split s takes
// output rows (image·h_out + oh) [s·R/S, (s+1)·R/S) (or flat positions for _direct).
// With p.has_bias, the bias gradient's split partials follow the weights' S·len (it is the
// weight gradient of an input of ones): part[S·len + s·c_out + co] = Σ over the positions
// of split s of dy[n, co, oh, ow]. Every invocation sums the dy it loads anyway (a few adds
// beside its FMAs); those with the first weight column (ci = 0, kh = kw = 0) store it.

// part's index of split s's bias partial for output channel co (see above).
fn bias_partial_index(s: u32, co: u32) -> u32 {
    return p.splits * p.len + s * p.c_out + co;
}

// Bindings: 1 x (vec4 view, rows p.w long), 2 dy (vec4 view), 3 part. Block: 4 output
// channels × one input channel × two kernel rows (kh0, kh0 + 1; the second is clamped to
// k − 1 and not stored when k is odd) × all k kernel columns: per 4 outputs of a dy row,
// 4 dy and 4 x vec4 loads feed 160 FMAs. Needs stride 1, pad 0, w % 4 == 0, w_out % 4 == 0,
// k ≤ 5.
@compute @workgroup_size(64)
fn conv_grad_weight_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) li: u32) {
    let g = global_index(wg, nwg, li);
    let ncb = (p.c_out + 3u) / 4u;
    let co0 = (g % ncb) * 4u;
    let rest = g / ncb;
    let pairs = (p.k + 1u) / 2u;
    let cip = rest % (p.c_in * pairs);
    let s = rest / (p.c_in * pairs);
    if (s >= p.splits) {
        return;
    }
    let ci = cip / pairs;
    let kh0 = (cip % pairs) * 2u;
    let kh1 = min(kh0 + 1u, p.k - 1u);
    let rows = p.n * p.h_out;
    let r_begin = s * rows / p.splits;
    let r_end = (s + 1u) * rows / p.splits;
    let quads = p.w_out / 4u;
    let rowq = p.w / 4u;
    let last = arrayLength(&in1v) - 1u;
    let cos = min(vec4<u32>(co0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.c_out - 1u)) * (p.h_out * quads);
    var img = r_begin / p.h_out;
    var oh = r_begin % p.h_out;
    // a[kw] / b[kw] component j: channel co0 + j, kernel row kh0 / kh1, kernel column kw.
    var a: array<vec4<f32>, 5>;
    var b: array<vec4<f32>, 5>;
    var bsum = vec4<f32>(); // component j: Σ dy of channel co0 + j
    for (var r = r_begin; r < r_end; r++) {
        let dyb = (img * p.c_out * p.h_out + oh) * quads;
        let xp = (img * p.c_in + ci) * p.h + oh;
        let xa = (xp + kh0) * rowq;
        let xb = (xp + kh1) * rowq;
        for (var t = 0u; t < quads; t++) {
            // column i of d: output ow = 4t + i; component j: channel co0 + j
            let d = transpose(mat4x4<f32>(in2v[dyb + cos.x + t], in2v[dyb + cos.y + t], in2v[dyb + cos.z + t], in2v[dyb + cos.w + t]));
            bsum += (d[0] + d[1]) + (d[2] + d[3]);
            let a0 = in1v[xa + t];
            let a1 = in1v[min(xa + t + 1u, last)];
            let b0 = in1v[xb + t];
            let b1 = in1v[min(xb + t + 1u, last)];
            for (var kw = 0u; kw < 5u; kw++) {
                a[kw] += d * shift(a0, a1, kw);
                b[kw] += d * shift(b0, b1, kw);
            }
        }
        oh += 1u;
        if (oh == p.h_out) {
            oh = 0u;
            img += 1u;
        }
    }
    let kcols = p.c_in * p.k * p.k;
    for (var j = 0u; j < 4u; j++) {
        let co = co0 + j;
        if (co < p.c_out) {
            let o = (s * p.c_out + co) * kcols + ci * p.k * p.k;
            for (var kw = 0u; kw < p.k; kw++) {
                out3[o + kh0 * p.k + kw] = a[kw][j];
                if (kh0 + 1u < p.k) {
                    out3[o + kh1 * p.k + kw] = b[kw][j];
                }
            }
            if (p.has_bias != 0u && cip == 0u) {
                out3[bias_partial_index(s, co)] = bsum[j];
            }
        }
    }
}

// Bindings: 1 x, 2 dy, 3 part. Block: 4 output channels × 4 weight columns (ci, kh, kw);
// split s takes flat output positions [s·T/S, (s+1)·T/S), T = n·h_out·w_out.
@compute @workgroup_size(64)
fn conv_grad_weight_direct(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) li: u32) {
    let g = global_index(wg, nwg, li);
    let kk = p.k * p.k;
    let kcols = p.c_in * kk;
    let ncb = (p.c_out + 3u) / 4u;
    let nkb = (kcols + 3u) / 4u;
    let co0 = (g % ncb) * 4u;
    let rest = g / ncb;
    let kc0 = (rest % nkb) * 4u;
    let s = rest / nkb;
    if (s >= p.splits) {
        return;
    }
    let kcs = lanes(kc0, kcols);
    let xoff = (kcs / kk) * p.h * p.w; // ci·h·w of each weight column
    let kh = vec4<i32>((kcs % kk) / p.k) - vec4<i32>(i32(p.pad));
    let kw = vec4<i32>(kcs % p.k) - vec4<i32>(i32(p.pad));
    let plane = p.h_out * p.w_out;
    let total = p.n * plane;
    let t_begin = s * total / p.splits;
    let t_end = (s + 1u) * total / p.splits;
    let cos = min(vec4<u32>(co0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.c_out - 1u)) * plane;
    var img = t_begin / plane;
    var oh = (t_begin % plane) / p.w_out;
    var ow = t_begin % p.w_out;
    var acc = mat4x4<f32>(); // column j: weight column kc0 + j; component i: channel co0 + i
    var bsum = vec4<f32>();  // component i: Σ dy of channel co0 + i
    for (var t = t_begin; t < t_end; t++) {
        let db = img * p.c_out * plane + oh * p.w_out + ow;
        let dv = vec4<f32>(in2[db + cos.x], in2[db + cos.y], in2[db + cos.z], in2[db + cos.w]);
        bsum += dv;
        let xb = img * p.c_in * p.h * p.w;
        let ih = vec4<i32>(i32(oh * p.stride)) + kh;
        let iw = vec4<i32>(i32(ow * p.stride)) + kw;
        let base = vec4<u32>(xb) + xoff;
        acc[0] += dv * x_tap(base.x, ih.x, iw.x);
        acc[1] += dv * x_tap(base.y, ih.y, iw.y);
        acc[2] += dv * x_tap(base.z, ih.z, iw.z);
        acc[3] += dv * x_tap(base.w, ih.w, iw.w);
        ow += 1u;
        if (ow == p.w_out) {
            ow = 0u;
            oh += 1u;
            if (oh == p.h_out) {
                oh = 0u;
                img += 1u;
            }
        }
    }
    for (var j = 0u; j < 4u; j++) {
        let kc = kc0 + j;
        if (kc < kcols) {
            for (var i = 0u; i < 4u; i++) {
                if (co0 + i < p.c_out) {
                    out3[(s * p.c_out + co0 + i) * kcols + kc] = acc[j][i];
                }
            }
        }
    }
    if (p.has_bias != 0u && kc0 == 0u) {
        for (var i = 0u; i < 4u; i++) {
            if (co0 + i < p.c_out) {
                out3[bias_partial_index(s, co0 + i)] = bsum[i];
            }
        }
    }
}

// Σ_s in1[first + s·stride + i], summed in split order.
fn split_sum(i: u32, first: u32, stride: u32) -> f32 {
    var acc = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        acc += in1[first + s * stride + i];
    }
    return acc;
}

// Bindings: 1 part [splits, len], 2 dw [len]. dw[i] += Σ_s part[s, i], summed in order,
// then added to dw (parameter gradients accumulate; the caller zeroes them per step).
@compute @workgroup_size(64)
fn conv_sum_splits(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let i = global_index(wg, nwg, li);
    if (i < p.len) {
        out2[i] = split_sum(i, 0u, p.len) + out2[i];
    }
}

// Bindings: 1 part [splits·len + splits·c_out], 2 dw [len], 3 db [c_out]: as conv_sum_splits
// for i < len, and db[co] += Σ_s part[splits·len + s·c_out + co] for i = len + co.
@compute @workgroup_size(64)
fn conv_sum_splits_bias(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) li: u32) {
    let i = global_index(wg, nwg, li);
    if (i < p.len) {
        out2[i] = split_sum(i, 0u, p.len) + out2[i];
    } else if (i - p.len < p.c_out) {
        let co = i - p.len;
        out3[co] = split_sum(co, p.splits * p.len, p.c_out) + out3[co];
    }
}

// ---- real GPUs: implicit GEMM, tiles staged in workgroup memory ---------------------------
//
// Each pass as a product C[M, N] = A[M, K]·B[K, N] whose operands are read in place through
// index maps (no im2col buffer, no weight copies), any stride and padding:
//              C                          A                           B                  K
// forward      y: (co; img, oh, ow)       w: (co; ci, kh, kw)         x window taps      c_in·k²
// grad_input   dx: (ci; img, ih, iw)      w: (ci; co, kh, kw)         dy taps (dy_tap)   c_out·k²
// grad_weight  part[s]: (co; ci, kh, kw)  dy: (co; positions of s)    x taps             positions
// As matmul_tiled: a 256-invocation workgroup computes a 64×64 tile of C; each step stages a
// 64×16 slice of A and a 16×64 slice of B in workgroup memory (8.5 KiB; zero past M, N, K),
// consecutive invocations loading along the operand's contiguous dimension, and each
// invocation accumulates a 4×4 block from it. The weight gradient's splits are a third grid
// dimension (split s takes positions [s·T/S, (s+1)·T/S)), summed by conv_sum_splits*; its bias
// partials are the row sums of the staged dy, stored by the first tile column.
// conv_gemm reads bindings 1 and 2 only; each entry point stores (bindings differ).

const GEMM_FORWARD: u32 = 0u;
const GEMM_GRAD_INPUT: u32 = 1u;
const GEMM_GRAD_WEIGHT: u32 = 2u;
const GT: u32 = 64u;     // tile rows and columns
const GK: u32 = 16u;     // k per step
const GPAD: u32 = 68u;   // row stride of the staged slices (GT + 4 spreads banks)

// ga_s[kk·GPAD + i] = A[row0 + i, k0 + kk]; gb_s[kk·GPAD + j] = B[k0 + kk, col0 + j].
var<workgroup> ga_s: array<f32, 1088>;
var<workgroup> gb_s: array<f32, 1088>;

// (M, N, first reduction index, reduction length) of op's product; for the weight
// gradient, of split s.
fn gemm_dims(op: u32, s: u32) -> vec4<u32> {
    let kk2 = p.k * p.k;
    if (op == GEMM_FORWARD) {
        return vec4<u32>(p.c_out, p.n * p.h_out * p.w_out, 0u, p.c_in * kk2);
    }
    if (op == GEMM_GRAD_INPUT) {
        return vec4<u32>(p.c_in, p.n * p.h * p.w, 0u, p.c_out * kk2);
    }
    let total = p.n * p.h_out * p.w_out;
    let t0 = s * total / p.splits;
    return vec4<u32>(p.c_out, p.c_in * kk2, t0, (s + 1u) * total / p.splits - t0);
}

// A[m, kk] (kk counted from the start of the whole reduction).
fn gemm_a(op: u32, m: u32, kk: u32) -> f32 {
    let kk2 = p.k * p.k;
    if (op == GEMM_FORWARD) {
        return in2[m * p.c_in * kk2 + kk];
    }
    if (op == GEMM_GRAD_INPUT) {
        return in2[((kk / kk2) * p.c_in + m) * kk2 + kk % kk2];
    }
    let plane = p.h_out * p.w_out;
    return in2[((kk / plane) * p.c_out + m) * plane + kk % plane];
}

// B[kk, j].
fn gemm_b(op: u32, kk: u32, j: u32) -> f32 {
    let kk2 = p.k * p.k;
    if (op == GEMM_GRAD_INPUT) {
        let hw = p.h * p.w;
        let q = j % hw;
        let r = kk % kk2;
        return dy_tap(j / hw, kk / kk2, i32(q / p.w + p.pad) - i32(r / p.k), i32(q % p.w + p.pad) - i32(r % p.k));
    }
    // A position t = (img, oh, ow) and a weight column c = (ci, kh, kw): forward B[c, t],
    // weight gradient B[t, c].
    var t = j;
    var c = kk;
    if (op == GEMM_GRAD_WEIGHT) {
        t = kk;
        c = j;
    }
    let plane = p.h_out * p.w_out;
    let q = t % plane;
    let r = c % kk2;
    let base = ((t / plane) * p.c_in + c / kk2) * p.h * p.w;
    let ih = i32((q / p.w_out) * p.stride + r / p.k) - i32(p.pad);
    let iw = i32((q % p.w_out) * p.stride + r % p.k) - i32(p.pad);
    return x_tap(base, ih, iw);
}

struct GemmTile {
    // acc[i][j] = C[row + 16i, col + 16j]
    acc: array<vec4<f32>, 4>,
    // grad_weight: component i = Σ over the split of A[row + 16i, ·] (the bias partial)
    row_sums: vec4<f32>,
    row: u32,
    col: u32,
    // M and N of the product; the split (grad_weight)
    m: u32,
    n: u32,
    split: u32,
    // false for the grid's spare workgroups (which store nothing)
    live: bool,
}

// Where workgroup `tile` of a grid of rows × cols tiles of C (then the weight gradient's
// splits) falls. Depends on the workgroup and the uniforms only.
struct GemmPlace {
    // the split's product: gemm_dims(op, split)
    d: vec4<u32>,
    split: u32,
    row0: u32,
    col0: u32,
    // false for a spare workgroup past the last split
    live: bool,
}

fn gemm_place(op: u32, tile: u32, rows: u32, cols: u32) -> GemmPlace {
    let d0 = gemm_dims(op, 0u);
    let tiles_n = (d0.y + cols - 1u) / cols;
    let tiles = ((d0.x + rows - 1u) / rows) * tiles_n;
    let s = tile / tiles;
    let t = tile % tiles;
    let live = s < select(1u, p.splits, op == GEMM_GRAD_WEIGHT);
    return GemmPlace(gemm_dims(op, s), s, (t / tiles_n) * rows, (t % tiles_n) * cols, live);
}

fn conv_gemm(op: u32, wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> GemmTile {
    var out: GemmTile;
    // Everything up to the barriers depends on the workgroup and the uniforms only, so
    // control flow stays uniform (WGSL requires it around barriers).
    let at = gemm_place(op, flat_group(wg, nwg), GT, GT);
    if (!at.live) {
        out.live = false;
        return out;
    }
    let d = at.d;
    let row0 = at.row0;
    let col0 = at.col0;
    let tx = li % 16u;
    let ty = li / 16u;
    for (var k0 = 0u; k0 < d.w; k0 += GK) {
        for (var r = 0u; r < 4u; r++) {
            let e = li + r * 256u;
            let i = e / GK;
            let ka = e % GK;
            var av = 0.0;
            if (row0 + i < d.x && k0 + ka < d.w) {
                av = gemm_a(op, row0 + i, d.z + k0 + ka);
            }
            ga_s[ka * GPAD + i] = av;
            // B's contiguous dimension: positions, i.e. j (forward, grad_input) or k.
            var j = e % GT;
            var kb = e / GT;
            if (op == GEMM_GRAD_WEIGHT) {
                j = e / GK;
                kb = e % GK;
            }
            var bv = 0.0;
            if (col0 + j < d.y && k0 + kb < d.w) {
                bv = gemm_b(op, d.z + k0 + kb, col0 + j);
            }
            gb_s[kb * GPAD + j] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < GK; kk++) {
            let ar = kk * GPAD + ty;
            let br = kk * GPAD + tx;
            let av = vec4<f32>(ga_s[ar], ga_s[ar + 16u], ga_s[ar + 32u], ga_s[ar + 48u]);
            let bv = vec4<f32>(gb_s[br], gb_s[br + 16u], gb_s[br + 32u], gb_s[br + 48u]);
            out.acc[0] += av.x * bv;
            out.acc[1] += av.y * bv;
            out.acc[2] += av.z * bv;
            out.acc[3] += av.w * bv;
            if (op == GEMM_GRAD_WEIGHT) {
                out.row_sums += av;
            }
        }
        workgroupBarrier();
    }
    out.row = row0 + ty;
    out.col = col0 + tx;
    out.m = d.x;
    out.n = d.y;
    out.split = at.split;
    out.live = true;
    return out;
}

// Where C[row, col] of op's product is stored, as an index into the entry point's output:
// y (forward), dx (input gradient), or split s's weight partials (weight gradient, whose
// product has n columns). The tiled and the subgroup kernels store through it.
fn gemm_out_index(op: u32, s: u32, row: u32, col: u32, n: u32) -> u32 {
    if (op == GEMM_FORWARD) {
        let plane = p.h_out * p.w_out;
        return ((col / plane) * p.c_out + row) * plane + col % plane;
    }
    if (op == GEMM_GRAD_INPUT) {
        let plane = p.h * p.w;
        return ((col / plane) * p.c_in + row) * plane + col % plane;
    }
    return (s * p.c_out + row) * n + col;
}

// The forward's bias for output channel co (0 without one). Bindings: 3 bias.
fn forward_bias(co: u32) -> f32 {
    if (p.has_bias != 0u) {
        return in3[co];
    }
    return 0.0;
}

// Bindings: 1 x, 2 w, 3 bias, 4 y.
@compute @workgroup_size(256)
fn conv_forward_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let t = conv_gemm(GEMM_FORWARD, wg, nwg, li);
    if (!t.live) {
        return;
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let co = t.row + 16u * i;
            let col = t.col + 16u * j;
            if (co < t.m && col < t.n) {
                out4[gemm_out_index(GEMM_FORWARD, 0u, co, col, t.n)] = t.acc[i][j] + forward_bias(co);
            }
        }
    }
}

// Bindings: 1 dy, 2 w, 3 dx.
@compute @workgroup_size(256)
fn conv_grad_input_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) li: u32) {
    let t = conv_gemm(GEMM_GRAD_INPUT, wg, nwg, li);
    if (!t.live) {
        return;
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let ci = t.row + 16u * i;
            let col = t.col + 16u * j;
            if (ci < t.m && col < t.n) {
                out3[gemm_out_index(GEMM_GRAD_INPUT, 0u, ci, col, t.n)] = t.acc[i][j];
            }
        }
    }
}

// Bindings: 1 x, 2 dy, 3 part (layout as conv_grad_weight_rows).
@compute @workgroup_size(256)
fn conv_grad_weight_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) li: u32) {
    let t = conv_gemm(GEMM_GRAD_WEIGHT, wg, nwg, li);
    if (!t.live) {
        return;
    }
    for (var i = 0u; i < 4u; i++) {
        let co = t.row + 16u * i;
        if (co < t.m) {
            for (var j = 0u; j < 4u; j++) {
                let kc = t.col + 16u * j;
                if (kc < t.n) {
                    out3[gemm_out_index(GEMM_GRAD_WEIGHT, t.split, co, kc, t.n)] = t.acc[i][j];
                }
            }
            // The first tile column's first column of invocations holds each row's sum.
            if (p.has_bias != 0u && t.col == 0u) {
                out3[bias_partial_index(t.split, co)] = t.row_sums[i];
            }
        }
    }
}
