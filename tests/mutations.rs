//! Issue 10: a few hundred seeded mutations of IDX files and of a checkpoint and its
//! optimizer file go through the real loaders: no panic, no hang, an error naming the file,
//! and bounded memory, also on gzip bombs and huge sparse files. One test in this binary, so
//! that the process's peak memory (VmHWM) is this test's. Replay with the printed
//! WGSL_CNN_TEST_SEED.

mod common;

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{base_seed, temp_dir};
use wgsl_cnn::checkpoint::optimizer_path;
use wgsl_cnn::data::spec::{TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
use wgsl_cnn::data::{assets_subset_dir, load};
use wgsl_cnn::model::{state, zoo, Model};
use wgsl_cnn::reference::Cpu;
use wgsl_cnn::rng::Rng;

const IDX_CASES: usize = 240;
const CHECKPOINT_CASES: usize = 200;
const TEST_COUNT: usize = 50;

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(b), &mut out).unwrap();
    out
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0.0);
    kib / 1024.0
}

#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    clean_errors: usize,
    accepted: usize,
    panics: usize,
    slowest: Duration,
}

impl Tally {
    /// Runs one case: it must not panic, must end within 5 s, and an error must name one of `files`.
    fn run(&mut self, what: &str, files: &[&Path], f: impl FnOnce() -> anyhow::Result<()>) {
        self.cases += 1;
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(f));
        let took = started.elapsed();
        self.slowest = self.slowest.max(took);
        assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
        match result {
            Err(_) => {
                self.panics += 1;
                eprintln!("PANIC on {what}");
            }
            Ok(Ok(())) => self.accepted += 1,
            Ok(Err(e)) => {
                let msg = format!("{e:#}");
                assert!(files.iter().any(|f| msg.contains(&f.display().to_string())), "{what}: the error names no file: {msg}");
                self.clean_errors += 1;
            }
        }
    }
}

/// One random mutation of an IDX file's decompressed bytes.
fn mutate_idx(rng: &mut Rng, mut b: Vec<u8>, header: usize) -> (String, Vec<u8>) {
    let put = |b: &mut Vec<u8>, at: usize, v: u32| {
        if b.len() >= at + 4 {
            b[at..at + 4].copy_from_slice(&v.to_be_bytes());
        }
    };
    let kind = rng.below(8);
    let what = match kind {
        0 => {
            let n = rng.below(b.len());
            b.truncate(n);
            format!("truncated to {n}")
        }
        1 => {
            for _ in 0..1 + rng.below(8) {
                let i = if rng.below(2) == 0 { rng.below(header) } else { rng.below(b.len()) };
                b[i] ^= 1 << rng.below(8);
            }
            "flipped bits".into()
        }
        2 => {
            let v = [u32::MAX, 1_000_001, TEST_COUNT as u32 + 1, TEST_COUNT as u32 - 1, 0, rng.next_u64() as u32][rng.below(6)];
            put(&mut b, 4, v);
            format!("count {v}")
        }
        3 if header == 16 => {
            let v = [0, 1, 27, 29, u32::MAX, rng.next_u64() as u32][rng.below(6)];
            put(&mut b, 8 + 4 * rng.below(2), v);
            format!("dimension {v}")
        }
        4 => {
            let v = [2049, 2051, 2052, 0, rng.next_u64() as u32][rng.below(5)];
            put(&mut b, 0, v);
            format!("magic {v}")
        }
        5 => {
            let n = 1 + rng.below(5000);
            b.extend((0..n).map(|_| rng.below(256) as u8));
            format!("{n} bytes appended")
        }
        6 if header == 8 => {
            let i = header + rng.below(b.len() - header);
            b[i] = 10 + rng.below(246) as u8;
            "label out of range".into()
        }
        _ => {
            b.truncate(rng.below(header + 1));
            "header cut".into()
        }
    };
    (what, b)
}

/// A data directory: the subset's train files (raw, for speed) and a 50-example test split.
fn data_dir(root: &Path) -> (PathBuf, Vec<u8>, Vec<u8>) {
    let dir = root.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    for stem in [TRAIN_IMAGES, TRAIN_LABELS] {
        let raw = gunzip(&std::fs::read(assets_subset_dir().join(format!("{stem}.gz"))).unwrap());
        std::fs::write(dir.join(stem), raw).unwrap();
    }
    let images = gunzip(&std::fs::read(assets_subset_dir().join(format!("{TEST_IMAGES}.gz"))).unwrap());
    let labels = gunzip(&std::fs::read(assets_subset_dir().join(format!("{TEST_LABELS}.gz"))).unwrap());
    let mut img = images[..16 + TEST_COUNT * 784].to_vec();
    img[4..8].copy_from_slice(&(TEST_COUNT as u32).to_be_bytes());
    let mut lab = labels[..8 + TEST_COUNT].to_vec();
    lab[4..8].copy_from_slice(&(TEST_COUNT as u32).to_be_bytes());
    (dir, img, lab)
}

