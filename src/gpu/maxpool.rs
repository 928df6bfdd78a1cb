//! MaxPool2d forward (keeping argmax) and backward (shaders/maxpool.wgsl; CPU twin
//! src/reference/maxpool.rs).

use super::context::{Access, GpuContext, Kernel, RawBuffer};
use crate::shapes::PoolShape;
pub use crate::reference::maxpool::NO_ARGMAX;

static FORWARD: Kernel = Kernel {
    file: "maxpool",
    entry: "maxpool_forward",
    bindings: &[Access::Read, Access::ReadWrite, Access::ReadWrite],
};
static BACKWARD: Kernel = Kernel {
    file: "maxpool",
    entry: "maxpool_backward",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
};

static FORWARD_K2: Kernel = Kernel {
    file: "maxpool",
    entry: "maxpool_forward_k2",
    bindings: &[Access::Read, Access::ReadWrite, Access::ReadWrite],
};
static BACKWARD_K2: Kernel = Kernel {
    file: "maxpool",
    entry: "maxpool_backward_k2",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
};
/// Every kernel of this file, for `kernels::all_kernels`.
pub(crate) static KERNELS: &[&Kernel] = &[&FORWARD, &BACKWARD, &FORWARD_K2, &BACKWARD_K2];

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
}

fn params(s: &PoolShape, relu: bool) -> Params {
    assert!(s.k > 0, "pool window must be positive");
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
    }
}

/// y = max over each k×k window of x; argmax = index of that maximum within its h·w plane
/// (the first in row-major window order on ties).
pub fn forward(ctx: &GpuContext, s: &PoolShape, x: &RawBuffer, y: &RawBuffer, argmax: &RawBuffer) {
    forward_fused(ctx, s, false, x, y, argmax)
}

/// `forward`, and with `relu` a ReLU after it in the same dispatch: y = relu(max), and
/// argmax = `NO_ARGMAX` where the ReLU zeroes the output, so `backward` also does the
/// ReLU's backward (twin: `reference::maxpool::forward_fused`).
pub fn forward_fused(ctx: &GpuContext, s: &PoolShape, relu: bool, x: &RawBuffer, y: &RawBuffer, argmax: &RawBuffer) {
    assert!(x.len >= s.x_len() && y.len >= s.y_len() && argmax.len >= s.y_len(), "maxpool forward: buffers too small for {s:?}");
    if s.k == 2 && s.w.is_multiple_of(4) {
        // The seed's pools: vec4 loads, outputs in pairs.
        let pairs = s.y_len() / 2;
        ctx.dispatch(&FORWARD_K2, &params(s, relu), &[x, y, argmax], ctx.grid(pairs.div_ceil(64)));
    } else {
        ctx.dispatch(&FORWARD, &params(s, relu), &[x, y, argmax], ctx.grid(s.y_len().div_ceil(64)));
    }
}

/// dx (fully written) = dy routed to each window's argmax, zero elsewhere (and zero in
/// all of a window whose argmax is `NO_ARGMAX`).
pub fn backward(ctx: &GpuContext, s: &PoolShape, dy: &RawBuffer, argmax: &RawBuffer, dx: &RawBuffer) {
    assert!(dx.len >= s.x_len() && dy.len >= s.y_len() && argmax.len >= s.y_len(), "maxpool backward: buffers too small for {s:?}");
    let p = params(s, false);
    if s.k == 2 && s.w.is_multiple_of(4) && s.h.is_multiple_of(2) {
        let pairs = s.y_len() / 2;
        ctx.dispatch(&BACKWARD_K2, &p, &[dy, argmax, dx], ctx.grid(pairs.div_ceil(64)));
        return;
    }
    let blocks = s.n * s.c * (p.hb * p.wb) as usize;
    ctx.dispatch(&BACKWARD, &p, &[dy, argmax, dx], ctx.grid(blocks.div_ceil(64)));
}
