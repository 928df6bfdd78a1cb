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

/// Adam hyper-parameters (PyTorch defaults except lr, which the recipe sets), with PyTorch's
/// two kinds of weight decay: `torch.optim.Adam`'s L2 term (g += wd·p, `decoupled` false)
/// and `torch.optim.AdamW`'s decoupled decay (p *= 1 − lr·wd before the update, `decoupled`
/// true).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub decoupled: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false }
    }
}

impl AdamConfig {
    /// `torch.optim.AdamW`'s defaults (weight_decay 0.01) with learning rate `lr`.
    pub fn adamw(lr: f32) -> Self {
        AdamConfig { lr, weight_decay: ADAMW_WEIGHT_DECAY, decoupled: true, ..AdamConfig::default() }
    }
}

/// `torch.optim.AdamW`'s default weight decay (Adam's and SGD's is 0).
pub const ADAMW_WEIGHT_DECAY: f32 = 1e-2;

/// SGD's hyper-parameters, as `torch.optim.SGD` (maximize off):
///
///   d = g + wd·p;  b = d at a parameter's first step, else b = μ·b + (1 − dampening)·d;
///   d = d + μ·b with Nesterov, else d = b (both only with μ > 0);  p −= lr·d
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig { lr: 1e-3, momentum: 0.0, dampening: 0.0, nesterov: false, weight_decay: 0.0 }
    }
}

/// The optimizer of a training run: one op (`Op::Adam` or `Op::Sgd`) over the whole
/// parameter store per step. Adam with `decoupled` weight decay is AdamW.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerConfig {
    Adam(AdamConfig),
    Sgd(SgdConfig),
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Adam(AdamConfig::default())
    }
}

impl From<AdamConfig> for OptimizerConfig {
    fn from(c: AdamConfig) -> Self {
        OptimizerConfig::Adam(c)
    }
}
impl From<&AdamConfig> for OptimizerConfig {
    fn from(c: &AdamConfig) -> Self {
        OptimizerConfig::Adam(*c)
    }
}
impl From<SgdConfig> for OptimizerConfig {
    fn from(c: SgdConfig) -> Self {
        OptimizerConfig::Sgd(c)
    }
}
impl From<&SgdConfig> for OptimizerConfig {
    fn from(c: &SgdConfig) -> Self {
        OptimizerConfig::Sgd(*c)
    }
}
impl From<&OptimizerConfig> for OptimizerConfig {
    fn from(c: &OptimizerConfig) -> Self {
        *c
    }
}

/// The `--optimizer` names.
pub const OPTIMIZER_NAMES: &[&str] = &["adam", "adamw", "sgd"];

