//! The fused BatchNorm2d → MaxPool2d kernels against the composition of their reference
//! twins: the backward that takes the pool's output gradient (`batchnorm::backward_pooled`,
//! 2 dispatches for what was the pool's backward and BatchNorm2d's). The forward with the
//! normalisation and ReLU inside the pool is in gpu_ops.rs (the maxpool test).

mod common;

use wgsl_cnn::compare::compare;
use wgsl_cnn::gpu::{batchnorm, AdapterChoice, GpuContext};
use wgsl_cnn::reference::{self, maxpool::NO_ARGMAX};
use wgsl_cnn::rng::Rng;
use wgsl_cnn::shapes::{BatchNormShape, PoolShape};

#[track_caller]
fn check(what: &str, seed: u64, got: &[f32], want: &[f32], atol: f64, rtol: f64) {
    let c = compare(got, want, atol, rtol);
    eprintln!("{what}: {c}");
    assert!(c.passed(), "{what} (seed {seed}): {c}");
}

/// A pool's argmax: for each window a random position inside it, or NO_ARGMAX (a window a
/// fused ReLU zeroed) for about a third of them.
fn random_argmax(rng: &mut Rng, s: &PoolShape) -> Vec<u32> {
    let (ho, wo) = (s.h_out(), s.w_out());
    (0..s.y_len())
        .map(|o| {
            if rng.below(3) == 0 {
                return NO_ARGMAX;
            }
            let (oy, ox) = ((o / wo) % ho, o % wo);
            ((oy * s.k + rng.below(s.k)) * s.w + ox * s.k + rng.below(s.k)) as u32
        })
        .collect()
}

#[test]
fn batchnorm_backward_through_the_pool_matches_pool_then_batchnorm_backward() {
    let ctx = GpuContext::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"));
    let seed = common::base_seed();
    let mut rng = Rng::new(seed ^ 0x9001);
    let p = |n, c, h, w, k| PoolShape { n, c, h, w, k, stride: k };
    let shapes = [
        p(3, 5, 8, 12, 2),    // k = 2, w % 4 == 0, h even: the vec4 dx kernel
        p(2, 3, 7, 9, 2),     // odd h and w: a row and a column outside every window
        p(2, 4, 9, 10, 3),    // k = 3
        p(1, 2, 6, 8, 2),     // batch 1
        p(100, 20, 24, 24, 2), // the seed's blocks
        p(100, 50, 8, 8, 2),
    ];
    for ps in shapes {
        let s = BatchNormShape { n: ps.n, c: ps.c, hw: ps.h * ps.w };
        let offsets = rng.uniform_vec(s.c, -3.0, 3.0);
        let x: Vec<f32> = rng.uniform_vec(s.len(), -1.0, 1.0).iter().enumerate().map(|(j, v)| v + offsets[(j / s.hw) % s.c]).collect();
        let gamma: Vec<f32> = rng.uniform_vec(s.c, 0.5, 1.5).iter().map(|g| if rng.below(2) == 0 { -g } else { *g }).collect();
        let argmax = random_argmax(&mut rng, &ps);
        let dpool = rng.uniform_vec(ps.y_len(), -1.0, 1.0);
        let (dg0, db0) = (rng.uniform_vec(s.c, -5.0, 5.0), rng.uniform_vec(s.c, -5.0, 5.0));
        let (mut mean, mut var) = (vec![0.0; s.c], vec![0.0; s.c]);
        reference::batchnorm::stats(&s, &x, &mut mean, &mut var);

        // The composition: route dpool through the argmax, then BatchNorm2d's backward.
        let mut routed = vec![f32::NAN; s.len()];
        reference::maxpool::backward(&ps, &dpool, &argmax, &mut routed);
        let (mut dx, mut dg, mut db) = (vec![0.0; s.len()], dg0.clone(), db0.clone());
        reference::batchnorm::backward(&s, &x, &routed, &mean, &var, &gamma, &mut dx, &mut dg, &mut db);

        let up = |v: &[f32]| {
            let b = ctx.buffer(v.len());
            ctx.write(&b, v);
            b
        };
        let amb = ctx.buffer(argmax.len());
        ctx.write(&amb, &argmax);
        let (xb, dyb, mb, vb, gb) = (up(&x), up(&dpool), up(&mean), up(&var), up(&gamma));
        let (dxb, dgb, dbb) = (up(&vec![f32::NAN; s.len()]), up(&dg0), up(&db0));
        batchnorm::backward_pooled(&ctx, &s, &ps, &xb, &dyb, &amb, &mb, &vb, &gb, &dxb, &dgb, &dbb);

        // Tolerances as gpu_ops' batchnorm backward test (sums of m terms; dx of size ~3).
        let m = s.per_channel() as f64;
        let what = format!("{ps:?} seed={seed:#x}");
        check(&format!("pooled bn dgamma {what}"), seed, &ctx.read::<f32>(&dgb), &dg, 3e-8 * m, 1e-5);
        check(&format!("pooled bn dbeta {what}"), seed, &ctx.read::<f32>(&dbb), &db, 3e-8 * m, 1e-5);
        check(&format!("pooled bn dx {what}"), seed, &ctx.read::<f32>(&dxb), &dx, 2e-6, 1e-5);
        ctx.clear_bind_groups();
    }
}
