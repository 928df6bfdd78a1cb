//! MaxPool2d with window k and stride `stride` over x [n, c, h, w] → y [n, c, h_out, w_out]
//! (h_out = (h − k)/stride + 1, floor; PyTorch's default stride is k).
//! argmax[o] is the index iy·w + ix of the window's maximum within its input h·w plane, as
//! PyTorch's `return_indices`. Ties go to the first maximum: the window is scanned row-major
//! and a later element replaces the best only when strictly greater.
//! NaN: as PyTorch's CPU kernel (`val > maxval || isnan(val)`), a NaN always takes over, so a
//! window holding a NaN yields NaN (the last one's index) and divergence stays visible.
//! Shaders cannot promise NaN semantics; GPU tests use finite inputs.
//! `forward_fused` with `relu` is this forward then `activation::relu_forward`, with the
//! ReLU's backward folded into the argmax (`NO_ARGMAX`), so `backward` alone gives that
//! composition's input gradient.

use super::activation::keeps;
use super::Real;
use crate::shapes::PoolShape;

/// The argmax of a window whose output a fused ReLU zeroed: no gradient flows through it.
pub const NO_ARGMAX: u32 = u32::MAX;

pub fn forward<T: Real>(s: &PoolShape, x: &[T], y: &mut [T], argmax: &mut [u32]) {
    forward_fused(s, false, x, y, argmax)
}

/// `forward`; with `relu`, y = relu(max) and argmax = NO_ARGMAX where that ReLU zeroes the
/// output (`activation::keeps` false), so `backward` also applies the ReLU's backward.
pub fn forward_fused<T: Real>(s: &PoolShape, relu: bool, x: &[T], y: &mut [T], argmax: &mut [u32]) {
    assert_eq!(x.len(), s.x_len(), "maxpool: x has the wrong length for {s:?}");
    assert_eq!(y.len(), s.y_len(), "maxpool: y has the wrong length for {s:?}");
    assert_eq!(argmax.len(), s.y_len(), "maxpool: argmax has the wrong length for {s:?}");
    let (ho, wo, k, st) = (s.h_out(), s.w_out(), s.k, s.stride);
    for plane in 0..s.n * s.c {
        let xp = &x[plane * s.h * s.w..(plane + 1) * s.h * s.w];
        for oy in 0..ho {
            for ox in 0..wo {
                let mut best_i = (oy * st) * s.w + ox * st;
                for ky in 0..k {
                    for kx in 0..k {
                        let i = (oy * st + ky) * s.w + ox * st + kx;
                        #[allow(clippy::eq_op)] // x != x: NaN test on a generic Real
                        if xp[i] > xp[best_i] || xp[i] != xp[i] {
                            best_i = i;
                        }
                    }
                }
                let o = (plane * ho + oy) * wo + ox;
                if relu && !keeps(xp[best_i]) {
                    (y[o], argmax[o]) = (T::zero(), NO_ARGMAX);
                } else {
                    (y[o], argmax[o]) = (xp[best_i], best_i as u32);
                }
            }
        }
    }
}

/// dx is fully written: zero everywhere, then dy[o] added at each window's argmax (none for
/// NO_ARGMAX), in output order. With stride < k windows overlap and an input may receive
/// the gradients of several windows (summed in output order, as the GPU's gather does).
pub fn backward<T: Real>(s: &PoolShape, dy: &[T], argmax: &[u32], dx: &mut [T]) {
    assert_eq!(dy.len(), s.y_len(), "maxpool: dy has the wrong length for {s:?}");
    assert_eq!(argmax.len(), s.y_len(), "maxpool: argmax has the wrong length for {s:?}");
    assert_eq!(dx.len(), s.x_len(), "maxpool: dx has the wrong length for {s:?}");
    dx.fill(T::zero());
    let out_plane = s.h_out() * s.w_out();
    for (o, (&g, &a)) in dy.iter().zip(argmax).enumerate() {
        if a == NO_ARGMAX {
            continue;
        }
        let plane = o / out_plane;
        dx[plane * s.h * s.w + a as usize] += g;
    }
}
