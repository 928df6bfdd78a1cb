// The conv2d kernels for adapters with subgroups: the three passes as the implicit GEMMs of
// conv2d.wgsl's tiled section (gemm_dims, gemm_a, gemm_b: operands read in place, any stride
// and padding), with matmul_subgroup.wgsl's scheme instead of workgroup memory. A file of its
// own for the reasons given there; src/gpu/context.rs builds this module as common.wgsl +
// conv2d.wgsl + this file.
//
// 64 invocations compute a 16 × 256 tile of C: invocation li owns rows row0..row0+15 (the
// workgroup's) and columns col0 + 4·li..+3. Lane s of a subgroup of size S gathers
// A[row0..row0+15, k0 + s] and the others read it by subgroupShuffle; each lane gathers its
// own 4 columns of B (im2col taps, the integer arithmetic of gemm_b per tap). A subgroup
// with inactive lanes, or every subgroup with p.flip = 1 (how the tests reach that path),
// gathers A in each lane instead. The weight gradient's splits are the grid's third factor,
// as in conv_gemm, summed by conv_sum_splits*; its bias partials are the row sums of A
// (dy), which every lane accumulates and the tile's first lane stores.

const SG_COLS_CONV: u32 = 256u;  // tile columns: 64 invocations × 4
const SG_ROWS_CONV: u32 = 16u;   // tile rows: four 4×4 blocks per invocation

struct SgTile {
    // acc[q][j][i] = C[row0 + 4q + i, col + j]
    acc: array<mat4x4<f32>, 4>,
    // grad_weight: row_sums[q][i] = Σ over the split of A[row0 + 4q + i, ·]
    row_sums: array<vec4<f32>, 4>,
    row0: u32,
    col: u32,
    m: u32,
    n: u32,
    split: u32,
    live: bool,
}

// A[rows r, kk] for 4 consecutive rows from r (clamped to m - 1: computed, never stored).
fn gemm_a4(op: u32, r: u32, m: u32, kk: u32) -> vec4<f32> {
    return vec4<f32>(gemm_a(op, min(r, m - 1u), kk), gemm_a(op, min(r + 1u, m - 1u), kk),
                     gemm_a(op, min(r + 2u, m - 1u), kk), gemm_a(op, min(r + 3u, m - 1u), kk));
}

fn conv_gemm_subgroup(op: u32, wg: vec3<u32>, nwg: vec3<u32>, li: u32, lane: u32, size: u32) -> SgTile {
    var out: SgTile;
    let at = gemm_place(op, flat_group(wg, nwg), SG_ROWS_CONV, SG_COLS_CONV);
    // Whole workgroups leave here, so what follows stays uniform (no early return below).
    if (!at.live) {
        out.live = false;
        return out;
    }
    let d = at.d;
    let row0 = at.row0;
    let col = at.col0 + 4u * li;
    // Columns past n are clamped (computed, never stored).
    let cols = min(vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(d.y - 1u));
    let full = subgroupAdd(1u) == size && p.flip == 0u;
    for (var k0 = 0u; k0 < d.w; k0 += size) {
        // Past the reduction a lane gathers its last column again; never asked for.
        let mk = d.z + min(k0 + lane, d.w - 1u);
        var mine: array<vec4<f32>, 4>;
        for (var q = 0u; q < 4u; q++) {
            mine[q] = gemm_a4(op, row0 + 4u * q, d.x, mk);
        }
        let steps = min(size, d.w - k0);
        for (var t = 0u; t < steps; t++) {
            let kk = d.z + k0 + t;
            let bv = vec4<f32>(gemm_b(op, kk, cols.x), gemm_b(op, kk, cols.y), gemm_b(op, kk, cols.z), gemm_b(op, kk, cols.w));
            for (var q = 0u; q < 4u; q++) {
                var av = subgroupShuffle(mine[q], t);
                if (!full) {
                    av = gemm_a4(op, row0 + 4u * q, d.x, kk);
                }
                out.acc[q] += mat4x4<f32>(av * bv.x, av * bv.y, av * bv.z, av * bv.w);
                if (op == GEMM_GRAD_WEIGHT) {
                    out.row_sums[q] += av;
                }
            }
        }
    }
    out.row0 = row0;
    out.col = col;
    out.m = d.x;
    out.n = d.y;
    out.split = at.split;
    out.live = true;
    return out;
}

// Bindings: 1 x, 2 w, 3 bias, 4 y.
@compute @workgroup_size(64)
fn conv_forward_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) li: u32,
                         @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) size: u32) {
    let t = conv_gemm_subgroup(GEMM_FORWARD, wg, nwg, li, lane, size);
    if (!t.live) {
        return;
    }
    for (var r = 0u; r < SG_ROWS_CONV; r++) {
        for (var j = 0u; j < 4u; j++) {
            let co = t.row0 + r;
            let col = t.col + j;
            if (co < t.m && col < t.n) {
                out4[gemm_out_index(GEMM_FORWARD, 0u, co, col, t.n)] = t.acc[r / 4u][j][r % 4u] + forward_bias(co);
            }
        }
    }
}

// Bindings: 1 dy, 2 w, 3 dx.
@compute @workgroup_size(64)
fn conv_grad_input_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) li: u32,
                            @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) size: u32) {
    let t = conv_gemm_subgroup(GEMM_GRAD_INPUT, wg, nwg, li, lane, size);
    if (!t.live) {
        return;
    }
    for (var r = 0u; r < SG_ROWS_CONV; r++) {
        for (var j = 0u; j < 4u; j++) {
            let ci = t.row0 + r;
            let col = t.col + j;
            if (ci < t.m && col < t.n) {
                out3[gemm_out_index(GEMM_GRAD_INPUT, 0u, ci, col, t.n)] = t.acc[r / 4u][j][r % 4u];
            }
        }
    }
}

// Bindings: 1 x, 2 dy, 3 part (layout as conv_grad_weight_rows).
@compute @workgroup_size(64)
fn conv_grad_weight_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) li: u32,
                             @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) size: u32) {
    let t = conv_gemm_subgroup(GEMM_GRAD_WEIGHT, wg, nwg, li, lane, size);
    if (!t.live) {
        return;
    }
    for (var r = 0u; r < SG_ROWS_CONV; r++) {
        let co = t.row0 + r;
        if (co < t.m) {
            for (var j = 0u; j < 4u; j++) {
                let kc = t.col + j;
                if (kc < t.n) {
                    out3[gemm_out_index(GEMM_GRAD_WEIGHT, t.split, co, kc, t.n)] = t.acc[r / 4u][j][r % 4u];
                }
            }
            // The invocation of the split's first column stores each row's sum.
            if (p.has_bias != 0u && t.col == 0u) {
                out3[bias_partial_index(t.split, co)] = t.row_sums[r / 4u][r % 4u];
            }
        }
    }
}
