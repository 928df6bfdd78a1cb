//! wgsl-cnn: trains the LeNet-5 of a PyTorch MNIST notebook with every pass as a WGSL
//! compute shader, each checked against a plain-Rust CPU reference.

pub mod backend;
pub mod gpu;
pub mod shapes;
pub mod compare;
pub mod rng;
pub mod data;
