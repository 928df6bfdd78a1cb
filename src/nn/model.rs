//! `Model`: a built `Spec` with its parameter store, the batch in place, the loss and the
//! optimizer step. Trainer, checkpoints, `step`, `summary` and `bench` talk to this and
//! never to a particular network.

use anyhow::Result;

use super::store::{Builder, Store};
use super::{Feat, Layer, Spec};
use crate::backend::{Backend, Op};
use crate::shapes::{AdamConfig, OptimizerConfig};

/// A network as its users name it: what it is called, what it takes, what it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Arch {
    /// The `--model` name (a built-in model's, or the `name` of a model file), also recorded
    /// in checkpoints.
    pub name: String,
    /// One line for `summary`.
    pub title: String,
    /// One sample of the input (an MNIST image: 1 × 28 × 28).
    pub input: Feat,
    pub classes: usize,
    pub spec: Spec,
}

/// The largest batches a model's buffers hold: training batches, and eval-mode batches
/// (at least as large). From one number, both are that number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub train: usize,
    pub eval: usize,
}

impl Capacity {
    /// Training batches of `train`, evaluation in batches of up to `eval` (or `train`, if larger).
    pub fn with_eval(train: usize, eval: usize) -> Capacity {
        Capacity { train, eval: eval.max(train) }
    }
}

impl From<usize> for Capacity {
    fn from(n: usize) -> Capacity {
        Capacity { train: n, eval: n }
    }
}

/// The eval batch the trainer and `eval` aim for (the sizer may pick less, `nn::sizer`).
pub const EVAL_BATCH: usize = 1000;

pub struct Model<B: Backend> {
    pub arch: Arch,
    /// Largest training batch the buffers hold.
    pub capacity: usize,
    /// Largest eval-mode batch (≥ capacity): where it is larger, a second copy of the
    /// network's layers, sharing the parameter store and the running statistics, holds
    /// the activations of such batches (eval needs no gradient buffers).
    pub eval_capacity: usize,
    pub store: Store<B>,
    /// Optimizer steps taken so far, whichever the optimizer (the device counts them too:
    /// `state[0]`; the name is from when Adam was the only one, as the checkpoints' key).
    pub adam_step: u32,
    /// The optimizer whose state the store holds: the last step's, or the one a checkpoint
    /// recorded (`state::load_training`); Adam's defaults for a fresh model. Checkpoints
    /// record it.
    pub optimizer: OptimizerConfig,
    /// Whether the store's momentum buffer (SGD's, kept in the Adam m buffer) holds a
    /// momentum: false until an SGD step with momentum, or a checkpoint, sets it.
    pub momentum_set: bool,
    net: Box<dyn Layer<B>>,
    eval_net: Option<Box<dyn Layer<B>>>,
    /// The batch in place, for up to `eval_capacity` samples.
    x: B::Tensor,
    y: B::Index,
    /// The last forward's output.
    logits: Option<B::Tensor>,
    loss: B::Tensor,
    dlogits: B::Tensor,
    correct: B::Index,
    /// [training steps counted, first step whose loss was not finite (0: none)].
    state: B::Index,
}

