//! One `Backend` op call as data: which op, at which shape, and what it must do, counted
//! from the shape alone (never from how a kernel happens to do it).
//!
//! Counting rules, the same for every op:
//! - FLOPs: one per multiply, add, compare, division, square root, exp or log that the
//!   op's math needs (a fused multiply-add is two). Matmul and conv count only the 2·m·n·k
//!   multiply-adds of the product (the bias adds are noise), as everyone publishes them.
//! - Bytes: every input tensor read once and every output written once, at its storage
//!   type (f32 and u32: 4 bytes; dataset pixels: 1 byte). A kernel that reads a tensor
//!   twice moves more than this; the figure is the least any implementation must move.

use crate::model::lenet5::{conv1_shape, conv2_shape, fc1_shape, fc2_shape, pool1_shape, pool2_shape, CLASSES};
use crate::model::params::LENET5_PARAMS;
use crate::shapes::{BatchNormShape, Conv2dShape, MatmulShape, PoolShape};

const F32: u64 = 4;

/// One call of a `Backend` op with its shape (the op's name is the trait method's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Gather { n: usize, pixels: usize },
    Conv2dForward(Conv2dShape),
    Conv2dGradInput(Conv2dShape),
    Conv2dGradWeight(Conv2dShape),
    Conv2dGradBias(Conv2dShape),
    MaxpoolForward(PoolShape),
    MaxpoolBackward(PoolShape),
    BatchnormStats(BatchNormShape),
    BatchnormNormalize(BatchNormShape),
    BatchnormBackward(BatchNormShape),
    ReluForward { len: usize },
    ReluBackward { len: usize },
    Matmul { s: MatmulShape, bias: bool },
    SumRows { rows: usize, cols: usize },
    SoftmaxCrossEntropy { n: usize, classes: usize },
    CountCorrect { n: usize, classes: usize },
    Adam { len: usize },
}

fn conv_macs(s: &Conv2dShape) -> u64 {
    (s.n * s.c_out * s.h_out() * s.w_out() * s.c_in * s.k * s.k) as u64
}

