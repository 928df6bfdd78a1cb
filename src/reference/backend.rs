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
use std::rc::Rc;

use super::{activation, adam, avgpool, batchnorm, conv2d, gather, matmul, maxpool, reduce, sgd, Real};
use crate::backend::{Backend, Op, PendingRead};
use crate::memlimit::Refusal;
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

/// The reference backend. Its buffers are host memory, allocated fallibly: the trait's
/// `tensor` cannot return an error, so a refused allocation is recorded (the first one, with
/// what was granted before it), every later allocation and op does nothing, and
/// `refused_allocation` hands the refusal to the caller (`Model::build`, `train`), which
/// turns it into an error instead of the process aborting.
///
/// The few ops that need a temporary as large as an activation (the normalized input of a
/// fused pool, the routed gradient of a fused batch norm) use `scratch`, which is reserved,
/// fallibly, as long as the longest tensor when that tensor is allocated: no op allocates
/// anything of a batch's size while training (`nn::sizer` counts the scratch).
pub struct CpuBackend<T: Real> {
    /// Bytes of buffers allocated so far.
    granted: u64,
    refused: Option<Refusal>,
    scratch: Vec<T>,
}

impl<T: Real> Default for CpuBackend<T> {
    fn default() -> Self {
        CpuBackend { granted: 0, refused: None, scratch: Vec::new() }
    }
}

/// The f32 reference backend.
pub type Cpu = CpuBackend<f32>;
/// The same reference in f64, for gradient checks of the whole model.
pub type Cpu64 = CpuBackend<f64>;

