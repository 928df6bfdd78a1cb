//! The CPU reference against values worked out by hand (the arithmetic is in the comments),
//! plus two independent re-derivations (conv2d as im2col + matmul; matmul transposes as
//! explicitly transposed storage) and the `Cpu` backend against the free functions.

use wgsl_cnn::backend::{Backend, Fused, Op};
use wgsl_cnn::reference::{activation, adam, batchnorm, conv2d, gather, matmul, maxpool, reduce, sgd, Cpu};
use wgsl_cnn::rng::Rng;
use wgsl_cnn::shapes::{AdamConfig, BatchNormShape, Conv2dShape, MatmulShape, PoolShape, SgdConfig, BN_EPS};

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: got {g}, want {w} (tol {tol:e})\n got  {got:?}\n want {want:?}");
    }
}

/// x = [[1,2,3],[4,5,6],[7,8,9]] (one image, one channel), w = [[1,2],[3,4]], b = 0.5.
fn tiny_conv(stride: usize, pad: usize) -> (Conv2dShape, Vec<f64>, Vec<f64>, Vec<f64>) {
    let s = Conv2dShape { n: 1, c_in: 1, h: 3, w: 3, c_out: 1, k: 2, stride, pad };
    let x = (1..=9).map(f64::from).collect();
    (s, x, vec![1.0, 2.0, 3.0, 4.0], vec![0.5])
}

#[test]
fn conv2d_tiny_by_hand() {
    // Stride 1, no pad: y[oy][ox] = Σ w[ky][kx]·x[oy+ky][ox+kx] + 0.5
    //   y00 = 1·1 + 2·2 + 3·4 + 4·5 = 37   y01 = 1·2 + 2·3 + 3·5 + 4·6 = 47
    //   y10 = 1·4 + 2·5 + 3·7 + 4·8 = 67   y11 = 1·5 + 2·6 + 3·8 + 4·9 = 77
    let (s, x, w, b) = tiny_conv(1, 0);
    let mut y = vec![f64::NAN; 4];
    conv2d::forward(&s, &x, &w, &b, &mut y);
    assert_close("conv y", &y, &[37.5, 47.5, 67.5, 77.5], 0.0);

    // With dy = 1 everywhere: dx[i][j] = Σ of the taps that touch (i, j);
    //   dx = [[1, 1+2, 2], [1+3, 1+2+3+4, 2+4], [3, 3+4, 4]]
    // dw[ky][kx] = Σ x over the 2×2 block at (ky, kx): 1+2+4+5, 2+3+5+6, 4+5+7+8, 5+6+8+9; db = 4.
    // dx is overwritten (poisoned first); dw and db accumulate, so they start at zero.
    let dy = vec![1.0; 4];
    let (mut dx, mut dw, mut db) = (vec![f64::NAN; 9], vec![0.0; 4], vec![0.0; 1]);
    conv2d::grad_input(&s, &dy, &w, &mut dx);
    conv2d::grad_weight(&s, &x, &dy, &mut dw);
    conv2d::grad_bias(&s, &dy, &mut db);
    assert_close("conv dx", &dx, &[1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0], 0.0);
    assert_close("conv dw", &dw, &[12.0, 16.0, 24.0, 28.0], 0.0);
    assert_close("conv db", &db, &[4.0], 0.0);
    // A second use with dy = 2 adds twice as much again: dw = 3·(12, 16, 24, 28), db = 3·4.
    conv2d::grad_weight(&s, &x, &[2.0; 4], &mut dw);
    conv2d::grad_bias(&s, &[2.0; 4], &mut db);
    assert_close("conv dw accumulated", &dw, &[36.0, 48.0, 72.0, 84.0], 0.0);
    assert_close("conv db accumulated", &db, &[12.0], 0.0);

    // Stride 2, pad 1: h_out = (3 + 2 − 2)/2 + 1 = 2; output (oy, ox) reads input rows
    // 2·oy + ky − 1 and columns 2·ox + kx − 1, skipping −1 (padding).
    //   y00 = w11·x00 = 4·1 = 4            y01 = w10·x01 + w11·x02 = 3·2 + 4·3 = 18
    //   y10 = w01·x10 + w11·x20 = 2·4 + 4·7 = 36
    //   y11 = w00·x11 + w01·x12 + w10·x21 + w11·x22 = 5 + 12 + 24 + 36 = 77
    let (s, x, w, b) = tiny_conv(2, 1);
    assert_eq!((s.h_out(), s.w_out()), (2, 2));
    let mut y = vec![f64::NAN; 4];
    conv2d::forward(&s, &x, &w, &b, &mut y);
    assert_close("conv stride 2 pad 1 y", &y, &[4.5, 18.5, 36.5, 77.5], 0.0);
}

/// Conv2d forward equals an independently written im2col followed by a matmul.
#[test]
fn conv2d_forward_equals_im2col_matmul() {
    let mut rng = Rng::new(21);
    let shapes = [
        Conv2dShape { n: 2, c_in: 3, h: 9, w: 7, c_out: 4, k: 3, stride: 2, pad: 1 },
        Conv2dShape { n: 3, c_in: 1, h: 12, w: 12, c_out: 5, k: 5, stride: 1, pad: 0 },
        Conv2dShape { n: 1, c_in: 2, h: 6, w: 5, c_out: 3, k: 4, stride: 3, pad: 2 },
    ];
    for s in shapes {
        let x: Vec<f64> = (0..s.x_len()).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let w: Vec<f64> = (0..s.w_len()).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let b: Vec<f64> = (0..s.c_out).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let (ho, wo, k) = (s.h_out() as isize, s.w_out() as isize, s.k as isize);
        let taps = s.c_in * s.k * s.k;
        let mut y = vec![f64::NAN; s.y_len()];
        conv2d::forward(&s, &x, &w, &b, &mut y);
        for n in 0..s.n {
            // cols [ho·wo, c_in·k·k]: row p holds the (zero-padded) patch seen by output pixel p.
            let mut cols = vec![0.0; (ho * wo) as usize * taps];
            for oy in 0..ho {
                for ox in 0..wo {
                    for ci in 0..s.c_in as isize {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = oy * s.stride as isize + ky - s.pad as isize;
                                let ix = ox * s.stride as isize + kx - s.pad as isize;
                                let inside = iy >= 0 && ix >= 0 && iy < s.h as isize && ix < s.w as isize;
                                let v = if inside {
                                    x[(((n as isize * s.c_in as isize + ci) * s.h as isize + iy) * s.w as isize + ix) as usize]
                                } else {
                                    0.0
                                };
                                cols[((oy * wo + ox) as usize) * taps + ((ci * k + ky) * k + kx) as usize] = v;
                            }
                        }
                    }
                }
            }
            // [ho·wo, c_out] = cols · wᵀ + b, then transpose into y[n] = [c_out, ho·wo].
            let ms = MatmulShape { m: (ho * wo) as usize, n: s.c_out, k: taps, trans_a: false, trans_b: true, accumulate: false };
            let mut c = vec![f64::NAN; ms.m * ms.n];
            matmul::matmul(&ms, &cols, &w, Some(&b), &mut c);
            for p in 0..ms.m {
                for co in 0..s.c_out {
                    let got = y[(n * s.c_out + co) * ms.m + p];
                    let want = c[p * s.c_out + co];
                    assert!((got - want).abs() <= 1e-12, "{s:?} n={n} co={co} p={p}: conv {got} vs im2col {want}");
                }
            }
        }
    }
}

