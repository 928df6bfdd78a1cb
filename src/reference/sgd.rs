//! SGD, exactly as PyTorch's single-tensor `torch.optim.SGD` (maximize off):
//!
//!   d = g + wd·p                         (weight decay, an L2 term; only when wd ≠ 0)
//!   b = d                                (momentum, a parameter's first step: PyTorch clones d)
//!   b = μ·b + (1 − dampening)·d          (momentum, later steps)
//!   d = d + μ·b   (nesterov)   or  d = b  (momentum without Nesterov)
//!   p = p − lr·d
//!
//! The momentum lines only with μ ≠ 0 (PyTorch keeps no buffer then). PyTorch holds lr, μ,
//! dampening and wd as Python floats and computes 1 − dampening in f64; each is rounded to
//! the tensor's dtype where it meets the tensor. `SgdConfig` holds f32, so each value is
//! recovered as the shortest decimal that rounds to it (`real::f32_decimal`), as Adam's are.

use super::real::f32_decimal as decimal;
use super::Real;
use crate::shapes::SgdConfig;

/// What the GPU kernel takes, rounded to f32 once from the f64 PyTorch computes:
/// `[lr, μ, 1 − dampening, wd]`.
pub fn hyper(cfg: &SgdConfig) -> [f32; 4] {
    [decimal(cfg.lr) as f32, decimal(cfg.momentum) as f32, (1.0 - decimal(cfg.dampening)) as f32, decimal(cfg.weight_decay) as f32]
}

/// One SGD step over a parameter tensor, in T arithmetic with the scalars rounded to T.
/// `buf` is the momentum buffer (read and written only with μ ≠ 0); `first` says that it
/// holds nothing yet (the step that creates it: b = d, its old contents unread).
pub fn step<T: Real>(cfg: &SgdConfig, first: bool, param: &mut [T], grad: &[T], buf: &mut [T]) {
    let n = param.len();
    assert!(grad.len() == n && buf.len() == n, "sgd: param, grad and the momentum buffer differ in length");
    let (lr, mu, damp, wd) = (decimal(cfg.lr), decimal(cfg.momentum), 1.0 - decimal(cfg.dampening), decimal(cfg.weight_decay));
    let (use_wd, use_momentum) = (wd != 0.0, mu != 0.0);
    let (lr, mu, damp, wd) = (T::from_f64(lr), T::from_f64(mu), T::from_f64(damp), T::from_f64(wd));
    for i in 0..n {
        let mut d = grad[i];
        if use_wd {
            d += wd * param[i];
        }
        if use_momentum {
            let b = if first { d } else { mu * buf[i] + damp * d };
            buf[i] = b;
            d = if cfg.nesterov { d + mu * b } else { b };
        }
        param[i] -= lr * d;
    }
}
