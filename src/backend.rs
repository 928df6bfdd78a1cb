//! The one interface the model is written against. `reference::Cpu` runs each op at once in
//! plain Rust; `gpu::Gpu` records each op as a compute dispatch into the current command
//! encoder and submits on `submit()`. The model never knows which one it talks to.
//!
//! Buffers are handles (cheap to clone). An op reads its input handles and overwrites every
//! element of its output handles, except where its doc says it adds: the parameter-gradient
//! outputs of `sum_rows` and `batchnorm_backward` accumulate (zero them with `clear` first),
//! as do the counters. Passing the same handle as an input and an output is not allowed
//! (WebGPU forbids binding one buffer both read-only and writable in one dispatch).

use crate::shapes::{AdamConfig, BatchNormShape, Conv2dShape, MatmulShape, PoolShape};

pub trait Backend {
    /// An f32 buffer on the device.
    type Tensor: Clone;
    /// A u32 buffer on the device (labels, argmax indices, counters, permutations).
    type Index: Clone;
    /// The training or test images (u8 pixels) and labels, uploaded once.
    type Dataset;

    /// Human-readable name of what runs the ops (adapter name for the GPU).
    fn name(&self) -> String;

    // ---- memory -------------------------------------------------------------------------
    /// A zero-filled f32 buffer of `len` elements.
    fn tensor(&mut self, len: usize) -> Self::Tensor;
    /// A zero-filled u32 buffer of `len` elements.
    fn index(&mut self, len: usize) -> Self::Index;
    fn write(&mut self, t: &Self::Tensor, data: &[f32]);
    fn write_index(&mut self, t: &Self::Index, data: &[u32]);
    /// Sets every element of `t` to 0 (in recording order with the ops around it).
    fn clear(&mut self, t: &Self::Tensor);
    /// Waits for all recorded work, then reads the buffer back.
    fn read(&mut self, t: &Self::Tensor) -> Vec<f32>;
    fn read_index(&mut self, t: &Self::Index) -> Vec<u32>;
    /// Sends the work recorded so far to the device without waiting for it.
    fn submit(&mut self);
    /// Bytes of device buffers allocated so far, where the backend keeps count.
    fn allocated_bytes(&self) -> Option<u64> {
        None
    }

    // ---- data ---------------------------------------------------------------------------
    /// Uploads `count` images of `pixels` u8 each, and their labels.
    fn dataset(&mut self, images: &[u8], labels: &[u8], pixels: usize) -> Self::Dataset;
    /// x[i, :] = images[perm[offset + i]] / 255, y[i] = labels[perm[offset + i]] for i < n.
    fn gather(
        &mut self,
        ds: &Self::Dataset,
        perm: &Self::Index,
        offset: usize,
        n: usize,
        x: &Self::Tensor,
        y: &Self::Index,
    );

    // ---- conv2d -------------------------------------------------------------------------
    fn conv2d_forward(
        &mut self,
        s: &Conv2dShape,
        x: &Self::Tensor,
        w: &Self::Tensor,
        b: &Self::Tensor,
        y: &Self::Tensor,
    );
    fn conv2d_grad_input(&mut self, s: &Conv2dShape, dy: &Self::Tensor, w: &Self::Tensor, dx: &Self::Tensor);
    fn conv2d_grad_weight(&mut self, s: &Conv2dShape, x: &Self::Tensor, dy: &Self::Tensor, dw: &Self::Tensor);
    fn conv2d_grad_bias(&mut self, s: &Conv2dShape, dy: &Self::Tensor, db: &Self::Tensor);

    // ---- maxpool ------------------------------------------------------------------------
    /// `argmax[o]` is the index within the input's h·w plane of the maximum of window o
    /// (the first one on ties), as PyTorch's `return_indices`.
    fn maxpool_forward(&mut self, s: &PoolShape, x: &Self::Tensor, y: &Self::Tensor, argmax: &Self::Index);
    /// dx is fully written: dy routed to each window's argmax, zero elsewhere.
    fn maxpool_backward(&mut self, s: &PoolShape, dy: &Self::Tensor, argmax: &Self::Index, dx: &Self::Tensor);

    // ---- batchnorm ----------------------------------------------------------------------
    /// Per-channel batch mean and biased variance, and the running statistics updated from
    /// them: running = (1 − momentum)·running + momentum·batch, with the unbiased variance
    /// (var·m/(m − 1), m = n·hw) going into running_var.
    #[allow(clippy::too_many_arguments)]
    fn batchnorm_stats(
        &mut self,
        s: &BatchNormShape,
        x: &Self::Tensor,
        mean: &Self::Tensor,
        var: &Self::Tensor,
        running_mean: &Self::Tensor,
        running_var: &Self::Tensor,
    );
    /// y = (x − mean)/√(var + eps)·gamma + beta. Training uses the batch stats, eval the running ones.
    #[allow(clippy::too_many_arguments)]
    fn batchnorm_normalize(
        &mut self,
        s: &BatchNormShape,
        x: &Self::Tensor,
        mean: &Self::Tensor,
        var: &Self::Tensor,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        y: &Self::Tensor,
    );
    /// Gradients of the training forward wrt x (overwritten), gamma and beta (added into
    /// dgamma and dbeta).
    #[allow(clippy::too_many_arguments)]
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
    );

    // ---- activation ---------------------------------------------------------------------
    fn relu_forward(&mut self, len: usize, x: &Self::Tensor, y: &Self::Tensor);
    /// dx = dy where the forward output y > 0, else 0.
    fn relu_backward(&mut self, len: usize, y: &Self::Tensor, dy: &Self::Tensor, dx: &Self::Tensor);

    // ---- matmul -------------------------------------------------------------------------
    /// C = op(A)·op(B) (+ bias broadcast over rows).
    fn matmul(
        &mut self,
        s: &MatmulShape,
        a: &Self::Tensor,
        b: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        c: &Self::Tensor,
    );

    // ---- reduce -------------------------------------------------------------------------
    /// out[j] += Σ_i x[i, j] over `rows` rows of `cols` (a Linear layer's bias gradient).
    fn sum_rows(&mut self, rows: usize, cols: usize, x: &Self::Tensor, out: &Self::Tensor);
    /// loss[0] = mean over the n rows of −log softmax(logits)[label];
    /// dlogits = (softmax − onehot)/n. `state` (2 u32) counts the steps: state[0] += 1, and
    /// if the loss is not finite and state[1] == 0, state[1] = state[0].
    #[allow(clippy::too_many_arguments)]
    fn softmax_cross_entropy(
        &mut self,
        n: usize,
        classes: usize,
        logits: &Self::Tensor,
        labels: &Self::Index,
        loss: &Self::Tensor,
        dlogits: &Self::Tensor,
        state: &Self::Index,
    );
    /// correct[0] += number of rows whose argmax (first max on ties) equals the label.
    fn count_correct(&mut self, n: usize, classes: usize, logits: &Self::Tensor, labels: &Self::Index, correct: &Self::Index);

    // ---- adam ---------------------------------------------------------------------------
    /// One Adam step with bias correction; `step` counts from 1.
    #[allow(clippy::too_many_arguments)]
    fn adam(
        &mut self,
        cfg: &AdamConfig,
        step: u32,
        len: usize,
        param: &Self::Tensor,
        grad: &Self::Tensor,
        m: &Self::Tensor,
        v: &Self::Tensor,
    );
}
