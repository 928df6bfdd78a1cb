//! BatchNorm2d: batch statistics, normalisation, running-statistics update and backward
//! (shaders/batchnorm.wgsl; CPU twin src/reference/batchnorm.rs). x is laid out [n, c, hw].

use super::context::{Access, GpuContext, Kernel, RawBuffer};
use crate::shapes::{BatchNormShape, BN_EPS, BN_MOMENTUM};

use Access::{Read as R, ReadWrite as W};

static STATS: Kernel = Kernel { file: "batchnorm", entry: "stats", bindings: &[R, W, W] };
static NORMALIZE: Kernel = Kernel { file: "batchnorm", entry: "normalize_apply", bindings: &[R, R, R, R, R, W] };
static UPDATE_RUNNING: Kernel = Kernel { file: "batchnorm", entry: "update_running", bindings: &[R, R, W, W] };
static BACKWARD_REDUCE: Kernel = Kernel { file: "batchnorm", entry: "backward_reduce", bindings: &[R, R, R, R, W, W] };
static BACKWARD_DX: Kernel = Kernel { file: "batchnorm", entry: "backward_dx", bindings: &[R, R, R, R, R, R, R, W] };

/// Invocations per workgroup of the per-channel reductions (WG in the shader).
const WG: usize = 256;
/// Consecutive elements per invocation in the elementwise kernels (VPT in the shader).
const VPT: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    hw: u32,
    m: u32,
    step_b: u32,
    step_s: u32,
    eps: f32,
    momentum: f32,
}

fn params(s: &BatchNormShape) -> Params {
    assert!(s.hw > 0, "batchnorm: empty planes");
    Params {
        n: s.n as u32,
        c: s.c as u32,
        hw: s.hw as u32,
        m: s.per_channel() as u32,
        step_b: (WG / s.hw) as u32,
        step_s: (WG % s.hw) as u32,
        eps: BN_EPS,
        momentum: BN_MOMENTUM,
    }
}

fn check(what: &str, s: &BatchNormShape, full: &[&RawBuffer], per_channel: &[&RawBuffer]) {
    for b in full {
        assert!(b.len >= s.len(), "batchnorm {what}: a buffer of {} elements for {s:?}", b.len);
    }
    for b in per_channel {
        assert!(b.len >= s.c, "batchnorm {what}: a per-channel buffer of {} elements for {s:?}", b.len);
    }
}

fn elementwise_groups(ctx: &GpuContext, s: &BatchNormShape) -> [u32; 3] {
    ctx.grid((s.n * s.c * s.hw.div_ceil(VPT)).div_ceil(64))
}

/// Per-channel batch mean and biased variance (two passes, one workgroup per channel).
pub fn stats(ctx: &GpuContext, s: &BatchNormShape, x: &RawBuffer, mean: &RawBuffer, var: &RawBuffer) {
    check("stats", s, &[x], &[mean, var]);
    ctx.dispatch(&STATS, &params(s), &[x, mean, var], [s.c as u32, 1, 1]);
}

/// y = (x − mean)/√(var + eps)·gamma + beta; batch statistics in training, running ones in eval.
#[allow(clippy::too_many_arguments)]
pub fn normalize(
    ctx: &GpuContext,
    s: &BatchNormShape,
    x: &RawBuffer,
    mean: &RawBuffer,
    var: &RawBuffer,
    gamma: &RawBuffer,
    beta: &RawBuffer,
    y: &RawBuffer,
) {
    check("normalize", s, &[x, y], &[mean, var, gamma, beta]);
    ctx.dispatch(&NORMALIZE, &params(s), &[x, mean, var, gamma, beta, y], elementwise_groups(ctx, s));
}

/// running = (1 − momentum)·running + momentum·batch, with the unbiased variance
/// var·m/(m − 1) going into running_var (m = n·hw).
pub fn update_running(
    ctx: &GpuContext,
    s: &BatchNormShape,
    mean: &RawBuffer,
    var: &RawBuffer,
    running_mean: &RawBuffer,
    running_var: &RawBuffer,
) {
    check("update_running", s, &[], &[mean, var, running_mean, running_var]);
    ctx.dispatch(&UPDATE_RUNNING, &params(s), &[mean, var, running_mean, running_var], [s.c.div_ceil(64) as u32, 1, 1]);
}

/// dbeta = Σ dy and dgamma = Σ dy·x̂ per channel (one workgroup per channel).
#[allow(clippy::too_many_arguments)]
pub fn backward_reduce(
    ctx: &GpuContext,
    s: &BatchNormShape,
    x: &RawBuffer,
    dy: &RawBuffer,
    mean: &RawBuffer,
    var: &RawBuffer,
    dgamma: &RawBuffer,
    dbeta: &RawBuffer,
) {
    check("backward_reduce", s, &[x, dy], &[mean, var, dgamma, dbeta]);
    ctx.dispatch(&BACKWARD_REDUCE, &params(s), &[x, dy, mean, var, dgamma, dbeta], [s.c as u32, 1, 1]);
}

/// dx = gamma/√(var + eps)·(dy − dbeta/m − x̂·dgamma/m), given backward_reduce's sums.
#[allow(clippy::too_many_arguments)]
pub fn backward_dx(
    ctx: &GpuContext,
    s: &BatchNormShape,
    x: &RawBuffer,
    dy: &RawBuffer,
    mean: &RawBuffer,
    var: &RawBuffer,
    gamma: &RawBuffer,
    dgamma: &RawBuffer,
    dbeta: &RawBuffer,
    dx: &RawBuffer,
) {
    check("backward_dx", s, &[x, dy, dx], &[mean, var, gamma, dgamma, dbeta]);
    ctx.dispatch(&BACKWARD_DX, &params(s), &[x, dy, mean, var, gamma, dgamma, dbeta, dx], elementwise_groups(ctx, s));
}

/// Gradients of the training forward (batch statistics) wrt x, gamma and beta:
/// backward_reduce then backward_dx.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    ctx: &GpuContext,
    s: &BatchNormShape,
    x: &RawBuffer,
    dy: &RawBuffer,
    mean: &RawBuffer,
    var: &RawBuffer,
    gamma: &RawBuffer,
    dx: &RawBuffer,
    dgamma: &RawBuffer,
    dbeta: &RawBuffer,
) {
    backward_reduce(ctx, s, x, dy, mean, var, dgamma, dbeta);
    backward_dx(ctx, s, x, dy, mean, var, gamma, dgamma, dbeta, dx);
}
