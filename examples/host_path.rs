//! Host CPU time of one LeNet-5 training step of `bench`'s workload (synthetic data),
//! split into recording (the layer code, the backend and wgpu's command recording) and
//! submitting (encoder finish + queue submit), with the device idle before each step:
//!
//!     cargo run --release --example host_path [steps] [batch]
//!
//! Prints the median and minimum over `steps` (default 200) of each part in µs, on the
//! host clock (`bench::host_clock`: the thread's CPU time, which on lavapipe leaves out
//! the device's threads preempting this one) and on the wall clock. The steps cycle over
//! `bench::BATCHES` batches, all seen in the untimed warm-up, so every bind group is cached
//! as in a training run's second and later epochs (in the first, each new batch offset
//! also creates one bind group and its uniform buffer for the gather).
//!
//! `batch` (default 100, the trainer's) changes the device's work far more than the host's:
//! a LeNet-5 step records 27 dispatches at any batch size (at batch 1 its matmuls are the
//! strided kernel rather than vec4). On a software device (lavapipe) the
//! device's work runs on the host's cores and evicts the host's caches between two steps,
//! so there a small batch shows what the same host work costs with its caches left alone,
//! as on a real GPU.
//!
//! For instruction counts, which do not depend on what else the machine is doing:
//!
//!     valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*host_path::step' \
//!         target/release/examples/host_path 10

/// The allocator the binary uses (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use wgsl_cnn::backend::Backend;
use wgsl_cnn::bench::host_clock::StepTimes;
use wgsl_cnn::bench::{Workload, BATCHES};
use wgsl_cnn::gpu::{AdapterChoice, Gpu};

/// One step of the benchmark's workload. Not inlined, so that a profiler can be told to
/// count only these calls.
#[inline(never)]
fn step(be: &mut Gpu, w: &mut Workload<Gpu>) -> StepTimes {
    StepTimes::measure(be, |be| w.record_train_step(be), |be, ()| be.submit())
}

/// The first steps create pipelines and bind groups; they are not counted (and not timed,
/// so that the compiler cannot fold this function into `step` and a profiler count both).
#[inline(never)]
fn warm_up(be: &mut Gpu, w: &mut Workload<Gpu>) {
    w.record_train_step(be);
    be.submit();
}

fn main() {
    let arg = |i: usize, default: usize| std::env::args().nth(i).map(|a| a.parse().expect("arguments are numbers")).unwrap_or(default);
    let (steps, batch) = (arg(1, 200).max(1), arg(2, 100).max(1));
    let mut be = Gpu::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"));
    println!("adapter: {}, batch {batch}", be.name());
    let mut w = Workload::new(&mut be, &wgsl_cnn::model::zoo::lenet5(), batch).unwrap_or_else(|e| panic!("{e:#}"));
    let mut t = Vec::new();
    for i in 0..BATCHES {
        let d0 = be.ctx.dispatches.get();
        warm_up(&mut be, &mut w);
        if i == 0 {
            println!("dispatches per step: {}", be.ctx.dispatches.get() - d0);
        }
    }
    for _ in 0..steps {
        be.ctx.finish();
        t.push(step(&mut be, &mut w));
    }
    be.ctx.finish();
    print!("{}", StepTimes::summary(&t, ""));
}
