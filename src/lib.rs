//! wgsl-cnn: trains the networks of a PyTorch MNIST notebook (its LeNet-5, MLP and weight-tied NN) with every pass as a WGSL
//! compute shader, each checked against a plain-Rust CPU reference.

pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod compare;
pub mod data;
pub mod fsutil;
pub mod memlimit;
pub mod dataset;
pub mod gpu;
pub mod metrics;
pub mod mistakes;
pub mod model;
pub mod nn;
#[cfg(not(target_arch = "wasm32"))]
pub mod plot;
pub mod predict;
pub mod prepare;
pub mod reference;
pub mod rng;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
pub mod shapes;
pub mod step;
pub mod text;
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;
