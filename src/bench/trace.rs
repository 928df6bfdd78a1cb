//! Records the op calls of the GPU backend through its observer hook (`Gpu::observer`): each
//! call's scope (the layer and pass that issued it), its shape-only `Call` for the cost
//! model, its dispatch count, and in `Wall` mode its wall time between two waits. While
//! recording, each call's dispatches are tagged with its index so that timestamps can be
//! grouped per op call however many dispatches an op uses.

use std::cell::RefCell;
use std::rc::Rc;
use web_time::Instant;

use anyhow::{ensure, Context, Result};

use super::ops::Call;
use super::{OpTiming, Stats};
use crate::gpu::context::DispatchTime;
use crate::gpu::{Gpu, Moment};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Trace {
    /// Nothing recorded.
    #[default]
    Off,
    /// Note each call and tag its dispatches with its index.
    Record,
    /// As `Record`, and time each call on the wall clock from a wait before it to a wait
    /// after it (so the time includes recording, pipeline creation on first use, submit).
    /// The waits block (`GpuContext::finish`): native only; the page records.
    Wall,
}

/// One recorded op call.
#[derive(Clone, Debug, PartialEq)]
pub struct Traced {
    /// `Backend::scope` when it was issued ("conv2.backward").
    pub scope: String,
    pub call: Call,
    pub dispatches: u64,
    /// Wall-clock ms (`Trace::Wall` only).
    pub wall_ms: Option<f64>,
}

impl Traced {
    /// "conv2.backward conv2d_grad_weight".
    pub fn name(&self) -> String {
        format!("{} {}", self.scope, self.call.kind())
    }
}

#[derive(Default)]
pub struct Recording {
    pub mode: Trace,
    pub calls: Vec<Traced>,
    started: Option<(u64, Instant)>,
}

impl Recording {
    pub fn clear(&mut self) {
        self.calls.clear();
    }
}

/// Makes `gpu` report its op calls into the returned recording (off until its mode is set).
pub fn attach(gpu: &mut Gpu) -> Rc<RefCell<Recording>> {
    let rec = Rc::new(RefCell::new(Recording::default()));
    let sink = rec.clone();
    gpu.observer = Some(Box::new(move |ctx, scope, op, moment| {
        let mut r = sink.borrow_mut();
        if r.mode == Trace::Off {
            return;
        }
        match moment {
            Moment::Before => {
                let index = r.calls.len() as u32;
                r.calls.push(Traced { scope: scope.to_string(), call: Call::of(op), dispatches: 0, wall_ms: None });
                ctx.set_op_label(Some(index));
                if r.mode == Trace::Wall {
                    ctx.finish();
                }
                r.started = Some((ctx.dispatches.get(), Instant::now()));
            }
            Moment::After => {
                if r.mode == Trace::Wall {
                    ctx.finish();
                }
                let (d0, t0) = r.started.take().expect("an op call ends after it starts");
                let wall = (r.mode == Trace::Wall).then(|| t0.elapsed().as_secs_f64() * 1e3);
                let last = r.calls.last_mut().expect("recorded at Before");
                last.dispatches = ctx.dispatches.get() - d0;
                last.wall_ms = wall;
                ctx.set_op_label(None);
            }
        }
    }));
    rec
}

/// Each of `calls` op calls' device time in ms from its dispatches' timestamps (the first
/// begin to the last end), noting the kernels seen; a call without dispatches took none.
pub fn call_times(times: &[DispatchTime], calls: usize, kernels: &mut std::collections::BTreeSet<&'static str>) -> Result<Vec<f64>> {
    let mut span = vec![(f64::INFINITY, f64::NEG_INFINITY); calls];
    for d in times {
        let i = d.op.with_context(|| format!("dispatch of {} outside any op call", d.kernel))? as usize;
        ensure!(i < calls, "dispatch tagged with op call {i} of {calls}");
        span[i] = (span[i].0.min(d.begin_ns), span[i].1.max(d.end_ns));
        kernels.insert(d.kernel);
    }
    Ok(span.into_iter().map(|(b, e)| if e >= b { (e - b) * 1e-6 } else { 0.0 }).collect())
}

/// One row per name and shape, in the order of first appearance: calls of one layer that
/// repeat (a weight-tied block) add their times per repeat and their dispatches. The first
/// call's wall time is known only where the calls were timed on the wall clock (`Trace::Wall`).
pub fn group_calls(calls: &[Traced], per_call: &[Vec<f64>]) -> Vec<OpTiming> {
    let mut rows: Vec<(String, Call, usize, u64, Option<f64>, Vec<f64>)> = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        let name = c.name();
        let first = c.wall_ms;
        match rows.iter_mut().find(|r| r.0 == name && r.1 == c.call) {
            Some(r) => {
                r.2 += 1;
                r.3 += c.dispatches;
                r.4 = r.4.zip(first).map(|(a, b)| a + b);
                r.5.iter_mut().zip(&per_call[i]).for_each(|(t, x)| *t += x);
            }
            None => rows.push((name, c.call.clone(), 1, c.dispatches, first, per_call[i].clone())),
        }
    }
    rows.into_iter()
        .map(|(name, op, calls, dispatches, first_ms, times)| OpTiming { name, op, calls, dispatches, first_ms, stats: Stats::of(&times) })
        .collect()
}
