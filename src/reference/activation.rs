//! ReLU, and the smooth activations Tanh and Sigmoid (`forward`, `backward`). Every backward reads the forward *output*: for ReLU y > 0 exactly where x > 0.
//! NaN passes through both, as in PyTorch (relu(NaN) = NaN; threshold_backward passes dy
//! unless y ≤ 0), so a diverging run is not silently zeroed here.

use super::Real;
use crate::shapes::Activation;

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

/// y = f(x), element-wise (computed in f64, rounded to T). NaN passes through.
pub fn forward<T: Real>(f: Activation, x: &[T], y: &mut [T]) {
    assert_eq!(x.len(), y.len(), "{}: x and y differ in length", f.name());
    for (o, &v) in y.iter_mut().zip(x) {
        let v = v.to_f64();
        *o = T::from_f64(match f {
            Activation::Tanh => v.tanh(),
            Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        });
    }
}

/// dx = dy·f'(x), written with the forward's output y: tanh' = 1 − y², sigmoid' = y·(1 − y).
pub fn backward<T: Real>(f: Activation, y: &[T], dy: &[T], dx: &mut [T]) {
    assert!(y.len() == dy.len() && dy.len() == dx.len(), "{}: y, dy and dx differ in length", f.name());
    for ((d, &yv), &g) in dx.iter_mut().zip(y).zip(dy) {
        let (yv, g) = (yv.to_f64(), g.to_f64());
        *d = T::from_f64(match f {
            Activation::Tanh => g * (1.0 - yv * yv),
            Activation::Sigmoid => g * (yv * (1.0 - yv)),
        });
    }
}
