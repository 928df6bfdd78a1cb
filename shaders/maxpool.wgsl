// MaxPool2d, square window k, stride k, over x [planes = n·c, h, w] → y [planes, ho, wo]
// (ho = h / k, wo = w / k, floor). argmax holds the index within the input's h·w plane of
// each window's maximum: the first one in row-major window order on ties (strict >).
struct Params { planes: u32, h: u32, w: u32, k: u32, ho: u32, wo: u32, hb: u32, wb: u32 }
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;

@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> bargmax: array<u32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

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
    let first = oy * p.k * p.w + ox * p.k;
    var best_i = first;
    var best = x[base + first];
    for (var ky = 0u; ky < p.k; ky++) {
        let row = first + ky * p.w;
        for (var kx = 0u; kx < p.k; kx++) {
            let v = x[base + row + kx];
            if (v > best) {
                best = v;
                best_i = row + kx;
            }
        }
    }
    y[o] = best;
    argmax[o] = best_i;
}

// One invocation per k×k block of the input, hb = ceil(h / k) by wb = ceil(w / k) blocks
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
            dx[base + i] = select(0.0, g, i == a);
        }
    }
}
