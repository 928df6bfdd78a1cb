//! What a model will allocate for a batch, found before allocating anything: the model is
//! built and run once (train step and eval) on `Sizer`, a backend that only records buffer
//! sizes. `check_batch` compares them with the GPU's per-buffer limits or the memory this
//! process may still take on the host (the least of the free memory, the address-space
//! limit and the cgroup's limit: `crate::memlimit`) and, when the batch does not fit, says
//! the largest batch that does.

use anyhow::{bail, Result};

use super::model::{Arch, Capacity, Model, EVAL_BATCH};
use crate::backend::{Backend, DatasetShape, Op};
use crate::shapes::AdamConfig;

/// A backend whose buffers are their lengths: building and running a model on it records
/// every allocation (and the GPU's per-op scratch buffers) without computing anything.
pub struct Sizer {
    align: usize,
    /// Bytes of every buffer allocated, in order.
    pub buffers: Vec<u64>,
    /// The largest scratch buffer per tag (the GPU keeps one per tag).
    pub scratch: Vec<(&'static str, u64)>,
    /// The CPU reference's scratch vector (bytes): as long as its longest tensor.
    pub host_scratch: u64,
}

pub struct SizerDataset(usize);

impl DatasetShape for SizerDataset {
    fn pixels(&self) -> usize {
        self.0
    }
}

fn bytes(len: usize) -> u64 {
    len.max(1) as u64 * 4
}

impl Sizer {
    pub fn new(align: usize) -> Sizer {
        Sizer { align: align.max(1), buffers: Vec::new(), scratch: Vec::new(), host_scratch: 0 }
    }

    fn note_scratch(&mut self, tag: &'static str, len: usize) {
        match self.scratch.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, b)) => *b = (*b).max(bytes(len)),
            None => self.scratch.push((tag, bytes(len))),
        }
    }
}

impl Backend for Sizer {
    type Tensor = usize;
    type Index = usize;
    type Dataset = SizerDataset;

    fn name(&self) -> String {
        "size estimate".into()
    }
    fn tensor(&mut self, len: usize) -> usize {
        self.buffers.push(bytes(len));
        self.host_scratch = self.host_scratch.max(bytes(len));
        len
    }
    fn index(&mut self, len: usize) -> usize {
        self.buffers.push(bytes(len));
        len
    }
    fn view(&mut self, _t: &usize, _offset: usize, len: usize) -> usize {
        len
    }
    fn view_alignment(&self) -> usize {
        self.align
    }
    fn clear(&mut self, _t: &usize) {}
    fn write(&mut self, _t: &usize, _data: &[f32]) {}
    fn write_index(&mut self, _t: &usize, _data: &[u32]) {}
    async fn read_async(&mut self, t: &usize) -> Vec<f32> {
        vec![0.0; *t]
    }
    async fn read_index_async(&mut self, t: &usize) -> Vec<u32> {
        vec![0; *t]
    }
    fn read_soon(&mut self, t: &usize, i: &usize) -> crate::backend::PendingRead {
        crate::backend::PendingRead::Done(vec![0.0; *t], vec![0; *i])
    }
    fn submit(&mut self) {}
    fn dataset(&mut self, images: &[u8], labels: &[u8], pixels: usize) -> SizerDataset {
        self.buffers.push(bytes(images.len().div_ceil(4)));
        self.buffers.push(bytes(labels.len()));
        SizerDataset(pixels)
    }
    fn run(&mut self, op: Op<'_, usize, usize, SizerDataset>) {
        match op {
            Op::Conv2dGradInput { s, .. } => {
                if let Some((tag, len)) = crate::gpu::conv2d::grad_input_scratch(&s) {
                    self.note_scratch(tag, len);
                }
            }
            Op::Conv2dGradWeight { s, .. } => {
                let (tag, len) = crate::gpu::conv2d::grad_weight_scratch(&s);
                self.note_scratch(tag, len);
            }
            _ => {}
        }
    }
}

