//! A one-kernel check that the adapter runs WGSL compute at all (`wgsl-cnn adapters --check`
//! and the smoke test).

use super::context::{Access, GpuContext, Kernel, RawBuffer};

static SCALE_ADD_INDEX: Kernel = Kernel {
    file: "smoke",
    entry: "scale_add_index",
    bindings: &[Access::Read, Access::ReadWrite],
};
/// Every kernel of this file, for `kernels::all_kernels`.
pub(crate) static KERNELS: &[&Kernel] = &[&SCALE_ADD_INDEX];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    scale: f32,
}

/// out[i] = a[i]·scale + i.
pub fn scale_add_index(ctx: &GpuContext, a: &RawBuffer, scale: f32, out: &RawBuffer) {
    let n = a.len.min(out.len);
    ctx.dispatch(&SCALE_ADD_INDEX, &Params { n: n as u32, scale }, &[a, out], ctx.grid(n.div_ceil(64)));
}
