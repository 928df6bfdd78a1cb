// C[m, n] = op(A)·op(B) (+ bias[n] broadcast over rows). op(A) is [m, k]: A is stored
// [m, k], or [k, m] when transposed. op(B) is [k, n]: B is stored [k, n], or [n, k] when
// transposed. Linear forward is x·Wᵀ + b (nt), its input gradient dy·W (nn), its weight
// gradient dyᵀ·x (tn).
//
// Every invocation computes a register block of C and touches no workgroup memory: on
// lavapipe (and other CPU adapters) each storage load costs a loop over the SIMD lanes, so
// speed follows FMAs per load instruction (see WGPU-NOTES), and vec4 loads carry 4 floats
// for the price of one.
//
// Two kinds of entry points share bindings 1..4:
// - matmul_v4_{nn,nt,tn,tt}: 4×8 blocks, k in steps of 4, every load a vec4. They need the
//   contiguous dimension of each stored operand and k to be multiples of 4 (the wrapper
//   checks). The operands are then viewed as array<vec4<f32>> (a4, b4 alias a, b; each
//   entry point uses one view only).
// - matmul_strided: 4×4 blocks, scalar loads through strides; any shape, any transposes.
// - matmul_tiled_{nn,nt,tn,tt}: for real GPUs. A 256-invocation workgroup computes a 64×64
//   tile of C; each step stages a 64×16 slice of op(A) and a 16×64 slice of op(B) in
//   workgroup memory (zero-filled past m, n, k: any shape), and each invocation accumulates
//   a 4×4 block from it. Uses the strides of matmul_strided.
//
// Every kernel ends in `store_c`: C = epilogue(acc (+ bias)), or with p.accumulate
// C = epilogue(acc (+ bias)) + C, the contribution rounded first as the CPU reference does.
// The epilogues fuse a ReLU into the product: EPI_RELU applies it (a Linear followed by a
// ReLU), EPI_MASK zeroes C where the forward's ReLU output, bound in place of the bias as
// an [m, n] matrix, was cut (ReLU's backward folded into the next Linear's input gradient).
//
// With p.bias_groups > 0 the grid has that many extra workgroups after the product's
// p.main_groups, and they add the row sums of op(A) into bias_grad (a Linear's bias
// gradient, Σ over the batch of dy, in the dispatch of its weight gradient dyᵀ·x).

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    // matmul_strided only: op(A)[i, kk] = a[i * a_row + kk * a_k], op(B)[kk, j] = b[kk * b_k + j * b_col].
    a_row: u32,
    a_k: u32,
    b_k: u32,
    b_col: u32,
    // 1: C += product (+ bias), reading C only then (parameter gradients); 0: C = product.
    accumulate: u32,
    // EPI_NONE, EPI_RELU or EPI_MASK.
    epilogue: u32,
    // Workgroups of the product, then workgroups of the row sums (0: none).
    main_groups: u32,
    bias_groups: u32,
    // matmul_subgroup only: 1 shares op(A) by subgroup shuffles where a subgroup has no
    // inactive lanes; 0 loads it in every lane, as such a subgroup does (for the tests).
    shuffle_a: u32,
}

const EPI_NONE: u32 = 0u;
const EPI_RELU: u32 = 1u;
const EPI_MASK: u32 = 2u;

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;  // bias[n], or with EPI_MASK the mask [m, n]
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read_write> bias_grad: array<f32>;

const WG: u32 = 64u;

// Writes one element of C: the contribution v (product plus bias), or v + C where
// accumulating (C is read only then).
fn store_c(idx: u32, v: f32) {
    var out = v;
    if (p.epilogue == EPI_RELU) {
        out = select(0.0, v, relu_keeps(v));
    } else if (p.epilogue == EPI_MASK) {
        out = select(0.0, v, relu_keeps(bias[idx]));
    }
    if (p.accumulate != 0u) {
        c[idx] = out + c[idx];
    } else {
        c[idx] = out;
    }
}

// The row-sum workgroups: invocation li of extra group `group` (counted from 0) adds
// Σ_kk op(A)[i, kk] into bias_grad[i], i = group · size + li. The loop runs in uniform
// control flow and idle invocations only skip the loads: FXC rejects a kernel with
// barriers when this branch holds a loop under a per-invocation condition. Two loaders,
// because an entry point may use only one of the views a, a4 of binding 1.
fn add_row_sum(group: u32, li: u32, size: u32) {
    let i = group * size + li;
    let live = group < p.bias_groups && i < p.m;
    var s = 0.0;
    for (var kk = 0u; kk < p.k; kk++) {
        if (live) {
            s += a[i * p.a_row + kk * p.a_k];
        }
    }
    if (live) {
        bias_grad[i] = s + bias_grad[i];
    }
}
fn add_row_sum4(group: u32, li: u32, size: u32) {
    let i = group * size + li;
    let live = group < p.bias_groups && i < p.m;
    var s = 0.0;
    for (var kk = 0u; kk < p.k; kk++) {
        if (live) {
            let e = i * p.a_row + kk * p.a_k;
            s += a4[e / 4u][e % 4u];
        }
    }
    if (live) {
        bias_grad[i] = s + bias_grad[i];
    }
}

