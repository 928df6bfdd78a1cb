//! The seed's training recipe on any backend: shuffled epochs, the seed's log lines, test
//! accuracy in eval mode after each epoch.
//!
//! One loop for both targets: a `Trainer` advances a few steps per call and hands back what
//! happened (`Event`s: the seed's lines, kernel choices, epoch reports). The CLI (`cli::train`)
//! runs it to the end, printing, drawing the progress bar and saving a checkpoint after each
//! epoch; the page awaits it between frames (src/web.rs).

use std::collections::VecDeque;
use std::path::PathBuf;
use web_time::Instant;

use anyhow::{bail, Result};

use crate::backend::{Backend, PendingRead};
use crate::data::{Mnist, Split};
use crate::model::{state, zoo, Arch, Model, IMAGE_PIXELS};
use crate::nn::{Capacity, EVAL_BATCH};
use crate::rng::Rng;
use crate::shapes::OptimizerConfig;

#[cfg(not(target_arch = "wasm32"))]
mod cli;
#[cfg(not(target_arch = "wasm32"))]
pub use cli::{check_save_target, train};

#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// The network (None: LeNet-5, or when resuming the checkpoint's model).
    pub model: Option<Arch>,
    pub epochs: usize,
    pub batch_size: usize,
    /// The learning rate, whichever the optimizer.
    pub lr: f32,
    /// The optimizer and its other hyper-parameters (its own learning rate is replaced by
    /// `lr`: see `optimizer()`).
    pub optimizer: OptimizerConfig,
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

impl TrainConfig {
    /// The optimizer of the run: `optimizer` with learning rate `lr`.
    pub fn optimizer(&self) -> OptimizerConfig {
        self.optimizer.with_lr(self.lr)
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: None,
            epochs: 5,
            batch_size: 100,
            lr: 1e-3,
            optimizer: OptimizerConfig::default(),
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
pub async fn evaluate<B: Backend + 'static>(be: &mut B, model: &mut Model<B>, ds: &B::Dataset, order: &B::Index, n: usize) -> u32 {
    let batch = model.eval_capacity;
    model.take_correct(be).await;
    for offset in (0..n).step_by(batch) {
        let nb = batch.min(n - offset);
        model.gather_batch(be, ds, order, offset, nb);
        model.eval_batch(be, nb);
        be.submit();
    }
    model.take_correct(be).await
}

/// The order 0, 1, …, n − 1 on the device (evaluation visits the test set in order).
fn identity_order<B: Backend>(be: &mut B, n: usize) -> B::Index {
    let order = be.index(n);
    be.write_index(&order, &(0..n as u32).collect::<Vec<_>>());
    order
}

/// Uploads a split and counts the model's correct predictions on it (eval mode):
/// (correct, images).
pub async fn evaluate_split<B: Backend + 'static>(be: &mut B, model: &mut Model<B>, split: &Split) -> (u32, usize) {
    let (ds, n) = upload(be, split, None);
    let order = identity_order(be, n);
    (evaluate(be, model, &ds, &order, n).await, n)
}


/// `cfg` with its batch size clamped to the training images used (with a note): as PyTorch's
/// DataLoader, a batch larger than the data set is one batch of all of it.
pub fn clamp_batch(data: &Mnist, cfg: &TrainConfig) -> TrainConfig {
    let n_train = cfg.limit_train.map_or(data.train.count, |l| l.min(data.train.count));
    let batch_size = crate::nn::sizer::clamp_to_data(cfg.batch_size, n_train, "--batch-size").unwrap_or(cfg.batch_size);
    TrainConfig { batch_size, ..cfg.clone() }
}

