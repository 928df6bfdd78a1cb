//! The GPU backend: every op is a WGSL entry point in `shaders/<family>.wgsl`, wrapped by one
//! Rust function in `src/gpu/<family>.rs`, with its CPU twin in `src/reference/<family>.rs`.

pub mod context;
pub mod conv2d;
pub mod matmul;
pub mod smoke;

pub use context::{list_adapters, Access, AdapterChoice, GpuContext, Kernel, RawBuffer};
