//! The CPU reference: plain Rust twins of every shader file (same names), generic over
//! `Real` so that gradient checks can run in f64. The yardstick every shader is held to.
//! Sums are accumulated in f64; `Cpu` runs the whole model through them in f32.

pub mod activation;
pub mod adam;
pub mod avgpool;
pub mod backend;
pub mod batchnorm;
pub mod conv2d;
pub mod gather;
pub mod matmul;
pub mod maxpool;
pub mod real;
pub mod reduce;
pub mod sgd;

pub use backend::{Cpu, Cpu64, CpuBackend, CpuDataset, CpuIndex, CpuTensor};
pub use real::Real;