/// Every buffer (bytes) a model of `arch` allocates for batches of `batch` (training and
/// eval), with the scratch buffers one training step and one evaluation add on the GPU.
pub fn footprint(arch: &Arch, batch: impl Into<Capacity>, align: usize) -> Result<Vec<u64>> {
    let sz = measure(arch, batch.into(), align)?;
    let mut all = sz.buffers;
    all.extend(sz.scratch.iter().map(|(_, b)| *b));
    Ok(all)
}

/// Every buffer (bytes) the CPU reference holds for `arch` with batches of `batch`: the
/// model's buffers and its scratch vector.
pub fn host_footprint(arch: &Arch, batch: impl Into<Capacity>) -> Result<Vec<u64>> {
    let sz = measure(arch, batch.into(), 1)?;
    let mut all = sz.buffers;
    all.push(sz.host_scratch);
    Ok(all)
}

/// Builds a model of `arch` on a `Sizer` and runs one training step and one evaluation.
fn measure(arch: &Arch, batch: Capacity, align: usize) -> Result<Sizer> {
    let mut sz = Sizer::new(align);
    let mut model = Model::build(&mut sz, arch, batch)?;
    model.train_step(&mut sz, batch.train, &AdamConfig::default());
    model.eval_batch(&mut sz, batch.eval.max(batch.train));
    drop(model);
    Ok(sz)
}

/// What the buffers of `arch` with batches of `batch` need under `budget`.
fn needs(arch: &Arch, batch: impl Into<Capacity>, budget: &Budget) -> Result<Vec<u64>> {
    match budget {
        Budget::Device { align, .. } => footprint(arch, batch, *align),
        Budget::Host { .. } => host_footprint(arch, batch),
    }
}

/// The largest batch (training and eval alike) up to `below` − 1 whose buffers on the CPU
/// reference add up to at most `bytes`, or None when not even 1 does: for the message after
/// the host refused an allocation that the up-front check expected to succeed.
pub fn largest_host_batch_within(arch: &Arch, bytes: u64, below: usize) -> Result<Option<usize>> {
    let fits = |n: usize| -> Result<bool> { Ok(host_footprint(arch, n)?.iter().sum::<u64>() <= bytes) };
    if below <= 1 || !fits(1)? {
        return Ok(None);
    }
    if fits(below - 1)? {
        return Ok(Some(below - 1));
    }
    Ok(Some(largest_fitting(1, below - 1, &fits)?))
}

/// A batch larger than the data set's `n` examples: `Some(n)` with a note on stderr (one
/// batch of the whole set per epoch, as PyTorch's `DataLoader` gives with `drop_last=False`),
/// else None.
pub fn clamp_to_data(batch: usize, n: usize, flag: &str) -> Option<usize> {
    if n == 0 || batch <= n {
        return None;
    }
    let th = crate::text::thousands;
    eprintln!("note: {flag} {batch} is larger than the {} training images: each epoch is one batch of {} (as PyTorch's DataLoader gives)", th(n as u64), th(n as u64));
    Some(n)
}

/// What a batch has to fit in.
#[derive(Clone, Debug)]
pub enum Budget {
    /// A GPU: each buffer at most `buffer` bytes and each binding at most `binding` bytes.
    Device { name: String, binding: u64, buffer: u64, align: usize },
    /// The CPU reference: everything together in `available` bytes of host memory, the
    /// headroom under `what` (free memory, the address-space limit, the cgroup's limit).
    Host { available: u64, what: String },
}

impl Budget {
    /// What this process may still allocate on the host: the least of the free memory
    /// (Linux `MemAvailable`), the room left under `RLIMIT_AS` and under the cgroup's memory
    /// limit ([`crate::memlimit::headroom`]); None where none of them can be read.
    pub fn host() -> Option<Budget> {
        crate::memlimit::headroom().map(|h| Budget::Host { available: h.bytes, what: h.what })
    }

