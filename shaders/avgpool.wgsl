// AvgPool2d, square window k, stride `stride` (PyTorch's default: k), no padding, over
// x [planes = n·c, h, w] → y [planes, ho, wo] (ho = (h − k)/stride + 1, floor): the mean of
// each window's k·k elements.
// The backward gathers: one invocation per input element sums dy over the windows holding
// it (in output order) and divides by k·k, so every dx element is written once, without
// atomics, whether windows overlap (stride < k), tile (stride = k) or leave gaps.
struct Params {
    planes: u32, h: u32, w: u32, k: u32,
    stride: u32, ho: u32, wo: u32, _pad: u32,
}
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad_x: array<f32>; // dx; not `dx`, a namespace in DXC that naga does not rename

// One invocation per output element.
@compute @workgroup_size(64)
fn avgpool_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
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
    let first = plane * p.h * p.w + oy * p.stride * p.w + ox * p.stride;
    var acc = 0.0;
    for (var ky = 0u; ky < p.k; ky++) {
        let row = first + ky * p.w;
        for (var kx = 0u; kx < p.k; kx++) {
            acc += x[row + kx];
        }
    }
    y[o] = acc / f32(p.k * p.k);
}

// One invocation per input element.
@compute @workgroup_size(64)
fn avgpool_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
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
            g += dy[(plane * p.ho + oy) * p.wo + ox];
        }
    }
    grad_x[t] = g / f32(p.k * p.k);
}
