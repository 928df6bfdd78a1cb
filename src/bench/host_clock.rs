//! The clock for the host-time figures: the calling thread's CPU time where the OS keeps it
//! (Linux, macOS and the BSDs: `CLOCK_THREAD_CPUTIME_ID`), else the wall clock.
//!
//! Why not the wall clock everywhere: on a software Vulkan such as lavapipe the "device" is
//! a pool of threads on the same cores, woken by `vkQueueSubmit`. On a 2-core machine they
//! preempt the submitting thread, so wall time around a submit counts the device's work as
//! well (`examples/host_floor.rs` shows it: 27 near-empty dispatches take 20–25 µs of the
//! thread's CPU but up to 180 µs of wall clock). The thread's CPU time counts what the host
//! spends recording and submitting and nothing else; on a real GPU the two nearly agree.

use std::time::Instant;

/// Which clock `HostClock` reads.
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
pub struct HostClock {
    cpu: Option<f64>,
    wall: Instant,
}

impl HostClock {
    pub fn start() -> Self {
        HostClock { cpu: thread_cpu_us(), wall: Instant::now() }
    }

    /// µs since `start` on this clock.
    pub fn elapsed_us(&self) -> f64 {
        match (self.cpu, thread_cpu_us()) {
            (Some(a), Some(b)) => b - a,
            _ => self.wall.elapsed().as_secs_f64() * 1e6,
        }
    }

    /// µs of wall clock since `start`.
    pub fn wall_us(&self) -> f64 {
        self.wall.elapsed().as_secs_f64() * 1e6
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
}
