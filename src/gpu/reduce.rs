//! Reductions of the classifier head (shaders/reduce.wgsl; CPU twin src/reference/reduce.rs):
//! Linear bias gradient (accumulated), softmax cross-entropy with its gradient and the
//! training-step state (step counter and first non-finite step), the correct count and the
//! confusion matrix.

use super::context::{Access, GpuContext, Kernel, RawBuffer};

use Access::{Read as R, ReadWrite as W};

static SUM_ROWS: Kernel = Kernel { file: "reduce", entry: "sum_rows", bindings: &[R, W] };
static SOFTMAX_CE: Kernel = Kernel { file: "reduce", entry: "softmax_cross_entropy", bindings: &[R, R, W, W, W] };
static COUNT_CORRECT: Kernel = Kernel { file: "reduce", entry: "count_correct", bindings: &[R, R, W] };
static CONFUSION: Kernel = Kernel { file: "reduce", entry: "confusion_count", bindings: &[R, R, W] };

/// Every kernel of this file, for `kernels::all_kernels`.
pub(crate) static KERNELS: &[&Kernel] = &[&SUM_ROWS, &SOFTMAX_CE, &COUNT_CORRECT, &CONFUSION];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
}

/// out[j] = f32(Σ_i x[i, j]) + out[j] over `rows` rows of `cols` (a Linear layer's bias
/// gradient, accumulated: zero `out` first for a plain sum).
pub fn sum_rows(ctx: &GpuContext, rows: usize, cols: usize, x: &RawBuffer, out: &RawBuffer) {
    assert!(x.len >= rows * cols && out.len >= cols, "sum_rows: buffers too small for {rows}×{cols}");
    let p = Params { rows: rows as u32, cols: cols as u32 };
    ctx.dispatch(&SUM_ROWS, &p, &[x, out], ctx.grid(cols.div_ceil(64)));
}

/// loss[0] = mean over the n rows of −log softmax(logits)[label] and dlogits =
/// (softmax − onehot)/n. One workgroup; the mean is a fixed-order tree sum. A label ≥
/// `classes` makes the loss NaN.
///
/// `state` (u32, 2 elements) is the training-step state, kept on the device so that no
/// per-step value is written from the host: the kernel does state[0] += 1 (steps taken, so
/// state[0] becomes this step's number t, counting from 1; Adam reads it), and if the loss is
/// NaN or ±inf and state[1] == 0, sets state[1] = state[0] (the first bad step). The CPU twin
/// is `reference::reduce::softmax_cross_entropy` followed by `reference::reduce::count_step`.
#[allow(clippy::too_many_arguments)]
pub fn softmax_cross_entropy(
    ctx: &GpuContext,
    n: usize,
    classes: usize,
    logits: &RawBuffer,
    labels: &RawBuffer,
    loss: &RawBuffer,
    dlogits: &RawBuffer,
    state: &RawBuffer,
) {
    assert!(classes > 0, "softmax_cross_entropy: no classes");
    assert!(logits.len >= n * classes && dlogits.len >= n * classes && labels.len >= n && loss.len >= 1, "softmax_cross_entropy: buffers too small");
    assert!(state.len >= 2, "softmax_cross_entropy: state holds 2 u32");
    let p = Params { rows: n as u32, cols: classes as u32 };
    ctx.dispatch(&SOFTMAX_CE, &p, &[logits, labels, loss, dlogits, state], [1, 1, 1]);
}

/// correct[0] += number of rows whose argmax (first max on ties) equals the label.
pub fn count_correct(ctx: &GpuContext, n: usize, classes: usize, logits: &RawBuffer, labels: &RawBuffer, correct: &RawBuffer) {
    assert!(classes > 0, "count_correct: no classes");
    assert!(logits.len >= n * classes && labels.len >= n && correct.len >= 1, "count_correct: buffers too small");
    let p = Params { rows: n as u32, cols: classes as u32 };
    ctx.dispatch(&COUNT_CORRECT, &p, &[logits, labels, correct], [1, 1, 1]);
}

/// counts[label · classes + argmax] += 1 for each of the n rows (first max on ties); a
/// label ≥ `classes` counts nowhere. `counts` is [classes, classes], true label by row.
pub fn confusion(ctx: &GpuContext, n: usize, classes: usize, logits: &RawBuffer, labels: &RawBuffer, counts: &RawBuffer) {
    assert!(classes > 0, "confusion: no classes");
    assert!(logits.len >= n * classes && labels.len >= n && counts.len >= classes * classes, "confusion: buffers too small");
    let p = Params { rows: n as u32, cols: classes as u32 };
    ctx.dispatch(&CONFUSION, &p, &[logits, labels, counts], ctx.grid(n.div_ceil(64)));
}
