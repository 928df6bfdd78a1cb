//! Data: MNIST files (IDX, gzip'd or raw), their download and verification.
//!
//! - [`spec`]: what a data set is (file names, md5 of the decompressed bytes, counts).
//!   [`spec::MNIST`] checks the published md5s; [`spec::MNIST_SUBSET`] checks the md5s
//!   of the offline subset in `assets/mnist-subset/` (every load verifies md5s).
//! - [`idx`]: gunzip + IDX parsing with full validation.
//! - [`download`]: mirrors, temp file + verify + rename.
//! - [`mnist`]: `load`, `ensure`, `load_assets_subset`, and the report the CLI prints.
//! - [`local`]: data directories of any consistent size, their own md5 lists, `--repair`.

#[cfg(not(target_arch = "wasm32"))]
pub mod download;
pub mod fashion;
pub mod idx;
pub mod local;
pub mod mnist;
pub mod spec;

#[cfg(not(target_arch = "wasm32"))]
pub use download::{mirrors_from_env, DownloadOptions, DEFAULT_MIRRORS, MIRRORS_ENV};
#[cfg(not(target_arch = "wasm32"))]
pub use mnist::{ensure, ensure_with};
pub use mnist::{assets_subset_dir, from_bytes, load, load_assets_subset, load_with, LoadReport, Mnist, Split, DEFAULT_DATA_DIR};

#[cfg(not(target_arch = "wasm32"))]
use {anyhow::Result, std::path::Path};

/// Environment variable naming the data directory (the CLI's `--data-dir`).
pub const DATA_DIR_ENV: &str = "WGSL_CNN_DATA";

/// The `wgsl-cnn data` command: load MNIST from `dir` (downloading missing files from
/// the mirrors in `WGSL_CNN_MNIST_MIRRORS` or the defaults, unless `offline`) and print
/// what was loaded. With `repair`, damaged files are first moved aside (and so fetched again).
#[cfg(not(target_arch = "wasm32"))]
pub fn data_command(dir: &Path, offline: bool, repair: bool) -> Result<()> {
    let start = web_time::Instant::now();
    if repair {
        let moved = local::move_bad_files_aside(dir, &spec::MNIST)?;
        if moved.is_empty() {
            eprintln!("no damaged files in {}", dir.display());
        }
    }
    let mnist = if offline {
        load(dir)?
    } else {
        ensure(dir, &mirrors_from_env())?
    };
    let text = format!(
        "{}\n({:.2} s)\n",
        mnist.report,
        start.elapsed().as_secs_f64()
    );
    // Write rather than println!, so `wgsl-cnn data | head` ends quietly instead of panicking.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
