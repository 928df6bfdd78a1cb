//! `CpuBackend<T>`: the `Backend` that runs every op at once through the reference
//! functions. `Cpu` (f32) is the reference the shaders are checked against; `Cpu64` runs the
//! whole model in f64 for finite-difference gradient checks.
//!
//! A tensor is a view (offset, length) of a shared vector, as GPU tensors are views of
//! device buffers. Like WebGPU, an op may not write a vector that it also reads, even
//! through another view: `run` checks that and panics, so a layer that breaks the rule
//! fails its CPU tests rather than only a GPU validation layer. Tensors may be longer than
//! an op's shape (activations are allocated for the largest batch): every op works on the
//! prefix its shape covers, as the GPU kernels do.

use std::cell::{Ref, RefCell, RefMut};
use std::marker::PhantomData;
use std::rc::Rc;

use super::{activation, adam, batchnorm, conv2d, gather, matmul, maxpool, reduce, Real};
use crate::backend::{Backend, Op, PendingRead};
use crate::shapes::BatchNormShape;

/// Elements `offset .. offset + len` of a shared vector.
#[derive(Debug)]
pub struct CpuTensor<T = f32> {
    data: Rc<RefCell<Vec<T>>>,
    offset: usize,
    len: usize,
}

impl<T> Clone for CpuTensor<T> {
    fn clone(&self) -> Self {
        CpuTensor { data: self.data.clone(), offset: self.offset, len: self.len }
    }
}

impl<T> CpuTensor<T> {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The first `n` elements of the view.
    fn get(&self, n: usize) -> Ref<'_, [T]> {
        assert!(n <= self.len, "an op reads {n} elements of a tensor of {}", self.len);
        Ref::map(self.data.borrow(), |v| &v[self.offset..self.offset + n])
    }
    fn get_mut(&self, n: usize) -> RefMut<'_, [T]> {
        assert!(n <= self.len, "an op writes {n} elements of a tensor of {}", self.len);
        RefMut::map(self.data.borrow_mut(), |v| &mut v[self.offset..self.offset + n])
    }
    fn same_vector(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.data, &other.data)
    }
}

pub type CpuIndex = Rc<RefCell<Vec<u32>>>;

/// The u8 images [count, pixels] and labels [count] of a dataset.
pub struct CpuDataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub pixels: usize,
}

impl crate::backend::DatasetShape for CpuDataset {
    fn pixels(&self) -> usize {
        self.pixels
    }
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
        t.get_mut(data.len()).copy_from_slice(data);
    }
    /// The tensor as f32 (the op results are there at once).
    fn read_now(&self, t: &CpuTensor<T>) -> Vec<f32> {
        t.get(t.len).iter().map(|v| v.to_f64() as f32).collect()
    }

    pub fn read_exact(&mut self, t: &CpuTensor<T>) -> Vec<T> {
        t.get(t.len).to_vec()
    }
}

/// Panics if an output shares its vector with an input or another output (WebGPU's rule,
/// except that outputs may share: they are written one after the other here, and the GPU
/// binds them all writable, which WebGPU allows).
fn check_aliasing<T>(op: &str, inputs: &[&CpuTensor<T>], outputs: &[&CpuTensor<T>]) {
    for o in outputs {
        assert!(!inputs.iter().any(|i| i.same_vector(o)), "{op}: an output shares its buffer with an input");
    }
}

impl<T: Real> Backend for CpuBackend<T> {
    type Tensor = CpuTensor<T>;
    type Index = CpuIndex;
    type Dataset = CpuDataset;

    fn name(&self) -> String {
        if std::mem::size_of::<T>() == 4 { "CPU reference" } else { "CPU reference (f64)" }.to_string()
    }

    fn tensor(&mut self, len: usize) -> CpuTensor<T> {
        CpuTensor { data: Rc::new(RefCell::new(vec![T::zero(); len])), offset: 0, len }
    }
    fn index(&mut self, len: usize) -> CpuIndex {
        Rc::new(RefCell::new(vec![0; len]))
    }
    fn view(&mut self, t: &CpuTensor<T>, offset: usize, len: usize) -> CpuTensor<T> {
        assert!(offset + len <= t.len, "a view of {len} at {offset} into a tensor of {}", t.len);
        CpuTensor { data: t.data.clone(), offset: t.offset + offset, len }
    }
    fn clear(&mut self, t: &CpuTensor<T>) {
        t.get_mut(t.len).fill(T::zero());
    }
    /// Overwrites the first data.len() elements (as queue.write_buffer).
    fn write(&mut self, t: &CpuTensor<T>, data: &[f32]) {
        for (d, &s) in t.get_mut(data.len()).iter_mut().zip(data) {
            *d = T::from_f64(s as f64);
        }
    }
    fn write_index(&mut self, t: &CpuIndex, data: &[u32]) {
        t.borrow_mut()[..data.len()].copy_from_slice(data);
    }
    async fn read_async(&mut self, t: &CpuTensor<T>) -> Vec<f32> {
        self.read_now(t)
    }
    async fn read_index_async(&mut self, t: &CpuIndex) -> Vec<u32> {
        t.borrow().clone()
    }
    fn read_soon(&mut self, t: &CpuTensor<T>, i: &CpuIndex) -> PendingRead {
        PendingRead::Done(self.read_now(t), i.borrow().clone())
    }
    fn submit(&mut self) {}

