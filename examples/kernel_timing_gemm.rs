//! Time per call of the matmul and conv2d kernels at the seed's shapes (batch 100):
//! `cargo run --release --example kernel_timing_gemm [reps] [filter]` (filter: only labels
//! containing it). Every matmul kernel that can run a shape is timed (Auto, Strided, Tiled,
//! Vec4, and Subgroup where the device has subgroups); conv2d runs Auto, Direct and Subgroup. Each op is recorded `reps`
//! times into one compute pass after a warm-up call (pipeline compilation), then timed from
//! submit to idle; ms/call includes per-dispatch overhead (helper dispatches included).
//! `ROUNDS=n` repeats each batch n times and keeps the best. "cpu" is the process CPU time
//! per call (lavapipe's worker threads included): on a shared machine it is far steadier
//! than the wall time, so compare variants by it.

use std::time::Instant;
use wgsl_cnn::gpu::conv2d::{self, ConvKernel};
use wgsl_cnn::gpu::matmul::{matmul_with, vec4_fits, MatmulKernel};
use wgsl_cnn::gpu::{AdapterChoice, GpuContext, RawBuffer};
use wgsl_cnn::rng::Rng;
use wgsl_cnn::shapes::{Conv2dShape, MatmulShape};

fn filled(ctx: &GpuContext, rng: &mut Rng, len: usize) -> std::rc::Rc<RawBuffer> {
    let b = ctx.buffer(len);
    ctx.write(&b, &rng.uniform_vec(len, -1.0, 1.0));
    b
}

/// CPU seconds used by this process so far (all threads: lavapipe's workers run in it), from
/// /proc/self/stat (utime + stime, in clock ticks of 10 ms). On a shared machine the CPU time
/// per call moves far less than the wall time, because waiting for a core costs none.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(f64::NAN)).collect();
    if f.len() < 13 {
        return f64::NAN;
    }
    (f[11] + f[12]) / 100.0
}

fn time(ctx: &GpuContext, reps: usize, label: &str, flops: f64, f: &dyn Fn()) {
    let filter = std::env::args().nth(2).unwrap_or_default();
    if !label.contains(&filter) {
        return;
    }
    f();
    ctx.finish();
    // Best of ROUNDS batches (default 1): this machine is shared, so single batches swing.
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let (mut s, mut cpu) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..rounds.max(1) {
        let (t, c) = (Instant::now(), cpu_seconds());
        for _ in 0..reps {
            f();
        }
        ctx.finish();
        s = s.min(t.elapsed().as_secs_f64() / reps as f64);
        cpu = cpu.min((cpu_seconds() - c) / reps as f64);
    }
    println!("{label:<48} {:>8.3} ms  {:>6.2} GFLOP/s  cpu {:>8.3} ms", s * 1e3, flops / s / 1e9, cpu * 1e3);
}

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let ctx = GpuContext::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"));
    println!("adapter: {}", wgsl_cnn::gpu::context::describe(&ctx.info));
    let mut rng = Rng::new(1);
    // The weight gradients accumulate into dW, as the model runs them.
    let mm = |m, n, k, trans_a, trans_b| MatmulShape { m, n, k, trans_a, trans_b, accumulate: trans_a };
    let products = [
        ("fc1 forward x·Wᵀ+b", mm(100, 500, 800, false, true), true),
        ("fc2 forward x·Wᵀ+b", mm(100, 10, 500, false, true), true),
        ("fc1 grad input dy·W", mm(100, 800, 500, false, false), false),
        ("fc2 grad input dy·W", mm(100, 500, 10, false, false), false),
        ("fc1 grad weight dyᵀ·x", mm(500, 800, 100, true, false), false),
        ("fc2 grad weight dyᵀ·x", mm(10, 500, 100, true, false), false),
    ];
    for (name, s, bias) in products {
        let (a, b, c) = (filled(&ctx, &mut rng, s.m * s.k), filled(&ctx, &mut rng, s.k * s.n), ctx.buffer(s.m * s.n));
        let bb = filled(&ctx, &mut rng, s.n);
        let flops = 2.0 * (s.m * s.n * s.k) as f64;
        let mut kerns = vec![MatmulKernel::Auto, MatmulKernel::Strided, MatmulKernel::Tiled];
        if vec4_fits(&s) {
            kerns.push(MatmulKernel::Vec4);
        }
        if wgsl_cnn::gpu::matmul::subgroup_runs(&ctx) {
            kerns.push(MatmulKernel::Subgroup);
        }
        for kern in kerns {
            let label = format!("{name} {}x{}x{} {kern:?}", s.m, s.n, s.k);
            time(&ctx, reps, &label, flops, &|| matmul_with(&ctx, kern, &s, &a, &b, bias.then_some(&*bb), &c));
        }
    }
    let convs = [
        ("conv1", Conv2dShape { n: 100, c_in: 1, h: 28, w: 28, c_out: 20, k: 5, stride: 1, pad: 0 }),
        ("conv2", Conv2dShape { n: 100, c_in: 20, h: 12, w: 12, c_out: 50, k: 5, stride: 1, pad: 0 }),
    ];
    for (name, s) in convs {
        let (x, w, b, dy) = (
            filled(&ctx, &mut rng, s.x_len()),
            filled(&ctx, &mut rng, s.w_len()),
            filled(&ctx, &mut rng, s.c_out),
            filled(&ctx, &mut rng, s.y_len()),
        );
        let (y, dx, dw, db) = (ctx.buffer(s.y_len()), ctx.buffer(s.x_len()), ctx.buffer(s.w_len()), ctx.buffer(s.c_out));
        let flops = 2.0 * (s.y_len() * s.c_in * s.k * s.k) as f64;
        let mut kerns = vec![ConvKernel::Auto, ConvKernel::Direct];
        if conv2d::subgroup_runs(&ctx) {
            kerns.push(ConvKernel::Subgroup);
        }
        for kern in kerns {
            time(&ctx, reps, &format!("{name} forward {kern:?}"), flops, &|| {
                conv2d::forward_with(&ctx, kern, &s, &x, &w, &b, &y)
            });
            if name != "conv1" && kern == ConvKernel::Auto {
                time(&ctx, reps, &format!("{name} grad_input Rows"), flops, &|| {
                    conv2d::grad_input_with(&ctx, ConvKernel::Rows, &s, &dy, &w, &dx)
                });
            }
            if name != "conv1" {
                time(&ctx, reps, &format!("{name} grad_input {kern:?}"), flops, &|| {
                    conv2d::grad_input_with(&ctx, kern, &s, &dy, &w, &dx)
                });
            }
            time(&ctx, reps, &format!("{name} grad_weight {kern:?}"), flops, &|| {
                conv2d::grad_weight_with(&ctx, kern, &s, &x, &dy, &dw, None)
            });
            time(&ctx, reps, &format!("{name} grad_weight+bias {kern:?}"), flops, &|| {
                conv2d::grad_weight_with(&ctx, kern, &s, &x, &dy, &dw, Some(&db))
            });
        }
    }
}
