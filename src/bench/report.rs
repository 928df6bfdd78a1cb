//! What `bench` found, as a table for people (`Report::table`) and as flat JSON records for
//! tools (`Report::records`; `table.rs` reads them back).

use serde_json::{json, Value};

use crate::text::thousands;

use super::table::SCHEMA;
use super::{host_clock, host_cpu, host_load, host_threads, rate, E2e, OpTiming, Stats, Timer, GIT_COMMIT, TRAIN_IMAGES, WGPU_VERSION};

/// One run of the benchmark: the adapter, how it was timed, every op call and the end-to-end
/// figures.
pub struct Report {
    pub model: String,
    pub ctx_info: wgpu::AdapterInfo,
    pub batch: usize,
    pub timer: Timer,
    pub repeats: usize,
    pub warmup: usize,
    pub first_step_ms: f64,
    pub ops: Vec<OpTiming>,
    pub e2e: Vec<E2e>,
    pub distinct_kernels: Option<usize>,
    /// How kernels were chosen: "cached" or "refresh" (the tuner), "off" (fixed rules).
    pub autotune: &'static str,
    /// The tuner's choices this run used, in first-use order (empty with `--autotune off`).
    pub choices: Vec<crate::gpu::autotune::Choice>,
}

fn timer_name(t: Timer) -> &'static str {
    match t {
        Timer::Timestamp => "timestamp",
        _ => "wall",
    }
}

impl Report {
    /// Σ of the op calls' medians.
    pub fn ops_total_ms(&self) -> f64 {
        self.ops.iter().map(|o| o.stats.median).sum()
    }

    /// Dispatches one training step records (gather to Adam).
    pub fn dispatches_per_step(&self) -> u64 {
        self.ops.iter().map(|o| o.dispatches).sum()
    }

    pub fn steps_per_epoch(&self) -> usize {
        TRAIN_IMAGES.div_ceil(self.batch)
    }

    fn e2e(&self, kernel: &str) -> Option<&E2e> {
        self.e2e.iter().find(|e| e.kernel == kernel)
    }

    /// The op table, the top 3 and the end-to-end figures (the end-to-end figures only where
    /// no op call was profiled: the page's benchmark).
    pub fn table(&self) -> String {
        let mut s = String::new();
        if self.ops.is_empty() {
            s += &format!("{} model, batch {}: op calls not profiled, the step timed end to end only\n\n", self.model, self.batch);
            s += &format!("warm-up:  first train step {:.1} ms (pipeline and bind-group creation included); then {} untimed steps\n", self.first_step_ms, self.warmup);
        } else {
            s += &self.op_table();
        }
        s += &format!("end to end (wall clock; the host CPU lines: {}):\n", host_clock::name());
        for e in &self.e2e {
            let st = &e.stats;
            let spread = if st.repeats > 1 && e.kernel != "train_step_pipelined" {
                format!(" (min {:.3}, max {:.3}, {} repeats)", st.min, st.max, st.repeats)
            } else {
                format!(" ({} repeats)", st.repeats)
            };
            let per_s = if is_host_time(e.kernel) {
                String::new()
            } else {
                format!(", {:.0} images/s", e.images as f64 / (st.median * 1e-3))
            };
            s += &format!("  {:<40} {:>10.3} ms{spread}{per_s}\n", e.what, st.median);
        }
        if let Some(p) = self.e2e("train_step_pipelined") {
            let steps = self.steps_per_epoch();
            s += &format!(
                "  projected epoch ({steps} steps, back to back): {:.1} s\n",
                steps as f64 * p.stats.median * 1e-3
            );
        }
        if let Some(l) = self.e2e("train_step") {
            if !self.ops.is_empty() {
                let total = self.ops_total_ms();
                s += &format!(
                    "  op calls sum to {:.1}% of the waited step ({:.3} of {:.3} ms)\n",
                    100.0 * total / l.stats.median,
                    total,
                    l.stats.median
                );
            }
            if let Some(c) = self.e2e("train_step_cpu_reference") {
                s += &format!(
                    "  GPU/CPU: the GPU step is {:.1}x faster than the CPU reference's (medians, same run)\n",
                    c.stats.median / l.stats.median
                );
            }
        }
        s
    }

