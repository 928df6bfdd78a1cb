// The matmul kernel for adapters with subgroups (wgpu's Features::SUBGROUP): C = op(A)·op(B)
// as in matmul.wgsl, whose bindings, parameters, epilogues and row-sum workgroups it uses
// (src/gpu/context.rs builds this module as common.wgsl + matmul.wgsl + this file). It is a
// file of its own because only devices opened with subgroups can compile it, and because
// backends differ in how it is declared: wgpu's naga takes subgroup builtins as they are,
// while WebGPU (Dawn) requires an `enable subgroups;` line first (scripts/portability.sh adds
// it for Dawn). FXC (SM 5.1) and GLSL have no subgroups; wgpu's GL backend never offers them.
//
// matmul_subgroup: 64 invocations compute a 16 × 256 tile of C; invocation li owns rows
// r0..r0+15 (the same for the whole workgroup) and columns c0 = 4·li..4·li+3 of the tile,
// as four 4×4 blocks, with scalar loads through the strides of matmul_strided (any shape,
// any transposes). Because the rows are the workgroup's, every lane of every subgroup needs
// the same op(A) values, whichever invocations the device groups together: lane s of a
// subgroup of size S loads op(A)[r0..r0+15, k0 + s] once, and the others read it with
// subgroupShuffle instead of loading it (S loads of A become 1 per lane; a shuffle needs no
// workgroup memory and no barrier). Each op(B) row of 4 values then feeds 64 FMAs. A
// subgroup with inactive lanes (Vulkan rules them out for SPIR-V 1.6 with a workgroup width
// that is a multiple of the subgroup size, which wgpu emits on Vulkan 1.3 drivers; other
// APIs do not promise it) loads op(A) directly instead, as all subgroups do with
// p.shuffle_a = 0 (how the tests reach that path).
//
// On lavapipe (subgroups of 8: its SIMD lanes) this runs the fc1 products faster than the
// register-blocked kernels; with one 4×4 block per invocation instead of four it was no
// faster than they are (the loads of op(B) dominated), with two about 1.5× slower than now.

const SG_COLS: u32 = 256u;  // tile width: 64 invocations × 4 columns
const RQ: u32 = 4u;         // 4×4 blocks per invocation, stacked: the tile is 4·RQ = 16 rows

@compute @workgroup_size(64)
fn matmul_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32,
                   @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) size: u32) {
    let group = flat_group(wg, nwg);
    if (group >= p.main_groups) {
        add_row_sum(group - p.main_groups, li, WG);
        return;
    }
    // Everything the shuffles depend on is uniform from here: no early return; lanes past n
    // compute on clamped columns, and rows past m are clamped too, never stored.
    let strips = (p.n + SG_COLS - 1u) / SG_COLS;
    let r0 = (group / strips) * (4u * RQ);
    let c0 = (group % strips) * SG_COLS + 4u * li;
    var rows: array<vec4<u32>, RQ>;
    for (var q = 0u; q < RQ; q++) {
        rows[q] = min(vec4<u32>(r0 + 4u * q) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.m - 1u)) * p.a_row;
    }
    let cols = min(vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u)) * p.b_col;
    let full = subgroupAdd(1u) == size && p.shuffle_a != 0u;
    var acc: array<mat4x4<f32>, RQ>;
    for (var k0 = 0u; k0 < p.k; k0 += size) {
        let ak = min(k0 + lane, p.k - 1u) * p.a_k;
        var mine: array<vec4<f32>, RQ>;
        for (var q = 0u; q < RQ; q++) {
            let r = rows[q];
            mine[q] = vec4<f32>(a[r.x + ak], a[r.y + ak], a[r.z + ak], a[r.w + ak]);
        }
        let steps = min(size, p.k - k0);
        for (var s = 0u; s < steps; s++) {
            let kk = k0 + s;
            let bk = kk * p.b_k;
            let bv = vec4<f32>(b[bk + cols.x], b[bk + cols.y], b[bk + cols.z], b[bk + cols.w]);
            for (var q = 0u; q < RQ; q++) {
                var av = subgroupShuffle(mine[q], s);
                if (!full) {
                    let r = rows[q];
                    let ak = kk * p.a_k;
                    av = vec4<f32>(a[r.x + ak], a[r.y + ak], a[r.z + ak], a[r.w + ak]);
                }
                acc[q] += mat4x4<f32>(av * bv.x, av * bv.y, av * bv.z, av * bv.w);
            }
        }
    }
    for (var q = 0u; q < RQ; q++) {
        store_block(acc[q], r0 + 4u * q, c0);
    }
}
