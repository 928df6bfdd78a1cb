//! The leaf layers. Each owns views of its parameters (in the store), its output and
//! input-gradient buffers for the batch capacity, and what its backward needs from the last
//! training forward. The ops they issue, in order, are the whole of what a model computes.

use super::store::{Builder, Init, ParamId, Store};
use super::{Feat, Layer};
pub use super::bn_pool::{BatchNorm2d, MaxPool2d, Normalization};
use crate::backend::{Backend, Fused, Op};
use crate::shapes::{Activation, Conv2dShape, MatmulShape, PoolShape};

/// The profile scopes of a layer ("conv2.forward", "conv2.backward").
pub(super) struct Scopes {
    pub(super) forward: String,
    pub(super) backward: String,
}

impl Scopes {
    pub(super) fn new(path: &str) -> Self {
        Scopes { forward: format!("{path}.forward"), backward: format!("{path}.backward") }
    }
}

/// An input-gradient buffer, allocated on the first backward that needs it (the first
/// layer's never is).
pub(super) fn grad_buffer<B: Backend>(be: &mut B, slot: &mut Option<B::Tensor>, len: usize) -> B::Tensor {
    slot.get_or_insert_with(|| be.tensor(len)).clone()
}

pub(super) fn saved<T: Clone>(x: &Option<T>) -> T {
    x.clone().expect("backward runs after a training forward")
}

pub struct Conv2d<B: Backend> {
    scopes: Scopes,
    s: Conv2dShape,
    w: ParamId,
    b: ParamId,
    y: B::Tensor,
    dx: Option<B::Tensor>,
    x: Option<B::Tensor>,
}

impl<B: Backend> Conv2d<B> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(b: &mut Builder<B>, path: &str, x: Feat, c_in: usize, c_out: usize, k: usize, stride: usize, pad: usize) -> Self {
        let s = Conv2dShape { n: b.capacity, c_in, h: x.h, w: x.w, c_out, k, stride, pad };
        let fan_in = c_in * k * k;
        let w = b.param(format!("{path}.weight"), &[c_out, c_in, k, k], Init::Uniform { fan_in });
        let bias = b.param(format!("{path}.bias"), &[c_out], Init::Uniform { fan_in });
        let y = b.activation(c_out * s.h_out() * s.w_out());
        Conv2d { scopes: Scopes::new(path), s, w, b: bias, y, dx: None, x: None }
    }
}

impl<B: Backend> Layer<B> for Conv2d<B> {
    fn forward(&mut self, be: &mut B, store: &Store<B>, x: &B::Tensor, n: usize, train: bool) -> B::Tensor {
        be.scope(&self.scopes.forward);
        let s = Conv2dShape { n, ..self.s };
        be.run(Op::Conv2dForward { s, x, w: store.value(self.w), b: store.value(self.b), y: &self.y });
        if train {
            self.x = Some(x.clone());
        }
        self.y.clone()
    }

    fn backward(&mut self, be: &mut B, store: &Store<B>, dy: &B::Tensor, n: usize, need_dx: bool) -> Option<B::Tensor> {
        be.scope(&self.scopes.backward);
        let s = Conv2dShape { n, ..self.s };
        let x = saved(&self.x);
        be.run(Op::Conv2dGradWeight { s, x: &x, dy, dw: store.grad(self.w), db: Some(store.grad(self.b)) });
        if !need_dx {
            return None;
        }
        let dx = grad_buffer(be, &mut self.dx, self.s.x_len());
        be.run(Op::Conv2dGradInput { s, dy, w: store.value(self.w), dx: &dx });
        Some(dx)
    }

    fn has_params(&self) -> bool {
        true
    }
}

pub struct Relu<B: Backend> {
    scopes: Scopes,
    per_sample: usize,
    capacity: usize,
    y: B::Tensor,
    dx: Option<B::Tensor>,
    /// The next layer applies this backward (in its input-gradient pass).
    done_by_next: bool,
}

impl<B: Backend> Relu<B> {
    pub fn new(b: &mut Builder<B>, path: &str, x: Feat) -> Self {
        let y = b.activation(x.len());
        Relu { scopes: Scopes::new(path), per_sample: x.len(), capacity: b.capacity, y, dx: None, done_by_next: false }
    }
}

impl<B: Backend> Layer<B> for Relu<B> {
    fn forward(&mut self, be: &mut B, _store: &Store<B>, x: &B::Tensor, n: usize, _train: bool) -> B::Tensor {
        be.scope(&self.scopes.forward);
        be.run(Op::ReluForward { len: n * self.per_sample, x, y: &self.y });
        self.y.clone()
    }

