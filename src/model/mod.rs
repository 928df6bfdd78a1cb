//! The models, written once against the `Backend` trait.

pub mod lenet5;
pub mod params;
pub mod state;
pub mod summary;

pub use lenet5::Lenet5;
pub use params::{ParamSpec, LENET5_PARAMS};
