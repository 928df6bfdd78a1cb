//! Host CPU time of one LeNet-5 training step (batch 100), split into recording (the layer
//! code, the backend and wgpu's command recording) and submitting (encoder finish + queue
//! submit), with the device idle before each step:
//!
//!     cargo run --release --example host_path [steps]
//!
//! Prints the median and minimum over `steps` (default 200) of each part in µs. The steps
//! cycle over three batches, all seen in the untimed warm-up, so every bind group is cached
//! as in a training run's second and later epochs (in the first, each new batch offset also
//! creates one bind group and its uniform buffer for the gather).
//!
//! For instruction counts, which do not depend on what else the machine is doing:
//!
//!     valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*host_path::step' \
//!         target/release/examples/host_path 10

use std::time::Instant;

use wgsl_cnn::backend::Backend;
use wgsl_cnn::gpu::backend::{GpuDataset, GpuTensor};
use wgsl_cnn::gpu::{AdapterChoice, Gpu};
use wgsl_cnn::nn::model::Model;
use wgsl_cnn::rng::Rng;
use wgsl_cnn::shapes::AdamConfig;

const BATCH: usize = 100;

fn stats(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

/// One step: µs to record, µs to record and submit. Not inlined, so that a profiler can be
/// told to count only these calls.
#[inline(never)]
fn step(be: &mut Gpu, model: &mut Model<Gpu>, ds: &GpuDataset, perm: &GpuTensor, b: usize, cfg: &AdamConfig) -> (f64, f64) {
    step_body(be, model, ds, perm, b, cfg)
}

/// The first steps create pipelines and bind groups; they are not counted.
#[inline(never)]
fn warm_up(be: &mut Gpu, model: &mut Model<Gpu>, ds: &GpuDataset, perm: &GpuTensor, b: usize, cfg: &AdamConfig) -> (f64, f64) {
    step_body(be, model, ds, perm, b, cfg)
}

#[inline(always)]
fn step_body(be: &mut Gpu, model: &mut Model<Gpu>, ds: &GpuDataset, perm: &GpuTensor, b: usize, cfg: &AdamConfig) -> (f64, f64) {
    let t = Instant::now();
    model.gather_batch(be, ds, perm, b * BATCH, BATCH);
    model.train_step(be, BATCH, cfg);
    let r = t.elapsed().as_secs_f64() * 1e6;
    be.submit();
    (r, t.elapsed().as_secs_f64() * 1e6)
}

fn main() {
    let steps: usize = std::env::args().nth(1).map(|a| a.parse().expect("steps is a number")).unwrap_or(200);
    let mut be = Gpu::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"));
    println!("adapter: {}", be.name());
    let (batch, batches) = (BATCH, 3);
    let mut rng = Rng::new(1);
    let images: Vec<u8> = (0..batch * batches * 784).map(|_| rng.below(256) as u8).collect();
    let labels: Vec<u8> = (0..batch * batches).map(|_| rng.below(10) as u8).collect();
    let ds = be.dataset(&images, &labels, 784);
    let perm = be.index(batch * batches);
    be.write_index(&perm, &(0..(batch * batches) as u32).collect::<Vec<_>>());
    let mut model = Model::new(&mut be, &wgsl_cnn::model::zoo::lenet5(), batch, 0).unwrap_or_else(|e| panic!("{e:#}"));
    let cfg = AdamConfig::default();
    let (mut record, mut submit, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..batches {
        let d0 = be.ctx.dispatches.get();
        warm_up(&mut be, &mut model, &ds, &perm, i, &cfg);
        if i == 0 {
            println!("dispatches per step: {}", be.ctx.dispatches.get() - d0);
        }
    }
    for i in 0..steps {
        be.ctx.finish();
        let (r, all) = step(&mut be, &mut model, &ds, &perm, i % batches, &cfg);
        record.push(r);
        submit.push(all - r);
        total.push(all);
    }
    be.ctx.finish();
    for (name, v) in [("record", &mut record), ("submit", &mut submit), ("record + submit", &mut total)] {
        let (median, min) = stats(v);
        println!("{name:<16} median {median:7.1} µs, min {min:7.1} µs");
    }
}
