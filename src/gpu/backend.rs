//! `Gpu`: the `Backend` trait over the WGSL kernels. Each op records one or a few
//! dispatches into the context's open compute pass; nothing waits until a read.

use std::rc::Rc;

use anyhow::Result;

use super::context::{AdapterChoice, GpuContext, RawBuffer};
use super::{activation, adam, avgpool, batchnorm, conv2d, gather, matmul, maxpool, reduce, sgd};
use crate::backend::{Backend, Op, OpFor, PendingRead};
use crate::shapes::AdamConfig;

pub type GpuTensor = Rc<RawBuffer>;

/// A split of the data set on the device: pixels packed four to a u32, labels as u32.
pub struct GpuDataset {
    pub images: GpuTensor,
    pub labels: GpuTensor,
    pub pixels: usize,
    pub count: usize,
}

impl crate::backend::DatasetShape for GpuDataset {
    fn pixels(&self) -> usize {
        self.pixels
    }
}

/// When an observer is called: before an op records its dispatches, or after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    Before,
    After,
}

/// Sees every op call with the scope that issued it (the benchmark's tracer).
pub type Observer = Box<dyn for<'a> FnMut(&GpuContext, &str, &OpFor<'a, Gpu>, Moment)>;

pub struct Gpu {
    pub ctx: GpuContext,
    adam_table: AdamTable,
    reads: super::readback::ReadRing,
    scope: String,
    /// Called around each op call while set.
    pub observer: Option<Observer>,
}

impl Gpu {
    /// Opens the adapter (blocking: native only; the web awaits `open`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(choice: &AdapterChoice) -> Result<Self> {
        pollster::block_on(Self::open(choice))
    }

    pub async fn open(choice: &AdapterChoice) -> Result<Self> {
        let ctx = GpuContext::open(choice).await?;
        Ok(Gpu { ctx, adam_table: AdamTable::default(), reads: Default::default(), scope: String::new(), observer: None })
    }
}

/// Adam's per-step constants for a range of steps, computed on the host in f64 as PyTorch
/// does (`adam::hyper_table`), so that the kernel can pick step t's row from the step
/// counter on the device: no per-step write, and bind groups stay cached.
#[derive(Default)]
struct AdamTable {
    buf: Option<GpuTensor>,
    cfg: Option<AdamConfig>,
    /// Steps first .. first + ROWS are covered.
    first: u32,
}

impl AdamTable {
    const ROWS: u32 = 4096;

    /// A table covering `step` under `cfg`, rewritten only when it does not (after the
    /// work recorded so far, which may read the old rows: `GpuContext::write`).
    fn covering(&mut self, ctx: &GpuContext, cfg: &AdamConfig, step: u32) -> GpuTensor {
        let covered = self.cfg.as_ref() == Some(cfg) && (self.first..self.first.saturating_add(Self::ROWS)).contains(&step);
        if !covered {
            let data = adam::hyper_table(cfg, step, Self::ROWS);
            let buf = self.buf.get_or_insert_with(|| ctx.buffer(data.len())).clone();
            ctx.write(&buf, &data);
            (self.cfg, self.first) = (Some(*cfg), step);
        }
        self.buf.clone().expect("the table was written above")
    }
}

impl Backend for Gpu {
    type Tensor = GpuTensor;
    type Index = GpuTensor;
    type Dataset = GpuDataset;

    fn name(&self) -> String {
        super::context::describe(&self.ctx.info)
    }

    fn tensor(&mut self, len: usize) -> GpuTensor {
        self.ctx.buffer(len)
    }
    fn index(&mut self, len: usize) -> GpuTensor {
        self.ctx.buffer(len)
    }
    fn view(&mut self, t: &GpuTensor, offset: usize, len: usize) -> GpuTensor {
        self.ctx.view(t, offset, len)
    }
    fn view_alignment(&self) -> usize {
        self.ctx.view_alignment()
    }
    fn memory_budget(&self) -> Option<crate::nn::sizer::Budget> {
        Some(crate::nn::sizer::Budget::Device {
            name: self.ctx.info.name.clone(),
            binding: self.ctx.limits.max_storage_buffer_binding_size,
            buffer: self.ctx.limits.max_buffer_size,
            align: self.ctx.view_alignment(),
        })
    }
    fn clear(&mut self, t: &GpuTensor) {
        self.ctx.clear(t)
    }
    fn write(&mut self, t: &GpuTensor, data: &[f32]) {
        self.ctx.write(t, data)
    }
    fn write_index(&mut self, t: &GpuTensor, data: &[u32]) {
        self.ctx.write(t, data)
    }
    async fn read_async(&mut self, t: &GpuTensor) -> Vec<f32> {
        self.ctx.read_async(t).await
    }
    async fn read_index_async(&mut self, t: &GpuTensor) -> Vec<u32> {
        self.ctx.read_async(t).await
    }
    fn submit(&mut self) {
        self.ctx.submit()
    }
    async fn settle(&mut self) {
        self.ctx.settle().await
    }
    fn read_soon(&mut self, t: &GpuTensor, i: &GpuTensor) -> PendingRead {
        PendingRead::Device(self.reads.start(&self.ctx, t, i))
    }
    fn try_read(&mut self, read: &PendingRead) -> Option<(Vec<f32>, Vec<u32>)> {
        match read {
            PendingRead::Done(f, u) => Some((f.clone(), u.clone())),
            PendingRead::Device(i) => self.reads.try_finish(&self.ctx, *i),
        }
    }
    async fn wait_read(&mut self, read: &PendingRead) -> (Vec<f32>, Vec<u32>) {
        match read {
            PendingRead::Done(f, u) => (f.clone(), u.clone()),
            PendingRead::Device(i) => self.reads.finish(&self.ctx, *i).await,
        }
    }
    fn allocated_bytes(&self) -> Option<u64> {
        Some(self.ctx.allocated_bytes.get())
    }
    fn begin_tuning(&mut self) -> bool {
        self.ctx.begin_tuning()
    }
    async fn end_tuning(&mut self) -> Vec<String> {
        self.ctx.end_tuning().await
    }
    fn new_kernel_choices(&mut self) -> Vec<String> {
        self.ctx.tuner().map_or_else(Vec::new, |t| t.take_new().iter().map(|c| c.describe()).collect())
    }

