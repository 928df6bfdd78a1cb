//! The seed's parameter table: the PyTorch state_dict names, shapes and initialisation.

/// How a tensor starts out (PyTorch's defaults for each layer type).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// U(−1/√fan_in, 1/√fan_in): kaiming_uniform(a=√5) for weights and the bias rule, both
    /// of which reduce to this bound for Conv2d and Linear.
    Uniform { fan_in: usize },
    Ones,
    Zeros,
}

/// One trainable tensor of the model.
#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub shape: &'static [usize],
    pub init: Init,
}

impl ParamSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Trainable parameters in state_dict order. BatchNorm's running statistics and
/// num_batches_tracked are buffers, not parameters: see `Lenet5::state_dict`.
pub const LENET5_PARAMS: [ParamSpec; 12] = [
    ParamSpec { name: "conv1.weight", shape: &[20, 1, 5, 5], init: Init::Uniform { fan_in: 25 } },
    ParamSpec { name: "conv1.bias", shape: &[20], init: Init::Uniform { fan_in: 25 } },
    ParamSpec { name: "batchnorm1.weight", shape: &[20], init: Init::Ones },
    ParamSpec { name: "batchnorm1.bias", shape: &[20], init: Init::Zeros },
    ParamSpec { name: "conv2.weight", shape: &[50, 20, 5, 5], init: Init::Uniform { fan_in: 500 } },
    ParamSpec { name: "conv2.bias", shape: &[50], init: Init::Uniform { fan_in: 500 } },
    ParamSpec { name: "batchnorm2.weight", shape: &[50], init: Init::Ones },
    ParamSpec { name: "batchnorm2.bias", shape: &[50], init: Init::Zeros },
    ParamSpec { name: "fc1.weight", shape: &[500, 800], init: Init::Uniform { fan_in: 800 } },
    ParamSpec { name: "fc1.bias", shape: &[500], init: Init::Uniform { fan_in: 800 } },
    ParamSpec { name: "fc2.weight", shape: &[10, 500], init: Init::Uniform { fan_in: 500 } },
    ParamSpec { name: "fc2.bias", shape: &[10], init: Init::Uniform { fan_in: 500 } },
];

/// Index of each parameter in `LENET5_PARAMS`.
pub mod idx {
    pub const CONV1_W: usize = 0;
    pub const CONV1_B: usize = 1;
    pub const BN1_G: usize = 2;
    pub const BN1_B: usize = 3;
    pub const CONV2_W: usize = 4;
    pub const CONV2_B: usize = 5;
    pub const BN2_G: usize = 6;
    pub const BN2_B: usize = 7;
    pub const FC1_W: usize = 8;
    pub const FC1_B: usize = 9;
    pub const FC2_W: usize = 10;
    pub const FC2_B: usize = 11;
}

/// Initial values of every parameter, drawn in table order from one seeded generator.
pub fn init_values(seed: u64) -> Vec<Vec<f32>> {
    let mut rng = crate::rng::Rng::new(seed);
    LENET5_PARAMS
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

pub fn total_params() -> usize {
    LENET5_PARAMS.iter().map(|p| p.len()).sum()
}
