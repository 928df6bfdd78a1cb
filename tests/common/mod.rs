//! Helpers shared by the integration tests (each test binary includes this module).

use std::path::{Path, PathBuf};

/// A fresh, empty directory under the system temp dir, unique per test and process,
/// removed when dropped.
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
pub fn temp_dir(suite: &str, test: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("wgsl-cnn-{suite}-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}