/// The model for `cfg`: a fresh one (`cfg.model`, else LeNet-5, initialised from `cfg.seed`)
/// or the one `cfg.resume` names with its optimizer state, sized for training batches of
/// `cfg.batch_size` and evaluation batches that fit the backend's limits. Returns the model
/// and the epochs it has already trained.
pub fn model_for<B: Backend + 'static>(be: &mut B, data: &Mnist, cfg: &TrainConfig) -> Result<(Model<B>, usize)> {
    validate(cfg)?;
    let arch = match &cfg.resume {
        Some(path) => state::arch_for(path, cfg.model.as_ref())?,
        None => cfg.model.clone().unwrap_or_else(zoo::lenet5),
    };
    check_classes(&arch, data)?;
    // Evaluation runs in batches of EVAL_BATCH, or fewer where the limits say so.
    let mut eval_batch = EVAL_BATCH.max(cfg.batch_size);
    if let Some(budget) = be.memory_budget() {
        let n_train = cfg.limit_train.map_or(data.train.count, |l| l.min(data.train.count));
        let data_buffers = [n_train * IMAGE_PIXELS, n_train * 4, data.test.count * IMAGE_PIXELS, data.test.count * 4, n_train * 4, data.test.count * 4];
        let data_buffers: Vec<u64> = data_buffers.iter().map(|&b| b as u64).collect();
        crate::nn::sizer::check_batch(&arch, cfg.batch_size, &budget, &data_buffers, "--batch-size")?;
        eval_batch = crate::nn::sizer::eval_batch(&arch, cfg.batch_size, &budget, &data_buffers)?;
    }
    let capacity = Capacity::with_eval(cfg.batch_size, eval_batch);
    match &cfg.resume {
        Some(path) => {
            let optimizer = cfg.optimizer();
            let (model, epoch, meta) = state::load_training_as(be, path, cfg.model.as_ref(), capacity, Some(&optimizer))?;
            println!("Resumed {} from {} after epoch {epoch} ({} step {})", model.arch.name, path.display(), model.optimizer.name(), model.adam_step);
            if model.optimizer != optimizer {
                eprintln!("note: resuming with {}; {} was trained with {}", optimizer.describe(), path.display(), model.optimizer.describe());
            }
            // Shuffling and step numbers follow the seed and batch size: a change means the
            // remaining epochs differ from what a straight run would have done.
            for (key, now) in [("seed", cfg.seed.to_string()), ("batch_size", cfg.batch_size.to_string())] {
                if let Some(saved) = meta.get(key).filter(|saved| **saved != now) {
                    eprintln!("warning: resuming with {key} {now}, but {} was trained with {saved}", path.display());
                }
            }
            Ok((model, epoch))
        }
        None => Ok((Model::new(be, cfg.model.as_ref().unwrap_or(&zoo::lenet5()), capacity, cfg.seed)?, 0)),
    }
}

/// That the model gives one score per class of the data set (`Mnist::classes`).
pub fn check_classes(arch: &Arch, data: &Mnist) -> Result<()> {
    let k = data.classes();
    if arch.classes != k {
        let th = |n: usize| crate::text::thousands(n as u64);
        anyhow::bail!(
            "the data set ({}) has {} classes (labels 0–{}), but model `{}` gives {} scores per image; its last layer must have {} outputs \
             (a model file with \"classes\": {k} whose last layer is a Linear(…, {k}), see examples/models)",
            data.report.dataset,
            th(k),
            k - 1,
            arch.name,
            th(arch.classes),
            th(k)
        );
    }
    Ok(())
}

/// What training did, as it happened, for the caller to print or draw.
#[derive(Clone, Debug)]
pub enum Event {
    /// A printed loss: every `log_every` steps (`step` from 1, `seconds` since the epoch began,
    /// `images` trained in the epoch so far).
    Loss { epoch: usize, epochs: usize, step: usize, steps: usize, loss: f32, seconds: f64, images: usize },
    /// A kernel choice the autotuner made (`Backend::new_kernel_choices`).
    Kernel(String),
    /// An epoch ended and the model was evaluated on the test set.
    Epoch(EpochReport),
}

impl Event {
    /// The seed's log line of the event, if it has one.
    pub fn line(&self) -> Option<String> {
        match self {
            Event::Loss { epoch, epochs, step, steps, loss, .. } => Some(format!("Epoch [{epoch}/{epochs}], Step [{step}/{steps}], Loss: {loss:.4}")),
            Event::Epoch(r) => Some(format!("Accuracy of the network on the {} test images: {} %", r.total, python_float(r.accuracy()))),
            Event::Kernel(_) => None,
        }
    }
}

/// A loss read in flight: (step, seconds into the epoch, images so far, the read).
type InFlight = (usize, f64, usize, PendingRead);

