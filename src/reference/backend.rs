//! `Cpu`: the `Backend` that runs every op at once through the f32 reference functions.
//! Handles are shared vectors; an op borrows its inputs and mutably borrows its outputs, so
//! passing one handle as both input and output (forbidden by the trait) panics here.

use std::cell::RefCell;
use std::rc::Rc;

use super::{activation, adam, batchnorm, conv2d, gather, matmul, maxpool, reduce};
use crate::backend::Backend;
use crate::shapes::{AdamConfig, BatchNormShape, Conv2dShape, MatmulShape, PoolShape};

pub type CpuTensor = Rc<RefCell<Vec<f32>>>;
pub type CpuIndex = Rc<RefCell<Vec<u32>>>;

/// The u8 images [count, pixels] and labels [count] of a dataset.
pub struct CpuDataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub pixels: usize,
}

#[derive(Default)]
pub struct Cpu;

impl Cpu {
    pub fn new() -> Self {
        Cpu
    }
}

impl Backend for Cpu {
    type Tensor = CpuTensor;
    type Index = CpuIndex;
    type Dataset = CpuDataset;

    fn name(&self) -> String {
        "CPU reference".to_string()
    }

    fn tensor(&mut self, len: usize) -> CpuTensor {
        Rc::new(RefCell::new(vec![0.0; len]))
    }
    fn index(&mut self, len: usize) -> CpuIndex {
        Rc::new(RefCell::new(vec![0; len]))
    }
    /// Overwrites the first data.len() elements (as queue.write_buffer).
    fn write(&mut self, t: &CpuTensor, data: &[f32]) {
        t.borrow_mut()[..data.len()].copy_from_slice(data);
    }
    fn write_index(&mut self, t: &CpuIndex, data: &[u32]) {
        t.borrow_mut()[..data.len()].copy_from_slice(data);
    }
    fn read(&mut self, t: &CpuTensor) -> Vec<f32> {
        t.borrow().clone()
    }
    fn read_index(&mut self, t: &CpuIndex) -> Vec<u32> {
        t.borrow().clone()
    }
    fn submit(&mut self) {}

    fn dataset(&mut self, images: &[u8], labels: &[u8], pixels: usize) -> CpuDataset {
        CpuDataset { images: images.to_vec(), labels: labels.to_vec(), pixels }
    }
    fn gather(&mut self, ds: &CpuDataset, perm: &CpuIndex, offset: usize, n: usize, x: &CpuTensor, y: &CpuIndex) {
        gather::gather(
            &ds.images,
            &ds.labels,
            ds.pixels,
            &perm.borrow(),
            offset,
            n,
            &mut x.borrow_mut(),
            &mut y.borrow_mut(),
        );
    }

    fn conv2d_forward(&mut self, s: &Conv2dShape, x: &CpuTensor, w: &CpuTensor, b: &CpuTensor, y: &CpuTensor) {
        conv2d::forward(s, &x.borrow(), &w.borrow(), &b.borrow(), &mut y.borrow_mut());
    }
    fn conv2d_grad_input(&mut self, s: &Conv2dShape, dy: &CpuTensor, w: &CpuTensor, dx: &CpuTensor) {
        conv2d::grad_input(s, &dy.borrow(), &w.borrow(), &mut dx.borrow_mut());
    }
    fn conv2d_grad_weight(&mut self, s: &Conv2dShape, x: &CpuTensor, dy: &CpuTensor, dw: &CpuTensor) {
        conv2d::grad_weight(s, &x.borrow(), &dy.borrow(), &mut dw.borrow_mut());
    }
    fn conv2d_grad_bias(&mut self, s: &Conv2dShape, dy: &CpuTensor, db: &CpuTensor) {
        conv2d::grad_bias(s, &dy.borrow(), &mut db.borrow_mut());
    }

    fn maxpool_forward(&mut self, s: &PoolShape, x: &CpuTensor, y: &CpuTensor, argmax: &CpuIndex) {
        maxpool::forward(s, &x.borrow(), &mut y.borrow_mut(), &mut argmax.borrow_mut());
    }
    fn maxpool_backward(&mut self, s: &PoolShape, dy: &CpuTensor, argmax: &CpuIndex, dx: &CpuTensor) {
        maxpool::backward(s, &dy.borrow(), &argmax.borrow(), &mut dx.borrow_mut());
    }