impl<B: Backend + 'static> Model<B> {
    /// A model with PyTorch's default initialisation drawn from `seed`.
    pub fn new(be: &mut B, arch: &Arch, capacity: impl Into<Capacity>, seed: u64) -> Result<Self> {
        let mut model = Self::build(be, arch, capacity)?;
        let values = model.store.init_values(seed);
        model.set_values(be, &values);
        Ok(model)
    }

    /// The model's buffers, with parameters at zero, running statistics at their initial
    /// values (mean 0, var 1) and fresh Adam state.
    pub fn build(be: &mut B, arch: &Arch, capacity: impl Into<Capacity>) -> Result<Self> {
        let Capacity { train: capacity, eval } = capacity.into();
        let eval_capacity = eval.max(capacity);
        assert!(capacity >= 1, "a model holds at least one sample");
        let mut b = Builder::new(be, capacity);
        let net = arch.spec.build(&mut b, "", arch.input)?;
        let out = arch.spec.output("", arch.input)?;
        anyhow::ensure!(out == Feat::flat(arch.classes), "{} ends in {out}, not [N, {}]", arch.name, arch.classes);
        // The eval copy: built again over the same names with tying on, so that it declares
        // nothing new and shares every parameter, buffer and counter.
        let eval_net = (eval_capacity > capacity)
            .then(|| {
                b.capacity = eval_capacity;
                b.tying = true;
                arch.spec.build(&mut b, "", arch.input)
            })
            .transpose()?;
        let (store, be) = b.finish();
        let x = be.tensor(eval_capacity * arch.input.len());
        let y = be.index(eval_capacity);
        let (loss, dlogits) = (be.tensor(1), be.tensor(capacity * arch.classes));
        let (correct, state) = (be.index(1), be.index(2));
        if let Some(refusal) = be.refused_allocation() {
            return Err(refused_error(arch, capacity, eval_capacity, &refusal));
        }
        Ok(Model { arch: arch.clone(), capacity, eval_capacity, store, adam_step: 0, optimizer: OptimizerConfig::default(), momentum_set: false, net, eval_net, x, y, logits: None, loss, dlogits, correct, state })
    }

    /// Err when the backend refused one of the model's allocations (the CPU reference's
    /// host memory, `Backend::refused_allocation`). `build` checks; call it again after the
    /// first training step, whose backward allocates the input-gradient buffers.
    pub fn check_allocations(&self, be: &B) -> Result<()> {
        match be.refused_allocation() {
            Some(refusal) => Err(refused_error(&self.arch, self.capacity, self.eval_capacity, &refusal)),
            None => Ok(()),
        }
    }

    /// Writes every parameter's values (in store order).
    pub fn set_values(&mut self, be: &mut B, values: &[Vec<f32>]) {
        assert_eq!(values.len(), self.store.params.len(), "one value vector per parameter");
        for (id, v) in self.store.ids().zip(values) {
            let p = &self.store.params[id.0];
            assert_eq!(v.len(), p.len(), "{} has {} values, expected {}", p.name, v.len(), p.len());
            be.write(self.store.value(id), v);
        }
    }

    /// Sets the number of Adam steps taken (when loading optimizer state).
    pub fn set_adam_step(&mut self, be: &mut B, step: u32) {
        self.adam_step = step;
        be.write_index(&self.state, &[step, 0]);
    }

    /// Puts a batch in place from host memory (tests, the `step` tool).
    pub fn set_batch(&mut self, be: &mut B, x: &[f32], labels: &[u32]) {
        assert_eq!(x.len(), labels.len() * self.arch.input.len());
        assert!(labels.len() <= self.eval_capacity);
        be.write(&self.x, x);
        be.write_index(&self.y, labels);
    }

    /// Gathers batch rows perm[offset..offset + n] of a device-resident dataset.
    pub fn gather_batch(&mut self, be: &mut B, ds: &B::Dataset, perm: &B::Index, offset: usize, n: usize) {
        assert!(n <= self.eval_capacity);
        be.scope("data.gather");
        be.run(Op::Gather { ds, perm, offset, n, x: &self.x, y: &self.y });
    }

    /// Forward to the logits. In training mode BatchNorm uses batch statistics and updates
    /// its running statistics (as PyTorch's forward does); in eval mode it uses the running
    /// statistics, and batches up to `eval_capacity` (its eval copy where that is larger).
    pub fn forward(&mut self, be: &mut B, n: usize, train: bool) {
        let most = if train { self.capacity } else { self.eval_capacity };
        assert!(n >= 1 && n <= most, "batch of {n} with buffers for {most}");
        let net = match &mut self.eval_net {
            Some(eval) if !train => eval,
            _ => &mut self.net,
        };
        self.logits = Some(net.forward(be, &self.store, &self.x, n, train));
    }

    fn logits(&self) -> &B::Tensor {
        self.logits.as_ref().expect("a forward ran")
    }

    /// Zeroes the gradients, then the mean cross-entropy of the last training forward and
    /// the gradient of every parameter (summed over its uses).
    pub fn backward(&mut self, be: &mut B, n: usize) {
        be.scope("loss");
        be.clear(&self.store.grad);
        let (logits, labels, classes) = (self.logits().clone(), &self.y, self.arch.classes);
        be.run(Op::SoftmaxCrossEntropy { n, classes, logits: &logits, labels, loss: &self.loss, dlogits: &self.dlogits, state: &self.state });
        self.net.backward(be, &self.store, &self.dlogits, n, false);
    }

    /// One Adam step over the whole store with the current gradients (one op).
    pub fn adam_update(&mut self, be: &mut B, cfg: &AdamConfig) {
        self.optimizer_step(be, cfg);
    }

    /// One step of `cfg`'s optimizer over the whole store with the current gradients: one
    /// op (`Op::Adam` or `Op::Sgd`), so one dispatch on the GPU. SGD keeps its momentum
    /// buffer in the store's Adam m buffer (v unused); its first step with a momentum fills
    /// it without reading it.
    pub fn optimizer_step<C: Into<OptimizerConfig> + Copy>(&mut self, be: &mut B, cfg: &C) {
        let cfg: OptimizerConfig = (*cfg).into();
        self.adam_step += 1;
        self.optimizer = cfg;
        let s = &self.store;
        match cfg {
            OptimizerConfig::Adam(cfg) => {
                be.scope("adam");
                be.run(Op::Adam { cfg, step: self.adam_step, len: s.len, state: &self.state, param: &s.value, grad: &s.grad, m: &s.m, v: &s.v });
            }
            OptimizerConfig::Sgd(cfg) => {
                be.scope("sgd");
                let first = !self.momentum_set;
                be.run(Op::Sgd { cfg, first, len: s.len, param: &s.value, grad: &s.grad, buf: &s.m });
                self.momentum_set |= cfg.momentum != 0.0;
            }
        }
    }

    /// Forward (training mode), loss, backward and the optimizer step (`optimizer_step`; an
    /// `&AdamConfig` is Adam) on the batch in place; a loss that is not finite is recorded
    /// on the device (`read_loss_soon`, `loss_and_nonfinite`); nothing is read back.
    pub fn train_step<C: Into<OptimizerConfig> + Copy>(&mut self, be: &mut B, n: usize, cfg: &C) {
        self.forward(be, n, true);
        self.backward(be, n);
        self.optimizer_step(be, cfg);
    }

    /// Eval-mode forward of the batch in place, adding its correct predictions to the
    /// device counter (see `take_correct`).
    pub fn eval_batch(&mut self, be: &mut B, n: usize) {
        self.forward(be, n, false);
        be.scope("accuracy");
        let logits = self.logits().clone();
        be.run(Op::CountCorrect { n, classes: self.arch.classes, logits: &logits, labels: &self.y, correct: &self.correct });
    }

    /// Adds the last forward's predictions to `counts`, a [classes, classes] confusion
    /// matrix on the device (true label by row, prediction by column).
    pub fn count_confusion(&mut self, be: &mut B, n: usize, counts: &B::Index) {
        be.scope("confusion");
        let logits = self.logits().clone();
        be.run(Op::Confusion { n, classes: self.arch.classes, logits: &logits, labels: &self.y, counts });
    }

    /// Reads and resets the correct-prediction counter.
    pub async fn take_correct(&mut self, be: &mut B) -> u32 {
        let c = be.read_index_async(&self.correct).await[0];
        be.write_index(&self.correct, &[0]);
        c
    }

    /// The buffer holding the loss of the last `backward` (one element).
    pub fn loss_tensor(&self) -> &B::Tensor {
        &self.loss
    }

    /// The loss of the last `backward` (waits for the device).
    pub async fn read_loss(&mut self, be: &mut B) -> f32 {
        be.read_async(&self.loss).await[0]
    }

    /// Starts reading the loss of the last `backward` and the non-finite record without
    /// waiting (`loss_and_nonfinite` decodes what `Backend::try_read` returns).
    pub fn read_loss_soon(&mut self, be: &mut B) -> crate::backend::PendingRead {
        be.read_soon(&self.loss, &self.state)
    }

    /// (loss, first non-finite step) from a `read_loss_soon`'s values.
    pub fn loss_and_nonfinite(values: &(Vec<f32>, Vec<u32>)) -> (f32, Option<u32>) {
        (values.0[0], Some(values.1[1]).filter(|&s| s != 0))
    }

    /// Logits of the last forward, [n, classes].
    pub async fn read_logits(&mut self, be: &mut B, n: usize) -> Vec<f32> {
        let logits = self.logits().clone();
        let mut l = be.read_async(&logits).await;
        l.truncate(n * self.arch.classes);
        l
    }
}

/// The error for a model whose buffers the host refused (the CPU reference): what was
/// refused, for which batches, and the largest batch whose buffers fit in what was granted.
fn refused_error(arch: &Arch, capacity: usize, eval_capacity: usize, refusal: &crate::memlimit::Refusal) -> anyhow::Error {
    let batches = if eval_capacity > capacity {
        format!("training batches of {capacity} and eval batches of {eval_capacity}")
    } else {
        format!("batches of {capacity}")
    };
    let hint = match crate::nn::sizer::largest_host_batch_within(arch, refusal.granted, capacity) {
        Ok(Some(n)) => format!("the largest batch whose buffers fit in what was granted is {n}"),
        Ok(None) => "not even a batch of 1 fits in what was granted".to_string(),
        Err(e) => format!("(no smaller batch could be sized: {e:#})"),
    };
    anyhow::anyhow!("cannot hold {} for {batches}: {refusal}; {hint}", arch.name)
}
