//! wgsl-cnn: trains the LeNet-5 of a PyTorch MNIST notebook with every pass as a WGSL
//! compute shader, each checked against a plain-Rust CPU reference.

pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod compare;
pub mod data;
pub mod gpu;
pub mod model;
pub mod reference;
pub mod rng;
pub mod shapes;
pub mod step;
pub mod train;
