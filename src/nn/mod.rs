//! The layer set: models as a short declaration (`Spec`) that reads like its PyTorch class,
//! built against any `Backend` into layers with a forward and a backward.
//!
//! - A `Spec` is data: the layer types with their sizes, and named children as a PyTorch
//!   module's attributes (so `body.block.fc.weight` is a path through the tree).
//! - Building walks the tree with the per-sample shape flowing through it (errors name the
//!   layer whose input does not fit), declares every parameter, buffer and counter in the
//!   store (`store.rs`) and allocates each layer's activations for the batch capacity.
//! - `Repeat` builds its block `times` times over the same names with tying on: every copy
//!   keeps its own activations (what its backward needs) and shares the parameters, whose
//!   gradients therefore receive the sum over the uses, since every parameter-gradient op
//!   accumulates (`Op` docs) and the model zeroes the gradient store once per step.

pub mod bn_pool;
pub mod fuse;
pub mod layers;
pub mod model;
pub mod sizer;
pub mod store;

pub use model::{Capacity, Model, EVAL_BATCH};
pub use store::{Builder, Init, ParamId, Store};

use anyhow::{bail, Result};

use crate::backend::Backend;
use crate::shapes::Activation;

/// The shape of one sample's activation: channels, height, width (a flat vector of f
/// features is f × 1 × 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feat {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Feat {
    pub fn image(c: usize, h: usize, w: usize) -> Feat {
        Feat { c, h, w }
    }
    pub fn flat(f: usize) -> Feat {
        Feat { c: f, h: 1, w: 1 }
    }
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn is_flat(&self) -> bool {
        self.h == 1 && self.w == 1
    }
}

impl std::fmt::Display for Feat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_flat() {
            write!(f, "[N, {}]", self.c)
        } else {
            write!(f, "[N, {}, {}, {}]", self.c, self.h, self.w)
        }
    }
}

/// A layer built for a backend: its parameters are views of the model's store.
pub trait Layer<B: Backend> {
    /// Records the forward of the first `n` samples of `x` and returns the output. In
    /// training mode (`train`) it keeps what its backward needs.
    fn forward(&mut self, be: &mut B, store: &Store<B>, x: &B::Tensor, n: usize, train: bool) -> B::Tensor;
    /// Given the loss gradient `dy` of the last training forward's output, adds this layer's
    /// parameter gradients into the store and returns the gradient wrt its input (None
    /// when `need_dx` is false: the first layer's input is the data).
    fn backward(&mut self, be: &mut B, store: &Store<B>, dy: &B::Tensor, n: usize, need_dx: bool) -> Option<B::Tensor>;
    /// Whether it (or a layer inside it) has parameters: layers before the first such one
    /// need not compute input gradients.
    fn has_params(&self) -> bool;

    // Fusion across neighbours (see `Sequential::new`): a layer whose output is a ReLU's
    // output hands that ReLU's backward to a next layer that can do it inside its own
    // input-gradient pass (a Linear, in its product's epilogue).

    /// Whether its output is the output of a ReLU (its last step).
    fn ends_in_relu(&self) -> bool {
        false
    }
    /// Whether it can apply its input's ReLU mask to the input gradient it returns.
    fn can_mask_input_grad(&self) -> bool {
        false
    }
    /// From now on, mask the input gradient by the input's ReLU (`ReluBackward`'s rule).
    fn mask_input_grad(&mut self) {}
    /// From now on, the `dy` given to backward already has the final ReLU's backward applied.
    fn relu_backward_done_by_next(&mut self) {}
}

/// A model or a part of one, as data.
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    /// Conv2d(c_in, c_out, kernel_size=k, stride, padding=pad): PyTorch's zeros padding on
    /// every side.
    Conv2d { c_in: usize, c_out: usize, k: usize, stride: usize, pad: usize },
    BatchNorm2d { c: usize },
    /// MaxPool2d(k, stride) (PyTorch's default stride is k).
    MaxPool2d { k: usize, stride: usize },
    /// AvgPool2d(k, stride), no padding: the mean of each k × k window.
    AvgPool2d { k: usize, stride: usize },
    ReLU,
    Tanh,
    Sigmoid,
    Flatten,
    Linear { d_in: usize, d_out: usize },
    /// Children in order, each under its attribute name.
    Sequential(Vec<(String, Spec)>),
    /// `block`, stored under `name`, applied `times` times with the same parameters.
    Repeat { times: usize, name: String, block: Box<Spec> },
}

