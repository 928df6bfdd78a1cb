//! The seed's LeNet-5, written once against `Backend`:
//!
//!   x [N,1,28,28] → conv1 → a1 [N,20,24,24] → batchnorm1 → b1 → maxpool → p1 [N,20,12,12] → relu → r1
//!   → conv2 → a2 [N,50,8,8] → batchnorm2 → b2 → maxpool → p2 [N,50,4,4] → relu → r2 (flatten [N,800])
//!   → fc1 → h1 [N,500] → relu → h1r → fc2 → logits [N,10] → softmax cross-entropy (mean).
//!
//! Every buffer is allocated once for `capacity` images; a call may use any n ≤ capacity.

use crate::backend::Backend;
use crate::model::params::{idx, init_values, LENET5_PARAMS};
use crate::shapes::{AdamConfig, BatchNormShape, Conv2dShape, MatmulShape, PoolShape};

pub const IMAGE_PIXELS: usize = 28 * 28;
pub const CLASSES: usize = 10;

pub fn conv1_shape(n: usize) -> Conv2dShape {
    Conv2dShape { n, c_in: 1, h: 28, w: 28, c_out: 20, k: 5, stride: 1, pad: 0 }
}
pub fn bn1_shape(n: usize) -> BatchNormShape {
    BatchNormShape { n, c: 20, hw: 24 * 24 }
}
pub fn pool1_shape(n: usize) -> PoolShape {
    PoolShape { n, c: 20, h: 24, w: 24, k: 2 }
}
pub fn conv2_shape(n: usize) -> Conv2dShape {
    Conv2dShape { n, c_in: 20, h: 12, w: 12, c_out: 50, k: 5, stride: 1, pad: 0 }
}
pub fn bn2_shape(n: usize) -> BatchNormShape {
    BatchNormShape { n, c: 50, hw: 8 * 8 }
}
pub fn pool2_shape(n: usize) -> PoolShape {
    PoolShape { n, c: 50, h: 8, w: 8, k: 2 }
}
/// fc1 forward: h1 = r2 · W1ᵀ + b1 with W1 stored [500, 800].
pub fn fc1_shape(n: usize) -> MatmulShape {
    MatmulShape { m: n, n: 500, k: 800, trans_a: false, trans_b: true }
}
/// fc2 forward: logits = h1r · W2ᵀ + b2 with W2 stored [10, 500].
pub fn fc2_shape(n: usize) -> MatmulShape {
    MatmulShape { m: n, n: CLASSES, k: 500, trans_a: false, trans_b: true }
}

/// Activations and their gradients for one batch (the names follow the diagram above;
/// a `d` prefix is the gradient of the loss wrt that tensor).
struct Buffers<B: Backend> {
    x: B::Tensor,
    y: B::Index,
    a1: B::Tensor,
    mean1: B::Tensor,
    var1: B::Tensor,
    b1: B::Tensor,
    p1: B::Tensor,
    arg1: B::Index,
    r1: B::Tensor,
    a2: B::Tensor,
    mean2: B::Tensor,
    var2: B::Tensor,
    b2: B::Tensor,
    p2: B::Tensor,
    arg2: B::Index,
    r2: B::Tensor,
    h1: B::Tensor,
    h1r: B::Tensor,
    logits: B::Tensor,
    loss: B::Tensor,
    dlogits: B::Tensor,
    dh1r: B::Tensor,
    dh1: B::Tensor,
    dr2: B::Tensor,
    dp2: B::Tensor,
    db2: B::Tensor,
    da2: B::Tensor,
    dr1: B::Tensor,
    dp1: B::Tensor,
    db1: B::Tensor,
    da1: B::Tensor,
    correct: B::Index,
    /// The loss kernel's step state: [losses computed, first step with a non-finite loss or 0].
    state: B::Index,
}