impl Op {
    /// The `Backend` method this call went through.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Gather { .. } => "gather",
            Op::Conv2dForward(_) => "conv2d_forward",
            Op::Conv2dGradInput(_) => "conv2d_grad_input",
            Op::Conv2dGradWeight(_) => "conv2d_grad_weight",
            Op::Conv2dGradBias(_) => "conv2d_grad_bias",
            Op::MaxpoolForward(_) => "maxpool_forward",
            Op::MaxpoolBackward(_) => "maxpool_backward",
            Op::BatchnormStats(_) => "batchnorm_stats",
            Op::BatchnormNormalize(_) => "batchnorm_normalize",
            Op::BatchnormBackward(_) => "batchnorm_backward",
            Op::ReluForward { .. } => "relu_forward",
            Op::ReluBackward { .. } => "relu_backward",
            Op::Matmul { .. } => "matmul",
            Op::SumRows { .. } => "sum_rows",
            Op::SoftmaxCrossEntropy { .. } => "softmax_cross_entropy",
            Op::CountCorrect { .. } => "count_correct",
            Op::Adam { .. } => "adam",
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
        let pool = |s: &PoolShape| format!("{}x{}x{}x{} -> {}x{} k{}", s.n, s.c, s.h, s.w, s.h_out(), s.w_out(), s.k);
        let bn = |s: &BatchNormShape| format!("{}x{}x{}", s.n, s.c, s.hw);
        match self {
            Op::Gather { n, pixels } => format!("{n}x{pixels} u8"),
            Op::Conv2dForward(s) | Op::Conv2dGradInput(s) | Op::Conv2dGradWeight(s) | Op::Conv2dGradBias(s) => conv(s),
            Op::MaxpoolForward(s) | Op::MaxpoolBackward(s) => pool(s),
            Op::BatchnormStats(s) | Op::BatchnormNormalize(s) | Op::BatchnormBackward(s) => bn(s),
            Op::ReluForward { len } | Op::ReluBackward { len } | Op::Adam { len } => format!("{len}"),
            Op::Matmul { s, bias } => format!(
                "{}x{}{} . {}x{}{}{}",
                s.m,
                s.k,
                if s.trans_a { "^T" } else { "" },
                s.k,
                s.n,
                if s.trans_b { "^T" } else { "" },
                if *bias { " +bias" } else { "" }
            ),
            Op::SumRows { rows, cols } => format!("{rows}x{cols} -> {cols}"),
            Op::SoftmaxCrossEntropy { n, classes } | Op::CountCorrect { n, classes } => format!("{n}x{classes}"),
        }
    }

    /// Floating-point operations the op's math needs (see the module comment).
    pub fn flops(&self) -> u64 {
        match self {
            // one u8 → f32 scale per pixel
            Op::Gather { n, pixels } => (n * pixels) as u64,
            // every product is a multiply-add over Cin·K·K for each output element
            Op::Conv2dForward(s) | Op::Conv2dGradInput(s) | Op::Conv2dGradWeight(s) => 2 * conv_macs(s),
            // one add per dy element
            Op::Conv2dGradBias(s) => (s.n * s.c_out * s.h_out() * s.w_out()) as u64,
            // k²−1 compares per window
            Op::MaxpoolForward(s) => (s.y_len() * (s.k * s.k - 1)) as u64,
            // routes values, no arithmetic
            Op::MaxpoolBackward(_) => 0,
            // Σx (1 add) and Σx² (multiply-add) per element; per channel, the running
            // statistics: 2 blends of 3 flops each and the unbiased-variance scale
            Op::BatchnormStats(s) => 3 * s.len() as u64 + 7 * s.c as u64,
            // (x − mean)·scale + beta per element (scale per channel: negligible)
            Op::BatchnormNormalize(s) => 3 * s.len() as u64,
            // per element: x̂ = (x − mean)·istd (2), Σdy (1), Σdy·x̂ (2),
            // dx = istd·gamma·(dy − Σdy/m − x̂·Σdy·x̂/m) with per-channel factors (1 + 2 + 1 + 2)
            Op::BatchnormBackward(s) => 11 * s.len() as u64,
            Op::ReluForward { len } | Op::ReluBackward { len } => *len as u64,
            Op::Matmul { s, .. } => 2 * (s.m * s.n * s.k) as u64,
            Op::SumRows { rows, cols } => (rows * cols) as u64,
            // per logit: max (1), subtract max (1), exp (1), sum (1), normalise (1),
            // minus one-hot (1), divide by n (1)
            // (the step count and the non-finite check of the loss: not floating point)
            Op::SoftmaxCrossEntropy { n, classes } => 7 * (n * classes) as u64,
            Op::CountCorrect { n, classes } => (n * classes) as u64,
            // m = β1·m + (1−β1)·g (3), v = β2·v + (1−β2)·g² (4),
            // p −= lr·(m/bc1)/(√(v/bc2) + eps) (7)
            Op::Adam { len } => 14 * *len as u64,
        }
    }

    /// Least bytes the op must move: inputs read once, outputs written once.
    pub fn bytes(&self) -> u64 {
        let n = |x: usize| x as u64;
        match self {
            // reads perm[n] (u32) and n·pixels u8 pixels and n labels (u32); writes x (f32) and y (u32)
            Op::Gather { n: b, pixels } => {
                F32 * n(*b) + n(b * pixels) + F32 * n(*b) + F32 * n(b * pixels) + F32 * n(*b)
            }
            // x, w, bias in; y out
            Op::Conv2dForward(s) => F32 * n(s.x_len() + s.w_len() + s.c_out + s.y_len()),
            // dy, w in; dx out
            Op::Conv2dGradInput(s) => F32 * n(s.y_len() + s.w_len() + s.x_len()),
            // x, dy in; dw out
            Op::Conv2dGradWeight(s) => F32 * n(s.x_len() + s.y_len() + s.w_len()),
            // dy in; db out
            Op::Conv2dGradBias(s) => F32 * n(s.y_len() + s.c_out),
            // x in; y and argmax (u32) out
            Op::MaxpoolForward(s) => F32 * n(s.x_len() + 2 * s.y_len()),
            // dy and argmax in; dx out
            Op::MaxpoolBackward(s) => F32 * n(2 * s.y_len() + s.x_len()),
            // x, running mean, running var in; mean, var, running mean, running var out
            Op::BatchnormStats(s) => F32 * n(s.len() + 6 * s.c),
            // x, mean, var, gamma, beta in; y out
            Op::BatchnormNormalize(s) => F32 * n(2 * s.len() + 4 * s.c),
            // x, dy, mean, var, gamma, dgamma, dbeta in (the gradients accumulate); dx, dgamma,
            // dbeta out
            Op::BatchnormBackward(s) => F32 * n(3 * s.len() + 7 * s.c),
            // x in, y out
            Op::ReluForward { len } => F32 * n(2 * len),
            // y, dy in, dx out
            Op::ReluBackward { len } => F32 * n(3 * len),
            // A, B (and bias) in; C out
            Op::Matmul { s, bias } => F32 * n(s.m * s.k + s.k * s.n + s.m * s.n + if *bias { s.n } else { 0 }),
            // x and out in (out accumulates), out out
            Op::SumRows { rows, cols } => F32 * n(rows * cols + 2 * cols),
            // logits, labels, step state (2 u32) in; loss, dlogits, step state out
            Op::SoftmaxCrossEntropy { n: b, classes } => F32 * n(2 * b * classes + b + 1 + 4),
            // logits, labels, counter in; counter out
            Op::CountCorrect { n: b, classes } => F32 * n(b * classes + b + 2),
            // param, grad, m, v in; param, m, v out
            Op::Adam { len } => F32 * n(7 * len),
        }
    }
}

