// ReLU forward and backward over flat buffers of `len` elements.
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
