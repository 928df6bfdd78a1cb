//! ReLU, Tanh and Sigmoid forward and backward (shaders/activation.wgsl; CPU twin src/reference/activation.rs).
//!
//! The bulk runs as vec4s; a scalar dispatch covers the last `len % 4` elements, and short
//! buffers (fewer than [`VEC4_MIN`] elements) run scalar only, in one dispatch.

use super::context::{Access, GpuContext, Kernel, RawBuffer};
use crate::shapes::Activation;

static RELU_FORWARD: Kernel = Kernel { file: "activation", entry: "relu_forward", bindings: &[Access::Read, Access::ReadWrite] };
static RELU_FORWARD4: Kernel = Kernel { file: "activation", entry: "relu_forward4", bindings: &[Access::Read, Access::ReadWrite] };
static RELU_BACKWARD: Kernel = Kernel {
    file: "activation",
    entry: "relu_backward",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
};
static RELU_BACKWARD4: Kernel = Kernel {
    file: "activation",
    entry: "relu_backward4",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
};
const FWD: &[Access] = &[Access::Read, Access::ReadWrite];
const BWD: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite];
static TANH_FORWARD: Kernel = Kernel { file: "activation", entry: "tanh_forward", bindings: FWD };
static TANH_FORWARD4: Kernel = Kernel { file: "activation", entry: "tanh_forward4", bindings: FWD };
static TANH_BACKWARD: Kernel = Kernel { file: "activation", entry: "tanh_backward", bindings: BWD };
static TANH_BACKWARD4: Kernel = Kernel { file: "activation", entry: "tanh_backward4", bindings: BWD };
static SIGMOID_FORWARD: Kernel = Kernel { file: "activation", entry: "sigmoid_forward", bindings: FWD };
static SIGMOID_FORWARD4: Kernel = Kernel { file: "activation", entry: "sigmoid_forward4", bindings: FWD };
static SIGMOID_BACKWARD: Kernel = Kernel { file: "activation", entry: "sigmoid_backward", bindings: BWD };
static SIGMOID_BACKWARD4: Kernel = Kernel { file: "activation", entry: "sigmoid_backward4", bindings: BWD };
/// Every kernel of this file, for `kernels::all_kernels`.
pub(crate) static KERNELS: &[&Kernel] = &[
    &RELU_FORWARD,
    &RELU_FORWARD4,
    &RELU_BACKWARD,
    &RELU_BACKWARD4,
    &TANH_FORWARD,
    &TANH_FORWARD4,
    &TANH_BACKWARD,
    &TANH_BACKWARD4,
    &SIGMOID_FORWARD,
    &SIGMOID_FORWARD4,
    &SIGMOID_BACKWARD,
    &SIGMOID_BACKWARD4,
];

/// Below this many elements one scalar dispatch is cheaper than a vec4 one plus a tail.
pub const VEC4_MIN: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    start: u32,
    end: u32,
}

/// Splits `len` into (vec4 count, first tail element): the vec4 part covers [0, 4·v).
pub(crate) fn vec4_split(len: usize) -> (usize, usize) {
    if len < VEC4_MIN {
        (0, 0)
    } else {
        (len / 4, len / 4 * 4)
    }
}

fn run(ctx: &GpuContext, k4: &'static Kernel, k1: &'static Kernel, len: usize, bufs: &[&RawBuffer]) {
    for b in bufs {
        assert!(b.len >= len, "{}: buffer of {} elements, op over {len}", k1.entry, b.len);
    }
    let (v4, tail) = vec4_split(len);
    if v4 > 0 {
        ctx.dispatch(k4, &Params { start: 0, end: v4 as u32 }, bufs, ctx.grid(v4.div_ceil(64)));
    }
    if tail < len {
        let p = Params { start: tail as u32, end: len as u32 };
        ctx.dispatch(k1, &p, bufs, ctx.grid((len - tail).div_ceil(64)));
    }
}

/// y[i] = x[i] where x[i] > 0 or x[i] is NaN (NaN propagates), else +0.0, for i < len.
pub fn relu_forward(ctx: &GpuContext, len: usize, x: &RawBuffer, y: &RawBuffer) {
    run(ctx, &RELU_FORWARD4, &RELU_FORWARD, len, &[x, y]);
}

/// dx[i] = 0 where the forward output y[i] ≤ 0, else dy[i] (so a NaN y passes dy, as
/// PyTorch's threshold_backward), for i < len.
pub fn relu_backward(ctx: &GpuContext, len: usize, y: &RawBuffer, dy: &RawBuffer, dx: &RawBuffer) {
    run(ctx, &RELU_BACKWARD4, &RELU_BACKWARD, len, &[y, dy, dx]);
}

/// y[i] = f(x[i]) for i < len (Tanh, Sigmoid). Twin: `reference::activation::forward`.
pub fn forward(ctx: &GpuContext, f: Activation, len: usize, x: &RawBuffer, y: &RawBuffer) {
    let (k4, k1) = match f {
        Activation::Tanh => (&TANH_FORWARD4, &TANH_FORWARD),
        Activation::Sigmoid => (&SIGMOID_FORWARD4, &SIGMOID_FORWARD),
    };
    run(ctx, k4, k1, len, &[x, y]);
}

/// dx[i] = dy[i]·f'(x[i]) from the forward's output y (1 − y² for Tanh, y·(1 − y) for
/// Sigmoid), for i < len. Twin: `reference::activation::backward`.
pub fn backward(ctx: &GpuContext, f: Activation, len: usize, y: &RawBuffer, dy: &RawBuffer, dx: &RawBuffer) {
    let (k4, k1) = match f {
        Activation::Tanh => (&TANH_BACKWARD4, &TANH_BACKWARD),
        Activation::Sigmoid => (&SIGMOID_BACKWARD4, &SIGMOID_BACKWARD),
    };
    run(ctx, k4, k1, len, &[y, dy, dx]);
}
