//! The seed notebook's three networks, each declared once as it reads in PyTorch.

use anyhow::{bail, Result};

use super::{CLASSES, IMAGE};
use crate::nn::model::Arch;
use crate::nn::Spec::{BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Repeat, Sequential, ReLU};

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
    let spec = Sequential(vec![
        ("conv1", Conv2d { c_in: 1, c_out: 20, k: 5 }),
        ("batchnorm1", BatchNorm2d { c: 20 }),
        ("pool1", MaxPool2d { k: 2 }),
        ("relu1", ReLU),
        ("conv2", Conv2d { c_in: 20, c_out: 50, k: 5 }),
        ("batchnorm2", BatchNorm2d { c: 50 }),
        ("pool2", MaxPool2d { k: 2 }),
        ("relu2", ReLU),
        ("flatten", Flatten),
        ("fc1", Linear { d_in: 800, d_out: 500 }),
        ("relu3", ReLU),
        ("fc2", Linear { d_in: 500, d_out: 10 }),
    ]);
    Arch { name: "lenet5", title: "LeNet-5 with BatchNorm (the seed's PyTorch model)", input: IMAGE, classes: CLASSES, spec }
}

/// The notebook's "fully connected neural network with one hidden layer" (784 → 500 → 10).
pub fn mlp() -> Arch {
    let spec = Sequential(vec![
        ("flatten", Flatten),
        ("fc1", Linear { d_in: 784, d_out: 500 }),
        ("relu", ReLU),
        ("fc2", Linear { d_in: 500, d_out: 10 }),
    ]);
    Arch { name: "mlp", title: "one hidden layer of 500 (the notebook's MLP)", input: IMAGE, classes: CLASSES, spec }
}

/// The notebook's `NN(784)`: `NN_block` (Linear(784, 784) + ReLU) applied 10 times with the
/// same weights, then a Linear(784, 10) head.
pub fn tied() -> Arch {
    let block = Sequential(vec![("fc", Linear { d_in: 784, d_out: 784 }), ("relu", ReLU)]);
    let spec = Sequential(vec![
        ("flatten", Flatten),
        ("body", Repeat { times: 10, name: "block", block: Box::new(block) }),
        ("head", Linear { d_in: 784, d_out: 10 }),
    ]);
    Arch { name: "tied", title: "NN(784): one Linear(784, 784) + ReLU block applied 10 times, weights tied", input: IMAGE, classes: CLASSES, spec }
}