    fn backward(&mut self, be: &mut B, _store: &Store<B>, dy: &B::Tensor, n: usize, need_dx: bool) -> Option<B::Tensor> {
        if !need_dx {
            return None;
        }
        if self.done_by_next {
            return Some(dy.clone());
        }
        be.scope(&self.scopes.backward);
        let dx = grad_buffer(be, &mut self.dx, self.capacity * self.per_sample);
        // The backward reads the forward's output, which it owns.
        be.run(Op::ReluBackward { len: n * self.per_sample, y: &self.y, dy, dx: &dx });
        Some(dx)
    }

    fn has_params(&self) -> bool {
        false
    }

    fn ends_in_relu(&self) -> bool {
        true
    }
    fn relu_backward_done_by_next(&mut self) {
        self.done_by_next = true;
    }
}

/// Tanh or Sigmoid: its backward reads its own output.
pub struct Smooth<B: Backend> {
    scopes: Scopes,
    f: Activation,
    per_sample: usize,
    capacity: usize,
    y: B::Tensor,
    dx: Option<B::Tensor>,
}

impl<B: Backend> Smooth<B> {
    pub fn new(b: &mut Builder<B>, path: &str, x: Feat, f: Activation) -> Self {
        let y = b.activation(x.len());
        Smooth { scopes: Scopes::new(path), f, per_sample: x.len(), capacity: b.capacity, y, dx: None }
    }
}

impl<B: Backend> Layer<B> for Smooth<B> {
    fn forward(&mut self, be: &mut B, _store: &Store<B>, x: &B::Tensor, n: usize, _train: bool) -> B::Tensor {
        be.scope(&self.scopes.forward);
        be.run(Op::ActivationForward { f: self.f, len: n * self.per_sample, x, y: &self.y });
        self.y.clone()
    }

    fn backward(&mut self, be: &mut B, _store: &Store<B>, dy: &B::Tensor, n: usize, need_dx: bool) -> Option<B::Tensor> {
        if !need_dx {
            return None;
        }
        be.scope(&self.scopes.backward);
        let dx = grad_buffer(be, &mut self.dx, self.capacity * self.per_sample);
        be.run(Op::ActivationBackward { f: self.f, len: n * self.per_sample, y: &self.y, dy, dx: &dx });
        Some(dx)
    }

    fn has_params(&self) -> bool {
        false
    }
}

/// AvgPool2d(k, stride), no padding.
pub struct AvgPool2d<B: Backend> {
    scopes: Scopes,
    s: PoolShape,
    y: B::Tensor,
    dx: Option<B::Tensor>,
}

impl<B: Backend> AvgPool2d<B> {
    pub fn new(b: &mut Builder<B>, path: &str, x: Feat, k: usize, stride: usize) -> Self {
        let s = PoolShape { n: b.capacity, c: x.c, h: x.h, w: x.w, k, stride };
        let y = b.activation(x.c * s.h_out() * s.w_out());
        AvgPool2d { scopes: Scopes::new(path), s, y, dx: None }
    }
}

impl<B: Backend> Layer<B> for AvgPool2d<B> {
    fn forward(&mut self, be: &mut B, _store: &Store<B>, x: &B::Tensor, n: usize, _train: bool) -> B::Tensor {
        be.scope(&self.scopes.forward);
        be.run(Op::AvgpoolForward { s: PoolShape { n, ..self.s }, x, y: &self.y });
        self.y.clone()
    }

    fn backward(&mut self, be: &mut B, _store: &Store<B>, dy: &B::Tensor, n: usize, need_dx: bool) -> Option<B::Tensor> {
        if !need_dx {
            return None;
        }
        be.scope(&self.scopes.backward);
        let dx = grad_buffer(be, &mut self.dx, self.s.x_len());
        be.run(Op::AvgpoolBackward { s: PoolShape { n, ..self.s }, dy, dx: &dx });
        Some(dx)
    }

    fn has_params(&self) -> bool {
        false
    }
}

/// [N, C, H, W] → [N, C·H·W]: the same memory, so nothing runs.
pub struct Flatten;

impl<B: Backend> Layer<B> for Flatten {
    fn forward(&mut self, _be: &mut B, _store: &Store<B>, x: &B::Tensor, _n: usize, _train: bool) -> B::Tensor {
        x.clone()
    }
    fn backward(&mut self, _be: &mut B, _store: &Store<B>, dy: &B::Tensor, _n: usize, need_dx: bool) -> Option<B::Tensor> {
        need_dx.then(|| dy.clone())
    }
    fn has_params(&self) -> bool {
        false
    }
}

