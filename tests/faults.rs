//! Issue 10: hostile files and values give clean errors, never a panic or a hang (CPU only).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use common::temp_dir;
use wgsl_cnn::checkpoint::{self, optimizer_path};
use wgsl_cnn::data::spec::{MNIST, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
use wgsl_cnn::data::{assets_subset_dir, load};
use wgsl_cnn::model::{state, zoo, Model};
use wgsl_cnn::reference::Cpu;
use wgsl_cnn::train::{check_save_target, validate, TrainConfig};

fn err<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

fn assert_mentions(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(msg.contains(n), "message lacks {n:?}: {msg}");
    }
}

/// Runs `f` on a thread and fails the test if it takes over 10 s (a hang).
fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("hung for 10 s")
}

/// A fresh mlp training pair (model + optimizer file) at `path`, epoch 1.
fn save_pair(path: &Path, seed: u64) {
    let be = &mut Cpu::default();
    let model = Model::new(be, &zoo::mlp(), 1, seed).unwrap();
    pollster::block_on(state::save_training(be, &model, path, 1, &[("seed", seed.to_string())])).unwrap();
}

/// Rewrites one metadata key of a safetensors file (tensors kept).
fn set_meta(path: &Path, key: &str, value: &str) {
    let tensors = checkpoint::load_any(path).unwrap();
    let mut meta: BTreeMap<String, String> = checkpoint::load_metadata(path).unwrap();
    meta.insert(key.into(), value.into());
    checkpoint::save(path, &tensors, &meta).unwrap();
}

fn load_pair(path: &Path) -> anyhow::Result<usize> {
    let be = &mut Cpu::default();
    state::load_training(be, path, None, 1).map(|(_, e, _)| e)
}

#[test]
fn adam_step_and_epoch_out_of_range_are_errors_naming_file_and_key() {
    let dir = temp_dir("faults", "adam-step");
    let path = dir.join("m.safetensors");
    for (key, value) in [("adam_step", "4294967295"), ("adam_step", "4294967294"), ("epoch", "18446744073709551615"), ("adam_step", "-1")] {
        save_pair(&path, 1);
        for p in [path.clone(), optimizer_path(&path)] {
            set_meta(&p, key, value);
        }
        let msg = err(load_pair(&path));
        assert_mentions(&msg, &[&optimizer_path(&path).display().to_string(), key]);
    }
}

#[test]
fn negative_running_var_count_and_adam_v_are_refused() {
    let dir = temp_dir("faults", "negative");
    let path = dir.join("l.safetensors");
    let be = &mut Cpu::default();
    let model = Model::new(be, &zoo::lenet5(), 1, 0).unwrap();
    pollster::block_on(state::save_training(be, &model, &path, 1, &[])).unwrap();
    let meta = checkpoint::load_metadata(&path).unwrap();
    let good = checkpoint::load_any(&path).unwrap();
    let edit = |name: &str, f: &dyn Fn(&mut checkpoint::NamedTensor)| {
        let mut t = good.clone();
        f(t.iter_mut().find(|t| t.name == name).unwrap());
        checkpoint::save(&path, &t, &meta).unwrap();
    };
    edit("batchnorm1.running_var", &|t| {
        if let checkpoint::TensorData::F32(v) = &mut t.data {
            v[3] = -0.5;
        }
    });
    let msg = err(state::load_model(&mut Cpu::default(), &path, None, 1));
    assert_mentions(&msg, &[&path.display().to_string(), "batchnorm1.running_var", "-0.5", "at least 0"]);
    edit("batchnorm2.num_batches_tracked", &|t| t.data = checkpoint::TensorData::I64(vec![-7]));
    let msg = err(state::load_model(&mut Cpu::default(), &path, None, 1));
    assert_mentions(&msg, &[&path.display().to_string(), "num_batches_tracked", "-7"]);
    // Adam's v below zero in the optimizer file.
    checkpoint::save(&path, &good, &meta).unwrap();
    let opath = optimizer_path(&path);
    let mut moments = checkpoint::load_any(&opath).unwrap();
    let v = moments.iter_mut().find(|t| t.name.starts_with("adam.v.")).unwrap();
    if let checkpoint::TensorData::F32(x) = &mut v.data {
        x[0] = -1.0;
    }
    checkpoint::save(&opath, &moments, &checkpoint::load_metadata(&opath).unwrap()).unwrap();
    let msg = err(state::load_training(&mut Cpu::default(), &path, None, 1));
    assert_mentions(&msg, &[&opath.display().to_string(), "adam.v."]);
}

