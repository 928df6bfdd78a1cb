//! Shapes of every op, shared by the CPU reference, the GPU kernels and the model.
//! All tensors are dense, row-major, NCHW for images.

/// Conv2d over x [n, c_in, h, w] with weights [c_out, c_in, k, k] and bias [c_out],
/// giving y [n, c_out, h_out, w_out]. Cross-correlation, as PyTorch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv2dShape {
    #[inline]
    pub fn h_out(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    #[inline]
    pub fn w_out(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    #[inline]
    pub fn x_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }
    #[inline]
    pub fn w_len(&self) -> usize {
        self.c_out * self.c_in * self.k * self.k
    }
    #[inline]
    pub fn y_len(&self) -> usize {
        self.n * self.c_out * self.h_out() * self.w_out()
    }
}

/// A pooling layer (MaxPool2d, AvgPool2d) with a square window `k` and stride `stride`
/// (PyTorch's default stride is k) over x [n, c, h, w], giving y [n, c, h_out, w_out] with
/// h_out = (h − k) / stride + 1 (floor, as PyTorch without padding or ceil_mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
}

impl PoolShape {
    #[inline]
    pub fn h_out(&self) -> usize {
        (self.h - self.k) / self.stride + 1
    }
    #[inline]
    pub fn w_out(&self) -> usize {
        (self.w - self.k) / self.stride + 1
    }
    #[inline]
    pub fn x_len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    #[inline]
    pub fn y_len(&self) -> usize {
        self.n * self.c * self.h_out() * self.w_out()
    }
    /// Whether windows tile the input without overlap or gaps (stride = k): every input
    /// element lies in at most one window.
    #[inline]
    pub fn disjoint(&self) -> bool {
        self.stride == self.k
    }
}

/// BatchNorm2d over x [n, c, hw] (hw = h·w): statistics per channel over n and hw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchNormShape {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

impl BatchNormShape {
    #[inline]
    pub fn len(&self) -> usize {
        self.n * self.c * self.hw
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Elements per channel: the count the statistics average over.
    #[inline]
    pub fn per_channel(&self) -> usize {
        self.n * self.hw
    }
}

/// C [m, n] = op(A) · op(B) (+ bias [n] broadcast over rows), where op(A) is [m, k] and
/// op(B) is [k, n]. With `trans_a`, A is stored [k, m]; with `trans_b`, B is stored [n, k].
/// Linear forward y = x·Wᵀ + b is (A = x [batch, in], B = W [out, in], trans_b).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    /// C += product (+ bias) instead of C = product (+ bias): GEMM's β = 1, used for
    /// parameter gradients that several uses add into.
    pub accumulate: bool,
}

/// Adam hyper-parameters (PyTorch defaults except lr, which the recipe sets).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

pub const BN_EPS: f32 = 1e-5;
pub const BN_MOMENTUM: f32 = 0.1;

/// The smooth element-wise activations (ReLU has ops of its own, which fuse with their
/// neighbours): their forward and a backward that reads the forward's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// y = tanh(x); dx = dy·(1 − y²).
    Tanh,
    /// y = 1/(1 + e^−x); dx = dy·y·(1 − y).
    Sigmoid,
}

impl Activation {
    /// PyTorch's module name ("Tanh", "Sigmoid").
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "Tanh",
            Activation::Sigmoid => "Sigmoid",
        }
    }
}
