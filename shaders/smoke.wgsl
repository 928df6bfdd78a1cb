// A tiny kernel for the wgpu smoke test: out[i] = a[i] * p.scale + f32(i).
struct Params { n: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn scale_add_index(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let i = flat_group(wg, nwg) * 64u + li;
    if (i < p.n) {
        out[i] = a[i] * p.scale + f32(i);
    }
}
