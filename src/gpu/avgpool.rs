//! AvgPool2d (any stride, no padding) forward and backward (shaders/avgpool.wgsl; CPU twin
//! src/reference/avgpool.rs).

use super::context::{Access, GpuContext, Kernel, RawBuffer};
use crate::shapes::PoolShape;

static FORWARD: Kernel = Kernel { file: "avgpool", entry: "avgpool_forward", bindings: &[Access::Read, Access::ReadWrite] };
static BACKWARD: Kernel = Kernel { file: "avgpool", entry: "avgpool_backward", bindings: &[Access::Read, Access::ReadWrite] };
/// Every kernel of this file, for `kernels::all_kernels`.
pub(crate) static KERNELS: &[&Kernel] = &[&FORWARD, &BACKWARD];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    planes: u32,
    h: u32,
    w: u32,
    k: u32,
    stride: u32,
    ho: u32,
    wo: u32,
    _pad: u32,
}

fn params(s: &PoolShape) -> Params {
    assert!(s.k > 0 && s.stride > 0 && s.h >= s.k && s.w >= s.k, "avgpool: bad shape {s:?}");
    Params {
        planes: (s.n * s.c) as u32,
        h: s.h as u32,
        w: s.w as u32,
        k: s.k as u32,
        stride: s.stride as u32,
        ho: s.h_out() as u32,
        wo: s.w_out() as u32,
        _pad: 0,
    }
}

/// y = the mean of each k×k window of x.
pub fn forward(ctx: &GpuContext, s: &PoolShape, x: &RawBuffer, y: &RawBuffer) {
    assert!(x.len >= s.x_len() && y.len >= s.y_len(), "avgpool forward: buffers too small for {s:?}");
    ctx.dispatch(&FORWARD, &params(s), &[x, y], ctx.grid(s.y_len().div_ceil(64)));
}

/// dx (fully written) = Σ dy/(k·k) over the windows holding each input element.
pub fn backward(ctx: &GpuContext, s: &PoolShape, dy: &RawBuffer, dx: &RawBuffer) {
    assert!(dx.len >= s.x_len() && dy.len >= s.y_len(), "avgpool backward: buffers too small for {s:?}");
    ctx.dispatch(&BACKWARD, &params(s), &[dy, dx], ctx.grid(s.x_len().div_ceil(64)));
}
