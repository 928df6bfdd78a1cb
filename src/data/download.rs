//! Downloading missing MNIST files from a list of mirrors.
//!
//! Each file is streamed into a hidden temporary file in the data directory, then
//! fully verified (gunzip, IDX structure, count, md5 of the decompressed bytes), and
//! only then given its final name. A killed or failed download therefore leaves at
//! most a `.<name>.gz.part-*` file, never a file the loader would pick up, and a file
//! that already exists is never overwritten.

use super::idx;
use super::spec::FileSpec;
use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs;
use std::io::{BufWriter, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use web_time::Instant;

/// Well-known MNIST mirrors, tried in order. Each serves `<base><stem>.gz`.
pub const DEFAULT_MIRRORS: [&str; 3] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
];

/// Environment variable with comma-separated mirror base URLs replacing the defaults.
pub const MIRRORS_ENV: &str = "WGSL_CNN_MNIST_MIRRORS";

/// No MNIST file is anywhere near this size; a mirror sending more is refused.
const MAX_DOWNLOAD_BYTES: u64 = 128 << 20;

/// The mirrors from `WGSL_CNN_MNIST_MIRRORS` (comma-separated), else [`DEFAULT_MIRRORS`].
pub fn mirrors_from_env() -> Vec<String> {
    match std::env::var(MIRRORS_ENV) {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        _ => DEFAULT_MIRRORS.iter().map(|s| s.to_string()).collect(),
    }
}

/// Network settings for a download.
#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// Limit for opening the TCP/TLS connection to one mirror.
    pub connect_timeout: Duration,
    /// Limit for each wait on the network (request, and each read of the body), so a
    /// stalled mirror fails and the next is tried.
    pub io_timeout: Duration,
    /// Show a progress bar (it is hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Limit for a whole file from one mirror (a mirror trickling bytes never trips
    /// `io_timeout`); then the next mirror is tried. Default 10 minutes (9.9 MB at
    /// 17 kB/s), or `WGSL_CNN_DOWNLOAD_TIMEOUT` seconds.
    pub deadline: Duration,
    /// The slowest transfer kept (bytes per second, averaged over `stall_window`): a body
    /// arriving slower for a whole window is abandoned for the next mirror, as curl's
    /// `--speed-limit`. Default 1,024, or `WGSL_CNN_DOWNLOAD_MIN_RATE`; 0 turns it off.
    pub min_rate: u64,
    /// The window of `min_rate` (curl's `--speed-time`), also the longest wait for the
    /// next bytes. Default 30 s, or `WGSL_CNN_DOWNLOAD_STALL_SECONDS`.
    pub stall_window: Duration,
}

/// Environment variable: seconds one file may take from one mirror.
pub const DEADLINE_ENV: &str = "WGSL_CNN_DOWNLOAD_TIMEOUT";
/// Environment variable: the slowest transfer kept, in bytes per second.
pub const MIN_RATE_ENV: &str = "WGSL_CNN_DOWNLOAD_MIN_RATE";
/// Environment variable: seconds a transfer may stay under the minimum rate.
pub const STALL_ENV: &str = "WGSL_CNN_DOWNLOAD_STALL_SECONDS";

/// A number of seconds (or bytes per second) from `var`: finite, within [min, 1e9).
fn env_number(var: &str, min: f64) -> Option<f64> {
    std::env::var(var)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= min && *s < 1e9)
}

impl Default for DownloadOptions {
    fn default() -> Self {
        let deadline = env_number(DEADLINE_ENV, f64::MIN_POSITIVE).map_or(Duration::from_secs(600), Duration::from_secs_f64);
        let stall_window = env_number(STALL_ENV, 0.1).map_or(Duration::from_secs(30), Duration::from_secs_f64);
        DownloadOptions {
            connect_timeout: Duration::from_secs(15),
            io_timeout: Duration::from_secs(60),
            progress: true,
            deadline,
            min_rate: env_number(MIN_RATE_ENV, 0.0).map_or(1024, |r| r as u64),
            stall_window,
        }
    }
}

