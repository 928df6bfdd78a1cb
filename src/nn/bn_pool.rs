//! BatchNorm2d and MaxPool2d: the two layers that fuse with each other (src/nn/fuse.rs).
//! A BatchNorm2d followed by a MaxPool2d computes only its statistics in the forward; the
//! pool normalises as it reads (and may apply a ReLU after); in the backward the
//! BatchNorm2d takes the pool's output gradient and does the pool's backward itself.

use std::cell::Cell;
use std::rc::Rc;

use super::layers::{grad_buffer, saved, Scopes};
use super::store::{Builder, Init, ParamId, Store};
use super::{Feat, Layer};
use crate::backend::{Backend, Normalize, Op};
use crate::shapes::{BatchNormShape, PoolShape};

/// BatchNorm2d; built with `normalized_by_next`, its forward computes the statistics only
/// and returns x itself, and the next layer (a pool) normalises as it reads; with
/// `fold_pool_backward`, its backward takes that pool's output gradient and does the
/// pool's backward too.
pub struct BatchNorm2d<B: Backend> {
    scopes: Scopes,
    s: BatchNormShape,
    gamma: ParamId,
    beta: ParamId,
    running_mean: B::Tensor,
    running_var: B::Tensor,
    num_batches_tracked: Rc<Cell<i64>>,
    /// The last training batch's statistics.
    mean: B::Tensor,
    var: B::Tensor,
    /// None when the next layer normalises.
    y: Option<B::Tensor>,
    /// The next MaxPool2d's shape and argmax, when this backward does that pool's.
    pooled: Option<(PoolShape, B::Index)>,
    dx: Option<B::Tensor>,
    x: Option<B::Tensor>,
}

/// What a layer needs to run a BatchNorm2d's normalisation for it.
#[derive(Clone)]
pub struct Normalization<B: Backend> {
    mean: B::Tensor,
    var: B::Tensor,
    running_mean: B::Tensor,
    running_var: B::Tensor,
    gamma: ParamId,
    beta: ParamId,
}

impl<B: Backend> Normalization<B> {
    /// The batch statistics in training, the running ones in eval.
    fn op<'a>(&'a self, store: &'a Store<B>, train: bool) -> Normalize<'a, B::Tensor> {
        let (mean, var) = if train { (&self.mean, &self.var) } else { (&self.running_mean, &self.running_var) };
        Normalize { mean, var, gamma: store.value(self.gamma), beta: store.value(self.beta) }
    }
}

impl<B: Backend> BatchNorm2d<B> {
    /// A BatchNorm2d whose next layer normalises its input (see `MaxPool2d::with_normalize`).
    pub fn normalized_by_next(b: &mut Builder<B>, path: &str, x: Feat, c: usize) -> (Self, Normalization<B>) {
        let bn = Self::build(b, path, x, c, false);
        let n = Normalization {
            mean: bn.mean.clone(),
            var: bn.var.clone(),
            running_mean: bn.running_mean.clone(),
            running_var: bn.running_var.clone(),
            gamma: bn.gamma,
            beta: bn.beta,
        };
        (bn, n)
    }

    /// From now on, backward receives the gradient of this pool's output (the pool passes
    /// it through, see `MaxPool2d::backward_done_by_prev`).
    pub fn fold_pool_backward(&mut self, pool: &MaxPool2d<B>) {
        assert!(pool.s.disjoint(), "the fused backward routes through windows that do not overlap");
        self.pooled = Some((pool.s, pool.argmax.clone()));
    }

    pub fn new(b: &mut Builder<B>, path: &str, x: Feat, c: usize) -> Self {
        Self::build(b, path, x, c, true)
    }

    fn build(b: &mut Builder<B>, path: &str, x: Feat, c: usize, with_y: bool) -> Self {
        let s = BatchNormShape { n: b.capacity, c, hw: x.h * x.w };
        let gamma = b.param(format!("{path}.weight"), &[c], Init::Ones);
        let beta = b.param(format!("{path}.bias"), &[c], Init::Zeros);
        let running_mean = b.buffer(format!("{path}.running_mean"), &[c], 0.0);
        let running_var = b.buffer(format!("{path}.running_var"), &[c], 1.0);
        let num_batches_tracked = b.counter(format!("{path}.num_batches_tracked"));
        let (mean, var) = (b.be.tensor(c), b.be.tensor(c));
        let y = with_y.then(|| b.activation(x.len()));
        BatchNorm2d { scopes: Scopes::new(path), s, gamma, beta, running_mean, running_var, num_batches_tracked, mean, var, y, pooled: None, dx: None, x: None }
    }
}