#[test]
fn matmul_by_hand_and_every_transpose_agrees() {
    // [[1,2],[3,4]]·[[5,6],[7,8]] = [[1·5+2·7, 1·6+2·8], [3·5+4·7, 3·6+4·8]] = [[19,22],[43,50]];
    // + bias [1, −1] on every row.
    let s = MatmulShape { m: 2, n: 2, k: 2, trans_a: false, trans_b: false, accumulate: false };
    let mut c = vec![f64::NAN; 4];
    matmul::matmul(&s, &[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0], None, &mut c);
    assert_close("matmul", &c, &[19.0, 22.0, 43.0, 50.0], 0.0);
    matmul::matmul(&s, &[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0], Some(&[1.0, -1.0]), &mut c);
    assert_close("matmul + bias", &c, &[20.0, 21.0, 44.0, 49.0], 0.0);

    // A non-square case: each transpose flag must read the transposed storage.
    let (m, n, k) = (3, 4, 5);
    let mut rng = Rng::new(22);
    let a: Vec<f64> = (0..m * k).map(|_| rng.uniform(-1.0, 1.0)).collect(); // [m, k]
    let b: Vec<f64> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect(); // [k, n]
    let transpose = |v: &[f64], rows: usize, cols: usize| -> Vec<f64> {
        (0..rows * cols).map(|i| v[(i % rows) * cols + i / rows]).collect()
    };
    let (at, bt) = (transpose(&a, m, k), transpose(&b, k, n)); // [k, m], [n, k]
    let mut want = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            want[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let s = MatmulShape { m, n, k, trans_a: ta, trans_b: tb, accumulate: false };
        let mut c = vec![f64::NAN; m * n];
        matmul::matmul(&s, if ta { &at } else { &a }, if tb { &bt } else { &b }, None, &mut c);
        assert_close(&format!("matmul trans_a={ta} trans_b={tb}"), &c, &want, 1e-14);
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// With `accumulate`, matmul adds its contribution rounded to f32: into zeros it equals the
/// overwriting product bit for bit, and two uses add up to the sum of the two products
/// (c0 + p1 + p2, each rounded as f32 arithmetic rounds it).
#[test]
fn matmul_accumulate_adds_the_rounded_contribution() {
    let mut rng = Rng::new(24);
    for (m, n, k) in [(3, 4, 5), (1, 7, 2), (6, 1, 9), (5, 5, 1)] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for with_bias in [false, true] {
                let over = MatmulShape { m, n, k, trans_a: ta, trans_b: tb, accumulate: false };
                let acc = MatmulShape { accumulate: true, ..over };
                let what = format!("{over:?} bias={with_bias}");
                let (a1, b1) = (rng.uniform_vec(m * k, -1.0, 1.0), rng.uniform_vec(k * n, -1.0, 1.0));
                let (a2, b2) = (rng.uniform_vec(m * k, -1.0, 1.0), rng.uniform_vec(k * n, -1.0, 1.0));
                let bias = rng.uniform_vec(n, -1.0, 1.0);
                let bias = with_bias.then_some(&bias[..]);
                let c0 = rng.uniform_vec(m * n, -1.0, 1.0);
                let (mut p1, mut p2) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
                matmul::matmul(&over, &a1, &b1, bias, &mut p1);
                matmul::matmul(&over, &a2, &b2, bias, &mut p2);

                let mut z = vec![0.0f32; m * n];
                matmul::matmul(&acc, &a1, &b1, bias, &mut z);
                assert_eq!(bits(&z), bits(&p1), "{what}: accumulating into zeros differs from overwriting");

                let mut c = c0.clone();
                matmul::matmul(&acc, &a1, &b1, bias, &mut c);
                matmul::matmul(&acc, &a2, &b2, bias, &mut c);
                let want: Vec<f32> = (0..m * n).map(|i| c0[i] + p1[i] + p2[i]).collect();
                assert_eq!(bits(&c), bits(&want), "{what}: two accumulations differ from c0 + p1 + p2");
            }
        }
    }
}

/// The conv weight and bias gradients always accumulate, in the same way: into zeros they
/// give the gradient alone, and two uses (say, one weight applied twice) add up to the sum
/// of the two gradients taken separately, bit for bit.
#[test]
fn conv2d_parameter_gradients_accumulate() {
    let mut rng = Rng::new(25);
    let shapes = [
        Conv2dShape { n: 2, c_in: 3, h: 9, w: 7, c_out: 4, k: 3, stride: 2, pad: 1 },
        Conv2dShape { n: 3, c_in: 1, h: 12, w: 12, c_out: 5, k: 5, stride: 1, pad: 0 },
    ];
    for s in shapes {
        let (x1, x2) = (rng.uniform_vec(s.x_len(), -1.0, 1.0), rng.uniform_vec(s.x_len(), -1.0, 1.0));
        let (dy1, dy2) = (rng.uniform_vec(s.y_len(), -1.0, 1.0), rng.uniform_vec(s.y_len(), -1.0, 1.0));
        let (dw0, db0) = (rng.uniform_vec(s.w_len(), -1.0, 1.0), rng.uniform_vec(s.c_out, -1.0, 1.0));
        let grads = |x: &[f32], dy: &[f32], dw: &mut [f32], db: &mut [f32]| {
            conv2d::grad_weight(&s, x, dy, dw);
            conv2d::grad_bias(&s, dy, db);
        };
        let (mut w1, mut b1) = (vec![0.0f32; s.w_len()], vec![0.0f32; s.c_out]);
        let (mut w2, mut b2) = (vec![0.0f32; s.w_len()], vec![0.0f32; s.c_out]);
        grads(&x1, &dy1, &mut w1, &mut b1);
        grads(&x2, &dy2, &mut w2, &mut b2);
        // Into zeros: the f64 sums rounded once, as an independent f64 run rounded to f32 gives.
        let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let (mut w64, mut b64) = (vec![0.0f64; s.w_len()], vec![0.0f64; s.c_out]);
        conv2d::grad_weight(&s, &f64s(&x1), &f64s(&dy1), &mut w64);
        conv2d::grad_bias(&s, &f64s(&dy1), &mut b64);
        assert_eq!(bits(&w1), bits(&w64.iter().map(|&v| v as f32).collect::<Vec<_>>()), "{s:?}: dw into zeros");
        assert_eq!(bits(&b1), bits(&b64.iter().map(|&v| v as f32).collect::<Vec<_>>()), "{s:?}: db into zeros");

        let (mut dw, mut db) = (dw0.clone(), db0.clone());
        grads(&x1, &dy1, &mut dw, &mut db);
        grads(&x2, &dy2, &mut dw, &mut db);
        let want_w: Vec<f32> = (0..s.w_len()).map(|i| dw0[i] + w1[i] + w2[i]).collect();
        let want_b: Vec<f32> = (0..s.c_out).map(|i| db0[i] + b1[i] + b2[i]).collect();
        assert_eq!(bits(&dw), bits(&want_w), "{s:?}: dw after two uses");
        assert_eq!(bits(&db), bits(&want_b), "{s:?}: db after two uses");
    }
}

