// Small reductions of the classifier head: bias gradient of a Linear layer (accumulated),
// softmax cross-entropy with its gradient and the training-step state, and the
// correct-prediction count and the confusion matrix. Rows are samples, `cols`/`classes` the row length, row-major.
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
// [steps taken (this step's t once the loss kernel ran), first step with a non-finite loss or 0]
@group(0) @binding(5) var<storage, read_write> state: array<u32>;
@group(0) @binding(3) var<storage, read_write> correct: array<u32>;
// confusion: counts [cols, cols], row = true label, column = prediction
@group(0) @binding(3) var<storage, read_write> confusion: array<atomic<u32>>;

// One workgroup of WG; small, because each tree level is a barrier (costly on llvmpipe).
const WG: u32 = 64u;
var<workgroup> partial: array<f32, WG>;
var<workgroup> partial_u: array<u32, WG>;

// One invocation per column, a serial sum down the rows (deterministic; rows is the batch),
// added to what out holds (parameter gradients accumulate): out = f32(Σ) + out.
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
    out[j] = s + out[j];
}

// A single workgroup; invocation li takes rows li, li + WG, …. Each row's loss is
// logsumexp(row) − row[label]; an out-of-range label gives a NaN loss (so that the state
// records it) and no one-hot. loss[0] = (Σ row losses) / rows, summed by a fixed tree, so the
// result is deterministic. Invocation 0 then counts the step, state[0] += 1, and if the loss
// is NaN or ±inf and state[1] is still 0 sets state[1] = state[0] (the first bad step).
// Non-finite is tested on the bits (exponent all ones), which no fast-math assumption can
// fold away.
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
        let l = partial[0] * inv_n;
        loss[0] = l;
        let t = state[0] + 1u;
        state[0] = t;
        if ((bitcast<u32>(l) & 0x7f800000u) == 0x7f800000u && state[1] == 0u) {
            state[1] = t;
        }
    }
}

// The class of row r's first maximum (strict >, so ties go to the lowest class).
fn row_argmax(r: u32) -> u32 {
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
    return best_c;
}

// A single workgroup; correct[0] += rows whose first maximum (strict >) sits at the label.
@compute @workgroup_size(WG)
fn count_correct(@builtin(local_invocation_index) li: u32) {
    var n = 0u;
    for (var r = li; r < p.rows; r += WG) {
        n += select(0u, 1u, row_argmax(r) == labels[r]);
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

// One invocation per row: counts[label · cols + first argmax] += 1. Integer atomics, so
// the counts do not depend on the order the rows land in. A label ≥ cols counts nowhere.
@compute @workgroup_size(64)
fn confusion_count(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let r = flat_group(wg, nwg) * 64u + li;
    if (r >= p.rows) {
        return;
    }
    let best_c = row_argmax(r);
    let label = labels[r];
    if (label < p.cols) {
        atomicAdd(&confusion[label * p.cols + best_c], 1u);
    }
}
