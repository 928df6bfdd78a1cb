//! Kernel choice by measurement. Where an op has several kernels that can run a shape
//! (matmul: tiled, vec4, strided; conv2d: rows, scatter, direct), the first call with that
//! shape times each candidate on this adapter and keeps the fastest. Choices are cached in a
//! JSON file per (adapter, driver, wgpu version, crate version, shader sources), so later runs
//! reuse them and repeat exactly; `Mode::Refresh` measures again.
//!
//! Timing: each candidate runs once untimed (pipeline creation, bind groups), then up to
//! `TRIALS` times `REPEATS` calls; the best trial's mean per call counts. A trial is the summed
//! GPU time of its dispatches where the device writes timestamps inside passes, else the wall
//! clock of one submit-and-wait. Candidates run on zero-filled temporary buffers of the op's
//! sizes (never the caller's data, which an accumulating op would change), after the work
//! recorded so far has been waited for; dispatch counters and any open profile are set aside
//! meanwhile, so that the caller's counts do not see the measurement.
//!
//! Without a tuner (`Mode::Off`, and the library's default, which the tests rely on for
//! repeatable kernel choices) every op takes its first candidate: the static rule that the
//! measurements replace.
//!
//! A page cannot wait inside an op call, so there the tuner *defers* (gpu/deferred_tuning.rs):
//! it measures only inside a tuning window that the caller opens before its first step, records
//! the candidates' timed calls instead of waiting for them, and makes the choices when the
//! window closes and the timestamps have been read back. Its cache is a JSON text the page keeps
//! in the browser's storage (`to_json` / `merge_json`), the same document as the file.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use web_time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::context::{GpuContext, RawBuffer};

/// Untimed warm-up, then up to this many timed trials per candidate.
pub(super) const TRIALS: usize = 3;
/// Calls per trial.
pub(super) const REPEATS: usize = 3;
/// A candidate whose first trial is this much slower than the best so far gets no more.
const HOPELESS: f64 = 2.0;
/// Bumped when the file's layout changes; other versions are measured again.
const FORMAT: u64 = 1;

/// What the tuner does with a shape it has not chosen for yet in this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// No measuring: the static rules (first candidate) everywhere.
    #[default]
    Off,
    /// Take the cached choice where there is one, measure (and cache) the rest.
    Cached,
    /// Measure every shape again and overwrite its cached choice.
    Refresh,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Some(Self::Off),
            "cached" | "on" => Some(Self::Cached),
            "refresh" => Some(Self::Refresh),
            _ => None,
        }
    }
}

/// The choice for one op and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// The op and shape, e.g. `matmul 100×500×800 NT relu`.
    pub key: String,
    pub kernel: String,
    /// Mean µs per call of each candidate timed, in candidate order.
    pub times_us: Vec<(String, f64)>,
    /// Measured in this process (false: read from the cache file).
    pub measured: bool,
}

impl Choice {
    /// `key: kernel (a 1.2 ms, b 3.4 ms) measured|cached`.
    pub fn describe(&self) -> String {
        let times: Vec<String> = self.times_us.iter().map(|(k, t)| format!("{k} {}", fmt_us(*t))).collect();
        format!("{}: {} ({}) {}", self.key, self.kernel, times.join(", "), if self.measured { "measured" } else { "cached" })
    }
}

fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

/// The choices of one adapter, and where they are kept.
pub struct Tuner {
    mode: Cell<Mode>,
    /// The cache file; None keeps choices for this process only.
    file: Option<PathBuf>,
    identity: Value,
    /// Every cached choice (read at start, plus what this process measured).
    cache: RefCell<BTreeMap<String, Choice>>,
    /// Keys in the order this process first used them.
    used: RefCell<Vec<String>>,
    /// How many of `used` `take_new` has handed out.
    reported: RefCell<usize>,
    /// (op, shape fingerprint) → index of the chosen candidate: the per-call lookup, which
    /// formats and allocates nothing.
    memo: RefCell<super::context::FastMap<(&'static str, Fingerprint), usize>>,
    /// Measures only inside a tuning window, without waiting (see gpu::deferred_tuning).
    pub(super) deferred: bool,
    /// The open tuning window, if any, and the measurements it has queued.
    pub(super) window: RefCell<Option<super::deferred_tuning::Window>>,
}

/// The numbers that tell one shape of an op from another (zero-padded).
pub type Fingerprint = [usize; 12];

/// The cache directory: `WGSL_CNN_CACHE_DIR`, else the platform's user cache directory
/// (`$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches` on macOS, `%LOCALAPPDATA%`
/// on Windows) with `wgsl-cnn` appended; None when none of these is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = env("WGSL_CNN_CACHE_DIR") {
        return Some(d);
    }
    let base = if cfg!(windows) {
        env("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        env("HOME").map(|h| h.join("Library/Caches"))
    } else {
        env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache")))
    };
    base.map(|b| b.join("wgsl-cnn"))
}

