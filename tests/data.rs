//! MNIST loading: the offline subset parses to the right data (checked against an
//! independent decode in this file), and every class of bad input gives a clear error
//! naming the file and the problem, never a panic.

mod common;
use common::TempDir;
use flate2::{read::GzDecoder, write::GzEncoder, Compression};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use wgsl_cnn::data::idx::md5_hex;
use wgsl_cnn::data::spec::{
    DatasetSpec, MNIST, MNIST_SUBSET, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
};
use wgsl_cnn::data::{assets_subset_dir, load_assets_subset, load_with};

// ---- helpers -------------------------------------------------------------------------

fn temp_dir(test: &str) -> TempDir {
    common::temp_dir("data-test", test)
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

fn be(n: u32) -> [u8; 4] {
    n.to_be_bytes()
}

/// IDX images with an explicit header, pixels i*7+j mod 256 (not all zero).
fn images_idx(magic: u32, count: u32, rows: u32, cols: u32, pixel_bytes: usize) -> Vec<u8> {
    let mut v = [be(magic), be(count), be(rows), be(cols)].concat();
    v.extend((0..pixel_bytes).map(|i| (i * 7 % 256) as u8));
    v
}

fn good_images(count: u32) -> Vec<u8> {
    images_idx(2051, count, 28, 28, count as usize * 784)
}

fn labels_idx(magic: u32, count: u32, labels: &[u8]) -> Vec<u8> {
    let mut v = [be(magic), be(count)].concat();
    v.extend_from_slice(labels);
    v
}

fn good_labels(count: u32) -> Vec<u8> {
    let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
    labels_idx(2049, count, &labels)
}

/// Writes a complete, valid small data set (train 12, test 9 examples) as .gz files.
fn write_good_set(dir: &Path) {
    write_gz(dir, TRAIN_IMAGES, &good_images(12));
    write_gz(dir, TRAIN_LABELS, &good_labels(12));
    write_gz(dir, TEST_IMAGES, &good_images(9));
    write_gz(dir, TEST_LABELS, &good_labels(9));
}

fn write_gz(dir: &Path, stem: &str, idx: &[u8]) -> PathBuf {
    let path = dir.join(format!("{stem}.gz"));
    std::fs::write(&path, gz(idx)).unwrap();
    path
}

/// Loads `dir` with `spec`, expecting an error; returns the full message (all contexts).
fn load_error(dir: &Path, spec: &DatasetSpec) -> String {
    match load_with(dir, spec) {
        Ok(m) => panic!(
            "loading {} should fail but gave {} / {} examples",
            dir.display(),
            m.train.count,
            m.test.count
        ),
        Err(e) => format!("{e:#}"),
    }
}

fn assert_mentions(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(
            msg.contains(n),
            "error message should mention {n:?}, got:\n{msg}"
        );
    }
}

/// Independent decode of one assets file: gunzip with flate2, read the big-endian header by hand.
fn decode_asset(stem: &str) -> (u32, Vec<u32>, Vec<u8>) {
    let bytes = gunzip(&std::fs::read(assets_subset_dir().join(format!("{stem}.gz"))).unwrap());
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    let magic = word(0);
    let ndims = (magic & 0xff) as usize;
    let dims: Vec<u32> = (1..=ndims).map(word).collect();
    (magic, dims, bytes[4 + 4 * ndims..].to_vec())
}

// ---- the assets subset ---------------------------------------------------------------