#[test]
fn maxpool_ties_go_to_the_first_max() {
    // x is one 3×4 plane, k = 2: two windows; the third row belongs to no window (floor).
    //   window 0 = rows 0–1, cols 0–1 = [5, 5 / 5, 1]  → first 5 at (0,0): index 0
    //   window 1 = rows 0–1, cols 2–3 = [0, 3 / 3, 3]  → first 3 at (0,3): index 3
    let s = PoolShape { n: 1, c: 1, h: 3, w: 4, k: 2, stride: 2 };
    let x = [5.0, 5.0, 0.0, 3.0, 5.0, 1.0, 3.0, 3.0, 9.0, 9.0, 9.0, 9.0];
    let (mut y, mut am) = (vec![f64::NAN; 2], vec![u32::MAX; 2]);
    maxpool::forward(&s, &x, &mut y, &mut am);
    assert_eq!(am, [0, 3]);
    assert_close("pool y", &y, &[5.0, 3.0], 0.0);
    // Backward routes dy to the argmax and writes zeros everywhere else (dx poisoned first).
    let mut dx = vec![f64::NAN; 12];
    maxpool::backward(&s, &[10.0, 20.0], &am, &mut dx);
    assert_close("pool dx", &dx, &[10.0, 0.0, 0.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], 0.0);

    // Second plane and batch: the argmax is plane-relative. Planes [1,2/3,4] and [4,3/2,1] (k = 2).
    let s = PoolShape { n: 2, c: 1, h: 2, w: 2, k: 2, stride: 2 };
    let (mut y, mut am) = (vec![f64::NAN; 2], vec![u32::MAX; 2]);
    maxpool::forward(&s, &[1.0, 2.0, 3.0, 4.0, 4.0, 3.0, 2.0, 1.0], &mut y, &mut am);
    assert_eq!(am, [3, 0]);
    assert_close("pool y batch", &y, &[4.0, 4.0], 0.0);

    // A NaN anywhere in a window wins (PyTorch's CPU kernel), so divergence stays visible.
    let (mut y, mut am) = (vec![0.0; 2], vec![u32::MAX; 2]);
    maxpool::forward(&s, &[1.0, f64::NAN, 3.0, 4.0, f64::NAN, 3.0, 2.0, 1.0], &mut y, &mut am);
    assert!(y[0].is_nan() && y[1].is_nan(), "pool NaN: {y:?}");
    assert_eq!(am, [1, 0]);
}

#[test]
fn maxpool_with_relu_is_pool_then_relu() {
    // Planes 2×4, k = 2 (two windows each), over edge cases: a negative window, a window
    // whose max is −0.0, one whose max is 0 on a tie, a NaN window, positive ties.
    let s = PoolShape { n: 2, c: 1, h: 2, w: 4, k: 2, stride: 2 };
    let nan = f64::NAN;
    let x = [-3.0, -1.0, -0.0, 0.0, -2.0, -5.0, -4.0, 0.0, /* plane 2 */ 2.0, nan, 1.0, 1.0, -1.0, 7.0, 0.5, 1.0];
    let dy = [10.0, 20.0, 30.0, nan];
    // The composition: pool, ReLU, ReLU backward, pool backward.
    let (mut p, mut am) = (vec![0.0; 4], vec![0u32; 4]);
    maxpool::forward(&s, &x, &mut p, &mut am);
    let mut want_y = vec![0.0; 4];
    activation::relu_forward(&p, &mut want_y);
    let mut dp = vec![0.0; 4];
    activation::relu_backward(&want_y, &dy, &mut dp);
    let mut want_dx = vec![nan; 16];
    maxpool::backward(&s, &dp, &am, &mut want_dx);
    // The fused one: its argmax carries the ReLU's backward.
    let (mut y, mut fam) = (vec![nan; 4], vec![0u32; 4]);
    maxpool::forward_fused(&s, true, &x, &mut y, &mut fam);
    let mut dx = vec![nan; 16];
    maxpool::backward(&s, &dy, &fam, &mut dx);
    assert_eq!(fam, [maxpool::NO_ARGMAX, maxpool::NO_ARGMAX, 1, 2]);
    assert!(y[0] == 0.0 && y[1] == 0.0 && y[1].is_sign_positive() && y[2].is_nan() && y[3] == 1.0, "{y:?}");
    for (i, (g, w)) in dx.iter().zip(&want_dx).enumerate() {
        assert!(g == w || (g.is_nan() && w.is_nan()), "dx[{i}]: fused {g}, composed {w}");
    }
    // The NaN window's gradient flows to the NaN; the zeroed windows get nothing even
    // where dy is NaN.
    assert_eq!(dx[9], 30.0);
    assert!(dx[10].is_nan());
}

