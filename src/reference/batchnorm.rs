//! BatchNorm2d over x [n, c, hw], statistics per channel over the m = n·hw values
//! x[i, ch, p] for all i, p. Sums are accumulated in f64.
//!
//! Training forward: mean, biased var = Σ(x − mean)²/m, x̂ = (x − mean)/√(var + eps),
//! y = gamma·x̂ + beta. Running stats get the unbiased var·m/(m − 1), as PyTorch.
//! eps and momentum are the f64 values 1e-5 and 0.1 (as PyTorch's Python floats), not the
//! f64 widening of the f32 constants.

use super::real::f32_decimal;
use super::Real;
use crate::shapes::{BatchNormShape, BN_EPS, BN_MOMENTUM};

/// The per-channel values of x, in (i, p) order.
#[inline]
fn channel<'a, T: Real>(s: &BatchNormShape, x: &'a [T], ch: usize) -> impl Iterator<Item = (usize, f64)> + 'a {
    let (c, hw) = (s.c, s.hw);
    (0..s.n).flat_map(move |i| {
        let start = (i * c + ch) * hw;
        (start..start + hw).map(move |j| (j, x[j].to_f64()))
    })
}

#[inline]
fn inv_std(var: f64) -> f64 {
    1.0 / (var + f32_decimal(BN_EPS)).sqrt()
}

/// Per-channel batch mean and biased variance (two passes: mean first, then squares).
/// The GPU's `stats` also updates the running statistics: its twin is this followed by
/// [`update_running`].
pub fn stats<T: Real>(s: &BatchNormShape, x: &[T], mean: &mut [T], var: &mut [T]) {
    assert_eq!(x.len(), s.len(), "batchnorm: x has the wrong length for {s:?}");
    assert!(mean.len() == s.c && var.len() == s.c, "batchnorm: mean/var length");
    let m = s.per_channel() as f64;
    for ch in 0..s.c {
        let mu = channel(s, x, ch).map(|(_, v)| v).sum::<f64>() / m;
        let sq = channel(s, x, ch).map(|(_, v)| (v - mu) * (v - mu)).sum::<f64>();
        mean[ch] = T::from_f64(mu);
        var[ch] = T::from_f64(sq / m);
    }
}

/// y = (x − mean)/√(var + eps)·gamma + beta, per channel. Training passes the batch stats,
/// eval the running ones.
pub fn normalize<T: Real>(s: &BatchNormShape, x: &[T], mean: &[T], var: &[T], gamma: &[T], beta: &[T], y: &mut [T]) {
    assert!(x.len() == s.len() && y.len() == s.len(), "batchnorm: x/y length for {s:?}");
    assert!(
        mean.len() == s.c && var.len() == s.c && gamma.len() == s.c && beta.len() == s.c,
        "batchnorm: per-channel parameter length"
    );
    for ch in 0..s.c {
        let (mu, is) = (mean[ch].to_f64(), inv_std(var[ch].to_f64()));
        let (g, b) = (gamma[ch].to_f64(), beta[ch].to_f64());
        for (j, v) in channel(s, x, ch) {
            y[j] = T::from_f64((v - mu) * is * g + b);
        }
    }
}

/// running = (1 − momentum)·running + momentum·batch; running_var gets the unbiased
/// variance var·m/(m − 1). PyTorch refuses to train with m = 1 ("Expected more than 1 value
/// per channel"); so does this (it would divide by zero).
pub fn update_running<T: Real>(s: &BatchNormShape, mean: &[T], var: &[T], running_mean: &mut [T], running_var: &mut [T]) {
    assert!(
        mean.len() == s.c && var.len() == s.c && running_mean.len() == s.c && running_var.len() == s.c,
        "batchnorm: per-channel length"
    );
    let m = s.per_channel() as f64;
    assert!(m > 1.0, "batchnorm: expected more than 1 value per channel when training, got {s:?}");
    let mom = f32_decimal(BN_MOMENTUM);
    for ch in 0..s.c {
        let unbiased = var[ch].to_f64() * m / (m - 1.0);
        running_mean[ch] = T::from_f64((1.0 - mom) * running_mean[ch].to_f64() + mom * mean[ch].to_f64());
        running_var[ch] = T::from_f64((1.0 - mom) * running_var[ch].to_f64() + mom * unbiased);
    }
}

/// Gradients of the training forward (mean and var themselves depend on x), with this
/// call's sums Σdy and Σdy·x̂: dx = gamma/√(var + eps)/m · (m·dy − Σdy − x̂·Σdy·x̂) is
/// overwritten, and the parameter gradients accumulate: dbeta = T(Σdy) + dbeta,
/// dgamma = T(Σdy·x̂) + dgamma (zero them first for a plain gradient).
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    s: &BatchNormShape,
    x: &[T],
    dy: &[T],
    mean: &[T],
    var: &[T],
    gamma: &[T],
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
) {
    assert!(x.len() == s.len() && dy.len() == s.len() && dx.len() == s.len(), "batchnorm: x/dy/dx length for {s:?}");
    assert!(
        mean.len() == s.c && var.len() == s.c && gamma.len() == s.c && dgamma.len() == s.c && dbeta.len() == s.c,
        "batchnorm: per-channel length"
    );
    let m = s.per_channel() as f64;
    for ch in 0..s.c {
        let (mu, is) = (mean[ch].to_f64(), inv_std(var[ch].to_f64()));
        let (mut sum_dy, mut sum_dy_xhat) = (0.0f64, 0.0f64);
        for (j, v) in channel(s, x, ch) {
            let g = dy[j].to_f64();
            sum_dy += g;
            sum_dy_xhat += g * (v - mu) * is;
        }
        let scale = gamma[ch].to_f64() * is / m;
        for (j, v) in channel(s, x, ch) {
            let xhat = (v - mu) * is;
            dx[j] = T::from_f64(scale * (m * dy[j].to_f64() - sum_dy - xhat * sum_dy_xhat));
        }
        dgamma[ch] = T::from_f64(sum_dy_xhat) + dgamma[ch];
        dbeta[ch] = T::from_f64(sum_dy) + dbeta[ch];
    }
}
