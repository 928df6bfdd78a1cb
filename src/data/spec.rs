//! What a data set is made of: four IDX files, the md5 each must have once decompressed,
//! and how many examples each split holds. The loader and the downloader both check a
//! file against its [`FileSpec`], so the full MNIST and the offline subset in `assets/`
//! go through the same code with different expectations.

/// Whether an IDX file holds images (magic 2051, n×28×28) or labels (magic 2049, n).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Images,
    Labels,
}

/// One IDX file of a data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSpec {
    /// File name without `.gz`, e.g. `train-images-idx3-ubyte`. On disk it may be this
    /// name (raw IDX) or this name plus `.gz`; mirrors serve the `.gz`.
    pub stem: &'static str,
    pub kind: FileKind,
    /// md5 (lower-case hex) of the DECOMPRESSED IDX bytes, or `None` to skip the check.
    /// Decompressed, because the same IDX bytes circulate in differently made `.gz` files.
    pub md5: Option<&'static str>,
    /// Labels files: the largest label allowed (9 for the ten-class sets; 255 for `IDX`,
    /// whose classes come from its labels).
    pub max_label: u8,
}

/// The images and labels of one split (train or test).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitSpec {
    pub images: FileSpec,
    pub labels: FileSpec,
    /// Expected number of examples, or `None` to accept any count.
    pub count: Option<usize>,
}

/// A whole data set: a name for messages and its two splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatasetSpec {
    pub name: &'static str,
    pub train: SplitSpec,
    pub test: SplitSpec,
}

impl DatasetSpec {
    /// The four files, in the order train images, train labels, test images, test labels.
    pub fn files(&self) -> [FileSpec; 4] {
        [
            self.train.images,
            self.train.labels,
            self.test.images,
            self.test.labels,
        ]
    }

    /// The same file names with no md5 and no count expectations: structure is still
    /// fully validated (magic, 28×28, exact length, equal counts, labels up to `max_label`).
    pub const fn unchecked(&self) -> DatasetSpec {
        const fn strip(f: FileSpec) -> FileSpec {
            FileSpec { md5: None, ..f }
        }
        const fn split(s: SplitSpec) -> SplitSpec {
            SplitSpec {
                images: strip(s.images),
                labels: strip(s.labels),
                count: None,
            }
        }
        DatasetSpec {
            name: self.name,
            train: split(self.train),
            test: split(self.test),
        }
    }
}

const fn file(stem: &'static str, kind: FileKind, md5: &'static str) -> FileSpec {
    FileSpec {
        stem,
        kind,
        md5: Some(md5),
        max_label: 9,
    }
}

const fn any_file(stem: &'static str, kind: FileKind, max_label: u8) -> FileSpec {
    FileSpec { stem, kind, md5: None, max_label }
}

/// Any IDX data set of 28 × 28 grey images under MNIST's four file names, with any counts
/// and labels 0–255: the classes are 0 to the largest label found (`Mnist::classes`), as
/// EMNIST's splits (47 classes for `balanced`, 27 for `letters`, whose labels start at 1),
/// once their files are renamed (and, for EMNIST, transposed: its images are stored
/// column by column).
pub const IDX: DatasetSpec = DatasetSpec {
    name: "IDX data set",
    train: SplitSpec { images: any_file(TRAIN_IMAGES, FileKind::Images, 255), labels: any_file(TRAIN_LABELS, FileKind::Labels, 255), count: None },
    test: SplitSpec { images: any_file(TEST_IMAGES, FileKind::Images, 255), labels: any_file(TEST_LABELS, FileKind::Labels, 255), count: None },
};

/// Kuzushiji-MNIST (Clanuwat et al. 2018): ten classes of cursive hiragana, MNIST's sizes
/// and file names (no md5s are published for the decompressed files: any counts load).
pub const KMNIST: DatasetSpec = DatasetSpec {
    name: "Kuzushiji-MNIST",
    train: SplitSpec { images: any_file(TRAIN_IMAGES, FileKind::Images, 9), labels: any_file(TRAIN_LABELS, FileKind::Labels, 9), count: None },
    test: SplitSpec { images: any_file(TEST_IMAGES, FileKind::Images, 9), labels: any_file(TEST_LABELS, FileKind::Labels, 9), count: None },
};

pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// The full MNIST: 60,000 training and 10,000 test examples, with the published md5s
/// of the original decompressed IDX files.
pub const MNIST: DatasetSpec = DatasetSpec {
    name: "MNIST",
    train: SplitSpec {
        images: file(
            TRAIN_IMAGES,
            FileKind::Images,
            "6bbc9ace898e44ae57da46a324031adb",
        ),
        labels: file(
            TRAIN_LABELS,
            FileKind::Labels,
            "a25bea736e30d166cdddb491f175f624",
        ),
        count: Some(60_000),
    },
    test: SplitSpec {
        images: file(
            TEST_IMAGES,
            FileKind::Images,
            "2646ac647ad5339dbf082846283269ea",
        ),
        labels: file(
            TEST_LABELS,
            FileKind::Labels,
            "27ae3e4e09519cfbb04c329615203637",
        ),
        count: Some(10_000),
    },
};

/// The offline subset in `assets/mnist-subset/`: the first 2,000 training and first
/// 1,000 test examples of MNIST, header counts adjusted. Its md5s are checked too.
pub const MNIST_SUBSET: DatasetSpec = DatasetSpec {
    name: "MNIST subset (assets/mnist-subset)",
    train: SplitSpec {
        images: file(
            TRAIN_IMAGES,
            FileKind::Images,
            "294fd329ff7cac24b682d047b71117e9",
        ),
        labels: file(
            TRAIN_LABELS,
            FileKind::Labels,
            "529b059f379972fba6ba13392ba4af56",
        ),
        count: Some(2_000),
    },
    test: SplitSpec {
        images: file(
            TEST_IMAGES,
            FileKind::Images,
            "bac4371a484d0b5651e81d99305acb5a",
        ),
        labels: file(
            TEST_LABELS,
            FileKind::Labels,
            "556860b2f10365a8f7444c1e79c7e9af",
        ),
        count: Some(1_000),
    },
};
