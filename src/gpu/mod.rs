//! The GPU backend: every op is a WGSL entry point in `shaders/<family>.wgsl`, wrapped by one
//! Rust function in `src/gpu/<family>.rs`, with its CPU twin in `src/reference/<family>.rs`.

pub mod activation;
pub mod adam;
pub mod autotune;
pub mod avgpool;
pub mod backend;
pub mod batchnorm;
pub mod context;
pub mod conv2d;
mod deferred_tuning;
pub mod gather;
pub mod kernels;
pub mod mapped;
#[cfg(not(target_arch = "wasm32"))]
pub mod translate;
pub mod matmul;
pub mod maxpool;
pub mod readback;
pub mod reduce;
pub mod sgd;
pub mod smoke;

pub use backend::{Gpu, GpuDataset, GpuTensor, Moment, Observer};
#[cfg(not(target_arch = "wasm32"))]
pub use context::list_adapters;
pub use context::{Access, AdapterChoice, GpuContext, Kernel, RawBuffer};
