//! Every entry point of shaders/{maxpool,avgpool,batchnorm,activation,reduce,adam,sgd,gather}.wgsl
//! against its CPU twin in src/reference, on seeded random inputs (seed printed in every
//! assertion message; set WGSL_CNN_TEST_SEED to replay one), over odd shapes, batch 1,
//! batches larger than a workgroup, and the seed model's shapes. Float outputs are poisoned
//! with NaN and u32 outputs with u32::MAX before each dispatch, so an element a kernel
//! forgets to write fails the comparison.

mod common;
use std::rc::Rc;

use wgsl_cnn::compare::compare;
use wgsl_cnn::gpu::{activation, adam, avgpool, batchnorm, gather, maxpool, reduce, sgd, AdapterChoice, GpuContext, RawBuffer};
use wgsl_cnn::reference;
use wgsl_cnn::rng::Rng;
use wgsl_cnn::shapes::{Activation, AdamConfig, BatchNormShape, PoolShape, SgdConfig};

fn ctx() -> GpuContext {
    GpuContext::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"))
}

fn seed() -> u64 {
    common::base_seed()
}

fn upload(ctx: &GpuContext, data: &[f32]) -> Rc<RawBuffer> {
    let b = ctx.buffer(data.len());
    ctx.write(&b, data);
    b
}

fn upload_u32(ctx: &GpuContext, data: &[u32]) -> Rc<RawBuffer> {
    let b = ctx.buffer(data.len());
    ctx.write(&b, data);
    b
}

fn poisoned(ctx: &GpuContext, len: usize) -> Rc<RawBuffer> {
    upload(ctx, &vec![f32::NAN; len])
}

fn poisoned_u32(ctx: &GpuContext, len: usize) -> Rc<RawBuffer> {
    upload_u32(ctx, &vec![u32::MAX; len])
}

#[track_caller]
fn check(what: &str, seed: u64, got: &[f32], want: &[f32], atol: f64, rtol: f64) {
    let c = compare(got, want, atol, rtol);
    eprintln!("{what}: {c}");
    assert!(c.passed(), "{what} (seed {seed}): {c}");
}

// ---- activation ----------------------------------------------------------------------

#[test]
fn relu_forward_and_backward_match_reference() {
    let ctx = ctx();
    let seed = seed();
    let mut rng = Rng::new(seed ^ 1);
    // lengths below and above the vec4 threshold, with and without a tail, and the seed's
    for len in [1, 3, 255, 256, 257, 1003, 50_001, 288_000, 80_000, 50_000] {
        let mut x = rng.uniform_vec(len, -1.0, 1.0);
        x[0] = 0.0; // the boundary: relu(0) = 0 and its gradient is 0
        let dy = rng.uniform_vec(len, -1.0, 1.0);
        let (mut y, mut dx) = (vec![0.0; len], vec![0.0; len]);
        reference::activation::relu_forward(&x, &mut y);
        reference::activation::relu_backward(&y, &dy, &mut dx);

        let (xb, dyb) = (upload(&ctx, &x), upload(&ctx, &dy));
        let (yb, dxb) = (poisoned(&ctx, len), poisoned(&ctx, len));
        activation::relu_forward(&ctx, len, &xb, &yb);
        let y_gpu: Vec<f32> = ctx.read(&yb);
        // The backward reads the reference's y so that each kernel is checked on its own.
        let yref = upload(&ctx, &y);
        activation::relu_backward(&ctx, len, &yref, &dyb, &dxb);
        // ReLU selects values: bit-exact.
        check(&format!("relu_forward len {len}"), seed, &y_gpu, &y, 0.0, 0.0);
        check(&format!("relu_backward len {len}"), seed, &ctx.read::<f32>(&dxb), &dx, 0.0, 0.0);
        ctx.clear_bind_groups();
    }
}

/// Bit patterns must agree exactly (NaN payloads included): `compare` fails on any NaN.
#[track_caller]
fn check_bits(what: &str, seed: u64, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!("{what} (seed {seed}): [{i}] got {:e} ({:#010x}), want {:e} ({:#010x})", got[i], got[i].to_bits(), want[i], want[i].to_bits());
    }
}

/// Non-finite values, signed zeros, subnormals and ties at the threshold: the GPU and the
/// reference must agree bit for bit (the shader once turned NaN into 0 while the reference
/// passed it through).
#[test]
fn relu_special_values_match_reference_bit_for_bit() {
    let ctx = ctx();
    let seed = seed();
    let mut rng = Rng::new(seed ^ 10);
    let specials = [
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7fc0_1234), // a NaN with a payload
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        f32::MIN_POSITIVE / 4.0, // subnormal
        -f32::MIN_POSITIVE / 4.0,
        f32::MAX,
        f32::MIN,
        1.0, // ties: the same value many times
        -1.0,
    ];
    // scalar only (< 256), vec4 + tails of 1..3, and whole vec4s
    for len in [1, 2, 3, 5, 13, 255, 256, 257, 258, 259, 260, 1001, 4099] {
        let pick = |rng: &mut Rng| if rng.below(3) == 0 { rng.uniform(-1.0, 1.0) as f32 } else { specials[rng.below(specials.len())] };
        let mut x: Vec<f32> = (0..len).map(|_| pick(&mut rng)).collect();
        for (i, v) in specials.iter().enumerate().take(len) {
            x[i] = *v; // every special at least once where it fits
        }
        // the last elements (the scalar tail when there is one) hold specials too
        if len > 4 {
            x[len - 1] = f32::NAN;
            x[len - 2] = -0.0;
            x[len - 3] = f32::NEG_INFINITY;
        }
        let dy: Vec<f32> = (0..len).map(|_| pick(&mut rng)).collect();
        let mut y = vec![0.0; len];
        reference::activation::relu_forward(&x, &mut y);
        assert!(y.iter().zip(&x).all(|(a, b)| !b.is_nan() || a.is_nan()), "reference relu must keep NaN");
        let (xb, dyb, yb) = (upload(&ctx, &x), upload(&ctx, &dy), poisoned(&ctx, len));
        activation::relu_forward(&ctx, len, &xb, &yb);
        check_bits(&format!("relu_forward specials len {len}"), seed, &ctx.read::<f32>(&yb), &y);
        // The backward on the forward's y, and on x itself (y ≤ 0 with −0, −inf, subnormals).
        for (tag, yv) in [("y", &y), ("x", &x)] {
            let mut dx = vec![0.0; len];
            reference::activation::relu_backward(yv, &dy, &mut dx);
            let (ybuf, dxb) = (upload(&ctx, yv), poisoned(&ctx, len));
            activation::relu_backward(&ctx, len, &ybuf, &dyb, &dxb);
            check_bits(&format!("relu_backward specials on {tag} len {len}"), seed, &ctx.read::<f32>(&dxb), &dx);
        }
        ctx.clear_bind_groups();
    }
}

// ---- maxpool -------------------------------------------------------------------------

