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
pub mod trace;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use crate::backend::Backend;
use crate::gpu::{AdapterChoice, Gpu, GpuContext};
use crate::model::{Arch, Model, IMAGE_PIXELS};
use crate::reference::Cpu;
use crate::rng::Rng;
use crate::shapes::AdamConfig;
use host_clock::StepTimes;
use ops::Call;
pub use report::Report;
use trace::{Trace, Traced};

/// The wgpu version Cargo.lock resolved, stamped by build.rs ("unknown" without a Cargo.lock).
pub const WGPU_VERSION: &str = env!("WGSL_CNN_WGPU_VERSION");
/// The commit this binary was built from, stamped by build.rs: `git rev-parse --short=12
/// HEAD`, "-dirty" when tracked files differed from it, "unknown" outside a git checkout.
pub const GIT_COMMIT: &str = env!("WGSL_CNN_GIT_COMMIT");
/// Images in MNIST's training split: an epoch is ⌈60000 / batch⌉ steps.
pub const TRAIN_IMAGES: usize = 60_000;
/// Distinct synthetic batches the benchmark cycles through.
pub const BATCHES: usize = 4;
/// Most dispatches one profiled step may record (the query set's size / 2).
const MAX_DISPATCHES: u32 = 2048;

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

impl BenchConfig {
    fn repeats(&self) -> usize {
        self.repeats.unwrap_or(if self.quick { 5 } else { 20 }).max(1)
    }
    fn warmup(&self) -> usize {
        self.warmup.unwrap_or(if self.quick { 1 } else { 2 })
    }
    fn cpu_steps(&self) -> usize {
        self.cpu_steps.unwrap_or(if self.quick { 1 } else { 2 })
    }
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
    /// Wall ms of the first call (with pipeline creation), waits around it.
    pub first_ms: f64,
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

/// Runs the benchmark, prints its report, and writes `cfg.json` if asked.
pub fn run(cfg: &BenchConfig) -> Result<Report> {
    ensure!(cfg.batch >= 1, "--batch must be at least 1");
    let (batch, repeats, warmup) = (cfg.batch, cfg.repeats(), cfg.warmup());
    let mut be = Gpu::new(&cfg.adapter)?;
    let rec = trace::attach(&mut be);
    print!("{}", header(&be.ctx));
    let timer = match cfg.timer {
        Timer::Auto if be.ctx.can_profile() => Timer::Timestamp,
        Timer::Auto | Timer::Wall => Timer::Wall,
        Timer::Timestamp if be.ctx.can_profile() => Timer::Timestamp,
        Timer::Timestamp => bail!("{} has no TIMESTAMP_QUERY_INSIDE_PASSES; use --timer wall", be.ctx.info.name),
    };
    println!(
        "run:      model {}, batch {batch}, {repeats} timed repeats after a warm-up of 1 + {warmup} steps{}",
        cfg.arch.name,
        if cfg.quick { " (--quick)" } else { "" }
    );
    println!("timer:    {}", timer_description(timer, &be.ctx));
    println!("kernels:  {}", kernel_choice(&be.ctx));
    println!();

    let mut w = Workload::new(&mut be, &cfg.arch, batch)?;
    let set_mode = |mode| {
        let mut r = rec.borrow_mut();
        r.clear();
        r.mode = mode;
    };
    let take_calls = || {
        let mut r = rec.borrow_mut();
        r.mode = Trace::Off;
        std::mem::take(&mut r.calls)
    };

    // Warm-up: the first step with every op call waited for and timed on its own.
    eprintln!("bench: warm-up");
    set_mode(Trace::Wall);
    let t = Instant::now();
    w.train_step(&mut be);
    be.ctx.finish();
    let first_step_ms = t.elapsed().as_secs_f64() * 1e3;
    for c in be.ctx.tuner().map(|t| t.take_new()).unwrap_or_default() {
        println!("kernel:   {}", c.describe());
    }
    let calls: Vec<Traced> = take_calls();
    for _ in 0..warmup {
        w.train_step(&mut be);
        be.ctx.finish();
    }

    // Interleaved, so that a slow spell of a shared machine hits every measurement alike:
    // each repeat profiles one step per op call, then times one step and one eval batch
    // end to end with nothing profiled.
    eprintln!(
        "bench: {repeats} repeats of (a profiled step ({}), a waited step, a waited eval batch)",
        if timer == Timer::Timestamp { "timestamps" } else { "wall clock" }
    );
    let mut per_call: Vec<Vec<f64>> = vec![Vec::new(); calls.len()];
    let mut kernels = std::collections::BTreeSet::new();
    let (mut latency, mut recording, mut submitting, mut eval) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut recording_wall = Vec::new();
    for _ in 0..repeats {
        if timer == Timer::Timestamp {
            set_mode(Trace::Record);
            be.ctx.start_profiling(MAX_DISPATCHES)?;
            w.train_step(&mut be);
            let times = be.ctx.stop_profiling()?;
            let mut span = vec![(f64::INFINITY, f64::NEG_INFINITY); calls.len()];
            for d in &times {
                let i = d.op.with_context(|| format!("dispatch of {} outside any op call", d.kernel))? as usize;
                ensure!(i < calls.len(), "dispatch tagged with op call {i} of {}", calls.len());
                span[i] = (span[i].0.min(d.begin_ns), span[i].1.max(d.end_ns));
                kernels.insert(d.kernel);
            }
            for (i, (b, e)) in span.into_iter().enumerate() {
                // A call without dispatches takes no device time.
                per_call[i].push(if e >= b { (e - b) * 1e-6 } else { 0.0 });
            }
        } else {
            set_mode(Trace::Wall);
            w.train_step(&mut be);
        }
        let now = take_calls();
        let same = now.len() == calls.len() && now.iter().zip(&calls).all(|(a, b)| (&a.scope, &a.call, a.dispatches) == (&b.scope, &b.call, b.dispatches));
        ensure!(same, "the training step made different op calls from one step to the next");
        if timer == Timer::Wall {
            for (i, c) in now.iter().enumerate() {
                per_call[i].push(c.wall_ms.unwrap_or(0.0));
            }
        }

        let t = Instant::now();
        let host = StepTimes::measure(&mut be, |be| w.record_train_step(be), |be, ()| be.submit());
        recording.push((host.host.0 + host.host.1) * 1e-3);
        submitting.push(host.host.1 * 1e-3);
        recording_wall.push((host.wall.0 + host.wall.1) * 1e-3);
        be.ctx.finish();
        latency.push(t.elapsed().as_secs_f64() * 1e3);

        let t = Instant::now();
        w.eval_batch(&mut be);
        be.ctx.finish();
        eval.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let ops = group_calls(&calls, &per_call);
    let step_flops = calls.iter().map(|c| c.call.flops()).sum();
    let step_bytes = calls.iter().map(|c| c.call.bytes()).sum();

    // Throughput as training runs: steps back to back, one wait at the end.
    eprintln!("bench: {repeats} train steps back to back");
    let t = Instant::now();
    for _ in 0..repeats {
        w.train_step(&mut be);
    }
    be.ctx.finish();
    let throughput = t.elapsed().as_secs_f64() * 1e3 / repeats as f64;
    let mut e2e = Vec::new();
    let eval_calls = {
        set_mode(Trace::Record);
        w.eval_batch(&mut be);
        be.ctx.finish();
        take_calls()
    };
    let gpu_step = |kernel, what: &str, stats| E2e {
        kernel,
        what: what.to_string(),
        device: "gpu",
        stats,
        images: batch,
        flops: step_flops,
        bytes: step_bytes,
    };
    e2e.push(gpu_step("train_step", "train step, wait after each", Stats::of(&latency)));
    e2e.push(gpu_step("train_step_recording", "  of which host CPU to record + submit", Stats::of(&recording)));
    e2e.push(gpu_step("train_step_submit", "    of which submit (wgpu encodes, queues)", Stats::of(&submitting)));
    e2e.push(gpu_step("train_step_recording_wall", "  record + submit on the wall clock", Stats::of(&recording_wall)));
    e2e.push(gpu_step(
        "train_step_pipelined",
        "train step, back to back (mean)",
        Stats { median: throughput, min: throughput, max: throughput, repeats },
    ));
    e2e.push(E2e {
        kernel: "eval_batch",
        what: "eval batch, wait after each".into(),
        device: "gpu",
        stats: Stats::of(&eval),
        images: batch,
        flops: eval_calls.iter().map(|c| c.call.flops()).sum(),
        bytes: eval_calls.iter().map(|c| c.call.bytes()).sum(),
    });

    // The CPU reference, same step, same run.
    let cpu_steps = cfg.cpu_steps();
    if cpu_steps > 0 {
        eprintln!("bench: {cpu_steps} CPU reference train step(s)");
        let cpu = &mut Cpu::new();
        let mut wc = Workload::new(cpu, &cfg.arch, batch)?;
        let mut v = Vec::new();
        for _ in 0..cpu_steps {
            let t = Instant::now();
            wc.train_step(cpu);
            v.push(t.elapsed().as_secs_f64() * 1e3);
        }
        e2e.push(E2e {
            kernel: "train_step_cpu_reference",
            what: "CPU reference train step".into(),
            device: "cpu",
            stats: Stats::of(&v),
            images: batch,
            flops: step_flops,
            bytes: step_bytes,
        });
    }

    let report = Report {
        model: cfg.arch.name.clone(),
        ctx_info: be.ctx.info.clone(),
        batch,
        timer,
        repeats,
        warmup,
        first_step_ms,
        ops,
        e2e,
        distinct_kernels: (timer == Timer::Timestamp).then_some(kernels.len()),
    };
    print!("{}", report.table());
    if let Some(path) = &cfg.json {
        let text = serde_json::to_string_pretty(&report.records(cfg.quick))?;
        std::fs::write(path, text + "\n").with_context(|| format!("could not write {}", path.display()))?;
        println!("wrote {} records to {}", report.ops.len() + report.e2e.len(), path.display());
    }
    Ok(report)
}

/// One row per name and shape, in the order of first appearance: calls of one layer that
/// repeat (a weight-tied block) add their times per repeat and their dispatches.
fn group_calls(calls: &[Traced], per_call: &[Vec<f64>]) -> Vec<OpTiming> {
    let mut rows: Vec<(String, Call, usize, u64, f64, Vec<f64>)> = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        let name = c.name();
        let first = c.wall_ms.unwrap_or(0.0);
        match rows.iter_mut().find(|r| r.0 == name && r.1 == c.call) {
            Some(r) => {
                r.2 += 1;
                r.3 += c.dispatches;
                r.4 += first;
                r.5.iter_mut().zip(&per_call[i]).for_each(|(t, x)| *t += x);
            }
            None => rows.push((name, c.call.clone(), 1, c.dispatches, first, per_call[i].clone())),
        }
    }
    rows.into_iter()
        .map(|(name, op, calls, dispatches, first_ms, times)| OpTiming { name, op, calls, dispatches, first_ms, stats: Stats::of(&times) })
        .collect()
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

/// How kernels are chosen: the tuner's mode and cache file, or the fixed rules.
fn kernel_choice(ctx: &GpuContext) -> String {
    use crate::gpu::autotune::Mode;
    let forced = match crate::gpu::matmul::env_override() {
        Some(k) => format!("; matmul forced to {k:?} by {}", crate::gpu::matmul::KERNEL_ENV),
        None => String::new(),
    };
    match ctx.tuner() {
        Some(t) => format!(
            "timed on this adapter at first use ({}), cached in {}{forced}; the choices follow the warm-up",
            if t.mode() == Mode::Refresh { "--autotune refresh: every shape timed again" } else { "--autotune cached" },
            t.file().map_or("memory only".into(), |f| f.display().to_string()),
        ),
        None => format!("fixed rules (--autotune off): matmul by adapter type, conv2d row kernels where they fit{forced}"),
    }
}

fn timer_description(timer: Timer, ctx: &GpuContext) -> String {
    match timer {
        Timer::Timestamp => format!(
            "GPU timestamps (TIMESTAMP_QUERY_INSIDE_PASSES, {} ns/tick): first dispatch begin to last dispatch end of each op call",
            ctx.queue.get_timestamp_period()
        ),
        Timer::Wall if ctx.can_profile() => "wall clock around a submit-and-wait per op call (--timer wall)".into(),
        Timer::Wall => {
            "wall clock around a submit-and-wait per op call (the adapter has no TIMESTAMP_QUERY_INSIDE_PASSES)".into()
        }
        Timer::Auto => unreachable!("resolved before measuring"),
    }
}
