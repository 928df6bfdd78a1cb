//! How much more host memory this process may take: the least of the machine's free memory
//! (`MemAvailable`), what is left under the process's address-space limit (`RLIMIT_AS`,
//! `ulimit -v`, `prlimit --as`) and what is left under its cgroup's limit (v2 `memory.max`,
//! v1 `memory.limit_in_bytes`, as a container's `--memory` sets). Each is read where the
//! platform has it (Linux for the files, any unix for `RLIMIT_AS`); elsewhere (wasm, Windows)
//! nothing is known and callers go on without a host check.

use std::path::{Path, PathBuf};

/// One bound on the memory this process may still allocate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Headroom {
    /// Bytes still to be had under this bound.
    pub bytes: u64,
    /// What the bound is, for messages ("free memory (MemAvailable)", …).
    pub what: String,
}

/// The tightest of the bounds this platform reports, or None when none is known.
pub fn headroom() -> Option<Headroom> {
    let mut all = Vec::new();
    all.extend(mem_available());
    all.extend(address_space());
    all.extend(cgroup());
    tightest(all)
}

/// The smallest of `bounds`.
pub fn tightest(bounds: impl IntoIterator<Item = Headroom>) -> Option<Headroom> {
    bounds.into_iter().min_by_key(|h| h.bytes)
}

/// The machine's free memory, Linux `MemAvailable`.
fn mem_available() -> Option<Headroom> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = meminfo_kib(&text, "MemAvailable:")?;
    Some(Headroom { bytes: kib.saturating_mul(1024), what: "free memory (MemAvailable)".into() })
}

/// The value of `key` (in kB) in /proc/meminfo or /proc/self/status text.
fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What is left under `RLIMIT_AS`: the soft limit less the address space mapped now
/// (`VmSize`; where that cannot be read the whole limit is taken).
#[cfg(unix)]
fn address_space() -> Option<Headroom> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct, which `lim` is.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
    let limit = lim.rlim_cur as u64;
    let mapped = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| meminfo_kib(&s, "VmSize:"))
        .map_or(0, |kib| kib.saturating_mul(1024));
    let reserved = std::fs::read_to_string("/proc/self/smaps").map_or(0, |s| allocator_reserve(&s));
    let used = mapped.saturating_sub(reserved);
    Some(Headroom {
        bytes: limit.saturating_sub(used),
        what: format!("the process's address-space limit (RLIMIT_AS, ulimit -v: {} MiB, {} MiB of it in use)", limit >> 20, used >> 20),
    })
}

/// Bytes of address space that the allocator has reserved and not touched, from the text of
/// `/proc/self/smaps`: the non-resident part of large anonymous mappings (mimalloc reserves
/// a 1 GiB arena up front; the buffers that follow are carved from it, so counting it as
/// used would halve what a process under `ulimit -v 2G` is allowed). Thread stacks and other
/// small mappings count in full.
pub fn allocator_reserve(smaps: &str) -> u64 {
    const LARGE_KIB: u64 = 64 << 10;
    let mut total = 0;
    let (mut anonymous, mut size) = (false, 0u64);
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // "start-end perms offset dev inode [path]": anonymous when there is no path.
            anonymous = line.split_whitespace().nth(5).is_none();
            size = 0;
        } else if first == "Size:" {
            size = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        } else if first == "Rss:" && anonymous && size >= LARGE_KIB {
            let rss: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(size);
            total += size.saturating_sub(rss) * 1024;
        }
    }
    total
}

#[cfg(not(unix))]
fn address_space() -> Option<Headroom> {
    None
}

/// What is left under the memory limits of this process's cgroup (v2 or v1) and its parents.
fn cgroup() -> Option<Headroom> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup_headroom(Path::new("/sys/fs/cgroup"), &own)
}

/// [`cgroup`] with the cgroup file system at `root` and `/proc/self/cgroup`'s text `own`
/// (separate for tests). v2: `root/<path>/memory.max` less `memory.current` (without the
/// inactive page cache, which the kernel reclaims before refusing); v1: the same from
/// `root/memory/<path>/memory.limit_in_bytes` and `memory.usage_in_bytes`. Every directory
/// from the process's cgroup up to the root counts (the kernel enforces each); in a container
/// the path may not exist in its view, and then the root's own files are its limit.
pub fn cgroup_headroom(root: &Path, own: &str) -> Option<Headroom> {
    let mut found = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let rel = path.trim().trim_start_matches('/');
        if controllers.is_empty() {
            // v2: the unified hierarchy, mounted at root (or root/unified beside v1).
            for base in [root.to_path_buf(), root.join("unified")] {
                found.extend(walk_up(&base, rel, "memory.max", "memory.current", "cgroup v2 memory.max"));
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            found.extend(walk_up(&root.join("memory"), rel, "memory.limit_in_bytes", "memory.usage_in_bytes", "cgroup v1 memory.limit_in_bytes"));
        }
    }
    tightest(found)
}

/// The bounds in `base/rel` and each of its parents up to `base`.
fn walk_up(base: &Path, rel: &str, limit_file: &str, usage_file: &str, what: &str) -> Vec<Headroom> {
    let mut out = Vec::new();
    let mut dir: PathBuf = base.join(rel);
    loop {
        if let Some(h) = read_limit(&dir, limit_file, usage_file, what) {
            out.push(h);
        }
        if dir == base || !dir.pop() || !dir.starts_with(base) {
            break;
        }
    }
    out
}

/// Limits at or above this are "no limit" (v1 writes 2^63 rounded down to a page).
const UNLIMITED: u64 = 1 << 62;

fn read_limit(dir: &Path, limit_file: &str, usage_file: &str, what: &str) -> Option<Headroom> {
    let text = std::fs::read_to_string(dir.join(limit_file)).ok()?;
    let limit: u64 = text.trim().parse().ok()?; // v2 "max": no limit
    if limit >= UNLIMITED {
        return None;
    }
    let usage: u64 = std::fs::read_to_string(dir.join(usage_file)).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
    // Page cache that is not in use counts as used but is given back on demand.
    let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
    let inactive = ["inactive_file", "total_inactive_file"]
        .iter()
        .find_map(|key| stat.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse::<u64>().ok())))
        .unwrap_or(0);
    let used = usage.saturating_sub(inactive);
    Some(Headroom {
        bytes: limit.saturating_sub(used),
        what: format!("the cgroup's memory limit ({what} {} MiB, {} MiB in use, in {})", limit >> 20, used >> 20, dir.display()),
    })
}

/// An allocation the host refused: what it was for, its size, and the bytes the same
/// backend had been granted before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub what: String,
    pub bytes: u64,
    pub granted: u64,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the system refused {} ({} bytes) for {}, after granting {} to the buffers before it",
            mib(self.bytes),
            self.bytes,
            self.what,
            mib(self.granted)
        )
    }
}

/// The error for a refused allocation of `bytes` for `what`.
pub fn refused(what: &str, bytes: u64) -> anyhow::Error {
    anyhow::anyhow!("cannot allocate {} ({bytes} bytes) for {what}: the system refused the memory", mib(bytes))
}

/// `bytes` as "12.3 MiB".
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