/// A readable name for each op call of LeNet-5's training step or eval batch at batch
/// `n` ("conv2 forward", "fc1 grad_weight", "adam fc1.weight"), found from its shape (and,
/// for Adam, its position among the Adam calls, which follow the parameter order). A call
/// the model does not make gets its op name; repeated names get "#2", "#3", ….
pub fn name_calls(calls: &[Op], n: usize) -> Vec<String> {
    let (c1, c2, q1, q2) = (conv1_shape(n), conv2_shape(n), pool1_shape(n), pool2_shape(n));
    let layer_conv = |s: &Conv2dShape| {
        if *s == c1 {
            Some("conv1")
        } else if *s == c2 {
            Some("conv2")
        } else {
            None
        }
    };
    let layer_pool = |s: &PoolShape| {
        if *s == q1 {
            Some("pool1")
        } else if *s == q2 {
            Some("pool2")
        } else {
            None
        }
    };
    let layer_bn = |s: &BatchNormShape| match (s.n == n, s.c, s.hw) {
        (true, 20, 576) => Some("bn1"),
        (true, 50, 64) => Some("bn2"),
        _ => None,
    };
    let layer_relu = |len: usize| {
        if len == q1.y_len() {
            Some("relu1")
        } else if len == q2.y_len() {
            Some("relu2")
        } else if len == n * 500 {
            Some("fc1 relu")
        } else {
            None
        }
    };
    let mm = |m, nn, k, ta, tb| MatmulShape { m, n: nn, k, trans_a: ta, trans_b: tb };
    let matmuls = [
        (fc1_shape(n), "fc1 forward"),
        (fc2_shape(n), "fc2 forward"),
        (mm(CLASSES, 500, n, true, false), "fc2 grad_weight"),
        (mm(n, 500, CLASSES, false, false), "fc2 grad_input"),
        (mm(500, 800, n, true, false), "fc1 grad_weight"),
        (mm(n, 800, 500, false, false), "fc1 grad_input"),
    ];
    let with = |layer: Option<&str>, what: &str, op: &Op| match layer {
        Some(l) => format!("{l} {what}"),
        None => op.kind().to_string(),
    };
    let mut adam_calls = 0;
    let mut names: Vec<String> = Vec::new();
    for op in calls {
        let name = match op {
            Op::Gather { .. } => "gather".to_string(),
            Op::Conv2dForward(s) => with(layer_conv(s), "forward", op),
            Op::Conv2dGradInput(s) => with(layer_conv(s), "grad_input", op),
            Op::Conv2dGradWeight(s) => with(layer_conv(s), "grad_weight", op),
            Op::Conv2dGradBias(s) => with(layer_conv(s), "grad_bias", op),
            Op::MaxpoolForward(s) => with(layer_pool(s), "forward", op),
            Op::MaxpoolBackward(s) => with(layer_pool(s), "backward", op),
            Op::BatchnormStats(s) => with(layer_bn(s), "stats", op),
            Op::BatchnormNormalize(s) => with(layer_bn(s), "normalize", op),
            Op::BatchnormBackward(s) => with(layer_bn(s), "backward", op),
            Op::ReluForward { len } => layer_relu(*len).map_or_else(|| op.kind().to_string(), str::to_string),
            Op::ReluBackward { len } => with(layer_relu(*len), "backward", op),
            Op::Matmul { s, .. } => {
                matmuls.iter().find(|(m, _)| m == s).map_or_else(|| op.kind().to_string(), |(_, name)| name.to_string())
            }
            Op::SumRows { rows, cols } if *rows == n && *cols == CLASSES => "fc2 grad_bias".into(),
            Op::SumRows { rows, cols } if *rows == n && *cols == 500 => "fc1 grad_bias".into(),
            Op::SumRows { .. } => op.kind().to_string(),
            Op::SoftmaxCrossEntropy { .. } => "loss softmax_cross_entropy".into(),
            Op::CountCorrect { .. } => "count_correct".into(),
            Op::Adam { len } => {
                let spec = LENET5_PARAMS.get(adam_calls % LENET5_PARAMS.len()).filter(|p| p.len() == *len);
                adam_calls += 1;
                spec.map_or_else(|| op.kind().to_string(), |p| format!("adam {}", p.name))
            }
        };
        let seen = names.iter().filter(|m| **m == name || m.starts_with(&format!("{name} #"))).count();
        names.push(if seen == 0 { name } else { format!("{name} #{}", seen + 1) });
    }
    names
}