/// Shapes for both the generic kernels and the k = 2, w % 4 == 0 vec4 ones.
fn pool_shapes() -> Vec<PoolShape> {
    let p = |n, c, h, w, k| PoolShape { n, c, h, w, k, stride: k };
    vec![
        p(1, 1, 5, 7, 2),    // odd h, w: the last row/column is outside every window
        p(3, 2, 9, 11, 3),   // k = 3, ragged edges
        p(2, 3, 6, 6, 1),    // k = 1: identity
        p(3, 2, 7, 12, 2),   // k = 2, w % 4 == 0: vec4 forward; odd h: generic backward
        p(1, 3, 6, 4, 2),    // k = 2 vec4 paths with one vec4 per row
        p(1, 20, 24, 24, 2), // batch 1
        p(100, 20, 24, 24, 2), // seed pool1
        p(100, 50, 8, 8, 2),   // seed pool2
        // stride ≠ k (the generic forward, the gather backward): overlapping windows,
        // windows with gaps between them, ragged edges, one large enough for a 2-D grid
        PoolShape { n: 2, c: 3, h: 9, w: 11, k: 3, stride: 2 },
        PoolShape { n: 1, c: 2, h: 7, w: 8, k: 2, stride: 1 },
        PoolShape { n: 3, c: 2, h: 10, w: 9, k: 2, stride: 3 },
        PoolShape { n: 1, c: 1, h: 5, w: 5, k: 5, stride: 2 },
        PoolShape { n: 50, c: 20, h: 24, w: 24, k: 3, stride: 2 },
    ]
}

#[test]
fn maxpool_forward_and_backward_match_reference() {
    let ctx = ctx();
    let seed = seed();
    let mut rng = Rng::new(seed ^ 2);
    let (mut zeroed, mut kept) = (0, 0); // windows the fused ReLU zeroed and kept
    for s in pool_shapes() {
        let cases = [(false, false, false), (true, false, false), (false, true, false), (true, true, false), (true, false, true), (true, true, true)];
        for (ties, relu, normalize) in cases {
            // With ties, values come from {0, 1, 2}: most windows hold repeated maxima and
            // the argmax must be the first one, as the reference's.
            // With the fused ReLU, values from {-1, 0, 1}: windows whose max is 0 are zeroed.
            // With the normalisation, values k/4 for k in -4..=4: ties again, and distinct
            // values stay far apart after it (no rounding can reorder them).
            let x: Vec<f32> = if normalize {
                (0..s.x_len()).map(|_| (rng.below(9) as f32 - 4.0) / 4.0).collect()
            } else if ties {
                (0..s.x_len()).map(|_| rng.below(3) as f32 - relu as u8 as f32).collect()
            } else {
                rng.uniform_vec(s.x_len(), -1.0, 1.0)
            };
            // A BatchNorm2d's statistics and parameters; gamma of either sign.
            let mean = rng.uniform_vec(s.c, -0.5, 0.5);
            let var = rng.uniform_vec(s.c, 0.25, 2.0);
            let gamma: Vec<f32> = rng.uniform_vec(s.c, 0.5, 1.5).iter().map(|g| if rng.below(2) == 0 { -g } else { *g }).collect();
            let beta = rng.uniform_vec(s.c, -0.5, 0.5);
            let dy = rng.uniform_vec(s.y_len(), -1.0, 1.0);
            let (mut y, mut am, mut dx) = (vec![0.0; s.y_len()], vec![0u32; s.y_len()], vec![0.0; s.x_len()]);
            // The twin: normalise (reference::batchnorm), then pool (and ReLU).
            let mut xn = x.clone();
            if normalize {
                let bs = BatchNormShape { n: s.n, c: s.c, hw: s.h * s.w };
                reference::batchnorm::normalize(&bs, &x, &mean, &var, &gamma, &beta, &mut xn);
            }
            reference::maxpool::forward_fused(&s, relu, &xn, &mut y, &mut am);
            reference::maxpool::backward(&s, &dy, &am, &mut dx);
            if relu {
                zeroed += am.iter().filter(|&&a| a == maxpool::NO_ARGMAX).count();
                kept += am.iter().filter(|&&a| a != maxpool::NO_ARGMAX).count();
            }

            let xb = upload(&ctx, &x);
            let (yb, amb) = (poisoned(&ctx, s.y_len()), poisoned_u32(&ctx, s.y_len()));
            let stats = [upload(&ctx, &mean), upload(&ctx, &var), upload(&ctx, &gamma), upload(&ctx, &beta)];
            let nz = maxpool::Normalize { mean: &stats[0], var: &stats[1], gamma: &stats[2], beta: &stats[3] };
            maxpool::forward_fused(&ctx, &s, relu, normalize.then_some(nz), &xb, &yb, &amb);
            let (dyb, amref, dxb) = (upload(&ctx, &dy), upload_u32(&ctx, &am), poisoned(&ctx, s.x_len()));
            maxpool::backward(&ctx, &s, &dyb, &amref, &dxb);

            // Max and routing move values without arithmetic: bit-exact; the normalisation
            // rounds in f32 (the reference in f64).
            let tol = if normalize { 2e-6 } else { 0.0 };
            let what = format!("{s:?} ties {ties} relu {relu} normalize {normalize}");
            check(&format!("maxpool forward y {what}"), seed, &ctx.read::<f32>(&yb), &y, tol, tol);
            let am_gpu: Vec<u32> = ctx.read(&amb);
            if let Some(o) = (0..am.len()).find(|&o| am_gpu[o] != am[o]) {
                panic!("maxpool forward argmax {what} (seed {seed}): [{o}] got {}, want {}", am_gpu[o], am[o]);
            }
            check(&format!("maxpool backward {what}"), seed, &ctx.read::<f32>(&dxb), &dx, 0.0, 0.0);
            ctx.clear_bind_groups();
        }
    }
    // Both sides of the fused ReLU were exercised.
    assert!(zeroed > 0 && kept > 0, "fused ReLU: {zeroed} windows zeroed, {kept} kept");
}

// ---- avgpool -------------------------------------------------------------------------

#[test]
fn avgpool_forward_and_backward_match_reference() {
    let ctx = ctx();
    let seed = seed();
    let mut rng = Rng::new(seed ^ 21);
    // every shape of the maxpool test (stride = k and not), and the 1998 LeNet-5's pools
    let mut shapes = pool_shapes();
    shapes.push(PoolShape { n: 100, c: 6, h: 28, w: 28, k: 2, stride: 2 });
    shapes.push(PoolShape { n: 7, c: 16, h: 10, w: 10, k: 2, stride: 2 });
    for s in shapes {
        let x = rng.uniform_vec(s.x_len(), -2.0, 2.0);
        let dy = rng.uniform_vec(s.y_len(), -1.0, 1.0);
        let (mut y, mut dx) = (vec![0.0; s.y_len()], vec![0.0; s.x_len()]);
        reference::avgpool::forward(&s, &x, &mut y);
        reference::avgpool::backward(&s, &dy, &mut dx);
        let (xb, dyb) = (upload(&ctx, &x), upload(&ctx, &dy));
        let (yb, dxb) = (poisoned(&ctx, s.y_len()), poisoned(&ctx, s.x_len()));
        avgpool::forward(&ctx, &s, &xb, &yb);
        avgpool::backward(&ctx, &s, &dyb, &dxb);
        // f32 sums of at most 25 terms against f64 ones
        check(&format!("avgpool forward {s:?}"), seed, &ctx.read::<f32>(&yb), &y, 1e-6, 1e-5);
        check(&format!("avgpool backward {s:?}"), seed, &ctx.read::<f32>(&dxb), &dx, 1e-6, 1e-5);
        ctx.clear_bind_groups();
    }
}