impl<B: Backend> Buffers<B> {
    fn new(be: &mut B, cap: usize) -> Self {
        let (c1, c2) = (conv1_shape(cap), conv2_shape(cap));
        let (q1, q2) = (pool1_shape(cap), pool2_shape(cap));
        let mut t = |len: usize| be.tensor(len);
        let x = t(cap * IMAGE_PIXELS);
        let (a1, mean1, var1, b1) = (t(c1.y_len()), t(20), t(20), t(c1.y_len()));
        let (p1, r1) = (t(q1.y_len()), t(q1.y_len()));
        let (a2, mean2, var2, b2) = (t(c2.y_len()), t(50), t(50), t(c2.y_len()));
        let (p2, r2) = (t(q2.y_len()), t(q2.y_len()));
        let (h1, h1r, logits, loss, dlogits) = (t(cap * 500), t(cap * 500), t(cap * CLASSES), t(1), t(cap * CLASSES));
        let (dh1r, dh1, dr2, dp2) = (t(cap * 500), t(cap * 500), t(q2.y_len()), t(q2.y_len()));
        let (db2, da2, dr1, dp1) = (t(c2.y_len()), t(c2.y_len()), t(q1.y_len()), t(q1.y_len()));
        let (db1, da1) = (t(c1.y_len()), t(c1.y_len()));
        Buffers {
            x,
            y: be.index(cap),
            a1,
            mean1,
            var1,
            b1,
            p1,
            arg1: be.index(q1.y_len()),
            r1,
            a2,
            mean2,
            var2,
            b2,
            p2,
            arg2: be.index(q2.y_len()),
            r2,
            h1,
            h1r,
            logits,
            loss,
            dlogits,
            dh1r,
            dh1,
            dr2,
            dp2,
            db2,
            da2,
            dr1,
            dp1,
            db1,
            da1,
            correct: be.index(1),
            state: be.index(2),
        }
    }
}

/// BatchNorm running statistics (state_dict buffers, not parameters).
pub struct RunningStats<B: Backend> {
    pub mean1: B::Tensor,
    pub var1: B::Tensor,
    pub mean2: B::Tensor,
    pub var2: B::Tensor,
    /// PyTorch's `num_batches_tracked`, the same for both layers.
    pub num_batches_tracked: i64,
}

pub struct Lenet5<B: Backend> {
    /// Largest batch the buffers hold.
    pub capacity: usize,
    /// Parameters, their gradients and Adam's moments, in `LENET5_PARAMS` order.
    pub params: Vec<B::Tensor>,
    pub grads: Vec<B::Tensor>,
    pub adam_m: Vec<B::Tensor>,
    pub adam_v: Vec<B::Tensor>,
    /// Adam steps taken so far.
    pub adam_step: u32,
    pub running: RunningStats<B>,
    buf: Buffers<B>,
    /// What the device's step counter (state[0]) holds once the recorded work has run: one
    /// per `loss` call.
    losses_counted: u32,
}

impl<B: Backend> Lenet5<B> {
    /// A model with PyTorch's default initialisation drawn from `seed`.
    pub fn new(be: &mut B, capacity: usize, seed: u64) -> Self {
        Self::from_values(be, capacity, &init_values(seed))
    }

    /// A model with the given parameter values (in `LENET5_PARAMS` order), fresh running
    /// statistics (mean 0, var 1) and fresh Adam state.
    pub fn from_values(be: &mut B, capacity: usize, values: &[Vec<f32>]) -> Self {
        assert_eq!(values.len(), LENET5_PARAMS.len());
        let mut params = Vec::new();
        let (mut grads, mut adam_m, mut adam_v) = (Vec::new(), Vec::new(), Vec::new());
        for (spec, v) in LENET5_PARAMS.iter().zip(values) {
            assert_eq!(v.len(), spec.len(), "{} has {} values, expected {}", spec.name, v.len(), spec.len());
            let t = be.tensor(spec.len());
            be.write(&t, v);
            params.push(t);
            grads.push(be.tensor(spec.len()));
            adam_m.push(be.tensor(spec.len()));
            adam_v.push(be.tensor(spec.len()));
        }
        let running = RunningStats {
            mean1: be.tensor(20),
            var1: be.tensor(20),
            mean2: be.tensor(50),
            var2: be.tensor(50),
            num_batches_tracked: 0,
        };
        be.write(&running.var1, &[1.0; 20]);
        be.write(&running.var2, &[1.0; 50]);
        let buf = Buffers::new(be, capacity);
        Lenet5 { capacity, params, grads, adam_m, adam_v, adam_step: 0, running, buf, losses_counted: 0 }
    }

    /// Puts a batch in place from host memory (tests, the `step` tool).
    pub fn set_batch(&mut self, be: &mut B, x: &[f32], labels: &[u32]) {
        assert_eq!(x.len(), labels.len() * IMAGE_PIXELS);
        assert!(labels.len() <= self.capacity);
        be.write(&self.buf.x, x);
        be.write_index(&self.buf.y, labels);
    }

    /// Gathers batch rows perm[offset..offset + n] of a device-resident dataset.
    pub fn gather_batch(&mut self, be: &mut B, ds: &B::Dataset, perm: &B::Index, offset: usize, n: usize) {
        assert!(n <= self.capacity);
        be.gather(ds, perm, offset, n, &self.buf.x, &self.buf.y);
    }

