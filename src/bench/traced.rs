//! `Traced<B>`: a `Backend` that forwards every call to `B` and, while tracing, notes each
//! op call as an `Op`. On the GPU it also tags the call's dispatches with the call's index
//! (so that timestamps can be grouped per op call, however many dispatches an op uses), or
//! times the call on the wall clock between two waits for the device.

use std::time::Instant;

use super::ops::Op;
use crate::backend::Backend;
use crate::gpu::Gpu;
use crate::reference::Cpu;
use crate::shapes::{AdamConfig, BatchNormShape, Conv2dShape, MatmulShape, PoolShape};

/// What the benchmark needs from a backend besides `Backend`.
pub trait Device {
    /// Tags the dispatches recorded from now on.
    fn mark(&mut self, _label: Option<u32>) {}
    /// Sends recorded work and waits until the device has finished it.
    fn wait(&mut self) {}
    /// Dispatches recorded so far.
    fn dispatch_count(&self) -> u64 {
        0
    }
}

impl Device for Gpu {
    fn mark(&mut self, label: Option<u32>) {
        self.ctx.set_op_label(label)
    }
    fn wait(&mut self) {
        self.ctx.finish()
    }
    fn dispatch_count(&self) -> u64 {
        self.ctx.dispatches.get()
    }
}

/// The CPU reference runs each op to completion inside the call.
impl Device for Cpu {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trace {
    /// Forward only.
    Off,
    /// Note each call and tag its dispatches with its index in `calls`.
    Record,
    /// As `Record`, and time each call on the wall clock from a wait before it to a wait
    /// after it (so the time includes recording, pipeline creation on first use, submit).
    Wall,
}

pub struct Traced<B> {
    pub inner: B,
    pub trace: Trace,
    /// Op calls since the last `clear`.
    pub calls: Vec<Op>,
    /// Dispatches each call recorded.
    pub dispatches: Vec<u64>,
    /// Wall-clock ms of each call (`Trace::Wall` only).
    pub wall_ms: Vec<f64>,
}

impl<B: Backend + Device> Traced<B> {
    pub fn new(inner: B) -> Self {
        Traced { inner, trace: Trace::Off, calls: Vec::new(), dispatches: Vec::new(), wall_ms: Vec::new() }
    }

    pub fn clear(&mut self) {
        self.calls.clear();
        self.dispatches.clear();
        self.wall_ms.clear();
    }