impl Spec {
    /// Conv2d(c_in, c_out, k): stride 1, no padding.
    pub fn conv(c_in: usize, c_out: usize, k: usize) -> Spec {
        Spec::Conv2d { c_in, c_out, k, stride: 1, pad: 0 }
    }

    /// MaxPool2d(k): stride k.
    pub fn max_pool(k: usize) -> Spec {
        Spec::MaxPool2d { k, stride: k }
    }

    /// Children named as a PyTorch module's attributes.
    pub fn seq(children: Vec<(&str, Spec)>) -> Spec {
        Spec::Sequential(children.into_iter().map(|(n, s)| (n.to_string(), s)).collect())
    }

    /// `block` under `name`, applied `times` times with one set of weights.
    pub fn repeat(times: usize, name: &str, block: Spec) -> Spec {
        Spec::Repeat { times, name: name.to_string(), block: Box::new(block) }
    }

    /// PyTorch's repr of a leaf layer ("Conv2d(1, 20, kernel_size=5)").
    pub fn describe(&self) -> String {
        match self {
            Spec::Conv2d { c_in, c_out, k, stride, pad } => {
                let mut s = format!("Conv2d({c_in}, {c_out}, kernel_size={k}");
                if *stride != 1 {
                    s += &format!(", stride={stride}");
                }
                if *pad != 0 {
                    s += &format!(", padding={pad}");
                }
                s + ")"
            }
            Spec::BatchNorm2d { c } => format!("BatchNorm2d({c}, eps=1e-05, momentum=0.1)"),
            Spec::MaxPool2d { k, stride } if k == stride => format!("MaxPool2d({k})"),
            Spec::MaxPool2d { k, stride } => format!("MaxPool2d({k}, stride={stride})"),
            Spec::AvgPool2d { k, stride } if k == stride => format!("AvgPool2d({k})"),
            Spec::AvgPool2d { k, stride } => format!("AvgPool2d({k}, stride={stride})"),
            Spec::ReLU => "ReLU()".into(),
            Spec::Tanh => "Tanh()".into(),
            Spec::Sigmoid => "Sigmoid()".into(),
            Spec::Flatten => "Flatten()".into(),
            Spec::Linear { d_in, d_out } => format!("Linear({d_in}, {d_out})"),
            Spec::Sequential(_) => "Sequential".into(),
            Spec::Repeat { times, .. } => format!("applied {times} times, one set of weights:"),
        }
    }

