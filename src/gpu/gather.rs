//! Batch assembly on the device (shaders/gather.wgsl; CPU twin src/reference/gather.rs):
//! the dataset stays on the GPU as u8 pixels packed four per u32, labels as u32.

use super::context::{Access, GpuContext, Kernel, RawBuffer};

static GATHER: Kernel = Kernel {
    file: "gather",
    entry: "gather",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
};

static GATHER4: Kernel = Kernel {
    file: "gather",
    entry: "gather4",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite],
};
/// Every kernel of this file, for `kernels::all_kernels`.
pub(crate) static KERNELS: &[&Kernel] = &[&GATHER, &GATHER4];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    pixels: u32,
    offset: u32,
    n: u32,
    _pad: u32,
}

/// Packs bytes four per u32, little-endian (byte a in word a / 4 at bits 8·(a % 4)); the
/// last word is zero-padded.
pub fn pack_u8(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect()
}

/// x[i, :] = images[perm[offset + i]] / 255 and y[i] = labels[perm[offset + i]] for i < n,
/// with `images_packed` from [`pack_u8`] (each image `pixels` bytes) and `labels` as u32.
/// perm entries must be below the image count (WebGPU's bounds checks keep an out-of-range
/// one from reading outside the buffers, but its row is then undefined).
///
/// `offset` is a uniform (part of the bind-group cache key); it takes one value per batch
/// of an epoch, so the cache stays bounded by the number of batches.
#[allow(clippy::too_many_arguments)]
pub fn gather(
    ctx: &GpuContext,
    images_packed: &RawBuffer,
    labels: &RawBuffer,
    pixels: usize,
    perm: &RawBuffer,
    offset: usize,
    n: usize,
    x: &RawBuffer,
    y: &RawBuffer,
) {
    assert!(perm.len >= offset + n, "gather: perm has {} entries, batch needs {}", perm.len, offset + n);
    assert!(x.len >= n * pixels && y.len >= n, "gather: output buffers too small for {n}×{pixels}");
    let p = Params { pixels: pixels as u32, offset: offset as u32, n: n as u32, _pad: 0 };
    let bufs = [images_packed, labels, perm, x, y];
    if pixels.is_multiple_of(4) && pixels > 0 {
        // whole words per image: one word → one vec4 of x
        let total = (n * pixels / 4).max(n);
        ctx.dispatch(&GATHER4, &p, &bufs, ctx.grid(total.div_ceil(64)));
    } else {
        let total = (n * pixels).max(n);
        ctx.dispatch(&GATHER, &p, &bufs, ctx.grid(total.div_ceil(64)));
    }
}
