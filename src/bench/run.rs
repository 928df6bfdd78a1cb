//! `bench` on the CLI: the per-op profile (timestamps or the wall clock per op call),
//! interleaved with the end-to-end measurements of `waited`, and the CPU reference's step.

use web_time::Instant;

use anyhow::{bail, ensure, Context, Result};

use super::trace::{self, Trace, Traced};
use super::waited::Waited;
use super::{back_to_back, header, BenchConfig, Report, MAX_DISPATCHES, Stats, Timer, Workload, E2e};
use crate::gpu::GpuContext;
use crate::gpu::Gpu;
use crate::reference::Cpu;

/// Runs the benchmark, prints its report, and writes `cfg.json` if asked (native: the page
/// runs `end_to_end`).
#[cfg(not(target_arch = "wasm32"))]
pub fn run(cfg: &BenchConfig) -> Result<Report> {
    ensure!(cfg.batch >= 1, "--batch must be at least 1");
    let (batch, repeats, warmup) = (cfg.batch, cfg.repeats(), cfg.warmup());
    let mut be = Gpu::new(&cfg.adapter)?;
    let rec = trace::attach(&mut be);
    print!("{}", header(&be.ctx));
    // Timestamps inside the step's pass where the device writes them there, else at the
    // boundaries of a pass per dispatch (TIMESTAMP_QUERY alone, as WebGPU offers).
    let timer = match cfg.timer {
        Timer::Auto if be.ctx.can_time_passes() => Timer::Timestamp,
        Timer::Auto | Timer::Wall => Timer::Wall,
        Timer::Timestamp if be.ctx.can_time_passes() => Timer::Timestamp,
        Timer::Timestamp => bail!("{} has no TIMESTAMP_QUERY; use --timer wall", be.ctx.info.name),
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
    let mut waited = Waited::default();
    for _ in 0..repeats {
        if timer == Timer::Timestamp {
            set_mode(Trace::Record);
            if be.ctx.can_profile() {
                be.ctx.start_profiling(MAX_DISPATCHES)?;
            } else {
                be.ctx.start_profiling_passes(MAX_DISPATCHES)?;
            }
            w.train_step(&mut be);
            let times = be.ctx.stop_profiling()?;
            for (i, ms) in trace::call_times(&times, calls.len(), &mut kernels)?.into_iter().enumerate() {
                per_call[i].push(ms);
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

        pollster::block_on(waited.repeat(&mut be, &mut w));
    }
    let ops = trace::group_calls(&calls, &per_call);
    let step_flops = calls.iter().map(|c| c.call.flops()).sum();
    let step_bytes = calls.iter().map(|c| c.call.bytes()).sum();

    // Throughput as training runs: steps back to back, one wait at the end.
    eprintln!("bench: {repeats} train steps back to back");
    let throughput = pollster::block_on(back_to_back(&mut be, &mut w, repeats));
    let eval_calls = {
        set_mode(Trace::Record);
        w.eval_batch(&mut be);
        be.ctx.finish();
        take_calls()
    };
    let mut e2e = waited.rows(batch, repeats, throughput, &calls, &eval_calls);

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
        autotune: be.ctx.autotune_mode(),
        choices: be.ctx.tuner().map(|t| t.used()).unwrap_or_default(),
    };
    print!("{}", report.table());
    if let Some(path) = &cfg.json {
        let text = serde_json::to_string_pretty(&report.records(cfg.quick))?;
        std::fs::write(path, text + "\n").with_context(|| format!("could not write {}", path.display()))?;
        println!("wrote {} records to {}", report.ops.len() + report.e2e.len() + report.choices.len(), path.display());
    }
    Ok(report)
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
        Timer::Timestamp if ctx.can_profile() => format!(
            "GPU timestamps (TIMESTAMP_QUERY_INSIDE_PASSES, {} ns/tick): first dispatch begin to last dispatch end of each op call",
            ctx.queue.get_timestamp_period()
        ),
        Timer::Timestamp => format!(
            "GPU timestamps at pass boundaries (TIMESTAMP_QUERY without INSIDE_PASSES, {} ns/tick): each dispatch in a pass of its own while profiling; first dispatch begin to last dispatch end of each op call",
            ctx.queue.get_timestamp_period()
        ),
        Timer::Wall if ctx.can_time_passes() => "wall clock around a submit-and-wait per op call (--timer wall)".into(),
        Timer::Wall => "wall clock around a submit-and-wait per op call (the adapter has no TIMESTAMP_QUERY)".into(),
        Timer::Auto => unreachable!("resolved before measuring"),
    }
}