    /// Forward to the logits. In training mode BatchNorm uses batch statistics and
    /// updates its running statistics (as PyTorch's forward does); in eval mode it uses
    /// the running statistics.
    pub fn forward(&mut self, be: &mut B, n: usize, train: bool) {
        assert!(n >= 1 && n <= self.capacity, "batch of {n} with buffers for {}", self.capacity);
        let (p, b, r) = (&self.params, &self.buf, &self.running);
        be.conv2d_forward(&conv1_shape(n), &b.x, &p[idx::CONV1_W], &p[idx::CONV1_B], &b.a1);
        Self::batchnorm(be, &bn1_shape(n), train, &b.a1, &b.mean1, &b.var1, &r.mean1, &r.var1, &p[idx::BN1_G], &p[idx::BN1_B], &b.b1);
        be.maxpool_forward(&pool1_shape(n), &b.b1, &b.p1, &b.arg1);
        be.relu_forward(pool1_shape(n).y_len(), &b.p1, &b.r1);
        be.conv2d_forward(&conv2_shape(n), &b.r1, &p[idx::CONV2_W], &p[idx::CONV2_B], &b.a2);
        Self::batchnorm(be, &bn2_shape(n), train, &b.a2, &b.mean2, &b.var2, &r.mean2, &r.var2, &p[idx::BN2_G], &p[idx::BN2_B], &b.b2);
        be.maxpool_forward(&pool2_shape(n), &b.b2, &b.p2, &b.arg2);
        be.relu_forward(pool2_shape(n).y_len(), &b.p2, &b.r2);
        be.matmul(&fc1_shape(n), &b.r2, &p[idx::FC1_W], Some(&p[idx::FC1_B]), &b.h1);
        be.relu_forward(n * 500, &b.h1, &b.h1r);
        be.matmul(&fc2_shape(n), &b.h1r, &p[idx::FC2_W], Some(&p[idx::FC2_B]), &b.logits);
        if train {
            self.running.num_batches_tracked += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn batchnorm(
        be: &mut B,
        s: &BatchNormShape,
        train: bool,
        x: &B::Tensor,
        mean: &B::Tensor,
        var: &B::Tensor,
        running_mean: &B::Tensor,
        running_var: &B::Tensor,
        gamma: &B::Tensor,
        beta: &B::Tensor,
        y: &B::Tensor,
    ) {
        if train {
            be.batchnorm_stats(s, x, mean, var, running_mean, running_var);
            be.batchnorm_normalize(s, x, mean, var, gamma, beta, y);
        } else {
            be.batchnorm_normalize(s, x, running_mean, running_var, gamma, beta, y);
        }
    }

    /// The mean cross-entropy of the last forward's logits (and its gradient wrt them); the
    /// device's step counter advances by one (see `train_step`).
    pub fn loss(&mut self, be: &mut B, n: usize) {
        let b = &self.buf;
        be.softmax_cross_entropy(n, CLASSES, &b.logits, &b.y, &b.loss, &b.dlogits, &b.state);
        self.losses_counted = self.losses_counted.wrapping_add(1);
    }

    /// Loss of the last training forward and the gradient of every parameter (the
    /// gradients are zeroed first: the parameter-gradient ops accumulate).
    pub fn backward(&mut self, be: &mut B, n: usize) {
        for g in &self.grads {
            be.clear(g);
        }
        self.loss(be, n);
        let (p, g, b) = (&self.params, &self.grads, &self.buf);
        // fc2: dW2 = dlogitsᵀ·h1r, db2 = Σ rows dlogits, dh1r = dlogits·W2.
        be.matmul(&MatmulShape { m: CLASSES, n: 500, k: n, trans_a: true, trans_b: false }, &b.dlogits, &b.h1r, None, &g[idx::FC2_W]);
        be.sum_rows(n, CLASSES, &b.dlogits, &g[idx::FC2_B]);
        be.matmul(&MatmulShape { m: n, n: 500, k: CLASSES, trans_a: false, trans_b: false }, &b.dlogits, &p[idx::FC2_W], None, &b.dh1r);
        be.relu_backward(n * 500, &b.h1r, &b.dh1r, &b.dh1);
        // fc1: dW1 = dh1ᵀ·r2, db1 = Σ rows dh1, dr2 = dh1·W1.
        be.matmul(&MatmulShape { m: 500, n: 800, k: n, trans_a: true, trans_b: false }, &b.dh1, &b.r2, None, &g[idx::FC1_W]);
        be.sum_rows(n, 500, &b.dh1, &g[idx::FC1_B]);
        be.matmul(&MatmulShape { m: n, n: 800, k: 500, trans_a: false, trans_b: false }, &b.dh1, &p[idx::FC1_W], None, &b.dr2);
        // relu → maxpool → batchnorm2 → conv2.
        be.relu_backward(pool2_shape(n).y_len(), &b.r2, &b.dr2, &b.dp2);
        be.maxpool_backward(&pool2_shape(n), &b.dp2, &b.arg2, &b.db2);
        be.batchnorm_backward(&bn2_shape(n), &b.a2, &b.db2, &b.mean2, &b.var2, &p[idx::BN2_G], &b.da2, &g[idx::BN2_G], &g[idx::BN2_B]);
        be.conv2d_grad_weight(&conv2_shape(n), &b.r1, &b.da2, &g[idx::CONV2_W]);
        be.conv2d_grad_bias(&conv2_shape(n), &b.da2, &g[idx::CONV2_B]);
        be.conv2d_grad_input(&conv2_shape(n), &b.da2, &p[idx::CONV2_W], &b.dr1);
        // relu → maxpool → batchnorm1 → conv1 (the input needs no gradient).
        be.relu_backward(pool1_shape(n).y_len(), &b.r1, &b.dr1, &b.dp1);
        be.maxpool_backward(&pool1_shape(n), &b.dp1, &b.arg1, &b.db1);
        be.batchnorm_backward(&bn1_shape(n), &b.a1, &b.db1, &b.mean1, &b.var1, &p[idx::BN1_G], &b.da1, &g[idx::BN1_G], &g[idx::BN1_B]);
        be.conv2d_grad_weight(&conv1_shape(n), &b.x, &b.da1, &g[idx::CONV1_W]);
        be.conv2d_grad_bias(&conv1_shape(n), &b.da1, &g[idx::CONV1_B]);
    }

    /// One Adam step over every parameter with the current gradients.
    pub fn adam_update(&mut self, be: &mut B, cfg: &AdamConfig) {
        self.adam_step += 1;
        for (i, spec) in LENET5_PARAMS.iter().enumerate() {
            be.adam(cfg, self.adam_step, spec.len(), &self.params[i], &self.grads[i], &self.adam_m[i], &self.adam_v[i]);
        }
    }

    /// Forward (training mode), loss, backward and Adam on the batch in place. `step`
    /// (from 1) is recorded on the device if the loss is not finite; nothing is read back.
    /// The loss kernel numbers the steps itself (state[0] += 1); only when `step` is not
    /// the next number it would give (a fresh model resuming, or loss calls outside
    /// training) is the counter set from the host, after submitting the work that counts.
    pub fn train_step(&mut self, be: &mut B, n: usize, cfg: &AdamConfig, step: u32) {
        assert!(step >= 1, "steps count from 1");
        if self.losses_counted.wrapping_add(1) != step {
            be.submit(); // a queued write lands before the next submit: count what is recorded first
            be.write_index(&self.buf.state, &[step - 1]);
            self.losses_counted = step - 1;
        }
        self.forward(be, n, true);
        self.backward(be, n);
        self.adam_update(be, cfg);
    }

    /// Eval-mode forward of the batch in place, adding its correct predictions to the
    /// device counter (see `take_correct`).
    pub fn eval_batch(&mut self, be: &mut B, n: usize) {
        self.forward(be, n, false);
        be.count_correct(n, CLASSES, &self.buf.logits, &self.buf.y, &self.buf.correct);
    }

    /// Reads and resets the correct-prediction counter.
    pub fn take_correct(&mut self, be: &mut B) -> u32 {
        let c = be.read_index(&self.buf.correct)[0];
        be.write_index(&self.buf.correct, &[0]);
        c
    }

    /// The buffer holding the loss of the last `backward` (one element).
    pub fn loss_buffer(&self) -> &B::Tensor {
        &self.buf.loss
    }

    /// The loss of the last `backward` (waits for the device).
    pub fn read_loss(&mut self, be: &mut B) -> f32 {
        be.read(&self.buf.loss)[0]
    }

    /// The first step whose loss was not finite, if any (waits for the device).
    pub fn first_nonfinite_step(&mut self, be: &mut B) -> Option<u32> {
        Some(be.read_index(&self.buf.state)[1]).filter(|&s| s != 0)
    }

    /// Logits of the last forward, [n, 10].
    pub fn read_logits(&mut self, be: &mut B, n: usize) -> Vec<f32> {
        let mut l = be.read(&self.buf.logits);
        l.truncate(n * CLASSES);
        l
    }
}
