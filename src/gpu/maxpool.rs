//! MaxPool2d (any stride) forward (keeping argmax) and backward (shaders/maxpool.wgsl; CPU twin
//! src/reference/maxpool.rs).

use super::context::{Access, GpuContext, Kernel, RawBuffer};
use crate::shapes::{PoolShape, BN_EPS};
pub use crate::reference::maxpool::NO_ARGMAX;

/// x, y, argmax, then the normalisation's mean, var, gamma, beta.
const FORWARD_BINDINGS: &[Access] =
    &[Access::Read, Access::ReadWrite, Access::ReadWrite, Access::Read, Access::Read, Access::Read, Access::Read];
static FORWARD: Kernel = Kernel {
    file: "maxpool",
    entry: "maxpool_forward",
    bindings: FORWARD_BINDINGS,
};
static BACKWARD: Kernel = Kernel {
    file: "maxpool",
    entry: "maxpool_backward",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
};

static BACKWARD_GATHER: Kernel = Kernel {
    file: "maxpool",
    entry: "maxpool_backward_gather",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
};

static FORWARD_K2: Kernel = Kernel {
    file: "maxpool",
    entry: "maxpool_forward_k2",
    bindings: FORWARD_BINDINGS,
};
static BACKWARD_K2: Kernel = Kernel {
    file: "maxpool",
    entry: "maxpool_backward_k2",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
};
/// Every kernel of this file, for `kernels::all_kernels`.
pub(crate) static KERNELS: &[&Kernel] = &[&FORWARD, &BACKWARD, &BACKWARD_GATHER, &FORWARD_K2, &BACKWARD_K2];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    planes: u32,
    h: u32,
    w: u32,
    k: u32,
    ho: u32,
    wo: u32,
    /// k×k blocks per plane, rounded up (the backward's grid).
    hb: u32,
    wb: u32,
    /// 1: a ReLU follows in the same pass (see `forward_fused`).
    relu: u32,
    /// 1: a BatchNorm2d normalisation comes first, over `c` channels, with `eps`.
    normalize: u32,
    c: u32,
    eps: f32,
    stride: u32,
    _pad: [u32; 3],
}

fn params(s: &PoolShape, relu: bool, normalize: bool) -> Params {
    assert!(s.k > 0 && s.stride > 0 && s.h >= s.k && s.w >= s.k, "maxpool: bad shape {s:?}");
    Params {
        planes: (s.n * s.c) as u32,
        h: s.h as u32,
        w: s.w as u32,
        k: s.k as u32,
        ho: s.h_out() as u32,
        wo: s.w_out() as u32,
        hb: s.h.div_ceil(s.k) as u32,
        wb: s.w.div_ceil(s.k) as u32,
        relu: relu as u32,
        normalize: normalize as u32,
        c: s.c as u32,
        eps: BN_EPS,
        stride: s.stride as u32,
        _pad: [0; 3],
    }
}

/// y = max over each k×k window of x; argmax = index of that maximum within its h·w plane
/// (the first in row-major window order on ties).
pub fn forward(ctx: &GpuContext, s: &PoolShape, x: &RawBuffer, y: &RawBuffer, argmax: &RawBuffer) {
    forward_fused(ctx, s, false, None, x, y, argmax)
}

/// The statistics and parameters of a BatchNorm2d whose normalisation runs inside the pool.
#[derive(Clone, Copy)]
pub struct Normalize<'a> {
    pub mean: &'a RawBuffer,
    pub var: &'a RawBuffer,
    pub gamma: &'a RawBuffer,
    pub beta: &'a RawBuffer,
}

/// `forward`, with up to two neighbours in the same dispatch: with `normalize`, a
/// BatchNorm2d's normalisation of x first (as `batchnorm::normalize`); with `relu`, a ReLU
/// after: y = relu(max), and argmax = `NO_ARGMAX` where the ReLU zeroes the output, so
/// `backward` also does the ReLU's backward. Twin: normalize, then
/// `reference::maxpool::forward_fused`.
pub fn forward_fused(
    ctx: &GpuContext,
    s: &PoolShape,
    relu: bool,
    normalize: Option<Normalize>,
    x: &RawBuffer,
    y: &RawBuffer,
    argmax: &RawBuffer,
) {
    assert!(x.len >= s.x_len() && y.len >= s.y_len() && argmax.len >= s.y_len(), "maxpool forward: buffers too small for {s:?}");
    let p = params(s, relu, normalize.is_some());
    // Without a normalisation, x stands in for its four read-only buffers (never read).
    let n = normalize.unwrap_or(Normalize { mean: x, var: x, gamma: x, beta: x });
    assert!([n.mean, n.var, n.gamma, n.beta].iter().all(|b| normalize.is_none() || b.len >= s.c), "maxpool forward: statistics shorter than {} channels", s.c);
    let buffers = [x, y, argmax, n.mean, n.var, n.gamma, n.beta];
    if s.k == 2 && s.stride == 2 && s.w.is_multiple_of(4) {
        // The seed's pools: vec4 loads, outputs in pairs.
        let pairs = s.y_len() / 2;
        ctx.dispatch(&FORWARD_K2, &p, &buffers, ctx.grid(pairs.div_ceil(64)));
    } else {
        ctx.dispatch(&FORWARD, &p, &buffers, ctx.grid(s.y_len().div_ceil(64)));
    }
}

/// dx (fully written) = dy routed to each window's argmax, zero elsewhere (and zero in
/// all of a window whose argmax is `NO_ARGMAX`); with stride ≠ k, each input gathers the
/// gradients of the windows that chose it (`maxpool_backward_gather`).
pub fn backward(ctx: &GpuContext, s: &PoolShape, dy: &RawBuffer, argmax: &RawBuffer, dx: &RawBuffer) {
    assert!(dx.len >= s.x_len() && dy.len >= s.y_len() && argmax.len >= s.y_len(), "maxpool backward: buffers too small for {s:?}");
    let p = params(s, false, false);
    if !s.disjoint() {
        ctx.dispatch(&BACKWARD_GATHER, &p, &[dy, argmax, dx], ctx.grid(s.x_len().div_ceil(64)));
        return;
    }
    if s.k == 2 && s.w.is_multiple_of(4) && s.h.is_multiple_of(2) {
        let pairs = s.y_len() / 2;
        ctx.dispatch(&BACKWARD_K2, &p, &[dy, argmax, dx], ctx.grid(pairs.div_ceil(64)));
        return;
    }
    let blocks = s.n * s.c * (p.hb * p.wb) as usize;
    ctx.dispatch(&BACKWARD, &p, &[dy, argmax, dx], ctx.grid(blocks.div_ceil(64)));
}