/// A body reader that fails once the download's deadline has passed, or when the body
/// arrives slower than `min_rate` bytes per second over a whole window (checked window by
/// window, so a trickle is called within one to two windows, a steady link never).
struct Watchdog<R> {
    inner: R,
    until: Instant,
    limit: Duration,
    min_rate: u64,
    window: Duration,
    /// Start of the current window (the first read), and the bytes received in it.
    window_start: Option<Instant>,
    window_bytes: u64,
}

impl<R: Read> Watchdog<R> {
    fn new(inner: R, started: Instant, opts: &DownloadOptions) -> Self {
        Watchdog {
            inner,
            until: started + opts.deadline,
            limit: opts.deadline,
            min_rate: opts.min_rate,
            window: opts.stall_window,
            window_start: None,
            window_bytes: 0,
        }
    }

    fn too_slow(&self, seconds: f64) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the transfer stalled: {} bytes in {seconds:.0} s, under the minimum of {} bytes/s over {:.0} s \
                 ({MIN_RATE_ENV} and {STALL_ENV} set the floor)",
                self.window_bytes,
                self.min_rate,
                self.window.as_secs_f64()
            ),
        )
    }
}

impl<R: Read> Read for Watchdog<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let now = Instant::now();
        if now >= self.until {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the file did not arrive within {:.0} s ({DEADLINE_ENV} sets the limit)", self.limit.as_secs_f64()),
            ));
        }
        let start = *self.window_start.get_or_insert(now);
        let result = self.inner.read(buf);
        if self.min_rate == 0 {
            return result;
        }
        let elapsed = start.elapsed();
        match &result {
            Ok(n) => self.window_bytes += *n as u64,
            // Nothing arrived for the whole read timeout (at most one window): a stall.
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut || elapsed >= self.window => {
                return Err(self.too_slow(elapsed.as_secs_f64()));
            }
            Err(_) => return result,
        }
        if elapsed >= self.window {
            if (self.window_bytes as f64) < self.min_rate as f64 * elapsed.as_secs_f64() {
                return Err(self.too_slow(elapsed.as_secs_f64()));
            }
            (self.window_start, self.window_bytes) = (Some(Instant::now()), 0);
        }
        result
    }
}

fn url_for(base: &str, file_name: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{file_name}")
    } else {
        format!("{base}/{file_name}")
    }
}

