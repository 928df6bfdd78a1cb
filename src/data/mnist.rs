//! MNIST in memory: find the four files in a directory, download the missing ones,
//! verify everything, and say what was loaded.

#[cfg(not(target_arch = "wasm32"))]
use super::download::{self, DownloadOptions};
use super::idx::{self, Decoded, PIXELS};
use super::spec::{DatasetSpec, FileKind, FileSpec, SplitSpec, MNIST, MNIST_SUBSET};
use crate::text::thousands;
use anyhow::{bail, ensure, Result};

use std::fmt;
use std::path::{Path, PathBuf};

/// One split: `count` images of 28×28 u8 pixels, row-major, image after image
/// (`images.len() == count·784`), and one label 0–9 per image.
#[derive(Clone, Debug)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub count: usize,
}

impl Split {
    /// The 784 pixels of image `i` (panics if `i >= count`, like slice indexing).
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }
}

/// The loaded data set and a report of where it came from.
#[derive(Clone, Debug)]
pub struct Mnist {
    pub train: Split,
    pub test: Split,
    pub report: LoadReport,
}

impl Mnist {
    /// How many classes the data set has: ten for the sets whose labels are 0–9 by their
    /// spec (MNIST, Fashion-MNIST, KMNIST: `max_label` + 1), else one more than the largest label of either
    /// split (`spec::IDX`). A model's last layer must give this many scores.
    pub fn classes(&self) -> usize {
        if self.report.max_label < u8::MAX {
            self.report.max_label as usize + 1
        } else {
            self.report.largest_label as usize + 1
        }
    }
}

/// What was checked about one file.
#[derive(Clone, Debug)]
pub struct FileReport {
    pub path: PathBuf,
    pub kind: FileKind,
    pub count: usize,
    /// md5 of the decompressed IDX bytes.
    pub md5: String,
    /// Whether `md5` was compared with the data set spec (and matched).
    pub md5_checked: bool,
    pub was_gzip: bool,
    /// Whether this call downloaded the file.
    pub downloaded: bool,
}

/// Where a data set came from and what was verified; `Display` prints it for the CLI.
#[derive(Clone, Debug)]
pub struct LoadReport {
    pub dataset: &'static str,
    pub dir: PathBuf,
    pub train_count: usize,
    pub test_count: usize,
    /// Train images, train labels, test images, test labels.
    pub files: Vec<FileReport>,
    /// One-line remarks, e.g. that the files are not the official MNIST.
    pub notes: Vec<String>,
    /// The largest label the spec allows (`FileSpec::max_label`).
    pub max_label: u8,
    /// The largest label in either split.
    pub largest_label: u8,
}

/// The largest label of either split.
fn largest_label(train: &Split, test: &Split) -> u8 {
    train.labels.iter().chain(&test.labels).copied().max().unwrap_or(0)
}

/// The default data directory when neither `--data-dir` nor `WGSL_CNN_DATA` is given.
pub const DEFAULT_DATA_DIR: &str = "data/mnist";

/// Overrides [`assets_subset_dir`]: a copy of `assets/mnist-subset` for test binaries run
/// away from the checkout they were built in (scripts/gpu-check.sh).
pub const ASSETS_SUBSET_ENV: &str = "WGSL_CNN_ASSETS_SUBSET";

/// The directory of the offline subset shipped in `assets/` (or `WGSL_CNN_ASSETS_SUBSET`).
pub fn assets_subset_dir() -> PathBuf {
    match std::env::var_os(ASSETS_SUBSET_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("assets").join("mnist-subset"),
    }
}

/// Where `stem` is in `dir`: the raw IDX file if present, else `<stem>.gz`, else `None`.
/// Anything under the name counts as present (a FIFO or directory is then refused by the
/// reader, never mistaken for a missing file).
pub fn locate(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.join(stem), dir.join(format!("{stem}.gz"))]
        .into_iter()
        .find(|p| std::fs::symlink_metadata(p).is_ok())
}

/// Loads and verifies MNIST from `dir` (any consistent size, see [`super::local::load_dir`]).
/// Never touches the network.
pub fn load(dir: &Path) -> Result<Mnist> {
    super::local::load_dir(dir, &MNIST)
}

