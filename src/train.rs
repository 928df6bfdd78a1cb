//! The seed's training recipe on any backend: shuffled epochs, the seed's log lines, test
//! accuracy in eval mode after each epoch, a checkpoint after each epoch.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::{Backend, PendingRead};
use crate::data::{Mnist, Split};
use crate::metrics::{Metrics, Record};
use crate::model::{state, zoo, Arch, Model, IMAGE_PIXELS};
use crate::nn::{Capacity, EVAL_BATCH};
use crate::rng::Rng;
use crate::shapes::AdamConfig;

#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// The network (None: LeNet-5, or when resuming the checkpoint's model).
    pub model: Option<Arch>,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub seed: u64,
    /// Train on the first N training images only.
    pub limit_train: Option<usize>,
    /// Where the checkpoint is written after each epoch (optimizer state next to it).
    pub save: Option<PathBuf>,
    /// A checkpoint to continue from (its optimizer state file must be next to it).
    pub resume: Option<PathBuf>,
    /// Print the seed's loss line every this many steps.
    pub log_every: usize,
    pub progress: bool,
    /// Redraw the curves picture next to the checkpoint after each epoch (the metrics file
    /// is written whenever a checkpoint is).
    pub plots: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: None,
            epochs: 5,
            batch_size: 100,
            lr: 1e-3,
            seed: 0,
            limit_train: None,
            save: Some(PathBuf::from("model.safetensors")),
            resume: None,
            log_every: 100,
            progress: true,
            plots: true,
        }
    }
}

/// What one epoch did.
#[derive(Clone, Debug)]
pub struct EpochReport {
    pub epoch: usize,
    /// Every printed loss (one per `log_every` steps).
    pub losses: Vec<f32>,
    pub correct: u32,
    pub total: usize,
    pub seconds: f64,
    pub images: usize,
}

impl EpochReport {
    pub fn accuracy(&self) -> f64 {
        100.0 * self.correct as f64 / self.total as f64
    }
}

/// Formats a percentage as Python's `str(float)` does, as the seed printed it.
pub fn python_float(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// The permutation of epoch `epoch` (from 0): a function of the seed and the epoch only,
/// so that a resumed run sees the same batches as a straight one.
pub fn epoch_permutation(seed: u64, epoch: usize, n: usize) -> Vec<u32> {
    let mut perm: Vec<u32> = (0..n as u32).collect();
    Rng::new(seed ^ (epoch as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F)).shuffle(&mut perm);
    perm
}

/// Uploads a split to the device once.
pub fn upload<B: Backend>(be: &mut B, split: &Split, limit: Option<usize>) -> (B::Dataset, usize) {
    let n = limit.map_or(split.count, |l| l.min(split.count));
    (be.dataset(&split.images[..n * IMAGE_PIXELS], &split.labels[..n], IMAGE_PIXELS), n)
}

/// Counts correct predictions (eval mode) over a device-resident split of `n` images.
pub fn evaluate<B: Backend + 'static>(be: &mut B, model: &mut Model<B>, ds: &B::Dataset, order: &B::Index, n: usize) -> u32 {
    let batch = model.eval_capacity;
    model.take_correct(be);
    for offset in (0..n).step_by(batch) {
        let nb = batch.min(n - offset);
        model.gather_batch(be, ds, order, offset, nb);
        model.eval_batch(be, nb);
        be.submit();
    }
    model.take_correct(be)
}

/// The order 0, 1, …, n − 1 on the device (evaluation visits the test set in order).
fn identity_order<B: Backend>(be: &mut B, n: usize) -> B::Index {
    let order = be.index(n);
    be.write_index(&order, &(0..n as u32).collect::<Vec<_>>());
    order
}

/// Uploads a split and counts the model's correct predictions on it (eval mode):
/// (correct, images).
pub fn evaluate_split<B: Backend + 'static>(be: &mut B, model: &mut Model<B>, split: &Split) -> (u32, usize) {
    let (ds, n) = upload(be, split, None);
    let order = identity_order(be, n);
    (evaluate(be, model, &ds, &order, n), n)
}

