//! One op call without its buffers (`Call`, made from a `backend::Op` by `Call::of`): which
//! op, at which shape, and what it must do, counted from the shape alone (never from how a
//! kernel happens to do it).
//!
//! Counting rules, the same for every op:
//! - FLOPs: one per multiply, add, compare, division, square root, exp or log that the
//!   op's math needs (a fused multiply-add is two). Matmul and conv count only the 2·m·n·k
//!   multiply-adds of the product (the bias adds are noise), as everyone publishes them.
//! - Bytes: every input tensor read once and every output written once, at its storage
//!   type (f32 and u32: 4 bytes; dataset pixels: 1 byte). A kernel that reads a tensor
//!   twice moves more than this; the figure is the least any implementation must move.

use crate::backend::{DatasetShape, Op};
use crate::shapes::{Activation, BatchNormShape, Conv2dShape, MatmulShape, PoolShape};

const F32: u64 = 4;

/// One op call with its shape (its name is `Op::kind`'s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Gather { n: usize, pixels: usize },
    Conv2dForward(Conv2dShape),
    Conv2dGradInput(Conv2dShape),
    /// `bias`: the bias gradient too (`Op::Conv2dGradWeight`'s `db`).
    Conv2dGradWeight { s: Conv2dShape, bias: bool },
    /// `relu`, `normalize`: a ReLU after, a BatchNorm2d normalisation before, in the
    /// pool's pass (`Op::MaxpoolForward`).
    MaxpoolForward { s: PoolShape, relu: bool, normalize: bool },
    MaxpoolBackward(PoolShape),
    AvgpoolForward(PoolShape),
    AvgpoolBackward(PoolShape),
    BatchnormStats(BatchNormShape),
    BatchnormNormalize(BatchNormShape),
    /// `pooled`: dy is the gradient of this MaxPool2d's output (its backward folded in).
    BatchnormBackward { s: BatchNormShape, pooled: Option<PoolShape> },
    ReluForward { len: usize },
    ReluBackward { len: usize },
    ActivationForward { f: Activation, len: usize },
    ActivationBackward { f: Activation, len: usize },
    /// `relu`, `mask`, `bias_grad`: what the product fuses (`backend::Fused`).
    Matmul { s: MatmulShape, bias: bool, relu: bool, mask: bool, bias_grad: bool },
    SumRows { rows: usize, cols: usize },
    SoftmaxCrossEntropy { n: usize, classes: usize },
    CountCorrect { n: usize, classes: usize },
    Confusion { n: usize, classes: usize },
    Adam { len: usize },
    /// `momentum`: the step reads and writes a momentum buffer.
    Sgd { len: usize, momentum: bool },
}

fn conv_macs(s: &Conv2dShape) -> u64 {
    (s.n * s.c_out * s.h_out() * s.w_out() * s.c_in * s.k * s.k) as u64
}

impl Call {
    /// The shape-only part of an op call.
    pub fn of<T, I, D: DatasetShape>(op: &Op<'_, T, I, D>) -> Call {
        match *op {
            Op::Gather { n, ds, .. } => Call::Gather { n, pixels: ds.pixels() },
            Op::Conv2dForward { s, .. } => Call::Conv2dForward(s),
            Op::Conv2dGradInput { s, .. } => Call::Conv2dGradInput(s),
            Op::Conv2dGradWeight { s, db, .. } => Call::Conv2dGradWeight { s, bias: db.is_some() },
            Op::MaxpoolForward { s, relu, normalize, .. } => Call::MaxpoolForward { s, relu, normalize: normalize.is_some() },
            Op::MaxpoolBackward { s, .. } => Call::MaxpoolBackward(s),
            Op::AvgpoolForward { s, .. } => Call::AvgpoolForward(s),
            Op::AvgpoolBackward { s, .. } => Call::AvgpoolBackward(s),
            Op::BatchnormStats { s, .. } => Call::BatchnormStats(s),
            Op::BatchnormNormalize { s, .. } => Call::BatchnormNormalize(s),
            Op::BatchnormBackward { s, pooled, .. } => Call::BatchnormBackward { s, pooled: pooled.map(|(ps, _)| ps) },
            Op::ReluForward { len, .. } => Call::ReluForward { len },
            Op::ReluBackward { len, .. } => Call::ReluBackward { len },
            Op::ActivationForward { f, len, .. } => Call::ActivationForward { f, len },
            Op::ActivationBackward { f, len, .. } => Call::ActivationBackward { f, len },
            Op::Matmul { s, bias, fused, .. } => Call::Matmul {
                s,
                bias: bias.is_some(),
                relu: fused.relu,
                mask: fused.mask.is_some(),
                bias_grad: fused.bias_grad.is_some(),
            },
            Op::SumRows { rows, cols, .. } => Call::SumRows { rows, cols },
            Op::SoftmaxCrossEntropy { n, classes, .. } => Call::SoftmaxCrossEntropy { n, classes },
            Op::CountCorrect { n, classes, .. } => Call::CountCorrect { n, classes },
            Op::Confusion { n, classes, .. } => Call::Confusion { n, classes },
            Op::Adam { len, .. } => Call::Adam { len },
            Op::Sgd { len, cfg, .. } => Call::Sgd { len, momentum: cfg.momentum != 0.0 },
        }
    }

