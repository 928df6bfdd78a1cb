//! `predict` with a LeNet-5 trained here on the offline subset (GPU): 28×28 PNGs of test
//! digits get exactly the classes of eval's forward; the same digits ×4, dark on light,
//! mostly the same class; bad files get their own errors; the CLI on both backends.

mod common;
use std::path::{Path, PathBuf};
use std::process::Command;

use image::{GrayImage, Luma};
use wgsl_cnn::backend::Backend;
use wgsl_cnn::data::Split;
use wgsl_cnn::gpu::{AdapterChoice, Gpu};
use wgsl_cnn::model::{state, Model};
use wgsl_cnn::predict::{collect_inputs, predict_files, Outcome};
use wgsl_cnn::reference::reduce::argmax;
use wgsl_cnn::train::{self, TrainConfig};

const N: usize = 100;

fn gpu() -> Gpu {
    Gpu::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"))
}

/// eval's path: the images uploaded as a data set, gathered on the device, eval forward.
fn eval_classes<B: Backend + 'static>(be: &mut B, model: &mut Model<B>, split: &Split) -> Vec<usize> {
    let (ds, n) = train::upload(be, split, None);
    let order = be.index(n);
    be.write_index(&order, &(0..n as u32).collect::<Vec<_>>());
    let mut classes = Vec::new();
    for offset in (0..n).step_by(model.capacity) {
        let nb = model.capacity.min(n - offset);
        model.gather_batch(be, &ds, &order, offset, nb);
        model.forward(be, nb, false);
        classes.extend(pollster::block_on(model.read_logits(be, nb)).chunks(10).map(argmax));
    }
    classes
}

fn classes_of(outcomes: &[Outcome]) -> Vec<usize> {
    outcomes
        .iter()
        .map(|o| match o {
            Outcome::Predicted { class, .. } => *class,
            Outcome::Failed(e) => panic!("a good file failed: {e}"),
        })
        .collect()
}

fn write_digits(dir: &Path, split: &Split, scale: u32, dark_on_light: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..N {
        let img = split.image(i);
        let s = 28 * scale;
        let out = GrayImage::from_fn(s, s, |x, y| {
            let v = img[((y / scale) * 28 + x / scale) as usize];
            Luma([if dark_on_light { 255 - v } else { v }])
        });
        out.save(dir.join(format!("{i:03}.png"))).unwrap();
    }
}

/// A BMP header claiming 100,000 × 100,000 pixels (no pixel data follows).
fn bomb_bmp() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(b"BM");
    b.extend(&(54u32 + 3).to_le_bytes());
    b.extend(&[0; 4]);
    b.extend(&54u32.to_le_bytes());
    b.extend(&40u32.to_le_bytes());
    b.extend(&100_000i32.to_le_bytes());
    b.extend(&100_000i32.to_le_bytes());
    b.extend(&1u16.to_le_bytes());
    b.extend(&24u16.to_le_bytes());
    b.extend(&[0; 24]);
    b.extend(&[0; 3]);
    b
}

