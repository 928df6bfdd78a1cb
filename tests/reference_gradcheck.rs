//! Every backward of the CPU reference against central finite differences, in f64.
//!
//! Each check builds a scalar loss L = Σ r ⊙ y (r a fixed random tensor, y the op's output),
//! so the backward is fed dy = r and every output element matters. The numerical gradient is
//! (L(θ + h) − L(θ − h)) / 2h with h = 1e-6.
//!
//! Error measure: max_i |analytic_i − numeric_i| / max_i |numeric_i| (the error relative to the
//! gradient's own scale, so that entries that are truly ~0 do not divide by ~0).
//! Tolerance 1e-7: central differences have truncation error ~h²·|L'''| ≈ 1e-12 and rounding
//! error ~ε·|L|/h ≈ 2e-16·|L|/1e-6 ≈ 1e-9 for the |L| ≲ 10 used here. Linear ops (conv,
//! matmul, maxpool with a fixed argmax) have no truncation error at all. A wrong gradient is
//! off by O(1) in relative terms; `checker_rejects_a_slightly_wrong_gradient` shows the check
//! catches even a 1e-4 relative error.

use wgsl_cnn::reference::{activation, avgpool, batchnorm, conv2d, matmul, maxpool, reduce};
use wgsl_cnn::rng::Rng;
use wgsl_cnn::shapes::{Activation, BatchNormShape, Conv2dShape, MatmulShape, PoolShape};

const H: f64 = 1e-6;
const TOL: f64 = 1e-7;

fn rand(rng: &mut Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Central-difference gradient of `loss` at `theta`.
fn numeric_grad(theta: &[f64], loss: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut t = theta.to_vec();
    (0..theta.len())
        .map(|i| {
            t[i] = theta[i] + H;
            let up = loss(&t);
            t[i] = theta[i] - H;
            let down = loss(&t);
            t[i] = theta[i];
            (up - down) / (2.0 * H)
        })
        .collect()
}

/// max |a − n| / max |n|, with the scale required to be non-zero so that the check is not vacuous.
fn scaled_error(analytic: &[f64], numeric: &[f64]) -> f64 {
    assert_eq!(analytic.len(), numeric.len());
    let scale = numeric.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 1e-3, "numeric gradient is ~0 everywhere (scale {scale:e}): the check would be vacuous");
    let err = analytic.iter().zip(numeric).fold(0.0f64, |m, (a, n)| m.max((a - n).abs()));
    err / scale
}

fn assert_grad(what: &str, analytic: &[f64], numeric: &[f64]) {
    let e = scaled_error(analytic, numeric);
    println!("{what}: scaled error {e:.2e}");
    assert!(e <= TOL, "{what}: scaled error {e:e} > {TOL:e}\nanalytic {analytic:?}\nnumeric  {numeric:?}");
}

#[test]
fn checker_rejects_a_slightly_wrong_gradient() {
    // L = Σ sin(θ_i)·i; a gradient off by 1e-4 relative must fail the check.
    let theta: Vec<f64> = (0..5).map(|i| 0.3 * i as f64).collect();
    let loss = |t: &[f64]| t.iter().enumerate().map(|(i, v)| v.sin() * (i + 1) as f64).sum::<f64>();
    let right: Vec<f64> = theta.iter().enumerate().map(|(i, v)| v.cos() * (i + 1) as f64).collect();
    let numeric = numeric_grad(&theta, loss);
    assert!(scaled_error(&right, &numeric) <= TOL);
    let wrong: Vec<f64> = right.iter().map(|g| g * (1.0 + 1e-4)).collect();
    assert!(scaled_error(&wrong, &numeric) > TOL);
}

