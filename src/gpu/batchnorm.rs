//! BatchNorm2d: batch statistics with the running-statistics update, normalisation, and
//! backward (shaders/batchnorm.wgsl; CPU twin src/reference/batchnorm.rs). x is laid out
//! [n, c, hw]. The backward adds into dgamma and dbeta (parameter gradients accumulate).

use super::context::{Access, GpuContext, Kernel, RawBuffer};
use crate::shapes::{BatchNormShape, PoolShape, BN_EPS, BN_MOMENTUM};

use Access::{Read as R, ReadWrite as W};

macro_rules! kernels {
    ($name:ident, $name4:ident, $entry:literal, $bindings:expr) => {
        static $name: Kernel = Kernel { file: "batchnorm", entry: $entry, bindings: $bindings };
        static $name4: Kernel = Kernel { file: "batchnorm", entry: concat!($entry, "4"), bindings: $bindings };
    };
}
kernels!(STATS, STATS4, "stats", &[R, W, W, W, W]);
kernels!(NORMALIZE, NORMALIZE4, "normalize_apply", &[R, R, R, R, R, W]);
kernels!(BACKWARD_REDUCE, BACKWARD_REDUCE4, "backward_reduce", &[R, R, R, R, W, W, W]);
kernels!(BACKWARD_DX, BACKWARD_DX4, "backward_dx", &[R, R, R, R, R, R, W]);
// The backward with the next MaxPool2d's folded in: the same bindings, then the argmax.
static BACKWARD_REDUCE_POOLED: Kernel = Kernel { file: "batchnorm", entry: "backward_reduce_pooled", bindings: &[R, R, R, R, W, W, W, R] };
static BACKWARD_DX_POOLED: Kernel = Kernel { file: "batchnorm", entry: "backward_dx_pooled", bindings: &[R, R, R, R, R, R, W, R] };
static BACKWARD_DX_POOLED_K2: Kernel = Kernel { file: "batchnorm", entry: "backward_dx_pooled_k2", bindings: &[R, R, R, R, R, R, W, R] };
/// Every kernel of this file, for `kernels::all_kernels`.
pub(crate) static KERNELS: &[&Kernel] = &[
    &STATS,
    &STATS4,
    &NORMALIZE,
    &NORMALIZE4,
    &BACKWARD_REDUCE,
    &BACKWARD_REDUCE4,
    &BACKWARD_DX,
    &BACKWARD_DX4,
    &BACKWARD_REDUCE_POOLED,
    &BACKWARD_DX_POOLED,
    &BACKWARD_DX_POOLED_K2,
];

/// Invocations per workgroup of the per-channel reductions (WG in the shader).
const WG: usize = 64;
/// Consecutive units per invocation in the elementwise kernels: VPT elements, or VPT4
/// vec4s in the *4 twins.
const VPT: usize = 8;
const VPT4: usize = 4;

/// Which twin runs: the vec4 one when planes split into whole vec4s.
fn vec4(s: &BatchNormShape) -> bool {
    s.hw.is_multiple_of(4)
}

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
    // The *_pooled kernels' MaxPool2d (zero for the others).
    h: u32,
    w: u32,
    k: u32,
    ho: u32,
    wo: u32,
    hb: u32,
    wb: u32,
}

/// The shader's parameters, with `hw` in the units the chosen twin moves.
fn params(s: &BatchNormShape) -> Params {
    assert!(s.hw > 0, "batchnorm: empty planes");
    let hw = if vec4(s) { s.hw / 4 } else { s.hw };
    Params {
        n: s.n as u32,
        c: s.c as u32,
        hw: hw as u32,
        m: s.per_channel() as u32,
        step_b: (WG / hw) as u32,
        step_s: (WG % hw) as u32,
        eps: BN_EPS,
        momentum: BN_MOMENTUM,
        h: 0,
        w: 0,
        k: 0,
        ho: 0,
        wo: 0,
        hb: 0,
        wb: 0,
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
    let chunks = if vec4(s) { (s.hw / 4).div_ceil(VPT4) } else { s.hw.div_ceil(VPT) };
    ctx.grid((s.n * s.c * chunks).div_ceil(64))
}

fn pick(s: &BatchNormShape, k: &'static Kernel, k4: &'static Kernel) -> &'static Kernel {
    if vec4(s) {
        k4
    } else {
        k
    }
}

/// One workgroup per channel.
fn channel_groups(s: &BatchNormShape) -> [u32; 3] {
    assert!(s.c <= 65_535, "batchnorm: {} channels exceed one grid dimension", s.c);
    [s.c as u32, 1, 1]
}

/// Per-channel batch mean and biased variance (two passes, one workgroup per channel), and
/// in the same dispatch the running statistics: running = (1 − momentum)·running +
/// momentum·batch, with the unbiased variance var·m/(m − 1) going into running_var (m = n·hw,
/// which must exceed 1, as PyTorch requires when training). The twin is
/// `reference::batchnorm::stats` followed by `update_running`.
pub fn stats(
    ctx: &GpuContext,
    s: &BatchNormShape,
    x: &RawBuffer,
    mean: &RawBuffer,
    var: &RawBuffer,
    running_mean: &RawBuffer,
    running_var: &RawBuffer,
) {
    check("stats", s, &[x], &[mean, var, running_mean, running_var]);
    assert!(s.per_channel() > 1, "batchnorm: expected more than 1 value per channel when training, got {s:?}");
    let bufs = [x, mean, var, running_mean, running_var];
    ctx.dispatch(pick(s, &STATS, &STATS4), &params(s), &bufs, channel_groups(s));
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
    ctx.dispatch(pick(s, &NORMALIZE, &NORMALIZE4), &params(s), &[x, mean, var, gamma, beta, y], elementwise_groups(ctx, s));
}

