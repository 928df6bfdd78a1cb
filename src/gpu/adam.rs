//! The Adam step (shaders/adam.wgsl; CPU twin src/reference/adam.rs).

use super::activation::vec4_split;
use super::context::{Access, GpuContext, Kernel, RawBuffer};
use crate::shapes::AdamConfig;

use Access::{Read as R, ReadWrite as W};

static STEP: Kernel = Kernel { file: "adam", entry: "adam_step", bindings: &[R, W, R, W, W] };
static STEP4: Kernel = Kernel { file: "adam", entry: "adam_step4", bindings: &[R, W, R, W, W] };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    start: u32,
    end: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
}

/// One Adam step over the first `len` elements of param (in place), with m and v updated.
///
/// `hyper` (4 f32) must hold `reference::adam::hyper(cfg, t)` for this step t: the caller
/// writes it with `ctx.write(hyper, &adam::hyper(cfg, t))` before recording the dispatch, and
/// must submit before writing another step's values (queued writes all land before the
/// next submit, so two steps recorded into one submit would both see the last value).
/// One `hyper` buffer can serve every parameter tensor of a step.
#[allow(clippy::too_many_arguments)]
pub fn step(
    ctx: &GpuContext,
    cfg: &AdamConfig,
    len: usize,
    hyper: &RawBuffer,
    param: &RawBuffer,
    grad: &RawBuffer,
    m: &RawBuffer,
    v: &RawBuffer,
) {
    assert!(hyper.len >= 4, "adam: hyper holds 4 values");
    for b in [param, grad, m, v] {
        assert!(b.len >= len, "adam: a buffer of {} elements for a step over {len}", b.len);
    }
    let (v4, tail) = vec4_split(len);
    let mut p = Params { start: 0, end: v4 as u32, beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps };
    let bufs = [hyper, param, grad, m, v];
    if v4 > 0 {
        ctx.dispatch(&STEP4, &p, &bufs, ctx.grid(v4.div_ceil(64)));
    }
    if tail < len {
        p.start = tail as u32;
        p.end = len as u32;
        ctx.dispatch(&STEP, &p, &bufs, ctx.grid((len - tail).div_ceil(64)));
    }
}
