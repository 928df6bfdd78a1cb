//! `wgsl-cnn bench`: the adapter and its limits, every op call of the real training step
//! timed on the device at the seed's shapes with FLOP and byte counts, the step end to end,
//! eval throughput, and the CPU reference's step in the same run.
//!
//! How it measures:
//! - The model is the real one (`--model`, LeNet-5 by default) on the GPU backend, whose op
//!   calls a tracer sees through `Gpu::observer` with the scope of the layer that issued
//!   each, fed a synthetic data set (random pixels and labels, 4 distinct batches, cycled),
//!   so the op list is exactly what a training step dispatches and needs no MNIST download.
//!   Calls of one name (a layer's op, `body.block.fc.forward matmul` ×10 in `tied`) are one
//!   row, their times added.
//! - Warm-up: the first step runs with a wait before and after every op call; each call's
//!   wall time ("first ms") therefore includes creating its pipelines and bind groups. More
//!   warm-up steps follow untimed.
//! - Per op call, per repeat, one whole training step is recorded. With
//!   TIMESTAMP_QUERY_INSIDE_PASSES a timestamp is written before and after each dispatch and
//!   an op call's time is its first dispatch's begin to its last dispatch's end (so a
//!   kernel split into several dispatches is still one line). Without it, each call is
//!   timed on the wall clock between two submit-and-waits (which adds the submit round trip).
//! - End to end: the step (gather + forward + loss + backward + Adam, recorded as the
//!   trainer records it) with a wait after each repeat (latency), and an eval batch likewise;
//!   each repeat runs a profiled step, a waited step and a waited eval batch in turn, so a
//!   slow spell of a shared machine hits all three alike. Then the same number of steps
//!   back to back with one wait at the end (throughput, as training runs).
//! - Statistics: median, min and max over the repeats.

pub mod host_clock;
pub mod ops;
mod report;
pub mod table;
#[cfg(not(target_arch = "wasm32"))]
mod run;
pub mod trace;
mod waited;

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::backend::Backend;
use crate::gpu::{AdapterChoice, GpuContext};
use crate::model::{Arch, Model, IMAGE_PIXELS};
use crate::rng::Rng;
use crate::shapes::AdamConfig;
use ops::Call;
pub use report::Report;
#[cfg(not(target_arch = "wasm32"))]
pub use run::run;
pub use waited::{back_to_back, end_to_end, waited_eval, waited_step};

/// The most dispatches one profiled step may time (a query set holds 4096 timestamps).
const MAX_DISPATCHES: u32 = 2048;

/// The wgpu version Cargo.lock resolved, stamped by build.rs ("unknown" without a Cargo.lock).
pub const WGPU_VERSION: &str = env!("WGSL_CNN_WGPU_VERSION");
/// The commit this binary was built from, stamped by build.rs: `git rev-parse --short=12
/// HEAD`, "-dirty" when tracked files differed from it, "unknown" outside a git checkout.
pub const GIT_COMMIT: &str = env!("WGSL_CNN_GIT_COMMIT");
/// Images in MNIST's training split: an epoch is ⌈60000 / batch⌉ steps.
pub const TRAIN_IMAGES: usize = 60_000;
/// Distinct synthetic batches the benchmark cycles through.
pub const BATCHES: usize = 4;

/// How op calls are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Timestamps where the adapter has TIMESTAMP_QUERY_INSIDE_PASSES, else the wall clock.
    Auto,
    /// Timestamps, or an error where the adapter has none.
    Timestamp,
    /// Wall clock around a submit-and-wait per op call.
    Wall,
}

pub struct BenchConfig {
    /// The model whose step is measured.
    pub arch: Arch,
    pub batch: usize,
    /// Fewer repeats and one CPU step: done in under a minute on lavapipe.
    pub quick: bool,
    /// Timed repeats of each measurement (default 20, --quick 5).
    pub repeats: Option<usize>,
    /// Untimed steps after the first one (default 2, --quick 1).
    pub warmup: Option<usize>,
    /// CPU reference steps to time (default 2, --quick 1); 0 skips the CPU reference.
    pub cpu_steps: Option<usize>,
    pub timer: Timer,
    pub json: Option<PathBuf>,
    pub adapter: AdapterChoice,
}


/// Median, min and max of some timings (ms).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub repeats: usize,
}

impl Stats {
    pub fn of(v: &[f64]) -> Stats {
        assert!(!v.is_empty(), "no timings");
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let mid = s.len() / 2;
        let median = if s.len() % 2 == 1 { s[mid] } else { (s[mid - 1] + s[mid]) / 2.0 };
        Stats { median, min: s[0], max: s[s.len() - 1], repeats: s.len() }
    }
}

/// GFLOP/s (or GB/s) of `count` operations (bytes) in `ms` milliseconds.
pub fn rate(count: u64, ms: f64) -> f64 {
    if ms > 0.0 {
        count as f64 / (ms * 1e6)
    } else {
        f64::NAN
    }
}

/// The real model and a synthetic data set on one backend, stepping as the trainer does
/// (also used by examples/host_path).
pub struct Workload<B: Backend> {
    model: Model<B>,
    ds: B::Dataset,
    perm: B::Index,
    batch: usize,
    steps: u32,
    evals: usize,
    adam: AdamConfig,
}

