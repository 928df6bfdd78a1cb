//! What a model will allocate for a batch, found before allocating anything: the model is
//! built and run once (train step and eval) on `Sizer`, a backend that only records buffer
//! sizes. `check_batch` compares them with the GPU's per-buffer limits or the free host
//! memory and, when the batch does not fit, says the largest batch that does.

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
        Sizer { align: align.max(1), buffers: Vec::new(), scratch: Vec::new() }
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
    let batch = batch.into();
    let mut sz = Sizer::new(align);
    let mut model = Model::build(&mut sz, arch, batch)?;
    model.train_step(&mut sz, batch.train, &AdamConfig::default());
    model.eval_batch(&mut sz, batch.eval.max(batch.train));
    drop(model);
    let mut all = sz.buffers;
    all.extend(sz.scratch.iter().map(|(_, b)| *b));
    Ok(all)
}

/// What a batch has to fit in.
#[derive(Clone, Debug)]
pub enum Budget {
    /// A GPU: each buffer at most `buffer` bytes and each binding at most `binding` bytes.
    Device { name: String, binding: u64, buffer: u64, align: usize },
    /// The CPU reference: everything together in `available` bytes of host memory.
    Host { available: u64 },
}

impl Budget {
    /// The offset alignment of views into one buffer (1 on the host).
    fn align(&self) -> usize {
        match self {
            Budget::Device { align, .. } => *align,
            Budget::Host { .. } => 1,
        }
    }

    /// The host's free memory (Linux `MemAvailable`); None where it cannot be read.
    pub fn host() -> Option<Budget> {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(Budget::Host { available: kib.saturating_mul(1024) })
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
            Budget::Host { available } => {
                // The reference keeps every buffer in host memory; leave a margin for the rest.
                let total: u64 = buffers.iter().chain(fixed).sum::<u64>();
                let usable = available / 10 * 8;
                (total > usable).then(|| {
                    format!("it would need about {} of memory, more than the {} this machine has free (80 % of {})", mib(total), mib(usable), mib(*available))
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
    let align = budget.align();
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
    let fits = |n: usize| -> Result<Option<String>> { Ok(budget.misfit(&footprint(arch, n, align)?, &fixed(n))) };
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
    let align = budget.align();
    let fits = |e: usize| -> Result<bool> { Ok(budget.misfit(&footprint(arch, Capacity::with_eval(batch, e), align)?, fixed).is_none()) };
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
