// The matmul kernel for adapters with subgroups (wgpu's Features::SUBGROUP): C = op(A)·op(B)
// as in matmul.wgsl, whose bindings, parameters, epilogues and row-sum workgroups it uses
// (src/gpu/context.rs builds this module as common.wgsl + matmul.wgsl + this file). It is a
// file of its own because only devices opened with subgroups can compile it, and because
// backends differ in how it is declared: wgpu's naga takes subgroup builtins as they are,
// while WebGPU (Dawn) requires an `enable subgroups;` line first (scripts/portability.sh adds
// it for Dawn). FXC (SM 5.1) and GLSL have no subgroups; wgpu's GL backend never offers them.
//
// matmul_subgroup: 64 invocations compute a 4 × 256 tile of C; invocation li owns rows
// r0..r0+3 (the same for the whole workgroup) and columns c0 = 4·li..4·li+3 of the tile,
// scalar loads through the strides of matmul_strided (any shape, any transposes). Because
// the rows are the workgroup's, every lane of every subgroup needs the same op(A) values,
// whichever invocations the device groups together: lane s of a subgroup of size S loads
// op(A)[r0..r0+3, k0 + s] once, and the others read it with subgroupShuffle instead of
// loading it (S loads of A become 1 per lane; on a GPU a shuffle replaces a load and needs no
// workgroup memory or barrier). A subgroup with inactive lanes (Vulkan rules them out for
// SPIR-V 1.6 with a workgroup width that is a multiple of the subgroup size, which wgpu
// emits on Vulkan 1.3 drivers; other APIs do not promise it) loads op(A) directly instead,
// as all subgroups do with p.shuffle_a = 0 (how the tests reach that path).

const SG_COLS: u32 = 256u;  // tile width: 64 invocations × 4 columns

@compute @workgroup_size(64)
fn matmul_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32,
                   @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) size: u32) {
    let group = flat_group(wg, nwg);
    if (group >= p.main_groups) {
        add_row_sum(group - p.main_groups, li, WG);
        return;
    }
    // Everything the shuffles depend on is uniform from here: no early return, and lanes
    // past n compute on clamped columns that store_block never stores.
    let strips = (p.n + SG_COLS - 1u) / SG_COLS;
    let r0 = (group / strips) * 4u;
    let c0 = (group % strips) * SG_COLS + 4u * li;
    let rows = min(vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.m - 1u)) * p.a_row;
    let cols = min(vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u)) * p.b_col;
    let full = subgroupAdd(1u) == size && p.shuffle_a != 0u;
    var acc = mat4x4<f32>();
    for (var k0 = 0u; k0 < p.k; k0 += size) {
        // Past k a lane loads column k - 1 again; the loop below never asks for it.
        let ak = min(k0 + lane, p.k - 1u) * p.a_k;
        let mine = vec4<f32>(a[rows.x + ak], a[rows.y + ak], a[rows.z + ak], a[rows.w + ak]);
        let steps = min(size, p.k - k0);
        for (var s = 0u; s < steps; s++) {
            let kk = k0 + s;
            var av = subgroupShuffle(mine, s);
            if (!full) {
                let ak = kk * p.a_k;
                av = vec4<f32>(a[rows.x + ak], a[rows.y + ak], a[rows.z + ak], a[rows.w + ak]);
            }
            let bk = kk * p.b_k;
            acc[0] += av * b[bk + cols.x];
            acc[1] += av * b[bk + cols.y];
            acc[2] += av * b[bk + cols.z];
            acc[3] += av * b[bk + cols.w];
        }
    }
    store_block(acc, r0, c0);
}