impl<T: Real> CpuBackend<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A vector of `len` copies of `value` for `what`, or (after recording the refusal) an
    /// empty one when the host refuses the memory or refused an earlier allocation.
    fn alloc<E: Clone>(&mut self, len: usize, value: E, what: impl FnOnce() -> String) -> Vec<E> {
        if self.refused.is_none() {
            let bytes = len.saturating_mul(std::mem::size_of::<E>()) as u64;
            let mut v = Vec::new();
            if v.try_reserve_exact(len).is_ok() {
                v.resize(len, value);
                self.granted += bytes;
                return v;
            }
            self.refused = Some(Refusal { what: what(), bytes, granted: self.granted });
        }
        Vec::new()
    }

    /// The scratch vector, `len` zeros long (within its reserved capacity); put it back in
    /// `self.scratch` after use.
    fn take_scratch(&mut self, len: usize) -> Vec<T> {
        let mut v = std::mem::take(&mut self.scratch);
        v.clear();
        v.resize(len, T::zero());
        v
    }

    /// A copy of `src` for `what` (see [`Self::alloc`]).
    fn copy_of(&mut self, src: &[u8], what: impl FnOnce() -> String) -> Vec<u8> {
        let mut v = Vec::new();
        if self.refused.is_none() {
            if v.try_reserve_exact(src.len()).is_ok() {
                v.extend_from_slice(src);
                self.granted += src.len() as u64;
            } else {
                self.refused = Some(Refusal { what: what(), bytes: src.len() as u64, granted: self.granted });
            }
        }
        v
    }
    /// Writes values at full precision (the trait's `write` takes f32).
    pub fn write_exact(&mut self, t: &CpuTensor<T>, data: &[T]) {
        t.get_mut(data.len()).copy_from_slice(data);
    }
    /// The tensor as f32 (the op results are there at once).
    fn read_now(&self, t: &CpuTensor<T>) -> Vec<f32> {
        if self.refused.is_some() {
            return Vec::new();
        }
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
        let bits = 8 * std::mem::size_of::<T>();
        let data = self.alloc(len, T::zero(), || format!("a tensor of {len} f{bits} elements"));
        if len > self.scratch.capacity() && self.refused.is_none() {
            let bytes = (len * std::mem::size_of::<T>()) as u64;
            let before = (self.scratch.capacity() * std::mem::size_of::<T>()) as u64;
            match self.scratch.try_reserve_exact(len - self.scratch.len()) {
                Ok(()) => self.granted += bytes - before,
                Err(_) => self.refused = Some(Refusal { what: format!("the scratch buffer of {len} f{bits} elements (one op's temporary)"), bytes, granted: self.granted }),
            }
        }
        CpuTensor { data: Rc::new(RefCell::new(data)), offset: 0, len }
    }
    fn index(&mut self, len: usize) -> CpuIndex {
        Rc::new(RefCell::new(self.alloc(len, 0, || format!("an index buffer of {len} u32 elements"))))
    }
    fn refused_allocation(&self) -> Option<Refusal> {
        self.refused.clone()
    }
    fn view(&mut self, t: &CpuTensor<T>, offset: usize, len: usize) -> CpuTensor<T> {
        assert!(offset + len <= t.len, "a view of {len} at {offset} into a tensor of {}", t.len);
        CpuTensor { data: t.data.clone(), offset: t.offset + offset, len }
    }
    fn clear(&mut self, t: &CpuTensor<T>) {
        if self.refused.is_some() {
            return; // a buffer may be missing: the caller is about to report the refusal
        }
        t.get_mut(t.len).fill(T::zero());
    }
    /// Overwrites the first data.len() elements (as queue.write_buffer).
    fn write(&mut self, t: &CpuTensor<T>, data: &[f32]) {
        if self.refused.is_some() {
            return; // a buffer may be missing: the caller is about to report the refusal
        }
        for (d, &s) in t.get_mut(data.len()).iter_mut().zip(data) {
            *d = T::from_f64(s as f64);
        }
    }
    fn write_index(&mut self, t: &CpuIndex, data: &[u32]) {
        if self.refused.is_some() {
            return; // a buffer may be missing: the caller is about to report the refusal
        }
        t.borrow_mut()[..data.len()].copy_from_slice(data);
    }
    async fn read_async(&mut self, t: &CpuTensor<T>) -> Vec<f32> {
        self.read_now(t)
    }
    async fn read_index_async(&mut self, t: &CpuIndex) -> Vec<u32> {
        if self.refused.is_some() {
            return Vec::new();
        }
        t.borrow().clone()
    }
    fn read_soon(&mut self, t: &CpuTensor<T>, i: &CpuIndex) -> PendingRead {
        let index = if self.refused.is_some() { Vec::new() } else { i.borrow().clone() };
        PendingRead::Done(self.read_now(t), index)
    }
    fn submit(&mut self) {}

    fn memory_budget(&self) -> Option<crate::nn::sizer::Budget> {
        crate::nn::sizer::Budget::host()
    }

    fn dataset(&mut self, images: &[u8], labels: &[u8], pixels: usize) -> CpuDataset {
        let count = labels.len();
        let images = self.copy_of(images, || format!("a data set of {count} images ({} pixel bytes)", images.len()));
        let labels = self.copy_of(labels, || format!("the labels of a data set of {count} images"));
        CpuDataset { images, labels, pixels }
    }

    fn run(&mut self, op: Op<'_, CpuTensor<T>, CpuIndex, CpuDataset>) {
        if self.refused.is_some() {
            return; // a buffer may be missing: the caller is about to report the refusal
        }
        let kind = op.kind();
        match op {
            Op::Gather { ds, perm, offset, n, x, y } => {
                // Row by row through a one-image buffer: no batch-sized temporary.
                let p = ds.pixels;
                let (perm, mut y, mut x) = (perm.borrow(), y.borrow_mut(), x.get_mut(n * p));
                let mut row = vec![0f32; p];
                for i in 0..n {
                    gather::gather(&ds.images, &ds.labels, p, &perm, offset + i, 1, &mut row, &mut y[i..]);
                    for (d, &s) in x[i * p..(i + 1) * p].iter_mut().zip(&row) {
                        *d = T::from_f64(s as f64);
                    }
                }
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
                // The twin of the fused kernel: the composition of the reference ops (the one
                // temporary, the normalized input, is in `nn::sizer`'s host estimate).
                let x = x.get(s.x_len());
                let fused_bn = normalize.is_some();
                let mut normalized = self.take_scratch(if fused_bn { s.x_len() } else { 0 });
                if let Some(n) = normalize {
                    let bs = BatchNormShape { n: s.n, c: s.c, hw: s.h * s.w };
                    batchnorm::normalize(&bs, &x, &n.mean.get(s.c), &n.var.get(s.c), &n.gamma.get(s.c), &n.beta.get(s.c), &mut normalized);
                }
                let input = if fused_bn { &normalized[..] } else { &x[..] };
                maxpool::forward_fused(&s, relu, input, &mut y.get_mut(s.y_len()), &mut argmax.borrow_mut()[..s.y_len()]);
                self.scratch = normalized;
            }
            Op::MaxpoolBackward { s, dy, argmax, dx } => {
                check_aliasing(kind, &[dy], &[dx]);
                maxpool::backward(&s, &dy.get(s.y_len()), &argmax.borrow()[..s.y_len()], &mut dx.get_mut(s.x_len()));
            }
            Op::AvgpoolForward { s, x, y } => {
                check_aliasing(kind, &[x], &[y]);
                avgpool::forward(&s, &x.get(s.x_len()), &mut y.get_mut(s.y_len()));
            }
            Op::AvgpoolBackward { s, dy, dx } => {
                check_aliasing(kind, &[dy], &[dx]);
                avgpool::backward(&s, &dy.get(s.y_len()), &mut dx.get_mut(s.x_len()));
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
                let mut routed = self.take_scratch(s.len());
                match pooled {
                    Some((ps, argmax)) => maxpool::backward(&ps, &dy.get(ps.y_len()), &argmax.borrow()[..ps.y_len()], &mut routed),
                    None => routed.copy_from_slice(&dy.get(s.len())),
                }
                let dy = &routed;
                // dgamma and dbeta are usually two views of one gradient store: work on copies.
                let (mut dg, mut db) = (dgamma.get(c).to_vec(), dbeta.get(c).to_vec());
                batchnorm::backward(
                    &s,
                    &x.get(s.len()),
                    dy,
                    &mean.get(c),
                    &var.get(c),
                    &gamma.get(c),
                    &mut dx.get_mut(s.len()),
                    &mut dg,
                    &mut db,
                );
                dgamma.get_mut(c).copy_from_slice(&dg);
                dbeta.get_mut(c).copy_from_slice(&db);
                self.scratch = routed;
            }
            Op::ReluForward { len, x, y } => {
                check_aliasing(kind, &[x], &[y]);
                activation::relu_forward(&x.get(len), &mut y.get_mut(len));
            }
            Op::ReluBackward { len, y, dy, dx } => {
                check_aliasing(kind, &[y, dy], &[dx]);
                activation::relu_backward(&y.get(len), &dy.get(len), &mut dx.get_mut(len));
            }
            Op::ActivationForward { f, len, x, y } => {
                check_aliasing(kind, &[x], &[y]);
                activation::forward(f, &x.get(len), &mut y.get_mut(len));
            }
            Op::ActivationBackward { f, len, y, dy, dx } => {
                check_aliasing(kind, &[y, dy], &[dx]);
                activation::backward(f, &y.get(len), &dy.get(len), &mut dx.get_mut(len));
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
            Op::Sgd { cfg, first, len, param, grad, buf } => {
                check_aliasing(kind, &[grad], &[param, buf]);
                sgd::step(&cfg, first, &mut param.get_mut(len), &grad.get(len), &mut buf.get_mut(len));
            }
        }
    }
}