// ---- tanh, sigmoid -----------------------------------------------------------------------

#[test]
fn tanh_and_sigmoid_match_reference() {
    let ctx = ctx();
    let seed = seed();
    let mut rng = Rng::new(seed ^ 22);
    for f in [Activation::Tanh, Activation::Sigmoid] {
        // below and above the vec4 threshold, with and without a tail
        for len in [1, 3, 255, 256, 257, 1003, 50_001] {
            let mut x = rng.uniform_vec(len, -6.0, 6.0);
            // the saturated ends, where a naive exp would overflow, and 0
            for (i, v) in [0.0, 20.0, -20.0, 100.0, -100.0, 1e-7, -3e-4].into_iter().enumerate() {
                if i < len {
                    x[i] = v;
                }
            }
            let dy = rng.uniform_vec(len, -1.0, 1.0);
            let (mut y, mut dx) = (vec![0.0; len], vec![0.0; len]);
            reference::activation::forward(f, &x, &mut y);
            reference::activation::backward(f, &y, &dy, &mut dx);
            let (xb, dyb) = (upload(&ctx, &x), upload(&ctx, &dy));
            let (yb, dxb) = (poisoned(&ctx, len), poisoned(&ctx, len));
            activation::forward(&ctx, f, len, &xb, &yb);
            // The backward reads the reference's y so that each kernel is checked on its own.
            let yref = upload(&ctx, &y);
            activation::backward(&ctx, f, len, &yref, &dyb, &dxb);
            check(&format!("{f:?} forward len {len}"), seed, &ctx.read::<f32>(&yb), &y, 2e-6, 1e-5);
            check(&format!("{f:?} backward len {len}"), seed, &ctx.read::<f32>(&dxb), &dx, 2e-6, 1e-5);
            ctx.clear_bind_groups();
        }
    }
}

// ---- batchnorm -----------------------------------------------------------------------

/// Shapes for the scalar kernels (hw % 4 != 0) and the vec4 ones (hw % 4 == 0).
fn bn_shapes() -> Vec<BatchNormShape> {
    let b = |n, c, hw| BatchNormShape { n, c, hw };
    vec![
        b(1, 4, 9),      // scalar; batch 1, hw below the reductions' workgroup (64)
        b(3, 5, 13),     // scalar, odd everything
        b(2, 3, 301),    // scalar, hw above the workgroup and not a multiple of it
        b(300, 2, 1),    // scalar, hw = 1, batch above the workgroup
        b(2, 3, 300),    // vec4, 75 vec4s per plane (a partial last chunk)
        b(1, 3, 1028),   // vec4, batch 1, 257 vec4s per plane
        b(5, 2, 4),      // vec4, one vec4 per plane
        b(100, 20, 576), // seed bn1
        b(100, 50, 64),  // seed bn2
    ]
}

/// Channel values of the shape uniform in offset_c ± 1, with per-channel offsets up to ±3
/// (a one-pass Σx² formula would lose digits; the two-pass one must not).
fn bn_input(rng: &mut Rng, s: &BatchNormShape) -> Vec<f32> {
    let offsets = rng.uniform_vec(s.c, -3.0, 3.0);
    let mut x = rng.uniform_vec(s.len(), -1.0, 1.0);
    for (j, v) in x.iter_mut().enumerate() {
        *v += offsets[(j / s.hw) % s.c];
    }
    x
}

#[test]
fn batchnorm_fused_stats_and_normalize_match_reference() {
    let ctx = ctx();
    let seed = seed();
    let mut rng = Rng::new(seed ^ 3);
    for s in bn_shapes() {
        let x = bn_input(&mut rng, &s);
        let gamma = rng.uniform_vec(s.c, 0.5, 1.5);
        let beta = rng.uniform_vec(s.c, -0.5, 0.5);
        let rm0 = rng.uniform_vec(s.c, -0.5, 0.5);
        let rv0 = rng.uniform_vec(s.c, 0.5, 1.5);
        // The fused op's twin: stats, then update_running on those stats.
        let (mut mean, mut var, mut y) = (vec![0.0; s.c], vec![0.0; s.c], vec![0.0; s.len()]);
        reference::batchnorm::stats(&s, &x, &mut mean, &mut var);
        reference::batchnorm::normalize(&s, &x, &mean, &var, &gamma, &beta, &mut y);
        let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
        reference::batchnorm::update_running(&s, &mean, &var, &mut rm, &mut rv);

        // mean and var are overwritten (poisoned first); the running statistics are updated
        // in place (random start values).
        let xb = upload(&ctx, &x);
        let (mb, vb) = (poisoned(&ctx, s.c), poisoned(&ctx, s.c));
        let (rmb, rvb) = (upload(&ctx, &rm0), upload(&ctx, &rv0));
        batchnorm::stats(&ctx, &s, &xb, &mb, &vb, &rmb, &rvb);
        // normalize reads the reference's statistics: the kernel on its own
        let (mref, vref, gb, bb) = (upload(&ctx, &mean), upload(&ctx, &var), upload(&ctx, &gamma), upload(&ctx, &beta));
        let yb = poisoned(&ctx, s.len());
        batchnorm::normalize(&ctx, &s, &xb, &mref, &vref, &gb, &bb, &yb);

        // f32 sums of up to 57,600 values (900 serial per invocation, as 4 vec4
        // lanes, then a 64-leaf tree)
        // against f64 sums: measured errors are ~1e-7 relative; 2e-6 of the channel scale
        // (|mean| ≤ 4, var ≈ 1/3) leaves margin without hiding a wrong element count.
        check(&format!("bn stats mean {s:?}"), seed, &ctx.read::<f32>(&mb), &mean, 2e-6, 2e-6);
        check(&format!("bn stats var {s:?}"), seed, &ctx.read::<f32>(&vb), &var, 2e-6, 2e-6);
        // A handful of f32 operations per element (inverseSqrt allows 2 ulp): |y| ≲ 3.
        check(&format!("bn normalize {s:?}"), seed, &ctx.read::<f32>(&yb), &y, 1e-6, 1e-6);
        // The running update carries 0.1 of the batch statistics' error (above) plus three
        // f32 operations (a few ulp of |running| ≤ 1.5).
        check(&format!("bn running_mean {s:?}"), seed, &ctx.read::<f32>(&rmb), &rm, 3e-7, 1e-6);
        check(&format!("bn running_var {s:?}"), seed, &ctx.read::<f32>(&rvb), &rv, 3e-7, 1e-6);
        ctx.clear_bind_groups();
    }
}

