//! The data sets the commands read (`--dataset`): MNIST, Fashion-MNIST, Kuzushiji-MNIST and
//! any IDX set of 28 × 28 images (`idx`, e.g. EMNIST) share the IDX format and sizes; they
//! differ in where they come from, what checks them, how many classes they have and what
//! those are called.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::data::fashion::{FASHION_CLASSES, FASHION_GZ_MD5, FASHION_MNIST};
use crate::data::spec::{DatasetSpec, IDX, KMNIST, MNIST};
use crate::data::Mnist;
#[cfg(not(target_arch = "wasm32"))]
use crate::data::{
    fashion::{ensure_fashion, fashion_mirrors_from_env},
    load, load_with, mirrors_from_env, DownloadOptions,
};
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Dataset {
    #[default]
    Mnist,
    FashionMnist,
    /// Kuzushiji-MNIST: ten hiragana (offline: put its four IDX files in the directory).
    Kmnist,
    /// Any IDX set under MNIST's file names; the classes come from its labels.
    Idx,
}

const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
/// KMNIST's classes, romanised as its `kmnist_classmap.csv` gives them.
const HIRAGANA: [&str; 10] = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"];

impl Dataset {
    pub const ALL: [Dataset; 4] = [Dataset::Mnist, Dataset::FashionMnist, Dataset::Kmnist, Dataset::Idx];

    /// The `--dataset` name.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Mnist => "mnist",
            Dataset::FashionMnist => "fashion-mnist",
            Dataset::Kmnist => "kmnist",
            Dataset::Idx => "idx",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        match Self::ALL.into_iter().find(|d| d.name() == name) {
            Some(d) => Ok(d),
            None => bail!("unknown data set {name:?} (mnist, fashion-mnist, kmnist or idx)"),
        }
    }

    /// What label c means (where a class has no name here, its number stands for it).
    pub fn class_names(self) -> &'static [&'static str] {
        match self {
            Dataset::Mnist => &DIGITS,
            Dataset::FashionMnist => &FASHION_CLASSES,
            Dataset::Kmnist => &HIRAGANA,
            Dataset::Idx => &[],
        }
    }

    /// The data directory when none is given.
    pub fn default_dir(self) -> PathBuf {
        PathBuf::from(match self {
            Dataset::Mnist => crate::data::DEFAULT_DATA_DIR,
            Dataset::FashionMnist => "data/fashion-mnist",
            Dataset::Kmnist => "data/kmnist",
            Dataset::Idx => "data/idx",
        })
    }

    /// Loads the data set from `dir`, downloading missing files unless `offline`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(self, dir: &Path, offline: bool) -> Result<Mnist> {
        match (self, offline) {
            (Dataset::Mnist, true) => load(dir),
            (Dataset::Mnist, false) => crate::data::ensure(dir, &mirrors_from_env()),
            (Dataset::FashionMnist, true) => load_with(dir, &FASHION_MNIST),
            (Dataset::FashionMnist, false) => ensure_fashion(dir, &fashion_mirrors_from_env(), &DownloadOptions::default()),
            // No download: the files go into the directory by hand (see docs/data.md).
            (Dataset::Kmnist | Dataset::Idx, _) => crate::data::local::load_dir(dir, self.spec()),
        }
    }

    /// What the files must be: names, counts, md5s of the decompressed bytes where known.
    pub fn spec(self) -> &'static DatasetSpec {
        match self {
            Dataset::Mnist => &MNIST,
            Dataset::FashionMnist => &FASHION_MNIST,
            Dataset::Kmnist => &KMNIST,
            Dataset::Idx => &IDX,
        }
    }

    /// The data set from its four files already in memory (the page's downloads), with the
    /// checks a data directory gets (`data::from_bytes`); `checksums` is the text of an
    /// `IDX-MD5SUMS` list served with files that are not the official ones.
    pub fn from_bytes(self, source: &str, files: Vec<(String, Vec<u8>)>, checksums: Option<&str>) -> Result<Mnist> {
        let gz_md5: &[(&str, &str)] = match self {
            Dataset::Mnist | Dataset::Kmnist | Dataset::Idx => &[],
            Dataset::FashionMnist => &FASHION_GZ_MD5,
        };
        crate::data::from_bytes(self.spec(), source, files, checksums, gz_md5)
    }
}