#[test]
fn assets_subset_loads_with_verified_checksums_and_matches_an_independent_decode() {
    let m = load_assets_subset().expect("the assets subset should load");
    assert_eq!((m.train.count, m.test.count), (2000, 1000));
    assert_eq!(m.train.images.len(), 2000 * 784);
    assert_eq!(m.test.images.len(), 1000 * 784);
    assert_eq!((m.train.labels.len(), m.test.labels.len()), (2000, 1000));
    assert!(
        m.report.files.iter().all(|f| f.md5_checked),
        "every file's md5 should be checked: {:?}",
        m.report.files
    );

    // The first labels of MNIST (read once from the original files): train starts 5 0 4 1 9,
    // test starts 7 2 1 0 4.
    assert_eq!(m.train.labels[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(m.test.labels[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);

    // Cross-check everything against the independent decode.
    for (stem, want_magic, want_dims, got) in [
        (TRAIN_IMAGES, 2051, vec![2000, 28, 28], &m.train.images),
        (TRAIN_LABELS, 2049, vec![2000], &m.train.labels),
        (TEST_IMAGES, 2051, vec![1000, 28, 28], &m.test.images),
        (TEST_LABELS, 2049, vec![1000], &m.test.labels),
    ] {
        let (magic, dims, data) = decode_asset(stem);
        assert_eq!((magic, &dims), (want_magic, &want_dims), "{stem} header");
        assert!(
            data == *got,
            "{stem}: loaded data differs from the independent decode"
        );
    }

    // Pixels: the full 0..=255 range is used, and every image has some ink.
    for split in [&m.train, &m.test] {
        assert_eq!(split.images.iter().min(), Some(&0));
        assert_eq!(split.images.iter().max(), Some(&255));
        for i in 0..split.count {
            assert!(
                split.image(i).iter().any(|&p| p > 0),
                "image {i} is all zero"
            );
        }
        // All ten classes occur, and only those.
        let mut seen = [0usize; 10];
        for &l in &split.labels {
            seen[l as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 0), "label histogram {seen:?}");
    }
}

#[test]
fn report_states_counts_and_verified_checksums() {
    let m = load_assets_subset().unwrap();
    let text = m.report.to_string();
    assert_mentions(
        &text,
        &[
            "2,000 images",
            "1,000 images",
            "checksums verified: all 4",
            "294fd329ff7cac24b682d047b71117e9",
        ],
    );
}

#[test]
fn md5_helper_matches_known_digests() {
    // RFC 1321 test vectors.
    assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
}

#[test]
fn raw_idx_files_load_like_gzipped_ones() {
    let dir = temp_dir("raw");
    for stem in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
        let raw = gunzip(&std::fs::read(assets_subset_dir().join(format!("{stem}.gz"))).unwrap());
        std::fs::write(dir.join(stem), raw).unwrap();
    }
    let raw =
        load_with(&dir, &MNIST_SUBSET).expect("raw IDX files should load with checksums verified");
    let gz = load_assets_subset().unwrap();
    assert!(raw.train.images == gz.train.images && raw.test.labels == gz.test.labels);
    assert!(raw
        .report
        .files
        .iter()
        .all(|f| !f.was_gzip && f.md5_checked));
}

// ---- bad input: one test per class ---------------------------------------------------

#[test]
fn missing_files_name_the_directory_and_the_files() {
    let dir = temp_dir("missing");
    write_gz(&dir, TRAIN_IMAGES, &good_images(3));
    let msg = load_error(&dir, &MNIST);
    assert_mentions(
        &msg,
        &[
            &dir.display().to_string(),
            TRAIN_LABELS,
            TEST_IMAGES,
            TEST_LABELS,
            "wgsl-cnn data",
        ],
    );
}

#[test]
fn truncated_gzip_is_reported() {
    let dir = temp_dir("truncated-gz");
    write_good_set(&dir);
    let gz_bytes = gz(&good_images(12));
    let path = dir.join(format!("{TRAIN_IMAGES}.gz"));
    std::fs::write(&path, &gz_bytes[..gz_bytes.len() / 2]).unwrap();
    let msg = load_error(&dir, &MNIST.unchecked());
    assert_mentions(
        &msg,
        &[&path.display().to_string(), "gzip data is truncated"],
    );
}

#[test]
fn corrupt_gzip_is_reported() {
    let dir = temp_dir("corrupt-gz");
    write_good_set(&dir);
    let mut gz_bytes = gz(&good_labels(9));
    // Keep the 10-byte gzip header intact, garble the compressed stream.
    for b in &mut gz_bytes[10..] {
        *b ^= 0x5a;
    }
    let path = dir.join(format!("{TEST_LABELS}.gz"));
    std::fs::write(&path, &gz_bytes).unwrap();
    let msg = load_error(&dir, &MNIST.unchecked());
    assert_mentions(&msg, &[&path.display().to_string(), "gzip data is corrupt"]);
}

#[test]
fn wrong_magic_is_reported() {
    let dir = temp_dir("magic");
    write_good_set(&dir);
    let path = write_gz(&dir, TEST_IMAGES, &images_idx(2049, 9, 28, 28, 9 * 784));
    let msg = load_error(&dir, &MNIST.unchecked());
    assert_mentions(
        &msg,
        &[
            &path.display().to_string(),
            "wrong magic number 2049",
            "expected 2051",
        ],
    );
}

#[test]
fn wrong_dimensions_are_reported() {
    let dir = temp_dir("dims");
    write_good_set(&dir);
    let path = write_gz(&dir, TEST_IMAGES, &images_idx(2051, 9, 32, 32, 9 * 32 * 32));
    let msg = load_error(&dir, &MNIST.unchecked());
    assert_mentions(
        &msg,
        &[
            &path.display().to_string(),
            "images are 32×32, expected 28×28",
        ],
    );
}

#[test]
fn wrong_length_is_reported_both_short_and_long() {
    let dir = temp_dir("length");
    write_good_set(&dir);
    // One pixel byte short of what the header promises.
    let path = write_gz(
        &dir,
        TRAIN_IMAGES,
        &images_idx(2051, 12, 28, 28, 12 * 784 - 1),
    );
    let msg = load_error(&dir, &MNIST.unchecked());
    assert_mentions(
        &msg,
        &[
            &path.display().to_string(),
            "wrong length",
            "1 bytes missing",
        ],
    );
    // Three label bytes more than the header says.
    write_gz(&dir, TRAIN_IMAGES, &good_images(12));
    let path = write_gz(&dir, TRAIN_LABELS, &labels_idx(2049, 12, &[1; 15]));
    let msg = load_error(&dir, &MNIST.unchecked());
    assert_mentions(
        &msg,
        &[
            &path.display().to_string(),
            "wrong length",
            "3 bytes too many",
        ],
    );
}

#[test]
fn mismatched_image_and_label_counts_are_reported() {
    let dir = temp_dir("counts");
    write_good_set(&dir);
    let labels = write_gz(&dir, TRAIN_LABELS, &good_labels(11));
    let images = dir.join(format!("{TRAIN_IMAGES}.gz"));
    let msg = load_error(&dir, &MNIST.unchecked());
    assert_mentions(
        &msg,
        &[
            "count mismatch",
            &images.display().to_string(),
            "12 images",
            &labels.display().to_string(),
            "11 labels",
        ],
    );
}

#[test]
fn out_of_range_label_is_reported_with_its_index() {
    let dir = temp_dir("label");
    write_good_set(&dir);
    let mut labels: Vec<u8> = (0..12).map(|i| i % 10).collect();
    labels[7] = 11;
    let path = write_gz(&dir, TRAIN_LABELS, &labels_idx(2049, 12, &labels));
    let msg = load_error(&dir, &MNIST.unchecked());
    assert_mentions(&msg, &[&path.display().to_string(), "label 11 at index 7"]);
}

#[test]
fn checksum_mismatch_is_reported() {
    // The real subset files, but a spec expecting another md5 for the test labels.
    let mut spec = MNIST_SUBSET;
    spec.test.labels.md5 = Some("0123456789abcdef0123456789abcdef");
    let msg = match load_with(&assets_subset_dir(), &spec) {
        Ok(_) => panic!("a wrong md5 in the spec must fail the load"),
        Err(e) => format!("{e:#}"),
    };
    let path = assets_subset_dir().join(format!("{TEST_LABELS}.gz"));
    assert_mentions(
        &msg,
        &[
            &path.display().to_string(),
            "checksum mismatch",
            "556860b2f10365a8f7444c1e79c7e9af", // what the file has
            "0123456789abcdef0123456789abcdef", // what was expected
        ],
    );
}

#[test]
fn subset_files_are_rejected_as_full_mnist() {
    // Valid IDX files with the wrong number of examples for the spec.
    let msg = load_error(&assets_subset_dir(), &MNIST);
    assert_mentions(&msg, &[TRAIN_IMAGES, "holds 2000 images, expected 60000"]);
}

#[test]
fn empty_and_tiny_files_are_reported() {
    let dir = temp_dir("tiny");
    write_good_set(&dir);
    let path = dir.join(TEST_LABELS); // raw name is preferred over .gz
    std::fs::write(&path, b"").unwrap();
    assert_mentions(
        &load_error(&dir, &MNIST.unchecked()),
        &[&path.display().to_string(), "empty"],
    );
    std::fs::write(&path, [0, 0, 8]).unwrap();
    assert_mentions(
        &load_error(&dir, &MNIST.unchecked()),
        &[&path.display().to_string(), "too short"],
    );
}