/// Downloads whatever full-MNIST file is missing from `dir` (trying `mirrors` in order),
/// then loads and verifies everything. Files already present are never replaced.
#[cfg(not(target_arch = "wasm32"))]
pub fn ensure(dir: &Path, mirrors: &[String]) -> Result<Mnist> {
    ensure_with(dir, &MNIST, mirrors, &DownloadOptions::default())
}

/// Loads the offline subset in `assets/mnist-subset/` (2,000 train, 1,000 test), md5s checked.
pub fn load_assets_subset() -> Result<Mnist> {
    load_with(&assets_subset_dir(), &MNIST_SUBSET)
}

/// [`ensure`] for any data set spec and download options: files with the spec's counts must
/// have its md5s, other consistent sizes load with a note (see [`super::local::load_dir`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn ensure_with(
    dir: &Path,
    spec: &DatasetSpec,
    mirrors: &[String],
    opts: &DownloadOptions,
) -> Result<Mnist> {
    let mut downloaded = Vec::new();
    for (split, file) in split_files(spec) {
        if locate(dir, file.stem).is_none() {
            downloaded.push(download::download_file(
                dir,
                &file,
                split.count,
                mirrors,
                opts,
            )?);
        }
    }
    let mut mnist = super::local::load_dir(dir, spec)?;
    for f in &mut mnist.report.files {
        f.downloaded = downloaded.contains(&f.path);
    }
    Ok(mnist)
}

#[cfg(not(target_arch = "wasm32"))]
fn split_files(spec: &DatasetSpec) -> [(SplitSpec, FileSpec); 4] {
    [
        (spec.train, spec.train.images),
        (spec.train, spec.train.labels),
        (spec.test, spec.test.images),
        (spec.test, spec.test.labels),
    ]
}

/// Loads and verifies the data set described by `spec` from `dir`. Never touches the network.
pub fn load_with(dir: &Path, spec: &DatasetSpec) -> Result<Mnist> {
    let missing: Vec<&str> = spec
        .files()
        .iter()
        .filter(|f| locate(dir, f.stem).is_none())
        .map(|f| f.stem)
        .collect();
    if !missing.is_empty() {
        let why = if dir.is_dir() {
            "lacks"
        } else {
            "does not exist, so it lacks"
        };
        bail!(
            "the data directory {} {why} {} (each as NAME or NAME.gz); run `wgsl-cnn data --data-dir {}` \
             to download them, or put the files there",
            dir.display(),
            missing.join(", "),
            dir.display()
        );
    }
    let mut read = |f: &FileSpec, count| read_file(dir, f, count);
    let (train, mut files) = load_split(&spec.train, &mut read)?;
    let (test, test_files) = load_split(&spec.test, &mut read)?;
    files.extend(test_files);
    let report = LoadReport {
        dataset: spec.name,
        dir: dir.to_path_buf(),
        train_count: train.count,
        test_count: test.count,
        files,
        notes: Vec::new(),
        max_label: spec.train.labels.max_label,
        largest_label: largest_label(&train, &test),
    };
    Ok(Mnist {
        train,
        test,
        report,
    })
}

fn read_file(dir: &Path, spec: &FileSpec, count: Option<usize>) -> Result<(PathBuf, Decoded)> {
    let Some(path) = locate(dir, spec.stem) else {
        bail!("{} has no {} or {}.gz", dir.display(), spec.stem, spec.stem);
    };
    let decoded = idx::decode_file(&path, spec, count)
        .map_err(|e| {
            // Open errors already start with the path.
            let msg = format!("{e:#}");
            let named = if msg.starts_with(&path.display().to_string()) { msg } else { format!("{}: {msg}", path.display()) };
            anyhow::anyhow!("{named}; {}", super::local::repair_hint(dir))
        })?;
    Ok((path, decoded))
}