impl<B: Backend> Layer<B> for BatchNorm2d<B> {
    fn forward(&mut self, be: &mut B, store: &Store<B>, x: &B::Tensor, n: usize, train: bool) -> B::Tensor {
        be.scope(&self.scopes.forward);
        let s = BatchNormShape { n, ..self.s };
        let (gamma, beta) = (store.value(self.gamma), store.value(self.beta));
        if train {
            let (mean, var) = (&self.mean, &self.var);
            be.run(Op::BatchnormStats { s, x, mean, var, running_mean: &self.running_mean, running_var: &self.running_var });
            self.num_batches_tracked.set(self.num_batches_tracked.get() + 1);
            self.x = Some(x.clone());
        }
        let Some(y) = &self.y else {
            return x.clone(); // the next layer normalises
        };
        let (mean, var) = if train { (&self.mean, &self.var) } else { (&self.running_mean, &self.running_var) };
        be.run(Op::BatchnormNormalize { s, x, mean, var, gamma, beta, y });
        y.clone()
    }

    fn backward(&mut self, be: &mut B, store: &Store<B>, dy: &B::Tensor, n: usize, _need_dx: bool) -> Option<B::Tensor> {
        be.scope(&self.scopes.backward);
        let s = BatchNormShape { n, ..self.s };
        let x = saved(&self.x);
        // The op computes dx with the parameter gradients, so it is always there.
        let dx = grad_buffer(be, &mut self.dx, self.s.len());
        be.run(Op::BatchnormBackward {
            s,
            x: &x,
            dy,
            pooled: self.pooled.as_ref().map(|(ps, argmax)| (PoolShape { n, ..*ps }, argmax)),
            mean: &self.mean,
            var: &self.var,
            gamma: store.value(self.gamma),
            dx: &dx,
            dgamma: store.grad(self.gamma),
            dbeta: store.grad(self.beta),
        });
        Some(dx)
    }

    fn has_params(&self) -> bool {
        true
    }
}

/// MaxPool2d(k, stride), in one dispatch with up to two neighbours: with `with_normalize`, the
/// BatchNorm2d before it normalises in the pool's pass; with `with_relu`, a ReLU after it,
/// whose backward then costs nothing (the forward leaves no argmax where the ReLU zeroed
/// the output).
pub struct MaxPool2d<B: Backend> {
    scopes: Scopes,
    s: PoolShape,
    relu: bool,
    normalize: Option<Normalization<B>>,
    /// The BatchNorm2d before it does this backward (`BatchNorm2d::fold_pool_backward`).
    backward_by_prev: bool,
    y: B::Tensor,
    argmax: B::Index,
    dx: Option<B::Tensor>,
}

impl<B: Backend> MaxPool2d<B> {
    pub fn new(b: &mut Builder<B>, path: &str, x: Feat, k: usize, stride: usize) -> Self {
        let s = PoolShape { n: b.capacity, c: x.c, h: x.h, w: x.w, k, stride };
        let y = b.activation(x.c * s.h_out() * s.w_out());
        let argmax = b.be.index(s.y_len());
        MaxPool2d { scopes: Scopes::new(path), s, relu: false, normalize: None, backward_by_prev: false, y, argmax, dx: None }
    }

    /// Applies a ReLU to its output (the path given to `new` names the fused layers for
    /// the profile: "batchnorm1+pool1+relu1").
    pub fn with_relu(self) -> Self {
        MaxPool2d { relu: true, ..self }
    }

    /// Normalises its input for the BatchNorm2d before it.
    pub fn with_normalize(self, n: Normalization<B>) -> Self {
        MaxPool2d { normalize: Some(n), ..self }
    }

    /// Its backward passes dy through: the layer before does this pool's backward.
    pub fn backward_done_by_prev(self) -> Self {
        MaxPool2d { backward_by_prev: true, ..self }
    }
}

impl<B: Backend> Layer<B> for MaxPool2d<B> {
    fn forward(&mut self, be: &mut B, store: &Store<B>, x: &B::Tensor, n: usize, train: bool) -> B::Tensor {
        be.scope(&self.scopes.forward);
        let normalize = self.normalize.as_ref().map(|nz| nz.op(store, train));
        be.run(Op::MaxpoolForward { s: PoolShape { n, ..self.s }, relu: self.relu, normalize, x, y: &self.y, argmax: &self.argmax });
        self.y.clone()
    }

    fn backward(&mut self, be: &mut B, _store: &Store<B>, dy: &B::Tensor, n: usize, need_dx: bool) -> Option<B::Tensor> {
        if !need_dx {
            return None;
        }
        if self.backward_by_prev {
            return Some(dy.clone());
        }
        be.scope(&self.scopes.backward);
        let dx = grad_buffer(be, &mut self.dx, self.s.x_len());
        be.run(Op::MaxpoolBackward { s: PoolShape { n, ..self.s }, dy, argmax: &self.argmax, dx: &dx });
        Some(dx)
    }

    fn has_params(&self) -> bool {
        false
    }
}
