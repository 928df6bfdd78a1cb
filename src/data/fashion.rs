//! Fashion-MNIST (Zalando Research): MNIST's IDX format and sizes, its own download
//! location and its authors' published checksums. Those are md5s of the `.gz` files (the
//! authors' README lists them; the same four are in torchvision 0.20.1,
//! `torchvision/datasets/mnist.py`, `FashionMNIST.resources`), not of the decompressed bytes
//! that `spec::MNIST` checks; so the spec below checks structure and counts, and
//! `ensure_fashion_with` checks the `.gz` md5s. The real download is untested here (no
//! network): the tests serve IDX files they make from a local HTTP server.

#[cfg(not(target_arch = "wasm32"))]
use {
    super::download::{download_file, DownloadOptions},
    super::idx::md5_hex,
    super::mnist::{load_with, locate, Mnist},
    anyhow::{bail, Context, Result},
    std::path::Path,
};
use super::spec::{DatasetSpec, FileKind, FileSpec, SplitSpec, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};

/// The authors' download location (it serves `<stem>.gz`).
pub const FASHION_MIRRORS: [&str; 1] = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"];
/// Comma-separated base URLs replacing [`FASHION_MIRRORS`].
pub const FASHION_MIRRORS_ENV: &str = "WGSL_CNN_FASHION_MIRRORS";

/// md5 of each published `.gz` file, by stem.
pub const FASHION_GZ_MD5: [(&str, &str); 4] = [
    (TRAIN_IMAGES, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    (TRAIN_LABELS, "25c81989df183df01b3e8a0aad5dffbe"),
    (TEST_IMAGES, "bef4ecab320f06d8554ea6380940ec79"),
    (TEST_LABELS, "bb300cfdad3c16e7a12a480ee83cd310"),
];

/// The class names, label 0 to 9 (from the authors' README).
pub const FASHION_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

const fn unhashed(stem: &'static str, kind: FileKind) -> FileSpec {
    FileSpec { stem, kind, md5: None, max_label: 9 }
}

/// 60,000 training and 10,000 test examples; md5s are checked on the `.gz` (see the module).
pub const FASHION_MNIST: DatasetSpec = DatasetSpec {
    name: "Fashion-MNIST",
    train: SplitSpec {
        images: unhashed(TRAIN_IMAGES, FileKind::Images),
        labels: unhashed(TRAIN_LABELS, FileKind::Labels),
        count: Some(60_000),
    },
    test: SplitSpec {
        images: unhashed(TEST_IMAGES, FileKind::Images),
        labels: unhashed(TEST_LABELS, FileKind::Labels),
        count: Some(10_000),
    },
};

/// The mirrors from `WGSL_CNN_FASHION_MIRRORS`, else [`FASHION_MIRRORS`].
pub fn fashion_mirrors_from_env() -> Vec<String> {
    match std::env::var(FASHION_MIRRORS_ENV) {
        Ok(list) if !list.trim().is_empty() => list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(),
        _ => FASHION_MIRRORS.iter().map(|s| s.to_string()).collect(),
    }
}

/// Downloads missing Fashion-MNIST files into `dir`, checks the published `.gz` md5s and loads it.
#[cfg(not(target_arch = "wasm32"))]
pub fn ensure_fashion(dir: &Path, mirrors: &[String], opts: &DownloadOptions) -> Result<Mnist> {
    ensure_fashion_with(dir, &FASHION_MNIST, &FASHION_GZ_MD5, mirrors, opts)
}

/// [`ensure_fashion`] with any spec and `.gz` md5 table (the tests use their own). A
/// downloaded `.gz` whose md5 differs is removed again; one that was already there is kept
/// and reported. A raw (decompressed) file cannot be checked against the published md5s.
#[cfg(not(target_arch = "wasm32"))]
pub fn ensure_fashion_with(dir: &Path, spec: &DatasetSpec, gz_md5: &[(&str, &str)], mirrors: &[String], opts: &DownloadOptions) -> Result<Mnist> {
    for (split, file) in [(spec.train, spec.train.images), (spec.train, spec.train.labels), (spec.test, spec.test.images), (spec.test, spec.test.labels)] {
        let downloaded = match locate(dir, file.stem) {
            Some(_) => false,
            None => {
                download_file(dir, &file, split.count, mirrors, opts)?;
                true
            }
        };
        let gz = dir.join(format!("{}.gz", file.stem));
        let Some(&(_, want)) = gz_md5.iter().find(|(stem, _)| *stem == file.stem) else { continue };
        if locate(dir, file.stem).as_deref() != Some(gz.as_path()) {
            continue; // the raw file is used
        }
        let got = md5_hex(&std::fs::read(&gz).with_context(|| format!("cannot read {}", gz.display()))?);
        if !got.eq_ignore_ascii_case(want) {
            let fate = if downloaded {
                let _ = std::fs::remove_file(&gz);
                "the download was removed"
            } else {
                "remove it to download it again"
            };
            bail!("checksum mismatch: the md5 of {} is {got}, the published md5 of {}.gz is {want}; {fate}", gz.display(), file.stem);
        }
    }
    load_with(dir, spec)
}
