//! After training: the metrics file holds the printed numbers and `--resume` continues it
//! and the curves picture; the confusion matrix adds up and CPU and GPU count the same.

mod common;
use wgsl_cnn::gpu::{AdapterChoice, Gpu};
use wgsl_cnn::metrics::{paths_for, read};
use wgsl_cnn::mistakes::{evaluate_split_detailed, write_mistakes};
use wgsl_cnn::model::{state, zoo};
use wgsl_cnn::reference::Cpu;
use wgsl_cnn::train::{self, python_float, EpochReport, TrainConfig};

fn gpu() -> Gpu {
    Gpu::new(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The loss and accuracy records of a metrics file against the reports (what was printed:
/// the loss to 4 decimals, the accuracy as `python_float`).
fn check_against(records: &[wgsl_cnn::metrics::Record], reports: &[EpochReport], steps: usize, log_every: usize) {
    for rep in reports {
        let mine: Vec<_> = records.iter().filter(|r| r.epoch == rep.epoch).collect();
        let losses: Vec<String> = mine.iter().filter_map(|r| r.loss).map(|l| format!("{l:.4}")).collect();
        let printed: Vec<String> = rep.losses.iter().map(|l| format!("{l:.4}")).collect();
        assert_eq!(losses, printed, "epoch {}: the losses as printed", rep.epoch);
        let steps_logged: Vec<usize> = mine.iter().filter(|r| r.loss.is_some()).map(|r| r.step).collect();
        assert_eq!(steps_logged, (1..=steps / log_every).map(|k| k * log_every).collect::<Vec<_>>());
        let accs: Vec<_> = mine.iter().filter_map(|r| r.test_accuracy).collect();
        assert_eq!(accs.len(), 1, "one evaluation per epoch");
        assert_eq!(python_float(accs[0]), python_float(rep.accuracy()), "epoch {}: the accuracy as printed", rep.epoch);
        for r in &mine {
            assert_eq!(r.global_step, (r.epoch - 1) * steps + r.step);
            assert!(r.seconds > 0.0 && r.images_per_s > 0.0, "{r:?}");
        }
    }
}

fn svg_circles(path: &std::path::Path) -> usize {
    let svg = std::fs::read_to_string(path).unwrap();
    assert!(svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{} is not an SVG document", path.display());
    assert!(svg.contains("<polyline"), "the SVG has no curve");
    svg.matches("<circle").count()
}

#[test]
fn metrics_hold_the_printed_numbers_and_resume_continues_them() {
    let seed = common::base_seed() % 1000;
    let dir = common::temp_dir("metrics", "resume");
    let data = wgsl_cnn::data::load_assets_subset().unwrap();
    let ckpt = dir.join("model.safetensors");
    let (log_every, batch) = (10, 50);
    let steps = 2000 / batch;
    let cfg = TrainConfig {
        model: Some(zoo::mlp()),
        epochs: 1,
        batch_size: batch,
        seed,
        save: Some(ckpt.clone()),
        log_every,
        progress: false,
        ..TrainConfig::default()
    };
    let be = &mut gpu();
    let first = train::train(be, &data, &cfg).unwrap();
    let (metrics, svg) = paths_for(&ckpt);
    let records = read(&metrics).unwrap();
    assert_eq!(records.len(), steps / log_every + 1, "a line per printed loss and one evaluation");
    check_against(&records, &first, steps, log_every);
    assert_eq!(svg_circles(&svg), 1, "one accuracy point after one epoch");

    // Resume into another file: epoch 1's lines are carried over, epoch 2's appended.
    let ckpt2 = dir.join("resumed.safetensors");
    let cfg2 = TrainConfig { epochs: 2, resume: Some(ckpt.clone()), save: Some(ckpt2.clone()), ..cfg.clone() };
    let second = train::train(be, &data, &cfg2).unwrap();
    assert_eq!(second.len(), 1);
    let (metrics2, svg2) = paths_for(&ckpt2);
    let all = read(&metrics2).unwrap();
    assert_eq!(all[..records.len()], records[..], "the resumed file starts with epoch 1's lines");
    assert_eq!(all.len(), 2 * records.len());
    check_against(&all, &[first[0].clone(), second[0].clone()], steps, log_every);
    assert_eq!(svg_circles(&svg2), 2, "two accuracy points after the resumed epoch");

    // --no-plots: the metrics still, no picture.
    let ckpt3 = dir.join("noplot.safetensors");
    train::train(be, &data, &TrainConfig { save: Some(ckpt3.clone()), plots: false, ..cfg }).unwrap();
    assert!(paths_for(&ckpt3).0.exists() && !paths_for(&ckpt3).1.exists());
    eprintln!("seed {seed}: accuracy {:.2} % then {:.2} %", first[0].accuracy(), second[0].accuracy());
}

#[test]
fn confusion_adds_up_and_cpu_and_gpu_agree() {
    let seed = common::base_seed() % 1000;
    let data = wgsl_cnn::data::load_assets_subset().unwrap();
    let (g, c) = (&mut gpu(), &mut Cpu::default());
    // Briefly trained on the GPU, so that the matrix has a diagonal worth the name.
    let cfg = TrainConfig { model: Some(zoo::mlp()), epochs: 1, batch_size: 50, seed, save: None, progress: false, log_every: 1000, ..TrainConfig::default() };
    let dir = common::temp_dir("metrics", "confusion");
    let path = dir.join("m.safetensors");
    train::train(g, &data, &TrainConfig { save: Some(path.clone()), plots: false, ..cfg }).unwrap();
    let mut gm = state::load_model(g, &path, None, 50).unwrap();
    let mut cm = state::load_model(c, &path, None, 64).unwrap();
    let dg = pollster::block_on(evaluate_split_detailed(g, &mut gm, &data.test, true));
    let dc = pollster::block_on(evaluate_split_detailed(c, &mut cm, &data.test, true));
    for (name, d) in [("gpu", &dg), ("cpu", &dc)] {
        assert_eq!(d.confusion.total(), 1000, "{name}: the matrix sums to the test count (seed {seed})");
        assert_eq!(d.confusion.correct(), d.correct as u64, "{name}: the diagonal is the correct count (seed {seed})");
        assert_eq!(d.mistakes.len() as u64, 1000 - d.correct as u64, "{name}: one mistake per off-diagonal count");
        for m in &d.mistakes {
            assert!(d.confusion.get(m.truth, m.predicted) > 0);
        }
    }
    assert_eq!(dg.confusion, dc.confusion, "CPU and GPU confusion matrices (seed {seed})");
    let text = dg.confusion.format(wgsl_cnn::dataset::Dataset::Mnist.class_names());
    assert!(text.contains("Per-class accuracy") && text.lines().count() == 1 + 10 + 1 + 1 + 10, "{text}");
    let out = common::temp_dir("metrics", "mistakes");
    let written = write_mistakes(&out, &data.test, &dg.mistakes).unwrap();
    assert_eq!(written, dg.mistakes.len() + 1);
    let sheet = image::open(out.join("overview.png")).unwrap();
    assert_eq!(sheet.width(), 10 * 30 + 2);
    let m = dg.mistakes[0];
    let one = image::open(out.join(format!("{:05}-true{}-pred{}.png", m.index, m.truth, m.predicted))).unwrap().to_luma8();
    assert_eq!(one.as_raw()[..], data.test.image(m.index)[..], "the PNG holds the test image");
}
