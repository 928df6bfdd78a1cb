//! conv2d.wgsl vs the CPU reference (f64 accumulation, rounded to f32): forward, input,
//! weight and bias gradients, with every kernel family that fits each shape (the row kernels
//! where stride 1 / small k / rows a multiple of 4 allow, the direct kernels always), on
//! batch 1, odd sizes, stride 2 and padding 1–2, channel counts that are not multiples of
//! the 4- or 8-channel blocks, and the seed's two convolutions. The input gradient also runs
//! the scatter kernel where it fits (dy rows 4, 8, 12 long; pad 0, 1, 2), and every op the
//! tiled implicit-GEMM kernels wherever the adapter's limits take them (no shape here is a
//! multiple of their 64×64 tile; a test below says whether they ran), and the subgroup
//! kernels, with and without their shuffles, where the device has subgroups (lavapipe's
//! Vulkan adapter does; a test below checks that, and that GL has none).
//!
//! Forward and input gradient overwrite their output, which is NaN-poisoned first (an
//! unwritten element fails). The weight and bias gradients add into theirs, which is filled
//! with random values first: the result must be those values plus the reference's
//! contribution (the reference accumulates the same way).

mod common;
use wgsl_cnn::compare::compare;
use wgsl_cnn::gpu::conv2d::{self, grad_input_rows_fit, grad_input_scatter_fit, rows_fit, subgroup_runs, tiled_fits, ConvKernel};
use wgsl_cnn::gpu::{AdapterChoice, GpuContext};
use wgsl_cnn::reference;
use wgsl_cnn::rng::Rng;
use wgsl_cnn::shapes::Conv2dShape;