#[test]
fn batchnorm_backward_accumulates_and_matches_reference() {
    let ctx = ctx();
    let seed = seed();
    let mut rng = Rng::new(seed ^ 4);
    for s in bn_shapes() {
        let x = bn_input(&mut rng, &s);
        let dy = rng.uniform_vec(s.len(), -1.0, 1.0);
        let gamma = rng.uniform_vec(s.c, 0.5, 1.5);
        // Accumulating outputs start from random values of the sums' scale.
        let (dg0, db0) = (rng.uniform_vec(s.c, -50.0, 50.0), rng.uniform_vec(s.c, -50.0, 50.0));
        let (mut mean, mut var) = (vec![0.0; s.c], vec![0.0; s.c]);
        reference::batchnorm::stats(&s, &x, &mut mean, &mut var);
        // Reference: this call's contribution alone (into zeros), then once and twice into dg0, db0.
        let mut dx = vec![0.0; s.len()];
        let (mut dg1, mut db1) = (vec![0.0; s.c], vec![0.0; s.c]);
        reference::batchnorm::backward(&s, &x, &dy, &mean, &var, &gamma, &mut dx, &mut dg1, &mut db1);
        let (mut dg, mut db) = (dg0.clone(), db0.clone());
        let mut dx_again = vec![0.0; s.len()];
        reference::batchnorm::backward(&s, &x, &dy, &mean, &var, &gamma, &mut dx_again, &mut dg, &mut db);
        assert_eq!(dx_again, dx, "reference dx must not depend on what dgamma, dbeta held");
        let (mut dg2, mut db2) = (dg.clone(), db.clone());
        reference::batchnorm::backward(&s, &x, &dy, &mean, &var, &gamma, &mut dx_again, &mut dg2, &mut db2);

        let (xb, dyb, mb, vb, gb) = (upload(&ctx, &x), upload(&ctx, &dy), upload(&ctx, &mean), upload(&ctx, &var), upload(&ctx, &gamma));
        let (dxb, dgb, dbb) = (poisoned(&ctx, s.len()), upload(&ctx, &dg0), upload(&ctx, &db0));
        batchnorm::backward(&ctx, &s, &xb, &dyb, &mb, &vb, &gb, &dxb, &dgb, &dbb);
        let (dx_gpu, dg_gpu, db_gpu) = (ctx.read::<f32>(&dxb), ctx.read::<f32>(&dgb), ctx.read::<f32>(&dbb));
        // The sums this call added, as the kernel left them for backward_dx.
        let sums: Vec<f32> = ctx.read(&ctx.scratch("batchnorm.sums", 2 * s.c));
        let (sg, sb) = sums[..2 * s.c].split_at(s.c);
        // The second call into the same buffers (dx poisoned again).
        let dx2b = poisoned(&ctx, s.len());
        batchnorm::backward(&ctx, &s, &xb, &dyb, &mb, &vb, &gb, &dx2b, &dgb, &dbb);
        // Also backward_dx alone, fed the reference's sums of one call.
        let (sums_ref, dx3b) = (upload(&ctx, &[dg1.clone(), db1.clone()].concat()), poisoned(&ctx, s.len()));
        batchnorm::backward_dx(&ctx, &s, &xb, &dyb, &mb, &vb, &gb, &sums_ref, &dx3b);

        // Σdy and Σdy·x̂ of m uniform(−1, 1) terms are random walks of size ~√(m/3)
        // (≈140 at m = 57,600); f32 rounding grows with the partial sums. Measured max
        // error 9e-5 at m = 57,600 (1.6e-9·m): allow 3e-8·m absolute (~12× that) and 1e-5
        // relative. Adding the start value costs one more rounding, well inside that.
        let m = s.per_channel() as f64;
        check(&format!("bn sums dgamma {s:?}"), seed, sg, &dg1, 3e-8 * m, 1e-5);
        check(&format!("bn sums dbeta {s:?}"), seed, sb, &db1, 3e-8 * m, 1e-5);
        check(&format!("bn dgamma += {s:?}"), seed, &dg_gpu, &dg, 3e-8 * m, 1e-5);
        check(&format!("bn dbeta += {s:?}"), seed, &db_gpu, &db, 3e-8 * m, 1e-5);
        check(&format!("bn dgamma += twice {s:?}"), seed, &ctx.read::<f32>(&dgb), &dg2, 6e-8 * m, 1e-5);
        check(&format!("bn dbeta += twice {s:?}"), seed, &ctx.read::<f32>(&dbb), &db2, 6e-8 * m, 1e-5);
        // Exactly f32(this call's sum) + old: no fused multiply-add, nothing else mixed in.
        let plus = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x + y).collect::<Vec<f32>>();
        check_bits(&format!("bn dgamma = sum + old {s:?}"), seed, &dg_gpu, &plus(sg, &dg0));
        check_bits(&format!("bn dbeta = sum + old {s:?}"), seed, &db_gpu, &plus(sb, &db0));
        // dx = gamma·istd·(dy − Σdy/m − x̂·Σdy·x̂/m): |dx| ≲ 3; the subtraction loses a few
        // ulp of |dy| ≤ 1, and the sums' own error enters divided by m. It uses this call's
        // sums only: the same on both calls, whatever dgamma and dbeta held.
        check(&format!("bn dx (fused sums) {s:?}"), seed, &dx_gpu, &dx, 2e-6, 1e-5);
        check_bits(&format!("bn dx second call {s:?}"), seed, &ctx.read::<f32>(&dx2b), &dx_gpu);
        check(&format!("bn backward_dx {s:?}"), seed, &ctx.read::<f32>(&dx3b), &dx, 1e-6, 1e-5);
        ctx.clear_bind_groups();
    }
}

// ---- reduce --------------------------------------------------------------------------

