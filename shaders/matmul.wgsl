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
}

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

const WG: u32 = 64u;

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
                    c[(r0 + i) * p.n + col] = acc[j][i] + add;
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
    let g = flat_group(wg, nwg) * WG + li;
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
    let g = flat_group(wg, nwg) * WG + li;
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