#[test]
fn batchnorm_stats_normalize_and_running_by_hand() {
    // x [n=2, c=2, hw=2]: channel 0 holds {1, 2, 3, 6}, channel 1 holds {10, 10, 10, 14}.
    let s = BatchNormShape { n: 2, c: 2, hw: 2 };
    let x = [1.0, 2.0, 10.0, 10.0, 3.0, 6.0, 10.0, 14.0];
    // ch0: mean 12/4 = 3, biased var (4 + 1 + 0 + 9)/4 = 3.5, unbiased 14/3
    // ch1: mean 44/4 = 11, biased var (1 + 1 + 1 + 9)/4 = 3, unbiased 12/3 = 4
    let (mut mean, mut var) = (vec![f64::NAN; 2], vec![f64::NAN; 2]);
    batchnorm::stats(&s, &x, &mut mean, &mut var);
    assert_close("bn mean", &mean, &[3.0, 11.0], 1e-15);
    assert_close("bn var", &var, &[3.5, 3.0], 1e-15);

    // running starts at mean 0, var 1; momentum 0.1:
    //   running_mean = 0.9·0 + 0.1·[3, 11] = [0.3, 1.1]
    //   running_var  = 0.9·1 + 0.1·[14/3, 4] = [0.9 + 0.4666…, 1.3]
    let (mut rm, mut rv) = (vec![0.0; 2], vec![1.0; 2]);
    batchnorm::update_running(&s, &mean, &var, &mut rm, &mut rv);
    assert_close("bn running_mean", &rm, &[0.3, 1.1], 1e-15);
    assert_close("bn running_var", &rv, &[0.9 + 1.4 / 3.0, 1.3], 1e-15);

    // y = (x − mean)/√(var + 1e-5)·gamma + beta with gamma [2, 0.5], beta [1, −1]:
    //   x = 6 (ch0): 3/√3.50001·2 + 1;  x = 14 (ch1): 3/√3.00001·0.5 − 1;  x = 3 (ch0): 0·2 + 1 = 1
    let mut y = vec![f64::NAN; 8];
    batchnorm::normalize(&s, &x, &mean, &var, &[2.0, 0.5], &[1.0, -1.0], &mut y);
    let eps = 1e-5f64;
    assert_eq!(BN_EPS, 1e-5);
    assert!((y[5] - (3.0 / (3.5 + eps).sqrt() * 2.0 + 1.0)).abs() < 1e-14, "y[5] = {}", y[5]);
    assert!((y[7] - (3.0 / (3.0 + eps).sqrt() * 0.5 - 1.0)).abs() < 1e-14, "y[7] = {}", y[7]);
    assert_eq!(y[4], 1.0);
    // Normalised output of each channel has mean beta and (biased) variance ≈ gamma²·var/(var + eps).
    let ch0 = [y[0], y[1], y[4], y[5]];
    assert!((ch0.iter().sum::<f64>() / 4.0 - 1.0).abs() < 1e-14);
}

#[test]
fn sgd_two_steps_on_a_scalar_by_hand() {
    // Nesterov: p = 1, grads 0.5 then −0.25, lr 0.1, μ 0.9, wd 0.01 (torch.optim.SGD's order).
    // Step 1: d = 0.5 + 0.01·1 = 0.51; b = d = 0.51 (the first step clones d);
    //   d = 0.51 + 0.9·0.51 = 0.969; p = 1 − 0.1·0.969 = 0.9031
    // Step 2: d = −0.25 + 0.01·0.9031 = −0.240969; b = 0.9·0.51 + 1·(−0.240969) = 0.218031;
    //   d = −0.240969 + 0.9·0.218031 = −0.0447411; p = 0.9031 + 0.00447411 = 0.90757411
    let cfg = SgdConfig { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.01, ..SgdConfig::default() };
    let (mut p, mut b) = (vec![1.0f64], vec![f64::NAN]);
    sgd::step(&cfg, true, &mut p, &[0.5], &mut b);
    assert_close("sgd nesterov step 1 (p, b)", &[p[0], b[0]], &[0.9031, 0.51], 1e-15);
    sgd::step(&cfg, false, &mut p, &[-0.25], &mut b);
    assert_close("sgd nesterov step 2 (p, b)", &[p[0], b[0]], &[0.907_574_11, 0.218_031], 1e-15);

    // Dampening 0.5, no Nesterov, no decay: the first step's buffer is d undamped (PyTorch).
    // Step 1: b = 0.5; p = 1 − 0.1·0.5 = 0.95. Step 2: b = 0.9·0.5 + 0.5·(−0.25) = 0.325;
    //   p = 0.95 − 0.1·0.325 = 0.9175
    let cfg = SgdConfig { lr: 0.1, momentum: 0.9, dampening: 0.5, ..SgdConfig::default() };
    let (mut p, mut b) = (vec![1.0f64], vec![f64::NAN]);
    sgd::step(&cfg, true, &mut p, &[0.5], &mut b);
    assert_close("sgd damped step 1 (p, b)", &[p[0], b[0]], &[0.95, 0.5], 1e-15);
    sgd::step(&cfg, false, &mut p, &[-0.25], &mut b);
    assert_close("sgd damped step 2 (p, b)", &[p[0], b[0]], &[0.9175, 0.325], 1e-15);

    // Plain SGD leaves the buffer alone: p = 1 − 0.1·(0.5 + 0.01) = 0.949.
    let cfg = SgdConfig { lr: 0.1, weight_decay: 0.01, ..SgdConfig::default() };
    let (mut p, mut b) = (vec![1.0f64], vec![f64::NAN]);
    sgd::step(&cfg, true, &mut p, &[0.5], &mut b);
    assert!((p[0] - 0.949).abs() < 1e-15 && b[0].is_nan(), "plain sgd: p {}, b {}", p[0], b[0]);

    // The GPU's scalars: [lr, μ, 1 − dampening, wd] rounded to f32 from f64.
    let h = sgd::hyper(&SgdConfig { lr: 0.1, momentum: 0.9, dampening: 0.1, nesterov: false, weight_decay: 5e-4 });
    assert_eq!(h, [0.1f32, 0.9, 0.9, 5e-4]);
}

