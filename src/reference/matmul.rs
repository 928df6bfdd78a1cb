//! C [m, n] = op(A) · op(B) (+ bias [n] added to every row), summed in f64.
//! op(A) is [m, k]: A is stored [m, k], or [k, m] with `trans_a`.
//! op(B) is [k, n]: B is stored [k, n], or [n, k] with `trans_b`.
//! The three Linear passes (y = x·Wᵀ + b, dx = dy·W, dW = dyᵀ·x) are all this one op.
//! With `accumulate`, C += op(A)·op(B) (+ bias): the contribution is rounded to T first and
//! then added to C in T, as the GPU kernels do, so adding into zeros equals overwriting
//! (bit for bit, but for a −0 contribution, which becomes +0).

//!
//! `matmul_fused` is the twin of the GPU's fused epilogues: the product (+ bias) rounded to
//! T, then ReLU (`activation::relu_forward`'s rule) or ReLU's backward mask
//! (`activation::relu_backward`'s rule), then the accumulate. `add_row_sums` is the fused
//! bias gradient, `reduce::sum_rows` of op(A)ᵀ.

use super::activation::keeps;
use super::Real;
use crate::shapes::MatmulShape;

/// What `matmul_fused` does to each element of the product before storing it.
#[derive(Clone, Copy)]
pub enum Epilogue<'a, T> {
    None,
    Relu,
    /// Zero where ReLU cut the matching element of this [m, n] output of a ReLU.
    Mask(&'a [T]),
}

pub fn matmul<T: Real>(s: &MatmulShape, a: &[T], b: &[T], bias: Option<&[T]>, c: &mut [T]) {
    matmul_fused(s, a, b, bias, Epilogue::None, c)
}

pub fn matmul_fused<T: Real>(s: &MatmulShape, a: &[T], b: &[T], bias: Option<&[T]>, epilogue: Epilogue<'_, T>, c: &mut [T]) {
    assert_eq!(a.len(), s.m * s.k, "matmul: A has the wrong length for {s:?}");
    assert_eq!(b.len(), s.k * s.n, "matmul: B has the wrong length for {s:?}");
    assert_eq!(c.len(), s.m * s.n, "matmul: C has the wrong length for {s:?}");
    if let Some(bias) = bias {
        assert_eq!(bias.len(), s.n, "matmul: bias length");
    }
    let a_at = |i: usize, p: usize| if s.trans_a { a[p * s.m + i] } else { a[i * s.k + p] };
    let b_at = |p: usize, j: usize| if s.trans_b { b[j * s.k + p] } else { b[p * s.n + j] };
    for i in 0..s.m {
        for j in 0..s.n {
            let mut acc = bias.map_or(0.0, |bias| bias[j].to_f64());
            for p in 0..s.k {
                acc += a_at(i, p).to_f64() * b_at(p, j).to_f64();
            }
            let v = T::from_f64(acc);
            let v = match epilogue {
                Epilogue::None => v,
                Epilogue::Relu => if keeps(v) { v } else { T::zero() },
                Epilogue::Mask(mask) => if keeps(mask[i * s.n + j]) { v } else { T::zero() },
            };
            c[i * s.n + j] = if s.accumulate { v + c[i * s.n + j] } else { v };
        }
    }
}

/// out[i] += Σ_k op(A)[i, k], summed in f64 (a Linear's bias gradient, fused into its weight
/// gradient's product).
pub fn add_row_sums<T: Real>(s: &MatmulShape, a: &[T], out: &mut [T]) {
    assert_eq!(a.len(), s.m * s.k, "matmul: A has the wrong length for {s:?}");
    for (i, o) in out.iter_mut().enumerate().take(s.m) {
        let mut acc = 0.0;
        for p in 0..s.k {
            acc += if s.trans_a { a[p * s.m + i] } else { a[i * s.k + p] }.to_f64();
        }
        *o = T::from_f64(acc) + *o;
    }
}
