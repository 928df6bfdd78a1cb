//! Helpers shared by the integration tests (each test binary includes this module).

use std::path::{Path, PathBuf};

/// A fresh, empty directory under the system temp dir, unique per test and process,
/// removed when dropped.
#[allow(dead_code)]
pub struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

/// `<temp>/wgsl-cnn-<suite>-<pid>-<test>`, emptied.
#[allow(dead_code)]
pub fn temp_dir(suite: &str, test: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("wgsl-cnn-{suite}-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A fresh seed per test run, or WGSL_CNN_TEST_SEED to replay the one a failing run printed.
/// Tests mix in their own salt (`base_seed() ^ salt`) before seeding an `Rng`.
#[allow(dead_code)] // not every test binary draws random inputs
pub fn base_seed() -> u64 {
    let base = match std::env::var("WGSL_CNN_TEST_SEED") {
        Ok(s) => s.parse().expect("WGSL_CNN_TEST_SEED is a u64"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    };
    eprintln!("seed {base} (replay with WGSL_CNN_TEST_SEED={base})");
    base
}
