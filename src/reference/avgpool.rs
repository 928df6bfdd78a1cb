//! AvgPool2d with window k and stride `stride` over x [n, c, h, w] → y [n, c, h_out, w_out]
//! (h_out = (h − k)/stride + 1, floor), as PyTorch's `AvgPool2d(k, stride)` with no padding:
//! every window holds k·k elements, and y is their mean. Sums in f64.
//! The backward spreads dy[o]/(k·k) over window o; with stride < k windows overlap and an
//! input sums the shares of every window holding it, in output order (as the GPU's gather).

use super::Real;
use crate::shapes::PoolShape;

fn check(s: &PoolShape, x: usize, y: usize) {
    assert!(s.k >= 1 && s.stride >= 1 && s.h >= s.k && s.w >= s.k, "avgpool: bad shape {s:?}");
    assert_eq!(x, s.x_len(), "avgpool: x has the wrong length for {s:?}");
    assert_eq!(y, s.y_len(), "avgpool: y has the wrong length for {s:?}");
}

/// y = the mean of each k×k window.
pub fn forward<T: Real>(s: &PoolShape, x: &[T], y: &mut [T]) {
    check(s, x.len(), y.len());
    let (ho, wo, k, st) = (s.h_out(), s.w_out(), s.k, s.stride);
    let area = (k * k) as f64;
    for plane in 0..s.n * s.c {
        let xp = &x[plane * s.h * s.w..(plane + 1) * s.h * s.w];
        for oy in 0..ho {
            for ox in 0..wo {
                let mut acc = 0.0f64;
                for ky in 0..k {
                    for kx in 0..k {
                        acc += xp[(oy * st + ky) * s.w + ox * st + kx].to_f64();
                    }
                }
                y[(plane * ho + oy) * wo + ox] = T::from_f64(acc / area);
            }
        }
    }
}

/// dx (fully written) = Σ over the windows holding each input of dy/(k·k); 0 for inputs in
/// no window (past the floor, or between windows when stride > k).
pub fn backward<T: Real>(s: &PoolShape, dy: &[T], dx: &mut [T]) {
    check(s, dx.len(), dy.len());
    let (ho, wo, k, st) = (s.h_out(), s.w_out(), s.k, s.stride);
    let area = (k * k) as f64;
    let mut acc = vec![0.0f64; dx.len()];
    for plane in 0..s.n * s.c {
        for oy in 0..ho {
            for ox in 0..wo {
                let g = dy[(plane * ho + oy) * wo + ox].to_f64() / area;
                for ky in 0..k {
                    for kx in 0..k {
                        acc[plane * s.h * s.w + (oy * st + ky) * s.w + ox * st + kx] += g;
                    }
                }
            }
        }
    }
    for (d, a) in dx.iter_mut().zip(acc) {
        *d = T::from_f64(a);
    }
}