// Rows r0..r0+3 and columns c0..c0+3 of a block `acc` (WGSL column j = output column
// c0 + j, component i = row r0 + i), written where inside C, plus the bias.
fn store_block(acc: mat4x4<f32>, r0: u32, c0: u32) {
    for (var j = 0u; j < 4u; j++) {
        let col = c0 + j;
        if (col < p.n) {
            var add = 0.0;
            if (p.has_bias != 0u) {
                add = bias[col];
            }
            for (var i = 0u; i < 4u; i++) {
                if (r0 + i < p.m) {
                    store_c((r0 + i) * p.n + col, acc[j][i] + add);
                }
            }
        }
    }
}

// ---- vec4 kernels: block of 4 rows × 8 columns -------------------------------------------

// The 4×4 tile op(A)[r0.., kk..] as a matrix whose column j is op(A)[r0..r0+3, kk + j].
fn a_tile(ta: bool, r0: u32, kk: u32) -> mat4x4<f32> {
    if (ta) {
        // A stored [k, m]: row kk + j holds op(A)[·, kk + j]; m % 4 == 0 and r0 % 4 == 0.
        let mq = p.m / 4u;
        let q = r0 / 4u;
        return mat4x4<f32>(a4[kk * mq + q], a4[(kk + 1u) * mq + q], a4[(kk + 2u) * mq + q], a4[(kk + 3u) * mq + q]);
    }
    // A stored [m, k]: row r holds op(A)[r, ·]; rows past m are clamped (never stored).
    let kq = p.k / 4u;
    let kv = kk / 4u;
    let last = p.m - 1u;
    return transpose(mat4x4<f32>(
        a4[min(r0, last) * kq + kv],
        a4[min(r0 + 1u, last) * kq + kv],
        a4[min(r0 + 2u, last) * kq + kv],
        a4[min(r0 + 3u, last) * kq + kv]));
}

// The 4×4 tile op(B)[kk.., c0..] as a matrix whose column j is op(B)[kk..kk+3, c0 + j].
fn b_tile(tb: bool, kk: u32, c0: u32) -> mat4x4<f32> {
    if (tb) {
        // B stored [n, k]: row c holds op(B)[·, c]; columns past n are clamped.
        let kq = p.k / 4u;
        let kv = kk / 4u;
        let last = p.n - 1u;
        return mat4x4<f32>(
            b4[min(c0, last) * kq + kv],
            b4[min(c0 + 1u, last) * kq + kv],
            b4[min(c0 + 2u, last) * kq + kv],
            b4[min(c0 + 3u, last) * kq + kv]);
    }
    // B stored [k, n]: row kk + j holds op(B)[kk + j, ·]; n % 4 == 0, c0 % 4 == 0, and a
    // column group past n is clamped to the last one (never stored).
    let nq = p.n / 4u;
    let q = min(c0 / 4u, nq - 1u);
    return transpose(mat4x4<f32>(b4[kk * nq + q], b4[(kk + 1u) * nq + q], b4[(kk + 2u) * nq + q], b4[(kk + 3u) * nq + q]));
}

fn matmul_v4(ta: bool, tb: bool, wg: vec3<u32>, nwg: vec3<u32>, li: u32) {
    let group = flat_group(wg, nwg);
    if (group >= p.main_groups) {
        add_row_sum4(group - p.main_groups, li, WG);
        return;
    }
    let g = group * WG + li;
    let nbn = (p.n + 7u) / 8u;
    let r0 = (g / nbn) * 4u;
    let c0 = (g % nbn) * 8u;
    if (r0 >= p.m) {
        return;
    }
    var acc0 = mat4x4<f32>();
    var acc1 = mat4x4<f32>();
    for (var kk = 0u; kk < p.k; kk += 4u) {
        let at = a_tile(ta, r0, kk);
        acc0 += at * b_tile(tb, kk, c0);
        acc1 += at * b_tile(tb, kk, c0 + 4u);
    }
    store_block(acc0, r0, c0);
    store_block(acc1, r0, c0 + 4u);
}

@compute @workgroup_size(64)
fn matmul_v4_nn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    matmul_v4(false, false, wg, nwg, li);
}

@compute @workgroup_size(64)
fn matmul_v4_nt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    matmul_v4(false, true, wg, nwg, li);
}

@compute @workgroup_size(64)
fn matmul_v4_tn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    matmul_v4(true, false, wg, nwg, li);
}

@compute @workgroup_size(64)
fn matmul_v4_tt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    matmul_v4(true, true, wg, nwg, li);
}

// ---- any shape: block of 4 rows × 4 columns, scalar loads ---------------------------------

