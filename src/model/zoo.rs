//! The seed notebook's three networks, each declared once as it reads in PyTorch.

use anyhow::{bail, Result};

use super::{CLASSES, IMAGE};
use crate::nn::model::Arch;
use crate::nn::Spec;
use crate::nn::Spec::{BatchNorm2d, Flatten, Linear, ReLU};

/// Every model `--model` accepts, the default first.
pub const NAMES: [&str; 3] = ["lenet5", "mlp", "tied"];

/// The model called `name`.
pub fn arch(name: &str) -> Result<Arch> {
    Ok(match name {
        "lenet5" => lenet5(),
        "mlp" => mlp(),
        "tied" => tied(),
        _ => bail!("no model named {name:?}; the models are {}", NAMES.join(", ")),
    })
}

/// The seed's LeNet-5.
pub fn lenet5() -> Arch {
    let spec = Spec::seq(vec![
        ("conv1", Spec::conv(1, 20, 5)),
        ("batchnorm1", BatchNorm2d { c: 20 }),
        ("pool1", Spec::max_pool(2)),
        ("relu1", ReLU),
        ("conv2", Spec::conv(20, 50, 5)),
        ("batchnorm2", BatchNorm2d { c: 50 }),
        ("pool2", Spec::max_pool(2)),
        ("relu2", ReLU),
        ("flatten", Flatten),
        ("fc1", Linear { d_in: 800, d_out: 500 }),
        ("relu3", ReLU),
        ("fc2", Linear { d_in: 500, d_out: 10 }),
    ]);
    Arch { name: "lenet5".into(), title: "LeNet-5 with BatchNorm (the seed's PyTorch model)".into(), input: IMAGE, classes: CLASSES, spec }
}

/// The notebook's "fully connected neural network with one hidden layer" (784 → 500 → 10).
pub fn mlp() -> Arch {
    let spec = Spec::seq(vec![
        ("flatten", Flatten),
        ("fc1", Linear { d_in: 784, d_out: 500 }),
        ("relu", ReLU),
        ("fc2", Linear { d_in: 500, d_out: 10 }),
    ]);
    Arch { name: "mlp".into(), title: "one hidden layer of 500 (the notebook's MLP)".into(), input: IMAGE, classes: CLASSES, spec }
}

/// The notebook's `NN(784)`: `NN_block` (Linear(784, 784) + ReLU) applied 10 times with the
/// same weights, then a Linear(784, 10) head.
pub fn tied() -> Arch {
    let block = Spec::seq(vec![("fc", Linear { d_in: 784, d_out: 784 }), ("relu", ReLU)]);
    let spec = Spec::seq(vec![
        ("flatten", Flatten),
        ("body", Spec::repeat(10, "block", block)),
        ("head", Linear { d_in: 784, d_out: 10 }),
    ]);
    Arch { name: "tied".into(), title: "NN(784): one Linear(784, 784) + ReLU block applied 10 times, weights tied".into(), input: IMAGE, classes: CLASSES, spec }
}