    fn batchnorm_stats(&mut self, s: &BatchNormShape, x: &CpuTensor, mean: &CpuTensor, var: &CpuTensor) {
        batchnorm::stats(s, &x.borrow(), &mut mean.borrow_mut(), &mut var.borrow_mut());
    }
    fn batchnorm_normalize(
        &mut self,
        s: &BatchNormShape,
        x: &CpuTensor,
        mean: &CpuTensor,
        var: &CpuTensor,
        gamma: &CpuTensor,
        beta: &CpuTensor,
        y: &CpuTensor,
    ) {
        batchnorm::normalize(
            s,
            &x.borrow(),
            &mean.borrow(),
            &var.borrow(),
            &gamma.borrow(),
            &beta.borrow(),
            &mut y.borrow_mut(),
        );
    }
    fn batchnorm_update_running(
        &mut self,
        s: &BatchNormShape,
        mean: &CpuTensor,
        var: &CpuTensor,
        running_mean: &CpuTensor,
        running_var: &CpuTensor,
    ) {
        batchnorm::update_running(
            s,
            &mean.borrow(),
            &var.borrow(),
            &mut running_mean.borrow_mut(),
            &mut running_var.borrow_mut(),
        );
    }
    fn batchnorm_backward(
        &mut self,
        s: &BatchNormShape,
        x: &CpuTensor,
        dy: &CpuTensor,
        mean: &CpuTensor,
        var: &CpuTensor,
        gamma: &CpuTensor,
        dx: &CpuTensor,
        dgamma: &CpuTensor,
        dbeta: &CpuTensor,
    ) {
        batchnorm::backward(
            s,
            &x.borrow(),
            &dy.borrow(),
            &mean.borrow(),
            &var.borrow(),
            &gamma.borrow(),
            &mut dx.borrow_mut(),
            &mut dgamma.borrow_mut(),
            &mut dbeta.borrow_mut(),
        );
    }

    fn relu_forward(&mut self, len: usize, x: &CpuTensor, y: &CpuTensor) {
        activation::relu_forward(&x.borrow()[..len], &mut y.borrow_mut()[..len]);
    }
    fn relu_backward(&mut self, len: usize, y: &CpuTensor, dy: &CpuTensor, dx: &CpuTensor) {
        activation::relu_backward(&y.borrow()[..len], &dy.borrow()[..len], &mut dx.borrow_mut()[..len]);
    }

    fn matmul(&mut self, s: &MatmulShape, a: &CpuTensor, b: &CpuTensor, bias: Option<&CpuTensor>, c: &CpuTensor) {
        let bias = bias.map(|t| t.borrow());
        matmul::matmul(s, &a.borrow(), &b.borrow(), bias.as_ref().map(|v| v.as_slice()), &mut c.borrow_mut());
    }

    fn sum_rows(&mut self, rows: usize, cols: usize, x: &CpuTensor, out: &CpuTensor) {
        reduce::sum_rows(rows, cols, &x.borrow()[..rows * cols], &mut out.borrow_mut()[..cols]);
    }
    fn softmax_cross_entropy(
        &mut self,
        n: usize,
        classes: usize,
        logits: &CpuTensor,
        labels: &CpuIndex,
        loss: &CpuTensor,
        dlogits: &CpuTensor,
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
    }
    fn count_correct(&mut self, n: usize, classes: usize, logits: &CpuTensor, labels: &CpuIndex, correct: &CpuIndex) {
        let c = reduce::count_correct(n, classes, &logits.borrow()[..n * classes], &labels.borrow()[..n]);
        correct.borrow_mut()[0] += c;
    }
    fn flag_nonfinite(&mut self, loss: &CpuTensor, step: u32, flag: &CpuIndex) {
        let mut flag = flag.borrow_mut();
        if !loss.borrow()[0].is_finite() && flag[0] == 0 {
            flag[0] = step;
        }
    }

    fn adam(
        &mut self,
        cfg: &AdamConfig,
        step: u32,
        len: usize,
        param: &CpuTensor,
        grad: &CpuTensor,
        m: &CpuTensor,
        v: &CpuTensor,
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