#[test]
fn an_optimizer_file_of_another_run_is_not_a_pair() {
    let dir = temp_dir("faults", "other-run");
    let (a, b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    save_pair(&a, 1);
    save_pair(&b, 2); // same model, epoch and Adam step: only the save_id differs
    std::fs::copy(optimizer_path(&b), optimizer_path(&a)).unwrap();
    let msg = err(load_pair(&a));
    assert_mentions(&msg, &["save_id", "different saves"]);
}

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo runs").success();
    assert!(ok, "mkfifo {} failed", path.display());
}

#[test]
fn fifos_are_refused_not_opened() {
    let dir = temp_dir("faults", "fifo");
    // A checkpoint, an optimizer file and a data file that are FIFOs.
    let ck = dir.join("fifo.safetensors");
    mkfifo(&ck);
    let p = ck.clone();
    let msg = within_10s(move || err(state::load_model(&mut Cpu::default(), &p, None, 1)));
    assert_mentions(&msg, &[&ck.display().to_string(), "FIFO"]);

    let good = dir.join("m.safetensors");
    save_pair(&good, 0);
    std::fs::remove_file(optimizer_path(&good)).unwrap();
    mkfifo(&optimizer_path(&good));
    let p = good.clone();
    let msg = within_10s(move || err(load_pair(&p)));
    assert_mentions(&msg, &[&optimizer_path(&good).display().to_string(), "FIFO"]);

    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    for stem in [TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
        let name = format!("{stem}.gz");
        std::fs::copy(assets_subset_dir().join(&name), data.join(&name)).unwrap();
    }
    mkfifo(&data.join(TRAIN_IMAGES));
    let d = data.clone();
    let msg = within_10s(move || err(load(&d)));
    assert_mentions(&msg, &[&data.join(TRAIN_IMAGES).display().to_string(), "FIFO"]);
    // A symlink to a regular file is fine.
    std::fs::remove_file(data.join(TRAIN_IMAGES)).unwrap();
    std::os::unix::fs::symlink(assets_subset_dir().join(format!("{TRAIN_IMAGES}.gz")), data.join(format!("{TRAIN_IMAGES}.gz"))).unwrap();
    assert_eq!(load(&data).unwrap().train.count, 2000);
}

#[test]
fn devices_are_refused() {
    let dir = temp_dir("faults", "dev-zero");
    let ck = dir.join("zero.safetensors");
    std::os::unix::fs::symlink("/dev/zero", &ck).unwrap();
    let p = ck.clone();
    let msg = within_10s(move || err(checkpoint::load_any(&p)));
    assert_mentions(&msg, &[&ck.display().to_string(), "device"]);
}

#[test]
fn the_shipped_subset_is_a_data_directory() {
    let m = load(&assets_subset_dir()).unwrap();
    assert_eq!((m.train.count, m.test.count), (2000, 1000));
    assert!(m.report.files.iter().all(|f| f.md5_checked), "IDX-MD5SUMS is checked");
    let text = m.report.to_string();
    assert_mentions(&text, &["not the official MNIST", "IDX-MD5SUMS verified"]);
    // Its own list is enforced: a wrong md5 in it fails the load.
    let dir = temp_dir("faults", "own-list");
    for stem in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
        let name = format!("{stem}.gz");
        std::fs::copy(assets_subset_dir().join(&name), dir.join(&name)).unwrap();
    }
    let list = std::fs::read_to_string(assets_subset_dir().join("IDX-MD5SUMS")).unwrap();
    std::fs::write(dir.join("IDX-MD5SUMS"), list.replace("556860b2f10365a8f7444c1e79c7e9af", "0123456789abcdef0123456789abcdef")).unwrap();
    assert_mentions(&err(load(&dir)), &[TEST_LABELS, "checksum mismatch", "IDX-MD5SUMS", "--repair"]);
    // Without a list it loads with a note and unverified md5s.
    std::fs::remove_file(dir.join("IDX-MD5SUMS")).unwrap();
    let m = load(&dir).unwrap();
    assert!(m.report.files.iter().all(|f| !f.md5_checked));
    assert!(m.report.to_string().contains("not the official MNIST"));
}

fn raw_idx(magic: u32, count: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    v.extend(count.to_be_bytes());
    if magic == 2051 {
        v.extend(28u32.to_be_bytes());
        v.extend(28u32.to_be_bytes());
    }
    v.extend(payload);
    v
}

