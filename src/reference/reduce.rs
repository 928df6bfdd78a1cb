//! Reductions: column sums (Linear bias gradient, accumulated), softmax cross-entropy with
//! its gradient and the training-step state, the count of correct predictions and the
//! confusion matrix. Sums in f64.

use super::Real;

/// out[j] = T(Σ_i x[i, j]) + out[j] over x [rows, cols]: parameter gradients accumulate
/// (zero `out` first for a plain sum).
pub fn sum_rows<T: Real>(rows: usize, cols: usize, x: &[T], out: &mut [T]) {
    assert_eq!(x.len(), rows * cols, "sum_rows: x length");
    assert_eq!(out.len(), cols, "sum_rows: out length");
    for (j, o) in out.iter_mut().enumerate() {
        *o = T::from_f64((0..rows).map(|i| x[i * cols + j].to_f64()).sum()) + *o;
    }
}

/// Mean over the n rows of −log softmax(logits[i])[labels[i]] (PyTorch's CrossEntropyLoss with
/// reduction 'mean'), returned; dlogits = (softmax − onehot)/n. Stable: each row's max is
/// subtracted before exp, and −log softmax_y = ln Σ exp(l − max) − (l_y − max), as
/// PyTorch's log_softmax (no cancellation between a large max and l_y).
pub fn softmax_cross_entropy<T: Real>(n: usize, classes: usize, logits: &[T], labels: &[u32], dlogits: &mut [T]) -> T {
    assert_eq!(logits.len(), n * classes, "softmax_cross_entropy: logits length");
    assert_eq!(dlogits.len(), n * classes, "softmax_cross_entropy: dlogits length");
    assert_eq!(labels.len(), n, "softmax_cross_entropy: labels length");
    let mut loss = 0.0f64;
    for i in 0..n {
        let row: Vec<f64> = logits[i * classes..(i + 1) * classes].iter().map(|v| v.to_f64()).collect();
        let label = labels[i] as usize;
        assert!(label < classes, "softmax_cross_entropy: label {label} of row {i} is not below {classes}");
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|&l| (l - max).exp()).sum();
        loss += sum.ln() - (row[label] - max);
        for (j, &l) in row.iter().enumerate() {
            let p = (l - max).exp() / sum;
            let onehot = if j == label { 1.0 } else { 0.0 };
            dlogits[i * classes + j] = T::from_f64((p - onehot) / n as f64);
        }
    }
    T::from_f64(loss / n as f64)
}

/// The training-step state the GPU's loss kernel keeps (see `gpu::reduce::softmax_cross_entropy`),
/// updated after the loss of one step: state[0] += 1 (steps taken, so state[0] becomes this
/// step's number, from 1), and if `loss` is not finite and state[1] == 0, state[1] = state[0]
/// (the first step with a non-finite loss is kept, never overwritten).
pub fn count_step(loss: f64, state: &mut [u32]) {
    assert!(state.len() >= 2, "count_step: state holds 2 u32");
    state[0] = state[0].wrapping_add(1); // the u32 counter wraps as the shader's does
    if !loss.is_finite() && state[1] == 0 {
        state[1] = state[0];
    }
}

/// The first index of the maximum of `row` (as torch.argmax); NaN never wins a compare.
pub fn argmax<T: Real>(row: &[T]) -> usize {
    let mut best = 0;
    for j in 1..row.len() {
        if row[j] > row[best] {
            best = j;
        }
    }
    best
}

/// Rows whose argmax (first max on ties, as torch.argmax) equals the label.
pub fn count_correct<T: Real>(n: usize, classes: usize, logits: &[T], labels: &[u32]) -> u32 {
    assert_eq!(logits.len(), n * classes, "count_correct: logits length");
    assert_eq!(labels.len(), n, "count_correct: labels length");
    (0..n).filter(|&i| argmax(&logits[i * classes..(i + 1) * classes]) as u32 == labels[i]).count() as u32
}

/// counts[label · classes + argmax] += 1 for each row (counts is [classes, classes], true
/// label by row, prediction by column); a label ≥ classes counts nowhere, as on the GPU.
pub fn confusion<T: Real>(n: usize, classes: usize, logits: &[T], labels: &[u32], counts: &mut [u32]) {
    assert_eq!(logits.len(), n * classes, "confusion: logits length");
    assert_eq!(labels.len(), n, "confusion: labels length");
    assert_eq!(counts.len(), classes * classes, "confusion: counts length");
    for i in 0..n {
        let label = labels[i] as usize;
        if label < classes {
            counts[label * classes + argmax(&logits[i * classes..(i + 1) * classes])] += 1;
        }
    }
}
