//! Build-time facts the benchmark stamps on its records (see src/bench/mod.rs):
//!
//! - `WGSL_CNN_WGPU_VERSION`: the wgpu version Cargo.lock resolved (so it cannot drift from
//!   what was linked), or "unknown" when there is no Cargo.lock next to Cargo.toml (the
//!   crate built as someone else's dependency).
//! - `WGSL_CNN_GIT_COMMIT`: `git rev-parse --short=12 HEAD` of the checkout being built, with
//!   "-dirty" when tracked files differ from HEAD, or "unknown" outside a git checkout or
//!   without git. Checked again whenever HEAD, its branch, the index, or a file under
//!   src/, shaders/, tests/ (or Cargo.toml, build.rs) changes; an edit elsewhere (README)
//!   alone does not add "-dirty". Taken at build time, not run time, so a copied binary still says what it
//!   was built from.

use std::path::Path;
use std::process::Command;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&dir);

    let lock = dir.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let wgpu = std::fs::read_to_string(&lock)
        .ok()
        .and_then(|s| locked_version(&s, "wgpu"))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WGSL_CNN_WGPU_VERSION={wgpu}");

    // Rerun when the commit or the working tree may have changed: HEAD, the branch it
    // points to, the index, and the sources ("-dirty" follows edits to them).
    for p in ["build.rs", "Cargo.toml", "src", "shaders", "tests"] {
        println!("cargo:rerun-if-changed={}", dir.join(p).display());
    }
    for p in ["HEAD", "index", "packed-refs"] {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", p]) {
            rerun_if_exists(dir, &path);
        }
    }
    if let Some(r) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &r]) {
            rerun_if_exists(dir, &path);
        }
    }
    let commit = match git(dir, &["rev-parse", "--short=12", "HEAD"]) {
        Some(c) => {
            let dirty = git(dir, &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c}-dirty")
            } else {
                c
            }
        }
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=WGSL_CNN_GIT_COMMIT={commit}");
}

/// Trimmed stdout of a successful git command run in `dir`.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").current_dir(dir).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn rerun_if_exists(dir: &Path, path: &str) {
    let p = dir.join(path);
    if p.exists() {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

/// The version of `[[package]] name = "<name>"` in a Cargo.lock (the first one, if several).
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let want = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l.trim() == want {
            let v = lines.next()?.trim().strip_prefix("version = \"")?.strip_suffix('"')?;
            return Some(v.to_string());
        }
    }
    None
}