impl<B: Backend + 'static> Workload<B> {
    pub fn new(be: &mut B, arch: &Arch, batch: usize) -> Result<Self> {
        let count = batch.checked_mul(BATCHES).context("--batch is too large")?;
        if let Some(budget) = be.memory_budget() {
            // The synthetic data set (u8 pixels, labels, order) and the model, before allocating.
            let data = |n: usize| {
                let count = (n * BATCHES) as u64;
                vec![count * IMAGE_PIXELS as u64, count * 4, count * 4]
            };
            crate::nn::sizer::check_batch_with(arch, batch, &budget, &data, "--batch")?;
        }
        let mut rng = Rng::new(0x5EED_BE9C);
        let images: Vec<u8> = (0..count * IMAGE_PIXELS).map(|_| rng.below(256) as u8).collect();
        let labels: Vec<u8> = (0..count).map(|_| rng.below(arch.classes) as u8).collect();
        let mut order: Vec<u32> = (0..count as u32).collect();
        rng.shuffle(&mut order);
        let ds = be.dataset(&images, &labels, IMAGE_PIXELS);
        let perm = be.index(count);
        be.write_index(&perm, &order);
        let model = Model::new(be, arch, batch, 0)?;
        Ok(Workload { model, ds, perm, batch, steps: 0, evals: 0, adam: AdamConfig::default() })
    }

    /// Gather + forward + loss + backward + Adam, recorded and submitted (not waited for).
    fn train_step(&mut self, be: &mut B) {
        self.record_train_step(be);
        be.submit();
    }

    /// `train_step` without the submit.
    pub fn record_train_step(&mut self, be: &mut B) {
        let offset = (self.steps as usize % BATCHES) * self.batch;
        self.steps += 1;
        self.model.gather_batch(be, &self.ds, &self.perm, offset, self.batch);
        self.model.train_step(be, self.batch, &self.adam);
    }

    /// Gather + eval-mode forward + correct count, recorded (not waited for).
    fn eval_batch(&mut self, be: &mut B) {
        let offset = (self.evals % BATCHES) * self.batch;
        self.evals += 1;
        self.model.gather_batch(be, &self.ds, &self.perm, offset, self.batch);
        self.model.eval_batch(be, self.batch);
        be.submit();
    }
}

/// The op calls of one name in the training step and their timings.
pub struct OpTiming {
    /// Scope and op ("conv2.backward conv2d_grad_weight").
    pub name: String,
    pub op: Call,
    /// How many calls of this name and shape a step makes (weight-tied blocks repeat).
    pub calls: usize,
    /// Dispatches of all of them.
    pub dispatches: u64,
    /// Wall ms of the first call (with pipeline creation), waits around it; None where op
    /// calls cannot be waited for one by one (the page).
    pub first_ms: Option<f64>,
    pub stats: Stats,
}

impl OpTiming {
    pub fn flops(&self) -> u64 {
        self.op.flops() * self.calls as u64
    }
    pub fn bytes(&self) -> u64 {
        self.op.bytes() * self.calls as u64
    }
    /// The name, with "×k" when the step makes k such calls.
    pub fn label(&self) -> String {
        if self.calls > 1 {
            format!("{} ×{}", self.name, self.calls)
        } else {
            self.name.clone()
        }
    }
}

/// An end-to-end measurement.
pub struct E2e {
    pub kernel: &'static str,
    pub what: String,
    pub device: &'static str,
    pub stats: Stats,
    /// Images per timed repeat.
    pub images: usize,
    pub flops: u64,
    pub bytes: u64,
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The host's CPU model (Linux), else the architecture.
pub fn host_cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The 1-minute load average (Linux), to tell a busy machine's numbers apart.
pub fn host_load() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

pub fn host_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Adapter, versions, and the features and limits the kernels care about.
pub fn header(ctx: &GpuContext) -> String {
    use wgpu::Features as F;
    let (i, af, al, l) = (&ctx.info, ctx.adapter_features, &ctx.adapter_limits, &ctx.limits);
    let mut s = String::new();
    s += &format!("adapter:  {}\n", i.name);
    s += &format!(
        "          backend {:?}, device type {:?}, driver {} ({})\n",
        i.backend, i.device_type, i.driver, i.driver_info
    );
    s += &format!("versions: wgpu {WGPU_VERSION}, wgsl-cnn {} at commit {GIT_COMMIT}\n", env!("CARGO_PKG_VERSION"));
    s += &format!(
        "host:     {}, {} threads{}\n",
        host_cpu(),
        host_threads(),
        host_load().map_or(String::new(), |l| format!(", load average {l:.2} at start"))
    );
    s += &format!(
        "features: timestamp queries {}, inside encoders {}, inside passes {} (period {} ns/tick); subgroups {} (size {}-{}); shader-f16 {}\n",
        yes(af.contains(F::TIMESTAMP_QUERY)),
        yes(af.contains(F::TIMESTAMP_QUERY_INSIDE_ENCODERS)),
        yes(af.contains(F::TIMESTAMP_QUERY_INSIDE_PASSES)),
        ctx.queue.get_timestamp_period(),
        yes(af.contains(F::SUBGROUP)),
        i.subgroup_min_size,
        i.subgroup_max_size,
        yes(af.contains(F::SHADER_F16)),
    );
    s += &format!(
        "limits:   adapter (device opened with): workgroup storage {} B ({}), storage buffers/stage {} ({}), \
invocations/workgroup {} ({}), workgroups/dimension {} ({}), storage binding {} MiB ({})\n",
        al.max_compute_workgroup_storage_size,
        l.max_compute_workgroup_storage_size,
        al.max_storage_buffers_per_shader_stage,
        l.max_storage_buffers_per_shader_stage,
        al.max_compute_invocations_per_workgroup,
        l.max_compute_invocations_per_workgroup,
        al.max_compute_workgroups_per_dimension,
        l.max_compute_workgroups_per_dimension,
        al.max_storage_buffer_binding_size >> 20,
        l.max_storage_buffer_binding_size >> 20,
    );
    s
}