/// torch.optim.SGD's and Adam's/AdamW's update loops written out from PyTorch's source in
/// f64 (`_single_tensor_sgd`, `_single_tensor_adam`), independently of src/reference, over
/// six steps on random tensors: the f64 reference matches them to rounding, and the f32
/// reference (what the GPU is held to) stays within 2e-6 of them.
#[test]
fn optimizers_follow_pytorch_formulas_over_several_steps() {
    let mut rng = Rng::new(27);
    let n = 257;
    let p0: Vec<f64> = rng.uniform_vec(n, -1.0, 1.0).into_iter().map(f64::from).collect();
    let grads: Vec<Vec<f64>> = (0..6).map(|_| rng.uniform_vec(n, -1.0, 1.0).into_iter().map(f64::from).collect()).collect();
    let as32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();

    // (lr, momentum, dampening, nesterov, weight_decay) as Python floats.
    for (lr, mu, damp, nesterov, wd) in [(0.1, 0.0, 0.0, false, 0.0), (0.05, 0.9, 0.0, true, 5e-4), (0.05, 0.8, 0.25, false, 1e-2), (0.01, 0.0, 0.0, false, 0.1)] {
        let cfg = SgdConfig { lr: lr as f32, momentum: mu as f32, dampening: damp as f32, nesterov, weight_decay: wd as f32 };
        let mut want = p0.clone();
        let mut buf: Option<Vec<f64>> = None;
        let (mut p, mut b) = (p0.clone(), vec![0.0f64; n]);
        let (mut p32, mut b32) = (as32(&p0), vec![0.0f32; n]);
        for (t, g) in grads.iter().enumerate() {
            // PyTorch: grad = grad.add(param, alpha=wd); buf = clone(grad) or
            // buf.mul_(μ).add_(grad, alpha=1 − dampening); grad = grad.add(buf, alpha=μ) or buf;
            // param.add_(grad, alpha=−lr)
            let mut d: Vec<f64> = g.iter().zip(&want).map(|(g, p)| if wd != 0.0 { g + wd * p } else { *g }).collect();
            if mu != 0.0 {
                let nb: Vec<f64> = match &buf {
                    None => d.clone(),
                    Some(b) => b.iter().zip(&d).map(|(b, d)| b * mu + (1.0 - damp) * d).collect(),
                };
                d = if nesterov { d.iter().zip(&nb).map(|(d, b)| d + mu * b).collect() } else { nb.clone() };
                buf = Some(nb);
            }
            for (p, d) in want.iter_mut().zip(&d) {
                *p += -lr * d;
            }
            sgd::step(&cfg, t == 0, &mut p, g, &mut b);
            sgd::step(&cfg, t == 0, &mut p32, &as32(g), &mut b32);
            let what = format!("sgd {cfg:?} step {}", t + 1);
            assert_close(&format!("{what} f64"), &p, &want, 1e-14);
            if let Some(wb) = &buf {
                assert_close(&format!("{what} f64 buffer"), &b, wb, 1e-14);
            }
            assert_close(&format!("{what} f32"), &widen(&p32), &want, 2e-6);
        }
    }

    // (lr, weight_decay, decoupled): Adam with its L2 term, AdamW with PyTorch's default decay and a larger one.
    for (lr, wd, decoupled) in [(1e-2, 0.1, false), (1e-3, 0.01, true), (1e-2, 0.1, true)] {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let cfg = AdamConfig { lr: lr as f32, weight_decay: wd as f32, decoupled, ..AdamConfig::default() };
        let (mut want, mut wm, mut wv) = (p0.clone(), vec![0.0f64; n], vec![0.0f64; n]);
        let (mut p, mut m, mut v) = (p0.clone(), vec![0.0f64; n], vec![0.0f64; n]);
        let (mut p32, mut m32, mut v32) = (as32(&p0), vec![0.0f32; n], vec![0.0f32; n]);
        for (t, g) in grads.iter().enumerate() {
            let step = t as i32 + 1;
            // PyTorch: param.mul_(1 − lr·wd) (AdamW) or grad = grad.add(param, alpha=wd) (Adam);
            // exp_avg.lerp_(grad, 1 − β1); exp_avg_sq.mul_(β2).addcmul_(grad, grad, value=1 − β2);
            // step_size = lr/bc1; denom = sqrt(exp_avg_sq)/sqrt(bc2) + eps; param.addcdiv_(exp_avg, denom, value=−step_size)
            let (bc1, bc2) = (1.0 - b1.powi(step), 1.0 - b2.powi(step));
            for i in 0..n {
                let mut gi = g[i];
                if decoupled {
                    want[i] *= 1.0 - lr * wd;
                } else {
                    gi += wd * want[i];
                }
                wm[i] = b1 * wm[i] + (1.0 - b1) * gi;
                wv[i] = b2 * wv[i] + (1.0 - b2) * gi * gi;
                want[i] -= lr / bc1 * (wm[i] / (wv[i].sqrt() / bc2.sqrt() + eps));
            }
            adam::step(&cfg, step as u32, &mut p, g, &mut m, &mut v);
            adam::step(&cfg, step as u32, &mut p32, &as32(g), &mut m32, &mut v32);
            let what = format!("adam {cfg:?} step {step}");
            assert_close(&format!("{what} f64"), &p, &want, 1e-14);
            assert_close(&format!("{what} f64 m"), &m, &wm, 1e-15);
            assert_close(&format!("{what} f32"), &widen(&p32), &want, 2e-6);
        }
    }
}

#[test]
fn sgd_through_the_backend_equals_the_free_function() {
    let mut cpu = Cpu::default();
    let mut rng = Rng::new(5);
    let (p0, g) = (rng.uniform_vec(37, -1.0, 1.0), rng.uniform_vec(37, -1.0, 1.0));
    let (tp, tg, tb) = (cpu.tensor(37), cpu.tensor(37), cpu.tensor(37));
    cpu.write(&tp, &p0);
    cpu.write(&tg, &g);
    let cfg = SgdConfig { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 1e-3, ..SgdConfig::default() };
    let (mut p, mut b) = (p0.clone(), vec![0.0f32; 37]);
    for first in [true, false] {
        cpu.run(Op::Sgd { cfg, first, len: 37, param: &tp, grad: &tg, buf: &tb });
        sgd::step(&cfg, first, &mut p, &g, &mut b);
        assert_eq!(cpu.read(&tp), p);
        assert_eq!(cpu.read(&tb), b);
    }
}