impl OptimizerConfig {
    /// The `--optimizer` name (and the checkpoint's `optimizer` metadata).
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerConfig::Adam(a) if a.decoupled => "adamw",
            OptimizerConfig::Adam(_) => "adam",
            OptimizerConfig::Sgd(_) => "sgd",
        }
    }

    pub fn lr(&self) -> f32 {
        match self {
            OptimizerConfig::Adam(a) => a.lr,
            OptimizerConfig::Sgd(s) => s.lr,
        }
    }

    /// The same optimizer with learning rate `lr`.
    pub fn with_lr(mut self, lr: f32) -> Self {
        match &mut self {
            OptimizerConfig::Adam(a) => a.lr = lr,
            OptimizerConfig::Sgd(s) => s.lr = lr,
        }
        self
    }

    pub fn weight_decay(&self) -> f32 {
        match self {
            OptimizerConfig::Adam(a) => a.weight_decay,
            OptimizerConfig::Sgd(s) => s.weight_decay,
        }
    }

    /// The optimizer from the CLI's flags: `name` one of `OPTIMIZER_NAMES`; `weight_decay`
    /// None takes PyTorch's default for the optimizer (0, or 0.01 for AdamW); `momentum`,
    /// `dampening` and `nesterov` are SGD's only (an error with Adam unless left at 0/false).
    /// Validated (`validate`).
    pub fn from_options(name: &str, lr: f32, momentum: f32, dampening: f32, nesterov: bool, weight_decay: Option<f32>) -> Result<Self, String> {
        let sgd_only = [("--momentum", momentum != 0.0), ("--dampening", dampening != 0.0), ("--nesterov", nesterov)];
        let cfg = match name {
            "adam" | "adamw" => {
                if let Some((flag, _)) = sgd_only.iter().find(|(_, set)| *set) {
                    return Err(format!("{flag} is an option of --optimizer sgd; {name} has no momentum buffer to configure"));
                }
                let base = if name == "adamw" { AdamConfig::adamw(lr) } else { AdamConfig { lr, ..AdamConfig::default() } };
                OptimizerConfig::Adam(AdamConfig { weight_decay: weight_decay.unwrap_or(base.weight_decay), ..base })
            }
            "sgd" => OptimizerConfig::Sgd(SgdConfig { lr, momentum, dampening, nesterov, weight_decay: weight_decay.unwrap_or(0.0) }),
            other => return Err(format!("--optimizer {other}: unknown; choose one of {}", OPTIMIZER_NAMES.join(", "))),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Refuses what PyTorch refuses, and what cannot train: the learning rate must be finite
    /// and above 0; momentum, dampening and weight decay finite and at least 0; Nesterov
    /// needs a momentum above 0 and zero dampening.
    pub fn validate(&self) -> Result<(), String> {
        let lr = self.lr();
        if !(lr.is_finite() && lr > 0.0) {
            return Err(format!("--lr {lr} is not allowed: the learning rate must be a finite number above 0 (the recipe uses 0.001)"));
        }
        let mut checks = vec![("--weight-decay", self.weight_decay())];
        if let OptimizerConfig::Sgd(s) = self {
            checks.extend([("--momentum", s.momentum), ("--dampening", s.dampening)]);
        }
        for (flag, v) in checks {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{flag} {v} is not allowed: it must be a finite number of at least 0"));
            }
        }
        if let OptimizerConfig::Sgd(s) = self {
            if s.nesterov && (s.momentum <= 0.0 || s.dampening != 0.0) {
                return Err(format!(
                    "--nesterov needs a momentum above 0 and zero dampening (as torch.optim.SGD), not --momentum {} --dampening {}",
                    s.momentum, s.dampening
                ));
            }
        }
        Ok(())
    }

    /// The hyper-parameters as `key=value` pairs (checkpoint metadata, the `step` file),
    /// `optimizer` first; `from_metadata` reads them back.
    pub fn metadata(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("optimizer", self.name().to_string()), ("lr", self.lr().to_string())];
        match self {
            OptimizerConfig::Adam(a) => out.extend([
                ("beta1", a.beta1.to_string()),
                ("beta2", a.beta2.to_string()),
                ("eps", a.eps.to_string()),
                ("weight_decay", a.weight_decay.to_string()),
            ]),
            OptimizerConfig::Sgd(s) => out.extend([
                ("momentum", s.momentum.to_string()),
                ("dampening", s.dampening.to_string()),
                ("nesterov", s.nesterov.to_string()),
                ("weight_decay", s.weight_decay.to_string()),
            ]),
        }
        out
    }

    /// What `metadata` wrote, read back by `get`; a file without `optimizer` is Adam's (the
    /// only optimizer before there were several), and an absent hyper-parameter takes the
    /// optimizer's default. Errors name the key.
    pub fn from_metadata(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let name = get("optimizer").unwrap_or_else(|| "adam".to_string());
        let float = |key: &str, default: f32| -> Result<f32, String> {
            match get(key) {
                None => Ok(default),
                Some(v) => v.parse::<f32>().map_err(|_| format!("metadata `{key}` {v:?} is not a number")),
            }
        };
        let cfg = match name.as_str() {
            "adam" | "adamw" => {
                let base = if name == "adamw" { AdamConfig::adamw(1e-3) } else { AdamConfig::default() };
                OptimizerConfig::Adam(AdamConfig {
                    lr: float("lr", base.lr)?,
                    beta1: float("beta1", base.beta1)?,
                    beta2: float("beta2", base.beta2)?,
                    eps: float("eps", base.eps)?,
                    weight_decay: float("weight_decay", base.weight_decay)?,
                    decoupled: base.decoupled,
                })
            }
            "sgd" => {
                let d = SgdConfig::default();
                let nesterov = match get("nesterov").as_deref() {
                    None | Some("false") => false,
                    Some("true") => true,
                    Some(v) => return Err(format!("metadata `nesterov` {v:?} is neither true nor false")),
                };
                OptimizerConfig::Sgd(SgdConfig {
                    lr: float("lr", d.lr)?,
                    momentum: float("momentum", d.momentum)?,
                    dampening: float("dampening", d.dampening)?,
                    nesterov,
                    weight_decay: float("weight_decay", d.weight_decay)?,
                })
            }
            other => return Err(format!("metadata `optimizer` {other:?} is not one of {}", OPTIMIZER_NAMES.join(", "))),
        };
        cfg.validate().map_err(|e| format!("metadata: {e}"))?;
        Ok(cfg)
    }

    /// One line for logs: `sgd (lr 0.01, momentum 0.9, nesterov, weight decay 0.0005)`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("lr {}", self.lr())];
        match self {
            OptimizerConfig::Adam(a) => {
                if a.weight_decay != 0.0 {
                    parts.push(format!("weight decay {}{}", a.weight_decay, if a.decoupled { " (decoupled)" } else { "" }));
                }
            }
            OptimizerConfig::Sgd(s) => {
                if s.momentum != 0.0 {
                    parts.push(format!("momentum {}", s.momentum));
                }
                if s.dampening != 0.0 {
                    parts.push(format!("dampening {}", s.dampening));
                }
                if s.nesterov {
                    parts.push("nesterov".to_string());
                }
                if s.weight_decay != 0.0 {
                    parts.push(format!("weight decay {}", s.weight_decay));
                }
            }
        }
        format!("{} ({})", self.name(), parts.join(", "))
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