    fn dataset(&mut self, images: &[u8], labels: &[u8], pixels: usize) -> GpuDataset {
        let packed = gather::pack_u8(images);
        let img = self.ctx.buffer(packed.len());
        self.ctx.write(&img, &packed);
        let lab = self.ctx.buffer(labels.len());
        self.ctx.write(&lab, &labels.iter().map(|&l| l as u32).collect::<Vec<_>>());
        GpuDataset { images: img, labels: lab, pixels, count: labels.len() }
    }

    fn scope(&mut self, name: &str) {
        self.scope.clear();
        self.scope.push_str(name);
    }

    fn run(&mut self, op: OpFor<'_, Gpu>) {
        let mut observer = self.observer.take();
        if let Some(f) = observer.as_mut() {
            f(&self.ctx, &self.scope, &op, Moment::Before);
        }
        self.record(&op);
        if let Some(f) = observer.as_mut() {
            f(&self.ctx, &self.scope, &op, Moment::After);
        }
        self.observer = observer;
    }
}

impl Gpu {
    fn record(&mut self, op: &OpFor<'_, Gpu>) {
        let ctx = &self.ctx;
        match *op {
            Op::Gather { ds, perm, offset, n, x, y } => {
                gather::gather(ctx, &ds.images, &ds.labels, ds.pixels, perm, offset, n, x, y)
            }
            Op::Conv2dForward { s, x, w, b, y } => conv2d::forward(ctx, &s, x, w, b, y),
            Op::Conv2dGradInput { s, dy, w, dx } => conv2d::grad_input(ctx, &s, dy, w, dx),
            Op::Conv2dGradWeight { s, x, dy, dw, db } => conv2d::grad_weight(ctx, &s, x, dy, dw, db.map(|t| &**t)),
            Op::MaxpoolForward { s, relu, normalize, x, y, argmax } => {
                let normalize = normalize.map(|n| maxpool::Normalize { mean: n.mean, var: n.var, gamma: n.gamma, beta: n.beta });
                maxpool::forward_fused(ctx, &s, relu, normalize, x, y, argmax)
            }
            Op::MaxpoolBackward { s, dy, argmax, dx } => maxpool::backward(ctx, &s, dy, argmax, dx),
            Op::AvgpoolForward { s, x, y } => avgpool::forward(ctx, &s, x, y),
            Op::AvgpoolBackward { s, dy, dx } => avgpool::backward(ctx, &s, dy, dx),
            Op::BatchnormStats { s, x, mean, var, running_mean, running_var } => {
                batchnorm::stats(ctx, &s, x, mean, var, running_mean, running_var)
            }
            Op::BatchnormNormalize { s, x, mean, var, gamma, beta, y } => {
                batchnorm::normalize(ctx, &s, x, mean, var, gamma, beta, y)
            }
            Op::BatchnormBackward { s, x, dy, pooled, mean, var, gamma, dx, dgamma, dbeta } => match pooled {
                Some((ps, argmax)) => batchnorm::backward_pooled(ctx, &s, &ps, x, dy, argmax, mean, var, gamma, dx, dgamma, dbeta),
                None => batchnorm::backward(ctx, &s, x, dy, mean, var, gamma, dx, dgamma, dbeta),
            },
            Op::ReluForward { len, x, y } => activation::relu_forward(ctx, len, x, y),
            Op::ReluBackward { len, y, dy, dx } => activation::relu_backward(ctx, len, y, dy, dx),
            Op::ActivationForward { f, len, x, y } => activation::forward(ctx, f, len, x, y),
            Op::ActivationBackward { f, len, y, dy, dx } => activation::backward(ctx, f, len, y, dy, dx),
            Op::Matmul { s, a, b, bias, fused, c } => {
                let fused = matmul::Fused {
                    relu: fused.relu,
                    mask: fused.mask.map(|m| &**m),
                    bias_grad: fused.bias_grad.map(|g| &**g),
                };
                matmul::matmul_fused(ctx, matmul::MatmulKernel::Auto, &s, a, b, bias.map(|b| &**b), fused, c)
            }
            Op::SumRows { rows, cols, x, out } => reduce::sum_rows(ctx, rows, cols, x, out),
            Op::SoftmaxCrossEntropy { n, classes, logits, labels, loss, dlogits, state } => {
                reduce::softmax_cross_entropy(ctx, n, classes, logits, labels, loss, dlogits, state)
            }
            Op::CountCorrect { n, classes, logits, labels, correct } => {
                reduce::count_correct(ctx, n, classes, logits, labels, correct)
            }
            Op::Confusion { n, classes, logits, labels, counts } => reduce::confusion(ctx, n, classes, logits, labels, counts),
            Op::Adam { cfg, step, len, state, param, grad, m, v } => {
                let table = self.adam_table.covering(ctx, &cfg, step);
                adam::step(ctx, &cfg, len, state, &table, param, grad, m, v)
            }
            Op::Sgd { cfg, first, len, param, grad, buf } => sgd::step(ctx, &cfg, first, len, param, grad, buf),
        }
    }
}
