//! `CpuBackend<T>`: the `Backend` that runs every op at once through the reference
//! functions. `Cpu` (f32) is the reference the shaders are checked against; `Cpu64` runs the
//! whole model in f64 for finite-difference gradient checks.
//!
//! Handles are shared vectors; an op borrows its inputs and mutably borrows its outputs, so
//! passing one handle as both input and output (forbidden by the trait) panics here. Buffers
//! may be longer than an op's shape (the model allocates for its largest batch): every op
//! works on the prefix its shape covers, as the GPU kernels do.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;

use super::{activation, adam, batchnorm, conv2d, gather, matmul, maxpool, reduce, Real};
use crate::backend::Backend;
use crate::shapes::{AdamConfig, BatchNormShape, Conv2dShape, MatmulShape, PoolShape};

pub type CpuTensor<T = f32> = Rc<RefCell<Vec<T>>>;
pub type CpuIndex = Rc<RefCell<Vec<u32>>>;

/// The u8 images [count, pixels] and labels [count] of a dataset.
pub struct CpuDataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub pixels: usize,
}

#[derive(Default)]
pub struct CpuBackend<T: Real>(PhantomData<T>);

/// The f32 reference backend.
pub type Cpu = CpuBackend<f32>;
/// The same reference in f64, for gradient checks of the whole model.
pub type Cpu64 = CpuBackend<f64>;

impl<T: Real> CpuBackend<T> {
    pub fn new() -> Self {
        CpuBackend(PhantomData)
    }
    /// Writes values at full precision (the trait's `write` takes f32).
    pub fn write_exact(&mut self, t: &CpuTensor<T>, data: &[T]) {
        t.borrow_mut()[..data.len()].copy_from_slice(data);
    }
    pub fn read_exact(&mut self, t: &CpuTensor<T>) -> Vec<T> {
        t.borrow().clone()
    }
}

type In<'a, T> = std::cell::Ref<'a, Vec<T>>;
type Out<'a, T> = std::cell::RefMut<'a, Vec<T>>;

impl<T: Real> Backend for CpuBackend<T> {
    type Tensor = CpuTensor<T>;
    type Index = CpuIndex;
    type Dataset = CpuDataset;

    fn name(&self) -> String {
        if std::mem::size_of::<T>() == 4 { "CPU reference" } else { "CPU reference (f64)" }.to_string()
    }

    fn tensor(&mut self, len: usize) -> CpuTensor<T> {
        Rc::new(RefCell::new(vec![T::zero(); len]))
    }
    fn index(&mut self, len: usize) -> CpuIndex {
        Rc::new(RefCell::new(vec![0; len]))
    }
    /// Overwrites the first data.len() elements (as queue.write_buffer).
    fn write(&mut self, t: &CpuTensor<T>, data: &[f32]) {
        for (d, &s) in t.borrow_mut().iter_mut().zip(data) {
            *d = T::from_f64(s as f64);
        }
    }
    fn write_index(&mut self, t: &CpuIndex, data: &[u32]) {
        t.borrow_mut()[..data.len()].copy_from_slice(data);
    }
    fn clear(&mut self, t: &CpuTensor<T>) {
        t.borrow_mut().fill(T::zero());
    }
    fn read(&mut self, t: &CpuTensor<T>) -> Vec<f32> {
        t.borrow().iter().map(|v| v.to_f64() as f32).collect()
    }
    fn read_index(&mut self, t: &CpuIndex) -> Vec<u32> {
        t.borrow().clone()
    }
    fn submit(&mut self) {}

    fn dataset(&mut self, images: &[u8], labels: &[u8], pixels: usize) -> CpuDataset {
        CpuDataset { images: images.to_vec(), labels: labels.to_vec(), pixels }
    }
    fn gather(&mut self, ds: &CpuDataset, perm: &CpuIndex, offset: usize, n: usize, x: &CpuTensor<T>, y: &CpuIndex) {
        let mut xf = vec![0f32; n * ds.pixels];
        gather::gather(&ds.images, &ds.labels, ds.pixels, &perm.borrow(), offset, n, &mut xf, &mut y.borrow_mut());
        self.write(x, &xf);
    }

    fn conv2d_forward(&mut self, s: &Conv2dShape, x: &CpuTensor<T>, w: &CpuTensor<T>, b: &CpuTensor<T>, y: &CpuTensor<T>) {
        let (x, w, b, mut y): (In<T>, In<T>, In<T>, Out<T>) = (x.borrow(), w.borrow(), b.borrow(), y.borrow_mut());
        conv2d::forward(s, &x[..s.x_len()], &w[..s.w_len()], &b[..s.c_out], &mut y[..s.y_len()]);
    }
    fn conv2d_grad_input(&mut self, s: &Conv2dShape, dy: &CpuTensor<T>, w: &CpuTensor<T>, dx: &CpuTensor<T>) {
        conv2d::grad_input(s, &dy.borrow()[..s.y_len()], &w.borrow()[..s.w_len()], &mut dx.borrow_mut()[..s.x_len()]);
    }
    fn conv2d_grad_weight(&mut self, s: &Conv2dShape, x: &CpuTensor<T>, dy: &CpuTensor<T>, dw: &CpuTensor<T>) {
        conv2d::grad_weight(s, &x.borrow()[..s.x_len()], &dy.borrow()[..s.y_len()], &mut dw.borrow_mut()[..s.w_len()]);
    }
    fn conv2d_grad_bias(&mut self, s: &Conv2dShape, dy: &CpuTensor<T>, db: &CpuTensor<T>) {
        conv2d::grad_bias(s, &dy.borrow()[..s.y_len()], &mut db.borrow_mut()[..s.c_out]);
    }