/// The training loop, a few steps at a time: `advance` records and submits steps, picks up
/// the loss reads the device has finished, and at the end of an epoch evaluates the model.
pub struct Trainer<B: Backend> {
    pub model: Model<B>,
    pub cfg: TrainConfig,
    optimizer: OptimizerConfig,
    train_ds: B::Dataset,
    test_ds: B::Dataset,
    perm: B::Index,
    test_order: B::Index,
    pub n_train: usize,
    pub n_test: usize,
    /// Steps per epoch.
    pub steps: usize,
    /// The epoch under way (from 0), `cfg.epochs` when done.
    epoch: usize,
    /// The next step of the epoch (from 0).
    step: usize,
    /// Steps recorded by this trainer so far.
    pub recorded: usize,
    /// Host seconds spent recording and submitting those steps (gather to Adam, `submit`).
    pub record_seconds: f64,
    started: Instant,
    losses: Vec<f32>,
    pending: VecDeque<InFlight>,
    /// Whether `prepare_kernels` and `prepare_eval_kernels` have run.
    prepared: bool,
    eval_prepared: bool,
}

impl<B: Backend + 'static> Trainer<B> {
    /// Uploads the data (the first `cfg.limit_train` training images) for `model`, which has
    /// trained `start_epoch` epochs (`model_for`).
    pub fn new(be: &mut B, mut model: Model<B>, start_epoch: usize, data: &Mnist, cfg: &TrainConfig) -> Result<Self> {
        validate(cfg)?;
        // What a checkpoint records, even one saved before the first step.
        model.optimizer = cfg.optimizer();
        if start_epoch >= cfg.epochs {
            bail!("the checkpoint has already trained {start_epoch} epochs; ask for more with --epochs");
        }
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
        Ok(Trainer {
            model,
            cfg: cfg.clone(),
            optimizer: cfg.optimizer(),
            train_ds,
            test_ds,
            perm,
            test_order,
            n_train,
            n_test,
            steps: n_train.div_ceil(cfg.batch_size),
            epoch: start_epoch,
            step: 0,
            recorded: 0,
            record_seconds: 0.0,
            started: Instant::now(),
            losses: Vec::new(),
            pending: VecDeque::new(),
            prepared: false,
            eval_prepared: false,
        })
    }

    pub fn done(&self) -> bool {
        self.epoch >= self.cfg.epochs
    }

    /// (epoch under way from 0, steps done in it).
    pub fn position(&self) -> (usize, usize) {
        (self.epoch, self.step)
    }

    /// Training images done in the epoch under way.
    pub fn images_done(&self) -> usize {
        (self.step * self.cfg.batch_size).min(self.n_train)
    }

    /// Runs up to `max_steps` training steps, stopping early at the end of an epoch (after
    /// its evaluation, so that the caller can save the model of that epoch). Loss reads are
    /// picked up when the device has done them; at most two are in flight (the oldest is
    /// then awaited), which keeps the host within about 2·log_every steps of the device.
    pub async fn advance(&mut self, be: &mut B, max_steps: usize) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        if !self.prepared {
            self.prepared = true;
            events.extend(self.prepare_kernels(be).await?.into_iter().map(Event::Kernel));
        }
        let (batch, log_every) = (self.cfg.batch_size, self.cfg.log_every);
        for _ in 0..max_steps {
            if self.done() {
                break;
            }
            if self.step == 0 {
                self.started = Instant::now();
                be.write_index(&self.perm, &epoch_permutation(self.cfg.seed, self.epoch, self.n_train));
            }
            let s = self.step;
            let offset = s * batch;
            let nb = batch.min(self.n_train - offset);
            let recording = Instant::now();
            self.model.gather_batch(be, &self.train_ds, &self.perm, offset, nb);
            self.model.train_step(be, nb, &self.optimizer);
            be.submit();
            self.record_seconds += recording.elapsed().as_secs_f64();
            if self.recorded == 0 {
                // The first backward allocates the input gradients: the host may refuse them.
                self.model.check_allocations(be)?;
            }
            if s == 0 {
                events.extend(be.new_kernel_choices().into_iter().map(Event::Kernel));
            }
            self.step += 1;
            self.recorded += 1;
            let last = self.step == self.steps;
            if self.step.is_multiple_of(log_every) || last {
                self.pending.push_back((s, self.started.elapsed().as_secs_f64(), offset + nb, self.model.read_loss_soon(be)));
            }
            // The epoch's last read, and the oldest of more than two, are waited for.
            while let Some((_, _, _, read)) = self.pending.front() {
                let values = if last || self.pending.len() > 2 { Some(be.wait_read(read).await) } else { be.try_read(read) };
                let Some(values) = values else { break };
                let (step, seconds, images, _) = self.pending.pop_front().expect("the front was just read");
                let (loss, nonfinite) = Model::<B>::loss_and_nonfinite(&values);
                if let Some(bad) = nonfinite {
                    bail!(nonfinite_message(bad, self.steps, &self.cfg));
                }
                if (step + 1) % log_every == 0 {
                    self.losses.push(loss);
                    let (epoch, epochs, steps) = (self.epoch + 1, self.cfg.epochs, self.steps);
                    events.push(Event::Loss { epoch, epochs, step: step + 1, steps, loss, seconds, images });
                }
            }
            if last {
                if !self.eval_prepared {
                    self.eval_prepared = true;
                    events.extend(self.prepare_eval_kernels(be).await.into_iter().map(Event::Kernel));
                }
                let report = self.end_epoch(be).await;
                // The evaluation's kernel choices, then the accuracy (the CLI's order).
                events.extend(be.new_kernel_choices().into_iter().map(Event::Kernel));
                events.push(Event::Epoch(report));
                break;
            }
        }
        Ok(events)
    }

    /// Where the backend measures kernel choices only between op calls (the page: see
    /// gpu::deferred_tuning), a dry run of the training batch shapes this run will use (the
    /// batch and the epoch's last, shorter one) on a scratch model inside a tuning window, so
    /// that their choices are made before the first step and the run itself is untouched: a
    /// run with given choices repeats exactly, as natively. Returns what could not be measured.
    /// Elsewhere it does nothing.
    async fn prepare_kernels(&mut self, be: &mut B) -> Result<Vec<String>> {
        if !be.begin_tuning() {
            return Ok(Vec::new());
        }
        let dry_run = Model::new(be, &self.model.arch, self.model.capacity, self.cfg.seed).map(|mut scratch| {
            for nb in batches(self.n_train, self.cfg.batch_size) {
                scratch.gather_batch(be, &self.train_ds, &self.perm, 0, nb);
                scratch.train_step(be, nb, &self.optimizer);
                be.submit();
            }
        });
        let failed = be.end_tuning().await;
        dry_run?;
        Ok(failed)
    }

    /// As `prepare_kernels`, for the evaluation's batch shapes, before the first evaluation
    /// (as the native tuner measures them at their first use): a dry run on the model itself,
    /// which evaluation leaves unchanged (its count of correct answers starts from zero).
    async fn prepare_eval_kernels(&mut self, be: &mut B) -> Vec<String> {
        if !be.begin_tuning() {
            return Vec::new();
        }
        for nb in batches(self.n_test, self.model.eval_capacity) {
            self.model.gather_batch(be, &self.test_ds, &self.test_order, 0, nb);
            self.model.eval_batch(be, nb);
            be.submit();
        }
        be.end_tuning().await
    }

    /// Evaluates the epoch's model and moves on to the next epoch.
    async fn end_epoch(&mut self, be: &mut B) -> EpochReport {
        let seconds = self.started.elapsed().as_secs_f64();
        let correct = evaluate(be, &mut self.model, &self.test_ds, &self.test_order, self.n_test).await;
        let report = EpochReport { epoch: self.epoch + 1, losses: std::mem::take(&mut self.losses), correct, total: self.n_test, seconds, images: self.n_train };
        self.epoch += 1;
        self.step = 0;
        report
    }
}

/// The batch sizes that cover `n` items in batches of `batch`: the full one and the last,
/// shorter one (where there is one).
fn batches(n: usize, batch: usize) -> Vec<usize> {
    match n % batch {
        _ if n <= batch => vec![n],
        0 => vec![batch],
        last => vec![batch, last],
    }
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
    cfg.optimizer().validate().map_err(anyhow::Error::msg)?;
    if cfg.limit_train == Some(0) {
        bail!("--limit-train must be at least 1");
    }
    if cfg.log_every == 0 {
        bail!("--log-every must be at least 1");
    }
    Ok(())
}


fn nonfinite_message(step: u32, steps: usize, cfg: &TrainConfig) -> String {
    let (epoch, s) = ((step as usize - 1) / steps + 1, (step as usize - 1) % steps + 1);
    let kept = match &cfg.save {
        Some(p) if p.exists() => format!("; the last good checkpoint {} is kept", p.display()),
        _ => String::new(),
    };
    format!("the loss became non-finite at epoch {epoch}, step {s} (step {step} overall); training stopped{kept}")
}

