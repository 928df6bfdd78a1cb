//! `Gpu`: the `Backend` trait over the WGSL kernels. Each op records one or a few
//! dispatches into the context's open compute pass; nothing waits until a read.

use std::rc::Rc;

use anyhow::Result;

use super::context::{AdapterChoice, GpuContext, RawBuffer};
use super::{activation, adam, batchnorm, conv2d, gather, matmul, maxpool, reduce};
use crate::backend::Backend;
use crate::shapes::{AdamConfig, BatchNormShape, Conv2dShape, MatmulShape, PoolShape};

pub type GpuTensor = Rc<RawBuffer>;

/// A split of the data set on the device: pixels packed four to a u32, labels as u32.
pub struct GpuDataset {
    pub images: GpuTensor,
    pub labels: GpuTensor,
    pub pixels: usize,
    pub count: usize,
}

pub struct Gpu {
    pub ctx: GpuContext,
    /// For the per-tensor `adam` of the trait: the step number the Adam kernel reads as its
    /// state[0], and a table (`adam::hyper_table`) covering that one step.
    adam_step: PerStep<u32>,
    adam_table: PerStep<[u32; 8]>,
}

impl Gpu {
    pub fn new(choice: &AdapterChoice) -> Result<Self> {
        let ctx = GpuContext::new(choice)?;
        let (adam_step, adam_table) = (PerStep::new(&ctx, 2), PerStep::new(&ctx, 8));
        Ok(Gpu { ctx, adam_step, adam_table })
    }
}

/// A small buffer of per-step constants (the step number, Adam's bias corrections).
/// Kernels read them from storage rather than uniforms because uniform bytes key the
/// bind-group cache, so a per-step uniform would create a new bind group every step.
struct PerStep<T> {
    buf: GpuTensor,
    /// The value last written.
    written: Option<T>,
    /// The submit that the last dispatch reading the buffer went out with.
    read_by_submit: Option<u64>,
}

impl<T: PartialEq + Copy> PerStep<T> {
    fn new(ctx: &GpuContext, len: usize) -> Self {
        PerStep { buf: ctx.buffer(len), written: None, read_by_submit: None }
    }

