//! One parameter store per model, as llm.c's `ParameterTensors`: the values of every
//! parameter in one device buffer, their gradients in a second, Adam's m and v in a third
//! and fourth, each parameter a view at an offset aligned to the device's storage-buffer
//! offset alignment. Ops take the views; Adam takes the four whole buffers, so one dispatch
//! updates the whole model (the padding between views holds zeros, whose gradient is zero,
//! so Adam leaves it at zero).
//!
//! Layers declare what they own through a `Builder` while the model is built: parameters
//! (kept in the store), buffers such as BatchNorm's running statistics (tensors of their
//! own, not trained) and counters such as `num_batches_tracked` (host integers). The
//! declaration order is the state_dict order, as PyTorch's registration order is.

use std::cell::Cell;
use std::rc::Rc;

use crate::backend::Backend;

/// How a parameter starts out (PyTorch's defaults for each layer type).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// U(−1/√fan_in, 1/√fan_in): kaiming_uniform(a=√5) for weights and the bias rule, both
    /// of which reduce to this bound for Conv2d and Linear.
    Uniform { fan_in: usize },
    Ones,
    Zeros,
}

/// A parameter of the store (an index into `Store::params`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamId(pub usize);

#[derive(Clone, Debug)]
pub struct ParamInfo {
    /// PyTorch's state_dict name.
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
    /// Where its view starts in the store's buffers (elements).
    pub offset: usize,
}

impl ParamInfo {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One state_dict entry, in order.
pub enum Entry<B: Backend> {
    Param(ParamId),
    /// A float buffer (BatchNorm's running statistics).
    Buffer { name: String, shape: Vec<usize>, tensor: B::Tensor },
    /// An int64 scalar kept on the host (BatchNorm's `num_batches_tracked`).
    Counter { name: String, count: Rc<Cell<i64>> },
}

/// What layers declare while a model is built; `finish` turns it into a `Store`.
pub struct Builder<'b, B: Backend> {
    pub be: &'b mut B,
    /// Largest batch the activations are allocated for.
    pub capacity: usize,
    params: Vec<ParamInfo>,
    entries: Vec<Entry<B>>,
    /// While set, declaring an existing name returns the existing parameter, buffer or
    /// counter (weight tying: `Repeat` builds its block again over the same names).
    pub tying: bool,
}

impl<'b, B: Backend> Builder<'b, B> {
    pub fn new(be: &'b mut B, capacity: usize) -> Self {
        Builder { be, capacity, params: Vec::new(), entries: Vec::new(), tying: false }
    }

    fn existing(&self, name: &str) -> Option<&Entry<B>> {
        let store_names = |e: &Entry<B>| match e {
            Entry::Param(id) => self.params[id.0].name == name,
            Entry::Buffer { name: n, .. } | Entry::Counter { name: n, .. } => n == name,
        };
        let found = self.entries.iter().find(|e| store_names(e));
        assert!(found.is_none() || self.tying, "two state_dict entries named {name}");
        found
    }

    /// A trainable parameter.
    pub fn param(&mut self, name: String, shape: &[usize], init: Init) -> ParamId {
        if let Some(Entry::Param(id)) = self.existing(&name) {
            assert_eq!(self.params[id.0].shape, shape, "{name} is tied to a parameter of another shape");
            return *id;
        }
        let id = ParamId(self.params.len());
        self.params.push(ParamInfo { name, shape: shape.to_vec(), init, offset: 0 });
        self.entries.push(Entry::Param(id));
        id
    }

    /// A float buffer of the state_dict, filled with `fill`.
    pub fn buffer(&mut self, name: String, shape: &[usize], fill: f32) -> B::Tensor {
        if let Some(Entry::Buffer { tensor, .. }) = self.existing(&name) {
            return tensor.clone();
        }
        let len = shape.iter().product();
        let tensor = self.be.tensor(len);
        self.be.write(&tensor, &vec![fill; len]);
        self.entries.push(Entry::Buffer { name, shape: shape.to_vec(), tensor: tensor.clone() });
        tensor
    }

    /// An int64 scalar of the state_dict, starting at 0.
    pub fn counter(&mut self, name: String) -> Rc<Cell<i64>> {
        if let Some(Entry::Counter { count, .. }) = self.existing(&name) {
            return count.clone();
        }
        let count = Rc::new(Cell::new(0));
        self.entries.push(Entry::Counter { name, count: count.clone() });
        count
    }

    /// An activation (or activation gradient) of `per_sample` elements for every sample of
    /// the batch capacity.
    pub fn activation(&mut self, per_sample: usize) -> B::Tensor {
        self.be.tensor(per_sample * self.capacity)
    }

    /// Allocates the store: every parameter at an aligned offset of four buffers.
    pub fn finish(self) -> (Store<B>, &'b mut B) {
        let be = self.be;
        let align = be.view_alignment().max(4);
        let mut params = self.params;
        let mut len = 0;
        for p in &mut params {
            p.offset = len;
            len += p.len().div_ceil(align) * align;
        }
        let len = len.max(align);
        let [value, grad, m, v] = [(); 4].map(|_| be.tensor(len));
        let views = params
            .iter()
            .map(|p| [&value, &grad, &m, &v].map(|whole| be.view(whole, p.offset, p.len())))
            .collect();
        (Store { params, len, value, grad, m, v, views, entries: self.entries }, be)
    }
}

pub struct Store<B: Backend> {
    pub params: Vec<ParamInfo>,
    /// Elements of each whole buffer (parameters plus alignment padding).
    pub len: usize,
    pub value: B::Tensor,
    pub grad: B::Tensor,
    pub m: B::Tensor,
    pub v: B::Tensor,
    /// Views of value, grad, m, v per parameter.
    views: Vec<[B::Tensor; 4]>,
    /// The state_dict, in order.
    pub entries: Vec<Entry<B>>,
}

impl<B: Backend> Store<B> {
    pub fn value(&self, id: ParamId) -> &B::Tensor {
        &self.views[id.0][0]
    }
    pub fn grad(&self, id: ParamId) -> &B::Tensor {
        &self.views[id.0][1]
    }
    pub fn adam_m(&self, id: ParamId) -> &B::Tensor {
        &self.views[id.0][2]
    }
    pub fn adam_v(&self, id: ParamId) -> &B::Tensor {
        &self.views[id.0][3]
    }
    pub fn ids(&self) -> impl Iterator<Item = ParamId> {
        (0..self.params.len()).map(ParamId)
    }
    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.params.iter().position(|p| p.name == name).map(ParamId)
    }
    /// Trainable parameters (without padding).
    pub fn total(&self) -> usize {
        self.params.iter().map(|p| p.len()).sum()
    }

    /// PyTorch's default initialisation, drawn in declaration order from one generator.
    pub fn init_values(&self, seed: u64) -> Vec<Vec<f32>> {
        init_values(&self.params, seed)
    }
}

/// Initial values of `params`, drawn in order from one seeded generator.
pub fn init_values(params: &[ParamInfo], seed: u64) -> Vec<Vec<f32>> {
    let mut rng = crate::rng::Rng::new(seed);
    params
        .iter()
        .map(|p| match p.init {
            Init::Uniform { fan_in } => {
                let bound = 1.0 / (fan_in as f64).sqrt();
                rng.uniform_vec(p.len(), -bound, bound)
            }
            Init::Ones => vec![1.0; p.len()],
            Init::Zeros => vec![0.0; p.len()],
        })
        .collect()
}