    fn maxpool_forward(&mut self, s: &PoolShape, x: &CpuTensor<T>, y: &CpuTensor<T>, argmax: &CpuIndex) {
        maxpool::forward(
            s,
            &x.borrow()[..s.x_len()],
            &mut y.borrow_mut()[..s.y_len()],
            &mut argmax.borrow_mut()[..s.y_len()],
        );
    }
    fn maxpool_backward(&mut self, s: &PoolShape, dy: &CpuTensor<T>, argmax: &CpuIndex, dx: &CpuTensor<T>) {
        maxpool::backward(s, &dy.borrow()[..s.y_len()], &argmax.borrow()[..s.y_len()], &mut dx.borrow_mut()[..s.x_len()]);
    }

    /// The GPU's fused stats: `batchnorm::stats`, then `batchnorm::update_running`.
    fn batchnorm_stats(
        &mut self,
        s: &BatchNormShape,
        x: &CpuTensor<T>,
        mean: &CpuTensor<T>,
        var: &CpuTensor<T>,
        running_mean: &CpuTensor<T>,
        running_var: &CpuTensor<T>,
    ) {
        let c = s.c;
        let (mut mean, mut var) = (mean.borrow_mut(), var.borrow_mut());
        batchnorm::stats(s, &x.borrow()[..s.len()], &mut mean[..c], &mut var[..c]);
        batchnorm::update_running(
            s,
            &mean[..c],
            &var[..c],
            &mut running_mean.borrow_mut()[..c],
            &mut running_var.borrow_mut()[..c],
        );
    }
    fn batchnorm_normalize(
        &mut self,
        s: &BatchNormShape,
        x: &CpuTensor<T>,
        mean: &CpuTensor<T>,
        var: &CpuTensor<T>,
        gamma: &CpuTensor<T>,
        beta: &CpuTensor<T>,
        y: &CpuTensor<T>,
    ) {
        let c = s.c;
        batchnorm::normalize(
            s,
            &x.borrow()[..s.len()],
            &mean.borrow()[..c],
            &var.borrow()[..c],
            &gamma.borrow()[..c],
            &beta.borrow()[..c],
            &mut y.borrow_mut()[..s.len()],
        );
    }
    fn batchnorm_backward(
        &mut self,
        s: &BatchNormShape,
        x: &CpuTensor<T>,
        dy: &CpuTensor<T>,
        mean: &CpuTensor<T>,
        var: &CpuTensor<T>,
        gamma: &CpuTensor<T>,
        dx: &CpuTensor<T>,
        dgamma: &CpuTensor<T>,
        dbeta: &CpuTensor<T>,
    ) {
        let (c, len) = (s.c, s.len());
        batchnorm::backward(
            s,
            &x.borrow()[..len],
            &dy.borrow()[..len],
            &mean.borrow()[..c],
            &var.borrow()[..c],
            &gamma.borrow()[..c],
            &mut dx.borrow_mut()[..len],
            &mut dgamma.borrow_mut()[..c],
            &mut dbeta.borrow_mut()[..c],
        );
    }

    fn relu_forward(&mut self, len: usize, x: &CpuTensor<T>, y: &CpuTensor<T>) {
        activation::relu_forward(&x.borrow()[..len], &mut y.borrow_mut()[..len]);
    }
    fn relu_backward(&mut self, len: usize, y: &CpuTensor<T>, dy: &CpuTensor<T>, dx: &CpuTensor<T>) {
        activation::relu_backward(&y.borrow()[..len], &dy.borrow()[..len], &mut dx.borrow_mut()[..len]);
    }

    fn matmul(&mut self, s: &MatmulShape, a: &CpuTensor<T>, b: &CpuTensor<T>, bias: Option<&CpuTensor<T>>, c: &CpuTensor<T>) {
        let bias = bias.map(|t| t.borrow());
        matmul::matmul(
            s,
            &a.borrow()[..s.m * s.k],
            &b.borrow()[..s.k * s.n],
            bias.as_ref().map(|v| &v[..s.n]),
            &mut c.borrow_mut()[..s.m * s.n],
        );
    }

    fn sum_rows(&mut self, rows: usize, cols: usize, x: &CpuTensor<T>, out: &CpuTensor<T>) {
        reduce::sum_rows(rows, cols, &x.borrow()[..rows * cols], &mut out.borrow_mut()[..cols]);
    }
    fn softmax_cross_entropy(
        &mut self,
        n: usize,
        classes: usize,
        logits: &CpuTensor<T>,
        labels: &CpuIndex,
        loss: &CpuTensor<T>,
        dlogits: &CpuTensor<T>,
        state: &CpuIndex,
    ) {
        let len = n * classes;
        let l = reduce::softmax_cross_entropy(
            n,
            classes,
            &logits.borrow()[..len],
            &labels.borrow()[..n],
            &mut dlogits.borrow_mut()[..len],
        );
        loss.borrow_mut()[0] = l;
        reduce::count_step(l.to_f64(), &mut state.borrow_mut());
    }
    fn count_correct(&mut self, n: usize, classes: usize, logits: &CpuTensor<T>, labels: &CpuIndex, correct: &CpuIndex) {
        let c = reduce::count_correct(n, classes, &logits.borrow()[..n * classes], &labels.borrow()[..n]);
        correct.borrow_mut()[0] += c;
    }
    fn adam(
        &mut self,
        cfg: &AdamConfig,
        step: u32,
        len: usize,
        param: &CpuTensor<T>,
        grad: &CpuTensor<T>,
        m: &CpuTensor<T>,
        v: &CpuTensor<T>,
    ) {
        adam::step(
            cfg,
            step,
            &mut param.borrow_mut()[..len],
            &grad.borrow()[..len],
            &mut m.borrow_mut()[..len],
            &mut v.borrow_mut()[..len],
        );
    }
}