fn conv_shapes() -> Vec<Conv2dShape> {
    let s = |n, c_in, h, w, c_out, k, stride, pad| Conv2dShape { n, c_in, h, w, c_out, k, stride, pad };
    vec![
        s(2, 3, 7, 6, 4, 3, 1, 0), // odd sizes, batch > 1
        s(3, 2, 9, 8, 3, 3, 2, 1), // stride 2, pad 1
        s(2, 2, 7, 7, 2, 2, 2, 0), // stride 2 leaves the last row/column unread
        s(1, 1, 6, 5, 2, 5, 1, 2), // the seed's 5×5 kernel, pad 2, batch 1
        s(2, 3, 8, 7, 2, 5, 3, 2), // stride 3, pad 2
    ]
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    let mut rng = Rng::new(11);
    for s in conv_shapes() {
        let x = rand(&mut rng, s.x_len());
        let w = rand(&mut rng, s.w_len());
        let b = rand(&mut rng, s.c_out);
        let r = rand(&mut rng, s.y_len());
        let loss = |x: &[f64], w: &[f64], b: &[f64]| {
            let mut y = vec![0.0; s.y_len()];
            conv2d::forward(&s, x, w, b, &mut y);
            dot(&r, &y)
        };
        // dx is overwritten; dw and db accumulate, so they start at zero.
        let mut dx = vec![f64::NAN; s.x_len()];
        let mut dw = vec![0.0; s.w_len()];
        let mut db = vec![0.0; s.c_out];
        conv2d::grad_input(&s, &r, &w, &mut dx);
        conv2d::grad_weight(&s, &x, &r, &mut dw);
        conv2d::grad_bias(&s, &r, &mut db);
        assert_grad(&format!("conv2d dx {s:?}"), &dx, &numeric_grad(&x, |x| loss(x, &w, &b)));
        assert_grad(&format!("conv2d dw {s:?}"), &dw, &numeric_grad(&w, |w| loss(&x, w, &b)));
        assert_grad(&format!("conv2d db {s:?}"), &db, &numeric_grad(&b, |b| loss(&x, &w, b)));
    }
}

#[test]
fn maxpool_backward_matches_finite_differences() {
    let mut rng = Rng::new(12);
    let shapes = [
        PoolShape { n: 2, c: 3, h: 6, w: 8, k: 2, stride: 2 },
        PoolShape { n: 1, c: 2, h: 7, w: 5, k: 2, stride: 2 }, // odd: last row/column belong to no window
        PoolShape { n: 3, c: 1, h: 9, w: 7, k: 3, stride: 3 },
        PoolShape { n: 2, c: 2, h: 9, w: 8, k: 3, stride: 2 }, // overlapping windows
        PoolShape { n: 1, c: 3, h: 6, w: 7, k: 2, stride: 1 }, // every inner input in 4 windows
        PoolShape { n: 2, c: 1, h: 9, w: 10, k: 2, stride: 3 }, // gaps between windows
    ];
    // With the fused ReLU (forward_fused), the same backward must be that of pool then ReLU.
    for (s, relu) in shapes.iter().flat_map(|&s| [(s, false), (s, true)]) {
        // Distinct values 1/len apart (shuffled), so no window has a tie within ±h; with the
        // ReLU, centred on 0 but none within 0.5/len of it (the ReLU's kink).
        let len = s.x_len();
        // (a whole number of steps, so that no value lands within 0.5/len of 0; larger
        // windows of the new shapes need more below 0 for the ReLU to zero some)
        let below = if s.disjoint() { 0.5 } else { 0.85 };
        let shift = if relu { (below * len as f64).round() / len as f64 } else { 0.0 };
        let mut x: Vec<f64> = (0..len).map(|i| (i as f64 + 0.5) / len as f64 - shift).collect();
        rng.shuffle(&mut x);
        let r = rand(&mut rng, s.y_len());
        let loss = |x: &[f64]| {
            let (mut y, mut am) = (vec![0.0; s.y_len()], vec![0u32; s.y_len()]);
            maxpool::forward_fused(&s, relu, x, &mut y, &mut am);
            dot(&r, &y)
        };
        let (mut y, mut am) = (vec![0.0; s.y_len()], vec![0u32; s.y_len()]);
        maxpool::forward_fused(&s, relu, &x, &mut y, &mut am);
        if relu {
            assert!(am.contains(&maxpool::NO_ARGMAX), "{s:?}: the ReLU zeroed no window");
        }
        let mut dx = vec![f64::NAN; len];
        maxpool::backward(&s, &r, &am, &mut dx);
        assert_grad(&format!("maxpool dx {s:?} relu {relu}"), &dx, &numeric_grad(&x, loss));
    }
}