#[test]
fn adam_two_steps_on_a_scalar_by_hand() {
    // p = 1, grads 0.5 then −0.25, lr 1e-3, β1 0.9, β2 0.999, eps 1e-8.
    // Step 1: m = 0.1·0.5 = 0.05; v = 0.001·0.25 = 0.00025; bc1 = 0.1; bc2 = 0.001;
    //   step_size = 0.001/0.1 = 0.01; denom = √0.00025/√0.001 + 1e-8 = 0.5 + 1e-8;
    //   p = 1 − 0.01·0.05/0.50000001 = 1 − 0.00099999998 = 0.99900000002
    // Step 2: m = 0.9·0.05 + 0.1·(−0.25) = 0.02; v = 0.999·0.00025 + 0.001·0.0625 = 0.00031225;
    //   bc1 = 1 − 0.81 = 0.19; bc2 = 1 − 0.998001 = 0.001999; step_size = 0.001/0.19 = 0.00526315789…;
    //   denom = √(0.00031225/0.001999) + 1e-8 = √0.15620310… + 1e-8 = 0.39522539…;
    //   p = 0.99900000002 − 0.00526315789·0.02/0.39522539 = 0.99900000002 − 0.00026633703 = 0.99873366299
    let cfg = AdamConfig::default();
    let (p1, p2) = (0.99900000002, 0.998_733_662_99);
    let (mut p, mut m, mut v) = (vec![1.0f64], vec![0.0f64], vec![0.0f64]);
    adam::step(&cfg, 1, &mut p, &[0.5], &mut m, &mut v);
    assert_close("adam f64 step 1 (p, m, v)", &[p[0], m[0], v[0]], &[p1, 0.05, 0.00025], 1e-15);
    adam::step(&cfg, 2, &mut p, &[-0.25], &mut m, &mut v);
    assert_close("adam f64 step 2 (p, m, v)", &[p[0], m[0], v[0]], &[p2, 0.02, 0.00031225], 1e-11);

    // The f32 path gives the same to f32 precision (ulp at 1 is 6e-8).
    let (mut p, mut m, mut v) = (vec![1.0f32], vec![0.0f32], vec![0.0f32]);
    adam::step(&cfg, 1, &mut p, &[0.5], &mut m, &mut v);
    assert!((p[0] as f64 - p1).abs() < 1.2e-7, "adam f32 step 1: {}", p[0]);
    adam::step(&cfg, 2, &mut p, &[-0.25], &mut m, &mut v);
    assert!((p[0] as f64 - p2).abs() < 1.2e-7, "adam f32 step 2: {}", p[0]);

    // The GPU scalars: [lr/bc1, 1/√bc2, 1 − β1, 1 − β2]; step 1: [0.01, 1/√0.001 = 31.6227766…, 0.1, 0.001],
    // step 2: [0.001/0.19, 1/√0.001999 = 22.366272…, 0.1, 0.001].
    let h1 = adam::hyper(&cfg, 1).map(f64::from);
    assert_close("hyper 1", &h1, &[0.01, 31.622_776_6, 0.1, 0.001], 2e-6);
    let h2 = adam::hyper(&cfg, 2).map(f64::from);
    assert_close("hyper 2", &h2, &[0.001 / 0.19, 22.366_272, 0.1, 0.001], 2e-6);
    // Running the GPU's formula with these f32 scalars reproduces the reference step.
    let h = adam::hyper(&cfg, 1);
    let (m1, v1) = (0.1f32 * 0.5, 0.001f32 * 0.25);
    let gpu_p = 1.0f32 - h[0] * m1 / (v1.sqrt() * h[1] + cfg.eps);
    assert!((gpu_p as f64 - p1).abs() < 1.2e-7, "GPU formula step 1: {gpu_p}");
}

#[test]
fn softmax_cross_entropy_by_hand() {
    // Row 0: logits [1, 2, 3], label 2: −log(e³/(e + e² + e³)) = ln(1 + e⁻¹ + e⁻²) = ln 1.50321472 = 0.40760596
    //   softmax = [e⁻², e⁻¹, 1]/1.50321472 = [0.09003057, 0.24472847, 0.66524096]
    // Row 1: logits [0, 0, 0], label 0: ln 3 = 1.09861229; softmax = [1/3, 1/3, 1/3]
    // Mean loss = (0.40760596 + 1.09861229)/2 = 0.75310913; dlogits = (softmax − onehot)/2.
    let logits = [1.0, 2.0, 3.0, 0.0, 0.0, 0.0];
    let mut d = vec![f64::NAN; 6];
    let loss = reduce::softmax_cross_entropy(2, 3, &logits, &[2, 0], &mut d);
    assert!((loss - 0.753_109_126_556_245).abs() < 1e-14, "loss {loss}");
    let (p0, p1, p2) = (0.090_030_573_170_380_46, 0.244_728_471_054_797_64, 0.665_240_955_774_821_8);
    let third = 1.0 / 3.0;
    assert_close("dlogits", &d, &[p0 / 2.0, p1 / 2.0, (p2 - 1.0) / 2.0, (third - 1.0) / 2.0, third / 2.0, third / 2.0], 1e-15);

    // Stability: logits [1000, 1000, 0], label 1 → softmax [½, ½, e⁻¹⁰⁰⁰ ≈ 0], loss ln 2, no overflow.
    let mut d = vec![f64::NAN; 3];
    let loss = reduce::softmax_cross_entropy(1, 3, &[1000.0f64, 1000.0, 0.0], &[1], &mut d);
    assert!((loss - std::f64::consts::LN_2).abs() < 1e-15, "loss {loss}");
    assert_close("dlogits large", &d, &[0.5, -0.5, 0.0], 1e-15);
    let mut d32 = vec![f32::NAN; 3];
    let loss32 = reduce::softmax_cross_entropy(1, 3, &[1000.0f32, 1000.0, 0.0], &[1], &mut d32);
    assert!((loss32 - std::f32::consts::LN_2).abs() < 1e-7, "f32 loss {loss32}");
}

#[test]
fn count_step_counts_and_keeps_the_first_nonfinite_step() {
    let mut state = [0u32, 0];
    for (loss, want) in [(2.3, [1, 0]), (0.0, [2, 0]), (f64::NAN, [3, 3]), (f64::INFINITY, [4, 3]), (1.0, [5, 3])] {
        reduce::count_step(loss, &mut state);
        assert_eq!(state, want, "after loss {loss}");
    }
    let mut state = [u32::MAX, 0];
    reduce::count_step(f64::NEG_INFINITY, &mut state);
    assert_eq!(state, [0, 0], "the counter wraps as the shader's u32 does");
}

#[test]
fn parameter_gradients_accumulate_by_hand() {
    // sum_rows adds T(Σ) to what out holds.
    let mut out = vec![100.0f64, -1.0];
    reduce::sum_rows(3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &mut out);
    assert_close("sum_rows +=", &out, &[109.0, 11.0], 0.0);
    // batchnorm backward adds dgamma, dbeta; dx does not see what they held.
    let s = BatchNormShape { n: 2, c: 2, hw: 2 };
    let x = [1.0, 2.0, 10.0, 10.0, 3.0, 6.0, 10.0, 14.0];
    let dy = [0.5, -1.0, 2.0, 0.25, 1.5, -0.5, 1.0, -2.0];
    let (mut mean, mut var) = (vec![0.0; 2], vec![0.0; 2]);
    batchnorm::stats(&s, &x, &mut mean, &mut var);
    let gamma = [1.5, 0.5];
    let (mut dx0, mut dg0, mut db0) = (vec![f64::NAN; 8], vec![0.0; 2], vec![0.0; 2]);
    batchnorm::backward(&s, &x, &dy, &mean, &var, &gamma, &mut dx0, &mut dg0, &mut db0);
    // dbeta = Σ dy per channel: ch0 {0.5, −1, 1.5, −0.5} = 0.5, ch1 {2, 0.25, 1, −2} = 1.25
    assert_close("dbeta", &db0, &[0.5, 1.25], 1e-15);
    let (mut dx, mut dg, mut db) = (vec![f64::NAN; 8], vec![10.0, 20.0], vec![-3.0, 7.0]);
    batchnorm::backward(&s, &x, &dy, &mean, &var, &gamma, &mut dx, &mut dg, &mut db);
    assert_eq!(dx, dx0);
    assert_close("dgamma +=", &dg, &[10.0 + dg0[0], 20.0 + dg0[1]], 1e-15);
    assert_close("dbeta +=", &db, &[-2.5, 8.25], 1e-15);
}