#[test]
fn official_counts_still_need_the_official_md5() {
    // The test split with MNIST's 10,000 examples, all zero: the count is official, the
    // content is not, so the load fails (and says how to repair).
    let dir = temp_dir("faults", "official-count");
    for stem in [TRAIN_IMAGES, TRAIN_LABELS] {
        let name = format!("{stem}.gz");
        std::fs::copy(assets_subset_dir().join(&name), dir.join(&name)).unwrap();
    }
    std::fs::write(dir.join(TEST_IMAGES), raw_idx(2051, 10_000, &vec![0; 10_000 * 784])).unwrap();
    std::fs::write(dir.join(TEST_LABELS), raw_idx(2049, 10_000, &vec![0; 10_000])).unwrap();
    let msg = err(load(&dir));
    assert_mentions(&msg, &[TEST_IMAGES, "checksum mismatch", MNIST.test.images.md5.unwrap(), "wgsl-cnn data --repair"]);
}

#[test]
fn corrupt_data_files_name_the_repair_command() {
    let dir = temp_dir("faults", "repair-hint");
    for stem in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES] {
        let name = format!("{stem}.gz");
        std::fs::copy(assets_subset_dir().join(&name), dir.join(&name)).unwrap();
    }
    let gz = std::fs::read(assets_subset_dir().join(format!("{TEST_LABELS}.gz"))).unwrap();
    std::fs::write(dir.join(format!("{TEST_LABELS}.gz")), &gz[..gz.len() / 2]).unwrap();
    let msg = err(load(&dir));
    assert_mentions(&msg, &[TEST_LABELS, "truncated", &format!("wgsl-cnn data --repair --data-dir {}", dir.display())]);
    // --repair moves it aside (offline here: the download itself is tests/download.rs).
    let moved = wgsl_cnn::data::local::move_bad_files_aside(&dir, &MNIST).unwrap();
    assert_eq!(moved.len(), 1, "only the damaged file is moved: {moved:?}");
    assert!(!dir.join(format!("{TEST_LABELS}.gz")).exists());
    assert!(moved[0].file_name().unwrap().to_string_lossy().starts_with(&format!("{TEST_LABELS}.gz.bad-")));
}

#[test]
fn nonsense_settings_are_refused_with_what_is_allowed() {
    let base = TrainConfig { save: None, ..TrainConfig::default() };
    for (cfg, needle) in [
        (TrainConfig { lr: -1.0, ..base.clone() }, "--lr -1"),
        (TrainConfig { lr: f32::NAN, ..base.clone() }, "above 0"),
        (TrainConfig { lr: 0.0, ..base.clone() }, "above 0"),
        (TrainConfig { epochs: 0, ..base.clone() }, "--epochs must be at least 1"),
        (TrainConfig { batch_size: 0, ..base.clone() }, "--batch-size must be at least 1"),
        (TrainConfig { limit_train: Some(0), ..base.clone() }, "--limit-train"),
    ] {
        assert_mentions(&err(validate(&cfg)), &[needle]);
    }
    validate(&base).unwrap();
}

/// The optimizer flags as `OptimizerConfig::from_options` (the CLI's and the page's path) and
/// `validate` take them: PyTorch's rules, each error naming the flag.
#[test]
fn optimizer_settings_are_validated_as_pytorch_does() {
    use wgsl_cnn::shapes::{AdamConfig, OptimizerConfig, SgdConfig};
    let ok = |name: &str, lr: f32, mu: f32, damp: f32, nesterov: bool, wd: Option<f32>| OptimizerConfig::from_options(name, lr, mu, damp, nesterov, wd);
    // Defaults as PyTorch's: AdamW decays by 0.01 unless told, Adam and SGD not at all.
    assert_eq!(ok("adam", 1e-3, 0.0, 0.0, false, None), Ok(OptimizerConfig::Adam(AdamConfig::default())));
    assert_eq!(ok("adamw", 1e-3, 0.0, 0.0, false, None), Ok(OptimizerConfig::Adam(AdamConfig::adamw(1e-3))));
    assert_eq!(ok("adamw", 1e-3, 0.0, 0.0, false, Some(0.0)).unwrap().weight_decay(), 0.0);
    assert_eq!(
        ok("sgd", 0.1, 0.9, 0.0, true, Some(5e-4)),
        Ok(OptimizerConfig::Sgd(SgdConfig { lr: 0.1, momentum: 0.9, dampening: 0.0, nesterov: true, weight_decay: 5e-4 }))
    );
    for (r, needles) in [
        (ok("sgd", 0.1, 0.0, 0.0, true, None), &["--nesterov", "momentum above 0"][..]),
        (ok("sgd", 0.1, 0.9, 0.1, true, None), &["--nesterov", "zero dampening"]),
        (ok("sgd", 0.1, -0.9, 0.0, false, None), &["--momentum -0.9"]),
        (ok("sgd", 0.1, f32::INFINITY, 0.0, false, None), &["--momentum inf"]),
        (ok("sgd", 0.1, 0.9, f32::NAN, false, None), &["--dampening NaN"]),
        (ok("sgd", 0.1, 0.0, 0.0, false, Some(-1e-4)), &["--weight-decay -0.0001"]),
        (ok("adamw", 1e-3, 0.0, 0.0, false, Some(f32::NAN)), &["--weight-decay NaN"]),
        (ok("adam", 0.0, 0.0, 0.0, false, None), &["--lr 0", "above 0"]),
        (ok("adam", 1e-3, 0.9, 0.0, false, None), &["--momentum", "--optimizer sgd"]),
        (ok("adamw", 1e-3, 0.0, 0.5, false, None), &["--dampening", "--optimizer sgd"]),
        (ok("adam", 1e-3, 0.0, 0.0, true, None), &["--nesterov", "--optimizer sgd"]),
        (ok("rmsprop", 1e-3, 0.0, 0.0, false, None), &["rmsprop", "adam, adamw, sgd"]),
    ] {
        let msg = r.expect_err("refused");
        assert_mentions(&msg, needles);
    }
    // Through the trainer's validation (the page's options arrive there too).
    let bad = OptimizerConfig::Sgd(SgdConfig { nesterov: true, ..SgdConfig::default() });
    assert_mentions(&err(validate(&TrainConfig { save: None, optimizer: bad, ..TrainConfig::default() })), &["--nesterov"]);
}