#[test]
fn batchnorm_backward_matches_finite_differences() {
    let mut rng = Rng::new(13);
    let shapes = [
        BatchNormShape { n: 3, c: 2, hw: 5 },
        BatchNormShape { n: 1, c: 3, hw: 7 },
        BatchNormShape { n: 4, c: 1, hw: 1 },
        BatchNormShape { n: 2, c: 4, hw: 9 },
    ];
    for s in shapes {
        // Shift and scale x away from N(0, 1) so that the mean and variance paths both matter.
        let x: Vec<f64> = (0..s.len()).map(|_| 0.7 + 2.5 * rng.uniform(-1.0, 1.0)).collect();
        let gamma: Vec<f64> = (0..s.c).map(|_| rng.uniform(0.5, 1.5)).collect();
        let beta = rand(&mut rng, s.c);
        let r = rand(&mut rng, s.len());
        // Training forward: the statistics are recomputed from the perturbed x.
        let loss = |x: &[f64], gamma: &[f64], beta: &[f64]| {
            let (mut mean, mut var, mut y) = (vec![0.0; s.c], vec![0.0; s.c], vec![0.0; s.len()]);
            batchnorm::stats(&s, x, &mut mean, &mut var);
            batchnorm::normalize(&s, x, &mean, &var, gamma, beta, &mut y);
            dot(&r, &y)
        };
        let (mut mean, mut var) = (vec![0.0; s.c], vec![0.0; s.c]);
        batchnorm::stats(&s, &x, &mut mean, &mut var);
        // dx is overwritten (NaN-poisoned); dgamma, dbeta accumulate, so they start at 0.
        let (mut dx, mut dgamma, mut dbeta) = (vec![f64::NAN; s.len()], vec![0.0; s.c], vec![0.0; s.c]);
        batchnorm::backward(&s, &x, &r, &mean, &var, &gamma, &mut dx, &mut dgamma, &mut dbeta);
        assert_grad(&format!("batchnorm dx {s:?}"), &dx, &numeric_grad(&x, |x| loss(x, &gamma, &beta)));
        assert_grad(&format!("batchnorm dgamma {s:?}"), &dgamma, &numeric_grad(&gamma, |g| loss(&x, g, &beta)));
        assert_grad(&format!("batchnorm dbeta {s:?}"), &dbeta, &numeric_grad(&beta, |b| loss(&x, &gamma, b)));
    }
}

/// The gradients of L = Σ r ⊙ C for C = op(A)·op(B) + bias, written as matmuls — the same
/// identities a Linear layer's backward uses: d op(A) = R·op(B)ᵀ, d op(B) = op(A)ᵀ·R,
/// dbias = column sums of R. Each is produced in A's / B's *storage* layout.
fn matmul_grads(s: &MatmulShape, a: &[f64], b: &[f64], r: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (m, n, k) = (s.m, s.n, s.k);
    let mut da = vec![f64::NAN; m * k];
    if s.trans_a {
        // A stored [k, m]: dA = op(B)·Rᵀ.
        let g = MatmulShape { m: k, n: m, k: n, trans_a: s.trans_b, trans_b: true, accumulate: false };
        matmul::matmul(&g, b, r, None, &mut da);
    } else {
        // A stored [m, k]: dA = R·op(B)ᵀ.
        let g = MatmulShape { m, n: k, k: n, trans_a: false, trans_b: !s.trans_b, accumulate: false };
        matmul::matmul(&g, r, b, None, &mut da);
    }
    let mut db = vec![f64::NAN; k * n];
    if s.trans_b {
        // B stored [n, k]: dB = Rᵀ·op(A).
        let g = MatmulShape { m: n, n: k, k: m, trans_a: true, trans_b: s.trans_a, accumulate: false };
        matmul::matmul(&g, r, a, None, &mut db);
    } else {
        // B stored [k, n]: dB = op(A)ᵀ·R.
        let g = MatmulShape { m: k, n, k: m, trans_a: !s.trans_a, trans_b: false, accumulate: false };
        matmul::matmul(&g, a, r, None, &mut db);
    }
    let mut dbias = vec![0.0; n]; // sum_rows accumulates
    reduce::sum_rows(m, n, r, &mut dbias);
    (da, db, dbias)
}

#[test]
fn matmul_gradients_match_finite_differences() {
    let mut rng = Rng::new(14);
    for (m, n, k) in [(5, 7, 3), (1, 4, 6), (6, 1, 5), (4, 3, 1)] {
        for trans_a in [false, true] {
            for trans_b in [false, true] {
                let s = MatmulShape { m, n, k, trans_a, trans_b, accumulate: false };
                let a = rand(&mut rng, m * k);
                let b = rand(&mut rng, k * n);
                let bias = rand(&mut rng, n);
                let r = rand(&mut rng, m * n);
                let loss = |a: &[f64], b: &[f64], bias: &[f64]| {
                    let mut c = vec![0.0; m * n];
                    matmul::matmul(&s, a, b, Some(bias), &mut c);
                    dot(&r, &c)
                };
                let (da, db, dbias) = matmul_grads(&s, &a, &b, &r);
                assert_grad(&format!("matmul dA {s:?}"), &da, &numeric_grad(&a, |a| loss(a, &b, &bias)));
                assert_grad(&format!("matmul dB {s:?}"), &db, &numeric_grad(&b, |b| loss(&a, b, &bias)));
                assert_grad(&format!("matmul dbias {s:?}"), &dbias, &numeric_grad(&bias, |v| loss(&a, &b, v)));
            }
        }
    }
}

