//! Adam, exactly as PyTorch's single-tensor `torch.optim.Adam` and `torch.optim.AdamW` (no
//! amsgrad, no maximize):
//!
//!   g = g + wd·p                     (Adam's weight decay, an L2 term; `decoupled` false)
//!   p = p·(1 − lr·wd)                (AdamW's decoupled decay; `decoupled` true)
//!   m = β1·m + (1 − β1)·g            (PyTorch writes m.lerp_(g, 1 − β1): equal up to rounding)
//!   v = β2·v + (1 − β2)·g²
//!   bc1 = 1 − β1^t,  bc2 = 1 − β2^t   (t = step, counting from 1)
//!   step_size = lr / bc1
//!   denom = √v / √bc2 + eps
//!   p −= step_size · m / denom
//!
//! PyTorch computes bc1, bc2, step_size, √bc2 and 1 − lr·wd in Python floats (f64) from the
//! Python floats lr, β1, β2, wd, then rounds them to the tensor's dtype. `AdamConfig` holds f32, so the
//! f64 value the user wrote is recovered as the shortest decimal that rounds to that f32
//! (0.9f32 → 0.9f64, not 0.89999997615814…), which is the Python float PyTorch would hold.

use super::real::f32_decimal as decimal;
use super::Real;
use crate::shapes::AdamConfig;

/// The per-step scalars, all in f64 as PyTorch computes them.
struct Scalars {
    beta1: f64,
    beta2: f64,
    one_minus_beta1: f64,
    one_minus_beta2: f64,
    step_size: f64,
    bc2_sqrt: f64,
    eps: f64,
    /// Adam's L2 coefficient (0 for AdamW or without weight decay).
    l2: f64,
    /// AdamW's factor 1 − lr·wd (1 for Adam).
    decay: f64,
}

fn scalars(cfg: &AdamConfig, step: u32) -> Scalars {
    assert!(step >= 1, "adam: steps count from 1");
    let (lr, beta1, beta2, eps) = (decimal(cfg.lr), decimal(cfg.beta1), decimal(cfg.beta2), decimal(cfg.eps));
    let t = step as f64;
    let bc1 = 1.0 - beta1.powf(t);
    let bc2 = 1.0 - beta2.powf(t);
    Scalars {
        beta1,
        beta2,
        one_minus_beta1: 1.0 - beta1,
        one_minus_beta2: 1.0 - beta2,
        step_size: lr / bc1,
        bc2_sqrt: bc2.sqrt(),
        eps,
        l2: if cfg.decoupled { 0.0 } else { decimal(cfg.weight_decay) },
        decay: if cfg.decoupled { 1.0 - lr * decimal(cfg.weight_decay) } else { 1.0 },
    }
}

/// The weight-decay constants the kernel takes as they are, rounded to f32 once:
/// `[l2, decay]`: g += l2·p (Adam's weight decay, else 0) and p = p·decay before the update
/// (AdamW's 1 − lr·wd, computed in f64, else 1).
pub fn decay(cfg: &AdamConfig) -> [f32; 2] {
    let s = scalars(cfg, 1);
    [s.l2 as f32, s.decay as f32]
}

/// What a GPU kernel needs for step `step` (counting from 1), computed in f64 and rounded
/// to f32 once: `[step_size, 1/√bc2, 1 − β1, 1 − β2]`, with step_size = lr/(1 − β1^t) and
/// bc2 = 1 − β2^t. With h = hyper(cfg, t) the kernel computes, per element in f32:
///
///   m = β1·m + h[2]·g;  v = β2·v + h[3]·g·g;  p −= h[0]·m / (√v·h[1] + eps)
///
/// (β1, β2, eps straight from `cfg`). Multiplying by h[1] instead of dividing by √bc2 as
/// PyTorch does differs by at most an ulp or so in the denominator.
pub fn hyper(cfg: &AdamConfig, step: u32) -> [f32; 4] {
    let s = scalars(cfg, step);
    [s.step_size as f32, (1.0 / s.bc2_sqrt) as f32, s.one_minus_beta1 as f32, s.one_minus_beta2 as f32]
}

/// One Adam step over a parameter tensor, in T arithmetic with the scalars rounded to T
/// (as PyTorch does for an f32 tensor). Weight decay as PyTorch applies it: an L2 term added
/// to the gradient (Adam), or the parameter scaled by 1 − lr·wd first (AdamW); neither when
/// the weight decay is 0.
pub fn step<T: Real>(cfg: &AdamConfig, step: u32, param: &mut [T], grad: &[T], m: &mut [T], v: &mut [T]) {
    let n = param.len();
    assert!(grad.len() == n && m.len() == n && v.len() == n, "adam: param, grad, m and v differ in length");
    let s = scalars(cfg, step);
    let (b1, b2) = (T::from_f64(s.beta1), T::from_f64(s.beta2));
    let (omb1, omb2) = (T::from_f64(s.one_minus_beta1), T::from_f64(s.one_minus_beta2));
    let (step_size, bc2_sqrt, eps) = (T::from_f64(s.step_size), T::from_f64(s.bc2_sqrt), T::from_f64(s.eps));
    let (l2, decay) = (T::from_f64(s.l2), T::from_f64(s.decay));
    let (use_l2, use_decay) = (s.l2 != 0.0, s.decay != 1.0);
    for i in 0..n {
        let mut g = grad[i];
        if use_l2 {
            g += l2 * param[i];
        }
        if use_decay {
            param[i] *= decay;
        }
        m[i] = b1 * m[i] + omb1 * g;
        v[i] = b2 * v[i] + omb2 * g * g;
        let denom = v[i].sqrt() / bc2_sqrt + eps;
        param[i] -= step_size * (m[i] / denom);
    }
}