/// True for mirrors on this machine: they never go through a system proxy.
fn is_loopback(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    match parsed.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The longest wait for one read: the I/O timeout, no longer than the deadline and (when
/// the minimum rate is on) the stall window.
fn read_timeout(opts: &DownloadOptions) -> Duration {
    let t = opts.io_timeout.min(opts.deadline);
    if opts.min_rate > 0 {
        t.min(opts.stall_window)
    } else {
        t
    }
}

fn client(opts: &DownloadOptions, direct: bool) -> Result<reqwest::blocking::Client> {
    let mut builder = reqwest::blocking::Client::builder()
        .connect_timeout(opts.connect_timeout)
        // reqwest's blocking timeout applies to each read; `Watchdog` bounds the whole body
        // and its rate. A read that waits a whole stall window for a byte is a stall.
        .timeout(read_timeout(opts))
        .user_agent(concat!("wgsl-cnn/", env!("CARGO_PKG_VERSION")));
    if direct {
        builder = builder.no_proxy();
    }
    builder.build().context("could not set up the HTTP client")
}

fn progress_bar(len: Option<u64>, name: &str, show: bool) -> ProgressBar {
    let target = if show && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(len, target);
    let template = if len.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg} {spinner} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar
}

/// A unique hidden temporary name beside the final file (same directory ⇒ rename is atomic).
fn temp_path(dir: &Path, file_name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{file_name}.part-{}-{n}", std::process::id()))
}

/// Streams `url` into `tmp`, returning the number of bytes written.
fn fetch_to(url: &str, tmp: &Path, opts: &DownloadOptions, name: &str) -> Result<u64> {
    let started = Instant::now();
    let client = client(opts, is_loopback(url))?;
    let response = client
        .get(url)
        .send()
        .map_err(|e| anyhow!("{}", error_chain(&e.without_url())))?;
    let status = response.status();
    if !status.is_success() {
        bail!("HTTP {status}");
    }
    let expected = response.content_length();
    if let Some(len) = expected {
        if len > MAX_DOWNLOAD_BYTES {
            bail!("the server announces {len} bytes, more than any MNIST file");
        }
    }
    let bar = progress_bar(expected, name, opts.progress);
    let file = fs::File::create(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut writer = BufWriter::new(file);
    let body = Watchdog::new(response, started, opts);
    let mut reader = bar.wrap_read(body).take(MAX_DOWNLOAD_BYTES + 1);
    let written = std::io::copy(&mut reader, &mut writer)
        .map_err(|e| anyhow!("download interrupted: {}", error_chain(&e)));
    bar.finish_and_clear();
    let written = written?;
    if written > MAX_DOWNLOAD_BYTES {
        bail!("the server sent more than {MAX_DOWNLOAD_BYTES} bytes, more than any MNIST file");
    }
    if let Some(len) = expected {
        if written != len {
            bail!("incomplete download: got {written} of {len} bytes");
        }
    }
    let file = writer
        .into_inner()
        .map_err(|e| anyhow!("cannot write {}: {}", tmp.display(), e.error()))?;
    file.sync_all()
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    Ok(written)
}

/// The error and its sources on one line (reqwest hides the useful part in sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Gives the verified temporary file its final name without ever replacing an existing
/// file: a hard link fails if the name exists (another process finished first). Returns
/// false when an existing file was kept (and the temporary one dropped).
fn publish(tmp: &Path, dest: &Path) -> Result<bool> {
    let published = match fs::hard_link(tmp, dest) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        // File systems without hard links: check, then an atomic rename.
        Err(_) if !dest.exists() => {
            fs::rename(tmp, dest).with_context(|| {
                format!("cannot rename {} to {}", tmp.display(), dest.display())
            })?;
            return Ok(true);
        }
        Err(_) => false,
    };
    let _ = fs::remove_file(tmp);
    Ok(published)
}

/// Downloads `<stem>.gz` into `dir` from the first mirror that serves a file passing
/// every check of `spec` (and `expected_count`, if given). Returns the final path.
/// Does nothing to an existing `<stem>.gz`; the caller decides what is missing.
pub fn download_file(
    dir: &Path,
    spec: &FileSpec,
    expected_count: Option<usize>,
    mirrors: &[String],
    opts: &DownloadOptions,
) -> Result<PathBuf> {
    let file_name = format!("{}.gz", spec.stem);
    let dest = dir.join(&file_name);
    let put_them = || format!("put the files in {}", dir.display());
    if mirrors.is_empty() {
        bail!(
            "could not download {file_name}: no mirrors configured ({MIRRORS_ENV} is empty?); {}",
            put_them()
        );
    }
    fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create the data directory {} to download {file_name}",
            dir.display()
        )
    })?;
    // Partial files of killed downloads: `.NAME.part-PID-N` of processes no longer running.
    crate::fsutil::remove_stale_temps(dir, &file_name, ".part-");
    let mut failures = Vec::new();
    for (i, base) in mirrors.iter().enumerate() {
        let url = url_for(base, &file_name);
        let tmp = temp_path(dir, &file_name);
        let attempt = fetch_to(&url, &tmp, opts, &file_name).and_then(|bytes| {
            // Streamed and bounded by the IDX header: a gzip bomb stops early.
            idx::decode_file(&tmp, spec, expected_count)
                .context("the downloaded file failed verification")?;
            Ok(bytes)
        });
        match attempt.and_then(|bytes| publish(&tmp, &dest).map(|new| (bytes, new))) {
            Ok((bytes, true)) => {
                eprintln!(
                    "downloaded {url} ({bytes} bytes, verified) -> {}",
                    dest.display()
                );
                return Ok(dest);
            }
            Ok((_, false)) => {
                eprintln!(
                    "{} appeared while downloading it; kept that file",
                    dest.display()
                );
                return Ok(dest);
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                if i + 1 < mirrors.len() {
                    eprintln!("could not download {url}: {e:#}; trying the next mirror");
                }
                failures.push(format!("{url}: {e:#}"));
            }
        }
    }
    bail!(
        "could not download {file_name} from any mirror; {} (tried: {})",
        put_them(),
        failures.join("; ")
    )
}
