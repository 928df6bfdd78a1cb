//! Wall-clock ms per call of every kernel in shaders/{maxpool,batchnorm,activation,reduce,
//! adam,gather}.wgsl at the seed model's shapes (batch 100):
//!
//!     cargo run --release --example kernel_timing_ops [reps]
//!
//! Each kernel runs once to compile its pipeline, then `reps` times (default 50) recorded
//! into one compute pass and submitted once; the figure is the elapsed time over `reps`, so
//! it includes the per-dispatch overhead a training step pays.

use std::time::Instant;

use wgsl_cnn::gpu::{activation, adam, batchnorm, gather, maxpool, reduce, AdapterChoice, GpuContext};
use wgsl_cnn::rng::Rng;
use wgsl_cnn::shapes::{AdamConfig, BatchNormShape, PoolShape};

fn time(ctx: &GpuContext, reps: usize, label: &str, f: impl Fn()) -> f64 {
    f();
    ctx.finish();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    ctx.finish();
    let ms = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
    println!("{label:<44} {ms:8.3} ms/call");
    ms
}

fn main() {
    let reps: usize = std::env::args().nth(1).map(|a| a.parse().expect("reps is a number")).unwrap_or(50);
    let ctx = GpuContext::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"));
    println!("adapter: {}, {reps} calls per kernel", wgsl_cnn::gpu::context::describe(&ctx.info));
    let mut rng = Rng::new(7);
    let rand = |rng: &mut Rng, len: usize| {
        let b = ctx.buffer(len);
        ctx.write(&b, &rng.uniform_vec(len, -1.0, 1.0));
        b
    };
    let mut total = 0.0;

    for s in [PoolShape { n: 100, c: 20, h: 24, w: 24, k: 2, stride: 2 }, PoolShape { n: 100, c: 50, h: 8, w: 8, k: 2, stride: 2 }] {
        let (x, y, am, dx) = (rand(&mut rng, s.x_len()), ctx.buffer(s.y_len()), ctx.buffer(s.y_len()), ctx.buffer(s.x_len()));
        let tag = format!("[{},{},{},{}]", s.n, s.c, s.h, s.w);
        total += time(&ctx, reps, &format!("maxpool forward {tag}"), || maxpool::forward(&ctx, &s, &x, &y, &am));
        total += time(&ctx, reps, &format!("maxpool backward {tag}"), || maxpool::backward(&ctx, &s, &y, &am, &dx));
    }

    for s in [BatchNormShape { n: 100, c: 20, hw: 576 }, BatchNormShape { n: 100, c: 50, hw: 64 }] {
        let x = rand(&mut rng, s.len());
        let dy = rand(&mut rng, s.len());
        let (y, dx) = (ctx.buffer(s.len()), ctx.buffer(s.len()));
        let (mean, var, gamma, beta) = (ctx.buffer(s.c), ctx.buffer(s.c), ctx.buffer(s.c), ctx.buffer(s.c));
        let (rm, rv, dg, db) = (ctx.buffer(s.c), ctx.buffer(s.c), ctx.buffer(s.c), ctx.buffer(s.c));
        ctx.write(&gamma, &vec![1.0f32; s.c]);
        let tag = format!("[{},{},{}]", s.n, s.c, s.hw);
        let sums = ctx.buffer(2 * s.c);
        total += time(&ctx, reps, &format!("batchnorm stats (+ running) {tag}"), || {
            batchnorm::stats(&ctx, &s, &x, &mean, &var, &rm, &rv)
        });
        total += time(&ctx, reps, &format!("batchnorm normalize {tag}"), || {
            batchnorm::normalize(&ctx, &s, &x, &mean, &var, &gamma, &beta, &y)
        });
        total += time(&ctx, reps, &format!("batchnorm backward_reduce {tag}"), || {
            batchnorm::backward_reduce(&ctx, &s, &x, &dy, &mean, &var, &dg, &db, &sums)
        });
        total += time(&ctx, reps, &format!("batchnorm backward_dx {tag}"), || {
            batchnorm::backward_dx(&ctx, &s, &x, &dy, &mean, &var, &gamma, &sums, &dx)
        });
    }

    for len in [288_000, 80_000, 50_000] {
        let (x, dy, y, dx) = (rand(&mut rng, len), rand(&mut rng, len), ctx.buffer(len), ctx.buffer(len));
        total += time(&ctx, reps, &format!("relu_forward {len}"), || activation::relu_forward(&ctx, len, &x, &y));
        total += time(&ctx, reps, &format!("relu_backward {len}"), || activation::relu_backward(&ctx, len, &x, &dy, &dx));
    }

    for (rows, cols) in [(100, 500), (100, 10)] {
        let (x, out) = (rand(&mut rng, rows * cols), ctx.buffer(cols));
        total += time(&ctx, reps, &format!("sum_rows {rows}×{cols}"), || reduce::sum_rows(&ctx, rows, cols, &x, &out));
    }
    let (n, classes) = (100, 10);
    let logits = rand(&mut rng, n * classes);
    let labels = ctx.buffer(n);
    ctx.write(&labels, &(0..n as u32).map(|i| i % 10).collect::<Vec<_>>());
    let (loss, dlogits, correct, state) = (ctx.buffer(1), ctx.buffer(n * classes), ctx.buffer(1), ctx.buffer(2));
    total += time(&ctx, reps, "softmax_cross_entropy 100×10 (+ step state)", || {
        reduce::softmax_cross_entropy(&ctx, n, classes, &logits, &labels, &loss, &dlogits, &state)
    });
    total += time(&ctx, reps, "count_correct 100×10", || reduce::count_correct(&ctx, n, classes, &logits, &labels, &correct));

    // Adam over the whole parameter store in one dispatch (the seed's 12 tensors, each padded
    // to 64 elements), its step read from `step` and covered by the table.
    let cfg = AdamConfig::default();
    let (step, table) = (ctx.buffer(2), ctx.buffer(4 + 4 * 1024));
    ctx.write(&step, &[1u32, 0]);
    ctx.write(&table, &adam::hyper_table(&cfg, 1, 1024));
    let len: usize = [500, 20, 20, 20, 25_000, 50, 50, 50, 400_000, 500, 5_000, 10].iter().map(|l: &usize| l.div_ceil(64) * 64).sum();
    let (p, g, m, v) = (rand(&mut rng, len), rand(&mut rng, len), ctx.buffer(len), ctx.buffer(len));
    total += time(&ctx, reps, &format!("adam step, store of {len}"), || adam::step(&ctx, &cfg, len, &step, &table, &p, &g, &m, &v));

    // MNIST-sized dataset: 60,000 images of 784 pixels, one batch of 100.
    let (count, pixels) = (60_000, 784);
    let bytes: Vec<u8> = (0..count * pixels).map(|i| (i * 31 % 251) as u8).collect();
    let images = ctx.buffer(count * pixels / 4);
    ctx.write(&images, &gather::pack_u8(&bytes));
    let labs = ctx.buffer(count);
    ctx.write(&labs, &(0..count as u32).map(|i| i % 10).collect::<Vec<_>>());
    let mut perm: Vec<u32> = (0..count as u32).collect();
    rng.shuffle(&mut perm);
    let permb = ctx.buffer(count);
    ctx.write(&permb, &perm);
    let (x, y) = (ctx.buffer(n * pixels), ctx.buffer(n));
    total += time(&ctx, reps, "gather 100×784 of 60,000", || gather::gather(&ctx, &images, &labs, pixels, &permb, 500, n, &x, &y));

    println!("{:<44} {total:8.3} ms", "sum of the lines above (one of each)");
}
