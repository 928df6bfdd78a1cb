// Small reductions of the classifier head: bias gradient of a Linear layer, softmax
// cross-entropy with its gradient, the correct-prediction count, and the non-finite-loss
// flag. Rows are samples, `cols`/`classes` the row length, row-major.
struct Params { rows: u32, cols: u32 }
@group(0) @binding(0) var<uniform> p: Params;

// sum_rows: x [rows, cols] -> out [cols]
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// softmax_cross_entropy / count_correct: logits [rows, cols], labels [rows]
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(3) var<storage, read_write> correct: array<u32>;

// flag_nonfinite
@group(0) @binding(1) var<storage, read> floss: array<f32>;
@group(0) @binding(2) var<storage, read> step: array<u32>;
@group(0) @binding(3) var<storage, read_write> flag: array<u32>;

// One workgroup of WG; small, because each tree level is a barrier (costly on llvmpipe).
const WG: u32 = 64u;
var<workgroup> partial: array<f32, WG>;
var<workgroup> partial_u: array<u32, WG>;

// One invocation per column, a serial sum down the rows (deterministic; rows is the batch).
@compute @workgroup_size(64)
fn sum_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let j = flat_group(wg, nwg) * 64u + li;
    if (j >= p.cols) {
        return;
    }
    var s = 0.0;
    for (var i = 0u; i < p.rows; i++) {
        s += x[i * p.cols + j];
    }
    out[j] = s;
}

// A single workgroup; invocation li takes rows li, li + WG, …. Each row's loss is
// logsumexp(row) − row[label]; an out-of-range label gives a NaN loss (so that
// flag_nonfinite reports it) and no one-hot. loss[0] = (Σ row losses) / rows, summed by a
// fixed tree, so the result is deterministic.
@compute @workgroup_size(WG)
fn softmax_cross_entropy(@builtin(local_invocation_index) li: u32) {
    let inv_n = 1.0 / f32(p.rows);
    var acc = 0.0;
    for (var r = li; r < p.rows; r += WG) {
        let base = r * p.cols;
        var mx = logits[base];
        for (var c = 1u; c < p.cols; c++) {
            mx = max(mx, logits[base + c]);
        }
        var s = 0.0;
        for (var c = 0u; c < p.cols; c++) {
            s += exp(logits[base + c] - mx);
        }
        let label = labels[r];
        let inv_s = 1.0 / s;
        for (var c = 0u; c < p.cols; c++) {
            let prob = exp(logits[base + c] - mx) * inv_s;
            dlogits[base + c] = (prob - select(0.0, 1.0, c == label)) * inv_n;
        }
        if (label < p.cols) {
            acc += (mx + log(s)) - logits[base + label];
        } else {
            acc += bitcast<f32>(0x7fc00000u | (label & 0u)); // runtime NaN (a constant NaN is an error)
        }
    }
    partial[li] = acc;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half >>= 1u) {
        if (li < half) {
            partial[li] += partial[li + half];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        loss[0] = partial[0] * inv_n;
    }
}

// A single workgroup; correct[0] += rows whose first maximum (strict >) sits at the label.
@compute @workgroup_size(WG)
fn count_correct(@builtin(local_invocation_index) li: u32) {
    var n = 0u;
    for (var r = li; r < p.rows; r += WG) {
        let base = r * p.cols;
        var best = logits[base];
        var best_c = 0u;
        for (var c = 1u; c < p.cols; c++) {
            let v = logits[base + c];
            if (v > best) {
                best = v;
                best_c = c;
            }
        }
        n += select(0u, 1u, best_c == labels[r]);
    }
    partial_u[li] = n;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half >>= 1u) {
        if (li < half) {
            partial_u[li] += partial_u[li + half];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        correct[0] += partial_u[0];
    }
}

// flag[0] = step[0] if loss[0] is NaN or ±inf and flag[0] is still 0. Tested on the bits
// (exponent all ones), which no fast-math assumption can fold away.
@compute @workgroup_size(1)
fn flag_nonfinite() {
    let bits = bitcast<u32>(floss[0]);
    if ((bits & 0x7f800000u) == 0x7f800000u && flag[0] == 0u) {
        flag[0] = step[0];
    }
}