    /// The profiled op calls, their sum and the top 3, and the warm-up line.
    fn op_table(&self) -> String {
        let total = self.ops_total_ms();
        let mut s = String::new();
        s += &format!(
            "{:>3}  {:<46} {:<30} {:>5} {:>10} {:>19} {:>9} {:>8} {:>7} {:>7}\n",
            "#", "op call", "shape", "disp", "median ms", "min-max ms", "first ms", "GFLOP/s", "GB/s", "% step"
        );
        for (i, o) in self.ops.iter().enumerate() {
            let st = &o.stats;
            s += &format!(
                "{:>3}  {:<46} {:<30} {:>5} {:>10.3} {:>19} {:>9} {:>8.2} {:>7.2} {:>6.1}%\n",
                i + 1,
                o.label(),
                o.op.shape(),
                o.dispatches,
                st.median,
                format!("{:.3}-{:.3}", st.min, st.max),
                o.first_ms.map_or("—".into(), |f| format!("{f:.2}")),
                rate(o.flops(), st.median),
                rate(o.bytes(), st.median),
                100.0 * st.median / total,
            );
        }
        let flops: u64 = self.ops.iter().map(OpTiming::flops).sum();
        let bytes: u64 = self.ops.iter().map(OpTiming::bytes).sum();
        s += &format!(
            "     {:<46} {:<30} {:>5} {:>10.3} {:>19} {:>9} {:>8.2} {:>7.2} {:>6.1}%\n",
            "sum of op calls",
            format!("{} calls", self.ops.iter().map(|o| o.calls).sum::<usize>()),
            self.dispatches_per_step(),
            total,
            "",
            self.ops.iter().map(|o| o.first_ms).sum::<Option<f64>>().map_or("—".into(), |f| format!("{f:.2}")),
            rate(flops, total),
            rate(bytes, total),
            100.0
        );
        s += &format!(
            "     ({} model, batch {}: {} dispatches per train step; {} FLOP and {} bytes per step, counted from the shapes{})\n\n",
            self.model,
            self.batch,
            self.dispatches_per_step(),
            thousands(flops),
            thousands(bytes),
            self.distinct_kernels.map_or(String::new(), |k| format!("; {k} distinct kernels"))
        );
        let mut top: Vec<&OpTiming> = self.ops.iter().collect();
        top.sort_by(|a, b| b.stats.median.total_cmp(&a.stats.median));
        s += "top 3:";
        for (i, o) in top.iter().take(3).enumerate() {
            s += &format!(
                "{} {}. {} {:.3} ms ({:.1}%)",
                if i == 0 { "" } else { "," },
                i + 1,
                o.label(),
                o.stats.median,
                100.0 * o.stats.median / total
            );
        }
        s += "\n\n";
        s += &format!(
            "warm-up:  first train step {:.1} ms with a wait around each op call (pipeline and bind-group creation included); then {} untimed steps\n",
            self.first_step_ms, self.warmup
        );
        s
    }