#[test]
fn avgpool_backward_matches_finite_differences() {
    let mut rng = Rng::new(16);
    let shapes = [
        PoolShape { n: 2, c: 3, h: 6, w: 8, k: 2, stride: 2 },
        PoolShape { n: 1, c: 2, h: 7, w: 5, k: 2, stride: 2 }, // last row/column in no window
        PoolShape { n: 2, c: 2, h: 9, w: 8, k: 3, stride: 2 }, // overlapping windows
        PoolShape { n: 1, c: 1, h: 6, w: 7, k: 2, stride: 1 },
        PoolShape { n: 2, c: 1, h: 9, w: 10, k: 2, stride: 3 }, // gaps
    ];
    for s in shapes {
        let x = rand(&mut rng, s.x_len());
        let r = rand(&mut rng, s.y_len());
        let loss = |x: &[f64]| {
            let mut y = vec![0.0; s.y_len()];
            avgpool::forward(&s, x, &mut y);
            dot(&r, &y)
        };
        let mut dx = vec![f64::NAN; s.x_len()];
        avgpool::backward(&s, &r, &mut dx);
        assert_grad(&format!("avgpool dx {s:?}"), &dx, &numeric_grad(&x, loss));
    }
}

#[test]
fn tanh_and_sigmoid_backward_match_finite_differences() {
    let mut rng = Rng::new(17);
    for f in [Activation::Tanh, Activation::Sigmoid] {
        let x: Vec<f64> = (0..40).map(|_| rng.uniform(-4.0, 4.0)).collect();
        let r = rand(&mut rng, x.len());
        let loss = |x: &[f64]| {
            let mut y = vec![0.0; x.len()];
            activation::forward(f, x, &mut y);
            dot(&r, &y)
        };
        let mut y = vec![0.0; x.len()];
        activation::forward(f, &x, &mut y);
        let mut dx = vec![f64::NAN; x.len()];
        activation::backward(f, &y, &r, &mut dx);
        assert_grad(&format!("{f:?} dx"), &dx, &numeric_grad(&x, loss));
    }
}

#[test]
fn relu_backward_matches_finite_differences() {
    let mut rng = Rng::new(15);
    // Keep |x| ≥ 0.01 ≫ h so that no element crosses the kink during differencing.
    let x: Vec<f64> = (0..40)
        .map(|_| {
            let v = rng.uniform(0.01, 1.0);
            if rng.below(2) == 0 { v } else { -v }
        })
        .collect();
    let r = rand(&mut rng, x.len());
    let loss = |x: &[f64]| {
        let mut y = vec![0.0; x.len()];
        activation::relu_forward(x, &mut y);
        dot(&r, &y)
    };
    let mut y = vec![0.0; x.len()];
    activation::relu_forward(&x, &mut y);
    let mut dx = vec![f64::NAN; x.len()];
    activation::relu_backward(&y, &r, &mut dx);
    assert!(x.iter().any(|&v| v < 0.0) && x.iter().any(|&v| v > 0.0), "both signs present");
    assert_grad("relu dx", &dx, &numeric_grad(&x, loss));
}

#[test]
fn softmax_cross_entropy_gradient_matches_finite_differences() {
    let mut rng = Rng::new(16);
    for (n, classes) in [(4, 7), (1, 10), (5, 2), (3, 10)] {
        let logits: Vec<f64> = (0..n * classes).map(|_| rng.uniform(-3.0, 3.0)).collect();
        let labels: Vec<u32> = (0..n).map(|_| rng.below(classes) as u32).collect();
        let loss = |l: &[f64]| {
            let mut d = vec![0.0; l.len()];
            reduce::softmax_cross_entropy(n, classes, l, &labels, &mut d)
        };
        let mut dlogits = vec![f64::NAN; n * classes];
        reduce::softmax_cross_entropy(n, classes, &logits, &labels, &mut dlogits);
        assert_grad(&format!("softmax_cross_entropy n={n} classes={classes}"), &dlogits, &numeric_grad(&logits, loss));
    }
}