    /// The output shape for input `x`, or an error naming `path` and what does not fit
    /// ("fc1 expects 800 inputs, the layer before gives 1,250").
    pub fn output(&self, path: &str, x: Feat) -> Result<Feat> {
        let th = |n: usize| crate::text::thousands(n as u64);
        let name = if path.is_empty() { "the model" } else { path };
        let image_in = |what: &str| -> Result<()> {
            if x.is_flat() && x.c > 1 {
                bail!("{name}: {what} needs an image input [N, C, H, W], the layer before gives {x}");
            }
            Ok(())
        };
        Ok(match *self {
            Spec::Conv2d { c_in, c_out, k, stride, pad } => {
                if k == 0 || stride == 0 || c_in == 0 || c_out == 0 {
                    bail!("{name}: {} needs channels, kernel_size and stride of at least 1", self.describe());
                }
                image_in(&self.describe())?;
                if x.c != c_in {
                    bail!("{name} expects {} input channels, the layer before gives {} ({x})", th(c_in), th(x.c));
                }
                if x.h + 2 * pad < k || x.w + 2 * pad < k {
                    bail!("{name}: kernel_size {k} does not fit the {}×{} input ({x}) with padding {pad}", x.h, x.w);
                }
                sized(name, Feat::image(c_out, (x.h + 2 * pad - k) / stride + 1, (x.w + 2 * pad - k) / stride + 1))?
            }
            Spec::BatchNorm2d { c } => {
                image_in(&self.describe())?;
                if x.c != c {
                    bail!("{name} expects {} channels, the layer before gives {} ({x})", th(c), th(x.c));
                }
                x
            }
            Spec::MaxPool2d { k, stride } | Spec::AvgPool2d { k, stride } => {
                if k == 0 || stride == 0 {
                    bail!("{name}: {} needs kernel_size and stride of at least 1", self.describe());
                }
                image_in(&self.describe())?;
                if x.h < k || x.w < k {
                    bail!("{name}: {} does not fit the {}×{} input ({x})", self.describe(), x.h, x.w);
                }
                Feat::image(x.c, (x.h - k) / stride + 1, (x.w - k) / stride + 1)
            }
            Spec::ReLU | Spec::Tanh | Spec::Sigmoid => x,
            Spec::Flatten => Feat::flat(x.len()),
            Spec::Linear { d_in, d_out } => {
                if d_in == 0 || d_out == 0 {
                    bail!("{name}: {} needs at least one input and one output", self.describe());
                }
                if !x.is_flat() {
                    let hint = if x.len() == d_in { " (put a Flatten before it)" } else { "" };
                    bail!("{name} expects {} inputs ([N, {d_in}]), the layer before gives {x}{hint}", th(d_in));
                }
                if x.c != d_in {
                    bail!("{name} expects {} inputs, the layer before gives {}", th(d_in), th(x.c));
                }
                Feat::flat(d_out)
            }
            Spec::Sequential(ref children) => {
                let mut x = x;
                for (name, child) in children {
                    x = child.output(&join(path, name), x)?;
                }
                x
            }
            Spec::Repeat { times, ref name, ref block } => {
                if times == 0 {
                    bail!("{}: a block must be applied at least once", join(path, name));
                }
                let y = block.output(&join(path, name), x)?;
                if times > 1 && y != x {
                    bail!("{}: a block applied {times} times must keep its shape, but maps {x} to {y}", join(path, name));
                }
                y
            }
        })
    }

    /// Builds the layer for input `x` under the state_dict prefix `path`.
    pub fn build<B: Backend + 'static>(&self, b: &mut Builder<B>, path: &str, x: Feat) -> Result<Box<dyn Layer<B>>> {
        let y = self.output(path, x)?;
        Ok(match *self {
            Spec::Conv2d { c_in, c_out, k, stride, pad } => Box::new(layers::Conv2d::new(b, path, x, c_in, c_out, k, stride, pad)),
            Spec::BatchNorm2d { c } => Box::new(layers::BatchNorm2d::new(b, path, x, c)),
            Spec::MaxPool2d { k, stride } => Box::new(layers::MaxPool2d::new(b, path, x, k, stride)),
            Spec::AvgPool2d { k, stride } => Box::new(layers::AvgPool2d::new(b, path, x, k, stride)),
            Spec::ReLU => Box::new(layers::Relu::new(b, path, x)),
            Spec::Tanh => Box::new(layers::Smooth::new(b, path, x, Activation::Tanh)),
            Spec::Sigmoid => Box::new(layers::Smooth::new(b, path, x, Activation::Sigmoid)),
            Spec::Flatten => Box::new(layers::Flatten),
            Spec::Linear { d_in, d_out } => Box::new(layers::Linear::new(b, path, d_in, d_out)),
            Spec::Sequential(ref children) => {
                let mut built = Vec::new();
                let mut x = x;
                let mut i = 0;
                while i < children.len() {
                    let (name, child) = &children[i];
                    let p = join(path, name);
                    if let Some((layers, count, y)) = fuse::build_run(b, path, children, i, x)? {
                        built.extend(layers);
                        x = y;
                        i += count;
                        continue;
                    }
                    built.push(child.build(b, &p, x)?);
                    x = child.output(&p, x)?;
                    i += 1;
                }
                debug_assert_eq!(x, y);
                Box::new(Sequential::new(built))
            }
            Spec::Repeat { times, ref name, ref block } => {
                let p = join(path, name);
                let was_tying = b.tying;
                let mut copies = Vec::new();
                for i in 0..times {
                    b.tying = was_tying || i > 0;
                    copies.push(block.build(b, &p, x)?);
                }
                b.tying = was_tying;
                Box::new(Sequential::new(copies))
            }
        })
    }

    /// Every leaf layer with its path, input shape and how many times a step applies it, in
    /// forward order, each `Repeat` listed before its block (for `summary`).
    pub fn leaves(&self, path: &str, x: Feat, out: &mut Vec<(String, Spec, Feat, usize)>) -> Result<()> {
        self.leaves_repeated(path, x, 1, out)
    }

    fn leaves_repeated(&self, path: &str, x: Feat, times: usize, out: &mut Vec<(String, Spec, Feat, usize)>) -> Result<()> {
        match self {
            Spec::Sequential(children) => {
                let mut x = x;
                for (name, child) in children {
                    let p = join(path, name);
                    child.leaves_repeated(&p, x, times, out)?;
                    x = child.output(&p, x)?;
                }
            }
            Spec::Repeat { times: k, name, block } => {
                out.push((join(path, name), self.clone(), x, times));
                block.leaves_repeated(&join(path, name), x, times * k, out)?
            }
            leaf => out.push((path.to_string(), leaf.clone(), x, times)),
        }
        Ok(())
    }
}

