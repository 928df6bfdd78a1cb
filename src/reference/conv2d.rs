//! Conv2d as PyTorch computes it: cross-correlation (no kernel flip), zero padding `pad` on
//! every side, stride `stride`. Layouts: x [n, c_in, h, w], w [c_out, c_in, k, k], b [c_out],
//! y [n, c_out, h_out, w_out]. Every sum is accumulated in f64.
//!
//! The output pixel (oy, ox) sees input pixel (iy, ix) = (oy·stride + ky − pad, ox·stride + kx − pad)
//! through kernel tap (ky, kx); taps landing in the padding read zero and are skipped.

use super::Real;
use crate::shapes::Conv2dShape;

/// The input pixel that output (oy, ox) reads through tap (ky, kx), or None in the padding.
#[inline]
fn input_pixel(s: &Conv2dShape, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
    let iy = (oy * s.stride + ky).checked_sub(s.pad)?;
    let ix = (ox * s.stride + kx).checked_sub(s.pad)?;
    (iy < s.h && ix < s.w).then_some((iy, ix))
}

fn check(s: &Conv2dShape, x: usize, w: usize, y: usize) {
    assert_eq!(x, s.x_len(), "conv2d: x has the wrong length for {s:?}");
    assert_eq!(w, s.w_len(), "conv2d: w has the wrong length for {s:?}");
    assert_eq!(y, s.y_len(), "conv2d: y has the wrong length for {s:?}");
}

/// y = b + x ⋆ w.
pub fn forward<T: Real>(s: &Conv2dShape, x: &[T], w: &[T], b: &[T], y: &mut [T]) {
    check(s, x.len(), w.len(), y.len());
    assert_eq!(b.len(), s.c_out, "conv2d: bias length");
    let (ho, wo, k) = (s.h_out(), s.w_out(), s.k);
    for n in 0..s.n {
        for co in 0..s.c_out {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = b[co].to_f64();
                    for ci in 0..s.c_in {
                        for ky in 0..k {
                            for kx in 0..k {
                                if let Some((iy, ix)) = input_pixel(s, oy, ox, ky, kx) {
                                    let xv = x[((n * s.c_in + ci) * s.h + iy) * s.w + ix];
                                    let wv = w[((co * s.c_in + ci) * k + ky) * k + kx];
                                    acc += xv.to_f64() * wv.to_f64();
                                }
                            }
                        }
                    }
                    y[((n * s.c_out + co) * ho + oy) * wo + ox] = T::from_f64(acc);
                }
            }
        }
    }
}

/// dx[n, ci, iy, ix] = Σ over (co, oy, ox, ky, kx) reading (iy, ix) of dy[n, co, oy, ox]·w[co, ci, ky, kx].
/// Written as the transpose of `forward`: scatter every product into an f64 accumulator.
pub fn grad_input<T: Real>(s: &Conv2dShape, dy: &[T], w: &[T], dx: &mut [T]) {
    check(s, dx.len(), w.len(), dy.len());
    let (ho, wo, k) = (s.h_out(), s.w_out(), s.k);
    let mut acc = vec![0.0f64; dx.len()];
    for n in 0..s.n {
        for co in 0..s.c_out {
            for oy in 0..ho {
                for ox in 0..wo {
                    let g = dy[((n * s.c_out + co) * ho + oy) * wo + ox].to_f64();
                    for ci in 0..s.c_in {
                        for ky in 0..k {
                            for kx in 0..k {
                                if let Some((iy, ix)) = input_pixel(s, oy, ox, ky, kx) {
                                    let wv = w[((co * s.c_in + ci) * k + ky) * k + kx].to_f64();
                                    acc[((n * s.c_in + ci) * s.h + iy) * s.w + ix] += g * wv;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    for (d, a) in dx.iter_mut().zip(acc) {
        *d = T::from_f64(a);
    }
}

/// dw[co, ci, ky, kx] += Σ over (n, oy, ox) of dy[n, co, oy, ox]·x[n, ci, iy, ix].
/// Accumulates, as a parameter gradient does (zero dw first for the gradient alone): the
/// sum is rounded to T, then added to dw in T, as the GPU's final pass does.
pub fn grad_weight<T: Real>(s: &Conv2dShape, x: &[T], dy: &[T], dw: &mut [T]) {
    check(s, x.len(), dw.len(), dy.len());
    let (ho, wo, k) = (s.h_out(), s.w_out(), s.k);
    for co in 0..s.c_out {
        for ci in 0..s.c_in {
            for ky in 0..k {
                for kx in 0..k {
                    let mut acc = 0.0f64;
                    for n in 0..s.n {
                        for oy in 0..ho {
                            for ox in 0..wo {
                                if let Some((iy, ix)) = input_pixel(s, oy, ox, ky, kx) {
                                    let g = dy[((n * s.c_out + co) * ho + oy) * wo + ox].to_f64();
                                    let xv = x[((n * s.c_in + ci) * s.h + iy) * s.w + ix].to_f64();
                                    acc += g * xv;
                                }
                            }
                        }
                    }
                    let i = ((co * s.c_in + ci) * k + ky) * k + kx;
                    dw[i] = T::from_f64(acc) + dw[i];
                }
            }
        }
    }
}

/// db[co] += Σ over (n, oy, ox) of dy[n, co, oy, ox]; accumulates as `grad_weight` does.
pub fn grad_bias<T: Real>(s: &Conv2dShape, dy: &[T], db: &mut [T]) {
    assert_eq!(dy.len(), s.y_len(), "conv2d: dy has the wrong length for {s:?}");
    assert_eq!(db.len(), s.c_out, "conv2d: db length");
    let plane = s.h_out() * s.w_out();
    for (co, d) in db.iter_mut().enumerate() {
        let mut acc = 0.0f64;
        for n in 0..s.n {
            let start = (n * s.c_out + co) * plane;
            acc += dy[start..start + plane].iter().map(|v| v.to_f64()).sum::<f64>();
        }
        *d = T::from_f64(acc) + *d;
    }
}
