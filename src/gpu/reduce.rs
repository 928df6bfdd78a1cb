//! Reductions of the classifier head (shaders/reduce.wgsl; CPU twin src/reference/reduce.rs):
//! Linear bias gradient, softmax cross-entropy with its gradient, correct count, and the
//! non-finite-loss flag.

use super::context::{Access, GpuContext, Kernel, RawBuffer};

use Access::{Read as R, ReadWrite as W};

static SUM_ROWS: Kernel = Kernel { file: "reduce", entry: "sum_rows", bindings: &[R, W] };
static SOFTMAX_CE: Kernel = Kernel { file: "reduce", entry: "softmax_cross_entropy", bindings: &[R, R, W, W] };
static COUNT_CORRECT: Kernel = Kernel { file: "reduce", entry: "count_correct", bindings: &[R, R, W] };
static FLAG_NONFINITE: Kernel = Kernel { file: "reduce", entry: "flag_nonfinite", bindings: &[R, R, W] };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
}

/// out[j] = Σ_i x[i, j] over `rows` rows of `cols` (a Linear layer's bias gradient).
pub fn sum_rows(ctx: &GpuContext, rows: usize, cols: usize, x: &RawBuffer, out: &RawBuffer) {
    assert!(x.len >= rows * cols && out.len >= cols, "sum_rows: buffers too small for {rows}×{cols}");
    let p = Params { rows: rows as u32, cols: cols as u32 };
    ctx.dispatch(&SUM_ROWS, &p, &[x, out], ctx.grid(cols.div_ceil(64)));
}

/// loss[0] = mean over the n rows of −log softmax(logits)[label] and dlogits =
/// (softmax − onehot)/n. One workgroup; the mean is a fixed-order tree sum. A label ≥
/// `classes` makes the loss NaN (caught by [`flag_nonfinite`]).
pub fn softmax_cross_entropy(
    ctx: &GpuContext,
    n: usize,
    classes: usize,
    logits: &RawBuffer,
    labels: &RawBuffer,
    loss: &RawBuffer,
    dlogits: &RawBuffer,
) {
    assert!(classes > 0, "softmax_cross_entropy: no classes");
    assert!(logits.len >= n * classes && dlogits.len >= n * classes && labels.len >= n && loss.len >= 1, "softmax_cross_entropy: buffers too small");
    let p = Params { rows: n as u32, cols: classes as u32 };
    ctx.dispatch(&SOFTMAX_CE, &p, &[logits, labels, loss, dlogits], [1, 1, 1]);
}

/// correct[0] += number of rows whose argmax (first max on ties) equals the label.
pub fn count_correct(ctx: &GpuContext, n: usize, classes: usize, logits: &RawBuffer, labels: &RawBuffer, correct: &RawBuffer) {
    assert!(classes > 0, "count_correct: no classes");
    assert!(logits.len >= n * classes && labels.len >= n && correct.len >= 1, "count_correct: buffers too small");
    let p = Params { rows: n as u32, cols: classes as u32 };
    ctx.dispatch(&COUNT_CORRECT, &p, &[logits, labels, correct], [1, 1, 1]);
}

/// If loss[0] is NaN or ±inf and flag[0] == 0, sets flag[0] = step[0].
///
/// The step comes from a u32 storage buffer, not a uniform: uniform bytes key the bind-group
/// cache, so a per-step uniform would create (and keep) a new bind group every step. The
/// caller writes `step` with `ctx.write(step, &[t])` before recording this dispatch and must
/// submit before writing another step's value (queued writes all land before the next submit).
pub fn flag_nonfinite(ctx: &GpuContext, loss: &RawBuffer, step: &RawBuffer, flag: &RawBuffer) {
    assert!(loss.len >= 1 && step.len >= 1 && flag.len >= 1, "flag_nonfinite: empty buffer");
    ctx.dispatch(&FLAG_NONFINITE, &Params { rows: 0, cols: 0 }, &[loss, step, flag], [1, 1, 1]);
}