    fn call(&mut self, op: Op, f: impl FnOnce(&mut B)) {
        if self.trace == Trace::Off {
            return f(&mut self.inner);
        }
        let label = self.calls.len() as u32;
        self.calls.push(op);
        if self.trace == Trace::Wall {
            self.inner.wait();
        }
        let (t0, d0) = (Instant::now(), self.inner.dispatch_count());
        self.inner.mark(Some(label));
        f(&mut self.inner);
        self.inner.mark(None);
        self.dispatches.push(self.inner.dispatch_count() - d0);
        if self.trace == Trace::Wall {
            self.inner.wait();
            self.wall_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
}

impl<B: Backend + Device> Backend for Traced<B> {
    type Tensor = B::Tensor;
    type Index = B::Index;
    type Dataset = B::Dataset;

    fn name(&self) -> String {
        self.inner.name()
    }
    fn tensor(&mut self, len: usize) -> Self::Tensor {
        self.inner.tensor(len)
    }
    fn index(&mut self, len: usize) -> Self::Index {
        self.inner.index(len)
    }
    fn write(&mut self, t: &Self::Tensor, data: &[f32]) {
        self.inner.write(t, data)
    }
    fn write_index(&mut self, t: &Self::Index, data: &[u32]) {
        self.inner.write_index(t, data)
    }
    /// Not an op of the model's math: forwarded untraced.
    fn clear(&mut self, t: &Self::Tensor) {
        self.inner.clear(t)
    }
    fn read(&mut self, t: &Self::Tensor) -> Vec<f32> {
        self.inner.read(t)
    }
    fn read_index(&mut self, t: &Self::Index) -> Vec<u32> {
        self.inner.read_index(t)
    }
    fn submit(&mut self) {
        self.inner.submit()
    }
    fn dataset(&mut self, images: &[u8], labels: &[u8], pixels: usize) -> Self::Dataset {
        self.inner.dataset(images, labels, pixels)
    }

    fn gather(
        &mut self,
        ds: &Self::Dataset,
        perm: &Self::Index,
        offset: usize,
        n: usize,
        x: &Self::Tensor,
        y: &Self::Index,
    ) {
        let pixels = crate::model::lenet5::IMAGE_PIXELS;
        self.call(Op::Gather { n, pixels }, |b| b.gather(ds, perm, offset, n, x, y))
    }
    fn conv2d_forward(
        &mut self,
        s: &Conv2dShape,
        x: &Self::Tensor,
        w: &Self::Tensor,
        bias: &Self::Tensor,
        y: &Self::Tensor,
    ) {
        self.call(Op::Conv2dForward(*s), |b| b.conv2d_forward(s, x, w, bias, y))
    }
    fn conv2d_grad_input(&mut self, s: &Conv2dShape, dy: &Self::Tensor, w: &Self::Tensor, dx: &Self::Tensor) {
        self.call(Op::Conv2dGradInput(*s), |b| b.conv2d_grad_input(s, dy, w, dx))
    }
    fn conv2d_grad_weight(&mut self, s: &Conv2dShape, x: &Self::Tensor, dy: &Self::Tensor, dw: &Self::Tensor) {
        self.call(Op::Conv2dGradWeight(*s), |b| b.conv2d_grad_weight(s, x, dy, dw))
    }
    fn conv2d_grad_bias(&mut self, s: &Conv2dShape, dy: &Self::Tensor, db: &Self::Tensor) {
        self.call(Op::Conv2dGradBias(*s), |b| b.conv2d_grad_bias(s, dy, db))
    }
    fn maxpool_forward(&mut self, s: &PoolShape, x: &Self::Tensor, y: &Self::Tensor, argmax: &Self::Index) {
        self.call(Op::MaxpoolForward(*s), |b| b.maxpool_forward(s, x, y, argmax))
    }
    fn maxpool_backward(&mut self, s: &PoolShape, dy: &Self::Tensor, argmax: &Self::Index, dx: &Self::Tensor) {
        self.call(Op::MaxpoolBackward(*s), |b| b.maxpool_backward(s, dy, argmax, dx))
    }
    fn batchnorm_stats(
        &mut self,
        s: &BatchNormShape,
        x: &Self::Tensor,
        mean: &Self::Tensor,
        var: &Self::Tensor,
        running_mean: &Self::Tensor,
        running_var: &Self::Tensor,
    ) {
        self.call(Op::BatchnormStats(*s), |b| b.batchnorm_stats(s, x, mean, var, running_mean, running_var))
    }
    fn batchnorm_normalize(
        &mut self,
        s: &BatchNormShape,
        x: &Self::Tensor,
        mean: &Self::Tensor,
        var: &Self::Tensor,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        y: &Self::Tensor,
    ) {
        self.call(Op::BatchnormNormalize(*s), |b| b.batchnorm_normalize(s, x, mean, var, gamma, beta, y))
    }
    fn batchnorm_backward(
        &mut self,
        s: &BatchNormShape,
        x: &Self::Tensor,
        dy: &Self::Tensor,
        mean: &Self::Tensor,
        var: &Self::Tensor,
        gamma: &Self::Tensor,
        dx: &Self::Tensor,
        dgamma: &Self::Tensor,
        dbeta: &Self::Tensor,
    ) {
        self.call(Op::BatchnormBackward(*s), |b| b.batchnorm_backward(s, x, dy, mean, var, gamma, dx, dgamma, dbeta))
    }
    fn relu_forward(&mut self, len: usize, x: &Self::Tensor, y: &Self::Tensor) {
        self.call(Op::ReluForward { len }, |b| b.relu_forward(len, x, y))
    }
    fn relu_backward(&mut self, len: usize, y: &Self::Tensor, dy: &Self::Tensor, dx: &Self::Tensor) {
        self.call(Op::ReluBackward { len }, |b| b.relu_backward(len, y, dy, dx))
    }
    fn matmul(
        &mut self,
        s: &MatmulShape,
        a: &Self::Tensor,
        bm: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        c: &Self::Tensor,
    ) {
        self.call(Op::Matmul { s: *s, bias: bias.is_some() }, |b| b.matmul(s, a, bm, bias, c))
    }
    fn sum_rows(&mut self, rows: usize, cols: usize, x: &Self::Tensor, out: &Self::Tensor) {
        self.call(Op::SumRows { rows, cols }, |b| b.sum_rows(rows, cols, x, out))
    }
    fn softmax_cross_entropy(
        &mut self,
        n: usize,
        classes: usize,
        logits: &Self::Tensor,
        labels: &Self::Index,
        loss: &Self::Tensor,
        dlogits: &Self::Tensor,
        state: &Self::Index,
    ) {
        self.call(Op::SoftmaxCrossEntropy { n, classes }, |b| {
            b.softmax_cross_entropy(n, classes, logits, labels, loss, dlogits, state)
        })
    }
    fn count_correct(
        &mut self,
        n: usize,
        classes: usize,
        logits: &Self::Tensor,
        labels: &Self::Index,
        correct: &Self::Index,
    ) {
        self.call(Op::CountCorrect { n, classes }, |b| b.count_correct(n, classes, logits, labels, correct))
    }
    fn adam(
        &mut self,
        cfg: &AdamConfig,
        step: u32,
        len: usize,
        param: &Self::Tensor,
        grad: &Self::Tensor,
        m: &Self::Tensor,
        v: &Self::Tensor,
    ) {
        self.call(Op::Adam { len }, |b| b.adam(cfg, step, len, param, grad, m, v))
    }
}