    /// One flat JSON object per measurement, every object with the same keys.
    pub fn records(&self, quick: bool) -> Value {
        let i = &self.ctx_info;
        let unix_time = web_time::SystemTime::now().duration_since(web_time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let base =
            |kind: &str, kernel: &str, op: &str, shape: String, device: &str, st: &Stats, flops: u64, bytes: u64| {
                json!({
                    "schema": SCHEMA,
                    "kind": kind,
                    "model": self.model,
                    "kernel": kernel,
                    "op": op,
                    "shape": shape,
                    "batch": self.batch,
                    "device": device,
                    "adapter": i.name,
                    "backend": format!("{:?}", i.backend),
                    "device_type": format!("{:?}", i.device_type),
                    "driver": i.driver,
                    "driver_info": i.driver_info,
                    "wgpu_version": WGPU_VERSION,
                    "crate_version": env!("CARGO_PKG_VERSION"),
                    "git_commit": GIT_COMMIT,
                    "host_cpu": host_cpu(),
                    "host_threads": host_threads(),
                    "host_load": host_load(),
                    "unix_time": unix_time,
                    "quick": quick,
                    "autotune": self.autotune,
                    "timer": if kind == "op" { timer_name(self.timer) } else { "wall" },
                    "repeats": st.repeats,
                    "median_ms": st.median,
                    "min_ms": st.min,
                    "max_ms": st.max,
                    "flops": flops,
                    "bytes": bytes,
                    "gflops": finite(rate(flops, st.median)),
                    "gbps": finite(rate(bytes, st.median)),
                })
            };
        let total = self.ops_total_ms();
        let mut out = Vec::new();
        for (n, o) in self.ops.iter().enumerate() {
            let mut r = base("op", &o.name, o.op.kind(), o.op.shape(), "gpu", &o.stats, o.flops(), o.bytes());
            r["index"] = json!(n);
            r["calls"] = json!(o.calls);
            r["dispatches"] = json!(o.dispatches);
            r["first_ms"] = json!(o.first_ms);
            r["percent_of_step"] = json!(100.0 * o.stats.median / total);
            r["images_per_s"] = Value::Null;
            r["epoch_s"] = Value::Null;
            out.push(r);
        }
        for e in &self.e2e {
            let mut r = base(
                "end_to_end",
                e.kernel,
                e.kernel,
                format!("batch {}", self.batch),
                e.device,
                &e.stats,
                e.flops,
                e.bytes,
            );
            if matches!(e.kernel, "train_step_recording" | "train_step_submit") {
                r["timer"] = json!(host_clock::json_name());
            }
            r["index"] = Value::Null;
            r["calls"] = Value::Null;
            r["dispatches"] = if e.kernel == "train_step" { json!(self.dispatches_per_step()) } else { Value::Null };
            r["first_ms"] = if e.kernel == "train_step" { json!(self.first_step_ms) } else { Value::Null };
            r["percent_of_step"] = Value::Null;
            r["images_per_s"] = json!(e.images as f64 / (e.stats.median * 1e-3));
            r["epoch_s"] = if e.kernel.starts_with("train_step") && !is_host_time(e.kernel) {
                json!(self.steps_per_epoch() as f64 * e.stats.median * 1e-3)
            } else {
                Value::Null
            };
            if is_host_time(e.kernel) {
                r["images_per_s"] = Value::Null;
            }
            out.push(r);
        }
        // What the tuner chose: `kernel` the chosen kernel, `shape` the op and shape as the
        // tuner names them, `median_ms` the chosen kernel's mean time per call when it was
        // timed (`timer` "tuner": `repeats` 0, min and max equal to it).
        for c in &self.choices {
            let ms = c.times_us.iter().find(|(k, _)| *k == c.kernel).map(|(_, us)| us * 1e-3);
            let family = c.key.split([' ', '.']).next().unwrap_or("");
            let st = Stats { median: 0.0, min: 0.0, max: 0.0, repeats: 0 };
            let mut r = base("kernel_choice", &c.kernel, family, c.key.clone(), "gpu", &st, 0, 0);
            r["timer"] = json!("tuner");
            for k in ["median_ms", "min_ms", "max_ms"] {
                r[k] = ms.map_or(Value::Null, |m| json!(m));
            }
            for k in ["index", "calls", "dispatches", "first_ms", "percent_of_step", "images_per_s", "epoch_s", "flops", "bytes", "gflops", "gbps"] {
                r[k] = Value::Null;
            }
            r["measured"] = json!(c.measured);
            out.push(r);
        }
        for r in &mut out {
            if r.get("measured").is_none() {
                r["measured"] = Value::Null;
            }
        }
        Value::Array(out)
    }
}

/// End-to-end records that time the host's share of a step, not a step.
fn is_host_time(kernel: &str) -> bool {
    matches!(kernel, "train_step_recording" | "train_step_submit" | "train_step_recording_wall")
}

fn finite(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