fn write_test_split(dir: &Path, img: &[u8], lab: &[u8], gz: [bool; 2]) -> [PathBuf; 2] {
    let mut out = Vec::new();
    for (stem, bytes, z) in [(TEST_IMAGES, img, gz[0]), (TEST_LABELS, lab, gz[1])] {
        for name in [stem.to_string(), format!("{stem}.gz")] {
            let _ = std::fs::remove_file(dir.join(name));
        }
        let path = if z { dir.join(format!("{stem}.gz")) } else { dir.join(stem) };
        std::fs::write(&path, if z { gzip(bytes) } else { bytes.to_vec() }).unwrap();
        out.push(path);
    }
    [out[0].clone(), out[1].clone()]
}

/// Splits a safetensors file into (header JSON, data).
fn split_st(b: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&b[8..8 + n]).unwrap(), b[8 + n..].to_vec())
}

fn join_st(h: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let j = serde_json::to_vec(h).unwrap();
    let mut out = (j.len() as u64).to_le_bytes().to_vec();
    out.extend(j);
    out.extend(data);
    out
}

/// One random mutation of a safetensors file.
fn mutate_st(rng: &mut Rng, b: &[u8]) -> (String, Vec<u8>) {
    let (mut h, mut data) = split_st(b);
    let names: Vec<String> = h.as_object().unwrap().keys().filter(|k| *k != "__metadata__").cloned().collect();
    let name = names[rng.below(names.len())].clone();
    let huge = [u64::MAX, u32::MAX as u64, 1 << 40, rng.next_u64() >> rng.below(64)];
    let what = match rng.below(10) {
        0 => {
            let mut b = b.to_vec();
            let n = rng.below(b.len());
            b.truncate(n);
            return (format!("truncated to {n}"), b);
        }
        1 => {
            let mut b = b.to_vec();
            let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
            for _ in 0..1 + rng.below(6) {
                let i = if rng.below(2) == 0 { rng.below(8 + n) } else { rng.below(b.len()) };
                b[i] ^= 1 << rng.below(8);
            }
            return ("flipped bits".into(), b);
        }
        2 => {
            let mut b = b.to_vec();
            let v = huge[rng.below(4)];
            b[..8].copy_from_slice(&v.to_le_bytes());
            return (format!("header length {v}"), b);
        }
        3 => {
            let d = ["F64", "I64", "F32", "BF16", "U8", "BOOL", "nonsense"][rng.below(7)];
            h[&name]["dtype"] = d.into();
            format!("{name} dtype {d}")
        }
        4 => {
            let v = [0, 1, huge[rng.below(4)]][rng.below(3)];
            let shape = h[&name]["shape"].as_array().cloned().unwrap_or_default();
            let mut shape: Vec<serde_json::Value> = shape;
            if shape.is_empty() || rng.below(3) == 0 {
                shape.push(v.into());
            } else {
                let i = rng.below(shape.len());
                shape[i] = v.into();
            }
            h[&name]["shape"] = shape.into();
            format!("{name} shape")
        }
        5 => {
            let i = rng.below(2);
            let v = huge[rng.below(4)];
            h[&name]["data_offsets"][i] = v.into();
            format!("{name} offset {v}")
        }
        6 => {
            let key = ["adam_step", "epoch", "save_id", "model", "format"][rng.below(5)];
            let v = ["-1", "4294967295", "18446744073709551616", "1e9", "", "lenet5", "tied", "0", "NaN"][rng.below(9)];
            h["__metadata__"][key] = v.into();
            format!("metadata {key}={v}")
        }
        7 => {
            // A float of one tensor set to NaN, infinity or a negative number.
            let off = h[&name]["data_offsets"][0].as_u64().unwrap() as usize;
            let end = h[&name]["data_offsets"][1].as_u64().unwrap() as usize;
            let v = [f32::NAN, f32::INFINITY, -1.0, -1e30][rng.below(4)];
            if end >= off + 4 {
                let at = off + 4 * rng.below((end - off) / 4);
                data[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
            format!("{name} value {v}")
        }
        8 => {
            let n = 1 + rng.below(4096);
            data.extend((0..n).map(|_| rng.below(256) as u8));
            format!("{n} bytes appended")
        }
        _ => {
            let obj = h.as_object_mut().unwrap();
            obj.remove(&name);
            format!("{name} removed")
        }
    };
    (what, join_st(&h, &data))
}

/// Concatenated gzip members of zeros: `members` × 16 MiB decompressed from a few KiB each.
fn zero_bomb(header: &[u8], members: usize) -> Vec<u8> {
    let mut out = gzip(header);
    let member = gzip(&vec![0u8; 16 << 20]);
    for _ in 0..members {
        out.extend_from_slice(&member);
    }
    out
}

#[test]
fn mutated_files_give_clean_errors_with_bounded_memory() {
    let seed = base_seed() ^ 0x1D5_F00D;
    let mut rng = Rng::new(seed);
    let root = temp_dir("mutations", "all");
    let (dir, img, lab) = data_dir(&root);
    let mut idx = Tally::default();
    for case in 0..IDX_CASES {
        let images = rng.below(2) == 0;
        let (what, bytes) = if images { mutate_idx(&mut rng, img.clone(), 16) } else { mutate_idx(&mut rng, lab.clone(), 8) };
        let gz = [rng.below(2) == 0, rng.below(2) == 0];
        let files = if images { write_test_split(&dir, &bytes, &lab, gz) } else { write_test_split(&dir, &img, &bytes, gz) };
        let label = format!("IDX case {case} ({}, {what}, gz {gz:?})", if images { "images" } else { "labels" });
        idx.run(&label, &[&files[0], &files[1]], || {
            let m = load(&dir)?;
            assert_eq!(m.test.images.len(), m.test.count * 784);
            assert_eq!(m.test.labels.len(), m.test.count);
            assert!(m.test.labels.iter().all(|&l| l <= 9));
            Ok(())
        });
    }
    eprintln!("IDX mutations: {idx:?}");

    let ck = root.join("m.safetensors");
    let opath = optimizer_path(&ck);
    {
        let be = &mut Cpu::default();
        let model = Model::new(be, &zoo::mlp(), 1, seed).unwrap();
        pollster::block_on(state::save_training(be, &model, &ck, 1, &[])).unwrap();
    }
    let (good_model, good_optim) = (std::fs::read(&ck).unwrap(), std::fs::read(&opath).unwrap());
    let mut st = Tally::default();
    for case in 0..CHECKPOINT_CASES {
        std::fs::write(&ck, &good_model).unwrap();
        std::fs::write(&opath, &good_optim).unwrap();
        let (target, good) = if rng.below(2) == 0 { (&ck, &good_model) } else { (&opath, &good_optim) };
        let (what, bytes) = mutate_st(&mut rng, good);
        std::fs::write(target, bytes).unwrap();
        st.run(&format!("checkpoint case {case} ({}, {what})", target.display()), &[&ck, &opath], || {
            state::load_training(&mut Cpu::default(), &ck, None, 1).map(|_| ())
        });
    }
    eprintln!("checkpoint mutations: {st:?}");

    // Bombs: 1 GiB of zeros behind a valid header, a header claiming 4 G images, a sparse
    // 8 GiB raw file, a sparse 8 GiB checkpoint, a checkpoint that is /dev/zero.
    let mut bombs = Tally::default();
    let before = peak_rss_mib();
    let header = |count: u32| {
        let mut h = 2051u32.to_be_bytes().to_vec();
        for v in [count, 28, 28] {
            h.extend(v.to_be_bytes());
        }
        h
    };
    std::fs::write(dir.join(TEST_LABELS), &lab).unwrap();
    for (name, count, members) in [("bomb: 60,000 images promised, 1 GiB sent", 60_000, 64), ("bomb claiming 4 G images", u32::MAX - 1, 8)] {
        let files = write_test_split(&dir, &img, &lab, [true, false]);
        std::fs::write(&files[0], zero_bomb(&header(count), members)).unwrap();
        eprintln!("{name}: {} bytes of gzip", std::fs::metadata(&files[0]).unwrap().len());
        bombs.run(name, &[&files[0]], || load(&dir).map(|_| ()));
    }
    let files = write_test_split(&dir, &img, &lab, [false, false]);
    std::fs::File::options().write(true).open(&files[0]).unwrap().set_len(8 << 30).unwrap();
    bombs.run("sparse 8 GiB raw IDX", &[&files[0]], || load(&dir).map(|_| ()));
    std::fs::write(&ck, &good_model).unwrap();
    std::fs::write(&opath, &good_optim).unwrap();
    std::fs::File::options().write(true).open(&ck).unwrap().set_len(8 << 30).unwrap();
    bombs.run("sparse 8 GiB checkpoint", &[&ck], || state::load_training(&mut Cpu::default(), &ck, None, 1).map(|_| ()));
    std::fs::remove_file(&ck).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &ck).unwrap();
    bombs.run("checkpoint -> /dev/zero", &[&ck], || state::load_training(&mut Cpu::default(), &ck, None, 1).map(|_| ()));
    let peak = peak_rss_mib();
    eprintln!("bombs: {bombs:?}; peak memory {peak:.0} MiB (before the bombs {before:.0} MiB)");

    assert_eq!(idx.panics + st.panics + bombs.panics, 0, "panics (replay with the WGSL_CNN_TEST_SEED printed above)");
    assert_eq!(bombs.clean_errors, bombs.cases, "every bomb is refused");
    assert!(idx.clean_errors > IDX_CASES / 2 && st.clean_errors > CHECKPOINT_CASES / 2, "most mutations must be caught");
    assert!(peak < 400.0, "peak memory {peak:.0} MiB");
}