#[test]
fn sum_rows_accumulates_and_matches_reference() {
    let ctx = ctx();
    let seed = seed();
    let mut rng = Rng::new(seed ^ 5);
    for (rows, cols) in [(1, 1), (1, 500), (3, 257), (257, 3), (100, 500), (100, 10), (1000, 65)] {
        let x = rng.uniform_vec(rows * cols, -1.0, 1.0);
        let out0 = rng.uniform_vec(cols, -10.0, 10.0);
        let mut sum = vec![0.0; cols];
        reference::reduce::sum_rows(rows, cols, &x, &mut sum);
        let (mut once, mut twice) = (out0.clone(), vec![]);
        reference::reduce::sum_rows(rows, cols, &x, &mut once);
        twice.extend_from_slice(&once);
        reference::reduce::sum_rows(rows, cols, &x, &mut twice);
        let (xb, zb, ob) = (upload(&ctx, &x), upload(&ctx, &vec![0.0; cols]), upload(&ctx, &out0));
        reduce::sum_rows(&ctx, rows, cols, &xb, &zb);
        reduce::sum_rows(&ctx, rows, cols, &xb, &ob);
        let (sum_gpu, once_gpu) = (ctx.read::<f32>(&zb), ctx.read::<f32>(&ob));
        reduce::sum_rows(&ctx, rows, cols, &xb, &ob);
        // A serial f32 sum of `rows` terms in [−1, 1]: error ≤ rows·ulp-ish; allow
        // 1.2e-7·rows absolute (one ulp of the largest partial per term) and 1e-6 relative.
        let tol = 1.2e-7 * rows as f64;
        check(&format!("sum_rows {rows}×{cols} into zeros"), seed, &sum_gpu, &sum, tol, 1e-6);
        check(&format!("sum_rows {rows}×{cols} += once"), seed, &once_gpu, &once, tol, 1e-6);
        check(&format!("sum_rows {rows}×{cols} += twice"), seed, &ctx.read::<f32>(&ob), &twice, 2.0 * tol, 1e-6);
        // Exactly f32(Σ) + old: the column sum into zeros, plus the start value.
        let plus: Vec<f32> = sum_gpu.iter().zip(&out0).map(|(a, b)| a + b).collect();
        check_bits(&format!("sum_rows {rows}×{cols} = sum + old"), seed, &once_gpu, &plus);
        ctx.clear_bind_groups();
    }
}

/// Logits for `n` rows: random, or (ties) drawn from {0, 1, 2} so rows repeat their maximum.
fn logits(rng: &mut Rng, n: usize, classes: usize, ties: bool) -> Vec<f32> {
    if ties {
        (0..n * classes).map(|_| rng.below(3) as f32).collect()
    } else {
        rng.uniform_vec(n * classes, -4.0, 4.0)
    }
}

// rows below, at and above the reduction workgroup (64), the seed's 100×10, and many rows
const CE_SHAPES: [(usize, usize); 7] = [(1, 10), (7, 3), (5, 1), (64, 10), (100, 10), (255, 10), (1000, 10)];

#[test]
fn softmax_cross_entropy_matches_reference() {
    let ctx = ctx();
    let seed = seed();
    let mut rng = Rng::new(seed ^ 6);
    for (n, classes) in CE_SHAPES {
        let l = logits(&mut rng, n, classes, false);
        let labels: Vec<u32> = (0..n).map(|_| rng.below(classes) as u32).collect();
        let mut dl = vec![0.0; n * classes];
        let loss = reference::reduce::softmax_cross_entropy(n, classes, &l, &labels, &mut dl);
        let (lb, yb, lossb, dlb) = (upload(&ctx, &l), upload_u32(&ctx, &labels), poisoned(&ctx, 1), poisoned(&ctx, n * classes));
        let state = upload_u32(&ctx, &[0, 0]);
        reduce::softmax_cross_entropy(&ctx, n, classes, &lb, &yb, &lossb, &dlb, &state);
        assert_eq!(ctx.read::<u32>(&state), [1, 0], "ce {n}×{classes}: one finite step counted (seed {seed})");
        // Per row: exp/log (WGSL allows a few ulp) and a sum of ≤ 10 terms; the mean is a
        // tree over ≤ 1000 rows. Loss ≈ 2–8: 1e-6 relative plus 1e-6 absolute.
        check(&format!("ce loss {n}×{classes}"), seed, &ctx.read::<f32>(&lossb), &[loss], 1e-6, 1e-6);
        // |dlogits| ≤ 1/n: 1e-5 relative of each, plus 1e-7/n for the near-zero probabilities.
        check(&format!("ce dlogits {n}×{classes}"), seed, &ctx.read::<f32>(&dlb), &dl, 1e-7 / n as f64, 1e-5);
        ctx.clear_bind_groups();
    }
}

#[test]
fn count_correct_matches_reference_exactly_and_accumulates() {
    let ctx = ctx();
    let seed = seed();
    let mut rng = Rng::new(seed ^ 7);
    for (n, classes) in CE_SHAPES {
        for ties in [false, true] {
            let l = logits(&mut rng, n, classes, ties);
            // Labels biased towards each row's first max so that many rows count.
            let labels: Vec<u32> = (0..n)
                .map(|i| {
                    if rng.below(2) == 0 {
                        rng.below(classes) as u32
                    } else {
                        let row = &l[i * classes..(i + 1) * classes];
                        (0..classes).fold(0, |b, j| if row[j] > row[b] { j } else { b }) as u32
                    }
                })
                .collect();
            let want = reference::reduce::count_correct(n, classes, &l, &labels);
            let start = rng.below(1000) as u32;
            let (lb, yb, cb) = (upload(&ctx, &l), upload_u32(&ctx, &labels), upload_u32(&ctx, &[start]));
            reduce::count_correct(&ctx, n, classes, &lb, &yb, &cb);
            let once: Vec<u32> = ctx.read(&cb);
            assert_eq!(once[0], start + want, "count_correct {n}×{classes} ties {ties} (seed {seed}): started at {start}");
            reduce::count_correct(&ctx, n, classes, &lb, &yb, &cb);
            let twice: Vec<u32> = ctx.read(&cb);
            assert_eq!(twice[0], start + 2 * want, "count_correct twice {n}×{classes} ties {ties} (seed {seed})");
            ctx.clear_bind_groups();
        }
    }
}

/// The confusion matrix: random start counts (it accumulates), ties, out-of-range labels
/// (counted nowhere), batches not a multiple of the workgroup; counted twice.
#[test]
fn confusion_matches_reference_exactly_and_accumulates() {
    let ctx = ctx();
    let seed = seed();
    let mut rng = Rng::new(seed ^ 8);
    for (n, classes) in CE_SHAPES {
        for ties in [false, true] {
            let l = logits(&mut rng, n, classes, ties);
            // Mostly valid labels, a few out of range.
            let labels: Vec<u32> = (0..n).map(|_| if rng.below(20) == 0 { classes as u32 + rng.below(3) as u32 } else { rng.below(classes) as u32 }).collect();
            let start: Vec<u32> = (0..classes * classes).map(|_| rng.below(1000) as u32).collect();
            let mut want = start.clone();
            reference::reduce::confusion(n, classes, &l, &labels, &mut want);
            let (lb, yb, cb) = (upload(&ctx, &l), upload_u32(&ctx, &labels), upload_u32(&ctx, &start));
            reduce::confusion(&ctx, n, classes, &lb, &yb, &cb);
            assert_eq!(ctx.read::<u32>(&cb), want, "confusion {n}×{classes} ties {ties} (seed {seed})");
            let valid = labels.iter().filter(|&&y| (y as usize) < classes).count() as u32;
            let added: u32 = want.iter().zip(&start).map(|(w, s)| w - s).sum();
            assert_eq!(added, valid, "confusion {n}×{classes}: one count per valid label (seed {seed})");
            reference::reduce::confusion(n, classes, &l, &labels, &mut want);
            reduce::confusion(&ctx, n, classes, &lb, &yb, &cb);
            assert_eq!(ctx.read::<u32>(&cb), want, "confusion twice {n}×{classes} ties {ties} (seed {seed})");
            ctx.clear_bind_groups();
        }
    }
}