/// This call's per-channel sums Σ dy·x̂ and Σ dy (one workgroup per channel), written to
/// `sums` = [Σ dy·x̂ (c values) | Σ dy (c values)] and added into the gradients:
/// dgamma = f32(Σ dy·x̂) + dgamma, dbeta = f32(Σ dy) + dbeta.
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
    sums: &RawBuffer,
) {
    check("backward_reduce", s, &[x, dy], &[mean, var, dgamma, dbeta]);
    assert!(sums.len >= 2 * s.c, "batchnorm backward_reduce: sums holds {} elements, needs 2·{}", sums.len, s.c);
    let k = pick(s, &BACKWARD_REDUCE, &BACKWARD_REDUCE4);
    ctx.dispatch(k, &params(s), &[x, dy, mean, var, dgamma, dbeta, sums], channel_groups(s));
}

/// dx = gamma/√(var + eps)·(dy − Σdy/m − x̂·Σdy·x̂/m), given backward_reduce's `sums` of the
/// same call ([Σ dy·x̂ | Σ dy], 2·c values).
#[allow(clippy::too_many_arguments)]
pub fn backward_dx(
    ctx: &GpuContext,
    s: &BatchNormShape,
    x: &RawBuffer,
    dy: &RawBuffer,
    mean: &RawBuffer,
    var: &RawBuffer,
    gamma: &RawBuffer,
    sums: &RawBuffer,
    dx: &RawBuffer,
) {
    check("backward_dx", s, &[x, dy, dx], &[mean, var, gamma]);
    assert!(sums.len >= 2 * s.c, "batchnorm backward_dx: sums holds {} elements, needs 2·{}", sums.len, s.c);
    let k = pick(s, &BACKWARD_DX, &BACKWARD_DX4);
    ctx.dispatch(k, &params(s), &[x, dy, mean, var, gamma, sums, dx], elementwise_groups(ctx, s));
}

/// Gradients of the training forward (batch statistics): dx is overwritten, this call's
/// dgamma and dbeta are added into `dgamma` and `dbeta`. backward_reduce then backward_dx,
/// passing the sums through the scratch buffer "batchnorm.sums" (so dx never sees what
/// `dgamma`/`dbeta` held before).
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
    let sums = ctx.scratch("batchnorm.sums", 2 * s.c);
    backward_reduce(ctx, s, x, dy, mean, var, dgamma, dbeta, &sums);
    backward_dx(ctx, s, x, dy, mean, var, gamma, &sums, dx);
}

/// `backward` where dy is the gradient of the MaxPool2d `pool` that read this layer's
/// output, with that pool's `argmax`: the same result as `maxpool::backward` into a
/// buffer and `backward` on it, in the same two dispatches `backward` takes (the pool's
/// own backward does not run).
#[allow(clippy::too_many_arguments)]
pub fn backward_pooled(
    ctx: &GpuContext,
    s: &BatchNormShape,
    pool: &PoolShape,
    x: &RawBuffer,
    dy: &RawBuffer,
    argmax: &RawBuffer,
    mean: &RawBuffer,
    var: &RawBuffer,
    gamma: &RawBuffer,
    dx: &RawBuffer,
    dgamma: &RawBuffer,
    dbeta: &RawBuffer,
) {
    assert!(
        pool.n == s.n && pool.c == s.c && pool.h * pool.w == s.hw && pool.k > 0 && pool.disjoint(),
        "batchnorm backward_pooled: {pool:?} does not pool {s:?}"
    );
    check("backward_pooled", s, &[x, dx], &[mean, var, gamma, dgamma, dbeta]);
    assert!(dy.len >= pool.y_len() && argmax.len >= pool.y_len(), "batchnorm backward_pooled: dy or argmax shorter than {pool:?}'s output");
    let mut p = params(s);
    // Element units (params() counts vec4s where hw % 4 == 0).
    p.hw = s.hw as u32;
    (p.h, p.w, p.k) = (pool.h as u32, pool.w as u32, pool.k as u32);
    (p.ho, p.wo) = (pool.h_out() as u32, pool.w_out() as u32);
    (p.hb, p.wb) = (pool.h.div_ceil(pool.k) as u32, pool.w.div_ceil(pool.k) as u32);
    let sums = ctx.scratch("batchnorm.sums", 2 * s.c);
    ctx.dispatch(&BACKWARD_REDUCE_POOLED, &p, &[x, dy, mean, var, dgamma, dbeta, &sums, argmax], channel_groups(s));
    if pool.k == 2 && pool.w.is_multiple_of(4) && pool.h.is_multiple_of(2) {
        let pairs = pool.y_len() / 2;
        ctx.dispatch(&BACKWARD_DX_POOLED_K2, &p, &[x, dy, mean, var, gamma, &sums, dx, argmax], ctx.grid(pairs.div_ceil(64)));
    } else {
        let blocks = s.n * s.c * (p.hb * p.wb) as usize;
        ctx.dispatch(&BACKWARD_DX_POOLED, &p, &[x, dy, mean, var, gamma, &sums, dx, argmax], ctx.grid(blocks.div_ceil(64)));
    }
}