/// y = x·Wᵀ + b with W stored [d_out, d_in], as PyTorch's Linear; with `with_relu`,
/// y = relu(x·Wᵀ + b) in the same pass (a Linear and the ReLU after it, fused).
pub struct Linear<B: Backend> {
    scopes: Scopes,
    d_in: usize,
    d_out: usize,
    capacity: usize,
    w: ParamId,
    b: ParamId,
    /// The output is relu(product + b).
    relu: bool,
    /// The next layer applies our ReLU's backward (dy arrives as the product's gradient).
    relu_done_by_next: bool,
    /// Our input is a ReLU's output: dx is masked by it in the product's epilogue.
    mask_dx: bool,
    y: B::Tensor,
    /// The product's gradient, where our own ReLU's backward runs here.
    dz: Option<B::Tensor>,
    dx: Option<B::Tensor>,
    x: Option<B::Tensor>,
}

impl<B: Backend> Linear<B> {
    pub fn new(b: &mut Builder<B>, path: &str, d_in: usize, d_out: usize) -> Self {
        let w = b.param(format!("{path}.weight"), &[d_out, d_in], Init::Uniform { fan_in: d_in });
        let bias = b.param(format!("{path}.bias"), &[d_out], Init::Uniform { fan_in: d_in });
        let y = b.activation(d_out);
        let (relu, relu_done_by_next, mask_dx) = (false, false, false);
        Linear { scopes: Scopes::new(path), d_in, d_out, capacity: b.capacity, w, b: bias, relu, relu_done_by_next, mask_dx, y, dz: None, dx: None, x: None }
    }

    /// Fuses the ReLU `relu_name` (its sibling) after it; profile scopes read "fc1+relu3".
    pub fn with_relu(self, relu_name: &str) -> Self {
        let path = self.scopes.forward.trim_end_matches(".forward");
        Linear { scopes: Scopes::new(&format!("{path}+{relu_name}")), relu: true, ..self }
    }
}

impl<B: Backend> Layer<B> for Linear<B> {
    fn forward(&mut self, be: &mut B, store: &Store<B>, x: &B::Tensor, n: usize, train: bool) -> B::Tensor {
        be.scope(&self.scopes.forward);
        let s = MatmulShape { m: n, n: self.d_out, k: self.d_in, trans_a: false, trans_b: true, accumulate: false };
        let fused = Fused { relu: self.relu, ..Fused::NONE };
        be.run(Op::Matmul { s, a: x, b: store.value(self.w), bias: Some(store.value(self.b)), fused, c: &self.y });
        if train {
            self.x = Some(x.clone());
        }
        self.y.clone()
    }

    fn backward(&mut self, be: &mut B, store: &Store<B>, dy: &B::Tensor, n: usize, need_dx: bool) -> Option<B::Tensor> {
        be.scope(&self.scopes.backward);
        let (d_in, d_out) = (self.d_in, self.d_out);
        let x = saved(&self.x);
        let dy = if self.relu && !self.relu_done_by_next {
            let dz = grad_buffer(be, &mut self.dz, self.capacity * d_out);
            be.run(Op::ReluBackward { len: n * d_out, y: &self.y, dy, dx: &dz });
            dz
        } else {
            dy.clone()
        };
        // dW += dyᵀ·x with db += Σ rows dy in the same pass, then dx = dy·W.
        let s = MatmulShape { m: d_out, n: d_in, k: n, trans_a: true, trans_b: false, accumulate: true };
        let fused = Fused { bias_grad: Some(store.grad(self.b)), ..Fused::NONE };
        be.run(Op::Matmul { s, a: &dy, b: &x, bias: None, fused, c: store.grad(self.w) });
        if !need_dx {
            return None;
        }
        let dx = grad_buffer(be, &mut self.dx, self.capacity * d_in);
        let s = MatmulShape { m: n, n: d_in, k: d_out, trans_a: false, trans_b: false, accumulate: false };
        let fused = Fused { mask: self.mask_dx.then_some(&x), ..Fused::NONE };
        be.run(Op::Matmul { s, a: &dy, b: store.value(self.w), bias: None, fused, c: &dx });
        Some(dx)
    }

    fn has_params(&self) -> bool {
        true
    }

    fn ends_in_relu(&self) -> bool {
        self.relu
    }
    fn can_mask_input_grad(&self) -> bool {
        true
    }
    fn mask_input_grad(&mut self) {
        self.mask_dx = true;
    }
    fn relu_backward_done_by_next(&mut self) {
        self.relu_done_by_next = true;
    }
}
