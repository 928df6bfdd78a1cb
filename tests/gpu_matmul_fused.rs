//! matmul.wgsl's fused options vs the CPU reference (`reference::matmul::matmul_fused`,
//! `add_row_sums`), on every kernel that can run the shape: the ReLU epilogue (a Linear and
//! its ReLU), the ReLU-backward mask epilogue (a ReLU's backward inside the next Linear's
//! input gradient) and the bias gradient added in the weight-gradient dispatch. Shapes are
//! odd and larger than a tile or a row-sum workgroup (64 / 256 rows); C is NaN-poisoned or,
//! accumulating, pre-filled, and the bias gradient is always pre-filled (it accumulates).
//! NaN must pass the ReLU and the mask exactly as ReluForward / ReluBackward pass it.

mod common;
use wgsl_cnn::compare::compare;
use wgsl_cnn::gpu::matmul::{matmul_fused, subgroup_runs, vec4_fits, Fused, MatmulKernel};
use wgsl_cnn::gpu::{AdapterChoice, GpuContext};
use wgsl_cnn::reference::matmul::{add_row_sums, matmul_fused as reference_fused, Epilogue};
use wgsl_cnn::rng::Rng;
use wgsl_cnn::shapes::MatmulShape;

fn ctx() -> GpuContext {
    GpuContext::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"))
}