#[test]
fn predict_matches_eval_survives_enlargement_and_isolates_bad_files() {
    let seed = common::base_seed() % 1000;
    let dir = common::temp_dir("predict", "all");
    let data = wgsl_cnn::data::load_assets_subset().unwrap();
    let ckpt = dir.join("model.safetensors");
    let cfg = TrainConfig { epochs: 2, batch_size: 50, seed, save: Some(ckpt.clone()), log_every: 1000, progress: false, plots: false, ..TrainConfig::default() };
    let be = &mut gpu();
    let acc = train::train(be, &data, &cfg).unwrap().last().unwrap().accuracy();
    eprintln!("lenet5, 2 epochs on the 2,000-image subset (seed {seed}): {acc:.2} % on its 1,000 test images");

    let first = Split { images: data.test.images[..N * 784].to_vec(), labels: data.test.labels[..N].to_vec(), count: N };
    let mut model = state::load_model(be, &ckpt, None, 32).unwrap();
    let want = eval_classes(be, &mut model, &first);

    // 28×28 PNGs: taken as they are, so exactly eval's classes.
    let plain = dir.join("plain");
    write_digits(&plain, &first, 1, false);
    let files = collect_inputs(std::slice::from_ref(&plain));
    assert_eq!(files.len(), N);
    let got = classes_of(&pollster::block_on(predict_files(be, &mut model, &files)));
    assert_eq!(got, want, "predict on 28×28 PNGs vs eval's forward (seed {seed})");

    // ×4, dark ink on white: inverted, cropped, scaled back to 20 px, centred.
    let big = dir.join("big");
    write_digits(&big, &first, 4, true);
    let got = classes_of(&pollster::block_on(predict_files(be, &mut model, &collect_inputs(&[big]))));
    let same = got.iter().zip(&want).filter(|(a, b)| a == b).count();
    let right = got.iter().zip(&first.labels).filter(|(a, &b)| **a == b as usize).count();
    eprintln!("×4 dark-on-light: {same}/100 predicted as the 28×28 originals ({right}/100 match the labels; seed {seed})");
    assert!(same >= 90, "×4 dark-on-light: only {same}/100 as the originals (seed {seed})");

    // Bad files, each with its own error, between good ones.
    let bad = dir.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(plain.join("000.png"), bad.join("a_good.png")).unwrap();
    std::fs::write(bad.join("b_empty.png"), b"").unwrap();
    std::fs::write(bad.join("c_text.png"), b"this is not a picture\n").unwrap();
    std::fs::write(bad.join("d_bomb.bmp"), bomb_bmp()).unwrap();
    GrayImage::from_pixel(60, 40, Luma([250])).save(bad.join("e_blank.png")).unwrap();
    let png = std::fs::read(plain.join("001.png")).unwrap();
    std::fs::write(bad.join("f_truncated.png"), &png[..png.len() / 2]).unwrap();
    std::fs::copy(plain.join("002.png"), bad.join("g_good.png")).unwrap();
    let files = collect_inputs(&[bad.clone(), dir.join("missing.png")]);
    let outcomes = pollster::block_on(predict_files(be, &mut model, &files));
    let expect = [None, Some("empty"), Some("not an image"), Some("too large"), Some("no ink"), Some("cannot decode"), None, Some("cannot read")];
    assert_eq!(outcomes.len(), expect.len());
    for (((path, _), o), e) in files.iter().zip(&outcomes).zip(expect) {
        match (o, e) {
            (Outcome::Predicted { class, .. }, None) => {
                let i = if path.ends_with("a_good.png") { 0 } else { 2 };
                assert_eq!(*class, want[i], "{}", path.display());
            }
            (Outcome::Failed(msg), Some(e)) => assert!(msg.contains(e), "{}: {msg:?} lacks {e:?}", path.display()),
            (Outcome::Predicted { .. }, Some(e)) => panic!("{} was predicted, expected an error with {e:?}", path.display()),
            (Outcome::Failed(msg), None) => panic!("{} failed: {msg}", path.display()),
        }
    }

    // The CLI, on both backends: a line per good file, an error line per bad one, exit 1.
    let cli = |backend: &str, inputs: &[PathBuf], json: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wgsl-cnn"));
        c.args(["--backend", backend, "predict", "--checkpoint"]).arg(&ckpt).args(inputs);
        c.env("WGSL_CNN_CACHE_DIR", ckpt.with_file_name("autotune"));
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let few: Vec<PathBuf> = (0..3).map(|i| plain.join(format!("{i:03}.png"))).collect();
    for backend in ["gpu", "cpu"] {
        let out = cli(backend, &few, true);
        assert!(out.status.success(), "{backend}: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let classes: Vec<usize> = stdout.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["class"].as_u64().unwrap() as usize).collect();
        assert_eq!(classes, want[..3], "{backend} --json: {stdout}");
    }
    let out = cli("gpu", &[bad], false);
    assert_eq!(out.status.code(), Some(1), "bad files make the exit code 1");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().count(), 2, "two good files: {stdout}");
    assert!(stdout.contains("top 3"), "{stdout}");
    assert_eq!(stderr.lines().filter(|l| l.contains(": error: ")).count(), 5, "five bad files: {stderr}");
    assert!(stderr.contains("5 of 7 files could not be predicted"), "{stderr}");
}

/// Preparation without a model: a 28×28 digit is taken as it is, and inverted back when it
/// is dark on light; pictures of other sizes come out 28×28 with the ink centred.
#[test]
fn preparation_keeps_28_by_28_digits_and_centres_larger_ones() {
    let data = wgsl_cnn::data::load_assets_subset().unwrap();
    for i in 0..20 {
        let digit = data.test.image(i).to_vec();
        let img = GrayImage::from_raw(28, 28, digit.clone()).unwrap();
        assert_eq!(wgsl_cnn::prepare::prepare(&img).unwrap(), digit, "test digit {i} as it is");
        let light = GrayImage::from_raw(28, 28, digit.iter().map(|v| 255 - v).collect()).unwrap();
        assert_eq!(wgsl_cnn::prepare::prepare(&light).unwrap(), digit, "test digit {i} dark on light");
    }
    // A dark square off-centre on white paper: 20 px wide, centred at (14, 14).
    let img = GrayImage::from_fn(90, 60, |x, y| Luma([if (10..30).contains(&x) && (5..25).contains(&y) { 0 } else { 255 }]));
    let out = wgsl_cnn::prepare::prepare(&img).unwrap();
    let (mut m, mut mx, mut my) = (0.0, 0.0, 0.0);
    for (q, &v) in out.iter().enumerate() {
        let v = v as f64;
        (m, mx, my) = (m + v, mx + v * ((q % 28) as f64 + 0.5), my + v * ((q / 28) as f64 + 0.5));
    }
    assert!((mx / m - 14.0).abs() <= 0.5 && (my / m - 14.0).abs() <= 0.5, "centre of mass ({}, {})", mx / m, my / m);
    let cols = (0..28).filter(|x| (0..28).any(|y| out[y * 28 + x] > 128)).count();
    assert!((19..=21).contains(&cols), "the square is {cols} px wide after scaling");
}
