//! Host CPU time of one LeNet-5 training step of `bench`'s workload (batch 100, synthetic
//! data), split into recording (the layer code, the backend and wgpu's command recording)
//! and submitting (encoder finish + queue submit), with the device idle before each step:
//!
//!     cargo run --release --example host_path [steps]
//!
//! Prints the median and minimum over `steps` (default 200) of each part in µs. The steps
//! cycle over `bench::BATCHES` batches, all seen in the untimed warm-up, so every bind
//! group is cached as in a training run's second and later epochs (in the first, each new
//! batch offset also creates one bind group and its uniform buffer for the gather).
//!
//! For instruction counts, which do not depend on what else the machine is doing:
//!
//!     valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*host_path::step' \
//!         target/release/examples/host_path 10

use std::time::Instant;

/// The allocator the binary uses (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use wgsl_cnn::backend::Backend;
use wgsl_cnn::bench::{Stats, Workload, BATCHES};
use wgsl_cnn::gpu::{AdapterChoice, Gpu};

/// One step of the benchmark's workload: µs to record, µs to record and submit. Not
/// inlined, so that a profiler can be told to count only these calls.
#[inline(never)]
fn step(be: &mut Gpu, w: &mut Workload<Gpu>) -> (f64, f64) {
    step_body(be, w)
}

/// The first steps create pipelines and bind groups; they are not counted.
#[inline(never)]
fn warm_up(be: &mut Gpu, w: &mut Workload<Gpu>) -> (f64, f64) {
    step_body(be, w)
}

#[inline(always)]
fn step_body(be: &mut Gpu, w: &mut Workload<Gpu>) -> (f64, f64) {
    let t = Instant::now();
    w.record_train_step(be);
    let r = t.elapsed().as_secs_f64() * 1e6;
    be.submit();
    (r, t.elapsed().as_secs_f64() * 1e6)
}

fn main() {
    let steps: usize = std::env::args().nth(1).map(|a| a.parse().expect("steps is a number")).unwrap_or(200);
    let mut be = Gpu::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"));
    println!("adapter: {}", be.name());
    let mut w = Workload::new(&mut be, &wgsl_cnn::model::zoo::lenet5(), 100).unwrap_or_else(|e| panic!("{e:#}"));
    let (mut record, mut submit, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..BATCHES {
        let d0 = be.ctx.dispatches.get();
        warm_up(&mut be, &mut w);
        if i == 0 {
            println!("dispatches per step: {}", be.ctx.dispatches.get() - d0);
        }
    }
    for _ in 0..steps {
        be.ctx.finish();
        let (r, all) = step(&mut be, &mut w);
        record.push(r);
        submit.push(all - r);
        total.push(all);
    }
    be.ctx.finish();
    for (name, v) in [("record", &record), ("submit", &submit), ("record + submit", &total)] {
        let st = Stats::of(v);
        println!("{name:<16} median {:7.1} µs, min {:7.1} µs", st.median, st.min);
    }
}
