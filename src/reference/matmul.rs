//! C [m, n] = op(A) · op(B) (+ bias [n] added to every row), summed in f64.
//! op(A) is [m, k]: A is stored [m, k], or [k, m] with `trans_a`.
//! op(B) is [k, n]: B is stored [k, n], or [n, k] with `trans_b`.
//! The three Linear passes (y = x·Wᵀ + b, dx = dy·W, dW = dyᵀ·x) are all this one op.
//! With `accumulate`, C += op(A)·op(B) (+ bias): the contribution is rounded to T first and
//! then added to C in T, as the GPU kernels do, so adding into zeros equals overwriting
//! (bit for bit, but for a −0 contribution, which becomes +0).

use super::Real;
use crate::shapes::MatmulShape;

pub fn matmul<T: Real>(s: &MatmulShape, a: &[T], b: &[T], bias: Option<&[T]>, c: &mut [T]) {
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
            c[i * s.n + j] = if s.accumulate { v + c[i * s.n + j] } else { v };
        }
    }
}