/// What a cached choice depends on besides the shape.
fn identity(info: &wgpu::AdapterInfo) -> Value {
    use md5::Digest;
    let mut shaders = md5::Md5::new();
    for f in super::kernels::SHADER_FILES {
        shaders.update(super::context::shader_source(f).expect("the shader files are built in"));
    }
    json!({
        "adapter": info.name,
        "backend": format!("{:?}", info.backend),
        "vendor": info.vendor,
        "device": info.device,
        "driver": info.driver,
        "driver_info": info.driver_info,
        "wgpu": env!("WGSL_CNN_WGPU_VERSION"),
        "wgsl_cnn": env!("CARGO_PKG_VERSION"),
        "shaders": hex(&shaders.finalize()),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Tuner {
    /// A tuner for `info`, keeping its choices in a file under `dir` (none: in memory only).
    /// A missing file is an empty cache; an unreadable or malformed one is reported as a
    /// warning, ignored, and replaced at the first save.
    pub fn new(mode: Mode, dir: Option<&Path>, info: &wgpu::AdapterInfo) -> Self {
        let identity = identity(info);
        let file = dir.map(|d| d.join(format!("{}.json", storage_name(&identity))));
        let cache = match &file {
            Some(f) if f.exists() => load(f, &identity).unwrap_or_else(|e| {
                eprintln!("warning: ignoring the autotune cache: {e:#}; measuring again and rewriting it");
                BTreeMap::new()
            }),
            _ => BTreeMap::new(),
        };
        Tuner {
            mode: Cell::new(mode),
            file,
            identity,
            cache: RefCell::new(cache),
            used: RefCell::default(),
            reported: RefCell::new(0),
            memo: RefCell::default(),
            deferred: false,
            window: RefCell::default(),
        }
    }

    /// This tuner, measuring only inside tuning windows and without waiting (the page's).
    pub fn deferring(self) -> Self {
        Tuner { deferred: true, ..self }
    }

    pub fn is_deferred(&self) -> bool {
        self.deferred
    }

    pub fn mode(&self) -> Mode {
        self.mode.get()
    }

    /// Starts over as a new run would (the page's next training run): `mode` from now on, and
    /// no choice counted as used, so that `Refresh` measures every shape again.
    pub fn restart(&self, mode: Mode) {
        self.mode.set(mode);
        self.used.borrow_mut().clear();
        *self.reported.borrow_mut() = 0;
        self.memo.borrow_mut().clear();
    }

    /// The cache's name for this adapter, driver and build (`autotune-` and 16 hex digits):
    /// the file's stem, and the page's key in the browser's storage.
    pub fn storage_name(&self) -> String {
        storage_name(&self.identity)
    }

    /// Every choice, as the cache file holds them.
    pub fn to_json(&self) -> String {
        let choices: serde_json::Map<String, Value> = self
            .cache
            .borrow()
            .iter()
            .map(|(k, c)| {
                // Times in candidate order; rounded to 0.1 µs, which is all they can tell.
                let times: Vec<Value> = c.times_us.iter().map(|(n, t)| json!([n, (t * 10.0).round() / 10.0])).collect();
                (k.clone(), json!({ "kernel": c.kernel, "times_us": times }))
            })
            .collect();
        let doc = json!({ "format": FORMAT, "identity": self.identity, "choices": choices });
        serde_json::to_string_pretty(&doc).expect("a JSON value prints") + "\n"
    }

    /// Takes the choices of a cache document kept elsewhere (the browser's storage), `what`
    /// naming it in errors. Returns how many it took: 0 for a document of another adapter,
    /// driver, build or format (stale, not wrong); an error for one that is not such a document.
    pub fn merge_json(&self, what: &str, text: &str) -> Result<usize> {
        let choices = parse(what, text.as_bytes(), &self.identity)?;
        let n = choices.len();
        self.cache.borrow_mut().extend(choices);
        Ok(n)
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The choices this process has used so far, in first-use order.
    pub fn used(&self) -> Vec<Choice> {
        let cache = self.cache.borrow();
        self.used.borrow().iter().filter_map(|k| cache.get(k).cloned()).collect()
    }

    /// The choices used since the last call (for printing as they appear).
    pub fn take_new(&self) -> Vec<Choice> {
        let all = self.used();
        let mut reported = self.reported.borrow_mut();
        let new = all[(*reported).min(all.len())..].to_vec();
        *reported = all.len();
        new
    }

    /// The kernel already chosen for `key` in this process, or cached (unless refreshing).
    pub(super) fn known(&self, key: &str) -> Option<String> {
        let used = self.used.borrow().iter().any(|k| k == key);
        if !used && self.mode() == Mode::Refresh {
            return None;
        }
        let kernel = self.cache.borrow().get(key).map(|c| c.kernel.clone())?;
        if !used {
            self.used.borrow_mut().push(key.to_string());
        }
        Some(kernel)
    }

    fn record(&self, choice: Choice) {
        let key = choice.key.clone();
        self.cache.borrow_mut().insert(key.clone(), choice);
        let mut used = self.used.borrow_mut();
        if !used.contains(&key) {
            used.push(key);
        }
        drop(used);
        if let Err(e) = self.save() {
            eprintln!("warning: could not save the autotune cache: {e:#}");
        }
    }

    /// Makes the choice for `key` from its candidates' measured µs per call (in candidate
    /// order): the fastest, the first of equally fast ones (the static rule on a tie). Records
    /// it (cache, file) and remembers it for `(op, fingerprint)`; returns its index.
    pub(super) fn choose(&self, op: &'static str, fingerprint: Fingerprint, key: String, times_us: Vec<(String, f64)>) -> usize {
        let fastest = (0..times_us.len()).fold(0, |b, i| if times_us[i].1 < times_us[b].1 { i } else { b });
        self.record(Choice { key, kernel: times_us[fastest].0.clone(), times_us, measured: true });
        self.memo.borrow_mut().insert((op, fingerprint), fastest);
        fastest
    }

    /// Writes every choice to a temporary file and renames it over the cache file.
    fn save(&self) -> Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        let dir = file.parent().expect("the cache file is in a directory");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        crate::checkpoint::files::write_temp(file, self.to_json().as_bytes())?.commit()
    }
}

/// `autotune-` and the first 16 hex digits of the identity's md5.
fn storage_name(identity: &Value) -> String {
    format!("autotune-{}", &hex(&<md5::Md5 as md5::Digest>::digest(identity.to_string()))[..16])
}

/// Reads a cache file written for `identity` (another identity or format counts as empty).
fn load(file: &Path, identity: &Value) -> Result<BTreeMap<String, Choice>> {
    let bytes = crate::fsutil::read_bounded(file, "autotune cache", 4 << 20)?;
    parse(&file.display().to_string(), &bytes, identity)
}

/// The choices of a cache document for `identity` (`what` names it in errors).
fn parse(what: &str, bytes: &[u8], identity: &Value) -> Result<BTreeMap<String, Choice>> {
    let doc: Value = serde_json::from_slice(bytes).with_context(|| format!("{what}: not JSON"))?;
    if doc["format"] != json!(FORMAT) || doc["identity"] != *identity {
        return Ok(BTreeMap::new());
    }
    let bad = |msg: &str| anyhow!("{what}: {msg}");
    let choices = doc["choices"].as_object().ok_or_else(|| bad("no \"choices\" object"))?;
    let mut out = BTreeMap::new();
    for (key, c) in choices {
        let kernel = c["kernel"].as_str().ok_or_else(|| bad(&format!("choice {key:?} names no kernel")))?;
        let times = c["times_us"].as_array().ok_or_else(|| bad(&format!("choice {key:?} has no times")))?;
        let mut times_us = Vec::new();
        for t in times {
            match (t[0].as_str(), t[1].as_f64()) {
                (Some(name), Some(us)) if us.is_finite() && us >= 0.0 => times_us.push((name.to_string(), us)),
                _ => bail!("{what}: choice {key:?} has a bad time {t}"),
            }
        }
        out.insert(key.clone(), Choice { key: key.clone(), kernel: kernel.to_string(), times_us, measured: false });
    }
    Ok(out)
}

impl GpuContext {
    /// How kernels are chosen, as the benchmark's records say: "cached" or "refresh" (the
    /// tuner's mode), "off" (the fixed rules: no tuner, or one turned off).
    pub fn autotune_mode(&self) -> &'static str {
        match self.tuner().map(|t| t.mode()) {
            Some(Mode::Cached) => "cached",
            Some(Mode::Refresh) => "refresh",
            Some(Mode::Off) | None => "off",
        }
    }

    /// The kernel to run `op` on a shape with: `candidates[0]` (the static rule) without a
    /// tuner or with one candidate; else the cached or measured fastest. `fingerprint`
    /// tells the shape apart (same candidates for the same fingerprint), `shape` describes
    /// it for the cache and the report. `run(temps, k)` records one call of the op with
    /// kernel `k` on `temps`, fresh zero-filled buffers of `temp_lens` elements; it must not
    /// ask the tuner again.
    pub fn tuned<K: Copy>(
        &self,
        op: &'static str,
        fingerprint: Fingerprint,
        shape: impl FnOnce() -> String,
        candidates: &[(&'static str, K)],
        temp_lens: &[usize],
        run: impl Fn(&[Rc<RawBuffer>], K),
    ) -> K {
        assert!(!candidates.is_empty(), "{op}: no candidate kernel");
        let Some(tuner) = self.tuner() else { return candidates[0].1 };
        if candidates.len() == 1 || tuner.mode() == Mode::Off {
            return candidates[0].1;
        }
        if let Some(&i) = tuner.memo.borrow().get(&(op, fingerprint)) {
            return candidates[i].1;
        }
        let key = format!("{op} {}", shape());
        if let Some(name) = tuner.known(&key) {
            if let Some(i) = candidates.iter().position(|c| c.0 == name) {
                tuner.memo.borrow_mut().insert((op, fingerprint), i);
                return candidates[i].1;
            }
        }
        if tuner.deferred {
            // The static rule until the window closes; measured only inside one (not memoised,
            // so that the choice applies from then on).
            if tuner.measuring(&key) {
                let names: Vec<&'static str> = candidates.iter().map(|c| c.0).collect();
                self.measure_later(&tuner, key, op, fingerprint, &names, temp_lens, &|t, i| run(t, candidates[i].1));
            }
            return candidates[0].1;
        }
        let times = self.set_aside(|| {
            let temps = self.temporaries(temp_lens);
            let mut times = Vec::new();
            let mut best = f64::INFINITY;
            for &(name, k) in candidates {
                run(&temps, k);
                self.finish();
                let mut t = f64::INFINITY;
                for trial in 0..TRIALS {
                    t = t.min(self.time_calls(|| (0..REPEATS).for_each(|_| run(&temps, k))) / REPEATS as f64);
                    if trial == 0 && t > HOPELESS * best {
                        break;
                    }
                }
                best = best.min(t);
                times.push((name.to_string(), t));
            }
            times
        });
        candidates[tuner.choose(op, fingerprint, key, times)].1
    }

    /// µs that the work `record` records takes on the device: summed dispatch timestamps
    /// where available, else the wall clock of one submit-and-wait.
    fn time_calls(&self, record: impl Fn()) -> f64 {
        // (The tuner runs natively only: a page cannot wait inside an op call.)
        #[cfg(not(target_arch = "wasm32"))]
        if self.can_profile() && self.start_profiling(256).is_ok() {
            record();
            if let Ok(times) = self.stop_profiling() {
                return times.iter().map(|d| (d.end_ns - d.begin_ns).max(0.0)).sum::<f64>() / 1e3;
            }
        }
        let t = Instant::now();
        record();
        self.finish();
        t.elapsed().as_secs_f64() * 1e6
    }
}
