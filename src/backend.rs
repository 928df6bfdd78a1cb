//! The one interface the layers are written against. `reference::Cpu` runs each op at once in
//! plain Rust; `gpu::Gpu` records each op as compute dispatches into the current command
//! encoder and submits on `submit()`. The layers never know which one they talk to.
//!
//! An op is data: one `Op` value names the op, its shape and its buffers, and each backend
//! runs it with one `match`. So an op's signature lives in one place (its variant here),
//! and whatever wants to see every op call (the benchmark's tracer, a cost model) looks at
//! `Op` values instead of wrapping every method.
//!
//! Buffers are handles (cheap to clone); a handle may be a view (offset, length) into a
//! larger buffer, as the parameter store's tensors are. An op reads its input handles and
//! writes its outputs: outputs are overwritten unless the variant says it accumulates
//! (parameter gradients do, so that a parameter used k times gets the sum of k gradients).
//! An op may not write a buffer that it also reads, not even through another view of the
//! same buffer (WebGPU forbids binding one buffer read-only and writable in one dispatch);
//! the CPU reference checks this.

use crate::shapes::{Activation, AdamConfig, BatchNormShape, Conv2dShape, MatmulShape, PoolShape, SgdConfig};

/// The element-wise work a matrix product does in its own pass (layers fuse what would
/// otherwise be separate ops, see `nn::Spec::build` and `nn::Sequential::new`):
/// - `relu`: C = relu(product + bias), as `ReluForward` (a Linear followed by a ReLU);
/// - `mask`: C = product where the [m, n] matrix `mask`, a ReLU's output, is kept by the
///   ReLU (`ReluBackward`'s rule), else 0 (that ReLU's backward folded into the input
///   gradient of the Linear after it); it excludes a bias and `relu`;
/// - `bias_grad`: bias_grad[i] += Σ_k op(A)[i, k] (accumulates), a Linear's bias gradient
///   Σ_batch dy computed with its weight gradient dyᵀ·x (the `SumRows` of op(A)ᵀ).
pub struct Fused<'a, T> {
    pub relu: bool,
    pub mask: Option<&'a T>,
    pub bias_grad: Option<&'a T>,
}

impl<T> Fused<'_, T> {
    /// A plain product.
    pub const NONE: Self = Fused { relu: false, mask: None, bias_grad: None };
}

impl<T> Clone for Fused<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Fused<'_, T> {}

/// A BatchNorm2d's normalisation done by the op that reads its output (`MaxpoolForward`):
/// x → (x − mean)/√(var + eps)·gamma + beta per channel, as `BatchnormNormalize`, with the
/// batch statistics in training and the running ones in eval.
pub struct Normalize<'a, T> {
    pub mean: &'a T,
    pub var: &'a T,
    pub gamma: &'a T,
    pub beta: &'a T,
}

impl<T> Clone for Normalize<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Normalize<'_, T> {}