/// Trains from scratch or from `cfg.resume`, printing the seed's log lines.
pub fn train<B: Backend + 'static>(be: &mut B, data: &Mnist, cfg: &TrainConfig) -> Result<Vec<EpochReport>> {
    validate(cfg)?;
    let n_train = cfg.limit_train.map_or(data.train.count, |l| l.min(data.train.count));
    let clamped = crate::nn::sizer::clamp_to_data(cfg.batch_size, n_train, "--batch-size").map(|b| TrainConfig { batch_size: b, ..cfg.clone() });
    let cfg = clamped.as_ref().unwrap_or(cfg);
    if let Some(path) = &cfg.save {
        check_save_target(path)?;
    }
    // Evaluation runs in batches of EVAL_BATCH, or fewer where the limits say so.
    let mut eval_batch = EVAL_BATCH.max(cfg.batch_size);
    if let Some(budget) = be.memory_budget() {
        let arch = match &cfg.resume {
            Some(path) => state::arch_for(path, cfg.model.as_ref())?,
            None => cfg.model.clone().unwrap_or_else(zoo::lenet5),
        };
        let n_train = cfg.limit_train.map_or(data.train.count, |l| l.min(data.train.count));
        let data_buffers = [n_train * IMAGE_PIXELS, n_train * 4, data.test.count * IMAGE_PIXELS, data.test.count * 4, n_train * 4, data.test.count * 4];
        let data_buffers: Vec<u64> = data_buffers.iter().map(|&b| b as u64).collect();
        crate::nn::sizer::check_batch(&arch, cfg.batch_size, &budget, &data_buffers, "--batch-size")?;
        eval_batch = crate::nn::sizer::eval_batch(&arch, cfg.batch_size, &budget, &data_buffers)?;
    }
    let capacity = Capacity::with_eval(cfg.batch_size, eval_batch);
    let adam = AdamConfig { lr: cfg.lr, ..AdamConfig::default() };
    let (mut model, start_epoch) = match &cfg.resume {
        Some(path) => {
            let (model, epoch, meta) = state::load_training(be, path, cfg.model.as_ref(), capacity)?;
            println!("Resumed {} from {} after epoch {epoch} (Adam step {})", model.arch.name, path.display(), model.adam_step);
            // Shuffling and step numbers follow the seed and batch size: a change means the
            // remaining epochs differ from what a straight run would have done.
            for (key, now) in [("seed", cfg.seed.to_string()), ("batch_size", cfg.batch_size.to_string())] {
                if let Some(saved) = meta.get(key).filter(|saved| **saved != now) {
                    eprintln!("warning: resuming with {key} {now}, but {} was trained with {saved}", path.display());
                }
            }
            (model, epoch)
        }
        None => (Model::new(be, cfg.model.as_ref().unwrap_or(&zoo::lenet5()), capacity, cfg.seed)?, 0),
    };
    if start_epoch >= cfg.epochs {
        bail!("the checkpoint has already trained {start_epoch} epochs; ask for more with --epochs");
    }
    let model_bytes = be.allocated_bytes();
    let (train_ds, n_train) = upload(be, &data.train, cfg.limit_train);
    let (test_ds, n_test) = upload(be, &data.test, None);
    if n_train == 0 {
        bail!("no training images");
    }
    let perm = be.index(n_train);
    let test_order = identity_order(be, n_test);
    if let Some(refusal) = be.refused_allocation() {
        bail!("cannot hold the data set ({n_train} training and {n_test} test images): {refusal}");
    }
    let steps = n_train.div_ceil(cfg.batch_size);
    if let (Some(model_b), Some(all)) = (model_bytes, be.allocated_bytes()) {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        eprintln!(
            "device buffers: {:.1} MiB (parameters, gradients, Adam state and activations for training batches of {} \
             and eval batches of {}: {:.1} MiB; {} training + {} test images as u8 with the permutations: {:.1} MiB)",
            mib(all),
            cfg.batch_size,
            model.eval_capacity,
            mib(model_b),
            n_train,
            n_test,
            mib(all - model_b)
        );
    }
    let mut metrics = match &cfg.save {
        Some(save) => Some(Metrics::start(save, cfg.resume.as_deref().map(|r| (r, start_epoch)))?),
        None => None,
    };
    let mut reports = Vec::new();
    for epoch in start_epoch..cfg.epochs {
        let started = Instant::now();
        be.write_index(&perm, &epoch_permutation(cfg.seed, epoch, n_train));
        let bar = progress_bar(cfg.progress, n_train as u64, epoch + 1, cfg.epochs);
        let mut losses = Vec::new();
        // Loss reads in flight: (step, seconds, images so far, read). The device gets to
        // them while later steps are recorded; at most two are outstanding, which keeps the
        // host within about 2·log_every steps of the device without ever draining the queue.
        let mut pending: VecDeque<(usize, f64, usize, PendingRead)> = VecDeque::new();
        for s in 0..steps {
            let offset = s * cfg.batch_size;
            let nb = cfg.batch_size.min(n_train - offset);
            model.gather_batch(be, &train_ds, &perm, offset, nb);
            model.train_step(be, nb, &adam);
            be.submit();
            if s == 0 {
                // The first backward allocates the input gradients: the host may refuse them.
                if let Err(e) = model.check_allocations(be) {
                    bar.abandon();
                    return Err(e);
                }
                bar.suspend(|| print_kernel_choices(be));
            }
            bar.inc(nb as u64);
            if (s + 1) % cfg.log_every == 0 || s + 1 == steps {
                pending.push_back((s, started.elapsed().as_secs_f64(), offset + nb, model.read_loss_soon(be)));
            }
            // The epoch's last read, and the oldest of more than two, are waited for.
            while let Some((_, _, _, read)) = pending.front() {
                let wait = s + 1 == steps || pending.len() > 2;
                let Some(values) = be.finish_read(read, wait) else { break };
                let (step, seconds, images, _) = pending.pop_front().expect("the front was just read");
                let (loss, nonfinite) = Model::<B>::loss_and_nonfinite(&values);
                if let Some(bad) = nonfinite {
                    bar.abandon();
                    bail!(nonfinite_message(bad, steps, cfg));
                }
                bar.set_message(format!("loss {loss:.4}"));
                if (step + 1) % cfg.log_every == 0 {
                    losses.push(loss);
                    if let Some(m) = metrics.as_mut() {
                        m.push(record(epoch, step, steps, seconds, images, Some(loss), None))?;
                    }
                    bar.suspend(|| {
                        println!("Epoch [{}/{}], Step [{}/{}], Loss: {loss:.4}", epoch + 1, cfg.epochs, step + 1, steps)
                    });
                }
            }
        }
        bar.finish_and_clear();
        let train_seconds = started.elapsed().as_secs_f64();
        let correct = evaluate(be, &mut model, &test_ds, &test_order, n_test);
        print_kernel_choices(be);
        let report = EpochReport { epoch: epoch + 1, losses, correct, total: n_test, seconds: train_seconds, images: n_train };
        println!("Accuracy of the network on the {n_test} test images: {} %", python_float(report.accuracy()));
        eprintln!(
            "epoch {} trained in {:.1} s ({:.0} images/s) on {}",
            epoch + 1,
            train_seconds,
            n_train as f64 / train_seconds,
            be.name()
        );
        if let Some(path) = &cfg.save {
            let recipe = [("seed", cfg.seed.to_string()), ("lr", cfg.lr.to_string()), ("batch_size", cfg.batch_size.to_string())];
            state::save_training(be, &model, path, epoch + 1, &recipe)?;
        }
        if let (Some(m), Some(save)) = (metrics.as_mut(), &cfg.save) {
            m.push(record(epoch, steps - 1, steps, train_seconds, n_train, None, Some(report.accuracy())))?;
            if cfg.plots {
                let svg = crate::metrics::paths_for(save).1;
                if let Err(e) = crate::plot::draw_curves(&m.records, &svg) {
                    eprintln!("warning: {e:#}");
                }
            }
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Refuses settings that cannot train, with what is allowed.
pub fn validate(cfg: &TrainConfig) -> Result<()> {
    if cfg.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if cfg.epochs == 0 {
        bail!("--epochs must be at least 1 (it counts all epochs, those of a resumed checkpoint included)");
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        bail!("--lr {} is not allowed: the learning rate must be a finite number above 0 (the recipe uses 0.001)", cfg.lr);
    }
    if cfg.limit_train == Some(0) {
        bail!("--limit-train must be at least 1");
    }
    if cfg.log_every == 0 {
        bail!("--log-every must be at least 1");
    }
    Ok(())
}

/// Checks that the checkpoint and its optimizer file can be written, before an epoch is
/// spent: a file name (not `/`, not a directory) in a directory we may create files in.
pub fn check_save_target(path: &std::path::Path) -> Result<()> {
    let Some(name) = path.file_name() else {
        bail!("--save {}: not a file name; give a path such as model.safetensors", path.display());
    };
    for p in [path.to_path_buf(), crate::checkpoint::optimizer_path(path)] {
        if p.is_dir() {
            bail!("--save {}: {} is a directory; give a file path such as {}", path.display(), p.display(), p.join("model.safetensors").display());
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {}, where the checkpoint is to be saved", dir.display()))?;
    let probe = dir.join(format!(".{}.probe-{}", name.to_string_lossy(), std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
    let _ = std::fs::remove_file(&probe);
    written.with_context(|| format!("--save {}: cannot write files in {}", path.display(), dir.display()))
}

/// The kernel choices the autotuner made since last asked (on stderr: the log's stdout
/// keeps the seed's lines).
fn print_kernel_choices<B: Backend>(be: &mut B) {
    for line in be.new_kernel_choices() {
        eprintln!("kernel: {line}");
    }
}

/// A metrics line with the numbers as printed: the loss to 4 decimals, the accuracy as
/// `python_float` prints it (the shortest repr of the f64), time to 1 ms.
fn record(epoch: usize, s: usize, steps: usize, seconds: f64, images: usize, loss: Option<f32>, acc: Option<f64>) -> Record {
    Record {
        epoch: epoch + 1,
        step: s + 1,
        global_step: epoch * steps + s + 1,
        loss: loss.map(|l| format!("{l:.4}").parse().expect("a formatted number parses")),
        test_accuracy: acc,
        seconds: (seconds * 1000.0).round() / 1000.0,
        images_per_s: (images as f64 / seconds).round(),
    }
}

fn nonfinite_message(step: u32, steps: usize, cfg: &TrainConfig) -> String {
    let (epoch, s) = ((step as usize - 1) / steps + 1, (step as usize - 1) % steps + 1);
    let kept = match &cfg.save {
        Some(p) if p.exists() => format!("; the last good checkpoint {} is kept", p.display()),
        _ => String::new(),
    };
    format!("the loss became non-finite at epoch {epoch}, step {s} (step {step} overall); training stopped{kept}")
}

fn progress_bar(enabled: bool, images: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(images);
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} images, {rate} images/s, eta {eta} {msg}")
            .expect("the progress template is valid")
            .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}", s.per_sec());
            })
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}
