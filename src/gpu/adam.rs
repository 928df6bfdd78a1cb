//! The Adam step (shaders/adam.wgsl; CPU twin src/reference/adam.rs): one dispatch over
//! the whole parameter store, with the step number and the bias corrections on the device.

use super::activation::vec4_split;
use super::context::{Access, GpuContext, Kernel, RawBuffer};
use crate::reference::adam::{decay, hyper};
use crate::shapes::AdamConfig;

use Access::{Read as R, ReadWrite as W};

static STEP: Kernel = Kernel { file: "adam", entry: "adam_step", bindings: &[R, R, W, R, W, W] };
static STEP4: Kernel = Kernel { file: "adam", entry: "adam_step4", bindings: &[R, R, W, R, W, W] };
/// Every kernel of this file, for `kernels::all_kernels`.
pub(crate) static KERNELS: &[&Kernel] = &[&STEP, &STEP4];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    start: u32,
    end: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    l2: f32,
    decay: f32,
}

/// Floats in the table's header, and per step.
pub const TABLE_HEADER: usize = 4;
pub const TABLE_ROW: usize = 4;

/// The per-step scalars of steps `first_step .. first_step + count` as the kernel reads
/// them, computed on the host in f64 and rounded to f32 once (`reference::adam::hyper`):
///
/// ```text
/// [0]            first_step as u32 bits (f32::from_bits)
/// [1]            count (rows) as u32 bits
/// [2], [3]       unused (0)
/// [4 + 4·r ..]   hyper(cfg, first_step + r) = [lr/(1 − β1^t), 1/√(1 − β2^t), 1 − β1, 1 − β2]
/// ```
///
/// 4 + 4·count floats; the header is one vec4 and each row one vec4. Write it into the
/// table buffer of [`step`]; the kernel takes row t − first_step for the step t it finds in
/// `state[0]`, and writes NaN into the parameters when t is outside the table, so the host
/// must refill it before step first_step + count (it knows t).
pub fn hyper_table(cfg: &AdamConfig, first_step: u32, count: u32) -> Vec<f32> {
    assert!(first_step >= 1, "adam: steps count from 1");
    let mut table = vec![f32::from_bits(first_step), f32::from_bits(count), 0.0, 0.0];
    for r in 0..count {
        table.extend_from_slice(&hyper(cfg, first_step + r));
    }
    table
}

/// One Adam step over the first `len` elements of param (in place), with m and v updated:
/// per element, in f32, with h the table's row of step t = state[0]:
///
///   m = β1·m + h[2]·g;  v = β2·v + h[3]·g·g;  p −= h[0]·(m / (√v·h[1] + eps))
///
/// `state` is the u32 step state of `reduce::softmax_cross_entropy` (only state[0], this
/// step's t, is read); `table` holds [`hyper_table`]. Both live on the device, so one bind
/// group serves every step and the host writes nothing per step. Weight decay as `cfg`
/// says (`reference::adam::decay`): g += l2·p before the moments (Adam), or p·(1 − lr·wd)
/// in place of p in the last line (AdamW). For a parameter store
/// `len` is the store length (a multiple of 4 when each tensor is padded to 64 elements):
/// one vec4 dispatch; a scalar one covers a tail of `len % 4`, and buffers shorter than
/// `activation::VEC4_MIN` run scalar only.
#[allow(clippy::too_many_arguments)]
pub fn step(
    ctx: &GpuContext,
    cfg: &AdamConfig,
    len: usize,
    state: &RawBuffer,
    table: &RawBuffer,
    param: &RawBuffer,
    grad: &RawBuffer,
    m: &RawBuffer,
    v: &RawBuffer,
) {
    assert!(state.len >= 1, "adam: state holds the step number");
    assert!(table.len >= TABLE_HEADER + TABLE_ROW, "adam: the table holds a header and at least one step");
    for b in [param, grad, m, v] {
        assert!(b.len >= len, "adam: a buffer of {} elements for a step over {len}", b.len);
    }
    let (v4, tail) = vec4_split(len);
    let [l2, decay] = decay(cfg);
    let mut p = Params { start: 0, end: v4 as u32, beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, l2, decay };
    let bufs = [state, table, param, grad, m, v];
    if v4 > 0 {
        ctx.dispatch(&STEP4, &p, &bufs, ctx.grid(v4.div_ceil(64)));
    }
    if tail < len {
        p.start = tail as u32;
        p.end = len as u32;
        ctx.dispatch(&STEP, &p, &bufs, ctx.grid((len - tail).div_ceil(64)));
    }
}