/// The step state of the loss kernel: state[0] counts the calls (this step's t), state[1]
/// keeps the first step whose loss was NaN or ±inf, never overwritten; the reference's
/// count_step does the same to the same state.
#[test]
fn softmax_cross_entropy_counts_steps_and_keeps_the_first_nonfinite_one() {
    let ctx = ctx();
    let (n, classes) = (7, 3);
    let labels = upload_u32(&ctx, &[0, 1, 2, 0, 1, 2, 0]);
    let (lossb, dlb) = (ctx.buffer(1), ctx.buffer(n * classes));
    let finite: Vec<f32> = (0..n * classes).map(|i| (i % 5) as f32 - 2.0).collect();
    let with = |v: f32| {
        let mut l = finite.clone();
        l[4] = v;
        l
    };
    let run = |state: &RawBuffer, logits: &[f32], want_state: &mut [u32]| -> (f32, Vec<u32>) {
        let lb = upload(&ctx, logits);
        reduce::softmax_cross_entropy(&ctx, n, classes, &lb, &labels, &lossb, &dlb, state);
        let loss = ctx.read::<f32>(&lossb)[0];
        reference::reduce::count_step(loss as f64, want_state);
        (loss, ctx.read::<u32>(state))
    };
    let state = upload_u32(&ctx, &[0, 0]);
    let mut want = [0u32, 0];
    // (logits, loss finite?) in order: two good steps, NaN at step 3, then inf and good ones.
    let steps = [(finite.clone(), true), (finite.clone(), true), (with(f32::NAN), false), (with(f32::INFINITY), false), (finite.clone(), true)];
    for (t, (logits, ok)) in steps.iter().enumerate() {
        let (loss, got) = run(&state, logits, &mut want);
        assert_eq!(loss.is_finite(), *ok, "step {}: loss {loss}", t + 1);
        assert_eq!(got, want, "step {}: state vs the reference's count_step", t + 1);
        assert_eq!(got[0], t as u32 + 1, "state[0] is the step number");
        assert_eq!(got[1], if t < 2 { 0 } else { 3 }, "state[1] is the first bad step (3), kept");
    }
    // From any count, with −inf and an out-of-range label (NaN loss) on a clear flag.
    for (start, logits, bad_label) in [(1000, with(f32::NEG_INFINITY), false), (41, finite.clone(), true)] {
        let state = upload_u32(&ctx, &[start, 0]);
        if bad_label {
            ctx.write(&labels, &[0u32, 1, 2, 0, 3, 2, 0]);
        }
        let mut want = [start, 0];
        let (loss, got) = run(&state, &logits, &mut want);
        assert!(!loss.is_finite(), "loss {loss}");
        assert_eq!(got, [start + 1, start + 1]);
        assert_eq!(got, want);
    }
}

// ---- adam ----------------------------------------------------------------------------

/// Adam over a parameter store (tensors at 64-element aligned offsets of one buffer), one
/// dispatch per step, with the step number counted on the device by the loss kernel and the
/// bias corrections from a table written once. Each step is checked element by element
/// against `reference::adam::step` on each tensor, run from the GPU's state before the step
/// (so each step's own error is measured): m and v are bit-identical; param is NOT always
/// within 1 ulp: the kernel multiplies by f32(1/√bc2) where the reference divides by
/// f32(√bc2), which moves the denominator by up to ~1.5 ulp and the update by a few ulp of
/// itself, and the subtraction rounds once more. Measured over 25 seeds × 5 steps: at most
/// 3 ulp of max(|param|, |update|) (mostly ≤ 2; about 0.4 % of the elements differ at all);
/// allowed: 4.
#[test]
fn adam_over_a_store_matches_reference() {
    let ctx = ctx();
    let seed = seed();
    let mut rng = Rng::new(seed ^ 8);
    let cfg = AdamConfig::default();
    // A few tensors (the seed's small ones, a large one, odd lengths), each padded to 64.
    let lens: [usize; 7] = [500, 20, 25_000, 50, 3, 10, 1_001];
    let offsets: Vec<usize> = lens.iter().scan(0, |o, &l| Some(std::mem::replace(o, *o + l.div_ceil(64) * 64))).collect();
    let len = offsets.last().unwrap() + lens.last().unwrap().div_ceil(64) * 64;
    let view = |k: usize| offsets[k]..offsets[k] + lens[k];
    let mut p0 = vec![0.0f32; len];
    for (k, &l) in lens.iter().enumerate() {
        p0[view(k)].copy_from_slice(&rng.uniform_vec(l, -1.0, 1.0));
    }
    let (pb, gb, mb, vb) = (upload(&ctx, &p0), ctx.buffer(len), ctx.buffer(len), ctx.buffer(len));
    // The loss kernel advances state[0] to each step's t; the table covers steps 1..=5.
    let state = upload_u32(&ctx, &[0, 0]);
    let table = upload(&ctx, &adam::hyper_table(&cfg, 1, 5));
    let (logits, labels, loss, dl) = (upload(&ctx, &[0.5, -0.5]), upload_u32(&ctx, &[1]), ctx.buffer(1), ctx.buffer(2));
    let ulp = |x: f32| f32::from_bits(x.abs().to_bits() + 1) - x.abs();
    for t in 1..=5 {
        let (mut p, mut m, mut v): (Vec<f32>, Vec<f32>, Vec<f32>) = (ctx.read(&pb), ctx.read(&mb), ctx.read(&vb));
        let before = p.clone();
        let mut g = vec![0.0f32; len]; // the padding's gradient is 0
        for (k, &l) in lens.iter().enumerate() {
            let r = view(k);
            g[r.clone()].copy_from_slice(&rng.uniform_vec(l, -1.0, 1.0));
            reference::adam::step(&cfg, t, &mut p[r.clone()], &g[r.clone()], &mut m[r.clone()], &mut v[r]);
        }
        ctx.write(&gb, &g);
        reduce::softmax_cross_entropy(&ctx, 1, 2, &logits, &labels, &loss, &dl, &state);
        let dispatches = ctx.dispatches.get();
        adam::step(&ctx, &cfg, len, &state, &table, &pb, &gb, &mb, &vb);
        assert_eq!(ctx.dispatches.get() - dispatches, 1, "one dispatch for the whole store");
        assert_eq!(ctx.read::<u32>(&state)[0], t, "the loss kernel counted step {t}");
        let (pg, mg, vg): (Vec<f32>, Vec<f32>, Vec<f32>) = (ctx.read(&pb), ctx.read(&mb), ctx.read(&vb));
        check_bits(&format!("adam store m t {t}"), seed, &mg, &m);
        check_bits(&format!("adam store v t {t}"), seed, &vg, &v);
        let (mut differ, mut worst) = (0, 0.0f64);
        for i in 0..len {
            let scale = ulp(p[i].abs().max((before[i] - p[i]).abs()));
            let e = ((pg[i] - p[i]).abs() / scale) as f64;
            differ += (pg[i] != p[i]) as usize;
            worst = worst.max(e);
            assert!(e <= 4.0, "adam store param t {t} (seed {seed}): [{i}] got {:e}, want {:e} (from {:e})", pg[i], p[i], before[i]);
        }
        eprintln!("adam store of {len}, t {t}: m, v bit-identical; {differ} params differ, worst {worst} ulp of max(|p|, |update|)");
        // The padding stays 0 in m and v, and its parameters (0) do not move.
        assert!(mg[lens[0]..offsets[1]].iter().chain(&pg[lens[0]..offsets[1]]).all(|&x| x == 0.0));
    }
}