/// Loads the data set `spec` names from files already in memory, by name (`NAME` or
/// `NAME.gz`; the page's downloads), with the checks a data directory gets
/// ([`super::local::load_dir`]): full structure, the official md5 wherever a file has the
/// official count, the md5s of `checksums` (an `IDX-MD5SUMS` text) elsewhere, and a `.gz` md5
/// from `gz_md5` where one is published. `source` names where the files came from.
pub fn from_bytes(
    spec: &DatasetSpec,
    source: &str,
    mut files: Vec<(String, Vec<u8>)>,
    checksums: Option<&str>,
    gz_md5: &[(&str, &str)],
) -> Result<Mnist> {
    let mut read = |f: &FileSpec, count| -> Result<(PathBuf, Decoded)> {
        let Some(i) = files.iter().position(|(name, _)| name.strip_suffix(".gz").unwrap_or(name) == f.stem) else {
            bail!("{source} has no {} or {}.gz", f.stem, f.stem);
        };
        let (name, bytes) = files.swap_remove(i);
        if let Some(&(_, want)) = gz_md5.iter().find(|(stem, _)| *stem == f.stem).filter(|_| idx::is_gzip(&bytes)) {
            let got = idx::md5_hex(&bytes);
            ensure!(got.eq_ignore_ascii_case(want), "{name}: checksum mismatch: the md5 is {got}, the published md5 of {}.gz is {want}", f.stem);
        }
        let decoded = idx::decode(bytes, f, count).map_err(|e| anyhow::anyhow!("{name}: {e:#}"))?;
        Ok((PathBuf::from(name), decoded))
    };
    let unchecked = spec.unchecked();
    let (train, mut reports) = load_split(&unchecked.train, &mut read)?;
    let (test, test_reports) = load_split(&unchecked.test, &mut read)?;
    reports.extend(test_reports);
    let report = LoadReport { dataset: spec.name, dir: PathBuf::from(source), train_count: train.count, test_count: test.count, files: reports, notes: Vec::new(), max_label: spec.train.labels.max_label, largest_label: largest_label(&train, &test) };
    let mut mnist = Mnist { train, test, report };
    let list = checksums.map(|text| super::local::parse_checksums(text, &format!("{source}/{}", super::local::CHECKSUMS_FILE))).transpose()?;
    super::local::verify_md5s(&mut mnist, spec, list.as_deref(), source, "")?;
    Ok(mnist)
}

type ReadFile<'a> = dyn FnMut(&FileSpec, Option<usize>) -> Result<(PathBuf, Decoded)> + 'a;

fn load_split(spec: &SplitSpec, read: &mut ReadFile) -> Result<(Split, Vec<FileReport>)> {
    let (image_path, images) = read(&spec.images, spec.count)?;
    let (label_path, labels) = read(&spec.labels, spec.count)?;
    ensure!(
        images.count == labels.count,
        "count mismatch: {} holds {} images but {} holds {} labels",
        image_path.display(),
        images.count,
        label_path.display(),
        labels.count
    );
    let report = |path: PathBuf, d: &Decoded, kind| FileReport {
        path,
        kind,
        count: d.count,
        md5: d.md5.clone(),
        md5_checked: d.md5_checked,
        was_gzip: d.was_gzip,
        downloaded: false,
    };
    let files = vec![
        report(image_path, &images, FileKind::Images),
        report(label_path, &labels, FileKind::Labels),
    ];
    Ok((
        Split {
            count: images.count,
            images: images.data,
            labels: labels.data,
        },
        files,
    ))
}


impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} loaded from {}", self.dataset, self.dir.display())?;
        for (name, n) in [("train", self.train_count), ("test", self.test_count)] {
            writeln!(
                f,
                "  {:<6} {:>6} images of 28×28 u8 ({} pixel bytes), {:>6} labels 0–{}",
                format!("{name}:"),
                thousands(n as u64),
                thousands((n * PIXELS) as u64),
                thousands(n as u64),
                if self.max_label < u8::MAX { self.max_label } else { self.largest_label }
            )?;
        }
        for file in &self.files {
            let name = file
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let check = if file.md5_checked {
                "verified"
            } else {
                "not checked (no md5 known for this size)"
            };
            let how = if file.downloaded {
                ", downloaded now"
            } else {
                ""
            };
            writeln!(f, "  {name:<28} md5 {} {check}{how}", file.md5)?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        let checked = self.files.iter().filter(|f| f.md5_checked).count();
        if checked == self.files.len() {
            write!(
                f,
                "checksums verified: all {checked} files (md5 of the decompressed IDX bytes)"
            )
        } else {
            write!(
                f,
                "checksums verified: {checked} of {} files",
                self.files.len()
            )
        }
    }
}