/// One op call. `T` is the backend's f32 tensor handle, `I` its u32 buffer handle, `D` its
/// data set; `OpFor<'a, B>` spells it for a backend `B`.
pub enum Op<'a, T, I, D> {
    /// x[i, :] = images[perm[offset + i]] / 255, y[i] = labels[perm[offset + i]] for i < n.
    Gather { ds: &'a D, perm: &'a I, offset: usize, n: usize, x: &'a T, y: &'a I },

    /// y = conv(x, w) + b (cross-correlation, as PyTorch).
    Conv2dForward { s: Conv2dShape, x: &'a T, w: &'a T, b: &'a T, y: &'a T },
    /// dx = the input gradient of the forward for output gradient dy.
    Conv2dGradInput { s: Conv2dShape, dy: &'a T, w: &'a T, dx: &'a T },
    /// dw += the weight gradient; with `db`, also db += Σ dy over images and pixels, per
    /// channel, in the same dispatches (both accumulate).
    Conv2dGradWeight { s: Conv2dShape, x: &'a T, dy: &'a T, dw: &'a T, db: Option<&'a T> },

    /// `argmax[o]` is the index within the input's h·w plane of the maximum of window o
    /// (the first one on ties), as PyTorch's `return_indices`. With `relu`, a ReLU follows
    /// in the same pass (a MaxPool2d followed by a ReLU): y = relu(max), and argmax =
    /// `NO_ARGMAX` (u32::MAX) where the ReLU zeroes the output, so the backward below is
    /// also that ReLU's backward. With `normalize`, the window maxima are taken over
    /// normalize(x) (a BatchNorm2d before the pool; its backward then receives dx as dy).
    MaxpoolForward { s: PoolShape, relu: bool, normalize: Option<Normalize<'a, T>>, x: &'a T, y: &'a T, argmax: &'a I },
    /// dx is fully written: dy routed to each window's argmax, zero elsewhere (summed where
    /// overlapping windows, stride < k, pick the same input).
    MaxpoolBackward { s: PoolShape, dy: &'a T, argmax: &'a I, dx: &'a T },

    /// y = the mean of each k×k window (AvgPool2d, no padding).
    AvgpoolForward { s: PoolShape, x: &'a T, y: &'a T },
    /// dx is fully written: each input gets Σ dy/(k·k) over the windows holding it.
    AvgpoolBackward { s: PoolShape, dy: &'a T, dx: &'a T },

    /// Per-channel batch mean and biased variance, and the running statistics updated with
    /// them (running = (1 − momentum)·running + momentum·batch, the unbiased variance
    /// var·m/(m − 1), m = n·hw, going into running_var), as PyTorch's training forward does.
    BatchnormStats { s: BatchNormShape, x: &'a T, mean: &'a T, var: &'a T, running_mean: &'a T, running_var: &'a T },
    /// y = (x − mean)/√(var + eps)·gamma + beta. Training passes the batch statistics, eval
    /// the running ones.
    BatchnormNormalize { s: BatchNormShape, x: &'a T, mean: &'a T, var: &'a T, gamma: &'a T, beta: &'a T, y: &'a T },
    /// dx (overwritten), and dgamma, dbeta (accumulated) of the training forward. With
    /// `pooled`, dy is the gradient of the MaxPool2d (shape, argmax) that read this layer's
    /// output: the pool's backward (`MaxpoolBackward`) is done here, not on its own.
    BatchnormBackward {
        s: BatchNormShape,
        x: &'a T,
        dy: &'a T,
        pooled: Option<(PoolShape, &'a I)>,
        mean: &'a T,
        var: &'a T,
        gamma: &'a T,
        dx: &'a T,
        dgamma: &'a T,
        dbeta: &'a T,
    },

    /// y = max(x, 0), NaN passed through.
    ReluForward { len: usize, x: &'a T, y: &'a T },
    /// dx = dy where the forward output y > 0, else 0.
    ReluBackward { len: usize, y: &'a T, dy: &'a T, dx: &'a T },
    /// y = f(x) element-wise (Tanh, Sigmoid).
    ActivationForward { f: Activation, len: usize, x: &'a T, y: &'a T },
    /// dx = dy·f'(x), computed from the forward's output y (1 − y² for Tanh, y·(1 − y) for
    /// Sigmoid).
    ActivationBackward { f: Activation, len: usize, y: &'a T, dy: &'a T, dx: &'a T },

    /// C = op(A)·op(B) (+ bias broadcast over rows), or C += that with `s.accumulate`, with
    /// what `fused` adds in the same pass (see `Fused`).
    Matmul { s: MatmulShape, a: &'a T, b: &'a T, bias: Option<&'a T>, fused: Fused<'a, T>, c: &'a T },
    /// out[j] += Σ_i x[i, j] over `rows` rows of `cols` (a Linear layer's bias gradient).
    SumRows { rows: usize, cols: usize, x: &'a T, out: &'a T },

    /// loss[0] = mean over the n rows of −log softmax(logits)[label]; dlogits = (softmax −
    /// onehot)/n. It also counts the training step on the device: state[0] += 1 (so it holds
    /// this step's number t, from 1, for Adam), and state[1] = t if the loss is not finite
    /// and state[1] is still 0 (the first bad step, for the trainer's guard).
    SoftmaxCrossEntropy { n: usize, classes: usize, logits: &'a T, labels: &'a I, loss: &'a T, dlogits: &'a T, state: &'a I },
    /// correct[0] += number of rows whose argmax (first max on ties) equals the label.
    CountCorrect { n: usize, classes: usize, logits: &'a T, labels: &'a I, correct: &'a I },
    /// counts[label · classes + argmax] += 1 per row (first max on ties): the confusion
    /// matrix [classes, classes], true label by row, prediction by column (accumulates).
    /// A label ≥ classes counts nowhere.
    Confusion { n: usize, classes: usize, logits: &'a T, labels: &'a I, counts: &'a I },

    /// One Adam step with bias correction over the first `len` elements of param, m and v
    /// (a whole parameter store: one op for the whole model). The step number t is state[0]
    /// on the device (counted by `SoftmaxCrossEntropy`); `step` is the same number as the
    /// host knows it, which the backends check or use to prepare per-step constants.
    /// Weight decay as `cfg` says: Adam's L2 term or AdamW's decoupled decay.
    Adam { cfg: AdamConfig, step: u32, len: usize, state: &'a I, param: &'a T, grad: &'a T, m: &'a T, v: &'a T },
    /// One SGD step (`torch.optim.SGD`: weight decay, momentum, dampening, Nesterov) over the
    /// first `len` elements of param and the momentum buffer `buf` (a whole parameter store;
    /// the store's Adam m buffer serves as the momentum buffer). With momentum 0, `buf` is
    /// neither read nor written; `first`: it holds nothing yet, and this step sets it to the
    /// (decayed) gradient without reading it, as PyTorch's first step clones it.
    Sgd { cfg: SgdConfig, first: bool, len: usize, param: &'a T, grad: &'a T, buf: &'a T },
}

/// The `Op` type of backend `B`.
pub type OpFor<'a, B> = Op<'a, <B as Backend>::Tensor, <B as Backend>::Index, <B as Backend>::Dataset>;

impl<T, I, D> Op<'_, T, I, D> {
    /// The op's name, as the benchmark prints it.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Gather { .. } => "gather",
            Op::Conv2dForward { .. } => "conv2d_forward",
            Op::Conv2dGradInput { .. } => "conv2d_grad_input",
            Op::Conv2dGradWeight { .. } => "conv2d_grad_weight",
            Op::MaxpoolForward { .. } => "maxpool_forward",
            Op::MaxpoolBackward { .. } => "maxpool_backward",
            Op::AvgpoolForward { .. } => "avgpool_forward",
            Op::AvgpoolBackward { .. } => "avgpool_backward",
            Op::BatchnormStats { .. } => "batchnorm_stats",
            Op::BatchnormNormalize { .. } => "batchnorm_normalize",
            Op::BatchnormBackward { .. } => "batchnorm_backward",
            Op::ReluForward { .. } => "relu_forward",
            Op::ReluBackward { .. } => "relu_backward",
            Op::ActivationForward { f: Activation::Tanh, .. } => "tanh_forward",
            Op::ActivationForward { f: Activation::Sigmoid, .. } => "sigmoid_forward",
            Op::ActivationBackward { f: Activation::Tanh, .. } => "tanh_backward",
            Op::ActivationBackward { f: Activation::Sigmoid, .. } => "sigmoid_backward",
            Op::Matmul { .. } => "matmul",
            Op::SumRows { .. } => "sum_rows",
            Op::SoftmaxCrossEntropy { .. } => "softmax_cross_entropy",
            Op::CountCorrect { .. } => "count_correct",
            Op::Confusion { .. } => "confusion",
            Op::Adam { .. } => "adam",
            Op::Sgd { .. } => "sgd",
        }
    }
}

/// What a backend's data set tells about itself.
pub trait DatasetShape {
    /// Pixels per image.
    fn pixels(&self) -> usize;
}

/// A read started by `Backend::read_soon`.
#[derive(Debug)]
pub enum PendingRead {
    /// Already read (backends that compute at once).
    Done(Vec<f32>, Vec<u32>),
    /// In flight on the device: the backend's slot.
    Device(usize),
}

// Static dispatch only (every user is generic over `B: Backend`), so the futures of the async
// methods need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait Backend {
    /// An f32 buffer (or a view into one) on the device.
    type Tensor: Clone;
    /// A u32 buffer on the device (labels, argmax indices, counters, permutations).
    type Index: Clone;
    /// The training or test images (u8 pixels) and labels, uploaded once.
    type Dataset: DatasetShape;

    /// Human-readable name of what runs the ops (adapter name for the GPU).
    fn name(&self) -> String;

    // ---- memory -------------------------------------------------------------------------
    /// A zero-filled f32 buffer of `len` elements.
    fn tensor(&mut self, len: usize) -> Self::Tensor;
    /// A zero-filled u32 buffer of `len` elements.
    fn index(&mut self, len: usize) -> Self::Index;
    /// Elements `offset .. offset + len` of `t` as a tensor of their own. `offset` must be a
    /// multiple of `view_alignment()`.
    fn view(&mut self, t: &Self::Tensor, offset: usize, len: usize) -> Self::Tensor;
    /// The alignment, in elements, that view offsets need (the device's storage-buffer
    /// offset alignment).
    fn view_alignment(&self) -> usize {
        1
    }
    /// Sets every element of `t` to zero (in recording order with the ops).
    fn clear(&mut self, t: &Self::Tensor);
    /// Writes `data` to the first data.len() elements of `t`. On the GPU a write lands before
    /// all the work recorded since the last `submit` (as `queue.write_buffer`): submit first
    /// when recorded work must see the old contents.
    fn write(&mut self, t: &Self::Tensor, data: &[f32]);
    fn write_index(&mut self, t: &Self::Index, data: &[u32]);
    /// Reads the tensor back once the work recorded so far is done. Awaited, so that the web
    /// never blocks; natively `read` drives it to the end.
    async fn read_async(&mut self, t: &Self::Tensor) -> Vec<f32>;
    async fn read_index_async(&mut self, t: &Self::Index) -> Vec<u32>;
    /// Waits for all recorded work, then reads the tensor back (blocking: native only).
    #[cfg(not(target_arch = "wasm32"))]
    fn read(&mut self, t: &Self::Tensor) -> Vec<f32> {
        pollster::block_on(self.read_async(t))
    }
    #[cfg(not(target_arch = "wasm32"))]
    fn read_index(&mut self, t: &Self::Index) -> Vec<u32> {
        pollster::block_on(self.read_index_async(t))
    }
    /// Sends the work recorded so far to the device without waiting for it.
    fn submit(&mut self);
    /// Submits, and resolves once the device has done everything submitted (at once on
    /// backends that compute at once). The page settles every few steps so that the work in
    /// flight stays bounded.
    async fn settle(&mut self) {
        self.submit();
    }
    /// Starts reading `t` and `i` as the work recorded so far leaves them, without waiting
    /// for the device; `try_read` or `wait_read` hand the values over, once. Backends that
    /// compute at once read at once.
    fn read_soon(&mut self, t: &Self::Tensor, i: &Self::Index) -> PendingRead;
    /// The values of a `read_soon` if the device has got there, else None (never blocks).
    fn try_read(&mut self, read: &PendingRead) -> Option<(Vec<f32>, Vec<u32>)> {
        match read {
            PendingRead::Done(f, u) => Some((f.clone(), u.clone())),
            PendingRead::Device(_) => unreachable!("this backend reads at once"),
        }
    }
    /// The values of a `read_soon`, once the device has got there (awaited).
    async fn wait_read(&mut self, read: &PendingRead) -> (Vec<f32>, Vec<u32>) {
        match read {
            PendingRead::Done(f, u) => (f.clone(), u.clone()),
            PendingRead::Device(_) => unreachable!("this backend reads at once"),
        }
    }
    /// Bytes of device buffers allocated so far, where the backend keeps count.
    fn allocated_bytes(&self) -> Option<u64> {
        None
    }

    /// Kernel choices made since the last call, one line each, where the backend chooses
    /// kernels by measurement (the GPU's autotuner); for printing as they appear.
    fn new_kernel_choices(&mut self) -> Vec<String> {
        Vec::new()
    }

    /// Opens a tuning window where the backend measures kernel choices only between op calls
    /// (the page's GPU, see gpu::deferred_tuning): the op calls recorded until `end_tuning` queue
    /// measurements of the shapes that have no choice yet. False where there is nothing to do.
    fn begin_tuning(&mut self) -> bool {
        false
    }

    /// Closes the tuning window: awaits its measurements and makes the choices, which op calls
    /// take from now on. Returns what could not be measured, one line each.
    async fn end_tuning(&mut self) -> Vec<String> {
        Vec::new()
    }

    /// What a model's buffers must fit in (`nn::sizer::check_batch`), where known.
    fn memory_budget(&self) -> Option<crate::nn::sizer::Budget> {
        None
    }

    /// The first buffer allocation the host refused, where the backend's buffers are host
    /// memory (the CPU reference): it cannot fail `tensor`, so it records the refusal and does
    /// nothing more until its caller reports it (`Model::build`, `train::train`).
    fn refused_allocation(&self) -> Option<crate::memlimit::Refusal> {
        None
    }

    /// Uploads `count` images of `pixels` u8 each, and their labels.
    fn dataset(&mut self, images: &[u8], labels: &[u8], pixels: usize) -> Self::Dataset;

    /// Runs (or records) one op.
    fn run(&mut self, op: Op<'_, Self::Tensor, Self::Index, Self::Dataset>);

    /// Names what issues the ops that follow (`conv2.forward`, `body.block.fc.backward`), for
    /// profiles; backends that do not profile ignore it.
    fn scope(&mut self, _name: &str) {}
}