/// The CLI refuses bad optimizer flags for `train` and `step` before reading any file.
#[test]
fn optimizer_flags_are_refused_before_any_work() {
    let dir = temp_dir("faults", "optimizer-flags");
    let missing = dir.join("missing");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wgsl-cnn"))
            .args(args)
            .args(["--data-dir", missing.to_str().unwrap()])
            .env("WGPU_BACKEND", "none-such")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let step = ["step", "--init", "a.safetensors", "--batch", "b.safetensors", "--out", "c.safetensors", "--backend", "cpu"];
    for (args, needles) in [
        (&["train", "--backend", "cpu", "--optimizer", "adam", "--momentum", "0.9"][..], &["--momentum is an option of --optimizer sgd"][..]),
        (&["train", "--backend", "cpu", "--optimizer", "sgd", "--nesterov"], &["--nesterov needs a momentum above 0"]),
        (&["train", "--backend", "cpu", "--optimizer", "sgd", "--momentum", "-1"], &["--momentum -1 is not allowed"]),
        (&["train", "--backend", "cpu", "--optimizer", "adamw", "--weight-decay", "-0.5"], &["--weight-decay -0.5 is not allowed"]),
        (&["train", "--backend", "cpu", "--optimizer", "rmsprop"], &["rmsprop", "adamw"]),
    ] {
        assert_mentions(&run(args), needles);
    }
    let mut bad_step: Vec<&str> = step.to_vec();
    bad_step.extend(["--optimizer", "sgd", "--momentum", "0.9", "--dampening", "0.5", "--nesterov"]);
    assert_mentions(&run(&bad_step), &["--nesterov", "zero dampening"]);
    let mut bad_step: Vec<&str> = step.to_vec();
    bad_step.extend(["--lr", "nan"]);
    assert_mentions(&run(&bad_step), &["--lr NaN"]);
}

#[test]
fn unwritable_save_targets_are_found_before_training() {
    let dir = temp_dir("faults", "save-target");
    assert_mentions(&err(check_save_target(Path::new("/"))), &["not a file name"]);
    assert_mentions(&err(check_save_target(&dir)), &["is a directory"]);
    let file = dir.join("plain");
    std::fs::write(&file, b"x").unwrap();
    assert_mentions(&err(check_save_target(&file.join("m.safetensors"))), &["cannot create"]);
    check_save_target(&dir.join("sub/m.safetensors")).unwrap();
    // No probe file is left behind.
    let left: Vec<PathBuf> = std::fs::read_dir(dir.join("sub")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A pid no process has (for temp files of "killed" processes).
fn dead_pid() -> u32 {
    (4_000_000..).find(|p| !Path::new(&format!("/proc/{p}")).exists()).unwrap()
}

#[test]
fn stale_temporary_files_of_dead_processes_are_removed() {
    let dir = temp_dir("faults", "stale");
    let path = dir.join("m.safetensors");
    let dead = dir.join(format!(".m.safetensors.tmp-{}", dead_pid()));
    let mine = dir.join(format!(".m.safetensors.tmp-{}", std::process::id()));
    let other = dir.join(format!(".other.safetensors.tmp-{}", dead_pid()));
    for p in [&dead, &mine, &other] {
        std::fs::write(p, b"partial").unwrap();
    }
    save_pair(&path, 0);
    assert!(!dead.exists(), "a dead process's temp file is removed");
    assert!(other.exists(), "another file's temp files are not touched");
    assert_eq!(load_pair(&path).unwrap(), 1);
}