    fn memory_budget(&self) -> Option<crate::nn::sizer::Budget> {
        crate::nn::sizer::Budget::host()
    }

    fn dataset(&mut self, images: &[u8], labels: &[u8], pixels: usize) -> CpuDataset {
        CpuDataset { images: images.to_vec(), labels: labels.to_vec(), pixels }
    }

    fn run(&mut self, op: Op<'_, CpuTensor<T>, CpuIndex, CpuDataset>) {
        let kind = op.kind();
        match op {
            Op::Gather { ds, perm, offset, n, x, y } => {
                let mut xf = vec![0f32; n * ds.pixels];
                gather::gather(&ds.images, &ds.labels, ds.pixels, &perm.borrow(), offset, n, &mut xf, &mut y.borrow_mut());
                self.write(x, &xf);
            }
            Op::Conv2dForward { s, x, w, b, y } => {
                check_aliasing(kind, &[x, w, b], &[y]);
                conv2d::forward(&s, &x.get(s.x_len()), &w.get(s.w_len()), &b.get(s.c_out), &mut y.get_mut(s.y_len()));
            }
            Op::Conv2dGradInput { s, dy, w, dx } => {
                check_aliasing(kind, &[dy, w], &[dx]);
                conv2d::grad_input(&s, &dy.get(s.y_len()), &w.get(s.w_len()), &mut dx.get_mut(s.x_len()));
            }
            Op::Conv2dGradWeight { s, x, dy, dw, db } => {
                let mut outputs = vec![dw];
                outputs.extend(db);
                check_aliasing(kind, &[x, dy], &outputs);
                conv2d::grad_weight(&s, &x.get(s.x_len()), &dy.get(s.y_len()), &mut dw.get_mut(s.w_len()));
                if let Some(db) = db {
                    conv2d::grad_bias(&s, &dy.get(s.y_len()), &mut db.get_mut(s.c_out));
                }
            }
            Op::MaxpoolForward { s, relu, normalize, x, y, argmax } => {
                let mut inputs = vec![x];
                if let Some(n) = normalize {
                    inputs.extend([n.mean, n.var, n.gamma, n.beta]);
                }
                check_aliasing(kind, &inputs, &[y]);
                // The twin of the fused kernel: the composition of the reference ops.
                let mut x = x.get(s.x_len()).to_vec();
                if let Some(n) = normalize {
                    let bs = BatchNormShape { n: s.n, c: s.c, hw: s.h * s.w };
                    let raw = x.clone();
                    batchnorm::normalize(&bs, &raw, &n.mean.get(s.c), &n.var.get(s.c), &n.gamma.get(s.c), &n.beta.get(s.c), &mut x);
                }
                maxpool::forward_fused(&s, relu, &x, &mut y.get_mut(s.y_len()), &mut argmax.borrow_mut()[..s.y_len()]);
            }
            Op::MaxpoolBackward { s, dy, argmax, dx } => {
                check_aliasing(kind, &[dy], &[dx]);
                maxpool::backward(&s, &dy.get(s.y_len()), &argmax.borrow()[..s.y_len()], &mut dx.get_mut(s.x_len()));
            }
            Op::BatchnormStats { s, x, mean, var, running_mean, running_var } => {
                check_aliasing(kind, &[x], &[mean, var, running_mean, running_var]);
                let c = s.c;
                let (mut m, mut v) = (vec![T::zero(); c], vec![T::zero(); c]);
                batchnorm::stats(&s, &x.get(s.len()), &mut m, &mut v);
                mean.get_mut(c).copy_from_slice(&m);
                var.get_mut(c).copy_from_slice(&v);
                let (mut rm, mut rv) = (running_mean.get(c).to_vec(), running_var.get(c).to_vec());
                batchnorm::update_running(&s, &m, &v, &mut rm, &mut rv);
                running_mean.get_mut(c).copy_from_slice(&rm);
                running_var.get_mut(c).copy_from_slice(&rv);
            }
            Op::BatchnormNormalize { s, x, mean, var, gamma, beta, y } => {
                check_aliasing(kind, &[x, mean, var, gamma, beta], &[y]);
                let c = s.c;
                batchnorm::normalize(
                    &s,
                    &x.get(s.len()),
                    &mean.get(c),
                    &var.get(c),
                    &gamma.get(c),
                    &beta.get(c),
                    &mut y.get_mut(s.len()),
                );
            }
            Op::BatchnormBackward { s, x, dy, pooled, mean, var, gamma, dx, dgamma, dbeta } => {
                check_aliasing(kind, &[x, dy, mean, var, gamma], &[dx, dgamma, dbeta]);
                let c = s.c;
                // The twin of the fused kernels: the pool's backward, then this one.
                let dy = match pooled {
                    Some((ps, argmax)) => {
                        let mut routed = vec![T::zero(); s.len()];
                        maxpool::backward(&ps, &dy.get(ps.y_len()), &argmax.borrow()[..ps.y_len()], &mut routed);
                        routed
                    }
                    None => dy.get(s.len()).to_vec(),
                };
                // dgamma and dbeta are usually two views of one gradient store: work on copies.
                let (mut dg, mut db) = (dgamma.get(c).to_vec(), dbeta.get(c).to_vec());
                batchnorm::backward(
                    &s,
                    &x.get(s.len()),
                    &dy,
                    &mean.get(c),
                    &var.get(c),
                    &gamma.get(c),
                    &mut dx.get_mut(s.len()),
                    &mut dg,
                    &mut db,
                );
                dgamma.get_mut(c).copy_from_slice(&dg);
                dbeta.get_mut(c).copy_from_slice(&db);
            }
            Op::ReluForward { len, x, y } => {
                check_aliasing(kind, &[x], &[y]);
                activation::relu_forward(&x.get(len), &mut y.get_mut(len));
            }
            Op::ReluBackward { len, y, dy, dx } => {
                check_aliasing(kind, &[y, dy], &[dx]);
                activation::relu_backward(&y.get(len), &dy.get(len), &mut dx.get_mut(len));
            }
            Op::Matmul { s, a, b, bias, fused, c } => {
                let mut inputs = vec![a, b];
                inputs.extend(bias);
                inputs.extend(fused.mask);
                let mut outputs = vec![c];
                outputs.extend(fused.bias_grad);
                check_aliasing(kind, &inputs, &outputs);
                assert!(fused.mask.is_none() || !(fused.relu || bias.is_some()), "{kind}: {s:?}: exclusive options");
                let (a, b) = (a.get(s.m * s.k), b.get(s.k * s.n));
                let bias = bias.map(|t| t.get(s.n));
                let mask = fused.mask.map(|t| t.get(s.m * s.n));
                let epilogue = match (fused.relu, mask.as_deref()) {
                    (true, _) => matmul::Epilogue::Relu,
                    (false, Some(mask)) => matmul::Epilogue::Mask(mask),
                    (false, None) => matmul::Epilogue::None,
                };
                matmul::matmul_fused(&s, &a, &b, bias.as_deref(), epilogue, &mut c.get_mut(s.m * s.n));
                if let Some(db) = fused.bias_grad {
                    matmul::add_row_sums(&s, &a, &mut db.get_mut(s.m));
                }
            }
            Op::SumRows { rows, cols, x, out } => {
                check_aliasing(kind, &[x], &[out]);
                reduce::sum_rows(rows, cols, &x.get(rows * cols), &mut out.get_mut(cols));
            }
            Op::SoftmaxCrossEntropy { n, classes, logits, labels, loss, dlogits, state } => {
                check_aliasing(kind, &[logits], &[loss, dlogits]);
                let len = n * classes;
                let l = reduce::softmax_cross_entropy(n, classes, &logits.get(len), &labels.borrow()[..n], &mut dlogits.get_mut(len));
                loss.get_mut(1)[0] = l;
                reduce::count_step(l.to_f64(), &mut state.borrow_mut()[..2]);
            }
            Op::CountCorrect { n, classes, logits, labels, correct } => {
                let c = reduce::count_correct(n, classes, &logits.get(n * classes), &labels.borrow()[..n]);
                correct.borrow_mut()[0] += c;
            }
            Op::Confusion { n, classes, logits, labels, counts } => {
                reduce::confusion(n, classes, &logits.get(n * classes), &labels.borrow()[..n], &mut counts.borrow_mut()[..classes * classes]);
            }
            Op::Adam { cfg, step, len, state, param, grad, m, v } => {
                check_aliasing(kind, &[grad], &[param, m, v]);
                let t = state.borrow()[0];
                assert_eq!(t, step, "adam: the device counted {t} training steps, the host {step}");
                adam::step(&cfg, t, &mut param.get_mut(len), &grad.get(len), &mut m.get_mut(len), &mut v.get_mut(len));
            }
        }
    }
}