    /// Why `buffers` (plus the `fixed` buffers held besides) do not fit, or None when they do.
    fn misfit(&self, buffers: &[u64], fixed: &[u64]) -> Option<String> {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
        match self {
            Budget::Device { name, binding, buffer, .. } => {
                let largest = buffers.iter().chain(fixed).copied().max().unwrap_or(0);
                let limit = (*binding).min(*buffer);
                (largest > limit).then(|| {
                    let which = if binding <= buffer { "max_storage_buffer_binding_size" } else { "max_buffer_size" };
                    format!("its largest buffer would be {largest} bytes, over {name}'s limit of {limit} bytes ({}) per buffer ({which})", mib(limit))
                })
            }
            Budget::Host { available, what } => {
                // The reference keeps every buffer in host memory; leave a margin for the rest.
                let total: u64 = buffers.iter().chain(fixed).sum::<u64>();
                let usable = available / 10 * 8;
                (total > usable).then(|| {
                    format!("it would need about {} of host memory, more than the {} this process may use (80 % of the {} left under {what})", mib(total), mib(usable), mib(*available))
                })
            }
        }
    }
}

/// Checks that a model of `arch` with batches of `batch` fits `budget` (with the `fixed`
/// buffers, in bytes, held besides: the data set), before anything is allocated. The error
/// names the flag, what does not fit, and the largest batch that would.
pub fn check_batch(arch: &Arch, batch: usize, budget: &Budget, fixed: &[u64], flag: &str) -> Result<()> {
    check_batch_with(arch, batch, budget, &|_| fixed.to_vec(), flag)
}

/// [`check_batch`] where the buffers held besides the model depend on the batch (`fixed(n)`,
/// as the benchmark's synthetic data set does).
pub fn check_batch_with(arch: &Arch, batch: usize, budget: &Budget, fixed: &dyn Fn(usize) -> Vec<u64>, flag: &str) -> Result<()> {
    if batch == 0 {
        bail!("{flag} must be at least 1");
    }
    if let Budget::Device { name, binding, buffer, .. } = budget {
        let (largest, limit) = (fixed(1).iter().copied().max().unwrap_or(0), (*binding).min(*buffer));
        if largest > limit {
            bail!(
                "the data set needs a buffer of {:.1} MiB, over {name}'s limit of {:.1} MiB per buffer; use fewer images",
                largest as f64 / 1048576.0,
                limit as f64 / 1048576.0
            );
        }
    }
    let fits = |n: usize| -> Result<Option<String>> { Ok(budget.misfit(&needs(arch, n, budget)?, &fixed(n))) };
    let Some(why) = fits(batch)? else { return Ok(()) };
    if let Some(why) = fits(1)? {
        bail!("{} does not fit even with {flag} 1: {why}", arch.name);
    }
    let lo = largest_fitting(1, batch, &|n| Ok(fits(n)?.is_none()))?;
    bail!("{flag} {batch} is too large for {}: {why}; the largest that fits is {flag} {lo}", arch.name)
}

/// The eval batch for training batches of `batch`: `EVAL_BATCH` (or `batch` where that is
/// larger), or the largest between the two with which the model still fits `budget` (with
/// the `fixed` buffers held besides). Call after `check_batch` accepted `batch`.
pub fn eval_batch(arch: &Arch, batch: usize, budget: &Budget, fixed: &[u64]) -> Result<usize> {
    let fits = |e: usize| -> Result<bool> { Ok(budget.misfit(&needs(arch, Capacity::with_eval(batch, e), budget)?, fixed).is_none()) };
    let want = EVAL_BATCH.max(batch);
    if fits(want)? {
        return Ok(want);
    }
    // batch itself fits (check_batch).
    largest_fitting(batch, want, &fits)
}

/// The largest n in [lo, hi) with `fits(n)`, given that `lo` fits, `hi` does not, and sizes
/// grow with n (bisection).
fn largest_fitting(mut lo: usize, mut hi: usize, fits: &dyn Fn(usize) -> Result<bool>) -> Result<usize> {
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}