/// The most values one sample's activation may hold (far more than any buffer takes; it keeps
/// every size computation of a model file's network from overflowing).
pub const MAX_FEATURES: usize = 1 << 31;

/// `f`, or an error naming `name` when it holds more than `MAX_FEATURES` values.
fn sized(name: &str, f: Feat) -> Result<Feat> {
    match f.c.checked_mul(f.h).and_then(|n| n.checked_mul(f.w)) {
        Some(n) if n <= MAX_FEATURES => Ok(f),
        _ => bail!("{name} gives {f}, more than 2^31 values per image"),
    }
}

/// "a" + "b" → "a.b"; "" + "b" → "b".
pub fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Children applied in order (also the copies of a `Repeat`).
pub struct Sequential<B: Backend>(Vec<Box<dyn Layer<B>>>);

impl<B: Backend> Sequential<B> {
    /// Wherever a child ends in a ReLU and the next can mask its input gradient, the next
    /// one does that ReLU's backward (one dispatch fewer per pair).
    pub fn new(mut children: Vec<Box<dyn Layer<B>>>) -> Self {
        for i in 1..children.len() {
            if children[i - 1].ends_in_relu() && children[i].can_mask_input_grad() {
                children[i].mask_input_grad();
                children[i - 1].relu_backward_done_by_next();
            }
        }
        Sequential(children)
    }
}

impl<B: Backend> Layer<B> for Sequential<B> {
    fn forward(&mut self, be: &mut B, store: &Store<B>, x: &B::Tensor, n: usize, train: bool) -> B::Tensor {
        let mut x = x.clone();
        for layer in &mut self.0 {
            x = layer.forward(be, store, &x, n, train);
        }
        x
    }

    fn backward(&mut self, be: &mut B, store: &Store<B>, dy: &B::Tensor, n: usize, need_dx: bool) -> Option<B::Tensor> {
        let mut dy = dy.clone();
        for i in (0..self.0.len()).rev() {
            let needed = need_dx || self.0[..i].iter().any(|l| l.has_params());
            match self.0[i].backward(be, store, &dy, n, needed) {
                Some(dx) => dy = dx,
                None => return None,
            }
        }
        Some(dy)
    }

    fn has_params(&self) -> bool {
        self.0.iter().any(|l| l.has_params())
    }

    fn ends_in_relu(&self) -> bool {
        self.0.last().is_some_and(|l| l.ends_in_relu())
    }
    fn can_mask_input_grad(&self) -> bool {
        self.0.first().is_some_and(|l| l.can_mask_input_grad())
    }
    fn mask_input_grad(&mut self) {
        if let Some(l) = self.0.first_mut() {
            l.mask_input_grad()
        }
    }
    fn relu_backward_done_by_next(&mut self) {
        if let Some(l) = self.0.last_mut() {
            l.relu_backward_done_by_next()
        }
    }
}