#[test]
fn count_correct_ties_go_to_the_first_max() {
    // Rows: [1, 3, 3] → argmax 1; [2, 2, 2] → argmax 0; [0, 1, 5] → argmax 2.
    let logits = [1.0f32, 3.0, 3.0, 2.0, 2.0, 2.0, 0.0, 1.0, 5.0];
    assert_eq!(reduce::count_correct(3, 3, &logits, &[1, 0, 2]), 3);
    assert_eq!(reduce::count_correct(3, 3, &logits, &[2, 1, 2]), 1); // the tied later maxima do not count
    assert_eq!(reduce::count_correct(3, 3, &logits, &[0, 2, 1]), 0);
}

#[test]
fn sum_rows_relu_and_gather_by_hand() {
    // [[1, 2], [3, 4], [5, 6]] → column sums [1+3+5, 2+4+6] = [9, 12].
    let mut out = vec![0.0; 2]; // sum_rows accumulates
    reduce::sum_rows(3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &mut out);
    assert_close("sum_rows", &out, &[9.0, 12.0], 0.0);

    let x = [-1.0, 0.0, 2.0, -0.5, 3.0];
    let mut y = vec![f64::NAN; 5];
    activation::relu_forward(&x, &mut y);
    assert_close("relu", &y, &[0.0, 0.0, 2.0, 0.0, 3.0], 0.0);
    let mut dx = vec![f64::NAN; 5];
    activation::relu_backward(&y, &[10.0, 20.0, 30.0, 40.0, 50.0], &mut dx);
    assert_close("relu backward (gradient 0 at x = 0)", &dx, &[0.0, 0.0, 30.0, 0.0, 50.0], 0.0);
    // NaN propagates (PyTorch: relu(NaN) = NaN) instead of being zeroed.
    let mut y = vec![0.0; 2];
    activation::relu_forward(&[f64::NAN, -1.0], &mut y);
    assert!(y[0].is_nan() && y[1] == 0.0, "relu NaN: {y:?}");
    // −0.0 and −inf give +0.0 (as the shader's select), +inf stays; a NaN y passes dy
    // (threshold_backward zeroes only where y ≤ 0).
    let mut y = vec![f64::NAN; 3];
    activation::relu_forward(&[-0.0, f64::NEG_INFINITY, f64::INFINITY], &mut y);
    assert_eq!(y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), [0.0f64.to_bits(), 0.0f64.to_bits(), f64::INFINITY.to_bits()]);
    let mut dx = vec![f64::NAN; 2];
    activation::relu_backward(&[f64::NAN, 0.0], &[7.0, 8.0], &mut dx);
    assert_eq!(dx, [7.0, 0.0]);

    // Three 2-pixel images; perm [2, 0, 1], offset 1, n 2 → images 0 and 1.
    let images = [0u8, 255, 51, 102, 204, 153];
    let labels = [7u8, 3, 9];
    let (mut xb, mut yb) = (vec![f32::NAN; 4], vec![u32::MAX; 2]);
    gather::gather(&images, &labels, 2, &[2, 0, 1], 1, 2, &mut xb, &mut yb);
    assert_eq!(xb, [0.0, 1.0, 0.2, 0.4]); // 51/255 = 0.2, 102/255 = 0.4 (f32 division)
    assert_eq!(yb, [7, 3]);
}