/// Per-tensor lengths with and without a scalar tail (and short ones, scalar only), the
/// step number written from the host, over three steps against the reference.
#[test]
fn adam_three_steps_match_reference() {
    let ctx = ctx();
    let seed = seed();
    let mut rng = Rng::new(seed ^ 11);
    let cfg = AdamConfig::default();
    let table = upload(&ctx, &adam::hyper_table(&cfg, 1, 3));
    for len in [1, 3, 10, 20, 50, 257, 500, 5_000, 25_000, 400_000, 400_003] {
        let mut p = rng.uniform_vec(len, -1.0, 1.0);
        let (mut m, mut v) = (vec![0.0f32; len], vec![0.0f32; len]);
        let (pb, mb, vb, gb, sb) = (upload(&ctx, &p), ctx.buffer(len), ctx.buffer(len), ctx.buffer(len), ctx.buffer(2));
        for t in 1..=3 {
            let g = rng.uniform_vec(len, -1.0, 1.0);
            reference::adam::step(&cfg, t, &mut p, &g, &mut m, &mut v);
            ctx.write(&gb, &g);
            ctx.write(&sb, &[t]);
            adam::step(&ctx, &cfg, len, &sb, &table, &pb, &gb, &mb, &vb);
            ctx.submit();
            // m, v: two multiply-adds per step, a few ulp. param ≈ 1 moves by ≈ lr per
            // step; the step's own error (sqrt, divide, 1/√bc2 rounded once) is a few ulp
            // of lr, so 1e-6 relative to |param| plus 1e-9 absolute.
            check(&format!("adam m len {len} t {t}"), seed, &ctx.read::<f32>(&mb), &m, 1e-9, 1e-6);
            check(&format!("adam v len {len} t {t}"), seed, &ctx.read::<f32>(&vb), &v, 1e-12, 1e-6);
            check(&format!("adam param len {len} t {t}"), seed, &ctx.read::<f32>(&pb), &p, 1e-9, 1e-6);
        }
        ctx.clear_bind_groups();
    }
}

/// A step outside the table writes NaN into every parameter (so the non-finite guard
/// trips) and leaves m and v alone; a table starting later serves its own steps.
#[test]
fn adam_outside_its_table_writes_nan_params() {
    let ctx = ctx();
    let cfg = AdamConfig::default();
    for len in [4_096, 4_099, 100] {
        // vec4 only, vec4 + a tail of 3, scalar only
        let (p0, g, m0) = (vec![0.5f32; len], vec![0.25f32; len], vec![0.125f32; len]);
        for (first, rows, t, inside) in [(1, 3, 4, false), (1, 3, 0, false), (5, 2, 4, false), (5, 2, 7, false), (5, 2, 6, true), (5, 2, 5, true)] {
            let (pb, gb, mb, vb) = (upload(&ctx, &p0), upload(&ctx, &g), upload(&ctx, &m0), upload(&ctx, &m0));
            let (state, table) = (upload_u32(&ctx, &[t, 0]), upload(&ctx, &adam::hyper_table(&cfg, first, rows)));
            adam::step(&ctx, &cfg, len, &state, &table, &pb, &gb, &mb, &vb);
            let (pg, mg) = (ctx.read::<f32>(&pb), ctx.read::<f32>(&mb));
            let what = format!("len {len}, table {first}..{}, t {t}", first + rows);
            if inside {
                let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), m0.clone());
                reference::adam::step(&cfg, t, &mut p, &g, &mut m, &mut v);
                check(&what, 0, &pg, &p, 1e-9, 1e-6);
            } else {
                assert!(pg.iter().all(|x| x.is_nan()), "{what}: every param must be NaN");
                assert_eq!(mg, m0, "{what}: m must be left alone");
                assert_eq!(ctx.read::<f32>(&vb), m0, "{what}: v must be left alone");
            }
            ctx.clear_bind_groups();
        }
    }
}

/// Adam's weight decay (the L2 term) and AdamW's decoupled decay, over three steps, each
/// run by the reference from the GPU's state before it (so each step's own error is
/// measured, as `adam_over_a_store_matches_reference` does). The L2 term g + wd·p may be
/// fused on the GPU and rounds twice in the reference: an ulp of |g| + wd·|p| (< 1.1 here),
/// which m takes times 1 − β1: m within 2e-8 absolute. v as plain Adam's. param within
/// 1e-6·lr absolute plus 1e-6 relative: the update's error is that of m over √v̂ ≥ about
/// 0.7·|g| (v̂ holds this step's g²), a few 1e-7 of lr; a wrong decay moves p by
/// lr·wd·|p|, about 1e-3·lr here and more.
#[test]
fn adam_weight_decay_and_adamw_match_reference() {
    let ctx = ctx();
    let seed = seed();
    let mut rng = Rng::new(seed ^ 12);
    let configs = [
        AdamConfig { lr: 1e-2, weight_decay: 0.1, ..AdamConfig::default() },
        AdamConfig { lr: 1e-2, weight_decay: 0.1, ..AdamConfig::adamw(1e-2) },
        AdamConfig::adamw(1e-3),
    ];
    for cfg in configs {
        let table = upload(&ctx, &adam::hyper_table(&cfg, 1, 3));
        for len in [1, 3, 257, 1_003, 5_000, 40_001] {
            let p0 = rng.uniform_vec(len, -1.0, 1.0);
            let (pb, mb, vb, gb, sb) = (upload(&ctx, &p0), ctx.buffer(len), ctx.buffer(len), ctx.buffer(len), ctx.buffer(2));
            for t in 1..=3 {
                let g = rng.uniform_vec(len, -1.0, 1.0);
                let (mut p, mut m, mut v): (Vec<f32>, Vec<f32>, Vec<f32>) = (ctx.read(&pb), ctx.read(&mb), ctx.read(&vb));
                reference::adam::step(&cfg, t, &mut p, &g, &mut m, &mut v);
                ctx.write(&gb, &g);
                ctx.write(&sb, &[t]);
                adam::step(&ctx, &cfg, len, &sb, &table, &pb, &gb, &mb, &vb);
                let what = format!("{} wd {} len {len} t {t}", if cfg.decoupled { "adamw" } else { "adam" }, cfg.weight_decay);
                check(&format!("{what} m"), seed, &ctx.read::<f32>(&mb), &m, 2e-8, 1e-6);
                check(&format!("{what} v"), seed, &ctx.read::<f32>(&vb), &v, 1e-12, 1e-6);
                check(&format!("{what} param"), seed, &ctx.read::<f32>(&pb), &p, 1e-6 * cfg.lr as f64, 1e-6);
            }
            ctx.clear_bind_groups();
        }
    }
}