fn ctx() -> GpuContext {
    GpuContext::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Tolerance for sums of `terms` products of values in U(−1, 1) (standard deviation 1/3
/// each), accumulated in f32 on the GPU (serially within an invocation, then over split-K
/// partials or a tree): the rounding errors add like a random walk, each at most
/// eps·|partial sum| with |partial sum| ≲ √terms/3·(a few), so atol = 4·eps·√terms·(√terms/3).
/// For conv1's weight gradient (terms = 100·24·24 = 57,600) that is 9.2e-3 against sums of
/// typical size 80 (1.1e-4 relative); the measured errors are far smaller, and the relative
/// L2 error is held to 1e-5 on top (fp32 lands near 1e-7..1e-6).
fn tolerance(terms: usize) -> (f64, f64) {
    let eps = f32::EPSILON as f64;
    let t = terms.max(1) as f64;
    (4.0 * eps * t.sqrt() * (t.sqrt() / 3.0), 1e-5)
}

fn assert_close(what: &str, got: &[f32], want: &[f32], terms: usize) {
    let (atol, rtol) = tolerance(terms);
    let cmp = compare(got, want, atol, rtol);
    eprintln!("{what} (atol {atol:.2e}, rtol {rtol:.0e}): {cmp}");
    assert!(cmp.passed(), "{what}: {cmp}");
    assert!(cmp.rel_l2_err <= 1e-5, "{what}: relative L2 error too large: {cmp}");
}

#[allow(clippy::too_many_arguments)]
fn shape(n: usize, c_in: usize, h: usize, w: usize, c_out: usize, k: usize, stride: usize, pad: usize) -> Conv2dShape {
    Conv2dShape { n, c_in, h, w, c_out, k, stride, pad }
}

/// Runs every op of `s` with every kernel family that fits, against the reference.
fn check_all(ctx: &GpuContext, s: Conv2dShape, seed: u64, with_grad_input: bool) {
    let mut rng = Rng::new(seed);
    let x = rng.uniform_vec(s.x_len(), -1.0, 1.0);
    let w = rng.uniform_vec(s.w_len(), -1.0, 1.0);
    let b = rng.uniform_vec(s.c_out, -1.0, 1.0);
    let dy = rng.uniform_vec(s.y_len(), -1.0, 1.0);

    let (xb, wb, bb, dyb) = (ctx.buffer(x.len()), ctx.buffer(w.len()), ctx.buffer(b.len()), ctx.buffer(dy.len()));
    ctx.write(&xb, &x);
    ctx.write(&wb, &w);
    ctx.write(&bb, &b);
    ctx.write(&dyb, &dy);
    let out_with = |init: &[f32]| {
        let o = ctx.buffer(init.len());
        ctx.write(&o, init);
        o
    };
    let out = |len: usize| out_with(&vec![f32::NAN; len]);
    // Drawn after the inputs, so that these stay as before for a given seed.
    let dw0 = rng.uniform_vec(s.w_len(), -1.0, 1.0);
    let db0 = rng.uniform_vec(s.c_out, -1.0, 1.0);
    let positions = s.n * s.h_out() * s.w_out();

    let mut fw = vec![0.0f32; s.y_len()];
    reference::conv2d::forward(&s, &x, &w, &b, &mut fw);
    let mut variants = vec![ConvKernel::Auto, ConvKernel::Direct];
    if rows_fit(&s) {
        variants.push(ConvKernel::Rows);
    }
    if tiled_fits(ctx) {
        variants.push(ConvKernel::Tiled);
    }
    if subgroup_runs(ctx) {
        variants.extend([ConvKernel::Subgroup, ConvKernel::SubgroupUnshared]);
    }
    for &kern in &variants {
        let y = out(s.y_len());
        conv2d::forward_with(ctx, kern, &s, &xb, &wb, &bb, &y);
        let what = format!("forward {s:?} {kern:?} seed={seed:#x}");
        assert_close(&what, &ctx.read::<f32>(&y), &fw, s.c_in * s.k * s.k);
    }

    // The weight gradient alone and with the bias gradient (the same dispatches), each
    // added into prefilled gradients (they accumulate).
    let mut gw = dw0.clone();
    reference::conv2d::grad_weight(&s, &x, &dy, &mut gw);
    let mut gb = db0.clone();
    reference::conv2d::grad_bias(&s, &dy, &mut gb);
    for &kern in &variants {
        for with_bias in [false, true] {
            let dw = out_with(&dw0);
            let db = out_with(&db0);
            conv2d::grad_weight_with(ctx, kern, &s, &xb, &dyb, &dw, with_bias.then_some(&db));
            let what = format!("grad_weight {s:?} {kern:?} bias {with_bias} seed={seed:#x}");
            assert_close(&what, &ctx.read::<f32>(&dw), &gw, positions);
            let db_got = ctx.read::<f32>(&db);
            if with_bias {
                assert_close(&format!("grad_bias {s:?} {kern:?} seed={seed:#x}"), &db_got, &gb, positions);
            } else {
                assert_eq!(db_got, db0, "{what}: touched the bias gradient it was not given");
            }
        }
    }

    if with_grad_input {
        let mut gi = vec![0.0f32; s.x_len()];
        reference::conv2d::grad_input(&s, &dy, &w, &mut gi);
        let mut variants = vec![ConvKernel::Auto, ConvKernel::Direct];
        if grad_input_rows_fit(&s) {
            variants.push(ConvKernel::Rows);
        }
        if grad_input_scatter_fit(&s) {
            variants.push(ConvKernel::Scatter);
        }
        if tiled_fits(ctx) {
            variants.push(ConvKernel::Tiled);
        }
        if subgroup_runs(ctx) {
            variants.extend([ConvKernel::Subgroup, ConvKernel::SubgroupUnshared]);
        }
        for kern in variants {
            let dx = out(s.x_len());
            conv2d::grad_input_with(ctx, kern, &s, &dyb, &wb, &dx);
            let what = format!("grad_input {s:?} {kern:?} seed={seed:#x}");
            assert_close(&what, &ctx.read::<f32>(&dx), &gi, s.c_out * s.k * s.k);
        }
    }
    ctx.clear_bind_groups();
}

#[test]
fn small_odd_strided_and_padded_shapes() {
    let ctx = ctx();
    let shapes = [
        // batch 1, one channel, 1×1 kernel
        shape(1, 1, 4, 4, 1, 1, 1, 0),
        // batch 1, rows fit (w 12, w_out 8), 6 output channels (not a multiple of 4 or 8)
        shape(1, 2, 7, 12, 6, 5, 1, 0),
        // w_out 6: direct kernels for forward and weight gradient, rows for the input gradient
        shape(1, 3, 8, 8, 5, 3, 1, 0),
        // stride 2, pad 1, odd sizes
        shape(3, 4, 11, 9, 7, 3, 2, 1),
        // stride 2, pad 2, k 5
        shape(2, 2, 13, 13, 4, 5, 2, 2),
        // pad 1, stride 1: input gradient on the row kernel with a pad smaller than k − 1
        shape(2, 3, 10, 12, 9, 3, 1, 1),
        // rows fit with w_out 12 (12-output blocks) and w_out 4 (4-output blocks); the input
        // gradient of the second one runs 8-output blocks (w 8)
        shape(2, 3, 9, 16, 6, 5, 1, 0),
        shape(1, 2, 6, 8, 5, 5, 1, 0),
        // k 1, rows fit
        shape(2, 5, 8, 8, 3, 1, 1, 0),
        // k larger than the row kernels unroll
        shape(2, 2, 9, 8, 3, 6, 1, 0),
        // batch beyond a block, many blocks per channel, 9 output channels
        shape(9, 3, 16, 16, 9, 4, 1, 0),
        // input gradient on 4-output blocks (w 20), pad 2 = k − 3 on the row kernel
        shape(5, 7, 20, 20, 13, 5, 1, 0),
        shape(3, 4, 12, 20, 6, 5, 1, 2),
        // scatter input gradient with pad 2 (w_out 8, 5 input channels) and pad = k − 1 = 3
        // (w_out 12, k 4, h_out > h)
        shape(3, 5, 7, 8, 7, 5, 1, 2),
        shape(2, 6, 5, 9, 3, 4, 1, 3),
        // stride 3
        shape(2, 3, 14, 15, 5, 4, 3, 1),
        // more than one 64-row tile of the tiled kernels: c_out 70 (forward, weight and bias
        // gradients), c_in 67 (input gradient)
        shape(2, 67, 6, 7, 70, 2, 1, 0),
        shape(2, 3, 9, 7, 70, 3, 2, 1),
    ];
    let base = common::base_seed();
    for (i, s) in shapes.into_iter().enumerate() {
        check_all(&ctx, s, base ^ (0xc0_2d00 + i as u64), true);
    }
}

/// The tiled kernels run in every test of this file (the checks above include them only
/// where the adapter's limits take them; CI's lavapipe and llvmpipe do).
#[test]
fn tiled_kernels_fit_this_adapter() {
    assert!(tiled_fits(&ctx()), "the tiled conv2d kernels do not fit this adapter's limits");
}

/// The subgroup kernels run in the checks above on lavapipe's Vulkan adapter (CI's main
/// pass); wgpu's GL backend (CI's GL pass) and the web's limits (CI's web-limits pass) have no
/// subgroups, so there they are never offered.
#[test]
fn subgroup_kernels_where_the_device_has_subgroups() {
    let ctx = ctx();
    eprintln!("{} ({:?}): subgroups {}", ctx.info.name, ctx.info.backend, ctx.has_subgroups());
    if wgsl_cnn::gpu::context::web_limits() {
        assert!(!subgroup_runs(&ctx), "a device opened with the web's limits has no subgroups");
    } else if ctx.info.backend == wgpu::Backend::Vulkan && ctx.info.name.contains("llvmpipe") {
        assert!(subgroup_runs(&ctx), "lavapipe's Vulkan adapter offers SUBGROUP; the kernels should run");
    }
    if ctx.info.backend == wgpu::Backend::Gl {
        assert!(!subgroup_runs(&ctx), "wgpu's GL backend offers no subgroups");
    }
}

#[test]
fn seed_conv1() {
    // conv1 never needs its input gradient.
    check_all(&ctx(), shape(100, 1, 28, 28, 20, 5, 1, 0), common::base_seed() ^ 0xc0_2d01_0000, false);
}

#[test]
fn seed_conv2() {
    check_all(&ctx(), shape(100, 20, 12, 12, 50, 5, 1, 0), common::base_seed() ^ 0xc0_2d02_0000, true);
}