#[test]
fn cpu_backend_matches_the_free_functions() {
    let mut rng = Rng::new(23);
    let mut cpu = Cpu::new();
    assert!(!cpu.name().is_empty());

    // conv2d forward → maxpool → relu → matmul → softmax CE → count_correct → adam, through the trait.
    let cs = Conv2dShape { n: 2, c_in: 1, h: 6, w: 6, c_out: 3, k: 3, stride: 1, pad: 0 };
    let ps = PoolShape { n: 2, c: 3, h: 4, w: 4, k: 2, stride: 2 };
    let ms = MatmulShape { m: 2, n: 5, k: 12, trans_a: false, trans_b: true, accumulate: false };
    let (x, w, b) = (rng.uniform_vec(cs.x_len(), -1.0, 1.0), rng.uniform_vec(cs.w_len(), -1.0, 1.0), rng.uniform_vec(3, -1.0, 1.0));
    let (fw, fb) = (rng.uniform_vec(5 * 12, -1.0, 1.0), rng.uniform_vec(5, -1.0, 1.0));
    let labels = [3u32, 1];

    let t = |cpu: &mut Cpu, data: &[f32]| {
        let h = cpu.tensor(data.len());
        cpu.write(&h, data);
        h
    };
    let (tx, tw, tb, tfw, tfb) = (t(&mut cpu, &x), t(&mut cpu, &w), t(&mut cpu, &b), t(&mut cpu, &fw), t(&mut cpu, &fb));
    let (ty, tp, tr, tl) = (cpu.tensor(cs.y_len()), cpu.tensor(ps.y_len()), cpu.tensor(ps.y_len()), cpu.tensor(10));
    let (tloss, tdl) = (cpu.tensor(1), cpu.tensor(10));
    let (tam, tlab, tcorrect, tstate) = (cpu.index(ps.y_len()), cpu.index(2), cpu.index(1), cpu.index(2));
    cpu.write_index(&tlab, &labels);
    cpu.run(Op::Conv2dForward { s: cs, x: &tx, w: &tw, b: &tb, y: &ty });
    cpu.run(Op::MaxpoolForward { s: ps, relu: false, normalize: None, x: &ty, y: &tp, argmax: &tam });
    cpu.run(Op::ReluForward { len: ps.y_len(), x: &tp, y: &tr });
    cpu.run(Op::Matmul { s: ms, a: &tr, b: &tfw, bias: Some(&tfb), fused: Fused::NONE, c: &tl });
    cpu.run(Op::SoftmaxCrossEntropy { n: 2, classes: 5, logits: &tl, labels: &tlab, loss: &tloss, dlogits: &tdl, state: &tstate });
    cpu.run(Op::CountCorrect { n: 2, classes: 5, logits: &tl, labels: &tlab, correct: &tcorrect });
    cpu.run(Op::CountCorrect { n: 2, classes: 5, logits: &tl, labels: &tlab, correct: &tcorrect }); // accumulates
    cpu.submit();

    let mut y = vec![0.0; cs.y_len()];
    conv2d::forward(&cs, &x, &w, &b, &mut y);
    let (mut p, mut am) = (vec![0.0; ps.y_len()], vec![0u32; ps.y_len()]);
    maxpool::forward(&ps, &y, &mut p, &mut am);
    let mut r = vec![0.0; ps.y_len()];
    activation::relu_forward(&p, &mut r);
    let mut l = vec![0.0; 10];
    matmul::matmul(&ms, &r, &fw, Some(&fb), &mut l);
    let mut dl = vec![0.0; 10];
    let loss = reduce::softmax_cross_entropy(2, 5, &l, &labels, &mut dl);
    let correct = reduce::count_correct(2, 5, &l, &labels);

    assert_eq!(cpu.read(&ty), y);
    assert_eq!(cpu.read(&tp), p);
    assert_eq!(cpu.read_index(&tam), am);
    assert_eq!(cpu.read(&tl), l);
    assert_eq!(cpu.read(&tloss), [loss]);
    assert_eq!(cpu.read(&tdl), dl);
    assert_eq!(cpu.read_index(&tcorrect), [2 * correct]);
    assert_eq!(cpu.read_index(&tstate), [1, 0], "one finite step counted");
    assert!(r.iter().any(|&v| v > 0.0), "the chain is not trivially zero");

    // Adam through the trait (on fc weights with the CE gradient as a stand-in) equals the free function.
    let (tm, tv) = (cpu.tensor(10), cpu.tensor(10));
    let cfg = AdamConfig::default();
    cpu.run(Op::Adam { cfg, step: 1, len: 10, state: &tstate, param: &tl, grad: &tdl, m: &tm, v: &tv });
    let (mut m, mut v) = (vec![0.0; 10], vec![0.0; 10]);
    adam::step(&cfg, 1, &mut l, &dl, &mut m, &mut v);
    assert_eq!(cpu.read(&tl), l);
    assert_eq!(cpu.read(&tm), m);
    assert_eq!(cpu.read(&tv), v);

    // The step state through the trait: NaN logits at step 2 are recorded, later ones not.
    cpu.write(&tl, &[f32::NAN; 10]);
    cpu.run(Op::SoftmaxCrossEntropy { n: 2, classes: 5, logits: &tl, labels: &tlab, loss: &tloss, dlogits: &tdl, state: &tstate });
    assert!(cpu.read(&tloss)[0].is_nan());
    assert_eq!(cpu.read_index(&tstate), [2, 2]);
    cpu.run(Op::SoftmaxCrossEntropy { n: 2, classes: 5, logits: &tl, labels: &tlab, loss: &tloss, dlogits: &tdl, state: &tstate });
    assert_eq!(cpu.read_index(&tstate), [3, 2]);
    // clear zeroes a tensor.
    cpu.clear(&tl);
    assert_eq!(cpu.read(&tl), [0.0; 10]);

    // gather through a dataset handle.
    let ds = cpu.dataset(&[0, 255, 51, 102], &[4, 8], 2);
    let perm = cpu.index(2);
    cpu.write_index(&perm, &[1, 0]);
    let (gx, gy) = (cpu.tensor(4), cpu.index(2));
    cpu.run(Op::Gather { ds: &ds, perm: &perm, offset: 0, n: 2, x: &gx, y: &gy });
    assert_eq!(cpu.read(&gx), [0.2, 0.4, 0.0, 1.0]);
    assert_eq!(cpu.read_index(&gy), [8, 4]);
}

#[test]
fn avgpool_by_hand() {
    use wgsl_cnn::reference::avgpool;
    // 3×3 input 1..9, window 2, stride 1: four overlapping windows.
    let s = PoolShape { n: 1, c: 1, h: 3, w: 3, k: 2, stride: 1 };
    let x: Vec<f64> = (1..=9).map(f64::from).collect();
    let mut y = vec![f64::NAN; 4];
    avgpool::forward(&s, &x, &mut y);
    assert_eq!(y, [3.0, 4.0, 6.0, 7.0]);
    // The centre is in all four windows, the corners in one.
    let mut dx = vec![f64::NAN; 9];
    avgpool::backward(&s, &[1.0; 4], &mut dx);
    assert_eq!(dx, [0.25, 0.5, 0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.25]);
    // Stride 3 > k = 2 on 5×5: windows at rows/columns 0–1 and 3–4; row/column 2 gets nothing.
    let s = PoolShape { n: 1, c: 1, h: 5, w: 5, k: 2, stride: 3 };
    let mut dx = vec![f64::NAN; 25];
    avgpool::backward(&s, &[4.0, 8.0, 12.0, 16.0], &mut dx);
    assert_eq!(&dx[..5], &[1.0, 1.0, 0.0, 2.0, 2.0]);
    assert_eq!(&dx[10..15], &[0.0; 5]);
}

#[test]
fn tanh_and_sigmoid_by_hand() {
    use wgsl_cnn::reference::activation::{backward, forward};
    use wgsl_cnn::shapes::Activation;
    let x = [0.0f64, 1.0, -1.0];
    let (mut t, mut s) = ([0.0; 3], [0.0; 3]);
    forward(Activation::Tanh, &x, &mut t);
    forward(Activation::Sigmoid, &x, &mut s);
    assert_eq!(t, [0.0, 1f64.tanh(), -(1f64.tanh())]);
    assert_eq!(s[0], 0.5);
    assert!((s[1] - 0.7310585786300049).abs() < 1e-15 && (s[1] + s[2] - 1.0).abs() < 1e-15);
    let (mut dt, mut ds) = ([0.0; 3], [0.0; 3]);
    backward(Activation::Tanh, &t, &[2.0; 3], &mut dt);
    backward(Activation::Sigmoid, &s, &[2.0; 3], &mut ds);
    assert_eq!(dt[0], 2.0); // tanh'(0) = 1
    assert_eq!(ds[0], 0.5); // sigmoid'(0) = 1/4
    assert!((dt[1] - 2.0 / 1f64.cosh().powi(2)).abs() < 1e-15);
}