@compute @workgroup_size(64)
fn matmul_strided(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) li: u32) {
    let group = flat_group(wg, nwg);
    if (group >= p.main_groups) {
        add_row_sum(group - p.main_groups, li, WG);
        return;
    }
    let g = group * WG + li;
    let nbn = (p.n + 3u) / 4u;
    let r0 = (g / nbn) * 4u;
    let c0 = (g % nbn) * 4u;
    if (r0 >= p.m) {
        return;
    }
    // Out-of-range rows and columns are clamped to the last one and never stored.
    let rows = min(vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.m - 1u)) * p.a_row;
    let cols = min(vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u)) * p.b_col;
    var acc = mat4x4<f32>();
    for (var kk = 0u; kk < p.k; kk++) {
        let ak = kk * p.a_k;
        let bk = kk * p.b_k;
        let av = vec4<f32>(a[rows.x + ak], a[rows.y + ak], a[rows.z + ak], a[rows.w + ak]);
        acc[0] += av * b[bk + cols.x];
        acc[1] += av * b[bk + cols.y];
        acc[2] += av * b[bk + cols.z];
        acc[3] += av * b[bk + cols.w];
    }
    store_block(acc, r0, c0);
}

// ---- real GPUs: 64×64 tiles staged in workgroup memory ------------------------------------

const TM: u32 = 64u;   // tile rows (of C and op(A))
const TN: u32 = 64u;   // tile columns (of C and op(B))
const TK: u32 = 16u;   // k per step
const PAD: u32 = 68u;  // row stride of the staged slices: TM/TN + 4 spreads banks on stores

// ta_s[kk * PAD + i] = op(A)[tile row0 + i, k0 + kk]; tb_s[kk * PAD + j] = op(B)[k0 + kk, col0 + j].
// 2 × 16 × 68 × 4 B = 8.5 KiB.
var<workgroup> ta_s: array<f32, 1088>;
var<workgroup> tb_s: array<f32, 1088>;

fn matmul_tiled(ta: bool, tb: bool, wg: vec3<u32>, nwg: vec3<u32>, li: u32) {
    // Everything up to the barriers depends only on the workgroup and the uniforms, so the
    // early return below keeps control flow uniform (WGSL requires it around barriers).
    let tiles_n = (p.n + TN - 1u) / TN;
    let tile = flat_group(wg, nwg);
    if (tile >= p.main_groups) {
        add_row_sum(tile - p.main_groups, li, 256u);
        return;
    }
    let row0 = (tile / tiles_n) * TM;
    let col0 = (tile % tiles_n) * TN;
    // Invocation (tx, ty) owns rows row0 + ty + 16·i and columns col0 + tx + 16·j (i, j < 4):
    // neighbouring invocations read neighbouring staged values and store neighbouring columns.
    let tx = li % 16u;
    let ty = li / 16u;
    var acc: array<vec4<f32>, 4>;  // acc[i][j]
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        // 1024 values per slice, 4 per invocation; consecutive invocations walk the stored
        // operand's contiguous dimension (k for A [m, k] and for Bᵀ [n, k], else m or n).
        for (var r = 0u; r < 4u; r++) {
            let e = li + r * 256u;
            var i = e / TK;
            var kk = e % TK;
            if (ta) {
                i = e % TM;
                kk = e / TM;
            }
            var av = 0.0;
            if (row0 + i < p.m && k0 + kk < p.k) {
                av = a[(row0 + i) * p.a_row + (k0 + kk) * p.a_k];
            }
            ta_s[kk * PAD + i] = av;
            var j = e % TN;
            var kb = e / TN;
            if (tb) {
                j = e / TK;
                kb = e % TK;
            }
            var bv = 0.0;
            if (col0 + j < p.n && k0 + kb < p.k) {
                bv = b[(k0 + kb) * p.b_k + (col0 + j) * p.b_col];
            }
            tb_s[kb * PAD + j] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let ar = kk * PAD + ty;
            let br = kk * PAD + tx;
            let av = vec4<f32>(ta_s[ar], ta_s[ar + 16u], ta_s[ar + 32u], ta_s[ar + 48u]);
            let bv = vec4<f32>(tb_s[br], tb_s[br + 16u], tb_s[br + 32u], tb_s[br + 48u]);
            acc[0] += av.x * bv;
            acc[1] += av.y * bv;
            acc[2] += av.z * bv;
            acc[3] += av.w * bv;
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let col = col0 + tx + 16u * j;
        if (col < p.n) {
            var add = 0.0;
            if (p.has_bias != 0u) {
                add = bias[col];
            }
            for (var i = 0u; i < 4u; i++) {
                let row = row0 + ty + 16u * i;
                if (row < p.m) {
                    store_c(row * p.n + col, acc[i][j] + add);
                }
            }
        }
    }
}

@compute @workgroup_size(256)
fn matmul_tiled_nn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    matmul_tiled(false, false, wg, nwg, li);
}

@compute @workgroup_size(256)
fn matmul_tiled_nt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    matmul_tiled(false, true, wg, nwg, li);
}

@compute @workgroup_size(256)
fn matmul_tiled_tn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    matmul_tiled(true, false, wg, nwg, li);
}

@compute @workgroup_size(256)
fn matmul_tiled_tt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    matmul_tiled(true, true, wg, nwg, li);
}
