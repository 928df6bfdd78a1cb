// ReLU, Tanh and Sigmoid forward and backward over flat buffers of `len` elements.
// The *4 entry points handle whole vec4s (one 16-byte load per operand, which llvmpipe
// runs as one per-lane loop instead of four); the scalar ones handle elements
// [start, end) — the tail len % 4, or everything for short buffers.
// ReLU keeps x where x > 0 or x is NaN (NaN propagates, as PyTorch's relu), else gives +0.0
// (so -0.0 and -inf give 0). The backward passes dy unless y <= 0 (PyTorch's
// threshold_backward), i.e. exactly where the forward keeps: `keep` serves both. It tests the
// bits, not `x > 0.0`, because WGSL lets implementations assume no NaN reaches a comparison.
struct Params { start: u32, end: u32 }
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y4: array<vec4<f32>>;

// backward: (y, dy) -> dx
@group(0) @binding(1) var<storage, read> fy: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_x: array<f32>; // dx; not `dx`, a namespace in DXC that naga does not rename

@group(0) @binding(1) var<storage, read> fy4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dx4: array<vec4<f32>>;


@compute @workgroup_size(64)
fn relu_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = p.start + flat_group(wg, nwg) * 64u + li;
    if (i < p.end) {
        let v = x[i];
        y[i] = select(0.0, v, relu_keeps(v));
    }
}

// Vec4 i covers elements 4i..4i+3; `end` counts vec4s.
@compute @workgroup_size(64)
fn relu_forward4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = flat_group(wg, nwg) * 64u + li;
    if (i < p.end) {
        let v = x4[i];
        y4[i] = select(vec4<f32>(0.0), v, relu_keeps4(v));
    }
}

@compute @workgroup_size(64)
fn relu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = p.start + flat_group(wg, nwg) * 64u + li;
    if (i < p.end) {
        grad_x[i] = select(0.0, dy[i], relu_keeps(fy[i]));
    }
}

@compute @workgroup_size(64)
fn relu_backward4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let i = flat_group(wg, nwg) * 64u + li;
    if (i < p.end) {
        dx4[i] = select(vec4<f32>(0.0), dy4[i], relu_keeps4(fy4[i]));
    }
}

// ---- Tanh and Sigmoid --------------------------------------------------------------------
// Forward y = f(x); backward dx = dy·f'(x) from the forward's output: tanh' = 1 − y²,
// sigmoid' = y·(1 − y). tanh is taken of x clamped to ±10 (tanh(10) rounds to 1 in f32), so
// that an implementation computing it through exponentials cannot overflow to inf/inf; the
// sigmoid clamps to ±80 for the same reason (e^80 is finite in f32, and 1/(1 + e^80) is
// below 1e-34). NaN inputs get no promise (WGSL lets implementations assume none).
fn tanh_of(v: f32) -> f32 { return tanh(clamp(v, -10.0, 10.0)); }
fn tanh_of4(v: vec4<f32>) -> vec4<f32> { return tanh(clamp(v, vec4<f32>(-10.0), vec4<f32>(10.0))); }
fn sigmoid_of(v: f32) -> f32 { return 1.0 / (1.0 + exp(-clamp(v, -80.0, 80.0))); }
fn sigmoid_of4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(1.0) / (vec4<f32>(1.0) + exp(-clamp(v, vec4<f32>(-80.0), vec4<f32>(80.0))));
}

@compute @workgroup_size(64)
fn tanh_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = p.start + flat_group(wg, nwg) * 64u + li;
    if (i < p.end) {
        y[i] = tanh_of(x[i]);
    }
}

@compute @workgroup_size(64)
fn tanh_forward4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = flat_group(wg, nwg) * 64u + li;
    if (i < p.end) {
        y4[i] = tanh_of4(x4[i]);
    }
}

@compute @workgroup_size(64)
fn tanh_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = p.start + flat_group(wg, nwg) * 64u + li;
    if (i < p.end) {
        let v = fy[i];
        grad_x[i] = dy[i] * (1.0 - v * v);
    }
}

@compute @workgroup_size(64)
fn tanh_backward4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let i = flat_group(wg, nwg) * 64u + li;
    if (i < p.end) {
        let v = fy4[i];
        dx4[i] = dy4[i] * (vec4<f32>(1.0) - v * v);
    }
}

@compute @workgroup_size(64)
fn sigmoid_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let i = p.start + flat_group(wg, nwg) * 64u + li;
    if (i < p.end) {
        y[i] = sigmoid_of(x[i]);
    }
}

@compute @workgroup_size(64)
fn sigmoid_forward4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let i = flat_group(wg, nwg) * 64u + li;
    if (i < p.end) {
        y4[i] = sigmoid_of4(x4[i]);
    }
}

@compute @workgroup_size(64)
fn sigmoid_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let i = p.start + flat_group(wg, nwg) * 64u + li;
    if (i < p.end) {
        let v = fy[i];
        grad_x[i] = dy[i] * (v * (1.0 - v));
    }
}

@compute @workgroup_size(64)
fn sigmoid_backward4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let i = flat_group(wg, nwg) * 64u + li;
    if (i < p.end) {
        let v = fy4[i];
        dx4[i] = dy4[i] * (v * (vec4<f32>(1.0) - v));
    }
}
