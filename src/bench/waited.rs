//! The end-to-end measurements, awaited so that the page runs them too: a training step or an
//! eval batch with a wait after it, steps back to back with one wait at the end. The CLI's
//! `bench` interleaves them with its per-op profiles; the page runs `end_to_end`, which
//! interleaves them with per-op profiles from timestamps only (a page cannot block between op
//! calls to time them on the wall clock).

use anyhow::{ensure, Result};
use web_time::Instant;

use super::host_clock::StepTimes;
use super::trace::{self, Trace, Traced};
use super::{Report, Stats, Timer, Workload, E2e, MAX_DISPATCHES};
use crate::backend::Backend;
use crate::gpu::Gpu;
use crate::model::Arch;

/// One training step recorded, submitted and waited for: (ms from the start of recording to
/// the device's end, the host's record and submit times).
pub async fn waited_step<B: Backend + 'static>(be: &mut B, w: &mut Workload<B>) -> (f64, StepTimes) {
    let t = Instant::now();
    let host = StepTimes::measure(be, |be| w.record_train_step(be), |be, ()| be.submit());
    be.settle().await;
    (t.elapsed().as_secs_f64() * 1e3, host)
}

/// One eval batch recorded, submitted and waited for (ms).
pub async fn waited_eval<B: Backend + 'static>(be: &mut B, w: &mut Workload<B>) -> f64 {
    let t = Instant::now();
    w.eval_batch(be);
    be.settle().await;
    t.elapsed().as_secs_f64() * 1e3
}

/// `steps` training steps back to back with one wait at the end, as training runs: ms per step.
pub async fn back_to_back<B: Backend + 'static>(be: &mut B, w: &mut Workload<B>, steps: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..steps {
        w.train_step(be);
    }
    be.settle().await;
    t.elapsed().as_secs_f64() * 1e3 / steps.max(1) as f64
}

/// The end-to-end timings of one run, repeat by repeat, and the rows they make.
#[derive(Default)]
pub struct Waited {
    latency: Vec<f64>,
    recording: Vec<f64>,
    submitting: Vec<f64>,
    recording_wall: Vec<f64>,
    eval: Vec<f64>,
}

impl Waited {
    /// One repeat: a waited step, then a waited eval batch.
    pub async fn repeat<B: Backend + 'static>(&mut self, be: &mut B, w: &mut Workload<B>) {
        let (ms, host) = waited_step(be, w).await;
        self.latency.push(ms);
        self.recording.push((host.host.0 + host.host.1) * 1e-3);
        self.submitting.push(host.host.1 * 1e-3);
        self.recording_wall.push((host.wall.0 + host.wall.1) * 1e-3);
        self.eval.push(waited_eval(be, w).await);
    }

    /// The end-to-end rows: the step waited and its host parts, `back_to_back` ms per step over
    /// `repeats` steps, the eval batch; FLOPs and bytes from the traced step and eval calls.
    pub fn rows(&self, batch: usize, repeats: usize, back_to_back: f64, step: &[Traced], eval: &[Traced]) -> Vec<E2e> {
        let (flops, bytes) = (step.iter().map(|c| c.call.flops()).sum(), step.iter().map(|c| c.call.bytes()).sum());
        let row = |kernel, what: &str, stats| E2e { kernel, what: what.to_string(), device: "gpu", stats, images: batch, flops, bytes };
        let pipelined = Stats { median: back_to_back, min: back_to_back, max: back_to_back, repeats };
        vec![
            row("train_step", "train step, wait after each", Stats::of(&self.latency)),
            row("train_step_recording", "  of which host CPU to record + submit", Stats::of(&self.recording)),
            row("train_step_submit", "    of which submit (wgpu encodes, queues)", Stats::of(&self.submitting)),
            row("train_step_recording_wall", "  record + submit on the wall clock", Stats::of(&self.recording_wall)),
            row("train_step_pipelined", "train step, back to back (mean)", pipelined),
            E2e {
                kernel: "eval_batch",
                what: "eval batch, wait after each".into(),
                device: "gpu",
                stats: Stats::of(&self.eval),
                images: batch,
                flops: eval.iter().map(|c| c.call.flops()).sum(),
                bytes: eval.iter().map(|c| c.call.bytes()).sum(),
            },
        ]
    }
}