#[test]
fn hyper_table_layout() {
    let cfg = AdamConfig::default();
    let t = adam::hyper_table(&cfg, 7, 3);
    assert_eq!(t.len(), 4 + 4 * 3);
    assert_eq!((t[0].to_bits(), t[1].to_bits(), t[2], t[3]), (7, 3, 0.0, 0.0));
    for r in 0..3 {
        assert_eq!(t[4 + 4 * r..8 + 4 * r], reference::adam::hyper(&cfg, 7 + r as u32));
    }
}

// ---- sgd -----------------------------------------------------------------------------

/// SGD in every form PyTorch has (plain, weight decay, momentum, dampening, Nesterov), over
/// four steps from fresh state, against `reference::sgd::step`, each step run from the GPU's
/// state before it (its own error measured), at lengths below and above the vec4 threshold,
/// with and without a tail, and the LeNet-5 store's. The first step with a momentum must
/// not read the buffer: it starts NaN-poisoned, and so stays untouched without a momentum.
/// Each value is a few roundings (p − lr·(g + wd·p), μ·b + (1 − dampening)·d, d + μ·b): the
/// GPU may fuse a multiply-add where the reference rounds twice, an ulp of the largest term,
/// so 2e-7 absolute (the terms stay below about 1) plus 1e-6 relative.
#[test]
fn sgd_matches_reference() {
    let ctx = ctx();
    let seed = seed();
    let mut rng = Rng::new(seed ^ 13);
    let configs = [
        SgdConfig { lr: 0.1, ..SgdConfig::default() },
        SgdConfig { lr: 0.1, weight_decay: 0.01, ..SgdConfig::default() },
        SgdConfig { lr: 0.05, momentum: 0.9, ..SgdConfig::default() },
        SgdConfig { lr: 0.05, momentum: 0.5, dampening: 0.3, weight_decay: 1e-3, ..SgdConfig::default() },
        SgdConfig { lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 5e-4, ..SgdConfig::default() },
    ];
    for cfg in configs {
        for len in [1, 3, 255, 257, 1_003, 4_099, 50_001, 431_552] {
            let mut p = rng.uniform_vec(len, -1.0, 1.0);
            let mut b = vec![f32::NAN; len];
            let (pb, gb, bb) = (upload(&ctx, &p), ctx.buffer(len), poisoned(&ctx, len));
            for t in 1..=4 {
                let first = t == 1;
                let g = rng.uniform_vec(len, -1.0, 1.0);
                let (mut pw, mut bw): (Vec<f32>, Vec<f32>) = (ctx.read(&pb), ctx.read(&bb));
                reference::sgd::step(&cfg, first, &mut pw, &g, &mut bw);
                reference::sgd::step(&cfg, first, &mut p, &g, &mut b);
                ctx.write(&gb, &g);
                let dispatches = ctx.dispatches.get();
                sgd::step(&ctx, &cfg, first, len, &pb, &gb, &bb);
                if len % 4 == 0 && len >= activation::VEC4_MIN {
                    assert_eq!(ctx.dispatches.get() - dispatches, 1, "one dispatch over a store of {len}");
                }
                let what = format!("sgd {cfg:?} len {len} t {t}");
                let (pg, bg): (Vec<f32>, Vec<f32>) = (ctx.read(&pb), ctx.read(&bb));
                check(&format!("{what} param"), seed, &pg, &pw, 2e-7, 1e-6);
                if cfg.momentum == 0.0 {
                    assert!(bg.iter().all(|x| x.is_nan()), "{what}: without a momentum the buffer is not written");
                } else {
                    check(&format!("{what} buffer"), seed, &bg, &bw, 2e-7, 1e-6);
                }
                // And the GPU's trajectory stays near the reference's own over the steps.
                check(&format!("{what} param after {t} steps"), seed, &pg, &p, 1e-6, 1e-5);
            }
            ctx.clear_bind_groups();
        }
    }
}

// ---- gather --------------------------------------------------------------------------

#[test]
fn gather_matches_reference() {
    let ctx = ctx();
    let seed = seed();
    let mut rng = Rng::new(seed ^ 9);
    // (images, pixels, n, offset): 13 and 7 pixels straddle u32 words (scalar kernel);
    // 784 (MNIST) and 4 are whole words (vec4 kernel); n from 1 to above a workgroup.
    let cases = [(5, 13, 1, 0), (37, 13, 20, 9), (301, 7, 300, 1), (300, 784, 100, 150), (1000, 784, 1, 999), (200, 4, 150, 7)];
    for (count, pixels, n, offset) in cases {
        let images: Vec<u8> = (0..count * pixels).map(|_| rng.below(256) as u8).collect();
        let labels: Vec<u8> = (0..count).map(|_| rng.below(10) as u8).collect();
        let mut perm: Vec<u32> = (0..count as u32).collect();
        rng.shuffle(&mut perm);
        let (mut x, mut y) = (vec![0.0; n * pixels], vec![0u32; n]);
        reference::gather::gather(&images, &labels, pixels, &perm, offset, n, &mut x, &mut y);

        let ib = upload_u32(&ctx, &gather::pack_u8(&images));
        let lb = upload_u32(&ctx, &labels.iter().map(|&l| l as u32).collect::<Vec<_>>());
        let pb = upload_u32(&ctx, &perm);
        let (xb, yb) = (poisoned(&ctx, n * pixels), poisoned_u32(&ctx, n));
        gather::gather(&ctx, &ib, &lb, pixels, &pb, offset, n, &xb, &yb);
        // b/255 is one division: WGSL allows 2.5 ulp, so 3e-7 relative.
        check(&format!("gather x {count}×{pixels} n {n} offset {offset}"), seed, &ctx.read::<f32>(&xb), &x, 0.0, 3e-7);
        assert_eq!(ctx.read::<u32>(&yb), y, "gather y {count}×{pixels} n {n} offset {offset} (seed {seed})");
        ctx.clear_bind_groups();
    }
}

#[test]
fn pack_u8_is_little_endian_and_pads() {
    assert_eq!(gather::pack_u8(&[1, 2, 3, 4, 5]), vec![0x0403_0201, 5]);
    assert_eq!(gather::pack_u8(&[]), Vec::<u32>::new());
}
