//! The clock for the host-time figures: the calling thread's CPU time where the OS keeps it
//! (Linux, macOS and the BSDs: `CLOCK_THREAD_CPUTIME_ID`), else the wall clock.
//!
//! Why not the wall clock everywhere: on a software Vulkan such as lavapipe the "device" is
//! a pool of threads on the same cores, woken by `vkQueueSubmit`. On a 2-core machine they
//! preempt the submitting thread, so wall time around a submit counts the device's work as
//! well (on a 2-core VM, `bench`'s wall-clock host figure jumped between 0.2 and 0.4 ms from
//! run to run while the thread's CPU time stayed at 0.20–0.21 ms). The thread's CPU time
//! counts what the host spends recording and submitting and nothing else; on a real GPU the
//! two nearly agree.

use web_time::Instant;

/// Which clock the host figures are on.
pub fn name() -> &'static str {
    if thread_cpu_us().is_some() {
        "CPU time of the recording thread"
    } else {
        "wall clock (this OS has no per-thread CPU clock)"
    }
}

/// The JSON `timer` of the host-time records: "thread_cpu", or "wall" without that clock.
pub fn json_name() -> &'static str {
    if thread_cpu_us().is_some() {
        "thread_cpu"
    } else {
        "wall"
    }
}

/// The calling thread's CPU time in µs, or None where the OS has no such clock.
#[cfg(unix)]
fn thread_cpu_us() -> Option<f64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then_some(ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 * 1e-3)
}

#[cfg(not(unix))]
fn thread_cpu_us() -> Option<f64> {
    None
}

/// A started host clock: the thread's CPU time where there is one, else the wall clock.
struct HostClock {
    cpu: Option<f64>,
    wall: Instant,
}

impl HostClock {
    fn start() -> Self {
        HostClock { cpu: thread_cpu_us(), wall: Instant::now() }
    }

    /// µs since `start` on this clock.
    fn elapsed_us(&self) -> f64 {
        match (self.cpu, thread_cpu_us()) {
            (Some(a), Some(b)) => b - a,
            _ => self.wall.elapsed().as_secs_f64() * 1e6,
        }
    }

    /// µs of wall clock since `start`.
    fn wall_us(&self) -> f64 {
        self.wall.elapsed().as_secs_f64() * 1e6
    }
}

/// µs of one step's host work, split into recording and submitting, on the host clock and
/// on the wall clock (for `bench`, `examples/host_path.rs` and `examples/host_floor.rs`).
#[derive(Clone, Copy, Debug)]
pub struct StepTimes {
    /// (record, submit) on the host clock.
    pub host: (f64, f64),
    /// (record, submit) on the wall clock.
    pub wall: (f64, f64),
}

impl StepTimes {
    /// Runs `record` on `ctx`, then `submit` with what it returned, timing each on both
    /// clocks.
    pub fn measure<C: ?Sized, R>(ctx: &mut C, record: impl FnOnce(&mut C) -> R, submit: impl FnOnce(&mut C, R)) -> Self {
        let clock = HostClock::start();
        let recorded = record(ctx);
        let (host, wall) = (clock.elapsed_us(), clock.wall_us());
        submit(ctx, recorded);
        StepTimes { host: (host, clock.elapsed_us() - host), wall: (wall, clock.wall_us() - wall) }
    }

    /// Median and minimum of record, submit and both, on each clock, one line each,
    /// every line indented by `indent`.
    pub fn summary(times: &[StepTimes], indent: &str) -> String {
        let mut s = String::new();
        for (clock, wall) in [(name(), false), ("wall clock", true)] {
            s += &format!("{indent}{clock}:\n");
            let (record, submit): (Vec<f64>, Vec<f64>) = times.iter().map(|t| if wall { t.wall } else { t.host }).unzip();
            let total: Vec<f64> = record.iter().zip(&submit).map(|(r, s)| r + s).collect();
            for (part, v) in [("record", &record), ("submit", &submit), ("record + submit", &total)] {
                let st = super::Stats::of(v);
                s += &format!("{indent}  {part:<16} median {:7.1} µs, min {:7.1} µs\n", st.median, st.min);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_work_and_not_sleep() {
        let c = HostClock::start();
        let mut x = 0u64;
        for _ in 0..10_000_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let (busy, wall) = (c.elapsed_us(), c.wall_us());
        assert!(busy > 0.0, "ten million multiplications measured {busy} µs");
        // One thread's CPU time cannot run ahead of the wall clock (beyond the clocks' ticks).
        assert!(busy <= wall + 1_000.0, "{busy} µs of CPU in {wall} µs of wall clock");
        if thread_cpu_us().is_some() {
            let c = HostClock::start();
            std::thread::sleep(std::time::Duration::from_millis(30));
            let slept = c.elapsed_us();
            assert!(slept < 10_000.0, "a 30 ms sleep cost {slept} µs of the thread's CPU");
            assert!(c.wall_us() >= 30_000.0);
        }
    }

    #[test]
    fn step_times_split_record_from_submit() {
        let mut calls = Vec::new();
        let times: Vec<StepTimes> = (0..3)
            .map(|i| {
                StepTimes::measure(
                    &mut calls,
                    |c| {
                        c.push("record");
                        i * 10
                    },
                    |c, r| {
                        c.push(if r == i * 10 { "submit" } else { "submit got another value" });
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    },
                )
            })
            .collect();
        assert_eq!(calls, ["record", "submit"].repeat(3));
        for t in &times {
            assert!(t.wall.1 >= 5_000.0, "a 5 ms submit took {} µs of wall clock", t.wall.1);
            assert!(t.host.0 >= 0.0 && t.host.1 >= 0.0, "{t:?}");
        }
        let s = StepTimes::summary(&times, "> ");
        assert_eq!(s.lines().count(), 8, "{s}");
        assert!(s.lines().all(|l| l.starts_with("> ")), "{s}");
        assert_eq!(s.lines().filter(|l| l.contains(" median ") && l.contains(" min ")).count(), 6, "{s}");
    }
}
