//! The tuner where a page drives the device (`Tuner::deferring`, see gpu::autotune). A page
//! cannot wait inside an op call, so measuring is split in two:
//!
//! 1. Inside a tuning window (`GpuContext::begin_tuning`), the first call of an op with a shape
//!    that has no choice records its candidates' calls on temporary buffers, as the native
//!    tuner does (an untimed call, then `TRIALS` × `REPEATS` timed ones each), every dispatch
//!    timed by timestamps (inside the pass where the device can, else in a pass of its own, as
//!    WebGPU's `timestamp-query` allows), submits them without waiting, and runs the static
//!    rule itself.
//! 2. `end_tuning` awaits those timestamps and makes the choices, which every later call takes.
//!
//! A caller whose run should use the choices from its first step opens the window around a
//! dry run of its shapes (`Trainer::prepare_kernels`, the benchmark's first step), so that a run
//! with given choices repeats exactly, as natively. Outside a window a deferring tuner only
//! looks choices up; a shape it has none for takes the static rule.

use std::rc::Rc;

use super::autotune::{Fingerprint, Mode, Tuner, REPEATS, TRIALS};
use super::context::{GpuContext, Profiler, RawBuffer};

/// Dispatches one shape's measurement may time (a query set holds 4,096 timestamps).
const MAX_DISPATCHES: u32 = 2048;

/// One shape's measurement, recorded and submitted, its timestamps not yet read.
struct Queued {
    key: String,
    op: &'static str,
    fingerprint: Fingerprint,
    names: Vec<&'static str>,
    profile: Profiler,
    /// The temporary buffers of the recorded calls, kept until their timestamps are read.
    _temps: Vec<Rc<RawBuffer>>,
}

/// An open tuning window.
pub(super) struct Window {
    /// Buffers created from here on belong to the window (a dry run's scratch model, temporaries).
    first_id: u64,
    queued: Vec<Queued>,
}

impl Tuner {
    /// True when `key` is to be measured now: a window is open and has not queued it yet.
    pub(super) fn measuring(&self, key: &str) -> bool {
        self.window.borrow().as_ref().is_some_and(|w| w.queued.iter().all(|q| q.key != key))
    }
}

impl GpuContext {
    /// Opens a tuning window where this device's tuner defers; false (and nothing opened)
    /// where there is no tuner, it measures inside op calls, it is off, or the device cannot
    /// write timestamps.
    pub fn begin_tuning(&self) -> bool {
        let Some(tuner) = self.tuner() else { return false };
        if !tuner.is_deferred() || tuner.mode() == Mode::Off || !(self.can_profile() || self.can_time_passes()) {
            return false;
        }
        *tuner.window.borrow_mut() = Some(Window { first_id: self.next_buffer_id(), queued: Vec::new() });
        true
    }

    /// Closes the tuning window: awaits the queued measurements and makes their choices
    /// (cached, reported by `Tuner::take_new`, taken by every later call). Forgets the bind
    /// groups of buffers created inside the window, so that a dry run's scratch model is freed
    /// when dropped. Returns what could not be measured (its shape keeps the static rule).
    pub async fn end_tuning(&self) -> Vec<String> {
        let Some(tuner) = self.tuner() else { return Vec::new() };
        let Some(window) = tuner.window.borrow_mut().take() else { return Vec::new() };
        let mut failed = Vec::new();
        for q in window.queued {
            match self.read_profile_async(q.profile).await {
                Ok(times) => {
                    // Per candidate and trial, the summed device time of its calls.
                    let mut sums = vec![0.0; q.names.len() * TRIALS];
                    for d in times {
                        if let Some(slot) = d.op.and_then(|l| sums.get_mut(l as usize)) {
                            *slot += (d.end_ns - d.begin_ns).max(0.0);
                        }
                    }
                    let times_us: Vec<(String, f64)> = (q.names.iter().enumerate())
                        .map(|(i, n)| (n.to_string(), sums[i * TRIALS..(i + 1) * TRIALS].iter().fold(f64::INFINITY, |a, &b| a.min(b)) / REPEATS as f64 / 1e3))
                        .collect();
                    tuner.choose(q.op, q.fingerprint, q.key, times_us);
                }
                Err(e) => failed.push(format!("{}: not timed ({e:#}); the fixed rule", q.key)),
            }
        }
        self.forget_bind_groups_since(window.first_id);
        failed
    }

    /// Records one shape's measurement for `end_tuning` (see the module's comment): the work
    /// recorded so far is submitted first, and the dispatch and submit counters, the op label
    /// and any open profile are set aside meanwhile (`unobserved`), as the native tuner does.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn measure_later(
        &self,
        tuner: &Tuner,
        key: String,
        op: &'static str,
        fingerprint: Fingerprint,
        names: &[&'static str],
        temp_lens: &[usize],
        run: &dyn Fn(&[Rc<RawBuffer>], usize),
    ) {
        self.submit();
        let (profile, temps) = self.unobserved(|| {
            self.start_profiler(MAX_DISPATCHES, !self.can_profile());
            let temps = self.temporaries(temp_lens);
            for i in 0..names.len() {
                run(&temps, i); // untimed: its dispatches carry no label
                for trial in 0..TRIALS {
                    self.op_label.set(Some((i * TRIALS + trial) as u32));
                    (0..REPEATS).for_each(|_| run(&temps, i));
                    self.op_label.set(None);
                }
            }
            let profile = self.profiler.borrow_mut().take().expect("started above");
            self.submit();
            (profile, temps)
        });
        let queued = Queued { key, op, fingerprint, names: names.to_vec(), profile, _temps: temps };
        tuner.window.borrow_mut().as_mut().expect("measuring inside a window").queued.push(queued);
    }
}