    /// The op's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Call::Gather { .. } => "gather",
            Call::Conv2dForward(_) => "conv2d_forward",
            Call::Conv2dGradInput(_) => "conv2d_grad_input",
            Call::Conv2dGradWeight { .. } => "conv2d_grad_weight",
            Call::MaxpoolForward { .. } => "maxpool_forward",
            Call::MaxpoolBackward(_) => "maxpool_backward",
            Call::AvgpoolForward(_) => "avgpool_forward",
            Call::AvgpoolBackward(_) => "avgpool_backward",
            Call::BatchnormStats(_) => "batchnorm_stats",
            Call::BatchnormNormalize(_) => "batchnorm_normalize",
            Call::BatchnormBackward { .. } => "batchnorm_backward",
            Call::ReluForward { .. } => "relu_forward",
            Call::ReluBackward { .. } => "relu_backward",
            Call::ActivationForward { f: Activation::Tanh, .. } => "tanh_forward",
            Call::ActivationForward { f: Activation::Sigmoid, .. } => "sigmoid_forward",
            Call::ActivationBackward { f: Activation::Tanh, .. } => "tanh_backward",
            Call::ActivationBackward { f: Activation::Sigmoid, .. } => "sigmoid_backward",
            Call::Matmul { .. } => "matmul",
            Call::SumRows { .. } => "sum_rows",
            Call::SoftmaxCrossEntropy { .. } => "softmax_cross_entropy",
            Call::CountCorrect { .. } => "count_correct",
            Call::Confusion { .. } => "confusion",
            Call::Adam { .. } => "adam",
            Call::Sgd { .. } => "sgd",
        }
    }

    /// The shape, compactly: NCHW dims joined by x, `->` from input to output.
    pub fn shape(&self) -> String {
        let conv = |s: &Conv2dShape| {
            format!(
                "{}x{}x{}x{} -> {}x{}x{} k{}{}",
                s.n,
                s.c_in,
                s.h,
                s.w,
                s.c_out,
                s.h_out(),
                s.w_out(),
                s.k,
                if s.stride != 1 || s.pad != 0 { format!(" s{} p{}", s.stride, s.pad) } else { String::new() }
            )
        };
        let pool = |s: &PoolShape| {
            let stride = if s.stride != s.k { format!(" s{}", s.stride) } else { String::new() };
            format!("{}x{}x{}x{} -> {}x{} k{}{stride}", s.n, s.c, s.h, s.w, s.h_out(), s.w_out(), s.k)
        };
        let bn = |s: &BatchNormShape| format!("{}x{}x{}", s.n, s.c, s.hw);
        match self {
            Call::Gather { n, pixels } => format!("{n}x{pixels} u8"),
            Call::Conv2dForward(s) | Call::Conv2dGradInput(s) => conv(s),
            Call::Conv2dGradWeight { s, bias } => format!("{}{}", conv(s), if *bias { " +bias" } else { "" }),
            Call::MaxpoolForward { s, relu, normalize } => {
                format!("{}{}{}", if *normalize { "bn " } else { "" }, pool(s), if *relu { " relu" } else { "" })
            }
            Call::MaxpoolBackward(s) | Call::AvgpoolForward(s) | Call::AvgpoolBackward(s) => pool(s),
            Call::BatchnormStats(s) | Call::BatchnormNormalize(s) | Call::BatchnormBackward { s, pooled: None } => bn(s),
            Call::BatchnormBackward { s, pooled: Some(ps) } => format!("{} <- {}", bn(s), pool(ps)),
            Call::ReluForward { len }
            | Call::ReluBackward { len }
            | Call::ActivationForward { len, .. }
            | Call::ActivationBackward { len, .. }
            | Call::Adam { len }
            | Call::Sgd { len, .. } => format!("{len}"),
            Call::Matmul { s, bias, relu, mask, bias_grad } => format!(
                "{}x{}{} . {}x{}{}{}{}{}{}",
                s.m,
                s.k,
                if s.trans_a { "^T" } else { "" },
                s.k,
                s.n,
                if s.trans_b { "^T" } else { "" },
                if *bias { " +bias" } else { "" },
                if *relu { " relu" } else { "" },
                if *mask { " *relu'" } else { "" },
                if *bias_grad { " +db" } else { "" }
            ),
            Call::SumRows { rows, cols } => format!("{rows}x{cols} -> {cols}"),
            Call::SoftmaxCrossEntropy { n, classes } | Call::CountCorrect { n, classes } | Call::Confusion { n, classes } => {
                format!("{n}x{classes}")
            }
        }
    }

    /// Floating-point operations the op's math needs (see the module comment).
    pub fn flops(&self) -> u64 {
        match self {
            // one u8 → f32 scale per pixel
            Call::Gather { n, pixels } => (n * pixels) as u64,
            // every product is a multiply-add over Cin·K·K for each output element
            Call::Conv2dForward(s) | Call::Conv2dGradInput(s) => 2 * conv_macs(s),
            // and with the bias gradient one add per dy element
            Call::Conv2dGradWeight { s, bias } => 2 * conv_macs(s) + if *bias { s.y_len() as u64 } else { 0 },
            // k²−1 compares per window, one more for the fused ReLU, and the normalisation's
            // 3 per input element (as BatchnormNormalize)
            Call::MaxpoolForward { s, relu, normalize } => {
                (s.y_len() * (s.k * s.k - 1 + *relu as usize) + if *normalize { 3 * s.x_len() } else { 0 }) as u64
            }
            // routes values, no arithmetic
            Call::MaxpoolBackward(_) => 0,
            // k² − 1 adds and one scale per window
            Call::AvgpoolForward(s) => (s.y_len() * s.k * s.k) as u64,
            // one scale per window and one add per window element
            Call::AvgpoolBackward(s) => (s.y_len() * (1 + s.k * s.k)) as u64,
            // Σx (1 add) and Σx² (multiply-add) per element; per channel, the running
            // statistics: 2 blends of 3 flops each and the unbiased-variance scale
            Call::BatchnormStats(s) => 3 * s.len() as u64 + 7 * s.c as u64,
            // (x − mean)·scale + beta per element (scale per channel: negligible)
            Call::BatchnormNormalize(s) => 3 * s.len() as u64,
            // per element: x̂ = (x − mean)·istd (2), Σdy (1), Σdy·x̂ (2),
            // dx = istd·gamma·(dy − Σdy/m − x̂·Σdy·x̂/m) with per-channel factors (1 + 2 + 1 + 2);
            // pooled, dy is 0 off the argmaxes: the sums (3) per window only
            Call::BatchnormBackward { s, pooled: None } => 11 * s.len() as u64,
            Call::BatchnormBackward { s, pooled: Some(ps) } => (8 * s.len() + 3 * ps.y_len()) as u64,
            Call::ReluForward { len } | Call::ReluBackward { len } => *len as u64,
            // tanh: one exp, two adds, a division (4); sigmoid: exp, add, division (3)
            Call::ActivationForward { f: Activation::Tanh, len } => 4 * *len as u64,
            Call::ActivationForward { f: Activation::Sigmoid, len } => 3 * *len as u64,
            // dy·(1 − y²) and dy·y·(1 − y): three each
            Call::ActivationBackward { len, .. } => 3 * *len as u64,
            Call::Matmul { s, bias_grad, .. } => 2 * (s.m * s.n * s.k) as u64 + if *bias_grad { (s.m * s.k) as u64 } else { 0 },
            Call::SumRows { rows, cols } => (rows * cols) as u64,
            // per logit: max (1), subtract max (1), exp (1), sum (1), normalise (1),
            // minus one-hot (1), divide by n (1)
            Call::SoftmaxCrossEntropy { n, classes } => 7 * (n * classes) as u64,
            Call::CountCorrect { n, classes } | Call::Confusion { n, classes } => (n * classes) as u64,
            // m = β1·m + (1−β1)·g (3), v = β2·v + (1−β2)·g² (4),
            // p −= lr·(m/bc1)/(√(v/bc2) + eps) (7)
            Call::Adam { len } => 14 * *len as u64,
            // p −= lr·d (2); with momentum b = μ·b + (1 − dampening)·d (3); Nesterov's
            // d + μ·b and the weight decay's g + wd·p (2 each) not counted
            Call::Sgd { len, momentum } => (if *momentum { 5 } else { 2 }) * *len as u64,
        }
    }

    /// Least bytes the op must move: inputs read once, outputs written once.
    pub fn bytes(&self) -> u64 {
        let n = |x: usize| x as u64;
        match self {
            // reads perm[n] (u32) and n·pixels u8 pixels and n labels (u32); writes x (f32) and y (u32)
            Call::Gather { n: b, pixels } => {
                F32 * n(*b) + n(b * pixels) + F32 * n(*b) + F32 * n(b * pixels) + F32 * n(*b)
            }
            // x, w, bias in; y out
            Call::Conv2dForward(s) => F32 * n(s.x_len() + s.w_len() + s.c_out + s.y_len()),
            // dy, w in; dx out
            Call::Conv2dGradInput(s) => F32 * n(s.y_len() + s.w_len() + s.x_len()),
            // x, dy in; dw (and db) out
            Call::Conv2dGradWeight { s, bias } => F32 * n(s.x_len() + s.y_len() + s.w_len() + if *bias { s.c_out } else { 0 }),
            // x (and mean, var, gamma, beta) in; y and argmax (u32) out
            Call::MaxpoolForward { s, normalize, .. } => F32 * n(s.x_len() + 2 * s.y_len() + if *normalize { 4 * s.c } else { 0 }),
            // dy and argmax in; dx out
            Call::MaxpoolBackward(s) => F32 * n(2 * s.y_len() + s.x_len()),
            // x in, y out; dy in, dx out
            Call::AvgpoolForward(s) | Call::AvgpoolBackward(s) => F32 * n(s.x_len() + s.y_len()),
            // x, running mean, running var in; mean, var, running mean, running var out
            Call::BatchnormStats(s) => F32 * n(s.len() + 6 * s.c),
            // x, mean, var, gamma, beta in; y out
            Call::BatchnormNormalize(s) => F32 * n(2 * s.len() + 4 * s.c),
            // x, dy, mean, var, gamma in; dx, dgamma, dbeta out; pooled, dy and the argmax
            // (u32) are the pool's output size
            Call::BatchnormBackward { s, pooled: None } => F32 * n(3 * s.len() + 5 * s.c),
            Call::BatchnormBackward { s, pooled: Some(ps) } => F32 * n(2 * s.len() + 2 * ps.y_len() + 5 * s.c),
            // x in, y out
            Call::ReluForward { len } | Call::ActivationForward { len, .. } => F32 * n(2 * len),
            Call::ActivationBackward { len, .. } => F32 * n(3 * len),
            // y, dy in, dx out
            Call::ReluBackward { len } => F32 * n(3 * len),
            // A, B (and bias, mask) in; C (and the bias gradient, read and written) out
            Call::Matmul { s, bias, mask, bias_grad, .. } => F32
                * n(s.m * s.k
                    + s.k * s.n
                    + s.m * s.n
                    + if *bias { s.n } else { 0 }
                    + if *mask { s.m * s.n } else { 0 }
                    + if *bias_grad { 2 * s.m } else { 0 }),
            // x in, out out
            Call::SumRows { rows, cols } => F32 * n(rows * cols + cols),
            // logits, labels, step state (2) in; loss, dlogits, step state out
            Call::SoftmaxCrossEntropy { n: b, classes } => F32 * n(2 * b * classes + b + 1 + 4),
            // logits, labels, counter in; counter out
            Call::CountCorrect { n: b, classes } => F32 * n(b * classes + b + 2),
            // logits, labels in; one counter read and written per row
            Call::Confusion { n: b, classes } => F32 * n(b * classes + b + 2 * b),
            // param, grad, m, v in; param, m, v out
            Call::Adam { len } => F32 * n(7 * len),
            // param, grad (and the buffer) in; param (and the buffer) out
            Call::Sgd { len, momentum } => F32 * n(if *momentum { 5 * len } else { 3 * len }),
        }
    }
}
