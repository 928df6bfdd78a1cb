//! The SGD step (shaders/sgd.wgsl; CPU twin src/reference/sgd.rs): one dispatch over the
//! whole parameter store, momentum buffer included.

use super::activation::vec4_split;
use super::context::{Access, GpuContext, Kernel, RawBuffer};
use crate::reference::sgd::hyper;
use crate::shapes::SgdConfig;

use Access::{Read as R, ReadWrite as W};

static STEP: Kernel = Kernel { file: "sgd", entry: "sgd_step", bindings: &[W, R, W] };
static STEP4: Kernel = Kernel { file: "sgd", entry: "sgd_step4", bindings: &[W, R, W] };
/// Every kernel of this file, for `kernels::all_kernels`.
pub(crate) static KERNELS: &[&Kernel] = &[&STEP, &STEP4];

const NESTEROV: u32 = 1;
const FIRST: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    start: u32,
    end: u32,
    lr: f32,
    momentum: f32,
    damp: f32,
    wd: f32,
    flags: u32,
}

/// One SGD step over the first `len` elements of param (in place), with the momentum
/// buffer `buf` updated where the momentum is not 0 (else it is neither read nor written):
/// per element, in f32, with [lr, μ, 1 − dampening, wd] = `reference::sgd::hyper(cfg)`:
///
///   d = g + wd·p;  b = first ? d : μ·b + (1 − dampening)·d;  d = nesterov ? d + μ·b : b;
///   p = p − lr·d
///
/// `first`: the buffer holds nothing yet (PyTorch's first step clones d into it). As Adam's
/// step: one vec4 dispatch over a store whose length is a multiple of 4, a scalar one for a
/// tail of `len % 4`, buffers shorter than `activation::VEC4_MIN` scalar only.
pub fn step(ctx: &GpuContext, cfg: &SgdConfig, first: bool, len: usize, param: &RawBuffer, grad: &RawBuffer, buf: &RawBuffer) {
    for b in [param, grad, buf] {
        assert!(b.len >= len, "sgd: a buffer of {} elements for a step over {len}", b.len);
    }
    let [lr, momentum, damp, wd] = hyper(cfg);
    let flags = if cfg.nesterov { NESTEROV } else { 0 } | if first { FIRST } else { 0 };
    let (v4, tail) = vec4_split(len);
    let mut p = Params { start: 0, end: v4 as u32, lr, momentum, damp, wd, flags };
    let bufs = [param, grad, buf];
    if v4 > 0 {
        ctx.dispatch(&STEP4, &p, &bufs, ctx.grid(v4.div_ceil(64)));
    }
    if tail < len {
        p.start = tail as u32;
        p.end = len as u32;
        ctx.dispatch(&STEP, &p, &bufs, ctx.grid((len - tail).div_ceil(64)));
    }
}
