//! matmul.wgsl vs the CPU reference (f64 accumulation, rounded to f32): every transpose
//! combination, with and without bias, every kernel (vec4 where it fits, strided and tiled
//! always, subgroup where the device has subgroups, which lavapipe's Vulkan has), on odd shapes, batch 1, shapes larger than a block, and the seed's six Linear products;
//! each overwriting C (NaN-poisoned first, so an unwritten element fails) and accumulating
//! into it (C filled with random values first: the result must be C + the contribution).

mod common;
use wgsl_cnn::compare::compare;
use wgsl_cnn::gpu::matmul::{env_override, matmul_with, resolve, subgroup_runs, vec4_fits, MatmulKernel};
use wgsl_cnn::gpu::{AdapterChoice, GpuContext};
use wgsl_cnn::reference;
use wgsl_cnn::rng::Rng;
use wgsl_cnn::shapes::MatmulShape;

fn ctx() -> GpuContext {
    GpuContext::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Tolerance for a k-term dot product of values in U(−1, 1) (each product has standard
/// deviation 1/3), accumulated in f32 on the GPU: rounding errors add like a random walk of
/// k steps, each at most eps·|partial sum| with |partial sum| ≲ √k/3·(a few), so
/// atol = 4·eps·√k·(√k/3) covers it with room; rtol 1e-5 covers the final rounding of large
/// outputs. On top, the relative L2 error must stay below 1e-5 (fp32 lands near 1e-7..1e-6).
fn tolerance(k: usize) -> (f64, f64) {
    let eps = f32::EPSILON as f64;
    let k = k.max(1) as f64;
    (4.0 * eps * k.sqrt() * (k.sqrt() / 3.0), 1e-5)
}

/// Runs `s` (overwriting or, with `s.accumulate`, adding into C) against the reference.
fn check(ctx: &GpuContext, s: MatmulShape, with_bias: bool, kernel: MatmulKernel, seed: u64) {
    let mut rng = Rng::new(seed);
    let a = rng.uniform_vec(s.m * s.k, -1.0, 1.0);
    let b = rng.uniform_vec(s.k * s.n, -1.0, 1.0);
    let bias = rng.uniform_vec(s.n, -1.0, 1.0);
    // Overwriting: NaN poison, which any unwritten element keeps. Accumulating: random
    // values, and the reference adds its rounded contribution to them as the kernels do.
    let initial = if s.accumulate { rng.uniform_vec(s.m * s.n, -1.0, 1.0) } else { vec![f32::NAN; s.m * s.n] };
    let mut want = if s.accumulate { initial.clone() } else { vec![0.0f32; s.m * s.n] };
    reference::matmul::matmul(&s, &a, &b, with_bias.then_some(&bias[..]), &mut want);

    let (ab, bb, biasb, cb) = (ctx.buffer(a.len()), ctx.buffer(b.len()), ctx.buffer(s.n), ctx.buffer(s.m * s.n));
    ctx.write(&ab, &a);
    ctx.write(&bb, &b);
    ctx.write(&biasb, &bias);
    ctx.write(&cb, &initial);
    matmul_with(ctx, kernel, &s, &ab, &bb, with_bias.then_some(&*biasb), &cb);
    let got: Vec<f32> = ctx.read(&cb);
    ctx.clear_bind_groups();

    let (atol, rtol) = tolerance(s.k);
    let cmp = compare(&got, &want, atol, rtol);
    let what = format!("{s:?} bias={with_bias} {kernel:?} seed={seed:#x} (atol {atol:.2e}, rtol {rtol:.0e})");
    eprintln!("{what}: {cmp}");
    assert!(cmp.passed(), "{what}: {cmp}");
    // Relative to ‖ref‖ unless ‖ref‖ itself is at the rounding level (a 1-element C + its
    // contribution can cancel to ~1e-3): then the absolute L2 error must be within atol·√len.
    let ref_l2 = want.iter().map(|&w| (w as f64).powi(2)).sum::<f64>().sqrt();
    let floor = atol * (want.len() as f64).sqrt();
    assert!(cmp.rel_l2_err <= 1e-5 || cmp.rel_l2_err * ref_l2 <= floor, "{what}: relative L2 error too large: {cmp}");
}

fn shape(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> MatmulShape {
    MatmulShape { m, n, k, trans_a, trans_b, accumulate: false }
}

fn accumulating(s: MatmulShape) -> MatmulShape {
    MatmulShape { accumulate: true, ..s }
}

/// Every kernel that can run `s` on `ctx`.
fn kernels(ctx: &GpuContext, s: &MatmulShape) -> Vec<MatmulKernel> {
    let mut v = vec![MatmulKernel::Auto, MatmulKernel::Strided, MatmulKernel::Tiled];
    if vec4_fits(s) {
        v.push(MatmulKernel::Vec4);
    }
    if subgroup_runs(ctx) {
        v.push(MatmulKernel::Subgroup);
    }
    v
}

#[test]
fn small_and_odd_shapes_every_transpose_and_kernel() {
    let ctx = ctx();
    // (m, n, k): 1×1×1; batch 1; none a multiple of the 4×8 / 4×4 blocks; vec4-compatible
    // ones that are not multiples of the block (m = 12 rows, n = 12 columns); several
    // blocks per dimension and more than one workgroup (67 × 45 outputs); several 64×64
    // tiles of the tiled kernel in both dimensions with partial edge tiles and k not a
    // multiple of its 16-deep steps (130 × 70 × 37), and exactly one tile with k = 16·2.
    let sizes = [
        (1, 1, 1),
        (1, 8, 4),
        (1, 5, 3),
        (7, 13, 5),
        (12, 12, 8),
        (4, 8, 4),
        (20, 36, 16),
        (67, 45, 33),
        (68, 44, 36),
        (130, 70, 37),
        (64, 64, 32),
    ];
    let mut seed = common::base_seed() ^ 0x6d61_746d_0000u64;
    for &(m, n, k) in &sizes {
        for ta in [false, true] {
            for tb in [false, true] {
                let s = shape(m, n, k, ta, tb);
                for kernel in kernels(&ctx, &s) {
                    for bias in [false, true] {
                        for s in [s, accumulating(s)] {
                            seed = seed.wrapping_add(1);
                            check(&ctx, s, bias, kernel, seed);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn seed_linear_products() {
    let ctx = ctx();
    // fc1/fc2 forward (x·Wᵀ + b), input gradients (dy·W), weight gradients (dyᵀ·x), the
    // latter also accumulating, as the model runs them.
    let cases = [
        (shape(100, 500, 800, false, true), true),
        (shape(100, 10, 500, false, true), true),
        (shape(100, 800, 500, false, false), false),
        (shape(100, 500, 10, false, false), false),
        (shape(500, 800, 100, true, false), false),
        (shape(10, 500, 100, true, false), false),
        (accumulating(shape(500, 800, 100, true, false)), false),
        (accumulating(shape(10, 500, 100, true, false)), false),
    ];
    let mut seed = common::base_seed() ^ 0x6d61_746d_1000u64;
    for (s, bias) in cases {
        for kernel in kernels(&ctx, &s) {
            seed = seed.wrapping_add(1);
            check(&ctx, s, bias, kernel, seed);
        }
    }
}

#[test]
fn kernel_names_parse() {
    for (name, want) in [
        ("tiled", Some(MatmulKernel::Tiled)),
        ("VEC4", Some(MatmulKernel::Vec4)),
        (" strided ", Some(MatmulKernel::Strided)),
        ("auto", Some(MatmulKernel::Auto)),
        ("Subgroup", Some(MatmulKernel::Subgroup)),
        ("shared", None),
        ("", None),
    ] {
        assert_eq!(MatmulKernel::parse(name), want, "parse({name:?})");
    }
}

#[test]
fn auto_picks_by_adapter_and_env() {
    let ctx = ctx();
    let fc1 = shape(100, 500, 800, false, true); // vec4 fits and pays
    let fc2 = shape(100, 10, 500, false, true); // too few vec4 blocks
    let odd = shape(7, 13, 5, true, false); // vec4 does not fit
    let register_blocked = [MatmulKernel::Vec4, MatmulKernel::Strided, MatmulKernel::Strided];
    let register_blocked = register_blocked.to_vec();
    let want = match env_override() {
        None if ctx.is_cpu() => register_blocked,
        None => vec![MatmulKernel::Tiled; 3],
        Some(MatmulKernel::Vec4) => register_blocked,
        Some(MatmulKernel::Subgroup) if !subgroup_runs(&ctx) => register_blocked,
        Some(k) => vec![k; 3],
    };
    let got: Vec<MatmulKernel> = [fc1, fc2, odd].iter().map(|s| resolve(&ctx, MatmulKernel::Auto, s)).collect();
    assert_eq!(got, want, "is_cpu={} override={:?}", ctx.is_cpu(), env_override());
    // Explicit kernels are never overridden.
    for k in [MatmulKernel::Tiled, MatmulKernel::Strided, MatmulKernel::Vec4] {
        assert_eq!(resolve(&ctx, k, &fc1), k);
    }
}

/// The subgroup kernel runs where the device was opened with subgroups and nowhere else:
/// lavapipe's Vulkan adapter has them (so the kernel tests above run it there, in CI's main
/// pass), llvmpipe's GL adapter does not (CI's GL pass), and asked for there, the static
/// rule gives the register-blocked family instead.
#[test]
fn subgroup_kernel_where_the_device_has_subgroups() {
    let ctx = ctx();
    let fc1 = shape(100, 500, 800, false, true);
    let lavapipe_vulkan = ctx.info.backend == wgpu::Backend::Vulkan && ctx.info.name.contains("llvmpipe");
    if wgsl_cnn::gpu::context::web_limits() {
        assert!(!ctx.has_subgroups(), "a device opened with the web's limits has no subgroups");
    } else if lavapipe_vulkan {
        assert!(ctx.has_subgroups(), "lavapipe's Vulkan adapter offers SUBGROUP; the device should have been opened with it");
    }
    if ctx.info.backend == wgpu::Backend::Gl {
        assert!(!ctx.has_subgroups(), "wgpu's GL backend offers no subgroups");
    }
    eprintln!("{} ({:?}): subgroups {}", ctx.info.name, ctx.info.backend, ctx.has_subgroups());
    let got = resolve(&ctx, MatmulKernel::Subgroup, &fc1);
    if !subgroup_runs(&ctx) {
        assert_eq!(got, MatmulKernel::Vec4, "without subgroups the register-blocked family runs fc1");
        return;
    }
    assert_eq!(got, MatmulKernel::Subgroup);
    // The path of subgroups with inactive lanes (each lane loads op(A) itself), which
    // lavapipe never forms: odd shapes, every transpose, k past several subgroup widths,
    // more than one 256-column strip, accumulating and not.
    let mut seed = common::base_seed() ^ 0x6d61_746d_2000u64;
    for (m, n, k) in [(1, 1, 1), (7, 13, 5), (67, 300, 33), (5, 257, 70)] {
        for ta in [false, true] {
            for tb in [false, true] {
                let s = shape(m, n, k, ta, tb);
                for s in [s, accumulating(s)] {
                    seed = seed.wrapping_add(1);
                    check(&ctx, s, true, MatmulKernel::SubgroupUnshared, seed);
                }
            }
        }
    }
}