    /// Makes the buffer hold `value` for the next dispatch that reads it, and notes that
    /// dispatch. A queued write lands before the next submit, so only when work that read
    /// the old value is still unsubmitted must it be submitted first (that blocks on some
    /// drivers); between training steps nothing is pending and the write is free.
    fn set(&mut self, ctx: &GpuContext, value: T, data: &[impl bytemuck::Pod]) -> &RawBuffer {
        let pending = ctx.submits.get() + 1;
        if self.written != Some(value) {
            if self.read_by_submit == Some(pending) {
                ctx.submit();
            }
            ctx.write(&self.buf, data);
            self.written = Some(value);
        }
        self.read_by_submit = Some(ctx.submits.get() + 1);
        &self.buf
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
    fn write(&mut self, t: &GpuTensor, data: &[f32]) {
        self.ctx.write(t, data)
    }
    fn write_index(&mut self, t: &GpuTensor, data: &[u32]) {
        self.ctx.write(t, data)
    }
    fn clear(&mut self, t: &GpuTensor) {
        self.ctx.with_encoder(|enc| enc.clear_buffer(&t.buffer, 0, None));
    }
    fn read(&mut self, t: &GpuTensor) -> Vec<f32> {
        self.ctx.read(t)
    }
    fn read_index(&mut self, t: &GpuTensor) -> Vec<u32> {
        self.ctx.read(t)
    }
    fn submit(&mut self) {
        self.ctx.submit()
    }
    fn allocated_bytes(&self) -> Option<u64> {
        Some(self.ctx.allocated_bytes.get())
    }

    fn dataset(&mut self, images: &[u8], labels: &[u8], pixels: usize) -> GpuDataset {
        let packed = gather::pack_u8(images);
        let img = self.ctx.buffer(packed.len());
        self.ctx.write(&img, &packed);
        let lab = self.ctx.buffer(labels.len());
        self.ctx.write(&lab, &labels.iter().map(|&l| l as u32).collect::<Vec<_>>());
        GpuDataset { images: img, labels: lab, pixels, count: labels.len() }
    }
    fn gather(&mut self, ds: &GpuDataset, perm: &GpuTensor, offset: usize, n: usize, x: &GpuTensor, y: &GpuTensor) {
        gather::gather(&self.ctx, &ds.images, &ds.labels, ds.pixels, perm, offset, n, x, y)
    }

    fn conv2d_forward(&mut self, s: &Conv2dShape, x: &GpuTensor, w: &GpuTensor, b: &GpuTensor, y: &GpuTensor) {
        conv2d::forward(&self.ctx, s, x, w, b, y)
    }
    fn conv2d_grad_input(&mut self, s: &Conv2dShape, dy: &GpuTensor, w: &GpuTensor, dx: &GpuTensor) {
        conv2d::grad_input(&self.ctx, s, dy, w, dx)
    }
    fn conv2d_grad_weight(&mut self, s: &Conv2dShape, x: &GpuTensor, dy: &GpuTensor, dw: &GpuTensor) {
        conv2d::grad_weight(&self.ctx, s, x, dy, dw)
    }
    fn conv2d_grad_bias(&mut self, s: &Conv2dShape, dy: &GpuTensor, db: &GpuTensor) {
        conv2d::grad_bias(&self.ctx, s, dy, db)
    }

    fn maxpool_forward(&mut self, s: &PoolShape, x: &GpuTensor, y: &GpuTensor, argmax: &GpuTensor) {
        maxpool::forward(&self.ctx, s, x, y, argmax)
    }
    fn maxpool_backward(&mut self, s: &PoolShape, dy: &GpuTensor, argmax: &GpuTensor, dx: &GpuTensor) {
        maxpool::backward(&self.ctx, s, dy, argmax, dx)
    }

    fn batchnorm_stats(
        &mut self,
        s: &BatchNormShape,
        x: &GpuTensor,
        mean: &GpuTensor,
        var: &GpuTensor,
        running_mean: &GpuTensor,
        running_var: &GpuTensor,
    ) {
        batchnorm::stats(&self.ctx, s, x, mean, var, running_mean, running_var)
    }
    fn batchnorm_normalize(
        &mut self,
        s: &BatchNormShape,
        x: &GpuTensor,
        mean: &GpuTensor,
        var: &GpuTensor,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        y: &GpuTensor,
    ) {
        batchnorm::normalize(&self.ctx, s, x, mean, var, gamma, beta, y)
    }
    fn batchnorm_backward(
        &mut self,
        s: &BatchNormShape,
        x: &GpuTensor,
        dy: &GpuTensor,
        mean: &GpuTensor,
        var: &GpuTensor,
        gamma: &GpuTensor,
        dx: &GpuTensor,
        dgamma: &GpuTensor,
        dbeta: &GpuTensor,
    ) {
        batchnorm::backward(&self.ctx, s, x, dy, mean, var, gamma, dx, dgamma, dbeta)
    }

    fn relu_forward(&mut self, len: usize, x: &GpuTensor, y: &GpuTensor) {
        activation::relu_forward(&self.ctx, len, x, y)
    }
    fn relu_backward(&mut self, len: usize, y: &GpuTensor, dy: &GpuTensor, dx: &GpuTensor) {
        activation::relu_backward(&self.ctx, len, y, dy, dx)
    }

    fn matmul(&mut self, s: &MatmulShape, a: &GpuTensor, b: &GpuTensor, bias: Option<&GpuTensor>, c: &GpuTensor) {
        matmul::matmul(&self.ctx, s, a, b, bias.map(|b| &**b), c)
    }

    fn sum_rows(&mut self, rows: usize, cols: usize, x: &GpuTensor, out: &GpuTensor) {
        reduce::sum_rows(&self.ctx, rows, cols, x, out)
    }
    fn softmax_cross_entropy(
        &mut self,
        n: usize,
        classes: usize,
        logits: &GpuTensor,
        labels: &GpuTensor,
        loss: &GpuTensor,
        dlogits: &GpuTensor,
        state: &GpuTensor,
    ) {
        reduce::softmax_cross_entropy(&self.ctx, n, classes, logits, labels, loss, dlogits, state)
    }
    fn count_correct(&mut self, n: usize, classes: usize, logits: &GpuTensor, labels: &GpuTensor, correct: &GpuTensor) {
        reduce::count_correct(&self.ctx, n, classes, logits, labels, correct)
    }

    fn adam(&mut self, cfg: &AdamConfig, step: u32, len: usize, param: &GpuTensor, grad: &GpuTensor, m: &GpuTensor, v: &GpuTensor) {
        let table = adam::hyper_table(cfg, step, 1);
        let key: [u32; 8] = std::array::from_fn(|i| table[i].to_bits());
        // Both are always set together, so a submit that one needs covers the other too.
        let step_buf = self.adam_step.set(&self.ctx, step, &[step, 0]);
        let table_buf = self.adam_table.set(&self.ctx, key, &table);
        adam::step(&self.ctx, cfg, len, step_buf, table_buf, param, grad, m, v)
    }
}