/// The page's `bench`: the first step, `warmup` more, then `repeats` of (a profiled step, a
/// waited step, a waited eval batch), then `repeats` steps back to back. The profiled step
/// times each op call with GPU timestamps: inside the step's pass where the device can write
/// them there, else with each dispatch in a pass of its own (WebGPU's `timestamp-query`); a
/// device with no timestamps gets no op rows (a page cannot wait between op calls). Nothing
/// here blocks, so the page awaits it.
pub async fn end_to_end(be: &mut Gpu, arch: &Arch, batch: usize, repeats: usize, warmup: usize) -> Result<Report> {
    ensure!(batch >= 1, "the batch must be at least 1");
    ensure!(repeats >= 1, "at least one repeat");
    let mut w = Workload::new(be, arch, batch)?;
    let t = Instant::now();
    // Where kernel choices are measured only between op calls (the page), one step and one
    // eval batch inside a tuning window make them first; the first step's time includes this,
    // as the native tuner's measurements count in its first step.
    if be.begin_tuning() {
        w.train_step(be);
        w.eval_batch(be);
        be.submit();
        be.end_tuning().await;
    }
    let rec = trace::attach(be);
    let take = |mode| {
        let mut r = rec.borrow_mut();
        r.mode = mode;
        std::mem::take(&mut r.calls)
    };
    take(Trace::Record);
    w.train_step(be);
    be.settle().await;
    let first_step_ms = t.elapsed().as_secs_f64() * 1e3;
    let calls = take(Trace::Record);
    w.eval_batch(be);
    be.settle().await;
    let eval_calls = take(Trace::Off);
    for _ in 0..warmup {
        w.train_step(be);
        be.settle().await;
    }
    let per_pass = if be.ctx.can_profile() {
        Some(false)
    } else {
        be.ctx.can_time_passes().then_some(true)
    };
    let mut per_call: Vec<Vec<f64>> = vec![Vec::new(); calls.len()];
    let mut kernels = std::collections::BTreeSet::new();
    let mut waited = Waited::default();
    for _ in 0..repeats {
        if let Some(per_pass) = per_pass {
            take(Trace::Record);
            if per_pass {
                be.ctx.start_profiling_passes(MAX_DISPATCHES)?;
            } else {
                be.ctx.start_profiling(MAX_DISPATCHES)?;
            }
            w.train_step(be);
            let times = be.ctx.stop_profiling_async().await?;
            let now = take(Trace::Off);
            ensure!(now.len() == calls.len(), "the training step made {} op calls, then {}", calls.len(), now.len());
            for (i, ms) in trace::call_times(&times, calls.len(), &mut kernels)?.into_iter().enumerate() {
                per_call[i].push(ms);
            }
        }
        waited.repeat(be, &mut w).await;
    }
    let throughput = back_to_back(be, &mut w, repeats).await;
    be.observer = None;
    let e2e = waited.rows(batch, repeats, throughput, &calls, &eval_calls);
    Ok(Report {
        model: arch.name.clone(),
        ctx_info: be.ctx.info.clone(),
        batch,
        timer: if per_pass.is_some() { Timer::Timestamp } else { Timer::Wall },
        repeats,
        warmup,
        first_step_ms,
        ops: if per_pass.is_some() { trace::group_calls(&calls, &per_call) } else { Vec::new() },
        e2e,
        distinct_kernels: per_pass.map(|_| kernels.len()),
        autotune: be.ctx.autotune_mode(),
        choices: be.ctx.tuner().map(|t| t.used()).unwrap_or_default(),
    })
}
