// ReLU forward and backward over flat buffers of `len` elements.
// The *4 entry points handle whole vec4s (one 16-byte load per operand, which llvmpipe
// runs as one per-lane loop instead of four); the scalar ones handle elements
// [start, end) — the tail len % 4, or everything for short buffers.
// ReLU keeps x only where x > 0 (so NaN and -0.0 give 0, like `if x > 0 { x } else { 0 }`).
struct Params { start: u32, end: u32 }
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y4: array<vec4<f32>>;

// backward: (y, dy) -> dx
@group(0) @binding(1) var<storage, read> fy: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@group(0) @binding(1) var<storage, read> fy4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dx4: array<vec4<f32>>;

@compute @workgroup_size(64)
fn relu_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = p.start + flat_group(wg, nwg) * 64u + li;
    if (i < p.end) {
        let v = x[i];
        y[i] = select(0.0, v, v > 0.0);
    }
}

// Vec4 i covers elements 4i..4i+3; `end` counts vec4s.
@compute @workgroup_size(64)
fn relu_forward4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = flat_group(wg, nwg) * 64u + li;
    if (i < p.end) {
        let v = x4[i];
        y4[i] = select(vec4<f32>(0.0), v, v > vec4<f32>(0.0));
    }
}

@compute @workgroup_size(64)
fn relu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = p.start + flat_group(wg, nwg) * 64u + li;
    if (i < p.end) {
        dx[i] = select(0.0, dy[i], fy[i] > 0.0);
    }
}

@compute @workgroup_size(64)
fn relu_backward4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let i = flat_group(wg, nwg) * 64u + li;
    if (i < p.end) {
        dx4[i] = select(vec4<f32>(0.0), dy4[i], fy4[i] > vec4<f32>(0.0));
    }
}
