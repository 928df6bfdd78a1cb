//! ReLU. The backward reads the forward *output*: y > 0 exactly where x > 0.
//! NaN passes through both, as in PyTorch (relu(NaN) = NaN; threshold_backward passes dy
//! unless y ≤ 0), so a diverging run is not silently zeroed here.

use super::Real;

/// Whether ReLU keeps v: v > 0 or v is NaN (its output, and where its backward passes dy).
pub fn keeps<T: Real>(v: T) -> bool {
    #[allow(clippy::eq_op)] // v != v: NaN (Real has no is_nan)
    let nan = v != v;
    v > T::zero() || nan
}

/// y = x where x > 0 or x is NaN, else +0.0 (so −0.0 gives +0.0, as the shader does).
pub fn relu_forward<T: Real>(x: &[T], y: &mut [T]) {
    assert_eq!(x.len(), y.len(), "relu: x and y differ in length");
    for (o, &v) in y.iter_mut().zip(x) {
        *o = if keeps(v) { v } else { T::zero() };
    }
}

/// dx = dy where y > 0, else 0 (PyTorch's threshold_backward: the gradient at 0 is 0).
pub fn relu_backward<T: Real>(y: &[T], dy: &[T], dx: &mut [T]) {
    assert!(y.len() == dy.len() && dy.len() == dx.len(), "relu: y, dy and dx differ in length");
    for ((d, &yv), &g) in dx.iter_mut().zip(y).zip(dy) {
        *d = if keeps(yv) { g } else { T::zero() };
    }
}
