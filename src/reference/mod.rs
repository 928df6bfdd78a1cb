//! The CPU reference: plain Rust twins of every shader file (same names), generic over
//! `Real` so that gradient checks can run in f64. The yardstick every shader is held to.

pub mod conv2d;
pub mod matmul;
pub mod real;

pub use real::Real;