fn kernels(ctx: &GpuContext, s: &MatmulShape) -> Vec<MatmulKernel> {
    let mut v = vec![MatmulKernel::Strided, MatmulKernel::Tiled];
    if vec4_fits(s) {
        v.push(MatmulKernel::Vec4);
    }
    if subgroup_runs(ctx) {
        v.extend([MatmulKernel::Subgroup, MatmulKernel::SubgroupUnshared]);
    }
    v
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Epi {
    None,
    Relu,
    Mask,
}

/// NaN where the reference has NaN, and within tolerance elsewhere.
fn assert_close(what: &str, got: &[f32], want: &[f32], k: usize) {
    let eps = f32::EPSILON as f64;
    let kf = k.max(1) as f64;
    let (atol, rtol) = (4.0 * eps * kf.sqrt() * (kf.sqrt() / 3.0), 1e-5);
    let nan_mismatch = got.iter().zip(want).filter(|(g, w)| g.is_nan() != w.is_nan()).count();
    assert_eq!(nan_mismatch, 0, "{what}: {nan_mismatch} elements NaN on one side only");
    let (g, w): (Vec<f32>, Vec<f32>) = got.iter().zip(want).filter(|(_, w)| !w.is_nan()).map(|(g, w)| (*g, *w)).unzip();
    // Elements the ReLU or the mask cut must be exactly +0.
    let cut_wrong = g.iter().zip(&w).filter(|(g, w)| **w == 0.0 && w.is_sign_positive() && g.to_bits() != 0).count();
    let cmp = compare(&g, &w, atol, rtol);
    eprintln!("{what}: {cmp}");
    assert!(cmp.passed(), "{what}: {cmp}");
    assert_eq!(cut_wrong, 0, "{what}: {cut_wrong} cut elements are not +0");
}

/// Runs one fused product on the GPU and the reference and compares C and the bias gradient.
#[allow(clippy::too_many_arguments)]
fn check(ctx: &GpuContext, s: MatmulShape, bias: bool, epi: Epi, bias_grad: bool, nan_in_a: bool, kernel: MatmulKernel, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut a = rng.uniform_vec(s.m * s.k, -1.0, 1.0);
    if nan_in_a && !a.is_empty() {
        let i = rng.below(a.len());
        a[i] = f32::NAN;
    }
    let b = rng.uniform_vec(s.k * s.n, -1.0, 1.0);
    let bias_v = rng.uniform_vec(s.n, -1.0, 1.0);
    // A ReLU's output: positive, ±0, +inf and NaN (kept), negative (never a ReLU output, cut).
    let specials = [0.0, -0.0, f32::NAN, f32::INFINITY, -1.0, f32::NEG_INFINITY];
    let mask: Vec<f32> = (0..s.m * s.n)
        .map(|_| if rng.below(3) == 0 { specials[rng.below(specials.len())] } else { rng.uniform(0.0, 1.0) as f32 })
        .collect();
    let initial = if s.accumulate { rng.uniform_vec(s.m * s.n, -1.0, 1.0) } else { vec![f32::NAN; s.m * s.n] };
    let db0 = rng.uniform_vec(s.m, -1.0, 1.0);

    let mut want = if s.accumulate { initial.clone() } else { vec![0.0f32; s.m * s.n] };
    let epilogue = match epi {
        Epi::None => Epilogue::None,
        Epi::Relu => Epilogue::Relu,
        Epi::Mask => Epilogue::Mask(&mask),
    };
    reference_fused(&s, &a, &b, bias.then_some(&bias_v[..]), epilogue, &mut want);
    let mut want_db = db0.clone();
    add_row_sums(&s, &a, &mut want_db);

    let buf = |data: &[f32]| {
        let t = ctx.buffer(data.len().max(1));
        ctx.write(&t, data);
        t
    };
    let (ab, bb, biasb, maskb, cb, dbb) = (buf(&a), buf(&b), buf(&bias_v), buf(&mask), buf(&initial), buf(&db0));
    let fused = Fused { relu: epi == Epi::Relu, mask: (epi == Epi::Mask).then_some(&*maskb), bias_grad: bias_grad.then_some(&*dbb) };
    matmul_fused(ctx, kernel, &s, &ab, &bb, bias.then_some(&*biasb), fused, &cb);
    let got: Vec<f32> = ctx.read(&cb);
    let got_db: Vec<f32> = ctx.read(&dbb);
    ctx.clear_bind_groups();

    let what = format!("{s:?} bias={bias} {epi:?} bias_grad={bias_grad} nan_in_a={nan_in_a} {kernel:?} seed={seed:#x}");
    assert_close(&format!("{what}: C"), &got[..s.m * s.n], &want, s.k);
    if bias_grad {
        assert_close(&format!("{what}: bias grad"), &got_db[..s.m], &want_db, s.k);
    } else {
        assert_eq!(got_db[..s.m].iter().map(|v| v.to_bits()).collect::<Vec<_>>(), db0.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{what}: bias grad written without being asked");
    }
}

fn shape(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool, accumulate: bool) -> MatmulShape {
    MatmulShape { m, n, k, trans_a, trans_b, accumulate }
}

#[test]
fn relu_epilogue_every_kernel() {
    let ctx = ctx();
    let mut seed = 0x5e1u64;
    // a Linear forward (nt) with bias, odd and tile-crossing shapes; with NaN in A too
    for (m, n, k) in [(1, 1, 1), (7, 13, 9), (70, 67, 20), (100, 36, 8)] {
        for nan in [false, true] {
            let s = shape(m, n, k, false, true, false);
            for kernel in kernels(&ctx, &s) {
                seed += 1;
                check(&ctx, s, true, Epi::Relu, false, nan, kernel, seed);
            }
        }
    }
    // without bias, and accumulating (the contribution goes through the ReLU first)
    let s = shape(9, 11, 5, false, false, true);
    for kernel in kernels(&ctx, &s) {
        check(&ctx, s, false, Epi::Relu, false, false, kernel, 0x5e10);
    }
}

#[test]
fn relu_backward_mask_epilogue_every_kernel() {
    let ctx = ctx();
    let mut seed = 0x3a5u64;
    // a Linear input gradient dy·W (nn), m = batch
    for (m, n, k) in [(1, 1, 1), (7, 13, 9), (70, 67, 10), (100, 36, 8), (3, 5, 0)] {
        for nan in [false, true] {
            let s = shape(m, n, k, false, false, false);
            for kernel in kernels(&ctx, &s) {
                seed += 1;
                check(&ctx, s, false, Epi::Mask, false, nan, kernel, seed);
            }
        }
    }
}

#[test]
fn bias_gradient_in_the_weight_gradient_dispatch() {
    let ctx = ctx();
    let mut seed = 0xdbu64;
    // dW += dyᵀ·x (tn, accumulating) with db += Σ rows dy: m = d_out past 64 and 256 rows
    for (m, n, k) in [(1, 1, 1), (10, 500, 7), (67, 13, 9), (300, 8, 12), (257, 5, 3)] {
        for nan in [false, true] {
            let s = shape(m, n, k, true, false, true);
            for kernel in kernels(&ctx, &s) {
                seed += 1;
                check(&ctx, s, false, Epi::None, true, nan, kernel, seed);
            }
        }
    }
    // untransposed A, overwriting C; an empty product (n = 0) still adds the row sums; k = 0 adds 0
    for s in [shape(13, 6, 5, false, false, false), shape(9, 0, 4, true, false, true), shape(9, 4, 0, true, false, true)] {
        for kernel in kernels(&ctx, &s) {
            seed += 1;
            check(&ctx, s, false, Epi::None, true, false, kernel, seed);
        }
    }
}

#[test]
fn options_combine_and_leave_the_rest_alone() {
    let ctx = ctx();
    // bias + ReLU + bias gradient at once, and a plain product whose bias gradient stays untouched
    let s = shape(33, 70, 6, true, true, false);
    for kernel in kernels(&ctx, &s) {
        check(&ctx, s, true, Epi::Relu, true, false, kernel, 0xc0);
        check(&ctx, s, true, Epi::None, false, false, kernel, 0xc1);
    }
}
